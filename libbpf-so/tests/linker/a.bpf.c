/* Linker test object A: defines `counts`, a weak `shared` map, data in
 * .data/.rodata/.bss, a static subprogram and a CO-RE relocation; calls
 * add_b(), defined in B. */
#include "common.h"

struct counts_map counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u32);
} shared SEC(".maps") __weak;

extern int add_b(int x);

int a_data = 5;
const volatile int a_ro = 7;
int a_bss;

static __noinline int helper(int x)
{
	return x * 3;
}

SEC("raw_tp/sys_enter")
int prog_a(__u64 *ctx)
{
	__u32 k = 0;
	__u64 *v = bpf_map_lookup_elem(&counts, &k);

	if (v)
		*v += 1;
	a_bss += 1;
	return helper((int)ctx[1]) + add_b(a_data) + a_ro + a_bss +
	       bpf_core_field_size(struct task_struct, pid) * 1000 +
	       bpf_core_type_exists(struct task_struct) * 10000;
}

char LICENSE[] SEC("license") = "GPL";
