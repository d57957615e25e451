//! Why a hook could not be installed or removed.

/// Errors of [`super::Hook`]. Every refusal leaves the target untouched.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum HookError {
    #[error("{addr:#x} is not in a mapping of this process")]
    NotMapped { addr: usize },
    #[error("{addr:#x} is not in an executable mapping")]
    NotExecutable { addr: usize },
    #[error("{addr:#x} is in a shared mapping; patching it would write through to the file")]
    SharedMapping { addr: usize },
    #[error("{addr:#x} is outside the function {start:#x}..{end:#x}")]
    OutsideFunction {
        addr: usize,
        start: usize,
        end: usize,
    },
    #[error("{addr:#x} is not an instruction boundary of its function")]
    NotInstructionBoundary { addr: usize },
    #[error("cannot decode an instruction at {addr:#x}")]
    Decode { addr: usize },
    #[error(
        "the site {addr:#x} has only {available} bytes of instructions before the code ends \
         (a jump needs 5)"
    )]
    TooShort { addr: usize, available: usize },
    #[error(
        "the patched range {start:#x}..{end:#x} spans the end of the function ({func_end:#x})"
    )]
    SpansFunctionEnd {
        start: usize,
        end: usize,
        func_end: usize,
    },
    #[error("the instruction at {from:#x} jumps to {target:#x}, inside the patched range")]
    JumpIntoPatch { from: usize, target: usize },
    #[error("cannot relocate `{what}` at {addr:#x}")]
    Unrelocatable { addr: usize, what: String },
    #[error("relocating the instructions at {addr:#x} failed: {reason}")]
    Relocation { addr: usize, reason: String },
    #[error("no free memory for a trampoline within reach of {addr:#x}")]
    NoTrampolineSpace { addr: usize },
    #[error("{addr:#x} is already hooked, or its patch would overlap a hook at {other:#x}")]
    AlreadyHooked { addr: usize, other: usize },
    #[error("a return hook needs a hook at a function entry; {addr:#x} was not declared one")]
    NotFunctionEntry { addr: usize },
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
    #[error("{op} failed: {}", std::io::Error::from_raw_os_error(*.errno))]
    Os { op: &'static str, errno: i32 },
    #[error("the hook was already removed")]
    Removed,
}

impl HookError {
    /// The last OS error, as `op` failed.
    pub(crate) fn last_os(op: &'static str) -> Self {
        HookError::Os {
            op,
            errno: std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
        }
    }
}

impl HookError {
    /// The errno a link that could not be installed reports.
    pub fn errno(&self) -> i32 {
        match self {
            HookError::NotMapped { .. } => libc::EFAULT,
            HookError::NotExecutable { .. } | HookError::SharedMapping { .. } => libc::EACCES,
            HookError::AlreadyHooked { .. } => libc::EBUSY,
            HookError::NoTrampolineSpace { .. } => libc::ENOMEM,
            HookError::Unsupported(_) => libc::EOPNOTSUPP,
            HookError::Os { errno, .. } => *errno,
            _ => libc::EINVAL,
        }
    }
}
