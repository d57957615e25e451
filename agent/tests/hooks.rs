//! The inline hook engine against real code: C-ABI functions written in
//! assembly so that each starts with exactly the instruction under test.

#![cfg(all(target_arch = "x86_64", target_os = "linux"))]

use core::arch::global_asm;
use core::ffi::c_void;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::Mutex;
use userbpf_agent::hook::{Hook, HookError, HookHandler, HookOptions, PtRegs, Redirect};

global_asm!(
    ".pushsection .text.userbpf_hook_tests,\"ax\",@progbits",
    // Each shape is a macro, stamped once per test that patches it: tests
    // run in parallel and must not patch each other's functions.
    ".macro FN_BEGIN name",
    ".p2align 4",
    ".globl \\name",
    "\\name:",
    ".endm",
    ".macro FN_END name",
    ".globl \\name\\()_end",
    "\\name\\()_end:",
    ".endm",
    // (a, b) -> a + b; endbr64 first.
    ".macro ADD_ENDBR name",
    "FN_BEGIN \\name",
    "endbr64",
    "push rbp",
    "mov rbp, rsp",
    "lea rax, [rdi + rsi]",
    "pop rbp",
    "ret",
    "FN_END \\name",
    ".endm",
    // (a, b) -> a * b; push rbp first; +4 is `mov rax, rdi`.
    ".macro MUL_PUSH name",
    "FN_BEGIN \\name",
    "push rbp",
    "mov rbp, rsp",
    "mov rax, rdi",
    "imul rax, rsi",
    "pop rbp",
    "ret",
    "FN_END \\name",
    ".endm",
    // (a, b) -> a - b; a 5-byte nop first.
    ".macro SUB_NOP5 name",
    "FN_BEGIN \\name",
    ".byte 0x0f, 0x1f, 0x44, 0x00, 0x00",
    "mov rax, rdi",
    "sub rax, rsi",
    "ret",
    "FN_END \\name",
    ".endm",
    // (a) -> a + t_data; a RIP-relative mov first.
    ".macro RIPMOV name",
    "FN_BEGIN \\name",
    "mov rax, qword ptr [rip + t_data]",
    "add rax, rdi",
    "ret",
    "FN_END \\name",
    ".endm",
    // (a) -> a + t_data; a RIP-relative lea first.
    ".macro RIPLEA name",
    "FN_BEGIN \\name",
    "lea rax, [rip + t_data]",
    "mov rax, qword ptr [rax]",
    "add rax, rdi",
    "ret",
    "FN_END \\name",
    ".endm",
    // (a, n) -> a * n by a loop whose head is at +2.
    ".macro LOOP name",
    "FN_BEGIN \\name",
    "xor eax, eax",
    ".globl \\name\\()_head",
    "\\name\\()_head:",
    "add rax, rdi",
    "dec rsi",
    "jnz \\name\\()_head",
    "ret",
    "FN_END \\name",
    ".endm",
    // (p) -> ++*p; push rbp first.
    ".macro COUNT name",
    "FN_BEGIN \\name",
    "push rbp",
    "mov rbp, rsp",
    "mov rax, qword ptr [rdi]",
    "inc rax",
    "mov qword ptr [rdi], rax",
    "pop rbp",
    "ret",
    "FN_END \\name",
    ".endm",
    // (a) -> 3 * a; a multi-instruction prologue: the patch displaces
    // push rbp / mov rbp,rsp / push rbx, with instruction starts at +1, +4.
    ".macro XMC name",
    "FN_BEGIN \\name",
    "push rbp",
    "mov rbp, rsp",
    "push rbx",
    "mov rbx, rdi",
    "lea rax, [rbx + rbx * 2]",
    "pop rbx",
    "pop rbp",
    "ret",
    "FN_END \\name",
    ".endm",
    // (a) -> a + 1.
    ".macro INC name",
    "FN_BEGIN \\name",
    "push rbp",
    "mov rbp, rsp",
    "lea rax, [rdi + 1]",
    "pop rbp",
    "ret",
    "FN_END \\name",
    ".endm",
    // Trap-site shapes, too short for a 5-byte jump.
    // (a) -> a (rax is a on entry through t_callsp): `ret` only.
    ".macro RET_ONLY name",
    "FN_BEGIN \\name",
    "ret",
    "FN_END \\name",
    ".endm",
    // (a) -> a: endbr64; ret.
    ".macro ENDBR_RET name",
    "FN_BEGIN \\name",
    "endbr64",
    "ret",
    "FN_END \\name",
    ".endm",
    // () -> 0.
    ".macro XOR_RET name",
    "FN_BEGIN \\name",
    "xor eax, eax",
    "ret",
    "FN_END \\name",
    ".endm",
    // (a) -> a: nop; ret, followed with no padding by \\name_next,
    // (a, b) -> a + b with a push rbp prologue (room for a jump).
    ".macro NOP_RET name",
    "FN_BEGIN \\name",
    "nop",
    "ret",
    "FN_END \\name",
    ".globl \\name\\()_next",
    "\\name\\()_next:",
    "push rbp",
    "mov rbp, rsp",
    "lea rax, [rdi + rsi]",
    "pop rbp",
    "ret",
    ".globl \\name\\()_next_end",
    "\\name\\()_next_end:",
    ".endm",
    // (a, b) -> a + b, with a USDT-style 1-byte nop probe before the ret.
    ".macro USDT name",
    "FN_BEGIN \\name",
    "lea rax, [rdi + rsi]",
    ".globl \\name\\()_probe",
    "\\name\\()_probe:",
    "nop",
    "ret",
    "FN_END \\name",
    ".endm",
    "RET_ONLY ta_ret",
    "ENDBR_RET ta_endbr",
    "XOR_RET ta_xor",
    "NOP_RET ta_nop",
    "USDT ta_usdt",
    "XOR_RET tb_xor",
    "RET_ONLY tb_ret",
    "ENDBR_RET tb_endbr",
    "NOP_RET tb_nop",
    "NOP_RET tc_nop",
    "USDT tc_usdt",
    "NOP_RET td_nop",
    "NOP_RET te_nop",
    "XOR_RET tf_xor",
    "NOP_RET tg_nop",
    "USDT th_usdt",
    "XOR_RET ti_xor",
    "ADD_ENDBR e_endbr",
    "MUL_PUSH e_push",
    "SUB_NOP5 e_nop5",
    "MUL_PUSH i_push",
    "RIPMOV r_ripmov",
    "RIPLEA r_riplea",
    "LOOP u_loop",
    "LOOP l_loop",
    "ADD_ENDBR rt_endbr",
    "SUB_NOP5 rt_nop5",
    "COUNT o_count",
    "COUNT s_count",
    "ADD_ENDBR m_endbr",
    "XMC m_xmc",
    "RIPMOV m_ripmov",
    "XMC x_xmc",
    "INC g_inc",
    "INC c_inc",
    "XMC v_xmc",
    // (f, a, b, out) -> f(a, b) with rax = a on entry, storing at `out`
    // the stack pointer f sees at its entry.
    "FN_BEGIN t_callsp",
    "push rbx",
    "mov r11, rdi",
    "mov rdi, rsi",
    "mov rsi, rdx",
    "mov rax, rdi",
    "lea rdx, [rsp - 8]",
    "mov [rcx], rdx",
    "call r11",
    ".globl t_callsp_ret",
    "t_callsp_ret:",
    "pop rbx",
    "ret",
    "FN_END t_callsp",
    // ud2 first: cannot be relocated, not even for a trap site.
    "FN_BEGIN t_ud2",
    "ud2",
    "ret",
    "FN_END t_ud2",
    // () -> 0; 3 bytes.
    "FN_BEGIN t_short",
    "xor eax, eax",
    "ret",
    "FN_END t_short",
    // (a, b) -> (a < b) as 0/1, probed between the cmp and the setb, with
    // live data in the red zone and in xmm3; -1 if either was disturbed.
    "FN_BEGIN t_inner",
    "mov [rsp - 8], rdi",
    "mov [rsp - 128], rsi",
    "movq xmm3, rdi",
    "cmp rdi, rsi",
    ".globl t_inner_probe",
    "t_inner_probe:",
    "setb al",
    "movzx eax, al",
    "mov rcx, [rsp - 8]",
    "cmp rcx, rdi",
    "jne 9f",
    "mov rcx, [rsp - 128]",
    "cmp rcx, rsi",
    "jne 9f",
    "movq rcx, xmm3",
    "cmp rcx, rdi",
    "jne 9f",
    "ret",
    "9:",
    "mov rax, -1",
    "ret",
    "FN_END t_inner",
    // (a) -> a, carried across the probe in the upper half of ymm3.
    "FN_BEGIN t_ymm",
    "vmovq xmm3, rdi",
    "vpbroadcastq ymm3, xmm3",
    ".globl t_ymm_probe",
    "t_ymm_probe:",
    ".byte 0x0f, 0x1f, 0x44, 0x00, 0x00",
    "vextracti128 xmm0, ymm3, 1",
    "vmovq rax, xmm0",
    "vzeroupper",
    "ret",
    "FN_END t_ymm",
    // (n) -> fib(n), recursively.
    "FN_BEGIN t_fib",
    "push rbp",
    "mov rbp, rsp",
    "push rbx",
    "push r12",
    "mov rbx, rdi",
    "cmp rdi, 2",
    "jb 1f",
    "lea rdi, [rbx - 1]",
    "call t_fib",
    "mov r12, rax",
    "lea rdi, [rbx - 2]",
    "call t_fib",
    "add rax, r12",
    "jmp 2f",
    "1:",
    "mov rax, rbx",
    "2:",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "ret",
    "FN_END t_fib",
    // (x) -> t_victim(x), or 99 when t_victim jumped out (a minimal
    // setjmp/longjmp: t_thrower resets the stack pointer to t_try's frame).
    "FN_BEGIN t_try",
    "push rbp",
    "mov rbp, rsp",
    "push rbx",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "sub rsp, 8",
    "mov [rip + t_jmpbuf], rsp",
    "call t_victim",
    "jmp 3f",
    "t_try_landing:",
    "mov eax, 99",
    "3:",
    "add rsp, 8",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "ret",
    "FN_END t_try",
    // (x) -> 42, or jumps out of its caller's frame when x != 0.
    "FN_BEGIN t_victim",
    "push rbp",
    "mov rbp, rsp",
    "test rdi, rdi",
    "jz 4f",
    "call t_thrower",
    "4:",
    "mov eax, 42",
    "pop rbp",
    "ret",
    "FN_END t_victim",
    "t_thrower:",
    "mov rsp, [rip + t_jmpbuf]",
    "jmp t_try_landing",
    ".popsection",
    ".pushsection .data.userbpf_hook_tests,\"aw\",@progbits",
    ".p2align 3",
    ".globl t_data",
    "t_data:",
    ".quad 1000",
    "t_jmpbuf:",
    ".quad 0",
    ".popsection",
);

extern "C" {
    fn t_callsp(f: usize, a: u64, b: u64, out: *mut u64) -> u64;
    static t_callsp_ret: u8;
    static t_ud2_end: u8;
    fn t_ud2();
    fn t_short() -> u64;
    fn t_inner(a: u64, b: u64) -> u64;
    fn t_ymm(a: u64) -> u64;
    fn t_fib(n: u64) -> u64;
    fn t_try(x: u64) -> u64;
    fn t_victim(x: u64) -> u64;
    static t_short_end: u8;
    static t_inner_probe: u8;
    static t_inner_end: u8;
    static t_ymm_probe: u8;
    static t_ymm_end: u8;
    static t_fib_end: u8;
    static t_victim_end: u8;
    static mut t_data: u64;
}

/// Declares stamped copies of a shape.
macro_rules! stamped {
    ($sig:ty; $($name:ident $end:ident),* $(,)?) => {
        extern "C" {
            $(
                #[allow(dead_code)]
                static $end: u8;
            )*
        }
        $(
            #[allow(non_upper_case_globals, dead_code)]
            const $name: $sig = {
                extern "C" {
                    fn $name();
                }
                // SAFETY: the asm function has the signature `$sig`.
                unsafe { core::mem::transmute::<unsafe extern "C" fn(), $sig>($name) }
            };
        )*
    };
}

type Fn2 = unsafe extern "C" fn(u64, u64) -> u64;
type Fn1 = unsafe extern "C" fn(u64) -> u64;
type FnC = unsafe extern "C" fn(*mut Counters) -> u64;
stamped!(Fn2; e_endbr e_endbr_end, e_push e_push_end, e_nop5 e_nop5_end, i_push i_push_end,
    u_loop u_loop_end, l_loop l_loop_end, rt_endbr rt_endbr_end, rt_nop5 rt_nop5_end,
    m_endbr m_endbr_end);
stamped!(Fn1; r_ripmov r_ripmov_end, r_riplea r_riplea_end, m_xmc m_xmc_end, m_ripmov m_ripmov_end,
    x_xmc x_xmc_end, g_inc g_inc_end, c_inc c_inc_end, v_xmc v_xmc_end);
stamped!(FnC; o_count o_count_end, s_count s_count_end);
stamped!(Fn2; ta_ret ta_ret_end, ta_endbr ta_endbr_end, ta_xor ta_xor_end, ta_nop ta_nop_end,
    ta_nop_next ta_nop_next_end, ta_usdt ta_usdt_end, tb_xor tb_xor_end, tb_ret tb_ret_end,
    tb_endbr tb_endbr_end, tb_nop tb_nop_end, tc_nop tc_nop_end, tc_usdt tc_usdt_end,
    td_nop td_nop_end, te_nop te_nop_end, tf_xor tf_xor_end,
    tg_nop tg_nop_end, tg_nop_next tg_nop_next_end, th_usdt th_usdt_end, ti_xor ti_xor_end);
extern "C" {
    static ta_usdt_probe: u8;
    static tc_usdt_probe: u8;
    static th_usdt_probe: u8;
}
extern "C" {
    static u_loop_head: u8;
    static l_loop_head: u8;
}

/// The address of an asm function or label.
macro_rules! addr {
    (fn $f:ident) => {
        $f as *const () as usize
    };
    ($s:ident) => {
        &raw const $s as usize
    };
}

fn func(start: usize, end: usize) -> HookOptions {
    HookOptions {
        func_range: Some(start..end),
        function_entry: false,
    }
}

fn bytes(at: usize, n: usize) -> Vec<u8> {
    // SAFETY: reads code of this binary.
    unsafe { std::slice::from_raw_parts(at as *const u8, n) }.to_vec()
}

/// Installs a hook, panicking with the error.
fn hook(addr: usize, opts: &HookOptions, h: Option<HookHandler>) -> Hook {
    // SAFETY: the tests pass instruction boundaries of their asm functions
    // with their true ranges; the handlers are thread-safe.
    unsafe { Hook::install_with(addr, opts, h) }
        .unwrap_or_else(|e| panic!("install {addr:#x}: {e}"))
}

fn handler(f: unsafe extern "C" fn(*mut PtRegs, *mut c_void), data: *const c_void) -> HookHandler {
    HookHandler::new(f, data as *mut c_void)
}

/// A handler that stores the registers it saw into the Mutex<Vec<PtRegs>>
/// behind `data`.
unsafe extern "C" fn record(ctx: *mut PtRegs, data: *mut c_void) {
    // SAFETY: the tests pass a Mutex<Vec<PtRegs>> that outlives the hook.
    let (regs, log) = unsafe { (*ctx, &*(data as *const Mutex<Vec<PtRegs>>)) };
    log.lock().unwrap().push(regs);
}

/// Increments the AtomicU64 behind `data`.
unsafe extern "C" fn count(_ctx: *mut PtRegs, data: *mut c_void) {
    // SAFETY: the tests pass an AtomicU64 that outlives the hook.
    unsafe { (*(data as *const AtomicU64)).fetch_add(1, Relaxed) };
}

fn log_of(log: &Mutex<Vec<PtRegs>>) -> *const c_void {
    log as *const _ as *const c_void
}

#[test]
fn entry_hooks_see_arguments_ip_and_sp() {
    let cases: [(usize, usize, Fn2, u64); 3] = [
        (addr!(fn e_endbr), addr!(e_endbr_end), e_endbr, 3 + 4),
        (addr!(fn e_push), addr!(e_push_end), e_push, 12),
        (addr!(fn e_nop5), addr!(e_nop5_end), e_nop5, u64::MAX), // 3 - 4
    ];
    for (start, end, f, want) in cases {
        let log = Mutex::new(Vec::new());
        let before = bytes(start, 16);
        let h = hook(
            start,
            &func(start, end),
            Some(handler(record, log_of(&log))),
        );
        assert!(h.is_function_entry());
        // SAFETY: calls the asm function under its C signature.
        let got = unsafe { f(black_box(3), black_box(4)) };
        assert_eq!(got, want, "{start:#x}");
        let seen = log.lock().unwrap().clone();
        assert_eq!(seen.len(), 1);
        let r = seen[0];
        assert_eq!((r.arg(1), r.arg(2)), (Some(3), Some(4)));
        assert_eq!(r.ip, start as u64, "PT_REGS_IP is the probed address");
        assert_eq!(r.sp % 16, 8, "at entry the stack holds the return address");
        assert_eq!((r.cs, r.ss, r.orig_ax), (0x33, 0x2b, u64::MAX));
        if start == addr!(fn e_endbr) {
            assert_eq!(h.patch_addr(), start + 4, "endbr64 stays in place");
            assert_eq!(bytes(start, 4), [0xf3, 0x0f, 0x1e, 0xfa]);
        }
        h.remove().unwrap();
        assert_eq!(bytes(start, 16), before);
        // SAFETY: as above.
        assert_eq!(unsafe { f(3, 4) }, want);
        assert_eq!(log.lock().unwrap().len(), 1, "no hits after remove");
    }
}

#[test]
fn hook_inside_a_function() {
    let (start, end) = (addr!(fn i_push), addr!(i_push_end));
    let site = start + 4; // after push rbp; mov rbp,rsp
    let log = Mutex::new(Vec::new());
    let h = hook(site, &func(start, end), Some(handler(record, log_of(&log))));
    assert!(!h.is_function_entry());
    // SAFETY: C signature.
    assert_eq!(unsafe { i_push(black_box(6), black_box(7)) }, 42);
    let r = log.lock().unwrap()[0];
    assert_eq!(r.ip, site as u64);
    assert_eq!((r.di, r.si), (6, 7));
    assert_eq!(r.bp, r.sp, "mov rbp, rsp ran before the probe");
    assert_eq!(r.sp % 16, 0, "push rbp ran before the probe");
    // SAFETY: as above.
    let refused = unsafe { h.set_return_handler(Some(handler(count, core::ptr::null()))) };
    assert_eq!(refused, Err(HookError::NotFunctionEntry { addr: site }));
    drop(h);
    // SAFETY: as above.
    assert_eq!(unsafe { i_push(6, 7) }, 42);
}

#[test]
fn rip_relative_first_instruction() {
    for (start, end, f) in [
        (addr!(fn r_ripmov), addr!(r_ripmov_end), r_ripmov),
        (addr!(fn r_riplea), addr!(r_riplea_end), r_riplea),
    ] {
        let hits = AtomicU64::new(0);
        let h = hook(
            start,
            &func(start, end),
            Some(handler(count, &hits as *const _ as _)),
        );
        // The relocated instruction still reads t_data, wherever the
        // trampoline is.
        // SAFETY: C signature; t_data is only written here and in the
        // other iteration, on this thread.
        unsafe {
            assert_eq!(f(5), 1005);
            t_data = 2000;
            assert_eq!(f(5), 2005);
            t_data = 1000;
        }
        assert_eq!(hits.load(Relaxed), 2);
        assert!(h.trampoline().abs_diff(start) < 1 << 31);
        h.remove().unwrap();
    }
}

#[test]
fn short_sites_become_trap_sites_and_the_rest_is_refused() {
    // A 3-byte function: too short for a jump, so a trap site.
    let (s, e) = (addr!(fn t_short), addr!(t_short_end));
    let before = bytes(s, 8);
    let hits = AtomicU64::new(0);
    let h = hook(s, &func(s, e), Some(handler(count, &hits as *const _ as _)));
    assert!(h.is_trap(), "{h:?}");
    assert_eq!(bytes(s, 1), [0xcc]);
    assert_eq!(bytes(s + 1, 7), before[1..]);
    // SAFETY: C signature.
    assert_eq!(unsafe { t_short() }, 0);
    assert_eq!(hits.load(Relaxed), 1);
    h.remove().unwrap();
    assert_eq!(bytes(s, 8), before);

    // A loop jumps back into the first 5 bytes: a jump would break it, a
    // 1-byte int3 on the function's first instruction does not.
    let (s, e) = (addr!(fn u_loop), addr!(u_loop_end));
    let before = bytes(s, 16);
    let hits = AtomicU64::new(0);
    assert_eq!(addr!(u_loop_head), s + 2, "the loop head is inside 5 bytes");
    let h = hook(s, &func(s, e), Some(handler(count, &hits as *const _ as _)));
    assert!(h.is_trap(), "{h:?}");
    assert_eq!(h.displaced_len(), 2, "only `xor eax, eax` moves");
    // SAFETY: C signature.
    assert_eq!(unsafe { u_loop(black_box(3), black_box(5)) }, 15);
    assert_eq!(hits.load(Relaxed), 1, "the entry, not the loop head");
    h.remove().unwrap();
    assert_eq!(bytes(s, 16), before);
    // Not an instruction boundary: still refused, nothing written.
    // SAFETY: refused before anything is written.
    let err = unsafe { Hook::install_with(s + 1, &func(s, e), None) }.unwrap_err();
    assert!(
        matches!(
            err,
            HookError::NotInstructionBoundary { .. } | HookError::Decode { .. }
        ),
        "{err}"
    );
    assert_eq!(bytes(s, 16), before);
    // SAFETY: C signature.
    assert_eq!(unsafe { u_loop(3, 5) }, 15);

    // An instruction that cannot be relocated stays refused.
    let (s, e) = (addr!(fn t_ud2), addr!(t_ud2_end));
    let before = bytes(s, 4);
    // SAFETY: as above.
    let err = unsafe { Hook::install_with(s, &func(s, e), None) }.unwrap_err();
    assert!(matches!(err, HookError::Unrelocatable { .. }), "{err}");
    // SAFETY: as above.
    let err =
        unsafe { Hook::install(s, HookHandler::new(count, core::ptr::null_mut())) }.unwrap_err();
    assert!(matches!(err, HookError::Unrelocatable { .. }), "{err}");
    assert_eq!(bytes(s, 4), before);
}

#[test]
fn loop_head_hook_fires_every_iteration() {
    let (s, e) = (addr!(fn l_loop), addr!(l_loop_end));
    let hits = AtomicU64::new(0);
    let h = hook(
        addr!(l_loop_head),
        &func(s, e),
        Some(handler(count, &hits as *const _ as _)),
    );
    // SAFETY: C signature.
    assert_eq!(unsafe { l_loop(black_box(3), black_box(50)) }, 150);
    assert_eq!(hits.load(Relaxed), 50);
    drop(h);
}

unsafe extern "C" fn clobber(ctx: *mut PtRegs, data: *mut c_void) {
    // SAFETY: flips the flags the probed code depends on, clobbers xmm3
    // and the upper ymm halves; all caller-saved.
    unsafe {
        core::arch::asm!("stc", "pcmpeqd xmm3, xmm3", out("xmm3") _);
        if !data.is_null() {
            core::arch::asm!("clc", "vzeroupper");
        }
        (*ctx).cx = 0xdead; // dead at the probe: the function reloads rcx
    }
}

#[test]
fn inner_hook_preserves_flags_red_zone_and_vectors() {
    let (s, e, p) = (addr!(fn t_inner), addr!(t_inner_end), addr!(t_inner_probe));
    let log = Mutex::new(Vec::new());
    let h = hook(p, &func(s, e), Some(handler(record, log_of(&log))));
    // SAFETY: C signature.
    unsafe {
        assert_eq!(t_inner(1, 2), 1);
        assert_eq!(t_inner(2, 1), 0);
    }
    let r = log.lock().unwrap()[0];
    assert_eq!(r.flags & 1, 1, "CF (1 < 2) recorded in pt_regs.flags");
    assert_eq!(r.ip, p as u64);
    // Now a handler that sets CF, then one that clears it.
    for data in [core::ptr::null(), std::ptr::dangling::<c_void>()] {
        // SAFETY: as in `hook`.
        unsafe { h.set_handler(Some(handler(clobber, data))) };
        for (a, b) in [(1u64, 2u64), (2, 1), (5, 5), (0, u64::MAX)] {
            // SAFETY: C signature.
            let got = unsafe { t_inner(black_box(a), black_box(b)) };
            assert_eq!(got, (a < b) as u64, "t_inner({a}, {b}) with data {data:?}");
        }
    }
    drop(h);
}

#[test]
fn inner_hook_preserves_upper_ymm() {
    if !std::arch::is_x86_feature_detected!("avx2") {
        eprintln!("skipped: no AVX2");
        return;
    }
    let (s, e, p) = (addr!(fn t_ymm), addr!(t_ymm_end), addr!(t_ymm_probe));
    let h = hook(
        p,
        &func(s, e),
        Some(handler(clobber, std::ptr::dangling::<c_void>())),
    );
    // SAFETY: C signature; AVX2 checked.
    assert_eq!(
        unsafe { t_ymm(black_box(0x1234_5678_9abc)) },
        0x1234_5678_9abc
    );
    drop(h);
}

unsafe extern "C" fn ret_record_and_bump(ctx: *mut PtRegs, data: *mut c_void) {
    // SAFETY: the test passes a Mutex<Vec<PtRegs>>.
    unsafe {
        record(ctx, data);
        (*ctx).ax += 1000;
    }
}

#[test]
fn return_hook_sees_and_modifies_the_return_value() {
    for (start, end, f) in [
        (addr!(fn rt_endbr), addr!(rt_endbr_end), rt_endbr),
        (addr!(fn rt_nop5), addr!(rt_nop5_end), rt_nop5),
    ] {
        let entry_log = Mutex::new(Vec::new());
        let ret_log = Mutex::new(Vec::new());
        let h = hook(
            start,
            &func(start, end),
            Some(handler(record, log_of(&entry_log))),
        );
        // SAFETY: as in `hook`.
        unsafe { h.set_return_handler(Some(handler(ret_record_and_bump, log_of(&ret_log)))) }
            .unwrap();
        // SAFETY: C signature.
        let got = unsafe { f(black_box(30), black_box(12)) };
        let plain = if start == addr!(fn rt_endbr) { 42 } else { 18 };
        assert_eq!(got, plain + 1000, "the return handler changed ax");
        let e = entry_log.lock().unwrap()[0];
        let r = ret_log.lock().unwrap()[0];
        assert_eq!(r.ax, plain, "PT_REGS_RC at return");
        assert_eq!(r.sp, e.sp + 8, "sp after the return");
        // SAFETY: e.sp pointed at the return address at entry; the slot is
        // below our frame but not yet overwritten? Not reliable: compare ip
        // with a return address inside this test function instead.
        assert_ne!(r.ip, 0);
        // Detaching the return handler.
        // SAFETY: as above.
        unsafe { h.set_return_handler(None) }.unwrap();
        // SAFETY: C signature.
        assert_eq!(unsafe { f(30, 12) }, plain);
        assert_eq!(ret_log.lock().unwrap().len(), 1);
        assert_eq!(entry_log.lock().unwrap().len(), 2);
        h.remove().unwrap();
    }
}

unsafe extern "C" fn override_7(ctx: *mut PtRegs, _data: *mut c_void) {
    // SAFETY: ctx is the live pt_regs.
    unsafe { (*ctx).override_return(7) };
}

#[test]
fn override_return_skips_the_function() {
    let (s, e) = (addr!(fn o_count), addr!(o_count_end));
    let rets = AtomicU64::new(0);
    let h = hook(s, &func(s, e), Some(handler(override_7, core::ptr::null())));
    // SAFETY: as in `hook`.
    unsafe { h.set_return_handler(Some(handler(count, &rets as *const _ as _))) }.unwrap();
    let mut c = Counters::default();
    for _ in 0..3 {
        // SAFETY: C signature.
        assert_eq!(unsafe { o_count(&mut c) }, 7);
    }
    assert_eq!(c.calls, 0, "the function body never ran");
    assert_eq!(
        rets.load(Relaxed),
        0,
        "no return hook for an overridden call"
    );
    // SAFETY: as in `hook`.
    unsafe { h.set_handler(None) };
    // SAFETY: C signature.
    assert_eq!(unsafe { o_count(&mut c) }, 1);
    assert_eq!(rets.load(Relaxed), 1);
    drop(h);
}

static FIB_CALLS: AtomicU64 = AtomicU64::new(0);
static FIB_RETS: AtomicU64 = AtomicU64::new(0);
static FIB_SUM: AtomicU64 = AtomicU64::new(0);

unsafe extern "C" fn fib_ret(ctx: *mut PtRegs, _data: *mut c_void) {
    FIB_RETS.fetch_add(1, Relaxed);
    // SAFETY: ctx is the live pt_regs.
    FIB_SUM.fetch_add(unsafe { (*ctx).ax }, Relaxed);
}

unsafe extern "C" fn fib_entry(_ctx: *mut PtRegs, _data: *mut c_void) {
    FIB_CALLS.fetch_add(1, Relaxed);
}

/// (calls, sum of the results of all calls) of fib(n).
fn fib_ref(n: u64) -> (u64, u64, u64) {
    if n < 2 {
        return (n, 1, n);
    }
    let (a, ca, sa) = fib_ref(n - 1);
    let (b, cb, sb) = fib_ref(n - 2);
    (a + b, ca + cb + 1, sa + sb + a + b)
}

#[test]
fn recursion_with_a_return_hook() {
    let (s, e) = (addr!(fn t_fib), addr!(t_fib_end));
    let h = hook(s, &func(s, e), Some(handler(fib_entry, core::ptr::null())));
    // SAFETY: as in `hook`.
    unsafe { h.set_return_handler(Some(handler(fib_ret, core::ptr::null()))) }.unwrap();
    let n = 18;
    let (val, calls, sum) = fib_ref(n);
    let threads = 4;
    let results: Vec<u64> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..threads)
            // SAFETY: C signature.
            .map(|_| sc.spawn(move || unsafe { t_fib(black_box(n)) }))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(results.iter().all(|&r| r == val), "{results:?}");
    assert_eq!(FIB_CALLS.load(Relaxed), calls * threads);
    assert_eq!(
        FIB_RETS.load(Relaxed),
        calls * threads,
        "one return hit per call"
    );
    assert_eq!(FIB_SUM.load(Relaxed), sum * threads, "return values");
    assert_eq!(h.missed_returns(), 0);
    drop(h);
}

#[test]
fn longjmp_out_of_a_hooked_function() {
    let (s, e) = (addr!(fn t_victim), addr!(t_victim_end));
    let calls = AtomicU64::new(0);
    let rets = Mutex::new(Vec::new());
    let h = hook(
        s,
        &func(s, e),
        Some(handler(count, &calls as *const _ as _)),
    );
    // SAFETY: as in `hook`.
    unsafe { h.set_return_handler(Some(handler(record, log_of(&rets)))) }.unwrap();
    // More jumps out than the shadow stack holds: stale entries must go.
    let rounds = userbpf_agent::hook::SHADOW_CAPACITY as u64 + 500;
    for _ in 0..rounds {
        // SAFETY: C signature; t_try is the only user of t_jmpbuf.
        unsafe {
            assert_eq!(t_try(1), 99);
            assert_eq!(t_try(0), 42);
        }
    }
    assert_eq!(calls.load(Relaxed), 2 * rounds);
    let rets = rets.lock().unwrap();
    assert_eq!(
        rets.len() as u64,
        rounds,
        "one return per call that returned"
    );
    assert!(rets.iter().all(|r| r.ax == 42));
    assert_eq!(h.missed_returns(), 0);
    assert!(userbpf_agent::hook::shadow_depth() <= 1);
    drop(h);
}

#[test]
fn remove_restores_the_original_bytes() {
    for (s, e) in [
        (addr!(fn m_endbr), addr!(m_endbr_end)),
        (addr!(fn m_xmc), addr!(m_xmc_end)),
        (addr!(fn m_ripmov), addr!(m_ripmov_end)),
    ] {
        let before = bytes(s, e - s);
        let h = hook(s, &func(s, e), None);
        let during = bytes(s, e - s);
        let p = h.patch_addr() - s;
        assert_ne!(before, during);
        assert_eq!(during[p], 0xe9, "a jmp rel32 at the patch address");
        assert_eq!(before[..p], during[..p]);
        assert_eq!(before[p + 5..], during[p + 5..], "only 5 bytes change");
        h.remove().unwrap();
        assert_eq!(bytes(s, e - s), before);
    }
}

#[repr(C)]
#[derive(Default, Clone, Copy, Debug)]
struct Counters {
    calls: u64,
    hits: u64,
    rets: u64,
}

static MAGIC_A: u64 = 0xaaaa;
static MAGIC_B: u64 = 0xbbbb;
static SWAP_ERRORS: AtomicU64 = AtomicU64::new(0);

unsafe extern "C" fn swap_a(ctx: *mut PtRegs, data: *mut c_void) {
    if data as *const u64 != &MAGIC_A {
        SWAP_ERRORS.fetch_add(1, Relaxed);
    }
    // SAFETY: di is the worker's own Counters.
    unsafe { (*((*ctx).di as *mut Counters)).hits += 1 };
}

unsafe extern "C" fn swap_b(ctx: *mut PtRegs, data: *mut c_void) {
    if data as *const u64 != &MAGIC_B {
        SWAP_ERRORS.fetch_add(1, Relaxed);
    }
    // SAFETY: as above.
    unsafe { (*((*ctx).di as *mut Counters)).hits += 1 };
}

unsafe extern "C" fn swap_ret(ctx: *mut PtRegs, _data: *mut c_void) {
    // SAFETY: the return value is the incremented `calls`; the Counters
    // pointer is gone at return, so the handler finds it through the
    // thread's slot.
    let _ = ctx;
    RET_SLOT.with(|c| {
        // SAFETY: the worker's Counters, on its own thread.
        if let Some(c) = unsafe { c.get().as_mut() } {
            c.rets += 1;
        }
    });
}

thread_local! {
    static RET_SLOT: std::cell::Cell<*mut Counters> = const { std::cell::Cell::new(core::ptr::null_mut()) };
}

/// States the swapping thread publishes: 4g detached, 4g+1 attaching, 4g+2
/// attached, 4g+3 detaching.
static STATE: AtomicU64 = AtomicU64::new(0);

#[test]
fn sixteen_threads_while_handlers_swap() {
    let (s, e) = (addr!(fn s_count), addr!(s_count_end));
    let h = hook(s, &func(s, e), None);
    let stop = AtomicBool::new(false);
    let ha = handler(swap_a, &MAGIC_A as *const u64 as _);
    let hb = handler(swap_b, &MAGIC_B as *const u64 as _);
    let hr = handler(swap_ret, core::ptr::null());
    let verified = AtomicU64::new(0);
    // Checked attached calls so far, published in batches while the
    // workers run (the final window lasts until there are enough).
    let progress = AtomicU64::new(0);
    let mismatches = AtomicU64::new(0);
    let rounds = 1000;
    let pause = std::time::Duration::from_micros(30);
    std::thread::scope(|sc| {
        for _ in 0..16 {
            sc.spawn(|| {
                // The swapping thread must get the CPU promptly on 2 cores.
                // SAFETY: lowers this thread's own priority.
                unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
                let mut c = Counters::default();
                RET_SLOT.with(|s| s.set(&mut c));
                let (mut ok, mut bad) = (0u64, 0u64);
                while !stop.load(Relaxed) {
                    let s1 = STATE.load(SeqCst);
                    let (h0, r0) = (c.hits, c.rets);
                    // SAFETY: C signature; c is ours.
                    unsafe { s_count(black_box(&mut c)) };
                    let s2 = STATE.load(SeqCst);
                    // SAFETY: written by the handlers on this thread.
                    let (h1, r1) = unsafe {
                        (
                            core::ptr::read_volatile(&c.hits),
                            core::ptr::read_volatile(&c.rets),
                        )
                    };
                    let (dh, dr) = (h1 - h0, r1 - r0);
                    let fine = if s1 == s2 && s1 % 4 == 2 {
                        ok += 1;
                        if ok.is_multiple_of(64) {
                            progress.fetch_add(64, Relaxed);
                        }
                        (dh, dr) == (1, 1)
                    } else if s1 == s2 && s1.is_multiple_of(4) {
                        (dh, dr) == (0, 0)
                    } else {
                        dh <= 1 && dr <= 1
                    };
                    if !fine {
                        bad += 1;
                        if bad < 4 {
                            eprintln!("state {s1}..{s2}: {dh} entry hits, {dr} return hits");
                        }
                    }
                }
                RET_SLOT.with(|s| s.set(core::ptr::null_mut()));
                verified.fetch_add(ok, Relaxed);
                mismatches.fetch_add(bad, Relaxed);
            });
        }
        for g in 0..rounds {
            STATE.store(4 * g + 1, SeqCst);
            // SAFETY: as in `hook`.
            unsafe {
                h.set_handler(Some(if g % 2 == 0 { ha } else { hb }));
                h.set_return_handler(Some(hr)).unwrap();
            }
            STATE.store(4 * g + 2, SeqCst);
            std::thread::sleep(pause);
            // A swap while attached: every call still counts once.
            // SAFETY: as above.
            unsafe { h.set_handler(Some(if g % 2 == 0 { hb } else { ha })) };
            std::thread::sleep(pause);
            STATE.store(4 * g + 3, SeqCst);
            // SAFETY: as above.
            unsafe {
                h.set_handler(None);
                h.set_return_handler(None).unwrap();
            }
            STATE.store(4 * g + 4, SeqCst);
            std::thread::sleep(pause);
        }
        // A last long attached window, so every thread gets checked calls.
        STATE.store(4 * rounds + 1, SeqCst);
        // SAFETY: as above.
        unsafe {
            h.set_handler(Some(ha));
            h.set_return_handler(Some(hr)).unwrap();
        }
        STATE.store(4 * rounds + 2, SeqCst);
        // At least 200 ms, and until the workers have checked enough calls:
        // they run at nice 19, and on a loaded machine the scheduler may
        // not run them at all for a few hundred milliseconds.
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_millis(200)
            || (progress.load(Relaxed) < 4096
                && start.elapsed() < std::time::Duration::from_secs(120))
        {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        stop.store(true, Relaxed);
    });
    assert_eq!(
        SWAP_ERRORS.load(Relaxed),
        0,
        "a handler ran with another's data"
    );
    assert_eq!(mismatches.load(Relaxed), 0, "inexact counts");
    assert!(verified.load(Relaxed) > 1000, "{}", verified.load(Relaxed));
    eprintln!("verified attached calls: {}", verified.load(Relaxed));
    drop(h);
}

#[test]
fn patching_while_sixteen_threads_run_the_function() {
    let (s, e) = (addr!(fn x_xmc), addr!(x_xmc_end));
    let stop = AtomicBool::new(false);
    let wrong = AtomicU64::new(0);
    let calls = AtomicU64::new(0);
    let hits = AtomicU64::new(0);
    let cycles = 300;
    std::thread::scope(|sc| {
        for t in 0..16u64 {
            let (stop, wrong, calls) = (&stop, &wrong, &calls);
            sc.spawn(move || {
                let mut i = t;
                let mut n = 0;
                while !stop.load(Relaxed) {
                    // SAFETY: C signature.
                    if unsafe { x_xmc(black_box(i)) } != 3 * i {
                        wrong.fetch_add(1, Relaxed);
                    }
                    i = i.wrapping_add(17);
                    n += 1;
                }
                calls.fetch_add(n, Relaxed);
            });
        }
        for _ in 0..cycles {
            let h = hook(s, &func(s, e), Some(handler(count, &hits as *const _ as _)));
            std::thread::sleep(std::time::Duration::from_micros(200));
            h.remove().unwrap();
            std::thread::sleep(std::time::Duration::from_micros(100));
        }
        stop.store(true, Relaxed);
    });
    assert_eq!(wrong.load(Relaxed), 0);
    eprintln!(
        "{} calls, {} hits, {} traps redirected",
        calls.load(Relaxed),
        hits.load(Relaxed),
        userbpf_agent::hook::trap_redirects()
    );
    assert!(hits.load(Relaxed) > 0);
}

unsafe extern "C" fn reenter(_ctx: *mut PtRegs, data: *mut c_void) {
    // SAFETY: the test passes an AtomicU64; g_inc is hooked by this very
    // handler: the nested hit must be skipped, not recurse.
    unsafe {
        (*(data as *const AtomicU64)).fetch_add(1, Relaxed);
        assert_eq!(g_inc(1), 2);
        *libc::__errno_location() = 77;
    }
}

#[test]
fn handlers_do_not_recurse_and_keep_errno() {
    let (s, e) = (addr!(fn g_inc), addr!(g_inc_end));
    let hits = AtomicU64::new(0);
    let h = hook(
        s,
        &func(s, e),
        Some(handler(reenter, &hits as *const _ as _)),
    );
    // SAFETY: as in `hook`.
    unsafe { h.set_return_handler(Some(handler(reenter, &hits as *const _ as _))) }.unwrap();
    // SAFETY: C signature; errno is this thread's.
    unsafe {
        *libc::__errno_location() = 5;
        assert_eq!(g_inc(41), 42);
        assert_eq!(*libc::__errno_location(), 5, "errno survives the handlers");
    }
    assert_eq!(
        hits.load(Relaxed),
        2,
        "entry and return once each; nested hits skipped"
    );
    drop(h);
}

static APP_TRAPS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn app_sigtrap(_sig: libc::c_int) {
    APP_TRAPS.fetch_add(1, Relaxed);
}

/// The application's own SIGTRAP handler keeps working next to ours. Runs in
/// a child process: it changes a process-wide disposition.
#[test]
fn sigtrap_chains_to_the_application() {
    if std::env::var_os("USERBPF_HOOK_SIGTRAP_CHILD").is_none() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "sigtrap_chains_to_the_application",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("USERBPF_HOOK_SIGTRAP_CHILD", "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"));
        return;
    }
    // SAFETY: installs a plain handler for SIGTRAP.
    unsafe {
        libc::signal(
            libc::SIGTRAP,
            app_sigtrap as *const () as libc::sighandler_t,
        )
    };
    let (s, e) = (addr!(fn c_inc), addr!(c_inc_end));
    let h = hook(s, &func(s, e), None);
    // SAFETY: raises a signal whose handler only counts; int3 traps into
    // the same handler, which returns after it.
    unsafe {
        libc::raise(libc::SIGTRAP);
        core::arch::asm!("int3");
    }
    assert_eq!(APP_TRAPS.load(Relaxed), 2);
    drop(h);
    // SAFETY: as above.
    unsafe { core::arch::asm!("int3") };
    assert_eq!(APP_TRAPS.load(Relaxed), 3);
    let mut cur: libc::sigaction = unsafe { core::mem::zeroed() };
    // SAFETY: queries into a local.
    unsafe { libc::sigaction(libc::SIGTRAP, core::ptr::null(), &mut cur) };
    assert_ne!(cur.sa_sigaction, libc::SIG_DFL);
}

#[test]
fn overlapping_and_double_hooks_are_refused() {
    let (s, e) = (addr!(fn v_xmc), addr!(v_xmc_end));
    let h = hook(s, &func(s, e), None);
    // SAFETY: refused before anything is written.
    let err = unsafe { Hook::install_with(s, &func(s, e), None) }.unwrap_err();
    assert_eq!(err, HookError::AlreadyHooked { addr: s, other: s });
    // `mov rbp, rsp` is inside the first hook's patch.
    // SAFETY: as above.
    let err = unsafe { Hook::install_with(s + 1, &func(s, e), None) }.unwrap_err();
    assert!(matches!(err, HookError::AlreadyHooked { .. }), "{err}");
    drop(h);
    let h = hook(s, &func(s, e), None);
    drop(h);
}

/// The other stub families (plain SSE machines, AVX-512 machines) run the
/// same tests here, by re-executing this binary with
/// USERBPF_HOOK_VECTORS set.
#[test]
fn other_vector_state_variants() {
    if std::env::var_os("USERBPF_HOOK_VECTORS").is_some() {
        return;
    }
    let mut variants = vec!["xmm"];
    if std::arch::is_x86_feature_detected!("avx") {
        variants.push("wide");
    }
    for v in variants {
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.env("USERBPF_HOOK_VECTORS", v).args([
            "entry_hooks",
            "hook_inside",
            "inner_hook_preserves_flags",
            "return_hook",
            "override_return",
            "recursion",
            "longjmp",
            "sixteen_threads",
            "handlers_do_not",
        ]);
        if v == "wide" {
            cmd.arg("inner_hook_preserves_upper_ymm");
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{v}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // "return_hook" and "handlers_do_not" also select the trap-site
        // tests of the same names (their return hooks use the variant's
        // return trampoline).
        let want = if v == "wide" {
            "13 passed"
        } else {
            "12 passed"
        };
        assert!(stdout.contains(want), "{v}: {stdout}");
    }
}

unsafe extern "C" fn count_hits(_ctx: *mut PtRegs, data: *mut c_void) {
    // SAFETY: the test passes an AtomicU64.
    unsafe {
        (*(data as *const std::sync::atomic::AtomicU64))
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    };
}

/// A function whose code crosses from one kernel mapping into the next
/// (patching splits text mappings this way): its whole range is readable
/// and the hook installs.
#[test]
fn function_spanning_two_mappings() {
    const PAGE: usize = 4096;
    // SAFETY: a fresh private anonymous mapping of two pages.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            2 * PAGE,
            libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    } as usize;
    assert_ne!(base, libc::MAP_FAILED as usize);
    // f(x) = x + 1, straddling the page boundary:
    // 89 f8 (mov eax, edi) 83 c0 01 (add eax, 1) 90 x6 (nop) c3 (ret)
    let code: [u8; 12] = [
        0x89, 0xf8, 0x83, 0xc0, 0x01, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0xc3,
    ];
    let start = base + PAGE - 6;
    // SAFETY: inside the writable mapping.
    unsafe { std::ptr::copy_nonoverlapping(code.as_ptr(), start as *mut u8, code.len()) };
    // Different protections: the kernel keeps two mappings.
    // SAFETY: the second page of our own mapping.
    assert_eq!(
        unsafe {
            libc::mprotect(
                (base + PAGE) as *mut c_void,
                PAGE,
                libc::PROT_READ | libc::PROT_EXEC,
            )
        },
        0
    );
    let hits = std::sync::atomic::AtomicU64::new(0);
    let opts = HookOptions {
        func_range: Some(start..start + code.len()),
        function_entry: true,
    };
    let h = hook(
        start,
        &opts,
        Some(handler(count_hits, (&raw const hits).cast())),
    );
    // SAFETY: the bytes above are a complete C-ABI function.
    let f: extern "C" fn(u32) -> u32 = unsafe { std::mem::transmute(start) };
    assert_eq!(f(black_box(41)), 42);
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    drop(h);
    assert_eq!(f(black_box(1)), 2);
}

// ---------------------------------------------------------------------------
// Trap sites: `int3` where a 5-byte jump does not fit.

/// Calls `f(a, b)` with rax = a at its entry; returns the result and the
/// stack pointer at f's entry.
fn call_sp(f: Fn2, a: u64, b: u64) -> (u64, u64) {
    let mut sp = 0;
    // SAFETY: t_callsp calls f with (a, b) under f's C signature.
    let r = unsafe { t_callsp(f as usize, black_box(a), black_box(b), &mut sp) };
    (r, sp)
}

/// (name, function start, end, probe, function, expected result of (a, b)).
type TrapCase<'a> = (
    &'a str,
    usize,
    usize,
    usize,
    Fn2,
    &'a dyn Fn(u64, u64) -> u64,
);

#[test]
fn trap_sites_see_arguments_ip_and_sp() {
    let add = |a: u64, b: u64| a + b;
    let first = |a: u64, _| a;
    let zero = |_, _| 0;
    let cases: [TrapCase; 5] = [
        (
            "ret",
            addr!(fn ta_ret),
            addr!(ta_ret_end),
            addr!(fn ta_ret),
            ta_ret,
            &first,
        ),
        (
            "endbr64; ret",
            addr!(fn ta_endbr),
            addr!(ta_endbr_end),
            addr!(fn ta_endbr),
            ta_endbr,
            &first,
        ),
        (
            "xor; ret",
            addr!(fn ta_xor),
            addr!(ta_xor_end),
            addr!(fn ta_xor),
            ta_xor,
            &zero,
        ),
        (
            "nop; ret",
            addr!(fn ta_nop),
            addr!(ta_nop_end),
            addr!(fn ta_nop),
            ta_nop,
            &first,
        ),
        (
            "usdt nop",
            addr!(fn ta_usdt),
            addr!(ta_usdt_end),
            addr!(ta_usdt_probe),
            ta_usdt,
            &add,
        ),
    ];
    for (name, start, end, probe, f, want) in cases {
        let log = Mutex::new(Vec::new());
        let n = end - start + 8;
        let before = bytes(start, n);
        let h = hook(
            probe,
            &func(start, end),
            Some(handler(record, log_of(&log))),
        );
        assert!(h.is_trap(), "{name}: {h:?}");
        assert!(format!("{h:?}").contains("trap: true"));
        assert_eq!(h.is_function_entry(), probe == start, "{name}");
        let pa = if name.starts_with("endbr64") {
            start + 4
        } else {
            probe
        };
        assert_eq!(h.patch_addr(), pa, "{name}");
        let mut during = bytes(start, n);
        assert_eq!(
            during[pa - start],
            0xcc,
            "{name}: int3 at the patch address"
        );
        during[pa - start] = before[pa - start];
        assert_eq!(during, before, "{name}: only one byte changes");
        let (got, sp) = call_sp(f, 3, 4);
        assert_eq!(got, want(3, 4), "{name}: return value");
        let seen = log.lock().unwrap().clone();
        assert_eq!(seen.len(), 1, "{name}");
        let r = seen[0];
        assert_eq!((r.arg(1), r.arg(2)), (Some(3), Some(4)), "{name}");
        assert_eq!(
            r.ip, probe as u64,
            "{name}: PT_REGS_IP is the probed address"
        );
        assert_eq!(
            r.sp, sp,
            "{name}: PT_REGS_SP is the stack pointer at the site"
        );
        assert_eq!(r.ax, if probe == start { 3 } else { 7 }, "{name}: rax");
        assert_eq!((r.cs, r.ss, r.orig_ax), (0x33, 0x2b, u64::MAX), "{name}");
        h.remove().unwrap();
        assert_eq!(bytes(start, n), before, "{name}: removal restores the byte");
        assert_eq!(call_sp(f, 3, 4).0, want(3, 4));
        assert_eq!(log.lock().unwrap().len(), 1, "{name}: no hits after remove");
    }
    // Without a function range: `ret` ends the flow before 5 bytes.
    let (s, f) = (addr!(fn tf_xor), tf_xor);
    let hits = AtomicU64::new(0);
    // SAFETY: tf_xor is an asm function; the handler is thread-safe.
    let h = unsafe { Hook::install(s, handler(count, &hits as *const _ as _)) }.unwrap();
    assert!(h.is_trap() && !h.is_function_entry());
    assert_eq!(call_sp(f, 9, 9).0, 0);
    assert_eq!(hits.load(Relaxed), 1);
    drop(h);
    assert_eq!(bytes(s, 3), [0x31, 0xc0, 0xc3]);
}

#[test]
fn trap_site_return_hooks_and_override_return() {
    let cases: [(&str, usize, usize, Fn2, u64); 4] = [
        ("xor; ret", addr!(fn tb_xor), addr!(tb_xor_end), tb_xor, 0),
        ("ret", addr!(fn tb_ret), addr!(tb_ret_end), tb_ret, 30),
        (
            "endbr64; ret",
            addr!(fn tb_endbr),
            addr!(tb_endbr_end),
            tb_endbr,
            30,
        ),
        ("nop; ret", addr!(fn tb_nop), addr!(tb_nop_end), tb_nop, 30),
    ];
    for (name, start, end, f, plain) in cases {
        let entry_log = Mutex::new(Vec::new());
        let ret_log = Mutex::new(Vec::new());
        let h = hook(
            start,
            &func(start, end),
            Some(handler(record, log_of(&entry_log))),
        );
        assert!(h.is_trap(), "{name}");
        // SAFETY: as in `hook`.
        unsafe { h.set_return_handler(Some(handler(ret_record_and_bump, log_of(&ret_log)))) }
            .unwrap();
        let (got, sp) = call_sp(f, 30, 12);
        assert_eq!(got, plain + 1000, "{name}: the return handler changed ax");
        let e = entry_log.lock().unwrap()[0];
        let r = ret_log.lock().unwrap()[0];
        assert_eq!(e.sp, sp, "{name}");
        assert_eq!(r.ax, plain, "{name}: PT_REGS_RC at return");
        assert_eq!(r.sp, sp + 8, "{name}: sp after the return");
        assert_eq!(
            r.ip,
            addr!(t_callsp_ret) as u64,
            "{name}: ip is the return address"
        );
        assert_eq!(h.missed_returns(), 0);
        assert_eq!(
            userbpf_agent::hook::shadow_depth(),
            0,
            "{name}: entry popped"
        );
        // A return handler alone.
        // SAFETY: as above.
        unsafe { h.set_handler(None) };
        assert_eq!(call_sp(f, 30, 12).0, plain + 1000, "{name}");
        assert_eq!(ret_log.lock().unwrap().len(), 2);
        // Override: the function is skipped and returns 7; no return event.
        // SAFETY: as above.
        unsafe { h.set_handler(Some(handler(override_7, core::ptr::null()))) };
        assert_eq!(call_sp(f, 30, 12).0, 7, "{name}: override_return");
        assert_eq!(ret_log.lock().unwrap().len(), 2, "{name}: no return hook");
        // Detached.
        // SAFETY: as above.
        unsafe {
            h.set_handler(None);
            h.set_return_handler(None).unwrap();
        }
        assert_eq!(call_sp(f, 30, 12).0, plain, "{name}");
        h.remove().unwrap();
        assert_eq!(call_sp(f, 30, 12).0, plain, "{name}");
    }
}

#[test]
fn trap_site_next_to_a_jump_hook() {
    // tg_nop (`nop; ret`) is followed directly by tg_nop_next.
    let (s, e) = (addr!(fn tg_nop), addr!(tg_nop_end));
    let (ns, ne) = (addr!(fn tg_nop_next), addr!(tg_nop_next_end));
    assert_eq!(e, ns, "no padding between the two functions");
    let before = bytes(s, ne - s);
    let (a, b) = (AtomicU64::new(0), AtomicU64::new(0));
    let jump = hook(ns, &func(ns, ne), Some(handler(count, &b as *const _ as _)));
    assert!(!jump.is_trap());
    let trap = hook(s, &func(s, e), Some(handler(count, &a as *const _ as _)));
    assert!(trap.is_trap());
    // Without a range, the 5 bytes from tg_nop would overlap the jump: the
    // fallback is a trap site too (this one is refused only as a double).
    // SAFETY: refused before anything is written.
    let err = unsafe { Hook::install(s, handler(count, core::ptr::null())) }.unwrap_err();
    assert!(matches!(err, HookError::AlreadyHooked { .. }), "{err}");
    assert_eq!(call_sp(tg_nop, 5, 6).0, 5);
    assert_eq!(call_sp(tg_nop_next, 5, 6).0, 11);
    assert_eq!((a.load(Relaxed), b.load(Relaxed)), (1, 1));
    jump.remove().unwrap();
    assert_eq!(call_sp(tg_nop, 5, 6).0, 5);
    assert_eq!((a.load(Relaxed), b.load(Relaxed)), (2, 1));
    trap.remove().unwrap();
    assert_eq!(bytes(s, ne - s), before);
    // The other order: a trap site first, then a jump at the next function
    // (its original bytes are read under the int3).
    let trap = hook(s, &func(s, e), None);
    let jump = hook(ns, &func(ns, ne), None);
    // SAFETY: without a range, the jump at tg_nop would overlap: trap site.
    let err = unsafe { Hook::install(s, handler(count, core::ptr::null())) }.unwrap_err();
    assert!(matches!(err, HookError::AlreadyHooked { .. }), "{err}");
    drop(trap);
    // SAFETY: tg_nop is an asm function; now free, but the 5 bytes from it
    // overlap the jump at tg_nop_next: a trap site.
    let again = unsafe { Hook::install(s, handler(count, &a as *const _ as _)) }.unwrap();
    assert!(again.is_trap());
    assert_eq!(call_sp(tg_nop, 5, 6).0, 5);
    assert_eq!(a.load(Relaxed), 3);
    drop(again);
    drop(jump);
    assert_eq!(bytes(s, ne - s), before);
}

#[test]
fn trap_site_eight_threads_count_exactly() {
    let (s, e) = (addr!(fn te_nop), addr!(te_nop_end));
    let (hits, rets) = (AtomicU64::new(0), AtomicU64::new(0));
    let h = hook(s, &func(s, e), Some(handler(count, &hits as *const _ as _)));
    assert!(h.is_trap());
    // SAFETY: as in `hook`.
    unsafe { h.set_return_handler(Some(handler(count, &rets as *const _ as _))) }.unwrap();
    let (threads, calls) = (8u64, 100_000u64);
    let wrong = AtomicU64::new(0);
    let t0 = std::time::Instant::now();
    std::thread::scope(|sc| {
        for t in 0..threads {
            let wrong = &wrong;
            sc.spawn(move || {
                for i in 0..calls {
                    let a = t << 32 | i;
                    if call_sp(te_nop, a, 0).0 != a {
                        wrong.fetch_add(1, Relaxed);
                    }
                }
            });
        }
    });
    let el = t0.elapsed();
    assert_eq!(wrong.load(Relaxed), 0);
    assert_eq!(hits.load(Relaxed), threads * calls, "entry hits");
    assert_eq!(rets.load(Relaxed), threads * calls, "return hits");
    assert_eq!(h.missed_returns(), 0);
    eprintln!(
        "{} trap-site calls in {el:?} ({:.0} ns of wall time each on all cores)",
        threads * calls,
        el.as_nanos() as f64 / (threads * calls) as f64
    );
    drop(h);
}

static SIG_CALLS: AtomicU64 = AtomicU64::new(0);
static SIG_WRONG: AtomicU64 = AtomicU64::new(0);

extern "C" fn usr1_calls_the_probe(_sig: libc::c_int) {
    SIG_CALLS.fetch_add(1, Relaxed);
    // SAFETY: C signature; the function is async-signal-safe asm.
    if unsafe { tc_usdt(black_box(40), black_box(2)) } != 42 {
        SIG_WRONG.fetch_add(1, Relaxed);
    }
}

unsafe extern "C" fn count_locked(_ctx: *mut PtRegs, data: *mut c_void) {
    // SAFETY: the test passes a Mutex<u64>. A signal that lands while the
    // lock is held and calls the probed function must not get here again
    // (it would deadlock): the busy flag skips it.
    let m = unsafe { &*(data as *const Mutex<u64>) };
    let mut g = m.lock().unwrap();
    *g += 1;
    for _ in 0..50 {
        black_box(&mut *g);
    }
}

#[test]
fn trap_site_in_a_signal_heavy_loop() {
    let (s, e, p) = (addr!(fn tc_usdt), addr!(tc_usdt_end), addr!(tc_usdt_probe));
    let (ns, ne) = (addr!(fn tc_nop), addr!(tc_nop_end));
    let counter = Mutex::new(0u64);
    let h = hook(
        p,
        &func(s, e),
        Some(handler(count_locked, &counter as *const _ as _)),
    );
    let h2 = hook(
        ns,
        &func(ns, ne),
        Some(handler(count_locked, &counter as *const _ as _)),
    );
    assert!(h.is_trap() && h2.is_trap());
    // SAFETY: a handler that only calls async-signal-safe asm and atomics.
    unsafe {
        let mut sa: libc::sigaction = core::mem::zeroed();
        sa.sa_sigaction = usr1_calls_the_probe as *const () as libc::sighandler_t;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(
            libc::sigaction(libc::SIGUSR1, &sa, core::ptr::null_mut()),
            0
        );
    }
    let done = AtomicBool::new(false);
    let calls = 50_000u64;
    let calls_made = AtomicU64::new(0);
    let worker_tid = std::sync::atomic::AtomicU64::new(0);
    let watchdog_done = AtomicBool::new(false);
    std::thread::scope(|sc| {
        sc.spawn(|| {
            let t0 = std::time::Instant::now();
            while !watchdog_done.load(Relaxed) {
                if t0.elapsed() > std::time::Duration::from_secs(300) {
                    eprintln!("trap_site_in_a_signal_heavy_loop: deadlocked");
                    std::process::abort();
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        });
        let worker = sc.spawn(|| {
            // SAFETY: pthread_self has no preconditions.
            worker_tid.store(unsafe { libc::pthread_self() } as u64, SeqCst);
            let mut wrong = 0;
            // At least `calls` calls, and on until the signal handler has
            // run often enough (a loaded machine may starve the sender).
            let t0 = std::time::Instant::now();
            let mut i = 0u64;
            while i < calls
                || (SIG_CALLS.load(Relaxed) <= 100
                    && t0.elapsed() < std::time::Duration::from_secs(60))
            {
                // SAFETY: C signature.
                if unsafe { tc_usdt(black_box(i), 1) } != i + 1 {
                    wrong += 1;
                }
                if call_sp(tc_nop, i, 0).0 != i {
                    wrong += 1;
                }
                i += 1;
            }
            done.store(true, SeqCst);
            (wrong, i)
        });
        sc.spawn(|| {
            while worker_tid.load(SeqCst) == 0 {
                std::hint::spin_loop();
            }
            let tid = worker_tid.load(SeqCst) as libc::pthread_t;
            let mut sent = 0u64;
            while !done.load(SeqCst) {
                // SAFETY: the worker thread is alive until `done`, and we
                // stop before it exits (it sets `done` as its last act; a
                // signal then still lands on the live thread).
                unsafe { libc::pthread_kill(tid, libc::SIGUSR1) };
                sent += 1;
                if sent.is_multiple_of(4) {
                    std::thread::yield_now();
                }
            }
            eprintln!("{sent} SIGUSR1 sent");
        });
        let (wrong, made) = worker.join().unwrap();
        assert_eq!(wrong, 0, "wrong results");
        calls_made.store(made, Relaxed);
        watchdog_done.store(true, Relaxed);
    });
    let hits = *counter.lock().unwrap();
    let sig = SIG_CALLS.load(Relaxed);
    eprintln!("{hits} hits, {sig} calls from the signal handler");
    assert_eq!(SIG_WRONG.load(Relaxed), 0);
    assert!(sig > 100, "the loop was signal-heavy: {sig}");
    let calls = calls_made.load(Relaxed);
    assert!(hits >= 2 * calls, "every call of the loop ran the handler");
    assert!(hits <= 2 * calls + sig, "{hits}");
    drop(h);
    drop(h2);
}

/// A probe at a 1-byte nop that is the second-last byte of its mapping:
/// the code ends 1 byte after it (as for the last function of .text
/// followed by another section).
#[test]
fn trap_site_at_the_end_of_a_mapping_and_forget() {
    const PAGE: usize = 4096;
    // SAFETY: a fresh private anonymous mapping of two pages.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            2 * PAGE,
            libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    } as usize;
    assert_ne!(base, libc::MAP_FAILED as usize);
    // SAFETY: the second page of our own mapping goes away.
    assert_eq!(
        unsafe { libc::munmap((base + PAGE) as *mut c_void, PAGE) },
        0
    );
    // f(x) = x + 1: lea eax, [rdi + 1]; nop; ret, ending the mapping.
    let code: [u8; 5] = [0x8d, 0x47, 0x01, 0x90, 0xc3];
    let start = base + PAGE - code.len();
    let probe = start + 3;
    let place = |at: usize| {
        // SAFETY: inside our writable mapping.
        unsafe { std::ptr::copy_nonoverlapping(code.as_ptr(), at as *mut u8, code.len()) };
        // SAFETY: as above; executable from now on, no longer writable.
        assert_eq!(
            unsafe { libc::mprotect(base as *mut c_void, PAGE, libc::PROT_READ | libc::PROT_EXEC) },
            0
        );
    };
    place(start);
    let log = Mutex::new(Vec::new());
    let opts = func(start, start + code.len());
    let h = hook(probe, &opts, Some(handler(record, log_of(&log))));
    assert!(h.is_trap());
    // SAFETY: the bytes above are a complete C-ABI function.
    let f: extern "C" fn(u32) -> u32 = unsafe { std::mem::transmute(start) };
    assert_eq!(f(black_box(41)), 42);
    let r = log.lock().unwrap()[0];
    assert_eq!((r.ip, r.ax, r.di), (probe as u64, 42, 41));
    h.remove().unwrap();
    assert_eq!(bytes(start, 5), code);
    assert_eq!(f(black_box(1)), 2);

    // dlclose-like: the code goes away under a hook, which is forgotten
    // without writing; new code at the same address hooks afresh.
    let h = hook(probe, &opts, Some(handler(record, log_of(&log))));
    // SAFETY: our own mapping; nothing runs there now.
    assert_eq!(unsafe { libc::munmap(base as *mut c_void, PAGE) }, 0);
    h.forget();
    // SAFETY: maps the same page again, fresh.
    let again = unsafe {
        libc::mmap(
            base as *mut c_void,
            PAGE,
            libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    } as usize;
    assert_eq!(again, base);
    place(start);
    assert_eq!(f(black_box(5)), 6, "the new code has no int3 and runs");
    let h = hook(probe, &opts, Some(handler(record, log_of(&log))));
    assert_eq!(f(black_box(6)), 7);
    assert_eq!(log.lock().unwrap().len(), 2);
    drop(h);
    assert_eq!(bytes(start, 5), code);
}

/// The kernel force-delivers the SIGTRAP of an int3: a thread that blocks
/// SIGTRAP and hits a trap site gets SIGTRAP's default action (the process
/// dies), not our handler (docs/hooks.md). Checked in a child process.
#[test]
fn blocked_sigtrap_at_a_trap_site_kills_the_process() {
    if std::env::var_os("USERBPF_HOOK_BLOCKED_CHILD").is_none() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "blocked_sigtrap_at_a_trap_site_kills_the_process",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("USERBPF_HOOK_BLOCKED_CHILD", "1")
            .output()
            .unwrap();
        use std::os::unix::process::ExitStatusExt;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("unblocked call hooked"), "{stdout}");
        assert!(
            stdout.contains("interposed mask left SIGTRAP deliverable"),
            "{stdout}"
        );
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGTRAP),
            "{:?}: {stdout}",
            out.status
        );
        return;
    }
    // No core file from the expected death.
    let no_core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain setrlimit on a local.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &no_core) };
    let (s, e) = (addr!(fn td_nop), addr!(td_nop_end));
    let hits = AtomicU64::new(0);
    let h = hook(s, &func(s, e), Some(handler(count, &hits as *const _ as _)));
    assert_eq!(call_sp(td_nop, 1, 0).0, 1);
    assert_eq!(hits.load(Relaxed), 1);
    println!("unblocked call hooked");
    // Through the C library, the agent's interposer keeps SIGTRAP out of
    // the mask: the call is hooked.
    // SAFETY: blocks SIGTRAP (and nothing else) in this thread.
    unsafe {
        let mut set: libc::sigset_t = core::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTRAP);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, core::ptr::null_mut());
        let mut now: libc::sigset_t = core::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, core::ptr::null(), &mut now);
        assert_eq!(libc::sigismember(&now, libc::SIGTRAP), 0);
    }
    assert_eq!(call_sp(td_nop, 3, 0).0, 3);
    assert_eq!(hits.load(Relaxed), 2);
    println!("interposed mask left SIGTRAP deliverable");
    // Bypassing it (a raw rt_sigprocmask), the kernel's rule shows.
    // SAFETY: blocks SIGTRAP in this thread only.
    unsafe {
        let mut set: libc::sigset_t = core::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTRAP);
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_BLOCK,
            &set as *const libc::sigset_t,
            core::ptr::null_mut::<libc::sigset_t>(),
            8usize,
        );
    }
    call_sp(td_nop, 2, 0);
    println!("survived with SIGTRAP blocked");
    drop(h);
}

/// Trap sites installed and removed 300 times while 8 threads run the
/// probed code: a thread whose trap is handled after the removal resumes at
/// the relocated copy; every result stays right.
#[test]
fn trap_site_install_remove_while_threads_call() {
    let (s, e, p) = (addr!(fn th_usdt), addr!(th_usdt_end), addr!(th_usdt_probe));
    let before = bytes(s, e - s);
    let stop = AtomicBool::new(false);
    let (wrong, calls, hits) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    std::thread::scope(|sc| {
        for t in 0..8u64 {
            let (stop, wrong, calls) = (&stop, &wrong, &calls);
            sc.spawn(move || {
                let (mut i, mut n) = (t, 0);
                while !stop.load(Relaxed) {
                    // SAFETY: C signature.
                    if unsafe { th_usdt(black_box(i), 3) } != i + 3 {
                        wrong.fetch_add(1, Relaxed);
                    }
                    i = i.wrapping_add(13);
                    n += 1;
                }
                calls.fetch_add(n, Relaxed);
            });
        }
        for _ in 0..300 {
            let h = hook(p, &func(s, e), Some(handler(count, &hits as *const _ as _)));
            assert!(h.is_trap());
            std::thread::sleep(std::time::Duration::from_micros(200));
            h.remove().unwrap();
            std::thread::sleep(std::time::Duration::from_micros(100));
        }
        stop.store(true, Relaxed);
    });
    assert_eq!(wrong.load(Relaxed), 0);
    assert_eq!(bytes(s, e - s), before);
    eprintln!(
        "{} calls, {} hits, {} late traps redirected (all tests)",
        calls.load(Relaxed),
        hits.load(Relaxed),
        userbpf_agent::hook::trap_redirects()
    );
    assert!(hits.load(Relaxed) > 0);
}

unsafe extern "C" fn reenter_trap(_ctx: *mut PtRegs, data: *mut c_void) {
    // SAFETY: the test passes an AtomicU64; ti_xor is the trap site whose
    // handler this is: the nested int3 is delivered (SA_NODEFER) and
    // skipped, not recursed into.
    unsafe {
        (*(data as *const AtomicU64)).fetch_add(1, Relaxed);
        assert_eq!(ti_xor(5, 5), 0);
        *libc::__errno_location() = 77;
    }
}

#[test]
fn trap_site_handlers_do_not_recurse_and_keep_errno() {
    let (s, e) = (addr!(fn ti_xor), addr!(ti_xor_end));
    let hits = AtomicU64::new(0);
    let h = hook(
        s,
        &func(s, e),
        Some(handler(reenter_trap, &hits as *const _ as _)),
    );
    assert!(h.is_trap());
    // SAFETY: as in `hook`.
    unsafe { h.set_return_handler(Some(handler(reenter_trap, &hits as *const _ as _))) }.unwrap();
    // SAFETY: C signature; errno is this thread's.
    unsafe {
        *libc::__errno_location() = 5;
        assert_eq!(ti_xor(1, 2), 0);
        assert_eq!(*libc::__errno_location(), 5, "errno survives the handlers");
    }
    assert_eq!(hits.load(Relaxed), 2, "entry and return once each");
    assert_eq!(userbpf_agent::hook::shadow_depth(), 0);
    drop(h);
}
