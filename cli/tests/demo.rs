//! The end-to-end demo (`scripts/demo.sh`, what `make demo` runs): an
//! unmodified libbpf skeleton app (`demo/malloccount`) on userbpf's
//! libbpf.so.1 counts the malloc calls of a process started with the agent
//! (`demo/victim`), and the count must be exactly what the victim made.
//!
//! Needs the release libraries next to the userbpf executable (`cargo
//! build --release -p userbpf-libbpf-so -p userbpf-agent`), clang-16,
//! bpftool, gcc, pkg-config and libbpf-dev's BPF headers (scripts/setup.sh).

use std::path::Path;
use std::process::Command;

#[test]
fn malloc_counter_counts_the_victim_exactly() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = Command::new("bash")
        .arg(repo.join("scripts/demo.sh"))
        .current_dir(repo)
        .env("USERBPF", env!("CARGO_BIN_EXE_userbpf"))
        .env("DEMO_TICKS", "3")
        .env("DEMO_PER_TICK", "1000")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("demo: ok"),
        "scripts/demo.sh failed ({:?})\n--- stdout:\n{stdout}\n--- stderr:\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("malloccount counted (victim): calls 3000 bytes 792480"),
        "{stdout}"
    );
}
