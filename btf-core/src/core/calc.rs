//! The values a relocation patches in (`bpf_core_calc_relo` and its field,
//! type and enumerator helpers): the value the compiler put in the
//! instruction (from the local spec), the value for the target, and
//! whether the instruction must be poisoned instead.

use crate::btf::Btf;
use crate::co_re::error::CalcError;
use crate::co_re::spec::CoreSpec;
use crate::uapi::{CoreReloKind, BTF_INT_SIGNED};
use crate::view::TypeView;

/// What one relocation resolves to (libbpf's `bpf_core_relo_res`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelocationValues {
    /// The value expected in the instruction (checked if `validate`).
    pub orig_val: u64,
    /// The value to patch in.
    pub new_val: u64,
    /// No target: replace the instruction with an invalid call.
    pub poison: bool,
    /// Whether the instruction must hold `orig_val` before patching; off
    /// where the compiler's value may legitimately differ (bitfields, type
    /// ids that linking renumbers).
    pub validate: bool,
    /// A load/store whose field changed size in a way that cannot be
    /// handled by changing the access size: poisoned if it is LDX/ST/STX.
    pub fail_memsz_adjust: bool,
    /// Local and target field (or array element) sizes, for FIELD_BYTE_OFFSET
    /// of non-bitfields; 0 otherwise.
    pub orig_sz: u32,
    pub orig_type_id: u32,
    pub new_sz: u32,
    pub new_type_id: u32,
}

/// A value computed from one spec.
#[derive(Default)]
struct SpecValue {
    val: u64,
    /// Field size for load/store size adjustment (0: none).
    field_size: u32,
    field_type_id: u32,
    /// Whether the local value can be checked; `None` leaves the default.
    validate: Option<bool>,
}

/// Why a spec gives no value.
enum NoValue {
    /// No target: poison the instruction (libbpf's `-EUCLEAN`).
    Poison,
    Error(CalcError),
}

impl From<CalcError> for NoValue {
    fn from(e: CalcError) -> Self {
        NoValue::Error(e)
    }
}

/// Computes the relocation for a local spec and, if a candidate matched,
/// its target spec (`None`: no target).
pub(crate) fn calc_relocation(
    local: &CoreSpec<'_>,
    targ: Option<&CoreSpec<'_>>,
) -> Result<RelocationValues, CalcError> {
    let kind = local.kind;
    let mut res = RelocationValues {
        validate: true,
        ..RelocationValues::default()
    };
    let calc = |spec: Option<&CoreSpec<'_>>| -> Result<SpecValue, NoValue> {
        if kind.is_field_based() {
            field_value(kind, spec)
        } else if kind.is_type_based() {
            type_value(kind, spec)
        } else {
            enumval_value(kind, spec)
        }
    };
    let orig = match calc(Some(local)) {
        Ok(v) => v,
        Err(NoValue::Poison) => {
            res.poison = true;
            return Ok(res);
        }
        Err(NoValue::Error(e)) => return Err(e),
    };
    res.orig_val = orig.val;
    res.orig_sz = orig.field_size;
    res.orig_type_id = orig.field_type_id;
    if let Some(validate) = orig.validate {
        res.validate = validate;
    }
    let new = match calc(targ) {
        Ok(v) => v,
        Err(NoValue::Poison) => {
            res.poison = true;
            return Ok(res);
        }
        Err(NoValue::Error(e)) => return Err(e),
    };
    res.new_val = new.val;
    res.new_sz = new.field_size;
    res.new_type_id = new.field_type_id;

    if kind.is_field_based() && res.orig_sz != res.new_sz {
        if let Some(targ) = targ {
            res.fail_memsz_adjust =
                !size_change_is_safe(local.btf, res.orig_type_id, targ.btf, res.new_type_id);
        }
    }
    Ok(res)
}

/// A load or store may change width only for pointers (a 32-bit kernel's
/// pointers read zero-extended) and unsigned ints (zero-extension keeps the
/// value).
fn size_change_is_safe(local_btf: &Btf, local_id: u32, targ_btf: &Btf, targ_id: u32) -> bool {
    let (Some(local), Some(targ)) = (local_btf.type_by_id(local_id), targ_btf.type_by_id(targ_id))
    else {
        return false;
    };
    match (local.view(), targ.view()) {
        (TypeView::Ptr { .. }, TypeView::Ptr { .. }) => true,
        // libbpf compares the whole encoding with BTF_INT_SIGNED, so a
        // signed char or bool counts as unsigned here.
        (TypeView::Int(l), TypeView::Int(t)) => {
            l.encoding != BTF_INT_SIGNED && t.encoding != BTF_INT_SIGNED
        }
        _ => false,
    }
}

/// The size of the innermost array element of `type_id` (of the type
/// itself if it is not an array): what a load of one element reads.
fn element_size(btf: &Btf, type_id: u32) -> Result<u32, CalcError> {
    let bad = CalcError::BadType { type_id };
    let mut t = btf.skip_mods_and_typedefs(type_id).ok_or(bad.clone())?;
    for _ in 0..=btf.type_count() {
        let TypeView::Array(array) = t.view() else {
            return btf.resolve_size(t.id()).map_err(|source| CalcError::Size {
                type_id: t.id(),
                source,
            });
        };
        t = btf
            .skip_mods_and_typedefs(array.elem_type)
            .ok_or(bad.clone())?;
    }
    Err(bad)
}

fn size_of(btf: &Btf, type_id: u32) -> Result<u32, CalcError> {
    btf.resolve_size(type_id)
        .map_err(|source| CalcError::Size { type_id, source })
}

/// `bpf_core_calc_field_relo`.
fn field_value(kind: CoreReloKind, spec: Option<&CoreSpec<'_>>) -> Result<SpecValue, NoValue> {
    if kind == CoreReloKind::FieldExists {
        return Ok(SpecValue {
            val: u64::from(spec.is_some()),
            ..SpecValue::default()
        });
    }
    let spec = spec.ok_or(NoValue::Poison)?;
    let btf = spec.btf;
    let acc = spec.accessors.last().ok_or(CalcError::BadType {
        type_id: spec.root_type_id,
    })?;

    if acc.name.is_none() {
        // The spec ends with an array index: the element is the field.
        let val = match kind {
            CoreReloKind::FieldByteOffset => {
                return Ok(SpecValue {
                    val: u64::from(spec.bit_offset / 8),
                    field_size: element_size(btf, acc.type_id)?,
                    field_type_id: acc.type_id,
                    validate: Some(true),
                })
            }
            CoreReloKind::FieldByteSize => size_of(btf, acc.type_id)?,
            _ => return Err(CalcError::ArrayAccess { kind }.into()),
        };
        return Ok(SpecValue {
            val: u64::from(val),
            validate: Some(true),
            ..SpecValue::default()
        });
    }

    let bad = CalcError::BadType {
        type_id: acc.type_id,
    };
    let parent = btf.type_by_id(acc.type_id).ok_or(bad.clone())?;
    let (TypeView::Struct(members) | TypeView::Union(members)) = parent.view() else {
        return Err(bad.into());
    };
    let member = members.member(acc.idx as usize).ok_or(bad)?;
    let member_type = btf
        .skip_mods_and_typedefs(member.type_id())
        .ok_or(CalcError::BadType {
            type_id: member.type_id(),
        })?;
    let field_type_id = member_type.id();
    let bit_off = spec.bit_offset;
    let mut bit_sz = member.bitfield_size();
    let bitfield = bit_sz > 0;

    let (byte_off, byte_sz) = if bitfield {
        // The smallest aligned load, starting from the field type's size,
        // that covers all the bits.
        let mut byte_sz = member_type.raw().size_or_type;
        if byte_sz == 0 {
            return Err(CalcError::ZeroSizedBitfield {
                type_id: field_type_id,
            }
            .into());
        }
        let mut byte_off = bit_off / 8 / byte_sz * byte_sz;
        while bit_off
            .wrapping_add(bit_sz)
            .wrapping_sub(byte_off.wrapping_mul(8))
            > byte_sz.wrapping_mul(8)
        {
            if byte_sz >= 8 {
                return Err(CalcError::BitfieldTooWide { kind }.into());
            }
            byte_sz *= 2;
            byte_off = bit_off / 8 / byte_sz * byte_sz;
        }
        (byte_off, byte_sz)
    } else {
        let byte_sz = size_of(btf, field_type_id)?;
        bit_sz = byte_sz.wrapping_mul(8);
        (spec.bit_offset / 8, byte_sz)
    };
    // For bitfields the compiler's choice of load may differ from ours, so
    // only signedness and the right shift are checked.
    let mut value = SpecValue {
        validate: Some(!bitfield),
        ..SpecValue::default()
    };
    let bits_in_load = bit_off
        .wrapping_add(bit_sz)
        .wrapping_sub(byte_off.wrapping_mul(8));
    value.val = match kind {
        CoreReloKind::FieldByteOffset => {
            if !bitfield {
                value.field_size = element_size(btf, field_type_id)?;
                value.field_type_id = field_type_id;
            }
            u64::from(byte_off)
        }
        CoreReloKind::FieldByteSize => u64::from(byte_sz),
        CoreReloKind::FieldSigned => {
            value.validate = Some(true);
            let signed = match member_type.view() {
                TypeView::Enum(_) | TypeView::Enum64(_) => member_type.kind_flag(),
                TypeView::Int(int) => int.is_signed(),
                _ => false,
            };
            u64::from(signed)
        }
        CoreReloKind::FieldLshiftU64 => {
            let shift = if cfg!(target_endian = "little") {
                64u32.wrapping_sub(bits_in_load)
            } else {
                (8u32.wrapping_sub(byte_sz))
                    .wrapping_mul(8)
                    .wrapping_add(bit_off.wrapping_sub(byte_off.wrapping_mul(8)))
            };
            u64::from(shift)
        }
        CoreReloKind::FieldRshiftU64 => {
            value.validate = Some(true);
            u64::from(64u32.wrapping_sub(bit_sz))
        }
        _ => return Err(CalcError::Unsupported { kind }.into()),
    };
    Ok(value)
}

/// `bpf_core_calc_type_relo`: type-based relocations give 0 without a
/// target rather than poisoning.
fn type_value(kind: CoreReloKind, spec: Option<&CoreSpec<'_>>) -> Result<SpecValue, NoValue> {
    let mut value = SpecValue {
        validate: Some(true),
        ..SpecValue::default()
    };
    let Some(spec) = spec else {
        return Ok(value);
    };
    value.val = match kind {
        CoreReloKind::TypeIdTarget => {
            // Linking may renumber the id in the instruction.
            value.validate = Some(false);
            u64::from(spec.root_type_id)
        }
        CoreReloKind::TypeExists | CoreReloKind::TypeMatches => 1,
        CoreReloKind::TypeSize => u64::from(size_of(spec.btf, spec.root_type_id)?),
        _ => return Err(CalcError::Unsupported { kind }.into()),
    };
    Ok(value)
}

/// `bpf_core_calc_enumval_relo`.
fn enumval_value(kind: CoreReloKind, spec: Option<&CoreSpec<'_>>) -> Result<SpecValue, NoValue> {
    let val = match kind {
        CoreReloKind::EnumvalExists => u64::from(spec.is_some()),
        CoreReloKind::EnumvalValue => {
            let spec = spec.ok_or(NoValue::Poison)?;
            let acc = spec.accessors.first().ok_or(CalcError::BadType {
                type_id: spec.root_type_id,
            })?;
            let bad = CalcError::BadType {
                type_id: acc.type_id,
            };
            let t = spec.btf.type_by_id(acc.type_id).ok_or(bad.clone())?;
            match t.view() {
                // A 32-bit value is sign-extended whatever the enum's
                // signedness (libbpf stores the `__s32` into a `__u64`).
                TypeView::Enum(e) => {
                    let v = e.values.get(acc.idx as usize).ok_or(bad)?;
                    i64::from(v.val) as u64
                }
                TypeView::Enum64(e) => e.value(acc.idx as usize).ok_or(bad)?,
                _ => return Err(bad.into()),
            }
        }
        _ => return Err(CalcError::Unsupported { kind }.into()),
    };
    Ok(SpecValue {
        val,
        ..SpecValue::default()
    })
}
