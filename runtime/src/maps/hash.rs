//! `BPF_MAP_TYPE_HASH`, `PERCPU_HASH`, `LRU_HASH` and `LRU_PERCPU_HASH`
//! (and the table under `HASH_OF_MAPS`, see [`super::map_in_map`]).
//!
//! # Layout (data area of the map file; offsets only, never pointers)
//!
//! ```text
//! 0            buckets: n_buckets x Bucket { lock: ShmLock (u32), head: u32 }
//! elems_off    elements: cap x { Elem header (16 B), key (round_up(key_size, 8)),
//!                                value (round_up(value_size, 8); not per-CPU maps) }
//! pcpu_off     per-CPU maps only: CPU-major value blocks, CPU c's value of
//!              element i at pcpu_off + c * pcpu_stride + i * round_up(value_size, 8)
//! ```
//!
//! `n_buckets = roundup_pow_of_two(max_entries)` as in the kernel.
//! `cap = max_entries` for LRU maps (they evict instead of failing) and
//! `max_entries + slack` for the others, where the slack (2 x CPUs + 32
//! elements) lets an update of an existing key build the new element
//! before it swaps it in, even when the map is full (the kernel keeps
//! per-CPU "extra elements" for the same purpose). A live-element counter
//! gives `E2BIG` at exactly `max_entries`.
//!
//! The map state (seed, geometry, free list, counters) lives in the
//! header's aux area as [`HashState`].
//!
//! Chain links are `u32`s: 0 = empty bucket (heads only), an even value
//! `(i + 1) << 1` = element `i`, an odd value `(b << 1) | 1` = the end of
//! bucket `b`'s chain (the "nulls" marker of the kernel's hlist_nulls).
//!
//! # Concurrency
//!
//! - **Readers** (program-side lookups, syscall-side copies) take no lock.
//!   They walk the chain with acquire loads. Elements are reused as soon
//!   as they are freed, so a reader may find itself on an element that was
//!   deleted and re-inserted elsewhere; three checks catch that:
//!   - the nulls marker: a walk that ends on another bucket's marker
//!     restarts (it was carried into another chain);
//!   - a per-element sequence count (`seq`): even while the element is
//!     linked and stable, odd while it is free or being (re)written. A
//!     reader reads `seq` (acquire) before comparing the key and again
//!     after it (behind an acquire fence); any change means the element
//!     was recycled under it, and it restarts. Syscall-side copies check
//!     `seq` again after copying the value, so they return the old or the
//!     new value of a replaced key, never a mix;
//!   - a miss is only reported after re-checking the `seq` of every
//!     element the walk passed: a walk through an element that was freed
//!     meanwhile (its link and hash may already be rewritten) restarts, so
//!     a key present for the whole lookup is always found, even while it
//!     is being replaced (the kernel's walk can miss when a preallocated
//!     element is reused under it).
//! - **Writers** (update, delete, eviction) hold the bucket's [`ShmLock`]
//!   and change the chain with single release stores of a link: an
//!   element is completely written (key, value, `next`, then `seq` made
//!   even) before the one store that links it; a replacement is linked in
//!   place of the old element with one store (readers see one or the
//!   other, never both or neither); a delete is one store. Every single
//!   store leaves the chain consistent, which is what [`ShmLock`]'s dead
//!   holder takeover requires.
//! - **Free elements** sit on a lock-free stack (`free_head`: element
//!   index + 1 in the low half, an ABA tag in the high half, updated by
//!   compare-and-swap) or in the never-used tail (`bump`).
//! - **Per-CPU values** of an existing key are updated in place (as the
//!   kernel does); `BPF_F_LOCK` updates copy in place under the value's
//!   spin lock (as the kernel does).
//!
//! # LRU approximation
//!
//! The kernel's LRU keeps active/inactive lists with a reference bit. Ours
//! is a CLOCK (second chance) over the element pool: lookups from programs
//! set the element's reference bit (a load, and a store only if it was
//! clear, so hot elements do not bounce cache lines); when an update finds
//! no free element, it advances a shared clock hand over the pool, clears
//! set reference bits, and evicts the first linked element whose bit is
//! clear (never, on the first sweep, one with the updater's own hash).
//! Eviction takes only the victim's bucket lock and happens before the
//! updater takes its own, so no two bucket locks are ever held together.
//! Unlike the kernel, which evicts batches of up to 128 elements per CPU
//! list, ours evicts one element per insertion, and `BPF_F_NO_COMMON_LRU`
//! changes nothing (there are no per-CPU lists; `max_entries` is not
//! rounded to a multiple of the CPU count either). Syscall-side lookups do
//! not set the reference bit (the kernel's `lookup_elem_sys_only`).
//!
//! # What a killed writer costs
//!
//! A process killed with SIGKILL at any instruction leaves the chains
//! consistent: a bucket lock it held is taken over by the next writer once
//! the holder is gone, and every chain store is a complete publication.
//! What it can cost is at most one element per thread that was in an
//! update, delete or eviction: an element taken from the pool but not yet
//! linked, or unlinked but not yet returned, is leaked (the map holds one
//! element less: for a non-LRU map the slack absorbs leaks until it is
//! exhausted, after which an update of an existing key in a full map fails
//! with `E2BIG`), and the live-element counter can stay one too high
//! (the map then reports `E2BIG` one element early). [`HashTable::audit`]
//! reports such leaks.
//!
//! # Memory
//!
//! Nothing is initialized at creation (the zero-filled memfd is an empty
//! table with an empty pool), so pages are only touched as elements are
//! used. [`super::Map::create`] refuses maps larger than RAM + swap.

use std::any::Any;
use std::mem::{offset_of, size_of};
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use super::array::PCPU_MAX_VALUE;
use super::{
    check_lookup_flags, check_update_flags, copy_value_in, copy_value_out, flags, flags_access_ok,
    map_type, round_up8, value_lock, MapError, MapMem, MapOps, MapSpec, MAP_AUX_SIZE,
};
use crate::shm::ShmLock;

/// Element header, at the start of every element.
///
/// Atomics: `next` release-stored by writers (under the bucket lock) and
/// acquire-loaded by readers, so a reader that follows a link sees the
/// element it links completely written. `seq` is the element's sequence
/// count (see the module docs): odd values are stored relaxed and followed
/// by a release fence before the element's data is rewritten; the even
/// value that makes the element valid is a release store; readers load it
/// with acquire before and relaxed after an acquire fence. `hash` and the
/// key words are relaxed (ordered by `seq` and the link). While the
/// element is free (odd `seq`), `hash` holds the free-list link instead,
/// ordered by the free-list CAS: readers only trust `hash` after seeing an
/// even `seq` and check `seq` again before they act on a match, and the
/// evictor rechecks under the bucket lock, so a stale read is harmless.
/// `lru_ref` is a relaxed hint (a reader may set it on an element that was
/// freed meanwhile, which is why it does not share a word with the link).
#[repr(C)]
pub(crate) struct Elem {
    next: AtomicU32,
    seq: AtomicU32,
    /// The key's hash while linked; the free-list link while free.
    hash: AtomicU32,
    lru_ref: AtomicU32,
}

impl Elem {
    #[inline(always)]
    fn free_next(&self) -> &AtomicU32 {
        &self.hash
    }
}

const ELEM_HDR: usize = 16;
const _: () = assert!(size_of::<Elem>() == ELEM_HDR);
const _: () = assert!(offset_of!(Elem, next) == 0);
const _: () = assert!(offset_of!(Elem, seq) == 4);
const _: () = assert!(offset_of!(Elem, hash) == 8);
const _: () = assert!(offset_of!(Elem, lru_ref) == 12);

/// One bucket: its writers' lock and the head link (release-stored under
/// the lock, acquire-loaded by readers).
#[repr(C)]
struct Bucket {
    lock: ShmLock,
    head: AtomicU32,
}

const _: () = assert!(size_of::<Bucket>() == 8);
const _: () = assert!(offset_of!(Bucket, head) == 4);

/// The table's state, in the aux area of the header. The first part is
/// written once by `init` before the map file is shared; the counters
/// each sit on their own cache line (offsets relative to the aux area).
#[repr(C)]
struct HashState {
    /// Per-map hash seed (0 with `BPF_F_ZERO_SEED`).
    seed: u64,
    n_buckets: u32,
    cap: u32,
    elem_size: u32,
    _r0: u32,
    elems_off: u64,
    pcpu_off: u64,
    pcpu_stride: u64,
    _pad0: [u64; 10],
    /// Free-element stack: low 32 bits = index + 1 (0 = empty), high 32
    /// bits = ABA tag. Acquire loads, acq-rel CAS.
    free_head: AtomicU64,
    _pad1: [u64; 7],
    /// Elements ever taken from the never-used tail of the pool; relaxed
    /// CAS (the element's own `seq` orders its contents).
    bump: AtomicU32,
    _pad2: [u32; 15],
    /// Linked elements; relaxed (a capacity count, orders nothing).
    count: AtomicU32,
    _pad3: [u32; 15],
    /// LRU clock hand; relaxed.
    clock: AtomicU32,
    _pad4: [u32; 15],
}

const _: () = assert!(offset_of!(HashState, free_head) == 128);
const _: () = assert!(offset_of!(HashState, bump) == 192);
const _: () = assert!(offset_of!(HashState, count) == 256);
const _: () = assert!(offset_of!(HashState, clock) == 320);
const _: () = assert!(size_of::<HashState>() <= MAP_AUX_SIZE);

/// Elements a lock-free miss remembers to validate (see `find`).
const PATH: usize = 8;
/// Restarts a lock-free walk may take before giving up (only reachable
/// under pathological churn or a corrupted map; a lookup then misses).
const MAX_RESTARTS: u32 = 1 << 16;

#[inline(always)]
fn eref(idx: u32) -> u32 {
    (idx + 1) << 1
}

#[inline(always)]
fn nulls(bucket: u32) -> u32 {
    (bucket << 1) | 1
}

/// `HTAB_CREATE_FLAG_MASK`.
const HTAB_FLAGS: u32 = flags::BPF_F_NO_PREALLOC
    | flags::BPF_F_NO_COMMON_LRU
    | flags::BPF_F_NUMA_NODE
    | flags::BPF_F_RDONLY
    | flags::BPF_F_WRONLY
    | flags::BPF_F_RDONLY_PROG
    | flags::BPF_F_WRONLY_PROG
    | flags::BPF_F_ZERO_SEED;

/// `KMALLOC_MAX_SIZE` (4 MiB on x86-64) less `sizeof(struct htab_elem)`.
const MAX_KEY_VALUE: u64 = (4 << 20) - 48;

fn is_lru(map_type: u32) -> bool {
    matches!(map_type, map_type::LRU_HASH | map_type::LRU_PERCPU_HASH)
}

fn is_percpu(map_type: u32) -> bool {
    matches!(map_type, map_type::PERCPU_HASH | map_type::LRU_PERCPU_HASH)
}

/// `htab_map_alloc_check` plus the size checks of `htab_map_alloc`.
fn validate(spec: &MapSpec) -> Result<(), MapError> {
    let lru = is_lru(spec.map_type);
    let percpu = is_percpu(spec.map_type);
    if spec.map_flags & !HTAB_FLAGS != 0 || !flags_access_ok(spec.map_flags) {
        return Err(MapError::Invalid("map flags"));
    }
    if !lru && spec.map_flags & flags::BPF_F_NO_COMMON_LRU != 0 {
        return Err(MapError::Invalid("BPF_F_NO_COMMON_LRU on a non-LRU map"));
    }
    if lru && spec.map_flags & flags::BPF_F_NO_PREALLOC != 0 {
        return Err(MapError::NotSupported);
    }
    if spec.map_flags & flags::BPF_F_NUMA_NODE != 0
        && (percpu || spec.map_flags & flags::BPF_F_NO_COMMON_LRU != 0)
    {
        return Err(MapError::Invalid("NUMA node on a per-CPU map"));
    }
    if spec.key_size == 0 || spec.value_size == 0 {
        return Err(MapError::Invalid("key_size or value_size is 0"));
    }
    if u64::from(spec.key_size) + u64::from(spec.value_size) >= MAX_KEY_VALUE {
        return Err(MapError::Full);
    }
    if percpu && round_up8(spec.value_size as usize) > PCPU_MAX_VALUE {
        return Err(MapError::Full);
    }
    if spec.max_entries > 1 << 31 {
        return Err(MapError::Full);
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Geometry {
    n_buckets: u32,
    cap: u32,
    elem_size: usize,
    elems_off: usize,
    pcpu_off: usize,
    pcpu_stride: usize,
    data_size: usize,
}

fn round_up64(n: usize) -> Option<usize> {
    n.checked_add(63).map(|v| v & !63)
}

fn geometry(spec: &MapSpec, nr_cpus: u32) -> Result<Geometry, MapError> {
    let full = || MapError::Full;
    let n_buckets = spec
        .max_entries
        .checked_next_power_of_two()
        .ok_or_else(full)?;
    let slack = if is_lru(spec.map_type) {
        0
    } else {
        2 * nr_cpus.min(4096) + 32
    };
    let cap = spec.max_entries.checked_add(slack).ok_or_else(full)?;
    // Links are (index + 1) << 1 in a u32.
    if cap >= (1 << 31) - 1 {
        return Err(MapError::Full);
    }
    let key8 = round_up8(spec.key_size as usize);
    let val8 = round_up8(spec.value_size as usize);
    let percpu = is_percpu(spec.map_type);
    let elem_size = ELEM_HDR + key8 + if percpu { 0 } else { val8 };
    let elems_off = round_up64(n_buckets as usize * size_of::<Bucket>()).ok_or_else(full)?;
    let elems_bytes = elem_size.checked_mul(cap as usize).ok_or_else(full)?;
    let pcpu_off =
        round_up64(elems_off.checked_add(elems_bytes).ok_or_else(full)?).ok_or_else(full)?;
    let (pcpu_stride, data_size) = if percpu {
        let stride =
            round_up64(val8.checked_mul(cap as usize).ok_or_else(full)?).ok_or_else(full)?;
        let total = stride
            .checked_mul(nr_cpus as usize)
            .and_then(|b| b.checked_add(pcpu_off))
            .ok_or_else(full)?;
        (stride, total)
    } else {
        (0, pcpu_off)
    };
    Ok(Geometry {
        n_buckets,
        cap,
        elem_size,
        elems_off,
        pcpu_off,
        pcpu_stride,
        data_size,
    })
}

pub(crate) fn data_size(spec: &MapSpec) -> Result<usize, MapError> {
    validate(spec)?;
    Ok(geometry(spec, crate::cpu::possible_cpus())?.data_size)
}

fn random_seed() -> u64 {
    let mut seed = 0u64;
    // SAFETY: writes at most 8 bytes into `seed`.
    let n = unsafe { libc::getrandom((&raw mut seed).cast(), 8, 0) };
    if n != 8 {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        seed = t ^ (u64::from(std::process::id()) << 32) ^ (&raw const seed as u64);
    }
    seed
}

pub(crate) fn init(spec: &MapSpec, mem: &MapMem) -> Result<(), MapError> {
    let g = geometry(spec, mem.header().nr_cpus.max(1))?;
    // SAFETY: the aux area is 8-aligned, MAP_AUX_SIZE bytes, zero-filled,
    // and nobody else has the map yet.
    let st = unsafe { &mut *(mem.aux() as *mut HashState) };
    st.seed = if spec.map_flags & flags::BPF_F_ZERO_SEED != 0 {
        0
    } else {
        random_seed()
    };
    st.n_buckets = g.n_buckets;
    st.cap = g.cap;
    st.elem_size = g.elem_size as u32;
    st.elems_off = g.elems_off as u64;
    st.pcpu_off = g.pcpu_off as u64;
    st.pcpu_stride = g.pcpu_stride as u64;
    Ok(())
}

pub(crate) fn open(spec: &MapSpec, mem: Arc<MapMem>) -> Result<Box<dyn MapOps>, MapError> {
    Ok(Box::new(HashTable::new(spec, mem)?))
}

// ---- keys ----

#[inline(always)]
unsafe fn load_word(p: *const u8, i: usize) -> u64 {
    // SAFETY: the caller vouches for 8 readable bytes at word `i`.
    unsafe { std::ptr::read_unaligned(p.add(i * 8) as *const u64) }
}

/// The `n` (1..=7) bytes at `p`, little-endian, zero-extended.
#[inline(always)]
unsafe fn load_tail(p: *const u8, n: usize) -> u64 {
    // SAFETY: the caller vouches for `n` readable bytes.
    unsafe {
        let b = |i: usize| u64::from(*p.add(i));
        let h = |i: usize| u64::from(std::ptr::read_unaligned(p.add(i) as *const u16));
        let w = |i: usize| u64::from(std::ptr::read_unaligned(p.add(i) as *const u32));
        match n {
            1 => b(0),
            2 => h(0),
            3 => h(0) | b(2) << 16,
            4 => w(0),
            5 => w(0) | b(4) << 32,
            6 => w(0) | h(4) << 32,
            _ => w(0) | h(4) << 32 | b(6) << 48,
        }
    }
}

/// 64x64 -> 128 multiply, folded: the mixing step of wyhash.
#[inline(always)]
fn mum(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

const P0: u64 = 0xa076_1d64_78bd_642f;
const P1: u64 = 0xe703_7ed1_a0b4_28db;
const P2: u64 = 0x8ebc_6af0_9c88_c6e3;

/// The 32-bit hash of a key; the bucket is its low bits.
///
/// # Safety
/// `key` points at `len` readable bytes.
#[inline(always)]
unsafe fn hash_key(key: *const u8, len: usize, seed: u64) -> u32 {
    let mut h = seed ^ P0;
    let words = len / 8;
    // SAFETY: every word read lies inside the key.
    unsafe {
        for i in 0..words {
            h = mum(h ^ load_word(key, i), P1);
        }
        let rem = len % 8;
        if rem != 0 {
            h = mum(h ^ load_tail(key.add(words * 8), rem), P1);
        }
    }
    let h = mum(h ^ len as u64, P2);
    (h ^ (h >> 32)) as u32
}

/// Compares an element's key words with `len` bytes at `key`.
///
/// # Safety
/// `w` points at the element's round_up(len, 8) key bytes, `key` at `len`
/// readable bytes.
#[inline(always)]
unsafe fn key_eq_n(w: *const AtomicU64, key: *const u8, len: usize) -> bool {
    let words = len / 8;
    // SAFETY: word reads inside the element's key and the caller's key.
    unsafe {
        for i in 0..words {
            if (*w.add(i)).load(Ordering::Relaxed) != load_word(key, i) {
                return false;
            }
        }
        let rem = len % 8;
        rem == 0 || (*w.add(words)).load(Ordering::Relaxed) == load_tail(key.add(words * 8), rem)
    }
}

/// Which values an update writes.
#[derive(Clone, Copy)]
enum Src {
    /// A plain value of `value_size` bytes.
    Plain(*const u8),
    /// Per-CPU maps, syscall side: `nr_cpus` values of `round_up(value_size, 8)`.
    AllCpus(*const u8),
    /// Per-CPU maps, program side: this CPU's value (`value_size` bytes);
    /// a new element gets zeroes on the other CPUs.
    OneCpu(*const u8, u32),
}

/// A consistency report of a quiescent table (see [`HashTable::audit`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HashAudit {
    /// Elements reachable from the buckets.
    pub linked: u32,
    /// Elements on the free stack.
    pub free: u32,
    /// Never-used elements at the end of the pool.
    pub unused: u32,
    /// Elements in none of the above (leaked by killed writers).
    pub leaked: u32,
    /// The live-element counter.
    pub count: u32,
    /// Pool size.
    pub cap: u32,
    /// Inconsistencies found (wrong bucket, cycles, bad links, ...).
    pub errors: Vec<String>,
}

/// A hash table mapped in this process.
pub struct HashTable {
    state: *const HashState,
    buckets: *const Bucket,
    elems: *mut u8,
    pcpu: *mut u8,
    seed: u64,
    mask: u32,
    cap: u32,
    max_entries: u32,
    nr_cpus: u32,
    elem_size: usize,
    key_size: usize,
    key8: usize,
    value_size: usize,
    val8: usize,
    pcpu_stride: usize,
    percpu: bool,
    lru: bool,
    lock: Option<u32>,
    rdonly_prog: bool,
    _mem: Arc<MapMem>,
}

// SAFETY: the raw pointers point into the shared mapping kept alive by
// `_mem`; every shared access follows the protocol in the module docs.
unsafe impl Send for HashTable {}
// SAFETY: as above.
unsafe impl Sync for HashTable {}

impl HashTable {
    pub(crate) fn new(spec: &MapSpec, mem: Arc<MapMem>) -> Result<HashTable, MapError> {
        validate(spec)?;
        super::check_spin_lock(spec).map_err(|_| MapError::NotAMap)?;
        let nr_cpus = mem.header().nr_cpus.max(1);
        let g = geometry(spec, nr_cpus)?;
        // SAFETY: the aux area holds a HashState written by `init`.
        let st = unsafe { &*(mem.aux() as *const HashState) };
        if g.data_size > mem.data_size()
            || st.n_buckets != g.n_buckets
            || st.cap != g.cap
            || st.elem_size as usize != g.elem_size
            || st.elems_off != g.elems_off as u64
            || st.pcpu_off != g.pcpu_off as u64
            || st.pcpu_stride != g.pcpu_stride as u64
        {
            return Err(MapError::NotAMap);
        }
        let base = mem.data();
        Ok(HashTable {
            state: st,
            buckets: base as *const Bucket,
            // SAFETY: offsets inside the data area (checked above).
            elems: unsafe { base.add(g.elems_off) },
            // SAFETY: as above.
            pcpu: unsafe { base.add(g.pcpu_off) },
            seed: st.seed,
            mask: g.n_buckets - 1,
            cap: g.cap,
            max_entries: spec.max_entries,
            nr_cpus,
            elem_size: g.elem_size,
            key_size: spec.key_size as usize,
            key8: round_up8(spec.key_size as usize),
            value_size: spec.value_size as usize,
            val8: round_up8(spec.value_size as usize),
            pcpu_stride: g.pcpu_stride,
            percpu: is_percpu(spec.map_type),
            lru: is_lru(spec.map_type),
            lock: spec.spin_lock_off,
            rdonly_prog: spec.map_flags & flags::BPF_F_RDONLY_PROG != 0,
            _mem: mem,
        })
    }

    #[inline(always)]
    fn st(&self) -> &HashState {
        // SAFETY: points into the header page, mapped while `_mem` lives.
        unsafe { &*self.state }
    }

    #[inline(always)]
    fn bucket(&self, b: u32) -> &Bucket {
        // SAFETY: callers pass `hash & mask` or an index < n_buckets.
        unsafe { &*self.buckets.add(b as usize) }
    }

    #[inline(always)]
    fn elem_ptr(&self, idx: u32) -> *mut u8 {
        // SAFETY: callers pass idx < cap; the pool lies in the data area.
        unsafe { self.elems.add(idx as usize * self.elem_size) }
    }

    #[inline(always)]
    fn elem(&self, idx: u32) -> &Elem {
        // SAFETY: an element header, 8-aligned (elems_off is 64-aligned and
        // elem_size a multiple of 8).
        unsafe { &*(self.elem_ptr(idx) as *const Elem) }
    }

    #[inline(always)]
    fn key_words(&self, idx: u32) -> *const AtomicU64 {
        // SAFETY: the key follows the header, 8-aligned.
        unsafe { self.elem_ptr(idx).add(ELEM_HDR) as *const AtomicU64 }
    }

    /// The value of element `idx` (CPU `cpu`'s for per-CPU maps).
    #[inline(always)]
    fn value_ptr(&self, idx: u32, cpu: u32) -> *mut u8 {
        // SAFETY: idx < cap and cpu < nr_cpus by the callers; inside the
        // data area by the geometry.
        unsafe {
            if self.percpu {
                self.pcpu
                    .add(cpu as usize * self.pcpu_stride + idx as usize * self.val8)
            } else {
                self.elem_ptr(idx).add(ELEM_HDR + self.key8)
            }
        }
    }

    /// Element index of a link, `None` for ends and bad links.
    #[inline(always)]
    fn link_idx(&self, link: u32) -> Option<u32> {
        let idx = (link >> 1).wrapping_sub(1);
        (link & 1 == 0 && link != 0 && idx < self.cap).then_some(idx)
    }

    #[inline(always)]
    unsafe fn hash(&self, key: *const u8) -> u32 {
        // SAFETY: the caller vouches for key_size bytes. The common sizes
        // get code specialized for them (same function, constant length).
        unsafe {
            match self.key_size {
                4 => hash_key(key, 4, self.seed),
                8 => hash_key(key, 8, self.seed),
                n => hash_key(key, n, self.seed),
            }
        }
    }

    /// # Safety
    /// `key` points at key_size readable bytes; `idx < cap`.
    #[inline(always)]
    unsafe fn key_eq(&self, idx: u32, key: *const u8) -> bool {
        let w = self.key_words(idx);
        // SAFETY: forwarded.
        unsafe {
            match self.key_size {
                4 => key_eq_n(w, key, 4),
                8 => key_eq_n(w, key, 8),
                16 => key_eq_n(w, key, 16),
                n => key_eq_n(w, key, n),
            }
        }
    }

    /// # Safety
    /// As [`HashTable::key_eq`]; the element is not linked.
    unsafe fn store_key(&self, idx: u32, key: *const u8) {
        let w = self.key_words(idx);
        let words = self.key_size / 8;
        // SAFETY: as in `key_eq`.
        unsafe {
            for i in 0..words {
                (*w.add(i)).store(load_word(key, i), Ordering::Relaxed);
            }
            let rem = self.key_size % 8;
            if rem != 0 {
                (*w.add(words)).store(load_tail(key.add(words * 8), rem), Ordering::Relaxed);
            }
        }
    }

    /// Copies element `idx`'s key out (`out` holds key_size bytes).
    fn copy_key(&self, idx: u32, out: &mut [u8]) {
        let w = self.key_words(idx);
        for (i, chunk) in out[..self.key_size].chunks_mut(8).enumerate() {
            // SAFETY: word `i` lies in the element's key area.
            let word = unsafe { (*w.add(i)).load(Ordering::Relaxed) };
            chunk.copy_from_slice(&word.to_le_bytes()[..chunk.len()]);
        }
    }

    // ---- lock-free lookup ----

    /// The element holding `key`, and its `seq` at the time it matched.
    ///
    /// A hit is validated by the matched element's `seq` (unchanged from
    /// before the key comparison to after it). A miss is validated by the
    /// `seq` of every element the walk went through: if none of them was
    /// freed meanwhile, every link the walk followed was a live link, and
    /// a key present throughout the walk would have been met. (Without
    /// this, a reader standing on an element that is replaced and freed
    /// under it would read the recycled element's link or hash and report
    /// a present key as missing.) Walks longer than [`PATH`] elements,
    /// which a sane hash never makes, look again under the bucket lock.
    ///
    /// # Safety
    /// `key` points at key_size readable bytes.
    #[inline(always)]
    unsafe fn find(&self, key: *const u8, hash: u32) -> Option<(u32, u32)> {
        let b = hash & self.mask;
        let bucket = self.bucket(b);
        let mut restarts = 0u32;
        let mut path = [(0u32, 0u32); PATH];
        'restart: loop {
            restarts += 1;
            if restarts > MAX_RESTARTS {
                return None;
            }
            let mut link = bucket.head.load(Ordering::Acquire);
            let mut walked = 0usize;
            loop {
                let Some(idx) = self.link_idx(link) else {
                    if link != 0 && link != nulls(b) {
                        // The end of another chain (a recycled element
                        // carried us into it), or a corrupted link.
                        continue 'restart;
                    }
                    if walked > PATH {
                        // SAFETY: forwarded.
                        return unsafe { self.find_slow(b, key, hash) };
                    }
                    fence(Ordering::Acquire);
                    let live = path[..walked]
                        .iter()
                        .all(|&(i, s)| self.elem(i).seq.load(Ordering::Relaxed) == s);
                    if live {
                        return None;
                    }
                    continue 'restart;
                };
                let e = self.elem(idx);
                let seq = e.seq.load(Ordering::Acquire);
                if seq & 1 != 0 {
                    // Freed or being rewritten: it was unlinked before, so
                    // a new walk will not meet it again.
                    continue 'restart;
                }
                // SAFETY: the caller vouches for the key; idx < cap.
                if e.hash.load(Ordering::Relaxed) == hash && unsafe { self.key_eq(idx, key) } {
                    fence(Ordering::Acquire);
                    if e.seq.load(Ordering::Relaxed) == seq {
                        return Some((idx, seq));
                    }
                    continue 'restart;
                }
                if let Some(slot) = path.get_mut(walked) {
                    *slot = (idx, seq);
                }
                walked += 1;
                if walked > self.cap as usize {
                    return None;
                }
                link = e.next.load(Ordering::Acquire);
            }
        }
    }

    /// [`HashTable::find`] under the bucket lock (long chains).
    ///
    /// # Safety
    /// `key` points at key_size readable bytes.
    #[cold]
    unsafe fn find_slow(&self, b: u32, key: *const u8, hash: u32) -> Option<(u32, u32)> {
        let _g = self.bucket(b).lock.lock();
        // SAFETY: forwarded; we hold the lock.
        let (_, idx) = unsafe { self.find_locked(b, key, hash) }?;
        Some((idx, self.elem(idx).seq.load(Ordering::Relaxed)))
    }

    /// The element holding `key` in bucket `b` (whose lock the caller
    /// holds) and the link that points at it.
    ///
    /// # Safety
    /// `key` points at key_size readable bytes; the caller holds `b`'s lock.
    unsafe fn find_locked(&self, b: u32, key: *const u8, hash: u32) -> Option<(&AtomicU32, u32)> {
        let mut prev = &self.bucket(b).head;
        let mut steps = 0u32;
        loop {
            let idx = self.link_idx(prev.load(Ordering::Relaxed))?;
            let e = self.elem(idx);
            // SAFETY: forwarded.
            if e.hash.load(Ordering::Relaxed) == hash && unsafe { self.key_eq(idx, key) } {
                return Some((prev, idx));
            }
            prev = &e.next;
            steps += 1;
            if steps > self.cap {
                return None;
            }
        }
    }

    // ---- the element pool ----

    fn pop_free(&self) -> Option<u32> {
        let st = self.st();
        let mut head = st.free_head.load(Ordering::Acquire);
        loop {
            let top = head as u32;
            if top == 0 || top > self.cap {
                return None;
            }
            let idx = top - 1;
            // May be stale if `idx` was popped meanwhile; the tag then makes
            // the CAS fail.
            let next = self.elem(idx).free_next().load(Ordering::Relaxed);
            let new = ((head >> 32).wrapping_add(1) << 32) | u64::from(next);
            match st
                .free_head
                .compare_exchange_weak(head, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(idx),
                Err(h) => head = h,
            }
        }
    }

    fn push_free(&self, idx: u32) {
        let st = self.st();
        let e = self.elem(idx);
        let mut head = st.free_head.load(Ordering::Acquire);
        loop {
            e.free_next().store(head as u32, Ordering::Relaxed);
            let new = ((head >> 32).wrapping_add(1) << 32) | u64::from(idx + 1);
            match st
                .free_head
                .compare_exchange_weak(head, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return,
                Err(h) => head = h,
            }
        }
    }

    fn bump(&self) -> Option<u32> {
        let st = self.st();
        let mut n = st.bump.load(Ordering::Relaxed);
        loop {
            if n >= self.cap {
                return None;
            }
            match st
                .bump
                .compare_exchange_weak(n, n + 1, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Some(n),
                Err(v) => n = v,
            }
        }
    }

    /// Marks element `idx` as being written (odd `seq`); the release fence
    /// orders that before the writes that follow (see `Elem`).
    fn begin_write(&self, idx: u32) {
        let e = self.elem(idx);
        let s = e.seq.load(Ordering::Relaxed);
        if s & 1 == 0 {
            e.seq.store(s.wrapping_add(1), Ordering::Relaxed);
        }
        fence(Ordering::Release);
    }

    /// Makes a written element valid (even `seq`), before it is linked.
    fn end_write(&self, idx: u32) {
        let e = self.elem(idx);
        let s = e.seq.load(Ordering::Relaxed);
        e.seq.store((s | 1).wrapping_add(1), Ordering::Release);
    }

    /// An element to fill (non-LRU), marked as being written.
    fn alloc(&self) -> Option<u32> {
        let idx = self.pop_free().or_else(|| self.bump())?;
        self.begin_write(idx);
        Some(idx)
    }

    /// An element to fill (LRU): free, never used, or evicted.
    fn alloc_lru(&self, protect: u32) -> Result<u32, MapError> {
        let idx = self
            .pop_free()
            .or_else(|| self.bump())
            .or_else(|| self.evict(protect))
            .ok_or(MapError::NoMemory)?;
        self.begin_write(idx);
        Ok(idx)
    }

    /// Returns an unlinked element to the pool.
    fn free(&self, idx: u32) {
        let e = self.elem(idx);
        let s = e.seq.load(Ordering::Relaxed);
        if s & 1 == 0 {
            e.seq.store(s.wrapping_add(1), Ordering::Release);
        }
        self.push_free(idx);
    }

    /// CLOCK eviction (see the module docs). Holds no lock on entry.
    fn evict(&self, protect: u32) -> Option<u32> {
        let st = self.st();
        // Two sweeps: the first may only clear reference bits.
        let limit = 2 * u64::from(self.cap) + 1;
        for scanned in 1..=limit {
            let idx = st.clock.fetch_add(1, Ordering::Relaxed) % self.cap;
            let e = self.elem(idx);
            if e.seq.load(Ordering::Acquire) & 1 != 0 {
                continue;
            }
            if e.lru_ref.load(Ordering::Relaxed) != 0 {
                e.lru_ref.store(0, Ordering::Relaxed);
                continue;
            }
            let hash = e.hash.load(Ordering::Relaxed);
            if hash == protect && scanned <= u64::from(self.cap) {
                continue;
            }
            if self.try_unlink(idx, hash) {
                return Some(idx);
            }
        }
        None
    }

    /// Unlinks element `idx` if it is still linked in `hash`'s bucket and
    /// unreferenced; it is then the caller's (odd `seq`, on no list).
    fn try_unlink(&self, idx: u32, hash: u32) -> bool {
        let b = hash & self.mask;
        let _g = self.bucket(b).lock.lock();
        let mut prev = &self.bucket(b).head;
        let mut steps = 0u32;
        while let Some(i) = self.link_idx(prev.load(Ordering::Relaxed)) {
            let e = self.elem(i);
            if i == idx {
                if e.lru_ref.load(Ordering::Relaxed) != 0 {
                    return false;
                }
                prev.store(e.next.load(Ordering::Relaxed), Ordering::Release);
                self.st().count.fetch_sub(1, Ordering::Relaxed);
                e.seq.store(
                    e.seq.load(Ordering::Relaxed).wrapping_add(1) | 1,
                    Ordering::Release,
                );
                return true;
            }
            prev = &e.next;
            steps += 1;
            if steps > self.cap {
                break;
            }
        }
        false
    }

    // ---- writing values ----

    /// Fills a fresh element: key, hash, values, reference bit.
    ///
    /// # Safety
    /// The element is the caller's (not linked, odd `seq`); `key` and the
    /// source hold what they promise.
    unsafe fn fill(&self, idx: u32, key: *const u8, hash: u32, src: Src) {
        let e = self.elem(idx);
        // SAFETY: forwarded; all writes land in element `idx`.
        unsafe {
            self.store_key(idx, key);
            e.hash.store(hash, Ordering::Relaxed);
            e.lru_ref.store(0, Ordering::Relaxed);
            match src {
                Src::Plain(v) => {
                    let dst = self.value_ptr(idx, 0);
                    copy_value_in(dst, v, self.value_size, self.lock);
                    if let Some(off) = self.lock {
                        std::ptr::write_bytes(dst.add(off as usize), 0, 4);
                    }
                }
                Src::AllCpus(v) => {
                    for c in 0..self.nr_cpus {
                        std::ptr::copy_nonoverlapping(
                            v.add(c as usize * self.val8),
                            self.value_ptr(idx, c),
                            self.val8,
                        );
                    }
                }
                Src::OneCpu(v, cpu) => {
                    for c in 0..self.nr_cpus {
                        let dst = self.value_ptr(idx, c);
                        std::ptr::write_bytes(dst, 0, self.val8);
                        if c == cpu {
                            std::ptr::copy_nonoverlapping(v, dst, self.value_size);
                        }
                    }
                }
            }
        }
    }

    /// Writes the values of an existing (linked) per-CPU element in place.
    ///
    /// # Safety
    /// As [`HashTable::fill`] for the source.
    unsafe fn write_percpu_in_place(&self, idx: u32, src: Src) {
        // SAFETY: forwarded.
        unsafe {
            match src {
                Src::AllCpus(v) => {
                    for c in 0..self.nr_cpus {
                        std::ptr::copy_nonoverlapping(
                            v.add(c as usize * self.val8),
                            self.value_ptr(idx, c),
                            self.val8,
                        );
                    }
                }
                Src::OneCpu(v, cpu) => {
                    std::ptr::copy_nonoverlapping(v, self.value_ptr(idx, cpu), self.value_size)
                }
                Src::Plain(v) => {
                    std::ptr::copy_nonoverlapping(v, self.value_ptr(idx, 0), self.value_size)
                }
            }
        }
    }

    /// `BPF_F_LOCK`: copies into element `idx`'s value under its spin lock.
    ///
    /// # Safety
    /// `v` holds value_size bytes; the map has a spin lock.
    unsafe fn write_locked(&self, idx: u32, v: *const u8) {
        if let Some(off) = self.lock {
            let dst = self.value_ptr(idx, 0);
            // SAFETY: the lock word and the value lie in element `idx`.
            unsafe {
                let _g = value_lock(dst, off).lock();
                copy_value_in(dst, v, self.value_size, self.lock);
            }
        }
    }

    fn src_ptr(src: Src) -> *const u8 {
        match src {
            Src::Plain(v) | Src::AllCpus(v) | Src::OneCpu(v, _) => v,
        }
    }

    // ---- the operations ----

    /// The update both sides share.
    ///
    /// # Safety
    /// `key` points at key_size readable bytes, `src` at what it promises.
    unsafe fn update_impl(&self, key: *const u8, src: Src, flags_: u64) -> Result<(), MapError> {
        if self.percpu || self.lru {
            if flags_ > flags::BPF_EXIST {
                return Err(MapError::Invalid("update flags"));
            }
        } else {
            check_update_flags(flags_, self.lock)?;
        }
        let op = flags_ & !flags::BPF_F_LOCK;
        let locked = flags_ & flags::BPF_F_LOCK != 0;
        // SAFETY: the caller vouches for the key.
        let hash = unsafe { self.hash(key) };

        if locked {
            // As the kernel: update an existing element in place under its
            // spin lock, without the bucket lock.
            // SAFETY: forwarded.
            if let Some((idx, _)) = unsafe { self.find(key, hash) } {
                if op == flags::BPF_NOEXIST {
                    return Err(MapError::Exists);
                }
                // SAFETY: forwarded; the element stays mapped even if freed.
                unsafe { self.write_locked(idx, Self::src_ptr(src)) };
                return Ok(());
            }
            if op == flags::BPF_EXIST {
                return Err(MapError::NotFound);
            }
        }

        if self.lru && self.percpu && op != flags::BPF_NOEXIST {
            // An existing key is updated in place: try that before taking
            // (and maybe evicting for) an element we would not use.
            let b = hash & self.mask;
            let _g = self.bucket(b).lock.lock();
            // SAFETY: forwarded; we hold the lock.
            if let Some((_, idx)) = unsafe { self.find_locked(b, key, hash) } {
                // SAFETY: forwarded.
                unsafe { self.write_percpu_in_place(idx, src) };
                self.elem(idx).lru_ref.store(1, Ordering::Relaxed);
                return Ok(());
            }
            if op == flags::BPF_EXIST {
                return Err(MapError::NotFound);
            }
        }

        // The new element, built before the bucket lock is taken: always
        // for LRU maps (eviction takes another bucket's lock) and plain
        // maps (an existing key is replaced by a new element); per-CPU
        // maps update existing keys in place and allocate under the lock.
        let pre = if self.lru {
            Some(self.alloc_lru(hash)?)
        } else if !self.percpu {
            self.alloc()
        } else {
            None
        };
        if let Some(n) = pre {
            // SAFETY: `n` is ours; forwarded.
            unsafe { self.fill(n, key, hash, src) };
        }

        let b = hash & self.mask;
        let bucket = self.bucket(b);
        let mut to_free: Option<u32> = None;
        let mut used_pre = false;
        let result = {
            let _g = bucket.lock.lock();
            // SAFETY: forwarded; we hold the lock.
            match unsafe { self.find_locked(b, key, hash) } {
                Some(_) if op == flags::BPF_NOEXIST => Err(MapError::Exists),
                Some((_, idx)) if locked => {
                    // Appeared since the lock-free lookup.
                    // SAFETY: forwarded.
                    unsafe { self.write_locked(idx, Self::src_ptr(src)) };
                    Ok(())
                }
                Some((_, idx)) if self.percpu => {
                    // SAFETY: forwarded.
                    unsafe { self.write_percpu_in_place(idx, src) };
                    if self.lru {
                        self.elem(idx).lru_ref.store(1, Ordering::Relaxed);
                    }
                    Ok(())
                }
                Some((prev, old)) => match pre {
                    Some(n) => {
                        let e = self.elem(n);
                        e.next.store(
                            self.elem(old).next.load(Ordering::Relaxed),
                            Ordering::Relaxed,
                        );
                        if self.lru {
                            e.lru_ref.store(1, Ordering::Relaxed);
                        }
                        self.end_write(n);
                        // The one store that swaps the new element in.
                        prev.store(eref(n), Ordering::Release);
                        used_pre = true;
                        to_free = Some(old);
                        Ok(())
                    }
                    // The pool is exhausted (more replacements in flight
                    // than the slack, or leaks of killed writers).
                    None => Err(MapError::Full),
                },
                None if op == flags::BPF_EXIST => Err(MapError::NotFound),
                None => {
                    // A new key.
                    let st = self.st();
                    let admitted =
                        self.lru || st.count.fetch_add(1, Ordering::Relaxed) < self.max_entries;
                    if !admitted {
                        st.count.fetch_sub(1, Ordering::Relaxed);
                        Err(MapError::Full)
                    } else {
                        if self.lru {
                            st.count.fetch_add(1, Ordering::Relaxed);
                        }
                        let n = match pre {
                            Some(n) => Some(n),
                            None if self.percpu => self.alloc().inspect(|&n| {
                                // SAFETY: `n` is ours; forwarded.
                                unsafe { self.fill(n, key, hash, src) }
                            }),
                            None => None,
                        };
                        match n {
                            Some(n) => {
                                let head = bucket.head.load(Ordering::Relaxed);
                                let next = if head == 0 { nulls(b) } else { head };
                                self.elem(n).next.store(next, Ordering::Relaxed);
                                self.end_write(n);
                                // The one store that publishes the element.
                                bucket.head.store(eref(n), Ordering::Release);
                                used_pre = pre.is_some();
                                Ok(())
                            }
                            None => {
                                st.count.fetch_sub(1, Ordering::Relaxed);
                                Err(MapError::Full)
                            }
                        }
                    }
                }
            }
        };
        if let Some(old) = to_free {
            self.free(old);
        }
        if let (Some(n), false) = (pre, used_pre) {
            self.free(n);
        }
        result
    }

    /// Delete, and lookup-and-delete when `out` is given.
    ///
    /// # Safety
    /// `key` points at key_size readable bytes; `out` (if any) holds the
    /// syscall-side value size.
    unsafe fn delete_impl(
        &self,
        key: *const u8,
        out: Option<(*mut u8, bool)>,
    ) -> Result<(), MapError> {
        // SAFETY: forwarded.
        let hash = unsafe { self.hash(key) };
        let b = hash & self.mask;
        let idx = {
            let _g = self.bucket(b).lock.lock();
            // SAFETY: forwarded; we hold the lock.
            let (prev, idx) =
                unsafe { self.find_locked(b, key, hash) }.ok_or(MapError::NotFound)?;
            if let Some((dst, locked)) = out {
                // SAFETY: the element is linked and stable under the lock;
                // `dst` holds what the caller promises.
                unsafe { self.copy_value(idx, dst, locked) };
            }
            prev.store(
                self.elem(idx).next.load(Ordering::Relaxed),
                Ordering::Release,
            );
            self.st().count.fetch_sub(1, Ordering::Relaxed);
            idx
        };
        self.free(idx);
        Ok(())
    }

    /// Copies element `idx`'s value out, syscall style.
    ///
    /// # Safety
    /// `dst` holds value_size bytes (nr_cpus x val8 for per-CPU maps).
    unsafe fn copy_value(&self, idx: u32, dst: *mut u8, locked: bool) {
        // SAFETY: forwarded; reads inside the element's values.
        unsafe {
            if self.percpu {
                for c in 0..self.nr_cpus {
                    std::ptr::copy_nonoverlapping(
                        self.value_ptr(idx, c),
                        dst.add(c as usize * self.val8),
                        self.val8,
                    );
                }
                return;
            }
            let src = self.value_ptr(idx, 0);
            match self.lock {
                Some(off) if locked => {
                    let _g = value_lock(src, off).lock();
                    copy_value_out(dst, src, self.value_size, self.lock);
                }
                _ => copy_value_out(dst, src, self.value_size, self.lock),
            }
        }
    }

    fn syscall_value_len(&self) -> usize {
        if self.percpu {
            self.val8 * self.nr_cpus as usize
        } else {
            self.value_size
        }
    }

    fn check_key(&self, key: &[u8]) -> Result<(), MapError> {
        if key.len() < self.key_size {
            return Err(MapError::Invalid("key size"));
        }
        Ok(())
    }

    /// A pointer to `key`'s value (CPU `cpu`'s for per-CPU maps), or null;
    /// sets the LRU reference bit. What program-side lookups return.
    ///
    /// # Safety
    /// `key` points at key_size readable bytes; `cpu < nr_cpus`.
    #[inline(always)]
    pub(crate) unsafe fn lookup_ptr(&self, key: *const u8, cpu: u32) -> *mut u8 {
        // SAFETY: forwarded.
        let found = unsafe { self.find(key, self.hash(key)) };
        match found {
            Some((idx, _)) => {
                if self.lru {
                    let r = &self.elem(idx).lru_ref;
                    if r.load(Ordering::Relaxed) == 0 {
                        r.store(1, Ordering::Relaxed);
                    }
                }
                self.value_ptr(idx, cpu)
            }
            None => std::ptr::null_mut(),
        }
    }

    /// Live elements, as counted (see the module docs on killed writers).
    pub fn len(&self) -> u32 {
        self.st().count.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks every chain and the pool. Only meaningful while no one
    /// writes the map.
    pub fn audit(&self) -> HashAudit {
        let st = self.st();
        let mut a = HashAudit {
            count: st.count.load(Ordering::Relaxed),
            cap: self.cap,
            ..HashAudit::default()
        };
        let mut seen = vec![0u8; self.cap as usize];
        for b in 0..=self.mask {
            let mut link = self.bucket(b).head.load(Ordering::Acquire);
            if self.bucket(b).lock.is_locked() {
                a.errors.push(format!("bucket {b} is locked"));
            }
            if link == 0 {
                continue;
            }
            loop {
                match self.link_idx(link) {
                    Some(idx) => {
                        if seen[idx as usize] != 0 {
                            a.errors
                                .push(format!("element {idx} linked twice (bucket {b})"));
                            break;
                        }
                        seen[idx as usize] = 1;
                        a.linked += 1;
                        let e = self.elem(idx);
                        if e.hash.load(Ordering::Relaxed) & self.mask != b {
                            a.errors
                                .push(format!("element {idx} in the wrong bucket {b}"));
                        }
                        if e.seq.load(Ordering::Relaxed) & 1 != 0 {
                            a.errors
                                .push(format!("linked element {idx} has an odd seq"));
                        }
                        link = e.next.load(Ordering::Acquire);
                    }
                    None => {
                        if link != nulls(b) {
                            a.errors.push(format!("bucket {b} ends in {link:#x}"));
                        }
                        break;
                    }
                }
            }
        }
        let bump = st.bump.load(Ordering::Relaxed).min(self.cap);
        a.unused = self.cap - bump;
        let mut top = st.free_head.load(Ordering::Acquire) as u32;
        while top != 0 {
            if top > self.cap {
                a.errors.push(format!("free list link {top:#x}"));
                break;
            }
            let idx = top - 1;
            if idx >= bump {
                a.errors.push(format!("free element {idx} was never used"));
            }
            if seen[idx as usize] != 0 {
                a.errors.push(format!("element {idx} both linked and free"));
                break;
            }
            seen[idx as usize] = 2;
            a.free += 1;
            top = self.elem(idx).free_next().load(Ordering::Relaxed);
        }
        a.leaked = self
            .cap
            .saturating_sub(a.linked)
            .saturating_sub(a.free)
            .saturating_sub(a.unused);
        a
    }
}

impl MapOps for HashTable {
    fn lookup(&self, key: &[u8], value: &mut [u8], flags_: u64) -> Result<(), MapError> {
        check_lookup_flags(flags_, self.lock)?;
        self.check_key(key)?;
        if value.len() < self.syscall_value_len() {
            return Err(MapError::Invalid("value size"));
        }
        let locked = flags_ & flags::BPF_F_LOCK != 0;
        let hash = {
            // SAFETY: key_size bytes checked above.
            unsafe { self.hash(key.as_ptr()) }
        };
        for _ in 0..MAX_RESTARTS {
            // SAFETY: key checked above.
            let (idx, seq) = unsafe { self.find(key.as_ptr(), hash) }.ok_or(MapError::NotFound)?;
            // SAFETY: `value` holds the syscall value size (checked above).
            unsafe { self.copy_value(idx, value.as_mut_ptr(), locked) };
            fence(Ordering::Acquire);
            if self.elem(idx).seq.load(Ordering::Relaxed) == seq {
                return Ok(());
            }
            // Recycled while we copied: the copy may mix two values.
        }
        Err(MapError::Busy)
    }

    fn update(&self, key: &[u8], value: &[u8], flags_: u64) -> Result<(), MapError> {
        self.check_key(key)?;
        if value.len() < self.syscall_value_len() {
            return Err(MapError::Invalid("value size"));
        }
        let src = if self.percpu {
            Src::AllCpus(value.as_ptr())
        } else {
            Src::Plain(value.as_ptr())
        };
        // SAFETY: key and value sizes checked above.
        unsafe { self.update_impl(key.as_ptr(), src, flags_) }
    }

    fn delete(&self, key: &[u8]) -> Result<(), MapError> {
        self.check_key(key)?;
        // SAFETY: key checked above.
        unsafe { self.delete_impl(key.as_ptr(), None) }
    }

    fn lookup_and_delete(&self, key: &[u8], value: &mut [u8], flags_: u64) -> Result<(), MapError> {
        check_lookup_flags(flags_, self.lock)?;
        self.check_key(key)?;
        if value.len() < self.syscall_value_len() {
            return Err(MapError::Invalid("value size"));
        }
        let locked = flags_ & flags::BPF_F_LOCK != 0;
        // SAFETY: key and value sizes checked above.
        unsafe { self.delete_impl(key.as_ptr(), Some((value.as_mut_ptr(), locked))) }
    }

    fn next_key(&self, key: Option<&[u8]>, next: &mut [u8]) -> Result<(), MapError> {
        if next.len() < self.key_size {
            return Err(MapError::Invalid("key size"));
        }
        // Where to look for the first key: after `key` in its chain, then
        // in the following buckets; from bucket 0 when `key` is missing
        // (deleted under the iterator: the kernel restarts too).
        let mut start = 0u32;
        if let Some(k) = key {
            self.check_key(k)?;
            // SAFETY: key checked above.
            let hash = unsafe { self.hash(k.as_ptr()) };
            let b = hash & self.mask;
            let _g = self.bucket(b).lock.lock();
            // SAFETY: key checked; we hold the lock.
            if let Some((_, idx)) = unsafe { self.find_locked(b, k.as_ptr(), hash) } {
                if let Some(n) = self.link_idx(self.elem(idx).next.load(Ordering::Relaxed)) {
                    self.copy_key(n, next);
                    return Ok(());
                }
                if b == self.mask {
                    return Err(MapError::NotFound);
                }
                start = b + 1;
            }
        }
        for b in start..=self.mask {
            let bucket = self.bucket(b);
            if bucket.head.load(Ordering::Acquire) == 0 {
                continue;
            }
            let _g = bucket.lock.lock();
            if let Some(n) = self.link_idx(bucket.head.load(Ordering::Relaxed)) {
                self.copy_key(n, next);
                return Ok(());
            }
        }
        Err(MapError::NotFound)
    }

    #[inline]
    unsafe fn prog_lookup(&self, key: *const u8) -> *mut u8 {
        let cpu = if self.percpu {
            crate::cpu::current_cpu().min(self.nr_cpus - 1)
        } else {
            0
        };
        // SAFETY: forwarded.
        unsafe { self.lookup_ptr(key, cpu) }
    }

    unsafe fn prog_update(&self, key: *const u8, value: *const u8, flags_: u64) -> i64 {
        if self.rdonly_prog {
            return -(libc::EPERM as i64);
        }
        let src = if self.percpu {
            Src::OneCpu(value, crate::cpu::current_cpu().min(self.nr_cpus - 1))
        } else {
            Src::Plain(value)
        };
        // SAFETY: the caller vouches for the key and value_size value bytes.
        match unsafe { self.update_impl(key, src, flags_) } {
            Ok(()) => 0,
            Err(e) => e.to_helper_ret(),
        }
    }

    unsafe fn prog_delete(&self, key: *const u8) -> i64 {
        if self.rdonly_prog {
            return -(libc::EPERM as i64);
        }
        // SAFETY: the caller vouches for the key.
        match unsafe { self.delete_impl(key, None) } {
            Ok(()) => 0,
            Err(e) => e.to_helper_ret(),
        }
    }

    unsafe fn prog_lookup_percpu(&self, key: *const u8, cpu: u32) -> *mut u8 {
        if !self.percpu || cpu >= self.nr_cpus {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded; cpu checked.
        unsafe { self.lookup_ptr(key, cpu) }
    }

    fn prog_value_size(&self) -> u32 {
        self.value_size as u32
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
