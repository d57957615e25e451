/* Drives USDT attachment through libbpf.so: driver OBJ TARGET EXPLICIT.
 * Prints what it attached, then waits for a line on stdin before
 * destroying the links (so the test can look at the registry), and for
 * another before exiting. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/libbpf.h>

#define CHECK(cond) do { if (!(cond)) { printf("FAIL line %d: %s (errno %d)\n", __LINE__, #cond, errno); return 1; } } while (0)

static void wait_line(void)
{
	char buf[16];

	if (!fgets(buf, sizeof(buf), stdin))
		exit(2);
}

int main(int argc, char **argv)
{
	struct bpf_link *sema, *hit = NULL, *l;
	struct bpf_program *p_sema, *p_hit, *p_bad;
	struct bpf_object *obj;
	int explicit_api;

	CHECK(argc == 4);
	explicit_api = atoi(argv[3]);
	obj = bpf_object__open_file(argv[1], NULL);
	CHECK(obj);
	CHECK(bpf_object__load(obj) == 0);
	p_sema = bpf_object__find_program_by_name(obj, "on_sema");
	p_hit = bpf_object__find_program_by_name(obj, "on_hit");
	p_bad = bpf_object__find_program_by_name(obj, "bad_section");
	CHECK(p_sema && p_hit && p_bad);

	sema = bpf_program__attach(p_sema);
	CHECK(sema);
	CHECK(bpf_link__fd(sema) >= 0);
	errno = 0;
	l = bpf_program__attach(p_bad);
	CHECK(!l && errno == EINVAL);
	errno = 0;
	l = bpf_program__attach(p_hit); /* bare SEC("usdt"): nothing to attach */
	CHECK(!l && errno == EOPNOTSUPP);
	if (explicit_api) {
		LIBBPF_OPTS(bpf_usdt_opts, opts, .usdt_cookie = 0xfeed);

		hit = bpf_program__attach_usdt(p_hit, -1, argv[2], "ubpf", "hit", &opts);
		CHECK(hit);
		errno = 0;
		l = bpf_program__attach_usdt(p_hit, -1, argv[2], "ubpf", "nosuch", &opts);
		CHECK(!l && errno == ENOENT);
	}
	printf("attached\n");
	fflush(stdout);
	wait_line();
	CHECK(bpf_link__destroy(sema) == 0);
	CHECK(bpf_link__destroy(hit) == 0);
	printf("destroyed\n");
	fflush(stdout);
	wait_line();
	bpf_object__close(obj);
	return 0;
}
