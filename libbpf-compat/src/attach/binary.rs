//! Where a uprobe lands in a binary, by libbpf's rules (libbpf 1.7
//! `resolve_full_path` in libbpf.c, `elf_find_func_offset`,
//! `elf_resolve_syms_offsets` and `elf_resolve_pattern_offsets` in elf.c).
//!
//! - [`resolve_binary_path`]: a name without `/` searched like libbpf does;
//! - [`BinaryId::from_path`]: the canonical path and `(st_dev, st_ino)`
//!   agents match their mappings against;
//! - [`find_func_offset`], [`resolve_syms_offsets`],
//!   [`resolve_pattern_offsets`]: symbol names to file offsets
//!   (`st_value - sh_addr + sh_offset` of the symbol's section);
//! - [`function_containing`]: the function around a file offset.
//!
//! Parsed symbol tables are cached per `(st_dev, st_ino, mtime, size)`, so
//! attaching many probes to libc parses it once.
//!
//! Errors display as libbpf's `pr_warn` text where libbpf prints one
//! ([`BinaryError::warns`]) and map to libbpf's negative return values
//! ([`BinaryError::errno`]).

use std::collections::HashMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use object::elf;
use object::read::elf::{FileHeader, SectionHeader, SectionTable, Sym};
use object::{Endian, Endianness, SectionIndex};
use thiserror::Error;

use super::errstr;

/// libbpf's `LIBBPF_ERRNO__FORMAT`: "BPF object format invalid".
pub const LIBBPF_ERRNO_FORMAT: i32 = 4003;

/// The `SHT_GNU_versym` bits that hold the version index.
const VERSYM_VERSION: u16 = 0x7fff;

/// What went wrong finding something in a binary.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BinaryError {
    /// `resolve_full_path` found no readable (and, for programs,
    /// executable) file of that name on the search path.
    #[error("no file named '{0}' on the library or program search path")]
    PathNotFound(String),
    #[error("elf: failed to open {path}: {}", errstr(-errno))]
    Open { path: String, errno: i32 },
    #[error("elf: could not read elf from {path}: {reason}")]
    Read { path: String, reason: String },
    /// Not an ELF file (or a corrupt header). `errno` is what the caller
    /// in libbpf returns: `LIBBPF_ERRNO__FORMAT` from
    /// `elf_find_func_offset`, `EINVAL` from the symbol iterators.
    #[error("elf: failed to get ehdr from {path}: {reason}")]
    Ehdr {
        path: String,
        reason: String,
        errno: i32,
    },
    /// A symbol table libelf could not read.
    #[error("elf: failed to get symbols for symtab section in '{path}': {reason}")]
    Symbols { path: String, reason: String },
    #[error("elf: failed to find symbol '{name}' in '{path}'")]
    SymbolNotFound { name: String, path: String },
    /// The symbol matched only with value 0 (an undefined import).
    #[error("elf: '{name}' is 0 in symtab for '{path}': {}", if *shared_lib { "should not be 0 in a shared library" } else { "try using shared library path instead" })]
    SymbolZero {
        name: String,
        path: String,
        shared_lib: bool,
    },
    /// Two non-weak symbols of that name at different offsets.
    #[error("elf: ambiguous match for '{sym}', '{name}' in '{path}'")]
    Ambiguous {
        sym: String,
        name: String,
        path: String,
    },
    /// As [`BinaryError::Ambiguous`], from the symbol-list resolver.
    #[error("elf: ambiguous match found '{sym}@{offset}' in '{path}' previous offset {previous}")]
    AmbiguousInList {
        sym: String,
        offset: u64,
        previous: u64,
        path: String,
    },
    /// Some names of a symbol list were not found (libbpf prints nothing).
    #[error("symbols not found in '{path}': {}", missing.join(", "))]
    SymbolsNotFound { missing: Vec<String>, path: String },
    /// No function matched the pattern (libbpf prints nothing).
    #[error("no function matches '{pattern}' in '{path}'")]
    PatternNotFound { pattern: String, path: String },
}

impl BinaryError {
    /// The positive errno libbpf returns (negated) for this error.
    pub fn errno(&self) -> i32 {
        match self {
            BinaryError::PathNotFound(_)
            | BinaryError::SymbolNotFound { .. }
            | BinaryError::SymbolZero { .. }
            | BinaryError::SymbolsNotFound { .. }
            | BinaryError::PatternNotFound { .. } => libc::ENOENT,
            BinaryError::Open { errno, .. } => *errno,
            BinaryError::Read { .. } | BinaryError::Ambiguous { .. } => LIBBPF_ERRNO_FORMAT,
            BinaryError::Ehdr { errno, .. } => *errno,
            BinaryError::Symbols { .. } => libc::EINVAL,
            BinaryError::AmbiguousInList { .. } => libc::ESRCH,
        }
    }

    /// True when libbpf prints this error (with `pr_warn`) where it
    /// happens; the caller then prints `"{self}\n"`.
    pub fn warns(&self) -> bool {
        !matches!(
            self,
            BinaryError::PathNotFound(_)
                | BinaryError::SymbolsNotFound { .. }
                | BinaryError::PatternNotFound { .. }
        )
    }
}

/// The search path libbpf uses for libraries next to `/usr/lib64:/usr/lib`.
fn arch_specific_lib_path() -> Option<&'static str> {
    if cfg!(target_arch = "x86_64") {
        Some("/lib/x86_64-linux-gnu")
    } else if cfg!(target_arch = "aarch64") {
        Some("/lib/aarch64-linux-gnu")
    } else if cfg!(target_arch = "riscv64") {
        Some("/lib/riscv64-linux-gnu")
    } else if cfg!(target_arch = "s390x") {
        Some("/lib/s390x-linux-gnu")
    } else {
        None
    }
}

/// Whether libbpf treats `file` as a shared library: it ends in `.so` or
/// contains `.so.`.
fn is_library_name(file: &str) -> bool {
    file.ends_with(".so") || file.contains(".so.")
}

fn accessible(path: &Path, mode: i32) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: a valid C string; faccessat only reads it.
    unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), mode, libc::AT_EACCESS) == 0 }
}

/// libbpf's `resolve_full_path`, applied where libbpf applies it: a path
/// with a `/` is returned unchanged. A bare name is searched, for a
/// library (`*.so`, `*.so.*`) in `$LD_LIBRARY_PATH`, `/usr/lib64:/usr/lib`
/// and the Debian multiarch directory (readable files), for a program in
/// `$PATH` and `/usr/bin:/usr/sbin` (readable and executable files).
/// Empty path elements are skipped. The result is not canonical (see
/// [`BinaryId::from_path`]).
pub fn resolve_binary_path(file: &str) -> Result<PathBuf, BinaryError> {
    if file.contains('/') {
        return Ok(PathBuf::from(file));
    }
    let (lists, mode): (Vec<Option<String>>, i32) = if is_library_name(file) {
        (
            vec![
                std::env::var("LD_LIBRARY_PATH").ok(),
                Some("/usr/lib64:/usr/lib".into()),
                arch_specific_lib_path().map(str::to_owned),
            ],
            libc::R_OK,
        )
    } else {
        (
            vec![
                std::env::var("PATH").ok(),
                Some("/usr/bin:/usr/sbin".into()),
            ],
            libc::R_OK | libc::X_OK,
        )
    };
    for list in lists.iter().flatten() {
        for dir in list.split(':').filter(|d| !d.is_empty()) {
            let candidate = PathBuf::from(format!("{dir}/{file}"));
            if accessible(&candidate, mode) {
                return Ok(candidate);
            }
        }
    }
    Err(BinaryError::PathNotFound(file.to_owned()))
}

/// A binary as agents identify it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BinaryId {
    /// Canonical (absolute, symlinks resolved) path.
    pub path: PathBuf,
    pub dev: u64,
    pub ino: u64,
}

impl BinaryId {
    /// Canonicalizes `path` (relative to the current directory) and stats
    /// it. Errors are the `errno` of `realpath`/`stat` (ENOENT for a
    /// missing file), as [`BinaryError::Open`].
    pub fn from_path(path: &Path) -> Result<BinaryId, BinaryError> {
        let open_err = |e: std::io::Error| BinaryError::Open {
            path: path.display().to_string(),
            errno: e.raw_os_error().unwrap_or(libc::EIO),
        };
        let canonical = std::fs::canonicalize(path).map_err(open_err)?;
        let meta = std::fs::metadata(&canonical).map_err(open_err)?;
        Ok(BinaryId {
            path: canonical,
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
}

/// One `STT_FUNC`/`STT_GNU_IFUNC` symbol libbpf's iterator would yield
/// (its section index names a section).
#[derive(Clone, Debug)]
struct FuncSym {
    name: String,
    is_ifunc: bool,
    weak: bool,
    /// `st_value - sh_addr + sh_offset` (wrapping, as libbpf's unsigned
    /// arithmetic).
    offset: u64,
    size: u64,
    /// Version index from `SHT_GNU_versym` (dynsym only; 0 without it).
    ver: u16,
}

#[derive(Debug, Default)]
struct SymTable {
    syms: Vec<FuncSym>,
    /// `vd_ndx` -> the first `Verdaux` name, as `elf_get_vername` walks
    /// them (dynsym only).
    verdefs: Option<Vec<(u16, String)>>,
}

impl SymTable {
    /// `elf_get_vername`: the first verdef with that index.
    fn vername(&self, ver: u16) -> Option<&str> {
        self.verdefs
            .as_ref()?
            .iter()
            .find(|(ndx, _)| *ndx == ver)
            .map(|(_, n)| n.as_str())
    }
}

/// What this module needs of one binary.
#[derive(Debug)]
struct ElfInfo {
    shared_lib: bool,
    dynsym: Option<SymTable>,
    symtab: Option<SymTable>,
    /// Sized functions of both tables as `(offset, size)`, sorted.
    ranges: Vec<(u64, u64)>,
}

impl ElfInfo {
    /// The tables in the order libbpf searches for `elf_find_func_offset`
    /// and `elf_resolve_syms_offsets` (dynsym first).
    fn dyn_first(&self) -> [(bool, Option<&SymTable>); 2] {
        [(true, self.dynsym.as_ref()), (false, self.symtab.as_ref())]
    }
}

type CacheKey = (u64, u64, i64, i64, u64);

fn cache() -> &'static Mutex<HashMap<CacheKey, Arc<ElfInfo>>> {
    static CACHE: OnceLock<Mutex<HashMap<CacheKey, Arc<ElfInfo>>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// Binaries kept parsed at once; the cache is emptied when it fills (a
/// loader attaches to a handful of binaries).
const CACHE_LIMIT: usize = 64;

/// Opens and parses `path` (or returns the cached parse). `ehdr_errno` is
/// what a non-ELF file returns for the caller (libbpf differs per caller).
fn load(path: &Path, ehdr_errno: i32) -> Result<Arc<ElfInfo>, BinaryError> {
    let shown = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| BinaryError::Open {
        path: shown.clone(),
        errno: e.raw_os_error().unwrap_or(libc::EIO),
    })?;
    let meta = file.metadata().map_err(|e| BinaryError::Open {
        path: shown.clone(),
        errno: e.raw_os_error().unwrap_or(libc::EIO),
    })?;
    let key = (
        meta.dev(),
        meta.ino(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.size(),
    );
    if let Some(info) = cache().lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(info.clone());
    }
    let data = {
        use std::io::Read;
        let mut buf = Vec::with_capacity(meta.size() as usize);
        (&file)
            .read_to_end(&mut buf)
            .map_err(|e| BinaryError::Read {
                path: shown.clone(),
                reason: e.to_string(),
            })?;
        buf
    };
    let info = Arc::new(parse(&data, &shown, ehdr_errno)?);
    let mut c = cache().lock().unwrap_or_else(|e| e.into_inner());
    if c.len() >= CACHE_LIMIT {
        c.clear();
    }
    c.insert(key, info.clone());
    Ok(info)
}

fn parse(data: &[u8], path: &str, ehdr_errno: i32) -> Result<ElfInfo, BinaryError> {
    let ehdr_err = |reason: &str| BinaryError::Ehdr {
        path: path.to_owned(),
        reason: reason.to_owned(),
        errno: ehdr_errno,
    };
    // libelf's message for a file that is not ELF.
    if data.len() < 16 || &data[..4] != b"\x7fELF" {
        return Err(ehdr_err("invalid `Elf' handle"));
    }
    // e_ident[EI_CLASS]: 1 for 32-bit, 2 for 64-bit.
    match data[4] {
        2 => parse_as::<elf::FileHeader64<Endianness>>(data, path, ehdr_errno),
        1 => parse_as::<elf::FileHeader32<Endianness>>(data, path, ehdr_errno),
        _ => Err(ehdr_err("invalid `Elf' handle")),
    }
}

fn parse_as<H: FileHeader<Endian = Endianness>>(
    data: &[u8],
    path: &str,
    ehdr_errno: i32,
) -> Result<ElfInfo, BinaryError> {
    let ehdr_err = |e: object::read::Error| BinaryError::Ehdr {
        path: path.to_owned(),
        reason: e.to_string(),
        errno: ehdr_errno,
    };
    let header = H::parse(data).map_err(ehdr_err)?;
    let endian = header.endian().map_err(ehdr_err)?;
    let sections = header.sections(endian, data).map_err(ehdr_err)?;
    let mut info = ElfInfo {
        shared_lib: header.e_type(endian) == elf::ET_DYN,
        dynsym: read_table(&sections, endian, data, elf::SHT_DYNSYM, path)?,
        symtab: read_table(&sections, endian, data, elf::SHT_SYMTAB, path)?,
        ranges: Vec::new(),
    };
    let mut ranges: Vec<(u64, u64)> = [&info.dynsym, &info.symtab]
        .into_iter()
        .flatten()
        .flat_map(|t| t.syms.iter())
        .filter(|s| s.size > 0)
        .map(|s| (s.offset, s.size))
        .collect();
    ranges.sort_unstable();
    ranges.dedup();
    info.ranges = ranges;
    Ok(info)
}

fn first_of_type<'d, H: FileHeader>(
    sections: &SectionTable<'d, H, &'d [u8]>,
    endian: H::Endian,
    sh_type: elf::SectionType,
) -> Option<(SectionIndex, H::SectionHeader)> {
    sections
        .enumerate()
        .find(|(_, s)| s.sh_type(endian) == sh_type)
        .map(|(i, s)| (i, *s))
}

fn cstr_at(bytes: &[u8], off: usize) -> Option<String> {
    let rest = bytes.get(off..)?;
    let end = rest.iter().position(|&b| b == 0)?;
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}

/// One table of the first section of `sh_type`, as libbpf's
/// `elf_sym_iter` sees it; `None` when there is none.
fn read_table<'d, H: FileHeader<Endian = Endianness>>(
    sections: &SectionTable<'d, H, &'d [u8]>,
    endian: Endianness,
    data: &'d [u8],
    sh_type: elf::SectionType,
    path: &str,
) -> Result<Option<SymTable>, BinaryError> {
    let Some((index, shdr)) = first_of_type(sections, endian, sh_type) else {
        return Ok(None);
    };
    let sym_err = |e: object::read::Error| BinaryError::Symbols {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let table = object::read::elf::SymbolTable::parse(endian, data, sections, index, &shdr)
        .map_err(sym_err)?;
    let strings = table.strings();
    let mut out = SymTable::default();
    let versyms: Option<&[u8]> = if sh_type == elf::SHT_DYNSYM {
        first_of_type(sections, endian, elf::SHT_GNU_VERSYM)
            .and_then(|(_, s)| s.data(endian, data).ok())
    } else {
        None
    };
    if sh_type == elf::SHT_DYNSYM && versyms.is_some() {
        out.verdefs = read_verdefs(sections, endian, data);
    }
    for (idx, sym) in table.symbols().iter().enumerate() {
        let st_type = sym.st_type();
        if st_type != elf::STT_FUNC && st_type != elf::STT_GNU_IFUNC {
            continue;
        }
        let Ok(name) = strings.get(sym.st_name(endian)) else {
            continue;
        };
        // elf_getscn fails for indexes past the table (SHN_ABS, ...);
        // index 0 is the null section (addr 0, offset 0).
        let shndx = sym.st_shndx(endian).0 as usize;
        let Ok(sec) = sections.section(SectionIndex(shndx)) else {
            continue;
        };
        let ver = match versyms {
            Some(v) => match v.get(idx * 2..idx * 2 + 2) {
                Some(b) => endian.read_u16([b[0], b[1]]) & VERSYM_VERSION,
                // gelf_getversym fails: libbpf skips the symbol.
                None => continue,
            },
            None => 0,
        };
        let value: u64 = sym.st_value(endian).into();
        let addr: u64 = sec.sh_addr(endian).into();
        let off: u64 = sec.sh_offset(endian).into();
        out.syms.push(FuncSym {
            name: String::from_utf8_lossy(name).into_owned(),
            is_ifunc: st_type == elf::STT_GNU_IFUNC,
            weak: sym.st_bind() == elf::STB_WEAK,
            offset: value.wrapping_sub(addr).wrapping_add(off),
            size: sym.st_size(endian).into(),
            ver,
        });
    }
    Ok(Some(out))
}

/// `SHT_GNU_verdef` entries as `(vd_ndx, first vda_name)`, following
/// `vd_next` like `elf_get_vername`.
fn read_verdefs<'d, H: FileHeader<Endian = Endianness>>(
    sections: &SectionTable<'d, H, &'d [u8]>,
    endian: Endianness,
    data: &'d [u8],
) -> Option<Vec<(u16, String)>> {
    let (_, shdr) = first_of_type(sections, endian, elf::SHT_GNU_VERDEF)?;
    let bytes = shdr.data(endian, data).ok()?;
    let strtab = sections
        .section(SectionIndex(shdr.sh_link(endian) as usize))
        .ok()?
        .data(endian, data)
        .ok()?;
    let u16_at = |o: usize| bytes.get(o..o + 2).map(|b| endian.read_u16([b[0], b[1]]));
    let u32_at = |o: usize| {
        bytes
            .get(o..o + 4)
            .map(|b| endian.read_u32([b[0], b[1], b[2], b[3]]))
    };
    let mut out = Vec::new();
    let mut off = 0usize;
    // Verdef: version u16, flags u16, ndx u16, cnt u16, hash u32, aux u32,
    // next u32; Verdaux: name u32, next u32.
    while let (Some(ndx), Some(aux), Some(next)) =
        (u16_at(off + 4), u32_at(off + 12), u32_at(off + 16))
    {
        if let Some(name) = u32_at(off + aux as usize).and_then(|n| cstr_at(strtab, n as usize)) {
            out.push((ndx, name));
        }
        if next == 0 || out.len() > 0xffff {
            break;
        }
        off += next as usize;
    }
    Some(out)
}

/// libbpf's `symbol_match`: `name` (the part before any `@`) equals the
/// symbol name up to an `@` or its end; with a version, a dynamic
/// symbol's verdef name must equal it, a static symbol's full name must
/// equal the full `full` string.
fn symbol_matches(
    table: &SymTable,
    dynamic: bool,
    sym: &FuncSym,
    full: &str,
    name: &str,
    lib_ver: Option<&str>,
) -> bool {
    let Some(rest) = sym.name.strip_prefix(name) else {
        return false;
    };
    if !rest.is_empty() && !rest.starts_with('@') {
        return false;
    }
    match lib_ver {
        None => true,
        Some(v) if dynamic => table.vername(sym.ver) == Some(v),
        Some(_) => sym.name == full,
    }
}

/// libbpf's `elf_find_func_offset`: the file offset of function `name`
/// (`func`, `func@VER` or `func@@VER`) in the ELF file at `path`.
///
/// `.dynsym` is searched, then `.symtab` if nothing was found; only
/// `STT_FUNC` symbols count (an `STT_GNU_IFUNC` resolver does not: libbpf
/// skips it too). Several matches at one offset are fine; a weak match
/// yields to a non-weak one; two non-weak matches at different offsets are
/// [`BinaryError::Ambiguous`] (`-LIBBPF_ERRNO__FORMAT`). Nothing found is
/// `-ENOENT` ([`BinaryError::SymbolNotFound`], or
/// [`BinaryError::SymbolZero`] when libbpf's quirk reports it so).
pub fn find_func_offset(path: &Path, name: &str) -> Result<u64, BinaryError> {
    let info = load(path, LIBBPF_ERRNO_FORMAT)?;
    let shown = path.display().to_string();
    let (base, lib_ver) = match name.split_once('@') {
        Some((b, v)) => (b, Some(v.strip_prefix('@').unwrap_or(v))),
        None => (name, None),
    };
    // libbpf's `ret`: -ENOENT before any table, 0 once a table is open,
    // then the offset of the best match (0 counts as "not found").
    let mut ret: Option<u64> = None;
    for (dynamic, table) in info.dyn_first() {
        // A missing table resets libbpf's `ret` to -ENOENT.
        let Some(table) = table else {
            ret = None;
            continue;
        };
        ret = Some(0);
        let mut last_weak = false;
        for sym in table.syms.iter().filter(|s| !s.is_ifunc) {
            if !symbol_matches(table, dynamic, sym, name, base, lib_ver) {
                continue;
            }
            if let Some(cur) = ret.filter(|&r| r > 0) {
                if sym.offset == cur {
                    continue;
                }
                if !last_weak && !sym.weak {
                    return Err(BinaryError::Ambiguous {
                        sym: sym.name.clone(),
                        name: name.to_owned(),
                        path: shown,
                    });
                }
                if sym.weak {
                    continue;
                }
            }
            ret = Some(sym.offset);
            last_weak = sym.weak;
        }
        // libbpf's `long` is signed: "found" means > 0 as a signed value.
        if ret.is_some_and(|r| (r as i64) > 0) {
            break;
        }
    }
    match ret {
        Some(r) if (r as i64) > 0 => Ok(r),
        Some(_) => Err(BinaryError::SymbolZero {
            name: name.to_owned(),
            path: shown,
            shared_lib: info.shared_lib,
        }),
        None => Err(BinaryError::SymbolNotFound {
            name: name.to_owned(),
            path: shown,
        }),
    }
}

/// libbpf's `elf_resolve_syms_offsets` for `STT_FUNC`: the offset of each
/// of `syms` (exact symbol names), in order. `.dynsym` then `.symtab`; a
/// weak symbol yields to a non-weak one, two non-weak ones at different
/// offsets are [`BinaryError::AmbiguousInList`] (`-ESRCH`); any name left
/// unresolved is `-ENOENT`.
pub fn resolve_syms_offsets(path: &Path, syms: &[&str]) -> Result<Vec<u64>, BinaryError> {
    let info = load(path, libc::EINVAL)?;
    let shown = path.display().to_string();
    // Index of each distinct wanted name (libbpf's bsearch finds one of
    // equal names; the others stay unresolved and fail the call).
    let mut wanted: HashMap<&str, usize> = HashMap::new();
    for (i, s) in syms.iter().enumerate() {
        wanted.entry(s).or_insert(i);
    }
    let mut offsets = vec![0u64; syms.len()];
    let mut binds_weak = vec![false; syms.len()];
    for (_, table) in info.dyn_first() {
        let Some(table) = table else {
            continue;
        };
        for sym in table.syms.iter().filter(|s| !s.is_ifunc) {
            let Some(&i) = wanted.get(sym.name.as_str()) else {
                continue;
            };
            if offsets[i] > 0 {
                if offsets[i] == sym.offset {
                    continue;
                }
                if !binds_weak[i] && !sym.weak {
                    return Err(BinaryError::AmbiguousInList {
                        sym: sym.name.clone(),
                        offset: sym.offset,
                        previous: offsets[i],
                        path: shown,
                    });
                }
                if sym.weak {
                    continue;
                }
            }
            offsets[i] = sym.offset;
            binds_weak[i] = sym.weak;
        }
    }
    let missing: Vec<String> = syms
        .iter()
        .zip(&offsets)
        .filter(|(_, &o)| o == 0)
        .map(|(s, _)| s.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(BinaryError::SymbolsNotFound {
            missing,
            path: shown,
        });
    }
    Ok(offsets)
}

/// libbpf's `glob_match`: `*` any run, `?` any one character.
pub fn glob_match(s: &str, pat: &str) -> bool {
    fn go(s: &[u8], p: &[u8]) -> bool {
        let (mut s, mut p) = (s, p);
        while let (Some(&c), Some(&q)) = (s.first(), p.first()) {
            if q == b'*' {
                break;
            }
            if q != b'?' && c != q {
                return false;
            }
            s = &s[1..];
            p = &p[1..];
        }
        if p.first() == Some(&b'*') {
            while p.first() == Some(&b'*') {
                p = &p[1..];
            }
            if p.is_empty() {
                return true;
            }
            while !s.is_empty() {
                if go(s, p) {
                    return true;
                }
                s = &s[1..];
            }
        }
        s.is_empty() && p.is_empty()
    }
    go(s.as_bytes(), pat.as_bytes())
}

/// libbpf's `elf_resolve_pattern_offsets`: offsets of every `STT_FUNC`
/// whose name matches `pattern` ([`glob_match`]), from `.symtab`, or from
/// `.dynsym` when `.symtab` matched nothing; in table order, duplicates
/// (aliases) kept as libbpf keeps them. Nothing matched is `-ENOENT`.
pub fn resolve_pattern_offsets(path: &Path, pattern: &str) -> Result<Vec<u64>, BinaryError> {
    let info = load(path, libc::EINVAL)?;
    for table in [&info.symtab, &info.dynsym].into_iter().flatten() {
        let found: Vec<u64> = table
            .syms
            .iter()
            .filter(|s| !s.is_ifunc && glob_match(&s.name, pattern))
            .map(|s| s.offset)
            .collect();
        if !found.is_empty() {
            return Ok(found);
        }
    }
    Err(BinaryError::PatternNotFound {
        pattern: pattern.to_owned(),
        path: path.display().to_string(),
    })
}

/// The function (`STT_FUNC` or `STT_GNU_IFUNC` of `.symtab` or `.dynsym`
/// with a non-zero size) whose bytes contain `file_offset`, as
/// `(func_offset, func_size)` in file offsets; the innermost (latest
/// starting) one when functions nest. `None` when no sized symbol covers
/// it or the file cannot be read.
pub fn function_containing(path: &Path, file_offset: u64) -> Option<(u64, u64)> {
    let info = load(path, libc::EINVAL).ok()?;
    let end = info
        .ranges
        .partition_point(|&(start, _)| start <= file_offset);
    info.ranges[..end]
        .iter()
        .rev()
        .find(|&&(start, size)| file_offset - start < size)
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob() {
        assert!(glob_match("malloc", "malloc"));
        assert!(glob_match("malloc", "mal*"));
        assert!(glob_match("malloc", "*loc"));
        assert!(glob_match("malloc", "m?ll*c"));
        assert!(glob_match("malloc", "*"));
        assert!(!glob_match("malloc", "mall"));
        assert!(!glob_match("malloc", "*x*"));
        assert!(glob_match("", "*"));
        assert!(!glob_match("", "?"));
    }

    #[test]
    fn library_names() {
        assert!(is_library_name("libc.so.6"));
        assert!(is_library_name("libfoo.so"));
        assert!(!is_library_name("bash"));
        assert!(!is_library_name("libfoo.socket"));
    }
}
