// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Calls marker() exactly 3000 times, then says so. */
#include <stdio.h>

__attribute__((noinline, noipa)) int marker(int x)
{
	asm volatile("" ::: "memory");
	return x + 1;
}

int main(void)
{
	long s = 0;

	for (int i = 0; i < 3000; i++)
		s += marker(i);
	printf("victim done %ld\n", s);
	return 0;
}
