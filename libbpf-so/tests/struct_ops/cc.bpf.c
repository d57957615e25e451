// SPDX-License-Identifier: GPL-2.0
/* A minimal TCP congestion control as struct_ops (tests/struct_ops.rs):
 * Reno-like halving on loss, no growth, counters of the callbacks.
 * `ucc` is registered by the map update (SEC(".struct_ops")), `ucc_link`
 * through a struct_ops link (SEC(".struct_ops.link")); both use the same
 * programs. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char _license[] SEC("license") = "GPL";

__u64 cong_avoid_calls;
__u64 ssthresh_calls;

SEC("struct_ops")
__u32 BPF_PROG(ucc_ssthresh, struct sock *sk)
{
	const struct tcp_sock *tp = (const struct tcp_sock *)sk;
	__u32 half = tp->snd_cwnd >> 1;

	__sync_fetch_and_add(&ssthresh_calls, 1);
	return half > 2 ? half : 2;
}

SEC("struct_ops")
void BPF_PROG(ucc_cong_avoid, struct sock *sk, __u32 ack, __u32 acked)
{
	__sync_fetch_and_add(&cong_avoid_calls, 1);
}

SEC("struct_ops")
__u32 BPF_PROG(ucc_undo_cwnd, struct sock *sk)
{
	const struct tcp_sock *tp = (const struct tcp_sock *)sk;

	return tp->snd_cwnd;
}

/* Never referenced by a map: libbpf refuses to load it unless autoload
 * is turned off. */
SEC("struct_ops")
__u32 BPF_PROG(ucc_unused, struct sock *sk)
{
	return 0;
}

/* A kernel program of another type, for bpf_program__assoc_struct_ops
 * (not a syscall tracepoint: those stay in user space in auto mode). */
SEC("tp/sched/sched_process_exec")
int tp_getppid(void *ctx)
{
	return 0;
}

SEC(".struct_ops")
struct tcp_congestion_ops ucc = {
	.ssthresh = (void *)ucc_ssthresh,
	.cong_avoid = (void *)ucc_cong_avoid,
	.undo_cwnd = (void *)ucc_undo_cwnd,
	.name = "userbpf_cc",
};

SEC(".struct_ops.link")
struct tcp_congestion_ops ucc_link = {
	.ssthresh = (void *)ucc_ssthresh,
	.cong_avoid = (void *)ucc_cong_avoid,
	.undo_cwnd = (void *)ucc_undo_cwnd,
	.name = "userbpf_cc_link",
};
