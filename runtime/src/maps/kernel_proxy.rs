//! A userbpf map that stands for a map the kernel holds: how user-space
//! programs of a mixed object (a uprobe next to a kernel tracepoint) share
//! a map with kernel programs.
//!
//! The proxy is an ordinary map file (so the registry, `/proc/<pid>/fd`
//! and the agent find it as any other map) whose header names the kernel
//! map: its id, and the process and fd that hold it. Each process that
//! opens the proxy gets its own fd of the kernel map (`pidfd_getfd`, else
//! `BPF_MAP_GET_FD_BY_ID`) and operates on it through `bpf(2)`.
//!
//! Costs and semantics:
//! - `BPF_F_MMAPABLE` arrays (global data, and arrays the loader made
//!   mmapable because user space shares them) are mapped: lookups are plain
//!   arithmetic and programs write the kernel's memory directly, atomics
//!   included. Exact semantics, no syscall.
//! - Every other type costs a syscall per operation (about a microsecond).
//!   A lookup copies the value into a per-thread slot; a program that
//!   writes through the returned pointer has its slot written back
//!   (`BPF_EXIST`) when the run ends. Such read-modify-write is not atomic
//!   against kernel programs updating the same value meanwhile.
//! - Ring buffers and perf event arrays in the kernel cannot be written
//!   from user space: their output helpers fail on a proxy.

use std::cell::RefCell;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use super::{is_percpu, map_type, round_up8, FastLookup, MapError, MapMem, MapOps, MapSpec};

/// `BPF_MAP_LOOKUP_ELEM` and the other element commands (`linux/bpf.h`).
const BPF_MAP_LOOKUP_ELEM: i64 = 1;
const BPF_MAP_UPDATE_ELEM: i64 = 2;
const BPF_MAP_DELETE_ELEM: i64 = 3;
const BPF_MAP_GET_NEXT_KEY: i64 = 4;
const BPF_MAP_GET_FD_BY_ID: i64 = 14;
const BPF_OBJ_GET_INFO_BY_FD: i64 = 15;
const BPF_MAP_LOOKUP_AND_DELETE_ELEM: i64 = 21;
const BPF_EXIST: u64 = 2;
const BPF_F_MMAPABLE: u32 = 1 << 10;
/// The kernel's internal ENOTSUPP.
const ENOTSUPP: i32 = 524;
/// Pending write-backs kept per thread at most (runs outside
/// `LoadedProgram::run` never flush; the oldest are written back first).
const MAX_PENDING: usize = 1024;

#[repr(C)]
#[derive(Default)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct IdAttr {
    id: u32,
    next_id: u32,
    open_flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// The head of `struct bpf_map_info`.
#[repr(C)]
#[derive(Default)]
struct MapInfoHead {
    map_type: u32,
    id: u32,
}

fn sys_bpf<A>(cmd: i64, attr: &mut A) -> Result<i64, i32> {
    // SAFETY: `attr` is the attribute struct of `cmd`; pointers in it are
    // the callers', valid for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut A,
            std::mem::size_of::<A>() as u32,
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EINVAL))
    } else {
        Ok(r)
    }
}

fn map_error(errno: i32) -> MapError {
    match errno {
        libc::ENOENT => MapError::NotFound,
        libc::EEXIST => MapError::Exists,
        libc::E2BIG => MapError::Full,
        libc::EINVAL => MapError::Invalid("refused by the kernel"),
        libc::EPERM | libc::EACCES => MapError::ReadOnly,
        libc::EFAULT => MapError::Fault,
        libc::ENOMEM => MapError::NoMemory,
        libc::EBUSY => MapError::Busy,
        libc::EBADF => MapError::BadFd,
        ENOTSUPP | libc::EOPNOTSUPP => MapError::NotSupported,
        e => MapError::Io(e),
    }
}

/// The kernel map id behind `fd`.
pub fn kernel_map_id(fd: RawFd) -> Result<u32, i32> {
    let mut info = MapInfoHead::default();
    let mut attr = InfoAttr {
        bpf_fd: fd as u32,
        info_len: std::mem::size_of::<MapInfoHead>() as u32,
        info: &mut info as *mut MapInfoHead as u64,
    };
    sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(info.id)
}

/// An fd of kernel map `id`, which process `pid` holds as `fd`.
fn open_kernel_map(id: u32, pid: u32, fd: i32) -> Result<OwnedFd, MapError> {
    let check = |owned: OwnedFd| (kernel_map_id(owned.as_raw_fd()) == Ok(id)).then_some(owned);
    if pid == std::process::id() {
        // SAFETY: F_DUPFD_CLOEXEC on a number; the result is ours.
        let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
        if dup >= 0 {
            // SAFETY: a new fd we own.
            if let Some(owned) = check(unsafe { OwnedFd::from_raw_fd(dup) }) {
                return Ok(owned);
            }
        }
    } else {
        // SAFETY: pidfd_open(2) with a pid and no flags.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if pidfd >= 0 {
            // SAFETY: a new fd we own.
            let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) };
            // SAFETY: pidfd_getfd(2) on our pidfd.
            let got = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
            if got >= 0 {
                // SAFETY: a new fd we own.
                if let Some(owned) = check(unsafe { OwnedFd::from_raw_fd(got as RawFd) }) {
                    return Ok(owned);
                }
            }
        }
    }
    let mut attr = IdAttr {
        id,
        ..Default::default()
    };
    let fd = sys_bpf(BPF_MAP_GET_FD_BY_ID, &mut attr).map_err(map_error)?;
    // SAFETY: a new fd from the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// The kernel's memory of an mmapable array, mapped here.
struct Mapping {
    base: *mut u8,
    len: usize,
}

// SAFETY: plain shared memory; the kernel and programs access it with the
// same rules as the kernel's own array values.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps the mapping this value owns.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// The ops of a proxy map.
pub struct KernelProxy {
    fd: Arc<OwnedFd>,
    spec: MapSpec,
    /// Bytes of a value on the syscall side (per-CPU: every CPU's).
    sys_value_size: usize,
    mapping: Option<Mapping>,
}

/// A looked-up copy that a program may write to.
struct Pending {
    fd: Arc<OwnedFd>,
    key: Box<[u8]>,
    slot: Box<[u8]>,
    orig: Box<[u8]>,
    /// Per-CPU maps: the CPU whose value the slot holds, and the width of
    /// one CPU's value on the syscall side.
    percpu: Option<(usize, usize)>,
    sys_value_size: usize,
}

thread_local! {
    static PENDING: RefCell<Vec<Pending>> = const { RefCell::new(Vec::new()) };
}

impl Pending {
    fn write_back(self) {
        if self.slot == self.orig {
            return;
        }
        let mut value = vec![0u8; self.sys_value_size];
        let data = match self.percpu {
            None => self.slot.to_vec(),
            Some((cpu, width)) => {
                if elem(
                    &self.fd,
                    BPF_MAP_LOOKUP_ELEM,
                    &self.key,
                    value.as_mut_ptr(),
                    0,
                )
                .is_err()
                {
                    return;
                }
                let n = self.slot.len().min(width);
                value[cpu * width..cpu * width + n].copy_from_slice(&self.slot[..n]);
                value
            }
        };
        let _ = elem(
            &self.fd,
            BPF_MAP_UPDATE_ELEM,
            &self.key,
            data.as_ptr() as *mut u8,
            BPF_EXIST,
        );
    }
}

/// Writes back what programs of this thread changed through looked-up
/// pointers of proxy maps (called when a run ends).
pub fn flush_pending() {
    let pending = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
    for p in pending {
        p.write_back();
    }
}

fn elem(fd: &OwnedFd, cmd: i64, key: &[u8], value: *mut u8, flags: u64) -> Result<(), i32> {
    let mut attr = ElemAttr {
        map_fd: fd.as_raw_fd() as u32,
        key: if key.is_empty() {
            0
        } else {
            key.as_ptr() as u64
        },
        value: value as u64,
        flags,
        ..Default::default()
    };
    sys_bpf(cmd, &mut attr).map(drop)
}

impl KernelProxy {
    /// The proxy of the kernel map `fd` (which this process holds).
    pub(crate) fn new(spec: &MapSpec, fd: OwnedFd) -> Result<KernelProxy, MapError> {
        let sys_value_size = if is_percpu(spec.map_type) {
            super::percpu_value_size(spec.value_size)
        } else {
            spec.value_size as usize
        };
        let mapping = if spec.map_type == map_type::ARRAY && spec.map_flags & BPF_F_MMAPABLE != 0 {
            let len = (round_up8(spec.value_size as usize) * spec.max_entries.max(1) as usize)
                .div_ceil(4096)
                * 4096;
            let map = |prot| {
                // SAFETY: maps the kernel map's value area; the kernel
                // checks the length and protection.
                unsafe {
                    libc::mmap(
                        std::ptr::null_mut(),
                        len,
                        prot,
                        libc::MAP_SHARED,
                        fd.as_raw_fd(),
                        0,
                    )
                }
            };
            // Frozen maps (.rodata) only map read-only.
            let mut p = map(libc::PROT_READ | libc::PROT_WRITE);
            if p == libc::MAP_FAILED {
                p = map(libc::PROT_READ);
            }
            if p == libc::MAP_FAILED {
                return Err(MapError::from(std::io::Error::last_os_error()));
            }
            Some(Mapping {
                base: p.cast(),
                len,
            })
        } else {
            None
        };
        Ok(KernelProxy {
            fd: Arc::new(fd),
            spec: spec.clone(),
            sys_value_size,
            mapping,
        })
    }

    fn key<'a>(&self, key: *const u8) -> &'a [u8] {
        // SAFETY: program-side callers pass key_size readable bytes.
        unsafe { std::slice::from_raw_parts(key, self.spec.key_size as usize) }
    }

    fn copy_for_program(&self, key: &[u8], cpu: Option<u32>) -> *mut u8 {
        let mut value = vec![0u8; self.sys_value_size];
        if elem(&self.fd, BPF_MAP_LOOKUP_ELEM, key, value.as_mut_ptr(), 0).is_err() {
            return std::ptr::null_mut();
        }
        let width = round_up8(self.spec.value_size as usize);
        let (slot, percpu): (Box<[u8]>, _) = match cpu {
            Some(c) => {
                let c = c as usize;
                if (c + 1) * width > value.len() {
                    return std::ptr::null_mut();
                }
                (
                    value[c * width..c * width + self.spec.value_size as usize].into(),
                    Some((c, width)),
                )
            }
            None => (value.into_boxed_slice(), None),
        };
        let mut pending = Pending {
            fd: self.fd.clone(),
            key: key.into(),
            orig: slot.clone(),
            slot,
            percpu,
            sys_value_size: self.sys_value_size,
        };
        let ptr = pending.slot.as_mut_ptr();
        let evicted = PENDING.with(|p| {
            let mut p = p.borrow_mut();
            let old = (p.len() >= MAX_PENDING).then(|| p.remove(0));
            p.push(pending);
            old
        });
        if let Some(old) = evicted {
            old.write_back();
        }
        ptr
    }
}

impl MapOps for KernelProxy {
    fn lookup(&self, key: &[u8], value: &mut [u8], flags: u64) -> Result<(), MapError> {
        if value.len() < self.sys_value_size {
            return Err(MapError::Invalid("value buffer too small"));
        }
        elem(
            &self.fd,
            BPF_MAP_LOOKUP_ELEM,
            key,
            value.as_mut_ptr(),
            flags,
        )
        .map_err(map_error)
    }

    fn update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<(), MapError> {
        if value.len() < self.sys_value_size {
            return Err(MapError::Invalid("value buffer too small"));
        }
        elem(
            &self.fd,
            BPF_MAP_UPDATE_ELEM,
            key,
            value.as_ptr() as *mut u8,
            flags,
        )
        .map_err(map_error)
    }

    fn delete(&self, key: &[u8]) -> Result<(), MapError> {
        elem(&self.fd, BPF_MAP_DELETE_ELEM, key, std::ptr::null_mut(), 0).map_err(map_error)
    }

    fn next_key(&self, key: Option<&[u8]>, next: &mut [u8]) -> Result<(), MapError> {
        elem(
            &self.fd,
            BPF_MAP_GET_NEXT_KEY,
            key.unwrap_or(&[]),
            next.as_mut_ptr(),
            0,
        )
        .map_err(map_error)
    }

    fn lookup_and_delete(&self, key: &[u8], value: &mut [u8], flags: u64) -> Result<(), MapError> {
        elem(
            &self.fd,
            BPF_MAP_LOOKUP_AND_DELETE_ELEM,
            key,
            value.as_mut_ptr(),
            flags,
        )
        .map_err(map_error)
    }

    unsafe fn prog_lookup(&self, key: *const u8) -> *mut u8 {
        // SAFETY: `key` is key_size readable bytes (caller contract).
        if let Some(ptr) = unsafe { self.fast_lookup().lookup(key) } {
            return ptr;
        }
        let cpu = is_percpu(self.spec.map_type).then(crate::cpu::current_cpu);
        self.copy_for_program(self.key(key), cpu)
    }

    unsafe fn prog_update(&self, key: *const u8, value: *const u8, flags: u64) -> i64 {
        let key = self.key(key);
        let vs = self.spec.value_size as usize;
        // SAFETY: program-side callers pass value_size readable bytes.
        let given = unsafe { std::slice::from_raw_parts(value, vs) };
        let result = if is_percpu(self.spec.map_type) {
            // A program updates its own CPU's value; the others stay.
            let width = round_up8(vs);
            let cpu = crate::cpu::current_cpu() as usize;
            let mut all = vec![0u8; self.sys_value_size];
            let _ = elem(&self.fd, BPF_MAP_LOOKUP_ELEM, key, all.as_mut_ptr(), 0);
            if (cpu + 1) * width <= all.len() {
                all[cpu * width..cpu * width + vs].copy_from_slice(given);
            }
            elem(&self.fd, BPF_MAP_UPDATE_ELEM, key, all.as_mut_ptr(), flags)
        } else {
            elem(&self.fd, BPF_MAP_UPDATE_ELEM, key, value as *mut u8, flags)
        };
        match result {
            Ok(()) => 0,
            Err(e) => -(e as i64),
        }
    }

    unsafe fn prog_delete(&self, key: *const u8) -> i64 {
        match elem(
            &self.fd,
            BPF_MAP_DELETE_ELEM,
            self.key(key),
            std::ptr::null_mut(),
            0,
        ) {
            Ok(()) => 0,
            Err(e) => -(e as i64),
        }
    }

    unsafe fn prog_lookup_percpu(&self, key: *const u8, cpu: u32) -> *mut u8 {
        if !is_percpu(self.spec.map_type) || cpu >= crate::cpu::possible_cpus() {
            return std::ptr::null_mut();
        }
        self.copy_for_program(self.key(key), Some(cpu))
    }

    fn prog_value_size(&self) -> u32 {
        self.spec.value_size
    }

    fn fast_lookup(&self) -> FastLookup {
        match &self.mapping {
            Some(m) => FastLookup::Array {
                base: m.base as usize,
                stride: round_up8(self.spec.value_size as usize),
                max_entries: self.spec.max_entries,
                cpu_block: 0,
                percpu: false,
            },
            None => FastLookup::None,
        }
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// The ops of a proxy map file another process (or this one) made.
pub(crate) fn open(spec: &MapSpec, mem: &MapMem) -> Result<Box<dyn MapOps>, MapError> {
    let h = mem.header();
    let fd = open_kernel_map(h.kernel_map_id, h.kernel_owner_pid, h.kernel_owner_fd)?;
    Ok(Box::new(KernelProxy::new(spec, fd)?))
}
