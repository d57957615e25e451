//! Programs that must fail cleanly: each is stopped (at load or at run time)
//! with the specific error, and none may crash the host.
//!
//! Built from raw instructions so that they do not depend on the assembler.

use userbpf_runtime::helpers::{HelperEnv, HelperRegistry};
use userbpf_runtime::isa::*;
use userbpf_runtime::memory::Access;
use userbpf_runtime::program::ProgramError;
use userbpf_runtime::vm::{Engine, Vm, VmError, VmOptions};

fn alu64(op: u8, dst: u8, imm: i32) -> Insn {
    Insn::new(BPF_ALU64 | op | BPF_K, dst, 0, 0, imm)
}
fn alu64_reg(op: u8, dst: u8, src: u8) -> Insn {
    Insn::new(BPF_ALU64 | op | BPF_X, dst, src, 0, 0)
}
fn ldx(size: u8, dst: u8, src: u8, off: i16) -> Insn {
    Insn::new(BPF_LDX | BPF_MEM | size, dst, src, off, 0)
}
fn stx(size: u8, dst: u8, off: i16, src: u8) -> Insn {
    Insn::new(BPF_STX | BPF_MEM | size, dst, src, off, 0)
}
fn st(size: u8, dst: u8, off: i16, imm: i32) -> Insn {
    Insn::new(BPF_ST | BPF_MEM | size, dst, 0, off, imm)
}
/// `lddw dst, value` (two slots).
fn lddw(dst: u8, value: u64) -> [Insn; 2] {
    [
        Insn::new(LDDW, dst, 0, 0, value as u32 as i32),
        Insn::new(0, 0, 0, 0, (value >> 32) as u32 as i32),
    ]
}
const EXIT_INSN: Insn = Insn::new(EXIT, 0, 0, 0, 0);

fn options(limit: Option<u64>) -> VmOptions {
    VmOptions {
        engine: Engine::Interpreter,
        instruction_limit: limit,
    }
}

fn load(insns: Vec<Insn>) -> Result<Vm, VmError> {
    Vm::from_insns(insns, HelperRegistry::new(), options(None))
}

fn run(insns: Vec<Insn>, mem: &mut [u8]) -> Result<u64, VmError> {
    load(insns)?.run(mem)
}

#[test]
fn out_of_bounds_load() {
    let mut mem = [0u8; 8];
    let base = mem.as_ptr() as u64;
    // ldxdw r0, [r1+4]: bytes 4..12 of an 8-byte context.
    let err = run(vec![ldx(BPF_DW, 0, 1, 4), EXIT_INSN], &mut mem).unwrap_err();
    assert_eq!(
        err,
        VmError::MemoryViolation {
            pc: 0,
            addr: base + 4,
            len: 8,
            access: Access::Read
        }
    );
    // The message names pc, address and size.
    let text = err.to_string();
    assert!(
        text.contains("pc 0")
            && text.contains(&format!("{:#x}", base + 4))
            && text.contains("8 bytes")
    );
}

#[test]
fn out_of_bounds_store() {
    // stxdw [r1+0], r0 with r1 an arbitrary host address.
    let [a, b] = lddw(1, 0x7fff_dead_0000);
    let err = run(vec![a, b, stx(BPF_DW, 1, 0, 0), EXIT_INSN], &mut []).unwrap_err();
    assert_eq!(
        err,
        VmError::MemoryViolation {
            pc: 2,
            addr: 0x7fff_dead_0000,
            len: 8,
            access: Access::Write
        }
    );
}

#[test]
fn load_through_null_pointer() {
    let prog = vec![alu64(BPF_MOV, 1, 0), ldx(BPF_B, 0, 1, 0), EXIT_INSN];
    let err = run(prog, &mut [0u8; 16]).unwrap_err();
    assert_eq!(
        err,
        VmError::MemoryViolation {
            pc: 1,
            addr: 0,
            len: 1,
            access: Access::Read
        }
    );
}

#[test]
fn store_into_context_beyond_its_end() {
    let mut mem = [0u8; 16];
    let base = mem.as_ptr() as u64;
    // stw [r1+14], 1: the last 2 bytes are inside, the next 2 are not.
    let err = run(vec![st(BPF_W, 1, 14, 1), EXIT_INSN], &mut mem).unwrap_err();
    assert_eq!(
        err,
        VmError::MemoryViolation {
            pc: 0,
            addr: base + 14,
            len: 4,
            access: Access::Write
        }
    );
    assert_eq!(mem, [0u8; 16], "a refused store writes nothing");
    // The same store at the very end of the context is fine.
    assert!(run(vec![st(BPF_W, 1, 12, 1), EXIT_INSN], &mut mem).is_ok());
}

#[test]
fn jump_outside_the_program_is_refused_at_load() {
    let err = load(vec![Insn::new(JA, 0, 0, 10, 0), EXIT_INSN]).unwrap_err();
    assert_eq!(
        err,
        VmError::Program(ProgramError::JumpOutOfRange { pc: 0, target: 11 })
    );
    let err = load(vec![
        Insn::new(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, -5, 0),
        EXIT_INSN,
    ])
    .unwrap_err();
    assert_eq!(
        err,
        VmError::Program(ProgramError::JumpOutOfRange { pc: 0, target: -4 })
    );
}

#[test]
fn deep_recursion_exceeds_the_call_depth() {
    // pc 0: call local 0 (itself), forever.
    let prog = vec![Insn::new(CALL, 0, BPF_PSEUDO_CALL, 0, -1), EXIT_INSN];
    let err = run(prog, &mut []).unwrap_err();
    assert_eq!(
        err,
        VmError::CallDepthExceeded {
            pc: 0,
            max: MAX_CALL_FRAMES
        }
    );
}

#[test]
fn recursion_within_the_limit_works() {
    // main: r1 = 0; call f; exit
    // f:    r1 += 1; if r1 >= 7 goto out; call f; out: r0 = r1; exit
    // Seven nested calls plus the entry frame: exactly MAX_CALL_FRAMES.
    let prog = vec![
        alu64(BPF_MOV, 1, 0),
        Insn::new(CALL, 0, BPF_PSEUDO_CALL, 0, 1),
        EXIT_INSN,
        alu64(BPF_ADD, 1, 1),
        Insn::new(
            BPF_JMP | BPF_JGE | BPF_K,
            1,
            0,
            1,
            (MAX_CALL_FRAMES - 1) as i32,
        ),
        Insn::new(CALL, 0, BPF_PSEUDO_CALL, 0, -3),
        alu64_reg(BPF_MOV, 0, 1),
        EXIT_INSN,
    ];
    assert_eq!(run(prog, &mut []), Ok((MAX_CALL_FRAMES - 1) as u64));
}

#[test]
fn runaway_loop_hits_the_instruction_limit() {
    // loop: r0 += 1; ja loop
    let prog = vec![alu64(BPF_ADD, 0, 1), Insn::new(JA, 0, 0, -2, 0)];
    let vm = Vm::from_insns(prog, HelperRegistry::new(), options(Some(10_000))).unwrap();
    let err = vm.run(&mut []).unwrap_err();
    assert!(
        matches!(err, VmError::InstructionLimit { limit: 10_000, pc } if pc <= 1),
        "{err:?}"
    );
}

#[test]
fn unknown_opcode_is_refused_at_load() {
    let err = load(vec![Insn::new(0xff, 0, 0, 0, 0), EXIT_INSN]).unwrap_err();
    assert_eq!(
        err,
        VmError::Program(ProgramError::UnknownOpcode { pc: 0, code: 0xff })
    );
    // LD_ABS is refused too, with its own error.
    let err = load(vec![
        Insn::new(BPF_LD | BPF_ABS | BPF_W, 0, 0, 0, 0),
        EXIT_INSN,
    ])
    .unwrap_err();
    assert_eq!(
        err,
        VmError::Program(ProgramError::LegacyPacketAccess { pc: 0 })
    );
}

#[test]
fn division_tricks_do_not_trap_the_host() {
    let sdiv = |dst, imm| Insn::new(BPF_ALU64 | BPF_DIV | BPF_K, dst, 0, 1, imm);
    let smod = |dst, imm| Insn::new(BPF_ALU64 | BPF_MOD | BPF_K, dst, 0, 1, imm);
    let sdiv_reg = |dst, src| Insn::new(BPF_ALU64 | BPF_DIV | BPF_X, dst, src, 1, 0);
    let sdiv32 = |dst, imm| Insn::new(BPF_ALU | BPF_DIV | BPF_K, dst, 0, 1, imm);
    let smod32 = |dst, imm| Insn::new(BPF_ALU | BPF_MOD | BPF_K, dst, 0, 1, imm);
    let min = lddw(0, i64::MIN as u64);

    // i64::MIN / -1 and i64::MIN % -1.
    let r = run(vec![min[0], min[1], sdiv(0, -1), EXIT_INSN], &mut []);
    assert_eq!(r, Ok(i64::MIN as u64));
    let r = run(vec![min[0], min[1], smod(0, -1), EXIT_INSN], &mut []);
    assert_eq!(r, Ok(0));
    // The same with the divisor in a register.
    let r = run(
        vec![
            min[0],
            min[1],
            alu64(BPF_MOV, 1, -1),
            sdiv_reg(0, 1),
            EXIT_INSN,
        ],
        &mut [],
    );
    assert_eq!(r, Ok(i64::MIN as u64));
    // i32::MIN / -1 and % -1 in 32-bit ALU.
    let mov32_min = Insn::new(BPF_ALU | BPF_MOV | BPF_K, 0, 0, 0, i32::MIN);
    let r = run(vec![mov32_min, sdiv32(0, -1), EXIT_INSN], &mut []);
    assert_eq!(r, Ok(0x8000_0000));
    let r = run(vec![mov32_min, smod32(0, -1), EXIT_INSN], &mut []);
    assert_eq!(r, Ok(0));
    // By zero: division gives 0, modulo leaves the dividend.
    let div0 = Insn::new(BPF_ALU64 | BPF_DIV | BPF_X, 0, 1, 0, 0);
    let mod0 = Insn::new(BPF_ALU64 | BPF_MOD | BPF_X, 0, 1, 0, 0);
    let seven = alu64(BPF_MOV, 0, 7);
    let zero = alu64(BPF_MOV, 1, 0);
    assert_eq!(run(vec![seven, zero, div0, EXIT_INSN], &mut []), Ok(0));
    assert_eq!(run(vec![seven, zero, mod0, EXIT_INSN], &mut []), Ok(7));
}

#[test]
fn unregistered_helper_is_refused_at_load() {
    let prog = vec![
        alu64(BPF_MOV, 0, 0),
        Insn::new(CALL, 0, 0, 0, 42),
        EXIT_INSN,
    ];
    let err = load(prog).unwrap_err();
    assert_eq!(err, VmError::UnknownHelper { pc: 1, id: 42 });
}

unsafe extern "C" fn seven(_: u64, _: u64, _: u64, _: u64, _: u64, _: *mut HelperEnv) -> u64 {
    7
}

#[test]
fn callx_to_an_unregistered_helper_stops_the_run() {
    let mut helpers = HelperRegistry::new();
    helpers.register(5, "seven", seven);
    // r2 = id; callx r2; exit
    let prog = |id| {
        vec![
            alu64(BPF_MOV, 2, id),
            Insn::new(CALLX, 2, 0, 0, 0),
            EXIT_INSN,
        ]
    };
    let vm = Vm::from_insns(prog(5), &helpers, options(None)).unwrap();
    assert_eq!(vm.run(&mut []), Ok(7));
    let vm = Vm::from_insns(prog(6), &helpers, options(None)).unwrap();
    assert_eq!(
        vm.run(&mut []),
        Err(VmError::UnknownHelper { pc: 1, id: 6 })
    );
    let vm = Vm::from_insns(prog(-1), &helpers, options(None)).unwrap();
    assert_eq!(
        vm.run(&mut []),
        Err(VmError::UnknownHelper {
            pc: 1,
            id: u64::MAX
        })
    );
}

#[test]
fn write_to_r10_is_refused_at_load() {
    let err = load(vec![alu64(BPF_ADD, 10, 8), EXIT_INSN]).unwrap_err();
    assert_eq!(
        err,
        VmError::Program(ProgramError::WriteToFramePointer { pc: 0 })
    );
    let err = load(vec![ldx(BPF_DW, 10, 1, 0), EXIT_INSN]).unwrap_err();
    assert_eq!(
        err,
        VmError::Program(ProgramError::WriteToFramePointer { pc: 0 })
    );
}

#[test]
fn stack_reads_outside_the_frame_are_refused() {
    // The frame is [r10-512, r10): one byte below it is refused...
    let err = run(vec![ldx(BPF_B, 0, 10, -513), EXIT_INSN], &mut []).unwrap_err();
    assert!(
        matches!(
            err,
            VmError::MemoryViolation {
                pc: 0,
                len: 1,
                access: Access::Read,
                ..
            }
        ),
        "{err:?}"
    );
    // ...so is a read straddling its bottom...
    let err = run(vec![ldx(BPF_DW, 0, 10, -516), EXIT_INSN], &mut []).unwrap_err();
    assert!(
        matches!(err, VmError::MemoryViolation { len: 8, .. }),
        "{err:?}"
    );
    // ...and one at r10 itself (above the frame).
    let err = run(vec![ldx(BPF_W, 0, 10, 0), EXIT_INSN], &mut []).unwrap_err();
    assert!(
        matches!(err, VmError::MemoryViolation { len: 4, .. }),
        "{err:?}"
    );
    // The bottom and top words of the frame are fine (and zeroed).
    assert_eq!(
        run(vec![ldx(BPF_DW, 0, 10, -512), EXIT_INSN], &mut []),
        Ok(0)
    );
    assert_eq!(run(vec![ldx(BPF_DW, 0, 10, -8), EXIT_INSN], &mut []), Ok(0));
}

#[test]
fn a_callee_cannot_reach_below_its_own_frame() {
    // main: call f; exit | f: r0 = *(u8 *)(r10 - 513); exit
    let prog = vec![
        Insn::new(CALL, 0, BPF_PSEUDO_CALL, 0, 1),
        EXIT_INSN,
        ldx(BPF_B, 0, 10, -513),
        EXIT_INSN,
    ];
    let err = run(prog, &mut []).unwrap_err();
    assert!(
        matches!(err, VmError::MemoryViolation { pc: 2, .. }),
        "{err:?}"
    );
}

#[test]
fn misaligned_atomic_is_refused() {
    // lock add [r10-4], r1 is 4-byte aligned for a 32-bit op but not for 64.
    let atomic64 = Insn::new(BPF_STX | BPF_ATOMIC | BPF_DW, 10, 1, -12, BPF_ATOMIC_ADD);
    let err = run(vec![atomic64, EXIT_INSN], &mut []).unwrap_err();
    assert!(
        matches!(err, VmError::MisalignedAtomic { pc: 0, len: 8, .. }),
        "{err:?}"
    );
}

#[test]
fn atomic_on_a_read_only_region_is_refused() {
    use userbpf_runtime::memory::Region;
    let data = [0u64; 1];
    let region = Region::of_slice(bytemuck_bytes(&data));
    // r1 = region address (via lddw); lock add [r1], r2
    let [a, b] = lddw(1, region.start);
    let prog = vec![
        a,
        b,
        ldx(BPF_DW, 0, 1, 0),
        Insn::new(BPF_STX | BPF_ATOMIC | BPF_DW, 1, 2, 0, BPF_ATOMIC_ADD),
        EXIT_INSN,
    ];
    let vm = load(prog).unwrap();
    // SAFETY: `data` outlives the run and the region is read-only.
    let err = unsafe { vm.run_with(std::ptr::null_mut(), 0, &[region], std::ptr::null_mut()) }
        .unwrap_err();
    assert_eq!(
        err,
        VmError::MemoryViolation {
            pc: 3,
            addr: region.start,
            len: 8,
            access: Access::ReadWrite
        }
    );
}

fn bytemuck_bytes(words: &[u64]) -> &[u8] {
    // SAFETY: u64 has no padding and any byte pattern is a valid u8.
    unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), std::mem::size_of_val(words)) }
}
