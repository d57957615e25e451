/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * userbpf's extensions to libbpf's API. The real libbpf does not know
 * them: it refuses extended opts with EINVAL (their tail is not zero).
 */
#ifndef __USERBPF_USERBPF_H
#define __USERBPF_USERBPF_H

#include <bpf/libbpf.h>

/* "userbpf1", little-endian: marks struct userbpf_object_open_opts. */
#define USERBPF_OPEN_OPTS_MAGIC 0x3166706272657375ULL

/*
 * Open opts with userbpf's backend switch. Pass a pointer to `opts`
 * wherever libbpf takes `struct bpf_object_open_opts *`:
 *
 *	struct userbpf_object_open_opts o = {
 *		.opts = { .sz = sizeof(o) },
 *		.magic = USERBPF_OPEN_OPTS_MAGIC,
 *		.backend = "kernel",
 *	};
 *	obj = bpf_object__open_file(path, &o.opts);
 *
 * `backend`: "auto" (user space where possible, the kernel for the rest
 * when this process may use it), "user" (user space only) or "kernel"
 * (kernel only, as the real libbpf). NULL: the USERBPF_BACKEND environment
 * variable, else "auto".
 */
struct userbpf_object_open_opts {
	struct bpf_object_open_opts opts;
	__u64 magic;
	const char *backend;
};

#endif /* __USERBPF_USERBPF_H */
