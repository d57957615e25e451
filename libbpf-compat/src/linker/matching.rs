//! libbpf's checks that two definitions of one global symbol agree
//! (`glob_sym_btf_matches`, `glob_map_defs_match`), over BTF records.

use userbpf_btf_core::Btf;

use super::{kind, kind_name, vlen, LinkError};

const KIND_FWD: u32 = 7;

/// One side's types (index = type id) and strings.
pub(crate) struct Types<'a> {
    pub types: &'a [Vec<u32>],
    pub strs: Strings<'a>,
}

/// Where a side's strings are.
pub(crate) enum Strings<'a> {
    Raw(&'a [u8]),
    Btf(Option<&'a Btf>),
}

impl Types<'_> {
    fn str(&self, off: u32) -> String {
        let bytes: &[u8] = match &self.strs {
            Strings::Raw(data) => {
                let tail = data.get(off as usize..).unwrap_or_default();
                let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
                &tail[..end]
            }
            Strings::Btf(btf) => btf
                .and_then(|b| b.str_by_offset(off))
                .map_or(&[][..], |s| s.to_bytes()),
        };
        String::from_utf8_lossy(bytes).into_owned()
    }

    fn get(&self, id: u32) -> Option<&[u32]> {
        self.types
            .get(id as usize)
            .map(Vec::as_slice)
            .filter(|t| !t.is_empty())
    }

    /// `skip_mods_and_typedefs`: the id and record (None for void).
    fn skip_mods(&self, mut id: u32) -> (u32, Option<&[u32]>) {
        for _ in 0..64 {
            match self.get(id) {
                Some(t) if matches!(kind(t), 8..=11 | 18) => id = t[2],
                t => return (id, t),
            }
        }
        (id, None)
    }

    /// `btf__resolve_size`.
    pub(crate) fn resolve_size(&self, mut id: u32) -> Option<u32> {
        let mut nelems: u64 = 1;
        for _ in 0..64 {
            let t = self.get(id)?;
            match kind(t) {
                1 | 4 | 5 | 6 | 15 | 16 | 19 => {
                    return u32::try_from(nelems * u64::from(t[2])).ok()
                }
                2 => return u32::try_from(nelems * 8).ok(),
                3 => {
                    nelems *= u64::from(t[5]);
                    id = t[3];
                }
                8..=11 | 14 | 18 => id = t[2],
                _ => return None,
            }
        }
        None
    }
}

fn fail(msg: String) -> Result<(), LinkError> {
    Err(LinkError::inval(msg))
}

/// `glob_sym_btf_matches`.
pub(crate) fn btf_matches(
    sym: &str,
    mut exact: bool,
    b1: &Types,
    id1: u32,
    b2: &Types,
    id2: u32,
) -> Result<(), LinkError> {
    let (mut id1, mut id2) = (id1, id2);
    loop {
        let (_, t1) = b1.skip_mods(id1);
        let (_, t2) = b2.skip_mods(id2);
        let (t1, t2) = match (t1, t2) {
            (None, None) => return Ok(()),
            (Some(t1), Some(t2)) => (t1, t2),
            (t1, t2) => {
                let k = |t: Option<&[u32]>| t.map_or(0, kind);
                return fail(format!(
                    "global '{sym}': incompatible BTF kinds {} and {}",
                    kind_name(k(t1)),
                    kind_name(k(t2))
                ));
            }
        };
        let (k1, k2) = (kind(t1), kind(t2));
        let kflag = |t: &[u32]| t[1] >> 31 != 0;
        if !exact && (k1 == KIND_FWD) != (k2 == KIND_FWD) {
            let (n1, n2) = (b1.str(t1[0]), b2.str(t2[0]));
            if n1 != n2 {
                return fail(format!(
                    "global '{sym}': incompatible forward declaration names '{n1}' and '{n2}'"
                ));
            }
            let (fwd, other) = match k1 == KIND_FWD {
                true => (t1, t2),
                false => (t2, t1),
            };
            let union = kflag(fwd);
            if (union && kind(other) == 5) || (!union && kind(other) == 4) {
                return Ok(());
            }
            return fail(format!(
                "global '{sym}': incompatible {} forward declaration and concrete kind {}",
                if union { "union" } else { "struct" },
                kind_name(kind(other))
            ));
        }
        if k1 != k2 {
            return fail(format!(
                "global '{sym}': incompatible BTF kinds {} and {}",
                kind_name(k1),
                kind_name(k2)
            ));
        }
        let n1 = b1.str(t1[0]);
        if matches!(k1, 4..=7 | 12 | 14 | 19) {
            let n2 = b2.str(t2[0]);
            if n1 != n2 {
                return fail(format!(
                    "global '{sym}': incompatible {} names '{n1}' and '{n2}'",
                    kind_name(k1)
                ));
            }
        }
        match k1 {
            7 => return Ok(()),
            1 | 16 | 6 | 19 => {
                if t1[2] != t2[2] {
                    return fail(format!(
                        "global '{sym}': incompatible {} '{n1}' size {} and {}",
                        kind_name(k1),
                        t1[2],
                        t2[2]
                    ));
                }
                return Ok(());
            }
            2 => {
                exact = false;
                (id1, id2) = (t1[2], t2[2]);
            }
            3 => (id1, id2) = (t1[3], t2[3]),
            12 | 14 => {
                let static1 = if k1 == 12 { vlen(t1) == 0 } else { t1[3] == 0 };
                let static2 = if k1 == 12 { vlen(t2) == 0 } else { t2[3] == 0 };
                if static1 != static2 {
                    let what = if k1 == 12 { "func" } else { "var" };
                    return fail(format!(
                        "global '{sym}': incompatible {what} '{n1}' linkage"
                    ));
                }
                (id1, id2) = (t1[2], t2[2]);
            }
            4 | 5 => {
                if !exact {
                    return Ok(());
                }
                if vlen(t1) != vlen(t2) {
                    return fail(format!(
                        "global '{sym}': incompatible number of {} fields {} and {}",
                        kind_name(k1),
                        vlen(t1),
                        vlen(t2)
                    ));
                }
                for i in 0..vlen(t1) {
                    let (m1, m2) = (&t1[3 + 3 * i..6 + 3 * i], &t2[3 + 3 * i..6 + 3 * i]);
                    let (f1, f2) = (b1.str(m1[0]), b2.str(m2[0]));
                    if f1 != f2 {
                        return fail(format!(
                            "global '{sym}': incompatible field #{i} names '{f1}' and '{f2}'"
                        ));
                    }
                    if m1[2] != m2[2] {
                        return fail(format!(
                            "global '{sym}': incompatible field #{i} ('{f1}') offsets"
                        ));
                    }
                    btf_matches(sym, exact, b1, m1[1], b2, m2[1])?;
                }
                return Ok(());
            }
            13 => {
                if vlen(t1) != vlen(t2) {
                    return fail(format!(
                        "global '{sym}': incompatible number of {} params {} and {}",
                        kind_name(k1),
                        vlen(t1),
                        vlen(t2)
                    ));
                }
                for i in 0..vlen(t1) {
                    btf_matches(sym, exact, b1, t1[4 + 2 * i], b2, t2[4 + 2 * i])?;
                }
                (id1, id2) = (t1[2], t2[2]);
            }
            _ => {
                return fail(format!(
                    "global '{sym}': unsupported BTF kind {}",
                    kind_name(k1)
                ))
            }
        }
    }
}

/// The parts of a BTF map definition libbpf compares (`btf_map_def`).
#[derive(Default)]
struct MapDef {
    map_type: u32,
    key_size: u32,
    key_type: u32,
    value_size: u32,
    value_type: u32,
    max_entries: u32,
    map_flags: u32,
    numa_node: u32,
    pinning: u32,
    inner: bool,
}

/// libbpf's `get_map_field_int`: `__uint(name, N)` is `int (*name)[N]`.
fn map_int(t: &Types, id: u32) -> Option<u32> {
    let (_, p) = t.skip_mods(id);
    let p = p.filter(|p| kind(p) == 2)?;
    let (_, arr) = t.skip_mods(p[2]);
    arr.filter(|a| kind(a) == 3).map(|a| a[5])
}

/// A reduced `parse_btf_map_def`: the VAR `var_id`'s struct.
fn parse_map_def(t: &Types, var_id: u32) -> Option<MapDef> {
    let var = t.get(var_id).filter(|v| kind(v) == 14)?;
    let (_, def) = t.skip_mods(var[2]);
    let def = def.filter(|d| kind(d) == 4)?;
    let mut m = MapDef::default();
    for i in 0..vlen(def) {
        let (name, ty) = (t.str(def[3 + 3 * i]), def[4 + 3 * i]);
        match name.as_str() {
            "type" => m.map_type = map_int(t, ty)?,
            "max_entries" => m.max_entries = map_int(t, ty)?,
            "map_flags" => m.map_flags = map_int(t, ty)?,
            "numa_node" => m.numa_node = map_int(t, ty)?,
            "pinning" => m.pinning = map_int(t, ty)?,
            "key_size" => m.key_size = map_int(t, ty)?,
            "value_size" => m.value_size = map_int(t, ty)?,
            "key" | "value" => {
                let (_, p) = t.skip_mods(ty);
                let pointee = p.filter(|p| kind(p) == 2)?[2];
                let size = t.resolve_size(pointee)?;
                if name == "key" {
                    (m.key_type, m.key_size) = (pointee, size);
                } else {
                    (m.value_type, m.value_size) = (pointee, size);
                }
            }
            "values" => m.inner = true,
            _ => {}
        }
    }
    Some(m)
}

/// `glob_map_defs_match`: an extern map definition must equal the map's.
pub(crate) fn map_defs_match(
    sym: &str,
    dst: &Types,
    dst_id: u32,
    src: &Types,
    src_id: u32,
) -> Result<(), LinkError> {
    if src.get(src_id).map(kind) != Some(14) {
        return fail(format!(
            "global '{sym}': invalid map definition type [{src_id}]"
        ));
    }
    let Some(s) = parse_map_def(src, src_id) else {
        return fail(format!("global '{sym}': invalid map definition"));
    };
    let Some(d) = parse_map_def(dst, dst_id) else {
        return fail(format!("global '{sym}': invalid dst map definition"));
    };
    let mismatch = |reason: &str| fail(format!("global '{sym}': map {reason} mismatch"));
    if d.map_type != s.map_type {
        return mismatch("type");
    }
    if d.key_size != s.key_size {
        return mismatch("key_size");
    }
    if (d.key_type != 0) != (s.key_type != 0) {
        return mismatch("key type");
    }
    if d.key_type != 0 && btf_matches(sym, true, dst, d.key_type, src, s.key_type).is_err() {
        return mismatch("key type");
    }
    if d.value_size != s.value_size {
        return mismatch("value_size");
    }
    if (d.value_type != 0) != (s.value_type != 0) {
        return mismatch("value type");
    }
    if d.value_type != 0 && btf_matches(sym, true, dst, d.value_type, src, s.value_type).is_err() {
        // libbpf says "key type" here too
        return mismatch("key type");
    }
    if d.max_entries != s.max_entries {
        return mismatch("max_entries");
    }
    if d.map_flags != s.map_flags {
        return mismatch("map_flags");
    }
    if d.numa_node != s.numa_node {
        return mismatch("numa_node");
    }
    if d.pinning != s.pinning {
        return mismatch("pinning");
    }
    if d.inner != s.inner {
        return mismatch("inner map");
    }
    Ok(())
}
