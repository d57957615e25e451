//! Building and extending BTF, with libbpf's semantics: [`Btf::new_empty`],
//! [`Btf::add_str`], [`Btf::find_str`] and the `btf__add_*` family
//! ([`Btf::add_int`], [`Btf::add_struct`] + [`Btf::add_field`], ...,
//! [`Btf::add_type`], [`Btf::add_btf`]).
//!
//! The first edit of a parsed `Btf` moves its type and string sections out
//! of the blob into growable vectors ([`EditedSections`]), as libbpf's
//! `btf_ensure_modifiable` does; the header is kept and the fields libbpf
//! maintains (`type_len`, `str_off`, `str_len`) are updated with every
//! addition. [`Btf::raw_data`] then assembles header, types and strings on
//! demand and keeps the result until the next edit. Every lookup of
//! [`Btf`] works the same on both forms.
//!
//! As in libbpf, types may refer to ids that do not exist yet (they are
//! only checked to be in `0..=BTF_MAX_NR_TYPES`), and anything handed out
//! before an edit (a `TypeRef`, a string or raw-data pointer) belongs to
//! the old state: Rust's borrows enforce it here, C callers are told so by
//! libbpf's documentation.

use std::sync::{Arc, OnceLock};

use thiserror::Error;

use crate::aligned::AlignedBytes;
use crate::btf::{Btf, Sections};
use crate::header::MIN_HEADER_LEN;
use crate::strset::StrIndex;
use crate::type_section::{record_words, HEAD_WORDS};
use crate::uapi::{
    BtfKind, BtfType, Endianness, BTF_INT_BOOL, BTF_INT_CHAR, BTF_INT_SIGNED, BTF_MAX_NR_TYPES,
    BTF_MAX_STR_OFFSET,
};

const EINVAL: i32 = 22;
const ENOMEM: i32 = 12;
const E2BIG: i32 = 7;
const EOPNOTSUPP: i32 = 95;

/// libbpf's `BTF_MAX_VLEN`: `btf_type_info` keeps 16 bits of `vlen`.
const LIBBPF_VLEN_MASK: u32 = 0xffff;

/// Why an edit was refused. [`EditError::errno`] is libbpf's answer.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum EditError {
    /// An argument libbpf rejects with `EINVAL`.
    #[error("invalid argument: {0}")]
    Invalid(&'static str),
    /// `btf__add_enum_value` with a value outside `INT_MIN..=UINT_MAX`.
    #[error("enum value {0} does not fit in 32 bits")]
    EnumValueTooLarge(i64),
    /// A section would outgrow what libbpf can allocate.
    #[error("BTF {0} section is full")]
    SectionFull(&'static str),
    /// `btf__add_btf` of split BTF whose base is not ours.
    #[error("cannot append split BTF on a different base")]
    DifferentBase,
    /// BTF whose layout this crate cannot re-assemble (a layout section, or
    /// a header shorter than 24 bytes).
    #[error("this BTF cannot be modified: {0}")]
    NotModifiable(&'static str),
}

impl EditError {
    /// The errno libbpf returns for this condition.
    pub fn errno(&self) -> i32 {
        match self {
            EditError::Invalid(_) => EINVAL,
            EditError::EnumValueTooLarge(_) => E2BIG,
            EditError::SectionFull(_) => ENOMEM,
            EditError::DifferentBase => EOPNOTSUPP,
            EditError::NotModifiable(_) => EOPNOTSUPP,
        }
    }
}

/// The sections of an edited [`Btf`].
#[derive(Clone, Debug)]
pub(crate) struct EditedSections {
    /// The header's `hdr_len` bytes as parsed (native order); the known
    /// fields are written over them when the blob is assembled, so unknown
    /// trailing header bytes survive, as in libbpf.
    header_bytes: Vec<u8>,
    pub(crate) types: Vec<u32>,
    pub(crate) strings: Vec<u8>,
    /// The assembled blob (native order), built on demand.
    raw: OnceLock<AlignedBytes>,
}

impl EditedSections {
    /// Header, types and strings, one after the other, in byte order
    /// `order` (libbpf's `btf_get_raw_data`).
    pub(crate) fn assemble(&self, header: &crate::BtfHeader, order: Endianness) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(self.header_bytes.len() + self.types.len() * 4 + self.strings.len());
        out.extend_from_slice(&self.header_bytes);
        header.write_to(&mut out, order);
        for &word in &self.types {
            let word = match order == Endianness::NATIVE {
                true => word,
                false => word.swap_bytes(),
            };
            out.extend_from_slice(&word.to_ne_bytes());
        }
        out.extend_from_slice(&self.strings);
        out
    }

    /// The assembled blob in native order, kept until the next edit.
    pub(crate) fn raw_data(&self, header: &crate::BtfHeader) -> &[u8] {
        self.raw
            .get_or_init(|| {
                AlignedBytes::copy_with_aligned_offset(
                    &self.assemble(header, Endianness::NATIVE),
                    0,
                )
            })
            .bytes()
    }

    /// Drops the assembled blob (every edit does).
    pub(crate) fn invalidate_raw(&mut self) {
        self.raw = OnceLock::new();
    }
}

/// A `btf_type` info word as libbpf's `btf_type_info` builds it.
fn info(kind: BtfKind, vlen: u32, kind_flag: bool) -> u32 {
    (u32::from(kind_flag) << 31) | (u32::from(kind.to_raw()) << 24) | (vlen & LIBBPF_VLEN_MASK)
}

/// libbpf's `validate_type_id`: references may point forward, but must
/// look like ids.
fn check_id(id: i32) -> Result<u32, EditError> {
    match u32::try_from(id) {
        Ok(id) if id <= BTF_MAX_NR_TYPES => Ok(id),
        _ => Err(EditError::Invalid("type id out of range")),
    }
}

/// A name libbpf requires (`str_is_empty` refused).
fn required(name: &[u8]) -> Result<&[u8], EditError> {
    match name.is_empty() {
        true => Err(EditError::Invalid("empty name")),
        false => Ok(name),
    }
}

/// `BTF_FWD_STRUCT` / `BTF_FWD_UNION` / `BTF_FWD_ENUM`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FwdKind {
    Struct,
    Union,
    Enum,
}

impl Btf {
    /// An empty BTF: no types, the string section holding only `""`
    /// (`btf__new_empty`). Its pointer size is the host's, as libbpf sets.
    pub fn new_empty() -> Btf {
        Btf::empty_with_base(None)
    }

    /// An empty split BTF on top of `base` (`btf__new_empty_split`): type
    /// ids continue after the base's, the string section starts empty, and
    /// the byte order follows the base's.
    pub fn new_empty_split(base: Arc<Btf>) -> Btf {
        Btf::empty_with_base(Some(base))
    }

    fn empty_with_base(base: Option<Arc<Btf>>) -> Btf {
        Btf::empty(base, std::mem::size_of::<usize>() as u32)
    }

    /// The string `s` (without its NUL) in this BTF's string section or its
    /// base's: its offset (`btf__find_str`). `None` (libbpf's `-ENOENT`) if
    /// no string there equals `s`. Like libbpf, only whole strings count,
    /// not tails of longer ones.
    pub fn find_str(&self, s: &[u8]) -> Option<u32> {
        if let Some(off) = self.base.as_ref().and_then(|b| b.find_str(s)) {
            return Some(off);
        }
        if s.contains(&0) {
            return None;
        }
        let off = self.str_index().find(self.strings(), s)?;
        Some(self.start_str_off + off)
    }

    /// Adds `s` (without its NUL) to the string section unless it (or the
    /// base) has it already (`btf__add_str`); returns its offset.
    pub fn add_str(&mut self, s: &[u8]) -> Result<u32, EditError> {
        if s.contains(&0) {
            return Err(EditError::Invalid("string contains NUL"));
        }
        if let Some(off) = self.base.as_ref().and_then(|b| b.find_str(s)) {
            return Ok(off);
        }
        self.ensure_editable()?;
        if self.str_index.get().is_none() {
            self.str_index = OnceLock::from(StrIndex::build(self.strings()));
        }
        let (Sections::Edited(edited), Some(index)) =
            (&mut self.sections, self.str_index.get_mut())
        else {
            return Err(EditError::NotModifiable("internal state"));
        };
        if let Some(off) = index.find(&edited.strings, s) {
            return Ok(self.start_str_off + off);
        }
        let off = edited.strings.len();
        if off + s.len() + 1 > BTF_MAX_STR_OFFSET as usize {
            return Err(EditError::SectionFull("string"));
        }
        edited.strings.extend_from_slice(s);
        edited.strings.push(0);
        index.insert(&edited.strings, off as u32);
        self.header.str_len = edited.strings.len() as u32;
        Ok(self.start_str_off + off as u32)
    }

    /// `btf__add_str` for an optional name: 0 for an empty one.
    fn add_name(&mut self, name: &[u8]) -> Result<u32, EditError> {
        match name.is_empty() {
            true => Ok(0),
            false => self.add_str(name),
        }
    }

    /// Moves the sections out of the blob (once) and drops the assembled
    /// raw data (every time): libbpf's `btf_ensure_modifiable`.
    fn ensure_editable(&mut self) -> Result<&mut EditedSections, EditError> {
        if !matches!(self.sections, Sections::Edited(_)) {
            if self.header.layout_len != 0 {
                return Err(EditError::NotModifiable("it has a layout section"));
            }
            let hdr_len = self.header.hdr_len as usize;
            if hdr_len < MIN_HEADER_LEN as usize {
                return Err(EditError::NotModifiable("its header is too short"));
            }
            let header_bytes = self.raw_data().get(..hdr_len).unwrap_or_default().to_vec();
            let edited = EditedSections {
                header_bytes,
                types: self.type_words().to_vec(),
                strings: self.strings().to_vec(),
                raw: OnceLock::new(),
            };
            self.sections = Sections::Edited(Box::new(edited));
        }
        match &mut self.sections {
            Sections::Edited(edited) => {
                edited.invalidate_raw();
                Ok(edited)
            }
            Sections::Blob { .. } => Err(EditError::NotModifiable("internal state")),
        }
    }

    /// Appends a whole record (`btf_commit_type`); returns its id.
    fn commit_type(&mut self, record: &[u32]) -> Result<u32, EditError> {
        let edited = self.ensure_editable()?;
        if (edited.types.len() + record.len()) * 4 > u32::MAX as usize {
            return Err(EditError::SectionFull("type"));
        }
        edited.types.extend_from_slice(record);
        let end = edited.types.len() as u32;
        let bytes = record.len() as u32 * 4;
        self.type_offsets.push(end);
        self.header.type_len = self.header.type_len.wrapping_add(bytes);
        self.header.str_off = self.header.str_off.wrapping_add(bytes);
        self.name_index = OnceLock::new();
        Ok(self.type_count() - 1)
    }

    /// The head words of the last own type, if it is of one of `kinds`
    /// (libbpf's `btf_last_type` checks).
    fn last_type_kind(&self, kinds: &[BtfKind]) -> Result<BtfKind, EditError> {
        if self.own_type_count() == 0 {
            return Err(EditError::Invalid("no type to extend"));
        }
        let kind = self
            .type_by_id(self.type_count() - 1)
            .map(|t| t.kind())
            .ok_or(EditError::Invalid("no type to extend"))?;
        match kinds.contains(&kind) {
            true => Ok(kind),
            false => Err(EditError::Invalid("the last type is of another kind")),
        }
    }

    /// Appends `words` to the last own type's record and rewrites its info
    /// word with `update(info)`.
    fn extend_last(
        &mut self,
        words: &[u32],
        update: impl FnOnce(u32) -> u32,
    ) -> Result<(), EditError> {
        let start = *self
            .type_offsets
            .iter()
            .rev()
            .nth(1)
            .ok_or(EditError::Invalid("no type to extend"))? as usize;
        let edited = self.ensure_editable()?;
        if (edited.types.len() + words.len()) * 4 > u32::MAX as usize {
            return Err(EditError::SectionFull("type"));
        }
        edited.types.extend_from_slice(words);
        let end = edited.types.len() as u32;
        if let Some(info_word) = edited.types.get_mut(start + 1) {
            *info_word = update(*info_word);
        }
        if let Some(last) = self.type_offsets.last_mut() {
            *last = end;
        }
        let bytes = words.len() as u32 * 4;
        self.header.type_len = self.header.type_len.wrapping_add(bytes);
        self.header.str_off = self.header.str_off.wrapping_add(bytes);
        Ok(())
    }

    /// `btf__add_int`: `size` 1, 2, 4, 8 or 16 bytes, `encoding` a mix of
    /// `BTF_INT_SIGNED`, `BTF_INT_CHAR`, `BTF_INT_BOOL`.
    pub fn add_int(&mut self, name: &[u8], size: usize, encoding: i32) -> Result<u32, EditError> {
        required(name)?;
        if size == 0 || !size.is_power_of_two() || size > 16 {
            return Err(EditError::Invalid("INT size must be a power of 2 up to 16"));
        }
        let known = i32::from(BTF_INT_SIGNED | BTF_INT_CHAR | BTF_INT_BOOL);
        if encoding & !known != 0 {
            return Err(EditError::Invalid("unknown INT encoding"));
        }
        self.ensure_editable()?;
        let name_off = self.add_str(name)?;
        let int_info = ((encoding as u32) << 24) | (size as u32 * 8);
        self.commit_type(&[
            name_off,
            info(BtfKind::Int, 0, false),
            size as u32,
            int_info,
        ])
    }

    /// `btf__add_float`: sizes 2, 4, 8, 12 and 16.
    pub fn add_float(&mut self, name: &[u8], size: usize) -> Result<u32, EditError> {
        required(name)?;
        if ![2, 4, 8, 12, 16].contains(&size) {
            return Err(EditError::Invalid("unsupported FLOAT size"));
        }
        self.ensure_editable()?;
        let name_off = self.add_str(name)?;
        self.commit_type(&[name_off, info(BtfKind::Float, 0, false), size as u32])
    }

    /// PTR, TYPEDEF, CONST, VOLATILE, RESTRICT, TYPE_TAG, FWD, FUNC: a head
    /// referring to `ref_id` (libbpf's `btf_add_ref_kind`).
    fn add_ref_kind(
        &mut self,
        kind: BtfKind,
        name: &[u8],
        ref_id: i32,
        kind_flag: bool,
    ) -> Result<u32, EditError> {
        let ref_id = check_id(ref_id)?;
        self.ensure_editable()?;
        let name_off = self.add_name(name)?;
        self.commit_type(&[name_off, info(kind, 0, kind_flag), ref_id])
    }

    /// `btf__add_ptr`.
    pub fn add_ptr(&mut self, ref_id: i32) -> Result<u32, EditError> {
        self.add_ref_kind(BtfKind::Ptr, b"", ref_id, false)
    }

    /// `btf__add_typedef`.
    pub fn add_typedef(&mut self, name: &[u8], ref_id: i32) -> Result<u32, EditError> {
        required(name)?;
        self.add_ref_kind(BtfKind::Typedef, name, ref_id, false)
    }

    /// `btf__add_volatile`.
    pub fn add_volatile(&mut self, ref_id: i32) -> Result<u32, EditError> {
        self.add_ref_kind(BtfKind::Volatile, b"", ref_id, false)
    }

    /// `btf__add_const`.
    pub fn add_const(&mut self, ref_id: i32) -> Result<u32, EditError> {
        self.add_ref_kind(BtfKind::Const, b"", ref_id, false)
    }

    /// `btf__add_restrict`.
    pub fn add_restrict(&mut self, ref_id: i32) -> Result<u32, EditError> {
        self.add_ref_kind(BtfKind::Restrict, b"", ref_id, false)
    }

    /// `btf__add_type_tag`.
    pub fn add_type_tag(&mut self, value: &[u8], ref_id: i32) -> Result<u32, EditError> {
        required(value)?;
        self.add_ref_kind(BtfKind::TypeTag, value, ref_id, false)
    }

    /// `btf__add_type_attr`: a TYPE_TAG with the kind flag set.
    pub fn add_type_attr(&mut self, value: &[u8], ref_id: i32) -> Result<u32, EditError> {
        required(value)?;
        self.add_ref_kind(BtfKind::TypeTag, value, ref_id, true)
    }

    /// `btf__add_fwd`: a FWD (struct or union), or an ENUM of size 4 with
    /// no values for an enum.
    pub fn add_fwd(&mut self, name: &[u8], kind: FwdKind) -> Result<u32, EditError> {
        required(name)?;
        match kind {
            FwdKind::Struct => self.add_ref_kind(BtfKind::Fwd, name, 0, false),
            FwdKind::Union => self.add_ref_kind(BtfKind::Fwd, name, 0, true),
            FwdKind::Enum => self.add_enum(name, 4),
        }
    }

    /// `btf__add_func`: `linkage` is `BTF_FUNC_STATIC`, `_GLOBAL` or
    /// `_EXTERN`, stored in `vlen`.
    pub fn add_func(&mut self, name: &[u8], linkage: u32, proto_id: i32) -> Result<u32, EditError> {
        required(name)?;
        if linkage > crate::uapi::BTF_FUNC_EXTERN {
            return Err(EditError::Invalid("unknown FUNC linkage"));
        }
        let id = self.add_ref_kind(BtfKind::Func, name, proto_id, false)?;
        // The record is the last one: rewrite its info with the linkage.
        self.extend_last(&[], |_| info(BtfKind::Func, linkage, false))?;
        Ok(id)
    }

    /// `btf__add_array`.
    pub fn add_array(
        &mut self,
        index_id: i32,
        elem_id: i32,
        nelems: u32,
    ) -> Result<u32, EditError> {
        let index_id = check_id(index_id)?;
        let elem_id = check_id(elem_id)?;
        self.commit_type(&[
            0,
            info(BtfKind::Array, 0, false),
            0,
            elem_id,
            index_id,
            nelems,
        ])
    }

    fn add_composite(&mut self, kind: BtfKind, name: &[u8], size: u32) -> Result<u32, EditError> {
        self.ensure_editable()?;
        let name_off = self.add_name(name)?;
        self.commit_type(&[name_off, info(kind, 0, false), size])
    }

    /// `btf__add_struct`: members follow with [`Btf::add_field`].
    pub fn add_struct(&mut self, name: &[u8], size: u32) -> Result<u32, EditError> {
        self.add_composite(BtfKind::Struct, name, size)
    }

    /// `btf__add_union`: members follow with [`Btf::add_field`].
    pub fn add_union(&mut self, name: &[u8], size: u32) -> Result<u32, EditError> {
        self.add_composite(BtfKind::Union, name, size)
    }

    /// `btf__add_field`: a member of the last type, which must be a STRUCT
    /// or UNION. A bitfield (`bit_size` > 0, or an offset that is not a
    /// whole byte) sets the kind flag.
    pub fn add_field(
        &mut self,
        name: &[u8],
        type_id: i32,
        bit_offset: u32,
        bit_size: u32,
    ) -> Result<(), EditError> {
        let kind = self.last_type_kind(&[BtfKind::Struct, BtfKind::Union])?;
        let type_id = check_id(type_id)?;
        let is_bitfield = bit_size != 0 || !bit_offset.is_multiple_of(8);
        if is_bitfield && (bit_size == 0 || bit_size > 255 || bit_offset > 0x00ff_ffff) {
            return Err(EditError::Invalid("bad bitfield offset or size"));
        }
        if kind == BtfKind::Union && bit_offset != 0 {
            return Err(EditError::Invalid("union members must be at offset 0"));
        }
        self.ensure_editable()?;
        let name_off = self.add_name(name)?;
        let offset = bit_offset | (bit_size << 24);
        self.extend_last(&[name_off, type_id, offset], |old| {
            let vlen = (old & LIBBPF_VLEN_MASK) + 1;
            info(kind, vlen, is_bitfield || old >> 31 != 0)
        })
    }

    fn add_enum_common(
        &mut self,
        kind: BtfKind,
        name: &[u8],
        size: u32,
        is_signed: bool,
    ) -> Result<u32, EditError> {
        if size == 0 || !size.is_power_of_two() || size > 8 {
            return Err(EditError::Invalid("enum size must be a power of 2 up to 8"));
        }
        self.ensure_editable()?;
        let name_off = self.add_name(name)?;
        self.commit_type(&[name_off, info(kind, 0, is_signed), size])
    }

    /// `btf__add_enum`: unsigned until a negative value is added.
    pub fn add_enum(&mut self, name: &[u8], size: u32) -> Result<u32, EditError> {
        self.add_enum_common(BtfKind::Enum, name, size, false)
    }

    /// `btf__add_enum_value`: a value of the last type, an ENUM; values
    /// must fit in `INT_MIN..=UINT_MAX`, and a negative one makes the enum
    /// signed.
    pub fn add_enum_value(&mut self, name: &[u8], value: i64) -> Result<(), EditError> {
        self.last_type_kind(&[BtfKind::Enum])?;
        required(name)?;
        if value < i64::from(i32::MIN) || value > i64::from(u32::MAX) {
            return Err(EditError::EnumValueTooLarge(value));
        }
        self.ensure_editable()?;
        let name_off = self.add_str(name)?;
        self.extend_last(&[name_off, value as u32], |old| {
            let vlen = (old & LIBBPF_VLEN_MASK) + 1;
            info(BtfKind::Enum, vlen, value < 0 || old >> 31 != 0)
        })
    }

    /// `btf__add_enum64`.
    pub fn add_enum64(
        &mut self,
        name: &[u8],
        size: u32,
        is_signed: bool,
    ) -> Result<u32, EditError> {
        self.add_enum_common(BtfKind::Enum64, name, size, is_signed)
    }

    /// `btf__add_enum64_value`: a value of the last type, an ENUM64.
    pub fn add_enum64_value(&mut self, name: &[u8], value: u64) -> Result<(), EditError> {
        self.last_type_kind(&[BtfKind::Enum64])?;
        required(name)?;
        self.ensure_editable()?;
        let name_off = self.add_str(name)?;
        self.extend_last(&[name_off, value as u32, (value >> 32) as u32], |old| {
            let vlen = (old & LIBBPF_VLEN_MASK) + 1;
            info(BtfKind::Enum64, vlen, old >> 31 != 0)
        })
    }

    /// `btf__add_func_proto`: parameters follow with
    /// [`Btf::add_func_param`].
    pub fn add_func_proto(&mut self, return_id: i32) -> Result<u32, EditError> {
        let return_id = check_id(return_id)?;
        self.commit_type(&[0, info(BtfKind::FuncProto, 0, false), return_id])
    }

    /// `btf__add_func_param`: a parameter of the last type, a FUNC_PROTO.
    pub fn add_func_param(&mut self, name: &[u8], type_id: i32) -> Result<(), EditError> {
        let type_id = check_id(type_id)?;
        self.last_type_kind(&[BtfKind::FuncProto])?;
        self.ensure_editable()?;
        let name_off = self.add_name(name)?;
        self.extend_last(&[name_off, type_id], |old| {
            let vlen = (old & LIBBPF_VLEN_MASK) + 1;
            info(BtfKind::FuncProto, vlen, old >> 31 != 0)
        })
    }

    /// `btf__add_var`: `linkage` is one of `BTF_VAR_*`.
    pub fn add_var(&mut self, name: &[u8], linkage: i32, type_id: i32) -> Result<u32, EditError> {
        required(name)?;
        let linkage = match u32::try_from(linkage) {
            Ok(l) if l <= crate::uapi::BTF_VAR_GLOBAL_EXTERN => l,
            _ => return Err(EditError::Invalid("unknown VAR linkage")),
        };
        let type_id = check_id(type_id)?;
        self.ensure_editable()?;
        let name_off = self.add_str(name)?;
        self.commit_type(&[name_off, info(BtfKind::Var, 0, false), type_id, linkage])
    }

    /// `btf__add_datasec`: variables follow with
    /// [`Btf::add_datasec_var_info`].
    pub fn add_datasec(&mut self, name: &[u8], size: u32) -> Result<u32, EditError> {
        required(name)?;
        self.ensure_editable()?;
        let name_off = self.add_str(name)?;
        self.commit_type(&[name_off, info(BtfKind::Datasec, 0, false), size])
    }

    /// `btf__add_datasec_var_info`: a variable of the last type, a DATASEC.
    pub fn add_datasec_var_info(
        &mut self,
        var_id: i32,
        offset: u32,
        size: u32,
    ) -> Result<(), EditError> {
        self.last_type_kind(&[BtfKind::Datasec])?;
        let var_id = check_id(var_id)?;
        self.extend_last(&[var_id, offset, size], |old| {
            let vlen = (old & LIBBPF_VLEN_MASK) + 1;
            info(BtfKind::Datasec, vlen, old >> 31 != 0)
        })
    }

    fn add_decl_tag_common(
        &mut self,
        value: &[u8],
        ref_id: i32,
        component_idx: i32,
        kind_flag: bool,
    ) -> Result<u32, EditError> {
        if value.is_empty() || component_idx < -1 {
            return Err(EditError::Invalid("empty tag or bad component index"));
        }
        let ref_id = check_id(ref_id)?;
        self.ensure_editable()?;
        let value_off = self.add_str(value)?;
        self.commit_type(&[
            value_off,
            info(BtfKind::DeclTag, 0, kind_flag),
            ref_id,
            component_idx as u32,
        ])
    }

    /// `btf__add_decl_tag`: `component_idx` -1 tags `ref_id` itself.
    pub fn add_decl_tag(
        &mut self,
        value: &[u8],
        ref_id: i32,
        component_idx: i32,
    ) -> Result<u32, EditError> {
        self.add_decl_tag_common(value, ref_id, component_idx, false)
    }

    /// `btf__add_decl_attr`: a DECL_TAG with the kind flag set.
    pub fn add_decl_attr(
        &mut self,
        value: &[u8],
        ref_id: i32,
        component_idx: i32,
    ) -> Result<u32, EditError> {
        self.add_decl_tag_common(value, ref_id, component_idx, true)
    }

    /// How many 32-bit words the record starting with `head` takes (libbpf's
    /// `btf_type_size`), for callers that only have a pointer to a type
    /// (`btf__add_type`). `None` for kinds only a layout section describes.
    pub fn record_words_of(head: &BtfType) -> Option<usize> {
        match BtfKind::from_raw(head.kind_raw()) {
            BtfKind::Unkn | BtfKind::Other(_) => None,
            _ => record_words(head, 0, None).ok(),
        }
    }

    /// `btf__add_type`: appends a copy of `record` (a type of `src`: its
    /// head and trailing data), its strings added here from `src`; type ids
    /// are copied as they are.
    pub fn add_type(&mut self, src: &Btf, record: &[u32]) -> Result<u32, EditError> {
        let head = crate::aligned::record::<BtfType>(record)
            .ok_or(EditError::Invalid("truncated type record"))?;
        let kind = BtfKind::from_raw(head.kind_raw());
        let len = Btf::record_words_of(head).ok_or(EditError::Invalid("unknown kind"))?;
        let mut record = record
            .get(..len)
            .ok_or(EditError::Invalid("truncated type record"))?
            .to_vec();
        self.ensure_editable()?;
        for_each_str_off(kind, &mut record, |off| {
            if *off == 0 {
                return Ok(());
            }
            let s = src
                .str_by_offset(*off)
                .ok_or(EditError::Invalid("bad source string offset"))?;
            *off = self.add_str(s.to_bytes())?;
            Ok(())
        })?;
        self.commit_type(&record)
    }

    /// `btf__add_btf`: appends all of `src`'s own types (strings added
    /// here, type ids shifted to follow ours); returns the id of the first.
    /// Split `src` must share our base.
    pub fn add_btf(&mut self, src: &Btf) -> Result<u32, EditError> {
        if let Some(src_base) = &src.base {
            let same = self.base.as_ref().is_some_and(|b| Arc::ptr_eq(b, src_base));
            if !same {
                return Err(EditError::DifferentBase);
            }
        }
        let src_start_id = src.start_id;
        self.ensure_editable()?;
        let first_id = self.type_count();
        let shift = first_id.wrapping_sub(src_start_id);
        let mut records = Vec::with_capacity(src.own_type_count() as usize);
        let mut strings = std::collections::HashMap::new();
        for t in src.own_types() {
            let kind = t.kind();
            if matches!(kind, BtfKind::Other(_) | BtfKind::Unkn) {
                return Err(EditError::Invalid("unknown kind"));
            }
            let mut record = t.record_words().to_vec();
            for_each_str_off(kind, &mut record, |off| {
                if *off == 0 || *off < src.start_str_off {
                    return Ok(()); // empty, or the shared base's
                }
                if let Some(&mapped) = strings.get(off) {
                    *off = mapped;
                    return Ok(());
                }
                let s = src
                    .str_by_offset(*off)
                    .ok_or(EditError::Invalid("bad source string offset"))?;
                let mapped = self.add_str(s.to_bytes())?;
                strings.insert(*off, mapped);
                *off = mapped;
                Ok(())
            })?;
            for_each_type_id(kind, &mut record, |id| {
                if *id != 0 && *id >= src_start_id {
                    *id = id.wrapping_add(shift);
                }
            });
            records.push(record);
        }
        for record in &records {
            self.commit_type(record)?;
        }
        Ok(first_id)
    }

    /// Sets the byte order [`Btf::raw_data_in`] callers should use
    /// (`btf__set_endianness`); the data itself stays native.
    pub fn set_endianness(&mut self, order: Endianness) {
        self.endianness = order;
    }
}

/// The string offsets of a record (libbpf's `BTF_FIELD_ITER_STRS`), in
/// order: the name, then each member's, value's or parameter's.
fn for_each_str_off(
    kind: BtfKind,
    record: &mut [u32],
    mut f: impl FnMut(&mut u32) -> Result<(), EditError>,
) -> Result<(), EditError> {
    if kind == BtfKind::Unkn {
        return Ok(());
    }
    if let Some(name) = record.first_mut() {
        f(name)?;
    }
    let stride = match kind {
        BtfKind::Struct | BtfKind::Union | BtfKind::Enum64 => 3,
        BtfKind::Enum | BtfKind::FuncProto => 2,
        _ => return Ok(()),
    };
    let head = HEAD_WORDS.min(record.len());
    for element in record[head..].chunks_exact_mut(stride) {
        f(&mut element[0])?;
    }
    Ok(())
}

/// The type ids a record refers to (libbpf's `BTF_FIELD_ITER_IDS`).
fn for_each_type_id(kind: BtfKind, record: &mut [u32], mut f: impl FnMut(&mut u32)) {
    let (head, rest) = record.split_at_mut(HEAD_WORDS.min(record.len()));
    match kind {
        BtfKind::Fwd
        | BtfKind::Const
        | BtfKind::Volatile
        | BtfKind::Restrict
        | BtfKind::Ptr
        | BtfKind::Typedef
        | BtfKind::Func
        | BtfKind::Var
        | BtfKind::DeclTag
        | BtfKind::TypeTag => head.iter_mut().skip(2).for_each(f),
        BtfKind::Array => rest.iter_mut().take(2).for_each(f),
        BtfKind::Struct | BtfKind::Union => {
            rest.chunks_exact_mut(3).for_each(|m| f(&mut m[1]));
        }
        BtfKind::FuncProto => {
            head.iter_mut().skip(2).for_each(&mut f);
            rest.chunks_exact_mut(2).for_each(|p| f(&mut p[1]));
        }
        BtfKind::Datasec => rest.chunks_exact_mut(3).for_each(|v| f(&mut v[0])),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::TypeView;

    #[test]
    fn build_from_scratch_and_reparse() {
        let mut btf = Btf::new_empty();
        assert_eq!(btf.type_count(), 1);
        assert_eq!(
            btf.pointer_size(),
            Some(std::mem::size_of::<usize>() as u32)
        );
        let int = btf.add_int(b"int", 4, 1).unwrap();
        let ptr = btf.add_ptr(int as i32).unwrap();
        let s = btf.add_struct(b"pair", 16).unwrap();
        btf.add_field(b"a", int as i32, 0, 0).unwrap();
        btf.add_field(b"p", ptr as i32, 64, 0).unwrap();
        btf.add_field(b"bits", int as i32, 32, 3).unwrap();
        assert_eq!((int, ptr, s), (1, 2, 3));
        let e = btf.add_enum(b"e", 4).unwrap();
        btf.add_enum_value(b"NEG", -1).unwrap();
        assert_eq!(
            btf.add_enum_value(b"BIG", 1 << 32),
            Err(EditError::EnumValueTooLarge(1 << 32))
        );
        assert_eq!(btf.add_field(b"x", 1, 0, 0).unwrap_err().errno(), EINVAL);
        let t = btf.type_by_id(e).unwrap();
        assert!(t.kind_flag(), "a negative value makes the enum signed");

        let s_view = btf.type_by_id(s).unwrap();
        let TypeView::Struct(c) = s_view.view() else {
            panic!("not a struct")
        };
        assert_eq!(c.len(), 3);
        assert!(c.kind_flag);
        assert_eq!(c.member(2).unwrap().bitfield_size(), 3);
        assert_eq!(btf.find_by_name(b"pair"), Some(s));
        assert_eq!(btf.resolve_size(s).unwrap(), 16);

        // The assembled blob parses back to the same thing.
        let again = Btf::parse(btf.raw_data()).unwrap();
        assert_eq!(again.type_count(), btf.type_count());
        assert_eq!(again.types_section(), btf.types_section());
        assert_eq!(again.strings_section(), btf.strings_section());
    }

    #[test]
    fn strings_are_deduplicated_like_libbpf() {
        let mut btf = Btf::new_empty();
        assert_eq!(btf.add_str(b"").unwrap(), 0);
        let a = btf.add_str(b"alpha").unwrap();
        assert_eq!(a, 1);
        assert_eq!(btf.add_str(b"alpha").unwrap(), a);
        assert_eq!(btf.find_str(b"alpha"), Some(a));
        assert_eq!(btf.find_str(b"lpha"), None);
        assert_eq!(btf.name_by_offset(a), Some("alpha"));
        assert_eq!(btf.header().str_len, 7);
    }

    #[test]
    fn split_continues_ids_and_strings() {
        let mut base = Btf::new_empty();
        base.add_int(b"int", 4, 1).unwrap();
        let base = Arc::new(base);
        let mut split = Btf::new_empty_split(base.clone());
        assert_eq!(split.start_id(), 2);
        assert_eq!(split.add_str(b"int").unwrap(), 1, "found in the base");
        let off = split.add_str(b"own").unwrap();
        assert_eq!(off, base.header().str_len);
        let p = split.add_ptr(1).unwrap();
        assert_eq!(p, 2);
        assert_eq!(split.resolve_size(p).unwrap(), 8);
        let t = split.add_typedef(b"own", p as i32).unwrap();
        let mut copy = Btf::new_empty_split(base.clone());
        copy.add_int(b"pad", 1, 0).unwrap();
        assert_eq!(copy.add_btf(&split).unwrap(), 3);
        let copied = copy.type_by_id(t + 1).unwrap();
        assert_eq!(copied.name(), Some("own"));
        assert_eq!(copied.referenced_type(), Some(p + 1), "ids shifted");
        assert_eq!(copy.type_by_id(p + 1).unwrap().referenced_type(), Some(1));
    }

    #[test]
    fn editing_a_parsed_btf_keeps_its_types() {
        let mut src = Btf::new_empty();
        src.add_int(b"long", 8, 1).unwrap();
        let mut btf = Btf::parse(src.raw_data()).unwrap();
        let before = btf.raw_data().to_vec();
        let t = btf.add_typedef(b"my_long", 1).unwrap();
        assert_eq!(btf.resolve_type(t).unwrap(), 1);
        assert_eq!(btf.raw_data()[..4], before[..4]);
        assert_eq!(btf.header().type_len, 16 + 12);
        assert_eq!(btf.header().str_off, 28);
        let mut dst = Btf::new_empty();
        let record = btf.type_by_id(t).unwrap().record_words();
        let copied = dst.add_type(&btf, record).unwrap();
        assert_eq!(dst.type_by_id(copied).unwrap().name(), Some("my_long"));
    }
}
