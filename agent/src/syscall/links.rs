//! The syscall links this process runs: one immutable [`Table`] indexed by
//! syscall number, published with one atomic pointer store and freed after
//! a grace period, as the uprobe sites' link sets are.

use core::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Arc;
use std::time::Duration;

use userbpf_runtime::image::LoadedProgram;
use userbpf_runtime::syscalls::SyscallCtx;

/// Syscall numbers the table indexes directly (x86-64 ends below 512).
pub const NR_SLOTS: usize = 512;

/// What tells two links apart: (link id, program id, cookie, context).
pub type LinkKey = (u32, u32, u64, u64);

/// One link's program on a syscall.
#[derive(Clone)]
pub struct SysLink {
    pub link_id: u32,
    pub prog_id: u32,
    pub cookie: u64,
    pub ctx: SyscallCtx,
    pub prog: Arc<LoadedProgram>,
}

impl SysLink {
    pub fn key(&self) -> LinkKey {
        (self.link_id, self.prog_id, self.cookie, self.ctx.to_bits())
    }
}

/// What runs at the entry and at the exit of each syscall.
pub struct Table {
    /// By number: links of that syscall's tracepoints and ksyscalls.
    enter: Box<[Box<[SysLink]>]>,
    exit: Box<[Box<[SysLink]>]>,
    /// Links on every syscall (raw_syscalls, raw_tracepoint sys_enter/exit).
    enter_all: Box<[SysLink]>,
    exit_all: Box<[SysLink]>,
}

/// A link as the agent wants it: which syscall (None: all), which phase.
pub struct Wanted {
    pub nr: Option<u32>,
    pub exit: bool,
    pub link: SysLink,
}

impl Table {
    pub fn build(wanted: &[Wanted]) -> Table {
        let mut enter: Vec<Vec<SysLink>> = vec![Vec::new(); NR_SLOTS];
        let mut exit: Vec<Vec<SysLink>> = vec![Vec::new(); NR_SLOTS];
        let mut enter_all = Vec::new();
        let mut exit_all = Vec::new();
        for w in wanted {
            let list = match (w.nr, w.exit) {
                (Some(nr), false) if (nr as usize) < NR_SLOTS => &mut enter[nr as usize],
                (Some(nr), true) if (nr as usize) < NR_SLOTS => &mut exit[nr as usize],
                (Some(_), _) => continue,
                (None, false) => &mut enter_all,
                (None, true) => &mut exit_all,
            };
            list.push(w.link.clone());
        }
        let boxed = |v: Vec<Vec<SysLink>>| {
            v.into_iter()
                .map(Vec::into_boxed_slice)
                .collect::<Vec<_>>()
                .into_boxed_slice()
        };
        Table {
            enter: boxed(enter),
            exit: boxed(exit),
            enter_all: enter_all.into_boxed_slice(),
            exit_all: exit_all.into_boxed_slice(),
        }
    }

    /// The links to run at the entry (or exit) of syscall `nr`: the
    /// syscall's own, then those on every syscall (the kernel runs a
    /// syscall's tracepoint after raw_syscalls' too, so order is not
    /// observable between the two kinds).
    #[inline(always)]
    pub fn runs(&self, nr: u64, exit: bool) -> (&[SysLink], &[SysLink]) {
        let (by_nr, all) = if exit {
            (&self.exit, &self.exit_all)
        } else {
            (&self.enter, &self.enter_all)
        };
        let own = by_nr.get(nr as usize).map_or(&[][..], |b| &b[..]);
        (own, &all[..])
    }

    /// Does syscall `nr` run any program?
    pub fn wants(&self, nr: u64) -> bool {
        let (own, all) = self.runs(nr, false);
        let (own_x, all_x) = self.runs(nr, true);
        !(own.is_empty() && all.is_empty() && own_x.is_empty() && all_x.is_empty())
    }

    pub fn is_empty(&self) -> bool {
        self.enter_all.is_empty()
            && self.exit_all.is_empty()
            && self.enter.iter().all(|b| b.is_empty())
            && self.exit.iter().all(|b| b.is_empty())
    }

    fn keys(&self) -> Vec<(bool, usize, LinkKey)> {
        let mut out = Vec::new();
        for (exit, by_nr, all) in [
            (false, &self.enter, &self.enter_all),
            (true, &self.exit, &self.exit_all),
        ] {
            for (nr, b) in by_nr.iter().enumerate() {
                out.extend(b.iter().map(|l| (exit, nr, l.key())));
            }
            out.extend(all.iter().map(|l| (exit, usize::MAX, l.key())));
        }
        out
    }
}

/// The published table (null: no syscall links).
static TABLE: AtomicPtr<Table> = AtomicPtr::new(core::ptr::null_mut());

/// The current table; valid while the caller's thread is marked busy and
/// registered ([`crate::grace::enter`]).
#[inline(always)]
pub fn current() -> Option<&'static Table> {
    let p = TABLE.load(Ordering::Acquire);
    // SAFETY: a published table is freed only after a grace period, which
    // waits for threads that are busy (the caller's contract).
    unsafe { p.as_ref() }
}

/// Publishes `table` (None: no links) unless it runs the same links as
/// the current one; the old one is freed after a grace period, or leaked
/// when a thread stays inside a handler too long. Control path.
pub fn publish(table: Option<Table>) {
    let table = table.filter(|t| !t.is_empty());
    let old = TABLE.load(Ordering::Acquire);
    // SAFETY: only this (serialised) control path frees tables.
    let same = match (unsafe { old.as_ref() }, &table) {
        (None, None) => true,
        (Some(o), Some(n)) => o.keys() == n.keys(),
        _ => false,
    };
    if same {
        return;
    }
    let new = table.map_or(core::ptr::null_mut(), |t| Box::into_raw(Box::new(t)));
    let old = TABLE.swap(new, Ordering::AcqRel);
    if !old.is_null() && crate::grace::synchronize(Duration::from_millis(200)) {
        // SAFETY: from Box::into_raw above, unpublished and past its grace
        // period.
        drop(unsafe { Box::from_raw(old) });
    }
}

/// Are syscall links installed?
pub fn any() -> bool {
    !TABLE.load(Ordering::Acquire).is_null()
}
