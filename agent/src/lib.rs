//! libuserbpf_agent.so: runs eBPF programs on uprobes inside the process
//! that loads it (issue 6).
//!
//! Loaded with `LD_PRELOAD` (or `userbpf start`), its constructor reads the
//! registry of the namespace (`USERBPF_NAMESPACE`), installs a hook for
//! every uprobe, uretprobe and USDT link that matches this process, and
//! starts one thread that follows the registry from then on.
//!
//! - [`hook`]: the x86-64 inline hook engine.
//! - [`attach`]: registry records to sites; the reconcile step.
//! - [`sites`]: one hook per probed address and the programs it runs.
//! - [`grace`]: when replaced handler data may be freed.
//! - [`programs`]: loading programs from loaders' program files.
//! - [`watch`]: the thread that waits for registry changes.
//!
//! `userbpf attach` loads it into a running process instead (an injected
//! `dlopen`, then `userbpf_agent_start`); `userbpf detach` calls
//! `userbpf_agent_stop`.

/// Exports the Rust function `$name` (in scope) under the C name `$name`
/// as an assembly alias instead of `#[no_mangle]`: the name then stays out
/// of rustc's own version script, so the agent's `build.rs` script decides
/// what `libuserbpf_agent.so` exports, and a library that links this crate
/// (libbpf.so.1) keeps the names local with its own script.
#[doc(hidden)]
#[macro_export]
macro_rules! export_c_name {
    ($name:ident) => {
        ::core::arch::global_asm!(
            concat!(".globl ", stringify!($name)),
            concat!(".set ", stringify!($name), ", {f}"),
            f = sym $name,
        );
    };
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub mod hook;

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub mod attach;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub mod grace;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub mod programs;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub mod sites;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub mod watch;

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub mod syscall;

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod entry;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub mod interpose;

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub use entry::{start, stop, try_start, with_agent};
