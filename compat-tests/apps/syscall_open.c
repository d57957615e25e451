// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * syscall_open: an opensnoop-like skeleton app (issue 7).
 *
 *   syscall_open -p PID [-d MAX_SECONDS]
 *
 * Loads syscall_open.bpf.o with targ_tgid = PID, attaches its
 * tracepoint/syscalls/sys_enter_openat and sys_exit_openat programs, says
 * "attached", and collects every event from the ring buffer and the perf
 * buffer until SIGINT/SIGTERM (or MAX_SECONDS). Then it drains both,
 * prints every event (ring records in arrival order, perf records sorted
 * by their timestamp: one per CPU buffer, so arrival order is not the
 * order of the calls) and exits 0.
 *
 * With the real libbpf (root) these are kernel tracepoints; with userbpf
 * (`userbpf load -- syscall_open -p PID`) the target must run under the
 * agent (`userbpf start`) and the programs run inside it, without root.
 *
 * Output (parsed by compat-tests/tests/syscall_apps.rs):
 *   attached: enter yes exit yes
 *   counts: ring N perf N lost N ring_drops N
 *   ring pid=P tid=T comm=COMM nr=E/X dfd=D flags=0xF mode=M ret=R len=L file=NAME
 *   perf ... (same fields)
 *   done
 */
#include <signal.h>
#include <time.h>
#include <linux/types.h>

#include "app.h"
#include "syscall_apps.h"
#include "syscall_open.skel.h"

#define MAX_EVENTS 4096

static struct open_event ring_ev[MAX_EVENTS], perf_ev[MAX_EVENTS];
static int n_ring, n_perf;
static unsigned long long n_lost, n_overflow;
static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static int on_ring(void *ctx, void *data, size_t size)
{
	(void)ctx;
	if (n_ring >= MAX_EVENTS) {
		n_overflow++;
		return 0;
	}
	memset(&ring_ev[n_ring], 0, sizeof(ring_ev[0]));
	memcpy(&ring_ev[n_ring], data, size < sizeof(ring_ev[0]) ? size : sizeof(ring_ev[0]));
	n_ring++;
	return 0;
}

static void on_perf(void *ctx, int cpu, void *data, __u32 size)
{
	(void)ctx;
	(void)cpu;
	if (n_perf >= MAX_EVENTS) {
		n_overflow++;
		return;
	}
	memset(&perf_ev[n_perf], 0, sizeof(perf_ev[0]));
	memcpy(&perf_ev[n_perf], data, size < sizeof(perf_ev[0]) ? size : sizeof(perf_ev[0]));
	n_perf++;
}

static void on_lost(void *ctx, int cpu, __u64 cnt)
{
	(void)ctx;
	(void)cpu;
	n_lost += cnt;
}

static int by_ts(const void *a, const void *b)
{
	const struct open_event *x = a, *y = b;

	return x->ts_ns < y->ts_ns ? -1 : x->ts_ns > y->ts_ns;
}

static void print_event(const char *src, const struct open_event *e)
{
	char comm[SA_COMM_LEN + 1], name[SA_NAME_LEN + 1];

	memcpy(comm, e->comm, SA_COMM_LEN);
	comm[SA_COMM_LEN] = 0;
	memcpy(name, e->fname, SA_NAME_LEN);
	name[SA_NAME_LEN] = 0;
	printf("%s pid=%u tid=%u comm=%s nr=%d/%d dfd=%d flags=0x%x "
	       "mode=%llu ret=%lld len=%d file=%s\n",
	       src, e->pid, e->tid, comm, e->enter_nr, e->exit_nr, e->dfd, e->flags, (unsigned long long)e->mode, (long long)e->ret,
	       e->name_len, name);
}

int main(int argc, char **argv)
{
	struct syscall_open_bpf *skel;
	struct ring_buffer *rb = NULL;
	struct perf_buffer *pb = NULL;
	struct sigaction sa;
	long pid = 0, max_s = 600;
	struct timespec t0, t;
	int opt, err, i;

	while ((opt = getopt(argc, argv, "p:d:")) != -1) {
		switch (opt) {
		case 'p':
			pid = strtol(optarg, NULL, 10);
			break;
		case 'd':
			max_s = strtol(optarg, NULL, 10);
			break;
		default:
			fprintf(stderr, "usage: %s -p PID [-d MAX_SECONDS]\n", argv[0]);
			return 2;
		}
	}
	if (pid <= 0) {
		fprintf(stderr, "usage: %s -p PID [-d MAX_SECONDS]\n", argv[0]);
		return 2;
	}
	app_init("syscall_open");

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	/* No SA_RESTART: a signal ends the poll at once. */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	skel = syscall_open_bpf__open();
	if (!skel)
		fatal("open", -errno);
	skel->rodata->targ_tgid = (pid_t)pid;
	err = syscall_open_bpf__load(skel);
	if (err)
		fatal("load", err);
	err = syscall_open_bpf__attach(skel);
	if (err)
		fatal("attach", err);
	rb = ring_buffer__new(bpf_map__fd(skel->maps.events), on_ring, NULL, NULL);
	if (!rb)
		fatal("ring_buffer__new", -errno);
	pb = perf_buffer__new(bpf_map__fd(skel->maps.perf_events), 16, on_perf, on_lost, NULL,
			      NULL);
	if (!pb)
		fatal("perf_buffer__new", -errno);
	printf("attached: enter %s exit %s\n",
	       YESNO(skel->links.tracepoint__syscalls__sys_enter_openat),
	       YESNO(skel->links.tracepoint__syscalls__sys_exit_openat));

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (!stop) {
		err = ring_buffer__poll(rb, 50);
		if (err < 0 && err != -EINTR)
			fatal("ring_buffer__poll", err);
		err = perf_buffer__poll(pb, 0);
		if (err < 0 && err != -EINTR)
			fatal("perf_buffer__poll", err);
		clock_gettime(CLOCK_MONOTONIC, &t);
		if (t.tv_sec - t0.tv_sec >= max_s) {
			fprintf(stderr, "syscall_open: stopping after %ld s\n", max_s);
			break;
		}
	}
	err = ring_buffer__consume(rb);
	if (err < 0)
		fatal("ring_buffer__consume", err);
	err = perf_buffer__consume(pb);
	if (err < 0)
		fatal("perf_buffer__consume", err);

	printf("counts: ring %d perf %d lost %llu ring_drops %llu overflow %llu\n", n_ring, n_perf,
	       n_lost, (unsigned long long)skel->bss->ring_drops, n_overflow);
	for (i = 0; i < n_ring; i++)
		print_event("ring", &ring_ev[i]);
	qsort(perf_ev, n_perf, sizeof(perf_ev[0]), by_ts);
	for (i = 0; i < n_perf; i++)
		print_event("perf", &perf_ev[i]);
	perf_buffer__free(pb);
	ring_buffer__free(rb);
	syscall_open_bpf__destroy(skel);
	printf("done\n");
	return 0;
}
