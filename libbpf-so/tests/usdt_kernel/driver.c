// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Attaches a USDT program to this process's own probe (with a semaphore),
 * fires it, detaches, fires again. The output must be the same on the
 * real libbpf (kernel uprobes) and on userbpf in kernel and auto mode. */
#include <stdio.h>
#include <errno.h>
#include <stdarg.h>
#define _SDT_HAS_SEMAPHORES 1
#include <sys/sdt.h>
#include <bpf/libbpf.h>
#include <bpf/bpf.h>

unsigned short demo_tick_semaphore __attribute__((unused)) __attribute__((section(".probes")));

static int print(enum libbpf_print_level level, const char *fmt, va_list args)
{
	return level == LIBBPF_WARN ? vfprintf(stderr, fmt, args) : 0;
}

static void fire(void)
{
	for (int i = 0; i < 10; i++)
		if (demo_tick_semaphore)
			DTRACE_PROBE2(demo, tick, i, 100L);
}

static void show(struct bpf_object *o, const char *when)
{
	struct bpf_map *bss = bpf_object__find_map_by_name(o, "usdt.bss");
	__u64 v[2] = { 0 };
	__u32 k = 0;
	int r = bpf_map_lookup_elem(bpf_map__fd(bss), &k, v);

	printf("%s: lookup %d sum=%llu hits=%llu semaphore=%u\n", when, r,
	       (unsigned long long)v[0], (unsigned long long)v[1], demo_tick_semaphore);
}

int main(int argc, char **argv)
{
	struct bpf_object *o;
	struct bpf_link *l;

	libbpf_set_print(print);
	o = bpf_object__open_file(argv[1], NULL);
	if (!o || bpf_object__load(o)) {
		printf("load failed: %d\n", errno);
		return 1;
	}
	l = bpf_program__attach_usdt(bpf_object__find_program_by_name(o, "on_tick"), 0,
				     "/proc/self/exe", "demo", "tick", NULL);
	printf("attach: %s (%d)\n", l ? "ok" : "failed", l ? 0 : errno);
	fire();
	show(o, "attached");
	bpf_link__destroy(l);
	fire();
	show(o, "destroyed");
	bpf_object__close(o);
	return 0;
}
