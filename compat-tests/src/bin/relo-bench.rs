//! `relo-bench`: the cost of relocating the corpus (libbpf-tools objects
//! of /usr/sbin plus our C test objects), libbpf against ours, and of
//! loading the kernel's BTF. Best of N runs, in nanoseconds.
//!
//! ```text
//! relo-bench [--iterations N] [--per-object]
//! ```
//!
//! - libbpf (in `libbpf-oracle --bench`, as root): `bpf_object__open_mem`,
//!   `bpf_object__prepare` (which also probes the kernel, loads vmlinux BTF
//!   for each object, loads the object's BTF and creates the maps), and
//!   `bpf_object__prepare` again with every map's autocreate off (no map
//!   creation; map references are poisoned instead);
//!   `btf__load_vmlinux_btf`.
//! - ours: `userbpf_btf_core::Btf::load_file` of /sys/kernel/btf/vmlinux
//!   (mmap + parse + checks, like libbpf's load: the like-for-like number),
//!   then the name index on top (libbpf builds none; CO-RE candidate search
//!   builds ours on first use); for reference the older path (`fs::read` +
//!   `Btf::parse`, which copies) and our loader's `TargetBtf::system()`.
//!   The corpus: open + relocate of every object (a) against one shared
//!   kernel BTF loaded beforehand (`userbpf_compat_tests::ours`), and (b)
//!   "per object like libbpf": vmlinux BTF loaded anew for each object
//!   (`Btf::load_file`, modules from /sys/kernel/btf on demand), as
//!   `bpf_object__prepare` does.
//!
//! Every line prints its ratio libbpf / userbpf (above 1: we are faster).
//!
//! `--write-corpus DIR` only writes the corpus to DIR as `<name>.bpf.o`
//! (to run `libbpf-oracle` on it by hand) and exits.

use std::time::Instant;

use userbpf_btf_core::Btf;
use userbpf_compat_tests::corpus::Corpus;
use userbpf_compat_tests::oracle_client::{
    oracle_next_to_current_exe, run_oracle_on_corpus, scratch_dir, unavailable_reason,
    OracleOptions,
};
use userbpf_compat_tests::ours;
use userbpf_libbpf_compat::object::{Object, OpenOptions, TargetBtf, SYS_KERNEL_BTF_DIR};

const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

fn best_of<T>(n: u32, mut f: impl FnMut() -> T) -> (u64, T) {
    let mut best = u64::MAX;
    let mut last = None;
    for _ in 0..n.max(1) {
        let t = Instant::now();
        let v = f();
        best = best.min(t.elapsed().as_nanos() as u64);
        last = Some(v);
    }
    (best, last.expect("at least one run"))
}

fn line(what: &str, ns: Option<u64>, why: &str) {
    ratio_line(what, ns, None, why)
}

/// A result line; `libbpf` (its time for the same work) adds the ratio
/// libbpf / ours.
fn ratio_line(what: &str, ns: Option<u64>, libbpf: Option<u64>, why: &str) {
    match ns {
        Some(ns) => {
            let ratio = libbpf
                .filter(|_| ns > 0)
                .map(|l| format!("   x{:.2} vs libbpf", l as f64 / ns as f64))
                .unwrap_or_default();
            println!("{what:<58} {ns:>14} ns{ratio}")
        }
        None => println!("{what:<58} {:>14}    ({why})", "-"),
    }
}

/// Our vmlinux BTF load, best of `n`: [mmap + parse (`Btf::load_file`),
/// + name index, of which the index, read + `Btf::parse` (copying)].
fn vmlinux_btf_ours(n: u32) -> Option<[u64; 4]> {
    let run = || -> Result<[u64; 4], String> {
        let t = Instant::now();
        let btf = Btf::load_file(VMLINUX).map_err(|e| format!("{VMLINUX}: {e}"))?;
        let load = t.elapsed().as_nanos() as u64;
        let t = Instant::now();
        btf.build_name_index();
        let index = t.elapsed().as_nanos() as u64;
        drop(btf);
        let t = Instant::now();
        let bytes = std::fs::read(VMLINUX).map_err(|e| format!("{VMLINUX}: {e}"))?;
        let btf = Btf::parse(&bytes).map_err(|e| format!("{VMLINUX}: {e}"))?;
        let read_parse = t.elapsed().as_nanos() as u64;
        drop(btf);
        Ok([load, load + index, index, read_parse])
    };
    let mut best = [u64::MAX; 4];
    for _ in 0..n.max(1) {
        match run() {
            Ok(t) => {
                for (b, v) in best.iter_mut().zip(t) {
                    *b = (*b).min(v);
                }
            }
            Err(e) => {
                eprintln!("relo-bench: {e}");
                return None;
            }
        }
    }
    Some(best)
}

/// vmlinux BTF as `bpf_object__prepare` gets it for each object: loaded
/// anew, modules on demand.
fn target_per_object() -> Result<TargetBtf, String> {
    let vmlinux = Btf::load_file(VMLINUX).map_err(|e| format!("{VMLINUX}: {e}"))?;
    Ok(TargetBtf::from_vmlinux(vmlinux).with_module_dir(SYS_KERNEL_BTF_DIR))
}

/// Open + relocate one object against `targets`; the instruction count of
/// its programs (so that the work cannot be optimized away).
fn open_relocate(name: &str, bytes: &[u8], targets: &TargetBtf) -> Result<usize, String> {
    let opts = OpenOptions {
        object_name: Some(name.to_string()),
        ..Default::default()
    };
    let mut obj = Object::open(bytes, opts).map_err(|e| format!("{name}: open: {e}"))?;
    obj.relocate(targets)
        .map_err(|e| format!("{name}: relocate: {e}"))?;
    Ok(obj
        .programs()
        .map(|p| p.insns().map_or(0, <[_]>::len))
        .sum())
}

fn main() {
    let mut iterations = 5u32;
    let mut per_object = false;
    let mut write_corpus = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--iterations" => {
                iterations = args.next().and_then(|n| n.parse().ok()).unwrap_or_else(|| {
                    eprintln!("--iterations needs a number");
                    std::process::exit(2)
                })
            }
            "--per-object" => per_object = true,
            "--write-corpus" => write_corpus = args.next(),
            _ => {
                eprintln!("usage: relo-bench [--iterations N] [--per-object] | --write-corpus DIR");
                std::process::exit(2)
            }
        }
    }

    let corpus = Corpus::standard();
    if let Some(dir) = write_corpus {
        match corpus.write_to(dir.as_ref()) {
            Ok(paths) => {
                for (o, p) in corpus.objects.iter().zip(paths) {
                    println!("{}={}", o.name, p.display());
                }
                return;
            }
            Err(e) => {
                eprintln!("relo-bench: {dir}: {e}");
                std::process::exit(1)
            }
        }
    }
    println!(
        "relo-bench: {} objects ({} from libbpf-tools), best of {iterations} runs",
        corpus.objects.len(),
        corpus.embedded_count()
    );

    // Ours: vmlinux BTF, whole and in parts.
    let ours_btf = vmlinux_btf_ours(iterations);

    // libbpf, in its own process.
    let mut libbpf = std::collections::HashMap::new();
    let unavailable = unavailable_reason().or_else(|| oracle_next_to_current_exe().err());
    if let Some(why) = &unavailable {
        println!("libbpf side skipped: {why}");
    } else {
        let exe = oracle_next_to_current_exe().expect("checked");
        let dir = scratch_dir("bench");
        let options = OracleOptions {
            bench_iterations: Some(iterations),
            ..Default::default()
        };
        let report = run_oracle_on_corpus(&exe, &corpus, &dir, &options);
        let _ = std::fs::remove_dir_all(&dir);
        match report {
            Ok(report) => libbpf.extend(report.bench),
            Err(e) => eprintln!("relo-bench: libbpf-oracle: {e}"),
        }
    }
    let get = |k: &str| libbpf.get(k).copied();
    let why = unavailable.as_deref().unwrap_or("libbpf-oracle failed");

    // Ours: the corpus, kernel BTF loaded once (libbpf loads it in every
    // prepare that needs it).
    let (targets_ns, targets) = best_of(iterations, || ours::load_targets(None));
    let (ours_targets, ours_total, ours_per_object) = match targets {
        Ok(targets) => {
            let mut total = 0;
            let mut per = Vec::new();
            for o in &corpus.objects {
                let (ns, _) = best_of(iterations, || ours::relocate(&o.name, &o.bytes, &targets));
                total += ns;
                per.push((o.name.clone(), ns));
            }
            (Some(targets_ns), Some(total), per)
        }
        Err(e) => {
            eprintln!("relo-bench: our loader: {e}");
            (None, None, Vec::new())
        }
    };
    // Ours, per object like libbpf: vmlinux BTF loaded for each object.
    let mut fresh_total = Some(0u64);
    let mut fresh_per_object = Vec::new();
    for o in &corpus.objects {
        let (ns, result) = best_of(iterations, || {
            target_per_object().and_then(|t| open_relocate(&o.name, &o.bytes, &t))
        });
        match result {
            Ok(_) => {
                fresh_total = fresh_total.map(|t| t + ns);
                fresh_per_object.push((o.name.clone(), ns));
            }
            Err(e) => {
                eprintln!("relo-bench: {e}");
                fresh_total = None;
            }
        }
    }
    let ours_why = "our loader failed";

    println!();
    let libbpf_btf = get("vmlinux_btf");
    line("vmlinux BTF, libbpf btf__load_vmlinux_btf", libbpf_btf, why);
    let part = |i: usize| ours_btf.as_ref().map(|t| t[i]);
    ratio_line(
        "vmlinux BTF, userbpf Btf::load_file (mmap + parse)",
        part(0),
        libbpf_btf,
        "failed",
    );
    ratio_line(
        "vmlinux BTF, userbpf Btf::load_file + name index",
        part(1),
        libbpf_btf,
        "failed",
    );
    line("  of which: build_name_index", part(2), "failed");
    ratio_line(
        "vmlinux BTF, userbpf fs::read + Btf::parse (copying)",
        part(3),
        libbpf_btf,
        "failed",
    );
    ratio_line(
        "vmlinux BTF, userbpf loader TargetBtf::system()",
        ours_targets,
        libbpf_btf,
        ours_why,
    );
    line(
        "corpus, libbpf bpf_object__open_mem",
        get("open_total"),
        why,
    );
    line(
        "corpus, libbpf bpf_object__prepare",
        get("prepare_total"),
        why,
    );
    let nomaps = get("prepare_nomaps_total");
    line(
        "corpus, libbpf bpf_object__prepare, no map creation",
        nomaps,
        why,
    );
    let libbpf_open_prepare = get("open_total").zip(nomaps).map(|(a, b)| a + b);
    line(
        "corpus, libbpf open_mem + prepare (no maps)",
        libbpf_open_prepare,
        why,
    );
    ratio_line(
        "corpus, userbpf open + relocate, shared kernel BTF",
        ours_total,
        libbpf_open_prepare,
        ours_why,
    );
    ratio_line(
        "corpus, userbpf open + relocate, BTF loaded per object",
        fresh_total,
        libbpf_open_prepare,
        ours_why,
    );

    if per_object {
        println!();
        println!(
            "{:<20} {:>14} {:>14} {:>14} {:>14} {:>14}",
            "object", "libbpf open", "prepare", "no maps", "userbpf", "userbpf fresh"
        );
        for o in &corpus.objects {
            let cell = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
            let mine = ours_per_object
                .iter()
                .find(|(n, _)| *n == o.name)
                .map(|(_, ns)| *ns);
            let fresh = fresh_per_object
                .iter()
                .find(|(n, _)| *n == o.name)
                .map(|(_, ns)| *ns);
            println!(
                "{:<20} {:>14} {:>14} {:>14} {:>14} {:>14}",
                o.name,
                cell(get(&format!("open/{}", o.name))),
                cell(get(&format!("prepare/{}", o.name))),
                cell(get(&format!("prepare_nomaps/{}", o.name))),
                cell(mine),
                cell(fresh)
            );
        }
    }
}
