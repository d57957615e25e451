/* An extern add_b() whose prototype disagrees with B's. */
#include "common.h"

extern int add_b(int x, int y);

SEC("raw_tp/sys_enter")
int bad_func(__u64 *ctx)
{
	return add_b(1, 2);
}

char LICENSE[] SEC("license") = "GPL";
