//! Attaching to a running process (issue 9; docs/benchmarks.md): the time
//! from the start of `userbpf attach PID` (the spawn of the command) to the
//! first hit of a uprobe in the target, and the time the target's thread
//! spends stopped for the injection alone.
//!
//! ```sh
//! cargo build --release -p userbpf-cli -p userbpf-agent -p userbpf-benches
//! target/release/userbpf-attach-bench            # 30 runs
//! target/release/userbpf-attach-bench --runs 100
//! ```
//!
//! The target is `cli/tests/attach/victim.c hot` (built with gcc at start):
//! one thread that calls `hot_fn` in a loop, without the agent (a last row:
//! with three more threads asleep in nanosleep, one of which makes the
//! calls while the hot one runs on). This
//! process is the loader: a uprobe on `hot_fn` for every process runs a
//! program that stores `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) in an array
//! map at its first hit. Each run starts a fresh target, reads
//! CLOCK_MONOTONIC, spawns `target/release/userbpf attach PID`, and waits
//! for the stamp: the difference is the latency. The command's own report
//! gives the injection time (from the thread's stop to its release). A
//! second row detaches and attaches again to the same target (the agent
//! is loaded already: no dlopen). With `USERBPF_ATTACH_DEBUG=1`, the
//! command's timeline of each run is printed.

use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use object::{Object, ObjectSection, ObjectSymbol};
use userbpf_runtime::asm::assemble;
use userbpf_runtime::image::ProgramImage;
use userbpf_runtime::isa::BPF_PSEUDO_MAP_IDX;
use userbpf_runtime::maps::{Map, MapSpec};
use userbpf_runtime::registry::{self, kind, AttachKind, RecordData, Registration};

const VICTIM_C: &str = include_str!("../../../cli/tests/attach/victim.c");

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("benches/ has a parent")
        .to_path_buf()
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes one timespec into a local.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn build_victim(dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let src = dir.join("victim.c");
    std::fs::write(&src, VICTIM_C)?;
    let bin = dir.join("victim");
    let tmp = dir.join(format!(".victim.{}", std::process::id()));
    let st = Command::new("gcc")
        .args(["-O2", "-g", "-fPIE", "-pie", "-pthread", "-o"])
        .arg(&tmp)
        .arg(&src)
        .status()
        .context("running gcc")?;
    if !st.success() {
        bail!("gcc failed on {}", src.display());
    }
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

/// The loader's side: the map, the stamping program and the link, kept
/// published while the benchmark runs.
struct Loader {
    map: Arc<Map>,
    _keep: Vec<Registration>,
    _prog_fd: std::os::fd::OwnedFd,
}

fn loader(bin: &Path) -> Result<Loader> {
    let spec = MapSpec {
        map_type: 2, // ARRAY
        key_size: 4,
        value_size: 8,
        max_entries: 1,
        map_flags: 0,
        map_extra: 0,
        name: "stamp".into(),
        btf_key_type_id: 0,
        btf_value_type_id: 0,
        inner: None,
        spin_lock_off: None,
    };
    let map = Map::create(
        &spec,
        userbpf_runtime::ids::next_id(userbpf_runtime::ids::IdKind::Map),
    )?;
    let map_reg = registry::publish_map(&map)?;
    // value[0] = bpf_ktime_get_ns() at the first hit.
    let mut insns = assemble(
        "mov %r6, 0
         stxw [%r10-4], %r6
         lddw %r1, 0
         mov %r2, %r10
         add %r2, -4
         call 1
         jeq %r0, 0, out
         ldxdw %r1, [%r0+0]
         jne %r1, 0, out
         mov %r7, %r0
         call 5
         stxdw [%r7+0], %r0
         out:
         mov %r0, 0
         exit",
    )?;
    let at = insns
        .iter()
        .position(|i| i.code == 0x18)
        .ok_or_else(|| anyhow!("no lddw"))?;
    insns[at].src = BPF_PSEUDO_MAP_IDX;
    insns[at].imm = 0;
    let image = ProgramImage {
        name: "stamp".into(),
        prog_type: 2, // KPROBE
        expected_attach_type: 0,
        insns,
        map_ids: vec![map.id()],
    };
    let fd = userbpf_runtime::image::file::create(&image)?;
    let prog_id = userbpf_runtime::ids::next_id(userbpf_runtime::ids::IdKind::Prog);
    let prog_reg = registry::publish_prog(prog_id, fd.as_raw_fd(), 2, "stamp")?;
    let (off, size) = func_range(bin, "hot_fn")?;
    let meta = std::fs::metadata(bin)?;
    let mut d = RecordData::zeroed();
    d.kind = kind::LINK;
    d.id = userbpf_runtime::ids::next_id(userbpf_runtime::ids::IdKind::Link);
    d.fd = -1;
    d.type_ = AttachKind::Uprobe as u32;
    d.prog_id = prog_id;
    d.pid = 0; // every process: each run's fresh target
    d.offset = off;
    d.cookie = 0;
    d.set_path(bin.to_str().ok_or_else(|| anyhow!("path"))?)?;
    d.dev = meta.dev();
    d.ino = meta.ino();
    d.func_offset = off;
    d.func_size = size;
    let link_reg = registry::publish(&d)?;
    Ok(Loader {
        map,
        _keep: vec![map_reg, prog_reg, link_reg],
        _prog_fd: fd,
    })
}

impl Loader {
    fn stamp(&self) -> u64 {
        let mut v = [0u8; 8];
        let _ = self.map.lookup(&0u32.to_le_bytes(), &mut v, 0);
        u64::from_le_bytes(v)
    }

    fn reset(&self) -> Result<()> {
        self.map
            .update(&0u32.to_le_bytes(), &0u64.to_le_bytes(), 0)
            .map_err(|e| anyhow!("map update: {e:?}"))
    }
}

struct Victim {
    child: Child,
    pid: u32,
}

impl Victim {
    /// `sleepers`: threads besides the hot one, asleep in nanosleep.
    fn start(bin: &Path, sleepers: usize) -> Result<Victim> {
        let mut child = Command::new(bin)
            .args(["hot", &sleepers.to_string()])
            .env_remove("LD_PRELOAD")
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().ok_or_else(|| anyhow!("stdout"))?)
            .read_line(&mut line)?;
        let pid = line
            .trim()
            .strip_prefix("ready ")
            .ok_or_else(|| anyhow!("victim said {line:?}"))?
            .parse()?;
        Ok(Victim { child, pid })
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One `userbpf attach` (or detach): (ms from spawn to the stamp, ms of
/// the injection as reported, ms from spawn to the command's exit).
fn run_cli(
    userbpf: &Path,
    verb: &str,
    pid: u32,
    loader: Option<&Loader>,
) -> Result<(f64, f64, f64)> {
    let t0 = monotonic_ns();
    let started = Instant::now();
    let child = Command::new(userbpf)
        .args([verb, &pid.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut hit = f64::NAN;
    if let Some(l) = loader {
        loop {
            let s = l.stamp();
            if s != 0 {
                hit = s.saturating_sub(t0) as f64 / 1e6;
                break;
            }
            if started.elapsed() > Duration::from_secs(10) {
                bail!("no hit within 10 s of `userbpf {verb} {pid}`");
            }
            // The stamp is the program's: polling often would only take
            // CPU from the command and the target.
            std::thread::sleep(Duration::from_micros(250));
        }
    }
    let out = child.wait_with_output()?;
    let wall = t0.abs_diff(monotonic_ns()) as f64 / 1e6;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if std::env::var_os("USERBPF_ATTACH_DEBUG").is_some() {
        eprintln!(
            "spawned at [{}.{:06}], first hit at +{hit:.3} ms\n{}",
            t0 / 1_000_000_000,
            t0 % 1_000_000_000 / 1000,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if !out.status.success() {
        bail!(
            "userbpf {verb} {pid} failed:\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let injection = stdout
        .lines()
        .find_map(|l| l.strip_prefix("injection: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .ok_or_else(|| anyhow!("no injection time in:\n{stdout}"))?;
    Ok((hit, injection, wall))
}

fn percentile(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let i = ((s.len() - 1) as f64 * p).round() as usize;
    s[i]
}

fn row(name: &str, v: &[f64]) {
    println!(
        "| {name} | {:.2} | {:.2} | {:.2} | {:.2} |",
        percentile(v, 0.5),
        percentile(v, 0.1),
        percentile(v, 0.9),
        percentile(v, 1.0)
    );
}

fn main() -> Result<()> {
    let mut runs = 30usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => {
                runs = args
                    .next()
                    .ok_or_else(|| anyhow!("--runs needs a value"))?
                    .parse()?
            }
            "-h" | "--help" => {
                println!("userbpf-attach-bench [--runs N]");
                return Ok(());
            }
            other => bail!("unknown argument {other} (try --help)"),
        }
    }
    let release = workspace().join("target/release");
    let userbpf = release.join("userbpf");
    for need in [&userbpf, &release.join("libuserbpf_agent.so")] {
        if !need.exists() {
            bail!(
                "{} missing: cargo build --release -p userbpf-cli -p userbpf-agent",
                need.display()
            );
        }
    }
    // A private namespace, inherited by the targets and the command.
    let ns = format!("attach-bench-{}", std::process::id());
    std::env::set_var("USERBPF_NAMESPACE", &ns);
    std::env::remove_var("USERBPF_DIR");
    let bin = build_victim(&workspace().join("target/attach-bench"))?;
    let l = loader(&bin)?;

    let (mut hit, mut inj, mut wall) = (Vec::new(), Vec::new(), Vec::new());
    let (mut hit2, mut inj2, mut wall2) = (Vec::new(), Vec::new(), Vec::new());
    let mut det = Vec::new();
    let (mut hit3, mut inj3) = (Vec::new(), Vec::new());
    for i in 0..runs {
        // Four threads: the hot one runs on while a sleeping one makes the
        // calls, so the first hit can come before the release.
        let v = Victim::start(&bin, 3)?;
        std::thread::sleep(Duration::from_millis(20));
        l.reset()?;
        let (h, j, _) = run_cli(&userbpf, "attach", v.pid, Some(&l))?;
        hit3.push(h);
        inj3.push(j);
        drop(v);
        let v = Victim::start(&bin, 0)?;
        // Let it run without the agent first.
        std::thread::sleep(Duration::from_millis(20));
        l.reset()?;
        let (h, j, w) = run_cli(&userbpf, "attach", v.pid, Some(&l))?;
        hit.push(h);
        inj.push(j);
        wall.push(w);
        let (_, j, _) = run_cli(&userbpf, "detach", v.pid, None)?;
        det.push(j);
        std::thread::sleep(Duration::from_millis(5));
        l.reset()?;
        let (h, j, w) = run_cli(&userbpf, "attach", v.pid, Some(&l))?;
        hit2.push(h);
        inj2.push(j);
        wall2.push(w);
        eprint!("\rrun {}/{runs}", i + 1);
    }
    eprintln!();
    let _ = std::fs::remove_dir_all(userbpf_runtime::namespace::namespace_dir());
    println!("{runs} runs; ms");
    println!();
    println!("| | median | p10 | p90 | max |");
    println!("|---|---:|---:|---:|---:|");
    row(
        "`userbpf attach` spawned → first hook hit (fresh target)",
        &hit,
    );
    row("  injection alone (thread stopped → released)", &inj);
    row("  `userbpf attach` spawned → exited", &wall);
    row(
        "`userbpf attach` spawned → first hit (agent loaded, after detach)",
        &hit2,
    );
    row("  injection alone", &inj2);
    row("  `userbpf attach` spawned → exited", &wall2);
    row("`userbpf detach`: injection alone", &det);
    row(
        "`userbpf attach` spawned → first hit (fresh target, 4 threads)",
        &hit3,
    );
    row("  injection alone", &inj3);
    Ok(())
}
