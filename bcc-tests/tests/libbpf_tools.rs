//! Debian's libbpf-tools on userbpf (issue 7): the BPF objects embedded in
//! `/usr/sbin/{opensnoop,statsnoop,syscount,sigsnoop,mountsnoop,execsnoop}`
//! load through our `libbpf.so.1`, their syscall tracepoints run in user
//! space inside a target started with `userbpf start`, and the events they
//! report are exactly the system calls the target made. execsnoop also
//! shows that an `execve` keeps the agent: `sys_exit_execve` is delivered
//! in the new image, which is still traced.
//!
//! Each test:
//! 1. extracts the tool's object (`libbpf_compat::object::embedded`);
//! 2. starts `bcc-target TOOL DIR` (`driver/target.c`) with
//!    `target/<profile>/userbpf start` in a namespace of its own;
//! 3. runs `driver TOOL OBJECT PID` (`driver/driver.c`, the tool's
//!    user-space part, `-p PID`; execsnoop has no pid filter: `-x -u UID`) with `LD_LIBRARY_PATH=target/<profile>`
//!    and `USERBPF_BACKEND` unset. When the tests run as root both run as
//!    nobody (65534): the kernel is out of reach, so every program must
//!    run in user space, and `mount` fails with EPERM;
//! 4. waits until the driver has reported one of each marker call the
//!    target repeats while it waits (every link is then installed in the
//!    target), tells the target to go, and compares the driver's events
//!    with the calls the target reports, in order (the target is pinned
//!    to one CPU, so the per-CPU perf buffers keep its order).
//!
//! `USERBPF_BCC_KERNEL=1` (as root) checks the expectations themselves:
//! the same driver and target on the system's libbpf and the running
//! kernel (the driver as root, the target started directly as nobody), no
//! userbpf involved.
//!
//! Artifacts come from `target/<profile>` (the test's own profile, or
//! `$USERBPF_LIBDIR`): `libbpf.so.1`, `libuserbpf_agent.so`, `userbpf`.
//! Build them with `cargo build [--release] -p userbpf-libbpf-so -p
//! userbpf-agent -p userbpf-cli`. A test is skipped (with a message) only
//! when `/usr/sbin/<tool>` is missing (`scripts/setup.sh test` installs
//! libbpf-tools).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use userbpf_libbpf_compat::object::embedded::extract_bpf_objects;

/// nobody/nogroup.
const NOBODY: u32 = 65534;
/// The target's executable name, hence its `comm`.
const TARGET_COMM: &str = "bcc-target";
/// execsnoop: the target execs itself under this name (`DIR/bcc-stage2`, a
/// symlink), the new image's `comm`.
const STAGE2_COMM: &str = "bcc-stage2";
/// execsnoop-spawn: the target's children exec `/bin/true`.
const TRUE_COMM: &str = "true";
/// `target.c`: SYNC_PID (ESRCH) and GETPPID_CALLS.
const SYNC_PID: i64 = 1_073_741_800;
const GETPPID_CALLS: u64 = 1000;
/// x86-64 syscall numbers.
const NR_SCHED_YIELD: u32 = 24;
const NR_GETPPID: u32 = 110;

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const ATTACH_TIMEOUT: Duration = Duration::from_secs(120);
const SYNC_TIMEOUT: Duration = Duration::from_secs(60);
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

/// `target/<profile>`: `$USERBPF_LIBDIR`, else this test binary's profile
/// directory (`<target>/<profile>/deps/<test>-*`).
fn artifact_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("USERBPF_LIBDIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("current_exe");
    exe.ancestors()
        .nth(2)
        .expect("<target>/<profile>/deps/<test>")
        .to_path_buf()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The uid the target and the driver run as.
fn run_uid() -> u32 {
    if is_root() {
        NOBODY
    } else {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() }
    }
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// The newest source file under `dir` (recursively).
fn newest_source(dir: &Path) -> Option<SystemTime> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let t = if path.is_dir() {
            newest_source(&path)
        } else if path.extension().is_some_and(|e| e == "rs") {
            mtime(&path)
        } else {
            None
        };
        newest = newest.max(t);
    }
    newest
}

/// Checks that our artifacts exist; returns a warning when one is older
/// than the sources it is built from (a stale build explains odd failures).
fn check_artifacts(dir: &Path) -> Option<String> {
    let build = format!(
        "cargo build{} -p userbpf-libbpf-so -p userbpf-agent -p userbpf-cli",
        if dir.ends_with("release") {
            " --release"
        } else {
            ""
        }
    );
    let ws = workspace();
    let mut stale = Vec::new();
    for (file, crates) in [
        (
            "libbpf.so.1",
            &["libbpf-so", "libbpf-compat", "runtime", "btf-core"][..],
        ),
        ("libuserbpf_agent.so", &["agent", "runtime"][..]),
        ("userbpf", &["cli"][..]),
    ] {
        let path = dir.join(file);
        assert!(
            path.exists(),
            "{} is missing: build it with `{build}` (or set USERBPF_LIBDIR)",
            path.display()
        );
        let built = mtime(&path);
        let src = crates
            .iter()
            .filter_map(|c| newest_source(&ws.join(c).join("src")))
            .max();
        if built < src {
            stale.push(file);
        }
    }
    (!stale.is_empty()).then(|| {
        format!(
            "warning: {} in {} older than their sources; rebuild with `{build}`",
            stale.join(", "),
            dir.display()
        )
    })
}

/// The driver and the target, built once per test process under a lock.
struct Built {
    driver: PathBuf,
    target: PathBuf,
}

fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let libdir = artifact_dir();
        let profile = libdir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "custom".into());
        let out = libdir
            .parent()
            .unwrap_or(&libdir)
            .join("bcc-tests")
            .join(profile);
        std::fs::create_dir_all(&out).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
        let lock = std::fs::File::create(out.join(".build.lock")).expect("build lock");
        // SAFETY: a valid open fd; the lock is released when `lock` is dropped.
        let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock: {}", std::io::Error::last_os_error());
        let src = workspace().join("bcc-tests/driver");
        let driver = out.join("driver");
        let target = out.join(TARGET_COMM);
        gcc(&[
            "-O2".as_ref(),
            "-g".as_ref(),
            "-Wall".as_ref(),
            "-Wextra".as_ref(),
            "-Werror".as_ref(),
            format!("-I{}", workspace().join("include").display()).as_ref(),
            "-o".as_ref(),
            driver.as_os_str(),
            src.join("driver.c").as_os_str(),
            format!("-L{}", libdir.display()).as_ref(),
            "-lbpf".as_ref(),
        ]);
        gcc(&[
            "-O2".as_ref(),
            "-g".as_ref(),
            "-Wall".as_ref(),
            "-Wextra".as_ref(),
            "-Werror".as_ref(),
            "-o".as_ref(),
            target.as_os_str(),
            src.join("target.c").as_os_str(),
        ]);
        Built { driver, target }
    })
}

fn gcc(args: &[&std::ffi::OsStr]) {
    let out = Command::new("gcc")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running gcc: {e}"));
    assert!(
        out.status.success(),
        "gcc {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A scratch directory (removed on drop) that nobody can read.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// DIR for the target (`exists`, `link` -> `exists`, `mnt/`) and the
/// tool's object, extracted from `/usr/sbin/<tool>`.
fn scratch(scenario: &str, tool: &str, binary: &Path) -> (Scratch, PathBuf) {
    let dir = std::env::temp_dir().join(format!("userbpf-bcc-{}-{scenario}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("mnt")).unwrap();
    let scratch = Scratch(dir.clone());
    std::fs::write(dir.join("exists"), b"userbpf\n").unwrap();
    std::os::unix::fs::symlink("exists", dir.join("link")).unwrap();
    let objects =
        extract_bpf_objects(binary).unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
    assert_eq!(
        objects.len(),
        1,
        "{} embeds {} BPF objects, expected one",
        binary.display(),
        objects.len()
    );
    let object = dir.join(format!("{tool}.bpf.o"));
    std::fs::write(&object, &objects[0]).unwrap();
    for (p, mode) in [
        (dir.clone(), 0o755),
        (dir.join("mnt"), 0o755),
        (dir.join("exists"), 0o644),
        (object.clone(), 0o644),
    ] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    (scratch, object)
}

/// A child process whose stdout arrives line by line.
struct Proc {
    name: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// Every stdout line received so far.
    log: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

impl Proc {
    fn spawn(name: &'static str, mut cmd: Command, as_nobody: bool) -> Proc {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("LD_PRELOAD")
            .env_remove("USERBPF_BACKEND")
            .env_remove("USERBPF_DIR")
            .env_remove("LIBBPF_LOG_LEVEL");
        if as_nobody {
            // std drops the supplementary groups when root sets the uid.
            cmd.uid(NOBODY).gid(NOBODY);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting the {name}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let mut err_pipe = child.stderr.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => {
                        if tx.send(l).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Proc {
            name,
            stdin: child.stdin.take(),
            child,
            lines,
            log: Vec::new(),
            stderr,
        }
    }

    /// Reads lines until `done` accepts one (returned); Err(why) on
    /// timeout or end of output.
    fn until(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&str) -> bool,
    ) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if done(&line) {
                        return Ok(line);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "the {} said nothing expected for {timeout:?}",
                        self.name
                    ))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().map(|s| s.to_string()).unwrap_or_default();
                    return Err(format!("the {} exited ({status})", self.name));
                }
            }
        }
    }

    fn send(&mut self, text: &str) {
        if let Some(stdin) = self.stdin.as_mut() {
            let _ = stdin.write_all(text.as_bytes());
            let _ = stdin.flush();
        }
    }

    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for the exit (killed after `timeout`); Some(code).
    fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn describe(&self) -> String {
        format!(
            "--- {} stdout ({} lines, last 60):\n{}\n--- {} stderr (last 4000 bytes):\n{}",
            self.name,
            self.log.len(),
            self.log[self.log.len().saturating_sub(60)..].join("\n"),
            self.name,
            tail_bytes(&self.stderr.lock().unwrap(), 4000)
        )
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

fn tail_bytes(s: &str, n: usize) -> &str {
    let mut at = s.len().saturating_sub(n);
    while !s.is_char_boundary(at) {
        at += 1;
    }
    &s[at..]
}

/// What one tool's run produced.
struct Run {
    pid: i64,
    uid: u32,
    dir: String,
    /// The userbpf namespace (`USERBPF_NAMESPACE`) of the target.
    ns: String,
    /// `USERBPF_BCC_KERNEL=1`: the kernel and the system libbpf, no agent.
    kernel: bool,
    /// The driver's event lines after the markers, from the target's main
    /// thread (comm bcc-target, or bcc-stage2 after execsnoop's exec).
    events: Vec<String>,
    /// Event lines of other threads (the agent's own): reported, not checked.
    others: Vec<String>,
    /// The driver's other output after the markers (syscount's counts).
    counts: Vec<String>,
    /// The target's `result NAME RET` lines, and its other lines.
    results: Vec<(String, i64)>,
    target_lines: Vec<String>,
    /// For failure messages.
    context: String,
}

impl Run {
    fn result(&self, name: &str) -> i64 {
        self.results
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, r)| *r)
            .unwrap_or_else(|| panic!("the target reported no result {name}\n{}", self.context))
    }
}

/// `marker(line)`: Some(kind) when the driver's line is a marker event
/// (kind names which call), None for anything else.
type Marker = fn(&str, &str) -> Option<String>;

/// Runs `tool` on the target; None when the tool is not installed.
fn run_tool(tool: &str, marker_kinds: &[&str], marker: Marker) -> Option<Run> {
    run_scenario(tool, tool, marker_kinds, marker)
}

/// Runs `tool` on `bcc-target SCENARIO DIR` (`target.c`: the tool's name,
/// or another set of calls for the same tool).
fn run_scenario(tool: &str, scenario: &str, marker_kinds: &[&str], marker: Marker) -> Option<Run> {
    let binary = Path::new("/usr/sbin").join(tool);
    if !binary.exists() {
        println!(
            "SKIPPED: {} is missing (install Debian's libbpf-tools: bash scripts/setup.sh test)",
            binary.display()
        );
        return None;
    }
    let kernel = kernel_mode();
    let libdir = artifact_dir();
    let warning = if kernel {
        Some("USERBPF_BCC_KERNEL=1: the system libbpf and the kernel".to_string())
    } else {
        check_artifacts(&libdir)
    };
    if let Some(w) = &warning {
        println!("{w}");
    }
    let built = built();
    let (_scratch, object) = scratch(scenario, tool, &binary);
    let dir = object.parent().unwrap().to_string_lossy().into_owned();
    if tool == "execsnoop" {
        // The exec's new image: this program under another name (comm).
        std::os::unix::fs::symlink(&built.target, Path::new(&dir).join(STAGE2_COMM)).unwrap();
    }
    let ns = format!("bcc-{}-{scenario}", std::process::id());
    // Declared before the processes: dropped (directory removed) after them.
    let _ns_guard = NamespaceDir(ns.clone());
    let userbpf = libdir.join("userbpf");

    let mut cmd = if kernel {
        Command::new(&built.target)
    } else {
        let mut cmd = Command::new(&userbpf);
        cmd.args(["start", "--namespace", &ns, "--"])
            .arg(&built.target);
        cmd
    };
    cmd.args([scenario, &dir]).env_remove("LD_LIBRARY_PATH");
    let mut target = Proc::spawn("target", cmd, is_root());
    let ready = target.until(READY_TIMEOUT, |l| l.starts_with("ready "));
    let pid: i64 = match &ready {
        Ok(l) => l["ready ".len()..].trim().parse().expect("ready PID"),
        Err(e) => panic!(
            "{tool}: the target did not start: {e}\n{}\n{}",
            warning.as_deref().unwrap_or(""),
            target.describe()
        ),
    };

    // execsnoop filters by uid (`-u UID`): the target's.
    let filter = if tool == "execsnoop" {
        run_uid().to_string()
    } else {
        pid.to_string()
    };
    let mut cmd = Command::new(&built.driver);
    cmd.arg(tool)
        .arg(&object)
        .arg(filter)
        .env("USERBPF_NAMESPACE", &ns);
    if kernel {
        cmd.env_remove("LD_LIBRARY_PATH");
    } else {
        cmd.env("LD_LIBRARY_PATH", &libdir);
    }
    let mut driver = Proc::spawn("driver", cmd, is_root() && !kernel);

    let diagnose = |driver: &Proc, target: &Proc, why: &str| -> String {
        let list = list_namespace(&userbpf, &ns);
        format!(
            "{tool}: {why}\n{}\nuid {}, namespace {ns}, artifacts {}\n{}\n{}\n--- userbpf list:\n{list}",
            warning.clone().unwrap_or_default(),
            run_uid(),
            libdir.display(),
            driver.describe(),
            target.describe()
        )
    };

    if let Err(e) = driver.until(ATTACH_TIMEOUT, |l| l.starts_with("attached ")) {
        panic!(
            "{}",
            diagnose(&driver, &target, &format!("loading/attaching: {e}"))
        );
    }
    // Every program the tool loads stays in user space (`USERBPF_BACKEND`
    // unset: auto); on the kernel oracle, every one is in the kernel.
    let placed: Vec<&String> = driver
        .log
        .iter()
        .filter(|l| l.starts_with("prog "))
        .collect();
    let wrong = if kernel { " user" } else { " kernel" };
    if placed.is_empty() || placed.iter().any(|l| l.ends_with(wrong)) {
        panic!(
            "{}",
            diagnose(&driver, &target, "programs are not where they should be")
        );
    }
    // Every marker kind seen: every link is live in the target.
    let mut missing: Vec<String> = marker_kinds.iter().map(|s| s.to_string()).collect();
    let synced = driver.until(SYNC_TIMEOUT, |l| {
        if let Some(kind) = marker(l, &dir) {
            missing.retain(|k| *k != kind);
        }
        missing.is_empty()
    });
    if let Err(e) = synced {
        panic!(
            "{}",
            diagnose(
                &driver,
                &target,
                &format!("the target's marker calls were not all reported ({e}); never seen: {missing:?}")
            )
        );
    }
    let synced_at = driver.log.len();

    target.send("go\n");
    if let Err(e) = target.until(RUN_TIMEOUT, |l| l == "done") {
        panic!("{}", diagnose(&driver, &target, &e));
    }
    // The events are in the buffers: the driver reads what is left and ends.
    driver.close_stdin();
    if let Err(e) = driver.until(RUN_TIMEOUT, |l| l == "end") {
        panic!(
            "{}",
            diagnose(
                &driver,
                &target,
                &format!("waiting for the driver's end: {e}")
            )
        );
    }
    let driver_code = driver.wait(RUN_TIMEOUT);
    target.close_stdin();
    let target_code = target.wait(RUN_TIMEOUT);
    let context = diagnose(&driver, &target, "context");
    assert_eq!(driver_code, Some(0), "the driver failed\n{context}");
    assert_eq!(target_code, Some(0), "the target failed\n{context}");
    let lost: Vec<&String> = driver
        .log
        .iter()
        .filter(|l| l.starts_with("lost "))
        .collect();
    assert!(lost.is_empty(), "lost events: {lost:?}\n{context}");

    let mut run = Run {
        pid,
        uid: run_uid(),
        dir: dir.clone(),
        ns: ns.clone(),
        kernel,
        events: Vec::new(),
        others: Vec::new(),
        counts: Vec::new(),
        results: Vec::new(),
        target_lines: Vec::new(),
        context,
    };
    for line in &driver.log[synced_at..] {
        if line == "end"
            || marker(line, &dir).is_some()
            || line.starts_with("seen ")
            || line.starts_with("prog ")
        {
            continue;
        }
        if line.starts_with("count ") {
            run.counts.push(line.clone());
        } else if matches!(
            field(line, "comm"),
            Some(TARGET_COMM | STAGE2_COMM | TRUE_COMM)
        ) {
            run.events.push(line.clone());
        } else {
            run.others.push(line.clone());
        }
    }
    for line in &target.log {
        match line.strip_prefix("result ").and_then(|r| r.split_once(' ')) {
            Some((name, ret)) => run
                .results
                .push((name.to_string(), ret.parse().expect("result RET"))),
            None => run.target_lines.push(line.clone()),
        }
    }
    println!("{tool}: target pid {pid}, uid {}", run.uid);
    for e in &run.events {
        println!("  {e}");
    }
    for e in &run.counts {
        println!("  {e}");
    }
    if !run.others.is_empty() {
        println!("{tool}: events of other threads (not checked):");
        for e in &run.others {
            println!("  {e}");
        }
    }
    Some(run)
}

/// `USERBPF_BCC_KERNEL=1`: the reference run on the kernel (root only).
fn kernel_mode() -> bool {
    let on = std::env::var_os("USERBPF_BCC_KERNEL").is_some_and(|v| v == "1");
    assert!(!on || is_root(), "USERBPF_BCC_KERNEL=1 needs root");
    on
}

/// `userbpf list` of the namespace, for failure messages.
fn list_namespace(userbpf: &Path, ns: &str) -> String {
    let mut cmd = Command::new(userbpf);
    cmd.args(["list", "--namespace", ns]);
    if is_root() {
        cmd.uid(NOBODY).gid(NOBODY);
    }
    match cmd.output() {
        Ok(o) => format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => format!("(userbpf list: {e})"),
    }
}

/// The namespace directory (`/dev/shm/userbpf-<uid>/<ns>`), removed on
/// drop, once both processes are gone (best effort).
struct NamespaceDir(String);

impl Drop for NamespaceDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(format!("/dev/shm/userbpf-{}/{}", run_uid(), self.0));
    }
}

/// The value of ` key=value` in a driver line (values have no spaces,
/// except the last field's).
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(&format!(" {key}="))? + key.len() + 2;
    let rest = &line[at..];
    Some(rest.split(' ').next().unwrap_or(rest))
}

/// Paths under DIR/sync-* name the call that made them.
fn path_marker(line: &str, dir: &str) -> Option<String> {
    let path = field(line, "path").or_else(|| field(line, "dest"))?;
    let name = path.strip_prefix(dir)?.strip_prefix("/sync-")?;
    Some(match line.split(' ').next() {
        Some("mount") => format!("{}-{name}", field(line, "op")?),
        _ => name.to_string(),
    })
}

fn errno(e: i32) -> i64 {
    -(e as i64)
}

#[test]
fn opensnoop_reports_opens() {
    let Some(run) = run_tool("opensnoop", &["openat", "open"], path_marker) else {
        return;
    };
    let (pid, uid, dir) = (run.pid, run.uid, &run.dir);
    let fd = |name: &str| {
        let r = run.result(name);
        assert!(r >= 0, "{name} failed in the target: {r}\n{}", run.context);
        r
    };
    assert_eq!(run.result("openat_missing"), errno(libc::ENOENT));
    assert_eq!(run.result("open_nodir"), errno(libc::ENOENT));
    let ev = |ret: i64, flags: i32, path: &str| {
        format!(
            "open pid={pid} uid={uid} ret={ret} flags={flags:#x} comm={TARGET_COMM} path={path}"
        )
    };
    let expected = vec![
        ev(fd("open_dir"), libc::O_RDONLY | libc::O_DIRECTORY, dir),
        ev(
            fd("openat_exists"),
            libc::O_RDONLY | libc::O_CLOEXEC,
            "exists",
        ),
        ev(
            errno(libc::ENOENT),
            libc::O_RDONLY,
            &format!("{dir}/missing"),
        ),
        ev(fd("open_exists"), libc::O_RDONLY, &format!("{dir}/exists")),
        ev(
            errno(libc::ENOENT),
            libc::O_WRONLY | libc::O_CREAT,
            &format!("{dir}/nodir/new"),
        ),
    ];
    assert_eq!(run.events, expected, "{}", run.context);
}

#[test]
fn statsnoop_reports_stats() {
    let kinds = ["stat", "lstat", "fstatat", "statfs", "statx"];
    let Some(run) = run_tool("statsnoop", &kinds, path_marker) else {
        return;
    };
    let (pid, dir) = (run.pid, &run.dir);
    let calls: [(&str, i64, String); 10] = [
        ("stat_exists", 0, format!("{dir}/exists")),
        (
            "stat_missing",
            errno(libc::ENOENT),
            format!("{dir}/missing"),
        ),
        ("lstat_link", 0, format!("{dir}/link")),
        ("fstatat_exists", 0, format!("{dir}/exists")),
        (
            "fstatat_missing",
            errno(libc::ENOENT),
            format!("{dir}/missing"),
        ),
        ("libc_stat", 0, format!("{dir}/link")),
        ("statfs_dir", 0, dir.to_string()),
        (
            "statfs_missing",
            errno(libc::ENOENT),
            format!("{dir}/missing"),
        ),
        ("statx_exists", 0, format!("{dir}/exists")),
        (
            "statx_missing",
            errno(libc::ENOENT),
            format!("{dir}/missing"),
        ),
    ];
    let mut expected = Vec::new();
    for (name, ret, path) in &calls {
        assert_eq!(
            run.result(name),
            *ret,
            "{name} in the target\n{}",
            run.context
        );
        expected.push(format!(
            "stat pid={pid} ret={ret} comm={TARGET_COMM} path={path}"
        ));
    }
    assert_eq!(run.events, expected, "{}", run.context);
}

#[test]
fn sigsnoop_reports_signals() {
    fn marker(line: &str, _dir: &str) -> Option<String> {
        if !line.starts_with("signal ") || field(line, "sig") != Some("0") {
            return None;
        }
        match field(line, "tpid")?.parse::<i64>().ok()? - SYNC_PID {
            1 => Some("kill".into()),
            2 => Some("tkill".into()),
            3 => Some("tgkill".into()),
            _ => None,
        }
    }
    let Some(run) = run_tool("sigsnoop", &["kill", "tkill", "tgkill"], marker) else {
        return;
    };
    let pid = run.pid;
    let child: i64 = run
        .target_lines
        .iter()
        .find_map(|l| l.strip_prefix("child "))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no child pid\n{}", run.context));
    assert!(
        run.target_lines.iter().any(|l| l == "child_exit 42"),
        "the child did not get its SIGUSR1\n{}",
        run.context
    );
    assert!(
        run.target_lines
            .iter()
            .any(|l| l == "received usr1=1 usr2=2"),
        "the target's handlers did not run as expected\n{}",
        run.context
    );
    for name in ["kill_self", "kill_child", "tgkill_self", "tkill_self"] {
        assert_eq!(run.result(name), 0, "{name}\n{}", run.context);
    }
    assert_eq!(run.result("kill_nobody"), errno(libc::ESRCH));
    let ev = |tpid: i64, sig: i32, ret: i64| {
        format!("signal pid={pid} tpid={tpid} sig={sig} ret={ret} comm={TARGET_COMM}")
    };
    let expected = vec![
        ev(pid, libc::SIGUSR1, 0),
        ev(child, libc::SIGUSR1, 0),
        // tgkill(pid, tid, sig): tpid is the thread, the main thread here.
        ev(pid, libc::SIGUSR2, 0),
        ev(pid, libc::SIGUSR2, 0),
        ev(SYNC_PID, libc::SIGUSR1, errno(libc::ESRCH)),
    ];
    assert_eq!(run.events, expected, "{}", run.context);
}

#[test]
fn mountsnoop_reports_mounts() {
    let Some(run) = run_tool("mountsnoop", &["MOUNT-mnt", "UMOUNT-mnt"], path_marker) else {
        return;
    };
    let (pid, dir) = (run.pid, &run.dir);
    // Unprivileged (nobody when the tests run as root): every call fails.
    for name in ["mount_tmpfs", "mount_bind", "umount_detach"] {
        assert_eq!(
            run.result(name),
            errno(libc::EPERM),
            "{name}\n{}",
            run.context
        );
    }
    let ev = |op: &str, flags: u64, fs: &str, src: &str, dest: &str, data: &str| {
        format!(
            "mount op={op} pid={pid} tid={pid} ret=-1 flags={flags:#x} comm={TARGET_COMM} \
             fs={fs} src={src} dest={dest} data={data}"
        )
    };
    let expected = vec![
        ev(
            "MOUNT",
            libc::MS_NOSUID | libc::MS_NODEV,
            "tmpfs",
            "userbpf-src",
            &format!("{dir}/mnt"),
            "size=1m",
        ),
        ev(
            "MOUNT",
            libc::MS_BIND,
            "",
            &format!("{dir}/exists"),
            &format!("{dir}/mnt"),
            "",
        ),
        ev(
            "UMOUNT",
            libc::MNT_DETACH as u64,
            "",
            "",
            &format!("{dir}/mnt"),
            "",
        ),
    ];
    // mnt_ns comes from the task struct (bpf_get_current_task), which user
    // space does not have: not compared.
    let events: Vec<String> = run
        .events
        .iter()
        .map(|e| match field(e, "mnt_ns") {
            Some(ns) => e.replace(&format!(" mnt_ns={ns}"), ""),
            None => e.clone(),
        })
        .collect();
    assert_eq!(events, expected, "{}", run.context);
}

#[test]
fn syscount_counts_syscalls() {
    fn marker(line: &str, _dir: &str) -> Option<String> {
        (line == format!("seen nr={NR_SCHED_YIELD}")).then(|| "sched_yield".into())
    }
    let Some(run) = run_tool("syscount", &["sched_yield"], marker) else {
        return;
    };
    assert_eq!(run.result("getppid"), GETPPID_CALLS as i64);
    let count = |nr: u32| -> Option<u64> {
        run.counts.iter().find_map(|l| {
            let rest = l.strip_prefix(&format!("count nr={nr} count="))?;
            rest.parse().ok()
        })
    };
    assert_eq!(
        count(NR_GETPPID),
        Some(GETPPID_CALLS),
        "getppid (110) count\n{}",
        run.context
    );
    assert!(
        count(NR_SCHED_YIELD).is_some_and(|n| n >= 1),
        "sched_yield (24), the target's marker, was not counted\n{}",
        run.context
    );
    // The target printed its results: write (1) was counted too.
    assert!(
        count(1).is_some_and(|n| n >= 1),
        "write (1) was not counted\n{}",
        run.context
    );
}

/// execsnoop's marker: the failing `execve(DIR/sync-execve)` the target
/// repeats, reported only once both programs (enter and exit) are live.
fn exec_marker(line: &str, dir: &str) -> Option<String> {
    let args = line.strip_prefix("exec ")?.split_once(" args=")?.1;
    (args == format!("{dir}/sync-execve")).then(|| "execve".into())
}

/// An execsnoop event line as the driver prints it, ppid left out.
fn exec_event(pid: i64, uid: u32, ret: i64, comm: &str, args: &[&str]) -> String {
    format!(
        "exec pid={pid} uid={uid} ret={ret} argc={} comm={comm} args={}",
        args.len(),
        args.join(" ")
    )
}

/// The events of `pids`, ppid left out: it comes from the task struct
/// (bpf_get_current_task), which user space does not have. (The tool
/// filters by uid only: on the kernel, other processes of that uid, such
/// as the other execsnoop test's target, are seen too; under userbpf, only
/// the namespace's processes are, and every event must be of `pids`.)
fn exec_events_of(run: &Run, pids: &[i64]) -> Vec<String> {
    let of_pids = |e: &&String| {
        field(e, "pid")
            .and_then(|p| p.parse::<i64>().ok())
            .is_some_and(|p| pids.contains(&p))
    };
    if !run.kernel {
        let strays: Vec<&String> = run.events.iter().filter(|e| !of_pids(e)).collect();
        assert!(
            strays.is_empty(),
            "events of other pids than {pids:?}: {strays:?}\n{}",
            run.context
        );
    }
    run.events
        .iter()
        .filter(of_pids)
        .map(|e| match field(e, "ppid") {
            Some(ppid) => e.replace(&format!(" ppid={ppid}"), ""),
            None => e.clone(),
        })
        .collect()
}

#[test]
fn execsnoop_reports_execs_across_the_exec() {
    let Some(run) = run_tool("execsnoop", &["execve"], exec_marker) else {
        return;
    };
    let (pid, uid, dir) = (run.pid, run.uid, &run.dir);
    assert_eq!(
        run.result("execve_missing"),
        errno(libc::ENOENT),
        "{}",
        run.context
    );
    // The second stage ran: the exec succeeded (no result line), and the
    // new image made its own failing execve.
    assert!(
        !run.results.iter().any(|(n, _)| n == "execve_stage2"),
        "the exec of {STAGE2_COMM} failed\n{}",
        run.context
    );
    assert!(
        run.target_lines.iter().any(|l| l == "stage2 argv a b c"),
        "the second stage did not start with its argv\n{}",
        run.context
    );
    assert_eq!(
        run.result("stage2_execve_missing"),
        errno(libc::ENOENT),
        "{}",
        run.context
    );

    for l in run.target_lines.iter().filter(|l| l.starts_with("stage2 ")) {
        println!("  target: {l}");
    }
    // The new image's environment: what the target passed (BCC_DIR, PATH),
    // plus, under userbpf, the agent and the namespace the dispatcher put
    // back; the pending-exit variable is consumed by the new agent.
    let env: Vec<(&str, &str)> = run
        .target_lines
        .iter()
        .filter_map(|l| l.strip_prefix("stage2 env ")?.split_once('='))
        .collect();
    let var = |name: &str| env.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
    assert_eq!(var("BCC_DIR"), Some(dir.as_str()), "{}", run.context);
    assert_eq!(var("PATH"), Some("/usr/bin:/bin"), "{}", run.context);
    if run.kernel {
        assert_eq!(env.len(), 2, "stage 2 env: {env:?}\n{}", run.context);
    } else {
        let preload = var("LD_PRELOAD")
            .unwrap_or_else(|| panic!("the new image has no LD_PRELOAD: {env:?}\n{}", run.context));
        assert!(
            preload
                .split([':', ' '])
                .any(|e| e.ends_with("/libuserbpf_agent.so")),
            "LD_PRELOAD={preload}\n{}",
            run.context
        );
        assert_eq!(
            var("USERBPF_NAMESPACE"),
            Some(run.ns.as_str()),
            "{}",
            run.context
        );
        assert_eq!(
            var("USERBPF_EXEC_PENDING"),
            None,
            "the new image still sees the pending exec\n{}",
            run.context
        );
    }

    let events = exec_events_of(&run, &[pid]);
    let ev = |ret: i64, comm: &str, args: &[&str]| exec_event(pid, uid, ret, comm, args);
    let expected = vec![
        // -x: the failure, in the old image.
        ev(
            errno(libc::ENOENT),
            TARGET_COMM,
            &[&format!("{dir}/missing"), "x"],
        ),
        // sys_exit_execve in the new image: ret 0, its comm, same pid.
        ev(
            0,
            STAGE2_COMM,
            &[&format!("{dir}/{STAGE2_COMM}"), "a", "b", "c"],
        ),
        // The new image is traced: its own exec, entry and exit.
        ev(
            errno(libc::ENOENT),
            STAGE2_COMM,
            &[&format!("{dir}/missing-2"), "y"],
        ),
    ];
    assert_eq!(events, expected, "{}", run.context);
}

/// Children that exec: one made by `fork`, one by `posix_spawn` (glibc:
/// `clone(CLONE_VM | CLONE_VFORK)`, the child runs in its parent's memory
/// until the exec). Each exec is reported with the child's pid, and the
/// parent's own exec afterwards with its own arguments.
///
/// The posix_spawn child runs on the parent's thread-local storage, where
/// `bpf_get_current_pid_tgid` caches the parent's ids: the dispatcher
/// tells the helpers before such a clone (`task::note_vfork`), or
/// execsnoop's entry program would file the child's exec under the
/// parent's tid (the child's exit finding nothing, the parent's next exec
/// reported with the child's arguments).
#[test]
fn execsnoop_reports_children_execs() {
    let Some(run) = run_scenario("execsnoop", "execsnoop-spawn", &["execve"], exec_marker) else {
        return;
    };
    let (pid, uid, dir) = (run.pid, run.uid, &run.dir);
    let child = |name: &str| {
        let c = run.result(name);
        assert!(c > 0, "{name} failed in the target: {c}\n{}", run.context);
        assert_eq!(
            run.result(&format!("{name}_status")),
            0,
            "{name}: /bin/true's exit status\n{}",
            run.context
        );
        c
    };
    let (forked, spawned) = (child("fork_true"), child("spawn_true"));
    assert_eq!(
        run.result("execve_missing"),
        errno(libc::ENOENT),
        "{}",
        run.context
    );
    let expected = vec![
        exec_event(forked, uid, 0, TRUE_COMM, &["/bin/true", "forked"]),
        exec_event(spawned, uid, 0, TRUE_COMM, &["/bin/true", "spawned"]),
        exec_event(
            pid,
            uid,
            errno(libc::ENOENT),
            TARGET_COMM,
            &[&format!("{dir}/missing"), "x"],
        ),
    ];
    let events = exec_events_of(&run, &[forked, spawned, pid]);
    assert_eq!(events, expected, "{}", run.context);
}
