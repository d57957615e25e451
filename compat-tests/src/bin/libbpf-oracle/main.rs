//! `libbpf-oracle`: relocates BPF objects with the real libbpf (1.7, from
//! `libbpf-sys`) and prints the final instructions of every program in the
//! format of `userbpf_compat_tests::dump`.
//!
//! ```text
//! libbpf-oracle [--btf PATH] [--log] [--listing] [--bench N] NAME=OBJECT.o ...
//! libbpf-oracle [--btf PATH] [--log] --verdicts NAME=OBJECT.o ...
//! libbpf-oracle [--btf PATH] [--log] --kprobe-attach PROG:FUNC NAME=OBJECT.o ...
//! ```
//!
//! `--verdicts` and `--kprobe-attach` load programs into the kernel, one at
//! a time, and print a kernel-verdict report instead
//! (`userbpf_compat_tests::verdict`, issue 8).
//!
//! For each object: `bpf_object__open_mem` (object name NAME,
//! `btf_custom_path` PATH), autoload on for every program,
//! `bpf_object__prepare` (libbpf >= 1.6: externs resolved, maps created in
//! the kernel, CO-RE and every other relocation applied, no program
//! loaded), then `bpf_program__insns` of each program, with map fds turned
//! back into map indexes (`userbpf_compat_tests::normalize`). CO-RE
//! relocations are counted from libbpf's debug log. Needs root.
//!
//! `--log` echoes libbpf's log to
//! stderr; `--listing` prints each normalized program there too, as
//! `llvm-objdump -d` would. `--bench N` prints only timings (`bench` lines, best of N, log
//! off): open, prepare, and prepare with no map created (every map's
//! autocreate off: libbpf then poisons map references instead of creating
//! the maps), per object and in total, and `btf__load_vmlinux_btf`.
//!
//! This is the only binary that links libbpf, and it links neither the
//! `userbpf_compat_tests` library nor our loader (see the crate docs): it
//! compiles in the library's `dump` and `normalize` modules, which need
//! only `userbpf-runtime`. `relo-bench --write-corpus DIR` writes the
//! corpus as files for running it by hand.

#[allow(dead_code)]
#[path = "../../dump.rs"]
mod dump;
mod libbpf;
mod log;
#[allow(dead_code)]
#[path = "../../normalize.rs"]
mod normalize;
#[allow(dead_code)]
#[path = "../../verdict.rs"]
mod verdict;
mod verdicts;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use crate::dump::{OracleMap, OracleObject, OracleProgram, OracleSubprog, Status};
use crate::normalize::{normalize, ModuleBtfNumbers};
use userbpf_runtime::disasm::objdump_listing;

use crate::libbpf::Object;
use crate::log::Level;

struct Args {
    btf: Option<String>,
    bench: Option<u32>,
    echo_log: bool,
    listing: bool,
    verdicts: bool,
    kprobe_attach: Option<(String, String)>,
    objects: Vec<(String, PathBuf)>,
}

fn usage() -> String {
    "usage: libbpf-oracle [--btf PATH] [--log] [--listing] [--bench N | --verdicts | \
     --kprobe-attach PROG:FUNC] NAME=OBJECT.o ..."
        .into()
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        btf: None,
        bench: None,
        echo_log: false,
        listing: false,
        verdicts: false,
        kprobe_attach: None,
        objects: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--btf" => args.btf = Some(it.next().ok_or_else(usage)?),
            "--bench" => {
                let n = it.next().ok_or_else(usage)?;
                args.bench = Some(
                    n.parse()
                        .map_err(|_| format!("--bench {n}: not a number"))?,
                );
            }
            "--log" => args.echo_log = true,
            "--listing" => args.listing = true,
            "--verdicts" => args.verdicts = true,
            "--kprobe-attach" => {
                let spec = it.next().ok_or_else(usage)?;
                let (prog, func) = spec
                    .split_once(':')
                    .ok_or_else(|| format!("--kprobe-attach {spec}: expected PROG:FUNC"))?;
                args.kprobe_attach = Some((prog.to_string(), func.to_string()));
            }
            "-h" | "--help" => return Err(usage()),
            _ => {
                let (name, path) = arg.split_once('=').ok_or_else(usage)?;
                args.objects.push((name.to_string(), PathBuf::from(path)));
            }
        }
    }
    if args.objects.is_empty() {
        return Err(usage());
    }
    Ok(args)
}

/// The running kernel's (major, minor), from /proc/sys/kernel/osrelease.
fn kernel_version() -> Option<(u32, u32)> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let mut parts = release.trim().split(['.', '-']);
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// How often prepare is retried after the kernel rejects a map.
const MAX_ATTEMPTS: usize = 8;
/// `PERF_MAX_STACK_DEPTH` (127) frames of 8 bytes: the stack-trace value
/// size libbpf-tools set at run time.
const STACK_TRACE_VALUE_SIZE: u32 = 127 * 8;

/// Maps the kernel refused to create, from libbpf's warnings
/// (`map '<name>': failed to create: ...`).
fn rejected_maps(warnings: &[String]) -> Vec<String> {
    warnings
        .iter()
        .filter_map(|w| {
            let rest = &w[w.find("map '")? + 5..];
            let (name, tail) = rest.split_once("': ")?;
            tail.starts_with("failed to create")
                .then(|| name.to_string())
        })
        .collect()
}

/// libbpf's verdict on one object (see the module docs).
///
/// Some objects leave map sizes for their tool to set at run time
/// (`max_entries` 0, a stack-trace map without `value_size`), and the
/// kernel rejects them. Map sizes do not reach the instructions, so when
/// `bpf_object__prepare` fails only because the kernel refused a map, the
/// object is opened again with those maps given sizes the kernel accepts,
/// as the tool would, and a note says so.
///
/// Returns the object and the maps it had to resize.
fn relocate(
    name: &str,
    bytes: &[u8],
    btf: Option<&str>,
    kernel_note: Option<&str>,
) -> (OracleObject, Vec<String>) {
    let mut resized: Vec<String> = Vec::new();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut out = OracleObject::new(name);
        if let Some(note) = kernel_note {
            out.notes.push(note.to_string());
        }
        log::take();
        let result = relocate_into(&mut out, bytes, btf, &resized);
        let lines = log::take();
        out.warnings = lines
            .iter()
            .filter(|(l, _)| *l == Level::Warn)
            .map(|(_, t)| t.clone())
            .collect();
        if let Err(status) = result {
            let rejected: Vec<String> = rejected_maps(&out.warnings)
                .into_iter()
                .filter(|m| !resized.contains(m))
                .collect();
            if matches!(status, Status::PrepareFailed { .. })
                && !rejected.is_empty()
                && attempt < MAX_ATTEMPTS
            {
                resized.extend(rejected);
                continue;
            }
            out.status = status;
        }
        for (prog, counts) in log::core_counts(&lines) {
            match out.programs.iter_mut().find(|p| p.name == prog) {
                Some(p) => {
                    p.core_relos = counts.relos;
                    p.core_poisoned = counts.poisoned;
                }
                None => out.subprogs.push(OracleSubprog {
                    name: prog,
                    core_relos: counts.relos,
                    core_poisoned: counts.poisoned,
                }),
            }
        }
        return (out, resized);
    }
}

/// Gives the maps named in `resize` sizes the kernel accepts (see
/// [`relocate`]), noting each change.
fn resize_maps(obj: &Object, resize: &[String], out: &mut OracleObject) {
    for map in obj.maps() {
        let name = map.name();
        if !resize.contains(&name) {
            continue;
        }
        let mut changes = Vec::new();
        if map.max_entries() == 0 && map.map_type() != libbpf_sys::BPF_MAP_TYPE_PERF_EVENT_ARRAY {
            match map.set_max_entries(1) {
                Ok(()) => changes.push("max_entries 0 -> 1".to_string()),
                Err(e) => changes.push(format!("set_max_entries failed: {}", e.message)),
            }
        }
        if map.map_type() == libbpf_sys::BPF_MAP_TYPE_STACK_TRACE
            && (map.value_size() == 0 || map.value_size() % 8 != 0)
        {
            let from = map.value_size();
            match map.set_value_size(STACK_TRACE_VALUE_SIZE) {
                Ok(()) => changes.push(format!("value_size {from} -> {STACK_TRACE_VALUE_SIZE}")),
                Err(e) => changes.push(format!("set_value_size failed: {}", e.message)),
            }
        }
        out.notes.push(format!(
            "map '{name}': the kernel rejects the object's definition; created with {} \
             (its tool sets the size at run time; instructions do not depend on it)",
            if changes.is_empty() {
                "no change (nothing to fix)".to_string()
            } else {
                changes.join(", ")
            }
        ));
    }
}

fn relocate_into(
    out: &mut OracleObject,
    bytes: &[u8],
    btf: Option<&str>,
    resize: &[String],
) -> Result<(), Status> {
    let mut obj = Object::open_mem(&out.name, bytes, btf).map_err(|e| Status::OpenFailed {
        errno: e.errno,
        message: e.message,
    })?;
    resize_maps(&obj, resize, out);
    for prog in obj.programs() {
        if let Err(e) = prog.set_autoload(true) {
            out.notes.push(format!(
                "{}: bpf_program__set_autoload: {}",
                prog.name(),
                e.message
            ));
        }
        out.programs.push(OracleProgram {
            name: prog.name(),
            section: prog.section(),
            prog_type: prog.prog_type(),
            core_relos: 0,
            core_poisoned: 0,
            insns: Vec::new(),
        });
    }
    let prepared = obj.prepare();
    let mut fds = Vec::new();
    for (index, map) in obj.maps().iter().enumerate() {
        out.maps.push(OracleMap {
            index,
            map_type: map.map_type(),
            name: map.name(),
        });
        fds.push(map.fd());
    }
    if let Err(e) = prepared {
        return Err(Status::PrepareFailed {
            errno: e.errno,
            message: e.message,
        });
    }
    let mut modules = ModuleBtfNumbers::default();
    for (prog, record) in obj.programs().iter().zip(out.programs.iter_mut()) {
        let mut insns = prog.insns();
        let stats = normalize(&mut insns, &fds, &mut modules);
        record.insns = insns;
        out.notes.extend(
            stats
                .notes
                .into_iter()
                .map(|n| format!("{}: {n}", record.name)),
        );
    }
    Ok(())
}

/// Best-of-`n` timings of one object; None if libbpf fails on it.
/// `resize`: the maps to give kernel-acceptable sizes, as [`relocate`]
/// found (not timed).
fn bench_object(
    name: &str,
    bytes: &[u8],
    btf: Option<&str>,
    n: u32,
    resize: &[String],
) -> Option<[u64; 3]> {
    let (mut open, mut prepare, mut prepare_nomaps) = (u64::MAX, u64::MAX, u64::MAX);
    let mut scratch = OracleObject::new(name);
    for _ in 0..n {
        let t = Instant::now();
        let mut obj = Object::open_mem(name, bytes, btf).ok()?;
        open = open.min(t.elapsed().as_nanos() as u64);
        resize_maps(&obj, resize, &mut scratch);
        for p in obj.programs() {
            p.set_autoload(true).ok()?;
        }
        let t = Instant::now();
        obj.prepare().ok()?;
        prepare = prepare.min(t.elapsed().as_nanos() as u64);
        drop(obj);

        let mut obj = Object::open_mem(name, bytes, btf).ok()?;
        for p in obj.programs() {
            p.set_autoload(true).ok()?;
        }
        for m in obj.maps() {
            m.set_autocreate(false).ok()?;
        }
        let t = Instant::now();
        obj.prepare().ok()?;
        prepare_nomaps = prepare_nomaps.min(t.elapsed().as_nanos() as u64);
    }
    Some([open, prepare, prepare_nomaps])
}

fn bench(objects: &[(String, Vec<u8>)], btf: Option<&str>, n: u32, out: &mut String) {
    let mut totals = [0u64; 3];
    for (name, bytes) in objects {
        // One untimed run, with the log, finds the maps to resize.
        log::capture(false);
        let (_, resize) = relocate(name, bytes, btf, None);
        log::silence();
        match bench_object(name, bytes, btf, n, &resize) {
            Some(t) => {
                for (key, (ns, total)) in ["open", "prepare", "prepare_nomaps"]
                    .iter()
                    .zip(t.iter().zip(totals.iter_mut()))
                {
                    dump::write_bench(out, &format!("{key}/{name}"), *ns);
                    *total += ns;
                }
            }
            None => eprintln!("libbpf-oracle: {name}: libbpf fails, not timed"),
        }
    }
    for (key, total) in ["open_total", "prepare_total", "prepare_nomaps_total"]
        .iter()
        .zip(totals)
    {
        dump::write_bench(out, key, total);
    }
    let mut best = u64::MAX;
    for _ in 0..n {
        match libbpf::time_load_vmlinux_btf() {
            Ok(ns) => best = best.min(ns),
            Err(e) => {
                eprintln!("libbpf-oracle: btf__load_vmlinux_btf: {}", e.message);
                return;
            }
        }
    }
    dump::write_bench(out, "vmlinux_btf", best);
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    let mut objects: Vec<(String, Vec<u8>)> = Vec::new();
    for (name, path) in &args.objects {
        match std::fs::read(path) {
            Ok(bytes) => objects.push((name.clone(), bytes)),
            Err(e) => {
                eprintln!("libbpf-oracle: {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    // bpf_object__sanitize_prog rewrites probe_read_{kernel,user}[_str]
    // on kernels without them (< 5.5); see normalize's docs.
    let kernel_note = match kernel_version() {
        Some(v) if v < (5, 5) => Some(format!(
            "kernel {}.{} < 5.5: libbpf may have rewritten bpf_probe_read_{{kernel,user}} calls",
            v.0, v.1
        )),
        _ => None,
    };
    let btf = args.btf.as_deref();

    let stdout = std::io::stdout();
    let mut stdout = stdout.lock();
    if args.verdicts || args.kprobe_attach.is_some() {
        log::capture(args.echo_log);
        let mut text = String::new();
        verdict::write_header(&mut text, &libbpf::version());
        for (name, bytes) in &objects {
            let object = match &args.kprobe_attach {
                Some((prog, func)) => verdicts::kprobe_attach(name, bytes, btf, prog, func),
                None => verdicts::object_verdicts(name, bytes, btf),
            };
            verdict::write_object(&mut text, &object);
            if stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
                .is_err()
            {
                return ExitCode::FAILURE;
            }
            text.clear();
        }
        return ExitCode::SUCCESS;
    }
    let mut text = String::new();
    dump::write_header(&mut text, &libbpf::version());
    if let Some(n) = args.bench {
        bench(&objects, btf, n.max(1), &mut text);
        return match stdout.write_all(text.as_bytes()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        };
    }
    log::capture(args.echo_log);
    for (name, bytes) in &objects {
        let (object, _) = relocate(name, bytes, btf, kernel_note.as_deref());
        if args.listing {
            for p in &object.programs {
                eprintln!(
                    "{name}/{} ({}):\n{}",
                    p.name,
                    p.section,
                    objdump_listing(&p.insns)
                );
            }
        }
        dump::write_object(&mut text, &object);
        // One object at a time, so a crash leaves the earlier ones readable.
        if stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
            .is_err()
        {
            return ExitCode::FAILURE;
        }
        text.clear();
    }
    ExitCode::SUCCESS
}
