// SPDX-License-Identifier: MIT OR Apache-2.0
/* maps_special: QUEUE and STACK (push/pop/peek from BPF and user space),
 * BLOOM_FILTER, LPM_TRIE (longest-prefix match, ENOSPC when full) and
 * STACK_TRACE (bpf_get_stackid of user stacks, resized before load). */
#include "app.h"
#include "maps_special.skel.h"

struct lpm_key {
	__u32 prefixlen;
	__u8 addr[4];
};

#define IP(a, b, c, d) (((__u32)(a) << 24) | ((b) << 16) | ((c) << 8) | (d))
#define STACK_DEPTH 32

static void section_queue_stack(struct maps_special_bpf *skel, int which, const char *name)
{
	int fd = which ? bpf_map__fd(skel->maps.stack) : bpf_map__fd(skel->maps.queue);
	int prog = bpf_program__fd(skel->progs.qs_op), r;
	__u32 v, key = 0;
	char label[64];

#define L(s) (snprintf(label, sizeof(label), "%s %s", name, s), label)
	v = 10;
	SHOW(L("user push 10"), bpf_map_update_elem(fd, NULL, &v, BPF_ANY));
	v = 20;
	SHOW(L("user push 20"), bpf_map_update_elem(fd, NULL, &v, BPF_ANY));
	SHOW(L("bpf push 30"), run_on(prog, 0, which, 0, 30, BPF_ANY));
	SHOW(L("bpf push 40"), run_on(prog, 0, which, 0, 40, BPF_ANY));
	v = 50;
	SHOW(L("user push 50 full"), bpf_map_update_elem(fd, NULL, &v, BPF_ANY));
	SHOW(L("bpf push 50 full"), run_on(prog, 0, which, 0, 50, BPF_ANY));
	SHOW(L("bpf push 50 EXIST"), run_on(prog, 0, which, 0, 50, BPF_EXIST));
	SHOW(L("bpf push NOEXIST"), run_on(prog, 0, which, 0, 60, BPF_NOEXIST));
	SHOW(L("user push NOEXIST"), bpf_map_update_elem(fd, NULL, &v, BPF_NOEXIST));
	SHOW(L("user push with key"), bpf_map_update_elem(fd, &key, &v, BPF_ANY));
	SHOW(L("user delete"), bpf_map_delete_elem(fd, NULL));
	SHOW(L("user next_key"), bpf_map_get_next_key(fd, NULL, &key));
	v = 0;
	r = bpf_map_lookup_elem(fd, NULL, &v);
	printf("%s user peek -> %s value %u\n", name, rc(r), v);
	r = run_on(prog, 0, which, 2, 0, 0);
	printf("%s bpf peek -> %s value %u\n", name, rc(r), skel->bss->last_value);
	for (int n = 0; n < 20; n++) {
		r = run_on(prog, 0, which, 1, 0, 0);
		printf("%s bpf pop -> %s value %u\n", name, rc(r), skel->bss->last_value);
		if (r)
			break;
		v = 0;
		r = bpf_map_lookup_and_delete_elem(fd, NULL, &v);
		printf("%s user pop -> %s value %u\n", name, rc(r), v);
		if (r)
			break;
	}
	SHOW(L("user peek empty"), bpf_map_lookup_elem(fd, NULL, &v));
	SHOW(L("bpf peek empty"), run_on(prog, 0, which, 2, 0, 0));
#undef L
}

static void section_bloom(struct maps_special_bpf *skel)
{
	int fd = bpf_map__fd(skel->maps.bloom), prog = bpf_program__fd(skel->progs.bloom_op);
	int present = 0, absent = 0;
	__u32 v;

	for (v = 1; v <= 3; v++)
		SHOW("bloom user push", bpf_map_update_elem(fd, NULL, &v, BPF_ANY));
	SHOW("bloom bpf push 4", run_on(prog, 0, 0, 4, 0, 0));
	SHOW("bloom bpf push 5", run_on(prog, 0, 0, 5, 0, 0));
	for (v = 1; v <= 5; v++)
		present += run_on(prog, 0, 1, v, 0, 0) == 0;
	/* false positives are possible in theory: 15 of 32768 bits set make
	 * one about 1e-10 per lookup */
	for (v = 1000; v < 1010; v++)
		absent += run_on(prog, 0, 1, v, 0, 0) == -ENOENT;
	printf("bloom bpf peek present %d/5 absent %d/10\n", present, absent);
	v = 2;
	SHOW("bloom user peek 2", bpf_map_lookup_elem(fd, NULL, &v));
	v = 4;
	SHOW("bloom user peek 4", bpf_map_lookup_elem(fd, NULL, &v));
	v = 2000;
	SHOW("bloom user peek 2000", bpf_map_lookup_elem(fd, NULL, &v));
	SHOW("bloom user push EXIST", bpf_map_update_elem(fd, NULL, &v, BPF_EXIST));
	SHOW("bloom user delete", bpf_map_delete_elem(fd, NULL));
	SHOW("bloom user next_key", bpf_map_get_next_key(fd, NULL, &v));
}

static int lpm_put(int fd, __u32 ip, __u32 len, __u32 val, __u64 flags)
{
	struct lpm_key k = { len, { ip >> 24, ip >> 16, ip >> 8, ip } };

	return bpf_map_update_elem(fd, &k, &val, flags);
}

static void lpm_probe(int prog, __u32 ip)
{
	printf("lpm bpf lookup %u.%u.%u.%u -> %s\n", ip >> 24, (ip >> 16) & 255, (ip >> 8) & 255,
	       ip & 255, rc(run_on(prog, 0, ip, 0, 0, 0)));
}

static void section_lpm(struct maps_special_bpf *skel)
{
	int fd = bpf_map__fd(skel->maps.lpm), prog = bpf_program__fd(skel->progs.lpm_lookup);
	struct lpm_key k = { 32, { 10, 1, 2, 200 } }, keys[16], *prev = NULL;
	struct lines l = {};
	__u32 v, i, n = 0;
	int r;

	SHOW("lpm put 10/8", lpm_put(fd, IP(10, 0, 0, 0), 8, 1, BPF_ANY));
	SHOW("lpm put 10.1/16", lpm_put(fd, IP(10, 1, 0, 0), 16, 2, BPF_NOEXIST));
	SHOW("lpm put 10.1.2/24", lpm_put(fd, IP(10, 1, 2, 0), 24, 3, BPF_ANY));
	SHOW("lpm put 192.168/16", lpm_put(fd, IP(192, 168, 0, 0), 16, 5, BPF_ANY));
	SHOW("lpm put 0/0", lpm_put(fd, 0, 0, 9, BPF_ANY));
	SHOW("lpm put 10.1/16 NOEXIST", lpm_put(fd, IP(10, 1, 0, 0), 16, 2, BPF_NOEXIST));
	SHOW("lpm put 11/8 EXIST", lpm_put(fd, IP(11, 0, 0, 0), 8, 2, BPF_EXIST));
	SHOW("lpm put /33", lpm_put(fd, 0, 33, 2, BPF_ANY));
	lpm_probe(prog, IP(10, 1, 2, 3));
	lpm_probe(prog, IP(10, 1, 9, 9));
	lpm_probe(prog, IP(10, 9, 9, 9));
	lpm_probe(prog, IP(192, 168, 1, 1));
	lpm_probe(prog, IP(8, 8, 8, 8));
	r = bpf_map_lookup_elem(fd, &k, &v);
	printf("lpm user lookup 10.1.2.200/32 -> %s value %u\n", rc(r), v);
	k = (struct lpm_key){ 0, { 0 } };
	SHOW("lpm delete 0/0", bpf_map_delete_elem(fd, &k));
	lpm_probe(prog, IP(8, 8, 8, 8));
	k = (struct lpm_key){ 16, { 10, 1 } };
	SHOW("lpm delete 10.1/16", bpf_map_delete_elem(fd, &k));
	SHOW("lpm delete 10.1/16 again", bpf_map_delete_elem(fd, &k));
	lpm_probe(prog, IP(10, 1, 9, 9));
	lpm_probe(prog, IP(10, 1, 2, 9));
	for (i = 0; (r = lpm_put(fd, IP(172, 16, i, 0), 24, 100 + i, BPF_ANY)) == 0 && i < 256; i++)
		;
	printf("lpm fill inserted %u then %s\n", i, rc(r));
	while (n < 16 && bpf_map_get_next_key(fd, prev, &keys[n]) == 0) {
		prev = &keys[n];
		n++;
	}
	for (i = 0; i < n; i++) {
		bpf_map_lookup_elem(fd, &keys[i], &v);
		lines_add(&l, "lpm entry %03u.%03u.%03u.%03u/%02u = %u", keys[i].addr[0],
			  keys[i].addr[1], keys[i].addr[2], keys[i].addr[3], keys[i].prefixlen, v);
	}
	lines_flush(&l);
}

static void section_stack_trace(struct maps_special_bpf *skel)
{
	int fd = bpf_map__fd(skel->maps.stacks), prog = bpf_program__fd(skel->progs.stack_id);
	__u64 ips[STACK_DEPTH];
	int ids[2], i, frames = 0;
	__u32 key;

	for (i = 0; i < 2; i++)
		ids[i] = run_on(prog, -1, 0, 0, 0, 0); /* same call site twice */
	CHECKED("stackid >= 0", ids[0] >= 0);
	CHECKED("same stack, same id", ids[0] == ids[1]);
	printf("~stackid %d\n", ids[0]);
	key = ids[0];
	memset(ips, 0, sizeof(ips));
	SHOW("stack lookup", bpf_map_lookup_elem(fd, &key, ips));
	CHECKED("stack first ip nonzero", ips[0] != 0);
	for (i = 0; i < STACK_DEPTH && ips[i]; i++)
		frames++;
	printf("~stack frames %d\n", frames);
	SHOW("stack next_key NULL", bpf_map_get_next_key(fd, NULL, &key));
	CHECKED("stack next_key is the id", key == (__u32)ids[0]);
	SHOW("stack update", bpf_map_update_elem(fd, &key, ips, BPF_ANY));
	key = ids[0];
	SHOW("stack delete", bpf_map_delete_elem(fd, &key));
	SHOW("stack delete again", bpf_map_delete_elem(fd, &key));
	SHOW("stack lookup deleted", bpf_map_lookup_elem(fd, &key, ips));
	key = 64;
	SHOW("stack lookup id 64", bpf_map_lookup_elem(fd, &key, ips));
}

int main(void)
{
	struct maps_special_bpf *skel;
	int err;

	app_init("maps_special");
	skel = maps_special_bpf__open();
	if (!skel)
		fatal("open", -errno);
	SHOW("set_value_size stacks", bpf_map__set_value_size(skel->maps.stacks, STACK_DEPTH * 8));
	SHOW("set_max_entries stacks", bpf_map__set_max_entries(skel->maps.stacks, 64));
	err = maps_special_bpf__load(skel);
	SHOW("load", err);
	if (err)
		fatal("load", err);
	section_queue_stack(skel, 0, "queue");
	section_queue_stack(skel, 1, "stack");
	section_bloom(skel);
	section_lpm(skel);
	section_stack_trace(skel);
	maps_special_bpf__destroy(skel);
	printf("done\n");
	return 0;
}
