//! struct_ops maps: the variables of `SEC(".struct_ops")` and
//! `SEC(".struct_ops.link")` (optionally `?`-prefixed), each a
//! `BPF_MAP_TYPE_STRUCT_OPS` map whose value is the object's struct (say
//! `struct tcp_congestion_ops`) with its function pointers relocated to
//! `SEC("struct_ops/...")` programs (libbpf's `init_struct_ops_maps`,
//! `bpf_object__collect_st_ops_relos` and
//! `bpf_object_adjust_struct_ops_autoload`). Everything that depends on
//! the kernel's BTF (the kernel's layout of the value, program attach
//! ids) is done by the kernel backend at load.

use userbpf_btf_core::{Btf, BtfKind, TypeView};

use crate::object::elf::{ElfFile, Rel};
use crate::object::error::{ObjectError, EINVAL, ENOTSUP, LIBBPF_ERRNO_FORMAT, LIBBPF_ERRNO_RELOC};
use crate::object::log::Logger;
use crate::object::maps::{BpfMap, MapKind};
use crate::object::program::{find_prog_by_sec_insn, BpfProgram, INSN_SZ};
use crate::object::types::{MapType, ProgType};

/// `.struct_ops`.
pub const STRUCT_OPS_SEC: &str = ".struct_ops";
/// `.struct_ops.link`.
pub const STRUCT_OPS_LINK_SEC: &str = ".struct_ops.link";
/// `BPF_F_LINK`: the map is registered through a `BPF_LINK_CREATE` link.
pub const BPF_F_LINK: u32 = 1 << 13;
/// `SHN_LORESERVE`.
const SHN_LORESERVE: u16 = 0xff00;

/// Whether `name` is a struct_ops data section.
pub(crate) fn is_struct_ops_section(name: &str) -> bool {
    let name = name.strip_prefix('?').unwrap_or(name);
    name == STRUCT_OPS_SEC || name == STRUCT_OPS_LINK_SEC
}

/// What libbpf keeps in `struct bpf_struct_ops` before load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StructOps {
    /// The struct's type id in the object's BTF.
    pub type_id: u32,
    /// The struct's name (`tcp_congestion_ops`).
    pub type_name: String,
    /// The variable's initial bytes, in the object's layout (function
    /// pointer slots are zero; see [`StructOps::progs`]).
    pub data: Vec<u8>,
    /// Per member of the struct: the entry program its function pointer
    /// was relocated to, by name.
    pub progs: Vec<Option<String>>,
}

fn map_err(errno: i32, message: String) -> ObjectError {
    ObjectError::map(errno, message)
}

/// `init_struct_ops_maps`: one map per variable of the section's DATASEC,
/// appended to `maps`.
pub(crate) fn init_struct_ops_maps(
    btf: &Btf,
    sec_name: &str,
    shndx: usize,
    data: &[u8],
    maps: &mut Vec<BpfMap>,
    log: &mut Logger,
) -> Result<(), ObjectError> {
    let Some(datasec_id) = btf.find_by_name_kind(sec_name, BtfKind::Datasec) else {
        return Err(log.fail(map_err(
            EINVAL,
            format!("struct_ops init: DATASEC {sec_name} not found"),
        )));
    };
    let vars = match btf.type_by_id(datasec_id).map(|t| t.view()) {
        Some(TypeView::Datasec(d)) => d.vars,
        _ => &[],
    };
    let autocreate = !sec_name.starts_with('?');
    let plain_name = sec_name.strip_prefix('?').unwrap_or(sec_name);
    for vsi in vars {
        let var_name = btf
            .type_by_id(vsi.type_id)
            .and_then(|t| t.name())
            .unwrap_or("")
            .to_string();
        let resolved = btf.resolve_type(vsi.type_id).ok();
        let Some(ty) = resolved.and_then(|id| btf.type_by_id(id)) else {
            return Err(log.fail(map_err(
                EINVAL,
                format!(
                    "struct_ops init: Cannot resolve var type_id {} in DATASEC {sec_name}",
                    vsi.type_id
                ),
            )));
        };
        let type_id = ty.id();
        let tname = ty.name().unwrap_or("").to_string();
        if tname.is_empty() {
            return Err(log.fail(map_err(
                ENOTSUP,
                "struct_ops init: anonymous type is not supported".to_string(),
            )));
        }
        let TypeView::Struct(st) = ty.view() else {
            return Err(log.fail(map_err(
                EINVAL,
                format!("struct_ops init: {tname} is not a struct"),
            )));
        };
        let start = vsi.offset as usize;
        let end = start + st.size as usize;
        if end > data.len() {
            return Err(log.fail(map_err(
                EINVAL,
                format!(
                    "struct_ops init: var {var_name} is beyond the end of DATASEC {plain_name}"
                ),
            )));
        }
        let mut map = BpfMap::new(
            var_name.clone(),
            MapKind::StructOps,
            shndx,
            u64::from(vsi.offset),
        );
        map.btf_value_type_id = type_id;
        map.autocreate = autocreate;
        map.def.map_type = MapType::STRUCT_OPS;
        map.def.key_size = 4;
        map.def.value_size = st.size;
        map.def.max_entries = 1;
        map.def.map_flags = if plain_name == STRUCT_OPS_LINK_SEC {
            BPF_F_LINK
        } else {
            0
        };
        map.struct_ops = Some(Box::new(StructOps {
            type_id,
            type_name: tname.clone(),
            data: data[start..end].to_vec(),
            progs: vec![None; st.len()],
        }));
        log.debug(format!(
            "struct_ops init: struct {tname}(type_id={type_id}) {var_name} found at offset {}",
            vsi.offset
        ));
        maps.push(map);
    }
    Ok(())
}

/// `resolve_func_ptr`: whether `type_id` is (modifiers of) a pointer to a
/// function prototype.
pub(crate) fn is_func_ptr(btf: &Btf, type_id: u32) -> bool {
    let Some(t) = btf.skip_mods_and_typedefs(type_id) else {
        return false;
    };
    let TypeView::Ptr { target } = t.view() else {
        return false;
    };
    btf.skip_mods_and_typedefs(target)
        .is_some_and(|t| t.kind() == BtfKind::FuncProto)
}

/// `bpf_object__collect_st_ops_relos` for the relocations of struct_ops
/// section `shndx`.
pub(crate) fn collect_st_ops_relos(
    elf: &ElfFile<'_>,
    btf: &Btf,
    shndx: usize,
    rels: &[Rel],
    maps: &mut [BpfMap],
    programs: &[BpfProgram],
    log: &mut Logger,
) -> Result<(), ObjectError> {
    for rel in rels {
        let Some(sym) = elf.symbol(rel.sym as usize) else {
            return Err(log.fail(map_err(
                LIBBPF_ERRNO_FORMAT,
                format!("struct_ops reloc: symbol {:x} not found", rel.sym),
            )));
        };
        let name = sym.name.clone().unwrap_or_else(|| "<?>".to_string());
        let found = maps.iter().position(|m| {
            m.struct_ops.is_some()
                && m.sec_idx == shndx
                && m.sec_offset <= rel.offset
                && rel.offset - m.sec_offset < u64::from(m.def.value_size)
        });
        let Some(map_idx) = found else {
            return Err(log.fail(map_err(
                EINVAL,
                format!(
                    "struct_ops reloc: cannot find map at rel->r_offset {}",
                    rel.offset
                ),
            )));
        };
        let map = &mut maps[map_idx];
        let moff = rel.offset - map.sec_offset;
        log.debug(format!(
            "struct_ops reloc {}: for {} value {} shdr_idx {} rel->r_offset {} map->sec_offset {} name {} ('{name}')",
            map.name, rel.sym, sym.value, sym.shndx, rel.offset, map.sec_offset, sym.name_off
        ));
        if sym.shndx >= SHN_LORESERVE {
            return Err(log.fail(map_err(
                LIBBPF_ERRNO_RELOC,
                format!(
                    "struct_ops reloc {}: rel->r_offset {} shdr_idx {} unsupported non-static function",
                    map.name, rel.offset, sym.shndx
                ),
            )));
        }
        if !sym.value.is_multiple_of(INSN_SZ) {
            return Err(log.fail(map_err(
                LIBBPF_ERRNO_FORMAT,
                format!(
                    "struct_ops reloc {}: invalid target program offset {}",
                    map.name, sym.value
                ),
            )));
        }
        let insn_idx = (sym.value / INSN_SZ) as usize;
        let st_ops = map.struct_ops.as_mut().expect("a struct_ops map");
        let members = match btf.type_by_id(st_ops.type_id).map(|t| t.view()) {
            Some(TypeView::Struct(st)) => st,
            _ => {
                return Err(log.fail(map_err(
                    EINVAL,
                    format!(
                        "struct_ops reloc {}: cannot find member at moff {moff}",
                        map.name
                    ),
                )))
            }
        };
        let Some((member_idx, member)) = members
            .members()
            .enumerate()
            .find(|(_, m)| u64::from(m.bit_offset()) == moff * 8)
        else {
            return Err(log.fail(map_err(
                EINVAL,
                format!(
                    "struct_ops reloc {}: cannot find member at moff {moff}",
                    map.name
                ),
            )));
        };
        let mname = btf
            .name_by_offset(member.name_off())
            .unwrap_or("")
            .to_string();
        if !is_func_ptr(btf, member.type_id()) {
            return Err(log.fail(map_err(
                EINVAL,
                format!(
                    "struct_ops reloc {}: cannot relocate non func ptr {mname}",
                    map.name
                ),
            )));
        }
        let Some(prog_idx) = find_prog_by_sec_insn(programs, sym.shndx as usize, insn_idx) else {
            return Err(log.fail(map_err(
                EINVAL,
                format!(
                    "struct_ops reloc {}: cannot find prog at shdr_idx {} to relocate func ptr {mname}",
                    map.name, sym.shndx
                ),
            )));
        };
        let prog = &programs[prog_idx];
        if prog.prog_type != ProgType::STRUCT_OPS {
            return Err(log.fail(map_err(
                EINVAL,
                format!(
                    "struct_ops reloc {}: prog {} is not struct_ops BPF program",
                    map.name, prog.name
                ),
            )));
        }
        if let Some(slot) = st_ops.progs.get_mut(member_idx) {
            *slot = Some(prog.name.clone());
        }
    }
    Ok(())
}

/// `bpf_object_adjust_struct_ops_autoload`: a struct_ops program that some
/// struct_ops map refers to loads if one of those maps is created.
pub(crate) fn adjust_autoload(maps: &[BpfMap], programs: &mut [BpfProgram]) {
    for prog in programs.iter_mut() {
        if prog.prog_type != ProgType::STRUCT_OPS || prog.is_subprog {
            continue;
        }
        let mut uses = 0;
        let mut should_load = false;
        for m in maps {
            let Some(st) = m.struct_ops.as_deref() else {
                continue;
            };
            for slot in st.progs.iter().flatten() {
                if *slot == prog.name {
                    uses += 1;
                    should_load |= m.autocreate;
                }
            }
        }
        if uses > 0 {
            prog.autoload = should_load;
        }
    }
}
