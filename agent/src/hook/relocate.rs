//! Decoding the instructions a hook displaces, deciding whether a site can
//! be patched, and re-encoding those instructions in a trampoline.
//!
//! Pure functions over byte slices: nothing here touches the process.

use super::error::HookError;
use iced_x86::{
    BlockEncoder, BlockEncoderOptions, Code, Decoder, DecoderOptions, Instruction,
    InstructionBlock, Mnemonic, OpKind,
};
use std::ops::Range;

/// The length of the patch: `jmp rel32`.
pub(crate) const JMP_LEN: usize = 5;

/// What an analysis of a site decided.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    /// Where the jump is written: `addr`, or `addr + 4` after an `endbr64`
    /// that stays in place.
    pub patch_addr: usize,
    /// The displaced instructions, decoded at their original addresses.
    pub insns: Vec<Instruction>,
    /// Bytes they cover (at least [`JMP_LEN`]).
    pub len: usize,
    /// Offsets from `patch_addr` of the instructions that start inside the
    /// jump's rel32 (1..=4). The jump's displacement must put an `int3`
    /// byte at each of them (see `trampoline`).
    pub interior: Vec<usize>,
    /// Addresses the displaced instructions reach RIP-relatively: the
    /// trampoline must lie within ±2 GiB of each.
    pub rip_targets: Vec<u64>,
}

/// The displaced instructions re-encoded at a trampoline address, followed
/// by a jump back to the first byte after the displaced range.
#[derive(Clone, Debug)]
pub(crate) struct Relocated {
    pub code: Vec<u8>,
    /// Offset in `code` of each displaced instruction.
    pub offsets: Vec<u32>,
}

/// Upper bound of the relocated code's size, used to reserve space before
/// the exact encoding is known (a short `jcc` can grow into `jcc` + `jmp
/// [rip]` + an 8-byte literal).
pub(crate) const MAX_RELOCATED: usize = 160;

fn decode_at(bytes: &[u8], ip: usize) -> Option<Instruction> {
    let mut d = Decoder::with_ip(64, bytes, ip as u64, DecoderOptions::NONE);
    if !d.can_decode() {
        return None;
    }
    let i = d.decode();
    (!i.is_invalid()).then_some(i)
}

/// Whether execution never falls through to the next instruction.
fn ends_flow(i: &Instruction) -> bool {
    matches!(
        i.mnemonic(),
        Mnemonic::Jmp
            | Mnemonic::Ret
            | Mnemonic::Retf
            | Mnemonic::Iret
            | Mnemonic::Iretd
            | Mnemonic::Iretq
            | Mnemonic::Sysretq
            | Mnemonic::Sysexitq
    )
}

/// The target of a direct (relative) branch, if `i` is one.
fn direct_target(i: &Instruction) -> Option<u64> {
    // jcc, jmp, call, loop*, jrcxz and xbegin with a relative target.
    (i.op_count() > 0 && i.op0_kind() == OpKind::NearBranch64).then(|| i.near_branch_target())
}

/// Why an instruction cannot be moved, if it cannot.
fn unrelocatable(i: &Instruction) -> Option<&'static str> {
    match i.mnemonic() {
        // Another patcher's or a debugger's breakpoint, or a trap.
        Mnemonic::Int3 | Mnemonic::Int1 | Mnemonic::Int | Mnemonic::Into => Some("a trap"),
        Mnemonic::Ud0 | Mnemonic::Ud1 | Mnemonic::Ud2 | Mnemonic::Hlt => Some("a fault"),
        // An indirect-branch target of an IBT binary: something jumps here.
        Mnemonic::Endbr64 | Mnemonic::Endbr32 => Some("an indirect branch target (endbr64)"),
        // Transaction aborts jump to a relative address we would have to
        // keep inside the transaction.
        Mnemonic::Xbegin => Some("xbegin"),
        _ => None,
    }
}

/// Decides how to hook `addr`.
///
/// `code` holds the bytes from `addr` on (as many as are readable, up to a
/// few dozen). `func` is the function's range and its bytes, when known:
/// then the whole function is scanned for direct branches into the patched
/// range, and the range must not cross the function's end.
pub(crate) fn plan(
    addr: usize,
    code: &[u8],
    func: Option<(Range<usize>, &[u8])>,
) -> Result<Plan, HookError> {
    let limit = match &func {
        Some((r, _)) => {
            if !r.contains(&addr) {
                return Err(HookError::OutsideFunction {
                    addr,
                    start: r.start,
                    end: r.end,
                });
            }
            r.end
        }
        None => usize::MAX,
    };
    let first = decode_at(code, addr).ok_or(HookError::Decode { addr })?;
    let skip = if first.code() == Code::Endbr64 { 4 } else { 0 };
    let patch_addr = addr + skip;

    let mut insns = Vec::new();
    let mut len = 0;
    while len < JMP_LEN {
        let ip = patch_addr + len;
        let rest = code.get(skip + len..).unwrap_or(&[]);
        let i = match decode_at(rest, ip) {
            Some(i) => i,
            None if rest.is_empty() => {
                return Err(HookError::TooShort {
                    addr: patch_addr,
                    available: len,
                })
            }
            None => return Err(HookError::Decode { addr: ip }),
        };
        if let Some(what) = unrelocatable(&i) {
            return Err(HookError::Unrelocatable {
                addr: ip,
                what: what.to_string(),
            });
        }
        len += i.len();
        let stop = ends_flow(&i);
        insns.push(i);
        if stop && len < JMP_LEN {
            return Err(HookError::TooShort {
                addr: patch_addr,
                available: len,
            });
        }
    }
    let end = patch_addr + len;
    if end > limit {
        return Err(HookError::SpansFunctionEnd {
            start: patch_addr,
            end,
            func_end: limit,
        });
    }
    let inside = |t: u64| t > patch_addr as u64 && t < end as u64;

    // Branches into the displaced range from outside it. Those inside it are
    // re-targeted by the block encoder.
    if let Some((range, bytes)) = &func {
        let mut d = Decoder::with_ip(64, bytes, range.start as u64, DecoderOptions::NONE);
        let mut at_boundary = false;
        let mut into = None;
        while d.can_decode() {
            let i = d.decode();
            let ip = i.ip() as usize;
            if i.is_invalid() {
                return Err(HookError::Decode { addr: ip });
            }
            at_boundary |= ip == addr;
            if ip >= patch_addr && ip < end {
                continue;
            }
            if let Some(t) = direct_target(&i).filter(|&t| inside(t)) {
                into.get_or_insert(HookError::JumpIntoPatch {
                    from: ip,
                    target: t as usize,
                });
            }
        }
        if !at_boundary {
            return Err(HookError::NotInstructionBoundary { addr });
        }
        if let Some(e) = into {
            return Err(e);
        }
    }

    let interior = insns
        .iter()
        .map(|i| i.ip() as usize - patch_addr)
        .filter(|&o| o > 0 && o < JMP_LEN)
        .collect();
    let rip_targets = insns
        .iter()
        .filter(|i| i.is_ip_rel_memory_operand())
        .map(|i| i.ip_rel_memory_address())
        .collect();
    Ok(Plan {
        patch_addr,
        insns,
        len,
        interior,
        rip_targets,
    })
}

/// Where a site's patch starts: after an `endbr64`, which stays in place.
pub(crate) fn patch_start(addr: usize, code: &[u8]) -> usize {
    match decode_at(code, addr) {
        Some(i) if i.code() == Code::Endbr64 => addr + 4,
        _ => addr,
    }
}

/// Whether `plan` refused a site only because 5 bytes are not available
/// there, in a way that patching its first byte alone would survive: the
/// function is too short or ends within the 5 bytes, a branch lands inside
/// them, an instruction after the first cannot be decoded or moved, or
/// another hook's patch starts within them. `first` is the first
/// instruction's address (after an `endbr64`).
pub(crate) fn trap_can_help(e: &HookError, first: usize) -> bool {
    match e {
        HookError::TooShort { .. }
        | HookError::SpansFunctionEnd { .. }
        | HookError::JumpIntoPatch { .. }
        | HookError::AlreadyHooked { .. } => true,
        HookError::Decode { addr } | HookError::Unrelocatable { addr, .. } => *addr > first,
        _ => false,
    }
}

/// Plans a trap site at `addr`: only the first instruction (after an
/// `endbr64`, which stays in place) is displaced, and only its first byte
/// is patched (`int3`), so neither the function's length nor branches into
/// the instruction's tail matter. With `func`, `addr` must still be an
/// instruction boundary of the function.
pub(crate) fn plan_trap(
    addr: usize,
    code: &[u8],
    func: Option<(Range<usize>, &[u8])>,
) -> Result<Plan, HookError> {
    let first = decode_at(code, addr).ok_or(HookError::Decode { addr })?;
    let skip = if first.code() == Code::Endbr64 { 4 } else { 0 };
    let patch_addr = addr + skip;
    let rest = code.get(skip..).unwrap_or(&[]);
    let i = match decode_at(rest, patch_addr) {
        Some(i) => i,
        None if rest.is_empty() => {
            return Err(HookError::TooShort {
                addr: patch_addr,
                available: 0,
            })
        }
        None => return Err(HookError::Decode { addr: patch_addr }),
    };
    if let Some(what) = unrelocatable(&i) {
        return Err(HookError::Unrelocatable {
            addr: patch_addr,
            what: what.to_string(),
        });
    }
    let len = i.len();
    if let Some((range, bytes)) = &func {
        if !range.contains(&addr) {
            return Err(HookError::OutsideFunction {
                addr,
                start: range.start,
                end: range.end,
            });
        }
        if patch_addr + len > range.end {
            return Err(HookError::SpansFunctionEnd {
                start: patch_addr,
                end: patch_addr + len,
                func_end: range.end,
            });
        }
        let mut d = Decoder::with_ip(64, bytes, range.start as u64, DecoderOptions::NONE);
        let mut at_boundary = false;
        while d.can_decode() && !at_boundary {
            let i = d.decode();
            if i.is_invalid() {
                return Err(HookError::Decode {
                    addr: i.ip() as usize,
                });
            }
            at_boundary = i.ip() as usize == addr;
        }
        if !at_boundary {
            return Err(HookError::NotInstructionBoundary { addr });
        }
    }
    let rip_targets = if i.is_ip_rel_memory_operand() {
        vec![i.ip_rel_memory_address()]
    } else {
        Vec::new()
    };
    Ok(Plan {
        patch_addr,
        insns: vec![i],
        len,
        interior: Vec::new(),
        rip_targets,
    })
}

/// Re-encodes the displaced instructions of `plan` to run at `at`, followed
/// by a jump back to `patch_addr + len`.
pub(crate) fn relocate(plan: &Plan, at: u64) -> Result<Relocated, HookError> {
    let err = |e: iced_x86::IcedError| HookError::Relocation {
        addr: plan.patch_addr,
        reason: e.to_string(),
    };
    let mut block = plan.insns.clone();
    // ip 0: no branch may be re-targeted at the jump back itself.
    let back = Instruction::with_branch(Code::Jmp_rel32_64, (plan.patch_addr + plan.len) as u64)
        .map_err(err)?;
    block.push(back);
    let r = BlockEncoder::encode(
        64,
        InstructionBlock::new(&block, at),
        BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS,
    )
    .map_err(err)?;
    if r.code_buffer.len() > MAX_RELOCATED {
        return Err(HookError::Relocation {
            addr: plan.patch_addr,
            reason: format!("{} bytes of relocated code", r.code_buffer.len()),
        });
    }
    let mut offsets = r.new_instruction_offsets;
    offsets.truncate(plan.insns.len());
    Ok(Relocated {
        code: r.code_buffer,
        offsets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: usize = 0x40_0000;

    fn decode_all(bytes: &[u8], ip: u64) -> Vec<Instruction> {
        let mut d = Decoder::with_ip(64, bytes, ip, DecoderOptions::NONE);
        let mut v = Vec::new();
        while d.can_decode() {
            v.push(d.decode());
        }
        v
    }

    #[test]
    fn push_rbp_prologue() {
        // push rbp; mov rbp,rsp; mov eax,edi; pop rbp; ret
        let f = [0x55, 0x48, 0x89, 0xe5, 0x89, 0xf8, 0x5d, 0xc3];
        let p = plan(BASE, &f, Some((BASE..BASE + f.len(), &f))).unwrap();
        assert_eq!(p.patch_addr, BASE);
        assert_eq!(p.len, 6);
        assert_eq!(p.insns.len(), 3);
        assert_eq!(p.interior, vec![1, 4]);
        assert!(p.rip_targets.is_empty());
    }

    #[test]
    fn endbr64_stays() {
        // endbr64; nop5; ret
        let f = [0xf3, 0x0f, 0x1e, 0xfa, 0x0f, 0x1f, 0x44, 0x00, 0x00, 0xc3];
        let p = plan(BASE, &f, None).unwrap();
        assert_eq!(p.patch_addr, BASE + 4);
        assert_eq!(p.len, 5);
        assert!(p.interior.is_empty());
    }

    #[test]
    fn short_function_refused() {
        // xor eax,eax; ret; int3 padding
        let f = [0x31, 0xc0, 0xc3, 0xcc, 0xcc, 0xcc];
        assert_eq!(
            plan(BASE, &f, None).unwrap_err(),
            HookError::TooShort {
                addr: BASE,
                available: 3
            }
        );
        assert!(matches!(
            plan(BASE, &f[..3], Some((BASE..BASE + 3, &f[..3]))).unwrap_err(),
            HookError::TooShort { .. }
        ));
    }

    #[test]
    fn spans_function_end() {
        // mov eax,edi; ret | next function
        let f = [0x89, 0xf8, 0xc3, 0x55, 0x48, 0x89, 0xe5];
        // Without the range the ret ends the flow first.
        assert!(matches!(
            plan(BASE, &f, Some((BASE..BASE + 3, &f[..3]))).unwrap_err(),
            HookError::TooShort { .. }
        ));
        // lea rax,[rdi+rsi]; (4 bytes) then the function ends
        let g = [0x48, 0x8d, 0x04, 0x37, 0x55, 0x48, 0x89, 0xe5];
        assert_eq!(
            plan(BASE, &g, Some((BASE..BASE + 4, &g[..4]))).unwrap_err(),
            HookError::SpansFunctionEnd {
                start: BASE,
                end: BASE + 5,
                func_end: BASE + 4
            }
        );
    }

    #[test]
    fn backward_jump_into_patch_refused() {
        // xor eax,eax; 1: add rax,rdi; dec rsi; jnz 1b; ret
        let f = [
            0x31, 0xc0, 0x48, 0x01, 0xf8, 0x48, 0xff, 0xce, 0x75, 0xf8, 0xc3,
        ];
        assert_eq!(
            decode_all(&f, BASE as u64)[3].near_branch_target(),
            BASE as u64 + 2
        );
        assert_eq!(
            plan(BASE, &f, Some((BASE..BASE + f.len(), &f))).unwrap_err(),
            HookError::JumpIntoPatch {
                from: BASE + 8,
                target: BASE + 2
            }
        );
        // Hooking at the loop head itself is fine: the jump lands on the
        // patch's first byte.
        let p = plan(BASE + 2, &f[2..], Some((BASE..BASE + f.len(), &f))).unwrap();
        assert_eq!(p.len, 6);
    }

    #[test]
    fn not_a_boundary() {
        let f = [0x55, 0x48, 0x89, 0xe5, 0x89, 0xf8, 0x5d, 0xc3];
        // BASE+2 is inside `mov rbp,rsp`, whose tail decodes as something else.
        assert!(matches!(
            plan(BASE + 2, &f[2..], Some((BASE..BASE + f.len(), &f))).unwrap_err(),
            HookError::NotInstructionBoundary { .. } | HookError::Decode { .. }
        ));
    }

    #[test]
    fn rip_relative_relocated() {
        // mov rax,[rip+0x100]; add rax,rdi; ret
        let f = [
            0x48, 0x8b, 0x05, 0x00, 0x01, 0x00, 0x00, 0x48, 0x01, 0xf8, 0xc3,
        ];
        let p = plan(BASE, &f, Some((BASE..BASE + f.len(), &f))).unwrap();
        assert_eq!(p.len, 7);
        assert_eq!(p.rip_targets, vec![(BASE + 7 + 0x100) as u64]);
        let at = (BASE - 0x10_0000) as u64;
        let r = relocate(&p, at).unwrap();
        let back = decode_all(&r.code, at);
        assert_eq!(back[0].ip_rel_memory_address(), (BASE + 7 + 0x100) as u64);
        assert_eq!(back[1].mnemonic(), Mnemonic::Jmp);
        assert_eq!(back[1].near_branch_target(), (BASE + 7) as u64);
        assert_eq!(r.offsets, vec![0]);
    }

    #[test]
    fn short_jcc_grows() {
        // test edi,edi; je +0x20; nop; ...
        let f = [0x85, 0xff, 0x74, 0x20, 0x90, 0x90, 0xc3];
        let p = plan(BASE, &f, None).unwrap();
        assert_eq!(p.interior, vec![2, 4]);
        let at = (BASE + 0x1000_0000) as u64;
        let r = relocate(&p, at).unwrap();
        let back = decode_all(&r.code, at);
        assert_eq!(back[1].near_branch_target(), (BASE + 4 + 0x20) as u64);
        assert_eq!(r.offsets.len(), 3);
    }

    #[test]
    fn trap_plans() {
        // xor eax,eax; ret: a jump does not fit, a trap site does.
        let f = [0x31, 0xc0, 0xc3];
        let r = Some((BASE..BASE + 3, &f[..]));
        let e = plan(BASE, &f, r.clone()).unwrap_err();
        assert!(trap_can_help(&e, patch_start(BASE, &f)), "{e}");
        let p = plan_trap(BASE, &f, r).unwrap();
        assert_eq!((p.patch_addr, p.len, p.insns.len()), (BASE, 2, 1));
        assert!(p.interior.is_empty());
        // endbr64; ret: the int3 goes on the ret.
        let g = [0xf3, 0x0f, 0x1e, 0xfa, 0xc3];
        assert_eq!(patch_start(BASE, &g), BASE + 4);
        let p = plan_trap(BASE, &g, Some((BASE..BASE + 5, &g[..]))).unwrap();
        assert_eq!((p.patch_addr, p.len), (BASE + 4, 1));
        // A RIP-relative first instruction keeps its target in reach.
        let h = [0x48, 0x8b, 0x05, 0x00, 0x01, 0x00, 0x00, 0xc3];
        let p = plan_trap(BASE, &h, None).unwrap();
        assert_eq!(p.rip_targets, vec![(BASE + 7 + 0x100) as u64]);
        // Refusals a trap site cannot lift.
        let u = [0x0f, 0x0b, 0xc3];
        let e = plan(BASE, &u, None).unwrap_err();
        assert!(!trap_can_help(&e, BASE), "{e}");
        assert!(matches!(
            plan_trap(BASE, &u, None).unwrap_err(),
            HookError::Unrelocatable { .. }
        ));
        let l = [0x55, 0x48, 0x89, 0xe5, 0x5d, 0xc3];
        assert!(matches!(
            plan_trap(BASE + 2, &l[2..], Some((BASE..BASE + 6, &l[..]))).unwrap_err(),
            HookError::NotInstructionBoundary { .. } | HookError::Decode { .. }
        ));
        // A later instruction that cannot move does not matter.
        let m = [0x90, 0x0f, 0x0b];
        let e = plan(BASE, &m, None).unwrap_err();
        assert!(trap_can_help(&e, BASE), "{e}");
        assert_eq!(plan_trap(BASE, &m, None).unwrap().len, 1);
    }

    #[test]
    fn breakpoint_refused() {
        let f = [0xcc, 0x48, 0x89, 0xe5, 0x90, 0x90];
        assert!(matches!(
            plan(BASE, &f, None).unwrap_err(),
            HookError::Unrelocatable { .. }
        ));
    }
}
