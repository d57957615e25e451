// SPDX-License-Identifier: MIT OR Apache-2.0
/* malloccount: counts malloc calls and the bytes they ask for, per process.
 *
 * A plain libbpf program: no vmlinux.h, only the UAPI headers and Debian's
 * <bpf/bpf_helpers.h> / <bpf/bpf_tracing.h> (built with -D__TARGET_ARCH_x86).
 * The section names the target, so the skeleton's attach() attaches it to
 * every process that maps libc.so.6: with the real libbpf, a kernel uprobe;
 * with userbpf, a link that the agent in each `userbpf start`ed process
 * installs. */
#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "malloccount.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_PIDS);
	__type(key, __u32);
	__type(value, struct malloc_stats);
} counts SEC(".maps");

SEC("uprobe/libc.so.6:malloc")
int BPF_KPROBE(count_malloc, unsigned long size)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct malloc_stats *s, zero = {};

	s = bpf_map_lookup_elem(&counts, &tgid);
	if (!s) {
		/* NOEXIST: another thread may have added it meanwhile. */
		bpf_map_update_elem(&counts, &tgid, &zero, BPF_NOEXIST);
		s = bpf_map_lookup_elem(&counts, &tgid);
		if (!s)
			return 0;
	}
	__sync_fetch_and_add(&s->calls, 1);
	__sync_fetch_and_add(&s->bytes, size);
	/* Every time: a process may exec after its first malloc (a shell's
	 * child before it runs the program), and keeps its pid. */
	bpf_get_current_comm(s->comm, sizeof(s->comm));
	return 0;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
