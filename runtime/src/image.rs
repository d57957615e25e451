//! `ProgramImage`: a loaded program as the registry keeps it, independent
//! of any process: its instructions with map references by index, and the
//! ids of those maps. Each process that runs it (the loader for
//! `bpf_prog_test_run`, every target's agent) turns it into a
//! [`LoadedProgram`] against its own mappings of the maps.
//!
//! Map references use libbpf's own encodings: `lddw rX, map` is
//! `BPF_PSEUDO_MAP_IDX` with `imm` = the index, a global variable is
//! `BPF_PSEUDO_MAP_IDX_VALUE` with the index in the first slot and the
//! offset in the second. Instantiation replaces them with addresses: the
//! map's program address ([`Map::prog_addr`]; the process-local
//! `ProgArray` for program arrays) or the address of the value.

use std::ffi::c_void;
use std::sync::Arc;

use thiserror::Error;

use crate::helpers::HelperRegistry;
use crate::isa::{Insn, BPF_PSEUDO_MAP_IDX, BPF_PSEUDO_MAP_IDX_VALUE, LDDW};
use crate::maps::{flags, map_type, Map};
use crate::memory::{Access, Region};
use crate::vm::{Vm, VmError, VmOptions};

/// A program as stored in the registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramImage {
    pub name: String,
    /// `enum bpf_prog_type`.
    pub prog_type: u32,
    /// `enum bpf_attach_type`.
    pub expected_attach_type: u32,
    pub insns: Vec<Insn>,
    /// Map ids by the index the instructions use; 0 for a map that was not
    /// created (a reference to it fails instantiation).
    pub map_ids: Vec<u32>,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ImageError {
    #[error("instruction {insn} references map #{index}, which the program does not have")]
    MissingMap { insn: usize, index: u32 },
    #[error("instruction {insn} references offset {off} of map #{index}, which has no directly addressable value there")]
    BadValueOffset { insn: usize, index: u32, off: u32 },
    #[error(
        "instruction {insn} uses program array #{index}, which holds programs of another type"
    )]
    ProgArrayOwner { insn: usize, index: u32 },
    #[error("map id {0} cannot be found")]
    UnknownMap(u32),
    #[error("malformed program image: {0}")]
    Malformed(&'static str),
    #[error(transparent)]
    Vm(#[from] VmError),
}

impl ImageError {
    pub fn errno(&self) -> i32 {
        match self {
            ImageError::MissingMap { .. } | ImageError::UnknownMap(_) => libc::ENOENT,
            _ => libc::EINVAL,
        }
    }
}

/// The address a program uses for `map`.
fn map_ref_addr(map: &Arc<Map>) -> u64 {
    if map.map_type() == map_type::PROG_ARRAY {
        if let Some(addr) = crate::maps::prog_array::prog_array_addr(map) {
            return addr;
        }
    }
    map.prog_addr()
}

impl ProgramImage {
    /// The maps of this image, resolved by id ([`Map::by_id`]).
    pub fn resolve_maps(&self) -> Result<Vec<Option<Arc<Map>>>, ImageError> {
        self.map_ids
            .iter()
            .map(|&id| {
                if id == 0 {
                    Ok(None)
                } else {
                    Map::by_id(id).map(Some).ok_or(ImageError::UnknownMap(id))
                }
            })
            .collect()
    }

    /// Instructions with every map reference turned into an address, and
    /// the global-data regions a checked engine must let the program touch.
    pub fn link(&self, maps: &[Option<Arc<Map>>]) -> Result<(Vec<Insn>, Vec<Region>), ImageError> {
        let mut insns = self.insns.clone();
        let mut regions: Vec<Region> = Vec::new();
        let mut i = 0;
        while i < insns.len() {
            let insn = insns[i];
            if insn.code != LDDW {
                i += 1;
                continue;
            }
            if i + 1 >= insns.len() {
                return Err(ImageError::Malformed("lddw without its second slot"));
            }
            let src = insn.src;
            if src == BPF_PSEUDO_MAP_IDX || src == BPF_PSEUDO_MAP_IDX_VALUE {
                let index = insn.imm as u32;
                let map = maps
                    .get(index as usize)
                    .and_then(|m| m.as_ref())
                    .ok_or(ImageError::MissingMap { insn: i, index })?;
                let addr = if src == BPF_PSEUDO_MAP_IDX {
                    if let Some(pa) = map.downcast::<crate::maps::prog_array::ProgArrayMap>() {
                        if !pa.claim_owner(self.prog_type) {
                            return Err(ImageError::ProgArrayOwner { insn: i, index });
                        }
                    }
                    map_ref_addr(map)
                } else {
                    let off = insns[i + 1].imm as u32;
                    let spec = map.spec();
                    let direct = matches!(spec.map_type, map_type::ARRAY)
                        && off < spec.value_size
                        && spec.max_entries >= 1;
                    if !direct {
                        return Err(ImageError::BadValueOffset {
                            insn: i,
                            index,
                            off,
                        });
                    }
                    let Some(base) = map.value_base() else {
                        return Err(ImageError::BadValueOffset {
                            insn: i,
                            index,
                            off,
                        });
                    };
                    let base = base as u64;
                    let access = if spec.map_flags & flags::BPF_F_RDONLY_PROG != 0 {
                        Access::Read
                    } else {
                        Access::ReadWrite
                    };
                    let region = Region::new(base, spec.value_size as u64, access);
                    if !regions.contains(&region) {
                        regions.push(region);
                    }
                    base + off as u64
                };
                insns[i].src = 0;
                insns[i].imm = addr as u32 as i32;
                insns[i + 1].imm = (addr >> 32) as u32 as i32;
            }
            i += 2;
        }
        Ok((insns, regions))
    }

    /// A runnable program in this process.
    pub fn instantiate(
        &self,
        maps: Vec<Option<Arc<Map>>>,
        helpers: &HelperRegistry,
        options: VmOptions,
    ) -> Result<LoadedProgram, ImageError> {
        let (insns, regions) = self.link(&maps)?;
        let vm = Vm::from_insns(insns, helpers, options)?;
        let kernel_proxies = maps.iter().flatten().any(|m| m.is_kernel_proxy());
        Ok(LoadedProgram {
            vm,
            regions,
            kernel_proxies,
            _maps: maps,
        })
    }

    /// Serialized form (for the registry's program files): a small header,
    /// the name, the map ids, the instructions; little-endian.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(b"UBPFPRG1");
        for v in [
            self.prog_type,
            self.expected_attach_type,
            self.name.len() as u32,
            self.map_ids.len() as u32,
            self.insns.len() as u32,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(self.name.as_bytes());
        for id in &self.map_ids {
            out.extend_from_slice(&id.to_le_bytes());
        }
        for insn in &self.insns {
            out.extend_from_slice(&insn.to_bytes());
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<ProgramImage, ImageError> {
        let bad = ImageError::Malformed("truncated or bad header");
        if bytes.len() < 28 || &bytes[..8] != b"UBPFPRG1" {
            return Err(bad);
        }
        let word = |i: usize| u32::from_le_bytes(bytes[8 + 4 * i..12 + 4 * i].try_into().unwrap());
        let (prog_type, attach, name_len, n_maps, n_insns) = (
            word(0),
            word(1),
            word(2) as usize,
            word(3) as usize,
            word(4) as usize,
        );
        let need = 28usize
            .checked_add(name_len)
            .and_then(|n| n.checked_add(n_maps.checked_mul(4)?))
            .and_then(|n| n.checked_add(n_insns.checked_mul(8)?))
            .ok_or(ImageError::Malformed("sizes overflow"))?;
        if bytes.len() < need {
            return Err(bad);
        }
        let mut at = 28;
        let name = String::from_utf8_lossy(&bytes[at..at + name_len]).into_owned();
        at += name_len;
        let map_ids = (0..n_maps)
            .map(|k| u32::from_le_bytes(bytes[at + 4 * k..at + 4 * k + 4].try_into().unwrap()))
            .collect();
        at += 4 * n_maps;
        let insns = (0..n_insns)
            .map(|k| Insn::from_bytes(bytes[at + 8 * k..at + 8 * k + 8].try_into().unwrap()))
            .collect();
        Ok(ProgramImage {
            name,
            prog_type,
            expected_attach_type: attach,
            insns,
            map_ids,
        })
    }
}

/// A program ready to run in this process. It keeps its maps alive: the
/// addresses in its code point into them.
pub struct LoadedProgram {
    vm: Vm,
    regions: Vec<Region>,
    /// Some map is a kernel proxy: values a run changed through looked-up
    /// pointers are written back when it ends.
    kernel_proxies: bool,
    _maps: Vec<Option<Arc<Map>>>,
}

impl std::fmt::Debug for LoadedProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedProgram")
            .field("engine", &self.vm.engine())
            .finish()
    }
}

impl LoadedProgram {
    pub fn vm(&self) -> &Vm {
        &self.vm
    }

    /// Runs with r1 = `ctx`.
    ///
    /// # Safety
    /// As [`Vm::run_with`]: `[ctx, ctx + ctx_len)` valid for reads and
    /// writes for the whole call.
    #[inline]
    pub unsafe fn run(
        &self,
        ctx: *mut u8,
        ctx_len: usize,
        user: *mut c_void,
    ) -> Result<u64, VmError> {
        // SAFETY: forwarded; the regions are global-data values of maps this
        // program keeps alive.
        let result = unsafe { self.vm.run_with(ctx, ctx_len, &self.regions, user) };
        if self.kernel_proxies {
            crate::maps::kernel_proxy::flush_pending();
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip() {
        let img = ProgramImage {
            name: "p".into(),
            prog_type: 2,
            expected_attach_type: 0,
            insns: vec![Insn::from_bytes([0x95, 0, 0, 0, 0, 0, 0, 0])],
            map_ids: vec![7, 0],
        };
        let b = img.to_bytes();
        assert_eq!(ProgramImage::from_bytes(&b).unwrap(), img);
        assert!(ProgramImage::from_bytes(&b[..b.len() - 1]).is_err());
        assert!(ProgramImage::from_bytes(b"junk").is_err());
    }
}

/// Program files: the serialized image in a sealed memfd, read-only for
/// everyone (the loader's fd is what `bpf_prog_load` returns; targets open
/// it through `/proc/<pid>/fd/<n>`).
pub mod file {
    use std::ffi::CString;
    use std::io::{Read, Seek, Write};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    use super::{ImageError, ProgramImage};

    /// Writes `image` into a new sealed memfd.
    pub fn create(image: &ProgramImage) -> std::io::Result<OwnedFd> {
        let name = CString::new(format!("userbpf-prog:{}", image.name.replace('\0', "")))
            .unwrap_or_else(|_| c"userbpf-prog".to_owned());
        // SAFETY: `name` is a valid C string.
        let raw = unsafe {
            libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
        };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a fresh fd nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut file = std::fs::File::from(fd);
        file.write_all(&image.to_bytes())?;
        let seals =
            libc::F_SEAL_WRITE | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        // SAFETY: plain fcntl on an fd we own.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(OwnedFd::from(file))
    }

    /// Reads the image back from a program file (any fd or path to one).
    pub fn read(file: &mut std::fs::File) -> Result<ProgramImage, ImageError> {
        let mut bytes = Vec::new();
        file.rewind()
            .and_then(|_| file.read_to_end(&mut bytes))
            .map_err(|_| ImageError::Malformed("unreadable program file"))?;
        ProgramImage::from_bytes(&bytes)
    }
}
