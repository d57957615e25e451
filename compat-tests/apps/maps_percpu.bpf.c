// SPDX-License-Identifier: MIT OR Apache-2.0
/* PERCPU_ARRAY, PERCPU_HASH, LRU_PERCPU_HASH. The programs run pinned to a
 * CPU (BPF_F_TEST_RUN_ON_CPU), so per-CPU slots are deterministic. */
#include "app.bpf.h"

/* 12 bytes: user space sees roundup(12, 8) = 16 bytes per CPU */
struct triple {
	u32 count;
	u32 sum;
	u32 cpu;
};

/* 4-byte values (8 per CPU in user space); max_entries raised to 8 before load */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 4);
	__type(key, u32);
	__type(value, u32);
} pcpu_arr SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4);
	__type(key, u32);
	__type(value, struct triple);
} pcpu_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, 8);
	__type(key, u32);
	__type(value, u64);
} lru_pcpu SEC(".maps");

/* ctx[0] = key, ctx[1] = addend; returns the CPU it ran on */
SEC("raw_tp")
int arr_add(u64 *ctx)
{
	u32 key = ctx[0];
	u32 *v = bpf_map_lookup_elem(&pcpu_arr, &key);

	if (!v)
		return -ENOENT;
	*v += ctx[1];
	return bpf_get_smp_processor_id();
}

/* ctx[0] = key, ctx[1] = addend; 1 if updated, else the insert's result */
SEC("raw_tp")
int hash_add(u64 *ctx)
{
	u32 key = ctx[0];
	struct triple *t = bpf_map_lookup_elem(&pcpu_hash, &key);
	struct triple n = { .count = 1, .sum = ctx[1], .cpu = bpf_get_smp_processor_id() };

	if (!t)
		return bpf_map_update_elem(&pcpu_hash, &key, &n, BPF_NOEXIST);
	t->count += 1;
	t->sum += ctx[1];
	t->cpu = bpf_get_smp_processor_id();
	return 1;
}

/* ctx[0] = key, ctx[1] = addend */
SEC("raw_tp")
int lru_add(u64 *ctx)
{
	u32 key = ctx[0];
	u64 *v = bpf_map_lookup_elem(&lru_pcpu, &key);
	u64 init = ctx[1];

	if (v) {
		*v += ctx[1];
		return 1;
	}
	return bpf_map_update_elem(&lru_pcpu, &key, &init, BPF_NOEXIST);
}
