//! Running `libbpf-oracle` (the real libbpf, in its own process) and
//! reading its report.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::corpus::Corpus;
use crate::dump::{self, OracleReport};

/// Name of the oracle binary (`src/bin/libbpf-oracle`).
pub const ORACLE_BIN: &str = "libbpf-oracle";

/// Options passed to the oracle.
#[derive(Clone, Debug, Default)]
pub struct OracleOptions {
    /// `btf_custom_path` for `bpf_object__open_mem` (default: the running
    /// kernel's `/sys/kernel/btf/vmlinux`).
    pub btf_custom_path: Option<PathBuf>,
    /// Time open and prepare this many times per object (no log, no
    /// instructions) and report `bench` lines instead.
    pub bench_iterations: Option<u32>,
}

/// Why the libbpf side cannot run here, if it cannot: it needs root
/// (`bpf_object__prepare` creates maps and loads BTF in the kernel) and
/// kernel BTF.
pub fn unavailable_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Some(format!(
            "not root (euid {euid}): libbpf's bpf_object__prepare creates maps in the kernel"
        ));
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Some("no kernel BTF at /sys/kernel/btf/vmlinux".into());
    }
    None
}

/// The oracle binary next to the running executable (for binaries of this
/// package; tests use `env!("CARGO_BIN_EXE_libbpf-oracle")`).
pub fn oracle_next_to_current_exe() -> Result<PathBuf, String> {
    let me = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let dir = me.parent().ok_or("current_exe has no directory")?;
    // Binaries live in target/<profile>/, tests in target/<profile>/deps/.
    for candidate in [dir.join(ORACLE_BIN), dir.join("..").join(ORACLE_BIN)] {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(format!(
        "{ORACLE_BIN} not found next to {} (cargo build -p userbpf-compat-tests --bins)",
        me.display()
    ))
}

/// Runs the oracle on `objects` (name, object file) and parses its report.
pub fn run_oracle(
    exe: &Path,
    objects: &[(String, PathBuf)],
    options: &OracleOptions,
) -> Result<OracleReport, String> {
    let mut cmd = Command::new(exe);
    if let Some(btf) = &options.btf_custom_path {
        cmd.arg("--btf").arg(btf);
    }
    if let Some(n) = options.bench_iterations {
        cmd.arg("--bench").arg(n.to_string());
    }
    for (name, path) in objects {
        let mut arg = std::ffi::OsString::from(format!("{name}="));
        arg.push(path);
        cmd.arg(arg);
    }
    let output = cmd
        .output()
        .map_err(|e| format!("running {}: {e}", exe.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(format!(
            "{} exited with {}:\n{}",
            exe.display(),
            output.status,
            stderr.trim_end()
        ));
    }
    dump::parse(&stdout).map_err(|e| format!("{}: {e}\nstderr:\n{stderr}", exe.display()))
}

/// What `libbpf-oracle` is asked for in [`run_oracle_verdicts`].
#[derive(Clone, Debug)]
pub enum VerdictRequest {
    /// `--verdicts`: every program loaded alone.
    Programs,
    /// `--kprobe-attach PROG:FUNC`.
    KprobeAttach { prog: String, func: String },
}

impl VerdictRequest {
    /// The oracle's (and `kernel_verdict`'s) arguments for it.
    pub fn args(&self) -> Vec<String> {
        match self {
            VerdictRequest::Programs => vec!["--verdicts".into()],
            VerdictRequest::KprobeAttach { prog, func } => {
                vec!["--kprobe-attach".into(), format!("{prog}:{func}")]
            }
        }
    }
}

/// Runs the oracle's kernel verdicts (`crate::verdict`) on `objects`
/// (name, object file): root only, programs are loaded into the kernel.
pub fn run_oracle_verdicts(
    exe: &Path,
    objects: &[(String, PathBuf)],
    request: &VerdictRequest,
) -> Result<crate::verdict::VerdictReport, String> {
    let mut cmd = Command::new(exe);
    cmd.args(request.args());
    for (name, path) in objects {
        let mut arg = std::ffi::OsString::from(format!("{name}="));
        arg.push(path);
        cmd.arg(arg);
    }
    let output = cmd
        .output()
        .map_err(|e| format!("running {}: {e}", exe.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(format!(
            "{} exited with {}:\n{}",
            exe.display(),
            output.status,
            stderr.trim_end()
        ));
    }
    crate::verdict::parse(&stdout).map_err(|e| format!("{}: {e}\nstderr:\n{stderr}", exe.display()))
}

/// Writes `corpus` under `dir` and runs the oracle on all of it.
pub fn run_oracle_on_corpus(
    exe: &Path,
    corpus: &Corpus,
    dir: &Path,
    options: &OracleOptions,
) -> Result<OracleReport, String> {
    let paths = corpus
        .write_to(dir)
        .map_err(|e| format!("writing the corpus to {}: {e}", dir.display()))?;
    let objects: Vec<(String, PathBuf)> = corpus
        .objects
        .iter()
        .map(|o| o.name.clone())
        .zip(paths)
        .collect();
    run_oracle(exe, &objects, options)
}

/// A fresh scratch directory under the system temp dir.
pub fn scratch_dir(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("userbpf-compat-{tag}-{}", std::process::id()))
}
