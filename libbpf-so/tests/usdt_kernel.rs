//! USDT on kernel programs (`USERBPF_BACKEND=kernel`): the specs go to the
//! kernel's spec map and each call site becomes a kernel uprobe with its
//! spec id as cookie and the semaphore as its reference counter, as with
//! the real libbpf. The same driver runs on Debian's libbpf (the oracle),
//! on ours in kernel mode, and on ours in auto mode (user space); the three
//! outputs must be identical. Root only (the oracle and kernel mode).

use std::path::{Path, PathBuf};
use std::process::Command;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/usdt_kernel")
}

fn libdir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("release")
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn usdt_on_kernel_programs_matches_libbpf() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root (kernel uprobes, and the real libbpf as oracle)");
        return;
    }
    let out = std::env::temp_dir().join(format!("userbpf-usdt-kernel-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    let obj = out.join("usdt.bpf.o");
    run(Command::new("clang-16")
        .args(["-target", "bpf", "-D__TARGET_ARCH_x86", "-g", "-O2"])
        .arg("-I/usr/include/x86_64-linux-gnu")
        .arg("-c")
        .arg(dir().join("usdt.bpf.c"))
        .arg("-o")
        .arg(&obj));
    let exe = out.join("driver");
    run(Command::new("cc")
        .args(["-O1", "-o"])
        .arg(&exe)
        .arg(dir().join("driver.c"))
        .arg("-lbpf"));
    let real = run(Command::new(&exe).arg(&obj).env_remove("LD_LIBRARY_PATH"));
    assert!(
        real.contains("attached: lookup 0 sum=1045 hits=10 semaphore=1")
            && real.contains("destroyed: lookup 0 sum=1045 hits=10 semaphore=0"),
        "the real libbpf: {real}"
    );
    for mode in ["kernel", "auto"] {
        let ours = run(Command::new(&exe)
            .arg(&obj)
            .env("LD_LIBRARY_PATH", libdir())
            .env("USERBPF_BACKEND", mode));
        assert_eq!(ours, real, "ours in {mode} mode");
    }
    let _ = std::fs::remove_dir_all(&out);
}
