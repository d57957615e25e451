//! Patching a relocated instruction (`bpf_core_patch_insn`): the immediate
//! of an ALU/ALU64 instruction, the offset (and, if the field changed size,
//! the access size) of a load or store, or both halves of a 64-bit
//! immediate load; or "poisoning" it when the relocation found no target.
//!
//! A poisoned instruction becomes a call to helper 0xbad2310, which does
//! not exist: the program still loads (the verifier drops dead code), and
//! fails only if that instruction can run ("invalid func
//! unknown#195896080" in the kernel's verifier log).

use crate::co_re::calc::RelocationValues;
use crate::co_re::error::PatchError;
use crate::co_re::insn::{
    size_bytes, size_code, RawInsn, BPF_ALU, BPF_ALU64, BPF_CALL, BPF_JMP, BPF_K, BPF_LD, BPF_LDX,
    BPF_ST, BPF_STX, LDIMM64,
};

/// The helper id a poisoned instruction calls: 0xbad2310 ("bad relo").
pub const POISON_HELPER_ID: i32 = 0x0bad_2310;

/// Why an instruction was poisoned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoisonReason {
    /// No target type, field or enumerator: the relocation cannot be
    /// satisfied on this kernel.
    NoTarget,
    /// A load or store of a field whose size changed, and whose type is
    /// neither a pointer nor an unsigned int on both sides.
    FieldSizeMismatch,
}

/// What patching did to the instructions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchAction {
    /// `insn_index` (and, for a 64-bit immediate load, the slot after it)
    /// now calls [`POISON_HELPER_ID`].
    Poisoned {
        insn_index: usize,
        ldimm64: bool,
        reason: PoisonReason,
    },
    /// An ALU/ALU64 immediate: `imm` was `old_imm`, is now `new_value`
    /// truncated to 32 bits.
    Alu {
        insn_index: usize,
        old_imm: i32,
        new_value: u64,
    },
    /// A load/store offset, and the access size if the field's changed.
    Memory {
        insn_index: usize,
        old_off: i16,
        new_off: u64,
        /// `(old bytes, new bytes)`.
        size_change: Option<(u32, u32)>,
    },
    /// Both halves of a 64-bit immediate load.
    Ldimm64 {
        insn_index: usize,
        old_value: u64,
        new_value: u64,
    },
}

impl PatchAction {
    /// libbpf's debug (and, for a bad field size, warning) lines for this
    /// patch, without the `libbpf: ` prefix.
    pub fn log_lines(&self, prog_name: &str, relo_index: usize) -> Vec<String> {
        let prefix = format!("prog '{prog_name}': relo #{relo_index}:");
        match *self {
            PatchAction::Poisoned {
                insn_index,
                ldimm64,
                reason,
            } => {
                let mut lines = Vec::new();
                if reason == PoisonReason::FieldSizeMismatch {
                    lines.push(format!(
                        "{prefix} insn #{insn_index} (LDX/ST/STX) accesses field incorrectly. \
                         Make sure you are accessing pointers, unsigned integers, or fields of \
                         matching type and size."
                    ));
                }
                if ldimm64 {
                    lines.push(format!(
                        "{prefix} substituting insn #{} w/ invalid insn",
                        insn_index + 1
                    ));
                }
                lines.push(format!(
                    "{prefix} substituting insn #{insn_index} w/ invalid insn"
                ));
                lines
            }
            PatchAction::Alu {
                insn_index,
                old_imm,
                new_value,
            } => vec![format!(
                "{prefix} patched insn #{insn_index} (ALU/ALU64) imm {} -> {new_value}",
                i64::from(old_imm) as u64
            )],
            PatchAction::Memory {
                insn_index,
                old_off,
                new_off,
                size_change,
            } => {
                let mut lines = vec![format!(
                    "{prefix} patched insn #{insn_index} (LDX/ST/STX) off {} -> {new_off}",
                    i64::from(old_off) as u64
                )];
                if let Some((old, new)) = size_change {
                    lines.push(format!(
                        "{prefix} patched insn #{insn_index} (LDX/ST/STX) mem_sz {old} -> {new}"
                    ));
                }
                lines
            }
            PatchAction::Ldimm64 {
                insn_index,
                old_value,
                new_value,
            } => vec![format!(
                "{prefix} patched insn #{insn_index} (LDIMM64) imm64 {old_value} -> {new_value}"
            )],
        }
    }
}

/// Patches `insns[insn_index]` with a resolved relocation. Nothing is
/// written when an error is returned.
pub fn patch_insn(
    insns: &mut [[u8; 8]],
    insn_index: usize,
    res: &RelocationValues,
) -> Result<PatchAction, PatchError> {
    let len = insns.len();
    let slot = insns
        .get(insn_index)
        .ok_or(PatchError::InsnOutOfRange { insn_index, len })?;
    let mut insn = RawInsn::decode(slot);
    if res.poison {
        return Ok(poison(insns, insn_index, PoisonReason::NoTarget));
    }
    let (orig_val, new_val) = (res.orig_val, res.new_val);
    // libbpf compares the (sign-extended) instruction field with the
    // 64-bit expected value.
    let unexpected = |class, got: i64| PatchError::UnexpectedValue {
        insn_index,
        class,
        got,
        expected: orig_val,
        new: new_val,
    };

    match insn.class() {
        BPF_ALU | BPF_ALU64 => {
            if insn.source() != BPF_K {
                return Err(PatchError::AluNotImmediate { insn_index });
            }
            if res.validate && i64::from(insn.imm) as u64 != orig_val {
                return Err(unexpected("ALU/ALU64", i64::from(insn.imm)));
            }
            let old_imm = insn.imm;
            insn.imm = new_val as i32;
            insns[insn_index] = insn.encode();
            Ok(PatchAction::Alu {
                insn_index,
                old_imm,
                new_value: new_val,
            })
        }
        BPF_LDX | BPF_ST | BPF_STX => {
            if res.validate && i64::from(insn.off) as u64 != orig_val {
                return Err(unexpected("LDX/ST/STX", i64::from(insn.off)));
            }
            if new_val > i16::MAX as u64 {
                return Err(PatchError::OffsetTooBig {
                    insn_index,
                    value: new_val,
                });
            }
            if res.fail_memsz_adjust {
                return Ok(poison(insns, insn_index, PoisonReason::FieldSizeMismatch));
            }
            let old_off = insn.off;
            insn.off = new_val as i16;
            let mut size_change = None;
            if res.new_sz != res.orig_sz {
                let got = size_bytes(insn.size());
                if got != res.orig_sz {
                    return Err(PatchError::UnexpectedMemSize {
                        insn_index,
                        got,
                        expected: res.orig_sz,
                    });
                }
                let size = size_code(res.new_sz).ok_or(PatchError::InvalidMemSize {
                    insn_index,
                    size: res.new_sz,
                })?;
                insn.code = insn.mode() | size | insn.class();
                size_change = Some((res.orig_sz, res.new_sz));
            }
            insns[insn_index] = insn.encode();
            Ok(PatchAction::Memory {
                insn_index,
                old_off,
                new_off: new_val,
                size_change,
            })
        }
        BPF_LD => {
            let bad_form = PatchError::BadLdimm64 { insn_index };
            let next = insns
                .get(insn_index + 1)
                .map(RawInsn::decode)
                .ok_or(bad_form.clone())?;
            if insn.code != LDIMM64
                || insn.src_reg != 0
                || insn.off != 0
                || next.code != 0
                || next.dst_reg != 0
                || next.src_reg != 0
                || next.off != 0
            {
                return Err(bad_form);
            }
            let old_value = u64::from(insn.imm as u32) | (u64::from(next.imm as u32) << 32);
            if res.validate && old_value != orig_val {
                return Err(PatchError::UnexpectedLdimm64Value {
                    insn_index,
                    got: old_value,
                    expected: orig_val,
                    new: new_val,
                });
            }
            let mut next = next;
            insn.imm = new_val as u32 as i32;
            next.imm = (new_val >> 32) as u32 as i32;
            insns[insn_index] = insn.encode();
            insns[insn_index + 1] = next.encode();
            Ok(PatchAction::Ldimm64 {
                insn_index,
                old_value,
                new_value: new_val,
            })
        }
        _ => Err(PatchError::UnrecognizedInsn {
            insn_index,
            code: insn.code,
            src: insn.src_reg,
            dst: insn.dst_reg,
            off: insn.off as u16,
            imm: insn.imm as u32,
        }),
    }
}

/// Turns `insns[insn_index]` into a call of the nonexistent helper
/// (`bpf_core_poison_insn`); a 64-bit immediate load loses both slots, so
/// that the verifier does not trip over a lone second half first.
fn poison(insns: &mut [[u8; 8]], insn_index: usize, reason: PoisonReason) -> PatchAction {
    let call = RawInsn {
        code: BPF_JMP | BPF_CALL,
        imm: POISON_HELPER_ID,
        ..RawInsn::default()
    }
    .encode();
    let is_ldimm64 = RawInsn::decode(&insns[insn_index]).code == LDIMM64;
    // A 64-bit load cut off at the end of the program has no second slot
    // to poison (libbpf would write past the end).
    let ldimm64 = is_ldimm64 && insn_index + 1 < insns.len();
    if ldimm64 {
        insns[insn_index + 1] = call;
    }
    insns[insn_index] = call;
    PatchAction::Poisoned {
        insn_index,
        ldimm64,
        reason,
    }
}
