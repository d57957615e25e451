//! `BPF_MAP_TYPE_PROG_ARRAY`: the map behind `bpf_tail_call`.
//!
//! # Shared state
//! The data area holds one `u32` per slot: the id of the program in it, 0
//! for an empty slot (program ids start at 1). The aux area holds a
//! generation counter bumped after every slot change. Each store is a
//! complete state, so a writer killed at any point leaves a valid array.
//!
//! # Process-local state
//! Engines jump through a [`ProgArray`] (`crate::tailcall`) of this
//! process, which holds runnable programs. Each process keeps its own
//! `ProgArray` in sync with the ids: an update in this process sets the
//! slot at once; updates made by other processes are picked up when the
//! generation differs from the one this process last synced
//! ([`ProgArrayMap::sync`], one atomic load when nothing changed). Syncing
//! happens on every syscall-side operation, on [`prog_array_addr`], and
//! whenever the embedder calls [`sync`] (for example before a run).
//!
//! # Resolving programs
//! The syscall side takes program fds, the shared slots hold ids; the
//! loader installs both translations with [`set_prog_resolver`]:
//! fd to (id, target), and id to target (for slots written by others).
//!
//! # Kernel semantics
//! `key_size` and `value_size` must be 4. Update takes `BPF_ANY` only
//! (`EINVAL`), an index past the end gives `E2BIG`, an fd that names no
//! program `EBADF`. Lookup from user space returns the program id (the
//! kernel's `map_fd_sys_lookup_elem`), `ENOENT` for an empty slot or an
//! index out of range. Delete: `E2BIG` out of range, `ENOENT` when empty.
//! Programs cannot look up, update or delete (the verifier refuses it).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use super::perf_event_array::array_next_key;
use super::{Map, MapError, MapMem, MapOps, MapSpec, MAP_AUX_SIZE};
use crate::tailcall::{ProgArray, TailTarget};

/// fd of a program (in this process) to its id and runnable target.
/// Program fd to (id, runnable target, `enum bpf_prog_type`), or the errno
/// the kernel's `bpf_prog_get` gives (EBADF for a closed fd, EINVAL for an
/// fd that is not a program).
pub type ProgFdResolver = fn(i32) -> Result<(u32, TailTarget, u32), i32>;
/// Program id to a runnable target in this process.
pub type ProgIdResolver = fn(u32) -> Option<TailTarget>;

static RESOLVERS: RwLock<(Option<ProgFdResolver>, Option<ProgIdResolver>)> =
    RwLock::new((None, None));

/// Installs the loader's program resolvers (replacing earlier ones).
pub fn set_prog_resolver(by_fd: ProgFdResolver, by_id: ProgIdResolver) {
    *RESOLVERS.write().unwrap_or_else(|e| e.into_inner()) = (Some(by_fd), Some(by_id));
}

fn resolve_fd(fd: i32) -> Result<(u32, TailTarget, u32), i32> {
    let r = RESOLVERS.read().unwrap_or_else(|e| e.into_inner()).0;
    r.map_or(Err(libc::EINVAL), |f| f(fd))
}

fn resolve_id(id: u32) -> Option<TailTarget> {
    let r = RESOLVERS.read().unwrap_or_else(|e| e.into_inner()).1;
    r.and_then(|f| f(id))
}

/// The aux area.
#[repr(C)]
struct ProgArrayAux {
    /// Bumped (release) after each slot store; processes compare it
    /// (acquire) with the generation they synced.
    gen: AtomicU64,
    /// The program type every program in the array must have, + 1 (0:
    /// not decided yet): the kernel's "owner", claimed by the first program
    /// that references the array or is stored in it (compare-exchange).
    owner_type: AtomicU32,
}

const _: () = assert!(std::mem::size_of::<ProgArrayAux>() <= MAP_AUX_SIZE);

pub(crate) fn data_size(spec: &MapSpec) -> Result<usize, MapError> {
    super::fd_array_data_size(spec, 4, 0)
}

pub(crate) fn init(_spec: &MapSpec, _mem: &MapMem) -> Result<(), MapError> {
    Ok(())
}

pub(crate) fn open(spec: &MapSpec, mem: Arc<MapMem>) -> Result<Box<dyn MapOps>, MapError> {
    let n = spec.max_entries;
    Ok(Box::new(ProgArrayMap {
        mem,
        max_entries: n,
        array: ProgArray::new(n),
        synced: AtomicU64::new(u64::MAX),
        local_ids: Mutex::new(vec![0; n as usize]),
    }))
}

/// A program array mapped into this process.
pub struct ProgArrayMap {
    mem: Arc<MapMem>,
    max_entries: u32,
    /// What the engines jump through (its address is what programs load).
    array: ProgArray,
    /// The shared generation this process last synced to.
    synced: AtomicU64,
    /// The id each local slot was resolved from (also the sync lock).
    local_ids: Mutex<Vec<u32>>,
}

impl std::fmt::Debug for ProgArrayMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProgArrayMap")
            .field("max_entries", &self.max_entries)
            .finish()
    }
}

impl ProgArrayMap {
    fn aux(&self) -> &ProgArrayAux {
        // SAFETY: aux is 8-aligned and large enough; all-atomic.
        unsafe { &*(self.mem.aux() as *const ProgArrayAux) }
    }

    fn slot(&self, index: u32) -> Option<&AtomicU32> {
        if index >= self.max_entries {
            return None;
        }
        // SAFETY: the data area holds max_entries u32 slots.
        Some(unsafe { &*(self.mem.data().add(index as usize * 4) as *const AtomicU32) })
    }

    /// Makes `prog_type` the array's owner type if it has none; true when
    /// programs of `prog_type` may be stored in (or tail-call through) it.
    pub fn claim_owner(&self, prog_type: u32) -> bool {
        let want = prog_type.wrapping_add(1);
        match self
            .aux()
            .owner_type
            .compare_exchange(0, want, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(owner) => owner == want,
        }
    }

    /// The process-local array programs jump through (kept in sync).
    pub fn array(&self) -> &ProgArray {
        &self.array
    }

    /// The id in slot `index`, 0 when empty.
    pub fn id_at(&self, index: u32) -> u32 {
        self.slot(index).map_or(0, |s| s.load(Ordering::Acquire))
    }

    /// Brings the local array up to date with the shared slots. One load
    /// when nothing changed since the last sync.
    pub fn sync(&self) {
        let gen = self.aux().gen.load(Ordering::Acquire);
        if gen == self.synced.load(Ordering::Acquire) {
            return;
        }
        let mut ids = self.local_ids.lock().unwrap_or_else(|e| e.into_inner());
        // Read the generation before the slots: a change after this point
        // bumps it again and the next sync sees it.
        let gen = self.aux().gen.load(Ordering::Acquire);
        for (index, local) in ids.iter_mut().enumerate() {
            let id = self.id_at(index as u32);
            if id == *local {
                continue;
            }
            match (id != 0).then(|| resolve_id(id)).flatten() {
                Some(target) => {
                    let _ = self.array.set(index as u32, target);
                }
                None => {
                    let _ = self.array.clear(index as u32);
                }
            }
            *local = id;
        }
        self.synced.store(gen, Ordering::Release);
    }

    fn index_of(key: &[u8]) -> Result<u32, MapError> {
        key.get(..4)
            .and_then(|k| <[u8; 4]>::try_from(k).ok())
            .map(u32::from_ne_bytes)
            .ok_or(MapError::Invalid("key size"))
    }
}

/// What the loader puts in the `lddw` of a `PROG_ARRAY` map: the address
/// of this process's [`ProgArray`] for it (synced first). `None` for a map
/// of another type.
pub fn prog_array_addr(map: &Map) -> Option<u64> {
    let p = map.downcast::<ProgArrayMap>()?;
    p.sync();
    Some(p.array.as_addr())
}

/// Syncs a program array with changes made by other processes (no-op for
/// other map types). Cheap when nothing changed: call it before runs.
pub fn sync(map: &Map) {
    if let Some(p) = map.downcast::<ProgArrayMap>() {
        p.sync();
    }
}

impl MapOps for ProgArrayMap {
    fn lookup(&self, key: &[u8], value: &mut [u8], _flags: u64) -> Result<(), MapError> {
        let index = Self::index_of(key)?;
        let id = self
            .slot(index)
            .ok_or(MapError::NotFound)?
            .load(Ordering::Acquire);
        if id == 0 {
            return Err(MapError::NotFound);
        }
        value
            .get_mut(..4)
            .ok_or(MapError::Invalid("value size"))?
            .copy_from_slice(&id.to_ne_bytes());
        Ok(())
    }

    fn update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<(), MapError> {
        if flags != super::flags::BPF_ANY {
            return Err(MapError::Invalid("fd arrays take BPF_ANY only"));
        }
        let index = Self::index_of(key)?;
        let slot = self.slot(index).ok_or(MapError::Full)?;
        let fd = Self::index_of(value)? as i32;
        let (id, target, prog_type) = resolve_fd(fd).map_err(MapError::Io)?;
        if id == 0 {
            return Err(MapError::Invalid("program id 0"));
        }
        if !self.claim_owner(prog_type) {
            return Err(MapError::Invalid(
                "program type differs from the array's owner",
            ));
        }
        self.sync();
        let mut ids = self.local_ids.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self.array.set(index, target);
        if let Some(l) = ids.get_mut(index as usize) {
            *l = id;
        }
        slot.store(id, Ordering::Release);
        self.aux().gen.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    fn delete(&self, key: &[u8]) -> Result<(), MapError> {
        let index = Self::index_of(key)?;
        let slot = self.slot(index).ok_or(MapError::Full)?;
        self.sync();
        let mut ids = self.local_ids.lock().unwrap_or_else(|e| e.into_inner());
        let old = slot.swap(0, Ordering::AcqRel);
        let _ = self.array.clear(index);
        if let Some(l) = ids.get_mut(index as usize) {
            *l = 0;
        }
        if old == 0 {
            return Err(MapError::NotFound);
        }
        self.aux().gen.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    fn next_key(&self, key: Option<&[u8]>, next: &mut [u8]) -> Result<(), MapError> {
        array_next_key(self.max_entries, key, next)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
