//! `usdt_manager_attach_usdt` on the userspace backend: every call site of
//! a USDT probe becomes one uprobe target of a single link (as libbpf's
//! uprobe-multi path makes one link), with the spec id as the attach
//! cookie and the semaphore's file offset as `ref_ctr_offset`; each
//! distinct argument spec gets a spec id and is written to the object's
//! `__bpf_usdt_specs` map.
//!
//! The kernel here supports BPF cookies (and `LINUX_HAS_BPF_COOKIE` is
//! true for our objects), so, as libbpf does then, the
//! `__bpf_usdt_ip_to_spec_id` map is left untouched.

use crate::attach::link::record_pid;
use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, Mutex};

use userbpf_runtime::registry::AttachKind;

use super::elf::UsdtElf;
use super::ids::SpecIds;
use super::spec::{encode_spec, SpecLayout};
use super::UsdtError;
use crate::attach::binary::{function_containing, BinaryId};
use crate::attach::link::{LinkRecords, UprobeLink, UprobeLinkSpec, UprobeTarget};

/// The object's `__bpf_usdt_specs` map, as the attach code writes it.
pub trait SpecMap {
    fn value_size(&self) -> u32;
    fn max_entries(&self) -> u32;
    /// `bpf_map_update_elem(fd, &id, value, BPF_ANY)`; `Err(errno)`.
    fn write(&self, id: u32, value: &[u8]) -> Result<(), i32>;
}

/// USDT state of one BPF object (libbpf's `struct usdt_manager`): the
/// spec ids its links hold.
#[derive(Debug, Default)]
pub struct UsdtManager {
    ids: Mutex<SpecIds>,
}

impl UsdtManager {
    pub fn new() -> Arc<UsdtManager> {
        Arc::new(UsdtManager::default())
    }

    fn ids(&self) -> std::sync::MutexGuard<'_, SpecIds> {
        self.ids.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ids given back by detached links, next to be reused last.
    pub fn free_ids(&self) -> Vec<u32> {
        self.ids().free_ids().to_vec()
    }
}

/// What to attach.
#[derive(Clone, Debug)]
pub struct UsdtRequest<'a> {
    pub prog_id: u32,
    pub prog_name: &'a str,
    /// libbpf's pid: negative for every process, 0 for this one.
    pub pid: i32,
    /// The binary, as given (after libbpf's search for a bare name).
    pub path: &'a str,
    pub provider: &'a str,
    pub name: &'a str,
    pub usdt_cookie: u64,
}

/// An attached USDT probe. Dropping it detaches every site and gives the
/// spec ids back to the object's manager.
#[derive(Debug)]
pub struct UsdtLink {
    id: u32,
    /// The link's fd, until [`UsdtLink::take_fd`].
    fd: Option<OwnedFd>,
    /// The published sites (`None` only while attaching).
    records: Option<LinkRecords>,
    targets: Vec<UprobeTarget>,
    spec_ids: Vec<u32>,
    manager: Arc<UsdtManager>,
}

impl UsdtLink {
    /// The link's namespace-wide id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The link's fd (the one its records name), unless taken.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(|fd| fd.as_fd())
    }

    /// Hands the fd to an owner that keeps it apart from the detach
    /// action (libbpf's `struct bpf_link`); the sites stay attached until
    /// the link is dropped.
    pub fn take_fd(&mut self) -> Option<OwnedFd> {
        self.fd.take()
    }

    /// One target per call site, in note order.
    pub fn targets(&self) -> &[UprobeTarget] {
        &self.targets
    }

    /// The spec ids this link holds, in allocation order.
    pub fn spec_ids(&self) -> &[u32] {
        &self.spec_ids
    }
}

impl Drop for UsdtLink {
    fn drop(&mut self) {
        // Records first: no agent may run a site whose spec id is reused.
        self.records = None;
        self.manager.ids().release(&self.spec_ids);
    }
}

/// Attaches `req` for the object whose manager is `manager` and whose spec
/// map is `specs`.
pub fn attach_usdt(
    manager: &Arc<UsdtManager>,
    specs: &dyn SpecMap,
    req: &UsdtRequest<'_>,
) -> Result<UsdtLink, UsdtError> {
    let mut link = prepare_usdt(manager, specs, req)?;
    let published = UprobeLink::publish(&UprobeLinkSpec {
        prog_id: req.prog_id,
        prog_name: req.prog_name.to_owned(),
        kind: AttachKind::Usdt,
        pid: record_pid(req.pid),
        targets: link.targets.clone(),
    })
    .map_err(|source| UsdtError::Link {
        provider: req.provider.to_owned(),
        name: req.name.to_owned(),
        path: req.path.to_owned(),
        source,
    })?;
    let (id, fd, records) = published.into_parts();
    link.id = id;
    link.fd = Some(fd);
    link.records = Some(records);
    Ok(link)
}

/// The first half of [`attach_usdt`]: the call sites, their specs written
/// to the spec map under fresh ids (each target's cookie is its spec id),
/// nothing published. The kernel backend attaches the targets as kernel
/// uprobes instead. Dropping the result gives the ids back.
pub fn prepare_usdt(
    manager: &Arc<UsdtManager>,
    specs: &dyn SpecMap,
    req: &UsdtRequest<'_>,
) -> Result<UsdtLink, UsdtError> {
    let data = std::fs::read(req.path).map_err(|e| UsdtError::Open {
        path: req.path.to_owned(),
        errno: e.raw_os_error().unwrap_or(libc::EIO),
    })?;
    let elf = UsdtElf::parse(req.path, &data)?;
    let sites = elf.targets(req.provider, req.name, req.usdt_cookie)?;
    if sites.is_empty() {
        return Err(UsdtError::NotFound {
            provider: req.provider.to_owned(),
            name: req.name.to_owned(),
            path: req.path.to_owned(),
        });
    }
    let layout = SpecLayout::for_value_size(specs.value_size())
        .ok_or(UsdtError::SpecLayout(specs.value_size()))?;
    let binary = BinaryId::from_path(Path::new(req.path)).map_err(|e| UsdtError::Open {
        path: req.path.to_owned(),
        errno: e.errno(),
    })?;
    let canonical = binary.path.to_string_lossy().into_owned();

    // Ids go back to the manager if anything below fails.
    let mut link = UsdtLink {
        id: 0,
        fd: None,
        records: None,
        targets: Vec::with_capacity(sites.len()),
        spec_ids: Vec::new(),
        manager: manager.clone(),
    };
    let mut by_spec: HashMap<&str, u32> = HashMap::new();
    for site in &sites {
        let id = match by_spec.get(site.spec_str.as_str()) {
            Some(&id) => id,
            None => {
                let max_entries = specs.max_entries();
                let id = manager
                    .ids()
                    .allocate(max_entries)
                    .ok_or(UsdtError::SpecIdsExhausted { max_entries })?;
                link.spec_ids.push(id);
                by_spec.insert(&site.spec_str, id);
                let value = encode_spec(&site.spec, layout, specs.value_size() as usize);
                specs
                    .write(id, &value)
                    .map_err(|errno| UsdtError::SpecWrite {
                        id,
                        provider: req.provider.to_owned(),
                        name: req.name.to_owned(),
                        path: req.path.to_owned(),
                        errno,
                    })?;
                id
            }
        };
        let offset = site.location.file_offset;
        let (func_offset, func_size) = function_containing(&binary.path, offset).unwrap_or((0, 0));
        link.targets.push(UprobeTarget {
            path: canonical.clone(),
            dev: binary.dev,
            ino: binary.ino,
            offset,
            func_offset,
            func_size,
            ref_ctr_offset: site.location.sema_offset,
            cookie: u64::from(id),
        });
    }
    Ok(link)
}
