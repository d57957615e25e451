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
//! - ours: `userbpf_btf_core::Btf::parse` of /sys/kernel/btf/vmlinux
//!   (read the file, parse, build the name index), our loader's
//!   `TargetBtf::system()` (the same, as the loader does it), and our
//!   loader's open + relocate of every object (`userbpf_compat_tests::ours`,
//!   kernel BTF loaded once beforehand).
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
    match ns {
        Some(ns) => println!("{what:<58} {ns:>14} ns"),
        None => println!("{what:<58} {:>14}    ({why})", "-"),
    }
}

/// Our vmlinux BTF load, best of `n`: [read + parse + index, read, parse,
/// index].
fn vmlinux_btf_ours(n: u32) -> Option<[u64; 4]> {
    let run = || -> Result<[u64; 4], String> {
        let t = Instant::now();
        let bytes = std::fs::read(VMLINUX).map_err(|e| format!("{VMLINUX}: {e}"))?;
        let read = t.elapsed().as_nanos() as u64;
        let t = Instant::now();
        let btf = Btf::parse(&bytes).map_err(|e| format!("{VMLINUX}: {e}"))?;
        let parse = t.elapsed().as_nanos() as u64;
        let t = Instant::now();
        btf.build_name_index();
        let index = t.elapsed().as_nanos() as u64;
        Ok([read + parse + index, read, parse, index])
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
    let ours_why = "our loader failed";

    println!();
    line(
        "vmlinux BTF, libbpf btf__load_vmlinux_btf",
        get("vmlinux_btf"),
        why,
    );
    let part = |i: usize| ours_btf.as_ref().map(|t| t[i]);
    line(
        "vmlinux BTF, userbpf read + Btf::parse + name index",
        part(0),
        "failed",
    );
    line("  of which: read the file", part(1), "failed");
    line("  of which: Btf::parse", part(2), "failed");
    line("  of which: build_name_index", part(3), "failed");
    line(
        "vmlinux BTF, userbpf loader TargetBtf::system()",
        ours_targets,
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
    line(
        "corpus, libbpf bpf_object__prepare, no map creation",
        get("prepare_nomaps_total"),
        why,
    );
    line(
        "corpus, userbpf open + relocate (BTF already loaded)",
        ours_total,
        ours_why,
    );

    if per_object {
        println!();
        println!(
            "{:<20} {:>14} {:>14} {:>14} {:>14}",
            "object", "libbpf open", "prepare", "no maps", "userbpf"
        );
        for o in &corpus.objects {
            let cell = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
            let mine = ours_per_object
                .iter()
                .find(|(n, _)| *n == o.name)
                .map(|(_, ns)| *ns);
            println!(
                "{:<20} {:>14} {:>14} {:>14} {:>14}",
                o.name,
                cell(get(&format!("open/{}", o.name))),
                cell(get(&format!("prepare/{}", o.name))),
                cell(get(&format!("prepare_nomaps/{}", o.name))),
                cell(mine)
            );
        }
    }
}
