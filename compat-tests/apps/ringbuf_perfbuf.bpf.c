// SPDX-License-Identifier: MIT OR Apache-2.0
/* RINGBUF (output, reserve/submit, reserve/discard, query, a full ring) and
 * PERF_EVENT_ARRAY (bpf_perf_event_output with BPF_F_CURRENT_CPU), plus a
 * map declared PERF_EVENT_ARRAY that user space turns into a RINGBUF
 * before load (libbpf-tools' bpf_buffer pattern). */
#include "app.bpf.h"

struct event {
	u32 seq;
	u32 kind;
	u64 val;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16384);
} rb SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} rb_small SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(u32));
	__uint(value_size, sizeof(u32));
} pb SEC(".maps");

/* becomes a RINGBUF before load */
struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(u32));
	__uint(value_size, sizeof(u32));
} events SEC(".maps");

__u32 seq;

/* ctx[0] mode, ctx[1] val */
SEC("raw_tp")
int rb_emit(u64 *ctx)
{
	struct event e = { .seq = ++seq, .kind = ctx[0], .val = ctx[1] };
	struct event *r;
	u8 *big;

	switch (ctx[0]) {
	case 0:
		return bpf_ringbuf_output(&rb, &e, sizeof(e), 0);
	case 1:
		r = bpf_ringbuf_reserve(&rb, sizeof(*r), 0);
		if (!r)
			return -ENOENT;
		*r = e;
		bpf_ringbuf_submit(r, 0);
		return 0;
	case 2:
		r = bpf_ringbuf_reserve(&rb, sizeof(*r), 0);
		if (!r)
			return -ENOENT;
		*r = e;
		bpf_ringbuf_discard(r, 0);
		return 0;
	case 3: /* larger than the ring */
		big = bpf_ringbuf_reserve(&rb, 20000, 0);
		if (!big)
			return -ENOENT;
		bpf_ringbuf_discard(big, 0);
		return 0;
	case 4: /* an odd size: 13 bytes */
		return bpf_ringbuf_output(&rb, &e, 13, 0);
	case 5:
		return bpf_ringbuf_query(&rb, BPF_RB_AVAIL_DATA);
	case 6:
		return bpf_ringbuf_query(&rb, BPF_RB_RING_SIZE);
	case 7:
		return bpf_ringbuf_output(&rb, &e, sizeof(e), 1 << 5); /* bad flag */
	}
	return -EINVAL;
}

/* fills rb_small; returns how many records fit */
SEC("raw_tp")
int rb_fill(u64 *ctx)
{
	struct event e = { .kind = 9 };
	int i, n = 0;

	for (i = 0; i < 200; i++) {
		e.seq = i;
		if (bpf_ringbuf_output(&rb_small, &e, sizeof(e), 0))
			break;
		n++;
	}
	return n;
}

/* ctx[0]: 0 current CPU, 1 explicit index ctx[2], 2 bad flags; ctx[1] val */
SEC("raw_tp")
int pb_emit(u64 *ctx)
{
	struct event e = { .seq = ++seq, .kind = 100 + ctx[0], .val = ctx[1] };

	switch (ctx[0]) {
	case 0:
		return bpf_perf_event_output(ctx, &pb, BPF_F_CURRENT_CPU, &e, sizeof(e));
	case 1:
		return bpf_perf_event_output(ctx, &pb, ctx[2], &e, sizeof(e));
	case 2:
		return bpf_perf_event_output(ctx, &pb, 1ULL << 40, &e, sizeof(e));
	case 3: /* 12 bytes: the kernel pads samples to 8 bytes with the size */
		return bpf_perf_event_output(ctx, &pb, BPF_F_CURRENT_CPU, &e, 12);
	}
	return -EINVAL;
}

/* for `events` as a RINGBUF */
SEC("raw_tp")
int events_rb(u64 *ctx)
{
	struct event e = { .seq = ++seq, .kind = 200, .val = ctx[0] };

	return bpf_ringbuf_output(&events, &e, sizeof(e), 0);
}

/* for `events` as a PERF_EVENT_ARRAY: autoload turned off */
SEC("raw_tp")
int events_pb(u64 *ctx)
{
	struct event e = { .seq = ++seq, .kind = 201, .val = ctx[0] };

	return bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, &e, sizeof(e));
}
