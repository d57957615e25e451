//! USDT probes in a binary: the `.note.stapsdt` notes and where each probe
//! and its semaphore are in the file, as libbpf 1.7's
//! `collect_usdt_targets` finds them.
//!
//! A stapsdt note (type 3, name `stapsdt`) holds three addresses (the
//! probe's link-time address, the link-time address of `.stapsdt.base`,
//! the semaphore's address or 0) and three strings: provider, name,
//! argument spec. A prelinked binary moved `.stapsdt.base` but not the
//! notes, so the probe address is shifted by how far the section moved.
//! Addresses become file offsets through the `PT_LOAD` segment holding
//! them: uprobes are placed by file offset, and the semaphore's file offset
//! is what the kernel's `ref_ctr_offset` (and our agent) increments in each
//! mapping of the file. The same rule covers executables, PIE executables
//! and shared libraries.

use object::elf;
use object::read::elf::{FileHeader, ProgramHeader, SectionHeader};
use object::Endianness;

use super::arg::{parse_spec, UsdtSpec};
use super::UsdtError;

const NOTE_SECTION: &[u8] = b".note.stapsdt";
const BASE_SECTION: &[u8] = b".stapsdt.base";
const NOTE_TYPE: u32 = 3;
const NOTE_NAME: &[u8] = b"stapsdt";

/// `nop; nop5` (`0x90`, `nopl 0x0(%rax,%rax,1)`): newer `sdt.h` headers
/// emit it so that a probe can sit on the 5-byte nop.
const NOP_COMBO: [u8; 6] = [0x90, 0x0f, 0x1f, 0x44, 0x00, 0x00];

/// libbpf moves a probe onto the `nop5` of a `nop; nop5` site when the
/// kernel has the uprobe syscall (x86-64 Linux 6.11 and later, as here);
/// a 5-byte instruction is also what an inline hook needs.
const USE_NOP5: bool = cfg!(target_arch = "x86_64");

/// One stapsdt note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsdtNote {
    pub provider: String,
    pub name: String,
    /// The argument spec; empty when the note has none (or `:`).
    pub args: String,
    pub loc_addr: u64,
    pub base_addr: u64,
    pub sema_addr: u64,
}

/// A `PT_LOAD` segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub start: u64,
    pub end: u64,
    pub offset: u64,
    pub exec: bool,
}

/// Where a probe is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeLocation {
    /// Virtual address (link-time, prelink-adjusted).
    pub abs_ip: u64,
    /// File offset of the probed instruction.
    pub file_offset: u64,
    /// File offset of the semaphore, 0 if none.
    pub sema_offset: u64,
}

/// One call site to attach to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsdtTarget {
    pub location: ProbeLocation,
    pub spec: UsdtSpec,
    /// The note's argument string: equal strings share a spec id.
    pub spec_str: String,
}

/// A binary's USDT view: its type, loadable segments, `.stapsdt.base`
/// address and notes (each note parsed or refused).
#[derive(Debug)]
pub struct UsdtElf<'a> {
    path: String,
    data: &'a [u8],
    pub e_type: u16,
    pub segments: Vec<Segment>,
    /// `sh_addr` of `.stapsdt.base`, 0 without the section.
    pub base_addr: u64,
    notes: Vec<Option<UsdtNote>>,
}

/// libelf's `elf_kind` of a file that is not ELF: `ELF_K_AR` (1) for an
/// archive, `ELF_K_NONE` (0) for anything else.
fn elf_kind(data: &[u8]) -> u32 {
    u32::from(data.starts_with(b"!<arch>\n"))
}

impl<'a> UsdtElf<'a> {
    /// libbpf's `sanity_check_usdt_elf`, then the notes section and the
    /// segments (`path` is for messages).
    pub fn parse(path: &str, data: &'a [u8]) -> Result<UsdtElf<'a>, UsdtError> {
        let p = || path.to_owned();
        if !data.starts_with(&elf::ELFMAG) {
            return Err(UsdtError::ElfKind {
                path: p(),
                kind: elf_kind(data),
            });
        }
        // e_ident[EI_CLASS]
        match data.get(4).copied() {
            Some(c) if c == elf::ELFCLASS64.0 => {}
            Some(c) if c == elf::ELFCLASS32.0 => return Err(UsdtError::Elf32 { path: p() }),
            _ => return Err(UsdtError::ElfClass { path: p() }),
        }
        let header = elf::FileHeader64::<Endianness>::parse(data)
            .map_err(|_| UsdtError::Malformed { path: p() })?;
        let endian = header
            .endian()
            .map_err(|_| UsdtError::Malformed { path: p() })?;
        let e_type = header.e_type(endian);
        if e_type != elf::ET_EXEC && e_type != elf::ET_DYN {
            return Err(UsdtError::ElfType {
                path: p(),
                e_type: e_type.0,
            });
        }
        if endian != Endianness::Little {
            return Err(UsdtError::Endianness { path: p() });
        }
        let sections = header
            .sections(endian, data)
            .map_err(|_| UsdtError::Malformed { path: p() })?;
        let Some((_, notes_shdr)) = sections.section_by_name(endian, NOTE_SECTION) else {
            return Err(UsdtError::NoNotes { path: p() });
        };
        if notes_shdr.sh_type(endian) != elf::SHT_NOTE {
            return Err(UsdtError::BadNotesSection { path: p() });
        }
        let phdrs = header
            .program_headers(endian, data)
            .map_err(|_| UsdtError::Malformed { path: p() })?;
        let mut segments: Vec<Segment> = phdrs
            .iter()
            .filter(|ph| ph.p_type(endian) == elf::PT_LOAD)
            .map(|ph| Segment {
                start: ph.p_vaddr(endian),
                end: ph.p_vaddr(endian).wrapping_add(ph.p_memsz(endian)),
                offset: ph.p_offset(endian),
                exec: ph.p_flags(endian).0 & elf::PF_X.0 != 0,
            })
            .collect();
        if segments.is_empty() {
            return Err(UsdtError::NoLoadSegments { path: p() });
        }
        segments.sort_by_key(|s| s.start);
        let base_addr = sections
            .section_by_name(endian, BASE_SECTION)
            .map_or(0, |(_, s)| s.sh_addr(endian));
        let mut notes = Vec::new();
        let mut iter = notes_shdr
            .notes(endian, data)
            .map_err(|_| UsdtError::BadNotesSection { path: p() })?
            .ok_or_else(|| UsdtError::BadNotesSection { path: p() })?;
        loop {
            match iter.next() {
                Ok(Some(note)) => {
                    notes.push(parse_note(note.name(), note.n_type(endian).0, note.desc()))
                }
                Ok(None) => break,
                // libelf stops at a truncated note.
                Err(_) => break,
            }
        }
        Ok(UsdtElf {
            path: p(),
            data,
            e_type: e_type.0,
            segments,
            base_addr,
            notes,
        })
    }

    /// Every note, in section order; `None` for one libbpf refuses.
    pub fn notes(&self) -> &[Option<UsdtNote>] {
        &self.notes
    }

    fn segment(&self, addr: u64) -> Option<&Segment> {
        self.segments
            .iter()
            .find(|s| s.start <= addr && addr < s.end)
    }

    /// Where `note`'s probe and semaphore are in the file.
    pub fn locate(&self, note: &UsdtNote) -> Result<ProbeLocation, UsdtError> {
        let mut abs_ip = note.loc_addr;
        if self.base_addr != 0 && note.base_addr != 0 {
            abs_ip = abs_ip.wrapping_add(self.base_addr.wrapping_sub(note.base_addr));
        }
        let seg = self.segment(abs_ip).ok_or_else(|| UsdtError::NoSegment {
            provider: note.provider.clone(),
            name: note.name.clone(),
            path: self.path.clone(),
            ip: abs_ip,
        })?;
        if !seg.exec {
            return Err(UsdtError::NotExecutable {
                path: self.path.clone(),
                start: seg.start,
                end: seg.end,
                provider: note.provider.clone(),
                name: note.name.clone(),
                ip: abs_ip,
            });
        }
        let mut file_offset = abs_ip - seg.start + seg.offset;
        let mut sema_offset = 0;
        // libbpf does not apply the prelink shift to the semaphore.
        if note.sema_addr != 0 {
            let seg =
                self.segment(note.sema_addr)
                    .ok_or_else(|| UsdtError::NoSemaphoreSegment {
                        provider: note.provider.clone(),
                        name: note.name.clone(),
                        path: self.path.clone(),
                        addr: note.sema_addr,
                    })?;
            if seg.exec {
                return Err(UsdtError::SemaphoreExecutable {
                    path: self.path.clone(),
                    start: seg.start,
                    end: seg.end,
                    provider: note.provider.clone(),
                    name: note.name.clone(),
                    addr: note.sema_addr,
                });
            }
            sema_offset = note.sema_addr - seg.start + seg.offset;
        }
        let at = usize::try_from(file_offset).unwrap_or(usize::MAX);
        if USE_NOP5 && self.data.get(at..at.saturating_add(NOP_COMBO.len())) == Some(&NOP_COMBO[..])
        {
            abs_ip += 1;
            file_offset += 1;
        }
        Ok(ProbeLocation {
            abs_ip,
            file_offset,
            sema_offset,
        })
    }

    /// libbpf's `collect_usdt_targets`: every call site of
    /// `provider:name`, with its parsed argument spec (carrying
    /// `usdt_cookie`). Stops at the first bad note or matching site that
    /// cannot be placed, as libbpf does. An empty result is not an error
    /// here.
    pub fn targets(
        &self,
        provider: &str,
        name: &str,
        usdt_cookie: u64,
    ) -> Result<Vec<UsdtTarget>, UsdtError> {
        let mut out = Vec::new();
        for note in &self.notes {
            let note = note.as_ref().ok_or_else(|| UsdtError::BadNote {
                path: self.path.clone(),
            })?;
            if note.provider != provider || note.name != name {
                continue;
            }
            let location = self.locate(note)?;
            let spec = parse_spec(provider, name, &note.args, usdt_cookie)?;
            out.push(UsdtTarget {
                location,
                spec,
                spec_str: note.args.clone(),
            });
        }
        Ok(out)
    }
}

/// A C string at the start of `b` (up to its NUL), `None` without a NUL.
fn c_str(b: &[u8]) -> Option<&[u8]> {
    b.iter().position(|&c| c == 0).map(|n| &b[..n])
}

/// libbpf's `parse_usdt_note`.
fn parse_note(note_name: &[u8], n_type: u32, desc: &[u8]) -> Option<UsdtNote> {
    if note_name != NOTE_NAME || n_type != NOTE_TYPE {
        return None;
    }
    // Three addresses and at least three empty strings.
    if desc.len() < 3 * 8 + 3 {
        return None;
    }
    let addr = |i: usize| {
        let b: [u8; 8] = desc[i * 8..i * 8 + 8].try_into().unwrap_or_default();
        u64::from_le_bytes(b)
    };
    let strings = &desc[24..];
    let provider = c_str(strings)?;
    let rest = &strings[provider.len() + 1..];
    let name = c_str(rest).filter(|n| !n.is_empty())?;
    let rest = &rest[name.len() + 1..];
    if rest.is_empty() {
        return None;
    }
    // The argument string normally ends with the note's NUL.
    let args = c_str(rest).unwrap_or(rest);
    let args = if args.first() == Some(&b':') {
        &[][..]
    } else {
        args
    };
    let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Some(UsdtNote {
        provider: s(provider),
        name: s(name),
        args: s(args),
        loc_addr: addr(0),
        base_addr: addr(1),
        sema_addr: addr(2),
    })
}
