/* Attaches to its own function with pid 0 and /proc/self/exe, calls it,
 * prints what the programs saw; detaches and calls again. */
#include <stdio.h>
#include <bpf/libbpf.h>
#include <bpf/bpf.h>

__attribute__((noinline)) int uprobed_add(int a, int b)
{
	asm volatile("");
	return a + b;
}

__attribute__((noinline)) int uprobed_sub(int a, int b)
{
	asm volatile("");
	return a - b;
}

static long long get(int fd, int k)
{
	long long v = 0;

	bpf_map_lookup_elem(fd, &k, &v);
	return v;
}

int main(int argc, char **argv)
{
	struct bpf_object *obj = bpf_object__open_file(argv[1], NULL);
	struct bpf_program *entry, *ret;
	struct bpf_link *l1, *l2;
	int fd, sum = 0;

	if (!obj || bpf_object__load(obj))
		return 1;
	entry = bpf_object__find_program_by_name(obj, "on_add");
	ret = bpf_object__find_program_by_name(obj, "on_add_ret");
	fd = bpf_map__fd(bpf_object__find_map_by_name(obj, "seen"));
	LIBBPF_OPTS(bpf_uprobe_opts, eo, .func_name = "uprobed_add");
	LIBBPF_OPTS(bpf_uprobe_opts, ro, .func_name = "uprobed_add", .retprobe = 1);
	l1 = bpf_program__attach_uprobe_opts(entry, 0, "/proc/self/exe", 0, &eo);
	l2 = bpf_program__attach_uprobe_opts(ret, 0, "/proc/self/exe", 0, &ro);
	if (!l1 || !l2)
		return 2;
	for (int i = 0; i < 10; i++)
		sum += uprobed_add(i, 100);
	printf("attached: calls %lld args %lld rets %lld (sum %d)\n", get(fd, 0), get(fd, 1), get(fd, 2), sum);
	bpf_link__destroy(l1);
	bpf_link__destroy(l2);
	for (int i = 0; i < 10; i++)
		sum += uprobed_add(i, 100);
	printf("detached: calls %lld args %lld rets %lld\n", get(fd, 0), get(fd, 1), get(fd, 2));
	/* uprobe_multi: one link, every function matching the pattern. */
	struct bpf_link *m = bpf_program__attach_uprobe_multi(
		bpf_object__find_program_by_name(obj, "on_multi"), 0, "/proc/self/exe", "uprobed_*", NULL);
	if (!m)
		return 3;
	for (int i = 0; i < 10; i++)
		sum += uprobed_add(i, 1);
	for (int i = 0; i < 5; i++)
		sum += uprobed_sub(i, 1);
	bpf_link__destroy(m);
	sum += uprobed_sub(1, 1);
	printf("multi: %lld\n", get(fd, 3));
	bpf_object__close(obj);
	return 0;
}
