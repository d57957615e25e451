//! The current thread as the kernel's `current` task:
//! `bpf_get_current_pid_tgid` (14), `bpf_get_current_uid_gid` (15),
//! `bpf_get_current_comm` (16), `bpf_get_smp_processor_id` (8),
//! `bpf_get_current_task` (35) and `bpf_get_numa_node_id` (42).
//!
//! # Caches
//! - pid and tid are cached per thread (a thread-local read, no syscall).
//!   A `pthread_atfork` child handler bumps a process-wide fork generation,
//!   so the child's first call after `fork()` refreshes them. A child made
//!   with a raw `clone`/`vfork` syscall that runs programs without going
//!   through glibc's `fork` is not seen (it would report its parent's ids),
//!   unless a syscall interceptor tells: [`note_fork_child`] in the child
//!   of a copy of the address space, [`note_vfork`] in the parent before a
//!   child that shares it (`vfork`, `posix_spawn`): such a child runs on
//!   its parent's thread-local storage, so until the parent is back, every
//!   call checks the tid with `gettid` and a child's ids are not cached.
//! - comm, the thread's name (`/proc/self/task/TID/comm`, what
//!   `prctl(PR_SET_NAME)` and `pthread_setname_np` set), is cached per
//!   thread and re-read with `prctl(PR_GET_NAME)` when
//!   (a) the fork generation or the comm generation changed: the agent's
//!   `prctl`/`pthread_setname_np` interposers call [`invalidate_comm`], or
//!   (b) the cached value is older than [`COMM_TTL_NS`] (checked with
//!   CLOCK_MONOTONIC_COARSE, from the vDSO). A rename that no interposer
//!   sees (another thread writing the comm file) is thus visible within
//!   100 ms.
//! - uid and gid are not cached: `setuid` and friends change them for all
//!   threads at once (glibc's setxid broadcast), and a security tool must
//!   not see stale credentials. Each call costs two syscalls.
//!
//! In a user namespace, uid/gid and pid/tid are the namespace's ids, where
//! the kernel's helpers report the initial namespace's.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

use super::time::clock_ns;
use super::{env_ref, errno, neg, HelperEnv};
use crate::cpu;
use crate::memory::Access;

/// Bumped in the child after every glibc `fork`.
static FORK_GENERATION: AtomicU64 = AtomicU64::new(1);
/// Bumped by [`invalidate_comm`] (and by fork).
static COMM_GENERATION: AtomicU64 = AtomicU64::new(1);
static ATFORK: Once = Once::new();

/// Longest time a cached comm is trusted.
pub const COMM_TTL_NS: u64 = 100_000_000;
/// The kernel's `TASK_COMM_LEN`.
pub const TASK_COMM_LEN: usize = 16;

extern "C" fn after_fork_in_child() {
    FORK_GENERATION.fetch_add(1, Ordering::Relaxed);
    COMM_GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// For an embedder that sees a fork before glibc's handlers run (a
/// syscall interceptor in the child): the cached ids are the parent's.
pub fn note_fork_child() {
    after_fork_in_child();
}

fn register_atfork() {
    ATFORK.call_once(|| {
        // SAFETY: registers a handler that only bumps two atomics (async-
        // signal-safe, allocation-free).
        unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
    });
}

/// The fork generation, after making sure forks are counted.
#[inline]
pub(crate) fn fork_generation() -> u64 {
    if !ATFORK.is_completed() {
        register_atfork();
    }
    FORK_GENERATION.load(Ordering::Relaxed)
}

/// Tells every thread to re-read its comm on the next
/// `bpf_get_current_comm` (call after renaming a thread).
pub fn invalidate_comm() {
    COMM_GENERATION.fetch_add(1, Ordering::Relaxed);
}

#[derive(Clone, Copy)]
struct Ids {
    generation: u64,
    pid: u32,
    tid: u32,
    /// A child sharing this memory (and this thread-local block) may run:
    /// the cached ids are right only for the thread whose tid they hold.
    /// `Some(vfork)`: cleared when that thread sees them again if the
    /// child was a vfork one (the parent waits until it exec'd or exited).
    shared_with_child: Option<bool>,
}

#[derive(Clone, Copy)]
struct Comm {
    generation: u64,
    read_at_ns: u64,
    name: [u8; TASK_COMM_LEN],
}

thread_local! {
    static IDS: Cell<Ids> = const {
        Cell::new(Ids { generation: 0, pid: 0, tid: 0, shared_with_child: None })
    };
    static COMM: Cell<Comm> = const {
        Cell::new(Comm { generation: 0, read_at_ns: 0, name: [0; TASK_COMM_LEN] })
    };
}

/// (pid, tid) of the calling thread: the kernel's (tgid, pid).
#[inline]
pub fn current_ids() -> (u32, u32) {
    let generation = fork_generation();
    let ids = IDS.with(Cell::get);
    if ids.generation == generation && ids.shared_with_child.is_none() {
        return (ids.pid, ids.tid);
    }
    if ids.shared_with_child.is_some() {
        return shared_ids(ids);
    }
    refresh_ids(generation)
}

/// Before a `clone` that shares this address space without being a thread
/// (`CLONE_VM` without `CLONE_THREAD`: `vfork`, glibc's `posix_spawn`),
/// in the parent; `vfork`: the parent is suspended until the child execs
/// or exits (`CLONE_VFORK`).
pub fn note_vfork(vfork: bool) {
    let (pid, tid) = current_ids();
    IDS.with(|c| {
        c.set(Ids {
            generation: fork_generation(),
            pid,
            tid,
            shared_with_child: Some(vfork),
        })
    });
}

/// [`current_ids`] while a child may run on this thread-local block.
#[cold]
fn shared_ids(ids: Ids) -> (u32, u32) {
    // SAFETY: gettid cannot fail.
    let tid = unsafe { libc::gettid() } as u32;
    if tid == ids.tid {
        if ids.shared_with_child == Some(true) {
            // The vfork parent, running again: its child is gone.
            IDS.with(|c| {
                c.set(Ids {
                    shared_with_child: None,
                    ..ids
                })
            });
        }
        return (ids.pid, ids.tid);
    }
    // The child: its memory is the parent's, nothing is cached.
    // SAFETY: getpid cannot fail.
    (unsafe { libc::getpid() } as u32, tid)
}

#[cold]
fn refresh_ids(generation: u64) -> (u32, u32) {
    // SAFETY: getpid and gettid cannot fail.
    let (pid, tid) = unsafe { (libc::getpid() as u32, libc::gettid() as u32) };
    IDS.with(|c| {
        c.set(Ids {
            generation,
            pid,
            tid,
            shared_with_child: None,
        })
    });
    (pid, tid)
}

/// The calling thread's name (`comm`), NUL-padded; see the module
/// documentation for when it is re-read.
pub fn current_comm() -> [u8; TASK_COMM_LEN] {
    let generation = COMM_GENERATION.load(Ordering::Relaxed) ^ (fork_generation() << 32);
    let now = clock_ns(libc::CLOCK_MONOTONIC_COARSE);
    let cached = COMM.with(Cell::get);
    if cached.generation == generation && now.wrapping_sub(cached.read_at_ns) < COMM_TTL_NS {
        return cached.name;
    }
    let mut name = [0u8; TASK_COMM_LEN];
    // SAFETY: PR_GET_NAME writes at most 16 bytes (NUL-terminated) into the
    // buffer, which has 16.
    unsafe {
        libc::prctl(
            libc::PR_GET_NAME,
            name.as_mut_ptr() as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    // Never trust more than 15 characters.
    name[TASK_COMM_LEN - 1] = 0;
    COMM.with(|c| {
        c.set(Comm {
            generation,
            read_at_ns: now,
            name,
        })
    });
    name
}

/// `u64 bpf_get_current_pid_tgid(void)`: `tgid << 32 | pid` (process id,
/// thread id).
///
/// # Safety
/// None beyond the helper ABI.
pub unsafe extern "C" fn bpf_get_current_pid_tgid(
    _: u64,
    _: u64,
    _: u64,
    _: u64,
    _: u64,
    _: *mut HelperEnv,
) -> u64 {
    let (pid, tid) = current_ids();
    (u64::from(pid) << 32) | u64::from(tid)
}

/// `u64 bpf_get_current_uid_gid(void)`: `gid << 32 | uid` (real ids).
///
/// # Safety
/// None beyond the helper ABI.
pub unsafe extern "C" fn bpf_get_current_uid_gid(
    _: u64,
    _: u64,
    _: u64,
    _: u64,
    _: u64,
    _: *mut HelperEnv,
) -> u64 {
    // SAFETY: getuid and getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    (u64::from(gid) << 32) | u64::from(uid)
}

/// `long bpf_get_current_comm(void *buf, u32 size_of_buf)`: the thread's
/// name, truncated to `size - 1` bytes, NUL-terminated and NUL-padded to
/// `size` (the kernel's `strscpy_pad`). 0, or -EFAULT when the program may
/// not write `buf`.
///
/// # Safety
/// Called by an engine with its env.
pub unsafe extern "C" fn bpf_get_current_comm(
    buf: u64,
    size: u64,
    _: u64,
    _: u64,
    _: u64,
    env: *mut HelperEnv,
) -> u64 {
    let size = size as u32 as usize;
    if size == 0 {
        return 0;
    }
    // SAFETY: engine contract.
    let writable = unsafe { env_ref(env) }.is_none_or(|e| e.check(buf, size as u64, Access::Write));
    if !writable {
        return neg(errno::EFAULT);
    }
    let comm = current_comm();
    let len = comm.iter().position(|&b| b == 0).unwrap_or(TASK_COMM_LEN);
    let copy = len.min(size - 1);
    let dst = buf as *mut u8;
    // SAFETY: the program may write `size` bytes at `buf` (checked, or
    // trusted under the JIT); the safe routines recover from faults.
    let ok = unsafe {
        super::safe_mem::safe_write(dst, comm.as_ptr(), copy).is_ok()
            && super::safe_mem::safe_zero(dst.wrapping_add(copy), size - copy).is_ok()
    };
    if ok {
        0
    } else {
        neg(errno::EFAULT)
    }
}

/// `u32 bpf_get_smp_processor_id(void)`: the CPU the thread runs on (from
/// rseq, see [`crate::cpu`]).
///
/// # Safety
/// None beyond the helper ABI.
pub unsafe extern "C" fn bpf_get_smp_processor_id(
    _: u64,
    _: u64,
    _: u64,
    _: u64,
    _: u64,
    _: *mut HelperEnv,
) -> u64 {
    u64::from(cpu::current_cpu())
}

/// `u64 bpf_get_current_task(void)`: there is no `task_struct` in user
/// space: 0.
///
/// # Safety
/// None beyond the helper ABI.
pub unsafe extern "C" fn bpf_get_current_task(
    _: u64,
    _: u64,
    _: u64,
    _: u64,
    _: u64,
    _: *mut HelperEnv,
) -> u64 {
    0
}

/// `long bpf_get_numa_node_id(void)`: 0 (NUMA placement is not tracked).
///
/// # Safety
/// None beyond the helper ABI.
pub unsafe extern "C" fn bpf_get_numa_node_id(
    _: u64,
    _: u64,
    _: u64,
    _: u64,
    _: u64,
    _: *mut HelperEnv,
) -> u64 {
    0
}
