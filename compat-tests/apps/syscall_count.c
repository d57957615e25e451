// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * syscall_count: a syscount-like skeleton app (issue 7).
 *
 *   syscall_count -p PID [-m MARK] [-d MAX_SECONDS]
 *
 * Loads syscall_count.bpf.o with targ_tgid = PID (and targ_mark = MARK:
 * count a thread only between its close(MARK) and close(MARK - 1)),
 * attaches raw_syscalls/sys_enter and sys_exit, says "attached", waits
 * for SIGINT/SIGTERM (or MAX_SECONDS), then prints the counts per syscall
 * id, sorted by id, and exits 0.
 *
 * Output (parsed by compat-tests/tests/syscall_apps.rs):
 *   attached: enter yes exit yes
 *   totals: ids N enters N markers N id_mismatches N
 *   syscall ID NAME count C errors E
 *   ~latency ID total_ns T
 *   done
 */
#include <signal.h>
#include <time.h>
#include <linux/types.h>

#include "app.h"
#include "syscall_apps.h"
#include "syscall_count.skel.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

/* The names of the ids the test and the target care about (x86-64). */
static const char *name_of(__u32 id)
{
	switch (id) {
	case 0: return "read";
	case 1: return "write";
	case 3: return "close";
	case 5: return "fstat";
	case 9: return "mmap";
	case 10: return "mprotect";
	case 11: return "munmap";
	case 12: return "brk";
	case 13: return "rt_sigaction";
	case 14: return "rt_sigprocmask";
	case 39: return "getpid";
	case 60: return "exit";
	case 110: return "getppid";
	case 186: return "gettid";
	case 202: return "futex";
	case 231: return "exit_group";
	case 257: return "openat";
	case 262: return "newfstatat";
	default: return "?";
	}
}

int main(int argc, char **argv)
{
	struct syscall_count_bpf *skel;
	struct sigaction sa;
	long pid = 0, mark = 0, max_s = 600;
	struct timespec t0, t;
	static __u32 keys[1024];
	int opt, err, fd, n, i;

	while ((opt = getopt(argc, argv, "p:m:d:")) != -1) {
		switch (opt) {
		case 'p':
			pid = strtol(optarg, NULL, 10);
			break;
		case 'm':
			mark = strtol(optarg, NULL, 10);
			break;
		case 'd':
			max_s = strtol(optarg, NULL, 10);
			break;
		default:
			fprintf(stderr, "usage: %s -p PID [-m MARK] [-d MAX_SECONDS]\n", argv[0]);
			return 2;
		}
	}
	if (pid <= 0) {
		fprintf(stderr, "usage: %s -p PID [-m MARK] [-d MAX_SECONDS]\n", argv[0]);
		return 2;
	}
	app_init("syscall_count");

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	skel = syscall_count_bpf__open();
	if (!skel)
		fatal("open", -errno);
	skel->rodata->targ_tgid = (pid_t)pid;
	skel->rodata->targ_mark = (int)mark;
	err = syscall_count_bpf__load(skel);
	if (err)
		fatal("load", err);
	err = syscall_count_bpf__attach(skel);
	if (err)
		fatal("attach", err);
	printf("attached: enter %s exit %s\n", YESNO(skel->links.sys_enter),
	       YESNO(skel->links.sys_exit));

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (!stop) {
		struct timespec ts = { .tv_nsec = 50 * 1000 * 1000 };

		nanosleep(&ts, NULL);
		clock_gettime(CLOCK_MONOTONIC, &t);
		if (t.tv_sec - t0.tv_sec >= max_s) {
			fprintf(stderr, "syscall_count: stopping after %ld s\n", max_s);
			break;
		}
	}
	/* Counting ends here: a call still in flight is not half-counted. */
	syscall_count_bpf__detach(skel);

	fd = bpf_map__fd(skel->maps.data);
	n = map_keys_u32(fd, keys, (int)ARRAY_LEN(keys));
	printf("totals: ids %d enters %llu markers %llu id_mismatches %llu\n", n,
	       (unsigned long long)skel->bss->enters, (unsigned long long)skel->bss->markers,
	       (unsigned long long)skel->bss->id_mismatches);
	for (i = 0; i < n; i++) {
		struct count_data d;

		if (bpf_map_lookup_elem(fd, &keys[i], &d)) {
			printf("syscall %u lookup -> %s\n", keys[i], ERRNO_RC());
			continue;
		}
		printf("syscall %u %s count %llu errors %llu\n", keys[i], name_of(keys[i]),
		       (unsigned long long)d.count, (unsigned long long)d.errors);
		printf("~latency %u total_ns %llu\n", keys[i], (unsigned long long)d.total_ns);
	}
	syscall_count_bpf__destroy(skel);
	printf("done\n");
	return 0;
}
