//! The few parts of an eBPF instruction CO-RE patching reads and writes,
//! on raw 8-byte slots (this crate does not depend on the runtime's
//! instruction type). Slots are in host byte order, as libbpf patches them.

/// `BPF_CLASS` values.
pub(crate) const BPF_LD: u8 = 0x00;
pub(crate) const BPF_LDX: u8 = 0x01;
pub(crate) const BPF_ST: u8 = 0x02;
pub(crate) const BPF_STX: u8 = 0x03;
pub(crate) const BPF_ALU: u8 = 0x04;
pub(crate) const BPF_JMP: u8 = 0x05;
pub(crate) const BPF_ALU64: u8 = 0x07;
/// `BPF_K`: the immediate is the source operand.
pub(crate) const BPF_K: u8 = 0x00;
/// `BPF_SIZE` values.
pub(crate) const BPF_W: u8 = 0x00;
pub(crate) const BPF_H: u8 = 0x08;
pub(crate) const BPF_B: u8 = 0x10;
pub(crate) const BPF_DW: u8 = 0x18;
pub(crate) const BPF_CALL: u8 = 0x80;
/// `BPF_LD | BPF_IMM | BPF_DW`: the first slot of a 64-bit immediate load.
pub(crate) const LDIMM64: u8 = BPF_LD | BPF_DW;

/// One instruction slot, decoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RawInsn {
    pub code: u8,
    pub dst_reg: u8,
    pub src_reg: u8,
    pub off: i16,
    pub imm: i32,
}

impl RawInsn {
    pub fn decode(slot: &[u8; 8]) -> RawInsn {
        // The register nibbles are a C bitfield: dst in the low nibble on
        // little-endian hosts, in the high one on big-endian.
        let (dst_reg, src_reg) = if cfg!(target_endian = "little") {
            (slot[1] & 0x0f, slot[1] >> 4)
        } else {
            (slot[1] >> 4, slot[1] & 0x0f)
        };
        RawInsn {
            code: slot[0],
            dst_reg,
            src_reg,
            off: i16::from_ne_bytes([slot[2], slot[3]]),
            imm: i32::from_ne_bytes([slot[4], slot[5], slot[6], slot[7]]),
        }
    }

    pub fn encode(&self) -> [u8; 8] {
        let regs = if cfg!(target_endian = "little") {
            (self.dst_reg & 0x0f) | (self.src_reg << 4)
        } else {
            (self.dst_reg << 4) | (self.src_reg & 0x0f)
        };
        let off = self.off.to_ne_bytes();
        let imm = self.imm.to_ne_bytes();
        [
            self.code, regs, off[0], off[1], imm[0], imm[1], imm[2], imm[3],
        ]
    }

    pub fn class(&self) -> u8 {
        self.code & 0x07
    }

    pub fn source(&self) -> u8 {
        self.code & 0x08
    }

    pub fn size(&self) -> u8 {
        self.code & 0x18
    }

    pub fn mode(&self) -> u8 {
        self.code & 0xe0
    }
}

/// Bytes accessed by a load/store of size `BPF_SIZE` bits.
pub(crate) fn size_bytes(size: u8) -> u32 {
    match size {
        BPF_DW => 8,
        BPF_W => 4,
        BPF_H => 2,
        _ => 1,
    }
}

/// The `BPF_SIZE` for an access of `bytes`, if it is a valid load size.
pub(crate) fn size_code(bytes: u32) -> Option<u8> {
    match bytes {
        8 => Some(BPF_DW),
        4 => Some(BPF_W),
        2 => Some(BPF_H),
        1 => Some(BPF_B),
        _ => None,
    }
}

/// Views a program's bytes as instruction slots (the length must be a
/// multiple of 8).
pub fn insn_slots_mut(bytes: &mut [u8]) -> Option<&mut [[u8; 8]]> {
    let (slots, rest) = bytes.as_chunks_mut::<8>();
    rest.is_empty().then_some(slots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_round_trip() {
        // r1 = *(u32 *)(r2 - 8), in little-endian bytes.
        let slot = [0x61, 0x21, 0xf8, 0xff, 0, 0, 0, 0];
        let insn = RawInsn::decode(&slot);
        if cfg!(target_endian = "little") {
            assert_eq!((insn.dst_reg, insn.src_reg, insn.off), (1, 2, -8));
        }
        assert_eq!(
            (insn.class(), insn.size(), insn.mode()),
            (BPF_LDX, BPF_W, 0x60)
        );
        assert_eq!(insn.encode(), slot);
        assert_eq!(size_code(size_bytes(BPF_H)), Some(BPF_H));
        assert_eq!(size_code(3), None);
        let mut bytes = [0u8; 17];
        assert!(insn_slots_mut(&mut bytes).is_none());
        assert_eq!(insn_slots_mut(&mut bytes[..16]).unwrap().len(), 2);
    }
}
