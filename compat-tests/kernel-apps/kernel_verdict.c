// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * kernel_verdict: per program, what bpf_object__load says when that
 * program alone is loaded into the running kernel, through whatever
 * libbpf.so.1 the dynamic loader gives this binary (ours with
 * LD_LIBRARY_PATH=<repo>/target/release and USERBPF_BACKEND=kernel).
 *
 *   kernel_verdict [--verdicts] NAME=OBJECT.o ...
 *   kernel_verdict --kprobe-attach PROG:FUNC NAME=OBJECT.o ...
 *
 * It does exactly what `libbpf-oracle --verdicts` / `--kprobe-attach` do
 * with the real libbpf 1.7 and prints the same report; the format and the
 * map-size rule are documented in compat-tests/src/verdict.rs.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/libbpf.h>

#define STACK_TRACE_VALUE_SIZE (127 * 8)

static char first_warn[2048];
static bool have_warn;

static void clean(char *s)
{
	size_t n;

	for (char *p = s; *p; p++)
		if (*p == '\t' || *p == '\n' || *p == '\r')
			*p = ' ';
	n = strlen(s);
	while (n && s[n - 1] == ' ')
		s[--n] = '\0';
}

static int print_fn(enum libbpf_print_level level, const char *fmt, va_list args)
{
	if (getenv("KERNEL_VERDICT_LOG")) {
		va_list copy;

		va_copy(copy, args);
		vfprintf(stderr, fmt, copy);
		va_end(copy);
	}
	if (level != LIBBPF_WARN || have_warn)
		return 0;
	vsnprintf(first_warn, sizeof(first_warn), fmt, args);
	clean(first_warn);
	have_warn = true;
	return 0;
}

static void reset_warn(void)
{
	have_warn = false;
	first_warn[0] = '\0';
}

static const char *take_warn(void)
{
	static char out[sizeof(first_warn)];

	memcpy(out, first_warn, sizeof(out));
	reset_warn();
	return out;
}

static void *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t cap = 0, n = 0, got;

	if (!f)
		return NULL;
	do {
		if (n == cap) {
			cap = cap ? cap * 2 : 65536;
			buf = realloc(buf, cap);
			if (!buf) {
				fclose(f);
				return NULL;
			}
		}
		got = fread(buf + n, 1, cap - n, f);
		n += got;
	} while (got);
	fclose(f);
	*len = n;
	return buf;
}

/* The map-size rule of verdict.rs; prints a resize line per change when
 * `print` is set. */
static void resize_maps(struct bpf_object *obj, bool print)
{
	long page = sysconf(_SC_PAGESIZE);
	struct bpf_map *map;
	int err;

	if (page < 4096)
		page = 4096;
	bpf_object__for_each_map(map, obj) {
		enum bpf_map_type type = bpf_map__type(map);

		if (type == BPF_MAP_TYPE_STACK_TRACE &&
		    (bpf_map__value_size(map) == 0 || bpf_map__value_size(map) % 8)) {
			__u32 from = bpf_map__value_size(map);

			err = bpf_map__set_value_size(map, STACK_TRACE_VALUE_SIZE);
			if (print && err)
				printf("resize\t%s\tset_value_size: %d\n", bpf_map__name(map), err);
			else if (print)
				printf("resize\t%s\tvalue_size %u -> %u\n", bpf_map__name(map), from,
				       STACK_TRACE_VALUE_SIZE);
		}
		if (bpf_map__max_entries(map) == 0 && type != BPF_MAP_TYPE_PERF_EVENT_ARRAY) {
			__u32 n = type == BPF_MAP_TYPE_RINGBUF ? (__u32)page : 1;

			err = bpf_map__set_max_entries(map, n);
			if (print && err)
				printf("resize\t%s\tset_max_entries: %d\n", bpf_map__name(map), err);
			else if (print)
				printf("resize\t%s\tmax_entries 0 -> %u\n", bpf_map__name(map), n);
		}
	}
}

/* Opens the object with only `only` autoloaded (NULL: all untouched). */
static struct bpf_object *open_obj(const char *name, const void *buf, size_t len,
				   const char *only, bool print_resize, int *err)
{
	LIBBPF_OPTS(bpf_object_open_opts, opts, .object_name = name);
	struct bpf_object *obj;
	struct bpf_program *prog;

	reset_warn();
	obj = bpf_object__open_mem(buf, len, &opts);
	if (!obj) {
		*err = -errno;
		return NULL;
	}
	if (only)
		bpf_object__for_each_program(prog, obj)
			bpf_program__set_autoload(prog, strcmp(bpf_program__name(prog), only) == 0);
	resize_maps(obj, print_resize);
	return obj;
}

static void verdicts(const char *name, const void *buf, size_t len)
{
	struct bpf_program *prog;
	struct bpf_object *obj;
	char **names = NULL;
	size_t count = 0;
	int err;

	printf("object\t%s\n", name);
	obj = open_obj(name, buf, len, NULL, true, &err);
	if (!obj) {
		printf("open-failed\t%d\t%s\nend\n", err, take_warn());
		return;
	}
	bpf_object__for_each_program(prog, obj) {
		names = realloc(names, (count + 1) * sizeof(*names));
		names[count++] = strdup(bpf_program__name(prog));
	}
	bpf_object__close(obj);

	for (size_t i = 0; i < count; i++) {
		int rc;

		obj = open_obj(name, buf, len, names[i], false, &err);
		if (!obj) {
			rc = err;
		} else {
			reset_warn();
			rc = bpf_object__load(obj);
		}
		printf("verdict\t%s\t%d\t%s\n", names[i], rc < 0 ? rc : 0, take_warn());
		bpf_object__close(obj);
		fflush(stdout);
		free(names[i]);
	}
	free(names);
	printf("end\n");
}

static void kprobe_attach(const char *name, const void *buf, size_t len, const char *prog_name,
			  const char *func)
{
	struct bpf_program *prog;
	struct bpf_object *obj;
	struct bpf_link *link;
	int err, load_rc, rc = 0;
	const char *warn;

	printf("object\t%s\n", name);
	obj = open_obj(name, buf, len, prog_name, true, &err);
	if (!obj) {
		printf("open-failed\t%d\t%s\nend\n", err, take_warn());
		return;
	}
	reset_warn();
	load_rc = bpf_object__load(obj);
	if (load_rc < 0) {
		warn = take_warn();
	} else {
		load_rc = 0;
		prog = bpf_object__find_program_by_name(obj, prog_name);
		reset_warn();
		if (!prog) {
			load_rc = -ENOENT;
		} else {
			link = bpf_program__attach_kprobe(prog, false, func);
			if (!link)
				rc = -errno;
			else
				bpf_link__destroy(link);
		}
		warn = take_warn();
	}
	printf("attach\t%s\t%s\t%d\t%d\t%s\nend\n", prog_name, func, load_rc, rc, warn);
	bpf_object__close(obj);
}

int main(int argc, char **argv)
{
	const char *kprobe = NULL;
	char prog_name[256] = "", *func = NULL;
	int i = 1;

	/* The oracle's flag; verdicts are the default here. */
	if (i < argc && strcmp(argv[i], "--verdicts") == 0)
		i++;
	if (i + 1 < argc && strcmp(argv[i], "--kprobe-attach") == 0) {
		kprobe = argv[i + 1];
		i += 2;
		snprintf(prog_name, sizeof(prog_name), "%s", kprobe);
		func = strchr(prog_name, ':');
		if (!func) {
			fprintf(stderr, "--kprobe-attach %s: expected PROG:FUNC\n", kprobe);
			return 2;
		}
		*func++ = '\0';
	}
	if (i >= argc) {
		fprintf(stderr,
			"usage: kernel_verdict [--verdicts | --kprobe-attach PROG:FUNC] NAME=OBJECT.o ...\n");
		return 2;
	}
	libbpf_set_print(print_fn);
	printf("userbpf-kernel-verdicts 1\nlibbpf\t%s\n", libbpf_version_string());
	for (; i < argc; i++) {
		char *eq = strchr(argv[i], '=');
		size_t len;
		void *buf;

		if (!eq) {
			fprintf(stderr, "%s: expected NAME=OBJECT.o\n", argv[i]);
			return 2;
		}
		*eq = '\0';
		buf = read_file(eq + 1, &len);
		if (!buf) {
			fprintf(stderr, "kernel_verdict: %s: %s\n", eq + 1, strerror(errno));
			return 1;
		}
		if (kprobe)
			kprobe_attach(argv[i], buf, len, prog_name, func);
		else
			verdicts(argv[i], buf, len);
		fflush(stdout);
		free(buf);
	}
	return 0;
}
