/* Global data: .rodata (const volatile, set before load), .data, .bss,
 * custom .data.* / .rodata.* sections, and string literals. */
#include "compat.h"

const volatile __u32 target_pid = 0;
const volatile __u64 min_ns = 1000;
const volatile char prefix[8] = "usr";

__u64 counter = 7;
__u32 last_pid;
__u64 hist[32];
char last_comm[16];

__u64 custom_total SEC(".data.custom") = 1;
__u32 custom_table[4] SEC(".data.custom") = { 1, 2, 3, 4 };
const volatile __u32 custom_limit SEC(".rodata.limits") = 64;

static __always_inline __u32 log2(__u64 v)
{
	__u32 r = 0;

	while (v > 1 && r < 31) {
		v >>= 1;
		r++;
	}
	return r;
}

SEC("tracepoint/syscalls/sys_enter_openat")
int globals_enter(void *ctx)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;

	if (target_pid && pid != target_pid)
		return 0;
	__sync_fetch_and_add(&counter, 1);
	last_pid = pid;
	bpf_get_current_comm(last_comm, sizeof(last_comm));
	if (last_comm[0] == prefix[0])
		custom_total += custom_table[pid & 3];
	bpf_printk("openat by %d (%s)", pid, last_comm);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_openat")
int globals_exit(void *ctx)
{
	__u64 delta = bpf_ktime_get_ns() & 0xffffff;
	__u32 slot = log2(delta);

	if (delta < min_ns || slot >= custom_limit)
		return 0;
	if (slot < 32)
		__sync_fetch_and_add(&hist[slot], 1);
	bpf_printk("slot %u", slot);
	return 0;
}
