//! Cross-modifying code: writing a site's jump while other threads run it,
//! and putting the original bytes back.
//!
//! The protocol is the kernel's `text_poke_bp`: an `int3` on the first byte,
//! the other bytes, then the first byte, with every core serialised in
//! between by `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE)`. A
//! thread that meets a transient `int3` gets SIGTRAP; our handler moves it
//! to where the jump would have taken it (or, during removal, to the
//! relocated copy of the original instruction). The `int3` bytes the jump's
//! displacement leaves at displaced instruction starts (see `trampoline`)
//! are handled the same way, so the table of trap addresses is permanent:
//! a trap delivered late, after the patch completed, still finds its way.
//!
//! The code page is made writable (and kept executable) only around each
//! write. Shared mappings are refused: writing to one would change the file.

use super::error::HookError;
use super::maps;
use core::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;

// ---------------------------------------------------------------------------
// Serialising the other cores.

const MEMBARRIER_CMD_QUERY: libc::c_int = 0;
const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_int = 1 << 3;
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_int = 1 << 4;
const MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE: libc::c_int = 1 << 5;
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE: libc::c_int = 1 << 6;

fn membarrier(cmd: libc::c_int) -> libc::c_long {
    // SAFETY: membarrier takes no pointers.
    unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0, 0) }
}

/// The membarrier command this process registered for (0: none works;
/// then the `mprotect` around each write, whose TLB shootdown interrupts
/// every core running this mm, is the only serialisation).
fn sync_cmd() -> libc::c_int {
    static CMD: OnceLock<libc::c_int> = OnceLock::new();
    *CMD.get_or_init(|| {
        let have = membarrier(MEMBARRIER_CMD_QUERY);
        if have < 0 {
            return 0;
        }
        let have = have as libc::c_int;
        for (cmd, reg) in [
            (
                MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE,
                MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE,
            ),
            (
                MEMBARRIER_CMD_PRIVATE_EXPEDITED,
                MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED,
            ),
        ] {
            if have & cmd != 0 && membarrier(reg) == 0 {
                return cmd;
            }
        }
        0
    })
}

/// Makes every thread of the process execute a core-serialising
/// instruction before it runs user code again.
pub(crate) fn sync_cores() {
    let cmd = sync_cmd();
    if cmd != 0 {
        membarrier(cmd);
    }
}

// ---------------------------------------------------------------------------
// The trap table and the SIGTRAP handler.

const TRAP_CAPACITY: usize = 1 << 16;

struct Trap {
    addr: AtomicUsize,
    target: AtomicUsize,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY_TRAP: Trap = Trap {
    addr: AtomicUsize::new(0),
    target: AtomicUsize::new(0),
};
static TRAPS: [Trap; TRAP_CAPACITY] = [EMPTY_TRAP; TRAP_CAPACITY];
static TRAP_LEN: AtomicUsize = AtomicUsize::new(0);

/// Sends threads that trap on the `int3` at `addr` to `target`; a later
/// call for the same address wins. Control path only (under the hook
/// lock).
pub(crate) fn set_trap(addr: usize, target: usize) -> Result<(), HookError> {
    let n = TRAP_LEN.load(Ordering::Acquire);
    if let Some(t) = TRAPS[..n]
        .iter()
        .rev()
        .find(|t| t.addr.load(Ordering::Relaxed) == addr)
    {
        t.target.store(target, Ordering::Release);
        return Ok(());
    }
    let t = TRAPS.get(n).ok_or(HookError::Os {
        op: "trap table",
        errno: libc::ENOSPC,
    })?;
    t.target.store(target, Ordering::Relaxed);
    t.addr.store(addr, Ordering::Relaxed);
    TRAP_LEN.store(n + 1, Ordering::Release);
    Ok(())
}

/// Forgets the traps in `range` (the code there was unmapped: an `int3`
/// that shows up there later is not ours). Control path only.
pub(crate) fn clear_traps(range: core::ops::Range<usize>) {
    let n = TRAP_LEN.load(Ordering::Acquire);
    for t in &TRAPS[..n.min(TRAP_CAPACITY)] {
        if range.contains(&t.addr.load(Ordering::Relaxed)) {
            t.addr.store(0, Ordering::Release);
        }
    }
}

fn trap_target(addr: usize) -> Option<usize> {
    let n = TRAP_LEN.load(Ordering::Acquire);
    TRAPS[..n.min(TRAP_CAPACITY)]
        .iter()
        .rev()
        .find(|t| t.addr.load(Ordering::Relaxed) == addr)
        .map(|t| t.target.load(Ordering::Acquire))
}

static REDIRECTS: AtomicU64 = AtomicU64::new(0);

/// How many threads met a hook's `int3` and were sent on (diagnostics).
pub fn trap_redirects() -> u64 {
    REDIRECTS.load(Ordering::Relaxed)
}

/// The application's SIGTRAP action, which ours chains to.
static PREVIOUS: AtomicPtr<libc::sigaction> = AtomicPtr::new(core::ptr::null_mut());

const SI_KERNEL: libc::c_int = 0x80;

extern "C" fn on_sigtrap(sig: libc::c_int, info: *mut libc::siginfo_t, uctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo and ucontext to an
    // SA_SIGINFO handler.
    unsafe {
        if !info.is_null() && !uctx.is_null() && (*info).si_code == SI_KERNEL {
            let uc = uctx.cast::<libc::ucontext_t>();
            let rip = &mut (*uc).uc_mcontext.gregs[libc::REG_RIP as usize];
            // An int3 trap leaves rip after the int3.
            if let Some(t) = trap_target((*rip as usize).wrapping_sub(1)) {
                *rip = t as i64;
                REDIRECTS.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        chain(sig, info, uctx);
    }
}

/// Runs the application's action for a SIGTRAP that is not ours, as the
/// kernel would have.
///
/// # Safety
/// Called from the signal handler with its arguments.
unsafe fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, uctx: *mut libc::c_void) {
    let prev = PREVIOUS.load(Ordering::Acquire);
    // SAFETY: PREVIOUS holds a leaked, never-freed sigaction or null.
    let Some(prev) = (unsafe { prev.as_ref() }) else {
        return default_action(sig);
    };
    match prev.sa_sigaction {
        libc::SIG_DFL => default_action(sig),
        libc::SIG_IGN => {}
        h => {
            // SAFETY: plain libc calls on local sets; the handler is the
            // application's, called with the arguments it registered for.
            unsafe {
                let mut old: libc::sigset_t = core::mem::zeroed();
                let mut mask = prev.sa_mask;
                if prev.sa_flags & libc::SA_NODEFER == 0 {
                    libc::sigaddset(&mut mask, sig);
                }
                libc::pthread_sigmask(libc::SIG_BLOCK, &mask, &mut old);
                if prev.sa_flags & libc::SA_NODEFER != 0 {
                    let mut own: libc::sigset_t = core::mem::zeroed();
                    libc::sigemptyset(&mut own);
                    libc::sigaddset(&mut own, sig);
                    libc::pthread_sigmask(libc::SIG_UNBLOCK, &own, core::ptr::null_mut());
                }
                if prev.sa_flags & libc::SA_RESETHAND != 0 {
                    let dfl = Box::into_raw(Box::new(sigaction_of(libc::SIG_DFL, 0)));
                    PREVIOUS.store(dfl, Ordering::Release);
                }
                if prev.sa_flags & libc::SA_SIGINFO != 0 {
                    let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                        core::mem::transmute(h);
                    f(sig, info, uctx);
                } else {
                    let f: extern "C" fn(libc::c_int) = core::mem::transmute(h);
                    f(sig);
                }
                libc::pthread_sigmask(libc::SIG_SETMASK, &old, core::ptr::null_mut());
            }
        }
    }
}

/// SIGTRAP's default action: the process dumps core. The signal is raised
/// again with the default disposition; it is delivered when the handler
/// returns.
fn default_action(sig: libc::c_int) {
    // SAFETY: plain libc calls.
    unsafe {
        let dfl = sigaction_of(libc::SIG_DFL, 0);
        raw_sigaction(sig, &dfl, core::ptr::null_mut());
        libc::raise(sig);
    }
}

fn sigaction_of(handler: libc::sighandler_t, flags: libc::c_int) -> libc::sigaction {
    // SAFETY: sigaction is plain data; all-zero is a valid value.
    let mut sa: libc::sigaction = unsafe { core::mem::zeroed() };
    sa.sa_sigaction = handler;
    sa.sa_flags = flags;
    // SAFETY: initialises the mask in place.
    unsafe { libc::sigemptyset(&mut sa.sa_mask) };
    sa
}

use userbpf_runtime::helpers::safe_mem::raw_sigaction;

/// `sigaction(SIGTRAP, ...)` for the application (the agent's `sigaction`
/// interposer calls it): once our handler is installed, the application's
/// action is the one we chain to, and what it reads back is its own.
///
/// # Safety
/// As `sigaction(2)`.
pub unsafe fn app_sigaction_trap(act: *const libc::sigaction, oldact: *mut libc::sigaction) -> i32 {
    let ours = on_sigtrap as *const () as libc::sighandler_t;
    // SAFETY: queries into a local.
    let mut cur: libc::sigaction = unsafe { core::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { raw_sigaction(libc::SIGTRAP, core::ptr::null(), &mut cur) } != 0
        || cur.sa_sigaction != ours
    {
        // SAFETY: forwarded from the caller.
        return unsafe { raw_sigaction(libc::SIGTRAP, act, oldact) };
    }
    if !oldact.is_null() {
        let prev = PREVIOUS.load(Ordering::Acquire);
        // SAFETY: PREVIOUS is null or a leaked action; `oldact` is valid
        // for writes (caller).
        unsafe {
            *oldact = match prev.as_ref() {
                Some(p) => *p,
                None => sigaction_of(libc::SIG_DFL, 0),
            }
        };
    }
    if !act.is_null() {
        // SAFETY: `act` is valid for reads (caller). The old record is
        // leaked: a handler may be reading it.
        PREVIOUS.store(Box::into_raw(Box::new(unsafe { *act })), Ordering::Release);
    }
    0
}

/// Makes sure our SIGTRAP handler is installed, keeping whatever the
/// application installed since as the action to chain to. Called before
/// every patch, so an application that replaced our handler keeps its own
/// semantics between patches and ours is back during them.
pub(crate) fn ensure_trap_handler() -> Result<(), HookError> {
    let ours = on_sigtrap as *const () as libc::sighandler_t;
    // SAFETY: queries the current action into a local.
    let mut cur: libc::sigaction = unsafe { core::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { raw_sigaction(libc::SIGTRAP, core::ptr::null(), &mut cur) } != 0 {
        return Err(HookError::last_os("sigaction(SIGTRAP)"));
    }
    if cur.sa_sigaction == ours {
        return Ok(());
    }
    // Published before ours is installed; the old record is leaked, since a
    // handler may be reading it.
    PREVIOUS.store(Box::into_raw(Box::new(cur)), Ordering::Release);
    let sa = sigaction_of(ours, libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESTART);
    // SAFETY: installs a handler that only touches async-signal-safe state.
    if unsafe { raw_sigaction(libc::SIGTRAP, &sa, core::ptr::null_mut()) } != 0 {
        return Err(HookError::last_os("sigaction(SIGTRAP)"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Writing code.

/// The code pages around `[addr, addr + len)`, writable while this lives.
struct Writable {
    pages: Vec<(usize, i32)>,
}

impl Writable {
    fn open(addr: usize, len: usize) -> Result<Writable, HookError> {
        let all = maps::read()?;
        let first = addr & !(super::trampoline::PAGE - 1);
        let mut pages = Vec::new();
        let mut p = first;
        while p < addr + len {
            let m = maps::find(&all, p).ok_or(HookError::NotMapped { addr: p })?;
            if !m.exec {
                return Err(HookError::NotExecutable { addr: p });
            }
            if m.shared {
                return Err(HookError::SharedMapping { addr: p });
            }
            pages.push((p, m.prot()));
            p += super::trampoline::PAGE;
        }
        let mut w = Writable { pages: Vec::new() };
        for &(p, prot) in &pages {
            // SAFETY: a page of a private executable mapping; it stays
            // executable for the threads running it.
            if unsafe {
                libc::mprotect(
                    p as *mut _,
                    super::trampoline::PAGE,
                    prot | libc::PROT_WRITE,
                )
            } != 0
            {
                return Err(HookError::last_os("mprotect (code)"));
            }
            w.pages.push((p, prot));
        }
        Ok(w)
    }
}

impl Drop for Writable {
    fn drop(&mut self) {
        for &(p, prot) in &self.pages {
            // SAFETY: puts back the protection the page had.
            unsafe { libc::mprotect(p as *mut _, super::trampoline::PAGE, prot) };
        }
    }
}

fn poke(addr: usize, byte: u8) {
    // SAFETY: called only inside a `Writable` window over `addr`.
    unsafe { core::ptr::write_volatile(addr as *mut u8, byte) };
}

/// Writes the 5-byte `jump` over `patch_addr`. `interior` lists the patch
/// offsets where displaced instructions start; `jump` must hold `0xcc` at
/// each, and their trap targets must already be set.
pub(crate) fn write_jump(
    patch_addr: usize,
    jump: [u8; 5],
    interior: &[usize],
) -> Result<(), HookError> {
    let _w = Writable::open(patch_addr, 5)?;
    // 1. int3 on every instruction start inside the 5 bytes.
    poke(patch_addr, 0xcc);
    for &k in interior {
        poke(patch_addr + k, 0xcc);
    }
    sync_cores();
    // 2. The rest of the displacement: no thread can execute these bytes now.
    for (k, &byte) in jump.iter().enumerate().skip(1) {
        if !interior.contains(&k) {
            poke(patch_addr + k, byte);
        }
    }
    sync_cores();
    // 3. The opcode.
    poke(patch_addr, jump[0]);
    sync_cores();
    Ok(())
}

/// Puts `original` back over `patch_addr`.
pub(crate) fn write_original(patch_addr: usize, original: [u8; 5]) -> Result<(), HookError> {
    let _w = Writable::open(patch_addr, 5)?;
    poke(patch_addr, 0xcc);
    sync_cores();
    // Last byte first: an instruction start becomes itself again only when
    // every byte after it already has, so a thread resuming there (one that
    // was preempted at it since before the hook) sees int3 or the whole
    // original instruction.
    for k in (1..5).rev() {
        poke(patch_addr + k, original[k]);
        sync_cores();
    }
    poke(patch_addr, original[0]);
    sync_cores();
    Ok(())
}
