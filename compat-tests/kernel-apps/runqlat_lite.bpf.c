// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * runqlat_lite: run-queue latency of one process's threads, the way
 * libbpf-tools' runqlat measures it: a timestamp when a task is woken
 * (sched_wakeup, sched_wakeup_new) or preempted while runnable
 * (sched_switch, prev still TASK_RUNNING), and the time until it is
 * switched in, into a log2 histogram of microseconds.
 *
 * Program types: tp_btf (sched_wakeup, sched_switch) and a classic
 * tracepoint (sched/sched_wakeup_new).
 */
#include "kapp.bpf.h"

#define MAX_SLOTS 26
#define TASK_RUNNING 0

enum { C_WAKEUP, C_WAKEUP_NEW, C_SWITCH_IN, C_SAMPLES, C_NR };

/* The process to watch (set before load). */
const volatile __u32 targ_tgid = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);
	__type(value, __u64);
} start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} hist SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, C_NR);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

static __always_inline void record_start(__u32 tgid, __u32 pid)
{
	__u64 ts;

	if (tgid != targ_tgid || !pid)
		return;
	ts = bpf_ktime_get_ns();
	bpf_map_update_elem(&start, &pid, &ts, BPF_ANY);
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(handle_sched_wakeup, struct task_struct *p)
{
	__u32 tgid = BPF_CORE_READ(p, tgid);

	if (tgid == targ_tgid)
		bump(&counts, C_WAKEUP, 1);
	record_start(tgid, BPF_CORE_READ(p, pid));
	return 0;
}

/* The parent wakes its new thread: the current task is in our process. */
SEC("tracepoint/sched/sched_wakeup_new")
int handle_sched_wakeup_new(struct trace_event_raw_sched_wakeup_template *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;

	if (tgid != targ_tgid)
		return 0;
	bump(&counts, C_WAKEUP_NEW, 1);
	record_start(tgid, ctx->pid);
	return 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(handle_sched_switch, bool preempt, struct task_struct *prev,
	     struct task_struct *next)
{
	__u32 pid, slot;
	__u64 *tsp, delta;

	if (BPF_CORE_READ(prev, __state) == TASK_RUNNING)
		record_start(BPF_CORE_READ(prev, tgid), BPF_CORE_READ(prev, pid));

	if (BPF_CORE_READ(next, tgid) != targ_tgid)
		return 0;
	bump(&counts, C_SWITCH_IN, 1);
	pid = BPF_CORE_READ(next, pid);
	tsp = bpf_map_lookup_elem(&start, &pid);
	if (!tsp)
		return 0;
	delta = bpf_ktime_get_ns() - *tsp;
	bpf_map_delete_elem(&start, &pid);
	if ((__s64)delta < 0)
		return 0;
	slot = log2_u64(delta / 1000U);
	if (slot >= MAX_SLOTS)
		slot = MAX_SLOTS - 1;
	bump(&hist, slot, 1);
	bump(&counts, C_SAMPLES, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
