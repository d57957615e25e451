//! Differential testing: random valid programs run on the interpreter and on
//! the JIT must agree on r0 and on every byte of memory they were given.
//!
//! `USERBPF_DIFF_PROGRAMS` sets how many programs (default 100,000),
//! `USERBPF_DIFF_SEED` the first seed (default 0). Program `i` uses seed
//! `first + i`, so a failure is reproduced from the seed it prints.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};

use support::progen::{self, Rng, BUF_LEN, HELPER_MIX, HELPER_SUM};
use userbpf_runtime::disasm::disassemble;
use userbpf_runtime::helpers::{HelperEnv, HelperRegistry};
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

/// Runs one seed on both engines; describes the disagreement if any.
fn check_seed(seed: u64, helpers: &HelperRegistry) -> Result<(), String> {
    let insns = progen::generate(seed);
    let program = Program::new(insns.clone())
        .map_err(|e| format!("generator made an invalid program: {e}"))?;

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
    let count = env_number("USERBPF_DIFF_PROGRAMS", 100_000) as usize;
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
                if let Err(why) = check_seed(seed, &helpers) {
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
        "differential: {} passed, {failed} failed (seeds {first}..{})",
        count - failed,
        first + count as u64
    );
    if let Some((seed, why)) = failures.first() {
        panic!(
            "seed {seed}: {why}\nreproduce with USERBPF_DIFF_SEED={seed} USERBPF_DIFF_PROGRAMS=1\n{}",
            disassemble(&progen::generate(*seed))
        );
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
