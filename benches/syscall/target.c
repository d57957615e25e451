/* The target of benches/syscall/run.sh: times getppid() loops.
 *
 * Usage: syscall_target CALLS REPS MODE...
 *
 * MODE is one of
 *   libc    getppid() through libc (its `syscall` instruction is in libc.so.6,
 *           near the function's entry: mov $110,%eax; syscall; ret)
 *   syscallfn  syscall(SYS_getppid) through libc's syscall(2) wrapper: a
 *           `syscall` instruction in the middle of a libc function
 *   inline  a `syscall` instruction in this executable, inside the loop
 *           (ub_inline_loop below: mov $110,%eax; syscall; dec; jnz)
 *   anon    `mov $110,%eax; syscall; ret` written at run time into an
 *           anonymous executable page, after the agent's start: no scan
 *           of the loaded modules can have seen it (SUD's case)
 *
 * For each mode: CALLS/10 calls of warm-up, then REPS repetitions of CALLS
 * calls, each printed as "rep MODE CPU_NS WALL_NS" (ns per call; thread
 * CPU time, which includes the kernel's time for the call, and wall time),
 * then "site MODE BYTES": the first bytes of the function holding the
 * syscall instruction (getppid, ub_inline_loop, the anonymous page) as
 * they are in memory after the loop (rewritten by the agent or not), and
 * "calls MODE N": the calls made in that mode, warm-up included. Last line:
 * "total N", every getppid call this process made. First line: "pid PID".
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

__asm__(".text\n"
	".p2align 4\n"
	".globl ub_inline_loop\n"
	".type ub_inline_loop, @function\n"
	"ub_inline_loop:\n" /* rdi = calls (> 0) */
	"1: mov $110, %eax\n"
	"  syscall\n"
	"  dec %rdi\n"
	"  jnz 1b\n"
	"  ret\n"
	".size ub_inline_loop, .-ub_inline_loop\n");

void ub_inline_loop(long calls);

static long (*anon_getppid)(void);
static volatile long sink;
static uint64_t total;

static double now(clockid_t c)
{
	struct timespec ts;

	clock_gettime(c, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static void run(const char *mode, long calls)
{
	if (!strcmp(mode, "libc")) {
		for (long i = 0; i < calls; i++)
			sink += getppid();
	} else if (!strcmp(mode, "syscallfn")) {
		for (long i = 0; i < calls; i++)
			sink += syscall(SYS_getppid);
	} else if (!strcmp(mode, "inline")) {
		ub_inline_loop(calls);
	} else {
		for (long i = 0; i < calls; i++)
			sink += anon_getppid();
	}
	total += calls;
}

static const unsigned char *site(const char *mode)
{
	if (!strcmp(mode, "libc"))
		return (const unsigned char *)(uintptr_t)getppid;
	if (!strcmp(mode, "syscallfn"))
		return (const unsigned char *)(uintptr_t)syscall;
	if (!strcmp(mode, "inline"))
		return (const unsigned char *)(uintptr_t)ub_inline_loop;
	return (const unsigned char *)(uintptr_t)anon_getppid;
}

int main(int argc, char **argv)
{
	static const unsigned char code[] = { 0xb8, 0x6e, 0, 0, 0, 0x0f, 0x05, 0xc3 };
	long calls, reps;
	void *page;

	if (argc < 4) {
		fprintf(stderr, "usage: %s CALLS REPS MODE...\n", argv[0]);
		return 2;
	}
	calls = atol(argv[1]);
	reps = atol(argv[2]);
	if (calls <= 0 || reps <= 0)
		return 2;
	page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (page == MAP_FAILED)
		return 1;
	memcpy(page, code, sizeof(code));
	if (mprotect(page, 4096, PROT_READ | PROT_EXEC))
		return 1;
	anon_getppid = (long (*)(void))page;
	printf("pid %d\n", (int)getpid());

	for (int m = 3; m < argc; m++) {
		const char *mode = argv[m];
		const unsigned char *s;

		if (strcmp(mode, "libc") && strcmp(mode, "syscallfn") && strcmp(mode, "inline") &&
		    strcmp(mode, "anon")) {
			fprintf(stderr, "unknown mode %s\n", mode);
			return 2;
		}
		run(mode, calls / 10 + 1);
		for (long r = 0; r < reps; r++) {
			double c0 = now(CLOCK_THREAD_CPUTIME_ID), w0 = now(CLOCK_MONOTONIC);

			run(mode, calls);
			double c1 = now(CLOCK_THREAD_CPUTIME_ID), w1 = now(CLOCK_MONOTONIC);
			printf("rep %s %.2f %.2f\n", mode, (c1 - c0) / calls, (w1 - w0) / calls);
		}
		s = site(mode);
		printf("site %s", mode);
		for (int i = 0; i < 32; i++)
			printf(" %02x", s[i]);
		printf("\ncalls %s %ld\n", mode, calls / 10 + 1 + reps * calls);
		fflush(stdout);
	}
	printf("total %llu\n", (unsigned long long)total);
	return 0;
}
