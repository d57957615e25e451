//! A mixed object across processes: the loader keeps the shared maps in
//! the kernel (a kernel tracepoint uses them), and the uprobe runs in
//! another process under the agent, which reaches them through the map
//! proxies (`pidfd_getfd` of the loader's kernel map fds): the ARRAY mapped,
//! the HASH by syscall with write-back. Counts must be exact. Root only.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mixed_cross")
}

fn release() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("release")
}

fn build(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn uprobe_in_a_target_shares_kernel_maps_with_the_loader() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: the kernel half of a mixed object needs root");
        return;
    }
    let agent = release().join("libuserbpf_agent.so");
    assert!(
        agent.exists(),
        "build the workspace first: {}",
        agent.display()
    );
    let out = std::env::temp_dir().join(format!("userbpf-mixed-cross-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    let obj = out.join("mixed.bpf.o");
    build(
        Command::new("clang-16")
            .args([
                "-target",
                "bpf",
                "-g",
                "-O2",
                "-I/usr/include/x86_64-linux-gnu",
                "-c",
            ])
            .arg(dir().join("mixed.bpf.c"))
            .arg("-o")
            .arg(&obj),
    );
    let victim = out.join("victim");
    build(
        Command::new("cc")
            .args(["-O1", "-o"])
            .arg(&victim)
            .arg(dir().join("victim.c")),
    );
    let loader = out.join("loader");
    build(
        Command::new("cc")
            .args(["-O1", "-o"])
            .arg(&loader)
            .arg(dir().join("loader.c"))
            .arg("-lbpf"),
    );
    let ns = format!("mixed-cross-{}", std::process::id());
    let mut l = Command::new(&loader)
        .arg(&obj)
        .arg(&victim)
        .env("LD_LIBRARY_PATH", release())
        .env("USERBPF_BACKEND", "auto")
        .env("USERBPF_NAMESPACE", &ns)
        .env_remove("USERBPF_DIR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("loader");
    let mut lines = BufReader::new(l.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    let v = Command::new(&victim)
        .env("LD_PRELOAD", &agent)
        .env("USERBPF_NAMESPACE", &ns)
        .env_remove("USERBPF_DIR")
        .output()
        .expect("victim");
    assert_eq!(String::from_utf8_lossy(&v.stdout), "victim done 4501500\n");
    l.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let counts = lines.next().unwrap().unwrap();
    let kinds: Vec<String> = lines.map(Result::unwrap).collect();
    assert!(l.wait().unwrap().success());
    assert_eq!(counts, "counts[1]=3000 hash[1]=3000");
    assert_eq!(
        kinds,
        ["counts: anon_inode:bpf-map", "hash: anon_inode:bpf-map"],
        "the shared maps must live in the kernel"
    );
    let _ = std::fs::remove_dir_all(&out);
}
