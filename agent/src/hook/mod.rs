//! x86-64 inline hooks: uprobes and uretprobes inside the process.
//!
//! A hook replaces 5 bytes at a site with `jmp rel32` to a per-site
//! trampoline, allocated within reach of the site: an entry stub
//! (`stub`) that builds a [`PtRegs`] and calls the handler, followed by
//! the displaced instructions re-encoded for their new address
//! (`relocate`) and a jump back. Patching is safe while other threads run
//! the code (`patch`). Return hooks keep the original return address on
//! a per-thread shadow stack and call the function so that it returns into
//! the trampoline (`uretprobe`). docs/hooks.md describes the design.
//!
//! Where 5 bytes are not available (a 1-byte USDT `nop` before a `ret`, a
//! function that is just `ret`, a branch target inside the 5 bytes), the
//! hook is a *trap site* instead: the first instruction's first byte becomes
//! `int3`, and the SIGTRAP handler (`patch`) builds the `PtRegs`, runs the
//! handlers and resumes at the relocated copy of the instruction, as the
//! kernel does for every uprobe.
//!
//! One hook per address; the handler (function and data) is published with
//! one atomic pointer store, so it can be swapped or detached while other
//! threads run the hooked code.

mod error;
pub(crate) mod maps;
mod patch;
mod regs;
mod relocate;
mod stub;
pub(crate) mod thread;
mod trampoline;
mod uretprobe;

pub use error::HookError;
pub use patch::{
    app_sigaction_trap, defer_membarrier, register_membarrier, trap_redirects, trap_site_hits,
};
pub use regs::{PtRegs, Redirect};
pub use uretprobe::{shadow_depth, CAPACITY as SHADOW_CAPACITY};

use core::ffi::c_void;
use core::ops::Range;
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

/// A hook handler. `ctx` is the `pt_regs` of the hit; the handler may change
/// any general register in it, and `ip` (see [`Redirect::override_return`]).
/// It must not unwind: a Rust `extern "C"` function that panics aborts.
pub type HookFn = unsafe extern "C" fn(ctx: *mut PtRegs, data: *mut c_void);

/// The handler of a hook installed with [`ExtOptions::syscall`]: called
/// with [`SyscallPhase::ENTRY`] when the site is reached (`ctx` as for a
/// [`HookFn`]), it answers what the stub does next ([`SyscallAction`]);
/// called again with [`SyscallPhase::EXIT`] after a call the stub made for
/// [`SyscallAction::CallThenExit`], with `ax` the call's result (which it
/// may change); its answer is then ignored.
pub type SyscallSiteFn =
    unsafe extern "C" fn(ctx: *mut PtRegs, data: *mut c_void, phase: SyscallPhase) -> SyscallAction;

/// Which half of a syscall a [`SyscallSiteFn`] is called for.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyscallPhase(pub u64);

impl SyscallPhase {
    pub const ENTRY: SyscallPhase = SyscallPhase(0);
    pub const EXIT: SyscallPhase = SyscallPhase(1);
}

/// What the syscall stub does after a [`SyscallSiteFn`]'s entry call.
/// (1 is the stub's own mark of the exit phase; bit 0 of a call means
/// "then the exit phase".)
#[repr(u64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyscallAction {
    /// As any hook: resume at `ip` (unchanged: the displaced instructions
    /// and the original `syscall` run), with the registers of `ctx`.
    Handled = 0,
    /// Make the call `ctx` describes (`orig_ax`, `di si dx r10 r8 r9`)
    /// from the trampoline, put its result in `ax`, and resume after the
    /// original `syscall` with the registers of `ctx` (the handler sets
    /// `cx` and `r11` as the instruction would).
    Call = 2,
    /// As `Call`, then the exit phase.
    CallThenExit = 3,
}

/// A handler and its data, installed together.
#[derive(Clone, Copy, Debug)]
pub struct HookHandler {
    pub func: HookFn,
    pub data: *mut c_void,
}

impl HookHandler {
    pub fn new(func: HookFn, data: *mut c_void) -> Self {
        HookHandler { func, data }
    }

    /// The handler of a hook installed with [`ExtOptions::syscall`].
    ///
    /// # Safety
    /// Only for such hooks: their stub calls `func` with its three
    /// arguments; any other site would call it as a [`HookFn`].
    pub unsafe fn for_syscall_site(func: SyscallSiteFn, data: *mut c_void) -> Self {
        HookHandler {
            // SAFETY: function pointers of one size; the caller guarantees
            // it is only ever called through the syscall stub, with the
            // signature it was defined with.
            func: unsafe { core::mem::transmute::<SyscallSiteFn, HookFn>(func) },
            data,
        }
    }
}

/// The published form of a handler: immutable once published, and never
/// freed while its site exists (sites are never freed), so a thread that
/// loaded the pointer can always use it.
#[repr(C)]
pub(crate) struct Binding {
    pub func: HookFn,
    pub data: *mut c_void,
}

/// Per-site data the stubs read (at fixed offsets: binding 0, ret_binding
/// 8, ip 16, missed 24). Leaked: it outlives every thread that might still
/// be running the trampoline.
#[repr(C, align(64))]
pub(crate) struct SiteData {
    /// +0: the entry handler (null: none).
    pub binding: AtomicPtr<Binding>,
    /// +8: the return handler (null: none).
    pub ret_binding: AtomicPtr<Binding>,
    /// The probed address.
    pub ip: u64,
    /// Return hooks that could not be armed (shadow stack full or not
    /// allocatable).
    pub missed: AtomicU64,
    /// Trap sites: where the SIGTRAP handler resumes (the relocated copy of
    /// the instruction under the `int3`). 0 for jump sites.
    pub resume: usize,
    /// The site is a function entry (return handlers are armed there).
    pub entry: bool,
}

const _: () = {
    assert!(core::mem::offset_of!(SiteData, binding) == 0);
    assert!(core::mem::offset_of!(SiteData, ret_binding) == 8);
    assert!(core::mem::offset_of!(SiteData, ip) == 16);
    assert!(core::mem::offset_of!(SiteData, missed) == 24);
};

/// How to treat a site.
#[derive(Clone, Debug, Default)]
pub struct HookOptions {
    /// The function containing the site, when known (from the symbol
    /// table). The whole function is then scanned, and sites whose patch
    /// would overwrite a branch target of the function or cross its end are
    /// refused. Without it only the displaced instructions are checked.
    pub func_range: Option<Range<usize>>,
    /// The site is a function's entry (also implied by
    /// `func_range.start == addr`). Entry sites get the lighter stub and may
    /// have a return handler.
    pub function_entry: bool,
}

/// When a site becomes a trap site (`int3` on its first byte).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TrapPolicy {
    /// Where a jump does not fit.
    #[default]
    Fallback,
    /// Always, even where a jump would fit.
    Always,
    /// Never: where a jump does not fit the site is refused (the error
    /// says why). For code that may run with SIGTRAP blocked (glibc blocks
    /// every signal around thread creation and exit), where an `int3`
    /// would have the kernel kill the process.
    Never,
}

/// Choices beyond [`HookOptions`], for [`Hook::install_ext`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExtOptions {
    pub traps: TrapPolicy,
    /// The inner stub (red zone stepped over, flags and every vector
    /// register kept) even at `func_range.start`: for code that may be
    /// entered by a jump rather than a call (an unwind table's "function"
    /// can be a compiler-split `.cold` part). No return handler then.
    pub inner: bool,
    /// The displaced instructions are followed by a `syscall` instruction
    /// (they set its number up): the inner stub's variant whose handler
    /// ([`HookHandler::for_syscall_site`]) may have the call made from the
    /// trampoline, after which execution jumps past that `syscall`. No
    /// trap sites: where a jump does not fit the site is refused.
    pub syscall: bool,
}

/// A live hook's footprint in the code.
struct Live {
    /// End of the displaced range.
    end: usize,
    /// The original bytes from the patch address: 5 under a jump, 1 under
    /// a trap site's `int3` (the rest are unused).
    original: [u8; 5],
    patched: usize,
}

struct Control {
    pool: trampoline::Pool,
    /// Live hooks by patch address.
    live: BTreeMap<usize, Live>,
}

static CONTROL: Mutex<Control> = Mutex::new(Control {
    pool: trampoline::Pool::new(),
    live: BTreeMap::new(),
});

fn control() -> MutexGuard<'static, Control> {
    CONTROL.lock().unwrap_or_else(|e| e.into_inner())
}

/// An installed hook. Dropping it removes it.
pub struct Hook {
    site: &'static SiteData,
    addr: usize,
    patch_addr: usize,
    len: usize,
    original: [u8; 5],
    trampoline: usize,
    /// The relocated copy of the displaced instructions.
    displaced: usize,
    /// Each displaced instruction's original address and the address of
    /// its relocated copy.
    relocated: Vec<(usize, usize)>,
    entry: bool,
    /// A trap site (`int3` on the first byte) rather than a jump.
    trap: bool,
    /// Every binding this hook published, reused when a handler comes back.
    bindings: Mutex<Vec<&'static Binding>>,
    removed: bool,
}

// SAFETY: the raw pointers in a Hook are the caller's handler data, which
// the install contract makes callable from any thread; the rest is
// immutable or behind atomics and a mutex.
unsafe impl Send for Hook {}
// SAFETY: as above.
unsafe impl Sync for Hook {}

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hook")
            .field("addr", &format_args!("{:#x}", self.addr))
            .field("patch_addr", &format_args!("{:#x}", self.patch_addr))
            .field("len", &self.len)
            .field("trampoline", &format_args!("{:#x}", self.trampoline))
            .field("entry", &self.entry)
            .field("trap", &self.trap)
            .finish()
    }
}

impl Control {
    /// The live hook whose displaced range overlaps `[a, b)`.
    fn overlapping(&self, a: usize, b: usize) -> Option<usize> {
        self.live
            .range(..b)
            .next_back()
            .filter(|(_, l)| l.end > a)
            .map(|(&p, _)| p)
    }

    /// Reads `len` bytes at `addr` from one executable mapping (clamped to
    /// its end), as they were before any of our hooks patched them.
    fn read_code(
        &self,
        all: &[maps::Mapping],
        addr: usize,
        len: usize,
    ) -> Result<Vec<u8>, HookError> {
        let m = maps::find(all, addr).ok_or(HookError::NotMapped { addr })?;
        if !m.read || !m.exec {
            return Err(HookError::NotExecutable { addr });
        }
        // Code can span several adjacent mappings: patching a page
        // (mprotect, copy-on-write) splits the kernel's mapping of a text
        // segment, and a function may cross the split.
        let mut end = m.end;
        while end < addr.saturating_add(len) {
            match maps::find(all, end) {
                Some(next) if next.start == end && next.read && next.exec => end = next.end,
                _ => break,
            }
        }
        let n = len.min(end - addr);
        // SAFETY: [addr, addr + n) lies in adjacent readable mappings.
        let mut v = unsafe { core::slice::from_raw_parts(addr as *const u8, n) }.to_vec();
        for (&p, l) in self.live.range(addr.saturating_sub(5)..addr + n) {
            for (i, &byte) in l.original.iter().take(l.patched).enumerate() {
                if let Some(slot) = (p + i).checked_sub(addr).and_then(|o| v.get_mut(o)) {
                    *slot = byte;
                }
            }
        }
        Ok(v)
    }
}

impl Hook {
    /// Hooks the instruction at `addr` with `handler`, as an arbitrary
    /// instruction boundary of an unknown function (the inner stub, no
    /// return hooks); see [`Hook::install_with`] for function entries.
    ///
    /// # Safety
    /// As for [`Hook::install_with`].
    pub unsafe fn install(addr: usize, handler: HookHandler) -> Result<Hook, HookError> {
        // SAFETY: forwarded contract.
        unsafe { Self::install_with(addr, &HookOptions::default(), Some(handler)) }
    }

    /// Hooks the instruction at `addr`: from now on every thread that
    /// reaches it calls the handler (if any) first, then runs the
    /// instruction.
    ///
    /// A jump site where 5 bytes are available; otherwise (too short, the
    /// function's end or a branch target within 5 bytes, another hook's
    /// patch there) a trap site, `int3` on the first byte, whose hits go
    /// through SIGTRAP ([`Hook::is_trap`], docs/hooks.md).
    ///
    /// # Safety
    /// `addr` must be the start of an instruction in code that is not
    /// modified by anyone else while hooked, and `options` must be true
    /// (a wrong `func_range` or `function_entry` makes the hook corrupt the
    /// program). The handler must be safe to call from any thread, at any
    /// time until it is replaced, with its data.
    pub unsafe fn install_with(
        addr: usize,
        options: &HookOptions,
        handler: Option<HookHandler>,
    ) -> Result<Hook, HookError> {
        // SAFETY: forwarded contract.
        unsafe { Self::install_impl(addr, options, handler, ExtOptions::default()) }
    }

    /// As [`Hook::install_with`], with the choices of `ext` (the default
    /// `ext` is `install_with`).
    ///
    /// # Safety
    /// As for [`Hook::install_with`]; with `ext.inner`, `addr` may be a
    /// function's first instruction or not.
    pub unsafe fn install_ext(
        addr: usize,
        options: &HookOptions,
        ext: &ExtOptions,
        handler: Option<HookHandler>,
    ) -> Result<Hook, HookError> {
        // SAFETY: forwarded contract.
        unsafe { Self::install_impl(addr, options, handler, *ext) }
    }

    /// # Safety
    /// As for [`Hook::install_with`].
    unsafe fn install_impl(
        addr: usize,
        options: &HookOptions,
        handler: Option<HookHandler>,
        ext: ExtOptions,
    ) -> Result<Hook, HookError> {
        let traps = ext.traps;
        let entry = !ext.inner
            && (options.function_entry
                || options.func_range.as_ref().is_some_and(|r| r.start == addr));
        let variant = if ext.syscall {
            stub::Variant::Syscall
        } else if entry {
            stub::Variant::Entry
        } else {
            stub::Variant::Inner
        };
        if ext.syscall && traps != TrapPolicy::Never {
            return Err(HookError::Unsupported(
                "a syscall site hook is never a trap site",
            ));
        }
        let xsave_size = stub::xsave_size();
        let mut ctl = control();
        if let Some(other) = ctl.overlapping(addr, addr + 1) {
            return Err(HookError::AlreadyHooked { addr, other });
        }
        let all = maps::read()?;
        let code = ctl.read_code(&all, addr, 64)?;
        let func_bytes;
        let func = match &options.func_range {
            Some(r) => {
                if !r.contains(&addr) {
                    return Err(HookError::OutsideFunction {
                        addr,
                        start: r.start,
                        end: r.end,
                    });
                }
                func_bytes = ctl.read_code(&all, r.start, r.len())?;
                if func_bytes.len() < r.len() {
                    return Err(HookError::NotMapped {
                        addr: r.start + func_bytes.len(),
                    });
                }
                Some((r.clone(), &func_bytes[..]))
            }
            None => None,
        };
        if traps == TrapPolicy::Always {
            let plan = relocate::plan_trap(addr, &code, func)?;
            // SAFETY: forwarded contract.
            return unsafe { Self::install_trap(ctl, addr, entry, plan, &code, handler) };
        }
        let plan = relocate::plan(addr, &code, func.clone()).and_then(|p| {
            match ctl.overlapping(p.patch_addr, p.patch_addr + p.len) {
                Some(other) => Err(HookError::AlreadyHooked { addr, other }),
                None => Ok(p),
            }
        });
        let plan = match plan {
            Ok(p) => p,
            Err(e)
                if traps == TrapPolicy::Fallback
                    && relocate::trap_can_help(&e, relocate::patch_start(addr, &code)) =>
            {
                let plan = relocate::plan_trap(addr, &code, func)?;
                // SAFETY: forwarded contract.
                return unsafe { Self::install_trap(ctl, addr, entry, plan, &code, handler) };
            }
            Err(e) => return Err(e),
        };
        let (pa, pe) = (plan.patch_addr, plan.patch_addr + plan.len);
        if ext.syscall && code.get(pe - addr..pe - addr + 2) != Some(&[0x0f, 0x05][..]) {
            return Err(HookError::Unsupported(
                "the displaced instructions are not followed by a syscall",
            ));
        }
        // The stub reads the site through this; leaked on purpose.
        let site: &'static SiteData = Box::leak(Box::new(SiteData {
            binding: AtomicPtr::new(core::ptr::null_mut()),
            ret_binding: AtomicPtr::new(core::ptr::null_mut()),
            ip: addr as u64,
            missed: AtomicU64::new(0),
            resume: 0,
            entry,
        }));
        let stub_len = stub::len(variant);
        let reserve = stub_len + relocate::MAX_RELOCATED;
        let placement = trampoline::Placement::new(pa, &plan.interior, &plan.rip_targets, reserve);
        let tramp = ctl.pool.alloc(&placement, reserve)?;
        let built = (|| {
            let params = stub::StubParams {
                site_ip: addr as u64,
                site_data: site as *const SiteData as u64,
                ts_off: i32::try_from(thread::state_offset())
                    .map_err(|_| HookError::Unsupported("TLS block beyond ±2 GiB of fs"))?,
                errno_off: i32::try_from(thread::errno_offset())
                    .map_err(|_| HookError::Unsupported("errno outside static TLS"))?,
                ret_prepare: uretprobe::ret_prepare as *const () as u64,
                ret_tramp: uretprobe::trampoline() as u64,
                xsave_size,
                stub_addr: tramp as u64,
                // After the `syscall` that follows (syscall stubs only).
                resume: (pe + 2) as u64,
            };
            let mut code = stub::instantiate(variant, &params)?;
            let rel = relocate::relocate(&plan, (tramp + stub_len) as u64)?;
            code.extend_from_slice(&rel.code);
            Ok::<_, HookError>((code, rel))
        })();
        let (tcode, rel) = match built {
            Ok(x) => x,
            Err(e) => {
                ctl.pool.release(tramp);
                return Err(e);
            }
        };
        let displaced = tramp + stub_len;
        let relocated = plan
            .insns
            .iter()
            .zip(&rel.offsets)
            .map(|(i, &o)| (i.ip() as usize, displaced + o as usize))
            .collect();
        let disp = (tramp as i64 - (pa + relocate::JMP_LEN) as i64) as i32;
        let d = disp.to_le_bytes();
        let jump = [0xe9, d[0], d[1], d[2], d[3]];
        let result = (|| {
            if plan.interior.iter().any(|&k| jump[k] != 0xcc) {
                return Err(HookError::Relocation {
                    addr: pa,
                    reason: "trampoline placement broke the int3 constraint".into(),
                });
            }
            ctl.pool.write(tramp, &tcode)?;
            ctl.pool.shrink(tramp, tcode.len());
            let mut original = [0u8; 5];
            original.copy_from_slice(code.get(pa - addr..pa - addr + 5).ok_or(
                HookError::TooShort {
                    addr: pa,
                    available: code.len(),
                },
            )?);
            patch::set_trap(pa, tramp)?;
            for (i, insn) in plan.insns.iter().enumerate() {
                let k = insn.ip() as usize - pa;
                if plan.interior.contains(&k) {
                    let off = rel.offsets.get(i).copied().unwrap_or(0) as usize;
                    patch::set_trap(pa + k, displaced + off)?;
                }
            }
            patch::ensure_trap_handler()?;
            uretprobe::init();
            patch::write_jump(pa, jump, &plan.interior)?;
            Ok(original)
        })();
        let original = match result {
            Ok(o) => o,
            Err(e) => {
                ctl.pool.release(tramp);
                return Err(e);
            }
        };
        ctl.live.insert(
            pa,
            Live {
                end: pe,
                original,
                patched: relocate::JMP_LEN,
            },
        );
        drop(ctl);
        let hook = Hook {
            site,
            addr,
            patch_addr: pa,
            len: plan.len,
            original,
            trampoline: tramp,
            displaced,
            relocated,
            entry,
            trap: false,
            bindings: Mutex::new(Vec::new()),
            removed: false,
        };
        // SAFETY: forwarded contract.
        unsafe { hook.set_handler(handler) };
        Ok(hook)
    }

    /// Installs a trap site: the planned instruction is relocated to a
    /// trampoline of its own (followed by a jump back), and its first byte
    /// becomes `int3`, whose SIGTRAP runs the handlers (`patch`). `code`
    /// holds the original bytes from `addr` on.
    ///
    /// # Safety
    /// As for [`Hook::install_with`].
    unsafe fn install_trap(
        mut ctl: MutexGuard<'static, Control>,
        addr: usize,
        entry: bool,
        plan: relocate::Plan,
        code: &[u8],
        handler: Option<HookHandler>,
    ) -> Result<Hook, HookError> {
        let (pa, pe) = (plan.patch_addr, plan.patch_addr + plan.len);
        if let Some(other) = ctl.overlapping(pa, pe) {
            return Err(HookError::AlreadyHooked { addr, other });
        }
        let mut original = [0u8; 5];
        for (o, c) in original
            .iter_mut()
            .zip(code.get(pa - addr..).unwrap_or(&[]))
        {
            *o = *c;
        }
        let reserve = relocate::MAX_RELOCATED;
        let placement = trampoline::Placement::new(pa, &[], &plan.rip_targets, reserve);
        let tramp = ctl.pool.alloc(&placement, reserve)?;
        let relocated = plan
            .insns
            .first()
            .map(|i| vec![(i.ip() as usize, tramp)])
            .unwrap_or_default();
        let result = (|| {
            let rel = relocate::relocate(&plan, tramp as u64)?;
            ctl.pool.write(tramp, &rel.code)?;
            ctl.pool.shrink(tramp, rel.code.len());
            // Read by the SIGTRAP handler; leaked on purpose.
            let site: &'static SiteData = Box::leak(Box::new(SiteData {
                binding: AtomicPtr::new(core::ptr::null_mut()),
                ret_binding: AtomicPtr::new(core::ptr::null_mut()),
                ip: addr as u64,
                missed: AtomicU64::new(0),
                resume: tramp,
                entry,
            }));
            patch::ensure_trap_handler()?;
            uretprobe::init();
            patch::set_trap_site(pa, site)?;
            if let Err(e) = patch::write_byte(pa, 0xcc) {
                // Nothing was written: the entry goes back to a plain
                // redirect.
                let _ = patch::set_trap(pa, tramp);
                return Err(e);
            }
            Ok(site)
        })();
        let site = match result {
            Ok(s) => s,
            Err(e) => {
                ctl.pool.release(tramp);
                return Err(e);
            }
        };
        ctl.live.insert(
            pa,
            Live {
                end: pe,
                original,
                patched: 1,
            },
        );
        drop(ctl);
        let hook = Hook {
            site,
            addr,
            patch_addr: pa,
            len: plan.len,
            original,
            trampoline: tramp,
            displaced: tramp,
            relocated,
            entry,
            trap: true,
            bindings: Mutex::new(Vec::new()),
            removed: false,
        };
        // SAFETY: forwarded contract.
        unsafe { hook.set_handler(handler) };
        Ok(hook)
    }

    fn binding_for(&self, h: Option<HookHandler>) -> *mut Binding {
        let Some(h) = h else {
            return core::ptr::null_mut();
        };
        let mut v = self.bindings.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = v
            .iter()
            .find(|b| core::ptr::fn_addr_eq(b.func, h.func) && b.data == h.data)
        {
            return *b as *const Binding as *mut Binding;
        }
        let b: &'static Binding = Box::leak(Box::new(Binding {
            func: h.func,
            data: h.data,
        }));
        v.push(b);
        b as *const Binding as *mut Binding
    }

    /// Replaces the entry handler (`None` detaches it) with one atomic
    /// store: a thread sees the old or the new handler with its own data,
    /// never a mix. A thread already inside the old handler finishes it.
    ///
    /// Every distinct handler a hook has had stays allocated (16 bytes)
    /// until the process exits; setting the same one again reuses it.
    ///
    /// # Safety
    /// As for the handler of [`Hook::install_with`].
    pub unsafe fn set_handler(&self, handler: Option<HookHandler>) {
        let b = self.binding_for(handler);
        self.site.binding.store(b, Ordering::Release);
    }

    /// Sets the return handler (`None` detaches it), called when the hooked
    /// function returns, with `ax` (`PT_REGS_RC`) the return value (the
    /// handler may change it), `ip` the return address and `sp` the stack
    /// pointer after the return. Calls already in flight when it is set are
    /// not reported; calls in flight when it is detached return normally.
    ///
    /// # Safety
    /// As for the handler of [`Hook::install_with`].
    pub unsafe fn set_return_handler(&self, handler: Option<HookHandler>) -> Result<(), HookError> {
        if !self.entry {
            return Err(HookError::NotFunctionEntry { addr: self.addr });
        }
        if self.removed {
            return Err(HookError::Removed);
        }
        let b = self.binding_for(handler);
        self.site.ret_binding.store(b, Ordering::Release);
        Ok(())
    }

    /// Removes the hook: detaches both handlers and writes the original
    /// bytes back. Threads still in the trampoline finish there; its memory
    /// is never reused.
    pub fn remove(mut self) -> Result<(), HookError> {
        self.remove_inner()
    }

    fn remove_inner(&mut self) -> Result<(), HookError> {
        if self.removed {
            return Ok(());
        }
        self.site
            .binding
            .store(core::ptr::null_mut(), Ordering::Release);
        self.site
            .ret_binding
            .store(core::ptr::null_mut(), Ordering::Release);
        let mut ctl = control();
        // A thread that traps on the transient int3 (or, at a trap site,
        // on the int3 before the original byte is back, with the signal
        // delivered after) goes to the displaced instructions, skipping
        // the (detached) stub or handlers.
        patch::set_trap(self.patch_addr, self.displaced)?;
        patch::ensure_trap_handler()?;
        if self.trap {
            patch::write_byte(self.patch_addr, self.original[0])?;
        } else {
            patch::write_original(self.patch_addr, self.original)?;
        }
        ctl.live.remove(&self.patch_addr);
        self.removed = true;
        Ok(())
    }

    /// Drops the hook without touching the code: for a site whose mapping
    /// went away (`dlclose`), where writing the original bytes back would
    /// hit unmapped memory or whatever was mapped there since.
    pub fn forget(mut self) {
        self.site
            .binding
            .store(core::ptr::null_mut(), Ordering::Release);
        self.site
            .ret_binding
            .store(core::ptr::null_mut(), Ordering::Release);
        let mut ctl = control();
        ctl.live.remove(&self.patch_addr);
        let patched = if self.trap { 1 } else { relocate::JMP_LEN };
        patch::clear_traps(self.patch_addr..self.patch_addr + patched);
        self.removed = true;
    }

    /// The probed address.
    pub fn addr(&self) -> usize {
        self.addr
    }

    /// Where the jump (or a trap site's `int3`) was written (after an
    /// `endbr64`, `addr + 4`).
    pub fn patch_addr(&self) -> usize {
        self.patch_addr
    }

    /// Bytes of original code the jump displaced.
    pub fn displaced_len(&self) -> usize {
        self.len
    }

    /// The trampoline's address.
    pub fn trampoline(&self) -> usize {
        self.trampoline
    }

    /// Where the relocated copy of the displaced instruction that was at
    /// `orig` lives in the trampoline (None: `orig` is not the start of a
    /// displaced instruction). A handler that skips the probed instruction
    /// resumes at the copy of the next one when the jump displaced it too:
    /// its original bytes are overwritten. A trap site displaces only the
    /// probed instruction.
    pub fn relocated_address(&self, orig: usize) -> Option<usize> {
        self.relocated
            .iter()
            .find(|&&(o, _)| o == orig)
            .map(|&(_, r)| r)
    }

    /// The end of the displaced range: the first original byte the
    /// trampoline jumps back to.
    pub fn displaced_end(&self) -> usize {
        self.patch_addr + self.len
    }

    /// Whether this is a trap site: `int3` on the first byte and the
    /// handlers run from the SIGTRAP handler (a signal per hit), used where
    /// a 5-byte jump does not fit.
    pub fn is_trap(&self) -> bool {
        self.trap
    }

    /// Whether the site was treated as a function entry.
    pub fn is_function_entry(&self) -> bool {
        self.entry
    }

    /// Calls whose return hook could not be armed.
    pub fn missed_returns(&self) -> u64 {
        self.site.missed.load(Ordering::Relaxed)
    }
}

impl Drop for Hook {
    fn drop(&mut self) {
        let _ = self.remove_inner();
    }
}
