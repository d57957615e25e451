/* A license that differs from the others'. */
#include "common.h"

SEC("raw_tp/sys_enter")
int other(__u64 *ctx)
{
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
