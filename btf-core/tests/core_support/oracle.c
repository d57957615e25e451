/*
 * CO-RE oracle: applies CO-RE relocations with the system libbpf's own
 * relocation code (libbpf.a exports bpf_core_add_cands,
 * bpf_core_calc_relo_insn and bpf_core_patch_insn), following the steps of
 * libbpf's bpf_object__relocate_core / bpf_core_resolve_relo: a candidate
 * cache per local type id, vmlinux searched first, module BTFs only when
 * vmlinux has no candidate. Needs no kernel and no privileges.
 *
 * Input (argv[1]), one directive a line:
 *   local <raw .BTF path>
 *   target <name> <raw BTF path>    first: main target; others split on it
 *   insns <section> <raw instructions path>
 *   relo <section> <insn index> <type id> <access str off> <kind> <relo idx>
 * Output: "log <D|I|W> <text>" for every libbpf message, "result <relo idx>
 * ok" or "result <relo idx> err <errno>" per relocation (stopping at the
 * first error, as libbpf does), then "insns <section> <hex>" per section.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

/* Layouts of libbpf 1.1's internal relo_core.h types. */
struct bpf_core_cand {
	const struct btf *btf;
	__u32 id;
};

struct bpf_core_cand_list {
	struct bpf_core_cand *cands;
	int len;
};

#define SPEC_MAX_LEN 64

struct bpf_core_accessor {
	__u32 type_id;
	__u32 idx;
	const char *name;
};

struct bpf_core_spec {
	const struct btf *btf;
	struct bpf_core_accessor spec[SPEC_MAX_LEN];
	__u32 root_type_id;
	enum bpf_core_relo_kind relo_kind;
	int len;
	int raw_spec[SPEC_MAX_LEN];
	int raw_len;
	__u32 bit_offset;
};

struct bpf_core_relo_res {
	__u64 orig_val;
	__u64 new_val;
	bool poison;
	bool validate;
	bool fail_memsz_adjust;
	__u32 orig_sz;
	__u32 orig_type_id;
	__u32 new_sz;
	__u32 new_type_id;
};

size_t bpf_core_essential_name_len(const char *name);
int bpf_core_add_cands(struct bpf_core_cand *local_cand, size_t local_essent_len,
		       const struct btf *targ_btf, const char *targ_btf_name,
		       int targ_start_id, struct bpf_core_cand_list *cands);
int bpf_core_calc_relo_insn(const char *prog_name, const struct bpf_core_relo *relo,
			    int relo_idx, const struct btf *local_btf,
			    struct bpf_core_cand_list *cands,
			    struct bpf_core_spec *specs_scratch,
			    struct bpf_core_relo_res *targ_res);
int bpf_core_patch_insn(const char *prog_name, struct bpf_insn *insn, int insn_idx,
			const struct bpf_core_relo *relo, int relo_idx,
			const struct bpf_core_relo_res *res);

#define MAX_TARGETS 16
#define MAX_SECTIONS 64

static struct btf *targets[MAX_TARGETS];
static char target_names[MAX_TARGETS][256];
static int target_cnt;

static struct section {
	char name[256];
	struct bpf_insn *insns;
	size_t cnt;
} sections[MAX_SECTIONS];
static int section_cnt;

static int print_all(enum libbpf_print_level level, const char *fmt, va_list args)
{
	char buf[4096];
	size_t len;
	const char *text = buf;

	vsnprintf(buf, sizeof(buf), fmt, args);
	len = strlen(buf);
	while (len && buf[len - 1] == '\n')
		buf[--len] = 0;
	if (strncmp(text, "libbpf: ", 8) == 0)
		text += 8;
	printf("log %c %s\n", level == LIBBPF_WARN ? 'W' : level == LIBBPF_INFO ? 'I' : 'D', text);
	return 0;
}

static void *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	void *data;
	long n;

	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	data = malloc(n ? n : 1);
	if (fread(data, 1, n, f) != (size_t)n) {
		fclose(f);
		free(data);
		return NULL;
	}
	fclose(f);
	*len = n;
	return data;
}

static struct section *find_section(const char *name)
{
	for (int i = 0; i < section_cnt; i++)
		if (strcmp(sections[i].name, name) == 0)
			return &sections[i];
	return NULL;
}

/* bpf_core_find_cands, over the targets given. */
static struct bpf_core_cand_list *find_cands(const struct btf *local_btf, __u32 local_id, int *err)
{
	struct bpf_core_cand local_cand = { .btf = local_btf, .id = local_id };
	const struct btf_type *t = btf__type_by_id(local_btf, local_id);
	struct bpf_core_cand_list *cands;
	const char *name;
	size_t essent_len;

	*err = -EINVAL;
	if (!t)
		return NULL;
	name = btf__name_by_offset(local_btf, t->name_off);
	if (!name || !name[0])
		return NULL;
	essent_len = bpf_core_essential_name_len(name);
	cands = calloc(1, sizeof(*cands));
	*err = bpf_core_add_cands(&local_cand, essent_len, targets[0], target_names[0], 1, cands);
	if (*err || cands->len)
		return *err ? NULL : cands;
	for (int i = 1; i < target_cnt; i++) {
		*err = bpf_core_add_cands(&local_cand, essent_len, targets[i], target_names[i],
					  btf__type_cnt(targets[0]), cands);
		if (*err)
			return NULL;
	}
	return cands;
}

int main(int argc, char **argv)
{
	struct bpf_core_cand_list **cache = NULL;
	struct btf *local = NULL;
	char line[4096];
	bool failed = false;
	FILE *script;

	if (argc != 2 || !(script = fopen(argv[1], "r")))
		return 2;
	libbpf_set_print(print_all);

	while (fgets(line, sizeof(line), script)) {
		char a[256], b[256];
		unsigned int insn_idx, type_id, access_off, kind;
		int relo_idx;

		if (sscanf(line, "local %255s", a) == 1) {
			local = btf__parse_raw(a);
			if (!local) {
				printf("fatal local %d\n", errno);
				return 1;
			}
			cache = calloc(btf__type_cnt(local), sizeof(*cache));
		} else if (sscanf(line, "target %255s %255s", a, b) == 2) {
			targets[target_cnt] = target_cnt ? btf__parse_raw_split(b, targets[0])
							 : btf__parse_raw(b);
			if (!targets[target_cnt]) {
				printf("fatal target %d\n", errno);
				return 1;
			}
			snprintf(target_names[target_cnt], sizeof(target_names[0]), "%s", a);
			target_cnt++;
		} else if (sscanf(line, "insns %255s %255s", a, b) == 2) {
			struct section *sec = &sections[section_cnt++];
			size_t len = 0;

			snprintf(sec->name, sizeof(sec->name), "%s", a);
			sec->insns = read_file(b, &len);
			sec->cnt = len / sizeof(struct bpf_insn);
		} else if (sscanf(line, "relo %255s %u %u %u %u %d", a, &insn_idx, &type_id,
				  &access_off, &kind, &relo_idx) == 6) {
			struct bpf_core_relo relo = {
				.insn_off = insn_idx * 8,
				.type_id = type_id,
				.access_str_off = access_off,
				.kind = kind,
			};
			struct bpf_core_spec specs[3] = {};
			struct bpf_core_relo_res res = {};
			struct section *sec = find_section(a);
			const struct btf_type *t;
			int err = 0;

			if (failed)
				continue;
			if (!sec || insn_idx >= sec->cnt) {
				err = -EINVAL;
				goto done;
			}
			/* bpf_core_resolve_relo */
			t = btf__type_by_id(local, type_id);
			if (!t || !btf__name_by_offset(local, t->name_off)) {
				err = -EINVAL;
				goto done;
			}
			if (kind != BPF_CORE_TYPE_ID_LOCAL && !cache[type_id]) {
				cache[type_id] = find_cands(local, type_id, &err);
				if (!cache[type_id])
					goto done;
			}
			err = bpf_core_calc_relo_insn(a, &relo, relo_idx, local, cache[type_id],
						      specs, &res);
			if (err)
				goto done;
			err = bpf_core_patch_insn(a, &sec->insns[insn_idx], insn_idx, &relo,
						  relo_idx, &res);
done:
			if (err) {
				printf("result %d err %d\n", relo_idx, -err);
				failed = true;
			} else {
				printf("result %d ok\n", relo_idx);
			}
		}
	}
	for (int i = 0; i < section_cnt; i++) {
		printf("insns %s ", sections[i].name);
		for (size_t j = 0; j < sections[i].cnt * 8; j++)
			printf("%02x", ((unsigned char *)sections[i].insns)[j]);
		printf("\n");
	}
	return 0;
}
