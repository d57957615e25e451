// SPDX-License-Identifier: MIT OR Apache-2.0
/* malloccount: how many times each process calls malloc, and how many bytes
 * it asks for.
 *
 *   malloccount [-d SECONDS] [-n TOP]
 *
 * Loads and attaches malloccount.bpf.o through its bpftool skeleton, then
 * every second prints the TOP processes (default 10) by calls; after
 * SECONDS (default: until SIGINT/SIGTERM) prints every process once more,
 * as "final" lines, and exits.
 *
 * Only the plain libbpf API: as root on the real libbpf it counts every
 * process on the machine (kernel uprobes); with `userbpf load` it counts the
 * processes started with `userbpf start`, without root. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "malloccount.h"
#include "malloccount.skel.h"

struct entry {
	__u32 pid;
	struct malloc_stats s;
};

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static int by_calls(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;

	if (x->s.calls != y->s.calls)
		return x->s.calls < y->s.calls ? 1 : -1;
	return x->pid < y->pid ? -1 : x->pid > y->pid;
}

static int by_pid(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;

	return x->pid < y->pid ? -1 : x->pid > y->pid;
}

/* Reads the whole map into `out`; returns the number of entries. */
static int read_counts(int fd, struct entry *out, int max)
{
	__u32 key, next;
	__u32 *prev = NULL;
	int n = 0;

	while (n < max && bpf_map_get_next_key(fd, prev, &next) == 0) {
		if (bpf_map_lookup_elem(fd, &next, &out[n].s) == 0) {
			out[n].pid = next;
			n++;
		}
		key = next;
		prev = &key;
	}
	return n;
}

static void print_entry(const char *prefix, const struct entry *e)
{
	printf("%spid %-7u comm %-16.16s calls %-10llu bytes %llu\n", prefix, e->pid,
	       e->s.comm[0] ? e->s.comm : "?", (unsigned long long)e->s.calls,
	       (unsigned long long)e->s.bytes);
}

static void usage(const char *prog)
{
	fprintf(stderr, "usage: %s [-d SECONDS] [-n TOP]\n", prog);
}

int main(int argc, char **argv)
{
	static struct entry entries[MAX_PIDS];
	struct malloccount_bpf *skel;
	struct sigaction sa;
	long duration = 0, top = 10;
	int opt, err, fd, n, i;
	long elapsed;

	while ((opt = getopt(argc, argv, "d:n:h")) != -1) {
		switch (opt) {
		case 'd':
			duration = strtol(optarg, NULL, 10);
			break;
		case 'n':
			top = strtol(optarg, NULL, 10);
			break;
		default:
			usage(argv[0]);
			return opt == 'h' ? 0 : 2;
		}
	}
	setvbuf(stdout, NULL, _IOLBF, 0);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	/* No SA_RESTART: a signal cuts the sleep short. */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	skel = malloccount_bpf__open_and_load();
	if (!skel) {
		fprintf(stderr, "malloccount: cannot open and load the BPF object: %s\n",
			strerror(errno));
		return 1;
	}
	err = malloccount_bpf__attach(skel);
	if (err) {
		fprintf(stderr, "malloccount: cannot attach to libc.so.6:malloc: %s\n",
			strerror(-err));
		malloccount_bpf__destroy(skel);
		return 1;
	}
	fd = bpf_map__fd(skel->maps.counts);
	if (duration > 0)
		printf("malloccount: counting malloc calls for %ld s (Ctrl-C stops)\n", duration);
	else
		printf("malloccount: counting malloc calls until Ctrl-C\n");

	for (elapsed = 1; !stop; elapsed++) {
		struct timespec ts = { .tv_sec = 1 };

		if (nanosleep(&ts, NULL) != 0 && stop)
			break;
		n = read_counts(fd, entries, MAX_PIDS);
		qsort(entries, n, sizeof(entries[0]), by_calls);
		printf("--- %ld s: %d process(es)\n", elapsed, n);
		for (i = 0; i < n && i < top; i++)
			print_entry("  ", &entries[i]);
		if (duration > 0 && elapsed >= duration)
			break;
	}

	n = read_counts(fd, entries, MAX_PIDS);
	qsort(entries, n, sizeof(entries[0]), by_pid);
	printf("--- final: %d process(es)\n", n);
	for (i = 0; i < n; i++)
		print_entry("final ", &entries[i]);

	malloccount_bpf__destroy(skel);
	return 0;
}
