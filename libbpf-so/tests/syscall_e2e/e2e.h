/* Shared by progs.bpf.c and loader.c (tests/syscall_e2e.rs): the .bss
 * the programs fill and the loader reads and switches through its
 * mmap'ed view. One slot per counter or recorded value. */
#ifndef SYSCALL_E2E_H
#define SYSCALL_E2E_H

#include <linux/types.h>

#define E2E_SLOTS(X)                                                           \
	X(mode)           /* 1: ksyscall overrides, 2: kretsyscall adds 1000 */ \
	X(ks_getppid)     /* ksyscall/getppid runs */                           \
	X(kret_getppid)   /* kretsyscall/getppid runs */                        \
	X(kret_last)      /* the result kretsyscall/getppid saw last */         \
	X(ks_unlink)      /* ksyscall/unlink runs */                            \
	X(unlink_skipped) /* unlink calls it overrode */                        \
	X(unlink_read)    /* bpf_probe_read_user_str of its pathname */         \
	X(ks_openat)      /* ksyscall/openat runs on a "ks_" file */            \
	X(ks_dfd)                                                               \
	X(ks_flags)                                                             \
	X(ks_mode)                                                              \
	X(tp_rewrite)     /* sys_enter_openat rewrites of ".../aaa" */          \
	X(tp_dfd)                                                               \
	X(tp_flags)                                                             \
	X(raw_enter)      /* raw_tp/sys_enter, getppid */                       \
	X(raw_enter_args) /* ... with regs di..r9 = 11..66, orig_ax = 110 */    \
	X(raw_enter_ax)   /* regs->ax at entry (-ENOSYS) */                     \
	X(raw_exit)       /* raw_tp/sys_exit, getppid */                        \
	X(raw_exit_ret)                                                         \
	X(raw_exit_ax)                                                          \
	X(rawsc_enter)    /* tp/raw_syscalls/sys_enter, id 110 */               \
	X(rawsc_args)     /* ... with args 11..66 */                            \
	X(tp_getppid)     /* tp/syscalls/sys_enter_getppid */                   \
	X(tp_getppid_nr)                                                        \
	X(tp_getppid_pid)                                                       \
	X(tp_exit_getppid) /* tp/syscalls/sys_exit_getppid */                   \
	X(tp_exit_nr)                                                           \
	X(tp_exit_ret)

enum e2e_slot {
#define E2E_ENUM(n) SLOT_##n,
	E2E_SLOTS(E2E_ENUM)
#undef E2E_ENUM
	SLOT_COUNT
};

struct e2e_state {
	__s64 st[SLOT_COUNT];
	char ks_path[64];     /* ksyscall/openat's filename */
	char unlink_path[64]; /* ksyscall/unlink's pathname */
	char tp_path[128];    /* sys_enter_openat's filename before the rewrite */
};

#endif
