// SPDX-License-Identifier: GPL-2.0
/* A mixed object: a uprobe (user space, in the target) and a kernel
 * tracepoint share an ARRAY and a HASH, which therefore live in the kernel. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 4); __type(key, __u32); __type(value, __u64); } counts SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 16); __type(key, __u32); __type(value, __u64); } hash SEC(".maps");

SEC("tp_btf/sys_enter")
int on_getppid(__u64 *ctx)
{
	/* (struct pt_regs *regs, long id): getppid is 110 on x86-64. */
	if (ctx[1] != 110)
		return 0;
	__u32 k = 0;
	__u64 one = 1, *v = bpf_map_lookup_elem(&counts, &k);

	if (v)
		__sync_fetch_and_add(v, 1);
	bpf_map_update_elem(&hash, &k, &one, BPF_ANY);
	return 0;
}

SEC("uprobe")
int on_marker(void *ctx)
{
	__u32 k = 1;
	__u64 one = 1, *v = bpf_map_lookup_elem(&counts, &k), *c;

	if (v)
		__sync_fetch_and_add(v, 1);
	c = bpf_map_lookup_elem(&hash, &k);
	if (c)
		*c += 1;
	else
		bpf_map_update_elem(&hash, &k, &one, BPF_ANY);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
