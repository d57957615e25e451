//! Uprobe links as the registry publishes them: one LINK record per probed
//! location, all under the link's id. Agents in target processes install
//! a hook for every record that matches them; dropping the [`UprobeLink`]
//! removes the records, and the agents take the hooks away.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use thiserror::Error;
use userbpf_runtime::ids::{next_id, IdKind};
use userbpf_runtime::registry::{self, kind, AttachKind, RecordData, Registration, RegistryError};

/// One probed location in a binary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UprobeTarget {
    /// The binary's canonical path.
    pub path: String,
    /// `st_dev` and `st_ino` of the binary (what agents match mappings by).
    pub dev: u64,
    pub ino: u64,
    /// File offset of the probed instruction.
    pub offset: u64,
    /// File offset and size of the function that contains it (size 0 when
    /// unknown); an offset equal to `func_offset` is a function entry.
    pub func_offset: u64,
    pub func_size: u64,
    /// File offset of the USDT semaphore (reference counter), 0 if none.
    pub ref_ctr_offset: u64,
    /// What `bpf_get_attach_cookie` returns for hits here.
    pub cookie: u64,
}

/// The pid a link record carries, from libbpf's `pid` argument: any
/// negative value (-1) is every process (0), 0 is the calling process.
pub fn record_pid(pid: i32) -> u32 {
    match pid {
        p if p < 0 => 0,
        0 => std::process::id(),
        p => p as u32,
    }
}

/// What to publish.
#[derive(Clone, Debug)]
pub struct UprobeLinkSpec {
    pub prog_id: u32,
    pub prog_name: String,
    /// Uprobe, Uretprobe or Usdt (a USDT probe is an entry uprobe with a
    /// semaphore; the kind only tells `userbpf list` what it is).
    pub kind: AttachKind,
    /// Only this process; 0 for every process.
    pub pid: u32,
    pub targets: Vec<UprobeTarget>,
}

#[derive(Debug, Error)]
pub enum LinkError {
    #[error("a link needs at least one target")]
    NoTargets,
    #[error("cannot create the link's fd: {0}")]
    Fd(std::io::Error),
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

impl LinkError {
    pub fn errno(&self) -> i32 {
        match self {
            LinkError::NoTargets => libc::EINVAL,
            LinkError::Fd(e) => e.raw_os_error().unwrap_or(libc::EMFILE),
            LinkError::Registry(e) => e.errno(),
        }
    }
}

/// A published uprobe link. Dropping it detaches.
#[derive(Debug)]
pub struct UprobeLink {
    id: u32,
    /// A real fd for `bpf_link__fd` (an empty memfd named after the link).
    fd: OwnedFd,
    records: LinkRecords,
}

/// The registry records of a link; dropping them (or [`LinkRecords::detach`])
/// removes them, and agents then take their hooks away.
#[derive(Debug)]
pub struct LinkRecords {
    records: Vec<Registration>,
}

impl LinkRecords {
    /// Records published under one link (the syscall links of
    /// [`crate::attach::syscall`] share this ownership).
    pub(crate) fn new(records: Vec<Registration>) -> LinkRecords {
        LinkRecords { records }
    }

    /// Removes every record now.
    pub fn detach(self) {
        drop(self);
    }

    /// How many records (probed locations) are published.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// A link's fd for `bpf_link__fd`: an empty memfd named after the program.
pub(crate) fn link_fd(prog_name: &str) -> Result<OwnedFd, LinkError> {
    let name = CString::new(format!("userbpf-link:{}", prog_name.replace('\0', "")))
        .unwrap_or_else(|_| c"userbpf-link".to_owned());
    // SAFETY: `name` is a valid C string.
    let raw = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if raw < 0 {
        return Err(LinkError::Fd(std::io::Error::last_os_error()));
    }
    // SAFETY: a fresh fd nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

impl UprobeLink {
    /// Publishes every target of `spec` under one new link id.
    pub fn publish(spec: &UprobeLinkSpec) -> Result<UprobeLink, LinkError> {
        if spec.targets.is_empty() {
            return Err(LinkError::NoTargets);
        }
        let fd = link_fd(&spec.prog_name)?;
        let raw = fd.as_raw_fd();
        let id = next_id(IdKind::Link);
        let mut records = Vec::with_capacity(spec.targets.len());
        for t in &spec.targets {
            let mut d = RecordData::zeroed();
            d.kind = kind::LINK;
            d.id = id;
            d.fd = raw;
            d.type_ = spec.kind as u32;
            d.set_name(&spec.prog_name);
            d.prog_id = spec.prog_id;
            d.pid = spec.pid;
            d.offset = t.offset;
            d.cookie = t.cookie;
            d.ref_ctr_offset = t.ref_ctr_offset;
            d.set_path(&t.path)?;
            d.dev = t.dev;
            d.ino = t.ino;
            d.func_offset = t.func_offset;
            d.func_size = t.func_size;
            // Earlier records go away with `records` if a later one fails.
            records.push(registry::publish(&d)?);
        }
        Ok(UprobeLink {
            id,
            fd,
            records: LinkRecords::new(records),
        })
    }

    /// The link's namespace-wide id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The link's fd (valid while the link lives).
    pub fn fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }

    /// How many records (probed locations) the link published.
    pub fn target_count(&self) -> usize {
        self.records.len()
    }

    /// Splits the link into its id, its fd and its records, for owners
    /// that keep the fd apart from the detach action (libbpf's `struct
    /// bpf_link`): the records stay published until [`LinkRecords`] is
    /// dropped, whatever happens to the fd.
    pub fn into_parts(self) -> (u32, OwnedFd, LinkRecords) {
        (self.id, self.fd, self.records)
    }
}
