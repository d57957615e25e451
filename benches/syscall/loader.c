// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* The loader of benches/syscall/run.sh: an ordinary libbpf program. It
 * loads and attaches the one program of OBJ named PROG, prints "ready",
 * waits for SIGTERM or SIGINT, then prints "count PID N" for every entry
 * of the `counts` map and exits. Run it on the system's libbpf for the
 * kernel rows and under `userbpf load` for userbpf's.
 *
 * Usage: syscall_loader OBJ PROG */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <bpf/libbpf.h>
#include <bpf/bpf.h>

int main(int argc, char **argv)
{
	struct bpf_program *p, *want = NULL;
	struct bpf_object *o;
	struct bpf_link *link;
	struct bpf_map *counts;
	__u32 key, next, *cur = NULL;
	__u64 val;
	sigset_t set;
	int sig;

	if (argc != 3) {
		fprintf(stderr, "usage: %s OBJ PROG\n", argv[0]);
		return 2;
	}
	/* Block before anything can send them: sigwait takes them below. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, NULL);

	o = bpf_object__open_file(argv[1], NULL);
	if (!o) {
		fprintf(stderr, "open %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	bpf_object__for_each_program(p, o) {
		int on = strcmp(bpf_program__name(p), argv[2]) == 0;

		bpf_program__set_autoload(p, on);
		if (on)
			want = p;
	}
	if (!want) {
		fprintf(stderr, "no program %s in %s\n", argv[2], argv[1]);
		return 1;
	}
	if (bpf_object__load(o)) {
		fprintf(stderr, "load %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	link = bpf_program__attach(want);
	if (!link) {
		fprintf(stderr, "attach %s: %s\n", argv[2], strerror(errno));
		return 1;
	}
	printf("ready %s\n", argv[2]);
	fflush(stdout);

	sigwait(&set, &sig);

	counts = bpf_object__find_map_by_name(o, "counts");
	while (counts && !bpf_map__get_next_key(counts, cur, &next, sizeof(next))) {
		key = next;
		cur = &key;
		if (!bpf_map__lookup_elem(counts, &key, sizeof(key), &val, sizeof(val), 0))
			printf("count %u %llu\n", key, (unsigned long long)val);
	}
	fflush(stdout);
	bpf_link__destroy(link);
	bpf_object__close(o);
	return 0;
}
