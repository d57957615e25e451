/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * User-space helpers shared by the kernel apps (issue 8).
 *
 * Output rules (README.md): stdout lines must be the same with the real
 * libbpf and with userbpf (in auto and kernel mode), except lines that
 * start with '~' (counts, latencies, stack ids: printed for people, never
 * compared). libbpf's log goes to stderr. A failure prints one line on
 * stderr, `<app>: <step> failed: <strerror> (-ENAME)`, plus a hint when the
 * cause is a missing privilege, and exits with 1.
 */
#ifndef USERBPF_KAPP_H
#define USERBPF_KAPP_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define YESNO(cond) ((cond) ? "yes" : "no")

static const char *kapp_name = "app";

static inline const char *errno_name(int err)
{
	switch (err) {
	case EPERM: return "EPERM";
	case ENOENT: return "ENOENT";
	case ESRCH: return "ESRCH";
	case E2BIG: return "E2BIG";
	case EBADF: return "EBADF";
	case ENOMEM: return "ENOMEM";
	case EACCES: return "EACCES";
	case EFAULT: return "EFAULT";
	case EBUSY: return "EBUSY";
	case EEXIST: return "EEXIST";
	case ENODEV: return "ENODEV";
	case EINVAL: return "EINVAL";
	case ENOSPC: return "ENOSPC";
	case ENOSYS: return "ENOSYS";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	case 524: return "ENOTSUPP";
	default: return "E?";
	}
}

/* Prints the failure of `step` (err: a negative or positive errno) and
 * exits 1. */
static inline void fail(const char *step, int err)
{
	if (err < 0)
		err = -err;
	fprintf(stderr, "%s: %s failed: %s (-%s)\n", kapp_name, step, strerror(err),
		errno_name(err));
	if (err == EPERM || err == EACCES)
		fprintf(stderr,
			"%s: permission denied: loading and attaching kernel BPF programs needs "
			"root (or CAP_BPF and CAP_PERFMON)\n",
			kapp_name);
	fflush(stdout);
	exit(1);
}

static inline int kapp_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (level == LIBBPF_DEBUG && !getenv("APP_DEBUG"))
		return 0;
	return vfprintf(stderr, fmt, ap);
}

static inline void kapp_init(const char *name)
{
	kapp_name = name;
	setvbuf(stdout, NULL, _IOLBF, 0);
	libbpf_set_print(kapp_print);
}

static inline double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Reads an ARRAY/HASH u64 value; 0 when absent. */
static inline unsigned long long map_u64(int fd, unsigned int key)
{
	unsigned long long v = 0;

	if (bpf_map_lookup_elem(fd, &key, &v))
		return 0;
	return v;
}

#endif
