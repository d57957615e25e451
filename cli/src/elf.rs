//! Just enough ELF to tell how a program will be linked at run time: is
//! there a dynamic loader (`PT_INTERP`), which libraries does it name
//! (`DT_NEEDED`), and where does it look for them (`DT_RPATH`,
//! `DT_RUNPATH`). 64-bit little-endian files only; anything else is
//! `Unknown` and left to `exec`.

use std::path::Path;

use anyhow::{Context, Result};

/// What a program file is.
#[derive(Debug)]
pub enum Exe {
    /// `#!`: the interpreter decides.
    Script,
    /// An ELF file without `PT_INTERP`: no dynamic loader runs for it
    /// (static or static-pie).
    Static,
    /// An ELF file with a dynamic loader.
    Dynamic(Dynamic),
    /// Not something we read.
    Unknown,
}

#[derive(Debug, Default)]
pub struct Dynamic {
    pub needed: Vec<String>,
    pub rpath: Option<String>,
    pub runpath: Option<String>,
}

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;
const DT_RPATH: u64 = 15;
const DT_RUNPATH: u64 = 29;

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

struct Phdr {
    type_: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

/// Reads `path`'s headers.
pub fn inspect(path: &Path) -> Result<Exe> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(parse(&bytes))
}

/// Classifies an executable's bytes.
pub fn parse(b: &[u8]) -> Exe {
    if b.starts_with(b"#!") {
        return Exe::Script;
    }
    // ELFCLASS64, ELFDATA2LSB.
    if !b.starts_with(b"\x7fELF") || b.get(4) != Some(&2) || b.get(5) != Some(&1) {
        return Exe::Unknown;
    }
    parse_elf64(b).unwrap_or(Exe::Unknown)
}

fn parse_elf64(b: &[u8]) -> Option<Exe> {
    let phoff = u64_at(b, 0x20)? as usize;
    let phentsize = u16_at(b, 0x36)? as usize;
    let phnum = u16_at(b, 0x38)? as usize;
    if phentsize < 56 {
        return None;
    }
    let mut phdrs = Vec::with_capacity(phnum);
    for i in 0..phnum {
        let o = phoff.checked_add(i.checked_mul(phentsize)?)?;
        phdrs.push(Phdr {
            type_: u32_at(b, o)?,
            offset: u64_at(b, o + 8)?,
            vaddr: u64_at(b, o + 16)?,
            filesz: u64_at(b, o + 32)?,
        });
    }
    if !phdrs.iter().any(|p| p.type_ == PT_INTERP) {
        return Some(Exe::Static);
    }
    let mut d = Dynamic::default();
    let Some(dynamic) = phdrs.iter().find(|p| p.type_ == PT_DYNAMIC) else {
        return Some(Exe::Dynamic(d));
    };
    let start = dynamic.offset as usize;
    let end = start.checked_add(dynamic.filesz as usize)?.min(b.len());
    let mut entries = Vec::new();
    let mut strtab = None;
    let mut o = start;
    while o + 16 <= end {
        let tag = u64_at(b, o)?;
        let val = u64_at(b, o + 8)?;
        if tag == DT_NULL {
            break;
        }
        if tag == DT_STRTAB {
            strtab = Some(val);
        }
        entries.push((tag, val));
        o += 16;
    }
    // DT_STRTAB is an address: find it in a loaded segment.
    let strtab_off = strtab.and_then(|a| {
        phdrs
            .iter()
            .find(|p| p.type_ == PT_LOAD && a >= p.vaddr && a - p.vaddr < p.filesz)
            .map(|p| (a - p.vaddr + p.offset) as usize)
    })?;
    let string = |off: u64| -> Option<String> {
        let s = b.get(strtab_off.checked_add(off as usize)?..)?;
        let n = s.iter().position(|&c| c == 0)?;
        Some(String::from_utf8_lossy(&s[..n]).into_owned())
    };
    for (tag, val) in entries {
        match tag {
            DT_NEEDED => d.needed.extend(string(val)),
            DT_RPATH => d.rpath = string(val),
            DT_RUNPATH => d.runpath = string(val),
            _ => {}
        }
    }
    Some(Exe::Dynamic(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_test_binary_is_dynamic_and_needs_libc() {
        let exe = std::env::current_exe().unwrap();
        match inspect(&exe).unwrap() {
            Exe::Dynamic(d) => assert!(d.needed.iter().any(|n| n.starts_with("libc.so")), "{d:?}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn scripts_and_junk() {
        assert!(matches!(parse(b"#!/bin/sh\n"), Exe::Script));
        assert!(matches!(parse(b"hello"), Exe::Unknown));
        assert!(matches!(parse(b"\x7fELF\x02\x01"), Exe::Unknown));
    }
}
