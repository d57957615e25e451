//! The benchmark programs, built by `build.rs` from `programs/*.bpf.c`.

use crate::inputs::{self, Buffer};
use crate::reference;

/// One C source, compiled to BPF and twice natively.
pub struct Source {
    pub name: &'static str,
    /// Raw BPF instructions: the `.text` of the object.
    pub bpf: &'static [u8],
    /// Built with `-O2`.
    pub native: unsafe extern "C" fn(*mut u8) -> u64,
    /// Built with `-O2 -fno-vectorize -fno-slp-vectorize -fno-builtin`.
    pub scalar: unsafe extern "C" fn(*mut u8) -> u64,
}

impl Source {
    pub fn insn_count(&self) -> usize {
        self.bpf.len() / 8
    }
}

include!(concat!(env!("OUT_DIR"), "/programs.rs"));

/// One benchmark: a program and the input it runs on.
pub struct Bench {
    /// Name in the results table.
    pub name: &'static str,
    /// The C source (`programs/<source>.bpf.c`).
    pub source: &'static str,
    pub description: &'static str,
    pub input: fn() -> Buffer,
    /// r0 computed in Rust, independently of the C code.
    pub reference: fn(&[u8]) -> u64,
    /// For programs that write memory: checks the buffer after the runs.
    pub output_ok: Option<fn(&[u8]) -> bool>,
}

/// The copy happened: the second half equals the first.
pub fn memcpy_done(mem: &[u8]) -> bool {
    let (a, b) = mem.split_at(inputs::HALF);
    a == b
}

impl Bench {
    /// The compiled program, or `None` when the toolchain was missing.
    pub fn source(&self) -> Option<&'static Source> {
        SOURCES.iter().find(|s| s.name == self.source)
    }
}

/// Every benchmark, in report order: the eight from bpf-benchmark, then
/// the realistic ones.
pub static BENCHES: &[Bench] = &[
    Bench {
        name: "simple",
        source: "simple",
        description: "return a constant",
        input: inputs::empty,
        reference: reference::simple,
        output_ok: None,
    },
    Bench {
        name: "memory_a_plus_b",
        source: "memory_a_plus_b",
        description: "two u64 loads and an add",
        input: inputs::a_plus_b,
        reference: reference::a_plus_b,
        output_ok: None,
    },
    Bench {
        name: "log2_int",
        source: "log2_int",
        description: "XOR of log2 over 1024 u64",
        input: inputs::log2_int,
        reference: reference::log2_int,
        output_ok: None,
    },
    Bench {
        name: "prime",
        source: "prime",
        description: "count primes below 10^4 by trial division",
        input: inputs::empty,
        reference: reference::prime,
        output_ok: None,
    },
    Bench {
        name: "memcpy",
        source: "memcpy",
        description: "byte copy of 1 MiB",
        input: inputs::memcpy,
        reference: reference::memcpy,
        output_ok: Some(memcpy_done),
    },
    Bench {
        name: "strcmp_full",
        source: "strcmp",
        description: "strcmp of two equal 1 MiB strings",
        input: inputs::strcmp_full,
        reference: reference::strcmp,
        output_ok: None,
    },
    Bench {
        name: "strcmp_fail",
        source: "strcmp",
        description: "strcmp, mismatch after 279,947 bytes",
        input: inputs::strcmp_fail,
        reference: reference::strcmp,
        output_ok: None,
    },
    Bench {
        name: "switch",
        source: "switch",
        description: "64-case switch over 4096 values",
        input: inputs::switch,
        reference: reference::switch,
        output_ok: None,
    },
    Bench {
        name: "crc32",
        source: "crc32",
        description: "bitwise CRC-32 of 32 KiB",
        input: inputs::crc32,
        reference: reference::crc32,
        output_ok: None,
    },
    Bench {
        name: "http_parse",
        source: "http_parse",
        description: "parse 1024 HTTP request lines",
        input: inputs::http_parse,
        reference: reference::http_parse,
        output_ok: None,
    },
    Bench {
        name: "jhash_flows",
        source: "jhash_flows",
        description: "jhash of 4096 flow records",
        input: inputs::jhash_flows,
        reference: reference::jhash_flows,
        output_ok: None,
    },
];
