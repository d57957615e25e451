//! Why a USDT attachment failed: libbpf's `pr_warn` text as `Display`
//! (where libbpf prints one, see [`UsdtError::warns`]) and libbpf's return
//! value as [`UsdtError::errno`].

use thiserror::Error;

use crate::attach::errstr;
use crate::attach::link::LinkError;

#[derive(Debug, Error)]
pub enum UsdtError {
    #[error("elf: failed to open {path}: {}", errstr(-errno))]
    Open { path: String, errno: i32 },
    /// libelf's `elf_kind`: 0 for a file that is not ELF, 1 for `ar`.
    #[error("usdt: unrecognized ELF kind {kind} for '{path}'")]
    ElfKind { path: String, kind: u32 },
    #[error("usdt: attaching to 32-bit ELF binary '{path}' is not supported")]
    Elf32 { path: String },
    #[error("usdt: unsupported ELF class for '{path}'")]
    ElfClass { path: String },
    /// A header libelf cannot read (libbpf prints nothing).
    #[error("usdt: malformed ELF '{path}'")]
    Malformed { path: String },
    #[error("usdt: unsupported type of ELF binary '{path}' ({e_type}), only ET_EXEC and ET_DYN are supported")]
    ElfType { path: String, e_type: u16 },
    #[error("usdt: ELF endianness mismatch for '{path}'")]
    Endianness { path: String },
    #[error("usdt: no USDT notes section (.note.stapsdt) found in '{path}'")]
    NoNotes { path: String },
    #[error("usdt: invalid USDT notes section (.note.stapsdt) in '{path}'")]
    BadNotesSection { path: String },
    #[error("usdt: failed to find PT_LOAD program headers in '{path}'")]
    NoLoadSegments { path: String },
    /// A note that is not a well-formed stapsdt note (libbpf prints
    /// nothing).
    #[error("usdt: malformed USDT note in '{path}'")]
    BadNote { path: String },
    #[error("usdt: failed to find ELF program segment for '{provider}:{name}' in '{path}' at IP {ip:#x}")]
    NoSegment {
        provider: String,
        name: String,
        path: String,
        ip: u64,
    },
    #[error("usdt: matched ELF binary '{path}' segment [{start:#x}, {end:#x}) for '{provider}:{name}' at IP {ip:#x} is not executable")]
    NotExecutable {
        path: String,
        start: u64,
        end: u64,
        provider: String,
        name: String,
        ip: u64,
    },
    #[error("usdt: failed to find ELF loadable segment with semaphore of '{provider}:{name}' in '{path}' at {addr:#x}")]
    NoSemaphoreSegment {
        provider: String,
        name: String,
        path: String,
        addr: u64,
    },
    #[error("usdt: matched ELF binary '{path}' segment [{start:#x}, {end:#x}] for semaphore of '{provider}:{name}' at {addr:#x} is executable")]
    SemaphoreExecutable {
        path: String,
        start: u64,
        end: u64,
        provider: String,
        name: String,
        addr: u64,
    },
    #[error(
        "usdt: too many USDT arguments (> 12) for '{provider}:{name}' with args spec '{args}'"
    )]
    TooManyArgs {
        provider: String,
        name: String,
        args: String,
    },
    #[error("usdt: unsupported arg #{arg_num} (spec '{rest}') size: {size}")]
    ArgSize {
        arg_num: usize,
        rest: String,
        size: i64,
    },
    #[error("usdt: unrecognized register '{0}'")]
    Register(String),
    #[error("usdt: invalid SIB scale {0}, expected 1, 2, 4, 8")]
    Scale(i64),
    #[error("usdt: unrecognized arg #{arg_num} spec '{rest}'")]
    Arg { arg_num: usize, rest: String },
    /// No note matched provider and name (libbpf prints nothing).
    #[error("usdt: no USDT '{provider}:{name}' in '{path}'")]
    NotFound {
        provider: String,
        name: String,
        path: String,
    },
    /// Every id the spec map has room for is in use (libbpf prints
    /// nothing).
    #[error("usdt: out of USDT spec ids ({max_entries} in the spec map)")]
    SpecIdsExhausted { max_entries: u32 },
    /// The spec map's value size is neither usdt.bpf.h layout (a userbpf
    /// check: libbpf writes its own layout whatever the map says).
    #[error("usdt: USDT spec map value size {0} matches no usdt.bpf.h layout")]
    SpecLayout(u32),
    #[error("usdt: failed to set USDT spec #{id} for '{provider}:{name}' in '{path}': {}", errstr(-errno))]
    SpecWrite {
        id: u32,
        provider: String,
        name: String,
        path: String,
        errno: i32,
    },
    #[error("usdt: failed to attach uprobe multi for '{provider}:{name}' in '{path}': {}", errstr(-source.errno()))]
    Link {
        provider: String,
        name: String,
        path: String,
        source: LinkError,
    },
}

impl UsdtError {
    /// The positive errno libbpf returns (negated) for this error.
    pub fn errno(&self) -> i32 {
        use UsdtError::*;
        match self {
            Open { errno, .. } | SpecWrite { errno, .. } => *errno,
            ElfKind { .. }
            | Elf32 { .. }
            | ElfClass { .. }
            | ElfType { .. }
            | Endianness { .. } => libc::EBADF,
            Malformed { .. }
            | BadNotesSection { .. }
            | BadNote { .. }
            | ArgSize { .. }
            | Scale(_)
            | Arg { .. }
            | SpecLayout(_) => libc::EINVAL,
            NoNotes { .. } | Register(_) | NotFound { .. } => libc::ENOENT,
            NoLoadSegments { .. }
            | NoSegment { .. }
            | NotExecutable { .. }
            | NoSemaphoreSegment { .. }
            | SemaphoreExecutable { .. } => libc::ESRCH,
            TooManyArgs { .. } | SpecIdsExhausted { .. } => libc::E2BIG,
            Link { source, .. } => source.errno(),
        }
    }

    /// True when libbpf prints this error with `pr_warn`; the caller then
    /// prints `"{self}\n"`.
    pub fn warns(&self) -> bool {
        !matches!(
            self,
            UsdtError::Malformed { .. }
                | UsdtError::BadNote { .. }
                | UsdtError::NotFound { .. }
                | UsdtError::SpecIdsExhausted { .. }
        )
    }
}
