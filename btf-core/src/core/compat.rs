//! Type compatibility for CO-RE, with libbpf's three relations:
//!
//! - [`fields_are_compat`] (`bpf_core_fields_are_compat`): may a local
//!   field be relocated to a target field of the same name? Loose: any two
//!   structs/unions, any two pointers, ints of any size.
//! - [`types_are_compat`] (`bpf_core_types_are_compat`): TYPE_EXISTS,
//!   TYPE_SIZE and TYPE_ID_TARGET. Kinds must agree all the way down through
//!   pointers, arrays and function prototypes; names below the root are
//!   ignored.
//! - [`types_match`] (`bpf_core_types_match`): TYPE_MATCHES. Stricter: names
//!   (modulo flavors), int sizes and signedness, array lengths, every local
//!   member and enumerator must be found in the target.
//!
//! Each returns `Ok(true)`/`Ok(false)`, or an error where libbpf returns a
//! negative code (bad ids, modifier loops, nesting too deep).

use crate::btf::Btf;
use crate::co_re::error::MatchError;
use crate::co_re::essential_name::essential_names_equal;
use crate::co_re::spec::name_at;
use crate::uapi::BtfKind;
use crate::view::{TypeRef, TypeView};

/// libbpf's recursion budget for both type relations.
const MAX_DEPTH: i32 = 32;

/// `btf_kind_core_compat`: same kind, or both enums (ENUM and ENUM64 may
/// stand for each other).
pub(crate) fn kinds_compat(a: &TypeRef<'_>, b: &TypeRef<'_>) -> bool {
    a.kind() == b.kind() || (a.is_any_enum() && b.is_any_enum())
}

fn skip<'a>(btf: &'a Btf, type_id: u32) -> Result<TypeRef<'a>, MatchError> {
    btf.skip_mods_and_typedefs(type_id)
        .ok_or(MatchError::BadType { type_id })
}

fn type_at(btf: &Btf, type_id: u32) -> Result<TypeRef<'_>, MatchError> {
    btf.type_by_id(type_id)
        .ok_or(MatchError::BadType { type_id })
}

/// `BTF_INT_OFFSET`: non-zero only for old bitfield-like ints, which CO-RE
/// refuses.
fn int_bit_offset(t: &TypeRef<'_>) -> u8 {
    match t.view() {
        TypeView::Int(int) => int.offset,
        _ => 0,
    }
}

/// Names equal after dropping flavors, or either one anonymous: the rule
/// for FWD and enum fields.
fn names_compat_or_anonymous(local: &TypeRef<'_>, targ: &TypeRef<'_>) -> bool {
    let local_name = name_at(local.btf(), local.name_off());
    let targ_name = name_at(targ.btf(), targ.name_off());
    local_name.is_empty() || targ_name.is_empty() || essential_names_equal(local_name, targ_name)
}

/// Whether a local field's type may be relocated to a target field's type
/// (`bpf_core_fields_are_compat`).
pub fn fields_are_compat(
    local_btf: &Btf,
    local_id: u32,
    targ_btf: &Btf,
    targ_id: u32,
) -> Result<bool, MatchError> {
    let (mut local_id, mut targ_id) = (local_id, targ_id);
    // libbpf loops without bound through array element types; an acyclic
    // chain is never longer than the number of types.
    for _ in 0..=local_btf.type_count() {
        let local = skip(local_btf, local_id)?;
        let targ = skip(targ_btf, targ_id)?;
        if local.is_composite() && targ.is_composite() {
            return Ok(true);
        }
        if !kinds_compat(&local, &targ) {
            return Ok(false);
        }
        match (local.view(), targ.view()) {
            (TypeView::Ptr { .. } | TypeView::Float { .. }, _) => return Ok(true),
            (TypeView::Fwd { .. } | TypeView::Enum(_) | TypeView::Enum64(_), _) => {
                return Ok(names_compat_or_anonymous(&local, &targ))
            }
            (TypeView::Int(_), _) => {
                return Ok(int_bit_offset(&local) == 0 && int_bit_offset(&targ) == 0)
            }
            (TypeView::Array(l), TypeView::Array(t)) => {
                local_id = l.elem_type;
                targ_id = t.elem_type;
            }
            _ => return Ok(false),
        }
    }
    Err(MatchError::TooDeep)
}

/// Whether a target type may stand for a local one in type-based
/// relocations (`bpf_core_types_are_compat`). Root names are assumed to
/// match already.
pub fn types_are_compat(
    local_btf: &Btf,
    local_id: u32,
    targ_btf: &Btf,
    targ_id: u32,
) -> Result<bool, MatchError> {
    types_are_compat_at(local_btf, local_id, targ_btf, targ_id, MAX_DEPTH)
}

fn types_are_compat_at(
    local_btf: &Btf,
    local_id: u32,
    targ_btf: &Btf,
    targ_id: u32,
    level: i32,
) -> Result<bool, MatchError> {
    // The roots' own kinds must agree, before typedefs are looked through.
    if !kinds_compat(&type_at(local_btf, local_id)?, &type_at(targ_btf, targ_id)?) {
        return Ok(false);
    }
    let (mut local_id, mut targ_id) = (local_id, targ_id);
    let mut depth = MAX_DEPTH;
    loop {
        depth -= 1;
        if depth < 0 {
            return Err(MatchError::TooDeep);
        }
        let local = skip(local_btf, local_id)?;
        let targ = skip(targ_btf, targ_id)?;
        if !kinds_compat(&local, &targ) {
            return Ok(false);
        }
        match (local.view(), targ.view()) {
            (
                TypeView::Void
                | TypeView::Struct(_)
                | TypeView::Union(_)
                | TypeView::Enum(_)
                | TypeView::Fwd { .. }
                | TypeView::Enum64(_),
                _,
            ) => return Ok(true),
            (TypeView::Int(_), _) => {
                return Ok(int_bit_offset(&local) == 0 && int_bit_offset(&targ) == 0)
            }
            (TypeView::Ptr { target: l }, TypeView::Ptr { target: t }) => {
                local_id = l;
                targ_id = t;
            }
            (TypeView::Array(l), TypeView::Array(t)) => {
                local_id = l.elem_type;
                targ_id = t.elem_type;
            }
            (TypeView::FuncProto(l), TypeView::FuncProto(t)) => {
                if l.params.len() != t.params.len() {
                    return Ok(false);
                }
                for (lp, tp) in l.params.iter().zip(t.params) {
                    if level <= 0 {
                        return Err(MatchError::TooDeep);
                    }
                    let lp = skip(local_btf, lp.type_id)?.id();
                    let tp = skip(targ_btf, tp.type_id)?.id();
                    if !types_are_compat_at(local_btf, lp, targ_btf, tp, level - 1)? {
                        return Ok(false);
                    }
                }
                // Then the return types.
                local_id = skip(local_btf, l.return_type)?.id();
                targ_id = skip(targ_btf, t.return_type)?.id();
            }
            _ => return Ok(false),
        }
    }
}

/// `bpf_core_names_match`: an anonymous target matches only an anonymous
/// local; otherwise names must agree once flavors are dropped.
fn names_match(local_btf: &Btf, local_off: u32, targ_btf: &Btf, targ_off: u32) -> bool {
    let local = name_at(local_btf, local_off);
    let targ = name_at(targ_btf, targ_off);
    if targ.is_empty() {
        return local.is_empty();
    }
    essential_names_equal(local, targ)
}

/// Whether the target type "matches" the local one for TYPE_MATCHES
/// (`bpf_core_types_match`). Root names are assumed to match already.
pub fn types_match(
    local_btf: &Btf,
    local_id: u32,
    targ_btf: &Btf,
    targ_id: u32,
) -> Result<bool, MatchError> {
    types_match_at(local_btf, local_id, targ_btf, targ_id, false, MAX_DEPTH)
}

fn types_match_at(
    local_btf: &Btf,
    local_id: u32,
    targ_btf: &Btf,
    targ_id: u32,
    mut behind_ptr: bool,
    level: i32,
) -> Result<bool, MatchError> {
    if level <= 0 {
        return Err(MatchError::TooDeep);
    }
    let (mut local_id, mut targ_id) = (local_id, targ_id);
    let mut depth = MAX_DEPTH;
    loop {
        depth -= 1;
        if depth < 0 {
            return Err(MatchError::TooDeep);
        }
        let local = skip(local_btf, local_id)?;
        let targ = skip(targ_btf, targ_id)?;
        if !names_match(local_btf, local.name_off(), targ_btf, targ.name_off()) {
            return Ok(false);
        }
        let (local_kind, targ_kind) = (local.kind(), targ.kind());
        match local.view() {
            TypeView::Void => return Ok(targ_kind == BtfKind::Unkn),
            TypeView::Fwd { is_union } => {
                let same_fwd = local_kind == targ_kind && is_union == targ.kind_flag();
                if !behind_ptr {
                    return Ok(same_fwd);
                }
                // Behind a pointer, a forward declaration also matches the
                // struct or union it declares.
                return Ok(same_fwd
                    || (targ_kind == BtfKind::Struct && !is_union)
                    || (targ_kind == BtfKind::Union && is_union));
            }
            TypeView::Enum(_) | TypeView::Enum64(_) => {
                if !targ.is_any_enum() {
                    return Ok(false);
                }
                return Ok(enums_match(&local, &targ));
            }
            TypeView::Struct(_) | TypeView::Union(_) => {
                if behind_ptr {
                    if local_kind == targ_kind {
                        return Ok(true);
                    }
                    if targ_kind != BtfKind::Fwd {
                        return Ok(false);
                    }
                    return Ok((local_kind == BtfKind::Union) == targ.kind_flag());
                }
                if local_kind != targ_kind {
                    return Ok(false);
                }
                return composites_match(&local, &targ, behind_ptr, level);
            }
            TypeView::Int(l) => {
                let TypeView::Int(t) = targ.view() else {
                    return Ok(false);
                };
                return Ok(l.size == t.size && l.is_signed() == t.is_signed());
            }
            TypeView::Ptr { target } => {
                let TypeView::Ptr {
                    target: targ_target,
                } = targ.view()
                else {
                    return Ok(false);
                };
                behind_ptr = true;
                local_id = target;
                targ_id = targ_target;
            }
            TypeView::Array(l) => {
                let TypeView::Array(t) = targ.view() else {
                    return Ok(false);
                };
                if l.nelems != t.nelems {
                    return Ok(false);
                }
                local_id = l.elem_type;
                targ_id = t.elem_type;
            }
            TypeView::FuncProto(l) => {
                let TypeView::FuncProto(t) = targ.view() else {
                    return Ok(false);
                };
                if l.params.len() != t.params.len() {
                    return Ok(false);
                }
                for (lp, tp) in l.params.iter().zip(t.params) {
                    let matched = types_match_at(
                        local_btf,
                        lp.type_id,
                        targ_btf,
                        tp.type_id,
                        behind_ptr,
                        level - 1,
                    )?;
                    if !matched {
                        return Ok(false);
                    }
                }
                local_id = l.return_type;
                targ_id = t.return_type;
            }
            _ => return Ok(false),
        }
    }
}

/// `bpf_core_enums_match`: same size, and every local enumerator's name
/// (values are ignored) is in the target.
fn enums_match(local: &TypeRef<'_>, targ: &TypeRef<'_>) -> bool {
    if local.raw().size_or_type != targ.raw().size_or_type || local.vlen() > targ.vlen() {
        return false;
    }
    let targ_names = enumerator_name_offsets(targ);
    enumerator_name_offsets(local).iter().all(|&local_off| {
        targ_names
            .iter()
            .any(|&targ_off| names_match(local.btf(), local_off, targ.btf(), targ_off))
    })
}

fn enumerator_name_offsets(t: &TypeRef<'_>) -> Vec<u32> {
    match t.view() {
        TypeView::Enum(e) => e.values.iter().map(|v| v.name_off).collect(),
        TypeView::Enum64(e) => e.values.iter().map(|v| v.name_off).collect(),
        _ => Vec::new(),
    }
}

/// `bpf_core_composites_match`: every local member has a same-named target
/// member whose type matches.
fn composites_match(
    local: &TypeRef<'_>,
    targ: &TypeRef<'_>,
    behind_ptr: bool,
    level: i32,
) -> Result<bool, MatchError> {
    let (TypeView::Struct(l) | TypeView::Union(l)) = local.view() else {
        return Ok(false);
    };
    let (TypeView::Struct(t) | TypeView::Union(t)) = targ.view() else {
        return Ok(false);
    };
    if l.len() > t.len() {
        return Ok(false);
    }
    let (local_btf, targ_btf) = (local.btf(), targ.btf());
    for lm in l.members() {
        let mut matched = false;
        for tm in t.members() {
            if !names_match(local_btf, lm.name_off(), targ_btf, tm.name_off()) {
                continue;
            }
            if types_match_at(
                local_btf,
                lm.type_id(),
                targ_btf,
                tm.type_id(),
                behind_ptr,
                level - 1,
            )? {
                matched = true;
                break;
            }
        }
        if !matched {
            return Ok(false);
        }
    }
    Ok(true)
}
