//! Shared by `kernel_verdicts` and `kernel_apps`: building
//! `compat-tests/kernel-apps/` and running its binaries on a chosen
//! `libbpf.so.1`.

// Each test crate uses a different subset.
#![allow(dead_code)]

use std::fs;
use std::io::Read;
use std::os::unix::io::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Longest a run may take (the apps take about a second).
pub const TIMEOUT: Duration = Duration::from_secs(120);

/// `nobody`/`nogroup`: the unprivileged runs.
pub const NOBODY: u32 = 65534;

pub fn kernel_apps_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("kernel-apps")
}

/// `<target>`: `$CARGO_TARGET_DIR`, else three levels above this test
/// binary (`<target>/<profile>/deps/<test>-*`).
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        let dir = PathBuf::from(dir);
        return if dir.is_absolute() {
            dir
        } else {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir)
        };
    }
    let exe = std::env::current_exe().expect("current_exe");
    exe.ancestors()
        .nth(3)
        .expect("<target>/<profile>/deps/<test>")
        .to_path_buf()
}

/// Where our `libbpf.so.1` is: `$USERBPF_LIBDIR` or `<target>/release`;
/// panics with the build command when it is missing.
pub fn our_lib_dir() -> PathBuf {
    let dir = std::env::var_os("USERBPF_LIBDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("release"));
    let so = dir.join("libbpf.so.1");
    assert!(
        so.exists(),
        "{} is missing: build our library first with `cargo build --release -p userbpf-libbpf-so` \
         (or point USERBPF_LIBDIR at a directory holding libbpf.so.1)",
        so.display()
    );
    dir
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Builds the kernel apps once per process (under a file lock, so that
/// two test processes do not build over each other); returns the build
/// directory.
pub fn built() -> &'static Path {
    static BUILD: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BUILD.get_or_init(build) {
        Ok(dir) => dir,
        Err(e) => panic!("building compat-tests/kernel-apps failed:\n{e}"),
    }
}

fn build() -> Result<PathBuf, String> {
    let out = target_dir().join("compat-kernel-apps");
    fs::create_dir_all(&out).map_err(|e| format!("creating {}: {e}", out.display()))?;
    let lock = fs::File::create(out.join(".build.lock"))
        .map_err(|e| format!("creating the build lock: {e}"))?;
    // SAFETY: a valid open fd; the lock is released when `lock` is dropped.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(format!("flock: {}", std::io::Error::last_os_error()));
    }
    let output = Command::new("make")
        .arg("-C")
        .arg(kernel_apps_dir())
        .arg(format!("OUT={}", out.display()))
        .arg("-j2")
        .output()
        .map_err(|e| format!("running make: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "make -C {} OUT={} failed ({}); it needs clang-16, bpftool, libbpf-dev, gcc and \
             /sys/kernel/btf/vmlinux\nstdout:\n{}\nstderr:\n{}",
            kernel_apps_dir().display(),
            out.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(out)
}

/// Which library a run uses.
#[derive(Clone, Debug)]
pub enum Lib {
    /// The system's libbpf.so.1 (Debian 1.1.2): `LD_LIBRARY_PATH` unset.
    System,
    /// `LD_LIBRARY_PATH=<dir>` with `USERBPF_BACKEND=<mode>` (None: unset).
    At(PathBuf, Option<&'static str>),
}

impl Lib {
    pub fn ours(mode: &'static str) -> Lib {
        Lib::At(our_lib_dir(), Some(mode))
    }

    pub fn describe(&self) -> String {
        match self {
            Lib::System => "the system libbpf".into(),
            Lib::At(dir, Some(mode)) => format!("{} (USERBPF_BACKEND={mode})", dir.display()),
            Lib::At(dir, None) => dir.display().to_string(),
        }
    }

    fn apply(&self, cmd: &mut Command) {
        cmd.env_remove("LD_PRELOAD");
        match self {
            Lib::System => {
                cmd.env_remove("LD_LIBRARY_PATH")
                    .env_remove("USERBPF_BACKEND");
            }
            Lib::At(dir, mode) => {
                cmd.env("LD_LIBRARY_PATH", dir);
                match mode {
                    Some(m) => cmd.env("USERBPF_BACKEND", m),
                    None => cmd.env_remove("USERBPF_BACKEND"),
                };
            }
        }
    }
}

/// The `libbpf.so.1` line the dynamic loader resolves for `exe` under
/// `lib` (glibc's `LD_TRACE_LOADED_OBJECTS`: mapped, not run).
pub fn resolved_libbpf(exe: &Path, lib: &Lib) -> String {
    let mut cmd = Command::new(exe);
    lib.apply(&mut cmd);
    cmd.env("LD_TRACE_LOADED_OBJECTS", "1");
    let out = cmd.output().expect("LD_TRACE_LOADED_OBJECTS run");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.trim_start().starts_with("libbpf.so.1"))
        .map(|l| l.trim().to_string())
        .unwrap_or_else(|| "libbpf.so.1 not found".into())
}

/// Panics unless `exe` gets the library `lib` names.
pub fn assert_resolves(exe: &Path, lib: &Lib) -> String {
    let resolved = resolved_libbpf(exe, lib);
    match lib {
        Lib::At(dir, _) => assert!(
            resolved.contains(&dir.display().to_string()),
            "{}: with LD_LIBRARY_PATH={} the loader picks `{resolved}`",
            exe.display(),
            dir.display()
        ),
        Lib::System => assert!(
            !resolved.contains(&target_dir().display().to_string()),
            "{}: without LD_LIBRARY_PATH the loader picks `{resolved}`, expected the system's",
            exe.display()
        ),
    }
    resolved
}

pub struct Run {
    pub stdout: String,
    pub stderr: String,
    /// `None` when it was killed after [`TIMEOUT`].
    pub status: Option<std::process::ExitStatus>,
}

impl Run {
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    pub fn status_text(&self) -> String {
        match self.status {
            Some(s) => s.to_string(),
            None => format!("killed after {}s", TIMEOUT.as_secs()),
        }
    }
}

/// Runs `exe args` on `lib`; `unprivileged`: as nobody/nogroup with no
/// supplementary groups (needs root).
pub fn run(exe: &Path, args: &[String], lib: &Lib, unprivileged: bool) -> Run {
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("LIBBPF_LOG_LEVEL")
        .env_remove("APP_DEBUG");
    lib.apply(&mut cmd);
    if unprivileged {
        // std drops the supplementary groups (setgroups(0)) when a root
        // parent sets the uid.
        cmd.uid(NOBODY).gid(NOBODY);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", exe.display()));
    let mut out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out_pipe.read_to_end(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err_pipe.read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        match child.try_wait().expect("wait for the child") {
            Some(status) => break Some(status),
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    Run {
        stdout: String::from_utf8_lossy(&out_reader.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&err_reader.join().unwrap()).into_owned(),
        status,
    }
}

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
