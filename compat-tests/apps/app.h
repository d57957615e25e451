/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * User-space helpers shared by the skeleton apps.
 *
 * Output rules (see README.md): every line an app prints on stdout must be
 * the same with the real libbpf on the kernel and with userbpf, except lines
 * that start with '~', which the harness does not compare (fd numbers, ids,
 * CPU counts, kernel-specific sizes). Errors are printed as "-ENAME" (or a
 * negative number when the code has no name here). libbpf's own log goes to
 * stderr, never to stdout.
 */
#ifndef USERBPF_APP_H
#define USERBPF_APP_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static const struct { int code; const char *name; } app_errnos[] = {
	{ EPERM, "EPERM" },   { ENOENT, "ENOENT" }, { ESRCH, "ESRCH" },
	{ EINTR, "EINTR" },   { EIO, "EIO" },       { ENXIO, "ENXIO" },
	{ E2BIG, "E2BIG" },   { EBADF, "EBADF" },   { EAGAIN, "EAGAIN" },
	{ ENOMEM, "ENOMEM" }, { EACCES, "EACCES" }, { EFAULT, "EFAULT" },
	{ EBUSY, "EBUSY" },   { EEXIST, "EEXIST" }, { ENODEV, "ENODEV" },
	{ EINVAL, "EINVAL" }, { ENOSPC, "ENOSPC" }, { ERANGE, "ERANGE" },
	{ ENOSYS, "ENOSYS" }, { ELOOP, "ELOOP" },   { ENODATA, "ENODATA" },
	{ EPROTO, "EPROTO" }, { EOPNOTSUPP, "EOPNOTSUPP" },
	{ ENOTSUP == EOPNOTSUPP ? -1 : ENOTSUP, "ENOTSUP" },
	{ ETIMEDOUT, "ETIMEDOUT" }, { 524, "ENOTSUPP" }, /* kernel-internal */
};

/* "0", a positive number, "-ENAME", or the negative number. */
static inline const char *rc(long ret)
{
	static char bufs[8][32];
	static unsigned int next;
	char *buf = bufs[next++ % ARRAY_LEN(bufs)];
	size_t i;

	if (ret < 0) {
		for (i = 0; i < ARRAY_LEN(app_errnos); i++) {
			if (app_errnos[i].code == -ret) {
				snprintf(buf, sizeof(bufs[0]), "-%s", app_errnos[i].name);
				return buf;
			}
		}
	}
	snprintf(buf, sizeof(bufs[0]), "%ld", ret);
	return buf;
}

/* The current errno, as "-ENAME". */
#define ERRNO_RC() rc(-(long)errno)
#define SHOW(label, expr) printf("%s -> %s\n", (label), rc((long)(expr)))
#define YESNO(cond) ((cond) ? "yes" : "no")
#define CHECKED(label, cond) printf("%s -> %s\n", (label), YESNO(cond))

static inline void fatal(const char *what, long err)
{
	printf("FATAL %s -> %s\n", what, rc(err));
	exit(1);
}

static inline int app_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (level == LIBBPF_DEBUG && !getenv("APP_DEBUG"))
		return 0;
	return vfprintf(stderr, fmt, ap);
}

static inline void app_init(const char *name)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	libbpf_set_print(app_print);
	printf("# %s\n", name);
	printf("~libbpf %s\n", libbpf_version_string());
}

/*
 * Runs a raw_tp program through BPF_PROG_TEST_RUN on a chosen CPU, with
 * ctx = { a0, a1, a2, a3 }; returns the program's return value as an int.
 * A failing test run prints a line and returns INT32_MIN.
 *
 * cpu < 0 runs it on the calling thread's CPU, in the calling task's
 * context. With BPF_F_TEST_RUN_ON_CPU the kernel runs the program from an
 * IPI when the caller is on another CPU, where "current" is whatever task
 * that CPU was running: helpers about the current task (user stacks, pid)
 * need cpu < 0.
 */
#define RUN_FAILED ((int)0x80000000)
static inline int run_on(int prog_fd, int cpu, __u64 a0, __u64 a1, __u64 a2, __u64 a3)
{
	__u64 args[4] = { a0, a1, a2, a3 };
	LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = args, .ctx_size_in = sizeof(args),
		    .flags = cpu < 0 ? 0 : BPF_F_TEST_RUN_ON_CPU, .cpu = cpu < 0 ? 0 : cpu);
	int err = bpf_prog_test_run_opts(prog_fd, &opts);

	if (err) {
		printf("test_run failed -> %s\n", rc(err));
		return RUN_FAILED;
	}
	return (int)opts.retval;
}

#define RUN(prog, ...) run_on(bpf_program__fd(prog), 0, __VA_ARGS__)

/* Lines collected, then printed in sorted order. */
struct lines {
	char *v[1024];
	int n;
};

static inline void lines_add(struct lines *l, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static inline void lines_add(struct lines *l, const char *fmt, ...)
{
	va_list ap;

	if (l->n >= (int)ARRAY_LEN(l->v))
		fatal("too many lines", -E2BIG);
	va_start(ap, fmt);
	if (vasprintf(&l->v[l->n], fmt, ap) < 0)
		fatal("vasprintf", -ENOMEM);
	va_end(ap);
	l->n++;
}

static inline int lines_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static inline void lines_flush(struct lines *l)
{
	int i;

	qsort(l->v, l->n, sizeof(l->v[0]), lines_cmp);
	for (i = 0; i < l->n; i++) {
		printf("%s\n", l->v[i]);
		free(l->v[i]);
	}
	l->n = 0;
}

static inline int cmp_u32(const void *a, const void *b)
{
	__u32 x = *(const __u32 *)a, y = *(const __u32 *)b;

	return x < y ? -1 : x > y;
}

/* All keys of a map with 4-byte keys, sorted; returns the count. */
static inline int map_keys_u32(int fd, __u32 *keys, int max)
{
	__u32 *prev = NULL;
	int n = 0;

	while (n < max && bpf_map_get_next_key(fd, prev, &keys[n]) == 0) {
		prev = &keys[n];
		n++;
	}
	qsort(keys, n, sizeof(keys[0]), cmp_u32);
	return n;
}

#endif
