//! ELF relocations of program sections: what each `.rel<section>` entry
//! means for the instruction it points at (`bpf_object__collect_prog_relos`,
//! `bpf_program__record_reloc`), and how map, global data and extern
//! references are finally written into the instructions
//! (`bpf_object__relocate_data`, in its `gen_loader` form: maps by index).
//!
//! libbpf does not look at the relocation *type* (R_BPF_64_64,
//! R_BPF_64_32, ...); the instruction and the symbol decide. Neither does
//! this.

use std::cmp::Ordering;

use userbpf_btf_core::BpfCoreRelo;
use userbpf_runtime::isa::{
    Insn, BPF_PSEUDO_BTF_ID, BPF_PSEUDO_FUNC, BPF_PSEUDO_KFUNC_CALL, BPF_PSEUDO_MAP_IDX,
    BPF_PSEUDO_MAP_IDX_VALUE, CALL, LDDW,
};

use crate::object::elf::consts::STT_SECTION;
use crate::object::elf::{parse_rels, ElfFile, Section, Symbol, SHN_LORESERVE};
use crate::object::error::{ObjectError, EINVAL, LIBBPF_ERRNO_FORMAT, LIBBPF_ERRNO_RELOC};
use crate::object::externs::{Extern, ExternKind};
use crate::object::log::Logger;
use crate::object::maps::{BpfMap, MapKind};
use crate::object::program::{find_prog_by_sec_insn, BpfProgram, INSN_SZ};

/// libbpf's poison for an `lddw` of a map that will not be created: both
/// slots become `call 2001000000 + map index`, which the verifier (or the
/// runtime) rejects only if reached.
pub const POISON_LDIMM64_MAP_BASE: i32 = 2_001_000_000;
/// libbpf's poison for a call to an unresolved weak kfunc:
/// `call 2002000000 + extern index`.
pub const POISON_CALL_KFUNC_BASE: i32 = 2_002_000_000;

/// What a relocation does (libbpf's `enum reloc_type`, in its order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RelocKind {
    /// `lddw` of a `.maps` map: becomes `BPF_PSEUDO_MAP_IDX`.
    Ld64 { map_idx: usize },
    /// `call` of a `.text` function.
    Call { sym_off: u64 },
    /// `lddw` of a global variable: `BPF_PSEUDO_MAP_IDX_VALUE` + offset.
    Data { map_idx: usize, sym_off: u64 },
    /// `lddw` of an extern variable.
    ExternLd64 { ext_idx: usize },
    /// `call` of an extern function (a kfunc).
    ExternCall { ext_idx: usize },
    /// `lddw` of a function's address (callbacks): `BPF_PSEUDO_FUNC`.
    SubprogAddr { sym_off: u64 },
    /// A CO-RE relocation from `.BTF.ext`.
    Core { relo: BpfCoreRelo },
}

impl RelocKind {
    fn rank(&self) -> u8 {
        match self {
            RelocKind::Ld64 { .. } => 0,
            RelocKind::Call { .. } => 1,
            RelocKind::Data { .. } => 2,
            RelocKind::ExternLd64 { .. } => 3,
            RelocKind::ExternCall { .. } => 4,
            RelocKind::SubprogAddr { .. } => 5,
            RelocKind::Core { .. } => 6,
        }
    }

    /// libbpf's numeric `reloc_type`, as its messages print it.
    pub(crate) fn libbpf_type(&self) -> u8 {
        self.rank()
    }
}

/// One relocation of a program (libbpf's `struct reloc_desc`); `insn_idx`
/// is relative to the program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RelocDesc {
    pub insn_idx: usize,
    pub kind: RelocKind,
}

/// libbpf's `cmp_relocs`.
pub(crate) fn cmp_relocs(a: &RelocDesc, b: &RelocDesc) -> Ordering {
    a.insn_idx
        .cmp(&b.insn_idx)
        .then(a.kind.rank().cmp(&b.kind.rank()))
}

/// The relocation of instruction `insn_idx` (libbpf's `find_prog_insn_relo`
/// over a sorted list).
pub(crate) fn find_insn_relo(relocs: &[RelocDesc], insn_idx: usize) -> Option<&RelocDesc> {
    let at = relocs.partition_point(|r| r.insn_idx < insn_idx);
    relocs.get(at).filter(|r| r.insn_idx == insn_idx)
}

/// How an ELF section is used, for deciding what a relocation targets
/// (libbpf's `enum sec_type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum SecType {
    #[default]
    Unused,
    Data,
    Rodata,
    Bss,
    /// `.rel*` of a program section or of `.maps`.
    Relo,
    /// `.struct_ops` / `.struct_ops.link` (optionally `?`-prefixed).
    StructOps,
}

/// What the collection of program relocations needs to know.
pub(crate) struct RelocInputs<'a, 'e> {
    pub elf: &'a ElfFile<'e>,
    pub sec_types: &'a [SecType],
    pub text_shndx: Option<usize>,
    pub btf_maps_shndx: Option<usize>,
    pub maps: &'a [BpfMap],
    pub externs: &'a [Extern],
}

fn reloc_error(errno: i32, message: String) -> ObjectError {
    ObjectError::reloc(errno, message)
}

/// The map kind global data of section `shndx` lives in, if any
/// (`bpf_object__section_to_libbpf_map_type`).
fn section_map_kind(inputs: &RelocInputs<'_, '_>, shndx: usize) -> Option<MapKind> {
    if shndx == inputs.elf.symtab_index {
        return Some(MapKind::Kconfig);
    }
    match inputs.sec_types.get(shndx).copied().unwrap_or_default() {
        SecType::Bss => Some(MapKind::Bss),
        SecType::Data => Some(MapKind::Data),
        SecType::Rodata => Some(MapKind::Rodata),
        _ => None,
    }
}

/// `bpf_program__record_reloc`.
fn record_reloc(
    inputs: &RelocInputs<'_, '_>,
    prog: &BpfProgram,
    insn_idx: usize,
    sym_idx: usize,
    sym_name: &str,
    sym: &Symbol,
    log: &mut Logger,
) -> Result<RelocDesc, ObjectError> {
    let pname = &prog.name;
    let insn = prog.insns[insn_idx];
    let is_call = insn.code == CALL;
    if !is_call && !insn.is_lddw() {
        return Err(reloc_error(
            LIBBPF_ERRNO_RELOC,
            format!(
                "prog '{pname}': invalid relo against '{sym_name}' for insns[{insn_idx}].code {:#x}",
                insn.code
            ),
        ));
    }
    let desc = |kind| Ok(RelocDesc { insn_idx, kind });
    if sym.is_extern() {
        let Some(ext_idx) = inputs.externs.iter().position(|e| e.sym_idx == sym_idx) else {
            return Err(reloc_error(
                LIBBPF_ERRNO_RELOC,
                format!(
                    "prog '{pname}': extern relo failed to find extern for '{sym_name}' ({sym_idx})"
                ),
            ));
        };
        log.debug(format!(
            "prog '{pname}': found extern #{ext_idx} '{}' (sym {sym_idx}) for insn #{insn_idx}",
            inputs.externs[ext_idx].name
        ));
        return if is_call {
            desc(RelocKind::ExternCall { ext_idx })
        } else {
            desc(RelocKind::ExternLd64 { ext_idx })
        };
    }
    let shndx = sym.shndx as usize;
    if is_call {
        if insn.src != userbpf_runtime::isa::BPF_PSEUDO_CALL {
            return Err(reloc_error(
                LIBBPF_ERRNO_RELOC,
                format!("prog '{pname}': incorrect bpf_call opcode"),
            ));
        }
        if shndx == 0 || Some(shndx) != inputs.text_shndx {
            return Err(reloc_error(
                LIBBPF_ERRNO_RELOC,
                format!(
                    "prog '{pname}': bad call relo against '{sym_name}' in section '{}'",
                    inputs.elf.section_name(shndx)
                ),
            ));
        }
        if !sym.value.is_multiple_of(INSN_SZ) {
            return Err(reloc_error(
                LIBBPF_ERRNO_RELOC,
                format!(
                    "prog '{pname}': bad call relo against '{sym_name}' at offset {}",
                    sym.value
                ),
            ));
        }
        return desc(RelocKind::Call { sym_off: sym.value });
    }
    if shndx == 0 || sym.shndx >= SHN_LORESERVE {
        return Err(reloc_error(
            LIBBPF_ERRNO_RELOC,
            format!(
                "prog '{pname}': invalid relo against '{sym_name}' in special section {shndx:#x}; forgot to initialize global var?.."
            ),
        ));
    }
    if sym.is_subprog(inputs.text_shndx) {
        // Global functions: offset in st_value, imm 0; static ones: the
        // section symbol, offset in imm.
        if !sym.value.is_multiple_of(INSN_SZ) || insn.imm % INSN_SZ as i32 != 0 {
            return Err(reloc_error(
                LIBBPF_ERRNO_RELOC,
                format!(
                    "prog '{pname}': bad subprog addr relo against '{sym_name}' at offset {}+{}",
                    sym.value, insn.imm
                ),
            ));
        }
        return desc(RelocKind::SubprogAddr { sym_off: sym.value });
    }
    let sec_name = inputs.elf.section_name(shndx);
    let Some(kind) = section_map_kind(inputs, shndx) else {
        // A map of `.maps`.
        if Some(shndx) != inputs.btf_maps_shndx {
            return Err(reloc_error(
                LIBBPF_ERRNO_RELOC,
                format!(
                    "prog '{pname}': bad map relo against '{sym_name}' in section '{sec_name}'"
                ),
            ));
        }
        let found = inputs.maps.iter().position(|m| {
            m.kind == MapKind::Btf && m.sec_idx == shndx && m.sec_offset == sym.value
        });
        let Some(map_idx) = found else {
            return Err(reloc_error(
                LIBBPF_ERRNO_RELOC,
                format!(
                    "prog '{pname}': map relo failed to find map for section '{sec_name}', off {}",
                    sym.value
                ),
            ));
        };
        let map = &inputs.maps[map_idx];
        log.debug(format!(
            "prog '{pname}': found map {map_idx} ({}, sec {}, off {}) for insn #{insn_idx}",
            map.name, map.sec_idx, map.sec_offset
        ));
        return desc(RelocKind::Ld64 { map_idx });
    };
    let is_data = matches!(
        inputs.sec_types.get(shndx),
        Some(SecType::Data | SecType::Rodata | SecType::Bss)
    );
    if !is_data {
        return Err(reloc_error(
            LIBBPF_ERRNO_RELOC,
            format!("prog '{pname}': bad data relo against section '{sec_name}'"),
        ));
    }
    let Some(map_idx) = inputs
        .maps
        .iter()
        .position(|m| m.kind == kind && m.sec_idx == shndx)
    else {
        return Err(reloc_error(
            LIBBPF_ERRNO_RELOC,
            format!("prog '{pname}': data relo failed to find map for section '{sec_name}'"),
        ));
    };
    let map = &inputs.maps[map_idx];
    log.debug(format!(
        "prog '{pname}': found data map {map_idx} ({}, sec {}, off {}) for insn {insn_idx}",
        map.name, map.sec_idx, map.sec_offset
    ));
    desc(RelocKind::Data {
        map_idx,
        sym_off: sym.value,
    })
}

/// `bpf_object__collect_prog_relos`: records each entry of `relo_section`
/// (a `.rel<prog section>`) in the program it points into.
pub(crate) fn collect_prog_relos(
    inputs: &RelocInputs<'_, '_>,
    relo_section: &Section<'_>,
    programs: &mut [BpfProgram],
    log: &mut Logger,
) -> Result<(), ObjectError> {
    let elf = inputs.elf;
    let sec_idx = relo_section.info as usize;
    let relo_sec_name = relo_section.name.as_str();
    let Some(target) = elf.section(sec_idx) else {
        return Err(reloc_error(
            EINVAL,
            format!("sec '{relo_sec_name}': invalid target section {sec_idx}"),
        ));
    };
    let Some(target_data) = target.data else {
        return Err(reloc_error(
            LIBBPF_ERRNO_FORMAT,
            format!("elf: failed to get section({sec_idx}) {} data", target.name),
        ));
    };
    let sec_name = target.name.as_str();
    log.debug(format!(
        "sec '{relo_sec_name}': collecting relocation for section({sec_idx}) '{sec_name}'"
    ));
    for (i, rel) in parse_rels(relo_section).iter().enumerate() {
        let sym_idx = rel.sym as usize;
        let Some(sym) = elf.symbol(sym_idx) else {
            return Err(log.fail(reloc_error(
                LIBBPF_ERRNO_FORMAT,
                format!("sec '{relo_sec_name}': symbol #{sym_idx} not found for relo #{i}"),
            )));
        };
        if sym.shndx as usize >= elf.sections.len() {
            return Err(log.fail(reloc_error(
                LIBBPF_ERRNO_FORMAT,
                format!(
                    "sec '{relo_sec_name}': corrupted symbol #{sym_idx} pointing to invalid section #{} for relo #{i}",
                    sym.shndx
                ),
            )));
        }
        if !rel.offset.is_multiple_of(INSN_SZ) || rel.offset >= target_data.len() as u64 {
            return Err(log.fail(reloc_error(
                LIBBPF_ERRNO_FORMAT,
                format!(
                    "sec '{relo_sec_name}': invalid offset {:#x} for relo #{i}",
                    rel.offset
                ),
            )));
        }
        let sec_insn = (rel.offset / INSN_SZ) as usize;
        // Relocations against static functions name the section symbol.
        let sym_name = if sym.sym_type() == STT_SECTION && sym.name_off == 0 {
            elf.section_name(sym.shndx as usize).to_string()
        } else {
            sym.name.clone().unwrap_or_else(|| "<?".to_string())
        };
        log.debug(format!(
            "sec '{relo_sec_name}': relo #{i}: insn #{sec_insn} against '{sym_name}'"
        ));
        let Some(prog_idx) = find_prog_by_sec_insn(programs, sec_idx, sec_insn) else {
            log.debug(format!(
                "sec '{relo_sec_name}': relo #{i}: couldn't find program in section '{sec_name}' for insn #{sec_insn}, probably overridden weak function, skipping..."
            ));
            continue;
        };
        let prog = &programs[prog_idx];
        let insn_idx = sec_insn - prog.sec_insn_off;
        let desc = record_reloc(inputs, prog, insn_idx, sym_idx, &sym_name, sym, log)
            .map_err(|e| log.fail(e))?;
        programs[prog_idx].relocs.push(desc);
    }
    Ok(())
}

/// Replaces both slots of an `lddw` by calls to an invalid helper id
/// (`poison_map_ldimm64`).
fn poison_map_ldimm64(insns: &mut [Insn], at: usize, map_idx: usize) {
    for slot in insns.iter_mut().skip(at).take(2) {
        *slot = Insn::new(
            CALL,
            0,
            0,
            0,
            POISON_LDIMM64_MAP_BASE.wrapping_add(map_idx as i32),
        );
    }
}

/// The lddw at `at` and its second slot, or a relocation error.
fn lddw_pair<'i>(
    insns: &'i mut [Insn],
    at: usize,
    prog: &str,
    relo_idx: usize,
) -> Result<(&'i mut Insn, &'i mut Insn), ObjectError> {
    match insns.get_mut(at..at + 2) {
        Some([first, second]) if first.code == LDDW => Ok((first, second)),
        _ => Err(reloc_error(
            EINVAL,
            format!("prog '{prog}': relo #{relo_idx}: bad insn"),
        )),
    }
}

/// `bpf_object__relocate_data`: writes map, global data and extern
/// references into a linked program's instructions.
pub(crate) fn relocate_data(
    prog_name: &str,
    insns: &mut [Insn],
    relocs: &[RelocDesc],
    maps: &[BpfMap],
    externs: &[Extern],
    kconfig_map_idx: Option<usize>,
    log: &mut Logger,
) -> Result<(), ObjectError> {
    for (i, relo) in relocs.iter().enumerate() {
        let at = relo.insn_idx;
        match &relo.kind {
            RelocKind::Ld64 { map_idx } => {
                let map = &maps[*map_idx];
                if map.autocreate {
                    let (first, _) = lddw_pair(insns, at, prog_name, i)?;
                    first.src = BPF_PSEUDO_MAP_IDX;
                    first.imm = *map_idx as i32;
                } else {
                    log.debug(format!(
                        "prog '{prog_name}': relo #{i}: poisoning insn #{at} that loads map #{map_idx} '{}'",
                        map.name
                    ));
                    lddw_pair(insns, at, prog_name, i)?;
                    poison_map_ldimm64(insns, at, *map_idx);
                }
            }
            RelocKind::Data { map_idx, sym_off } => {
                let map = &maps[*map_idx];
                let (first, second) = lddw_pair(insns, at, prog_name, i)?;
                second.imm = first.imm.wrapping_add(*sym_off as i32);
                if map.autocreate {
                    first.src = BPF_PSEUDO_MAP_IDX_VALUE;
                    first.imm = *map_idx as i32;
                } else {
                    log.debug(format!(
                        "prog '{prog_name}': relo #{i}: poisoning insn #{at} that loads map #{map_idx} '{}'",
                        map.name
                    ));
                    poison_map_ldimm64(insns, at, *map_idx);
                }
            }
            RelocKind::ExternLd64 { ext_idx } => {
                let ext = &externs[*ext_idx];
                let (first, second) = lddw_pair(insns, at, prog_name, i)?;
                match &ext.kind {
                    ExternKind::Kconfig(kcfg) => {
                        let Some(kconfig_map) = kconfig_map_idx else {
                            return Err(reloc_error(
                                EINVAL,
                                format!("prog '{prog_name}': relo #{i}: no .kconfig map"),
                            ));
                        };
                        first.src = BPF_PSEUDO_MAP_IDX_VALUE;
                        first.imm = kconfig_map as i32;
                        second.imm = kcfg.data_off as i32;
                    }
                    ExternKind::Ksym(ksym) => {
                        if ksym.type_id != 0 && ext.is_set {
                            // The module's BTF fd is the kernel backend's
                            // business; vmlinux is 0.
                            first.src = BPF_PSEUDO_BTF_ID;
                            first.imm = ksym.kernel_btf_id as i32;
                            second.imm = 0;
                        } else {
                            first.imm = ksym.addr as u32 as i32;
                            second.imm = (ksym.addr >> 32) as u32 as i32;
                        }
                    }
                }
            }
            RelocKind::ExternCall { ext_idx } => {
                let ext = &externs[*ext_idx];
                let Some(insn) = insns.get_mut(at) else {
                    return Err(reloc_error(
                        EINVAL,
                        format!("prog '{prog_name}': relo #{i}: bad insn"),
                    ));
                };
                match &ext.kind {
                    ExternKind::Ksym(ksym) if ext.is_set => {
                        insn.src = BPF_PSEUDO_KFUNC_CALL;
                        insn.imm = ksym.kernel_btf_id as i32;
                        insn.off = ksym.btf_fd_idx;
                    }
                    _ => {
                        log.debug(format!(
                            "prog '{prog_name}': relo #{i}: poisoning insn #{at} that calls kfunc '{}'",
                            ext.name
                        ));
                        *insn = Insn::new(
                            CALL,
                            0,
                            0,
                            0,
                            POISON_CALL_KFUNC_BASE.wrapping_add(*ext_idx as i32),
                        );
                    }
                }
            }
            RelocKind::SubprogAddr { .. } => {
                if insns.get(at).map(|i| i.src) != Some(BPF_PSEUDO_FUNC) {
                    return Err(reloc_error(
                        EINVAL,
                        format!("prog '{prog_name}': relo #{i}: bad insn"),
                    ));
                }
            }
            RelocKind::Call { .. } | RelocKind::Core { .. } => {}
        }
    }
    Ok(())
}
