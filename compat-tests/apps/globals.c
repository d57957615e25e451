// SPDX-License-Identifier: MIT OR Apache-2.0
/* globals: .rodata set through skel->rodata before load, .data and .bss read
 * and written through the skeleton's mmaped pointers before and after load,
 * custom .data.custom / .rodata.custom sections, bpf_map__initial_value,
 * the frozen .rodata map, and a subskeleton (bpf_object__open_subskeleton)
 * for the variables of a linked BPF library. */
#include "app.h"
#include "globals.skel.h"
#include "globals_lib.subskel.h"

static void print_state(const char *when, struct globals_bpf *skel, struct globals_lib *lib)
{
	printf("[%s] counter=%llu slots=%u,%u,%u,%u total=%llu runs=%u\n", when,
	       (unsigned long long)skel->data->counter, skel->data->slots[0], skel->data->slots[1],
	       skel->data->slots[2], skel->data->slots[3], (unsigned long long)skel->bss->total,
	       skel->bss->runs);
	printf("[%s] last_greeting='%.8s' custom_val=%u custom_arr=%llu,%llu custom_ro=%u\n", when,
	       skel->bss->last_greeting, skel->data_custom->custom_val,
	       (unsigned long long)skel->data_custom->custom_arr[0],
	       (unsigned long long)skel->data_custom->custom_arr[1], skel->rodata_custom->custom_ro);
	printf("[%s] lib_counter=%d lib_hits=%d lib_scale=%d\n", when, *lib->data.lib_counter,
	       *lib->bss.lib_hits, *lib->rodata.lib_scale);
}

static void section_open(struct globals_bpf *skel, struct globals_lib *lib)
{
	const struct globals_bpf__data *init;
	char custom[sizeof(struct globals_bpf__data_custom)];
	struct bpf_map *map;
	size_t sz = 0;

	bpf_object__for_each_map(map, skel->obj)
		printf("map %s value_size %u max_entries %u\n", bpf_map__name(map),
		       bpf_map__value_size(map), bpf_map__max_entries(map));
	printf("rodata scale=%u enable_extra=%d greeting='%s'\n", skel->rodata->scale,
	       skel->rodata->enable_extra, (const char *)skel->rodata->greeting);
	init = bpf_map__initial_value(skel->maps.data, &sz);
	printf("initial_value .data size %zu counter %llu same as skel->data %s\n", sz,
	       init ? (unsigned long long)init->counter : 0ULL, YESNO((void *)init == skel->data));
	init = bpf_map__initial_value(skel->maps.bss, &sz);
	printf("initial_value .bss size %zu\n", sz);
	CHECKED("subskeleton maps are the skeleton's",
		lib->maps.data == skel->maps.data && lib->maps.bss == skel->maps.bss &&
			lib->maps.rodata == skel->maps.rodata);
	CHECKED("subskeleton lib_counter points into skel->data",
		lib->data.lib_counter == &skel->data->lib_counter);
	print_state("open", skel, lib);

	/* before load: these become the maps' initial contents */
	skel->rodata->scale = 3;
	skel->rodata->enable_extra = true;
	memcpy((char *)skel->rodata->greeting, "world!!", 8);
	skel->data->counter = 1000;
	memcpy(custom, skel->data_custom, sizeof(custom));
	((struct globals_bpf__data_custom *)custom)->custom_arr[0] = 55;
	SHOW("set_initial_value .data.custom wrong size",
	     bpf_map__set_initial_value(skel->maps.data_custom, custom, 8));
	SHOW("set_initial_value .data.custom",
	     bpf_map__set_initial_value(skel->maps.data_custom, custom,
					bpf_map__value_size(skel->maps.data_custom)));
	printf("custom_arr[0] after set_initial_value %llu\n",
	       (unsigned long long)skel->data_custom->custom_arr[0]);
	*lib->rodata.lib_scale = 4;
	*lib->data.lib_counter = 50;
}

int main(void)
{
	struct globals_bpf *skel;
	struct globals_lib *lib;
	__u32 zero = 0;
	char buf[64];
	size_t sz;
	int err, fd;

	app_init("globals");
	skel = globals_bpf__open();
	if (!skel)
		fatal("open", -errno);
	lib = globals_lib__open(skel->obj);
	if (!lib)
		fatal("open_subskeleton", -errno);
	section_open(skel, lib);

	err = globals_bpf__load(skel);
	SHOW("load", err);
	if (err)
		fatal("load", err);
	print_state("loaded", skel, lib);
	printf("rodata after load scale=%u greeting='%s'\n", skel->rodata->scale,
	       (const char *)skel->rodata->greeting);

	SHOW("bump 5", RUN(skel->progs.bump, 5, 0, 0, 0));
	SHOW("bump 2", RUN(skel->progs.bump, 2, 0, 0, 0));
	print_state("ran", skel, lib);

	/* user space writes through the mmaped .data/.bss; the program sees it */
	skel->data->counter = 1;
	skel->bss->total = 0;
	*lib->data.lib_counter = 0;
	SHOW("bump 1", RUN(skel->progs.bump, 1, 0, 0, 0));
	print_state("rewritten", skel, lib);

	/* the same values through the map fds */
	fd = bpf_map__fd(skel->maps.data);
	memset(buf, 0, sizeof(buf));
	SHOW(".data lookup", bpf_map_lookup_elem(fd, &zero, buf));
	CHECKED(".data lookup equals skel->data",
		memcmp(buf, skel->data, bpf_map__value_size(skel->maps.data)) == 0);
	CHECKED("initial_value after load is the live map",
		bpf_map__initial_value(skel->maps.data, &sz) == (void *)skel->data);
	memcpy(buf, skel->data, sizeof(*skel->data));
	((struct globals_bpf__data *)buf)->counter = 7;
	SHOW(".data update", bpf_map_update_elem(fd, &zero, buf, BPF_ANY));
	printf("counter via mmap after update %llu\n", (unsigned long long)skel->data->counter);
	fd = bpf_map__fd(skel->maps.rodata);
	SHOW(".rodata lookup", bpf_map_lookup_elem(fd, &zero, buf));
	printf(".rodata scale via lookup %u\n", ((struct globals_bpf__rodata *)buf)->scale);
	SHOW(".rodata update (frozen)", bpf_map_update_elem(fd, &zero, buf, BPF_ANY));
	SHOW(".bss next_key", bpf_map_get_next_key(bpf_map__fd(skel->maps.bss), NULL, &zero));

	globals_lib__destroy(lib);
	globals_bpf__destroy(skel);
	printf("done\n");
	return 0;
}
