//! Fault-recovering copies from and to arbitrary user pointers, without a
//! syscall on the fast path.
//!
//! # How
//! The copies run in a few small leaf routines written in assembly
//! (`global_asm!` below), all between two labels. A SIGSEGV/SIGBUS handler
//! looks at the faulting instruction pointer: if it lies between those
//! labels and the signal comes from a real fault (`si_code > 0`), the
//! handler moves the instruction pointer to a recovery label that returns
//! -1 to the routine's caller, which reports a [`Fault`]. That is the
//! kernel's exception table, in user space. A valid copy costs what a
//! `memcpy` costs; only a bad pointer pays for a signal (a few µs).
//!
//! Addresses in the first page, at or above `0x8000_0000_0000` (kernel
//! addresses and, on x86-64 with 4-level paging, non-canonical ones) and
//! ranges that wrap are refused before anything is touched.
//!
//! # Installation
//! The handler is installed lazily, on the first copy (or explicitly with
//! [`install`]), once per process and thread-safely (a [`Once`]); the fast
//! path checks one flag.
//!
//! # Signal chaining contract
//! The handler never takes a signal away from the application:
//! - The disposition found at installation (the "application's action") is
//!   kept, and every SIGSEGV/SIGBUS that is not a fault in our routines is
//!   passed on to it as the kernel would have: an `SA_SIGINFO` handler gets
//!   the original `siginfo_t` and `ucontext_t` (so it may inspect or edit
//!   the context), a plain handler gets the signal number; `SA_RESETHAND`
//!   resets the action to `SIG_DFL` first. Our handler is installed with the
//!   application's `sa_mask` and its `SA_NODEFER`, `SA_ONSTACK` and
//!   `SA_RESTART` flags, so the kernel blocks exactly what it would have
//!   blocked for the application's handler.
//! - `SIG_DFL`: the real disposition is reset to `SIG_DFL`; a fault then
//!   re-executes the faulting instruction and the kernel kills the process
//!   with a core dump, as if we had never been there; a signal sent with
//!   `kill`/`tgkill` is raised again and terminates the process.
//! - `SIG_IGN`: a signal sent by a process is ignored; a real fault kills
//!   the process, as the kernel does for an ignored synchronous fault.
//! - If the application installs its own handler *after* us with a plain
//!   `sigaction`/`signal`, the kernel gives it every SIGSEGV/SIGBUS from
//!   then on, including faults of our routines: a helper reading a bad
//!   pointer then runs the application's handler, which usually terminates
//!   the process. The agent prevents that by interposing `sigaction` and
//!   `signal` and routing SIGSEGV/SIGBUS changes through
//!   [`app_sigaction`], which records the application's new action as the
//!   one to chain to and keeps our handler in place (the application sees
//!   its own actions through `oldact`, as if we were not there).
//! - A fault in our routine on a thread that blocked SIGSEGV/SIGBUS cannot
//!   be recovered: the kernel forces the default action (as it would for
//!   any fault on such a thread).
//! - Faults the application would handle itself (a garbage collector's
//!   protected pages, userfaultfd-style lazy mapping) are reported as
//!   faults by our copies, without running the application's handler: the
//!   same as the kernel's `copy_from_user_nofault`.

use std::ffi::{c_int, c_void};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::sync::{Mutex, Once};

use thiserror::Error;

/// Lowest address a copy may touch: the first page is never valid.
pub const USER_MIN: u64 = 4096;
/// End of user space (exclusive) with 4-level paging; everything above is
/// kernel or non-canonical.
pub const USER_END: u64 = 0x0000_8000_0000_0000;

/// Why a copy failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Fault {
    /// The range is not in user space (first page, kernel, non-canonical,
    /// or it wraps); nothing was touched.
    #[error("{addr:#x} (+{len} bytes) is not a user-space range")]
    NotUser { addr: u64, len: u64 },
    /// Touching the range faulted (unmapped, protected, beyond the end of
    /// a mapped file); the destination may be partly written.
    #[error("memory fault copying {len} bytes from {src:#x} to {dst:#x}")]
    Faulted { dst: u64, src: u64, len: u64 },
}

std::arch::global_asm!(
    ".pushsection .text.__userbpf_safe_mem,\"ax\",@progbits",
    ".p2align 4",
    ".globl __userbpf_safe_begin",
    ".hidden __userbpf_safe_begin",
    "__userbpf_safe_begin:",
    // i64 copy(u8 *dst = rdi, const u8 *src = rsi, usize len = rdx):
    // 0 on success, -1 (through the recovery label) on a fault.
    ".globl __userbpf_safe_copy",
    ".hidden __userbpf_safe_copy",
    ".type __userbpf_safe_copy,@function",
    "__userbpf_safe_copy:",
    "    cmp rdx, 16",
    "    jb .Lusb_copy_tail8",
    ".Lusb_copy_loop16:",
    "    mov rax, qword ptr [rsi]",
    "    mov rcx, qword ptr [rsi + 8]",
    "    mov qword ptr [rdi], rax",
    "    mov qword ptr [rdi + 8], rcx",
    "    add rsi, 16",
    "    add rdi, 16",
    "    sub rdx, 16",
    "    cmp rdx, 16",
    "    jae .Lusb_copy_loop16",
    ".Lusb_copy_tail8:",
    "    cmp rdx, 8",
    "    jb .Lusb_copy_tail4",
    "    mov rax, qword ptr [rsi]",
    "    mov qword ptr [rdi], rax",
    "    add rsi, 8",
    "    add rdi, 8",
    "    sub rdx, 8",
    ".Lusb_copy_tail4:",
    "    cmp rdx, 4",
    "    jb .Lusb_copy_bytes",
    "    mov eax, dword ptr [rsi]",
    "    mov dword ptr [rdi], eax",
    "    add rsi, 4",
    "    add rdi, 4",
    "    sub rdx, 4",
    ".Lusb_copy_bytes:",
    "    test rdx, rdx",
    "    jz .Lusb_copy_done",
    ".Lusb_copy_byte:",
    "    movzx eax, byte ptr [rsi]",
    "    mov byte ptr [rdi], al",
    "    inc rsi",
    "    inc rdi",
    "    dec rdx",
    "    jnz .Lusb_copy_byte",
    ".Lusb_copy_done:",
    "    xor eax, eax",
    "    ret",
    ".size __userbpf_safe_copy, . - __userbpf_safe_copy",
    // i64 strcpy(u8 *dst = rdi, const u8 *src = rsi, usize max = rdx):
    // copies up to and including the first NUL, at most `max` bytes;
    // returns the bytes copied (so `max` when no NUL was found), or -1.
    ".globl __userbpf_safe_strcpy",
    ".hidden __userbpf_safe_strcpy",
    ".type __userbpf_safe_strcpy,@function",
    "__userbpf_safe_strcpy:",
    "    xor ecx, ecx",
    ".Lusb_str_loop:",
    "    cmp rcx, rdx",
    "    jae .Lusb_str_done",
    "    movzx eax, byte ptr [rsi + rcx]",
    "    mov byte ptr [rdi + rcx], al",
    "    inc rcx",
    "    test eax, eax",
    "    jnz .Lusb_str_loop",
    ".Lusb_str_done:",
    "    mov rax, rcx",
    "    ret",
    ".size __userbpf_safe_strcpy, . - __userbpf_safe_strcpy",
    // i64 zero(u8 *dst = rdi, usize len = rsi): 0, or -1 on a fault.
    ".globl __userbpf_safe_zero",
    ".hidden __userbpf_safe_zero",
    ".type __userbpf_safe_zero,@function",
    "__userbpf_safe_zero:",
    "    mov rcx, rsi",
    "    xor eax, eax",
    "    rep stosb",
    "    ret",
    ".size __userbpf_safe_zero, . - __userbpf_safe_zero",
    // The recovery label: the signal handler resumes here after a fault in
    // any routine above. They are leaf functions that never touch the
    // stack, so `ret` returns to their caller.
    ".globl __userbpf_safe_fault",
    ".hidden __userbpf_safe_fault",
    "__userbpf_safe_fault:",
    "    mov rax, -1",
    "    ret",
    ".globl __userbpf_safe_end",
    ".hidden __userbpf_safe_end",
    "__userbpf_safe_end:",
    ".popsection",
);

unsafe extern "C" {
    fn __userbpf_safe_begin();
    fn __userbpf_safe_end();
    fn __userbpf_safe_fault();
    fn __userbpf_safe_copy();
    fn __userbpf_safe_strcpy();
    fn __userbpf_safe_zero();
}

// The routines are called from inline assembly that names exactly the
// registers they use (rdi, rsi, rdx, rcx, rax), so the compiler keeps
// everything else in registers across the call: the callers stay leaf-like,
// without saving callee-saved registers (a valid 16-byte probe_read is a
// few instructions and one call).

/// The copy routine: 0, or -1 after a fault.
///
/// # Safety
/// As for [`safe_read`], and the handler is installed.
#[inline(always)]
unsafe fn raw_copy(dst: *mut u8, src: *const u8, len: usize) -> i64 {
    let ret: i64;
    // SAFETY: calls the leaf routine, which clobbers only the registers
    // listed and uses no stack beyond its return address.
    unsafe {
        std::arch::asm!(
            "call {f}",
            f = sym __userbpf_safe_copy,
            inout("rdi") dst => _,
            inout("rsi") src => _,
            inout("rdx") len => _,
            out("rcx") _,
            out("rax") ret,
        );
    }
    ret
}

/// The string routine: bytes copied (NUL included), `max` without a NUL,
/// or -1 after a fault.
///
/// # Safety
/// As for [`safe_read`], and the handler is installed.
#[inline(always)]
unsafe fn raw_strcpy(dst: *mut u8, src: *const u8, max: usize) -> i64 {
    let ret: i64;
    // SAFETY: as in `raw_copy`.
    unsafe {
        std::arch::asm!(
            "call {f}",
            f = sym __userbpf_safe_strcpy,
            inout("rdi") dst => _,
            inout("rsi") src => _,
            inout("rdx") max => _,
            out("rcx") _,
            out("rax") ret,
        );
    }
    ret
}

/// The zeroing routine: 0, or -1 after a fault.
///
/// # Safety
/// As for [`safe_read`], and the handler is installed.
#[inline(always)]
unsafe fn raw_zero(dst: *mut u8, len: usize) -> i64 {
    let ret: i64;
    // SAFETY: as in `raw_copy`.
    unsafe {
        std::arch::asm!(
            "call {f}",
            f = sym __userbpf_safe_zero,
            inout("rdi") dst => _,
            inout("rsi") len => _,
            out("rcx") _,
            out("rax") ret,
        );
    }
    ret
}

/// True when `[addr, addr + len)` lies in user space (see [`USER_MIN`],
/// [`USER_END`]). An empty range is always fine.
#[inline]
pub fn is_user_range(addr: u64, len: u64) -> bool {
    len == 0 || (addr >= USER_MIN && addr.checked_add(len).is_some_and(|end| end <= USER_END))
}

/// Copies `len` bytes from `src` to `dst`, either of which may be any
/// value: a range outside user space fails without being touched, a fault
/// fails instead of crashing (the destination may then be partly written).
///
/// # Safety
/// Writing `len` bytes at `dst` must be acceptable to the caller: the copy
/// never faults, but it does modify whatever is mapped there. Memory that
/// Rust code owns must not be aliased by a live reference.
#[inline]
pub unsafe fn safe_read(dst: *mut u8, src: *const u8, len: usize) -> Result<(), Fault> {
    // SAFETY: forwarded from the caller.
    unsafe { copy(dst, src, len) }
}

/// Copies `len` bytes from `src` to the arbitrary user address `dst`
/// (`bpf_probe_write_user`); as [`safe_read`].
///
/// # Safety
/// As for [`safe_read`]: the caller accepts that `dst`, if mapped and
/// writable, is modified.
#[inline]
pub unsafe fn safe_write(dst: *mut u8, src: *const u8, len: usize) -> Result<(), Fault> {
    // SAFETY: forwarded from the caller.
    unsafe { copy(dst, src, len) }
}

#[inline]
unsafe fn copy(dst: *mut u8, src: *const u8, len: usize) -> Result<(), Fault> {
    let (d, s, n) = (dst as u64, src as u64, len as u64);
    if !is_user_range(s, n) {
        return Err(Fault::NotUser { addr: s, len: n });
    }
    if !is_user_range(d, n) {
        return Err(Fault::NotUser { addr: d, len: n });
    }
    if len == 0 {
        return Ok(());
    }
    ensure_installed();
    // SAFETY: the routine only touches `[src, src + len)` and
    // `[dst, dst + len)`; a fault there resumes at the recovery label
    // (the handler is installed), and the caller accepts the writes.
    match unsafe { raw_copy(dst, src, len) } {
        0 => Ok(()),
        _ => Err(Fault::Faulted {
            dst: d,
            src: s,
            len: n,
        }),
    }
}

/// Zeroes `len` bytes at `dst`; as [`safe_read`].
///
/// # Safety
/// As for [`safe_read`].
pub unsafe fn safe_zero(dst: *mut u8, len: usize) -> Result<(), Fault> {
    let (d, n) = (dst as u64, len as u64);
    if !is_user_range(d, n) {
        return Err(Fault::NotUser { addr: d, len: n });
    }
    if len == 0 {
        return Ok(());
    }
    ensure_installed();
    // SAFETY: as in `copy`.
    match unsafe { raw_zero(dst, len) } {
        0 => Ok(()),
        _ => Err(Fault::Faulted {
            dst: d,
            src: 0,
            len: n,
        }),
    }
}

/// Copies the NUL-terminated string at `src` into the `size` bytes at
/// `dst`, with the kernel's `strncpy_from_user_nofault` semantics (what
/// `bpf_probe_read_user_str` returns): the length copied including the NUL;
/// a longer string is truncated to `size - 1` bytes plus a NUL, and `size`
/// is returned; `size == 0` copies nothing and returns 0. Bytes after the
/// NUL are not written. Only the bytes up to the NUL are read, so a string
/// that ends just before an unmapped page is fine.
///
/// # Safety
/// As for [`safe_read`].
pub unsafe fn safe_read_str(dst: *mut u8, src: *const u8, size: usize) -> Result<usize, Fault> {
    let (d, s) = (dst as u64, src as u64);
    if size == 0 {
        return Ok(0);
    }
    if !is_user_range(d, size as u64) {
        return Err(Fault::NotUser {
            addr: d,
            len: size as u64,
        });
    }
    if !is_user_range(s, 1) {
        return Err(Fault::NotUser { addr: s, len: 1 });
    }
    // Never read at or past the end of user space.
    let max = (size as u64).min(USER_END - s) as usize;
    ensure_installed();
    // SAFETY: the routine reads `[src, src + max)` at most and writes the
    // same count at `dst` (within `size`); faults are recovered.
    let n = unsafe { raw_strcpy(dst, src, max) };
    let fault = Fault::Faulted {
        dst: d,
        src: s,
        len: max as u64,
    };
    if n < 0 {
        return Err(fault);
    }
    let n = n as usize;
    if n < max {
        return Ok(n);
    }
    // `max` bytes were copied; the last one was just written, so it is
    // readable.
    // SAFETY: n == max >= 1 and `dst + max - 1` was written by the routine.
    let last = unsafe { dst.add(max - 1).read() };
    if last == 0 {
        return Ok(max);
    }
    if max < size {
        // The string runs into the end of user space.
        return Err(fault);
    }
    // Truncated: the last byte becomes the NUL.
    // SAFETY: as above.
    unsafe { dst.add(size - 1).write(0) };
    Ok(size)
}

// ---- the signal handler ----

/// One signal we handle: the application's action we chain to.
struct Slot {
    sig: c_int,
    /// Never freed once published (the handler may be reading it); null
    /// before installation.
    app: AtomicPtr<libc::sigaction>,
}

static SEGV: Slot = Slot {
    sig: libc::SIGSEGV,
    app: AtomicPtr::new(ptr::null_mut()),
};
static BUS: Slot = Slot {
    sig: libc::SIGBUS,
    app: AtomicPtr::new(ptr::null_mut()),
};

/// `SIG_DFL` with an empty mask and no flags.
struct DflAction(libc::sigaction);
// SAFETY: a plain C struct of integers and a function pointer, never
// written after initialisation.
unsafe impl Sync for DflAction {}
// SAFETY: all-zero is a valid `struct sigaction` (SIG_DFL, empty mask).
static DFL_ACTION: DflAction = DflAction(unsafe { std::mem::zeroed() });

fn dfl_ptr() -> *mut libc::sigaction {
    &DFL_ACTION.0 as *const libc::sigaction as *mut libc::sigaction
}

/// `sigaction(2)` as the C library provides it.
pub type SigactionFn =
    unsafe extern "C" fn(c_int, *const libc::sigaction, *mut libc::sigaction) -> c_int;

/// The `sigaction` our own installs call, when an embedder interposes the
/// application's (the agent exports `sigaction`, which would otherwise
/// catch our calls too). Null: the C library's.
static RAW_SIGACTION: AtomicPtr<()> = AtomicPtr::new(ptr::null_mut());

/// Makes our own `sigaction` calls go to `f` (the C library's, found by the
/// embedder with `dlsym(RTLD_NEXT)`).
pub fn set_raw_sigaction(f: SigactionFn) {
    RAW_SIGACTION.store(f as *mut (), Ordering::Release);
}

/// `sigaction(2)`, bypassing an embedder's interposer.
///
/// # Safety
/// As `sigaction(2)`.
pub unsafe fn raw_sigaction(
    sig: c_int,
    act: *const libc::sigaction,
    oldact: *mut libc::sigaction,
) -> c_int {
    let f = RAW_SIGACTION.load(Ordering::Acquire);
    if f.is_null() {
        // SAFETY: forwarded.
        unsafe { libc::sigaction(sig, act, oldact) }
    } else {
        // SAFETY: set_raw_sigaction stored a SigactionFn; forwarded.
        unsafe { std::mem::transmute::<*mut (), SigactionFn>(f)(sig, act, oldact) }
    }
}

static INSTALL: Once = Once::new();
/// Set once installation is done: the fast path's one load.
static INSTALLED: AtomicBool = AtomicBool::new(false);
/// Serialises installation and [`app_sigaction`].
static LOCK: Mutex<()> = Mutex::new(());

/// Installs the handler now (idempotent, thread-safe). Copies do it
/// themselves on first use; an embedder may call this early, at a point
/// where it knows the application's handlers are set up.
pub fn install() {
    ensure_installed();
}

/// Whether the handler has been installed in this process.
pub fn is_installed() -> bool {
    INSTALLED.load(Ordering::Acquire)
}

#[inline(always)]
fn ensure_installed() {
    if !INSTALLED.load(Ordering::Acquire) {
        install_slow();
    }
}

#[cold]
fn install_slow() {
    INSTALL.call_once(|| {
        let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        for slot in [&SEGV, &BUS] {
            install_one(slot);
        }
        INSTALLED.store(true, Ordering::Release);
    });
}

fn install_one(slot: &Slot) {
    // SAFETY: all-zero is a valid sigaction.
    let mut app: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: sigaction with a null new action only reads the current one
    // into a valid out-pointer.
    if unsafe { raw_sigaction(slot.sig, ptr::null(), &mut app) } != 0 {
        return;
    }
    // Published before our handler can run, so the handler always finds it.
    slot.app
        .store(Box::into_raw(Box::new(app)), Ordering::Release);
    let ours = our_action(&app);
    // SAFETY: an all-zero sigaction is valid; `ours` is fully initialised.
    let mut seen: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers; installs our handler and reads what it replaced.
    if unsafe { raw_sigaction(slot.sig, &ours, &mut seen) } != 0 {
        return;
    }
    if seen.sa_sigaction != app.sa_sigaction || seen.sa_flags != app.sa_flags {
        // Another thread installed a handler between our two calls: chain
        // to that one instead.
        slot.app
            .store(Box::into_raw(Box::new(seen)), Ordering::Release);
        let ours = our_action(&seen);
        // SAFETY: valid pointers.
        unsafe { raw_sigaction(slot.sig, &ours, ptr::null_mut()) };
    }
}

/// Whether an action runs a function (not SIG_DFL, SIG_IGN, or ourselves).
fn is_app_handler(act: &libc::sigaction) -> bool {
    let h = act.sa_sigaction;
    h != libc::SIG_DFL && h != libc::SIG_IGN && h != on_fault as *const () as usize
}

/// Our action, mirroring the mask and delivery flags of the application's
/// handler (see the module documentation).
fn our_action(app: &libc::sigaction) -> libc::sigaction {
    // SAFETY: all-zero is a valid sigaction.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = on_fault as *const () as usize;
    if is_app_handler(app) {
        act.sa_mask = app.sa_mask;
        act.sa_flags = libc::SA_SIGINFO
            | (app.sa_flags & (libc::SA_ONSTACK | libc::SA_NODEFER | libc::SA_RESTART));
    } else {
        // SAFETY: `sa_mask` is a valid sigset_t.
        unsafe { libc::sigemptyset(&mut act.sa_mask) };
        act.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
    }
    act
}

/// `sigaction(2)` for the application while our handler is installed (the
/// agent's `sigaction`/`signal` interposers call it): for SIGSEGV and
/// SIGBUS, `oldact` receives the application's current action (what it
/// would have seen without us) and `act` becomes the action we chain to;
/// our handler stays installed, with the new action's mask and flags.
/// Other signals, and everything before installation, go straight to
/// `sigaction`. Returns 0, or -1 with errno set, as `sigaction`.
///
/// # Safety
/// As `sigaction(2)`: `act` and `oldact` are null or valid.
pub unsafe fn app_sigaction(
    sig: c_int,
    act: *const libc::sigaction,
    oldact: *mut libc::sigaction,
) -> c_int {
    let slot = match sig {
        libc::SIGSEGV => &SEGV,
        libc::SIGBUS => &BUS,
        // SAFETY: forwarded from the caller.
        _ => return unsafe { raw_sigaction(sig, act, oldact) },
    };
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let current = slot.app.load(Ordering::Acquire);
    if !is_installed() || current.is_null() {
        // SAFETY: forwarded from the caller.
        return unsafe { raw_sigaction(sig, act, oldact) };
    }
    if !oldact.is_null() {
        // SAFETY: `current` is a published, never-freed action; `oldact`
        // is valid for writes (caller).
        unsafe { *oldact = *current };
    }
    if !act.is_null() {
        // SAFETY: `act` is valid for reads (caller).
        let new = unsafe { *act };
        slot.app
            .store(Box::into_raw(Box::new(new)), Ordering::Release);
        let ours = our_action(&new);
        // SAFETY: valid pointers.
        if unsafe { raw_sigaction(sig, &ours, ptr::null_mut()) } != 0 {
            return -1;
        }
    }
    0
}

/// Whether a fault at this context happened in our routines.
///
/// # Safety
/// `info` and `uctx` are what the kernel passed to an SA_SIGINFO handler.
#[inline]
unsafe fn redirect_if_ours(info: *mut libc::siginfo_t, uctx: *mut c_void) -> bool {
    if info.is_null() || uctx.is_null() {
        return false;
    }
    // SAFETY: the kernel passes a valid siginfo_t.
    let code = unsafe { (*info).si_code };
    if code <= 0 {
        // Sent by a process (kill, tgkill, sigqueue): not a fault.
        return false;
    }
    let uc = uctx.cast::<libc::ucontext_t>();
    let rip_slot = libc::REG_RIP as usize;
    // SAFETY: the kernel passes a valid ucontext_t; REG_RIP < 23.
    let rip = unsafe { (*uc).uc_mcontext.gregs[rip_slot] } as usize;
    let begin = __userbpf_safe_begin as *const () as usize;
    let end = __userbpf_safe_end as *const () as usize;
    if rip < begin || rip >= end {
        return false;
    }
    // SAFETY: as above; sigreturn resumes at the recovery label.
    unsafe {
        (*uc).uc_mcontext.gregs[rip_slot] = __userbpf_safe_fault as *const () as usize as i64;
    }
    true
}

extern "C" fn on_fault(sig: c_int, info: *mut libc::siginfo_t, uctx: *mut c_void) {
    // SAFETY: called by the kernel as an SA_SIGINFO handler.
    if unsafe { redirect_if_ours(info, uctx) } {
        return;
    }
    // SAFETY: as above.
    unsafe { chain(sig, info, uctx) };
}

/// Passes a signal that is not ours to the application's action.
///
/// # Safety
/// Called from the signal handler with the kernel's arguments.
unsafe fn chain(sig: c_int, info: *mut libc::siginfo_t, uctx: *mut c_void) {
    let slot = match sig {
        libc::SIGSEGV => &SEGV,
        libc::SIGBUS => &BUS,
        _ => return,
    };
    let current = slot.app.load(Ordering::Acquire);
    let act: libc::sigaction = if current.is_null() {
        DFL_ACTION.0
    } else {
        // SAFETY: published actions are never freed.
        unsafe { *current }
    };
    let from_process = info.is_null() || {
        // SAFETY: a valid siginfo_t from the kernel.
        unsafe { (*info).si_code <= 0 }
    };
    if !is_app_handler(&act) {
        if act.sa_sigaction == libc::SIG_IGN && from_process {
            // Ignored, as the kernel would have done.
            return;
        }
        default_action(sig, from_process);
        return;
    }
    if act.sa_flags & libc::SA_RESETHAND != 0 && !current.is_null() {
        // The kernel resets a one-shot action before running it.
        let _ = slot
            .app
            .compare_exchange(current, dfl_ptr(), Ordering::AcqRel, Ordering::Acquire);
    }
    let handler = act.sa_sigaction;
    if act.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: the application installed this as an SA_SIGINFO handler.
        let f = unsafe {
            std::mem::transmute::<usize, extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void)>(
                handler,
            )
        };
        f(sig, info, uctx);
    } else {
        // SAFETY: the application installed this as a plain handler.
        let f = unsafe { std::mem::transmute::<usize, extern "C" fn(c_int)>(handler) };
        f(sig);
    }
}

/// The default action (terminate with a core dump) for a signal whose
/// application action is SIG_DFL (or SIG_IGN for a real fault).
fn default_action(sig: c_int, from_process: bool) {
    // SAFETY: errno is thread-local; saved and restored around our calls.
    let saved_errno = unsafe { *libc::__errno_location() };
    // SAFETY: installs SIG_DFL; async-signal-safe.
    unsafe { raw_sigaction(sig, &DFL_ACTION.0, ptr::null_mut()) };
    if from_process {
        // A returning handler would drop the signal: send it again. It is
        // delivered (with SIG_DFL) as soon as the handler returns and the
        // mask is restored, or at once under SA_NODEFER.
        // SAFETY: plain syscalls on our own process and thread.
        unsafe { libc::tgkill(libc::getpid(), libc::gettid(), sig) };
    }
    // A real fault: returning re-executes the faulting instruction, which
    // now gets the default action.
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = saved_errno };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert!(is_user_range(0, 0));
        assert!(!is_user_range(0, 1));
        assert!(!is_user_range(4095, 1));
        assert!(is_user_range(4096, 1));
        assert!(is_user_range(USER_END - 8, 8));
        assert!(!is_user_range(USER_END - 8, 9));
        assert!(!is_user_range(USER_END, 1));
        assert!(!is_user_range(u64::MAX, 2));
        assert!(!is_user_range(0xffff_8000_0000_0000, 8));
    }

    #[test]
    fn copies_and_faults() {
        let src = *b"0123456789abcdefghijklmnopqrstuvwxyz";
        for len in 0..src.len() {
            let mut dst = [0u8; 40];
            // SAFETY: both buffers are valid for `len` bytes.
            unsafe { safe_read(dst.as_mut_ptr(), src.as_ptr(), len) }.unwrap();
            assert_eq!(&dst[..len], &src[..len]);
            assert!(dst[len..].iter().all(|&b| b == 0));
        }
        let mut dst = [0u8; 8];
        // SAFETY: the source is refused before being touched.
        let e = unsafe { safe_read(dst.as_mut_ptr(), ptr::null(), 8) };
        assert_eq!(e, Err(Fault::NotUser { addr: 0, len: 8 }));
    }
}
