//! [`BpfMap`] and BTF-defined maps: the variables of the `.maps` section,
//! whose BTF struct types encode the map's attributes (`__uint(type, ...)`,
//! `__type(key, ...)`, `__array(values, ...)`), as libbpf's
//! `bpf_object__init_user_btf_maps` and `parse_btf_map_def` read them; and
//! the `.rel.maps` relocations that pre-populate map-in-map and prog-array
//! slots (`bpf_object__collect_map_relos`).

use userbpf_btf_core::{Btf, BtfKind, TypeRef, TypeView, BTF_VAR_GLOBAL_ALLOCATED};

use crate::object::btf_util::{kind_str, linkage_str};
use crate::object::elf::{ElfFile, Rel, Section};
use crate::object::error::{
    ObjectError, EINVAL, ENOENT, ENOTSUP, EOPNOTSUPP, ESRCH, LIBBPF_ERRNO_FORMAT,
    LIBBPF_ERRNO_RELOC,
};
use crate::object::log::Logger;
use crate::object::program::BpfProgram;
use crate::object::types::MapType;

/// The default root for maps pinned by name.
pub const BPF_FS_DEFAULT_PATH: &str = "/sys/fs/bpf";

/// What created a map (libbpf's `enum libbpf_map_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MapKind {
    /// Declared in `.maps`.
    Btf,
    /// Global variables of `.data` or a `.data.*` section.
    Data,
    /// Zero-initialised globals of `.bss` or a `.bss.*` section.
    Bss,
    /// Constants of `.rodata` or a `.rodata.*` section.
    Rodata,
    /// `__kconfig` externs.
    Kconfig,
    /// A variable of `.struct_ops` / `.struct_ops.link`.
    StructOps,
}

/// `enum libbpf_pin_type`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Pinning {
    #[default]
    None,
    /// Pinned at `<pin_root_path>/<map name>`.
    ByName,
}

/// What a slot of a map-in-map or prog array is initialised with, from the
/// `values` array of its definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InitSlot {
    /// An index into [`crate::object::Object::maps`].
    Map(usize),
    /// An entry program, by name.
    Program(String),
}

/// `struct bpf_map_def` as libbpf keeps it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MapDef {
    pub map_type: MapType,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub map_flags: u32,
}

/// One map of an object (libbpf's `struct bpf_map`), before creation.
#[derive(Clone, Debug)]
pub struct BpfMap {
    pub(crate) name: String,
    /// The ELF section name for internal maps (`.rodata`), else the name.
    pub(crate) real_name: String,
    pub(crate) kind: MapKind,
    pub(crate) def: MapDef,
    pub(crate) map_extra: u64,
    pub(crate) numa_node: u32,
    pub(crate) btf_key_type_id: u32,
    pub(crate) btf_value_type_id: u32,
    pub(crate) pinning: Pinning,
    pub(crate) pin_path: Option<String>,
    pub(crate) inner: Option<Box<BpfMap>>,
    pub(crate) sec_idx: usize,
    pub(crate) sec_offset: u64,
    /// Index of the map's VAR in the `.maps` DATASEC.
    pub(crate) btf_var_idx: usize,
    /// Initial contents of internal maps (`mmaped` in libbpf).
    pub(crate) initial_data: Option<Vec<u8>>,
    pub(crate) init_slots: Vec<Option<InitSlot>>,
    pub(crate) autocreate: bool,
    /// The struct_ops value of a `.struct_ops` variable.
    pub(crate) struct_ops: Option<Box<crate::object::struct_ops::StructOps>>,
}

impl BpfMap {
    pub(crate) fn new(name: String, kind: MapKind, sec_idx: usize, sec_offset: u64) -> BpfMap {
        BpfMap {
            real_name: name.clone(),
            name,
            kind,
            def: MapDef::default(),
            map_extra: 0,
            numa_node: 0,
            btf_key_type_id: 0,
            btf_value_type_id: 0,
            pinning: Pinning::None,
            pin_path: None,
            inner: None,
            sec_idx,
            sec_offset,
            btf_var_idx: 0,
            initial_data: None,
            init_slots: Vec::new(),
            autocreate: true,
            struct_ops: None,
        }
    }

    /// `bpf_map__name`: the kernel name (`my_obje.rodata` for internal
    /// maps), except for custom `.data.*` / `.rodata.*` sections, which go
    /// by their full section name.
    pub fn name(&self) -> &str {
        if self.uses_real_name() {
            &self.real_name
        } else {
            &self.name
        }
    }

    /// The name the kernel gets (at most 15 bytes for internal maps).
    pub fn kernel_name(&self) -> &str {
        &self.name
    }

    /// The full name: the ELF section for internal maps (`.rodata.str1.1`).
    pub fn real_name(&self) -> &str {
        &self.real_name
    }

    /// libbpf's `map_uses_real_name`.
    pub(crate) fn uses_real_name(&self) -> bool {
        (self.kind == MapKind::Data && self.real_name != ".data")
            || (self.kind == MapKind::Rodata && self.real_name != ".rodata")
    }

    pub fn kind(&self) -> MapKind {
        self.kind
    }

    /// Global data or `.kconfig` (`bpf_map__is_internal`).
    pub fn is_internal(&self) -> bool {
        !matches!(self.kind, MapKind::Btf | MapKind::StructOps)
    }

    /// The struct_ops value of a struct_ops map (`map->st_ops`).
    pub fn struct_ops(&self) -> Option<&crate::object::struct_ops::StructOps> {
        self.struct_ops.as_deref()
    }

    pub fn def(&self) -> &MapDef {
        &self.def
    }

    pub fn map_type(&self) -> MapType {
        self.def.map_type
    }

    pub fn key_size(&self) -> u32 {
        self.def.key_size
    }

    pub fn value_size(&self) -> u32 {
        self.def.value_size
    }

    pub fn max_entries(&self) -> u32 {
        self.def.max_entries
    }

    pub fn map_flags(&self) -> u32 {
        self.def.map_flags
    }

    pub fn map_extra(&self) -> u64 {
        self.map_extra
    }

    pub fn numa_node(&self) -> u32 {
        self.numa_node
    }

    pub fn btf_key_type_id(&self) -> u32 {
        self.btf_key_type_id
    }

    pub fn btf_value_type_id(&self) -> u32 {
        self.btf_value_type_id
    }

    pub fn pinning(&self) -> Pinning {
        self.pinning
    }

    /// `<pin_root_path>/<name>` for maps pinned by name.
    pub fn pin_path(&self) -> Option<&str> {
        self.pin_path.as_deref()
    }

    /// The inner map definition of a map-in-map (named `<outer>.inner`).
    pub fn inner_map(&self) -> Option<&BpfMap> {
        self.inner.as_deref()
    }

    /// Initial contents of an internal map: the section's bytes (zeros for
    /// `.bss`; `.kconfig` values once relocated). `None` for `.maps` maps.
    pub fn initial_data(&self) -> Option<&[u8]> {
        self.initial_data.as_deref()
    }

    /// Writable initial contents (what a skeleton's `obj->rodata->x = ...`
    /// changes before load).
    pub fn initial_data_mut(&mut self) -> Option<&mut [u8]> {
        self.initial_data.as_deref_mut()
    }

    /// Slots of a map-in-map or prog array initialised by its definition's
    /// `values`; `None` entries stay empty.
    pub fn init_slots(&self) -> &[Option<InitSlot>] {
        &self.init_slots
    }

    pub fn autocreate(&self) -> bool {
        self.autocreate
    }

    /// `bpf_map__set_autocreate`: references to a map that will not be
    /// created are poisoned at the next relocation.
    pub fn set_autocreate(&mut self, autocreate: bool) {
        self.autocreate = autocreate;
    }

    pub(crate) fn is_map_in_map(&self) -> bool {
        is_map_in_map(self.def.map_type)
    }

    /// `bpf_map__set_max_entries` (before creation): ring buffers keep
    /// what they are given; the kernel checks the size at creation.
    pub fn set_max_entries(&mut self, max_entries: u32) {
        self.def.max_entries = max_entries;
    }

    /// `bpf_map__set_key_size`.
    pub fn set_key_size(&mut self, key_size: u32) {
        self.def.key_size = key_size;
    }

    /// `bpf_map__set_value_size`: for global data the initial image is
    /// resized too (zero-filled or truncated, as libbpf's remap).
    pub fn set_value_size(&mut self, value_size: u32) {
        self.def.value_size = value_size;
        if let Some(data) = self.initial_data.as_mut() {
            data.resize(value_size as usize, 0);
        }
    }

    /// `bpf_map__set_type`.
    pub fn set_map_type(&mut self, map_type: MapType) {
        self.def.map_type = map_type;
    }

    /// `bpf_map__set_map_flags`.
    pub fn set_map_flags(&mut self, flags: u32) {
        self.def.map_flags = flags;
    }

    /// `bpf_map__set_map_extra`.
    pub fn set_map_extra(&mut self, extra: u64) {
        self.map_extra = extra;
    }

    /// `bpf_map__set_numa_node`.
    pub fn set_numa_node(&mut self, node: u32) {
        self.numa_node = node;
    }

    /// `bpf_map__set_inner_map_fd`: the inner map template becomes `def`
    /// (the parameters of an existing map), replacing the declared one.
    pub fn set_inner_template(&mut self, def: MapDef) {
        let mut inner = BpfMap::new(format!("{}.inner", self.name), MapKind::Btf, 0, 0);
        inner.def = def;
        self.inner = Some(Box::new(inner));
    }

    /// `bpf_map__set_pin_path` (`None` unpins the definition).
    pub fn set_pin_path(&mut self, path: Option<String>) {
        self.pin_path = path;
    }
}

fn is_map_in_map(map_type: MapType) -> bool {
    map_type == MapType::ARRAY_OF_MAPS || map_type == MapType::HASH_OF_MAPS
}

/// `enum map_def_parts`: which attributes a definition gave.
const PART_MAP_TYPE: u32 = 0x001;
const PART_KEY_TYPE: u32 = 0x002;
const PART_KEY_SIZE: u32 = 0x004;
const PART_VALUE_TYPE: u32 = 0x008;
const PART_VALUE_SIZE: u32 = 0x010;
const PART_MAX_ENTRIES: u32 = 0x020;
const PART_MAP_FLAGS: u32 = 0x040;
const PART_NUMA_NODE: u32 = 0x080;
const PART_PINNING: u32 = 0x100;
const PART_INNER_MAP: u32 = 0x200;
const PART_MAP_EXTRA: u32 = 0x400;

/// `struct btf_map_def` while parsing: which parts were given, and values.
#[derive(Clone, Copy, Debug, Default)]
struct BtfMapDef {
    parts: u32,
    map_type: MapType,
    key_type_id: u32,
    key_size: u32,
    value_type_id: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    numa_node: u32,
    pinning: u32,
    map_extra: u64,
    has_inner: bool,
}

fn map_error(errno: i32, message: String) -> ObjectError {
    ObjectError::map(errno, message)
}

/// `get_map_field_int`: `int (*name)[N]` encodes N.
fn map_field_int(
    btf: &Btf,
    map_name: &str,
    field: &str,
    member_type: u32,
) -> Result<u32, ObjectError> {
    let invalid = |msg: String| map_error(EINVAL, msg);
    let Some(t) = btf.skip_mods_and_typedefs(member_type) else {
        return Err(invalid(format!(
            "map '{map_name}': attr '{field}': expected PTR, got unknown."
        )));
    };
    let TypeView::Ptr { target } = t.view() else {
        return Err(invalid(format!(
            "map '{map_name}': attr '{field}': expected PTR, got {}.",
            kind_str(&t)
        )));
    };
    let Some(arr) = btf.type_by_id(target) else {
        return Err(invalid(format!(
            "map '{map_name}': attr '{field}': type [{target}] not found."
        )));
    };
    match arr.view() {
        TypeView::Array(info) => Ok(info.nelems),
        _ => Err(invalid(format!(
            "map '{map_name}': attr '{field}': expected ARRAY, got {}.",
            kind_str(&arr)
        ))),
    }
}

/// `get_map_field_long`: a pointer-to-array int, or a one-value enum.
fn map_field_long(
    btf: &Btf,
    map_name: &str,
    field: &str,
    member_type: u32,
) -> Result<u64, ObjectError> {
    let t = btf.skip_mods_and_typedefs(member_type);
    match t.map(|t| t.view()) {
        Some(TypeView::Ptr { .. }) => {
            map_field_int(btf, map_name, field, member_type).map(u64::from)
        }
        Some(TypeView::Enum(e)) if e.values.len() == 1 => Ok(e.values[0].val as u32 as u64),
        Some(TypeView::Enum64(e)) if e.values.len() == 1 => Ok(e.values[0].value()),
        Some(TypeView::Enum(_)) | Some(TypeView::Enum64(_)) => Err(map_error(
            EINVAL,
            format!("map '{map_name}': attr '{field}': invalid __ulong"),
        )),
        _ => Err(map_error(
            EINVAL,
            format!(
                "map '{map_name}': attr '{field}': expected ENUM or ENUM64, got {}.",
                t.as_ref().map_or("unknown", kind_str)
            ),
        )),
    }
}

/// The size of what `__type(key, T)` points to.
fn pointee_size(
    btf: &Btf,
    map_name: &str,
    what: &str,
    member_type: u32,
) -> Result<(u32, u32), ObjectError> {
    let Some(t) = btf.type_by_id(member_type) else {
        return Err(map_error(
            EINVAL,
            format!("map '{map_name}': {what} type [{member_type}] not found."),
        ));
    };
    let TypeView::Ptr { target } = t.view() else {
        return Err(map_error(
            EINVAL,
            format!(
                "map '{map_name}': {what} spec is not PTR: {}.",
                kind_str(&t)
            ),
        ));
    };
    let size = btf.resolve_size(target).map_err(|e| {
        map_error(
            e.errno(),
            format!(
                "map '{map_name}': can't determine {what} size for type [{target}]: -{}.",
                e.errno()
            ),
        )
    })?;
    Ok((target, size))
}

/// `parse_btf_map_def`. `inner` is where a `values` inner map definition
/// goes; `None` while parsing that inner definition itself.
fn parse_btf_map_def(
    map_name: &str,
    btf: &Btf,
    def_t: &TypeRef<'_>,
    strict: bool,
    map_def: &mut BtfMapDef,
    mut inner: Option<&mut BtfMapDef>,
    log: &mut Logger,
) -> Result<(), ObjectError> {
    let is_inner = inner.is_none();
    let (TypeView::Struct(members) | TypeView::Union(members)) = def_t.view() else {
        return Err(map_error(
            EINVAL,
            format!("map '{map_name}': unexpected def kind."),
        ));
    };
    let vlen = members.len();
    for (i, m) in members.members().enumerate() {
        let Some(name) = btf.name_by_offset(m.name_off()) else {
            return Err(map_error(
                EINVAL,
                format!("map '{map_name}': invalid field #{i}."),
            ));
        };
        let mtype = m.type_id();
        match name {
            "type" => {
                map_def.map_type = MapType(map_field_int(btf, map_name, name, mtype)?);
                map_def.parts |= PART_MAP_TYPE;
            }
            "max_entries" => {
                map_def.max_entries = map_field_int(btf, map_name, name, mtype)?;
                map_def.parts |= PART_MAX_ENTRIES;
            }
            "map_flags" => {
                map_def.map_flags = map_field_int(btf, map_name, name, mtype)?;
                map_def.parts |= PART_MAP_FLAGS;
            }
            "numa_node" => {
                map_def.numa_node = map_field_int(btf, map_name, name, mtype)?;
                map_def.parts |= PART_NUMA_NODE;
            }
            "key_size" => {
                let sz = map_field_int(btf, map_name, name, mtype)?;
                set_size(&mut map_def.key_size, sz, map_name, "key")?;
                map_def.parts |= PART_KEY_SIZE;
            }
            "key" => {
                let (target, sz) = pointee_size(btf, map_name, "key", mtype)?;
                set_size(&mut map_def.key_size, sz, map_name, "key")?;
                map_def.key_type_id = target;
                map_def.parts |= PART_KEY_SIZE | PART_KEY_TYPE;
            }
            "value_size" => {
                let sz = map_field_int(btf, map_name, name, mtype)?;
                set_size(&mut map_def.value_size, sz, map_name, "value")?;
                map_def.parts |= PART_VALUE_SIZE;
            }
            "value" => {
                let (target, sz) = pointee_size(btf, map_name, "value", mtype)?;
                set_size(&mut map_def.value_size, sz, map_name, "value")?;
                map_def.value_type_id = target;
                map_def.parts |= PART_VALUE_SIZE | PART_VALUE_TYPE;
            }
            "values" => {
                let map_in_map = is_map_in_map(map_def.map_type);
                let prog_array = map_def.map_type == MapType::PROG_ARRAY;
                let desc = if map_in_map {
                    "map-in-map inner"
                } else {
                    "prog-array value"
                };
                if is_inner {
                    return Err(map_error(
                        ENOTSUP,
                        format!("map '{map_name}': multi-level inner maps not supported."),
                    ));
                }
                if i != vlen - 1 {
                    return Err(map_error(
                        EINVAL,
                        format!("map '{map_name}': '{name}' member should be last."),
                    ));
                }
                if !map_in_map && !prog_array {
                    return Err(map_error(
                        ENOTSUP,
                        format!("map '{map_name}': should be map-in-map or prog-array."),
                    ));
                }
                if map_def.value_size != 0 && map_def.value_size != 4 {
                    return Err(map_error(
                        EINVAL,
                        format!(
                            "map '{map_name}': conflicting value size {} != 4.",
                            map_def.value_size
                        ),
                    ));
                }
                map_def.value_size = 4;
                let Some(t) = btf.type_by_id(mtype) else {
                    return Err(map_error(
                        EINVAL,
                        format!("map '{map_name}': {desc} type [{mtype}] not found."),
                    ));
                };
                let elem = match t.view() {
                    TypeView::Array(a) if a.nelems == 0 => a.elem_type,
                    _ => {
                        return Err(map_error(
                            EINVAL,
                            format!("map '{map_name}': {desc} spec is not a zero-sized array."),
                        ))
                    }
                };
                let ptr = btf.skip_mods_and_typedefs(elem);
                let pointee = match ptr.as_ref().map(|t| t.view()) {
                    Some(TypeView::Ptr { target }) => target,
                    _ => {
                        return Err(map_error(
                            EINVAL,
                            format!(
                                "map '{map_name}': {desc} def is of unexpected kind {}.",
                                ptr.as_ref().map_or("unknown", kind_str)
                            ),
                        ))
                    }
                };
                let t = btf.skip_mods_and_typedefs(pointee);
                let kind = t.as_ref().map(|t| t.kind());
                if prog_array {
                    if kind != Some(BtfKind::FuncProto) {
                        return Err(map_error(
                            EINVAL,
                            format!(
                                "map '{map_name}': prog-array value def is of unexpected kind {}.",
                                t.as_ref().map_or("unknown", kind_str)
                            ),
                        ));
                    }
                    continue;
                }
                let Some(inner_t) = t.filter(|t| t.kind() == BtfKind::Struct) else {
                    return Err(map_error(
                        EINVAL,
                        format!(
                            "map '{map_name}': map-in-map inner def is of unexpected kind {}.",
                            t.as_ref().map_or("unknown", kind_str)
                        ),
                    ));
                };
                let inner_name = format!("{map_name}.inner");
                if let Some(inner_def) = inner.as_deref_mut() {
                    parse_btf_map_def(&inner_name, btf, &inner_t, strict, inner_def, None, log)?;
                }
                map_def.has_inner = true;
                map_def.parts |= PART_INNER_MAP;
            }
            "pinning" => {
                if is_inner {
                    return Err(map_error(
                        EINVAL,
                        format!("map '{map_name}': inner def can't be pinned."),
                    ));
                }
                let val = map_field_int(btf, map_name, name, mtype)?;
                if val > 1 {
                    return Err(map_error(
                        EINVAL,
                        format!("map '{map_name}': invalid pinning value {val}."),
                    ));
                }
                map_def.pinning = val;
                map_def.parts |= PART_PINNING;
            }
            "map_extra" => {
                map_def.map_extra = map_field_long(btf, map_name, name, mtype)?;
                map_def.parts |= PART_MAP_EXTRA;
            }
            _ => {
                if strict {
                    return Err(map_error(
                        ENOTSUP,
                        format!("map '{map_name}': unknown field '{name}'."),
                    ));
                }
                log.debug(format!(
                    "map '{map_name}': ignoring unknown field '{name}'."
                ));
            }
        }
    }
    if map_def.map_type == MapType::UNSPEC {
        return Err(map_error(
            EINVAL,
            format!("map '{map_name}': map type isn't specified."),
        ));
    }
    Ok(())
}

/// `adjust_ringbuf_sz`: ring buffers must be a power-of-two multiple of the
/// page size; round up like libbpf.
fn adjust_ringbuf_size(size: u32, page_size: u32) -> u32 {
    if size == 0 {
        return 0;
    }
    if size.is_multiple_of(page_size) && (size / page_size).is_power_of_two() {
        return size;
    }
    let mut mul: u32 = 1;
    while mul <= u32::MAX / page_size {
        if mul * page_size > size {
            return mul * page_size;
        }
        mul <<= 1;
    }
    size
}

pub(crate) fn page_size() -> u32 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u32::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
}

/// `fill_map_from_def`.
fn fill_map_from_def(map: &mut BpfMap, def: &BtfMapDef, log: &mut Logger) {
    map.def = MapDef {
        map_type: def.map_type,
        key_size: def.key_size,
        value_size: def.value_size,
        max_entries: def.max_entries,
        map_flags: def.map_flags,
    };
    map.map_extra = def.map_extra;
    map.numa_node = def.numa_node;
    map.btf_key_type_id = def.key_type_id;
    map.btf_value_type_id = def.value_type_id;
    if matches!(def.map_type, MapType::RINGBUF | MapType::USER_RINGBUF) {
        map.def.max_entries = adjust_ringbuf_size(map.def.max_entries, page_size());
    }
    let name = &map.name;
    let has = |part: u32| def.parts & part != 0;
    if has(PART_MAP_TYPE) {
        log.debug(format!("map '{name}': found type = {}.", def.map_type.0));
    }
    if has(PART_KEY_TYPE) {
        log.debug(format!(
            "map '{name}': found key [{}], sz = {}.",
            def.key_type_id, def.key_size
        ));
    } else if has(PART_KEY_SIZE) {
        log.debug(format!("map '{name}': found key_size = {}.", def.key_size));
    }
    if has(PART_VALUE_TYPE) {
        log.debug(format!(
            "map '{name}': found value [{}], sz = {}.",
            def.value_type_id, def.value_size
        ));
    } else if has(PART_VALUE_SIZE) {
        log.debug(format!(
            "map '{name}': found value_size = {}.",
            def.value_size
        ));
    }
    if has(PART_MAX_ENTRIES) {
        log.debug(format!(
            "map '{name}': found max_entries = {}.",
            def.max_entries
        ));
    }
    if has(PART_MAP_FLAGS) {
        log.debug(format!(
            "map '{name}': found map_flags = {:#x}.",
            def.map_flags
        ));
    }
    if has(PART_MAP_EXTRA) {
        log.debug(format!(
            "map '{name}': found map_extra = {:#x}.",
            def.map_extra
        ));
    }
    if has(PART_PINNING) {
        log.debug(format!("map '{name}': found pinning = {}.", def.pinning));
    }
    if has(PART_NUMA_NODE) {
        log.debug(format!(
            "map '{name}': found numa_node = {}.",
            def.numa_node
        ));
    }
    if has(PART_INNER_MAP) {
        log.debug(format!("map '{name}': found inner map definition."));
    }
}

/// `bpf_object__init_user_btf_maps`: one map per VAR of the `.maps`
/// DATASEC. Returns the DATASEC's type id.
pub(crate) fn init_user_btf_maps(
    btf: &Btf,
    maps_section: &Section<'_>,
    pin_root_path: &str,
    maps: &mut Vec<BpfMap>,
    log: &mut Logger,
) -> Result<u32, ObjectError> {
    let Some(data) = maps_section.data else {
        return Err(log.fail(map_error(
            EINVAL,
            "elf: failed to get .maps map definitions".to_string(),
        )));
    };
    let Some(sec_id) = btf
        .own_types()
        .find(|t| t.kind() == BtfKind::Datasec && t.name() == Some(".maps"))
        .map(|t| t.id())
    else {
        return Err(log.fail(map_error(ENOENT, "DATASEC '.maps' not found.".to_string())));
    };
    let Some(sec) = btf.type_by_id(sec_id) else {
        return Err(log.fail(map_error(ENOENT, "DATASEC '.maps' not found.".to_string())));
    };
    let TypeView::Datasec(datasec) = sec.view() else {
        return Err(log.fail(map_error(ENOENT, "DATASEC '.maps' not found.".to_string())));
    };
    for (var_idx, vi) in datasec.vars.iter().enumerate() {
        let var = btf.type_by_id(vi.type_id);
        let map_name = var.and_then(|v| v.name()).unwrap_or("");
        if map_name.is_empty() {
            return Err(log.fail(map_error(EINVAL, format!("map #{var_idx}: empty name."))));
        }
        if u64::from(vi.offset) + u64::from(vi.size) > data.len() as u64 {
            return Err(log.fail(map_error(
                EINVAL,
                format!("map '{map_name}' BTF data is corrupted."),
            )));
        }
        let Some(var) = var.filter(|v| v.kind() == BtfKind::Var) else {
            return Err(log.fail(map_error(
                EINVAL,
                format!(
                    "map '{map_name}': unexpected var kind {}.",
                    var.as_ref().map_or("unknown", kind_str)
                ),
            )));
        };
        let TypeView::Var { target, linkage } = var.view() else {
            return Err(log.fail(map_error(
                EINVAL,
                format!("map '{map_name}': unexpected var kind {}.", kind_str(&var)),
            )));
        };
        if linkage != BTF_VAR_GLOBAL_ALLOCATED {
            return Err(log.fail(map_error(
                EOPNOTSUPP,
                format!(
                    "map '{map_name}': unsupported map linkage {}.",
                    linkage_str(linkage)
                ),
            )));
        }
        let def_t = btf.skip_mods_and_typedefs(target);
        let Some(def_t) = def_t.filter(|t| t.kind() == BtfKind::Struct) else {
            return Err(log.fail(map_error(
                EINVAL,
                format!("map '{map_name}': unexpected def kind {}.", kind_str(&var)),
            )));
        };
        if def_t.size().unwrap_or(0) > vi.size {
            return Err(log.fail(map_error(
                EINVAL,
                format!("map '{map_name}': invalid def size."),
            )));
        }
        let mut map = BpfMap::new(
            map_name.to_string(),
            MapKind::Btf,
            maps_section.index,
            u64::from(vi.offset),
        );
        map.btf_var_idx = var_idx;
        log.debug(format!(
            "map '{map_name}': at sec_idx {}, offset {}.",
            maps_section.index, vi.offset
        ));
        let mut def = BtfMapDef::default();
        let mut inner_def = BtfMapDef::default();
        // libbpf opens with strict map parsing unless `relaxed_maps` is set.
        parse_btf_map_def(
            map_name,
            btf,
            &def_t,
            true,
            &mut def,
            Some(&mut inner_def),
            log,
        )
        .map_err(|e| log.fail(e))?;
        fill_map_from_def(&mut map, &def, log);
        if def.pinning == 1 {
            map.pinning = Pinning::ByName;
            map.pin_path = Some(format!("{pin_root_path}/{map_name}"));
        }
        if def.has_inner {
            let mut inner = BpfMap::new(
                format!("{map_name}.inner"),
                MapKind::Btf,
                maps_section.index,
                0,
            );
            fill_map_from_def(&mut inner, &inner_def, log);
            map.inner = Some(Box::new(inner));
        }
        maps.push(map);
    }
    Ok(sec_id)
}

/// What `.rel.maps` entries are resolved against.
pub(crate) struct MapRelocInputs<'a, 'e> {
    pub elf: &'a ElfFile<'e>,
    pub btf: &'a Btf,
    /// The `.maps` DATASEC.
    pub maps_sec_btf_id: u32,
    /// The `.maps` ELF section.
    pub maps_shndx: usize,
    pub programs: &'a [BpfProgram],
}

/// `bpf_object__collect_map_relos`: `.rel.maps` entries name the maps or
/// programs a map-in-map or prog array starts out holding.
pub(crate) fn collect_map_relos(
    inputs: &MapRelocInputs<'_, '_>,
    rels: &[Rel],
    maps: &mut [BpfMap],
    log: &mut Logger,
) -> Result<(), ObjectError> {
    let MapRelocInputs {
        elf: elf_file,
        btf,
        maps_sec_btf_id,
        maps_shndx,
        programs,
    } = *inputs;
    const BPF_PTR_SZ: u64 = 8;
    let vars = match btf.type_by_id(maps_sec_btf_id).map(|t| t.view()) {
        Some(TypeView::Datasec(d)) => d.vars,
        _ => return Err(log.fail(map_error(EINVAL, ".maps relo: no .maps DATASEC".into()))),
    };
    for (i, rel) in rels.iter().enumerate() {
        let Some(sym) = elf_file.symbol(rel.sym as usize) else {
            return Err(log.fail(map_error(
                LIBBPF_ERRNO_FORMAT,
                format!(".maps relo #{i}: symbol {:x} not found", rel.sym),
            )));
        };
        let name = sym.name.clone().unwrap_or_else(|| "<?>".to_string());
        log.debug(format!(
            ".maps relo #{i}: for {} value {} rel->r_offset {} name {} ('{name}')",
            rel.sym, sym.value, rel.offset, sym.name_off
        ));
        let found = maps.iter().position(|map| {
            map.sec_idx == maps_shndx
                && map.kind == MapKind::Btf
                && vars.get(map.btf_var_idx).is_some_and(|vi| {
                    u64::from(vi.offset) <= rel.offset
                        && rel.offset.saturating_add(BPF_PTR_SZ)
                            <= u64::from(vi.offset) + u64::from(vi.size)
                })
        });
        let Some(map_idx) = found else {
            return Err(log.fail(map_error(
                EINVAL,
                format!(
                    ".maps relo #{i}: cannot find map '{name}' at rel->r_offset {}",
                    rel.offset
                ),
            )));
        };
        let map = &maps[map_idx];
        let slot = if map.is_map_in_map() {
            if sym.shndx as usize != maps_shndx {
                return Err(log.fail(map_error(
                    LIBBPF_ERRNO_RELOC,
                    format!(".maps relo #{i}: '{name}' isn't a BTF-defined map"),
                )));
            }
            if map.def.map_type == MapType::HASH_OF_MAPS && map.def.key_size != 4 {
                return Err(log.fail(map_error(
                    EINVAL,
                    format!(
                        ".maps relo #{i}: hash-of-maps '{}' should have key size 4.",
                        map.name
                    ),
                )));
            }
            let Some(target) = maps.iter().position(|m| m.name == name) else {
                return Err(log.fail(map_error(
                    ESRCH,
                    format!(".maps relo #{i}: '{name}' isn't a valid map reference"),
                )));
            };
            InitSlot::Map(target)
        } else if map.def.map_type == MapType::PROG_ARRAY {
            let Some(prog) = programs.iter().find(|p| !p.is_subprog && p.name == name) else {
                return Err(log.fail(map_error(
                    ESRCH,
                    format!(".maps relo #{i}: '{name}' isn't a valid program reference"),
                )));
            };
            if prog.sec_idx != sym.shndx as usize
                || prog.sec_insn_off as u64 * 8 != sym.value
                || prog.is_subprog
            {
                return Err(log.fail(map_error(
                    LIBBPF_ERRNO_RELOC,
                    format!(".maps relo #{i}: '{name}' isn't an entry-point program"),
                )));
            }
            InitSlot::Program(name.clone())
        } else {
            return Err(log.fail(map_error(
                EINVAL,
                format!(
                    ".maps relo #{i}: map '{}' is neither map-in-map nor prog array",
                    map.name
                ),
            )));
        };
        let invalid = || map_error(EINVAL, format!(".maps relo #{i}: bad 'values' slot offset"));
        let Some(vi) = vars.get(map.btf_var_idx) else {
            return Err(log.fail(invalid()));
        };
        let def = btf
            .type_by_id(vi.type_id)
            .and_then(|var| var.referenced_type())
            .and_then(|t| btf.skip_mods_and_typedefs(t));
        let members = match def.as_ref().map(|d| d.view()) {
            Some(TypeView::Struct(m)) if !m.is_empty() => m,
            _ => return Err(log.fail(invalid())),
        };
        let Some(last) = members.member(members.len() - 1) else {
            return Err(log.fail(invalid()));
        };
        if btf.name_by_offset(last.name_off()) != Some("values") {
            return Err(log.fail(invalid()));
        }
        let moff = u64::from(last.bit_offset() / 8);
        let rel_off = rel.offset - u64::from(vi.offset);
        if rel_off < moff || (rel_off - moff) % BPF_PTR_SZ != 0 {
            return Err(log.fail(invalid()));
        }
        let slot_idx = ((rel_off - moff) / BPF_PTR_SZ) as usize;
        let what = match &slot {
            InitSlot::Map(_) => "map",
            InitSlot::Program(_) => "prog",
        };
        let map = &mut maps[map_idx];
        if slot_idx >= map.init_slots.len() {
            map.init_slots.resize(slot_idx + 1, None);
        }
        map.init_slots[slot_idx] = Some(slot);
        log.debug(format!(
            ".maps relo #{i}: map '{}' slot [{slot_idx}] points to {what} '{name}'",
            map.name
        ));
    }
    Ok(())
}

/// Sets a key or value size, refusing a second, different one (a map may
/// give both `key_size` and `key`).
fn set_size(slot: &mut u32, sz: u32, map_name: &str, what: &str) -> Result<(), ObjectError> {
    if *slot != 0 && *slot != sz {
        return Err(map_error(
            EINVAL,
            format!(
                "map '{map_name}': conflicting {what} size {} != {sz}.",
                *slot
            ),
        ));
    }
    *slot = sz;
    Ok(())
}
