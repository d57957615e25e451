//! The eBPF instruction set (RFC 9669, ISA v1 to v4): encodings and the
//! 8-byte instruction slot.
//!
//! Everything here is pure data: opcode constants, field accessors and the
//! byte layout of one slot. What a program may contain is decided in
//! [`crate::program`]; what an instruction does, in the engines.

/// Size in bytes of one instruction slot.
pub const INSN_SIZE: usize = 8;
/// Registers r0..r10; r10 is the read-only frame pointer.
pub const NUM_REGS: usize = 11;
/// The frame pointer register.
pub const FP: u8 = 10;
/// Bytes of stack each frame gets, as in the kernel.
pub const STACK_SIZE: usize = 512;
/// Maximum number of frames (the entry frame plus bpf-to-bpf calls), as in
/// the kernel's `MAX_CALL_FRAMES`.
pub const MAX_CALL_FRAMES: usize = 8;

// Instruction classes (low 3 bits of the opcode).
pub const BPF_LD: u8 = 0x00;
pub const BPF_LDX: u8 = 0x01;
pub const BPF_ST: u8 = 0x02;
pub const BPF_STX: u8 = 0x03;
pub const BPF_ALU: u8 = 0x04;
pub const BPF_JMP: u8 = 0x05;
pub const BPF_JMP32: u8 = 0x06;
pub const BPF_ALU64: u8 = 0x07;

// Source operand (bit 3) for ALU and JMP classes.
pub const BPF_K: u8 = 0x00;
pub const BPF_X: u8 = 0x08;

// Size modifier (bits 3-4) for load and store classes.
pub const BPF_W: u8 = 0x00;
pub const BPF_H: u8 = 0x08;
pub const BPF_B: u8 = 0x10;
pub const BPF_DW: u8 = 0x18;

// Mode modifier (bits 5-7) for load and store classes.
pub const BPF_IMM: u8 = 0x00;
pub const BPF_ABS: u8 = 0x20;
pub const BPF_IND: u8 = 0x40;
pub const BPF_MEM: u8 = 0x60;
pub const BPF_MEMSX: u8 = 0x80;
pub const BPF_ATOMIC: u8 = 0xc0;

// ALU operations (bits 4-7).
pub const BPF_ADD: u8 = 0x00;
pub const BPF_SUB: u8 = 0x10;
pub const BPF_MUL: u8 = 0x20;
pub const BPF_DIV: u8 = 0x30;
pub const BPF_OR: u8 = 0x40;
pub const BPF_AND: u8 = 0x50;
pub const BPF_LSH: u8 = 0x60;
pub const BPF_RSH: u8 = 0x70;
pub const BPF_NEG: u8 = 0x80;
pub const BPF_MOD: u8 = 0x90;
pub const BPF_XOR: u8 = 0xa0;
pub const BPF_MOV: u8 = 0xb0;
pub const BPF_ARSH: u8 = 0xc0;
pub const BPF_END: u8 = 0xd0;

/// Byte-order source bit of `BPF_END` in the ALU class: to little endian.
pub const BPF_TO_LE: u8 = 0x00;
/// Byte-order source bit of `BPF_END` in the ALU class: to big endian.
pub const BPF_TO_BE: u8 = 0x08;

// Jump operations (bits 4-7).
pub const BPF_JA: u8 = 0x00;
pub const BPF_JEQ: u8 = 0x10;
pub const BPF_JGT: u8 = 0x20;
pub const BPF_JGE: u8 = 0x30;
pub const BPF_JSET: u8 = 0x40;
pub const BPF_JNE: u8 = 0x50;
pub const BPF_JSGT: u8 = 0x60;
pub const BPF_JSGE: u8 = 0x70;
pub const BPF_CALL: u8 = 0x80;
pub const BPF_EXIT: u8 = 0x90;
pub const BPF_JLT: u8 = 0xa0;
pub const BPF_JLE: u8 = 0xb0;
pub const BPF_JSLT: u8 = 0xc0;
pub const BPF_JSLE: u8 = 0xd0;

// Atomic operations, in the imm field of `BPF_ATOMIC` stores.
pub const BPF_ATOMIC_ADD: i32 = 0x00;
pub const BPF_ATOMIC_OR: i32 = 0x40;
pub const BPF_ATOMIC_AND: i32 = 0x50;
pub const BPF_ATOMIC_XOR: i32 = 0xa0;
/// Modifier: the old value is returned in the source register.
pub const BPF_FETCH: i32 = 0x01;
pub const BPF_XCHG: i32 = 0xe0 | BPF_FETCH;
pub const BPF_CMPXCHG: i32 = 0xf0 | BPF_FETCH;

// Source values of `lddw` (the "pseudo" sources libbpf and the kernel use).
pub const BPF_PSEUDO_NONE: u8 = 0;
pub const BPF_PSEUDO_MAP_FD: u8 = 1;
pub const BPF_PSEUDO_MAP_VALUE: u8 = 2;
pub const BPF_PSEUDO_BTF_ID: u8 = 3;
pub const BPF_PSEUDO_FUNC: u8 = 4;
pub const BPF_PSEUDO_MAP_IDX: u8 = 5;
pub const BPF_PSEUDO_MAP_IDX_VALUE: u8 = 6;

// Source values of `call`.
pub const BPF_CALL_HELPER: u8 = 0;
pub const BPF_PSEUDO_CALL: u8 = 1;
pub const BPF_PSEUDO_KFUNC_CALL: u8 = 2;

// Whole opcodes used often enough to deserve a name.
pub const LDDW: u8 = BPF_LD | BPF_IMM | BPF_DW;
pub const CALL: u8 = BPF_JMP | BPF_CALL;
/// `call` with the target in a register (the register is in `dst`).
pub const CALLX: u8 = BPF_JMP | BPF_CALL | BPF_X;
pub const EXIT: u8 = BPF_JMP | BPF_EXIT;
pub const JA: u8 = BPF_JMP | BPF_JA;
/// `gotol`: JMP32 | JA with a 32-bit offset in imm (ISA v4).
pub const JA32: u8 = BPF_JMP32 | BPF_JA;

/// One 8-byte instruction slot, decoded into its fields.
///
/// The byte layout is `code`, then `dst` in the low nibble and `src` in the
/// high nibble of byte 1, then `off` (i16 LE) and `imm` (i32 LE). The second
/// slot of `lddw` is also an `Insn` (with `code == 0`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Insn {
    pub code: u8,
    pub dst: u8,
    pub src: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    pub const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        Insn {
            code,
            dst,
            src,
            off,
            imm,
        }
    }

    /// Decodes one slot.
    pub fn from_bytes(b: [u8; INSN_SIZE]) -> Self {
        Insn {
            code: b[0],
            dst: b[1] & 0x0f,
            src: b[1] >> 4,
            off: i16::from_le_bytes([b[2], b[3]]),
            imm: i32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        }
    }

    /// Encodes one slot. Register numbers are truncated to 4 bits.
    pub fn to_bytes(self) -> [u8; INSN_SIZE] {
        let off = self.off.to_le_bytes();
        let imm = self.imm.to_le_bytes();
        [
            self.code,
            (self.dst & 0x0f) | (self.src << 4),
            off[0],
            off[1],
            imm[0],
            imm[1],
            imm[2],
            imm[3],
        ]
    }

    /// Decodes a byte buffer whose length is a multiple of [`INSN_SIZE`];
    /// `None` otherwise.
    pub fn decode_all(bytes: &[u8]) -> Option<Vec<Insn>> {
        if !bytes.len().is_multiple_of(INSN_SIZE) {
            return None;
        }
        Some(
            bytes
                .chunks_exact(INSN_SIZE)
                .map(|c| Insn::from_bytes(c.try_into().expect("chunk of 8")))
                .collect(),
        )
    }

    /// Encodes a sequence of slots into bytes.
    pub fn encode_all(insns: &[Insn]) -> Vec<u8> {
        insns.iter().flat_map(|i| i.to_bytes()).collect()
    }

    pub fn class(self) -> u8 {
        self.code & 0x07
    }

    /// ALU/JMP operation (bits 4-7).
    pub fn op(self) -> u8 {
        self.code & 0xf0
    }

    /// ALU/JMP source bit: `BPF_K` or `BPF_X`.
    pub fn source(self) -> u8 {
        self.code & 0x08
    }

    /// Load/store size modifier.
    pub fn size(self) -> u8 {
        self.code & 0x18
    }

    /// Load/store mode modifier.
    pub fn mode(self) -> u8 {
        self.code & 0xe0
    }

    /// Width in bytes of a load or store.
    pub fn access_width(self) -> usize {
        size_bytes(self.size())
    }

    /// True for `lddw`, the only instruction that takes two slots.
    pub fn is_lddw(self) -> bool {
        self.code == LDDW
    }
}

/// Bytes moved by a load or store with the given size modifier.
pub const fn size_bytes(size: u8) -> usize {
    match size {
        BPF_B => 1,
        BPF_H => 2,
        BPF_W => 4,
        _ => 8,
    }
}

/// The 64-bit immediate of an `lddw` from its two slots.
pub fn lddw_imm(first: Insn, second: Insn) -> u64 {
    (first.imm as u32 as u64) | ((second.imm as u32 as u64) << 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_round_trip() {
        let i = Insn::new(BPF_ALU64 | BPF_ADD | BPF_X, 3, 7, -8, -0x1234_5678);
        let b = i.to_bytes();
        assert_eq!(b[0], 0x0f);
        assert_eq!(b[1], 0x73);
        assert_eq!(Insn::from_bytes(b), i);
    }

    #[test]
    fn decode_rejects_partial_slot() {
        assert!(Insn::decode_all(&[0; 12]).is_none());
        assert_eq!(Insn::decode_all(&[0; 16]).unwrap().len(), 2);
    }

    #[test]
    fn lddw_immediate_joins_halves() {
        let lo = Insn::new(LDDW, 0, 0, 0, 0x5566_7788);
        let hi = Insn::new(0, 0, 0, 0, 0x1122_3344);
        assert_eq!(lddw_imm(lo, hi), 0x1122_3344_5566_7788);
        let neg = Insn::new(LDDW, 0, 0, 0, -1);
        assert_eq!(lddw_imm(neg, Insn::default()), 0xffff_ffff);
    }
}
