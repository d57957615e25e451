//! Walking the type section: the size of each kind's record
//! (`btf_type_size`) and the index from type id to record offset
//! (`btf_parse_type_sec`).

use crate::aligned::{record, words_of};
use crate::error::BtfError;
use crate::uapi::{
    BtfArray, BtfDeclTag, BtfEnum, BtfEnum64, BtfKind, BtfLayout, BtfMember, BtfParam, BtfType,
    BtfVar, BtfVarSecinfo, BTF_MAX_NR_TYPES,
};

/// Words of the `btf_type` head.
pub(crate) const HEAD_WORDS: usize = words_of::<BtfType>();

/// Words of a whole record (head and trailing data) of `head`'s kind.
/// Unknown kinds are sized by the layout section, as libbpf does.
pub(crate) fn record_words(
    head: &BtfType,
    type_id: u32,
    layouts: Option<&[BtfLayout]>,
) -> Result<usize, BtfError> {
    let vlen = head.vlen() as usize;
    let trailing = match BtfKind::from_raw(head.kind_raw()) {
        BtfKind::Fwd
        | BtfKind::Const
        | BtfKind::Volatile
        | BtfKind::Restrict
        | BtfKind::Ptr
        | BtfKind::Typedef
        | BtfKind::Func
        | BtfKind::Float
        | BtfKind::TypeTag => 0,
        BtfKind::Int => 1,
        BtfKind::Enum => vlen * words_of::<BtfEnum>(),
        BtfKind::Enum64 => vlen * words_of::<BtfEnum64>(),
        BtfKind::Array => words_of::<BtfArray>(),
        BtfKind::Struct | BtfKind::Union => vlen * words_of::<BtfMember>(),
        BtfKind::FuncProto => vlen * words_of::<BtfParam>(),
        BtfKind::Var => words_of::<BtfVar>(),
        BtfKind::Datasec => vlen * words_of::<BtfVarSecinfo>(),
        BtfKind::DeclTag => words_of::<BtfDeclTag>(),
        BtfKind::Unkn | BtfKind::Other(_) => return layout_trailing_words(head, type_id, layouts),
    };
    Ok(HEAD_WORDS + trailing)
}

fn layout_trailing_words(
    head: &BtfType,
    type_id: u32,
    layouts: Option<&[BtfLayout]>,
) -> Result<usize, BtfError> {
    let kind = head.kind_raw();
    let layout = layouts
        .and_then(|l| l.get(kind as usize))
        .ok_or(BtfError::UnknownKind { type_id, kind })?;
    if !layout.info_sz.is_multiple_of(4) || !layout.elem_sz.is_multiple_of(4) {
        return Err(BtfError::UnsupportedKindLayout {
            type_id,
            kind,
            info_sz: layout.info_sz,
            elem_sz: layout.elem_sz,
        });
    }
    let info = layout.info_sz as usize / 4;
    let elems = head.vlen() as usize * (layout.elem_sz as usize / 4);
    Ok(HEAD_WORDS + info + elems)
}

/// Builds the index of a type section: the word offset of each record, plus
/// one entry past the last record so that record `i` is
/// `offsets[i]..offsets[i + 1]`.
///
/// `section` holds the section's whole words; `section_bytes` is its length
/// in bytes (which a malformed header may make a non-multiple of 4).
/// `swapped` BTF cannot contain kinds this crate does not know, because
/// their fields could not be byte-swapped (libbpf refuses them too).
pub(crate) fn index_types(
    section: &[u32],
    section_bytes: usize,
    start_id: u32,
    layouts: Option<&[BtfLayout]>,
    swapped: bool,
) -> Result<Vec<u32>, BtfError> {
    // Most vmlinux records are 3-6 words; a rough guess saves regrowth.
    let mut offsets = Vec::with_capacity(section.len() / 5 + 1);
    let mut at = 0usize;
    while let Some(head) = section.get(at..).and_then(record::<BtfType>) {
        let type_id = start_id as u64 + offsets.len() as u64;
        if type_id >= u64::from(BTF_MAX_NR_TYPES) {
            return Err(BtfError::TooManyTypes {
                max: BTF_MAX_NR_TYPES,
            });
        }
        let type_id = type_id as u32;
        let kind = BtfKind::from_raw(head.kind_raw());
        if swapped && matches!(kind, BtfKind::Unkn | BtfKind::Other(_)) {
            return Err(BtfError::UnknownKind {
                type_id,
                kind: head.kind_raw(),
            });
        }
        let size = record_words(head, type_id, layouts)?;
        if at + size > section.len() {
            return Err(BtfError::TypeTruncated {
                type_id,
                off: at * 4,
                size: size * 4,
            });
        }
        offsets.push(at as u32);
        at += size;
    }
    let trailing = section_bytes - at * 4;
    if trailing != 0 {
        return Err(BtfError::TrailingTypeData { trailing });
    }
    offsets.push(at as u32);
    Ok(offsets)
}
