/* Uprobes on the loader's own functions (libbpf-bootstrap's uprobe example). */
#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __s64);
} seen SEC(".maps");

static void add(__u32 k, __s64 v)
{
	__s64 *p = bpf_map_lookup_elem(&seen, &k);

	if (p)
		__sync_fetch_and_add(p, v);
}

SEC("uprobe")
int BPF_KPROBE(on_add, int a, int b)
{
	add(0, 1);
	add(1, a + b);
	return 0;
}

SEC("uretprobe")
int BPF_KRETPROBE(on_add_ret, int ret)
{
	add(2, ret);
	return 0;
}

SEC("uprobe.multi")
int on_multi(struct pt_regs *ctx)
{
	add(3, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
