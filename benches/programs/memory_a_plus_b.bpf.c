/* "memory a + b": two 8-byte loads from the input and one add. */
#include "bench.h"

u64 bpf_main(void *mem)
{
	const u64 *p = mem;

	return p[0] + p[1];
}
