//! The libbpf-rs app (issue 5: "A Rust app on libbpf-rs, built without
//! vendored libbpf, does the same").
//!
//! `compat-tests/rs-app` is a libbpf-rs application (its own Cargo
//! project, outside the workspace) linked dynamically against
//! `libbpf.so.1`. This test:
//!
//! 1. builds the real libbpf 1.7 as a shared library into
//!    `target/real-libbpf` (`compat-tests/scripts/build-real-libbpf.sh`);
//! 2. builds the app with `CARGO_TARGET_DIR=target/rs-app`, linked against
//!    that library (`LIBBPF_SYS_LIBRARY_PATH`);
//! 3. runs it with `LD_LIBRARY_PATH` at a library directory and compares
//!    its stdout with the golden `compat-tests/rs-app/expected.out`.
//!
//! Two tests, one per library:
//! - `rs_app_on_real_libbpf_matches_golden`: the real libbpf 1.7, on the
//!   kernel. Needs root (maps and programs are created in the kernel);
//!   otherwise it prints why and skips.
//! - `rs_app_on_userbpf_matches_golden`: ours, `target/release/libbpf.so.1`
//!   (build it first: `cargo build --release -p userbpf-libbpf-so`; this
//!   test cannot build it, since the outer cargo holds the target
//!   directory's lock). No root needed: our maps and programs live in the
//!   process.
//!
//! `USERBPF_BLESS=1` makes the real-libbpf test rewrite the golden file
//! from its run instead of comparing.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long the app may run before it is killed.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("compat-tests has a parent")
        .to_path_buf()
}

fn app_dir() -> PathBuf {
    repo().join("compat-tests/rs-app")
}

fn golden_path() -> PathBuf {
    app_dir().join("expected.out")
}

/// Runs `cmd`, returning its stdout, or an error with its output.
fn run_checked(mut cmd: Command, what: &str) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what}: cannot run: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// target/real-libbpf, built (or found up to date) by the script, once
/// per test process: the two tests run in parallel and must not build it
/// at the same time.
fn real_libbpf_dir() -> Result<PathBuf, String> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(build_real_libbpf).clone()
}

fn build_real_libbpf() -> Result<PathBuf, String> {
    let script = repo().join("compat-tests/scripts/build-real-libbpf.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script);
    let t = Instant::now();
    let stdout = run_checked(cmd, "build-real-libbpf.sh")?;
    let dir = stdout
        .lines()
        .last()
        .map(PathBuf::from)
        .ok_or("build-real-libbpf.sh printed no directory")?;
    println!(
        "real libbpf: {} ({:.1} s)",
        dir.display(),
        t.elapsed().as_secs_f64()
    );
    Ok(dir)
}

/// The app binary, built once per test process (both tests share it).
fn app_binary() -> Result<&'static Path, String> {
    static APP: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    APP.get_or_init(|| {
        let libdir = real_libbpf_dir()?;
        let target_dir = repo().join("target/rs-app");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(app_dir())
            .args(["build", "--locked", "--quiet"])
            .env("CARGO_TARGET_DIR", &target_dir);
        // libbpf-sys links libbpf.so (the app) and libbpf.a (its build
        // script) from LIBBPF_SYS_LIBRARY_PATH. rs-app/.cargo/config.toml
        // sets it to target/real-libbpf; passing the same directory spelt
        // differently would make cargo rebuild libbpf-sys and everything
        // above it after every manual build, so only a REAL_LIBBPF_DIR
        // (where the script then builds) is passed on.
        if std::env::var_os("REAL_LIBBPF_DIR").is_some() {
            cmd.env("LIBBPF_SYS_LIBRARY_PATH", &libdir);
        } else {
            cmd.env_remove("LIBBPF_SYS_LIBRARY_PATH");
        }
        let t = Instant::now();
        run_checked(cmd, "cargo build (compat-tests/rs-app)")?;
        println!(
            "rs-app built in {:.1} s (CARGO_TARGET_DIR={})",
            t.elapsed().as_secs_f64(),
            target_dir.display()
        );
        let bin = target_dir.join("debug/userbpf-rs-app");
        if !bin.is_file() {
            return Err(format!("{} not found after the build", bin.display()));
        }
        Ok(bin)
    })
    .as_ref()
    .map(PathBuf::as_path)
    .map_err(Clone::clone)
}

struct Run {
    status: String,
    stdout: String,
    stderr: String,
}

/// Runs the app with `LD_LIBRARY_PATH=libdir`, killing it after
/// [`RUN_TIMEOUT`].
fn run_app(bin: &Path, libdir: &Path) -> Result<Run, String> {
    let mut child = Command::new(bin)
        .env("LD_LIBRARY_PATH", libdir)
        // The userspace backend is under test (the real libbpf ignores it).
        .env("USERBPF_BACKEND", "user")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running {}: {e}", bin.display()))?;
    let mut out_pipe = child.stdout.take().expect("piped stdout");
    let mut err_pipe = child.stderr.take().expect("piped stderr");
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
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status.to_string(),
            Ok(None) if start.elapsed() > RUN_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                break format!("killed after {} s", RUN_TIMEOUT.as_secs());
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("waiting for the app: {e}")),
        }
    };
    let stdout = String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    Ok(Run {
        status,
        stdout,
        stderr,
    })
}

/// A line diff (longest common subsequence): "-" lines only in `want`,
/// "+" lines only in `got`, with line numbers of the golden file.
fn diff(want: &str, got: &str) -> String {
    let a: Vec<&str> = want.lines().collect();
    let b: Vec<&str> = got.lines().collect();
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut out = String::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push_str(&format!("+{:>4} {}\n", i + 1, b[j]));
            j += 1;
        } else {
            out.push_str(&format!("-{:>4} {}\n", i + 1, a[i]));
            i += 1;
        }
    }
    out
}

/// Runs the app on `libdir` and compares its stdout with the golden file.
fn check_against_golden(libdir: &Path, which: &str, bless: bool) {
    let bin = app_binary().unwrap_or_else(|e| panic!("{e}"));
    let run = run_app(bin, libdir).unwrap_or_else(|e| panic!("{e}"));
    println!(
        "{which}: LD_LIBRARY_PATH={} {}: {}",
        libdir.display(),
        bin.display(),
        run.status
    );
    if bless {
        std::fs::write(golden_path(), &run.stdout)
            .unwrap_or_else(|e| panic!("writing {}: {e}", golden_path().display()));
        println!(
            "wrote {} ({} lines)",
            golden_path().display(),
            run.stdout.lines().count()
        );
        return;
    }
    let want = std::fs::read_to_string(golden_path())
        .unwrap_or_else(|e| panic!("reading {}: {e}", golden_path().display()));
    if run.stdout != want {
        let d = diff(&want, &run.stdout);
        let changed = d.lines().count();
        panic!(
            "{which}: stdout differs from {} ({changed} lines; exit: {}):\n{d}\n--- stderr (last 40 lines)\n{}",
            golden_path().display(),
            run.status,
            tail(&run.stderr, 40)
        );
    }
    println!(
        "{which}: {} lines identical to the golden file",
        want.lines().count()
    );
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[test]
fn rs_app_on_real_libbpf_matches_golden() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        println!(
            "skipped: not root (euid {euid}); the real libbpf creates maps and programs in the kernel"
        );
        return;
    }
    let libdir = real_libbpf_dir().unwrap_or_else(|e| panic!("{e}"));
    let bless = std::env::var_os("USERBPF_BLESS").is_some_and(|v| v == "1");
    check_against_golden(&libdir, "real libbpf 1.7", bless);
}

#[test]
fn rs_app_on_userbpf_matches_golden() {
    let libdir = repo().join("target/release");
    let lib = libdir.join("libbpf.so.1");
    assert!(
        lib.exists(),
        "{} not found: build it with `cargo build --release -p userbpf-libbpf-so` \
         (this test cannot: the outer cargo holds the target directory's lock)",
        lib.display()
    );
    check_against_golden(&libdir, "userbpf", false);
}
