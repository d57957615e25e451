//! Opening an object (libbpf's `bpf_object_open`): the ELF pass that
//! finds programs and data sections (`bpf_object__elf_collect`), `.BTF` and
//! `.BTF.ext`, externs and DATASEC fix-ups, then maps in libbpf's order
//! (`.maps`, global data, `.kconfig`), program types, and the relocations
//! of every program section and of `.maps`.

use crate::object::data::{self, InternalMapSource};
use crate::object::elf::consts as elfc;
use crate::object::elf::{self, ElfFile, Section, REL_ENTRY_SIZE, SHT_LLVM_ADDRSIG};
use crate::object::error::{ObjectError, E2BIG, EINVAL, ENOENT, LIBBPF_ERRNO_FORMAT};
use crate::object::externs::{self, Extern, KCONFIG_SEC};
use crate::object::kconfig::KernelEnv;
use crate::object::log::Logger;
use crate::object::maps::{self, BpfMap, MapKind, MapRelocInputs, BPF_FS_DEFAULT_PATH};
use crate::object::program::{self, BpfProgram};
use crate::object::reloc::{self, cmp_relocs, RelocInputs, SecType};
use crate::object::struct_ops;
use crate::object::{btf_fixup, Object, OpenOptions};
use userbpf_btf_core::{Btf, BtfExt};

/// `bpf_object__new`'s name: at most 15 bytes.
fn truncate_name(name: &str) -> String {
    let mut end = name.len().min(data::BPF_OBJ_NAME_LEN - 1);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_string()
}

/// libbpf's `ignore_elf_section`.
fn ignore_section(section: &Section<'_>) -> bool {
    let name = section.name.as_str();
    if section.sh_type == elfc::SHT_STRTAB || section.sh_type == SHT_LLVM_ADDRSIG {
        return true;
    }
    if section.sh_type == elfc::SHT_PROGBITS && section.size == 0 && name == ".text" {
        return true;
    }
    if name.starts_with(".debug_") {
        return true;
    }
    if let Some(target) = name.strip_prefix(".rel") {
        if target.starts_with(".debug_") || target == ".BTF" || target == ".BTF.ext" {
            return true;
        }
    }
    false
}

/// What the ELF pass found, before maps and relocations are built.
struct Collected<'e> {
    elf: ElfFile<'e>,
    sec_types: Vec<SecType>,
    btf_maps_shndx: Option<usize>,
    btf_data: Option<&'e [u8]>,
    btf_ext_data: Option<&'e [u8]>,
    license: String,
    kern_version: Option<u32>,
    text_shndx: Option<usize>,
    programs: Vec<BpfProgram>,
}

/// An object half-way through opening.
struct Opener<'e> {
    /// The object's name (truncated), which prefixes internal map names.
    name: String,
    elf: ElfFile<'e>,
    sec_types: Vec<SecType>,
    btf_maps_shndx: Option<usize>,
    text_shndx: Option<usize>,
    btf: Option<Btf>,
    externs: Vec<Extern>,
    programs: Vec<BpfProgram>,
    maps: Vec<BpfMap>,
    /// The `.maps` DATASEC (0 if none).
    btf_maps_sec_btf_id: u32,
    kconfig_map_idx: Option<usize>,
    log: Logger,
}

/// `bpf_object_open` for a buffer whose name, unless the options give
/// one, is `default_name`.
pub(crate) fn open_object(
    bytes: &[u8],
    default_name: String,
    opts: OpenOptions,
) -> Result<Object, ObjectError> {
    let mut log = Logger::new(opts.log.clone());
    let path = opts.object_name.clone().unwrap_or(default_name);
    log.debug(format!("loading object '{path}' from buffer"));
    if bytes.is_empty() {
        return Err(log.fail(ObjectError::elf(EINVAL, "empty object buffer")));
    }
    let Collected {
        elf,
        sec_types,
        btf_maps_shndx,
        btf_data,
        btf_ext_data,
        license,
        kern_version,
        text_shndx,
        programs,
    } = collect_elf(bytes, &path, &mut log)?;
    let has_st_ops = sec_types.contains(&SecType::StructOps);
    let (mut btf, btf_ext) = init_btf(
        btf_data,
        btf_ext_data,
        btf_maps_shndx.is_some() || has_st_ops,
        &mut log,
    )?;
    let externs = externs::collect_externs(&elf, btf.as_mut(), &mut log)?;
    if let Some(btf) = btf.as_mut() {
        btf_fixup::fixup_datasecs(btf, &elf, &mut log)?;
    }
    let mut opener = Opener {
        name: truncate_name(&path),
        elf,
        sec_types,
        btf_maps_shndx,
        text_shndx,
        btf,
        externs,
        programs,
        maps: Vec::new(),
        btf_maps_sec_btf_id: 0,
        kconfig_map_idx: None,
        log,
    };
    let pin_root = opts
        .pin_root_path
        .as_ref()
        .map_or(BPF_FS_DEFAULT_PATH.to_string(), |p| p.display().to_string());
    opener.init_btf_maps(&pin_root)?;
    opener.init_global_data_maps()?;
    opener.init_kconfig_map()?;
    program::init_prog_types(&mut opener.programs, &mut opener.log);
    opener.init_struct_ops_maps()?;
    opener.collect_relos()?;

    let Opener {
        name,
        elf,
        btf,
        externs,
        programs,
        maps,
        kconfig_map_idx,
        text_shndx,
        log,
        ..
    } = opener;
    Ok(Object {
        name,
        license,
        kern_version: kern_version.unwrap_or_else(|| KernelEnv::host().kernel_version),
        btf,
        btf_ext,
        programs,
        maps,
        externs,
        kconfig_map_idx,
        text_shndx,
        section_names: elf.sections.iter().map(|s| s.name.clone()).collect(),
        btf_custom_path: opts.btf_custom_path,
        kconfig: opts.kconfig,
        core_relos: 0,
        relocated: false,
        log,
    })
}

impl Opener<'_> {
    /// `bpf_object__init_user_btf_maps`.
    fn init_btf_maps(&mut self, pin_root: &str) -> Result<(), ObjectError> {
        let Some(shndx) = self.btf_maps_shndx else {
            return Ok(());
        };
        let Some(btf) = self.btf.as_ref() else {
            return Err(self.log.fail(ObjectError::BtfRequired { errno: ENOENT }));
        };
        self.btf_maps_sec_btf_id = maps::init_user_btf_maps(
            btf,
            &self.elf.sections[shndx],
            pin_root,
            &mut self.maps,
            &mut self.log,
        )?;
        Ok(())
    }

    /// `bpf_object__init_global_data_maps`: one map per non-empty data
    /// section, in section order.
    fn init_global_data_maps(&mut self) -> Result<(), ObjectError> {
        for (idx, sec_type) in self.sec_types.iter().enumerate() {
            let kind = match sec_type {
                SecType::Data => MapKind::Data,
                SecType::Rodata => MapKind::Rodata,
                SecType::Bss => MapKind::Bss,
                _ => continue,
            };
            let section = &self.elf.sections[idx];
            let size = section.data_size();
            if size == 0 {
                continue;
            }
            // A map's value size is a u32 (libbpf would truncate silently).
            let Ok(size) = u32::try_from(size).map(|s| s as usize) else {
                return Err(self.log.fail(ObjectError::map(
                    E2BIG,
                    format!(
                        "elf: sec '{}': {size} bytes is too large for a global data map",
                        section.name
                    ),
                )));
            };
            let data = (kind != MapKind::Bss).then(|| section.data.unwrap_or_default());
            let source = InternalMapSource {
                kind,
                real_name: &section.name,
                sec_idx: idx,
                data,
                size,
            };
            let map = data::new_internal_map(self.btf.as_ref(), &self.name, source, &mut self.log);
            self.log
                .debug(format!("map {} is \"{}\"", self.maps.len(), map.name));
            self.maps.push(map);
        }
        Ok(())
    }

    /// `bpf_object__init_kconfig_map`: sized to end at the last kconfig
    /// extern.
    fn init_kconfig_map(&mut self) -> Result<(), ObjectError> {
        let Some(last) = self.externs.iter().filter_map(|e| e.kcfg()).next_back() else {
            return Ok(());
        };
        let Ok(size) = u32::try_from(u64::from(last.data_off) + u64::from(last.size)) else {
            return Err(self.log.fail(ObjectError::map(
                E2BIG,
                "extern (kcfg): .kconfig map is too large",
            )));
        };
        let source = InternalMapSource {
            kind: MapKind::Kconfig,
            real_name: KCONFIG_SEC,
            sec_idx: self.elf.symtab_index,
            data: None,
            size: size as usize,
        };
        let map = data::new_internal_map(self.btf.as_ref(), &self.name, source, &mut self.log);
        self.log
            .debug(format!("map {} is \"{}\"", self.maps.len(), map.name));
        self.kconfig_map_idx = Some(self.maps.len());
        self.maps.push(map);
        Ok(())
    }

    /// `bpf_object_init_struct_ops`: the maps of every struct_ops section,
    /// after all the others.
    fn init_struct_ops_maps(&mut self) -> Result<(), ObjectError> {
        for (idx, sec_type) in self.sec_types.iter().enumerate() {
            if *sec_type != SecType::StructOps {
                continue;
            }
            let Some(btf) = self.btf.as_ref() else {
                return Err(self.log.fail(ObjectError::BtfRequired { errno: ENOENT }));
            };
            let section = &self.elf.sections[idx];
            struct_ops::init_struct_ops_maps(
                btf,
                &section.name,
                idx,
                section.data.unwrap_or_default(),
                &mut self.maps,
                &mut self.log,
            )?;
        }
        Ok(())
    }

    /// `bpf_object__collect_relos`: every relocation section in section
    /// order, then each program's relocations sorted.
    fn collect_relos(&mut self) -> Result<(), ObjectError> {
        for (idx, sec_type) in self.sec_types.iter().enumerate() {
            if *sec_type != SecType::Relo {
                continue;
            }
            let relo_section = &self.elf.sections[idx];
            let target = relo_section.info as usize;
            if self.sec_types.get(target) == Some(&SecType::StructOps) {
                let Some(btf) = self.btf.as_ref() else {
                    return Err(self.log.fail(ObjectError::BtfRequired { errno: ENOENT }));
                };
                let rels = elf::parse_rels(relo_section);
                struct_ops::collect_st_ops_relos(
                    &self.elf,
                    btf,
                    target,
                    &rels,
                    &mut self.maps,
                    &self.programs,
                    &mut self.log,
                )?;
                continue;
            }
            if Some(target) != self.btf_maps_shndx {
                let inputs = RelocInputs {
                    elf: &self.elf,
                    sec_types: &self.sec_types,
                    text_shndx: self.text_shndx,
                    btf_maps_shndx: self.btf_maps_shndx,
                    maps: &self.maps,
                    externs: &self.externs,
                };
                reloc::collect_prog_relos(
                    &inputs,
                    relo_section,
                    &mut self.programs,
                    &mut self.log,
                )?;
                continue;
            }
            let btf = self.btf.as_ref().filter(|_| self.btf_maps_sec_btf_id != 0);
            let Some(btf) = btf else {
                return Err(self.log.fail(ObjectError::map(
                    EINVAL,
                    ".maps relocations without .maps BTF",
                )));
            };
            let inputs = MapRelocInputs {
                elf: &self.elf,
                btf,
                maps_sec_btf_id: self.btf_maps_sec_btf_id,
                maps_shndx: target,
                programs: &self.programs,
            };
            let rels = elf::parse_rels(relo_section);
            maps::collect_map_relos(&inputs, &rels, &mut self.maps, &mut self.log)?;
        }
        for prog in &mut self.programs {
            prog.relocs.sort_by(cmp_relocs);
        }
        Ok(())
    }
}

/// `bpf_object__init_btf`: `.BTF` and `.BTF.ext`. A missing or broken
/// `.BTF` (or a broken `.BTF.ext`) only fails the open if the object needs
/// BTF, that is if it has `.maps`.
fn init_btf(
    btf_data: Option<&[u8]>,
    btf_ext_data: Option<&[u8]>,
    needs_btf: bool,
    log: &mut Logger,
) -> Result<(Option<Btf>, Option<BtfExt>), ObjectError> {
    let mut failure = Some(ObjectError::BtfRequired { errno: ENOENT });
    let mut btf = None;
    let mut btf_ext = None;
    let mut btf_broken = false;
    if let Some(data) = btf_data {
        match Btf::parse(data) {
            Ok(mut parsed) => {
                // BPF-targeted BTF always has 8-byte pointers.
                let _ = parsed.set_pointer_size(8);
                btf = Some(parsed);
                failure = None;
            }
            Err(source) => {
                let err = ObjectError::Btf { source };
                log.warn(err.to_string());
                failure = Some(err);
                btf_broken = true;
            }
        }
    }
    match btf_ext_data {
        Some(_) if btf_broken => {}
        Some(_) if btf.is_none() => log.debug(
            "Ignore ELF section .BTF.ext because its depending ELF section .BTF is not found.",
        ),
        Some(data) => match BtfExt::parse(data) {
            Ok(ext) => btf_ext = Some(ext),
            Err(e) => {
                log.warn(format!(
                    "Error loading ELF section .BTF.ext: -{}. Ignored and continue.",
                    e.errno()
                ));
                failure = Some(ObjectError::BtfRequired { errno: e.errno() });
            }
        },
        None => {}
    }
    match failure {
        Some(err) if needs_btf => {
            log.warn("BTF is required, but is missing or corrupted.");
            Err(err)
        }
        _ => Ok((btf, btf_ext)),
    }
}

/// The section pass of `bpf_object__elf_collect`.
fn collect_elf<'e>(
    bytes: &'e [u8],
    path: &str,
    log: &mut Logger,
) -> Result<Collected<'e>, ObjectError> {
    let elf = ElfFile::parse(bytes, path).map_err(|e| log.fail(e))?;
    let mut sec_types = vec![SecType::Unused; elf.sections.len()];
    let mut btf_maps_shndx = None;
    let mut btf_data = None;
    let mut btf_ext_data = None;
    let mut license = String::new();
    let mut kern_version = None;
    let mut text_shndx = None;
    let mut programs = Vec::new();
    let format = |message: String| ObjectError::elf(LIBBPF_ERRNO_FORMAT, message);

    for section in elf.sections.iter().skip(1) {
        let idx = section.index;
        let name = section.name.as_str();
        if ignore_section(section) {
            continue;
        }
        let Some(data) = section.data else {
            return Err(log.fail(format(format!(
                "elf: failed to get section({idx}) {name} data from {path}: invalid section offset or size"
            ))));
        };
        log.debug(format!(
            "elf: section({idx}) {name}, size {}, link {}, flags {:x}, type={}",
            section.data_size(),
            section.link,
            section.flags,
            section.sh_type
        ));
        match name {
            "license" => {
                let end = data
                    .iter()
                    .position(|&b| b == 0)
                    .unwrap_or(data.len())
                    .min(63);
                license = String::from_utf8_lossy(&data[..end]).into_owned();
                log.debug(format!("license of {path} is {license}"));
                continue;
            }
            "version" => {
                let Ok(raw) = <[u8; 4]>::try_from(data) else {
                    return Err(log.fail(format(format!("invalid kver section in {path}"))));
                };
                let kver = u32::from_ne_bytes(raw);
                log.debug(format!("kernel version of {path} is {kver:x}"));
                kern_version = Some(kver);
                continue;
            }
            "maps" => return Err(log.fail(ObjectError::LegacyMapsSection)),
            ".maps" => {
                btf_maps_shndx = Some(idx);
                continue;
            }
            ".BTF" | ".BTF.ext" => {
                if section.sh_type != elfc::SHT_PROGBITS {
                    return Err(
                        log.fail(format(format!("elf: section {name} is not SHT_PROGBITS")))
                    );
                }
                if name == ".BTF" {
                    btf_data = Some(data);
                } else {
                    btf_ext_data = Some(data);
                }
                continue;
            }
            _ => {}
        }
        if section.sh_type == elfc::SHT_SYMTAB {
            continue;
        }
        if section.sh_type == elfc::SHT_PROGBITS && !data.is_empty() {
            if section.is_exec() {
                let is_text = name == ".text";
                if is_text {
                    text_shndx = Some(idx);
                }
                program::add_programs(&elf, section, is_text, &mut programs, log)?;
            } else if name == ".data" || name.starts_with(".data.") {
                sec_types[idx] = SecType::Data;
            } else if name == ".rodata" || name.starts_with(".rodata.") {
                sec_types[idx] = SecType::Rodata;
            } else if struct_ops::is_struct_ops_section(name) {
                sec_types[idx] = SecType::StructOps;
            } else if name == ".addr_space.1" || name == ".jumptables" {
                return Err(log.fail(ObjectError::unsupported(format!(
                    "elf: sec '{name}': {} are not supported by userbpf",
                    if name == ".jumptables" {
                        "jump tables"
                    } else {
                        "arena global variables"
                    }
                ))));
            } else {
                log.info(format!(
                    "elf: skipping unrecognized data section({idx}) {name}"
                ));
            }
        } else if section.sh_type == elfc::SHT_REL {
            let target = section.info as usize;
            if section.entsize != REL_ENTRY_SIZE || target >= elf.sections.len() {
                return Err(log.fail(format(format!("elf: bad relocation section({idx}) {name}"))));
            }
            // Only program sections, .maps and struct_ops sections have
            // relocations libbpf uses.
            let st_ops_rel = name
                .strip_prefix(".rel")
                .is_some_and(struct_ops::is_struct_ops_section);
            if !elf.sections[target].is_exec() && name != ".rel.maps" && !st_ops_rel {
                log.info(format!(
                    "elf: skipping relo section({idx}) {name} for section({target}) {}",
                    elf.section_name(target)
                ));
                continue;
            }
            sec_types[idx] = SecType::Relo;
        } else if section.sh_type == elfc::SHT_NOBITS
            && (name == ".bss" || name.starts_with(".bss."))
        {
            sec_types[idx] = SecType::Bss;
        } else {
            log.info(format!(
                "elf: skipping section({idx}) {name} (size {})",
                section.size
            ));
        }
    }
    if elf.strtab_index == 0 || elf.strtab_index >= elf.sections.len() {
        return Err(log.fail(format(format!(
            "elf: symbol strings section missing or invalid in {path}"
        ))));
    }
    programs.sort_by_key(|p| (p.sec_idx, p.sec_insn_off));
    Ok(Collected {
        elf,
        sec_types,
        btf_maps_shndx,
        btf_data,
        btf_ext_data,
        license,
        kern_version,
        text_shndx,
        programs,
    })
}
