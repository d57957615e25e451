//! Cross-modifying code: writing a site's jump while other threads run it,
//! and putting the original bytes back.
//!
//! The protocol is the kernel's `text_poke_bp`: an `int3` on the first byte,
//! the other bytes, then the first byte, with every core serialised in
//! between by `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE)` (or,
//! before the registration is done or where there is none, by a TLB flush
//! of a page of our own: [`sync_cores_by_tlb_flush`]). A
//! thread that meets a transient `int3` gets SIGTRAP; our handler moves it
//! to where the jump would have taken it (or, during removal, to the
//! relocated copy of the original instruction). The `int3` bytes the jump's
//! displacement leaves at displaced instruction starts (see `trampoline`)
//! are handled the same way, so the table of trap addresses is permanent:
//! a trap delivered late, after the patch completed, still finds its way.
//!
//! Trap sites (sites too short for a jump) keep an `int3` for good: their
//! table entry also names the site, and the handler runs the site's
//! handlers from the signal frame before resuming at the relocated copy
//! ([`trap_site_hit`]).
//!
//! The code page is made writable (and kept executable) only around each
//! write. Shared mappings are refused: writing to one would change the file.

use super::error::HookError;
use super::maps;
use super::regs::PtRegs;
use super::{thread, uretprobe, SiteData};
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
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

/// The membarrier command this process registered for: -1 not known yet
/// (the first [`sync_cores`] registers), 0 none works (then
/// [`sync_cores_by_tlb_flush`]).
static CMD: AtomicI32 = AtomicI32::new(-1);
/// Registration is left to another thread ([`defer_membarrier`]); until it
/// is done, [`sync_cores`] takes the TLB-flush fallback instead of waiting
/// for it.
static DEFERRED: AtomicBool = AtomicBool::new(false);

fn sync_cmd() -> libc::c_int {
    let c = CMD.load(Ordering::Acquire);
    if c >= 0 {
        return c;
    }
    if DEFERRED.load(Ordering::Acquire) {
        return 0;
    }
    register_membarrier()
}

/// Registers for the best membarrier command (once) and uses it from then
/// on. In a process with more than one thread, registering waits for an
/// RCU grace period (10 ms or more): an agent loaded into a running
/// process ([`defer_membarrier`]) does it from its own thread.
pub fn register_membarrier() -> libc::c_int {
    static ONCE: OnceLock<libc::c_int> = OnceLock::new();
    let c = *ONCE.get_or_init(|| {
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
    });
    CMD.store(c, Ordering::Release);
    c
}

/// Patches made before [`register_membarrier`] completes (in another
/// thread) serialise through [`sync_cores_by_tlb_flush`] instead of
/// waiting.
pub fn defer_membarrier() {
    DEFERRED.store(true, Ordering::Release);
}

/// Makes every thread of the process execute a core-serialising
/// instruction before it runs user code again.
pub(crate) fn sync_cores() {
    let cmd = sync_cmd();
    if cmd != 0 {
        membarrier(cmd);
    } else {
        sync_cores_by_tlb_flush();
    }
}

/// Without membarrier: taking write permission away from a present page
/// makes the kernel flush the TLB of every other core running this mm by
/// an interrupt, whose return serialises that core (a core that runs
/// another mm switches back through a CR3 write, serialising too). A page
/// of our own, made writable, written, and made read-only again.
fn sync_cores_by_tlb_flush() {
    static PAGE: std::sync::Mutex<usize> = std::sync::Mutex::new(0);
    let mut page = PAGE.lock().unwrap_or_else(|e| e.into_inner());
    if *page == 0 {
        // SAFETY: a fresh private anonymous page, ours alone.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return;
        }
        *page = p as usize;
    }
    let p = *page as *mut libc::c_void;
    // SAFETY: our own page, only touched here, under the lock: writable
    // while it is written.
    unsafe {
        libc::mprotect(p, 4096, libc::PROT_READ | libc::PROT_WRITE);
        core::ptr::write_volatile(p.cast::<u8>(), 1);
        libc::mprotect(p, 4096, libc::PROT_READ);
    }
}

// ---------------------------------------------------------------------------
// The trap table and the SIGTRAP handler.

const TRAP_CAPACITY: usize = 1 << 16;

struct Trap {
    addr: AtomicUsize,
    target: AtomicUsize,
    /// A live trap site at `addr` (null: a plain redirect to `target`).
    site: AtomicPtr<SiteData>,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY_TRAP: Trap = Trap {
    addr: AtomicUsize::new(0),
    target: AtomicUsize::new(0),
    site: AtomicPtr::new(core::ptr::null_mut()),
};
static TRAPS: [Trap; TRAP_CAPACITY] = [EMPTY_TRAP; TRAP_CAPACITY];
static TRAP_LEN: AtomicUsize = AtomicUsize::new(0);

/// Sends threads that trap on the `int3` at `addr` to `target`; a later
/// call for the same address wins (and ends a trap site there). Control
/// path only (under the hook lock).
pub(crate) fn set_trap(addr: usize, target: usize) -> Result<(), HookError> {
    put_trap(addr, target, core::ptr::null_mut())
}

/// Makes `addr` a live trap site: a thread that traps there runs `site`'s
/// handlers and resumes at `site.resume`. Control path only.
pub(crate) fn set_trap_site(addr: usize, site: &'static SiteData) -> Result<(), HookError> {
    put_trap(addr, site.resume, site as *const SiteData as *mut SiteData)
}

fn put_trap(addr: usize, target: usize, site: *mut SiteData) -> Result<(), HookError> {
    let n = TRAP_LEN.load(Ordering::Acquire);
    if let Some(t) = TRAPS[..n.min(TRAP_CAPACITY)]
        .iter()
        .rev()
        .find(|t| t.addr.load(Ordering::Relaxed) == addr)
    {
        // The handler reads the site first and takes its resume address
        // from it, so either order of these stores is consistent.
        t.target.store(target, Ordering::Release);
        t.site.store(site, Ordering::Release);
        return Ok(());
    }
    let t = TRAPS.get(n).ok_or(HookError::Os {
        op: "trap table",
        errno: libc::ENOSPC,
    })?;
    t.target.store(target, Ordering::Relaxed);
    t.site.store(site, Ordering::Relaxed);
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
            t.site.store(core::ptr::null_mut(), Ordering::Release);
        }
    }
}

/// What to do with a trap at `addr`.
enum TrapKind {
    /// Resume there.
    Redirect(usize),
    /// A live trap site: run its handlers.
    Site(&'static SiteData),
}

fn trap_lookup(addr: usize) -> Option<TrapKind> {
    let n = TRAP_LEN.load(Ordering::Acquire);
    let t = TRAPS[..n.min(TRAP_CAPACITY)]
        .iter()
        .rev()
        .find(|t| t.addr.load(Ordering::Relaxed) == addr)?;
    // SAFETY: a non-null site pointer is a leaked, never-freed SiteData.
    match unsafe { t.site.load(Ordering::Acquire).as_ref() } {
        Some(site) => Some(TrapKind::Site(site)),
        None => Some(TrapKind::Redirect(t.target.load(Ordering::Acquire))),
    }
}

static SITE_HITS: AtomicU64 = AtomicU64::new(0);

/// How many times a thread hit a live trap site (diagnostics).
pub fn trap_site_hits() -> u64 {
    SITE_HITS.load(Ordering::Relaxed)
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
            let rip = (*uc).uc_mcontext.gregs[libc::REG_RIP as usize];
            // An int3 trap leaves rip after the int3.
            match trap_lookup((rip as usize).wrapping_sub(1)) {
                Some(TrapKind::Redirect(t)) => {
                    (*uc).uc_mcontext.gregs[libc::REG_RIP as usize] = t as i64;
                    REDIRECTS.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Some(TrapKind::Site(site)) => {
                    trap_site_hit(site, &mut (*uc).uc_mcontext.gregs);
                    return;
                }
                None => {}
            }
        }
        chain(sig, info, uctx);
    }
}

/// The flags a handler may change through `pt_regs.flags` at a trap site:
/// CF PF AF ZF SF DF OF, as the inner stub restores them.
const HANDLER_FLAGS: u64 = 0x1 | 0x4 | 0x10 | 0x40 | 0x80 | 0x400 | 0x800;

/// A hit on a live trap site, in the SIGTRAP handler: what the jump stubs
/// do, with the signal frame as the saved state (the kernel saved the
/// vector registers in it and restores them). `gregs` is the interrupted
/// context, `rip` just after the `int3`.
///
/// No allocation, lock or panic path: the thread may have been interrupted
/// anywhere, `malloc` included.
fn trap_site_hit(site: &'static SiteData, gregs: &mut [libc::greg_t; 23]) {
    SITE_HITS.fetch_add(1, Ordering::Relaxed);
    let ts = thread::current();
    // SAFETY: the calling thread's own state block (initial-exec TLS,
    // reachable from a signal handler).
    if unsafe { (*ts).busy } != 0 {
        // A hit from inside a handler (of this or another hook): skipped,
        // as in the stubs.
        gregs[libc::REG_RIP as usize] = site.resume as i64;
        return;
    }
    // SAFETY: as above.
    unsafe { (*ts).busy = 1 };
    let errno = thread::errno();
    // SAFETY: the thread's errno slot.
    let saved_errno = unsafe { *errno };
    // Checked accesses: no panic path here, even if not inlined.
    let g = |r: libc::c_int| gregs.get(r as usize).map_or(0, |&v| v as u64);
    let sp = g(libc::REG_RSP);
    let flags = g(libc::REG_EFL);
    let mut regs = PtRegs {
        r15: g(libc::REG_R15),
        r14: g(libc::REG_R14),
        r13: g(libc::REG_R13),
        r12: g(libc::REG_R12),
        bp: g(libc::REG_RBP),
        bx: g(libc::REG_RBX),
        r11: g(libc::REG_R11),
        r10: g(libc::REG_R10),
        r9: g(libc::REG_R9),
        r8: g(libc::REG_R8),
        ax: g(libc::REG_RAX),
        cx: g(libc::REG_RCX),
        dx: g(libc::REG_RDX),
        si: g(libc::REG_RSI),
        di: g(libc::REG_RDI),
        orig_ax: u64::MAX,
        ip: site.ip,
        cs: 0x33,
        flags,
        sp,
        ss: 0x2b,
    };
    let b = site.binding.load(Ordering::Acquire);
    // SAFETY: a published binding is never freed; the handler's contract
    // (install) makes it callable here with its data.
    if let Some(b) = unsafe { b.as_ref() } {
        // SAFETY: as above; `regs` is a valid pt_regs.
        unsafe { (b.func)(&mut regs, b.data) };
    }
    // As in the stubs, the handler cannot move the stack pointer.
    regs.sp = sp;
    if site.entry && regs.ip == site.ip && !site.ret_binding.load(Ordering::Acquire).is_null() {
        // What the entry stub's slow path calls to arm the return hook.
        // SAFETY: `regs` is the pt_regs of a function entry, `ts` this
        // thread's state, `site` the site's data.
        if unsafe { uretprobe::ret_prepare(&mut regs, site, ts) } != 0 {
            // The stub calls the relocated function so that it returns into
            // the return trampoline; here the return address slot gets the
            // return trampoline's address instead (the kernel's way: one
            // mispredicted return), the original one is on the shadow stack.
            // SAFETY: at a function entry `sp` points at the return address
            // on this thread's stack, above the signal frame.
            unsafe { (sp as *mut u64).write(uretprobe::cached_trampoline() as u64) };
        }
    }
    let mut put = |r: libc::c_int, v: u64| {
        if let Some(slot) = gregs.get_mut(r as usize) {
            *slot = v as i64;
        }
    };
    put(libc::REG_R15, regs.r15);
    put(libc::REG_R14, regs.r14);
    put(libc::REG_R13, regs.r13);
    put(libc::REG_R12, regs.r12);
    put(libc::REG_RBP, regs.bp);
    put(libc::REG_RBX, regs.bx);
    put(libc::REG_R11, regs.r11);
    put(libc::REG_R10, regs.r10);
    put(libc::REG_R9, regs.r9);
    put(libc::REG_R8, regs.r8);
    put(libc::REG_RAX, regs.ax);
    put(libc::REG_RCX, regs.cx);
    put(libc::REG_RDX, regs.dx);
    put(libc::REG_RSI, regs.si);
    put(libc::REG_RDI, regs.di);
    put(
        libc::REG_EFL,
        (flags & !HANDLER_FLAGS) | (regs.flags & HANDLER_FLAGS),
    );
    // A changed ip (override_return) is where the thread resumes.
    put(
        libc::REG_RIP,
        if regs.ip == site.ip {
            site.resume as u64
        } else {
            regs.ip
        },
    );
    // SAFETY: as above.
    unsafe {
        *errno = saved_errno;
        (*ts).busy = 0;
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
    // SA_NODEFER: a trap site hit while this handler runs (a handler
    // calling probed code, or a signal handler that interrupted us doing
    // so) must reach us again, not be forced through a blocked SIGTRAP,
    // which the kernel turns into SIG_DFL: the process would dump core.
    // `chain` blocks SIGTRAP itself for the application's handler unless
    // that asked for SA_NODEFER.
    // No SA_ONSTACK: trap sites run their handlers here, and they get the
    // thread's stack as at jump sites, not a sigaltstack of a few KiB
    // (Rust and Go give every thread one; nested signal frames overflowed
    // it in the signal-heavy test).
    let sa = sigaction_of(ours, libc::SA_SIGINFO | libc::SA_RESTART | libc::SA_NODEFER);
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

/// Writes one byte of code (a trap site's `int3`, or its original byte):
/// a single-byte store, atomic for every thread running there.
pub(crate) fn write_byte(addr: usize, byte: u8) -> Result<(), HookError> {
    let _w = Writable::open(addr, 1)?;
    poke(addr, byte);
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
