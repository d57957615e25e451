/* Kernel attach through libbpf's API (tests/kernel_attach.rs): run on
 * userbpf's libbpf.so and on the real libbpf 1.7, the output must match.
 *
 *   driver OBJ full PIN_DIR   every attach kind, links, pins, bpf.h calls
 *   driver OBJ refused        (unprivileged or USERBPF_BACKEND=user) the
 *                             attach calls and their errors
 *
 * Counters are read with raw bpf(2) calls, not through the library. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <linux/bpf.h>
#include <linux/if_link.h>
#include <linux/perf_event.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

static int pr(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (level != LIBBPF_WARN)
		return 0;
	printf("warn: ");
	return vprintf(fmt, ap);
}

static int sys_bpf(int cmd, union bpf_attr *attr)
{
	return syscall(__NR_bpf, cmd, attr, sizeof(*attr));
}

static int counts_fd;

static unsigned long long count(unsigned key)
{
	union bpf_attr a;
	unsigned long long v = 0;

	memset(&a, 0, sizeof(a));
	a.map_fd = counts_fd;
	a.key = (unsigned long)&key;
	a.value = (unsigned long)&v;
	if (sys_bpf(BPF_MAP_LOOKUP_ELEM, &a))
		printf("lookup %u failed: %d\n", key, errno);
	return v;
}

static void set_filter(int fd, unsigned tgid)
{
	union bpf_attr a;
	unsigned key = 0;

	memset(&a, 0, sizeof(a));
	a.map_fd = fd;
	a.key = (unsigned long)&key;
	a.value = (unsigned long)&tgid;
	if (sys_bpf(BPF_MAP_UPDATE_ELEM, &a))
		printf("filter update failed: %d\n", errno);
}

static void getppids(int n)
{
	for (int i = 0; i < n; i++)
		syscall(SYS_getppid);
}

static void naps(int n)
{
	struct timespec ts = { 0, 1000000 };

	for (int i = 0; i < n; i++)
		nanosleep(&ts, NULL);
}

static const char *yes(int c)
{
	return c ? "yes" : "no";
}

static struct bpf_program *prog(struct bpf_object *obj, const char *name)
{
	struct bpf_program *p = bpf_object__find_program_by_name(obj, name);

	if (!p) {
		printf("no program %s\n", name);
		exit(1);
	}
	return p;
}

static void show_link(const char *what, struct bpf_link *l)
{
	if (l)
		printf("%s = ok\n", what);
	else
		printf("%s = NULL errno %d\n", what, errno);
}

static void show_rc(const char *what, int rc)
{
	if (rc < 0)
		printf("%s = %d errno %d\n", what, rc, errno);
	else
		printf("%s = %d\n", what, rc);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cpu_clock_event(void)
{
	struct perf_event_attr attr;

	memset(&attr, 0, sizeof(attr));
	attr.size = sizeof(attr);
	attr.type = PERF_TYPE_SOFTWARE;
	attr.config = PERF_COUNT_SW_CPU_CLOCK;
	attr.sample_period = 100000; /* 100 us of CPU */
	attr.disabled = 1;
	return syscall(__NR_perf_event_open, &attr, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
}

/* Spins until counter `key` moves (at most 20 s). */
static int spin_until_counted(unsigned key, unsigned long long before)
{
	double end = now() + 20;
	volatile unsigned long x = 0;

	while (now() < end) {
		for (int i = 0; i < 100000; i++)
			x += i;
		if (count(key) > before)
			return 1;
	}
	return 0;
}

static void read_iter(int link_fd, const char *what)
{
	char buf[4096];
	int fd = bpf_iter_create(link_fd);

	if (fd < 0) {
		printf("%s iter_create = %d errno %d\n", what, fd, errno);
		return;
	}
	while (read(fd, buf, sizeof(buf)) > 0)
		;
	close(fd);
}

static __u32 prog_id(int fd)
{
	struct bpf_prog_info info;
	union bpf_attr a;

	memset(&info, 0, sizeof(info));
	memset(&a, 0, sizeof(a));
	a.info.bpf_fd = fd;
	a.info.info_len = sizeof(info);
	a.info.info = (unsigned long)&info;
	if (sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &a))
		return 0;
	return info.id;
}

/* XDP on the loopback device (generic mode, XDP_PASS): netlink attach,
 * query, the kernel's refusals, and an XDP link. */
static void xdp(struct bpf_object *obj)
{
	int fd = bpf_program__fd(prog(obj, "xdp_pass"));
	__u32 want = prog_id(fd), id = 99;
	LIBBPF_OPTS(bpf_xdp_query_opts, q);
	struct bpf_link *l;

	show_rc("xdp_attach", bpf_xdp_attach(1, fd, XDP_FLAGS_SKB_MODE, NULL));
	show_rc("xdp_query_id", bpf_xdp_query_id(1, 0, &id));
	printf("xdp_query_id matches = %s\n", yes(id == want));
	show_rc("xdp_query", bpf_xdp_query(1, 0, &q));
	printf("xdp_query: mode %u skb id matches %s drv %u hw %u features %#llx\n",
	       q.attach_mode, yes(q.skb_prog_id == want), q.drv_prog_id, q.hw_prog_id,
	       (unsigned long long)q.feature_flags);
	show_rc("xdp_query bad flags", bpf_xdp_query(1, 0x100, &q));
	show_rc("xdp_query two modes", bpf_xdp_query(1, XDP_FLAGS_SKB_MODE | XDP_FLAGS_DRV_MODE, &q));
	show_rc("xdp_attach noexist",
		bpf_xdp_attach(1, fd, XDP_FLAGS_SKB_MODE | XDP_FLAGS_UPDATE_IF_NOEXIST, NULL));
	show_rc("xdp_attach replace wrong old",
		bpf_xdp_attach(1, fd, XDP_FLAGS_SKB_MODE,
			       &(struct bpf_xdp_attach_opts){
				       .sz = sizeof(struct bpf_xdp_attach_opts),
				       .old_prog_fd = counts_fd }));
	show_rc("xdp_detach", bpf_xdp_detach(1, XDP_FLAGS_SKB_MODE, NULL));
	show_rc("xdp_query_id after detach", bpf_xdp_query_id(1, 0, &id));
	printf("xdp id after detach = %u\n", id);
	l = bpf_program__attach_xdp(prog(obj, "xdp_pass"), 1);
	show_link("xdp link attach", l);
	bpf_xdp_query_id(1, 0, &id);
	printf("xdp link id matches = %s\n", yes(id == want));
	show_rc("xdp_attach over link", bpf_xdp_attach(1, fd, XDP_FLAGS_SKB_MODE, NULL));
	show_rc("xdp link destroy", bpf_link__destroy(l));
	bpf_xdp_query_id(1, 0, &id);
	printf("xdp id after link = %u\n", id);
	show_rc("xdp_attach no such device", bpf_xdp_attach(0x7ffffff0, fd, XDP_FLAGS_SKB_MODE, NULL));
}

/* TC on the loopback device: a clsact hook and a cls_bpf filter by
 * netlink, and a tcx link. */
static void tc(struct bpf_object *obj)
{
	int fd = bpf_program__fd(prog(obj, "tc_ok"));
	__u32 want = prog_id(fd);
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = 1, .attach_point = BPF_TC_INGRESS);
	LIBBPF_OPTS(bpf_tc_hook, both, .ifindex = 1,
		    .attach_point = BPF_TC_INGRESS | BPF_TC_EGRESS);
	LIBBPF_OPTS(bpf_tc_opts, o, .prog_fd = fd);
	LIBBPF_OPTS(bpf_tc_opts, q);
	LIBBPF_OPTS(bpf_tc_opts, d);
	struct bpf_link *l;

	show_rc("tc_hook_create", bpf_tc_hook_create(&hook));
	show_rc("tc_hook_create again", bpf_tc_hook_create(&hook));
	show_rc("tc_attach", bpf_tc_attach(&hook, &o));
	printf("tc_attach: id matches %s handle %u priority %u\n", yes(o.prog_id == want), o.handle,
	       o.priority);
	show_rc("tc_attach taken", bpf_tc_attach(&hook, &(struct bpf_tc_opts){
		.sz = sizeof(struct bpf_tc_opts), .prog_fd = fd, .handle = o.handle,
		.priority = o.priority }));
	show_rc("tc_attach with prog_id", bpf_tc_attach(&hook, &o));
	q.handle = o.handle;
	q.priority = o.priority;
	show_rc("tc_query", bpf_tc_query(&hook, &q));
	printf("tc_query: id matches %s handle %u priority %u\n", yes(q.prog_id == want), q.handle,
	       q.priority);
	d.handle = o.handle;
	d.priority = o.priority;
	show_rc("tc_detach", bpf_tc_detach(&hook, &d));
	show_rc("tc_query after detach", bpf_tc_query(&hook, &q));
	show_rc("tc_detach no handle", bpf_tc_detach(&hook, &(struct bpf_tc_opts){
		.sz = sizeof(struct bpf_tc_opts) }));
	show_rc("tc_hook_destroy ingress", bpf_tc_hook_destroy(&hook));
	show_rc("tc_hook_destroy clsact", bpf_tc_hook_destroy(&both));
	show_rc("tc_hook_destroy again", bpf_tc_hook_destroy(&both));
	hook.attach_point = BPF_TC_CUSTOM;
	show_rc("tc_hook_create custom", bpf_tc_hook_create(&hook));
	show_rc("tc_hook_create null", bpf_tc_hook_create(NULL));

	l = bpf_program__attach_tcx(prog(obj, "tcx_next"), 1, NULL);
	show_link("tcx attach", l);
	show_rc("tcx destroy", bpf_link__destroy(l));
	errno = 0;
	l = bpf_program__attach_tcx(prog(obj, "tcx_next"), 1,
				    &(struct bpf_tcx_opts){ .sz = sizeof(struct bpf_tcx_opts),
							    .relative_fd = 3, .relative_id = 4 });
	show_link("tcx both relative", l);
}

static void full(struct bpf_object *obj, const char *pin_dir)
{
	struct bpf_link *l, *l2;
	unsigned long long before;
	char path[512];
	int rc;

	/* Tracepoints: auto-attach by section, then by name with a cookie. */
	l = bpf_program__attach(prog(obj, "tp_getppid"));
	show_link("tp attach", l);
	before = count(0);
	getppids(10);
	printf("tp counted = %s\n", yes(count(0) >= before + 10));
	l2 = bpf_program__attach_tracepoint_opts(prog(obj, "tp_getppid_b"), "syscalls",
						 "sys_enter_getppid",
						 &(struct bpf_tracepoint_opts){
							 .sz = sizeof(struct bpf_tracepoint_opts),
							 .bpf_cookie = 7 });
	show_link("tp_opts attach", l2);
	before = count(5);
	getppids(3);
	printf("tp_opts counted = %s\n", yes(count(5) >= before + 3));
	show_rc("tp destroy", bpf_link__destroy(l));
	show_rc("tp_opts destroy", bpf_link__destroy(l2));
	before = count(0);
	getppids(10);
	printf("tp stopped = %s\n", yes(count(0) == before));
	errno = 0;
	l = bpf_program__attach_tracepoint(prog(obj, "tp_getppid"), "syscalls", "no_such_event");
	show_link("tp missing", l);

	/* Raw tracepoint, its pin, a second handle from the pin. */
	l = bpf_program__attach_raw_tracepoint(prog(obj, "raw_sys_enter"), "sys_enter");
	show_link("raw_tp attach", l);
	before = count(1);
	getppids(5);
	printf("raw_tp counted = %s\n", yes(count(1) >= before + 5));
	snprintf(path, sizeof(path), "%s/raw", pin_dir);
	show_rc("raw_tp pin", bpf_link__pin(l, path));
	printf("pin_path set = %s\n", yes(bpf_link__pin_path(l) != NULL));
	printf("pin file = %s\n", yes(access(path, F_OK) == 0));
	show_rc("raw_tp pin again", bpf_link__pin(l, path));
	l2 = bpf_link__open(path);
	show_link("raw_tp open", l2);
	show_rc("raw_tp destroy pinned", bpf_link__destroy(l));
	before = count(1);
	getppids(5);
	printf("raw_tp counting while pinned = %s\n", yes(count(1) >= before + 5));
	show_rc("raw_tp pin opened", bpf_link__pin(l2, path));
	show_rc("raw_tp unpin", bpf_link__unpin(l2));
	printf("pin file after unpin = %s\n", yes(access(path, F_OK) == 0));
	show_rc("raw_tp unpin again", bpf_link__unpin(l2));
	show_rc("raw_tp destroy opened", bpf_link__destroy(l2));
	before = count(1);
	getppids(5);
	printf("raw_tp stopped = %s\n", yes(count(1) == before));
	rmdir(pin_dir);
	snprintf(path, sizeof(path), "%s/x/y/raw", pin_dir);
	l = bpf_program__attach_raw_tracepoint(prog(obj, "raw_sys_enter"), "sys_enter");
	show_rc("raw_tp pin no parent", bpf_link__pin(l, path));
	show_rc("raw_tp pin outside bpffs", bpf_link__pin(l, "/tmp/kernel-attach-not-bpffs/raw"));
	rmdir("/tmp/kernel-attach-not-bpffs");
	show_rc("raw_tp destroy", bpf_link__destroy(l));
	errno = 0;
	l = bpf_program__attach_raw_tracepoint(prog(obj, "tp_getppid"), "sys_enter");
	show_link("raw_tp on tracepoint prog", l);

	/* tp_btf through attach_trace; bpf_link__detach stops it. */
	l = bpf_program__attach_trace(prog(obj, "btf_sched_switch"));
	show_link("tp_btf attach", l);
	before = count(2);
	naps(5);
	printf("tp_btf counted = %s\n", yes(count(2) > before));
	show_rc("tp_btf detach", bpf_link__detach(l));
	before = count(2);
	naps(5);
	printf("tp_btf stopped = %s\n", yes(count(2) == before));
	show_rc("tp_btf destroy", bpf_link__destroy(l));
	l = bpf_program__attach(prog(obj, "btf_sched_switch"));
	show_link("tp_btf auto attach", l);
	bpf_link__destroy(l);

	/* perf_event: a software CPU clock event of this process. */
	{
		int pfd = cpu_clock_event();

		printf("perf_event_open = %s\n", yes(pfd >= 0));
		l = bpf_program__attach_perf_event(prog(obj, "on_cpu_clock"), pfd);
		show_link("perf attach", l);
		printf("perf counted = %s\n", yes(spin_until_counted(3, count(3))));
		show_rc("perf destroy", bpf_link__destroy(l));
		printf("perf fd closed = %s\n", yes(fcntl(pfd, F_GETFD) < 0));

		pfd = cpu_clock_event();
		errno = 0;
		l = bpf_program__attach_perf_event_opts(prog(obj, "on_cpu_clock"), pfd,
							&(struct bpf_perf_event_opts){
								.sz = sizeof(struct bpf_perf_event_opts),
								.bpf_cookie = 1,
								.force_ioctl_attach = true });
		show_link("perf ioctl with cookie", l);
		printf("perf fd kept = %s\n", yes(fcntl(pfd, F_GETFD) >= 0));
		l = bpf_program__attach_perf_event_opts(prog(obj, "on_cpu_clock"), pfd,
							&(struct bpf_perf_event_opts){
								.sz = sizeof(struct bpf_perf_event_opts),
								.force_ioctl_attach = true });
		show_link("perf ioctl attach", l);
		printf("perf ioctl link fd is pfd = %s\n", yes(l && bpf_link__fd(l) == pfd));
		printf("perf ioctl counted = %s\n", yes(spin_until_counted(3, count(3))));
		show_rc("perf ioctl detach", bpf_link__detach(l));
		show_rc("perf ioctl destroy", bpf_link__destroy(l));
		printf("perf ioctl fd closed = %s\n", yes(fcntl(pfd, F_GETFD) < 0));
		errno = 0;
		l = bpf_program__attach_perf_event(prog(obj, "on_cpu_clock"), -1);
		show_link("perf bad fd", l);
	}

	/* kprobes: this kernel has none (legacy path, then its errors). */
	errno = 0;
	l = bpf_program__attach(prog(obj, "kp_nanosleep"));
	show_link("kprobe auto attach", l);
	errno = 0;
	l = bpf_program__attach(prog(obj, "krp_nanosleep"));
	show_link("kretprobe auto attach", l);
	errno = 0;
	l = bpf_program__attach(prog(obj, "ksys_nanosleep"));
	show_link("ksyscall auto attach", l);
	errno = 0;
	l = bpf_program__attach(prog(obj, "kmulti_nanosleep"));
	show_link("kprobe.multi auto attach", l);
	errno = 0;
	l = bpf_program__attach_kprobe_opts(prog(obj, "kp_nanosleep"), "do_nanosleep",
					    &(struct bpf_kprobe_opts){
						    .sz = sizeof(struct bpf_kprobe_opts),
						    .attach_mode = PROBE_ATTACH_MODE_PERF });
	show_link("kprobe perf mode", l);
	errno = 0;
	l = bpf_program__attach_kprobe(prog(obj, "kp_nanosleep"), false, "do_nanosleep");
	show_link("kprobe", l);

	/* Iterators: read, then swap the program with update_program. */
	l = bpf_program__attach(prog(obj, "iter_a"));
	show_link("iter attach", l);
	before = count(6);
	read_iter(bpf_link__fd(l), "iter_a");
	printf("iter_a counted = %s\n", yes(count(6) > before));
	show_rc("iter update_program", bpf_link__update_program(l, prog(obj, "iter_b")));
	before = count(7);
	read_iter(bpf_link__fd(l), "iter_b");
	printf("iter_b counted = %s\n", yes(count(7) > before));
	show_rc("iter destroy", bpf_link__destroy(l));

	/* bpf.h */
	{
		int raw_fd = bpf_program__fd(prog(obj, "raw_sys_enter"));
		int btf_fd = bpf_program__fd(prog(obj, "btf_sched_switch"));
		char buf[64] = "";
		__u32 len = sizeof(buf), prog_id = 0, fd_type = 99, cnt = 8, flags = 0, ids[8];
		__u64 off = 1, addr = 1;
		int fd, cg;

		fd = bpf_raw_tracepoint_open("sys_enter", raw_fd);
		printf("raw_tracepoint_open = %s\n", yes(fd >= 0));
		before = count(1);
		getppids(5);
		printf("raw_tracepoint_open counted = %s\n", yes(count(1) >= before + 5));
		rc = bpf_task_fd_query(getpid(), fd, 0, buf, &len, &prog_id, &fd_type, &off, &addr);
		show_rc("task_fd_query", rc);
		printf("task_fd_query: buf '%s' len %u type %u prog_id set %s\n", buf, len, fd_type,
		       yes(prog_id != 0));
		close(fd);
		errno = 0;
		show_rc("raw_tracepoint_open bad prog", bpf_raw_tracepoint_open("sys_enter", -1));
		fd = bpf_link_create(btf_fd, 0, BPF_TRACE_RAW_TP, NULL);
		printf("link_create tp_btf = %s\n", yes(fd >= 0));
		before = count(2);
		naps(3);
		printf("link_create counted = %s\n", yes(count(2) > before));
		show_rc("link_detach", bpf_link_detach(fd));
		show_rc("link_detach again", bpf_link_detach(fd));
		close(fd);
		show_rc("link_create bad opts",
			bpf_link_create(btf_fd, 0, BPF_TRACE_RAW_TP,
					&(struct bpf_link_create_opts){
						.sz = sizeof(struct bpf_link_create_opts),
						.iter_info_len = 4,
						.target_btf_id = 1 }));
		show_rc("link_update bad fd", bpf_link_update(-1, raw_fd, NULL));
		show_rc("link_update both old",
			bpf_link_update(-1, raw_fd,
					&(struct bpf_link_update_opts){
						.sz = sizeof(struct bpf_link_update_opts),
						.old_prog_fd = 3,
						.old_map_fd = 4 }));
		show_rc("iter_create bad fd", bpf_iter_create(-1));
		cg = open("/sys/fs/cgroup", O_RDONLY | O_DIRECTORY);
		if (cg >= 0) {
			rc = bpf_prog_query(cg, BPF_CGROUP_INET_INGRESS, 0, &flags, ids, &cnt);
			show_rc("prog_query cgroup", rc);
			show_rc("prog_attach wrong type", bpf_prog_attach(raw_fd, cg, BPF_CGROUP_INET_INGRESS, 0));
			show_rc("prog_detach nothing", bpf_prog_detach2(raw_fd, cg, BPF_CGROUP_INET_INGRESS));
			show_rc("prog_attach_opts both relative",
				bpf_prog_attach_opts(raw_fd, cg, BPF_CGROUP_INET_INGRESS,
						     &(struct bpf_prog_attach_opts){
							     .sz = sizeof(struct bpf_prog_attach_opts),
							     .relative_fd = 3,
							     .relative_id = 4 }));
			errno = 0;
			l = bpf_program__attach_cgroup(prog(obj, "raw_sys_enter"), cg);
			show_link("attach_cgroup wrong type", l);
			close(cg);
		}
		fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
		printf("enable_stats = %s\n", yes(fd >= 0));
		close(fd);
		show_rc("prog_bind_map", bpf_prog_bind_map(raw_fd, counts_fd, NULL));
		errno = 0;
		l = bpf_program__attach_iter(prog(obj, "tp_getppid"), NULL);
		show_link("iter on tracepoint prog", l);
		errno = 0;
		l = bpf_program__attach_freplace(prog(obj, "tp_getppid"), 0, "x");
		show_link("freplace half target", l);
		errno = 0;
		l = bpf_program__attach_freplace(prog(obj, "tp_getppid"), 0, NULL);
		show_link("freplace not ext", l);
		errno = 0;
		l = bpf_program__attach_tcx(prog(obj, "tp_getppid"), 0, NULL);
		show_link("tcx ifindex 0", l);
		errno = 0;
		l = bpf_program__attach_xdp(prog(obj, "tp_getppid"), 1);
		show_link("xdp wrong type", l);
	}
	xdp(obj);
	tc(obj);
}

static void refused(struct bpf_object *obj)
{
	struct bpf_link *l;

	errno = 0;
	l = bpf_program__attach(prog(obj, "tp_getppid"));
	show_link("tp attach", l);
	errno = 0;
	l = bpf_program__attach_raw_tracepoint(prog(obj, "raw_sys_enter"), "sys_enter");
	show_link("raw_tp attach", l);
	errno = 0;
	l = bpf_program__attach_trace(prog(obj, "btf_sched_switch"));
	show_link("tp_btf attach", l);
	errno = 0;
	l = bpf_program__attach_perf_event(prog(obj, "on_cpu_clock"), 0);
	show_link("perf attach", l);
	errno = 0;
	l = bpf_program__attach_kprobe(prog(obj, "kp_nanosleep"), false, "do_nanosleep");
	show_link("kprobe attach", l);
	errno = 0;
	l = bpf_program__attach_iter(prog(obj, "iter_a"), NULL);
	show_link("iter attach", l);
	errno = 0;
	show_rc("link_create", bpf_link_create(bpf_program__fd(prog(obj, "btf_sched_switch")), 0,
					       BPF_TRACE_RAW_TP, NULL));
	show_rc("xdp_attach", bpf_xdp_attach(1, bpf_program__fd(prog(obj, "xdp_pass")),
					     XDP_FLAGS_SKB_MODE, NULL));
}

int main(int argc, char **argv)
{
	struct bpf_object *obj;
	int err;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 3)
		return 2;
	if (!strcmp(argv[2], "refused") && argc > 3 && !strcmp(argv[3], "nobody")) {
		if (setgid(65534) || setuid(65534)) {
			printf("setuid failed: %d\n", errno);
			return 1;
		}
	}
	libbpf_set_print(pr);
	obj = bpf_object__open_file(argv[1], NULL);
	if (!obj) {
		printf("open failed: %d\n", errno);
		return 1;
	}
	err = bpf_object__load(obj);
	printf("load = %d\n", err);
	if (err)
		return 1;
	counts_fd = bpf_map__fd(bpf_object__find_map_by_name(obj, "counts"));
	if (!strcmp(argv[2], "full") && argc > 3) {
		set_filter(bpf_map__fd(bpf_object__find_map_by_name(obj, "filter")), getpid());
		full(obj, argv[3]);
	} else {
		refused(obj);
	}
	bpf_object__close(obj);
	printf("done\n");
	return 0;
}
