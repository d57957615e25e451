/* CO-RE test object: one relocation of every kind clang emits. */
#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

typedef int pid_t;
struct task_struct {
	pid_t pid;
	int tgid;
	unsigned int flags : 3;
	struct task_struct *parent;
} __attribute__((preserve_access_index));

enum task_state { TASK_RUNNING = 0, TASK_DEAD = 64 };

int counter = 0;
const volatile int config = 1;

__attribute__((noinline)) static int helper(int x)
{
	return x * 2;
}

SEC("kprobe/do_nothing")
int probe(struct task_struct *task)
{
	int pid = BPF_CORE_READ(task, pid);
	int ppid = BPF_CORE_READ(task, parent, tgid);
	if (bpf_core_field_exists(task->tgid))
		pid += 1;
	pid += bpf_core_field_size(task->tgid);
	pid += BPF_CORE_READ_BITFIELD_PROBED(task, flags);
	/* Bitfield shifts, spelled out: the macro's may be folded away. */
	pid += __builtin_preserve_field_info(task->flags, BPF_FIELD_LSHIFT_U64);
	pid += __builtin_preserve_field_info(task->flags, BPF_FIELD_RSHIFT_U64);
	pid += bpf_core_type_exists(struct task_struct);
	pid += bpf_core_type_size(struct task_struct);
	pid += bpf_core_type_id_local(struct task_struct);
	pid += bpf_core_type_id_kernel(struct task_struct);
	pid += bpf_core_enum_value_exists(enum task_state, TASK_DEAD);
	pid += bpf_core_enum_value(enum task_state, TASK_DEAD);
	pid += bpf_core_type_matches(struct task_struct);
	counter += helper(pid + ppid + config);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
