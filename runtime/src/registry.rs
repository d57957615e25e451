//! The registry: which maps, programs and links each loader process has,
//! in shared memory, for the agents in target processes (and `userbpf
//! list`) to read.
//!
//! One file per loader process in the namespace directory
//! ([`crate::namespace`]): `loader-<pid>.reg`, mode 0600. The loader holds
//! an exclusive `flock` on it for its whole life, so a reader knows the
//! loader is alive while the lock is held, and the kernel drops the lock
//! when the loader dies, however it dies. A reader that can take the lock
//! has found a dead loader's file and may delete it.
//!
//! Layout (`#[repr(C)]`, little-endian, offsets only): a [`RegistryHeader`]
//! page, then `capacity` [`Record`]s of 512 bytes. A record is filled
//! while its `state` is `WRITING`, then published with a release store of
//! `LIVE`; a removed record goes back to `FREE`. The header's `generation`
//! is bumped (release) after every change, and one byte is written with
//! `pwrite` so that readers watching the directory with inotify wake up
//! (stores through a mapping raise no inotify event).
//!
//! Readers open another loader's maps and programs through
//! `/proc/<pid>/fd/<fd>` with the fds the records name; the loader keeps
//! those fds open while the records are live.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// "UBPFREG\0"
pub const REGISTRY_MAGIC: u64 = u64::from_le_bytes(*b"UBPFREG\0");
/// Bumped on any incompatible change of the layout below.
pub const REGISTRY_VERSION: u32 = 2;
/// Records per loader file.
pub const REGISTRY_CAPACITY: u32 = 4096;
const HEADER_SIZE: usize = 4096;
const RECORD_SIZE: usize = 512;

/// Record states (`Record::state`).
pub mod state {
    pub const FREE: u32 = 0;
    pub const WRITING: u32 = 1;
    pub const LIVE: u32 = 2;
}

/// Record kinds (`Record::kind`).
pub mod kind {
    pub const MAP: u32 = 1;
    pub const PROG: u32 = 2;
    pub const LINK: u32 = 3;
    /// In an agent's file: one link as installed in that process (`id`:
    /// the link's id, `prog_id`, `offset`: the hooked address, `flags`: 0
    /// or the errno that kept it from being installed).
    pub const ATTACHMENT: u32 = 4;
}

/// The first page of a loader file.
#[repr(C)]
pub struct RegistryHeader {
    pub magic: u64,
    pub version: u32,
    pub header_size: u32,
    pub record_size: u32,
    pub capacity: u32,
    /// The loader's pid and its start time (field 22 of /proc/pid/stat),
    /// which tells a reused pid from the loader.
    pub pid: u32,
    pub _pad: u32,
    pub start_time: u64,
    /// Bumped with release ordering after every published change; readers
    /// load it with acquire and rescan when it moved.
    pub generation: AtomicU64,
    /// Written with `pwrite` to raise an inotify event; never read.
    pub notify: u64,
}

/// One map, program or link (512 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RecordData {
    pub kind: u32,
    /// Namespace-wide id of the object.
    pub id: u32,
    /// The loader's fd for it (-1 for links without one).
    pub fd: i32,
    /// Map type, program type, or link attach kind ([`AttachKind`] values).
    pub type_: u32,
    pub name: [u8; 16],
    /// Links: the program's id.
    pub prog_id: u32,
    /// Links: only this process (0: every process).
    pub pid: u32,
    /// Links: offset in the file (uprobes), or the tracepoint's id.
    pub offset: u64,
    pub cookie: u64,
    /// Links: uprobe semaphore (reference counter) offset, 0 if none.
    pub ref_ctr_offset: u64,
    pub flags: u64,
    /// Links: the binary or library (NUL-terminated), or the tracepoint
    /// `category/name`.
    pub path: [u8; 384],
    /// Links: the binary's identity (`st_dev`, `st_ino`), which agents
    /// match against their mappings (`/proc/self/maps`); 0 when unknown
    /// (then the path is compared).
    pub dev: u64,
    pub ino: u64,
    /// Links: the file offset and size of the function that contains
    /// `offset`, from the symbol table; size 0 when unknown.
    pub func_offset: u64,
    pub func_size: u64,
    pub _reserved: [u8; 16],
}

const _: () = assert!(std::mem::size_of::<RecordData>() == RECORD_SIZE - 8);

impl RecordData {
    pub fn zeroed() -> RecordData {
        // SAFETY: a plain-data struct of integers and byte arrays.
        unsafe { std::mem::zeroed() }
    }

    pub fn name_str(&self) -> String {
        cstr_field(&self.name)
    }

    pub fn path_str(&self) -> String {
        cstr_field(&self.path)
    }

    pub fn set_name(&mut self, name: &str) {
        set_cstr_field(&mut self.name, name);
    }

    pub fn set_path(&mut self, path: &str) -> Result<(), RegistryError> {
        if path.len() >= self.path.len() {
            return Err(RegistryError::PathTooLong);
        }
        set_cstr_field(&mut self.path, path);
        Ok(())
    }
}

fn cstr_field(b: &[u8]) -> String {
    let n = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..n]).into_owned()
}

fn set_cstr_field(b: &mut [u8], s: &str) {
    b.fill(0);
    let n = s.len().min(b.len() - 1);
    b[..n].copy_from_slice(&s.as_bytes()[..n]);
}

/// How a link attaches (the `type_` of a link record).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachKind {
    Uprobe = 1,
    Uretprobe = 2,
    Usdt = 3,
    SyscallEnter = 4,
    SyscallExit = 5,
}

/// A record slot: state word, then data.
#[repr(C)]
pub struct Record {
    pub state: AtomicU32,
    pub _pad: u32,
    pub data: RecordData,
}

const _: () = assert!(std::mem::size_of::<Record>() == RECORD_SIZE);

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry i/o: {0}")]
    Io(#[from] io::Error),
    #[error("registry is full ({REGISTRY_CAPACITY} records)")]
    Full,
    #[error("path does not fit a registry record")]
    PathTooLong,
    #[error("not a registry file of this version")]
    BadFile,
}

impl RegistryError {
    pub fn errno(&self) -> i32 {
        match self {
            RegistryError::Io(e) => e.raw_os_error().unwrap_or(libc::EIO),
            RegistryError::Full => libc::ENOSPC,
            RegistryError::PathTooLong => libc::ENAMETOOLONG,
            RegistryError::BadFile => libc::EINVAL,
        }
    }
}

const FILE_SIZE: usize = HEADER_SIZE + RECORD_SIZE * REGISTRY_CAPACITY as usize;

/// A mapped registry file (ours or another loader's).
pub struct RegistryFile {
    file: File,
    path: PathBuf,
    base: *mut u8,
}

// SAFETY: the mapping is shared memory; records synchronize through their
// state words and the generation counter.
unsafe impl Send for RegistryFile {}
// SAFETY: as above.
unsafe impl Sync for RegistryFile {}

fn map_file(file: &File, writable: bool) -> io::Result<*mut u8> {
    let prot = if writable {
        libc::PROT_READ | libc::PROT_WRITE
    } else {
        libc::PROT_READ
    };
    // SAFETY: a shared mapping of FILE_SIZE bytes of a file at least that
    // long (checked or set by the callers).
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            FILE_SIZE,
            prot,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(p.cast())
}

fn flock(file: &File, op: i32) -> bool {
    // SAFETY: plain syscall on an open fd.
    unsafe { libc::flock(file.as_raw_fd(), op) == 0 }
}

/// Field 22 of `/proc/<pid>/stat`: the process start time in ticks.
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 2..];
    after_comm.split(' ').nth(19)?.parse().ok()
}

impl RegistryFile {
    /// Creates this process's loader file (replacing a dead loader's file
    /// of the same pid) and locks it for the life of the process.
    fn create(dir: &Path) -> Result<RegistryFile, RegistryError> {
        RegistryFile::create_as(dir, Role::Loader)
    }

    /// Creates this process's file of `role` (`<role>-<pid>.reg`), locked
    /// for as long as the returned value lives.
    pub fn create_as(dir: &Path, role: Role) -> Result<RegistryFile, RegistryError> {
        let pid = std::process::id();
        let prefix = role.prefix();
        let path = dir.join(format!("{prefix}-{pid}.reg"));
        if let Ok(old) = File::open(&path) {
            // Ours from before an exec, or a dead loader's: replace it.
            if flock(&old, libc::LOCK_EX | libc::LOCK_NB) {
                let _ = std::fs::remove_file(&path);
            }
        }
        let tmp = dir.join(format!(".{prefix}-{pid}.tmp"));
        let _ = std::fs::remove_file(&tmp);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&tmp)?;
        file.set_len(FILE_SIZE as u64)?;
        if !flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
            return Err(RegistryError::Io(io::Error::last_os_error()));
        }
        let base = map_file(&file, true)?;
        // SAFETY: the header page of the fresh, private-until-renamed file.
        let h = unsafe { &mut *(base as *mut RegistryHeader) };
        h.version = REGISTRY_VERSION;
        h.header_size = HEADER_SIZE as u32;
        h.record_size = RECORD_SIZE as u32;
        h.capacity = REGISTRY_CAPACITY;
        h.pid = pid;
        h.start_time = process_start_time(pid).unwrap_or(0);
        std::sync::atomic::fence(Ordering::Release);
        h.magic = REGISTRY_MAGIC;
        // Appears complete, under its final name.
        std::fs::rename(&tmp, &path)?;
        Ok(RegistryFile { file, path, base })
    }

    /// Maps another loader's file read-only. `None` for a file that is not
    /// a registry of this version.
    pub fn open(path: &Path) -> Result<RegistryFile, RegistryError> {
        let file = File::open(path)?;
        if file.metadata()?.len() < FILE_SIZE as u64 {
            return Err(RegistryError::BadFile);
        }
        let base = map_file(&file, false)?;
        let reg = RegistryFile {
            file,
            path: path.to_path_buf(),
            base,
        };
        let h = reg.header();
        if h.magic != REGISTRY_MAGIC
            || h.version != REGISTRY_VERSION
            || h.record_size as usize != RECORD_SIZE
            || h.capacity != REGISTRY_CAPACITY
        {
            return Err(RegistryError::BadFile);
        }
        Ok(reg)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Drops this value without closing its fd or unmapping it: for a
    /// process whose fds were closed behind our back (the number may
    /// belong to someone else now).
    pub fn leak(self) {
        std::mem::forget(self);
    }

    pub fn header(&self) -> &RegistryHeader {
        // SAFETY: the first page of a mapping of FILE_SIZE bytes.
        unsafe { &*(self.base as *const RegistryHeader) }
    }

    fn record_ptr(&self, i: u32) -> *mut Record {
        debug_assert!(i < REGISTRY_CAPACITY);
        // SAFETY: i < capacity: inside the mapping, 8-byte aligned.
        unsafe { self.base.add(HEADER_SIZE + i as usize * RECORD_SIZE) as *mut Record }
    }

    fn record(&self, i: u32) -> &Record {
        // SAFETY: a record of the mapping; shared fields are atomics, the
        // data is written only through `record_ptr` while WRITING.
        unsafe { &*self.record_ptr(i) }
    }

    /// True while the loader that owns the file holds its lock.
    pub fn owner_alive(&self) -> bool {
        if flock(&self.file, libc::LOCK_SH | libc::LOCK_NB) {
            flock(&self.file, libc::LOCK_UN);
            return false;
        }
        true
    }

    /// The live records, copied (each copy is consistent: taken between
    /// two acquire loads of a LIVE state with the same generation).
    pub fn records(&self) -> Vec<RecordData> {
        let mut out = Vec::new();
        for i in 0..REGISTRY_CAPACITY {
            let r = self.record(i);
            if r.state.load(Ordering::Acquire) != state::LIVE {
                continue;
            }
            // SAFETY: LIVE records are not written until freed; a copy of
            // plain data.
            let data = unsafe { std::ptr::read_volatile(&r.data) };
            if r.state.load(Ordering::Acquire) == state::LIVE {
                out.push(data);
            }
        }
        out
    }

    fn publish(&self) {
        // SAFETY: the header is writable in our own (loader) file.
        let h = unsafe { &*(self.base as *const RegistryHeader) };
        let generation = h.generation.fetch_add(1, Ordering::Release) + 1;
        let off = std::mem::offset_of!(RegistryHeader, notify) as libc::off_t;
        let byte = generation as u8;
        // SAFETY: writes one byte of our own file at a field nobody reads.
        unsafe { libc::pwrite(self.file.as_raw_fd(), (&byte as *const u8).cast(), 1, off) };
    }

    /// Publishes a record in this process's own file; returns its slot.
    pub fn add(&self, data: &RecordData) -> Result<u32, RegistryError> {
        for i in 0..REGISTRY_CAPACITY {
            let r = self.record(i);
            if r.state
                .compare_exchange(
                    state::FREE,
                    state::WRITING,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                // SAFETY: the slot is ours while WRITING; only its data is written.
                unsafe { std::ptr::write_volatile(&raw mut (*self.record_ptr(i)).data, *data) };
                r.state.store(state::LIVE, Ordering::Release);
                self.publish();
                return Ok(i);
            }
        }
        Err(RegistryError::Full)
    }

    /// Removes the record in `slot` of this process's own file.
    pub fn remove(&self, slot: u32) {
        if slot < REGISTRY_CAPACITY {
            self.record(slot)
                .state
                .store(state::FREE, Ordering::Release);
            self.publish();
        }
    }
}

impl Drop for RegistryFile {
    fn drop(&mut self) {
        // SAFETY: unmaps this value's mapping.
        unsafe { libc::munmap(self.base.cast(), FILE_SIZE) };
    }
}

/// This process's registry file, created on first use. `None` when the
/// namespace directory cannot be used (then nothing is published: objects
/// still work in this process).
fn own() -> Option<&'static Mutex<RegistryFile>> {
    static OWN: OnceLock<Option<Mutex<RegistryFile>>> = OnceLock::new();
    OWN.get_or_init(|| {
        let dir = crate::namespace::ensure_namespace_dir().ok()?;
        RegistryFile::create(&dir).ok().map(Mutex::new)
    })
    .as_ref()
}

/// A published record; removed from the registry when dropped.
#[derive(Debug)]
pub struct Registration {
    slot: u32,
}

impl Registration {
    pub fn slot(&self) -> u32 {
        self.slot
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(reg) = own() {
            reg.lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(self.slot);
        }
    }
}

/// Publishes `data` in this process's registry.
pub fn publish(data: &RecordData) -> Result<Registration, RegistryError> {
    let reg = own().ok_or(RegistryError::Io(io::Error::from_raw_os_error(
        libc::EACCES,
    )))?;
    let slot = reg.lock().unwrap_or_else(|e| e.into_inner()).add(data)?;
    Ok(Registration { slot })
}

/// Publishes a map.
pub fn publish_map(map: &crate::maps::Map) -> Result<Registration, RegistryError> {
    let mut d = RecordData::zeroed();
    d.kind = kind::MAP;
    d.id = map.id();
    d.fd = map.raw_fd();
    d.type_ = map.map_type();
    d.set_name(&map.spec().name);
    publish(&d)
}

/// Publishes a program whose program file is `fd`.
pub fn publish_prog(
    id: u32,
    fd: i32,
    prog_type: u32,
    name: &str,
) -> Result<Registration, RegistryError> {
    let mut d = RecordData::zeroed();
    d.kind = kind::PROG;
    d.id = id;
    d.fd = fd;
    d.type_ = prog_type;
    d.set_name(name);
    publish(&d)
}

/// Who owns a registry file: a loader (maps, programs, links) or an agent
/// in a target process (what it attached).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Loader,
    Agent,
}

impl Role {
    fn prefix(self) -> &'static str {
        match self {
            Role::Loader => "loader",
            Role::Agent => "agent",
        }
    }
}

/// One loader seen by a reader.
pub struct LoaderView {
    pub pid: u32,
    pub alive: bool,
    pub file: RegistryFile,
}

/// Every loader file in `dir` (the namespace directory). Files of dead
/// loaders are deleted when `clean` is set, and skipped otherwise.
pub fn scan(dir: &Path, clean: bool) -> Vec<LoaderView> {
    scan_role(dir, Role::Loader, clean)
}

/// As [`scan`], for the files of `role`.
pub fn scan_role(dir: &Path, role: Role, clean: bool) -> Vec<LoaderView> {
    let prefix = format!("{}-", role.prefix());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix.as_str()))
            .and_then(|n| n.strip_suffix(".reg"))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(file) = RegistryFile::open(&e.path()) else {
            continue;
        };
        let alive = file.owner_alive();
        if !alive {
            if clean {
                let _ = std::fs::remove_file(e.path());
            }
            continue;
        }
        out.push(LoaderView { pid, alive, file });
    }
    out.sort_by_key(|l| l.pid);
    out
}

/// The path another process opens to reach fd `fd` of loader `pid`.
pub fn proc_fd_path(pid: u32, fd: i32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/fd/{fd}"))
}

/// Finds map `id` among the live loaders of this namespace and maps it.
pub fn open_foreign_map(id: u32) -> Option<std::sync::Arc<crate::maps::Map>> {
    let dir = crate::namespace::namespace_dir();
    for loader in scan(&dir, false) {
        for r in loader.file.records() {
            if r.kind == kind::MAP && r.id == id {
                return crate::maps::Map::open_path(&proc_fd_path(loader.pid, r.fd)).ok();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_scan_remove() {
        let dir = std::env::temp_dir().join(format!("userbpf-reg-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let reg = RegistryFile::create(&dir).unwrap();
        let mut d = RecordData::zeroed();
        d.kind = kind::LINK;
        d.id = 7;
        d.set_path("/usr/lib/libc.so.6").unwrap();
        let slot = reg.add(&d).unwrap();
        let loaders = scan(&dir, false);
        assert_eq!(loaders.len(), 1);
        assert!(loaders[0].alive);
        let recs = loaders[0].file.records();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].id, 7);
        assert_eq!(recs[0].path_str(), "/usr/lib/libc.so.6");
        let g = loaders[0].file.header().generation.load(Ordering::Acquire);
        reg.remove(slot);
        assert!(loaders[0].file.header().generation.load(Ordering::Acquire) > g);
        assert!(loaders[0].file.records().is_empty());
        drop(reg);
        // The lock died with the file handle: the file is now a dead loader's.
        assert!(scan(&dir, true).is_empty());
        assert!(std::fs::read_dir(&dir).unwrap().next().is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
