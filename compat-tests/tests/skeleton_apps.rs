//! The skeleton apps of issue 5 (`compat-tests/apps/`): C programs with
//! bpftool-generated skeletons, built against Debian's libbpf-dev headers
//! and linked `-lbpf`, run unchanged on two libraries:
//!
//! - `<app>::real_libbpf`: the system's libbpf.so.1 (1.1.2) on the kernel,
//!   as root (skipped, saying so, otherwise). Its output must equal the
//!   golden file `compat-tests/apps/expected/<app>.out`, which came from
//!   exactly this run; `USERBPF_BLESS=1` rewrites the golden files from it
//!   instead of comparing;
//! - `<app>::userbpf`: ours, through `LD_LIBRARY_PATH=<repo>/target/release`
//!   (or `$USERBPF_LIBDIR`), compared with the same golden file. These fail
//!   until our backend implements what the app uses; they are not ignored,
//!   so that each app turns green as the backend lands.
//!
//! Lines an app starts with `~` (ids, counts, sizes that depend on the
//! machine or the kernel) are not compared and not kept in golden files.
//! The apps are built by `compat-tests/apps/Makefile` into
//! `<target>/compat-apps`, once per test process (and under a file lock,
//! so that two test processes do not build over each other).

use std::fs;
use std::io::Read;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Longest an app may run (they take well under a second on the kernel).
const TIMEOUT: Duration = Duration::from_secs(120);

fn apps_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("apps")
}

/// `<target>`: `$CARGO_TARGET_DIR`, else the directory three levels above
/// this test binary (`<target>/<profile>/deps/skeleton_apps-*`).
fn target_dir() -> PathBuf {
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

/// Where our `libbpf.so.1` is: `$USERBPF_LIBDIR` or `<target>/release`.
fn our_lib_dir() -> PathBuf {
    std::env::var_os("USERBPF_LIBDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("release"))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Builds every app once per process; returns the build directory.
fn built_apps() -> &'static Path {
    static BUILD: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BUILD.get_or_init(build_apps) {
        Ok(dir) => dir,
        Err(e) => panic!("building the skeleton apps failed:\n{e}"),
    }
}

fn build_apps() -> Result<PathBuf, String> {
    let out = target_dir().join("compat-apps");
    fs::create_dir_all(&out).map_err(|e| format!("creating {}: {e}", out.display()))?;
    let lock = fs::File::create(out.join(".build.lock"))
        .map_err(|e| format!("creating the build lock: {e}"))?;
    // SAFETY: a valid open fd; the lock is released when `lock` is dropped.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(format!("flock: {}", std::io::Error::last_os_error()));
    }
    let output = Command::new("make")
        .arg("-C")
        .arg(apps_dir())
        .arg(format!("OUT={}", out.display()))
        .arg("-j2")
        .output()
        .map_err(|e| format!("running make: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "make -C {} OUT={} failed ({}); it needs clang-16, bpftool, libbpf-dev, gcc and \
             /sys/kernel/btf/vmlinux\nstdout:\n{}\nstderr:\n{}",
            apps_dir().display(),
            out.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(out)
}

struct Run {
    stdout: String,
    stderr: String,
    /// `None` when it was killed after `TIMEOUT`.
    status: Option<std::process::ExitStatus>,
}

/// Which file the dynamic loader picks for libbpf.so.1 under `env`
/// (glibc's `LD_TRACE_LOADED_OBJECTS`: the app is mapped, not run).
fn resolved_libbpf(exe: &Path, lib_dir: Option<&Path>) -> String {
    let mut cmd = Command::new(exe);
    cmd.env("LD_TRACE_LOADED_OBJECTS", "1")
        .env_remove("LD_PRELOAD");
    match lib_dir {
        Some(dir) => cmd.env("LD_LIBRARY_PATH", dir),
        None => cmd.env_remove("LD_LIBRARY_PATH"),
    };
    let out = cmd.output().expect("LD_TRACE_LOADED_OBJECTS run");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.trim_start().starts_with("libbpf.so.1"))
        .map(|l| l.trim().to_string())
        .unwrap_or_else(|| "libbpf.so.1 not found".into())
}

fn run_app(exe: &Path, lib_dir: Option<&Path>) -> Run {
    let mut cmd = Command::new(exe);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("LD_PRELOAD")
        .env_remove("LIBBPF_LOG_LEVEL")
        .env_remove("APP_DEBUG");
    // These apps test the userspace backend; as root, `auto` would put
    // their raw_tp programs and maps in the kernel.
    cmd.env("USERBPF_BACKEND", "user");
    match lib_dir {
        Some(dir) => cmd.env("LD_LIBRARY_PATH", dir),
        None => cmd.env_remove("LD_LIBRARY_PATH"),
    };
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
        match child.try_wait().expect("wait for the app") {
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

/// The lines that count: everything but `~` lines.
fn comparable(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.starts_with('~')).collect()
}

/// A line diff (longest common subsequence): `-` lines of the golden file
/// and ` ` context lines carry golden line numbers, `+` lines the actual
/// output's; up to 3 lines of context around each change.
fn diff(expected: &[&str], actual: &[&str]) -> String {
    let (n, m) = (expected.len(), actual.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if expected[i] == actual[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    // (tag, line number, text)
    let mut ops: Vec<(char, usize, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && expected[i] == actual[j] {
            ops.push((' ', i + 1, expected[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', i + 1, expected[i]));
            i += 1;
        } else {
            ops.push(('+', j + 1, actual[j]));
            j += 1;
        }
    }
    let near_change = |k: usize| {
        let lo = k.saturating_sub(3);
        let hi = (k + 3).min(ops.len() - 1);
        ops[lo..=hi].iter().any(|op| op.0 != ' ')
    };
    let mut text = String::new();
    let mut skipped = false;
    for (k, (tag, line, s)) in ops.iter().enumerate() {
        if near_change(k) {
            if skipped {
                text.push_str("   ...\n");
                skipped = false;
            }
            text.push_str(&format!("{tag} {line:4} | {s}\n"));
        } else {
            skipped = true;
        }
    }
    text
}

fn golden_path(app: &str) -> PathBuf {
    apps_dir().join("expected").join(format!("{app}.out"))
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs `app` on one library and compares it with the golden file.
fn check(app: &str, lib_dir: Option<&Path>, library: &str) {
    let exe = built_apps().join(app);
    let resolved = resolved_libbpf(&exe, lib_dir);
    if let Some(dir) = lib_dir {
        assert!(
            resolved.contains(&dir.display().to_string()),
            "{app}: with LD_LIBRARY_PATH={} the loader picks `{resolved}`, not our library",
            dir.display()
        );
    } else {
        assert!(
            !resolved.contains(&target_dir().display().to_string()),
            "{app}: without LD_LIBRARY_PATH the loader picks `{resolved}`, expected the system's"
        );
    }
    println!("{app} on {library}: {resolved}");

    let run = run_app(&exe, lib_dir);
    let golden = golden_path(app);
    let bless = lib_dir.is_none() && std::env::var_os("USERBPF_BLESS").is_some();
    let status = match run.status {
        Some(s) => s.to_string(),
        None => format!("killed after {}s", TIMEOUT.as_secs()),
    };
    let ran_ok = run.status.is_some_and(|s| s.success());
    if bless {
        assert!(
            ran_ok,
            "{app} on {library}: {status}; not blessing\nstdout:\n{}\nstderr:\n{}",
            run.stdout,
            tail(&run.stderr, 40)
        );
        let mut text = comparable(&run.stdout).join("\n");
        text.push('\n');
        fs::write(&golden, text).unwrap_or_else(|e| panic!("{}: {e}", golden.display()));
        println!("{app}: wrote {}", golden.display());
        return;
    }

    let expected_text = fs::read_to_string(&golden).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (generate it as root with USERBPF_BLESS=1 and the real libbpf)",
            golden.display()
        )
    });
    let expected = comparable(&expected_text);
    let actual = comparable(&run.stdout);
    if expected == actual && ran_ok {
        println!("{app} on {library}: {} lines match", actual.len());
        return;
    }
    let mut msg = format!(
        "{app} on {library}: output differs from {} ({status})\n",
        golden.display()
    );
    if expected != actual {
        msg.push_str("--- expected (golden)  +++ actual\n");
        msg.push_str(&diff(&expected, &actual));
    } else {
        msg.push_str("stdout matches, but the app did not exit with 0\n");
    }
    msg.push_str(&format!(
        "stderr (last 40 lines):\n{}\n",
        tail(&run.stderr, 40)
    ));
    panic!("{msg}");
}

fn check_real_libbpf(app: &str) {
    if !is_root() {
        println!(
            "{app}: skipped on the real libbpf: it needs root (maps and programs go to the kernel)"
        );
        return;
    }
    check(app, None, "the system libbpf (kernel)");
}

fn check_userbpf(app: &str) {
    let dir = our_lib_dir();
    let so = dir.join("libbpf.so.1");
    assert!(
        so.exists(),
        "{} is missing: build our library first with `cargo build --release -p userbpf-libbpf-so` \
         (or point USERBPF_LIBDIR at a directory holding libbpf.so.1)",
        so.display()
    );
    check(app, Some(&dir), "userbpf");
}

macro_rules! apps {
    ($($app:ident),* $(,)?) => {
        $(
            mod $app {
                /// The system libbpf on the kernel (root only).
                #[test]
                fn real_libbpf() {
                    super::check_real_libbpf(stringify!($app));
                }

                /// Our libbpf.so.1.
                #[test]
                fn userbpf() {
                    super::check_userbpf(stringify!($app));
                }
            }
        )*

        /// Every app has a golden file and a README entry, and nothing else
        /// sits in expected/.
        #[test]
        fn every_app_has_golden_output_and_docs() {
            let apps = [$(stringify!($app)),*];
            let readme = std::fs::read_to_string(apps_dir().join("README.md")).unwrap();
            for app in apps {
                assert!(golden_path(app).is_file(), "{} is missing", golden_path(app).display());
                assert!(readme.contains(&format!("`{app}`")), "README.md does not describe {app}");
            }
            for entry in std::fs::read_dir(apps_dir().join("expected")).unwrap() {
                let name = entry.unwrap().file_name().to_string_lossy().into_owned();
                let stem = name.trim_end_matches(".out");
                assert!(apps.contains(&stem), "expected/{name} belongs to no app");
            }
        }
    };
}

apps!(
    maps_basic,
    maps_percpu,
    maps_special,
    maps_of_maps_tailcall,
    globals,
    ringbuf_perfbuf,
    btf_api,
    lowlevel_api,
);

#[test]
fn diff_marks_changes_with_context() {
    let d = diff(&["a", "b", "c"], &["a", "x", "c", "d"]);
    assert_eq!(
        d,
        "     1 | a\n-    2 | b\n+    2 | x\n     3 | c\n+    4 | d\n"
    );
    assert_eq!(comparable("x\n~y\nz\n"), vec!["x", "z"]);
}
