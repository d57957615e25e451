//! libuserbpf_agent.so: hooks inside target processes (issue 6).
//!
//! [`hook`] is the x86-64 inline hook engine: uprobes at function entry or
//! at any instruction boundary, uretprobes, and override-return.

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub mod hook;
