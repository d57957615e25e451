// SPDX-License-Identifier: MIT OR Apache-2.0
/* ARRAY_OF_MAPS, HASH_OF_MAPS and PROG_ARRAY (tail calls). */
#include "app.bpf.h"

struct inner_map {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, u32);
	__type(value, u64);
};

struct inner_map inner_a SEC(".maps");
struct inner_map inner_b SEC(".maps");

/* slots 0 and 2 filled by libbpf at load; user space adds more */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 4);
	__type(key, u32);
	__array(values, struct inner_map);
} outer_arr SEC(".maps") = {
	.values = { [0] = &inner_a, [2] = &inner_b },
};

/* filled by user space only */
struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, 4);
	__type(key, u32);
	__array(values, struct inner_map);
} outer_hash SEC(".maps");

int tail_one(u64 *ctx);

/* slot 1 filled by libbpf at load; slots 2 and 3 by user space */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 4);
	__type(key, u32);
	__array(values, int(u64 *));
} jmp SEC(".maps") = {
	.values = { [1] = (void *)&tail_one },
};

__u32 chain_runs;

/* ctx[0]: 0 outer_arr, 1 outer_hash; ctx[1] outer key; ctx[2] inner key.
 * Adds ctx[3] to the inner value and returns the new value. */
SEC("raw_tp")
int mim(u64 *ctx)
{
	u32 okey = ctx[1], ikey = ctx[2];
	void *inner;
	u64 *v;

	if (ctx[0] == 0)
		inner = bpf_map_lookup_elem(&outer_arr, &okey);
	else
		inner = bpf_map_lookup_elem(&outer_hash, &okey);
	if (!inner)
		return -ENOENT;
	v = bpf_map_lookup_elem(inner, &ikey);
	if (!v)
		return -E2BIG;
	__sync_fetch_and_add(v, ctx[3]);
	return *v;
}

/* ctx[0] = prog array index; returns 1 when the tail call falls through */
SEC("raw_tp")
int entry(u64 *ctx)
{
	bpf_tail_call(ctx, &jmp, ctx[0]);
	return 1;
}

SEC("raw_tp")
int tail_one(u64 *ctx)
{
	return 100;
}

/* tail-calls slot 3 (empty at first) */
SEC("raw_tp")
int tail_two(u64 *ctx)
{
	bpf_tail_call(ctx, &jmp, 3);
	return 200;
}

/* put in slot 3 by user space: tail-calls itself until the kernel's limit */
SEC("raw_tp")
int tail_chain(u64 *ctx)
{
	chain_runs++;
	bpf_tail_call(ctx, &jmp, 3);
	return 300;
}

/* a program of another type: the prog array refuses it */
SEC("uprobe")
int not_raw_tp(struct pt_regs *ctx)
{
	return 0;
}
