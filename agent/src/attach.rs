//! From the registry to hooks: which links match this process, where their
//! probes land in its own mappings, and bringing the installed sites in
//! line with that ([`Agent::reconcile`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;

use userbpf_runtime::image::LoadedProgram;
use userbpf_runtime::registry::{self, kind, AttachKind, RecordData, RegistryFile, Role};
use userbpf_runtime::syscalls::SyscallCtx;

use crate::hook::maps::{self, Mapping};
use crate::programs;
use crate::sites::{LinkRun, Retired, Site, SiteShape};

/// `USERBPF_SYSCALL_DISPATCH`: `on` (Syscall User Dispatch in every
/// thread: syscalls from JIT code and sites the rewriter refused are
/// caught too), `off`, or unset (on only when a loaded module could not be
/// scanned for syscall instructions).
pub const SUD_ENV: &str = "USERBPF_SYSCALL_DISPATCH";

/// One link record that applies to this process, resolved to an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Want {
    pub loader: u32,
    pub link_id: u32,
    pub prog_id: u32,
    pub cookie: u64,
    pub ret: bool,
    pub addr: usize,
    pub shape: SiteShape,
    /// The USDT semaphore's address in this process.
    pub semaphore: Option<usize>,
    /// What the link record says it is (for our ATTACHMENT records).
    pub kind: AttachKind,
}

/// What identifies one installed (or failed) probe.
type ProbeKey = (u32, u32, usize, bool);

impl Want {
    fn key(&self) -> ProbeKey {
        (self.loader, self.link_id, self.addr, self.ret)
    }
}

/// Does mapping `m` map file `r` names?
fn same_file(m: &Mapping, r: &RecordData) -> bool {
    if r.dev != 0 || r.ino != 0 {
        m.dev == r.dev && m.inode == r.ino
    } else {
        m.inode != 0 && m.path == r.path_str()
    }
}

/// The address at which `r`'s file offset `off` is mapped, in a mapping
/// that satisfies `pick`.
fn address_of(
    all: &[Mapping],
    r: &RecordData,
    off: u64,
    pick: impl Fn(&Mapping) -> bool,
) -> Option<usize> {
    all.iter()
        .filter(|m| pick(m) && same_file(m, r))
        .find(|m| off >= m.offset && off - m.offset < (m.end - m.start) as u64)
        .map(|m| m.start + (off - m.offset) as usize)
}

/// The LINK records of `loaders` whose pid filter lets process `pid` in,
/// with their loader's pid.
fn links_for(
    loaders: &[registry::LoaderView],
    pid: u32,
) -> impl Iterator<Item = (u32, RecordData)> + '_ {
    loaders.iter().flat_map(move |l| {
        l.file
            .records()
            .into_iter()
            .filter(move |r| r.kind == kind::LINK && (r.pid == 0 || r.pid == pid))
            .map(move |r| (l.pid, r))
    })
}

/// Link records of `loaders` that apply to process `pid`, with their
/// addresses in `all`. Records whose file is not mapped here are skipped;
/// the flag says whether there were any (a library not loaded yet).
pub(crate) fn wanted(
    loaders: &[registry::LoaderView],
    all: &[Mapping],
    pid: u32,
) -> (Vec<Want>, bool) {
    let mut out = Vec::new();
    let mut unmapped = false;
    for (loader, r) in links_for(loaders, pid) {
        let (ret, kind) = match r.type_ {
            t if t == AttachKind::Uprobe as u32 => (false, AttachKind::Uprobe),
            t if t == AttachKind::Usdt as u32 => (false, AttachKind::Usdt),
            t if t == AttachKind::Uretprobe as u32 => (true, AttachKind::Uretprobe),
            _ => continue,
        };
        let Some(addr) = address_of(all, &r, r.offset, |m| m.exec) else {
            unmapped = true;
            continue;
        };
        let func_start = (r.func_size != 0)
            .then(|| address_of(all, &r, r.func_offset, |m| m.exec))
            .flatten();
        let func_range = func_start.map(|s| s..s + r.func_size as usize);
        let function_entry = match &func_range {
            Some(range) => range.start == addr,
            // Unknown function: a return probe must be at an entry.
            None => ret,
        };
        let semaphore = (r.ref_ctr_offset != 0)
            .then(|| address_of(all, &r, r.ref_ctr_offset, |m| m.write && !m.shared))
            .flatten();
        out.push(Want {
            loader,
            link_id: r.id,
            prog_id: r.prog_id,
            cookie: r.cookie,
            ret,
            addr,
            shape: SiteShape {
                func_range,
                function_entry,
            },
            semaphore,
            kind,
        });
    }
    out.sort_by_key(|w| (w.addr, w.link_id, w.ret));
    (out, unmapped)
}

/// Syscall link records of `loaders` that apply to process `pid`: each as
/// a [`Want`] (address = the syscall number, `usize::MAX` for every
/// syscall; `ret` = the exit) with its context layout.
pub(crate) fn syscall_wanted(
    loaders: &[registry::LoaderView],
    pid: u32,
) -> Vec<(Want, SyscallCtx)> {
    let mut out = Vec::new();
    for (loader, r) in links_for(loaders, pid) {
        let (ret, kind) = match r.type_ {
            t if t == AttachKind::SyscallEnter as u32 => (false, AttachKind::SyscallEnter),
            t if t == AttachKind::SyscallExit as u32 => (true, AttachKind::SyscallExit),
            _ => continue,
        };
        let Some(ctx) = SyscallCtx::from_bits(r.ref_ctr_offset) else {
            continue;
        };
        let addr = if r.offset == u64::MAX {
            usize::MAX
        } else {
            r.offset as usize
        };
        out.push((
            Want {
                loader,
                link_id: r.id,
                prog_id: r.prog_id,
                cookie: r.cookie,
                ret,
                addr,
                shape: SiteShape::default(),
                semaphore: None,
                kind,
            },
            ctx,
        ));
    }
    out.sort_by_key(|(w, _)| (w.addr, w.link_id, w.ret));
    out
}

/// The agent's state: installed sites, loaded programs, applied
/// semaphores, and its registry file.
#[derive(Default)]
pub struct Agent {
    sites: BTreeMap<usize, Site>,
    programs: HashMap<u32, Arc<LoadedProgram>>,
    /// Semaphore increments made, by probe.
    semaphores: HashMap<ProbeKey, usize>,
    /// Our ATTACHMENT records: probe -> (slot, errno).
    records: HashMap<ProbeKey, (u32, i32)>,
    file: Option<RegistryFile>,
    retired: Retired,
    /// Hooks on the syscall instructions, while syscall links exist.
    syscalls: Option<crate::syscall::rewrite::Rewriter>,
}

impl Agent {
    /// Installed probes (for tests and `userbpf list`): (link id, address,
    /// return probe).
    pub fn probes(&self) -> Vec<(u32, usize, bool)> {
        self.records
            .iter()
            .filter(|(_, &(_, err))| err == 0)
            .map(|(k, _)| (k.1, k.2, k.3))
            .collect()
    }

    /// Brings the hooks in line with the registry in `dir`.
    pub fn reconcile(&mut self, dir: &Path) {
        let all = maps::read().unwrap_or_default();
        let loaders = registry::scan(dir, false);
        let index = programs::index(&loaders);
        let pid = std::process::id();
        let (mut wants, unmapped) = wanted(&loaders, &all, pid);
        let sys_wants = syscall_wanted(&loaders, pid);
        if unmapped || !sys_wants.is_empty() {
            // A probe waits for a library, or syscall instructions of
            // libraries loaded later need hooks: follow the dynamic loader.
            crate::entry::watch_the_dynamic_loader();
        }
        let mut errors: HashMap<ProbeKey, i32> = HashMap::new();

        // Programs: load what is new; forget what no link uses.
        let used: HashSet<u32> = wants
            .iter()
            .chain(sys_wants.iter().map(|(w, _)| w))
            .map(|w| w.prog_id)
            .collect();
        self.programs.retain(|id, _| used.contains(id));
        for w in wants.iter().chain(sys_wants.iter().map(|(w, _)| w)) {
            if let std::collections::hash_map::Entry::Vacant(slot) = self.programs.entry(w.prog_id)
            {
                match programs::load(w.prog_id, &index) {
                    Ok(p) => {
                        slot.insert(p);
                    }
                    Err(e) => {
                        errors.insert(w.key(), e.errno());
                    }
                }
            }
        }

        // Group by address.
        let mut groups: BTreeMap<usize, (SiteShape, Vec<LinkRun>, Vec<LinkRun>)> = BTreeMap::new();
        for w in &wants {
            let Some(prog) = self.programs.get(&w.prog_id) else {
                continue;
            };
            let g = groups
                .entry(w.addr)
                .or_insert_with(|| (w.shape.clone(), Vec::new(), Vec::new()));
            if w.shape.function_entry {
                g.0.function_entry = true;
            }
            if g.0.func_range.is_none() {
                g.0.func_range = w.shape.func_range.clone();
            }
            let run = LinkRun {
                link_id: w.link_id,
                prog_id: w.prog_id,
                cookie: w.cookie,
                prog: prog.clone(),
            };
            if w.ret { &mut g.2 } else { &mut g.1 }.push(run);
        }

        // Sites no longer wanted, or wanted with another shape, go.
        let stale: Vec<usize> = self
            .sites
            .iter()
            .filter(|(a, s)| groups.get(a).is_none_or(|g| g.0 != *s.shape()))
            .map(|(&a, _)| a)
            .collect();
        for a in stale {
            if let Some(s) = self.sites.remove(&a) {
                let still_there =
                    maps::find(&all, a).is_some_and(|m| m.exec && (m.dev, m.inode) == s.file());
                s.remove(&mut self.retired, !still_there);
            }
        }
        for (addr, (shape, entry, ret)) in groups {
            if let std::collections::btree_map::Entry::Vacant(slot) = self.sites.entry(addr) {
                // SAFETY: the address comes from a symbol table offset the
                // loader resolved (an instruction boundary of that file),
                // mapped executable here; the shape is what the file says.
                let file = maps::find(&all, addr).map_or((0, 0), |m| (m.dev, m.inode));
                match unsafe { Site::install(addr, shape.clone(), file) } {
                    Ok(site) => {
                        slot.insert(site);
                    }
                    Err(e) => {
                        for w in wants.iter().filter(|w| w.addr == addr) {
                            errors.insert(w.key(), e.errno());
                        }
                        continue;
                    }
                }
            }
            let site = self.sites.get_mut(&addr).expect("installed above");
            if let Err(e) = site.set_links(entry, ret, &mut self.retired) {
                for w in wants.iter().filter(|w| w.addr == addr && w.ret) {
                    errors.insert(w.key(), e.errno());
                }
            }
        }
        if std::env::var_os("USERBPF_AGENT_DEBUG").is_some() {
            eprintln!(
                "userbpf-agent[{pid}]: {} loader(s), {} matching probe(s), {} site(s), errors {:?}",
                loaders.len(),
                wants.len(),
                self.sites.len(),
                errors
            );
        }
        self.sync_semaphores(&wants, &errors);
        self.retired.reclaim();
        self.sync_syscalls(&sys_wants);
        wants.extend(sys_wants.into_iter().map(|(w, _)| w));
        self.sync_records(&wants, &errors);
    }

    /// Publishes the syscall links' table and keeps the interception in
    /// place while there are any.
    fn sync_syscalls(&mut self, sys_wants: &[(Want, SyscallCtx)]) {
        let wanted: Vec<crate::syscall::links::Wanted> = sys_wants
            .iter()
            .filter_map(|(w, ctx)| {
                let prog = self.programs.get(&w.prog_id)?.clone();
                Some(crate::syscall::links::Wanted {
                    nr: (w.addr != usize::MAX).then_some(w.addr as u32),
                    exit: w.ret,
                    link: crate::syscall::links::SysLink {
                        link_id: w.link_id,
                        prog_id: w.prog_id,
                        cookie: w.cookie,
                        ctx: *ctx,
                        prog,
                    },
                })
            })
            .collect();
        if wanted.is_empty() {
            crate::syscall::links::publish(None);
            if let Some(mut rw) = self.syscalls.take() {
                crate::syscall::sud::deactivate();
                rw.clear();
            }
            return;
        }
        // Hooks first: the table is only read by them.
        let rw = self
            .syscalls
            .get_or_insert_with(crate::syscall::rewrite::Rewriter::default);
        let stats = rw.refresh();
        // Syscall User Dispatch puts every syscall of a thread on the
        // kernel's slow path (+44 ns here), besides the SIGSYS (2.6 us) of
        // those it catches: by default only for a module the rewriter
        // could not scan at all. The few sites it refuses in glibc (the
        // `exit` loops of thread exit, abort) are not worth that on every
        // call; `on` covers them and JIT code too.
        let sud = match std::env::var(SUD_ENV).as_deref() {
            Ok("on") | Ok("1") | Ok("always") => true,
            Ok("off") | Ok("0") => false,
            _ => stats.modules_without_table > 0,
        };
        if sud {
            crate::syscall::sud::activate();
        } else {
            crate::syscall::sud::deactivate();
        }
        let table = crate::syscall::links::Table::build(&wanted);
        // Sites of other syscalls skip the dispatcher, except those it
        // must always see (execs, clones).
        // Under SUD an unbound site's native syscall would trap (it is
        // outside the gate): all bound then.
        rw.select(|nr| sud || table.wants(nr) || crate::syscall::dispatch::always_dispatched(nr));
        crate::syscall::links::publish(Some(table));
        if std::env::var_os("USERBPF_AGENT_DEBUG").is_some() {
            eprintln!(
                "userbpf-agent[{}]: {} syscall link(s), rewrite {:?}, SUD {sud}",
                std::process::id(),
                wanted.len(),
                stats
            );
            for (addr, e) in rw.refusals() {
                eprintln!(
                    "userbpf-agent: syscall at {addr:#x} ({}) left to SUD: {e}",
                    symbol_of(*addr)
                );
            }
        }
    }

    /// USDT semaphores count the probes attached to them, as the kernel's
    /// uprobe reference counters do.
    fn sync_semaphores(&mut self, wants: &[Want], errors: &HashMap<ProbeKey, i32>) {
        let live: HashMap<ProbeKey, usize> = wants
            .iter()
            .filter(|w| !errors.contains_key(&w.key()))
            .filter_map(|w| w.semaphore.map(|s| (w.key(), s)))
            .collect();
        self.semaphores.retain(|k, addr| {
            if live.contains_key(k) {
                return true;
            }
            // SAFETY: a semaphore of a mapped, writable file mapping that
            // was there when we incremented it (u16, 2-aligned by the ABI).
            unsafe { semaphore(*addr) }.fetch_sub(1, Ordering::Relaxed);
            false
        });
        for (k, addr) in live {
            self.semaphores.entry(k).or_insert_with(|| {
                // SAFETY: as above, resolved in this reconcile.
                unsafe { semaphore(addr) }.fetch_add(1, Ordering::Relaxed);
                addr
            });
        }
    }

    /// Our registry file says what is attached here.
    fn sync_records(&mut self, wants: &[Want], errors: &HashMap<ProbeKey, i32>) {
        // Created at the first reconcile even with nothing to attach:
        // loaders find running agents by their files (and wait for them).
        if self.file.is_none() {
            self.file = userbpf_runtime::namespace::ensure_namespace_dir()
                .ok()
                .and_then(|d| RegistryFile::create_as(&d, Role::Agent).ok());
        }
        let Some(file) = &self.file else {
            return;
        };
        let now: HashMap<ProbeKey, (&Want, i32)> = wants
            .iter()
            .map(|w| (w.key(), (w, errors.get(&w.key()).copied().unwrap_or(0))))
            .collect();
        self.records.retain(|k, (slot, err)| {
            let keep = now.get(k).is_some_and(|(_, e)| e == err);
            if !keep {
                file.remove(*slot);
            }
            keep
        });
        for (k, (w, err)) in now {
            if self.records.contains_key(&k) {
                continue;
            }
            let mut d = RecordData::zeroed();
            d.kind = kind::ATTACHMENT;
            d.id = w.link_id;
            d.fd = -1;
            d.type_ = w.kind as u32;
            d.prog_id = w.prog_id;
            d.pid = w.loader;
            d.offset = w.addr as u64;
            d.cookie = w.cookie;
            d.flags = err as u64;
            if let Ok(slot) = file.add(&d) {
                self.records.insert(k, (slot, err));
            }
        }
    }

    /// Removes every hook (the agent is going away, or tests).
    pub fn clear(&mut self) {
        let all = maps::read().unwrap_or_default();
        for (a, s) in std::mem::take(&mut self.sites) {
            let still_there =
                maps::find(&all, a).is_some_and(|m| m.exec && (m.dev, m.inode) == s.file());
            s.remove(&mut self.retired, !still_there);
        }
        self.sync_semaphores(&[], &HashMap::new());
        self.retired.reclaim();
        self.sync_syscalls(&[]);
        self.programs.clear();
    }
}

/// `symbol+offset` of a code address, for diagnostics.
fn symbol_of(addr: usize) -> String {
    // SAFETY: dladdr fills a local; it reads the loader's tables only.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::dladdr(addr as *const libc::c_void, &mut info) } == 0 {
        return "?".into();
    }
    if info.dli_sname.is_null() {
        // SAFETY: dladdr returned a NUL-terminated file name.
        let file = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) };
        return format!(
            "{}+{:#x}",
            file.to_string_lossy(),
            addr - info.dli_fbase as usize
        );
    }
    // SAFETY: dladdr returned a NUL-terminated name.
    let name = unsafe { std::ffi::CStr::from_ptr(info.dli_sname) };
    format!(
        "{}+{:#x}",
        name.to_string_lossy(),
        addr - info.dli_saddr as usize
    )
}

/// # Safety
/// `addr` is a 2-aligned address in writable memory that stays mapped.
unsafe fn semaphore(addr: usize) -> &'static AtomicU16 {
    // SAFETY: caller contract.
    unsafe { &*(addr as *const AtomicU16) }
}

impl Agent {
    /// Deletes this process's registry file (at exit; a killed process
    /// leaves it to the next scan that cleans dead files).
    pub fn remove_file(&mut self) {
        if let Some(f) = self.file.take() {
            let _ = std::fs::remove_file(f.path());
        }
        self.records.clear();
    }

    /// After the application closed our fds: the file's fd (and so its
    /// lock) is gone; its number may be the application's now, so the old
    /// value is leaked, not closed. A new file is made at the next
    /// reconcile.
    pub fn reopen_file(&mut self) {
        if let Some(f) = self.file.take() {
            f.leak();
        }
        self.records.clear();
    }

    /// In a child after fork: the registry file and its records are the
    /// parent's (the child writes its own on its next reconcile).
    pub fn forget_parent_file(&mut self) {
        if let Some(f) = self.file.take() {
            // Dropping would only unmap and close our copy of the fd (the
            // parent's lock stays), which is what we want.
            drop(f);
        }
        self.records.clear();
    }
}
