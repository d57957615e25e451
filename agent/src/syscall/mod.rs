//! System calls in user space (issue 7): every syscall this process makes
//! reaches [`dispatch::on_syscall`], which runs the attached
//! `tracepoint/syscalls/*`, `raw_syscalls`, `raw_tracepoint/sys_*` and
//! `ksyscall`/`kretsyscall` programs around the real call.
//!
//! - [`scan`]: the syscall instructions of the loaded modules.
//! - [`rewrite`]: hooks on them (the fast path), through the inline-hook engine.
//! - [`sud`]: Syscall User Dispatch (SIGSYS), the complete fallback.
//! - [`gate`]: where the dispatcher's own syscall instruction lives.
//! - [`dispatch`]: programs, contexts and the call itself.
//! - [`links`]: the published table of syscall links.
//! - [`exec`]: `execve` keeps the agent.

pub mod dispatch;
pub mod exec;
pub mod gate;
pub mod links;
pub mod rewrite;
pub mod scan;
pub mod sud;

pub use dispatch::{in_dispatch, on_syscall, take_native_pending, Outcome};
