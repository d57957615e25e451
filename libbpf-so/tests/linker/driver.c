/* The linker test's driver (tests/linker.rs), built twice: against
 * userbpf's libbpf.so and (with -DOPEN_ONLY) against the system's libbpf.
 *
 *   driver link OUT IN...   bpf_linker__new/add_file/finalize
 *   driver show OBJ         open (and unless OPEN_ONLY load and run) OBJ,
 *                           printing what both links must agree on.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "%s:%d: CHECK(%s) failed (errno %d)\n", \
	__FILE__, __LINE__, #c, errno); exit(1); } } while (0)

static int do_link(int argc, char **argv)
{
	struct bpf_linker *l = bpf_linker__new(argv[2], NULL);
	int i;

	CHECK(l != NULL);
	for (i = 3; i < argc; i++)
		CHECK(bpf_linker__add_file(l, argv[i], NULL) == 0);
	CHECK(bpf_linker__finalize(l) == 0);
	CHECK(bpf_linker__add_file(l, argv[3], NULL) == -EINVAL && errno == EINVAL);
	CHECK(bpf_linker__finalize(l) == -EINVAL);
	bpf_linker__free(l);
	return 0;
}

static int do_show(const char *path)
{
	struct bpf_object *obj = bpf_object__open_file(path, NULL);
	struct bpf_program *prog;
	struct bpf_map *map;

	CHECK(obj != NULL && libbpf_get_error(obj) == 0);
	bpf_object__for_each_program(prog, obj)
		printf("prog %s sec %s insns %zu\n", bpf_program__name(prog),
		       bpf_program__section_name(prog), bpf_program__insn_cnt(prog));
	bpf_object__for_each_map(map, obj)
		printf("map %s type %d max %u key %u value %u\n", bpf_map__name(map),
		       bpf_map__type(map), bpf_map__max_entries(map), bpf_map__key_size(map),
		       bpf_map__value_size(map));
#ifndef OPEN_ONLY
	CHECK(bpf_object__load(obj) == 0);
	bpf_object__for_each_program(prog, obj) {
		__u64 args[2] = { 1, 2 };
		LIBBPF_OPTS(bpf_test_run_opts, t, .ctx_in = args, .ctx_size_in = sizeof(args));
		int round;

		for (round = 0; round < 2; round++) {
			CHECK(bpf_prog_test_run_opts(bpf_program__fd(prog), &t) == 0);
			printf("run %s round %d retval %u\n", bpf_program__name(prog), round, t.retval);
		}
	}
	{
		__u32 k;
		__u64 v;
		int fd = bpf_object__find_map_fd_by_name(obj, "counts");

		CHECK(fd >= 0);
		for (k = 0; k < 4; k++) {
			CHECK(bpf_map_lookup_elem(fd, &k, &v) == 0);
			printf("counts[%u] = %llu\n", k, (unsigned long long)v);
		}
		fd = bpf_object__find_map_fd_by_name(obj, "shared");
		CHECK(fd >= 0);
		k = 0;
		CHECK(bpf_map_lookup_elem(fd, &k, &k) == 0);
		printf("shared[0] = %u\n", k);
	}
#endif
	bpf_object__close(obj);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 4 && strcmp(argv[1], "link") == 0)
		return do_link(argc, argv);
	if (argc == 3 && strcmp(argv[1], "show") == 0)
		return do_show(argv[2]);
	fprintf(stderr, "usage: %s link OUT IN... | show OBJ\n", argv[0]);
	return 2;
}
