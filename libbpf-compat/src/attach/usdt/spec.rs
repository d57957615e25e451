//! `struct __bpf_usdt_spec` as bytes for the `__bpf_usdt_specs` map.
//!
//! usdt.bpf.h has had two layouts, and the BPF object's copy of the header
//! decides which one its `bpf_usdt_arg` reads:
//!
//! - libbpf 1.7 ([`SpecLayout::V1_7`]): `arg_type` became an 8-bit field
//!   followed by the SIB fields, which moved `reg_off` from offset 12 to
//!   14 (the header's "keeps reg_off offset stable" does not hold: a
//!   12-bit `__u16` field cannot start at bit 8 of a `__u16` unit).
//!   24-byte arguments, 304-byte spec.
//! - libbpf 0.8 to 1.6 ([`SpecLayout::Legacy`], e.g. Debian's libbpf-dev
//!   1.1): a 4-byte `arg_type`, 16-byte arguments, 208-byte spec.
//!
//! libbpf 1.7 always writes its own layout; we pick the one the map was
//! declared with (its value size), so objects built against either header
//! read their arguments correctly.

use super::arg::{ArgSpec, UsdtSpec, MAX_ARGS};

/// Which `struct __bpf_usdt_spec` the object was compiled with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpecLayout {
    /// libbpf 1.7's usdt.bpf.h.
    V1_7,
    /// usdt.bpf.h before libbpf 1.7 (no SIB fields).
    Legacy,
}

impl SpecLayout {
    /// `sizeof(struct __bpf_usdt_arg_spec)`.
    pub const fn arg_size(self) -> usize {
        match self {
            SpecLayout::V1_7 => 24,
            SpecLayout::Legacy => 16,
        }
    }

    /// `sizeof(struct __bpf_usdt_spec)`.
    pub const fn spec_size(self) -> usize {
        // args, then __u64 usdt_cookie and short arg_cnt, padded to 8.
        MAX_ARGS * self.arg_size() + 16
    }

    /// The layout of a spec map whose values are `value_size` bytes: the
    /// legacy size, or anything that holds libbpf 1.7's spec (a larger
    /// value keeps zeroed tail bytes).
    pub fn for_value_size(value_size: u32) -> Option<SpecLayout> {
        let n = value_size as usize;
        if n == SpecLayout::Legacy.spec_size() {
            Some(SpecLayout::Legacy)
        } else if n >= SpecLayout::V1_7.spec_size() {
            Some(SpecLayout::V1_7)
        } else {
            None
        }
    }
}

fn encode_arg(a: &ArgSpec, layout: SpecLayout, out: &mut [u8]) {
    out[0..8].copy_from_slice(&a.val_off.to_le_bytes());
    match layout {
        SpecLayout::V1_7 => {
            // enum arg_type: 8 at bit 0 of the unit at 8; __u16
            // idx_reg_off: 12 and scale_bitshift: 4 in the next __u16
            // (bytes 10-11); __u8 __reserved at 12; short reg_off at 14.
            out[8] = a.arg_type as u8;
            let sib = (a.idx_reg_off & 0xfff) | (u16::from(a.scale_bitshift & 0xf) << 12);
            out[10..12].copy_from_slice(&sib.to_le_bytes());
            out[14..16].copy_from_slice(&a.reg_off.to_le_bytes());
            out[16] = u8::from(a.arg_signed);
            out[17] = a.arg_bitshift;
        }
        SpecLayout::Legacy => {
            out[8..12].copy_from_slice(&u32::from(a.arg_type as u8).to_le_bytes());
            out[12..14].copy_from_slice(&a.reg_off.to_le_bytes());
            out[14] = u8::from(a.arg_signed);
            out[15] = a.arg_bitshift;
        }
    }
}

/// `spec` as `layout` lays it out, `value_size` bytes long (at least the
/// spec's size; unused arguments and padding are zero).
pub fn encode_spec(spec: &UsdtSpec, layout: SpecLayout, value_size: usize) -> Vec<u8> {
    let mut out = vec![0u8; value_size.max(layout.spec_size())];
    let arg_size = layout.arg_size();
    for (i, a) in spec.args.iter().take(MAX_ARGS).enumerate() {
        encode_arg(a, layout, &mut out[i * arg_size..(i + 1) * arg_size]);
    }
    let tail = MAX_ARGS * arg_size;
    out[tail..tail + 8].copy_from_slice(&spec.usdt_cookie.to_le_bytes());
    let cnt = spec.args.len().min(MAX_ARGS) as i16;
    out[tail + 8..tail + 10].copy_from_slice(&cnt.to_le_bytes());
    out
}
