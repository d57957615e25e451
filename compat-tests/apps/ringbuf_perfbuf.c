// SPDX-License-Identifier: MIT OR Apache-2.0
/* ringbuf_perfbuf: ring_buffer__new/add/poll/consume/epoll_fd/free over
 * three rings (one of them a PERF_EVENT_ARRAY turned into a RINGBUF with
 * bpf_map__set_type/key_size/value_size/max_entries, as libbpf-tools'
 * bpf_buffer does), a callback error, a full ring; and
 * perf_buffer__new/poll/free with samples from CPU 0 and CPU 1. */
#include "app.h"
#include "ringbuf_perfbuf.skel.h"

struct event {
	__u32 seq;
	__u32 kind;
	__u64 val;
};

struct rb_ctx {
	const char *name;
	struct lines *out;
	int count_only;
	int count;
	__u64 fail_val;
};

static int on_rb(void *ctx, void *data, size_t size)
{
	struct rb_ctx *c = ctx;
	const struct event *e = data;

	c->count++;
	if (c->count_only)
		return 0;
	lines_add(c->out, "%s #%02u kind=%u val=%llu size=%zu", c->name, e->seq, e->kind,
		  size >= sizeof(*e) ? (unsigned long long)e->val : 0ULL, size);
	if (size >= sizeof(*e) && e->val == c->fail_val)
		return -42;
	return 0;
}

struct pb_ctx {
	struct lines *out;
	__u64 lost;
	int samples;
};

static void on_sample(void *ctx, int cpu, void *data, __u32 size)
{
	struct pb_ctx *c = ctx;
	const struct event *e = data;

	c->samples++;
	lines_add(c->out, "pb cpu=%d #%02u kind=%u val=%llu size=%u", cpu, e->seq, e->kind,
		  (unsigned long long)e->val, size);
}

static void on_lost(void *ctx, int cpu, __u64 cnt)
{
	((struct pb_ctx *)ctx)->lost += cnt;
}

static void section_ringbuf(struct ringbuf_perfbuf_bpf *skel)
{
	int emit = bpf_program__fd(skel->progs.rb_emit);
	struct lines l = {};
	struct rb_ctx c1 = { "rb", &l, 0, 0, ~0ULL }, c2 = { "rb_small", &l, 1, 0, ~0ULL };
	struct rb_ctx c3 = { "events", &l, 0, 0, ~0ULL };
	struct ring_buffer *rbm;
	int first, total, polls, r;

	errno = 0;
	rbm = ring_buffer__new(bpf_map__fd(skel->maps.pb), on_rb, &c1, NULL);
	printf("ring_buffer__new on a perf array -> %s errno %s\n", rbm ? "rb" : "NULL", ERRNO_RC());
	rbm = ring_buffer__new(bpf_map__fd(skel->maps.rb), on_rb, &c1, NULL);
	CHECKED("ring_buffer__new", rbm != NULL);
	if (!rbm)
		return;
	SHOW("ring_buffer__add rb_small", ring_buffer__add(rbm, bpf_map__fd(skel->maps.rb_small), on_rb, &c2));
	SHOW("ring_buffer__add events", ring_buffer__add(rbm, bpf_map__fd(skel->maps.events), on_rb, &c3));
	SHOW("ring_buffer__add perf array", ring_buffer__add(rbm, bpf_map__fd(skel->maps.pb), on_rb, &c3));
	CHECKED("ring_buffer__epoll_fd", ring_buffer__epoll_fd(rbm) >= 0);
	SHOW("poll empty", ring_buffer__poll(rbm, 0));

	SHOW("rb output", run_on(emit, 0, 0, 10, 0, 0));
	SHOW("rb reserve+submit", run_on(emit, 0, 1, 11, 0, 0));
	SHOW("rb reserve+discard", run_on(emit, 0, 2, 12, 0, 0));
	SHOW("rb reserve too big", run_on(emit, 0, 3, 13, 0, 0));
	SHOW("rb output 13 bytes", run_on(emit, 0, 4, 14, 0, 0));
	SHOW("rb output bad flags", run_on(emit, 0, 7, 15, 0, 0));
	SHOW("rb query avail data", run_on(emit, 0, 5, 0, 0, 0));
	SHOW("rb query ring size", run_on(emit, 0, 6, 0, 0, 0));
	SHOW("events (now a ringbuf) output", RUN(skel->progs.events_rb, 5, 0, 0, 0));
	SHOW("rb_small records that fit", RUN(skel->progs.rb_fill, 0, 0, 0, 0));

	/* The kernel signals each ring's epoll readiness from irq_work, so one
	 * poll may see only some of the rings: poll until every record came. */
	first = ring_buffer__poll(rbm, 100);
	for (total = first, polls = 1; first >= 0 && total < 174 && polls < 20; polls++) {
		r = ring_buffer__poll(rbm, 100);
		if (r < 0)
			break;
		total += r;
	}
	CHECKED("first poll consumed records", first > 0);
	printf("~first poll %d, polls %d\n", first, polls);
	printf("polls consumed %d records\n", total);
	lines_flush(&l);
	printf("rb_small consumed %d\n", c2.count);
	SHOW("poll again", ring_buffer__poll(rbm, 0));
	SHOW("rb query avail data after poll", run_on(emit, 0, 5, 0, 0, 0));

	/* a callback error stops consumption; the failing record is consumed */
	c1.fail_val = 21;
	run_on(emit, 0, 0, 20, 0, 0);
	run_on(emit, 0, 0, 21, 0, 0);
	run_on(emit, 0, 0, 22, 0, 0);
	SHOW("consume with failing callback", ring_buffer__consume(rbm));
	lines_flush(&l);
	SHOW("consume rest", ring_buffer__consume(rbm));
	lines_flush(&l);
	ring_buffer__free(rbm);
	ring_buffer__free(NULL);
}

static void section_perfbuf(struct ringbuf_perfbuf_bpf *skel)
{
	int emit = bpf_program__fd(skel->progs.pb_emit), fd = bpf_map__fd(skel->maps.pb);
	struct lines l = {};
	struct pb_ctx c = { &l, 0, 0 };
	struct perf_buffer *pbm;
	int first, polls;

	errno = 0;
	pbm = perf_buffer__new(fd, 3, on_sample, on_lost, &c, NULL);
	printf("perf_buffer__new 3 pages -> %s errno %s\n", pbm ? "pb" : "NULL", ERRNO_RC());
	errno = 0;
	pbm = perf_buffer__new(bpf_map__fd(skel->maps.rb), 8, on_sample, on_lost, &c, NULL);
	printf("perf_buffer__new on a ringbuf -> %s errno %s\n", pbm ? "pb" : "NULL", ERRNO_RC());
	pbm = perf_buffer__new(fd, 8, on_sample, on_lost, &c, NULL);
	CHECKED("perf_buffer__new", pbm != NULL);
	if (!pbm)
		return;
	SHOW("pb poll empty", perf_buffer__poll(pbm, 0));
	SHOW("pb output cpu0", run_on(emit, 0, 0, 1, 0, 0));
	SHOW("pb output cpu0", run_on(emit, 0, 0, 2, 0, 0));
	SHOW("pb output cpu1", run_on(emit, 1, 0, 3, 0, 0));
	SHOW("pb output 12 bytes cpu0", run_on(emit, 0, 3, 4, 0, 0));
	SHOW("pb output index 1 from cpu0", run_on(emit, 0, 1, 5, 1, 0));
	SHOW("pb output index 1 from cpu1", run_on(emit, 1, 1, 6, 1, 0));
	SHOW("pb output index 1000", run_on(emit, 0, 1, 7, 1000, 0));
	SHOW("pb output bad flags", run_on(emit, 0, 2, 8, 0, 0));
	/* as for rings, readiness comes from irq_work: poll until all 5 came */
	first = perf_buffer__poll(pbm, 100);
	for (polls = 1; first >= 0 && c.samples < 5 && polls < 20; polls++)
		if (perf_buffer__poll(pbm, 100) < 0)
			break;
	CHECKED("pb first poll counts ready buffers (1 or 2), not records", first >= 1 && first <= 2);
	printf("~pb first poll %d, polls %d\n", first, polls);
	printf("pb samples %d\n", c.samples);
	lines_flush(&l);
	SHOW("pb poll again", perf_buffer__poll(pbm, 0));
	printf("pb lost %llu\n", (unsigned long long)c.lost);
	perf_buffer__free(pbm);
}

int main(void)
{
	struct ringbuf_perfbuf_bpf *skel;
	long page = sysconf(_SC_PAGESIZE);
	int err;

	app_init("ringbuf_perfbuf");
	skel = ringbuf_perfbuf_bpf__open();
	if (!skel)
		fatal("open", -errno);
	SHOW("set_type events RINGBUF", bpf_map__set_type(skel->maps.events, BPF_MAP_TYPE_RINGBUF));
	SHOW("set_key_size events 0", bpf_map__set_key_size(skel->maps.events, 0));
	SHOW("set_value_size events 0", bpf_map__set_value_size(skel->maps.events, 0));
	SHOW("set_max_entries events page", bpf_map__set_max_entries(skel->maps.events, page));
	SHOW("set_autoload events_pb off", bpf_program__set_autoload(skel->progs.events_pb, false));
	err = ringbuf_perfbuf_bpf__load(skel);
	SHOW("load", err);
	if (err)
		fatal("load", err);
	printf("events type %d\n", bpf_map__type(skel->maps.events));
	section_ringbuf(skel);
	section_perfbuf(skel);
	ringbuf_perfbuf_bpf__destroy(skel);
	printf("done\n");
	return 0;
}
