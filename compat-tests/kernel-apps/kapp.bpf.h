/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/* BPF-side helpers shared by the kernel apps. */
#ifndef USERBPF_KAPP_BPF_H
#define USERBPF_KAPP_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

/* Adds `delta` to the u64 at `key` of an ARRAY or HASH map (a HASH entry
 * is created on first use). */
static __always_inline void bump(void *map, __u32 key, __u64 delta)
{
	__u64 zero = 0, *v;

	v = bpf_map_lookup_elem(map, &key);
	if (!v) {
		/* NOEXIST: another CPU may have created it meanwhile. */
		bpf_map_update_elem(map, &key, &zero, BPF_NOEXIST);
		v = bpf_map_lookup_elem(map, &key);
		if (!v)
			return;
	}
	__sync_fetch_and_add(v, delta);
}

/* log2 of a 32-bit value, branch-free (libbpf-tools' bits.bpf.h). */
static __always_inline __u64 log2_u32(__u32 v)
{
	__u32 shift, r;

	r = (v > 0xFFFF) << 4;
	v >>= r;
	shift = (v > 0xFF) << 3;
	v >>= shift;
	r |= shift;
	shift = (v > 0xF) << 2;
	v >>= shift;
	r |= shift;
	shift = (v > 0x3) << 1;
	v >>= shift;
	r |= shift;
	r |= (v >> 1);
	return r;
}

static __always_inline __u64 log2_u64(__u64 v)
{
	__u32 hi = v >> 32;

	return hi ? log2_u32(hi) + 32 : log2_u32(v);
}

#endif
