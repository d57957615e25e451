//! The JIT benchmark suite: the bpf-benchmark programs (clean-room rewrites)
//! plus a few realistic ones, their inputs and reference results, and the
//! runtimes that run them (native code, userbpf's JIT and interpreter,
//! rbpf's JIT and interpreter).
//!
//! The binary `userbpf-jit-bench` times them; `tests/smoke.rs` checks that
//! every runtime returns the expected r0.

pub mod harness;
pub mod inputs;
pub mod programs;
pub mod reference;
pub mod runtimes;
