/* The traced program: USDT probes with and without a semaphore. */
#define _SDT_HAS_SEMAPHORES 1
#include <stdio.h>
#include <sys/sdt.h>

__extension__ unsigned short ubpf_sema_semaphore __attribute__((unused)) __attribute__((section(".probes")));
__extension__ unsigned short ubpf_hit_semaphore __attribute__((unused)) __attribute__((section(".probes")));

__attribute__((noinline)) void hit_a(int a, long b)
{
	STAP_PROBE2(ubpf, hit, a, b);
}

__attribute__((noinline)) void hit_b(int a, long b)
{
	STAP_PROBE2(ubpf, hit, a, b);
}

__attribute__((noinline)) void sema(short s)
{
	STAP_PROBE3(ubpf, sema, s, 42, -7);
}

int main(int argc, char **argv)
{
	hit_a(argc, -5);
	hit_b(argc + 1, 1L << 40);
	sema(-3);
	printf("semaphores %d %d\n", ubpf_hit_semaphore, ubpf_sema_semaphore);
	return 0;
}
