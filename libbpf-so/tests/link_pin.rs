//! Link pins through `libbpf.so` from C (tests/link_pin/driver.c, the
//! uprobe object of tests/self_attach): a pinned uprobe link outlives its
//! handle (its registry records stay and a running target's calls are
//! still counted), `bpf_link__open` makes new handles of it (here and in
//! another process), and after `bpf_link__unpin` the last handle's
//! destroy detaches it; plus libbpf's errors.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{libbpf_so, profile_dir, run};
use userbpf_runtime::registry::{self, kind};

/// LINK records the process `pid` publishes in namespace `ns`.
fn link_records(ns: &Path, pid: u32) -> usize {
    registry::scan(ns, false)
        .into_iter()
        .filter(|l| l.pid == pid)
        .flat_map(|l| l.file.records())
        .filter(|r| r.kind == kind::LINK)
        .count()
}

#[test]
fn pinned_uprobe_links_outlive_their_handles() {
    let so = libbpf_so();
    let agent = profile_dir().join("libuserbpf_agent.so");
    assert!(
        agent.exists(),
        "build the agent: cargo build --release -p userbpf-agent"
    );
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("libbpf-so-link-pin");
    std::fs::create_dir_all(&dir).unwrap();
    let obj = dir.join("self.bpf.o");
    run(Command::new("clang-16")
        .args(["-O2", "-g", "-target", "bpf", "-D__TARGET_ARCH_x86"])
        .args(["-I/usr/include/x86_64-linux-gnu", "-c"])
        .arg(manifest.join("tests/self_attach/self.bpf.c"))
        .arg("-o")
        .arg(&obj));
    let target = dir.join("target");
    run(Command::new("gcc")
        .args(["-O2", "-o"])
        .arg(&target)
        .arg(manifest.join("tests/settle/target.c")));
    let driver = dir.join("driver");
    run(Command::new("gcc")
        .args(["-O2", "-Wall", "-Werror", "-I"])
        .arg(manifest.join("../include"))
        .arg(manifest.join("tests/link_pin/driver.c"))
        .arg("-L")
        .arg(so.parent().unwrap())
        .args(["-lbpf", "-o"])
        .arg(&driver));
    let ns = dir.join(format!("ns-{}", std::process::id()));
    std::fs::create_dir_all(&ns).unwrap();
    let pin_dir = format!("/sys/fs/bpf/link-pin-test-{}", std::process::id());
    let pin = format!("{pin_dir}/link");

    let mut t = Command::new(&target)
        .env("LD_PRELOAD", &agent)
        .env("USERBPF_DIR", &ns)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut t_in = t.stdin.take().unwrap();
    let mut t_out = BufReader::new(t.stdout.take().unwrap()).lines();
    assert_eq!(t_out.next().unwrap().unwrap(), "ready");
    let mut target_round = |expected: i32| {
        writeln!(t_in, "go").unwrap();
        assert_eq!(t_out.next().unwrap().unwrap(), format!("done {expected}"));
    };

    let mut d = Command::new(&driver)
        .arg(&obj)
        .arg(&target)
        .arg(&pin_dir)
        .env("LD_LIBRARY_PATH", profile_dir())
        .env("USERBPF_DIR", &ns)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let d_pid = d.id();
    let mut d_in = d.stdin.take().unwrap();
    let mut d_out = BufReader::new(d.stdout.take().unwrap()).lines();
    let mut d_lines = |until: &str| -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let Some(Ok(l)) = d_out.next() else {
                panic!("driver ended early after {out:#?}");
            };
            if l == until {
                return out;
            }
            out.push(l);
        }
    };
    let e = |n: i32| format!("-{n} errno {n}");
    let (einval, enoent) = (libc::EINVAL, libc::ENOENT);

    assert_eq!(
        d_lines("pinned"),
        [
            "pin_path before = 0".to_string(),
            format!("unpin unpinned = {}", e(einval)),
            format!("open missing = NULL errno {enoent}"),
            format!("open null = NULL errno {}", libc::EFAULT),
            format!("pin outside bpffs = {}", e(einval)),
            "pin path after failure = 0".into(),
            // Perf-event links have no update_prog in the kernel.
            format!("update_program = {}", e(einval)),
            "pin = 0".into(),
            "pin_path = 0".into(),
            format!("pin again = {}", e(libc::EBUSY)),
            format!("pin taken path = {}", e(libc::EEXIST)),
            "pin second link = 0".into(),
            "unpin second link = 0".into(),
            "pin_path after unpin = 0".into(),
            "destroy second link = 0".into(),
            "map pin = 0".into(),
            "open map pin = ok".into(),
            "destroy map link = 0".into(),
            "destroy pinned = 0".into(),
        ]
    );
    // The handle is gone, the pinned link is not.
    assert_eq!(link_records(&ns, d_pid), 1);
    target_round(1045);
    // Another process opens the pin: a handle with its own fd, whose
    // destroy leaves the link alone.
    let other = run(Command::new(&driver)
        .arg("open")
        .arg(&pin)
        .env("LD_LIBRARY_PATH", profile_dir())
        .env("USERBPF_DIR", &ns));
    assert_eq!(
        other.lines().collect::<Vec<_>>(),
        [format!("open ok fd>=3 1 path {pin}"), "destroy = 0".into()]
    );
    assert_eq!(link_records(&ns, d_pid), 1);

    writeln!(d_in).unwrap();
    assert_eq!(
        d_lines("unpinned"),
        [
            "calls 10".to_string(),
            "open = ok".into(),
            "opened fd>=3 = 1".into(),
            "opened pin_path = 0".into(),
            format!("opened update_program = {}", e(einval)),
            "unpin = 0".into(),
            "opened pin_path after unpin = 0".into(),
            format!("unpin again = {}", e(einval)),
            format!("open unpinned = NULL errno {enoent}"),
        ]
    );
    // Unpinned, but the opened handle still holds the link.
    assert_eq!(link_records(&ns, d_pid), 1);
    target_round(2090);

    writeln!(d_in).unwrap();
    assert_eq!(
        d_lines("gone"),
        ["calls 20".to_string(), "destroy opened = 0".into()]
    );
    assert_eq!(link_records(&ns, d_pid), 0);
    // Destroy returned: the target's hook is gone too.
    target_round(3135);
    writeln!(d_in).unwrap();
    assert_eq!(d_lines("calls 20"), Vec::<String>::new());
    drop(d_in);
    let out = d.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(t_in);
    assert!(t.wait().unwrap().success());
    let _ = std::fs::remove_dir_all(&ns);
}
