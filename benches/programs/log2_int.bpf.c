/*
 * "log2": XOR of floor(log2(x)) over N u64 values.
 * Input: u64 N at offset 0, then N u64 values (all >= 2^32).
 */
#include "bench.h"

/* Branch-free floor(log2(v)) for v > 0: halve the search range each step. */
static __always_inline u32 log2_u32(u32 v)
{
	u32 r, step;

	r = (u32)(v > 0xffff) << 4;
	v >>= r;
	step = (u32)(v > 0xff) << 3;
	v >>= step;
	r |= step;
	step = (u32)(v > 0xf) << 2;
	v >>= step;
	r |= step;
	step = (u32)(v > 0x3) << 1;
	v >>= step;
	r |= step;
	return r | (v >> 1);
}

static __always_inline u32 log2_u64(u64 v)
{
	u32 hi = (u32)(v >> 32);

	if (hi)
		return 32 + log2_u32(hi);
	return log2_u32((u32)v);
}

u64 bpf_main(void *mem)
{
	const u64 *nums = mem;
	u64 n = nums[0];
	u64 h = 0;

	for (u64 i = 1; i <= n; i++)
		h ^= log2_u64(nums[i]);
	return h;
}
