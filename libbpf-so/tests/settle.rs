//! Attach and detach act on targets that are already running before they
//! return, as the kernel's do: a target that calls the function right
//! after `bpf_program__attach_uprobe_opts` returns is counted, and one
//! that calls it right after `bpf_link__destroy` returns is not.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{libbpf_so, profile_dir, run};

#[test]
fn running_targets_are_hooked_before_attach_returns() {
    let so = libbpf_so();
    let agent = profile_dir().join("libuserbpf_agent.so");
    assert!(
        agent.exists(),
        "build the agent: cargo build --release -p userbpf-agent"
    );
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = manifest.join("tests/settle");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("libbpf-so-settle");
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
        .arg(src.join("target.c")));
    let driver = dir.join("driver");
    run(Command::new("gcc")
        .args(["-O2", "-I"])
        .arg(manifest.join("../include"))
        .arg(src.join("driver.c"))
        .arg("-L")
        .arg(so.parent().unwrap())
        .args(["-lbpf", "-o"])
        .arg(&driver));
    let ns = dir.join(format!("ns-{}", std::process::id()));
    std::fs::create_dir_all(&ns).unwrap();

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

    let mut d = Command::new(&driver)
        .arg(&obj)
        .arg(&target)
        .env("LD_LIBRARY_PATH", profile_dir())
        .env("USERBPF_DIR", &ns)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut d_in = d.stdin.take().unwrap();
    let mut d_out = BufReader::new(d.stdout.take().unwrap()).lines();
    let mut d_line = || d_out.next().map(|l| l.unwrap()).unwrap_or_default();

    assert_eq!(d_line(), "attached");
    // No waiting: attach returned, so the target is hooked.
    writeln!(t_in, "go").unwrap();
    assert_eq!(t_out.next().unwrap().unwrap(), "done 1045");
    writeln!(d_in).unwrap();
    assert_eq!(d_line(), "calls 10");
    writeln!(d_in).unwrap();
    assert_eq!(d_line(), "calls 10");
    assert_eq!(d_line(), "destroyed");
    // No waiting either: destroy returned, so the hook is gone.
    writeln!(t_in, "go").unwrap();
    assert_eq!(t_out.next().unwrap().unwrap(), "done 2090");
    writeln!(d_in).unwrap();
    assert_eq!(d_line(), "calls 10");
    drop(d_in);
    drop(t_in);
    assert!(d.wait().unwrap().success());
    assert!(t.wait().unwrap().success());
    let _ = std::fs::remove_dir_all(&ns);
}
