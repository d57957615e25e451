//! `user_ring_buffer__*` from C (`tests/user_ringbuf.c`) against the built
//! `libbpf.so.1`, with the drain program of `tests/user_ringbuf.bpf.c`
//! (built with clang-16) run through `bpf_prog_test_run_opts`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{libbpf_so, run};

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn out_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("userbpf-user-ringbuf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn c_producer_bpf_drain() {
    if !have("cc") || !have("clang-16") {
        eprintln!("skipped: needs cc and clang-16");
        return;
    }
    let so = libbpf_so();
    let profile = so.parent().unwrap();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = out_dir();
    let exe = dir.join("user_ringbuf");
    run(Command::new("cc")
        .args(["-Wall", "-Werror", "-O1", "-pthread", "-I"])
        .arg(manifest.join("../include"))
        .arg("-o")
        .arg(&exe)
        .arg(manifest.join("tests/user_ringbuf.c"))
        .arg("-L")
        .arg(profile)
        .arg("-lbpf")
        .arg(format!("-Wl,-rpath,{}", profile.display())));
    let obj = dir.join("user_ringbuf.bpf.o");
    run(Command::new("clang-16")
        .args(["-g", "-O2", "-target", "bpf", "-c"])
        .arg(manifest.join("tests/user_ringbuf.bpf.c"))
        .arg("-o")
        .arg(&obj));
    for engine in ["interp", "jit"] {
        let out = Command::new(&exe)
            .arg(&obj)
            .env("USERBPF_ENGINE", engine)
            .env("USERBPF_DIR", dir.join("namespace"))
            .env_remove("USERBPF_NAMESPACE")
            .env("LD_LIBRARY_PATH", profile)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stdout.ends_with("done\n"),
            "{engine}: {}\n{stdout}\n{stderr}",
            out.status
        );
        print!("{engine}:\n{stdout}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
