// SPDX-License-Identifier: GPL-2.0
/* The programs of benches/syscall/run.sh (issue 7): what a syscall
 * tracepoint costs each getppid() call, empty and with a HASH update, as
 * userbpf's agent runs them and as the kernel does. The loader enables one
 * program per row (bpf_program__set_autoload). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define NR_GETPPID 110

/* Calls seen per process (key = tgid): the HASH row's work, and the check
 * that a row's program really ran on every call the target made. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

/* A HASH lookup then an update, as the uprobe benchmark's HASH row. */
static __always_inline void count_call(void)
{
	__u32 k = bpf_get_current_pid_tgid() >> 32;
	__u64 n = 1, *v = bpf_map_lookup_elem(&counts, &k);

	if (v)
		n = *v + 1;
	bpf_map_update_elem(&counts, &k, &n, BPF_ANY);
}

SEC("tp/syscalls/sys_enter_getppid")
int tp_empty(void *ctx)
{
	return 0;
}

SEC("tp/syscalls/sys_enter_getppid")
int tp_map(void *ctx)
{
	count_call();
	return 0;
}

/* A tracepoint on another syscall: what interception costs a syscall
 * that has no program. */
SEC("tp/syscalls/sys_enter_getpid")
int tp_other(void *ctx)
{
	return 0;
}

/* Fires on every syscall. */
SEC("raw_tracepoint/sys_enter")
int raw_empty(void *ctx)
{
	return 0;
}

/* ctx->args = { struct pt_regs *, syscall nr }: counts getppid only. */
SEC("raw_tracepoint/sys_enter")
int raw_map(struct bpf_raw_tracepoint_args *ctx)
{
	if (ctx->args[1] == NR_GETPPID)
		count_call();
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
