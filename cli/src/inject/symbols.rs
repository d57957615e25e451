//! Addresses of functions in the target: a library's mapping in
//! `/proc/PID/maps` gives its load bias, its file's dynamic symbol table
//! the symbol's value.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use object::elf;
use object::read::elf::{ElfFile64, ProgramHeader, Sym};
use object::LittleEndian;

use super::error::InjectError;
use super::procfs::Mapping;

/// A read-only private mapping of a whole file: the agent is tens of MB
/// (debug information), of which symbol lookup touches a few pages.
struct MappedFile {
    ptr: *mut libc::c_void,
    len: usize,
}

impl MappedFile {
    fn open(path: &Path) -> std::io::Result<MappedFile> {
        let f = std::fs::File::open(path)?;
        let len = f.metadata()?.len() as usize;
        if len == 0 {
            return Err(std::io::Error::from_raw_os_error(libc::ENOEXEC));
        }
        // SAFETY: a fresh private read-only mapping of an open file; the
        // fd may be closed afterwards.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                f.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(MappedFile { ptr, len })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is `len` readable bytes and lives as long as
        // self. (A file truncated meanwhile would fault: libraries in use
        // are not truncated, they are replaced.)
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        // SAFETY: our own mapping, unmapped once.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

/// What a library file says: exported function values and its loadable
/// segments (for the load bias).
#[derive(Debug, Clone)]
pub struct LibSymbols {
    pub values: HashMap<String, u64>,
    /// (p_vaddr, p_offset) of each PT_LOAD.
    loads: Vec<(u64, u64)>,
    pub dev: u64,
    pub inode: u64,
}

fn elf_err(path: &Path) -> impl Fn(object::read::Error) -> InjectError + '_ {
    move |e| InjectError::Elf {
        what: path.display().to_string(),
        msg: e.to_string(),
    }
}

/// Reads the dynamic symbols `names` (defined functions, the default
/// version preferred) of the ELF file at `path`.
pub fn read(path: &Path, names: &[&str]) -> Result<LibSymbols, InjectError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| InjectError::io(format!("cannot open {}", path.display()), e))?;
    let file = MappedFile::open(path)
        .map_err(|e| InjectError::io(format!("cannot map {}", path.display()), e))?;
    let data = file.bytes();
    let ef = ElfFile64::<LittleEndian, &[u8]>::parse(data).map_err(elf_err(path))?;
    let endian = LittleEndian;
    let loads = ef
        .elf_program_headers()
        .iter()
        .filter(|ph| ph.p_type(endian) == elf::PT_LOAD)
        .map(|ph| (ph.p_vaddr(endian), ph.p_offset(endian)))
        .collect();
    let table = ef.elf_dynamic_symbol_table();
    let versions = ef
        .elf_section_table()
        .versions(endian, data)
        .map_err(elf_err(path))?;
    // name -> (value, hidden version)
    let mut found: HashMap<String, (u64, bool)> = HashMap::new();
    for (index, sym) in table.enumerate() {
        if sym.st_shndx(endian) == elf::SHN_UNDEF
            || sym.st_type() != elf::STT_FUNC
            || !matches!(sym.st_bind(), elf::STB_GLOBAL | elf::STB_WEAK)
        {
            continue;
        }
        let Ok(name) = table.symbol_name(endian, sym) else {
            continue;
        };
        let Some(&want) = names.iter().find(|n| n.as_bytes() == name) else {
            continue;
        };
        let hidden = versions
            .as_ref()
            .is_some_and(|v| v.version_index(endian, index).is_hidden());
        let value = sym.st_value(endian);
        match found.get(want) {
            Some(&(_, false)) => {}
            Some(&(_, true)) if hidden => {}
            _ => {
                found.insert(want.to_string(), (value, hidden));
            }
        }
    }
    Ok(LibSymbols {
        values: found.into_iter().map(|(k, (v, _))| (k, v)).collect(),
        loads,
        dev: meta.dev(),
        inode: meta.ino(),
    })
}

impl LibSymbols {
    /// The load bias of this file in a process whose mappings of it are
    /// `maps`: a mapping at a segment's file offset is that segment.
    pub fn bias(&self, maps: &[&Mapping]) -> Option<u64> {
        const PAGE: u64 = 4096;
        for m in maps {
            for &(vaddr, offset) in &self.loads {
                if offset & !(PAGE - 1) == m.offset {
                    return m.start.checked_sub(vaddr & !(PAGE - 1));
                }
            }
        }
        None
    }

    /// The address of `name` in the process, given its bias.
    pub fn address(&self, name: &str, bias: u64) -> Option<u64> {
        self.values.get(name).map(|v| v + bias)
    }
}

/// A library as mapped in the target.
#[derive(Debug, Clone)]
pub struct RemoteLib {
    /// Its path as the target names it.
    pub path: String,
    pub syms: LibSymbols,
    pub bias: u64,
}

impl RemoteLib {
    pub fn address(&self, name: &str) -> Option<u64> {
        self.syms.address(name, self.bias)
    }
}

/// Finds the file of the mapping `m` from this process: its
/// `/proc/PID/map_files` entry (the very inode, even deleted; needs
/// privilege), the path through the target's root, then the path itself;
/// the first whose (device, inode) is the mapping's.
fn file_of(pid: i32, m: &Mapping) -> Option<PathBuf> {
    let candidates = [
        PathBuf::from(format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end)),
        PathBuf::from(format!("/proc/{pid}/root{}", m.path)),
        PathBuf::from(&m.path),
    ];
    candidates
        .into_iter()
        .find(|p| std::fs::metadata(p).is_ok_and(|md| md.ino() == m.inode && md.dev() == m.dev))
}

/// The first mapped library whose file name satisfies `pick`, with the
/// symbols `names` read from it.
pub fn find_lib(
    pid: i32,
    maps: &[Mapping],
    pick: impl Fn(&str) -> bool,
    names: &[&str],
) -> Result<Option<RemoteLib>, InjectError> {
    let Some(first) = maps
        .iter()
        .find(|m| m.inode != 0 && m.path.starts_with('/') && pick(m.file_name()))
    else {
        return Ok(None);
    };
    let same: Vec<&Mapping> = maps
        .iter()
        .filter(|m| m.inode == first.inode && m.dev == first.dev)
        .collect();
    let file = file_of(pid, first).ok_or_else(|| InjectError::Unsupported {
        pid,
        why: format!(
            "cannot open {} as the target maps it (replaced or in another mount namespace?)",
            first.path
        ),
    })?;
    let syms = read(&file, names)?;
    let bias = syms.bias(&same).ok_or_else(|| InjectError::Elf {
        what: first.path.clone(),
        msg: "no mapping matches a loadable segment".into(),
    })?;
    Ok(Some(RemoteLib {
        path: first.path.clone(),
        syms,
        bias,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This process's own C library: our symbol addresses must be the
    /// dynamic linker's.
    #[test]
    fn finds_dlopen_in_our_own_libc() {
        let maps = super::super::procfs::maps(std::process::id() as i32).unwrap();
        let lib = find_lib(
            std::process::id() as i32,
            &maps,
            |n| n.starts_with("libc.so") || n.starts_with("libc-"),
            &["dlopen", "mmap", "__errno_location"],
        )
        .unwrap()
        .expect("libc mapped");
        let real = libc::mmap as *const () as usize as u64;
        assert_eq!(lib.address("mmap"), Some(real));
        let errno = libc::__errno_location as *const () as usize as u64;
        assert_eq!(lib.address("__errno_location"), Some(errno));
    }
}
