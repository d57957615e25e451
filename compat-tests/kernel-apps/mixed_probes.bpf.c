// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * mixed_probes: one object, two worlds. A uprobe on the app's own
 * marker_func() (user space: userbpf runs it in-process) and a kernel
 * BTF tracepoint (tp_btf/sys_enter, for getppid: only the kernel can run it)
 * count into the same ARRAY and HASH maps.
 */
#include "kapp.bpf.h"

enum { K_UPROBE, K_TRACEPOINT, K_NR };

const volatile __u32 targ_tgid = 0;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, K_NR);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* key 1: uprobe hits, 2: tracepoint hits, 3: sum of marker_func's
 * argument. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} by_kind SEC(".maps");

SEC("uprobe//proc/self/exe:marker_func")
int BPF_KPROBE(on_marker, int arg)
{
	if ((bpf_get_current_pid_tgid() >> 32) != targ_tgid)
		return 0;
	bump(&counters, K_UPROBE, 1);
	bump(&by_kind, 1, 1);
	bump(&by_kind, 3, (__u64)arg);
	return 0;
}

SEC("tp_btf/sys_enter")
int on_getppid(__u64 *ctx)
{
	/* (struct pt_regs *regs, long id): getppid is 110 on x86-64. */
	if (ctx[1] != 110)
		return 0;
	if ((bpf_get_current_pid_tgid() >> 32) != targ_tgid)
		return 0;
	bump(&counters, K_TRACEPOINT, 1);
	bump(&by_kind, 2, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
