//! Comparing our loader's relocated programs with libbpf's, slot by slot.

use std::fmt::Write as _;

use userbpf_runtime::disasm::disassemble_insn;
use userbpf_runtime::isa::Insn;

use crate::dump::{OracleObject, Status};

/// Slots shown before and after the first difference.
pub const WINDOW: usize = 6;

/// One program as our loader relocated it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OurProgram {
    pub name: String,
    /// Final instructions, maps as `BPF_PSEUDO_MAP_IDX(_VALUE)`.
    pub insns: Vec<Insn>,
}

/// Our loader's result for one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OurObject {
    Relocated {
        /// Map names in the object's map order.
        maps: Vec<String>,
        programs: Vec<OurProgram>,
        /// CO-RE relocations our loader applied (for the report only).
        core_relos: usize,
    },
    /// Open or relocation failed.
    Failed(String),
}

/// The index of the first slot where `ours` and `theirs` differ (a length
/// difference counts at the end of the shorter one).
pub fn first_difference(ours: &[Insn], theirs: &[Insn]) -> Option<usize> {
    let common = ours.len().min(theirs.len());
    (0..common)
        .find(|&i| ours[i] != theirs[i])
        .or((ours.len() != theirs.len()).then_some(common))
}

/// For each slot, whether it is the second half of an `lddw`.
fn second_halves(insns: &[Insn]) -> Vec<bool> {
    let mut second = vec![false; insns.len()];
    let mut pc = 0;
    while pc < insns.len() {
        if insns[pc].is_lddw() && pc + 1 < insns.len() {
            second[pc + 1] = true;
            pc += 2;
        } else {
            pc += 1;
        }
    }
    second
}

fn slot_text(insns: &[Insn], second: &[bool], i: usize) -> String {
    let Some(&insn) = insns.get(i) else {
        return "-".to_string();
    };
    let hex: String = insn.to_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let text = if second[i] {
        format!("  (lddw imm hi={:#x})", insn.imm)
    } else {
        disassemble_insn(insn, insns.get(i + 1).copied())
    };
    format!("{hex} {text}")
}

/// A side-by-side listing of `ours` and `theirs` around slot `at`, each slot
/// as its 8 bytes in hex and its disassembly; differing slots are marked.
pub fn side_by_side(ours: &[Insn], theirs: &[Insn], at: usize, context: usize) -> String {
    let (s_ours, s_theirs) = (second_halves(ours), second_halves(theirs));
    let start = at.saturating_sub(context);
    let end = (at + context + 1).min(ours.len().max(theirs.len()));
    let mut out = String::new();
    let _ = writeln!(out, "  {:>6}  {:<60} | libbpf", "slot", "ours");
    for i in start..end {
        let mark = if ours.get(i) != theirs.get(i) {
            ">>"
        } else {
            "  "
        };
        let _ = writeln!(
            out,
            "{mark}{i:>6}  {:<60} | {}",
            slot_text(ours, &s_ours, i),
            slot_text(theirs, &s_theirs, i)
        );
    }
    out
}

/// The outcome of comparing one object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectComparison {
    /// Programs whose instructions are identical (or that both sides reject).
    pub passed: usize,
    /// Programs that differ, are missing, or that only one side accepts.
    pub failed: usize,
    /// Disagreements that are not one program's (map list, extra programs).
    pub object_mismatches: usize,
    /// One report a disagreement, ready to print.
    pub reports: Vec<String>,
}

impl ObjectComparison {
    /// Program failures plus object-level disagreements.
    pub fn mismatches(&self) -> usize {
        self.failed + self.object_mismatches
    }
}

/// Compares our result for an object with libbpf's.
pub fn compare_object(oracle: &OracleObject, ours: &OurObject) -> ObjectComparison {
    let mut cmp = ObjectComparison::default();
    let object = &oracle.name;
    let n_progs = oracle.programs.len();
    // A disagreement about a whole object fails its programs (or counts
    // once when libbpf could not even list them).
    let disagree = |cmp: &mut ObjectComparison, report: String| {
        cmp.failed = n_progs;
        cmp.object_mismatches = usize::from(n_progs == 0);
        cmp.reports.push(report);
    };
    match (&oracle.status, ours) {
        (Status::Ok, OurObject::Failed(err)) => disagree(
            &mut cmp,
            format!("{object}: libbpf relocates it, our loader fails: {err}"),
        ),
        // Both reject the object: agreement.
        (_, OurObject::Failed(_)) => cmp.passed = n_progs,
        (Status::OpenFailed { message, .. } | Status::PrepareFailed { message, .. }, _) => {
            let why = oracle.warnings.last().map(String::as_str).unwrap_or("");
            disagree(
                &mut cmp,
                format!("{object}: libbpf fails ({message}; {why}), our loader relocates it"),
            );
        }
        (Status::Ok, OurObject::Relocated { maps, programs, .. }) => {
            let theirs: Vec<&str> = oracle.maps.iter().map(|m| m.name.as_str()).collect();
            if theirs != *maps {
                cmp.object_mismatches += 1;
                cmp.reports.push(format!(
                    "{object}: map order differs\n  ours:   {maps:?}\n  libbpf: {theirs:?}"
                ));
            }
            for p in &oracle.programs {
                let Some(mine) = programs.iter().find(|m| m.name == p.name) else {
                    cmp.failed += 1;
                    cmp.reports.push(format!(
                        "{object}/{}: our loader has no such program",
                        p.name
                    ));
                    continue;
                };
                match first_difference(&mine.insns, &p.insns) {
                    None => cmp.passed += 1,
                    Some(at) => {
                        cmp.failed += 1;
                        cmp.reports.push(format!(
                            "{object}/{} ({}): first difference at slot {at} \
                             (ours {} slots, libbpf {})\n{}",
                            p.name,
                            p.section,
                            mine.insns.len(),
                            p.insns.len(),
                            side_by_side(&mine.insns, &p.insns, at, WINDOW)
                        ));
                    }
                }
            }
            for extra in programs
                .iter()
                .filter(|m| oracle.program(&m.name).is_none())
            {
                cmp.object_mismatches += 1;
                cmp.reports.push(format!(
                    "{object}/{}: only our loader has this program",
                    extra.name
                ));
            }
        }
    }
    cmp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dump::{OracleMap, OracleProgram};

    fn prog(name: &str, insns: Vec<Insn>) -> OracleProgram {
        OracleProgram {
            name: name.into(),
            section: "tp/x".into(),
            prog_type: 5,
            core_relos: 0,
            core_poisoned: 0,
            insns,
        }
    }

    #[test]
    fn first_difference_covers_lengths() {
        let a = [Insn::new(0xb7, 0, 0, 0, 1), Insn::new(0x95, 0, 0, 0, 0)];
        let b = [Insn::new(0xb7, 0, 0, 0, 2), Insn::new(0x95, 0, 0, 0, 0)];
        assert_eq!(first_difference(&a, &a), None);
        assert_eq!(first_difference(&a, &b), Some(0));
        assert_eq!(first_difference(&a[..1], &a), Some(1));
    }

    #[test]
    fn mismatch_report_has_a_window() {
        let exit = Insn::new(0x95, 0, 0, 0, 0);
        let lddw = |imm| [Insn::new(0x18, 1, 5, 0, imm), Insn::new(0, 0, 0, 0, 0)];
        let theirs = [&lddw(0)[..], &[exit]].concat();
        let ours = [&lddw(1)[..], &[exit]].concat();
        let mut oracle = OracleObject::new("obj");
        oracle.maps.push(OracleMap {
            index: 0,
            map_type: 1,
            name: "m".into(),
        });
        oracle.programs.push(prog("p", theirs.clone()));
        let same = OurObject::Relocated {
            maps: vec!["m".into()],
            programs: vec![OurProgram {
                name: "p".into(),
                insns: theirs,
            }],
            core_relos: 0,
        };
        assert_eq!(compare_object(&oracle, &same).mismatches(), 0);
        let differs = OurObject::Relocated {
            maps: vec!["m".into()],
            programs: vec![OurProgram {
                name: "p".into(),
                insns: ours,
            }],
            core_relos: 0,
        };
        let cmp = compare_object(&oracle, &differs);
        assert_eq!((cmp.passed, cmp.failed), (0, 1));
        let report = &cmp.reports[0];
        assert!(report.contains("obj/p"), "{report}");
        assert!(report.contains(">>     0"), "{report}");
        assert!(report.contains("lddw imm hi"), "{report}");
    }

    #[test]
    fn verdicts_on_failures() {
        let mut failed = OracleObject::new("obj");
        failed.status = Status::PrepareFailed {
            errno: 22,
            message: "Invalid argument".into(),
        };
        failed.programs.push(prog("p", Vec::new()));
        let both = compare_object(&failed, &OurObject::Failed("bad".into()));
        assert_eq!((both.passed, both.mismatches()), (1, 0));
        let only_us = OurObject::Relocated {
            maps: vec![],
            programs: vec![],
            core_relos: 0,
        };
        assert_eq!(compare_object(&failed, &only_us).failed, 1);
    }
}
