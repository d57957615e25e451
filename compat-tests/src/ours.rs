//! Our side of the comparison: an object relocated by
//! `userbpf-libbpf-compat`'s ELF loader, as [`OurObject`].
//!
//! The same steps as the oracle's libbpf calls: open from memory with the
//! object's name (`OpenOptions::object_name`, as `bpf_object_open_opts`),
//! every program autoloaded (the loader's default; no corpus section has
//! the `?` prefix that turns it off), relocate against the kernel's BTF
//! (`TargetBtf`, the loader's `bpf_object__prepare` without the kernel),
//! then each entry program's final instructions, maps as
//! `BPF_PSEUDO_MAP_IDX(_VALUE)` with map indexes in `Object::maps` order.

use std::path::Path;

use userbpf_libbpf_compat::object::{Object, OpenOptions, TargetBtf};

use crate::compare::{OurObject, OurProgram};

/// What our loader relocates against: the kernel's BTF, parsed once.
pub struct Targets(TargetBtf);

/// `/sys/kernel/btf/vmlinux` (with module BTF from `/sys/kernel/btf`), or
/// the BTF file `btf_path` alone.
pub fn load_targets(btf_path: Option<&Path>) -> Result<Targets, String> {
    match btf_path {
        Some(path) => TargetBtf::from_file(path),
        None => TargetBtf::system(),
    }
    .map(Targets)
    .map_err(|e| format!("kernel BTF: {e}"))
}

/// Opens and relocates one object with our loader.
pub fn relocate(name: &str, bytes: &[u8], targets: &Targets) -> OurObject {
    let opts = OpenOptions {
        object_name: Some(name.to_string()),
        ..Default::default()
    };
    let mut obj = match Object::open(bytes, opts) {
        Ok(obj) => obj,
        Err(e) => return OurObject::Failed(format!("open: {e} (errno {})", e.errno())),
    };
    if let Err(e) = obj.relocate(&targets.0) {
        return OurObject::Failed(format!("relocate: {e} (errno {})", e.errno()));
    }
    OurObject::Relocated {
        maps: obj.maps().iter().map(|m| m.name().to_string()).collect(),
        programs: obj
            .programs()
            .map(|p| OurProgram {
                name: p.name().to_string(),
                insns: p.insns().map(<[_]>::to_vec).unwrap_or_default(),
            })
            .collect(),
        core_relos: obj.core_relo_count(),
    }
}
