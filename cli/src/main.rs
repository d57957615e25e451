//! `userbpf`: run libbpf tools on userbpf, and look at what is loaded.
//!
//! - `load TOOL ARGS...` runs an existing libbpf tool on our libbpf.so.1
//!   (LD_LIBRARY_PATH), `start PROGRAM ARGS...` runs a target with the
//!   agent (LD_PRELOAD). Both exec: the tool or target *is* the process,
//!   with its exit status and signals.
//! - `attach PID` loads the agent into a running process (ptrace, an
//!   injected `dlopen`: `inject`), `detach PID` removes its hooks.
//! - `list` shows what the loaders of a namespace published and what the
//!   agents in target processes attached.

mod elf;
mod inject;
mod list;

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use userbpf_runtime::namespace;

/// The agent's file name, next to the userbpf executable.
const AGENT_LIB: &str = "libuserbpf_agent.so";
/// The program engine variable (`userbpf_runtime::vm::ENGINE_ENV`).
const ENGINE_ENV: &str = "USERBPF_ENGINE";

#[derive(Parser)]
#[command(
    name = "userbpf",
    version,
    about = "Userspace eBPF behind libbpf's ABI"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the directory that holds userbpf's libbpf.so.1 (for LD_LIBRARY_PATH).
    Libdir,
    /// Run a libbpf tool on userbpf's libbpf.so.1 (the tool loads and attaches as usual).
    #[command(long_about = "Run a libbpf tool on userbpf's libbpf.so.1.\n\n\
            Executes TOOL in place of this process with LD_LIBRARY_PATH prefixed by the \
            directory of userbpf's libbpf.so.1, so the tool's programs, maps and links go \
            to userbpf instead of the kernel (no root needed). Exit status and signals are \
            the tool's own. The tool must load libbpf.so.1 dynamically: a tool with libbpf \
            linked in statically (Debian's libbpf-tools are built that way) cannot be \
            redirected, and `load` refuses it.\n\n\
            Example: userbpf load -- ./malloccount 10")]
    Load(RunArgs),
    /// Run a program with the userbpf agent, so that loaded programs attach inside it.
    #[command(long_about = "Run a program with the userbpf agent.\n\n\
            Executes PROGRAM in place of this process with LD_PRELOAD prefixed by \
            libuserbpf_agent.so (found next to the userbpf executable). The agent reads the \
            links that loaders (`userbpf load`) publish in the namespace and installs their \
            uprobes in the process. Exit status and signals are the program's own. A \
            statically linked program cannot preload the agent, and `start` refuses it.\n\n\
            Example: userbpf start -- ./victim 5")]
    Start(RunArgs),
    /// Load the userbpf agent into a running process (ptrace), without restarting it.
    #[command(
        long_about = "Load the userbpf agent into a running process, without restarting \
            it.\n\n\
            Stops one thread of process PID with ptrace, makes it call dlopen on \
            libuserbpf_agent.so (found next to the userbpf executable) and the agent's start \
            function, puts every register back and lets it go; the other threads keep running. \
            The links that loaders published for that process, or for all processes, are \
            installed before this command returns; later ones as they come, as with `start`. \
            If the agent is loaded already (by `start`, or an earlier `attach`), it is started \
            again. The agent uses the namespace of the process's environment \
            (USERBPF_NAMESPACE, USERBPF_DIR; else \"default\").\n\n\
            Needs ptrace rights on the process: the same user (and a dumpable process), or \
            CAP_SYS_PTRACE; Yama's ptrace_scope may restrict it further.\n\n\
            Example: userbpf attach 1234"
    )]
    Attach(AttachArgs),
    /// Remove the hooks of the userbpf agent from a running process (ptrace).
    #[command(
        long_about = "Remove the hooks of the userbpf agent from a running process.\n\n\
            Calls the agent's stop function in process PID (as `attach` calls dlopen): every \
            hook is removed and the code is as it was, the agent's thread exits and its \
            registry file goes. The library stays loaded, idle; `userbpf attach PID` starts it \
            again.\n\n\
            Example: userbpf detach 1234"
    )]
    Detach(DetachArgs),
    /// Show the programs, maps and links of every live loader in the namespace, and the
    /// processes they are attached to.
    List(ListArgs),
    /// Print what programs write with bpf_trace_printk, as the kernel's trace_pipe.
    TracePipe(NsArgs),
}

#[derive(Args)]
struct NsArgs {
    /// The namespace to use (sets USERBPF_NAMESPACE; default: $USERBPF_NAMESPACE, else
    /// "default").
    #[arg(long, value_name = "NAME", value_parser = parse_namespace)]
    namespace: Option<String>,
}

#[derive(Args)]
struct ListArgs {
    #[command(flatten)]
    ns: NsArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct AttachArgs {
    /// The process.
    #[arg(value_name = "PID")]
    pid: i32,
    /// The agent library to load (default: libuserbpf_agent.so next to the userbpf executable).
    #[arg(long, value_name = "PATH")]
    agent: Option<PathBuf>,
    /// Give up after this many seconds (the process is put back as it was).
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    timeout: f64,
}

#[derive(Args)]
struct DetachArgs {
    /// The process.
    #[arg(value_name = "PID")]
    pid: i32,
    /// Give up after this many seconds (the process is put back as it was).
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    timeout: f64,
}

#[derive(Clone, Copy, ValueEnum)]
enum Engine {
    /// The checked interpreter.
    Interp,
    /// The Cranelift JIT (trusted programs only).
    Jit,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    ns: NsArgs,
    /// The engine that runs the programs (sets USERBPF_ENGINE).
    #[arg(long, value_enum)]
    engine: Option<Engine>,
    /// Skip the check that the program is dynamically linked (and, for `load`, that it
    /// loads libbpf.so.1 itself).
    #[arg(long)]
    no_check: bool,
    /// The program and its arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "PROGRAM [ARGS]..."
    )]
    command: Vec<OsString>,
}

fn parse_namespace(s: &str) -> Result<String, String> {
    if s.is_empty() || s.contains('/') || s == "." || s == ".." || s.contains('\0') {
        return Err("a namespace is a non-empty name without '/' (not . or ..)".into());
    }
    Ok(s.to_string())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The chain of causes, never a backtrace: these are user errors.
            eprintln!("userbpf: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Libdir => {
            println!("{}", libdir()?.display());
            Ok(())
        }
        Command::Load(args) => load(args),
        Command::Start(args) => start(args),
        Command::Attach(args) => attach(args),
        Command::Detach(args) => detach(args),
        Command::List(args) => {
            use_namespace(&args.ns);
            list::list(args.json)
        }
        Command::TracePipe(ns) => {
            use_namespace(&ns);
            trace_pipe()
        }
    }
}

/// Makes `--namespace` this process's namespace (and its children's).
fn use_namespace(ns: &NsArgs) {
    if let Some(name) = &ns.namespace {
        // SAFETY: called from main before any other thread exists.
        unsafe {
            std::env::set_var(namespace::ENV_NAMESPACE, name);
            // USERBPF_DIR would win over the name.
            std::env::remove_var(namespace::ENV_DIR);
        }
    }
}

/// The directory of this executable.
fn exe_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the userbpf executable")?;
    Ok(exe
        .parent()
        .context("the executable has no directory")?
        .to_path_buf())
}

/// The directory of this executable, which `cargo build` fills with
/// `libbpf.so.1` too.
fn libdir() -> Result<PathBuf> {
    let dir = exe_dir()?;
    if !dir.join("libbpf.so.1").exists() {
        bail!(
            "{} holds no libbpf.so.1: build it with `cargo build --release -p userbpf-libbpf-so`",
            dir.display()
        );
    }
    Ok(dir)
}

/// The agent library next to this executable.
fn agent_path() -> Result<PathBuf> {
    let path = exe_dir()?.join(AGENT_LIB);
    if !path.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p userbpf-agent`",
            path.display()
        );
    }
    Ok(path)
}

/// `dir` (or `item`) in front of a list variable's current value.
fn prefixed(var: &str, item: &OsStr) -> OsString {
    let mut v = item.to_os_string();
    if let Some(old) = std::env::var_os(var).filter(|o| !o.is_empty()) {
        v.push(":");
        v.push(old);
    }
    v
}

/// Finds `program` as `execvp` would: a name with a '/' as is, else the
/// first executable file of that name in `PATH`.
fn resolve_program(program: &OsStr) -> Result<PathBuf> {
    let p = Path::new(program);
    if program.as_encoded_bytes().contains(&b'/') {
        if !p.exists() {
            bail!("{}: no such file", p.display());
        }
        return Ok(p.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(p);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    bail!("{}: command not found in PATH", p.display())
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The namespace and engine variables, set on `cmd`.
fn apply_common(cmd: &mut std::process::Command, args: &RunArgs) {
    if let Some(name) = &args.ns.namespace {
        cmd.env(namespace::ENV_NAMESPACE, name);
        cmd.env_remove(namespace::ENV_DIR);
    }
    if let Some(engine) = args.engine {
        cmd.env(
            ENGINE_ENV,
            match engine {
                Engine::Interp => "interp",
                Engine::Jit => "jit",
            },
        );
    }
}

/// Replaces this process with `cmd`; returns only on failure.
fn exec(mut cmd: std::process::Command, shown: &Path) -> Result<()> {
    let err = cmd.exec();
    Err(err).with_context(|| format!("cannot run {}", shown.display()))
}

fn load(args: RunArgs) -> Result<()> {
    let lib = libdir()?;
    let program = resolve_program(&args.command[0])?;
    if !args.no_check {
        check_load_target(&program, &lib)?;
    }
    let mut cmd = std::process::Command::new(&program);
    cmd.arg0(&args.command[0]).args(&args.command[1..]);
    cmd.env(
        "LD_LIBRARY_PATH",
        prefixed("LD_LIBRARY_PATH", lib.as_os_str()),
    );
    apply_common(&mut cmd, &args);
    exec(cmd, &program)
}

fn start(args: RunArgs) -> Result<()> {
    let agent = agent_path()?;
    let agent = agent
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", agent.display()))?;
    let program = resolve_program(&args.command[0])?;
    if !args.no_check {
        check_start_target(&program)?;
    }
    let mut cmd = std::process::Command::new(&program);
    cmd.arg0(&args.command[0]).args(&args.command[1..]);
    cmd.env("LD_PRELOAD", prefixed("LD_PRELOAD", agent.as_os_str()));
    apply_common(&mut cmd, &args);
    exec(cmd, &program)
}

fn timeout(secs: f64) -> Result<std::time::Duration> {
    std::time::Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
        .context("--timeout wants a positive number of seconds")
}

/// (installed, failed) ATTACHMENT records of the agent of `pid`.
fn probes_of(dir: &Path, pid: i32) -> (usize, usize) {
    use userbpf_runtime::registry::{self, kind, Role};
    let recs: Vec<_> = registry::scan_role(dir, Role::Agent, false)
        .into_iter()
        .filter(|a| a.pid == pid as u32)
        .flat_map(|a| a.file.records())
        .filter(|r| r.kind == kind::ATTACHMENT)
        .collect();
    let ok = recs.iter().filter(|r| r.flags == 0).count();
    (ok, recs.len() - ok)
}

fn attach(args: AttachArgs) -> Result<()> {
    let agent = match &args.agent {
        Some(p) => p.clone(),
        None => agent_path()?,
    };
    if agent.file_name() != Some(OsStr::new(inject::AGENT_FILE)) {
        bail!(
            "{}: the agent must be named {} (that is how it is recognised in a process)",
            agent.display(),
            inject::AGENT_FILE
        );
    }
    let agent = agent
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", agent.display()))?;
    let r = inject::run(
        args.pid,
        inject::Action::Attach(&agent),
        timeout(args.timeout)?,
    )?;
    if r.loaded_now {
        println!(
            "attached to process {} ({}): loaded {}, agent started",
            r.pid, r.comm, r.agent
        );
    } else {
        println!(
            "attached to process {} ({}): agent already loaded ({}), started",
            r.pid, r.comm, r.agent
        );
    }
    if let Some(ns) = &r.namespace {
        let (ok, failed) = probes_of(ns, r.pid);
        let failed = if failed > 0 {
            format!(", {failed} failed (see `userbpf list`)")
        } else {
            String::new()
        };
        println!(
            "namespace {}: {ok} probe(s) installed{failed}",
            ns.display()
        );
    }
    print_injection(&r);
    inject::debug(format_args!("reported"));
    Ok(())
}

fn detach(args: DetachArgs) -> Result<()> {
    let r = inject::run(args.pid, inject::Action::Detach, timeout(args.timeout)?)?;
    println!(
        "detached from process {} ({}): hooks removed, agent stopped ({} stays loaded)",
        r.pid, r.comm, r.agent
    );
    print_injection(&r);
    Ok(())
}

fn print_injection(r: &inject::Report) {
    let retries = if r.retries > 0 {
        format!(", after {} retries", r.retries)
    } else {
        String::new()
    };
    println!(
        "injection: {:.3} ms in thread {} ({}){retries}",
        r.stopped_for.as_secs_f64() * 1e3,
        r.tid,
        r.thread_was
    );
}

/// Refuses what LD_LIBRARY_PATH cannot redirect to our libbpf.so.1.
fn check_load_target(program: &Path, lib: &Path) -> Result<()> {
    let info = elf::inspect(program)?;
    let shown = program.display();
    match info {
        elf::Exe::Script | elf::Exe::Unknown => Ok(()),
        elf::Exe::Static => bail!(
            "{shown} is statically linked: it cannot load userbpf's libbpf.so.1 \
             (only a tool linked dynamically against libbpf.so.1, -lbpf, can be redirected)"
        ),
        elf::Exe::Dynamic(d) => {
            if !d.needed.iter().any(|n| n == "libbpf.so.1") {
                bail!(
                    "{shown} does not load libbpf.so.1 (no DT_NEEDED entry): libbpf is linked \
                     into it statically, so userbpf cannot replace it. Rebuild the tool against \
                     the shared library (-lbpf); Debian's libbpf-tools, for one, embed libbpf. \
                     (--no-check runs it anyway, for a tool that gets libbpf.so.1 through \
                     another library.)"
                );
            }
            // DT_RPATH (without DT_RUNPATH) wins over LD_LIBRARY_PATH.
            if d.runpath.is_none() {
                if let Some(rpath) = &d.rpath {
                    let origin = program
                        .canonicalize()
                        .ok()
                        .and_then(|p| p.parent().map(Path::to_path_buf))
                        .unwrap_or_default();
                    let ours = lib.join("libbpf.so.1").canonicalize().ok();
                    for dir in rpath.split(':').filter(|d| !d.is_empty()) {
                        let dir = dir
                            .replace("${ORIGIN}", &origin.to_string_lossy())
                            .replace("$ORIGIN", &origin.to_string_lossy());
                        let theirs = Path::new(&dir).join("libbpf.so.1");
                        if let Ok(t) = theirs.canonicalize() {
                            if Some(&t) != ours.as_ref() {
                                bail!(
                                    "{shown} finds libbpf.so.1 through its DT_RPATH ({}), which \
                                     LD_LIBRARY_PATH cannot override",
                                    theirs.display()
                                );
                            }
                            break;
                        }
                    }
                }
            }
            Ok(())
        }
    }
}

/// Refuses what LD_PRELOAD cannot load the agent into.
fn check_start_target(program: &Path) -> Result<()> {
    if let elf::Exe::Static = elf::inspect(program)? {
        bail!(
            "{} is statically linked: the dynamic loader never runs for it, so LD_PRELOAD \
             cannot load the userbpf agent",
            program.display()
        );
    }
    Ok(())
}

fn trace_pipe() -> Result<()> {
    let path = namespace::trace_pipe_path();
    namespace::ensure_namespace_dir().context("cannot create the namespace directory")?;
    let cpath = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())?;
    // SAFETY: a valid C path; EEXIST is fine.
    let r = unsafe { libc::mkfifo(cpath.as_ptr(), 0o600) };
    if r != 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
        bail!("cannot create {}", path.display());
    }
    // Read-write so that the pipe never reports end-of-file between writers.
    let mut fifo = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let mut buf = [0u8; 4096];
    let mut out = std::io::stdout();
    loop {
        let n = fifo.read(&mut buf)?;
        out.write_all(&buf[..n])?;
        out.flush()?;
    }
}
