//! `sigaction` and `signal` as the application sees them.
//!
//! The agent keeps handlers for SIGSEGV/SIGBUS (fault-recovering reads for
//! `bpf_probe_read_*`) and SIGTRAP (threads caught by a hook's transient
//! `int3`), each chaining to the application's action. These interposers
//! keep that invisible: the application reads back its own action, and
//! installing one replaces what we chain to instead of our handler.
//! Everything else goes to the C library untouched.

use std::ffi::c_int;
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
    match sig {
        // SAFETY: forwarded from the caller.
        libc::SIGSEGV | libc::SIGBUS => unsafe { safe_mem::app_sigaction(sig, act, oldact) },
        // SAFETY: forwarded from the caller.
        libc::SIGTRAP => unsafe { crate::hook::app_sigaction_trap(act, oldact) },
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

crate::export_c_name!(sigaction);
crate::export_c_name!(signal);
