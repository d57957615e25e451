//! userbpf-jit-bench: userbpf's JIT against native code, its interpreter
//! and rbpf, on the bpf-benchmark programs and a few realistic ones.
//!
//!     cargo run --release -p userbpf-benches --bin userbpf-jit-bench -- [--quick] [--filter NAME]
//!
//! Prints markdown tables on stdout; see docs/benchmarks.md.

fn main() -> anyhow::Result<()> {
    userbpf_benches::harness::run(std::env::args().skip(1))
}
