//! The entry stub: the code a patched site jumps to.
//!
//! Templates assembled into the agent's text and copied into each site's
//! trampoline, with per-site constants written over placeholder immediates
//! (checked before they are overwritten). The relocated instructions follow
//! the copy directly, so the stub falls through into them. Every template
//! builds a `struct pt_regs` in the kernel's field order below the
//! interrupted stack pointer, calls the handler (if one is bound) with a
//! per-thread recursion guard, `errno` preserved and the stack aligned,
//! restores every general register from the `pt_regs` (so the handler may
//! change them) and resumes:
//!
//! * **entry** (the site is a function's first instruction, or the one after
//!   its `endbr64`). The System V ABI makes the status flags dead and DF
//!   clear at a call boundary, and leaves no red zone to protect, so the
//!   stub records `rflags` (`pushfq`) but does not restore it. It keeps the
//!   argument vector registers (xmm0-7, or ymm0-7 with AVX; xmm8-15 carry
//!   nothing into a function) around the handler only. It also arms the
//!   return hook (`uretprobe`), in assembly once the thread has a shadow
//!   stack, without touching vector state when there is no entry handler.
//! * **inner** (any other instruction boundary). It steps 128 bytes below
//!   the stack pointer before writing anything (the red zone), clears DF for
//!   the handler, keeps xmm0-15 (ymm0-15 with AVX, everything through
//!   `xsave64` where AVX-512 or AMX state is enabled: the handler may call
//!   glibc string functions, whose `vzeroupper` clears live ymm halves),
//!   and restores CF PF AF ZF SF through `sahf`, OF through `add`, and DF,
//!   instead of `popfq` (3.7 to 4.7 ns here: see docs/hooks.md).
//!
//! If the handler changed `ip`, the stub resumes there instead of running
//! the displaced instructions, through `ret imm16` from a slot above the
//! red zone so that no register and no byte of the red zone is disturbed.

use super::error::HookError;
use super::regs::off;
use core::arch::global_asm;

macro_rules! save_gprs {
    () => {
        concat!(
            "mov [rsp + 80], rax\n",
            "mov [rsp + 88], rcx\n",
            "mov [rsp + 96], rdx\n",
            "mov [rsp + 104], rsi\n",
            "mov [rsp + 112], rdi\n",
            "mov [rsp + 72], r8\n",
            "mov [rsp + 64], r9\n",
            "mov [rsp + 56], r10\n",
            "mov [rsp + 48], r11\n",
            "mov [rsp + 40], rbx\n",
            "mov [rsp + 32], rbp\n",
            "mov [rsp + 24], r12\n",
            "mov [rsp + 16], r13\n",
            "mov [rsp + 8], r14\n",
            "mov [rsp + 0], r15\n",
        )
    };
}

macro_rules! restore_gprs {
    () => {
        concat!(
            "mov rax, [rsp + 80]\n",
            "mov rcx, [rsp + 88]\n",
            "mov rdx, [rsp + 96]\n",
            "mov rsi, [rsp + 104]\n",
            "mov rdi, [rsp + 112]\n",
            "mov r8, [rsp + 72]\n",
            "mov r9, [rsp + 64]\n",
            "mov r10, [rsp + 56]\n",
            "mov r11, [rsp + 48]\n",
            "mov rbx, [rsp + 40]\n",
            "mov rbp, [rsp + 32]\n",
            "mov r12, [rsp + 24]\n",
            "mov r13, [rsp + 16]\n",
            "mov r14, [rsp + 8]\n",
            "mov r15, [rsp + 0]\n",
        )
    };
}
pub(crate) use save_gprs;

// The placeholders: 64-bit immediates too large for a shorter encoding and
// disp32/imm32 values that force the 4-byte form.
const PH_SITE_IP: u64 = 0x1111_1111_1111_1111;
const PH_SITE_DATA: u64 = 0x2222_2222_2222_2222;
const PH_RET_PREPARE: u64 = 0x3333_3333_3333_3333;
const PH_RET_TRAMP: u64 = 0x4444_4444_4444_4444;
const PH_IMM32: u32 = 0x7fff_0000;

macro_rules! vec_lines {
    ($op:literal, $size:literal, $reg:literal, $($i:literal),*) => {
        concat!($($op, " [rsp + ", $size, " * ", $i, "], ", $reg, $i, "\n",)*)
    };
}
macro_rules! vec_lines_back {
    ($op:literal, $size:literal, $reg:literal, $($i:literal),*) => {
        concat!($($op, " ", $reg, $i, ", [rsp + ", $size, " * ", $i, "]\n",)*)
    };
}

global_asm!(
    // Vector state around a call, at rsp (rbx holds the pt_regs base, so
    // the stack can be realigned freely). \vec: 0 xmm (movaps), 1 ymm
    // (vmovdqu), 2 everything (xsave64, with a size placeholder labelled
    // \ph); \nvec: registers kept by kinds 0 and 1.
    ".macro USERBPF_VSAVE vec, nvec, ph",
    ".if \\vec == 2",
    "sub rsp, 0x7fff0000",
    "\\ph:",
    "and rsp, -64",
    "xor eax, eax",
    "mov [rsp + 512], rax",
    "mov [rsp + 520], rax",
    "mov [rsp + 528], rax",
    "mov [rsp + 536], rax",
    "mov [rsp + 544], rax",
    "mov [rsp + 552], rax",
    "mov [rsp + 560], rax",
    "mov [rsp + 568], rax",
    "mov eax, -1",
    "mov edx, -1",
    "xsave64 [rsp]",
    ".elseif \\vec == 1",
    "and rsp, -32",
    "sub rsp, 32 * \\nvec",
    vec_lines!("vmovdqu", "32", "ymm", 0, 1, 2, 3, 4, 5, 6, 7),
    ".if \\nvec == 16",
    vec_lines!("vmovdqu", "32", "ymm", 8, 9, 10, 11, 12, 13, 14, 15),
    ".endif",
    // The handler may run legacy-SSE code: no dirty upper halves for it.
    "vzeroupper",
    ".else",
    "and rsp, -16",
    "sub rsp, 16 * \\nvec",
    vec_lines!("movaps", "16", "xmm", 0, 1, 2, 3, 4, 5, 6, 7),
    ".if \\nvec == 16",
    vec_lines!("movaps", "16", "xmm", 8, 9, 10, 11, 12, 13, 14, 15),
    ".endif",
    ".endif",
    ".endm",
    ".macro USERBPF_VRESTORE vec, nvec",
    ".if \\vec == 2",
    "mov eax, -1",
    "mov edx, -1",
    "xrstor64 [rsp]",
    ".elseif \\vec == 1",
    vec_lines_back!("vmovdqu", "32", "ymm", 0, 1, 2, 3, 4, 5, 6, 7),
    ".if \\nvec == 16",
    vec_lines_back!("vmovdqu", "32", "ymm", 8, 9, 10, 11, 12, 13, 14, 15),
    ".endif",
    ".else",
    vec_lines_back!("movaps", "16", "xmm", 0, 1, 2, 3, 4, 5, 6, 7),
    ".if \\nvec == 16",
    vec_lines_back!("movaps", "16", "xmm", 8, 9, 10, 11, 12, 13, 14, 15),
    ".endif",
    ".endif",
    "mov rsp, rbx",
    ".endm",
    // Arms the return hook in assembly when the thread's shadow stack
    // exists (uretprobe::ret_prepare does the same in Rust, and allocates):
    // drops stale entries, pushes (slot, return address, site), sets ebp.
    // rbx: pt_regs, r12: ThreadState, r15: SiteData. Jumps to \full when
    // there is no shadow stack yet, falls through otherwise.
    ".macro USERBPF_ARM_RET name, full",
    "mov rcx, [r12 + 8]",
    "test rcx, rcx",
    "jz \\full",
    "mov rdx, [rbx + 152]",
    "mov rax, [rcx]",
    "userbpf_hook_stale_\\name:",
    "test rax, rax",
    "jz userbpf_hook_push_\\name",
    "lea rsi, [rax + rax * 2]",
    "cmp [rcx + rsi * 8 - 16], rdx",
    "ja userbpf_hook_push_\\name",
    "dec rax",
    "jmp userbpf_hook_stale_\\name",
    "userbpf_hook_push_\\name:",
    "mov [rcx], rax",
    "cmp rax, {cap}",
    "jae userbpf_hook_full_\\name",
    "lea rsi, [rax + rax * 2]",
    "lea rsi, [rcx + rsi * 8 + 8]",
    "mov [rsi], rdx",
    "mov rdi, [rdx]",
    "mov [rsi + 8], rdi",
    "mov [rsi + 16], r15",
    "inc rax",
    "mov [rcx], rax",
    "mov ebp, 1",
    "jmp userbpf_hook_armed_\\name",
    "userbpf_hook_full_\\name:",
    "lock inc qword ptr [r15 + 24]",
    "userbpf_hook_armed_\\name:",
    ".endm",
    // Every stub's start: pt_regs built below the red zone (\rz bytes;
    // \inner: DF cleared for the handler); rbx: pt_regs, r12: this
    // thread's ThreadState, r13: its errno, ebp: 0. A busy thread (a hook
    // hit inside a handler) goes to skip; else busy is set, r14d keeps
    // errno, r15 is the SiteData and rcx its binding, read once (it may
    // be swapped at any time), ZF set when there is none.
    ".macro USERBPF_HOOK_FRAME name, rz, inner",
    // pt_regs ends at S - rz (S: the stack pointer at the site); its flags
    // slot (offset 144) is where pushfq writes.
    "lea rsp, [rsp - (\\rz + 16)]",
    "pushfq",
    "lea rsp, [rsp - 144]",
    save_gprs!(),
    ".if \\inner",
    "cld",
    ".endif",
    "lea rax, [rsp + 168 + \\rz]",
    "mov [rsp + 152], rax",
    "movabs rax, 0x1111111111111111",
    "userbpf_hook_ph_ip1_\\name:",
    "mov [rsp + 128], rax",
    "mov qword ptr [rsp + 120], -1",
    "mov qword ptr [rsp + 136], 0x33",
    "mov qword ptr [rsp + 160], 0x2b",
    "mov rbx, rsp",
    "xor ebp, ebp",
    "mov rax, qword ptr fs:[0]",
    "lea r12, [rax + 0x7fff0000]",
    "userbpf_hook_ph_ts_\\name:",
    "lea r13, [rax + 0x7fff0000]",
    "userbpf_hook_ph_errno_\\name:",
    "cmp qword ptr [r12], 0",
    "jne userbpf_hook_skip_\\name",
    "mov qword ptr [r12], 1",
    "mov r14d, dword ptr [r13]",
    "movabs r15, 0x2222222222222222",
    "userbpf_hook_ph_data_\\name:",
    "mov rcx, qword ptr [r15]",
    "test rcx, rcx",
    ".endm",
    // \rz: bytes stepped over below the stack pointer (the red zone);
    // \inner: restore the flags, and do not arm return hooks;
    // \vec, \nvec: as for USERBPF_VSAVE.
    ".macro USERBPF_HOOK_STUB name, rz, inner, vec, nvec",
    ".p2align 4",
    ".globl userbpf_hook_stub_\\name",
    ".hidden userbpf_hook_stub_\\name",
    "userbpf_hook_stub_\\name:",
    // ebp: 1 when a return hook was armed.
    "USERBPF_HOOK_FRAME \\name, \\rz, \\inner",
    "jz userbpf_hook_nohandler_\\name",
    // An entry handler: vector state saved around it (USERBPF_VSAVE
    // leaves rcx alone).
    "USERBPF_VSAVE \\vec, \\nvec, userbpf_hook_ph_xsz_\\name",
    "mov rdi, rbx",
    "mov rsi, qword ptr [rcx + 8]",
    "call qword ptr [rcx]",
    ".if \\inner == 0",
    "cmp qword ptr [r15 + 8], 0",
    "je userbpf_hook_vdone_\\name",
    // Not when the handler redirected the call (override_return).
    "mov rax, [rbx + 128]",
    "cmp rax, [r15 + 16]",
    "jne userbpf_hook_vdone_\\name",
    "USERBPF_ARM_RET \\name\\()_h, userbpf_hook_hslow_\\name",
    "jmp userbpf_hook_vdone_\\name",
    "userbpf_hook_hslow_\\name:",
    "mov rdi, rbx",
    "mov rsi, r15",
    "mov rdx, r12",
    "movabs rax, 0x3333333333333333",
    "userbpf_hook_ph_ret_\\name:",
    "call rax",
    "mov ebp, eax",
    "userbpf_hook_vdone_\\name:",
    ".endif",
    "USERBPF_VRESTORE \\vec, \\nvec",
    "jmp userbpf_hook_done_\\name",
    "userbpf_hook_nohandler_\\name:",
    ".if \\inner == 0",
    // Only a return handler: arm it without touching vector state.
    "cmp qword ptr [r15 + 8], 0",
    "je userbpf_hook_done_\\name",
    "USERBPF_ARM_RET \\name, userbpf_hook_slow_\\name",
    ".endif",
    "userbpf_hook_done_\\name:",
    "mov dword ptr [r13], r14d",
    "mov qword ptr [r12], 0",
    "userbpf_hook_skip_\\name:",
    "mov rax, [rsp + 128]",
    "movabs rcx, 0x1111111111111111",
    "userbpf_hook_ph_ip2_\\name:",
    "cmp rax, rcx",
    "je userbpf_hook_resume_\\name",
    // Redirected: the target goes in the ss slot, just below the red zone,
    // and `ret rz` pops it and steps back over the red zone.
    "mov [rsp + 160], rax",
    ".if \\inner",
    "USERBPF_HOOK_RESTORE_FLAGS",
    ".endif",
    restore_gprs!(),
    "lea rsp, [rsp + 160]",
    ".if \\rz",
    "ret \\rz",
    ".else",
    "ret",
    ".endif",
    ".if \\inner == 0",
    // The thread's first return hook: ret_prepare allocates its shadow
    // stack (vector state saved: it is Rust code).
    "userbpf_hook_slow_\\name:",
    "USERBPF_VSAVE \\vec, \\nvec, userbpf_hook_ph_xsz2_\\name",
    "mov rdi, rbx",
    "mov rsi, r15",
    "mov rdx, r12",
    "movabs rax, 0x3333333333333333",
    "userbpf_hook_ph_ret2_\\name:",
    "call rax",
    "mov ebp, eax",
    "USERBPF_VRESTORE \\vec, \\nvec",
    "jmp userbpf_hook_done_\\name",
    // A return hook is armed: the original return address is on the
    // shadow stack; run the function by calling it, so that it returns
    // into this trampoline (a return the CPU predicts), then continue in
    // the return trampoline, which returns to the original caller.
    "userbpf_hook_call_\\name:",
    restore_gprs!(),
    "lea rsp, [rsp + 168 + 8]",
    "call userbpf_hook_stub_end_\\name",
    "movabs r11, 0x4444444444444444",
    "userbpf_hook_ph_rtramp_\\name:",
    "jmp r11",
    ".endif",
    "userbpf_hook_resume_\\name:",
    ".if \\inner",
    "USERBPF_HOOK_RESTORE_FLAGS",
    ".else",
    "test ebp, ebp",
    "jnz userbpf_hook_call_\\name",
    ".endif",
    restore_gprs!(),
    "lea rsp, [rsp + 168 + \\rz]",
    "userbpf_hook_stub_end_\\name:",
    // The layout table: length and placeholder offsets (0 when absent).
    ".pushsection .rodata.userbpf_hook_layout_\\name,\"a\",@progbits",
    ".p2align 3",
    ".globl userbpf_hook_layout_\\name",
    ".hidden userbpf_hook_layout_\\name",
    "userbpf_hook_layout_\\name:",
    ".quad userbpf_hook_stub_end_\\name - userbpf_hook_stub_\\name",
    ".quad userbpf_hook_ph_ip1_\\name - 8 - userbpf_hook_stub_\\name",
    ".quad userbpf_hook_ph_ip2_\\name - 8 - userbpf_hook_stub_\\name",
    ".quad userbpf_hook_ph_data_\\name - 8 - userbpf_hook_stub_\\name",
    ".quad userbpf_hook_ph_ts_\\name - 4 - userbpf_hook_stub_\\name",
    ".quad userbpf_hook_ph_errno_\\name - 4 - userbpf_hook_stub_\\name",
    ".if \\inner",
    ".quad 0",
    ".quad 0",
    ".quad 0",
    ".else",
    ".quad userbpf_hook_ph_ret_\\name - 8 - userbpf_hook_stub_\\name",
    ".quad userbpf_hook_ph_ret2_\\name - 8 - userbpf_hook_stub_\\name",
    ".quad userbpf_hook_ph_rtramp_\\name - 8 - userbpf_hook_stub_\\name",
    ".endif",
    ".if \\vec == 2",
    ".quad userbpf_hook_ph_xsz_\\name - 4 - userbpf_hook_stub_\\name",
    ".else",
    ".quad 0",
    ".endif",
    ".quad 0",
    ".popsection",
    ".endm",
    // Restores DF, OF and the flags sahf loads from the saved rflags at
    // [rsp + 144]; clobbers rax and rcx (restored afterwards).
    ".macro USERBPF_HOOK_RESTORE_FLAGS",
    "cld",
    "test byte ptr [rsp + 145], 4",
    "jz 1f",
    "std",
    "1:",
    "movzx ecx, byte ptr [rsp + 145]",
    "shr ecx, 3",
    "and ecx, 1",
    "add cl, 0x7f",
    "mov ah, byte ptr [rsp + 144]",
    "sahf",
    ".endm",
    // The syscall stub (`Variant::Syscall`): the inner stub's frame, with
    // a handler that may answer "make the call here". The call is then
    // made from this trampoline, at the depth of the original instruction,
    // and the stub jumps (never returns) to the code after that
    // instruction: the first `ret` after a syscall costs ~55 ns on CPUs
    // with return-stack mitigations, and each further one that has no
    // matching `call` ~7 ns, so only the application's own returns follow
    // the call. ebp: the phase passed to the handler (0 entry, 1 exit),
    // then the entry's answer (SyscallAction).
    ".macro USERBPF_SYSCALL_STUB name, vec",
    ".p2align 4",
    ".globl userbpf_hook_stub_\\name",
    ".hidden userbpf_hook_stub_\\name",
    "userbpf_hook_stub_\\name:",
    "USERBPF_HOOK_FRAME \\name, 128, 1",
    "jz userbpf_hook_done_\\name",
    "userbpf_hook_call_\\name:",
    "USERBPF_VSAVE \\vec, 16, userbpf_hook_ph_xsz_\\name",
    "mov rdi, rbx",
    "mov rsi, qword ptr [rcx + 8]",
    "mov edx, ebp",
    "call qword ptr [rcx]",
    "test ebp, ebp",
    "jnz userbpf_hook_acted_\\name",
    "mov ebp, eax",
    "userbpf_hook_acted_\\name:",
    "USERBPF_VRESTORE \\vec, 16",
    "cmp ebp, 1",
    "jb userbpf_hook_done_\\name",
    "je userbpf_hook_fast_end_\\name",
    // The call, with the arguments and number from pt_regs, errno as the
    // application left it, and `busy` clear (a signal handler running
    // during a blocking call is traced; grace periods don't wait).
    "mov dword ptr [r13], r14d",
    "mov qword ptr [r12], 0",
    "mov rdi, [rbx + 112]",
    "mov rsi, [rbx + 104]",
    "mov rdx, [rbx + 96]",
    "mov r10, [rbx + 56]",
    "mov r8, [rbx + 72]",
    "mov r9, [rbx + 64]",
    "mov rax, [rbx + 120]",
    "syscall",
    "mov [rbx + 80], rax",
    "test ebp, 1",
    "jz userbpf_hook_fast_end_\\name",
    // Exit programs: the handler again, if still bound.
    "mov qword ptr [r12], 1",
    "mov rcx, qword ptr [r15]",
    "test rcx, rcx",
    "jz userbpf_hook_fast_end_\\name",
    "mov ebp, 1",
    "jmp userbpf_hook_call_\\name",
    "userbpf_hook_fast_end_\\name:",
    "mov dword ptr [r13], r14d",
    "mov qword ptr [r12], 0",
    "USERBPF_HOOK_RESTORE_FLAGS",
    restore_gprs!(),
    "lea rsp, [rsp + 168 + 128]",
    // jmp rel32 to the instruction after the original `syscall`.
    ".byte 0xe9",
    ".long 0x7fff0000",
    "userbpf_hook_ph_resume_\\name:",
    // The handler made the call, or wants the original instruction run
    // (by `ip`): as the inner stub.
    "userbpf_hook_done_\\name:",
    "mov dword ptr [r13], r14d",
    "mov qword ptr [r12], 0",
    "userbpf_hook_skip_\\name:",
    "mov rax, [rsp + 128]",
    "movabs rcx, 0x1111111111111111",
    "userbpf_hook_ph_ip2_\\name:",
    "cmp rax, rcx",
    "je userbpf_hook_resume_\\name",
    "mov [rsp + 160], rax",
    "USERBPF_HOOK_RESTORE_FLAGS",
    restore_gprs!(),
    "lea rsp, [rsp + 160]",
    "ret 128",
    "userbpf_hook_resume_\\name:",
    "USERBPF_HOOK_RESTORE_FLAGS",
    restore_gprs!(),
    "lea rsp, [rsp + 168 + 128]",
    "userbpf_hook_stub_end_\\name:",
    ".pushsection .rodata.userbpf_hook_layout_\\name,\"a\",@progbits",
    ".p2align 3",
    ".globl userbpf_hook_layout_\\name",
    ".hidden userbpf_hook_layout_\\name",
    "userbpf_hook_layout_\\name:",
    ".quad userbpf_hook_stub_end_\\name - userbpf_hook_stub_\\name",
    ".quad userbpf_hook_ph_ip1_\\name - 8 - userbpf_hook_stub_\\name",
    ".quad userbpf_hook_ph_ip2_\\name - 8 - userbpf_hook_stub_\\name",
    ".quad userbpf_hook_ph_data_\\name - 8 - userbpf_hook_stub_\\name",
    ".quad userbpf_hook_ph_ts_\\name - 4 - userbpf_hook_stub_\\name",
    ".quad userbpf_hook_ph_errno_\\name - 4 - userbpf_hook_stub_\\name",
    ".quad 0",
    ".quad 0",
    ".quad 0",
    ".if \\vec == 2",
    ".quad userbpf_hook_ph_xsz_\\name - 4 - userbpf_hook_stub_\\name",
    ".else",
    ".quad 0",
    ".endif",
    ".quad userbpf_hook_ph_resume_\\name - 4 - userbpf_hook_stub_\\name",
    ".popsection",
    ".endm",
    "USERBPF_HOOK_STUB entry_x, 0, 0, 0, 8",
    "USERBPF_HOOK_STUB entry_y, 0, 0, 1, 8",
    "USERBPF_HOOK_STUB inner_x, 128, 1, 0, 16",
    "USERBPF_HOOK_STUB inner_y, 128, 1, 1, 16",
    "USERBPF_HOOK_STUB inner_s, 128, 1, 2, 16",
    "USERBPF_SYSCALL_STUB syscall_x, 0",
    "USERBPF_SYSCALL_STUB syscall_y, 1",
    "USERBPF_SYSCALL_STUB syscall_s, 2",
    // bpf_override_return's landing: the stub "returns" here, and this
    // returns to the function's caller.
    ".p2align 4",
    ".globl userbpf_hook_ret_gadget",
    ".hidden userbpf_hook_ret_gadget",
    "userbpf_hook_ret_gadget:",
    "ret",
    cap = const super::uretprobe::CAPACITY,
);

const _: () = {
    assert!(off::FLAGS == 144 && off::SS == 160 && off::SIZE == 168 && off::IP == 128);
};

/// The placeholder table the assembler writes next to each template.
#[repr(C)]
struct Layout {
    len: u64,
    site_ip1: u64,
    site_ip2: u64,
    site_data: u64,
    ts_off: u64,
    errno_off: u64,
    ret_prepare: u64,
    ret_prepare2: u64,
    ret_tramp: u64,
    xsave_size: u64,
    /// The rel32 of the syscall stub's jump to its resume address.
    resume_jmp: u64,
}

extern "C" {
    static userbpf_hook_stub_entry_x: u8;
    static userbpf_hook_stub_entry_y: u8;
    static userbpf_hook_stub_inner_x: u8;
    static userbpf_hook_stub_inner_y: u8;
    static userbpf_hook_stub_inner_s: u8;
    static userbpf_hook_layout_entry_x: Layout;
    static userbpf_hook_layout_entry_y: Layout;
    static userbpf_hook_layout_inner_x: Layout;
    static userbpf_hook_layout_inner_y: Layout;
    static userbpf_hook_layout_inner_s: Layout;
    static userbpf_hook_stub_syscall_x: u8;
    static userbpf_hook_stub_syscall_y: u8;
    static userbpf_hook_stub_syscall_s: u8;
    static userbpf_hook_layout_syscall_x: Layout;
    static userbpf_hook_layout_syscall_y: Layout;
    static userbpf_hook_layout_syscall_s: Layout;
    fn userbpf_hook_ret_gadget();
}

/// The address of the `ret` that [`super::Redirect::override_return`] sends
/// the hooked thread to.
pub(crate) fn ret_gadget() -> usize {
    userbpf_hook_ret_gadget as *const () as usize
}

/// Which stub a site gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Variant {
    Entry,
    Inner,
    /// The displaced instructions are followed by a `syscall` the handler
    /// may have the stub make (see `super::SyscallAction`).
    Syscall,
}

/// How the stubs keep the vector registers, by what the CPU and the OS
/// enable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Vectors {
    /// No AVX: xmm registers with movaps.
    Xmm,
    /// AVX (no AVX-512 or AMX state): ymm registers with vmovdqu.
    Ymm,
    /// More state than that (AVX-512, AMX): the inner stub uses xsave64;
    /// the entry stub keeps ymm0-7 (see docs/hooks.md).
    Wide,
}

/// The vector state this machine has. `USERBPF_HOOK_VECTORS=xmm` (or
/// `wide` on an AVX machine) selects another stub family, for tests.
pub(crate) fn vectors() -> Vectors {
    static V: std::sync::OnceLock<Vectors> = std::sync::OnceLock::new();
    *V.get_or_init(|| {
        let native = native_vectors();
        match (std::env::var("USERBPF_HOOK_VECTORS").as_deref(), native) {
            (Ok("xmm"), _) => Vectors::Xmm,
            (Ok("wide"), Vectors::Ymm | Vectors::Wide) => Vectors::Wide,
            _ => native,
        }
    })
}

fn native_vectors() -> Vectors {
    use core::arch::x86_64::__cpuid_count;
    {
        let leaf1 = __cpuid_count(1, 0);
        let osxsave = leaf1.ecx & (1 << 27) != 0;
        let avx = leaf1.ecx & (1 << 28) != 0;
        if !(osxsave && avx) {
            return Vectors::Xmm;
        }
        let xcr0: u64 = {
            let (lo, hi): (u32, u32);
            // SAFETY: xgetbv(0) is available when OSXSAVE is set.
            unsafe {
                core::arch::asm!("xgetbv", in("ecx") 0, out("eax") lo, out("edx") hi,
                    options(nomem, nostack, preserves_flags))
            };
            (hi as u64) << 32 | lo as u64
        };
        if xcr0 & 0b110 != 0b110 {
            Vectors::Xmm
        } else if xcr0 & (0b111 << 5 | 0b11 << 17) != 0 {
            // opmask, ZMM_Hi256, Hi16_ZMM; AMX tile config and data.
            Vectors::Wide
        } else {
            Vectors::Ymm
        }
    }
}

fn template(v: Variant) -> (&'static [u8], &'static Layout) {
    template_for(v, vectors())
}

fn template_for(v: Variant, vectors: Vectors) -> (&'static [u8], &'static Layout) {
    // SAFETY: the symbols are defined by the global_asm! above: a stub's
    // bytes (readable text) and its layout table; `len` is the stub's size.
    unsafe {
        let (start, layout) = match (v, vectors) {
            (Variant::Entry, Vectors::Xmm) => (
                &raw const userbpf_hook_stub_entry_x,
                &userbpf_hook_layout_entry_x,
            ),
            (Variant::Entry, _) => (
                &raw const userbpf_hook_stub_entry_y,
                &userbpf_hook_layout_entry_y,
            ),
            (Variant::Inner, Vectors::Xmm) => (
                &raw const userbpf_hook_stub_inner_x,
                &userbpf_hook_layout_inner_x,
            ),
            (Variant::Inner, Vectors::Ymm) => (
                &raw const userbpf_hook_stub_inner_y,
                &userbpf_hook_layout_inner_y,
            ),
            (Variant::Inner, Vectors::Wide) => (
                &raw const userbpf_hook_stub_inner_s,
                &userbpf_hook_layout_inner_s,
            ),
            (Variant::Syscall, Vectors::Xmm) => (
                &raw const userbpf_hook_stub_syscall_x,
                &userbpf_hook_layout_syscall_x,
            ),
            (Variant::Syscall, Vectors::Ymm) => (
                &raw const userbpf_hook_stub_syscall_y,
                &userbpf_hook_layout_syscall_y,
            ),
            (Variant::Syscall, Vectors::Wide) => (
                &raw const userbpf_hook_stub_syscall_s,
                &userbpf_hook_layout_syscall_s,
            ),
        };
        (
            core::slice::from_raw_parts(start, layout.len as usize),
            layout,
        )
    }
}

/// The size of a variant's stub.
pub(crate) fn len(v: Variant) -> usize {
    template(v).0.len()
}

/// The constants one site's stub is specialised with.
pub(crate) struct StubParams {
    pub site_ip: u64,
    pub site_data: u64,
    pub ts_off: i32,
    pub errno_off: i32,
    /// `uretprobe::ret_prepare` and the return trampoline (entry stubs).
    pub ret_prepare: u64,
    pub ret_tramp: u64,
    /// Bytes for `xsave64` (the inner stub of `Vectors::Wide`).
    pub xsave_size: u32,
    /// Where the stub is written, and where the syscall stub resumes after
    /// a call it made.
    pub stub_addr: u64,
    pub resume: u64,
}

fn put(code: &mut [u8], at: u64, expect: &[u8], value: &[u8]) -> Result<(), HookError> {
    let at = at as usize;
    match code.get_mut(at..at + value.len()) {
        Some(slot) if slot == expect => {
            slot.copy_from_slice(value);
            Ok(())
        }
        _ => Err(HookError::Relocation {
            addr: 0,
            reason: format!("stub template placeholder at +{at} not found"),
        }),
    }
}

/// The stub of variant `v`, specialised for one site.
pub(crate) fn instantiate(v: Variant, p: &StubParams) -> Result<Vec<u8>, HookError> {
    instantiate_for(v, vectors(), p)
}

fn instantiate_for(v: Variant, vectors: Vectors, p: &StubParams) -> Result<Vec<u8>, HookError> {
    let (bytes, l) = template_for(v, vectors);
    let mut code = bytes.to_vec();
    let ph64 = |x: u64| x.to_le_bytes();
    let ph32 = PH_IMM32.to_le_bytes();
    put(
        &mut code,
        l.site_ip1,
        &ph64(PH_SITE_IP),
        &p.site_ip.to_le_bytes(),
    )?;
    put(
        &mut code,
        l.site_ip2,
        &ph64(PH_SITE_IP),
        &p.site_ip.to_le_bytes(),
    )?;
    put(
        &mut code,
        l.site_data,
        &ph64(PH_SITE_DATA),
        &p.site_data.to_le_bytes(),
    )?;
    put(&mut code, l.ts_off, &ph32, &p.ts_off.to_le_bytes())?;
    put(&mut code, l.errno_off, &ph32, &p.errno_off.to_le_bytes())?;
    if l.ret_prepare != 0 {
        put(
            &mut code,
            l.ret_prepare,
            &ph64(PH_RET_PREPARE),
            &p.ret_prepare.to_le_bytes(),
        )?;
        put(
            &mut code,
            l.ret_prepare2,
            &ph64(PH_RET_PREPARE),
            &p.ret_prepare.to_le_bytes(),
        )?;
        put(
            &mut code,
            l.ret_tramp,
            &ph64(PH_RET_TRAMP),
            &p.ret_tramp.to_le_bytes(),
        )?;
    }
    if l.xsave_size != 0 {
        put(&mut code, l.xsave_size, &ph32, &p.xsave_size.to_le_bytes())?;
    }
    if l.resume_jmp != 0 {
        let from = p.stub_addr as i64 + l.resume_jmp as i64 + 4;
        let disp = i32::try_from(p.resume as i64 - from).map_err(|_| HookError::Relocation {
            addr: p.resume as usize,
            reason: "resume address beyond ±2 GiB of the trampoline".into(),
        })?;
        put(&mut code, l.resume_jmp, &ph32, &disp.to_le_bytes())?;
    }
    Ok(code)
}

/// The size of the area `xsave64` writes for the features the OS enabled
/// (only the inner stub of `Vectors::Wide` machines uses it).
pub(crate) fn xsave_size() -> u32 {
    // Leaf 0xD exists when the OS enabled XSAVE, which `Wide` implies;
    // ebx: the size for the features enabled in XCR0.
    core::arch::x86_64::__cpuid_count(0xd, 0).ebx.max(576)
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Decoder, DecoderOptions, Mnemonic};

    #[test]
    fn templates_decode_and_specialise() {
        let all = [Vectors::Xmm, Vectors::Ymm, Vectors::Wide];
        for (v, vec) in all
            .iter()
            .map(|&x| (Variant::Entry, x))
            .chain(all.iter().map(|&x| (Variant::Inner, x)))
            .chain(all.iter().map(|&x| (Variant::Syscall, x)))
        {
            let p = StubParams {
                site_ip: 0x5555_0000_1234,
                site_data: 0x7777_0000_5678,
                ts_off: -0x40,
                errno_off: -0x80,
                ret_prepare: 0x6666_0000_9abc,
                ret_tramp: 0x6666_0000_def0,
                xsave_size: 1088,
                stub_addr: 0x5555_1000_0000,
                resume: 0x5555_0000_1236,
            };
            let code = instantiate_for(v, vec, &p).unwrap();
            let mut d = Decoder::with_ip(64, &code, p.stub_addr, DecoderOptions::NONE);
            let mut n = 0;
            let mut last = Mnemonic::INVALID;
            let (mut syscalls, mut jumps_to_resume) = (0, 0);
            while d.can_decode() {
                let i = d.decode();
                assert!(!i.is_invalid(), "{v:?}: invalid at {:#x}", i.ip());
                last = i.mnemonic();
                syscalls += usize::from(last == Mnemonic::Syscall);
                jumps_to_resume += usize::from(
                    last == Mnemonic::Jmp
                        && i.op0_kind() == iced_x86::OpKind::NearBranch64
                        && i.near_branch64() == p.resume,
                );
                n += 1;
            }
            let syscall_stub = v == Variant::Syscall;
            assert_eq!(syscalls, usize::from(syscall_stub), "{v:?} {vec:?}");
            assert_eq!(jumps_to_resume, usize::from(syscall_stub), "{v:?} {vec:?}");
            assert_eq!(last, Mnemonic::Lea, "{v:?} must end by restoring rsp");
            assert!(n > 50);
            let hay = |needle: &[u8]| code.windows(needle.len()).any(|w| w == needle);
            assert!(hay(&0x5555_0000_1234u64.to_le_bytes()));
            assert!(hay(&0x7777_0000_5678u64.to_le_bytes()));
            assert!(!hay(&PH_IMM32.to_le_bytes()));
            assert!(!hay(&PH_SITE_IP.to_le_bytes()));
            assert!(!hay(&PH_RET_PREPARE.to_le_bytes()));
            assert!(!hay(&PH_RET_TRAMP.to_le_bytes()));
            assert_eq!(hay(&0x6666_0000_9abcu64.to_le_bytes()), v == Variant::Entry);
        }
    }
}
