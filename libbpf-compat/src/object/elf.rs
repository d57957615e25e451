//! The ELF container of a BPF object: header checks, section headers with
//! their names and data, the symbol table and `SHT_REL` entries, read as
//! libbpf reads them through libelf (`bpf_object__elf_init` and the first
//! pass of `bpf_object__elf_collect`). What the sections *mean* is decided
//! by the modules that use them.

use object::read::elf::{FileHeader, SectionHeader};
use object::Endianness;

use self::consts as elf;

use crate::object::error::{
    ObjectError, ENOENT, LIBBPF_ERRNO_ENDIAN, LIBBPF_ERRNO_FORMAT, LIBBPF_ERRNO_LIBELF,
};

/// ELF constants libbpf's loader uses (as plain integers: `object`'s are
/// newtypes).
pub(crate) mod consts {
    pub const EI_CLASS: usize = 4;
    pub const EI_DATA: usize = 5;
    pub const ELFCLASS64: u8 = 2;
    pub const ELFDATA2LSB: u8 = 1;
    pub const ELFDATA2MSB: u8 = 2;
    pub const ET_REL: u16 = 1;
    pub const SHT_PROGBITS: u32 = 1;
    pub const SHT_SYMTAB: u32 = 2;
    pub const SHT_STRTAB: u32 = 3;
    pub const SHT_NOBITS: u32 = 8;
    pub const SHT_REL: u32 = 9;
    pub const SHF_EXECINSTR: u64 = 0x4;
    pub const SHN_UNDEF: u16 = 0;
    pub const STB_LOCAL: u8 = 0;
    pub const STB_GLOBAL: u8 = 1;
    pub const STB_WEAK: u8 = 2;
    pub const STT_NOTYPE: u8 = 0;
    pub const STT_OBJECT: u8 = 1;
    pub const STT_FUNC: u8 = 2;
    pub const STT_SECTION: u8 = 3;
    pub const STV_INTERNAL: u8 = 1;
    pub const STV_HIDDEN: u8 = 2;
}

/// `SHT_LLVM_ADDRSIG`, which libbpf ignores.
pub(crate) const SHT_LLVM_ADDRSIG: u32 = 0x6fff_4c03;
/// `SHN_LORESERVE`: symbol section indexes from here on are special.
pub(crate) const SHN_LORESERVE: u16 = 0xff00;
/// `EM_BPF`.
pub(crate) const EM_BPF: u16 = 247;

const SYM_SIZE: usize = 24;
const REL_SIZE: usize = 16;

/// One section header, with its name and (for non-`NOBITS` sections whose
/// bytes lie inside the file) its data.
#[derive(Clone, Debug)]
pub(crate) struct Section<'a> {
    pub index: usize,
    pub name: String,
    pub sh_type: u32,
    pub flags: u64,
    /// `sh_size`; for `SHT_NOBITS` the only size there is.
    pub size: u64,
    pub link: u32,
    pub info: u32,
    pub entsize: u64,
    /// `None` if the bytes are outside the file (libelf refuses to give
    /// them out); empty for `SHT_NOBITS`.
    pub data: Option<&'a [u8]>,
}

impl Section<'_> {
    pub fn is_exec(&self) -> bool {
        self.flags & elf::SHF_EXECINSTR != 0
    }

    /// The data size libelf reports (`d_size`).
    pub fn data_size(&self) -> u64 {
        if self.sh_type == elf::SHT_NOBITS {
            self.size
        } else {
            self.data.map_or(0, |d| d.len() as u64)
        }
    }
}

/// One `Elf64_Sym`, decoded; `name` is `None` if `st_name` is not a valid
/// offset into the symbol string table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Symbol {
    pub name: Option<String>,
    pub name_off: u32,
    pub info: u8,
    pub other: u8,
    pub shndx: u16,
    pub value: u64,
    pub size: u64,
}

impl Symbol {
    pub fn bind(&self) -> u8 {
        self.info >> 4
    }

    pub fn sym_type(&self) -> u8 {
        self.info & 0xf
    }

    pub fn visibility(&self) -> u8 {
        self.other & 0x3
    }

    /// `STV_HIDDEN` or `STV_INTERNAL`: libbpf treats such globals as static.
    pub fn is_hidden(&self) -> bool {
        matches!(self.visibility(), elf::STV_HIDDEN | elf::STV_INTERNAL)
    }

    /// libbpf's `sym_is_extern`: NOTYPE, GLOBAL or WEAK, undefined.
    pub fn is_extern(&self) -> bool {
        self.shndx == elf::SHN_UNDEF
            && matches!(self.bind(), elf::STB_GLOBAL | elf::STB_WEAK)
            && self.sym_type() == elf::STT_NOTYPE
    }

    /// libbpf's `sym_is_subprog`: a function (or, for static functions, the
    /// section symbol) in `.text`.
    pub fn is_subprog(&self, text_shndx: Option<usize>) -> bool {
        if Some(self.shndx as usize) != text_shndx {
            return false;
        }
        if self.bind() == elf::STB_LOCAL && self.sym_type() == elf::STT_SECTION {
            return true;
        }
        matches!(self.bind(), elf::STB_GLOBAL | elf::STB_WEAK) && self.sym_type() == elf::STT_FUNC
    }
}

/// One `Elf64_Rel`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rel {
    pub offset: u64,
    pub sym: u32,
    pub rel_type: u32,
}

/// A parsed BPF object file.
#[derive(Debug)]
pub(crate) struct ElfFile<'a> {
    /// By section index; index 0 is the null section.
    pub sections: Vec<Section<'a>>,
    pub symbols: Vec<Symbol>,
    pub symtab_index: usize,
    pub strtab_index: usize,
}

fn format_error(message: String) -> ObjectError {
    ObjectError::elf(LIBBPF_ERRNO_FORMAT, message)
}

impl<'a> ElfFile<'a> {
    /// Checks the header as `bpf_object__elf_init` does and reads every
    /// section header, name and the symbol table. `path` is the object's
    /// path or name, for messages.
    pub fn parse(bytes: &'a [u8], path: &str) -> Result<ElfFile<'a>, ObjectError> {
        if bytes.len() < 4 || bytes[..4] != *b"\x7fELF" {
            return Err(ObjectError::elf(
                LIBBPF_ERRNO_FORMAT,
                format!("elf: '{path}' is not a proper ELF object"),
            ));
        }
        if bytes.get(elf::EI_CLASS) != Some(&elf::ELFCLASS64) {
            return Err(format_error(format!(
                "elf: '{path}' is not a 64-bit ELF object"
            )));
        }
        match bytes.get(elf::EI_DATA) {
            Some(&elf::ELFDATA2LSB) if cfg!(target_endian = "little") => {}
            Some(&elf::ELFDATA2MSB) if cfg!(target_endian = "big") => {}
            Some(&elf::ELFDATA2LSB) | Some(&elf::ELFDATA2MSB) => {
                // libbpf >= 1.5 opens foreign-endian objects for
                // introspection only; nothing here could run them.
                return Err(ObjectError::elf(
                    LIBBPF_ERRNO_ENDIAN,
                    format!("elf: endianness mismatch in {path}."),
                ));
            }
            _ => {
                return Err(ObjectError::elf(
                    LIBBPF_ERRNO_ENDIAN,
                    format!("elf: '{path}' has unknown byte order"),
                ))
            }
        }
        let header = object::elf::FileHeader64::<Endianness>::parse(bytes).map_err(|e| {
            ObjectError::elf(
                LIBBPF_ERRNO_LIBELF,
                format!("elf: failed to open {path} as ELF file: {e}"),
            )
        })?;
        let endian = header.endian().map_err(|e| {
            ObjectError::elf(
                LIBBPF_ERRNO_ENDIAN,
                format!("elf: '{path}' has unknown byte order: {e}"),
            )
        })?;
        let table = header.sections(endian, bytes).map_err(|e| {
            format_error(format!(
                "elf: failed to get section names section index for {path}: {e}"
            ))
        })?;
        // libelf refuses objects whose section name strings are unreadable.
        let shstrndx = header.shstrndx(endian, bytes).map_err(|e| {
            format_error(format!(
                "elf: failed to get section names section index for {path}: {e}"
            ))
        })?;
        let names_readable = table
            .section(object::SectionIndex(shstrndx as usize))
            .ok()
            .is_some_and(|sh| {
                sh.sh_type(endian).0 == elf::SHT_NOBITS || sh.data(endian, bytes).is_ok()
            });
        if !names_readable {
            return Err(format_error(format!(
                "elf: failed to get section names strings from {path}"
            )));
        }
        // Old LLVM set e_machine to EM_NONE.
        let machine = header.e_machine(endian).0;
        if header.e_type(endian).0 != elf::ET_REL || (machine != 0 && machine != EM_BPF) {
            return Err(format_error(format!(
                "elf: {path} is not a valid eBPF object file"
            )));
        }

        let mut sections = Vec::with_capacity(table.len());
        for (index, sh) in table.enumerate() {
            let name = if index.0 == 0 {
                String::new()
            } else {
                let raw = table.section_name(endian, sh).map_err(|e| {
                    format_error(format!(
                        "elf: failed to get section({}) name from {path}: {e}",
                        index.0
                    ))
                })?;
                String::from_utf8_lossy(raw).into_owned()
            };
            let sh_type = sh.sh_type(endian).0;
            let data = if sh_type == elf::SHT_NOBITS {
                Some(&[][..])
            } else {
                sh.data(endian, bytes).ok()
            };
            sections.push(Section {
                index: index.0,
                name,
                sh_type,
                flags: sh.sh_flags(endian).0,
                size: sh.sh_size(endian),
                link: sh.sh_link(endian),
                info: sh.sh_info(endian),
                entsize: sh.sh_entsize(endian),
                data,
            });
        }

        let mut symtab = None;
        for section in sections.iter().skip(1) {
            if section.sh_type != elf::SHT_SYMTAB {
                continue;
            }
            if symtab.is_some() {
                return Err(format_error(format!(
                    "elf: multiple symbol tables in {path}"
                )));
            }
            if section.data.is_none() {
                return Err(format_error(format!(
                    "elf: failed to get section({}) {} data from {path}",
                    section.index, section.name
                )));
            }
            symtab = Some(section.index);
        }
        let Some(symtab_index) = symtab else {
            return Err(ObjectError::elf(
                ENOENT,
                format!("elf: couldn't find symbol table in {path}, stripped object file?"),
            ));
        };
        let strtab_index = sections[symtab_index].link as usize;
        // The symbol names: libelf's elf_strptr needs a string table.
        let strtab = sections
            .get(strtab_index)
            .filter(|s| strtab_index != 0 && s.sh_type == elf::SHT_STRTAB)
            .and_then(|s| s.data);
        let symbols = parse_symbols(sections[symtab_index].data.unwrap_or_default(), strtab);
        Ok(ElfFile {
            sections,
            symbols,
            symtab_index,
            strtab_index,
        })
    }

    pub fn section(&self, index: usize) -> Option<&Section<'a>> {
        self.sections.get(index)
    }

    /// The first section named `name` (libbpf's `elf_sec_by_name`).
    pub fn section_by_name(&self, name: &str) -> Option<&Section<'a>> {
        self.sections.iter().skip(1).find(|s| s.name == name)
    }

    pub fn section_name(&self, index: usize) -> &str {
        self.sections.get(index).map_or("<?>", |s| s.name.as_str())
    }

    pub fn symbol(&self, index: usize) -> Option<&Symbol> {
        self.symbols.get(index)
    }
}

fn parse_symbols(data: &[u8], strtab: Option<&[u8]>) -> Vec<Symbol> {
    data.chunks_exact(SYM_SIZE)
        .map(|raw| {
            let name_off = u32::from_ne_bytes([raw[0], raw[1], raw[2], raw[3]]);
            Symbol {
                name: strtab.and_then(|t| c_string_at(t, name_off as usize)),
                name_off,
                info: raw[4],
                other: raw[5],
                shndx: u16::from_ne_bytes([raw[6], raw[7]]),
                value: u64::from_ne_bytes(raw[8..16].try_into().unwrap_or_default()),
                size: u64::from_ne_bytes(raw[16..24].try_into().unwrap_or_default()),
            }
        })
        .collect()
}

/// The NUL-terminated string at `offset`; `None` if out of range or
/// unterminated.
fn c_string_at(table: &[u8], offset: usize) -> Option<String> {
    let rest = table.get(offset..)?;
    let end = rest.iter().position(|&b| b == 0)?;
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}

/// Decodes the entries of an `SHT_REL` section (`sh_size / sh_entsize` of
/// them, as libbpf counts; the caller checked `sh_entsize`).
pub(crate) fn parse_rels(section: &Section<'_>) -> Vec<Rel> {
    let data = section.data.unwrap_or_default();
    data.chunks_exact(REL_SIZE)
        .map(|raw| {
            let info = u64::from_ne_bytes(raw[8..16].try_into().unwrap_or_default());
            Rel {
                offset: u64::from_ne_bytes(raw[0..8].try_into().unwrap_or_default()),
                sym: (info >> 32) as u32,
                rel_type: info as u32,
            }
        })
        .collect()
}

/// Size of one `Elf64_Rel`.
pub(crate) const REL_ENTRY_SIZE: u64 = REL_SIZE as u64;
/// Size of one `Elf64_Sym`.
pub(crate) const SYM_ENTRY_SIZE: u64 = SYM_SIZE as u64;
