// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * ring_buffer__* and perf_buffer__* from C, on maps made with
 * bpf_map_create and fed by a raw tracepoint program run with
 * bpf_prog_test_run_opts. Run once against userbpf's libbpf.so.1 and once
 * (as root) against the system libbpf (1.1.2) and the kernel.
 *
 * Built against the system headers; the functions libbpf 1.1.2 lacks
 * (ring__*, ring_buffer__ring, ring_buffer__consume_n) are looked up with
 * dlsym, and their lines start with '#' (not comparable), as do timings
 * and anything else that may differ.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>
#include <linux/bpf.h>
#include <linux/perf_event.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#define INSN(c, d, s, o, i) ((struct bpf_insn){ .code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i) })
#define MOV64_IMM(d, i) INSN(BPF_ALU64 | BPF_MOV | BPF_K, d, 0, 0, i)
#define MOV32_IMM(d, i) INSN(BPF_ALU | BPF_MOV | BPF_K, d, 0, 0, i)
#define MOV64_REG(d, s) INSN(BPF_ALU64 | BPF_MOV | BPF_X, d, s, 0, 0)
#define ADD64_IMM(d, i) INSN(BPF_ALU64 | BPF_ADD | BPF_K, d, 0, 0, i)
#define ADD64_REG(d, s) INSN(BPF_ALU64 | BPF_ADD | BPF_X, d, s, 0, 0)
#define AND64_IMM(d, i) INSN(BPF_ALU64 | BPF_AND | BPF_K, d, 0, 0, i)
#define LSH64_IMM(d, i) INSN(BPF_ALU64 | BPF_LSH | BPF_K, d, 0, 0, i)
#define OR64_REG(d, s) INSN(BPF_ALU64 | BPF_OR | BPF_X, d, s, 0, 0)
#define LDX(sz, d, s, o) INSN(BPF_LDX | BPF_MEM | (sz), d, s, o, 0)
#define STX(sz, d, s, o) INSN(BPF_STX | BPF_MEM | (sz), d, s, o, 0)
#define CALL(id) INSN(BPF_JMP | BPF_CALL, 0, 0, 0, id)
#define EXIT() INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)
#define LD_MAP_FD(d, fd) INSN(BPF_LD | BPF_DW | BPF_IMM, d, BPF_PSEUDO_MAP_FD, 0, fd), INSN(0, 0, 0, 0, 0)
#define N(a) (sizeof(a) / sizeof((a)[0]))

#define FAIL(...) do { printf("FAIL line %d: ", __LINE__); printf(__VA_ARGS__); printf("\n"); exit(1); } while (0)
#define CHECK(c) do { if (!(c)) FAIL("%s", #c); } while (0)

static void *sym(const char *name)
{
	return dlsym(RTLD_DEFAULT, name);
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* raw_tp(u64 a, u64 b): rec = {a, b};
 *   r7 = bpf_ringbuf_output(&rb, &rec, 16, 0);
 *   r0 = bpf_perf_event_output(ctx, &pa, BPF_F_CURRENT_CPU, &rec, 16);
 *   return (r0 & 0xffff) | (r7 & 0xffff) << 16 */
static int load_prog(int rb, int pa)
{
	struct bpf_insn insns[] = {
		MOV64_REG(6, 1),
		LDX(BPF_DW, 2, 6, 0),
		STX(BPF_DW, 10, 2, -16),
		LDX(BPF_DW, 2, 6, 8),
		STX(BPF_DW, 10, 2, -8),
		LD_MAP_FD(1, rb),
		MOV64_REG(2, 10),
		ADD64_IMM(2, -16),
		MOV64_IMM(3, 16),
		MOV64_IMM(4, 0),
		CALL(BPF_FUNC_ringbuf_output),
		MOV64_REG(7, 0),
		MOV64_REG(1, 6),
		LD_MAP_FD(2, pa),
		MOV32_IMM(3, -1), /* BPF_F_CURRENT_CPU: 0xffffffff */
		MOV64_REG(4, 10),
		ADD64_IMM(4, -16),
		MOV64_IMM(5, 16),
		CALL(BPF_FUNC_perf_event_output),
		AND64_IMM(0, 0xffff),
		AND64_IMM(7, 0xffff),
		LSH64_IMM(7, 16),
		OR64_REG(0, 7),
		EXIT(),
	};
	char log[4096] = "";
	LIBBPF_OPTS(bpf_prog_load_opts, o, .log_buf = log, .log_size = sizeof(log), .log_level = 0);
	int fd = bpf_prog_load(BPF_PROG_TYPE_RAW_TRACEPOINT, "bufs", "GPL", insns, N(insns), &o);

	if (fd < 0)
		FAIL("prog load: %d\n%s", fd, log);
	return fd;
}

static int prog;
/* bpf_ringbuf_output's result in the last run. */
static int rb_ret;

/* Runs the program with (a, b); returns bpf_perf_event_output's result. */
static int fire(__u64 a, __u64 b)
{
	__u64 args[2] = { a, b };
	LIBBPF_OPTS(bpf_test_run_opts, t, .ctx_in = args, .ctx_size_in = sizeof(args));
	int err = bpf_prog_test_run_opts(prog, &t);

	if (err)
		FAIL("test run: %d errno %d", err, errno);
	rb_ret = (short)(t.retval >> 16);
	return (short)(t.retval & 0xffff);
}

static void show_fire(__u64 a, __u64 b)
{
	int perf = fire(a, b);

	printf("fire(%llu): perf %d ringbuf %d\n", (unsigned long long)a, perf, rb_ret);
}

/* --- ring buffer callbacks --- */
struct rb_ctx {
	int n;
	__u64 a[64], b[64];
	__u64 fail_at;
	int fail_ret;
};

static int on_rb(void *ctx, void *data, size_t size)
{
	struct rb_ctx *c = ctx;
	__u64 *v = data;

	if (size != 16)
		FAIL("ringbuf sample size %zu", size);
	if (c->n < 64) {
		c->a[c->n] = v[0];
		c->b[c->n] = v[1];
	}
	c->n++;
	return v[0] == c->fail_at ? c->fail_ret : 0;
}

static void show_rb(struct rb_ctx *c)
{
	for (int i = 0; i < c->n && i < 64; i++)
		printf("  sample a=%llu b=%llu\n", (unsigned long long)c->a[i], (unsigned long long)c->b[i]);
	c->n = 0;
}

/* --- perf buffer callbacks --- */
struct pb_ctx {
	int n;
	__u64 a[2048];
	__u32 size;
	int cpu;
	__u64 lost;
	int raw_n;
	__u32 raw_type[8];
	__u16 raw_size[8];
	int raw_ret[8];
};

static void on_pb(void *ctx, int cpu, void *data, __u32 size)
{
	struct pb_ctx *c = ctx;

	if (c->n < 2048)
		c->a[c->n] = ((__u64 *)data)[0];
	c->n++;
	c->size = size;
	c->cpu = cpu;
}

static void on_lost(void *ctx, int cpu, __u64 cnt)
{
	((struct pb_ctx *)ctx)->lost += cnt;
}

static enum bpf_perf_event_ret on_raw(void *ctx, int cpu, struct perf_event_header *e)
{
	struct pb_ctx *c = ctx;
	int i = c->raw_n++;

	if (i < 8) {
		c->raw_type[i] = e->type;
		c->raw_size[i] = e->size;
		return c->raw_ret[i];
	}
	return LIBBPF_PERF_EVENT_CONT;
}

static int epoll_ready(int epfd, int timeout_ms)
{
	struct epoll_event ev;

	return epoll_wait(epfd, &ev, 1, timeout_ms);
}

/* "what = r", checking errno == -r for a negative r */
static void show(const char *what, int r)
{
	int e = errno;

	printf("%s = %d%s\n", what, r, r < 0 && e != -r ? " ERRNO MISMATCH" : "");
}

static void show_ptr(const char *what, const void *p)
{
	int e = errno;

	printf("%s = %s errno %d\n", what, p ? "ptr" : "NULL", p ? 0 : e);
}

#define SHOW(what, call) (errno = 0, show(what, (call)))
#define SHOW_PTR(what, p) show_ptr(what, p)

static void ringbuf(int rb_fd, int arr_fd)
{
	struct rb_ctx c = { .fail_at = ~0ULL };
	struct ring_buffer *rb;
	long long t0;
	int epfd, r, e;

	printf("== ring_buffer\n");
	errno = 0;
	rb = ring_buffer__new(arr_fd, on_rb, &c, NULL);
	SHOW_PTR("ring_buffer__new(array)", rb);
	rb = ring_buffer__new(-1, on_rb, &c, NULL);
	SHOW_PTR("ring_buffer__new(-1)", rb);
	{
		struct { size_t sz; long x; } bigger = { sizeof(bigger), 1 };
		rb = ring_buffer__new(rb_fd, on_rb, &c, (void *)&bigger);
		SHOW_PTR("ring_buffer__new(opts with a non-zero tail)", rb);
	}
	rb = ring_buffer__new(rb_fd, on_rb, &c, NULL);
	SHOW_PTR("ring_buffer__new(ringbuf)", rb);
	if (!rb)
		exit(1);
	SHOW("ring_buffer__add(array)", ring_buffer__add(rb, arr_fd, on_rb, &c));
	SHOW("poll(0) empty", ring_buffer__poll(rb, 0));
	SHOW("consume empty", ring_buffer__consume(rb));

	for (int i = 1; i <= 3; i++)
		show_fire(i, i * 10);
	SHOW("poll(100)", ring_buffer__poll(rb, 100));
	show_rb(&c);

	/* callback errors: consumed up to the failing record, returned */
	c.fail_at = 5;
	c.fail_ret = -7;
	for (int i = 4; i <= 6; i++)
		fire(i, 0);
	errno = 0;
	r = ring_buffer__consume(rb);
	e = errno;
	show("consume with a failing callback", r);
	printf("errno %d\n", e);
	show_rb(&c);
	c.fail_at = ~0ULL;
	SHOW("consume the rest", ring_buffer__consume(rb));
	show_rb(&c);

	/* poll waits until the timeout */
	t0 = now_ms();
	SHOW("poll(50) empty", ring_buffer__poll(rb, 50));
	printf("# waited %lld ms\n", now_ms() - t0);
	printf("waited at least 40 ms: %d\n", now_ms() - t0 >= 40);

	/* the epoll fd */
	epfd = ring_buffer__epoll_fd(rb);
	printf("epoll fd valid: %d\n", epfd >= 0);
	SHOW("epoll_wait(0) empty", epoll_ready(epfd, 0));
	fire(7, 70);
	SHOW("epoll_wait(1000) after a record", epoll_ready(epfd, 1000));
	SHOW("consume", ring_buffer__consume(rb));
	SHOW("epoll_wait(0) consumed", epoll_ready(epfd, 0));
	show_rb(&c);

	/* libbpf >= 1.3 / 1.5 */
	{
		struct ring *(*ring_at)(struct ring_buffer *, unsigned int) = sym("ring_buffer__ring");
		size_t (*size)(const struct ring *) = sym("ring__size");
		size_t (*avail)(const struct ring *) = sym("ring__avail_data_size");
		unsigned long (*cons)(const struct ring *) = sym("ring__consumer_pos");
		unsigned long (*prod)(const struct ring *) = sym("ring__producer_pos");
		int (*map_fd)(const struct ring *) = sym("ring__map_fd");
		int (*consume_n)(struct ring *, size_t) = sym("ring__consume_n");
		int (*rb_consume_n)(struct ring_buffer *, size_t) = sym("ring_buffer__consume_n");

		if (ring_at && size && avail && cons && prod && map_fd && consume_n && rb_consume_n) {
			struct ring *r0 = ring_at(rb, 0), *r1;

			errno = 0;
			r1 = ring_at(rb, 1);
			e = errno;
			printf("# ring_buffer__ring(1) = %p errno %d\n", (void *)r1, e);
			printf("# ring__size %zu map_fd ok %d\n", size(r0), map_fd(r0) == rb_fd);
			fire(8, 0);
			fire(9, 0);
			fire(10, 0);
			printf("# avail %zu prod-cons %lu\n", avail(r0), prod(r0) - cons(r0));
			printf("# ring__consume_n(1) = %d\n", consume_n(r0, 1));
			printf("# ring_buffer__consume_n(5) = %d\n", rb_consume_n(rb, 5));
			printf("# avail %zu\n", avail(r0));
			c.n = 0;
		} else {
			printf("# ring__* not in this libbpf\n");
		}
	}
	ring_buffer__free(rb);
	ring_buffer__free(NULL);
}

static void perfbuf(int pa_fd, int rb_fd, int ncpus)
{
	static struct pb_ctx c;
	struct perf_buffer *pb;
	void *base;
	size_t sz;
	int epfd, r, failed;

	printf("== perf_buffer\n");
	errno = 0;
	pb = perf_buffer__new(pa_fd, 3, on_pb, on_lost, &c, NULL);
	SHOW_PTR("perf_buffer__new(page_cnt 3)", pb);
	pb = perf_buffer__new(rb_fd, 8, on_pb, on_lost, &c, NULL);
	SHOW_PTR("perf_buffer__new(ringbuf map)", pb);
	pb = perf_buffer__new(-1, 8, on_pb, on_lost, &c, NULL);
	SHOW_PTR("perf_buffer__new(-1)", pb);
	pb = perf_buffer__new(pa_fd, 8, on_pb, on_lost, &c, NULL);
	SHOW_PTR("perf_buffer__new(perf array)", pb);
	if (!pb)
		exit(1);
	printf("buffer_cnt = ncpus: %d\n", (int)perf_buffer__buffer_cnt(pb) == ncpus);
	printf("buffer_fd(0) valid: %d\n", perf_buffer__buffer_fd(pb, 0) >= 0);
	SHOW("buffer_fd(99)", perf_buffer__buffer_fd(pb, 99));
	SHOW("consume_buffer(99)", perf_buffer__consume_buffer(pb, 99));
	SHOW("poll(0) empty", perf_buffer__poll(pb, 0));
	SHOW("consume empty", perf_buffer__consume(pb));

	for (int i = 1; i <= 3; i++)
		show_fire(i, i * 10);
	SHOW("poll(100): ready buffers", perf_buffer__poll(pb, 100));
	printf("samples %d size %u cpu %d:", c.n, c.size, c.cpu);
	for (int i = 0; i < c.n; i++)
		printf(" %llu", (unsigned long long)c.a[i]);
	printf("\n");
	c.n = 0;

	SHOW("perf_buffer__buffer(0)", perf_buffer__buffer(pb, 0, &base, &sz));
	{
		struct perf_event_mmap_page *h = base;

		printf("size %zu data_size %llu head==tail %d\n", sz, (unsigned long long)h->data_size,
		       h->data_head == h->data_tail);
	}

	/* the epoll fd */
	epfd = perf_buffer__epoll_fd(pb);
	printf("epoll fd valid: %d\n", epfd >= 0);
	SHOW("epoll_wait(0) empty", epoll_ready(epfd, 0));
	fire(7, 70);
	SHOW("epoll_wait(1000) after a record", epoll_ready(epfd, 1000));
	SHOW("consume", perf_buffer__consume(pb));
	SHOW("epoll_wait(0) consumed", epoll_ready(epfd, 0));
	printf("samples %d\n", c.n);
	c.n = 0;

	/* lost records: 8 pages of 32-byte records overflow */
	failed = 0;
	for (int i = 0; i < 1500; i++)
		if (fire(1000 + i, 0))
			failed++;
	printf("outputs failed: %d\n", failed > 0);
	printf("# failed %d\n", failed);
	SHOW("consume", perf_buffer__consume(pb));
	printf("lost before the next record: %llu\n", (unsigned long long)c.lost);
	printf("# samples %d\n", c.n);
	printf("samples in order: %d\n", c.n > 1000 && c.a[0] == 1000 && c.a[c.n - 1] == 1000 + (unsigned)c.n - 1);
	c.n = 0;
	fire(5000, 0);
	SHOW("poll(100)", perf_buffer__poll(pb, 100));
	printf("lost reported: %d samples %d\n", c.lost > 0, c.n);
	/* the kernel keeps one byte free (CIRC_SPACE): one record fewer */
	printf("# lost %llu (failed %d)\n", (unsigned long long)c.lost, failed);
	c.n = 0;
	c.lost = 0;

	perf_buffer__free(pb);
	perf_buffer__free(NULL);
	/* the slots are cleared: the helper finds no ring */
	r = fire(1, 1);
	printf("perf output after free: %d\n", r);
}

static void perfbuf_raw(int pa_fd)
{
	static struct pb_ctx c;
	struct perf_event_attr attr = {
		.size = sizeof(attr),
		.type = PERF_TYPE_SOFTWARE,
		.config = PERF_COUNT_SW_BPF_OUTPUT,
		.sample_type = PERF_SAMPLE_RAW,
		.sample_period = 1,
		.wakeup_events = 1,
	};
	int cpus[1] = { 0 }, keys[1] = { 0 }, r, e;
	LIBBPF_OPTS(perf_buffer_raw_opts, o, .cpu_cnt = 1, .cpus = cpus, .map_keys = keys);
	struct perf_buffer *pb;

	printf("== perf_buffer raw\n");
	errno = 0;
	pb = perf_buffer__new_raw(pa_fd, 1, NULL, on_raw, &c, &o);
	SHOW_PTR("perf_buffer__new_raw(NULL attr)", pb);
	pb = perf_buffer__new_raw(pa_fd, 1, &attr, on_raw, &c, &o);
	SHOW_PTR("perf_buffer__new_raw", pb);
	if (!pb)
		exit(1);
	printf("buffer_cnt %zu\n", perf_buffer__buffer_cnt(pb));
	fire(1, 1);
	fire(2, 2);
	fire(3, 3);
	c.raw_ret[0] = LIBBPF_PERF_EVENT_DONE;
	c.raw_ret[1] = LIBBPF_PERF_EVENT_ERROR;
	c.raw_ret[2] = LIBBPF_PERF_EVENT_CONT;
	SHOW("consume_buffer (DONE)", perf_buffer__consume_buffer(pb, 0));
	printf("records %d\n", c.raw_n);
	errno = 0;
	r = perf_buffer__consume(pb);
	e = errno;
	show("consume (ERROR)", r);
	printf("records %d errno %d\n", c.raw_n, e);
	SHOW("poll (CONT)", perf_buffer__poll(pb, 100));
	printf("records %d\n", c.raw_n);
	for (int i = 0; i < c.raw_n; i++)
		printf("  type %u size %u\n", c.raw_type[i], c.raw_size[i]);
	perf_buffer__free(pb);
}

int main(void)
{
	cpu_set_t set;
	int rb_fd, pa_fd, arr_fd, ncpus;

	/* every test run on CPU 0: BPF_F_CURRENT_CPU is its slot */
	CPU_ZERO(&set);
	CPU_SET(0, &set);
	CHECK(sched_setaffinity(0, sizeof(set), &set) == 0);
	setvbuf(stdout, NULL, _IOLBF, 0);
	ncpus = libbpf_num_possible_cpus();
	rb_fd = bpf_map_create(BPF_MAP_TYPE_RINGBUF, "rb", 0, 0, 4096, NULL);
	pa_fd = bpf_map_create(BPF_MAP_TYPE_PERF_EVENT_ARRAY, "pa", 4, 4, ncpus, NULL);
	arr_fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "arr", 4, 4, 1, NULL);
	CHECK(rb_fd >= 0 && pa_fd >= 0 && arr_fd >= 0);
	prog = load_prog(rb_fd, pa_fd);

	/* the program's helpers fail without consumers: -ENOENT from the
	 * perf array (empty slot); the ring buffer takes the record */
	show_fire(0, 0);
	{
		struct rb_ctx c = {};
		struct ring_buffer *rb = ring_buffer__new(rb_fd, on_rb, &c, NULL);

		SHOW("drain", ring_buffer__consume(rb));
		ring_buffer__free(rb);
	}

	ringbuf(rb_fd, arr_fd);
	perfbuf(pa_fd, rb_fd, ncpus);
	perfbuf_raw(pa_fd);

	printf("== user_ring_buffer\n");
	errno = 0;
	SHOW_PTR("user_ring_buffer__new(ringbuf)", user_ring_buffer__new(rb_fd, NULL));
	user_ring_buffer__free(NULL);
	printf("done\n");
	return 0;
}
