//! A loader that probes itself (pid 0, `/proc/self/exe`, as
//! libbpf-bootstrap's `uprobe` example): libbpf.so.1 starts the agent in
//! process, and the hooks are in place when attach returns and gone when
//! `bpf_link__destroy` returns.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{libbpf_so, profile_dir, run};

#[test]
fn uprobe_and_uretprobe_on_the_loader_itself() {
    let so = libbpf_so();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/self_attach");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("libbpf-so-self-attach");
    std::fs::create_dir_all(&dir).unwrap();
    let obj = dir.join("self.bpf.o");
    run(Command::new("clang-16")
        .args(["-O2", "-g", "-target", "bpf", "-D__TARGET_ARCH_x86"])
        .args(["-I/usr/include/x86_64-linux-gnu", "-c"])
        .arg(src.join("self.bpf.c"))
        .arg("-o")
        .arg(&obj));
    let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("../include");
    let exe = dir.join("self");
    run(Command::new("gcc")
        .args(["-O2", "-fcf-protection=full", "-I"])
        .arg(&include)
        .arg(src.join("self.c"))
        .arg("-L")
        .arg(so.parent().unwrap())
        .args(["-lbpf", "-o"])
        .arg(&exe));
    let ns = dir.join(format!("ns-{}", std::process::id()));
    std::fs::create_dir_all(&ns).unwrap();
    let out = Command::new(&exe)
        .arg(&obj)
        .env("LD_LIBRARY_PATH", profile_dir())
        .env("USERBPF_DIR", &ns)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 10 calls of (i, 100): args sum 45 + 1000, returns the same.
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        [
            "attached: calls 10 args 1045 rets 1045 (sum 1045)",
            "detached: calls 10 args 1045 rets 1045",
            "multi: 15",
        ],
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&ns);
}
