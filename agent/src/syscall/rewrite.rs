//! Hooks on syscall instructions: the fast path of syscall interception.
//!
//! Every `syscall` instruction [`scan`] finds in the loaded modules gets an
//! inline hook (`crate::hook`, always a jump, the inner stub) whose handler
//! hands the call to [`dispatch::on_syscall`], then resumes after it:
//!
//! - [`SiteKind::Setup`] (most of glibc's): the jump replaces the
//!   `mov $nr, %eax` right before the `syscall`; the handler loads the
//!   number itself. The `syscall` and what follows stay in place: a thread
//!   blocked in the call while the jump is written returns to intact code,
//!   and `mov; syscall; ret` wrappers (getpid), too short for a jump after
//!   the `syscall`, are covered.
//! - [`SiteKind::Jump`]: the jump covers the `syscall` and what follows;
//!   those instructions run relocated in the trampoline, so a call the
//!   dispatcher made resumes at the relocated copy of the next instruction
//!   ([`Hook::relocated_address`]). A thread returning from a call it was
//!   blocked in when the jump was written meets an `int3` the engine leaves
//!   there and is sent on to the same copy.
//! - [`SiteKind::Trap`], only with [`Rewriter::set_trap_sites`]: `int3` on
//!   the `syscall` where a jump does not fit (a branch lands in its 5 bytes,
//!   the function ends). Off by default: such sites are refused and left to
//!   Syscall User Dispatch, because an `int3` kills a thread that runs it
//!   with SIGTRAP blocked, and glibc blocks every signal around thread
//!   creation and exit (`exit` and `madvise` in `start_thread` are such
//!   sites).
//!
//! When the dispatcher answers [`Outcome::Native`] (clone of a thread,
//! vfork, ...) the original `syscall` runs (relocated, or in place for a
//! setup hook), so a new thread continues in the original code's flow. A
//! child that shares this thread's TLS (vfork, posix_spawn) goes through a
//! thunk that repairs the parent's hook state afterwards (see below).
//! Syscalls made while a handler runs on the same thread (the programs'
//! own) skip the dispatcher through the engine's per-thread recursion
//! guard: they run natively.

use core::arch::global_asm;
use core::ffi::c_void;
use std::collections::BTreeMap;

use super::dispatch::{self, Outcome};
use super::scan::{self, SyscallSite};
use crate::hook::{
    ExtOptions, Hook, HookError, HookHandler, HookOptions, PtRegs, SyscallAction, SyscallPhase,
    TrapPolicy,
};

/// What a site's handler needs. Leaked: a thread may still be in the
/// handler when the hook is removed (24 bytes per hooked site and refresh
/// after a [`Rewriter::clear`]).
struct SiteInfo {
    /// The `syscall` instruction.
    addr: usize,
    /// Where execution continues after a call the dispatcher made.
    resume: usize,
    /// The hook is on the `mov $nr, %eax` before the syscall: the handler
    /// loads this number, as the displaced `mov` would have.
    setup_nr: Option<u64>,
}

/// The handler of every syscall site.
///
/// # Safety
/// Called by the hook engine with the site's `pt_regs` (`ip` = the
/// `syscall`'s address) and its leaked [`SiteInfo`].
// Inlined into on_setup_site: one `ret` fewer after the call it makes.
#[inline(always)]
unsafe extern "C" fn on_site(regs: *mut PtRegs, data: *mut c_void) {
    // SAFETY: engine contract; `data` is the site's leaked SiteInfo.
    let (r, site) = unsafe { (&mut *regs, &*(data as *const SiteInfo)) };
    if let Some(nr) = site.setup_nr {
        r.ax = nr;
    }
    let nr = r.ax;
    // What the kernel's entry code shows: the number in orig_ax, ip after
    // the instruction.
    r.orig_ax = nr;
    r.ip = site.addr as u64 + 2;
    // SAFETY: `regs` is this thread's live frame at a syscall instruction.
    match unsafe { dispatch::on_syscall(regs, site.resume) } {
        Outcome::Done => {
            // SAFETY: as above (the reference is re-derived after the call).
            let r = unsafe { &mut *regs };
            // The `syscall` instruction's own effects: rcx = the return
            // address, r11 = rflags.
            r.cx = site.addr as u64 + 2;
            r.r11 = r.flags;
        }
        Outcome::Native => {
            // SAFETY: as above.
            let r = unsafe { &mut *regs };
            r.ax = nr;
            // SAFETY: `r` holds the call's arguments.
            if unsafe { child_shares_tls(nr, r) } {
                // SAFETY: this thread's own slot.
                unsafe { *vfork_resume_slot() = site.resume as u64 };
                r.ip = vfork_thunk() as u64;
            } else {
                // At a hook on the syscall, an unchanged ip: the stub (or
                // the SIGTRAP handler) runs the relocated `syscall` itself.
                // At a hook on the `mov`, a redirect to the original
                // `syscall`.
                r.ip = site.addr as u64;
            }
        }
    }
}

/// The handler of a [`SiteKind::Setup`] site, whose stub can make the call
/// itself: the stub then jumps to the code after the original `syscall`,
/// so no `ret` the application did not make follows the call (see the
/// syscall stub in `crate::hook::stub`). Calls that need the whole
/// dispatcher go through [`on_site`].
///
/// # Safety
/// As [`on_site`]; `phase` from the syscall stub.
unsafe extern "C" fn on_setup_site(
    regs: *mut PtRegs,
    data: *mut c_void,
    phase: SyscallPhase,
) -> SyscallAction {
    if phase == SyscallPhase::EXIT {
        // SAFETY: the stub's frame, after the call it made for
        // CallThenExit.
        unsafe { dispatch::exit(regs) };
        return SyscallAction::Handled;
    }
    // SAFETY: engine contract; `data` is the site's leaked SiteInfo.
    let (r, site) = unsafe { (&mut *regs, &*(data as *const SiteInfo)) };
    let Some(nr) = site.setup_nr else {
        // SAFETY: forwarded.
        unsafe { on_site(regs, data) };
        return SyscallAction::Handled;
    };
    r.ax = nr;
    r.orig_ax = nr;
    r.ip = site.addr as u64 + 2;
    // SAFETY: `regs` is this thread's live frame at a syscall, `busy` set
    // by the stub.
    let entry = unsafe { dispatch::enter(regs, site.resume) };
    // SAFETY: as above (re-derived after the call).
    let r = unsafe { &mut *regs };
    // The `syscall` instruction's own effects, for the registers the stub
    // resumes with.
    let syscall_effects = |r: &mut PtRegs| {
        r.cx = site.addr as u64 + 2;
        r.r11 = r.flags;
    };
    match entry {
        Some(dispatch::Entry::Call { exit }) => {
            syscall_effects(r);
            if exit {
                SyscallAction::CallThenExit
            } else {
                SyscallAction::Call
            }
        }
        Some(dispatch::Entry::Done) => {
            syscall_effects(r);
            SyscallAction::Handled
        }
        None => {
            // SAFETY: forwarded; nothing ran yet.
            unsafe { on_site(regs, data) };
            SyscallAction::Handled
        }
    }
}

// A child that shares the parent's memory and thread pointer (vfork,
// posix_spawn's clone(CLONE_VM | CLONE_VFORK)) runs on the parent's TLS:
// the hooks it goes through set the parent's `busy` word, and the `exec`
// or `_exit` that ends it never clears it, so the parent would skip every
// hook afterwards. Such a call runs here instead of on its original
// instruction: the parent clears `busy` (the stub cleared it before
// coming here, so 0 is its value), then both continue at the resume
// address, kept in a TLS slot (the child, on another stack or on the
// parent's, has no other storage it could not clobber). rcx and r11 are
// the syscall's own scratch registers; the flags after a `syscall` are
// not something the code after it uses (glibc clobbers "cc").
global_asm!(
    ".pushsection .text.userbpf_syscall_vfork,\"ax\",@progbits",
    ".p2align 4",
    ".globl userbpf_syscall_vfork_thunk",
    ".hidden userbpf_syscall_vfork_thunk",
    "userbpf_syscall_vfork_thunk:",
    "syscall",
    "mov r11, qword ptr [rip + userbpf_syscall_vfork_resume@GOTTPOFF]",
    "test rax, rax",
    "jz 1f",
    "mov rcx, qword ptr [rip + userbpf_hook_tls@GOTTPOFF]",
    "mov qword ptr fs:[rcx], 0",
    "1:",
    "jmp qword ptr fs:[r11]",
    ".popsection",
    ".pushsection .tbss,\"awT\",@nobits",
    ".p2align 3",
    ".globl userbpf_syscall_vfork_resume",
    ".hidden userbpf_syscall_vfork_resume",
    ".type userbpf_syscall_vfork_resume,@object",
    ".size userbpf_syscall_vfork_resume, 8",
    "userbpf_syscall_vfork_resume:",
    ".zero 8",
    ".popsection",
);

extern "C" {
    fn userbpf_syscall_vfork_thunk();
}

fn vfork_thunk() -> usize {
    userbpf_syscall_vfork_thunk as *const () as usize
}

/// The calling thread's vfork resume slot.
#[inline(always)]
fn vfork_resume_slot() -> *mut u64 {
    let (tp, off): (usize, isize);
    // SAFETY: reads the TCB's self pointer (fs:0) and the GOT entry the
    // linker fills with the slot's TP offset (initial-exec).
    unsafe {
        core::arch::asm!(
            "mov {tp}, qword ptr fs:[0]",
            "mov {off}, qword ptr [rip + userbpf_syscall_vfork_resume@GOTTPOFF]",
            tp = out(reg) tp,
            off = out(reg) off,
            options(nostack, readonly, preserves_flags)
        )
    };
    tp.wrapping_add_signed(off) as *mut u64
}

/// Whether the call creates a child that runs on this thread's TLS:
/// `vfork`, or `clone`/`clone3` with `CLONE_VM` and no `CLONE_SETTLS`.
///
/// # Safety
/// For clone3, `r.di` is the application's `struct clone_args` pointer
/// (read with a fault-safe copy).
unsafe fn child_shares_tls(nr: u64, r: &PtRegs) -> bool {
    const CLONE_VM: u64 = 0x100;
    const CLONE_SETTLS: u64 = 0x80000;
    let flags = match nr as i64 {
        libc::SYS_vfork => return true,
        libc::SYS_clone => r.di,
        libc::SYS_clone3 if r.si >= 8 => {
            let mut f = 0u64;
            // SAFETY: a fault-safe read into a local.
            let ok = unsafe {
                userbpf_runtime::helpers::safe_mem::safe_read(
                    (&mut f as *mut u64).cast(),
                    r.di as *const u8,
                    8,
                )
            };
            if ok.is_err() {
                return false;
            }
            f
        }
        _ => return false,
    };
    flags & CLONE_VM != 0 && flags & CLONE_SETTLS == 0
}

/// Counters of a [`Rewriter`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RewriteStats {
    /// Modules scanned (with a usable `.eh_frame_hdr`).
    pub modules: usize,
    /// Modules without one (not rewritten: SUD only).
    pub modules_without_table: usize,
    /// Syscall instructions found (signal-return trampolines excluded).
    pub sites: usize,
    /// Live hooks that are 5-byte jumps.
    pub jump_sites: usize,
    /// Those of them on the `mov $nr, %eax` before the syscall
    /// ([`SiteKind::Setup`]).
    pub setup_sites: usize,
    /// Live hooks that are `int3` trap sites.
    pub trap_sites: usize,
    /// Sites the engine refused (left to SUD).
    pub refused: usize,
    /// Signal-return trampolines left native.
    pub excluded: usize,
}

struct Site {
    /// The `syscall` instruction.
    addr: usize,
    hook: Hook,
    /// Its handler's data.
    info: &'static SiteInfo,
    /// Whether the handler is bound ([`Rewriter::select`]).
    bound: bool,
    /// The module it belongs to: (base, name).
    module: (usize, String),
}

impl ModuleStats {
    fn add_to(&self, st: &mut RewriteStats) {
        if self.no_table {
            st.modules_without_table += 1;
        } else {
            st.modules += 1;
        }
        st.sites += self.sites;
        st.refused += self.refused;
        st.excluded += self.excluded;
    }
}

impl Site {
    /// Whether the hook's first patched byte is still ours (`jmp` or
    /// `int3`), read fault-safely.
    fn still_patched(&self) -> bool {
        let mut b = 0u8;
        // SAFETY: a fault-safe one-byte read into a local.
        let ok = unsafe {
            userbpf_runtime::helpers::safe_mem::safe_read(
                &mut b,
                self.hook.patch_addr() as *const u8,
                1,
            )
        };
        ok.is_ok() && b == if self.hook.is_trap() { 0xcc } else { 0xe9 }
    }

    fn add_to(&self, st: &mut RewriteStats) {
        match self.kind() {
            SiteKind::Setup => {
                st.jump_sites += 1;
                st.setup_sites += 1;
            }
            SiteKind::Jump => st.jump_sites += 1,
            SiteKind::Trap => st.trap_sites += 1,
        }
    }

    fn kind(&self) -> SiteKind {
        if self.hook.is_trap() {
            SiteKind::Trap
        } else if self.hook.addr() != self.addr {
            SiteKind::Setup
        } else {
            SiteKind::Jump
        }
    }
}

/// How a syscall instruction is hooked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SiteKind {
    /// A jump on the `mov $nr, %eax` right before it; the `syscall` and
    /// what follows stay in place.
    Setup,
    /// A jump on the `syscall`, displacing what follows it.
    Jump,
    /// `int3` on the `syscall` ([`Rewriter::set_trap_sites`]).
    Trap,
}

/// The rewritten syscall sites of this process.
#[derive(Default)]
pub struct Rewriter {
    /// Live hooks by syscall address.
    sites: BTreeMap<usize, Site>,
    /// Modules scanned, with their counters: (base, name) -> stats.
    modules: BTreeMap<(usize, String), ModuleStats>,
    /// The last refusals (address, error), for diagnostics.
    refusals: Vec<(usize, HookError)>,
    /// Trap sites allowed ([`Rewriter::set_trap_sites`]).
    trap_sites: bool,
    /// Which modules to rewrite, by name ([`Rewriter::set_module_filter`]).
    filter: Option<ModuleFilter>,
    /// Modules the filter refused: not scanned again.
    filtered_out: std::collections::BTreeSet<(usize, String)>,
}

// The agent keeps one in its state, behind its lock.
const _: fn() = || {
    fn send<T: Send>() {}
    send::<Rewriter>();
};

/// Chooses modules by their `dlpi_name` ("" for the main program).
pub type ModuleFilter = Box<dyn Fn(&str) -> bool + Send + Sync>;

#[derive(Clone, Copy, Debug, Default)]
struct ModuleStats {
    sites: usize,
    refused: usize,
    excluded: usize,
    no_table: bool,
}

impl std::fmt::Debug for Rewriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rewriter")
            .field("stats", &self.stats())
            .finish()
    }
}

impl Rewriter {
    /// A rewriter with jump sites only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Allows `int3` trap sites where a jump does not fit, in modules
    /// scanned from now on ([`Rewriter::clear`] to start over). Only safe
    /// if no thread runs those sites with SIGTRAP blocked: the kernel then
    /// kills the process.
    pub fn set_trap_sites(&mut self, on: bool) {
        self.trap_sites = on;
    }

    /// Rewrites only the modules `f` accepts (None: all), from the next
    /// [`Rewriter::refresh`] on; modules already scanned keep their hooks.
    pub fn set_module_filter(&mut self, f: Option<ModuleFilter>) {
        self.filter = f;
        self.filtered_out.clear();
    }

    /// Hooks every syscall site not hooked yet: those of modules loaded
    /// since the last call included. Hooks of modules that were unloaded
    /// are dropped without touching their (gone) code. Idempotent.
    pub fn refresh(&mut self) -> RewriteStats {
        crate::hook::maps::batch(|| self.refresh_inner())
    }

    fn refresh_inner(&mut self) -> RewriteStats {
        let known: Vec<(usize, String)> = self
            .modules
            .keys()
            .chain(&self.filtered_out)
            .cloned()
            .collect();
        let scanned = scan::scan_modules(&known);
        // Unloaded modules: forget their hooks.
        let present: std::collections::BTreeSet<(usize, String)> =
            scanned.iter().map(|m| (m.base, m.name.clone())).collect();
        self.modules.retain(|k, _| present.contains(k));
        self.filtered_out.retain(|k| present.contains(k));
        let gone: Vec<usize> = self
            .sites
            .iter()
            .filter(|(_, s)| !present.contains(&s.module))
            .map(|(&a, _)| a)
            .collect();
        for a in gone {
            if let Some(s) = self.sites.remove(&a) {
                s.hook.forget();
            }
        }
        // A module unloaded and loaded again at the same address under the
        // same name has fresh code: its hooks are gone (forgotten here,
        // the module scanned again).
        let stale: Vec<usize> = self
            .sites
            .iter()
            .filter(|(_, s)| !s.still_patched())
            .map(|(&a, _)| a)
            .collect();
        let mut scanned = scanned;
        if !stale.is_empty() {
            for a in stale {
                if let Some(s) = self.sites.remove(&a) {
                    self.modules.remove(&s.module);
                    s.hook.forget();
                }
            }
            let known: Vec<(usize, String)> = self
                .modules
                .keys()
                .chain(&self.filtered_out)
                .cloned()
                .collect();
            scanned = scan::scan_modules(&known);
        }
        for m in scanned {
            let key = (m.base, m.name.clone());
            if self.modules.contains_key(&key) || self.filtered_out.contains(&key) {
                continue;
            }
            if self.filter.as_ref().is_some_and(|f| !f(&m.name)) {
                self.filtered_out.insert(key);
                continue;
            }
            let mut ms = ModuleStats {
                sites: m.sites.len(),
                excluded: m.excluded,
                no_table: m.no_unwind_table,
                ..Default::default()
            };
            for site in &m.sites {
                if self.sites.contains_key(&site.addr) {
                    continue;
                }
                match install(site, self.trap_sites) {
                    Ok((hook, info)) => {
                        self.sites.insert(
                            site.addr,
                            Site {
                                addr: site.addr,
                                hook,
                                info,
                                bound: true,
                                module: key.clone(),
                            },
                        );
                    }
                    Err(e) => {
                        ms.refused += 1;
                        if self.refusals.len() < 64 {
                            self.refusals.push((site.addr, e));
                        }
                    }
                }
            }
            self.modules.insert(key, ms);
        }
        self.stats()
    }

    /// Removes every hook (the original bytes are written back) and
    /// forgets the scanned modules: the next [`Rewriter::refresh`] starts
    /// over.
    pub fn clear(&mut self) {
        crate::hook::maps::batch(|| {
            for (_, s) in core::mem::take(&mut self.sites) {
                // A failure leaves the code hooked with no handler (the
                // syscall runs natively in the trampoline): nothing to undo.
                let _ = s.hook.remove();
            }
        });
        self.modules.clear();
        self.filtered_out.clear();
        self.refusals.clear();
    }

    /// The current counters.
    pub fn stats(&self) -> RewriteStats {
        let mut st = RewriteStats::default();
        for m in self.modules.values() {
            m.add_to(&mut st);
        }
        for s in self.sites.values() {
            s.add_to(&mut st);
        }
        st
    }

    /// Counters per module name (`""`: the main program), for diagnostics
    /// and measurements.
    pub fn stats_by_module(&self) -> Vec<(String, RewriteStats)> {
        self.modules
            .iter()
            .map(|(key, m)| {
                let mut st = RewriteStats::default();
                m.add_to(&mut st);
                for s in self.sites.values().filter(|s| &s.module == key) {
                    s.add_to(&mut st);
                }
                (key.1.clone(), st)
            })
            .collect()
    }

    /// Some of the refusals since the last [`Rewriter::clear`] (at most
    /// 64): the site and the engine's reason.
    pub fn refusals(&self) -> &[(usize, HookError)] {
        &self.refusals
    }

    /// Binds the handler of the sites whose syscall number is known (the
    /// `mov $nr, %eax` before them) only where `wanted(nr)`: the others
    /// cost the hook's bare stub instead of a dispatch. Sites whose number
    /// is only known at run time keep theirs.
    pub fn select(&mut self, wanted: impl Fn(u64) -> bool) {
        for s in self.sites.values_mut() {
            let Some(nr) = s.info.setup_nr else {
                continue;
            };
            let on = wanted(nr);
            if on != s.bound {
                bind(&s.hook, s.info, on);
                s.bound = on;
            }
        }
    }

    /// Whether the syscall instruction at `addr` is hooked, and how.
    pub fn site_kind(&self, addr: usize) -> Option<SiteKind> {
        self.sites.get(&addr).map(|s| s.kind())
    }

    /// The hooked syscall addresses.
    pub fn site_addrs(&self) -> Vec<usize> {
        self.sites.keys().copied().collect()
    }
}

/// Installs the hook of one site, with its handler; `traps`: trap sites
/// allowed.
fn install(site: &SyscallSite, traps: bool) -> Result<(Hook, &'static SiteInfo), HookError> {
    let opts = HookOptions {
        func_range: Some(site.func_range.clone()),
        function_entry: false,
    };
    if let Some(setup) = site.setup {
        let ext = ExtOptions {
            traps: TrapPolicy::Never,
            inner: true,
            syscall: true,
        };
        // SAFETY: the `mov` is an instruction boundary of the function
        // (decoded from its start), in module text nobody else modifies.
        if let Ok(hook) = unsafe { Hook::install_ext(setup.addr, &opts, &ext, None) } {
            // The jump covers the `mov` alone (5 bytes or more).
            if hook.displaced_end() == site.addr {
                let info = publish(&hook, site.addr, site.addr + 2, Some(setup.nr));
                return Ok((hook, info));
            }
            let _ = hook.remove();
        }
    }
    let ext = ExtOptions {
        traps: match (traps, site.needs_trap) {
            (false, _) => TrapPolicy::Never,
            (true, true) => TrapPolicy::Always,
            (true, false) => TrapPolicy::Fallback,
        },
        // An unwind table's function start may be a `.cold` part, entered
        // by a jump: the inner stub everywhere (a syscall dwarfs the
        // difference).
        inner: true,
        syscall: false,
    };
    // Installed without a handler first: the resume address depends on
    // where the engine put the relocated code.
    // SAFETY: `site.addr` is a `syscall` instruction boundary of the
    // function `func_range` (decoded from its start, bounds from the
    // module's unwind table), in module text nobody else modifies.
    let hook = unsafe { Hook::install_ext(site.addr, &opts, &ext, None)? };
    let next = site.addr + 2;
    let resume = if hook.is_trap() {
        // Only the first byte is patched: the next instruction is intact.
        next
    } else {
        match hook.relocated_address(next) {
            Some(r) => r,
            // The displaced range ends right after the syscall: the
            // original next instruction is intact.
            None if hook.displaced_end() == next => next,
            None => {
                let _ = hook.remove();
                return Err(HookError::Unsupported(
                    "no relocated copy of the instruction after the syscall",
                ));
            }
        }
    };
    let info = publish(&hook, site.addr, resume, None);
    Ok((hook, info))
}

/// Gives `hook` the handler of the syscall at `addr`.
fn publish(hook: &Hook, addr: usize, resume: usize, setup_nr: Option<u64>) -> &'static SiteInfo {
    let info: &'static SiteInfo = Box::leak(Box::new(SiteInfo {
        addr,
        resume,
        setup_nr,
    }));
    bind(hook, info, true);
    info
}

/// Binds (or unbinds) the handler of a site.
fn bind(hook: &Hook, info: &'static SiteInfo, on: bool) {
    let data = info as *const SiteInfo as *mut c_void;
    let handler = on.then(|| match info.setup_nr {
        // SAFETY: setup sites are installed with `ExtOptions::syscall`.
        Some(_) => unsafe { HookHandler::for_syscall_site(on_setup_site, data) },
        None => HookHandler::new(on_site, data),
    });
    // SAFETY: the handlers are callable from any thread at any time with
    // a leaked SiteInfo; without a handler the syscall runs natively in
    // the trampoline (or in place, for a hook on the `mov`).
    unsafe { hook.set_handler(handler) };
}
