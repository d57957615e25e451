//! How far into its context a program reads: the kernel verifier's
//! `max_ctx_offset` (the largest `off + size` of a load from the context),
//! which `BPF_PROG_TEST_RUN` of raw tracepoints checks the given context
//! against.
//!
//! A forward data-flow pass over the main program: a register holds either
//! "the context plus a known offset" or something else; moves and constant
//! adds carry the offset, any other write loses it, calls clobber r0-r5,
//! and at joins disagreeing facts are dropped. Context pointers spilled to
//! the stack are not followed (clang keeps them in callee-saved registers).

use crate::isa::{
    Insn, BPF_ADD, BPF_ALU64, BPF_CALL, BPF_EXIT, BPF_JA, BPF_JMP, BPF_JMP32, BPF_K, BPF_LDX,
    BPF_MEM, BPF_MEMSX, BPF_MOV, BPF_SUB, BPF_X,
};

/// What a register holds, as far as the context is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reg {
    Other,
    Ctx(i64),
}

type State = [Reg; 11];

fn join(a: &State, b: &State) -> State {
    std::array::from_fn(|i| if a[i] == b[i] { a[i] } else { Reg::Other })
}

/// `max_ctx_offset` of a program (its main function, from instruction 0).
pub fn max_ctx_offset(insns: &[Insn]) -> u32 {
    let n = insns.len();
    let mut states: Vec<Option<State>> = vec![None; n];
    let mut entry = [Reg::Other; 11];
    entry[1] = Reg::Ctx(0);
    let mut work = vec![0usize];
    if n > 0 {
        states[0] = Some(entry);
    }
    let mut max: i64 = 0;
    while let Some(pc) = work.pop() {
        let Some(mut st) = states[pc] else { continue };
        let insn = insns[pc];
        let class = insn.class();
        let (dst, src) = (insn.dst as usize % 11, insn.src as usize % 11);
        let mut next = vec![pc + if insn.is_lddw() { 2 } else { 1 }];
        match class {
            BPF_LDX if matches!(insn.mode(), BPF_MEM | BPF_MEMSX) => {
                if let Reg::Ctx(base) = st[src] {
                    let end = base + i64::from(insn.off) + insn.access_width() as i64;
                    max = max.max(end);
                }
                st[dst] = Reg::Other;
            }
            BPF_ALU64 => {
                st[dst] = match (insn.op(), insn.source(), st[dst]) {
                    (BPF_MOV, BPF_X, _) if insn.off == 0 => st[src],
                    (BPF_ADD, BPF_K, Reg::Ctx(o)) => Reg::Ctx(o + i64::from(insn.imm)),
                    (BPF_SUB, BPF_K, Reg::Ctx(o)) => Reg::Ctx(o - i64::from(insn.imm)),
                    _ => Reg::Other,
                };
            }
            BPF_JMP | BPF_JMP32 => match insn.op() {
                BPF_EXIT if class == BPF_JMP => next.clear(),
                BPF_CALL if class == BPF_JMP => {
                    for r in st.iter_mut().take(6) {
                        *r = Reg::Other;
                    }
                }
                BPF_JA => {
                    let off = if class == BPF_JMP32 {
                        insn.imm as i64
                    } else {
                        i64::from(insn.off)
                    };
                    next = vec![(pc as i64 + 1 + off) as usize];
                }
                _ => next.push((pc as i64 + 1 + i64::from(insn.off)) as usize),
            },
            _ => {
                // Stores, atomics (fetch forms write src), 32-bit ALU, lddw.
                if class == 0x04 || insn.is_lddw() {
                    st[dst] = Reg::Other;
                }
                if class == 0x03 {
                    st[src] = Reg::Other;
                }
            }
        }
        for t in next {
            if t >= n {
                continue;
            }
            let merged = match states[t] {
                None => st,
                Some(old) => join(&old, &st),
            };
            if states[t] != Some(merged) {
                states[t] = Some(merged);
                work.push(t);
            }
        }
    }
    max.clamp(0, u32::MAX as i64) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asm::assemble;

    fn max_of(src: &str) -> u32 {
        max_ctx_offset(&assemble(src).unwrap())
    }

    #[test]
    fn follows_moves_adds_and_branches() {
        assert_eq!(max_of("mov %r0, 0\nexit"), 0);
        assert_eq!(max_of("ldxdw %r0, [%r1+8]\nexit"), 16);
        assert_eq!(
            max_of("mov %r6, %r1\nadd %r6, 16\nldxw %r0, [%r6+4]\nexit"),
            24
        );
        // Only one path reads far; the maximum counts.
        assert_eq!(
            max_of(
                "mov %r6, %r1\njeq %r2, 0, +2\nldxdw %r0, [%r6+40]\nexit\nldxdw %r0, [%r6]\nexit"
            ),
            48
        );
        // A call clobbers r1; r6 survives.
        assert_eq!(
            max_of("mov %r6, %r1\ncall 5\nldxdw %r0, [%r1+64]\nldxdw %r0, [%r6+8]\nexit"),
            16
        );
    }
}
