// SPDX-License-Identifier: MIT OR Apache-2.0
/* Global data: .rodata (const volatile, set by user space before load),
 * .data, .bss, custom .data.custom / .rodata.custom sections, plus a
 * function and variables from a separately compiled library object
 * (globals_lib.bpf.c) that the app reaches through a subskeleton. */
#include "app.bpf.h"

const volatile __u32 scale = 1;
const volatile bool enable_extra = false;
const volatile char greeting[8] = "hello";

__u64 counter = 100;
__u32 slots[4] = { 1, 2, 3, 4 };

__u64 total;
char last_greeting[8];
__u32 runs;

__u32 custom_val SEC(".data.custom") = 77;
__u64 custom_arr[2] SEC(".data.custom") = { 5, 6 };
const volatile __u32 custom_ro SEC(".rodata.custom") = 9;

extern int lib_add(int x);

/* ctx[0] = amount */
SEC("raw_tp")
int bump(u64 *ctx)
{
	u64 x = ctx[0];

	runs++;
	counter += x * scale;
	total += x;
	if (enable_extra)
		total += 1000;
	slots[x & 3] += 10;
	custom_val += 1;
	custom_arr[1] += x * custom_ro;
	for (int i = 0; i < sizeof(last_greeting); i++)
		last_greeting[i] = greeting[i];
	return lib_add(x);
}
