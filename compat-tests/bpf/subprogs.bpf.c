/* Subprograms: static and global functions in .text shared by several
 * entry points, nested calls, subprograms that use maps, globals and CO-RE,
 * and a bpf_loop callback (an ld_imm64 of a function address). */
#include "compat.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u64);
} seen SEC(".maps");

__u64 calls;
const volatile __u32 scale = 3;

static __noinline __u64 mix(__u64 a, __u64 b)
{
	return (a * 31) ^ (b >> 3);
}

static __noinline __u64 note_pid(__u32 pid)
{
	__u64 *v = bpf_map_lookup_elem(&seen, &pid), one = 1;

	calls++;
	if (v)
		return __sync_fetch_and_add(v, 1);
	bpf_map_update_elem(&seen, &pid, &one, BPF_ANY);
	return mix(pid, scale);
}

static __noinline int parent_tgid(struct task_struct *t)
{
	return BPF_CORE_READ(t, real_parent, tgid) + (int)note_pid(t->pid);
}

/* A global function: verified on its own, so it takes only scalars. */
__noinline int global_weight(int x)
{
	return x * (int)scale + 1;
}

struct loop_ctx {
	__u64 acc;
	__u32 pid;
};

static int loop_body(__u32 i, void *data)
{
	struct loop_ctx *c = data;

	c->acc = mix(c->acc, i + c->pid);
	return i > 8;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(sub_fork, struct task_struct *parent, struct task_struct *child)
{
	return parent_tgid(child) + global_weight(child->pid);
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(sub_exit, struct task_struct *p)
{
	struct loop_ctx c = { .pid = p->pid };

	bpf_loop(16, loop_body, &c, 0);
	return (int)note_pid(p->tgid) + (int)c.acc;
}

SEC("raw_tp/sys_enter")
int sub_plain(void *ctx)
{
	return global_weight(bpf_get_smp_processor_id()) + (int)mix(calls, 1);
}
