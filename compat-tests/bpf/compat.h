/* Shared prelude of the compat-tests BPF objects.
 *
 * No vmlinux.h: the few kernel types the programs touch are declared here
 * with preserve_access_index, holding only the members used, so CO-RE has
 * real work to do (the offsets below are not the kernel's). */
#ifndef USERBPF_COMPAT_H
#define USERBPF_COMPAT_H

#include <stdbool.h>
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#define __core __attribute__((preserve_access_index))

struct mm_struct {
	unsigned long total_vm;
	unsigned long hiwater_rss;
} __core;

struct sched_entity {
	__u64 vruntime;
	__u64 sum_exec_runtime;
} __core;

struct task_struct {
	unsigned int __state;
	int prio;
	int pid;
	int tgid;
	struct task_struct *real_parent;
	struct task_struct *group_leader;
	struct mm_struct *mm;
	struct sched_entity se;
	char comm[16];
	unsigned int sched_reset_on_fork : 1;
	unsigned int in_execve : 1;
	unsigned int in_iowait : 1;
} __core;

/* A flavor from before 5.14, when __state was `long state`. */
struct task_struct___old {
	long state;
} __core;

enum pid_type {
	PIDTYPE_PID,
	PIDTYPE_TGID,
	PIDTYPE_PGID,
	PIDTYPE_SID,
	PIDTYPE_MAX,
};

char LICENSE[] SEC("license") = "GPL";

#endif
