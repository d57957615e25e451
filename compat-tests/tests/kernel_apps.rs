//! The kernel apps of issue 8 (`compat-tests/kernel-apps/`): C programs
//! with bpftool-generated skeletons whose programs only the kernel can
//! run (sched tracepoints, a perf_event sampler, and a mixed object whose
//! uprobe runs in user space while its tracepoint runs in the kernel, on
//! shared maps), built against Debian's libbpf-dev and linked `-lbpf`.
//!
//! Per app:
//!
//! - `real_libbpf`: the system's libbpf.so.1 (Debian 1.1.2), as root; the
//!   output must equal the golden file `kernel-apps/expected/<app>.out`
//!   (`USERBPF_BLESS=1` rewrites it from this run instead);
//! - `userbpf_auto` / `userbpf_kernel`: ours (`LD_LIBRARY_PATH=<target>/release`
//!   or `$USERBPF_LIBDIR`) with `USERBPF_BACKEND=auto` / `kernel`, as root,
//!   against the same golden file;
//! - `unprivileged`: ours in both modes as nobody (uid/gid 65534, no
//!   supplementary groups): the app must exit non-zero and stderr must
//!   name the permission problem. The system libbpf's run is printed for
//!   reference.
//!
//! Lines starting with `~` (counts, latencies, stack ids) are not compared.
//! Without root every test prints why and passes.

#[path = "support/kapps.rs"]
mod kapps;

use std::fs;
use std::path::PathBuf;

use kapps::{Lib, Run};

fn golden_path(app: &str) -> PathBuf {
    kapps::kernel_apps_dir()
        .join("expected")
        .join(format!("{app}.out"))
}

/// The lines that count: everything but `~` lines.
fn comparable(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.starts_with('~')).collect()
}

fn skip_without_root(app: &str) -> bool {
    if kapps::is_root() {
        return false;
    }
    println!("{app}: skipped: it needs root (its programs go to the kernel)");
    true
}

fn describe(app: &str, lib: &Lib, run: &Run) -> String {
    format!(
        "{app} on {} ({}):\nstdout:\n{}\nstderr (last 30 lines):\n{}",
        lib.describe(),
        run.status_text(),
        run.stdout.trim_end(),
        kapps::tail(&run.stderr, 30)
    )
}

/// Runs `app` as root on `lib` and compares it with the golden file.
fn check(app: &str, lib: Lib) {
    if skip_without_root(app) {
        return;
    }
    let exe = kapps::built().join(app);
    let resolved = kapps::assert_resolves(&exe, &lib);
    println!("{app} on {}: {resolved}", lib.describe());
    let run = kapps::run(&exe, &[], &lib, false);
    let golden = golden_path(app);
    if matches!(lib, Lib::System) && std::env::var_os("USERBPF_BLESS").is_some() {
        assert!(run.ok(), "not blessing: {}", describe(app, &lib, &run));
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
    assert!(
        run.ok() && expected == actual,
        "{app}: output differs from {}\nexpected:\n{}\n{}",
        golden.display(),
        expected.join("\n"),
        describe(app, &lib, &run)
    );
    for line in run.stdout.lines().filter(|l| l.starts_with('~')) {
        println!("  {line}");
    }
    println!("{app} on {}: {} lines match", lib.describe(), actual.len());
}

/// Whether stderr names a missing privilege.
fn names_permission_problem(stderr: &str) -> bool {
    let s = stderr.to_ascii_lowercase();
    ["not permitted", "permission", "cap_bpf", "privilege"]
        .iter()
        .any(|w| s.contains(w))
}

/// Runs `app` as nobody: ours must fail clearly in both modes.
fn check_unprivileged(app: &str) {
    if skip_without_root(app) {
        return;
    }
    let exe = kapps::built().join(app);
    let reference = kapps::run(&exe, &[], &Lib::System, true);
    println!(
        "{app} unprivileged on the system libbpf: {}, stderr:\n{}",
        reference.status_text(),
        kapps::tail(&reference.stderr, 4)
    );
    let mut failures = Vec::new();
    for mode in ["auto", "kernel"] {
        let lib = Lib::ours(mode);
        let run = kapps::run(&exe, &[], &lib, true);
        let failed = run.status.is_some_and(|s| !s.success());
        let clear = names_permission_problem(&run.stderr);
        println!(
            "{app} unprivileged on ours ({mode}): {}, stderr:\n{}",
            run.status_text(),
            kapps::tail(&run.stderr, 6)
        );
        if !failed || !clear {
            failures.push(format!(
                "{}: {}\n{}",
                mode,
                if !failed {
                    "did not fail (or was killed)"
                } else {
                    "stderr does not name the permission problem"
                },
                describe(app, &lib, &run)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{app} run as nobody on our library:\n{}",
        failures.join("\n\n")
    );
}

macro_rules! apps {
    ($($app:ident),* $(,)?) => {
        $(
            mod $app {
                use super::*;

                /// The system libbpf (Debian 1.1.2) on the kernel.
                #[test]
                fn real_libbpf() {
                    check(stringify!($app), Lib::System);
                }

                /// Ours, USERBPF_BACKEND=auto.
                #[test]
                fn userbpf_auto() {
                    check(stringify!($app), Lib::ours("auto"));
                }

                /// Ours, USERBPF_BACKEND=kernel.
                #[test]
                fn userbpf_kernel() {
                    check(stringify!($app), Lib::ours("kernel"));
                }

                /// Ours as nobody: a clear failure.
                #[test]
                fn unprivileged() {
                    check_unprivileged(stringify!($app));
                }
            }
        )*

        /// Every app has a golden file and a README entry, and nothing
        /// else sits in expected/.
        #[test]
        fn every_app_has_golden_output_and_docs() {
            let apps = [$(stringify!($app)),*];
            let readme = fs::read_to_string(kapps::kernel_apps_dir().join("README.md")).unwrap();
            for app in apps {
                assert!(golden_path(app).is_file(), "{} is missing", golden_path(app).display());
                assert!(readme.contains(&format!("`{app}`")), "README.md does not describe {app}");
            }
            for entry in fs::read_dir(kapps::kernel_apps_dir().join("expected")).unwrap() {
                let name = entry.unwrap().file_name().to_string_lossy().into_owned();
                let stem = name.trim_end_matches(".out");
                assert!(apps.contains(&stem), "expected/{name} belongs to no app");
            }
        }
    };
}

apps!(runqlat_lite, profile_lite, mixed_probes);

#[test]
fn permission_words() {
    assert!(names_permission_problem(
        "runqlat_lite: load failed: Operation not permitted (-EPERM)"
    ));
    assert!(!names_permission_problem(
        "attach failed: Operation not supported"
    ));
}
