//! Syscall User Dispatch (SUD): the complete fallback. Every syscall a
//! thread makes outside the agent's allowed region ([`super::gate`]) —
//! JIT code, code the rewriter did not hook, signal restorers — becomes a
//! SIGSYS whose handler hands it to [`dispatch::on_syscall`].
//!
//! # Selector
//! One global selector byte for every thread (`SELECTOR`): BLOCK while
//! active, ALLOW after [`deactivate`]. `prctl` only reaches the calling
//! thread, so a global byte is what lets [`deactivate`] (and a later
//! [`activate`]) switch every thread at once. Threads keep their
//! registration after [`deactivate`] (the kernel then reads the byte on
//! each syscall: a slower syscall entry, no signal).
//!
//! # Threads
//! SUD is per thread and inherited neither by threads nor by forked
//! children. It is turned on:
//! - in the thread that calls [`activate`] (unless it is an agent thread);
//! - in threads that exist already: each gets a SIGSYS sent with
//!   `rt_tgsigqueueinfo` (`si_code` SI_QUEUE, our pid, a magic value),
//!   which our handler recognises. SIGSYS because our handler owns it
//!   anyway (no other signal is taken from the application). Limit: a
//!   thread sleeping in `poll`/`select`/`epoll_wait`/`nanosleep` and the
//!   like returns EINTR (the kernel restarts those only when no handler
//!   ran); a thread that blocks SIGSYS is reached when it unblocks it;
//!   a thread busy in a probe handler is skipped;
//! - in threads created later, by the interposed `pthread_create`
//!   (`crate::interpose`), which wraps the start routine. Threads created
//!   by the agent (the creator's hook `busy` word is set) are marked as
//!   agent threads instead and never get SUD. Threads made with a raw
//!   `clone` are not covered;
//! - in forked children: a `pthread_atfork` child handler, and, for a
//!   fork trapped here, the handler itself in the child.
//!
//! # The handler
//! For `si_code == SYS_USER_DISPATCH` it builds a [`PtRegs`] from the
//! signal context and calls [`dispatch::on_syscall`]; `Done` writes `rax`
//! and `rip` back, `Native` resumes the thread at a native stub of the
//! region (`syscall` on the original registers and stack, then a jump
//! back). Syscalls the agent makes itself (inside the dispatcher, while a
//! probe handler runs, or right after a `Native` outcome) are executed
//! without programs. Its own syscalls go through the region, so it never
//! traps itself; it is installed with SA_NODEFER (a trapped syscall of an
//! application signal handler that interrupted it must reach it again: a
//! blocked SIGSYS makes the kernel kill the thread), SA_RESTART and our
//! own `rt_sigreturn` restorer; it keeps `errno`.
//!
//! Returning from the handler restores the signal mask and the alternate
//! stack from the context: a trapped `rt_sigprocmask` or `sigaltstack`
//! therefore also updates the context, so that its effect survives.
//!
//! Any other SIGSYS (seccomp `SECCOMP_RET_TRAP`, one sent by a process)
//! goes to the application's action, with the kernel's semantics, except
//! that SIGSYS stays unblocked in it. The application's `sigaction` and
//! raw `rt_sigaction` for SIGSYS set that action and read it back (the
//! interposer and [`super::gate::syscall6`]).
//!
//! Masks: a SIGSYS that arrives blocked makes the kernel kill the thread,
//! so once SUD is armed SIGSYS is kept out of every mask: the existing
//! handlers' masks at activation, and from then on `sigaction`,
//! `pthread_sigmask`/`sigprocmask` (the interposers) and the raw
//! `rt_sigprocmask`, `rt_sigaction`, `rt_sigsuspend`, `ppoll`, `pselect6`,
//! `epoll_pwait(2)` the dispatcher makes ([`super::gate::syscall6`]). An
//! application that blocks SIGSYS sees it unblocked.
//!
//! Sites: the trapped syscall instructions are recorded for the rewriter
//! ([`take_trapped_sites`]).
//!
//! # Limits
//! - A trapped syscall costs a signal delivery and return (~2.6 µs here)
//!   and a signal frame on the thread's stack (no SA_ONSTACK, as for the
//!   hook engine's SIGTRAP): runtimes that make syscalls on tiny stacks
//!   (Go's goroutine stacks, its own signal rules) are not supported under
//!   SUD: run them with `USERBPF_SYSCALL_DISPATCH=off`.
//! - `int 0x80` from 64-bit code is refused (ENOSYS) under SUD.
//! - An application that uses SUD itself (Wine) loses it to ours, or we
//!   to it.
//! - A signal that interrupts a dispatched syscall runs its handler on top
//!   of our frame: the handler's context is the gateway's, not the
//!   application's instruction (profilers that sample `rip` see the
//!   region).
//!
//! `USERBPF_SYSCALL_DISPATCH=off` (or `0`) disables SUD ([`try_activate`]
//! refuses).

use core::arch::{asm, global_asm};
use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicU8, Ordering};
use std::sync::{Mutex, Once};

use super::dispatch::{self, Outcome};
use super::gate::{self, raw6, SIGSYS_BIT};
use crate::hook::PtRegs;

const PR_SET_SYSCALL_USER_DISPATCH: u64 = 59;
const PR_SYS_DISPATCH_OFF: u64 = 0;
const PR_SYS_DISPATCH_ON: u64 = 1;
const ALLOW: u8 = 0;
const BLOCK: u8 = 1;
/// `si_code` of a SUD SIGSYS (`<asm-generic/siginfo.h>`).
pub const SYS_USER_DISPATCH: c_int = 2;
/// `si_code` of a seccomp `RET_TRAP` SIGSYS.
pub const SYS_SECCOMP: c_int = 1;
const SA_RESTORER: u64 = 0x0400_0000;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// `si_value` of our "turn SUD on" request.
const ENABLE_MAGIC: u64 = 0x7573_6572_6270_6673;

/// Why SUD could not be turned on.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SudError {
    #[error("syscall user dispatch disabled (USERBPF_SYSCALL_DISPATCH=off)")]
    Disabled,
    #[error("syscall user dispatch unsupported here (prctl errno {0}; Linux >= 5.11 needed)")]
    Unsupported(i32),
    #[error(transparent)]
    Gate(#[from] gate::GateError),
    #[error("installing the SIGSYS handler failed (errno {0})")]
    Handler(i32),
    #[error("syscall user dispatch is not active")]
    NotActive,
    #[error("agent threads never run under syscall user dispatch")]
    AgentThread,
}

/// The selector every thread is registered with.
static SELECTOR: AtomicU8 = AtomicU8::new(ALLOW);
/// Programs want SUD (new threads and forks turn it on).
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// Our handler is installed.
static INSTALLED: AtomicBool = AtomicBool::new(false);
static SIGSYS_COUNT: AtomicU64 = AtomicU64::new(0);
/// The application's SIGSYS action (null: SIG_DFL). Never freed once
/// published: a handler may be reading it.
static PREVIOUS: AtomicPtr<libc::sigaction> = AtomicPtr::new(core::ptr::null_mut());
/// Serialises activate/deactivate.
static CONTROL: Mutex<()> = Mutex::new(());
static ATFORK: Once = Once::new();

// ---------------------------------------------------------------------------
// Per-thread state, in initial-exec TLS (reached from the signal handler
// without `__tls_get_addr`, which may allocate for a dlopened agent).

#[repr(C)]
struct SudTls {
    /// prctl(ON) was done on this thread (as far as we know).
    registered: u8,
    /// An agent thread: never under SUD.
    agent: u8,
    /// Our handler is running its own code (not the dispatcher).
    in_handler: u8,
    _pad: [u8; 5],
}

global_asm!(
    ".pushsection .tbss,\"awT\",@nobits",
    ".p2align 3",
    ".globl userbpf_sud_tls",
    ".hidden userbpf_sud_tls",
    ".type userbpf_sud_tls,@object",
    ".size userbpf_sud_tls, 8",
    "userbpf_sud_tls:",
    ".zero 8",
    ".popsection",
);

const _: () = assert!(core::mem::size_of::<SudTls>() == 8);

#[inline(always)]
fn tls() -> *mut SudTls {
    let tp: usize;
    let off: isize;
    // SAFETY: fs:0 is the thread pointer (glibc and musl); the GOT entry
    // holds the block's offset from it (initial-exec model).
    unsafe {
        asm!("mov {}, qword ptr fs:[0]", out(reg) tp, options(nostack, readonly, preserves_flags));
        asm!(
            "mov {}, qword ptr [rip + userbpf_sud_tls@GOTTPOFF]",
            out(reg) off,
            options(nostack, readonly, preserves_flags)
        );
    }
    tp.wrapping_add_signed(off) as *mut SudTls
}

/// The hook engine's `busy` word of this thread: set while the agent works
/// or a probe handler runs, and for good in the agent's threads.
fn busy() -> bool {
    // SAFETY: the calling thread's own state block.
    unsafe { (*crate::hook::thread::current()).busy != 0 }
}

// ---------------------------------------------------------------------------
// Control.

fn disabled_by_env() -> bool {
    std::env::var_os("USERBPF_SYSCALL_DISPATCH").is_some_and(|v| v == "off" || v == "0")
}

/// [`try_activate`], for callers with nothing to do about a failure (the
/// rewriter still covers what it hooked).
pub fn activate() {
    let _ = try_activate();
}

/// Turns SUD on: this thread (unless an agent thread), the threads that
/// exist, threads created and processes forked from now on. Idempotent.
pub fn try_activate() -> Result<(), SudError> {
    if disabled_by_env() {
        return Err(SudError::Disabled);
    }
    let _g = CONTROL.lock().unwrap_or_else(|e| e.into_inner());
    if ACTIVE.load(Ordering::Acquire) {
        return Ok(());
    }
    // The handler's argument reads must not install it from a signal.
    userbpf_runtime::helpers::safe_mem::install();
    gate::init()?;
    // The kernel knows SUD (OFF is harmless: this thread is re-enabled
    // below if it should be).
    // SAFETY: prctl with plain integers.
    let r = unsafe {
        raw6(
            libc::SYS_prctl as u64,
            [
                PR_SET_SYSCALL_USER_DISPATCH,
                PR_SYS_DISPATCH_OFF,
                0,
                0,
                0,
                0,
            ],
        )
    };
    if r < 0 {
        return Err(SudError::Unsupported(-r as i32));
    }
    // SAFETY: the calling thread's own block.
    unsafe { (*tls()).registered = 0 };
    install_handler()?;
    ATFORK.call_once(|| {
        // SAFETY: registers a plain extern "C" function.
        unsafe { libc::pthread_atfork(None, None, Some(after_fork_child)) };
    });
    gate::arm();
    unblock_sigsys_in_handlers();
    ACTIVE.store(true, Ordering::Release);
    reach_other_threads();
    // SAFETY: the calling thread's own block.
    if unsafe { (*tls()).agent } == 0 {
        enable_here()?;
    }
    SELECTOR.store(BLOCK, Ordering::Release);
    Ok(())
}

/// Turns SUD off in every thread at once (the selector); threads stay
/// registered, and [`activate`] turns them on again.
pub fn deactivate() {
    let _g = CONTROL.lock().unwrap_or_else(|e| e.into_inner());
    ACTIVE.store(false, Ordering::Release);
    SELECTOR.store(ALLOW, Ordering::Release);
}

/// Is SUD wanted (between [`activate`] and [`deactivate`])?
pub fn is_active() -> bool {
    ACTIVE.load(Ordering::Acquire)
}

/// Turns SUD on in the calling thread.
pub fn enable_current_thread() -> Result<(), SudError> {
    if !is_active() {
        return Err(SudError::NotActive);
    }
    // SAFETY: the calling thread's own block.
    if unsafe { (*tls()).agent } != 0 {
        return Err(SudError::AgentThread);
    }
    enable_here()
}

/// Are this thread's syscalls trapped now?
pub fn active_here() -> bool {
    // SAFETY: the calling thread's own block.
    let registered = unsafe { (*tls()).registered } != 0;
    registered && SELECTOR.load(Ordering::Acquire) == BLOCK
}

/// SIGSYS signals taken for SUD so far (every thread).
pub fn sigsys_count() -> u64 {
    SIGSYS_COUNT.load(Ordering::Relaxed)
}

/// Addresses of syscall instructions trapped since the last
/// [`take_trapped_sites`] (0: empty slot): code the rewriter has not hooked,
/// for it to hook later. Lock-free; a full table drops new sites.
const SITES_LEN: usize = 256;
static SITES: [AtomicU64; SITES_LEN] = [const { AtomicU64::new(0) }; SITES_LEN];

/// Records the syscall instruction at `addr` (async-signal-safe).
fn note_site(addr: u64) {
    let start = (addr.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as usize % SITES_LEN;
    for i in 0..SITES_LEN {
        let slot = &SITES[(start + i) % SITES_LEN];
        match slot.compare_exchange(0, addr, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return,
            Err(e) if e == addr => return,
            Err(_) => {}
        }
    }
}

/// The syscall instructions (their addresses) trapped by SUD since the
/// last call, each once: where the rewriter could hook next.
pub fn take_trapped_sites() -> Vec<usize> {
    SITES
        .iter()
        .filter_map(|s| match s.swap(0, Ordering::AcqRel) {
            0 => None,
            a => Some(a as usize),
        })
        .collect()
}

/// Marks the calling thread as the agent's: SUD off here, for good.
pub fn mark_agent_thread() {
    let t = tls();
    // SAFETY: the calling thread's own block.
    unsafe {
        (*t).agent = 1;
        if (*t).registered != 0 {
            raw6(
                libc::SYS_prctl as u64,
                [
                    PR_SET_SYSCALL_USER_DISPATCH,
                    PR_SYS_DISPATCH_OFF,
                    0,
                    0,
                    0,
                    0,
                ],
            );
            (*t).registered = 0;
        }
    }
}

/// Is the calling thread one of the agent's?
pub fn is_agent_thread() -> bool {
    // SAFETY: the calling thread's own block.
    unsafe { (*tls()).agent != 0 }
}

/// prctl(ON) for this thread, SIGSYS unblocked. Async-signal-safe.
fn enable_here() -> Result<(), SudError> {
    let Some((start, len)) = gate::region() else {
        return Err(SudError::NotActive);
    };
    let unblock = SIGSYS_BIT;
    // SAFETY: plain syscalls through the region, with pointers to locals
    // and to the static selector.
    let r = unsafe {
        raw6(
            libc::SYS_rt_sigprocmask as u64,
            [
                libc::SIG_UNBLOCK as u64,
                &unblock as *const u64 as u64,
                0,
                8,
                0,
                0,
            ],
        );
        raw6(
            libc::SYS_prctl as u64,
            [
                PR_SET_SYSCALL_USER_DISPATCH,
                PR_SYS_DISPATCH_ON,
                start as u64,
                len as u64,
                SELECTOR.as_ptr() as u64,
                0,
            ],
        )
    };
    if r < 0 {
        return Err(SudError::Unsupported(-r as i32));
    }
    // SAFETY: the calling thread's own block.
    unsafe { (*tls()).registered = 1 };
    Ok(())
}

extern "C" fn after_fork_child() {
    // SAFETY: the calling thread's own block; the kernel dropped SUD.
    unsafe { (*tls()).registered = 0 };
    // SAFETY: as above.
    if is_active() && unsafe { (*tls()).agent } == 0 {
        let _ = enable_here();
    }
}

/// Takes SIGSYS out of the masks of the handlers installed before SUD was
/// armed (a handler that ran with SIGSYS blocked would get its thread
/// killed at its first trapped syscall). Later ones lose it on the way in
/// (the interposer, [`gate::syscall6`]).
fn unblock_sigsys_in_handlers() {
    for sig in 1..=64u64 {
        if sig == libc::SIGSYS as u64 || sig == libc::SIGKILL as u64 || sig == libc::SIGSTOP as u64
        {
            continue;
        }
        // struct k_sigaction { handler, flags, restorer, mask }
        let mut k = [0u64; 4];
        // SAFETY: reads the action into a local.
        let r = unsafe {
            raw6(
                libc::SYS_rt_sigaction as u64,
                [sig, 0, k.as_mut_ptr() as u64, 8, 0, 0],
            )
        };
        let is_fn = k[0] != libc::SIG_DFL as u64 && k[0] != libc::SIG_IGN as u64;
        if r == 0 && is_fn && k[3] & SIGSYS_BIT != 0 {
            k[3] &= !SIGSYS_BIT;
            // SAFETY: the same action back, one bit less in its mask.
            unsafe {
                raw6(
                    libc::SYS_rt_sigaction as u64,
                    [sig, k.as_ptr() as u64, 0, 8, 0, 0],
                )
            };
        }
    }
}

/// Sends our "turn SUD on" SIGSYS to every other thread of the process.
fn reach_other_threads() {
    // SAFETY: plain syscalls.
    let (pid, me) = unsafe { (libc::getpid(), libc::gettid()) };
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return;
    };
    for e in dir.flatten() {
        let Some(tid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if tid == me {
            continue;
        }
        // siginfo: signo@0, code@8, pid@16, uid@20, value@24.
        let mut info = [0u8; 128];
        info[0..4].copy_from_slice(&libc::SIGSYS.to_ne_bytes());
        info[8..12].copy_from_slice(&libc::SI_QUEUE.to_ne_bytes());
        info[16..20].copy_from_slice(&pid.to_ne_bytes());
        // SAFETY: getuid has no preconditions.
        info[20..24].copy_from_slice(&unsafe { libc::getuid() }.to_ne_bytes());
        info[24..32].copy_from_slice(&ENABLE_MAGIC.to_ne_bytes());
        // SAFETY: a signal to a thread of our own process, with a valid
        // siginfo buffer (ESRCH for a thread that exited meanwhile).
        unsafe {
            raw6(
                libc::SYS_rt_tgsigqueueinfo as u64,
                [
                    pid as u64,
                    tid as u64,
                    libc::SIGSYS as u64,
                    info.as_ptr() as u64,
                    0,
                    0,
                ],
            )
        };
    }
}

// ---------------------------------------------------------------------------
// The handler and the application's SIGSYS action.

fn install_handler() -> Result<(), SudError> {
    if INSTALLED.load(Ordering::Acquire) {
        return Ok(());
    }
    // SAFETY: all-zero is a valid sigaction.
    let mut cur: libc::sigaction = unsafe { core::mem::zeroed() };
    // SAFETY: queries into a local.
    unsafe {
        userbpf_runtime::helpers::safe_mem::raw_sigaction(libc::SIGSYS, core::ptr::null(), &mut cur)
    };
    if cur.sa_sigaction != on_sigsys as *const () as usize {
        PREVIOUS.store(Box::into_raw(Box::new(cur)), Ordering::Release);
    }
    // struct k_sigaction { handler, flags, restorer, mask }: our own
    // restorer, which the C library's sigaction would replace.
    let k: [u64; 4] = [
        on_sigsys as *const () as u64,
        (libc::SA_SIGINFO | libc::SA_NODEFER | libc::SA_RESTART) as u64 | SA_RESTORER,
        gate::restorer() as u64,
        0,
    ];
    // SAFETY: installs a handler that only touches async-signal-safe state.
    let r = unsafe {
        raw6(
            libc::SYS_rt_sigaction as u64,
            [libc::SIGSYS as u64, k.as_ptr() as u64, 0, 8, 0, 0],
        )
    };
    if r < 0 {
        return Err(SudError::Handler(-r as i32));
    }
    INSTALLED.store(true, Ordering::Release);
    Ok(())
}

/// SIG_DFL with an empty mask.
fn dfl() -> libc::sigaction {
    // SAFETY: all-zero is SIG_DFL with an empty mask.
    unsafe { core::mem::zeroed() }
}

/// `sigaction(SIGSYS, act, oldact)` for the application (the interposer):
/// once our handler is installed, `act` becomes the action we chain to
/// and `oldact` receives the application's previous one.
///
/// # Safety
/// As `sigaction(2)`.
pub unsafe fn app_sigaction_sys(
    act: *const libc::sigaction,
    oldact: *mut libc::sigaction,
) -> c_int {
    if !INSTALLED.load(Ordering::Acquire) {
        // SAFETY: forwarded from the caller.
        return unsafe {
            userbpf_runtime::helpers::safe_mem::raw_sigaction(libc::SIGSYS, act, oldact)
        };
    }
    let old = if act.is_null() {
        PREVIOUS.load(Ordering::Acquire)
    } else {
        // SAFETY: valid for reads (caller). The old record is leaked.
        PREVIOUS.swap(Box::into_raw(Box::new(unsafe { *act })), Ordering::AcqRel)
    };
    if !oldact.is_null() {
        // SAFETY: published records are never freed; `oldact` is valid for
        // writes (caller).
        unsafe { *oldact = old.as_ref().copied().unwrap_or_else(dfl) };
    }
    0
}

/// The raw `rt_sigaction(SIGSYS, act, oldact, 8)` for the application
/// (kernel `struct k_sigaction` at `act`/`oldact`), from the dispatcher's
/// real call: None when our handler is not installed (make the call).
pub(crate) fn app_rt_sigaction_sys(act: u64, oldact: u64) -> Option<i64> {
    if !INSTALLED.load(Ordering::Acquire) {
        return None;
    }
    let new = if act == 0 {
        None
    } else {
        let Some(b) = gate::read_app::<32>(act) else {
            return Some(-(libc::EFAULT as i64));
        };
        let w = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
        let mut sa = dfl();
        sa.sa_sigaction = w(0) as usize;
        sa.sa_flags = w(1) as c_int;
        // SAFETY: a function pointer or null, as the kernel takes it.
        sa.sa_restorer =
            unsafe { core::mem::transmute::<usize, Option<extern "C" fn()>>(w(2) as usize) };
        // SAFETY: the first word of a sigset_t is the kernel's mask.
        unsafe { *(&mut sa.sa_mask as *mut libc::sigset_t as *mut u64) = w(3) };
        Some(sa)
    };
    let old = match new {
        None => PREVIOUS.load(Ordering::Acquire),
        Some(sa) => PREVIOUS.swap(Box::into_raw(Box::new(sa)), Ordering::AcqRel),
    };
    if oldact != 0 {
        // SAFETY: published records are never freed.
        let o = unsafe { old.as_ref() }.copied().unwrap_or_else(dfl);
        // SAFETY: the first word of a sigset_t is the kernel's mask.
        let mask = unsafe { *(&o.sa_mask as *const libc::sigset_t as *const u64) };
        let k: [u64; 4] = [
            o.sa_sigaction as u64,
            o.sa_flags as u32 as u64,
            o.sa_restorer.map_or(0, |f| f as usize as u64),
            mask,
        ];
        // SAFETY: a fault-recovering copy to the application's buffer.
        let r = unsafe {
            userbpf_runtime::helpers::safe_mem::safe_write(oldact as *mut u8, k.as_ptr().cast(), 32)
        };
        if r.is_err() {
            return Some(-(libc::EFAULT as i64));
        }
    }
    Some(0)
}

/// Our SIGSYS handler.
extern "C" fn on_sigsys(sig: c_int, info: *mut libc::siginfo_t, uctx: *mut c_void) {
    if info.is_null() || uctx.is_null() {
        return;
    }
    // SAFETY: the kernel passes a valid siginfo_t.
    let code = unsafe { (*info).si_code };
    if code == SYS_USER_DISPATCH {
        let errno = crate::hook::thread::errno();
        // SAFETY: this thread's errno.
        let saved = unsafe { *errno };
        // SAFETY: a SUD SIGSYS with the kernel's arguments.
        unsafe { on_trap(info, uctx.cast()) };
        // SAFETY: as above.
        unsafe { *errno = saved };
        return;
    }
    // SAFETY: the kernel's siginfo; the rt fields are at 16 (pid), 24 (value).
    let ours = code == libc::SI_QUEUE
        && unsafe {
            let p = info as *const u8;
            let pid = p.add(16).cast::<i32>().read_unaligned();
            let value = p.add(24).cast::<u64>().read_unaligned();
            value == ENABLE_MAGIC && pid as i64 == raw6(libc::SYS_getpid as u64, [0; 6])
        };
    if ours {
        if is_active() && !busy() && !is_agent_thread() && enable_here().is_ok() {
            let uc = uctx.cast::<libc::ucontext_t>();
            // SAFETY: the kernel's context: the mask restored on return
            // must not block SIGSYS either.
            unsafe { *(&mut (*uc).uc_sigmask as *mut libc::sigset_t as *mut u64) &= !SIGSYS_BIT };
        }
        return;
    }
    // SAFETY: the kernel's arguments.
    unsafe { chain(sig, info, uctx) };
}

fn greg(uc: *mut libc::ucontext_t, r: c_int) -> u64 {
    // SAFETY: the kernel's context; r < 23.
    unsafe { (*uc).uc_mcontext.gregs[r as usize] as u64 }
}

fn set_greg(uc: *mut libc::ucontext_t, r: c_int, v: u64) {
    // SAFETY: as above.
    unsafe { (*uc).uc_mcontext.gregs[r as usize] = v as i64 };
}

fn args_of(uc: *mut libc::ucontext_t) -> [u64; 6] {
    [
        greg(uc, libc::REG_RDI),
        greg(uc, libc::REG_RSI),
        greg(uc, libc::REG_RDX),
        greg(uc, libc::REG_R10),
        greg(uc, libc::REG_R8),
        greg(uc, libc::REG_R9),
    ]
}

/// A SUD trap.
///
/// # Safety
/// From the handler, with the kernel's arguments.
unsafe fn on_trap(info: *mut libc::siginfo_t, uc: *mut libc::ucontext_t) {
    SIGSYS_COUNT.fetch_add(1, Ordering::Relaxed);
    // SAFETY: the kernel's siginfo: _sigsys { call_addr@16, syscall@24, arch@28 }.
    let (nr, arch) = unsafe {
        let p = info as *const u8;
        (
            p.add(24).cast::<i32>().read_unaligned() as u32 as u64,
            p.add(28).cast::<u32>().read_unaligned(),
        )
    };
    let after = greg(uc, libc::REG_RIP) as usize;
    if arch != AUDIT_ARCH_X86_64 {
        // int 0x80 from 64-bit code: another syscall table.
        set_greg(uc, libc::REG_RAX, -(libc::ENOSYS as i64) as u64);
        return;
    }
    let t = tls();
    let pending = dispatch::take_native_pending();
    // SAFETY: the calling thread's own block.
    let in_handler = unsafe { (*t).in_handler } != 0;
    if pending || in_handler || dispatch::in_dispatch() || busy() {
        // The agent's own call, or the native run of a call the
        // dispatcher has seen: no programs.
        run_here(nr, uc, after, false);
        return;
    }
    // The instruction is `syscall` (0f 05), 2 bytes before the resume.
    note_site((after as u64).wrapping_sub(2));
    let mut regs = PtRegs {
        r15: greg(uc, libc::REG_R15),
        r14: greg(uc, libc::REG_R14),
        r13: greg(uc, libc::REG_R13),
        r12: greg(uc, libc::REG_R12),
        bp: greg(uc, libc::REG_RBP),
        bx: greg(uc, libc::REG_RBX),
        r11: greg(uc, libc::REG_R11),
        r10: greg(uc, libc::REG_R10),
        r9: greg(uc, libc::REG_R9),
        r8: greg(uc, libc::REG_R8),
        ax: nr,
        cx: greg(uc, libc::REG_RCX),
        dx: greg(uc, libc::REG_RDX),
        si: greg(uc, libc::REG_RSI),
        di: greg(uc, libc::REG_RDI),
        orig_ax: nr,
        ip: after as u64,
        cs: 0x33,
        flags: greg(uc, libc::REG_EFL),
        sp: greg(uc, libc::REG_RSP),
        ss: 0x2b,
    };
    let args = args_of(uc);
    // SAFETY: the live frame of the trapped syscall (the contract).
    let outcome = unsafe { dispatch::on_syscall(&mut regs, after) };
    // SAFETY: the calling thread's own block.
    unsafe { (*t).in_handler = 1 };
    match outcome {
        Outcome::Done => {
            set_greg(uc, libc::REG_RAX, regs.ax);
            set_greg(uc, libc::REG_RIP, regs.ip);
            // SAFETY: the kernel's context.
            unsafe { after_call(nr, &args, regs.ax as i64, uc, true) };
        }
        Outcome::Native => {
            dispatch::take_native_pending();
            to_native(nr, uc, after);
        }
    }
    // SAFETY: as above.
    unsafe { (*t).in_handler = 0 };
}

/// Executes the trapped call here, without programs.
fn run_here(nr: u64, uc: *mut libc::ucontext_t, after: usize, programs: bool) {
    let args = args_of(uc);
    if dispatch::must_run_natively(nr, &args) {
        to_native(nr, uc, after);
        return;
    }
    // SAFETY: the application's (or the agent's) own call and arguments.
    let r = unsafe { gate::syscall6(nr, args) };
    set_greg(uc, libc::REG_RAX, r as u64);
    // SAFETY: the kernel's context.
    unsafe { after_call(nr, &args, r, uc, programs) };
}

/// Resumes the thread at a native run of its syscall instruction.
fn to_native(nr: u64, uc: *mut libc::ucontext_t, after: usize) {
    set_greg(uc, libc::REG_RAX, nr);
    if nr == libc::SYS_rt_sigreturn as u64 {
        set_greg(uc, libc::REG_RIP, gate::sigreturn_stub() as u64);
        return;
    }
    match gate::native_stub(after) {
        Some(stub) => set_greg(uc, libc::REG_RIP, stub as u64),
        // No room for another stub: the call fails.
        None => set_greg(uc, libc::REG_RAX, -(libc::ENOMEM as i64) as u64),
    }
}

/// What returning from the handler would undo, carried into the context.
///
/// # Safety
/// `uc` is the handler's context.
unsafe fn after_call(nr: u64, a: &[u64; 6], r: i64, uc: *mut libc::ucontext_t, programs: bool) {
    if r < 0 {
        return;
    }
    match nr as i64 {
        libc::SYS_rt_sigprocmask => {
            let mut cur = 0u64;
            // SAFETY: reads this thread's mask into a local.
            let q = unsafe {
                raw6(
                    libc::SYS_rt_sigprocmask as u64,
                    [
                        libc::SIG_BLOCK as u64,
                        0,
                        &mut cur as *mut u64 as u64,
                        8,
                        0,
                        0,
                    ],
                )
            };
            if q == 0 {
                // SAFETY: the first word of uc_sigmask is the kernel's mask.
                unsafe {
                    *(&mut (*uc).uc_sigmask as *mut libc::sigset_t as *mut u64) = cur & !SIGSYS_BIT
                };
            }
        }
        libc::SYS_sigaltstack if a[0] != 0 => {
            // SAFETY: all-zero is a valid stack_t.
            let mut ss: libc::stack_t = unsafe { core::mem::zeroed() };
            // SAFETY: reads the current alternate stack into a local.
            let q = unsafe {
                raw6(
                    libc::SYS_sigaltstack as u64,
                    [0, &mut ss as *mut libc::stack_t as u64, 0, 0, 0, 0],
                )
            };
            if q == 0 {
                // SAFETY: the kernel's context.
                unsafe { (*uc).uc_stack = ss };
            }
        }
        // The child of a fork made here: SUD did not follow it.
        libc::SYS_fork | libc::SYS_clone if r == 0 && programs => {
            // SAFETY: the calling thread's own block.
            unsafe { (*tls()).registered = 0 };
            if is_active() && !is_agent_thread() {
                let _ = enable_here();
            }
        }
        _ => {}
    }
}

/// Runs the application's action for a SIGSYS that is not ours, as the
/// kernel would have, SIGSYS left unblocked.
///
/// # Safety
/// From the handler, with the kernel's arguments.
unsafe fn chain(sig: c_int, info: *mut libc::siginfo_t, uctx: *mut c_void) {
    let prev = PREVIOUS.load(Ordering::Acquire);
    // SAFETY: published records are never freed.
    let act = unsafe { prev.as_ref() }.copied().unwrap_or_else(dfl);
    // SAFETY: a valid siginfo_t.
    let from_process = unsafe { (*info).si_code } <= 0;
    match act.sa_sigaction {
        libc::SIG_IGN if from_process => {}
        libc::SIG_DFL | libc::SIG_IGN => default_action(),
        h => {
            if act.sa_flags & libc::SA_RESETHAND != 0 {
                let _ = PREVIOUS.compare_exchange(
                    prev,
                    core::ptr::null_mut(),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
            }
            // SAFETY: the first word of a sigset_t is the kernel's mask.
            let mask =
                unsafe { *(&act.sa_mask as *const libc::sigset_t as *const u64) } & !SIGSYS_BIT;
            let mut old = 0u64;
            // SAFETY: mask syscalls on locals; the handler is the
            // application's, called with what it registered for.
            unsafe {
                raw6(
                    libc::SYS_rt_sigprocmask as u64,
                    [
                        libc::SIG_BLOCK as u64,
                        &mask as *const u64 as u64,
                        &mut old as *mut u64 as u64,
                        8,
                        0,
                        0,
                    ],
                );
                if act.sa_flags & libc::SA_SIGINFO != 0 {
                    let f: extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void) =
                        core::mem::transmute(h);
                    f(sig, info, uctx);
                } else {
                    let f: extern "C" fn(c_int) = core::mem::transmute(h);
                    f(sig);
                }
                raw6(
                    libc::SYS_rt_sigprocmask as u64,
                    [
                        libc::SIG_SETMASK as u64,
                        &old as *const u64 as u64,
                        0,
                        8,
                        0,
                        0,
                    ],
                );
            }
        }
    }
}

/// SIGSYS's default action (a core dump): SIG_DFL, then the signal again.
fn default_action() {
    let k: [u64; 4] = [0; 4];
    // SAFETY: plain syscalls on our own process and thread.
    unsafe {
        raw6(
            libc::SYS_rt_sigaction as u64,
            [libc::SIGSYS as u64, k.as_ptr() as u64, 0, 8, 0, 0],
        );
        INSTALLED.store(false, Ordering::Release);
        let pid = raw6(libc::SYS_getpid as u64, [0; 6]) as u64;
        let tid = raw6(libc::SYS_gettid as u64, [0; 6]) as u64;
        raw6(
            libc::SYS_tgkill as u64,
            [pid, tid, libc::SIGSYS as u64, 0, 0, 0],
        );
    }
}
