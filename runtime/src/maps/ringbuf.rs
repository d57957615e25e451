//! `BPF_MAP_TYPE_RINGBUF`: the kernel's ring buffer, in a memfd shared by
//! producers and the consumer of any number of processes.
//!
//! # Layout (data area of the map file, as the kernel's mmap shows it)
//! | file offset | what |
//! |---|---|
//! | 0 | consumer page: `consumer_pos: u64` (written by the consumer, release) |
//! | 4096 | producer page: `producer_pos: u64` (SeqCst store, under the lock), `pending_pos: u64` (under the lock) |
//! | 8192 | data: `max_entries` bytes (a power of two, a multiple of the page size) |
//! | last page | [`MapHeader`], whose `aux` holds `RingAux` |
//!
//! Records are the kernel's: an 8-byte header (`u32 len` with
//! [`BPF_RINGBUF_BUSY_BIT`] and [`BPF_RINGBUF_DISCARD_BIT`], `u32 pg_off`)
//! then the sample, `round_up(len + 8, 8)` bytes in all, at
//! `data + (pos & mask)`. Each process maps the file once more, as the
//! kernel maps its ring: header page, consumer page, producer page, the data
//! pages, and the data pages *again*, so a record that wraps is contiguous
//! for the producer that fills it and the consumer that reads it.
//!
//! # Producers
//! [`RingBuf::reserve`] runs the kernel's algorithm under a [`ShmLock`] in
//! the aux area: advance `pending_pos` over committed records, check room
//! against `consumer_pos` and `pending_pos`, write the header with BUSY,
//! publish `producer_pos`. Committing ([`submit`], [`discard`]) takes no
//! lock: one `SeqCst` swap of the header's `len` clears BUSY (and sets
//! DISCARD), exactly as the kernel's `xchg`. `pg_off` holds, as in the
//! kernel, the page distance from the consumer page to the header (bits
//! 0-20), which lets `submit(sample)` find its ring without a map argument;
//! bits 21-26 hold the index of the producer's reservation slot.
//!
//! # Producers that die
//! A producer killed between reserve and commit would leave a BUSY record
//! that stops the consumer forever. Every reservation therefore records the
//! reserving thread and position in a slot of `RingAux` (under the lock;
//! cleared after the commit). A consumer that stays stuck at a BUSY record
//! checks the slots ([`RingBuf::recover_dead_producers`]): a record whose
//! thread no longer exists is discarded. The lock itself is taken over from
//! a dead holder by [`ShmLock`]; every store under it leaves the ring
//! consistent (the header is written before `producer_pos` publishes it).
//! Producers and consumers must share a pid namespace (thread ids are
//! compared).
//!
//! # Wake-ups
//! The consumer sleeps on the [`WakeChannel`] in the aux area. A commit
//! follows the kernel's rule (wake if `BPF_RB_FORCE_WAKEUP`, or if the
//! consumer has caught up with this record and not `BPF_RB_NO_WAKEUP`), and
//! on top of it makes the `FUTEX_WAKE` syscall only when the channel's
//! waiting flag is set: a ring whose consumer is busy costs no syscall per
//! event. A consumer whose recent sleeps were short polls for a few tens
//! of µs before it sets the flag ([`AdaptiveSpin`]), so a steady stream
//! does not cost a wake-up each time the consumer catches up.
//!
//! # Consumers
//! [`RingBufConsumer`] is what `ring_buffer__*` sits on: `consume` with
//! libbpf's contract, `wait`, [`wait_any`] over several rings (one
//! `futex_waitv`), and a [`WakeSource`] for the eventfd bridge of
//! `ring_buffer__epoll_fd` ([`crate::shm::futex::LazyEventBridge`]).

use std::io;
use std::mem::offset_of;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::{map_type, Map, MapError, MapHeader, MapMem, MapOps, MapSpec, MAP_AUX_SIZE};
use crate::shm::futex::{wait_sources_adaptive, AdaptiveSpin, Readiness, WakeChannel, WakeSource};
use crate::shm::lock::current_tid;
use crate::shm::{ShmLock, PAGE_SIZE};

pub const BPF_RINGBUF_BUSY_BIT: u32 = 1 << 31;
pub const BPF_RINGBUF_DISCARD_BIT: u32 = 1 << 30;
pub const BPF_RINGBUF_HDR_SZ: u32 = 8;

/// Commit flags of `bpf_ringbuf_output/submit/discard`.
pub const BPF_RB_NO_WAKEUP: u64 = 1 << 0;
pub const BPF_RB_FORCE_WAKEUP: u64 = 1 << 1;

/// `bpf_ringbuf_query` flags.
pub const BPF_RB_AVAIL_DATA: u64 = 0;
pub const BPF_RB_RING_SIZE: u64 = 1;
pub const BPF_RB_CONS_POS: u64 = 2;
pub const BPF_RB_PROD_POS: u64 = 3;

/// `RINGBUF_MAX_RECORD_SZ`: the largest sample the kernel reserves.
const MAX_RECORD_SZ: u64 = (u32::MAX / 4) as u64;
/// `BPF_F_NUMA_NODE`, the only creation flag the kernel accepts (besides
/// the overwrite mode of newer kernels, not supported here).
const CREATE_FLAG_MASK: u32 = super::flags::BPF_F_NUMA_NODE;

/// Reservations that may be in flight at once (per ring, all producers).
/// A reserve beyond that fails like a full ring.
pub const RESV_SLOTS: usize = 64;
/// Bits of `pg_off` that hold the page offset; the slot index is above.
const PG_OFF_BITS: u32 = 21;
const PG_OFF_MASK: u32 = (1 << PG_OFF_BITS) - 1;

/// How long the consumer waits at a BUSY record before it checks whether
/// the producer is still alive.
const STUCK_CHECK_AFTER: Duration = Duration::from_millis(20);

/// The record header (`struct bpf_ringbuf_hdr`).
#[repr(C)]
struct RecordHeader {
    /// Sample length | BUSY | DISCARD. Written with BUSY under the lock
    /// (relaxed; published by the SeqCst `producer_pos` store), committed by
    /// a SeqCst swap; read by the consumer with SeqCst.
    len: AtomicU32,
    /// Page offset (bits 0-20) and reservation slot (bits 21-26). Written
    /// with `len`, read by the committer of the same record.
    pg_off: AtomicU32,
}

/// The producer page.
#[repr(C)]
struct ProducerPage {
    /// Bytes ever reserved. SeqCst store under the lock (pairs with the
    /// consumer's readiness check and its acquire loads).
    producer_pos: AtomicU64,
    /// Start of the oldest record that may still be BUSY (the kernel's
    /// `pending_pos`). Under the lock only.
    pending_pos: AtomicU64,
}

/// One in-flight reservation.
#[repr(C)]
struct ResvSlot {
    /// Thread id of the reserving thread, 0 when free. Set under the lock
    /// after `pos`; cleared (release) by the commit, or by recovery (CAS).
    tid: AtomicU32,
    _pad: u32,
    /// `producer_pos` of the record. Written under the lock before `tid`.
    pos: AtomicU64,
}

/// The ring's state in the header page's aux area.
#[repr(C)]
pub(crate) struct RingAux {
    /// Serializes reservations (never held by a commit).
    lock: ShmLock,
    _pad0: [u32; 15],
    /// Where the consumer sleeps (own cache line: producers only read it).
    wake: WakeChannel,
    _pad1: [u32; 14],
    slots: [ResvSlot; RESV_SLOTS],
}

const _: () = assert!(std::mem::size_of::<RingAux>() <= MAP_AUX_SIZE);
const _: () = assert!(offset_of!(RingAux, wake) == 64);
const _: () = assert!(offset_of!(RingAux, slots) == 128);
const _: () = assert!(RESV_SLOTS <= 1 << (32 - PG_OFF_BITS));

/// Why `bpf_ringbuf_output` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OutputError {
    #[error("invalid flags")]
    InvalidFlags,
    #[error("no room in the ring buffer")]
    NoRoom,
}

impl OutputError {
    pub fn errno(self) -> i32 {
        match self {
            OutputError::InvalidFlags => libc::EINVAL,
            OutputError::NoRoom => libc::EAGAIN,
        }
    }
}

/// Why [`RingBufConsumer::consume`] stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConsumeError {
    /// The callback returned this negative value (the record counts as
    /// consumed, as in libbpf).
    #[error("callback returned {0}")]
    Callback(i32),
    /// A record header claimed more than the ring holds (a corrupted ring:
    /// only a writer outside userbpf can do that). The consumer skipped to
    /// the producer position so the ring works again.
    #[error("corrupted record header")]
    Corrupt,
}

impl ConsumeError {
    /// libbpf's return value: the callback's value, or `-EINVAL`.
    pub fn to_ret(self) -> i32 {
        match self {
            ConsumeError::Callback(e) => e,
            ConsumeError::Corrupt => -libc::EINVAL,
        }
    }
}

pub(crate) fn data_size(spec: &MapSpec) -> Result<usize, MapError> {
    if spec.map_flags & !CREATE_FLAG_MASK != 0 {
        return Err(MapError::Invalid("ringbuf: unsupported map flags"));
    }
    if spec.key_size != 0 || spec.value_size != 0 {
        return Err(MapError::Invalid(
            "ringbuf: key_size and value_size must be 0",
        ));
    }
    let size = spec.max_entries as usize;
    if !size.is_power_of_two() || !size.is_multiple_of(PAGE_SIZE) {
        return Err(MapError::Invalid(
            "ringbuf: max_entries must be a power of 2 and a multiple of the page size",
        ));
    }
    Ok(2 * PAGE_SIZE + size)
}

pub(crate) fn init(_spec: &MapSpec, _mem: &MapMem) -> Result<(), MapError> {
    // All-zero is an empty ring: positions 0, no reservations, idle channel.
    Ok(())
}

pub(crate) fn open(spec: &MapSpec, mem: Arc<MapMem>) -> Result<Box<dyn MapOps>, MapError> {
    Ok(Box::new(RingBuf::new(spec, mem)?))
}

/// This process's double mapping of a ring (see the module documentation).
struct RingView {
    region: *mut u8,
    region_len: usize,
    /// The consumer page (`region + PAGE_SIZE`).
    base: *mut u8,
    size: u64,
}

// SAFETY: the view is shared memory used only through atomics and
// under the ring's protocol.
unsafe impl Send for RingView {}
// SAFETY: as above.
unsafe impl Sync for RingView {}

/// Data ranges of this process's ring views, for checking sample pointers
/// in checked runs: (data start, data end of the second copy, base).
static LIVE_VIEWS: RwLock<Vec<(usize, usize, usize)>> = RwLock::new(Vec::new());

impl RingView {
    fn map(fd: BorrowedFd<'_>, size: usize) -> io::Result<RingView> {
        let region_len = PAGE_SIZE + 2 * PAGE_SIZE + 2 * size;
        // SAFETY: reserves address space only (PROT_NONE, private, anonymous).
        let region = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                region_len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if region == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let region = region.cast::<u8>();
        let view = RingView {
            region,
            region_len,
            // SAFETY: inside the reservation.
            base: unsafe { region.add(PAGE_SIZE) },
            size: size as u64,
        };
        // (address offset, length, file offset): header page, then the
        // consumer/producer pages with the data, then the data again.
        let header_off = 2 * PAGE_SIZE + size;
        let parts = [
            (0, PAGE_SIZE, header_off),
            (PAGE_SIZE, 2 * PAGE_SIZE + size, 0),
            (3 * PAGE_SIZE + size, size, 2 * PAGE_SIZE),
        ];
        for (at, len, file_off) in parts {
            // SAFETY: replaces part of our own reservation (MAP_FIXED inside
            // it) with a shared mapping of the map file, which is at least
            // `file_off + len` long (sealed against shrinking).
            let p = unsafe {
                libc::mmap(
                    region.add(at).cast(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED | libc::MAP_FIXED,
                    fd.as_raw_fd(),
                    file_off as libc::off_t,
                )
            };
            if p == libc::MAP_FAILED {
                // `view` unmaps the whole region when dropped.
                return Err(io::Error::last_os_error());
            }
        }
        let data = view.data() as usize;
        LIVE_VIEWS.write().unwrap_or_else(|e| e.into_inner()).push((
            data,
            data + 2 * size,
            view.base as usize,
        ));
        Ok(view)
    }

    fn header(&self) -> &MapHeader {
        // SAFETY: the page before `base` maps the map's header page.
        unsafe { &*(self.base.sub(PAGE_SIZE) as *const MapHeader) }
    }

    fn aux(&self) -> &RingAux {
        // SAFETY: the aux area is 8-aligned, MAP_AUX_SIZE bytes, and holds a
        // RingAux (all-atomic, valid when zero-filled).
        unsafe { &*(self.header().aux.as_ptr() as *const RingAux) }
    }

    fn consumer_pos(&self) -> &AtomicU64 {
        // SAFETY: the consumer page starts at `base`.
        unsafe { &*(self.base as *const AtomicU64) }
    }

    fn producer(&self) -> &ProducerPage {
        // SAFETY: the producer page is the page after `base`.
        unsafe { &*(self.base.add(PAGE_SIZE) as *const ProducerPage) }
    }

    fn data(&self) -> *mut u8 {
        // SAFETY: the data starts two pages after `base`.
        unsafe { self.base.add(2 * PAGE_SIZE) }
    }

    fn mask(&self) -> u64 {
        self.size - 1
    }

    /// The header of the record at position `pos`.
    fn hdr_at(&self, pos: u64) -> &RecordHeader {
        // SAFETY: `pos & mask` < size; the header is 8-aligned because every
        // record length is a multiple of 8; the data is mapped twice, so a
        // header at the end is followed by the rest of its record.
        unsafe { &*(self.data().add((pos & self.mask()) as usize) as *const RecordHeader) }
    }
}

impl Drop for RingView {
    fn drop(&mut self) {
        let data = self.data() as usize;
        LIVE_VIEWS
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|v| v.0 != data);
        // SAFETY: unmaps exactly the reservation `map` made (and the shared
        // mappings placed inside it); nothing borrows from it any more.
        unsafe { libc::munmap(self.region.cast(), self.region_len) };
    }
}

fn round_up8(n: u64) -> u64 {
    (n + 7) & !7
}

/// Bytes a record with this header `len` occupies.
fn record_len(len: u32) -> u64 {
    round_up8(u64::from(len & !(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT)) + 8)
}

fn tid_alive(tid: u32) -> bool {
    // SAFETY: signal 0 only checks existence; works for any thread id.
    let r = unsafe { libc::kill(tid as libc::pid_t, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// A ring buffer map mapped into this process (the map type's [`MapOps`]).
pub struct RingBuf {
    view: RingView,
    /// The last consumer position this process read (see `reserve`).
    cons_cache: AtomicU64,
    // Keeps the map file (and its fd) alive with the view.
    _mem: Arc<MapMem>,
}

impl std::fmt::Debug for RingBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingBuf")
            .field("size", &self.view.size)
            .finish()
    }
}

impl RingBuf {
    fn new(spec: &MapSpec, mem: Arc<MapMem>) -> Result<RingBuf, MapError> {
        let size = data_size(spec)? - 2 * PAGE_SIZE;
        if mem.data_size() != 2 * PAGE_SIZE + size {
            return Err(MapError::NotAMap);
        }
        let view = RingView::map(mem.file().fd(), size)?;
        Ok(RingBuf {
            view,
            cons_cache: AtomicU64::new(0),
            _mem: mem,
        })
    }

    /// Data bytes of the ring (`max_entries`).
    pub fn size(&self) -> u64 {
        self.view.size
    }

    pub fn consumer_pos(&self) -> u64 {
        self.view.consumer_pos().load(Ordering::Acquire)
    }

    pub fn producer_pos(&self) -> u64 {
        self.view.producer().producer_pos.load(Ordering::Acquire)
    }

    /// Bytes reserved and not yet consumed (`BPF_RB_AVAIL_DATA`).
    pub fn avail_data(&self) -> u64 {
        self.producer_pos().wrapping_sub(self.consumer_pos())
    }

    /// The consumer's wake-up channel.
    pub fn channel(&self) -> &WakeChannel {
        &self.view.aux().wake
    }

    /// `bpf_ringbuf_query`.
    pub fn query(&self, flags: u64) -> u64 {
        match flags {
            BPF_RB_AVAIL_DATA => self.avail_data(),
            BPF_RB_RING_SIZE => self.size(),
            BPF_RB_CONS_POS => self.consumer_pos(),
            BPF_RB_PROD_POS => self.producer_pos(),
            _ => 0,
        }
    }

    /// `bpf_ringbuf_reserve`: a pointer to `size` writable bytes in the
    /// ring, or `None` when the sample is too large or there is no room.
    /// The sample must be committed with [`submit`] or [`discard`].
    pub fn reserve(&self, size: u64) -> Option<NonNull<u8>> {
        if size > MAX_RECORD_SZ {
            return None;
        }
        let len = round_up8(size + u64::from(BPF_RINGBUF_HDR_SZ));
        if len > self.view.size {
            return None;
        }
        let v = &self.view;
        let mask = v.mask();
        // The consumer writes its position after every record; reading it
        // on every reserve would pull that line across cores each time.
        // A stale (smaller) copy is conservative: reload only when it says
        // there is no room.
        let mut cons = self.cons_cache.load(Ordering::Relaxed);
        let aux = v.aux();
        let prod_page = v.producer();
        let _guard = aux.lock.lock();
        let prod = prod_page.producer_pos.load(Ordering::Relaxed);
        let mut pend = prod_page.pending_pos.load(Ordering::Relaxed).min(prod);
        // The kernel's pending_pos: the consumer position comes from a
        // writable page and may lie, so never reuse the space of a record
        // that is still BUSY, whatever it says.
        while pend < prod {
            let l = v.hdr_at(pend).len.load(Ordering::Acquire);
            if l & BPF_RINGBUF_BUSY_BIT != 0 {
                break;
            }
            pend += record_len(l);
        }
        let pend = pend.min(prod);
        if pend != prod_page.pending_pos.load(Ordering::Relaxed) {
            prod_page.pending_pos.store(pend, Ordering::Relaxed);
        }
        let new_prod = prod + len;
        if new_prod.wrapping_sub(cons) > mask {
            cons = v.consumer_pos().load(Ordering::Acquire);
            self.cons_cache.store(cons, Ordering::Relaxed);
            if new_prod.wrapping_sub(cons) > mask {
                return None;
            }
        }
        if new_prod.wrapping_sub(pend) > mask {
            return None;
        }
        let slot_idx = aux
            .slots
            .iter()
            .position(|s| s.tid.load(Ordering::Relaxed) == 0)?;
        let slot = &aux.slots[slot_idx];
        let hdr_ptr = v.hdr_at(prod) as *const RecordHeader as usize;
        let page_off = ((hdr_ptr & !(PAGE_SIZE - 1)) - v.base as usize) / PAGE_SIZE;
        let hdr = v.hdr_at(prod);
        hdr.len
            .store(size as u32 | BPF_RINGBUF_BUSY_BIT, Ordering::Relaxed);
        hdr.pg_off.store(
            page_off as u32 | ((slot_idx as u32) << PG_OFF_BITS),
            Ordering::Relaxed,
        );
        slot.pos.store(prod, Ordering::Relaxed);
        slot.tid.store(current_tid(), Ordering::Relaxed);
        // Publishes the header (and the slot) to the consumer; SeqCst for
        // the wake-up protocol (see WakeChannel).
        prod_page.producer_pos.store(new_prod, Ordering::SeqCst);
        // SAFETY: the sample follows the header inside the double mapping.
        NonNull::new(unsafe { (hdr_ptr as *mut u8).add(BPF_RINGBUF_HDR_SZ as usize) })
    }

    /// `bpf_ringbuf_output`: reserve, copy, commit.
    pub fn output(&self, data: &[u8], flags: u64) -> Result<(), OutputError> {
        // SAFETY: `data` is a valid slice.
        unsafe { self.output_raw(data.as_ptr(), data.len() as u64, flags) }
    }

    /// [`RingBuf::output`] from a raw pointer.
    ///
    /// # Safety
    /// `src` must be readable for `len` bytes.
    pub unsafe fn output_raw(
        &self,
        src: *const u8,
        len: u64,
        flags: u64,
    ) -> Result<(), OutputError> {
        if flags & !(BPF_RB_NO_WAKEUP | BPF_RB_FORCE_WAKEUP) != 0 {
            return Err(OutputError::InvalidFlags);
        }
        let sample = self.reserve(len).ok_or(OutputError::NoRoom)?;
        // SAFETY: the caller vouches for `src`; the sample has `len` bytes
        // (reserve succeeded), and the two never overlap (the ring is ours).
        unsafe {
            std::ptr::copy_nonoverlapping(src, sample.as_ptr(), len as usize);
            commit(sample.as_ptr(), flags, false);
        }
        Ok(())
    }

    /// Discards BUSY records whose reserving thread no longer exists, so
    /// that the consumer can go past them. Returns how many. Safe to run at
    /// any time, from any process, concurrently with producers.
    pub fn recover_dead_producers(&self) -> usize {
        let v = &self.view;
        let aux = v.aux();
        let mut recovered = 0;
        for (idx, slot) in aux.slots.iter().enumerate() {
            let tid = slot.tid.load(Ordering::Acquire);
            if tid == 0 || tid_alive(tid) {
                continue;
            }
            let pos = slot.pos.load(Ordering::Relaxed);
            let cons = v.consumer_pos().load(Ordering::Acquire);
            let prod = v.producer().producer_pos.load(Ordering::SeqCst);
            // Only a published, unconsumed record whose header names this
            // slot is this slot's record; anything else is a leftover of a
            // producer that died after committing or before publishing.
            if pos >= cons && pos < prod {
                let hdr = v.hdr_at(pos);
                let l = hdr.len.load(Ordering::SeqCst);
                let owner = (hdr.pg_off.load(Ordering::Relaxed) >> PG_OFF_BITS) as usize;
                if l & BPF_RINGBUF_BUSY_BIT != 0
                    && owner == idx
                    && hdr
                        .len
                        .compare_exchange(
                            l,
                            (l & !BPF_RINGBUF_BUSY_BIT) | BPF_RINGBUF_DISCARD_BIT,
                            Ordering::SeqCst,
                            Ordering::Relaxed,
                        )
                        .is_ok()
                {
                    recovered += 1;
                }
            }
            let _ = slot
                .tid
                .compare_exchange(tid, 0, Ordering::Release, Ordering::Relaxed);
        }
        recovered
    }

    /// True when the record at the consumer position is committed.
    fn ready(&self) -> bool {
        let v = &self.view;
        let cons = v.consumer_pos().load(Ordering::SeqCst);
        let prod = v.producer().producer_pos.load(Ordering::SeqCst);
        cons < prod && v.hdr_at(cons).len.load(Ordering::SeqCst) & BPF_RINGBUF_BUSY_BIT == 0
    }

    /// Fraction of the ring holding unconsumed records.
    fn fill(&self) -> f64 {
        self.avail_data() as f64 / self.size() as f64
    }

    /// True when the consumer is blocked by a BUSY record.
    fn blocked_by_busy(&self) -> bool {
        let v = &self.view;
        let cons = v.consumer_pos().load(Ordering::Acquire);
        let prod = v.producer().producer_pos.load(Ordering::Acquire);
        cons < prod && v.hdr_at(cons).len.load(Ordering::Acquire) & BPF_RINGBUF_BUSY_BIT != 0
    }
}

/// Finds the ring of a sample pointer from its header, as the kernel's
/// `bpf_ringbuf_restore_from_rec`: (header, consumer page of the view).
///
/// # Safety
/// `sample` came from [`RingBuf::reserve`] of a ring still mapped here.
unsafe fn ring_of(sample: *mut u8) -> (&'static RecordHeader, *mut u8) {
    // SAFETY: per the contract, the header precedes the sample.
    let hdr = unsafe { &*(sample.sub(BPF_RINGBUF_HDR_SZ as usize) as *const RecordHeader) };
    let page_off = (hdr.pg_off.load(Ordering::Relaxed) & PG_OFF_MASK) as usize;
    let hdr_page = hdr as *const RecordHeader as usize & !(PAGE_SIZE - 1);
    (hdr, (hdr_page - page_off * PAGE_SIZE) as *mut u8)
}

/// `bpf_ringbuf_submit` (`discard == false`) and `bpf_ringbuf_discard`.
///
/// # Safety
/// `sample` came from [`RingBuf::reserve`] of a ring still mapped in this
/// process and was not committed yet.
pub unsafe fn commit(sample: *mut u8, flags: u64, discard: bool) {
    // SAFETY: forwarded contract.
    let (hdr, base) = unsafe { ring_of(sample) };
    let len = hdr.len.load(Ordering::Relaxed);
    let slot_idx = (hdr.pg_off.load(Ordering::Relaxed) >> PG_OFF_BITS) as usize % RESV_SLOTS;
    let mut new_len = len & !BPF_RINGBUF_BUSY_BIT;
    if discard {
        new_len |= BPF_RINGBUF_DISCARD_BIT;
    }
    // The commit: one atomic swap, no lock (SeqCst: wake-up protocol).
    hdr.len.swap(new_len, Ordering::SeqCst);
    // SAFETY: `base` is the consumer page of the view the sample lives in;
    // the header page precedes it (see RingView).
    let header = unsafe { &*(base.sub(PAGE_SIZE) as *const MapHeader) };
    // SAFETY: as in RingView::aux.
    let aux = unsafe { &*(header.aux.as_ptr() as *const RingAux) };
    aux.slots[slot_idx].tid.store(0, Ordering::Release);
    if flags & BPF_RB_FORCE_WAKEUP == 0 && flags & BPF_RB_NO_WAKEUP != 0 {
        return;
    }
    if !aux.wake.has_waiters() {
        return;
    }
    let wake = if flags & BPF_RB_FORCE_WAKEUP != 0 {
        true
    } else {
        let mask = u64::from(header.max_entries).wrapping_sub(1);
        // SAFETY: the consumer page starts at `base`. Acquire after the
        // SeqCst read of the waiting flag: sees the position the waiter
        // stored before it armed.
        let cons = unsafe { &*(base as *const AtomicU64) }.load(Ordering::Acquire) & mask;
        // SAFETY: data starts two pages after `base`.
        let rec_pos = hdr as *const RecordHeader as u64 - unsafe { base.add(2 * PAGE_SIZE) } as u64;
        cons == rec_pos
    };
    if wake {
        aux.wake.wake_waiters();
    }
}

/// `bpf_ringbuf_submit`.
///
/// # Safety
/// See [`commit`].
pub unsafe fn submit(sample: *mut u8, flags: u64) {
    // SAFETY: forwarded contract.
    unsafe { commit(sample, flags, false) }
}

/// `bpf_ringbuf_discard`.
///
/// # Safety
/// See [`commit`].
pub unsafe fn discard(sample: *mut u8, flags: u64) {
    // SAFETY: forwarded contract.
    unsafe { commit(sample, flags, true) }
}

/// For checked runs: true when `sample` is a BUSY sample of a ring mapped
/// in this process (so [`commit`] may follow its header).
pub(crate) fn is_live_sample(sample: u64) -> bool {
    if !sample.is_multiple_of(8) {
        return false;
    }
    let views = LIVE_VIEWS.read().unwrap_or_else(|e| e.into_inner());
    let Some(&(_, _, base)) = views
        .iter()
        .find(|(start, end, _)| sample >= *start as u64 + 8 && sample < *end as u64)
    else {
        return false;
    };
    let hdr_addr = sample - 8;
    // SAFETY: the header lies inside a live view's data (checked above);
    // the view cannot be unmapped while we hold the registry's read lock.
    let hdr = unsafe { &*(hdr_addr as *const RecordHeader) };
    let pg = hdr.pg_off.load(Ordering::Relaxed);
    let expected = ((hdr_addr as usize & !(PAGE_SIZE - 1)) - base) / PAGE_SIZE;
    hdr.len.load(Ordering::Acquire) & BPF_RINGBUF_BUSY_BIT != 0
        && (pg & PG_OFF_MASK) as usize == expected
}

impl MapOps for RingBuf {
    fn lookup(&self, _key: &[u8], _value: &mut [u8], _flags: u64) -> Result<(), MapError> {
        Err(MapError::NotSupported)
    }
    fn update(&self, _key: &[u8], _value: &[u8], _flags: u64) -> Result<(), MapError> {
        Err(MapError::NotSupported)
    }
    fn delete(&self, _key: &[u8]) -> Result<(), MapError> {
        Err(MapError::NotSupported)
    }
    fn next_key(&self, _key: Option<&[u8]>, _next: &mut [u8]) -> Result<(), MapError> {
        Err(MapError::NotSupported)
    }
    unsafe fn prog_lookup(&self, _key: *const u8) -> *mut u8 {
        std::ptr::null_mut()
    }
    unsafe fn prog_update(&self, _key: *const u8, _value: *const u8, _flags: u64) -> i64 {
        -i64::from(libc::EOPNOTSUPP)
    }
    unsafe fn prog_delete(&self, _key: *const u8) -> i64 {
        -i64::from(libc::EOPNOTSUPP)
    }
    fn prog_value_size(&self) -> u32 {
        0
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// The consumer of one ring (what `ring_buffer__add` sets up), with
/// libbpf's contract.
pub struct RingBufConsumer {
    map: Arc<Map>,
    ring: NonNull<RingBuf>,
    /// Position where consumption last stopped at a BUSY record, and since
    /// when (to check for a dead producer).
    stuck: std::cell::Cell<Option<(u64, Instant)>>,
    /// Whether waits poll briefly before sleeping (events streaming).
    spin: AdaptiveSpin,
}

// SAFETY: `ring` points into `map`, which the consumer keeps alive; the
// ring itself is Sync. The `stuck` cell makes it !Sync, as libbpf's
// ring_buffer is not thread-safe either.
unsafe impl Send for RingBufConsumer {}

impl std::fmt::Debug for RingBufConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingBufConsumer")
            .field("map", &self.map.id())
            .finish()
    }
}

/// A ring as a [`WakeSource`] for [`crate::shm::futex::EventBridge`].
struct RingSource(Arc<Map>);

impl RingSource {
    fn ring(&self) -> Option<&RingBuf> {
        self.0.downcast::<RingBuf>()
    }
}

impl WakeSource for RingSource {
    fn channel(&self) -> &WakeChannel {
        static IDLE: WakeChannel = WakeChannel::new();
        self.ring().map_or(&IDLE, |r| r.channel())
    }
    fn ready(&self) -> bool {
        self.ring().is_some_and(|r| r.ready())
    }
    fn fill(&self) -> f64 {
        self.ring().map_or(0.0, |r| r.fill())
    }
}

impl RingBufConsumer {
    /// A consumer for a `RINGBUF` map (`-EINVAL` for any other type, as
    /// `ring_buffer__add`).
    pub fn new(map: Arc<Map>) -> Result<RingBufConsumer, MapError> {
        if map.map_type() != map_type::RINGBUF {
            return Err(MapError::Invalid("not a ring buffer map"));
        }
        let ring = NonNull::from(
            map.downcast::<RingBuf>()
                .ok_or(MapError::Invalid("not a ring buffer map"))?,
        );
        Ok(RingBufConsumer {
            map,
            ring,
            stuck: std::cell::Cell::new(None),
            spin: AdaptiveSpin::new(),
        })
    }

    fn ring(&self) -> &RingBuf {
        // SAFETY: points into `self.map`, alive as long as `self`.
        unsafe { self.ring.as_ref() }
    }

    pub fn map(&self) -> &Arc<Map> {
        &self.map
    }

    /// `ring__size`.
    pub fn size(&self) -> u64 {
        self.ring().size()
    }

    /// `ring__consumer_pos`.
    pub fn consumer_pos(&self) -> u64 {
        self.ring().consumer_pos()
    }

    /// `ring__producer_pos`.
    pub fn producer_pos(&self) -> u64 {
        self.ring().producer_pos()
    }

    /// `ring__avail_data_size`.
    pub fn avail_data_size(&self) -> u64 {
        self.ring().avail_data()
    }

    /// True when a committed record waits at the consumer position.
    pub fn ready(&self) -> bool {
        self.ring().ready()
    }

    /// libbpf's `ringbuf_process_ring`: calls `cb` with each committed
    /// sample, in order, up to `max` samples. Stops at a BUSY record, skips
    /// discarded ones, stores `consumer_pos` (release) after each record.
    /// A callback returning `< 0` stops consumption after its record and
    /// the value is returned as [`ConsumeError::Callback`]. Returns the
    /// number of samples given to `cb`.
    pub fn consume(&self, max: u64, mut cb: impl FnMut(&[u8]) -> i32) -> Result<u64, ConsumeError> {
        let ring = self.ring();
        let v = &ring.view;
        let cons_word = v.consumer_pos();
        let mut count = 0u64;
        let mut cons = cons_word.load(Ordering::Acquire);
        loop {
            let mut got_new_data = false;
            let prod = v.producer().producer_pos.load(Ordering::Acquire);
            while cons < prod {
                let hdr = v.hdr_at(cons);
                let len = hdr.len.load(Ordering::Acquire);
                if len & BPF_RINGBUF_BUSY_BIT != 0 {
                    if self.check_stuck(cons) {
                        // A dead producer's record was discarded: go on.
                        continue;
                    }
                    return Ok(count);
                }
                let rec = record_len(len);
                if rec > v.size || rec > prod - cons {
                    cons_word.store(prod, Ordering::Release);
                    return Err(ConsumeError::Corrupt);
                }
                got_new_data = true;
                cons += rec;
                if len & BPF_RINGBUF_DISCARD_BIT == 0 {
                    let sample_len =
                        (len & !(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT)) as usize;
                    // SAFETY: the committed sample follows its header; the
                    // data is mapped twice, so `sample_len` (< size) bytes
                    // are mapped contiguously; producers do not touch a
                    // committed record until consumer_pos passes it.
                    let sample = unsafe {
                        std::slice::from_raw_parts(
                            (hdr as *const RecordHeader as *const u8).add(8),
                            sample_len,
                        )
                    };
                    let r = cb(sample);
                    if r < 0 {
                        cons_word.store(cons, Ordering::Release);
                        return Err(ConsumeError::Callback(r));
                    }
                    count += 1;
                }
                cons_word.store(cons, Ordering::Release);
                if count >= max {
                    return Ok(count);
                }
            }
            self.stuck.set(None);
            if !got_new_data {
                return Ok(count);
            }
        }
    }

    /// Called when consumption stops at a BUSY record at `pos`: after
    /// [`STUCK_CHECK_AFTER`] at the same place, looks for a dead producer.
    /// True if a record was recovered.
    fn check_stuck(&self, pos: u64) -> bool {
        match self.stuck.get() {
            Some((p, since)) if p == pos => {
                if since.elapsed() >= STUCK_CHECK_AFTER {
                    self.stuck.set(Some((pos, Instant::now())));
                    return self.ring().recover_dead_producers() > 0;
                }
                false
            }
            _ => {
                self.stuck.set(Some((pos, Instant::now())));
                false
            }
        }
    }

    /// Sleeps until a committed record is available (true) or `timeout`
    /// (`None`: forever) expires (false). Producers wake it without a
    /// syscall on their side unless it sleeps; while events stream in, it
    /// polls for up to [`crate::shm::futex::SPIN_LIMIT`] before sleeping
    /// (see [`AdaptiveSpin`]). A record left BUSY by a dead producer is
    /// recovered while waiting.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        wait_any(&[self], timeout)
    }

    /// This ring as a wake source for an [`crate::shm::futex::EventBridge`].
    pub fn wake_source(&self) -> Arc<dyn WakeSource> {
        Arc::new(RingSource(self.map.clone()))
    }
}

/// Waits until one of `rings` has a committed record (true) or `timeout`
/// expires or a signal arrives (false): one `futex_waitv` over all the
/// rings' channels. See [`poll`].
pub fn wait_any(rings: &[&RingBufConsumer], timeout: Option<Duration>) -> bool {
    poll(rings, timeout) == Readiness::Ready
}

/// What `ring_buffer__poll` waits with: until one of `rings` has a
/// committed record, `timeout` (`None`: forever) expires, or a signal
/// interrupts the sleep. Avoids wake-ups while events stream in (the first
/// ring's [`AdaptiveSpin`]) and recovers records left BUSY by dead
/// producers (it looks every 20 ms while a ring is blocked by one).
pub fn poll(rings: &[&RingBufConsumer], timeout: Option<Duration>) -> Readiness {
    let deadline = timeout.map(|t| Instant::now() + t);
    let sources: Vec<RingSourceRef<'_>> = rings.iter().map(|r| RingSourceRef(r.ring())).collect();
    let dyn_sources: Vec<&dyn WakeSource> = sources.iter().map(|s| s as &dyn WakeSource).collect();
    loop {
        let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        // A BUSY record may belong to a dead producer: look again now and
        // then instead of sleeping for the whole timeout.
        let busy = rings.iter().any(|r| r.ring().blocked_by_busy());
        let step = if busy {
            Some(remaining.map_or(STUCK_CHECK_AFTER, |r| r.min(STUCK_CHECK_AFTER)))
        } else {
            remaining
        };
        match wait_sources_adaptive(&dyn_sources, step, rings.first().map(|r| &r.spin)) {
            Readiness::Ready => return Readiness::Ready,
            Readiness::Interrupted => return Readiness::Interrupted,
            Readiness::TimedOut => {}
        }
        if busy {
            for r in rings {
                if r.ring().blocked_by_busy() && r.ring().recover_dead_producers() > 0 {
                    return Readiness::Ready;
                }
            }
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Readiness::TimedOut;
        }
    }
}

struct RingSourceRef<'a>(&'a RingBuf);

impl WakeSource for RingSourceRef<'_> {
    fn channel(&self) -> &WakeChannel {
        self.0.channel()
    }
    fn ready(&self) -> bool {
        self.0.ready()
    }
    fn fill(&self) -> f64 {
        self.0.fill()
    }
}
