// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * mixed_probes: attaches mixed_probes.bpf.o (a uprobe on this program's
 * marker_func and a tracepoint on getppid(2), sharing two maps), calls
 * marker_func N times and getppid M times, and checks the counts are
 * exactly N and M in both maps (and the sum of marker_func's arguments).
 */
#include <sys/syscall.h>

#include "kapp.h"
#include "mixed_probes.skel.h"

#define N_MARKER 1000
#define M_GETPPID 500

enum { K_UPROBE, K_TRACEPOINT, K_NR };

static volatile int sink;

__attribute__((noinline)) int marker_func(int arg)
{
	asm volatile("" ::: "memory");
	sink += arg;
	return sink;
}

int main(void)
{
	struct mixed_probes_bpf *skel;
	unsigned long long up, tp, h_up, h_tp, h_sum, want_sum = 0;
	int err, fd;

	kapp_init("mixed_probes");
	skel = mixed_probes_bpf__open();
	if (!skel)
		fail("open", errno);
	skel->rodata->targ_tgid = getpid();
	err = mixed_probes_bpf__load(skel);
	if (err)
		fail("load", err);
	printf("loaded: %s (%s), %s (%s)\n", bpf_program__name(skel->progs.on_marker),
	       bpf_program__section_name(skel->progs.on_marker),
	       bpf_program__name(skel->progs.on_getppid),
	       bpf_program__section_name(skel->progs.on_getppid));
	err = mixed_probes_bpf__attach(skel);
	if (err)
		fail("attach", err);
	printf("attached: uprobe %s, tracepoint %s\n", YESNO(skel->links.on_marker),
	       YESNO(skel->links.on_getppid));

	for (int i = 0; i < N_MARKER; i++) {
		marker_func(i);
		want_sum += i;
	}
	for (int i = 0; i < M_GETPPID; i++)
		syscall(SYS_getppid);

	mixed_probes_bpf__detach(skel);

	fd = bpf_map__fd(skel->maps.counters);
	up = map_u64(fd, K_UPROBE);
	tp = map_u64(fd, K_TRACEPOINT);
	fd = bpf_map__fd(skel->maps.by_kind);
	h_up = map_u64(fd, 1);
	h_tp = map_u64(fd, 2);
	h_sum = map_u64(fd, 3);
	printf("marker_func calls %d: array %llu, hash %llu\n", N_MARKER, up, h_up);
	printf("getppid calls %d: array %llu, hash %llu\n", M_GETPPID, tp, h_tp);
	printf("marker_func argument sum %llu: %llu\n", want_sum, h_sum);
	mixed_probes_bpf__destroy(skel);
	if (up != N_MARKER || h_up != N_MARKER || tp != M_GETPPID || h_tp != M_GETPPID ||
	    h_sum != want_sum) {
		fprintf(stderr, "mixed_probes: counts differ from the calls made\n");
		return 1;
	}
	return 0;
}
