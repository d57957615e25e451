//! [`TargetBtf`]: the kernel's types that CO-RE relocations and typed
//! `__ksym` externs resolve against: vmlinux BTF plus, searched only when
//! vmlinux has no candidate, the split BTF of each kernel module.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use object::read::elf::{FileHeader, SectionHeader};
use userbpf_btf_core::Btf;

use crate::object::error::{ObjectError, EINVAL};

/// Where the running kernel publishes its BTF.
pub const SYS_KERNEL_BTF_DIR: &str = "/sys/kernel/btf";

/// One kernel module's BTF, split on top of vmlinux.
#[derive(Debug)]
pub struct ModuleBtf {
    pub name: String,
    pub btf: Btf,
}

/// The kernel BTF an object is relocated against.
pub struct TargetBtf {
    vmlinux: Arc<Btf>,
    /// Directory of module BTF files, read on first use.
    module_dir: Option<PathBuf>,
    modules: OnceLock<Vec<ModuleBtf>>,
}

impl std::fmt::Debug for TargetBtf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetBtf")
            .field("vmlinux_types", &self.vmlinux.type_count())
            .field("module_dir", &self.module_dir)
            .field("modules_loaded", &self.modules.get().map(Vec::len))
            .finish()
    }
}

fn target_error(path: &Path, message: impl std::fmt::Display, errno: i32) -> ObjectError {
    ObjectError::TargetBtf {
        message: format!("{}: {message}", path.display()),
        errno,
    }
}

/// Reads a BTF file as libbpf's `btf__parse` does: raw BTF, or an ELF file
/// whose `.BTF` section holds it.
pub fn parse_btf_file(path: &Path, base: Option<Arc<Btf>>) -> Result<Btf, ObjectError> {
    // Raw BTF (vmlinux, modules) is loaded without a copy where possible.
    if starts_with_btf_magic(path) {
        let loaded = match base {
            Some(base) => Btf::load_split_file(path, base),
            None => Btf::load_file(path),
        };
        return loaded.map_err(|e| target_error(path, &e, e.errno()));
    }
    let bytes = std::fs::read(path).map_err(|source| ObjectError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let raw = if bytes.starts_with(&[0x9f, 0xeb]) || bytes.starts_with(&[0xeb, 0x9f]) {
        bytes.as_slice()
    } else {
        btf_section_of_elf(&bytes).ok_or_else(|| target_error(path, "no .BTF section", EINVAL))?
    };
    let parsed = match base {
        Some(base) => Btf::parse_split(raw, base),
        None => Btf::parse(raw),
    };
    parsed.map_err(|e| target_error(path, &e, e.errno()))
}

/// True when the file starts with the BTF magic in either byte order.
fn starts_with_btf_magic(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 2];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && (magic == [0x9f, 0xeb] || magic == [0xeb, 0x9f])
}

/// The `.BTF` section of a 64-bit ELF file.
fn btf_section_of_elf(bytes: &[u8]) -> Option<&[u8]> {
    let header = object::elf::FileHeader64::<object::Endianness>::parse(bytes).ok()?;
    let endian = header.endian().ok()?;
    let sections = header.sections(endian, bytes).ok()?;
    let (_, section) = sections.section_by_name(endian, b".BTF")?;
    section.data(endian, bytes).ok()
}

impl TargetBtf {
    /// The running kernel: `/sys/kernel/btf/vmlinux`, with modules from
    /// `/sys/kernel/btf/*` loaded when first needed.
    pub fn system() -> Result<TargetBtf, ObjectError> {
        let dir = Path::new(SYS_KERNEL_BTF_DIR);
        let vmlinux = parse_btf_file(&dir.join("vmlinux"), None)?;
        Ok(TargetBtf {
            vmlinux: Arc::new(vmlinux),
            module_dir: Some(dir.to_path_buf()),
            modules: OnceLock::new(),
        })
    }

    /// A given vmlinux BTF and no modules.
    pub fn from_vmlinux(vmlinux: Btf) -> TargetBtf {
        TargetBtf {
            vmlinux: Arc::new(vmlinux),
            module_dir: None,
            modules: OnceLock::new(),
        }
    }

    /// A BTF file standing in for vmlinux (raw or ELF), no modules.
    pub fn from_file(path: &Path) -> Result<TargetBtf, ObjectError> {
        Ok(TargetBtf::from_vmlinux(parse_btf_file(path, None)?))
    }

    /// Also searches module BTF files of `dir` (every file but `vmlinux`).
    pub fn with_module_dir(mut self, dir: impl Into<PathBuf>) -> TargetBtf {
        self.module_dir = Some(dir.into());
        self.modules = OnceLock::new();
        self
    }

    pub fn vmlinux(&self) -> &Btf {
        &self.vmlinux
    }

    /// Module BTFs, read on first call, sorted by name. Files that are not
    /// valid split BTF are skipped.
    pub fn modules(&self) -> &[ModuleBtf] {
        self.modules.get_or_init(|| {
            let Some(dir) = &self.module_dir else {
                return Vec::new();
            };
            let Ok(entries) = std::fs::read_dir(dir) else {
                return Vec::new();
            };
            let mut modules: Vec<ModuleBtf> = entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name() != "vmlinux")
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let btf = parse_btf_file(&e.path(), Some(self.vmlinux.clone())).ok()?;
                    Some(ModuleBtf { name, btf })
                })
                .collect();
            modules.sort_by(|a, b| a.name.cmp(&b.name));
            modules
        })
    }
}
