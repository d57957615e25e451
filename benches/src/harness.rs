//! The harness behind `userbpf-jit-bench` (and `cargo bench`): times every
//! benchmark program on every runtime and prints markdown tables (ns per
//! run and ratio to native -O2; JIT compile times; the issue's targets).

use std::hint::black_box;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use crate::inputs::Buffer;
use crate::programs::{self, Bench, Source, BENCHES};
use crate::runtimes::{self, RunFn, Runtime};
use anyhow::{bail, Context, Result};

struct Config {
    quick: bool,
    list: bool,
    filter: Option<String>,
    /// Warm-up time before calibrating (at least one run).
    warmup: Duration,
    /// Target length of one timed batch.
    batch: Duration,
    batches: usize,
    compile_reps: usize,
}

impl Config {
    fn from_args(args: impl IntoIterator<Item = String>) -> Result<Config> {
        let mut quick = false;
        let mut list = false;
        let mut filter = None;
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => quick = true,
                "--list" => list = true,
                // What `cargo bench` passes to every bench target.
                "--bench" => {}
                "--filter" => filter = Some(args.next().context("--filter needs a NAME")?),
                "-h" | "--help" => {
                    println!(
                        "usage: userbpf-jit-bench [--quick] [--filter NAME] [--list]\n\n  \
                         --quick        few short batches (CI smoke run; numbers are rough)\n  \
                         --list         list the programs and their expected r0, run nothing\n  \
                         --filter NAME  only programs whose name contains NAME"
                    );
                    std::process::exit(0);
                }
                other => bail!("unknown argument {other:?} (try --help)"),
            }
        }
        Ok(if quick {
            Config {
                quick,
                list,
                filter,
                warmup: Duration::ZERO,
                batch: Duration::from_millis(2),
                batches: 3,
                compile_reps: 3,
            }
        } else {
            Config {
                quick,
                list,
                filter,
                warmup: Duration::from_millis(100),
                batch: Duration::from_millis(10),
                batches: 21,
                compile_reps: 21,
            }
        })
    }
}

/// One cell of the results: ns per run, or why there is none.
type Cell = std::result::Result<f64, String>;

struct Row {
    bench: &'static Bench,
    src: &'static Source,
    cells: Vec<Cell>,
    userbpf_compile: Option<std::result::Result<Duration, String>>,
    rbpf_compile: Option<std::result::Result<Duration, String>>,
}

/// Runs the benchmarks with the given command-line arguments (without the
/// program name) and prints the report on stdout.
pub fn run(args: impl IntoIterator<Item = String>) -> Result<()> {
    let cfg = Config::from_args(args)?;
    if let Some(reason) = programs::TOOLCHAIN_ERROR {
        bail!("the benchmark programs were not built: {reason}");
    }
    let benches: Vec<&Bench> = BENCHES
        .iter()
        .filter(|b| match &cfg.filter {
            Some(f) => b.name.contains(f.as_str()),
            None => true,
        })
        .collect();
    if benches.is_empty() {
        bail!("no program matches the filter");
    }

    if cfg.list {
        println!("| program | insns | input bytes | expected r0 | what |");
        println!("|---|---:|---:|---:|---|");
        for b in &benches {
            let input = (b.input)();
            let insns = b.source().map_or(0, |s| s.insn_count());
            let r0 = (b.reference)(&input);
            println!(
                "| {} | {insns} | {} | {r0} ({r0:#x}) | {} |",
                b.name,
                input.len(),
                b.description
            );
        }
        return Ok(());
    }

    let progress = std::io::stderr().is_terminal();
    let mut rows = Vec::new();
    for bench in benches {
        let src = bench
            .source()
            .with_context(|| format!("{}: no compiled program", bench.name))?;
        if progress {
            eprint!("{:<20}\r", bench.name);
        }
        rows.push(Row {
            bench,
            src,
            cells: measure(bench, src, &cfg),
            userbpf_compile: runtimes::compile_time(Runtime::UserbpfJit, src, cfg.compile_reps),
            rbpf_compile: runtimes::compile_time(Runtime::RbpfJit, src, cfg.compile_reps),
        });
    }
    if progress {
        eprint!("{:20}\r", "");
    }
    report(&cfg, &rows);
    Ok(())
}

/// One runtime's loaded program, its own copy of the input, and how many
/// runs make one batch.
struct Subject {
    rt: Runtime,
    run: RunFn,
    mem: Buffer,
    iters: u64,
    samples: Vec<f64>,
}

/// Median ns per run of `bench` on every runtime. The runtimes take turns
/// batch by batch, so that a noisy moment (other work on the machine) hits
/// them all alike and the ratios stay meaningful.
fn measure(bench: &Bench, src: &'static Source, cfg: &Config) -> Vec<Cell> {
    let input = (bench.input)();
    let expected = (bench.reference)(&input);
    let mut cells: Vec<Cell> = Vec::new();
    let mut subjects: Vec<(usize, Subject)> = Vec::new();
    for (i, rt) in Runtime::ALL.into_iter().enumerate() {
        let loaded = runtimes::load(rt, src).and_then(|run| {
            let mut s = Subject {
                rt,
                run,
                mem: input.clone(),
                iters: 1,
                samples: Vec::with_capacity(cfg.batches),
            };
            // Warm up (at least one run), then size a batch from that.
            let start = Instant::now();
            let mut runs = 0u64;
            while runs == 0 || start.elapsed() < cfg.warmup {
                run_checked(&mut s, bench, expected)?;
                runs += 1;
            }
            let per_run = start.elapsed().as_secs_f64() / runs as f64;
            s.iters = ((cfg.batch.as_secs_f64() / per_run) as u64).clamp(1, 100_000_000);
            Ok(s)
        });
        match loaded {
            Ok(s) => {
                subjects.push((i, s));
                cells.push(Ok(f64::NAN));
            }
            Err(e) => cells.push(Err(e)),
        }
    }
    for _ in 0..cfg.batches {
        for (i, s) in &mut subjects {
            if cells[*i].is_err() {
                continue;
            }
            let start = Instant::now();
            for _ in 0..s.iters {
                if let Err(e) = run_checked(s, bench, expected) {
                    cells[*i] = Err(e);
                    break;
                }
            }
            s.samples
                .push(start.elapsed().as_nanos() as f64 / s.iters as f64);
        }
    }
    for (i, mut s) in subjects {
        if let Some(ok) = bench.output_ok {
            assert!(
                ok(&s.mem),
                "{}: {} returned the right r0 but left the wrong memory contents",
                bench.name,
                s.rt.label()
            );
        }
        if cells[i].is_ok() {
            s.samples.sort_by(f64::total_cmp);
            cells[i] = Ok(s.samples[s.samples.len() / 2]);
        }
    }
    cells
}

/// One run; panics if r0 is not the expected value.
fn run_checked(s: &mut Subject, bench: &Bench, expected: u64) -> std::result::Result<(), String> {
    let r0 = (s.run)(black_box(&mut s.mem[..]))?;
    if black_box(r0) != expected {
        panic!(
            "{}: {} returned r0 = {r0} ({r0:#x}), expected {expected} ({expected:#x})",
            bench.name,
            s.rt.label()
        );
    }
    Ok(())
}

/// Numbered footnotes for the n/a cells; the same message gets one number.
#[derive(Default)]
struct Notes(Vec<String>);

impl Notes {
    fn add(&mut self, msg: String) -> usize {
        match self.0.iter().position(|m| *m == msg) {
            Some(i) => i + 1,
            None => {
                self.0.push(msg);
                self.0.len()
            }
        }
    }
}

fn geomean(values: &[f64]) -> f64 {
    (values.iter().map(|v| v.ln()).sum::<f64>() / values.len() as f64).exp()
}

fn fmt_ns(ns: f64) -> String {
    if ns < 100.0 {
        format!("{ns:.1}")
    } else {
        let s = format!("{:.0}", ns);
        // Thousands separators keep the big interpreter numbers readable.
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        out
    }
}

fn fmt_ratio(r: f64) -> String {
    if r < 10.0 {
        format!("{r:.2}×")
    } else {
        format!("{r:.0}×")
    }
}

fn fmt_us(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    // Other work on the machine moves the absolute numbers; say how busy it was.
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into());
    format!("{cpu}, {cores} cores, Linux {kernel}; load average {load} at start")
}

fn report(cfg: &Config, rows: &[Row]) {
    let native = Runtime::ALL
        .iter()
        .position(|&r| r == Runtime::NativeO2)
        .unwrap();
    let jit = Runtime::ALL
        .iter()
        .position(|&r| r == Runtime::UserbpfJit)
        .unwrap();
    let rbpf_jit = Runtime::ALL
        .iter()
        .position(|&r| r == Runtime::RbpfJit)
        .unwrap();
    let mut notes = Notes::default();

    println!("## userbpf JIT benchmark\n");
    println!("- machine: {}", machine());
    println!("- compiler: {}", programs::CLANG_VERSION);
    println!("- BPF: `clang {} -c`, raw `.text`", programs::BPF_CFLAGS);
    println!("- native -O2: `{}`", programs::NATIVE_CFLAGS);
    println!("- native scalar: `{}`", programs::SCALAR_CFLAGS);
    println!("- userbpf: `Vm::run`, Engine::Jit and Engine::Interpreter; rbpf 0.4: `EbpfVmRaw`");
    println!(
        "- timing: {}median of {} batches of ~{} ms each after warm-up; ns per run (ratio to native -O2)\n",
        if cfg.quick { "QUICK MODE (rough numbers), " } else { "" },
        cfg.batches,
        cfg.batch.as_millis()
    );

    print!("| program | insns |");
    for rt in Runtime::ALL {
        print!(" {} |", rt.label());
    }
    print!("\n|---|---:|");
    for _ in Runtime::ALL {
        print!("---:|");
    }
    println!();
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); Runtime::ALL.len()];
    for row in rows {
        print!("| {} | {} |", row.bench.name, row.src.insn_count());
        let base = row.cells[native].as_ref().ok().copied();
        for (i, cell) in row.cells.iter().enumerate() {
            match (cell, base) {
                (Ok(ns), Some(base)) if i != native => {
                    let ratio = ns / base;
                    ratios[i].push(ratio);
                    print!(" {} ({}) |", fmt_ns(*ns), fmt_ratio(ratio));
                }
                (Ok(ns), _) => print!(" {} |", fmt_ns(*ns)),
                (Err(e), _) => {
                    let n = notes.add(format!("{}: {e}", Runtime::ALL[i].label()));
                    print!(" n/a [{n}] |");
                }
            }
        }
        println!();
    }
    print!("| **geomean** | |");
    for (i, r) in ratios.iter().enumerate() {
        if i == native {
            print!(" 1.00× |");
        } else if r.is_empty() {
            print!(" n/a |");
        } else if r.len() < rows.len() {
            print!(
                " {} ({} of {}) |",
                fmt_ratio(geomean(r)),
                r.len(),
                rows.len()
            );
        } else {
            print!(" {} |", fmt_ratio(geomean(r)));
        }
    }
    println!("\n");

    println!(
        "### JIT compile time (median of {} compilations)\n",
        cfg.compile_reps
    );
    println!("| program | insns | userbpf JIT µs | userbpf µs per 1000 insns | rbpf JIT µs |");
    println!("|---|---:|---:|---:|---:|");
    let (mut total_us, mut total_insns) = (0.0, 0usize);
    let mut all_compiled = true;
    for row in rows {
        let insns = row.src.insn_count();
        let ours = match &row.userbpf_compile {
            Some(Ok(d)) => {
                total_us += d.as_secs_f64() * 1e6;
                total_insns += insns;
                let per_k = d.as_secs_f64() * 1e6 * 1000.0 / insns as f64;
                format!("{} | {:.0}", fmt_us(*d), per_k)
            }
            Some(Err(e)) => {
                all_compiled = false;
                let n = notes.add(format!("userbpf JIT compile: {e}"));
                format!("n/a [{n}] | n/a")
            }
            None => "n/a | n/a".into(),
        };
        let theirs = match &row.rbpf_compile {
            Some(Ok(d)) => fmt_us(*d),
            Some(Err(e)) => format!("n/a [{}]", notes.add(format!("rbpf JIT compile: {e}"))),
            None => "n/a".into(),
        };
        println!("| {} | {insns} | {ours} | {theirs} |", row.bench.name);
    }
    let per_k_total = (total_insns > 0).then(|| total_us * 1000.0 / total_insns as f64);
    if let Some(per_k) = per_k_total {
        println!("| **all programs** | {total_insns} | {total_us:.1} | {per_k:.0} | |");
    }
    println!();

    println!("### Targets\n");
    let jit_ratios: Vec<(&str, f64)> = rows
        .iter()
        .filter_map(|row| match (&row.cells[jit], &row.cells[native]) {
            (Ok(j), Ok(n)) => Some((row.bench.name, j / n)),
            _ => None,
        })
        .collect();
    let complete = jit_ratios.len() == rows.len();
    let verdict = |ok: bool| {
        if !complete {
            "pending (userbpf JIT results missing)"
        } else if ok {
            "met"
        } else {
            "NOT met"
        }
    };
    if jit_ratios.is_empty() {
        println!("- userbpf JIT: no results, targets pending");
    } else {
        let g = geomean(&jit_ratios.iter().map(|(_, r)| *r).collect::<Vec<_>>());
        println!(
            "- userbpf JIT geomean <= 1.5× native -O2: {} — {}",
            fmt_ratio(g),
            verdict(g <= 1.5)
        );
        let (worst, w) = jit_ratios
            .iter()
            .copied()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap();
        let over: Vec<&str> = jit_ratios
            .iter()
            .filter(|(_, r)| *r > 3.0)
            .map(|(n, _)| *n)
            .collect();
        println!(
            "- no program worse than 3× native -O2: worst is {worst} at {} — {}{}",
            fmt_ratio(w),
            verdict(over.is_empty()),
            if over.is_empty() {
                String::new()
            } else {
                format!(" (over 3×: {})", over.join(", "))
            }
        );
        let slower: Vec<String> = rows
            .iter()
            .filter_map(|row| match (&row.cells[jit], &row.cells[rbpf_jit]) {
                (Ok(j), Ok(r)) if j >= r => {
                    Some(format!("{} ({:.2}× rbpf)", row.bench.name, j / r))
                }
                _ => None,
            })
            .collect();
        println!(
            "- faster than rbpf's JIT on every program: {}{}",
            verdict(slower.is_empty()),
            if slower.is_empty() {
                String::new()
            } else {
                format!(" (not faster on: {})", slower.join(", "))
            }
        );
    }
    match per_k_total {
        Some(per_k) if all_compiled => println!(
            "- <= 1 ms (1000 µs) compile per 1000 insns, over all programs: {per_k:.0} µs — {}",
            if per_k <= 1000.0 { "met" } else { "NOT met" }
        ),
        _ => println!(
            "- <= 1 ms compile per 1000 insns: pending (userbpf JIT did not compile every program)"
        ),
    }
    println!("- for scale: bpftime's LLVM JIT takes 4 to 76 ms per program (bpf-benchmark data)");

    if !notes.0.is_empty() {
        println!("\nNotes:\n");
        for (i, n) in notes.0.iter().enumerate() {
            println!("{}. {}", i + 1, n.replace('\n', " "));
        }
    }
}
