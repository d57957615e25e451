//! Uprobe overhead against the kernel, and the agent's start-up, attach time
//! and resident memory (issue 6; docs/benchmarks.md).
//!
//! ```sh
//! cargo build --release -p userbpf-benches -p userbpf-agent
//! sudo target/release/userbpf-uprobe-bench            # kernel rows need root
//! target/release/userbpf-uprobe-bench --quick         # rough numbers, ~10 s
//! ```
//!
//! The userbpf rows run in a separate target process (benches/uprobe/target.c,
//! built with gcc at start) under `LD_PRELOAD=target/release/libuserbpf_agent.so`
//! (a copy taken at start, in target/uprobe-bench/): this process is the loader (maps, programs and links in the registry of a
//! private namespace), waits for the target's agent to report each probe as
//! an ATTACHMENT record, then asks the target to time its own loop. The
//! kernel rows run in a second target process without the agent: a uprobe
//! PMU perf event on the same file offset, with a BPF_PROG_TYPE_KPROBE
//! program attached by PERF_EVENT_IOC_SET_BPF.
//!
//! Checks made before numbers are printed: the first bytes of each function
//! in the file are the instruction its row names; the hook's `jmp` is in the
//! target's memory while an empty userbpf program is attached; a counting
//! program (userbpf and kernel) sees exactly as many entries and returns as
//! calls were made; the HASH program's counter equals the calls timed.

use std::collections::HashMap;
use std::ffi::CString;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use object::{Object, ObjectSection, ObjectSymbol};
use userbpf_runtime::asm::assemble;
use userbpf_runtime::image::ProgramImage;
use userbpf_runtime::isa::{Insn, BPF_PSEUDO_MAP_IDX};
use userbpf_runtime::maps::{Map, MapSpec};
use userbpf_runtime::registry::{self, kind, AttachKind, RecordData, Registration, RegistryFile};

const TARGET_C: &str = include_str!("../../uprobe/target.c");
const STARTUP_C: &str = include_str!("../../uprobe/startup.c");

// ---------------------------------------------------------------- config

struct Config {
    /// Calls per repetition, userbpf rows and baselines.
    calls: u64,
    /// Calls per repetition, kernel rows (push, nop5).
    kcalls: u64,
    /// Calls per repetition, kernel rows on endbr64 (~9 µs a hit).
    kcalls_endbr: u64,
    reps: u64,
    /// Rounds over all rows (best kept).
    rounds: u64,
    startup_runs: usize,
    attach_runs: usize,
    /// Profiling aid: only time an empty uprobe (and uretprobe) on the nop5
    /// function, this many calls each, and stop.
    profile: Option<u64>,
}

fn parse_args() -> Result<Config> {
    let mut c = Config {
        calls: 2_000_000,
        kcalls: 200_000,
        kcalls_endbr: 20_000,
        reps: 5,
        rounds: 3,
        startup_runs: 200,
        attach_runs: 100,
        profile: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = || -> Result<u64> {
            args.next()
                .ok_or_else(|| anyhow!("{a} needs a value"))?
                .replace('_', "")
                .parse::<f64>()
                .map(|v| v as u64)
                .with_context(|| format!("{a}: not a number"))
        };
        match a.as_str() {
            "--quick" => {
                c.calls = 500_000;
                c.kcalls = 20_000;
                c.kcalls_endbr = 2_000;
                c.reps = 3;
                c.rounds = 1;
                c.startup_runs = 30;
                c.attach_runs = 15;
            }
            "--calls" => c.calls = num()?,
            "--kcalls" => c.kcalls = num()?,
            "--kcalls-endbr" => c.kcalls_endbr = num()?,
            "--reps" => c.reps = num()?.max(1),
            "--rounds" => c.rounds = num()?.max(1),
            "--startup-runs" => c.startup_runs = num()? as usize,
            "--attach-runs" => c.attach_runs = num()? as usize,
            "--profile" => c.profile = Some(num()?),
            "-h" | "--help" => {
                println!(
                    "userbpf-uprobe-bench [--quick] [--calls N] [--kcalls N] [--kcalls-endbr N] \
                     [--reps N] [--rounds N] [--startup-runs N] [--attach-runs N] [--profile CALLS]\n\
                     --profile CALLS: only an empty uprobe, then an empty uretprobe, on the \
                     nop5 function (for `perf record`)"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other} (try --help)"),
        }
    }
    Ok(c)
}

// ---------------------------------------------------------------- files

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("benches/ has a parent")
        .to_path_buf()
}

/// A private copy of target/release/libuserbpf_agent.so, so that a rebuild
/// during the run (other work on the machine) cannot change what is
/// measured half way.
fn agent_path() -> Result<PathBuf> {
    let p = workspace().join("target/release/libuserbpf_agent.so");
    if !p.exists() {
        bail!(
            "{} missing: run `cargo build --release -p userbpf-agent` first",
            p.display()
        );
    }
    let dir = workspace().join("target/uprobe-bench");
    std::fs::create_dir_all(&dir)?;
    // The agent only starts from a file of this name.
    let copy = dir.join("libuserbpf_agent.so");
    let tmp = dir.join(format!(".libuserbpf_agent.so.{}", std::process::id()));
    std::fs::copy(&p, &tmp)?;
    std::fs::rename(&tmp, &copy)?;
    Ok(copy)
}

/// Compiles `src` with gcc -O2 into target/uprobe-bench/<name>.
fn build_c(name: &str, src: &str) -> Result<PathBuf> {
    let dir = workspace().join("target/uprobe-bench");
    std::fs::create_dir_all(&dir)?;
    let c = dir.join(format!("{name}.c"));
    std::fs::write(&c, src)?;
    let bin = dir.join(name);
    let tmp = dir.join(format!(".{name}.{}", std::process::id()));
    let st = Command::new("gcc")
        .args(["-O2", "-Wall", "-o"])
        .arg(&tmp)
        .arg(&c)
        .status()
        .context("running gcc")?;
    if !st.success() {
        bail!("gcc failed on {}", c.display());
    }
    // A fresh inode each run: probes of an earlier run cannot apply.
    std::fs::rename(&tmp, &bin)?;
    Ok(bin)
}

/// (file offset, size) of a function symbol.
fn func_range(bin: &Path, name: &str) -> Result<(u64, u64)> {
    let data = std::fs::read(bin)?;
    let file = object::File::parse(&*data)?;
    let sym = file
        .symbols()
        .find(|s| s.name() == Ok(name))
        .ok_or_else(|| anyhow!("{name} not in {}", bin.display()))?;
    let section = file.section_by_index(
        sym.section_index()
            .ok_or_else(|| anyhow!("{name} has no section"))?,
    )?;
    let (sec_off, _) = section
        .file_range()
        .ok_or_else(|| anyhow!("{name}: section without file data"))?;
    Ok((sym.address() - section.address() + sec_off, sym.size()))
}

/// The three probed functions.
struct Func {
    /// The target's name for it ("run NAME ...").
    name: &'static str,
    symbol: &'static str,
    label: &'static str,
    /// The first instruction's bytes.
    first: &'static [u8],
    /// Where the hook's jmp goes (after endbr64).
    jmp_at: u64,
}

const FUNCS: [Func; 3] = [
    Func {
        name: "push",
        symbol: "ub_push",
        label: "`push %rbp`",
        first: &[0x55],
        jmp_at: 0,
    },
    Func {
        name: "endbr",
        symbol: "ub_endbr",
        label: "`endbr64`",
        first: &[0xf3, 0x0f, 0x1e, 0xfa],
        jmp_at: 4,
    },
    Func {
        name: "nop5",
        symbol: "ub_nop5",
        label: "5-byte nop",
        first: &[0x0f, 0x1f, 0x44, 0x00, 0x00],
        jmp_at: 0,
    },
];

/// Checks that each function starts with the instruction its row names,
/// and that the next instruction is not part of it (`push %rbp` is
/// followed by `mov %rsp,%rbp`, endbr64 by `push %rbp`, the nop by `lea`).
fn check_prologues(bin: &Path) -> Result<HashMap<&'static str, (u64, u64)>> {
    let code = std::fs::read(bin)?;
    let next: [&[u8]; 3] = [&[0x48, 0x89, 0xe5], &[0x55], &[0x48, 0x8d, 0x47, 0x01]];
    let mut out = HashMap::new();
    for (f, next) in FUNCS.iter().zip(next) {
        let (off, size) = func_range(bin, f.symbol)?;
        let at = off as usize;
        let want: Vec<u8> = [f.first, next].concat();
        let got = code
            .get(at..at + want.len())
            .ok_or_else(|| anyhow!("{} beyond the file", f.symbol))?;
        if got != want.as_slice() {
            bail!(
                "{} starts with {:02x?}, expected {:02x?} ({} then the next instruction)",
                f.symbol,
                got,
                want,
                f.label
            );
        }
        out.insert(f.name, (off, size));
    }
    Ok(out)
}

// ---------------------------------------------------------------- userbpf side

fn map(map_type: u32, name: &str) -> Result<Arc<Map>> {
    let spec = MapSpec {
        map_type,
        key_size: 4,
        value_size: 8,
        max_entries: 1024,
        map_flags: 0,
        map_extra: 0,
        name: name.into(),
        btf_key_type_id: 0,
        btf_value_type_id: 0,
        inner: None,
        spin_lock_off: None,
    };
    let id = userbpf_runtime::ids::next_id(userbpf_runtime::ids::IdKind::Map);
    Map::create(&spec, id).map_err(|e| anyhow!("map {name}: {e}"))
}

fn read_map(map: &Map, key: u32) -> u64 {
    let mut v = [0u8; 8];
    match map.lookup(&key.to_le_bytes(), &mut v, 0) {
        Ok(()) => u64::from_le_bytes(v),
        Err(_) => 0,
    }
}

/// A published program: its file stays open while it lives.
struct Prog {
    id: u32,
    _fd: OwnedFd,
    _reg: Registration,
}

/// Assembles `src`; every `lddw %rN, 0` refers to `maps[0]`.
fn prog(name: &str, src: &str, maps: &[&Map]) -> Result<Prog> {
    let mut insns = assemble(src).map_err(|e| anyhow!("{name}: {e}"))?;
    for i in insns.iter_mut().filter(|i| i.code == 0x18) {
        i.src = BPF_PSEUDO_MAP_IDX;
        i.imm = 0;
    }
    let image = ProgramImage {
        name: name.into(),
        prog_type: 2, // KPROBE
        expected_attach_type: 0,
        insns,
        map_ids: maps.iter().map(|m| m.id()).collect(),
    };
    let fd = userbpf_runtime::image::file::create(&image).map_err(|e| anyhow!("{name}: {e}"))?;
    let id = userbpf_runtime::ids::next_id(userbpf_runtime::ids::IdKind::Prog);
    let reg = registry::publish_prog(id, fd.as_raw_fd(), 2, name)
        .map_err(|e| anyhow!("publish {name}: {e}"))?;
    Ok(Prog {
        id,
        _fd: fd,
        _reg: reg,
    })
}

const EMPTY: &str = "mov %r0, 0\n exit";

/// value[tgid] = lookup(tgid) + 1 (or 1), through bpf_map_update_elem:
/// one lookup and one update per hit.
const HASH_UPDATE: &str = "
    call 14
    rsh %r0, 32
    stxw [%r10-4], %r0
    lddw %r1, 0
    mov %r2, %r10
    add %r2, -4
    call 1
    mov %r1, 1
    jeq %r0, 0, store
    ldxdw %r1, [%r0+0]
    add %r1, 1
    store:
    stxdw [%r10-16], %r1
    lddw %r1, 0
    mov %r2, %r10
    add %r2, -4
    mov %r3, %r10
    add %r3, -16
    mov %r4, 0
    call 2
    mov %r0, 0
    exit";

/// ARRAY value[cookie & 255] += 1.
const COUNT: &str = "
    call 174
    and %r0, 255
    stxw [%r10-4], %r0
    lddw %r1, 0
    mov %r2, %r10
    add %r2, -4
    call 1
    jeq %r0, 0, out
    mov %r1, 1
    lock add [%r0+0], %r1
    out:
    mov %r0, 0
    exit";

struct Probe<'a> {
    prog: u32,
    ret: bool,
    bin: &'a Path,
    func: (u64, u64),
    cookie: u64,
}

fn link(p: &Probe) -> Result<(u32, Registration)> {
    let meta = std::fs::metadata(p.bin)?;
    let id = userbpf_runtime::ids::next_id(userbpf_runtime::ids::IdKind::Link);
    let mut d = RecordData::zeroed();
    d.kind = kind::LINK;
    d.id = id;
    d.fd = -1;
    d.type_ = if p.ret {
        AttachKind::Uretprobe
    } else {
        AttachKind::Uprobe
    } as u32;
    d.prog_id = p.prog;
    d.pid = 0;
    d.offset = p.func.0;
    d.cookie = p.cookie;
    d.set_path(p.bin.to_str().ok_or_else(|| anyhow!("path not UTF-8"))?)
        .map_err(|e| anyhow!("{e}"))?;
    d.dev = meta.dev();
    d.ino = meta.ino();
    d.func_offset = p.func.0;
    d.func_size = p.func.1;
    let reg = registry::publish(&d).map_err(|e| anyhow!("publish link: {e}"))?;
    Ok((id, reg))
}

/// Wakes on changes in the namespace directory (our own publications and
/// the agents' ATTACHMENT records), so that waiting costs no polling CPU.
struct DirWatch {
    fd: OwnedFd,
    dir: PathBuf,
}

impl DirWatch {
    fn new(dir: &Path) -> Result<DirWatch> {
        // SAFETY: plain syscall.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        if fd < 0 {
            bail!("inotify_init1: {}", std::io::Error::last_os_error());
        }
        // SAFETY: a fresh fd nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let path = CString::new(dir.as_os_str().as_encoded_bytes())?;
        let mask = libc::IN_MODIFY | libc::IN_CREATE | libc::IN_MOVED_TO | libc::IN_CLOSE_WRITE;
        // SAFETY: valid fd and C string.
        if unsafe { libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), mask) } < 0 {
            bail!("inotify_add_watch: {}", std::io::Error::last_os_error());
        }
        Ok(DirWatch {
            fd,
            dir: dir.to_path_buf(),
        })
    }

    /// Sleeps until something changes or `ms` pass; drains the events.
    fn wait(&self, ms: i32) {
        let mut p = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, ms) };
        let mut buf = [0u8; 4096];
        // SAFETY: reads into a local buffer (the fd is non-blocking).
        while unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
    }
}

/// A target process running benches/uprobe/target.c.
struct Target {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pid: u32,
    /// Function addresses, in FUNCS order.
    addrs: [u64; 3],
    /// Its agent's registry file, once it exists.
    agent_file: Option<RegistryFile>,
}

/// One timed run: best ns per call (thread CPU, wall), calls made.
#[derive(Clone, Copy, Debug)]
struct Timing {
    cpu: f64,
    wall: f64,
    total: u64,
}

impl Target {
    fn start(bin: &Path, preload: Option<&Path>, namespace: &str) -> Result<Target> {
        let mut cmd = Command::new(bin);
        cmd.env("USERBPF_NAMESPACE", namespace)
            .env_remove("LD_PRELOAD")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        if let Some(p) = preload {
            cmd.env("LD_PRELOAD", p);
        }
        let mut child = cmd.spawn().context("starting the target")?;
        let stdin = child.stdin.take().expect("piped");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 5 || f[0] != "ready" {
            bail!("target said {line:?}");
        }
        let hex = |s: &str| u64::from_str_radix(s, 16).map_err(|e| anyhow!("{s}: {e}"));
        Ok(Target {
            child,
            stdin,
            stdout,
            pid: f[1].parse()?,
            addrs: [hex(f[2])?, hex(f[3])?, hex(f[4])?],
            agent_file: None,
        })
    }

    fn run(&mut self, func: &str, calls: u64, reps: u64) -> Result<Timing> {
        writeln!(self.stdin, "run {func} {calls} {reps}")?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 3 {
            bail!("target died or said {line:?} on `run {func}`");
        }
        Ok(Timing {
            cpu: f[0].parse()?,
            wall: f[1].parse()?,
            total: f[2].parse()?,
        })
    }

    /// The ATTACHMENT records of link `id` in this target's agent file.
    fn attachments(&mut self, dir: &Path, id: u32) -> Vec<RecordData> {
        if self.agent_file.is_none() {
            self.agent_file = RegistryFile::open(&dir.join(format!("agent-{}.reg", self.pid))).ok();
        }
        match &self.agent_file {
            Some(f) => f
                .records()
                .into_iter()
                .filter(|r| r.kind == kind::ATTACHMENT && r.id == id)
                .collect(),
            None => Vec::new(),
        }
    }

    /// Waits until the agent reports link `id` installed (`present`) or
    /// gone; fails on an error record or after 10 s.
    fn wait_link(&mut self, w: &DirWatch, id: u32, present: bool) -> Result<()> {
        let start = Instant::now();
        loop {
            let recs = self.attachments(&w.dir, id);
            if let Some(bad) = recs.iter().find(|r| r.flags != 0) {
                bail!(
                    "link {id} failed in the target: {}",
                    std::io::Error::from_raw_os_error(bad.flags as i32)
                );
            }
            if recs.is_empty() != present {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(10) {
                bail!(
                    "link {id} not {} in time",
                    if present { "attached" } else { "detached" }
                );
            }
            w.wait(5);
        }
    }

    /// Reads `n` bytes of the target's memory at `addr`.
    fn peek(&self, addr: u64, n: usize) -> Result<Vec<u8>> {
        let mut f = std::fs::File::open(format!("/proc/{}/mem", self.pid))?;
        f.seek(SeekFrom::Start(addr))?;
        let mut b = vec![0u8; n];
        f.read_exact(&mut b)?;
        Ok(b)
    }

    fn status(&self) -> Result<Status> {
        Status::read(self.pid)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "exit");
        let _ = self.child.wait();
    }
}

/// VmRSS, RssAnon, RssFile from /proc/<pid>/status, in KiB.
#[derive(Clone, Debug)]
struct Status {
    rss: u64,
    anon: u64,
    file: u64,
    shmem: u64,
    /// The largest resident mappings: (name, KiB).
    top: Vec<(String, u64)>,
}

impl Status {
    fn read(pid: u32) -> Result<Status> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let field = |name: &str| -> Result<u64> {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| anyhow!("no {name} in /proc/{pid}/status"))
        };
        Ok(Status {
            rss: field("VmRSS:")?,
            anon: field("RssAnon:")?,
            file: field("RssFile:")?,
            shmem: field("RssShmem:")?,
            top: top_mappings(pid)?,
        })
    }
}

/// Resident KiB per mapped object (anonymous mappings grouped as
/// "[anon]"), from /proc/<pid>/smaps, largest first.
fn top_mappings(pid: u32) -> Result<Vec<(String, u64)>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps"))?;
    let mut by: HashMap<String, u64> = HashMap::new();
    let mut name = String::new();
    for l in text.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.first()
            .is_some_and(|a| a.contains('-') && !a.ends_with(':'))
        {
            name = match f.get(5) {
                Some(n) => Path::new(n)
                    .file_name()
                    .map_or(n.to_string(), |b| b.to_string_lossy().into_owned()),
                None => "[anon]".into(),
            };
        } else if f.first() == Some(&"Rss:") {
            *by.entry(name.clone()).or_default() +=
                f.get(1).and_then(|v| v.parse().ok()).unwrap_or(0);
        }
    }
    let mut v: Vec<(String, u64)> = by.into_iter().filter(|e| e.1 > 0).collect();
    v.sort_by_key(|e| std::cmp::Reverse(e.1));
    v.truncate(6);
    Ok(v)
}

/// The userbpf rows of one function.
#[derive(Default, Clone, Copy)]
struct UserRows {
    base: Option<Timing>,
    entry: Option<Timing>,
    hash: Option<Timing>,
    ret: Option<Timing>,
    both: Option<Timing>,
}

struct Loader {
    dir: PathBuf,
    watch: DirWatch,
    counters: Arc<Map>,
    hash: Arc<Map>,
    empty: Prog,
    hash_prog: Prog,
    count: Prog,
    _maps: Vec<Registration>,
}

impl Loader {
    fn new() -> Result<Loader> {
        let dir = userbpf_runtime::namespace::ensure_namespace_dir()?;
        let counters = map(2, "counters")?;
        let hash = map(1, "per_tgid")?;
        let maps = vec![
            registry::publish_map(&counters).map_err(|e| anyhow!("{e}"))?,
            registry::publish_map(&hash).map_err(|e| anyhow!("{e}"))?,
        ];
        let empty = prog("empty", EMPTY, &[])?;
        let hash_prog = prog("hash_update", HASH_UPDATE, &[&hash])?;
        let count = prog("count", COUNT, &[&counters])?;
        Ok(Loader {
            watch: DirWatch::new(&dir)?,
            dir,
            counters,
            hash,
            empty,
            hash_prog,
            count,
            _maps: maps,
        })
    }

    /// Attaches `probes`, waits for the target's agent, runs `f`, detaches.
    fn with_links<R>(
        &self,
        t: &mut Target,
        probes: &[Probe],
        f: impl FnOnce(&mut Target) -> Result<R>,
    ) -> Result<R> {
        let mut links = Vec::new();
        for p in probes {
            links.push(link(p)?);
        }
        for (id, _) in &links {
            t.wait_link(&self.watch, *id, true)?;
        }
        let r = f(t);
        let ids: Vec<u32> = links.iter().map(|l| l.0).collect();
        drop(links);
        for id in ids {
            t.wait_link(&self.watch, id, false)?;
        }
        r
    }
}

/// Keeps the lower of two timings (CPU and wall separately).
fn keep_best(slot: &mut Option<Timing>, t: Timing) {
    *slot = Some(match *slot {
        None => t,
        Some(o) => Timing {
            cpu: o.cpu.min(t.cpu),
            wall: o.wall.min(t.wall),
            total: o.total,
        },
    });
}

fn userbpf_rows(
    cfg: &Config,
    ld: &Loader,
    t: &mut Target,
    bin: &Path,
    funcs: &HashMap<&'static str, (u64, u64)>,
) -> Result<Vec<UserRows>> {
    let mut out = Vec::new();
    for (i, f) in FUNCS.iter().enumerate() {
        let range = funcs[f.name];
        let probe = |prog: u32, ret: bool, cookie: u64| Probe {
            prog,
            ret,
            bin,
            func: range,
            cookie,
        };
        let jmp = t.addrs[i] + f.jmp_at;
        let original = t.peek(jmp, 1)?[0];

        // Check: a counting program at entry and at return sees every call.
        let (c_in, c_out) = (2 * i as u32 + 1, 2 * i as u32 + 2);
        let before = (read_map(&ld.counters, c_in), read_map(&ld.counters, c_out));
        let total = ld.with_links(
            t,
            &[
                probe(ld.count.id, false, c_in.into()),
                probe(ld.count.id, true, c_out.into()),
            ],
            |t| Ok(t.run(f.name, 100_000, 1)?.total),
        )?;
        let seen = (
            read_map(&ld.counters, c_in) - before.0,
            read_map(&ld.counters, c_out) - before.1,
        );
        if seen != (total, total) {
            bail!(
                "{}: {total} calls, but the counting programs saw {} entries and {} returns",
                f.symbol,
                seen.0,
                seen.1
            );
        }
        if t.peek(jmp, 1)?[0] != original {
            bail!("{}: the patch stayed after detaching", f.symbol);
        }

        let hooked = |t: &mut Target| -> Result<()> {
            let b = t.peek(jmp, 1)?[0];
            if b != 0xe9 {
                bail!("{}: no jmp at {jmp:#x} (byte {b:#04x})", f.symbol);
            }
            Ok(())
        };
        // Rounds: every row once per round, the best kept, so that load
        // from other work on the machine hits all rows alike.
        let mut rows = UserRows::default();
        let mut counted = 0;
        for _ in 0..cfg.rounds {
            keep_best(&mut rows.base, t.run(f.name, cfg.calls, cfg.reps)?);
            let e = ld.with_links(t, &[probe(ld.empty.id, false, 0)], |t| {
                hooked(t)?;
                t.run(f.name, cfg.calls, cfg.reps)
            })?;
            keep_best(&mut rows.entry, e);
            let key = t.pid;
            let before = read_map(&ld.hash, key);
            let hash = ld.with_links(t, &[probe(ld.hash_prog.id, false, 0)], |t| {
                t.run(f.name, cfg.calls, cfg.reps)
            })?;
            let n = read_map(&ld.hash, key) - before;
            if n != hash.total {
                bail!(
                    "{}: HASH program counted {n} of {} calls",
                    f.symbol,
                    hash.total
                );
            }
            counted += n;
            keep_best(&mut rows.hash, hash);
            let r = ld.with_links(t, &[probe(ld.empty.id, true, 0)], |t| {
                hooked(t)?;
                t.run(f.name, cfg.calls, cfg.reps)
            })?;
            keep_best(&mut rows.ret, r);
            let b = ld.with_links(
                t,
                &[probe(ld.empty.id, false, 0), probe(ld.empty.id, true, 0)],
                |t| {
                    hooked(t)?;
                    t.run(f.name, cfg.calls, cfg.reps)
                },
            )?;
            keep_best(&mut rows.both, b);
        }
        eprintln!(
            "  {}: checked ({total} entries and returns counted; the HASH program counted all {counted} calls)",
            f.symbol
        );
        out.push(rows);
    }
    Ok(out)
}

// ---------------------------------------------------------------- kernel side

mod kernel {
    use anyhow::{anyhow, bail, Result};
    use std::ffi::CString;
    use userbpf_runtime::isa::Insn;

    const BPF_MAP_CREATE: i64 = 0;
    const BPF_MAP_LOOKUP_ELEM: i64 = 1;
    const BPF_PROG_LOAD: i64 = 5;
    const BPF_PROG_TYPE_KPROBE: u32 = 2;
    const BPF_MAP_TYPE_ARRAY: u32 = 2;
    const PERF_EVENT_IOC_ENABLE: u64 = 0x2400;
    const PERF_EVENT_IOC_SET_BPF: u64 = 0x4004_2408;
    const PERF_FLAG_FD_CLOEXEC: u64 = 8;

    /// `union bpf_attr` / `struct perf_event_attr`, as zeroed bytes.
    #[repr(C, align(8))]
    struct Attr([u8; 128]);

    impl Attr {
        fn new() -> Attr {
            Attr([0; 128])
        }
        fn u32(&mut self, off: usize, v: u32) -> &mut Self {
            self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
            self
        }
        fn u64(&mut self, off: usize, v: u64) -> &mut Self {
            self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
            self
        }
    }

    fn bpf(cmd: i64, attr: &mut Attr) -> std::io::Result<i64> {
        // SAFETY: `attr` is a valid, writable bpf_attr-sized buffer.
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                cmd,
                attr as *mut Attr,
                std::mem::size_of::<Attr>(),
            )
        };
        if r < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(r)
        }
    }

    /// An fd that closes on drop.
    pub struct Fd(pub i32);

    impl Drop for Fd {
        fn drop(&mut self) {
            // SAFETY: closes an fd this module opened.
            unsafe { libc::close(self.0) };
        }
    }

    /// The uprobe PMU's type, or why kernel uprobes cannot be used here.
    pub fn available() -> Result<u32, String> {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not root".into());
        }
        let t = std::fs::read_to_string("/sys/bus/event_source/devices/uprobe/type")
            .map_err(|e| format!("no uprobe PMU ({e})"))?;
        t.trim()
            .parse()
            .map_err(|e| format!("uprobe PMU type {t:?}: {e}"))
    }

    pub fn array(max: u32) -> Result<Fd> {
        let mut a = Attr::new();
        a.u32(0, BPF_MAP_TYPE_ARRAY)
            .u32(4, 4)
            .u32(8, 8)
            .u32(12, max);
        Ok(Fd(bpf(BPF_MAP_CREATE, &mut a)? as i32))
    }

    pub fn lookup(map: &Fd, key: u32) -> Result<u64> {
        let k = key.to_ne_bytes();
        let mut v = [0u8; 8];
        let mut a = Attr::new();
        a.u32(0, map.0 as u32)
            .u64(8, k.as_ptr() as u64)
            .u64(16, v.as_mut_ptr() as u64);
        bpf(BPF_MAP_LOOKUP_ELEM, &mut a)?;
        Ok(u64::from_ne_bytes(v))
    }

    pub fn load(insns: &[Insn]) -> Result<Fd> {
        let bytes: Vec<u8> = insns.iter().flat_map(|i| i.to_bytes()).collect();
        let license = b"GPL\0";
        let mut log = vec![0u8; 1 << 16];
        let mut a = Attr::new();
        a.u32(0, BPF_PROG_TYPE_KPROBE)
            .u32(4, insns.len() as u32)
            .u64(8, bytes.as_ptr() as u64)
            .u64(16, license.as_ptr() as u64)
            .u32(24, 1)
            .u32(28, log.len() as u32)
            .u64(32, log.as_mut_ptr() as u64);
        match bpf(BPF_PROG_LOAD, &mut a) {
            Ok(fd) => Ok(Fd(fd as i32)),
            Err(e) => {
                let end = log.iter().position(|&b| b == 0).unwrap_or(0);
                bail!(
                    "BPF_PROG_LOAD: {e}\n{}",
                    String::from_utf8_lossy(&log[..end])
                )
            }
        }
    }

    /// A uprobe (or uretprobe) perf event on `path` at file offset
    /// `offset`, for process `pid`, running `prog`.
    pub fn attach(
        pmu: u32,
        path: &std::path::Path,
        offset: u64,
        ret: bool,
        pid: u32,
        prog: &Fd,
    ) -> Result<Fd> {
        let path = CString::new(path.as_os_str().as_encoded_bytes())?;
        let mut a = Attr::new();
        a.u32(0, pmu) // type
            .u32(4, 128) // size
            .u64(8, u64::from(ret)) // config: bit 0 = retprobe
            .u64(56, path.as_ptr() as u64) // config1 = uprobe_path
            .u64(64, offset); // config2 = probe_offset
                              // SAFETY: a zeroed perf_event_attr of the size it says, and a
                              // NUL-terminated path that outlives the call.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_perf_event_open,
                &a as *const Attr,
                pid as libc::pid_t,
                -1,
                -1,
                PERF_FLAG_FD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(anyhow!(
                "perf_event_open(uprobe): {}",
                std::io::Error::last_os_error()
            ));
        }
        let ev = Fd(fd as i32);
        // SAFETY: ioctls on our own perf event fd.
        if unsafe { libc::ioctl(ev.0, PERF_EVENT_IOC_SET_BPF as _, prog.0) } < 0 {
            bail!(
                "PERF_EVENT_IOC_SET_BPF: {}",
                std::io::Error::last_os_error()
            );
        }
        // SAFETY: as above.
        if unsafe { libc::ioctl(ev.0, PERF_EVENT_IOC_ENABLE as _, 0) } < 0 {
            bail!("PERF_EVENT_IOC_ENABLE: {}", std::io::Error::last_os_error());
        }
        Ok(ev)
    }
}

/// The kernel rows of one function.
#[derive(Default, Clone, Copy)]
struct KernelRows {
    base: Option<Timing>,
    entry: Option<Timing>,
    ret: Option<Timing>,
}

/// A kernel program counting into ARRAY `map` at `key`.
fn kernel_count(map: &kernel::Fd, key: i32) -> Result<kernel::Fd> {
    let src = format!(
        "mov %r1, {key}
         stxw [%r10-4], %r1
         lddw %r1, 0
         mov %r2, %r10
         add %r2, -4
         call 1
         jeq %r0, 0, out
         mov %r1, 1
         lock add [%r0+0], %r1
         out:
         mov %r0, 0
         exit"
    );
    let mut insns: Vec<Insn> = assemble(&src).map_err(|e| anyhow!("{e}"))?;
    for i in insns.iter_mut().filter(|i| i.code == 0x18) {
        i.src = 1; // BPF_PSEUDO_MAP_FD
        i.imm = map.0;
    }
    kernel::load(&insns)
}

fn kernel_rows(
    cfg: &Config,
    pmu: u32,
    t: &mut Target,
    bin: &Path,
    funcs: &HashMap<&'static str, (u64, u64)>,
) -> Result<Vec<KernelRows>> {
    let empty = kernel::load(&assemble(EMPTY).map_err(|e| anyhow!("{e}"))?)?;
    let counts = kernel::array(16)?;
    let mut out = Vec::new();
    for (i, f) in FUNCS.iter().enumerate() {
        let off = funcs[f.name].0;
        let calls = if f.name == "endbr" {
            cfg.kcalls_endbr
        } else {
            cfg.kcalls
        };
        // Check: counting programs see every entry and return.
        let (k_in, k_out) = (2 * i as i32, 2 * i as i32 + 1);
        let p_in = kernel_count(&counts, k_in)?;
        let p_out = kernel_count(&counts, k_out)?;
        let total = {
            let _a = kernel::attach(pmu, bin, off, false, t.pid, &p_in)?;
            let _b = kernel::attach(pmu, bin, off, true, t.pid, &p_out)?;
            t.run(f.name, 2_000, 1)?.total
        };
        let seen = (
            kernel::lookup(&counts, k_in as u32)?,
            kernel::lookup(&counts, k_out as u32)?,
        );
        if seen != (total, total) {
            bail!(
                "{} (kernel): {total} calls, but the counting programs saw {} entries and {} returns",
                f.symbol,
                seen.0,
                seen.1
            );
        }
        let mut rows = KernelRows::default();
        for _ in 0..cfg.rounds {
            keep_best(&mut rows.base, t.run(f.name, cfg.calls, cfg.reps)?);
            {
                let _e = kernel::attach(pmu, bin, off, false, t.pid, &empty)?;
                keep_best(&mut rows.entry, t.run(f.name, calls, cfg.reps)?);
            }
            {
                let _e = kernel::attach(pmu, bin, off, true, t.pid, &empty)?;
                keep_best(&mut rows.ret, t.run(f.name, calls, cfg.reps)?);
            }
        }
        eprintln!(
            "  {} (kernel): checked ({total} entries and returns counted)",
            f.symbol
        );
        out.push(rows);
    }
    Ok(out)
}

/// This thread's CPU time, ns.
fn thread_cpu_ns() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e9 + ts.tv_nsec as f64
}

/// ns per `LoadedProgram::run` of the empty program (JIT), called in this
/// process the way the agent's handler calls it (a 168-byte pt_regs and a
/// RunInfo): the program part of a userbpf hit, without the hook.
fn program_run_cost(calls: u64, reps: u64) -> Result<f64> {
    use userbpf_runtime::helpers::run_info::RunInfo;
    use userbpf_runtime::helpers::HelperRegistry;
    use userbpf_runtime::vm::{Engine, VmOptions};
    let image = ProgramImage {
        name: "empty".into(),
        prog_type: 2,
        expected_attach_type: 0,
        insns: assemble(EMPTY).map_err(|e| anyhow!("{e}"))?,
        map_ids: Vec::new(),
    };
    let prog = image
        .instantiate(
            Vec::new(),
            &HelperRegistry::new(),
            VmOptions::with_engine(Engine::Jit),
        )
        .map_err(|e| anyhow!("{e}"))?;
    let mut regs = [0u64; 21];
    let mut best = f64::MAX;
    for _ in 0..reps {
        let t0 = thread_cpu_ns();
        for i in 0..calls {
            let mut info = RunInfo {
                attach_cookie: i,
                func_ip: 0x1000,
                regs: regs.as_mut_ptr().cast(),
                ..RunInfo::default()
            };
            // SAFETY: `regs` (168 bytes) is valid for the whole run.
            let r = unsafe {
                prog.run(
                    std::hint::black_box(regs.as_mut_ptr().cast()),
                    168,
                    info.as_user_ptr(),
                )
            };
            std::hint::black_box(r.is_ok());
        }
        best = best.min((thread_cpu_ns() - t0) / calls as f64);
    }
    Ok(best)
}

// ---------------------------------------------------------------- start-up

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Wall time of spawn + exec + exit of the start-up program, in µs.
fn spawn_once(
    bin: &Path,
    preload: Option<&Path>,
    namespace: &str,
    dir: &Path,
    interp: bool,
) -> Result<f64> {
    let mut cmd = Command::new(bin);
    cmd.env("USERBPF_NAMESPACE", namespace)
        .env_remove("LD_PRELOAD")
        .env_remove("USERBPF_ENGINE")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    if let Some(p) = preload {
        cmd.env("LD_PRELOAD", p);
    }
    if interp {
        cmd.env("USERBPF_ENGINE", "interp");
    }
    let t0 = Instant::now();
    let mut child = cmd.spawn()?;
    let st = child.wait()?;
    let us = t0.elapsed().as_secs_f64() * 1e6;
    if !st.success() {
        bail!("start-up target failed: {st}");
    }
    // The agent's registry file outlives it; keep the namespace small.
    let _ = std::fs::remove_file(dir.join(format!("agent-{}.reg", child.id())));
    Ok(us)
}

struct Startup {
    plain: Vec<f64>,
    agent_empty: Vec<f64>,
    agent_link: Vec<f64>,
    agent_link_interp: Vec<f64>,
    hits: u64,
}

fn startup(cfg: &Config, ld: &Loader, agent: &Path, ns: &str) -> Result<Startup> {
    let bin = build_c("uprobe-startup", STARTUP_C)?;
    let range = func_range(&bin, "ub_start_fn")?;
    let code = std::fs::read(&bin)?;
    if code.get(range.0 as usize..range.0 as usize + 5) != Some(&[0x0f, 0x1f, 0x44, 0x00, 0x00]) {
        bail!("ub_start_fn does not start with the 5-byte nop");
    }
    // No links: an empty namespace of its own (the agent scans it and
    // finds nothing). One link: our namespace, where a counting uprobe on
    // ub_start_fn must be installed by the constructor.
    let empty_ns = format!("{ns}-empty");
    let empty_dir = ld.dir.with_file_name(&empty_ns);
    std::fs::create_dir_all(&empty_dir)?;
    let key = 100;
    let before = read_map(&ld.counters, key);
    let (_id, _reg) = link(&Probe {
        prog: ld.count.id,
        ret: false,
        bin: &bin,
        func: range,
        cookie: key.into(),
    })?;
    let mut s = Startup {
        plain: Vec::new(),
        agent_empty: Vec::new(),
        agent_link: Vec::new(),
        agent_link_interp: Vec::new(),
        hits: 0,
    };
    // Warm-up (page cache, dynamic loader), then interleaved runs.
    for _ in 0..5 {
        spawn_once(&bin, None, &empty_ns, &empty_dir, false)?;
        spawn_once(&bin, Some(agent), &empty_ns, &empty_dir, false)?;
        spawn_once(&bin, Some(agent), ns, &ld.dir, false)?;
    }
    let warm = read_map(&ld.counters, key) - before;
    for _ in 0..cfg.startup_runs {
        s.plain
            .push(spawn_once(&bin, None, &empty_ns, &empty_dir, false)?);
        s.agent_empty
            .push(spawn_once(&bin, Some(agent), &empty_ns, &empty_dir, false)?);
        s.agent_link
            .push(spawn_once(&bin, Some(agent), ns, &ld.dir, false)?);
        s.agent_link_interp
            .push(spawn_once(&bin, Some(agent), ns, &ld.dir, true)?);
    }
    s.hits = read_map(&ld.counters, key) - before - warm;
    if warm != 5 || s.hits != 2 * cfg.startup_runs as u64 {
        bail!(
            "the link present at start ran {} times in {} runs (warm-up {warm} of 5)",
            s.hits,
            2 * cfg.startup_runs
        );
    }
    let _ = std::fs::remove_dir_all(&empty_dir);
    Ok(s)
}

/// Attach and detach latency in ms: from publishing the link record until
/// the target's agent reports the probe installed (removed).
fn attach_times(
    cfg: &Config,
    ld: &Loader,
    t: &mut Target,
    bin: &Path,
    range: (u64, u64),
) -> Result<(Vec<f64>, Vec<f64>)> {
    let mut att = Vec::new();
    let mut det = Vec::new();
    for _ in 0..cfg.attach_runs {
        let t0 = Instant::now();
        let (id, reg) = link(&Probe {
            prog: ld.hash_prog.id,
            ret: false,
            bin,
            func: range,
            cookie: 0,
        })?;
        t.wait_link(&ld.watch, id, true)?;
        att.push(t0.elapsed().as_secs_f64() * 1e3);
        let t1 = Instant::now();
        drop(reg);
        t.wait_link(&ld.watch, id, false)?;
        det.push(t1.elapsed().as_secs_f64() * 1e3);
    }
    Ok((att, det))
}

// ---------------------------------------------------------------- report

fn fmt_ns(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.0}", v)
            .as_bytes()
            .rchunks(3)
            .rev()
            .map(|c| std::str::from_utf8(c).unwrap_or(""))
            .collect::<Vec<_>>()
            .join(",")
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn cell(t: Option<Timing>, base: Option<Timing>) -> String {
    match (t, base) {
        (Some(t), Some(b)) => format!("{} (+{})", fmt_ns(t.cpu), fmt_ns(t.cpu - b.cpu)),
        (Some(t), None) => fmt_ns(t.cpu),
        _ => "-".into(),
    }
}

fn added(t: Option<Timing>, base: Option<Timing>) -> Option<f64> {
    Some(t?.cpu - base?.cpu)
}

fn mib(kib: u64) -> String {
    format!("{:.2}", kib as f64 / 1024.0)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut u: libc::utsname =
        // SAFETY: plain old data, filled by uname.
        unsafe { std::mem::zeroed() };
    // SAFETY: a valid utsname.
    unsafe { libc::uname(&mut u) };
    // SAFETY: uname NUL-terminates release.
    let rel = unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) }.to_string_lossy();
    format!(
        "{cpu}, {cores} cores, kernel {rel}, load average {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

fn main() -> Result<()> {
    let cfg = parse_args()?;
    // A private namespace for this run, set before the registry is used.
    let ns = format!("uprobe-bench-{}", std::process::id());
    std::env::set_var("USERBPF_NAMESPACE", &ns);
    let agent = agent_path()?;
    let target = build_c("uprobe-target", TARGET_C)?;
    let funcs = check_prologues(&target)?;
    let ld = Loader::new()?;
    let started = Instant::now();
    println!("# userbpf-uprobe-bench\n");
    println!("Machine: {} (at start)\n", machine());
    println!(
        "Calls: {} per repetition (kernel: {}, endbr64 {}), best of {} repetitions x {} rounds \
         (every row once per round); ns per call in thread CPU time.\n",
        cfg.calls, cfg.kcalls, cfg.kcalls_endbr, cfg.reps, cfg.rounds
    );

    if let Some(calls) = cfg.profile {
        let mut t = Target::start(&target, Some(&agent), &ns)?;
        let nop5 = funcs["nop5"];
        for ret in [false, true] {
            let p = Probe {
                prog: ld.empty.id,
                ret,
                bin: &target,
                func: nop5,
                cookie: 0,
            };
            let r = ld.with_links(&mut t, &[p], |t| t.run("nop5", calls, 1))?;
            println!(
                "target pid {}: empty {}: {:.1} ns per call",
                t.pid,
                if ret { "uretprobe" } else { "uprobe" },
                r.cpu
            );
        }
        let _ = std::fs::remove_dir_all(&ld.dir);
        return Ok(());
    }

    // userbpf: a target under the agent.
    eprintln!("userbpf rows (target under LD_PRELOAD={})", agent.display());
    // Resident memory: a fresh target under the agent, idle, then with one
    // program attached and run.
    let nop5 = funcs["nop5"];
    let (rss_agent_idle, rss_agent_one) = {
        let mut t = Target::start(&target, Some(&agent), &ns)?;
        t.run("nop5", 1_000_000, 1)?;
        let idle = t.status()?;
        let one = ld.with_links(
            &mut t,
            &[Probe {
                prog: ld.hash_prog.id,
                ret: false,
                bin: &target,
                func: nop5,
                cookie: 0,
            }],
            |t| {
                t.run("nop5", 1_000_000, 1)?;
                t.status()
            },
        )?;
        (idle, one)
    };
    let mut t = Target::start(&target, Some(&agent), &ns)?;
    let user = userbpf_rows(&cfg, &ld, &mut t, &target, &funcs)?;
    eprintln!("attach latency ({} runs)", cfg.attach_runs);
    let (mut att, mut det) = attach_times(&cfg, &ld, &mut t, &target, nop5)?;
    // Let the agent's thread finish any reconcile still under way.
    std::thread::sleep(Duration::from_millis(200));
    let rss_agent_after = t.status()?;
    drop(t);

    // The kernel: a target without the agent.
    let mut kt = Target::start(&target, None, &ns)?;
    kt.run("nop5", 1_000_000, 1)?;
    let rss_plain = kt.status()?;
    let kernel = match kernel::available() {
        Ok(pmu) => {
            eprintln!("kernel rows (uprobe PMU type {pmu})");
            Some(kernel_rows(&cfg, pmu, &mut kt, &target, &funcs)?)
        }
        Err(why) => {
            eprintln!("kernel rows skipped: {why}");
            println!("Kernel rows skipped: {why}.\n");
            None
        }
    };
    drop(kt);

    let run_cost = program_run_cost(cfg.calls, cfg.reps * cfg.rounds)?;
    eprintln!("start-up ({} runs of each)", cfg.startup_runs);
    let mut st = startup(&cfg, &ld, &agent, &ns)?;

    // ---- the overhead table
    println!("## ns per call (added over the no-probe row of the same process)\n");
    println!(
        "| probe | {} | {} | {} |",
        FUNCS[0].label, FUNCS[1].label, FUNCS[2].label
    );
    println!("|---|---:|---:|---:|");
    let row = |name: &str, cells: [String; 3]| {
        println!("| {name} | {} | {} | {} |", cells[0], cells[1], cells[2]);
    };
    let u = |f: fn(&UserRows) -> Option<Timing>| -> [String; 3] {
        [0, 1, 2].map(|i| cell(f(&user[i]), user[i].base))
    };
    row(
        "no probe (target under the agent)",
        [0, 1, 2].map(|i| cell(user[i].base, None)),
    );
    row("userbpf uprobe, empty program", u(|r| r.entry));
    row("userbpf uprobe, HASH lookup + update", u(|r| r.hash));
    row("userbpf uretprobe, empty program", u(|r| r.ret));
    row("userbpf uprobe + uretprobe, empty", u(|r| r.both));
    if let Some(k) = &kernel {
        row(
            "no probe (target without the agent)",
            [0, 1, 2].map(|i| cell(k[i].base, None)),
        );
        row(
            "kernel uprobe, empty program",
            [0, 1, 2].map(|i| cell(k[i].entry, k[i].base)),
        );
        row(
            "kernel uretprobe, empty program",
            [0, 1, 2].map(|i| cell(k[i].ret, k[i].base)),
        );
        println!("\nKernel over userbpf, added ns (empty programs):\n");
        println!(
            "| probe | {} | {} | {} |",
            FUNCS[0].label, FUNCS[1].label, FUNCS[2].label
        );
        println!("|---|---:|---:|---:|");
        let ratio = |ku: Option<f64>, uu: Option<f64>| match (ku, uu) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.0}x", a / b),
            _ => "-".into(),
        };
        row(
            "uprobe",
            [0, 1, 2].map(|i| {
                ratio(
                    added(k[i].entry, k[i].base),
                    added(user[i].entry, user[i].base),
                )
            }),
        );
        row(
            "uretprobe",
            [0, 1, 2].map(|i| ratio(added(k[i].ret, k[i].base), added(user[i].ret, user[i].base))),
        );
    }
    println!(
        "\nFor scale: one `LoadedProgram::run` of the empty program (JIT), in this process, \
         as the agent's handler calls it: {run_cost:.1} ns (thread CPU time, best of {} x {} runs).",
        cfg.reps * cfg.rounds,
        cfg.calls
    );
    println!(
        "\nWall-clock ns per call, same runs (best of {} x {}):\n",
        cfg.reps, cfg.rounds
    );
    let w = |t: Option<Timing>| t.map_or("-".into(), |t| fmt_ns(t.wall));
    println!(
        "| probe | {} | {} | {} |",
        FUNCS[0].label, FUNCS[1].label, FUNCS[2].label
    );
    println!("|---|---:|---:|---:|");
    row("no probe (agent)", [0, 1, 2].map(|i| w(user[i].base)));
    row("userbpf uprobe", [0, 1, 2].map(|i| w(user[i].entry)));
    row("userbpf uprobe HASH", [0, 1, 2].map(|i| w(user[i].hash)));
    row("userbpf uretprobe", [0, 1, 2].map(|i| w(user[i].ret)));
    row("userbpf both", [0, 1, 2].map(|i| w(user[i].both)));
    if let Some(k) = &kernel {
        row("no probe (plain)", [0, 1, 2].map(|i| w(k[i].base)));
        row("kernel uprobe", [0, 1, 2].map(|i| w(k[i].entry)));
        row("kernel uretprobe", [0, 1, 2].map(|i| w(k[i].ret)));
    }

    // ---- start-up, attach, memory
    let ms = |v: f64| format!("{:.2}", v / 1000.0);
    println!(
        "\n## Start-up: spawn + exec + exit of a trivial C program, ms ({} runs each, interleaved)\n",
        cfg.startup_runs
    );
    println!("| | median | p10 | p90 | median added |");
    println!("|---|---:|---:|---:|---:|");
    let base = median(&mut st.plain);
    for (name, v) in [
        ("no agent", &mut st.plain),
        ("agent, no links", &mut st.agent_empty),
        ("agent, one link installed at start", &mut st.agent_link),
        (
            "the same, USERBPF_ENGINE=interp (no JIT)",
            &mut st.agent_link_interp,
        ),
    ] {
        let m = median(v);
        println!(
            "| {name} | {} | {} | {} | {} |",
            ms(m),
            ms(percentile(v, 0.1)),
            ms(percentile(v, 0.9)),
            ms(m - base)
        );
    }
    println!(
        "\n(the link's counting program ran once in each of the {} runs with the link)",
        st.hits
    );
    println!(
        "\n## Attach: link published -> the target's agent reports it, ms ({} runs)\n",
        cfg.attach_runs
    );
    println!("| | median | p10 | p90 | max |");
    println!("|---|---:|---:|---:|---:|");
    for (name, v) in [
        ("attach (uprobe, HASH program)", &mut att),
        ("detach", &mut det),
    ] {
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} | {:.2} |",
            median(v),
            percentile(v, 0.1),
            percentile(v, 0.9),
            percentile(v, 1.0)
        );
    }
    println!("\n## Resident memory of the target, MiB (/proc/pid/status)\n");
    println!("| target | VmRSS | RssAnon | RssFile | RssShmem | VmRSS added |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, s) in [
        ("without the agent", &rss_plain),
        ("agent, no links", &rss_agent_idle),
        ("agent, one program attached (1M hits)", &rss_agent_one),
        (
            "agent, after every row above and the attach runs",
            &rss_agent_after,
        ),
    ] {
        println!(
            "| {name} | {} | {} | {} | {} | {} |",
            mib(s.rss),
            mib(s.anon),
            mib(s.file),
            mib(s.shmem),
            mib(s.rss.saturating_sub(rss_plain.rss))
        );
    }
    println!("\nLargest resident mappings, KiB (/proc/pid/smaps):\n");
    for (name, s) in [
        ("without the agent", &rss_plain),
        ("agent, one program attached", &rss_agent_one),
        ("agent, after every row", &rss_agent_after),
    ] {
        let top: Vec<String> = s.top.iter().map(|(n, k)| format!("{n} {k}")).collect();
        println!("- {name}: {}", top.join(", "));
    }

    // ---- targets
    println!("\n## Targets (issue 6)\n");
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    let worst = |f: fn(&UserRows) -> Option<Timing>| {
        user.iter()
            .filter_map(|r| added(f(r), r.base))
            .fold(f64::MIN, f64::max)
    };
    let (we, wr) = (worst(|r| r.entry), worst(|r| r.ret));
    println!(
        "- uprobe adds <= 10 ns (empty program): worst {we:.1} ns: {}",
        verdict(we <= 10.0)
    );
    println!(
        "- uretprobe adds <= 20 ns (empty program): worst {wr:.1} ns: {}",
        verdict(wr <= 20.0)
    );
    let su = median(&mut st.agent_link) - base;
    println!(
        "- start-up <= 5 ms: agent with one link adds {} ms: {}",
        ms(su),
        verdict(su <= 5000.0)
    );
    let added_rss = rss_agent_one.rss.saturating_sub(rss_plain.rss);
    println!(
        "- resident memory <= 8 MiB: the agent adds {} MiB with one program: {}",
        mib(added_rss),
        verdict(added_rss <= 8 * 1024)
    );
    println!(
        "\nRun took {:.0} s; load average at the end: {}",
        started.elapsed().as_secs_f64(),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let _ = std::fs::remove_dir_all(&ld.dir);
    Ok(())
}
