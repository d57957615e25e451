// SPDX-License-Identifier: MIT OR Apache-2.0
/* maps_of_maps_tailcall: ARRAY_OF_MAPS (slots filled by libbpf from the
 * object and by user space), HASH_OF_MAPS with inner maps made by
 * bpf_map_create, map-in-map lookups from BPF, PROG_ARRAY tail calls
 * (static slot, slots set by user space, fall-through, the kernel's chain
 * limit) and the errors of both. */
#include "app.h"
#include "maps_of_maps_tailcall.skel.h"

static __u32 obj_id(int fd)
{
	struct bpf_map_info info = {};
	__u32 len = sizeof(info);

	/* bpf_map_info and bpf_prog_info both start with type, id */
	if (bpf_obj_get_info_by_fd(fd, &info, &len))
		return 0;
	return info.id;
}

static void put_fd(const char *label, int map_fd, __u32 key, int fd)
{
	SHOW(label, bpf_map_update_elem(map_fd, &key, &fd, BPF_ANY));
}

static void section_maps(struct maps_of_maps_tailcall_bpf *skel)
{
	int arr = bpf_map__fd(skel->maps.outer_arr), hash = bpf_map__fd(skel->maps.outer_hash);
	int prog = bpf_program__fd(skel->progs.mim);
	int inner_c, inner_hash, inner_big, i, n;
	__u32 key, id, keys[8];
	__u64 v;

	inner_c = bpf_map_create(BPF_MAP_TYPE_ARRAY, "inner_c", 4, 8, 4, NULL);
	inner_hash = bpf_map_create(BPF_MAP_TYPE_HASH, "inner_hash", 4, 8, 4, NULL);
	inner_big = bpf_map_create(BPF_MAP_TYPE_ARRAY, "inner_big", 4, 8, 8, NULL);
	CHECKED("bpf_map_create inner maps", inner_c >= 0 && inner_hash >= 0 && inner_big >= 0);
	put_fd("outer_arr[1] = inner_c", arr, 1, inner_c);
	put_fd("outer_arr[3] = hash map", arr, 3, inner_hash);
	put_fd("outer_arr[3] = bigger array", arr, 3, inner_big);
	put_fd("outer_arr[3] = prog fd", arr, 3, prog);
	put_fd("outer_arr[4] = inner_c", arr, 4, inner_c);
	put_fd("outer_hash[7] = inner_c", hash, 7, inner_c);
	put_fd("outer_hash[9] = inner_a", hash, 9, bpf_map__fd(skel->maps.inner_a));

	SHOW("mim arr[0][1] += 5", run_on(prog, 0, 0, 0, 1, 5));
	SHOW("mim arr[0][1] += 5", run_on(prog, 0, 0, 0, 1, 5));
	SHOW("mim arr[2][0] += 1", run_on(prog, 0, 0, 2, 0, 1));
	SHOW("mim arr[1][3] += 7", run_on(prog, 0, 0, 1, 3, 7));
	SHOW("mim arr[3][0] (empty slot)", run_on(prog, 0, 0, 3, 0, 1));
	SHOW("mim arr[1][4] (inner out of range)", run_on(prog, 0, 0, 1, 4, 1));
	SHOW("mim hash[7][3] += 1", run_on(prog, 0, 1, 7, 3, 1));
	SHOW("mim hash[9][1] += 1", run_on(prog, 0, 1, 9, 1, 1));
	SHOW("mim hash[8][0] (missing)", run_on(prog, 0, 1, 8, 0, 1));
	key = 1;
	bpf_map_lookup_elem(bpf_map__fd(skel->maps.inner_a), &key, &v);
	printf("inner_a[1] = %llu\n", (unsigned long long)v);
	key = 3;
	bpf_map_lookup_elem(inner_c, &key, &v);
	printf("inner_c[3] = %llu\n", (unsigned long long)v);
	key = 0;
	SHOW("outer_arr lookup 0", bpf_map_lookup_elem(arr, &key, &id));
	CHECKED("outer_arr[0] holds inner_a's id", id == obj_id(bpf_map__fd(skel->maps.inner_a)));
	key = 2;
	bpf_map_lookup_elem(arr, &key, &id);
	CHECKED("outer_arr[2] holds inner_b's id", id == obj_id(bpf_map__fd(skel->maps.inner_b)));
	key = 7;
	bpf_map_lookup_elem(hash, &key, &id);
	CHECKED("outer_hash[7] holds inner_c's id", id == obj_id(inner_c));
	key = 1;
	SHOW("outer_arr delete 1", bpf_map_delete_elem(arr, &key));
	SHOW("mim arr[1][3] after delete", run_on(prog, 0, 0, 1, 3, 1));
	SHOW("outer_arr lookup deleted 1", bpf_map_lookup_elem(arr, &key, &id));
	key = 7;
	SHOW("outer_hash delete 7", bpf_map_delete_elem(hash, &key));
	SHOW("outer_hash delete 7 again", bpf_map_delete_elem(hash, &key));
	SHOW("mim hash[7][3] after delete", run_on(prog, 0, 1, 7, 3, 1));
	n = map_keys_u32(hash, keys, 8);
	for (i = 0; i < n; i++)
		printf("outer_hash key %u\n", keys[i]);
	/* the outer maps still hold a reference: inner_c lives on until
	 * its last slot is gone */
	close(inner_c);
	close(inner_hash);
	close(inner_big);
}

static void section_tailcalls(struct maps_of_maps_tailcall_bpf *skel)
{
	int jmp = bpf_map__fd(skel->maps.jmp), entry = bpf_program__fd(skel->progs.entry);
	__u32 key, id;

	printf("programs: %s %s %s %s\n", bpf_program__name(skel->progs.entry),
	       bpf_program__name(skel->progs.tail_one), bpf_program__name(skel->progs.tail_two),
	       bpf_program__name(skel->progs.tail_chain));
	SHOW("entry slot 0 (empty)", run_on(entry, 0, 0, 0, 0, 0));
	SHOW("entry slot 1 (static tail_one)", run_on(entry, 0, 1, 0, 0, 0));
	put_fd("jmp[2] = tail_two", jmp, 2, bpf_program__fd(skel->progs.tail_two));
	SHOW("entry slot 2 (tail_two, slot 3 empty)", run_on(entry, 0, 2, 0, 0, 0));
	SHOW("entry slot 9 (out of range)", run_on(entry, 0, 9, 0, 0, 0));
	put_fd("jmp[3] = tail_chain", jmp, 3, bpf_program__fd(skel->progs.tail_chain));
	skel->bss->chain_runs = 0;
	SHOW("entry slot 2 (chain)", run_on(entry, 0, 2, 0, 0, 0));
	printf("tail_chain ran %u times\n", skel->bss->chain_runs);
	put_fd("jmp[0] = uprobe prog", jmp, 0, bpf_program__fd(skel->progs.not_raw_tp));
	put_fd("jmp[0] = map fd", jmp, 0, jmp);
	put_fd("jmp[4] = tail_one", jmp, 4, bpf_program__fd(skel->progs.tail_one));
	key = 2;
	SHOW("jmp lookup 2", bpf_map_lookup_elem(jmp, &key, &id));
	CHECKED("jmp[2] holds tail_two's id", id == obj_id(bpf_program__fd(skel->progs.tail_two)));
	key = 1;
	SHOW("jmp delete 1", bpf_map_delete_elem(jmp, &key));
	SHOW("jmp delete 1 again", bpf_map_delete_elem(jmp, &key));
	SHOW("entry slot 1 after delete", run_on(entry, 0, 1, 0, 0, 0));
}

int main(void)
{
	struct maps_of_maps_tailcall_bpf *skel;
	int err;

	app_init("maps_of_maps_tailcall");
	skel = maps_of_maps_tailcall_bpf__open();
	if (!skel)
		fatal("open", -errno);
	err = maps_of_maps_tailcall_bpf__load(skel);
	SHOW("load", err);
	if (err)
		fatal("load", err);
	SHOW("attach", maps_of_maps_tailcall_bpf__attach(skel));
	section_maps(skel);
	section_tailcalls(skel);
	maps_of_maps_tailcall_bpf__detach(skel);
	maps_of_maps_tailcall_bpf__destroy(skel);
	printf("done\n");
	return 0;
}
