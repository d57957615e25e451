//! Finding `.BTF`, `.BTF.ext` and `.BTF.base` in an ELF image, with the
//! checks libbpf's `btf_find_elf_sections` makes through libelf: a valid
//! ELF header, readable section headers and names, the section name string
//! table inside the file, and each BTF section of type `SHT_PROGBITS` with
//! its data inside the file. Both classes and both byte orders are read;
//! extended section numbering (`e_shnum == 0`, `SHN_XINDEX`) is followed.
//! Nothing is copied: the sections are slices of the image.

use thiserror::Error;

/// `SHT_PROGBITS`.
const SHT_PROGBITS: u32 = 1;
/// `SHT_NOBITS`: no data in the file.
const SHT_NOBITS: u32 = 8;
/// `SHN_XINDEX`: the real `e_shstrndx` is in section 0's `sh_link`.
const SHN_XINDEX: u16 = 0xffff;

/// Why an ELF image was refused. libbpf reports all of these as
/// `-LIBBPF_ERRNO__FORMAT`; the messages follow its warnings.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ElfError {
    #[error("failed to get EHDR")]
    BadHeader,
    #[error("failed to get section names section index")]
    BadShstrndx,
    #[error("failed to get e_shstrndx")]
    BadShstrtab,
    #[error("failed to get section({index}) header")]
    BadSectionHeader { index: usize },
    #[error("failed to get section({index}) name")]
    BadSectionName { index: usize },
    #[error("unexpected section type ({sh_type}) of section({index}, {name})")]
    UnexpectedSectionType {
        index: usize,
        name: String,
        sh_type: u32,
    },
    #[error("failed to get section({index}, {name}) data")]
    BadSectionData { index: usize, name: String },
}

/// The BTF sections of an ELF image.
#[derive(Clone, Copy, Debug, Default)]
pub struct BtfSections<'a> {
    /// `.BTF`.
    pub btf: Option<&'a [u8]>,
    /// `.BTF.ext`.
    pub btf_ext: Option<&'a [u8]>,
    /// `.BTF.base` (distilled base BTF of a module).
    pub btf_base: Option<&'a [u8]>,
    /// 4 for `ELFCLASS32`, 8 for `ELFCLASS64`: the pointer size libbpf
    /// sets on BTF parsed from the file.
    pub pointer_size: u32,
}

/// Whether `bytes` starts with the ELF magic (libelf's `ELF_K_ELF`).
pub fn is_elf(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x7fELF")
}

struct Reader<'a> {
    bytes: &'a [u8],
    is64: bool,
    big: bool,
}

impl<'a> Reader<'a> {
    fn uint(&self, at: usize, size: usize) -> Option<u64> {
        let raw = self.bytes.get(at..at.checked_add(size)?)?;
        let mut value = 0u64;
        for i in 0..size {
            let b = if self.big { raw[i] } else { raw[size - 1 - i] };
            value = (value << 8) | u64::from(b);
        }
        Some(value)
    }

    fn u16(&self, at: usize) -> Option<u16> {
        self.uint(at, 2).map(|v| v as u16)
    }

    fn u32(&self, at: usize) -> Option<u32> {
        self.uint(at, 4).map(|v| v as u32)
    }

    /// A word that is 4 bytes in ELF32 and 8 in ELF64.
    fn addr(&self, at: usize) -> Option<u64> {
        self.uint(at, if self.is64 { 8 } else { 4 })
    }
}

/// One section header's fields that matter here.
struct Shdr {
    name: u32,
    sh_type: u32,
    offset: u64,
    size: u64,
    link: u32,
}

/// Finds the BTF sections of an ELF image.
pub fn find_btf_sections(bytes: &[u8]) -> Result<BtfSections<'_>, ElfError> {
    if !is_elf(bytes) || bytes.len() < 16 {
        return Err(ElfError::BadHeader);
    }
    let is64 = match bytes[4] {
        1 => false,
        2 => true,
        _ => return Err(ElfError::BadHeader),
    };
    let big = match bytes[5] {
        1 => false,
        2 => true,
        _ => return Err(ElfError::BadHeader),
    };
    let r = Reader { bytes, is64, big };
    let header = |field: Option<u64>| field.ok_or(ElfError::BadHeader);
    // e_shoff, e_shentsize, e_shnum, e_shstrndx.
    let (shoff, shentsize, shnum, shstrndx) = if is64 {
        (
            header(r.addr(0x28))?,
            header(r.u16(0x3a).map(u64::from))?,
            header(r.u16(0x3c).map(u64::from))?,
            header(r.u16(0x3e).map(u64::from))?,
        )
    } else {
        (
            header(r.addr(0x20))?,
            header(r.u16(0x2e).map(u64::from))?,
            header(r.u16(0x30).map(u64::from))?,
            header(r.u16(0x32).map(u64::from))?,
        )
    };
    let min_entsize = if is64 { 64 } else { 40 };
    let shdr = |index: usize| -> Option<Shdr> {
        if shentsize < min_entsize {
            return None;
        }
        let at = shoff.checked_add(shentsize.checked_mul(index as u64)?)?;
        let at = usize::try_from(at).ok()?;
        // The whole entry must be in the file.
        bytes.get(at..at.checked_add(usize::try_from(shentsize).ok()?)?)?;
        if is64 {
            Some(Shdr {
                name: r.u32(at)?,
                sh_type: r.u32(at + 4)?,
                offset: r.addr(at + 0x18)?,
                size: r.addr(at + 0x20)?,
                link: r.u32(at + 0x28)?,
            })
        } else {
            Some(Shdr {
                name: r.u32(at)?,
                sh_type: r.u32(at + 4)?,
                offset: r.addr(at + 0x10)?,
                size: r.addr(at + 0x14)?,
                link: r.u32(at + 0x18)?,
            })
        }
    };
    let mut sections = BtfSections {
        pointer_size: if is64 { 8 } else { 4 },
        ..BtfSections::default()
    };
    if shoff == 0 {
        return Ok(sections); // no section headers at all
    }
    let first = shdr(0).ok_or(ElfError::BadShstrndx)?;
    let count = match shnum {
        0 => first.size,
        n => n,
    };
    let shstrndx = match shstrndx as u16 {
        SHN_XINDEX => u64::from(first.link),
        n => u64::from(n),
    };
    if count == 0 || shstrndx >= count {
        return Err(ElfError::BadShstrndx);
    }
    let data_of = |s: &Shdr| -> Option<&[u8]> {
        if s.sh_type == SHT_NOBITS {
            return Some(&[]);
        }
        let start = usize::try_from(s.offset).ok()?;
        let end = start.checked_add(usize::try_from(s.size).ok()?)?;
        bytes.get(start..end)
    };
    let strtab = shdr(shstrndx as usize)
        .as_ref()
        .and_then(data_of)
        .ok_or(ElfError::BadShstrtab)?;
    for index in 1..count as usize {
        let s = shdr(index).ok_or(ElfError::BadSectionHeader { index })?;
        let name = strtab
            .get(s.name as usize..)
            .and_then(|tail| tail.split(|&b| b == 0).next().filter(|_| tail.contains(&0)))
            .ok_or(ElfError::BadSectionName { index })?;
        let field = match name {
            b".BTF" => &mut sections.btf,
            b".BTF.ext" => &mut sections.btf_ext,
            b".BTF.base" => &mut sections.btf_base,
            _ => continue,
        };
        let name = String::from_utf8_lossy(name).into_owned();
        if s.sh_type != SHT_PROGBITS {
            return Err(ElfError::UnexpectedSectionType {
                index,
                name,
                sh_type: s.sh_type,
            });
        }
        *field = Some(data_of(&s).ok_or(ElfError::BadSectionData { index, name })?);
    }
    Ok(sections)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 LE image: null section, .shstrtab, and `extra`
    /// sections (name, type, data).
    fn image(extra: &[(&str, u32, &[u8])]) -> Vec<u8> {
        let mut strtab = b"\0.shstrtab\0".to_vec();
        let mut data = Vec::new();
        let mut headers = vec![[0u64; 4]]; // name, type, offset, size
        let mut blobs = Vec::new();
        for (name, sh_type, bytes) in extra {
            let name_off = strtab.len() as u64;
            strtab.extend_from_slice(name.as_bytes());
            strtab.push(0);
            headers.push([name_off, u64::from(*sh_type), 0, bytes.len() as u64]);
            blobs.push(bytes.to_vec());
        }
        headers.insert(1, [1, 3, 0, strtab.len() as u64]);
        blobs.insert(0, strtab);
        let mut at = 64u64;
        for (h, b) in headers.iter_mut().skip(1).zip(&blobs) {
            h[2] = at;
            data.extend_from_slice(b);
            at += b.len() as u64;
        }
        let shoff = at;
        let mut out = vec![0u8; 64];
        out[..4].copy_from_slice(b"\x7fELF");
        out[4] = 2;
        out[5] = 1;
        out[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
        out[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        out[0x3c..0x3e].copy_from_slice(&(headers.len() as u16).to_le_bytes());
        out[0x3e..0x40].copy_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&data);
        for h in &headers {
            let mut sh = [0u8; 64];
            sh[..4].copy_from_slice(&(h[0] as u32).to_le_bytes());
            sh[4..8].copy_from_slice(&(h[1] as u32).to_le_bytes());
            sh[0x18..0x20].copy_from_slice(&h[2].to_le_bytes());
            sh[0x20..0x28].copy_from_slice(&h[3].to_le_bytes());
            out.extend_from_slice(&sh);
        }
        out
    }

    #[test]
    fn finds_btf_sections() {
        let img = image(&[
            (".text", 1, b"code"),
            (".BTF", 1, b"btf!"),
            (".BTF.ext", 1, b"x"),
        ]);
        let s = find_btf_sections(&img).unwrap();
        assert_eq!(s.btf, Some(&b"btf!"[..]));
        assert_eq!(s.btf_ext, Some(&b"x"[..]));
        assert_eq!(s.btf_base, None);
        assert_eq!(s.pointer_size, 8);
    }

    #[test]
    fn refuses_what_libbpf_refuses() {
        assert_eq!(
            find_btf_sections(b"not an elf").unwrap_err(),
            ElfError::BadHeader
        );
        let img = image(&[(".BTF", 8, b"")]);
        assert!(matches!(
            find_btf_sections(&img),
            Err(ElfError::UnexpectedSectionType { sh_type: 8, .. })
        ));
        let img = image(&[(".BTF", 1, b"btf!")]);
        let truncated = &img[..img.len() - 10];
        assert!(find_btf_sections(truncated).is_err());
        let none = image(&[(".text", 1, b"code")]);
        assert!(find_btf_sections(&none).unwrap().btf.is_none());
    }
}
