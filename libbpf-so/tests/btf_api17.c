/*
 * The parts of the BTF API whose behaviour changed after libbpf 1.1, or
 * that 1.1 does not have (btf__new_split, btf_ext__raw_data and
 * __endianness, btf__add_type_attr / __add_decl_attr, the emit_strings
 * option of btf_dump__dump_type_data). Built against libbpf 1.7's own
 * headers; tests/btf_api.rs compares its output on our libbpf.so.1 with
 * its output on libbpf 1.7.
 *
 *   btf_api17 <bpf.o> <nobtf.o>
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

	printf("%s raw: %u bytes fnv=%016llx\n", what, size, raw ? fnv(raw, size) : 0);
}

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
}

static void flush_out(void)
{
	if (out_len)
		fwrite(out, 1, out_len, stdout);
	out_len = 0;
	printf("\n");
}

static void strings(struct btf_dump *d, const struct btf *btf, const char *name, int kind)
{
	static const char *texts[] = { "bash", "", "tab\there\x7f\x80", "0123456789abcdef" };
	LIBBPF_OPTS(btf_dump_type_data_opts, opts, .emit_strings = true);
	int id = btf__find_by_name_kind(btf, name, kind);
	long long size = btf__resolve_size(btf, id);
	unsigned char *buf;
	unsigned int i, c;
	int ret;

	if (id < 0 || size <= 0) {
		printf("== %s: not found\n", name);
		return;
	}
	buf = calloc(1, size + 64);
	for (i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		for (c = 0; c < 2; c++) {
			memset(buf, 0, size);
			/* every 16-byte slot holds the text (unterminated if 16) */
			for (long long o = 0; o + 16 <= size; o += 16)
				memcpy(buf + o, texts[i], strlen(texts[i]));
			opts.compact = c;
			ret = btf_dump__dump_type_data(d, id, buf, size, &opts);
			printf("== %s emit_strings text %u compact %u: ret=%d\n", name, i, c, ret);
			flush_out();
		}
	}
	/* truncated in the middle of a string (zeros past the end: libbpf
	 * reads some of them) */
	memset(buf, 0, size);
	memset(buf, 'x', size > 5 ? 5 : size);
	opts.compact = false;
	ret = btf_dump__dump_type_data(d, id, buf, size > 5 ? 5 : size, &opts);
	printf("== %s emit_strings truncated: ret=%d\n", name, ret);
	flush_out();
	free(buf);
}

int main(int argc, char **argv)
{
	static const char *names[] = { "task_struct", "int", "pid_t", "void", "nope", "" };
	LIBBPF_OPTS(btf_dump_emit_type_decl_opts, decl_opts);
	struct btf *vmlinux, *split, *btf, *copy;
	struct btf_ext *ext = NULL;
	struct btf_dump *d;
	const void *raw;
	__u32 size, i;
	void *buf;
	int id, s;

	if (argc < 3)
		return 2;
	libbpf_set_print(quiet);
	vmlinux = btf__load_vmlinux_btf();
	show_ptr("load_vmlinux_btf", vmlinux);
	if (!vmlinux)
		return 1;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		errno = 0;
		printf("find_by_name_kind(%s, -1) = %d errno=%d\n", names[i],
		       btf__find_by_name_kind(vmlinux, names[i], -1), errno);
	}

	/* files */
	errno = 0;
	show_ptr("parse(no .BTF)", btf__parse(argv[2], NULL));
	errno = 0;
	show_ptr("parse_elf(no .BTF)", btf__parse_elf(argv[2], NULL));
	errno = 0;
	show_ptr("parse_split(no .BTF)", btf__parse_split(argv[2], vmlinux));
	errno = 0;
	show_ptr("parse_elf_split(bpf.o, vmlinux)", btf__parse_elf_split(argv[1], vmlinux));
	btf = btf__parse(argv[1], &ext);
	show_ptr("parse(bpf.o, &ext)", btf);
	show_ptr("ext", ext);
	if (ext) {
		raw = btf_ext__raw_data(ext, &size);
		printf("ext raw %u fnv=%016llx endianness %d\n", size, fnv(raw, size),
		       btf_ext__endianness(ext));
		show_int("ext set_endianness(BIG)", btf_ext__set_endianness(ext, BTF_BIG_ENDIAN));
		raw = btf_ext__raw_data(ext, &size);
		printf("ext raw big %u fnv=%016llx endianness %d\n", size, fnv(raw, size),
		       btf_ext__endianness(ext));
		errno = 0;
		show_int("ext set_endianness(7)", btf_ext__set_endianness(ext, 7));
		buf = malloc(size);
		memcpy(buf, raw, size);
		btf_ext__free(ext);
		ext = btf_ext__new(buf, size);
		show_ptr("btf_ext__new(big-endian)", ext);
		if (ext) {
			printf("endianness %d\n", btf_ext__endianness(ext));
			raw = btf_ext__get_raw_data(ext, &size);
			printf("ext raw again %u fnv=%016llx\n", size, fnv(raw, size));
		}
		btf_ext__free(ext);
		errno = 0;
		show_ptr("btf_ext__new(truncated)", btf_ext__new(buf, 10));
		free(buf);
	}
	btf__free(btf);

	/* split: add_btf and new_split */
	split = btf__new_empty_split(vmlinux);
	id = btf__find_by_name_kind(vmlinux, "task_struct", BTF_KIND_STRUCT);
	btf__add_ptr(split, id);
	btf__add_typedef(split, "task_ptr_t", btf__type_cnt(split) - 1);
	copy = btf__new_empty_split(vmlinux);
	show_int("add_btf(split) into split", btf__add_btf(copy, split));
	show_raw("add_btf split result", copy);
	btf__free(copy);
	raw = btf__raw_data(split, &size);
	buf = malloc(size);
	memcpy(buf, raw, size);
	copy = btf__new_split(buf, size, vmlinux);
	show_ptr("new_split", copy);
	if (copy) {
		printf("type_cnt %u base %s find %d\n", btf__type_cnt(copy),
		       btf__base_btf(copy) == vmlinux ? "vmlinux" : "other",
		       btf__find_by_name(copy, "task_ptr_t"));
		show_raw("new_split", copy);
		btf__free(copy);
	}
	errno = 0;
	show_ptr("new_split(NULL base)", btf__new_split(buf, size, NULL));
	free(buf);
	btf__free(split);

	/* attributes, and big-endian round trips */
	btf = btf__new_empty();
	btf__add_int(btf, "int", 4, BTF_INT_SIGNED);
	show_int("add_type_attr", btf__add_type_attr(btf, "aligned(8)", 1));
	show_int("add_type_tag", btf__add_type_tag(btf, "user", 2));
	show_int("add_ptr", btf__add_ptr(btf, 3));
	s = btf__add_struct(btf, "s", 8);
	btf__add_field(btf, "p", 4, 0, 0);
	show_int("add_decl_attr", btf__add_decl_attr(btf, "packed", s, -1));
	show_int("add_decl_attr(member)", btf__add_decl_attr(btf, "noderef", s, 0));
	errno = 0;
	show_int("add_decl_attr(bad)", btf__add_decl_attr(btf, "", s, 0));
	errno = 0;
	show_int("add_type_attr(empty)", btf__add_type_attr(btf, "", 1));
	show_raw("attrs", btf);
	d = btf_dump__new(btf, collect, NULL, NULL);
	for (i = 1; i < btf__type_cnt(btf); i++) {
		printf("== dump_type %u: %d\n", i, btf_dump__dump_type(d, i));
		flush_out();
		decl_opts.field_name = "f";
		printf("== decl %u: %d\n", i, btf_dump__emit_type_decl(d, i, &decl_opts));
		flush_out();
	}
	btf_dump__free(d);
	btf__set_endianness(btf, BTF_BIG_ENDIAN);
	raw = btf__raw_data(btf, &size);
	copy = btf__new(raw, size);
	show_ptr("reparse big-endian", copy);
	if (copy) {
		printf("endianness %d type_cnt %u\n", btf__endianness(copy), btf__type_cnt(copy));
		show_int("reparse add_int", btf__add_int(copy, "added", 4, 0));
		show_raw("reparse + int", copy);
		btf__set_endianness(copy, BTF_LITTLE_ENDIAN);
		show_raw("reparse + int, little", copy);
		btf__free(copy);
	}
	btf__add_ptr(btf, 1000);
	raw = btf__raw_data(btf, &size);
	errno = 0;
	show_ptr("reparse with a dangling reference", btf__new(raw, size));
	btf__free(btf);

	/* emit_strings */
	d = btf_dump__new(vmlinux, collect, NULL, NULL);
	strings(d, vmlinux, "task_struct", BTF_KIND_STRUCT);
	strings(d, vmlinux, "qstr", BTF_KIND_STRUCT);
	strings(d, vmlinux, "ethhdr", BTF_KIND_STRUCT);
	strings(d, vmlinux, "sockaddr_un", BTF_KIND_STRUCT);
	strings(d, vmlinux, "new_utsname", BTF_KIND_STRUCT);
	btf_dump__free(d);
	btf__free(vmlinux);
	printf("done\n");
	return 0;
}
