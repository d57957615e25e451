// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The traced program: makes known system calls for one libbpf-tools tool.
 *
 *   bcc-target TOOL DIR
 *
 * DIR holds `exists` (a regular file) and `link` (a symlink to it), and
 * `mnt/` (a directory); for execsnoop, `bcc-stage2` (a symlink to this
 * program); nothing else there is created.
 *
 * 1. Prints "ready PID", pinned to one CPU (so the per-CPU perf buffers
 *    keep the order of its events).
 * 2. Until stdin says "go": every 20 ms, one round of marker calls, one
 *    per system call the tool traces, on marker arguments (paths under
 *    DIR/sync-*, target pids 1073741801..3, signal 0, sched_yield). The
 *    test sends "go" once the driver has reported every kind of marker,
 *    which proves every link is installed in this process.
 * 3. The tool's real calls; one "result NAME RET" line each (RET: the
 *    return value, or -errno).
 * 4. "done", then waits for stdin to close.
 *
 * execsnoop: the real calls are an execve of DIR/missing (ENOENT), then an
 * execve of DIR/bcc-stage2 with argv "bcc-stage2 a b c" and an environment
 * of its own (BCC_DIR=DIR and PATH only: no LD_PRELOAD, no USERBPF_*).
 * Started under that name, this program is the second stage, in the new
 * image (comm bcc-stage2, same pid): it prints "stage2 argv ARGS", then
 * "stage2 env NAME=VALUE" for each variable of its environment (the agent,
 * if it is there, came back through the exec), makes one more execve of a
 * missing file (traced only if the agent is in this image), and goes on
 * with step 4.
 *
 * execsnoop-spawn (execsnoop's markers): children exec /bin/true, with an
 * environment without LD_PRELOAD or USERBPF_*: one made by fork, argv
 * "true forked", then one by posix_spawn (a CLONE_VM|CLONE_VFORK child,
 * which shares the parent's memory until its exec), argv "true spawned";
 * "result NAME PID" for each, then "result NAME_status STATUS" once it is
 * reaped. Then the target's own execve of DIR/missing (ENOENT).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <spawn.h>
#include <unistd.h>

#define SYNC_PID 1073741800 /* above any pid_max: ESRCH */
#define GETPPID_CALLS 1000
#define STAGE2 "bcc-stage2"

extern char **environ;

static const char *dir;
static volatile sig_atomic_t usr1, usr2;

static void on_usr1(int sig) { (void)sig; usr1++; }
static void on_usr2(int sig) { (void)sig; usr2++; }

static const char *path(const char *name)
{
	static char buf[8][4096];
	static int i;
	char *p = buf[i++ % 8];

	snprintf(p, sizeof(buf[0]), "%s/%s", dir, name);
	return p;
}

/* The raw return value of a libc call that returns -1 and sets errno. */
static long rv(long r) { return r < 0 ? -errno : r; }

static void result(const char *name, long r) { printf("result %s %ld\n", name, r); }

static void pin_to_one_cpu(void)
{
	cpu_set_t set;
	int cpu;

	if (sched_getaffinity(0, sizeof(set), &set) != 0)
		return;
	for (cpu = 0; cpu < CPU_SETSIZE; cpu++) {
		if (CPU_ISSET(cpu, &set)) {
			CPU_ZERO(&set);
			CPU_SET(cpu, &set);
			sched_setaffinity(0, sizeof(set), &set);
			return;
		}
	}
}

/* ---- markers ---- */

static void markers(const char *tool)
{
	struct stat st;
	struct statfs sfs;
	struct statx stx;
	long r;

	if (strcmp(tool, "opensnoop") == 0) {
		r = syscall(SYS_openat, AT_FDCWD, path("sync-openat"), O_RDONLY);
		if (r >= 0)
			close(r);
		r = syscall(SYS_open, path("sync-open"), O_RDONLY);
		if (r >= 0)
			close(r);
	} else if (strcmp(tool, "statsnoop") == 0) {
		syscall(SYS_stat, path("sync-stat"), &st);
		syscall(SYS_lstat, path("sync-lstat"), &st);
		syscall(SYS_newfstatat, AT_FDCWD, path("sync-fstatat"), &st, 0);
		syscall(SYS_statfs, path("sync-statfs"), &sfs);
		syscall(SYS_statx, AT_FDCWD, path("sync-statx"), 0, STATX_BASIC_STATS, &stx);
	} else if (strcmp(tool, "sigsnoop") == 0) {
		syscall(SYS_kill, SYNC_PID + 1, 0);
		syscall(SYS_tkill, SYNC_PID + 2, 0);
		syscall(SYS_tgkill, SYNC_PID + 3, SYNC_PID + 3, 0);
	} else if (strcmp(tool, "mountsnoop") == 0) {
		syscall(SYS_mount, "sync-src", path("sync-mnt"), "tmpfs", 0UL, NULL);
		syscall(SYS_umount2, path("sync-mnt"), 0);
	} else if (strcmp(tool, "syscount") == 0) {
		sched_yield();
	} else if (strncmp(tool, "execsnoop", strlen("execsnoop")) == 0) {
		char *const argv[] = { "sync-execve", NULL };

		syscall(SYS_execve, path("sync-execve"), argv, environ);
	}
}

/* ---- the real calls ---- */

static void run_opensnoop(void)
{
	long dfd, r;

	/* glibc's open() is the openat syscall with AT_FDCWD. */
	dfd = rv(open(dir, O_RDONLY | O_DIRECTORY));
	result("open_dir", dfd);
	r = rv(openat((int)dfd, "exists", O_RDONLY | O_CLOEXEC));
	result("openat_exists", r);
	if (r >= 0)
		close((int)r);
	r = rv(openat(AT_FDCWD, path("missing"), O_RDONLY));
	result("openat_missing", r);
	/* The open syscall itself (x86-64 has it; glibc no longer uses it). */
	r = rv(syscall(SYS_open, path("exists"), O_RDONLY));
	result("open_exists", r);
	if (r >= 0)
		close((int)r);
	r = rv(syscall(SYS_open, path("nodir/new"), O_WRONLY | O_CREAT, 0600));
	result("open_nodir", r);
	if (dfd >= 0)
		close((int)dfd);
}

static void run_statsnoop(void)
{
	struct stat st;
	struct statfs sfs;
	struct statx stx;

	result("stat_exists", rv(syscall(SYS_stat, path("exists"), &st)));
	result("stat_missing", rv(syscall(SYS_stat, path("missing"), &st)));
	result("lstat_link", rv(syscall(SYS_lstat, path("link"), &st)));
	result("fstatat_exists", rv(syscall(SYS_newfstatat, AT_FDCWD, path("exists"), &st, 0)));
	result("fstatat_missing",
	       rv(syscall(SYS_newfstatat, AT_FDCWD, path("missing"), &st, AT_SYMLINK_NOFOLLOW)));
	/* glibc 2.33+: stat() is newfstatat(AT_FDCWD, path, buf, 0). */
	result("libc_stat", rv(stat(path("link"), &st)));
	result("statfs_dir", rv(statfs(dir, &sfs)));
	result("statfs_missing", rv(statfs(path("missing"), &sfs)));
	result("statx_exists",
	       rv(syscall(SYS_statx, AT_FDCWD, path("exists"), 0, STATX_BASIC_STATS, &stx)));
	result("statx_missing",
	       rv(syscall(SYS_statx, AT_FDCWD, path("missing"), 0, STATX_BASIC_STATS, &stx)));
}

static void run_sigsnoop(void)
{
	sigset_t usr1_set, old;
	pid_t pid = getpid(), tid = gettid(), child;
	int status = -1;

	result("kill_self", rv(kill(pid, SIGUSR1)));

	/* A child that waits for SIGUSR1 (handled: inherited handler). */
	sigemptyset(&usr1_set);
	sigaddset(&usr1_set, SIGUSR1);
	sigprocmask(SIG_BLOCK, &usr1_set, &old);
	child = fork();
	if (child == 0) {
		sigset_t none;

		sigemptyset(&none);
		alarm(30); /* never outlive a test that went away */
		usr1 = 0;
		while (!usr1)
			sigsuspend(&none);
		_exit(42);
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	printf("child %d\n", child);
	result("kill_child", rv(kill(child, SIGUSR1)));
	waitpid(child, &status, 0);
	printf("child_exit %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);

	result("tgkill_self", rv(syscall(SYS_tgkill, pid, tid, SIGUSR2)));
	result("tkill_self", rv(syscall(SYS_tkill, tid, SIGUSR2)));
	result("kill_nobody", rv(kill(SYNC_PID, SIGUSR1)));
	printf("received usr1=%d usr2=%d\n", (int)usr1, (int)usr2);
}

static void run_mountsnoop(void)
{
	result("mount_tmpfs", rv(mount("userbpf-src", path("mnt"), "tmpfs", MS_NOSUID | MS_NODEV,
				       "size=1m")));
	result("mount_bind", rv(mount(path("exists"), path("mnt"), NULL, MS_BIND, NULL)));
	/* umount2 is the kernel's `umount` syscall (sys_enter_umount). */
	result("umount_detach", rv(umount2(path("mnt"), MNT_DETACH)));
}

static void run_syscount(void)
{
	long sum = 0;
	int i;

	for (i = 0; i < GETPPID_CALLS; i++)
		sum += syscall(SYS_getppid) > 0;
	result("getppid", sum);
}

/* execve with an environment that names DIR and nothing of userbpf's. */
static long exec_clean(const char *file, char *const argv[])
{
	char dir_var[4200];
	char *env[] = { dir_var, "PATH=/usr/bin:/bin", NULL };

	snprintf(dir_var, sizeof(dir_var), "BCC_DIR=%s", dir);
	return rv(syscall(SYS_execve, file, argv, env));
}

static void run_execsnoop(void)
{
	char *const missing[] = { "missing", "x", NULL };
	char *const stage2[] = { STAGE2, "a", "b", "c", NULL };

	result("execve_missing", exec_clean(path("missing"), missing));
	/* Returns only if it failed. */
	result("execve_stage2", exec_clean(path(STAGE2), stage2));
}

static void reap(const char *name, pid_t child)
{
	char status_name[64];
	int status = -1;

	if (child > 0)
		waitpid(child, &status, 0);
	snprintf(status_name, sizeof(status_name), "%s_status", name);
	result(status_name, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

static void run_execsnoop_spawn(void)
{
	char *const spawned[] = { "true", "spawned", NULL };
	char *const missing[] = { "missing", "x", NULL };
	char *env[] = { "PATH=/usr/bin:/bin", NULL };
	pid_t child;
	int err;

	child = fork();
	if (child == 0) {
		/*
		 * The strings on the child's own (written, so present) stack:
		 * the kernel's probe reads do not fault in the pages of
		 * .rodata that fork left unmapped, and execsnoop would
		 * report empty arguments.
		 */
		char file[] = "/bin/true", a0[] = "true", a1[] = "forked";
		char *const argv[] = { a0, a1, NULL };

		syscall(SYS_execve, file, argv, env);
		_exit(127);
	}
	result("fork_true", child < 0 ? -errno : child);
	reap("fork_true", child);

	err = posix_spawn(&child, "/bin/true", NULL, NULL, spawned, env);
	result("spawn_true", err ? -err : child);
	reap("spawn_true", err ? -1 : child);

	result("execve_missing", exec_clean(path("missing"), missing));
}

/* The new image of run_execsnoop's exec. */
static void run_stage2(int argc, char **argv)
{
	char *const missing[] = { "missing-2", "y", NULL };
	char **e;
	int i;

	printf("stage2 argv");
	for (i = 1; i < argc; i++)
		printf(" %s", argv[i]);
	printf("\n");
	for (e = environ; *e; e++)
		printf("stage2 env %s\n", *e);
	result("stage2_execve_missing", exec_clean(path("missing-2"), missing));
}

/* True once stdin has said "go" (waits up to ms). */
static int got_go(int ms)
{
	struct pollfd p = { .fd = 0, .events = POLLIN };
	char buf[64];
	ssize_t n;

	if (poll(&p, 1, ms) <= 0)
		return 0;
	n = read(0, buf, sizeof(buf) - 1);
	if (n <= 0)
		exit(3); /* the test went away */
	buf[n] = 0;
	return strstr(buf, "go") != NULL;
}

int main(int argc, char **argv)
{
	const char *tool, *base;
	char buf[64];

	base = strrchr(argv[0], '/');
	base = base ? base + 1 : argv[0];
	if (strcmp(base, STAGE2) == 0) {
		setvbuf(stdout, NULL, _IOLBF, 0);
		dir = getenv("BCC_DIR");
		if (!dir) {
			fprintf(stderr, "%s: no BCC_DIR\n", STAGE2);
			return 2;
		}
		run_stage2(argc, argv);
		goto done;
	}
	if (argc != 3) {
		fprintf(stderr, "usage: %s TOOL DIR\n", argv[0]);
		return 2;
	}
	tool = argv[1];
	dir = argv[2];
	setvbuf(stdout, NULL, _IOLBF, 0);
	pin_to_one_cpu();
	signal(SIGUSR1, on_usr1);
	signal(SIGUSR2, on_usr2);
	printf("ready %d\n", getpid());

	while (!got_go(20))
		markers(tool);

	if (strcmp(tool, "opensnoop") == 0)
		run_opensnoop();
	else if (strcmp(tool, "statsnoop") == 0)
		run_statsnoop();
	else if (strcmp(tool, "sigsnoop") == 0)
		run_sigsnoop();
	else if (strcmp(tool, "mountsnoop") == 0)
		run_mountsnoop();
	else if (strcmp(tool, "syscount") == 0)
		run_syscount();
	else if (strcmp(tool, "execsnoop") == 0)
		run_execsnoop();
	else if (strcmp(tool, "execsnoop-spawn") == 0)
		run_execsnoop_spawn();
done:
	printf("done\n");

	while (read(0, buf, sizeof(buf)) > 0)
		;
	return 0;
}
