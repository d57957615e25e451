// SPDX-License-Identifier: MIT OR Apache-2.0
/* ARRAY, HASH, LRU_HASH, an mmapable ARRAY, a spin-locked HASH and maps
 * user space reshapes before load. Programs are bare SEC("raw_tp") (no
 * auto-attach) and run through BPF_PROG_TEST_RUN; ctx = u64 args. */
#include "app.bpf.h"

struct val {
	u64 count;
	u64 sum;
};

struct locked_val {
	struct bpf_spin_lock lock;
	u32 a;
	u32 b;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);
	__type(key, u32);
	__type(value, u64);
} arr SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, u32);
	__type(value, struct val);
} hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16);
	__type(key, u32);
	__type(value, u64);
} lru SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, u32);
	__type(value, u64);
} mm SEC(".maps");

/* Only user space touches it (tracing programs may not use bpf_spin_lock). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4);
	__type(key, u32);
	__type(value, struct locked_val);
} locked SEC(".maps");

/* Sizes without BTF types: user space resizes it before load. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4);
	__uint(key_size, 4);
	__uint(value_size, 4);
} resized SEC(".maps");

/* Never created: user space turns autocreate off (and autoload off for
 * the program that uses it). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4);
	__type(key, u32);
	__type(value, u32);
} unused SEC(".maps");

/* ctx[0] = key, ctx[1] = addend */
SEC("raw_tp")
int array_add(u64 *ctx)
{
	u32 key = ctx[0];
	u64 *v = bpf_map_lookup_elem(&arr, &key);

	if (!v)
		return -ENOENT;
	__sync_fetch_and_add(v, ctx[1]);
	return 0;
}

/* ctx[0] = key, ctx[1] = value; 1 if it updated, else the insert's result */
SEC("raw_tp")
int hash_upsert(u64 *ctx)
{
	u32 key = ctx[0];
	struct val *v = bpf_map_lookup_elem(&hash, &key);
	struct val nv = { .count = 1, .sum = ctx[1] };

	if (v) {
		__sync_fetch_and_add(&v->count, 1);
		__sync_fetch_and_add(&v->sum, ctx[1]);
		return 1;
	}
	return bpf_map_update_elem(&hash, &key, &nv, BPF_NOEXIST);
}

/* ctx[0] = op, ctx[1] = key: 0 delete, 1 update EXIST, 2 update NOEXIST,
 * 3 lookup (returns sum or -ENOENT) */
SEC("raw_tp")
int hash_ops(u64 *ctx)
{
	u32 key = ctx[1];
	struct val nv = { .count = 100, .sum = 100 };
	struct val *v;

	switch (ctx[0]) {
	case 0:
		return bpf_map_delete_elem(&hash, &key);
	case 1:
		return bpf_map_update_elem(&hash, &key, &nv, BPF_EXIST);
	case 2:
		return bpf_map_update_elem(&hash, &key, &nv, BPF_NOEXIST);
	case 3:
		v = bpf_map_lookup_elem(&hash, &key);
		return v ? v->sum : -ENOENT;
	}
	return -EINVAL;
}

/* ctx[0] = key, ctx[1] = value */
SEC("raw_tp")
int lru_touch(u64 *ctx)
{
	u32 key = ctx[0];
	u64 val = ctx[1];

	return bpf_map_update_elem(&lru, &key, &val, BPF_ANY);
}

SEC("raw_tp")
int mm_add(u64 *ctx)
{
	u32 key = ctx[0];
	u64 *v = bpf_map_lookup_elem(&mm, &key);

	if (!v)
		return -ENOENT;
	__sync_fetch_and_add(v, ctx[1]);
	return 0;
}

/* Writes the second u64 of a value that is only 16 bytes after resizing. */
SEC("raw_tp")
int resized_write(u64 *ctx)
{
	u32 key = ctx[0];
	u64 *v = bpf_map_lookup_elem(&resized, &key);

	if (!v)
		return -ENOENT;
	v[1] = ctx[1];
	return 0;
}

SEC("raw_tp")
int uses_unused(u64 *ctx)
{
	u32 key = 0;
	u32 *v = bpf_map_lookup_elem(&unused, &key);

	return v ? *v : 0;
}

/* Loaded, never attached. */
SEC("uprobe")
int probe_only(struct pt_regs *ctx)
{
	u32 key = 0;
	u64 *v = bpf_map_lookup_elem(&arr, &key);

	if (v)
		__sync_fetch_and_add(v, 1);
	return 0;
}
