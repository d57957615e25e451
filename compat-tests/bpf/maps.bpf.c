/* BTF-defined maps of many kinds, map-in-map, a prog array for tail
 * calls, and every way a program refers to a map. */
#include "compat.h"

struct key {
	__u32 pid;
	__u32 cpu;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct key);
	__type(value, __u64);
} counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} array SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct key);
} scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 128);
	__type(key, __u32);
	__type(value, __u64);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
} lru SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} rb SEC(".maps");

struct inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
} inner_a SEC(".maps"), inner_b SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct inner);
} outer SEC(".maps") = {
	.values = { &inner_a, &inner_b },
};

int tail_target(void *ctx);

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 2);
	__uint(key_size, sizeof(__u32));
	__array(values, int(void *));
} jumps SEC(".maps") = {
	.values = { [1] = (void *)&tail_target },
};

SEC("tracepoint/sched/sched_process_fork")
int maps_update(void *ctx)
{
	__u32 zero = 0, idx = bpf_get_smp_processor_id() & 15;
	struct key k = { .pid = bpf_get_current_pid_tgid() >> 32, .cpu = idx };
	struct key *tmp;
	__u64 one = 1, *v, *lv;
	__u32 *inner_val;
	void *inner;

	v = bpf_map_lookup_elem(&counts, &k);
	if (v)
		__sync_fetch_and_add(v, 1);
	else
		bpf_map_update_elem(&counts, &k, &one, BPF_NOEXIST);
	v = bpf_map_lookup_elem(&array, &idx);
	if (v)
		*v += 1;
	tmp = bpf_map_lookup_elem(&scratch, &zero);
	if (tmp)
		*tmp = k;
	lv = bpf_map_lookup_elem(&lru, &k.pid);
	if (!lv)
		bpf_map_update_elem(&lru, &k.pid, &one, BPF_ANY);
	inner = bpf_map_lookup_elem(&outer, &zero);
	if (inner) {
		inner_val = bpf_map_lookup_elem(inner, &zero);
		if (inner_val)
			*inner_val = k.pid;
	}
	bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, &k, sizeof(k));
	bpf_ringbuf_output(&rb, &k, sizeof(k), 0);
	bpf_tail_call(ctx, &jumps, 1);
	return 0;
}

SEC("tracepoint/sched/sched_process_exit")
int tail_target(void *ctx)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;

	bpf_map_delete_elem(&lru, &pid);
	return 0;
}
