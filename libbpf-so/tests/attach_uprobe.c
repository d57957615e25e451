// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * tests/attach_uprobe.rs runs this against userbpf's libbpf.so.1 with the
 * object built from attach_uprobe.bpf.c (argv[1]). It prints one
 * "what = ok|-errno" line per call, then "ready" and waits for a line on
 * stdin (the test reads the registry meanwhile), destroys the links,
 * prints "destroyed" and waits again before exiting.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/libbpf.h>

static struct bpf_link *links[64];
static int nlinks;

static void show(const char *what, struct bpf_link *link)
{
	int e = errno;

	if (link) {
		links[nlinks++] = link;
		printf("%s = ok\n", what);
	} else {
		printf("%s = %d\n", what, -e);
	}
	fflush(stdout);
}

static struct bpf_program *prog(struct bpf_object *obj, const char *name)
{
	struct bpf_program *p = bpf_object__find_program_by_name(obj, name);

	if (!p) {
		printf("no program %s\n", name);
		exit(1);
	}
	return p;
}

static void wait_line(void)
{
	char buf[16];

	if (!fgets(buf, sizeof(buf), stdin))
		exit(2);
}

int main(int argc, char **argv)
{
	struct bpf_object *obj = bpf_object__open_file(argv[1], NULL);
	const char *auto_progs[] = {
		"up_malloc", "up_malloc4", "uret_free", "up_realpath", "multi_cond",
		"bad_fmt", "bad_func", "bad_retoff", "bad_multi", "ambiguous",
	};
	int i;

	if (!obj) {
		printf("open failed: %d\n", -errno);
		return 1;
	}
	bpf_program__set_autoload(prog(obj, "unloaded"), false);
	/* Not loaded yet: no fd. */
	show("attach before load", bpf_program__attach(prog(obj, "up_malloc")));
	if (bpf_object__load(obj)) {
		printf("load failed: %d\n", -errno);
		return 1;
	}
	for (i = 0; i < (int)(sizeof(auto_progs) / sizeof(auto_progs[0])); i++) {
		char what[64];

		snprintf(what, sizeof(what), "attach %s", auto_progs[i]);
		show(what, bpf_program__attach(prog(obj, auto_progs[i])));
	}

	/* Manual single uprobe: cookie, this process, by name. */
	LIBBPF_OPTS(bpf_uprobe_opts, uo, .bpf_cookie = 0x1234, .func_name = "free");
	show("uprobe_opts free pid 0",
	     bpf_program__attach_uprobe_opts(prog(obj, "manual"), 0, "libc.so.6", 0, &uo));
	/* Raw offset, retprobe, every process. */
	show("uprobe retprobe raw offset",
	     bpf_program__attach_uprobe(prog(obj, "manual"), true, -1,
					"/lib/x86_64-linux-gnu/libc.so.6", 0x1000));
	show("uprobe no such pid",
	     bpf_program__attach_uprobe(prog(obj, "manual"), false, 0x3ffffff0, "libc.so.6", 0x1000));
	show("uprobe offset past the end",
	     bpf_program__attach_uprobe(prog(obj, "manual"), false, -1, "libc.so.6", 0x40000000));
	show("uprobe missing file",
	     bpf_program__attach_uprobe(prog(obj, "manual"), false, -1, "/nonexistent/x", 0));
	show("uprobe unresolvable name",
	     bpf_program__attach_uprobe(prog(obj, "manual"), false, -1, "libnope.so.9", 0));
	show("uprobe NULL path",
	     bpf_program__attach_uprobe(prog(obj, "manual"), false, -1, NULL, 0));
	show("uprobe unloaded",
	     bpf_program__attach_uprobe(prog(obj, "unloaded"), false, -1, "libc.so.6", 0x1000));
	show("uprobe socket program",
	     bpf_program__attach_uprobe(prog(obj, "not_probe"), false, -1, "libc.so.6", 0x1000));
	show("uprobe multi program",
	     bpf_program__attach_uprobe(prog(obj, "manual_multi"), false, -1, "libc.so.6", 0x1000));
	struct { size_t sz; char rest[40]; } small = { .sz = 4 };
	show("uprobe_opts sz 4",
	     bpf_program__attach_uprobe_opts(prog(obj, "manual"), -1, "libc.so.6", 0,
					     (void *)&small));
	LIBBPF_OPTS(bpf_uprobe_opts, bad_mode, .attach_mode = 7);
	show("uprobe_opts bad mode",
	     bpf_program__attach_uprobe_opts(prog(obj, "manual"), -1, "libc.so.6", 0x1000, &bad_mode));
	LIBBPF_OPTS(bpf_uprobe_opts, legacy_cookie, .attach_mode = PROBE_ATTACH_MODE_LEGACY,
		    .bpf_cookie = 1);
	show("uprobe_opts legacy cookie",
	     bpf_program__attach_uprobe_opts(prog(obj, "manual"), -1, "libc.so.6", 0x1000,
					     &legacy_cookie));

	/* uprobe_multi by symbol list with cookies, and the argument rules. */
	const char *syms[] = { "malloc", "free" };
	__u64 cookies[] = { 11, 22 };
	LIBBPF_OPTS(bpf_uprobe_multi_opts, mo, .syms = syms, .cookies = cookies, .cnt = 2,
		    .retprobe = true);
	show("multi syms",
	     bpf_program__attach_uprobe_multi(prog(obj, "manual_multi"), 0,
					      "/lib/x86_64-linux-gnu/libc.so.6", NULL, &mo));
	unsigned long offs[] = { 0x1000 };
	LIBBPF_OPTS(bpf_uprobe_multi_opts, both, .syms = syms, .offsets = offs, .cnt = 1);
	show("multi syms and offsets",
	     bpf_program__attach_uprobe_multi(prog(obj, "manual_multi"), -1,
					      "/lib/x86_64-linux-gnu/libc.so.6", NULL, &both));
	LIBBPF_OPTS(bpf_uprobe_multi_opts, pat_cnt, .cnt = 1);
	show("multi pattern and cnt",
	     bpf_program__attach_uprobe_multi(prog(obj, "manual_multi"), -1, "libc.so.6", "m*",
					      &pat_cnt));
	show("multi NULL path",
	     bpf_program__attach_uprobe_multi(prog(obj, "manual_multi"), -1, NULL, "m*", NULL));
	show("multi nothing",
	     bpf_program__attach_uprobe_multi(prog(obj, "manual_multi"), -1, "libc.so.6", NULL, NULL));
	LIBBPF_OPTS(bpf_uprobe_multi_opts, retsess, .retprobe = true, .session = true);
	show("multi retprobe and session",
	     bpf_program__attach_uprobe_multi(prog(obj, "manual_multi"), -1, "libc.so.6", "m*",
					      &retsess));
	show("multi no match",
	     bpf_program__attach_uprobe_multi(prog(obj, "manual_multi"), -1, "libc.so.6",
					      "no_such_*_xyz", NULL));
	const char *missing[] = { "malloc", "no_such_fn_xyz" };
	LIBBPF_OPTS(bpf_uprobe_multi_opts, mmiss, .syms = missing, .cnt = 2);
	show("multi missing sym",
	     bpf_program__attach_uprobe_multi(prog(obj, "manual_multi"), -1,
					      "/lib/x86_64-linux-gnu/libc.so.6", NULL, &mmiss));
	show("multi on a uprobe program",
	     bpf_program__attach_uprobe_multi(prog(obj, "manual"), -1, "libc.so.6", "malloc", NULL));

	printf("ready %d\n", nlinks);
	fflush(stdout);
	wait_line();
	for (i = 0; i < nlinks; i++)
		bpf_link__destroy(links[i]);
	printf("destroyed\n");
	fflush(stdout);
	wait_line();
	bpf_object__close(obj);
	return 0;
}
