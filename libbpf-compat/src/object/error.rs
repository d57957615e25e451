//! [`ObjectError`]: why an object could not be opened or relocated. Each
//! error's text is the warning libbpf prints for the same condition (where
//! it has one), and [`ObjectError::errno`] is the errno libbpf returns, so
//! the C ABI layer can fail exactly as libbpf does.

use std::path::PathBuf;

use thiserror::Error;
use userbpf_btf_core::BtfError;

pub(crate) const ENOENT: i32 = 2;
pub(crate) const EIO: i32 = 5;
pub(crate) const E2BIG: i32 = 7;
pub(crate) const EINVAL: i32 = 22;
pub(crate) const ERANGE: i32 = 34;
pub(crate) const ESRCH: i32 = 3;
pub(crate) const ENOTSUP: i32 = 95;
pub(crate) const EOPNOTSUPP: i32 = 95;

/// `LIBBPF_ERRNO__LIBELF`: the ELF could not be read at all.
pub const LIBBPF_ERRNO_LIBELF: i32 = 4000;
/// `LIBBPF_ERRNO__FORMAT`: the BPF object's format is invalid.
pub const LIBBPF_ERRNO_FORMAT: i32 = 4001;
/// `LIBBPF_ERRNO__ENDIAN`: byte order mismatch.
pub const LIBBPF_ERRNO_ENDIAN: i32 = 4003;
/// `LIBBPF_ERRNO__INTERNAL`.
pub const LIBBPF_ERRNO_INTERNAL: i32 = 4004;
/// `LIBBPF_ERRNO__RELOC`: a relocation could not be applied.
pub const LIBBPF_ERRNO_RELOC: i32 = 4005;

/// Why [`crate::object::Object::open`] or
/// [`crate::object::Object::relocate`] failed.
///
/// The variants group errors by the loader stage that reports them; most
/// carry libbpf's message verbatim (without the `libbpf: ` prefix).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ObjectError {
    /// The ELF container is unreadable or not a BPF object
    /// (`bpf_object__elf_init`, `bpf_object__elf_collect`).
    #[error("{message}")]
    Elf { message: String, errno: i32 },

    /// A `maps` section: libbpf 1.x refuses legacy map definitions.
    #[error("elf: legacy map definitions in 'maps' section are not supported by libbpf v1.0+")]
    LegacyMapsSection,

    /// A program's code or symbol is malformed (`bpf_object__add_programs`).
    #[error("{message}")]
    Program { message: String, errno: i32 },

    /// `.BTF` is malformed and the object needs it.
    #[error("Error loading ELF section .BTF: {source}.")]
    Btf { source: BtfError },

    /// The object has BTF-defined maps or externs but no usable `.BTF`.
    #[error("BTF is required, but is missing or corrupted.")]
    BtfRequired { errno: i32 },

    /// An `extern` could not be described or resolved
    /// (`bpf_object__collect_externs`, `bpf_object__resolve_externs`).
    #[error("{message}")]
    Extern { message: String, errno: i32 },

    /// `.kconfig` values could not be read or do not fit their externs.
    #[error("{message}")]
    Kconfig { message: String, errno: i32 },

    /// A DATASEC's size or variable offsets could not be fixed up from the
    /// ELF (`btf_fixup_datasec`).
    #[error("{message}")]
    Datasec { message: String, errno: i32 },

    /// A map definition in `.maps` is invalid (`parse_btf_map_def`,
    /// `bpf_object__init_user_btf_map`) or a `.maps` relocation is bad.
    #[error("{message}")]
    Map { message: String, errno: i32 },

    /// A relocation in a program section could not be recorded or applied
    /// (`bpf_program__record_reloc`, `bpf_object__reloc_code`,
    /// `bpf_object__relocate_data`).
    #[error("{message}")]
    Relocation { message: String, errno: i32 },

    /// `.BTF.ext` func_info or line_info could not be carried over to a
    /// program (`reloc_prog_func_and_line_info`).
    #[error("{message}")]
    BtfExtInfo { message: String, errno: i32 },

    /// A CO-RE relocation failed (`bpf_object__relocate_core`).
    #[error("prog '{prog}': relo #{relo_idx}: failed to relocate: {message}")]
    Core {
        prog: String,
        relo_idx: usize,
        message: String,
        errno: i32,
    },

    /// The target BTF (`btf_custom_path`, vmlinux or a module) is unusable.
    #[error("failed to parse target BTF: {message}")]
    TargetBtf { message: String, errno: i32 },

    /// A program's section name matched no `SEC()` definition and no type
    /// was set: libbpf refuses to load it.
    #[error("prog '{prog}': missing BPF prog type, check ELF section name '{sec_name}'")]
    MissingProgType { prog: String, sec_name: String },

    /// Something libbpf supports that this loader does not (yet).
    #[error("{message}")]
    Unsupported { message: String },

    /// A setter was called on a program or map after relocation.
    #[error("{message}")]
    Busy { message: String, errno: i32 },

    /// A file could not be read.
    #[error("failed to read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl ObjectError {
    /// The positive errno libbpf returns (as `-errno`) for this condition;
    /// values from 4000 are libbpf's own `LIBBPF_ERRNO__*` codes.
    pub fn errno(&self) -> i32 {
        match self {
            ObjectError::Elf { errno, .. }
            | ObjectError::Program { errno, .. }
            | ObjectError::BtfRequired { errno }
            | ObjectError::Extern { errno, .. }
            | ObjectError::Kconfig { errno, .. }
            | ObjectError::Datasec { errno, .. }
            | ObjectError::Map { errno, .. }
            | ObjectError::Relocation { errno, .. }
            | ObjectError::BtfExtInfo { errno, .. }
            | ObjectError::Core { errno, .. }
            | ObjectError::TargetBtf { errno, .. }
            | ObjectError::Busy { errno, .. } => *errno,
            ObjectError::LegacyMapsSection | ObjectError::Unsupported { .. } => ENOTSUP,
            ObjectError::Btf { source } => source.errno(),
            ObjectError::MissingProgType { .. } => EINVAL,
            ObjectError::Io { source, .. } => source.raw_os_error().unwrap_or(EIO),
        }
    }

    pub(crate) fn elf(errno: i32, message: impl Into<String>) -> ObjectError {
        ObjectError::Elf {
            message: message.into(),
            errno,
        }
    }

    pub(crate) fn program(errno: i32, message: impl Into<String>) -> ObjectError {
        ObjectError::Program {
            message: message.into(),
            errno,
        }
    }

    pub(crate) fn extern_(errno: i32, message: impl Into<String>) -> ObjectError {
        ObjectError::Extern {
            message: message.into(),
            errno,
        }
    }

    pub(crate) fn kconfig(errno: i32, message: impl Into<String>) -> ObjectError {
        ObjectError::Kconfig {
            message: message.into(),
            errno,
        }
    }

    pub(crate) fn datasec(errno: i32, message: impl Into<String>) -> ObjectError {
        ObjectError::Datasec {
            message: message.into(),
            errno,
        }
    }

    pub(crate) fn map(errno: i32, message: impl Into<String>) -> ObjectError {
        ObjectError::Map {
            message: message.into(),
            errno,
        }
    }

    pub(crate) fn reloc(errno: i32, message: impl Into<String>) -> ObjectError {
        ObjectError::Relocation {
            message: message.into(),
            errno,
        }
    }

    pub(crate) fn unsupported(message: impl Into<String>) -> ObjectError {
        ObjectError::Unsupported {
            message: message.into(),
        }
    }
}
