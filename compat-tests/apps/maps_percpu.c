// SPDX-License-Identifier: MIT OR Apache-2.0
/* maps_percpu: PERCPU_ARRAY, PERCPU_HASH, LRU_PERCPU_HASH with user-space
 * value buffers of roundup(value_size, 8) * libbpf_num_possible_cpus()
 * bytes, programs pinned to CPU 0 and CPU 1, and a batch lookup over a
 * per-CPU hash. Needs at least two online CPUs. */
#include "app.h"
#include "maps_percpu.skel.h"

struct triple {
	__u32 count;
	__u32 sum;
	__u32 cpu;
};

static int ncpu;

#define ARR_STRIDE 8	/* roundup(sizeof(__u32), 8) */
#define HASH_STRIDE 16	/* roundup(sizeof(struct triple), 8) */

static __u32 arr_at(const char *buf, int cpu) { return *(const __u32 *)(buf + cpu * ARR_STRIDE); }
static const struct triple *hash_at(const char *buf, int cpu)
{
	return (const struct triple *)(buf + cpu * HASH_STRIDE);
}

/* The values of CPUs 0 and 1, and whether every other CPU holds 0. */
static void print_arr(const char *what, const char *buf)
{
	int i, rest_zero = 1;

	for (i = 2; i < ncpu; i++)
		rest_zero &= arr_at(buf, i) == 0;
	printf("%s cpu0=%u cpu1=%u others-zero=%s\n", what, arr_at(buf, 0), arr_at(buf, 1),
	       YESNO(rest_zero));
}

static void print_triples(const char *what, const char *buf)
{
	int i;

	for (i = 0; i < 2; i++)
		printf("%s cpu%d count=%u sum=%u cpu=%u\n", what, i, hash_at(buf, i)->count,
		       hash_at(buf, i)->sum, hash_at(buf, i)->cpu);
}

static void section_array(struct maps_percpu_bpf *skel, char *buf)
{
	int fd = bpf_map__fd(skel->maps.pcpu_arr), i, ok;
	__u32 key = 0;

	for (i = 0; i < 3; i++)
		printf("bpf arr_add on cpu0 ran on %d\n",
		       run_on(bpf_program__fd(skel->progs.arr_add), 0, 0, 10, 0, 0));
	for (i = 0; i < 2; i++)
		printf("bpf arr_add on cpu1 ran on %d\n",
		       run_on(bpf_program__fd(skel->progs.arr_add), 1, 0, 10, 0, 0));
	memset(buf, 0xff, ncpu * HASH_STRIDE);
	SHOW("arr lookup 0", bpf_map_lookup_elem(fd, &key, buf));
	print_arr("arr[0]", buf);

	key = 1;
	memset(buf, 0, ncpu * HASH_STRIDE);
	for (i = 0; i < ncpu; i++)
		*(__u32 *)(buf + i * ARR_STRIDE) = (i + 1) * 1000;
	SHOW("arr update 1 per-cpu values", bpf_map_update_elem(fd, &key, buf, BPF_ANY));
	run_on(bpf_program__fd(skel->progs.arr_add), 1, 1, 5, 0, 0);
	memset(buf, 0, ncpu * HASH_STRIDE);
	bpf_map_lookup_elem(fd, &key, buf);
	for (i = 0, ok = 1; i < ncpu; i++)
		ok &= arr_at(buf, i) == (i + 1) * 1000 + (i == 1 ? 5 : 0);
	printf("arr[1] cpu0=%u cpu1=%u all-as-written=%s\n", arr_at(buf, 0), arr_at(buf, 1),
	       YESNO(ok));
	SHOW("arr update NOEXIST", bpf_map_update_elem(fd, &key, buf, BPF_NOEXIST));
	key = 7;
	SHOW("arr lookup 7 (max_entries raised to 8)", bpf_map_lookup_elem(fd, &key, buf));
	key = 8;
	SHOW("arr lookup 8", bpf_map_lookup_elem(fd, &key, buf));
	SHOW("arr update 8", bpf_map_update_elem(fd, &key, buf, BPF_ANY));
	SHOW("bpf arr_add key 8", RUN(skel->progs.arr_add, 8, 1, 0, 0));
}

static void section_hash(struct maps_percpu_bpf *skel, char *buf)
{
	int fd = bpf_map__fd(skel->maps.pcpu_hash), prog = bpf_program__fd(skel->progs.hash_add);
	__u32 key, keys[8], out_batch, count;
	char *vals = calloc(8, ncpu * HASH_STRIDE);
	int i, r, total;
	struct lines l = {};

	SHOW("bpf hash_add 1 on cpu0", run_on(prog, 0, 1, 5, 0, 0));
	SHOW("bpf hash_add 1 on cpu1", run_on(prog, 1, 1, 7, 0, 0));
	SHOW("bpf hash_add 1 on cpu1", run_on(prog, 1, 1, 7, 0, 0));
	key = 1;
	SHOW("hash lookup 1", bpf_map_lookup_elem(fd, &key, buf));
	print_triples("hash[1]", buf);

	memset(buf, 0, ncpu * HASH_STRIDE);
	for (i = 0; i < ncpu; i++)
		*(struct triple *)(buf + i * HASH_STRIDE) = (struct triple){ i, 10 * i, i };
	key = 2;
	SHOW("hash update 2", bpf_map_update_elem(fd, &key, buf, BPF_NOEXIST));
	SHOW("hash update 2 NOEXIST", bpf_map_update_elem(fd, &key, buf, BPF_NOEXIST));
	SHOW("bpf hash_add 2 on cpu1", run_on(prog, 1, 2, 1, 0, 0));
	memset(buf, 0, ncpu * HASH_STRIDE);
	bpf_map_lookup_elem(fd, &key, buf);
	print_triples("hash[2]", buf);
	for (key = 3; (r = bpf_map_update_elem(fd, &key, buf, BPF_ANY)) == 0 && key < 1000; key++)
		;
	printf("hash fill stopped at key %u with %s\n", key, rc(r));
	SHOW("bpf hash_add 9 (full)", run_on(prog, 0, 9, 1, 0, 0));
	key = 3;
	SHOW("hash delete 3", bpf_map_delete_elem(fd, &key));
	SHOW("hash delete 3 again", bpf_map_delete_elem(fd, &key));
	SHOW("hash lookup 3", bpf_map_lookup_elem(fd, &key, buf));
	r = map_keys_u32(fd, keys, 8);
	for (i = 0; i < r; i++)
		printf("hash key %u\n", keys[i]);

	/* batch lookup: keys and per-CPU value blocks */
	total = 0;
	count = 8;
	r = bpf_map_lookup_batch(fd, NULL, &out_batch, keys, vals, &count, NULL);
	printf("hash lookup_batch -> %s count %u\n", rc(r), count);
	for (i = 0; i < (int)count && (r == 0 || r == -ENOENT); i++, total++)
		lines_add(&l, "batch key %u cpu0.sum=%u cpu1.sum=%u", keys[i],
			  hash_at(vals + i * ncpu * HASH_STRIDE, 0)->sum,
			  hash_at(vals + i * ncpu * HASH_STRIDE, 1)->sum);
	lines_flush(&l);
	free(vals);
}

static void section_lru(struct maps_percpu_bpf *skel, char *buf)
{
	int fd = bpf_map__fd(skel->maps.lru_pcpu), prog = bpf_program__fd(skel->progs.lru_add);
	__u32 key, keys[64];
	int i, ok = 0, n;

	for (i = 0; i < 32; i++)
		ok += run_on(prog, i & 1, i, 1, 0, 0) == 0;
	printf("lru bpf inserts ok %d/32\n", ok);
	n = map_keys_u32(fd, keys, 64);
	CHECKED("lru count <= 8", n <= 8);
	printf("~lru count %d\n", n);
	run_on(prog, 0, 31, 100, 0, 0);
	key = 31;
	SHOW("lru lookup 31", bpf_map_lookup_elem(fd, &key, buf));
	printf("lru[31] cpu0=%llu cpu1=%llu\n", (unsigned long long)*(__u64 *)buf,
	       (unsigned long long)*(__u64 *)(buf + 8));
}

int main(void)
{
	struct maps_percpu_bpf *skel;
	char *buf;
	int err;

	app_init("maps_percpu");
	ncpu = libbpf_num_possible_cpus();
	printf("~possible cpus %d\n", ncpu);
	CHECKED("possible cpus > 0", ncpu > 0);
	CHECKED("at least 2 online cpus", sysconf(_SC_NPROCESSORS_ONLN) >= 2);
	skel = maps_percpu_bpf__open();
	if (!skel)
		fatal("open", -errno);
	SHOW("set_max_entries pcpu_arr 8", bpf_map__set_max_entries(skel->maps.pcpu_arr, 8));
	err = maps_percpu_bpf__load(skel);
	SHOW("load", err);
	if (err)
		fatal("load", err);
	buf = calloc(ncpu, HASH_STRIDE);
	section_array(skel, buf);
	section_hash(skel, buf);
	section_lru(skel, buf);
	free(buf);
	maps_percpu_bpf__destroy(skel);
	printf("done\n");
	return 0;
}
