/* driver OBJ TARGET_BINARY: attaches on_add to every process's
 * uprobed_add, says "attached", and on each input line prints the call
 * count; after the second line it destroys the link and says "destroyed". */
#include <stdio.h>
#include <bpf/libbpf.h>
#include <bpf/bpf.h>

int main(int argc, char **argv)
{
	struct bpf_object *obj = bpf_object__open_file(argv[1], NULL);
	char line[16];
	long long v = 0;
	int k = 0, fd, n = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!obj || bpf_object__load(obj))
		return 1;
	fd = bpf_map__fd(bpf_object__find_map_by_name(obj, "seen"));
	LIBBPF_OPTS(bpf_uprobe_opts, o, .func_name = "uprobed_add");
	struct bpf_link *l = bpf_program__attach_uprobe_opts(
		bpf_object__find_program_by_name(obj, "on_add"), -1, argv[2], 0, &o);
	if (!l)
		return 2;
	printf("attached\n");
	while (fgets(line, sizeof(line), stdin)) {
		bpf_map_lookup_elem(fd, &k, &v);
		printf("calls %lld\n", v);
		if (++n == 2) {
			bpf_link__destroy(l);
			printf("destroyed\n");
		}
	}
	bpf_object__close(obj);
	return 0;
}
