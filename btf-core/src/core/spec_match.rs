//! Matching a local spec against one candidate target type
//! (`bpf_core_spec_match`), building the target spec on the way: the same
//! named members (found through anonymous structs and unions, at any
//! depth), array indices within bounds (or into a flexible array), field
//! types compatible, or, for enumerators, an enumerator of the same
//! essential name. Type-based relocations only compare the types.
//!
//! The target spec is filled in place even when matching fails, as libbpf
//! does, because libbpf's log prints that partial spec.

use crate::btf::Btf;
use crate::co_re::compat::{fields_are_compat, types_are_compat, types_match};
use crate::co_re::error::MatchError;
use crate::co_re::essential_name::essential_names_equal;
use crate::co_re::spec::{is_flexible_array, name_at, Accessor, CoreSpec, MAX_SPEC_LEN};
use crate::uapi::CoreReloKind;
use crate::view::TypeView;

/// Tries `local` against the candidate `targ.root_type_id` in `targ.btf`
/// (`targ` must be [`CoreSpec::empty`] for that candidate). `Ok(false)`:
/// the candidate does not match.
pub(crate) fn match_spec<'t>(
    local: &CoreSpec<'_>,
    targ: &mut CoreSpec<'t>,
) -> Result<bool, MatchError> {
    let targ_btf = targ.btf;
    let mut targ_id = targ.root_type_id;
    let kind = local.kind;

    if kind.is_type_based() {
        return if kind == CoreReloKind::TypeMatches {
            types_match(local.btf, local.root_type_id, targ_btf, targ_id)
        } else {
            types_are_compat(local.btf, local.root_type_id, targ_btf, targ_id)
        };
    }

    if kind.is_enumval_based() {
        let local_name = local
            .accessors
            .first()
            .and_then(|a| a.name)
            .unwrap_or_default();
        let targ_type = targ_btf
            .skip_mods_and_typedefs(targ_id)
            .ok_or(MatchError::BadType { type_id: targ_id })?;
        let name_offsets: Vec<u32> = match targ_type.view() {
            TypeView::Enum(e) => e.values.iter().map(|v| v.name_off).collect(),
            TypeView::Enum64(e) => e.values.iter().map(|v| v.name_off).collect(),
            _ => return Ok(false),
        };
        for (i, name_off) in name_offsets.into_iter().enumerate() {
            let targ_name = name_at(targ_btf, name_off);
            if essential_names_equal(local_name, targ_name) {
                targ.accessors.push(Accessor {
                    type_id: targ_type.id(),
                    idx: i as u32,
                    name: Some(targ_name),
                });
                targ.raw.push(i as u32);
                return Ok(true);
            }
        }
        return Ok(false);
    }

    for (i, local_acc) in local.accessors.iter().enumerate() {
        let targ_type = targ_btf
            .skip_mods_and_typedefs(targ_id)
            .ok_or(MatchError::BadType { type_id: targ_id })?;
        targ_id = targ_type.id();

        if local_acc.name.is_some() {
            match match_member(local.btf, local_acc, targ_btf, targ_id, targ)? {
                Some(next_targ_id) => targ_id = next_targ_id,
                None => return Ok(false),
            }
            continue;
        }
        // An array index. The first accessor indexes the root itself, as
        // if the root pointer were an array.
        if i > 0 {
            let TypeView::Array(array) = targ_type.view() else {
                return Ok(false);
            };
            let flexible = is_flexible_array(targ_btf, targ.accessors.get(i - 1), array.nelems);
            if !flexible && local_acc.idx >= array.nelems {
                return Ok(false);
            }
            targ_id = targ_btf
                .skip_mods_and_typedefs(array.elem_type)
                .ok_or(MatchError::BadType {
                    type_id: array.elem_type,
                })?
                .id();
        }
        if targ.raw.len() == MAX_SPEC_LEN {
            return Err(MatchError::SpecTooLong);
        }
        targ.accessors.push(Accessor {
            type_id: targ_id,
            idx: local_acc.idx,
            name: None,
        });
        targ.raw.push(local_acc.idx);
        let size = targ_btf.resolve_size(targ_id).map_err(MatchError::Size)?;
        targ.advance(local_acc.idx, size);
    }
    Ok(true)
}

/// Finds the target member named like the local accessor's member in the
/// struct/union `targ_id`, descending into anonymous members
/// (`bpf_core_match_member`). On a match returns the member's type id (the
/// next type to walk); `None` if there is no compatible member.
///
/// Like libbpf, the raw spec and bit offset are pushed speculatively and
/// popped when a member turns out not to be the one.
fn match_member<'t>(
    local_btf: &Btf,
    local_acc: &Accessor<'_>,
    targ_btf: &'t Btf,
    targ_id: u32,
    targ: &mut CoreSpec<'t>,
) -> Result<Option<u32>, MatchError> {
    let targ_type = targ_btf
        .skip_mods_and_typedefs(targ_id)
        .ok_or(MatchError::BadType { type_id: targ_id })?;
    let targ_id = targ_type.id();
    let (TypeView::Struct(targ_members) | TypeView::Union(targ_members)) = targ_type.view() else {
        return Ok(None);
    };
    let local_type = local_btf
        .type_by_id(local_acc.type_id)
        .ok_or(MatchError::BadType {
            type_id: local_acc.type_id,
        })?;
    let (TypeView::Struct(local_members) | TypeView::Union(local_members)) = local_type.view()
    else {
        return Err(MatchError::BadType {
            type_id: local_acc.type_id,
        });
    };
    let local_member = local_members
        .member(local_acc.idx as usize)
        .ok_or(MatchError::BadType {
            type_id: local_acc.type_id,
        })?;
    let local_name = name_at(local_btf, local_member.name_off());

    for (i, member) in targ_members.members().enumerate() {
        let bit_offset = member.bit_offset();
        if targ.raw.len() == MAX_SPEC_LEN {
            return Err(MatchError::SpecTooLong);
        }
        targ.bit_offset = targ.bit_offset.wrapping_add(bit_offset);
        targ.raw.push(i as u32);

        let targ_name = name_at(targ_btf, member.name_off());
        if targ_name.is_empty() {
            // An embedded anonymous struct/union: look inside.
            if let Some(next) =
                match_member(local_btf, local_acc, targ_btf, member.type_id(), targ)?
            {
                return Ok(Some(next));
            }
        } else if local_name == targ_name {
            targ.accessors.push(Accessor {
                type_id: targ_id,
                idx: i as u32,
                name: Some(targ_name),
            });
            // A same-named member of an incompatible type ends the search
            // (without undoing the raw spec, as in libbpf).
            if !fields_are_compat(
                local_btf,
                local_member.type_id(),
                targ_btf,
                member.type_id(),
            )? {
                targ.accessors.pop();
                return Ok(None);
            }
            return Ok(Some(member.type_id()));
        }
        targ.bit_offset = targ.bit_offset.wrapping_sub(bit_offset);
        targ.raw.pop();
    }
    Ok(None)
}
