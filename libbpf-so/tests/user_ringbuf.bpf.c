// SPDX-License-Identifier: MIT OR Apache-2.0
/* The program of tests/user_ringbuf.rs: drains a BPF_MAP_TYPE_USER_RINGBUF
 * that user space fills, reading each sample through its dynptr. Built
 * with clang-16 -target bpf, without system headers. */
typedef unsigned int __u32;
typedef unsigned long long __u64;

#define SEC(n) __attribute__((section(n), used))
#define __uint(name, val) int (*name)[val]

struct bpf_dynptr {
	__u64 __opaque[2];
} __attribute__((aligned(8)));

static long (*bpf_dynptr_read)(void *dst, __u32 len, const struct bpf_dynptr *src,
			       __u32 offset, __u64 flags) = (void *)201;
static void *(*bpf_dynptr_data)(const struct bpf_dynptr *ptr, __u32 offset,
				__u32 len) = (void *)203;
static long (*bpf_user_ringbuf_drain)(void *map, void *callback_fn, void *ctx,
				      __u64 flags) = (void *)209;

struct {
	__uint(type, 31); /* BPF_MAP_TYPE_USER_RINGBUF */
	__uint(max_entries, 4096);
} user_rb SEC(".maps");

/* What user space sends: a sequence number, then `len` bytes of `seq`. */
struct sample {
	__u32 seq;
	__u32 len;
};

/* The whole .bss: user space sets flags/stop_at and reads the rest. */
struct state {
	long drained;
	__u64 flags;
	__u64 stop_at; /* seq + 1 of the sample whose callback returns 1 */
	__u64 bad;
	__u64 nseen;
	__u64 seen[64]; /* seq | len << 32 | last byte << 56 */
} st;

static __attribute__((noinline)) long on_sample(struct bpf_dynptr *d, void *ctx)
{
	struct sample s;
	struct sample *p;
	unsigned char last = 0;

	if (bpf_dynptr_read(&s, sizeof(s), d, 0, 0)) {
		st.bad |= 1;
		return 1;
	}
	p = bpf_dynptr_data(d, 0, sizeof(*p));
	if (!p || p->seq != s.seq) {
		st.bad |= 2;
		return 1;
	}
	if (s.len > 8 && s.len < 4096 &&
	    bpf_dynptr_read(&last, 1, d, s.len - 1, 0)) {
		st.bad |= 4;
		return 1;
	}
	/* Past the end: -E2BIG. */
	if (bpf_dynptr_read(&last, 1, d, s.len, 0) != -7) {
		st.bad |= 8;
		return 1;
	}
	if (st.nseen < 64)
		st.seen[st.nseen] = s.seq | (__u64)s.len << 32 | (__u64)last << 56;
	st.nseen++;
	return st.stop_at == s.seq + 1;
}

SEC("syscall") int drain(void *ctx)
{
	st.drained = bpf_user_ringbuf_drain(&user_rb, on_sample, 0, st.flags);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
