//! Builds `src/bpf/app.bpf.c` with clang and generates its skeleton
//! (`$OUT_DIR/app.skel.rs`) with libbpf-cargo's `SkeletonBuilder`.
//!
//! `vmlinux.h` is generated here from the running kernel's BTF with
//! bpftool (never committed); the BPF headers (`<bpf/bpf_helpers.h>`) are
//! Debian's, from libbpf-dev in /usr/include.
//!
//! Overrides: `CLANG` (default `clang-16`), `BPFTOOL` (default `bpftool`,
//! then `/usr/sbin/bpftool`), `VMLINUX_BTF` (default
//! `/sys/kernel/btf/vmlinux`).

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use libbpf_cargo::SkeletonBuilder;

const SRC: &str = "src/bpf/app.bpf.c";

fn bpftool() -> PathBuf {
    if let Some(p) = env::var_os("BPFTOOL") {
        return p.into();
    }
    for dir in env::split_paths(&env::var_os("PATH").unwrap_or_default()) {
        let p = dir.join("bpftool");
        if p.is_file() {
            return p;
        }
    }
    PathBuf::from("/usr/sbin/bpftool")
}

fn write_vmlinux_h(out_dir: &Path) {
    let btf = env::var("VMLINUX_BTF").unwrap_or_else(|_| "/sys/kernel/btf/vmlinux".into());
    let tool = bpftool();
    let output = Command::new(&tool)
        .args(["btf", "dump", "file", &btf, "format", "c"])
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", tool.display()));
    assert!(
        output.status.success(),
        "{} btf dump file {btf} format c failed: {}",
        tool.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    fs::write(out_dir.join("vmlinux.h"), &output.stdout).expect("writing vmlinux.h");
}

fn main() {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    write_vmlinux_h(&out_dir);

    let clang = env::var_os("CLANG").unwrap_or_else(|| "clang-16".into());
    SkeletonBuilder::new()
        .source(SRC)
        .clang(&clang)
        .clang_args([
            std::ffi::OsString::from("-I"),
            out_dir.clone().into_os_string(),
            "-Wall".into(),
            "-Werror".into(),
        ])
        .build_and_generate(out_dir.join("app.skel.rs"))
        .expect("building the BPF object and its skeleton");

    println!("cargo:rerun-if-changed={SRC}");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CLANG");
    println!("cargo:rerun-if-env-changed=BPFTOOL");
    println!("cargo:rerun-if-env-changed=VMLINUX_BTF");
}
