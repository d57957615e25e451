/* Linker test object C: a .kconfig extern (an ephemeral section), an
 * extern variable and map defined elsewhere, a static variable, and a weak
 * function that B's strong one overrides. */
#include "common.h"

extern int LINUX_KERNEL_VERSION __kconfig;
extern int b_data;
extern struct counts_map counts SEC(".maps");

static int hits;

__weak __noinline int weak_fn(int x)
{
	return x + 1;
}

SEC("raw_tp/sys_exit")
int prog_d(__u64 *ctx)
{
	__u32 k = 2;
	__u64 *v = bpf_map_lookup_elem(&counts, &k);

	if (v)
		*v += 7;
	hits++;
	return weak_fn(b_data) + (LINUX_KERNEL_VERSION > 0) + hits * 1000;
}

char LICENSE[] SEC("license") = "GPL";
