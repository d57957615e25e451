//! Reading and writing memory the program does not own: `bpf_probe_read`
//! (4), `bpf_probe_read_str` (45), `bpf_probe_read_user` (112),
//! `bpf_probe_read_kernel` (113), `bpf_probe_read_user_str` (114),
//! `bpf_probe_read_kernel_str` (115) and `bpf_probe_write_user` (36).
//!
//! The unsafe pointer is any value: it is read or written through
//! [`safe_mem`], so a bad one gives -EFAULT and the target lives. The
//! program's own buffer is checked with [`HelperEnv::check`] (a buffer
//! the program may not write gives -EFAULT without touching anything).
//!
//! User space has no kernel memory of its own. The one piece of "kernel"
//! memory a uprobe program reads is its context (the `pt_regs`, which
//! libbpf's `usdt.bpf.h` reads with
//! `bpf_probe_read_kernel`). The `_kernel` variants read that and fail
//! with -EFAULT for anything else (zeroing
//! the destination, as the kernel does on failure),
//! and the legacy `bpf_probe_read`/`bpf_probe_read_str` behave as the
//! kernel's on x86-64: user addresses are read as user memory, kernel
//! addresses fail.

use super::safe_mem;
use super::{env_ref, errno, neg, HelperEnv};
use crate::memory::Access;

/// Whether the program may write `size` bytes at `dst`.
///
/// # Safety
/// `env` is null or the environment of the current run.
unsafe fn may_write(env: *mut HelperEnv, dst: u64, size: u64) -> bool {
    // SAFETY: forwarded from the caller.
    unsafe { env_ref(env) }.is_none_or(|env| env.check(dst, size, Access::Write))
}

/// Zeroes the program's buffer after a failure, as the kernel does.
fn clear(dst: u64, size: u64) {
    // SAFETY: the caller checked that the program may write there; the
    // routine recovers from faults anyway.
    let _ = unsafe { safe_mem::safe_zero(dst as *mut u8, size as usize) };
}

/// Copies `size` user bytes at `src` into the program's `dst`; 0 or
/// -EFAULT (with `dst` zeroed).
///
/// # Safety
/// `env` is null or the environment of the current run.
#[inline]
unsafe fn read_user(dst: u64, size: u64, src: u64, env: *mut HelperEnv) -> u64 {
    let size = size as u32 as u64;
    // SAFETY: forwarded from the caller.
    if !unsafe { may_write(env, dst, size) } {
        return neg(errno::EFAULT);
    }
    // SAFETY: the program may write `dst` (checked, or trusted under the
    // JIT); the source is any value and read through the safe routine.
    match unsafe { safe_mem::safe_read(dst as *mut u8, src as *const u8, size as usize) } {
        Ok(()) => 0,
        Err(_) => {
            clear(dst, size);
            neg(errno::EFAULT)
        }
    }
}

/// Copies the user string at `src` into the program's `dst` (at most
/// `size` bytes); the kernel's `strncpy_from_user_nofault` result.
///
/// # Safety
/// `env` is null or the environment of the current run.
unsafe fn read_user_str(dst: u64, size: u64, src: u64, env: *mut HelperEnv) -> u64 {
    let size = size as u32 as u64;
    if size == 0 {
        return 0;
    }
    // SAFETY: forwarded from the caller.
    if !unsafe { may_write(env, dst, size) } {
        return neg(errno::EFAULT);
    }
    // SAFETY: as in `read_user`.
    match unsafe { safe_mem::safe_read_str(dst as *mut u8, src as *const u8, size as usize) } {
        Ok(n) => n as u64,
        Err(_) => {
            clear(dst, size);
            neg(errno::EFAULT)
        }
    }
}

/// Whether `[src, src + size)` is the hit's `pt_regs` (known to both
/// engines through the run's [`RunInfo`](super::run_info::RunInfo)).
fn own_region(e: &HelperEnv, src: u64, size: u64) -> bool {
    // SAFETY: `user` is null or the run's RunInfo (the helpers' contract).
    let regs = unsafe { e.user.cast::<super::run_info::RunInfo>().as_ref() }
        .map_or(0, |info| info.regs as u64);
    let regs_len = std::mem::size_of::<super::run_info::PtRegs>() as u64;
    regs != 0 && src >= regs && src <= regs + regs_len && size <= regs + regs_len - src
}

/// A read of "kernel" memory: the hit's `pt_regs` is copied; anything else
/// fails with -EFAULT, `dst` zeroed.
///
/// # Safety
/// `env` is null or the environment of the current run.
unsafe fn read_kernel(dst: u64, size: u64, src: u64, env: *mut HelperEnv) -> u64 {
    let size = size as u32 as u64;
    // SAFETY: forwarded from the caller.
    let Some(e) = (unsafe { env_ref(env) }) else {
        return neg(errno::EFAULT);
    };
    if !e.check(dst, size, Access::Write) {
        return neg(errno::EFAULT);
    }
    if size > 0 && own_region(e, src, size) {
        // SAFETY: `dst` is the program's (checked above), `src` the run's
        // live pt_regs; `copy` tolerates overlap.
        unsafe { std::ptr::copy(src as *const u8, dst as *mut u8, size as usize) };
        return 0;
    }
    clear(dst, size);
    neg(errno::EFAULT)
}

/// `long bpf_probe_read(void *dst, u32 size, const void *unsafe_ptr)`.
///
/// # Safety
/// Called by an engine with its env.
pub unsafe extern "C" fn bpf_probe_read(
    dst: u64,
    size: u64,
    src: u64,
    _: u64,
    _: u64,
    env: *mut HelperEnv,
) -> u64 {
    // SAFETY: engine contract. Kernel addresses fail in safe_mem.
    unsafe { read_user(dst, size, src, env) }
}

/// `long bpf_probe_read_user(void *dst, u32 size, const void *unsafe_ptr)`.
///
/// # Safety
/// Called by an engine with its env.
pub unsafe extern "C" fn bpf_probe_read_user(
    dst: u64,
    size: u64,
    src: u64,
    _: u64,
    _: u64,
    env: *mut HelperEnv,
) -> u64 {
    // SAFETY: engine contract.
    unsafe { read_user(dst, size, src, env) }
}

/// `long bpf_probe_read_kernel(void *dst, u32 size, const void *unsafe_ptr)`:
/// the program's own regions are readable, anything else is -EFAULT with
/// `dst` zeroed.
///
/// # Safety
/// Called by an engine with its env.
pub unsafe extern "C" fn bpf_probe_read_kernel(
    dst: u64,
    size: u64,
    src: u64,
    _: u64,
    _: u64,
    env: *mut HelperEnv,
) -> u64 {
    // SAFETY: engine contract.
    unsafe { read_kernel(dst, size, src, env) }
}

/// `long bpf_probe_read_str(void *dst, u32 size, const void *unsafe_ptr)`.
///
/// # Safety
/// Called by an engine with its env.
pub unsafe extern "C" fn bpf_probe_read_str(
    dst: u64,
    size: u64,
    src: u64,
    _: u64,
    _: u64,
    env: *mut HelperEnv,
) -> u64 {
    // SAFETY: engine contract.
    unsafe { read_user_str(dst, size, src, env) }
}

/// `long bpf_probe_read_user_str(void *dst, u32 size, const void
/// *unsafe_ptr)`: the length copied including the NUL (a longer string is
/// truncated and NUL-terminated: `size`), or -EFAULT with `dst` zeroed.
///
/// # Safety
/// Called by an engine with its env.
pub unsafe extern "C" fn bpf_probe_read_user_str(
    dst: u64,
    size: u64,
    src: u64,
    _: u64,
    _: u64,
    env: *mut HelperEnv,
) -> u64 {
    // SAFETY: engine contract.
    unsafe { read_user_str(dst, size, src, env) }
}

/// `long bpf_probe_read_kernel_str(void *dst, u32 size, const void
/// *unsafe_ptr)`: 0 for `size == 0`, else -EFAULT with `dst` zeroed.
///
/// # Safety
/// Called by an engine with its env.
pub unsafe extern "C" fn bpf_probe_read_kernel_str(
    dst: u64,
    size: u64,
    _src: u64,
    _: u64,
    _: u64,
    env: *mut HelperEnv,
) -> u64 {
    if size as u32 == 0 {
        return 0;
    }
    // SAFETY: engine contract; strings are not read from the program's
    // regions (src 0 always fails).
    unsafe { read_kernel(dst, size, 0, env) }
}

/// `long bpf_probe_write_user(void *dst, const void *src, u32 len)`: writes
/// the program's `len` bytes at `src` to the user address `dst`; 0, or
/// -EFAULT when `dst` cannot be written (or `src` is not the program's).
///
/// # Safety
/// Called by an engine with its env. Writing to the target's memory is the
/// point of this helper: only trusted programs should be given it, as in
/// the kernel (which warns when a program uses it).
pub unsafe extern "C" fn bpf_probe_write_user(
    dst: u64,
    src: u64,
    len: u64,
    _: u64,
    _: u64,
    env: *mut HelperEnv,
) -> u64 {
    let len = len as u32 as u64;
    // SAFETY: engine contract.
    let readable = unsafe { env_ref(env) }.is_none_or(|env| env.check(src, len, Access::Read));
    if !readable {
        return neg(errno::EFAULT);
    }
    // SAFETY: the source is program memory (checked); the destination is
    // any value, written through the safe routine.
    match unsafe { safe_mem::safe_write(dst as *mut u8, src as *const u8, len as usize) } {
        Ok(()) => 0,
        Err(_) => neg(errno::EFAULT),
    }
}
