/* USDT probes without semaphores, for the USDT parsing tests. */
#include <stdint.h>
#include <sys/sdt.h>

volatile int usdt_global = 7;

__attribute__((noinline)) void site_regs(int8_t a, uint16_t b, int32_t c, uint64_t d)
{
	STAP_PROBE4(ubpf, regs, a, b, c, d);
}

__attribute__((noinline)) void site_consts(void)
{
	STAP_PROBE3(ubpf, consts, 5, -9, (uint8_t)200);
}

__attribute__((noinline)) void site_noargs(void)
{
	DTRACE_PROBE(ubpf, noargs);
}

/* The same probe at two sites with the same argument spec. */
__attribute__((noinline)) void site_twice_a(long x)
{
	STAP_PROBE1(ubpf, twice, x);
}

__attribute__((noinline)) void site_twice_b(long x)
{
	STAP_PROBE1(ubpf, twice, x);
}

/* A global through the GOT: memory at a register, no offset. */
__attribute__((noinline)) void site_global(void)
{
	STAP_PROBE1(ubpf, global, usdt_global);
}

static volatile short usdt_static = 3;

/* A static: a symbol-relative operand, which libbpf refuses. */
__attribute__((noinline)) void site_static(void)
{
	STAP_PROBE1(ubpf, rip, usdt_static);
}
