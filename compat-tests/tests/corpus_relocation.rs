//! The relocation compat test: every program of every object of the
//! corpus (the BPF objects embedded in Debian's libbpf-tools binaries,
//! `/usr/sbin/*`, plus our C test objects), relocated by our loader and by
//! the real libbpf 1.7, must come out identical, slot by slot.
//!
//! libbpf runs in `libbpf-oracle` (see the crate docs): it needs root,
//! since `bpf_object__prepare` creates the maps in the kernel. Without
//! root, without kernel BTF or without libbpf-tools the test prints why
//! and skips.
//!
//! Prints the corpus (objects, programs, CO-RE relocations) and, per
//! mismatch, the object, the program, the first differing slot and a
//! side-by-side disassembly around it; then
//! `corpus: N objects, P programs, R CO-RE relocations, M mismatches` and
//! `X passed, Y failed` (per program).

use userbpf_compat_tests::corpus::{Corpus, Origin, SBIN};
use userbpf_compat_tests::dump::{OracleReport, Status};
use userbpf_compat_tests::oracle_client::{
    run_oracle_on_corpus, scratch_dir, unavailable_reason, OracleOptions,
};
use userbpf_compat_tests::ours;

fn oracle_summary(corpus: &Corpus, report: &OracleReport) {
    let programs: usize = report.objects.iter().map(|o| o.programs.len()).sum();
    let relos: usize = report.objects.iter().map(|o| o.core_relos()).sum();
    let poisoned: usize = report.objects.iter().map(|o| o.core_poisoned()).sum();
    let maps: usize = report.objects.iter().map(|o| o.maps.len()).sum();
    let insns: usize = report
        .objects
        .iter()
        .flat_map(|o| o.programs.iter())
        .map(|p| p.insns.len())
        .sum();
    println!(
        "libbpf {}: {} objects ({} from {SBIN}, {} from compat-tests/bpf), {programs} programs, \
         {insns} instruction slots, {relos} CO-RE relocations ({poisoned} poisoned), {maps} maps",
        report.libbpf_version,
        report.objects.len(),
        corpus.embedded_count(),
        corpus.objects.len() - corpus.embedded_count(),
    );
    let failed: Vec<_> = report
        .objects
        .iter()
        .filter(|o| !o.status.is_ok())
        .collect();
    let resized = report
        .objects
        .iter()
        .filter(|o| o.notes.iter().any(|n| n.contains("the kernel rejects")))
        .count();
    println!(
        "libbpf verdicts: {} relocated ({resized} after giving the kernel map sizes the tools \
         set at run time), {} failed",
        report.objects.len() - failed.len(),
        failed.len()
    );
    for o in failed {
        let (stage, message) = match &o.status {
            Status::OpenFailed { message, .. } => ("open", message),
            Status::PrepareFailed { message, .. } => ("prepare", message),
            Status::Ok => unreachable!(),
        };
        println!(
            "  libbpf {stage} failed on {}: {message}; {}",
            o.name,
            o.warnings.last().map(String::as_str).unwrap_or("")
        );
    }
    for o in &report.objects {
        for note in o.notes.iter().filter(|n| !n.contains("the kernel rejects")) {
            println!("  note: {}: {note}", o.name);
        }
    }
}

#[test]
fn corpus_relocation_matches_libbpf() {
    if let Some(reason) = unavailable_reason() {
        println!("SKIPPED corpus_relocation: {reason}");
        return;
    }
    let corpus = Corpus::standard();
    if corpus.embedded_count() == 0 {
        println!(
            "SKIPPED corpus_relocation: no libbpf-tools BPF objects in {SBIN} \
             (apt-get install libbpf-tools)"
        );
        return;
    }
    for note in corpus.notes.iter().filter(|n| !n.contains("identical")) {
        println!("corpus: {note}");
    }

    let dir = scratch_dir("corpus");
    let oracle = run_oracle_on_corpus(
        env!("CARGO_BIN_EXE_libbpf-oracle").as_ref(),
        &corpus,
        &dir,
        &OracleOptions::default(),
    );
    let _ = std::fs::remove_dir_all(&dir);
    let report = oracle.unwrap_or_else(|e| panic!("libbpf-oracle: {e}"));
    assert_eq!(
        report.objects.len(),
        corpus.objects.len(),
        "the oracle reports on every object"
    );
    for (o, c) in report.objects.iter().zip(&corpus.objects) {
        assert_eq!(o.name, c.name, "the oracle keeps the corpus order");
        if o.status.is_ok() {
            assert!(!o.programs.is_empty(), "{}: no programs", o.name);
            for p in &o.programs {
                assert!(
                    !p.insns.is_empty(),
                    "{}/{}: no instructions",
                    o.name,
                    p.name
                );
            }
        }
        if let Origin::CSource { source } = &c.origin {
            // Our C objects are written for this kernel: libbpf must take them.
            assert!(o.status.is_ok(), "{source}: libbpf fails: {:?}", o.status);
        }
    }
    oracle_summary(&corpus, &report);
    compare_with_ours(&corpus, &report);
}

fn compare_with_ours(corpus: &Corpus, report: &OracleReport) {
    use userbpf_compat_tests::compare::{compare_object, OurObject};

    let targets = ours::load_targets(None).unwrap_or_else(|e| panic!("our loader's targets: {e}"));
    let (mut passed, mut failed, mut mismatches, mut our_relos) = (0, 0, 0, 0);
    for (object, oracle) in corpus.objects.iter().zip(&report.objects) {
        let mine = ours::relocate(&object.name, &object.bytes, &targets);
        if let OurObject::Relocated { core_relos, .. } = &mine {
            our_relos += core_relos;
        }
        let cmp = compare_object(oracle, &mine);
        for r in &cmp.reports {
            println!("MISMATCH {r}");
        }
        passed += cmp.passed;
        failed += cmp.failed;
        mismatches += cmp.mismatches();
    }
    let programs: usize = report.objects.iter().map(|o| o.programs.len()).sum();
    let relos: usize = report.objects.iter().map(|o| o.core_relos()).sum();
    println!(
        "corpus: {} objects, {programs} programs, {relos} CO-RE relocations, {mismatches} mismatches",
        report.objects.len()
    );
    println!("CO-RE relocations applied: libbpf {relos}, ours {our_relos}");
    println!("{passed} passed, {failed} failed");
    assert_eq!(mismatches, 0, "our loader and libbpf disagree (see above)");
}
