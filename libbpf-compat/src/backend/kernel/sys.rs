//! The `bpf(2)` and `perf_event_open(2)` system calls, written out.
//!
//! Each command gets a `#[repr(C)]` attribute struct with the fields of
//! `union bpf_attr` it uses, in the kernel's order (`linux/bpf.h`);
//! [`bpf`] passes `size_of` the struct, and the kernel zero-extends what it
//! does not get. Errors are positive errno values.

use std::ffi::{c_void, CStr};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// `enum bpf_cmd`.
pub mod cmd {
    pub const MAP_CREATE: u32 = 0;
    pub const MAP_LOOKUP_ELEM: u32 = 1;
    pub const MAP_UPDATE_ELEM: u32 = 2;
    pub const MAP_DELETE_ELEM: u32 = 3;
    pub const MAP_GET_NEXT_KEY: u32 = 4;
    pub const PROG_LOAD: u32 = 5;
    pub const OBJ_PIN: u32 = 6;
    pub const OBJ_GET: u32 = 7;
    pub const PROG_ATTACH: u32 = 8;
    pub const PROG_DETACH: u32 = 9;
    pub const PROG_TEST_RUN: u32 = 10;
    pub const PROG_GET_NEXT_ID: u32 = 11;
    pub const MAP_GET_NEXT_ID: u32 = 12;
    pub const PROG_GET_FD_BY_ID: u32 = 13;
    pub const MAP_GET_FD_BY_ID: u32 = 14;
    pub const OBJ_GET_INFO_BY_FD: u32 = 15;
    pub const PROG_QUERY: u32 = 16;
    pub const RAW_TRACEPOINT_OPEN: u32 = 17;
    pub const BTF_LOAD: u32 = 18;
    pub const BTF_GET_FD_BY_ID: u32 = 19;
    pub const TASK_FD_QUERY: u32 = 20;
    pub const MAP_LOOKUP_AND_DELETE_ELEM: u32 = 21;
    pub const MAP_FREEZE: u32 = 22;
    pub const BTF_GET_NEXT_ID: u32 = 23;
    pub const MAP_LOOKUP_BATCH: u32 = 24;
    pub const MAP_LOOKUP_AND_DELETE_BATCH: u32 = 25;
    pub const MAP_UPDATE_BATCH: u32 = 26;
    pub const MAP_DELETE_BATCH: u32 = 27;
    pub const LINK_CREATE: u32 = 28;
    pub const LINK_UPDATE: u32 = 29;
    pub const LINK_GET_FD_BY_ID: u32 = 30;
    pub const LINK_GET_NEXT_ID: u32 = 31;
    pub const ENABLE_STATS: u32 = 32;
    pub const ITER_CREATE: u32 = 33;
    pub const LINK_DETACH: u32 = 34;
    pub const PROG_BIND_MAP: u32 = 35;
}

/// `bpf(cmd, attr, size_of::<A>())`: the raw return value or the errno.
///
/// # Safety
/// `attr` must be the attribute struct `cmd` takes, and every pointer in
/// it valid for what the command does with it.
pub unsafe fn bpf<A>(cmd: u32, attr: &mut A) -> Result<i64, i32> {
    // SAFETY: caller contract; the size is the struct's own.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr as *mut A as *mut c_void,
            std::mem::size_of::<A>() as libc::c_uint,
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

/// [`bpf`] for commands that return a new fd.
///
/// # Safety
/// As [`bpf`].
pub unsafe fn bpf_fd<A>(cmd: u32, attr: &mut A) -> Result<OwnedFd, i32> {
    // SAFETY: caller contract.
    let fd = unsafe { bpf(cmd, attr)? };
    // SAFETY: the kernel just returned this fd to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `BPF_MAP_CREATE`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MapCreateAttr {
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub map_flags: u32,
    pub inner_map_fd: u32,
    pub numa_node: u32,
    pub map_name: [u8; 16],
    pub map_ifindex: u32,
    pub btf_fd: u32,
    pub btf_key_type_id: u32,
    pub btf_value_type_id: u32,
    pub btf_vmlinux_value_type_id: u32,
    pub map_extra: u64,
    pub value_type_btf_obj_fd: i32,
    pub map_token_fd: i32,
}

/// `BPF_MAP_*_ELEM`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MapElemAttr {
    pub map_fd: u32,
    pub _pad: u32,
    pub key: u64,
    /// `value` or `next_key`.
    pub value: u64,
    pub flags: u64,
}

/// `BPF_MAP_*_BATCH`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MapBatchAttr {
    pub in_batch: u64,
    pub out_batch: u64,
    pub keys: u64,
    pub values: u64,
    pub count: u32,
    pub map_fd: u32,
    pub elem_flags: u64,
    pub flags: u64,
}

/// `BPF_PROG_LOAD`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ProgLoadAttr {
    pub prog_type: u32,
    pub insn_cnt: u32,
    pub insns: u64,
    pub license: u64,
    pub log_level: u32,
    pub log_size: u32,
    pub log_buf: u64,
    pub kern_version: u32,
    pub prog_flags: u32,
    pub prog_name: [u8; 16],
    pub prog_ifindex: u32,
    pub expected_attach_type: u32,
    pub prog_btf_fd: u32,
    pub func_info_rec_size: u32,
    pub func_info: u64,
    pub func_info_cnt: u32,
    pub line_info_rec_size: u32,
    pub line_info: u64,
    pub line_info_cnt: u32,
    pub attach_btf_id: u32,
    /// `attach_prog_fd` or `attach_btf_obj_fd`.
    pub attach_prog_fd: u32,
    pub core_relo_cnt: u32,
    pub fd_array: u64,
    pub core_relos: u64,
    pub core_relo_rec_size: u32,
    pub log_true_size: u32,
    pub prog_token_fd: i32,
    pub fd_array_cnt: u32,
}

/// `BPF_OBJ_PIN` / `BPF_OBJ_GET`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ObjAttr {
    pub pathname: u64,
    pub bpf_fd: u32,
    pub file_flags: u32,
    pub path_fd: i32,
    pub _pad: u32,
}

/// `BPF_PROG_ATTACH` / `BPF_PROG_DETACH`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ProgAttachAttr {
    pub target_fd: u32,
    pub attach_bpf_fd: u32,
    pub attach_type: u32,
    pub attach_flags: u32,
    pub replace_bpf_fd: u32,
    pub relative_fd: u32,
    pub expected_revision: u64,
}

/// `BPF_PROG_TEST_RUN`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TestRunAttr {
    pub prog_fd: u32,
    pub retval: u32,
    pub data_size_in: u32,
    pub data_size_out: u32,
    pub data_in: u64,
    pub data_out: u64,
    pub repeat: u32,
    pub duration: u32,
    pub ctx_size_in: u32,
    pub ctx_size_out: u32,
    pub ctx_in: u64,
    pub ctx_out: u64,
    pub flags: u32,
    pub cpu: u32,
    pub batch_size: u32,
    pub _pad: u32,
}

/// `BPF_*_GET_NEXT_ID` / `BPF_*_GET_FD_BY_ID`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct IdAttr {
    /// `start_id`, `prog_id`, `map_id`, `btf_id` or `link_id`.
    pub id: u32,
    pub next_id: u32,
    pub open_flags: u32,
    pub fd_by_id_token_fd: i32,
}

/// `BPF_OBJ_GET_INFO_BY_FD`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct InfoAttr {
    pub bpf_fd: u32,
    pub info_len: u32,
    pub info: u64,
}

/// `BPF_RAW_TRACEPOINT_OPEN`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RawTracepointAttr {
    pub name: u64,
    pub prog_fd: u32,
    pub _pad: u32,
    pub cookie: u64,
}

/// `BPF_BTF_LOAD`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct BtfLoadAttr {
    pub btf: u64,
    pub btf_log_buf: u64,
    pub btf_size: u32,
    pub btf_log_size: u32,
    pub btf_log_level: u32,
    pub btf_log_true_size: u32,
    pub btf_flags: u32,
    pub btf_token_fd: i32,
}

/// `BPF_LINK_CREATE`: the common head plus 48 bytes of the per-type union
/// (`target_btf_id`, `perf_event.bpf_cookie`, `kprobe_multi`, `tracing`,
/// `netfilter`, `tcx`, `uprobe_multi`, ...), which callers fill through
/// [`LinkCreateAttr::extra`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct LinkCreateAttr {
    /// `prog_fd` (or `map_fd` for struct_ops).
    pub prog_fd: u32,
    /// `target_fd` or `target_ifindex`.
    pub target_fd: u32,
    pub attach_type: u32,
    pub flags: u32,
    pub extra: [u64; 6],
}

/// `BPF_LINK_UPDATE`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct LinkUpdateAttr {
    pub link_fd: u32,
    pub new_prog_fd: u32,
    pub flags: u32,
    pub old_prog_fd: u32,
}

/// `BPF_LINK_DETACH` / `BPF_ITER_CREATE` / `BPF_MAP_FREEZE` / `BPF_ENABLE_STATS`:
/// one fd or type and flags.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FdFlagsAttr {
    pub fd: u32,
    pub flags: u32,
}

/// `BPF_PROG_BIND_MAP`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct BindMapAttr {
    pub prog_fd: u32,
    pub map_fd: u32,
    pub flags: u32,
}

/// `BPF_TASK_FD_QUERY`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TaskFdQueryAttr {
    pub pid: u32,
    pub fd: u32,
    pub flags: u32,
    pub buf_len: u32,
    pub buf: u64,
    pub prog_id: u32,
    pub fd_type: u32,
    pub probe_offset: u64,
    pub probe_addr: u64,
}

/// `BPF_PROG_QUERY`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ProgQueryAttr {
    pub target_fd: u32,
    pub attach_type: u32,
    pub query_flags: u32,
    pub attach_flags: u32,
    pub prog_ids: u64,
    pub count: u32,
    pub _pad: u32,
    pub prog_attach_flags: u64,
    pub link_ids: u64,
    pub link_attach_flags: u64,
    pub revision: u64,
}

/// The head of `struct bpf_map_info` this backend reads.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MapInfo {
    pub map_type: u32,
    pub id: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub map_flags: u32,
    pub name: [u8; 16],
    pub ifindex: u32,
    pub btf_vmlinux_value_type_id: u32,
    pub netns_dev: u64,
    pub netns_ino: u64,
    pub btf_id: u32,
    pub btf_key_type_id: u32,
    pub btf_value_type_id: u32,
    pub btf_vmlinux_id: u32,
    pub map_extra: u64,
}

/// A copy of a C string's bytes into a fixed object-name field,
/// truncated to leave the terminating NUL.
pub fn obj_name(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    let n = name.len().min(15);
    out[..n].copy_from_slice(&name.as_bytes()[..n]);
    out
}

/// `BPF_OBJ_GET_INFO_BY_FD` into a `T` (whose size is `info_len`).
pub fn obj_info<T: Default>(fd: RawFd) -> Result<T, i32> {
    let mut info = T::default();
    let mut attr = InfoAttr {
        bpf_fd: fd as u32,
        info_len: std::mem::size_of::<T>() as u32,
        info: &mut info as *mut T as u64,
    };
    // SAFETY: `info` is writable for `info_len` bytes.
    unsafe { bpf(cmd::OBJ_GET_INFO_BY_FD, &mut attr)? };
    Ok(info)
}

/// `BPF_MAP_CREATE`.
pub fn map_create(attr: &mut MapCreateAttr) -> Result<OwnedFd, i32> {
    // SAFETY: a plain attribute struct without pointers.
    unsafe { bpf_fd(cmd::MAP_CREATE, attr) }
}

/// `BPF_MAP_LOOKUP_ELEM` (and friends, by `cmd`) on plain buffers.
///
/// # Safety
/// `key` must be readable for the map's key size, `value` readable and
/// writable for its (syscall) value size, or null where the command allows.
pub unsafe fn map_elem(
    cmd: u32,
    fd: RawFd,
    key: *const c_void,
    value: *mut c_void,
    flags: u64,
) -> Result<(), i32> {
    let mut attr = MapElemAttr {
        map_fd: fd as u32,
        key: key as u64,
        value: value as u64,
        flags,
        ..Default::default()
    };
    // SAFETY: caller contract.
    unsafe { bpf(cmd, &mut attr).map(|_| ()) }
}

/// `BPF_MAP_FREEZE`.
pub fn map_freeze(fd: RawFd) -> Result<(), i32> {
    let mut attr = FdFlagsAttr {
        fd: fd as u32,
        flags: 0,
    };
    // SAFETY: a plain attribute struct.
    unsafe { bpf(cmd::MAP_FREEZE, &mut attr).map(|_| ()) }
}

/// `BPF_BTF_LOAD` with an optional log.
pub fn btf_load(data: &[u8], log: Option<&mut [u8]>, log_level: u32) -> Result<OwnedFd, i32> {
    let (log_buf, log_size) = match log {
        Some(l) => (l.as_mut_ptr() as u64, l.len() as u32),
        None => (0, 0),
    };
    let mut attr = BtfLoadAttr {
        btf: data.as_ptr() as u64,
        btf_size: data.len() as u32,
        btf_log_buf: log_buf,
        btf_log_size: log_size,
        btf_log_level: if log_size > 0 { log_level.max(1) } else { 0 },
        ..Default::default()
    };
    // SAFETY: `data` and the log buffer outlive the call.
    unsafe { bpf_fd(cmd::BTF_LOAD, &mut attr) }
}

/// `BPF_RAW_TRACEPOINT_OPEN` (`name` null for tp_btf / fentry / lsm
/// programs, which carry their target).
pub fn raw_tracepoint_open(
    name: Option<&CStr>,
    prog_fd: RawFd,
    cookie: u64,
) -> Result<OwnedFd, i32> {
    let mut attr = RawTracepointAttr {
        name: name.map_or(0, |n| n.as_ptr() as u64),
        prog_fd: prog_fd as u32,
        cookie,
        ..Default::default()
    };
    // SAFETY: `name` outlives the call.
    unsafe { bpf_fd(cmd::RAW_TRACEPOINT_OPEN, &mut attr) }
}

/// `BPF_LINK_CREATE`.
pub fn link_create(attr: &mut LinkCreateAttr) -> Result<OwnedFd, i32> {
    // SAFETY: pointers in `extra` are the caller's, valid for the call by
    // the contract of each link type's builder.
    unsafe { bpf_fd(cmd::LINK_CREATE, attr) }
}

/// `struct perf_event_attr` (the fields this backend sets; 128 bytes,
/// `PERF_ATTR_SIZE_VER8`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PerfEventAttr {
    pub type_: u32,
    pub size: u32,
    pub config: u64,
    /// `sample_period` or `sample_freq`.
    pub sample_period: u64,
    pub sample_type: u64,
    pub read_format: u64,
    /// The bitfield word: disabled, inherit, ..., freq (bit 10), ...
    pub flags: u64,
    /// `wakeup_events` or `wakeup_watermark`.
    pub wakeup_events: u32,
    pub bp_type: u32,
    /// `bp_addr`, `kprobe_func`, `uprobe_path` or `config1`.
    pub config1: u64,
    /// `bp_len`, `kprobe_addr`, `probe_offset` or `config2`.
    pub config2: u64,
    pub branch_sample_type: u64,
    pub sample_regs_user: u64,
    pub sample_stack_user: u32,
    pub clockid: i32,
    pub sample_regs_intr: u64,
    pub aux_watermark: u32,
    pub sample_max_stack: u16,
    pub _reserved_2: u16,
    pub aux_sample_size: u32,
    pub _reserved_3: u32,
    pub sig_data: u64,
    pub config3: u64,
}

/// `perf_event_attr.flags` bits.
pub mod perf_flag {
    pub const DISABLED: u64 = 1 << 0;
    pub const INHERIT: u64 = 1 << 1;
    pub const FREQ: u64 = 1 << 10;
    pub const WAKEUP_WATERMARK: u64 = 1 << 14;
}

/// `PERF_TYPE_*`, `PERF_COUNT_SW_*`, `PERF_SAMPLE_RAW`, `PERF_FLAG_FD_CLOEXEC`.
pub mod perf {
    pub const TYPE_HARDWARE: u32 = 0;
    pub const TYPE_SOFTWARE: u32 = 1;
    pub const TYPE_TRACEPOINT: u32 = 2;
    pub const COUNT_SW_BPF_OUTPUT: u64 = 10;
    pub const SAMPLE_RAW: u64 = 1 << 10;
    pub const FLAG_FD_CLOEXEC: u64 = 1 << 3;
}

/// `ioctl` requests on perf event fds.
pub mod perf_ioc {
    pub const ENABLE: u64 = 0x2400;
    pub const DISABLE: u64 = 0x2401;
    /// `_IOW('$', 8, __u32)`.
    pub const SET_BPF: u64 = 0x4004_2408;
}

/// `perf_event_open(attr, pid, cpu, group_fd, flags)`.
pub fn perf_event_open(
    attr: &mut PerfEventAttr,
    pid: i32,
    cpu: i32,
    group_fd: i32,
    flags: u64,
) -> Result<OwnedFd, i32> {
    attr.size = std::mem::size_of::<PerfEventAttr>() as u32;
    // SAFETY: `attr` is a complete perf_event_attr of the size it states.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr as *mut PerfEventAttr,
            pid,
            cpu,
            group_fd,
            flags as libc::c_ulong,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EINVAL));
    }
    // SAFETY: a new fd from the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `ioctl(fd, request, arg)` on a perf event fd.
pub fn perf_ioctl(fd: RawFd, request: u64, arg: u64) -> Result<(), i32> {
    // SAFETY: the perf requests used here take an integer argument.
    let r = unsafe { libc::ioctl(fd, request as _, arg) };
    if r < 0 {
        Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EINVAL))
    } else {
        Ok(())
    }
}

/// What kind of bpf object an fd is, from its anon-inode name
/// (`anon_inode:bpf-map`, `bpf-prog`, `bpf_link`, `btf`), if it is one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelFdKind {
    Map,
    Prog,
    Link,
    Btf,
}

/// The kind of kernel bpf object behind `fd`, or `None` for anything
/// else (userbpf's own maps and programs are memfds).
pub fn kernel_fd_kind(fd: RawFd) -> Option<KernelFdKind> {
    let target = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
    let name = target.to_str()?;
    match name {
        "anon_inode:bpf-map" => Some(KernelFdKind::Map),
        "anon_inode:bpf-prog" => Some(KernelFdKind::Prog),
        "anon_inode:btf" => Some(KernelFdKind::Btf),
        n if n.starts_with("anon_inode:bpf_link") || n.starts_with("anon_inode:bpf-link") => {
            Some(KernelFdKind::Link)
        }
        _ => None,
    }
}
