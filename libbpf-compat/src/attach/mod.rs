//! Attaching programs on the userspace backend: where a uprobe or a USDT
//! probe lands in a binary, and the link records agents act on.

pub mod binary;
pub mod link;
pub mod sec;
pub mod usdt;

pub use crate::errstr::errstr;
