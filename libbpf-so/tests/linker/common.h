/* Shared by the linker test objects (tests/linker.rs). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct counts_map {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
};

/* A kernel type, for CO-RE relocations against vmlinux BTF. */
struct task_struct {
	int pid;
	int tgid;
} __attribute__((preserve_access_index));
