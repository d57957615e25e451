//! A generator of random, valid, terminating eBPF programs for differential
//! testing of the engines.
//!
//! Every program it makes is defined behaviour: memory accesses stay inside
//! the stack or the buffer the program is given, loops are bounded, and no
//! register is read that the ISA leaves undefined (r1 to r5 after a call, or
//! r0 and r6 to r9 on entry to a subprogram). So both engines must agree on
//! r0 and on the buffer, bit for bit.
//!
//! Program shape:
//! - main: `r9 = r1` (the buffer), seed r0..r8 but r9, a random body, then
//!   fold every register into r0 and exit;
//! - subprograms called from main with `call local`: they seed r0 and r6..r9,
//!   run a body on their own stack, and exit.
//!
//! [`generate_with_callbacks`] makes programs whose bodies also call
//! `bpf_loop` (helper 181) with callbacks: `r1 = n; r2 = &callback (a
//! BPF_PSEUDO_FUNC lddw); r3 = the buffer; r4 = 0`. A callback gets the
//! buffer in r2 (moved to r9), works on it and its own stack, may run
//! `bpf_loop` on a later callback (so callbacks nest, up to three deep), and
//! returns 0 or, sometimes, 1 (stop). The callback token itself never
//! reaches r0 or memory (it differs between engines).

use userbpf_runtime::isa::*;

/// Bytes of buffer a generated program reads and writes through r9.
pub const BUF_LEN: usize = 256;
/// Bytes at the top of each frame's stack that programs use. The prologue
/// zeroes them, since reading uninitialised stack is undefined.
const STACK_WINDOW: usize = 128;

/// splitmix64: tiny, seedable, and good enough for test generation.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// Immediates biased towards the edge cases engines get wrong.
    fn imm32(&mut self) -> i32 {
        match self.below(10) {
            0 => 0,
            1 => -1,
            2 => i32::MIN,
            3 => i32::MAX,
            4 => 1,
            5 => self.below(64) as i32,
            6 => -(self.below(64) as i32),
            _ => self.next_u64() as i32,
        }
    }

    fn imm64(&mut self) -> u64 {
        match self.below(8) {
            0 => 0,
            1 => u64::MAX,
            2 => i64::MIN as u64,
            3 => 0x8000_0000,
            4 => 0xffff_ffff,
            5 => self.below(256),
            _ => self.next_u64(),
        }
    }
}

/// One unit of a program: a whole instruction (lddw counts as one item of
/// two slots), or a forward jump whose target is resolved by item count.
#[derive(Clone, Copy)]
enum Item {
    Insn(Insn),
    Lddw(u8, u64),
    /// A conditional or unconditional jump that skips `skip` items.
    Jump(Insn, usize),
    /// `call local` to the subprogram with this index.
    CallLocal(usize),
    /// `lddw reg, <function>` with `BPF_PSEUDO_FUNC`: the function with
    /// this index in the layout (0 = main).
    LoadFunc(u8, usize),
}

impl Item {
    fn slots(self) -> usize {
        match self {
            Item::Lddw(..) | Item::LoadFunc(..) => 2,
            _ => 1,
        }
    }
}

/// What a body may use.
struct Scope {
    /// Registers the body may write (and read).
    regs: &'static [u8],
    /// Whether r9 points at the buffer.
    has_buffer: bool,
    /// Subprograms it may call.
    subprogs: usize,
    /// Layout indices of the callbacks it may pass to `bpf_loop`.
    callbacks: std::ops::Range<usize>,
}

const MAIN_REGS: &[u8] = &[0, 1, 2, 3, 4, 5, 6, 7, 8];
const SUB_REGS: &[u8] = &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
/// Argument registers, undefined after any call.
const ARGS: &[u8] = &[1, 2, 3, 4, 5];

/// Helper ids the generated programs call; the test registers them.
pub const HELPER_MIX: u32 = 1;
pub const HELPER_SUM: u32 = 2;
/// `bpf_loop`, used by [`generate_with_callbacks`].
pub const HELPER_LOOP: u32 = 181;

const ALU_OPS: &[u8] = &[
    BPF_ADD, BPF_SUB, BPF_MUL, BPF_DIV, BPF_OR, BPF_AND, BPF_LSH, BPF_RSH, BPF_MOD, BPF_XOR,
    BPF_MOV, BPF_ARSH,
];
const JMP_OPS: &[u8] = &[
    BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET, BPF_JNE, BPF_JSGT, BPF_JSGE, BPF_JLT, BPF_JLE, BPF_JSLT,
    BPF_JSLE,
];
const SIZES: &[u8] = &[BPF_B, BPF_H, BPF_W, BPF_DW];

/// Generates one program from `seed`. Returns its instructions.
pub fn generate(seed: u64) -> Vec<Insn> {
    let mut rng = Rng::new(seed);
    let n_subprogs = rng.below(3) as usize;
    let body_len = 8 + rng.below(56) as usize;

    let mut main = vec![Item::Insn(mov_reg(9, 1, true))];
    zero_stack_window(&mut main);
    for &r in MAIN_REGS {
        main.push(seed_reg(&mut rng, r));
    }
    let scope = Scope {
        regs: MAIN_REGS,
        has_buffer: true,
        subprogs: n_subprogs,
        callbacks: 0..0,
    };
    body(&mut rng, &scope, body_len, &mut main);
    // Fold every register into r0 so that all of them are compared.
    for r in 1..=8u8 {
        main.push(Item::Insn(Insn::new(
            BPF_ALU64 | BPF_XOR | BPF_X,
            0,
            r,
            0,
            0,
        )));
    }
    main.push(Item::Insn(Insn::new(EXIT, 0, 0, 0, 0)));

    let mut subs = Vec::new();
    for _ in 0..n_subprogs {
        let mut sub = Vec::new();
        zero_stack_window(&mut sub);
        for r in [0u8, 6, 7, 8, 9] {
            sub.push(seed_reg(&mut rng, r));
        }
        let scope = Scope {
            regs: SUB_REGS,
            has_buffer: false,
            subprogs: 0,
            callbacks: 0..0,
        };
        let len = 4 + rng.below(24) as usize;
        body(&mut rng, &scope, len, &mut sub);
        sub.push(Item::Insn(Insn::new(EXIT, 0, 0, 0, 0)));
        subs.push(sub);
    }
    link(main, subs)
}

/// Generates one program with `bpf_loop` callbacks from `seed` (see the
/// module documentation).
pub fn generate_with_callbacks(seed: u64) -> Vec<Insn> {
    let mut rng = Rng::new(seed ^ 0xca11_bac5);
    let n_callbacks = 1 + rng.below(3) as usize;
    let mut main = vec![Item::Insn(mov_reg(9, 1, true))];
    zero_stack_window(&mut main);
    for &r in MAIN_REGS {
        main.push(seed_reg(&mut rng, r));
    }
    // Callback k sits at layout index 1 + k.
    let scope = Scope {
        regs: MAIN_REGS,
        has_buffer: true,
        subprogs: 0,
        callbacks: 1..1 + n_callbacks,
    };
    // At least one loop, on the first callback.
    let first = Scope {
        callbacks: 1..2,
        ..scope
    };
    loop_call(&mut rng, &first, &mut main);
    let len = 8 + rng.below(40) as usize;
    body(&mut rng, &scope, len, &mut main);
    for r in 1..=8u8 {
        main.push(Item::Insn(Insn::new(
            BPF_ALU64 | BPF_XOR | BPF_X,
            0,
            r,
            0,
            0,
        )));
    }
    main.push(Item::Insn(Insn::new(EXIT, 0, 0, 0, 0)));

    let mut callbacks = Vec::new();
    for k in 0..n_callbacks {
        // r1 = index, r2 = the buffer (kept in r9; r2 gets a value that
        // is the same on both engines), r3..r5 = 0: all defined.
        let mut cb = vec![Item::Insn(mov_reg(9, 2, true))];
        zero_stack_window(&mut cb);
        for r in [0u8, 2, 6, 7, 8] {
            cb.push(seed_reg(&mut rng, r));
        }
        let scope = Scope {
            regs: MAIN_REGS,
            has_buffer: true,
            subprogs: 0,
            callbacks: 2 + k..1 + n_callbacks,
        };
        let len = 4 + rng.below(20) as usize;
        body(&mut rng, &scope, len, &mut cb);
        // Fold the registers into r0, then return 1 (stop) when its low
        // three bits are zero, else 0.
        for r in 1..=8u8 {
            cb.push(Item::Insn(Insn::new(
                BPF_ALU64 | BPF_XOR | BPF_X,
                0,
                r,
                0,
                0,
            )));
        }
        cb.push(Item::Insn(Insn::new(
            BPF_ALU64 | BPF_AND | BPF_K,
            0,
            0,
            0,
            7,
        )));
        cb.push(Item::Insn(Insn::new(BPF_JMP | BPF_JNE | BPF_K, 0, 0, 2, 0)));
        cb.push(Item::Insn(Insn::new(
            BPF_ALU64 | BPF_MOV | BPF_K,
            0,
            0,
            0,
            1,
        )));
        cb.push(Item::Insn(Insn::new(EXIT, 0, 0, 0, 0)));
        cb.push(Item::Insn(Insn::new(
            BPF_ALU64 | BPF_MOV | BPF_K,
            0,
            0,
            0,
            0,
        )));
        cb.push(Item::Insn(Insn::new(EXIT, 0, 0, 0, 0)));
        callbacks.push(cb);
    }
    link(main, callbacks)
}

/// `bpf_loop(n, callback, buffer, 0)` on one of the scope's callbacks.
fn loop_call(rng: &mut Rng, scope: &Scope, out: &mut Vec<Item>) {
    let n = rng.below(5) as i32;
    let target = scope.callbacks.start + rng.below(scope.callbacks.len() as u64) as usize;
    out.push(Item::Insn(Insn::new(
        BPF_ALU64 | BPF_MOV | BPF_K,
        1,
        0,
        0,
        n,
    )));
    out.push(Item::LoadFunc(2, target));
    out.push(Item::Insn(mov_reg(3, 9, true)));
    out.push(Item::Insn(Insn::new(
        BPF_ALU64 | BPF_MOV | BPF_K,
        4,
        0,
        0,
        0,
    )));
    out.push(Item::Insn(Insn::new(CALL, 0, 0, 0, HELPER_LOOP as i32)));
    reseed_args(rng, out);
}

fn mov_reg(dst: u8, src: u8, is64: bool) -> Insn {
    let class = if is64 { BPF_ALU64 } else { BPF_ALU };
    Insn::new(class | BPF_MOV | BPF_X, dst, src, 0, 0)
}

fn zero_stack_window(out: &mut Vec<Item>) {
    for slot in 1..=STACK_WINDOW / 8 {
        let off = -((slot * 8) as i16);
        out.push(Item::Insn(Insn::new(
            BPF_ST | BPF_MEM | BPF_DW,
            FP,
            0,
            off,
            0,
        )));
    }
}

fn seed_reg(rng: &mut Rng, reg: u8) -> Item {
    if rng.chance(50) {
        Item::Lddw(reg, rng.imm64())
    } else {
        Item::Insn(Insn::new(
            BPF_ALU64 | BPF_MOV | BPF_K,
            reg,
            0,
            0,
            rng.imm32(),
        ))
    }
}

/// Appends about `len` items of random work to `out`.
fn body(rng: &mut Rng, scope: &Scope, len: usize, out: &mut Vec<Item>) {
    let start = out.len();
    while out.len() - start < len {
        match rng.below(100) {
            0..=39 => alu(rng, scope, out),
            40..=49 => out.push(Item::Insn(special_alu(rng, scope))),
            50..=64 => memory(rng, scope, out),
            65..=71 => atomic(rng, scope, out),
            72..=83 => jump(rng, scope, out),
            84..=91 if !scope.callbacks.is_empty() && rng.chance(75) => loop_call(rng, scope, out),
            84..=87 => helper_call(rng, scope, out),
            88..=91 if scope.subprogs > 0 => {
                for &r in ARGS {
                    out.push(Item::Insn(Insn::new(
                        BPF_ALU64 | BPF_MOV | BPF_K,
                        r,
                        0,
                        0,
                        rng.imm32(),
                    )));
                }
                out.push(Item::CallLocal(rng.below(scope.subprogs as u64) as usize));
                reseed_args(rng, out);
            }
            92..=95 => bounded_loop(rng, scope, out),
            _ => {
                let reg = rng.pick(scope.regs);
                out.push(seed_reg(rng, reg));
            }
        }
    }
}

/// r1..r5 are undefined after a call: give them known values again.
fn reseed_args(rng: &mut Rng, out: &mut Vec<Item>) {
    for &r in ARGS {
        out.push(Item::Insn(Insn::new(
            BPF_ALU64 | BPF_MOV | BPF_K,
            r,
            0,
            0,
            rng.imm32(),
        )));
    }
}

fn alu(rng: &mut Rng, scope: &Scope, out: &mut Vec<Item>) {
    let is64 = rng.chance(50);
    let class = if is64 { BPF_ALU64 } else { BPF_ALU };
    let op = rng.pick(ALU_OPS);
    let dst = rng.pick(scope.regs);
    // sdiv/smod are div/mod with offset 1.
    let off = if matches!(op, BPF_DIV | BPF_MOD) && rng.chance(50) {
        1
    } else {
        0
    };
    let insn = if rng.chance(50) {
        let src = rng.pick(scope.regs);
        Insn::new(class | op | BPF_X, dst, src, off, 0)
    } else {
        Insn::new(class | op | BPF_K, dst, 0, off, rng.imm32())
    };
    out.push(Item::Insn(insn));
}

/// neg, byte swaps and sign-extending moves.
fn special_alu(rng: &mut Rng, scope: &Scope) -> Insn {
    let dst = rng.pick(scope.regs);
    let src = rng.pick(scope.regs);
    let width = rng.pick(&[16, 32, 64]);
    match rng.below(5) {
        0 => Insn::new(BPF_ALU64 | BPF_NEG, dst, 0, 0, 0),
        1 => Insn::new(BPF_ALU | BPF_NEG, dst, 0, 0, 0),
        2 => {
            let order = rng.pick(&[BPF_TO_LE, BPF_TO_BE]);
            Insn::new(BPF_ALU | BPF_END | order, dst, 0, 0, width)
        }
        3 => Insn::new(BPF_ALU64 | BPF_END, dst, 0, 0, width),
        _ => {
            if rng.chance(50) {
                Insn::new(
                    BPF_ALU64 | BPF_MOV | BPF_X,
                    dst,
                    src,
                    rng.pick(&[8, 16, 32]),
                    0,
                )
            } else {
                Insn::new(BPF_ALU | BPF_MOV | BPF_X, dst, src, rng.pick(&[8, 16]), 0)
            }
        }
    }
}

/// A base register and an aligned offset for an access of `width` bytes.
fn address(rng: &mut Rng, scope: &Scope, width: usize) -> (u8, i16) {
    if scope.has_buffer && rng.chance(50) {
        let slots = BUF_LEN / width;
        (9, (rng.below(slots as u64) as usize * width) as i16)
    } else {
        let slots = STACK_WINDOW / width;
        let off = -((((rng.below(slots as u64) as usize) + 1) * width) as i64);
        (FP, off as i16)
    }
}

fn memory(rng: &mut Rng, scope: &Scope, out: &mut Vec<Item>) {
    let size = rng.pick(SIZES);
    let (base, off) = address(rng, scope, size_bytes(size));
    let reg = rng.pick(scope.regs);
    let insn = match rng.below(4) {
        0 => Insn::new(BPF_LDX | BPF_MEM | size, reg, base, off, 0),
        1 if size != BPF_DW => Insn::new(BPF_LDX | BPF_MEMSX | size, reg, base, off, 0),
        1 | 2 => Insn::new(BPF_STX | BPF_MEM | size, base, reg, off, 0),
        _ => Insn::new(BPF_ST | BPF_MEM | size, base, 0, off, rng.imm32()),
    };
    out.push(Item::Insn(insn));
}

fn atomic(rng: &mut Rng, scope: &Scope, out: &mut Vec<Item>) {
    let size = rng.pick(&[BPF_W, BPF_DW]);
    let (base, off) = address(rng, scope, size_bytes(size));
    let op = rng.pick(&[
        BPF_ATOMIC_ADD,
        BPF_ATOMIC_OR,
        BPF_ATOMIC_AND,
        BPF_ATOMIC_XOR,
        BPF_ATOMIC_ADD | BPF_FETCH,
        BPF_ATOMIC_OR | BPF_FETCH,
        BPF_ATOMIC_AND | BPF_FETCH,
        BPF_ATOMIC_XOR | BPF_FETCH,
        BPF_XCHG,
        BPF_CMPXCHG,
    ]);
    let src = rng.pick(scope.regs);
    out.push(Item::Insn(Insn::new(
        BPF_STX | BPF_ATOMIC | size,
        base,
        src,
        off,
        op,
    )));
}

/// A forward jump over a short random stretch of work.
fn jump(rng: &mut Rng, scope: &Scope, out: &mut Vec<Item>) {
    let mut skipped = Vec::new();
    let n = 1 + rng.below(4) as usize;
    let inner = Scope {
        regs: scope.regs,
        has_buffer: scope.has_buffer,
        subprogs: 0,
        callbacks: 0..0,
    };
    while skipped.len() < n {
        match rng.below(3) {
            0 => memory(rng, &inner, &mut skipped),
            _ => alu(rng, &inner, &mut skipped),
        }
    }
    let insn = match rng.below(10) {
        0 => Insn::new(JA, 0, 0, 0, 0),
        1 => Insn::new(JA32, 0, 0, 0, 0),
        _ => {
            let class = if rng.chance(50) { BPF_JMP } else { BPF_JMP32 };
            let op = rng.pick(JMP_OPS);
            let dst = rng.pick(scope.regs);
            if rng.chance(50) {
                Insn::new(class | op | BPF_X, dst, rng.pick(scope.regs), 0, 0)
            } else {
                Insn::new(class | op | BPF_K, dst, 0, 0, rng.imm32())
            }
        }
    };
    out.push(Item::Jump(insn, skipped.len()));
    out.extend(skipped);
}

/// `for (r = n; r != 0; r--) { work }` with a counter no work touches.
fn bounded_loop(rng: &mut Rng, scope: &Scope, out: &mut Vec<Item>) {
    // The counter is the highest register of the scope; work uses the rest.
    let counter = *scope.regs.last().expect("scope has registers");
    let work_regs: &'static [u8] = &scope.regs[..scope.regs.len() - 1];
    let inner = Scope {
        regs: work_regs,
        has_buffer: scope.has_buffer && counter != 9,
        subprogs: 0,
        callbacks: 0..0,
    };
    let mut work = Vec::new();
    let n = 1 + rng.below(5) as usize;
    while work.len() < n {
        match rng.below(4) {
            0 => memory(rng, &inner, &mut work),
            1 => atomic(rng, &inner, &mut work),
            _ => alu(rng, &inner, &mut work),
        }
    }
    let trips = 1 + rng.below(16) as i32;
    out.push(Item::Insn(Insn::new(
        BPF_ALU64 | BPF_MOV | BPF_K,
        counter,
        0,
        0,
        trips,
    )));
    let body_slots: usize = work.iter().map(|i| i.slots()).sum();
    out.extend(work);
    out.push(Item::Insn(Insn::new(
        BPF_ALU64 | BPF_SUB | BPF_K,
        counter,
        0,
        0,
        1,
    )));
    // Back to the first work item: over the work, the sub and this jump.
    let back = -((body_slots + 2) as i16);
    out.push(Item::Insn(Insn::new(
        BPF_JMP | BPF_JNE | BPF_K,
        counter,
        0,
        back,
        0,
    )));
}

fn helper_call(rng: &mut Rng, scope: &Scope, out: &mut Vec<Item>) {
    let id = rng.pick(&[HELPER_MIX, HELPER_SUM]);
    if rng.chance(25) {
        // callx: the register holds the helper id. Use r0, which the call
        // overwrites anyway.
        out.push(Item::Insn(Insn::new(
            BPF_ALU64 | BPF_MOV | BPF_K,
            0,
            0,
            0,
            id as i32,
        )));
        out.push(Item::Insn(Insn::new(CALLX, 0, 0, 0, 0)));
    } else {
        out.push(Item::Insn(Insn::new(CALL, 0, 0, 0, id as i32)));
    }
    // The arguments were whatever the scope's registers held; afterwards
    // they are undefined.
    let _ = scope;
    reseed_args(rng, out);
}

/// Lays main and the subprograms out, resolving jumps and calls.
fn link(main: Vec<Item>, subs: Vec<Vec<Item>>) -> Vec<Insn> {
    let mut funcs = vec![main];
    funcs.extend(subs);
    let mut starts = Vec::new();
    let mut slot = 0;
    for f in &funcs {
        starts.push(slot);
        slot += f.iter().map(|i| i.slots()).sum::<usize>();
    }
    let mut insns = Vec::with_capacity(slot);
    for f in &funcs {
        for (idx, item) in f.iter().enumerate() {
            let here = insns.len();
            match *item {
                Item::Insn(i) => insns.push(i),
                Item::Lddw(dst, value) => {
                    insns.push(Insn::new(LDDW, dst, 0, 0, value as u32 as i32));
                    insns.push(Insn::new(0, 0, 0, 0, (value >> 32) as u32 as i32));
                }
                Item::Jump(mut j, skip) => {
                    let delta: usize = f[idx + 1..idx + 1 + skip].iter().map(|i| i.slots()).sum();
                    if j.code == JA32 {
                        j.imm = delta as i32;
                    } else {
                        j.off = delta as i16;
                    }
                    insns.push(j);
                }
                Item::CallLocal(target) => {
                    let rel = starts[target + 1] as i64 - here as i64 - 1;
                    insns.push(Insn::new(CALL, 0, BPF_PSEUDO_CALL, 0, rel as i32));
                }
                Item::LoadFunc(dst, target) => {
                    let rel = starts[target] as i64 - here as i64 - 1;
                    insns.push(Insn::new(LDDW, dst, BPF_PSEUDO_FUNC, 0, rel as i32));
                    insns.push(Insn::new(0, 0, 0, 0, 0));
                }
            }
        }
    }
    insns
}
