// SPDX-License-Identifier: MIT OR Apache-2.0
/* victim: calls malloc a known number of times, and says so.
 *
 *   victim [TICKS [PER_TICK]]        (defaults: 5 ticks of 1000 calls)
 *
 * Each tick (one second apart) makes exactly PER_TICK malloc calls of
 * sizes 16, 24, ..., and frees them. Nothing else in this program calls
 * malloc: output goes through snprintf into a stack buffer and write(2),
 * sleeping is nanosleep(2). So a per-process malloc counter must see
 * exactly the numbers printed on the "done" line. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_PER_TICK 100000

static void *ptrs[MAX_PER_TICK];

__attribute__((format(printf, 1, 2))) static void say(const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);

	if (n > 0 && write(1, buf, (size_t)n) < 0)
		_exit(3);
}

static unsigned long size_of(unsigned long i)
{
	return 16 + (i % 64) * 8;
}

/* noinline, and the pointers escape to a global: the compiler must make
 * every call (gcc may otherwise drop a malloc/free pair). */
__attribute__((noinline)) static unsigned long tick(unsigned long per_tick)
{
	unsigned long i, bytes = 0;

	for (i = 0; i < per_tick; i++) {
		ptrs[i] = malloc(size_of(i));
		if (!ptrs[i])
			_exit(4);
		bytes += size_of(i);
	}
	for (i = 0; i < per_tick; i++)
		free(ptrs[i]);
	return bytes;
}

int main(int argc, char **argv)
{
	unsigned long ticks = argc > 1 ? strtoul(argv[1], NULL, 10) : 5;
	unsigned long per_tick = argc > 2 ? strtoul(argv[2], NULL, 10) : 1000;
	unsigned long pid = (unsigned long)getpid(), calls = 0, bytes = 0, t;

	if (per_tick > MAX_PER_TICK)
		per_tick = MAX_PER_TICK;
	say("victim %lu: %lu ticks of %lu malloc calls\n", pid, ticks, per_tick);
	for (t = 1; t <= ticks; t++) {
		struct timespec ts = { .tv_sec = 1 };

		nanosleep(&ts, NULL);
		bytes += tick(per_tick);
		calls += per_tick;
		say("victim %lu: tick %lu: %lu malloc calls so far, %lu bytes\n", pid, t, calls,
		    bytes);
	}
	say("victim %lu: done: calls %lu bytes %lu\n", pid, calls, bytes);
	return 0;
}
