//! The `bpf.h` fd wrappers from C (`tests/bpf_api.c`): every map type of
//! the userspace backend, batches, object info, program load and test runs,
//! ids, probes, pins (also from a forked process), and the errors of each.
//!
//! The program is built against the system headers and libbpf (libbpf-dev
//! 1.1.2) and run twice:
//! - with `LD_LIBRARY_PATH` at ours, in a fresh namespace directory;
//! - as root, with the system libbpf on the kernel, in a private mount
//!   namespace with a bpffs at `/sys/fs/bpf` (for the pins).
//!
//! Lines starting with `#` are not comparable (see the C source); all other
//! lines must be equal, except the known gaps of the runtime's map types
//! listed in [`KNOWN_RUNTIME_GAPS`], which are reported, not failed.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{libbpf_so, run};

/// Lines where the runtime's map types still differ from Linux 6.18:
/// `(line prefix, why)`.
const KNOWN_RUNTIME_GAPS: &[(&str, &str)] = &[
    (
        "create type=7 name=s k=4 v=32 max=4 flags=0x20",
        "STACK_TRACE with BPF_F_STACK_BUILD_ID is refused (EOPNOTSUPP) by runtime/src/maps/stack_trace.rs",
    ),
    (
        "bpf_map_lookup_and_delete_elem(fd, &k, buf)",
        "STACK_TRACE has no lookup_and_delete in runtime/src/maps/stack_trace.rs (the kernel has)",
    ),
];

fn out_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("libbpf-so-bpf-api");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn have(tool: &str, arg: &str) -> bool {
    Command::new(tool)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn build() -> PathBuf {
    let dir = out_dir();
    let exe = dir.join("bpf_api");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bpf_api.c");
    run(Command::new("cc")
        .args(["-Wall", "-Werror", "-O1", "-Wl,-z,now", "-o"])
        .arg(&exe)
        .arg(&src)
        .args(["-lbpf", "-ldl"]));
    exe
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn comparable(s: &str) -> Vec<&str> {
    s.lines().filter(|l| !l.starts_with('#')).collect()
}

fn run_ours(exe: &Path) -> String {
    let so = libbpf_so();
    let ns = out_dir().join("namespace");
    let _ = std::fs::remove_dir_all(&ns);
    let out = Command::new(exe)
        .env("LD_LIBRARY_PATH", so.parent().unwrap())
        .env("USERBPF_DIR", &ns)
        .env_remove("USERBPF_NAMESPACE")
        .env_remove("LIBBPF_LOG_LEVEL")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "ours failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.ends_with("done\n"), "{stdout}\n{stderr}");
    assert!(!stdout.contains("ERRNO MISMATCH"), "{stdout}");
    stdout
}

/// The same program on the system libbpf and the kernel, `None` when that
/// cannot run here (not root, no unshare or no bpffs).
fn run_kernel(exe: &Path) -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || !have("unshare", "--version") {
        eprintln!("kernel comparison skipped: needs root and unshare");
        return None;
    }
    let script = format!("mount -t bpf bpf /sys/fs/bpf && exec {}", exe.display());
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .env_remove("LD_LIBRARY_PATH")
        .env_remove("LIBBPF_LOG_LEVEL")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    if !out.status.success() || !stdout.ends_with("done\n") {
        eprintln!(
            "kernel comparison skipped: the kernel run failed ({}):\n{stderr}",
            out.status
        );
        return None;
    }
    Some(stdout)
}

#[test]
fn bpf_h_wrappers_match_the_kernel() {
    if !have("cc", "--version") || !Path::new("/usr/include/bpf/bpf.h").exists() {
        eprintln!("skipped: needs cc and libbpf-dev");
        return;
    }
    let exe = build();
    let ours = run_ours(&exe);
    std::fs::write(out_dir().join("ours.out"), &ours).unwrap();

    // What only user space does (the kernel cannot test-run kprobes).
    for expected in [
        "# retval 1234 ctx_size_out 168 out[10] 1234",
        "# bpf_prog_test_run_opts(k, &t) = -28",
        "child: map 1 lookup 0 value 11 same id 1 by id 1 prog 1 run 0 retval 77",
        "retval 12",
        "counter 8",
        "glob 0 2",
        "retval 42 ctx 21 1",
        "log: processed 2 insns (limit 1000000)",
    ] {
        assert!(ours.contains(expected), "missing {expected:?} in:\n{ours}");
    }

    let Some(kernel) = run_kernel(&exe) else {
        return;
    };
    std::fs::write(out_dir().join("kernel.out"), &kernel).unwrap();
    let (a, b) = (comparable(&ours), comparable(&kernel));
    assert_eq!(
        a.len(),
        b.len(),
        "different number of lines:\nours:\n{ours}\nkernel:\n{kernel}"
    );
    let mut failures = Vec::new();
    for (o, k) in a.iter().zip(&b) {
        if o == k {
            continue;
        }
        match KNOWN_RUNTIME_GAPS
            .iter()
            .find(|(prefix, _)| k.starts_with(prefix))
        {
            Some((_, why)) => eprintln!("known runtime gap: kernel `{k}`, ours `{o}`: {why}"),
            None => failures.push(format!("kernel: {k}\nours:   {o}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} lines differ (full outputs in {}):\n{}",
        failures.len(),
        out_dir().display(),
        failures.join("\n")
    );
    println!(
        "{} comparable lines equal to libbpf 1.1.2 on the kernel ({} '#' lines not compared)",
        a.len(),
        ours.lines().count() - a.len()
    );
}
