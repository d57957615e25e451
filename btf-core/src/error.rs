//! Errors. Each carries the errno libbpf returns for the same condition
//! (`errno()`), so the C ABI layer can answer exactly as libbpf does.

use thiserror::Error;

use crate::uapi::BtfKind;

const EINVAL: i32 = 22;
pub(crate) const EIO: i32 = 5;
const ENOTSUP: i32 = 95;
const E2BIG: i32 = 7;

/// Which part of a `.BTF` blob an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BtfSection {
    Types,
    Strings,
    Layout,
}

impl std::fmt::Display for BtfSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BtfSection::Types => "type",
            BtfSection::Strings => "string",
            BtfSection::Layout => "layout",
        })
    }
}

/// Why a `.BTF` blob was refused (libbpf: `btf_parse_hdr`,
/// `btf_parse_str_sec`, `btf_parse_layout_sec`, `btf_parse_type_sec`,
/// `btf_sanity_check`), or why a type could not be modified.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum BtfError {
    #[error("BTF header not found: {len} bytes of data, at least 24 needed")]
    HeaderTruncated { len: usize },
    #[error("invalid BTF magic {magic:#06x}")]
    BadMagic { magic: u16 },
    #[error("can't load BTF with non-native endianness: unsupported header length {hdr_len}")]
    SwappedHeaderTooShort { hdr_len: u32 },
    #[error("BTF header length {hdr_len} larger than data size {len}")]
    HeaderLenTooLarge { hdr_len: u32, len: usize },
    #[error("BTF {section} section at {off} + {len} is beyond the end of the data ({available} bytes after the header)")]
    SectionOutOfBounds {
        section: BtfSection,
        off: u32,
        len: u32,
        available: usize,
    },
    #[error("invalid BTF sections layout: {first} data at {first_off} + {first_len} overlaps {second} data at {second_off}")]
    SectionsOverlap {
        first: BtfSection,
        first_off: u32,
        first_len: u32,
        second: BtfSection,
        second_off: u32,
    },
    #[error("BTF {section} section offset {off} is not aligned to 4 bytes")]
    SectionMisaligned { section: BtfSection, off: u32 },
    #[error("invalid BTF string section: empty")]
    StringSectionEmpty,
    #[error("invalid BTF string section: {len} bytes is too large")]
    StringSectionTooLarge { len: u32 },
    #[error("invalid BTF string section: last byte is not NUL")]
    StringSectionNotTerminated,
    #[error("malformed BTF string section: first string is not empty (did you forget to provide base BTF?)")]
    StringSectionNoEmptyString,
    #[error("invalid BTF layout section length {len}: not a multiple of 4")]
    LayoutSectionLength { len: u32 },
    #[error("BTF type [{type_id}]: unsupported kind {kind}")]
    UnknownKind { type_id: u32, kind: u8 },
    #[error("BTF type [{type_id}]: layout of kind {kind} has unsupported sizes (info {info_sz}, element {elem_sz})")]
    UnsupportedKindLayout {
        type_id: u32,
        kind: u8,
        info_sz: u8,
        elem_sz: u8,
    },
    #[error("BTF type [{type_id}] is malformed: its record ({size} bytes at offset {off}) runs past the type section")]
    TypeTruncated {
        type_id: u32,
        off: usize,
        size: usize,
    },
    #[error(
        "BTF types data is malformed: {trailing} trailing bytes at the end of the type section"
    )]
    TrailingTypeData { trailing: usize },
    #[error("too many BTF types (more than {max})")]
    TooManyTypes { max: u32 },
    #[error("BTF type [{type_id}]: invalid {what} (string offset {off})")]
    InvalidStringOffset {
        type_id: u32,
        what: &'static str,
        off: u32,
    },
    #[error("BTF type [{type_id}]: invalid referenced type ID {referenced}")]
    InvalidTypeReference { type_id: u32, referenced: u32 },
    #[error("BTF type [{type_id}]: referenced type [{referenced}] is not FUNC_PROTO")]
    FuncWithoutProto { type_id: u32, referenced: u32 },
    #[error("type [{type_id}] is not in this BTF's own types")]
    NotOwnType { type_id: u32 },
    #[error("modifying type [{type_id}] changed its record size from {before} to {after} bytes")]
    RecordSizeChanged {
        type_id: u32,
        before: usize,
        after: usize,
    },
    /// Reading a BTF file failed ([`crate::Btf::load_file`]).
    #[error("{path}: {message}")]
    Io {
        path: String,
        message: String,
        errno: i32,
    },
}

impl BtfError {
    /// The errno libbpf returns for this condition.
    pub fn errno(&self) -> i32 {
        match self {
            BtfError::SwappedHeaderTooShort { .. } => ENOTSUP,
            BtfError::Io { errno, .. } => *errno,
            _ => EINVAL,
        }
    }
}

/// Which info subsection of `.BTF.ext` an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtSubsection {
    FuncInfo,
    LineInfo,
    CoreRelo,
}

impl std::fmt::Display for ExtSubsection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ExtSubsection::FuncInfo => "func_info",
            ExtSubsection::LineInfo => "line_info",
            ExtSubsection::CoreRelo => "core_relo",
        })
    }
}

/// Why a `.BTF.ext` blob was refused (libbpf: `btf_ext_parse`,
/// `btf_ext_parse_sec_info`).
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum BtfExtError {
    #[error("BTF.ext header too short: {len} bytes")]
    HeaderTruncated { len: usize },
    #[error("invalid BTF.ext magic {magic:#06x}")]
    BadMagic { magic: u16 },
    #[error("unsupported BTF.ext version {version}")]
    UnsupportedVersion { version: u8 },
    #[error("unsupported BTF.ext flags {flags:#x}")]
    UnsupportedFlags { flags: u8 },
    #[error("BTF.ext header length {hdr_len} larger than data size {len}")]
    HeaderLenTooLarge { hdr_len: u32, len: usize },
    #[error("BTF.ext has no data after its header")]
    NoData,
    #[error("BTF.ext header of {hdr_len} bytes is missing func_info and line_info")]
    HeaderMissingInfo { hdr_len: u32 },
    #[error("BTF.ext {subsection} subsection offset {off} is not aligned to 4 bytes")]
    SubsectionMisaligned { subsection: ExtSubsection, off: u32 },
    #[error(
        "BTF.ext {subsection} subsection (off {off}, len {len}) is beyond the end of .BTF.ext"
    )]
    SubsectionOutOfBounds {
        subsection: ExtSubsection,
        off: u32,
        len: u32,
    },
    #[error("BTF.ext {subsection} record size not found")]
    RecordSizeMissing { subsection: ExtSubsection },
    #[error("BTF.ext {subsection} has invalid record size {rec_size}")]
    BadRecordSize {
        subsection: ExtSubsection,
        rec_size: u32,
    },
    #[error("BTF.ext {subsection} has no records")]
    NoRecords { subsection: ExtSubsection },
    #[error("BTF.ext {subsection} section header not found")]
    SectionHeaderTruncated { subsection: ExtSubsection },
    #[error("BTF.ext {subsection} section has incorrect num_records {num_info}")]
    BadRecordCount {
        subsection: ExtSubsection,
        num_info: u32,
    },
}

impl BtfExtError {
    /// The errno libbpf returns for this condition.
    pub fn errno(&self) -> i32 {
        match self {
            BtfExtError::UnsupportedVersion { .. } | BtfExtError::UnsupportedFlags { .. } => {
                ENOTSUP
            }
            _ => EINVAL,
        }
    }
}

/// Why a type query (size, alignment, resolution) has no answer.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum TypeError {
    #[error("type id {type_id} is out of range")]
    InvalidTypeId { type_id: u32 },
    #[error("type [{type_id}] ({kind}) has no size")]
    NoSize { type_id: u32, kind: BtfKind },
    #[error("size of type [{type_id}] does not fit in 32 bits")]
    SizeOverflow { type_id: u32 },
    #[error("type [{type_id}] ({kind}) has no alignment")]
    NoAlignment { type_id: u32, kind: BtfKind },
    #[error("type [{type_id}] resolves to void or a forward declaration")]
    ResolvesToVoid { type_id: u32 },
    #[error("resolving type [{type_id}] exceeded {depth} steps (loop or too deep)")]
    TooDeep { type_id: u32, depth: u32 },
    #[error("unsupported pointer size {size}: only 4 and 8 are")]
    BadPointerSize { size: u32 },
}

impl TypeError {
    /// The errno libbpf returns for this condition.
    pub fn errno(&self) -> i32 {
        match self {
            TypeError::SizeOverflow { .. } => E2BIG,
            _ => EINVAL,
        }
    }
}
