//! Grace periods: when do no threads still use data a hook handler read?
//!
//! A handler runs with its thread's `busy` word set (the hook stubs set it
//! before they read the site's binding, and clear it after the handler).
//! The agent replaces the link set of a site with one atomic store and
//! frees the old set only after a grace period: every thread that might
//! have loaded the old pointer has left its handler.
//!
//! Threads register in a fixed table on their first handler run (no
//! allocation: handlers may run inside `malloc` or a signal handler). The
//! readers' ordering is paid by the writer: `membarrier` makes every
//! running thread execute a full barrier, so after it a thread either has
//! its `busy` store visible to us, or will load the new pointer. A thread
//! leaves the table when it exits (a pthread key destructor).

use core::sync::atomic::{fence, AtomicPtr, AtomicU32, AtomicUsize, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

use crate::hook::thread::{self, ThreadState};

/// Threads that can run handlers at the same time; a thread beyond this
/// runs no programs (counted in [`unregistered_skips`]).
pub const MAX_THREADS: usize = 4096;

struct Slot {
    state: AtomicPtr<ThreadState>,
    tid: AtomicU32,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Slot = Slot {
    state: AtomicPtr::new(core::ptr::null_mut()),
    tid: AtomicU32::new(0),
};
static SLOTS: [Slot; MAX_THREADS] = [EMPTY; MAX_THREADS];
/// One past the highest slot ever used: scans stop there.
static HIGH: AtomicUsize = AtomicUsize::new(0);
static UNREGISTERED: AtomicUsize = AtomicUsize::new(0);

/// `ThreadState::slot` of a thread that found the table full.
const NO_SLOT: u64 = u64::MAX;

static KEY: AtomicU32 = AtomicU32::new(u32::MAX);
static SETUP: Once = Once::new();

/// Prepares registration and the writer's barrier; control path, before
/// the first hook is installed.
pub fn init() {
    init_without_membarrier();
    register_membarrier();
}

/// [`init`] without the membarrier registration, which waits for an RCU
/// grace period (10 ms or more) in a process with more than one thread:
/// an agent loaded into a running process calls [`register_membarrier`]
/// from its own thread. Until then [`synchronize`] takes its fallback.
pub fn init_without_membarrier() {
    SETUP.call_once(|| {
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: creates a key with a destructor that only touches the
        // table; no preconditions.
        if unsafe { libc::pthread_key_create(&mut key, Some(on_thread_exit)) } == 0 {
            KEY.store(key, Ordering::Release);
        }
    });
}

/// Registration is what PRIVATE_EXPEDITED requires before use (once).
pub fn register_membarrier() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // SAFETY: plain syscall.
        unsafe {
            libc::syscall(
                libc::SYS_membarrier,
                MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED,
                0,
                0,
            )
        };
    });
}

const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_int = 1 << 3;
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_int = 1 << 4;

/// Makes sure the calling thread is in the table; called by handlers with
/// `busy` set. False when the table is full: the caller must not touch
/// data that is subject to grace periods.
#[inline(always)]
pub fn enter() -> bool {
    let ts = thread::current();
    // SAFETY: the calling thread's own state block.
    match unsafe { (*ts).slot } {
        0 => register(ts),
        NO_SLOT => {
            UNREGISTERED.fetch_add(1, Ordering::Relaxed);
            false
        }
        _ => true,
    }
}

#[cold]
fn register(ts: *mut ThreadState) -> bool {
    for (i, slot) in SLOTS.iter().enumerate() {
        if slot
            .state
            .compare_exchange(
                core::ptr::null_mut(),
                ts,
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok()
        {
            // SAFETY: gettid has no preconditions.
            slot.tid
                .store(unsafe { libc::gettid() } as u32, Ordering::Relaxed);
            HIGH.fetch_max(i + 1, Ordering::AcqRel);
            // SAFETY: the calling thread's own state block.
            unsafe { (*ts).slot = i as u64 + 1 };
            let key = KEY.load(Ordering::Acquire);
            if key != u32::MAX {
                // SAFETY: a valid key; keys below PTHREAD_KEY_2NDLEVEL_SIZE
                // live in the thread descriptor (no allocation).
                unsafe { libc::pthread_setspecific(key, (i + 1) as *const libc::c_void) };
            }
            // Our slot is visible before we load any site pointer (the
            // writer's membarrier pairs with the store of `busy`, this
            // fence with the first registration).
            fence(Ordering::SeqCst);
            return true;
        }
    }
    // SAFETY: the calling thread's own state block.
    unsafe { (*ts).slot = NO_SLOT };
    UNREGISTERED.fetch_add(1, Ordering::Relaxed);
    false
}

extern "C" fn on_thread_exit(value: *mut libc::c_void) {
    let i = value as usize;
    if let Some(slot) = i.checked_sub(1).and_then(|i| SLOTS.get(i)) {
        slot.tid.store(0, Ordering::Relaxed);
        slot.state.store(core::ptr::null_mut(), Ordering::Release);
        let ts = thread::current();
        // SAFETY: the exiting thread's own state block, still mapped while
        // its destructors run.
        unsafe { (*ts).slot = 0 };
    }
}

/// Handler runs skipped because the thread table was full.
pub fn unregistered_skips() -> usize {
    UNREGISTERED.load(Ordering::Relaxed)
}

/// Reads another thread's `busy` word; `None` when its memory is gone (the
/// thread exited without running its key destructor).
fn busy_of(ts: *mut ThreadState) -> Option<u64> {
    let mut v = 0u64;
    // SAFETY: a fault-recovering copy of 8 bytes into a local.
    let ok = unsafe {
        userbpf_runtime::helpers::safe_mem::safe_read(
            (&mut v as *mut u64).cast(),
            ts.cast::<u8>().cast_const(),
            8,
        )
    };
    ok.ok().map(|_| v)
}

/// Waits until every thread that might have read a pointer replaced before
/// this call has left its handler. False when some thread stayed inside a
/// handler for longer than `limit` (the caller must then leak the old data).
pub fn synchronize(limit: Duration) -> bool {
    // SAFETY: plain syscall. Without membarrier, a SeqCst fence here plus
    // the registration fence still orders registered threads' first loads;
    // `busy` stores of later runs are then only ordered by time (the
    // sleeps below), which is why it is registered in `init`.
    let ok = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) };
    if ok != 0 {
        fence(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(1));
    }
    let me = thread::current();
    let start = Instant::now();
    let high = HIGH.load(Ordering::Acquire);
    for slot in &SLOTS[..high] {
        let ts = slot.state.load(Ordering::Acquire);
        if ts.is_null() || ts == me {
            continue;
        }
        let mut spins = 0u32;
        loop {
            match busy_of(ts) {
                None | Some(0) => break,
                Some(_) => {}
            }
            if slot.state.load(Ordering::Acquire) != ts {
                break;
            }
            if start.elapsed() > limit {
                return false;
            }
            spins += 1;
            if spins < 64 {
                core::hint::spin_loop();
            } else {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    }
    true
}
