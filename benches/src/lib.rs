//! Benchmarks: the JIT against native code and rbpf; overhead against the kernel.
