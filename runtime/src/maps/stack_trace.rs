//! `BPF_MAP_TYPE_STACK_TRACE` and `bpf_get_stackid`.
//!
//! Keys are stack ids (`u32`), values `value_size / 8` instruction
//! pointers, zero-padded. As in the kernel, a stack's id is its `jhash2`
//! (seed 0) masked to the bucket count (`max_entries` rounded up to a power
//! of two), and at most `max_entries` stacks are stored at once.
//! `bpf_get_stackid` returns the id when the bucket already holds the same
//! stack (or any stack with the same hash under `BPF_F_FAST_STACK_CMP`),
//! `-EEXIST` when it holds another one, unless `BPF_F_REUSE_STACKID`
//! replaces it; `-ENOMEM` when all `max_entries` elements are in use.
//!
//! # Shared layout
//! The data area holds `n_buckets` `u32` bucket words (element index + 1,
//! 0 = empty) then `max_entries` elements (hash, frame count, free-list
//! link, the frames). The aux area holds a [`ShmLock`] and the free-list
//! head. Every operation runs under the lock; each store publishes a
//! complete state (an element is filled before its bucket word names it;
//! unlinking a bucket is one store), so a holder killed at any point can at
//! worst leak one element (capacity, never corruption).
//!
//! # Stack walking
//! Collecting the frames belongs to the helpers (`crate::helpers`), which
//! install a walker with [`set_stack_walker`]; [`store_stack`] is the part
//! that stores a collected trace. In user space there is no kernel stack:
//! without `BPF_F_USER_STACK` the helper fails with `-EFAULT`, as the
//! kernel does when it cannot fetch a trace.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use super::{Map, MapError, MapMem, MapOps, MapSpec, MAP_AUX_SIZE};
use crate::helpers::HelperEnv;
use crate::shm::ShmLock;

pub const BPF_F_SKIP_FIELD_MASK: u64 = 0xff;
pub const BPF_F_USER_STACK: u64 = 1 << 8;
pub const BPF_F_FAST_STACK_CMP: u64 = 1 << 9;
pub const BPF_F_REUSE_STACKID: u64 = 1 << 10;
/// Map flag for build-id stacks (not supported in user space).
pub const BPF_F_STACK_BUILD_ID: u32 = 1 << 5;
/// `sysctl_perf_event_max_stack`'s default.
pub const PERF_MAX_STACK: u32 = 127;

/// Collects the calling program's user stack: writes at most `out.len()`
/// return addresses, innermost first, after skipping `skip` frames, and
/// returns how many it wrote.
pub type StackWalker = fn(env: *mut HelperEnv, skip: u32, out: &mut [u64]) -> usize;

static WALKER: RwLock<Option<StackWalker>> = RwLock::new(None);

/// Installs the stack walker `bpf_get_stackid` uses (replacing any other).
pub fn set_stack_walker(walker: StackWalker) {
    *WALKER.write().unwrap_or_else(|e| e.into_inner()) = Some(walker);
}

/// The aux area.
#[repr(C)]
struct StackAux {
    /// Guards buckets, elements and the free list.
    lock: ShmLock,
    /// First free element, as index + 1 (0: none). Under the lock.
    free_head: AtomicU32,
}

const _: () = assert!(std::mem::size_of::<StackAux>() <= MAP_AUX_SIZE);

/// An element's fixed part; the frames follow.
#[repr(C)]
struct ElemHead {
    /// jhash2 of the frames. Under the lock.
    hash: AtomicU32,
    /// Frames stored. Under the lock.
    nr: AtomicU32,
    /// Next free element (index + 1) while on the free list.
    next: AtomicU32,
    _pad: u32,
}

const ELEM_HEAD: usize = std::mem::size_of::<ElemHead>();

struct Geometry {
    n_buckets: u32,
    depth: u32,
    elems_off: usize,
    elem_size: usize,
    total: usize,
}

fn geometry(spec: &MapSpec) -> Result<Geometry, MapError> {
    use super::flags::*;
    if spec.map_flags & BPF_F_STACK_BUILD_ID != 0 {
        return Err(MapError::NotSupported);
    }
    if spec.map_flags & !(BPF_F_NUMA_NODE | BPF_F_RDONLY | BPF_F_WRONLY) != 0 {
        return Err(MapError::Invalid("stack trace: unsupported map flags"));
    }
    if spec.key_size != 4 || spec.value_size < 8 || !spec.value_size.is_multiple_of(8) {
        return Err(MapError::Invalid(
            "stack trace: key_size must be 4, value_size a multiple of 8",
        ));
    }
    let depth = spec.value_size / 8;
    if depth > PERF_MAX_STACK {
        return Err(MapError::Invalid(
            "stack trace: deeper than perf_event_max_stack",
        ));
    }
    if spec.max_entries > 1 << 31 {
        return Err(MapError::Full);
    }
    let n_buckets = spec.max_entries.next_power_of_two();
    let elems_off = super::round_up8(n_buckets as usize * 4);
    let elem_size = ELEM_HEAD + depth as usize * 8;
    let total = (spec.max_entries as usize)
        .checked_mul(elem_size)
        .and_then(|n| n.checked_add(elems_off))
        .ok_or(MapError::Full)?;
    Ok(Geometry {
        n_buckets,
        depth,
        elems_off,
        elem_size,
        total,
    })
}

pub(crate) fn data_size(spec: &MapSpec) -> Result<usize, MapError> {
    Ok(geometry(spec)?.total)
}

pub(crate) fn init(spec: &MapSpec, mem: &MapMem) -> Result<(), MapError> {
    let g = geometry(spec)?;
    let st = StackTrace {
        _mem: None,
        base: mem.data(),
        aux: mem.aux() as *const StackAux,
        g,
        max_entries: spec.max_entries,
    };
    for i in 0..spec.max_entries {
        let next = if i + 1 < spec.max_entries { i + 2 } else { 0 };
        st.elem(i).next.store(next, Ordering::Relaxed);
    }
    st.aux().free_head.store(1, Ordering::Relaxed);
    Ok(())
}

pub(crate) fn open(spec: &MapSpec, mem: Arc<MapMem>) -> Result<Box<dyn MapOps>, MapError> {
    let g = geometry(spec)?;
    if mem.data_size() < g.total {
        return Err(MapError::NotAMap);
    }
    Ok(Box::new(StackTrace {
        base: mem.data(),
        aux: mem.aux() as *const StackAux,
        _mem: Some(mem),
        g,
        max_entries: spec.max_entries,
    }))
}

/// A stack trace map mapped into this process.
pub struct StackTrace {
    // Keeps the memory alive (None only during `init`).
    _mem: Option<Arc<MapMem>>,
    base: *mut u8,
    aux: *const StackAux,
    g: Geometry,
    max_entries: u32,
}

// SAFETY: the pointers point into the shared mapping kept alive by `mem`;
// all accesses go through atomics under the lock.
unsafe impl Send for StackTrace {}
// SAFETY: as above.
unsafe impl Sync for StackTrace {}

impl std::fmt::Debug for StackTrace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StackTrace")
            .field("n_buckets", &self.g.n_buckets)
            .field("depth", &self.g.depth)
            .finish()
    }
}

impl StackTrace {
    fn aux(&self) -> &StackAux {
        // SAFETY: the aux area is 8-aligned, large enough, all-atomic.
        unsafe { &*self.aux }
    }

    fn bucket(&self, id: u32) -> &AtomicU32 {
        debug_assert!(id < self.g.n_buckets);
        // SAFETY: id < n_buckets (callers check), inside the bucket array.
        unsafe { &*(self.base.cast::<AtomicU32>().add(id as usize)) }
    }

    /// Element `i` (`i < max_entries`).
    fn elem(&self, i: u32) -> &ElemHead {
        // SAFETY: i < max_entries (callers pass indices from the free list
        // or bucket words, range-checked), inside the element array.
        unsafe {
            &*(self
                .base
                .add(self.g.elems_off + i as usize * self.g.elem_size)
                as *const ElemHead)
        }
    }

    fn frames(&self, i: u32) -> &[AtomicU64] {
        let head = self.elem(i) as *const ElemHead as *const u8;
        // SAFETY: the frames follow the element head, `depth` u64s.
        unsafe { std::slice::from_raw_parts(head.add(ELEM_HEAD).cast(), self.g.depth as usize) }
    }

    /// The element a bucket word names, if valid.
    fn elem_of(&self, word: u32) -> Option<u32> {
        (word != 0 && word <= self.max_entries).then(|| word - 1)
    }

    /// Frames a stored stack holds at most (`value_size / 8`).
    pub fn depth(&self) -> u32 {
        self.g.depth
    }

    /// Stores a collected trace (frames after skipping); the kernel's
    /// `__bpf_get_stackid`. Returns the stack id.
    pub fn store(&self, ips: &[u64], flags: u64) -> Result<u32, MapError> {
        if flags
            & !(BPF_F_SKIP_FIELD_MASK
                | BPF_F_USER_STACK
                | BPF_F_FAST_STACK_CMP
                | BPF_F_REUSE_STACKID)
            != 0
        {
            return Err(MapError::Invalid("get_stackid flags"));
        }
        if ips.is_empty() {
            return Err(MapError::Fault);
        }
        let ips = &ips[..ips.len().min(self.g.depth as usize)];
        let mut words = [0u32; 2 * PERF_MAX_STACK as usize];
        for (i, ip) in ips.iter().enumerate() {
            words[2 * i] = *ip as u32;
            words[2 * i + 1] = (*ip >> 32) as u32;
        }
        let hash = super::bloom::jhash2(&words[..2 * ips.len()], 0);
        let id = hash & (self.g.n_buckets - 1);
        let aux = self.aux();
        let _guard = aux.lock.lock();
        let bucket = self.bucket(id);
        let old = self.elem_of(bucket.load(Ordering::Relaxed));
        if let Some(e) = old {
            let head = self.elem(e);
            if head.hash.load(Ordering::Relaxed) == hash {
                if flags & BPF_F_FAST_STACK_CMP != 0 {
                    return Ok(id);
                }
                let nr = head.nr.load(Ordering::Relaxed) as usize;
                if nr == ips.len()
                    && self
                        .frames(e)
                        .iter()
                        .zip(ips)
                        .all(|(f, ip)| f.load(Ordering::Relaxed) == *ip)
                {
                    return Ok(id);
                }
            }
            if flags & BPF_F_REUSE_STACKID == 0 {
                return Err(MapError::Exists);
            }
        }
        let new = self
            .elem_of(aux.free_head.load(Ordering::Relaxed))
            .ok_or(MapError::NoMemory)?;
        // Pop (a crash after this leaks `new`, nothing else).
        aux.free_head.store(
            self.elem(new).next.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        let head = self.elem(new);
        head.hash.store(hash, Ordering::Relaxed);
        head.nr.store(ips.len() as u32, Ordering::Relaxed);
        for (f, ip) in self.frames(new).iter().zip(ips) {
            f.store(*ip, Ordering::Relaxed);
        }
        // Publish.
        bucket.store(new + 1, Ordering::Release);
        if let Some(e) = old {
            self.free(e);
        }
        Ok(id)
    }

    /// Pushes element `e` on the free list (under the lock).
    fn free(&self, e: u32) {
        let aux = self.aux();
        self.elem(e)
            .next
            .store(aux.free_head.load(Ordering::Relaxed), Ordering::Relaxed);
        aux.free_head.store(e + 1, Ordering::Relaxed);
    }

    fn id_of(key: &[u8]) -> Result<u32, MapError> {
        key.get(..4)
            .and_then(|k| <[u8; 4]>::try_from(k).ok())
            .map(u32::from_ne_bytes)
            .ok_or(MapError::Invalid("key size"))
    }
}

/// `store_stack`: stores `ips` in a `STACK_TRACE` map and returns its id.
pub fn store_stack(map: &Map, ips: &[u64], flags: u64) -> Result<u32, MapError> {
    map.downcast::<StackTrace>()
        .ok_or(MapError::Invalid("not a stack trace map"))?
        .store(ips, flags)
}

/// `bpf_get_stackid(ctx, map, flags)`: collects the stack with the
/// installed walker and stores it. Returns the id or `-errno`.
pub fn get_stackid(env: *mut HelperEnv, map: &Map, flags: u64) -> i64 {
    let Some(st) = map.downcast::<StackTrace>() else {
        return -i64::from(libc::EINVAL);
    };
    if flags
        & !(BPF_F_SKIP_FIELD_MASK | BPF_F_USER_STACK | BPF_F_FAST_STACK_CMP | BPF_F_REUSE_STACKID)
        != 0
    {
        return -i64::from(libc::EINVAL);
    }
    if flags & BPF_F_USER_STACK == 0 {
        // No kernel stack in user space: the kernel's "couldn't fetch".
        return -i64::from(libc::EFAULT);
    }
    let Some(walker) = *WALKER.read().unwrap_or_else(|e| e.into_inner()) else {
        return -i64::from(libc::EFAULT);
    };
    let skip = (flags & BPF_F_SKIP_FIELD_MASK) as u32;
    // The kernel collects min(depth + skip, max_stack) frames, then skips.
    let wanted = (st.depth() + skip).min(PERF_MAX_STACK).saturating_sub(skip) as usize;
    let mut buf = [0u64; PERF_MAX_STACK as usize];
    let out = &mut buf[..wanted];
    let n = walker(env, skip, out).min(wanted);
    if n == 0 {
        return -i64::from(libc::EFAULT);
    }
    match st.store(&buf[..n], flags) {
        Ok(id) => i64::from(id),
        Err(e) => e.to_helper_ret(),
    }
}

impl MapOps for StackTrace {
    fn lookup(&self, key: &[u8], value: &mut [u8], _flags: u64) -> Result<(), MapError> {
        let id = Self::id_of(key)?;
        if id >= self.g.n_buckets {
            return Err(MapError::NotFound);
        }
        let out = value
            .get_mut(..self.g.depth as usize * 8)
            .ok_or(MapError::Invalid("value size"))?;
        let _guard = self.aux().lock.lock();
        let e = self
            .elem_of(self.bucket(id).load(Ordering::Acquire))
            .ok_or(MapError::NotFound)?;
        let nr = (self.elem(e).nr.load(Ordering::Relaxed) as usize).min(self.g.depth as usize);
        out.fill(0);
        for (chunk, f) in out.chunks_exact_mut(8).zip(&self.frames(e)[..nr]) {
            chunk.copy_from_slice(&f.load(Ordering::Relaxed).to_ne_bytes());
        }
        Ok(())
    }

    fn update(&self, _key: &[u8], _value: &[u8], _flags: u64) -> Result<(), MapError> {
        Err(MapError::Invalid("stack trace maps cannot be updated"))
    }

    fn delete(&self, key: &[u8]) -> Result<(), MapError> {
        let id = Self::id_of(key)?;
        if id >= self.g.n_buckets {
            return Err(MapError::Full);
        }
        let _guard = self.aux().lock.lock();
        let old = self.bucket(id).swap(0, Ordering::AcqRel);
        match self.elem_of(old) {
            Some(e) => {
                self.free(e);
                Ok(())
            }
            None => Err(MapError::NotFound),
        }
    }

    fn next_key(&self, key: Option<&[u8]>, next: &mut [u8]) -> Result<(), MapError> {
        let mut id = match key.map(Self::id_of).transpose()? {
            Some(k) if k < self.g.n_buckets && self.bucket(k).load(Ordering::Acquire) != 0 => k + 1,
            _ => 0,
        };
        while id < self.g.n_buckets && self.bucket(id).load(Ordering::Acquire) == 0 {
            id += 1;
        }
        if id >= self.g.n_buckets {
            return Err(MapError::NotFound);
        }
        next.get_mut(..4)
            .ok_or(MapError::Invalid("key size"))?
            .copy_from_slice(&id.to_ne_bytes());
        Ok(())
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
