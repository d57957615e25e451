// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * profile_lite: opens a CPU-clock software perf event (999 Hz) on every
 * online CPU, attaches profile_lite.bpf.o's perf_event program to each
 * with bpf_program__attach_perf_event, spins for half a second in
 * busy_loop() and checks that its own process got samples, that user
 * stacks were recorded, and that one of them starts in this executable.
 */
#include <linux/perf_event.h>
#include <sys/syscall.h>

#include "kapp.h"
#include "profile_lite.skel.h"

#define PERF_MAX_STACK_DEPTH 127
#define MAX_CPUS 1024

struct stack_key {
	unsigned int tgid;
	int user_stack_id;
};

static volatile unsigned long sink;

__attribute__((noinline)) void busy_loop(double seconds)
{
	double end = now_s() + seconds;
	unsigned long x = 0;

	while (now_s() < end)
		for (int i = 0; i < 10000; i++)
			x = x * 6364136223846793005UL + 1442695040888963407UL;
	sink = x;
}

/* Whether `ip` lies in an executable mapping of /proc/self/exe. */
static bool in_this_exe(unsigned long ip)
{
	char exe[4096], line[4096 + 256];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	bool found = false;
	FILE *maps;

	if (n <= 0)
		return false;
	exe[n] = '\0';
	maps = fopen("/proc/self/maps", "r");
	if (!maps)
		return false;
	while (!found && fgets(line, sizeof(line), maps)) {
		unsigned long lo, hi;
		char perms[8], path[4096] = "";

		if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %4095s", &lo, &hi, perms, path) < 3)
			continue;
		found = ip >= lo && ip < hi && perms[2] == 'x' && strcmp(path, exe) == 0;
	}
	fclose(maps);
	return found;
}

int main(void)
{
	struct perf_event_attr attr = {
		.type = PERF_TYPE_SOFTWARE,
		.config = PERF_COUNT_SW_CPU_CLOCK,
		.size = sizeof(attr),
		.freq = 1,
		.sample_freq = 999,
	};
	static struct bpf_link *links[MAX_CPUS];
	static unsigned long long ips[PERF_MAX_STACK_DEPTH];
	struct stack_key key, next;
	struct profile_lite_bpf *skel;
	unsigned long long count, samples, with_stack = 0, failed_stack = 0;
	int ncpus, attached = 0, err, stack_fd, counts_fd, top_in_exe = 0, max_frames = 0;
	unsigned int tgid = getpid();
	void *prev = NULL;

	kapp_init("profile_lite");
	skel = profile_lite_bpf__open();
	if (!skel)
		fail("open", errno);
	skel->rodata->targ_tgid = tgid;
	err = profile_lite_bpf__load(skel);
	if (err)
		fail("load", err);
	printf("loaded: %s (%s)\n", bpf_program__name(skel->progs.do_sample),
	       bpf_program__section_name(skel->progs.do_sample));

	ncpus = libbpf_num_possible_cpus();
	if (ncpus < 0)
		fail("libbpf_num_possible_cpus", ncpus);
	for (int cpu = 0; cpu < ncpus && cpu < MAX_CPUS; cpu++) {
		int pfd = syscall(__NR_perf_event_open, &attr, -1, cpu, -1, PERF_FLAG_FD_CLOEXEC);

		if (pfd < 0) {
			if (errno == ENODEV) /* possible but not online */
				continue;
			fail("perf_event_open", errno);
		}
		links[cpu] = bpf_program__attach_perf_event(skel->progs.do_sample, pfd);
		if (!links[cpu]) {
			err = -errno;
			close(pfd);
			fail("bpf_program__attach_perf_event", err);
		}
		attached++;
	}
	printf("attached to every online CPU: %s\n", YESNO(attached > 0));

	busy_loop(0.5);

	for (int cpu = 0; cpu < ncpus && cpu < MAX_CPUS; cpu++)
		bpf_link__destroy(links[cpu]);

	samples = map_u64(bpf_map__fd(skel->maps.samples), tgid);
	printf("samples of this process > 0: %s\n", YESNO(samples > 0));

	counts_fd = bpf_map__fd(skel->maps.stack_counts);
	stack_fd = bpf_map__fd(skel->maps.stackmap);
	while (bpf_map_get_next_key(counts_fd, prev, &next) == 0) {
		key = next;
		prev = &key;
		if (bpf_map_lookup_elem(counts_fd, &key, &count))
			continue;
		if (key.tgid != tgid)
			continue;
		if (key.user_stack_id < 0) {
			failed_stack += count;
			continue;
		}
		with_stack += count;
		memset(ips, 0, sizeof(ips));
		if (bpf_map_lookup_elem(stack_fd, &key.user_stack_id, ips))
			continue;
		int frames = 0;
		while (frames < PERF_MAX_STACK_DEPTH && ips[frames])
			frames++;
		if (frames > max_frames)
			max_frames = frames;
		if (frames && in_this_exe(ips[0]))
			top_in_exe++;
	}
	printf("samples with a user stack id > 0: %s\n", YESNO(with_stack > 0));
	printf("a user stack starts in this executable: %s\n", YESNO(top_in_exe > 0));
	printf("~samples %llu, with stack %llu, stackid errors %llu, stacks in exe %d, "
	       "deepest %d frames, cpus %d\n",
	       samples, with_stack, failed_stack, top_in_exe, max_frames, attached);
	profile_lite_bpf__destroy(skel);
	return samples > 0 && with_stack > 0 ? 0 : 1;
}
