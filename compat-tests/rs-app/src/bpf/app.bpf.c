// SPDX-License-Identifier: GPL-2.0
/* The BPF side of the libbpf-rs compat app (compat-tests/rs-app).
 *
 * Every program can be run with BPF_PROG_TEST_RUN (raw_tp and syscall:
 * the kernel refuses test runs of fentry here), so the app drives them
 * with libbpf-rs's Program::test_run and checks maps and global data.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

#define ARR_ENTRIES 8
#define MAX_EVENTS 8

struct event {
	__u32 seq;
	__u32 kind; /* 1 ringbuf_output, 2 perf_event_output, 3 ringbuf_reserve */
	__u64 value;
};

/* The context of the syscall program (test_run copies it back). */
struct sys_args {
	__u32 key;
	__u32 flags;
	__u64 add;
	__u64 out;
	__s64 err;
};

/* .rodata: the app sets these before load. */
const volatile __u32 scale = 1;
const volatile __u64 bias = 0;

/* .bss: the app reads these after the runs. */
__u64 runs;
__u64 total;
__u32 last_key;
__s64 last_err;
struct event last_event; /* also puts struct event in the object's BTF */

/* .data */
__u32 generation = 3;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ARR_ENTRIES);
	__type(key, __u32);
	__type(value, __u64);
} arr SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
} hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} pcpu SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} lru SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} rb SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} perf SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, 4);
	__type(value, __u32);
} queue SEC(".maps");

/* Never created: the app turns autocreate off (and autoload off for the
 * only program that uses it). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u32);
} spare SEC(".maps");

/* args[0] = key, args[1] = value. Adds value * scale + bias to arr[key],
 * hash[key] (inserted if missing), pcpu[key & 3] (this CPU's slot) and
 * sets lru[key]. Returns the new arr[key] (low 32 bits), or 0xffffffff if
 * the key is out of range. */
SEC("raw_tp")
int bump(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 key = (__u32)ctx->args[0];
	__u64 val = ctx->args[1] * scale + bias;
	__u32 pkey = key & 3;
	__u64 *v, *h, *p;

	v = bpf_map_lookup_elem(&arr, &key);
	if (!v)
		return -1;
	__sync_fetch_and_add(v, val);

	h = bpf_map_lookup_elem(&hash, &key);
	if (h)
		__sync_fetch_and_add(h, val);
	else
		last_err = bpf_map_update_elem(&hash, &key, &val, BPF_NOEXIST);

	p = bpf_map_lookup_elem(&pcpu, &pkey);
	if (p)
		*p += val;

	bpf_map_update_elem(&lru, &key, &val, BPF_ANY);

	runs++;
	total += val;
	last_key = key;
	return (__u32)*v;
}

/* args[0] = n (at most MAX_EVENTS), args[1] = base value. For each i < n:
 * one ring buffer record with bpf_ringbuf_output, one perf event on this
 * CPU, and a push of 100 + i into the queue (which holds 4). Then one
 * record through reserve/submit and one reserved then discarded. Returns
 * how many records and pushes succeeded. */
SEC("raw_tp")
int emit(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 n = (__u32)ctx->args[0];
	__u64 base = ctx->args[1];
	struct event e = {};
	struct event *r;
	int ok = 0;

	for (__u32 i = 0; i < MAX_EVENTS; i++) {
		__u32 q = 100 + i;

		if (i >= n)
			break;
		e.seq = i;
		e.kind = 1;
		e.value = base + i;
		if (bpf_ringbuf_output(&rb, &e, sizeof(e), 0) == 0)
			ok++;
		e.kind = 2;
		if (bpf_perf_event_output(ctx, &perf, BPF_F_CURRENT_CPU, &e, sizeof(e)) == 0)
			ok++;
		if (bpf_map_push_elem(&queue, &q, BPF_ANY) == 0)
			ok++;
	}
	last_event = e;

	r = bpf_ringbuf_reserve(&rb, sizeof(*r), 0);
	if (r) {
		r->seq = n;
		r->kind = 3;
		r->value = base * 2;
		bpf_ringbuf_submit(r, 0);
		ok++;
	}
	r = bpf_ringbuf_reserve(&rb, sizeof(*r), 0);
	if (r)
		bpf_ringbuf_discard(r, 0);

	runs++;
	return ok;
}

/* Test-run with a struct sys_args as context: out = arr[key] + add +
 * generation, then inserts hash[key] = out with BPF_NOEXIST (err holds the
 * helper's result, -EEXIST when the key is there). Returns 1 if key is out
 * of range (err = -ENOENT), else 0. */
SEC("syscall")
int sys_prog(struct sys_args *args)
{
	__u32 key = args->key;
	__u64 out;
	__u64 *v;

	v = bpf_map_lookup_elem(&arr, &key);
	if (!v) {
		args->err = -2;
		return 1;
	}
	out = *v + args->add + generation;
	args->out = out;
	args->err = bpf_map_update_elem(&hash, &key, &out, BPF_NOEXIST);
	generation++;
	return 0;
}

/* Not loaded: the app turns its autoload off. */
SEC("raw_tp")
int never(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 key = 0;
	__u32 *v = bpf_map_lookup_elem(&spare, &key);

	return v ? *v : 0;
}
