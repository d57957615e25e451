//! libbpf's event buffers: `ring_buffer__*` and `ring__*` (`ringbuf.c`),
//! `perf_buffer__*` (`libbpf.c`), and `user_ring_buffer__*` (`ringbuf.c`),
//! with libbpf 1.7's contracts, on the runtime's shared-memory rings.
//!
//! # Ring buffers
//!
//! A `struct ring` is a [`RingBufConsumer`] of a `RINGBUF` map (the map
//! fd's memfd, mapped by [`Map::open`]). Consumption is libbpf's
//! `ringbuf_process_ring`, done by [`RingBufConsumer::consume`]: committed
//! records in order, discarded ones skipped, `consumer_pos` stored after
//! each record, a negative callback return stops after its record and is
//! returned. No syscall is made per record.
//!
//! # Perf buffers
//!
//! `perf_buffer__new` makes one [`PerfRing`] (a memfd laid out like a perf
//! event's mmap: control page with `data_head` / `data_tail`, then
//! `page_cnt` data pages) per online CPU below `min(possible CPUs,
//! max_entries)`, exactly where libbpf opens a `PERF_COUNT_SW_BPF_OUTPUT`
//! event, and stores its fd in the map slot with `bpf_map_update_elem`, as
//! libbpf stores the perf event fd. `bpf_perf_event_output` in any process
//! writes `PERF_RECORD_SAMPLE` / `PERF_RECORD_LOST` records there, and
//! consumption is libbpf's `perf_event_read_simple`: the record a callback
//! stops on is consumed, the rest stay. The buffer keeps the map mapped for
//! its whole life: the map's per-process state holds the duplicate ring fds
//! that producers in other processes open through `/proc/<pid>/fd`.
//! `perf_buffer__free` deletes the slots it set, as libbpf does.
//!
//! # Waiting: `*__poll`
//!
//! libbpf sleeps in `epoll_wait`. Here `ring_buffer__poll` and
//! `perf_buffer__poll` sleep on the rings' futex wake channels
//! ([`futex::wait_any`]: `FUTEX_WAIT` for one ring, one `futex_waitv` for
//! several), so a producer makes the wake syscall only when a consumer
//! sleeps, and a busy consumer costs no syscall per event. The return
//! values are libbpf's: records consumed (ring buffer, capped at
//! `INT_MAX`), ready buffers (perf buffer, as `epoll_wait` counts them),
//! `0` on timeout, the callback's error, or `-EINTR` when a signal handler
//! interrupts the wait.
//!
//! # The epoll fd: `*__epoll_fd`
//!
//! Each buffer owns a real epoll instance, as in libbpf. The ring fds are
//! memfds, which epoll refuses, so the first `*__epoll_fd` call starts an
//! [`EventBridge`] (an eventfd plus one thread sleeping on the same wake
//! channels) and adds its eventfd to the epoll instance: the fd becomes
//! readable when data arrives and stays readable until the application
//! consumes (every consume path re-arms the bridge), like the kernel's
//! level-triggered ring fds. Until an application asks for the fd, no
//! thread runs.
//!
//! # Callbacks
//!
//! Callbacks are application code: no lock of this library is held while
//! they run, and they may call back into the same buffer (consume, poll,
//! `ring_buffer__add`). A callback that frees the buffer it is called from
//! is undefined behaviour, as in libbpf (the caller still uses it).
//! Buffers are not thread-safe, as in libbpf: one thread at a time.
//!
//! # Kernel maps
//!
//! A kernel `RINGBUF` map (an anon-inode BPF fd) is consumed as libbpf's
//! `ringbuf.c` does it (submodule `kernel`): the consumer page mapped
//! read-write, the producer page and twice the data read-only, records
//! read with acquire loads of their length (busy bit: stop; discard bit:
//! skip), the consumer position stored with release ordering after each
//! record, and the map fd itself in the buffer's epoll set (with the ring's
//! index as its data). One `struct ring_buffer` may hold rings of both
//! kinds (`ring_buffer__add`); as soon as it holds a kernel ring,
//! `ring_buffer__poll` waits in `epoll_wait` on that set as libbpf does,
//! the userspace rings taking part through the bridge below.
//!
//! A kernel `PERF_EVENT_ARRAY` gets libbpf's perf buffer: per CPU a
//! `perf_event_open(PERF_TYPE_SOFTWARE, PERF_COUNT_SW_BPF_OUTPUT,
//! sample_type = PERF_SAMPLE_RAW, wakeup_events = sample_period)` (or the
//! raw API's attribute as given), mapped with `1 + page_cnt` pages,
//! enabled, stored in the map slot and added to the epoll set; records are
//! read as `perf_event_read_simple` reads them (wrapped records copied,
//! `PERF_RECORD_LOST` to the lost callback), `perf_buffer__buffer_fd` is the
//! perf event fd, and `perf_buffer__free` clears the slots. A perf event fd
//! reports its readiness once (the kernel's `perf_poll` clears it), so an
//! application that waits on `perf_buffer__epoll_fd` itself then calls
//! `perf_buffer__consume`, as with libbpf.
//!
//! # Differences from libbpf on the kernel
//!
//! These are about userbpf's own maps; kernel maps behave as with libbpf.
//!
//! - `perf_buffer__buffer_fd` returns the ring's memfd: it can be mapped
//!   (as `perf_buffer__buffer` does) but not polled; use
//!   `perf_buffer__epoll_fd`.
//! - `perf_buffer_opts.sample_period` (the kernel's `wakeup_events`) is
//!   read but every sample wakes a sleeping consumer: a larger value only
//!   batches wake-ups in the kernel, it never changes what is delivered.
//! - `perf_buffer__new_raw` serves `PERF_TYPE_SOFTWARE` /
//!   `PERF_COUNT_SW_BPF_OUTPUT` events with `sample_type ==
//!   PERF_SAMPLE_RAW` only (what BPF programs write); other attributes
//!   fail with `EOPNOTSUPP`.
//! - A signal interrupts `*__poll` with `-EINTR` like `epoll_wait` does,
//!   except when several rings are waited on (`futex_waitv`) and the
//!   handler was installed with `SA_RESTART` (glibc's `signal()`): then
//!   the wait goes on until data or the timeout. Every libbpf-tools loop
//!   polls with a timeout and checks its exit flag, so it still exits.
//! - A `struct user_ring_buffer` is a [`UserRingProducer`] of a
//!   `USER_RINGBUF` map: libbpf's reserve/commit algorithm on the map's
//!   memfd. `user_ring_buffer__reserve_blocking` sleeps on the ring's
//!   futex wake channel, which `bpf_user_ringbuf_drain` (in any process)
//!   notifies, instead of `epoll_wait` on the map fd; no epoll instance is
//!   made (libbpf's is private to the buffer). NULL `rb` gives `EINVAL`
//!   (libbpf would crash); submit/discard of NULL do nothing. On a kernel
//!   `USER_RINGBUF` map it is libbpf's: the map mapped, reservations
//!   written there, `reserve_blocking` in `epoll_wait` on the map fd.

#![allow(non_snake_case)]

mod kernel;

use std::cell::{Cell, OnceCell, RefCell};
use std::ffi::{c_int, c_uint, c_ulong, c_void, CString};
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use userbpf_runtime::maps::perf_event_array::{
    PerfConsumeError, PerfRing, PERF_RECORD_LOST, PERF_RECORD_SAMPLE,
};
use userbpf_runtime::maps::ringbuf::{RingBuf, RingBufConsumer};
use userbpf_runtime::maps::user_ringbuf::{ReserveError, UserRingProducer};
use userbpf_runtime::maps::{map_type, Map};
use userbpf_runtime::shm::futex::{self, EventBridge, WaitResult, WakeSource, MAX_WAITV};
use userbpf_runtime::shm::PAGE_SIZE;

use crate::abi::{errno, set_errno, FfiReturn};
use crate::cabi;
use crate::error::AbiError;
use crate::ffi_fn;
use crate::opts::{read_opts, OptsStruct};
use crate::print;

// SAFETY (all four): bindgen's repr(C) mirrors of the C structs, starting
// with `size_t sz`, holding only integers and raw pointers.
unsafe impl OptsStruct for cabi::ring_buffer_opts {
    const NAME: &'static str = "ring_buffer_opts";
}
// SAFETY: see above.
unsafe impl OptsStruct for cabi::user_ring_buffer_opts {
    const NAME: &'static str = "user_ring_buffer_opts";
}
// SAFETY: see above.
unsafe impl OptsStruct for cabi::perf_buffer_opts {
    const NAME: &'static str = "perf_buffer_opts";
}
// SAFETY: see above.
unsafe impl OptsStruct for cabi::perf_buffer_raw_opts {
    const NAME: &'static str = "perf_buffer_raw_opts";
}

/// `PERF_TYPE_SOFTWARE`, `PERF_COUNT_SW_BPF_OUTPUT`, `PERF_SAMPLE_RAW`.
const PERF_TYPE_SOFTWARE: u32 = 1;
const PERF_COUNT_SW_BPF_OUTPUT: u64 = 10;
const PERF_SAMPLE_RAW: u64 = 1 << 10;

const INT_MAX: i64 = c_int::MAX as i64;

/// While the record at a ring's consumer position stays BUSY, look for a
/// dead producer this often (the runtime's consumer does the same).
const STUCK_STEP: Duration = Duration::from_millis(20);
/// An infinite wait sleeps in steps this long: a `FUTEX_WAIT` with a
/// timeout reports a signal handler as `EINTR` even under `SA_RESTART`
/// (without one it would be restarted), as `epoll_wait` does.
const FOREVER_STEP: Duration = Duration::from_secs(3600);
/// With more rings than one `futex_waitv` takes, the others are polled.
const OVERFLOW_STEP: Duration = Duration::from_millis(10);

// ---------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------

/// libbpf's `libbpf_err`: a negative value also sets `errno`.
fn libbpf_err(ret: c_int) -> c_int {
    if ret < 0 {
        set_errno(-ret);
    }
    ret
}

use userbpf_libbpf_compat::errstr::errstr;

/// The first fields of `struct bpf_map_info` (the kernel and our
/// `bpf_map_get_info_by_fd` accept a shorter struct).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct MapInfoHead {
    type_: u32,
    id: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    name: [u8; 16],
}

impl MapInfoHead {
    fn name(&self) -> String {
        let n = self.name.iter().position(|&b| b == 0).unwrap_or(16);
        String::from_utf8_lossy(&self.name[..n]).into_owned()
    }
}

/// `bpf_map_get_info_by_fd`, as libbpf calls it: the info or the errno.
fn map_info(fd: c_int) -> Result<MapInfoHead, i32> {
    let mut info = MapInfoHead::default();
    let mut len = size_of::<MapInfoHead>() as u32;
    // SAFETY: `info` is valid for `len` bytes of writes, `len` for a u32.
    let r = unsafe {
        crate::bpf_api::bpf_map_get_info_by_fd(fd, (&raw mut info).cast::<c_void>(), &mut len)
    };
    if r < 0 {
        Err(-r)
    } else {
        Ok(info)
    }
}

/// The map behind `fd` (whose info was just read, so it is a map fd),
/// mapped read-write even if `fd` itself is read- or write-only.
fn open_map(fd: c_int) -> Result<Arc<Map>, i32> {
    if fd < 0 {
        return Err(libc::EBADF);
    }
    // SAFETY: the caller's fd is open for the duration of this call (we
    // just read its info); it is only borrowed.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    if let Ok(map) = Map::open(borrowed) {
        return Ok(map);
    }
    let path = CString::new(format!("/proc/self/fd/{fd}")).map_err(|_| libc::EINVAL)?;
    // SAFETY: a valid C string; the result is a new fd nobody else owns.
    let raw = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if raw < 0 {
        return Err(errno());
    }
    // SAFETY: just opened, owned by nobody else.
    let own = unsafe { OwnedFd::from_raw_fd(raw) };
    Map::open(own.as_fd()).map_err(|e| e.errno())
}

/// The epoll data of a buffer's bridge eventfd (kernel fds carry their
/// buffer's index).
const BRIDGE_TOKEN: u64 = u64::MAX;

/// `epoll_ctl(EPOLL_CTL_ADD, fd, EPOLLIN)` with `token` as the data.
fn epoll_add(epoll: &OwnedFd, fd: c_int, token: u64) -> Result<(), i32> {
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: token,
    };
    // SAFETY: the epoll fd is ours, `fd` the caller's open fd; `ev` valid.
    if unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
        return Err(errno());
    }
    Ok(())
}

/// `epoll_create1(EPOLL_CLOEXEC)`.
fn epoll_create() -> Result<OwnedFd, i32> {
    // SAFETY: plain syscall.
    let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if fd < 0 {
        return Err(errno());
    }
    // SAFETY: a fresh fd nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Starts the epoll bridge of a buffer if it is not running: an eventfd
/// readable while one of `sources` has data, added to `epoll`.
fn start_bridge(
    cell: &OnceCell<EventBridge>,
    epoll: &OwnedFd,
    sources: impl FnOnce() -> Vec<Arc<dyn WakeSource>>,
) -> Result<(), i32> {
    if cell.get().is_some() {
        return Ok(());
    }
    let bridge =
        EventBridge::start(sources()).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: BRIDGE_TOKEN,
    };
    // SAFETY: both fds are open (owned by us); `ev` is a valid event.
    let r = unsafe {
        libc::epoll_ctl(
            epoll.as_raw_fd(),
            libc::EPOLL_CTL_ADD,
            bridge.fd().as_raw_fd(),
            &mut ev,
        )
    };
    if r < 0 {
        return Err(errno());
    }
    // Cannot be set meanwhile: buffers are used by one thread at a time.
    let _ = cell.set(bridge);
    Ok(())
}

/// How a wait for data ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wait {
    Ready,
    TimedOut,
    Interrupted,
}

/// `epoll_wait`'s timeout: negative means forever.
fn timeout_of(ms: c_int) -> Option<Duration> {
    u64::try_from(ms).ok().map(Duration::from_millis)
}

/// Sleeps until one of `sources` is ready, the timeout expires or a signal
/// handler interrupts the sleep. `stuck()` says that a ring is blocked by a
/// BUSY record: then the sleep is cut in [`STUCK_STEP`]s and `recover()`
/// (which discards the records of dead producers) runs between them.
fn wait_for_data(
    sources: &[&dyn WakeSource],
    timeout: Option<Duration>,
    stuck: &dyn Fn() -> bool,
    recover: &dyn Fn() -> bool,
) -> Wait {
    let ready = || sources.iter().any(|s| s.ready());
    if ready() {
        return Wait::Ready;
    }
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut words = Vec::with_capacity(sources.len().min(MAX_WAITV));
    loop {
        let remaining = match deadline {
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    return Wait::TimedOut;
                }
                Some(d - now)
            }
            None => None,
        };
        let is_stuck = stuck();
        let mut step = remaining.unwrap_or(FOREVER_STEP);
        if is_stuck {
            step = step.min(STUCK_STEP);
        }
        if sources.len() > MAX_WAITV {
            step = step.min(OVERFLOW_STEP);
        }
        // The wake-up protocol: arm every channel, check, then sleep.
        words.clear();
        for s in sources.iter().take(MAX_WAITV) {
            let ch = s.channel();
            words.push((ch.seq_word(), ch.arm()));
        }
        if ready() {
            return Wait::Ready;
        }
        let r = futex::wait_any(&words, Some(step));
        if ready() {
            return Wait::Ready;
        }
        if r == WaitResult::Interrupted {
            return Wait::Interrupted;
        }
        if is_stuck && recover() {
            return Wait::Ready;
        }
    }
}

// ---------------------------------------------------------------------------
// ring_buffer
// ---------------------------------------------------------------------------

/// Where a ring's records come from.
enum RingKind {
    /// A userbpf map: the runtime's consumer, and the ring as a wake source
    /// (for the poll wait and the epoll bridge).
    User {
        consumer: RingBufConsumer,
        source: Arc<dyn WakeSource>,
    },
    /// A kernel map, mapped as libbpf maps it; its fd is in the epoll set.
    Kernel(kernel::KernelRing),
}

/// `struct ring`: one ring buffer map of a `struct ring_buffer`.
pub struct Ring {
    kind: RingKind,
    sample_cb: cabi::ring_buffer_sample_fn,
    ctx: *mut c_void,
    map_fd: c_int,
    /// The owning buffer's bridge, re-armed after `ring__consume`.
    bridge: Rc<OnceCell<EventBridge>>,
}

impl Ring {
    /// libbpf's `ringbuf_process_ring`: records consumed (at most `n`, but
    /// at least one is looked at), or the callback's negative value.
    fn process(&self, n: u64) -> i64 {
        let (cb, ctx) = (self.sample_cb, self.ctx);
        let call = |sample: &[u8]| match cb {
            // SAFETY: the application's callback with libbpf's contract;
            // `sample` is valid (read-only) for the duration of the call.
            Some(f) => unsafe { f(ctx, sample.as_ptr() as *mut c_void, sample.len()) },
            // libbpf would call NULL; consuming is the harmless reading.
            None => 0,
        };
        match &self.kind {
            RingKind::User { consumer, .. } => match consumer.consume(n, call) {
                Ok(count) => count as i64,
                Err(e) => i64::from(e.to_ret()),
            },
            RingKind::Kernel(k) => k.process(n, call),
        }
    }

    fn is_kernel(&self) -> bool {
        matches!(self.kind, RingKind::Kernel(_))
    }

    /// The userspace ring's wake source.
    fn source(&self) -> Option<&Arc<dyn WakeSource>> {
        match &self.kind {
            RingKind::User { source, .. } => Some(source),
            RingKind::Kernel(_) => None,
        }
    }

    fn consumer_pos(&self) -> u64 {
        match &self.kind {
            RingKind::User { consumer, .. } => consumer.consumer_pos(),
            RingKind::Kernel(k) => k.consumer_pos(),
        }
    }

    fn producer_pos(&self) -> u64 {
        match &self.kind {
            RingKind::User { consumer, .. } => consumer.producer_pos(),
            RingKind::Kernel(k) => k.producer_pos(),
        }
    }

    fn avail_data_size(&self) -> u64 {
        match &self.kind {
            RingKind::User { consumer, .. } => consumer.avail_data_size(),
            RingKind::Kernel(k) => k.avail_data_size(),
        }
    }

    fn size(&self) -> u64 {
        match &self.kind {
            RingKind::User { consumer, .. } => consumer.size(),
            RingKind::Kernel(k) => k.size(),
        }
    }

    fn rearm(&self) {
        if let Some(b) = self.bridge.get() {
            b.rearm();
        }
    }

    /// True when a userspace consumer is stopped by a BUSY record.
    fn stuck(&self) -> bool {
        match &self.kind {
            RingKind::User { consumer, .. } => consumer.avail_data_size() > 0 && !consumer.ready(),
            RingKind::Kernel(_) => false,
        }
    }

    /// Discards records of dead producers; true if any.
    fn recover(&self) -> bool {
        match &self.kind {
            RingKind::User { consumer, .. } => consumer
                .map()
                .downcast::<RingBuf>()
                .is_some_and(|r| r.recover_dead_producers() > 0),
            RingKind::Kernel(_) => false,
        }
    }
}

/// `struct ring_buffer`.
pub struct RingBuffer {
    /// Boxed: `ring_buffer__ring` hands out stable pointers, and rings may
    /// be added from a callback while another ring is being consumed.
    #[allow(clippy::vec_box)] // the Box is what keeps the address stable
    rings: RefCell<Vec<Box<Ring>>>,
    bridge: Rc<OnceCell<EventBridge>>,
    /// `ring_buffer__epoll_fd` was called: userspace rings added later
    /// must reach the epoll set too.
    epoll_wanted: Cell<bool>,
    epoll: OwnedFd,
}

impl Drop for RingBuffer {
    fn drop(&mut self) {
        // The rings first (they share the bridge cell), then the bridge,
        // whose thread holds its own references to the maps.
        self.rings.get_mut().clear();
        if let Some(cell) = Rc::get_mut(&mut self.bridge) {
            drop(cell.take());
        }
    }
}

impl RingBuffer {
    /// The rings, as pointers that stay valid while the buffer lives (no
    /// borrow is held while callbacks run).
    fn ring_ptrs(&self) -> Vec<*const Ring> {
        self.rings
            .borrow()
            .iter()
            .map(|r| &**r as *const Ring)
            .collect()
    }

    /// `ring_buffer__add`: the errno on failure.
    fn add(
        &self,
        map_fd: c_int,
        sample_cb: cabi::ring_buffer_sample_fn,
        ctx: *mut c_void,
    ) -> Result<(), i32> {
        let info = map_info(map_fd).inspect_err(|&e| {
            print::warn(&format!(
                "ringbuf: failed to get map info for fd={map_fd}: {}\n",
                errstr(e)
            ));
        })?;
        if info.type_ != map_type::RINGBUF {
            print::warn(&format!(
                "ringbuf: map fd={map_fd} is not BPF_MAP_TYPE_RINGBUF\n"
            ));
            return Err(libc::EINVAL);
        }
        if crate::bpf_api::is_kernel_fd(map_fd) {
            return self.add_kernel(map_fd, info.max_entries, sample_cb, ctx);
        }
        let consumer = open_map(map_fd)
            .and_then(|map| RingBufConsumer::new(map).map_err(|e| e.errno()))
            .inspect_err(|&e| {
                print::warn(&format!(
                    "ringbuf: failed to mmap consumer page for map fd={map_fd}: {}\n",
                    errstr(e)
                ));
            })?;
        let source = consumer.wake_source();
        if let Some(b) = self.bridge.get() {
            b.add_source(source.clone());
        }
        self.rings.borrow_mut().push(Box::new(Ring {
            kind: RingKind::User { consumer, source },
            sample_cb,
            ctx,
            map_fd,
            bridge: self.bridge.clone(),
        }));
        if self.epoll_wanted.get() || self.has_kernel() {
            self.start_bridge()?;
        }
        Ok(())
    }

    /// `ring_buffer__add` of a kernel map: libbpf's mappings, and the map
    /// fd in the epoll set with the ring's index.
    fn add_kernel(
        &self,
        map_fd: c_int,
        max_entries: u32,
        sample_cb: cabi::ring_buffer_sample_fn,
        ctx: *mut c_void,
    ) -> Result<(), i32> {
        let ring = kernel::KernelRing::open(map_fd, max_entries).map_err(|e| match e {
            kernel::RingMapError::ConsumerPage(e) => {
                print::warn(&format!(
                    "ringbuf: failed to mmap consumer page for map fd={map_fd}: {}\n",
                    errstr(e)
                ));
                e
            }
            kernel::RingMapError::TooBig => {
                print::warn(&format!(
                    "ringbuf: ring buffer size ({max_entries}) is too big\n"
                ));
                libc::E2BIG
            }
            kernel::RingMapError::DataPages(e) => {
                print::warn(&format!(
                    "ringbuf: failed to mmap data pages for map fd={map_fd}: {}\n",
                    errstr(e)
                ));
                e
            }
        })?;
        let idx = self.rings.borrow().len();
        epoll_add(&self.epoll, map_fd, idx as u64).inspect_err(|&e| {
            print::warn(&format!(
                "ringbuf: failed to epoll add map fd={map_fd}: {}\n",
                errstr(e)
            ));
        })?;
        self.rings.borrow_mut().push(Box::new(Ring {
            kind: RingKind::Kernel(ring),
            sample_cb,
            ctx,
            map_fd,
            bridge: self.bridge.clone(),
        }));
        // Userspace rings now wait through the epoll set as well.
        if self.rings.borrow().iter().any(|r| !r.is_kernel()) {
            self.start_bridge()?;
        }
        Ok(())
    }

    fn has_kernel(&self) -> bool {
        self.rings.borrow().iter().any(|r| r.is_kernel())
    }

    /// Starts the bridge of the userspace rings (if there are any).
    fn start_bridge(&self) -> Result<(), i32> {
        let sources: Vec<Arc<dyn WakeSource>> = self
            .rings
            .borrow()
            .iter()
            .filter_map(|r| r.source().cloned())
            .collect();
        if sources.is_empty() {
            return Ok(());
        }
        start_bridge(&self.bridge, &self.epoll, || sources).inspect_err(|&e| {
            print::warn(&format!(
                "ringbuf: failed to start the epoll bridge: {}\n",
                errstr(e)
            ));
        })
    }

    fn rearm(&self) {
        if let Some(b) = self.bridge.get() {
            b.rearm();
        }
    }

    /// `ring_buffer__consume` and the processing half of `__poll`.
    fn consume_all(&self, rings: &[*const Ring]) -> c_int {
        let mut res: i64 = 0;
        for &r in rings {
            // SAFETY: rings live as long as the buffer (see ring_ptrs).
            let n = unsafe { &*r }.process(INT_MAX as u64);
            if n < 0 {
                self.rearm();
                return libbpf_err(n as c_int);
            }
            res += n;
            if res > INT_MAX {
                res = INT_MAX;
                break;
            }
        }
        self.rearm();
        res as c_int
    }

    fn poll(&self, timeout_ms: c_int) -> c_int {
        let rings = self.ring_ptrs();
        if self.has_kernel() {
            return self.poll_epoll(&rings, timeout_ms);
        }
        if timeout_ms != 0 {
            // SAFETY (all three): rings live as long as the buffer.
            let ring = |p: &*const Ring| unsafe { &**p };
            let sources: Vec<&dyn WakeSource> = rings
                .iter()
                .filter_map(|p| ring(p).source().map(|s| &**s))
                .collect();
            let stuck = || rings.iter().any(|p| ring(p).stuck());
            let recover = || {
                rings
                    .iter()
                    .filter(|p| ring(p).stuck())
                    .any(|p| ring(p).recover())
            };
            match wait_for_data(&sources, timeout_of(timeout_ms), &stuck, &recover) {
                Wait::Ready => {}
                Wait::TimedOut => return 0,
                Wait::Interrupted => return libbpf_err(-libc::EINTR),
            }
        }
        self.consume_all(&rings)
    }

    /// `ring_buffer__poll` with a kernel ring: libbpf's `epoll_wait` on the
    /// buffer's epoll set (kernel map fds, and the bridge of the userspace
    /// rings), then the ready rings (every userspace ring when the bridge
    /// fired).
    fn poll_epoll(&self, rings: &[*const Ring], timeout_ms: c_int) -> c_int {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; rings.len().max(1)];
        // SAFETY: `events` has room for that many entries.
        let cnt = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as c_int,
                timeout_ms,
            )
        };
        if cnt < 0 {
            return libbpf_err(-errno());
        }
        let mut res: i64 = 0;
        for ev in &events[..cnt as usize] {
            let token = ev.u64;
            let ready: Vec<*const Ring> = if token == BRIDGE_TOKEN {
                rings
                    .iter()
                    .copied()
                    // SAFETY: rings live as long as the buffer.
                    .filter(|&p| !unsafe { &*p }.is_kernel())
                    .collect()
            } else {
                rings.get(token as usize).copied().into_iter().collect()
            };
            for r in ready {
                // SAFETY: rings live as long as the buffer.
                let n = unsafe { &*r }.process(INT_MAX as u64);
                if n < 0 {
                    self.rearm();
                    return libbpf_err(n as c_int);
                }
                res += n;
            }
        }
        self.rearm();
        res.min(INT_MAX) as c_int
    }

    fn consume_n(&self, mut n: usize) -> c_int {
        let mut res: i64 = 0;
        for r in self.ring_ptrs() {
            // SAFETY: rings live as long as the buffer.
            let got = unsafe { &*r }.process(n as u64);
            if got < 0 {
                self.rearm();
                return libbpf_err(got as c_int);
            }
            res += got;
            // size_t arithmetic, as libbpf's (n = 0 still takes a record).
            n = n.wrapping_sub(got as usize);
            if n == 0 {
                break;
            }
        }
        self.rearm();
        res.min(INT_MAX) as c_int
    }
}

/// The buffer behind a C pointer.
///
/// # Safety
/// `rb` is NULL or came from `ring_buffer__new` and was not freed.
unsafe fn ring_buffer<'a>(rb: *const cabi::ring_buffer) -> Option<&'a RingBuffer> {
    // SAFETY: caller contract.
    unsafe { rb.cast::<RingBuffer>().as_ref() }
}

/// The ring behind a C pointer.
///
/// # Safety
/// `r` is NULL or came from `ring_buffer__ring` of a live buffer.
unsafe fn ring<'a>(r: *const cabi::ring) -> Option<&'a Ring> {
    // SAFETY: caller contract.
    unsafe { r.cast::<Ring>().as_ref() }
}

fn einval<T: FfiReturn>() -> T {
    T::from_error(&AbiError::Errno(libc::EINVAL))
}

ffi_fn! {
    /// `struct ring_buffer *ring_buffer__new(int map_fd, ring_buffer_sample_fn sample_cb,
    /// void *ctx, const struct ring_buffer_opts *opts)`
    ///
    /// # Safety
    /// `opts` NULL or a valid `ring_buffer_opts` of `opts->sz` bytes.
    pub unsafe fn ring_buffer__new(
        map_fd: c_int,
        sample_cb: cabi::ring_buffer_sample_fn,
        ctx: *mut c_void,
        opts: *const cabi::ring_buffer_opts,
    ) -> *mut cabi::ring_buffer {
        // SAFETY: caller contract.
        if unsafe { read_opts(opts) }.is_err() {
            return einval();
        }
        let epoll = match epoll_create() {
            Ok(fd) => fd,
            Err(e) => {
                print::warn(&format!(
                    "ringbuf: failed to create epoll instance: {}\n",
                    errstr(e)
                ));
                return <*mut cabi::ring_buffer>::from_error(&AbiError::Errno(e));
            }
        };
        let rb = Box::new(RingBuffer {
            rings: RefCell::new(Vec::new()),
            bridge: Rc::new(OnceCell::new()),
            epoll_wanted: Cell::new(false),
            epoll,
        });
        if let Err(e) = rb.add(map_fd, sample_cb, ctx) {
            drop(rb);
            return <*mut cabi::ring_buffer>::from_error(&AbiError::Errno(e));
        }
        Box::into_raw(rb).cast()
    }
}

ffi_fn! {
    /// `int ring_buffer__add(struct ring_buffer *rb, int map_fd,
    /// ring_buffer_sample_fn sample_cb, void *ctx)`
    ///
    /// # Safety
    /// `rb` from `ring_buffer__new`, not freed.
    pub unsafe fn ring_buffer__add(
        rb: *mut cabi::ring_buffer,
        map_fd: c_int,
        sample_cb: cabi::ring_buffer_sample_fn,
        ctx: *mut c_void,
    ) -> c_int {
        // SAFETY: caller contract.
        let Some(rb) = (unsafe { ring_buffer(rb) }) else {
            return einval();
        };
        match rb.add(map_fd, sample_cb, ctx) {
            Ok(()) => 0,
            Err(e) => libbpf_err(-e),
        }
    }
}

ffi_fn! {
    /// `void ring_buffer__free(struct ring_buffer *rb)`: NULL is fine.
    /// Must not be called from one of the buffer's own callbacks.
    ///
    /// # Safety
    /// `rb` NULL or from `ring_buffer__new`, not freed.
    pub unsafe fn ring_buffer__free(rb: *mut cabi::ring_buffer) {
        if !rb.is_null() {
            // SAFETY: caller contract: made by Box::into_raw in __new.
            drop(unsafe { Box::from_raw(rb.cast::<RingBuffer>()) });
        }
    }
}

ffi_fn! {
    /// `int ring_buffer__poll(struct ring_buffer *rb, int timeout_ms)`:
    /// waits up to `timeout_ms` (negative: forever) for data, then consumes
    /// every ring. Records consumed (at most `INT_MAX`), `0` on timeout, the
    /// callback's negative value, or `-EINTR`.
    ///
    /// # Safety
    /// `rb` from `ring_buffer__new`, not freed.
    pub unsafe fn ring_buffer__poll(rb: *mut cabi::ring_buffer, timeout_ms: c_int) -> c_int {
        // SAFETY: caller contract.
        match unsafe { ring_buffer(rb) } {
            Some(rb) => rb.poll(timeout_ms),
            None => einval(),
        }
    }
}

ffi_fn! {
    /// `int ring_buffer__consume(struct ring_buffer *rb)`: consumes every
    /// ring without waiting.
    ///
    /// # Safety
    /// `rb` from `ring_buffer__new`, not freed.
    pub unsafe fn ring_buffer__consume(rb: *mut cabi::ring_buffer) -> c_int {
        // SAFETY: caller contract.
        match unsafe { ring_buffer(rb) } {
            Some(rb) => rb.consume_all(&rb.ring_ptrs()),
            None => einval(),
        }
    }
}

ffi_fn! {
    /// `int ring_buffer__consume_n(struct ring_buffer *rb, size_t n)`
    ///
    /// # Safety
    /// `rb` from `ring_buffer__new`, not freed.
    pub unsafe fn ring_buffer__consume_n(rb: *mut cabi::ring_buffer, n: usize) -> c_int {
        // SAFETY: caller contract.
        match unsafe { ring_buffer(rb) } {
            Some(rb) => rb.consume_n(n),
            None => einval(),
        }
    }
}

ffi_fn! {
    /// `int ring_buffer__epoll_fd(const struct ring_buffer *rb)`: an epoll
    /// fd that is readable while data waits (see the module documentation).
    ///
    /// # Safety
    /// `rb` from `ring_buffer__new`, not freed.
    pub unsafe fn ring_buffer__epoll_fd(rb: *const cabi::ring_buffer) -> c_int {
        // SAFETY: caller contract.
        let Some(rb) = (unsafe { ring_buffer(rb) }) else {
            return einval();
        };
        rb.epoll_wanted.set(true);
        match rb.start_bridge() {
            Ok(()) => rb.epoll.as_raw_fd(),
            Err(e) => libbpf_err(-e),
        }
    }
}

ffi_fn! {
    /// `struct ring *ring_buffer__ring(struct ring_buffer *rb, unsigned int idx)`:
    /// NULL with `ERANGE` past the last ring.
    ///
    /// # Safety
    /// `rb` from `ring_buffer__new`, not freed.
    pub unsafe fn ring_buffer__ring(rb: *mut cabi::ring_buffer, idx: c_uint) -> *mut cabi::ring {
        // SAFETY: caller contract.
        let Some(rb) = (unsafe { ring_buffer(rb) }) else {
            return einval();
        };
        match rb.rings.borrow().get(idx as usize) {
            Some(r) => &**r as *const Ring as *mut cabi::ring,
            None => <*mut cabi::ring>::from_error(&AbiError::Errno(libc::ERANGE)),
        }
    }
}

ffi_fn! {
    /// `unsigned long ring__consumer_pos(const struct ring *r)`
    ///
    /// # Safety
    /// `r` from `ring_buffer__ring` of a live buffer.
    pub unsafe fn ring__consumer_pos(r: *const cabi::ring) -> c_ulong {
        // SAFETY: caller contract.
        unsafe { ring(r) }.map_or_else(einval, |r| r.consumer_pos() as c_ulong)
    }
}

ffi_fn! {
    /// `unsigned long ring__producer_pos(const struct ring *r)`
    ///
    /// # Safety
    /// `r` from `ring_buffer__ring` of a live buffer.
    pub unsafe fn ring__producer_pos(r: *const cabi::ring) -> c_ulong {
        // SAFETY: caller contract.
        unsafe { ring(r) }.map_or_else(einval, |r| r.producer_pos() as c_ulong)
    }
}

ffi_fn! {
    /// `size_t ring__avail_data_size(const struct ring *r)`
    ///
    /// # Safety
    /// `r` from `ring_buffer__ring` of a live buffer.
    pub unsafe fn ring__avail_data_size(r: *const cabi::ring) -> usize {
        // SAFETY: caller contract.
        unsafe { ring(r) }.map_or_else(einval, |r| r.avail_data_size() as usize)
    }
}

ffi_fn! {
    /// `size_t ring__size(const struct ring *r)`
    ///
    /// # Safety
    /// `r` from `ring_buffer__ring` of a live buffer.
    pub unsafe fn ring__size(r: *const cabi::ring) -> usize {
        // SAFETY: caller contract.
        unsafe { ring(r) }.map_or_else(einval, |r| r.size() as usize)
    }
}

ffi_fn! {
    /// `int ring__map_fd(const struct ring *r)`
    ///
    /// # Safety
    /// `r` from `ring_buffer__ring` of a live buffer.
    pub unsafe fn ring__map_fd(r: *const cabi::ring) -> c_int {
        // SAFETY: caller contract.
        unsafe { ring(r) }.map_or_else(einval, |r| r.map_fd)
    }
}

ffi_fn! {
    /// `int ring__consume_n(struct ring *r, size_t n)`
    ///
    /// # Safety
    /// `r` from `ring_buffer__ring` of a live buffer.
    pub unsafe fn ring__consume_n(r: *mut cabi::ring, n: usize) -> c_int {
        // SAFETY: caller contract.
        let Some(r) = (unsafe { ring(r) }) else {
            return einval();
        };
        let res = r.process(n as u64);
        r.rearm();
        if res < 0 {
            return libbpf_err(res as c_int);
        }
        res.min(INT_MAX) as c_int
    }
}

ffi_fn! {
    /// `int ring__consume(struct ring *r)`
    ///
    /// # Safety
    /// `r` from `ring_buffer__ring` of a live buffer.
    pub unsafe fn ring__consume(r: *mut cabi::ring) -> c_int {
        // SAFETY: caller contract.
        unsafe { ring__consume_n(r, INT_MAX as usize) }
    }
}

// ---------------------------------------------------------------------------
// user_ring_buffer
// ---------------------------------------------------------------------------

/// `struct user_ring_buffer`: the runtime's producer of a userbpf map,
/// or libbpf's algorithm on a kernel map.
pub enum UserRingBuffer {
    User(UserRingProducer),
    Kernel(kernel::KernelUserRing),
}

/// # Safety
/// `rb` is NULL or came from `user_ring_buffer__new`, not freed.
unsafe fn user_ring_buffer<'a>(rb: *mut cabi::user_ring_buffer) -> Option<&'a UserRingBuffer> {
    // SAFETY: caller contract.
    unsafe { rb.cast::<UserRingBuffer>().as_ref() }
}

/// A kernel ring's reservation as libbpf returns it.
fn kernel_reserved(r: Result<*mut u8, i32>) -> *mut c_void {
    match r {
        Ok(p) => p.cast(),
        Err(e) => <*mut c_void>::from_error(&AbiError::Errno(e)),
    }
}

/// A reservation's result as libbpf returns it.
fn reserved(r: Result<std::ptr::NonNull<u8>, ReserveError>) -> *mut c_void {
    match r {
        Ok(p) => p.as_ptr().cast(),
        Err(e) => <*mut c_void>::from_error(&AbiError::Errno(e.errno())),
    }
}

ffi_fn! {
    /// `struct user_ring_buffer *user_ring_buffer__new(int map_fd,
    /// const struct user_ring_buffer_opts *opts)`: `EINVAL` for bad opts or
    /// a map of another type; a bad fd fails its map-info call.
    ///
    /// # Safety
    /// `opts` NULL or a valid `user_ring_buffer_opts` of `opts->sz` bytes.
    pub unsafe fn user_ring_buffer__new(
        map_fd: c_int,
        opts: *const cabi::user_ring_buffer_opts,
    ) -> *mut cabi::user_ring_buffer {
        // SAFETY: caller contract.
        if unsafe { read_opts(opts) }.is_err() {
            return einval();
        }
        let info = match map_info(map_fd) {
            Ok(info) => info,
            Err(e) => {
                print::warn(&format!(
                    "user ringbuf: failed to get map info for fd={map_fd}: {}\n",
                    errstr(e)
                ));
                return <*mut cabi::user_ring_buffer>::from_error(&AbiError::Errno(e));
            }
        };
        if info.type_ != map_type::USER_RINGBUF {
            print::warn(&format!(
                "user ringbuf: map fd={map_fd} is not BPF_MAP_TYPE_USER_RINGBUF\n"
            ));
            return einval();
        }
        if crate::bpf_api::is_kernel_fd(map_fd) {
            return match kernel::KernelUserRing::open(map_fd, info.max_entries) {
                Ok(r) => Box::into_raw(Box::new(UserRingBuffer::Kernel(r))).cast(),
                Err(e) => {
                    let e = match e {
                        kernel::UserRingError::Epoll(e) => {
                            print::warn(&format!(
                                "user ringbuf: failed to create epoll instance: {}\n",
                                errstr(e)
                            ));
                            e
                        }
                        kernel::UserRingError::ConsumerPage(e) => {
                            print::warn(&format!(
                                "user ringbuf: failed to mmap consumer page for map fd={map_fd}: {}\n",
                                errstr(e)
                            ));
                            e
                        }
                        kernel::UserRingError::TooBig => {
                            print::warn(&format!(
                                "user ringbuf: ring buf size ({}) is too big\n",
                                info.max_entries
                            ));
                            libc::E2BIG
                        }
                        kernel::UserRingError::DataPages(e) => {
                            print::warn(&format!(
                                "user ringbuf: failed to mmap data pages for map fd={map_fd}: {}\n",
                                errstr(e)
                            ));
                            e
                        }
                        kernel::UserRingError::EpollAdd(e) => {
                            print::warn(&format!(
                                "user ringbuf: failed to epoll add map fd={map_fd}: {}\n",
                                errstr(e)
                            ));
                            e
                        }
                    };
                    <*mut cabi::user_ring_buffer>::from_error(&AbiError::Errno(e))
                }
            };
        }
        match open_map(map_fd).and_then(|map| UserRingProducer::new(map).map_err(|e| e.errno())) {
            Ok(producer) => Box::into_raw(Box::new(UserRingBuffer::User(producer))).cast(),
            Err(e) => {
                print::warn(&format!(
                    "user ringbuf: failed to mmap data pages for map fd={map_fd}: {}\n",
                    errstr(e)
                ));
                <*mut cabi::user_ring_buffer>::from_error(&AbiError::Errno(e))
            }
        }
    }
}

ffi_fn! {
    /// `void user_ring_buffer__free(struct user_ring_buffer *rb)`: NULL is
    /// fine.
    ///
    /// # Safety
    /// `rb` NULL or from `user_ring_buffer__new`, not freed.
    pub unsafe fn user_ring_buffer__free(rb: *mut cabi::user_ring_buffer) {
        if !rb.is_null() {
            // SAFETY: caller contract: made by Box::into_raw in __new.
            drop(unsafe { Box::from_raw(rb.cast::<UserRingBuffer>()) });
        }
    }
}

ffi_fn! {
    /// `void *user_ring_buffer__reserve(struct user_ring_buffer *rb, __u32 size)`:
    /// NULL with `E2BIG` when the sample can never fit, `ENOSPC` when it
    /// does not fit now. Not thread-safe (one producer at a time).
    ///
    /// # Safety
    /// `rb` from `user_ring_buffer__new`, not freed.
    pub unsafe fn user_ring_buffer__reserve(
        rb: *mut cabi::user_ring_buffer,
        size: u32,
    ) -> *mut c_void {
        // SAFETY: caller contract.
        match unsafe { user_ring_buffer(rb) } {
            Some(UserRingBuffer::User(p)) => reserved(p.reserve(size)),
            Some(UserRingBuffer::Kernel(k)) => kernel_reserved(k.reserve(size)),
            None => einval(),
        }
    }
}

ffi_fn! {
    /// `void *user_ring_buffer__reserve_blocking(struct user_ring_buffer *rb,
    /// __u32 size, int timeout_ms)`: waits up to `timeout_ms` (-1: forever;
    /// other negative values `EINVAL`) for a drain to make room; `ENOSPC`
    /// when there is still none, `E2BIG` as `__reserve`, `EINTR` when a
    /// signal handler interrupts the wait (libbpf's `epoll_wait`).
    ///
    /// # Safety
    /// `rb` from `user_ring_buffer__new`, not freed.
    pub unsafe fn user_ring_buffer__reserve_blocking(
        rb: *mut cabi::user_ring_buffer,
        size: u32,
        timeout_ms: c_int,
    ) -> *mut c_void {
        // SAFETY: caller contract.
        let Some(rb) = (unsafe { user_ring_buffer(rb) }) else {
            return einval();
        };
        if timeout_ms < -1 {
            return einval();
        }
        let p = match rb {
            UserRingBuffer::User(p) => p,
            UserRingBuffer::Kernel(k) => return kernel_reserved(k.reserve_blocking(size, timeout_ms)),
        };
        let timeout = u64::try_from(timeout_ms).ok().map(Duration::from_millis);
        reserved(p.reserve_blocking(size, timeout))
    }
}

ffi_fn! {
    /// `void user_ring_buffer__submit(struct user_ring_buffer *rb, void *sample)`
    ///
    /// # Safety
    /// `rb` from `user_ring_buffer__new`, not freed; `sample` a reservation
    /// of it not committed yet.
    pub unsafe fn user_ring_buffer__submit(rb: *mut cabi::user_ring_buffer, sample: *mut c_void) {
        // SAFETY: caller contract.
        if let Some(rb) = unsafe { user_ring_buffer(rb) } {
            if !sample.is_null() {
                // SAFETY: caller contract.
                unsafe {
                    match rb {
                        UserRingBuffer::User(p) => p.submit(sample.cast()),
                        UserRingBuffer::Kernel(k) => k.commit(sample.cast(), false),
                    }
                }
            }
        }
    }
}

ffi_fn! {
    /// `void user_ring_buffer__discard(struct user_ring_buffer *rb, void *sample)`
    ///
    /// # Safety
    /// As `user_ring_buffer__submit`.
    pub unsafe fn user_ring_buffer__discard(rb: *mut cabi::user_ring_buffer, sample: *mut c_void) {
        // SAFETY: caller contract.
        if let Some(rb) = unsafe { user_ring_buffer(rb) } {
            if !sample.is_null() {
                // SAFETY: caller contract.
                unsafe {
                    match rb {
                        UserRingBuffer::User(p) => p.discard(sample.cast()),
                        UserRingBuffer::Kernel(k) => k.commit(sample.cast(), true),
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// perf_buffer
// ---------------------------------------------------------------------------

/// Where a per-CPU ring lives.
enum CpuRing {
    /// userbpf's shared-memory ring.
    User(Arc<PerfRing>),
    /// The kernel's perf event ring.
    Kernel(kernel::KernelPerfBuf),
}

/// One per-CPU ring of a perf buffer (libbpf's `struct perf_cpu_buf`).
struct CpuBuf {
    ring: CpuRing,
    cpu: c_int,
    map_key: c_int,
    /// `perf_buffer__buffer`'s mapping of the ring, made on first use.
    base: Cell<*mut c_void>,
}

/// `struct perf_buffer`.
pub struct PerfBuffer {
    event_cb: cabi::perf_buffer_event_fn,
    sample_cb: cabi::perf_buffer_sample_fn,
    lost_cb: cabi::perf_buffer_lost_fn,
    ctx: *mut c_void,
    /// Data bytes per ring (`page_cnt` pages).
    mmap_size: usize,
    cpu_bufs: Vec<CpuBuf>,
    /// Kept mapped for the buffer's life: the map's state in this process
    /// holds the ring fds producers open (see the module documentation).
    map: Option<Arc<Map>>,
    /// The map fd, for a kernel map (whose slots `free` clears through it).
    kernel_map_fd: Option<c_int>,
    bridge: OnceCell<EventBridge>,
    epoll: OwnedFd,
}

impl Drop for PerfBuffer {
    fn drop(&mut self) {
        drop(self.bridge.take());
        for buf in &self.cpu_bufs {
            // As libbpf: clear the slot (whatever it holds now).
            if let Some(map) = &self.map {
                let _ = map.delete(&buf.map_key.to_ne_bytes());
            }
            if let Some(fd) = self.kernel_map_fd {
                // SAFETY: the key is a valid int for the call.
                unsafe { crate::bpf_api::bpf_map_delete_elem(fd, (&raw const buf.map_key).cast()) };
            }
            let base = buf.base.get();
            if !base.is_null() {
                // SAFETY: the mapping perf_buffer__buffer made, of this size;
                // the application may not use it after perf_buffer__free.
                unsafe { libc::munmap(base, self.mmap_size + PAGE_SIZE) };
            }
        }
    }
}

/// What `__perf_buffer__new` takes (libbpf's `struct perf_buffer_params`).
struct PerfParams {
    /// The raw API's attribute check (`None`: ours, always fine).
    attr_err: Option<i32>,
    /// The raw API's attribute (NULL: `perf_buffer__new`'s, made from
    /// `sample_period`), for kernel maps.
    raw_attr: *const c_void,
    sample_period: u32,
    event_cb: cabi::perf_buffer_event_fn,
    sample_cb: cabi::perf_buffer_sample_fn,
    lost_cb: cabi::perf_buffer_lost_fn,
    ctx: *mut c_void,
    /// `(cpu, map_key)` pairs the raw API asked for.
    cpus: Option<Vec<(c_int, c_int)>>,
}

/// libbpf's `parse_cpu_mask_str`: `0-3,8` as a mask, `EINVAL` if malformed.
fn parse_cpu_mask(s: &str) -> Result<Vec<bool>, i32> {
    let mut mask = Vec::new();
    for part in s.trim().split(',') {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        let lo: usize = lo.trim().parse().map_err(|_| libc::EINVAL)?;
        let hi: usize = hi.trim().parse().map_err(|_| libc::EINVAL)?;
        if hi < lo || hi > 1 << 20 {
            return Err(libc::EINVAL);
        }
        if mask.len() <= hi {
            mask.resize(hi + 1, false);
        }
        mask[lo..=hi].fill(true);
    }
    Ok(mask)
}

fn online_cpus() -> Result<Vec<bool>, i32> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    parse_cpu_mask(&text)
}

impl PerfBuffer {
    fn rearm(&self) {
        if let Some(b) = self.bridge.get() {
            b.rearm();
        }
    }

    /// `perf_buffer__process_record`: one record for the callbacks.
    fn handle(&self, cpu: c_int, rec: &[u8]) -> c_int {
        if let Some(f) = self.event_cb {
            // SAFETY: the application's callback; the record (header
            // included) is valid for the duration of the call.
            return unsafe { f(self.ctx, cpu, rec.as_ptr() as *mut cabi::perf_event_header) };
        }
        let u32_at = |o: usize| {
            rec.get(o..o + 4)
                .map_or(0, |b| u32::from_ne_bytes(b.try_into().unwrap_or_default()))
        };
        match u32_at(0) {
            PERF_RECORD_SAMPLE => {
                if let Some(f) = self.sample_cb {
                    let room = rec.len().saturating_sub(12);
                    let size = (u32_at(8) as usize).min(room) as u32;
                    let data = rec[rec.len().min(12)..].as_ptr() as *mut c_void;
                    // SAFETY: the application's callback; `size` bytes of
                    // raw data at `data`, valid for the call.
                    unsafe { f(self.ctx, cpu, data, size) };
                }
            }
            PERF_RECORD_LOST => {
                if let Some(f) = self.lost_cb {
                    let lost = rec
                        .get(16..24)
                        .map_or(0, |b| u64::from_ne_bytes(b.try_into().unwrap_or_default()));
                    // SAFETY: the application's callback.
                    unsafe { f(self.ctx, cpu, lost) };
                }
            }
            other => {
                print::warn(&format!("unknown perf sample type {}\n", other as i32));
                return cabi::LIBBPF_PERF_EVENT_ERROR;
            }
        }
        cabi::LIBBPF_PERF_EVENT_CONT
    }

    /// `perf_buffer__process_records` over `perf_event_read_simple`: 0, or
    /// the first callback value other than `LIBBPF_PERF_EVENT_CONT` (the
    /// record it came with is consumed, the following ones are not).
    fn process(&self, buf: &CpuBuf) -> c_int {
        let ring = match &buf.ring {
            CpuRing::User(r) => r,
            CpuRing::Kernel(k) => {
                let r = k.read_simple(
                    cabi::LIBBPF_PERF_EVENT_CONT,
                    cabi::LIBBPF_PERF_EVENT_ERROR,
                    |rec| self.handle(buf.cpu, rec),
                );
                return if r == cabi::LIBBPF_PERF_EVENT_CONT {
                    0
                } else {
                    r
                };
            }
        };
        let mut stop: Option<c_int> = None;
        let r = ring.consume_raw(|rec| {
            if stop.is_some() {
                // Leave this record (and the rest) in the ring.
                return -1;
            }
            let ret = self.handle(buf.cpu, rec);
            if ret != cabi::LIBBPF_PERF_EVENT_CONT {
                stop = Some(ret);
            }
            0
        });
        match r {
            Ok(_) | Err(PerfConsumeError::Callback(_)) => stop.unwrap_or(0),
            Err(e) => e.to_ret(),
        }
    }

    fn poll(&self, timeout_ms: c_int) -> c_int {
        if self.kernel_map_fd.is_some() {
            return self.poll_epoll(timeout_ms);
        }
        if timeout_ms != 0 {
            let sources: Vec<&dyn WakeSource> = self
                .cpu_bufs
                .iter()
                .filter_map(|b| match &b.ring {
                    CpuRing::User(r) => Some(&**r as &dyn WakeSource),
                    CpuRing::Kernel(_) => None,
                })
                .collect();
            match wait_for_data(&sources, timeout_of(timeout_ms), &|| false, &|| false) {
                Wait::Ready => {}
                Wait::TimedOut => return 0,
                Wait::Interrupted => return libbpf_err(-libc::EINTR),
            }
        }
        let mut cnt = 0;
        for buf in &self.cpu_bufs {
            let ready = match &buf.ring {
                CpuRing::User(r) => r.ready(),
                CpuRing::Kernel(k) => k.ready(),
            };
            if !ready {
                continue;
            }
            cnt += 1;
            let err = self.process(buf);
            if err != 0 {
                self.rearm();
                print::warn(&format!(
                    "error while processing records: {}\n",
                    errstr(err)
                ));
                return libbpf_err(err);
            }
        }
        self.rearm();
        cnt
    }

    /// libbpf's `perf_buffer__poll`: `epoll_wait` on the perf event fds,
    /// then the ready buffers; the number of ready buffers.
    fn poll_epoll(&self, timeout_ms: c_int) -> c_int {
        let n = self.cpu_bufs.len().max(1);
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; n];
        // SAFETY: `events` has room for `n` entries.
        let cnt = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                events.as_mut_ptr(),
                n as c_int,
                timeout_ms,
            )
        };
        if cnt < 0 {
            return -errno();
        }
        for ev in &events[..cnt as usize] {
            let Some(buf) = self.cpu_bufs.get(ev.u64 as usize) else {
                continue;
            };
            let err = self.process(buf);
            if err != 0 {
                print::warn(&format!(
                    "error while processing records: {}\n",
                    errstr(err)
                ));
                return libbpf_err(err);
            }
        }
        cnt
    }

    fn consume(&self) -> c_int {
        for (i, buf) in self.cpu_bufs.iter().enumerate() {
            let err = self.process(buf);
            if err != 0 {
                self.rearm();
                print::warn(&format!(
                    "perf_buffer: failed to process records in buffer #{i}: {}\n",
                    errstr(err)
                ));
                return libbpf_err(err);
            }
        }
        self.rearm();
        0
    }
}

/// libbpf's `__perf_buffer__new`: the buffer or the errno.
fn perf_buffer_new(map_fd: c_int, page_cnt: usize, p: PerfParams) -> Result<Box<PerfBuffer>, i32> {
    if page_cnt == 0 || !page_cnt.is_power_of_two() {
        print::warn(&format!(
            "page count should be power of two, but is {page_cnt}\n"
        ));
        return Err(libc::EINVAL);
    }
    // Best-effort sanity checks, as libbpf's.
    let info = match map_info(map_fd) {
        Ok(info) => {
            if info.type_ != map_type::PERF_EVENT_ARRAY {
                print::warn(&format!(
                    "map '{}' should be BPF_MAP_TYPE_PERF_EVENT_ARRAY\n",
                    info.name()
                ));
                return Err(libc::EINVAL);
            }
            Some(info)
        }
        Err(libc::EINVAL) => {
            print::debug(&format!(
                "failed to get map info for FD {map_fd}; API not supported? Ignoring...\n"
            ));
            None
        }
        Err(e) => {
            print::warn(&format!(
                "failed to get map info for map FD {map_fd}: {}\n",
                errstr(e)
            ));
            return Err(e);
        }
    };
    let epoll = epoll_create().inspect_err(|&e| {
        print::warn(&format!("failed to create epoll instance: {}\n", errstr(e)));
    })?;
    if crate::bpf_api::is_kernel_fd(map_fd) {
        return perf_buffer_new_kernel(map_fd, page_cnt, p, info, epoll);
    }
    let mut pb = Box::new(PerfBuffer {
        event_cb: p.event_cb,
        sample_cb: p.sample_cb,
        lost_cb: p.lost_cb,
        ctx: p.ctx,
        mmap_size: page_cnt.saturating_mul(PAGE_SIZE),
        cpu_bufs: Vec::new(),
        // Mapped before the slots are set: bpf_map_update_elem finds this
        // instance, whose state keeps the ring fds producers open.
        map: open_map(map_fd).ok(),
        kernel_map_fd: None,
        bridge: OnceCell::new(),
        epoll,
    });
    for (cpu, map_key) in perf_cpus(p.cpus, info)? {
        let ring = match p.attr_err {
            Some(e) => Err(e),
            None => u32::try_from(page_cnt)
                .map_err(|_| libc::ENOMEM)
                .and_then(|n| PerfRing::create(n).map_err(|e| e.errno())),
        };
        let ring = ring.inspect_err(|&e| {
            print::warn(&format!(
                "failed to open perf buffer event on cpu #{cpu}: {}\n",
                errstr(e)
            ));
        })?;
        let ring_fd = ring.fd().as_raw_fd();
        pb.cpu_bufs.push(CpuBuf {
            ring: CpuRing::User(Arc::new(ring)),
            cpu,
            map_key,
            base: Cell::new(std::ptr::null_mut()),
        });
        // SAFETY: key and value are valid ints for the call.
        let r = unsafe {
            crate::bpf_api::bpf_map_update_elem(
                map_fd,
                (&raw const map_key).cast(),
                (&raw const ring_fd).cast(),
                0,
            )
        };
        if r < 0 {
            print::warn(&format!(
                "failed to set cpu #{cpu}, key {map_key} -> perf FD {ring_fd}: {}\n",
                errstr(-r)
            ));
            return Err(-r);
        }
    }
    Ok(pb)
}

/// The CPUs (and map keys) of a perf buffer: the raw API's list, or every
/// possible CPU below the map's size that is online.
fn perf_cpus(
    cpus: Option<Vec<(c_int, c_int)>>,
    info: Option<MapInfoHead>,
) -> Result<Vec<(c_int, c_int)>, i32> {
    let explicit = cpus.is_some();
    let pairs: Vec<(c_int, c_int)> = match cpus {
        Some(pairs) => pairs,
        None => {
            let possible = crate::implemented::libbpf_num_possible_cpus();
            if possible < 0 {
                return Err(-possible);
            }
            let mut cnt = possible;
            if let Some(i) = info.filter(|i| i.max_entries != 0) {
                cnt = cnt.min(i32::try_from(i.max_entries).unwrap_or(i32::MAX));
            }
            (0..cnt).map(|i| (i, i)).collect()
        }
    };
    let online = online_cpus().inspect_err(|&e| {
        print::warn(&format!("failed to get online CPU mask: {}\n", errstr(e)));
    })?;
    Ok(pairs
        .into_iter()
        .filter(|&(cpu, _)| {
            // Skip offline CPUs unless the caller named them explicitly.
            explicit || usize::try_from(cpu).is_ok_and(|c| online.get(c).copied().unwrap_or(false))
        })
        .collect())
}

/// `__perf_buffer__new` on a kernel `PERF_EVENT_ARRAY`: libbpf's, step for
/// step (a perf event per CPU, mapped and enabled, its fd in the map slot
/// and in the epoll set).
fn perf_buffer_new_kernel(
    map_fd: c_int,
    page_cnt: usize,
    p: PerfParams,
    info: Option<MapInfoHead>,
    epoll: OwnedFd,
) -> Result<Box<PerfBuffer>, i32> {
    let mmap_size = page_cnt.checked_mul(PAGE_SIZE).ok_or(libc::ENOMEM)?;
    let mut pb = Box::new(PerfBuffer {
        event_cb: p.event_cb,
        sample_cb: p.sample_cb,
        lost_cb: p.lost_cb,
        ctx: p.ctx,
        mmap_size,
        cpu_bufs: Vec::new(),
        map: None,
        kernel_map_fd: Some(map_fd),
        bridge: OnceCell::new(),
        epoll,
    });
    let default_attr = kernel::bpf_output_attr(p.sample_period.max(1));
    let attr: *const c_void = if p.raw_attr.is_null() {
        (&raw const default_attr).cast()
    } else {
        p.raw_attr
    };
    for (cpu, map_key) in perf_cpus(p.cpus, info)? {
        // SAFETY: `attr` is ours or the caller's valid perf_event_attr.
        let buf = unsafe { kernel::KernelPerfBuf::open(attr, cpu, mmap_size) }.map_err(|e| {
            let (what, e) = match e {
                kernel::PerfOpenError::Open(e) => ("open perf buffer event", e),
                kernel::PerfOpenError::Mmap(e) => ("mmap perf buffer", e),
                kernel::PerfOpenError::Enable(e) => ("enable perf buffer event", e),
            };
            print::warn(&format!("failed to {what} on cpu #{cpu}: {}\n", errstr(e)));
            e
        })?;
        let pfd = buf.fd();
        pb.cpu_bufs.push(CpuBuf {
            ring: CpuRing::Kernel(buf),
            cpu,
            map_key,
            base: Cell::new(std::ptr::null_mut()),
        });
        // SAFETY: key and value are valid ints for the call.
        let r = unsafe {
            crate::bpf_api::bpf_map_update_elem(
                map_fd,
                (&raw const map_key).cast(),
                (&raw const pfd).cast(),
                0,
            )
        };
        if r < 0 {
            print::warn(&format!(
                "failed to set cpu #{cpu}, key {map_key} -> perf FD {pfd}: {}\n",
                errstr(-r)
            ));
            return Err(-r);
        }
        epoll_add(&pb.epoll, pfd, (pb.cpu_bufs.len() - 1) as u64).inspect_err(|&e| {
            print::warn(&format!(
                "failed to epoll_ctl cpu #{cpu} perf FD {pfd}: {}\n",
                errstr(e)
            ));
        })?;
    }
    Ok(pb)
}

/// The perf buffer behind a C pointer.
///
/// # Safety
/// `pb` is NULL or came from `perf_buffer__new[_raw]` and was not freed.
unsafe fn perf_buffer<'a>(pb: *const cabi::perf_buffer) -> Option<&'a PerfBuffer> {
    // SAFETY: caller contract.
    unsafe { pb.cast::<PerfBuffer>().as_ref() }
}

fn perf_result(r: Result<Box<PerfBuffer>, i32>) -> *mut cabi::perf_buffer {
    match r {
        Ok(pb) => Box::into_raw(pb).cast(),
        Err(e) => <*mut cabi::perf_buffer>::from_error(&AbiError::Errno(e)),
    }
}

ffi_fn! {
    /// `struct perf_buffer *perf_buffer__new(int map_fd, size_t page_cnt,
    /// perf_buffer_sample_fn sample_cb, perf_buffer_lost_fn lost_cb, void *ctx,
    /// const struct perf_buffer_opts *opts)`
    ///
    /// # Safety
    /// `opts` NULL or a valid `perf_buffer_opts` of `opts->sz` bytes.
    pub unsafe fn perf_buffer__new(
        map_fd: c_int,
        page_cnt: usize,
        sample_cb: cabi::perf_buffer_sample_fn,
        lost_cb: cabi::perf_buffer_lost_fn,
        ctx: *mut c_void,
        opts: *const cabi::perf_buffer_opts,
    ) -> *mut cabi::perf_buffer {
        // SAFETY: caller contract. sample_period (wakeup_events) only
        // matters for kernel maps: see the module documentation.
        let Ok(o) = (unsafe { read_opts(opts) }) else {
            return einval();
        };
        // OPTS_GET(opts, sample_period, 1), 0 meaning 1.
        let sample_period = o.map_or(1, |o| o.sample_period).max(1);
        perf_result(perf_buffer_new(
            map_fd,
            page_cnt,
            PerfParams {
                attr_err: None,
                raw_attr: std::ptr::null(),
                sample_period,
                event_cb: None,
                sample_cb,
                lost_cb,
                ctx,
                cpus: None,
            },
        ))
    }
}

/// Whether the runtime can serve a raw `perf_event_attr`: `None` if so,
/// else the errno (with an explanation logged).
///
/// # Safety
/// `attr` points at a `struct perf_event_attr` (at least 32 bytes).
unsafe fn check_attr(attr: *const cabi::perf_event_attr) -> Option<i32> {
    let p = attr.cast::<u8>();
    // SAFETY: the first 32 bytes of perf_event_attr: type, size, config,
    // sample_period, sample_type (caller contract); read unaligned.
    let (ty, config, sample_type) = unsafe {
        (
            p.cast::<u32>().read_unaligned(),
            p.add(8).cast::<u64>().read_unaligned(),
            p.add(24).cast::<u64>().read_unaligned(),
        )
    };
    if ty == PERF_TYPE_SOFTWARE
        && config == PERF_COUNT_SW_BPF_OUTPUT
        && sample_type == PERF_SAMPLE_RAW
    {
        return None;
    }
    print::warn(&format!(
        "userbpf: perf buffers serve PERF_TYPE_SOFTWARE/PERF_COUNT_SW_BPF_OUTPUT events with \
         sample_type PERF_SAMPLE_RAW only (got type {ty}, config {config}, sample_type {sample_type:#x})\n"
    ));
    Some(libc::EOPNOTSUPP)
}

ffi_fn! {
    /// `struct perf_buffer *perf_buffer__new_raw(int map_fd, size_t page_cnt,
    /// struct perf_event_attr *attr, perf_buffer_event_fn event_cb, void *ctx,
    /// const struct perf_buffer_raw_opts *opts)`
    ///
    /// # Safety
    /// `attr` NULL or a valid `perf_event_attr`; `opts` NULL or a valid
    /// `perf_buffer_raw_opts` whose `cpus` and `map_keys` hold `cpu_cnt`
    /// ints each.
    pub unsafe fn perf_buffer__new_raw(
        map_fd: c_int,
        page_cnt: usize,
        attr: *mut cabi::perf_event_attr,
        event_cb: cabi::perf_buffer_event_fn,
        ctx: *mut c_void,
        opts: *const cabi::perf_buffer_raw_opts,
    ) -> *mut cabi::perf_buffer {
        if attr.is_null() {
            return einval();
        }
        // SAFETY: caller contract.
        let Ok(opts) = (unsafe { read_opts(opts) }) else {
            return einval();
        };
        let opts = opts.unwrap_or_default();
        let cpus = if opts.cpu_cnt > 0 {
            if opts.cpus.is_null() || opts.map_keys.is_null() {
                return einval();
            }
            let n = opts.cpu_cnt as usize;
            // SAFETY: caller contract: cpu_cnt ints in each array.
            let (cpus, keys) = unsafe {
                (
                    std::slice::from_raw_parts(opts.cpus, n),
                    std::slice::from_raw_parts(opts.map_keys, n),
                )
            };
            Some(cpus.iter().copied().zip(keys.iter().copied()).collect())
        } else {
            None
        };
        // The attribute only matters where libbpf opens the events (after
        // the page count and map checks), so its error is reported there.
        // Kernel maps take any attribute (the kernel checks it).
        let attr_err = if crate::bpf_api::is_kernel_fd(map_fd) {
            None
        } else {
            // SAFETY: caller contract.
            unsafe { check_attr(attr) }
        };
        perf_result(perf_buffer_new(
            map_fd,
            page_cnt,
            PerfParams {
                attr_err,
                raw_attr: attr.cast_const().cast(),
                sample_period: 1,
                event_cb,
                sample_cb: None,
                lost_cb: None,
                ctx,
                cpus,
            },
        ))
    }
}

ffi_fn! {
    /// `void perf_buffer__free(struct perf_buffer *pb)`: NULL is fine;
    /// clears the map slots the buffer set. Must not be called from one of
    /// the buffer's own callbacks.
    ///
    /// # Safety
    /// `pb` NULL or from `perf_buffer__new[_raw]`, not freed.
    pub unsafe fn perf_buffer__free(pb: *mut cabi::perf_buffer) {
        if !pb.is_null() {
            // SAFETY: caller contract: made by Box::into_raw.
            drop(unsafe { Box::from_raw(pb.cast::<PerfBuffer>()) });
        }
    }
}

ffi_fn! {
    /// `int perf_buffer__poll(struct perf_buffer *pb, int timeout_ms)`: the
    /// number of buffers that had data (as `epoll_wait` counts them), `0` on
    /// timeout, or a negative error.
    ///
    /// # Safety
    /// `pb` from `perf_buffer__new[_raw]`, not freed.
    pub unsafe fn perf_buffer__poll(pb: *mut cabi::perf_buffer, timeout_ms: c_int) -> c_int {
        // SAFETY: caller contract.
        match unsafe { perf_buffer(pb) } {
            Some(pb) => pb.poll(timeout_ms),
            None => einval(),
        }
    }
}

ffi_fn! {
    /// `int perf_buffer__consume(struct perf_buffer *pb)`: 0 or the first
    /// error.
    ///
    /// # Safety
    /// `pb` from `perf_buffer__new[_raw]`, not freed.
    pub unsafe fn perf_buffer__consume(pb: *mut cabi::perf_buffer) -> c_int {
        // SAFETY: caller contract.
        match unsafe { perf_buffer(pb) } {
            Some(pb) => pb.consume(),
            None => einval(),
        }
    }
}

ffi_fn! {
    /// `int perf_buffer__consume_buffer(struct perf_buffer *pb, size_t buf_idx)`
    ///
    /// # Safety
    /// `pb` from `perf_buffer__new[_raw]`, not freed.
    pub unsafe fn perf_buffer__consume_buffer(pb: *mut cabi::perf_buffer, buf_idx: usize) -> c_int {
        // SAFETY: caller contract.
        let Some(pb) = (unsafe { perf_buffer(pb) }) else {
            return einval();
        };
        let Some(buf) = pb.cpu_bufs.get(buf_idx) else {
            return libbpf_err(-libc::EINVAL);
        };
        let r = pb.process(buf);
        pb.rearm();
        libbpf_err(r)
    }
}

ffi_fn! {
    /// `size_t perf_buffer__buffer_cnt(const struct perf_buffer *pb)`: rings
    /// set up (one per online CPU).
    ///
    /// # Safety
    /// `pb` from `perf_buffer__new[_raw]`, not freed.
    pub unsafe fn perf_buffer__buffer_cnt(pb: *const cabi::perf_buffer) -> usize {
        // SAFETY: caller contract.
        unsafe { perf_buffer(pb) }.map_or_else(einval, |pb| pb.cpu_bufs.len())
    }
}

ffi_fn! {
    /// `int perf_buffer__buffer_fd(const struct perf_buffer *pb, size_t buf_idx)`:
    /// the ring's memfd (mappable, not pollable).
    ///
    /// # Safety
    /// `pb` from `perf_buffer__new[_raw]`, not freed.
    pub unsafe fn perf_buffer__buffer_fd(pb: *const cabi::perf_buffer, buf_idx: usize) -> c_int {
        // SAFETY: caller contract.
        let Some(pb) = (unsafe { perf_buffer(pb) }) else {
            return einval();
        };
        match pb.cpu_bufs.get(buf_idx).map(|b| &b.ring) {
            Some(CpuRing::User(r)) => r.fd().as_raw_fd(),
            Some(CpuRing::Kernel(k)) => k.fd(),
            None => libbpf_err(-libc::EINVAL),
        }
    }
}

ffi_fn! {
    /// `int perf_buffer__buffer(struct perf_buffer *pb, int buf_idx, void **buf,
    /// size_t *buf_size)`: the ring's mapping (a `perf_event_mmap_page`
    /// followed by the data) and its data size.
    ///
    /// # Safety
    /// `pb` from `perf_buffer__new[_raw]`, not freed; `buf` and `buf_size`
    /// valid for writes.
    pub unsafe fn perf_buffer__buffer(
        pb: *mut cabi::perf_buffer,
        buf_idx: c_int,
        buf: *mut *mut c_void,
        buf_size: *mut usize,
    ) -> c_int {
        // SAFETY: caller contract.
        let Some(pb) = (unsafe { perf_buffer(pb) }) else {
            return einval();
        };
        let Some(cpu_buf) = usize::try_from(buf_idx).ok().and_then(|i| pb.cpu_bufs.get(i)) else {
            return libbpf_err(-libc::EINVAL);
        };
        if buf.is_null() || buf_size.is_null() {
            return libbpf_err(-libc::EINVAL);
        }
        let ring = match &cpu_buf.ring {
            CpuRing::User(r) => r,
            CpuRing::Kernel(k) => {
                // SAFETY: caller contract: both are valid for writes.
                unsafe {
                    *buf = k.base();
                    *buf_size = pb.mmap_size;
                }
                return 0;
            }
        };
        if cpu_buf.base.get().is_null() {
            // SAFETY: maps the ring's memfd, which is one control page plus
            // mmap_size data bytes long, shared and read-write as libbpf's.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    pb.mmap_size + PAGE_SIZE,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    ring.fd().as_raw_fd(),
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                return libbpf_err(-errno());
            }
            cpu_buf.base.set(p);
        }
        // SAFETY: caller contract: both are valid for writes.
        unsafe {
            *buf = cpu_buf.base.get();
            *buf_size = pb.mmap_size;
        }
        0
    }
}

ffi_fn! {
    /// `int perf_buffer__epoll_fd(const struct perf_buffer *pb)`: an epoll
    /// fd that is readable while data waits (see the module documentation).
    ///
    /// # Safety
    /// `pb` from `perf_buffer__new[_raw]`, not freed.
    pub unsafe fn perf_buffer__epoll_fd(pb: *const cabi::perf_buffer) -> c_int {
        // SAFETY: caller contract.
        let Some(pb) = (unsafe { perf_buffer(pb) }) else {
            return einval();
        };
        if pb.kernel_map_fd.is_some() {
            // The perf event fds are in the epoll set already.
            return pb.epoll.as_raw_fd();
        }
        let sources = || {
            pb.cpu_bufs
                .iter()
                .filter_map(|b| match &b.ring {
                    CpuRing::User(r) => Some(r.clone() as Arc<dyn WakeSource>),
                    CpuRing::Kernel(_) => None,
                })
                .collect()
        };
        match start_bridge(&pb.bridge, &pb.epoll, sources) {
            Ok(()) => pb.epoll.as_raw_fd(),
            Err(e) => {
                print::warn(&format!(
                    "perf_buffer: failed to start the epoll bridge: {}\n",
                    errstr(e)
                ));
                libbpf_err(-e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_masks() {
        assert_eq!(parse_cpu_mask("0-1\n"), Ok(vec![true, true]));
        assert_eq!(parse_cpu_mask("0,2-3"), Ok(vec![true, false, true, true]));
        assert_eq!(parse_cpu_mask("3-1"), Err(libc::EINVAL));
        assert_eq!(parse_cpu_mask("x"), Err(libc::EINVAL));
    }

    #[test]
    fn errstr_names() {
        assert_eq!(errstr(-libc::EINVAL), "-EINVAL");
        assert_eq!(errstr(libc::EBADFD), "-EBADFD");
        assert_eq!(errstr(-1000), "-1000");
    }
}
