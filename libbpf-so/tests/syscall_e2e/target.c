// Target for tests/syscall_e2e.rs, run under the agent (`userbpf start`).
// Prints "ready", then one reply line per stdin command:
//   getppid N     libc's getppid() N times
//   args N        syscall(SYS_getppid, 11, 22, 33, 44, 55, 66) N times
//   jit N         `mov eax, 110; syscall; ret` from an anonymous
//                 executable page, N times
//     -> "<cmd> first=R same=K": the first result and how many of the N
//        results equal it
//   unlink PATH   -> "unlink ret=R errno=E exists=X"
//   open PATH     open(PATH) from a writable buffer
//                 -> "open ret=FD|-ERRNO content=C buf=PATH-AFTER-CALL"
//   ksopen DIR NAME  openat(open(DIR), NAME, O_RDONLY|O_CREAT|O_CLOEXEC|
//                 O_NOFOLLOW, 0640) -> "ksopen dfd=D ret=FD|-ERRNO"
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static long (*jit_getppid)(void);

static void make_jit(void)
{
	static const unsigned char code[] = {
		0xb8, 0x6e, 0x00, 0x00, 0x00, /* mov eax, 110 (getppid) */
		0x0f, 0x05,                   /* syscall */
		0xc3,                         /* ret */
	};
	void *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (page == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	memcpy(page, code, sizeof(code));
	if (mprotect(page, 4096, PROT_READ | PROT_EXEC)) {
		perror("mprotect");
		exit(1);
	}
	jit_getppid = (long (*)(void))page;
}

static void calls(const char *what, long n)
{
	long first = 0, same = 0, r = 0;

	for (long i = 0; i < n; i++) {
		if (strcmp(what, "getppid") == 0)
			r = getppid();
		else if (strcmp(what, "args") == 0)
			r = syscall(SYS_getppid, 11L, 22L, 33L, 44L, 55L, 66L);
		else
			r = jit_getppid();
		if (i == 0)
			first = r;
		if (r == first)
			same++;
	}
	printf("%s first=%ld same=%ld\n", what, first, same);
}

int main(void)
{
	static char buf[512];
	char line[600], arg[512], arg2[512];
	long n;

	setvbuf(stdout, NULL, _IOLBF, 0);
	make_jit();
	printf("ready\n");
	while (fgets(line, sizeof(line), stdin)) {
		if (sscanf(line, "getppid %ld", &n) == 1) {
			calls("getppid", n);
		} else if (sscanf(line, "args %ld", &n) == 1) {
			calls("args", n);
		} else if (sscanf(line, "jit %ld", &n) == 1) {
			calls("jit", n);
		} else if (sscanf(line, "unlink %511s", arg) == 1) {
			int r = unlink(arg);
			int e = r ? errno : 0;

			printf("unlink ret=%d errno=%d exists=%d\n", r, e, access(arg, F_OK) == 0);
		} else if (sscanf(line, "open %511s", arg) == 1) {
			char content[64] = "";
			int fd;

			strcpy(buf, arg);
			fd = open(buf, O_RDONLY | O_CLOEXEC);
			if (fd >= 0) {
				ssize_t got = read(fd, content, sizeof(content) - 1);

				content[got > 0 ? got : 0] = 0;
				content[strcspn(content, "\n")] = 0;
				close(fd);
				printf("open ret=ok content=%s buf=%s\n", content, buf);
			} else {
				printf("open ret=-%d content= buf=%s\n", errno, buf);
			}
		} else if (sscanf(line, "ksopen %511s %511s", arg, arg2) == 2) {
			int dfd = open(arg, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			int fd = openat(dfd, arg2, O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);

			printf("ksopen dfd=%d ret=%d\n", dfd, fd >= 0 ? 0 : -errno);
			if (fd >= 0)
				close(fd);
			close(dfd);
		} else {
			printf("error unknown command: %s", line);
		}
	}
	return 0;
}
