//! Signals to the current task: `bpf_send_signal` (109, to the process)
//! and `bpf_send_signal_thread` (117, to the calling thread).
//!
//! The kernel queues the signal and delivers it when the probed task
//! returns to user space, after the program. Here the signal is sent with
//! `kill`/`tgkill` while the program runs: a handled, unblocked signal sent
//! to the calling thread runs its handler before the helper returns, that
//! is, in the middle of the program (the handler sees the probed function's
//! thread state, as it would a moment later with the kernel). Blocked
//! signals stay pending as usual.

use super::task::current_ids;
use super::{errno, neg, HelperEnv};

/// `_NSIG - 1`: the highest valid signal number.
const MAX_SIGNAL: u64 = 64;

/// 0, or `-errno` from the failed syscall.
fn result(rc: libc::c_int) -> u64 {
    if rc == 0 {
        return 0;
    }
    let e = std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(errno::EINVAL as i32);
    neg(i64::from(e))
}

/// `long bpf_send_signal(u32 sig)`: sends `sig` to the current process.
/// 0, -EINVAL for an invalid signal, or the error of `kill`.
///
/// # Safety
/// None beyond the helper ABI.
pub unsafe extern "C" fn bpf_send_signal(
    sig: u64,
    _: u64,
    _: u64,
    _: u64,
    _: u64,
    _: *mut HelperEnv,
) -> u64 {
    let sig = sig as u32 as u64;
    if sig > MAX_SIGNAL {
        return neg(errno::EINVAL);
    }
    let (pid, _) = current_ids();
    // SAFETY: kill has no memory-safety preconditions.
    result(unsafe { libc::kill(pid as libc::pid_t, sig as libc::c_int) })
}

/// `long bpf_send_signal_thread(u32 sig)`: sends `sig` to the current
/// thread. 0, -EINVAL for an invalid signal, or the error of `tgkill`.
///
/// # Safety
/// None beyond the helper ABI.
pub unsafe extern "C" fn bpf_send_signal_thread(
    sig: u64,
    _: u64,
    _: u64,
    _: u64,
    _: u64,
    _: *mut HelperEnv,
) -> u64 {
    let sig = sig as u32 as u64;
    if sig > MAX_SIGNAL {
        return neg(errno::EINVAL);
    }
    let (pid, tid) = current_ids();
    // SAFETY: tgkill has no memory-safety preconditions.
    result(unsafe { libc::tgkill(pid as libc::pid_t, tid as libc::pid_t, sig as libc::c_int) })
}
