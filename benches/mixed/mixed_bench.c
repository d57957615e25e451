// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* ns per run of a user-space program on kernel maps (mixed object) and on
 * userbpf's own maps: BPF_PROG_TEST_RUN with repeat, which userbpf runs
 * in process. Usage: mixed_bench OBJ LABEL (backend from USERBPF_BACKEND). */
#include <stdio.h>
#include <bpf/libbpf.h>
#include <bpf/bpf.h>

int main(int argc, char **argv)
{
	const char *progs[] = { "array_only", "array_and_hash" };
	char ctx[168] = { 0 };
	struct bpf_object *o;

	if (argc < 3)
		return 2;
	o = bpf_object__open_file(argv[1], NULL);
	if (!o || bpf_object__load(o)) {
		fprintf(stderr, "load failed\n");
		return 1;
	}
	for (int i = 0; i < 2; i++) {
		int fd = bpf_program__fd(bpf_object__find_program_by_name(o, progs[i]));
		LIBBPF_OPTS(bpf_test_run_opts, t, .ctx_in = ctx, .ctx_size_in = sizeof(ctx),
			    .repeat = 100000);

		if (bpf_prog_test_run_opts(fd, &t)) {
			fprintf(stderr, "%s: test_run failed\n", progs[i]);
			return 1;
		}
		printf("%-8s %-15s %6u ns per run\n", argv[2], progs[i], t.duration);
	}
	bpf_object__close(o);
	return 0;
}
