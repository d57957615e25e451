// SPDX-License-Identifier: MIT OR Apache-2.0
/* A BPF "library" linked into globals.bpf.o by `bpftool gen object`; the
 * app reaches its variables through `bpftool gen subskeleton`. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

int lib_counter = 5;
int lib_hits;
const volatile int lib_scale = 2;

__noinline int lib_add(int x)
{
	lib_hits++;
	lib_counter += x * lib_scale;
	return lib_counter;
}
