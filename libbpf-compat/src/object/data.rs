//! Global data: `.data`, `.rodata`, `.bss`, their `.data.*` / `.rodata.*` /
//! `.bss.*` variants, and the `.kconfig` extern area become internal
//! single-entry ARRAY maps whose value is the section's bytes
//! (`bpf_object__init_internal_map`, `internal_map_name`).

use userbpf_btf_core::{Btf, TypeView, BTF_VAR_STATIC};

use crate::object::log::Logger;
use crate::object::maps::{BpfMap, MapDef, MapKind};
use crate::object::types::MapType;

/// `BPF_OBJ_NAME_LEN`: kernel object names are at most 15 bytes.
pub(crate) const BPF_OBJ_NAME_LEN: usize = 16;
/// `BPF_F_RDONLY_PROG`: programs may not write the map.
pub const BPF_F_RDONLY_PROG: u32 = 1 << 7;
/// `BPF_F_MMAPABLE`: user space may mmap the map's value.
pub const BPF_F_MMAPABLE: u32 = 1 << 10;

/// libbpf's `internal_map_name`: as much of the object name as fits before
/// the section name (which gets at least 7 bytes), 15 bytes in all; custom
/// `.data.foo`-style sections keep only their own name. Bytes the kernel
/// refuses in names become `_`.
pub fn internal_map_name(obj_name: &str, real_name: &str) -> String {
    let obj = obj_name.as_bytes();
    let real = real_name.as_bytes();
    let sfx_len = real.len().clamp(7, BPF_OBJ_NAME_LEN - 1);
    let is_custom = real.get(1..).is_some_and(|rest| rest.contains(&b'.'));
    let pfx_len = if is_custom {
        0
    } else {
        (BPF_OBJ_NAME_LEN - sfx_len - 1).min(obj.len())
    };
    let mut name: Vec<u8> = obj[..pfx_len].to_vec();
    name.extend_from_slice(&real[..sfx_len.min(real.len())]);
    name.truncate(BPF_OBJ_NAME_LEN - 1);
    for b in &mut name {
        if !(b.is_ascii_alphanumeric() || *b == b'_' || *b == b'.') {
            *b = b'_';
        }
    }
    String::from_utf8_lossy(&name).into_owned()
}

/// libbpf's `map_is_mmapable`: some variable of the map's DATASEC is
/// visible to user space (not static, not hidden).
fn is_mmapable(btf: Option<&Btf>, value_type_id: u32) -> bool {
    let Some(btf) = btf else { return false };
    if value_type_id == 0 {
        return false;
    }
    let Some(TypeView::Datasec(sec)) = btf.type_by_id(value_type_id).map(|t| t.view()) else {
        return false;
    };
    sec.vars.iter().any(|vsi| {
        matches!(
            btf.type_by_id(vsi.type_id).map(|t| t.view()),
            Some(TypeView::Var { linkage, .. }) if linkage != BTF_VAR_STATIC
        )
    })
}

/// Where an internal map's contents come from.
pub(crate) struct InternalMapSource<'a> {
    pub kind: MapKind,
    /// The ELF section name (`.rodata`, `.kconfig`).
    pub real_name: &'a str,
    pub sec_idx: usize,
    /// Initial bytes; zeros when `None`.
    pub data: Option<&'a [u8]>,
    pub size: usize,
}

/// `bpf_object__init_internal_map`: an ARRAY of one `size`-byte value
/// holding the source's data.
pub(crate) fn new_internal_map(
    btf: Option<&Btf>,
    obj_name: &str,
    source: InternalMapSource<'_>,
    log: &mut Logger,
) -> BpfMap {
    let InternalMapSource {
        kind,
        real_name,
        sec_idx,
        data,
        size,
    } = source;
    let mut map = BpfMap::new(internal_map_name(obj_name, real_name), kind, sec_idx, 0);
    map.real_name = real_name.to_string();
    let read_only = matches!(kind, MapKind::Rodata | MapKind::Kconfig);
    map.def = MapDef {
        map_type: MapType::ARRAY,
        key_size: 4,
        value_size: size as u32,
        max_entries: 1,
        map_flags: if read_only { BPF_F_RDONLY_PROG } else { 0 },
    };
    // Fails for sections without a DATASEC, such as .rodata.str1.1: fine.
    if let Some(id) = btf.and_then(|b| b.find_by_name(real_name)) {
        map.btf_key_type_id = 0;
        map.btf_value_type_id = id;
    }
    if is_mmapable(btf, map.btf_value_type_id) {
        map.def.map_flags |= BPF_F_MMAPABLE;
    }
    log.debug(format!(
        "map '{}' (global data): at sec_idx {sec_idx}, offset 0, flags {:x}.",
        map.name, map.def.map_flags
    ));
    let mut contents = vec![0u8; size];
    if let Some(data) = data {
        let n = data.len().min(size);
        contents[..n].copy_from_slice(&data[..n]);
    }
    map.initial_data = Some(contents);
    map
}

#[cfg(test)]
mod tests {
    use super::internal_map_name;

    #[test]
    fn names_follow_libbpf() {
        assert_eq!(
            internal_map_name("my_object_name", ".rodata"),
            "my_objec.rodata"
        );
        assert_eq!(internal_map_name("my_object_name", ".bss"), "my_objec.bss");
        assert_eq!(
            internal_map_name("my_object_name", ".kconfig"),
            "my_obje.kconfig"
        );
        assert_eq!(
            internal_map_name("my_object_name", ".rodata.abracadabra"),
            ".rodata.abracad"
        );
        assert_eq!(internal_map_name("x", ".data.custom"), ".data.custom");
        assert_eq!(internal_map_name("a-b", ".data"), "a_b.data");
        assert_eq!(internal_map_name("", ".rodata.str1.1"), ".rodata.str1.1");
    }
}
