//! Attaching programs on the userspace backend: where a uprobe or a USDT
//! probe lands in a binary, which syscalls a syscall tracepoint covers,
//! and the link records agents act on.

pub mod binary;
pub mod link;
pub mod sec;
pub mod syscall;
pub mod usdt;

pub use crate::errstr::errstr;
