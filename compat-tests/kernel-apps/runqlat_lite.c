// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * runqlat_lite: loads runqlat_lite.bpf.o (tp_btf + tracepoint programs on
 * the scheduler), makes context switches itself for about a second (two
 * threads ping-ponging a byte over two pipes) and checks that the
 * histogram filled up. Only the structure is printed for comparison; the
 * numbers are `~` lines.
 */
#include <pthread.h>

#include "kapp.h"
#include "runqlat_lite.skel.h"

#define MAX_SLOTS 26
enum { C_WAKEUP, C_WAKEUP_NEW, C_SWITCH_IN, C_SAMPLES, C_NR };

static int ping[2], pong[2];
static volatile int stop;
static unsigned long round_trips;

static void *pinger(void *arg)
{
	char c = 'x';
	double deadline = now_s() + 1.0;

	(void)arg;
	while (!stop) {
		if (write(ping[1], &c, 1) != 1 || read(pong[0], &c, 1) != 1)
			break;
		round_trips++;
		if ((round_trips % 256) == 0 && now_s() > deadline)
			stop = 1;
	}
	c = 'q';
	if (write(ping[1], &c, 1) != 1)
		perror("write");
	return NULL;
}

static void *ponger(void *arg)
{
	char c;

	(void)arg;
	while (read(ping[0], &c, 1) == 1 && c != 'q')
		if (write(pong[1], &c, 1) != 1)
			break;
	return NULL;
}

int main(void)
{
	struct runqlat_lite_bpf *skel;
	struct bpf_program *prog;
	unsigned long long counts[C_NR], hist[MAX_SLOTS], total = 0;
	pthread_t a, b;
	int err, used = 0, fd;

	kapp_init("runqlat_lite");
	skel = runqlat_lite_bpf__open();
	if (!skel)
		fail("open", errno);
	skel->rodata->targ_tgid = getpid();
	err = runqlat_lite_bpf__load(skel);
	if (err)
		fail("load", err);
	printf("loaded:");
	bpf_object__for_each_program(prog, skel->obj)
		printf(" %s", bpf_program__name(prog));
	printf("\n");
	err = runqlat_lite_bpf__attach(skel);
	if (err)
		fail("attach", err);
	printf("attached: %s %s %s\n", YESNO(skel->links.handle_sched_wakeup),
	       YESNO(skel->links.handle_sched_wakeup_new), YESNO(skel->links.handle_sched_switch));

	if (pipe(ping) || pipe(pong))
		fail("pipe", errno);
	if (pthread_create(&b, NULL, ponger, NULL) || pthread_create(&a, NULL, pinger, NULL))
		fail("pthread_create", EAGAIN);
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	runqlat_lite_bpf__detach(skel);

	fd = bpf_map__fd(skel->maps.counts);
	for (int i = 0; i < C_NR; i++)
		counts[i] = map_u64(fd, i);
	fd = bpf_map__fd(skel->maps.hist);
	for (int i = 0; i < MAX_SLOTS; i++) {
		hist[i] = map_u64(fd, i);
		total += hist[i];
		used += hist[i] != 0;
	}
	printf("sched_wakeup events > 0: %s\n", YESNO(counts[C_WAKEUP] > 0));
	printf("sched_wakeup_new events >= 2 (two threads): %s\n",
	       YESNO(counts[C_WAKEUP_NEW] >= 2));
	printf("switch-ins > 0: %s\n", YESNO(counts[C_SWITCH_IN] > 0));
	printf("samples > 0: %s\n", YESNO(counts[C_SAMPLES] > 0));
	printf("histogram non-empty: %s\n", YESNO(used > 0));
	printf("~round trips %lu, wakeups %llu, wakeup_new %llu, switch-ins %llu, samples %llu (histogram %llu)\n",
	       round_trips, counts[C_WAKEUP], counts[C_WAKEUP_NEW], counts[C_SWITCH_IN],
	       counts[C_SAMPLES], total);
	printf("~%20s : count\n", "usecs");
	for (int i = 0; i < MAX_SLOTS; i++)
		if (hist[i])
			printf("~%9llu -> %-9llu : %llu\n", i ? 1ULL << i : 0ULL,
			       (1ULL << (i + 1)) - 1, hist[i]);
	runqlat_lite_bpf__destroy(skel);
	return counts[C_SAMPLES] > 0 && used > 0 ? 0 : 1;
}
