/*
 * "prime": count i in [1, 10000) with no divisor j >= 2, j*j <= i, by trial
 * division (1 counts as prime, so the answer is pi(9999) + 1 = 1230).
 * Unsigned: BPF before v4 has no signed modulo, and the values are positive.
 */
#include "bench.h"

u64 bpf_main(void *mem)
{
	u32 count = 0;

	(void)mem;
	for (u32 i = 1; i < 10000; i++) {
		u32 prime = 1;

		for (u32 j = 2; j * j <= i; j++) {
			if (i % j == 0) {
				prime = 0;
				break;
			}
		}
		count += prime;
	}
	return count;
}
