/* Syscall sites of known shapes, in a library the test dlopens after the
 * first refresh (the test binary itself is the agent's module: skipped). */

/* getpid's shape: `mov $nr, %eax; syscall; ret`: hooked on the mov. */
long setup_getppid(void)
{
    long r;
    __asm__ volatile("mov $110, %%eax\n\t"
                     "syscall\n\t"
                     : "=a"(r)
                     :
                     : "rcx", "r11", "memory");
    return r;
}

/* No mov right before, 6 bytes after: a jump on the syscall. */
long jump_site_getppid(void)
{
    long r;
    __asm__ volatile("mov $110, %%eax\n\t"
                     "nop\n\t"
                     "syscall\n\t"
                     "cmp $-4095, %%rax\n\t"
                     : "=a"(r)
                     :
                     : "rcx", "r11", "memory", "cc");
    return r;
}

/* A branch of the function lands right after the syscall: no jump fits
 * (a trap site when allowed). Returns (n - 1) * getppid() for n >= 1. */
long trap_site_getppid(long n)
{
    long acc = 0;
    __asm__ volatile("jmp 5f\n"
                     "4: mov $110, %%eax\n\t"
                     "nop\n\t"
                     "syscall\n"
                     "2: add %%rax, %[acc]\n\t"
                     "dec %[n]\n\t"
                     "jnz 4b\n\t"
                     "jmp 6f\n"
                     "5: xor %%eax, %%eax\n\t"
                     "jmp 2b\n"
                     "6:\n"
                     : [acc] "+r"(acc), [n] "+r"(n)
                     :
                     : "rax", "rcx", "r11", "memory", "cc");
    return acc;
}

/* A loop back to the syscall itself: a hook on the mov would miss the
 * later rounds, so the syscall is hooked. Returns n * getppid(), n >= 1. */
long loop_to_syscall(long n)
{
    long acc = 0;
    __asm__ volatile("mov $110, %%eax\n"
                     "1: syscall\n\t"
                     "add %%rax, %[acc]\n\t"
                     "mov $110, %%eax\n\t"
                     "dec %[n]\n\t"
                     "jnz 1b\n\t"
                     : [acc] "+r"(acc), [n] "+r"(n)
                     :
                     : "rax", "rcx", "r11", "memory", "cc");
    return acc;
}

/* Two sched_yield calls 4 bytes apart: a jump on the first displaces the
 * second (a trap site on the first, when allowed, lets both be hooked).
 * Returns the second result. */
long two_yields(void)
{
    long r;
    __asm__ volatile("mov $24, %%eax\n\t"
                     "nop\n\t"
                     "syscall\n\t"
                     "mov $24, %%al\n\t"
                     "syscall\n\t"
                     "cmp $-4095, %%rax\n\t"
                     : "=a"(r)
                     :
                     : "rcx", "r11", "memory", "cc");
    return r;
}

/* A signal-return trampoline's shape: never hooked. Not called. */
void restorer_shape(void)
{
    __asm__ volatile("mov $15, %%rax\n\t"
                     "syscall\n\t"
                     "nop\n\tnop\n\tnop\n\tnop\n\tnop\n\t" ::: "rax", "rcx", "r11", "memory");
}
