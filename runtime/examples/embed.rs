//! Embedding userbpf: assemble a program, register a helper, run it.
//!
//! ```sh
//! cargo run -p userbpf-runtime --example embed
//! USERBPF_ENGINE=interp cargo run -p userbpf-runtime --example embed
//! ```

use std::process::ExitCode;

use userbpf_runtime::asm::assemble;
use userbpf_runtime::helpers::{HelperEnv, HelperRegistry};
use userbpf_runtime::vm::{Vm, VmOptions};

/// Helper 1: a checksum step, `(acc * 31 + byte) mod 2^32`.
unsafe extern "C" fn mix(acc: u64, byte: u64, _: u64, _: u64, _: u64, _: *mut HelperEnv) -> u64 {
    (acc.wrapping_mul(31).wrapping_add(byte)) & 0xffff_ffff
}

/// Sums the bytes of the input through the helper; also writes the byte
/// count at the end of the buffer (the context is read-write).
const SOURCE: &str = "
    # r1 = buffer, r2 = its length; the last 8 bytes receive the count.
    mov %r6, %r1          # r6: cursor
    mov %r7, %r1
    add %r7, %r2
    sub %r7, 8            # r7: end of the data part
    mov %r8, 0            # r8: accumulator
    mov %r9, 0            # r9: count
loop:
    jge %r6, %r7, done
    mov %r1, %r8
    ldxb %r2, [%r6]
    call 1
    mov %r8, %r0
    add %r6, 1
    add %r9, 1
    ja loop
done:
    stxdw [%r7], %r9
    mov %r0, %r8
    exit
";

fn main() -> ExitCode {
    let insns = match assemble(SOURCE) {
        Ok(insns) => insns,
        Err(e) => {
            eprintln!("assembly failed: {e}");
            return ExitCode::FAILURE;
        }
    };

    let mut helpers = HelperRegistry::new();
    helpers.register(1, "mix", mix);

    // Engine::Default: USERBPF_ENGINE decides, else the interpreter.
    let options = VmOptions {
        instruction_limit: Some(1_000_000),
        ..VmOptions::default()
    };
    let vm = match Vm::from_insns(insns, &helpers, options) {
        Ok(vm) => vm,
        Err(e) => {
            eprintln!("load failed: {e}");
            return ExitCode::FAILURE;
        }
    };

    let mut buffer = b"hello, userbpf\0\0\0\0\0\0\0\0".to_vec();
    match vm.run(&mut buffer) {
        Ok(r0) => {
            let count =
                u64::from_le_bytes(buffer[buffer.len() - 8..].try_into().unwrap_or_default());
            println!("engine: {}", vm.engine());
            println!("checksum: {r0:#x} over {count} bytes");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("run failed: {e}");
            ExitCode::FAILURE
        }
    }
}
