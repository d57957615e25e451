/*
 * CO-RE relocations against the running kernel's BTF: local definitions of
 * kernel types (subsets, flavors, deliberately wrong ones) read through
 * every CO-RE helper of libbpf's bpf_core_read.h, both with probe reads
 * (kprobe) and with direct loads (tp_btf).
 */
#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

typedef int pid_t;

struct mm_struct {
	unsigned long task_size;
} __attribute__((preserve_access_index));

struct task_struct {
	unsigned int __state;
	unsigned int flags;
	int prio;
	pid_t pid;
	pid_t tgid;
	struct task_struct *real_parent;
	char comm[16];
	struct mm_struct *mm;
} __attribute__((preserve_access_index));

/* Before 5.14 the state was a long named `state`. */
struct task_struct___old {
	long state;
} __attribute__((preserve_access_index));

/* A field no kernel has. */
struct task_struct___fake {
	int no_such_field;
} __attribute__((preserve_access_index));

/* 64-bit and unsigned locally, unsigned int in the kernel: loads narrow. */
struct task_struct___u64 {
	unsigned long long flags;
} __attribute__((preserve_access_index));

/* 64-bit and signed locally, int in the kernel: a load cannot narrow. */
struct task_struct___wide {
	long pid;
} __attribute__((preserve_access_index));

/* The kernel's sk_buff keeps pkt_type in an anonymous struct in an
 * anonymous union. */
struct sk_buff {
	__u8 pkt_type : 3;
	unsigned int len;
} __attribute__((preserve_access_index));

struct no_such_struct {
	int x;
} __attribute__((preserve_access_index));

enum bpf_map_type {
	BPF_MAP_TYPE_RINGBUF = 27,
	BPF_MAP_TYPE_NO_SUCH_MAP = 1000,
};

/* 64-bit enumerators: the kernel's type is an ENUM64. */
enum perf_callchain_context {
	PERF_CONTEXT_KERNEL = (__u64)-128,
};

__u64 out[64];

SEC("kprobe/do_exit")
int probe_reads(void *ctx)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	struct sk_buff *skb = (void *)ctx;
	char c;

	out[0] = BPF_CORE_READ(task, pid);
	out[1] = BPF_CORE_READ(task, real_parent, tgid);
	out[2] = bpf_core_field_exists(task->__state);
	out[3] = bpf_core_field_size(task->comm);
	bpf_core_read(&c, 1, &task->comm[1]);
	out[4] = c;
	out[5] = bpf_core_field_exists(((struct task_struct___old *)task)->state);
	if (bpf_core_field_exists(((struct task_struct___old *)task)->state))
		out[6] = BPF_CORE_READ((struct task_struct___old *)task, state);
	out[7] = bpf_core_field_exists(((struct task_struct___fake *)task)->no_such_field);
	out[8] = bpf_core_type_exists(struct task_struct);
	out[9] = bpf_core_type_size(struct task_struct);
	out[10] = bpf_core_type_id_kernel(struct task_struct);
	out[11] = bpf_core_type_id_local(struct task_struct);
	out[12] = bpf_core_enum_value_exists(enum bpf_map_type, BPF_MAP_TYPE_RINGBUF);
	out[13] = bpf_core_enum_value(enum bpf_map_type, BPF_MAP_TYPE_RINGBUF);
	out[14] = bpf_core_enum_value_exists(enum bpf_map_type, BPF_MAP_TYPE_NO_SUCH_MAP);
	out[15] = bpf_core_enum_value(enum perf_callchain_context, PERF_CONTEXT_KERNEL);
	out[16] = bpf_core_type_exists(struct no_such_struct);
	out[17] = BPF_CORE_READ_BITFIELD_PROBED(skb, pkt_type);
	out[18] = __builtin_preserve_field_info(task->pid, BPF_FIELD_SIGNED);
	out[19] = __builtin_preserve_field_info(task->flags, BPF_FIELD_SIGNED);
	out[20] = bpf_core_type_matches(struct task_struct);
	out[21] = bpf_core_field_offset(task->mm);
	out[22] = BPF_CORE_READ(task, mm, task_size);
	out[23] = bpf_core_type_size(pid_t);
	return 0;
}

SEC("tp_btf/sched_process_exec")
int direct_loads(unsigned long long *ctx)
{
	struct task_struct *t = (void *)ctx[0];

	out[30] = t->pid;
	out[31] = ((struct task_struct___u64 *)t)->flags;
	out[32] = ((struct task_struct___wide *)t)->pid;
	out[33] = t->comm[2];
	out[34] = t->real_parent->tgid;
	out[35] = BPF_CORE_READ_BITFIELD((struct sk_buff *)ctx[1], pkt_type);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
