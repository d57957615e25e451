/* Linker test object B: uses A's `counts` as an extern map, has its own
 * weak `shared`, defines the global add_b() and a static helper() of the
 * same name as A's. */
#include "common.h"

extern struct counts_map counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u32);
} shared SEC(".maps") __weak;

int b_data = 10;
const volatile int b_ro = 100;
int b_bss[4];

static __noinline int helper(int x)
{
	return x * 2;
}

__noinline int add_b(int x)
{
	__u32 k = 1;
	__u64 *v = bpf_map_lookup_elem(&counts, &k);

	if (v)
		*v += x;
	b_bss[1] += x;
	return helper(x) + b_data + b_ro;
}

SEC("raw_tp/sys_enter")
int prog_b(__u64 *ctx)
{
	__u32 k = 0, val = 3;

	bpf_map_update_elem(&shared, &k, &val, 0);
	return add_b((int)ctx[0]) + b_ro + b_bss[1];
}

SEC("raw_tp/sys_exit")
int prog_c(__u64 *ctx)
{
	return helper(b_data) + bpf_core_field_exists(struct task_struct, tgid);
}

char LICENSE[] SEC("license") = "GPL";

/* Strong here, weak in C: this one wins. */
__noinline int weak_fn(int x)
{
	return x + 100;
}
