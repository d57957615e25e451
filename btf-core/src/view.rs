//! Typed, borrowed views of type records: [`TypeRef`] (one type: id, head,
//! name) and [`TypeView`] (its kind-specific data). Both read the raw
//! records in place.

use std::ffi::CStr;

use crate::aligned::{record, records, word_bytes};
use crate::btf::Btf;
use crate::type_section::HEAD_WORDS;
use crate::uapi::{
    BtfArray, BtfDeclTag, BtfEnum, BtfEnum64, BtfKind, BtfMember, BtfParam, BtfType, BtfVar,
    BtfVarSecinfo, BTF_INT_BOOL, BTF_INT_CHAR, BTF_INT_SIGNED,
};

static VOID_TYPE: BtfType = BtfType {
    name_off: 0,
    info: 0,
    size_or_type: 0,
};

/// One type of a [`Btf`]: its id and its raw record.
#[derive(Clone, Copy)]
pub struct TypeRef<'a> {
    btf: &'a Btf,
    id: u32,
    /// The whole record: head and trailing data.
    words: &'a [u32],
}

impl<'a> TypeRef<'a> {
    pub(crate) fn new(btf: &'a Btf, id: u32, words: &'a [u32]) -> TypeRef<'a> {
        TypeRef { btf, id, words }
    }

    /// The type id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The [`Btf`] whose type section holds this record (the base, for
    /// base types of split BTF).
    pub fn btf(&self) -> &'a Btf {
        self.btf
    }

    /// The `struct btf_type` head.
    pub fn raw(&self) -> &'a BtfType {
        record::<BtfType>(self.words).unwrap_or(&VOID_TYPE)
    }

    /// Pointer to the head, for C callers (`const struct btf_type *`); the
    /// trailing data follows it in memory exactly as in the kernel's format.
    pub fn as_ptr(&self) -> *const BtfType {
        self.raw()
    }

    /// The whole record as native-order words.
    pub fn record_words(&self) -> &'a [u32] {
        self.words
    }

    /// The whole record as bytes.
    pub fn record_bytes(&self) -> &'a [u8] {
        word_bytes(self.words)
    }

    pub fn kind(&self) -> BtfKind {
        BtfKind::from_raw(self.raw().kind_raw())
    }

    pub fn vlen(&self) -> u32 {
        self.raw().vlen()
    }

    pub fn kind_flag(&self) -> bool {
        self.raw().kind_flag()
    }

    pub fn name_off(&self) -> u32 {
        self.raw().name_off
    }

    /// The name; `Some("")` for anonymous types, `None` if not UTF-8.
    pub fn name(&self) -> Option<&'a str> {
        self.btf.name_by_offset(self.name_off())
    }

    /// The name as a C string, whose pointer can be handed to C.
    pub fn name_c_str(&self) -> Option<&'a CStr> {
        self.btf.str_by_offset(self.name_off())
    }

    /// `size` of kinds that have one: INT, STRUCT, UNION, ENUM, ENUM64,
    /// DATASEC, FLOAT.
    pub fn size(&self) -> Option<u32> {
        match self.kind() {
            BtfKind::Int
            | BtfKind::Struct
            | BtfKind::Union
            | BtfKind::Enum
            | BtfKind::Enum64
            | BtfKind::Datasec
            | BtfKind::Float => Some(self.raw().size_or_type),
            _ => None,
        }
    }

    /// `type` of kinds that refer to another type in their head: PTR,
    /// TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FUNC_PROTO (return type),
    /// VAR, DECL_TAG, TYPE_TAG.
    pub fn referenced_type(&self) -> Option<u32> {
        match self.kind() {
            BtfKind::Ptr
            | BtfKind::Typedef
            | BtfKind::Volatile
            | BtfKind::Const
            | BtfKind::Restrict
            | BtfKind::Func
            | BtfKind::FuncProto
            | BtfKind::Var
            | BtfKind::DeclTag
            | BtfKind::TypeTag => Some(self.raw().size_or_type),
            _ => None,
        }
    }

    pub fn is_void(&self) -> bool {
        self.id == 0
    }

    /// `btf_is_mod`: VOLATILE, CONST, RESTRICT, TYPE_TAG.
    pub fn is_modifier(&self) -> bool {
        self.kind().is_modifier()
    }

    /// STRUCT or UNION.
    pub fn is_composite(&self) -> bool {
        self.kind().is_composite()
    }

    /// ENUM or ENUM64.
    pub fn is_any_enum(&self) -> bool {
        self.kind().is_any_enum()
    }

    /// The kind-specific data.
    pub fn view(&self) -> TypeView<'a> {
        let head = self.raw();
        let target = head.size_or_type;
        let size = head.size_or_type;
        let vlen = head.vlen() as usize;
        let kind_flag = head.kind_flag();
        let rest = self.words.get(HEAD_WORDS..).unwrap_or_default();
        match self.kind() {
            BtfKind::Unkn if self.id == 0 => TypeView::Void,
            BtfKind::Int => TypeView::Int(IntInfo::new(size, rest.first().copied().unwrap_or(0))),
            BtfKind::Ptr => TypeView::Ptr { target },
            BtfKind::Array => match record::<BtfArray>(rest) {
                Some(array) => TypeView::Array(array),
                None => TypeView::Unknown {
                    kind: head.kind_raw(),
                    extra: rest,
                },
            },
            BtfKind::Struct => TypeView::Struct(CompositeView::new(size, kind_flag, rest, vlen)),
            BtfKind::Union => TypeView::Union(CompositeView::new(size, kind_flag, rest, vlen)),
            BtfKind::Enum => TypeView::Enum(EnumView {
                size,
                is_signed: kind_flag,
                values: records::<BtfEnum>(rest, vlen).unwrap_or_default(),
            }),
            BtfKind::Fwd => TypeView::Fwd {
                is_union: kind_flag,
            },
            BtfKind::Typedef => TypeView::Typedef { target },
            BtfKind::Volatile => TypeView::Volatile { target },
            BtfKind::Const => TypeView::Const { target },
            BtfKind::Restrict => TypeView::Restrict { target },
            BtfKind::Func => TypeView::Func {
                proto: target,
                linkage: head.vlen(),
            },
            BtfKind::FuncProto => TypeView::FuncProto(FuncProtoView {
                return_type: target,
                params: records::<BtfParam>(rest, vlen).unwrap_or_default(),
            }),
            BtfKind::Var => TypeView::Var {
                target,
                linkage: record::<BtfVar>(rest).map_or(0, |v| v.linkage),
            },
            BtfKind::Datasec => TypeView::Datasec(DatasecView {
                size,
                vars: records::<BtfVarSecinfo>(rest, vlen).unwrap_or_default(),
            }),
            BtfKind::Float => TypeView::Float { size },
            BtfKind::DeclTag => TypeView::DeclTag {
                target,
                component_idx: record::<BtfDeclTag>(rest).map_or(-1, |d| d.component_idx),
            },
            BtfKind::TypeTag => TypeView::TypeTag { target },
            BtfKind::Enum64 => TypeView::Enum64(Enum64View {
                size,
                is_signed: kind_flag,
                values: records::<BtfEnum64>(rest, vlen).unwrap_or_default(),
            }),
            BtfKind::Unkn | BtfKind::Other(_) => TypeView::Unknown {
                kind: head.kind_raw(),
                extra: rest,
            },
        }
    }
}

impl std::fmt::Debug for TypeRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[{}] {} '{}'",
            self.id,
            self.kind(),
            self.name().unwrap_or("?")
        )
    }
}

/// Kind-specific data of a type. Slices point into the raw records.
#[derive(Clone, Copy, Debug)]
pub enum TypeView<'a> {
    /// Type id 0.
    Void,
    Int(IntInfo),
    Ptr {
        target: u32,
    },
    Array(&'a BtfArray),
    Struct(CompositeView<'a>),
    Union(CompositeView<'a>),
    Enum(EnumView<'a>),
    /// A forward declaration; the kind flag tells union from struct.
    Fwd {
        is_union: bool,
    },
    Typedef {
        target: u32,
    },
    Volatile {
        target: u32,
    },
    Const {
        target: u32,
    },
    Restrict {
        target: u32,
    },
    /// `linkage` is one of `BTF_FUNC_*` (stored in `vlen`).
    Func {
        proto: u32,
        linkage: u32,
    },
    FuncProto(FuncProtoView<'a>),
    /// `linkage` is one of `BTF_VAR_*`.
    Var {
        target: u32,
        linkage: u32,
    },
    Datasec(DatasecView<'a>),
    Float {
        size: u32,
    },
    /// `component_idx` -1 tags `target` itself, otherwise its member or
    /// parameter with that index.
    DeclTag {
        target: u32,
        component_idx: i32,
    },
    TypeTag {
        target: u32,
    },
    Enum64(Enum64View<'a>),
    /// A kind only the layout section describes; `extra` is everything
    /// after the head.
    Unknown {
        kind: u8,
        extra: &'a [u32],
    },
}

/// An INT's size and the fields of the word after its head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IntInfo {
    /// Bytes.
    pub size: u32,
    /// `BTF_INT_ENCODING`: `BTF_INT_SIGNED | BTF_INT_CHAR | BTF_INT_BOOL`.
    pub encoding: u8,
    /// `BTF_INT_OFFSET`, in bits.
    pub offset: u8,
    /// `BTF_INT_BITS`.
    pub bits: u8,
}

impl IntInfo {
    fn new(size: u32, word: u32) -> IntInfo {
        IntInfo {
            size,
            encoding: ((word >> 24) & 0x0f) as u8,
            offset: ((word >> 16) & 0xff) as u8,
            bits: (word & 0xff) as u8,
        }
    }

    pub fn is_signed(&self) -> bool {
        self.encoding & BTF_INT_SIGNED != 0
    }

    pub fn is_char(&self) -> bool {
        self.encoding & BTF_INT_CHAR != 0
    }

    pub fn is_bool(&self) -> bool {
        self.encoding & BTF_INT_BOOL != 0
    }
}

/// A STRUCT's or UNION's size and members.
#[derive(Clone, Copy, Debug)]
pub struct CompositeView<'a> {
    /// Bytes.
    pub size: u32,
    /// Set: member offsets carry bitfield sizes in their top 8 bits.
    pub kind_flag: bool,
    pub raw_members: &'a [BtfMember],
}

impl<'a> CompositeView<'a> {
    fn new(size: u32, kind_flag: bool, rest: &'a [u32], vlen: usize) -> Self {
        CompositeView {
            size,
            kind_flag,
            raw_members: records::<BtfMember>(rest, vlen).unwrap_or_default(),
        }
    }

    pub fn len(&self) -> usize {
        self.raw_members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.raw_members.is_empty()
    }

    /// Member `index`, with bit offsets decoded.
    pub fn member(&self, index: usize) -> Option<MemberView<'a>> {
        Some(MemberView {
            raw: self.raw_members.get(index)?,
            kind_flag: self.kind_flag,
        })
    }

    pub fn members(&self) -> impl ExactSizeIterator<Item = MemberView<'a>> + 'a {
        let kind_flag = self.kind_flag;
        self.raw_members
            .iter()
            .map(move |raw| MemberView { raw, kind_flag })
    }
}

/// A member of a STRUCT or UNION.
#[derive(Clone, Copy, Debug)]
pub struct MemberView<'a> {
    pub raw: &'a BtfMember,
    kind_flag: bool,
}

impl MemberView<'_> {
    pub fn name_off(&self) -> u32 {
        self.raw.name_off
    }

    pub fn type_id(&self) -> u32 {
        self.raw.type_id
    }

    /// `btf_member_bit_offset`.
    pub fn bit_offset(&self) -> u32 {
        if self.kind_flag {
            self.raw.offset & 0x00ff_ffff
        } else {
            self.raw.offset
        }
    }

    /// `btf_member_bitfield_size`: 0 if not a bitfield (or if the size is
    /// only implied by the member's INT type, without the kind flag).
    pub fn bitfield_size(&self) -> u32 {
        if self.kind_flag {
            self.raw.offset >> 24
        } else {
            0
        }
    }
}

/// An ENUM's size and enumerators. `val` is signed in the record; the kind
/// flag says whether the enum itself is signed.
#[derive(Clone, Copy, Debug)]
pub struct EnumView<'a> {
    pub size: u32,
    pub is_signed: bool,
    pub values: &'a [BtfEnum],
}

impl EnumView<'_> {
    /// Enumerator `index`'s value, sign- or zero-extended by the kind flag.
    pub fn value(&self, index: usize) -> Option<i64> {
        let raw = self.values.get(index)?.val;
        Some(if self.is_signed {
            i64::from(raw)
        } else {
            i64::from(raw as u32)
        })
    }
}

/// An ENUM64's size and enumerators.
#[derive(Clone, Copy, Debug)]
pub struct Enum64View<'a> {
    pub size: u32,
    pub is_signed: bool,
    pub values: &'a [BtfEnum64],
}

impl Enum64View<'_> {
    /// Enumerator `index`'s 64-bit value (reinterpret as `i64` if signed).
    pub fn value(&self, index: usize) -> Option<u64> {
        Some(self.values.get(index)?.value())
    }
}

/// A FUNC_PROTO's return type and parameters.
#[derive(Clone, Copy, Debug)]
pub struct FuncProtoView<'a> {
    /// 0 for void.
    pub return_type: u32,
    pub params: &'a [BtfParam],
}

impl FuncProtoView<'_> {
    /// A trailing parameter with no name and type 0 marks `...`.
    pub fn is_variadic(&self) -> bool {
        self.params
            .last()
            .is_some_and(|p| p.name_off == 0 && p.type_id == 0)
    }
}

/// A DATASEC's size and variables.
#[derive(Clone, Copy, Debug)]
pub struct DatasecView<'a> {
    pub size: u32,
    pub vars: &'a [BtfVarSecinfo],
}
