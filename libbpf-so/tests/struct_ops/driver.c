/* struct_ops through libbpf's API (tests/struct_ops.rs): run on userbpf's
 * libbpf.so and on the real libbpf 1.7, the output must match.
 *
 *   driver OBJ full     load, attach both maps (plain and link), check the
 *                       congestion control is registered and used
 *   driver OBJ load     only open and load (the refusals)
 *   driver OBJ unreferenced  load with a struct_ops program no map uses
 *   driver OBJ assoc    bpf_program__assoc_struct_ops
 *   driver OBJ noautocreate  both struct_ops maps left out: their programs
 *                       are not loaded */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

static int pr(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (level != LIBBPF_WARN)
		return 0;
	printf("warn: ");
	return vprintf(fmt, ap);
}

/* Whether `name` is a word of tcp_available_congestion_control. */
static int listed(const char *name)
{
	char buf[4096], *tok, *save;
	FILE *f = fopen("/proc/sys/net/ipv4/tcp_available_congestion_control", "r");
	size_t n;

	if (!f)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	for (tok = strtok_r(buf, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save))
		if (!strcmp(tok, name))
			return 1;
	return 0;
}

/* Polls (the kernel may release a link a little later) for `want`. */
static const char *listed_yes_no(const char *name, int want)
{
	int i, got = 0;

	for (i = 0; i < 200; i++) {
		got = listed(name);
		if (got == want)
			break;
		usleep(10000);
	}
	return got == 1 ? "yes" : "no";
}

static __u64 bss_u64(struct bpf_object *obj, size_t off)
{
	struct bpf_map *bss = NULL, *m;
	char val[64];
	int key = 0;
	__u64 v = 0;

	bpf_object__for_each_map(m, obj)
		if (strstr(bpf_map__name(m), ".bss"))
			bss = m;
	if (!bss || bpf_map__value_size(bss) > sizeof(val)) {
		printf("no .bss map\n");
		return 0;
	}
	if (bpf_map_lookup_elem(bpf_map__fd(bss), &key, val)) {
		printf("bss lookup failed: %d\n", errno);
		return 0;
	}
	memcpy(&v, val + off, sizeof(v));
	return v;
}

/* A TCP connection over lo with congestion control `cc`: sends 32 MiB.
 * Returns 0, or -errno of setsockopt. */
static int tcp_transfer(const char *cc)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t alen = sizeof(a);
	static char buf[1 << 16];
	int ls, c, s, status;
	size_t sent = 0;
	pid_t pid;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ls = socket(AF_INET, SOCK_STREAM, 0);
	if (ls < 0 || bind(ls, (void *)&a, sizeof(a)) || listen(ls, 1) ||
	    getsockname(ls, (void *)&a, &alen))
		return -errno;
	c = socket(AF_INET, SOCK_STREAM, 0);
	if (setsockopt(c, IPPROTO_TCP, TCP_CONGESTION, cc, strlen(cc))) {
		int e = errno;
		close(c);
		close(ls);
		return -e;
	}
	if (connect(c, (void *)&a, sizeof(a)))
		return -errno;
	s = accept(ls, NULL, NULL);
	pid = fork();
	if (pid == 0) {
		close(c);
		while (read(s, buf, sizeof(buf)) > 0)
			;
		_exit(0);
	}
	close(s);
	while (sent < (32u << 20)) {
		ssize_t n = write(c, buf, sizeof(buf));
		if (n <= 0)
			break;
		sent += n;
	}
	close(c);
	waitpid(pid, &status, 0);
	close(ls);
	return 0;
}

static void print_link(const char *what, struct bpf_link *l)
{
	if (l)
		printf("%s = ok\n", what);
	else
		printf("%s = NULL errno %d\n", what, errno);
}

int main(int argc, char **argv)
{
	struct bpf_object *obj;
	struct bpf_map *ucc, *ucc_link, *bss = NULL, *m;
	struct bpf_program *unused;
	struct bpf_link *l, *l2;
	__u64 before;
	int err;

	if (argc < 3)
		return 2;
	setvbuf(stdout, NULL, _IONBF, 0);
	libbpf_set_print(pr);
	obj = bpf_object__open_file(argv[1], NULL);
	if (!obj) {
		printf("open = NULL errno %d\n", errno);
		return 0;
	}
	ucc = bpf_object__find_map_by_name(obj, "ucc");
	ucc_link = bpf_object__find_map_by_name(obj, "ucc_link");
	printf("maps found = %s\n", ucc && ucc_link ? "yes" : "no");
	if (!ucc || !ucc_link)
		return 0;
	printf("ucc type = %d, key %u, max %u, flags %#x\n", bpf_map__type(ucc),
	       bpf_map__key_size(ucc), bpf_map__max_entries(ucc), bpf_map__map_flags(ucc));
	printf("ucc_link flags = %#x\n", bpf_map__map_flags(ucc_link));
	printf("ucc_ssthresh type = %d\n",
	       bpf_program__type(bpf_object__find_program_by_name(obj, "ucc_ssthresh")));
	bpf_object__for_each_map(m, obj)
		if (strstr(bpf_map__name(m), ".bss"))
			bss = m;

	if (!strcmp(argv[2], "unreferenced")) {
		err = bpf_object__load(obj);
		printf("load with unreferenced = %d\n", err);
		bpf_object__close(obj);
		return 0;
	}
	unused = bpf_object__find_program_by_name(obj, "ucc_unused");
	bpf_program__set_autoload(unused, false);
	if (!strcmp(argv[2], "noautocreate")) {
		struct bpf_program *st = bpf_object__find_program_by_name(obj, "ucc_ssthresh");

		bpf_map__set_autocreate(ucc, false);
		bpf_map__set_autocreate(ucc_link, false);
		err = bpf_object__load(obj);
		printf("load without struct_ops maps = %d\n", err);
		printf("ucc_ssthresh autoload = %d, fd %s\n", bpf_program__autoload(st),
		       bpf_program__fd(st) >= 0 ? "valid" : "none");
		l = bpf_map__attach_struct_ops(ucc);
		print_link("attach uncreated ucc", l);
		bpf_object__close(obj);
		printf("done\n");
		return 0;
	}
	/* Before load: no fd. */
	l = bpf_map__attach_struct_ops(ucc);
	print_link("attach before load", l);

	err = bpf_object__load(obj);
	printf("load = %d\n", err);
	if (err) {
		bpf_object__close(obj);
		return 0;
	}
	if (!strcmp(argv[2], "load")) {
		bpf_object__close(obj);
		printf("done\n");
		return 0;
	}
	if (!strcmp(argv[2], "assoc")) {
		struct bpf_program *st = bpf_object__find_program_by_name(obj, "ucc_ssthresh");
		struct bpf_program *tp = bpf_object__find_program_by_name(obj, "tp_getppid");

		err = bpf_program__assoc_struct_ops(st, ucc, NULL);
		printf("assoc struct_ops prog = %d errno %d\n", err, err ? errno : 0);
		err = bpf_program__assoc_struct_ops(tp, bss, NULL);
		printf("assoc non-struct_ops map = %d errno %d\n", err, err ? errno : 0);
		err = bpf_program__assoc_struct_ops(unused, ucc, NULL);
		printf("assoc unloaded prog = %d errno %d\n", err, err ? errno : 0);
		err = bpf_program__assoc_struct_ops(tp, ucc, NULL);
		printf("assoc tp prog = %d errno %d\n", err, err ? errno : 0);
		bpf_object__close(obj);
		printf("done\n");
		return 0;
	}

	l = bpf_map__attach_struct_ops(bss);
	print_link("attach non-struct_ops", l);

	printf("listed before attach = %s\n", listed_yes_no("userbpf_cc", 0));
	l = bpf_map__attach_struct_ops(ucc);
	print_link("attach ucc", l);
	printf("listed while attached = %s\n", listed_yes_no("userbpf_cc", 1));
	printf("link fd valid = %s\n", l && bpf_link__fd(l) >= 0 ? "yes" : "no");
	l2 = bpf_map__attach_struct_ops(ucc);
	print_link("attach ucc again", l2);

	before = bss_u64(obj, 0);
	err = tcp_transfer("userbpf_cc");
	printf("tcp with userbpf_cc = %d\n", err);
	printf("cong_avoid counted = %s\n", bss_u64(obj, 0) > before ? "yes" : "no");

	printf("destroy ucc = %d\n", bpf_link__destroy(l));
	printf("listed after destroy = %s\n", listed_yes_no("userbpf_cc", 0));
	err = tcp_transfer("userbpf_cc");
	printf("tcp with userbpf_cc after destroy = %d\n", err);

	l = bpf_map__attach_struct_ops(ucc_link);
	print_link("attach ucc_link", l);
	printf("link listed while attached = %s\n", listed_yes_no("userbpf_cc_link", 1));
	before = bss_u64(obj, 0);
	err = tcp_transfer("userbpf_cc_link");
	printf("tcp with userbpf_cc_link = %d\n", err);
	printf("cong_avoid counted via link = %s\n", bss_u64(obj, 0) > before ? "yes" : "no");
	printf("destroy ucc_link = %d\n", bpf_link__destroy(l));
	printf("link listed after destroy = %s\n", listed_yes_no("userbpf_cc_link", 0));
	/* A struct_ops link map can be attached again (EBUSY from the
	 * update is skipped). */
	l = bpf_map__attach_struct_ops(ucc_link);
	print_link("attach ucc_link again", l);
	printf("link listed again = %s\n", listed_yes_no("userbpf_cc_link", 1));
	printf("destroy ucc_link again = %d\n", bpf_link__destroy(l));
	printf("link listed after second destroy = %s\n", listed_yes_no("userbpf_cc_link", 0));

	bpf_object__close(obj);
	printf("done\n");
	return 0;
}
