//! `userbpf`: run libbpf tools on userbpf, and look at what is loaded.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use userbpf_runtime::{namespace, registry};

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
    /// Show the programs, maps and links of every live loader in the namespace.
    List,
    /// Print what programs write with bpf_trace_printk, as the kernel's trace_pipe.
    TracePipe,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Libdir => libdir(),
        Command::List => list(),
        Command::TracePipe => trace_pipe(),
    }
}

/// The directory of this executable, which `cargo build` fills with
/// `libbpf.so.1` too.
fn libdir() -> Result<()> {
    let exe = std::env::current_exe().context("cannot find the userbpf executable")?;
    let dir: PathBuf = exe
        .parent()
        .context("the executable has no directory")?
        .to_path_buf();
    if !dir.join("libbpf.so.1").exists() {
        bail!(
            "{} holds no libbpf.so.1: build it with `cargo build --release -p userbpf-libbpf-so`",
            dir.display()
        );
    }
    println!("{}", dir.display());
    Ok(())
}

fn kind_name(kind: u32) -> &'static str {
    match kind {
        registry::kind::MAP => "map",
        registry::kind::PROG => "prog",
        registry::kind::LINK => "link",
        _ => "?",
    }
}

fn list() -> Result<()> {
    let dir = namespace::namespace_dir();
    let loaders = registry::scan(&dir, true);
    println!("namespace {}", dir.display());
    if loaders.is_empty() {
        println!("no live loaders");
        return Ok(());
    }
    for l in loaders {
        println!("loader pid {}", l.pid);
        let mut records = l.file.records();
        records.sort_by_key(|r| (r.kind, r.id));
        for r in records {
            let mut line = format!(
                "  {:<4} id {:<6} type {:<3} {}",
                kind_name(r.kind),
                r.id,
                r.type_,
                r.name_str()
            );
            if r.kind == registry::kind::LINK {
                line.push_str(&format!(
                    " prog {} pid {} {}+{:#x}",
                    r.prog_id,
                    r.pid,
                    r.path_str(),
                    r.offset
                ));
            }
            println!("{line}");
        }
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
