// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * user_ring_buffer__* from C against userbpf's libbpf.so.1: samples the C
 * side submits are drained by the SEC("syscall") program of
 * tests/user_ringbuf.bpf.c (argv[1]) run with bpf_prog_test_run_opts.
 * Checks contents and order, discard, E2BIG/ENOSPC, the callback's stop,
 * reserve_blocking's timeout and the wake-up by a drain in another thread.
 * Prints "done" when every check passed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#define FAIL(...) do { printf("FAIL line %d: ", __LINE__); printf(__VA_ARGS__); printf("\n"); exit(1); } while (0)
#define CHECK(c) do { if (!(c)) FAIL("%s (errno %d)", #c, errno); } while (0)

struct sample {
	uint32_t seq;
	uint32_t len;
};

struct state {
	long drained;
	uint64_t flags;
	uint64_t stop_at;
	uint64_t bad;
	uint64_t nseen;
	uint64_t seen[64];
};

static int prog_fd, bss_fd;

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* Runs the program with these flags and stop_at; returns the state. */
static struct state drain(uint64_t flags, uint64_t stop_at)
{
	struct state st = { .flags = flags, .stop_at = stop_at };
	uint32_t zero = 0;
	LIBBPF_OPTS(bpf_test_run_opts, t);

	CHECK(bpf_map_update_elem(bss_fd, &zero, &st, 0) == 0);
	CHECK(bpf_prog_test_run_opts(prog_fd, &t) == 0);
	CHECK(bpf_map_lookup_elem(bss_fd, &zero, &st) == 0);
	if (st.bad)
		FAIL("callback check %#llx failed", (unsigned long long)st.bad);
	return st;
}

/* Sends `len` bytes: seq, len, then bytes `seq`. */
static void send(struct user_ring_buffer *rb, uint32_t seq, uint32_t len, int discard)
{
	struct sample *s = user_ring_buffer__reserve(rb, len);

	CHECK(s != NULL);
	CHECK((uintptr_t)s % 8 == 0);
	memset(s, (unsigned char)seq, len);
	s->seq = seq;
	s->len = len;
	if (discard)
		user_ring_buffer__discard(rb, s);
	else
		user_ring_buffer__submit(rb, s);
}

static uint64_t seen(uint32_t seq, uint32_t len)
{
	uint64_t last = len > 8 ? (unsigned char)seq : 0;

	return seq | (uint64_t)len << 32 | last << 56;
}

static void *drain_later(void *arg)
{
	usleep(200 * 1000);
	*(long *)arg = drain(0, 0).drained;
	return NULL;
}

int main(int argc, char **argv)
{
	struct bpf_object *obj;
	struct bpf_map *map;
	struct user_ring_buffer *rb;
	struct state st;
	int rb_fd, n;
	void *p;

	setvbuf(stdout, NULL, _IONBF, 0);
	CHECK(argc == 2);
	obj = bpf_object__open_file(argv[1], NULL);
	CHECK(obj != NULL);
	CHECK(bpf_object__load(obj) == 0);
	rb_fd = bpf_object__find_map_fd_by_name(obj, "user_rb");
	CHECK(rb_fd >= 0);
	prog_fd = bpf_program__fd(bpf_object__find_program_by_name(obj, "drain"));
	CHECK(prog_fd >= 0);
	bss_fd = -1;
	bpf_object__for_each_map(map, obj) {
		const char *name = bpf_map__name(map);
		size_t l = strlen(name);

		if (l >= 4 && strcmp(name + l - 4, ".bss") == 0)
			bss_fd = bpf_map__fd(map);
	}
	CHECK(bss_fd >= 0);

	/* __new: opts, map type, fd. */
	struct { size_t sz; long junk; } big_opts = { sizeof(big_opts), 1 };
	struct user_ring_buffer_opts small_opts = { .sz = 4 };
	errno = 0;
	CHECK(user_ring_buffer__new(rb_fd, (void *)&big_opts) == NULL && errno == EINVAL);
	errno = 0;
	CHECK(user_ring_buffer__new(rb_fd, &small_opts) == NULL && errno == EINVAL);
	errno = 0;
	CHECK(user_ring_buffer__new(bss_fd, NULL) == NULL && errno == EINVAL);
	errno = 0;
	/* The map-info call's errno (EBADFD here, as bpf_obj_get_info_by_fd). */
	CHECK(user_ring_buffer__new(9999, NULL) == NULL && (errno == EBADF || errno == EBADFD));
	LIBBPF_OPTS(user_ring_buffer_opts, opts);
	rb = user_ring_buffer__new(rb_fd, &opts);
	CHECK(rb != NULL);
	user_ring_buffer__free(NULL);
	printf("new ok\n");

	/* Nothing to drain. */
	st = drain(0, 0);
	CHECK(st.drained == 0 && st.nseen == 0);

	/* Contents and order; a discarded sample is skipped. */
	for (uint32_t i = 0; i < 6; i++)
		send(rb, i, 8 + i * 9, i == 2);
	st = drain(0, 0);
	CHECK(st.drained == 5 && st.nseen == 5);
	for (uint32_t i = 0, k = 0; i < 6; i++) {
		if (i == 2)
			continue;
		if (st.seen[k] != seen(i, 8 + i * 9))
			FAIL("sample %u: %#llx", i, (unsigned long long)st.seen[k]);
		k++;
	}
	printf("order ok\n");

	/* The callback returning 1 stops after its sample. */
	for (uint32_t i = 10; i < 15; i++)
		send(rb, i, 16, 0);
	st = drain(0, 12 + 1);
	CHECK(st.drained == 3 && st.nseen == 3 && st.seen[2] == seen(12, 16));
	st = drain(0, 0);
	CHECK(st.drained == 2 && st.seen[0] == seen(13, 16));
	/* Bad flags. */
	st = drain(4, 0);
	CHECK(st.drained == -EINVAL);

	/* E2BIG and ENOSPC. */
	errno = 0;
	CHECK(user_ring_buffer__reserve(rb, 4089) == NULL && errno == E2BIG);
	errno = 0;
	CHECK(user_ring_buffer__reserve(rb, 1u << 31) == NULL && errno == E2BIG);
	errno = 0;
	CHECK(user_ring_buffer__reserve_blocking(rb, 4089, 10) == NULL && errno == E2BIG);
	for (n = 0; (p = user_ring_buffer__reserve(rb, 1016)); n++) {
		memset(p, 20 + n, 1016);
		((struct sample *)p)->seq = 20 + n;
		((struct sample *)p)->len = 1016;
		user_ring_buffer__submit(rb, p);
	}
	CHECK(errno == ENOSPC && n == 4);
	printf("full after %d samples\n", n);

	/* reserve_blocking: timeout rules. */
	errno = 0;
	CHECK(user_ring_buffer__reserve_blocking(rb, 8, -2) == NULL && errno == EINVAL);
	errno = 0;
	CHECK(user_ring_buffer__reserve_blocking(rb, 8, 0) == NULL && errno == ENOSPC);
	long long t0 = now_ms();
	errno = 0;
	CHECK(user_ring_buffer__reserve_blocking(rb, 8, 100) == NULL && errno == ENOSPC);
	CHECK(now_ms() - t0 >= 100);
	printf("timeout ok\n");

	/* A drain in another thread wakes the blocked producer. */
	pthread_t th;
	long drained = -1;
	CHECK(pthread_create(&th, NULL, drain_later, &drained) == 0);
	t0 = now_ms();
	p = user_ring_buffer__reserve_blocking(rb, 8, 10000);
	long long waited = now_ms() - t0;
	CHECK(p != NULL);
	CHECK(pthread_join(th, NULL) == 0);
	CHECK(drained == 4);
	CHECK(waited >= 150 && waited < 5000);
	((struct sample *)p)->seq = 99;
	((struct sample *)p)->len = 8;
	user_ring_buffer__submit(rb, p);
	st = drain(0, 0);
	CHECK(st.drained == 1 && st.seen[0] == seen(99, 8));
	printf("# woken after %lld ms\n", waited);
	printf("wakeup ok\n");

	user_ring_buffer__free(rb);
	bpf_object__close(obj);
	printf("done\n");
	return 0;
}
