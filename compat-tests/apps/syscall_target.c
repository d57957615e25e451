// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * syscall_target: the traced process of the syscall apps (issue 7).
 *
 *   syscall_target DIR N M K MARK [wait]
 *
 * With `wait`, it first prints "syscall_target PID: waiting" and blocks
 * reading a line from stdin (so that a tracer can attach to it running).
 *
 * Makes exactly, on its main thread:
 *   openat(AT_FDCWD, "DIR/.begin", O_RDONLY)            -> ENOENT  (window start for syscall_open)
 *   close(MARK)                                         -> EBADF   (window start for syscall_count)
 *   N x openat(AT_FDCWD, "DIR/file<i>", O_RDONLY|O_CLOEXEC)   -> fd
 *   M x openat(AT_FDCWD, "DIR/missing", O_RDONLY|O_NONBLOCK)  -> ENOENT
 *   K x getppid()
 *   N x close(fd)
 *   close(MARK - 1)                                     -> EBADF   (window end)
 *   openat(AT_FDCWD, "DIR/.end", O_RDONLY)              -> ENOENT  (window end)
 * and nothing else in between (results are kept in memory and printed
 * after the window). Then it prints one line per call and "done", and
 * exits 0 (1 if a call did not give the expected kind of result).
 *
 * Output:
 *   syscall_target PID: openat FILE flags 0xF = RET     (RET: fd or -errno)
 *   syscall_target PID: getppid x K = PPID
 *   syscall_target PID: done N M K
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAX_CALLS 1000

struct call {
	char path[256];
	int flags;
	long ret;
};

static struct call calls[2 * MAX_CALLS];

static long do_openat(const char *path, int flags)
{
	int fd = openat(AT_FDCWD, path, flags);

	return fd < 0 ? -errno : fd;
}

int main(int argc, char **argv)
{
	long n, m, k, mark, i, ppid = 0, begin, end, nc = 0;
	const char *dir;
	char path[256];
	int bad = 0;

	if (argc != 6 && !(argc == 7 && !strcmp(argv[6], "wait"))) {
		fprintf(stderr, "usage: %s DIR N M K MARK [wait]\n", argv[0]);
		return 2;
	}
	/* No output inside the window: stdout is only written before and after. */
	setvbuf(stdout, NULL, _IOLBF, 0);
	dir = argv[1];
	n = strtol(argv[2], NULL, 10);
	m = strtol(argv[3], NULL, 10);
	k = strtol(argv[4], NULL, 10);
	mark = strtol(argv[5], NULL, 10);
	if (n < 0 || m < 0 || k < 0 || n > MAX_CALLS || m > MAX_CALLS || strlen(dir) > 200) {
		fprintf(stderr, "syscall_target: bad arguments\n");
		return 2;
	}
	/* Everything the window needs is prepared before it. */
	for (i = 0; i < n; i++) {
		snprintf(calls[nc].path, sizeof(calls[nc].path), "%s/file%ld", dir, i);
		calls[nc++].flags = O_RDONLY | O_CLOEXEC;
	}
	for (i = 0; i < m; i++) {
		snprintf(calls[nc].path, sizeof(calls[nc].path), "%s/missing", dir);
		calls[nc++].flags = O_RDONLY | O_NONBLOCK;
	}

	if (argc == 7) {
		char line[64];

		printf("syscall_target %d: waiting\n", getpid());
		if (!fgets(line, sizeof(line), stdin))
			return 3;
	}

	snprintf(path, sizeof(path), "%s/.begin", dir);
	begin = do_openat(path, O_RDONLY);
	syscall(SYS_close, (long)(int)mark);

	for (i = 0; i < nc; i++)
		calls[i].ret = do_openat(calls[i].path, calls[i].flags);
	for (i = 0; i < k; i++)
		ppid = getppid();
	for (i = 0; i < n; i++)
		if (calls[i].ret >= 0)
			close((int)calls[i].ret);

	syscall(SYS_close, (long)(int)(mark - 1));
	snprintf(path, sizeof(path), "%s/.end", dir);
	end = do_openat(path, O_RDONLY);

	printf("syscall_target %d: openat %s/.begin flags 0x%x = %ld\n", getpid(), dir, O_RDONLY,
	       begin);
	for (i = 0; i < nc; i++) {
		printf("syscall_target %d: openat %s flags 0x%x = %ld\n", getpid(), calls[i].path,
		       calls[i].flags, calls[i].ret);
		if (i < n ? calls[i].ret < 0 : calls[i].ret != -ENOENT)
			bad = 1;
	}
	printf("syscall_target %d: getppid x %ld = %ld\n", getpid(), k, ppid);
	printf("syscall_target %d: openat %s/.end flags 0x%x = %ld\n", getpid(), dir, O_RDONLY, end);
	if (begin != -ENOENT || end != -ENOENT)
		bad = 1;
	printf("syscall_target %d: done %ld %ld %ld\n", getpid(), n, m, k);
	return bad;
}
