// SPDX-License-Identifier: MIT OR Apache-2.0
/* maps_basic: ARRAY, HASH, LRU_HASH, BPF_F_MMAPABLE, BPF_F_LOCK; the
 * skeleton life cycle, setters before and after load, object iteration and
 * the bpf_map_* fd wrappers with their flags and error codes. */
#include <sys/mman.h>
#include "app.h"
#include "maps_basic.skel.h"

struct val {
	__u64 count;
	__u64 sum;
};

struct locked_val {
	struct bpf_spin_lock lock;
	__u32 a;
	__u32 b;
};

static void section_setup(struct maps_basic_bpf *skel)
{
	struct bpf_program *prog;
	struct bpf_map *map;

	printf("fd before load -> %d\n", bpf_map__fd(skel->maps.arr));
	SHOW("set_max_entries resized 8", bpf_map__set_max_entries(skel->maps.resized, 8));
	SHOW("set_value_size resized 16", bpf_map__set_value_size(skel->maps.resized, 16));
	SHOW("set_map_flags resized NO_PREALLOC",
	     bpf_map__set_map_flags(skel->maps.resized, BPF_F_NO_PREALLOC));
	SHOW("set_autocreate unused off", bpf_map__set_autocreate(skel->maps.unused, false));
	SHOW("set_autoload uses_unused off",
	     bpf_program__set_autoload(skel->progs.uses_unused, false));
	bpf_object__for_each_program(prog, skel->obj)
		printf("prog %s autoload %d\n", bpf_program__name(prog),
		       bpf_program__autoload(prog));
	bpf_object__for_each_map(map, skel->obj)
		printf("map %s type %d key %u value %u max %u\n", bpf_map__name(map),
		       bpf_map__type(map), bpf_map__key_size(map), bpf_map__value_size(map),
		       bpf_map__max_entries(map));
	CHECKED("find_map_by_name hash",
		bpf_object__find_map_by_name(skel->obj, "hash") == skel->maps.hash);
	errno = 0;
	CHECKED("find_map_by_name nope is NULL",
		bpf_object__find_map_by_name(skel->obj, "nope") == NULL);
	printf("find_map_by_name nope errno -> %s\n", ERRNO_RC());
}

static void section_array(struct maps_basic_bpf *skel)
{
	int fd = bpf_map__fd(skel->maps.arr);
	__u32 key, next;
	__u64 v;
	int i;

	for (i = 0; i < 8; i++) {
		RUN(skel->progs.array_add, i, i * 10, 0, 0);
		RUN(skel->progs.array_add, i, 1, 0, 0);
	}
	SHOW("bpf array_add key 8", RUN(skel->progs.array_add, 8, 1, 0, 0));
	for (key = 0; key < 8; key++) {
		v = 0;
		bpf_map_lookup_elem(fd, &key, &v);
		printf("arr[%u] = %llu\n", key, (unsigned long long)v);
	}
	key = 3, v = 333;
	SHOW("arr update ANY", bpf_map_update_elem(fd, &key, &v, BPF_ANY));
	SHOW("arr update NOEXIST", bpf_map_update_elem(fd, &key, &v, BPF_NOEXIST));
	SHOW("arr update EXIST", bpf_map_update_elem(fd, &key, &v, BPF_EXIST));
	SHOW("arr update bad flags", bpf_map_update_elem(fd, &key, &v, 0x100));
	v = 0;
	SHOW("arr lookup 3", bpf_map_lookup_elem(fd, &key, &v));
	printf("arr[3] = %llu\n", (unsigned long long)v);
	key = 8;
	SHOW("arr update key 8", bpf_map_update_elem(fd, &key, &v, BPF_ANY));
	SHOW("arr lookup key 8", bpf_map_lookup_elem(fd, &key, &v));
	printf("arr lookup key 8 errno -> %s\n", ERRNO_RC());
	key = 1;
	SHOW("arr delete", bpf_map_delete_elem(fd, &key));
	SHOW("arr next_key NULL", bpf_map_get_next_key(fd, NULL, &next));
	printf("arr first key = %u\n", next);
	key = 3;
	bpf_map_get_next_key(fd, &key, &next);
	printf("arr next after 3 = %u\n", next);
	key = 7;
	SHOW("arr next_key after 7", bpf_map_get_next_key(fd, &key, &next));
	key = 100;
	SHOW("arr next_key after 100", bpf_map_get_next_key(fd, &key, &next));
	printf("arr next after 100 = %u\n", next);
}

static void dump_hash(int fd)
{
	__u32 keys[32];
	struct val v;
	int i, n = map_keys_u32(fd, keys, 32);

	printf("hash entries = %d\n", n);
	for (i = 0; i < n; i++) {
		bpf_map_lookup_elem(fd, &keys[i], &v);
		printf("hash[%u] count=%llu sum=%llu\n", keys[i], (unsigned long long)v.count,
		       (unsigned long long)v.sum);
	}
}

static void section_hash(struct maps_basic_bpf *skel)
{
	int fd = bpf_map__fd(skel->maps.hash);
	int i, r, inserted = 0, updated = 0, visited = 0;
	struct val v = { 7, 7 };
	__u32 key, next, prev, seen[32];

	for (i = 0; i < 20; i++) {
		r = RUN(skel->progs.hash_upsert, i % 5, i, 0, 0);
		if (r == 0)
			inserted++;
		else if (r == 1)
			updated++;
	}
	printf("bpf upsert inserted %d updated %d\n", inserted, updated);
	dump_hash(fd);
	key = 0;
	SHOW("hash update NOEXIST existing", bpf_map_update_elem(fd, &key, &v, BPF_NOEXIST));
	key = 99;
	SHOW("hash update EXIST missing", bpf_map_update_elem(fd, &key, &v, BPF_EXIST));
	SHOW("hash lookup missing", bpf_map_lookup_elem(fd, &key, &v));
	SHOW("hash delete missing", bpf_map_delete_elem(fd, &key));
	SHOW("hash update NOEXIST|EXIST", bpf_map_update_elem(fd, &key, &v, 3));
	SHOW("bpf hash delete missing", RUN(skel->progs.hash_ops, 0, 99, 0, 0));
	SHOW("bpf hash update EXIST missing", RUN(skel->progs.hash_ops, 1, 99, 0, 0));
	SHOW("bpf hash update NOEXIST existing", RUN(skel->progs.hash_ops, 2, 1, 0, 0));
	SHOW("bpf hash update EXIST existing", RUN(skel->progs.hash_ops, 1, 1, 0, 0));
	SHOW("bpf hash lookup 1", RUN(skel->progs.hash_ops, 3, 1, 0, 0));
	SHOW("bpf hash delete 4", RUN(skel->progs.hash_ops, 0, 4, 0, 0));
	SHOW("bpf hash lookup 4", RUN(skel->progs.hash_ops, 3, 4, 0, 0));

	/* fill up to max_entries (16), then E2BIG */
	for (key = 100, i = 0; (r = bpf_map_update_elem(fd, &key, &v, BPF_NOEXIST)) == 0 && i < 1000; key++)
		i++;
	printf("hash fill inserted %d then %s\n", i, rc(r));
	key = 100;
	SHOW("hash full update existing ANY", bpf_map_update_elem(fd, &key, &v, BPF_ANY));
	SHOW("bpf hash full insert", RUN(skel->progs.hash_upsert, 1000, 1, 0, 0));
	dump_hash(fd);

	/* delete the key just returned, then continue from it: the kernel
	 * restarts from the first remaining key */
	bpf_map_get_next_key(fd, NULL, &key);
	bpf_map_delete_elem(fd, &key);
	r = bpf_map_get_next_key(fd, &key, &next);
	printf("hash next_key after deleted key -> %s, exists %s\n", rc(r),
	       YESNO(r == 0 && bpf_map_lookup_elem(fd, &next, &v) == 0));

	/* iteration that deletes the previous key as it goes */
	r = bpf_map_get_next_key(fd, NULL, &key);
	while (r == 0 && visited < 1000) {
		seen[visited++ % 32] = key;
		prev = key;
		r = bpf_map_get_next_key(fd, &prev, &key);
		bpf_map_delete_elem(fd, &prev);
	}
	qsort(seen, visited < 32 ? visited : 32, sizeof(seen[0]), cmp_u32);
	for (i = 1, r = 0; i < visited && i < 32; i++)
		r += seen[i] == seen[i - 1];
	printf("hash delete-while-iterating visited %d duplicates %d\n", visited, r);
	SHOW("hash next_key NULL on empty", bpf_map_get_next_key(fd, NULL, &key));
}

static void section_lru(struct maps_basic_bpf *skel)
{
	int fd = bpf_map__fd(skel->maps.lru);
	__u32 keys[64], key;
	__u64 v = 1;
	int i, ok = 0, n;

	for (i = 0; i < 48; i++)
		ok += RUN(skel->progs.lru_touch, i, i, 0, 0) == 0;
	printf("lru bpf inserts ok %d/48\n", ok);
	for (key = 100, ok = 0; key < 148; key++)
		ok += bpf_map_update_elem(fd, &key, &v, BPF_NOEXIST) == 0;
	printf("lru user inserts ok %d/48\n", ok);
	n = map_keys_u32(fd, keys, 64);
	CHECKED("lru count <= 16", n <= 16);
	printf("~lru count %d\n", n);
	key = 147;
	SHOW("lru lookup last", bpf_map_lookup_elem(fd, &key, &v));
	SHOW("lru update NOEXIST last", bpf_map_update_elem(fd, &key, &v, BPF_NOEXIST));
	key = 0;
	SHOW("lru lookup first (evicted)", bpf_map_lookup_elem(fd, &key, &v));
}

static void section_mmap(struct maps_basic_bpf *skel)
{
	long page = sysconf(_SC_PAGESIZE);
	__u64 *p, v;
	__u32 key;
	void *q;

	p = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_SHARED, bpf_map__fd(skel->maps.mm), 0);
	CHECKED("mmap mmapable array", p != MAP_FAILED);
	if (p == MAP_FAILED)
		return;
	p[1] = 100;
	SHOW("bpf mm_add 1", RUN(skel->progs.mm_add, 1, 5, 0, 0));
	key = 1;
	bpf_map_lookup_elem(bpf_map__fd(skel->maps.mm), &key, &v);
	printf("mm[1] mapped %llu lookup %llu\n", (unsigned long long)p[1], (unsigned long long)v);
	key = 2, v = 7;
	bpf_map_update_elem(bpf_map__fd(skel->maps.mm), &key, &v, BPF_ANY);
	printf("mm[2] mapped after update %llu\n", (unsigned long long)p[2]);
	munmap(p, page);
	q = mmap(NULL, page, PROT_READ, MAP_SHARED, bpf_map__fd(skel->maps.arr), 0);
	/* A userbpf map fd is a memfd: any map can be mapped (documented). */
	printf("~mmap plain array -> %s\n", q == MAP_FAILED ? ERRNO_RC() : "mapped");
	if (q != MAP_FAILED)
		munmap(q, page);
}

static void section_lock(struct maps_basic_bpf *skel)
{
	int fd = bpf_map__fd(skel->maps.locked);
	struct locked_val lv = { .a = 1, .b = 2 }, out;
	__u32 key = 1;
	__u64 v = 0;

	SHOW("locked update F_LOCK", bpf_map_update_elem(fd, &key, &lv, BPF_F_LOCK));
	lv.a = 10, lv.b = 20;
	SHOW("locked update F_LOCK|EXIST", bpf_map_update_elem(fd, &key, &lv, BPF_F_LOCK | BPF_EXIST));
	SHOW("locked update F_LOCK|NOEXIST", bpf_map_update_elem(fd, &key, &lv, BPF_F_LOCK | BPF_NOEXIST));
	memset(&out, 0xff, sizeof(out));
	SHOW("locked lookup F_LOCK", bpf_map_lookup_elem_flags(fd, &key, &out, BPF_F_LOCK));
	printf("locked a=%u b=%u\n", out.a, out.b);
	key = 2;
	SHOW("locked update F_LOCK|EXIST missing", bpf_map_update_elem(fd, &key, &lv, BPF_F_LOCK | BPF_EXIST));
	key = 0;
	SHOW("arr update F_LOCK", bpf_map_update_elem(bpf_map__fd(skel->maps.arr), &key, &v, BPF_F_LOCK));
	SHOW("arr lookup F_LOCK", bpf_map_lookup_elem_flags(bpf_map__fd(skel->maps.arr), &key, &v, BPF_F_LOCK));
}

static void section_resized(struct maps_basic_bpf *skel)
{
	int fd = bpf_map__fd(skel->maps.resized);
	__u64 v[2] = { 1, 2 };
	__u32 key;
	int r;

	for (key = 0; (r = bpf_map_update_elem(fd, &key, v, BPF_ANY)) == 0 && key < 1000; key++)
		;
	printf("resized fill inserted %u then %s\n", key, rc(r));
	SHOW("bpf resized_write 3", RUN(skel->progs.resized_write, 3, 77, 0, 0));
	key = 3;
	bpf_map_lookup_elem(fd, &key, v);
	printf("resized[3] = %llu %llu\n", (unsigned long long)v[0], (unsigned long long)v[1]);
}

int main(void)
{
	struct maps_basic_bpf *skel;
	int err;

	app_init("maps_basic");
	skel = maps_basic_bpf__open();
	if (!skel)
		fatal("open", -errno);
	section_setup(skel);
	err = maps_basic_bpf__load(skel);
	SHOW("load", err);
	if (err)
		fatal("load", err);
	SHOW("attach", maps_basic_bpf__attach(skel));
	CHECKED("fd after load valid", bpf_map__fd(skel->maps.arr) >= 0);
	/* libbpf 1.1 says -1; libbpf >= 1.3 returns the map's placeholder fd */
	printf("~fd of autocreate-off map -> %d\n", bpf_map__fd(skel->maps.unused));
	CHECKED("uprobe prog loaded", bpf_program__fd(skel->progs.probe_only) >= 0);
	SHOW("uses_unused prog fd", bpf_program__fd(skel->progs.uses_unused));
	SHOW("set_max_entries after load", bpf_map__set_max_entries(skel->maps.arr, 4));
	SHOW("set_value_size after load", bpf_map__set_value_size(skel->maps.arr, 4));
	SHOW("set_autocreate after load", bpf_map__set_autocreate(skel->maps.arr, false));
	SHOW("set_map_flags after load", bpf_map__set_map_flags(skel->maps.arr, 0));
	printf("resized map_flags %u\n", bpf_map__map_flags(skel->maps.resized));
	SHOW("set_autoload after load", bpf_program__set_autoload(skel->progs.array_add, false));
	section_array(skel);
	section_hash(skel);
	section_lru(skel);
	section_mmap(skel);
	section_lock(skel);
	section_resized(skel);
	maps_basic_bpf__detach(skel);
	maps_basic_bpf__destroy(skel);
	printf("done\n");
	return 0;
}
