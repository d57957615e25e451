//! The kernel's BTF records, laid out exactly as in `include/uapi/linux/btf.h`
//! and `include/uapi/linux/bpf.h`, so that a pointer into a parsed buffer can
//! be handed to C as `const struct btf_type *` (or `btf_member *`, ...).
//!
//! Field names follow the kernel except where the kernel's name is a Rust
//! keyword or ambiguous: `type` becomes `type_id` (or `elem_type` in
//! [`BtfArray`]) and the `size`/`type` union of `btf_type` is `size_or_type`.

/// `BTF_MAGIC`, the first two bytes of `.BTF` and `.BTF.ext` in native order.
pub const BTF_MAGIC: u16 = 0xeb9f;
/// `BTF_VERSION`.
pub const BTF_VERSION: u8 = 1;
/// `BTF_MAX_NR_TYPES` (libbpf): the highest type id plus one.
pub const BTF_MAX_NR_TYPES: u32 = 0x7fff_ffff;
/// `BTF_MAX_STR_OFFSET` (libbpf).
pub const BTF_MAX_STR_OFFSET: u32 = 0x7fff_ffff;
/// `BTF_MAX_VLEN`: `vlen` is 24 bits wide.
pub const BTF_MAX_VLEN: u32 = 0x00ff_ffff;

/// `BTF_INT_SIGNED`, `BTF_INT_CHAR`, `BTF_INT_BOOL`: bits of the INT encoding.
pub const BTF_INT_SIGNED: u8 = 1 << 0;
pub const BTF_INT_CHAR: u8 = 1 << 1;
pub const BTF_INT_BOOL: u8 = 1 << 2;

/// `enum btf_func_linkage`, stored in a FUNC's `vlen`.
pub const BTF_FUNC_STATIC: u32 = 0;
pub const BTF_FUNC_GLOBAL: u32 = 1;
pub const BTF_FUNC_EXTERN: u32 = 2;

/// `BTF_VAR_*`: linkage in [`BtfVar`].
pub const BTF_VAR_STATIC: u32 = 0;
pub const BTF_VAR_GLOBAL_ALLOCATED: u32 = 1;
pub const BTF_VAR_GLOBAL_EXTERN: u32 = 2;

/// `struct btf_type`: the 12-byte head of every type record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BtfType {
    pub name_off: u32,
    /// bits 0-23 vlen, bits 24-30 kind, bit 31 kind_flag.
    pub info: u32,
    /// `size` for INT, ENUM, STRUCT, UNION, DATASEC, FLOAT, ENUM64;
    /// `type` (a type id) for the others.
    pub size_or_type: u32,
}

impl BtfType {
    /// `BTF_INFO_KIND`: the raw 7-bit kind.
    pub fn kind_raw(&self) -> u8 {
        ((self.info >> 24) & 0x7f) as u8
    }

    /// `BTF_INFO_VLEN`.
    pub fn vlen(&self) -> u32 {
        self.info & BTF_MAX_VLEN
    }

    /// `BTF_INFO_KFLAG`.
    pub fn kind_flag(&self) -> bool {
        self.info >> 31 != 0
    }

    /// Builds an `info` word (`BTF_INFO_ENC`).
    pub fn info_of(kind: BtfKind, kind_flag: bool, vlen: u32) -> u32 {
        (u32::from(kind_flag) << 31)
            | (u32::from(kind.to_raw() & 0x7f) << 24)
            | (vlen & BTF_MAX_VLEN)
    }
}

/// `struct btf_array`, after a BTF_KIND_ARRAY head.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BtfArray {
    /// `type`: the element type.
    pub elem_type: u32,
    pub index_type: u32,
    pub nelems: u32,
}

/// `struct btf_member`, `vlen` of them after a STRUCT or UNION head.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BtfMember {
    pub name_off: u32,
    pub type_id: u32,
    /// Bit offset; with the parent's kind_flag set, the top 8 bits hold the
    /// bitfield size and the low 24 the bit offset.
    pub offset: u32,
}

/// `struct btf_param`, `vlen` of them after a FUNC_PROTO head.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BtfParam {
    pub name_off: u32,
    pub type_id: u32,
}

/// `struct btf_enum`, `vlen` of them after an ENUM head.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BtfEnum {
    pub name_off: u32,
    pub val: i32,
}

/// `struct btf_enum64`, `vlen` of them after an ENUM64 head.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BtfEnum64 {
    pub name_off: u32,
    pub val_lo32: u32,
    pub val_hi32: u32,
}

impl BtfEnum64 {
    /// The 64-bit value (`btf_enum64_value`).
    pub fn value(&self) -> u64 {
        (u64::from(self.val_hi32) << 32) | u64::from(self.val_lo32)
    }
}

/// `struct btf_var`, after a VAR head.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BtfVar {
    /// One of `BTF_VAR_*`.
    pub linkage: u32,
}

/// `struct btf_var_secinfo`, `vlen` of them after a DATASEC head.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BtfVarSecinfo {
    pub type_id: u32,
    pub offset: u32,
    pub size: u32,
}

/// `struct btf_decl_tag`, after a DECL_TAG head.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BtfDeclTag {
    /// -1: the tag applies to the type itself; otherwise to its member or
    /// parameter with this index.
    pub component_idx: i32,
}

/// `struct btf_layout`: one entry per kind in the optional layout section,
/// which lets a parser step over kinds it does not know.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BtfLayout {
    /// Bytes of the single record after the head.
    pub info_sz: u8,
    /// Bytes of each of the `vlen` records after that.
    pub elem_sz: u8,
    pub flags: u16,
}

/// `struct bpf_func_info` (the part libbpf requires: `bpf_func_info_min`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BpfFuncInfo {
    /// In .BTF.ext: byte offset of the function in its ELF section.
    pub insn_off: u32,
    pub type_id: u32,
}

/// `struct bpf_line_info` (`bpf_line_info_min`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BpfLineInfo {
    pub insn_off: u32,
    pub file_name_off: u32,
    pub line_off: u32,
    /// Line number in the high 22 bits, column in the low 10.
    pub line_col: u32,
}

impl BpfLineInfo {
    /// `BPF_LINE_INFO_LINE_NUM`.
    pub fn line(&self) -> u32 {
        self.line_col >> 10
    }

    /// `BPF_LINE_INFO_LINE_COL`.
    pub fn column(&self) -> u32 {
        self.line_col & 0x3ff
    }
}

/// `struct bpf_core_relo`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BpfCoreRelo {
    pub insn_off: u32,
    pub type_id: u32,
    pub access_str_off: u32,
    /// Raw `enum bpf_core_relo_kind`; see [`BpfCoreRelo::kind`].
    pub kind: u32,
}

impl BpfCoreRelo {
    /// The relocation kind, or `None` for a value this crate does not know
    /// (libbpf rejects those when it applies the relocation, not at parse).
    pub fn kind(&self) -> Option<CoreReloKind> {
        CoreReloKind::from_raw(self.kind)
    }
}

/// `enum bpf_core_relo_kind`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CoreReloKind {
    FieldByteOffset = 0,
    FieldByteSize = 1,
    FieldExists = 2,
    FieldSigned = 3,
    FieldLshiftU64 = 4,
    FieldRshiftU64 = 5,
    TypeIdLocal = 6,
    TypeIdTarget = 7,
    TypeExists = 8,
    TypeSize = 9,
    EnumvalExists = 10,
    EnumvalValue = 11,
    TypeMatches = 12,
}

impl CoreReloKind {
    pub fn from_raw(raw: u32) -> Option<Self> {
        use CoreReloKind::*;
        Some(match raw {
            0 => FieldByteOffset,
            1 => FieldByteSize,
            2 => FieldExists,
            3 => FieldSigned,
            4 => FieldLshiftU64,
            5 => FieldRshiftU64,
            6 => TypeIdLocal,
            7 => TypeIdTarget,
            8 => TypeExists,
            9 => TypeSize,
            10 => EnumvalExists,
            11 => EnumvalValue,
            12 => TypeMatches,
            _ => return None,
        })
    }

    /// libbpf's short name (`core_relo_kind_str`), used in its log lines.
    pub fn name(self) -> &'static str {
        use CoreReloKind::*;
        match self {
            FieldByteOffset => "byte_off",
            FieldByteSize => "byte_sz",
            FieldExists => "field_exists",
            FieldSigned => "signed",
            FieldLshiftU64 => "lshift_u64",
            FieldRshiftU64 => "rshift_u64",
            TypeIdLocal => "local_type_id",
            TypeIdTarget => "target_type_id",
            TypeExists => "type_exists",
            TypeMatches => "type_matches",
            TypeSize => "type_size",
            EnumvalExists => "enumval_exists",
            EnumvalValue => "enumval_value",
        }
    }

    /// Relocations about a field reached through an access string.
    pub fn is_field_based(self) -> bool {
        (self as u32) <= CoreReloKind::FieldRshiftU64 as u32
    }

    /// Relocations about a whole type.
    pub fn is_type_based(self) -> bool {
        matches!(
            self,
            CoreReloKind::TypeIdLocal
                | CoreReloKind::TypeIdTarget
                | CoreReloKind::TypeExists
                | CoreReloKind::TypeSize
                | CoreReloKind::TypeMatches
        )
    }

    /// Relocations about an enumerator.
    pub fn is_enumval_based(self) -> bool {
        matches!(
            self,
            CoreReloKind::EnumvalExists | CoreReloKind::EnumvalValue
        )
    }
}

/// `BTF_KIND_*`. Kinds above 19 that a layout section describes are
/// [`BtfKind::Other`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BtfKind {
    /// `BTF_KIND_UNKN` (0): only the void type (id 0) has it.
    Unkn,
    Int,
    Ptr,
    Array,
    Struct,
    Union,
    Enum,
    Fwd,
    Typedef,
    Volatile,
    Const,
    Restrict,
    Func,
    FuncProto,
    Var,
    Datasec,
    Float,
    DeclTag,
    TypeTag,
    Enum64,
    /// A kind this crate does not know (20..=127).
    Other(u8),
}

impl BtfKind {
    /// Decodes the 7-bit kind of an `info` word.
    pub fn from_raw(raw: u8) -> BtfKind {
        use BtfKind::*;
        match raw {
            0 => Unkn,
            1 => Int,
            2 => Ptr,
            3 => Array,
            4 => Struct,
            5 => Union,
            6 => Enum,
            7 => Fwd,
            8 => Typedef,
            9 => Volatile,
            10 => Const,
            11 => Restrict,
            12 => Func,
            13 => FuncProto,
            14 => Var,
            15 => Datasec,
            16 => Float,
            17 => DeclTag,
            18 => TypeTag,
            19 => Enum64,
            other => Other(other),
        }
    }

    /// The `BTF_KIND_*` number.
    pub fn to_raw(self) -> u8 {
        use BtfKind::*;
        match self {
            Unkn => 0,
            Int => 1,
            Ptr => 2,
            Array => 3,
            Struct => 4,
            Union => 5,
            Enum => 6,
            Fwd => 7,
            Typedef => 8,
            Volatile => 9,
            Const => 10,
            Restrict => 11,
            Func => 12,
            FuncProto => 13,
            Var => 14,
            Datasec => 15,
            Float => 16,
            DeclTag => 17,
            TypeTag => 18,
            Enum64 => 19,
            Other(raw) => raw,
        }
    }

    /// libbpf's name for the kind (`btf_kind_str`), as in its messages.
    pub fn name(self) -> &'static str {
        use BtfKind::*;
        match self {
            Unkn => "void",
            Int => "int",
            Ptr => "ptr",
            Array => "array",
            Struct => "struct",
            Union => "union",
            Enum => "enum",
            Fwd => "fwd",
            Typedef => "typedef",
            Volatile => "volatile",
            Const => "const",
            Restrict => "restrict",
            Func => "func",
            FuncProto => "func_proto",
            Var => "var",
            Datasec => "datasec",
            Float => "float",
            DeclTag => "decl_tag",
            TypeTag => "type_tag",
            Enum64 => "enum64",
            Other(_) => "unknown",
        }
    }

    /// `btf_is_mod`: VOLATILE, CONST, RESTRICT, TYPE_TAG.
    pub fn is_modifier(self) -> bool {
        matches!(
            self,
            BtfKind::Volatile | BtfKind::Const | BtfKind::Restrict | BtfKind::TypeTag
        )
    }

    /// STRUCT or UNION.
    pub fn is_composite(self) -> bool {
        matches!(self, BtfKind::Struct | BtfKind::Union)
    }

    /// ENUM or ENUM64.
    pub fn is_any_enum(self) -> bool {
        matches!(self, BtfKind::Enum | BtfKind::Enum64)
    }
}

impl std::fmt::Display for BtfKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BtfKind::Other(raw) => write!(f, "kind {raw}"),
            kind => f.write_str(kind.name()),
        }
    }
}

/// Byte order of a BTF or BTF.ext blob as it was stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endianness {
    Little,
    Big,
}

impl Endianness {
    /// The byte order of the machine this code runs on.
    pub const NATIVE: Endianness = if cfg!(target_endian = "big") {
        Endianness::Big
    } else {
        Endianness::Little
    };

    /// The other byte order.
    pub fn swapped(self) -> Endianness {
        match self {
            Endianness::Little => Endianness::Big,
            Endianness::Big => Endianness::Little,
        }
    }
}
