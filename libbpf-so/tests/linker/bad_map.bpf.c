/* An extern `counts` whose definition disagrees with A's (max_entries). */
#include "common.h"

extern struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 5);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

SEC("raw_tp/sys_enter")
int bad_map(__u64 *ctx)
{
	__u32 k = 0;

	return bpf_map_lookup_elem(&counts, &k) != 0;
}

char LICENSE[] SEC("license") = "GPL";
