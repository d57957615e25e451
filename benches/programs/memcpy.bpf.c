/* "memcpy": byte-by-byte copy of [0, 1 MiB) to [1 MiB, 2 MiB); returns 0. */
#include "bench.h"

#define HALF (1u << 20)

u64 bpf_main(void *mem)
{
	const u8 *src = mem;
	u8 *dst = (u8 *)mem + HALF;

	for (u32 i = 0; i < HALF; i++)
		dst[i] = src[i];
	return 0;
}
