/* The start-up target of userbpf-uprobe-bench: calls one function (which
 * the bench may probe) once and exits. */
__asm__(
    ".text\n"
    ".p2align 4\n"
    ".globl ub_start_fn\n"
    ".type ub_start_fn, @function\n"
    "ub_start_fn:\n"
    "  .byte 0x0f, 0x1f, 0x44, 0x00, 0x00\n"
    "  lea 1(%rdi), %rax\n"
    "  ret\n"
    ".size ub_start_fn, .-ub_start_fn\n");

long ub_start_fn(long);

int main(int argc, char **argv) {
    (void)argv;
    return ub_start_fn(argc) == argc + 1 ? 0 : 1;
}
