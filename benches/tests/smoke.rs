//! Correctness, not speed: every runtime returns the expected r0 on every
//! benchmark program (and the memcpy copy really happens).

use userbpf_benches::programs::{self, BENCHES};
use userbpf_benches::runtimes::{self, Runtime};

#[test]
fn every_runtime_returns_the_expected_r0() {
    if let Some(reason) = programs::TOOLCHAIN_ERROR {
        eprintln!("skipped: the benchmark programs were not built: {reason}");
        return;
    }
    let mut failures = Vec::new();
    for bench in BENCHES {
        let src = bench.source().expect("every benchmark's source is built");
        let input = (bench.input)();
        let expected = (bench.reference)(&input);
        for rt in Runtime::ALL {
            let mut mem = input.clone();
            let what = format!("{} on {}", bench.name, rt.label());
            match runtimes::load(rt, src).and_then(|mut run| run(&mut mem)) {
                Ok(r0) if r0 != expected => failures.push(format!(
                    "{what}: r0 = {r0} ({r0:#x}), expected {expected} ({expected:#x})"
                )),
                Ok(_) if bench.output_ok.is_some_and(|ok| !ok(&mem)) => {
                    failures.push(format!("{what}: right r0, wrong memory contents"))
                }
                Ok(_) => {}
                Err(e) => failures.push(format!("{what}: {e}")),
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// The BPF images are what the spec describes: one function, and the
/// switch lowered to a compare tree (no calls, no tables).
#[test]
fn programs_are_plain_bpf_text() {
    if programs::TOOLCHAIN_ERROR.is_some() {
        eprintln!("skipped: the benchmark programs were not built");
        return;
    }
    for src in programs::SOURCES {
        let calls = src
            .bpf
            .chunks_exact(8)
            .filter(|insn| insn[0] == 0x85)
            .count();
        assert_eq!(calls, 0, "{} calls something", src.name);
    }
    let switch = programs::SOURCES
        .iter()
        .find(|s| s.name == "switch")
        .unwrap();
    assert!(
        switch.insn_count() > 128,
        "the switch is not a compare tree"
    );
}
