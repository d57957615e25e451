// Programs for tests/syscall_e2e.rs: syscall sections run by the agent
// inside a target, each test attaching the few it needs. Everything they
// see lands in `state` (.bss), which the loader reads and switches.
#include <linux/types.h>
#include <linux/bpf.h>

/* The kernel's pt_regs (CO-RE against vmlinux BTF), as vmlinux.h has it;
 * __VMLINUX_H__ makes bpf_tracing.h use these names. */
struct pt_regs {
	unsigned long r15, r14, r13, r12, bp, bx, r11, r10, r9, r8;
	unsigned long ax, cx, dx, si, di, orig_ax, ip, cs, flags, sp, ss;
} __attribute__((preserve_access_index));
#define __VMLINUX_H__ 1

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "e2e.h"

/* BPF_KSYSCALL without arguments leaves its `regs` unused. */
#pragma clang diagnostic ignored "-Wunused-variable"

#define NR_GETPPID 110

struct e2e_state state;

#define ST(n) state.st[SLOT_##n]

static __always_inline void bump(int slot)
{
	__sync_fetch_and_add(&state.st[slot], 1);
}

/* 1. ksyscall / kretsyscall, with our return override. */

SEC("ksyscall/getppid")
int BPF_KSYSCALL(ks_getppid)
{
	bump(SLOT_ks_getppid);
	if (ST(mode) == 1)
		bpf_override_return(ctx, 4242);
	return 0;
}

SEC("kretsyscall/getppid")
int BPF_KRETPROBE(kret_getppid, long ret)
{
	bump(SLOT_kret_getppid);
	ST(kret_last) = ret;
	if (ST(mode) == 2)
		bpf_override_return(ctx, ret + 1000);
	return 0;
}

SEC("ksyscall/unlink")
int BPF_KSYSCALL(ks_unlink, const char *pathname)
{
	bump(SLOT_ks_unlink);
	ST(unlink_read) =
		bpf_probe_read_user_str(state.unlink_path, sizeof(state.unlink_path), pathname);
	if (ST(mode) == 1) {
		bump(SLOT_unlink_skipped);
		bpf_override_return(ctx, 0);
	}
	return 0;
}

SEC("ksyscall/openat")
int BPF_KSYSCALL(ks_openat, int dfd, const char *filename, int flags, unsigned int mode)
{
	char buf[64];

	if (bpf_probe_read_user_str(buf, sizeof(buf), filename) < 4)
		return 0;
	if (buf[0] != 'k' || buf[1] != 's' || buf[2] != '_')
		return 0;
	bump(SLOT_ks_openat);
	ST(ks_dfd) = dfd;
	ST(ks_flags) = flags;
	ST(ks_mode) = mode;
	bpf_probe_read_user_str(state.ks_path, sizeof(state.ks_path), filename);
	return 0;
}

/* 2. sys_enter_openat rewrites ".../aaa" into ".../bbb" before the call. */

struct openat_enter {
	__u64 common;
	int nr;
	int pad;
	long dfd;
	const char *filename;
	long flags;
	long mode;
};

SEC("tp/syscalls/sys_enter_openat")
int tp_openat_rewrite(struct openat_enter *ctx)
{
	const char *fn = ctx->filename;
	char buf[128];
	char rep[4] = "bbb";
	long n = bpf_probe_read_user_str(buf, sizeof(buf), fn);
	__u32 i;

	if (n < 5 || n > (long)sizeof(buf))
		return 0;
	/* n counts the NUL: the '/' of "/aaa" is at n - 5. */
	i = (n - 5) & 127;
	if (i > sizeof(buf) - 5)
		return 0;
	if (buf[i] != '/' || buf[i + 1] != 'a' || buf[i + 2] != 'a' || buf[i + 3] != 'a')
		return 0;
	bump(SLOT_tp_rewrite);
	/* `int dfd` in an 8-byte slot, as the kernel records it. */
	ST(tp_dfd) = (int)ctx->dfd;
	ST(tp_flags) = ctx->flags;
	bpf_probe_read_user_str(state.tp_path, sizeof(state.tp_path), fn);
	bpf_probe_write_user((void *)(fn + i + 1), rep, 3);
	return 0;
}

/* 3. Raw tracepoints, raw_syscalls, syscalls/sys_{enter,exit}_getppid. */

SEC("raw_tp/sys_enter")
int raw_enter(struct bpf_raw_tracepoint_args *ctx)
{
	struct pt_regs *regs = (struct pt_regs *)ctx->args[0];

	if (ctx->args[1] != NR_GETPPID)
		return 0;
	bump(SLOT_raw_enter);
	if (BPF_CORE_READ(regs, di) == 11 && BPF_CORE_READ(regs, si) == 22 &&
	    BPF_CORE_READ(regs, dx) == 33 && BPF_CORE_READ(regs, r10) == 44 &&
	    BPF_CORE_READ(regs, r8) == 55 && BPF_CORE_READ(regs, r9) == 66 &&
	    BPF_CORE_READ(regs, orig_ax) == NR_GETPPID)
		bump(SLOT_raw_enter_args);
	ST(raw_enter_ax) = BPF_CORE_READ(regs, ax);
	return 0;
}

SEC("raw_tp/sys_exit")
int raw_exit(struct bpf_raw_tracepoint_args *ctx)
{
	struct pt_regs *regs = (struct pt_regs *)ctx->args[0];

	if (BPF_CORE_READ(regs, orig_ax) != NR_GETPPID)
		return 0;
	bump(SLOT_raw_exit);
	ST(raw_exit_ret) = ctx->args[1];
	ST(raw_exit_ax) = BPF_CORE_READ(regs, ax);
	return 0;
}

struct raw_syscalls_enter {
	__u64 common;
	long id;
	unsigned long args[6];
};

SEC("tp/raw_syscalls/sys_enter")
int rawsc_enter(struct raw_syscalls_enter *ctx)
{
	if (ctx->id != NR_GETPPID)
		return 0;
	bump(SLOT_rawsc_enter);
	if (ctx->args[0] == 11 && ctx->args[1] == 22 && ctx->args[2] == 33 &&
	    ctx->args[3] == 44 && ctx->args[4] == 55 && ctx->args[5] == 66)
		bump(SLOT_rawsc_args);
	return 0;
}

struct trace_common {
	unsigned short common_type;
	unsigned char common_flags;
	unsigned char common_preempt_count;
	int common_pid;
};

struct getppid_enter {
	struct trace_common common;
	int nr;
};

struct getppid_exit {
	struct trace_common common;
	int nr;
	int pad;
	long ret;
};

SEC("tp/syscalls/sys_enter_getppid")
int tp_getppid(struct getppid_enter *ctx)
{
	bump(SLOT_tp_getppid);
	ST(tp_getppid_nr) = ctx->nr;
	ST(tp_getppid_pid) = ctx->common.common_pid;
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_getppid")
int tp_exit_getppid(struct getppid_exit *ctx)
{
	bump(SLOT_tp_exit_getppid);
	ST(tp_exit_nr) = ctx->nr;
	ST(tp_exit_ret) = ctx->ret;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
