//! The `.BTF` header: byte order detection and the section layout checks of
//! libbpf's `btf_parse_hdr`.

use std::ops::Range;

use crate::error::{BtfError, BtfSection};
use crate::uapi::{Endianness, BTF_MAGIC};

/// Bytes up to and including `str_len`: the smallest header libbpf reads.
pub(crate) const MIN_HEADER_LEN: u32 = 24;
/// Bytes of the current header, which adds the layout section.
pub(crate) const FULL_HEADER_LEN: u32 = 32;

/// `struct btf_header`, in native byte order. Fields past the blob's
/// `hdr_len` read as zero (a 24-byte header has no layout section).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BtfHeader {
    pub magic: u16,
    pub version: u8,
    pub flags: u8,
    pub hdr_len: u32,
    /// Offsets are relative to the end of the header.
    pub type_off: u32,
    pub type_len: u32,
    pub str_off: u32,
    pub str_len: u32,
    pub layout_off: u32,
    pub layout_len: u32,
}

/// A header that passed the checks.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ParsedHeader {
    pub header: BtfHeader,
    pub endianness: Endianness,
    /// Non-zero bytes past the known header fields (libbpf then refuses to
    /// modify the BTF).
    pub has_unknown_data: bool,
}

pub(crate) fn read_u16(bytes: &[u8], at: usize, order: Endianness) -> u16 {
    let raw = [bytes[at], bytes[at + 1]];
    match order {
        Endianness::Little => u16::from_le_bytes(raw),
        Endianness::Big => u16::from_be_bytes(raw),
    }
}

pub(crate) fn read_u32(bytes: &[u8], at: usize, order: Endianness) -> u32 {
    let raw = [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
    match order {
        Endianness::Little => u32::from_le_bytes(raw),
        Endianness::Big => u32::from_be_bytes(raw),
    }
}

pub(crate) fn write_u32(bytes: &mut [u8], at: usize, value: u32, order: Endianness) {
    let raw = match order {
        Endianness::Little => value.to_le_bytes(),
        Endianness::Big => value.to_be_bytes(),
    };
    bytes[at..at + 4].copy_from_slice(&raw);
}

/// Which byte order the magic at the start of `bytes` announces, if any.
pub(crate) fn detect_endianness(bytes: &[u8]) -> Result<Endianness, u16> {
    let native = read_u16(bytes, 0, Endianness::NATIVE);
    if native == BTF_MAGIC {
        Ok(Endianness::NATIVE)
    } else if native == BTF_MAGIC.swap_bytes() {
        Ok(Endianness::NATIVE.swapped())
    } else {
        Err(native)
    }
}

impl BtfHeader {
    /// Reads and checks the header at the start of a `.BTF` blob.
    pub(crate) fn parse(bytes: &[u8]) -> Result<ParsedHeader, BtfError> {
        if bytes.len() < MIN_HEADER_LEN as usize {
            return Err(BtfError::HeaderTruncated { len: bytes.len() });
        }
        let endianness = detect_endianness(bytes).map_err(|magic| BtfError::BadMagic { magic })?;
        let hdr_len = read_u32(bytes, 4, endianness);
        if endianness != Endianness::NATIVE && hdr_len < MIN_HEADER_LEN {
            return Err(BtfError::SwappedHeaderTooShort { hdr_len });
        }
        if bytes.len() < hdr_len as usize {
            return Err(BtfError::HeaderLenTooLarge {
                hdr_len,
                len: bytes.len(),
            });
        }

        // Like libbpf, only the first hdr_len bytes count as header, and
        // version and flags are not checked (the kernel checks them).
        let mut known = [0u8; FULL_HEADER_LEN as usize];
        let copied = (hdr_len as usize).min(known.len());
        known[..copied].copy_from_slice(&bytes[..copied]);
        let field = |at: usize| read_u32(&known, at, endianness);
        let header = BtfHeader {
            magic: BTF_MAGIC,
            version: known[2],
            flags: known[3],
            hdr_len,
            type_off: field(8),
            type_len: field(12),
            str_off: field(16),
            str_len: field(20),
            layout_off: field(24),
            layout_len: field(28),
        };
        let has_unknown_data = bytes
            .get(FULL_HEADER_LEN as usize..hdr_len as usize)
            .is_some_and(|extra| extra.iter().any(|&b| b != 0));
        header.check_sections(bytes.len())?;
        Ok(ParsedHeader {
            header,
            endianness,
            has_unknown_data,
        })
    }

    fn check_sections(&self, data_len: usize) -> Result<(), BtfError> {
        let available = data_len - self.hdr_len as usize;
        let end = |off: u32, len: u32| u64::from(off) + u64::from(len);
        if end(self.str_off, self.str_len) > available as u64 {
            return Err(BtfError::SectionOutOfBounds {
                section: BtfSection::Strings,
                off: self.str_off,
                len: self.str_len,
                available,
            });
        }
        if end(self.type_off, self.type_len) > u64::from(self.str_off) {
            return Err(BtfError::SectionsOverlap {
                first: BtfSection::Types,
                first_off: self.type_off,
                first_len: self.type_len,
                second: BtfSection::Strings,
                second_off: self.str_off,
            });
        }
        if !self.type_off.is_multiple_of(4) {
            return Err(BtfError::SectionMisaligned {
                section: BtfSection::Types,
                off: self.type_off,
            });
        }
        if self.layout_len == 0 {
            return Ok(());
        }
        // The optional layout section sits between types and strings.
        if !self.layout_off.is_multiple_of(4) {
            return Err(BtfError::SectionMisaligned {
                section: BtfSection::Layout,
                off: self.layout_off,
            });
        }
        if u64::from(self.layout_off) < end(self.type_off, self.type_len) {
            return Err(BtfError::SectionsOverlap {
                first: BtfSection::Types,
                first_off: self.type_off,
                first_len: self.type_len,
                second: BtfSection::Layout,
                second_off: self.layout_off,
            });
        }
        if end(self.layout_off, self.layout_len) > u64::from(self.str_off) {
            return Err(BtfError::SectionsOverlap {
                first: BtfSection::Layout,
                first_off: self.layout_off,
                first_len: self.layout_len,
                second: BtfSection::Strings,
                second_off: self.str_off,
            });
        }
        Ok(())
    }

    fn section(&self, off: u32, len: u32) -> Range<usize> {
        let start = self.hdr_len as usize + off as usize;
        start..start + len as usize
    }

    /// Byte range of the type section within the blob.
    pub fn types_range(&self) -> Range<usize> {
        self.section(self.type_off, self.type_len)
    }

    /// Byte range of the string section within the blob.
    pub fn strings_range(&self) -> Range<usize> {
        self.section(self.str_off, self.str_len)
    }

    /// Byte range of the layout section within the blob (empty if absent).
    pub fn layout_range(&self) -> Range<usize> {
        self.section(self.layout_off, self.layout_len)
    }

    /// Writes the fields that fit in `hdr_len` into `out` (at least 24
    /// bytes long) in byte order `order`.
    pub(crate) fn write_to(&self, out: &mut [u8], order: Endianness) {
        let magic = match order {
            Endianness::Little => BTF_MAGIC.to_le_bytes(),
            Endianness::Big => BTF_MAGIC.to_be_bytes(),
        };
        out[..2].copy_from_slice(&magic);
        out[2] = self.version;
        out[3] = self.flags;
        let fields = [
            self.hdr_len,
            self.type_off,
            self.type_len,
            self.str_off,
            self.str_len,
            self.layout_off,
            self.layout_len,
        ];
        let room = (self.hdr_len as usize).min(out.len());
        for (i, value) in fields.into_iter().enumerate() {
            let at = 4 + 4 * i;
            if at + 4 <= room {
                write_u32(out, at, value, order);
            }
        }
    }
}
