// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * syscall_count: syscount's algorithm (libbpf-tools), issue 7.
 *
 * raw_syscalls/sys_enter records the entry time per thread (HASH `start`),
 * raw_syscalls/sys_exit counts the call per syscall id (HASH `data`:
 * calls, failures, total latency). Only the process `targ_tgid` is
 * counted (.rodata, as syscount's -p).
 *
 * A window (`targ_mark` != 0): a thread is counted only between its
 * close(targ_mark) and its close(targ_mark - 1) (both invalid fds: EBADF),
 * which the target makes around the calls it reports, so that what the C
 * library and the dynamic loader do before main does not blur the counts.
 * The two marker calls are not counted.
 *
 * Contexts (vmlinux.h, the kernel's formats): sys_enter {trace_entry,
 * long id @8, unsigned long args[6] @16}, sys_exit {trace_entry, long id
 * @8, long ret @16}.
 */
#include "app.bpf.h"
#include "syscall_apps.h"

#define NR_close 3

const volatile pid_t targ_tgid = 0;
const volatile int targ_mark = 0;

struct start_t {
	__u64 ts;
	__s64 id;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);
	__type(value, struct start_t);
} start SEC(".maps");

/* Threads inside the window. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} armed SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct count_data);
} data SEC(".maps");

/* Exits whose id differs from their entry's; entries seen; marker calls. */
__u64 id_mismatches = 0;
__u64 enters = 0;
__u64 markers = 0;

SEC("tracepoint/raw_syscalls/sys_enter")
int sys_enter(struct trace_event_raw_sys_enter *args)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32, tid = (__u32)pid_tgid;
	struct start_t s;
	__u8 one = 1;

	if (targ_tgid && targ_tgid != tgid)
		return 0;
	if (targ_mark) {
		if (args->id == NR_close) {
			int fd = (int)args->args[0];

			if (fd == targ_mark) {
				bpf_map_update_elem(&armed, &tid, &one, BPF_ANY);
				__sync_fetch_and_add(&markers, 1);
				return 0;
			}
			if (fd == targ_mark - 1) {
				bpf_map_delete_elem(&armed, &tid);
				__sync_fetch_and_add(&markers, 1);
				return 0;
			}
		}
		if (!bpf_map_lookup_elem(&armed, &tid))
			return 0;
	}
	s.ts = bpf_ktime_get_ns();
	s.id = args->id;
	bpf_map_update_elem(&start, &tid, &s, BPF_ANY);
	__sync_fetch_and_add(&enters, 1);
	return 0;
}

SEC("tracepoint/raw_syscalls/sys_exit")
int sys_exit(struct trace_event_raw_sys_exit *args)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32, tid = (__u32)pid_tgid;
	struct count_data *d, zero = {};
	struct start_t *s;
	__u64 now, delta;
	__u32 key;

	if (targ_tgid && targ_tgid != tgid)
		return 0;
	s = bpf_map_lookup_elem(&start, &tid);
	if (!s)
		return 0; /* outside the window, or entered before we attached */
	now = bpf_ktime_get_ns();
	delta = now > s->ts ? now - s->ts : 0;
	if (s->id != args->id)
		__sync_fetch_and_add(&id_mismatches, 1);
	bpf_map_delete_elem(&start, &tid);
	if (args->id < 0)
		return 0;
	key = (__u32)args->id;
	d = bpf_map_lookup_elem(&data, &key);
	if (!d) {
		bpf_map_update_elem(&data, &key, &zero, BPF_NOEXIST);
		d = bpf_map_lookup_elem(&data, &key);
		if (!d)
			return 0;
	}
	__sync_fetch_and_add(&d->count, 1);
	if (args->ret < 0)
		__sync_fetch_and_add(&d->errors, 1);
	__sync_fetch_and_add(&d->total_ns, delta);
	return 0;
}
