use std::sync::Arc;
use std::time::Instant;

use super::*;
use crate::asm::assemble;
use crate::tailcall::{ProgArray, MAX_TAIL_CALL_CNT};

unsafe extern "C" fn echo(a: u64, _: u64, _: u64, _: u64, _: u64, _: *mut HelperEnv) -> u64 {
    a
}

unsafe extern "C" fn add5(a: u64, b: u64, c: u64, d: u64, e: u64, _: *mut HelperEnv) -> u64 {
    a.wrapping_add(b)
        .wrapping_add(c)
        .wrapping_add(d)
        .wrapping_add(e)
}

/// Returns `HelperEnv::user` as a number: checks the sixth argument.
unsafe extern "C" fn user_of(_: u64, _: u64, _: u64, _: u64, _: u64, env: *mut HelperEnv) -> u64 {
    // SAFETY: the tests pass a valid environment.
    unsafe { (*env).user as u64 }
}

fn registry() -> HelperRegistry {
    let mut h = HelperRegistry::new();
    h.register(5, "echo", echo);
    h.register(6, "add5", add5);
    h.register(7, "user_of", user_of);
    h.register(5000, "far_echo", echo);
    h
}

fn compile_src(src: &str, helpers: &HelperRegistry) -> JitProgram {
    let insns = assemble(src).unwrap_or_else(|e| panic!("{e}\n{src}"));
    let program = Program::new(insns).unwrap_or_else(|e| panic!("{e}\n{src}"));
    JitProgram::compile(&program, helpers).unwrap_or_else(|e| panic!("{e}\n{src}"))
}

/// Runs `src` with `mem` as context; the result of `run`.
fn run_mem(src: &str, mem: &mut [u8]) -> Result<u64, JitRunError> {
    let jit = compile_src(src, &registry());
    let mut env = HelperEnv::new(mem.as_mut_ptr(), std::ptr::null_mut(), false);
    // SAFETY: the test programs only touch `mem` and their stack.
    unsafe { jit.run(mem.as_mut_ptr() as u64, mem.len() as u64, &mut env) }
}

fn run(src: &str) -> Result<u64, JitRunError> {
    run_mem(src, &mut [])
}

#[test]
fn jit_program_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<JitProgram>();
}

#[test]
fn returns_r0_and_sees_context() {
    assert_eq!(run("mov %r0, 42\nexit"), Ok(42));
    let mut mem = [1u8, 2, 3, 4, 5];
    assert_eq!(run_mem("mov %r0, %r2\nexit", &mut mem), Ok(5));
    assert_eq!(run_mem("ldxb %r0, [%r1+4]\nexit", &mut mem), Ok(5));
    assert_eq!(
        run_mem("stw [%r1+1], -1\nldxdw %r0, [%r1]\nexit", &mut [0u8; 8]),
        Ok(0x0000_00ff_ffff_ff00)
    );
}

#[test]
fn division_edge_cases_do_not_trap() {
    let cases: &[(&str, u64)] = &[
        ("mov %r0, 7\nmov %r1, 0\ndiv %r0, %r1\nexit", 0),
        ("mov %r0, 7\nmov %r1, 0\nmod %r0, %r1\nexit", 7),
        (
            "lddw %r0, 0x1ffffffff\nmov %r1, 0\nmod32 %r0, %r1\nexit",
            0xffff_ffff,
        ),
        (
            "lddw %r0, 0x8000000000000000\nmov %r1, -1\nsdiv %r0, %r1\nexit",
            1 << 63,
        ),
        (
            "lddw %r0, 0x8000000000000000\nmov %r1, -1\nsmod %r0, %r1\nexit",
            0,
        ),
        ("lddw %r0, 0x8000000000000000\nsdiv %r0, -1\nexit", 1 << 63),
        ("lddw %r0, 0x8000000000000000\nsmod %r0, -1\nexit", 0),
        (
            "mov32 %r0, 0x80000000\nmov %r1, -1\nsdiv32 %r0, %r1\nexit",
            0x8000_0000,
        ),
        ("mov32 %r0, 0x80000000\nsmod32 %r0, -1\nexit", 0),
        (
            "mov %r0, -10\nmov %r1, 0\nsmod32 %r0, %r1\nexit",
            0xffff_fff6,
        ),
        ("mov %r0, -10\nsmod %r0, 0\nexit", (-10i64) as u64),
        ("mov %r0, -10\nsdiv %r0, 0\nexit", 0),
        ("mov %r0, -7\nsdiv %r0, 2\nexit", (-3i64) as u64),
        ("mov %r0, -7\nsmod %r0, 2\nexit", (-1i64) as u64),
        ("mov %r0, -1\ndiv %r0, -10\nexit", 1),
        (
            "mov %r0, 12\nlddw %r1, 0x100000004\ndiv32 %r0, %r1\nexit",
            3,
        ),
    ];
    for (src, want) in cases {
        assert_eq!(run(src), Ok(*want), "{src}");
    }
}

/// Runs `src` with r1 and r2 set to plain numbers (no memory).
fn run_regs(src: &str, r1: u64, r2: u64) -> Result<u64, JitRunError> {
    let jit = compile_src(src, &registry());
    // SAFETY: the test programs touch no memory.
    unsafe { jit.run(r1, r2, std::ptr::null_mut()) }
}

#[test]
fn skipped_alu_becomes_a_select() {
    // r0 = 1; if r1 > 5 skip r0 = 7.
    let src = "mov %r0, 1\njgt %r1, 5, +1\nmov %r0, 7\nexit";
    assert_eq!(run_regs(src, 10, 0), Ok(1));
    assert_eq!(run_regs(src, 3, 0), Ok(7));
    // 32-bit compare and ALU on the skipped path; the dst feeds the compare.
    let src = "mov %r0, %r1\njslt32 %r0, 0, +1\nadd32 %r0, 1\nexit";
    assert_eq!(run_regs(src, 0xffff_ffff, 0), Ok(0xffff_ffff));
    assert_eq!(run_regs(src, 0x1_0000_0004, 0), Ok(5));
    // The skipped instruction is also a jump target: stays a branch.
    let src = "mov %r0, 0\njeq %r1, 0, +1\nl:\nadd %r0, 1\njlt %r0, %r2, l\nexit";
    assert_eq!(run_regs(src, 1, 5), Ok(5));
    assert_eq!(run_regs(src, 0, 5), Ok(5));
    // jset, and a register operand.
    let src = "mov %r0, 9\njset %r1, %r2, +1\nlsh %r0, 4\nexit";
    assert_eq!(run_regs(src, 6, 4), Ok(9));
    assert_eq!(run_regs(src, 6, 8), Ok(0x90));
    // `if cond goto l; alu; ja l`: a select too (the join is elsewhere).
    let src = "ja +2\nm:\nlsh %r0, 4\nexit\nmov %r0, 1\njgt32 %r1, 3, m\nmov %r0, 0\nja m";
    assert_eq!(run_regs(src, 4, 0), Ok(16));
    assert_eq!(run_regs(src, 3, 0), Ok(0));
    assert_eq!(run_regs(src, 1 << 32, 0), Ok(0));
    // 0/1 choices both ways, 32 and 64-bit (a cmov and a halving).
    for (src, hit, miss) in [
        ("mov %r0, 1\njgt %r1, 5, +1\nmov32 %r0, 0\nexit", 1, 0),
        ("mov %r0, 0\njgt %r1, 5, +1\nmov %r0, 1\nexit", 0, 1),
        ("mov32 %r0, 1\njsgt32 %r1, 5, +1\nmov32 %r0, 0\nexit", 1, 0),
    ] {
        assert_eq!(run_regs(src, 10, 0), Ok(hit), "{src}");
        assert_eq!(run_regs(src, 2, 0), Ok(miss), "{src}");
    }
}

#[test]
fn division_by_register_checks_every_special_case() {
    let div = |op: &str, a: u64, d: u64| {
        run_regs(&format!("mov %r0, %r1\n{op} %r0, %r2\nexit"), a, d).unwrap()
    };
    let min64 = 1u64 << 63;
    for d in [0u64, 1, 2, 3, u64::MAX, u64::MAX - 1, min64, 0xffff_ffff] {
        for a in [
            0u64,
            1,
            7,
            u64::MAX,
            min64,
            0x8000_0000,
            0x1234_5678_9abc_def0,
        ] {
            let (ai, di) = (a as i64, d as i64);
            let want_sdiv = match di {
                0 => 0,
                -1 => ai.wrapping_neg() as u64,
                _ => (ai / di) as u64,
            };
            let want_smod = match di {
                0 => a,
                -1 => 0,
                _ => (ai % di) as u64,
            };
            assert_eq!(
                div("div", a, d),
                a.checked_div(d).unwrap_or(0),
                "{a:#x}/{d:#x}"
            );
            assert_eq!(
                div("mod", a, d),
                a.checked_rem(d).unwrap_or(a),
                "{a:#x}%{d:#x}"
            );
            assert_eq!(div("sdiv", a, d), want_sdiv, "{a:#x} sdiv {d:#x}");
            assert_eq!(div("smod", a, d), want_smod, "{a:#x} smod {d:#x}");
            let (a32, d32) = (a as u32, d as u32);
            let (a32i, d32i) = (a32 as i32, d32 as i32);
            let want = a32.checked_div(d32).unwrap_or(0) as u64;
            assert_eq!(div("div32", a, d), want);
            let want = a32.checked_rem(d32).unwrap_or(a32) as u64;
            assert_eq!(div("mod32", a, d), want);
            let want = match d32i {
                0 => 0,
                -1 => a32i.wrapping_neg() as u32 as u64,
                _ => (a32i / d32i) as u32 as u64,
            };
            assert_eq!(div("sdiv32", a, d), want);
            let want = match d32i {
                0 => a32 as u64,
                -1 => 0,
                _ => (a32i % d32i) as u32 as u64,
            };
            assert_eq!(div("smod32", a, d), want);
        }
    }
}

#[test]
fn local_calls_preserve_r6_to_r9_and_have_their_own_stack() {
    let src = "
        mov %r6, 6
        stdw [%r10-8], 77
        mov %r1, %r10
        call local f
        ldxdw %r1, [%r10-8]
        add %r0, %r1
        add %r0, %r6
        exit
    f:
        stdw [%r10-8], 1000
        ldxdw %r0, [%r1-8]
        mov %r6, 0
        exit";
    // f reads the caller's slot through r1 (77) and writes its own.
    assert_eq!(run(src), Ok(77 + 77 + 6));
}

#[test]
fn call_depth_is_limited() {
    // main + 7 nested calls is the limit.
    let mut ok = String::new();
    for i in 0..MAX_CALL_FRAMES {
        if i + 1 < MAX_CALL_FRAMES {
            ok += &format!("f{i}:\ncall local f{}\nadd %r0, 1\nexit\n", i + 1);
        } else {
            ok += &format!("f{i}:\nmov %r0, 0\nexit\n");
        }
    }
    assert_eq!(run(&ok), Ok(MAX_CALL_FRAMES as u64 - 1));

    let recursive = "mov %r0, 1\ncall local f\nexit\nf:\ncall local f\nexit";
    let err = run(recursive).unwrap_err();
    assert_eq!(err, JitRunError::CallDepthExceeded { pc: 3 });
    let jit = compile_src(recursive, &registry());
    // SAFETY: the program touches no memory.
    assert_eq!(unsafe { jit.call(0, 0, std::ptr::null_mut()) }, 0);
}

#[test]
fn helpers_get_arguments_and_environment() {
    let src = "mov %r1, 1\nmov %r2, 2\nmov %r3, 3\nmov %r4, 4\nmov %r5, 5\ncall 6\nexit";
    assert_eq!(run(src), Ok(15));
    let jit = compile_src("call 7\nexit", &registry());
    let mut env = HelperEnv::new(std::ptr::null_mut(), 0x1234 as *mut _, false);
    // SAFETY: the program only calls user_of.
    assert_eq!(unsafe { jit.run(0, 0, &mut env) }, Ok(0x1234));
}

#[test]
fn unknown_helper_is_a_compile_error() {
    let program = Program::new(assemble("call 99\nexit").unwrap()).unwrap();
    assert_eq!(
        JitProgram::compile(&program, &registry()).unwrap_err(),
        JitError::UnknownHelper { pc: 0, id: 99 }
    );
}

#[test]
fn callx_dispatches_at_run_time() {
    assert_eq!(run("mov %r1, 9\nmov %r2, 5\ncall %r2\nexit"), Ok(9));
    // An id past the dense table.
    assert_eq!(run("mov %r1, 9\nmov %r2, 5000\ncall %r2\nexit"), Ok(9));
    assert_eq!(
        run("mov %r0, 3\nmov %r2, 4999\ncall %r2\nexit"),
        Err(JitRunError::UnknownCallx { pc: 2, id: 4999 })
    );
    assert_eq!(
        run("mov %r0, 3\nlddw %r2, 0x100000005\ncall %r2\nexit"),
        Err(JitRunError::UnknownCallx {
            pc: 3,
            id: 0x1_0000_0005
        })
    );
    // Inside a subprogram: the abort unwinds every frame.
    assert_eq!(
        run("call local f\nmov %r0, 1\nexit\nf:\nmov %r3, 8\ncall %r3\nexit"),
        Err(JitRunError::UnknownCallx { pc: 4, id: 8 })
    );
    // No helpers at all.
    let program = Program::new(assemble("mov %r2, 5\ncall %r2\nexit").unwrap()).unwrap();
    let jit = JitProgram::compile(&program, &HelperRegistry::new()).unwrap();
    // SAFETY: the program touches no memory.
    let res = unsafe { jit.run(0, 0, std::ptr::null_mut()) };
    assert_eq!(res, Err(JitRunError::UnknownCallx { pc: 1, id: 5 }));
}

/// Program `i` of a tail-call chain: r0 = i, tail-call slot i + 1, exit.
fn chain_link(i: usize, array: &ProgArray) -> JitProgram {
    let src = format!(
        "mov %r0, {i}\nlddw %r2, {}\nmov %r3, {}\ncall 12\nexit",
        array.as_addr(),
        i + 1
    );
    compile_src(&src, &HelperRegistry::new())
}

#[test]
fn tail_calls_stop_after_33() {
    let array = ProgArray::new(40);
    let progs: Vec<Arc<JitProgram>> = (0..40).map(|i| Arc::new(chain_link(i, &array))).collect();
    for (i, p) in progs.iter().enumerate() {
        array.set(i as u32, p.clone()).unwrap();
    }
    // SAFETY: the programs touch no memory; the array is alive.
    let r0 = unsafe { progs[0].run(0, 0, std::ptr::null_mut()) };
    assert_eq!(r0, Ok(MAX_TAIL_CALL_CNT as u64));

    // Starting further along, the chain ends at the last program: its tail
    // call finds index 40 out of range and falls through.
    // SAFETY: as above.
    let r0 = unsafe { progs[30].run(0, 0, std::ptr::null_mut()) };
    assert_eq!(r0, Ok(39));

    // An empty slot fails and falls through with registers unchanged.
    array.clear(5).unwrap();
    // SAFETY: as above.
    let r0 = unsafe { progs[0].run(0, 0, std::ptr::null_mut()) };
    assert_eq!(r0, Ok(4));
}

#[test]
fn tail_call_keeps_context_and_replaces_only_its_frame() {
    let array = ProgArray::new(2);
    // The target returns r1 + mem[0].
    let target = Arc::new(compile_src(
        "ldxb %r0, [%r1+0]\nadd %r0, %r1\nexit",
        &HelperRegistry::new(),
    ));
    array.set(1, target).unwrap();
    // main calls f, f tail-calls slot 1 (r1 = ctx); f's caller gets the
    // target's r0 and adds 1000.
    let src = format!(
        "call local f\nadd %r0, 1000\nexit\nf:\nlddw %r2, {}\nmov %r3, 1\ncall 12\nmov %r0, 0\nexit",
        array.as_addr()
    );
    let jit = compile_src(&src, &HelperRegistry::new());
    let mut mem = [7u8];
    let ctx = mem.as_mut_ptr() as u64;
    // SAFETY: the programs only read mem[0].
    let r0 = unsafe { jit.run(ctx, 1, std::ptr::null_mut()) };
    assert_eq!(r0, Ok(ctx + 7 + 1000));

    // Through callx, and with a null array (fails, falls through).
    let src = format!(
        "mov %r0, 5\nlddw %r2, {}\nmov %r3, 1\nmov %r4, 12\ncall %r4\nexit",
        array.as_addr()
    );
    let jit = compile_src(&src, &HelperRegistry::new());
    // SAFETY: as above.
    assert_eq!(
        unsafe { jit.run(ctx, 1, std::ptr::null_mut()) },
        Ok(ctx + 7)
    );
    let jit = compile_src(
        "mov %r0, 5\nmov %r2, 0\nmov %r3, 1\ncall 12\nexit",
        &HelperRegistry::new(),
    );
    // SAFETY: as above.
    assert_eq!(unsafe { jit.run(ctx, 1, std::ptr::null_mut()) }, Ok(5));
}

#[test]
fn tail_call_target_outlives_its_slot() {
    // The target overwrites the slot it came from (through a helper) while
    // it runs: the run keeps it alive.
    unsafe extern "C" fn clear_slot(
        a: u64,
        _: u64,
        _: u64,
        _: u64,
        _: u64,
        _: *mut HelperEnv,
    ) -> u64 {
        // SAFETY: the test passes the live array's address.
        let array = unsafe { ProgArray::from_addr(a) }.unwrap();
        array.clear(0).unwrap();
        0
    }
    let mut helpers = HelperRegistry::new();
    helpers.register(20, "clear_slot", clear_slot);
    let array = ProgArray::new(1);
    let target = compile_src(
        &format!("lddw %r1, {}\ncall 20\nmov %r0, 99\nexit", array.as_addr()),
        &helpers,
    );
    array.set(0, Arc::new(target)).unwrap();
    let main = compile_src(
        &format!("lddw %r2, {}\nmov %r3, 0\ncall 12\nexit", array.as_addr()),
        &helpers,
    );
    // SAFETY: the programs touch only the array.
    assert_eq!(unsafe { main.run(0, 0, std::ptr::null_mut()) }, Ok(99));
    assert!(array.get(0).is_none());
}

#[test]
fn runs_concurrently_from_many_threads() {
    let jit = Arc::new(compile_src(
        "mov %r0, 0\nloop:\nadd %r0, %r2\nsub %r2, 1\njne %r2, 0, loop\nexit",
        &registry(),
    ));
    let handles: Vec<_> = (0..8u64)
        .map(|t| {
            let jit = jit.clone();
            std::thread::spawn(move || {
                for n in 0..1000u64 {
                    let n = n + t + 1;
                    // SAFETY: the program touches no memory.
                    let r0 = unsafe { jit.call(0, n, std::ptr::null_mut()) };
                    assert_eq!(r0, n * (n + 1) / 2);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn compiling_and_dropping_many_programs_frees_code() {
    for i in 0..500 {
        let jit = compile_src(&format!("mov %r0, {i}\nexit"), &registry());
        // SAFETY: the program touches no memory.
        assert_eq!(unsafe { jit.call(0, 0, std::ptr::null_mut()) }, i);
    }
}

/// A long program mixing ALU, memory, jumps and calls, as compilers emit.
fn synthetic_program(blocks: usize) -> Vec<Insn> {
    let mut src = String::from("mov %r6, %r1\nmov %r7, 0\nmov %r0, 0\n");
    for i in 0..blocks {
        src += &format!(
            "ldxw %r2, [%r6+{o}]
            add %r2, {i}
            mul %r2, 3
            xor %r0, %r2
            stxdw [%r10-{s}], %r0
            jgt %r2, 1000, b{i}
            rsh %r0, 1
            lsh32 %r2, 2
            add %r7, %r2
            b{i}:
            ldxdw %r3, [%r10-{s}]
            add %r0, %r3
            jsgt %r0, %r7, +1
            mov %r0, %r7
            arsh %r0, 3
            ",
            o = (i % 8) * 4,
            s = 8 + (i % 32) * 8,
        );
    }
    src += "call local f\nexit\nf:\nmov %r0, %r1\nexit\n";
    assemble(&src).unwrap()
}

/// CPU time of this thread: compile time without the noise of other
/// processes competing for the CPU.
fn thread_cpu_ns() -> u128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0);
    ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128
}

#[test]
fn compile_time_per_instruction() {
    let helpers = registry();
    let programs = [
        (
            "trivial",
            Program::new(assemble("mov %r0, 1\nexit").unwrap()).unwrap(),
        ),
        ("synthetic", Program::new(synthetic_program(7)).unwrap()),
        ("synthetic", Program::new(synthetic_program(70)).unwrap()),
        ("synthetic", Program::new(synthetic_program(700)).unwrap()),
    ];
    for (name, program) in &programs {
        // Warm up (ISA construction, allocator).
        JitProgram::compile(program, &helpers).unwrap();
        let (mut best_wall, mut best_cpu) = (u128::MAX, u128::MAX);
        for _ in 0..7 {
            let (wall, cpu) = (Instant::now(), thread_cpu_ns());
            let jit = JitProgram::compile(program, &helpers).unwrap();
            best_cpu = best_cpu.min(thread_cpu_ns() - cpu);
            best_wall = best_wall.min(wall.elapsed().as_nanos());
            drop(jit);
        }
        let n = program.len() as u128;
        println!(
            "jit compile ({} build): {name} {n} insns: cpu {:.3} ms ({} ns/insn, {:.3} ms per 1000), wall {:.3} ms",
            if cfg!(debug_assertions) { "debug" } else { "release" },
            best_cpu as f64 / 1e6,
            best_cpu / n,
            (best_cpu * 1000 / n) as f64 / 1e6,
            best_wall as f64 / 1e6,
        );
        let mut mem = [3u8; 64];
        let jit = JitProgram::compile(program, &helpers).unwrap();
        // SAFETY: the programs read mem[0..32] and their stack.
        let r = unsafe { jit.run(mem.as_mut_ptr() as u64, 64, std::ptr::null_mut()) };
        assert!(r.is_ok());
    }
}

/// Compiles the raw BPF image named by `USERBPF_JIT_DUMP_FILE` (with
/// `USERBPF_JIT_DUMP=1` to see the IR and machine code):
/// `USERBPF_JIT_DUMP=1 USERBPF_JIT_DUMP_FILE=x.bpf.bin cargo test --release
/// -p userbpf-runtime dump_file -- --ignored --nocapture`
#[test]
#[ignore]
fn dump_file() {
    let path = std::env::var("USERBPF_JIT_DUMP_FILE").expect("USERBPF_JIT_DUMP_FILE");
    let bytes = std::fs::read(&path).unwrap();
    let program = Program::from_bytes(&bytes).unwrap();
    JitProgram::compile(&program, &registry()).unwrap();
    // USERBPF_JIT_DUMP_REPEAT=n: compile n more times (for profiling).
    let repeat: u32 = std::env::var("USERBPF_JIT_DUMP_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let start = Instant::now();
    for _ in 0..repeat {
        JitProgram::compile(&program, &registry()).unwrap();
    }
    if repeat > 0 {
        let us = start.elapsed().as_secs_f64() * 1e6 / repeat as f64;
        println!("{} insns: {us:.1} µs per compilation", program.len());
    }
}

/// Per-call cost of the ways into a compiled program (a benchmark, not a
/// test): `cargo test --release -p userbpf-runtime entry_overhead --
/// --ignored --nocapture`. Prints the best of 9 rounds.
#[test]
#[ignore]
fn entry_overhead() {
    use crate::vm::{Engine, Vm, VmOptions};
    extern "C" fn native(r1: u64, _: u64) -> u64 {
        r1 + 12345678
    }
    let src = "mov %r0, 12345678\nexit";
    let insns = assemble(src).unwrap();
    let vm = Vm::from_insns(insns, registry(), VmOptions::with_engine(Engine::Jit)).unwrap();
    let jit = compile_src(src, &registry());
    let mut mem = [0u8; 16];
    const N: u32 = 5_000_000;
    let time = |f: &mut dyn FnMut()| {
        let t = Instant::now();
        for _ in 0..N {
            f();
        }
        t.elapsed().as_nanos() as f64 / N as f64
    };
    type RunFn<'a> = Box<dyn FnMut(&mut [u8]) -> Result<u64, String> + 'a>;
    let mut boxed_vm: RunFn = Box::new(|m| vm.run(m).map_err(|e| e.to_string()));
    let mut boxed_native: RunFn = Box::new(|m| Ok(native(m.as_mut_ptr() as u64, 0)));
    let mut best = [f64::MAX; 6];
    for _ in 0..9 {
        let native: extern "C" fn(u64, u64) -> u64 = std::hint::black_box(native);
        let t = [
            time(&mut || {
                std::hint::black_box(native(std::hint::black_box(0), 0));
            }),
            time(&mut || {
                std::hint::black_box(vm.run(std::hint::black_box(&mut mem)).unwrap());
            }),
            time(&mut || {
                let mut env = HelperEnv::new(std::ptr::null_mut(), std::ptr::null_mut(), false);
                // SAFETY: the program touches no memory.
                let r = unsafe { jit.run(std::hint::black_box(0), 0, &mut env) };
                std::hint::black_box(r.unwrap());
            }),
            time(&mut || {
                // SAFETY: the program touches no memory.
                let r = unsafe { jit.call(std::hint::black_box(0), 0, std::ptr::null_mut()) };
                std::hint::black_box(r);
            }),
            time(&mut || {
                std::hint::black_box(boxed_native(std::hint::black_box(&mut mem)).unwrap());
            }),
            time(&mut || {
                std::hint::black_box(boxed_vm(std::hint::black_box(&mut mem)).unwrap());
            }),
        ];
        for (b, t) in best.iter_mut().zip(t) {
            *b = b.min(t);
        }
    }
    println!(
        "native indirect call {:.2} ns, Vm::run {:.2} ns, JitProgram::run {:.2} ns, \
         JitProgram::call {:.2} ns; boxed as in the benchmark: native {:.2} ns, Vm::run {:.2} ns",
        best[0], best[1], best[2], best[3], best[4], best[5]
    );
}
