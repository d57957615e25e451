// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * syscall_open: opensnoop's algorithm (libbpf-tools), issue 7.
 *
 * sys_enter_openat keeps the arguments per thread in a HASH (filename
 * pointer, flags, ...), sys_exit_openat reads the file name from user
 * memory (bpf_probe_read_user_str) and emits the whole event through a
 * ring buffer and a perf buffer. Only the process `targ_tgid` (.rodata,
 * set before load as opensnoop's -p) is traced.
 *
 * The contexts are the kernel's tracepoint formats, read through
 * vmlinux.h's trace_event_raw_sys_enter / trace_event_raw_sys_exit as
 * opensnoop does: sys_enter_openat is {trace_entry (8), int __syscall_nr
 * @8, args @16 + 8*i}, sys_exit_openat {trace_entry, __syscall_nr @8,
 * long ret @16}. `__syscall_nr` is an int: only the low 4 bytes of `id`
 * are defined.
 */
#include "app.bpf.h"
#include "syscall_apps.h"

const volatile pid_t targ_tgid = 0;

struct args_t {
	const char *fname;
	__s32 dfd;
	__s32 flags;
	__u64 mode;
	__s32 nr;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);
	__type(value, struct args_t);
} start SEC(".maps");

/* Scratch for the event: too big for the 512-byte stack with the rest. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct open_event);
} heap SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} perf_events SEC(".maps");

/* Events the ring buffer refused (full). */
__u64 ring_drops = 0;

SEC("tracepoint/syscalls/sys_enter_openat")
int tracepoint__syscalls__sys_enter_openat(struct trace_event_raw_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32, tid = (__u32)id;
	struct args_t args = {};

	if (targ_tgid && targ_tgid != tgid)
		return 0;
	args.dfd = (__s32)ctx->args[0];
	args.fname = (const char *)ctx->args[1];
	args.flags = (__s32)ctx->args[2];
	args.mode = ctx->args[3];
	args.nr = (__s32)ctx->id;
	bpf_map_update_elem(&start, &tid, &args, BPF_ANY);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_openat")
int tracepoint__syscalls__sys_exit_openat(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32, tid = (__u32)id;
	struct open_event *e;
	struct args_t *ap;
	__u32 zero = 0;

	ap = bpf_map_lookup_elem(&start, &tid);
	if (!ap)
		return 0; /* missed the entry, or another process */
	e = bpf_map_lookup_elem(&heap, &zero);
	if (!e)
		goto cleanup;
	e->ts_ns = bpf_ktime_get_ns();
	e->pid = tgid;
	e->tid = tid;
	e->enter_nr = ap->nr;
	e->exit_nr = (__s32)ctx->id;
	e->dfd = ap->dfd;
	e->flags = ap->flags;
	e->mode = ap->mode;
	e->ret = ctx->ret;
	e->pad = 0;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->name_len = bpf_probe_read_user_str(e->fname, sizeof(e->fname), ap->fname);
	if (bpf_ringbuf_output(&events, e, sizeof(*e), 0))
		__sync_fetch_and_add(&ring_drops, 1);
	bpf_perf_event_output(ctx, &perf_events, BPF_F_CURRENT_CPU, e, sizeof(*e));
cleanup:
	bpf_map_delete_elem(&start, &tid);
	return 0;
}
