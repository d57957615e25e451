//! Probe sites: one inline hook per probed address, and the programs its
//! handlers run.
//!
//! A site's handlers get a [`SiteCtl`] as their data: it lives as long as
//! the process (one per address ever probed) and holds two atomic pointers
//! to immutable [`LinkSet`]s, entry and return. Attaching or detaching a
//! link publishes a new set with one store; the old one is freed after a
//! grace period ([`crate::grace`]).

use core::ffi::c_void;
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use userbpf_runtime::helpers::run_info::RunInfo;
use userbpf_runtime::image::LoadedProgram;

use crate::grace;
use crate::hook::{Hook, HookError, HookHandler, HookOptions, PtRegs, Redirect};

/// One link's program at a site.
#[derive(Clone)]
pub struct LinkRun {
    pub link_id: u32,
    pub prog_id: u32,
    pub cookie: u64,
    pub prog: Arc<LoadedProgram>,
}

impl LinkRun {
    fn key(&self) -> (u32, u32, u64) {
        (self.link_id, self.prog_id, self.cookie)
    }
}

/// What a handler runs, in link order. Immutable once published.
pub struct LinkSet {
    runs: Vec<LinkRun>,
}

/// The handlers' data for one address; never freed.
pub struct SiteCtl {
    entry: AtomicPtr<LinkSet>,
    ret: AtomicPtr<LinkSet>,
    /// `bpf_get_func_ip`: the probed address.
    func_ip: u64,
    /// Program runs that failed (a VM error: the kernel would have refused
    /// the program, or a helper misbehaved).
    pub errors: AtomicU64,
}

fn ctl_for(addr: usize) -> &'static SiteCtl {
    static CTLS: Mutex<Option<HashMap<usize, &'static SiteCtl>>> = Mutex::new(None);
    let mut g = CTLS.lock().unwrap_or_else(|e| e.into_inner());
    g.get_or_insert_with(HashMap::new)
        .entry(addr)
        .or_insert_with(|| {
            Box::leak(Box::new(SiteCtl {
                entry: AtomicPtr::new(core::ptr::null_mut()),
                ret: AtomicPtr::new(core::ptr::null_mut()),
                func_ip: addr as u64,
                errors: AtomicU64::new(0),
            }))
        })
}

/// Runs every program of `set` with `regs` as context.
///
/// # Safety
/// `regs` is the live pt_regs of the hit; `set` is protected by the
/// caller's grace-period registration.
#[inline(always)]
unsafe fn run_set(ctl: &SiteCtl, set: &LinkSet, regs: *mut PtRegs, entry: bool) {
    let mut info = RunInfo {
        func_ip: ctl.func_ip,
        regs,
        ..RunInfo::default()
    };
    for r in &set.runs {
        info.attach_cookie = r.cookie;
        // SAFETY: pt_regs is valid for the whole run; `info` outlives it.
        let res = unsafe {
            r.prog.run(
                regs.cast::<u8>(),
                core::mem::size_of::<PtRegs>(),
                info.as_user_ptr(),
            )
        };
        if res.is_err() {
            ctl.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
    if entry {
        if let Some(rc) = info.override_return() {
            // SAFETY: the hit's pt_regs (caller).
            unsafe { (*regs).override_return(rc) };
        }
    }
}

unsafe extern "C" fn on_entry(regs: *mut PtRegs, data: *mut c_void) {
    if !grace::enter() {
        return;
    }
    // SAFETY: the data of our handlers is always a leaked SiteCtl.
    let ctl = unsafe { &*(data as *const SiteCtl) };
    let set = ctl.entry.load(Ordering::Acquire);
    // SAFETY: a published set is not freed before this thread leaves the
    // handler (grace period); `regs` is the hook's.
    if let Some(set) = unsafe { set.as_ref() } {
        unsafe { run_set(ctl, set, regs, true) };
    }
}

unsafe extern "C" fn on_return(regs: *mut PtRegs, data: *mut c_void) {
    if !grace::enter() {
        return;
    }
    // SAFETY: as in on_entry.
    let ctl = unsafe { &*(data as *const SiteCtl) };
    let set = ctl.ret.load(Ordering::Acquire);
    // SAFETY: as in on_entry.
    if let Some(set) = unsafe { set.as_ref() } {
        unsafe { run_set(ctl, set, regs, false) };
    }
}

/// How to hook an address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SiteShape {
    pub func_range: Option<std::ops::Range<usize>>,
    pub function_entry: bool,
}

/// An installed site.
pub struct Site {
    hook: Hook,
    ctl: &'static SiteCtl,
    shape: SiteShape,
    file: (u64, u64),
    entry: Vec<LinkRun>,
    ret: Vec<LinkRun>,
}

/// Link sets waiting for a grace period before they are freed.
#[derive(Default)]
pub struct Retired(Vec<*mut LinkSet>);

// SAFETY: the pointers are owned boxes handed over for freeing.
unsafe impl Send for Retired {}

impl Retired {
    fn push(&mut self, p: *mut LinkSet) {
        if !p.is_null() {
            self.0.push(p);
        }
    }

    /// Frees everything after a grace period; leaks it if a thread stays
    /// inside a handler too long (a stopped thread, say).
    pub fn reclaim(&mut self) {
        if self.0.is_empty() {
            return;
        }
        if grace::synchronize(Duration::from_millis(200)) {
            for p in self.0.drain(..) {
                // SAFETY: came from Box::into_raw in `publish`, unpublished
                // and past its grace period.
                drop(unsafe { Box::from_raw(p) });
            }
        } else {
            self.0.clear();
        }
    }
}

fn publish(slot: &AtomicPtr<LinkSet>, runs: &[LinkRun], retired: &mut Retired) {
    let new = if runs.is_empty() {
        core::ptr::null_mut()
    } else {
        Box::into_raw(Box::new(LinkSet {
            runs: runs.to_vec(),
        }))
    };
    retired.push(slot.swap(new, Ordering::AcqRel));
}

fn same(a: &[LinkRun], b: &[LinkRun]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.key() == y.key())
}

impl Site {
    /// Hooks `addr`.
    ///
    /// # Safety
    /// `addr` is an instruction boundary of code nobody else modifies, and
    /// `shape` is true of it (the hook engine's contract).
    pub unsafe fn install(
        addr: usize,
        shape: SiteShape,
        file: (u64, u64),
    ) -> Result<Site, HookError> {
        let ctl = ctl_for(addr);
        let opts = HookOptions {
            func_range: shape.func_range.clone(),
            function_entry: shape.function_entry,
        };
        // SAFETY: forwarded contract; handlers come with `set_links`.
        let hook = unsafe { Hook::install_with(addr, &opts, None)? };
        Ok(Site {
            hook,
            ctl,
            shape,
            file,
            entry: Vec::new(),
            ret: Vec::new(),
        })
    }

    pub fn shape(&self) -> &SiteShape {
        &self.shape
    }

    pub fn ctl(&self) -> &'static SiteCtl {
        self.ctl
    }

    /// Makes the site run `entry` at the call and `ret` at the return.
    pub fn set_links(
        &mut self,
        entry: Vec<LinkRun>,
        ret: Vec<LinkRun>,
        retired: &mut Retired,
    ) -> Result<(), HookError> {
        if !same(&self.ret, &ret) {
            if self.ret.is_empty() && !ret.is_empty() {
                let handler =
                    HookHandler::new(on_return, self.ctl as *const SiteCtl as *mut c_void);
                publish(&self.ctl.ret, &ret, retired);
                // SAFETY: as for the entry handler.
                if let Err(e) = unsafe { self.hook.set_return_handler(Some(handler)) } {
                    publish(&self.ctl.ret, &[], retired);
                    return Err(e);
                }
            } else {
                publish(&self.ctl.ret, &ret, retired);
                if ret.is_empty() {
                    // SAFETY: detaching has no contract beyond the hook's.
                    let _ = unsafe { self.hook.set_return_handler(None) };
                }
            }
            self.ret = ret;
        }
        if !same(&self.entry, &entry) {
            publish(&self.ctl.entry, &entry, retired);
            // No entry handler call at all for a site with only return links.
            let handler = (!entry.is_empty())
                .then(|| HookHandler::new(on_entry, self.ctl as *const SiteCtl as *mut c_void));
            // SAFETY: as in `install`.
            unsafe { self.hook.set_handler(handler) };
            self.entry = entry;
        }
        Ok(())
    }

    /// Removes the hook (original bytes back); its sets go to `retired`.
    /// With `unmapped`, the code is gone (dlclose): nothing is written.
    pub fn remove(self, retired: &mut Retired, unmapped: bool) {
        publish(&self.ctl.entry, &[], retired);
        publish(&self.ctl.ret, &[], retired);
        if unmapped {
            self.hook.forget();
        } else {
            let _ = self.hook.remove();
        }
    }

    /// The file (dev, inode) the site's code was mapped from.
    pub fn file(&self) -> (u64, u64) {
        self.file
    }

    pub fn is_empty(&self) -> bool {
        self.entry.is_empty() && self.ret.is_empty()
    }
}
