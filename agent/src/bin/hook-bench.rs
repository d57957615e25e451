//! ns per call of a noinline function with no hook, an entry hook (empty
//! handler), a return hook, and both, for three first instructions; the
//! same for trap sites (functions too short for a jump); plus the cost of
//! the flag save/restore variants the stubs could use.
//!
//! `cargo run --release -p userbpf-agent --bin hook-bench [-- CALLS]`

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod bench {
    use core::arch::global_asm;
    use core::ffi::c_void;
    use std::hint::black_box;
    use userbpf_agent::hook::{Hook, HookHandler, HookOptions, PtRegs};

    global_asm!(
        ".pushsection .text.userbpf_hook_bench,\"ax\",@progbits",
        // The three functions compute a + 1 after their first instruction.
        ".p2align 4",
        ".globl hb_push",
        "hb_push:",
        "push rbp",
        "mov rbp, rsp",
        "lea rax, [rdi + 1]",
        "pop rbp",
        "ret",
        ".globl hb_push_end",
        "hb_push_end:",
        ".p2align 4",
        ".globl hb_endbr",
        "hb_endbr:",
        "endbr64",
        "push rbp",
        "mov rbp, rsp",
        "lea rax, [rdi + 1]",
        "pop rbp",
        "ret",
        ".globl hb_endbr_end",
        "hb_endbr_end:",
        ".p2align 4",
        ".globl hb_nop5",
        "hb_nop5:",
        ".byte 0x0f, 0x1f, 0x44, 0x00, 0x00",
        "lea rax, [rdi + 1]",
        "ret",
        ".globl hb_nop5_end",
        "hb_nop5_end:",
        // Too short for a jump: trap sites. a + 1 in 4 bytes.
        ".p2align 4",
        ".globl hb_trap",
        "hb_trap:",
        "lea eax, [rdi + 1]",
        "ret",
        ".globl hb_trap_end",
        "hb_trap_end:",
        // A USDT-style probe: a 1-byte nop before the ret.
        ".p2align 4",
        ".globl hb_usdt",
        "hb_usdt:",
        "lea rax, [rdi + 1]",
        ".globl hb_usdt_probe",
        "hb_usdt_probe:",
        "nop",
        "ret",
        ".globl hb_usdt_end",
        "hb_usdt_end:",
        // Flag save/restore variants, each around the same `lea`.
        ".p2align 4",
        ".globl hb_f_none",
        "hb_f_none:",
        "lea rax, [rdi + 1]",
        "ret",
        ".p2align 4",
        ".globl hb_f_pushf",
        "hb_f_pushf:",
        "pushfq",
        "lea rax, [rdi + 1]",
        "lea rsp, [rsp + 8]",
        "ret",
        ".p2align 4",
        ".globl hb_f_popf",
        "hb_f_popf:",
        "pushfq",
        "lea rax, [rdi + 1]",
        "popfq",
        "ret",
        // What the inner stub does: pushfq to record, sahf + add + DF test
        // to restore.
        ".p2align 4",
        ".globl hb_f_sahf",
        "hb_f_sahf:",
        "pushfq",
        "cld",
        "test byte ptr [rsp + 1], 4",
        "jz 1f",
        "std",
        "1:",
        "movzx ecx, byte ptr [rsp + 1]",
        "shr ecx, 3",
        "and ecx, 1",
        "add cl, 0x7f",
        "mov ah, byte ptr [rsp]",
        "sahf",
        "lea rax, [rdi + 1]",
        "lea rsp, [rsp + 8]",
        "ret",
        // lahf/seto only (no pushfq, DF not kept).
        ".p2align 4",
        ".globl hb_f_lahf",
        "hb_f_lahf:",
        "lahf",
        "seto al",
        "mov ecx, eax",
        "add cl, 0x7f",
        "mov ah, ch",
        "sahf",
        "lea rax, [rdi + 1]",
        "ret",
        // Vector state: xmm0-7 with movaps, and xsave64 of everything.
        ".p2align 4",
        ".globl hb_v_ymm8",
        "hb_v_ymm8:",
        "push rbp",
        "mov rbp, rsp",
        "and rsp, -32",
        "sub rsp, 256",
        "vmovdqu [rsp], ymm0",
        "vmovdqu [rsp + 32], ymm1",
        "vmovdqu [rsp + 64], ymm2",
        "vmovdqu [rsp + 96], ymm3",
        "vmovdqu [rsp + 128], ymm4",
        "vmovdqu [rsp + 160], ymm5",
        "vmovdqu [rsp + 192], ymm6",
        "vmovdqu [rsp + 224], ymm7",
        "vzeroupper",
        "vmovdqu ymm0, [rsp]",
        "vmovdqu ymm1, [rsp + 32]",
        "vmovdqu ymm2, [rsp + 64]",
        "vmovdqu ymm3, [rsp + 96]",
        "vmovdqu ymm4, [rsp + 128]",
        "vmovdqu ymm5, [rsp + 160]",
        "vmovdqu ymm6, [rsp + 192]",
        "vmovdqu ymm7, [rsp + 224]",
        "lea rax, [rdi + 1]",
        "leave",
        "ret",
        ".p2align 4",
        ".globl hb_v_xmm8",
        "hb_v_xmm8:",
        "push rbp",
        "mov rbp, rsp",
        "and rsp, -16",
        "sub rsp, 128",
        "movaps [rsp], xmm0",
        "movaps [rsp + 16], xmm1",
        "movaps [rsp + 32], xmm2",
        "movaps [rsp + 48], xmm3",
        "movaps [rsp + 64], xmm4",
        "movaps [rsp + 80], xmm5",
        "movaps [rsp + 96], xmm6",
        "movaps [rsp + 112], xmm7",
        "movaps xmm0, [rsp]",
        "movaps xmm1, [rsp + 16]",
        "movaps xmm2, [rsp + 32]",
        "movaps xmm3, [rsp + 48]",
        "movaps xmm4, [rsp + 64]",
        "movaps xmm5, [rsp + 80]",
        "movaps xmm6, [rsp + 96]",
        "movaps xmm7, [rsp + 112]",
        "lea rax, [rdi + 1]",
        "leave",
        "ret",
        ".macro HB_XSAVE name, save, restore",
        ".p2align 4",
        ".globl \\name",
        "\\name:",
        "push rbp",
        "mov rbp, rsp",
        "mov r8, rdi",
        "sub rsp, rsi",
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
        "\\save [rsp]",
        "mov eax, -1",
        "mov edx, -1",
        "\\restore [rsp]",
        "lea rax, [r8 + 1]",
        "leave",
        "ret",
        ".endm",
        "HB_XSAVE hb_v_xsave, xsave64, xrstor64",
        "HB_XSAVE hb_v_xsaveopt, xsaveopt64, xrstor64",
        "HB_XSAVE hb_v_xsavec, xsavec64, xrstor64",
        "HB_XSAVE hb_v_fxsave, fxsave64, fxrstor64",
        ".popsection",
    );

    extern "C" {
        fn hb_push(a: u64) -> u64;
        fn hb_endbr(a: u64) -> u64;
        fn hb_nop5(a: u64) -> u64;
        fn hb_f_none(a: u64) -> u64;
        fn hb_f_pushf(a: u64) -> u64;
        fn hb_f_popf(a: u64) -> u64;
        fn hb_f_sahf(a: u64) -> u64;
        fn hb_f_lahf(a: u64) -> u64;
        fn hb_v_xmm8(a: u64) -> u64;
        fn hb_v_ymm8(a: u64) -> u64;
        fn hb_v_xsave(a: u64, size: u64) -> u64;
        fn hb_v_xsaveopt(a: u64, size: u64) -> u64;
        fn hb_v_xsavec(a: u64, size: u64) -> u64;
        fn hb_v_fxsave(a: u64, size: u64) -> u64;
        static hb_push_end: u8;
        static hb_endbr_end: u8;
        static hb_nop5_end: u8;
        fn hb_trap(a: u64) -> u64;
        fn hb_usdt(a: u64) -> u64;
        static hb_trap_end: u8;
        static hb_usdt_probe: u8;
        static hb_usdt_end: u8;
    }

    unsafe extern "C" fn empty(_ctx: *mut PtRegs, _data: *mut c_void) {}

    type F = unsafe extern "C" fn(u64) -> u64;

    /// CPU time of this thread, ns: time spent preempted by the other
    /// builds on a shared machine does not count.
    fn thread_ns() -> u128 {
        // SAFETY: clock_gettime writes into a local timespec.
        let mut ts: libc::timespec = unsafe { core::mem::zeroed() };
        // SAFETY: as above.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128
    }

    /// ns per call: the fastest of `RUNS` runs of `calls` calls (the
    /// least disturbed by other load; wall-clock medians on this shared
    /// 2-core machine vary by 2x).
    fn measure(f: &dyn Fn(u64) -> u64, calls: u64) -> f64 {
        (0..RUNS)
            .map(|_| {
                let t = thread_ns();
                let mut acc = 0u64;
                for _ in 0..calls {
                    acc = f(black_box(acc));
                }
                black_box(acc);
                (thread_ns() - t) as f64 / calls as f64
            })
            .fold(f64::INFINITY, f64::min)
    }

    const RUNS: usize = 7;

    fn time_fn(f: F, calls: u64) -> f64 {
        // SAFETY: the asm functions take and return a u64.
        measure(&|a| unsafe { f(a) }, calls)
    }

    /// Trap sites: a signal per hit, so fewer calls.
    fn trap_rows(h: HookHandler, calls: u64) {
        let calls = (calls / 50).max(1000);
        println!("\ntrap sites (int3 and SIGTRAP; {calls} calls per run):\n");
        println!("| site | no hook | entry hook | return hook | entry + return |");
        println!("|---|---:|---:|---:|---:|");
        let (start, end) = (
            hb_trap as *const () as usize,
            &raw const hb_trap_end as usize,
        );
        let opts = HookOptions {
            func_range: Some(start..end),
            function_entry: true,
        };
        let base = time_fn(hb_trap, calls);
        // SAFETY: hb_trap is hooked at its entry with its true range; the
        // handler does nothing.
        let hook = unsafe { Hook::install_with(start, &opts, Some(h)) }.expect("install");
        assert!(hook.is_trap());
        let entry = time_fn(hb_trap, calls);
        // SAFETY: as above.
        unsafe {
            hook.set_handler(None);
            hook.set_return_handler(Some(h)).expect("return handler");
        }
        let ret = time_fn(hb_trap, calls);
        // SAFETY: as above.
        unsafe { hook.set_handler(Some(h)) };
        let both = time_fn(hb_trap, calls);
        hook.remove().expect("remove");
        println!(
            "| `lea; ret` (entry) | {base:.2} | +{:.0} | +{:.0} | +{:.0} |",
            entry - base,
            ret - base,
            both - base
        );
        let (start, end) = (
            hb_usdt as *const () as usize,
            &raw const hb_usdt_end as usize,
        );
        let o = HookOptions {
            func_range: Some(start..end),
            function_entry: false,
        };
        let base = time_fn(hb_usdt, calls);
        // SAFETY: the probe is the nop of hb_usdt.
        let hook = unsafe { Hook::install_with(&raw const hb_usdt_probe as usize, &o, Some(h)) }
            .expect("install");
        assert!(hook.is_trap());
        let inner = time_fn(hb_usdt, calls);
        hook.remove().expect("remove");
        println!(
            "| USDT `nop` before `ret` (inner) | {base:.2} | +{:.0} | | |",
            inner - base
        );
    }

    pub fn main() {
        let calls: u64 = std::env::args()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(5_000_000);
        let h = HookHandler::new(empty, core::ptr::null_mut());
        println!(
            "hook overhead: ns per call (thread CPU time, best of {RUNS} runs of {calls} calls)\n"
        );
        println!(
            "| first instruction | no hook | entry hook | return hook | entry + return | hook at the `lea` inside |"
        );
        println!("|---|---:|---:|---:|---:|---:|");
        let rows: [(&str, F, usize, usize); 3] = [
            (
                "`push %rbp`",
                hb_push,
                hb_push as *const () as usize,
                &raw const hb_push_end as usize,
            ),
            (
                "`endbr64`",
                hb_endbr,
                hb_endbr as *const () as usize,
                &raw const hb_endbr_end as usize,
            ),
            (
                "5-byte nop",
                hb_nop5,
                hb_nop5 as *const () as usize,
                &raw const hb_nop5_end as usize,
            ),
        ];
        for (name, f, start, end) in rows {
            let opts = HookOptions {
                func_range: Some(start..end),
                function_entry: true,
            };
            let base = time_fn(f, calls);
            // SAFETY: the bench functions are hooked at their entry, with
            // their true ranges; the handler does nothing.
            let hook = unsafe { Hook::install_with(start, &opts, Some(h)) }.expect("install");
            let entry = time_fn(f, calls);
            // SAFETY: as above.
            unsafe {
                hook.set_handler(None);
                hook.set_return_handler(Some(h)).expect("return handler");
            }
            let ret = time_fn(f, calls);
            // SAFETY: as above.
            unsafe { hook.set_handler(Some(h)) };
            let both = time_fn(f, calls);
            hook.remove().expect("remove");
            // The `lea` inside the function: the inner stub.
            let inner_at = match name {
                "`push %rbp`" => start + 4,
                "`endbr64`" => start + 8,
                _ => start + 5,
            };
            let o = HookOptions {
                func_range: Some(start..end),
                function_entry: false,
            };
            // SAFETY: `inner_at` is the `lea rax, [rdi + 1]`.
            let hk = unsafe { Hook::install_with(inner_at, &o, Some(h)) }.expect("inner");
            let inner = time_fn(f, calls);
            hk.remove().expect("remove");
            println!(
                "| {name} | {base:.2} | +{:.1} | +{:.1} | +{:.1} | +{:.1} |",
                entry - base,
                ret - base,
                both - base,
                inner - base
            );
        }
        trap_rows(h, calls);
        println!("\nflag and vector state save/restore, added to a plain call (ns):\n");
        println!("| variant | ns |");
        println!("|---|---:|");
        let none = time_fn(hb_f_none, calls);
        for (name, f) in [
            ("pushfq (record only)", hb_f_pushf as F),
            ("pushfq + popfq", hb_f_popf),
            ("pushfq + sahf/add/DF restore (inner stub)", hb_f_sahf),
            ("lahf/seto + sahf/add", hb_f_lahf),
            (
                "movaps xmm0-7 save + restore (entry stub without AVX)",
                hb_v_xmm8,
            ),
        ] {
            println!("| {name} | +{:.1} |", time_fn(f, calls) - none);
        }
        if std::arch::is_x86_feature_detected!("avx") {
            println!(
                "| vmovdqu ymm0-7 save + vzeroupper + restore (entry stub with AVX) | +{:.1} |",
                time_fn(hb_v_ymm8, calls) - none
            );
        }
        let size = {
            use core::arch::x86_64::__cpuid_count;
            __cpuid_count(0xd, 0).ebx as u64 + 64
        };
        type X = unsafe extern "C" fn(u64, u64) -> u64;
        for (name, f) in [
            ("xsave64 + xrstor64", hb_v_xsave as X),
            ("xsaveopt64 + xrstor64", hb_v_xsaveopt),
            ("xsavec64 + xrstor64", hb_v_xsavec),
            ("fxsave64 + fxrstor64 (x87 and SSE only)", hb_v_fxsave),
        ] {
            // SAFETY: the asm function saves and restores the state into a
            // stack buffer of `size` bytes.
            let t = measure(&|a| unsafe { f(a, size) }, calls / 4);
            println!("| {name}, {} bytes area | +{:.1} |", size - 64, t - none);
        }
    }
}

fn main() {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    bench::main();
}
