//! Attaching uprobes: `bpf_program__attach_uprobe[_opts]` and
//! `bpf_program__attach_uprobe_multi`.
//!
//! libbpf resolves the binary and the function and asks the kernel for a
//! perf event (or a uprobe_multi link); here the same resolution ends in
//! link records in the registry (`userbpf_libbpf_compat::attach::link`),
//! which agents in target processes turn into hooks. What the kernel
//! would check (the pid exists, the file is a regular file and the offset
//! lies inside it, the program type) is checked here with the kernel's
//! errno, and libbpf's messages are printed where libbpf prints them.
//!
//! pid: -1 is every process (record pid 0), 0 the calling process, > 0
//! that process.

#![allow(non_snake_case)]

use std::ffi::{c_char, c_int, c_ulong, CStr};
use std::os::fd::{AsRawFd, BorrowedFd, IntoRawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use userbpf_libbpf_compat::attach::binary::{self, BinaryError, BinaryId};
use userbpf_libbpf_compat::attach::errstr;
use userbpf_libbpf_compat::attach::link::{record_pid, UprobeLink, UprobeLinkSpec, UprobeTarget};
use userbpf_libbpf_compat::attach::sec::{
    parse_uprobe_multi_sec, parse_uprobe_sec, UprobeMultiSec, UprobeSec,
};
use userbpf_libbpf_compat::backend::kernel::attach as kattach;
use userbpf_libbpf_compat::backend::kernel::sys::{self as kernel_sys, KernelFdKind};
use userbpf_libbpf_compat::backend::userspace::program_by_fd;
use userbpf_runtime::registry::AttachKind;

use crate::cabi;
use crate::error::AbiError;
use crate::ffi_fn;
use crate::link_api::LinkHandle;
use crate::object_api::{errno_err, handle, opt_str, ret, ProgramHandle};
use crate::opts::{read_opts, OptsStruct};
use crate::print;

/// `BPF_PROG_TYPE_KPROBE`: the only program type a uprobe runs.
const BPF_PROG_TYPE_KPROBE: u32 = 2;
/// `enum bpf_attach_type` values the kernel checks uprobe links against.
const BPF_TRACE_KPROBE_MULTI: u32 = 42;
const BPF_TRACE_UPROBE_MULTI: u32 = 48;
const BPF_TRACE_KPROBE_SESSION: u32 = 56;
const BPF_TRACE_UPROBE_SESSION: u32 = 57;
/// The kernel's `MAX_UPROBE_MULTI_CNT`.
const MAX_UPROBE_MULTI_CNT: usize = 1 << 20;

/// `struct bpf_uprobe_opts` (C `bool` as a byte).
#[repr(C)]
#[derive(Clone, Copy)]
struct UprobeOpts {
    sz: usize,
    ref_ctr_offset: usize,
    bpf_cookie: u64,
    retprobe: u8,
    func_name: *const c_char,
    attach_mode: u32,
}

// SAFETY: repr(C), starts with `size_t sz`, integers and a raw pointer.
unsafe impl OptsStruct for UprobeOpts {
    const NAME: &'static str = "bpf_uprobe_opts";
}

/// `struct bpf_uprobe_multi_opts` (C `bool`s as bytes).
#[repr(C)]
#[derive(Clone, Copy)]
struct UprobeMultiOpts {
    sz: usize,
    syms: *const *const c_char,
    /// `unsigned long` arrays (64-bit on the LP64 targets we build for).
    offsets: *const u64,
    ref_ctr_offsets: *const u64,
    cookies: *const u64,
    cnt: usize,
    retprobe: u8,
    session: u8,
}

// SAFETY: as for UprobeOpts.
unsafe impl OptsStruct for UprobeMultiOpts {
    const NAME: &'static str = "bpf_uprobe_multi_opts";
}

// The mirrors have the headers' layout (bindgen's cabi.rs).
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<c_ulong>() == size_of::<u64>());
    assert!(size_of::<UprobeOpts>() == size_of::<cabi::bpf_uprobe_opts>());
    assert!(offset_of!(UprobeOpts, retprobe) == offset_of!(cabi::bpf_uprobe_opts, retprobe));
    assert!(offset_of!(UprobeOpts, func_name) == offset_of!(cabi::bpf_uprobe_opts, func_name));
    assert!(offset_of!(UprobeOpts, attach_mode) == offset_of!(cabi::bpf_uprobe_opts, attach_mode));
    assert!(size_of::<UprobeMultiOpts>() == size_of::<cabi::bpf_uprobe_multi_opts>());
    assert!(offset_of!(UprobeMultiOpts, cnt) == offset_of!(cabi::bpf_uprobe_multi_opts, cnt));
    assert!(
        offset_of!(UprobeMultiOpts, retprobe) == offset_of!(cabi::bpf_uprobe_multi_opts, retprobe)
    );
    assert!(
        offset_of!(UprobeMultiOpts, session) == offset_of!(cabi::bpf_uprobe_multi_opts, session)
    );
};

/// `enum probe_attach_mode`.
const PROBE_ATTACH_MODE_DEFAULT: u32 = 0;
const PROBE_ATTACH_MODE_LEGACY: u32 = 1;
const PROBE_ATTACH_MODE_PERF: u32 = 2;
const PROBE_ATTACH_MODE_LINK: u32 = 3;

/// The decoded options of a single uprobe.
#[derive(Clone, Debug, Default)]
pub(crate) struct UprobeRequest {
    pub retprobe: bool,
    pub ref_ctr_offset: u64,
    pub cookie: u64,
    pub func_name: Option<String>,
    pub attach_mode: u32,
}

fn prog_name(p: &ProgramHandle) -> String {
    p.name.to_string_lossy().into_owned()
}

fn warn_binary(e: &BinaryError) {
    if e.warns() {
        print::warn(&format!("{e}\n"));
    }
}

/// libbpf's "resolve the path of a name without '/'" step.
fn resolve_path(p: &ProgramHandle, path: &str) -> Result<PathBuf, AbiError> {
    binary::resolve_binary_path(path).map_err(|e| {
        print::warn(&format!(
            "prog '{}': failed to resolve full path for '{path}': {}\n",
            prog_name(p),
            errstr(-e.errno())
        ));
        errno_err(e.errno())
    })
}

/// What `perf_event_open`/`uprobe_register` refuse: a pid that does not
/// exist, a missing or non-regular file, offsets past its end. Returns
/// the binary's identity.
fn kernel_checks(pid: i32, path: &Path, offsets: &[(u64, u64)]) -> Result<BinaryId, i32> {
    if pid > 0 {
        // SAFETY: signal 0 only checks that the process exists.
        if unsafe { libc::kill(pid, 0) } != 0 && crate::abi::errno() == libc::ESRCH {
            return Err(libc::ESRCH);
        }
    }
    let id = BinaryId::from_path(path).map_err(|e| e.errno())?;
    let meta = std::fs::metadata(&id.path).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    if !meta.is_file() {
        return Err(libc::EINVAL);
    }
    if offsets
        .iter()
        .any(|&(off, ref_ctr)| off > meta.size() || ref_ctr > meta.size())
    {
        return Err(libc::EINVAL);
    }
    Ok(id)
}

/// The loaded program behind a handle: its namespace id, type and
/// expected attach type. Err(EINVAL) after libbpf's warning when it was
/// not loaded.
fn loaded_program(p: &ProgramHandle) -> Result<(u32, u32, u32), AbiError> {
    let unloaded = || {
        print::warn(&format!(
            "prog '{}': can't attach BPF program without FD (was it loaded?)\n",
            prog_name(p)
        ));
        errno_err(libc::EINVAL)
    };
    if p.fd < 0 {
        return Err(unloaded());
    }
    // SAFETY: p.fd is the program's fd, open while the handle is loaded.
    let fd = unsafe { BorrowedFd::borrow_raw(p.fd) };
    let prog = program_by_fd(fd).ok_or_else(unloaded)?;
    Ok((
        prog.id,
        prog.image.prog_type,
        prog.image.expected_attach_type,
    ))
}

fn target(id: &BinaryId, offset: u64, ref_ctr_offset: u64, cookie: u64) -> UprobeTarget {
    let (func_offset, func_size) =
        binary::function_containing(&id.path, offset).unwrap_or((offset, 0));
    UprobeTarget {
        path: id.path.to_string_lossy().into_owned(),
        dev: id.dev,
        ino: id.ino,
        offset,
        func_offset,
        func_size,
        ref_ctr_offset,
        cookie,
    }
}

/// Publishes `spec` and wraps it in a `struct bpf_link`.
fn publish(spec: &UprobeLinkSpec) -> Result<*mut LinkHandle, i32> {
    let link = UprobeLink::publish(spec).map_err(|e| e.errno())?;
    let (id, fd, records) = link.into_parts();
    let pid = spec.pid;
    let mut files: Vec<(u64, u64)> = spec.targets.iter().map(|t| (t.dev, t.ino)).collect();
    files.dedup();
    crate::local_agent::settle(id, pid, &files, true);
    Ok(LinkHandle::into_raw(
        fd,
        Box::new(move || {
            records.detach();
            crate::local_agent::settle(id, pid, &files, false);
            Ok(())
        }),
    ))
}

/// `bpf_program__attach_uprobe_opts` after the opts are read.
pub(crate) fn attach_uprobe(
    p: &ProgramHandle,
    pid: i32,
    binary_path: Option<&str>,
    func_offset: u64,
    req: &UprobeRequest,
) -> Result<*mut LinkHandle, AbiError> {
    let name = prog_name(p);
    let Some(binary_path) = binary_path else {
        return Err(errno_err(libc::EINVAL));
    };
    if binary_path.contains("!/") {
        print::warn(&format!(
            "prog '{name}': uprobes in archive members ('{binary_path}') are not supported by userbpf yet\n"
        ));
        return Err(errno_err(libc::EOPNOTSUPP));
    }
    let path = if binary_path.contains('/') {
        PathBuf::from(binary_path)
    } else {
        resolve_path(p, binary_path)?
    };
    let mut func_offset = func_offset;
    if let Some(func) = &req.func_name {
        let off = binary::find_func_offset(&path, func).map_err(|e| {
            warn_binary(&e);
            errno_err(e.errno())
        })?;
        func_offset = func_offset.wrapping_add(off);
    }
    // Legacy and perf modes attach with an ioctl, which has no cookie.
    let ioctl_attach = match req.attach_mode {
        PROBE_ATTACH_MODE_DEFAULT | PROBE_ATTACH_MODE_LINK => false,
        PROBE_ATTACH_MODE_PERF => true,
        PROBE_ATTACH_MODE_LEGACY => {
            if req.ref_ctr_offset != 0 {
                return Err(errno_err(libc::EINVAL));
            }
            true
        }
        _ => return Err(errno_err(libc::EINVAL)),
    };
    let what = if req.retprobe { "uretprobe" } else { "uprobe" };
    let shown = path.display().to_string();
    let id = if pid < -1 {
        Err(libc::EINVAL)
    } else {
        kernel_checks(pid, &path, &[(func_offset, req.ref_ctr_offset)])
    }
    .map_err(|e| {
        print::warn(&format!(
            "prog '{name}': failed to create {what} '{shown}:0x{func_offset:x}' perf event: {}\n",
            errstr(-e)
        ));
        errno_err(e)
    })?;
    let attach_failed = |e: i32| {
        print::warn(&format!(
            "prog '{name}': failed to attach to {what} '{shown}:0x{func_offset:x}': {}\n",
            errstr(-e)
        ));
        errno_err(e)
    };
    if kernel_sys::kernel_fd_kind(p.fd) == Some(KernelFdKind::Prog) {
        // A kernel program (kernel mode): a kernel uprobe, as libbpf.
        let pfd = kattach::open_uprobe(req.retprobe, &path, func_offset, pid, req.ref_ctr_offset)
            .map_err(|e| {
                print::warn(&format!(
                    "prog '{name}': failed to create {what} '{shown}:0x{func_offset:x}' perf event: {}\n",
                    errstr(-e)
                ));
                errno_err(e)
            })?;
        // SAFETY: all-zero is a valid bpf_perf_event_opts.
        let mut opts: cabi::bpf_perf_event_opts = unsafe { std::mem::zeroed() };
        opts.sz = std::mem::size_of::<cabi::bpf_perf_event_opts>();
        opts.bpf_cookie = req.cookie;
        opts.force_ioctl_attach = ioctl_attach;
        // SAFETY: a live program handle and valid opts.
        let link = unsafe {
            crate::kernel_attach_api::bpf_program__attach_perf_event_opts(p, pfd.as_raw_fd(), &opts)
        };
        if link.is_null() {
            let e = crate::abi::errno();
            drop(pfd);
            return Err(attach_failed(e));
        }
        // The link owns the perf event now.
        let _ = pfd.into_raw_fd();
        return Ok(link);
    }
    let (prog_id, prog_type, expected) = loaded_program(p).map_err(|e| attach_failed(e.errno()))?;
    if ioctl_attach && req.cookie != 0 {
        print::warn(&format!(
            "prog '{name}': user context value is not supported\n"
        ));
        return Err(attach_failed(libc::EOPNOTSUPP));
    }
    let multi = [
        BPF_TRACE_KPROBE_MULTI,
        BPF_TRACE_UPROBE_MULTI,
        BPF_TRACE_KPROBE_SESSION,
        BPF_TRACE_UPROBE_SESSION,
    ];
    if prog_type != BPF_PROG_TYPE_KPROBE || multi.contains(&expected) {
        // The kernel refuses the program for a uprobe perf event.
        print::warn(&format!(
            "prog '{name}': failed to create BPF link for perf_event FD {}: {}\n",
            p.fd,
            errstr(-libc::EINVAL)
        ));
        return Err(attach_failed(libc::EINVAL));
    }
    let spec = UprobeLinkSpec {
        prog_id,
        prog_name: name.clone(),
        kind: if req.retprobe {
            AttachKind::Uretprobe
        } else {
            AttachKind::Uprobe
        },
        pid: record_pid(pid),
        targets: vec![target(&id, func_offset, req.ref_ctr_offset, req.cookie)],
    };
    publish(&spec).map_err(attach_failed)
}

/// The decoded arguments of `bpf_program__attach_uprobe_multi`.
#[derive(Clone, Debug, Default)]
pub(crate) struct UprobeMultiRequest {
    pub syms: Option<Vec<String>>,
    pub offsets: Option<Vec<u64>>,
    pub ref_ctr_offsets: Option<Vec<u64>>,
    pub cookies: Option<Vec<u64>>,
    pub cnt: usize,
    pub retprobe: bool,
    pub session: bool,
}

/// `bpf_program__attach_uprobe_multi` after the opts are read.
pub(crate) fn attach_uprobe_multi(
    p: &ProgramHandle,
    pid: i32,
    path: Option<&str>,
    pattern: Option<&str>,
    req: &UprobeMultiRequest,
) -> Result<*mut LinkHandle, AbiError> {
    let name = prog_name(p);
    let (prog_id, prog_type, expected) = loaded_program(p)?;
    let einval = || Err(errno_err(libc::EINVAL));
    // libbpf: path/pattern alone, or path with syms xor offsets.
    let Some(path) = path else {
        return einval();
    };
    if pattern.is_none() && req.cnt == 0 {
        return einval();
    }
    if pattern.is_some() {
        if req.syms.is_some()
            || req.offsets.is_some()
            || req.ref_ctr_offsets.is_some()
            || req.cookies.is_some()
            || req.cnt != 0
        {
            return einval();
        }
    } else if req.syms.is_some() == req.offsets.is_some() {
        return einval();
    }
    if req.retprobe && req.session {
        return einval();
    }
    let mut path = PathBuf::from(path);
    let offsets: Vec<u64> = if let Some(pattern) = pattern {
        if !path.to_string_lossy().contains('/') {
            path = resolve_path(p, &path.to_string_lossy())?;
        }
        binary::resolve_pattern_offsets(&path, pattern).map_err(|e| {
            warn_binary(&e);
            errno_err(e.errno())
        })?
    } else if let Some(syms) = &req.syms {
        let names: Vec<&str> = syms.iter().map(String::as_str).collect();
        binary::resolve_syms_offsets(&path, &names).map_err(|e| {
            warn_binary(&e);
            errno_err(e.errno())
        })?
    } else {
        req.offsets.clone().unwrap_or_default()
    };
    let cnt = offsets.len();
    let failed = |e: i32| {
        print::warn(&format!(
            "prog '{name}': failed to attach multi-uprobe: {}\n",
            errstr(-e)
        ));
        errno_err(e)
    };
    // The kernel's link_create checks for BPF_TRACE_UPROBE_{MULTI,SESSION}.
    let attach_type = if req.session {
        BPF_TRACE_UPROBE_SESSION
    } else {
        BPF_TRACE_UPROBE_MULTI
    };
    if prog_type != BPF_PROG_TYPE_KPROBE || expected != attach_type {
        return Err(failed(libc::EINVAL));
    }
    if cnt > MAX_UPROBE_MULTI_CNT {
        return Err(failed(libc::E2BIG));
    }
    if req.session {
        // Agents have no session (entry + conditional return) hooks.
        return Err(failed(libc::EOPNOTSUPP));
    }
    let refs = req.ref_ctr_offsets.as_deref();
    let cookies = req.cookies.as_deref();
    let pairs: Vec<(u64, u64)> = (0..cnt)
        .map(|i| (offsets[i], refs.map_or(0, |r| r[i])))
        .collect();
    let id = kernel_checks(pid.max(-1), &path, &pairs).map_err(|e| {
        // The kernel says EBADF for a path that is not a regular file.
        let e = if e == libc::EINVAL && !Path::new(&path).is_file() {
            libc::EBADF
        } else {
            e
        };
        failed(e)
    })?;
    let targets = pairs
        .iter()
        .enumerate()
        .map(|(i, &(off, ref_ctr))| target(&id, off, ref_ctr, cookies.map_or(0, |c| c[i])))
        .collect();
    let spec = UprobeLinkSpec {
        prog_id,
        prog_name: name.clone(),
        kind: if req.retprobe {
            AttachKind::Uretprobe
        } else {
            AttachKind::Uprobe
        },
        pid: record_pid(pid),
        targets,
    };
    publish(&spec).map_err(failed)
}

/// Auto-attach of `SEC("uprobe/PATH:FUNC[+OFF]")` and friends (libbpf's
/// `attach_uprobe`): `Ok(None)` when the section names no target.
pub(crate) fn auto_attach_uprobe(p: &ProgramHandle) -> Result<Option<*mut LinkHandle>, i32> {
    let sec = p.sec_name.to_string_lossy().into_owned();
    let name = prog_name(p);
    match parse_uprobe_sec(&sec) {
        UprobeSec::NoTarget => Ok(None),
        UprobeSec::MissingFunction => {
            print::warn(&format!(
                "prog '{name}': section '{sec}' missing ':function[+offset]' specification\n"
            ));
            Err(libc::EINVAL)
        }
        UprobeSec::RetprobeOffset => {
            print::warn(&format!(
                "prog '{name}': uretprobes do not support offset specification\n"
            ));
            Err(libc::EINVAL)
        }
        UprobeSec::Invalid => {
            print::warn(&format!(
                "prog '{name}': invalid format of section definition '{sec}'\n"
            ));
            Err(libc::EINVAL)
        }
        UprobeSec::Target(t) => {
            let req = UprobeRequest {
                retprobe: t.retprobe,
                func_name: Some(t.func),
                ..Default::default()
            };
            attach_uprobe(p, -1, Some(&t.binary), t.offset as u64, &req)
                .map(Some)
                .map_err(|e| e.errno())
        }
    }
}

/// Auto-attach of `SEC("uprobe.multi/PATH:PATTERN")` and friends (libbpf's
/// `attach_uprobe_multi`).
pub(crate) fn auto_attach_uprobe_multi(p: &ProgramHandle) -> Result<Option<*mut LinkHandle>, i32> {
    let sec = p.sec_name.to_string_lossy().into_owned();
    match parse_uprobe_multi_sec(&sec) {
        UprobeMultiSec::NoTarget => Ok(None),
        UprobeMultiSec::Invalid => {
            print::warn(&format!(
                "prog '{}': invalid format of section definition '{sec}'\n",
                prog_name(p)
            ));
            Err(libc::EINVAL)
        }
        UprobeMultiSec::Target(t) => {
            let req = UprobeMultiRequest {
                retprobe: t.retprobe,
                session: t.session,
                ..Default::default()
            };
            attach_uprobe_multi(p, -1, Some(&t.binary), Some(&t.pattern), &req)
                .map(Some)
                .map_err(|e| e.errno())
        }
    }
}

/// `cnt` elements at `p`, or `None` for NULL.
///
/// # Safety
/// `p` NULL or pointing at `cnt` readable elements.
pub(crate) unsafe fn array<T: Copy, U>(
    p: *const T,
    cnt: usize,
    f: impl Fn(T) -> U,
) -> Option<Vec<U>> {
    if p.is_null() {
        return None;
    }
    // SAFETY: caller contract.
    Some(
        unsafe { std::slice::from_raw_parts(p, cnt) }
            .iter()
            .map(|&v| f(v))
            .collect(),
    )
}

ffi_fn! {
    /// `struct bpf_link *bpf_program__attach_uprobe_opts(const struct bpf_program *prog, pid_t pid, const char *binary_path, size_t func_offset, const struct bpf_uprobe_opts *opts)`
    ///
    /// # Safety
    /// `prog` NULL or live; `binary_path` NULL or a C string; `opts` NULL
    /// or a valid opts struct whose `func_name` is NULL or a C string.
    pub unsafe fn bpf_program__attach_uprobe_opts(
        prog: *const ProgramHandle,
        pid: c_int,
        binary_path: *const c_char,
        func_offset: usize,
        opts: *const cabi::bpf_uprobe_opts,
    ) -> *mut LinkHandle {
        // SAFETY: caller contract.
        let result = unsafe { read_opts(opts.cast::<UprobeOpts>()) }.and_then(|o| {
            // SAFETY: caller contract.
            let p = unsafe { handle(prog) }?;
            let o = o.unwrap_or(UprobeOpts {
                sz: 0,
                ref_ctr_offset: 0,
                bpf_cookie: 0,
                retprobe: 0,
                func_name: std::ptr::null(),
                attach_mode: 0,
            });
            let req = UprobeRequest {
                retprobe: o.retprobe != 0,
                ref_ctr_offset: o.ref_ctr_offset as u64,
                cookie: o.bpf_cookie,
                // SAFETY: NULL or a C string (caller contract).
                func_name: unsafe { opt_str(o.func_name) },
                attach_mode: o.attach_mode,
            };
            // SAFETY: NULL or a C string (caller contract).
            let path = unsafe { opt_str(binary_path) };
            attach_uprobe(p, pid, path.as_deref(), func_offset as u64, &req)
        });
        ret(result)
    }
}

ffi_fn! {
    /// `struct bpf_link *bpf_program__attach_uprobe(const struct bpf_program *prog, bool retprobe, pid_t pid, const char *binary_path, size_t func_offset)`
    ///
    /// # Safety
    /// `prog` NULL or live; `binary_path` NULL or a C string.
    pub unsafe fn bpf_program__attach_uprobe(
        prog: *const ProgramHandle,
        retprobe: bool,
        pid: c_int,
        binary_path: *const c_char,
        func_offset: usize,
    ) -> *mut LinkHandle {
        // SAFETY: caller contract.
        let result = unsafe { handle(prog) }.and_then(|p| {
            let req = UprobeRequest {
                retprobe,
                ..Default::default()
            };
            // SAFETY: NULL or a C string (caller contract).
            let path = unsafe { opt_str(binary_path) };
            attach_uprobe(p, pid, path.as_deref(), func_offset as u64, &req)
        });
        ret(result)
    }
}

ffi_fn! {
    /// `struct bpf_link *bpf_program__attach_uprobe_multi(const struct bpf_program *prog, pid_t pid, const char *binary_path, const char *func_pattern, const struct bpf_uprobe_multi_opts *opts)`
    ///
    /// # Safety
    /// `prog` NULL or live; strings NULL or C strings; `opts` NULL or a
    /// valid opts struct whose arrays hold `cnt` elements.
    pub unsafe fn bpf_program__attach_uprobe_multi(
        prog: *const ProgramHandle,
        pid: c_int,
        binary_path: *const c_char,
        func_pattern: *const c_char,
        opts: *const cabi::bpf_uprobe_multi_opts,
    ) -> *mut LinkHandle {
        // SAFETY: caller contract.
        let result = unsafe { read_opts(opts.cast::<UprobeMultiOpts>()) }.and_then(|o| {
            // SAFETY: caller contract.
            let p = unsafe { handle(prog) }?;
            let mut req = UprobeMultiRequest::default();
            if let Some(o) = o {
                req.cnt = o.cnt;
                req.retprobe = o.retprobe != 0;
                req.session = o.session != 0;
                // SAFETY: arrays of `cnt` elements (caller contract); the
                // strings are C strings.
                unsafe {
                    req.syms = array(o.syms, o.cnt, |s: *const c_char| {
                        if s.is_null() {
                            String::new()
                        } else {
                            CStr::from_ptr(s).to_string_lossy().into_owned()
                        }
                    });
                    req.offsets = array(o.offsets, o.cnt, |v: u64| v);
                    req.ref_ctr_offsets = array(o.ref_ctr_offsets, o.cnt, |v: u64| v);
                    req.cookies = array(o.cookies, o.cnt, |v: u64| v);
                }
            }
            // SAFETY: NULL or C strings (caller contract).
            let (path, pattern) = unsafe { (opt_str(binary_path), opt_str(func_pattern)) };
            attach_uprobe_multi(p, pid, path.as_deref(), pattern.as_deref(), &req)
        });
        ret(result)
    }
}
