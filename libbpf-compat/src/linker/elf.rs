//! The little ELF64 (little-endian, `ET_REL`, `EM_BPF`) reader and writer
//! the static linker needs: section headers, data, symbols, relocations.

use super::LinkError;

pub(crate) const SHT_PROGBITS: u32 = 1;
pub(crate) const SHT_SYMTAB: u32 = 2;
pub(crate) const SHT_STRTAB: u32 = 3;
pub(crate) const SHT_NOBITS: u32 = 8;
pub(crate) const SHT_REL: u32 = 9;
pub(crate) const SHT_LLVM_ADDRSIG: u32 = 0x6fff_4c03;
pub(crate) const SHF_EXECINSTR: u64 = 0x4;
pub(crate) const SHF_STRINGS: u64 = 0x20;
pub(crate) const SHN_UNDEF: u16 = 0;
pub(crate) const SHN_LORESERVE: u16 = 0xff00;
pub(crate) const STB_LOCAL: u8 = 0;
pub(crate) const STB_GLOBAL: u8 = 1;
pub(crate) const STB_WEAK: u8 = 2;
pub(crate) const STT_OBJECT: u8 = 1;
pub(crate) const STT_SECTION: u8 = 3;
const EM_BPF: u16 = 247;
const ET_REL: u16 = 1;
pub(crate) const SYM_SIZE: usize = 24;
pub(crate) const REL_SIZE: usize = 16;

fn rd16(b: &[u8], off: usize) -> u16 {
    b.get(off..off + 2)
        .map_or(0, |s| u16::from_le_bytes([s[0], s[1]]))
}
pub(crate) fn rd32(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4)
        .map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}
pub(crate) fn rd64(b: &[u8], off: usize) -> u64 {
    b.get(off..off + 8).map_or(0, |s| {
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        u64::from_le_bytes(a)
    })
}
pub(crate) fn wr32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
pub(crate) fn wr64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

/// One section of an input file.
#[derive(Clone, Debug, Default)]
pub(crate) struct Shdr {
    pub name: String,
    pub sh_type: u32,
    pub flags: u64,
    pub link: u32,
    pub info: u32,
    pub align: u64,
    pub entsize: u64,
    pub size: u64,
    /// The section's bytes (empty for `SHT_NOBITS`).
    pub data: Vec<u8>,
}

/// `Elf64_Sym`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Sym {
    pub name: u32,
    pub info: u8,
    pub other: u8,
    pub shndx: u16,
    pub value: u64,
    pub size: u64,
}

impl Sym {
    pub(crate) fn bind(&self) -> u8 {
        self.info >> 4
    }
    pub(crate) fn typ(&self) -> u8 {
        self.info & 0xf
    }
    pub(crate) fn vis(&self) -> u8 {
        self.other & 3
    }
    pub(crate) fn parse(b: &[u8]) -> Sym {
        Sym {
            name: rd32(b, 0),
            info: b[4],
            other: b[5],
            shndx: rd16(b, 6),
            value: rd64(b, 8),
            size: rd64(b, 16),
        }
    }
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.name.to_le_bytes());
        out.push(self.info);
        out.push(self.other);
        out.extend_from_slice(&self.shndx.to_le_bytes());
        out.extend_from_slice(&self.value.to_le_bytes());
        out.extend_from_slice(&self.size.to_le_bytes());
    }
}

/// The NUL-terminated string at `off` of a string section.
pub(crate) fn str_at(data: &[u8], off: usize) -> Option<&str> {
    let tail = data.get(off..)?;
    let end = tail.iter().position(|&b| b == 0)?;
    std::str::from_utf8(&tail[..end]).ok()
}

/// Reads the section headers of an ELF relocatable BPF object.
pub(crate) fn parse(bytes: &[u8], filename: &str) -> Result<Vec<Shdr>, LinkError> {
    let bad = |what: &str| LinkError::inval(format!("{what} {filename}"));
    let unsupported = |why: &str| {
        LinkError::new(
            super::EOPNOTSUPP,
            format!("unsupported kind of ELF file {filename}: {why}"),
        )
    };
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" {
        return Err(LinkError::inval(format!(
            "failed to get ELF header for {filename}: invalid `Elf' handle"
        )));
    }
    if bytes[4] != 2 {
        return Err(LinkError::inval(format!(
            "failed to get ELF header for {filename}: invalid binary class"
        )));
    }
    match bytes[5] {
        1 => {}
        // libbpf links big-endian objects into a big-endian output.
        2 => {
            return Err(unsupported(
                "big-endian objects are not supported by userbpf",
            ))
        }
        _ => {
            return Err(LinkError::new(
                super::EOPNOTSUPP,
                format!("unknown byte order of ELF file {filename}"),
            ))
        }
    }
    if rd16(bytes, 16) != ET_REL || rd16(bytes, 18) != EM_BPF {
        return Err(unsupported("no error"));
    }
    let shoff = rd64(bytes, 40) as usize;
    let shentsize = rd16(bytes, 58) as usize;
    let shnum = rd16(bytes, 60) as usize;
    let shstrndx = rd16(bytes, 62) as usize;
    // libelf finds no sections when their header table is not in the
    // file; libbpf then misses the SYMTAB.
    let table_len = shnum.saturating_mul(shentsize);
    if shentsize < 64
        || shoff
            .checked_add(table_len)
            .is_none_or(|end| end > bytes.len())
    {
        return Ok(vec![Shdr::default()]);
    }
    if shstrndx >= shnum {
        return Err(bad("failed to get SHSTRTAB section index for"));
    }
    let raw: Vec<&[u8]> = (0..shnum)
        .map(|i| &bytes[shoff + i * shentsize..shoff + i * shentsize + 64])
        .collect();
    let data_of = |h: &[u8]| -> Option<Vec<u8>> {
        if rd32(h, 4) == SHT_NOBITS {
            return Some(Vec::new());
        }
        let off = rd64(h, 24) as usize;
        let size = rd64(h, 32) as usize;
        bytes.get(off..off.checked_add(size)?).map(<[u8]>::to_vec)
    };
    let shstr = data_of(raw[shstrndx]).ok_or_else(|| bad("failed to get SHSTRTAB for"))?;
    let mut out = Vec::with_capacity(shnum);
    for (i, h) in raw.iter().enumerate() {
        let name = match i {
            0 => String::new(),
            _ => str_at(&shstr, rd32(h, 0) as usize)
                .ok_or_else(|| bad(&format!("failed to get section #{i} name for")))?
                .to_string(),
        };
        let data = data_of(h)
            .ok_or_else(|| bad(&format!("failed to get section #{i} ({name}) data from")))?;
        out.push(Shdr {
            name,
            sh_type: rd32(h, 4),
            flags: rd64(h, 8),
            link: rd32(h, 40),
            info: rd32(h, 44),
            align: rd64(h, 48),
            entsize: rd64(h, 56),
            size: rd64(h, 32),
            data,
        });
    }
    Ok(out)
}

/// One output section: its header fields and bytes.
pub(crate) struct OutSec {
    pub name_off: u32,
    pub sh_type: u32,
    pub flags: u64,
    pub link: u32,
    pub info: u32,
    pub align: u64,
    pub entsize: u64,
    pub size: u64,
    pub data: Vec<u8>,
}

/// Lays out an ELF file: header, each section's data, section headers.
/// `secs[0]` is the null section; `shstrndx` names the section-name table.
pub(crate) fn write(secs: &[OutSec], shstrndx: u16) -> Vec<u8> {
    let mut out = vec![0u8; 64];
    let mut offsets = Vec::with_capacity(secs.len());
    for s in secs {
        let align = s.align.max(1) as usize;
        while !out.len().is_multiple_of(align) {
            out.push(0);
        }
        offsets.push(out.len() as u64);
        if s.sh_type != SHT_NOBITS {
            out.extend_from_slice(&s.data);
        }
    }
    while !out.len().is_multiple_of(8) {
        out.push(0);
    }
    let shoff = out.len() as u64;
    for (i, s) in secs.iter().enumerate() {
        let mut h = [0u8; 64];
        if i != 0 {
            wr32(&mut h, 0, s.name_off);
            wr32(&mut h, 4, s.sh_type);
            wr64(&mut h, 8, s.flags);
            wr64(&mut h, 24, offsets[i]);
            wr64(&mut h, 32, s.size);
            wr32(&mut h, 40, s.link);
            wr32(&mut h, 44, s.info);
            wr64(&mut h, 48, s.align);
            wr64(&mut h, 56, s.entsize);
        }
        out.extend_from_slice(&h);
    }
    let hdr = &mut out[..64];
    hdr[..4].copy_from_slice(b"\x7fELF");
    hdr[4] = 2; // ELFCLASS64
    hdr[5] = 1; // ELFDATA2LSB
    hdr[6] = 1; // EV_CURRENT
    hdr[16..18].copy_from_slice(&ET_REL.to_le_bytes());
    hdr[18..20].copy_from_slice(&EM_BPF.to_le_bytes());
    wr32(hdr, 20, 1);
    wr64(hdr, 40, shoff);
    hdr[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
    hdr[58..60].copy_from_slice(&64u16.to_le_bytes()); // e_shentsize
    hdr[60..62].copy_from_slice(&(secs.len() as u16).to_le_bytes());
    hdr[62..64].copy_from_slice(&shstrndx.to_le_bytes());
    out
}
