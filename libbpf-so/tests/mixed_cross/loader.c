// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Loads the mixed object, attaches the uprobe to VICTIM's marker() for
 * every process, prints "ready", waits for a line on stdin (the victim
 * has run), then prints both maps' counts for key 1. */
#include <stdio.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>
#include <bpf/libbpf.h>
#include <bpf/bpf.h>

static int print(enum libbpf_print_level level, const char *fmt, va_list args)
{
	return level == LIBBPF_WARN ? vfprintf(stderr, fmt, args) : 0;
}

int main(int argc, char **argv)
{
	LIBBPF_OPTS(bpf_uprobe_opts, uo, .func_name = "marker");
	struct bpf_object *o;
	struct bpf_link *l;
	__u64 v = 0, h = 0;
	__u32 k = 1;
	char line[16];

	libbpf_set_print(print);
	o = bpf_object__open_file(argv[1], NULL);
	if (!o || bpf_object__load(o))
		return 1;
	l = bpf_program__attach_uprobe_opts(bpf_object__find_program_by_name(o, "on_marker"), -1,
					    argv[2], 0, &uo);
	if (!l)
		return 1;
	printf("ready\n");
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		return 1;
	bpf_map_lookup_elem(bpf_map__fd(bpf_object__find_map_by_name(o, "counts")), &k, &v);
	bpf_map_lookup_elem(bpf_map__fd(bpf_object__find_map_by_name(o, "hash")), &k, &h);
	printf("counts[1]=%llu hash[1]=%llu\n", (unsigned long long)v, (unsigned long long)h);
	/* Both maps must be the kernel's (anon inodes), not userbpf's memfds. */
	for (int i = 0; i < 2; i++) {
		const char *name = i ? "hash" : "counts";
		char path[64], target[64] = { 0 };

		snprintf(path, sizeof(path), "/proc/self/fd/%d",
			 bpf_map__fd(bpf_object__find_map_by_name(o, name)));
		if (readlink(path, target, sizeof(target) - 1) < 0)
			strcpy(target, "?");
		printf("%s: %s\n", name, target);
	}
	bpf_link__destroy(l);
	bpf_object__close(o);
	return 0;
}
