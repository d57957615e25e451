/* "return directly": the cost of entering and leaving a program. */
#include "bench.h"

u64 bpf_main(void *mem)
{
	(void)mem;
	return 12345678;
}
