//! Return hooks: the return trampoline and the per-thread shadow stack.
//!
//! At a function-entry hook with a return handler, the entry stub calls
//! [`ret_prepare`], which pushes (stack slot, original return address,
//! site) on the thread's shadow stack. The stub then drops the return
//! address from the machine stack and *calls* the relocated function, so
//! the function returns into the site's trampoline, a return the CPU
//! predicts (swapping the return address for a trampoline's, as the
//! kernel does, costs a mispredicted return on every call: about 7 ns
//! here). From there the trampoline jumps to `userbpf_hook_ret_tramp_*`,
//! which builds a `pt_regs` (ax/dx and xmm0/xmm1, or ymm0/ymm1 on AVX
//! machines, carry the return value and are preserved), calls
//! [`ret_dispatch`], which pops the entry and runs the handler, and
//! returns to the original return address with `push; ret`, which pairs
//! with the caller's `call` in the return stack buffer. r11 and the flags
//! are dead at a return under the System V ABI and are used freely.
//!
//! Entries are keyed by the stack slot of the return address, as in the
//! kernel's uretprobes: on entry, entries whose slot is at or below the new
//! one belong to frames that were left without returning (longjmp, C++
//! exceptions, thread cancellation) and are dropped; on return, entries
//! below the returning frame are dropped the same way. So recursion and
//! longjmp are handled, and each thread has its own stack.
//!
//! The shadow stack is mmap'ed on a thread's first return hook and unmapped
//! by a pthread key destructor when the thread exits; nothing else on this
//! path allocates, locks or makes a system call.

use super::regs::PtRegs;
use super::thread::{self, ThreadState};
use super::SiteData;
use core::arch::global_asm;
use core::sync::atomic::Ordering;

/// Entries per thread. Deeper nesting of return-hooked calls is not
/// hooked on return (the kernel stops at 64) and counted in
/// `SiteData::missed`.
pub const CAPACITY: usize = 4096;

#[repr(C)]
#[derive(Clone, Copy)]
struct Entry {
    /// Address of the return-address slot at function entry.
    slot: u64,
    /// The original return address.
    ret: u64,
    site: *const SiteData,
}

/// The shadow stack. The entry stub's USERBPF_ARM_RET relies on this
/// layout: `len` at 0, entries (24 bytes each: slot, ret, site) at 8.
#[repr(C)]
pub(crate) struct Shadow {
    len: usize,
    entries: [Entry; CAPACITY],
}

const _: () = {
    assert!(core::mem::offset_of!(Shadow, entries) == 8);
    assert!(core::mem::size_of::<Entry>() == 24);
    assert!(core::mem::offset_of!(Entry, slot) == 0);
    assert!(core::mem::offset_of!(Entry, ret) == 8);
    assert!(core::mem::offset_of!(Entry, site) == 16);
};

global_asm!(
    // \ymm: keep ymm0/ymm1 (AVX machines) instead of xmm0/xmm1.
    ".macro USERBPF_HOOK_RET_TRAMP name, ymm",
    ".p2align 4",
    ".globl userbpf_hook_ret_tramp_\\name",
    ".hidden userbpf_hook_ret_tramp_\\name",
    "userbpf_hook_ret_tramp_\\name:",
    // No red zone and no live flags right after a return. Live: the return
    // value (rax, rdx, xmm0, xmm1) and the callee-saved registers; the
    // others are recorded for completeness but not restored.
    "lea rsp, [rsp - 168]",
    super::stub::save_gprs!(),
    "lea rax, [rsp + 168]",
    "mov [rsp + 152], rax",
    "mov qword ptr [rsp + 120], -1",
    "mov qword ptr [rsp + 136], 0x33",
    "mov qword ptr [rsp + 160], 0x2b",
    "pushfq",
    "pop qword ptr [rsp + 144]",
    "mov rbx, rsp",
    ".if \\ymm",
    "and rsp, -32",
    "sub rsp, 64",
    "vmovdqu [rsp], ymm0",
    "vmovdqu [rsp + 32], ymm1",
    "vzeroupper",
    ".else",
    "and rsp, -16",
    "sub rsp, 32",
    "movaps [rsp], xmm0",
    "movaps [rsp + 16], xmm1",
    ".endif",
    "mov rdi, rbx",
    "mov rsi, qword ptr fs:[0]",
    "add rsi, qword ptr [rip + userbpf_hook_tls@GOTTPOFF]",
    "call {dispatch}",
    "mov r11, rax",
    ".if \\ymm",
    "vmovdqu ymm0, [rsp]",
    "vmovdqu ymm1, [rsp + 32]",
    ".else",
    "movaps xmm0, [rsp]",
    "movaps xmm1, [rsp + 16]",
    ".endif",
    // The handler may change the return value; rbx, rbp and r12-r15 were
    // preserved by the call.
    "mov rsp, rbx",
    "mov rax, [rsp + 80]",
    "mov rdx, [rsp + 96]",
    "mov rbx, [rsp + 40]",
    "lea rsp, [rsp + 168]",
    // The caller's `call` left this return predicted.
    "push r11",
    "ret",
    ".endm",
    "USERBPF_HOOK_RET_TRAMP x, 0",
    "USERBPF_HOOK_RET_TRAMP y, 1",
    dispatch = sym ret_dispatch,
);

extern "C" {
    fn userbpf_hook_ret_tramp_x();
    fn userbpf_hook_ret_tramp_y();
}

/// Where a site's trampoline continues after the function returned.
pub(crate) fn trampoline() -> usize {
    match super::stub::vectors() {
        super::stub::Vectors::Xmm => userbpf_hook_ret_tramp_x as *const () as usize,
        _ => userbpf_hook_ret_tramp_y as *const () as usize,
    }
}

/// `trampoline()`, cached for the hot path by [`init`].
static TRAMPOLINE: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// The return trampoline, as cached by [`init`]: what a trap site's SIGTRAP
/// handler writes over the return address (no `OnceLock` on that path).
pub(crate) fn cached_trampoline() -> usize {
    TRAMPOLINE.load(Ordering::Relaxed)
}

/// Writes `msg` to stderr and aborts: the return address of a hooked call
/// is lost, and no way to continue exists.
fn fatal(msg: &str) -> ! {
    // SAFETY: write(2) on a borrowed buffer; abort has no preconditions.
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.len());
        libc::abort()
    }
}

static KEY: std::sync::OnceLock<Option<libc::pthread_key_t>> = std::sync::OnceLock::new();

/// Creates the pthread key whose destructor frees shadow stacks. Called on
/// the control path (before the first return hook is armed).
pub(crate) fn init() {
    TRAMPOLINE.store(trampoline(), Ordering::Relaxed);
    thread::init_errno_offset();
    KEY.get_or_init(|| {
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: `key` is a valid out pointer; the destructor is an
        // extern "C" fn taking the value.
        let rc = unsafe { libc::pthread_key_create(&mut key, Some(free_shadow)) };
        (rc == 0).then_some(key)
    });
}

unsafe extern "C" fn free_shadow(p: *mut libc::c_void) {
    let ts = thread::current();
    // SAFETY: the destructor runs on the exiting thread, whose state block
    // is still mapped; `p` is the mapping made by `shadow_of`.
    unsafe {
        if (*ts).shadow == p.cast() {
            (*ts).shadow = core::ptr::null_mut();
        }
        libc::munmap(p, core::mem::size_of::<Shadow>());
    }
}

/// The thread's shadow stack, allocated on first use.
///
/// # Safety
/// `ts` is the calling thread's state.
unsafe fn shadow_of(ts: *mut ThreadState) -> Option<&'static mut Shadow> {
    // SAFETY: per the contract, `ts` is this thread's block.
    let cur = unsafe { (*ts).shadow };
    if !cur.is_null() {
        // SAFETY: only this thread uses its shadow stack.
        return Some(unsafe { &mut *cur });
    }
    let key = (*KEY.get()?)?;
    // SAFETY: a fresh anonymous private mapping (zero-filled: len 0).
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            core::mem::size_of::<Shadow>(),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return None;
    }
    // SAFETY: the key exists; the value is our mapping.
    unsafe {
        libc::pthread_setspecific(key, p);
        (*ts).shadow = p.cast();
        Some(&mut *p.cast::<Shadow>())
    }
}

/// Called by the entry stub when the site has a return handler: arms the
/// return hook for this call. Returns 1 if it did; the stub then calls the
/// function instead of jumping to it.
///
/// # Safety
/// Called from the entry stub only: `regs` is the live pt_regs of a
/// function entry, `site` the site's data, `ts` the thread's state.
pub(crate) unsafe extern "C" fn ret_prepare(
    regs: *mut PtRegs,
    site: *const SiteData,
    ts: *mut ThreadState,
) -> u64 {
    // SAFETY: per the contract.
    let (regs, site) = unsafe { (&mut *regs, &*site) };
    if regs.ip != site.ip {
        // The entry handler redirected the call (override_return).
        return 0;
    }
    // SAFETY: `ts` is this thread's state.
    let Some(sh) = (unsafe { shadow_of(ts) }) else {
        site.missed.fetch_add(1, Ordering::Relaxed);
        return 0;
    };
    let slot = regs.sp;
    // Frames at or below this one were left without returning.
    let mut len = sh.len.min(CAPACITY);
    while let Some(top) = len.checked_sub(1).and_then(|i| sh.entries.get(i)) {
        if top.slot > slot {
            break;
        }
        len -= 1;
    }
    sh.len = len;
    let Some(e) = sh.entries.get_mut(len) else {
        site.missed.fetch_add(1, Ordering::Relaxed);
        return 0;
    };
    // SAFETY: at a function entry the stack pointer points at the return
    // address pushed by the call.
    let ret = unsafe { (slot as *const u64).read() };
    *e = Entry { slot, ret, site };
    sh.len = len + 1;
    1
}

/// Called by the return trampoline: pops the call's entry, runs the return
/// handler, and returns the original return address.
///
/// # Safety
/// Called from the return trampoline only.
unsafe extern "C" fn ret_dispatch(regs: *mut PtRegs, ts: *mut ThreadState) -> u64 {
    // SAFETY: per the contract.
    let regs = unsafe { &mut *regs };
    // SAFETY: `ts` is this thread's state; its shadow stack exists, since
    // an entry was pushed on it.
    let sh = match unsafe { (*ts).shadow.as_mut() } {
        Some(s) => s,
        None => fatal("userbpf: return trampoline reached without a shadow stack\n"),
    };
    // The slot the returning call's address was in.
    let slot = regs.sp.wrapping_sub(8);
    let e = loop {
        let Some(top) = sh.len.checked_sub(1).and_then(|i| sh.entries.get(i)) else {
            fatal("userbpf: uretprobe shadow stack underflow\n")
        };
        let top = *top;
        sh.len -= 1;
        if top.slot == slot {
            break top;
        }
        if top.slot > slot {
            fatal("userbpf: uretprobe return does not match the shadow stack\n")
        }
        // top.slot < slot: a frame that was left without returning.
    };
    regs.ip = e.ret;
    // SAFETY: `ts` is this thread's state; sites are never freed.
    unsafe {
        if (*ts).busy == 0 {
            let b = (*e.site).ret_binding.load(Ordering::Acquire);
            if !b.is_null() {
                (*ts).busy = 1;
                let errno = thread::errno();
                let saved = *errno;
                ((*b).func)(regs, (*b).data);
                *errno = saved;
                (*ts).busy = 0;
            }
        }
    }
    e.ret
}

/// Entries on the calling thread's shadow stack (for tests).
pub fn shadow_depth() -> usize {
    // SAFETY: reads this thread's own state.
    unsafe { (*thread::current()).shadow.as_ref().map_or(0, |s| s.len) }
}
