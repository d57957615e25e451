/* The target of userbpf-uprobe-bench (benches/src/bin/userbpf-uprobe-bench.rs).
 *
 * Three noinline functions computing x + 1, written in assembly so that
 * their first instruction is exactly `push %rbp`, `endbr64` or the 5-byte
 * nop `nopl 0x0(%rax,%rax,1)`. The bench reads the commands below on stdin:
 *
 *   run NAME CALLS REPS   time CALLS calls of NAME, REPS times, after a
 *                         warm-up; prints "CPU_NS WALL_NS TOTAL": the best
 *                         ns per call in thread CPU time and in wall time,
 *                         and the number of calls made in all
 *   exit
 *
 * Its first line is "ready PID ADDR_PUSH ADDR_ENDBR ADDR_NOP5" (hex).
 */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

__asm__(
    ".text\n"
    ".p2align 4\n"
    ".globl ub_push\n"
    ".type ub_push, @function\n"
    "ub_push:\n"
    "  push %rbp\n"
    "  mov %rsp, %rbp\n"
    "  lea 1(%rdi), %rax\n"
    "  pop %rbp\n"
    "  ret\n"
    ".size ub_push, .-ub_push\n"
    ".p2align 4\n"
    ".globl ub_endbr\n"
    ".type ub_endbr, @function\n"
    "ub_endbr:\n"
    "  endbr64\n"
    "  push %rbp\n"
    "  mov %rsp, %rbp\n"
    "  lea 1(%rdi), %rax\n"
    "  pop %rbp\n"
    "  ret\n"
    ".size ub_endbr, .-ub_endbr\n"
    ".p2align 4\n"
    ".globl ub_nop5\n"
    ".type ub_nop5, @function\n"
    "ub_nop5:\n"
    "  .byte 0x0f, 0x1f, 0x44, 0x00, 0x00\n"
    "  lea 1(%rdi), %rax\n"
    "  ret\n"
    ".size ub_nop5, .-ub_nop5\n");

long ub_push(long);
long ub_endbr(long);
long ub_nop5(long);

volatile long sink;

static double now(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

__attribute__((noinline)) static void loop(long (*f)(long), long n) {
    for (long i = 0; i < n; i++)
        sink += f(i);
}

int main(void) {
    char line[256], name[64];
    long calls, reps;
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("ready %d %lx %lx %lx\n", getpid(), (unsigned long)ub_push,
           (unsigned long)ub_endbr, (unsigned long)ub_nop5);
    while (fgets(line, sizeof line, stdin)) {
        if (sscanf(line, "run %63s %ld %ld", name, &calls, &reps) == 3) {
            long (*f)(long) = strcmp(name, "push") == 0    ? ub_push
                              : strcmp(name, "endbr") == 0 ? ub_endbr
                              : strcmp(name, "nop5") == 0  ? ub_nop5
                                                           : NULL;
            if (!f) {
                printf("error unknown function %s\n", name);
                continue;
            }
            long warm = calls < 10000 ? calls : 10000;
            loop(f, warm);
            double best_cpu = 1e300, best_wall = 1e300;
            for (long r = 0; r < reps; r++) {
                double c0 = now(CLOCK_THREAD_CPUTIME_ID), w0 = now(CLOCK_MONOTONIC);
                loop(f, calls);
                double c1 = now(CLOCK_THREAD_CPUTIME_ID), w1 = now(CLOCK_MONOTONIC);
                if (c1 - c0 < best_cpu) best_cpu = c1 - c0;
                if (w1 - w0 < best_wall) best_wall = w1 - w0;
            }
            printf("%.3f %.3f %ld\n", best_cpu / calls, best_wall / calls, warm + calls * reps);
        } else if (strncmp(line, "exit", 4) == 0) {
            return 0;
        }
    }
    return 0;
}
