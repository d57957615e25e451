//! `BPF_MAP_TYPE_PERF_EVENT_ARRAY` and [`PerfRing`], the user-space
//! stand-in for a `PERF_COUNT_SW_BPF_OUTPUT` perf event.
//!
//! # The kernel's model, kept
//! The consumer (`perf_buffer__new`) creates one ring per CPU and stores
//! its fd in slot `cpu` with `bpf_map_update_elem(map, &cpu, &fd)`;
//! programs call `bpf_perf_event_output(ctx, map, flags, data, size)` with
//! `BPF_F_CURRENT_CPU` (or an index) in `flags`. Here the fd is a
//! [`PerfRing`] memfd made by [`PerfRing::create`].
//!
//! # PerfRing layout (one memfd of `1 + page_cnt` pages)
//! Page 0 is the control page, modelled on `struct perf_event_mmap_page`:
//! `data_head` at 1024, `data_tail` at 1032, `data_offset` at 1040 and
//! `data_size` at 1048, as the kernel has them; the first bytes hold our
//! magic, version and page count, then the producers' lock, the wake-up
//! channel and the lost counters (see [`PerfCtl`]). Pages 1.. are the data:
//! `PERF_RECORD_SAMPLE` records (`struct perf_event_header {u32 type; u16
//! misc; u16 size}`, `u32 size`, the raw data, padded to 8 with the
//! padding counted in the raw size, as the kernel does) and
//! `PERF_RECORD_LOST` records (`header, u64 id, u64 lost`). Records wrap
//! around the end of the data area, as the kernel's.
//!
//! Producers serialize on a [`ShmLock`] and write the record, then publish
//! `data_head` (SeqCst store); a record that does not fit counts as lost
//! and is reported with a `PERF_RECORD_LOST` before the next record that
//! fits, as the kernel does. The consumer reads up to `data_head` and
//! stores `data_tail` (release). Wake-ups use the same [`WakeChannel`]
//! protocol as the ring buffer (a syscall only when the consumer sleeps);
//! every sample wakes, as libbpf's `wakeup_events = 1`.
//!
//! # Reaching a ring from another process
//! A map slot (`PerfSlot`) stores the ring's [`FileId`] and the pid and
//! fd number through which it can be opened: `/proc/<pid>/fd/<n>`. The
//! process that updates the slot keeps its own duplicate of the fd open for
//! as long as it holds the map (as the kernel's map holds a reference to
//! the perf event file), so the consumer may close its fd. A producer opens
//! the ring on first use, checks the [`FileId`], and caches the mapping per
//! slot with the slot's generation: the fast path is a generation compare
//! under an uncontended read lock, with no syscall. Both processes must be
//! able to open each other's `/proc/<pid>/fd` (same user).
//!
//! # Differences from the kernel
//! - `bpf_perf_event_output` with an explicit index other than the current
//!   CPU returns `-EOPNOTSUPP`, as the kernel does for an event bound to
//!   another CPU: slot `i` is taken to hold CPU `i`'s ring (what
//!   `perf_buffer__new` stores; raw perf buffers with other key-to-CPU
//!   mappings are judged by the same rule). Our rings themselves would
//!   take writers from any CPU.
//! - Syscall-side lookups fail with [`MapError::NotSupported`], as the
//!   kernel's (`ENOTSUPP`, 524).

use std::collections::HashMap;
use std::mem::offset_of;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::Path;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::Duration;

use super::{map_type, Map, MapError, MapMem, MapOps, MapSpec, MAP_AUX_SIZE};
use crate::shm::futex::{wait_sources_adaptive, AdaptiveSpin, Readiness, WakeChannel, WakeSource};
use crate::shm::{FileId, ShmFile, ShmLock, PAGE_SIZE};

/// `BPF_F_INDEX_MASK` / `BPF_F_CURRENT_CPU`.
pub const BPF_F_INDEX_MASK: u64 = 0xffff_ffff;
pub const BPF_F_CURRENT_CPU: u64 = BPF_F_INDEX_MASK;
/// `BPF_F_PRESERVE_ELEMS`: accepted at creation (entries are kept anyway).
pub const BPF_F_PRESERVE_ELEMS: u32 = 1 << 11;

/// `perf_event_header.type` values.
pub const PERF_RECORD_LOST: u32 = 2;
pub const PERF_RECORD_SAMPLE: u32 = 9;

/// "UBPFPERF"
pub const PERF_RING_MAGIC: u64 = u64::from_le_bytes(*b"UBPFPERF");
pub const PERF_RING_VERSION: u32 = 1;

/// Size of a `PERF_RECORD_LOST` record (header, id, lost).
const LOST_RECORD_SIZE: u64 = 24;
/// Largest record: `perf_event_header.size` is a u16.
const MAX_RECORD_SIZE: u64 = u16::MAX as u64 & !7;

/// The control page of a [`PerfRing`].
#[repr(C)]
pub struct PerfCtl {
    /// [`PERF_RING_MAGIC`]; written once at creation, before the fd exists.
    magic: u64,
    version: u32,
    /// Data pages (a power of two); written once at creation.
    page_cnt: u32,
    _pad0: [u64; 6],
    /// Serializes producers (offset 64).
    lock: ShmLock,
    _pad1: [u32; 15],
    /// Where the consumer sleeps (offset 128).
    wake: WakeChannel,
    _pad2: [u64; 7],
    /// Records dropped and not yet reported by a LOST record (offset 192).
    /// Incremented under the lock; reset (fetch_sub) after the LOST record
    /// is published, so a crash in between reports them twice, never zero
    /// times.
    lost_pending: AtomicU64,
    /// Records dropped since creation (statistics; relaxed).
    lost_total: AtomicU64,
    /// Samples written since creation (statistics; relaxed).
    samples_total: AtomicU64,
    _pad3: [u8; 1024 - 216],
    /// Bytes ever written (offset 1024, as perf_event_mmap_page). SeqCst
    /// store by the producer holding the lock, after the records; the
    /// consumer loads it with acquire (SeqCst in the readiness check).
    data_head: AtomicU64,
    /// Bytes ever consumed (offset 1032). Release store by the consumer;
    /// acquire load by producers.
    data_tail: AtomicU64,
    /// Offset of the data area in the file (1040): one page.
    data_offset: u64,
    /// Bytes of data (1048).
    data_size: u64,
}

const _: () = assert!(offset_of!(PerfCtl, lock) == 64);
const _: () = assert!(offset_of!(PerfCtl, wake) == 128);
const _: () = assert!(offset_of!(PerfCtl, lost_pending) == 192);
const _: () = assert!(offset_of!(PerfCtl, data_head) == 1024);
const _: () = assert!(offset_of!(PerfCtl, data_tail) == 1032);
const _: () = assert!(offset_of!(PerfCtl, data_offset) == 1040);
const _: () = assert!(offset_of!(PerfCtl, data_size) == 1048);
const _: () = assert!(std::mem::size_of::<PerfCtl>() <= PAGE_SIZE);

/// A record as the consumer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PerfRecord<'a> {
    /// `PERF_RECORD_SAMPLE`: the raw data, with the kernel's padding (its
    /// length is `round_up(size + 4, 8) - 4`).
    Sample(&'a [u8]),
    /// `PERF_RECORD_LOST`: records dropped since the previous report.
    Lost(u64),
    /// Any other record: the whole record, header included.
    Other(&'a [u8]),
}

/// Why a consumption stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PerfConsumeError {
    /// The callback returned this negative value; its record stays
    /// unconsumed (as libbpf's `perf_event_read_simple`).
    #[error("callback returned {0}")]
    Callback(i32),
    /// A record header was impossible (size 0, unaligned, larger than the
    /// ring): the ring was corrupted from outside. Everything up to the
    /// producer position was dropped so the ring works again.
    #[error("corrupted perf ring")]
    Corrupt,
}

impl PerfConsumeError {
    pub fn to_ret(self) -> i32 {
        match self {
            PerfConsumeError::Callback(e) => e,
            PerfConsumeError::Corrupt => -libc::EINVAL,
        }
    }
}

/// Why an output failed (the helper's errno).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PerfOutputError {
    /// No room: the record counts as lost (`-ENOSPC`, as the kernel).
    #[error("no room in the perf ring")]
    NoSpace,
    /// Larger than a perf record can be (`-E2BIG`).
    #[error("record too large")]
    TooBig,
}

impl PerfOutputError {
    pub fn errno(self) -> i32 {
        match self {
            PerfOutputError::NoSpace => libc::ENOSPC,
            PerfOutputError::TooBig => libc::E2BIG,
        }
    }
}

/// One per-CPU perf ring (the stand-in for a perf event fd and its mmap).
pub struct PerfRing {
    file: ShmFile,
    size: u64,
    /// Whether this process's waits poll briefly before sleeping.
    spin: AdaptiveSpin,
}

impl std::fmt::Debug for PerfRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PerfRing")
            .field("fd", &self.file.fd().as_raw_fd())
            .field("size", &self.size)
            .finish()
    }
}

impl PerfRing {
    /// Creates a ring of `page_cnt` data pages (a power of two, else
    /// `EINVAL`, as `perf_buffer__new`).
    pub fn create(page_cnt: u32) -> Result<PerfRing, MapError> {
        if page_cnt == 0 || !page_cnt.is_power_of_two() {
            return Err(MapError::Invalid("page_cnt must be a power of 2"));
        }
        let data = (page_cnt as usize)
            .checked_mul(PAGE_SIZE)
            .ok_or(MapError::Full)?;
        let total = data.checked_add(PAGE_SIZE).ok_or(MapError::Full)?;
        let file = ShmFile::create("perf_ring", total)?;
        // SAFETY: the control page of a fresh, zeroed mapping nobody else has.
        let ctl = unsafe { &mut *(file.base() as *mut PerfCtl) };
        ctl.version = PERF_RING_VERSION;
        ctl.page_cnt = page_cnt;
        ctl.data_offset = PAGE_SIZE as u64;
        ctl.data_size = data as u64;
        ctl.magic = PERF_RING_MAGIC;
        Ok(PerfRing {
            file,
            size: data as u64,
            spin: AdaptiveSpin::new(),
        })
    }

    /// Maps the ring behind `fd` (checks magic, version and size).
    pub fn open(fd: BorrowedFd<'_>) -> Result<PerfRing, MapError> {
        Self::from_file(ShmFile::open(fd.try_clone_to_owned()?)?)
    }

    /// Maps the ring at `path` (for example `/proc/<pid>/fd/<n>`).
    pub fn open_path(path: &Path) -> Result<PerfRing, MapError> {
        Self::from_file(ShmFile::open_path(path)?)
    }

    fn from_file(file: ShmFile) -> Result<PerfRing, MapError> {
        let bad = || MapError::Io(libc::EBADF);
        if file.len() < 2 * PAGE_SIZE {
            return Err(bad());
        }
        // SAFETY: the file is at least a page long; fields read once.
        let ctl = unsafe { &*(file.base() as *const PerfCtl) };
        let page_cnt = ctl.page_cnt as usize;
        if ctl.magic != PERF_RING_MAGIC
            || ctl.version != PERF_RING_VERSION
            || !page_cnt.is_power_of_two()
            || ctl.data_size != (page_cnt * PAGE_SIZE) as u64
            || file.len() != (page_cnt + 1) * PAGE_SIZE
        {
            return Err(bad());
        }
        Ok(PerfRing {
            size: ctl.data_size,
            file,
            spin: AdaptiveSpin::new(),
        })
    }

    /// The ring's fd (what goes into the map slot).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.fd()
    }

    pub fn file_id(&self) -> FileId {
        self.file.id()
    }

    /// Bytes of data.
    pub fn size(&self) -> u64 {
        self.size
    }

    fn ctl(&self) -> &PerfCtl {
        // SAFETY: the control page starts the mapping; shared fields are
        // atomics, the others were written before the fd existed.
        unsafe { &*(self.file.base() as *const PerfCtl) }
    }

    fn data(&self) -> *mut u8 {
        // SAFETY: the data starts after the control page.
        unsafe { self.file.base().add(PAGE_SIZE) }
    }

    pub fn data_head(&self) -> u64 {
        self.ctl().data_head.load(Ordering::Acquire)
    }

    pub fn data_tail(&self) -> u64 {
        self.ctl().data_tail.load(Ordering::Acquire)
    }

    /// Records dropped since the ring was created.
    pub fn lost_total(&self) -> u64 {
        self.ctl().lost_total.load(Ordering::Relaxed)
    }

    /// Samples written since the ring was created.
    pub fn samples_total(&self) -> u64 {
        self.ctl().samples_total.load(Ordering::Relaxed)
    }

    pub fn channel(&self) -> &WakeChannel {
        &self.ctl().wake
    }

    /// Copies `src` into the data area at position `pos`, wrapping.
    ///
    /// # Safety
    /// `src` is readable for `len` bytes, `len <= size`; the caller holds
    /// the lock and the range is free (between head and tail + size).
    unsafe fn write_at(&self, pos: u64, src: *const u8, len: usize) {
        let off = (pos & (self.size - 1)) as usize;
        let first = len.min(self.size as usize - off);
        // SAFETY: per the contract; both pieces stay inside the data area.
        unsafe {
            std::ptr::copy_nonoverlapping(src, self.data().add(off), first);
            std::ptr::copy_nonoverlapping(src.add(first), self.data(), len - first);
        }
    }

    /// `bpf_perf_event_output` into this ring: a `PERF_RECORD_SAMPLE` with
    /// `data` as raw data.
    pub fn output(&self, data: &[u8]) -> Result<(), PerfOutputError> {
        // SAFETY: a valid slice.
        unsafe { self.output_raw(data.as_ptr(), data.len() as u64) }
    }

    /// [`PerfRing::output`] from a raw pointer.
    ///
    /// # Safety
    /// `src` is readable for `len` bytes.
    pub unsafe fn output_raw(&self, src: *const u8, len: u64) -> Result<(), PerfOutputError> {
        if len > MAX_RECORD_SIZE {
            return Err(PerfOutputError::TooBig);
        }
        let raw_size = ((len + 4 + 7) & !7) - 4;
        let rec_size = 8 + 4 + raw_size;
        if rec_size > MAX_RECORD_SIZE {
            return Err(PerfOutputError::TooBig);
        }
        let ctl = self.ctl();
        {
            let _guard = ctl.lock.lock();
            let head = ctl.data_head.load(Ordering::Relaxed);
            let tail = ctl.data_tail.load(Ordering::Acquire);
            let used = head.wrapping_sub(tail);
            let free = self.size.saturating_sub(used);
            let lost = ctl.lost_pending.load(Ordering::Relaxed);
            let need = rec_size + if lost > 0 { LOST_RECORD_SIZE } else { 0 };
            if need > free {
                ctl.lost_pending.fetch_add(1, Ordering::Relaxed);
                ctl.lost_total.fetch_add(1, Ordering::Relaxed);
                return Err(PerfOutputError::NoSpace);
            }
            let mut pos = head;
            if lost > 0 {
                let mut rec = [0u8; LOST_RECORD_SIZE as usize];
                rec[0..4].copy_from_slice(&PERF_RECORD_LOST.to_ne_bytes());
                rec[6..8].copy_from_slice(&(LOST_RECORD_SIZE as u16).to_ne_bytes());
                rec[16..24].copy_from_slice(&lost.to_ne_bytes());
                // SAFETY: under the lock, inside the free space.
                unsafe { self.write_at(pos, rec.as_ptr(), rec.len()) };
                pos += LOST_RECORD_SIZE;
            }
            let mut hdr = [0u8; 12];
            hdr[0..4].copy_from_slice(&PERF_RECORD_SAMPLE.to_ne_bytes());
            hdr[6..8].copy_from_slice(&(rec_size as u16).to_ne_bytes());
            hdr[8..12].copy_from_slice(&(raw_size as u32).to_ne_bytes());
            // SAFETY: under the lock, inside the free space; the caller
            // vouches for `src`.
            unsafe {
                self.write_at(pos, hdr.as_ptr(), hdr.len());
                self.write_at(pos + 12, src, len as usize);
                let pad = [0u8; 8];
                self.write_at(pos + 12 + len, pad.as_ptr(), (raw_size - len) as usize);
            }
            pos += rec_size;
            ctl.samples_total.fetch_add(1, Ordering::Relaxed);
            // Publish (SeqCst: the wake-up protocol).
            ctl.data_head.store(pos, Ordering::SeqCst);
            if lost > 0 {
                ctl.lost_pending.fetch_sub(lost, Ordering::Relaxed);
            }
        }
        ctl.wake.notify();
        Ok(())
    }

    /// True when records wait.
    pub fn ready(&self) -> bool {
        let ctl = self.ctl();
        ctl.data_head.load(Ordering::SeqCst) != ctl.data_tail.load(Ordering::SeqCst)
    }

    /// libbpf's `perf_event_read_simple`: calls `cb` with each whole record
    /// (header included; a record that wraps is copied to a buffer first),
    /// then stores `data_tail`. A callback returning `< 0` stops; its record
    /// is left in the ring. Returns the number of records handled.
    pub fn consume_raw(&self, mut cb: impl FnMut(&[u8]) -> i32) -> Result<u64, PerfConsumeError> {
        let ctl = self.ctl();
        let head = ctl.data_head.load(Ordering::Acquire);
        let mut tail = ctl.data_tail.load(Ordering::Relaxed);
        let mut count = 0u64;
        let mut copy: Vec<u8> = Vec::new();
        let mut result = Ok(());
        while tail != head {
            let off = (tail & (self.size - 1)) as usize;
            let mut h = [0u8; 8];
            // SAFETY: headers are 8-aligned and 8 bytes, so never wrap.
            unsafe { std::ptr::copy_nonoverlapping(self.data().add(off), h.as_mut_ptr(), 8) };
            let rec_size = u16::from_ne_bytes([h[6], h[7]]) as u64;
            if rec_size < 8 || !rec_size.is_multiple_of(8) || rec_size > head.wrapping_sub(tail) {
                tail = head;
                result = Err(PerfConsumeError::Corrupt);
                break;
            }
            let rec: &[u8] = if off as u64 + rec_size <= self.size {
                // SAFETY: inside the data area; the producer does not touch
                // it until data_tail passes it.
                unsafe { std::slice::from_raw_parts(self.data().add(off), rec_size as usize) }
            } else {
                copy.clear();
                copy.resize(rec_size as usize, 0);
                let first = self.size as usize - off;
                // SAFETY: both pieces inside the data area, into `copy`.
                unsafe {
                    std::ptr::copy_nonoverlapping(self.data().add(off), copy.as_mut_ptr(), first);
                    std::ptr::copy_nonoverlapping(
                        self.data(),
                        copy.as_mut_ptr().add(first),
                        rec_size as usize - first,
                    );
                }
                &copy
            };
            let r = cb(rec);
            if r < 0 {
                result = Err(PerfConsumeError::Callback(r));
                break;
            }
            count += 1;
            tail += rec_size;
        }
        ctl.data_tail.store(tail, Ordering::Release);
        result.map(|()| count)
    }

    /// [`PerfRing::consume_raw`] with records decoded (what
    /// `perf_buffer__consume` gives `sample_cb` and `lost_cb`).
    pub fn consume(
        &self,
        mut cb: impl FnMut(PerfRecord<'_>) -> i32,
    ) -> Result<u64, PerfConsumeError> {
        self.consume_raw(|rec| {
            let ty = u32::from_ne_bytes([rec[0], rec[1], rec[2], rec[3]]);
            match ty {
                PERF_RECORD_SAMPLE if rec.len() >= 12 => {
                    let n = u32::from_ne_bytes([rec[8], rec[9], rec[10], rec[11]]) as usize;
                    let end = 12usize.saturating_add(n).min(rec.len());
                    cb(PerfRecord::Sample(&rec[12..end]))
                }
                PERF_RECORD_LOST if rec.len() >= 24 => {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&rec[16..24]);
                    cb(PerfRecord::Lost(u64::from_ne_bytes(b)))
                }
                _ => cb(PerfRecord::Other(rec)),
            }
        })
    }

    /// Sleeps until a record waits (true) or `timeout` expires (false).
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        wait_any(&[self], timeout)
    }
}

impl WakeSource for PerfRing {
    fn channel(&self) -> &WakeChannel {
        PerfRing::channel(self)
    }
    fn ready(&self) -> bool {
        PerfRing::ready(self)
    }
    fn fill(&self) -> f64 {
        self.data_head().wrapping_sub(self.data_tail()) as f64 / self.size as f64
    }
}

/// Waits until one of `rings` has a record (true), or `timeout` expires or
/// a signal arrives (false). See [`poll`].
pub fn wait_any(rings: &[&PerfRing], timeout: Option<Duration>) -> bool {
    poll(rings, timeout) == Readiness::Ready
}

/// What `perf_buffer__poll` waits with: one `futex_waitv` over the rings'
/// channels, avoiding wake-ups while events stream in (the first ring's
/// [`AdaptiveSpin`]); tells a timeout from a signal.
pub fn poll(rings: &[&PerfRing], timeout: Option<Duration>) -> Readiness {
    let sources: Vec<&dyn WakeSource> = rings.iter().map(|r| *r as &dyn WakeSource).collect();
    wait_sources_adaptive(&sources, timeout, rings.first().map(|r| &r.spin))
}

/// One slot of the map, in the data area.
#[repr(C)]
struct PerfSlot {
    /// Even when stable, odd while a writer changes the slot; +2 per
    /// change. Writers hold the map's lock; readers (acquire) retry while
    /// odd or changed. A writer that dies leaves it odd: the next writer
    /// rounds it up, readers see an empty slot meanwhile.
    gen: AtomicU64,
    /// The ring's identity (`FileId`), 0/0 when empty. Relaxed, inside the
    /// generation bracket.
    dev: AtomicU64,
    ino: AtomicU64,
    /// Process and fd number through which the ring can be opened.
    pid: AtomicU32,
    fd: AtomicI32,
}

const SLOT_SIZE: usize = std::mem::size_of::<PerfSlot>();
const _: () = assert!(SLOT_SIZE == 32);

/// The map's aux state.
#[repr(C)]
struct PerfArrayAux {
    /// Serializes slot writers (syscall side).
    lock: ShmLock,
}

const _: () = assert!(std::mem::size_of::<PerfArrayAux>() <= MAP_AUX_SIZE);

/// What a slot names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SlotValue {
    id: FileId,
    pid: u32,
    fd: i32,
}

/// This process's mapping of a slot's ring, with the generation it was
/// opened for.
struct Cached {
    gen: u64,
    ring: Option<Arc<PerfRing>>,
}

pub(crate) fn data_size(spec: &MapSpec) -> Result<usize, MapError> {
    super::fd_array_data_size(spec, SLOT_SIZE, BPF_F_PRESERVE_ELEMS)
}

pub(crate) fn init(_spec: &MapSpec, _mem: &MapMem) -> Result<(), MapError> {
    Ok(())
}

pub(crate) fn open(spec: &MapSpec, mem: Arc<MapMem>) -> Result<Box<dyn MapOps>, MapError> {
    Ok(Box::new(PerfEventArray {
        max_entries: spec.max_entries,
        cache: (0..spec.max_entries)
            .map(|_| {
                RwLock::new(Cached {
                    gen: u64::MAX,
                    ring: None,
                })
            })
            .collect(),
        owned: Mutex::new(HashMap::new()),
        mem,
    }))
}

/// A perf event array mapped into this process.
pub struct PerfEventArray {
    mem: Arc<MapMem>,
    max_entries: u32,
    /// Per slot: the ring this process opened for the slot's generation.
    cache: Box<[RwLock<Cached>]>,
    /// Rings whose slots this process wrote: their fds are the ones other
    /// processes open through `/proc/<our pid>/fd`.
    owned: Mutex<HashMap<u32, Arc<PerfRing>>>,
}

impl PerfEventArray {
    fn slot(&self, index: u32) -> Option<&PerfSlot> {
        if index >= self.max_entries {
            return None;
        }
        // SAFETY: the data area holds max_entries slots (data_size); a
        // zero-filled slot is valid (empty).
        Some(unsafe { &*(self.mem.data().add(index as usize * SLOT_SIZE) as *const PerfSlot) })
    }

    fn aux(&self) -> &PerfArrayAux {
        // SAFETY: aux is 8-aligned and large enough; all-atomic.
        unsafe { &*(self.mem.aux() as *const PerfArrayAux) }
    }

    /// Reads a slot consistently: (generation, value).
    fn read_slot(slot: &PerfSlot) -> (u64, Option<SlotValue>) {
        for _ in 0..100 {
            let g1 = slot.gen.load(Ordering::Acquire);
            if g1 % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let v = SlotValue {
                id: FileId {
                    dev: slot.dev.load(Ordering::Relaxed),
                    ino: slot.ino.load(Ordering::Relaxed),
                },
                pid: slot.pid.load(Ordering::Relaxed),
                fd: slot.fd.load(Ordering::Relaxed),
            };
            std::sync::atomic::fence(Ordering::Acquire);
            if slot.gen.load(Ordering::Relaxed) == g1 {
                return (g1, (v.pid != 0).then_some(v));
            }
        }
        // A writer died mid-change (or is very slow): empty for now.
        (slot.gen.load(Ordering::Acquire), None)
    }

    /// Writes a slot under the map lock.
    fn write_slot(&self, slot: &PerfSlot, value: Option<SlotValue>) {
        let _guard = self.aux().lock.lock();
        let mut g = slot.gen.load(Ordering::Relaxed);
        if g % 2 == 1 {
            g += 1;
        }
        slot.gen.store(g + 1, Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::Release);
        let v = value.unwrap_or(SlotValue {
            id: FileId { dev: 0, ino: 0 },
            pid: 0,
            fd: 0,
        });
        slot.dev.store(v.id.dev, Ordering::Relaxed);
        slot.ino.store(v.id.ino, Ordering::Relaxed);
        slot.fd.store(v.fd, Ordering::Relaxed);
        slot.pid.store(v.pid, Ordering::Relaxed);
        slot.gen.store(g + 2, Ordering::Release);
    }

    /// Opens the ring a slot names (slow path).
    fn open_ring(&self, index: u32, v: SlotValue) -> Option<Arc<PerfRing>> {
        if v.pid == std::process::id() {
            let owned = self.owned.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(r) = owned.get(&index).filter(|r| r.file_id() == v.id) {
                return Some(r.clone());
            }
        }
        let path = format!("/proc/{}/fd/{}", v.pid, v.fd);
        let ring = PerfRing::open_path(Path::new(&path)).ok()?;
        (ring.file_id() == v.id).then(|| Arc::new(ring))
    }

    /// The ring of slot `index` for a producer: a read guard on this
    /// process's cached mapping. No syscall unless the slot changed since
    /// the last call.
    pub fn ring(&self, index: u32) -> Option<RingGuard<'_>> {
        let slot = self.slot(index)?;
        let cache = self.cache.get(index as usize)?;
        let gen = slot.gen.load(Ordering::Acquire);
        {
            let c = cache.read().unwrap_or_else(|e| e.into_inner());
            if c.gen == gen {
                return RingGuard::new(c);
            }
        }
        {
            let (gen, value) = Self::read_slot(slot);
            let ring = value.and_then(|v| self.open_ring(index, v));
            let mut c = cache.write().unwrap_or_else(|e| e.into_inner());
            // An odd generation is never cached (the write will change it).
            c.gen = if gen % 2 == 0 { gen } else { u64::MAX };
            c.ring = ring;
        }
        RingGuard::new(cache.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Drops owned fds of slots that no longer name them (another process
    /// rewrote the slot).
    fn prune_owned(&self) {
        let me = std::process::id();
        let mut owned = self.owned.lock().unwrap_or_else(|e| e.into_inner());
        owned.retain(|&index, ring| {
            self.slot(index).is_some_and(|s| {
                let (_, v) = Self::read_slot(s);
                v.is_some_and(|v| v.pid == me && v.id == ring.file_id())
            })
        });
    }

    fn index_of(key: &[u8]) -> Result<u32, MapError> {
        let b: [u8; 4] = key
            .get(..4)
            .and_then(|k| k.try_into().ok())
            .ok_or(MapError::Invalid("key size"))?;
        Ok(u32::from_ne_bytes(b))
    }
}

/// A producer's hold on a slot's ring (see [`PerfEventArray::ring`]).
pub struct RingGuard<'a> {
    _guard: RwLockReadGuard<'a, Cached>,
    ring: NonNull<PerfRing>,
}

impl<'a> RingGuard<'a> {
    fn new(guard: RwLockReadGuard<'a, Cached>) -> Option<RingGuard<'a>> {
        let ring = NonNull::from(&**guard.ring.as_ref()?);
        Some(RingGuard {
            _guard: guard,
            ring,
        })
    }
}

impl std::ops::Deref for RingGuard<'_> {
    type Target = PerfRing;
    fn deref(&self) -> &PerfRing {
        // SAFETY: the ring is owned by the cache entry, which the read
        // guard keeps from changing while `self` lives.
        unsafe { self.ring.as_ref() }
    }
}

impl MapOps for PerfEventArray {
    fn lookup(&self, _key: &[u8], _value: &mut [u8], _flags: u64) -> Result<(), MapError> {
        // The kernel has no map_fd_sys_lookup_elem for perf event arrays.
        Err(MapError::NotSupported)
    }

    fn update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<(), MapError> {
        if flags != super::flags::BPF_ANY {
            return Err(MapError::Invalid("fd arrays take BPF_ANY only"));
        }
        let index = Self::index_of(key)?;
        let slot = self.slot(index).ok_or(MapError::Full)?;
        let fd = Self::index_of(value)? as i32;
        if fd < 0 {
            return Err(MapError::Io(libc::EBADF));
        }
        // SAFETY: only borrowed for the duration of the call; a closed fd
        // makes the fstat/dup below fail with EBADF.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        // Our own duplicate of the fd: what other processes open.
        let ring = Arc::new(PerfRing::open(fd).map_err(|e| match e {
            MapError::Io(_) | MapError::Invalid(_) => MapError::Io(libc::EBADF),
            other => other,
        })?);
        let value = SlotValue {
            id: ring.file_id(),
            pid: std::process::id(),
            fd: ring.fd().as_raw_fd(),
        };
        self.owned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(index, ring);
        self.write_slot(slot, Some(value));
        self.prune_owned();
        Ok(())
    }

    fn delete(&self, key: &[u8]) -> Result<(), MapError> {
        let index = Self::index_of(key)?;
        let slot = self.slot(index).ok_or(MapError::Full)?;
        let (_, v) = Self::read_slot(slot);
        if v.is_none() {
            return Err(MapError::NotFound);
        }
        self.write_slot(slot, None);
        self.prune_owned();
        Ok(())
    }

    fn next_key(&self, key: Option<&[u8]>, next: &mut [u8]) -> Result<(), MapError> {
        array_next_key(self.max_entries, key, next)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// The kernel's `array_map_get_next_key`: index + 1, or 0 for a missing or
/// out-of-range key, `ENOENT` after the last.
pub(crate) fn array_next_key(
    max_entries: u32,
    key: Option<&[u8]>,
    next: &mut [u8],
) -> Result<(), MapError> {
    let index = key
        .and_then(|k| k.get(..4))
        .and_then(|k| <[u8; 4]>::try_from(k).ok())
        .map(u32::from_ne_bytes);
    let n = match index {
        Some(i) if i < max_entries => {
            if i == max_entries - 1 {
                return Err(MapError::NotFound);
            }
            i + 1
        }
        _ => 0,
    };
    next.get_mut(..4)
        .ok_or(MapError::Invalid("key size"))?
        .copy_from_slice(&n.to_ne_bytes());
    Ok(())
}

/// `bpf_perf_event_output` on a map: the ring of the slot `flags` names.
///
/// # Safety
/// `data` is readable for `size` bytes.
pub unsafe fn perf_event_output_raw(
    map: &Map,
    flags: u64,
    data: *const u8,
    size: u64,
) -> Result<(), i32> {
    if flags & !BPF_F_INDEX_MASK != 0 {
        return Err(libc::EINVAL);
    }
    let arr = map.downcast::<PerfEventArray>().ok_or(libc::EINVAL)?;
    let cpu = u64::from(crate::cpu::current_cpu());
    let mut index = flags & BPF_F_INDEX_MASK;
    if index == BPF_F_CURRENT_CPU {
        index = cpu;
    }
    if index >= u64::from(arr.max_entries) {
        return Err(libc::E2BIG);
    }
    if index != cpu {
        // The kernel: the event in that slot is bound to another CPU.
        return Err(libc::EOPNOTSUPP);
    }
    let ring = arr.ring(index as u32).ok_or(libc::ENOENT)?;
    // SAFETY: forwarded contract.
    unsafe { ring.output_raw(data, size) }.map_err(PerfOutputError::errno)
}

impl PerfEventArray {
    /// Whether `map` is a perf event array.
    pub fn of(map: &Map) -> Option<&PerfEventArray> {
        if map.map_type() != map_type::PERF_EVENT_ARRAY {
            return None;
        }
        map.downcast::<PerfEventArray>()
    }
}
