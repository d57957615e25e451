// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * profile_lite: a CPU-clock perf_event program, as libbpf-tools' profile:
 * samples per process and user stacks (bpf_get_stackid with
 * BPF_F_USER_STACK into a STACK_TRACE map), for one process.
 */
#include "kapp.bpf.h"

#define PERF_MAX_STACK_DEPTH 127

const volatile __u32 targ_tgid = 0;

struct stack_key {
	__u32 tgid;
	__s32 user_stack_id;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} samples SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct stack_key);
	__type(value, __u64);
} stack_counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 1024);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, PERF_MAX_STACK_DEPTH * sizeof(__u64));
} stackmap SEC(".maps");

SEC("perf_event")
int do_sample(struct bpf_perf_event_data *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct stack_key key = {};
	__u64 one = 1, *v;

	if (tgid != targ_tgid)
		return 0;
	bump(&samples, tgid, 1);
	key.tgid = tgid;
	key.user_stack_id = bpf_get_stackid(ctx, &stackmap, BPF_F_USER_STACK);
	v = bpf_map_lookup_elem(&stack_counts, &key);
	if (v)
		__sync_fetch_and_add(v, 1);
	else
		bpf_map_update_elem(&stack_counts, &key, &one, BPF_NOEXIST);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
