//! Futex waits and wakes on `u32` words in shared memory, and the wake-up
//! protocol of ring buffers built on them.
//!
//! # Primitives
//! - [`wait`]: `FUTEX_WAIT` on one word, *without* `FUTEX_PRIVATE_FLAG`, so
//!   that a waiter in one process is woken by a waker in another process
//!   that maps the same file (the kernel keys shared futexes by inode and
//!   offset, not by address).
//! - [`wait_any`]: `futex_waitv` (syscall 449, Linux 5.16) on up to
//!   [`MAX_WAITV`] words; on kernels without it, a short sleep loop that
//!   polls the words.
//! - [`wake`]: `FUTEX_WAKE`. Every call is counted ([`wake_syscalls`]) so
//!   tests can prove that producers make no syscall when nobody waits.
//!
//! All waits may return spuriously (a signal, a wake meant for a value that
//! changed back): callers re-check their condition in a loop, which the
//! [`WakeChannel`] protocol does.
//!
//! # The wake-up protocol ([`WakeChannel`])
//! A channel is two words in shared memory: `waiting` (a flag) and `seq`
//! (a wake counter, the futex word). A consumer that wants to sleep:
//! 1. reads `seq`,
//! 2. stores `waiting = 1`,
//! 3. checks its condition (data available?) and returns if it holds,
//! 4. futex-waits on `seq` for the value read in 1.
//!
//! A producer, after publishing data with a `SeqCst` operation, loads
//! `waiting` (`SeqCst`); only if it is set does it clear it, bump `seq` and
//! `FUTEX_WAKE` everybody. Steps 2-3 and publish-then-load form a Dekker
//! pair over two `SeqCst` locations: either the producer sees the flag, or
//! the consumer's check sees the data, so no wake-up is lost; a producer
//! that bumps `seq` between steps 1 and 4 makes the wait return at once.
//! A producer that finds the flag clear makes no syscall, so a busy ring
//! costs no syscall per event. The producer clears the flag, so a consumer
//! that was killed while waiting costs at most one useless wake, never a
//! syscall per event forever; several waiters on one channel all re-set the
//! flag before each sleep.
//!
//! While events stream in, a consumer does not arm at once: it polls, or
//! naps briefly, with the flag clear ([`AdaptiveSpin`],
//! [`wait_sources_adaptive`]); with a fast producer, sleeping as soon as
//! the ring is empty would cost a `FUTEX_WAKE` and a scheduler round trip
//! every few events.
//!
//! # Waking an epoll loop ([`EventBridge`])
//! `ring_buffer__epoll_fd` and `perf_buffer__epoll_fd` must give the
//! application an fd it can put in its own epoll set. [`EventBridge`] is an
//! `eventfd` plus one thread that waits on the sources' channels and makes
//! the eventfd readable while data is available. [`LazyEventBridge`]
//! creates it only when an application asks for the fd: until then nothing
//! runs and nothing is allocated, and producers cannot tell the difference.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const FUTEX_WAIT: libc::c_int = 0;
const FUTEX_WAKE: libc::c_int = 1;
/// `futex_waitv` on x86-64 and every other architecture with the generic
/// syscall table.
const SYS_FUTEX_WAITV: libc::c_long = 449;
/// `FUTEX2_SIZE_U32`: the futex word is 32 bits (shared: no PRIVATE flag).
const FUTEX2_SIZE_U32: u32 = 0x02;
/// Most words one `futex_waitv` call takes (the kernel's `FUTEX_WAITV_MAX`).
pub const MAX_WAITV: usize = 128;
/// Period of the sleep loop that replaces `futex_waitv` on old kernels.
const FALLBACK_POLL: Duration = Duration::from_millis(1);

/// How a wait ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitResult {
    /// Woken by [`wake`] (or spuriously). With [`wait_any`]: the index of
    /// the word that was woken, when the kernel says.
    Woken(Option<usize>),
    /// A word did not hold its expected value: something changed already.
    ValueChanged,
    /// The timeout expired.
    TimedOut,
    /// A signal interrupted the wait.
    Interrupted,
}

/// FUTEX_WAKE syscalls made by this process (all words).
static WAKE_SYSCALLS: AtomicU64 = AtomicU64::new(0);

/// How many `FUTEX_WAKE` syscalls this process has made.
pub fn wake_syscalls() -> u64 {
    WAKE_SYSCALLS.load(Ordering::Relaxed)
}

fn timespec_of(d: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    }
}

/// Stands for "forever" in [`wait`]: a timed `FUTEX_WAIT` returns `EINTR`
/// when a signal handler runs, even one installed with `SA_RESTART` (the
/// kernel restarts it through `ERESTART_RESTARTBLOCK` only when no handler
/// ran), whereas an untimed one is restarted transparently. Waiting
/// "forever" with a long timeout keeps `ring_buffer__poll(rb, -1)`
/// interruptible by Ctrl-C, as `epoll_wait` is.
const FOREVER: Duration = Duration::from_secs(365 * 24 * 3600);

/// Sleeps while `*word == expected`, at most `timeout` (`None`: forever).
/// Works across processes when `word` lies in a shared mapping. A signal
/// handler that runs meanwhile ends the wait with
/// [`WaitResult::Interrupted`], `SA_RESTART` or not.
pub fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> WaitResult {
    let ts = Some(timespec_of(timeout.unwrap_or(FOREVER)));
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a valid, aligned u32 for the duration of the call
    // (a reference); the kernel only reads it. `ts_ptr` is null or points to
    // a live timespec. FUTEX_WAIT's timeout is relative (CLOCK_MONOTONIC).
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            FUTEX_WAIT,
            expected,
            ts_ptr,
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    if r == 0 {
        return WaitResult::Woken(None);
    }
    match io::Error::last_os_error().raw_os_error() {
        Some(libc::EAGAIN) => WaitResult::ValueChanged,
        Some(libc::ETIMEDOUT) => WaitResult::TimedOut,
        Some(libc::EINTR) => WaitResult::Interrupted,
        // EFAULT/EINVAL cannot happen for a valid reference; report a
        // spurious wake-up so callers re-check and do not spin forever on
        // an impossible error (they bound their loops by time).
        _ => WaitResult::Woken(None),
    }
}

/// Wakes up to `n` waiters of `word` (in any process); returns how many.
pub fn wake(word: &AtomicU32, n: u32) -> usize {
    WAKE_SYSCALLS.fetch_add(1, Ordering::Relaxed);
    let n = n.min(i32::MAX as u32);
    // SAFETY: `word` is a valid, aligned u32 (a reference); FUTEX_WAKE only
    // uses its address as a key.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            FUTEX_WAKE,
            n,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    r.max(0) as usize
}

/// `struct futex_waitv` of the kernel ABI.
#[repr(C)]
struct FutexWaitv {
    val: u64,
    uaddr: u64,
    flags: u32,
    reserved: u32,
}

/// 0: not probed, 1: futex_waitv works, 2: the kernel lacks it.
static WAITV_STATE: AtomicU32 = AtomicU32::new(0);

/// Sleeps until one of `words` no longer holds its expected value or is
/// woken, at most `timeout`. Takes at most [`MAX_WAITV`] words (more: the
/// extra ones are only polled when the wait returns). Uses `futex_waitv`;
/// without it (Linux < 5.16), sleeps in steps of 1 ms and polls the words.
/// One word is a plain [`wait`] (interruptible by any handled signal);
/// `futex_waitv` is restarted after a handler installed with `SA_RESTART`,
/// so several words only report [`WaitResult::Interrupted`] for handlers
/// without it.
pub fn wait_any(words: &[(&AtomicU32, u32)], timeout: Option<Duration>) -> WaitResult {
    if words.is_empty() {
        if let Some(t) = timeout {
            std::thread::sleep(t);
        }
        return WaitResult::TimedOut;
    }
    if words.len() == 1 {
        return wait(words[0].0, words[0].1, timeout);
    }
    if WAITV_STATE.load(Ordering::Relaxed) != 2 {
        match waitv(words, timeout) {
            Some(r) => {
                WAITV_STATE.store(1, Ordering::Relaxed);
                return r;
            }
            None => WAITV_STATE.store(2, Ordering::Relaxed),
        }
    }
    poll_words(words, timeout)
}

/// `futex_waitv`, or `None` when the kernel does not have it.
fn waitv(words: &[(&AtomicU32, u32)], timeout: Option<Duration>) -> Option<WaitResult> {
    let n = words.len().min(MAX_WAITV);
    let mut v: Vec<FutexWaitv> = words[..n]
        .iter()
        .map(|(w, expected)| FutexWaitv {
            val: u64::from(*expected),
            uaddr: w.as_ptr() as u64,
            flags: FUTEX2_SIZE_U32,
            reserved: 0,
        })
        .collect();
    // futex_waitv takes an absolute timeout on the given clock.
    let deadline = timeout.map(|t| {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `now` is a valid out-pointer.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
        let total = Duration::new(now.tv_sec as u64, now.tv_nsec as u32).saturating_add(t);
        timespec_of(total)
    });
    let ts_ptr = deadline
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `v` holds `n` valid entries whose addresses come from live
    // references; `ts_ptr` is null or a live timespec.
    let r = unsafe {
        libc::syscall(
            SYS_FUTEX_WAITV,
            v.as_mut_ptr(),
            n as libc::c_uint,
            0 as libc::c_uint,
            ts_ptr,
            libc::CLOCK_MONOTONIC,
        )
    };
    if r >= 0 {
        return Some(WaitResult::Woken(Some(r as usize)));
    }
    Some(match io::Error::last_os_error().raw_os_error() {
        Some(libc::ENOSYS) => return None,
        Some(libc::EAGAIN) => WaitResult::ValueChanged,
        Some(libc::ETIMEDOUT) => WaitResult::TimedOut,
        Some(libc::EINTR) | Some(libc::ERESTART) => WaitResult::Interrupted,
        _ => WaitResult::Woken(None),
    })
}

/// The fallback of [`wait_any`]: poll the words every millisecond.
fn poll_words(words: &[(&AtomicU32, u32)], timeout: Option<Duration>) -> WaitResult {
    let start = Instant::now();
    loop {
        if words
            .iter()
            .any(|(w, expected)| w.load(Ordering::SeqCst) != *expected)
        {
            return WaitResult::ValueChanged;
        }
        let step = match timeout {
            Some(t) => {
                let spent = start.elapsed();
                if spent >= t {
                    return WaitResult::TimedOut;
                }
                (t - spent).min(FALLBACK_POLL)
            }
            None => FALLBACK_POLL,
        };
        std::thread::sleep(step);
    }
}

/// A wake-up channel in shared memory: see the module documentation for
/// the protocol. Zero-filled memory is an idle channel.
#[repr(C)]
#[derive(Debug, Default)]
pub struct WakeChannel {
    /// 1 while a consumer may be asleep (or about to sleep) on `seq`.
    /// Set by consumers (SeqCst), cleared by the producer that wakes them
    /// (SeqCst swap). Pairs with the data the producer published.
    waiting: AtomicU32,
    /// Wake counter, the futex word. Bumped (SeqCst) by a producer before
    /// `FUTEX_WAKE`; consumers read it before checking their condition.
    seq: AtomicU32,
}

const _: () = assert!(std::mem::size_of::<WakeChannel>() == 8);

impl WakeChannel {
    pub const fn new() -> WakeChannel {
        WakeChannel {
            waiting: AtomicU32::new(0),
            seq: AtomicU32::new(0),
        }
    }

    /// Producer side, after publishing data. Wakes every waiter if one may
    /// be asleep; returns whether it made the wake syscall.
    ///
    /// Contract: the publishing write must be a `SeqCst` operation (a
    /// `SeqCst` store or read-modify-write), and consumers must read it with
    /// `SeqCst` in their readiness check. Otherwise wake-ups can be lost.
    #[inline]
    pub fn notify(&self) -> bool {
        if self.waiting.load(Ordering::SeqCst) == 0 {
            return false;
        }
        self.wake_waiters()
    }

    /// Wakes every waiter if the waiting flag is set (clearing it); for
    /// producers that checked [`WakeChannel::has_waiters`] and decided to
    /// wake. Same ordering contract as [`WakeChannel::notify`]. Returns
    /// whether it made the wake syscall.
    #[cold]
    pub fn wake_waiters(&self) -> bool {
        if self.waiting.swap(0, Ordering::SeqCst) == 0 {
            return false;
        }
        self.seq.fetch_add(1, Ordering::SeqCst);
        wake(&self.seq, u32::MAX);
        true
    }

    /// True while the waiting flag is set (a consumer may be asleep).
    pub fn has_waiters(&self) -> bool {
        self.waiting.load(Ordering::SeqCst) != 0
    }

    /// Consumer side: returns `true` as soon as `ready()` holds, `false` if
    /// `timeout` (`None`: forever) expires first. `ready` must read the
    /// producers' publishing words with `SeqCst` (see [`notify`]).
    ///
    /// [`notify`]: WakeChannel::notify
    pub fn wait_until(&self, mut ready: impl FnMut() -> bool, timeout: Option<Duration>) -> bool {
        if ready() {
            return true;
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let seq = self.arm();
            if ready() {
                return true;
            }
            let remaining = match deadline {
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return false;
                    }
                    Some(d - now)
                }
                None => None,
            };
            if wait(&self.seq, seq, remaining) == WaitResult::TimedOut {
                return ready();
            }
            // Woken: look before arming again, so that a consumer that finds
            // data does not leave the flag set (a later producer would make
            // a useless wake syscall).
            if ready() {
                return true;
            }
        }
    }

    /// Steps 1-2 of the protocol: reads the counter and sets the flag.
    /// The caller checks its condition next, then sleeps on
    /// [`WakeChannel::seq_word`] for the returned value.
    pub fn arm(&self) -> u32 {
        let seq = self.seq.load(Ordering::SeqCst);
        self.waiting.store(1, Ordering::SeqCst);
        seq
    }

    /// The futex word to wait on after [`WakeChannel::arm`].
    pub fn seq_word(&self) -> &AtomicU32 {
        &self.seq
    }
}

/// Something a consumer can wait for: a channel and a readiness check.
pub trait WakeSource: Send + Sync {
    /// The channel producers notify.
    fn channel(&self) -> &WakeChannel;
    /// True when data is available to the consumer. Must read the
    /// producers' publishing words with `SeqCst`.
    fn ready(&self) -> bool;
    /// How full the buffer is, 0.0 to 1.0 (for [`AdaptiveSpin`]: a nap
    /// that lets a buffer fill past half is too long for it).
    fn fill(&self) -> f64 {
        0.0
    }
}

/// Longest a consumer polls before it sleeps (see [`AdaptiveSpin`]).
pub const SPIN_LIMIT: Duration = Duration::from_micros(30);
/// How long a streaming consumer naps, without asking to be woken, when
/// polling found nothing (see [`AdaptiveSpin`]).
pub const NAP: Duration = Duration::from_micros(50);

/// Process-local memory of how a consumer's recent waits ended, so that it
/// avoids costly wake-ups while events stream in.
///
/// A futex wake-up costs the producer a syscall and the consumer a trip
/// through the scheduler (several µs, far more on a loaded machine), while
/// writing an event costs tens of ns. A consumer that sleeps as soon as it
/// has caught up with a fast producer is woken again and again, and the
/// producer spends its time in `FUTEX_WAKE`; on a shared CPU every wake-up
/// also preempts the producer after a single event. So while the last
/// wait was short (a stream):
/// - the next wait first polls for up to [`SPIN_LIMIT`] with the waiting
///   flag clear (a producer on another CPU keeps writing, no syscalls);
/// - if polling finds nothing, the producer is probably not running
///   concurrently (same CPU, or descheduled): the consumer naps for
///   [`NAP`], still with the flag clear, so the producer runs a whole batch
///   without being interrupted; after a nap that found data, the next wait
///   naps at once instead of polling (unless the nap let a buffer fill past
///   half: then it polls again, so small buffers do not overflow);
/// - only a wait that still finds nothing sets the flag and sleeps until
///   woken, so an idle ring costs no CPU.
///
/// Latency while streaming is bounded by [`NAP`] (plus timer slack); the
/// first event after an idle period wakes the consumer at once.
#[derive(Debug)]
pub struct AdaptiveSpin {
    /// How the last wait ended: see the `LAST_*` values, or the
    /// nanoseconds it slept on the futex.
    last: AtomicU64,
}

/// The last wait found data while polling.
const LAST_SPIN: u64 = 0;
/// The last wait found data after a nap.
const LAST_NAP: u64 = 1;
/// The last wait timed out (idle).
const LAST_IDLE: u64 = u64::MAX;

impl Default for AdaptiveSpin {
    fn default() -> Self {
        AdaptiveSpin::new()
    }
}

impl AdaptiveSpin {
    pub const fn new() -> AdaptiveSpin {
        AdaptiveSpin {
            last: AtomicU64::new(LAST_IDLE),
        }
    }

    fn last(&self) -> u64 {
        self.last.load(Ordering::Relaxed)
    }

    fn set(&self, v: u64) {
        self.last.store(v, Ordering::Relaxed);
    }

    /// True while events stream in (the last wait was short).
    fn streaming(&self) -> bool {
        self.last() < 4 * SPIN_LIMIT.as_nanos() as u64
    }

    fn record_sleep(&self, slept: Option<Duration>) {
        // Futex sleeps are recorded as at least 2 ns so they never read as
        // LAST_SPIN / LAST_NAP.
        let ns = slept.map_or(LAST_IDLE, |d| (d.as_nanos() as u64).clamp(2, LAST_IDLE - 1));
        self.set(ns);
    }
}

/// Polls `any_ready` for up to `budget`.
fn poll_for(any_ready: &dyn Fn() -> bool, budget: Duration) -> bool {
    let start = Instant::now();
    let mut i = 0u32;
    loop {
        if any_ready() {
            return true;
        }
        i = i.wrapping_add(1);
        if i.is_multiple_of(64) && start.elapsed() >= budget {
            return false;
        }
        std::hint::spin_loop();
    }
}

/// How a wait for data ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Data is available.
    Ready,
    /// The timeout expired with nothing available.
    TimedOut,
    /// A signal interrupted the sleep (`ring_buffer__poll` and
    /// `perf_buffer__poll` then return `-EINTR`, which applications use to
    /// notice their exit flag).
    Interrupted,
}

/// Waits until one of `sources` is ready (true) or `timeout` expires or a
/// signal interrupts the sleep (false). Uses one `futex_waitv` over all the
/// channels (only the first [`MAX_WAITV`] are slept on; all are checked).
pub fn wait_sources(sources: &[&dyn WakeSource], timeout: Option<Duration>) -> bool {
    wait_sources_adaptive(sources, timeout, None) == Readiness::Ready
}

/// [`wait_sources`] that avoids wake-ups while events stream in (see
/// [`AdaptiveSpin`]) and tells a timeout from a signal.
pub fn wait_sources_adaptive(
    sources: &[&dyn WakeSource],
    timeout: Option<Duration>,
    spin: Option<&AdaptiveSpin>,
) -> Readiness {
    let any_ready = || sources.iter().any(|s| s.ready());
    if any_ready() {
        return Readiness::Ready;
    }
    if sources.is_empty() {
        if let Some(t) = timeout {
            std::thread::sleep(t);
        }
        return Readiness::TimedOut;
    }
    let start = Instant::now();
    let deadline = timeout.map(|t| start + t);
    if let Some(spin) = spin.filter(|s| s.streaming()) {
        let limit = |d: Duration| timeout.map_or(d, |t| d.min(t));
        if spin.last() != LAST_NAP && poll_for(&any_ready, limit(SPIN_LIMIT)) {
            spin.set(LAST_SPIN);
            return Readiness::Ready;
        }
        let nap = limit(NAP).saturating_sub(start.elapsed());
        if !nap.is_zero() {
            std::thread::sleep(nap);
        }
        if any_ready() {
            let too_full = sources.iter().any(|s| s.fill() > 0.5);
            spin.set(if too_full { LAST_SPIN } else { LAST_NAP });
            return Readiness::Ready;
        }
    }
    let slept_from = Instant::now();
    let mut words: Vec<(&AtomicU32, u32)> = Vec::with_capacity(sources.len().min(MAX_WAITV));
    let result = loop {
        words.clear();
        for s in sources.iter().take(MAX_WAITV) {
            let ch = s.channel();
            words.push((ch.seq_word(), ch.arm()));
        }
        if any_ready() {
            break Readiness::Ready;
        }
        let remaining = match deadline {
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    break Readiness::TimedOut;
                }
                Some(d - now)
            }
            None => None,
        };
        let r = wait_any(&words, remaining);
        // Woken: look before arming again (see WakeChannel::wait_until).
        if any_ready() {
            break Readiness::Ready;
        }
        match r {
            WaitResult::TimedOut => break Readiness::TimedOut,
            WaitResult::Interrupted => break Readiness::Interrupted,
            _ => {}
        }
    };
    if let Some(spin) = spin {
        spin.record_sleep((result == Readiness::Ready).then(|| slept_from.elapsed()));
    }
    if result != Readiness::Ready && any_ready() {
        return Readiness::Ready;
    }
    result
}

/// An `eventfd` that is readable while one of its sources has data, for
/// `ring_buffer__epoll_fd` / `perf_buffer__epoll_fd`.
///
/// One thread per bridge waits on the sources' channels (so producers wake
/// it exactly as they would wake a consumer) and writes the eventfd when a
/// source becomes ready; it then waits for [`EventBridge::rearm`], which the
/// consumer calls after consuming, before it looks again. The eventfd thus
/// behaves like the kernel's level-triggered ring buffer fd: readable while
/// data waits, whatever the application does with it. Drop stops the
/// thread.
pub struct EventBridge {
    inner: Arc<BridgeInner>,
    thread: Option<JoinHandle<()>>,
}

struct BridgeInner {
    efd: OwnedFd,
    /// Bumped on every rearm, source change and stop; the thread sleeps on
    /// it (a private futex word, woken with the same shared wake).
    ctrl: AtomicU32,
    /// True from the eventfd write until the consumer rearms. A mutex, not
    /// an atomic: the write and the flag change together, and so do the
    /// drain and the reset, so the eventfd is never left readable with the
    /// flag clear.
    signaled: Mutex<bool>,
    stop: AtomicBool,
    sources: Mutex<Vec<Arc<dyn WakeSource>>>,
}

impl std::fmt::Debug for EventBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBridge")
            .field("fd", &self.inner.efd.as_raw_fd())
            .finish()
    }
}

impl EventBridge {
    /// Creates the eventfd and starts the thread.
    pub fn start(sources: Vec<Arc<dyn WakeSource>>) -> io::Result<EventBridge> {
        // SAFETY: plain syscall.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh fd that nothing else owns.
        let efd = unsafe { OwnedFd::from_raw_fd(raw) };
        let inner = Arc::new(BridgeInner {
            efd,
            ctrl: AtomicU32::new(0),
            signaled: Mutex::new(false),
            stop: AtomicBool::new(false),
            sources: Mutex::new(sources),
        });
        let thread_inner = inner.clone();
        let thread = std::thread::Builder::new()
            .name("userbpf-evbridge".into())
            .spawn(move || bridge_loop(&thread_inner))?;
        Ok(EventBridge {
            inner,
            thread: Some(thread),
        })
    }

    /// The eventfd: readable (EPOLLIN) while a source has data.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.inner.efd.as_fd()
    }

    /// Adds a source (a ring added to the `ring_buffer` later).
    pub fn add_source(&self, source: Arc<dyn WakeSource>) {
        self.inner
            .sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(source);
        self.poke();
    }

    /// Called by the consumer after it consumed: drains the eventfd and lets
    /// the thread look again (it re-signals at once if data is left). Makes
    /// no syscall unless the bridge had signaled.
    pub fn rearm(&self) {
        {
            let mut signaled = self
                .inner
                .signaled
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if !*signaled {
                return;
            }
            let mut buf = 0u64;
            // SAFETY: reads 8 bytes into `buf`; the fd is non-blocking.
            unsafe { libc::read(self.inner.efd.as_raw_fd(), (&mut buf as *mut u64).cast(), 8) };
            *signaled = false;
        }
        self.poke();
    }

    fn poke(&self) {
        self.inner.ctrl.fetch_add(1, Ordering::SeqCst);
        wake(&self.inner.ctrl, 1);
    }
}

impl Drop for EventBridge {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        self.poke();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An [`EventBridge`] that starts on first use: `ring_buffer` /
/// `perf_buffer` keep one, add their rings as they are added, and call
/// [`LazyEventBridge::fd`] only from `*__epoll_fd`. Until then it holds a
/// list and nothing else (no fd, no thread), and [`LazyEventBridge::rearm`]
/// is one atomic load.
#[derive(Default)]
pub struct LazyEventBridge {
    pending: Mutex<Vec<Arc<dyn WakeSource>>>,
    bridge: std::sync::OnceLock<EventBridge>,
}

impl std::fmt::Debug for LazyEventBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyEventBridge")
            .field("started", &self.bridge.get().is_some())
            .finish()
    }
}

impl LazyEventBridge {
    pub fn new() -> LazyEventBridge {
        LazyEventBridge::default()
    }

    /// Adds a source (to the running bridge, or for when it starts).
    pub fn add_source(&self, source: Arc<dyn WakeSource>) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        match self.bridge.get() {
            Some(b) => b.add_source(source),
            None => pending.push(source),
        }
    }

    /// The eventfd, starting the bridge thread the first time.
    pub fn fd(&self) -> io::Result<BorrowedFd<'_>> {
        if let Some(b) = self.bridge.get() {
            return Ok(b.fd());
        }
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if self.bridge.get().is_none() {
            let bridge = EventBridge::start(std::mem::take(&mut *pending))?;
            let _ = self.bridge.set(bridge);
        }
        drop(pending);
        self.bridge
            .get()
            .map(EventBridge::fd)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EIO))
    }

    /// True once [`LazyEventBridge::fd`] has started the bridge.
    pub fn is_started(&self) -> bool {
        self.bridge.get().is_some()
    }

    /// [`EventBridge::rearm`] if the bridge runs; nothing otherwise.
    pub fn rearm(&self) {
        if let Some(b) = self.bridge.get() {
            b.rearm();
        }
    }
}

/// Makes the eventfd readable and marks the bridge signaled (together).
fn signal(inner: &BridgeInner) {
    let mut signaled = inner.signaled.lock().unwrap_or_else(|e| e.into_inner());
    let one = 1u64;
    // SAFETY: writes 8 bytes from `one` to our eventfd.
    unsafe { libc::write(inner.efd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    *signaled = true;
}

fn bridge_loop(inner: &BridgeInner) {
    loop {
        if inner.stop.load(Ordering::SeqCst) {
            return;
        }
        let ctrl = inner.ctrl.load(Ordering::SeqCst);
        if *inner.signaled.lock().unwrap_or_else(|e| e.into_inner()) {
            // Wait for the consumer to rearm (or for stop).
            wait(&inner.ctrl, ctrl, None);
            continue;
        }
        let sources: Vec<Arc<dyn WakeSource>> = inner
            .sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        // Look before arming, so a wake-up does not leave flags set.
        if sources.iter().any(|s| s.ready()) {
            signal(inner);
            continue;
        }
        let mut words: Vec<(&AtomicU32, u32)> = vec![(&inner.ctrl, ctrl)];
        // Arm every channel before checking any, then sleep on all of them.
        let seqs: Vec<u32> = sources.iter().map(|s| s.channel().arm()).collect();
        if sources.iter().any(|s| s.ready()) {
            signal(inner);
            continue;
        }
        for (s, seq) in sources.iter().zip(&seqs).take(MAX_WAITV - 1) {
            words.push((s.channel().seq_word(), *seq));
        }
        // With more sources than futex_waitv takes, poll the rest.
        let timeout = (sources.len() >= MAX_WAITV).then_some(Duration::from_millis(10));
        wait_any(&words, timeout);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_times_out_and_sees_changes() {
        let w = AtomicU32::new(5);
        assert_eq!(wait(&w, 4, None), WaitResult::ValueChanged);
        assert_eq!(
            wait(&w, 5, Some(Duration::from_millis(5))),
            WaitResult::TimedOut
        );
        let a = AtomicU32::new(1);
        let b = AtomicU32::new(2);
        assert_eq!(
            wait_any(&[(&a, 1), (&b, 3)], Some(Duration::from_secs(1))),
            WaitResult::ValueChanged
        );
        assert_eq!(
            wait_any(&[(&a, 1), (&b, 2)], Some(Duration::from_millis(5))),
            WaitResult::TimedOut
        );
    }

    #[test]
    fn wake_reaches_a_waiter() {
        let w = Arc::new(AtomicU32::new(0));
        let w2 = w.clone();
        let t = std::thread::spawn(move || {
            while w2.load(Ordering::SeqCst) == 0 {
                wait(&w2, 0, Some(Duration::from_secs(5)));
            }
        });
        std::thread::sleep(Duration::from_millis(20));
        w.store(1, Ordering::SeqCst);
        wake(&w, 1);
        t.join().unwrap();
    }

    #[test]
    fn channel_wakes_only_waiters() {
        let ch = Arc::new(WakeChannel::new());
        let data = Arc::new(AtomicU32::new(0));
        assert!(!ch.notify());
        let (ch2, data2) = (ch.clone(), data.clone());
        let t = std::thread::spawn(move || {
            ch2.wait_until(
                || data2.load(Ordering::SeqCst) != 0,
                Some(Duration::from_secs(10)),
            )
        });
        while !ch.has_waiters() {
            std::thread::yield_now();
        }
        data.store(1, Ordering::SeqCst);
        ch.notify();
        assert!(t.join().unwrap());
    }
}
