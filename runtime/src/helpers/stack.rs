//! `bpf_get_stack` (67): the user stack of the probed thread, walked
//! through frame pointers from the registers of the hit
//! ([`RunInfo::regs`](super::RunInfo)), as the kernel's
//! `perf_callchain_user` does: the first entry is `regs.ip`, then, from
//! `fp = regs.bp`, each frame's return address at `fp + 8` and the next
//! frame at `fp`, every read through [`safe_mem`]. The
//! walk stops at the first unreadable frame, at a frame pointer that does
//! not move up the stack (so a corrupt chain cannot loop), or after
//! 127 entries (the kernel's default `perf_event_max_stack`). Code built
//! without frame pointers yields short or wrong stacks, as in the kernel.

use super::run_info::run_info;
use super::safe_mem;
use super::{env_ref, errno, neg, HelperEnv};
use crate::memory::Access;

/// `BPF_F_SKIP_FIELD_MASK`: frames to skip.
pub const BPF_F_SKIP_FIELD_MASK: u64 = 0xff;
/// `BPF_F_USER_STACK`.
pub const BPF_F_USER_STACK: u64 = 1 << 8;
/// `BPF_F_USER_BUILD_ID`: entries are `struct bpf_stack_build_id`; not
/// supported (-EINVAL).
pub const BPF_F_USER_BUILD_ID: u64 = 1 << 11;
/// The kernel's default `sysctl_perf_event_max_stack`.
pub const MAX_STACK_DEPTH: usize = 127;

/// Walks the user stack from `(ip, bp)` into `out`; returns the number of
/// entries.
pub fn walk_user_stack(ip: u64, bp: u64, out: &mut [u64]) -> usize {
    let mut n = 0;
    if out.is_empty() {
        return 0;
    }
    out[0] = ip;
    n += 1;
    let mut fp = bp;
    while n < out.len() {
        let mut frame = [0u64; 2];
        // SAFETY: `frame` is a valid 16-byte buffer; `fp` is any value,
        // read through the safe routine.
        let ok =
            unsafe { safe_mem::safe_read(frame.as_mut_ptr().cast(), fp as *const u8, 16).is_ok() };
        if !ok {
            break;
        }
        let [next, ret] = frame;
        out[n] = ret;
        n += 1;
        // Frames live at higher addresses than their callees.
        if next <= fp {
            break;
        }
        fp = next;
    }
    n
}

/// `long bpf_get_stack(void *ctx, void *buf, u32 size, u64 flags)`: the
/// bytes written to `buf` (a multiple of 8; the rest of `buf` is zeroed),
/// or a negative error with `buf` zeroed: -EINVAL for bad flags, a size
/// that is not a multiple of 8, or build ids; -EFAULT for a kernel stack
/// (there is none in user space), for a run without registers, or when
/// the stack has no more frames than it skips.
///
/// # Safety
/// Called by an engine with its env (`user`: null or a [`super::RunInfo`]).
pub unsafe extern "C" fn bpf_get_stack(
    _ctx: u64,
    buf: u64,
    size: u64,
    flags: u64,
    _: u64,
    env: *mut HelperEnv,
) -> u64 {
    let size = size as u32 as u64;
    // SAFETY: engine contract.
    let writable = unsafe { env_ref(env) }.is_none_or(|e| e.check(buf, size, Access::Write));
    if !writable {
        return neg(errno::EFAULT);
    }
    let clear = |err: i64| {
        // SAFETY: the program may write `buf` (checked above, or trusted);
        // the routine recovers from faults anyway.
        let _ = unsafe { safe_mem::safe_zero(buf as *mut u8, size as usize) };
        neg(err)
    };
    if flags & !(BPF_F_SKIP_FIELD_MASK | BPF_F_USER_STACK | BPF_F_USER_BUILD_ID) != 0 {
        return clear(errno::EINVAL);
    }
    if flags & BPF_F_USER_BUILD_ID != 0 {
        return clear(errno::EINVAL);
    }
    if !size.is_multiple_of(8) {
        return clear(errno::EINVAL);
    }
    if flags & BPF_F_USER_STACK == 0 {
        // The kernel stack of a user-space probe is empty.
        return clear(errno::EFAULT);
    }
    // SAFETY: engine contract.
    let regs = unsafe { run_info(env) }.map_or(std::ptr::null_mut(), |i| i.regs);
    // SAFETY: `regs` is null or valid for the run (RunInfo contract).
    let Some(regs) = (unsafe { regs.as_ref() }) else {
        return clear(errno::EFAULT);
    };
    let skip = (flags & BPF_F_SKIP_FIELD_MASK) as usize;
    let wanted = (size / 8) as usize;
    let depth = (wanted + skip).min(MAX_STACK_DEPTH);
    let mut ips = [0u64; MAX_STACK_DEPTH];
    let n = walk_user_stack(regs.ip, regs.bp, &mut ips[..depth]);
    if n <= skip {
        return clear(errno::EFAULT);
    }
    let entries = (n - skip).min(wanted);
    let bytes = entries * 8;
    // SAFETY: `ips[skip..skip + entries]` is in bounds (skip + entries <=
    // n <= depth); `buf` may be written for `size >= bytes` bytes.
    let ok = unsafe {
        safe_mem::safe_write(buf as *mut u8, ips.as_ptr().add(skip).cast(), bytes).is_ok()
            && safe_mem::safe_zero((buf as *mut u8).wrapping_add(bytes), size as usize - bytes)
                .is_ok()
    };
    if !ok {
        return clear(errno::EFAULT);
    }
    bytes as u64
}

/// The stack walker `bpf_get_stackid` uses ([`crate::maps::stack_trace::set_stack_walker`]):
/// the probed thread's user stack from [`RunInfo::regs`](super::RunInfo)
/// when the run has them (a hook in a target), otherwise the calling
/// thread's own stack through glibc's unwinder (`bpf_prog_test_run` in the
/// loader, where the kernel too reports the caller's user stack).
// A safe `fn` because that is the walker type `stack_trace` stores; `env`
// only ever comes from the engine running the helper that calls it.
#[allow(clippy::not_unsafe_ptr_arg_deref)]
pub fn stack_walker(env: *mut HelperEnv, skip: u32, out: &mut [u64]) -> usize {
    let mut frames = [0u64; MAX_STACK_DEPTH + 1];
    // SAFETY: `env` is the live environment of the current run (the
    // helper that calls the walker received it from the engine).
    let regs = unsafe { run_info(env) }
        .map(|ri| ri.regs)
        .filter(|r| !r.is_null());
    let n = match regs {
        Some(regs) => {
            // SAFETY: RunInfo::regs points at the hit's live pt_regs.
            let (ip, bp) = unsafe { ((*regs).ip, (*regs).bp) };
            walk_user_stack(ip, bp, &mut frames)
        }
        None => {
            let mut raw = [std::ptr::null_mut::<libc::c_void>(); MAX_STACK_DEPTH + 1];
            // SAFETY: `raw` has room for the count passed.
            let n = unsafe { libc::backtrace(raw.as_mut_ptr(), raw.len() as i32) }.max(0) as usize;
            for (f, r) in frames.iter_mut().zip(&raw[..n]) {
                *f = *r as u64;
            }
            n
        }
    };
    let skip = (skip as usize).min(n);
    let take = (n - skip).min(out.len());
    out[..take].copy_from_slice(&frames[skip..skip + take]);
    take
}
