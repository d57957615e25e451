// Syscall sections for tests/syscall_attach.rs (loader side: records).
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <stdbool.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

extern bool LINUX_HAS_SYSCALL_WRAPPER __kconfig;

__u64 hits;

SEC("tp/syscalls/sys_enter_openat")
int tp_enter_openat(void *ctx) { hits++; return 0; }

SEC("tracepoint/syscalls/sys_exit_openat")
int tp_exit_openat(void *ctx) { hits++; return 0; }

SEC("tp/raw_syscalls/sys_enter")
int rawsc_enter(void *ctx) { hits++; return 0; }

SEC("raw_tp/sys_enter")
int raw_enter(void *ctx) { hits++; return 0; }

SEC("raw_tracepoint/sys_exit")
int raw_exit(void *ctx) { hits++; return 0; }

SEC("ksyscall/openat")
int ks_openat(struct pt_regs *ctx)
{
	/* BPF_KSYSCALL's choice, without CO-RE (the UAPI pt_regs names). */
	struct pt_regs *regs = LINUX_HAS_SYSCALL_WRAPPER ? (struct pt_regs *)ctx->rdi : ctx;
	long dfd = 0;

	bpf_probe_read_user(&dfd, sizeof(dfd), &regs->rdi);
	hits += dfd;
	return 0;
}

SEC("kretsyscall/newfstatat")
int BPF_KRETPROBE(kret_newfstatat, long ret) { hits += ret; return 0; }

SEC("ksyscall")
int ks_manual(void *ctx) { hits++; return 0; }

SEC("tp/syscalls/sys_enter_no_such_syscall")
int tp_missing(void *ctx) { hits++; return 0; }

char LICENSE[] SEC("license") = "GPL";
