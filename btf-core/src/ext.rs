//! `.BTF.ext`: per-ELF-section func_info, line_info and CO-RE relocation
//! records, checked as libbpf's `btf_ext_parse` does.
//!
//! Layout: a header, then up to three info subsections. Each subsection is a
//! `u32` record size followed by blocks of `{ sec_name_off, num_info,
//! records[num_info] }`, one per ELF section. Records may be longer than the
//! structs this crate knows (newer compilers); the known prefix is read and
//! the raw bytes stay available to pass on to the kernel unchanged.

use std::borrow::Cow;
use std::marker::PhantomData;

use crate::aligned::{record, swap_words, word_bytes, words_of, AlignedBytes, KernelRecord};
use crate::btf::Btf;
use crate::error::{BtfExtError, ExtSubsection};
use crate::header::{detect_endianness, read_u32, write_u32};
use crate::uapi::{BpfCoreRelo, BpfFuncInfo, BpfLineInfo, Endianness, BTF_MAGIC};

/// Header bytes up to `line_info_len`: the minimum.
const MIN_HEADER_LEN: u32 = 24;
/// Header bytes including `core_relo_off`/`core_relo_len`.
const CORE_RELO_HEADER_LEN: u32 = 32;

/// `struct btf_ext_header`, in native byte order. `core_relo_*` are zero for
/// a 24-byte (pre-CO-RE) header.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BtfExtHeader {
    pub magic: u16,
    pub version: u8,
    pub flags: u8,
    pub hdr_len: u32,
    /// Offsets are relative to the end of the header.
    pub func_info_off: u32,
    pub func_info_len: u32,
    pub line_info_off: u32,
    pub line_info_len: u32,
    pub core_relo_off: u32,
    pub core_relo_len: u32,
}

/// Where one ELF section's records sit in the blob.
#[derive(Clone, Debug)]
struct SectionIndex {
    sec_name_off: u32,
    num_info: u32,
    /// Blob offset of the first record (word-aligned).
    records_start: usize,
}

/// Where one info subsection sits in the blob.
#[derive(Clone, Debug)]
struct SubsectionIndex {
    rec_size: u32,
    /// Blob offset of the record size word.
    start: usize,
    /// Bytes including the record size word.
    len: usize,
    sections: Vec<SectionIndex>,
}

/// A parsed `.BTF.ext` blob, kept in native byte order.
pub struct BtfExt {
    blob: AlignedBytes,
    header: BtfExtHeader,
    endianness: Endianness,
    func_info: Option<SubsectionIndex>,
    line_info: Option<SubsectionIndex>,
    core_relo: Option<SubsectionIndex>,
}

impl BtfExt {
    /// Parses a `.BTF.ext` section's bytes (`btf_ext__new`).
    pub fn parse(bytes: &[u8]) -> Result<BtfExt, BtfExtError> {
        if bytes.len() < 8 {
            return Err(BtfExtError::HeaderTruncated { len: bytes.len() });
        }
        let order = detect_endianness(bytes).map_err(|magic| BtfExtError::BadMagic { magic })?;
        let hdr_len = read_u32(bytes, 4, order);
        if bytes[2] != 1 {
            return Err(BtfExtError::UnsupportedVersion { version: bytes[2] });
        }
        if bytes[3] != 0 {
            return Err(BtfExtError::UnsupportedFlags { flags: bytes[3] });
        }
        if bytes.len() < hdr_len as usize {
            return Err(BtfExtError::HeaderLenTooLarge {
                hdr_len,
                len: bytes.len(),
            });
        }
        if bytes.len() == hdr_len as usize {
            return Err(BtfExtError::NoData);
        }
        if hdr_len < MIN_HEADER_LEN {
            return Err(BtfExtError::HeaderMissingInfo { hdr_len });
        }
        let field = |at: usize| read_u32(bytes, at, order);
        let has_core_relo = hdr_len >= CORE_RELO_HEADER_LEN;
        let header = BtfExtHeader {
            magic: BTF_MAGIC,
            version: bytes[2],
            flags: bytes[3],
            hdr_len,
            func_info_off: field(8),
            func_info_len: field(12),
            line_info_off: field(16),
            line_info_len: field(20),
            core_relo_off: if has_core_relo { field(24) } else { 0 },
            core_relo_len: if has_core_relo { field(28) } else { 0 },
        };

        // Subsection offsets are multiples of 4 from the end of the header.
        let mut blob = AlignedBytes::copy_with_aligned_offset(bytes, hdr_len as usize);
        let parse = |subsection, off, len, min_rec_size| {
            parse_subsection(bytes, order, &header, subsection, off, len, min_rec_size)
        };
        let func_info = parse(
            ExtSubsection::FuncInfo,
            header.func_info_off,
            header.func_info_len,
            words_of::<BpfFuncInfo>() * 4,
        )?;
        let line_info = parse(
            ExtSubsection::LineInfo,
            header.line_info_off,
            header.line_info_len,
            words_of::<BpfLineInfo>() * 4,
        )?;
        let core_relo = if has_core_relo {
            parse(
                ExtSubsection::CoreRelo,
                header.core_relo_off,
                header.core_relo_len,
                words_of::<BpfCoreRelo>() * 4,
            )?
        } else {
            None
        };

        if order != Endianness::NATIVE {
            // Swapped records have exactly the known size (checked above),
            // all of 32-bit fields, so swapping every word converts them.
            swap_subsections(&mut blob, [&func_info, &line_info, &core_relo]);
            write_header(&header, blob.bytes_mut(), Endianness::NATIVE);
        }
        Ok(BtfExt {
            blob,
            header,
            endianness: order,
            func_info,
            line_info,
            core_relo,
        })
    }

    /// The header, in native byte order.
    pub fn header(&self) -> &BtfExtHeader {
        &self.header
    }

    /// The byte order the blob was stored in.
    pub fn endianness(&self) -> Endianness {
        self.endianness
    }

    /// func_info records, if the subsection is present.
    pub fn func_info(&self) -> Option<ExtInfo<'_, BpfFuncInfo>> {
        self.info(&self.func_info)
    }

    /// line_info records, if the subsection is present.
    pub fn line_info(&self) -> Option<ExtInfo<'_, BpfLineInfo>> {
        self.info(&self.line_info)
    }

    /// CO-RE relocation records, if the subsection is present (never for a
    /// 24-byte header).
    pub fn core_relo(&self) -> Option<ExtInfo<'_, BpfCoreRelo>> {
        self.info(&self.core_relo)
    }

    /// The whole blob, in native byte order.
    pub fn raw_data(&self) -> &[u8] {
        self.blob.bytes()
    }

    /// The whole blob in byte order `order` (`btf_ext__raw_data` gives the
    /// order it was stored in).
    pub fn raw_data_in(&self, order: Endianness) -> Cow<'_, [u8]> {
        if order == Endianness::NATIVE {
            return Cow::Borrowed(self.blob.bytes());
        }
        let mut blob = self.blob.clone();
        let subsections = [&self.func_info, &self.line_info, &self.core_relo];
        swap_subsections(&mut blob, subsections);
        write_header(&self.header, blob.bytes_mut(), order);
        Cow::Owned(blob.bytes().to_vec())
    }

    fn info<'a, R: KernelRecord>(
        &'a self,
        index: &'a Option<SubsectionIndex>,
    ) -> Option<ExtInfo<'a, R>> {
        Some(ExtInfo {
            blob: &self.blob,
            index: index.as_ref()?,
            record: PhantomData,
        })
    }
}

impl std::fmt::Debug for BtfExt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = |i: &Option<SubsectionIndex>| {
            i.as_ref()
                .map_or(0, |i| i.sections.iter().map(|s| s.num_info as usize).sum())
        };
        f.debug_struct("BtfExt")
            .field("endianness", &self.endianness)
            .field("func_info", &count(&self.func_info))
            .field("line_info", &count(&self.line_info))
            .field("core_relo", &count(&self.core_relo))
            .finish_non_exhaustive()
    }
}

fn swap_subsections(blob: &mut AlignedBytes, subsections: [&Option<SubsectionIndex>; 3]) {
    for index in subsections.into_iter().flatten() {
        if let Some(words) = blob.words_mut(index.start, index.len / 4) {
            swap_words(words);
        }
    }
}

/// Writes `header`'s fields (those that fit in its `hdr_len`) in `order`.
fn write_header(header: &BtfExtHeader, out: &mut [u8], order: Endianness) {
    let magic = match order {
        Endianness::Little => BTF_MAGIC.to_le_bytes(),
        Endianness::Big => BTF_MAGIC.to_be_bytes(),
    };
    out[..2].copy_from_slice(&magic);
    let mut fields = vec![
        header.hdr_len,
        header.func_info_off,
        header.func_info_len,
        header.line_info_off,
        header.line_info_len,
    ];
    if header.hdr_len >= CORE_RELO_HEADER_LEN {
        fields.extend([header.core_relo_off, header.core_relo_len]);
    }
    for (i, value) in fields.into_iter().enumerate() {
        write_u32(out, 4 + 4 * i, value, order);
    }
}

/// Checks one info subsection (`btf_ext_parse_sec_info`) and indexes its
/// per-section blocks. `None` if the subsection is absent (length 0).
fn parse_subsection(
    bytes: &[u8],
    order: Endianness,
    header: &BtfExtHeader,
    subsection: ExtSubsection,
    off: u32,
    len: u32,
    min_rec_size: usize,
) -> Result<Option<SubsectionIndex>, BtfExtError> {
    if len == 0 {
        return Ok(None);
    }
    if !off.is_multiple_of(4) {
        return Err(BtfExtError::SubsectionMisaligned { subsection, off });
    }
    let start = u64::from(header.hdr_len) + u64::from(off);
    if start + u64::from(len) > bytes.len() as u64 {
        return Err(BtfExtError::SubsectionOutOfBounds {
            subsection,
            off,
            len,
        });
    }
    let (start, len) = (start as usize, len as usize);
    if len < 4 {
        return Err(BtfExtError::RecordSizeMissing { subsection });
    }
    // Non-native records must have exactly the known size, so that every
    // field is known and can be byte-swapped.
    let rec_size = read_u32(bytes, start, order);
    let is_native = order == Endianness::NATIVE;
    if (rec_size as usize) < min_rec_size
        || (!is_native && rec_size as usize != min_rec_size)
        || !rec_size.is_multiple_of(4)
    {
        return Err(BtfExtError::BadRecordSize {
            subsection,
            rec_size,
        });
    }
    let mut at = start + 4;
    let mut left = len - 4;
    if left == 0 {
        return Err(BtfExtError::NoRecords { subsection });
    }
    let mut sections = Vec::new();
    while left > 0 {
        if left < 8 {
            return Err(BtfExtError::SectionHeaderTruncated { subsection });
        }
        let sec_name_off = read_u32(bytes, at, order);
        let num_info = read_u32(bytes, at + 4, order);
        let block = 8 + u64::from(num_info) * u64::from(rec_size);
        if num_info == 0 || block > left as u64 {
            return Err(BtfExtError::BadRecordCount {
                subsection,
                num_info,
            });
        }
        sections.push(SectionIndex {
            sec_name_off,
            num_info,
            records_start: at + 8,
        });
        at += block as usize;
        left -= block as usize;
    }
    Ok(Some(SubsectionIndex {
        rec_size,
        start,
        len,
        sections,
    }))
}

/// One info subsection of a [`BtfExt`], with records of type `R`.
pub struct ExtInfo<'a, R> {
    blob: &'a AlignedBytes,
    index: &'a SubsectionIndex,
    record: PhantomData<R>,
}

impl<'a, R: KernelRecord> ExtInfo<'a, R> {
    /// Bytes per record, at least `size_of::<R>()`.
    pub fn record_size(&self) -> u32 {
        self.index.rec_size
    }

    /// The per-ELF-section blocks, in file order.
    pub fn sections(&self) -> impl ExactSizeIterator<Item = ExtSection<'a, R>> + 'a {
        let (blob, rec_size) = (self.blob, self.index.rec_size);
        self.index.sections.iter().map(move |index| ExtSection {
            blob,
            index,
            rec_size,
            record: PhantomData,
        })
    }

    /// Records over all sections.
    pub fn record_count(&self) -> usize {
        self.index
            .sections
            .iter()
            .map(|s| s.num_info as usize)
            .sum()
    }

    /// The subsection after its record size word: what libbpf's
    /// `btf_ext_info.info` points to (`len` is this slice's length).
    pub fn raw_bytes(&self) -> &'a [u8] {
        let start = self.index.start + 4;
        self.blob
            .bytes()
            .get(start..start + self.index.len - 4)
            .unwrap_or_default()
    }
}

/// One ELF section's block of records.
pub struct ExtSection<'a, R> {
    blob: &'a AlignedBytes,
    index: &'a SectionIndex,
    rec_size: u32,
    record: PhantomData<R>,
}

impl<'a, R: KernelRecord> ExtSection<'a, R> {
    /// String offset (in `.BTF`) of the ELF section's name.
    pub fn sec_name_off(&self) -> u32 {
        self.index.sec_name_off
    }

    /// The ELF section's name, looked up in the object's `.BTF`.
    pub fn sec_name<'b>(&self, btf: &'b Btf) -> Option<&'b str> {
        btf.name_by_offset(self.index.sec_name_off)
    }

    /// `num_info`.
    pub fn len(&self) -> usize {
        self.index.num_info as usize
    }

    /// Always false for parsed data (libbpf refuses empty blocks).
    pub fn is_empty(&self) -> bool {
        self.index.num_info == 0
    }

    /// The known prefix of record `i`.
    pub fn get(&self, i: usize) -> Option<&'a R> {
        if i >= self.len() {
            return None;
        }
        let at = self.index.records_start + i * self.rec_size as usize;
        record::<R>(self.blob.words(at, words_of::<R>())?)
    }

    pub fn records(&self) -> impl Iterator<Item = &'a R> + '_ {
        (0..self.len()).filter_map(move |i| self.get(i))
    }

    /// All records' bytes, `record_size` bytes each, as the kernel takes
    /// them.
    pub fn raw_records(&self) -> &'a [u8] {
        let start = self.index.records_start;
        let len = self.len() * self.rec_size as usize;
        self.blob
            .words(start, len / 4)
            .map(word_bytes)
            .unwrap_or_default()
    }
}
