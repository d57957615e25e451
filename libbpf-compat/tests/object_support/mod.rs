//! Helpers shared by the object loader tests: compiling BPF C with clang-16
//! and finding things in the resulting ELF.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use object::read::elf::{FileHeader, SectionHeader};

pub const CLANG: &str = "clang-16";

/// Compiles `source` with `clang-16 -g -O2 -target bpf`; `None` (after a
/// note on stderr) if clang-16 is not installed.
pub fn compile_bpf(name: &str, source: &str) -> Option<Vec<u8>> {
    if Command::new(CLANG).arg("--version").output().is_err() {
        eprintln!("skipped: {CLANG} not found");
        return None;
    }
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "userbpf-object-tests-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join(format!("{name}.bpf.c"));
    let obj = dir.join(format!("{name}.bpf.o"));
    std::fs::write(&src, source).unwrap();
    let out = Command::new(CLANG)
        .args([
            "-g",
            "-O2",
            "-target",
            "bpf",
            "-I/usr/include/x86_64-linux-gnu",
            "-c",
        ])
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "clang failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&obj).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    Some(bytes)
}

/// `(file offset, size)` of the section named `name`.
pub fn section_range(bytes: &[u8], name: &str) -> Option<(usize, usize)> {
    let header = object::elf::FileHeader64::<object::Endianness>::parse(bytes).ok()?;
    let endian = header.endian().ok()?;
    let sections = header.sections(endian, bytes).ok()?;
    let (_, sh) = sections.section_by_name(endian, name.as_bytes())?;
    Some((sh.sh_offset(endian) as usize, sh.sh_size(endian) as usize))
}

/// A small deterministic PRNG (xorshift64*), so fuzz runs repeat.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
