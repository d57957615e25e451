//! Kernel verdicts (issue 8, "Show"): in kernel-only mode, every program
//! of the corpus gets the same verdict from this kernel through our
//! libbpf.so as through the real libbpf 1.7.
//!
//! The corpus is `userbpf_compat_tests::corpus` (the objects embedded in
//! Debian's libbpf-tools binaries plus our C test objects) and the objects
//! of `compat-tests/kernel-apps/`. For each object and program, both sides
//! load that program alone into the kernel (`userbpf_compat_tests::verdict`
//! says exactly how):
//!
//! - the real libbpf: `libbpf-oracle --verdicts` (libbpf-sys, its own
//!   process);
//! - ours: `kernel_verdict` (`kernel-apps/kernel_verdict.c`, linked
//!   `-lbpf`) with `LD_LIBRARY_PATH=<target>/release` and
//!   `USERBPF_BACKEND=kernel`. Our library and libbpf-sys' never share a
//!   process (they export the same symbols).
//!
//! A program whose verdicts differ (ok vs an errno, or two errnos) fails
//! the test, named with both verdicts and first warnings. Differing first
//! warnings with equal verdicts are listed, not failed.
//!
//! `kprobe_attach_fails_like_libbpf`: this kernel has no kprobes; a
//! loaded kprobe program's `bpf_program__attach_kprobe` must fail with the
//! same errno and the same first warning line as with the real libbpf.
//!
//! `runner_agrees_with_oracle_on_real_libbpf`: the C runner on the real
//! libbpf 1.7 shared library (`compat-tests/scripts/build-real-libbpf.sh`,
//! skipped when it is not built) reports exactly what the oracle does, so
//! the two drivers are known to do the same thing.
//!
//! Root only: without root every test prints why and passes.

#[path = "support/kapps.rs"]
mod kapps;

use std::path::{Path, PathBuf};

use kapps::Lib;
use userbpf_compat_tests::corpus::{Corpus, CorpusObject, Origin};
use userbpf_compat_tests::oracle_client::{
    run_oracle_verdicts, scratch_dir, unavailable_reason, VerdictRequest,
};
use userbpf_compat_tests::verdict::{self, VerdictReport};

const ORACLE: &str = env!("CARGO_BIN_EXE_libbpf-oracle");

/// The kernel-apps objects added to the corpus.
const KERNEL_APP_OBJECTS: &[&str] = &[
    "runqlat_lite",
    "profile_lite",
    "mixed_probes",
    "kprobe_attach",
];

/// The kprobe of the attach check.
const KPROBE_OBJECT: &str = "kprobe_attach";
const KPROBE_PROG: &str = "kprobe_nanosleep";
const KPROBE_FUNC: &str = "do_nanosleep";

fn skip_reason() -> Option<String> {
    unavailable_reason().map(|r| format!("{r} (programs are loaded into the kernel)"))
}

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The standard corpus plus the kernel apps' objects, written to a scratch
/// directory: (name, path) in corpus order.
fn corpus_files(tag: &str) -> (Corpus, Vec<(String, PathBuf)>, Scratch) {
    let built = kapps::built();
    let mut corpus = Corpus::standard();
    for name in KERNEL_APP_OBJECTS {
        let path = built.join(format!("{name}.bpf.o"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        corpus.push_dedup(CorpusObject {
            name: name.to_string(),
            origin: Origin::CSource {
                source: format!("kernel-apps/{name}.bpf.c"),
            },
            bytes,
            aliases: Vec::new(),
        });
    }
    let dir = scratch_dir(tag);
    let paths = corpus
        .write_to(&dir)
        .unwrap_or_else(|e| panic!("writing the corpus to {}: {e}", dir.display()));
    let files = corpus
        .objects
        .iter()
        .map(|o| o.name.clone())
        .zip(paths)
        .collect();
    (corpus, files, Scratch(dir))
}

fn parse_run(who: &str, run: &kapps::Run) -> VerdictReport {
    assert!(
        run.ok(),
        "{who} failed ({}):\nstdout (end):\n{}\nstderr (end):\n{}",
        run.status_text(),
        kapps::tail(&run.stdout, 10),
        kapps::tail(&run.stderr, 40)
    );
    verdict::parse(&run.stdout).unwrap_or_else(|e| {
        panic!(
            "{who}: {e}\nstderr (end):\n{}",
            kapps::tail(&run.stderr, 40)
        )
    })
}

/// The real libbpf's report (the oracle) and the runner's on `lib`, run
/// at the same time.
fn both(
    files: &[(String, PathBuf)],
    request: &VerdictRequest,
    lib: &Lib,
) -> (VerdictReport, VerdictReport) {
    let runner = kapps::built().join("kernel_verdict");
    let resolved = kapps::assert_resolves(&runner, lib);
    println!("kernel_verdict on {}: {resolved}", lib.describe());
    let oracle = {
        let (files, request) = (files.to_vec(), request.clone());
        std::thread::spawn(move || run_oracle_verdicts(Path::new(ORACLE), &files, &request))
    };
    let mut args = request.args();
    args.extend(
        files
            .iter()
            .map(|(name, path)| format!("{name}={}", path.display())),
    );
    let ours = kapps::run(&runner, &args, lib, false);
    let theirs = oracle
        .join()
        .expect("oracle thread")
        .unwrap_or_else(|e| panic!("libbpf-oracle: {e}"));
    (
        theirs,
        parse_run(&format!("kernel_verdict on {}", lib.describe()), &ours),
    )
}

#[test]
fn every_program_gets_libbpfs_verdict() {
    if let Some(reason) = skip_reason() {
        println!("skipped: {reason}");
        return;
    }
    let lib = Lib::ours("kernel");
    let (corpus, files, _scratch) = corpus_files("kernel-verdicts");
    for note in &corpus.notes {
        println!("corpus: {note}");
    }
    let (theirs, ours) = both(&files, &VerdictRequest::Programs, &lib);
    let c = verdict::compare(&theirs, &ours);
    println!(
        "real libbpf {}, ours {}",
        theirs.libbpf_version, ours.libbpf_version
    );
    for (rc, n) in &c.refusals_by_errno {
        println!("  refused with {}: {n}", verdict::rc_name(*rc));
    }
    if !c.warning_diffs.is_empty() {
        println!(
            "{} programs with the same verdict but another first warning:",
            c.warning_diffs.len()
        );
        for d in &c.warning_diffs {
            println!("  {d}");
        }
    }
    println!("{}", c.summary());
    assert!(
        c.objects >= corpus.objects.len() && c.programs > 0,
        "the reports cover {} objects, {} programs",
        c.objects,
        c.programs
    );
    assert!(
        c.mismatches.is_empty(),
        "{} programs get another verdict from our libbpf.so (USERBPF_BACKEND=kernel) than from \
         libbpf 1.7:\n{}\n{}",
        c.mismatches.len(),
        c.mismatches.join("\n"),
        c.summary()
    );
}

#[test]
fn kprobe_attach_fails_like_libbpf() {
    if let Some(reason) = skip_reason() {
        println!("skipped: {reason}");
        return;
    }
    let lib = Lib::ours("kernel");
    let object = kapps::built().join(format!("{KPROBE_OBJECT}.bpf.o"));
    let files = vec![(KPROBE_OBJECT.to_string(), object)];
    let request = VerdictRequest::KprobeAttach {
        prog: KPROBE_PROG.into(),
        func: KPROBE_FUNC.into(),
    };
    let (theirs, ours) = both(&files, &request, &lib);
    let t = &theirs.objects[0].attaches[0];
    let o = &ours.objects[0].attaches[0];
    println!(
        "libbpf 1.7: load {}, attach_kprobe {} [{}]",
        verdict::rc_name(t.load_rc),
        verdict::rc_name(t.rc),
        t.warn
    );
    println!(
        "ours:       load {}, attach_kprobe {} [{}]",
        verdict::rc_name(o.load_rc),
        verdict::rc_name(o.rc),
        o.warn
    );
    assert_eq!(
        t.load_rc, 0,
        "libbpf could not load the kprobe program: {}",
        t.warn
    );
    assert_eq!(
        o.load_rc, 0,
        "our library could not load the kprobe program: {}",
        o.warn
    );
    if !std::path::Path::new("/sys/bus/event_source/devices/kprobe").exists() {
        assert_ne!(
            t.rc, 0,
            "this kernel has no kprobe PMU, yet libbpf attached"
        );
    }
    assert_eq!(
        (o.rc, o.warn.as_str()),
        (t.rc, t.warn.as_str()),
        "bpf_program__attach_kprobe: ours {} [{}], libbpf {} [{}]",
        verdict::rc_name(o.rc),
        o.warn,
        verdict::rc_name(t.rc),
        t.warn
    );
}

#[test]
fn runner_agrees_with_oracle_on_real_libbpf() {
    if let Some(reason) = skip_reason() {
        println!("skipped: {reason}");
        return;
    }
    let real = std::env::var_os("REAL_LIBBPF_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| kapps::target_dir().join("real-libbpf"));
    if !real.join("libbpf.so.1").exists() {
        println!(
            "skipped: no real libbpf 1.7 shared library in {} \
             (bash compat-tests/scripts/build-real-libbpf.sh builds it)",
            real.display()
        );
        return;
    }
    let (_, files, _scratch) = corpus_files("kernel-verdicts-runner");
    let (theirs, ours) = both(
        &files,
        &VerdictRequest::Programs,
        &Lib::At(real.clone(), None),
    );
    assert_eq!(
        theirs.libbpf_version,
        ours.libbpf_version,
        "{} is not the oracle's libbpf",
        real.display()
    );
    assert_eq!(theirs.objects.len(), ours.objects.len());
    for (t, o) in theirs.objects.iter().zip(&ours.objects) {
        assert_eq!(
            t,
            o,
            "the runner on {} and the oracle disagree",
            real.display()
        );
    }
    let c = verdict::compare(&theirs, &ours);
    println!("runner on libbpf {}: {}", ours.libbpf_version, c.summary());
}
