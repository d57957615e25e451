//! A validated eBPF program: the one representation every engine runs.
//!
//! Validation is structural, not a verifier: every opcode is known, every
//! field the ISA says must be zero is zero, registers exist, `r10` is never
//! written, jumps and calls land on instruction boundaries inside their own
//! subprogram, callback references (`lddw` with `BPF_PSEUDO_FUNC`, the
//! immediate relative to the next instruction, as libbpf emits them) name
//! the start of a subprogram other than the main program, and no
//! subprogram falls off its end. Call and callback targets are what make
//! subprograms: each starts a subprogram. Engines may rely on all
//! of that and need not re-check it while running. Memory safety is the
//! engine's business (the interpreter checks every access).

use thiserror::Error;

use crate::isa::*;

/// Most instructions a program may have (the kernel's limit for privileged
/// programs).
pub const MAX_INSNS: usize = 1_000_000;

/// Why a program was refused at load.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProgramError {
    #[error("program has no instructions")]
    Empty,
    #[error("program has {0} instructions, more than the limit of {MAX_INSNS}")]
    TooLong(usize),
    #[error("program is {0} bytes long, not a multiple of 8")]
    PartialSlot(usize),
    #[error("pc {pc}: unknown opcode {code:#04x}")]
    UnknownOpcode { pc: usize, code: u8 },
    #[error("pc {pc}: {field} must be zero for opcode {code:#04x}")]
    ReservedField {
        pc: usize,
        code: u8,
        field: &'static str,
    },
    #[error("pc {pc}: invalid {what} {value} for opcode {code:#04x}")]
    InvalidField {
        pc: usize,
        code: u8,
        what: &'static str,
        value: i64,
    },
    #[error("pc {pc}: register r{reg} does not exist")]
    BadRegister { pc: usize, reg: u8 },
    #[error("pc {pc}: r10 is read-only")]
    WriteToFramePointer { pc: usize },
    #[error("pc {pc}: lddw is missing its second slot")]
    IncompleteLddw { pc: usize },
    #[error("pc {pc}: jump to {target} is outside the program")]
    JumpOutOfRange { pc: usize, target: i64 },
    #[error("pc {pc}: jump to {target} lands in the middle of lddw")]
    JumpIntoLddw { pc: usize, target: usize },
    #[error("pc {pc}: jump to {target} leaves its subprogram")]
    JumpAcrossSubprogram { pc: usize, target: usize },
    #[error("pc {pc}: call to {target} is not a valid instruction")]
    BadCallTarget { pc: usize, target: i64 },
    /// A `BPF_PSEUDO_FUNC` `lddw` (a callback reference) that does not name
    /// a subprogram: outside the program, inside an `lddw`, or the main
    /// program itself.
    #[error("pc {pc}: callback reference to {target} does not name a subprogram")]
    BadCallbackTarget { pc: usize, target: i64 },
    #[error("pc {pc}: the subprogram falls off its end (last instruction is not exit or ja)")]
    FallsOffEnd { pc: usize },
    #[error("pc {pc}: LD_ABS/LD_IND (legacy packet access) is not supported")]
    LegacyPacketAccess { pc: usize },
    #[error("pc {pc}: kfunc calls are not supported")]
    KfuncCall { pc: usize },
}

/// A program that passed validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    insns: Vec<Insn>,
    /// Sorted entry pcs of the subprograms; always starts with 0.
    subprogs: Vec<usize>,
}

impl Program {
    /// Validates raw bytecode (a sequence of 8-byte slots).
    pub fn from_bytes(bytes: &[u8]) -> Result<Program, ProgramError> {
        let insns = Insn::decode_all(bytes).ok_or(ProgramError::PartialSlot(bytes.len()))?;
        Program::new(insns)
    }

    /// Validates decoded instructions.
    pub fn new(insns: Vec<Insn>) -> Result<Program, ProgramError> {
        if insns.is_empty() {
            return Err(ProgramError::Empty);
        }
        if insns.len() > MAX_INSNS {
            return Err(ProgramError::TooLong(insns.len()));
        }
        let lddw_tail = lddw_tails(&insns)?;
        for (pc, &insn) in insns.iter().enumerate() {
            if !lddw_tail[pc] {
                check_insn(pc, insn)?;
            }
        }
        let subprogs = subprogram_entries(&insns, &lddw_tail)?;
        check_control_flow(&insns, &lddw_tail, &subprogs)?;
        Ok(Program { insns, subprogs })
    }

    pub fn insns(&self) -> &[Insn] {
        &self.insns
    }

    pub fn len(&self) -> usize {
        self.insns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.insns.is_empty()
    }

    /// Entry pcs of the subprograms, sorted, the main program (0) first.
    pub fn subprograms(&self) -> &[usize] {
        &self.subprogs
    }

    /// The pc range `[start, end)` of the subprogram containing `pc`.
    pub fn subprogram_range(&self, pc: usize) -> (usize, usize) {
        let idx = match self.subprogs.binary_search(&pc) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let end = self
            .subprogs
            .get(idx + 1)
            .copied()
            .unwrap_or(self.insns.len());
        (self.subprogs[idx], end)
    }

    /// Sorted, distinct entry pcs of the subprograms that `BPF_PSEUDO_FUNC`
    /// `lddw`s name (callbacks such as `bpf_loop`'s).
    pub fn callback_targets(&self) -> Vec<usize> {
        let mut targets = Vec::new();
        let mut pc = 0;
        while pc < self.insns.len() {
            let insn = self.insns[pc];
            if insn.is_lddw() {
                if insn.src == BPF_PSEUDO_FUNC {
                    targets.push(relative_target(pc, insn.imm as i64) as usize);
                }
                pc += 2;
            } else {
                pc += 1;
            }
        }
        targets.sort_unstable();
        targets.dedup();
        targets
    }

    /// Helper ids called with `call imm` (not through `callx`).
    pub fn helper_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self
            .insns
            .iter()
            .filter(|i| i.code == CALL && i.src == BPF_CALL_HELPER)
            .map(|i| i.imm as u32)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Serialises back to bytecode.
    pub fn to_bytes(&self) -> Vec<u8> {
        Insn::encode_all(&self.insns)
    }
}

/// Marks the second slot of every `lddw` and checks that it is well formed.
fn lddw_tails(insns: &[Insn]) -> Result<Vec<bool>, ProgramError> {
    let mut tail = vec![false; insns.len()];
    let mut pc = 0;
    while pc < insns.len() {
        if insns[pc].is_lddw() {
            let Some(next) = insns.get(pc + 1) else {
                return Err(ProgramError::IncompleteLddw { pc });
            };
            if next.code != 0 || next.dst != 0 || next.src != 0 || next.off != 0 {
                return Err(ProgramError::IncompleteLddw { pc });
            }
            tail[pc + 1] = true;
            pc += 2;
        } else {
            pc += 1;
        }
    }
    Ok(tail)
}

fn reserved(pc: usize, insn: Insn, field: &'static str, value: i64) -> Result<(), ProgramError> {
    if value != 0 {
        return Err(ProgramError::ReservedField {
            pc,
            code: insn.code,
            field,
        });
    }
    Ok(())
}

fn invalid(pc: usize, insn: Insn, what: &'static str, value: i64) -> ProgramError {
    ProgramError::InvalidField {
        pc,
        code: insn.code,
        what,
        value,
    }
}

fn readable_reg(pc: usize, reg: u8) -> Result<(), ProgramError> {
    if reg as usize >= NUM_REGS {
        return Err(ProgramError::BadRegister { pc, reg });
    }
    Ok(())
}

fn writable_reg(pc: usize, reg: u8) -> Result<(), ProgramError> {
    readable_reg(pc, reg)?;
    if reg == FP {
        return Err(ProgramError::WriteToFramePointer { pc });
    }
    Ok(())
}

/// Checks one instruction in isolation: opcode, reserved fields, registers.
fn check_insn(pc: usize, insn: Insn) -> Result<(), ProgramError> {
    let unknown = ProgramError::UnknownOpcode {
        pc,
        code: insn.code,
    };
    match insn.class() {
        BPF_ALU | BPF_ALU64 => check_alu(pc, insn).and(writable_reg(pc, insn.dst)),
        BPF_JMP | BPF_JMP32 => check_jmp(pc, insn),
        BPF_LD => {
            if insn.is_lddw() {
                if insn.src > BPF_PSEUDO_MAP_IDX_VALUE {
                    return Err(invalid(pc, insn, "lddw source", insn.src as i64));
                }
                reserved(pc, insn, "offset", insn.off as i64)?;
                writable_reg(pc, insn.dst)
            } else if matches!(insn.mode(), BPF_ABS | BPF_IND) && insn.size() != BPF_DW {
                Err(ProgramError::LegacyPacketAccess { pc })
            } else {
                Err(unknown)
            }
        }
        BPF_LDX => {
            let ok = match insn.mode() {
                BPF_MEM => true,
                BPF_MEMSX => insn.size() != BPF_DW,
                _ => false,
            };
            if !ok {
                return Err(unknown);
            }
            reserved(pc, insn, "immediate", insn.imm as i64)?;
            readable_reg(pc, insn.src)?;
            writable_reg(pc, insn.dst)
        }
        BPF_ST => {
            if insn.mode() != BPF_MEM {
                return Err(unknown);
            }
            reserved(pc, insn, "source register", insn.src as i64)?;
            readable_reg(pc, insn.dst)
        }
        BPF_STX => {
            match insn.mode() {
                BPF_MEM => reserved(pc, insn, "immediate", insn.imm as i64)?,
                BPF_ATOMIC => {
                    if !matches!(insn.size(), BPF_W | BPF_DW) {
                        return Err(unknown);
                    }
                    let op_ok = matches!(
                        insn.imm & !BPF_FETCH,
                        BPF_ATOMIC_ADD | BPF_ATOMIC_OR | BPF_ATOMIC_AND | BPF_ATOMIC_XOR
                    ) || insn.imm == BPF_XCHG
                        || insn.imm == BPF_CMPXCHG;
                    if !op_ok {
                        return Err(invalid(pc, insn, "atomic operation", insn.imm as i64));
                    }
                    // Fetching forms write the old value back into src.
                    if insn.imm & BPF_FETCH != 0 {
                        writable_reg(pc, insn.src)?;
                    }
                }
                _ => return Err(unknown),
            }
            readable_reg(pc, insn.src)?;
            readable_reg(pc, insn.dst)
        }
        _ => unreachable!("class is 3 bits"),
    }
}

fn check_alu(pc: usize, insn: Insn) -> Result<(), ProgramError> {
    let is64 = insn.class() == BPF_ALU64;
    let op = insn.op();
    match op {
        BPF_NEG => {
            if insn.source() != BPF_K {
                return Err(ProgramError::UnknownOpcode {
                    pc,
                    code: insn.code,
                });
            }
            reserved(pc, insn, "source register", insn.src as i64)?;
            reserved(pc, insn, "offset", insn.off as i64)?;
            return reserved(pc, insn, "immediate", insn.imm as i64);
        }
        BPF_END => {
            // ALU64 | END is the unconditional bswap (v4); it has no source bit.
            if is64 && insn.source() != BPF_K {
                return Err(ProgramError::UnknownOpcode {
                    pc,
                    code: insn.code,
                });
            }
            reserved(pc, insn, "source register", insn.src as i64)?;
            reserved(pc, insn, "offset", insn.off as i64)?;
            if !matches!(insn.imm, 16 | 32 | 64) {
                return Err(invalid(pc, insn, "byte swap width", insn.imm as i64));
            }
            return Ok(());
        }
        BPF_ADD | BPF_SUB | BPF_MUL | BPF_DIV | BPF_OR | BPF_AND | BPF_LSH | BPF_RSH | BPF_MOD
        | BPF_XOR | BPF_MOV | BPF_ARSH => {}
        _ => {
            return Err(ProgramError::UnknownOpcode {
                pc,
                code: insn.code,
            })
        }
    }
    // Offsets that select a signed variant (ISA v4): sdiv/smod, movsx.
    let off_ok = match (op, insn.source()) {
        (BPF_DIV | BPF_MOD, _) => matches!(insn.off, 0 | 1),
        (BPF_MOV, BPF_X) => matches!(insn.off, 0 | 8 | 16) || (is64 && insn.off == 32),
        _ => insn.off == 0,
    };
    if !off_ok {
        return Err(invalid(pc, insn, "offset", insn.off as i64));
    }
    if insn.source() == BPF_K {
        reserved(pc, insn, "source register", insn.src as i64)
    } else {
        reserved(pc, insn, "immediate", insn.imm as i64)?;
        readable_reg(pc, insn.src)
    }
}

fn check_jmp(pc: usize, insn: Insn) -> Result<(), ProgramError> {
    let is32 = insn.class() == BPF_JMP32;
    let unknown = ProgramError::UnknownOpcode {
        pc,
        code: insn.code,
    };
    match insn.op() {
        BPF_JA => {
            if insn.source() != BPF_K {
                return Err(unknown);
            }
            reserved(pc, insn, "destination register", insn.dst as i64)?;
            reserved(pc, insn, "source register", insn.src as i64)?;
            // `ja` jumps by off; `gotol` (JMP32) by imm, and the other is unused.
            if is32 {
                reserved(pc, insn, "offset", insn.off as i64)
            } else {
                reserved(pc, insn, "immediate", insn.imm as i64)
            }
        }
        BPF_CALL if !is32 => {
            reserved(pc, insn, "offset", insn.off as i64)?;
            if insn.source() == BPF_X {
                // callx: the target is in the register named by dst.
                reserved(pc, insn, "source register", insn.src as i64)?;
                reserved(pc, insn, "immediate", insn.imm as i64)?;
                return readable_reg(pc, insn.dst);
            }
            reserved(pc, insn, "destination register", insn.dst as i64)?;
            match insn.src {
                BPF_CALL_HELPER | BPF_PSEUDO_CALL => Ok(()),
                BPF_PSEUDO_KFUNC_CALL => Err(ProgramError::KfuncCall { pc }),
                other => Err(invalid(pc, insn, "call source", other as i64)),
            }
        }
        BPF_EXIT if !is32 => {
            if insn.source() != BPF_K {
                return Err(unknown);
            }
            reserved(pc, insn, "destination register", insn.dst as i64)?;
            reserved(pc, insn, "source register", insn.src as i64)?;
            reserved(pc, insn, "offset", insn.off as i64)?;
            reserved(pc, insn, "immediate", insn.imm as i64)
        }
        BPF_JEQ | BPF_JGT | BPF_JGE | BPF_JSET | BPF_JNE | BPF_JSGT | BPF_JSGE | BPF_JLT
        | BPF_JLE | BPF_JSLT | BPF_JSLE => {
            readable_reg(pc, insn.dst)?;
            if insn.source() == BPF_K {
                reserved(pc, insn, "source register", insn.src as i64)
            } else {
                reserved(pc, insn, "immediate", insn.imm as i64)?;
                readable_reg(pc, insn.src)
            }
        }
        _ => Err(unknown),
    }
}

/// The pc a jump or call at `pc` targets, relative to the next instruction.
fn relative_target(pc: usize, delta: i64) -> i64 {
    pc as i64 + 1 + delta
}

/// Whether `insn` is a jump within its subprogram, and by how much.
pub(crate) fn jump_delta(insn: Insn) -> Option<i64> {
    match insn.class() {
        BPF_JMP => match insn.op() {
            BPF_CALL | BPF_EXIT => None,
            _ => Some(insn.off as i64),
        },
        BPF_JMP32 if insn.code == JA32 => Some(insn.imm as i64),
        BPF_JMP32 => Some(insn.off as i64),
        _ => None,
    }
}

fn subprogram_entries(insns: &[Insn], lddw_tail: &[bool]) -> Result<Vec<usize>, ProgramError> {
    let mut entries = vec![0];
    for (pc, &insn) in insns.iter().enumerate() {
        let is_local_call = insn.code == CALL && insn.src == BPF_PSEUDO_CALL;
        let is_func_ref = insn.is_lddw() && insn.src == BPF_PSEUDO_FUNC && !lddw_tail[pc];
        if !(is_local_call || is_func_ref) {
            continue;
        }
        let target = relative_target(pc, insn.imm as i64);
        let bad = target < 0 || target as usize >= insns.len() || lddw_tail[target as usize];
        if is_func_ref && (bad || target == 0) {
            // A callback must be a subprogram of its own: not the main
            // program, not outside the program, not half an lddw.
            return Err(ProgramError::BadCallbackTarget { pc, target });
        }
        if bad {
            return Err(ProgramError::BadCallTarget { pc, target });
        }
        entries.push(target as usize);
    }
    entries.sort_unstable();
    entries.dedup();
    Ok(entries)
}

fn check_control_flow(
    insns: &[Insn],
    lddw_tail: &[bool],
    subprogs: &[usize],
) -> Result<(), ProgramError> {
    for (idx, &start) in subprogs.iter().enumerate() {
        let end = subprogs.get(idx + 1).copied().unwrap_or(insns.len());
        for pc in start..end {
            if lddw_tail[pc] {
                continue;
            }
            let Some(delta) = jump_delta(insns[pc]) else {
                continue;
            };
            let target = relative_target(pc, delta);
            if target < 0 || target as usize >= insns.len() {
                return Err(ProgramError::JumpOutOfRange { pc, target });
            }
            let target = target as usize;
            if lddw_tail[target] {
                return Err(ProgramError::JumpIntoLddw { pc, target });
            }
            if target < start || target >= end {
                return Err(ProgramError::JumpAcrossSubprogram { pc, target });
            }
        }
        // The last slot may be the tail of an lddw, which also falls through.
        let last = end - 1;
        let ends_flow = !lddw_tail[last]
            && (insns[last].code == EXIT || insns[last].code == JA || insns[last].code == JA32);
        if !ends_flow {
            return Err(ProgramError::FallsOffEnd { pc: last });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXIT_INSN: Insn = Insn::new(EXIT, 0, 0, 0, 0);

    fn mov_imm(dst: u8, imm: i32) -> Insn {
        Insn::new(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, imm)
    }

    #[test]
    fn accepts_minimal_program() {
        let p = Program::new(vec![mov_imm(0, 1), EXIT_INSN]).unwrap();
        assert_eq!(p.subprograms(), &[0]);
    }

    #[test]
    fn rejects_empty_and_partial() {
        assert_eq!(Program::new(vec![]), Err(ProgramError::Empty));
        assert_eq!(
            Program::from_bytes(&[0u8; 9]),
            Err(ProgramError::PartialSlot(9))
        );
    }

    #[test]
    fn rejects_unknown_opcode() {
        let err = Program::new(vec![Insn::new(0xff, 0, 0, 0, 0), EXIT_INSN]).unwrap_err();
        assert_eq!(err, ProgramError::UnknownOpcode { pc: 0, code: 0xff });
    }

    #[test]
    fn rejects_jump_outside_program() {
        let ja = Insn::new(JA, 0, 0, 5, 0);
        assert!(matches!(
            Program::new(vec![ja, EXIT_INSN]),
            Err(ProgramError::JumpOutOfRange { pc: 0, target: 6 })
        ));
        let back = Insn::new(JA, 0, 0, -3, 0);
        assert!(matches!(
            Program::new(vec![back, EXIT_INSN]),
            Err(ProgramError::JumpOutOfRange { pc: 0, target: -2 })
        ));
    }

    #[test]
    fn rejects_jump_into_lddw() {
        let prog = vec![
            Insn::new(JA, 0, 0, 1, 0),
            Insn::new(LDDW, 0, 0, 0, 1),
            Insn::new(0, 0, 0, 0, 0),
            EXIT_INSN,
        ];
        assert_eq!(
            Program::new(prog),
            Err(ProgramError::JumpIntoLddw { pc: 0, target: 2 })
        );
    }

    #[test]
    fn rejects_write_to_r10_and_missing_registers() {
        assert_eq!(
            Program::new(vec![mov_imm(10, 1), EXIT_INSN]),
            Err(ProgramError::WriteToFramePointer { pc: 0 })
        );
        let bad_src = Insn::new(BPF_ALU64 | BPF_ADD | BPF_X, 0, 11, 0, 0);
        assert_eq!(
            Program::new(vec![bad_src, EXIT_INSN]),
            Err(ProgramError::BadRegister { pc: 0, reg: 11 })
        );
    }

    #[test]
    fn rejects_falling_off_the_end() {
        assert_eq!(
            Program::new(vec![mov_imm(0, 1)]),
            Err(ProgramError::FallsOffEnd { pc: 0 })
        );
    }

    #[test]
    fn finds_subprograms_and_confines_jumps() {
        // main: call +1; exit | sub: mov r0, 2; exit
        let call = Insn::new(CALL, 0, BPF_PSEUDO_CALL, 0, 1);
        let p = Program::new(vec![call, EXIT_INSN, mov_imm(0, 2), EXIT_INSN]).unwrap();
        assert_eq!(p.subprograms(), &[0, 2]);
        assert_eq!(p.subprogram_range(3), (2, 4));
        // A jump from main into the subprogram is refused.
        let ja = Insn::new(JA, 0, 0, 1, 0);
        let prog = vec![call, ja, EXIT_INSN, mov_imm(0, 2), EXIT_INSN];
        // call +1 targets pc 2 here, so the subprogram starts at 2 and the
        // ja at pc 1 (target 3) leaves main.
        assert_eq!(
            Program::new(prog),
            Err(ProgramError::JumpAcrossSubprogram { pc: 1, target: 3 })
        );
    }

    #[test]
    fn callback_references_make_subprograms() {
        // main: r2 = &cb (pc 4); r0 = 0; exit | cb: r0 = 1; exit
        let func = |imm| Insn::new(LDDW, 2, BPF_PSEUDO_FUNC, 0, imm);
        let tail = Insn::new(0, 0, 0, 0, 0);
        let prog = vec![
            func(3),
            tail,
            mov_imm(0, 0),
            EXIT_INSN,
            mov_imm(0, 1),
            EXIT_INSN,
        ];
        let p = Program::new(prog).unwrap();
        assert_eq!(p.subprograms(), &[0, 4]);
        assert_eq!(p.callback_targets(), vec![4]);
        // The main program is not a callback.
        let prog = vec![func(-1), tail, EXIT_INSN];
        assert_eq!(
            Program::new(prog),
            Err(ProgramError::BadCallbackTarget { pc: 0, target: 0 })
        );
        // Outside the program, and into an lddw.
        let prog = vec![func(5), tail, EXIT_INSN];
        assert_eq!(
            Program::new(prog),
            Err(ProgramError::BadCallbackTarget { pc: 0, target: 6 })
        );
        let prog = vec![mov_imm(0, 0), func(-2), tail, EXIT_INSN];
        assert_eq!(
            Program::new(prog),
            Err(ProgramError::BadCallbackTarget { pc: 1, target: 0 })
        );
        let prog = vec![func(0), tail, EXIT_INSN];
        assert_eq!(
            Program::new(prog),
            Err(ProgramError::BadCallbackTarget { pc: 0, target: 1 })
        );
    }

    #[test]
    fn rejects_atomic_fetch_into_r10() {
        let fetch = Insn::new(
            BPF_STX | BPF_ATOMIC | BPF_DW,
            1,
            FP,
            0,
            BPF_ATOMIC_ADD | BPF_FETCH,
        );
        assert_eq!(
            Program::new(vec![fetch, EXIT_INSN]),
            Err(ProgramError::WriteToFramePointer { pc: 0 })
        );
        let plain = Insn::new(BPF_STX | BPF_ATOMIC | BPF_DW, 1, FP, 0, BPF_ATOMIC_ADD);
        assert!(Program::new(vec![plain, EXIT_INSN]).is_ok());
    }

    #[test]
    fn rejects_legacy_packet_access() {
        let ld_abs = Insn::new(BPF_LD | BPF_ABS | BPF_W, 0, 0, 0, 0);
        assert_eq!(
            Program::new(vec![ld_abs, EXIT_INSN]),
            Err(ProgramError::LegacyPacketAccess { pc: 0 })
        );
    }

    #[test]
    fn accepts_v4_signed_forms() {
        let sdiv = Insn::new(BPF_ALU64 | BPF_DIV | BPF_K, 0, 0, 1, 3);
        let movsx = Insn::new(BPF_ALU64 | BPF_MOV | BPF_X, 0, 1, 32, 0);
        let movsx32_bad = Insn::new(BPF_ALU | BPF_MOV | BPF_X, 0, 1, 32, 0);
        assert!(Program::new(vec![sdiv, movsx, EXIT_INSN]).is_ok());
        assert!(Program::new(vec![movsx32_bad, EXIT_INSN]).is_err());
    }
}
