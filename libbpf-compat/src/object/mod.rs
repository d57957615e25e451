//! BPF ELF objects, as libbpf 1.x opens and relocates them.
//!
//! [`Object::open`] is `bpf_object__open_mem`: it parses the ELF, finds the
//! programs (every `STT_FUNC` of an executable section; `.text` functions
//! are subprograms), their types from the `SEC()` name, the BTF-defined
//! maps of `.maps`, global data maps, `.kconfig` / `.ksyms` externs,
//! `.BTF` (with DATASEC fix-ups) and `.BTF.ext`, and records every
//! relocation. [`Object::relocate`] is the relocation half of
//! `bpf_object__load`: extern values, CO-RE relocations against the kernel
//! BTF, subprogram linking and map references. After it, each entry
//! program's [`BpfProgram::insns`] are final, with maps referenced by index
//! (`BPF_PSEUDO_MAP_IDX` / `BPF_PSEUDO_MAP_IDX_VALUE`, as libbpf's
//! light-skeleton loader does) so that they can be bound to whatever maps a
//! backend creates; they pass `userbpf_runtime::program::Program::new`.
//!
//! Everything libbpf logs along the way is kept ([`Object::log`]) and can
//! be forwarded as it happens ([`OpenOptions::log`]).
//!
//! ```no_run
//! use userbpf_libbpf_compat::object::{Object, OpenOptions, TargetBtf};
//! let bytes = std::fs::read("prog.bpf.o").unwrap();
//! let mut obj = Object::open(&bytes, OpenOptions::default()).unwrap();
//! obj.relocate(&TargetBtf::system().unwrap()).unwrap();
//! for prog in obj.programs() {
//!     let insns = prog.insns().unwrap().to_vec();
//!     userbpf_runtime::program::Program::new(insns).unwrap();
//! }
//! ```
//!
//! Modules, one concept each: `open` (the opening sequence) and `prepare`
//! (the relocation sequence), `elf` (the container), `sections` (the
//! `SEC()` table), `types` (kernel enums), `program`, `maps` (BTF-defined
//! maps), `data` (global data maps), `externs`, `kconfig` (kconfig values),
//! `ksyms` (kernel symbols), `btf_fixup` (DATASEC fix-ups), `reloc` (ELF
//! relocations and data references), `link` (subprograms), `core_relo`
//! (CO-RE), `target` (kernel BTF), `embedded` (objects inside binaries),
//! `log`, `error`, `btf_util`.

mod btf_fixup;
mod btf_util;
mod core_relo;
mod data;
mod elf;
pub mod embedded;
mod error;
mod externs;
mod kconfig;
mod ksyms;
mod link;
mod log;
mod maps;
mod open;
mod prepare;
mod program;
mod reloc;
pub mod sections;
pub mod struct_ops;
mod target;
pub mod types;

use std::path::{Path, PathBuf};

use userbpf_btf_core::{Btf, BtfExt};

pub use crate::object::data::{internal_map_name, BPF_F_MMAPABLE, BPF_F_RDONLY_PROG};
pub use crate::object::error::{
    ObjectError, LIBBPF_ERRNO_ENDIAN, LIBBPF_ERRNO_FORMAT, LIBBPF_ERRNO_INTERNAL,
    LIBBPF_ERRNO_LIBELF, LIBBPF_ERRNO_RELOC,
};
pub use crate::object::externs::{
    Extern, ExternKind, KcfgType, KconfigExtern, KsymExtern, KCONFIG_SEC, KSYMS_SEC,
};
pub use crate::object::kconfig::{kernel_version_code, KconfigSource, KernelEnv};
pub use crate::object::log::{LogCallback, LogLevel, LogRecord};
pub use crate::object::maps::{BpfMap, InitSlot, MapDef, MapKind, Pinning, BPF_FS_DEFAULT_PATH};
pub use crate::object::program::{BpfProgram, ExtInfoRecords, RelocatedProgram, SubprogPlacement};
pub use crate::object::reloc::{POISON_CALL_KFUNC_BASE, POISON_LDIMM64_MAP_BASE};
pub use crate::object::sections::{
    find_sec_def, prog_type_by_name, AttachHandler, SecDef, SecFlags,
};
pub use crate::object::struct_ops::StructOps;
pub use crate::object::target::{parse_btf_file, ModuleBtf, TargetBtf, SYS_KERNEL_BTF_DIR};
pub use crate::object::types::{AttachType, MapType, ProgType};

use crate::object::log::Logger;

/// Options of [`Object::open`] (the parts of `bpf_object_open_opts` that
/// matter before any kernel object exists).
#[derive(Clone, Default)]
pub struct OpenOptions {
    /// The object's name (`opts->object_name`); default: libbpf's
    /// `<address>-<size>` of the buffer for [`Object::open`], the file's
    /// base name up to its first `.` for [`Object::open_file`].
    pub object_name: Option<String>,
    /// BTF to use instead of the kernel's for CO-RE relocations.
    pub btf_custom_path: Option<PathBuf>,
    /// Extra Kconfig text (`CONFIG_X=y` lines) read before the system's.
    pub kconfig: Option<String>,
    /// Where maps with `pinning = LIBBPF_PIN_BY_NAME` are pinned (default
    /// `/sys/fs/bpf`).
    pub pin_root_path: Option<PathBuf>,
    /// Receives every log line as it is produced.
    pub log: Option<LogCallback>,
}

impl std::fmt::Debug for OpenOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenOptions")
            .field("object_name", &self.object_name)
            .field("btf_custom_path", &self.btf_custom_path)
            .field("kconfig", &self.kconfig)
            .field("pin_root_path", &self.pin_root_path)
            .field("log", &self.log.is_some())
            .finish()
    }
}

/// An opened BPF object (libbpf's `struct bpf_object`, before any kernel
/// object is created).
#[derive(Debug)]
pub struct Object {
    name: String,
    license: String,
    kern_version: u32,
    btf: Option<Btf>,
    btf_ext: Option<BtfExt>,
    /// Entry programs and `.text` subprograms, sorted by (section, offset).
    programs: Vec<BpfProgram>,
    maps: Vec<BpfMap>,
    externs: Vec<Extern>,
    kconfig_map_idx: Option<usize>,
    text_shndx: Option<usize>,
    /// ELF section names by index, for `.BTF.ext` blocks.
    section_names: Vec<String>,
    btf_custom_path: Option<PathBuf>,
    kconfig: Option<String>,
    core_relos: usize,
    relocated: bool,
    log: Logger,
}

impl Object {
    /// Opens an object from memory (`bpf_object__open_mem`).
    pub fn open(bytes: &[u8], opts: OpenOptions) -> Result<Object, ObjectError> {
        let default_name = format!("{:x}-{:x}", bytes.as_ptr() as usize, bytes.len());
        open::open_object(bytes, default_name, opts)
    }

    /// Opens an object file (`bpf_object__open_file`).
    pub fn open_file(path: &Path, opts: OpenOptions) -> Result<Object, ObjectError> {
        let bytes = std::fs::read(path).map_err(|source| ObjectError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = base.split('.').next().unwrap_or("").to_string();
        open::open_object(&bytes, name, opts)
    }

    /// The object's name (at most 15 bytes, as libbpf keeps it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `license` section's string (`bpf_object__license`).
    pub fn license(&self) -> &str {
        &self.license
    }

    /// The `version` section's value, else the running kernel's version
    /// (`bpf_object__kversion`).
    pub fn kern_version(&self) -> u32 {
        self.kern_version
    }

    /// The object's `.BTF`, with DATASECs fixed up.
    pub fn btf(&self) -> Option<&Btf> {
        self.btf.as_ref()
    }

    pub fn btf_ext(&self) -> Option<&BtfExt> {
        self.btf_ext.as_ref()
    }

    /// Entry programs in libbpf's order (`bpf_object__next_program`).
    pub fn programs(&self) -> impl Iterator<Item = &BpfProgram> + '_ {
        self.programs.iter().filter(|p| !p.is_subprog)
    }

    pub fn programs_mut(&mut self) -> impl Iterator<Item = &mut BpfProgram> + '_ {
        self.programs.iter_mut().filter(|p| !p.is_subprog)
    }

    /// The `.text` functions, which are only ever appended to entry programs.
    pub fn subprograms(&self) -> impl Iterator<Item = &BpfProgram> + '_ {
        self.programs.iter().filter(|p| p.is_subprog)
    }

    /// `bpf_object__find_program_by_name` (entry programs only).
    pub fn program(&self, name: &str) -> Option<&BpfProgram> {
        self.programs().find(|p| p.name == name)
    }

    pub fn program_mut(&mut self, name: &str) -> Option<&mut BpfProgram> {
        self.programs_mut().find(|p| p.name == name)
    }

    /// Maps in libbpf's order: `.maps`, then global data, then `.kconfig`.
    /// `BPF_PSEUDO_MAP_IDX` immediates index this slice.
    pub fn maps(&self) -> &[BpfMap] {
        &self.maps
    }

    pub fn maps_mut(&mut self) -> &mut [BpfMap] {
        &mut self.maps
    }

    /// `bpf_object__find_map_by_name`: names starting with `.` match the
    /// ELF section of internal maps (`.rodata`), others
    /// [`BpfMap::name`].
    pub fn map(&self, name: &str) -> Option<&BpfMap> {
        self.map_index(name).map(|i| &self.maps[i])
    }

    pub fn map_mut(&mut self, name: &str) -> Option<&mut BpfMap> {
        self.map_index(name).map(|i| &mut self.maps[i])
    }

    /// The index of a map (see [`Object::map`]).
    pub fn map_index(&self, name: &str) -> Option<usize> {
        self.maps.iter().position(|m| {
            if name.starts_with('.') {
                m.is_internal() && m.real_name == name
            } else {
                m.name() == name
            }
        })
    }

    /// The `.kconfig` map's index, if the object has kconfig externs.
    pub fn kconfig_map_index(&self) -> Option<usize> {
        self.kconfig_map_idx
    }

    /// Externs, in libbpf's order (kconfig first, by alignment and size).
    pub fn externs(&self) -> &[Extern] {
        &self.externs
    }

    /// Everything logged so far.
    pub fn log(&self) -> &[LogRecord] {
        self.log.records()
    }

    /// Takes the log, leaving it empty.
    pub fn take_log(&mut self) -> Vec<LogRecord> {
        self.log.take()
    }

    /// Whether [`Object::relocate`] succeeded.
    pub fn is_relocated(&self) -> bool {
        self.relocated
    }

    /// CO-RE relocations applied by the last [`Object::relocate`].
    pub fn core_relo_count(&self) -> usize {
        self.core_relos
    }

    /// CO-RE relocation records in `.BTF.ext`.
    pub fn core_relo_records(&self) -> usize {
        self.btf_ext
            .as_ref()
            .and_then(|e| e.core_relo())
            .map_or(0, |c| c.record_count())
    }

    /// Offset of variable `var` in the DATASEC named `section` (`.bss`,
    /// `.data.custom`, ...): where a subskeleton's variable lives.
    pub fn datasec_var_offset(&self, section: &str, var: &str) -> Option<u32> {
        use userbpf_btf_core::{BtfKind, TypeView};
        let btf = self.btf.as_ref()?;
        let id = btf.find_by_name_kind(section, BtfKind::Datasec)?;
        let TypeView::Datasec(ds) = btf.type_by_id(id)?.view() else {
            return None;
        };
        ds.vars
            .iter()
            .find_map(|v| (btf.type_by_id(v.type_id)?.name()? == var).then_some(v.offset))
    }

    /// Byte offset of the `struct bpf_spin_lock` member of a map's value
    /// type (what the kernel finds in BTF for `BPF_F_LOCK` and
    /// `bpf_spin_lock`), if it has one at the top level.
    pub fn value_spin_lock_offset(&self, map: &BpfMap) -> Option<u32> {
        use userbpf_btf_core::TypeView;
        let btf = self.btf.as_ref()?;
        let value = btf.skip_mods_and_typedefs(map.btf_value_type_id())?;
        let TypeView::Struct(st) = value.view() else {
            return None;
        };
        st.raw_members.iter().find_map(|m| {
            let t = btf.skip_mods_and_typedefs(m.type_id)?;
            let is_lock = matches!(t.view(), TypeView::Struct(_)) && t.name()? == "bpf_spin_lock";
            let bit_off = if st.kind_flag {
                m.offset & 0xff_ffff
            } else {
                m.offset
            };
            is_lock.then_some(bit_off / 8)
        })
    }

    /// `bpf_object_open_opts.btf_custom_path`: the target BTF to relocate
    /// against instead of the kernel's.
    pub fn btf_custom_path(&self) -> Option<&Path> {
        self.btf_custom_path.as_deref()
    }

    /// Relocates against the running kernel (see [`Object::relocate_with`]).
    pub fn relocate(&mut self, targets: &TargetBtf) -> Result<(), ObjectError> {
        self.relocate_with(targets, &KernelEnv::host())
    }
}
