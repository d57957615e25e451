//! Syscall sections end to end (tests/syscall_e2e/): a C loader linked
//! against our libbpf.so.1 loads progs.bpf.c in `auto` mode and attaches
//! a few of its programs; a C target started with `userbpf start` (the
//! agent preloaded) makes known system calls on command; the programs run
//! inside the target, and what they saw is read back from the .bss the
//! loader maps. Exact values throughout:
//!
//! - `ksyscall/getppid` + `kretsyscall/getppid`: counts and results; a
//!   ksyscall `bpf_override_return` skips the call (getppid returns 4242;
//!   an overridden `unlink` returns 0 and the file is still there), a
//!   kretsyscall one replaces the result (ppid + 1000): our extension.
//!   `BPF_KSYSCALL` arguments of `unlink` and `openat` (dfd, filename,
//!   flags, mode), which it reads from the syscall's `pt_regs` with CO-RE
//!   (`bpf_probe_read_kernel`).
//! - `tp/syscalls/sys_enter_openat` with `bpf_probe_write_user` rewriting
//!   the path in the target's buffer before the call: the target opens
//!   `bbb` (its content), or fails (ENOENT) when there is none.
//! - `raw_tp/sys_enter`, `raw_tp/sys_exit` (`{struct pt_regs *, id|ret}`,
//!   registers read with CO-RE), `tp/raw_syscalls/sys_enter`,
//!   `tp/syscalls/sys_{enter,exit}_getppid`: counts and arguments.
//! - Syscall User Dispatch: a getppid from an anonymous executable page is
//!   seen (and overridden) with `USERBPF_SYSCALL_DISPATCH=on`, not without.
//!
//! When the test runs as root, loader and target run as nobody (65534),
//! so nothing goes to the kernel. Each test has its own namespace.
//!
//! Needs `cargo build -p userbpf-agent -p userbpf-libbpf-so -p
//! userbpf-cli` (same profile): `userbpf` and `libuserbpf_agent.so` next to
//! `libbpf.so`.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::Duration;

use common::{libbpf_so, profile_dir, run};

/// Longest wait for one reply line.
const TIMEOUT: Duration = Duration::from_secs(60);
const NOBODY: u32 = 65534;
/// What the ksyscall program makes getppid return in mode 1.
const OVERRIDE: i64 = 4242;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

struct Built {
    loader: PathBuf,
    target: PathBuf,
    object: PathBuf,
    userbpf: PathBuf,
}

/// Builds `out` with `cmd` (given a temporary path) and renames it into
/// place, so a concurrent run of this test never sees a partial file.
fn build_into(out: &Path, cmd: impl FnOnce(&Path) -> Command) {
    let tmp = out.with_extension(format!("tmp{}", std::process::id()));
    run(&mut cmd(&tmp));
    std::fs::rename(&tmp, out).unwrap();
}

/// Loader, target and object, built once per process.
fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("libbpf-so-syscall-e2e");
        std::fs::create_dir_all(&dir).unwrap();
        // Reachable by nobody whatever the umask.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let src = manifest().join("tests/syscall_e2e");
        let profile = libbpf_so().parent().unwrap().to_path_buf();
        let loader = dir.join("loader");
        build_into(&loader, |out| {
            let mut c = Command::new("cc");
            c.args(["-Wall", "-Werror", "-O1", "-I"])
                .arg(manifest().join("../include"))
                .arg("-I")
                .arg(&src)
                .arg("-o")
                .arg(out)
                .arg(src.join("loader.c"))
                .arg("-L")
                .arg(&profile)
                .arg("-lbpf")
                .arg(format!("-Wl,-rpath,{}", profile.display()));
            c
        });
        let target = dir.join("syscall_e2e_target");
        build_into(&target, |out| {
            let mut c = Command::new("cc");
            c.args(["-Wall", "-Werror", "-O1", "-o"])
                .arg(out)
                .arg(src.join("target.c"));
            c
        });
        let object = dir.join("progs.bpf.o");
        build_into(&object, |out| {
            let mut c = Command::new("clang-16");
            c.args(["-O2", "-g", "-target", "bpf", "-D__TARGET_ARCH_x86"])
                .args(["-Wall", "-Werror", "-I/usr/include/x86_64-linux-gnu", "-c"])
                .arg(src.join("progs.bpf.c"))
                .arg("-o")
                .arg(out);
            c
        });
        std::fs::set_permissions(&object, std::fs::Permissions::from_mode(0o644)).unwrap();
        let userbpf = profile_dir().join("userbpf");
        for f in [&userbpf, &profile_dir().join("libuserbpf_agent.so")] {
            assert!(
                f.exists(),
                "{} is missing: cargo build -p userbpf-agent -p userbpf-libbpf-so -p userbpf-cli",
                f.display()
            );
        }
        Built {
            loader,
            target,
            object,
            userbpf,
        }
    })
}

/// A child that answers stdin commands with stdout lines.
struct Proc {
    name: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Proc {
    /// Starts `cmd` with a clean userbpf environment plus `env`.
    fn spawn(name: &'static str, mut cmd: Command, env: &[(&str, &str)]) -> Proc {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("LD_PRELOAD")
            .env_remove("LD_LIBRARY_PATH")
            .env_remove("USERBPF_BACKEND")
            .env_remove("USERBPF_NAMESPACE")
            .env_remove("USERBPF_DIR")
            .env_remove("USERBPF_SYSCALL_DISPATCH")
            .envs(env.iter().copied());
        if is_root() {
            cmd.uid(NOBODY).gid(NOBODY);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: {cmd:?}: {e}"));
        let out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut err, &mut s);
            s
        });
        Proc {
            name,
            stdin: child.stdin.take(),
            child,
            lines,
            stderr: Some(stderr),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process and returns its stderr (for a failure message).
    fn abort(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }

    /// The next stdout line; it must start with `prefix`.
    fn expect(&mut self, prefix: &str) -> String {
        match self.lines.recv_timeout(TIMEOUT) {
            Ok(line) if line.starts_with(prefix) => line,
            Ok(line) => {
                let err = self.abort();
                panic!(
                    "{}: expected `{prefix}...`, got `{line}`\nstderr:\n{err}",
                    self.name
                )
            }
            Err(e) => {
                let err = self.abort();
                panic!("{}: no `{prefix}...` ({e:?})\nstderr:\n{err}", self.name)
            }
        }
    }

    /// Sends one command line and returns the reply (starting with
    /// `prefix`).
    fn ask(&mut self, command: &str, prefix: &str) -> String {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{command}").unwrap_or_else(|e| panic!("{}: {e}", self.name));
        stdin.flush().unwrap();
        self.expect(prefix)
    }

    /// Closes stdin and waits for a clean exit.
    fn finish(&mut self) {
        drop(self.stdin.take());
        let status = self.child.wait().unwrap();
        let err = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        assert!(status.success(), "{}: {status}\nstderr:\n{err}", self.name);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `key=value` fields of a reply line (after its first word).
fn fields(line: &str) -> HashMap<String, String> {
    line.split_whitespace()
        .skip(1)
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// One test's namespace, scratch directory and loader.
struct Session {
    namespace: String,
    dir: PathBuf,
    loader: Proc,
}

impl Session {
    /// A loader attaching `progs` in namespace `syscall-e2e-<tag>-<pid>`.
    fn new(tag: &str, progs: &[&str]) -> Session {
        let b = built();
        let namespace = format!("syscall-e2e-{tag}-{}", std::process::id());
        let dir = std::env::temp_dir().join(format!("userbpf-{namespace}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut cmd = Command::new(&b.loader);
        cmd.arg(&b.object).args(progs);
        let mut loader = Proc::spawn("loader", cmd, &[("USERBPF_NAMESPACE", &namespace)]);
        loader.expect(&format!("attached {}", progs.len()));
        Session {
            namespace,
            dir,
            loader,
        }
    }

    /// A file in the scratch directory, readable by anyone.
    fn file(&self, name: &str, content: &str) -> String {
        let path = self.dir.join(name);
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        path.to_str().unwrap().to_string()
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_string()
    }

    /// A target under the agent; `sud`: `USERBPF_SYSCALL_DISPATCH=on`.
    /// The links exist already, so the agent installs them before `main`.
    fn target(&self, sud: bool) -> Proc {
        let b = built();
        let mut cmd = Command::new(&b.userbpf);
        cmd.args(["start", "--namespace", &self.namespace, "--"])
            .arg(&b.target);
        let env: &[(&str, &str)] = if sud {
            &[("USERBPF_SYSCALL_DISPATCH", "on")]
        } else {
            &[]
        };
        let mut p = Proc::spawn("target", cmd, env);
        p.expect("ready");
        p
    }

    fn set_mode(&mut self, mode: i64) {
        self.loader
            .ask(&format!("set mode {mode}"), &format!("ok mode {mode}"));
    }

    fn reset(&mut self) {
        self.loader.ask("reset", "ok reset");
    }

    /// Every slot and string of the .bss.
    fn dump(&mut self) -> HashMap<String, String> {
        let stdin = self.loader.stdin.as_mut().unwrap();
        writeln!(stdin, "dump").unwrap();
        stdin.flush().unwrap();
        let mut out = HashMap::new();
        loop {
            let line = self.loader.expect("");
            if line == "end" {
                return out;
            }
            let (k, v) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("loader: `{line}`"));
            out.insert(k.to_string(), v.to_string());
        }
    }

    /// The numeric slots of [`Session::dump`].
    fn counters(&mut self) -> Counters {
        Counters(self.dump())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        // runtime::namespace: /dev/shm/userbpf-<uid>/<ns>.
        let uid = if is_root() {
            NOBODY
        } else {
            // SAFETY: getuid has no preconditions.
            unsafe { libc::getuid() }
        };
        let _ = std::fs::remove_dir_all(format!("/dev/shm/userbpf-{uid}/{}", self.namespace));
    }
}

struct Counters(HashMap<String, String>);

impl Counters {
    fn get(&self, k: &str) -> i64 {
        self.0
            .get(k)
            .unwrap_or_else(|| panic!("no slot {k}"))
            .parse()
            .unwrap()
    }

    fn str(&self, k: &str) -> &str {
        self.0.get(k).unwrap_or_else(|| panic!("no {k}"))
    }

    /// Asserts the listed slots, reporting all of them on a mismatch.
    fn check(&self, what: &str, want: &[(&str, i64)]) {
        let got: Vec<(&str, i64)> = want.iter().map(|(k, _)| (*k, self.get(k))).collect();
        assert_eq!(got, want, "{what}: slots");
    }
}

/// This process: the targets' parent (`userbpf start` execs them).
fn ppid() -> i64 {
    i64::from(std::process::id())
}

/// Asserts a `getppid`/`args`/`jit` reply: `n` results, all `want`.
fn calls(t: &mut Proc, cmd: &str, n: u32, want: i64) {
    let line = t.ask(&format!("{cmd} {n}"), &format!("{cmd} "));
    let f = fields(&line);
    assert_eq!(
        (
            f["first"].parse::<i64>().unwrap(),
            f["same"].parse::<u32>().unwrap()
        ),
        (want, n),
        "target: `{line}`"
    );
}

#[test]
fn ksyscall_kretsyscall_override() {
    let mut s = Session::new("ksys", &["ks_getppid", "kret_getppid", "ks_unlink"]);
    let keep = s.file("keep", "keep\n");
    let mut t = s.target(false);

    // Mode 0: seen, unchanged; the unlink is made (ENOENT).
    calls(&mut t, "getppid", 20, ppid());
    let r = t.ask(&format!("unlink {}", s.path("missing")), "unlink ");
    assert_eq!(r, "unlink ret=-1 errno=2 exists=0");
    s.counters().check(
        "mode 0",
        &[
            ("ks_getppid", 20),
            ("kret_getppid", 20),
            ("kret_last", ppid()),
            ("ks_unlink", 1),
            ("unlink_skipped", 0),
        ],
    );

    // Mode 1: the ksyscall program's override skips the call. getppid
    // returns 4242 (the exit programs see it too); unlink returns 0 and
    // the file is still there (made, it would have failed with EACCES
    // as nobody, or removed the file).
    s.reset();
    s.set_mode(1);
    calls(&mut t, "getppid", 20, OVERRIDE);
    let r = t.ask(&format!("unlink {keep}"), "unlink ");
    assert_eq!(r, "unlink ret=0 errno=0 exists=1");
    assert!(Path::new(&keep).exists());
    s.counters().check(
        "mode 1",
        &[
            ("ks_getppid", 20),
            ("kret_getppid", 20),
            ("kret_last", OVERRIDE),
            ("ks_unlink", 1),
            ("unlink_skipped", 1),
        ],
    );

    // Mode 2: the kretsyscall program's override replaces the result
    // (it saw the real one).
    s.reset();
    s.set_mode(2);
    calls(&mut t, "getppid", 20, ppid() + 1000);
    s.counters().check(
        "mode 2",
        &[
            ("ks_getppid", 20),
            ("kret_getppid", 20),
            ("kret_last", ppid()),
        ],
    );

    // Back to mode 0: untouched again.
    s.set_mode(0);
    calls(&mut t, "getppid", 5, ppid());
    assert_eq!(s.counters().get("kret_last"), ppid());

    t.finish();
    s.loader.finish();
}

/// `BPF_KSYSCALL` reads the arguments from the syscall's `pt_regs` (the
/// context's `di`) with `BPF_CORE_READ`, i.e. `bpf_probe_read_kernel`.
#[test]
fn ksyscall_arguments() {
    let mut s = Session::new("ksargs", &["ks_unlink", "ks_openat"]);
    s.file("ks_file", "ks\n");
    let mut t = s.target(false);

    // unlink(path): the path through bpf_probe_read_user_str.
    let missing = s.path("missing");
    let r = t.ask(&format!("unlink {missing}"), "unlink ");
    assert_eq!(r, "unlink ret=-1 errno=2 exists=0");
    let c = s.counters();
    c.check(
        "unlink",
        &[("ks_unlink", 1), ("unlink_read", missing.len() as i64 + 1)],
    );
    assert_eq!(c.str("unlink_path"), missing);

    // openat(dfd, "ks_file", flags, 0640).
    let dir = s.dir.to_str().unwrap().to_string();
    let r = fields(&t.ask(&format!("ksopen {dir} ks_file"), "ksopen "));
    assert_eq!(r["ret"], "0", "{r:?}");
    let dfd: i64 = r["dfd"].parse().unwrap();
    assert!(dfd >= 3, "{r:?}");
    let flags = i64::from(libc::O_RDONLY | libc::O_CREAT | libc::O_CLOEXEC | libc::O_NOFOLLOW);
    let c = s.counters();
    c.check(
        "openat",
        &[
            ("ks_openat", 1),
            ("ks_dfd", dfd),
            ("ks_flags", flags),
            ("ks_mode", 0o640),
        ],
    );
    assert_eq!(c.str("ks_path"), "ks_file");

    t.finish();
    s.loader.finish();
}

#[test]
fn sys_enter_openat_rewrites_the_path() {
    let mut s = Session::new("rewrite", &["tp_openat_rewrite"]);
    let aaa = s.file("aaa", "AAA\n");
    s.file("bbb", "BBB\n");
    let ccc = s.file("ccc", "CCC\n");
    std::fs::create_dir(s.dir.join("only")).unwrap();
    std::fs::set_permissions(s.dir.join("only"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let lone = s.file("only/aaa", "AAA\n");
    let mut t = s.target(false);

    // ".../aaa" becomes ".../bbb" in the target's buffer before the call:
    // it reads bbb's content.
    let r = t.ask(&format!("open {aaa}"), "open ");
    assert_eq!(r, format!("open ret=ok content=BBB buf={}", s.path("bbb")));
    let c = s.counters();
    c.check(
        "aaa",
        &[
            ("tp_rewrite", 1),
            ("tp_dfd", i64::from(libc::AT_FDCWD)),
            ("tp_flags", i64::from(libc::O_RDONLY | libc::O_CLOEXEC)),
        ],
    );
    assert_eq!(c.str("tp_path"), aaa);

    // No bbb there: ENOENT, although aaa exists.
    let r = t.ask(&format!("open {lone}"), "open ");
    assert_eq!(
        r,
        format!(
            "open ret=-{} content= buf={}",
            libc::ENOENT,
            s.path("only/bbb")
        )
    );
    let c = s.counters();
    assert_eq!(c.get("tp_rewrite"), 2);
    assert_eq!(c.str("tp_path"), lone);

    // Other paths are left alone.
    let r = t.ask(&format!("open {ccc}"), "open ");
    assert_eq!(r, format!("open ret=ok content=CCC buf={ccc}"));
    assert_eq!(s.counters().get("tp_rewrite"), 2);

    t.finish();
    s.loader.finish();
}

#[test]
fn raw_tracepoints_and_raw_syscalls() {
    let mut s = Session::new(
        "raw",
        &[
            "raw_enter",
            "raw_exit",
            "rawsc_enter",
            "tp_getppid",
            "tp_exit_getppid",
        ],
    );
    let mut t = s.target(false);
    // libc's getppid, then syscall(SYS_getppid, 11, 22, 33, 44, 55, 66):
    // the registers carry the six values even though getppid takes none.
    calls(&mut t, "getppid", 30, ppid());
    calls(&mut t, "args", 12, ppid());
    s.counters().check(
        "getppid",
        &[
            ("raw_enter", 42),
            ("raw_enter_args", 12),
            ("raw_enter_ax", -i64::from(libc::ENOSYS)),
            ("raw_exit", 42),
            ("raw_exit_ret", ppid()),
            ("raw_exit_ax", ppid()),
            ("rawsc_enter", 42),
            ("rawsc_args", 12),
            ("tp_getppid", 42),
            ("tp_getppid_nr", 110),
            ("tp_getppid_pid", i64::from(t.pid())),
            ("tp_exit_getppid", 42),
            ("tp_exit_nr", 110),
            ("tp_exit_ret", ppid()),
        ],
    );
    t.finish();
    s.loader.finish();
}

#[test]
fn syscall_user_dispatch_covers_anonymous_code() {
    let mut s = Session::new("sud", &["tp_getppid", "ks_getppid"]);

    // USERBPF_SYSCALL_DISPATCH=on: the page's syscall is trapped (SIGSYS)
    // and dispatched like libc's, override included.
    let mut t = s.target(true);
    calls(&mut t, "jit", 13, ppid());
    calls(&mut t, "getppid", 7, ppid());
    s.counters().check(
        "SUD on",
        &[
            ("tp_getppid", 20),
            ("ks_getppid", 20),
            ("tp_getppid_pid", i64::from(t.pid())),
        ],
    );
    s.set_mode(1);
    calls(&mut t, "jit", 5, OVERRIDE);
    s.set_mode(0);
    assert_eq!(s.counters().get("ks_getppid"), 25);
    t.finish();

    // Unset: only the rewritten libc sites are seen.
    s.reset();
    let mut t = s.target(false);
    calls(&mut t, "jit", 13, ppid());
    calls(&mut t, "getppid", 7, ppid());
    s.counters()
        .check("SUD unset", &[("tp_getppid", 7), ("ks_getppid", 7)]);
    s.set_mode(1);
    calls(&mut t, "jit", 5, ppid());
    calls(&mut t, "getppid", 2, OVERRIDE);
    s.set_mode(0);
    s.counters()
        .check("SUD unset, mode 1", &[("tp_getppid", 9), ("ks_getppid", 9)]);
    t.finish();
    s.loader.finish();
}
