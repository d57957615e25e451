// SPDX-License-Identifier: MIT OR Apache-2.0
/* The object of tests/kernel_fds.rs (USERBPF_BACKEND=kernel): two maps and
 * a raw tracepoint program writing its first argument to the ring buffer.
 * Built with clang-16 -target bpf, without system headers. */
typedef unsigned int __u32;
typedef unsigned long long __u64;

#define SEC(n) __attribute__((section(n), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name

static long (*bpf_ringbuf_output)(void *ringbuf, void *data, __u64 size, __u64 flags) = (void *)130;

struct {
	__uint(type, 1); /* BPF_MAP_TYPE_HASH */
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

struct {
	__uint(type, 27); /* BPF_MAP_TYPE_RINGBUF */
	__uint(max_entries, 4096);
} events SEC(".maps");

SEC("raw_tp/sys_enter")
int on_enter(__u64 *ctx)
{
	__u64 v = ctx[0];

	bpf_ringbuf_output(&events, &v, sizeof(v), 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
