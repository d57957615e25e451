//! Per-thread state of the hook path, in initial-exec TLS.
//!
//! The block is defined in assembly so that it is reached with one
//! `fs:`-relative access, also when the agent is a shared object (Rust's
//! `thread_local!` would go through `__tls_get_addr` there). Its offset from
//! the thread pointer is the same in every thread, so the per-site stubs
//! embed it as a constant. The errno slot of the C library is reached the
//! same way (glibc and musl both keep it in static TLS).

use core::arch::{asm, global_asm};

/// What a thread carries. Zero-initialised in every new thread.
#[repr(C)]
pub(crate) struct ThreadState {
    /// Non-zero while a handler runs on this thread: hooks hit from inside
    /// a handler are skipped (the kernel's per-CPU `bpf_prog_active`).
    pub busy: u64,
    /// The uretprobe shadow stack, allocated on the thread's first return
    /// hook (`uretprobe::Shadow`).
    pub shadow: *mut super::uretprobe::Shadow,
    /// The thread's slot in the agent's thread table plus one (0: not
    /// registered yet), for grace periods (`crate::grace`).
    pub slot: u64,
    pub _reserved: u64,
}

global_asm!(
    ".pushsection .tbss,\"awT\",@nobits",
    ".p2align 4",
    ".globl userbpf_hook_tls",
    ".hidden userbpf_hook_tls",
    ".type userbpf_hook_tls,@object",
    ".size userbpf_hook_tls, 32",
    "userbpf_hook_tls:",
    ".zero 32",
    ".popsection",
);

const _: () = assert!(core::mem::size_of::<ThreadState>() == 32);

/// The thread pointer (`fs:0` holds it on x86-64 Linux).
#[inline(always)]
fn thread_pointer() -> usize {
    let tp: usize;
    // SAFETY: reads the TCB's self pointer, which glibc and musl keep at
    // fs:0 in every thread.
    unsafe {
        asm!("mov {}, qword ptr fs:[0]", out(reg) tp, options(nostack, readonly, preserves_flags))
    };
    tp
}

/// Offset of the calling thread's [`ThreadState`] from its thread pointer;
/// the same in every thread.
pub(crate) fn state_offset() -> isize {
    let off: isize;
    // SAFETY: loads the GOT entry the linker fills with the block's TP
    // offset (initial-exec model); no memory is written.
    unsafe {
        asm!(
            "mov {}, qword ptr [rip + userbpf_hook_tls@GOTTPOFF]",
            out(reg) off,
            options(nostack, readonly, preserves_flags)
        )
    };
    off
}

/// The calling thread's state.
#[inline(always)]
pub(crate) fn current() -> *mut ThreadState {
    thread_pointer().wrapping_add_signed(state_offset()) as *mut ThreadState
}

static ERRNO_OFFSET: core::sync::atomic::AtomicIsize = core::sync::atomic::AtomicIsize::new(0);

/// Records [`errno_offset`] for [`errno`]; control path.
pub(crate) fn init_errno_offset() {
    ERRNO_OFFSET.store(errno_offset(), core::sync::atomic::Ordering::Relaxed);
}

/// The calling thread's `errno`, without a call into the C library.
#[inline(always)]
pub(crate) fn errno() -> *mut libc::c_int {
    match ERRNO_OFFSET.load(core::sync::atomic::Ordering::Relaxed) {
        // SAFETY: __errno_location has no preconditions.
        0 => unsafe { libc::__errno_location() },
        off => thread_pointer().wrapping_add_signed(off) as *mut libc::c_int,
    }
}

/// Offset of the calling thread's `errno` from its thread pointer.
pub(crate) fn errno_offset() -> isize {
    // SAFETY: __errno_location has no preconditions.
    let p = unsafe { libc::__errno_location() } as usize;
    p.wrapping_sub(thread_pointer()) as isize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_agree_across_threads() {
        let here = (
            state_offset(),
            errno_offset(),
            (current() as usize).wrapping_sub(thread_pointer()),
        );
        let there = std::thread::spawn(|| {
            (
                state_offset(),
                errno_offset(),
                (current() as usize).wrapping_sub(thread_pointer()),
            )
        })
        .join()
        .unwrap();
        assert_eq!(here, there);
        assert_eq!(here.0 as usize, here.2);
        // SAFETY: the block belongs to this thread.
        unsafe {
            assert_eq!((*current()).busy, 0);
            (*current()).busy = 7;
            assert_eq!((*current()).busy, 7);
            (*current()).busy = 0;
        }
    }
}
