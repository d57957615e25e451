//! `BPF_MAP_TYPE_ARRAY_OF_MAPS` and `BPF_MAP_TYPE_HASH_OF_MAPS`.
//!
//! Slots hold the namespace-wide id ([`Map::id`]) of the inner map, never
//! a pointer, so every process reads the same thing. As in the kernel:
//! - the syscall side's update takes a map **fd** (a `u32` value); the map
//!   behind it must match the outer map's [`InnerSpec`] (type, key and
//!   value size, flags, and max_entries unless the template has
//!   `BPF_F_INNER_MAP`), else `EINVAL` (`EBADF` for a closed fd);
//! - the syscall side's lookup returns the inner map's **id**;
//! - a program's lookup returns the inner map itself, that is its program
//!   address ([`Map::prog_addr`], what helpers take as a map pointer).
//!
//! # Layout
//!
//! - ARRAY_OF_MAPS: `max_entries` `u32` ids at offset 0 (0 = empty),
//!   stored with release and loaded with acquire (an id is published
//!   after the inner map exists; nothing else is ordered by it).
//! - HASH_OF_MAPS: the table of [`super::hash`] with 4-byte values (the
//!   ids), with all its concurrency and kill-safety rules.
//!
//! # Resolving ids in a process
//!
//! A program-side lookup turns an id into a map of this process with a
//! per-outer-map cache: a direct-mapped array of program addresses
//! (checked against the map's id, so a stale entry is never used) in
//! front of a table of `Arc<Map>`s that keeps every inner map this process
//! has resolved or inserted alive for the life of the outer map (so that
//! the addresses a program got stay valid, as RCU keeps them valid in the
//! kernel). A miss goes through [`Map::by_id`] (this process's maps, then
//! the embedder's resolver for maps of other processes). The price:
//! replacing or deleting inner maps releases them in this process only
//! when the outer map is dropped.

use std::any::Any;
use std::collections::HashMap;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::hash::HashTable;
use super::{
    check_lookup_flags, flags, map_type, InnerSpec, Map, MapError, MapMem, MapOps, MapSpec,
};

fn validate(spec: &MapSpec) -> Result<(), MapError> {
    if spec.value_size != 4 {
        return Err(MapError::Invalid("map-in-map values are 4-byte map fds"));
    }
    if spec.map_type == map_type::ARRAY_OF_MAPS {
        if spec.key_size != 4 {
            return Err(MapError::Invalid("array keys are 4 bytes"));
        }
        let allowed = flags::BPF_F_NUMA_NODE
            | flags::BPF_F_RDONLY
            | flags::BPF_F_WRONLY
            | flags::BPF_F_RDONLY_PROG
            | flags::BPF_F_WRONLY_PROG;
        if spec.map_flags & !allowed != 0 || !super::flags_access_ok(spec.map_flags) {
            return Err(MapError::Invalid("map flags"));
        }
    }
    let inner = spec.inner.as_ref().ok_or(MapError::Invalid(
        "map-in-map without an inner map template",
    ))?;
    if matches!(
        inner.map_type,
        map_type::ARRAY_OF_MAPS | map_type::HASH_OF_MAPS
    ) {
        return Err(MapError::Invalid("more than one level of map-in-map"));
    }
    Ok(())
}

pub(crate) fn data_size(spec: &MapSpec) -> Result<usize, MapError> {
    validate(spec)?;
    if spec.map_type == map_type::ARRAY_OF_MAPS {
        (spec.max_entries as usize)
            .checked_mul(4)
            .ok_or(MapError::Full)
    } else {
        super::hash::data_size(spec)
    }
}

pub(crate) fn init(spec: &MapSpec, mem: &MapMem) -> Result<(), MapError> {
    if spec.map_type == map_type::HASH_OF_MAPS {
        super::hash::init(spec, mem)
    } else {
        Ok(())
    }
}

pub(crate) fn open(spec: &MapSpec, mem: Arc<MapMem>) -> Result<Box<dyn MapOps>, MapError> {
    validate(spec)?;
    let slots = if spec.map_type == map_type::ARRAY_OF_MAPS {
        if spec.max_entries as usize * 4 > mem.data_size() {
            return Err(MapError::NotAMap);
        }
        Slots::Array {
            ids: mem.data() as *const AtomicU32,
            max_entries: spec.max_entries,
            _mem: mem,
        }
    } else {
        Slots::Hash(HashTable::new(spec, mem)?)
    };
    Ok(Box::new(MapInMap {
        slots,
        template: spec.inner.unwrap_or_default(),
        cache: InnerCache::new(),
    }))
}

/// Does `inner` fit the template (`bpf_map_meta_equal`)?
pub fn check_inner(template: &InnerSpec, inner: &Map) -> Result<(), MapError> {
    let s = inner.spec();
    if matches!(s.map_type, map_type::ARRAY_OF_MAPS | map_type::HASH_OF_MAPS) {
        return Err(MapError::Invalid("more than one level of map-in-map"));
    }
    let same = s.map_type == template.map_type
        && s.key_size == template.key_size
        && s.value_size == template.value_size
        && s.map_flags == template.map_flags
        && (template.map_flags & flags::BPF_F_INNER_MAP != 0
            || s.max_entries == template.max_entries);
    if same {
        Ok(())
    } else {
        Err(MapError::Invalid(
            "the inner map does not match the outer map's template",
        ))
    }
}

enum Slots {
    Array {
        ids: *const AtomicU32,
        max_entries: u32,
        _mem: Arc<MapMem>,
    },
    Hash(HashTable),
}

const CACHE_SLOTS: usize = 64;

/// Ids to maps of this process (see the module docs).
struct InnerCache {
    /// Program addresses by `id % CACHE_SLOTS`; 0 = empty. Release store,
    /// acquire load: the `Map` behind an address is fully built.
    fast: [AtomicU64; CACHE_SLOTS],
    keep: Mutex<HashMap<u32, Arc<Map>>>,
}

impl InnerCache {
    fn new() -> InnerCache {
        InnerCache {
            fast: std::array::from_fn(|_| AtomicU64::new(0)),
            keep: Mutex::new(HashMap::new()),
        }
    }

    /// Keeps `map` alive and resolvable.
    fn remember(&self, map: Arc<Map>) {
        let addr = map.prog_addr();
        let id = map.id();
        self.keep
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, map);
        self.fast[id as usize % CACHE_SLOTS].store(addr, Ordering::Release);
    }

    /// The program address of map `id`, or 0.
    #[inline]
    fn resolve(&self, id: u32) -> u64 {
        if id == 0 {
            return 0;
        }
        let addr = self.fast[id as usize % CACHE_SLOTS].load(Ordering::Acquire);
        // SAFETY: every address in `fast` is of a map held in `keep`, which
        // only grows while `self` lives.
        if addr != 0 && unsafe { Map::from_prog_addr(addr) }.id() == id {
            return addr;
        }
        self.resolve_slow(id)
    }

    #[cold]
    fn resolve_slow(&self, id: u32) -> u64 {
        let mut keep = self.keep.lock().unwrap_or_else(|e| e.into_inner());
        let map = match keep.get(&id) {
            Some(m) => m.clone(),
            None => {
                let Some(m) = Map::by_id(id) else {
                    return 0;
                };
                keep.insert(id, m.clone());
                m
            }
        };
        let addr = map.prog_addr();
        self.fast[id as usize % CACHE_SLOTS].store(addr, Ordering::Release);
        addr
    }
}

/// An ARRAY_OF_MAPS or HASH_OF_MAPS mapped in this process.
pub struct MapInMap {
    slots: Slots,
    template: InnerSpec,
    cache: InnerCache,
}

// SAFETY: `ids` points into the shared mapping kept alive by `_mem`, and
// is only accessed through atomics.
unsafe impl Send for MapInMap {}
// SAFETY: as above.
unsafe impl Sync for MapInMap {}

impl MapInMap {
    /// The template inner maps must match.
    pub fn template(&self) -> &InnerSpec {
        &self.template
    }

    /// The map behind the fd in an update's value, checked.
    fn inner_from_value(&self, value: &[u8]) -> Result<Arc<Map>, MapError> {
        let bytes: [u8; 4] = value
            .get(..4)
            .and_then(|v| v.try_into().ok())
            .ok_or(MapError::Invalid("value size"))?;
        let fd = u32::from_ne_bytes(bytes) as i32;
        // SAFETY: F_GETFD only inspects the descriptor table.
        if fd < 0 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return Err(MapError::BadFd);
        }
        // SAFETY: `fd` is open (checked just above); it is only borrowed
        // for the duration of `Map::open`, which duplicates what it keeps.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let inner = Map::open(borrowed).map_err(|e| match e {
            MapError::NotAMap => MapError::Invalid("not a map fd"),
            other => other,
        })?;
        check_inner(&self.template, &inner)?;
        Ok(inner)
    }

    fn array_index(key: &[u8]) -> Result<u32, MapError> {
        let bytes: [u8; 4] = key
            .get(..4)
            .and_then(|k| k.try_into().ok())
            .ok_or(MapError::Invalid("key size"))?;
        Ok(u32::from_ne_bytes(bytes))
    }

    /// Slot `index` of an array of maps (index checked by the caller).
    fn array_slot(&self, ids: *const AtomicU32, index: u32) -> &AtomicU32 {
        // SAFETY: index < max_entries (callers check), inside the data
        // area, which stays mapped while `self` lives.
        unsafe { &*ids.add(index as usize) }
    }
}

impl MapOps for MapInMap {
    fn lookup(&self, key: &[u8], value: &mut [u8], flags_: u64) -> Result<(), MapError> {
        check_lookup_flags(flags_, None)?;
        match &self.slots {
            Slots::Array {
                ids, max_entries, ..
            } => {
                let index = Self::array_index(key)?;
                if index >= *max_entries {
                    return Err(MapError::NotFound);
                }
                let id = self.array_slot(*ids, index).load(Ordering::Acquire);
                if id == 0 {
                    return Err(MapError::NotFound);
                }
                value
                    .get_mut(..4)
                    .ok_or(MapError::Invalid("value size"))?
                    .copy_from_slice(&id.to_ne_bytes());
                Ok(())
            }
            Slots::Hash(h) => h.lookup(key, value, flags_),
        }
    }

    fn update(&self, key: &[u8], value: &[u8], flags_: u64) -> Result<(), MapError> {
        match &self.slots {
            Slots::Array {
                ids, max_entries, ..
            } => {
                if flags_ != flags::BPF_ANY {
                    return Err(MapError::Invalid("map-in-map arrays take BPF_ANY only"));
                }
                let index = Self::array_index(key)?;
                if index >= *max_entries {
                    return Err(MapError::Full);
                }
                let inner = self.inner_from_value(value)?;
                let id = inner.id();
                self.cache.remember(inner);
                self.array_slot(*ids, index).store(id, Ordering::Release);
                Ok(())
            }
            Slots::Hash(h) => {
                if flags_ & !flags::BPF_F_LOCK > flags::BPF_EXIST || flags_ & flags::BPF_F_LOCK != 0
                {
                    return Err(MapError::Invalid("update flags"));
                }
                let inner = self.inner_from_value(value)?;
                let id = inner.id();
                self.cache.remember(inner);
                h.update(key, &id.to_ne_bytes(), flags_)
            }
        }
    }

    fn delete(&self, key: &[u8]) -> Result<(), MapError> {
        match &self.slots {
            Slots::Array {
                ids, max_entries, ..
            } => {
                let index = Self::array_index(key)?;
                if index >= *max_entries {
                    return Err(MapError::Full);
                }
                if self.array_slot(*ids, index).swap(0, Ordering::AcqRel) == 0 {
                    return Err(MapError::NotFound);
                }
                Ok(())
            }
            Slots::Hash(h) => h.delete(key),
        }
    }

    fn next_key(&self, key: Option<&[u8]>, next: &mut [u8]) -> Result<(), MapError> {
        match &self.slots {
            Slots::Array { max_entries, .. } => {
                let index = match key {
                    Some(k) => Self::array_index(k)?,
                    None => u32::MAX,
                };
                let out = if index >= *max_entries {
                    0
                } else if index == *max_entries - 1 {
                    return Err(MapError::NotFound);
                } else {
                    index + 1
                };
                next.get_mut(..4)
                    .ok_or(MapError::Invalid("key size"))?
                    .copy_from_slice(&out.to_ne_bytes());
                Ok(())
            }
            Slots::Hash(h) => h.next_key(key, next),
        }
    }

    #[inline]
    unsafe fn prog_lookup(&self, key: *const u8) -> *mut u8 {
        let id = match &self.slots {
            Slots::Array {
                ids, max_entries, ..
            } => {
                // SAFETY: the caller vouches for 4 key bytes.
                let index = unsafe { std::ptr::read_unaligned(key as *const u32) };
                if index >= *max_entries {
                    return std::ptr::null_mut();
                }
                self.array_slot(*ids, index).load(Ordering::Acquire)
            }
            Slots::Hash(h) => {
                // SAFETY: forwarded; plain (not per-CPU) table, CPU 0.
                let p = unsafe { h.lookup_ptr(key, 0) };
                if p.is_null() {
                    return p;
                }
                // SAFETY: a 4-byte, 8-aligned value of the table.
                unsafe { (*(p as *const AtomicU32)).load(Ordering::Acquire) }
            }
        };
        self.cache.resolve(id) as *mut u8
    }

    unsafe fn prog_update(&self, _key: *const u8, _value: *const u8, _flags: u64) -> i64 {
        // Programs cannot insert maps (the kernel's verifier refuses it).
        -(libc::EINVAL as i64)
    }

    unsafe fn prog_delete(&self, _key: *const u8) -> i64 {
        -(libc::EINVAL as i64)
    }

    /// A map pointer is not memory a program may touch.
    fn prog_value_size(&self) -> u32 {
        0
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
