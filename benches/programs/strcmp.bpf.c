/*
 * "strcmp": compare the NUL-terminated strings at offsets 0 and 1 MiB with
 * signed chars; returns the difference at the first mismatch (sign-extended).
 * The same program runs on two inputs: equal strings and an early mismatch.
 */
#include "bench.h"

#define HALF (1u << 20)

u64 bpf_main(void *mem)
{
	const s8 *a = mem;
	const s8 *b = (const s8 *)mem + HALF;

	while (*a && *a == *b) {
		a++;
		b++;
	}
	return (u64)(s64)(*a - *b);
}
