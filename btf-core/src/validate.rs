//! libbpf's `btf_sanity_check`: every string offset and type id a type
//! refers to must exist, and a FUNC must point to a FUNC_PROTO. Like libbpf
//! (and unlike the kernel's verifier) it checks only what lookups rely on:
//! a FUNC_PROTO's return type, for one, is not checked.
//!
//! Memory safety never depends on these checks: every accessor is bounds
//! checked. They make lookups give meaningful answers.

use crate::btf::Btf;
use crate::error::BtfError;
use crate::type_section::HEAD_WORDS;
use crate::uapi::BtfKind;
use crate::view::{TypeRef, TypeView};

pub(crate) fn sanity_check(btf: &Btf) -> Result<(), BtfError> {
    if all_references_in_range(btf) {
        return Ok(());
    }
    // Something is off: find the first offending type, for libbpf's error.
    btf.own_types().try_for_each(|t| check_type(btf, &t))
}

/// The fast path for valid BTF: one pass over the raw words keeping the
/// largest string offset and type id seen. Valid string offsets are exactly
/// `0..end_str_offset` (a split section continues where its base's ends).
fn all_references_in_range(btf: &Btf) -> bool {
    let (mut max_str, mut max_id) = (0u32, 0u32);
    let mut funcs_ok = true;
    for t in btf.own_types() {
        let words = t.record_words();
        let (head, rest) = words.split_at(HEAD_WORDS.min(words.len()));
        let [name_off, _, size_or_type] = head else {
            return false;
        };
        max_str = max_str.max(*name_off);
        match t.kind() {
            BtfKind::Ptr
            | BtfKind::Typedef
            | BtfKind::Volatile
            | BtfKind::Const
            | BtfKind::Restrict
            | BtfKind::Var
            | BtfKind::DeclTag
            | BtfKind::TypeTag => max_id = max_id.max(*size_or_type),
            BtfKind::Func => {
                max_id = max_id.max(*size_or_type);
                funcs_ok &= btf.kind_of(*size_or_type) == Some(BtfKind::FuncProto);
            }
            BtfKind::Array => {
                for &id in rest.iter().take(2) {
                    max_id = max_id.max(id);
                }
            }
            BtfKind::Struct | BtfKind::Union => {
                for member in rest.chunks_exact(3) {
                    max_str = max_str.max(member[0]);
                    max_id = max_id.max(member[1]);
                }
            }
            BtfKind::FuncProto => {
                for param in rest.chunks_exact(2) {
                    max_str = max_str.max(param[0]);
                    max_id = max_id.max(param[1]);
                }
            }
            BtfKind::Enum => {
                for value in rest.chunks_exact(2) {
                    max_str = max_str.max(value[0]);
                }
            }
            BtfKind::Enum64 => {
                for value in rest.chunks_exact(3) {
                    max_str = max_str.max(value[0]);
                }
            }
            BtfKind::Datasec => {
                for var in rest.chunks_exact(3) {
                    max_id = max_id.max(var[0]);
                }
            }
            _ => {}
        }
    }
    funcs_ok && max_id < btf.type_count() && btf.has_string_at(max_str)
}

fn check_type(btf: &Btf, t: &TypeRef<'_>) -> Result<(), BtfError> {
    let type_id = t.id();
    let check_str = |off: u32, what: &'static str| match btf.has_string_at(off) {
        true => Ok(()),
        false => Err(BtfError::InvalidStringOffset { type_id, what, off }),
    };
    let type_count = btf.type_count();
    let check_id = |referenced: u32| match referenced < type_count {
        true => Ok(()),
        false => Err(BtfError::InvalidTypeReference {
            type_id,
            referenced,
        }),
    };

    check_str(t.name_off(), "type name")?;
    match t.view() {
        TypeView::Void
        | TypeView::Int(_)
        | TypeView::Fwd { .. }
        | TypeView::Float { .. }
        | TypeView::Unknown { .. } => {}
        TypeView::Ptr { target }
        | TypeView::Typedef { target }
        | TypeView::Volatile { target }
        | TypeView::Const { target }
        | TypeView::Restrict { target }
        | TypeView::Var { target, .. }
        | TypeView::DeclTag { target, .. }
        | TypeView::TypeTag { target } => check_id(target)?,
        TypeView::Array(array) => {
            check_id(array.elem_type)?;
            check_id(array.index_type)?;
        }
        TypeView::Struct(composite) | TypeView::Union(composite) => {
            for member in composite.raw_members {
                check_str(member.name_off, "field name")?;
                check_id(member.type_id)?;
            }
        }
        TypeView::Enum(enum_view) => {
            for value in enum_view.values {
                check_str(value.name_off, "enum name")?;
            }
        }
        TypeView::Enum64(enum_view) => {
            for value in enum_view.values {
                check_str(value.name_off, "enum name")?;
            }
        }
        TypeView::Func { proto, .. } => {
            check_id(proto)?;
            if btf.kind_of(proto) != Some(BtfKind::FuncProto) {
                return Err(BtfError::FuncWithoutProto {
                    type_id,
                    referenced: proto,
                });
            }
        }
        TypeView::FuncProto(proto) => {
            for param in proto.params {
                check_str(param.name_off, "param name")?;
                check_id(param.type_id)?;
            }
        }
        TypeView::Datasec(datasec) => {
            for var in datasec.vars {
                check_id(var.type_id)?;
            }
        }
    }
    Ok(())
}
