// SPDX-License-Identifier: MIT OR Apache-2.0
/* lowlevel_api: the fd-based API without an object: bpf_map_create (valid
 * and invalid, the RINGBUF probe), batch operations (lookup,
 * lookup_and_delete, update, delete) on a hash and an array, bpf_prog_load
 * of raw instructions (one using a map fd, a TRACING probe the way
 * libbpf-tools' probe_tp_btf does it, rejected programs), the rules of
 * BPF_PROG_TEST_RUN for raw_tp programs, libbpf_num_possible_cpus and
 * libbpf_get_error. */
#include "app.h"

#define INSN(c, d, s, o, i) ((struct bpf_insn){ .code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i) })
#define MOV_IMM(d, i) INSN(BPF_ALU64 | BPF_MOV | BPF_K, d, 0, 0, i)
#define EXIT() INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)

static int test_run(int fd, struct bpf_test_run_opts *opts, const char *label)
{
	int r = bpf_prog_test_run_opts(fd, opts);

	printf("%s -> %s", label, rc(r));
	if (!r)
		printf(" retval %u", opts->retval);
	printf("\n");
	return r;
}

static void section_strerror(void)
{
	char buf[128], tiny[8];
	int r;

	r = libbpf_strerror(-ENOENT, buf, sizeof(buf));
	printf("strerror -ENOENT -> %s '%s'\n", rc(r), buf);
	r = libbpf_strerror(ENOENT, buf, sizeof(buf));
	printf("strerror ENOENT -> %s '%s'\n", rc(r), buf);
	r = libbpf_strerror(-LIBBPF_ERRNO__VERIFY, buf, sizeof(buf));
	printf("strerror -LIBBPF_ERRNO__VERIFY -> %s '%s'\n", rc(r), buf);
	r = libbpf_strerror(-LIBBPF_ERRNO__PROG2BIG, buf, sizeof(buf));
	printf("strerror -LIBBPF_ERRNO__PROG2BIG -> %s '%s'\n", rc(r), buf);
	r = libbpf_strerror(-(__LIBBPF_ERRNO__START + 99), buf, sizeof(buf));
	printf("strerror unknown libbpf code -> %s '%s'\n", rc(r), buf);
	r = libbpf_strerror(-ENOENT, tiny, sizeof(tiny));
	printf("strerror into 8 bytes -> %s '%s'\n", rc(r), tiny);
}

static void section_map_create(void)
{
	LIBBPF_OPTS(bpf_map_create_opts, np, .map_flags = BPF_F_NO_PREALLOC);
	DECLARE_LIBBPF_OPTS(bpf_map_create_opts, bad_flags, .map_flags = 1U << 30);
	long page = sysconf(_SC_PAGESIZE);
	int fd;

#define TRY(label, expr) do { fd = (expr); printf("%s -> %s\n", label, fd >= 0 ? "fd" : rc(fd)); if (fd >= 0) close(fd); } while (0)
	TRY("create hash", bpf_map_create(BPF_MAP_TYPE_HASH, "ll_hash", 4, 8, 64, NULL));
	TRY("create hash NO_PREALLOC", bpf_map_create(BPF_MAP_TYPE_HASH, "ll_hash_np", 4, 8, 64, &np));
	TRY("create hash NULL name", bpf_map_create(BPF_MAP_TYPE_HASH, NULL, 4, 8, 64, NULL));
	TRY("create hash long name", bpf_map_create(BPF_MAP_TYPE_HASH, "a_rather_long_map_name", 4, 8, 64, NULL));
	TRY("create hash bad name", bpf_map_create(BPF_MAP_TYPE_HASH, "bad name!", 4, 8, 64, NULL));
	TRY("create hash key_size 0", bpf_map_create(BPF_MAP_TYPE_HASH, "k0", 0, 8, 64, NULL));
	TRY("create hash max_entries 0", bpf_map_create(BPF_MAP_TYPE_HASH, "m0", 4, 8, 0, NULL));
	TRY("create hash bad flags", bpf_map_create(BPF_MAP_TYPE_HASH, "bf", 4, 8, 64, &bad_flags));
	TRY("create array value_size 0", bpf_map_create(BPF_MAP_TYPE_ARRAY, "v0", 4, 0, 4, NULL));
	TRY("create array key_size 8", bpf_map_create(BPF_MAP_TYPE_ARRAY, "k8", 8, 8, 4, NULL));
	TRY("create type 9999", bpf_map_create(9999, "t", 4, 8, 4, NULL));
	TRY("create ringbuf page (probe)", bpf_map_create(BPF_MAP_TYPE_RINGBUF, NULL, 0, 0, page, NULL));
	TRY("create ringbuf 1000 bytes", bpf_map_create(BPF_MAP_TYPE_RINGBUF, NULL, 0, 0, 1000, NULL));
	TRY("create ringbuf key_size 4", bpf_map_create(BPF_MAP_TYPE_RINGBUF, NULL, 4, 0, page, NULL));
#undef TRY
}

static void section_batch(void)
{
	LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = 0, .flags = 0);
	LIBBPF_OPTS(bpf_map_batch_opts, lock, .elem_flags = BPF_F_LOCK);
	int hash = bpf_map_create(BPF_MAP_TYPE_HASH, "ll_batch", 4, 8, 64, NULL);
	int arr = bpf_map_create(BPF_MAP_TYPE_ARRAY, "ll_arr", 4, 8, 10, NULL);
	__u32 keys[128], count, i, n, total, dups, ok;
	__u64 vals[128], in_batch, out_batch;
	void *in;
	int r;

	for (i = 0; i < 50; i++)
		keys[i] = i, vals[i] = (__u64)i * i;
	count = 50;
	SHOW("update_batch hash 50", bpf_map_update_batch(hash, keys, vals, &count, &opts));
	printf("update_batch count %u\n", count);
	count = 0;
	SHOW("lookup_batch count 0", bpf_map_lookup_batch(hash, NULL, &out_batch, keys, vals, &count, &opts));
	count = 4;
	SHOW("lookup_batch F_LOCK", bpf_map_lookup_batch(hash, NULL, &out_batch, keys, vals, &count, &lock));

	memset(keys, 0xff, sizeof(keys));
	for (in = NULL, total = 0;; in = &in_batch) {
		count = 16;
		r = bpf_map_lookup_batch(hash, in, &out_batch, keys + total, vals + total, &count, &opts);
		if ((r && r != -ENOENT) || count > 16)
			break;
		total += count;
		in_batch = out_batch;
		if (r || total > 50)
			break;
	}
	qsort(keys, total, sizeof(keys[0]), cmp_u32);
	for (i = 1, dups = 0; i < total; i++)
		dups += keys[i] == keys[i - 1];
	printf("lookup_batch hash ended %s total %u duplicates %u\n", rc(r), total, dups);

	/* keys and values were sorted apart: check through lookups */
	for (i = 0, ok = 0; i < total; i++)
		ok += bpf_map_lookup_elem(hash, &keys[i], &vals[i]) == 0 && vals[i] == (__u64)keys[i] * keys[i];
	printf("lookup_batch keys found %u\n", ok);

	for (i = 0; i < 5; i++)
		keys[i] = i * 10;
	count = 5;
	SHOW("delete_batch 5 keys", bpf_map_delete_batch(hash, keys, &count, &opts));
	keys[0] = 1000;
	count = 1;
	SHOW("delete_batch missing key", bpf_map_delete_batch(hash, keys, &count, &opts));
	printf("delete_batch missing count %u\n", count);

	for (in = NULL, total = 0, n = 0;; in = &in_batch, n++) {
		count = 8;
		r = bpf_map_lookup_and_delete_batch(hash, in, &out_batch, keys, vals, &count, &opts);
		if ((r && r != -ENOENT) || count > 16)
			break;
		total += count;
		in_batch = out_batch;
		if (r || n > 50)
			break;
	}
	printf("lookup_and_delete_batch hash ended %s total %u\n", rc(r), total);
	SHOW("hash next_key after drain", bpf_map_get_next_key(hash, NULL, keys));

	for (i = 0; i < 10; i++)
		keys[i] = i, vals[i] = 100 + i;
	count = 10;
	SHOW("update_batch array 10", bpf_map_update_batch(arr, keys, vals, &count, &opts));
	for (in = NULL, n = 0; n < 5; in = &in_batch, n++) {
		count = 4;
		memset(keys, 0xff, sizeof(keys));
		r = bpf_map_lookup_batch(arr, in, &in_batch, keys, vals, &count, &opts);
		printf("lookup_batch array -> %s count %u", rc(r), count);
		for (i = 0; i < count; i++)
			printf(" %u=%llu", keys[i], (unsigned long long)vals[i]);
		printf("\n");
		if (r)
			break;
	}
	count = 4;
	SHOW("lookup_and_delete_batch array",
	     bpf_map_lookup_and_delete_batch(arr, NULL, &out_batch, keys, vals, &count, &opts));
	close(hash);
	close(arr);
}

static void section_prog_load(void)
{
	struct bpf_insn ret42[] = { MOV_IMM(BPF_REG_0, 42), EXIT() };
	struct bpf_insn no_exit[] = { MOV_IMM(BPF_REG_0, 0) };
	struct bpf_insn zero[] = { MOV_IMM(BPF_REG_0, 0), EXIT() };
	int map = bpf_map_create(BPF_MAP_TYPE_HASH, "ll_counter", 4, 8, 4, NULL);
	struct bpf_insn counter[] = {
		INSN(BPF_LD | BPF_DW | BPF_IMM, BPF_REG_1, BPF_PSEUDO_MAP_FD, 0, map),
		INSN(0, 0, 0, 0, 0),
		INSN(BPF_ST | BPF_MEM | BPF_W, BPF_REG_10, 0, -4, 7),
		INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_2, BPF_REG_10, 0, 0),
		INSN(BPF_ALU64 | BPF_ADD | BPF_K, BPF_REG_2, 0, 0, -4),
		INSN(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_map_lookup_elem),
		INSN(BPF_JMP | BPF_JEQ | BPF_K, BPF_REG_0, 0, 4, 0),
		MOV_IMM(BPF_REG_1, 1),
		INSN(BPF_STX | BPF_ATOMIC | BPF_DW, BPF_REG_0, BPF_REG_1, 0, BPF_ADD),
		MOV_IMM(BPF_REG_0, 1),
		EXIT(),
		MOV_IMM(BPF_REG_0, 0),
		EXIT(),
	};
	char log[4096] = "";
	LIBBPF_OPTS(bpf_prog_load_opts, logged, .log_buf = log, .log_size = sizeof(log), .log_level = 1);
	LIBBPF_OPTS(bpf_prog_load_opts, tp_btf, .expected_attach_type = BPF_TRACE_RAW_TP);
	__u64 args[13] = {}, v = 10;
	__u32 key = 7;
	LIBBPF_OPTS(bpf_test_run_opts, run, .ctx_in = args, .ctx_size_in = 8);
	int fd, cfd, i;

	fd = bpf_prog_load(BPF_PROG_TYPE_RAW_TRACEPOINT, "ret42", "GPL", ret42, 2, NULL);
	CHECKED("prog_load ret42", fd >= 0);
	test_run(fd, &run, "test_run ret42");
	run.ctx_size_in = 0, run.ctx_in = NULL;
	test_run(fd, &run, "test_run no ctx");
	run.ctx_in = args, run.ctx_size_in = sizeof(args);
	test_run(fd, &run, "test_run ctx of 13 u64");
	run.ctx_size_in = 8, run.data_in = args, run.data_size_in = 8;
	test_run(fd, &run, "test_run with data_in");
	run.data_in = NULL, run.data_size_in = 0, run.repeat = 5;
	test_run(fd, &run, "test_run with repeat");
	run.repeat = 0, run.cpu = 1;
	test_run(fd, &run, "test_run cpu without flag");
	run.flags = BPF_F_TEST_RUN_ON_CPU, run.cpu = 4096;
	test_run(fd, &run, "test_run on cpu 4096");
	run.cpu = 1;
	test_run(fd, &run, "test_run on cpu 1");
	close(fd);

	bpf_map_update_elem(map, &key, &v, BPF_ANY);
	cfd = bpf_prog_load(BPF_PROG_TYPE_RAW_TRACEPOINT, "ll_counter", "GPL", counter,
			    ARRAY_LEN(counter), NULL);
	CHECKED("prog_load with map fd", cfd >= 0);
	run = (struct bpf_test_run_opts){ .sz = sizeof(run) };
	for (i = 0; i < 3; i++)
		test_run(cfd, &run, "test_run counter");
	bpf_map_lookup_elem(map, &key, &v);
	printf("counter[7] = %llu\n", (unsigned long long)v);
	bpf_map_delete_elem(map, &key);
	test_run(cfd, &run, "test_run counter without key");
	close(cfd);
	close(map);

	fd = bpf_prog_load(BPF_PROG_TYPE_RAW_TRACEPOINT, "no_exit", "GPL", no_exit, 1, &logged);
	printf("prog_load without exit -> %s log %s\n", fd >= 0 ? "fd" : rc(fd), YESNO(log[0] != 0));
	printf("~log: %.*s\n", (int)strcspn(log, "\n"), log);
	fd = bpf_prog_load(BPF_PROG_TYPE_RAW_TRACEPOINT, "empty", "GPL", zero, 0, NULL);
	printf("prog_load 0 insns -> %s\n", fd >= 0 ? "fd" : rc(fd));
	fd = bpf_prog_load(9999, "badtype", "GPL", zero, 2, NULL);
	printf("prog_load type 9999 -> %s\n", fd >= 0 ? "fd" : rc(fd));

	/* libbpf-tools' probe_tp_btf */
	tp_btf.attach_btf_id = libbpf_find_vmlinux_btf_id("sched_switch", BPF_TRACE_RAW_TP);
	fd = bpf_prog_load(BPF_PROG_TYPE_TRACING, NULL, "GPL", zero, 2, &tp_btf);
	/* The answer picks the tool's code path: userbpf's userspace backend
	 * serves no tp_btf programs and says so. */
	printf("~prog_load TRACING tp_btf probe -> %s\n", fd >= 0 ? "fd" : rc(fd));
	if (fd >= 0)
		close(fd);
}

int main(void)
{
	struct bpf_object *none;
	int n;

	app_init("lowlevel_api");
	n = libbpf_num_possible_cpus();
	printf("~possible cpus %d\n", n);
	CHECKED("num_possible_cpus > 0 and stable", n > 0 && n == libbpf_num_possible_cpus());
	errno = ENOENT;
	SHOW("libbpf_get_error(NULL) with errno ENOENT", libbpf_get_error(NULL));
	SHOW("libbpf_get_error(valid)", libbpf_get_error(&n));
	errno = 0;
	none = bpf_object__open("/nonexistent/object.bpf.o");
	printf("open missing file -> %s errno %s get_error %s\n", none ? "obj" : "NULL", ERRNO_RC(),
	       rc(libbpf_get_error(none)));
	section_strerror();
	section_map_create();
	section_batch();
	section_prog_load();
	printf("done\n");
	return 0;
}
