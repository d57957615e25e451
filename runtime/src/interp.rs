//! The interpreter: runs a validated [`Program`] one instruction at a time
//! and checks every memory access.
//!
//! Semantics are those of RFC 9669 (ISA v1 to v4). Choices the RFC leaves to
//! the runtime:
//!
//! - `lddw` with a pseudo source (`src != 0`: map fd, map value, BTF id,
//!   map index) loads its 64-bit immediate unchanged. The loader is
//!   expected to have relocated it already (to a map pointer, say). A
//!   function reference (`BPF_PSEUDO_FUNC`) loads a callback token that
//!   helpers such as `bpf_loop` hand to [`HelperEnv::call_callback`]; the
//!   callback runs in a fresh frame below the calling one, with the same
//!   depth limit and instruction budget as the rest of the run.
//! - `callx` (opcode 0x8d) takes a helper *id* from the register named by
//!   `dst`, as in the bpf_conformance suite, not a code address.
//! - Helper calls leave r1-r5 as they were. The ISA says they are clobbered,
//!   so programs cannot tell.
//! - Each frame has its own 512-byte stack. All frames live in one block on
//!   the host stack, the entry frame at the top and callees below it, so the
//!   memory of the live frames is one range and a callee may use pointers
//!   into its callers' stacks.
//!
//! Memory a program may touch: the context (read-write), the stacks of the
//! live frames, the extra regions of the run, and regions helpers granted
//! through [`HelperEnv::grant`]. Any other access stops the run with
//! [`VmError::MemoryViolation`]; the host never faults.
//!
//! Maps are shared between threads, so atomics use host atomic operations.
//! Plain loads and stores are unaligned-safe host accesses, like the
//! kernel's (programs that race on plain accesses get what the kernel gives
//! them: torn values, not undefined behaviour in the interpreter's own state).

use std::cell::Cell;
use std::ffi::c_void;
use std::mem::{size_of, MaybeUninit};
use std::ptr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::helpers::callback::CallbackHook;
use crate::helpers::{CallbackError, HelperEnv, HelperFn, HelperRegistry, ProgMem};
use crate::isa::*;
use crate::memory::{Access, Region};
use crate::program::{Program, ProgramError};
use crate::tailcall::{ProgArray, TailCallCounter, TailTarget, BPF_FUNC_TAIL_CALL};
use crate::vm::{PoisonKind, VmError};

/// The read-modify-write an atomic instruction asks for, on an
/// `AtomicU32` or `AtomicU64`; evaluates to the old value.
macro_rules! apply_atomic {
    ($cell:expr, $pc:expr, $insn:expr, $value:expr, $expected:expr) => {{
        let order = Ordering::SeqCst;
        Ok(match $insn.imm & !BPF_FETCH {
            BPF_ATOMIC_ADD => $cell.fetch_add($value, order),
            BPF_ATOMIC_OR => $cell.fetch_or($value, order),
            BPF_ATOMIC_AND => $cell.fetch_and($value, order),
            BPF_ATOMIC_XOR => $cell.fetch_xor($value, order),
            _ if $insn.imm == BPF_XCHG => $cell.swap($value, order),
            _ if $insn.imm == BPF_CMPXCHG => {
                match $cell.compare_exchange($expected, $value, order, order) {
                    Ok(old) | Err(old) => old,
                }
            }
            _ => return Err(bad_atomic($pc, $insn)),
        })
    }};
}

/// Bytes of stack for all frames of one run.
const STACK_BYTES: usize = STACK_SIZE * MAX_CALL_FRAMES;

/// Source field that marks a `call 12` (`bpf_tail_call`) in `code`; no
/// valid program uses it.
const TAIL_CALL_SRC: u8 = 0x0f;

/// Source field that marks a call libbpf poisoned (the imm keeps its id);
/// no valid program uses it.
const POISON_SRC: u8 = 0x0e;

/// An interpreter for one program. Immutable once built: every run keeps its
/// state on the host stack, so one interpreter serves many threads.
#[derive(Debug)]
pub struct Interpreter {
    /// The program's slots, except that the imm of each `call imm` is
    /// rewritten into an index into `helpers` (resolved once, at build).
    code: Box<[Insn]>,
    /// Helpers used by `call imm`, in first-use order.
    helpers: Box<[HelperFn]>,
    /// Every registered helper by id, sorted, for `callx`.
    by_id: Box<[(u32, HelperFn)]>,
    /// Entry pcs of the callbacks the program names with `BPF_PSEUDO_FUNC`
    /// `lddw`s, sorted. The token such an `lddw` loads is the address of
    /// the callback's entry here (see [`Interpreter::callback_pc`]).
    callbacks: Box<[u64]>,
    instruction_limit: Option<u64>,
}

impl Interpreter {
    /// Prepares `program` for running. Fails with [`VmError::UnknownHelper`]
    /// if a `call imm` names a helper `helpers` does not have, unless it is
    /// one of libbpf's poisoned calls ([`PoisonKind`]), which fails the run
    /// that reaches it with [`VmError::PoisonedCall`].
    pub fn new(
        program: &Program,
        helpers: &HelperRegistry,
        instruction_limit: Option<u64>,
    ) -> Result<Self, VmError> {
        let mut code = program.insns().to_vec();
        let callbacks: Box<[u64]> = program
            .callback_targets()
            .into_iter()
            .map(|pc| pc as u64)
            .collect();
        let mut ids: Vec<u32> = Vec::new();
        let mut table: Vec<HelperFn> = Vec::new();
        let mut pc = 0;
        while pc < code.len() {
            let insn = &mut code[pc];
            if insn.code == CALL && insn.src == BPF_CALL_HELPER {
                let id = insn.imm as u32;
                if id == BPF_FUNC_TAIL_CALL {
                    // Built into every engine, like the kernel's.
                    insn.src = TAIL_CALL_SRC;
                    pc += 1;
                    continue;
                }
                let Some(helper) = helpers.get(id) else {
                    if PoisonKind::is_poison(id) {
                        // Loads (dead code in a valid program); fails the
                        // run that reaches it.
                        insn.src = POISON_SRC;
                        pc += 1;
                        continue;
                    }
                    return Err(VmError::UnknownHelper {
                        pc,
                        id: u64::from(id),
                    });
                };
                let slot = match ids.iter().position(|&known| known == id) {
                    Some(slot) => slot,
                    None => {
                        ids.push(id);
                        table.push(helper.func);
                        ids.len() - 1
                    }
                };
                insn.imm = slot as i32;
            }
            if insn.is_lddw() && insn.src == BPF_PSEUDO_FUNC {
                // Validation made the target a subprogram entry; the lddw
                // now loads its token.
                let target = (pc as i64 + 1 + insn.imm as i64) as u64;
                let token = match callbacks.binary_search(&target) {
                    Ok(i) => callbacks.as_ptr() as u64 + 8 * i as u64,
                    Err(_) => 0,
                };
                insn.src = BPF_PSEUDO_NONE;
                insn.imm = token as u32 as i32;
                code[pc + 1].imm = (token >> 32) as u32 as i32;
                pc += 2;
                continue;
            }
            pc += if insn.is_lddw() { 2 } else { 1 };
        }
        let mut by_id: Vec<(u32, HelperFn)> = helpers.iter().map(|h| (h.id, h.func)).collect();
        by_id.sort_unstable_by_key(|&(id, _)| id);
        Ok(Interpreter {
            code: code.into_boxed_slice(),
            helpers: table.into_boxed_slice(),
            by_id: by_id.into_boxed_slice(),
            callbacks,
            instruction_limit,
        })
    }

    /// The entry pc of the callback whose token is `token`, if `token`
    /// names a callback of this program.
    fn callback_pc(&self, token: u64) -> Option<usize> {
        let base = self.callbacks.as_ptr() as u64;
        let offset = token.checked_sub(base)?;
        if offset % 8 != 0 {
            return None;
        }
        let pc = *self.callbacks.get(usize::try_from(offset / 8).ok()?)?;
        Some(pc as usize)
    }

    /// The instruction budget of each run, if any.
    pub fn instruction_limit(&self) -> Option<u64> {
        self.instruction_limit
    }

    /// The helper registered under `id`, for `callx`.
    fn helper_by_id(&self, id: u64) -> Option<HelperFn> {
        let id = u32::try_from(id).ok()?;
        let idx = self.by_id.binary_search_by_key(&id, |&(k, _)| k).ok()?;
        Some(self.by_id[idx].1)
    }

    /// Runs the program with r1 = `ctx` and r2 = `ctx_len`; returns r0.
    ///
    /// The program may read and write `[ctx, ctx + ctx_len)`, access each
    /// region of `extra` as the region allows, and use its stack. `user` is
    /// handed to helpers in [`HelperEnv::user`].
    ///
    /// # Safety
    /// `[ctx, ctx + ctx_len)` must be valid for reads and writes, and each
    /// region of `extra` valid for the accesses it allows, for the whole run.
    /// No other code may access that memory non-atomically while the program
    /// runs, except through the program's own helpers. Helpers must only
    /// grant memory that stays valid for the rest of the run.
    pub unsafe fn run(
        &self,
        ctx: *mut u8,
        ctx_len: usize,
        extra: &[Region],
        user: *mut c_void,
    ) -> Result<u64, VmError> {
        // The stack of all frames; a frame is zeroed the first time it is
        // entered, so programs never read uninitialised host memory.
        let mut stack = MaybeUninit::<[u64; STACK_BYTES / 8]>::uninit();
        let stack_base = stack.as_mut_ptr().cast::<u8>();
        let stack_hi = stack_base as u64 + STACK_BYTES as u64;
        // SAFETY: the entry frame is the top STACK_SIZE bytes of `stack`.
        unsafe { ptr::write_bytes(stack_base.add(STACK_BYTES - STACK_SIZE), 0, STACK_SIZE) };

        let ctx_lo = ctx as u64;
        let run = RunShared {
            entry: self,
            stack_base,
            stack_hi,
            ctx_lo,
            ctx_hi: ctx_lo.saturating_add(ctx_len as u64),
            extra,
            zeroed_frames: Cell::new(1),
            budget: Cell::new(self.instruction_limit.unwrap_or(u64::MAX)),
            depth: Cell::new(0),
            tail_calls: Cell::new(TailCallCounter::new()),
            tail_targets: Cell::new(Vec::new()),
            error: Cell::new(None),
        };
        let mut env = HelperEnv::new(ctx, user, true);
        env.mem = ProgMem {
            ctx_lo: run.ctx_lo,
            ctx_hi: run.ctx_hi,
            stack_lo: stack_hi - STACK_SIZE as u64,
            stack_hi,
            extra: extra.as_ptr(),
            extra_len: extra.len(),
        };
        env.callback = Some(CallbackHook {
            state: (&run as *const RunShared<'_>).cast(),
            call: run_callback,
        });

        // 16 registers so that a 4-bit register field needs no bounds check;
        // validation guarantees only r0..r10 are used.
        let mut regs = [0u64; 16];
        regs[1] = ctx_lo;
        regs[2] = ctx_len as u64;
        regs[FP as usize] = stack_hi;
        run.exec(self, 0, 0, regs, &mut env)
    }
}

/// The state of one run that every frame shares, including the frames of
/// callbacks that helpers run (see [`crate::helpers::callback`]). Shared
/// through `&` (callbacks re-enter it from inside a helper call), hence the
/// cells.
struct RunShared<'a> {
    /// The program the run started with (its instruction limit applies).
    entry: &'a Interpreter,
    /// The block holding every frame's stack, `STACK_BYTES` long, ending
    /// at `stack_hi`; frame `d` is the `d`-th 512 bytes from the top.
    stack_base: *mut u8,
    stack_hi: u64,
    ctx_lo: u64,
    ctx_hi: u64,
    extra: &'a [Region],
    /// Frames below this index have been zeroed.
    zeroed_frames: Cell<usize>,
    /// Instructions left (synchronised around helper calls).
    budget: Cell<u64>,
    /// Frame index of the frame making the current helper call.
    depth: Cell<usize>,
    tail_calls: Cell<TailCallCounter>,
    /// Programs jumped to by tail calls, kept alive until the run ends.
    tail_targets: Cell<Vec<TailTarget>>,
    /// The error a callback stopped the run with.
    error: Cell<Option<VmError>>,
}

impl<'a> RunShared<'a> {
    /// Zeroes frame `depth` if it was never used in this run.
    fn enter_frame(&self, depth: usize) {
        if depth >= self.zeroed_frames.get() {
            // SAFETY: frame `depth` lies inside the stack block, since
            // depth < MAX_CALL_FRAMES (checked by every caller).
            unsafe {
                let offset = STACK_BYTES - (depth + 1) * STACK_SIZE;
                ptr::write_bytes(self.stack_base.add(offset), 0, STACK_SIZE);
            }
            self.zeroed_frames.set(depth + 1);
        }
    }

    /// The program and entry pc of a callback token, if it names a
    /// callback of the entry program or of a tail-call target of this run.
    fn resolve_callback(&self, token: u64) -> Option<(&'a Interpreter, usize)> {
        if let Some(pc) = self.entry.callback_pc(token) {
            return Some((self.entry, pc));
        }
        let targets = self.tail_targets.take();
        let found = targets.iter().find_map(|t| {
            let interp = t.downcast_ref::<Interpreter>()?;
            let pc = interp.callback_pc(token)?;
            Some((interp as *const Interpreter, pc))
        });
        self.tail_targets.set(targets);
        // SAFETY: the Arc owning the interpreter stays in `tail_targets`
        // until the run ends, which bounds 'a.
        found.map(|(interp, pc)| (unsafe { &*interp }, pc))
    }

    /// Calls a helper from frame `depth`: publishes the state a callback
    /// needs, and ends the run if a callback failed.
    #[inline(always)]
    fn call_helper(
        &self,
        helper: HelperFn,
        regs: &[u64; 16],
        env: &mut HelperEnv,
        depth: usize,
        stack_lo: u64,
        budget: &mut u64,
    ) -> Result<u64, VmError> {
        self.budget.set(*budget);
        self.depth.set(depth);
        env.mem.stack_lo = stack_lo;
        // SAFETY: helpers are registered by the embedder, who vouches for
        // them (see `HelperFn`); `env` outlives the call.
        let r0 = unsafe { helper(regs[1], regs[2], regs[3], regs[4], regs[5], env) };
        if env.aborted {
            if let Some(e) = self.error.take() {
                return Err(e);
            }
        }
        *budget = self.budget.get();
        Ok(r0)
    }

    /// Runs `prog` from `pc` in frame `base` (with `regs`, r10 set) until
    /// that frame exits; returns its r0.
    fn exec(
        &self,
        prog: &'a Interpreter,
        pc: usize,
        base: usize,
        regs: [u64; 16],
        env: &mut HelperEnv,
    ) -> Result<u64, VmError> {
        let mut regs = regs;
        let mut pc = pc;
        let mut prog = prog;
        let mut depth = base;
        let mut mem = Bounds {
            ctx_lo: self.ctx_lo,
            ctx_hi: self.ctx_hi,
            stack_lo: self.stack_hi - ((depth + 1) * STACK_SIZE) as u64,
            stack_hi: self.stack_hi,
            extra: self.extra,
        };
        let mut frames = [Frame {
            prog,
            ret: 0,
            saved: [0; 4],
        }; MAX_CALL_FRAMES];
        let mut budget = self.budget.get();

        loop {
            // Without a limit the budget is 2^64: it never runs out.
            if budget == 0 {
                return Err(VmError::InstructionLimit {
                    pc,
                    limit: self.entry.instruction_limit.unwrap_or(u64::MAX),
                });
            }
            budget -= 1;

            let insn = prog.code[pc];
            let at = pc;
            pc += 1;
            let dst = usize::from(insn.dst & 0x0f);
            let src = usize::from(insn.src & 0x0f);
            let off = insn.off as i64 as u64;
            // The immediate as ALU64 and JMP see it (sign-extended), and as
            // ALU32 and JMP32 see it.
            let imm = insn.imm as i64 as u64;
            let imm32 = insn.imm as u32;

            match insn.code {
                // ---- ALU: 32-bit, results zero-extended to 64 ----
                op::ADD32_IMM => regs[dst] = (regs[dst] as u32).wrapping_add(imm32) as u64,
                op::ADD32_REG => {
                    regs[dst] = (regs[dst] as u32).wrapping_add(regs[src] as u32) as u64
                }
                op::SUB32_IMM => regs[dst] = (regs[dst] as u32).wrapping_sub(imm32) as u64,
                op::SUB32_REG => {
                    regs[dst] = (regs[dst] as u32).wrapping_sub(regs[src] as u32) as u64
                }
                op::MUL32_IMM => regs[dst] = (regs[dst] as u32).wrapping_mul(imm32) as u64,
                op::MUL32_REG => {
                    regs[dst] = (regs[dst] as u32).wrapping_mul(regs[src] as u32) as u64
                }
                op::DIV32_IMM => regs[dst] = div32(regs[dst], imm32, insn.off) as u64,
                op::DIV32_REG => regs[dst] = div32(regs[dst], regs[src] as u32, insn.off) as u64,
                op::MOD32_IMM => regs[dst] = mod32(regs[dst], imm32, insn.off) as u64,
                op::MOD32_REG => regs[dst] = mod32(regs[dst], regs[src] as u32, insn.off) as u64,
                op::OR32_IMM => regs[dst] = (regs[dst] as u32 | imm32) as u64,
                op::OR32_REG => regs[dst] = (regs[dst] as u32 | regs[src] as u32) as u64,
                op::AND32_IMM => regs[dst] = (regs[dst] as u32 & imm32) as u64,
                op::AND32_REG => regs[dst] = (regs[dst] as u32 & regs[src] as u32) as u64,
                op::XOR32_IMM => regs[dst] = (regs[dst] as u32 ^ imm32) as u64,
                op::XOR32_REG => regs[dst] = (regs[dst] as u32 ^ regs[src] as u32) as u64,
                // Shift amounts are masked to 5 bits (6 for 64-bit).
                op::LSH32_IMM => regs[dst] = ((regs[dst] as u32) << (imm32 & 31)) as u64,
                op::LSH32_REG => regs[dst] = ((regs[dst] as u32) << (regs[src] & 31)) as u64,
                op::RSH32_IMM => regs[dst] = ((regs[dst] as u32) >> (imm32 & 31)) as u64,
                op::RSH32_REG => regs[dst] = ((regs[dst] as u32) >> (regs[src] & 31)) as u64,
                op::ARSH32_IMM => regs[dst] = ((regs[dst] as i32) >> (imm32 & 31)) as u32 as u64,
                op::ARSH32_REG => {
                    regs[dst] = ((regs[dst] as i32) >> (regs[src] & 31)) as u32 as u64
                }
                op::NEG32 => regs[dst] = (regs[dst] as u32).wrapping_neg() as u64,
                op::MOV32_IMM => regs[dst] = imm32 as u64,
                op::MOV32_REG => regs[dst] = movsx32(regs[src], insn.off) as u64,
                op::LE => regs[dst] = to_le(regs[dst], insn.imm),
                op::BE => regs[dst] = to_be(regs[dst], insn.imm),

                // ---- ALU64 ----
                op::ADD64_IMM => regs[dst] = regs[dst].wrapping_add(imm),
                op::ADD64_REG => regs[dst] = regs[dst].wrapping_add(regs[src]),
                op::SUB64_IMM => regs[dst] = regs[dst].wrapping_sub(imm),
                op::SUB64_REG => regs[dst] = regs[dst].wrapping_sub(regs[src]),
                op::MUL64_IMM => regs[dst] = regs[dst].wrapping_mul(imm),
                op::MUL64_REG => regs[dst] = regs[dst].wrapping_mul(regs[src]),
                op::DIV64_IMM => regs[dst] = div64(regs[dst], imm, insn.off),
                op::DIV64_REG => regs[dst] = div64(regs[dst], regs[src], insn.off),
                op::MOD64_IMM => regs[dst] = mod64(regs[dst], imm, insn.off),
                op::MOD64_REG => regs[dst] = mod64(regs[dst], regs[src], insn.off),
                op::OR64_IMM => regs[dst] |= imm,
                op::OR64_REG => regs[dst] |= regs[src],
                op::AND64_IMM => regs[dst] &= imm,
                op::AND64_REG => regs[dst] &= regs[src],
                op::XOR64_IMM => regs[dst] ^= imm,
                op::XOR64_REG => regs[dst] ^= regs[src],
                op::LSH64_IMM => regs[dst] <<= imm & 63,
                op::LSH64_REG => regs[dst] <<= regs[src] & 63,
                op::RSH64_IMM => regs[dst] >>= imm & 63,
                op::RSH64_REG => regs[dst] >>= regs[src] & 63,
                op::ARSH64_IMM => regs[dst] = ((regs[dst] as i64) >> (imm & 63)) as u64,
                op::ARSH64_REG => regs[dst] = ((regs[dst] as i64) >> (regs[src] & 63)) as u64,
                op::NEG64 => regs[dst] = regs[dst].wrapping_neg(),
                op::MOV64_IMM => regs[dst] = imm,
                op::MOV64_REG => regs[dst] = movsx64(regs[src], insn.off),
                op::BSWAP => regs[dst] = bswap(regs[dst], insn.imm),

                // ---- 64-bit immediate load ----
                LDDW => {
                    // Pseudo sources load the immediate as is (see module docs).
                    regs[dst] = lddw_imm(insn, prog.code[pc]);
                    pc += 1;
                }

                // ---- loads ----
                op::LDXB => {
                    regs[dst] = mem.load::<u8>(env, at, regs[src].wrapping_add(off))? as u64
                }
                op::LDXH => {
                    regs[dst] = mem.load::<u16>(env, at, regs[src].wrapping_add(off))? as u64
                }
                op::LDXW => {
                    regs[dst] = mem.load::<u32>(env, at, regs[src].wrapping_add(off))? as u64
                }
                op::LDXDW => regs[dst] = mem.load::<u64>(env, at, regs[src].wrapping_add(off))?,
                op::LDXSB => {
                    regs[dst] = mem.load::<i8>(env, at, regs[src].wrapping_add(off))? as i64 as u64
                }
                op::LDXSH => {
                    regs[dst] = mem.load::<i16>(env, at, regs[src].wrapping_add(off))? as i64 as u64
                }
                op::LDXSW => {
                    regs[dst] = mem.load::<i32>(env, at, regs[src].wrapping_add(off))? as i64 as u64
                }

                // ---- stores of an immediate ----
                op::STB => mem.store(env, at, regs[dst].wrapping_add(off), imm as u8)?,
                op::STH => mem.store(env, at, regs[dst].wrapping_add(off), imm as u16)?,
                op::STW => mem.store(env, at, regs[dst].wrapping_add(off), imm32)?,
                op::STDW => mem.store(env, at, regs[dst].wrapping_add(off), imm)?,

                // ---- stores of a register ----
                op::STXB => mem.store(env, at, regs[dst].wrapping_add(off), regs[src] as u8)?,
                op::STXH => mem.store(env, at, regs[dst].wrapping_add(off), regs[src] as u16)?,
                op::STXW => mem.store(env, at, regs[dst].wrapping_add(off), regs[src] as u32)?,
                op::STXDW => mem.store(env, at, regs[dst].wrapping_add(off), regs[src])?,

                // ---- atomics ----
                op::ATOMIC32 => {
                    let addr = regs[dst].wrapping_add(off);
                    let old =
                        mem.atomic32(env, at, addr, insn, regs[src] as u32, regs[0] as u32)?;
                    set_fetched(&mut regs, insn, src, old as u64);
                }
                op::ATOMIC64 => {
                    let addr = regs[dst].wrapping_add(off);
                    let old = mem.atomic64(env, at, addr, insn, regs[src], regs[0])?;
                    set_fetched(&mut regs, insn, src, old);
                }

                // ---- jumps ----
                JA => pc = jump(pc, insn.off as i64),
                JA32 => pc = jump(pc, insn.imm as i64),
                op::JEQ_IMM => branch(&mut pc, insn, regs[dst] == imm),
                op::JEQ_REG => branch(&mut pc, insn, regs[dst] == regs[src]),
                op::JGT_IMM => branch(&mut pc, insn, regs[dst] > imm),
                op::JGT_REG => branch(&mut pc, insn, regs[dst] > regs[src]),
                op::JGE_IMM => branch(&mut pc, insn, regs[dst] >= imm),
                op::JGE_REG => branch(&mut pc, insn, regs[dst] >= regs[src]),
                op::JLT_IMM => branch(&mut pc, insn, regs[dst] < imm),
                op::JLT_REG => branch(&mut pc, insn, regs[dst] < regs[src]),
                op::JLE_IMM => branch(&mut pc, insn, regs[dst] <= imm),
                op::JLE_REG => branch(&mut pc, insn, regs[dst] <= regs[src]),
                op::JSET_IMM => branch(&mut pc, insn, regs[dst] & imm != 0),
                op::JSET_REG => branch(&mut pc, insn, regs[dst] & regs[src] != 0),
                op::JNE_IMM => branch(&mut pc, insn, regs[dst] != imm),
                op::JNE_REG => branch(&mut pc, insn, regs[dst] != regs[src]),
                op::JSGT_IMM => branch(&mut pc, insn, (regs[dst] as i64) > imm as i64),
                op::JSGT_REG => branch(&mut pc, insn, (regs[dst] as i64) > regs[src] as i64),
                op::JSGE_IMM => branch(&mut pc, insn, (regs[dst] as i64) >= imm as i64),
                op::JSGE_REG => branch(&mut pc, insn, (regs[dst] as i64) >= regs[src] as i64),
                op::JSLT_IMM => branch(&mut pc, insn, (regs[dst] as i64) < imm as i64),
                op::JSLT_REG => branch(&mut pc, insn, (regs[dst] as i64) < regs[src] as i64),
                op::JSLE_IMM => branch(&mut pc, insn, (regs[dst] as i64) <= imm as i64),
                op::JSLE_REG => branch(&mut pc, insn, (regs[dst] as i64) <= regs[src] as i64),

                // ---- JMP32: compares the low 32 bits ----
                op::JEQ32_IMM => branch(&mut pc, insn, regs[dst] as u32 == imm32),
                op::JEQ32_REG => branch(&mut pc, insn, regs[dst] as u32 == regs[src] as u32),
                op::JGT32_IMM => branch(&mut pc, insn, regs[dst] as u32 > imm32),
                op::JGT32_REG => branch(&mut pc, insn, regs[dst] as u32 > regs[src] as u32),
                op::JGE32_IMM => branch(&mut pc, insn, regs[dst] as u32 >= imm32),
                op::JGE32_REG => branch(&mut pc, insn, regs[dst] as u32 >= regs[src] as u32),
                op::JLT32_IMM => branch(&mut pc, insn, (regs[dst] as u32) < imm32),
                op::JLT32_REG => branch(&mut pc, insn, (regs[dst] as u32) < regs[src] as u32),
                op::JLE32_IMM => branch(&mut pc, insn, regs[dst] as u32 <= imm32),
                op::JLE32_REG => branch(&mut pc, insn, regs[dst] as u32 <= regs[src] as u32),
                op::JSET32_IMM => branch(&mut pc, insn, regs[dst] as u32 & imm32 != 0),
                op::JSET32_REG => branch(&mut pc, insn, regs[dst] as u32 & regs[src] as u32 != 0),
                op::JNE32_IMM => branch(&mut pc, insn, regs[dst] as u32 != imm32),
                op::JNE32_REG => branch(&mut pc, insn, regs[dst] as u32 != regs[src] as u32),
                op::JSGT32_IMM => branch(&mut pc, insn, regs[dst] as i32 > insn.imm),
                op::JSGT32_REG => branch(&mut pc, insn, regs[dst] as i32 > regs[src] as i32),
                op::JSGE32_IMM => branch(&mut pc, insn, regs[dst] as i32 >= insn.imm),
                op::JSGE32_REG => branch(&mut pc, insn, regs[dst] as i32 >= regs[src] as i32),
                op::JSLT32_IMM => branch(&mut pc, insn, (regs[dst] as i32) < insn.imm),
                op::JSLT32_REG => branch(&mut pc, insn, (regs[dst] as i32) < regs[src] as i32),
                op::JSLE32_IMM => branch(&mut pc, insn, regs[dst] as i32 <= insn.imm),
                op::JSLE32_REG => branch(&mut pc, insn, regs[dst] as i32 <= regs[src] as i32),

                // ---- calls and exit ----
                CALL if insn.src == BPF_CALL_HELPER => {
                    let helper = prog.helpers[insn.imm as usize];
                    regs[0] =
                        self.call_helper(helper, &regs, env, depth, mem.stack_lo, &mut budget)?;
                }
                // bpf_tail_call(ctx, prog_array, index), built in like the
                // kernel's: `call 12`, or `callx` with 12 in the register.
                CALL | CALLX
                    if insn.src == TAIL_CALL_SRC
                        || (insn.code == CALLX && regs[dst] == u64::from(BPF_FUNC_TAIL_CALL)) =>
                {
                    // A failed tail call falls through with registers intact.
                    let mut counter = self.tail_calls.take();
                    let found = tail_call_target(&mut counter, &regs);
                    self.tail_calls.set(counter);
                    if let Some((target, next)) = found {
                        // The target starts on a fresh stack in this frame.
                        // SAFETY: frame `depth` lies inside the stack block.
                        unsafe {
                            let offset = STACK_BYTES - (depth + 1) * STACK_SIZE;
                            ptr::write_bytes(self.stack_base.add(offset), 0, STACK_SIZE);
                        }
                        let mut targets = self.tail_targets.take();
                        targets.push(target);
                        self.tail_targets.set(targets);
                        // SAFETY: the Arc that owns `*next` stays in
                        // `tail_targets` until the run ends; its pointee
                        // does not move when the Vec grows.
                        prog = unsafe { &*next };
                        pc = 0;
                    }
                }
                CALLX => {
                    let id = regs[dst];
                    let helper = prog
                        .helper_by_id(id)
                        .ok_or(VmError::UnknownHelper { pc: at, id })?;
                    regs[0] =
                        self.call_helper(helper, &regs, env, depth, mem.stack_lo, &mut budget)?;
                }
                CALL if insn.src == POISON_SRC => {
                    return Err(VmError::PoisonedCall {
                        pc: at,
                        id: insn.imm as u32,
                    });
                }
                CALL if insn.src == BPF_PSEUDO_CALL => {
                    if depth + 1 >= MAX_CALL_FRAMES {
                        return Err(VmError::CallDepthExceeded {
                            pc: at,
                            max: MAX_CALL_FRAMES,
                        });
                    }
                    frames[depth] = Frame {
                        prog,
                        ret: pc,
                        saved: [regs[6], regs[7], regs[8], regs[9]],
                    };
                    depth += 1;
                    regs[FP as usize] -= STACK_SIZE as u64;
                    mem.stack_lo -= STACK_SIZE as u64;
                    self.enter_frame(depth);
                    pc = jump(pc, insn.imm as i64);
                }
                EXIT => {
                    if depth == base {
                        self.budget.set(budget);
                        return Ok(regs[0]);
                    }
                    depth -= 1;
                    let frame = frames[depth];
                    regs[6..10].copy_from_slice(&frame.saved);
                    regs[FP as usize] += STACK_SIZE as u64;
                    mem.stack_lo += STACK_SIZE as u64;
                    pc = frame.ret;
                    prog = frame.prog;
                }

                // Validation refuses everything else; stay defensive anyway.
                code => return Err(ProgramError::UnknownOpcode { pc: at, code }.into()),
            }
        }
    }
}

/// The callback hook of the interpreter (see [`crate::helpers::callback`]):
/// runs the callback in a fresh frame below the calling frame.
///
/// # Safety
/// `state` is the `RunShared` of the run that `env` belongs to, and the
/// call comes from a helper that run is calling.
unsafe fn run_callback(
    state: *const c_void,
    env: *mut HelperEnv,
    token: u64,
    args: [u64; 5],
) -> Result<u64, CallbackError> {
    // SAFETY: the hook was installed by `Interpreter::run` with its live
    // `RunShared`, which is only ever shared (`&`).
    let run = unsafe { &*state.cast::<RunShared<'_>>() };
    // SAFETY: `env` is the run's environment, which the helper lent us.
    let env = unsafe { &mut *env };
    let Some((prog, pc)) = run.resolve_callback(token) else {
        return Err(CallbackError::BadCallback { token });
    };
    let caller = run.depth.get();
    let depth = caller + 1;
    if depth >= MAX_CALL_FRAMES {
        run.error.set(Some(VmError::CallDepthExceeded {
            pc,
            max: MAX_CALL_FRAMES,
        }));
        env.aborted = true;
        return Err(CallbackError::Aborted);
    }
    run.enter_frame(depth);
    let mut regs = [0u64; 16];
    regs[1..6].copy_from_slice(&args);
    regs[FP as usize] = run.stack_hi - (depth * STACK_SIZE) as u64;
    let saved_stack_lo = env.mem.stack_lo;
    let result = run.exec(prog, pc, depth, regs, env);
    env.mem.stack_lo = saved_stack_lo;
    run.depth.set(caller);
    match result {
        Ok(r0) => Ok(r0),
        Err(e) => {
            run.error.set(Some(e));
            env.aborted = true;
            Err(CallbackError::Aborted)
        }
    }
}

/// Decides a tail call with r2 = the program array and r3 = the index: the
/// program to continue with (its owning `Arc` and the interpreter inside
/// it), or `None` when the call fails (the kernel's rules, see
/// [`crate::tailcall`]). An r2 that is not a live array fails, so a hostile
/// program cannot make the interpreter dereference it.
fn tail_call_target(
    counter: &mut TailCallCounter,
    regs: &[u64; 16],
) -> Option<(TailTarget, *const Interpreter)> {
    let array = ProgArray::live(regs[2])?;
    let target = counter.begin(array, regs[3])?;
    // A slot holding another engine's program counts as empty.
    let interp: *const Interpreter = target.downcast_ref::<Interpreter>()?;
    Some((target, interp))
}

/// What a bpf-to-bpf call saves: where to return, and the callee-saved
/// registers r6-r9. r10 is recomputed, since every frame has the same size.
#[derive(Clone, Copy)]
struct Frame<'a> {
    /// The program to return to (a tail call may have replaced it).
    prog: &'a Interpreter,
    ret: usize,
    saved: [u64; 4],
}

/// The memory a run may access, and the accessors that check it.
///
/// Invariant (set up by [`Interpreter::run`], whose caller vouches for the
/// context and the extra regions): every range that passes
/// [`Bounds::allows`] is valid host memory for that access until the run
/// ends.
struct Bounds<'a> {
    ctx_lo: u64,
    ctx_hi: u64,
    /// Bottom of the deepest live frame: moves down on call, up on exit.
    stack_lo: u64,
    stack_hi: u64,
    extra: &'a [Region],
}

impl Bounds<'_> {
    #[inline(always)]
    fn allows(&self, env: &HelperEnv, addr: u64, len: u64, access: Access) -> bool {
        // Cheapest and most frequent first: the stack, then the context.
        within(addr, len, self.stack_lo, self.stack_hi)
            || within(addr, len, self.ctx_lo, self.ctx_hi)
            || self.extra.iter().any(|r| r.contains(addr, len, access))
            || env.grants().iter().any(|r| r.contains(addr, len, access))
    }

    #[inline(always)]
    fn check(
        &self,
        env: &HelperEnv,
        pc: usize,
        addr: u64,
        len: u64,
        access: Access,
    ) -> Result<(), VmError> {
        if self.allows(env, addr, len, access) {
            Ok(())
        } else {
            Err(violation(pc, addr, len, access))
        }
    }

    #[inline(always)]
    fn load<T: Copy>(&self, env: &HelperEnv, pc: usize, addr: u64) -> Result<T, VmError> {
        self.check(env, pc, addr, size_of::<T>() as u64, Access::Read)?;
        // SAFETY: the range was just checked (see the invariant of `Bounds`);
        // the read is unaligned-safe.
        Ok(unsafe { ptr::read_unaligned(addr as *const T) })
    }

    #[inline(always)]
    fn store<T: Copy>(
        &self,
        env: &HelperEnv,
        pc: usize,
        addr: u64,
        value: T,
    ) -> Result<(), VmError> {
        self.check(env, pc, addr, size_of::<T>() as u64, Access::Write)?;
        // SAFETY: the range was just checked (see the invariant of `Bounds`);
        // the write is unaligned-safe.
        unsafe { ptr::write_unaligned(addr as *mut T, value) };
        Ok(())
    }

    /// Checks an atomic access: read-write, and naturally aligned (host
    /// atomics require it, and so does the kernel).
    fn check_atomic(&self, env: &HelperEnv, pc: usize, addr: u64, len: u64) -> Result<(), VmError> {
        self.check(env, pc, addr, len, Access::ReadWrite)?;
        // len is 4 or 8, a power of two.
        if addr & (len - 1) != 0 {
            return Err(VmError::MisalignedAtomic { pc, addr, len });
        }
        Ok(())
    }

    /// A 32-bit atomic; returns the old value.
    fn atomic32(
        &self,
        env: &HelperEnv,
        pc: usize,
        addr: u64,
        insn: Insn,
        value: u32,
        expected: u32,
    ) -> Result<u32, VmError> {
        self.check_atomic(env, pc, addr, 4)?;
        // SAFETY: checked, aligned, and valid for the run (invariant of
        // `Bounds`); other threads touch shared memory only atomically.
        let cell = unsafe { AtomicU32::from_ptr(addr as *mut u32) };
        apply_atomic!(cell, pc, insn, value, expected)
    }

    /// A 64-bit atomic; returns the old value.
    fn atomic64(
        &self,
        env: &HelperEnv,
        pc: usize,
        addr: u64,
        insn: Insn,
        value: u64,
        expected: u64,
    ) -> Result<u64, VmError> {
        self.check_atomic(env, pc, addr, 8)?;
        // SAFETY: as in `atomic32`.
        let cell = unsafe { AtomicU64::from_ptr(addr as *mut u64) };
        apply_atomic!(cell, pc, insn, value, expected)
    }
}

/// True when `[addr, addr + len)` lies inside `[lo, hi)`, without overflow.
#[inline(always)]
fn within(addr: u64, len: u64, lo: u64, hi: u64) -> bool {
    addr >= lo && addr <= hi && len <= hi - addr
}

#[cold]
fn violation(pc: usize, addr: u64, len: u64, access: Access) -> VmError {
    VmError::MemoryViolation {
        pc,
        addr,
        len,
        access,
    }
}

#[cold]
fn bad_atomic(pc: usize, insn: Insn) -> VmError {
    ProgramError::InvalidField {
        pc,
        code: insn.code,
        what: "atomic operation",
        value: insn.imm as i64,
    }
    .into()
}

/// Where an atomic puts the old value: r0 for cmpxchg, the source register
/// for the other fetching forms, nowhere otherwise.
#[inline(always)]
fn set_fetched(regs: &mut [u64; 16], insn: Insn, src: usize, old: u64) {
    if insn.imm == BPF_CMPXCHG {
        regs[0] = old;
    } else if insn.imm & BPF_FETCH != 0 {
        regs[src] = old;
    }
}

/// The pc `delta` slots after `next` (the slot after the jump).
#[inline(always)]
fn jump(next: usize, delta: i64) -> usize {
    // Validation guarantees the target is inside the program.
    (next as i64 + delta) as usize
}

#[inline(always)]
fn branch(pc: &mut usize, insn: Insn, taken: bool) {
    if taken {
        *pc = jump(*pc, insn.off as i64);
    }
}

/// 32-bit division; `off == 1` is signed. By zero gives 0, and
/// i32::MIN / -1 gives i32::MIN (wrapping) instead of trapping.
#[inline(always)]
fn div32(dst: u64, divisor: u32, off: i16) -> u32 {
    let dividend = dst as u32;
    match (divisor, off) {
        (0, _) => 0,
        (_, 1) => (dividend as i32).wrapping_div(divisor as i32) as u32,
        _ => dividend / divisor,
    }
}

/// 32-bit modulo; `off == 1` is signed (the result takes the dividend's
/// sign). By zero leaves the (32-bit) dividend; i32::MIN % -1 gives 0.
#[inline(always)]
fn mod32(dst: u64, divisor: u32, off: i16) -> u32 {
    let dividend = dst as u32;
    match (divisor, off) {
        (0, _) => dividend,
        (_, 1) => (dividend as i32).wrapping_rem(divisor as i32) as u32,
        _ => dividend % divisor,
    }
}

#[inline(always)]
fn div64(dividend: u64, divisor: u64, off: i16) -> u64 {
    match (divisor, off) {
        (0, _) => 0,
        (_, 1) => (dividend as i64).wrapping_div(divisor as i64) as u64,
        _ => dividend / divisor,
    }
}

#[inline(always)]
fn mod64(dividend: u64, divisor: u64, off: i16) -> u64 {
    match (divisor, off) {
        (0, _) => dividend,
        (_, 1) => (dividend as i64).wrapping_rem(divisor as i64) as u64,
        _ => dividend % divisor,
    }
}

/// `mov32`/`movsx` into a 32-bit register: off 0 copies, 8 and 16
/// sign-extend that many low bits to 32.
#[inline(always)]
fn movsx32(value: u64, off: i16) -> u32 {
    match off {
        8 => value as i8 as i32 as u32,
        16 => value as i16 as i32 as u32,
        _ => value as u32,
    }
}

/// `mov`/`movsx` into a 64-bit register: off 0 copies, 8, 16 and 32
/// sign-extend that many low bits to 64.
#[inline(always)]
fn movsx64(value: u64, off: i16) -> u64 {
    match off {
        8 => value as i8 as i64 as u64,
        16 => value as i16 as i64 as u64,
        32 => value as i32 as i64 as u64,
        _ => value,
    }
}

/// `le16/32/64`: to little endian, truncating to the width (a no-op apart
/// from the truncation on little-endian hosts).
#[inline(always)]
fn to_le(value: u64, width: i32) -> u64 {
    match width {
        16 => (value as u16).to_le() as u64,
        32 => (value as u32).to_le() as u64,
        _ => value.to_le(),
    }
}

/// `be16/32/64`: to big endian, truncating to the width.
#[inline(always)]
fn to_be(value: u64, width: i32) -> u64 {
    match width {
        16 => (value as u16).to_be() as u64,
        32 => (value as u32).to_be() as u64,
        _ => value.to_be(),
    }
}

/// `bswap16/32/64` (ISA v4): an unconditional byte swap, truncating.
#[inline(always)]
fn bswap(value: u64, width: i32) -> u64 {
    match width {
        16 => (value as u16).swap_bytes() as u64,
        32 => (value as u32).swap_bytes() as u64,
        _ => value.swap_bytes(),
    }
}

/// Whole opcode bytes, named for the dispatch `match`.
mod op {
    use crate::isa::*;

    pub const ADD32_IMM: u8 = BPF_ALU | BPF_ADD | BPF_K;
    pub const ADD32_REG: u8 = BPF_ALU | BPF_ADD | BPF_X;
    pub const SUB32_IMM: u8 = BPF_ALU | BPF_SUB | BPF_K;
    pub const SUB32_REG: u8 = BPF_ALU | BPF_SUB | BPF_X;
    pub const MUL32_IMM: u8 = BPF_ALU | BPF_MUL | BPF_K;
    pub const MUL32_REG: u8 = BPF_ALU | BPF_MUL | BPF_X;
    pub const DIV32_IMM: u8 = BPF_ALU | BPF_DIV | BPF_K;
    pub const DIV32_REG: u8 = BPF_ALU | BPF_DIV | BPF_X;
    pub const OR32_IMM: u8 = BPF_ALU | BPF_OR | BPF_K;
    pub const OR32_REG: u8 = BPF_ALU | BPF_OR | BPF_X;
    pub const AND32_IMM: u8 = BPF_ALU | BPF_AND | BPF_K;
    pub const AND32_REG: u8 = BPF_ALU | BPF_AND | BPF_X;
    pub const LSH32_IMM: u8 = BPF_ALU | BPF_LSH | BPF_K;
    pub const LSH32_REG: u8 = BPF_ALU | BPF_LSH | BPF_X;
    pub const RSH32_IMM: u8 = BPF_ALU | BPF_RSH | BPF_K;
    pub const RSH32_REG: u8 = BPF_ALU | BPF_RSH | BPF_X;
    pub const NEG32: u8 = BPF_ALU | BPF_NEG;
    pub const MOD32_IMM: u8 = BPF_ALU | BPF_MOD | BPF_K;
    pub const MOD32_REG: u8 = BPF_ALU | BPF_MOD | BPF_X;
    pub const XOR32_IMM: u8 = BPF_ALU | BPF_XOR | BPF_K;
    pub const XOR32_REG: u8 = BPF_ALU | BPF_XOR | BPF_X;
    pub const MOV32_IMM: u8 = BPF_ALU | BPF_MOV | BPF_K;
    pub const MOV32_REG: u8 = BPF_ALU | BPF_MOV | BPF_X;
    pub const ARSH32_IMM: u8 = BPF_ALU | BPF_ARSH | BPF_K;
    pub const ARSH32_REG: u8 = BPF_ALU | BPF_ARSH | BPF_X;
    pub const LE: u8 = BPF_ALU | BPF_END | BPF_TO_LE;
    pub const BE: u8 = BPF_ALU | BPF_END | BPF_TO_BE;

    pub const ADD64_IMM: u8 = BPF_ALU64 | BPF_ADD | BPF_K;
    pub const ADD64_REG: u8 = BPF_ALU64 | BPF_ADD | BPF_X;
    pub const SUB64_IMM: u8 = BPF_ALU64 | BPF_SUB | BPF_K;
    pub const SUB64_REG: u8 = BPF_ALU64 | BPF_SUB | BPF_X;
    pub const MUL64_IMM: u8 = BPF_ALU64 | BPF_MUL | BPF_K;
    pub const MUL64_REG: u8 = BPF_ALU64 | BPF_MUL | BPF_X;
    pub const DIV64_IMM: u8 = BPF_ALU64 | BPF_DIV | BPF_K;
    pub const DIV64_REG: u8 = BPF_ALU64 | BPF_DIV | BPF_X;
    pub const OR64_IMM: u8 = BPF_ALU64 | BPF_OR | BPF_K;
    pub const OR64_REG: u8 = BPF_ALU64 | BPF_OR | BPF_X;
    pub const AND64_IMM: u8 = BPF_ALU64 | BPF_AND | BPF_K;
    pub const AND64_REG: u8 = BPF_ALU64 | BPF_AND | BPF_X;
    pub const LSH64_IMM: u8 = BPF_ALU64 | BPF_LSH | BPF_K;
    pub const LSH64_REG: u8 = BPF_ALU64 | BPF_LSH | BPF_X;
    pub const RSH64_IMM: u8 = BPF_ALU64 | BPF_RSH | BPF_K;
    pub const RSH64_REG: u8 = BPF_ALU64 | BPF_RSH | BPF_X;
    pub const NEG64: u8 = BPF_ALU64 | BPF_NEG;
    pub const MOD64_IMM: u8 = BPF_ALU64 | BPF_MOD | BPF_K;
    pub const MOD64_REG: u8 = BPF_ALU64 | BPF_MOD | BPF_X;
    pub const XOR64_IMM: u8 = BPF_ALU64 | BPF_XOR | BPF_K;
    pub const XOR64_REG: u8 = BPF_ALU64 | BPF_XOR | BPF_X;
    pub const MOV64_IMM: u8 = BPF_ALU64 | BPF_MOV | BPF_K;
    pub const MOV64_REG: u8 = BPF_ALU64 | BPF_MOV | BPF_X;
    pub const ARSH64_IMM: u8 = BPF_ALU64 | BPF_ARSH | BPF_K;
    pub const ARSH64_REG: u8 = BPF_ALU64 | BPF_ARSH | BPF_X;
    pub const BSWAP: u8 = BPF_ALU64 | BPF_END;

    pub const LDXB: u8 = BPF_LDX | BPF_MEM | BPF_B;
    pub const LDXH: u8 = BPF_LDX | BPF_MEM | BPF_H;
    pub const LDXW: u8 = BPF_LDX | BPF_MEM | BPF_W;
    pub const LDXDW: u8 = BPF_LDX | BPF_MEM | BPF_DW;
    pub const LDXSB: u8 = BPF_LDX | BPF_MEMSX | BPF_B;
    pub const LDXSH: u8 = BPF_LDX | BPF_MEMSX | BPF_H;
    pub const LDXSW: u8 = BPF_LDX | BPF_MEMSX | BPF_W;
    pub const STB: u8 = BPF_ST | BPF_MEM | BPF_B;
    pub const STH: u8 = BPF_ST | BPF_MEM | BPF_H;
    pub const STW: u8 = BPF_ST | BPF_MEM | BPF_W;
    pub const STDW: u8 = BPF_ST | BPF_MEM | BPF_DW;
    pub const STXB: u8 = BPF_STX | BPF_MEM | BPF_B;
    pub const STXH: u8 = BPF_STX | BPF_MEM | BPF_H;
    pub const STXW: u8 = BPF_STX | BPF_MEM | BPF_W;
    pub const STXDW: u8 = BPF_STX | BPF_MEM | BPF_DW;
    pub const ATOMIC32: u8 = BPF_STX | BPF_ATOMIC | BPF_W;
    pub const ATOMIC64: u8 = BPF_STX | BPF_ATOMIC | BPF_DW;

    pub const JEQ_IMM: u8 = BPF_JMP | BPF_JEQ | BPF_K;
    pub const JEQ_REG: u8 = BPF_JMP | BPF_JEQ | BPF_X;
    pub const JGT_IMM: u8 = BPF_JMP | BPF_JGT | BPF_K;
    pub const JGT_REG: u8 = BPF_JMP | BPF_JGT | BPF_X;
    pub const JGE_IMM: u8 = BPF_JMP | BPF_JGE | BPF_K;
    pub const JGE_REG: u8 = BPF_JMP | BPF_JGE | BPF_X;
    pub const JSET_IMM: u8 = BPF_JMP | BPF_JSET | BPF_K;
    pub const JSET_REG: u8 = BPF_JMP | BPF_JSET | BPF_X;
    pub const JNE_IMM: u8 = BPF_JMP | BPF_JNE | BPF_K;
    pub const JNE_REG: u8 = BPF_JMP | BPF_JNE | BPF_X;
    pub const JSGT_IMM: u8 = BPF_JMP | BPF_JSGT | BPF_K;
    pub const JSGT_REG: u8 = BPF_JMP | BPF_JSGT | BPF_X;
    pub const JSGE_IMM: u8 = BPF_JMP | BPF_JSGE | BPF_K;
    pub const JSGE_REG: u8 = BPF_JMP | BPF_JSGE | BPF_X;
    pub const JLT_IMM: u8 = BPF_JMP | BPF_JLT | BPF_K;
    pub const JLT_REG: u8 = BPF_JMP | BPF_JLT | BPF_X;
    pub const JLE_IMM: u8 = BPF_JMP | BPF_JLE | BPF_K;
    pub const JLE_REG: u8 = BPF_JMP | BPF_JLE | BPF_X;
    pub const JSLT_IMM: u8 = BPF_JMP | BPF_JSLT | BPF_K;
    pub const JSLT_REG: u8 = BPF_JMP | BPF_JSLT | BPF_X;
    pub const JSLE_IMM: u8 = BPF_JMP | BPF_JSLE | BPF_K;
    pub const JSLE_REG: u8 = BPF_JMP | BPF_JSLE | BPF_X;

    pub const JEQ32_IMM: u8 = BPF_JMP32 | BPF_JEQ | BPF_K;
    pub const JEQ32_REG: u8 = BPF_JMP32 | BPF_JEQ | BPF_X;
    pub const JGT32_IMM: u8 = BPF_JMP32 | BPF_JGT | BPF_K;
    pub const JGT32_REG: u8 = BPF_JMP32 | BPF_JGT | BPF_X;
    pub const JGE32_IMM: u8 = BPF_JMP32 | BPF_JGE | BPF_K;
    pub const JGE32_REG: u8 = BPF_JMP32 | BPF_JGE | BPF_X;
    pub const JSET32_IMM: u8 = BPF_JMP32 | BPF_JSET | BPF_K;
    pub const JSET32_REG: u8 = BPF_JMP32 | BPF_JSET | BPF_X;
    pub const JNE32_IMM: u8 = BPF_JMP32 | BPF_JNE | BPF_K;
    pub const JNE32_REG: u8 = BPF_JMP32 | BPF_JNE | BPF_X;
    pub const JSGT32_IMM: u8 = BPF_JMP32 | BPF_JSGT | BPF_K;
    pub const JSGT32_REG: u8 = BPF_JMP32 | BPF_JSGT | BPF_X;
    pub const JSGE32_IMM: u8 = BPF_JMP32 | BPF_JSGE | BPF_K;
    pub const JSGE32_REG: u8 = BPF_JMP32 | BPF_JSGE | BPF_X;
    pub const JLT32_IMM: u8 = BPF_JMP32 | BPF_JLT | BPF_K;
    pub const JLT32_REG: u8 = BPF_JMP32 | BPF_JLT | BPF_X;
    pub const JLE32_IMM: u8 = BPF_JMP32 | BPF_JLE | BPF_K;
    pub const JLE32_REG: u8 = BPF_JMP32 | BPF_JLE | BPF_X;
    pub const JSLT32_IMM: u8 = BPF_JMP32 | BPF_JSLT | BPF_K;
    pub const JSLT32_REG: u8 = BPF_JMP32 | BPF_JSLT | BPF_X;
    pub const JSLE32_IMM: u8 = BPF_JMP32 | BPF_JSLE | BPF_K;
    pub const JSLE32_REG: u8 = BPF_JMP32 | BPF_JSLE | BPF_X;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::helpers::HelperRegistry;

    const EXIT_INSN: Insn = Insn::new(EXIT, 0, 0, 0, 0);

    fn mov(dst: u8, imm: i32) -> Insn {
        Insn::new(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, imm)
    }
    fn mov_reg(dst: u8, src: u8) -> Insn {
        Insn::new(BPF_ALU64 | BPF_MOV | BPF_X, dst, src, 0, 0)
    }
    fn add(dst: u8, imm: i32) -> Insn {
        Insn::new(BPF_ALU64 | BPF_ADD | BPF_K, dst, 0, 0, imm)
    }
    fn ldxdw(dst: u8, src: u8, off: i16) -> Insn {
        Insn::new(op::LDXDW, dst, src, off, 0)
    }
    fn stdw(dst: u8, off: i16, imm: i32) -> Insn {
        Insn::new(op::STDW, dst, 0, off, imm)
    }
    fn atomic(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn::new(code, dst, src, off, imm)
    }

    fn run_with_helpers(
        insns: Vec<Insn>,
        helpers: &HelperRegistry,
        mem: &mut [u8],
    ) -> Result<u64, VmError> {
        let program = Program::new(insns)?;
        let interp = Interpreter::new(&program, helpers, None)?;
        // SAFETY: `mem` is exclusively borrowed for the run.
        unsafe { interp.run(mem.as_mut_ptr(), mem.len(), &[], ptr::null_mut()) }
    }

    fn run(insns: Vec<Insn>) -> Result<u64, VmError> {
        run_with_helpers(insns, &HelperRegistry::new(), &mut [])
    }

    #[test]
    fn callee_may_use_a_pointer_into_its_callers_stack() {
        // main: *(u64 *)(r10-8) = 42; r1 = r10 - 8; call f; exit
        // f:    r0 = *(u64 *)(r1); *(u64 *)(r1) = 7; r0 += *(u64 *)(r10-8) (own frame, 0); exit
        let prog = vec![
            stdw(10, -8, 42),
            mov_reg(1, 10),
            add(1, -8),
            Insn::new(CALL, 0, BPF_PSEUDO_CALL, 0, 1),
            EXIT_INSN,
            ldxdw(0, 1, 0),
            stdw(1, 0, 7),
            ldxdw(2, 10, -8),
            Insn::new(op::ADD64_REG, 0, 2, 0, 0),
            EXIT_INSN,
        ];
        assert_eq!(run(prog), Ok(42));
    }

    #[test]
    fn calls_preserve_r6_to_r9_and_r10() {
        // main: r6..r9 = 6..9; call f; r0 = r6+r7+r8+r9 + (r10 == saved r10 ? 0 : 1000); exit
        let prog = vec![
            mov(6, 6),
            mov(7, 7),
            mov(8, 8),
            mov(9, 9),
            mov_reg(1, 10),
            Insn::new(CALL, 0, BPF_PSEUDO_CALL, 0, 9),
            mov_reg(0, 6),
            Insn::new(op::ADD64_REG, 0, 7, 0, 0),
            Insn::new(op::ADD64_REG, 0, 8, 0, 0),
            Insn::new(op::ADD64_REG, 0, 9, 0, 0),
            Insn::new(op::JEQ_REG, 1, 10, 1, 0),
            add(0, 1000),
            EXIT_INSN,
            // Padding so that the call target (pc 15) is easy to see.
            Insn::new(JA, 0, 0, 0, 0),
            EXIT_INSN,
            // f: clobber r6-r9; also check r10 moved down by one frame.
            mov(6, 0),
            mov(7, 0),
            mov(8, 0),
            mov(9, 0),
            EXIT_INSN,
        ];
        // The padding belongs to main (a second exit); f starts at 15.
        let program = Program::new(prog).unwrap();
        assert_eq!(program.subprograms(), &[0, 15]);
        let interp = Interpreter::new(&program, &HelperRegistry::new(), None).unwrap();
        // SAFETY: no context.
        let r0 = unsafe { interp.run(ptr::null_mut(), 0, &[], ptr::null_mut()) };
        assert_eq!(r0, Ok(30));
    }

    static GRANTED: [u8; 16] = [0x11; 16];

    unsafe extern "C" fn lookup(
        _: u64,
        _: u64,
        _: u64,
        _: u64,
        _: u64,
        env: *mut HelperEnv,
    ) -> u64 {
        let addr = GRANTED.as_ptr() as u64;
        // SAFETY: the interpreter passes a valid, exclusive env pointer.
        unsafe { (*env).grant(addr, GRANTED.len() as u64, Access::Read) };
        addr
    }

    unsafe extern "C" fn leak(_: u64, _: u64, _: u64, _: u64, _: u64, _: *mut HelperEnv) -> u64 {
        GRANTED.as_ptr() as u64
    }

    #[test]
    fn helpers_grant_memory_for_the_rest_of_the_run() {
        let mut helpers = HelperRegistry::new();
        helpers.register(1, "lookup", lookup);
        helpers.register(2, "leak", leak);
        // r0 = helper(); r0 = *(u64 *)(r0 + 8); exit
        let prog = |id| vec![Insn::new(CALL, 0, 0, 0, id), ldxdw(0, 0, 8), EXIT_INSN];
        assert_eq!(
            run_with_helpers(prog(1), &helpers, &mut []),
            Ok(0x1111_1111_1111_1111)
        );
        // Without the grant the same pointer is refused.
        let err = run_with_helpers(prog(2), &helpers, &mut []).unwrap_err();
        assert!(
            matches!(err, VmError::MemoryViolation { pc: 1, .. }),
            "{err:?}"
        );
        // A read-only grant does not allow writes.
        let write = vec![Insn::new(CALL, 0, 0, 0, 1), stdw(0, 0, 1), EXIT_INSN];
        let err = run_with_helpers(write, &helpers, &mut []).unwrap_err();
        assert!(
            matches!(
                err,
                VmError::MemoryViolation {
                    access: Access::Write,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn atomics_on_the_context() {
        let a64 = op::ATOMIC64;
        let a32 = op::ATOMIC32;
        let mut mem = [0u8; 16];
        mem[..8].copy_from_slice(&10u64.to_le_bytes());
        mem[8..12].copy_from_slice(&0xf0u32.to_le_bytes());
        let prog = vec![
            mov(2, 5),
            atomic(a64, 1, 2, 0, BPF_ATOMIC_ADD | BPF_FETCH), // [0] = 15, r2 = 10
            mov(3, 0x0f),
            atomic(a32, 1, 3, 8, BPF_ATOMIC_OR), // [8] = 0xff, r3 unchanged
            mov(4, 99),
            atomic(a64, 1, 4, 0, BPF_XCHG), // [0] = 99, r4 = 15
            mov(0, 99),
            mov(5, 1),
            atomic(a64, 1, 5, 0, BPF_CMPXCHG), // equal: [0] = 1, r0 = 99
            mov_reg(6, 0),
            mov(0, 7),
            atomic(a32, 1, 5, 8, BPF_CMPXCHG), // differs: r0 = 0xff
            // r0 = r0 + r2 + r3 + r4 + r6 = 0xff + 10 + 0x0f + 15 + 99
            Insn::new(op::ADD64_REG, 0, 2, 0, 0),
            Insn::new(op::ADD64_REG, 0, 3, 0, 0),
            Insn::new(op::ADD64_REG, 0, 4, 0, 0),
            Insn::new(op::ADD64_REG, 0, 6, 0, 0),
            EXIT_INSN,
        ];
        let r0 = run_with_helpers(prog, &HelperRegistry::new(), &mut mem);
        assert_eq!(r0, Ok(0xff + 10 + 0x0f + 15 + 99));
        assert_eq!(u64::from_le_bytes(mem[..8].try_into().unwrap()), 1);
        assert_eq!(u32::from_le_bytes(mem[8..12].try_into().unwrap()), 0xff);
    }

    #[test]
    fn fetch_of_a_32_bit_atomic_is_zero_extended() {
        // r2 = -1 (all ones); lock fetch and32 [r10-8], r2 => r2 = old (0).
        let prog = vec![
            stdw(10, -8, -1),
            mov(2, -1),
            atomic(op::ATOMIC32, 10, 2, -8, BPF_ATOMIC_AND | BPF_FETCH),
            mov_reg(0, 2),
            EXIT_INSN,
        ];
        assert_eq!(run(prog), Ok(0xffff_ffff));
    }

    #[test]
    fn instruction_limit_counts_every_instruction() {
        let prog = Program::new(vec![mov(0, 1), add(0, 1), EXIT_INSN]).unwrap();
        let helpers = HelperRegistry::new();
        let run_limited = |limit| {
            let interp = Interpreter::new(&prog, &helpers, Some(limit)).unwrap();
            // SAFETY: no context.
            unsafe { interp.run(ptr::null_mut(), 0, &[], ptr::null_mut()) }
        };
        assert_eq!(run_limited(3), Ok(2));
        assert_eq!(
            run_limited(2),
            Err(VmError::InstructionLimit { pc: 2, limit: 2 })
        );
    }

    #[test]
    fn lddw_with_a_pseudo_source_loads_the_immediate() {
        let prog = vec![
            Insn::new(LDDW, 0, BPF_PSEUDO_MAP_VALUE, 0, 0x1234),
            Insn::new(0, 0, 0, 0, 0x5678),
            EXIT_INSN,
        ];
        assert_eq!(run(prog), Ok(0x5678_0000_1234));
    }

    #[test]
    fn byte_swaps_and_sign_extension() {
        let v = 0x1122_3344_5566_7788u64;
        assert_eq!(to_le(v, 16), 0x7788);
        assert_eq!(to_le(v, 32), 0x5566_7788);
        assert_eq!(to_be(v, 16), 0x8877);
        assert_eq!(to_be(v, 32), 0x8877_6655);
        assert_eq!(to_be(v, 64), 0x8877_6655_4433_2211);
        assert_eq!(bswap(v, 16), 0x8877);
        assert_eq!(movsx64(0x80, 8), 0xffff_ffff_ffff_ff80);
        assert_eq!(movsx64(0x8000_0000, 32), 0xffff_ffff_8000_0000);
        assert_eq!(movsx32(0x8000, 16), 0xffff_8000);
        assert_eq!(mod32(0xffff_ffff_ffff_fff6, 0, 1), 0xffff_fff6);
        assert_eq!(mod64(5, 0, 0), 5);
        assert_eq!(div64(i64::MIN as u64, u64::MAX, 1), i64::MIN as u64);
    }
}
