//! `sigaction` and `signal` as the application sees them.
//!
//! The agent keeps handlers for SIGSEGV/SIGBUS (fault-recovering reads for
//! `bpf_probe_read_*`) and SIGTRAP (threads caught by a hook's transient
//! `int3`), each chaining to the application's action. These interposers
//! keep that invisible: the application reads back its own action, and
//! installing one replaces what we chain to instead of our handler.
//! Everything else goes to the C library untouched, except one thing:
//! SIGTRAP is never blocked. A trap site (a hook too short for a jump) is
//! an `int3`, and the kernel kills a thread that meets one with SIGTRAP
//! blocked; so `pthread_sigmask`, `sigprocmask` and the masks of
//! `sigaction` leave SIGTRAP out (an application that blocks it sees it
//! unblocked).
//!
//! Syscall User Dispatch (`crate::syscall::sud`) adds two things: SIGSYS
//! is chained the same way (the application's action runs for seccomp
//! traps and signals sent by processes) and, once SUD is armed, never
//! blocked either (a blocked SIGSYS makes the kernel kill a thread at its
//! next trapped syscall); and `pthread_create` wraps the start routine so
//! that new threads turn SUD on (or, created by the agent, are marked as
//! agent threads that never do).

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicPtr, Ordering};

use userbpf_runtime::helpers::safe_mem::{self, SigactionFn};

static REAL: AtomicPtr<()> = AtomicPtr::new(std::ptr::null_mut());

/// The C library's `sigaction` (the next definition after ours).
pub fn real_sigaction() -> Option<SigactionFn> {
    let mut p = REAL.load(Ordering::Acquire);
    if p.is_null() {
        // SAFETY: dlsym with a constant, NUL-terminated name.
        p = unsafe { libc::dlsym(libc::RTLD_NEXT, c"sigaction".as_ptr()) }.cast();
        if p.is_null() {
            return None;
        }
        REAL.store(p, Ordering::Release);
    }
    // SAFETY: the C library's sigaction has this signature.
    Some(unsafe { std::mem::transmute::<*mut (), SigactionFn>(p) })
}

/// Routes the agent's own `sigaction` calls around the interposer.
pub fn init() {
    if let Some(f) = real_sigaction() {
        safe_mem::set_raw_sigaction(f);
    }
}

/// `int sigaction(int, const struct sigaction *, struct sigaction *)`,
/// exported as `sigaction` ([`crate::export_c_name`]).
///
/// # Safety
/// As `sigaction(2)`.
pub unsafe extern "C" fn sigaction(
    sig: c_int,
    act: *const libc::sigaction,
    oldact: *mut libc::sigaction,
) -> c_int {
    // Our own calls must bypass us from here on (also when the agent is
    // linked into a program rather than preloaded).
    if REAL.load(Ordering::Acquire).is_null() {
        init();
    }
    // SIGTRAP stays deliverable inside the application's handlers.
    let mut copy: libc::sigaction;
    let act = if act.is_null() {
        act
    } else {
        // SAFETY: `act` is valid for reads (caller).
        copy = unsafe { *act };
        // SAFETY: a valid set in a local.
        unsafe { libc::sigdelset(&mut copy.sa_mask, libc::SIGTRAP) };
        if crate::syscall::gate::armed() {
            // SAFETY: as above.
            unsafe { libc::sigdelset(&mut copy.sa_mask, libc::SIGSYS) };
        }
        &copy as *const libc::sigaction
    };
    match sig {
        // SAFETY: forwarded from the caller.
        libc::SIGSEGV | libc::SIGBUS => unsafe { safe_mem::app_sigaction(sig, act, oldact) },
        // SAFETY: forwarded from the caller.
        libc::SIGTRAP => unsafe { crate::hook::app_sigaction_trap(act, oldact) },
        // SAFETY: forwarded from the caller.
        libc::SIGSYS => unsafe { crate::syscall::sud::app_sigaction_sys(act, oldact) },
        // SAFETY: forwarded from the caller.
        _ => unsafe { safe_mem::raw_sigaction(sig, act, oldact) },
    }
}

/// `sighandler_t signal(int, sighandler_t)` with glibc's (BSD) semantics:
/// the signal is blocked in its handler and system calls restart.
///
/// Exported as `signal`.
///
/// # Safety
/// As `signal(2)`.
pub unsafe extern "C" fn signal(sig: c_int, handler: libc::sighandler_t) -> libc::sighandler_t {
    // SAFETY: all-zero is a valid sigaction.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = handler;
    act.sa_flags = libc::SA_RESTART;
    // SAFETY: initialises local sets.
    unsafe {
        libc::sigemptyset(&mut act.sa_mask);
        if sig > 0 && sig < 65 {
            libc::sigaddset(&mut act.sa_mask, sig);
        }
    }
    // SAFETY: all-zero is a valid sigaction.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers to locals.
    if unsafe { sigaction(sig, &act, &mut old) } != 0 {
        return libc::SIG_ERR;
    }
    old.sa_sigaction
}

type MaskFn = unsafe extern "C" fn(c_int, *const libc::sigset_t, *mut libc::sigset_t) -> c_int;

/// The C library's `name` (the next definition after ours).
fn next_mask_fn(slot: &AtomicPtr<()>, name: &std::ffi::CStr) -> Option<MaskFn> {
    let mut p = slot.load(Ordering::Acquire);
    if p.is_null() {
        // SAFETY: dlsym with a NUL-terminated name.
        p = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) }.cast();
        if p.is_null() {
            return None;
        }
        slot.store(p, Ordering::Release);
    }
    // SAFETY: both functions have this signature.
    Some(unsafe { std::mem::transmute::<*mut (), MaskFn>(p) })
}

/// `set` without SIGTRAP when it blocks or sets the mask.
///
/// # Safety
/// `set` null or valid for reads.
unsafe fn without_trap(how: c_int, set: *const libc::sigset_t) -> Option<libc::sigset_t> {
    if set.is_null() || how == libc::SIG_UNBLOCK {
        return None;
    }
    // SAFETY: valid for reads (caller).
    let mut copy = unsafe { *set };
    // SAFETY: a valid set in a local.
    unsafe { libc::sigdelset(&mut copy, libc::SIGTRAP) };
    if crate::syscall::gate::armed() {
        // SAFETY: as above.
        unsafe { libc::sigdelset(&mut copy, libc::SIGSYS) };
    }
    Some(copy)
}

static REAL_PTHREAD_SIGMASK: AtomicPtr<()> = AtomicPtr::new(std::ptr::null_mut());
static REAL_SIGPROCMASK: AtomicPtr<()> = AtomicPtr::new(std::ptr::null_mut());

/// `int pthread_sigmask(int, const sigset_t *, sigset_t *)`, SIGTRAP never
/// blocked; exported as `pthread_sigmask`.
///
/// # Safety
/// As `pthread_sigmask(3)`.
pub unsafe extern "C" fn pthread_sigmask(
    how: c_int,
    set: *const libc::sigset_t,
    old: *mut libc::sigset_t,
) -> c_int {
    let Some(real) = next_mask_fn(&REAL_PTHREAD_SIGMASK, c"pthread_sigmask") else {
        return libc::ENOSYS;
    };
    // SAFETY: forwarded from the caller.
    let copy = unsafe { without_trap(how, set) };
    let set = copy.as_ref().map_or(set, |c| c as *const libc::sigset_t);
    // SAFETY: forwarded, with our copy of the set.
    unsafe { real(how, set, old) }
}

/// `int sigprocmask(int, const sigset_t *, sigset_t *)`, as
/// [`pthread_sigmask`]; exported as `sigprocmask`.
///
/// # Safety
/// As `sigprocmask(2)`.
pub unsafe extern "C" fn sigprocmask(
    how: c_int,
    set: *const libc::sigset_t,
    old: *mut libc::sigset_t,
) -> c_int {
    let Some(real) = next_mask_fn(&REAL_SIGPROCMASK, c"sigprocmask") else {
        // SAFETY: errno is thread-local.
        unsafe { *libc::__errno_location() = libc::ENOSYS };
        return -1;
    };
    // SAFETY: forwarded from the caller.
    let copy = unsafe { without_trap(how, set) };
    let set = copy.as_ref().map_or(set, |c| c as *const libc::sigset_t);
    // SAFETY: forwarded, with our copy of the set.
    unsafe { real(how, set, old) }
}

type StartFn = extern "C" fn(*mut c_void) -> *mut c_void;
type CreateFn = unsafe extern "C" fn(
    *mut libc::pthread_t,
    *const libc::pthread_attr_t,
    StartFn,
    *mut c_void,
) -> c_int;

static REAL_PTHREAD_CREATE: AtomicPtr<()> = AtomicPtr::new(std::ptr::null_mut());

/// A new thread's real start routine, and who created it.
struct Start {
    start: StartFn,
    arg: *mut c_void,
    agent: bool,
}

extern "C" fn wrapped_start(p: *mut c_void) -> *mut c_void {
    // SAFETY: `p` is the Box made by pthread_create below, ours alone.
    let s = unsafe { Box::from_raw(p.cast::<Start>()) };
    if s.agent {
        crate::syscall::sud::mark_agent_thread();
    } else if crate::syscall::sud::is_active() {
        // Best effort: the thread runs either way.
        let _ = crate::syscall::sud::enable_current_thread();
    }
    (s.start)(s.arg)
}

/// `int pthread_create(pthread_t *, const pthread_attr_t *, void *(*)(void *),
/// void *)`, exported as `pthread_create`: the new thread starts under
/// Syscall User Dispatch when it is active, and a thread the agent
/// creates (its creator's hook `busy` word set) is marked as the agent's.
///
/// # Safety
/// As `pthread_create(3)`.
pub unsafe extern "C" fn pthread_create(
    thread: *mut libc::pthread_t,
    attr: *const libc::pthread_attr_t,
    start: StartFn,
    arg: *mut c_void,
) -> c_int {
    let mut p = REAL_PTHREAD_CREATE.load(Ordering::Acquire);
    if p.is_null() {
        // SAFETY: dlsym with a constant, NUL-terminated name.
        p = unsafe { libc::dlsym(libc::RTLD_NEXT, c"pthread_create".as_ptr()) }.cast();
        if p.is_null() {
            return libc::EAGAIN;
        }
        REAL_PTHREAD_CREATE.store(p, Ordering::Release);
    }
    // SAFETY: the C library's pthread_create has this signature.
    let real = unsafe { std::mem::transmute::<*mut (), CreateFn>(p) };
    // SAFETY: the calling thread's own state block.
    let agent = unsafe { (*crate::hook::thread::current()).busy } != 0
        || crate::syscall::sud::is_agent_thread();
    if !agent && !crate::syscall::gate::armed() {
        // SAFETY: forwarded from the caller.
        return unsafe { real(thread, attr, start, arg) };
    }
    let s = Box::into_raw(Box::new(Start { start, arg, agent }));
    // SAFETY: forwarded, with our start routine and its Box.
    let r = unsafe { real(thread, attr, wrapped_start, s.cast()) };
    if r != 0 {
        // SAFETY: the thread was not created: the Box is still ours.
        drop(unsafe { Box::from_raw(s) });
    }
    r
}

crate::export_c_name!(pthread_create);
crate::export_c_name!(pthread_sigmask);
crate::export_c_name!(sigprocmask);
crate::export_c_name!(sigaction);
crate::export_c_name!(signal);
