//! Type resolution with libbpf's semantics: `btf__resolve_type`,
//! `btf__resolve_size`, `btf__align_of`, `skip_mods_and_typedefs` and the
//! pointer size guess (`determine_ptr_size`).

use crate::btf::Btf;
use crate::error::TypeError;
use crate::uapi::BtfKind;
use crate::view::{TypeRef, TypeView};

/// libbpf's `MAX_RESOLVE_DEPTH`.
pub const MAX_RESOLVE_DEPTH: u32 = 32;

/// Nesting limit for [`Btf::align_of`], which libbpf leaves unbounded;
/// real types nest a few dozen levels at most.
const MAX_ALIGN_DEPTH: u32 = 256;
/// Types [`Btf::align_of`] may visit in one call: malformed BTF can make
/// the member tree exponentially large (or cyclic).
const MAX_ALIGN_VISITS: u32 = 1 << 20;

/// Names libbpf accepts for `long` when guessing the pointer size.
const LONG_ALIASES: [&[u8]; 11] = [
    b"long",
    b"long int",
    b"int long",
    b"unsigned long",
    b"long unsigned",
    b"unsigned long int",
    b"unsigned int long",
    b"long unsigned int",
    b"long int unsigned",
    b"int unsigned long",
    b"int long unsigned",
];

/// What stops a walk through modifiers: void or a forward declaration
/// (`btf_type_is_void`).
fn is_void_or_fwd(t: &TypeRef<'_>) -> bool {
    t.is_void() || t.kind() == BtfKind::Fwd
}

impl Btf {
    /// Follows modifiers, typedefs and VARs to the underlying type
    /// (`btf__resolve_type`). Fails on void, FWD, bad ids and chains longer
    /// than [`MAX_RESOLVE_DEPTH`].
    pub fn resolve_type(&self, type_id: u32) -> Result<u32, TypeError> {
        let mut id = type_id;
        // Like libbpf, the type reached after the last allowed step is not
        // looked at: exactly MAX_RESOLVE_DEPTH steps is already too deep.
        for _ in 0..MAX_RESOLVE_DEPTH {
            let t = self
                .type_by_id(id)
                .ok_or(TypeError::InvalidTypeId { type_id: id })?;
            if is_void_or_fwd(&t) {
                return Err(TypeError::ResolvesToVoid { type_id });
            }
            if !(t.is_modifier() || matches!(t.kind(), BtfKind::Typedef | BtfKind::Var)) {
                return Ok(id);
            }
            id = t.raw().size_or_type;
        }
        Err(TypeError::TooDeep {
            type_id,
            depth: MAX_RESOLVE_DEPTH,
        })
    }

    /// The size in bytes of a type (`btf__resolve_size`): arrays multiply,
    /// pointers take [`Btf::effective_pointer_size`], modifiers, typedefs,
    /// VARs and tags are followed. FUNC, FUNC_PROTO, void and FWD have no
    /// size; a total above `u32::MAX` is an overflow (libbpf's E2BIG).
    pub fn resolve_size(&self, type_id: u32) -> Result<u32, TypeError> {
        let mut nelems: u32 = 1;
        let mut id = type_id;
        let mut size = None;
        for _ in 0..MAX_RESOLVE_DEPTH {
            let t = self
                .type_by_id(id)
                .ok_or(TypeError::InvalidTypeId { type_id: id })?;
            if is_void_or_fwd(&t) {
                return Err(TypeError::ResolvesToVoid { type_id });
            }
            match t.kind() {
                BtfKind::Int
                | BtfKind::Struct
                | BtfKind::Union
                | BtfKind::Enum
                | BtfKind::Enum64
                | BtfKind::Datasec
                | BtfKind::Float => {
                    size = Some(t.raw().size_or_type);
                    break;
                }
                BtfKind::Ptr => {
                    size = Some(self.effective_pointer_size());
                    break;
                }
                BtfKind::Typedef
                | BtfKind::Volatile
                | BtfKind::Const
                | BtfKind::Restrict
                | BtfKind::Var
                | BtfKind::DeclTag
                | BtfKind::TypeTag => id = t.raw().size_or_type,
                BtfKind::Array => {
                    let TypeView::Array(array) = t.view() else {
                        return Err(TypeError::NoSize {
                            type_id: id,
                            kind: t.kind(),
                        });
                    };
                    if nelems != 0 && array.nelems > u32::MAX / nelems {
                        return Err(TypeError::SizeOverflow { type_id });
                    }
                    nelems *= array.nelems;
                    id = array.elem_type;
                }
                kind => return Err(TypeError::NoSize { type_id: id, kind }),
            }
        }
        let size = size.ok_or(TypeError::TooDeep {
            type_id,
            depth: MAX_RESOLVE_DEPTH,
        })?;
        if nelems != 0 && size > u32::MAX / nelems {
            return Err(TypeError::SizeOverflow { type_id });
        }
        Ok(nelems * size)
    }

    /// The alignment in bytes of a type (`btf__align_of`). A struct or
    /// union whose member offsets or size contradict its members' natural
    /// alignment is packed and aligned to 1, as libbpf infers.
    pub fn align_of(&self, type_id: u32) -> Result<u32, TypeError> {
        let mut visits = 0;
        self.align_of_at(type_id, 0, &mut visits)
    }

    fn align_of_at(&self, type_id: u32, depth: u32, visits: &mut u32) -> Result<u32, TypeError> {
        *visits += 1;
        if depth > MAX_ALIGN_DEPTH || *visits > MAX_ALIGN_VISITS {
            return Err(TypeError::TooDeep {
                type_id,
                depth: MAX_ALIGN_DEPTH,
            });
        }
        let t = self
            .type_by_id(type_id)
            .ok_or(TypeError::InvalidTypeId { type_id })?;
        let no_alignment = TypeError::NoAlignment {
            type_id,
            kind: t.kind(),
        };
        let align = match t.view() {
            TypeView::Int(_) | TypeView::Enum(_) | TypeView::Enum64(_) | TypeView::Float { .. } => {
                self.effective_pointer_size().min(t.raw().size_or_type)
            }
            TypeView::Ptr { .. } => self.effective_pointer_size(),
            TypeView::Typedef { target }
            | TypeView::Volatile { target }
            | TypeView::Const { target }
            | TypeView::Restrict { target }
            | TypeView::TypeTag { target } => self.align_of_at(target, depth + 1, visits)?,
            TypeView::Array(array) => self.align_of_at(array.elem_type, depth + 1, visits)?,
            TypeView::Struct(composite) | TypeView::Union(composite) => {
                let mut max_align = 1;
                for member in composite.members() {
                    let align = self.align_of_at(member.type_id(), depth + 1, visits)?;
                    max_align = max_align.max(align);
                    // A field not at its type's natural alignment means the
                    // struct is packed.
                    if member.bitfield_size() == 0
                        && u64::from(member.raw.offset) % (8 * u64::from(align)) != 0
                    {
                        return Ok(1);
                    }
                }
                // So does a size that is not a multiple of the alignment.
                if composite.size % max_align != 0 {
                    return Ok(1);
                }
                max_align
            }
            _ => return Err(no_alignment),
        };
        // libbpf returns 0 ("error") for a zero-sized INT/ENUM/FLOAT.
        if align == 0 {
            return Err(no_alignment);
        }
        Ok(align)
    }

    /// The first type that is not a modifier or typedef, starting at
    /// `type_id` (libbpf's `skip_mods_and_typedefs`). `None` for bad ids or
    /// cyclic chains.
    pub fn skip_mods_and_typedefs(&self, type_id: u32) -> Option<TypeRef<'_>> {
        let mut t = self.type_by_id(type_id)?;
        // No chain without a cycle is longer than the number of types.
        for _ in 0..self.type_count() {
            if !(t.is_modifier() || t.kind() == BtfKind::Typedef) {
                return Some(t);
            }
            t = self.type_by_id(t.raw().size_or_type)?;
        }
        None
    }

    /// libbpf's `determine_ptr_size`: the base's guess, else the size of
    /// the first 4- or 8-byte INT spelled like `long`. (Base types need no
    /// second scan: a base without a guess has no such INT.)
    pub(crate) fn guess_pointer_size(&self) -> Option<u32> {
        if let Some(size) = self.base().and_then(|b| b.pointer_size()) {
            return Some(size);
        }
        self.own_types().find_map(|t| {
            let size = t.raw().size_or_type;
            let is_long = t.kind() == BtfKind::Int
                && (size == 4 || size == 8)
                && LONG_ALIASES.contains(&self.str_by_offset(t.name_off())?.to_bytes());
            is_long.then_some(size)
        })
    }
}
