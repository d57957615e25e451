//! Differential testing: random valid programs run on the interpreter and on
//! the JIT must agree on r0 and on every byte of memory they were given.
//!
//! `USERBPF_DIFF_PROGRAMS` sets how many programs (default 100,000),
//! `USERBPF_DIFF_SEED` the first seed (default 0). Program `i` uses seed
//! `first + i`, so a failure is reproduced from the seed it prints.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};

use support::asmx::assemble;
use support::progen::{self, Rng, BUF_LEN, HELPER_LOOP, HELPER_MIX, HELPER_SUM};
use userbpf_runtime::disasm::disassemble;
use userbpf_runtime::helpers::{callback, HelperEnv, HelperRegistry};
use userbpf_runtime::isa::Insn;
use userbpf_runtime::program::Program;
use userbpf_runtime::vm::{Engine, Vm, VmOptions};

unsafe extern "C" fn mix(a: u64, b: u64, c: u64, d: u64, e: u64, _: *mut HelperEnv) -> u64 {
    a.rotate_left(7) ^ b.wrapping_mul(0x9e37_79b9) ^ c.wrapping_sub(d) ^ (e >> 3)
}

unsafe extern "C" fn sum(a: u64, b: u64, c: u64, d: u64, e: u64, _: *mut HelperEnv) -> u64 {
    a.wrapping_add(b)
        .wrapping_add(c)
        .wrapping_add(d)
        .wrapping_add(e)
}

fn helpers() -> HelperRegistry {
    let mut h = HelperRegistry::new();
    h.register(HELPER_MIX, "mix", mix);
    h.register(HELPER_SUM, "sum", sum);
    h.register(HELPER_LOOP, "bpf_loop", callback::bpf_loop);
    h
}

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, got {v:?}")),
        Err(_) => default,
    }
}

/// Runs `insns` on both engines with a buffer derived from `seed`.
fn check_program(seed: u64, insns: Vec<Insn>, helpers: &HelperRegistry) -> Result<(), String> {
    let program =
        Program::new(insns).map_err(|e| format!("generator made an invalid program: {e}"))?;

    let mut input = vec![0u8; BUF_LEN];
    let mut rng = Rng::new(seed ^ 0x5eed);
    for b in input.iter_mut() {
        *b = rng.next_u64() as u8;
    }

    let run = |engine: Engine| -> Result<(u64, Vec<u8>), String> {
        let vm = Vm::new(
            program.clone(),
            helpers.clone(),
            VmOptions::with_engine(engine),
        )
        .map_err(|e| format!("{engine:?}: load failed: {e}"))?;
        let mut mem = input.clone();
        let r0 = vm
            .run(&mut mem)
            .map_err(|e| format!("{engine:?}: run failed: {e}"))?;
        Ok((r0, mem))
    };
    let (r0_interp, mem_interp) = run(Engine::Interpreter)?;
    let (r0_jit, mem_jit) = run(Engine::Jit)?;
    if r0_interp != r0_jit {
        return Err(format!(
            "r0 differs: interpreter {r0_interp:#x}, jit {r0_jit:#x}"
        ));
    }
    if let Some(at) = (0..BUF_LEN).find(|&i| mem_interp[i] != mem_jit[i]) {
        return Err(format!(
            "memory differs at byte {at}: interpreter {:#04x}, jit {:#04x}",
            mem_interp[at], mem_jit[at]
        ));
    }
    Ok(())
}

#[test]
fn interpreter_and_jit_agree_on_random_programs() {
    agree_on(
        "differential",
        env_number("USERBPF_DIFF_PROGRAMS", 100_000) as usize,
        progen::generate,
    );
}

/// The same with `bpf_loop` callbacks (nested up to three deep);
/// `USERBPF_DIFF_CALLBACK_PROGRAMS` sets the count (default 10,000).
#[test]
fn interpreter_and_jit_agree_on_random_callback_programs() {
    agree_on(
        "differential (callbacks)",
        env_number("USERBPF_DIFF_CALLBACK_PROGRAMS", 10_000) as usize,
        progen::generate_with_callbacks,
    );
}

fn agree_on(what: &str, count: usize, generate: fn(u64) -> Vec<Insn>) {
    let first = env_number("USERBPF_DIFF_SEED", 0);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let helpers = helpers();
    let next = AtomicUsize::new(0);
    let failures = std::sync::Mutex::new(Vec::new());

    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let seed = first + i as u64;
                if let Err(why) = check_program(seed, generate(seed), &helpers) {
                    failures.lock().unwrap().push((seed, why));
                    // Stop early: one failure with its disassembly is enough.
                    next.store(count, Ordering::Relaxed);
                }
            });
        }
    });

    let failures = failures.into_inner().unwrap();
    let failed = failures.len();
    println!(
        "{what}: {} passed, {failed} failed (seeds {first}..{})",
        count - failed,
        first + count as u64
    );
    if let Some((seed, why)) = failures.first() {
        panic!(
            "seed {seed}: {why}\nreproduce with USERBPF_DIFF_SEED={seed} and a count of 1\n{}",
            disassemble(&generate(*seed))
        );
    }
}

static LOOP_CALLS: AtomicUsize = AtomicUsize::new(0);
static LOOP_ITERATIONS: AtomicUsize = AtomicUsize::new(0);

/// bpf_loop, counting calls and iterations.
unsafe extern "C" fn counting_loop(
    a: u64,
    b: u64,
    c: u64,
    d: u64,
    e: u64,
    env: *mut HelperEnv,
) -> u64 {
    // SAFETY: forwarded from the engine.
    let r = unsafe { callback::bpf_loop(a, b, c, d, e, env) };
    LOOP_CALLS.fetch_add(1, Ordering::Relaxed);
    if (r as i64) > 0 {
        LOOP_ITERATIONS.fetch_add(r as usize, Ordering::Relaxed);
    }
    r
}

#[test]
fn callback_generator_makes_nested_loops() {
    use userbpf_runtime::isa::*;
    use userbpf_runtime::vm::{Engine, Vm, VmOptions};
    let mut counting = helpers();
    counting.register(HELPER_LOOP, "bpf_loop", counting_loop);
    let mut nested = false;
    for seed in 0..500 {
        let insns = progen::generate_with_callbacks(seed);
        let program = Program::new(insns.clone()).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert!(!program.callback_targets().is_empty());
        // A callback that itself names a callback: nesting.
        let subs = program.subprograms();
        nested |= insns
            .iter()
            .enumerate()
            .any(|(pc, i)| i.is_lddw() && i.src == BPF_PSEUDO_FUNC && pc > subs[1]);
        let vm = Vm::new(
            program,
            &counting,
            VmOptions::with_engine(Engine::Interpreter),
        )
        .unwrap();
        vm.run(&mut [0u8; BUF_LEN]).unwrap();
    }
    assert!(nested);
    // The loops run their callbacks (and some stop early).
    let (calls, iterations) = (
        LOOP_CALLS.load(Ordering::Relaxed),
        LOOP_ITERATIONS.load(Ordering::Relaxed),
    );
    assert!(
        calls >= 500 && iterations >= calls,
        "{calls} calls, {iterations} iterations"
    );
    println!("{calls} bpf_loop calls, {iterations} callback runs");
}

/// Hand-written bpf_loop programs: identical r0 and memory on both engines.
#[test]
fn bpf_loop_programs_agree() {
    let programs = [
        // Sum of i * ctx-word into ctx[8], stop when the sum passes 1000.
        "
        mov %r6, %r1
        ldxdw %r1, [%r6+0]
        ldfunc %r2, cb
        mov %r3, %r6
        mov %r4, 0
        call 181
        ldxdw %r1, [%r6+8]
        lsh %r0, 32
        or %r0, %r1
        exit
    cb:
        ldxdw %r3, [%r2+16]
        mul %r3, %r1
        ldxdw %r4, [%r2+8]
        add %r4, %r3
        stxdw [%r2+8], %r4
        mov %r0, 0
        jle %r4, 1000, +1
        mov %r0, 1
        exit",
        // Nested: an outer loop whose callback runs an inner loop that
        // writes a byte per (i, j) into the buffer, and counts on the
        // outer callback's own stack.
        "
        mov %r6, %r1
        mov %r1, 6
        ldfunc %r2, outer
        mov %r3, %r6
        mov %r4, 0
        call 181
        exit
    outer:
        stdw [%r10-8], 0
        stxdw [%r10-16], %r2
        stxdw [%r10-24], %r1
        mov %r1, 5
        ldfunc %r2, inner
        mov %r3, %r10
        add %r3, -24
        mov %r4, 0
        call 181
        ldxdw %r0, [%r10-8]
        sub %r0, 5
        exit
    inner:
        ldxdw %r3, [%r2]
        ldxdw %r4, [%r2+8]
        mov %r5, %r3
        mul %r5, 5
        add %r5, %r1
        add %r4, %r5
        mul %r3, %r1
        stxb [%r4+24], %r3
        ldxdw %r5, [%r2+16]
        add %r5, 1
        stxdw [%r2+16], %r5
        mov %r0, 0
        exit",
    ];
    let helpers = helpers();
    for (i, src) in programs.iter().enumerate() {
        check_program(i as u64, assemble(src), &helpers)
            .unwrap_or_else(|e| panic!("program {i}: {e}"));
    }
}

#[test]
fn generator_programs_are_valid_and_varied() {
    // The generator must produce programs the loader accepts, with the
    // features the differential test claims to cover.
    let mut seen_call = false;
    let mut seen_atomic = false;
    let mut seen_loop = false;
    for seed in 0..2_000 {
        let insns = progen::generate(seed);
        Program::new(insns.clone()).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        for i in &insns {
            use userbpf_runtime::isa::*;
            seen_call |= i.code == CALL && i.src == BPF_PSEUDO_CALL;
            seen_atomic |= i.class() == BPF_STX && i.mode() == BPF_ATOMIC;
            seen_loop |= i.class() == BPF_JMP && i.op() == BPF_JNE && i.off < 0;
        }
    }
    assert!(seen_call && seen_atomic && seen_loop);
}
