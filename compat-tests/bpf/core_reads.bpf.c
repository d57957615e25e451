/* CO-RE: field offsets through pointer chains, field existence and size,
 * bitfields, type and enum relocations, flavors, and a relocation that
 * cannot resolve (libbpf poisons the instruction). */
#include "compat.h"

/* Exists in no kernel: every relocation against it fails to match. */
struct userbpf_no_such_type {
	int nope;
} __core;

struct sample {
	int pid;
	int ppid;
	int leader_pid;
	unsigned int state;
	unsigned long total_vm;
	__u64 vruntime;
	__u32 bits;
	__u32 sizes;
	__u64 flags;
	char comm[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 16);
} samples SEC(".maps");

SEC("tp_btf/sched_switch")
int BPF_PROG(core_chains, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	struct sample *s = bpf_ringbuf_reserve(&samples, sizeof(*s), 0);

	if (!s)
		return 0;
	s->pid = BPF_CORE_READ(prev, pid);
	s->ppid = BPF_CORE_READ(prev, real_parent, tgid);
	s->leader_pid = BPF_CORE_READ(next, group_leader, real_parent, pid);
	s->total_vm = BPF_CORE_READ(next, mm, total_vm);
	s->vruntime = BPF_CORE_READ(next, se.vruntime);
	BPF_CORE_READ_STR_INTO(&s->comm, next, comm);
	bpf_ringbuf_submit(s, 0);
	return 0;
}

SEC("raw_tp/sched_process_exec")
int core_exists(void *ctx)
{
	struct task_struct *t = (void *)bpf_get_current_task();
	struct sample *s = bpf_ringbuf_reserve(&samples, sizeof(*s), 0);
	struct task_struct___old *old = (void *)t;
	struct userbpf_no_such_type *bogus = (void *)t;

	if (!s)
		return 0;
	if (bpf_core_field_exists(t->__state))
		s->state = BPF_CORE_READ(t, __state);
	else
		s->state = BPF_CORE_READ(old, state);
	s->flags = bpf_core_field_exists(old->state);
	s->flags |= (__u64)bpf_core_type_exists(struct userbpf_no_such_type) << 1;
	s->flags |= (__u64)bpf_core_type_exists(struct task_struct) << 2;
	s->flags |= (__u64)bpf_core_enum_value_exists(enum pid_type, PIDTYPE_MAX) << 3;
	s->flags |= (__u64)bpf_core_enum_value(enum pid_type, PIDTYPE_SID) << 8;
	s->flags |= (__u64)bpf_core_type_size(struct task_struct) << 16;
	s->flags |= (__u64)bpf_core_type_id_kernel(struct task_struct) << 40;
	s->sizes = bpf_core_field_size(t->comm) | bpf_core_field_size(t->mm) << 8 |
		   bpf_core_field_offset(t->se) << 16;
	/* Unreachable after relocation (the type is missing), so libbpf
	 * poisons the load instead of failing the object. */
	if (bpf_core_type_exists(struct userbpf_no_such_type))
		s->pid = BPF_CORE_READ(bogus, nope);
	bpf_ringbuf_submit(s, 0);
	return 0;
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(core_bitfields, struct task_struct *task)
{
	struct sample *s = bpf_ringbuf_reserve(&samples, sizeof(*s), 0);

	if (!s)
		return 0;
	s->bits = BPF_CORE_READ_BITFIELD_PROBED(task, sched_reset_on_fork) |
		  BPF_CORE_READ_BITFIELD_PROBED(task, in_execve) << 1 |
		  BPF_CORE_READ_BITFIELD(task, in_iowait) << 2;
	s->pid = task->pid;
	s->ppid = task->real_parent->tgid;
	s->vruntime = task->se.sum_exec_runtime;
	bpf_ringbuf_submit(s, 0);
	return 0;
}
