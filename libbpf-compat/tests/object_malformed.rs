//! Malformed input must give clear errors, never a panic: truncated
//! objects, seeded random byte flips of real objects (thousands of them,
//! each opened, relocated and validated), bad relocations, and files that
//! are not BPF objects at all.

mod object_support;

use std::path::Path;

use object_support::{compile_bpf, section_range, Rng};
use userbpf_libbpf_compat::object::embedded::find_bpf_objects;
use userbpf_libbpf_compat::object::{
    KconfigSource, KernelEnv, Object, ObjectError, OpenOptions, TargetBtf, LIBBPF_ERRNO_ENDIAN,
    LIBBPF_ERRNO_FORMAT, LIBBPF_ERRNO_RELOC,
};
use userbpf_runtime::program::Program;

const SMALL_C: &str = r#"
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
char LICENSE[] SEC("license") = "GPL";
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");
int total;
const volatile int limit = 3;
static __attribute__((noinline)) int bump(int x) { return x + limit; }
SEC("tracepoint/syscalls/sys_enter_close")
int prog_a(void *ctx)
{
	__u32 key = 0;
	__u64 *v = bpf_map_lookup_elem(&counts, &key);
	if (v)
		*v += bump(1);
	total = bump(2);
	return 0;
}
SEC("tracepoint/syscalls/sys_enter_close")
int prog_b(void *ctx) { return bump(total); }
"#;

fn env() -> KernelEnv {
    KernelEnv {
        release: "test".into(),
        kernel_version: 0x060100,
        has_bpf_cookie: true,
        has_syscall_wrapper: true,
        kconfig: KconfigSource::Nothing,
    }
}

/// Errors must say something and carry an errno.
fn check_error(e: &ObjectError) {
    assert!(!e.to_string().is_empty());
    assert!(e.errno() > 0, "{e}: errno {}", e.errno());
}

/// Opens, relocates and validates; returns which stage failed, if any.
fn exercise(bytes: &[u8], target: &TargetBtf) -> &'static str {
    let mut obj = match Object::open(bytes, OpenOptions::default()) {
        Ok(obj) => obj,
        Err(e) => {
            check_error(&e);
            return "open";
        }
    };
    if let Err(e) = obj.relocate_with(target, &env()) {
        check_error(&e);
        return "relocate";
    }
    let mut all_valid = true;
    for prog in obj.programs() {
        if let Some(insns) = prog.insns() {
            all_valid &= Program::new(insns.to_vec()).is_ok();
        }
    }
    if all_valid {
        "ok"
    } else {
        "validate"
    }
}

/// The small object, and real ones from the corpus if installed. These two
/// relocate cleanly against their own BTF (see [`target_for`]) and have
/// CO-RE relocations, subprograms, global data and several maps.
fn samples() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    if let Some(bytes) = compile_bpf("small", SMALL_C) {
        out.push(("small".to_string(), bytes));
    }
    for tool in ["bindsnoop", "fsslower"] {
        if let Ok(bin) = std::fs::read(Path::new("/usr/sbin").join(tool)) {
            if let Some(obj) = find_bpf_objects(&bin).first() {
                out.push((tool.to_string(), obj.bytes.to_vec()));
            }
        }
    }
    out
}

/// The object's own BTF stands in for the kernel's: CO-RE relocations then
/// resolve against a few hundred types instead of vmlinux's 100k+, which
/// keeps thousands of iterations fast (the corpus test covers vmlinux).
fn target_for(bytes: &[u8]) -> TargetBtf {
    let obj = Object::open(bytes, OpenOptions::default()).unwrap();
    TargetBtf::from_vmlinux(userbpf_btf_core::Btf::parse(obj.btf().unwrap().raw_data()).unwrap())
}

#[test]
fn truncated_objects_are_refused() {
    for (name, bytes) in samples() {
        assert_eq!(exercise(&bytes, &target_for(&bytes)), "ok", "{name} itself");
        let step = (bytes.len() / 500).max(1);
        let cuts = (0..bytes.len().min(600)).chain((600..bytes.len()).step_by(step));
        for cut in cuts {
            match Object::open(&bytes[..cut], OpenOptions::default()) {
                Ok(_) => panic!("{name}: a {cut}-byte prefix opened"),
                Err(e) => check_error(&e),
            }
        }
    }
}

#[test]
fn random_byte_flips_never_panic() {
    // USERBPF_FUZZ_ITERATIONS raises the count for longer runs.
    let iterations: usize = std::env::var("USERBPF_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    for (name, bytes) in samples() {
        let target = target_for(&bytes);
        let mut rng = Rng::new(0x5eed_0000 ^ bytes.len() as u64);
        let mut outcomes = std::collections::BTreeMap::new();
        for _ in 0..iterations {
            let mut mutated = bytes.clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(mutated.len());
                mutated[at] ^= 1 << rng.below(8);
            }
            *outcomes.entry(exercise(&mutated, &target)).or_insert(0) += 1;
        }
        println!("{name}: {iterations} mutated objects: {outcomes:?}");
    }
}

/// `(file offset of the first Elf64_Rel, section size)` of `section`.
fn first_rel(bytes: &[u8], section: &str) -> usize {
    section_range(bytes, section).expect("relocation section").0
}

#[test]
fn bad_relocations_are_reported() {
    let Some(bytes) = compile_bpf("small", SMALL_C) else {
        return;
    };
    let rel_sec = ".reltracepoint/syscalls/sys_enter_close";
    let at = first_rel(&bytes, rel_sec);
    let offset = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());

    // Not a multiple of 8.
    let mut bad = bytes.clone();
    bad[at..at + 8].copy_from_slice(&(offset + 4).to_le_bytes());
    let err = Object::open(&bad, OpenOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "sec '{rel_sec}': invalid offset {:#x} for relo #0",
            offset + 4
        )
    );
    assert_eq!(err.errno(), LIBBPF_ERRNO_FORMAT);

    // Pointing at an instruction that is neither lddw nor call.
    let mut bad = bytes.clone();
    bad[at..at + 8].copy_from_slice(&0u64.to_le_bytes());
    let err = Object::open(&bad, OpenOptions::default()).unwrap_err();
    assert!(matches!(err, ObjectError::Relocation { .. }));
    assert_eq!(
        err.to_string(),
        "prog 'prog_a': invalid relo against 'counts' for insns[0].code 0xb7"
    );
    assert_eq!(err.errno(), LIBBPF_ERRNO_RELOC);

    // A symbol index past the symbol table.
    let mut bad = bytes.clone();
    bad[at + 12..at + 16].copy_from_slice(&0xffffu32.to_le_bytes());
    let err = Object::open(&bad, OpenOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("sec '{rel_sec}': symbol #65535 not found for relo #0")
    );
    assert_eq!(err.errno(), LIBBPF_ERRNO_FORMAT);

    // Past the end of the section.
    let (_, text_size) = section_range(&bytes, "tracepoint/syscalls/sys_enter_close").unwrap();
    let mut bad = bytes.clone();
    bad[at..at + 8].copy_from_slice(&(text_size as u64).to_le_bytes());
    let err = Object::open(&bad, OpenOptions::default()).unwrap_err();
    assert!(err.to_string().contains("invalid offset"), "{err}");
}

#[test]
fn not_bpf_objects() {
    let err = Object::open(b"", OpenOptions::default()).unwrap_err();
    check_error(&err);
    let err = Object::open(b"#!/bin/sh\necho hi\n", OpenOptions::default()).unwrap_err();
    assert!(
        err.to_string().ends_with("is not a proper ELF object"),
        "{err}"
    );
    assert_eq!(err.errno(), LIBBPF_ERRNO_FORMAT);

    let Some(bytes) = compile_bpf("small", SMALL_C) else {
        return;
    };
    let mut elf32 = bytes.clone();
    elf32[4] = 1;
    let err = Object::open(&elf32, OpenOptions::default()).unwrap_err();
    assert!(
        err.to_string().ends_with("is not a 64-bit ELF object"),
        "{err}"
    );

    let mut big_endian = bytes.clone();
    big_endian[5] = 2;
    let err = Object::open(&big_endian, OpenOptions::default()).unwrap_err();
    assert_eq!(err.errno(), LIBBPF_ERRNO_ENDIAN);

    // An executable, not a relocatable object.
    let mut exec = bytes.clone();
    exec[16] = 2;
    let err = Object::open(&exec, OpenOptions::default()).unwrap_err();
    assert!(
        err.to_string().ends_with("is not a valid eBPF object file"),
        "{err}"
    );

    // An x86-64 host binary is not a BPF object either.
    if let Ok(host) = std::fs::read("/proc/self/exe") {
        let err = Object::open(&host, OpenOptions::default()).unwrap_err();
        assert_eq!(err.errno(), LIBBPF_ERRNO_FORMAT);
    }
}

#[test]
fn stripped_object_has_no_symbol_table() {
    let Some(bytes) = compile_bpf("small", SMALL_C) else {
        return;
    };
    // Turn SHT_SYMTAB into SHT_PROGBITS in its section header.
    let mut bad = bytes.clone();
    let shoff = u64::from_le_bytes(bad[40..48].try_into().unwrap()) as usize;
    let shnum = u16::from_le_bytes(bad[60..62].try_into().unwrap()) as usize;
    for i in 0..shnum {
        let ty = shoff + i * 64 + 4;
        if u32::from_le_bytes(bad[ty..ty + 4].try_into().unwrap()) == 2 {
            bad[ty..ty + 4].copy_from_slice(&1u32.to_le_bytes());
        }
    }
    let err = Object::open(&bad, OpenOptions::default()).unwrap_err();
    assert!(
        err.to_string().contains("couldn't find symbol table"),
        "{err}"
    );
    assert_eq!(err.errno(), 2);
}
