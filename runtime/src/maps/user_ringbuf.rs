//! `BPF_MAP_TYPE_USER_RINGBUF`: the kernel's ring buffer run backwards.
//! User space produces (`user_ring_buffer__reserve` / `__submit`), programs
//! consume with `bpf_user_ringbuf_drain` (helper 209).
//!
//! # Layout
//! The same as `BPF_MAP_TYPE_RINGBUF` (see [`super::ringbuf`]): consumer
//! page (`consumer_pos`, written by the draining program), producer page
//! (`producer_pos`, written by the user-space producer), `max_entries`
//! bytes of data (a power of two, a multiple of the page size), the
//! [`MapHeader`] page, whose `aux` holds `UserRingAux`. Each process maps
//! the data twice after the position pages, so a record that wraps is
//! contiguous. Records are the kernel's: 8-byte header (`u32 len` with
//! BUSY and DISCARD bits, `u32 pad`), then the sample, `round_up(len + 8,
//! 8)` bytes in all.
//!
//! # Producer ([`UserRingProducer`])
//! libbpf's algorithm: one producer at a time (libbpf's contract: callers
//! serialize), no lock. Reserve writes the header with BUSY and publishes
//! `producer_pos` (release); commit swaps `len` without BUSY (and with
//! DISCARD to discard). `reserve_blocking` sleeps on the `WakeChannel` of
//! `UserRingAux` until the drained space is enough.
//!
//! # Consumer (`bpf_user_ringbuf_drain`)
//! The kernel's: a `busy` word makes concurrent drains fail with `-EBUSY`
//! (across processes: the word is shared and holds the drainer's thread
//! id, so a drainer that died mid-drain is taken over); each sample is
//! peeked (bad producer positions `-EINVAL`, oversize samples `-E2BIG`,
//! discarded ones skipped, a BUSY one ends the drain), handed to the
//! callback as a `BPF_DYNPTR_TYPE_LOCAL` dynptr, then released by storing
//! `consumer_pos`. At most [`BPF_MAX_USER_RINGBUF_SAMPLES`] per call. After
//! the drain, a producer sleeping in `reserve_blocking` is woken if the
//! flags say so (`BPF_RB_FORCE_WAKEUP`, or at least one sample and not
//! `BPF_RB_NO_WAKEUP`); waking costs a syscall only when one sleeps.
//!
//! These views are not registered with the kernel-ring sample checks of
//! [`super::ringbuf`]: a user ring's headers are written by user space, and
//! must never pass for a program's own reservation.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ringbuf::{
    BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, BPF_RINGBUF_BUSY_BIT, BPF_RINGBUF_DISCARD_BIT,
    BPF_RINGBUF_HDR_SZ,
};
use super::{map_type, Map, MapError, MapHeader, MapMem, MapOps, MapSpec, MAP_AUX_SIZE};
use crate::helpers::dynptr::DYNPTR_MAX_SIZE;
use crate::shm::futex::{self, WaitResult, WakeChannel};
use crate::shm::lock::current_tid;
use crate::shm::PAGE_SIZE;

/// Most samples one `bpf_user_ringbuf_drain` call consumes.
pub const BPF_MAX_USER_RINGBUF_SAMPLES: u64 = 128 * 1024;

/// The ring's state in the header page's aux area.
#[repr(C)]
struct UserRingAux {
    /// Thread id of the thread draining the ring, 0 when none (the kernel's
    /// `rb->busy`). Taken by CAS (acquire), released (SeqCst: after every
    /// `consumer_pos` store of the drain); taken over from a dead thread.
    busy: AtomicU32,
    _pad: [u32; 15],
    /// Where a producer blocked in `reserve_blocking` sleeps; notified by
    /// the drain after its SeqCst `consumer_pos` stores.
    wake: WakeChannel,
}

const _: () = assert!(std::mem::size_of::<UserRingAux>() <= MAP_AUX_SIZE);

/// The record header (`struct bpf_ringbuf_hdr`).
#[repr(C)]
struct RecordHeader {
    /// Sample length | BUSY | DISCARD. Written with BUSY by the producer
    /// (relaxed, published by the release store of `producer_pos`),
    /// committed by a SeqCst swap, read by the drain with acquire.
    len: AtomicU32,
    /// Unused (libbpf writes 0).
    pad: AtomicU32,
}

/// Why a drain failed, with the kernel's errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DrainError {
    #[error("invalid flags, or the producer broke the ring's protocol")]
    Invalid,
    #[error("another drain of this ring is running")]
    Busy,
    #[error("a sample is larger than the ring or a dynptr")]
    TooBig,
}

impl DrainError {
    pub fn errno(self) -> i32 {
        match self {
            DrainError::Invalid => libc::EINVAL,
            DrainError::Busy => libc::EBUSY,
            DrainError::TooBig => libc::E2BIG,
        }
    }
}

/// Why a reservation failed, with libbpf's errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReserveError {
    #[error("the sample can never fit in the ring")]
    TooBig,
    #[error("not enough free space in the ring")]
    NoSpace,
    #[error("interrupted by a signal")]
    Interrupted,
}

impl ReserveError {
    pub fn errno(self) -> i32 {
        match self {
            ReserveError::TooBig => libc::E2BIG,
            ReserveError::NoSpace => libc::ENOSPC,
            ReserveError::Interrupted => libc::EINTR,
        }
    }
}

/// What the drain callback says after a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainStep {
    /// Go on with the next sample (the callback returned 0).
    Continue,
    /// Stop after this sample (the callback returned 1).
    Stop,
    /// The run is over (the callback aborted): stop at once.
    Abort,
}

/// What `peek` found at the consumer position.
enum Peek {
    /// A committed sample: its address and length.
    Sample(*mut u8, u32),
    /// Nothing committed yet (empty, or a BUSY record).
    Empty,
    /// A discarded record, now skipped.
    Discarded,
    /// The producer broke the protocol.
    Failed(DrainError),
}

pub(crate) fn data_size(spec: &MapSpec) -> Result<usize, MapError> {
    // The kernel creates both ring types with the same rules.
    super::ringbuf::data_size(spec)
}

pub(crate) fn init(_spec: &MapSpec, _mem: &MapMem) -> Result<(), MapError> {
    // All-zero is an empty ring: positions 0, not busy, idle channel.
    Ok(())
}

pub(crate) fn open(spec: &MapSpec, mem: Arc<MapMem>) -> Result<Box<dyn MapOps>, MapError> {
    Ok(Box::new(UserRingBuf::new(spec, mem)?))
}

fn round_up8(n: u64) -> u64 {
    (n + 7) & !7
}

fn tid_alive(tid: u32) -> bool {
    // SAFETY: signal 0 only checks existence; works for any thread id.
    let r = unsafe { libc::kill(tid as libc::pid_t, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// A user ring buffer map mapped into this process (the type's [`MapOps`]).
pub struct UserRingBuf {
    /// Start of the reservation: header page, consumer page, producer
    /// page, data, data again.
    region: *mut u8,
    region_len: usize,
    size: u64,
    // Keeps the map file alive with the view.
    _mem: Arc<MapMem>,
}

// SAFETY: the view is shared memory used only through atomics and under
// the ring's protocol; the pointer is never freed before drop.
unsafe impl Send for UserRingBuf {}
// SAFETY: as above.
unsafe impl Sync for UserRingBuf {}

impl std::fmt::Debug for UserRingBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRingBuf")
            .field("size", &self.size)
            .finish()
    }
}

impl Drop for UserRingBuf {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the reservation `new` made (and the shared
        // mappings inside it); nothing borrows from it any more.
        unsafe { libc::munmap(self.region.cast(), self.region_len) };
    }
}

impl UserRingBuf {
    fn new(spec: &MapSpec, mem: Arc<MapMem>) -> Result<UserRingBuf, MapError> {
        let size = data_size(spec)? - 2 * PAGE_SIZE;
        if mem.data_size() != 2 * PAGE_SIZE + size {
            return Err(MapError::NotAMap);
        }
        let (region, region_len) = map_view(mem.file().fd(), size)?;
        Ok(UserRingBuf {
            region,
            region_len,
            size: size as u64,
            _mem: mem,
        })
    }

    fn base(&self) -> *mut u8 {
        // SAFETY: the consumer page follows the header page in the view.
        unsafe { self.region.add(PAGE_SIZE) }
    }

    fn aux(&self) -> &UserRingAux {
        // SAFETY: the view's first page maps the header page; its aux area
        // is 8-aligned, MAP_AUX_SIZE bytes, all-atomic (valid when zero).
        unsafe { &*((*(self.region as *const MapHeader)).aux.as_ptr() as *const UserRingAux) }
    }

    fn consumer(&self) -> &AtomicU64 {
        // SAFETY: the consumer page starts at `base`.
        unsafe { &*(self.base() as *const AtomicU64) }
    }

    fn producer(&self) -> &AtomicU64 {
        // SAFETY: the producer page is the page after `base`.
        unsafe { &*(self.base().add(PAGE_SIZE) as *const AtomicU64) }
    }

    fn data(&self) -> *mut u8 {
        // SAFETY: the data starts two pages after `base`.
        unsafe { self.base().add(2 * PAGE_SIZE) }
    }

    fn mask(&self) -> u64 {
        self.size - 1
    }

    /// The header at `pos` (aligned down to 8: positions come from memory
    /// user space writes, and must never make a misaligned atomic).
    fn hdr_at(&self, pos: u64) -> &RecordHeader {
        // SAFETY: `pos & mask & !7` < size, 8-aligned, inside the first
        // copy of the data.
        unsafe { &*(self.data().add((pos & self.mask() & !7) as usize) as *const RecordHeader) }
    }

    /// Data bytes of the ring (`max_entries`).
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn consumer_pos(&self) -> u64 {
        self.consumer().load(Ordering::Acquire)
    }

    pub fn producer_pos(&self) -> u64 {
        self.producer().load(Ordering::Acquire)
    }

    /// The producers' wake-up channel.
    pub fn channel(&self) -> &WakeChannel {
        &self.aux().wake
    }

    /// Takes the busy word, or `-EBUSY`.
    fn lock_drain(&self) -> Result<(), DrainError> {
        let busy = &self.aux().busy;
        let me = current_tid();
        match busy.compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => Ok(()),
            // A drainer killed mid-drain would block the ring forever.
            Err(owner) if owner != me && !tid_alive(owner) => busy
                .compare_exchange(owner, me, Ordering::Acquire, Ordering::Relaxed)
                .map(|_| ())
                .map_err(|_| DrainError::Busy),
            Err(_) => Err(DrainError::Busy),
        }
    }

    /// `__bpf_user_ringbuf_peek`: what is at the consumer position.
    fn peek(&self) -> Peek {
        let prod = self.producer().load(Ordering::Acquire);
        if !prod.is_multiple_of(8) {
            return Peek::Failed(DrainError::Invalid);
        }
        let cons = self.consumer().load(Ordering::Acquire);
        // Signed distance, robust to wrapping (as the kernel).
        if cons.wrapping_sub(prod) as i64 >= 0 {
            return Peek::Empty;
        }
        let hdr_len = self.hdr_at(cons).len.load(Ordering::Acquire);
        let flags = hdr_len & (BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT);
        let sample_len = hdr_len & !flags;
        let total = round_up8(u64::from(sample_len) + u64::from(BPF_RINGBUF_HDR_SZ));
        if total > prod.wrapping_sub(cons) {
            return Peek::Failed(DrainError::Invalid);
        }
        if total > self.size || sample_len > DYNPTR_MAX_SIZE {
            return Peek::Failed(DrainError::TooBig);
        }
        if flags & BPF_RINGBUF_DISCARD_BIT != 0 {
            self.consumer().store(cons + total, Ordering::SeqCst);
            return Peek::Discarded;
        }
        if flags & BPF_RINGBUF_BUSY_BIT != 0 {
            return Peek::Empty;
        }
        let off = (cons + u64::from(BPF_RINGBUF_HDR_SZ)) & self.mask() & !7;
        // SAFETY: `off` < size and the sample (< size bytes) is contiguous
        // in the double mapping.
        Peek::Sample(unsafe { self.data().add(off as usize) }, sample_len)
    }

    /// `bpf_user_ringbuf_drain`: calls `cb(sample, len)` for each committed
    /// sample, in order, skipping discarded ones, up to
    /// [`BPF_MAX_USER_RINGBUF_SAMPLES`]. Returns the number of samples
    /// given to `cb` (the one it stopped on included), or the error that
    /// ended the drain (samples before it stay consumed).
    pub fn drain(
        &self,
        flags: u64,
        mut cb: impl FnMut(*mut u8, u32) -> DrainStep,
    ) -> Result<u64, DrainError> {
        if flags & !(BPF_RB_NO_WAKEUP | BPF_RB_FORCE_WAKEUP) != 0 {
            return Err(DrainError::Invalid);
        }
        self.lock_drain()?;
        // `samples` counts discarded ones too: the kernel wakes producers
        // after any progress.
        let mut samples = 0u64;
        let mut discarded = 0u64;
        let mut result = Ok(());
        while samples < BPF_MAX_USER_RINGBUF_SAMPLES {
            match self.peek() {
                Peek::Empty => break,
                Peek::Discarded => {
                    discarded += 1;
                    samples += 1;
                }
                Peek::Failed(e) => {
                    result = Err(e);
                    break;
                }
                Peek::Sample(sample, len) => {
                    let step = cb(sample, len);
                    // `__bpf_user_ringbuf_sample_release`: only the busy
                    // holder moves consumer_pos, so a plain load is fresh.
                    let cons = self.consumer().load(Ordering::Relaxed);
                    let total = round_up8(u64::from(len) + u64::from(BPF_RINGBUF_HDR_SZ));
                    // SeqCst: the wake-up protocol (the producer checks
                    // its room with a SeqCst load after arming).
                    self.consumer().store(cons + total, Ordering::SeqCst);
                    samples += 1;
                    match step {
                        DrainStep::Continue => {}
                        DrainStep::Stop => break,
                        DrainStep::Abort => {
                            self.aux().busy.store(0, Ordering::SeqCst);
                            return Ok(samples - discarded);
                        }
                    }
                }
            }
        }
        // After every consumer_pos store of this drain.
        self.aux().busy.store(0, Ordering::SeqCst);
        if flags & BPF_RB_FORCE_WAKEUP != 0 || (flags & BPF_RB_NO_WAKEUP == 0 && samples > 0) {
            self.aux().wake.notify();
        }
        result.map(|()| samples - discarded)
    }

    /// Free bytes for the producer.
    fn free_space(&self, order: Ordering) -> u64 {
        let cons = self.consumer().load(order);
        let prod = self.producer().load(Ordering::Relaxed);
        self.size.saturating_sub(prod.wrapping_sub(cons))
    }
}

/// Maps the view of a ring of `size` data bytes: (region, length).
fn map_view(fd: BorrowedFd<'_>, size: usize) -> io::Result<(*mut u8, usize)> {
    let region_len = 3 * PAGE_SIZE + 2 * size;
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
    // (address offset, length, file offset): header page, position pages
    // and data, the data again.
    let parts = [
        (0, PAGE_SIZE, 2 * PAGE_SIZE + size),
        (PAGE_SIZE, 2 * PAGE_SIZE + size, 0),
        (3 * PAGE_SIZE + size, size, 2 * PAGE_SIZE),
    ];
    for (at, len, file_off) in parts {
        // SAFETY: replaces part of our own reservation (MAP_FIXED inside
        // it) with a shared mapping of the map file, which is at least
        // `file_off + len` long.
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
            let e = io::Error::last_os_error();
            // SAFETY: the reservation made above, used by nothing else.
            unsafe { libc::munmap(region.cast(), region_len) };
            return Err(e);
        }
    }
    Ok((region, region_len))
}

impl MapOps for UserRingBuf {
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

/// The user-space producer of one ring (what `user_ring_buffer__new` sets
/// up), with libbpf's contract: one thread produces at a time (callers
/// serialize `reserve`); `submit` / `discard` need no synchronization.
pub struct UserRingProducer {
    map: Arc<Map>,
    ring: NonNull<UserRingBuf>,
}

// SAFETY: `ring` points into `map`, kept alive by the producer; the ring
// is Sync. Not Sync itself: reservations must be serialized (libbpf).
unsafe impl Send for UserRingProducer {}

impl std::fmt::Debug for UserRingProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRingProducer")
            .field("map", &self.map.id())
            .finish()
    }
}

impl UserRingProducer {
    /// A producer for a `USER_RINGBUF` map (`-EINVAL` for any other type).
    pub fn new(map: Arc<Map>) -> Result<UserRingProducer, MapError> {
        if map.map_type() != map_type::USER_RINGBUF {
            return Err(MapError::Invalid("not a user ring buffer map"));
        }
        let ring = NonNull::from(
            map.downcast::<UserRingBuf>()
                .ok_or(MapError::Invalid("not a user ring buffer map"))?,
        );
        Ok(UserRingProducer { map, ring })
    }

    fn ring(&self) -> &UserRingBuf {
        // SAFETY: points into `self.map`, alive as long as `self`.
        unsafe { self.ring.as_ref() }
    }

    pub fn map(&self) -> &Arc<Map> {
        &self.map
    }

    /// `user_ring_buffer__reserve`: `size` writable bytes, 8-aligned, to
    /// be committed with [`UserRingProducer::submit`] or `discard`.
    /// [`ReserveError::TooBig`] when the record can never fit,
    /// [`ReserveError::NoSpace`] when it does not fit now.
    pub fn reserve(&self, size: u32) -> Result<NonNull<u8>, ReserveError> {
        if size & (BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT) != 0 {
            return Err(ReserveError::TooBig);
        }
        let r = self.ring();
        let cons = r.consumer().load(Ordering::Acquire);
        let prod = r.producer().load(Ordering::Acquire);
        let total = round_up8(u64::from(size) + u64::from(BPF_RINGBUF_HDR_SZ));
        if total > r.size {
            return Err(ReserveError::TooBig);
        }
        if r.size.saturating_sub(prod.wrapping_sub(cons)) < total {
            return Err(ReserveError::NoSpace);
        }
        let hdr = r.hdr_at(prod);
        hdr.len
            .store(size | BPF_RINGBUF_BUSY_BIT, Ordering::Relaxed);
        hdr.pad.store(0, Ordering::Relaxed);
        // Publishes the header to the drain.
        r.producer().store(prod + total, Ordering::Release);
        let off = (prod + u64::from(BPF_RINGBUF_HDR_SZ)) & r.mask();
        // SAFETY: `off` < size: inside the data of the view.
        NonNull::new(unsafe { r.data().add(off as usize) }).ok_or(ReserveError::NoSpace)
    }

    /// `user_ring_buffer__reserve_blocking`: [`UserRingProducer::reserve`],
    /// waiting up to `timeout` (`None`: forever) for a drain to make room.
    /// On timeout [`ReserveError::NoSpace`]; a signal handler that runs
    /// while it sleeps ends the wait with [`ReserveError::Interrupted`], as
    /// libbpf's `epoll_wait` does.
    pub fn reserve_blocking(
        &self,
        size: u32,
        timeout: Option<Duration>,
    ) -> Result<NonNull<u8>, ReserveError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let total = round_up8(u64::from(size) + u64::from(BPF_RINGBUF_HDR_SZ));
        let r = self.ring();
        loop {
            match self.reserve(size) {
                Err(ReserveError::NoSpace) => {}
                other => return other,
            }
            let remaining = match deadline {
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        break;
                    }
                    Some(d - now)
                }
                None => None,
            };
            let seq = r.channel().arm();
            // SeqCst: pairs with the drain's SeqCst consumer_pos stores.
            if r.free_space(Ordering::SeqCst) >= total {
                continue;
            }
            if futex::wait(r.channel().seq_word(), seq, remaining) == WaitResult::Interrupted {
                return Err(ReserveError::Interrupted);
            }
        }
        // One more try after the timeout, as libbpf.
        self.reserve(size)
    }

    /// The header of a reserved sample.
    fn hdr_of(&self, sample: *mut u8) -> &RecordHeader {
        let r = self.ring();
        let off = (sample as u64)
            .wrapping_sub(r.data() as u64)
            .wrapping_add(r.size)
            .wrapping_sub(u64::from(BPF_RINGBUF_HDR_SZ));
        r.hdr_at(off)
    }

    fn commit(&self, sample: *mut u8, discard: bool) {
        let hdr = self.hdr_of(sample);
        let mut new_len = hdr.len.load(Ordering::Relaxed) & !BPF_RINGBUF_BUSY_BIT;
        if discard {
            new_len |= BPF_RINGBUF_DISCARD_BIT;
        }
        // Publishes the sample's bytes to the drain.
        hdr.len.swap(new_len, Ordering::SeqCst);
    }

    /// `user_ring_buffer__submit`.
    ///
    /// # Safety
    /// `sample` came from [`UserRingProducer::reserve`] of this producer
    /// and was not committed yet.
    pub unsafe fn submit(&self, sample: *mut u8) {
        self.commit(sample, false);
    }

    /// `user_ring_buffer__discard`.
    ///
    /// # Safety
    /// As [`UserRingProducer::submit`].
    pub unsafe fn discard(&self, sample: *mut u8) {
        self.commit(sample, true);
    }
}

/// `long bpf_user_ringbuf_drain(struct bpf_map *map, void *callback_fn,
/// void *ctx, u64 flags)`: calls `long callback_fn(struct bpf_dynptr
/// *dynptr, void *ctx)` for each sample (see [`UserRingBuf::drain`]); a
/// callback returning 0 goes on, anything else stops after its sample.
/// Returns the number of samples drained, or -EINVAL (flags, a map of
/// another type, a bad callback, a broken producer), -EBUSY, -E2BIG. A
/// value that is no callback of the run (which the kernel's verifier
/// refuses) is found out by the first call: that sample is consumed.
///
/// # Safety
/// Called by an engine with a map address from the loader and its env.
pub unsafe extern "C" fn bpf_user_ringbuf_drain(
    map: u64,
    callback_fn: u64,
    ctx: u64,
    flags: u64,
    _: u64,
    env: *mut crate::helpers::HelperEnv,
) -> u64 {
    use crate::helpers::callback::CallbackError;
    use crate::helpers::dynptr::{Dynptr, LentDynptr};
    let neg = |e: i32| (-i64::from(e)) as u64;
    if map == 0 {
        return neg(libc::EINVAL);
    }
    // SAFETY: the loader's map address (helper contract).
    let map = unsafe { Map::from_prog_addr(map) };
    let Some(ring) = (map.map_type() == map_type::USER_RINGBUF)
        .then(|| map.downcast::<UserRingBuf>())
        .flatten()
    else {
        return neg(libc::EINVAL);
    };
    // SAFETY: helper contract: null or the run's env, used exclusively here.
    let Some(env) = (unsafe { env.as_mut() }) else {
        return neg(libc::EINVAL);
    };
    let mut bad_callback = false;
    let r = ring.drain(flags, |sample, len| {
        let dynptr = Dynptr::local(sample, len);
        let lent = LentDynptr::new(&dynptr);
        match env.call_callback(callback_fn, [lent.addr(), ctx, 0, 0, 0]) {
            Ok(0) => DrainStep::Continue,
            // 1 stops; the verifier refuses other values.
            Ok(_) => DrainStep::Stop,
            Err(CallbackError::Aborted) => DrainStep::Abort,
            Err(_) => {
                bad_callback = true;
                DrainStep::Abort
            }
        }
    });
    if bad_callback {
        return neg(libc::EINVAL);
    }
    match r {
        Ok(n) => n,
        Err(e) => neg(e.errno()),
    }
}
