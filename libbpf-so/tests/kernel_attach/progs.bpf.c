/* Kernel programs for tests/kernel_attach.rs: each bumps its counter slot
 * when the current process is the one in `filter` (slot 0), so other
 * processes on the machine do not count. */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} filter SEC(".maps");

static int mine(void)
{
	__u32 zero = 0;
	__u32 *tgid = bpf_map_lookup_elem(&filter, &zero);

	return tgid && *tgid == (__u32)(bpf_get_current_pid_tgid() >> 32);
}

static void bump(__u32 k)
{
	__u64 *p = bpf_map_lookup_elem(&counts, &k);

	if (p)
		__sync_fetch_and_add(p, 1);
}

SEC("tp/syscalls/sys_enter_getppid")
int tp_getppid(void *ctx)
{
	if (mine())
		bump(0);
	return 0;
}

SEC("raw_tp/sys_enter")
int raw_sys_enter(void *ctx)
{
	if (mine())
		bump(1);
	return 0;
}

SEC("tp_btf/sched_switch")
int btf_sched_switch(void *ctx)
{
	if (mine())
		bump(2);
	return 0;
}

SEC("perf_event")
int on_cpu_clock(void *ctx)
{
	if (mine())
		bump(3);
	return 0;
}

SEC("kprobe/do_nanosleep")
int kp_nanosleep(void *ctx)
{
	bump(4);
	return 0;
}

SEC("kretprobe/do_nanosleep")
int krp_nanosleep(void *ctx)
{
	bump(4);
	return 0;
}

SEC("ksyscall/nanosleep")
int ksys_nanosleep(void *ctx)
{
	bump(4);
	return 0;
}

SEC("kprobe.multi/do_nanosleep")
int kmulti_nanosleep(void *ctx)
{
	bump(4);
	return 0;
}

SEC("iter/task")
int iter_a(void *ctx)
{
	bump(6);
	return 0;
}

SEC("iter/task")
int iter_b(void *ctx)
{
	bump(7);
	return 0;
}

SEC("tp/syscalls/sys_enter_getppid")
int tp_getppid_b(void *ctx)
{
	if (mine())
		bump(5);
	return 0;
}

SEC("xdp")
int xdp_pass(void *ctx)
{
	return XDP_PASS;
}

SEC("tc")
int tc_ok(void *ctx)
{
	return 0; /* TC_ACT_OK */
}

SEC("tcx/ingress")
int tcx_next(void *ctx)
{
	return -1; /* TCX_NEXT */
}

char LICENSE[] SEC("license") = "GPL";
