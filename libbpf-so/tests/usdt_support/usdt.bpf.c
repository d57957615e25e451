/* USDT programs through libbpf's usdt.bpf.h. TARGET is the traced binary. */
#include <linux/types.h>
#include <stdbool.h>
#include <linux/ptrace.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/usdt.bpf.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __s64);
} out SEC(".maps");

static void put(__u32 k, __s64 v)
{
	bpf_map_update_elem(&out, &k, &v, BPF_ANY);
}

SEC("usdt") int BPF_USDT(on_hit, int a, long b)
{
	put(0, a);
	put(1, b);
	put(2, bpf_usdt_cookie(ctx));
	put(3, bpf_usdt_arg_cnt(ctx));
	return 0;
}

SEC("usdt/" TARGET ":ubpf:sema") int BPF_USDT(on_sema, short s, int c, int m)
{
	put(4, s);
	put(5, c);
	put(6, m);
	return 0;
}

SEC("usdt/" TARGET ":ubpf") int bad_section(void *ctx)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
