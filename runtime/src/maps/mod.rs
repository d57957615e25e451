//! eBPF maps in shared memory.
//!
//! A map is one memfd (see [`crate::shm`]): the type's data area starts at
//! offset 0, so `mmap(map_fd, 0)` gives what the kernel's mmap gives (array
//! values for `BPF_F_MMAPABLE` arrays, the consumer/producer pages and data
//! of a ring buffer), and the last page holds the [`MapHeader`]: magic,
//! layout version, the map's parameters and a type-specific state area.
//! Any process that holds the fd, or reaches it through
//! `/proc/<pid>/fd/<n>`, maps it with [`Map::open`] and gets the same map.
//!
//! Two faces, as in the kernel:
//! - the syscall side ([`Map::lookup`], [`Map::update`], ...) copies keys
//!   and values, with per-CPU values as `possible_cpus` slots of
//!   `round_up(value_size, 8)` bytes, and reports errors as [`MapError`]
//!   (each with its errno);
//! - the program side ([`MapOps::prog_lookup`], ...) is what helpers call:
//!   raw pointers in, pointers into shared memory out, negative errno.
//!
//! Programs see a map as the address of its process-local [`Map`]; helpers
//! turn that address back with [`Map::from_prog_addr`].

use std::any::Any;
use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use thiserror::Error;

use crate::shm::{FileId, ShmFile, PAGE_SIZE};

pub mod array;
pub mod bloom;
pub mod cgroup_array;
pub mod hash;
pub mod helpers;
pub mod kernel_proxy;
pub mod lpm_trie;
pub mod map_in_map;
pub mod perf_event_array;
pub mod prog_array;
pub mod queue_stack;
pub mod ringbuf;
pub mod special_helpers;
pub mod stack_trace;
pub mod user_ringbuf;

/// `enum bpf_map_type` values served in user space.
pub mod map_type {
    pub const HASH: u32 = 1;
    pub const ARRAY: u32 = 2;
    pub const PROG_ARRAY: u32 = 3;
    pub const PERF_EVENT_ARRAY: u32 = 4;
    pub const PERCPU_HASH: u32 = 5;
    pub const PERCPU_ARRAY: u32 = 6;
    pub const STACK_TRACE: u32 = 7;
    pub const CGROUP_ARRAY: u32 = 8;
    pub const LRU_HASH: u32 = 9;
    pub const LRU_PERCPU_HASH: u32 = 10;
    pub const LPM_TRIE: u32 = 11;
    pub const ARRAY_OF_MAPS: u32 = 12;
    pub const HASH_OF_MAPS: u32 = 13;
    pub const QUEUE: u32 = 22;
    pub const STACK: u32 = 23;
    pub const RINGBUF: u32 = 27;
    pub const BLOOM_FILTER: u32 = 30;
    pub const USER_RINGBUF: u32 = 31;
}

/// Update flags (`BPF_ANY`, ...) and map flags, as in `linux/bpf.h`.
/// The data size of an fd array (prog, perf event, cgroup arrays): 4-byte
/// keys and values (the fds), `slot` bytes per entry; besides NUMA and
/// access flags only `extra_flags` are accepted, as in the kernel's
/// `fd_array_map_alloc_check`.
pub(crate) fn fd_array_data_size(
    spec: &MapSpec,
    slot: usize,
    extra_flags: u32,
) -> Result<usize, MapError> {
    use flags::*;
    if spec.key_size != 4 || spec.value_size != 4 {
        return Err(MapError::Invalid(
            "fd array: key_size and value_size must be 4",
        ));
    }
    let allowed = BPF_F_NUMA_NODE | BPF_F_RDONLY | BPF_F_WRONLY | extra_flags;
    if spec.map_flags & !allowed != 0 {
        return Err(MapError::Invalid("fd array: unsupported map flags"));
    }
    (spec.max_entries as usize)
        .checked_mul(slot)
        .ok_or(MapError::Full)
}

pub mod flags {
    pub const BPF_ANY: u64 = 0;
    pub const BPF_NOEXIST: u64 = 1;
    pub const BPF_EXIST: u64 = 2;
    pub const BPF_F_LOCK: u64 = 4;

    pub const BPF_F_NO_PREALLOC: u32 = 1 << 0;
    pub const BPF_F_NO_COMMON_LRU: u32 = 1 << 1;
    pub const BPF_F_NUMA_NODE: u32 = 1 << 2;
    pub const BPF_F_RDONLY: u32 = 1 << 3;
    pub const BPF_F_WRONLY: u32 = 1 << 4;
    pub const BPF_F_ZERO_SEED: u32 = 1 << 6;
    pub const BPF_F_RDONLY_PROG: u32 = 1 << 7;
    pub const BPF_F_WRONLY_PROG: u32 = 1 << 8;
    pub const BPF_F_MMAPABLE: u32 = 1 << 10;
    pub const BPF_F_INNER_MAP: u32 = 1 << 12;
}

/// What a map is: the parameters of `BPF_MAP_CREATE`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapSpec {
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub map_flags: u32,
    pub map_extra: u64,
    /// Up to 15 bytes are kept, as in the kernel.
    pub name: String,
    pub btf_key_type_id: u32,
    pub btf_value_type_id: u32,
    /// For ARRAY_OF_MAPS / HASH_OF_MAPS: what inner maps must look like.
    pub inner: Option<InnerSpec>,
    /// Offset of a `struct bpf_spin_lock` in the value (what the kernel
    /// learns from the value's BTF), for `BPF_F_LOCK` on HASH and ARRAY.
    /// 4-byte aligned, inside the value. The lock word has the layout of
    /// [`crate::shm::ShmLock`] (0 = free, else the holder's thread id), so
    /// `bpf_spin_lock` in programs and `BPF_F_LOCK` copies exclude each
    /// other across processes.
    pub spin_lock_off: Option<u32>,
}

/// The template an inner map of a map-in-map must match.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InnerSpec {
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub map_flags: u32,
}

/// Errors of map operations, each with the errno the kernel gives.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MapError {
    #[error("no such element")]
    NotFound,
    #[error("element exists")]
    Exists,
    #[error("map is full")]
    Full,
    #[error("invalid argument: {0}")]
    Invalid(&'static str),
    #[error("operation not supported by this map type")]
    NotSupported,
    #[error("map is frozen or read-only")]
    ReadOnly,
    #[error("bad address")]
    Fault,
    #[error("out of memory")]
    NoMemory,
    #[error("device or resource busy")]
    Busy,
    #[error("not a userbpf map, or a map of an incompatible layout")]
    NotAMap,
    #[error("i/o error: {0}")]
    Io(i32),
    #[error("bad file descriptor")]
    BadFd,
}

impl MapError {
    /// The positive errno of this error.
    pub fn errno(&self) -> i32 {
        match self {
            MapError::NotFound => libc::ENOENT,
            MapError::Exists => libc::EEXIST,
            MapError::Full => libc::E2BIG,
            MapError::Invalid(_) => libc::EINVAL,
            MapError::NotSupported => libc::ENOTSUPP_USERSPACE,
            MapError::ReadOnly => libc::EPERM,
            MapError::Fault => libc::EFAULT,
            MapError::NoMemory => libc::ENOMEM,
            MapError::Busy => libc::EBUSY,
            MapError::NotAMap => libc::EINVAL,
            MapError::Io(e) => *e,
            MapError::BadFd => libc::EBADF,
        }
    }

    /// The helper-style return value: `-errno`.
    pub fn to_helper_ret(&self) -> i64 {
        -(self.errno() as i64)
    }
}

impl From<std::io::Error> for MapError {
    fn from(e: std::io::Error) -> MapError {
        MapError::Io(e.raw_os_error().unwrap_or(libc::EIO))
    }
}

/// libc lacks ENOTSUPP (524, kernel-internal), which the kernel returns for
/// unsupported map operations; EOPNOTSUPP is what user space usually sees.
mod libc {
    pub use ::libc::*;
    pub const ENOTSUPP_USERSPACE: i32 = ::libc::EOPNOTSUPP;
}

/// "UBPFMAP\0"
pub const MAP_MAGIC: u64 = u64::from_le_bytes(*b"UBPFMAP\0");
/// Bumped whenever a layout in this module changes incompatibly.
pub const MAP_LAYOUT_VERSION: u32 = 1;
/// Bytes of type-specific state in the header page.
pub const MAP_AUX_SIZE: usize = 2048;

/// The header, in the last page of every map file. All fields but `frozen`
/// and the aux area are written once at creation, before the fd is shared.
#[repr(C)]
pub struct MapHeader {
    pub magic: u64,
    pub version: u32,
    pub header_size: u32,
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub map_flags: u32,
    /// Width of per-CPU values (possible CPUs of the creator).
    pub nr_cpus: u32,
    pub map_extra: u64,
    pub name: [u8; 16],
    /// Namespace-wide map id (as the kernel's map ids).
    pub id: u32,
    /// 1 after `BPF_MAP_FREEZE`: the syscall side may no longer write.
    pub frozen: AtomicU32,
    pub btf_key_type_id: u32,
    pub btf_value_type_id: u32,
    pub inner: InnerSpec,
    pub creator_pid: u32,
    /// Bytes of the data area at offset 0 (page-aligned).
    pub data_size: u64,
    /// `MapSpec::spin_lock_off + 1`; 0 when the value has no spin lock.
    pub spin_lock_off_plus1: u32,
    _pad: u32,
    /// Non-zero for a proxy of a kernel map ([`kernel_proxy`]): the kernel's
    /// id of the map, and the process and fd that hold it.
    pub kernel_map_id: u32,
    pub kernel_owner_pid: u32,
    pub kernel_owner_fd: i32,
    _pad2: u32,
    _reserved: [u64; 13],
    /// Type-specific state: locks, counters, free lists.
    pub aux: [u64; MAP_AUX_SIZE / 8],
}

const _: () = assert!(std::mem::size_of::<MapHeader>() <= PAGE_SIZE);

/// A map's memory as one type sees it.
pub struct MapMem {
    file: ShmFile,
}

impl MapMem {
    /// Start of the data area (offset 0 of the file).
    pub fn data(&self) -> *mut u8 {
        self.file.base()
    }

    pub fn data_size(&self) -> usize {
        self.header().data_size as usize
    }

    pub fn header(&self) -> &MapHeader {
        // SAFETY: see `header_ptr`; shared fields are atomics.
        unsafe { &*self.header_ptr() }
    }

    /// The header: the last page of the file, which every map file has
    /// (`create` makes it, `from_file` checks the length).
    pub fn header_ptr(&self) -> *mut MapHeader {
        // SAFETY: the file is at least one page long; the offset stays inside.
        unsafe { self.file.base().add(self.file.len() - PAGE_SIZE) as *mut MapHeader }
    }

    /// The type-specific state area, 8-byte aligned, `MAP_AUX_SIZE` bytes.
    pub fn aux(&self) -> *mut u8 {
        self.header().aux.as_ptr() as *mut u8
    }

    pub fn file(&self) -> &ShmFile {
        &self.file
    }
}

/// What every map type implements. The syscall-side methods take copies;
/// the program-side ones take raw pointers from a program (already checked
/// by the engine or helper to be readable for key/value size).
pub trait MapOps: Send + Sync + Any {
    /// Copies the value of `key` into `value` (per-CPU: all CPUs).
    fn lookup(&self, key: &[u8], value: &mut [u8], flags: u64) -> Result<(), MapError>;
    fn update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<(), MapError>;
    fn delete(&self, key: &[u8]) -> Result<(), MapError>;
    /// The key after `key` (`None` or a missing key: the first key).
    fn next_key(&self, key: Option<&[u8]>, next: &mut [u8]) -> Result<(), MapError>;
    fn lookup_and_delete(
        &self,
        _key: &[u8],
        _value: &mut [u8],
        _flags: u64,
    ) -> Result<(), MapError> {
        Err(MapError::NotSupported)
    }

    /// `bpf_map_lookup_elem` from a program: a pointer to the value (this
    /// CPU's slot for per-CPU maps), or null. The defaults of the three
    /// element operations refuse, as the kernel does for types programs
    /// reach only through their own helpers (program and perf event
    /// arrays, stacks, queues...).
    ///
    /// # Safety
    /// `key` points at `key_size` readable bytes.
    unsafe fn prog_lookup(&self, _key: *const u8) -> *mut u8 {
        std::ptr::null_mut()
    }
    /// # Safety
    /// `key` and `value` point at key_size / value_size readable bytes.
    unsafe fn prog_update(&self, _key: *const u8, _value: *const u8, _flags: u64) -> i64 {
        -i64::from(libc::EINVAL)
    }
    /// # Safety
    /// `key` points at `key_size` readable bytes.
    unsafe fn prog_delete(&self, _key: *const u8) -> i64 {
        -i64::from(libc::EINVAL)
    }

    /// `bpf_map_lookup_percpu_elem`: the value of `key` on `cpu` (per-CPU
    /// maps only; null for others and for `cpu >= possible_cpus`).
    ///
    /// # Safety
    /// `key` points at `key_size` readable bytes.
    unsafe fn prog_lookup_percpu(&self, _key: *const u8, _cpu: u32) -> *mut u8 {
        std::ptr::null_mut()
    }

    /// Bytes a program may access behind a pointer `prog_lookup` returned.
    fn prog_value_size(&self) -> u32 {
        0
    }

    /// A program-side lookup that is plain arithmetic, if this type has
    /// one (it must then give exactly what `prog_lookup` gives).
    fn fast_lookup(&self) -> FastLookup {
        FastLookup::None
    }

    fn as_any(&self) -> &dyn Any;
}

/// A program-side lookup without a call into the map type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FastLookup {
    /// Call [`MapOps::prog_lookup`].
    None,
    /// Arrays: the value of 4-byte key `i < max_entries` on CPU `c` is at
    /// `base + c * cpu_block + i * stride` (`c` = [`crate::cpu::current_cpu`]
    /// when `percpu`, else 0). `base` is an address of this process.
    Array {
        base: usize,
        stride: usize,
        max_entries: u32,
        cpu_block: usize,
        percpu: bool,
    },
}

impl FastLookup {
    /// The lookup, if this is a fast one: `Some(pointer or null)`.
    ///
    /// # Safety
    /// `key` points at the map's key_size readable bytes.
    #[inline(always)]
    pub unsafe fn lookup(self, key: *const u8) -> Option<*mut u8> {
        match self {
            FastLookup::None => None,
            FastLookup::Array {
                base,
                stride,
                max_entries,
                cpu_block,
                percpu,
            } => {
                // SAFETY: array keys are 4 bytes, readable per the caller.
                let index = unsafe { std::ptr::read_unaligned(key as *const u32) };
                if index >= max_entries {
                    return Some(std::ptr::null_mut());
                }
                let cpu = if percpu {
                    crate::cpu::current_cpu() as usize
                } else {
                    0
                };
                Some((base + cpu * cpu_block + index as usize * stride) as *mut u8)
            }
        }
    }
}

/// Finds other maps and programs by id, for map-in-map, program arrays and
/// perf event arrays. The process-local table answers first; embedders
/// (the loader's registry, the agent) install a fallback that opens maps of
/// other processes.
pub type ForeignMapResolver = fn(u32) -> Option<Arc<Map>>;

static FOREIGN_RESOLVER: OnceLock<ForeignMapResolver> = OnceLock::new();

/// Installs the fallback resolver (first call wins).
pub fn set_foreign_resolver(resolver: ForeignMapResolver) {
    let _ = FOREIGN_RESOLVER.set(resolver);
}

/// One map, mapped into this process.
pub struct Map {
    spec: MapSpec,
    id: u32,
    ops: Box<dyn MapOps>,
    /// What `bpf_map_lookup_elem` may compute without calling into `ops`.
    fast: FastLookup,
    file_id: FileId,
    // Keeps the memory alive for `ops`, which holds raw pointers into it.
    mem: Arc<MapMem>,
}

impl std::fmt::Debug for Map {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Map")
            .field("id", &self.id)
            .field("spec", &self.spec)
            .finish()
    }
}

#[derive(Default)]
struct Table {
    by_file: HashMap<FileId, Weak<Map>>,
    by_id: HashMap<u32, Weak<Map>>,
    /// By program address ([`Map::prog_addr`]), for checked engines.
    by_addr: HashMap<u64, Weak<Map>>,
}

fn table() -> &'static Mutex<Table> {
    static TABLE: OnceLock<Mutex<Table>> = OnceLock::new();
    TABLE.get_or_init(Default::default)
}

/// Bytes of a per-CPU value buffer on the syscall side.
pub fn percpu_value_size(value_size: u32) -> usize {
    round_up8(value_size as usize) * crate::cpu::possible_cpus() as usize
}

pub fn round_up8(n: usize) -> usize {
    (n + 7) & !7
}

pub fn is_percpu(map_type: u32) -> bool {
    matches!(
        map_type,
        map_type::PERCPU_ARRAY | map_type::PERCPU_HASH | map_type::LRU_PERCPU_HASH
    )
}

impl Map {
    /// Creates a new map with namespace-wide id `id`.
    pub fn create(spec: &MapSpec, id: u32) -> Result<Arc<Map>, MapError> {
        validate_common(spec)?;
        let data_size = data_size(spec)?;
        let data_size = crate::shm::page_align(data_size).ok_or(MapError::Full)?;
        let total = data_size.checked_add(PAGE_SIZE).ok_or(MapError::Full)?;
        // Map memory is touched lazily (a memfd is sparse), so an absurd
        // size would not fail here but kill the process later, when the
        // pages are touched: refuse what the machine could never hold, as
        // the kernel's allocation would fail.
        if total as u64 > memory_limit() {
            return Err(MapError::NoMemory);
        }
        let file = ShmFile::create(&spec.name, total).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOMEM) | Some(libc::ENOSPC) => MapError::NoMemory,
            Some(libc::E2BIG) | Some(libc::EFBIG) => MapError::Full,
            _ => MapError::from(e),
        })?;
        // SAFETY: the header page is the last page of the fresh, zeroed,
        // exclusively owned mapping.
        let header = unsafe { &mut *(file.base().add(total - PAGE_SIZE) as *mut MapHeader) };
        header.version = MAP_LAYOUT_VERSION;
        header.header_size = std::mem::size_of::<MapHeader>() as u32;
        header.map_type = spec.map_type;
        header.key_size = spec.key_size;
        header.value_size = spec.value_size;
        header.max_entries = spec.max_entries;
        header.map_flags = spec.map_flags;
        header.nr_cpus = crate::cpu::possible_cpus();
        header.map_extra = spec.map_extra;
        let name = spec.name.as_bytes();
        let n = name.len().min(15);
        header.name[..n].copy_from_slice(&name[..n]);
        header.id = id;
        header.btf_key_type_id = spec.btf_key_type_id;
        header.btf_value_type_id = spec.btf_value_type_id;
        header.inner = spec.inner.unwrap_or_default();
        header.creator_pid = std::process::id();
        header.data_size = data_size as u64;
        header.spin_lock_off_plus1 = spec.spin_lock_off.map_or(0, |o| o + 1);
        let mem = Arc::new(MapMem { file });
        init(spec, &mem)?;
        // Published last: a reader that sees the magic sees an initialized map.
        std::sync::atomic::fence(Ordering::Release);
        // SAFETY: the header of the fresh mapping; no other process has the
        // fd yet, so nothing reads `magic` concurrently.
        unsafe { std::ptr::write_volatile(&raw mut (*mem.header_ptr()).magic, MAP_MAGIC) };
        Self::finish(mem, spec.clone(), id)
    }

    /// A proxy of the kernel map `kernel_fd` (see [`kernel_proxy`]): a map
    /// file with no data of its own whose operations go to the kernel.
    /// `kernel_fd` must stay open in this process as long as other
    /// processes may open the proxy (they fetch it with `pidfd_getfd`).
    pub fn create_kernel_proxy(
        spec: &MapSpec,
        id: u32,
        kernel_fd: BorrowedFd<'_>,
    ) -> Result<Arc<Map>, MapError> {
        use std::os::fd::AsRawFd;
        let kernel_id = kernel_proxy::kernel_map_id(kernel_fd.as_raw_fd()).map_err(MapError::Io)?;
        let file = ShmFile::create(&spec.name, PAGE_SIZE)?;
        // SAFETY: the only page of the fresh, zeroed, exclusively owned
        // mapping is the header.
        let header = unsafe { &mut *(file.base() as *mut MapHeader) };
        header.version = MAP_LAYOUT_VERSION;
        header.header_size = std::mem::size_of::<MapHeader>() as u32;
        header.map_type = spec.map_type;
        header.key_size = spec.key_size;
        header.value_size = spec.value_size;
        header.max_entries = spec.max_entries;
        header.map_flags = spec.map_flags;
        header.nr_cpus = crate::cpu::possible_cpus();
        header.map_extra = spec.map_extra;
        let name = spec.name.as_bytes();
        let n = name.len().min(15);
        header.name[..n].copy_from_slice(&name[..n]);
        header.id = id;
        header.btf_key_type_id = spec.btf_key_type_id;
        header.btf_value_type_id = spec.btf_value_type_id;
        header.inner = spec.inner.unwrap_or_default();
        header.creator_pid = std::process::id();
        header.data_size = 0;
        header.kernel_map_id = kernel_id;
        header.kernel_owner_pid = std::process::id();
        header.kernel_owner_fd = kernel_fd.as_raw_fd();
        let mem = Arc::new(MapMem { file });
        std::sync::atomic::fence(Ordering::Release);
        // SAFETY: as in `create`: nobody else has the file yet.
        unsafe { std::ptr::write_volatile(&raw mut (*mem.header_ptr()).magic, MAP_MAGIC) };
        Self::finish(mem, spec.clone(), id)
    }

    /// Whether this map stands for a kernel map ([`kernel_proxy`]).
    pub fn is_kernel_proxy(&self) -> bool {
        self.mem.header().kernel_map_id != 0
    }

    /// Where an ARRAY's values start in this process, for direct value
    /// access (`BPF_PSEUDO_MAP_VALUE`): `None` for a kernel proxy that is
    /// not mapped.
    pub fn value_base(&self) -> Option<*mut u8> {
        if self.is_kernel_proxy() {
            return match self.fast {
                FastLookup::Array {
                    base,
                    percpu: false,
                    ..
                } => Some(base as *mut u8),
                _ => None,
            };
        }
        Some(self.mem.data())
    }

    /// The map behind `fd`: the one already mapped in this process, or a
    /// new mapping of it. Fails with [`MapError::NotAMap`] for anything
    /// that is not a userbpf map file of this layout version.
    pub fn open(fd: BorrowedFd<'_>) -> Result<Arc<Map>, MapError> {
        let (file_id, _) = FileId::of(fd)?;
        if let Some(map) = table()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_file
            .get(&file_id)
            .and_then(Weak::upgrade)
        {
            return Ok(map);
        }
        let file = ShmFile::open(fd.try_clone_to_owned()?).map_err(|_| MapError::NotAMap)?;
        Self::from_file(file)
    }

    /// Maps the map file at `path` (for example `/proc/<pid>/fd/<n>`).
    pub fn open_path(path: &std::path::Path) -> Result<Arc<Map>, MapError> {
        let file = ShmFile::open_path(path)?;
        if let Some(map) = table()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_file
            .get(&file.id())
            .and_then(Weak::upgrade)
        {
            return Ok(map);
        }
        Self::from_file(file)
    }

    fn from_file(file: ShmFile) -> Result<Arc<Map>, MapError> {
        if file.len() < PAGE_SIZE {
            return Err(MapError::NotAMap);
        }
        let mem = Arc::new(MapMem { file });
        let h = mem.header();
        std::sync::atomic::fence(Ordering::Acquire);
        if h.magic != MAP_MAGIC
            || h.version != MAP_LAYOUT_VERSION
            || h.header_size as usize != std::mem::size_of::<MapHeader>()
            || h.data_size as usize + PAGE_SIZE != mem.file.len()
        {
            return Err(MapError::NotAMap);
        }
        let name_len = h.name.iter().position(|&b| b == 0).unwrap_or(16);
        let spec = MapSpec {
            map_type: h.map_type,
            key_size: h.key_size,
            value_size: h.value_size,
            max_entries: h.max_entries,
            map_flags: h.map_flags,
            map_extra: h.map_extra,
            name: String::from_utf8_lossy(&h.name[..name_len]).into_owned(),
            btf_key_type_id: h.btf_key_type_id,
            btf_value_type_id: h.btf_value_type_id,
            inner: matches!(h.map_type, map_type::ARRAY_OF_MAPS | map_type::HASH_OF_MAPS)
                .then_some(h.inner),
            spin_lock_off: h.spin_lock_off_plus1.checked_sub(1),
        };
        if h.nr_cpus != crate::cpu::possible_cpus() && is_percpu(h.map_type) {
            return Err(MapError::NotAMap);
        }
        let id = h.id;
        Self::finish(mem, spec, id)
    }

    fn finish(mem: Arc<MapMem>, spec: MapSpec, id: u32) -> Result<Arc<Map>, MapError> {
        let ops = open_ops(&spec, mem.clone())?;
        let map = Arc::new(Map {
            file_id: mem.file.id(),
            spec,
            id,
            fast: ops.fast_lookup(),
            ops,
            mem,
        });
        let mut t = table().lock().unwrap_or_else(|e| e.into_inner());
        t.by_file.retain(|_, w| w.strong_count() > 0);
        t.by_id.retain(|_, w| w.strong_count() > 0);
        t.by_addr.retain(|_, w| w.strong_count() > 0);
        t.by_file.insert(map.file_id, Arc::downgrade(&map));
        t.by_id.insert(id, Arc::downgrade(&map));
        t.by_addr.insert(map.prog_addr(), Arc::downgrade(&map));
        Ok(map)
    }

    /// A map of this process by id, else through the foreign resolver.
    pub fn by_id(id: u32) -> Option<Arc<Map>> {
        let local = table()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_id
            .get(&id)
            .and_then(Weak::upgrade);
        local.or_else(|| FOREIGN_RESOLVER.get().and_then(|r| r(id)))
    }

    pub fn spec(&self) -> &MapSpec {
        &self.spec
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn map_type(&self) -> u32 {
        self.spec.map_type
    }

    pub fn file_id(&self) -> FileId {
        self.file_id
    }

    /// The map file's fd (owned by the map; `dup` it to hand it out).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.mem.file.fd()
    }

    pub fn raw_fd(&self) -> i32 {
        self.mem.file.fd().as_raw_fd()
    }

    /// A new fd naming this map.
    pub fn dup_fd(&self) -> Result<OwnedFd, MapError> {
        Ok(self.mem.file.dup_fd()?)
    }

    pub fn mem(&self) -> &MapMem {
        &self.mem
    }

    pub fn ops(&self) -> &dyn MapOps {
        &*self.ops
    }

    /// How a program-side lookup of this map can be computed inline (by
    /// the lookup helper, or a JIT that inlines `bpf_map_lookup_elem` for
    /// a constant map).
    #[inline(always)]
    pub fn fast_lookup(&self) -> FastLookup {
        self.fast
    }

    /// The type's implementation, for type-specific operations.
    pub fn downcast<T: MapOps>(&self) -> Option<&T> {
        self.ops.as_any().downcast_ref::<T>()
    }

    /// Size of a value buffer on the syscall side.
    pub fn syscall_value_size(&self) -> usize {
        if is_percpu(self.spec.map_type) {
            percpu_value_size(self.spec.value_size)
        } else {
            self.spec.value_size as usize
        }
    }

    pub fn is_frozen(&self) -> bool {
        self.mem.header().frozen.load(Ordering::Acquire) != 0
    }

    /// `BPF_MAP_FREEZE`: the syscall side may not write any more.
    pub fn freeze(&self) -> Result<(), MapError> {
        if self
            .mem
            .header()
            .frozen
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(MapError::Busy);
        }
        Ok(())
    }

    fn check_sizes(&self, key: usize, value: Option<usize>) -> Result<(), MapError> {
        if key != self.spec.key_size as usize {
            return Err(MapError::Invalid("key size"));
        }
        if let Some(v) = value {
            if v < self.syscall_value_size() {
                return Err(MapError::Invalid("value size"));
            }
        }
        Ok(())
    }

    pub fn lookup(&self, key: &[u8], value: &mut [u8], flags: u64) -> Result<(), MapError> {
        if self.spec.map_flags & flags::BPF_F_WRONLY != 0 {
            return Err(MapError::ReadOnly);
        }
        self.check_sizes(key.len(), Some(value.len()))?;
        self.ops.lookup(key, value, flags)
    }

    pub fn update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<(), MapError> {
        if self.is_frozen() || self.spec.map_flags & flags::BPF_F_RDONLY != 0 {
            return Err(MapError::ReadOnly);
        }
        self.check_sizes(key.len(), Some(value.len()))?;
        self.ops.update(key, value, flags)
    }

    pub fn delete(&self, key: &[u8]) -> Result<(), MapError> {
        if self.is_frozen() || self.spec.map_flags & flags::BPF_F_RDONLY != 0 {
            return Err(MapError::ReadOnly);
        }
        self.check_sizes(key.len(), None)?;
        self.ops.delete(key)
    }

    pub fn next_key(&self, key: Option<&[u8]>, next: &mut [u8]) -> Result<(), MapError> {
        if let Some(k) = key {
            self.check_sizes(k.len(), None)?;
        }
        if next.len() < self.spec.key_size as usize {
            return Err(MapError::Invalid("key size"));
        }
        self.ops.next_key(key, next)
    }

    pub fn lookup_and_delete(
        &self,
        key: &[u8],
        value: &mut [u8],
        flags: u64,
    ) -> Result<(), MapError> {
        if self.is_frozen() || self.spec.map_flags & flags::BPF_F_RDONLY != 0 {
            return Err(MapError::ReadOnly);
        }
        self.check_sizes(key.len(), Some(value.len()))?;
        self.ops.lookup_and_delete(key, value, flags)
    }

    /// The address programs use for this map (what `lddw rX, map` loads).
    pub fn prog_addr(self: &Arc<Self>) -> u64 {
        Arc::as_ptr(self) as u64
    }

    /// The map at a program-side address.
    ///
    /// # Safety
    /// `addr` came from [`Map::prog_addr`] of a map that is still alive
    /// (the loaded program holds an `Arc` to every map it references).
    pub unsafe fn from_prog_addr<'a>(addr: u64) -> &'a Map {
        // SAFETY: guaranteed by the caller.
        unsafe { &*(addr as *const Map) }
    }

    /// The live map of this process at a program-side address, if any: what
    /// checked engines use instead of [`Map::from_prog_addr`], so that a
    /// hostile program cannot make a helper dereference a forged pointer.
    pub fn upgrade_prog_addr(addr: u64) -> Option<Arc<Map>> {
        table()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_addr
            .get(&addr)
            .and_then(Weak::upgrade)
    }
}

impl AsFd for Map {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd()
    }
}

/// Bytes of RAM plus swap: no map may be larger.
fn memory_limit() -> u64 {
    static LIMIT: OnceLock<u64> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        // SAFETY: an all-zero sysinfo is a valid out-buffer.
        let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid out-pointer.
        if unsafe { libc::sysinfo(&mut info) } != 0 {
            return u64::MAX;
        }
        let unit = u64::from(info.mem_unit.max(1));
        (info.totalram as u64)
            .saturating_add(info.totalswap as u64)
            .saturating_mul(unit)
    })
}

fn validate_common(spec: &MapSpec) -> Result<(), MapError> {
    use map_type::*;
    let known = [
        HASH,
        ARRAY,
        PROG_ARRAY,
        PERF_EVENT_ARRAY,
        PERCPU_HASH,
        PERCPU_ARRAY,
        STACK_TRACE,
        CGROUP_ARRAY,
        LRU_HASH,
        LRU_PERCPU_HASH,
        LPM_TRIE,
        ARRAY_OF_MAPS,
        HASH_OF_MAPS,
        QUEUE,
        STACK,
        RINGBUF,
        BLOOM_FILTER,
        USER_RINGBUF,
    ];
    if !known.contains(&spec.map_type) {
        return Err(MapError::NotSupported);
    }
    if spec.max_entries == 0 {
        return Err(MapError::Invalid("max_entries is 0"));
    }
    check_spin_lock(spec)?;
    Ok(())
}

/// Where a value may hold a `bpf_spin_lock`: HASH and ARRAY values (as
/// the kernel; local storages aside), 4-byte aligned, inside the value.
pub(crate) fn check_spin_lock(spec: &MapSpec) -> Result<(), MapError> {
    if let Some(off) = spec.spin_lock_off {
        if !matches!(spec.map_type, map_type::HASH | map_type::ARRAY) {
            return Err(MapError::NotSupported);
        }
        if off % 4 != 0 || off.checked_add(4).is_none_or(|end| end > spec.value_size) {
            return Err(MapError::Invalid("spin lock offset"));
        }
    }
    Ok(())
}

/// Bytes of the type's data area.
fn data_size(spec: &MapSpec) -> Result<usize, MapError> {
    use map_type::*;
    match spec.map_type {
        ARRAY | PERCPU_ARRAY => array::data_size(spec),
        HASH | PERCPU_HASH | LRU_HASH | LRU_PERCPU_HASH => hash::data_size(spec),
        ARRAY_OF_MAPS | HASH_OF_MAPS => map_in_map::data_size(spec),
        PROG_ARRAY => prog_array::data_size(spec),
        PERF_EVENT_ARRAY => perf_event_array::data_size(spec),
        CGROUP_ARRAY => cgroup_array::data_size(spec),
        STACK_TRACE => stack_trace::data_size(spec),
        LPM_TRIE => lpm_trie::data_size(spec),
        QUEUE | STACK => queue_stack::data_size(spec),
        RINGBUF => ringbuf::data_size(spec),
        BLOOM_FILTER => bloom::data_size(spec),
        USER_RINGBUF => user_ringbuf::data_size(spec),
        _ => Err(MapError::NotSupported),
    }
}

/// Initializes a freshly created (zero-filled) map.
fn init(spec: &MapSpec, mem: &MapMem) -> Result<(), MapError> {
    use map_type::*;
    match spec.map_type {
        ARRAY | PERCPU_ARRAY => array::init(spec, mem),
        HASH | PERCPU_HASH | LRU_HASH | LRU_PERCPU_HASH => hash::init(spec, mem),
        ARRAY_OF_MAPS | HASH_OF_MAPS => map_in_map::init(spec, mem),
        PROG_ARRAY => prog_array::init(spec, mem),
        PERF_EVENT_ARRAY => perf_event_array::init(spec, mem),
        CGROUP_ARRAY => cgroup_array::init(spec, mem),
        STACK_TRACE => stack_trace::init(spec, mem),
        LPM_TRIE => lpm_trie::init(spec, mem),
        QUEUE | STACK => queue_stack::init(spec, mem),
        RINGBUF => ringbuf::init(spec, mem),
        BLOOM_FILTER => bloom::init(spec, mem),
        USER_RINGBUF => user_ringbuf::init(spec, mem),
        _ => Err(MapError::NotSupported),
    }
}

/// The type's operations over a mapped map (new or opened).
fn open_ops(spec: &MapSpec, mem: Arc<MapMem>) -> Result<Box<dyn MapOps>, MapError> {
    use map_type::*;
    if mem.header().kernel_map_id != 0 {
        return kernel_proxy::open(spec, &mem);
    }
    match spec.map_type {
        ARRAY | PERCPU_ARRAY => array::open(spec, mem),
        HASH | PERCPU_HASH | LRU_HASH | LRU_PERCPU_HASH => hash::open(spec, mem),
        ARRAY_OF_MAPS | HASH_OF_MAPS => map_in_map::open(spec, mem),
        PROG_ARRAY => prog_array::open(spec, mem),
        PERF_EVENT_ARRAY => perf_event_array::open(spec, mem),
        CGROUP_ARRAY => cgroup_array::open(spec, mem),
        STACK_TRACE => stack_trace::open(spec, mem),
        LPM_TRIE => lpm_trie::open(spec, mem),
        QUEUE | STACK => queue_stack::open(spec, mem),
        RINGBUF => ringbuf::open(spec, mem),
        BLOOM_FILTER => bloom::open(spec, mem),
        USER_RINGBUF => user_ringbuf::open(spec, mem),
        _ => Err(MapError::NotSupported),
    }
}

/// `bpf_map_flags_access_ok`: not both read-only and write-only, on either
/// side.
pub(crate) fn flags_access_ok(map_flags: u32) -> bool {
    let sys = flags::BPF_F_RDONLY | flags::BPF_F_WRONLY;
    let prog = flags::BPF_F_RDONLY_PROG | flags::BPF_F_WRONLY_PROG;
    map_flags & sys != sys && map_flags & prog != prog
}

/// The `struct bpf_spin_lock` of a value (a [`ShmLock`] word).
///
/// # Safety
/// `value + off` is a 4-byte aligned word of a mapped map value.
pub(crate) unsafe fn value_lock<'a>(value: *mut u8, off: u32) -> &'a crate::shm::ShmLock {
    // SAFETY: guaranteed by the caller; ShmLock is one repr(C) AtomicU32.
    unsafe { &*(value.add(off as usize) as *const crate::shm::ShmLock) }
}

/// Copies a value into a map, leaving its spin lock word (if any) alone,
/// as the kernel's `copy_map_value` skips special fields.
///
/// # Safety
/// `dst` and `src` are valid for `len` bytes and do not overlap.
pub(crate) unsafe fn copy_value_in(dst: *mut u8, src: *const u8, len: usize, lock: Option<u32>) {
    // SAFETY: guaranteed by the caller; the lock word lies inside the value
    // (checked at creation).
    unsafe {
        match lock {
            None => std::ptr::copy_nonoverlapping(src, dst, len),
            Some(off) => {
                let off = off as usize;
                std::ptr::copy_nonoverlapping(src, dst, off);
                std::ptr::copy_nonoverlapping(src.add(off + 4), dst.add(off + 4), len - off - 4);
            }
        }
    }
}

/// Copies a value out of a map, with its spin lock word (if any) zeroed,
/// as the kernel's `check_and_init_map_value` leaves it for user space.
///
/// # Safety
/// `dst` and `src` are valid for `len` bytes and do not overlap.
pub(crate) unsafe fn copy_value_out(dst: *mut u8, src: *const u8, len: usize, lock: Option<u32>) {
    // SAFETY: guaranteed by the caller; the lock word lies inside the value.
    unsafe {
        std::ptr::copy_nonoverlapping(src, dst, len);
        if let Some(off) = lock {
            std::ptr::write_bytes(dst.add(off as usize), 0, 4);
        }
    }
}

/// Update flags both sides accept: `BPF_ANY`, `BPF_NOEXIST`, `BPF_EXIST`,
/// optionally with `BPF_F_LOCK` (which needs a spin lock in the value).
pub(crate) fn check_update_flags(flags: u64, lock: Option<u32>) -> Result<(), MapError> {
    if flags & !flags::BPF_F_LOCK > flags::BPF_EXIST {
        return Err(MapError::Invalid("update flags"));
    }
    if flags & flags::BPF_F_LOCK != 0 && lock.is_none() {
        return Err(MapError::Invalid(
            "BPF_F_LOCK without a spin lock in the value",
        ));
    }
    Ok(())
}

/// Lookup flags: only `BPF_F_LOCK`, and only with a spin lock.
pub(crate) fn check_lookup_flags(flags: u64, lock: Option<u32>) -> Result<(), MapError> {
    if flags & !flags::BPF_F_LOCK != 0 {
        return Err(MapError::Invalid("lookup flags"));
    }
    if flags & flags::BPF_F_LOCK != 0 && lock.is_none() {
        return Err(MapError::Invalid(
            "BPF_F_LOCK without a spin lock in the value",
        ));
    }
    Ok(())
}
