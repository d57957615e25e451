//! The syscall apps of issue 7 (`compat-tests/apps/syscall_*`): an
//! opensnoop-like and a syscount-like libbpf skeleton app trace a target
//! process, in user space and without root.
//!
//! - `syscall_open` (`tracepoint/syscalls/sys_enter_openat` +
//!   `sys_exit_openat`, a per-thread HASH of arguments,
//!   `bpf_probe_read_user_str`, a ring buffer and a perf buffer, filtered
//!   on the target's tgid in `.rodata`);
//! - `syscall_count` (`tracepoint/raw_syscalls/sys_enter` + `sys_exit`,
//!   counts, failures and latency per syscall id in a HASH, for the
//!   target's tgid, inside a window the target marks with two `close` of
//!   invalid fds);
//! - `syscall_target DIR N M K MARK`: exactly N `openat` of existing
//!   files, M of a missing one (ENOENT), K `getppid`, N `close`, between
//!   two markers (see its source), then prints what it did.
//!
//! Per app:
//!
//! - `userbpf`: the app under `userbpf load` (our libbpf.so.1,
//!   `USERBPF_BACKEND` unset: auto), the target under `userbpf start` (the
//!   agent), both as nobody (uid/gid 65534) when the test runs as root,
//!   in a namespace of their own. The programs must run inside the target.
//! - `userbpf_live`: the same, but the target runs first (under the agent,
//!   blocked reading stdin) and the app attaches to it, as with
//!   `opensnoop -p PID`; the test waits until `userbpf list` shows the
//!   agent's two links installed, then lets the target go on.
//! - `real_libbpf` (root only, else it says so and passes): the same app
//!   binary on the system's libbpf.so.1, kernel tracepoints, the target run
//!   plainly. A cross-check that our contexts are the kernel's: both runs
//!   must report exactly what the target says it did.
//!
//! Sequence (no sleeps for synchronisation): the target is started as
//! `sh -c 'read _ && exec TARGET...'`, so its pid is known while it waits
//! for a line on stdin; the app is started with `-p PID` and says
//! `attached` once its links exist; then the test writes the line, the
//! shell execs `userbpf start` which execs the target with the agent
//! preloaded (whose constructor installs the links before `main`). When
//! the target has exited, SIGTERM makes the app drain its buffers, print
//! and exit.
//!
//! The apps, the target and their objects are built by
//! `compat-tests/apps/Makefile` (`make syscall-apps`) into
//! `<target>/compat-apps`. Our side needs `cargo build [--release] -p
//! userbpf-libbpf-so -p userbpf-agent -p userbpf-cli`: the test uses its
//! own profile's directory when it holds `userbpf`, `libuserbpf_agent.so`
//! and `libbpf.so.1`, else `<target>/release`; `USERBPF_LIBDIR` names
//! another directory, `USERBPF` another `userbpf`. `USERBPF_ENGINE` is
//! passed through.
//!
//! ```sh
//! cargo build -p userbpf-libbpf-so -p userbpf-agent -p userbpf-cli
//! cargo test -p userbpf-compat-tests --test syscall_apps -- --nocapture
//! ```

#[path = "support/kapps.rs"]
mod kapps;

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::io::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Existing files opened, opens of a missing file, getppid calls.
const N_OPEN: usize = 4;
const M_MISSING: usize = 3;
const K_GETPPID: usize = 25;
/// `close(MARK)` opens syscall_count's window, `close(MARK - 1)` closes it.
const MARK: i32 = -4242;
/// x86-64 syscall numbers.
const NR_CLOSE: u32 = 3;
const NR_GETPPID: u32 = 110;
const NR_OPENAT: u32 = 257;
/// `AT_FDCWD`, `O_CLOEXEC`, `O_NONBLOCK` (x86-64).
const AT_FDCWD: i64 = -100;
const O_CLOEXEC: u32 = 0o2000000;
const O_NONBLOCK: u32 = 0o4000;
const ENOENT: i64 = 2;
/// The target's comm (its file name, under 16 bytes).
const TARGET_COMM: &str = "syscall_target";

/// Longest wait for the app to attach, and for each process to exit.
const STEP_TIMEOUT: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------------------
// Building and finding things

/// Builds the syscall apps once per process, under the lock
/// skeleton_apps.rs takes on the same directory.
fn built() -> &'static Path {
    static BUILD: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BUILD.get_or_init(build) {
        Ok(dir) => dir,
        Err(e) => panic!("building the syscall apps failed:\n{e}"),
    }
}

fn build() -> Result<PathBuf, String> {
    let apps = Path::new(env!("CARGO_MANIFEST_DIR")).join("apps");
    let out = kapps::target_dir().join("compat-apps");
    fs::create_dir_all(&out).map_err(|e| format!("creating {}: {e}", out.display()))?;
    let lock = fs::File::create(out.join(".build.lock"))
        .map_err(|e| format!("creating the build lock: {e}"))?;
    // SAFETY: a valid open fd; the lock is released when `lock` is dropped.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(format!("flock: {}", std::io::Error::last_os_error()));
    }
    let output = Command::new("make")
        .arg("-C")
        .arg(&apps)
        .arg(format!("OUT={}", out.display()))
        .arg("syscall-apps")
        .output()
        .map_err(|e| format!("running make: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "make -C {} OUT={} syscall-apps failed ({}); it needs clang-16, bpftool, \
             libbpf-dev, gcc and /sys/kernel/btf/vmlinux\nstdout:\n{}\nstderr:\n{}",
            apps.display(),
            out.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(out)
}

/// The files of ours a run needs, side by side (what `userbpf load` and
/// `userbpf start` expect).
const OUR_FILES: [&str; 3] = ["userbpf", "libuserbpf_agent.so", "libbpf.so.1"];

/// Where our `userbpf`, agent and `libbpf.so.1` are: `$USERBPF_LIBDIR`,
/// else this test's own profile directory (`<target>/debug` for a plain
/// `cargo test`) when it holds all three, else `<target>/release`.
fn our_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::var_os("USERBPF_LIBDIR")
            .map(PathBuf::from)
            .or_else(|| {
                let exe = std::env::current_exe().ok()?;
                let profile = exe.ancestors().nth(2)?.to_path_buf();
                OUR_FILES
                    .iter()
                    .all(|f| profile.join(f).exists())
                    .then_some(profile)
            })
            .unwrap_or_else(|| kapps::target_dir().join("release"));
        println!("userbpf side: {}", dir.display());
        dir
    })
    .clone()
}

/// Our `userbpf` (`$USERBPF`, else in [`our_dir`]), with the agent and
/// our libbpf.so.1 next to it (`userbpf load` gives the app the
/// libbpf.so.1 next to itself).
fn userbpf_exe() -> PathBuf {
    let exe = std::env::var_os("USERBPF")
        .map(PathBuf::from)
        .unwrap_or_else(|| our_dir().join("userbpf"));
    for f in OUR_FILES {
        let path = exe.with_file_name(f);
        assert!(
            path.exists(),
            "{} is missing: cargo build [--release] -p userbpf-cli -p userbpf-agent -p \
             userbpf-libbpf-so (or point USERBPF_LIBDIR at a directory holding {})",
            path.display(),
            OUR_FILES.join(", ")
        );
    }
    exe
}

// ---------------------------------------------------------------------------
// Processes

/// A child whose stdout lines arrive on a channel as they are printed.
struct Proc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl Proc {
    fn spawn(name: &str, mut cmd: Command, unprivileged: bool) -> Proc {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("LD_PRELOAD")
            .env_remove("LD_LIBRARY_PATH")
            .env_remove("USERBPF_BACKEND")
            .env_remove("USERBPF_NAMESPACE")
            .env_remove("USERBPF_DIR")
            .env_remove("LIBBPF_LOG_LEVEL");
        if unprivileged {
            // std drops the supplementary groups (setgroups(0)) when a
            // root parent sets the uid.
            cmd.uid(kapps::NOBODY).gid(kapps::NOBODY);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: cannot start {cmd:?}: {e}"));
        let stdin = child.stdin.take();
        let out_pipe = child.stdout.take().unwrap();
        let mut err_pipe = child.stderr.take().unwrap();
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, lines) = mpsc::channel();
        let out_text = Arc::clone(&stdout);
        let out_reader = std::thread::spawn(move || {
            for line in BufReader::new(out_pipe).lines() {
                let Ok(line) = line else { break };
                let mut text = out_text.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
                let _ = tx.send(line);
            }
        });
        let err_text = Arc::clone(&stderr);
        let err_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = err_pipe.read_to_end(&mut buf);
            err_text
                .lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf));
        });
        Proc {
            name: name.to_string(),
            child,
            stdin,
            lines,
            stdout,
            stderr,
            readers: vec![out_reader, err_reader],
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a stdout line starting with `prefix`; Err(why) when the
    /// process exits or the time is up first.
    fn wait_line(&mut self, prefix: &str) -> Result<String, String> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self
                .lines
                .recv_timeout(left.min(Duration::from_millis(200)))
            {
                Ok(line) if line.starts_with(prefix) => return Ok(line),
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(format!("{} closed its stdout before `{prefix}`", self.name))
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if Instant::now() >= deadline {
                        return Err(format!(
                            "no `{prefix}` from {} within {}s",
                            self.name,
                            STEP_TIMEOUT.as_secs()
                        ));
                    }
                }
            }
        }
    }

    /// Waits for the exit (killing it after STEP_TIMEOUT) and the pipes.
    fn finish(mut self) -> Finished {
        drop(self.stdin.take());
        let deadline = Instant::now() + STEP_TIMEOUT;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break None;
                }
            }
        };
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let stdout = self.stdout.lock().unwrap().clone();
        let stderr = self.stderr.lock().unwrap().clone();
        Finished {
            name: std::mem::take(&mut self.name),
            status,
            stdout,
            stderr,
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // A failed step: do not leave the process behind.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

struct Finished {
    name: String,
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
}

impl Finished {
    fn ok(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    fn describe(&self) -> String {
        let status = match self.status {
            Some(s) => s.to_string(),
            None => format!("killed after {}s", STEP_TIMEOUT.as_secs()),
        };
        format!(
            "--- {} ({status}) stdout:\n{}\n--- {} stderr (last 30 lines):\n{}",
            self.name,
            self.stdout.trim_end(),
            self.name,
            kapps::tail(&self.stderr, 30)
        )
    }
}

// ---------------------------------------------------------------------------
// One run: target + app

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum App {
    Open,
    Count,
}

impl App {
    fn exe(self) -> &'static str {
        match self {
            App::Open => "syscall_open",
            App::Count => "syscall_count",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    /// Ours: `userbpf load` + `userbpf start`, as nobody under root.
    Userbpf,
    /// The system libbpf, kernel tracepoints, root.
    Kernel,
}

/// The files the target opens; removed on drop, with the namespace.
struct Scratch {
    dir: PathBuf,
    namespace: String,
    ns_uid: u32,
}

impl Scratch {
    fn new(tag: &str, ns_uid: u32) -> Scratch {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let namespace = format!("sysapps-{tag}-{}-{n}", std::process::id());
        let dir = std::env::temp_dir().join(format!("userbpf-{namespace}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        // Readable by nobody, whatever the umask.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        for i in 0..N_OPEN {
            let f = dir.join(format!("file{i}"));
            fs::write(&f, format!("file {i}\n")).unwrap();
            fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
        }
        Scratch {
            dir,
            namespace,
            ns_uid,
        }
    }

    fn path(&self, name: &str) -> String {
        format!("{}/{name}", self.dir.display())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
        // runtime::namespace: /dev/shm/userbpf-<uid>/<ns>.
        let ns = PathBuf::from(format!(
            "/dev/shm/userbpf-{}/{}",
            self.ns_uid, self.namespace
        ));
        let _ = fs::remove_dir_all(ns);
    }
}

struct Outcome {
    target_pid: u32,
    target: Finished,
    app: Finished,
}

impl Outcome {
    fn describe(&self) -> String {
        format!("{}\n{}", self.target.describe(), self.app.describe())
    }
}

/// Runs `app` against a fresh target on `side`; panics (with both
/// processes' output) if a step fails. `live`: the target runs (under the
/// agent, waiting on stdin) before the app attaches, as with
/// `opensnoop -p PID`; else it is exec'ed once the app has attached.
fn run(app: App, side: Side, live: bool, scratch: &Scratch) -> Outcome {
    let dir = built();
    let target_exe = dir.join("syscall_target");
    let app_exe = dir.join(app.exe());
    let unprivileged = side == Side::Userbpf && kapps::is_root();

    // The target: a shell that waits for a line, then execs (or, live,
    // the target itself, which waits for the line).
    let mut target_cmd;
    if live {
        target_cmd = Command::new(userbpf_exe());
        target_cmd.args(["start", "--namespace", &scratch.namespace, "--"]);
    } else {
        target_cmd = Command::new("/bin/sh");
        target_cmd.arg("-c").arg(r#"read _ && exec "$0" "$@""#);
        if side == Side::Userbpf {
            target_cmd
                .arg(userbpf_exe())
                .args(["start", "--namespace", &scratch.namespace, "--"]);
        }
    }
    target_cmd
        .arg(&target_exe)
        .arg(&scratch.dir)
        .arg(N_OPEN.to_string())
        .arg(M_MISSING.to_string())
        .arg(K_GETPPID.to_string())
        .arg(MARK.to_string());
    if live {
        target_cmd.arg("wait");
    }
    let mut target = Proc::spawn("syscall_target", target_cmd, unprivileged);
    let target_pid = target.pid();
    if live {
        if let Err(why) = target.wait_line(&format!("syscall_target {target_pid}: waiting")) {
            panic!("{why}\n{}", target.finish().describe());
        }
    }

    // The app, filtered on that pid.
    let mut app_cmd = match side {
        Side::Userbpf => {
            let mut c = Command::new(userbpf_exe());
            c.args(["load", "--namespace", &scratch.namespace, "--"])
                .arg(&app_exe);
            c
        }
        Side::Kernel => {
            let resolved = kapps::assert_resolves(&app_exe, &kapps::Lib::System);
            println!("{}: system libbpf: {resolved}", app.exe());
            Command::new(&app_exe)
        }
    };
    app_cmd.arg("-p").arg(target_pid.to_string());
    if app == App::Count {
        app_cmd.arg("-m").arg(MARK.to_string());
    }
    let mut app_proc = Proc::spawn(app.exe(), app_cmd, unprivileged);

    if let Err(why) = app_proc.wait_line("attached:") {
        let app_done = app_proc.finish();
        let target_done = target.finish();
        panic!(
            "{}: {why}\n{}\n{}",
            app.exe(),
            app_done.describe(),
            target_done.describe()
        );
    }
    if live {
        // The agent installs the links from its watcher thread: wait until
        // it says so.
        if let Err(why) = wait_installed(scratch, target_pid, 2, unprivileged) {
            // SAFETY: kill has no memory preconditions; our live child.
            unsafe { libc::kill(app_proc.pid() as libc::pid_t, libc::SIGTERM) };
            let app_done = app_proc.finish();
            let target_done = target.finish();
            panic!(
                "{}: {why}\n{}\n{}",
                app.exe(),
                app_done.describe(),
                target_done.describe()
            );
        }
    }
    // Go: the shell execs the target (live: the target goes on).
    if let Some(mut stdin) = target.stdin.take() {
        stdin
            .write_all(b"go\n")
            .expect("writing to the target's shell");
    }
    let target_done = target.finish();
    // SAFETY: kill has no memory preconditions; the pid is our live child
    // (not reaped: finish() has not run on it yet).
    unsafe { libc::kill(app_proc.pid() as libc::pid_t, libc::SIGTERM) };
    let app_done = app_proc.finish();
    let outcome = Outcome {
        target_pid,
        target: target_done,
        app: app_done,
    };
    assert!(
        outcome.target.ok() && outcome.app.ok(),
        "{} on {side:?}: a process failed\n{}",
        app.exe(),
        outcome.describe()
    );
    outcome
}

/// `userbpf list` of the scratch namespace (as the processes' user).
fn list_namespace(scratch: &Scratch, unprivileged: bool) -> String {
    let mut cmd = Command::new(userbpf_exe());
    cmd.args(["list", "--namespace", &scratch.namespace])
        .env_remove("USERBPF_NAMESPACE")
        .env_remove("USERBPF_DIR");
    if unprivileged {
        cmd.uid(kapps::NOBODY).gid(kapps::NOBODY);
    }
    match cmd.output() {
        Ok(o) => format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => format!("userbpf list: {e}"),
    }
}

/// The attachment lines `userbpf list` shows for process `pid`.
fn attachments_of(list: &str, pid: u32) -> Vec<&str> {
    let head = format!("process pid {pid} ");
    list.lines()
        .skip_while(|l| !l.starts_with(&head))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect()
}

/// Waits until the agent in `pid` reports `links` installed attachments;
/// Err(why) on an attachment error or after STEP_TIMEOUT.
fn wait_installed(
    scratch: &Scratch,
    pid: u32,
    links: usize,
    unprivileged: bool,
) -> Result<(), String> {
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        let list = list_namespace(scratch, unprivileged);
        let lines = attachments_of(&list, pid);
        if lines.iter().any(|l| l.contains(" error ")) {
            return Err(format!("the agent failed to attach:\n{list}"));
        }
        if lines.iter().filter(|l| l.ends_with(" installed")).count() >= links {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the agent in pid {pid} did not report {links} installed links within {}s:\n{list}",
                STEP_TIMEOUT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------
// What the target did

#[derive(Clone, Debug, PartialEq, Eq)]
struct OpenCall {
    path: String,
    flags: u32,
    ret: i64,
}

/// "syscall_target PID: openat FILE flags 0xF = RET" lines, in order.
fn target_opens(out: &Outcome) -> Vec<OpenCall> {
    let prefix = format!("syscall_target {}: openat ", out.target_pid);
    let calls: Vec<OpenCall> = out
        .target
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|rest| {
            let parsed = (|| {
                let (path, rest) = rest.split_once(" flags 0x")?;
                let (flags, ret) = rest.split_once(" = ")?;
                Some(OpenCall {
                    path: path.to_string(),
                    flags: u32::from_str_radix(flags, 16).ok()?,
                    ret: ret.parse().ok()?,
                })
            })();
            parsed.unwrap_or_else(|| panic!("target line `{rest}`\n{}", out.describe()))
        })
        .collect();
    assert!(
        out.target.stdout.contains(&format!(
            "syscall_target {}: done {N_OPEN} {M_MISSING} {K_GETPPID}",
            out.target_pid
        )),
        "the target did not finish\n{}",
        out.describe()
    );
    calls
}

/// The calls inside the window, as the target should have made them:
/// N existing files (fd >= 0), M missing (-ENOENT); checks the target's
/// own report against that.
fn expected_window(out: &Outcome, scratch: &Scratch) -> Vec<OpenCall> {
    let calls = target_opens(out);
    assert_eq!(
        calls.len(),
        N_OPEN + M_MISSING + 2,
        "target report\n{}",
        out.describe()
    );
    let first = &calls[0];
    let last = &calls[calls.len() - 1];
    assert_eq!(first.path, scratch.path(".begin"));
    assert_eq!(last.path, scratch.path(".end"));
    let window = calls[1..calls.len() - 1].to_vec();
    for (i, c) in window.iter().enumerate() {
        if i < N_OPEN {
            assert_eq!(c.path, scratch.path(&format!("file{i}")));
            assert_eq!(c.flags, O_CLOEXEC);
            assert!(c.ret >= 0, "target: {c:?}\n{}", out.describe());
        } else {
            assert_eq!(c.path, scratch.path("missing"));
            assert_eq!(c.flags, O_NONBLOCK);
            assert_eq!(c.ret, -ENOENT, "target: {c:?}\n{}", out.describe());
        }
    }
    window
}

// ---------------------------------------------------------------------------
// syscall_open

/// One event line of syscall_open: `key=value` fields, `file` last.
#[derive(Debug)]
struct OpenEvent {
    fields: BTreeMap<String, String>,
    file: String,
}

impl OpenEvent {
    fn parse(line: &str) -> Option<OpenEvent> {
        let (head, file) = line.split_once(" file=")?;
        let mut fields = BTreeMap::new();
        for kv in head.split(' ').skip(1) {
            let (k, v) = kv.split_once('=')?;
            fields.insert(k.to_string(), v.to_string());
        }
        Some(OpenEvent {
            fields,
            file: file.to_string(),
        })
    }

    fn get(&self, k: &str) -> &str {
        self.fields
            .get(k)
            .map(String::as_str)
            .unwrap_or("<missing>")
    }

    fn int(&self, k: &str) -> i64 {
        let v = self.get(k);
        match v.strip_prefix("0x") {
            Some(hex) => i64::from_str_radix(hex, 16).unwrap_or(i64::MIN),
            None => v.parse().unwrap_or(i64::MIN),
        }
    }
}

/// Checks one source's events (`ring` or `perf`); returns the problems.
fn check_open_events(
    src: &str,
    out: &Outcome,
    scratch: &Scratch,
    want: &[OpenCall],
) -> Vec<String> {
    let events: Vec<OpenEvent> = out
        .app
        .stdout
        .lines()
        .filter(|l| l.starts_with(&format!("{src} ")))
        .map(|l| OpenEvent::parse(l).unwrap_or_else(|| panic!("bad event line `{l}`")))
        .collect();
    let mut problems = Vec::new();
    let begin = scratch.path(".begin");
    let end = scratch.path(".end");
    let pos = |name: &str| events.iter().position(|e| e.file == name);
    let (Some(b), Some(e)) = (pos(&begin), pos(&end)) else {
        problems.push(format!(
            "{src}: no event for the window markers {begin} / {end} ({} events in all): the \
             openat calls of the target were not seen",
            events.len()
        ));
        return problems;
    };
    if events
        .iter()
        .filter(|ev| ev.file == begin || ev.file == end)
        .count()
        != 2
        || b > e
    {
        problems.push(format!(
            "{src}: the window markers appear more than once or out of order"
        ));
        return problems;
    }
    for marker in [&events[b], &events[e]] {
        if marker.int("ret") != -ENOENT || marker.int("flags") != 0 {
            problems.push(format!(
                "{src}: marker event {marker:?}: want ret -2, flags 0"
            ));
        }
    }
    let window = &events[b + 1..e];
    if window.len() != want.len() {
        problems.push(format!(
            "{src}: {} events between the markers, the target made {} openat calls",
            window.len(),
            want.len()
        ));
    }
    let pid = out.target_pid.to_string();
    for (i, ev) in events[b..=e].iter().enumerate() {
        // Every field the kernel's contexts and helpers give.
        let mut bad = Vec::new();
        if ev.get("pid") != pid || ev.get("tid") != pid {
            bad.push(format!(
                "pid/tid {}/{} (target {pid})",
                ev.get("pid"),
                ev.get("tid")
            ));
        }
        if ev.get("comm") != TARGET_COMM {
            bad.push(format!("comm `{}`", ev.get("comm")));
        }
        if ev.get("nr") != format!("{NR_OPENAT}/{NR_OPENAT}") {
            bad.push(format!("__syscall_nr enter/exit {}", ev.get("nr")));
        }
        if ev.int("dfd") != AT_FDCWD {
            bad.push(format!("dfd {}", ev.get("dfd")));
        }
        if ev.int("mode") != 0 {
            bad.push(format!("mode {}", ev.get("mode")));
        }
        if ev.int("len") != ev.file.len() as i64 + 1 {
            bad.push(format!(
                "bpf_probe_read_user_str returned {}",
                ev.get("len")
            ));
        }
        if !bad.is_empty() {
            problems.push(format!(
                "{src} event {i} of the window ({}): {}",
                ev.file,
                bad.join(", ")
            ));
        }
    }
    for (i, (ev, c)) in window.iter().zip(want).enumerate() {
        if ev.file != c.path || ev.int("flags") != c.flags as i64 || ev.int("ret") != c.ret {
            problems.push(format!(
                "{src} call {i}: event file={} flags={} ret={}, the target made openat({}, \
                 0x{:x}) = {}",
                ev.file,
                ev.get("flags"),
                ev.get("ret"),
                c.path,
                c.flags,
                c.ret
            ));
        }
    }
    problems
}

fn check_open(side: Side, live: bool) {
    let scratch = Scratch::new(
        "open",
        if side == Side::Userbpf && kapps::is_root() {
            kapps::NOBODY
        } else {
            // SAFETY: getuid cannot fail.
            unsafe { libc::getuid() }
        },
    );
    let out = run(App::Open, side, live, &scratch);
    let want = expected_window(&out, &scratch);
    let mut problems = Vec::new();
    let counts = out
        .app
        .stdout
        .lines()
        .find(|l| l.starts_with("counts:"))
        .unwrap_or("");
    if !counts.contains(" lost 0 ") || !counts.contains(" ring_drops 0 ") {
        problems.push(format!("lost or dropped events: `{counts}`"));
    }
    problems.extend(check_open_events("ring", &out, &scratch, &want));
    problems.extend(check_open_events("perf", &out, &scratch, &want));
    assert!(
        problems.is_empty(),
        "syscall_open on {side:?} (live {live}):\n  {}\n{}",
        problems.join("\n  "),
        out.describe()
    );
    println!(
        "syscall_open on {side:?} (live {live}): {} openat calls of pid {} seen exactly (ring and perf): {counts}",
        want.len(),
        out.target_pid
    );
}

// ---------------------------------------------------------------------------
// syscall_count

fn check_count(side: Side, live: bool) {
    let scratch = Scratch::new(
        "count",
        if side == Side::Userbpf && kapps::is_root() {
            kapps::NOBODY
        } else {
            // SAFETY: getuid cannot fail.
            unsafe { libc::getuid() }
        },
    );
    let out = run(App::Count, side, live, &scratch);
    // The target's own report must be what it was asked to do.
    expected_window(&out, &scratch);

    // "syscall ID NAME count C errors E"
    let mut counts: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    for line in out.app.stdout.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() == 7 && f[0] == "syscall" && f[3] == "count" && f[5] == "errors" {
            let parse = |s: &str| -> u64 {
                s.parse()
                    .unwrap_or_else(|_| panic!("bad count line `{line}`"))
            };
            counts.insert(parse(f[1]) as u32, (parse(f[4]), parse(f[6])));
        }
    }
    let totals = out
        .app
        .stdout
        .lines()
        .find(|l| l.starts_with("totals:"))
        .unwrap_or("");
    let want: BTreeMap<u32, (u64, u64)> = [
        (NR_CLOSE, (N_OPEN as u64, 0)),
        (NR_GETPPID, (K_GETPPID as u64, 0)),
        (NR_OPENAT, ((N_OPEN + M_MISSING) as u64, M_MISSING as u64)),
    ]
    .into_iter()
    .collect();
    let mut problems = Vec::new();
    if !totals.contains(" markers 2 ") {
        problems.push(format!(
            "the two window markers (close({MARK}), close({})) were not both seen: `{totals}`",
            MARK - 1
        ));
    }
    if !totals.ends_with(" id_mismatches 0") {
        problems.push(format!(
            "sys_exit ids differ from sys_enter ids: `{totals}`"
        ));
    }
    for (nr, (count, errors)) in &want {
        match counts.get(nr) {
            Some(got) if got == &(*count, *errors) => {}
            got => problems.push(format!(
                "syscall {nr}: want count {count} errors {errors}, got {got:?}"
            )),
        }
    }
    // The window holds these calls and nothing else (the kernel agrees: see
    // real_libbpf); anything more is a syscall the programs should not
    // have seen on the target's main thread.
    let extra: Vec<String> = counts
        .iter()
        .filter(|(nr, _)| !want.contains_key(nr))
        .map(|(nr, (c, e))| format!("{nr} (count {c} errors {e})"))
        .collect();
    if !extra.is_empty() {
        problems.push(format!(
            "syscalls counted in the window that the target did not make there: {}",
            extra.join(", ")
        ));
    }
    assert!(
        problems.is_empty(),
        "syscall_count on {side:?} (live {live}):\n  {}\n{}",
        problems.join("\n  "),
        out.describe()
    );
    println!(
        "syscall_count on {side:?} (live {live}): pid {}: openat {}, getppid {}, close {} exactly ({totals})",
        out.target_pid,
        N_OPEN + M_MISSING,
        K_GETPPID,
        N_OPEN
    );
}

fn skip_without_root(what: &str) -> bool {
    if kapps::is_root() {
        return false;
    }
    println!("{what}: skipped: the kernel run needs root");
    true
}

mod syscall_open {
    use super::*;

    /// Ours: programs inside a `userbpf start`ed target, no root; the
    /// agent installs them before `main`.
    #[test]
    fn userbpf() {
        check_open(Side::Userbpf, false);
    }

    /// Ours, the target running (blocked in read) when the app attaches:
    /// the agent's watcher installs the links into the live process.
    #[test]
    fn userbpf_live() {
        check_open(Side::Userbpf, true);
    }

    /// The same binary on the system libbpf: kernel tracepoints (root).
    #[test]
    fn real_libbpf() {
        if !skip_without_root("syscall_open::real_libbpf") {
            check_open(Side::Kernel, false);
        }
    }
}

mod syscall_count {
    use super::*;

    /// Ours: programs inside a `userbpf start`ed target, no root; the
    /// agent installs them before `main`.
    #[test]
    fn userbpf() {
        check_count(Side::Userbpf, false);
    }

    /// Ours, the target running (blocked in read) when the app attaches:
    /// the agent's watcher installs the links into the live process.
    #[test]
    fn userbpf_live() {
        check_count(Side::Userbpf, true);
    }

    /// The same binary on the system libbpf: kernel tracepoints (root).
    #[test]
    fn real_libbpf() {
        if !skip_without_root("syscall_count::real_libbpf") {
            check_count(Side::Kernel, false);
        }
    }
}

#[test]
fn event_lines_parse() {
    let e = OpenEvent::parse(
        "ring pid=7 tid=8 comm=syscall_target nr=257/257 dfd=-100 flags=0x80000 mode=0 ret=3 \
         len=9 file=/tmp/a b",
    )
    .unwrap();
    assert_eq!(e.int("pid"), 7);
    assert_eq!(e.int("flags"), 0x80000);
    assert_eq!(e.int("dfd"), -100);
    assert_eq!(e.get("nr"), "257/257");
    assert_eq!(e.file, "/tmp/a b");
    assert!(OpenEvent::parse("counts: ring 1").is_none());
}
