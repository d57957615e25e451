/* link_pin driver OBJ TARGET PIN_DIR: pins a uprobe link on TARGET's
 * uprobed_add and destroys its handle; each stdin line moves it on:
 *   1: "calls N", then opens the pin, unpins it ("unpinned")
 *   2: "calls N", then destroys the opened link ("gone")
 *   3: "calls N", then exits.
 * link_pin open PATH: opens the link pinned at PATH (another process). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <bpf/libbpf.h>
#include <bpf/bpf.h>

/* An int result, with errno when it is an error. */
#define SHOW(what, expr)                                                  \
	do {                                                              \
		long r_ = (long)(expr);                                   \
		if (r_ < 0)                                               \
			printf("%s = %ld errno %d\n", what, r_, errno);   \
		else                                                      \
			printf("%s = %ld\n", what, r_);                   \
	} while (0)

/* A pointer result: "ok", or NULL and errno. */
#define SHOWP(what, expr)                                                 \
	do {                                                              \
		if ((expr) != NULL)                                       \
			printf("%s = ok\n", what);                        \
		else                                                      \
			printf("%s = NULL errno %d\n", what, errno);      \
	} while (0)

static int wait_line(void)
{
	char line[16];

	return fgets(line, sizeof(line), stdin) != NULL;
}

static long long calls(int map_fd)
{
	int k = 0;
	long long v = 0;

	bpf_map_lookup_elem(map_fd, &k, &v);
	return v;
}

static int open_other(const char *path)
{
	struct bpf_link *l = bpf_link__open(path);

	if (!l) {
		printf("open = %d\n", -errno);
		return 0;
	}
	printf("open ok fd>=3 %d path %s\n", bpf_link__fd(l) >= 3,
	       bpf_link__pin_path(l));
	printf("destroy = %d\n", bpf_link__destroy(l));
	return 0;
}

static struct bpf_link *attach(struct bpf_program *prog, const char *target)
{
	LIBBPF_OPTS(bpf_uprobe_opts, o, .func_name = "uprobed_add");
	return bpf_program__attach_uprobe_opts(prog, -1, target, 0, &o);
}

int main(int argc, char **argv)
{
	char pin[256], other[256], map_pin[256], outside[256];
	struct bpf_object *obj;
	struct bpf_program *prog, *ret_prog;
	struct bpf_link *l, *l2, *l3;
	int map_fd;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 3 && !strcmp(argv[1], "open"))
		return open_other(argv[2]);
	if (argc != 4)
		return 1;
	snprintf(pin, sizeof(pin), "%s/link", argv[3]);
	snprintf(other, sizeof(other), "%s/sub/other", argv[3]);
	snprintf(map_pin, sizeof(map_pin), "%s/map", argv[3]);
	snprintf(outside, sizeof(outside), "/tmp/userbpf-link-pin-%d", getpid());

	obj = bpf_object__open_file(argv[1], NULL);
	if (!obj)
		return 2;
	prog = bpf_object__find_program_by_name(obj, "on_add");
	ret_prog = bpf_object__find_program_by_name(obj, "on_add_ret");
	/* Before load: libbpf's "can't use BPF program without FD". */
	l = attach(prog, argv[2]);
	if (l)
		return 3;
	if (bpf_object__load(obj))
		return 4;
	map_fd = bpf_map__fd(bpf_object__find_map_by_name(obj, "seen"));
	l = attach(prog, argv[2]);
	if (!l)
		return 5;

	SHOW("pin_path before", bpf_link__pin_path(l) != NULL);
	SHOW("unpin unpinned", bpf_link__unpin(l));
	SHOWP("open missing", bpf_link__open(pin));
	SHOWP("open null", bpf_link__open(NULL));
	SHOW("pin outside bpffs", bpf_link__pin(l, outside));
	SHOW("pin path after failure", bpf_link__pin_path(l) != NULL);
	SHOW("update_program", bpf_link__update_program(l, ret_prog));
	SHOW("pin", bpf_link__pin(l, pin));
	SHOW("pin_path", strcmp(bpf_link__pin_path(l), pin));
	SHOW("pin again", bpf_link__pin(l, other));
	/* A second link at a path that is taken: the kernel's EEXIST. */
	l2 = attach(prog, argv[2]);
	SHOW("pin taken path", bpf_link__pin(l2, pin));
	SHOW("pin second link", bpf_link__pin(l2, other));
	SHOW("unpin second link", bpf_link__unpin(l2));
	SHOW("pin_path after unpin", bpf_link__pin_path(l2) != NULL);
	SHOW("destroy second link", bpf_link__destroy(l2));
	/* libbpf wraps whatever bpf_obj_get returns. */
	SHOW("map pin", bpf_map__pin(bpf_object__find_map_by_name(obj, "seen"), map_pin));
	l3 = bpf_link__open(map_pin);
	SHOWP("open map pin", l3);
	SHOW("destroy map link", bpf_link__destroy(l3));
	SHOW("destroy pinned", bpf_link__destroy(l));
	printf("pinned\n");

	if (!wait_line())
		return 6;
	printf("calls %lld\n", calls(map_fd));
	l = bpf_link__open(pin);
	SHOWP("open", l);
	SHOW("opened fd>=3", bpf_link__fd(l) >= 3);
	SHOW("opened pin_path", strcmp(bpf_link__pin_path(l), pin));
	SHOW("opened update_program", bpf_link__update_program(l, ret_prog));
	SHOW("unpin", bpf_link__unpin(l));
	SHOW("opened pin_path after unpin", bpf_link__pin_path(l) != NULL);
	SHOW("unpin again", bpf_link__unpin(l));
	SHOWP("open unpinned", bpf_link__open(pin));
	printf("unpinned\n");

	if (!wait_line())
		return 7;
	printf("calls %lld\n", calls(map_fd));
	SHOW("destroy opened", bpf_link__destroy(l));
	printf("gone\n");

	if (!wait_line())
		return 8;
	printf("calls %lld\n", calls(map_fd));
	bpf_object__close(obj);
	return 0;
}
