/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * userbpf: macros shared by every libbpf header (export and deprecation
 * attributes, version checks, opts initialisers).
 */
#ifndef __LIBBPF_LIBBPF_COMMON_H
#define __LIBBPF_LIBBPF_COMMON_H

#include <string.h> /* memset/memcpy for the opts macros */
#include "libbpf_version.h"

#ifndef LIBBPF_API
#define LIBBPF_API __attribute__((visibility("default")))
#endif

#define LIBBPF_DEPRECATED(msg) __attribute__((deprecated(msg)))

/* True when these headers are libbpf MAJOR.MINOR or newer. */
#define __LIBBPF_CURRENT_VERSION_GEQ(major, minor)				\
	(LIBBPF_MAJOR_VERSION > (major) ||					\
	 (LIBBPF_MAJOR_VERSION == (major) && LIBBPF_MINOR_VERSION >= (minor)))

/*
 * LIBBPF_DEPRECATED_SINCE(1, 0, "use x") marks a declaration deprecated
 * from libbpf 1.0 on. Only the versions listed below are known.
 */
#define LIBBPF_DEPRECATED_SINCE(major, minor, msg)				\
	__LIBBPF_MARK_DEPRECATED_##major##_##minor(				\
		LIBBPF_DEPRECATED("libbpf v" #major "." #minor "+: " msg))

#if __LIBBPF_CURRENT_VERSION_GEQ(1, 0)
#define __LIBBPF_MARK_DEPRECATED_1_0(attr) attr
#else
#define __LIBBPF_MARK_DEPRECATED_1_0(attr)
#endif

/* Dispatch NAME(a, b, ...) to NAMEn(a, b, ...) by argument count (1..6). */
#define ___libbpf_cat(a, b) a##b
#define ___libbpf_select(name, n) ___libbpf_cat(name, n)
#define ___libbpf_nth(_1, _2, _3, _4, _5, _6, n, ...) n
#define ___libbpf_cnt(...) ___libbpf_nth(__VA_ARGS__, 6, 5, 4, 3, 2, 1)
#define ___libbpf_overload(name, ...)						\
	___libbpf_select(name, ___libbpf_cnt(__VA_ARGS__))(__VA_ARGS__)

/*
 * LIBBPF_OPTS(bpf_object_open_opts, opts, .object_name = "x");
 *
 * Declares `struct TYPE NAME`, zeroes all of it (padding included, so the
 * library's "unknown tail bytes must be zero" check passes), sets .sz to
 * this header's sizeof(struct TYPE) and then the given fields.
 */
#define LIBBPF_OPTS(TYPE, NAME, ...)						\
	struct TYPE NAME = ({							\
		memset(&NAME, 0, sizeof(struct TYPE));				\
		(struct TYPE){ .sz = sizeof(struct TYPE), __VA_ARGS__ };	\
	})

/* Zero an opts struct declared with LIBBPF_OPTS again and re-set fields. */
#define LIBBPF_OPTS_RESET(NAME, ...)						\
	do {									\
		__typeof__(NAME) ___##NAME = ({					\
			memset(&___##NAME, 0, sizeof(NAME));			\
			(__typeof__(NAME)){ .sz = sizeof(NAME), __VA_ARGS__ };	\
		});								\
		memcpy(&NAME, &___##NAME, sizeof(NAME));			\
	} while (0)

#endif /* __LIBBPF_LIBBPF_COMMON_H */
