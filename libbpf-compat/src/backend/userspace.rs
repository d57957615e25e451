//! The userspace backend: `bpf_object__load` without the kernel.
//!
//! Maps become shared-memory maps ([`userbpf_runtime::maps::Map`]), each a
//! memfd whose fd is the map's fd. Programs become [`ProgramImage`]s (kept
//! in a sealed memfd, the program's fd) and are instantiated in this
//! process on the JIT (or the engine `USERBPF_ENGINE` names).
//!
//! The process-local tables map fds back to objects by file identity
//! (`fstat`), so an fd works whatever number it has, after `dup`, or when
//! it came from another process.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, OnceLock};

use thiserror::Error;
use userbpf_runtime::helpers::HelperRegistry;
use userbpf_runtime::ids::{next_id, IdKind};
use userbpf_runtime::image::{ImageError, LoadedProgram, ProgramImage};
use userbpf_runtime::maps::{flags, map_type, InnerSpec, Map, MapError, MapSpec};
use userbpf_runtime::registry::{self, Registration};
use userbpf_runtime::shm::FileId;
use userbpf_runtime::tailcall::TailTarget;
use userbpf_runtime::vm::{Engine, VmOptions};

use crate::backend::placement::{Placement, Side};
use crate::object::{BpfMap, InitSlot, MapKind, MapType, Object};

#[derive(Debug, Error)]
pub enum BackendError {
    #[error("map '{name}': {source}")]
    Map {
        name: String,
        #[source]
        source: MapError,
    },
    #[error("program '{name}': {source}")]
    Program {
        name: String,
        #[source]
        source: ImageError,
    },
    #[error("program '{name}' was not relocated")]
    NotRelocated { name: String },
    #[error("map '{map}': failed to initialize slot [{slot}] to prog '{prog}' fd={fd}: {}", crate::errstr::errstr(*errno))]
    Slot {
        map: String,
        slot: usize,
        prog: String,
        fd: i32,
        errno: i32,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl BackendError {
    pub fn errno(&self) -> i32 {
        match self {
            BackendError::Map { source, .. } => source.errno(),
            BackendError::Program { source, .. } => source.errno(),
            BackendError::NotRelocated { .. } => libc::EINVAL,
            BackendError::Slot { errno, .. } => *errno,
            BackendError::Io(e) => e.raw_os_error().unwrap_or(libc::EIO),
        }
    }
}

/// Every helper the userspace backend serves.
pub fn helpers() -> &'static HelperRegistry {
    static HELPERS: OnceLock<HelperRegistry> = OnceLock::new();
    HELPERS.get_or_init(|| {
        install_resolvers();
        let mut reg = HelperRegistry::new();
        userbpf_runtime::helpers::register_tracing_helpers(&mut reg);
        userbpf_runtime::maps::helpers::register_map_helpers(&mut reg);
        userbpf_runtime::maps::special_helpers::register_special_map_helpers(&mut reg);
        reg
    })
}

/// The engine loaded programs run on: the JIT unless `USERBPF_ENGINE`
/// says otherwise.
pub fn vm_options() -> VmOptions {
    let engine = match Engine::Default.resolve() {
        Ok(Engine::Interpreter) if std::env::var_os(userbpf_runtime::vm::ENGINE_ENV).is_some() => {
            Engine::Interpreter
        }
        _ => Engine::Jit,
    };
    VmOptions::with_engine(engine)
}

/// What `BPF_MAP_CREATE` gets for an object's map (`obj` gives the BTF
/// the kernel would read the spin lock's place from).
pub fn map_spec(obj: &Object, m: &BpfMap) -> MapSpec {
    let mut max_entries = m.max_entries();
    if m.map_type() == MapType::PERF_EVENT_ARRAY && max_entries == 0 {
        max_entries = userbpf_runtime::cpu::possible_cpus();
    }
    let mut map_flags = m.map_flags();
    if matches!(m.kind(), MapKind::Rodata | MapKind::Kconfig) {
        map_flags |= flags::BPF_F_RDONLY_PROG;
    }
    MapSpec {
        map_type: m.map_type().0,
        key_size: m.key_size(),
        value_size: m.value_size(),
        max_entries,
        map_flags,
        map_extra: m.map_extra(),
        name: m.kernel_name().to_string(),
        btf_key_type_id: m.btf_key_type_id(),
        btf_value_type_id: m.btf_value_type_id(),
        inner: m.inner_map().map(|i| InnerSpec {
            map_type: i.map_type().0,
            key_size: i.key_size(),
            value_size: i.value_size(),
            max_entries: i.max_entries(),
            map_flags: i.map_flags(),
        }),
        spin_lock_off: obj.value_spin_lock_offset(m),
    }
}

/// Creates one map of an object, with its initial data (global data
/// sections; `.rodata` and `.kconfig` are frozen afterwards, as libbpf
/// does).
pub fn create_map(obj: &Object, m: &BpfMap) -> Result<Arc<Map>, BackendError> {
    let err = |source| BackendError::Map {
        name: m.name().to_string(),
        source,
    };
    let spec = map_spec(obj, m);
    let map = Map::create(&spec, next_id(IdKind::Map)).map_err(err)?;
    if let Some(data) = m.initial_data() {
        let mut value = vec![0u8; spec.value_size as usize];
        let n = data.len().min(value.len());
        value[..n].copy_from_slice(&data[..n]);
        map.update(&0u32.to_ne_bytes(), &value, flags::BPF_ANY)
            .map_err(err)?;
        if matches!(m.kind(), MapKind::Rodata | MapKind::Kconfig) {
            map.freeze().map_err(err)?;
        }
    }
    Ok(map)
}

/// The map user-space programs use for kernel map `km` (object map `m`):
/// a proxy ([`userbpf_runtime::maps::kernel_proxy`]), published in the
/// registry like any map so that target processes find it.
pub fn kernel_map_proxy(
    obj: &Object,
    m: &BpfMap,
    km: &crate::backend::kernel::KernelMap,
) -> Result<Arc<Map>, BackendError> {
    let mut spec = map_spec(obj, m);
    spec.map_flags = km.map_flags;
    spec.max_entries = km.max_entries;
    Map::create_kernel_proxy(&spec, next_id(IdKind::Map), km.fd.as_fd()).map_err(|source| {
        BackendError::Map {
            name: m.name().to_string(),
            source,
        }
    })
}

/// A program loaded in this process.
pub struct UserspaceProgram {
    pub id: u32,
    pub image: ProgramImage,
    pub loaded: LoadedProgram,
    /// The program file; its fd is the program's fd.
    pub fd: OwnedFd,
    pub file_id: FileId,
    /// Its record in this process's registry (`None` when the namespace
    /// directory is unusable: the program still works here).
    pub registration: Option<Registration>,
}

impl std::fmt::Debug for UserspaceProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserspaceProgram")
            .field("id", &self.id)
            .field("name", &self.image.name)
            .finish()
    }
}

/// Lets maps of this process find maps and programs of other loaders
/// (map-in-map slots, program arrays) through the registry.
pub fn install_resolvers() {
    userbpf_runtime::maps::set_foreign_resolver(registry::open_foreign_map);
    userbpf_runtime::maps::prog_array::set_prog_resolver(tail_target_by_fd, tail_target_by_id);
    userbpf_runtime::maps::stack_trace::set_stack_walker(
        userbpf_runtime::helpers::stack::stack_walker,
    );
}

/// A program-array slot update names a program by fd: EBADF for a closed
/// fd, EINVAL for anything but a program of this process (as the kernel's
/// `bpf_prog_get`).
fn tail_target_by_fd(fd: i32) -> Result<(u32, TailTarget, u32), i32> {
    if fd < 0 {
        return Err(libc::EBADF);
    }
    // SAFETY: only borrowed for the fstat in FileId::of / program_by_fd.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    FileId::of(fd).map_err(|e| e.raw_os_error().unwrap_or(libc::EBADF))?;
    program_by_fd(fd)
        .map(|p| (p.id, p.loaded.vm().tail_target(), p.image.prog_type))
        .ok_or(libc::EINVAL)
}

/// Other processes' program arrays name programs by id.
fn tail_target_by_id(id: u32) -> Option<TailTarget> {
    program_by_id(id).map(|p| p.loaded.vm().tail_target())
}

/// Loads `image` into this process and gives it a program file.
pub fn load_program(
    image: ProgramImage,
    maps: Vec<Option<Arc<Map>>>,
) -> Result<Arc<UserspaceProgram>, BackendError> {
    let name = image.name.clone();
    let loaded = image
        .instantiate(maps, helpers(), vm_options())
        .map_err(|source| BackendError::Program { name, source })?;
    let fd = userbpf_runtime::image::file::create(&image)?;
    let (file_id, _) = FileId::of(fd.as_fd())?;
    let id = next_id(IdKind::Prog);
    let registration =
        registry::publish_prog(id, fd.as_raw_fd(), image.prog_type, &image.name).ok();
    let prog = Arc::new(UserspaceProgram {
        id,
        image,
        loaded,
        fd,
        file_id,
        registration,
    });
    programs()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(file_id, prog.clone());
    Ok(prog)
}

/// The maps and programs of one loaded object, by the object's indices.
#[derive(Debug, Default)]
pub struct LoadedObject {
    pub maps: Vec<Option<Arc<Map>>>,
    pub programs: Vec<Option<Arc<UserspaceProgram>>>,
    /// The maps' records in this process's registry, removed on drop.
    pub map_registrations: Vec<Registration>,
}

/// `bpf_object__load` on the userspace backend, after relocation: creates
/// the maps libbpf would create, fills map-in-map slots, loads every
/// autoload program, then fills program-array slots.
pub fn load_object(obj: &Object) -> Result<LoadedObject, BackendError> {
    load_object_reusing(obj, &[])
}

/// [`load_object`] where `reused[i]`, when set, is an existing map that map
/// `i` becomes instead of a new one (`bpf_map__reuse_fd`).
pub fn load_object_reusing(
    obj: &Object,
    reused: &[Option<Arc<Map>>],
) -> Result<LoadedObject, BackendError> {
    load_object_placed(obj, reused, &Placement::all(obj, Side::User))
}

/// [`load_object_reusing`] for the user side of `place`: maps and
/// programs placed in the kernel are left out, except that `reused[i]`
/// set for a kernel map is the map userspace programs use for it (a
/// proxy of the kernel map).
pub fn load_object_placed(
    obj: &Object,
    reused: &[Option<Arc<Map>>],
    place: &Placement,
) -> Result<LoadedObject, BackendError> {
    install_resolvers();
    let mut maps: Vec<Option<Arc<Map>>> = Vec::with_capacity(obj.maps().len());
    for (i, m) in obj.maps().iter().enumerate() {
        let user = place.maps.get(i) != Some(&Side::Kernel);
        maps.push(match reused.get(i).cloned().flatten() {
            Some(existing) => Some(existing),
            None if m.autocreate() && user => Some(create_map(obj, m)?),
            None => None,
        });
    }
    for (m, created) in obj.maps().iter().zip(&maps) {
        let Some(outer) = created else { continue };
        for (slot, init) in m.init_slots().iter().enumerate() {
            if let Some(InitSlot::Map(idx)) = init {
                if let Some(Some(inner)) = maps.get(*idx) {
                    let fd = inner.raw_fd() as u32;
                    outer
                        .update(
                            &(slot as u32).to_ne_bytes(),
                            &fd.to_ne_bytes(),
                            flags::BPF_ANY,
                        )
                        .map_err(|source| BackendError::Map {
                            name: m.name().to_string(),
                            source,
                        })?;
                }
            }
        }
    }
    let map_ids: Vec<u32> = maps
        .iter()
        .map(|m| m.as_ref().map_or(0, |m| m.id()))
        .collect();
    let mut programs = Vec::new();
    for (i, p) in obj.programs().enumerate() {
        if !p.autoload() || place.programs.get(i) == Some(&Side::Kernel) {
            programs.push(None);
            continue;
        }
        let relocated = p.relocated().ok_or_else(|| BackendError::NotRelocated {
            name: p.name().to_string(),
        })?;
        let image = ProgramImage {
            name: p.name().to_string(),
            prog_type: p.prog_type().0,
            expected_attach_type: p.expected_attach_type().0,
            insns: relocated.insns.clone(),
            map_ids: map_ids.clone(),
        };
        programs.push(Some(load_program(image, maps.clone())?));
    }
    for (m, created) in obj.maps().iter().zip(&maps) {
        let Some(array) = created else { continue };
        if array.map_type() != map_type::PROG_ARRAY {
            continue;
        }
        for (slot, init) in m.init_slots().iter().enumerate() {
            let Some(InitSlot::Program(name)) = init else {
                continue;
            };
            let prog = obj
                .programs()
                .position(|p| p.name() == name)
                .and_then(|i| programs.get(i).cloned().flatten());
            // libbpf's `init_prog_array_slots`: a program that was not
            // loaded has fd -ENOENT, which the update refuses (EBADF).
            let Some(prog) = prog else {
                return Err(BackendError::Slot {
                    map: m.name().to_string(),
                    slot,
                    prog: name.clone(),
                    fd: -libc::ENOENT,
                    errno: libc::EBADF,
                });
            };
            let fd = prog.fd.as_raw_fd() as u32;
            array
                .update(
                    &(slot as u32).to_ne_bytes(),
                    &fd.to_ne_bytes(),
                    flags::BPF_ANY,
                )
                .map_err(|source| BackendError::Map {
                    name: m.name().to_string(),
                    source,
                })?;
        }
    }
    let map_registrations = maps
        .iter()
        .flatten()
        .filter_map(|m| registry::publish_map(m).ok())
        .collect();
    Ok(LoadedObject {
        maps,
        programs,
        map_registrations,
    })
}

impl Drop for LoadedObject {
    /// `bpf_object__close`: the object's programs leave the fd table (and
    /// with them the last references to its maps).
    fn drop(&mut self) {
        let mut table = programs().lock().unwrap_or_else(|e| e.into_inner());
        for p in self.programs.iter().flatten() {
            table.remove(&p.file_id);
        }
    }
}

/// Programs loaded in this process, by the identity of their file. Those of
/// an object leave with it; those of `bpf_prog_load` stay for the life of
/// the process: C callers own the fds and never tell us when they close
/// them (a feature probe's program is a few hundred bytes).
fn programs() -> &'static Mutex<HashMap<FileId, Arc<UserspaceProgram>>> {
    static PROGRAMS: OnceLock<Mutex<HashMap<FileId, Arc<UserspaceProgram>>>> = OnceLock::new();
    PROGRAMS.get_or_init(Default::default)
}

/// The program behind `fd`, if it is one this process loaded.
pub fn program_by_fd(fd: BorrowedFd<'_>) -> Option<Arc<UserspaceProgram>> {
    let (id, _) = FileId::of(fd).ok()?;
    programs()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&id)
        .cloned()
}

/// The program with namespace id `id`, if this process loaded it.
pub fn program_by_id(id: u32) -> Option<Arc<UserspaceProgram>> {
    programs()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .find(|p| p.id == id)
        .cloned()
}

/// The map behind `fd` (a userbpf map file), mapped in this process.
pub fn map_by_fd(fd: BorrowedFd<'_>) -> Result<Arc<Map>, MapError> {
    Map::open(fd)
}

/// Every program loaded in this process (for id enumeration).
pub fn loaded_programs() -> Vec<Arc<UserspaceProgram>> {
    programs()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .cloned()
        .collect()
}

/// Makes a program another process loaded runnable in this one, under its
/// own id and program file (`fd`, reached through a pin or the registry):
/// `image` is what `fd` holds, `maps` its maps by index, mapped here. If
/// this process has the program already, that one is returned.
pub fn adopt_program(
    fd: OwnedFd,
    id: u32,
    image: ProgramImage,
    maps: Vec<Option<Arc<Map>>>,
) -> Result<Arc<UserspaceProgram>, BackendError> {
    let (file_id, _) = FileId::of(fd.as_fd())?;
    if let Some(p) = programs()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&file_id)
    {
        return Ok(p.clone());
    }
    let name = image.name.clone();
    let loaded = image
        .instantiate(maps, helpers(), vm_options())
        .map_err(|source| BackendError::Program { name, source })?;
    // The loader that made it has published it in the registry.
    let prog = Arc::new(UserspaceProgram {
        id,
        image,
        loaded,
        fd,
        file_id,
        registration: None,
    });
    Ok(programs()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(file_id)
        .or_insert(prog)
        .clone())
}
