//! struct_ops through `libbpf.so` (tests/struct_ops/): a minimal TCP
//! congestion control (`tcp_congestion_ops`, compiled against a
//! `vmlinux.h` that bpftool dumps from the running kernel's BTF) as a
//! `SEC(".struct_ops")` map and a `SEC(".struct_ops.link")` map, loaded in
//! `kernel` and `auto` modes, attached with `bpf_map__attach_struct_ops`:
//! the congestion control is listed in
//! `/proc/sys/net/ipv4/tcp_available_congestion_control` while attached
//! and not after `bpf_link__destroy`, and a TCP connection over lo that
//! selects it runs its `cong_avoid` (a counter in `.bss` moves). Also the
//! unreferenced struct_ops program refusal,
//! `bpf_program__assoc_struct_ops`, and maps left out by autocreate (their
//! programs are not loaded). The same C driver runs on the real
//! libbpf 1.7 and the outputs (messages and errno included) must be
//! identical. Then `USERBPF_BACKEND=user`, where struct_ops cannot load
//! (the rest of the object can, when no struct_ops map is created).
//!
//! Needs root (the kernel's BPF) and bpftool; skipped with a message
//! otherwise.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::{profile_dir, run};

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn work_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("libbpf-so-struct-ops");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `vmlinux.h` of the running kernel, or why not.
fn vmlinux_h() -> Result<PathBuf, String> {
    let out = Command::new("bpftool")
        .args([
            "btf",
            "dump",
            "file",
            "/sys/kernel/btf/vmlinux",
            "format",
            "c",
        ])
        .output()
        .map_err(|e| format!("bpftool: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "bpftool btf dump failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let path = work_dir().join("vmlinux.h");
    std::fs::write(&path, &out.stdout).unwrap();
    Ok(path)
}

/// The BPF object, built once.
fn object() -> Result<PathBuf, String> {
    static OBJ: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    OBJ.get_or_init(|| {
        vmlinux_h()?;
        let obj = work_dir().join("cc.bpf.o");
        run(Command::new("clang-16")
            .args(["-O2", "-g", "-target", "bpf", "-D__TARGET_ARCH_x86"])
            .arg("-I")
            .arg(work_dir())
            .args(["-I/usr/include/x86_64-linux-gnu", "-c"])
            .arg(manifest().join("tests/struct_ops/cc.bpf.c"))
            .arg("-o")
            .arg(&obj));
        Ok(obj)
    })
    .clone()
}

/// The driver linked against the libbpf.so in `libdir`.
fn driver(libdir: &Path, name: &str) -> PathBuf {
    let out = work_dir().join(name);
    run(Command::new("gcc")
        .args(["-O1", "-Wall", "-Werror", "-I"])
        .arg(manifest().join("../include"))
        .arg(manifest().join("tests/struct_ops/driver.c"))
        .arg("-L")
        .arg(libdir)
        .args(["-lbpf", "-o"])
        .arg(&out));
    out
}

/// The real libbpf 1.7 as a shared library (compat-tests' script), or why
/// not.
fn real_libbpf_dir() -> Result<PathBuf, String> {
    let script = manifest().join("../compat-tests/scripts/build-real-libbpf.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .map_err(|e| format!("{}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "build-real-libbpf.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .map(PathBuf::from)
        .ok_or_else(|| "build-real-libbpf.sh printed no directory".into())
}

fn run_driver(exe: &Path, obj: &Path, libdir: &Path, mode: &str, env: &[(&str, &str)]) -> String {
    let ns = work_dir().join(format!("ns-{}", std::process::id()));
    std::fs::create_dir_all(&ns).unwrap();
    let mut cmd = Command::new(exe);
    cmd.arg(obj)
        .arg(mode)
        .env("LD_LIBRARY_PATH", libdir)
        .env("USERBPF_DIR", &ns)
        .env_remove("USERBPF_BACKEND");
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(&mut cmd)
}

/// The driver's modes compared with the real libbpf.
const MODES: [&str; 4] = ["full", "unreferenced", "assoc", "noautocreate"];

/// Lines each driver mode must print on userbpf.
fn expected(mode: &str) -> &'static [&'static str] {
    match mode {
        "full" => &[
            "maps found = yes",
            "ucc type = 26, key 4, max 1, flags 0",
            "ucc_link flags = 0x2000",
            "ucc_ssthresh type = 27",
            "attach before load = NULL errno 22",
            "load = 0",
            "warn: libbpf: map 'cc.bss': can't attach non-struct_ops map",
            "attach non-struct_ops = NULL errno 22",
            "listed before attach = no",
            "attach ucc = ok",
            "listed while attached = yes",
            "link fd valid = yes",
            "attach ucc again = NULL errno 16",
            "tcp with userbpf_cc = 0",
            "cong_avoid counted = yes",
            "destroy ucc = 0",
            "listed after destroy = no",
            "tcp with userbpf_cc after destroy = -2",
            "attach ucc_link = ok",
            "link listed while attached = yes",
            "tcp with userbpf_cc_link = 0",
            "cong_avoid counted via link = yes",
            "destroy ucc_link = 0",
            "link listed after destroy = no",
            "attach ucc_link again = ok",
            "link listed again = yes",
            "destroy ucc_link again = 0",
            "link listed after second destroy = no",
            "done",
        ],
        "unreferenced" => &[
            "warn: libbpf: prog 'ucc_unused': SEC(\"struct_ops\") program isn't referenced anywhere, did you forget to use it?",
            "warn: libbpf: prog 'ucc_unused': failed to load: -EINVAL",
            "load with unreferenced = -22",
        ],
        "assoc" => &[
            "load = 0",
            "warn: libbpf: prog 'ucc_ssthresh': can't associate struct_ops program",
            "assoc struct_ops prog = -22 errno 22",
            "warn: libbpf: map 'cc.bss': can't associate non-struct_ops map",
            "assoc non-struct_ops map = -22 errno 22",
            "warn: libbpf: prog 'ucc_unused': can't associate BPF program without FD (was it loaded?)",
            "assoc unloaded prog = -22 errno 22",
            "done",
        ],
        "noautocreate" => &[
            "load without struct_ops maps = 0",
            "ucc_ssthresh autoload = 0, fd none",
            "attach uncreated ucc = NULL errno 22",
            "done",
        ],
        _ => &[],
    }
}

fn check_expected(out: &str, mode: &str, what: &str) {
    let lines: Vec<&str> = out.lines().collect();
    for want in expected(mode) {
        assert!(
            lines.contains(want),
            "{what}: missing line {want:?} in:\n{out}"
        );
    }
}

#[test]
fn struct_ops_matches_real_libbpf() {
    if !is_root() {
        println!("skipped: not root; struct_ops needs the kernel's BPF");
        return;
    }
    let obj = match object() {
        Ok(obj) => obj,
        Err(why) => {
            println!("skipped: no vmlinux.h: {why}");
            return;
        }
    };
    let ours = profile_dir();
    let drv = driver(&ours, "driver-ours");
    let mut outputs = Vec::new();
    for (backend, env) in [
        ("kernel", &[("USERBPF_BACKEND", "kernel")][..]),
        ("auto", &[][..]),
    ] {
        for mode in MODES {
            let out = run_driver(&drv, &obj, &ours, mode, env);
            check_expected(&out, mode, &format!("userbpf ({backend} mode, {mode})"));
            outputs.push((backend, mode, out));
        }
    }
    match real_libbpf_dir() {
        Ok(real) => {
            let drv = driver(&real, "driver-real");
            for mode in MODES {
                let expected = run_driver(&drv, &obj, &real, mode, &[]);
                for (backend, m, out) in &outputs {
                    if *m != mode {
                        continue;
                    }
                    assert_eq!(
                        out, &expected,
                        "userbpf ({backend} mode, {mode}) differs from the real libbpf 1.7:\n--- ours\n{out}\n--- real\n{expected}"
                    );
                }
            }
        }
        Err(why) => println!("not compared with the real libbpf: {why}"),
    }
}

/// In user space struct_ops cannot exist: the load fails.
#[test]
fn struct_ops_user_backend_refuses() {
    if !is_root() {
        println!("skipped: not root (the object is built from the kernel's BTF)");
        return;
    }
    let obj = match object() {
        Ok(obj) => obj,
        Err(why) => {
            println!("skipped: no vmlinux.h: {why}");
            return;
        }
    };
    let ours = profile_dir();
    let drv = driver(&ours, "driver-ours-user");
    let out = run_driver(&drv, &obj, &ours, "load", &[("USERBPF_BACKEND", "user")]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.contains(&"maps found = yes"), "{out}");
    assert!(
        lines.iter().any(|l| l.starts_with("load = -")),
        "load must fail in user space:\n{out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("warn: libbpf:") && l.contains("'ucc'")),
        "the failure must name the struct_ops map:\n{out}"
    );
    // Without struct_ops maps to create, the rest loads in user space.
    let out = run_driver(
        &drv,
        &obj,
        &ours,
        "noautocreate",
        &[("USERBPF_BACKEND", "user")],
    );
    check_expected(&out, "noautocreate", "userbpf (user mode, noautocreate)");
}
