//! CO-RE errors. Each has `errno()`: the (positive) errno libbpf returns for
//! the same condition, so the C ABI layer can fail exactly as libbpf does.

use thiserror::Error;

use crate::error::TypeError;
use crate::uapi::{BtfKind, CoreReloKind};

const E2BIG: i32 = 7;
const EINVAL: i32 = 22;
const ERANGE: i32 = 34;
const EOPNOTSUPP: i32 = 95;

/// Why an access string could not be turned into a spec
/// (`bpf_core_parse_spec`). libbpf reports every one as `-EINVAL` from the
/// relocation; [`SpecError::raw_errno`] is the code it prints in the log.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("the access string offset is not in the string section")]
    AccessStringMissing,
    #[error("empty access string")]
    EmptyAccessString,
    #[error("access string starts with ':'")]
    LeadingColon,
    #[error("type-based relocations take the access string \"0\"")]
    TypeBasedAccessNotZero,
    #[error("no number at byte {at} of the access string")]
    NotANumber { at: usize },
    #[error("negative access index {index}")]
    NegativeIndex { index: i32 },
    #[error("more than {max} accessors", max = crate::co_re::spec::MAX_SPEC_LEN)]
    TooLong,
    #[error("unknown relocation kind {raw}")]
    UnknownKind { raw: u32 },
    #[error("type [{type_id}] is out of range or its modifiers loop")]
    BadType { type_id: u32 },
    #[error("enumerator relocation on [{type_id}], which is not an enum")]
    NotAnEnum { type_id: u32 },
    #[error("enumerator relocations take a single index")]
    EnumAccessTooLong,
    #[error("enumerator index {index} out of range ({count} enumerators)")]
    EnumIndexOutOfRange { index: u32, count: u32 },
    #[error("member index {index} out of range ({count} members)")]
    MemberIndexOutOfRange { index: u32, count: u32 },
    #[error("named member with an empty name")]
    EmptyMemberName,
    #[error("array index {index} out of range ({nelems} elements)")]
    ArrayIndexOutOfRange { index: u32, nelems: u32 },
    #[error("access index #{at} reaches type [{type_id}] of unexpected kind {kind}")]
    UnexpectedKind {
        at: usize,
        type_id: u32,
        kind: BtfKind,
    },
    #[error("{0}")]
    Size(TypeError),
}

impl SpecError {
    /// The code libbpf's parser returns (and logs) before the relocation
    /// turns it into `-EINVAL`.
    pub fn raw_errno(&self) -> i32 {
        match self {
            SpecError::TooLong => E2BIG,
            SpecError::Size(e) => e.errno(),
            _ => EINVAL,
        }
    }
}

/// Why matching a spec against a candidate target type failed outright (as
/// opposed to not matching): malformed types, or a spec too deep.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum MatchError {
    #[error("type [{type_id}] is out of range or its modifiers loop")]
    BadType { type_id: u32 },
    #[error("types nest too deeply")]
    TooDeep,
    #[error("more than {max} accessors", max = crate::co_re::spec::MAX_SPEC_LEN)]
    SpecTooLong,
    #[error("{0}")]
    Size(TypeError),
}

impl MatchError {
    pub fn errno(&self) -> i32 {
        match self {
            MatchError::SpecTooLong => E2BIG,
            MatchError::Size(e) => e.errno(),
            _ => EINVAL,
        }
    }
}

/// Why the value of a relocation could not be computed
/// (`bpf_core_calc_relo`).
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum CalcError {
    #[error("relo {kind} can't be applied to array access", kind = kind.name())]
    ArrayAccess { kind: CoreReloKind },
    #[error("relo {kind} can't be satisfied for bitfield: it can't be read with a 64-bit load", kind = kind.name())]
    BitfieldTooWide { kind: CoreReloKind },
    #[error("bitfield of type [{type_id}] has size 0")]
    ZeroSizedBitfield { type_id: u32 },
    #[error("size of type [{type_id}]: {source}")]
    Size { type_id: u32, source: TypeError },
    #[error("type [{type_id}] is out of range or not what the spec says")]
    BadType { type_id: u32 },
    #[error("unrecognized CO-RE relocation {kind}", kind = kind.name())]
    Unsupported { kind: CoreReloKind },
}

impl CalcError {
    pub fn errno(&self) -> i32 {
        match self {
            CalcError::BitfieldTooWide { .. } => E2BIG,
            CalcError::Unsupported { .. } => EOPNOTSUPP,
            _ => EINVAL,
        }
    }
}

/// Why an instruction could not be patched (`bpf_core_patch_insn`).
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum PatchError {
    #[error("insn #{insn_index} is past the end of the program ({len} instructions)")]
    InsnOutOfRange { insn_index: usize, len: usize },
    #[error("insn #{insn_index} (ALU/ALU64) has a register source, not an immediate")]
    AluNotImmediate { insn_index: usize },
    /// An ALU immediate or load/store offset (`class` "ALU/ALU64" or
    /// "LDX/ST/STX"; `got` sign-extended) is not the local value.
    #[error("unexpected insn #{insn_index} ({class}) value: got {got}, exp {expected} -> {new}")]
    UnexpectedValue {
        insn_index: usize,
        class: &'static str,
        got: i64,
        expected: u64,
        new: u64,
    },
    #[error("unexpected insn #{insn_index} (LDIMM64) value: got {got}, exp {expected} -> {new}")]
    UnexpectedLdimm64Value {
        insn_index: usize,
        got: u64,
        expected: u64,
        new: u64,
    },
    #[error("insn #{insn_index} (LDX/ST/STX) value too big: {value}")]
    OffsetTooBig { insn_index: usize, value: u64 },
    #[error("insn #{insn_index} (LDX/ST/STX) unexpected mem size: got {got}, exp {expected}")]
    UnexpectedMemSize {
        insn_index: usize,
        got: u32,
        expected: u32,
    },
    #[error("insn #{insn_index} (LDX/ST/STX) invalid new mem size: {size}")]
    InvalidMemSize { insn_index: usize, size: u32 },
    #[error("insn #{insn_index} (LDIMM64) has unexpected form")]
    BadLdimm64 { insn_index: usize },
    #[error("trying to relocate unrecognized insn #{insn_index}, code:{code:#x}, src:{src:#x}, dst:{dst:#x}, off:{off:#x}, imm:{imm:#x}")]
    UnrecognizedInsn {
        insn_index: usize,
        code: u8,
        src: u8,
        dst: u8,
        off: u16,
        imm: u32,
    },
}

impl PatchError {
    pub fn errno(&self) -> i32 {
        match self {
            PatchError::OffsetTooBig { .. } => ERANGE,
            _ => EINVAL,
        }
    }
}

/// Why a CO-RE relocation failed. A relocation that merely finds no target
/// is not an error: its instruction is poisoned (see
/// [`crate::co_re::PatchAction::Poisoned`]).
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum CoreError {
    #[error("relocation refers to type [{type_id}], which is not in the local BTF")]
    InvalidLocalType { type_id: u32 },
    #[error("local type [{type_id}] has no name string")]
    InvalidLocalName { type_id: u32 },
    #[error("target candidate search failed for [{type_id}] {kind} <anon>: anonymous types have no candidates")]
    AnonymousCandidateSearch { type_id: u32, kind: BtfKind },
    #[error("parsing [{type_id}] {kind} {name} + {access} failed: {reason}")]
    BadSpec {
        type_id: u32,
        kind: BtfKind,
        name: String,
        access: String,
        reason: SpecError,
    },
    #[error("<{kind}> relocation doesn't support anonymous types", kind = kind.name())]
    AnonymousType { kind: CoreReloKind },
    #[error("error matching candidate #{index} {spec}: {reason}")]
    CandidateMatch {
        index: usize,
        spec: String,
        reason: MatchError,
    },
    #[error("field offset ambiguity: {candidate} != {first}")]
    FieldOffsetAmbiguity { first: u32, candidate: u32 },
    #[error(
        "relocation decision ambiguity: {} {candidate_value} != {} {first_value}",
        outcome_word(*candidate_poisoned),
        outcome_word(*first_poisoned)
    )]
    DecisionAmbiguity {
        first_poisoned: bool,
        first_value: u64,
        candidate_poisoned: bool,
        candidate_value: u64,
    },
    #[error(transparent)]
    Calc(#[from] CalcError),
    #[error(transparent)]
    Patch(#[from] PatchError),
}

fn outcome_word(poisoned: bool) -> &'static str {
    if poisoned {
        "failure"
    } else {
        "success"
    }
}

impl CoreError {
    /// The errno libbpf returns for this condition.
    pub fn errno(&self) -> i32 {
        match self {
            CoreError::AnonymousType { .. } => EOPNOTSUPP,
            CoreError::CandidateMatch { reason, .. } => reason.errno(),
            CoreError::Calc(e) => e.errno(),
            CoreError::Patch(e) => e.errno(),
            _ => EINVAL,
        }
    }
}
