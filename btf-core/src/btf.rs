//! [`Btf`]: a parsed `.BTF` blob (vmlinux, module/split, or an object's
//! section), kept in the kernel's raw layout, with lookups by id, string
//! offset and name.

use std::borrow::Cow;
use std::ffi::CStr;
use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use crate::aligned::{record, records, swap_words, words_of, AlignedBytes};
use crate::co_re::essential_name;
use crate::edit::EditedSections;
use crate::error::{BtfError, EIO};
use crate::header::{BtfHeader, ParsedHeader, MIN_HEADER_LEN};
use crate::name_index::NameIndex;
use crate::strings::{c_str_at, check_string_section};
use crate::strset::StrIndex;
use crate::type_section::{index_types, record_words};
use crate::uapi::{BtfKind, BtfLayout, BtfType, Endianness, BTF_MAGIC, BTF_VERSION};
use crate::validate::sanity_check;
use crate::view::TypeRef;

/// A parsed `.BTF` blob.
///
/// The blob is copied once into word-aligned storage (converted to native
/// byte order if it was stored swapped) and never moves afterwards, so the
/// pointers from [`TypeRef::as_ptr`] and [`Btf::str_by_offset`] stay valid
/// for the life of the `Btf`, even if the `Btf` value itself is moved.
///
/// Split BTF (a kernel module's, on top of vmlinux) holds its base in an
/// [`Arc`]: its type ids continue after the base's last id and its string
/// offsets after the base's string section, and every lookup here covers
/// base and split types alike, as libbpf's do.
///
/// A `Btf` can also be built or extended type by type (`new_empty`,
/// `add_str`, `add_int`, ..., in the `edit` module): the first edit moves
/// the type and string sections out of the blob into growable storage, as
/// libbpf's `btf_ensure_modifiable` does. Pointers handed out before an
/// edit may dangle after it (libbpf documents the same).
pub struct Btf {
    pub(crate) sections: Sections,
    pub(crate) header: BtfHeader,
    pub(crate) endianness: Endianness,
    has_unknown_header_data: bool,
    pub(crate) base: Option<Arc<Btf>>,
    pub(crate) start_id: u32,
    pub(crate) start_str_off: u32,
    /// Word offset of each own type's record in the type section, plus one
    /// past the last record.
    pub(crate) type_offsets: Vec<u32>,
    /// Guessed like libbpf (`determine_ptr_size`, on first use) or set by
    /// the caller.
    pub(crate) pointer_size: OnceLock<Option<u32>>,
    pub(crate) name_index: OnceLock<NameIndex>,
    /// The string lookup index (`btf__find_str`, `btf__add_str`).
    pub(crate) str_index: OnceLock<StrIndex>,
}

/// Where the type and string sections live.
#[derive(Clone)]
pub(crate) enum Sections {
    /// As parsed: inside the blob.
    Blob {
        blob: AlignedBytes,
        /// The type section's whole words in `blob`'s storage.
        type_words: Range<usize>,
        /// The own string section's bytes in `blob`.
        strings: Range<usize>,
    },
    /// After the first edit: separately growable sections.
    Edited(Box<EditedSections>),
}

/// The head of the void type (id 0): libbpf hands out a pointer to an
/// all-zero `btf_type` for it too.
static VOID_RECORD: [u32; 3] = [0; 3];

impl Btf {
    /// Parses a standalone blob: vmlinux or an object file's `.BTF`.
    pub fn parse(bytes: &[u8]) -> Result<Btf, BtfError> {
        Btf::parse_with_base(bytes, None)
    }

    /// Parses split BTF (e.g. `/sys/kernel/btf/<module>`) on top of `base`.
    pub fn parse_split(bytes: &[u8], base: Arc<Btf>) -> Result<Btf, BtfError> {
        Btf::parse_with_base(bytes, Some(base))
    }

    /// Loads a raw BTF file such as `/sys/kernel/btf/vmlinux`, as libbpf's
    /// `btf__load_vmlinux_btf` does: files under `/sys/kernel/btf` are
    /// mapped read-only and parsed in place (no copy; the kernel's BTF pages
    /// never change), other files, or if the kernel refuses the mapping,
    /// are read straight into the word-aligned buffer (one copy).
    pub fn load_file(path: impl AsRef<Path>) -> Result<Btf, BtfError> {
        Btf::load_file_with_base(path.as_ref(), None)
    }

    /// [`Btf::load_file`] for split BTF (`/sys/kernel/btf/<module>`) on top
    /// of `base`.
    pub fn load_split_file(path: impl AsRef<Path>, base: Arc<Btf>) -> Result<Btf, BtfError> {
        Btf::load_file_with_base(path.as_ref(), Some(base))
    }

    fn load_file_with_base(path: &Path, base: Option<Arc<Btf>>) -> Result<Btf, BtfError> {
        let io = |e: std::io::Error| BtfError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
            errno: e.raw_os_error().unwrap_or(EIO),
        };
        let mut file = std::fs::File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        let mapped = match path.starts_with("/sys/kernel/btf") {
            true => AlignedBytes::map_sysfs(&file, len),
            false => None,
        };
        let blob = match mapped {
            Some(blob) => blob,
            None => AlignedBytes::read_file(&mut file, len.min(1 << 30)).map_err(io)?,
        };
        let parsed = BtfHeader::parse(blob.bytes())?;
        let anchor = parsed.header.types_range().start;
        let blob = match anchor.is_multiple_of(4) {
            true => blob,
            // Type records must be word-aligned: shift the blob (rare: a
            // header whose length is not a multiple of 4).
            false => AlignedBytes::copy_with_aligned_offset(blob.bytes(), anchor),
        };
        Btf::from_blob(blob, parsed, base)
    }

    fn parse_with_base(bytes: &[u8], base: Option<Arc<Btf>>) -> Result<Btf, BtfError> {
        let parsed = BtfHeader::parse(bytes)?;
        let blob = AlignedBytes::copy_with_aligned_offset(bytes, parsed.header.types_range().start);
        Btf::from_blob(blob, parsed, base)
    }

    /// An empty BTF, as libbpf's `btf_new_empty` builds it: a 24-byte
    /// header and, unless split, the empty string; no types. The byte order
    /// follows the base's, the pointer size is `pointer_size`.
    pub(crate) fn empty(base: Option<Arc<Btf>>, pointer_size: u32) -> Btf {
        let str_len = u32::from(base.is_none());
        let header = BtfHeader {
            magic: BTF_MAGIC,
            version: BTF_VERSION,
            hdr_len: MIN_HEADER_LEN,
            str_len,
            ..BtfHeader::default()
        };
        let hdr_len = MIN_HEADER_LEN as usize;
        let mut bytes = vec![0u8; hdr_len + str_len as usize];
        header.write_to(&mut bytes, Endianness::NATIVE);
        let blob = AlignedBytes::copy_with_aligned_offset(&bytes, 0);
        let (start_id, start_str_off, endianness) = match &base {
            Some(b) => (
                b.type_count(),
                b.start_str_off.saturating_add(b.header.str_len),
                b.endianness,
            ),
            None => (1, 0, Endianness::NATIVE),
        };
        Btf {
            sections: Sections::Blob {
                type_words: blob.word_range(hdr_len, 0).unwrap_or_default(),
                strings: hdr_len..hdr_len + str_len as usize,
                blob,
            },
            header,
            endianness,
            has_unknown_header_data: false,
            base,
            start_id,
            start_str_off,
            type_offsets: vec![0],
            pointer_size: OnceLock::from(Some(pointer_size)),
            name_index: OnceLock::new(),
            str_index: OnceLock::new(),
        }
    }

    /// Parses a blob whose type section starts on a word boundary.
    fn from_blob(
        mut blob: AlignedBytes,
        parsed: ParsedHeader,
        base: Option<Arc<Btf>>,
    ) -> Result<Btf, BtfError> {
        let ParsedHeader {
            header,
            endianness,
            has_unknown_data,
        } = parsed;
        let swapped = endianness != Endianness::NATIVE;

        let (start_id, start_str_off) = match &base {
            Some(base) => (
                base.type_count(),
                // Offsets of a split chain must stay addressable in 32 bits.
                (base.start_str_off)
                    .checked_add(base.header.str_len)
                    .ok_or(BtfError::StringSectionTooLarge {
                        len: base.header.str_len,
                    })?,
            ),
            None => (1, 0),
        };
        let strings = blob.bytes().get(header.strings_range()).unwrap_or_default();
        check_string_section(strings, base.is_some())?;
        if swapped {
            swap_sections(&mut blob, &header);
            header.write_to(blob.bytes_mut(), Endianness::NATIVE);
        }

        let types = header.types_range();
        let type_words = blob
            .word_range(types.start, types.len() / 4)
            .unwrap_or_default();
        let mut btf = Btf {
            sections: Sections::Blob {
                type_words,
                strings: header.strings_range(),
                blob,
            },
            header,
            endianness,
            has_unknown_header_data: has_unknown_data,
            base,
            start_id,
            start_str_off,
            type_offsets: Vec::new(),
            pointer_size: OnceLock::new(),
            name_index: OnceLock::new(),
            str_index: OnceLock::new(),
        };
        if !header.layout_len.is_multiple_of(4) {
            return Err(BtfError::LayoutSectionLength {
                len: header.layout_len,
            });
        }
        btf.type_offsets = index_types(
            btf.type_words(),
            header.type_len as usize,
            start_id,
            btf.kind_layouts(),
            swapped,
        )?;
        sanity_check(&btf)?;
        Ok(btf)
    }

    /// The header, in native byte order.
    pub fn header(&self) -> &BtfHeader {
        &self.header
    }

    /// The byte order the blob was stored in.
    pub fn endianness(&self) -> Endianness {
        self.endianness
    }

    /// Non-zero header bytes past the fields this crate knows (libbpf then
    /// refuses to modify the BTF).
    pub fn has_unknown_header_data(&self) -> bool {
        self.has_unknown_header_data
    }

    /// The base of split BTF.
    pub fn base(&self) -> Option<&Arc<Btf>> {
        self.base.as_ref()
    }

    /// The id of this BTF's first own type (1 unless split).
    pub fn start_id(&self) -> u32 {
        self.start_id
    }

    /// The string offset where this BTF's own string section starts (0
    /// unless split).
    pub fn start_str_offset(&self) -> u32 {
        self.start_str_off
    }

    /// One more than the highest valid type id, counting void and base
    /// types (`btf__type_cnt`).
    pub fn type_count(&self) -> u32 {
        self.start_id + self.own_type_count()
    }

    /// Types in this blob itself, without void and base types.
    pub fn own_type_count(&self) -> u32 {
        self.type_offsets.len().saturating_sub(1) as u32
    }

    /// This blob's own types, in id order.
    pub fn own_types(&self) -> impl ExactSizeIterator<Item = TypeRef<'_>> + '_ {
        let words = self.type_words();
        let start_id = self.start_id;
        self.type_offsets
            .windows(2)
            .enumerate()
            .map(move |(i, range)| {
                let record = words
                    .get(range[0] as usize..range[1] as usize)
                    .unwrap_or(&VOID_RECORD);
                TypeRef::new(self, start_id + i as u32, record)
            })
    }

    /// The type with id `type_id`, from this blob or its base; id 0 is void.
    /// `None` for ids at or past [`Btf::type_count`] (`btf__type_by_id`).
    pub fn type_by_id(&self, type_id: u32) -> Option<TypeRef<'_>> {
        if type_id == 0 {
            return Some(TypeRef::new(self, 0, &VOID_RECORD));
        }
        if type_id < self.start_id {
            return self.base.as_ref()?.type_by_id(type_id);
        }
        let index = (type_id - self.start_id) as usize;
        let start = *self.type_offsets.get(index)? as usize;
        let end = *self.type_offsets.get(index + 1)? as usize;
        let record = self.type_words().get(start..end)?;
        Some(TypeRef::new(self, type_id, record))
    }

    /// The kind of `type_id`, or `None` if out of range.
    pub fn kind_of(&self, type_id: u32) -> Option<BtfKind> {
        self.type_by_id(type_id).map(|t| t.kind())
    }

    /// The NUL-terminated string at `offset`, looked up in the base's string
    /// section for offsets below [`Btf::start_str_offset`]
    /// (`btf__str_by_offset`). Its pointer can be handed to C.
    pub fn str_by_offset(&self, offset: u32) -> Option<&CStr> {
        if offset < self.start_str_off {
            return self.base.as_ref()?.str_by_offset(offset);
        }
        c_str_at(self.strings(), (offset - self.start_str_off) as usize)
    }

    /// Where [`Btf::str_by_offset`]'s string starts, without looking for
    /// its end (sections end with NUL, so the C string is terminated):
    /// what `btf__str_by_offset` hands to C.
    pub fn str_ptr_by_offset(&self, offset: u32) -> Option<*const std::ffi::c_char> {
        if offset < self.start_str_off {
            return self.base.as_ref()?.str_ptr_by_offset(offset);
        }
        let tail = self
            .strings()
            .get((offset - self.start_str_off) as usize..)?;
        (!tail.is_empty()).then(|| tail.as_ptr().cast())
    }

    /// Whether [`Btf::str_by_offset`] finds a string at `offset`, without
    /// reading it: sections end with NUL, so any offset inside one starts a
    /// string.
    pub(crate) fn has_string_at(&self, offset: u32) -> bool {
        match offset.checked_sub(self.start_str_off) {
            Some(own) => (own as usize) < self.strings().len(),
            None => self.base.as_ref().is_some_and(|b| b.has_string_at(offset)),
        }
    }

    /// [`Btf::str_by_offset`] as UTF-8; `None` if absent or not UTF-8.
    pub fn name_by_offset(&self, offset: u32) -> Option<&str> {
        self.str_by_offset(offset)?.to_str().ok()
    }

    /// The id of the first type named `name`, base types first
    /// (`btf__find_by_name`). `"void"` is id 0.
    pub fn find_by_name(&self, name: impl AsRef<[u8]>) -> Option<u32> {
        self.find_from(1, name.as_ref(), None)
    }

    /// The id of the first type of `kind` named `name`
    /// (`btf__find_by_name_kind`). Like libbpf, `"void"` or kind
    /// [`BtfKind::Unkn`] give id 0.
    pub fn find_by_name_kind(&self, name: impl AsRef<[u8]>, kind: BtfKind) -> Option<u32> {
        self.find_from(1, name.as_ref(), Some(kind))
    }

    /// Like [`Btf::find_by_name_kind`] but only among this blob's own types
    /// (`btf__find_by_name_kind_own`).
    pub fn find_by_name_kind_own(&self, name: impl AsRef<[u8]>, kind: BtfKind) -> Option<u32> {
        self.find_from(self.start_id, name.as_ref(), Some(kind))
    }

    /// All ids (base types first) of types named `name`, of `kind` if given.
    /// CO-RE candidate search wants every match, not just the first.
    pub fn find_all_by_name(&self, name: impl AsRef<[u8]>, kind: Option<BtfKind>) -> Vec<u32> {
        let mut found = match &self.base {
            Some(base) => base.find_all_by_name(name.as_ref(), kind),
            None => Vec::new(),
        };
        found.extend(self.own_matches(name.as_ref(), kind));
        found
    }

    fn find_from(&self, start_id: u32, name: &[u8], kind: Option<BtfKind>) -> Option<u32> {
        if start_id < self.start_id {
            if let Some(id) = self
                .base
                .as_ref()
                .and_then(|b| b.find_from(start_id, name, kind))
            {
                return Some(id);
            }
        }
        if kind == Some(BtfKind::Unkn) || name == b"void" {
            return Some(0);
        }
        self.own_matches(name, kind).next()
    }

    /// Own types named `name` (of `kind` if given), in id order.
    fn own_matches<'a>(
        &'a self,
        name: &'a [u8],
        kind: Option<BtfKind>,
    ) -> Box<dyn Iterator<Item = u32> + 'a> {
        let matches = move |t: &TypeRef<'_>| {
            kind.is_none_or(|k| t.kind() == k)
                && self.str_by_offset(t.name_off()).map(CStr::to_bytes) == Some(name)
        };
        if name.is_empty() {
            // Anonymous types are not indexed: scan.
            return Box::new(self.own_types().filter(matches).map(|t| t.id()));
        }
        let index = self.name_index.get_or_init(|| NameIndex::build(self));
        Box::new(
            index
                .candidates(essential_name(name))
                .filter_map(|id| self.type_by_id(id))
                .filter(matches)
                .map(|t| t.id()),
        )
    }

    /// Own types whose names agree with `name` once `___flavor` suffixes
    /// are dropped from both (CO-RE's candidate rule, libbpf's
    /// `bpf_core_essential_name_len`), in id order, found through the name
    /// index. Anonymous types never match.
    pub fn own_essential_name_matches<'a>(
        &'a self,
        name: &'a [u8],
    ) -> impl Iterator<Item = TypeRef<'a>> + 'a {
        let essential = essential_name(name);
        let index =
            (!essential.is_empty()).then(|| self.name_index.get_or_init(|| NameIndex::build(self)));
        index
            .into_iter()
            .flat_map(move |index| index.candidates(essential))
            .filter_map(|id| self.type_by_id(id))
            .filter(move |t| {
                self.str_by_offset(t.name_off())
                    .is_some_and(|n| essential_name(n.to_bytes()) == essential)
            })
    }

    /// All ids (base types first) of types whose essential names agree
    /// with `name`'s (see [`Btf::own_essential_name_matches`]).
    pub fn find_all_by_essential_name(&self, name: impl AsRef<[u8]>) -> Vec<u32> {
        let name = name.as_ref();
        let mut found = match &self.base {
            Some(base) => base.find_all_by_essential_name(name),
            None => Vec::new(),
        };
        found.extend(self.own_essential_name_matches(name).map(|t| t.id()));
        found
    }

    /// Builds the name index now rather than on the first name lookup.
    pub fn build_name_index(&self) {
        self.name_index.get_or_init(|| NameIndex::build(self));
    }

    /// The pointer size libbpf would use: guessed from the size of a `long`
    /// type (`btf__pointer_size`) the first time it is needed, or as set.
    /// `None` if there is no `long`.
    pub fn pointer_size(&self) -> Option<u32> {
        *self.pointer_size.get_or_init(|| self.guess_pointer_size())
    }

    /// The pointer size for size and alignment computations: as guessed or
    /// set, else the host's (libbpf's `btf_ptr_sz`).
    pub fn effective_pointer_size(&self) -> u32 {
        self.pointer_size()
            .unwrap_or(std::mem::size_of::<usize>() as u32)
    }

    /// Overrides the pointer size (`btf__set_pointer_size`); 4 or 8 only.
    pub fn set_pointer_size(&mut self, size: u32) -> Result<(), crate::TypeError> {
        if size != 4 && size != 8 {
            return Err(crate::TypeError::BadPointerSize { size });
        }
        self.pointer_size = OnceLock::from(Some(size));
        Ok(())
    }

    /// The whole blob, in native byte order (`btf__raw_data` for native
    /// BTF). After an edit it is assembled (header, types, strings) on
    /// first use and kept until the next edit.
    pub fn raw_data(&self) -> &[u8] {
        match &self.sections {
            Sections::Blob { blob, .. } => blob.bytes(),
            Sections::Edited(edited) => edited.raw_data(&self.header),
        }
    }

    /// The whole blob in byte order `order` (`btf__raw_data` returns it in
    /// the order the BTF was stored in, see [`Btf::endianness`]).
    pub fn raw_data_in(&self, order: Endianness) -> Cow<'_, [u8]> {
        if order == Endianness::NATIVE {
            return Cow::Borrowed(self.raw_data());
        }
        match &self.sections {
            Sections::Blob { blob, .. } => {
                let mut swapped = blob.clone();
                from_native_order(&mut swapped, &self.header, order);
                Cow::Owned(swapped.bytes().to_vec())
            }
            Sections::Edited(edited) => Cow::Owned(edited.assemble(&self.header, order)),
        }
    }

    /// The type section's bytes (native order).
    pub fn types_section(&self) -> &[u8] {
        crate::aligned::word_bytes(self.type_words())
    }

    /// The own string section's bytes.
    pub fn strings_section(&self) -> &[u8] {
        self.strings()
    }

    /// The kind layout section, if the blob has one.
    pub fn layout_section(&self) -> Option<&[BtfLayout]> {
        let count = self.header.layout_len as usize / std::mem::size_of::<BtfLayout>();
        let Sections::Blob { blob, .. } = &self.sections else {
            return None; // BTF with a layout section is never edited
        };
        if count == 0 {
            return None;
        }
        let words = blob.words(
            self.header.layout_range().start,
            count * words_of::<BtfLayout>(),
        )?;
        records::<BtfLayout>(words, count)
    }

    /// Rewrites the record of own type `type_id` in place (a loader fixes up
    /// DATASEC sizes, or replaces kinds the kernel lacks). `edit` gets the
    /// whole record as native-order words: the `btf_type` head and its
    /// trailing data. The record must keep its size; if the edited head
    /// implies another size the change is undone and an error returned.
    pub fn modify_type(
        &mut self,
        type_id: u32,
        edit: impl FnOnce(&mut [u32]),
    ) -> Result<(), BtfError> {
        let not_own = BtfError::NotOwnType { type_id };
        let index = type_id
            .checked_sub(self.start_id)
            .filter(|_| type_id != 0)
            .ok_or(not_own.clone())? as usize;
        let (Some(&start), Some(&end)) = (
            self.type_offsets.get(index),
            self.type_offsets.get(index + 1),
        ) else {
            return Err(not_own);
        };
        let (start, end) = (start as usize, end as usize);
        let layouts: Option<Vec<BtfLayout>> = self.kind_layouts().map(<[_]>::to_vec);
        let words = self.type_words_mut().get_mut(start..end).ok_or(not_own)?;
        let before = words.to_vec();
        edit(words);
        let after = record::<BtfType>(words)
            .map(|head| record_words(head, type_id, layouts.as_deref()))
            .unwrap_or(Ok(0));
        if after != Ok(end - start) {
            words.copy_from_slice(&before);
            return Err(BtfError::RecordSizeChanged {
                type_id,
                before: (end - start) * 4,
                after: after.unwrap_or(0) * 4,
            });
        }
        // Names may have changed.
        self.name_index = OnceLock::new();
        if let Sections::Edited(edited) = &mut self.sections {
            edited.invalidate_raw();
        }
        Ok(())
    }

    /// Layouts that size unknown kinds: this blob's, else its base's.
    pub(crate) fn kind_layouts(&self) -> Option<&[BtfLayout]> {
        self.layout_section()
            .or_else(|| self.base.as_ref()?.kind_layouts())
    }

    /// Word offsets of the own records (see the field).
    pub(crate) fn type_offsets(&self) -> &[u32] {
        &self.type_offsets
    }

    pub(crate) fn type_words(&self) -> &[u32] {
        match &self.sections {
            Sections::Blob {
                blob, type_words, ..
            } => blob.storage().get(type_words.clone()).unwrap_or_default(),
            Sections::Edited(edited) => &edited.types,
        }
    }

    /// The type section's words, writable (a mapped blob is copied first).
    fn type_words_mut(&mut self) -> &mut [u32] {
        match &mut self.sections {
            Sections::Blob { blob, .. } => {
                let types = self.header.types_range();
                blob.words_mut(types.start, types.len() / 4)
                    .unwrap_or_default()
            }
            Sections::Edited(edited) => &mut edited.types,
        }
    }

    pub(crate) fn strings(&self) -> &[u8] {
        match &self.sections {
            Sections::Blob { blob, strings, .. } => {
                blob.bytes().get(strings.clone()).unwrap_or_default()
            }
            Sections::Edited(edited) => &edited.strings,
        }
    }

    /// The lookup index of the own string section, built on first use.
    pub(crate) fn str_index(&self) -> &StrIndex {
        self.str_index
            .get_or_init(|| StrIndex::build(self.strings()))
    }
}

impl Clone for Btf {
    /// A deep copy (sharing the base): an independent BTF that can be
    /// edited without affecting the original.
    fn clone(&self) -> Btf {
        let pointer_size = OnceLock::new();
        if let Some(&size) = self.pointer_size.get() {
            let _ = pointer_size.set(size);
        }
        Btf {
            sections: self.sections.clone(),
            header: self.header,
            endianness: self.endianness,
            has_unknown_header_data: self.has_unknown_header_data,
            base: self.base.clone(),
            start_id: self.start_id,
            start_str_off: self.start_str_off,
            type_offsets: self.type_offsets.clone(),
            pointer_size,
            name_index: OnceLock::new(),
            str_index: OnceLock::new(),
        }
    }
}

impl std::fmt::Debug for Btf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Btf")
            .field("start_id", &self.start_id)
            .field("type_count", &self.type_count())
            .field("str_len", &self.header.str_len)
            .field("endianness", &self.endianness)
            .field("split", &self.base.is_some())
            .finish_non_exhaustive()
    }
}

/// Converts a native-order blob to `order` (the header must be rewritten
/// separately when going the other way).
fn from_native_order(blob: &mut AlignedBytes, header: &BtfHeader, order: Endianness) {
    swap_sections(blob, header);
    header.write_to(blob.bytes_mut(), order);
}

/// Reverses the byte order of the sections: every type-section word (all
/// type fields are 32-bit) and the 16-bit `flags` of each layout entry.
fn swap_sections(blob: &mut AlignedBytes, header: &BtfHeader) {
    let types = header.types_range();
    if let Some(words) = blob.words_mut(types.start, types.len() / 4) {
        swap_words(words);
    }
    let layout = header.layout_range();
    if let Some(bytes) = blob.bytes_mut().get_mut(layout) {
        for entry in bytes.chunks_exact_mut(4) {
            entry.swap(2, 3);
        }
    }
}
