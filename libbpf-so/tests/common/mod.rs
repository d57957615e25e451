//! Shared by the integration tests: where the built `libbpf.so` is.

// Each test crate uses a different subset.
#![allow(dead_code)]

use std::path::PathBuf;

/// `target/<profile>`: the tests run from `target/<profile>/deps`.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps")
        .to_path_buf()
}

/// The cdylib. The integration tests depend on this package's library, and
/// its crate types include `cdylib`, so cargo has (re)built it before running
/// them; the test fails loudly if that ever stops being true.
pub fn libbpf_so() -> PathBuf {
    let so = profile_dir().join("libbpf.so");
    assert!(
        so.is_file(),
        "{} is missing: build it with `cargo build -p userbpf-libbpf-so` (same profile)",
        so.display()
    );
    so
}

/// `(symbol, node)` rows of `abi/symbols.tsv`.
pub fn expected_symbols() -> Vec<(String, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/abi/symbols.tsv");
    std::fs::read_to_string(path)
        .expect("abi/symbols.tsv")
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (sym, node) = l.split_once('\t').expect("symbol<TAB>node");
            (sym.to_string(), node.to_string())
        })
        .collect()
}

/// Runs a command, returning stdout; panics with stderr on failure.
pub fn run(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}
