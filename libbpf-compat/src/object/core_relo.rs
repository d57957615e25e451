//! CO-RE relocations of an object (`bpf_object__relocate_core`): each
//! `.BTF.ext` record is matched to the program holding its instruction and
//! handed to btf-core's [`CoreRelocator`], which resolves it against the
//! target BTF and patches (or poisons) the instruction. Records of programs
//! that will not be loaded are skipped, as in libbpf.

use userbpf_btf_core::co_re::{CoreRelocator, CoreTarget};
use userbpf_btf_core::{Btf, BtfExt};
use userbpf_runtime::isa::Insn;

use crate::object::error::{ObjectError, EINVAL};
use crate::object::log::Logger;
use crate::object::program::{find_prog_by_sec_insn, BpfProgram, INSN_SZ};
use crate::object::reloc::{RelocDesc, RelocKind};

/// What CO-RE relocation reads.
pub(crate) struct CoreInputs<'a> {
    /// The object's BTF.
    pub local: &'a Btf,
    pub btf_ext: &'a BtfExt,
    /// ELF section index of each CO-RE block of `.BTF.ext`.
    pub sec_idxs: &'a [Option<usize>],
    /// All programs, sorted by (section, offset).
    pub programs: &'a [BpfProgram],
    /// The kernel's BTF first, then modules.
    pub targets: Vec<CoreTarget<'a>>,
}

/// Applies every CO-RE relocation to `insns` (each program's working copy,
/// indexed like `programs`), records them in `relocs`, and returns how many
/// were applied to each program.
pub(crate) fn relocate_core(
    inputs: CoreInputs<'_>,
    insns: &mut [Vec<Insn>],
    relocs: &mut [Vec<RelocDesc>],
    log: &mut Logger,
) -> Result<Vec<usize>, ObjectError> {
    let CoreInputs {
        local,
        btf_ext,
        sec_idxs,
        programs,
        targets,
    } = inputs;
    let mut applied = vec![0usize; programs.len()];
    let Some(info) = btf_ext.core_relo() else {
        return Ok(applied);
    };
    let mut relocator = CoreRelocator::with_targets(local, targets);
    // The engine patches raw slots; convert each program once.
    let mut slots: Vec<Vec<[u8; 8]>> = insns
        .iter()
        .map(|p| p.iter().map(|i| i.to_bytes()).collect())
        .collect();
    for (block, sec) in info.sections().enumerate() {
        let sec_name = sec.sec_name(local).unwrap_or("");
        if sec_name.is_empty() {
            return Err(log.fail(ObjectError::reloc(
                EINVAL,
                "failed to perform CO-RE relocations: .BTF.ext section without a name".to_string(),
            )));
        }
        log.debug(format!(
            "sec '{sec_name}': found {} CO-RE relocations",
            sec.len()
        ));
        let sec_idx = sec_idxs.get(block).copied().flatten();
        for (i, rec) in sec.records().enumerate() {
            if !u64::from(rec.insn_off).is_multiple_of(INSN_SZ) {
                return Err(log.fail(ObjectError::reloc(
                    EINVAL,
                    format!(
                        "sec '{sec_name}': CO-RE relocation #{i} has a misaligned insn_off {}",
                        rec.insn_off
                    ),
                )));
            }
            let sec_insn = (u64::from(rec.insn_off) / INSN_SZ) as usize;
            let prog_idx = sec_idx.and_then(|s| find_prog_by_sec_insn(programs, s, sec_insn));
            let Some(prog_idx) = prog_idx else {
                // A __weak subprogram eliminated by the linker leaves its
                // records behind.
                log.debug(format!(
                    "sec '{sec_name}': skipping CO-RE relocation #{i} for insn #{sec_insn} belonging to eliminated weak subprogram"
                ));
                continue;
            };
            let prog = &programs[prog_idx];
            if !prog.autoload {
                continue;
            }
            let insn_idx = sec_insn - prog.sec_insn_off;
            if insn_idx >= slots[prog_idx].len() {
                return Err(log.fail(ObjectError::reloc(
                    EINVAL,
                    format!(
                        "prog '{}': relo #{i}: insn #{insn_idx} out of range",
                        prog.name
                    ),
                )));
            }
            relocs[prog_idx].push(RelocDesc {
                insn_idx,
                kind: RelocKind::Core { relo: *rec },
            });
            match relocator.relocate(&mut slots[prog_idx], rec, insn_idx) {
                Ok(outcome) => {
                    for line in outcome.log_lines(&prog.name, i) {
                        log.debug(line);
                    }
                    applied[prog_idx] += 1;
                }
                Err(e) => {
                    let err = ObjectError::Core {
                        prog: prog.name.clone(),
                        relo_idx: i,
                        message: e.to_string(),
                        errno: e.errno(),
                    };
                    log.warn(err.to_string());
                    log.warn(format!(
                        "failed to perform CO-RE relocations: -{}",
                        e.errno()
                    ));
                    return Err(err);
                }
            }
        }
    }
    for (prog, prog_slots) in insns.iter_mut().zip(slots) {
        *prog = prog_slots.into_iter().map(Insn::from_bytes).collect();
    }
    Ok(applied)
}
