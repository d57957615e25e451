// SPDX-License-Identifier: MIT OR Apache-2.0
/* QUEUE, STACK, BLOOM_FILTER, LPM_TRIE and STACK_TRACE. */
#include "app.bpf.h"

#define BPF_F_USER_STACK (1ULL << 8)

struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, 4);
	__type(value, u32);
} queue SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK);
	__uint(max_entries, 4);
	__type(value, u32);
} stack SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_BLOOM_FILTER);
	/* sized for a negligible false-positive rate: 4096 * 3 / ln 2 bits,
	 * rounded up to 32768, for 5 values */
	__uint(max_entries, 4096);
	__uint(map_extra, 3); /* number of hash functions */
	__type(value, u32);
} bloom SEC(".maps");

struct lpm_key {
	u32 prefixlen;
	u8 addr[4];
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 8);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_key);
	__type(value, u32);
} lpm SEC(".maps");

/* value_size and max_entries are set by user space before load, as
 * libbpf-tools do for their stack maps */
struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 16);
	__uint(key_size, 4);
	__uint(value_size, 127 * 8);
} stacks SEC(".maps");

__u32 last_value;

static __always_inline long qs(void *map, u64 op, u32 v, u64 flags)
{
	long r;

	switch (op) {
	case 0:
		return bpf_map_push_elem(map, &v, flags);
	case 1:
		r = bpf_map_pop_elem(map, &v);
		break;
	case 2:
		r = bpf_map_peek_elem(map, &v);
		break;
	default:
		return -EINVAL;
	}
	last_value = r ? 0 : v;
	return r;
}

/* ctx[0]: 0 queue, 1 stack; ctx[1]: 0 push, 1 pop, 2 peek; ctx[2] value;
 * ctx[3] push flags. A popped or peeked value lands in last_value. */
SEC("raw_tp")
int qs_op(u64 *ctx)
{
	if (ctx[0] == 0)
		return qs(&queue, ctx[1], ctx[2], ctx[3]);
	return qs(&stack, ctx[1], ctx[2], ctx[3]);
}

/* ctx[0]: 0 push, 1 peek; ctx[1] value */
SEC("raw_tp")
int bloom_op(u64 *ctx)
{
	u32 v = ctx[1];

	if (ctx[0] == 0)
		return bpf_map_push_elem(&bloom, &v, BPF_ANY);
	return bpf_map_peek_elem(&bloom, &v);
}

/* ctx[0] = IPv4 address as a.b.c.d -> (a << 24 | b << 16 | c << 8 | d) */
SEC("raw_tp")
int lpm_lookup(u64 *ctx)
{
	struct lpm_key key = { .prefixlen = 32 };
	u32 addr = ctx[0];
	u32 *v;

	key.addr[0] = addr >> 24;
	key.addr[1] = addr >> 16;
	key.addr[2] = addr >> 8;
	key.addr[3] = addr;
	v = bpf_map_lookup_elem(&lpm, &key);
	return v ? *v : -ENOENT;
}

SEC("raw_tp")
int stack_id(u64 *ctx)
{
	return bpf_get_stackid(ctx, &stacks, BPF_F_USER_STACK);
}
