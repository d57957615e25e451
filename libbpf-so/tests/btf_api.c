/*
 * Exercises libbpf's BTF API and prints what it answers, so that the output
 * of this program on our libbpf.so.1 can be compared with its output on
 * libbpf itself (tests/btf_api.rs). Built against the libbpf-dev headers
 * (1.1.2 on Debian 12), so it only calls functions that release has.
 *
 *   btf_api api <bpf.o> <unused> <text file> <empty file>
 *   btf_api build       types built with btf__add_*, raw bytes included
 *   btf_api data        btf_dump__dump_type_data on vmlinux types
 *   btf_api decl        btf_dump__dump_type / __emit_type_decl
 *   btf_api dumpall     every vmlinux type as C (bpftool btf dump format c)
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

static int quiet(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	return 0;
}

static unsigned long long fnv(const void *p, size_t n)
{
	const unsigned char *b = p;
	unsigned long long h = 1469598103934665603ULL;
	size_t i;

	for (i = 0; i < n; i++)
		h = (h ^ b[i]) * 1099511628211ULL;
	return h;
}

static void show_ptr(const char *what, const void *p)
{
	if (p)
		printf("%s: ok\n", what);
	else
		printf("%s: NULL errno=%d\n", what, errno);
}

static void show_int(const char *what, long long ret)
{
	if (ret < 0)
		printf("%s = %lld errno=%d\n", what, ret, errno);
	else
		printf("%s = %lld\n", what, ret);
}

static void show_raw(const char *what, const struct btf *btf)
{
	__u32 size = 0;
	const void *raw = btf__raw_data(btf, &size);

	if (!raw) {
		printf("%s raw: NULL errno=%d\n", what, errno);
		return;
	}
	printf("%s raw: %u bytes fnv=%016llx\n", what, size, fnv(raw, size));
}

/* Without btf__align_of, which libbpf crashes in when a member's type
 * does not exist (a type copied with btf__add_type). */
static void show_copied_type(const struct btf *btf, __u32 id)
{
	const struct btf_type *t = btf__type_by_id(btf, id);

	if (!t) {
		printf("type %u: NULL errno=%d\n", id, errno);
		return;
	}
	printf("type %u: kind=%u vlen=%u kflag=%d name='%s' size_type=%u\n", id, btf_kind(t),
	       btf_vlen(t), btf_kflag(t), btf__name_by_offset(btf, t->name_off), t->size);
}

static void show_type(const struct btf *btf, __u32 id)
{
	const struct btf_type *t;
	const char *name;
	long long size;
	int align, resolved;

	errno = 0;
	t = btf__type_by_id(btf, id);
	if (!t) {
		printf("type %u: NULL errno=%d\n", id, errno);
		return;
	}
	name = btf__name_by_offset(btf, t->name_off);
	errno = 0;
	size = btf__resolve_size(btf, id);
	printf("type %u: kind=%u vlen=%u kflag=%d name='%s' size_type=%u resolve_size=%lld",
	       id, btf_kind(t), btf_vlen(t), btf_kflag(t), name ? name : "(null)", t->size, size);
	if (size < 0)
		printf("(errno %d)", errno);
	errno = 0;
	align = btf__align_of(btf, id);
	printf(" align=%d(errno %d)", align, align ? 0 : errno);
	errno = 0;
	resolved = btf__resolve_type(btf, id);
	printf(" resolve_type=%d", resolved);
	if (resolved < 0)
		printf("(errno %d)", errno);
	if (btf_is_composite(t) && btf_vlen(t)) {
		const struct btf_member *m = btf_members(t);
		int last = btf_vlen(t) - 1;

		printf(" first='%s'@%u last='%s'@%u", btf__name_by_offset(btf, m[0].name_off),
		       btf_member_bit_offset(t, 0), btf__name_by_offset(btf, m[last].name_off),
		       btf_member_bit_offset(t, last));
	}
	printf("\n");
}

static const char *names[] = {
	"task_struct", "int", "long unsigned int", "void", "pid_t", "bpf_map_type",
	"nonexistent_type_xyz", "", "list_head", "sk_buff", "vfs_read", "__int128",
	"double", ".data..percpu", "runqueues",
};
/* Not 0xffffffff: libbpf 1.1 matches no kind with it, 1.7 any kind. */
static const unsigned int kinds[] = { 0, 1, 2, 4, 5, 6, 8, 12, 14, 15, 16, 19, 100 };

static void lookups(const struct btf *btf)
{
	unsigned int i, j;
	char what[128];

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		errno = 0;
		snprintf(what, sizeof(what), "find_by_name(%s)", names[i]);
		show_int(what, btf__find_by_name(btf, names[i]));
		for (j = 0; j < sizeof(kinds) / sizeof(kinds[0]); j++) {
			errno = 0;
			snprintf(what, sizeof(what), "find_by_name_kind(%s, %u)", names[i], kinds[j]);
			show_int(what, btf__find_by_name_kind(btf, names[i], kinds[j]));
		}
	}
}

static int api(char **argv)
{
	struct btf *vmlinux, *btf, *copy, *split;
	struct btf_ext *ext = NULL;
	__u32 n, id, size;
	const void *raw;
	void *buf;
	char what[64];
	int ret;

	vmlinux = btf__load_vmlinux_btf();
	show_ptr("load_vmlinux_btf", vmlinux);
	if (!vmlinux)
		return 1;
	n = btf__type_cnt(vmlinux);
	printf("type_cnt %u pointer_size %zu endianness %d fd %d base %p\n", n,
	       btf__pointer_size(vmlinux), btf__endianness(vmlinux), btf__fd(vmlinux),
	       (void *)btf__base_btf(vmlinux));
	show_raw("vmlinux", vmlinux);
	for (id = 0; id < n; id += 97)
		show_type(vmlinux, id);
	show_type(vmlinux, n - 1);
	show_type(vmlinux, n);
	show_type(vmlinux, 0xffffffff);
	lookups(vmlinux);

	errno = 0;
	printf("str_by_offset(0) = '%s'\n", btf__str_by_offset(vmlinux, 0));
	printf("name_by_offset(1) = '%s'\n", btf__name_by_offset(vmlinux, 1));
	errno = 0;
	show_ptr("str_by_offset(huge)", btf__str_by_offset(vmlinux, 0x7fffffff));
	errno = 0;
	show_ptr("name_by_offset(huge)", btf__name_by_offset(vmlinux, 0xfffffff0));
	errno = 0;
	show_int("resolve_size(bad id)", btf__resolve_size(vmlinux, n + 5));
	errno = 0;
	show_int("resolve_type(bad id)", btf__resolve_type(vmlinux, n + 5));
	errno = 0;
	show_int("resolve_type(void)", btf__resolve_type(vmlinux, 0));
	errno = 0;
	show_int("resolve_size(void)", btf__resolve_size(vmlinux, 0));

	/* strings: find (modifiable copy below) */
	errno = 0;
	show_int("find_str(task_struct)", btf__find_str(vmlinux, "task_struct"));
	errno = 0;
	show_int("find_str(ask_struct)", btf__find_str(vmlinux, "ask_struct"));
	errno = 0;
	show_int("find_str(no such string)", btf__find_str(vmlinux, "no such string"));

	/* raw data round trip through btf__new */
	raw = btf__raw_data(vmlinux, &size);
	buf = malloc(size);
	memcpy(buf, raw, size);
	copy = btf__new(buf, size);
	show_ptr("btf__new(vmlinux raw)", copy);
	printf("copy type_cnt %u ptr %zu\n", btf__type_cnt(copy), btf__pointer_size(copy));
	show_raw("copy", copy);
	errno = 0;
	show_ptr("btf__new(truncated)", btf__new(buf, 20));
	errno = 0;
	show_ptr("btf__new(size-1)", btf__new(buf, size - 1));
	memset(buf, 0x5a, 64);
	errno = 0;
	show_ptr("btf__new(garbage)", btf__new(buf, size));
	free(buf);

	/* byte-swapped raw data */
	printf("set_endianness(BIG) = %d\n", btf__set_endianness(copy, BTF_BIG_ENDIAN));
	printf("endianness %d\n", btf__endianness(copy));
	show_raw("copy big-endian", copy);
	raw = btf__raw_data(copy, &size);
	buf = malloc(size);
	memcpy(buf, raw, size);
	btf = btf__new(buf, size);
	show_ptr("btf__new(big-endian)", btf);
	if (btf) {
		printf("swapped type_cnt %u endianness %d\n", btf__type_cnt(btf), btf__endianness(btf));
		show_type(btf, 5000);
		show_raw("swapped", btf);
		btf__set_endianness(btf, BTF_LITTLE_ENDIAN);
		show_raw("swapped back", btf);
		btf__free(btf);
	}
	free(buf);
	errno = 0;
	show_int("set_endianness(7)", btf__set_endianness(copy, 7));
	errno = 0;
	show_int("set_pointer_size(3)", btf__set_pointer_size(copy, 3));
	show_int("set_pointer_size(4)", btf__set_pointer_size(copy, 4));
	printf("pointer_size %zu resolve_size(ptr) %lld\n", btf__pointer_size(copy),
	       btf__resolve_size(copy, btf__find_by_name_kind(copy, "task_struct", BTF_KIND_STRUCT)));
	btf__set_fd(copy, -1);
	printf("fd %d\n", btf__fd(copy));
	btf__free(copy);

	/* parse paths */
	btf = btf__parse_raw("/sys/kernel/btf/vmlinux");
	show_ptr("parse_raw(vmlinux)", btf);
	printf("  type_cnt %u\n", btf ? btf__type_cnt(btf) : 0);
	btf__free(btf);
	btf = btf__parse("/sys/kernel/btf/vmlinux", &ext);
	show_ptr("parse(vmlinux)", btf);
	printf("  ext %s\n", ext ? "set" : "NULL");
	btf__free(btf);

	ext = (void *)1;
	btf = btf__parse(argv[2], &ext);
	show_ptr("parse(bpf.o)", btf);
	if (btf) {
		printf("  type_cnt %u ptr %zu ext %s\n", btf__type_cnt(btf), btf__pointer_size(btf),
		       ext ? "set" : "NULL");
		for (id = 1; id < btf__type_cnt(btf); id++)
			show_type(btf, id);
		lookups(btf);
		if (ext) {
			raw = btf_ext__get_raw_data(ext, &size);
			printf("  ext raw %u bytes fnv=%016llx\n", size, fnv(raw, size));
		}
		show_raw("bpf.o", btf);
		btf_ext__free(ext);
		btf__free(btf);
	}
	btf = btf__parse_elf(argv[2], NULL);
	show_ptr("parse_elf(bpf.o, NULL)", btf);
	btf__free(btf);
	/* (btf__parse_elf_split of an object on vmlinux: EINVAL since 1.2 or
	 * so; btf_api17.c checks it.) */

	const char *bad[][2] = {
		{ "nonexistent", "/nonexistent/file.o" },
		/* (a file without .BTF: ENOENT in 1.1, ENODATA in 1.7: btf_api17.c) */
		{ "text file", argv[4] },
		{ "empty file", argv[5] },
		{ "directory", "/tmp" },
	};
	for (unsigned int i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ext = (void *)1;
		errno = 0;
		snprintf(what, sizeof(what), "parse(%s)", bad[i][0]);
		show_ptr(what, btf__parse(bad[i][1], &ext));
		printf("  ext %s\n", ext ? "set" : "NULL");
		errno = 0;
		snprintf(what, sizeof(what), "parse_elf(%s)", bad[i][0]);
		show_ptr(what, btf__parse_elf(bad[i][1], NULL));
		errno = 0;
		snprintf(what, sizeof(what), "parse_raw(%s)", bad[i][0]);
		show_ptr(what, btf__parse_raw(bad[i][1]));
		errno = 0;
		snprintf(what, sizeof(what), "parse_split(%s)", bad[i][0]);
		show_ptr(what, btf__parse_split(bad[i][1], vmlinux));
	}
	errno = 0;
	show_ptr("parse_raw(bpf.o)", btf__parse_raw(argv[2]));

	/* modules */
	errno = 0;
	show_ptr("load_module_btf(no_such_module)", btf__load_module_btf("no_such_module", vmlinux));
	errno = 0;
	show_ptr("load_module_btf(vmlinux)", (btf = btf__load_module_btf("vmlinux", vmlinux)));
	btf__free(btf);

	/* split BTF on vmlinux */
	split = btf__new_empty_split(vmlinux);
	show_ptr("new_empty_split", split);
	printf("split type_cnt %u base %s endianness %d pointer_size %zu\n", btf__type_cnt(split),
	       btf__base_btf(split) == vmlinux ? "vmlinux" : "other", btf__endianness(split),
	       btf__pointer_size(split));
	show_raw("empty split", split);
	show_int("split add_str(task_struct)", btf__add_str(split, "task_struct"));
	show_int("split add_str(my_own)", btf__add_str(split, "my_own"));
	show_int("split add_str(my_own) again", btf__add_str(split, "my_own"));
	show_int("split find_str(my_own)", btf__find_str(split, "my_own"));
	errno = 0;
	show_int("split find_str(missing)", btf__find_str(split, "missing!"));
	id = btf__find_by_name_kind(vmlinux, "task_struct", BTF_KIND_STRUCT);
	show_int("split add_ptr(task_struct)", btf__add_ptr(split, id));
	show_int("split add_typedef", btf__add_typedef(split, "task_ptr_t", btf__type_cnt(split) - 1));
	show_int("split add_struct", btf__add_struct(split, "split_s", 16));
	show_int("split add_field", btf__add_field(split, "task", btf__type_cnt(split) - 2, 0, 0));
	show_int("split add_field", btf__add_field(split, "pid", btf__find_by_name(vmlinux, "pid_t"), 64, 0));
	for (id = btf__type_cnt(vmlinux) - 1; id < btf__type_cnt(split) + 1; id++)
		show_type(split, id);
	show_int("split find_by_name(split_s)", btf__find_by_name(split, "split_s"));
	show_int("split find_by_name(task_struct)", btf__find_by_name(split, "task_struct"));
	printf("split name_by_offset(1) = '%s'\n", btf__name_by_offset(split, 1));
	show_raw("split", split);
	raw = btf__raw_data(split, &size);
	buf = malloc(size);
	memcpy(buf, raw, size);
	errno = 0;
	show_ptr("btf__new(split raw, no base)", btf__new(buf, size));
	free(buf);
	/* add_type / add_btf */
	btf = btf__new_empty();
	ret = btf__add_type(btf, vmlinux, btf__type_by_id(vmlinux,
			    btf__find_by_name_kind(vmlinux, "task_struct", BTF_KIND_STRUCT)));
	show_int("add_type(task_struct)", ret);
	show_copied_type(btf, ret);
	ret = btf__add_type(btf, vmlinux, btf__type_by_id(vmlinux,
			    btf__find_by_name_kind(vmlinux, "bpf_map_type", BTF_KIND_ENUM)));
	show_int("add_type(bpf_map_type)", ret);
	show_copied_type(btf, ret);
	show_int("add_btf(split)", btf__add_btf(btf, split));
	show_raw("add_type result", btf);
	/* (btf__add_btf of split BTF into split BTF: btf_api17.c) */
	btf__free(btf);
	btf__free(split);

	/* the kernel */
	btf = btf__load_from_kernel_by_id(1);
	if (btf) {
		printf("load_from_kernel_by_id(1): ok type_cnt %u same %d\n", btf__type_cnt(btf),
		       btf__type_cnt(btf) == btf__type_cnt(vmlinux));
		btf__free(btf);
	} else {
		printf("load_from_kernel_by_id(1): NULL errno=%d\n", errno);
	}
	errno = 0;
	show_ptr("load_from_kernel_by_id(0x7ffffff0)", btf__load_from_kernel_by_id(0x7ffffff0));
	errno = 0;
	show_ptr("load_from_kernel_by_id_split(0x7ffffff0)",
		 btf__load_from_kernel_by_id_split(0x7ffffff0, vmlinux));

	btf__free(NULL);
	btf__free(vmlinux);
	printf("api done\n");
	return 0;
}

/* Every btf__add_* (that 1.1.2 has), their errors, and the raw bytes. */
static int build(void)
{
	struct btf *btf = btf__new_empty();
	__u32 size, i;
	const unsigned char *raw;
	int s, e, p;

	show_ptr("new_empty", btf);
	printf("type_cnt %u ptr %zu endianness %d\n", btf__type_cnt(btf), btf__pointer_size(btf),
	       btf__endianness(btf));
	show_raw("empty", btf);
	show_int("add_str()", btf__add_str(btf, ""));
	show_int("add_str(alpha)", btf__add_str(btf, "alpha"));
	show_int("add_str(alpha) again", btf__add_str(btf, "alpha"));
	show_int("find_str(alpha)", btf__find_str(btf, "alpha"));
	show_int("find_str(lpha)", btf__find_str(btf, "lpha"));
	show_int("find_str()", btf__find_str(btf, ""));
	show_int("add_int(int)", btf__add_int(btf, "int", 4, BTF_INT_SIGNED));
	show_int("add_int(char)", btf__add_int(btf, "char", 1, BTF_INT_CHAR | BTF_INT_SIGNED));
	show_int("add_int(unsigned char)", btf__add_int(btf, "unsigned char", 1, 0));
	show_int("add_int(long)", btf__add_int(btf, "long", 8, BTF_INT_SIGNED));
	show_int("add_int(_Bool)", btf__add_int(btf, "_Bool", 1, BTF_INT_BOOL));
	show_int("add_int(__int128)", btf__add_int(btf, "__int128", 16, BTF_INT_SIGNED));
	show_int("add_int(short)", btf__add_int(btf, "short", 2, BTF_INT_SIGNED));
	show_int("add_int(unsigned short)", btf__add_int(btf, "unsigned short", 2, 0));
	show_int("add_int(unsigned int)", btf__add_int(btf, "unsigned int", 4, 0));
	show_int("add_int(unsigned long)", btf__add_int(btf, "unsigned long", 8, 0));
	errno = 0;
	show_int("add_int(bad size)", btf__add_int(btf, "x", 3, 0));
	errno = 0;
	show_int("add_int(no name)", btf__add_int(btf, "", 4, 0));
	errno = 0;
	show_int("add_int(NULL name)", btf__add_int(btf, NULL, 4, 0));
	errno = 0;
	show_int("add_int(bad encoding)", btf__add_int(btf, "x", 4, 8));
	show_int("add_float(float)", btf__add_float(btf, "float", 4));
	show_int("add_float(double)", btf__add_float(btf, "double", 8));
	show_int("add_float(long double)", btf__add_float(btf, "long double", 16));
	errno = 0;
	show_int("add_float(bad)", btf__add_float(btf, "f", 3));
	show_int("add_ptr(int)", btf__add_ptr(btf, 1));
	show_int("add_ptr(void)", btf__add_ptr(btf, 0));
	errno = 0;
	show_int("add_ptr(-1)", btf__add_ptr(btf, -1));
	show_int("add_ptr(forward)", btf__add_ptr(btf, 1000));
	show_int("add_const(int)", btf__add_const(btf, 1));
	show_int("add_volatile(int)", btf__add_volatile(btf, 1));
	show_int("add_restrict(ptr)", btf__add_restrict(btf, 14));
	show_int("add_type_tag(user)", btf__add_type_tag(btf, "user", 1));
	errno = 0;
	show_int("add_type_tag()", btf__add_type_tag(btf, "", 1));
	show_int("add_array(int[4])", btf__add_array(btf, 1, 1, 4));
	show_int("add_array(char[16])", btf__add_array(btf, 1, 2, 16));
	show_int("add_array(int[2][3])", btf__add_array(btf, 1, btf__add_array(btf, 1, 1, 3), 2));
	s = btf__add_struct(btf, "pair", 40);
	show_int("add_struct(pair)", s);
	show_int("add_field(a)", btf__add_field(btf, "a", 1, 0, 0));
	show_int("add_field(b:3)", btf__add_field(btf, "b", 1, 32, 3));
	show_int("add_field(c:5)", btf__add_field(btf, "c", 9, 35, 5));
	show_int("add_field(anon)", btf__add_field(btf, NULL, 4, 64, 0));
	show_int("add_field(name)", btf__add_field(btf, "name", 22, 128, 0));
	errno = 0;
	show_int("add_field(bad bitfield)", btf__add_field(btf, "x", 1, 3, 0));
	errno = 0;
	show_int("add_field(bit_size 256)", btf__add_field(btf, "x", 1, 8, 256));
	errno = 0;
	show_int("add_field(bad type)", btf__add_field(btf, "x", -5, 0, 0));
	show_int("add_union(u)", btf__add_union(btf, "u", 8));
	show_int("add_field(u.x)", btf__add_field(btf, "x", 4, 0, 0));
	errno = 0;
	show_int("add_field(u.y@8)", btf__add_field(btf, "y", 4, 8, 0));
	show_int("add_union(anon)", btf__add_union(btf, NULL, 4));
	e = btf__add_enum(btf, "color", 4);
	show_int("add_enum(color)", e);
	show_int("add_enum_value(RED)", btf__add_enum_value(btf, "RED", 0));
	show_int("add_enum_value(GREEN)", btf__add_enum_value(btf, "GREEN", 7));
	show_int("add_enum_value(BIG)", btf__add_enum_value(btf, "BIG", 0xffffffffLL));
	errno = 0;
	show_int("add_enum_value(too big)", btf__add_enum_value(btf, "HUGE", 0x100000000LL));
	errno = 0;
	show_int("add_enum_value(no name)", btf__add_enum_value(btf, "", 1));
	show_int("add_enum(signed)", btf__add_enum(btf, "sgn", 1));
	show_int("add_enum_value(NEG)", btf__add_enum_value(btf, "NEG", -3));
	errno = 0;
	show_int("add_enum(bad size)", btf__add_enum(btf, "bad", 3));
	show_int("add_enum64(e64)", btf__add_enum64(btf, "e64", 8, false));
	show_int("add_enum64_value(V1)", btf__add_enum64_value(btf, "V1", 0x123456789ULL));
	show_int("add_enum64_value(V2)", btf__add_enum64_value(btf, "V2", 1));
	errno = 0;
	show_int("add_enum_value on enum64", btf__add_enum_value(btf, "X", 1));
	show_int("add_enum64(s64)", btf__add_enum64(btf, "s64", 8, true));
	show_int("add_enum64_value(M)", btf__add_enum64_value(btf, "M", (__u64)-5));
	show_int("add_fwd(struct)", btf__add_fwd(btf, "fs", BTF_FWD_STRUCT));
	show_int("add_fwd(union)", btf__add_fwd(btf, "fu", BTF_FWD_UNION));
	show_int("add_fwd(enum)", btf__add_fwd(btf, "fe", BTF_FWD_ENUM));
	errno = 0;
	show_int("add_fwd(bad)", btf__add_fwd(btf, "fb", 7));
	errno = 0;
	show_int("add_fwd(no name)", btf__add_fwd(btf, "", BTF_FWD_STRUCT));
	show_int("add_typedef(myint)", btf__add_typedef(btf, "myint", 1));
	errno = 0;
	show_int("add_typedef(no name)", btf__add_typedef(btf, NULL, 1));
	p = btf__add_func_proto(btf, 1);
	show_int("add_func_proto", p);
	show_int("add_func_param(a)", btf__add_func_param(btf, "a", 1));
	show_int("add_func_param(anon)", btf__add_func_param(btf, NULL, 14));
	show_int("add_func_param(...)", btf__add_func_param(btf, NULL, 0));
	show_int("add_func(f)", btf__add_func(btf, "f", BTF_FUNC_GLOBAL, p));
	errno = 0;
	show_int("add_func(bad linkage)", btf__add_func(btf, "g", 5, p));
	errno = 0;
	show_int("add_func_param after func", btf__add_func_param(btf, "z", 1));
	show_int("add_var(v)", btf__add_var(btf, "v", BTF_VAR_GLOBAL_ALLOCATED, 1));
	errno = 0;
	show_int("add_var(bad linkage)", btf__add_var(btf, "w", 3, 1));
	show_int("add_datasec(.data)", btf__add_datasec(btf, ".data", 8));
	show_int("add_datasec_var_info", btf__add_datasec_var_info(btf, btf__type_cnt(btf) - 2, 0, 4));
	errno = 0;
	show_int("add_datasec(no name)", btf__add_datasec(btf, "", 8));
	show_int("add_decl_tag(t)", btf__add_decl_tag(btf, "tag", s, 1));
	errno = 0;
	show_int("add_decl_tag(bad idx)", btf__add_decl_tag(btf, "tag", s, -2));
	for (i = 0; i < btf__type_cnt(btf) + 1; i++)
		show_type(btf, i);
	lookups(btf);
	show_int("set_pointer_size(4)", btf__set_pointer_size(btf, 4));
	show_int("resolve_size(ptr)", btf__resolve_size(btf, 14));
	show_raw("built", btf);
	raw = btf__raw_data(btf, &size);
	for (i = 0; i < size; i++)
		printf("%02x%s", raw[i], i % 32 == 31 ? "\n" : "");
	printf("\n");
	btf__set_endianness(btf, BTF_BIG_ENDIAN);
	show_raw("built big-endian", btf);
	/* (Parsing it back fails since libbpf 1.2 or so, for the forward
	 * reference above: btf_api17.c.) */
	btf__free(btf);
	printf("build done\n");
	return 0;
}

/* Collects btf_dump output (a real va_list on both libraries). */
static char *out;
static size_t out_len, out_cap;

static void collect(void *ctx, const char *fmt, va_list args)
{
	va_list copy;
	int n;

	va_copy(copy, args);
	n = vsnprintf(NULL, 0, fmt, copy);
	va_end(copy);
	if (n < 0)
		return;
	if (out_len + n + 1 > out_cap) {
		out_cap = (out_len + n + 1) * 2;
		out = realloc(out, out_cap);
	}
	vsnprintf(out + out_len, n + 1, fmt, args);
	out_len += n;
	(*(int *)ctx)++;
}

static void flush_out(void)
{
	if (out_len)
		fwrite(out, 1, out_len, stdout);
	out_len = 0;
}

static void fill(unsigned char *buf, size_t n, int pattern)
{
	size_t i;

	for (i = 0; i < n; i++) {
		switch (pattern) {
		case 0: buf[i] = 0; break;
		case 1: buf[i] = (unsigned char)(i * 37 + 11); break;
		case 2: buf[i] = i % 7 == 3 ? (unsigned char)(i | 1) : 0; break;
		case 3: buf[i] = 0xff; break;
		case 4: buf[i] = i % 13 == 12 ? 0 : (unsigned char)('a' + i % 26); break;
		case 5: buf[i] = i % 29 == 0 ? 0x80 | (unsigned char)i : (i % 3 ? 0 : 1); break;
		}
	}
}

struct opts_case {
	const char *name;
	int compact, skip_names, emit_zeroes, indent_level;
	const char *indent_str;
};

static const struct opts_case all_opts[] = {
	{ "default" },
	{ "compact", 1 },
	{ "skip_names", 0, 1 },
	{ "emit_zeroes", 0, 0, 1 },
	{ "indent", 0, 0, 0, 2, "  " },
	{ "compact+skip+zeroes", 1, 1, 1, 3, ">" },
	{ "long indent", 0, 0, 0, 257, "0123456789012345678901234567890123456789" },
};

static void dump_data(struct btf_dump *d, const char *label, __u32 id, const void *data,
		      size_t size, const struct opts_case *oc)
{
	LIBBPF_OPTS(btf_dump_type_data_opts, opts);
	int calls = 0, ret;

	(void)calls;
	opts.compact = oc->compact;
	opts.skip_names = oc->skip_names;
	opts.emit_zeroes = oc->emit_zeroes;
	opts.indent_level = oc->indent_level;
	opts.indent_str = oc->indent_str;
	errno = 0;
	ret = btf_dump__dump_type_data(d, id, data, size, &opts);
	printf("== %s [%s] size=%zu: ret=%d errno=%d\n", label, oc->name, size, ret,
	       ret < 0 ? errno : 0);
	flush_out();
	printf("\n");
}

static void dump_cases(const struct btf *btf, struct btf_dump *d, const char *name, int kind,
		       int all)
{
	int id = kind >= 0 ? btf__find_by_name_kind(btf, name, kind) : btf__find_by_name(btf, name);
	long long size;
	unsigned char *buf;
	char label[128];
	unsigned int o, pat;

	if (id < 0) {
		printf("== %s: not found\n", name);
		return;
	}
	size = btf__resolve_size(btf, id);
	if (size <= 0) {
		printf("== %s: size %lld\n", name, size);
		return;
	}
	buf = aligned_alloc(64, ((size + 16) / 64 + 1) * 64);
	for (pat = 0; pat < 6; pat++) {
		fill(buf, size, pat);
		for (o = 0; o < sizeof(all_opts) / sizeof(all_opts[0]); o++) {
			if (!all && o != 0 && o != 3 && !(o == 1 && pat == 1))
				continue;
			snprintf(label, sizeof(label), "%s pattern %u", name, pat);
			dump_data(d, label, id, buf, size, &all_opts[o]);
		}
	}
	/* Truncated data. libbpf reads some bytes past data_sz (zero checks
	 * of members that start past the end); they are zero here, as our
	 * library reads them. */
	fill(buf, size, 1);
	memset(buf + size / 2, 0, size - size / 2);
	snprintf(label, sizeof(label), "%s truncated", name);
	dump_data(d, label, id, buf, size / 2, &all_opts[0]);
	if (size > 3)
		memset(buf + 3, 0, size - 3);
	dump_data(d, label, id, buf, size > 3 ? 3 : 0, &all_opts[1]);
	/* data one byte off alignment */
	fill(buf, size + 8, 1);
	memmove(buf + 1, buf, size);
	snprintf(label, sizeof(label), "%s misaligned", name);
	dump_data(d, label, id, buf + 1, size, &all_opts[0]);
	free(buf);
}

static struct btf *built_types(void)
{
	struct btf *btf = btf__new_empty();
	int i_int, i_char, i_uchar, i_long, i_bool, i_128, i_u128, i_short, i_ushort, i_uint;
	int f4, f8, f16, e, e64, s64, arr, carr, ptr, inner, s, u, td, cptr;

	i_int = btf__add_int(btf, "int", 4, BTF_INT_SIGNED);
	i_char = btf__add_int(btf, "char", 1, BTF_INT_SIGNED | BTF_INT_CHAR);
	i_uchar = btf__add_int(btf, "unsigned char", 1, 0);
	i_long = btf__add_int(btf, "long", 8, BTF_INT_SIGNED);
	i_bool = btf__add_int(btf, "_Bool", 1, BTF_INT_BOOL);
	i_128 = btf__add_int(btf, "__int128", 16, BTF_INT_SIGNED);
	i_u128 = btf__add_int(btf, "unsigned __int128", 16, 0);
	i_short = btf__add_int(btf, "short", 2, BTF_INT_SIGNED);
	i_ushort = btf__add_int(btf, "unsigned short", 2, 0);
	i_uint = btf__add_int(btf, "unsigned int", 4, 0);
	f4 = btf__add_float(btf, "float", 4);
	f8 = btf__add_float(btf, "double", 8);
	f16 = btf__add_float(btf, "long double", 16);
	e = btf__add_enum(btf, "color", 4);
	btf__add_enum_value(btf, "RED", 0);
	btf__add_enum_value(btf, "GREEN", 0x0b251a2f);
	btf__add_enum_value(btf, "BLUE", -1);
	e64 = btf__add_enum64(btf, "e64", 8, false);
	btf__add_enum64_value(btf, "E64_A", 0x6f462d1b0c7b5a11ULL);
	btf__add_enum64_value(btf, "E64_B", 1);
	s64 = btf__add_enum64(btf, "s64", 8, true);
	btf__add_enum64_value(btf, "S64_NEG", (__u64)-1);
	arr = btf__add_array(btf, i_int, i_int, 3);
	carr = btf__add_array(btf, i_int, i_char, 7);
	ptr = btf__add_ptr(btf, i_int);
	cptr = btf__add_const(btf, ptr);
	td = btf__add_typedef(btf, "color_t", e);
	inner = btf__add_struct(btf, "inner", 8);
	btf__add_field(btf, "x", i_short, 0, 0);
	btf__add_field(btf, "y", i_ushort, 16, 0);
	btf__add_field(btf, "z", i_uint, 32, 0);
	s = btf__add_struct(btf, "mix", 176);
	btf__add_field(btf, "a", i_int, 0, 0);
	btf__add_field(btf, "c", carr, 32, 0);
	btf__add_field(btf, "b", i_bool, 88, 0);
	btf__add_field(btf, "f", f4, 96, 0);
	btf__add_field(btf, "d", f8, 128, 0);
	btf__add_field(btf, "ld", f16, 192, 0);
	btf__add_field(btf, "big", i_128, 320, 0);
	btf__add_field(btf, "ubig", i_u128, 448, 0);
	btf__add_field(btf, "col", td, 576, 0);
	btf__add_field(btf, "e64", e64, 640, 0);
	btf__add_field(btf, "s64", s64, 704, 0);
	btf__add_field(btf, "arr", arr, 768, 0);
	btf__add_field(btf, "p", cptr, 896, 0);
	btf__add_field(btf, "in", inner, 960, 0);
	btf__add_field(btf, "bf_col", e, 1024, 3);
	btf__add_field(btf, "bf_long", i_long, 1027, 41);
	btf__add_field(btf, "bf_u", i_uint, 1068, 7);
	btf__add_field(btf, "uc", i_uchar, 1080, 0);
	btf__add_field(btf, "l", i_long, 1088, 0);
	btf__add_field(btf, "last", i_int, 1344, 0);
	u = btf__add_union(btf, "un", 16);
	btf__add_field(btf, "in", inner, 0, 0);
	btf__add_field(btf, "l", i_long, 0, 0);
	btf__add_field(btf, NULL, s64, 0, 0);
	btf__add_struct(btf, "packed", 7);
	btf__add_field(btf, "c", i_char, 0, 0);
	btf__add_field(btf, "i", i_int, 8, 0);
	btf__add_field(btf, "s", i_short, 40, 0);
	btf__add_struct(btf, "empty", 0);
	btf__add_var(btf, "gvar", BTF_VAR_GLOBAL_ALLOCATED, s);
	btf__add_var(btf, "svar", BTF_VAR_STATIC, u);
	btf__add_datasec(btf, ".data", 200);
	btf__add_datasec_var_info(btf, btf__type_cnt(btf) - 3, 0, 176);
	btf__add_datasec_var_info(btf, btf__type_cnt(btf) - 2, 176, 16);
	(void)i_char;
	return btf;
}

static int data(void)
{
	static const char *structs[] = {
		"task_struct", "sk_buff", "file", "inode", "page", "iphdr", "tcphdr", "ethhdr",
		"in6_addr", "sockaddr_in", "qstr", "timespec64", "list_head", "pt_regs",
		"bpf_prog_aux", "cred", "mm_struct",
	};
	static const char *built[] = { "mix", "un", "packed", "empty", "inner", "color", "e64",
				       "s64", "gvar", "svar", ".data", "long double", "__int128",
				       "color_t", };
	struct btf *vmlinux = btf__load_vmlinux_btf();
	struct btf *btf = built_types();
	struct btf_dump *d, *bd;
	unsigned char zero[64] = {};
	unsigned int i;
	int calls = 0;
	struct { size_t sz; } small = { 4 };
	int ret;

	d = btf_dump__new(vmlinux, collect, &calls, NULL);
	show_ptr("btf_dump__new", d);
	for (i = 0; i < sizeof(structs) / sizeof(structs[0]); i++)
		dump_cases(vmlinux, d, structs[i], BTF_KIND_STRUCT, i >= 5);
	dump_cases(vmlinux, d, "bpf_attr", BTF_KIND_UNION, 1);
	dump_cases(vmlinux, d, "bpf_map_type", BTF_KIND_ENUM, 1);
	dump_cases(vmlinux, d, "perf_callchain_context", BTF_KIND_ENUM64, 1);
	dump_cases(vmlinux, d, "pid_t", BTF_KIND_TYPEDEF, 1);
	dump_cases(vmlinux, d, "__int128", BTF_KIND_INT, 1);
	dump_cases(vmlinux, d, "double", BTF_KIND_FLOAT, 1);
	dump_cases(vmlinux, d, "runqueues", BTF_KIND_VAR, 0);
	dump_cases(vmlinux, d, ".data..percpu", BTF_KIND_DATASEC, 0);
	/* errors */
	errno = 0;
	ret = btf_dump__dump_type_data(d, btf__type_cnt(vmlinux), zero, sizeof(zero), NULL);
	printf("bad id: %d errno=%d\n", ret, errno);
	errno = 0;
	ret = btf_dump__dump_type_data(d, 1, zero, sizeof(zero), (void *)&small);
	printf("opts sz=4: %d errno=%d\n", ret, errno);
	errno = 0;
	ret = btf_dump__dump_type_data(d, btf__find_by_name(vmlinux, "vfs_read"), zero,
				       sizeof(zero), NULL);
	printf("func: %d errno=%d\n", ret, errno);
	flush_out();
	printf("\n");
	btf_dump__free(d);

	bd = btf_dump__new(btf, collect, &calls, NULL);
	for (i = 0; i < sizeof(built) / sizeof(built[0]); i++)
		dump_cases(btf, bd, built[i], -1, 1);
	btf_dump__free(bd);
	errno = 0;
	show_ptr("btf_dump__new(no printf)", btf_dump__new(btf, NULL, NULL, NULL));
	errno = 0;
	show_ptr("btf_dump__new(opts sz=4)", btf_dump__new(btf, collect, &calls, (void *)&small));
	btf_dump__free(NULL);
	btf__free(btf);
	btf__free(vmlinux);
	printf("data done\n");
	return 0;
}

static void decl(struct btf_dump *d, __u32 id, const char *fname, int lvl, int strip)
{
	LIBBPF_OPTS(btf_dump_emit_type_decl_opts, opts);
	int ret;

	opts.field_name = fname;
	opts.indent_level = lvl;
	opts.strip_mods = strip;
	ret = btf_dump__emit_type_decl(d, id, &opts);
	printf("decl %u '%s' lvl=%d strip=%d: ret=%d <", id, fname, lvl, strip, ret);
	flush_out();
	printf(">\n");
}

static int decls(void)
{
	static const char *types[] = {
		"task_struct", "sk_buff", "bpf_attr", "file_operations", "pt_regs", "page",
		"bpf_map_type", "pid_t", "atomic_t", "list_head",
	};
	struct btf *vmlinux = btf__load_vmlinux_btf();
	struct btf *btf = built_types();
	struct btf_dump *d;
	int calls = 0, ret;
	__u32 i, n;

	d = btf_dump__new(vmlinux, collect, &calls, NULL);
	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		int id = btf__find_by_name(vmlinux, types[i]);

		ret = btf_dump__dump_type(d, id);
		printf("== dump_type %s (%d): ret=%d\n", types[i], id, ret);
		flush_out();
		ret = btf_dump__dump_type(d, id);
		printf("== again: ret=%d\n", ret);
		flush_out();
	}
	errno = 0;
	ret = btf_dump__dump_type(d, btf__type_cnt(vmlinux));
	printf("dump_type(bad id) = %d errno=%d\n", ret, errno);
	n = btf__type_cnt(vmlinux);
	for (i = 1; i < n; i += 211) {
		decl(d, i, "", 0, 0);
		decl(d, i, "fld", 1, 1);
	}
	btf_dump__free(d);

	d = btf_dump__new(btf, collect, &calls, NULL);
	for (i = 1; i < btf__type_cnt(btf); i++) {
		ret = btf_dump__dump_type(d, i);
		printf("== built dump_type %u: ret=%d\n", i, ret);
		flush_out();
		decl(d, i, "x", 2, 0);
		decl(d, i, "", 0, 1);
	}
	btf_dump__free(d);
	btf__free(btf);
	btf__free(vmlinux);
	printf("decl done\n");
	return 0;
}

static int dumpall(void)
{
	struct btf *vmlinux = btf__load_vmlinux_btf();
	struct btf_dump *d;
	int calls = 0, ret;
	__u32 i, n = btf__type_cnt(vmlinux);

	d = btf_dump__new(vmlinux, collect, &calls, NULL);
	for (i = 1; i < n; i++) {
		ret = btf_dump__dump_type(d, i);
		if (ret)
			printf("dump_type %u: %d\n", i, ret);
		if (out_len > (1 << 20))
			flush_out();
	}
	flush_out();
	btf_dump__free(d);
	btf__free(vmlinux);
	printf("dumpall done\n");
	return 0;
}

int main(int argc, char **argv)
{
	libbpf_set_print(quiet);
	setvbuf(stdout, NULL, _IOFBF, 1 << 16);
	if (argc > 5 && strcmp(argv[1], "api") == 0)
		return api(argv);
	if (argc > 1 && strcmp(argv[1], "build") == 0)
		return build();
	if (argc > 1 && strcmp(argv[1], "data") == 0)
		return data();
	if (argc > 1 && strcmp(argv[1], "decl") == 0)
		return decls();
	if (argc > 1 && strcmp(argv[1], "dumpall") == 0)
		return dumpall();
	fprintf(stderr, "usage: %s api|build|data|decl|dumpall\n", argv[0]);
	return 2;
}
