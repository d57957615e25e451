//! Callbacks: helpers that call back into the program (`bpf_loop`, and
//! `bpf_for_each_map_elem` with the maps), and `bpf_loop` (181) itself.
//!
//! A program names a callback with `lddw rX, <subprogram>` whose source is
//! `BPF_PSEUDO_FUNC` and whose immediate is the offset of the subprogram
//! from the next instruction (what libbpf emits). Each engine turns that
//! instruction into an opaque *token* (the interpreter and the JIT use
//! different ones) and passes the program's r-value to the helper, which
//! calls [`HelperEnv::call_callback`] with it:
//!
//! ```ignore
//! match env.call_callback(token, [a, b, c, d, e]) {
//!     Ok(r0) => { /* the callback returned r0 */ }
//!     Err(CallbackError::Aborted) => return 0, // the run is over: return at once
//!     Err(_) => return (-EINVAL) as u64,       // not a callback of this run
//! }
//! ```
//!
//! The callback runs as a bpf-to-bpf call made by the caller of the helper:
//! a fresh 512-byte frame below the caller's (so a callback context on the
//! caller's stack is reachable, as `bpf_loop` users expect), r1..r5 as
//! given, r6..r9 of the caller untouched, and the same call-depth limit
//! ([`crate::isa::MAX_CALL_FRAMES`] frames in all). Only tokens of programs
//! taking part in the run (the program and its tail-call targets) are
//! accepted; anything else is [`CallbackError::BadCallback`], never a jump
//! to an arbitrary address.
//!
//! When the callback fails (a memory violation in the interpreter, the
//! call depth, the instruction budget), the error is recorded, the helper
//! gets [`CallbackError::Aborted`] and must return at once; the engine then
//! ends the run with that error.

use std::ffi::c_void;

use thiserror::Error;

use super::{env_ref, errno, neg, HelperEnv};

/// Why a callback call did not return a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum CallbackError {
    /// The environment belongs to no run that supports callbacks (a helper
    /// called outside an engine).
    #[error("no engine to run callbacks in this environment")]
    NoEngine,
    /// The value is not a callback of a program of this run.
    #[error("{token:#x} is not a callback of this run")]
    BadCallback { token: u64 },
    /// The callback stopped the run with an error; the helper must return
    /// at once (its return value is ignored).
    #[error("the callback aborted the run")]
    Aborted,
}

/// How an engine runs callbacks: its run state and the function that
/// resolves a token and runs the subprogram.
#[derive(Clone, Copy)]
pub(crate) struct CallbackHook {
    pub state: *const c_void,
    pub call: unsafe fn(
        state: *const c_void,
        env: *mut HelperEnv,
        token: u64,
        args: [u64; 5],
    ) -> Result<u64, CallbackError>,
}

impl HelperEnv {
    /// Runs the program's callback `token` (a value the program got from a
    /// `BPF_PSEUDO_FUNC` `lddw`) with r1..r5 = `args`; returns its r0.
    /// See the [module documentation](self) for the rules.
    pub fn call_callback(&mut self, token: u64, args: [u64; 5]) -> Result<u64, CallbackError> {
        if self.aborted {
            return Err(CallbackError::Aborted);
        }
        let Some(hook) = self.callback else {
            return Err(CallbackError::NoEngine);
        };
        // SAFETY: the engine installed the hook with its live run state for
        // the length of the run, and `self` is that run's environment.
        unsafe { (hook.call)(hook.state, self, token, args) }
    }

    /// Whether a callback stopped the run (see [`CallbackError::Aborted`]).
    pub fn is_aborted(&self) -> bool {
        self.aborted
    }
}

/// Most iterations `bpf_loop` accepts (`BPF_MAX_LOOPS`).
pub const BPF_MAX_LOOPS: u32 = 1 << 23;

/// `long bpf_loop(u32 nr_loops, void *callback_fn, void *callback_ctx,
/// u64 flags)`: calls `callback_fn(i, callback_ctx)` for i in
/// 0..nr_loops, stopping early when it returns non-zero. Returns the
/// number of calls made; -EINVAL for non-zero flags or a bad callback,
/// -E2BIG when nr_loops exceeds [`BPF_MAX_LOOPS`].
///
/// # Safety
/// Called by an engine with its env.
pub unsafe extern "C" fn bpf_loop(
    nr_loops: u64,
    callback_fn: u64,
    callback_ctx: u64,
    flags: u64,
    _: u64,
    env: *mut HelperEnv,
) -> u64 {
    // The kernel's argument is a u32.
    let nr_loops = nr_loops as u32;
    if flags != 0 {
        return neg(errno::EINVAL);
    }
    if nr_loops > BPF_MAX_LOOPS {
        return neg(errno::E2BIG);
    }
    // SAFETY: engine contract.
    let Some(env) = (unsafe { env_ref(env) }) else {
        return neg(errno::EINVAL);
    };
    let mut i: u32 = 0;
    while i < nr_loops {
        match env.call_callback(callback_fn, [u64::from(i), callback_ctx, 0, 0, 0]) {
            Ok(0) => {}
            // 1 stops the loop; the verifier refuses other values.
            Ok(_) => return u64::from(i) + 1,
            Err(CallbackError::Aborted) => return 0,
            Err(_) => return neg(errno::EINVAL),
        }
        i += 1;
    }
    u64::from(i)
}
