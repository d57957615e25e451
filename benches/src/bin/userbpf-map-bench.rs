//! userbpf-map-bench: map operations from a JIT-compiled eBPF program, in
//! ns per operation, against the same program in the kernel.
//!
//!     cargo run --release -p userbpf-benches --bin userbpf-map-bench -- [--quick] [--no-kernel] [--only HASH]
//!
//! Method: each measurement is one program that performs N = 1000 map
//! operations in a loop (key `i & 1023` for hits, keys outside the map for
//! misses, one helper call per iteration); ns per op = time of one run / N,
//! loop overhead included (the `empty loop` row shows it: the same loop
//! without the helper call). Exactly the same instructions run on both
//! sides: in the kernel as a `BPF_PROG_TYPE_SOCKET_FILTER` program through
//! `BPF_PROG_TEST_RUN` with `repeat` (the kernel reports the mean time of a
//! run), on userbpf through `Vm::run` on the Cranelift JIT, timed with
//! `Instant` over the same number of runs. The only difference is the
//! `lddw` of the map: `BPF_PSEUDO_MAP_FD` with the kernel map's fd there,
//! the address of our map here. Each figure is the median of several
//! batches. Insert and delete alternate: a run inserts N new keys, the
//! next deletes them (each timed on its own, one run per sample).
//!
//! The kernel column needs root (CAP_BPF / CAP_SYS_ADMIN); without it the
//! table has the userbpf column only and says why.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use userbpf_runtime::asm::assemble;
use userbpf_runtime::helpers::HelperRegistry;
use userbpf_runtime::isa::{Insn, BPF_PSEUDO_MAP_FD, LDDW};
use userbpf_runtime::maps::{map_type, Map, MapSpec};
use userbpf_runtime::vm::{Engine, Vm, VmOptions};

/// Operations per program run.
const N: u32 = 1000;
/// Keys present in every map (0..KEYS), and the key mask.
const KEYS: u32 = 1024;
/// Room for KEYS + N inserted keys in hash maps.
const MAX_ENTRIES: u32 = 4096;
/// First key the insert/delete programs use (never present otherwise).
const INSERT_BASE: i32 = 0x20_0000;
/// First key of the miss lookups.
const MISS_BASE: i32 = 0x10_0000;

struct Config {
    quick: bool,
    kernel: bool,
    /// Only this map type (by name).
    only: Option<String>,
}

fn parse_args() -> Result<Config> {
    let mut cfg = Config {
        quick: false,
        kernel: true,
        only: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => cfg.quick = true,
            "--no-kernel" => cfg.kernel = false,
            "--only" => cfg.only = Some(args.next().context("--only needs a map type")?),
            "--bench" => {}
            "-h" | "--help" => {
                println!("usage: userbpf-map-bench [--quick] [--no-kernel] [--only MAP_TYPE]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    Ok(cfg)
}

// ---------------------------------------------------------------- programs

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Empty,
    LookupHit,
    LookupMiss,
    Update,
    Insert,
    Delete,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Empty => "empty loop",
            Op::LookupHit => "lookup (hit)",
            Op::LookupMiss => "lookup (miss)",
            Op::Update => "update (existing key)",
            Op::Insert => "update (new key)",
            Op::Delete => "delete",
        }
    }
}

/// The program for `op`: a loop of N operations returning the number that
/// succeeded (hits, or helper calls that returned 0). The map is the
/// `lddw %r1, 0` that `link` patches.
fn program(op: Op) -> Result<Vec<Insn>> {
    let (key, call) = match op {
        Op::Empty => ("and %r1, 1023".to_string(), ""),
        Op::LookupHit => ("and %r1, 1023".to_string(), "lookup"),
        Op::LookupMiss => (format!("add %r1, {MISS_BASE}"), "lookup"),
        Op::Update => ("and %r1, 1023".to_string(), "update"),
        Op::Insert => (format!("add %r1, {INSERT_BASE}"), "update_new"),
        Op::Delete => (format!("add %r1, {INSERT_BASE}"), "delete"),
    };
    let body = match call {
        "" => "mov %r0, 0".to_string(),
        "lookup" => "lddw %r1, 0
                     mov %r2, %r10
                     add %r2, -4
                     call 1
                     jeq %r0, 0, skip
                     add %r9, 1
                     skip:"
            .to_string(),
        "update" | "update_new" => format!(
            "stxdw [%r10-16], %r6
             lddw %r1, 0
             mov %r2, %r10
             add %r2, -4
             mov %r3, %r10
             add %r3, -16
             mov %r4, {}
             call 2
             jne %r0, 0, skip
             add %r9, 1
             skip:",
            if call == "update_new" { 1 } else { 0 }
        ),
        _ => "lddw %r1, 0
              mov %r2, %r10
              add %r2, -4
              call 3
              jne %r0, 0, skip
              add %r9, 1
              skip:"
            .to_string(),
    };
    let body = if op == Op::Empty {
        "mov %r0, 0\nadd %r9, 1".to_string()
    } else {
        body
    };
    let src = format!(
        "mov %r9, 0
         mov %r6, 0
         loop:
         mov %r1, %r6
         {key}
         stxw [%r10-4], %r1
         {body}
         add %r6, 1
         jlt %r6, {N}, loop
         mov %r0, %r9
         exit"
    );
    assemble(&src).map_err(|e| anyhow::anyhow!("{e}\n{src}"))
}

/// Points every `lddw %rX, 0` at the map: our address, or the kernel fd.
fn link(insns: &[Insn], target: Target) -> Vec<Insn> {
    let mut out = insns.to_vec();
    let mut i = 0;
    while i < out.len() {
        if out[i].code == LDDW {
            match target {
                Target::User(addr) => {
                    out[i].imm = addr as u32 as i32;
                    out[i + 1].imm = (addr >> 32) as u32 as i32;
                }
                Target::Kernel(fd) => {
                    out[i].src = BPF_PSEUDO_MAP_FD;
                    out[i].imm = fd;
                    out[i + 1].imm = 0;
                }
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    out
}

#[derive(Clone, Copy)]
enum Target {
    User(u64),
    Kernel(i32),
}

// ---------------------------------------------------------------- kernel

mod kernel {
    use anyhow::{bail, Result};
    use userbpf_runtime::isa::Insn;

    const BPF_MAP_CREATE: i64 = 0;
    const BPF_MAP_UPDATE_ELEM: i64 = 2;
    const BPF_PROG_LOAD: i64 = 5;
    const BPF_PROG_TEST_RUN: i64 = 10;
    const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;

    /// `union bpf_attr`, as bytes (128 is more than every command here
    /// uses; the kernel wants the rest zero).
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
        fn get_u32(&self, off: usize) -> u32 {
            u32::from_ne_bytes(self.0[off..off + 4].try_into().unwrap())
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

    pub fn create_map(map_type: u32, key: u32, value: u32, max: u32) -> Result<Fd> {
        let mut a = Attr::new();
        a.u32(0, map_type).u32(4, key).u32(8, value).u32(12, max);
        Ok(Fd(bpf(BPF_MAP_CREATE, &mut a)? as i32))
    }

    pub fn update(map: &Fd, key: &[u8], value: &[u8]) -> Result<()> {
        let mut a = Attr::new();
        a.u32(0, map.0 as u32)
            .u64(8, key.as_ptr() as u64)
            .u64(16, value.as_ptr() as u64)
            .u64(24, 0);
        bpf(BPF_MAP_UPDATE_ELEM, &mut a)?;
        Ok(())
    }

    pub fn load(insns: &[Insn]) -> Result<Fd> {
        let bytes: Vec<u8> = insns.iter().flat_map(|i| i.to_bytes()).collect();
        let license = b"GPL\0";
        let mut log = vec![0u8; 1 << 20];
        let mut a = Attr::new();
        a.u32(0, BPF_PROG_TYPE_SOCKET_FILTER)
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
                let text = String::from_utf8_lossy(&log[..end]);
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                bail!(
                    "BPF_PROG_LOAD: {e}\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            }
        }
    }

    /// Runs the program `repeat` times; (mean ns per run, r0).
    pub fn test_run(prog: &Fd, repeat: u32) -> Result<(u64, u32)> {
        let data = [0u8; 64];
        let mut a = Attr::new();
        a.u32(0, prog.0 as u32)
            .u32(8, data.len() as u32)
            .u64(16, data.as_ptr() as u64)
            .u32(32, repeat);
        bpf(BPF_PROG_TEST_RUN, &mut a)?;
        Ok((u64::from(a.get_u32(36)), a.get_u32(4)))
    }
}

// ---------------------------------------------------------------- the runs

struct Sides {
    user: Arc<Map>,
    kernel: Option<kernel::Fd>,
}

fn make_maps(map_type: u32, with_kernel: bool) -> Result<Sides> {
    let ncpus = userbpf_runtime::cpu::possible_cpus() as usize;
    let percpu = matches!(
        map_type,
        map_type::PERCPU_ARRAY | map_type::PERCPU_HASH | map_type::LRU_PERCPU_HASH
    );
    let is_array = matches!(map_type, map_type::ARRAY | map_type::PERCPU_ARRAY);
    let max = if is_array { KEYS } else { MAX_ENTRIES };
    let spec = MapSpec {
        map_type,
        key_size: 4,
        value_size: 8,
        max_entries: max,
        name: "bench".into(),
        ..MapSpec::default()
    };
    let user = Map::create(
        &spec,
        userbpf_runtime::ids::next_id(userbpf_runtime::ids::IdKind::Map),
    )?;
    let kernel = if with_kernel {
        Some(kernel::create_map(map_type, 4, 8, max)?)
    } else {
        None
    };
    let value = vec![1u8; if percpu { 8 * ncpus } else { 8 }];
    for k in 0..KEYS {
        user.update(&k.to_ne_bytes(), &value, 0)?;
        if let Some(fd) = &kernel {
            kernel::update(fd, &k.to_ne_bytes(), &value)?;
        }
    }
    Ok(Sides { user, kernel })
}

fn helpers() -> HelperRegistry {
    let mut reg = HelperRegistry::new();
    userbpf_runtime::maps::helpers::register_map_helpers(&mut reg);
    reg
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

struct Row {
    map: &'static str,
    op: Op,
    user: f64,
    kernel: Option<f64>,
}

fn expected_r0(op: Op) -> u64 {
    match op {
        Op::LookupMiss => 0,
        _ => u64::from(N),
    }
}

/// ns per op of `op` on both sides (steady-state ops: many runs per batch).
fn measure_steady(sides: &Sides, op: Op, cfg: &Config) -> Result<(f64, Option<f64>)> {
    let insns = program(op)?;
    let vm = Vm::from_insns(
        link(&insns, Target::User(sides.user.prog_addr())),
        helpers(),
        VmOptions::with_engine(Engine::Jit),
    )?;
    let (batches, runs) = if cfg.quick { (3, 20) } else { (9, 200) };
    let mut ctx = [0u8; 64];
    let r0 = vm.run(&mut ctx)?;
    if r0 != expected_r0(op) {
        bail!(
            "userbpf {}: r0 = {r0}, expected {}",
            op.name(),
            expected_r0(op)
        );
    }
    let mut samples = Vec::new();
    for _ in 0..batches {
        let t = Instant::now();
        for _ in 0..runs {
            std::hint::black_box(vm.run(&mut ctx)?);
        }
        samples.push(t.elapsed().as_nanos() as f64 / f64::from(runs) / f64::from(N));
    }
    let user = median(samples);
    let kernel = match &sides.kernel {
        None => None,
        Some(map) => {
            let prog = kernel::load(&link(&insns, Target::Kernel(map.0)))?;
            let (_, r0) = kernel::test_run(&prog, 1)?;
            if u64::from(r0) != expected_r0(op) {
                bail!(
                    "kernel {}: r0 = {r0}, expected {}",
                    op.name(),
                    expected_r0(op)
                );
            }
            let mut samples = Vec::new();
            for _ in 0..batches {
                let (ns, _) = kernel::test_run(&prog, runs)?;
                samples.push(ns as f64 / f64::from(N));
            }
            Some(median(samples))
        }
    };
    Ok((user, kernel))
}

/// ns per op of inserting N new keys and of deleting them again.
fn measure_insert_delete(sides: &Sides, cfg: &Config) -> Result<[(f64, Option<f64>); 2]> {
    let ins = program(Op::Insert)?;
    let del = program(Op::Delete)?;
    let uvm = |p: &[Insn]| {
        Vm::from_insns(
            link(p, Target::User(sides.user.prog_addr())),
            helpers(),
            VmOptions::with_engine(Engine::Jit),
        )
    };
    let (uins, udel) = (uvm(&ins)?, uvm(&del)?);
    let rounds = if cfg.quick { 5 } else { 41 };
    let mut ctx = [0u8; 64];
    let (mut si, mut sd) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        let a = uins.run(&mut ctx)?;
        let ti = t.elapsed();
        let t = Instant::now();
        let b = udel.run(&mut ctx)?;
        let td = t.elapsed();
        if a != u64::from(N) || b != u64::from(N) {
            bail!("userbpf insert/delete: {a} inserted, {b} deleted");
        }
        si.push(ti.as_nanos() as f64 / f64::from(N));
        sd.push(td.as_nanos() as f64 / f64::from(N));
    }
    let user = (median(si), median(sd));
    let kernel = match &sides.kernel {
        None => None,
        Some(map) => {
            let kins = kernel::load(&link(&ins, Target::Kernel(map.0)))?;
            let kdel = kernel::load(&link(&del, Target::Kernel(map.0)))?;
            let (mut si, mut sd) = (Vec::new(), Vec::new());
            for _ in 0..rounds {
                let (ti, a) = kernel::test_run(&kins, 1)?;
                let (td, b) = kernel::test_run(&kdel, 1)?;
                if a != N || b != N {
                    bail!("kernel insert/delete: {a} inserted, {b} deleted");
                }
                si.push(ti as f64 / f64::from(N));
                sd.push(td as f64 / f64::from(N));
            }
            Some((median(si), median(sd)))
        }
    };
    Ok([(user.0, kernel.map(|k| k.0)), (user.1, kernel.map(|k| k.1))])
}

fn main() -> Result<()> {
    let cfg = parse_args()?;
    let mut with_kernel = cfg.kernel;
    let mut kernel_note = String::new();
    if with_kernel {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            with_kernel = false;
            kernel_note =
                "kernel column skipped: not root (bpf_prog_test_run needs CAP_BPF)".into();
        } else if let Err(e) = kernel::create_map(map_type::ARRAY, 4, 8, 1) {
            with_kernel = false;
            kernel_note = format!("kernel column skipped: the bpf syscall fails here ({e})");
        }
    } else {
        kernel_note = "kernel column skipped (--no-kernel)".into();
    }

    let types: [(&'static str, u32); 6] = [
        ("ARRAY", map_type::ARRAY),
        ("PERCPU_ARRAY", map_type::PERCPU_ARRAY),
        ("HASH", map_type::HASH),
        ("PERCPU_HASH", map_type::PERCPU_HASH),
        ("LRU_HASH", map_type::LRU_HASH),
        ("LRU_PERCPU_HASH", map_type::LRU_PERCPU_HASH),
    ];
    let mut rows = Vec::new();
    {
        let sides = make_maps(map_type::ARRAY, with_kernel)?;
        let (user, kernel) = measure_steady(&sides, Op::Empty, &cfg)?;
        rows.push(Row {
            map: "-",
            op: Op::Empty,
            user,
            kernel,
        });
    }
    for (name, ty) in types {
        if cfg
            .only
            .as_ref()
            .is_some_and(|o| !o.eq_ignore_ascii_case(name))
        {
            continue;
        }
        eprint!("{name} ");
        std::io::stderr().flush().ok();
        let sides = make_maps(ty, with_kernel).with_context(|| format!("creating {name}"))?;
        for op in [Op::LookupHit, Op::LookupMiss, Op::Update] {
            let (user, kernel) = measure_steady(&sides, op, &cfg)
                .with_context(|| format!("{name} {}", op.name()))?;
            rows.push(Row {
                map: name,
                op,
                user,
                kernel,
            });
        }
        if !matches!(ty, map_type::ARRAY | map_type::PERCPU_ARRAY) {
            let [ins, del] = measure_insert_delete(&sides, &cfg)
                .with_context(|| format!("{name} insert/delete"))?;
            for (op, (user, kernel)) in [(Op::Insert, ins), (Op::Delete, del)] {
                rows.push(Row {
                    map: name,
                    op,
                    user,
                    kernel,
                });
            }
        }
    }
    eprintln!();

    println!(
        "### Map operations from a JIT-compiled program (ns per op, loop of {N} ops per run)\n"
    );
    println!(
        "- key 4 bytes, value 8 bytes, {KEYS} keys present; {} CPUs possible",
        userbpf_runtime::cpu::possible_cpus()
    );
    if !kernel_note.is_empty() {
        println!("- {kernel_note}");
    }
    println!();
    println!("| map | operation | userbpf | kernel | userbpf / kernel |");
    println!("|---|---|---:|---:|---:|");
    for r in &rows {
        let (k, ratio) = match r.kernel {
            Some(k) => (format!("{k:.1}"), format!("{:.2}x", r.user / k)),
            None => ("-".into(), "-".into()),
        };
        println!(
            "| {} | {} | {:.1} | {} | {} |",
            r.map,
            r.op.name(),
            r.user,
            k,
            ratio
        );
    }
    Ok(())
}
