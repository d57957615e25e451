//! `ShmLock`: a spin lock that works across processes and survives the
//! death of its holder.
//!
//! The lock word holds 0 when free, else the holder's thread id. Critical
//! sections guarded by it are a few stores, never fault and never block, so
//! waiters spin, then yield. A waiter that has yielded for a while checks
//! whether the holder still exists; if it died (a loader killed with
//! SIGKILL mid-update), the waiter takes the lock over. Structures under the
//! lock are written so that every single store leaves them consistent (the
//! element is filled first, published last), which makes a takeover safe.
//!
//! Atomics: acquire on lock, release on unlock; the data under the lock
//! needs no other ordering.

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// The lock word, placed in shared memory (`#[repr(C)]`, 4 bytes, zero =
/// unlocked, so a zero-filled memfd starts unlocked).
#[repr(C)]
#[derive(Debug, Default)]
pub struct ShmLock {
    owner: AtomicU32,
}

/// Bumped in every child after fork: thread ids cached before it are stale.
static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);

extern "C" fn after_fork_in_child() {
    FORK_GENERATION.fetch_add(1, Ordering::Relaxed);
}

thread_local! {
    static CACHED_TID: Cell<(u64, u32)> = const { Cell::new((u64::MAX, 0)) };
}

/// The calling thread's id, cached (the cache is dropped after fork).
pub fn current_tid() -> u32 {
    static REGISTER: std::sync::Once = std::sync::Once::new();
    REGISTER.call_once(|| {
        // SAFETY: registers a handler that only bumps an atomic.
        unsafe {
            libc::pthread_atfork(None, None, Some(after_fork_in_child));
        }
    });
    let generation = FORK_GENERATION.load(Ordering::Relaxed);
    CACHED_TID.with(|c| {
        let (g, tid) = c.get();
        if g == generation {
            return tid;
        }
        // SAFETY: gettid cannot fail.
        let tid = unsafe { libc::gettid() } as u32;
        c.set((generation, tid));
        tid
    })
}

fn thread_exists(tid: u32) -> bool {
    // SAFETY: signal 0 only checks for existence and permission.
    let r = unsafe { libc::kill(tid as libc::pid_t, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Yields before a waiter checks whether the holder is alive.
const YIELDS_BEFORE_LIVENESS_CHECK: u32 = 64;

impl ShmLock {
    pub const fn new() -> ShmLock {
        ShmLock {
            owner: AtomicU32::new(0),
        }
    }

    /// Takes the lock; the guard releases it.
    #[inline]
    pub fn lock(&self) -> ShmLockGuard<'_> {
        let me = current_tid();
        if self
            .owner
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_slow(me);
        }
        ShmLockGuard { lock: self }
    }

    #[cold]
    fn lock_slow(&self, me: u32) {
        let mut spins = 0u32;
        let mut yields = 0u32;
        loop {
            let owner = self.owner.load(Ordering::Relaxed);
            if owner == 0 {
                if self
                    .owner
                    .compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return;
                }
                continue;
            }
            if owner == me {
                // Our own thread id: a previous holder of this id died (ids
                // are reused) or we were forked while it was held.
                if self
                    .owner
                    .compare_exchange(owner, me, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return;
                }
                continue;
            }
            if spins < 100 {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            // SAFETY: sched_yield has no preconditions.
            unsafe { libc::sched_yield() };
            yields += 1;
            if yields.is_multiple_of(YIELDS_BEFORE_LIVENESS_CHECK)
                && !thread_exists(owner)
                && self
                    .owner
                    .compare_exchange(owner, me, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return;
            }
        }
    }

    /// True while some thread holds the lock.
    pub fn is_locked(&self) -> bool {
        self.owner.load(Ordering::Relaxed) != 0
    }
}

/// Releases the lock when dropped.
pub struct ShmLockGuard<'a> {
    lock: &'a ShmLock,
}

impl Drop for ShmLockGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        self.lock.owner.store(0, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn excludes_threads() {
        struct Shared {
            lock: ShmLock,
            value: std::cell::UnsafeCell<u64>,
        }
        // SAFETY: `value` is only touched under `lock`.
        unsafe impl Sync for Shared {}
        let s = Arc::new(Shared {
            lock: ShmLock::new(),
            value: 0.into(),
        });
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for _ in 0..100_000 {
                        let _g = s.lock.lock();
                        // SAFETY: under the lock.
                        unsafe { *s.value.get() += 1 };
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // SAFETY: all writers joined.
        assert_eq!(unsafe { *s.value.get() }, 400_000);
    }

    #[test]
    fn dead_holder_is_taken_over() {
        let lock = Arc::new(ShmLock::new());
        // A thread id that surely does not exist (above pid_max).
        lock.owner.store(0x3fff_fff0, Ordering::Relaxed);
        let _g = lock.lock();
        assert!(lock.is_locked());
    }
}
