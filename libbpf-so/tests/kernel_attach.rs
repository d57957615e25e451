//! Kernel programs attached through `libbpf.so` (tests/kernel_attach/):
//! a tracepoint, a raw tracepoint, tp_btf, a perf event (software CPU
//! clock), iterators (with `bpf_link__update_program`), kernel link pins
//! in the real bpffs, the bpf.h attach calls, kprobes (this kernel has
//! none: libbpf's legacy path and its errors), XDP on the loopback device
//! (netlink and a link) and TC there (a clsact hook and a cls_bpf filter
//! by netlink, a tcx link). The same C driver runs on the real libbpf 1.7
//! and the outputs (messages and errno included) must be identical; ours
//! must also show the counters moving and stopping. Then the refusals:
//! `USERBPF_BACKEND=user`, and an unprivileged process in `auto` mode.
//!
//! Needs root (the kernel's BPF); skipped with a message otherwise.

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
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("libbpf-so-kernel-attach");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// tracefs at /sys/kernel/tracing and bpffs at /sys/fs/bpf, mounted if
/// they are not.
fn mounts() {
    for (dir, fstype) in [("/sys/kernel/tracing", "tracefs"), ("/sys/fs/bpf", "bpf")] {
        let mounted = Command::new("mountpoint")
            .args(["-q", dir])
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            let _ = Command::new("mount")
                .args(["-t", fstype, fstype, dir])
                .status();
        }
    }
}

/// The BPF object, built once.
fn object() -> PathBuf {
    static OBJ: OnceLock<PathBuf> = OnceLock::new();
    OBJ.get_or_init(|| {
        let obj = work_dir().join("progs.bpf.o");
        run(Command::new("clang-16")
            .args(["-O2", "-g", "-target", "bpf", "-D__TARGET_ARCH_x86"])
            .args(["-I/usr/include/x86_64-linux-gnu", "-c"])
            .arg(manifest().join("tests/kernel_attach/progs.bpf.c"))
            .arg("-o")
            .arg(&obj));
        // Readable by the unprivileged run.
        let _ = Command::new("chmod").arg("0644").arg(&obj).status();
        obj
    })
    .clone()
}

/// The driver linked against the libbpf.so in `libdir`.
fn driver(libdir: &Path, name: &str) -> PathBuf {
    let out = work_dir().join(name);
    run(Command::new("gcc")
        .args(["-O1", "-Wall", "-Werror", "-I"])
        .arg(manifest().join("../include"))
        .arg(manifest().join("tests/kernel_attach/driver.c"))
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

/// Runs the driver; the pin directory's name is replaced by `PIN`.
fn run_driver(exe: &Path, libdir: &Path, args: &[&str], env: &[(&str, &str)], pin: &str) -> String {
    let ns = work_dir().join(format!("ns-{}", std::process::id()));
    std::fs::create_dir_all(&ns).unwrap();
    let _ = Command::new("chmod").arg("0777").arg(&ns).status();
    let mut cmd = Command::new(exe);
    cmd.arg(object())
        .args(args)
        .env("LD_LIBRARY_PATH", libdir)
        .env("USERBPF_DIR", &ns)
        .env_remove("USERBPF_BACKEND");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run(&mut cmd);
    if pin.is_empty() {
        out
    } else {
        out.replace(pin, "PIN")
    }
}

fn pin_dir(tag: &str) -> String {
    format!("/sys/fs/bpf/kernel-attach-{}-{tag}", std::process::id())
}

/// Lines the full run must print on userbpf (what the counters show,
/// and the kprobe errors of this kernel).
const EXPECTED: &[&str] = &[
    "load = 0",
    "tp attach = ok",
    "tp counted = yes",
    "tp_opts counted = yes",
    "tp destroy = 0",
    "tp stopped = yes",
    "warn: libbpf: prog 'tp_getppid': failed to create tracepoint 'syscalls/no_such_event' perf event: -ENOENT",
    "tp missing = NULL errno 2",
    "raw_tp counted = yes",
    "raw_tp pin = 0",
    "pin file = yes",
    "raw_tp pin again = -16 errno 16",
    "raw_tp open = ok",
    "raw_tp destroy pinned = 0",
    "raw_tp counting while pinned = yes",
    "raw_tp unpin = 0",
    "pin file after unpin = no",
    "raw_tp stopped = yes",
    "warn: libbpf: specified path /tmp/kernel-attach-not-bpffs/raw is not on BPF FS",
    "tp_btf attach = ok",
    "tp_btf counted = yes",
    "perf attach = ok",
    "perf counted = yes",
    "perf fd closed = yes",
    "warn: libbpf: prog 'on_cpu_clock': user context value is not supported",
    "perf ioctl link fd is pfd = yes",
    "perf ioctl counted = yes",
    "perf ioctl fd closed = yes",
    "warn: libbpf: prog 'kp_nanosleep': failed to create kprobe 'do_nanosleep+0x0' perf event: -ENOENT",
    "kprobe auto attach = NULL errno 2",
    "kprobe.multi auto attach = NULL errno 95",
    "kprobe perf mode = NULL errno 95",
    "iter_a counted = yes",
    "iter update_program = 0",
    "iter_b counted = yes",
    "raw_tracepoint_open counted = yes",
    "task_fd_query = 0",
    "link_create counted = yes",
    "enable_stats = yes",
    "prog_bind_map = 0",
    "xdp_attach = 0",
    "xdp_query_id matches = yes",
    "warn: libbpf: Kernel error message: XDP program already attached",
    "xdp_attach noexist = -16 errno 16",
    "xdp_detach = 0",
    "xdp id after detach = 0",
    "xdp link attach = ok",
    "xdp link id matches = yes",
    "warn: libbpf: Kernel error message: Can't replace active BPF XDP link",
    "xdp id after link = 0",
    "tc_attach = 0",
    "warn: libbpf: Kernel error message: Filter already exists",
    "tc_query = 0",
    "tc_detach = 0",
    "tc_hook_destroy clsact = 0",
    "tcx attach = ok",
    "tcx destroy = 0",
    "done",
];

fn check_expected(out: &str, what: &str) {
    let lines: Vec<&str> = out.lines().collect();
    for want in EXPECTED {
        assert!(
            lines.contains(want),
            "{what}: missing line {want:?} in:\n{out}"
        );
    }
}

#[test]
fn kernel_attach_matches_real_libbpf() {
    if !is_root() {
        println!("skipped: not root; attaching kernel programs needs the kernel's BPF");
        return;
    }
    mounts();
    let ours = profile_dir();
    let drv = driver(&ours, "driver-ours");
    // Only `kernel` mode: in `auto` mode the syscall tracepoint and
    // raw_tp sys_enter programs of this object run in user space
    // (syscall links; tests/syscall_attach.rs).
    let mode = "kernel";
    let pin = pin_dir(mode);
    let out = run_driver(
        &drv,
        &ours,
        &["full", &pin],
        &[("USERBPF_BACKEND", "kernel")],
        &pin,
    );
    check_expected(&out, &format!("userbpf ({mode} mode)"));
    let _ = std::fs::remove_dir(&pin);
    match real_libbpf_dir() {
        Ok(real) => {
            let drv = driver(&real, "driver-real");
            let pin = pin_dir("real");
            let expected = run_driver(&drv, &real, &["full", &pin], &[], &pin);
            let _ = std::fs::remove_dir(&pin);
            assert_eq!(
                out, expected,
                "userbpf ({mode} mode) differs from the real libbpf 1.7:\n--- ours\n{out}\n--- real\n{expected}"
            );
        }
        Err(why) => println!("not compared with the real libbpf: {why}"),
    }
}

/// The refusals a user-space program gets from the kernel attach calls.
fn refusal_lines(prefix: &str, reason: &str, errno: i32) -> Vec<String> {
    let mut lines = vec!["load = 0".to_string()];
    // tp/syscalls/* and raw_tp/sys_enter are not refused: user-space
    // programs attach there with syscall links.
    for (prog, what, label) in [
        ("btf_sched_switch", "tracing", "tp_btf attach"),
        ("on_cpu_clock", "perf event", "perf attach"),
        ("kp_nanosleep", "kprobe", "kprobe attach"),
        ("iter_a", "iterator", "iter attach"),
    ] {
        lines.push(format!(
            "{prefix}prog '{prog}': {what} programs run in the kernel, but {reason}"
        ));
        lines.push(format!("{label} = NULL errno {errno}"));
    }
    lines
}

#[test]
fn user_mode_refuses_kernel_attach() {
    let ours = profile_dir();
    let drv = driver(&ours, "driver-user");
    let out = run_driver(
        &drv,
        &ours,
        &["refused"],
        &[("USERBPF_BACKEND", "user")],
        "",
    );
    let reason = "USERBPF_BACKEND=user keeps every program in user space";
    let lines: Vec<&str> = out.lines().collect();
    // Syscall sections attach in user space (records, no refusal).
    assert!(lines.contains(&"tp attach = ok"), "{out}");
    assert!(lines.contains(&"raw_tp attach = ok"), "{out}");
    for want in refusal_lines("warn: libbpf: ", reason, libc::EOPNOTSUPP) {
        assert!(
            lines.contains(&want.as_str()),
            "missing {want:?} in:\n{out}"
        );
    }
    assert!(
        out.contains(&format!(
            "the kernel cannot attach it: {reason}\nlink_create = -{0} errno {0}\n",
            libc::EOPNOTSUPP
        )),
        "{out}"
    );
}

#[test]
fn unprivileged_process_gets_a_clear_error() {
    if !is_root() {
        println!("skipped: not root (the test drops to uid 65534 itself)");
        return;
    }
    let ours = profile_dir();
    let drv = driver(&ours, "driver-nobody");
    // The driver and libbpf.so must be reachable by uid 65534.
    let reachable = [drv.as_path(), ours.as_path(), object().as_path()]
        .iter()
        .all(|p| {
            p.ancestors().skip(1).all(|a| {
                std::fs::metadata(a).is_ok_and(|m| {
                    use std::os::unix::fs::PermissionsExt;
                    m.permissions().mode() & 0o001 != 0
                })
            })
        });
    if !reachable {
        println!("skipped: the build directory is not reachable by uid 65534");
        return;
    }
    let out = run_driver(&drv, &ours, &["refused", "nobody"], &[], "");
    let reason = "this process may not load kernel BPF programs (run as root, or with CAP_BPF and CAP_PERFMON)";
    let lines: Vec<&str> = out.lines().collect();
    for want in refusal_lines("warn: libbpf: ", reason, libc::EPERM) {
        assert!(
            lines.contains(&want.as_str()),
            "missing {want:?} in:\n{out}"
        );
    }
    assert!(out.ends_with("done\n"), "{out}");
}
