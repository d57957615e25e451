/* The victim of cli/tests/attach.rs and userbpf-attach-bench: a PIE
 * program that runs without the agent until `userbpf attach` loads it.
 *
 *   victim N        N worker threads call count_fn in a loop, a sleeper
 *                   thread naps in nanosleep, the main thread blocks in
 *                   read(0); what it reads ends the run. Prints
 *                   "read=LINE calls=C mismatches=M nap_errors=E": every
 *                   worker checks count_fn's results against its own sum,
 *                   and a nap or the read that failed (EINTR) would show.
 *   victim N nodump the same after prctl(PR_SET_DUMPABLE, 0).
 *   victim nap      single-threaded: naps in nanosleep, calls count_fn
 *                   after each nap, until a line arrives on stdin.
 *   victim hot [K]  the main thread calls hot_fn in a loop, forever; K
 *                   more threads (default 0) nap in nanosleep.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

static volatile int stop;

__attribute__((noinline)) long count_fn(long x) {
    __asm__ volatile("" ::: "memory");
    return x * 3 + 1;
}

__attribute__((noinline)) long hot_fn(long x) {
    __asm__ volatile("" ::: "memory");
    return x + 1;
}

struct work { long calls, total, expect; };

static void *worker(void *arg) {
    struct work *w = arg;
    for (long i = 0; !stop; i++) {
        w->total += count_fn(i);
        w->expect += i * 3 + 1;
        w->calls++;
    }
    return NULL;
}

static long nap_errors;

static void *sleeper(void *arg) {
    (void)arg;
    while (!stop) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        if (nanosleep(&ts, NULL) != 0) nap_errors++;
    }
    return NULL;
}

static int nap(void) {
    long calls = 0, total = 0, expect = 0;
    char buf[256];
    for (long i = 0;; i++) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        if (nanosleep(&ts, NULL) != 0) nap_errors++;
        total += count_fn(i);
        expect += i * 3 + 1;
        calls++;
        struct pollfd p = {0, POLLIN, 0};
        if (poll(&p, 1, 0) == 1) break;
    }
    ssize_t got = read(0, buf, sizeof buf - 1);
    if (got < 0) got = 0;
    buf[got] = 0;
    buf[strcspn(buf, "\n")] = 0;
    printf("read=%s calls=%ld mismatches=%d nap_errors=%ld\n", buf, calls, total != expect,
           nap_errors);
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* Under Yama ptrace_scope 1, let any process of ours trace us. */
    prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0);
    if (argc > 1 && strcmp(argv[1], "hot") == 0) {
        int k = argc > 2 ? atoi(argv[2]) : 0;
        for (int i = 0; i < k && i < 16; i++) {
            pthread_t t;
            pthread_create(&t, NULL, sleeper, NULL);
        }
        printf("ready %d\n", getpid());
        for (long i = 0;; i++) hot_fn(i);
    }
    if (argc > 1 && strcmp(argv[1], "nap") == 0) {
        printf("ready %d\n", getpid());
        return nap();
    }
    int n = argc > 1 ? atoi(argv[1]) : 3;
    if (n < 0) n = 0;
    if (n > 16) n = 16;
    if (argc > 2 && strcmp(argv[2], "nodump") == 0) prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    pthread_t t[17];
    static struct work w[16];
    for (int i = 0; i < n; i++) pthread_create(&t[i], NULL, worker, &w[i]);
    pthread_create(&t[n], NULL, sleeper, NULL);
    printf("ready %d\n", getpid());
    char buf[256];
    ssize_t got = read(0, buf, sizeof buf - 1);
    int err = errno;
    stop = 1;
    for (int i = 0; i <= n; i++) pthread_join(t[i], NULL);
    if (got < 0) {
        printf("read failed: %s\n", strerror(err));
        return 1;
    }
    buf[got] = 0;
    buf[strcspn(buf, "\n")] = 0;
    long calls = 0, bad = 0;
    for (int i = 0; i < n; i++) {
        calls += w[i].calls;
        if (w[i].total != w[i].expect) bad++;
    }
    printf("read=%s calls=%ld mismatches=%ld nap_errors=%ld\n", buf, calls, bad, nap_errors);
    return 0;
}
