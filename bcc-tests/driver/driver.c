// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The user-space half of six libbpf-tools (bcc v0.26.0: opensnoop,
 * statsnoop, syscount, sigsnoop, mountsnoop, execsnoop), run on the BPF
 * object that Debian's binary embeds, through whatever libbpf.so.1 the
 * dynamic loader finds (ours, with LD_LIBRARY_PATH).
 *
 *   driver TOOL OBJECT PID
 *   driver execsnoop OBJECT UID
 *
 * Does what `TOOL -p PID` does (sigsnoop: `sigsnoop -k -p PID`; execsnoop,
 * which has no pid filter: `execsnoop -x -u UID`, failed execs included,
 * the max-args default of 20): open the
 * object, set the .rodata filters the tool sets, disable the programs the
 * tool disables, load, attach, then read the tool's output (perf buffer
 * or ring buffer `events`; syscount: its `data` map) and print one line
 * per event, key=value, in a stable format. The skeleton is replaced by
 * lookups by name: .rodata variables through the DATASEC of the object's
 * BTF, programs and maps by name.
 *
 * Output (stdout, line buffered):
 *   prog NAME user|kernel       after load: where each program went
 *   attached N                  after every link is created
 *   open pid= uid= ret= flags= comm= path=          opensnoop
 *   stat pid= ret= comm= path=                      statsnoop
 *   signal pid= tpid= sig= ret= comm=               sigsnoop
 *   mount op= pid= tid= ret= flags= mnt_ns= comm= fs= src= dest= data=
 *   exec pid= ppid= uid= ret= argc= comm= args=ARG0 ARG1...      execsnoop
 *                               (args as execsnoop prints them: the path
 *                               execve was given, then argv[1..]; " ..."
 *                               when there were more than max_args)
 *   seen nr=N                   syscount, while running: a key appeared
 *   count nr=N count=C          syscount, at the end (sorted by nr)
 *   lost cpu=C n=N              lost perf samples (a failure)
 *   end                         after stdin closed and everything was read
 * Errors go to stderr with a non-zero exit status.
 *
 * The run ends when stdin reaches EOF (or reads a line "stop").
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#define TASK_COMM_LEN 16
#define NAME_MAX 255
#define PERF_BUFFER_PAGES 64
#define POLL_MS 20

/* opensnoop.h (v0.26.0) */
struct open_event {
	__u64 ts;
	pid_t pid;
	uid_t uid;
	int ret;
	int flags;
	__u64 callers[2];
	char comm[TASK_COMM_LEN];
	char fname[NAME_MAX];
};

/* statsnoop.h */
struct stat_event {
	__u64 ts_ns;
	__u32 pid;
	int ret;
	char comm[TASK_COMM_LEN];
	char pathname[NAME_MAX];
};

/* sigsnoop.h (also in the object's BTF: checked against it) */
struct sig_event {
	__u32 pid;
	__u32 tpid;
	int sig;
	int ret;
	char comm[TASK_COMM_LEN];
};

/* mountsnoop.h */
#define FS_NAME_LEN 8
#define DATA_LEN 512
#define PATH_MAX_ 4096
enum mount_op { OP_MOUNT, OP_UMOUNT };
struct mount_event {
	__u64 delta;
	__u64 flags;
	__u32 pid;
	__u32 tid;
	unsigned int mnt_ns;
	int ret;
	char comm[TASK_COMM_LEN];
	char fs[FS_NAME_LEN];
	char src[PATH_MAX_];
	char dest[PATH_MAX_];
	char data[DATA_LEN];
	enum mount_op op;
};

/* execsnoop.h */
#define ARGSIZE 128
#define TOTAL_MAX_ARGS 60
#define DEFAULT_MAXARGS 20
#define FULL_MAX_ARGS_ARR (TOTAL_MAX_ARGS * ARGSIZE)
struct exec_event {
	pid_t pid;
	pid_t ppid;
	uid_t uid;
	int retval;
	int args_count;
	unsigned int args_size;
	char comm[TASK_COMM_LEN];
	char args[FULL_MAX_ARGS_ARR];
};
#define EXEC_BASE_SIZE __builtin_offsetof(struct exec_event, args)

/* syscount.h */
#define MAX_ENTRIES 8192
struct data_t {
	__u64 count;
	__u64 total_ns;
	char comm[TASK_COMM_LEN];
};

static const char *tool;
static struct bpf_object *obj;

static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "driver %s: ", tool ? tool : "?");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static int print_fn(enum libbpf_print_level level, const char *fmt, va_list args)
{
	if (level == LIBBPF_DEBUG)
		return 0;
	return vfprintf(stderr, fmt, args);
}

/* ---- the skeleton's job, by name ---- */

static struct bpf_map *map_by_suffix(const char *suffix)
{
	struct bpf_map *m;
	size_t n = strlen(suffix);

	bpf_object__for_each_map(m, obj) {
		const char *name = bpf_map__name(m);
		size_t len = strlen(name);

		if (len >= n && strcmp(name + len - n, suffix) == 0)
			return m;
	}
	return NULL;
}

static struct bpf_map *map_named(const char *name)
{
	struct bpf_map *m = bpf_object__find_map_by_name(obj, name);

	if (!m)
		die("no map '%s' in the object", name);
	return m;
}

static struct bpf_program *prog_named(const char *name)
{
	struct bpf_program *p = bpf_object__find_program_by_name(obj, name);

	if (!p)
		die("no program '%s' in the object", name);
	return p;
}

/*
 * obj->rodata->NAME = *value: the variable's offset comes from the
 * .rodata DATASEC of the object's BTF (fixed up at open, as libbpf does).
 */
static void set_rodata(const char *name, const void *value, size_t size)
{
	struct bpf_map *map = map_by_suffix(".rodata");
	struct btf *btf = bpf_object__btf(obj);
	const struct btf_type *sec;
	const struct btf_var_secinfo *vsi;
	size_t map_size = 0;
	char *data;
	int id, i;

	if (!map || !btf)
		die("no .rodata map or no BTF");
	data = bpf_map__initial_value(map, &map_size);
	if (!data)
		die("bpf_map__initial_value(.rodata) failed");
	id = btf__find_by_name_kind(btf, ".rodata", BTF_KIND_DATASEC);
	if (id < 0)
		die("no .rodata DATASEC in the BTF");
	sec = btf__type_by_id(btf, id);
	vsi = btf_var_secinfos(sec);
	for (i = 0; i < btf_vlen(sec); i++, vsi++) {
		const struct btf_type *var = btf__type_by_id(btf, vsi->type);

		if (strcmp(btf__name_by_offset(btf, var->name_off), name) != 0)
			continue;
		if (vsi->size != size || vsi->offset + size > map_size)
			die(".rodata %s: size %u at %u (map %zu), expected size %zu", name,
			    vsi->size, vsi->offset, map_size, size);
		memcpy(data + vsi->offset, value, size);
		return;
	}
	die(".rodata has no variable '%s'", name);
}

static void set_rodata_u32(const char *name, __u32 v) { set_rodata(name, &v, sizeof(v)); }
static void set_rodata_int(const char *name, int v) { set_rodata(name, &v, sizeof(v)); }
static void set_rodata_bool(const char *name, bool v) { set_rodata(name, &v, sizeof(v)); }

/* The byte offset of MEMBER in struct NAME of the object's BTF, -1 if absent. */
static long btf_member_offset(const char *sname, const char *member, __u32 *ssize)
{
	struct btf *btf = bpf_object__btf(obj);
	const struct btf_type *t;
	const struct btf_member *m;
	int id, i;

	id = btf__find_by_name_kind(btf, sname, BTF_KIND_STRUCT);
	if (id < 0)
		return -1;
	t = btf__type_by_id(btf, id);
	if (ssize)
		*ssize = t->size;
	m = btf_members(t);
	for (i = 0; i < btf_vlen(t); i++, m++) {
		if (strcmp(btf__name_by_offset(btf, m->name_off), member) == 0)
			return btf_member_bit_offset(t, i) / 8;
	}
	return -1;
}

#define CHECK_MEMBER(sname, ctype, member)                                                  \
	do {                                                                                \
		long off = btf_member_offset(sname, #member, NULL);                         \
		if (off != (long)__builtin_offsetof(ctype, member))                         \
			die("struct %s.%s at %ld in the object's BTF, %zu in the header", sname, \
			    #member, off, __builtin_offsetof(ctype, member));              \
	} while (0)

/* ---- output ---- */

static int str_len(const char *s, size_t max) { return (int)strnlen(s, max); }
#define STR(field) str_len(field, sizeof(field)), field

static void handle_lost(void *ctx, int cpu, __u64 n)
{
	(void)ctx;
	printf("lost cpu=%d n=%llu\n", cpu, (unsigned long long)n);
}

static void short_event(__u32 size, size_t need)
{
	die("event of %u bytes, struct event has %zu", size, need);
}

static void handle_open(void *ctx, int cpu, void *data, __u32 size)
{
	const struct open_event *e = data;

	(void)ctx, (void)cpu;
	if (size < sizeof(*e))
		short_event(size, sizeof(*e));
	printf("open pid=%d uid=%u ret=%d flags=0x%x comm=%.*s path=%.*s\n", e->pid, e->uid,
	       e->ret, e->flags, STR(e->comm), STR(e->fname));
}

static void handle_stat(void *ctx, int cpu, void *data, __u32 size)
{
	const struct stat_event *e = data;

	(void)ctx, (void)cpu;
	if (size < sizeof(*e))
		short_event(size, sizeof(*e));
	printf("stat pid=%u ret=%d comm=%.*s path=%.*s\n", e->pid, e->ret, STR(e->comm),
	       STR(e->pathname));
}

static void handle_signal(void *ctx, int cpu, void *data, __u32 size)
{
	const struct sig_event *e = data;

	(void)ctx, (void)cpu;
	if (size < sizeof(*e))
		short_event(size, sizeof(*e));
	printf("signal pid=%u tpid=%d sig=%d ret=%d comm=%.*s\n", e->pid, (int)e->tpid, e->sig,
	       e->ret, STR(e->comm));
}

static int handle_mount(void *ctx, void *data, size_t size)
{
	const struct mount_event *e = data;

	(void)ctx;
	if (size < sizeof(*e))
		short_event(size, sizeof(*e));
	printf("mount op=%s pid=%u tid=%u ret=%d flags=0x%llx mnt_ns=%u comm=%.*s fs=%.*s "
	       "src=%.*s dest=%.*s data=%.*s\n",
	       e->op == OP_MOUNT ? "MOUNT" : e->op == OP_UMOUNT ? "UMOUNT" : "?", e->pid, e->tid,
	       e->ret, (unsigned long long)e->flags, e->mnt_ns, STR(e->comm), STR(e->fs),
	       STR(e->src), STR(e->dest), STR(e->data));
	return 0;
}

/* execsnoop.c: handle_event and print_args (not quoted). */
static void handle_exec(void *ctx, int cpu, void *data, __u32 size)
{
	const struct exec_event *e = data;
	int args_counter = 0;
	unsigned int i;

	(void)ctx, (void)cpu;
	/* The tool sends only the used part of args (EVENT_SIZE). */
	if (size < EXEC_BASE_SIZE)
		short_event(size, EXEC_BASE_SIZE);
	if (e->args_size > sizeof(e->args) || size < EXEC_BASE_SIZE + e->args_size)
		die("exec event of %u bytes with args_size %u", size, e->args_size);
	printf("exec pid=%d ppid=%d uid=%u ret=%d argc=%d comm=%.*s args=", e->pid, e->ppid,
	       e->uid, e->retval, e->args_count, STR(e->comm));
	for (i = 0; i < e->args_size && args_counter < e->args_count; i++) {
		char c = e->args[i];

		if (c == '\0') {
			args_counter++;
			/* A space between arguments (execsnoop: after each one). */
			if (args_counter < e->args_count)
				putchar(' ');
		} else {
			putchar(c);
		}
	}
	if (e->args_count == DEFAULT_MAXARGS + 1)
		fputs(" ...", stdout);
	putchar('\n');
}

static void handle_mount_perf(void *ctx, int cpu, void *data, __u32 size)
{
	(void)cpu;
	handle_mount(ctx, data, size);
}

/* ---- syscount's map reading (syscount.c: read_vals) ---- */

static __u32 sc_keys[MAX_ENTRIES];
static struct data_t sc_vals[MAX_ENTRIES];
static bool batch_map_ops = true;

static bool read_vals_batch(int fd, __u32 *count)
{
	void *in = NULL, *out;
	__u32 n, n_read = 0;
	int err = 0;

	while (n_read < *count && !err) {
		n = *count - n_read;
		err = bpf_map_lookup_and_delete_batch(fd, &in, &out, sc_keys + n_read,
						      sc_vals + n_read, &n, NULL);
		if (err && errno != ENOENT) {
			if (errno != EINVAL)
				fprintf(stderr, "bpf_map_lookup_and_delete_batch: %s\n",
					strerror(errno));
			return false;
		}
		n_read += n;
		in = out;
	}
	*count = n_read;
	return true;
}

static bool read_vals(int fd, __u32 *count)
{
	__u32 key, next_key;
	__u32 i = 0, j;
	int err;

	if (batch_map_ops) {
		bool ok = read_vals_batch(fd, count);

		if (!ok && errno == EINVAL) {
			fprintf(stderr, "driver: lookup_and_delete_batch: EINVAL, falling back\n");
			batch_map_ops = false;
		} else {
			return ok;
		}
	}
	for (key = -1; i < *count;) {
		err = bpf_map_get_next_key(fd, &key, &next_key);
		if (err && errno != ENOENT) {
			fprintf(stderr, "bpf_map_get_next_key: %s\n", strerror(errno));
			return false;
		} else if (err) {
			break;
		}
		key = sc_keys[i++] = next_key;
	}
	for (j = 0; j < i; j++) {
		if (bpf_map_lookup_elem(fd, &sc_keys[j], &sc_vals[j]) && errno != ENOENT) {
			fprintf(stderr, "bpf_map_lookup_elem: %s\n", strerror(errno));
			return false;
		}
	}
	for (j = 0; j < i; j++) {
		if (bpf_map_delete_elem(fd, &sc_keys[j])) {
			fprintf(stderr, "bpf_map_delete_elem: %s\n", strerror(errno));
			return false;
		}
	}
	*count = i;
	return true;
}

/* While running: report keys as they appear (read-only: no counts are lost). */
static void syscount_scan(int fd)
{
	static unsigned char seen[MAX_ENTRIES];
	__u32 key, next;
	bool first = true;
	int n = 0;

	while (n++ < MAX_ENTRIES && !bpf_map_get_next_key(fd, first ? NULL : &key, &next)) {
		first = false;
		key = next;
		if (key < MAX_ENTRIES && !seen[key]) {
			seen[key] = 1;
			printf("seen nr=%u\n", key);
		}
	}
}

static int cmp_nr(const void *a, const void *b)
{
	__u32 x = sc_keys[*(const __u32 *)a], y = sc_keys[*(const __u32 *)b];

	return x < y ? -1 : x > y;
}

static void syscount_final(int fd)
{
	static __u32 order[MAX_ENTRIES];
	__u32 count = MAX_ENTRIES, i;

	if (!read_vals(fd, &count))
		die("reading the data map failed");
	for (i = 0; i < count; i++)
		order[i] = i;
	qsort(order, count, sizeof(order[0]), cmp_nr);
	for (i = 0; i < count; i++)
		printf("count nr=%u count=%llu\n", sc_keys[order[i]],
		       (unsigned long long)sc_vals[order[i]].count);
}

/* ---- main ---- */

/* True once stdin is at EOF or has said "stop". */
static bool stdin_done(void)
{
	struct pollfd p = { .fd = 0, .events = POLLIN };
	char buf[256];
	ssize_t n;

	if (poll(&p, 1, 0) <= 0)
		return false;
	n = read(0, buf, sizeof(buf) - 1);
	if (n <= 0)
		return true;
	buf[n] = 0;
	return strstr(buf, "stop") != NULL;
}

static bool probe_ringbuf(void)
{
	int fd = bpf_map_create(BPF_MAP_TYPE_RINGBUF, NULL, 0, 0, getpagesize(), NULL);

	if (fd < 0)
		return false;
	close(fd);
	return true;
}

int main(int argc, char **argv)
{
	struct bpf_link *links[64];
	struct perf_buffer *pb = NULL;
	struct ring_buffer *rb = NULL;
	struct bpf_program *prog;
	perf_buffer_sample_fn sample = NULL;
	int nlinks = 0, data_fd = -1, err;
	bool use_ringbuf = false;
	__u32 pid;

	if (argc != 4) {
		fprintf(stderr, "usage: %s TOOL OBJECT PID (execsnoop: UID)\n", argv[0]);
		return 2;
	}
	tool = argv[1];
	pid = (__u32)strtoul(argv[3], NULL, 10);
	setvbuf(stdout, NULL, _IOLBF, 0);
	libbpf_set_strict_mode(LIBBPF_STRICT_ALL);
	libbpf_set_print(print_fn);

	obj = bpf_object__open_file(argv[2], NULL);
	if (!obj)
		die("bpf_object__open_file(%s): %s", argv[2], strerror(errno));

	if (strcmp(tool, "opensnoop") == 0) {
		/* opensnoop -p PID: targ_uid stays INVALID_UID (no uid filter). */
		set_rodata_u32("targ_tgid", pid);
		set_rodata_u32("targ_pid", 0);
		set_rodata_u32("targ_uid", (__u32)-1);
		set_rodata_bool("targ_failed", false);
		sample = handle_open;
	} else if (strcmp(tool, "statsnoop") == 0) {
		set_rodata_u32("target_pid", pid);
		set_rodata_bool("trace_failed_only", false);
		sample = handle_stat;
	} else if (strcmp(tool, "sigsnoop") == 0) {
		__u32 esize = 0;

		/* struct event is in this object's BTF: check the header's layout. */
		CHECK_MEMBER("event", struct sig_event, pid);
		CHECK_MEMBER("event", struct sig_event, tpid);
		CHECK_MEMBER("event", struct sig_event, sig);
		CHECK_MEMBER("event", struct sig_event, ret);
		CHECK_MEMBER("event", struct sig_event, comm);
		btf_member_offset("event", "pid", &esize);
		if (esize != sizeof(struct sig_event))
			die("struct event is %u bytes in the BTF, %zu in the header", esize,
			    sizeof(struct sig_event));
		set_rodata_u32("filtered_pid", pid);
		set_rodata_u32("target_signal", 0);
		set_rodata_bool("failed_only", false);
		/* -k (kill-only): signal_generate is a kernel tracepoint. */
		bpf_program__set_autoload(prog_named("sig_trace"), false);
		sample = handle_signal;
	} else if (strcmp(tool, "mountsnoop") == 0) {
		struct bpf_map *events = map_named("events");

		set_rodata_u32("target_pid", pid);
		/* compat.c: bpf_buffer__new */
		use_ringbuf = probe_ringbuf();
		if (use_ringbuf) {
			bpf_map__set_autocreate(map_named("heap"), false);
		} else {
			bpf_map__set_type(events, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
			bpf_map__set_key_size(events, sizeof(int));
			bpf_map__set_value_size(events, sizeof(int));
			sample = handle_mount_perf;
		}
	} else if (strcmp(tool, "syscount") == 0) {
		set_rodata_u32("filter_pid", pid);
	} else if (strcmp(tool, "execsnoop") == 0) {
		__u32 esize = 0;

		/* struct event is in this object's BTF (the execs map's value). */
		CHECK_MEMBER("event", struct exec_event, pid);
		CHECK_MEMBER("event", struct exec_event, ppid);
		CHECK_MEMBER("event", struct exec_event, uid);
		CHECK_MEMBER("event", struct exec_event, retval);
		CHECK_MEMBER("event", struct exec_event, args_count);
		CHECK_MEMBER("event", struct exec_event, args_size);
		CHECK_MEMBER("event", struct exec_event, comm);
		CHECK_MEMBER("event", struct exec_event, args);
		btf_member_offset("event", "pid", &esize);
		if (esize != sizeof(struct exec_event))
			die("struct event is %u bytes in the BTF, %zu in the header", esize,
			    sizeof(struct exec_event));
		/* execsnoop -x -u UID (the third argument is the uid). */
		set_rodata_bool("ignore_failed", false);
		set_rodata_u32("targ_uid", pid);
		set_rodata_int("max_args", DEFAULT_MAXARGS);
		set_rodata_bool("filter_cg", false);
		sample = handle_exec;
	} else {
		die("unknown tool");
	}

	err = bpf_object__load(obj);
	if (err)
		die("bpf_object__load: %d (%s)", err, strerror(-err));
	/* Where each program went: a kernel program's fd is an anon inode. */
	bpf_object__for_each_program(prog, obj) {
		char link[64], what[256] = "";
		ssize_t n;

		if (!bpf_program__autoload(prog))
			continue;
		snprintf(link, sizeof(link), "/proc/self/fd/%d", bpf_program__fd(prog));
		n = readlink(link, what, sizeof(what) - 1);
		if (n > 0)
			what[n] = 0;
		printf("prog %s %s\n", bpf_program__name(prog),
		       strstr(what, "anon_inode:bpf-prog") ? "kernel" : "user");
	}

	if (strcmp(tool, "syscount") == 0) {
		/* Without -L only sys_exit is attached. */
		links[nlinks] = bpf_program__attach(prog_named("sys_exit"));
		if (!links[nlinks])
			die("attach sys_exit: %s", strerror(errno));
		nlinks++;
		data_fd = bpf_map__fd(map_named("data"));
	} else {
		/* The skeleton's __attach: every autoloaded program. */
		bpf_object__for_each_program(prog, obj) {
			if (!bpf_program__autoload(prog))
				continue;
			if (nlinks == (int)(sizeof(links) / sizeof(links[0])))
				die("too many programs");
			links[nlinks] = bpf_program__attach(prog);
			if (!links[nlinks])
				die("attach %s (%s): %s", bpf_program__name(prog),
				    bpf_program__section_name(prog), strerror(errno));
			nlinks++;
		}
		if (use_ringbuf) {
			rb = ring_buffer__new(bpf_map__fd(map_named("events")), handle_mount, NULL,
					      NULL);
			if (!rb)
				die("ring_buffer__new: %s", strerror(errno));
		} else {
			pb = perf_buffer__new(bpf_map__fd(map_named("events")), PERF_BUFFER_PAGES,
					      sample, handle_lost, NULL, NULL);
			if (!pb)
				die("perf_buffer__new: %s", strerror(errno));
		}
	}
	printf("attached %d%s\n", nlinks, use_ringbuf ? " ringbuf" : "");

	while (!stdin_done()) {
		if (pb)
			err = perf_buffer__poll(pb, POLL_MS);
		else if (rb)
			err = ring_buffer__poll(rb, POLL_MS);
		else {
			syscount_scan(data_fd);
			err = poll(NULL, 0, POLL_MS);
		}
		if (err < 0 && err != -EINTR && errno != EINTR)
			die("polling: %d", err);
	}

	/* Everything the target produced is in the buffers by now. */
	if (pb && perf_buffer__consume(pb) < 0)
		die("perf_buffer__consume failed");
	if (rb && ring_buffer__consume(rb) < 0)
		die("ring_buffer__consume failed");
	if (data_fd >= 0)
		syscount_final(data_fd);
	printf("end\n");

	perf_buffer__free(pb);
	ring_buffer__free(rb);
	while (nlinks > 0)
		bpf_link__destroy(links[--nlinks]);
	bpf_object__close(obj);
	return 0;
}
