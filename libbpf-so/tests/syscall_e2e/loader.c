// Loader for tests/syscall_e2e.rs, linked against our libbpf.so.1:
//   loader OBJ PROG...
// opens and loads OBJ, attaches the named programs (auto-attach by
// section), prints "attached N", then serves stdin commands:
//   set mode V   switch the programs (a store into the mmap'ed .bss)
//   reset        zero every counter and string (mode kept)
//   dump         print "name=value" per slot, the strings, then "end"
// and exits on EOF.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <bpf/libbpf.h>

#include "e2e.h"

static const char *slot_names[SLOT_COUNT] = {
#define E2E_NAME(n) #n,
	E2E_SLOTS(E2E_NAME)
#undef E2E_NAME
};

static void die(const char *what, int err)
{
	printf("error %s: %d\n", what, err);
	fflush(stdout);
	exit(1);
}

int main(int argc, char **argv)
{
	struct bpf_object *obj;
	struct bpf_map *map, *bss = NULL;
	volatile struct e2e_state *st;
	size_t size = 0;
	char line[256];
	int i, err;

	if (argc < 3) {
		fprintf(stderr, "usage: %s OBJ PROG...\n", argv[0]);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	obj = bpf_object__open_file(argv[1], NULL);
	if (!obj)
		die("open", -errno);
	err = bpf_object__load(obj);
	if (err)
		die("load", err);
	bpf_object__for_each_map(map, obj) {
		const char *name = bpf_map__name(map);
		size_t len = strlen(name);

		if (len >= 4 && strcmp(name + len - 4, ".bss") == 0)
			bss = map;
	}
	if (!bss)
		die("no .bss", -ENOENT);
	st = bpf_map__initial_value(bss, &size);
	if (!st || size != sizeof(struct e2e_state))
		die("bss view", (int)size);
	for (i = 2; i < argc; i++) {
		struct bpf_program *prog = bpf_object__find_program_by_name(obj, argv[i]);
		struct bpf_link *link;

		if (!prog)
			die(argv[i], -ENOENT);
		link = bpf_program__attach(prog);
		if (!link)
			die(argv[i], -errno);
	}
	printf("attached %d\n", argc - 2);

	while (fgets(line, sizeof(line), stdin)) {
		long long v;

		if (sscanf(line, "set mode %lld", &v) == 1) {
			st->st[SLOT_mode] = v;
			printf("ok mode %lld\n", v);
		} else if (strncmp(line, "reset", 5) == 0) {
			for (i = 0; i < SLOT_COUNT; i++)
				if (i != SLOT_mode)
					st->st[i] = 0;
			memset((void *)st->ks_path, 0, sizeof(st->ks_path));
			memset((void *)st->unlink_path, 0, sizeof(st->unlink_path));
			memset((void *)st->tp_path, 0, sizeof(st->tp_path));
			printf("ok reset\n");
		} else if (strncmp(line, "dump", 4) == 0) {
			for (i = 0; i < SLOT_COUNT; i++)
				printf("%s=%lld\n", slot_names[i], (long long)st->st[i]);
			printf("ks_path=%.*s\n", (int)sizeof(st->ks_path), (const char *)st->ks_path);
			printf("unlink_path=%.*s\n", (int)sizeof(st->unlink_path),
			       (const char *)st->unlink_path);
			printf("tp_path=%.*s\n", (int)sizeof(st->tp_path), (const char *)st->tp_path);
			printf("end\n");
		} else {
			printf("error unknown command: %s", line);
		}
	}
	bpf_object__close(obj);
	return 0;
}
