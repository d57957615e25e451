//! userbpf's eBPF runtime: the instruction set, an assembler and
//! disassembler, program validation, the interpreter and the helper registry.
//!
//! See [`vm`] for the embedding API.

pub mod asm;
pub mod cpu;
pub mod ctx_access;
pub mod disasm;
pub mod helpers;
pub mod ids;
pub mod image;
pub mod interp;
pub mod isa;
pub mod jit;
pub mod maps;
pub mod memory;
pub mod namespace;
pub mod program;
pub mod registry;
pub mod shm;
pub mod syscalls;
pub mod tailcall;
pub mod vm;
