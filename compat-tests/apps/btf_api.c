// SPDX-License-Identifier: MIT OR Apache-2.0
/* btf_api: the BTF functions tools use on vmlinux BTF (load, find, type
 * walk with the btf.h inline accessors, sizes, strings), a BTF built from
 * scratch (btf__new_empty, btf__add_str), btf_dump__dump_type_data on the
 * object's own BTF, libbpf_find_vmlinux_btf_id, and
 * bpf_program__set_attach_target on a bare tp_btf program. Only stable
 * facts of vmlinux BTF are printed; ids and counts are '~' lines. */
#include <bpf/btf.h>
#include "app.h"
#include "btf_api.skel.h"

static const char *kind_name(const struct btf_type *t)
{
	static const char *names[] = { "UNKN", "INT", "PTR", "ARRAY", "STRUCT", "UNION", "ENUM",
				       "FWD", "TYPEDEF", "VOLATILE", "CONST", "RESTRICT", "FUNC",
				       "FUNC_PROTO", "VAR", "DATASEC", "FLOAT", "DECL_TAG",
				       "TYPE_TAG", "ENUM64" };

	return btf_kind(t) < ARRAY_LEN(names) ? names[btf_kind(t)] : "?";
}

static void section_vmlinux(void)
{
	struct btf *vm = btf__load_vmlinux_btf(), *mod;
	const struct btf_type *t;
	const struct btf_member *m;
	const struct btf_param *p;
	const struct btf_enum *e;
	__s32 id, id2;
	int i;

	SHOW("btf__load_vmlinux_btf", libbpf_get_error(vm));
	if (!vm)
		return;
	CHECKED("type_cnt > 1000", btf__type_cnt(vm) > 1000);
	printf("~type_cnt %u\n", btf__type_cnt(vm));

	id = btf__find_by_name_kind(vm, "task_struct", BTF_KIND_STRUCT);
	t = btf__type_by_id(vm, id);
	printf("task_struct: id>0 %s kind %s name %s vlen>50 %s\n", YESNO(id > 0), kind_name(t),
	       btf__name_by_offset(vm, t->name_off), YESNO(btf_vlen(t) > 50));
	printf("~task_struct id %d size %u\n", id, t->size);

	id = btf__find_by_name_kind(vm, "list_head", BTF_KIND_STRUCT);
	t = btf__type_by_id(vm, id);
	printf("list_head: kind %s vlen %u size %lld\n", kind_name(t), btf_vlen(t),
	       (long long)btf__resolve_size(vm, id));
	for (i = 0, m = btf_members(t); i < btf_vlen(t); i++, m++)
		printf("  member %s offset %u ptr %s size %lld\n", btf__str_by_offset(vm, m->name_off),
		       btf_member_bit_offset(t, i), YESNO(btf_is_ptr(btf__type_by_id(vm, m->type))),
		       (long long)btf__resolve_size(vm, m->type));

	id = btf__find_by_name_kind(vm, "u64", BTF_KIND_TYPEDEF);
	printf("u64: kind %s size %lld\n", kind_name(btf__type_by_id(vm, id)),
	       (long long)btf__resolve_size(vm, id));
	id = btf__find_by_name_kind(vm, "int", BTF_KIND_INT);
	t = btf__type_by_id(vm, id);
	printf("int: bits %u signed %s\n", btf_int_bits(t), YESNO(btf_int_encoding(t) & BTF_INT_SIGNED));

	id = btf__find_by_name_kind(vm, "bpf_map_type", BTF_KIND_ENUM);
	t = btf__type_by_id(vm, id);
	printf("bpf_map_type: is_enum %s vlen>30 %s\n", YESNO(btf_is_enum(t)), YESNO(btf_vlen(t) > 30));
	for (i = 0, e = btf_enum(t); i < btf_vlen(t); i++, e++)
		if (!strcmp(btf__name_by_offset(vm, e->name_off), "BPF_MAP_TYPE_RINGBUF") ||
		    !strcmp(btf__name_by_offset(vm, e->name_off), "BPF_MAP_TYPE_LPM_TRIE"))
			printf("  %s = %d\n", btf__name_by_offset(vm, e->name_off), e->val);

	id = btf__find_by_name_kind(vm, "vfs_read", BTF_KIND_FUNC);
	t = btf__type_by_id(vm, btf__type_by_id(vm, id)->type);
	printf("vfs_read: proto %s vlen %u returns %lld bytes\n", YESNO(btf_is_func_proto(t)),
	       btf_vlen(t), (long long)btf__resolve_size(vm, t->type));
	for (i = 0, p = btf_params(t); i < btf_vlen(t); i++, p++)
		printf("  param %s kind %s\n", btf__name_by_offset(vm, p->name_off),
		       kind_name(btf__type_by_id(vm, p->type)));

	SHOW("find missing", btf__find_by_name_kind(vm, "no_such_type_xyz", BTF_KIND_STRUCT));
	SHOW("find with wrong kind", btf__find_by_name_kind(vm, "task_struct", BTF_KIND_UNION));
	printf("type 0 kind %s\n", kind_name(btf__type_by_id(vm, 0)));
	errno = 0;
	CHECKED("type_by_id past the end is NULL", btf__type_by_id(vm, btf__type_cnt(vm)) == NULL);
	printf("type_by_id past the end errno %s\n", ERRNO_RC());

	id = libbpf_find_vmlinux_btf_id("sched_switch", BPF_TRACE_RAW_TP);
	id2 = btf__find_by_name_kind(vm, "btf_trace_sched_switch", BTF_KIND_TYPEDEF);
	CHECKED("find_vmlinux_btf_id raw_tp sched_switch", id > 0 && id == id2);
	id = libbpf_find_vmlinux_btf_id("vfs_read", BPF_TRACE_FENTRY);
	id2 = btf__find_by_name_kind(vm, "vfs_read", BTF_KIND_FUNC);
	CHECKED("find_vmlinux_btf_id fentry vfs_read", id > 0 && id == id2);
	SHOW("find_vmlinux_btf_id missing", libbpf_find_vmlinux_btf_id("no_such_fn_xyz", BPF_TRACE_FENTRY));
	/* this kernel has no module BTF: only the failure is portable */
	errno = 0;
	mod = btf__load_module_btf("no_such_module_xyz", vm);
	printf("load_module_btf missing -> %s errno %s\n", mod ? "btf" : "NULL", ERRNO_RC());
	btf__free(mod);
	btf__free(vm);
}

static void section_new_btf(void)
{
	struct btf *b = btf__new_empty();
	int id;

	SHOW("btf__new_empty", libbpf_get_error(b));
	printf("empty type_cnt %u\n", btf__type_cnt(b));
	SHOW("add_str hello", btf__add_str(b, "hello"));
	SHOW("add_str hello again", btf__add_str(b, "hello"));
	SHOW("add_str world", btf__add_str(b, "world"));
	printf("str 1 '%s' str 7 '%s' str 0 '%s'\n", btf__str_by_offset(b, 1),
	       btf__name_by_offset(b, 7), btf__str_by_offset(b, 0));
	errno = 0;
	printf("str 100 %s", btf__str_by_offset(b, 100) ? "found" : "NULL");
	printf(" errno %s\n", ERRNO_RC());
	id = btf__add_int(b, "myint", 2, BTF_INT_SIGNED);
	SHOW("add_int", id);
	printf("myint size %lld found %s type_cnt %u\n", (long long)btf__resolve_size(b, id),
	       YESNO(btf__find_by_name_kind(b, "myint", BTF_KIND_INT) == id), btf__type_cnt(b));
	btf__free(b);
	btf__free(NULL);
}

static char dump_buf[4096];
static size_t dump_len;

static void dump_printf(void *ctx, const char *fmt, va_list args)
{
	int n = vsnprintf(dump_buf + dump_len, sizeof(dump_buf) - dump_len, fmt, args);

	if (n > 0)
		dump_len += n;
}

static void dump(struct btf_dump *d, const char *what, __u32 id, const void *data, size_t sz,
		 bool compact, bool zeroes)
{
	LIBBPF_OPTS(btf_dump_type_data_opts, opts, .compact = compact, .emit_zeroes = zeroes);
	int r;

	dump_len = 0;
	dump_buf[0] = 0;
	r = btf_dump__dump_type_data(d, id, data, sz, &opts);
	printf("dump %s -> %s\n", what, rc(r));
	if (r < 0) {
		/* What libbpf printed before it gave up reads past the end of the
		 * data: not comparable. */
		for (char *line = strtok(dump_buf, "\n"); line; line = strtok(NULL, "\n"))
			printf("~partial: %s\n", line);
		if (dump_len)
			printf("\n");
		return;
	}
	printf("%s%s", dump_buf, dump_len ? "\n" : "");
}

static void section_object(struct btf_api_bpf *skel)
{
	struct btf *btf = bpf_object__btf(skel->obj);
	unsigned char data[256] = {};
	struct btf_dump *d;
	__u32 key = 0;
	__s32 id;
	__s64 sz;

	SHOW("fill", RUN(skel->progs.fill, 42, 0, 0, 0));
	SHOW("lookup sample", bpf_map_lookup_elem(bpf_map__fd(skel->maps.samples), &key, data));
	id = btf__find_by_name_kind(btf, "app_sample", BTF_KIND_STRUCT);
	sz = btf__resolve_size(btf, id);
	printf("struct app_sample size %lld\n", (long long)sz);
	d = btf_dump__new(btf, dump_printf, NULL, NULL);
	SHOW("btf_dump__new", libbpf_get_error(d));
	if (!d)
		return;
	dump(d, "sample", id, data, sz, false, false);
	dump(d, "sample compact", id, data, sz, true, false);
	dump(d, "sample truncated to 20 bytes", id, data, 20, false, false);
	id = btf__find_by_name_kind(btf, "app_point", BTF_KIND_STRUCT);
	dump(d, "point zeroes", id, data + 16, 8, true, true);
	id = btf__find_by_name_kind(btf, "app_color", BTF_KIND_ENUM);
	dump(d, "color", id, data + 4, 4, true, false);
	btf_dump__free(d);
}

int main(void)
{
	struct btf_api_bpf *skel;
	int err;

	app_init("btf_api");
	section_vmlinux();
	section_new_btf();

	skel = btf_api_bpf__open();
	if (!skel)
		fatal("open", -errno);
	SHOW("set_attach_target missing",
	     bpf_program__set_attach_target(skel->progs.on_switch, 0, "no_such_tp_xyz"));
	SHOW("set_attach_target sched_switch",
	     bpf_program__set_attach_target(skel->progs.on_switch, 0, "sched_switch"));
	bpf_program__set_autoattach(skel->progs.on_switch, false);
	err = btf_api_bpf__load(skel);
	SHOW("load", err);
	if (err)
		fatal("load", err);
	SHOW("attach", btf_api_bpf__attach(skel));
	CHECKED("tp_btf program loaded", bpf_program__fd(skel->progs.on_switch) >= 0);
	SHOW("set_attach_target after load",
	     bpf_program__set_attach_target(skel->progs.on_switch, 0, "sched_switch"));
	section_object(skel);
	btf_api_bpf__detach(skel);
	btf_api_bpf__destroy(skel);
	printf("done\n");
	return 0;
}
