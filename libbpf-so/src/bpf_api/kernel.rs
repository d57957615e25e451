//! The `bpf.h` wrappers on kernel objects: libbpf 1.7's `bpf.c`, call for
//! call, over our own syscall layer (`backend::kernel::sys`).
//!
//! Each function builds the attribute struct libbpf builds, makes the
//! syscall and answers as `libbpf_err_errno` does (the kernel's errno);
//! outputs are written back where libbpf writes them (`*count` of the
//! batch calls always, `*info_len` on success, the `OPTS_SET` fields of
//! `bpf_test_run_opts` and `bpf_prog_load_opts` within the caller's `sz`).
//! New fds go through libbpf's `ensure_good_fd` (never 0, 1 or 2).
//!
//! The parent module sends an fd here when one `fstat` says it is not a
//! regular file (userbpf's maps and programs are memfds, kernel BPF objects
//! anon inodes). An fd that is neither (an eventfd, a socket) gets the
//! kernel's answer, `EINVAL`, which is also what the userspace backend
//! says; if `bpf(2)` itself is unavailable (`ENOSYS`, or `EPERM` from a
//! seccomp filter) such an fd still gets `EINVAL`.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::mem::offset_of;
use std::os::fd::{OwnedFd, RawFd};

use userbpf_libbpf_compat::backend::kernel::sys::{self, cmd};
use userbpf_libbpf_compat::backend::placement::BackendMode;

use super::{
    err, into_good_fd, opts_set_u32, BpfMapCreateOpts, BpfProgLoadOpts, BpfTestRunOpts, Res,
};
use crate::error::AbiError;

/// libbpf's `PROG_LOAD_ATTEMPTS`: loads failing with `EAGAIN` are retried.
const PROG_LOAD_ATTEMPTS: c_int = 5;

/// Whether `USERBPF_BACKEND=kernel`: objects made through `bpf.h` go to the
/// kernel, and ids are the kernel's.
pub(super) fn kernel_mode() -> bool {
    matches!(BackendMode::from_env(), Ok(BackendMode::Kernel))
}

/// Whether `USERBPF_BACKEND` is `user`.
pub(super) fn user_mode() -> bool {
    matches!(BackendMode::from_env(), Ok(BackendMode::User))
}

/// `libbpf_err_errno` of a call forwarded for `fd` (see the module docs for
/// the fd that is no BPF object where `bpf(2)` is unavailable).
fn on_fd(fd: RawFd, r: Result<i64, i32>) -> Res<c_int> {
    match r {
        Ok(v) => Ok(v as c_int),
        Err(libc::ENOSYS | libc::EPERM) if sys::kernel_fd_kind(fd).is_none() => err(libc::EINVAL),
        Err(e) => err(e),
    }
}

/// A new fd from the kernel, through `ensure_good_fd`.
fn good_fd(r: Result<OwnedFd, i32>) -> Res<c_int> {
    match r {
        Ok(fd) => into_good_fd(fd),
        Err(e) => err(e),
    }
}

/// `libbpf_strlcpy` into a 16-byte object name (no validation: the kernel
/// checks the characters).
///
/// # Safety
/// `name` NULL or NUL-terminated.
unsafe fn name16(name: *const c_char) -> [u8; 16] {
    let mut out = [0u8; 16];
    if name.is_null() {
        return out;
    }
    // SAFETY: caller contract.
    let bytes = unsafe { CStr::from_ptr(name) }.to_bytes();
    let n = bytes.len().min(15);
    out[..n].copy_from_slice(&bytes[..n]);
    out
}

// ---------------------------------------------------------------------------
// Elements, freeze, batches
// ---------------------------------------------------------------------------

/// `BPF_MAP_{LOOKUP,UPDATE,DELETE,LOOKUP_AND_DELETE}_ELEM` and
/// `BPF_MAP_GET_NEXT_KEY` (`value` is `next_key` there).
///
/// # Safety
/// Pointers as the kernel needs them for the map (it copies through them).
pub(super) unsafe fn map_elem(
    command: u32,
    fd: RawFd,
    key: *const c_void,
    value: *mut c_void,
    flags: u64,
) -> Res<c_int> {
    let mut attr = sys::MapElemAttr {
        map_fd: fd as u32,
        key: key as u64,
        value: value as u64,
        flags,
        ..Default::default()
    };
    // SAFETY: a plain attribute struct; the kernel copies through the
    // caller's pointers (caller contract).
    on_fd(fd, unsafe { sys::bpf(command, &mut attr) })
}

/// `BPF_MAP_FREEZE`.
pub(super) fn map_freeze(fd: RawFd) -> Res<c_int> {
    on_fd(fd, sys::map_freeze(fd).map(|()| 0))
}

/// `bpf_map_batch_common`.
///
/// # Safety
/// `count` valid; buffers as the kernel needs them for `*count` elements.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn map_batch(
    command: u32,
    fd: RawFd,
    in_batch: *const c_void,
    out_batch: *mut c_void,
    keys: *mut c_void,
    values: *mut c_void,
    count: *mut u32,
    elem_flags: u64,
    flags: u64,
) -> Res<c_int> {
    let mut attr = sys::MapBatchAttr {
        in_batch: in_batch as u64,
        out_batch: out_batch as u64,
        keys: keys as u64,
        values: values as u64,
        // SAFETY: non-NULL (the caller checked) and valid (contract).
        count: unsafe { count.read_unaligned() },
        map_fd: fd as u32,
        elem_flags,
        flags,
    };
    // SAFETY: the kernel copies through the caller's buffers (contract).
    let r = unsafe { sys::bpf(command, &mut attr) };
    // SAFETY: as above; libbpf writes the count back whatever happened.
    unsafe { count.write_unaligned(attr.count) };
    on_fd(fd, r)
}

// ---------------------------------------------------------------------------
// Info, test run
// ---------------------------------------------------------------------------

/// `BPF_OBJ_GET_INFO_BY_FD`.
///
/// # Safety
/// `info_len` valid; `info` valid for `*info_len` bytes.
pub(super) unsafe fn obj_get_info(fd: RawFd, info: *mut c_void, info_len: *mut u32) -> Res<c_int> {
    let mut attr = sys::InfoAttr {
        bpf_fd: fd as u32,
        // SAFETY: non-NULL (checked by the caller), valid (contract).
        info_len: unsafe { info_len.read_unaligned() },
        info: info as u64,
    };
    // SAFETY: the kernel writes at most info_len bytes at info.
    let r = unsafe { sys::bpf(cmd::OBJ_GET_INFO_BY_FD, &mut attr) };
    if r.is_ok() {
        // SAFETY: as above.
        unsafe { info_len.write_unaligned(attr.info_len) };
    }
    on_fd(fd, r)
}

/// `bpf_prog_test_run_opts` (the opts already read as `o`; outputs go to
/// `opts`).
///
/// # Safety
/// `opts` NULL or the caller's valid opts; its buffers valid for their sizes.
pub(super) unsafe fn prog_test_run(
    fd: RawFd,
    opts: *mut BpfTestRunOpts,
    o: &BpfTestRunOpts,
) -> Res<c_int> {
    let mut attr = sys::TestRunAttr {
        prog_fd: fd as u32,
        batch_size: o.batch_size,
        cpu: o.cpu,
        flags: o.flags,
        repeat: o.repeat as u32,
        duration: o.duration,
        ctx_size_in: o.ctx_size_in,
        ctx_size_out: o.ctx_size_out,
        data_size_in: o.data_size_in,
        data_size_out: o.data_size_out,
        ctx_in: o.ctx_in as u64,
        ctx_out: o.ctx_out as u64,
        data_in: o.data_in as u64,
        data_out: o.data_out as u64,
        ..Default::default()
    };
    // SAFETY: the kernel copies through the caller's buffers (contract).
    let r = unsafe { sys::bpf(cmd::PROG_TEST_RUN, &mut attr) };
    // SAFETY: OPTS_SET within the caller's sz (opts_set_u32 checks).
    unsafe {
        let p = opts.cast::<c_void>();
        opts_set_u32(
            p,
            offset_of!(BpfTestRunOpts, data_size_out),
            attr.data_size_out,
        );
        opts_set_u32(
            p,
            offset_of!(BpfTestRunOpts, ctx_size_out),
            attr.ctx_size_out,
        );
        opts_set_u32(p, offset_of!(BpfTestRunOpts, duration), attr.duration);
        opts_set_u32(p, offset_of!(BpfTestRunOpts, retval), attr.retval);
    }
    on_fd(fd, r)
}

// ---------------------------------------------------------------------------
// Pins
// ---------------------------------------------------------------------------

/// `BPF_OBJ_PIN`.
///
/// # Safety
/// `pathname` NULL or NUL-terminated.
pub(super) unsafe fn obj_pin(
    fd: RawFd,
    pathname: *const c_char,
    file_flags: u32,
    path_fd: c_int,
) -> Res<c_int> {
    let mut attr = sys::ObjAttr {
        pathname: pathname as u64,
        bpf_fd: fd as u32,
        file_flags,
        path_fd,
        _pad: 0,
    };
    // SAFETY: the kernel reads the path string (caller contract).
    on_fd(fd, unsafe { sys::bpf(cmd::OBJ_PIN, &mut attr) })
}

/// `BPF_OBJ_GET`: the new fd, or the kernel's errno (not yet an error
/// value: the caller may look at the virtual pins next).
///
/// # Safety
/// `pathname` NULL or NUL-terminated.
pub(super) unsafe fn obj_get(
    pathname: *const c_char,
    file_flags: u32,
    path_fd: c_int,
) -> Result<OwnedFd, i32> {
    let mut attr = sys::ObjAttr {
        pathname: pathname as u64,
        file_flags,
        path_fd,
        ..Default::default()
    };
    // SAFETY: the kernel reads the path string (caller contract).
    unsafe { sys::bpf_fd(cmd::OBJ_GET, &mut attr) }
}

// ---------------------------------------------------------------------------
// Streams, struct_ops association, tokens
// ---------------------------------------------------------------------------

/// `BPF_TOKEN_CREATE`, `BPF_PROG_STREAM_READ_BY_FD`, `BPF_PROG_ASSOC_STRUCT_OPS`.
const TOKEN_CREATE: u32 = 36;
const PROG_STREAM_READ_BY_FD: u32 = 37;
const PROG_ASSOC_STRUCT_OPS: u32 = 38;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct StreamReadAttr {
    stream_buf: u64,
    stream_buf_len: u32,
    stream_id: u32,
    prog_fd: u32,
    _pad: u32,
}

/// `bpf_prog_stream_read`: bytes read.
///
/// # Safety
/// `buf` valid for `buf_len` bytes of writes.
pub(super) unsafe fn prog_stream_read(
    fd: RawFd,
    stream_id: u32,
    buf: *mut c_void,
    buf_len: u32,
) -> Res<c_int> {
    let mut attr = StreamReadAttr {
        stream_buf: buf as u64,
        stream_buf_len: buf_len,
        stream_id,
        prog_fd: fd as u32,
        _pad: 0,
    };
    // SAFETY: the kernel writes at most buf_len bytes at buf.
    on_fd(fd, unsafe { sys::bpf(PROG_STREAM_READ_BY_FD, &mut attr) })
}

/// `bpf_prog_assoc_struct_ops`.
pub(super) fn prog_assoc_struct_ops(prog_fd: RawFd, map_fd: RawFd, flags: u32) -> Res<c_int> {
    let mut attr = [map_fd as u32, prog_fd as u32, flags, 0u32];
    // SAFETY: a plain attribute struct (map_fd, prog_fd, flags).
    on_fd(prog_fd, unsafe {
        sys::bpf(PROG_ASSOC_STRUCT_OPS, &mut attr)
    })
}

/// `bpf_token_create`.
pub(super) fn token_create(bpffs_fd: RawFd, flags: u32) -> Res<c_int> {
    let mut attr = [flags, bpffs_fd as u32];
    // SAFETY: a plain attribute struct (flags, bpffs_fd).
    good_fd(unsafe { sys::bpf_fd(TOKEN_CREATE, &mut attr) })
}

// ---------------------------------------------------------------------------
// Ids
// ---------------------------------------------------------------------------

/// `BPF_{MAP,PROG,BTF,LINK}_GET_NEXT_ID`.
///
/// # Safety
/// `next` NULL or valid.
pub(super) unsafe fn next_id(command: u32, start: u32, next: *mut u32) -> Res<c_int> {
    if next.is_null() {
        // libbpf would write through NULL on success.
        return err(libc::EINVAL);
    }
    let mut attr = sys::IdAttr {
        id: start,
        ..Default::default()
    };
    // SAFETY: a plain attribute struct.
    unsafe { sys::bpf(command, &mut attr) }.map_err(AbiError::Errno)?;
    // SAFETY: non-NULL, valid (contract).
    unsafe { next.write_unaligned(attr.next_id) };
    Ok(0)
}

/// `BPF_{MAP,PROG,BTF,LINK}_GET_FD_BY_ID`.
pub(super) fn fd_by_id(command: u32, id: u32, open_flags: u32, token_fd: u32) -> Res<c_int> {
    let mut attr = sys::IdAttr {
        id,
        open_flags,
        fd_by_id_token_fd: token_fd as i32,
        ..Default::default()
    };
    // SAFETY: a plain attribute struct.
    good_fd(unsafe { sys::bpf_fd(command, &mut attr) })
}

// ---------------------------------------------------------------------------
// BPF_MAP_CREATE
// ---------------------------------------------------------------------------

/// `BPF_MAP_CREATE` up to `excl_prog_hash_size`, as libbpf 1.7 passes it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct MapCreateAttrFull {
    base: sys::MapCreateAttr,
    excl_prog_hash: u64,
    excl_prog_hash_size: u32,
    _pad: u32,
}

/// `bpf_map_create` on the kernel.
///
/// # Safety
/// `name` NULL or NUL-terminated; `o` read from the caller's opts.
pub(super) unsafe fn map_create(
    map_type: u32,
    name: *const c_char,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    o: Option<&BpfMapCreateOpts>,
) -> Res<c_int> {
    let g = |f: fn(&BpfMapCreateOpts) -> u32| o.map_or(0, f);
    let mut attr = MapCreateAttrFull {
        base: sys::MapCreateAttr {
            map_type,
            key_size,
            value_size,
            max_entries,
            map_flags: g(|o| o.map_flags),
            inner_map_fd: g(|o| o.inner_map_fd),
            numa_node: g(|o| o.numa_node),
            // SAFETY: caller contract.
            map_name: unsafe { name16(name) },
            map_ifindex: g(|o| o.map_ifindex),
            btf_fd: g(|o| o.btf_fd),
            btf_key_type_id: g(|o| o.btf_key_type_id),
            btf_value_type_id: g(|o| o.btf_value_type_id),
            btf_vmlinux_value_type_id: g(|o| o.btf_vmlinux_value_type_id),
            map_extra: o.map_or(0, |o| o.map_extra),
            value_type_btf_obj_fd: o.map_or(0, |o| o.value_type_btf_obj_fd),
            map_token_fd: g(|o| o.token_fd) as i32,
        },
        excl_prog_hash: o.map_or(0, |o| o.excl_prog_hash as u64),
        excl_prog_hash_size: g(|o| o.excl_prog_hash_size),
        _pad: 0,
    };
    // SAFETY: the only pointer (excl_prog_hash) is the caller's, valid for
    // its size (contract).
    good_fd(unsafe { sys::bpf_fd(cmd::MAP_CREATE, &mut attr) })
}

// ---------------------------------------------------------------------------
// BPF_PROG_LOAD
// ---------------------------------------------------------------------------

/// `sys_bpf_prog_load`: retried while the kernel says `EAGAIN`.
fn load_with_attempts(attr: &mut sys::ProgLoadAttr, mut attempts: c_int) -> Result<OwnedFd, i32> {
    loop {
        // SAFETY: every pointer in `attr` is the caller's, valid for the
        // sizes it gives (bpf_prog_load's contract).
        match unsafe { sys::bpf_fd(cmd::PROG_LOAD, attr) } {
            Err(libc::EAGAIN) => {
                attempts -= 1;
                if attempts <= 0 {
                    return Err(libc::EAGAIN);
                }
            }
            r => return r,
        }
    }
}

/// `alloc_zero_tailing_info`: `cnt` records of `actual` bytes, of which
/// the kernel knows the first `expected`; the rest zeroed.
///
/// # Safety
/// `records` valid for `cnt * actual` bytes.
unsafe fn zero_tailing(records: *const u8, cnt: u32, actual: u32, expected: u32) -> Vec<u8> {
    let (cnt, actual, expected) = (cnt as usize, actual as usize, expected as usize);
    let mut out = vec![0u8; cnt * actual];
    for i in 0..cnt {
        // SAFETY: caller contract; expected < actual.
        let src = unsafe { std::slice::from_raw_parts(records.add(i * actual), expected) };
        out[i * actual..i * actual + expected].copy_from_slice(src);
    }
    out
}

/// `bpf_prog_load` on the kernel: libbpf's attribute building, `EAGAIN`
/// attempts, the `E2BIG` func/line info record-size fix-up, and the retry
/// with `log_level` 1 when the caller gave a buffer but no level.
///
/// # Safety
/// Pointers as libbpf's `bpf_prog_load` requires; `opts` NULL or the
/// caller's valid opts (already read as `o`).
pub(super) unsafe fn prog_load(
    prog_type: u32,
    name: *const c_char,
    license: *const c_char,
    insns: *const c_void,
    insn_cnt: usize,
    opts: *mut BpfProgLoadOpts,
    o: Option<&BpfProgLoadOpts>,
) -> Res<c_int> {
    let mut attempts = o.map_or(0, |o| o.attempts);
    if attempts < 0 {
        return err(libc::EINVAL);
    }
    if attempts == 0 {
        attempts = PROG_LOAD_ATTEMPTS;
    }
    let g = |f: fn(&BpfProgLoadOpts) -> u32| o.map_or(0, f);
    let mut attr = sys::ProgLoadAttr {
        prog_type,
        expected_attach_type: g(|o| o.expected_attach_type),
        prog_btf_fd: g(|o| o.prog_btf_fd),
        prog_flags: g(|o| o.prog_flags),
        prog_ifindex: g(|o| o.prog_ifindex),
        kern_version: g(|o| o.kern_version),
        prog_token_fd: g(|o| o.token_fd) as i32,
        // SAFETY: caller contract.
        prog_name: unsafe { name16(name) },
        license: license as u64,
        ..Default::default()
    };
    if insn_cnt > u32::MAX as usize {
        return err(libc::E2BIG);
    }
    attr.insns = insns as u64;
    attr.insn_cnt = insn_cnt as u32;
    let attach_prog_fd = g(|o| o.attach_prog_fd);
    let attach_btf_obj_fd = g(|o| o.attach_btf_obj_fd);
    if attach_prog_fd != 0 && attach_btf_obj_fd != 0 {
        return err(libc::EINVAL);
    }
    attr.attach_btf_id = g(|o| o.attach_btf_id);
    attr.attach_prog_fd = if attach_prog_fd != 0 {
        attach_prog_fd
    } else {
        attach_btf_obj_fd
    };
    let log_buf = o.map_or(std::ptr::null_mut(), |o| o.log_buf);
    let log_size = g(|o| o.log_size);
    let log_level = g(|o| o.log_level);
    if log_buf.is_null() != (log_size == 0) {
        return err(libc::EINVAL);
    }
    let func_info_rec_size = g(|o| o.func_info_rec_size);
    let func_info = o.map_or(std::ptr::null(), |o| o.func_info);
    attr.func_info_rec_size = func_info_rec_size;
    attr.func_info = func_info as u64;
    attr.func_info_cnt = g(|o| o.func_info_cnt);
    let line_info_rec_size = g(|o| o.line_info_rec_size);
    let line_info = o.map_or(std::ptr::null(), |o| o.line_info);
    attr.line_info_rec_size = line_info_rec_size;
    attr.line_info = line_info as u64;
    attr.line_info_cnt = g(|o| o.line_info_cnt);
    attr.fd_array = o.map_or(0, |o| o.fd_array as u64);
    attr.fd_array_cnt = g(|o| o.fd_array_cnt);
    if log_level != 0 {
        attr.log_buf = log_buf as u64;
        attr.log_size = log_size;
        attr.log_level = log_level;
    }
    let set_true_size = |attr: &sys::ProgLoadAttr| {
        // SAFETY: OPTS_SET within the caller's sz.
        unsafe {
            opts_set_u32(
                opts.cast(),
                offset_of!(BpfProgLoadOpts, log_true_size),
                attr.log_true_size,
            )
        }
    };
    let mut r = load_with_attempts(&mut attr, attempts);
    set_true_size(&attr);
    if let Ok(fd) = r {
        return into_good_fd(fd);
    }
    // The kernel tells through the attributes how to fix some failures.
    let mut finfo: Option<Vec<u8>> = None;
    let mut linfo: Option<Vec<u8>> = None;
    while matches!(r, Err(libc::E2BIG)) && (finfo.is_none() || linfo.is_none()) {
        if finfo.is_none()
            && attr.func_info_cnt != 0
            && attr.func_info_rec_size < func_info_rec_size
        {
            // SAFETY: the caller's func_info array (contract).
            let v = unsafe {
                zero_tailing(
                    func_info.cast(),
                    attr.func_info_cnt,
                    func_info_rec_size,
                    attr.func_info_rec_size,
                )
            };
            attr.func_info = v.as_ptr() as u64;
            attr.func_info_rec_size = func_info_rec_size;
            finfo = Some(v);
        } else if linfo.is_none()
            && attr.line_info_cnt != 0
            && attr.line_info_rec_size < line_info_rec_size
        {
            // SAFETY: the caller's line_info array (contract).
            let v = unsafe {
                zero_tailing(
                    line_info.cast(),
                    attr.line_info_cnt,
                    line_info_rec_size,
                    attr.line_info_rec_size,
                )
            };
            attr.line_info = v.as_ptr() as u64;
            attr.line_info_rec_size = line_info_rec_size;
            linfo = Some(v);
        } else {
            break;
        }
        r = load_with_attempts(&mut attr, attempts);
        set_true_size(&attr);
        if let Ok(fd) = r {
            return into_good_fd(fd);
        }
    }
    if log_level == 0 && !log_buf.is_null() {
        attr.log_buf = log_buf as u64;
        attr.log_size = log_size;
        attr.log_level = 1;
        r = load_with_attempts(&mut attr, attempts);
        set_true_size(&attr);
    }
    drop((finfo, linfo));
    good_fd(r)
}

// ---------------------------------------------------------------------------
// Feature probes (libbpf_probes.c)
// ---------------------------------------------------------------------------

mod pt {
    pub const UNSPEC: u32 = 0;
    pub const KPROBE: u32 = 2;
    pub const CGROUP_SOCK_ADDR: u32 = 18;
    pub const LIRC_MODE2: u32 = 20;
    pub const CGROUP_SOCKOPT: u32 = 25;
    pub const TRACING: u32 = 26;
    pub const STRUCT_OPS: u32 = 27;
    pub const EXT: u32 = 28;
    pub const LSM: u32 = 29;
    pub const SK_LOOKUP: u32 = 30;
    pub const SYSCALL: u32 = 31;
    pub const NETFILTER: u32 = 32;
}

/// `enum bpf_attach_type` values the probes use.
mod at {
    pub const CGROUP_INET4_CONNECT: u32 = 10;
    pub const LIRC_MODE2: u32 = 16;
    pub const CGROUP_GETSOCKOPT: u32 = 21;
    pub const TRACE_FENTRY: u32 = 24;
    pub const MODIFY_RETURN: u32 = 26;
    pub const SK_LOOKUP: u32 = 36;
    pub const NETFILTER: u32 = 45;
}

/// `probe_prog_load`: 1 if the kernel loads `insns` as `prog_type` (or
/// fails the expected way), 0 if not, `-EOPNOTSUPP` for unknown types.
/// With `log`, the verifier log lands there.
fn probe_prog_load(prog_type: u32, insns: &[u64], log: Option<&mut [u8]>) -> c_int {
    let mut buf = [0u8; 4096];
    let mut attr = sys::ProgLoadAttr {
        prog_type,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: c"GPL".as_ptr() as u64,
        ..Default::default()
    };
    let (mut log_ptr, mut log_len) = match log {
        Some(l) => (l.as_mut_ptr(), l.len()),
        None => (std::ptr::null_mut(), 0),
    };
    let mut exp: Option<(i32, Option<&str>)> = None;
    match prog_type {
        pt::CGROUP_SOCK_ADDR => attr.expected_attach_type = at::CGROUP_INET4_CONNECT,
        pt::CGROUP_SOCKOPT => attr.expected_attach_type = at::CGROUP_GETSOCKOPT,
        pt::SK_LOOKUP => attr.expected_attach_type = at::SK_LOOKUP,
        pt::KPROBE => {
            attr.kern_version = userbpf_libbpf_compat::object::KernelEnv::host().kernel_version
        }
        pt::LIRC_MODE2 => attr.expected_attach_type = at::LIRC_MODE2,
        pt::TRACING | pt::LSM => {
            log_ptr = buf.as_mut_ptr();
            log_len = buf.len();
            attr.expected_attach_type = if prog_type == pt::TRACING {
                at::TRACE_FENTRY
            } else {
                at::MODIFY_RETURN
            };
            attr.attach_btf_id = 1;
            exp = Some((libc::EINVAL, Some("attach_btf_id 1 is not a function")));
        }
        pt::EXT => {
            log_ptr = buf.as_mut_ptr();
            log_len = buf.len();
            attr.attach_btf_id = 1;
            exp = Some((libc::EINVAL, Some("Cannot replace kernel functions")));
        }
        pt::SYSCALL => attr.prog_flags = userbpf_libbpf_compat::backend::kernel::BPF_F_SLEEPABLE,
        pt::STRUCT_OPS => exp = Some((super::ENOTSUPP, None)),
        // UNSPEC up to RAW_TRACEPOINT_WRITABLE (24): no setup.
        pt::UNSPEC..=24 => {}
        pt::NETFILTER => attr.expected_attach_type = at::NETFILTER,
        _ => return -libc::EOPNOTSUPP,
    }
    if !log_ptr.is_null() {
        attr.log_buf = log_ptr as u64;
        attr.log_size = log_len as u32;
        attr.log_level = 1;
    }
    let r = load_with_attempts(&mut attr, PROG_LOAD_ATTEMPTS);
    let loaded = r.is_ok();
    let errno = r.err().unwrap_or(0);
    match exp {
        Some((e, msg)) => {
            if loaded || errno != e {
                return 0;
            }
            if let Some(msg) = msg {
                let n = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
                if !String::from_utf8_lossy(&buf[..n]).contains(msg) {
                    return 0;
                }
            }
            1
        }
        None => c_int::from(loaded),
    }
}

/// `libbpf_probe_bpf_prog_type` on the kernel.
pub(super) fn probe_prog_type(prog_type: u32) -> c_int {
    // r0 = 0; exit
    probe_prog_load(prog_type, &[0xb7, 0x95], None)
}

/// `load_local_storage_btf`: `int`, `struct bpf_spin_lock { int val; }`,
/// `struct val { int cnt; struct bpf_spin_lock l; }`.
fn local_storage_btf() -> Result<OwnedFd, i32> {
    let strs = b"\0bpf_spin_lock\0val\0cnt\0l\0";
    let info = |kind: u32, vlen: u32| (kind << 24) | vlen;
    let types: [u32; 16] = [
        // [1] int: name 0, INT, size 4, encoding SIGNED, bits 32
        0,
        info(1, 0),
        4,
        (1 << 24) | 32,
        // [2] struct bpf_spin_lock, 1 member, size 4
        1,
        info(4, 1),
        4,
        15,
        1,
        0,
        // [3] struct val, 2 members, size 8
        15,
        info(4, 2),
        8,
        19,
        1,
        0,
    ];
    let tail: [u32; 3] = [23, 2, 32];
    let mut type_bytes: Vec<u8> = types.iter().flat_map(|w| w.to_ne_bytes()).collect();
    type_bytes.extend(tail.iter().flat_map(|w| w.to_ne_bytes()));
    let mut raw = Vec::new();
    raw.extend_from_slice(&0xeb9fu16.to_ne_bytes());
    raw.push(1); // version
    raw.push(0); // flags
    raw.extend_from_slice(&24u32.to_ne_bytes()); // hdr_len
    raw.extend_from_slice(&0u32.to_ne_bytes()); // type_off
    raw.extend_from_slice(&(type_bytes.len() as u32).to_ne_bytes());
    raw.extend_from_slice(&(type_bytes.len() as u32).to_ne_bytes()); // str_off
    raw.extend_from_slice(&(strs.len() as u32).to_ne_bytes());
    raw.extend_from_slice(&type_bytes);
    raw.extend_from_slice(strs);
    sys::btf_load(&raw, None, 0)
}

/// `probe_map_create` on the kernel.
pub(super) fn probe_map_type(map_type: u32) -> c_int {
    use userbpf_runtime::maps::map_type as mt;
    const CGROUP_STORAGE: u32 = 19;
    const PERCPU_CGROUP_STORAGE: u32 = 21;
    const SK_STORAGE: u32 = 24;
    const STRUCT_OPS: u32 = 26;
    const INODE_STORAGE: u32 = 28;
    const TASK_STORAGE: u32 = 29;
    const CGRP_STORAGE: u32 = 32;
    const ARENA: u32 = 33;
    const INSN_ARRAY: u32 = 34;
    const BPF_F_NO_PREALLOC: u32 = 1;
    let mut attr = sys::MapCreateAttr {
        map_type,
        key_size: 4,
        value_size: 4,
        max_entries: 1,
        ..Default::default()
    };
    let mut btf: Option<OwnedFd> = None;
    let mut exp_err = 0;
    match map_type {
        mt::STACK_TRACE => attr.value_size = 8,
        mt::LPM_TRIE => {
            attr.key_size = 8;
            attr.value_size = 8;
            attr.map_flags = BPF_F_NO_PREALLOC;
        }
        CGROUP_STORAGE | PERCPU_CGROUP_STORAGE => {
            // struct bpf_cgroup_storage_key: u64 cgroup_inode_id, u32 attach_type
            attr.key_size = 16;
            attr.value_size = 8;
            attr.max_entries = 0;
        }
        mt::QUEUE | mt::STACK => attr.key_size = 0,
        SK_STORAGE | INODE_STORAGE | TASK_STORAGE | CGRP_STORAGE => {
            attr.btf_key_type_id = 1;
            attr.btf_value_type_id = 3;
            attr.value_size = 8;
            attr.max_entries = 0;
            attr.map_flags = BPF_F_NO_PREALLOC;
            match local_storage_btf() {
                Ok(fd) => btf = Some(fd),
                Err(e) => return -e,
            }
        }
        mt::RINGBUF | mt::USER_RINGBUF => {
            attr.key_size = 0;
            attr.value_size = 0;
            attr.max_entries = userbpf_runtime::shm::PAGE_SIZE as u32;
        }
        STRUCT_OPS => {
            attr.btf_vmlinux_value_type_id = 1;
            attr.value_type_btf_obj_fd = -1;
            exp_err = super::ENOTSUPP;
        }
        mt::BLOOM_FILTER => attr.key_size = 0,
        ARENA => {
            attr.key_size = 0;
            attr.value_size = 0;
            attr.map_flags = userbpf_libbpf_compat::backend::kernel::BPF_F_MMAPABLE;
        }
        INSN_ARRAY => attr.value_size = 16,
        1..=33 => {}
        _ => return -libc::EOPNOTSUPP,
    }
    let mut inner: Option<OwnedFd> = None;
    if matches!(map_type, mt::ARRAY_OF_MAPS | mt::HASH_OF_MAPS) {
        let mut i = sys::MapCreateAttr {
            map_type: mt::HASH,
            key_size: 4,
            value_size: 4,
            max_entries: 1,
            ..Default::default()
        };
        match sys::map_create(&mut i) {
            Ok(fd) => {
                attr.inner_map_fd = std::os::fd::AsRawFd::as_raw_fd(&fd) as u32;
                inner = Some(fd);
            }
            Err(_) => return 0,
        }
    }
    if let Some(b) = &btf {
        attr.btf_fd = std::os::fd::AsRawFd::as_raw_fd(b) as u32;
    }
    let r = sys::map_create(&mut attr);
    drop((inner, btf));
    match (r, exp_err) {
        (Ok(_), 0) => 1,
        (Err(_), 0) => 0,
        (Err(e), x) => c_int::from(e == x),
        (Ok(_), _) => 0,
    }
}

/// `libbpf_probe_bpf_helper` on the kernel (the types it cannot probe were
/// refused by the caller).
pub(super) fn probe_helper(prog_type: u32, helper_id: u32) -> c_int {
    // call helper_id; exit
    let call = 0x85u64 | (u64::from(helper_id) << 32);
    let mut buf = vec![0u8; 4096];
    let r = probe_prog_load(prog_type, &[call, 0x95], Some(&mut buf));
    if r < 0 {
        return r;
    }
    let n = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let log = String::from_utf8_lossy(&buf[..n]);
    if r == 0
        && (log.contains("invalid func ")
            || log.contains("unknown func ")
            || log.contains("program of this type cannot use helper "))
    {
        return 0;
    }
    1
}

// ---------------------------------------------------------------------------
// Helpers for the parent module
// ---------------------------------------------------------------------------

/// Whether `fd` names a kernel map (the exact test, for the rare paths:
/// reads `/proc/self/fd`).
pub(super) fn is_kernel_map(fd: RawFd) -> bool {
    sys::kernel_fd_kind(fd) == Some(sys::KernelFdKind::Map)
}
