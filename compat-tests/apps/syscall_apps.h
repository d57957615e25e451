/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Shared by the syscall apps of issue 7 (BPF and user side):
 * syscall_open (opensnoop-like) and syscall_count (syscount-like).
 * The BPF side includes vmlinux.h first, the user side <linux/types.h>.
 */
#ifndef USERBPF_SYSCALL_APPS_H
#define USERBPF_SYSCALL_APPS_H

#define SA_COMM_LEN 16
#define SA_NAME_LEN 256

/* One openat(2), as syscall_open's sys_exit_openat program emits it (the
 * same bytes through a ring buffer and a perf buffer). The trace_entry
 * header (common_type, common_pid) is not here: the kernel refuses
 * tracepoint programs any access below offset 8 of their context. */
struct open_event {
	__u64 ts_ns;       /* bpf_ktime_get_ns() at exit: orders perf records */
	__u32 pid;         /* tgid */
	__u32 tid;
	__s32 enter_nr;    /* __syscall_nr of the enter and exit contexts */
	__s32 exit_nr;
	__s32 dfd;         /* args[0..3] at enter */
	__s32 flags;
	__u64 mode;
	__s64 ret;         /* the exit context's ret */
	__s32 name_len;    /* bpf_probe_read_user_str's return */
	__u32 pad;
	char comm[SA_COMM_LEN];
	char fname[SA_NAME_LEN];
};

/* Per syscall id (syscall_count's `data` HASH). */
struct count_data {
	__u64 count;
	__u64 errors;      /* exits with ret < 0 */
	__u64 total_ns;    /* sum of exit - enter */
};

#endif
