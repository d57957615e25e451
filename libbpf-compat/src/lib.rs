//! libbpf.so.1: the libbpf C ABI on userbpf (issue 5).
//!
//! [`object`] is libbpf's `bpf_object__open` and the relocation half of
//! `bpf_object__load`: it turns a BPF ELF object into programs whose
//! instructions are ready for `userbpf_runtime::program::Program::new`, plus
//! the maps they reference. The C ABI itself is not written yet.

pub mod attach;
pub mod backend;
pub mod errstr;
pub mod linker;
pub mod object;
