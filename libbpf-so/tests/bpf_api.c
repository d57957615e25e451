// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * The bpf.h fd wrappers, run once against userbpf's libbpf.so.1 and once
 * (as root) against the system libbpf and the kernel. Built against the
 * system headers (libbpf 1.1.2); the few wrappers 1.1.2 lacks are looked up
 * with dlsym and fall back to their older equivalents.
 *
 * Lines starting with '#' are not comparable between the two (the kernel
 * serves more types, reports JIT sizes, has other processes' objects...);
 * every other line must be the same.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/bpf.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

static int ncpus;

/* "name = result": 0 / "fd" / a negative errno, checking errno == -ret. */
static long show(const char *what, long r)
{
	int e = errno;

	if (r < 0 && e != -r)
		printf("ERRNO MISMATCH %s: ret %ld errno %d\n", what, r, e);
	if (r >= 0)
		printf("%s = ok\n", what);
	else
		printf("%s = %ld\n", what, r);
	return r;
}

#define T(call) (errno = 0, show(#call, (long)(call)))
/* The same, as a '#' line (not comparable). */
#define H(call) (errno = 0, printf("# "), show(#call, (long)(call)))

/* --- instructions (linux/filter.h is not uapi) --- */
#define INSN(c, d, s, o, i) ((struct bpf_insn){ .code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i) })
#define MOV64_IMM(d, i) INSN(BPF_ALU64 | BPF_MOV | BPF_K, d, 0, 0, i)
#define MOV64_REG(d, s) INSN(BPF_ALU64 | BPF_MOV | BPF_X, d, s, 0, 0)
#define ADD64_IMM(d, i) INSN(BPF_ALU64 | BPF_ADD | BPF_K, d, 0, 0, i)
#define ADD64_REG(d, s) INSN(BPF_ALU64 | BPF_ADD | BPF_X, d, s, 0, 0)
#define MUL64_IMM(d, i) INSN(BPF_ALU64 | BPF_MUL | BPF_K, d, 0, 0, i)
#define LDX(sz, d, s, o) INSN(BPF_LDX | BPF_MEM | (sz), d, s, o, 0)
#define STX(sz, d, s, o) INSN(BPF_STX | BPF_MEM | (sz), d, s, o, 0)
#define ST(sz, d, o, i) INSN(BPF_ST | BPF_MEM | (sz), d, 0, o, i)
#define XADD64(d, s, o) INSN(BPF_STX | BPF_ATOMIC | BPF_DW, d, s, o, BPF_ADD)
#define JEQ_IMM(d, i, o) INSN(BPF_JMP | BPF_JEQ | BPF_K, d, 0, o, i)
#define CALL(id) INSN(BPF_JMP | BPF_CALL, 0, 0, 0, id)
#define EXIT() INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)
#define LD_MAP_FD(d, fd) INSN(BPF_LD | BPF_DW | BPF_IMM, d, BPF_PSEUDO_MAP_FD, 0, fd), INSN(0, 0, 0, 0, 0)
#define LD_MAP_VALUE(d, fd, off) \
	INSN(BPF_LD | BPF_DW | BPF_IMM, d, BPF_PSEUDO_MAP_VALUE, 0, fd), INSN(0, 0, 0, 0, off)
#define N(a) (sizeof(a) / sizeof((a)[0]))

/* --- wrappers newer than libbpf 1.1.2 --- */
static void *sym(const char *name)
{
	return dlsym(RTLD_DEFAULT, name);
}

static int map_info(int fd, struct bpf_map_info *info, __u32 *len)
{
	int (*f)(int, struct bpf_map_info *, __u32 *) = sym("bpf_map_get_info_by_fd");

	return f ? f(fd, info, len) : bpf_obj_get_info_by_fd(fd, info, len);
}

static int prog_info(int fd, struct bpf_prog_info *info, __u32 *len)
{
	int (*f)(int, struct bpf_prog_info *, __u32 *) = sym("bpf_prog_get_info_by_fd");

	return f ? f(fd, info, len) : bpf_obj_get_info_by_fd(fd, info, len);
}

static int pin_opts(int fd, const char *path)
{
	struct { size_t sz; __u32 file_flags; int path_fd; } o = { .sz = sizeof(o) };
	int (*f)(int, const char *, const void *) = sym("bpf_obj_pin_opts");

	return f ? f(fd, path, &o) : bpf_obj_pin(fd, path);
}

static __u32 map_id(int fd)
{
	struct bpf_map_info info = {};
	__u32 len = sizeof(info);

	return map_info(fd, &info, &len) ? 0 : info.id;
}

static __u32 prog_id(int fd)
{
	struct bpf_prog_info info = {};
	__u32 len = sizeof(info);

	return prog_info(fd, &info, &len) ? 0 : info.id;
}

static int create(enum bpf_map_type t, const char *name, __u32 k, __u32 v, __u32 max, __u32 flags)
{
	LIBBPF_OPTS(bpf_map_create_opts, o, .map_flags = flags);

	return bpf_map_create(t, name, k, v, max, &o);
}

/* --- names --- */
static void names(void)
{
	int i;

	for (i = 0; i <= 34; i++) {
		const char *s = libbpf_bpf_map_type_str(i);
		printf("%smap type %d: %s\n", i <= 32 ? "" : "# ", i, s ? s : "(null)");
	}
	for (i = 0; i <= 32; i++) {
		const char *s = libbpf_bpf_prog_type_str(i);
		printf("%sprog type %d: %s\n", i <= 31 ? "" : "# ", i, s ? s : "(null)");
	}
	for (i = 0; i <= 58; i++) {
		const char *s = libbpf_bpf_attach_type_str(i);
		printf("%sattach type %d: %s\n", i <= 43 ? "" : "# ", i, s ? s : "(null)");
	}
	for (i = 0; i <= 14; i++) {
		const char *s = libbpf_bpf_link_type_str(i);
		printf("%slink type %d: %s\n", i <= 9 ? "" : "# ", i, s ? s : "(null)");
	}
	printf("map type 1000: %s\n", libbpf_bpf_map_type_str(1000) ? "?" : "(null)");
	printf("prog type -1: %s\n", libbpf_bpf_prog_type_str(-1) ? "?" : "(null)");
}

/* --- map creation checks --- */
struct ccase { int t; const char *name; __u32 k, v, max, flags; __u64 extra; };

static void create_checks(void)
{
	static const struct ccase cases[] = {
		{ 1, "h", 0, 8, 4, 0 }, { 1, "h", 4, 0, 4, 0 }, { 1, "h", 4, 8, 0, 0 },
		{ 1, "h", 4, 8, 4, BPF_F_MMAPABLE }, { 1, "h", 4, 8, 4, BPF_F_NO_PREALLOC },
		{ 1, "h-x", 4, 8, 4, 0 }, { 1, "h", 4, 8, 4, BPF_F_RDONLY | BPF_F_WRONLY },
		{ 1, "h", 4, 8, 4, BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG }, { 1, "h", 4, 8, 4, BPF_F_NO_COMMON_LRU },
		{ 9, "h", 4, 8, 4, BPF_F_NO_PREALLOC }, { 9, "h", 4, 8, 4, BPF_F_NO_COMMON_LRU },
		{ 1, "h", 4, 8, 4, BPF_F_ZERO_SEED }, { 1, "h", 4, 8, 4, 1 << 20 },
		{ 1, "h", 4, 8, 4, 0, 3 }, { 5, "h", 4, 40000, 4, 0 },
		{ 2, "a", 8, 8, 4, 0 }, { 2, "a", 4, 0, 4, 0 }, { 2, "a", 4, 8, 4, BPF_F_MMAPABLE },
		{ 6, "a", 4, 8, 4, BPF_F_MMAPABLE }, { 2, "a", 4, 8, 4, BPF_F_NO_PREALLOC },
		{ 6, "a", 4, 40000, 4, 0 }, { 2, "a", 4, 8, 4, BPF_F_INNER_MAP }, { 6, "a", 4, 8, 4, BPF_F_INNER_MAP },
		{ 2, "a", 4, 8, 4, 1 << 11 }, { 2, "a", 4, 8, 0, 0 },
		{ 3, "p", 4, 8, 4, 0 }, { 3, "p", 4, 4, 4, BPF_F_RDONLY_PROG }, { 4, "p", 4, 4, 4, 1 << 11 },
		{ 3, "p", 4, 4, 4, 1 << 11 }, { 4, "p", 4, 4, 0, 0 }, { 4, "p", 8, 4, 4, 0 },
		{ 7, "s", 4, 4, 4, 0 }, { 7, "s", 4, 12, 4, 0 }, { 7, "s", 4, 8 * 128, 4, 0 },
		{ 7, "s", 4, 8 * 127, 4, 0 }, { 7, "s", 8, 8, 4, 0 }, { 7, "s", 4, 32, 4, 1 << 5 },
		{ 7, "s", 4, 48, 4, 1 << 5 }, { 7, "s", 4, 8, 4, BPF_F_NO_PREALLOC },
		{ 11, "l", 8, 8, 4, 0 }, { 11, "l", 4, 8, 4, BPF_F_NO_PREALLOC }, { 11, "l", 5, 8, 4, BPF_F_NO_PREALLOC },
		{ 11, "l", 261, 8, 4, BPF_F_NO_PREALLOC }, { 11, "l", 260, 8, 4, BPF_F_NO_PREALLOC },
		{ 11, "l", 8, 0, 4, BPF_F_NO_PREALLOC },
		{ 22, "q", 4, 8, 4, 0 }, { 22, "q", 0, 0, 4, 0 }, { 23, "q", 0, 8, 4, BPF_F_NO_PREALLOC },
		{ 22, "q", 0, 8, 0, 0 }, { 23, "q", 0, 8, 4, 0 },
		{ 27, "r", 0, 0, 4096, 0 }, { 27, "r", 0, 0, 4097, 0 }, { 27, "r", 0, 0, 3 * 4096, 0 },
		{ 27, "r", 4, 0, 4096, 0 }, { 27, "r", 0, 0, 2048, 0 }, { 27, "r", 0, 0, 4096, BPF_F_NO_PREALLOC },
		{ 27, "r", 0, 0, 0, 0 },
		{ 30, "b", 0, 8, 4, 0 }, { 30, "b", 4, 8, 4, 0 }, { 30, "b", 0, 0, 4, 0 },
		{ 30, "b", 0, 8, 4, BPF_F_NO_PREALLOC }, { 30, "b", 0, 8, 4, 0, 3 }, { 30, "b", 0, 8, 4, 0, 16 },
		{ 12, "m", 4, 4, 4, 0 }, { 13, "m", 4, 4, 4, 0 },
		{ 0, "u", 4, 4, 4, 0 }, { 99, "x", 4, 4, 4, 0 },
		{ 1, "name_of_16_chars", 4, 8, 4, 0 },
	};
	unsigned i;

	for (i = 0; i < N(cases); i++) {
		const struct ccase *c = &cases[i];
		LIBBPF_OPTS(bpf_map_create_opts, o, .map_flags = c->flags, .map_extra = c->extra);
		int fd;

		errno = 0;
		/* stdin is never a map: map-in-map without an inner map */
		fd = bpf_map_create(c->t, c->name, c->k, c->v, c->max, &o);
		printf("create type=%d name=%s k=%u v=%u max=%u flags=%#x extra=%llu -> %d\n", c->t, c->name,
		       c->k, c->v, c->max, c->flags, (unsigned long long)c->extra, fd < 0 ? -errno : 0);
		if (fd >= 0)
			close(fd);
	}
	/* A type the kernel has and user space does not serve. */
	{
		int fd = create(BPF_MAP_TYPE_DEVMAP, "d", 4, 4, 4, 0);

		printf("# devmap -> %d\n", fd < 0 ? -errno : 0);
		if (fd >= 0)
			close(fd);
	}
	/* The opts sz rule. */
	{
		/* the tail lies beyond the struct of libbpf 1.1.2 and of 1.7 */
		struct { struct bpf_map_create_opts o; char tail[40]; } big = {};
		LIBBPF_OPTS(bpf_map_create_opts, o);
		int fd;

		o.sz = 4;
		T(bpf_map_create(BPF_MAP_TYPE_HASH, "h", 4, 8, 4, &o));
		big.o.sz = sizeof(big);
		big.tail[39] = 1;
		T(bpf_map_create(BPF_MAP_TYPE_HASH, "h", 4, 8, 4, &big.o));
		big.tail[39] = 0;
		fd = T(bpf_map_create(BPF_MAP_TYPE_HASH, "h", 4, 8, 4, &big.o));
		close(fd);
		o.sz = offsetof(struct bpf_map_create_opts, inner_map_fd); /* an older caller */
		o.map_flags = BPF_F_NO_PREALLOC; /* beyond sz: ignored */
		fd = T(bpf_map_create(BPF_MAP_TYPE_LPM_TRIE, "l", 8, 8, 4, &o));
		if (fd >= 0)
			close(fd);
		fd = T(bpf_map_create(BPF_MAP_TYPE_HASH, NULL, 4, 8, 4, NULL));
		close(fd);
	}
	/* NUMA nodes. */
	{
		LIBBPF_OPTS(bpf_map_create_opts, o, .map_flags = BPF_F_NUMA_NODE, .numa_node = 0);
		int fd;

		fd = T(bpf_map_create(BPF_MAP_TYPE_HASH, "n", 4, 8, 4, &o));
		close(fd);
		T(bpf_map_create(BPF_MAP_TYPE_PERCPU_HASH, "n", 4, 8, 4, &o));
		o.numa_node = 1000;
		T(bpf_map_create(BPF_MAP_TYPE_HASH, "n", 4, 8, 4, &o));
		o.map_flags = 0;
		fd = T(bpf_map_create(BPF_MAP_TYPE_HASH, "n", 4, 8, 4, &o));
		close(fd);
	}
}

/* --- per type --- */
static int value_width(int t, __u32 v)
{
	if (t == BPF_MAP_TYPE_PERCPU_ARRAY || t == BPF_MAP_TYPE_PERCPU_HASH || t == BPF_MAP_TYPE_LRU_PERCPU_HASH)
		return ((v + 7) / 8 * 8) * ncpus;
	return v;
}

static void print_info(int fd)
{
	struct bpf_map_info info = {};
	__u32 len = sizeof(info);

	if (T(map_info(fd, &info, &len)) < 0)
		return;
	printf("info: type=%u key=%u value=%u max=%u flags=%#x name=%s extra=%llu id!=0:%d len=%u\n", info.type,
	       info.key_size, info.value_size, info.max_entries, info.map_flags, info.name,
	       (unsigned long long)info.map_extra, info.id != 0, len);
}

/* Keys of a u32-keyed map, in ascending order. */
static void dump_keys_u32(int fd)
{
	__u32 key, next, keys[64];
	int n = 0, i, j, r;
	void *prev = NULL;

	while ((r = bpf_map_get_next_key(fd, prev, &next)) == 0 && n < 64) {
		keys[n++] = next;
		key = next;
		prev = &key;
	}
	for (i = 0; i < n; i++)
		for (j = i + 1; j < n; j++)
			if (keys[j] < keys[i]) {
				__u32 t = keys[i];
				keys[i] = keys[j];
				keys[j] = t;
			}
	printf("keys (end %d):", r < 0 ? -errno : r);
	for (i = 0; i < n; i++)
		printf(" %u", keys[i]);
	printf("\n");
}

static void array_tests(int t)
{
	int vw = value_width(t, 4);
	__u32 k;
	char v[4096], v2[4096];
	int fd, i, c;

	printf("== %s\n", libbpf_bpf_map_type_str(t));
	fd = T(create(t, "arr", 4, 4, 4, 0));
	if (fd < 0)
		return;
	print_info(fd);
	for (k = 0; k < 4; k++) {
		for (c = 0; c < vw; c++)
			v[c] = (char)(k * 16 + c);
		T(bpf_map_update_elem(fd, &k, v, BPF_ANY));
	}
	k = 2;
	memset(v2, 0, sizeof(v2));
	T(bpf_map_lookup_elem(fd, &k, v2));
	printf("value:");
	for (c = 0; c < vw; c++)
		printf(" %d", v2[c]);
	printf("\n");
	k = 4;
	T(bpf_map_lookup_elem(fd, &k, v2));
	T(bpf_map_update_elem(fd, &k, v, BPF_ANY));
	k = 1;
	T(bpf_map_update_elem(fd, &k, v, BPF_NOEXIST));
	T(bpf_map_update_elem(fd, &k, v, BPF_EXIST));
	T(bpf_map_update_elem(fd, &k, v, 3));
	T(bpf_map_update_elem(fd, &k, v, BPF_F_LOCK));
	T(bpf_map_lookup_elem_flags(fd, &k, v2, BPF_F_LOCK));
	T(bpf_map_lookup_elem_flags(fd, &k, v2, 8));
	T(bpf_map_delete_elem(fd, &k));
	T(bpf_map_lookup_and_delete_elem(fd, &k, v2));
	T(bpf_map_lookup_elem(fd, NULL, v2));
	T(bpf_map_lookup_elem(fd, &k, NULL));
	dump_keys_u32(fd);
	k = 3;
	T(bpf_map_get_next_key(fd, &k, v2));
	k = 100;
	T(bpf_map_get_next_key(fd, &k, &k));
	printf("next of missing: %u\n", k);

	/* batches: the generic form, the token is a key */
	{
		__u32 keys[8], count, out = 0, total = 0;
		char vals[8 * 4096];
		int r;
		void *in = NULL;

		for (;;) {
			count = 3;
			r = bpf_map_lookup_batch(fd, in, &out, keys, vals, &count, NULL);
			printf("lookup_batch -> %d count=%u", r < 0 ? -errno : r, count);
			for (i = 0; i < (int)count; i++)
				printf(" %u:%d", keys[i], vals[i * vw]);
			printf(" out=%u\n", out);
			total += count;
			if (r)
				break;
			in = &out;
		}
		printf("lookup_batch total %u\n", total);
		count = 0;
		T(bpf_map_lookup_batch(fd, NULL, &out, keys, vals, &count, NULL));
		count = 2;
		keys[0] = 0;
		keys[1] = 9;
		memset(vals, 7, sizeof(vals));
		r = bpf_map_update_batch(fd, keys, vals, &count, NULL);
		printf("update_batch -> %d count=%u\n", r < 0 ? -errno : r, count);
		count = 1;
		T(bpf_map_delete_batch(fd, keys, &count, NULL));
		count = 1;
		T(bpf_map_lookup_and_delete_batch(fd, NULL, &out, keys, vals, &count, NULL));
		{
			LIBBPF_OPTS(bpf_map_batch_opts, bo, .elem_flags = BPF_NOEXIST);
			count = 1;
			T(bpf_map_update_batch(fd, keys, vals, &count, &bo));
			printf("count=%u\n", count);
		}
	}
	T(bpf_map_freeze(fd));
	T(bpf_map_freeze(fd));
	k = 0;
	T(bpf_map_update_elem(fd, &k, v, BPF_ANY));
	T(bpf_map_lookup_elem(fd, &k, v2));
	close(fd);

	if (t == BPF_MAP_TYPE_ARRAY) {
		/* mmapable, read-only and write-only fds */
		fd = T(create(t, "mm", 4, 8, 2, BPF_F_MMAPABLE));
		print_info(fd);
		close(fd);
		fd = T(create(t, "ro", 4, 8, 2, BPF_F_RDONLY));
		print_info(fd);
		k = 0;
		T(bpf_map_update_elem(fd, &k, v, BPF_ANY));
		T(bpf_map_lookup_elem(fd, &k, v2));
		close(fd);
		fd = T(create(t, "wo", 4, 8, 2, BPF_F_WRONLY));
		T(bpf_map_update_elem(fd, &k, v, BPF_ANY));
		T(bpf_map_lookup_elem(fd, &k, v2));
		T(bpf_map_get_next_key(fd, NULL, &k));
		T(bpf_map_freeze(fd));
		close(fd);
	}
}

static void hash_tests(int t)
{
	int vw = value_width(t, 8);
	int lru = t == BPF_MAP_TYPE_LRU_HASH || t == BPF_MAP_TYPE_LRU_PERCPU_HASH;
	__u32 k;
	char v[4096], v2[4096];
	int fd, i, r;

	printf("== %s\n", libbpf_bpf_map_type_str(t));
	fd = T(create(t, "hash", 4, 8, 8, 0));
	if (fd < 0)
		return;
	print_info(fd);
	memset(v, 0, sizeof(v));
	k = 1;
	T(bpf_map_lookup_elem(fd, &k, v2));
	T(bpf_map_delete_elem(fd, &k));
	T(bpf_map_update_elem(fd, &k, v, BPF_EXIST));
	T(bpf_map_update_elem(fd, &k, v, BPF_NOEXIST));
	T(bpf_map_update_elem(fd, &k, v, BPF_NOEXIST));
	T(bpf_map_update_elem(fd, &k, v, BPF_EXIST));
	T(bpf_map_update_elem(fd, &k, v, 3));
	T(bpf_map_update_elem(fd, &k, v, BPF_F_LOCK));
	for (k = 10; k < 17; k++) {
		for (i = 0; i < vw; i++)
			v[i] = (char)(k + i);
		T(bpf_map_update_elem(fd, &k, v, BPF_ANY));
	}
	k = 100;
	r = bpf_map_update_elem(fd, &k, v, BPF_ANY);
	if (lru)
		printf("# update when full (lru) -> %d\n", r < 0 ? -errno : 0);
	else
		printf("update when full -> %d\n", r < 0 ? -errno : 0);
	if (!lru) {
		k = 13;
		T(bpf_map_lookup_elem(fd, &k, v2));
		printf("value:");
		for (i = 0; i < vw; i++)
			printf(" %d", v2[i]);
		printf("\n");
		dump_keys_u32(fd);
	}
	k = 12;
	r = bpf_map_lookup_and_delete_elem(fd, &k, v2);
	printf("%slookup_and_delete -> %d first=%d\n", lru ? "# " : "", r < 0 ? -errno : r, v2[0]);
	r = bpf_map_lookup_and_delete_elem(fd, &k, v2);
	printf("%slookup_and_delete again -> %d\n", lru ? "# " : "", r < 0 ? -errno : r);
	T(bpf_map_lookup_and_delete_elem_flags(fd, &k, v2, 1));
	T(bpf_map_delete_elem_flags(fd, &k, 1));
	k = 100;
	if (lru)
		H(bpf_map_get_next_key(fd, &k, &k));
	else
		T(bpf_map_get_next_key(fd, &k, &k));
	if (!lru) {
		T(bpf_map_get_next_key(fd, NULL, NULL));
		T(bpf_map_lookup_elem(fd, &k, NULL));
	}

	/* batches: the bucket form; counts per call differ from the kernel's */
	{
		__u32 keys[16], count, out = 0, total = 0, sum = 0;
		char vals[16 * 4096];
		void *in = NULL;
		int calls = 0;

		/* small counts: the kernel returns whole buckets (ENOSPC when one
		 * does not fit), userbpf any number of entries */
		for (;;) {
			count = 3;
			r = bpf_map_lookup_batch(fd, in, &out, keys, vals, &count, NULL);
			calls++;
			if (r && errno != ENOENT && errno != ENOSPC) {
				printf("lookup_batch -> %d\n", -errno);
				break;
			}
			for (i = 0; i < (int)count; i++)
				sum += keys[i];
			total += count;
			if (r && errno == ENOENT)
				break;
			in = &out;
			if (calls > 20)
				break;
		}
		printf("# lookup_batch by 3: total %u key sum %u\n", total, sum);
		count = 16;
		r = bpf_map_lookup_batch(fd, NULL, &out, keys, vals, &count, NULL);
		sum = 0;
		for (i = 0; i < (int)count; i++)
			sum += keys[i];
		printf("%slookup_batch all -> %d count %u key sum %u\n", lru ? "# " : "", r < 0 ? -errno : r, count,
		       sum);
		count = 0;
		T(bpf_map_lookup_batch(fd, NULL, &out, keys, vals, &count, NULL));
		{
			LIBBPF_OPTS(bpf_map_batch_opts, bo, .flags = 1);
			count = 4;
			T(bpf_map_lookup_batch(fd, NULL, &out, keys, vals, &count, &bo));
			bo.flags = 0;
			bo.elem_flags = BPF_F_LOCK;
			T(bpf_map_lookup_batch(fd, NULL, &out, keys, vals, &count, &bo));
			bo.elem_flags = BPF_NOEXIST;
			count = 1;
			T(bpf_map_update_batch(fd, keys, vals, &count, &bo));
		}
		count = 4;
		T(bpf_map_lookup_batch(fd, NULL, NULL, keys, vals, &count, NULL));
		/* delete 10 and 11, then a missing one */
		keys[0] = 10;
		keys[1] = 11;
		keys[2] = 500;
		count = 3;
		r = bpf_map_delete_batch(fd, keys, &count, NULL);
		printf("%sdelete_batch -> %d count=%u\n", lru ? "# " : "", r < 0 ? -errno : r, count);
		keys[0] = 20;
		keys[1] = 21;
		memset(vals, 1, sizeof(vals));
		count = 2;
		r = bpf_map_update_batch(fd, keys, vals, &count, NULL);
		printf("update_batch -> %d count=%u\n", r < 0 ? -errno : r, count);
		count = 2;
		T(bpf_map_update_batch(fd, NULL, vals, &count, NULL));
		printf("count=%u\n", count);
		total = 0;
		sum = 0;
		in = NULL;
		calls = 0;
		for (;;) {
			count = 16;
			r = bpf_map_lookup_and_delete_batch(fd, in, &out, keys, vals, &count, NULL);
			calls++;
			if (r && errno != ENOENT && errno != ENOSPC) {
				printf("lookup_and_delete_batch -> %d\n", -errno);
				break;
			}
			for (i = 0; i < (int)count; i++)
				sum += keys[i];
			total += count;
			if (r && errno == ENOENT)
				break;
			in = &out;
			if (calls > 20)
				break;
		}
		printf("%slookup_and_delete_batch total %u key sum %u\n", lru ? "# " : "", total, sum);
		T(bpf_map_get_next_key(fd, NULL, &k));
	}
	T(bpf_map_freeze(fd));
	k = 1;
	T(bpf_map_update_elem(fd, &k, v, BPF_ANY));
	T(bpf_map_delete_elem(fd, &k));
	T(bpf_map_lookup_and_delete_elem(fd, &k, v2));
	close(fd);
}

static void queue_tests(int t)
{
	__u32 v, out;
	int fd;

	printf("== %s\n", libbpf_bpf_map_type_str(t));
	fd = T(create(t, "q", 0, 4, 3, 0));
	if (fd < 0)
		return;
	print_info(fd);
	T(bpf_map_lookup_elem(fd, NULL, &out));
	for (v = 1; v <= 3; v++)
		T(bpf_map_update_elem(fd, NULL, &v, BPF_ANY));
	v = 4;
	T(bpf_map_update_elem(fd, NULL, &v, BPF_ANY));
	T(bpf_map_update_elem(fd, NULL, &v, BPF_NOEXIST));
	T(bpf_map_update_elem(fd, NULL, &v, BPF_EXIST));
	T(bpf_map_update_elem(fd, &v, &v, BPF_ANY));
	T(bpf_map_lookup_elem(fd, NULL, &out));
	printf("peek %u\n", out);
	T(bpf_map_lookup_elem(fd, &v, &out));
	T(bpf_map_get_next_key(fd, NULL, &out));
	T(bpf_map_delete_elem(fd, NULL));
	T(bpf_map_lookup_and_delete_elem_flags(fd, NULL, &out, BPF_F_LOCK));
	while (bpf_map_lookup_and_delete_elem(fd, NULL, &out) == 0)
		printf("pop %u\n", out);
	printf("pop -> %d\n", -errno);
	{
		__u32 count = 1, keys[1], vals[1];

		T(bpf_map_lookup_batch(fd, NULL, &out, keys, vals, &count, NULL));
	}
	close(fd);
}

static void lpm_tests(void)
{
	struct { __u32 prefixlen; __u8 data[4]; } key;
	__u64 v, out;
	int fd;

	printf("== lpm_trie\n");
	fd = T(create(BPF_MAP_TYPE_LPM_TRIE, "lpm", 8, 8, 8, BPF_F_NO_PREALLOC));
	if (fd < 0)
		return;
	print_info(fd);
#define PFX(l, a, b, c, d) (key.prefixlen = (l), key.data[0] = (a), key.data[1] = (b), key.data[2] = (c), key.data[3] = (d), &key)
	v = 8;
	T(bpf_map_update_elem(fd, PFX(8, 10, 0, 0, 0), &v, BPF_ANY));
	v = 16;
	T(bpf_map_update_elem(fd, PFX(16, 10, 1, 0, 0), &v, BPF_ANY));
	v = 24;
	T(bpf_map_update_elem(fd, PFX(24, 10, 1, 2, 0), &v, BPF_ANY));
	T(bpf_map_update_elem(fd, PFX(24, 10, 1, 2, 0), &v, BPF_NOEXIST));
	T(bpf_map_update_elem(fd, PFX(33, 10, 1, 2, 0), &v, BPF_ANY));
	out = 0;
	T(bpf_map_lookup_elem(fd, PFX(32, 10, 1, 2, 3), &out));
	printf("match %llu\n", (unsigned long long)out);
	T(bpf_map_lookup_elem(fd, PFX(32, 10, 1, 9, 3), &out));
	printf("match %llu\n", (unsigned long long)out);
	T(bpf_map_lookup_elem(fd, PFX(32, 10, 9, 9, 3), &out));
	printf("match %llu\n", (unsigned long long)out);
	T(bpf_map_lookup_elem(fd, PFX(32, 11, 1, 2, 3), &out));
	{
		int n = 0;
		void *prev = NULL;
		struct { __u32 prefixlen; __u8 data[4]; } cur, next;

		while (bpf_map_get_next_key(fd, prev, &next) == 0) {
			printf("key %u/%u.%u.%u.%u\n", next.prefixlen, next.data[0], next.data[1], next.data[2],
			       next.data[3]);
			cur = next;
			prev = &cur;
			if (++n > 10)
				break;
		}
		printf("next -> %d\n", -errno);
	}
	{
		__u32 count = 8;
		char keys[8 * 8], vals[8 * 8], out_key[8];
		int r = bpf_map_lookup_batch(fd, NULL, out_key, keys, vals, &count, NULL);

		printf("lookup_batch -> %d count=%u\n", r < 0 ? -errno : r, count);
		count = 1;
		memcpy(keys, PFX(8, 10, 0, 0, 0), 8);
		T(bpf_map_delete_batch(fd, keys, &count, NULL));
		count = 1;
		T(bpf_map_lookup_and_delete_batch(fd, NULL, out_key, keys, vals, &count, NULL));
	}
	T(bpf_map_delete_elem(fd, PFX(16, 10, 1, 0, 0)));
	T(bpf_map_delete_elem(fd, PFX(16, 10, 1, 0, 0)));
	T(bpf_map_lookup_elem(fd, PFX(32, 10, 1, 9, 3), &out));
	close(fd);
}

static void other_tests(void)
{
	__u32 k = 0, v = 0;
	char buf[4096];
	int fd;

	printf("== stack_trace\n");
	fd = T(create(BPF_MAP_TYPE_STACK_TRACE, "st", 4, 8 * 4, 4, 0));
	if (fd >= 0) {
		print_info(fd);
		T(bpf_map_lookup_elem(fd, &k, buf));
		T(bpf_map_get_next_key(fd, NULL, &k));
		T(bpf_map_delete_elem(fd, &k));
		T(bpf_map_lookup_and_delete_elem(fd, &k, buf));
		T(bpf_map_update_elem(fd, &k, buf, BPF_ANY));
		close(fd);
	}

	printf("== ringbuf\n");
	fd = T(create(BPF_MAP_TYPE_RINGBUF, "rb", 0, 0, 4096, 0));
	if (fd >= 0) {
		print_info(fd);
		T(bpf_map_lookup_elem(fd, &k, buf));
		T(bpf_map_lookup_elem(fd, NULL, buf));
		T(bpf_map_get_next_key(fd, NULL, &k));
		T(bpf_map_update_elem(fd, NULL, buf, BPF_ANY));
		T(bpf_map_delete_elem(fd, NULL));
		T(bpf_map_freeze(fd));
		close(fd);
	}

	printf("== bloom_filter\n");
	fd = T(create(BPF_MAP_TYPE_BLOOM_FILTER, "bl", 0, 4, 100, 0));
	if (fd >= 0) {
		print_info(fd);
		for (v = 1; v <= 3; v++)
			T(bpf_map_update_elem(fd, NULL, &v, BPF_ANY));
		v = 2;
		T(bpf_map_lookup_elem(fd, NULL, &v));
		v = 1000;
		T(bpf_map_lookup_elem(fd, NULL, &v));
		T(bpf_map_update_elem(fd, NULL, &v, BPF_NOEXIST));
		T(bpf_map_lookup_elem(fd, NULL, NULL));
		T(bpf_map_get_next_key(fd, NULL, &k));
		T(bpf_map_delete_elem(fd, NULL));
		close(fd);
	}

	printf("== perf_event_array\n");
	fd = T(create(BPF_MAP_TYPE_PERF_EVENT_ARRAY, "pe", 4, 4, 4, 0));
	if (fd >= 0) {
		print_info(fd);
		T(bpf_map_lookup_elem(fd, &k, &v));
		T(bpf_map_get_next_key(fd, NULL, &k));
		printf("first key %u\n", k);
		k = 0;
		T(bpf_map_delete_elem(fd, &k));
		T(bpf_map_lookup_and_delete_elem(fd, &k, &v));
		close(fd);
	}
	{
		LIBBPF_OPTS(bpf_map_create_opts, o);
		/* max_entries 0 is refused by bpf(2); libbpf only fills it in for objects */
		T(bpf_map_create(BPF_MAP_TYPE_PERF_EVENT_ARRAY, "pe", 4, 4, 0, &o));
	}
}

static void map_in_map_tests(int t)
{
	LIBBPF_OPTS(bpf_map_create_opts, o);
	int inner, inner2, other, outer, pa, p[2];
	__u32 k = 0, v, id;

	printf("== %s\n", libbpf_bpf_map_type_str(t));
	inner = create(BPF_MAP_TYPE_ARRAY, "in", 4, 8, 4, 0);
	inner2 = create(BPF_MAP_TYPE_ARRAY, "in2", 4, 8, 4, 0);
	other = create(BPF_MAP_TYPE_HASH, "oth", 4, 8, 4, 0);
	o.inner_map_fd = inner;
	outer = T(bpf_map_create(t, "outer", 4, 4, 4, &o));
	if (outer < 0)
		return;
	print_info(outer);
	T(bpf_map_create(t, "outer", 4, 8, 4, &o));
	o.inner_map_fd = outer;
	T(bpf_map_create(t, "outer", 4, 4, 4, &o));
	o.inner_map_fd = 9999;
	T(bpf_map_create(t, "outer", 4, 4, 4, &o));
	pipe(p);
	o.inner_map_fd = p[0];
	T(bpf_map_create(t, "outer", 4, 4, 4, &o));
	pa = create(BPF_MAP_TYPE_PROG_ARRAY, "pa", 4, 4, 4, 0);
	o.inner_map_fd = pa;
	T(bpf_map_create(t, "outer", 4, 4, 4, &o));
	close(p[0]);
	close(p[1]);
	close(pa);

	T(bpf_map_lookup_elem(outer, &k, &id));
	v = inner;
	T(bpf_map_update_elem(outer, &k, &v, BPF_ANY));
	id = 0;
	T(bpf_map_lookup_elem(outer, &k, &id));
	printf("inner id matches: %d\n", id == map_id(inner));
	v = inner2;
	k = 1;
	T(bpf_map_update_elem(outer, &k, &v, BPF_ANY));
	v = other;
	T(bpf_map_update_elem(outer, &k, &v, BPF_ANY));
	v = 9999;
	T(bpf_map_update_elem(outer, &k, &v, BPF_ANY));
	v = inner;
	k = 7;
	T(bpf_map_update_elem(outer, &k, &v, BPF_ANY));
	k = 0;
	T(bpf_map_update_elem(outer, &k, &v, BPF_NOEXIST));
	{
		__u32 keys[4], vals[4], count = 4, out = 0;
		int r = bpf_map_lookup_batch(outer, NULL, &out, keys, vals, &count, NULL);

		printf("lookup_batch -> %d count=%u\n", r < 0 ? -errno : r, count);
	}
	/* the inner map stays alive through the outer one */
	close(inner);
	k = 0;
	id = 0;
	T(bpf_map_lookup_elem(outer, &k, &id));
	T(bpf_map_delete_elem(outer, &k));
	T(bpf_map_delete_elem(outer, &k));
	close(outer);
	close(inner2);
	close(other);
}

/* --- bad fds --- */
static void bad_fd_tests(void)
{
	int p[2], reg, fds[3];
	char buf[256] = {};
	__u32 len = sizeof(buf), count = 1;
	unsigned i;

	printf("== bad fds\n");
	pipe(p);
	reg = open("/proc/self/exe", O_RDONLY);
	fds[0] = 9999;
	fds[1] = p[0];
	fds[2] = reg;
	for (i = 0; i < 3; i++) {
		int fd = fds[i];

		printf("-- fd kind %u\n", i);
		T(bpf_map_lookup_elem(fd, buf, buf));
		T(bpf_map_update_elem(fd, buf, buf, 0));
		T(bpf_map_delete_elem(fd, buf));
		T(bpf_map_get_next_key(fd, NULL, buf));
		T(bpf_map_lookup_and_delete_elem(fd, buf, buf));
		T(bpf_map_freeze(fd));
		T(bpf_map_lookup_batch(fd, NULL, buf, buf, buf, &count, NULL));
		T(bpf_map_update_batch(fd, buf, buf, &count, NULL));
		len = sizeof(buf);
		T(bpf_obj_get_info_by_fd(fd, buf, &len));
		T(bpf_prog_test_run_opts(fd, NULL));
		T(bpf_obj_pin(fd, "/sys/fs/bpf/userbpf_test_bad"));
	}
	close(p[0]);
	close(p[1]);
	close(reg);
}

/* --- info_len handling --- */
static void info_tests(void)
{
	struct { struct bpf_map_info i; char tail[8]; } big;
	struct bpf_map_info info;
	__u32 len;
	int fd = create(BPF_MAP_TYPE_HASH, "inf", 4, 8, 4, 0);

	printf("== info\n");
	memset(&info, 0xff, sizeof(info));
	len = 8;
	T(bpf_obj_get_info_by_fd(fd, &info, &len));
	printf("len %u type %u id!=0 %d key %#x\n", len, info.type, info.id != 0, info.key_size);
	len = 0;
	T(bpf_obj_get_info_by_fd(fd, NULL, &len));
	printf("len %u\n", len);
	len = 8;
	T(bpf_obj_get_info_by_fd(fd, NULL, &len));
	memset(&big, 0, sizeof(big));
	len = sizeof(big);
	T(bpf_obj_get_info_by_fd(fd, &big, &len));
	printf("# len %u\n", len);
	len = 8192;
	T(bpf_obj_get_info_by_fd(fd, &big, &len));
	big.tail[7] = 1;
	len = sizeof(big);
	/* 6.1 headers: the tail starts inside 6.18's struct, so this is only
	 * E2BIG where the struct ends before the tail */
	H(bpf_obj_get_info_by_fd(fd, &big, &len));
	{
		struct bpf_btf_info bi;
		int (*btf_info)(int, void *, __u32 *) = sym("bpf_btf_get_info_by_fd");
		int (*link_info)(int, void *, __u32 *) = sym("bpf_link_get_info_by_fd");
		int p[2];

		pipe(p);
		len = sizeof(bi);
		if (btf_info)
			H(btf_info(p[0], &bi, &len));
		if (link_info)
			H(link_info(p[0], &bi, &len));
		close(p[0]);
		close(p[1]);
	}
	close(fd);
}

/* --- programs --- */
static int load(enum bpf_prog_type t, const char *name, const struct bpf_insn *insns, size_t n, __u32 flags,
		char *log, size_t log_size, __u32 level)
{
	LIBBPF_OPTS(bpf_prog_load_opts, o, .prog_flags = flags, .log_buf = log, .log_size = log_size,
		    .log_level = level);

	return bpf_prog_load(t, name, "GPL", insns, n, &o);
}

static void print_prog_info(int fd, int arr, int hash, int global)
{
	struct bpf_prog_info info = {};
	__u32 ids[8] = {}, len = sizeof(info);
	int i, r;

	info.nr_map_ids = 8;
	info.map_ids = (unsigned long)ids;
	r = T(prog_info(fd, &info, &len));
	if (r)
		return;
	printf("prog info: type=%u name=%s nr_map_ids=%u gpl=%u uid=%u tag=", info.type, info.name,
	       info.nr_map_ids, info.gpl_compatible, info.created_by_uid);
	for (i = 0; i < 8; i++)
		printf("%02x", info.tag[i]);
	printf("\n");
	if (arr >= 0)
		printf("map ids: %d %d %d\n", ids[0] == map_id(arr), ids[1] == map_id(hash),
		       ids[2] == map_id(global));
	printf("# xlated %u jited %u verified %u load_time!=0 %d nr_jited_ksyms %u nr_prog_tags %u\n",
	       info.xlated_prog_len, info.jited_prog_len, info.verified_insns, info.load_time != 0,
	       info.nr_jited_ksyms, info.nr_prog_tags);
}

static void prog_tests(void)
{
	struct bpf_insn ret0[] = { MOV64_IMM(0, 0), EXIT() };
	char log[4096];
	int arr, hash, global, fd, p[2];

	printf("== prog_load\n");
	T(bpf_prog_load(BPF_PROG_TYPE_RAW_TRACEPOINT, "p", "GPL", ret0, 0, NULL));
	T(bpf_prog_load(BPF_PROG_TYPE_RAW_TRACEPOINT, "p", "GPL", NULL, 2, NULL));
	T(bpf_prog_load(BPF_PROG_TYPE_RAW_TRACEPOINT, "p", NULL, ret0, 2, NULL));
	T(bpf_prog_load(BPF_PROG_TYPE_RAW_TRACEPOINT, "p-x", "GPL", ret0, 2, NULL));
	T(bpf_prog_load(200, "p", "GPL", ret0, 2, NULL));
	T(bpf_prog_load(BPF_PROG_TYPE_UNSPEC, "p", "GPL", ret0, 2, NULL));
	T(load(BPF_PROG_TYPE_SYSCALL, "s", ret0, 2, 0, NULL, 0, 0));
	T(load(BPF_PROG_TYPE_RAW_TRACEPOINT, "p", ret0, 2, 0, log, 0, 1));
	T(load(BPF_PROG_TYPE_RAW_TRACEPOINT, "p", ret0, 2, 1 << 30, NULL, 0, 0));
	{
		LIBBPF_OPTS(bpf_prog_load_opts, o, .attempts = -1);
		T(bpf_prog_load(BPF_PROG_TYPE_RAW_TRACEPOINT, "p", "GPL", ret0, 2, &o));
	}
	memset(log, 0, sizeof(log));
	fd = T(load(BPF_PROG_TYPE_RAW_TRACEPOINT, "ret0", ret0, 2, 0, log, sizeof(log), 1));
	printf("log: %s", log);
	print_prog_info(fd, -1, -1, -1);
	{
		struct bpf_prog_info info = {};
		struct bpf_insn x[4];
		__u32 len = sizeof(info);

		info.xlated_prog_insns = (unsigned long)x;
		info.xlated_prog_len = sizeof(x);
		T(prog_info(fd, &info, &len));
		printf("xlated %u: %02x %02x\n", info.xlated_prog_len, x[0].code, x[1].code);
		memset(&info, 0, sizeof(info));
		info.nr_func_info = 1;
		T(prog_info(fd, &info, &len));
		info.func_info_rec_size = 8;
		info.nr_func_info = 0;
		T(prog_info(fd, &info, &len));
		printf("rec sizes %u %u %u\n", info.func_info_rec_size, info.line_info_rec_size,
		       info.jited_line_info_rec_size);
	}
	/* a small log buffer: ENOSPC, the end of the log kept */
	memset(log, 0, sizeof(log));
	T(load(BPF_PROG_TYPE_RAW_TRACEPOINT, "ret0", ret0, 2, 0, log, 16, 1));
	printf("log tail: %s|\n", log);
	/* test runs */
	{
		__u64 args[2] = { 1, 2 };
		LIBBPF_OPTS(bpf_test_run_opts, t, .ctx_in = args, .ctx_size_in = sizeof(args));

		T(bpf_prog_test_run_opts(fd, &t));
		printf("retval %u\n", t.retval);
		t.repeat = 2;
		T(bpf_prog_test_run_opts(fd, &t));
		t.repeat = 0;
		t.ctx_size_in = 0;
		T(bpf_prog_test_run_opts(fd, &t));
		t.ctx_size_in = 200;
		T(bpf_prog_test_run_opts(fd, &t));
		t.ctx_size_in = 16;
		t.ctx_out = args;
		T(bpf_prog_test_run_opts(fd, &t));
		t.ctx_size_out = 16;
		T(bpf_prog_test_run_opts(fd, &t));
		t.ctx_out = NULL;
		t.ctx_size_out = 0;
		t.cpu = 1;
		T(bpf_prog_test_run_opts(fd, &t));
		t.flags = BPF_F_TEST_RUN_ON_CPU;
		T(bpf_prog_test_run_opts(fd, &t));
		t.cpu = 4096;
		T(bpf_prog_test_run_opts(fd, &t));
		t.cpu = 0;
		t.flags = 0;
		T(bpf_prog_test_run_opts(fd, NULL));
		t.sz = 4;
		T(bpf_prog_test_run_opts(fd, &t));
	}
	close(fd);

	arr = create(BPF_MAP_TYPE_ARRAY, "counter", 4, 8, 1, 0);
	hash = create(BPF_MAP_TYPE_HASH, "seen", 4, 8, 16, 0);
	global = create(BPF_MAP_TYPE_ARRAY, "glob", 4, 16, 1, 0);
	{
		/* raw_tp(u64 a, u64 b): counter[0] += a; seen[b] = a; glob.x += 1; return a + b */
		struct bpf_insn insns[] = {
			MOV64_REG(6, 1),
			LDX(BPF_DW, 7, 6, 0),
			LDX(BPF_DW, 8, 6, 8),
			ST(BPF_W, 10, -4, 0),
			MOV64_REG(2, 10),
			ADD64_IMM(2, -4),
			LD_MAP_FD(1, arr),
			CALL(BPF_FUNC_map_lookup_elem),
			JEQ_IMM(0, 0, 1),
			XADD64(0, 7, 0),
			STX(BPF_W, 10, 8, -8),
			STX(BPF_DW, 10, 7, -16),
			LD_MAP_FD(1, hash),
			MOV64_REG(2, 10),
			ADD64_IMM(2, -8),
			MOV64_REG(3, 10),
			ADD64_IMM(3, -16),
			MOV64_IMM(4, 0),
			CALL(BPF_FUNC_map_update_elem),
			LD_MAP_VALUE(1, global, 8),
			MOV64_IMM(2, 1),
			XADD64(1, 2, 0),
			MOV64_REG(0, 7),
			ADD64_REG(0, 8),
			EXIT(),
		};
		__u64 args[2] = { 5, 7 }, out = 0, g[2] = {};
		__u32 k = 0;
		LIBBPF_OPTS(bpf_test_run_opts, t, .ctx_in = args, .ctx_size_in = sizeof(args));

		fd = T(load(BPF_PROG_TYPE_RAW_TRACEPOINT, "maps", insns, N(insns), 0, NULL, 0, 0));
		if (fd >= 0) {
			T(bpf_prog_test_run_opts(fd, &t));
			printf("retval %u\n", t.retval);
			args[0] = 3;
			args[1] = 9;
			T(bpf_prog_test_run_opts(fd, &t));
			printf("retval %u\n", t.retval);
			T(bpf_map_lookup_elem(arr, &k, &out));
			printf("counter %llu\n", (unsigned long long)out);
			k = 7;
			T(bpf_map_lookup_elem(hash, &k, &out));
			printf("seen[7] %llu\n", (unsigned long long)out);
			k = 0;
			T(bpf_map_lookup_elem(global, &k, g));
			printf("glob %llu %llu\n", (unsigned long long)g[0], (unsigned long long)g[1]);
			t.ctx_size_in = 8;
			H(bpf_prog_test_run_opts(fd, &t));
			print_prog_info(fd, arr, hash, global);
			/* the maps stay alive with the program */
			{
				__u32 id = map_id(hash), next = 0;
				int again;

				close(hash);
				again = T(bpf_map_get_fd_by_id(id));
				T(bpf_map_get_next_id(id - 1, &next));
				printf("next id is the map: %d\n", next == id);
				k = 9;
				T(bpf_map_lookup_elem(again, &k, &out));
				printf("seen[9] %llu\n", (unsigned long long)out);
				hash = again;
			}
			{
				__u32 id = prog_id(fd), next = 0;
				int again = T(bpf_prog_get_fd_by_id(id));

				T(bpf_prog_get_next_id(id - 1, &next));
				printf("next id is the prog: %d\n", next == id);
				printf("same prog: %d\n", prog_id(again) == id);
				args[0] = 1;
				args[1] = 1;
				t.ctx_size_in = 16;
				T(bpf_prog_test_run_opts(again, &t));
				printf("retval %u\n", t.retval);
				close(again);
			}
		}
	}
	/* bad map references */
	{
		struct bpf_insn bad[] = { LD_MAP_FD(1, 9999), MOV64_IMM(0, 0), EXIT() };
		struct bpf_insn val_hash[] = { LD_MAP_VALUE(1, hash, 0), MOV64_IMM(0, 0), EXIT() };
		struct bpf_insn val_off[] = { LD_MAP_VALUE(1, global, 16), MOV64_IMM(0, 0), EXIT() };
		struct bpf_insn lddw_short[] = { MOV64_IMM(0, 0), INSN(BPF_LD | BPF_DW | BPF_IMM, 1, 0, 0, 0) };
		struct bpf_insn helper[] = { CALL(9999), EXIT() };
		int big = create(BPF_MAP_TYPE_ARRAY, "big", 4, 8, 4, 0);
		struct bpf_insn val_big[] = { LD_MAP_VALUE(1, big, 0), MOV64_IMM(0, 0), EXIT() };

		T(load(BPF_PROG_TYPE_RAW_TRACEPOINT, "bad", bad, N(bad), 0, NULL, 0, 0));
		pipe(p);
		bad[0].imm = p[0];
		T(load(BPF_PROG_TYPE_RAW_TRACEPOINT, "bad", bad, N(bad), 0, NULL, 0, 0));
		close(p[0]);
		close(p[1]);
		T(load(BPF_PROG_TYPE_RAW_TRACEPOINT, "bad", val_hash, N(val_hash), 0, NULL, 0, 0));
		T(load(BPF_PROG_TYPE_RAW_TRACEPOINT, "bad", val_off, N(val_off), 0, NULL, 0, 0));
		T(load(BPF_PROG_TYPE_RAW_TRACEPOINT, "bad", val_big, N(val_big), 0, NULL, 0, 0));
		T(load(BPF_PROG_TYPE_RAW_TRACEPOINT, "bad", lddw_short, N(lddw_short), 0, NULL, 0, 0));
		memset(log, 0, sizeof(log));
		T(load(BPF_PROG_TYPE_RAW_TRACEPOINT, "bad", helper, N(helper), 0, log, sizeof(log), 0));
		printf("log has 'invalid func unknown#9999': %d\n", strstr(log, "invalid func unknown#9999") != NULL);
		close(big);
	}
	/* a syscall program: the context is written back to ctx_in */
	{
		struct bpf_insn insns[] = {
			LDX(BPF_DW, 2, 1, 0), MUL64_IMM(2, 3), STX(BPF_DW, 1, 2, 0), MOV64_IMM(0, 42), EXIT(),
		};
		__u64 ctx[2] = { 7, 1 };
		LIBBPF_OPTS(bpf_test_run_opts, t, .ctx_in = ctx, .ctx_size_in = sizeof(ctx));
		int s = T(load(BPF_PROG_TYPE_SYSCALL, "sys", insns, N(insns), BPF_F_SLEEPABLE, NULL, 0, 0));

		if (s >= 0) {
			T(bpf_prog_test_run_opts(s, &t));
			printf("retval %u ctx %llu %llu\n", t.retval, (unsigned long long)ctx[0],
			       (unsigned long long)ctx[1]);
			t.repeat = 1;
			T(bpf_prog_test_run_opts(s, &t));
			t.repeat = 0;
			t.flags = BPF_F_TEST_RUN_ON_CPU;
			T(bpf_prog_test_run_opts(s, &t));
			close(s);
		}
	}
	/* kprobe: not test-runnable in the kernel, runs on a pt_regs here */
	{
		struct bpf_insn insns[] = { LDX(BPF_DW, 0, 1, 80), EXIT() };
		__u64 regs[21] = {}, out[21] = {};
		LIBBPF_OPTS(bpf_test_run_opts, t, .ctx_in = regs, .ctx_size_in = sizeof(regs), .ctx_out = out,
			    .ctx_size_out = sizeof(out), .repeat = 3);
		int k = T(load(BPF_PROG_TYPE_KPROBE, "kp", insns, N(insns), 0, NULL, 0, 0));

		regs[10] = 1234;
		H(bpf_prog_test_run_opts(k, &t));
		printf("# retval %u ctx_size_out %u out[10] %llu\n", t.retval, t.ctx_size_out,
		       (unsigned long long)out[10]);
		t.ctx_size_out = 8;
		H(bpf_prog_test_run_opts(k, &t));
		printf("# ctx_size_out %u\n", t.ctx_size_out);
		close(k);
	}
	T(bpf_prog_test_run_opts(arr, NULL));
	close(fd);
	close(arr);
	close(hash);
	close(global);
}

/* --- ids --- */
static void id_tests(void)
{
	__u32 next;
	int fd = create(BPF_MAP_TYPE_ARRAY, "ids", 4, 8, 2, 0), again;
	__u32 id = map_id(fd), k = 0;
	__u64 v = 5;

	printf("== ids\n");
	T(bpf_map_get_next_id(0x7fffffff, &next));
	T(bpf_prog_get_next_id(0xffffffff, &next));
	T(bpf_map_get_fd_by_id(0));
	T(bpf_prog_get_fd_by_id(0));
	T(bpf_map_get_fd_by_id(0x7ffffff0));
	T(bpf_prog_get_fd_by_id(0x7ffffff0));
	T(bpf_map_get_next_id(id - 1, &next));
	printf("next is ours: %d\n", next == id);
	again = T(bpf_map_get_fd_by_id(id));
	printf("same map: %d\n", map_id(again) == id);
	T(bpf_map_update_elem(again, &k, &v, BPF_ANY));
	v = 0;
	T(bpf_map_lookup_elem(fd, &k, &v));
	printf("shared value %llu\n", (unsigned long long)v);
	close(again);
	{
		LIBBPF_OPTS(bpf_get_fd_by_id_opts, o, .open_flags = BPF_F_RDONLY);

		again = T(bpf_map_get_fd_by_id_opts(id, &o));
		T(bpf_map_update_elem(again, &k, &v, BPF_ANY));
		T(bpf_map_lookup_elem(again, &k, &v));
		close(again);
		o.open_flags = BPF_F_WRONLY;
		again = T(bpf_map_get_fd_by_id_opts(id, &o));
		T(bpf_map_update_elem(again, &k, &v, BPF_ANY));
		T(bpf_map_lookup_elem(again, &k, &v));
		close(again);
		o.open_flags = BPF_F_RDONLY | BPF_F_WRONLY;
		T(bpf_map_get_fd_by_id_opts(id, &o));
		o.open_flags = 1 << 20;
		T(bpf_map_get_fd_by_id_opts(id, &o));
		o.open_flags = BPF_F_RDONLY;
		T(bpf_prog_get_fd_by_id_opts(1, &o));
		o.sz = 2;
		T(bpf_map_get_fd_by_id_opts(id, &o));
	}
	H(bpf_btf_get_next_id(0, &next));
	H(bpf_link_get_next_id(0, &next));
	T(bpf_btf_get_next_id(0x7fffffff, &next));
	T(bpf_link_get_next_id(0x7fffffff, &next));
	/* the last fd closed, the map and its id are gone */
	close(fd);
	T(bpf_map_get_fd_by_id(id));
	next = 0;
	bpf_map_get_next_id(id - 1, &next);
	printf("next is not the closed map: %d\n", next != id);
}

/* --- probes --- */
static void probe_tests(void)
{
	static const int ours[] = { 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 22, 23, 27, 30 };
	static const int progs[] = { 2, 5, 7, 17, 31 };
	unsigned i;
	int t;

	printf("== probes\n");
	for (i = 0; i < N(ours); i++)
		printf("probe map %d: %d\n", ours[i], libbpf_probe_bpf_map_type(ours[i], NULL));
	for (t = 0; t <= 34; t++)
		printf("# probe map %d: %d\n", t, libbpf_probe_bpf_map_type(t, NULL));
	T(libbpf_probe_bpf_map_type(0, NULL));
	T(libbpf_probe_bpf_map_type(1000, NULL));
	T(libbpf_probe_bpf_map_type(1, &t));
	for (i = 0; i < N(progs); i++)
		printf("probe prog %d: %d\n", progs[i], libbpf_probe_bpf_prog_type(progs[i], NULL));
	for (t = 0; t <= 33; t++)
		printf("# probe prog %d: %d\n", t, libbpf_probe_bpf_prog_type(t, NULL));
	T(libbpf_probe_bpf_prog_type(1000, NULL));
	T(libbpf_probe_bpf_prog_type(2, &t));
	printf("probe helper kprobe/map_lookup_elem: %d\n",
	       libbpf_probe_bpf_helper(BPF_PROG_TYPE_KPROBE, BPF_FUNC_map_lookup_elem, NULL));
	printf("probe helper kprobe/ktime_get_ns: %d\n",
	       libbpf_probe_bpf_helper(BPF_PROG_TYPE_KPROBE, BPF_FUNC_ktime_get_ns, NULL));
	printf("probe helper raw_tp/9999: %d\n", libbpf_probe_bpf_helper(BPF_PROG_TYPE_RAW_TRACEPOINT, 9999, NULL));
	printf("probe helper tracing/1: %d\n", libbpf_probe_bpf_helper(BPF_PROG_TYPE_TRACING, 1, NULL));
	T(libbpf_probe_bpf_helper(BPF_PROG_TYPE_KPROBE, 1, &t));
	printf("# probe helper xdp/1: %d\n", libbpf_probe_bpf_helper(BPF_PROG_TYPE_XDP, 1, NULL));
}

/* --- pins --- */
static void pin_tests(void)
{
	const char *path = "/sys/fs/bpf/userbpf_test_map";
	const char *ppath = "/sys/fs/bpf/userbpf_test_prog";
	struct bpf_insn insns[] = { MOV64_IMM(0, 77), EXIT() };
	int fd = create(BPF_MAP_TYPE_HASH, "pinned", 4, 8, 4, 0), got, prog, p[2];
	__u32 k = 1, id = map_id(fd);
	__u64 v = 11;
	pid_t child;

	printf("== pins\n");
	T(bpf_map_update_elem(fd, &k, &v, BPF_ANY));
	T(bpf_obj_pin(fd, path));
	T(bpf_obj_pin(fd, path));
	T(pin_opts(fd, "/sys/fs/bpf/userbpf_test_map2"));
	T(bpf_obj_pin(fd, "/tmp/userbpf_test_not_bpffs"));
	T(bpf_obj_pin(fd, "relative_not_bpffs"));
	T(bpf_obj_pin(fd, "/sys/fs/bpf/"));
	T(bpf_obj_pin(fd, NULL));
	T(bpf_obj_get("/sys/fs/bpf/userbpf_test_missing"));
	T(bpf_obj_get("/etc/passwd"));
	T(bpf_obj_get("/sys/fs/bpf"));
	T(bpf_obj_get(NULL));
	/* the pin keeps the map alive */
	close(fd);
	got = T(bpf_obj_get(path));
	printf("same map: %d\n", map_id(got) == id);
	v = 0;
	T(bpf_map_lookup_elem(got, &k, &v));
	printf("value %llu\n", (unsigned long long)v);
	close(got);
	{
		LIBBPF_OPTS(bpf_obj_get_opts, o, .file_flags = BPF_F_RDONLY);

		got = T(bpf_obj_get_opts(path, &o));
		T(bpf_map_update_elem(got, &k, &v, BPF_ANY));
		T(bpf_map_lookup_elem(got, &k, &v));
		close(got);
		o.file_flags = BPF_F_RDONLY | BPF_F_WRONLY;
		T(bpf_obj_get_opts(path, &o));
		o.file_flags = 1 << 20;
		T(bpf_obj_get_opts(path, &o));
	}
	prog = T(bpf_prog_load(BPF_PROG_TYPE_RAW_TRACEPOINT, "pinprog", "GPL", insns, N(insns), NULL));
	T(bpf_obj_pin(prog, ppath));
	close(prog);
	/* another process */
	pipe(p);
	fflush(stdout);
	child = fork();
	if (child == 0) {
		LIBBPF_OPTS(bpf_test_run_opts, t);
		char line[256];
		int n, m, q, r, byid;

		m = bpf_obj_get(path);
		v = 0;
		n = bpf_map_lookup_elem(m, &k, &v);
		byid = bpf_map_get_fd_by_id(id);
		q = bpf_obj_get(ppath);
		r = bpf_prog_test_run_opts(q, &t);
		n = snprintf(line, sizeof(line),
			     "child: map %d lookup %d value %llu same id %d by id %d prog %d run %d retval %u\n",
			     m >= 0, n, (unsigned long long)v, map_id(m) == id, map_id(byid) == id, q >= 0, r,
			     t.retval);
		write(p[1], line, n);
		_exit(0);
	}
	close(p[1]);
	{
		char line[256] = {};
		int n = read(p[0], line, sizeof(line) - 1);

		waitpid(child, NULL, 0);
		printf("%s", n > 0 ? line : "child: nothing\n");
		close(p[0]);
	}
	/* leave nothing behind on a real bpffs */
	unlink(path);
	unlink(ppath);
	unlink("/sys/fs/bpf/userbpf_test_map2");
}

int main(void)
{
	static const int arrays[] = { BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_PERCPU_ARRAY };
	static const int hashes[] = { BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_PERCPU_HASH, BPF_MAP_TYPE_LRU_HASH,
				      BPF_MAP_TYPE_LRU_PERCPU_HASH };
	unsigned i;

	setvbuf(stdout, NULL, _IOLBF, 0);
	ncpus = libbpf_num_possible_cpus();
	libbpf_set_print(NULL);
	names();
	create_checks();
	for (i = 0; i < N(arrays); i++)
		array_tests(arrays[i]);
	for (i = 0; i < N(hashes); i++)
		hash_tests(hashes[i]);
	queue_tests(BPF_MAP_TYPE_QUEUE);
	queue_tests(BPF_MAP_TYPE_STACK);
	lpm_tests();
	other_tests();
	map_in_map_tests(BPF_MAP_TYPE_ARRAY_OF_MAPS);
	map_in_map_tests(BPF_MAP_TYPE_HASH_OF_MAPS);
	bad_fd_tests();
	info_tests();
	prog_tests();
	id_tests();
	probe_tests();
	pin_tests();
	printf("done\n");
	return 0;
}
