//! Translation of one subprogram into a Cranelift function.
//!
//! Every jump target and every instruction after a jump or `exit` starts a
//! Cranelift block. Blocks are sealed as soon as their last predecessor has
//! been emitted, which keeps SSA construction cheap.

use cranelift_codegen::ir::{
    self,
    condcodes::IntCC,
    types::{I16, I32, I64, I8},
    AtomicRmwOp, Block, BlockArg, FuncRef, InstBuilder, MemFlagsData, SigRef, StackSlot,
    StackSlotData, StackSlotKind, Type, Value,
};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use cranelift_jit::JITModule;
use cranelift_module::Module;

use super::{
    abort_status, callx_lookup_sparse, tail_call_target, Shared, ABORT_CALL_DEPTH,
    ABORT_POISONED_CALL, ABORT_UNKNOWN_CALLX, STATE_ABORT, STATE_CALLX_ID, STATE_CPU_ID,
    STATE_DEPTH, STATE_ENV,
};
use crate::isa::*;
use crate::program::jump_delta;
use crate::tailcall::BPF_FUNC_TAIL_CALL;

/// Translates subprogram `idx` of `shared.program` into `func`, whose
/// signature is already set.
pub(super) fn translate(
    module: &mut JITModule,
    func: &mut ir::Function,
    fctx: &mut FunctionBuilderContext,
    shared: &Shared<'_>,
    idx: usize,
) {
    let program = shared.program;
    let start = program.subprograms()[idx];
    let (_, end) = program.subprogram_range(start);
    let config = module.target_config();
    let mut b = FunctionBuilder::new(func, fctx);
    let regs = std::array::from_fn(|_| b.declare_var(I64));
    let mut t = Translator {
        b,
        module,
        sh: shared,
        insns: program.insns(),
        start,
        end,
        regs,
        stack: None,
        // Placeholders until body() reads the entry block's parameters.
        state: Value::from_u32(0),
        blocks: vec![None; end - start],
        abort: None,
        helper_sig: None,
        bpf_sig: None,
        rt3_sig: None,
        func_refs: vec![None; shared.funcs.len()],
        flags: MemFlagsData::new().with_notrap(),
    };
    t.body();
    t.b.finalize(config);
}

struct Translator<'a, 'f> {
    b: FunctionBuilder<'f>,
    module: &'a mut JITModule,
    sh: &'a Shared<'a>,
    insns: &'a [Insn],
    start: usize,
    end: usize,
    /// r0..r9; r10 is computed from the stack slot.
    regs: [Variable; 10],
    /// Created on the first use of r10.
    stack: Option<StackSlot>,
    state: Value,
    /// The block of each leader pc (index pc - start).
    blocks: Vec<Option<Block>>,
    /// Returns (0, status) for a non-zero status in its one parameter.
    abort: Option<Block>,
    helper_sig: Option<SigRef>,
    bpf_sig: Option<SigRef>,
    rt3_sig: Option<SigRef>,
    func_refs: Vec<Option<FuncRef>>,
    /// Program memory: unchecked (see the module docs), maybe unaligned.
    flags: MemFlagsData,
}

impl Translator<'_, '_> {
    fn body(&mut self) {
        let (start, end) = (self.start, self.end);
        let len = end - start;

        // Jump targets, and conditional jumps over one ALU instruction that
        // nothing else jumps to: those become a select (cmov) instead of a
        // branch (clang's `rX = a; if cond goto +1; rX = b` idiom). The same
        // when the ALU instruction is followed by a `ja` to the same target
        // (`if cond goto L; rX = b; goto L`, a select whose join is
        // elsewhere): the select, then the `ja`.
        let mut is_target = vec![false; len];
        let mut pc = start;
        while pc < end {
            let insn = self.insns[pc];
            if let Some(target) = self.jump_target(pc, insn) {
                is_target[target - start] = true;
            }
            pc += width(insn);
        }
        let mut if_conv = vec![false; len];
        let mut pc = start;
        while pc < end {
            let insn = self.insns[pc];
            let target = self.jump_target(pc, insn);
            let joins = target == Some(pc + 2)
                || (pc + 2 < end
                    && matches!(self.insns[pc + 2].code, JA | JA32)
                    && self.jump_target(pc + 2, self.insns[pc + 2]) == target);
            if is_conditional(insn)
                && joins
                && !is_target[pc + 1 - start]
                && is_cheap_alu(self.insns[pc + 1])
            {
                if_conv[pc - start] = true;
            }
            pc += width(insn);
        }

        // Leaders: the entry, targets of the jumps that stay jumps, and
        // whatever follows a jump or exit (except the instruction folded
        // into a select). A jump turned into a select branches nowhere, so
        // its target needs no block of its own (a block there would only
        // be an empty jump for Cranelift to lower and allocate).
        let mut leader = vec![false; len];
        leader[0] = true;
        let mut pc = start;
        while pc < end {
            let insn = self.insns[pc];
            if !if_conv[pc - start] {
                if let Some(target) = self.jump_target(pc, insn) {
                    leader[target - start] = true;
                }
            }
            pc += width(insn);
        }
        let mut pc = start;
        while pc < end {
            let insn = self.insns[pc];
            let ends_block =
                (jump_delta(insn).is_some() && !if_conv[pc - start]) || insn.code == EXIT;
            if ends_block && pc + 1 < end {
                leader[pc + 1 - start] = true;
            }
            pc += width(insn);
        }
        // The last pc that branches to each leader: it is sealed after that.
        let mut last_pred: Vec<Option<usize>> = vec![None; len];
        let mut pc = start;
        while pc < end {
            let insn = self.insns[pc];
            if let Some(target) = self.jump_target(pc, insn) {
                if !if_conv[pc - start] {
                    last_pred[target - start] = Some(pc);
                }
            }
            let next = pc + width(insn);
            if falls_through(insn) && next < end && leader[next - start] {
                last_pred[next - start] = Some(pc);
            }
            pc = next;
        }
        let mut seal_order: Vec<(usize, usize)> = last_pred
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.map(|p| (p, start + i)))
            .collect();
        seal_order.sort_unstable();
        let mut next_seal = 0;

        // Entry: registers from the parameters, r0 and r6..r9 zero.
        let entry = self.b.create_block();
        self.b.append_block_params_for_function_params(entry);
        self.b.switch_to_block(entry);
        self.b.seal_block(entry);
        let params = self.b.block_params(entry).to_vec();
        let zero = self.b.ins().iconst(I64, 0);
        for r in 0..10 {
            let v = if (1..=5).contains(&r) {
                params[r - 1]
            } else {
                zero
            };
            self.b.def_var(self.regs[r], v);
        }
        self.state = params[5];
        let first = self.block_at(start);
        self.b.ins().jump(first, &[]);

        let mut terminated = true;
        let mut pc = start;
        while pc < end {
            let insn = self.insns[pc];
            if leader[pc - start] {
                let block = self.block_at(pc);
                if !terminated {
                    self.b.ins().jump(block, &[]);
                }
                self.b.switch_to_block(block);
                if last_pred[pc - start].is_none() {
                    self.b.seal_block(block);
                }
            }
            let next = if if_conv[pc - start] {
                self.select_over(insn, self.insns[pc + 1]);
                terminated = false;
                pc + 2
            } else {
                terminated = self.emit(pc, insn);
                pc + width(insn)
            };
            if !terminated && next < end && leader[next - start] {
                let block = self.block_at(next);
                self.b.ins().jump(block, &[]);
                terminated = true;
            }
            while next_seal < seal_order.len() && seal_order[next_seal].0 < next {
                let block = self.block_at(seal_order[next_seal].1);
                self.b.seal_block(block);
                next_seal += 1;
            }
            pc = next;
        }
        if !terminated {
            // Unreachable for a validated program (no fall-through off the
            // end), but keep the function well formed anyway.
            self.exit();
        }

        if let Some(abort) = self.abort {
            self.b.switch_to_block(abort);
            self.b.seal_block(abort);
            let status = self.b.block_params(abort)[0];
            let zero = self.b.ins().iconst(I64, 0);
            self.b.ins().return_(&[zero, status]);
        }
    }

    fn jump_target(&self, pc: usize, insn: Insn) -> Option<usize> {
        // Validation keeps targets inside the subprogram.
        jump_delta(insn).map(|d| (pc as i64 + 1 + d) as usize)
    }

    fn block_at(&mut self, pc: usize) -> Block {
        let i = pc - self.start;
        match self.blocks[i] {
            Some(b) => b,
            None => {
                let b = self.b.create_block();
                self.blocks[i] = Some(b);
                b
            }
        }
    }

    fn abort_block(&mut self) -> Block {
        match self.abort {
            Some(b) => b,
            None => {
                let b = self.b.create_block();
                self.b.append_block_param(b, I64);
                self.b.set_cold_block(b);
                self.abort = Some(b);
                b
            }
        }
    }

    /// A fresh block whose predecessors are all emitted already.
    fn switch_to_new_sealed(&mut self, block: Block) {
        self.b.seal_block(block);
        self.b.switch_to_block(block);
    }

    fn get(&mut self, r: u8) -> Value {
        if r == FP {
            let slot = match self.stack {
                Some(s) => s,
                None => {
                    let data =
                        StackSlotData::new(StackSlotKind::ExplicitSlot, STACK_SIZE as u32, 4);
                    let s = self.b.create_sized_stack_slot(data);
                    self.stack = Some(s);
                    s
                }
            };
            // Emitted at each use: x64 folds it into the address of a load
            // or store (rsp/rbp-relative), so r10 costs no register.
            self.b.ins().stack_addr(I64, slot, STACK_SIZE as i32)
        } else {
            self.b.use_var(self.regs[r as usize])
        }
    }

    fn set(&mut self, r: u8, v: Value) {
        // Validation rejects writes to r10 (and compile() fetches into it).
        if (r as usize) < self.regs.len() {
            self.b.def_var(self.regs[r as usize], v);
        }
    }

    /// Register `r` as a value of type `ty` (I32: its low half).
    fn operand(&mut self, r: u8, ty: Type) -> Value {
        let v = self.get(r);
        self.narrow(v, ty)
    }

    fn narrow(&mut self, v: Value, ty: Type) -> Value {
        if ty == I64 {
            v
        } else {
            self.b.ins().ireduce(ty, v)
        }
    }

    /// Zero-extends to 64 bits (x64 gets that for free from 32-bit ops).
    fn widen(&mut self, v: Value, ty: Type) -> Value {
        if ty == I64 {
            v
        } else {
            self.b.ins().uextend(I64, v)
        }
    }

    fn set_widened(&mut self, r: u8, v: Value, ty: Type) {
        let v = self.widen(v, ty);
        self.set(r, v);
    }

    /// A constant of type `ty`, truncated to its width.
    fn konst(&mut self, ty: Type, v: i64) -> Value {
        let v = match ty {
            I8 => v as u8 as i64,
            I16 => v as u16 as i64,
            I32 => v as u32 as i64,
            _ => v,
        };
        self.b.ins().iconst(ty, v)
    }

    /// Emits one instruction; returns whether the current block is closed.
    fn emit(&mut self, pc: usize, insn: Insn) -> bool {
        match insn.class() {
            BPF_ALU | BPF_ALU64 => {
                self.alu(insn);
                false
            }
            BPF_JMP | BPF_JMP32 => self.jmp(pc, insn),
            BPF_LD => {
                // Only lddw passes validation. Pseudo sources were relocated
                // by the loader: the immediate is the value; a function
                // reference loads its callback token.
                let imm = if insn.src == BPF_PSEUDO_FUNC {
                    let target = (pc as i64 + 1 + insn.imm as i64) as usize;
                    self.sh.callback_token(target)
                } else {
                    lddw_imm(insn, self.insns[pc + 1])
                };
                let v = self.b.ins().iconst(I64, imm as i64);
                self.set(insn.dst, v);
                false
            }
            BPF_LDX => {
                self.ldx(insn);
                false
            }
            BPF_ST => {
                let v = self.b.ins().iconst(I64, insn.imm as i64);
                self.store(insn, v);
                false
            }
            _ => {
                if insn.mode() == BPF_ATOMIC {
                    self.atomic(insn);
                } else {
                    let v = self.get(insn.src);
                    self.store(insn, v);
                }
                false
            }
        }
    }

    fn alu(&mut self, insn: Insn) {
        let is64 = insn.class() == BPF_ALU64;
        let ty = if is64 { I64 } else { I32 };
        let op = insn.op();
        match op {
            BPF_END => return self.byte_swap(insn),
            BPF_MOV => return self.mov(insn, is64),
            BPF_NEG => {
                let a = self.operand(insn.dst, ty);
                let r = self.b.ins().ineg(a);
                return self.set_widened(insn.dst, r, ty);
            }
            _ => {}
        }
        let a = self.operand(insn.dst, ty);
        let is_k = insn.source() == BPF_K;
        let r = match op {
            BPF_LSH | BPF_RSH | BPF_ARSH => {
                // Cranelift masks shift amounts to the width, as eBPF does.
                let amount = if is_k {
                    self.konst(I32, insn.imm as i64 & (ty.bits() as i64 - 1))
                } else {
                    self.operand(insn.src, ty)
                };
                match op {
                    BPF_LSH => self.b.ins().ishl(a, amount),
                    BPF_RSH => self.b.ins().ushr(a, amount),
                    _ => self.b.ins().sshr(a, amount),
                }
            }
            BPF_DIV | BPF_MOD => self.div_mod(insn, ty, a),
            _ => {
                // 64-bit ops see the immediate sign-extended.
                let b = if is_k {
                    self.konst(ty, insn.imm as i64)
                } else {
                    self.operand(insn.src, ty)
                };
                let ins = self.b.ins();
                match op {
                    BPF_ADD => ins.iadd(a, b),
                    BPF_SUB => ins.isub(a, b),
                    BPF_MUL => ins.imul(a, b),
                    BPF_OR => ins.bor(a, b),
                    BPF_AND => ins.band(a, b),
                    _ => ins.bxor(a, b),
                }
            }
        };
        self.set_widened(insn.dst, r, ty);
    }

    /// div/mod (off 0) and sdiv/smod (off 1) without traps: x / 0 = 0,
    /// x % 0 = x, INT_MIN / -1 = INT_MIN, INT_MIN % -1 = 0.
    fn div_mod(&mut self, insn: Insn, ty: Type, a: Value) -> Value {
        let signed = insn.off == 1;
        let is_mod = insn.op() == BPF_MOD;
        if insn.source() == BPF_K {
            // The divisor as the operation sees it: unsigned 32-bit ops
            // take the low half, everything else the sign-extended value.
            let c = if ty == I32 && !signed {
                insn.imm as u32 as i64
            } else {
                insn.imm as i64
            };
            if c == 0 {
                return if is_mod { a } else { self.konst(ty, 0) };
            }
            if signed && c == -1 {
                return if is_mod {
                    self.konst(ty, 0)
                } else {
                    self.b.ins().ineg(a)
                };
            }
            let d = self.konst(ty, c);
            let ins = self.b.ins();
            return match (signed, is_mod) {
                (false, false) => ins.udiv(a, d),
                (false, true) => ins.urem(a, d),
                (true, false) => ins.sdiv(a, d),
                (true, true) => ins.srem(a, d),
            };
        }
        // A divisor only known at run time: the special cases take a cold
        // branch, so the common path is the bare division (a select after
        // it would lengthen the dependency chain through the division).
        let d = self.operand(insn.src, ty);
        let is_zero = self.b.ins().icmp_imm_s(IntCC::Equal, d, 0);
        let special = if signed {
            let minus_one = self.konst(ty, -1);
            let is_m1 = self.b.ins().icmp(IntCC::Equal, d, minus_one);
            self.b.ins().bor(is_zero, is_m1)
        } else {
            is_zero
        };
        let fast = self.b.create_block();
        let slow = self.b.create_block();
        let done = self.b.create_block();
        let result = self.b.append_block_param(done, ty);
        self.b.set_cold_block(slow);
        self.b.ins().brif(special, slow, &[], fast, &[]);

        self.switch_to_new_sealed(fast);
        let ins = self.b.ins();
        let r = match (signed, is_mod) {
            (false, false) => ins.udiv(a, d),
            (false, true) => ins.urem(a, d),
            (true, false) => ins.sdiv(a, d),
            (true, true) => ins.srem(a, d),
        };
        self.b.ins().jump(done, &[BlockArg::Value(r)]);

        // d == 0: div gives 0, mod keeps the dividend. d == -1 (signed):
        // sdiv negates (INT_MIN stays INT_MIN), smod gives 0.
        self.switch_to_new_sealed(slow);
        let zero = self.konst(ty, 0);
        let by_zero = if is_mod { a } else { zero };
        let r = if signed {
            let by_m1 = if is_mod { zero } else { self.b.ins().ineg(a) };
            self.b.ins().select(is_zero, by_zero, by_m1)
        } else {
            by_zero
        };
        self.b.ins().jump(done, &[BlockArg::Value(r)]);

        self.switch_to_new_sealed(done);
        result
    }

    fn mov(&mut self, insn: Insn, is64: bool) {
        let v = if insn.source() == BPF_K {
            let imm = if is64 {
                insn.imm as i64
            } else {
                insn.imm as u32 as i64
            };
            self.b.ins().iconst(I64, imm)
        } else {
            let s = self.get(insn.src);
            // movsx: off = bits to sign-extend from (validated: 0/8/16/32).
            let from = match insn.off {
                8 => Some(I8),
                16 => Some(I16),
                32 => Some(I32),
                _ => None,
            };
            match (is64, from) {
                (true, None) => s,
                (true, Some(from)) => {
                    let n = self.b.ins().ireduce(from, s);
                    self.b.ins().sextend(I64, n)
                }
                (false, None) => {
                    let n = self.b.ins().ireduce(I32, s);
                    self.b.ins().uextend(I64, n)
                }
                (false, Some(from)) => {
                    let n = self.narrow(s, from);
                    let n = if from == I32 {
                        n
                    } else {
                        self.b.ins().sextend(I32, n)
                    };
                    self.b.ins().uextend(I64, n)
                }
            }
        };
        self.set(insn.dst, v);
    }

    /// le/be (ALU class, conversion from host order) and bswap (ALU64).
    fn byte_swap(&mut self, insn: Insn) {
        let swap = insn.class() == BPF_ALU64
            || (insn.source() == BPF_TO_BE) == cfg!(target_endian = "little");
        let v = self.get(insn.dst);
        let r = match insn.imm {
            16 | 32 => {
                let ty = if insn.imm == 16 { I16 } else { I32 };
                let n = self.b.ins().ireduce(ty, v);
                let n = if swap { self.b.ins().bswap(n) } else { n };
                self.b.ins().uextend(I64, n)
            }
            _ => {
                if swap {
                    self.b.ins().bswap(v)
                } else {
                    v
                }
            }
        };
        self.set(insn.dst, r);
    }

    fn ldx(&mut self, insn: Insn) {
        let base = self.get(insn.src);
        let off = insn.off as i32;
        let f = self.flags;
        let ins = self.b.ins();
        let v = match (insn.mode() == BPF_MEMSX, insn.size()) {
            (false, BPF_B) => ins.uload8(I64, f, base, off),
            (false, BPF_H) => ins.uload16(I64, f, base, off),
            (false, BPF_W) => ins.uload32(f, base, off),
            (false, _) => ins.load(I64, f, base, off),
            (true, BPF_B) => ins.sload8(I64, f, base, off),
            (true, BPF_H) => ins.sload16(I64, f, base, off),
            (true, _) => ins.sload32(f, base, off),
        };
        self.set(insn.dst, v);
    }

    /// ST/STX MEM: stores the low bytes of `v` at dst + off.
    fn store(&mut self, insn: Insn, v: Value) {
        let base = self.get(insn.dst);
        let off = insn.off as i32;
        let f = self.flags;
        let ins = self.b.ins();
        match insn.size() {
            BPF_B => ins.istore8(f, v, base, off),
            BPF_H => ins.istore16(f, v, base, off),
            BPF_W => ins.istore32(f, v, base, off),
            _ => ins.store(f, v, base, off),
        };
    }

    fn atomic(&mut self, insn: Insn) {
        let ty = if insn.size() == BPF_DW { I64 } else { I32 };
        let base = self.get(insn.dst);
        let addr = if insn.off != 0 {
            self.b.ins().iadd_imm_s(base, insn.off as i64)
        } else {
            base
        };
        let v = self.operand(insn.src, ty);
        let f = self.flags;
        if insn.imm == BPF_CMPXCHG {
            let expected = self.operand(0, ty);
            let old = self.b.ins().atomic_cas(f, addr, expected, v);
            return self.set_widened(0, old, ty);
        }
        let op = match insn.imm & !BPF_FETCH {
            BPF_ATOMIC_ADD => AtomicRmwOp::Add,
            BPF_ATOMIC_OR => AtomicRmwOp::Or,
            BPF_ATOMIC_AND => AtomicRmwOp::And,
            BPF_ATOMIC_XOR => AtomicRmwOp::Xor,
            _ => AtomicRmwOp::Xchg,
        };
        let old = self.b.ins().atomic_rmw(ty, f, op, addr, v);
        if insn.imm & BPF_FETCH != 0 {
            self.set_widened(insn.src, old, ty);
        }
    }

    fn jmp(&mut self, pc: usize, insn: Insn) -> bool {
        match insn.code {
            JA | JA32 => {
                let target = self.jump_target(pc, insn).unwrap_or(pc + 1);
                let block = self.block_at(target);
                self.b.ins().jump(block, &[]);
                return true;
            }
            EXIT => {
                self.exit();
                return true;
            }
            CALL => {
                match insn.src {
                    BPF_PSEUDO_CALL => {
                        self.call_local(pc, (pc as i64 + 1 + insn.imm as i64) as usize)
                    }
                    _ if insn.imm as u32 == BPF_FUNC_TAIL_CALL => self.tail_call(),
                    _ => {
                        if insn.imm == 1 && self.inline_array_lookup() {
                            return false;
                        }
                        if let Some(f) = self.sh.helper(insn.imm as u32) {
                            let callee = self.b.ins().iconst(I64, f as usize as i64);
                            self.call_helper(callee);
                        } else {
                            // `compile` let only libbpf's poisoned calls
                            // through unresolved.
                            self.poisoned_call(pc, insn.imm as u32);
                        }
                    }
                }
                return false;
            }
            CALLX => {
                self.callx(pc, insn.dst);
                return false;
            }
            _ => {}
        }
        let cond = self.condition(insn);
        let target = self.jump_target(pc, insn).unwrap_or(pc + 1);
        let taken = self.block_at(target);
        let next = self.block_at(pc + 1);
        if taken == next {
            self.b.ins().jump(next, &[]);
        } else {
            self.b.ins().brif(cond, taken, &[], next, &[]);
        }
        true
    }

    /// The condition of a conditional jump, as an i8 truth value.
    fn condition(&mut self, insn: Insn) -> Value {
        let ty = if insn.class() == BPF_JMP32 { I32 } else { I64 };
        let a = self.operand(insn.dst, ty);
        let b = if insn.source() == BPF_K {
            self.konst(ty, insn.imm as i64)
        } else {
            self.operand(insn.src, ty)
        };
        let cc = match insn.op() {
            BPF_JEQ => IntCC::Equal,
            BPF_JNE => IntCC::NotEqual,
            BPF_JGT => IntCC::UnsignedGreaterThan,
            BPF_JGE => IntCC::UnsignedGreaterThanOrEqual,
            BPF_JLT => IntCC::UnsignedLessThan,
            BPF_JLE => IntCC::UnsignedLessThanOrEqual,
            BPF_JSGT => IntCC::SignedGreaterThan,
            BPF_JSGE => IntCC::SignedGreaterThanOrEqual,
            BPF_JSLT => IntCC::SignedLessThan,
            BPF_JSLE => IntCC::SignedLessThanOrEqual,
            _ => IntCC::NotEqual, // JSET: (a & b) != 0
        };
        if insn.op() == BPF_JSET {
            let and = self.b.ins().band(a, b);
            self.b.ins().icmp_imm_s(IntCC::NotEqual, and, 0)
        } else {
            self.b.ins().icmp(cc, a, b)
        }
    }

    /// `if cond goto +1; alu` as straight-line code: the ALU result is kept
    /// only when the jump is not taken.
    fn select_over(&mut self, jump: Insn, alu: Insn) {
        let cond = self.condition(jump);
        let old = self.get(alu.dst);
        self.alu(alu);
        let new = self.get(alu.dst);
        let v = match (self.iconst_of(old), self.iconst_of(new)) {
            // A 0/1 choice would become setcc + movzx, and setcc writes only
            // the low byte, so it waits for whatever last wrote the whole
            // register (often the previous loop iteration's result: the
            // iterations then run one after the other). Choose between 0
            // and 2 with a cmov (a full write) and halve instead.
            (Some(a @ (0 | 1)), Some(b @ (0 | 1))) if a != b => {
                let ty = self.b.func.dfg.value_type(old);
                let a = self.b.ins().iconst(ty, a * 2);
                let b = self.b.ins().iconst(ty, b * 2);
                let v = self.b.ins().select(cond, a, b);
                self.b.ins().ushr_imm_u(v, 1)
            }
            _ => self.b.ins().select(cond, old, new),
        };
        self.set(alu.dst, v);
    }

    /// The value of `v` if it is an integer constant.
    fn iconst_of(&self, v: Value) -> Option<i64> {
        let dfg = &self.b.func.dfg;
        match dfg.value_def(v) {
            ir::ValueDef::Result(inst, _) => match dfg.insts[inst] {
                ir::InstructionData::UnaryImm {
                    opcode: ir::Opcode::Iconst,
                    imm,
                } => Some(imm.bits()),
                _ => None,
            },
            _ => None,
        }
    }

    fn exit(&mut self) {
        let r0 = self.get(0);
        let ok = self.b.ins().iconst(I64, 0);
        self.b.ins().return_(&[r0, ok]);
    }

    fn helper_sig(&mut self) -> SigRef {
        match self.helper_sig {
            Some(s) => s,
            None => {
                let s = self.b.import_signature(self.sh.sigs.helper.clone());
                self.helper_sig = Some(s);
                s
            }
        }
    }

    fn bpf_sig(&mut self) -> SigRef {
        match self.bpf_sig {
            Some(s) => s,
            None => {
                let s = self.b.import_signature(self.sh.sigs.bpf.clone());
                self.bpf_sig = Some(s);
                s
            }
        }
    }

    fn rt3_sig(&mut self) -> SigRef {
        match self.rt3_sig {
            Some(s) => s,
            None => {
                let s = self.b.import_signature(self.sh.sigs.rt3.clone());
                self.rt3_sig = Some(s);
                s
            }
        }
    }

    /// r1..r5 as call arguments.
    fn args(&mut self) -> [Value; 5] {
        std::array::from_fn(|i| self.get(i as u8 + 1))
    }

    /// `bpf_map_lookup_elem` on a map known at compile time to be an ARRAY
    /// or PERCPU_ARRAY: the bounds check and the address, inline (as the
    /// kernel's `array_map_gen_lookup`), instead of a helper call.
    fn inline_array_lookup(&mut self) -> bool {
        let r1 = self.get(1);
        let cranelift_codegen::ir::ValueDef::Result(inst, _) = self.b.func.dfg.value_def(r1) else {
            return false;
        };
        let cranelift_codegen::ir::InstructionData::UnaryImm { imm, .. } =
            self.b.func.dfg.insts[inst]
        else {
            return false;
        };
        let addr = imm.bits() as u64;
        let Some(map) = crate::maps::Map::upgrade_prog_addr(addr) else {
            return false;
        };
        let crate::maps::FastLookup::Array {
            base,
            stride,
            max_entries,
            cpu_block,
            percpu,
        } = map.fast_lookup()
        else {
            return false;
        };
        let key = self.get(2);
        let idx = self.b.ins().load(I32, MemFlagsData::trusted(), key, 0);
        let idx = self.b.ins().uextend(I64, idx);
        let inb = self
            .b
            .ins()
            .icmp_imm_u(IntCC::UnsignedLessThan, idx, max_entries as i64);
        let off = self.b.ins().imul_imm_u(idx, stride as i64);
        let mut p = self.b.ins().iadd_imm_u(off, base as i64);
        if percpu {
            // The CPU from the thread's rseq area (see RunState::cpu_id),
            // clamped as cpu::current_cpu clamps it.
            let ptr = self
                .b
                .ins()
                .load(I64, MemFlagsData::trusted(), self.state, STATE_CPU_ID);
            let cpu = self.b.ins().load(I32, MemFlagsData::trusted(), ptr, 0);
            let cpu = self.b.ins().uextend(I64, cpu);
            let last = i64::from(crate::cpu::possible_cpus()) - 1;
            let last_v = self.b.ins().iconst(I64, last);
            let over = self
                .b
                .ins()
                .icmp_imm_u(IntCC::UnsignedGreaterThan, cpu, last);
            let cpu = self.b.ins().select(over, last_v, cpu);
            let block = self.b.ins().imul_imm_u(cpu, cpu_block as i64);
            p = self.b.ins().iadd(p, block);
        }
        let zero = self.b.ins().iconst(I64, 0);
        let r0 = self.b.ins().select(inb, p, zero);
        self.set(0, r0);
        true
    }

    /// Calls the helper at address `callee` with r1..r5 and the environment;
    /// r0 = its result.
    fn call_helper(&mut self, callee: Value) {
        let [r1, r2, r3, r4, r5] = self.args();
        let env = self
            .b
            .ins()
            .load(I64, MemFlagsData::trusted(), self.state, STATE_ENV);
        let sig = self.helper_sig();
        let call = self
            .b
            .ins()
            .call_indirect(sig, callee, &[r1, r2, r3, r4, r5, env]);
        let r0 = self.b.inst_results(call)[0];
        self.set(0, r0);
        if self.sh.has_callbacks() {
            // A callback run by the helper may have aborted the run.
            let status = self
                .b
                .ins()
                .load(I64, MemFlagsData::trusted(), self.state, STATE_ABORT);
            let abort = self.abort_block();
            let cont = self.b.create_block();
            self.b
                .ins()
                .brif(status, abort, &[BlockArg::Value(status)], cont, &[]);
            self.switch_to_new_sealed(cont);
        }
    }

    /// A call libbpf poisoned: the run that reaches it aborts, with the id
    /// in the run state. The code after it stays in a block of its own
    /// (reached only through the never-taken branch), so that the rest of
    /// the translation needs no special case.
    fn poisoned_call(&mut self, pc: usize, id: u32) {
        let idv = self.b.ins().iconst(I64, i64::from(id));
        self.b
            .ins()
            .store(MemFlagsData::trusted(), idv, self.state, STATE_CALLX_ID);
        let status = self
            .b
            .ins()
            .iconst(I64, abort_status(ABORT_POISONED_CALL, pc));
        let abort = self.abort_block();
        let cont = self.b.create_block();
        self.b.set_cold_block(cont);
        self.b
            .ins()
            .brif(status, abort, &[BlockArg::Value(status)], cont, &[]);
        self.switch_to_new_sealed(cont);
        let zero = self.b.ins().iconst(I64, 0);
        self.set(0, zero);
    }

    /// bpf-to-bpf call: a direct call with depth + 1; an abort status from
    /// the callee is passed up.
    fn call_local(&mut self, pc: usize, target: usize) {
        let subprogs = self.sh.program.subprograms();
        let Ok(idx) = subprogs.binary_search(&target) else {
            // Validation makes every call target a subprogram entry.
            return;
        };
        let func = match self.func_refs[idx] {
            Some(f) => f,
            None => {
                let f = self
                    .module
                    .declare_func_in_func(self.sh.funcs[idx], self.b.func);
                self.func_refs[idx] = Some(f);
                f
            }
        };
        // The frame index lives in the run state (so every function takes
        // six register arguments): read, check, bump around the call.
        let trusted = MemFlagsData::trusted();
        let depth = self.b.ins().load(I64, trusted, self.state, STATE_DEPTH);
        let too_deep = self.b.ins().icmp_imm_s(
            IntCC::UnsignedGreaterThanOrEqual,
            depth,
            MAX_CALL_FRAMES as i64 - 1,
        );
        let status = self.b.ins().iconst(I64, abort_status(ABORT_CALL_DEPTH, pc));
        let abort = self.abort_block();
        let ok = self.b.create_block();
        self.b
            .ins()
            .brif(too_deep, abort, &[BlockArg::Value(status)], ok, &[]);
        self.switch_to_new_sealed(ok);

        let inner = self.b.ins().iadd_imm_s(depth, 1);
        self.b.ins().store(trusted, inner, self.state, STATE_DEPTH);
        let [r1, r2, r3, r4, r5] = self.args();
        let call = self.b.ins().call(func, &[r1, r2, r3, r4, r5, self.state]);
        let (r0, status) = {
            let res = self.b.inst_results(call);
            (res[0], res[1])
        };
        let cont = self.b.create_block();
        self.b
            .ins()
            .brif(status, abort, &[BlockArg::Value(status)], cont, &[]);
        self.switch_to_new_sealed(cont);
        self.b.ins().store(trusted, depth, self.state, STATE_DEPTH);
        self.set(0, r0);
    }

    /// `bpf_tail_call(r1 = ctx, r2 = array, r3 = index)`: if the run state
    /// finds a target, call it and return its (r0, status); else fall
    /// through with registers as they were.
    fn tail_call(&mut self) {
        let lookup = self
            .b
            .ins()
            .iconst(I64, tail_call_target as *const () as usize as i64);
        let r2 = self.get(2);
        let r3 = self.get(3);
        let sig = self.rt3_sig();
        let call = self
            .b
            .ins()
            .call_indirect(sig, lookup, &[self.state, r2, r3]);
        let target = self.b.inst_results(call)[0];
        let jump = self.b.create_block();
        let cont = self.b.create_block();
        self.b.ins().brif(target, jump, &[], cont, &[]);
        self.switch_to_new_sealed(jump);
        let [r1, r2, r3, r4, r5] = self.args();
        let sig = self.bpf_sig();
        let call = self
            .b
            .ins()
            .call_indirect(sig, target, &[r1, r2, r3, r4, r5, self.state]);
        let res = self.b.inst_results(call).to_vec();
        self.b.ins().return_(&res);
        self.switch_to_new_sealed(cont);
    }

    /// callx: the register holds a helper id, looked up at run time.
    fn callx(&mut self, pc: usize, reg: u8) {
        let id = self.get(reg);
        let done = self.b.create_block();

        // Helper 12 is the tail call here too.
        let is_tail = self
            .b
            .ins()
            .icmp_imm_s(IntCC::Equal, id, BPF_FUNC_TAIL_CALL as i64);
        let tail = self.b.create_block();
        let lookup = self.b.create_block();
        self.b.ins().brif(is_tail, tail, &[], lookup, &[]);
        self.switch_to_new_sealed(tail);
        self.tail_call();
        self.b.ins().jump(done, &[]);
        self.switch_to_new_sealed(lookup);

        let found = self.b.create_block();
        self.b.append_block_param(found, I64);
        let (dense_ptr, dense_len) = self.sh.callx_dense;
        if dense_len > 0 {
            let in_dense = self
                .b
                .ins()
                .icmp_imm_s(IntCC::UnsignedLessThan, id, dense_len as i64);
            let dense = self.b.create_block();
            let sparse = self.b.create_block();
            self.b.ins().brif(in_dense, dense, &[], sparse, &[]);
            self.switch_to_new_sealed(dense);
            let offset = self.b.ins().ishl_imm_s(id, 3);
            let base = self.b.ins().iconst(I64, dense_ptr as i64);
            let addr = self.b.ins().iadd(base, offset);
            let f = self.b.ins().load(I64, MemFlagsData::trusted(), addr, 0);
            self.b.ins().jump(found, &[BlockArg::Value(f)]);
            self.switch_to_new_sealed(sparse);
        }
        let (sparse_ptr, sparse_len) = self.sh.callx_sparse;
        let f = if sparse_len > 0 {
            let lookup = self
                .b
                .ins()
                .iconst(I64, callx_lookup_sparse as *const () as usize as i64);
            let table = self.b.ins().iconst(I64, sparse_ptr as i64);
            let len = self.b.ins().iconst(I64, sparse_len as i64);
            let sig = self.rt3_sig();
            let call = self.b.ins().call_indirect(sig, lookup, &[table, len, id]);
            self.b.inst_results(call)[0]
        } else {
            self.b.ins().iconst(I64, 0)
        };
        self.b.ins().jump(found, &[BlockArg::Value(f)]);
        self.switch_to_new_sealed(found);
        let f = self.b.block_params(found)[0];

        let call = self.b.create_block();
        let unknown = self.b.create_block();
        self.b.set_cold_block(unknown);
        self.b.ins().brif(f, call, &[], unknown, &[]);
        self.switch_to_new_sealed(unknown);
        self.b
            .ins()
            .store(MemFlagsData::trusted(), id, self.state, STATE_CALLX_ID);
        let status = self
            .b
            .ins()
            .iconst(I64, abort_status(ABORT_UNKNOWN_CALLX, pc));
        let abort = self.abort_block();
        self.b.ins().jump(abort, &[BlockArg::Value(status)]);
        self.switch_to_new_sealed(call);
        self.call_helper(f);
        self.b.ins().jump(done, &[]);
        self.switch_to_new_sealed(done);
    }
}

fn width(insn: Insn) -> usize {
    if insn.is_lddw() {
        2
    } else {
        1
    }
}

/// A jump that may fall through: not ja, call or exit.
fn is_conditional(insn: Insn) -> bool {
    matches!(insn.class(), BPF_JMP | BPF_JMP32)
        && !matches!(insn.op(), BPF_JA | BPF_CALL | BPF_EXIT)
}

/// ALU instructions cheap enough to compute on both paths of a branch.
fn is_cheap_alu(insn: Insn) -> bool {
    matches!(insn.class(), BPF_ALU | BPF_ALU64) && !matches!(insn.op(), BPF_DIV | BPF_MOD)
}

/// Whether control may reach the next slot after `insn`.
fn falls_through(insn: Insn) -> bool {
    !matches!(insn.code, EXIT | JA | JA32)
}
