//! Errors of the C ABI layer and their errno values.

use thiserror::Error;

/// Why an entry point failed; [`AbiError::errno`] is what the caller sees.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AbiError {
    /// The entry point exists but userbpf does not implement it yet.
    #[error("{symbol} is not supported by userbpf yet")]
    NotSupportedYet {
        /// The libbpf symbol.
        symbol: &'static str,
    },
    /// A Rust panic was caught at the C boundary.
    #[error("{symbol}: internal error (panic caught at the C ABI boundary)")]
    Panic {
        /// The libbpf symbol.
        symbol: &'static str,
    },
    /// A plain errno value (libbpf's own `LIBBPF_ERRNO__*` included).
    #[error("errno {0}")]
    Errno(i32),
}

impl AbiError {
    /// The positive errno value libbpf would report.
    pub fn errno(&self) -> i32 {
        match self {
            AbiError::NotSupportedYet { .. } => libc::EOPNOTSUPP,
            AbiError::Panic { .. } => libc::EFAULT,
            AbiError::Errno(e) => e.abs(),
        }
    }
}
