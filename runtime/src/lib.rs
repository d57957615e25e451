//! userbpf's eBPF runtime: the instruction set, an assembler and
//! disassembler, program validation, the interpreter and the helper registry.
//!
//! See [`vm`] for the embedding API.

pub mod asm;
pub mod disasm;
pub mod helpers;
pub mod interp;
pub mod isa;
pub mod jit;
pub mod memory;
pub mod program;
pub mod tailcall;
pub mod vm;
