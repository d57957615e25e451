//! Attaching kernel programs, and the kernel-only attach APIs of `bpf.h`.
//!
//! The `bpf_program__attach_*` entry points for programs the kernel runs
//! (tracepoints, kprobes, raw tracepoints, tracing and LSM programs, perf
//! events, iterators, cgroup/netns/XDP/tcx/netkit/netfilter/sockmap links,
//! freplace) follow libbpf 1.7's libbpf.c step by step, with its messages
//! and errno, on the mechanisms of
//! `userbpf_libbpf_compat::backend::kernel::attach`; the links they make
//! are kernel links ([`LinkHandle::kernel_into_raw`]).
//!
//! A program handle whose fd is a userbpf (user-space) program cannot be
//! attached there: these entry points then fail with a message saying why
//! the program is not in the kernel (`USERBPF_BACKEND=user`: EOPNOTSUPP;
//! no permission in `auto` mode: EPERM).
//!
//! The `bpf.h` wrappers (`bpf_link_create`, `bpf_prog_attach`,
//! `bpf_prog_query`, `bpf_raw_tracepoint_open`, ...) are bpf.c's: the
//! attribute built from the opts, the syscall, `-errno` with errno set.
//! `bpf_xdp_*` and `bpf_tc_*` are netlink.c's (rtnetlink requests, the
//! kernel's extended-ack message printed as libbpf prints it).

#![allow(non_snake_case)]

use std::ffi::{c_char, c_int, c_uint, c_ulong, CStr, CString};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

use userbpf_libbpf_compat::backend::kernel::attach::{
    self as kattach, attach_type, netlink, KernelLink, LegacyProbe, ProbeError,
};
use userbpf_libbpf_compat::backend::kernel::probe;
use userbpf_libbpf_compat::backend::kernel::sys::{self as ksys, cmd, KernelFdKind};
use userbpf_libbpf_compat::backend::placement::BackendMode;
use userbpf_libbpf_compat::errstr::errstr;
use userbpf_libbpf_compat::object::{AttachHandler, ProgType};

use crate::abi::{set_errno, FfiReturn};
use crate::attach_api::array;
use crate::cabi;
use crate::error::AbiError;
use crate::ffi_fn;
use crate::link_api::LinkHandle;
use crate::object_api::{errno_err, handle, opt_str, program, ret, MapHandle, ProgramHandle};
use crate::opts::{read_opts, OptsStruct};
use crate::print;

// ---------------------------------------------------------------------------
// Opts mirrors (C `bool`s as bytes)
// ---------------------------------------------------------------------------

/// `struct bpf_perf_event_opts`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct PerfEventOpts {
    sz: usize,
    bpf_cookie: u64,
    force_ioctl_attach: u8,
    dont_enable: u8,
}

// SAFETY: repr(C), starts with `size_t sz`, integers only.
unsafe impl OptsStruct for PerfEventOpts {
    const NAME: &'static str = "bpf_perf_event_opts";
}

/// `struct bpf_kprobe_opts`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct KprobeOpts {
    sz: usize,
    bpf_cookie: u64,
    offset: usize,
    retprobe: u8,
    attach_mode: u32,
}

// SAFETY: as above.
unsafe impl OptsStruct for KprobeOpts {
    const NAME: &'static str = "bpf_kprobe_opts";
}

/// `struct bpf_ksyscall_opts`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct KsyscallOpts {
    sz: usize,
    bpf_cookie: u64,
    retprobe: u8,
}

// SAFETY: as above.
unsafe impl OptsStruct for KsyscallOpts {
    const NAME: &'static str = "bpf_ksyscall_opts";
}

/// `struct bpf_kprobe_multi_opts`.
#[repr(C)]
#[derive(Clone, Copy)]
struct KprobeMultiOpts {
    sz: usize,
    syms: *const *const c_char,
    addrs: *const c_ulong,
    cookies: *const u64,
    cnt: usize,
    retprobe: u8,
    session: u8,
    unique_match: u8,
}

// SAFETY: repr(C), starts with `size_t sz`, integers and raw pointers.
unsafe impl OptsStruct for KprobeMultiOpts {
    const NAME: &'static str = "bpf_kprobe_multi_opts";
}

// The bindgen mirrors without `bool` fields are valid for every bit
// pattern (integers, raw pointers, unions of those).
macro_rules! plain_opts {
    ($($t:ident),*) => {$(
        // SAFETY: repr(C) bindgen struct starting with `size_t sz`, only
        // integers, raw pointers and unions of those.
        unsafe impl OptsStruct for cabi::$t {
            const NAME: &'static str = stringify!($t);
        }
    )*};
}
plain_opts!(
    bpf_tracepoint_opts,
    bpf_raw_tracepoint_opts,
    bpf_trace_opts,
    bpf_netfilter_opts,
    bpf_tcx_opts,
    bpf_netkit_opts,
    bpf_cgroup_opts,
    bpf_iter_attach_opts,
    bpf_link_create_opts,
    bpf_link_update_opts,
    bpf_prog_attach_opts,
    bpf_prog_detach_opts,
    bpf_prog_query_opts,
    bpf_raw_tp_opts,
    bpf_prog_bind_opts
);

const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<PerfEventOpts>() == size_of::<cabi::bpf_perf_event_opts>());
    assert!(
        offset_of!(PerfEventOpts, dont_enable)
            == offset_of!(cabi::bpf_perf_event_opts, dont_enable)
    );
    assert!(size_of::<KprobeOpts>() == size_of::<cabi::bpf_kprobe_opts>());
    assert!(offset_of!(KprobeOpts, attach_mode) == offset_of!(cabi::bpf_kprobe_opts, attach_mode));
    assert!(size_of::<KsyscallOpts>() == size_of::<cabi::bpf_ksyscall_opts>());
    assert!(offset_of!(KsyscallOpts, retprobe) == offset_of!(cabi::bpf_ksyscall_opts, retprobe));
    assert!(size_of::<KprobeMultiOpts>() == size_of::<cabi::bpf_kprobe_multi_opts>());
    assert!(
        offset_of!(KprobeMultiOpts, unique_match)
            == offset_of!(cabi::bpf_kprobe_multi_opts, unique_match)
    );
    assert!(size_of::<c_ulong>() == size_of::<u64>());
    // The link_create opts union starts at 32 (libbpf 1.7's bpf.h).
    assert!(offset_of!(cabi::bpf_link_create_opts, __bindgen_anon_1) == 32);
    assert!(size_of::<cabi::bpf_prog_query_opts>() == 64);
};

/// `enum probe_attach_mode`.
const PROBE_ATTACH_MODE_DEFAULT: u32 = 0;
const PROBE_ATTACH_MODE_LEGACY: u32 = 1;
const PROBE_ATTACH_MODE_PERF: u32 = 2;
const PROBE_ATTACH_MODE_LINK: u32 = 3;

/// libbpf's `OPTS_ZEROED`: the bytes of the caller's opts from `off` up
/// to its `sz` are zero (true for NULL opts).
///
/// # Safety
/// `opts` NULL or valid for its `sz` bytes (the `size_t` at its start).
unsafe fn opts_zeroed_from<T>(opts: *const T, off: usize) -> bool {
    if opts.is_null() {
        return true;
    }
    // SAFETY: caller contract.
    let sz = unsafe { opts.cast::<usize>().read_unaligned() };
    if sz <= off {
        return true;
    }
    // SAFETY: `sz` readable bytes (caller contract).
    let bytes = unsafe { std::slice::from_raw_parts(opts.cast::<u8>().add(off), sz - off) };
    bytes.iter().all(|&b| b == 0)
}

/// libbpf's `OPTS_HAS`: the caller's struct covers `[0, end)`.
///
/// # Safety
/// `opts` non-NULL and starting with its `size_t sz`.
unsafe fn opts_has<T>(opts: *const T, end: usize) -> bool {
    // SAFETY: caller contract.
    unsafe { opts.cast::<usize>().read_unaligned() >= end }
}

// ---------------------------------------------------------------------------
// Shared steps
// ---------------------------------------------------------------------------

fn prog_name(p: &ProgramHandle) -> String {
    p.name.to_string_lossy().into_owned()
}

fn fail<R: FfiReturn>(e: i32) -> R {
    R::from_error(&errno_err(e))
}

/// Whether `fd` is open.
fn fd_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads an fd's flags.
    fd >= 0 && unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0
}

/// Whether `fd` is one of userbpf's own (user-space) programs.
fn is_user_prog(fd: RawFd) -> bool {
    if !fd_open(fd) {
        return false;
    }
    // SAFETY: `fd` is open (checked just above) for this call.
    let b = unsafe { BorrowedFd::borrow_raw(fd) };
    userbpf_libbpf_compat::backend::userspace::program_by_fd(b).is_some()
}

/// Why a user-space program is not in the kernel, and the errno of that.
fn user_side_reason(sec: Option<&str>) -> (String, i32) {
    match BackendMode::from_env().unwrap_or_default() {
        BackendMode::User => (
            "USERBPF_BACKEND=user keeps every program in user space".into(),
            libc::EOPNOTSUPP,
        ),
        _ if !probe::kernel_permitted() => (probe::why_not(), libc::EPERM),
        _ => (
            match sec {
                Some(s) => {
                    format!("this program was loaded into user space (its section is '{s}')")
                }
                None => "this program was loaded into user space".into(),
            },
            libc::EOPNOTSUPP,
        ),
    }
}

/// The clear refusal for a loaded program that lives in user space.
fn refuse_user_prog(p: &ProgramHandle, what: &str) -> Result<(), AbiError> {
    if p.fd < 0 || ksys::kernel_fd_kind(p.fd) == Some(KernelFdKind::Prog) || !fd_open(p.fd) {
        return Ok(());
    }
    let sec = p.sec_name.to_string_lossy();
    let (why, errno) = user_side_reason(Some(&sec));
    print::warn(&format!(
        "prog '{}': {what} programs run in the kernel, but {why}\n",
        prog_name(p)
    ));
    Err(errno_err(errno))
}

/// The same refusal for the `bpf.h` wrappers, by fd.
fn refuse_user_prog_fd(api: &str, prog_fd: RawFd) -> Result<(), i32> {
    if !is_user_prog(prog_fd) {
        return Ok(());
    }
    let (why, errno) = user_side_reason(None);
    print::warn(&format!(
        "{api}: prog fd {prog_fd} is a userbpf program; the kernel cannot attach it: {why}\n"
    ));
    Err(errno)
}

/// libbpf's "can't attach ..." check of `bpf_program__fd(prog) < 0`.
fn loaded_fd(p: &ProgramHandle, msg: &str) -> Result<RawFd, AbiError> {
    if p.fd < 0 {
        print::warn(&format!("prog '{}': {msg}\n", prog_name(p)));
        return Err(errno_err(libc::EINVAL));
    }
    Ok(p.fd)
}

const NO_FD: &str = "can't attach BPF program without FD (was it loaded?)";
const BEFORE_LOADED: &str = "can't attach before loaded";

fn warn_probe(e: &ProbeError) {
    if e.warns() {
        print::warn(&format!("{e}\n"));
    }
}

fn expected_attach_type(p: &ProgramHandle) -> u32 {
    // SAFETY: a live program handle.
    unsafe { program(p) }.map_or(0, |bp| bp.expected_attach_type().0)
}

// ---------------------------------------------------------------------------
// Perf events
// ---------------------------------------------------------------------------

/// The decoded `bpf_perf_event_opts`.
#[derive(Clone, Copy, Debug, Default)]
struct PerfAttach {
    cookie: u64,
    force_ioctl: bool,
    dont_enable: bool,
}

/// libbpf's `bpf_program__attach_perf_event_opts` after its opts check:
/// on success the link fd and its [`KernelLink`] (which owns `pfd`); on
/// failure `pfd` stays the caller's.
fn attach_perf(
    p: &ProgramHandle,
    pfd: RawFd,
    o: PerfAttach,
) -> Result<(OwnedFd, KernelLink), AbiError> {
    let name = prog_name(p);
    if pfd < 0 {
        print::warn(&format!("prog '{name}': invalid perf event FD {pfd}\n"));
        return Err(errno_err(libc::EINVAL));
    }
    let prog_fd = loaded_fd(p, NO_FD)?;
    refuse_user_prog(p, "perf event")?;
    let link_fd = if kattach::perf_link_supported() && !o.force_ioctl {
        let fd = kattach::perf_link_create(prog_fd, pfd, o.cookie).map_err(|e| {
            print::warn(&format!(
                "prog '{name}': failed to create BPF link for perf_event FD {pfd}: {}\n",
                errstr(-e)
            ));
            errno_err(e)
        })?;
        Some(fd)
    } else {
        if o.cookie != 0 {
            print::warn(&format!(
                "prog '{name}': user context value is not supported\n"
            ));
            return Err(errno_err(libc::EOPNOTSUPP));
        }
        ksys::perf_ioctl(pfd, ksys::perf_ioc::SET_BPF, prog_fd as u64).map_err(|e| {
            print::warn(&format!(
                "prog '{name}': failed to attach to perf_event FD {pfd}: {}\n",
                errstr(-e)
            ));
            if e == libc::EPROTO {
                print::warn(&format!(
                    "prog '{name}': try add PERF_SAMPLE_CALLCHAIN to or remove exclude_callchain_[kernel|user] from pfd {pfd}\n"
                ));
            }
            errno_err(e)
        })?;
        None
    };
    if !o.dont_enable {
        if let Err(e) = ksys::perf_ioctl(pfd, ksys::perf_ioc::ENABLE, 0) {
            print::warn(&format!(
                "prog '{name}': failed to enable perf_event FD {pfd}: {}\n",
                errstr(-e)
            ));
            drop(link_fd);
            return Err(errno_err(e));
        }
    }
    // SAFETY: the link owns the perf event from now on (libbpf's
    // bpf_link_perf closes it on detach); the caller gave it up.
    let perf_fd = unsafe { OwnedFd::from_raw_fd(pfd) };
    Ok(match link_fd {
        Some(fd) => (fd, KernelLink::perf(Some(perf_fd))),
        None => (perf_fd, KernelLink::perf(None)),
    })
}

/// Runs an attach that needs `pfd` and closes `pfd` when it fails (the
/// tracepoint and kprobe paths).
fn attach_owned_perf(
    p: &ProgramHandle,
    pfd: OwnedFd,
    o: PerfAttach,
) -> Result<(OwnedFd, KernelLink), AbiError> {
    let raw = pfd.as_raw_fd();
    match attach_perf(p, raw, o) {
        Ok(parts) => {
            // The link owns the fd now.
            let _ = pfd.into_raw_fd();
            Ok(parts)
        }
        Err(e) => Err(e),
    }
}

ffi_fn! {
    /// `struct bpf_link *bpf_program__attach_perf_event_opts(const struct bpf_program *prog, int pfd, const struct bpf_perf_event_opts *opts)`
    ///
    /// # Safety
    /// `prog` NULL or live; `opts` NULL or a valid opts struct.
    pub unsafe fn bpf_program__attach_perf_event_opts(
        prog: *const ProgramHandle,
        pfd: c_int,
        opts: *const cabi::bpf_perf_event_opts,
    ) -> *mut LinkHandle {
        // SAFETY: caller contract.
        let result = unsafe { read_opts(opts.cast::<PerfEventOpts>()) }.and_then(|o| {
            // SAFETY: caller contract.
            let p = unsafe { handle(prog) }?;
            let o = o.unwrap_or_default();
            let po = PerfAttach {
                cookie: o.bpf_cookie,
                force_ioctl: o.force_ioctl_attach != 0,
                dont_enable: o.dont_enable != 0,
            };
            attach_perf(p, pfd, po).map(|(fd, k)| LinkHandle::kernel_into_raw(fd, k))
        });
        ret(result)
    }
}

ffi_fn! {
    /// `struct bpf_link *bpf_program__attach_perf_event(const struct bpf_program *prog, int pfd)`
    ///
    /// # Safety
    /// `prog` NULL or live.
    pub unsafe fn bpf_program__attach_perf_event(prog: *const ProgramHandle, pfd: c_int) -> *mut LinkHandle {
        // SAFETY: caller contract; NULL opts.
        unsafe { bpf_program__attach_perf_event_opts(prog, pfd, std::ptr::null()) }
    }
}

// ---------------------------------------------------------------------------
// Tracepoints
// ---------------------------------------------------------------------------

fn attach_tracepoint(
    p: &ProgramHandle,
    category: &str,
    tp: &str,
    cookie: u64,
) -> Result<*mut LinkHandle, AbiError> {
    // Syscall tracepoints of user-space programs: syscall links.
    if let Some(r) = crate::syscall_attach_api::attach_tracepoint(p, category, tp, cookie) {
        return r;
    }
    let name = prog_name(p);
    refuse_user_prog(p, "tracepoint")?;
    let pfd = kattach::open_tracepoint(category, tp).map_err(|e| {
        warn_probe(&e);
        print::warn(&format!(
            "prog '{name}': failed to create tracepoint '{category}/{tp}' perf event: {}\n",
            errstr(-e.errno())
        ));
        errno_err(e.errno())
    })?;
    let po = PerfAttach {
        cookie,
        ..Default::default()
    };
    attach_owned_perf(p, pfd, po)
        .map(|(fd, k)| LinkHandle::kernel_into_raw(fd, k))
        .inspect_err(|e| {
            print::warn(&format!(
                "prog '{name}': failed to attach to tracepoint '{category}/{tp}': {}\n",
                errstr(-e.errno())
            ));
        })
}

ffi_fn! {
    /// `struct bpf_link *bpf_program__attach_tracepoint_opts(const struct bpf_program *prog, const char *tp_category, const char *tp_name, const struct bpf_tracepoint_opts *opts)`
    ///
    /// # Safety
    /// `prog` NULL or live; strings NULL or C strings; `opts` NULL or valid.
    pub unsafe fn bpf_program__attach_tracepoint_opts(
        prog: *const ProgramHandle,
        tp_category: *const c_char,
        tp_name: *const c_char,
        opts: *const cabi::bpf_tracepoint_opts,
    ) -> *mut LinkHandle {
        // SAFETY: caller contract.
        let result = unsafe { read_opts(opts) }.and_then(|o| {
            // SAFETY: caller contract.
            let p = unsafe { handle(prog) }?;
            // SAFETY: NULL or C strings (caller contract).
            let (cat, tp) = unsafe { (opt_str(tp_category), opt_str(tp_name)) };
            let (Some(cat), Some(tp)) = (cat, tp) else {
                return Err(errno_err(libc::EINVAL));
            };
            attach_tracepoint(p, &cat, &tp, o.map_or(0, |o| o.bpf_cookie))
        });
        ret(result)
    }
}

ffi_fn! {
    /// `struct bpf_link *bpf_program__attach_tracepoint(const struct bpf_program *prog, const char *tp_category, const char *tp_name)`
    ///
    /// # Safety
    /// `prog` NULL or live; strings NULL or C strings.
    pub unsafe fn bpf_program__attach_tracepoint(
        prog: *const ProgramHandle,
        tp_category: *const c_char,
        tp_name: *const c_char,
    ) -> *mut LinkHandle {
        // SAFETY: caller contract; NULL opts.
        unsafe { bpf_program__attach_tracepoint_opts(prog, tp_category, tp_name, std::ptr::null()) }
    }
}

// ---------------------------------------------------------------------------
// kprobes
// ---------------------------------------------------------------------------

/// The decoded `bpf_kprobe_opts`.
#[derive(Clone, Copy, Debug, Default)]
struct KprobeRequest {
    cookie: u64,
    offset: u64,
    retprobe: bool,
    attach_mode: u32,
}

/// libbpf's `bpf_program__attach_kprobe_opts` after its opts check.
fn attach_kprobe(
    p: &ProgramHandle,
    func: &str,
    r: KprobeRequest,
) -> Result<*mut LinkHandle, AbiError> {
    let name = prog_name(p);
    refuse_user_prog(p, "kprobe")?;
    let mut po = PerfAttach {
        cookie: r.cookie,
        ..Default::default()
    };
    let mut legacy = kattach::kprobe_perf_type().is_err();
    match r.attach_mode {
        PROBE_ATTACH_MODE_LEGACY => {
            legacy = true;
            po.force_ioctl = true;
        }
        PROBE_ATTACH_MODE_PERF => {
            if legacy {
                return Err(errno_err(libc::EOPNOTSUPP));
            }
            po.force_ioctl = true;
        }
        PROBE_ATTACH_MODE_LINK => {
            if legacy || !kattach::perf_link_supported() {
                return Err(errno_err(libc::EOPNOTSUPP));
            }
        }
        PROBE_ATTACH_MODE_DEFAULT => {}
        _ => return Err(errno_err(libc::EINVAL)),
    }
    let what = if r.retprobe { "kretprobe" } else { "kprobe" };
    let offset = r.offset;
    let legacy_probe = legacy.then(|| kattach::legacy_probe_name(func, offset));
    let opened = match &legacy_probe {
        None => kattach::open_kprobe(r.retprobe, func, offset),
        Some(probe_name) => kattach::open_kprobe_legacy(probe_name, r.retprobe, func, offset),
    };
    let pfd = opened.map_err(|e| {
        warn_probe(&e);
        print::warn(&format!(
            "prog '{name}': failed to create {what} '{func}+0x{offset:x}' perf event: {}\n",
            errstr(-e.errno())
        ));
        errno_err(e.errno())
    })?;
    match attach_owned_perf(p, pfd, po) {
        Ok((fd, mut k)) => {
            k.legacy = legacy_probe.map(|name| LegacyProbe {
                name,
                retprobe: r.retprobe,
            });
            Ok(LinkHandle::kernel_into_raw(fd, k))
        }
        Err(e) => {
            print::warn(&format!(
                "prog '{name}': failed to attach to {what} '{func}+0x{offset:x}': {}\n",
                errstr(-e.errno())
            ));
            if let Some(probe_name) = &legacy_probe {
                let _ = kattach::remove_kprobe_legacy(probe_name, r.retprobe);
            }
            Err(e)
        }
    }
}

ffi_fn! {
    /// `struct bpf_link *bpf_program__attach_kprobe_opts(const struct bpf_program *prog, const char *func_name, const struct bpf_kprobe_opts *opts)`
    ///
    /// # Safety
    /// `prog` NULL or live; `func_name` NULL or a C string; `opts` NULL or valid.
    pub unsafe fn bpf_program__attach_kprobe_opts(
        prog: *const ProgramHandle,
        func_name: *const c_char,
        opts: *const cabi::bpf_kprobe_opts,
    ) -> *mut LinkHandle {
        // SAFETY: caller contract.
        let result = unsafe { read_opts(opts.cast::<KprobeOpts>()) }.and_then(|o| {
            // SAFETY: caller contract.
            let p = unsafe { handle(prog) }?;
            let o = o.unwrap_or_default();
            // SAFETY: NULL or a C string (caller contract).
            let Some(func) = (unsafe { opt_str(func_name) }) else {
                return Err(errno_err(libc::EINVAL));
            };
            let r = KprobeRequest {
                cookie: o.bpf_cookie,
                offset: o.offset as u64,
                retprobe: o.retprobe != 0,
                attach_mode: o.attach_mode,
            };
            attach_kprobe(p, &func, r)
        });
        ret(result)
    }
}

ffi_fn! {
    /// `struct bpf_link *bpf_program__attach_kprobe(const struct bpf_program *prog, bool retprobe, const char *func_name)`
    ///
    /// # Safety
    /// `prog` NULL or live; `func_name` NULL or a C string.
    pub unsafe fn bpf_program__attach_kprobe(
        prog: *const ProgramHandle,
        retprobe: bool,
        func_name: *const c_char,
    ) -> *mut LinkHandle {
        // SAFETY: caller contract.
        let result = unsafe { handle(prog) }.and_then(|p| {
            // SAFETY: NULL or a C string (caller contract).
            let Some(func) = (unsafe { opt_str(func_name) }) else {
                return Err(errno_err(libc::EINVAL));
            };
            let r = KprobeRequest {
                retprobe,
                ..Default::default()
            };
            attach_kprobe(p, &func, r)
        });
        ret(result)
    }
}

/// libbpf's `bpf_program__attach_ksyscall` after its opts check.
fn attach_ksyscall(
    p: &ProgramHandle,
    syscall: &str,
    cookie: u64,
    retprobe: bool,
) -> Result<*mut LinkHandle, AbiError> {
    // User-space ksyscall programs: syscall links.
    if let Some(r) = crate::syscall_attach_api::attach_ksyscall(p, syscall, cookie, retprobe) {
        return r;
    }
    let mut func = if kattach::syscall_wrapper_supported() {
        format!(
            "__{}_sys_{syscall}",
            kattach::arch_syscall_prefix().unwrap_or("")
        )
    } else {
        format!("__se_sys_{syscall}")
    };
    // libbpf's `char func_name[128]`.
    if func.len() > 127 {
        let mut end = 127;
        while !func.is_char_boundary(end) {
            end -= 1;
        }
        func.truncate(end);
    }
    let r = KprobeRequest {
        cookie,
        retprobe,
        ..Default::default()
    };
    attach_kprobe(p, &func, r)
}

ffi_fn! {
    /// `struct bpf_link *bpf_program__attach_ksyscall(const struct bpf_program *prog, const char *syscall_name, const struct bpf_ksyscall_opts *opts)`
    ///
    /// # Safety
    /// `prog` NULL or live; `syscall_name` NULL or a C string; `opts` NULL or valid.
    pub unsafe fn bpf_program__attach_ksyscall(
        prog: *const ProgramHandle,
        syscall_name: *const c_char,
        opts: *const cabi::bpf_ksyscall_opts,
    ) -> *mut LinkHandle {
        // SAFETY: caller contract.
        let result = unsafe { read_opts(opts.cast::<KsyscallOpts>()) }.and_then(|o| {
            // SAFETY: caller contract.
            let p = unsafe { handle(prog) }?;
            let o = o.unwrap_or_default();
            // SAFETY: NULL or a C string (caller contract).
            let Some(sc) = (unsafe { opt_str(syscall_name) }) else {
                return Err(errno_err(libc::EINVAL));
            };
            attach_ksyscall(p, &sc, o.bpf_cookie, o.retprobe != 0)
        });
        ret(result)
    }
}

/// The decoded `bpf_kprobe_multi_opts`.
#[derive(Clone, Debug, Default)]
struct KprobeMultiRequest {
    syms: Option<Vec<CString>>,
    addrs: Option<Vec<u64>>,
    cookies: Option<Vec<u64>>,
    cnt: usize,
    retprobe: bool,
    session: bool,
    unique_match: bool,
}

/// libbpf's `bpf_program__attach_kprobe_multi_opts` after its opts check.
fn attach_kprobe_multi(
    p: &ProgramHandle,
    pattern: Option<&str>,
    r: KprobeMultiRequest,
) -> Result<*mut LinkHandle, AbiError> {
    let name = prog_name(p);
    let prog_fd = loaded_fd(p, NO_FD)?;
    refuse_user_prog(p, "kprobe.multi")?;
    let einval = || Err(errno_err(libc::EINVAL));
    if pattern.is_none() && r.addrs.is_none() && r.syms.is_none() {
        return einval();
    }
    if pattern.is_some()
        && (r.addrs.is_some() || r.syms.is_some() || r.cookies.is_some() || r.cnt != 0)
    {
        return einval();
    }
    if pattern.is_none() && r.cnt == 0 {
        return einval();
    }
    if pattern.is_none() && r.unique_match {
        return einval();
    }
    if r.addrs.is_some() && r.syms.is_some() {
        return einval();
    }
    let mut syms = r.syms.clone();
    let mut addrs = r.addrs.clone();
    let mut cnt = r.cnt;
    if let Some(pat) = pattern {
        if !pat.contains(['*', '?']) && !r.unique_match {
            syms = Some(vec![CString::new(pat).map_err(|_| errno_err(libc::EINVAL))?]);
            cnt = 1;
        } else {
            let found = kattach::kprobe_multi_addrs(pat).map_err(|e| {
                warn_probe(&e);
                errno_err(e.errno())
            })?;
            if r.unique_match && found.len() != 1 {
                print::warn(&format!(
                    "prog '{name}': failed to find a unique match for '{pat}' ({} matches)\n",
                    found.len()
                ));
                return einval();
            }
            cnt = found.len();
            addrs = Some(found);
        }
    }
    if r.retprobe && r.session {
        return einval();
    }
    let ty = if r.session {
        attach_type::TRACE_KPROBE_SESSION
    } else {
        attach_type::TRACE_KPROBE_MULTI
    };
    let sym_ptrs: Option<Vec<*const c_char>> = syms
        .as_ref()
        .map(|v| v.iter().map(|s| s.as_ptr()).collect());
    let mut attr = ksys::LinkCreateAttr {
        prog_fd: prog_fd as u32,
        attach_type: ty,
        ..Default::default()
    };
    kattach::put_u32(
        &mut attr.extra,
        0,
        if r.retprobe {
            kattach::BPF_F_KPROBE_MULTI_RETURN
        } else {
            0
        },
    );
    kattach::put_u32(&mut attr.extra, 4, cnt as u32);
    kattach::put_u64(
        &mut attr.extra,
        8,
        sym_ptrs.as_ref().map_or(0, |v| v.as_ptr() as u64),
    );
    kattach::put_u64(
        &mut attr.extra,
        16,
        addrs.as_ref().map_or(0, |v| v.as_ptr() as u64),
    );
    kattach::put_u64(
        &mut attr.extra,
        24,
        r.cookies.as_ref().map_or(0, |v| v.as_ptr() as u64),
    );
    let fd = kattach::link_create(&mut attr, false).map_err(|e| {
        let e = if e == libc::ESRCH { libc::ENOENT } else { e };
        print::warn(&format!(
            "prog '{name}': failed to attach: {}\n",
            errstr(-e)
        ));
        errno_err(e)
    })?;
    Ok(LinkHandle::kernel_into_raw(fd, KernelLink::plain()))
}

ffi_fn! {
    /// `struct bpf_link *bpf_program__attach_kprobe_multi_opts(const struct bpf_program *prog, const char *pattern, const struct bpf_kprobe_multi_opts *opts)`
    ///
    /// # Safety
    /// `prog` NULL or live; `pattern` NULL or a C string; `opts` NULL or a
    /// valid opts struct whose arrays hold `cnt` elements.
    pub unsafe fn bpf_program__attach_kprobe_multi_opts(
        prog: *const ProgramHandle,
        pattern: *const c_char,
        opts: *const cabi::bpf_kprobe_multi_opts,
    ) -> *mut LinkHandle {
        // SAFETY: caller contract.
        let result = unsafe { read_opts(opts.cast::<KprobeMultiOpts>()) }.and_then(|o| {
            // SAFETY: caller contract.
            let p = unsafe { handle(prog) }?;
            let mut r = KprobeMultiRequest::default();
            if let Some(o) = o {
                r.cnt = o.cnt;
                r.retprobe = o.retprobe != 0;
                r.session = o.session != 0;
                r.unique_match = o.unique_match != 0;
                // SAFETY: arrays of `cnt` elements, C strings (caller contract).
                unsafe {
                    r.syms = array(o.syms, o.cnt, |s: *const c_char| {
                        if s.is_null() {
                            CString::default()
                        } else {
                            CStr::from_ptr(s).to_owned()
                        }
                    });
                    r.addrs = array(o.addrs.cast::<u64>(), o.cnt, |v: u64| v);
                    r.cookies = array(o.cookies, o.cnt, |v: u64| v);
                }
            }
            // SAFETY: NULL or a C string (caller contract).
            let pattern = unsafe { opt_str(pattern) };
            attach_kprobe_multi(p, pattern.as_deref(), r)
        });
        ret(result)
    }
}

// ---------------------------------------------------------------------------
// Raw tracepoints, tracing and LSM programs
// ---------------------------------------------------------------------------

fn attach_raw_tracepoint(
    p: &ProgramHandle,
    tp: Option<&str>,
    cookie: u64,
) -> Result<*mut LinkHandle, AbiError> {
    // raw_tp sys_enter/sys_exit of user-space programs: syscall links.
    if let Some(r) = crate::syscall_attach_api::attach_raw_tracepoint(p, tp, cookie) {
        return r;
    }
    let name = prog_name(p);
    let prog_fd = loaded_fd(p, BEFORE_LOADED)?;
    refuse_user_prog(p, "raw tracepoint")?;
    let c = match tp {
        Some(t) => Some(CString::new(t).map_err(|_| errno_err(libc::EINVAL))?),
        None => None,
    };
    let fd = ksys::raw_tracepoint_open(c.as_deref(), prog_fd, cookie)
        .and_then(kattach::good_fd)
        .map_err(|e| {
            print::warn(&format!(
                "prog '{name}': failed to attach to raw tracepoint '{}': {}\n",
                tp.unwrap_or("(null)"),
                errstr(-e)
            ));
            errno_err(e)
        })?;
    Ok(LinkHandle::kernel_into_raw(fd, KernelLink::plain()))
}

ffi_fn! {
    /// `struct bpf_link *bpf_program__attach_raw_tracepoint_opts(const struct bpf_program *prog, const char *tp_name, struct bpf_raw_tracepoint_opts *opts)`
    ///
    /// # Safety
    /// `prog` NULL or live; `tp_name` NULL or a C string; `opts` NULL or valid.
    pub unsafe fn bpf_program__attach_raw_tracepoint_opts(
        prog: *const ProgramHandle,
        tp_name: *const c_char,
        opts: *const cabi::bpf_raw_tracepoint_opts,
    ) -> *mut LinkHandle {
        // SAFETY: caller contract.
        let result = unsafe { read_opts(opts) }.and_then(|o| {
            // SAFETY: caller contract.
            let p = unsafe { handle(prog) }?;
            // SAFETY: NULL or a C string (caller contract).
            let tp = unsafe { opt_str(tp_name) };
            attach_raw_tracepoint(p, tp.as_deref(), o.map_or(0, |o| o.cookie))
        });
        ret(result)
    }
}

ffi_fn! {
    /// `struct bpf_link *bpf_program__attach_raw_tracepoint(const struct bpf_program *prog, const char *tp_name)`
    ///
    /// # Safety
    /// `prog` NULL or live; `tp_name` NULL or a C string.
    pub unsafe fn bpf_program__attach_raw_tracepoint(
        prog: *const ProgramHandle,
        tp_name: *const c_char,
    ) -> *mut LinkHandle {
        // SAFETY: caller contract; NULL opts.
        unsafe { bpf_program__attach_raw_tracepoint_opts(prog, tp_name, std::ptr::null()) }
    }
}

/// libbpf's `bpf_program__attach_btf_id` (tp_btf, fentry/fexit/fmod_ret,
/// lsm, freplace without a target): `BPF_LINK_CREATE` with the program's
/// expected attach type.
fn attach_btf_id(p: &ProgramHandle, cookie: u64, what: &str) -> Result<*mut LinkHandle, AbiError> {
    let name = prog_name(p);
    let prog_fd = loaded_fd(p, BEFORE_LOADED)?;
    refuse_user_prog(p, what)?;
    let mut attr = ksys::LinkCreateAttr {
        prog_fd: prog_fd as u32,
        attach_type: expected_attach_type(p),
        ..Default::default()
    };
    kattach::put_u64(&mut attr.extra, 8, cookie);
    // libbpf's own opts carry only the cookie: the raw-tracepoint
    // fallback applies when it is zero.
    let fd = kattach::link_create(&mut attr, cookie == 0).map_err(|e| {
        print::warn(&format!(
            "prog '{name}': failed to attach: {}\n",
            errstr(-e)
        ));
        errno_err(e)
    })?;
    Ok(LinkHandle::kernel_into_raw(fd, KernelLink::plain()))
}

ffi_fn! {
    /// `struct bpf_link *bpf_program__attach_trace_opts(const struct bpf_program *prog, const struct bpf_trace_opts *opts)`
    ///
    /// # Safety
    /// `prog` NULL or live; `opts` NULL or valid.
    pub unsafe fn bpf_program__attach_trace_opts(
        prog: *const ProgramHandle,
        opts: *const cabi::bpf_trace_opts,
    ) -> *mut LinkHandle {
        // SAFETY: caller contract.
        let result = unsafe { read_opts(opts) }.and_then(|o| {
            // SAFETY: caller contract.
            let p = unsafe { handle(prog) }?;
            attach_btf_id(p, o.map_or(0, |o| o.cookie), "tracing")
        });
        ret(result)
    }
}

ffi_fn! {
    /// `struct bpf_link *bpf_program__attach_trace(const struct bpf_program *prog)`
    ///
    /// # Safety
    /// `prog` NULL or live.
    pub unsafe fn bpf_program__attach_trace(prog: *const ProgramHandle) -> *mut LinkHandle {
        // SAFETY: caller contract; NULL opts.
        unsafe { bpf_program__attach_trace_opts(prog, std::ptr::null()) }
    }
}

ffi_fn! {
    /// `struct bpf_link *bpf_program__attach_lsm(const struct bpf_program *prog)`
    ///
    /// # Safety
    /// `prog` NULL or live.
    pub unsafe fn bpf_program__attach_lsm(prog: *const ProgramHandle) -> *mut LinkHandle {
        // SAFETY: caller contract.
        ret(unsafe { handle(prog) }.and_then(|p| attach_btf_id(p, 0, "LSM")))
    }
}

// ---------------------------------------------------------------------------
// Links to an fd or ifindex (cgroup, netns, sockmap, XDP, tcx, netkit),
// freplace, iterators, netfilter
// ---------------------------------------------------------------------------

fn zeroed_link_opts() -> cabi::bpf_link_create_opts {
    cabi::bpf_link_create_opts {
        sz: std::mem::size_of::<cabi::bpf_link_create_opts>(),
        ..Default::default()
    }
}

/// libbpf's `bpf_program_attach_fd`.
fn attach_fd(
    p: &ProgramHandle,
    target_fd: i32,
    target: &str,
    opts: Option<&cabi::bpf_link_create_opts>,
) -> Result<*mut LinkHandle, AbiError> {
    let name = prog_name(p);
    let prog_fd = loaded_fd(p, BEFORE_LOADED)?;
    refuse_user_prog(p, target)?;
    let optr = opts.map_or(std::ptr::null(), |o| o as *const _);
    // SAFETY: NULL or our own complete opts struct.
    let fd = unsafe { link_create_raw(prog_fd, target_fd, expected_attach_type(p), optr) }
        .map_err(|e| {
            print::warn(&format!(
                "prog '{name}': failed to attach to {target}: {}\n",
                errstr(-e)
            ));
            errno_err(e)
        })?;
    Ok(LinkHandle::kernel_into_raw(fd, KernelLink::plain()))
}

macro_rules! attach_fd_fn {
    ($(#[$doc:meta])* $fn_name:ident, $target:literal) => {
        ffi_fn! {
            $(#[$doc])*
            ///
            /// # Safety
            /// `prog` NULL or live.
            pub unsafe fn $fn_name(prog: *const ProgramHandle, fd: c_int) -> *mut LinkHandle {
                // SAFETY: caller contract.
                ret(unsafe { handle(prog) }.and_then(|p| attach_fd(p, fd, $target, None)))
            }
        }
    };
}

attach_fd_fn!(
    /// `struct bpf_link *bpf_program__attach_cgroup(const struct bpf_program *prog, int cgroup_fd)`
    bpf_program__attach_cgroup,
    "cgroup"
);
attach_fd_fn!(
    /// `struct bpf_link *bpf_program__attach_netns(const struct bpf_program *prog, int netns_fd)`
    bpf_program__attach_netns,
    "netns"
);
attach_fd_fn!(
    /// `struct bpf_link *bpf_program__attach_sockmap(const struct bpf_program *prog, int map_fd)`
    bpf_program__attach_sockmap,
    "sockmap"
);
attach_fd_fn!(
    /// `struct bpf_link *bpf_program__attach_xdp(const struct bpf_program *prog, int ifindex)`
    bpf_program__attach_xdp,
    "xdp"
);

/// The relative fd/id options of cgroup, tcx and netkit links.
fn relative_opts(
    p: &ProgramHandle,
    ifindex_required: Option<i32>,
    flags: u32,
    relative_fd: u32,
    relative_id: u32,
    expected_revision: u64,
) -> Result<cabi::bpf_link_create_opts, AbiError> {
    let name = prog_name(p);
    if ifindex_required == Some(0) {
        print::warn(&format!(
            "prog '{name}': target netdevice ifindex cannot be zero\n"
        ));
        return Err(errno_err(libc::EINVAL));
    }
    if relative_fd != 0 && relative_id != 0 {
        print::warn(&format!(
            "prog '{name}': relative_fd and relative_id cannot be set at the same time\n"
        ));
        return Err(errno_err(libc::EINVAL));
    }
    let mut lo = zeroed_link_opts();
    lo.flags = flags;
    // tcx, netkit and cgroup share one layout in the union.
    lo.__bindgen_anon_1.cgroup = cabi::bpf_link_create_opts__bindgen_ty_1__bindgen_ty_8 {
        relative_fd,
        relative_id,
        expected_revision,
    };
    Ok(lo)
}

ffi_fn! {
    /// `struct bpf_link *bpf_program__attach_cgroup_opts(const struct bpf_program *prog, int cgroup_fd, const struct bpf_cgroup_opts *opts)`
    ///
    /// # Safety
    /// `prog` NULL or live; `opts` NULL or valid.
    pub unsafe fn bpf_program__attach_cgroup_opts(
        prog: *const ProgramHandle,
        cgroup_fd: c_int,
        opts: *const cabi::bpf_cgroup_opts,
    ) -> *mut LinkHandle {
        // SAFETY: caller contract.
        let result = unsafe { read_opts(opts) }.and_then(|o| {
            // SAFETY: caller contract.
            let p = unsafe { handle(prog) }?;
            let o = o.unwrap_or_default();
            let lo = relative_opts(p, None, o.flags, o.relative_fd, o.relative_id, o.expected_revision)?;
            attach_fd(p, cgroup_fd, "cgroup", Some(&lo))
        });
        ret(result)
    }
}

ffi_fn! {
    /// `struct bpf_link *bpf_program__attach_tcx(const struct bpf_program *prog, int ifindex, const struct bpf_tcx_opts *opts)`
    ///
    /// # Safety
    /// `prog` NULL or live; `opts` NULL or valid.
    pub unsafe fn bpf_program__attach_tcx(
        prog: *const ProgramHandle,
        ifindex: c_int,
        opts: *const cabi::bpf_tcx_opts,
    ) -> *mut LinkHandle {
        // SAFETY: caller contract.
        let result = unsafe { read_opts(opts) }.and_then(|o| {
            // SAFETY: caller contract.
            let p = unsafe { handle(prog) }?;
            let o = o.unwrap_or_default();
            let lo = relative_opts(p, Some(ifindex), o.flags, o.relative_fd, o.relative_id, o.expected_revision)?;
            attach_fd(p, ifindex, "tcx", Some(&lo))
        });
        ret(result)
    }
}

ffi_fn! {
    /// `struct bpf_link *bpf_program__attach_netkit(const struct bpf_program *prog, int ifindex, const struct bpf_netkit_opts *opts)`
    ///
    /// # Safety
    /// `prog` NULL or live; `opts` NULL or valid.
    pub unsafe fn bpf_program__attach_netkit(
        prog: *const ProgramHandle,
        ifindex: c_int,
        opts: *const cabi::bpf_netkit_opts,
    ) -> *mut LinkHandle {
        // SAFETY: caller contract.
        let result = unsafe { read_opts(opts) }.and_then(|o| {
            // SAFETY: caller contract.
            let p = unsafe { handle(prog) }?;
            let o = o.unwrap_or_default();
            let lo = relative_opts(p, Some(ifindex), o.flags, o.relative_fd, o.relative_id, o.expected_revision)?;
            attach_fd(p, ifindex, "netkit", Some(&lo))
        });
        ret(result)
    }
}

ffi_fn! {
    /// `struct bpf_link *bpf_program__attach_freplace(const struct bpf_program *prog, int target_fd, const char *attach_func_name)`
    ///
    /// # Safety
    /// `prog` NULL or live; `attach_func_name` NULL or a C string.
    pub unsafe fn bpf_program__attach_freplace(
        prog: *const ProgramHandle,
        target_fd: c_int,
        attach_func_name: *const c_char,
    ) -> *mut LinkHandle {
        // SAFETY: caller contract.
        let result = unsafe { handle(prog) }.and_then(|p| {
            let name = prog_name(p);
            // SAFETY: NULL or a C string (caller contract).
            let func = unsafe { opt_str(attach_func_name) };
            if (target_fd != 0) != func.is_some() {
                print::warn(&format!(
                    "prog '{name}': supply none or both of target_fd and attach_func_name\n"
                ));
                return Err(errno_err(libc::EINVAL));
            }
            // SAFETY: a live program handle.
            let ty = unsafe { program(p) }.map_or(0, |bp| bp.prog_type().0);
            if ty != ProgType::EXT.0 {
                print::warn(&format!(
                    "prog '{name}': only BPF_PROG_TYPE_EXT can attach as freplace\n"
                ));
                return Err(errno_err(libc::EINVAL));
            }
            let Some(func) = func else {
                return attach_btf_id(p, 0, "freplace");
            };
            let btf_id = kattach::prog_func_btf_id(target_fd, &func).map_err(|e| {
                warn_probe(&e);
                errno_err(e.errno())
            })?;
            let mut lo = zeroed_link_opts();
            lo.target_btf_id = btf_id;
            attach_fd(p, target_fd, "freplace", Some(&lo))
        });
        ret(result)
    }
}

ffi_fn! {
    /// `struct bpf_link *bpf_program__attach_iter(const struct bpf_program *prog, const struct bpf_iter_attach_opts *opts)`
    ///
    /// # Safety
    /// `prog` NULL or live; `opts` NULL or valid, its `link_info` NULL or
    /// valid for `link_info_len` bytes.
    pub unsafe fn bpf_program__attach_iter(
        prog: *const ProgramHandle,
        opts: *const cabi::bpf_iter_attach_opts,
    ) -> *mut LinkHandle {
        // SAFETY: caller contract.
        let result = unsafe { read_opts(opts) }.and_then(|o| {
            // SAFETY: caller contract.
            let p = unsafe { handle(prog) }?;
            attach_iter(p, o.map_or(0, |o| o.link_info as u64), o.map_or(0, |o| o.link_info_len))
        });
        ret(result)
    }
}

fn attach_iter(p: &ProgramHandle, info: u64, info_len: u32) -> Result<*mut LinkHandle, AbiError> {
    let name = prog_name(p);
    let prog_fd = loaded_fd(p, BEFORE_LOADED)?;
    refuse_user_prog(p, "iterator")?;
    let mut attr = ksys::LinkCreateAttr {
        prog_fd: prog_fd as u32,
        attach_type: attach_type::TRACE_ITER,
        ..Default::default()
    };
    kattach::put_u64(&mut attr.extra, 0, info);
    kattach::put_u32(&mut attr.extra, 8, info_len);
    let fd = kattach::link_create(&mut attr, false).map_err(|e| {
        print::warn(&format!(
            "prog '{name}': failed to attach to iterator: {}\n",
            errstr(-e)
        ));
        errno_err(e)
    })?;
    Ok(LinkHandle::kernel_into_raw(fd, KernelLink::plain()))
}

ffi_fn! {
    /// `struct bpf_link *bpf_program__attach_netfilter(const struct bpf_program *prog, const struct bpf_netfilter_opts *opts)`
    ///
    /// # Safety
    /// `prog` NULL or live; `opts` NULL or valid.
    pub unsafe fn bpf_program__attach_netfilter(
        prog: *const ProgramHandle,
        opts: *const cabi::bpf_netfilter_opts,
    ) -> *mut LinkHandle {
        // SAFETY: caller contract.
        let result = unsafe { read_opts(opts) }.and_then(|o| {
            // SAFETY: caller contract.
            let p = unsafe { handle(prog) }?;
            let o = o.unwrap_or_default();
            let name = prog_name(p);
            let prog_fd = loaded_fd(p, BEFORE_LOADED)?;
            refuse_user_prog(p, "netfilter")?;
            let mut attr = ksys::LinkCreateAttr {
                prog_fd: prog_fd as u32,
                attach_type: attach_type::NETFILTER,
                ..Default::default()
            };
            kattach::put_u32(&mut attr.extra, 0, o.pf);
            kattach::put_u32(&mut attr.extra, 4, o.hooknum);
            kattach::put_u32(&mut attr.extra, 8, o.priority as u32);
            kattach::put_u32(&mut attr.extra, 12, o.flags);
            let fd = kattach::link_create(&mut attr, false).map_err(|e| {
                print::warn(&format!(
                    "prog '{name}': failed to attach to netfilter: {}\n",
                    errstr(-e)
                ));
                errno_err(e)
            })?;
            Ok(LinkHandle::kernel_into_raw(fd, KernelLink::plain()))
        });
        ret(result)
    }
}

ffi_fn! {
    /// `int bpf_link__update_map(struct bpf_link *link, const struct bpf_map *map)`:
    /// libbpf's EINVAL for a map that is not struct_ops; struct_ops maps
    /// are not supported by userbpf.
    ///
    /// # Safety
    /// `link` NULL or live; `map` NULL or live.
    pub unsafe fn bpf_link__update_map(link: *mut LinkHandle, map: *const MapHandle) -> c_int {
        // SAFETY: caller contract.
        let Ok(m) = (unsafe { handle(map) }) else {
            return fail(libc::EINVAL);
        };
        if link.is_null() {
            return fail(libc::EINVAL);
        }
        // SAFETY: a live link handle.
        let link_fd = unsafe { crate::link_api::bpf_link__fd(link) };
        // SAFETY: a live map handle.
        ret(unsafe { crate::struct_ops_api::link_update_map(link_fd, m) }.map(|()| 0))
    }
}

// ---------------------------------------------------------------------------
// Auto-attach by section name
// ---------------------------------------------------------------------------

/// libbpf's `sscanf(s, "%m[<set>]")`: the longest prefix of `s` whose
/// characters are alphanumerics or in `extra`.
fn scan_set<'a>(s: &'a str, extra: &str) -> &'a str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || extra.contains(c)))
        .unwrap_or(s.len());
    &s[..end]
}

/// `strtol(s, NULL, 0)` as `%li` reads it: `Some` when a number starts `s`.
fn scan_long(s: &str) -> Option<i64> {
    let s = s.trim_start();
    let (neg, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, digits) =
        if let Some(h) = rest.strip_prefix("0x").or_else(|| rest.strip_prefix("0X")) {
            (16, h)
        } else if rest.starts_with('0') && rest.len() > 1 {
            (8, &rest[1..])
        } else {
            (10, rest)
        };
    let end = digits
        .find(|c: char| !c.is_digit(radix))
        .unwrap_or(digits.len());
    if end == 0 {
        // "0x" alone or "0" followed by nothing octal: the leading 0.
        return rest.starts_with('0').then_some(0);
    }
    let v = i64::from_str_radix(&digits[..end], radix).unwrap_or(i64::MAX);
    Some(if neg { v.wrapping_neg() } else { v })
}

/// libbpf's section-defined attach of the kernel handlers
/// (`attach_kprobe`, `attach_ksyscall`, `attach_kprobe_multi`,
/// `attach_kprobe_session`, `attach_tp`, `attach_raw_tp`, `attach_trace`,
/// `attach_lsm`, `attach_iter`): `Ok(None)` when the section names no
/// target.
pub(crate) fn auto_attach_kernel(
    p: &ProgramHandle,
    handler: AttachHandler,
) -> Result<Option<*mut LinkHandle>, i32> {
    let sec = p.sec_name.to_string_lossy().into_owned();
    let name = prog_name(p);
    let done = |r: Result<*mut LinkHandle, AbiError>| r.map(Some).map_err(|e| e.errno());
    match handler {
        AttachHandler::Kprobe => {
            if sec == "kprobe" || sec == "kretprobe" {
                return Ok(None);
            }
            let retprobe = sec.starts_with("kretprobe/");
            let spec = sec
                .strip_prefix(if retprobe { "kretprobe/" } else { "kprobe/" })
                .unwrap_or("");
            let func = scan_set(spec, "_.");
            if func.is_empty() {
                print::warn(&format!("kprobe name is invalid: {spec}\n"));
                return Err(libc::EINVAL);
            }
            let offset = spec[func.len()..]
                .strip_prefix('+')
                .and_then(scan_long)
                .unwrap_or(0);
            if retprobe && offset != 0 {
                print::warn("kretprobes do not support offset specification\n");
                return Err(libc::EINVAL);
            }
            let r = KprobeRequest {
                retprobe,
                offset: offset as u64,
                ..Default::default()
            };
            done(attach_kprobe(p, func, r))
        }
        AttachHandler::Ksyscall => {
            if sec == "ksyscall" || sec == "kretsyscall" {
                return Ok(None);
            }
            let retprobe = sec.starts_with("kretsyscall/");
            let sc = sec
                .strip_prefix(if retprobe {
                    "kretsyscall/"
                } else {
                    "ksyscall/"
                })
                .unwrap_or("");
            done(attach_ksyscall(p, sc, 0, retprobe))
        }
        AttachHandler::KprobeMulti | AttachHandler::KprobeSession => {
            let session = handler == AttachHandler::KprobeSession;
            let (spec, retprobe) = if session {
                if sec == "kprobe.session" {
                    return Ok(None);
                }
                (sec.strip_prefix("kprobe.session/").unwrap_or(""), false)
            } else {
                if sec == "kprobe.multi" || sec == "kretprobe.multi" {
                    return Ok(None);
                }
                let retprobe = sec.starts_with("kretprobe.multi/");
                let spec = sec
                    .strip_prefix(if retprobe {
                        "kretprobe.multi/"
                    } else {
                        "kprobe.multi/"
                    })
                    .unwrap_or("");
                (spec, retprobe)
            };
            let pattern = scan_set(spec, "_.*?");
            if pattern.is_empty() {
                let what = if session { "session" } else { "multi" };
                print::warn(&format!("kprobe {what} pattern is invalid: {spec}\n"));
                return Err(libc::EINVAL);
            }
            let r = KprobeMultiRequest {
                retprobe,
                session,
                ..Default::default()
            };
            done(attach_kprobe_multi(p, Some(pattern), r))
        }
        AttachHandler::Tracepoint => {
            if sec == "tp" || sec == "tracepoint" {
                return Ok(None);
            }
            let rest = sec
                .strip_prefix("tp/")
                .or_else(|| sec.strip_prefix("tracepoint/"))
                .unwrap_or("");
            let Some((cat, tp)) = rest.split_once('/') else {
                return Err(libc::EINVAL);
            };
            done(attach_tracepoint(p, cat, tp, 0))
        }
        AttachHandler::RawTracepoint => {
            let mut tp_name = None;
            for pfx in ["raw_tp", "raw_tracepoint", "raw_tp.w", "raw_tracepoint.w"] {
                let Some(rest) = sec.strip_prefix(pfx) else {
                    continue;
                };
                if rest.is_empty() {
                    return Ok(None);
                }
                if let Some(tp) = rest.strip_prefix('/') {
                    tp_name = Some(tp.to_string());
                    break;
                }
            }
            let Some(tp) = tp_name else {
                print::warn(&format!("prog '{name}': invalid section name '{sec}'\n"));
                return Err(libc::EINVAL);
            };
            done(attach_raw_tracepoint(p, Some(&tp), 0))
        }
        AttachHandler::Trace => done(attach_btf_id(p, 0, "tracing")),
        AttachHandler::Lsm => done(attach_btf_id(p, 0, "LSM")),
        AttachHandler::Iter => done(attach_iter(p, 0, 0)),
        _ => Err(libc::EOPNOTSUPP),
    }
}

// ---------------------------------------------------------------------------
// bpf.h: links
// ---------------------------------------------------------------------------

/// Byte offsets in `struct bpf_link_create_opts` where each union member
/// ends (libbpf's `OPTS_ZEROED(opts, <member>)`).
mod lc_end {
    pub const SZ: usize = 8;
    pub const FLAGS: usize = 12;
    pub const TARGET_BTF_ID: usize = 32;
    pub const PERF_EVENT: usize = 40;
    pub const KPROBE_MULTI: usize = 64;
    pub const UPROBE_MULTI: usize = 76;
    pub const TRACING: usize = 40;
    pub const NETFILTER: usize = 48;
    pub const RELATIVE: usize = 48;
}

/// bpf.c's `bpf_link_create`: the attribute from the opts, then the
/// syscall (and the raw-tracepoint fallback). Positive errno.
///
/// # Safety
/// `opts` NULL or a valid `bpf_link_create_opts` of its `sz` bytes whose
/// pointers are valid for what the attach type reads.
unsafe fn link_create_raw(
    prog_fd: RawFd,
    target_fd: RawFd,
    ty: u32,
    opts: *const cabi::bpf_link_create_opts,
) -> Result<OwnedFd, i32> {
    // SAFETY: caller contract.
    let o = unsafe { read_opts(opts) }.map_err(|e| e.errno())?;
    let o = o.unwrap_or_else(zeroed_link_opts);
    // SAFETY: caller contract (for every use below).
    let zeroed = |end: usize| unsafe { opts_zeroed_from(opts, end) };
    if o.iter_info_len != 0 || o.target_btf_id != 0 {
        if o.iter_info_len != 0 && o.target_btf_id != 0 {
            return Err(libc::EINVAL);
        }
        if !zeroed(lc_end::TARGET_BTF_ID) {
            return Err(libc::EINVAL);
        }
    }
    let mut attr = ksys::LinkCreateAttr {
        prog_fd: prog_fd as u32,
        target_fd: target_fd as u32,
        attach_type: ty,
        flags: o.flags,
        ..Default::default()
    };
    let e = &mut attr.extra;
    let u = &o.__bindgen_anon_1;
    if o.target_btf_id != 0 {
        kattach::put_u32(e, 0, o.target_btf_id);
    } else {
        // SAFETY (union reads below): every member is integers and raw
        // pointers, valid for any bytes.
        match ty {
            attach_type::TRACE_ITER => {
                kattach::put_u64(e, 0, o.iter_info as u64);
                kattach::put_u32(e, 8, o.iter_info_len);
            }
            attach_type::PERF_EVENT => {
                // SAFETY: see above.
                kattach::put_u64(e, 0, unsafe { u.perf_event.bpf_cookie });
                if !zeroed(lc_end::PERF_EVENT) {
                    return Err(libc::EINVAL);
                }
            }
            attach_type::TRACE_KPROBE_MULTI | attach_type::TRACE_KPROBE_SESSION => {
                // SAFETY: see above.
                let k = unsafe { u.kprobe_multi };
                kattach::put_u32(e, 0, k.flags);
                kattach::put_u32(e, 4, k.cnt);
                kattach::put_u64(e, 8, k.syms as u64);
                kattach::put_u64(e, 16, k.addrs as u64);
                kattach::put_u64(e, 24, k.cookies as u64);
                if !zeroed(lc_end::KPROBE_MULTI) {
                    return Err(libc::EINVAL);
                }
            }
            attach_type::TRACE_UPROBE_MULTI | attach_type::TRACE_UPROBE_SESSION => {
                // SAFETY: see above.
                let m = unsafe { u.uprobe_multi };
                kattach::put_u64(e, 0, m.path as u64);
                kattach::put_u64(e, 8, m.offsets as u64);
                kattach::put_u64(e, 16, m.ref_ctr_offsets as u64);
                kattach::put_u64(e, 24, m.cookies as u64);
                kattach::put_u32(e, 32, m.cnt);
                kattach::put_u32(e, 36, m.flags);
                kattach::put_u32(e, 40, m.pid);
                if !zeroed(lc_end::UPROBE_MULTI) {
                    return Err(libc::EINVAL);
                }
            }
            attach_type::TRACE_RAW_TP
            | attach_type::TRACE_FENTRY
            | attach_type::TRACE_FEXIT
            | attach_type::MODIFY_RETURN
            | attach_type::TRACE_FSESSION
            | attach_type::LSM_MAC => {
                // SAFETY: see above.
                kattach::put_u64(e, 8, unsafe { u.tracing.cookie });
                if !zeroed(lc_end::TRACING) {
                    return Err(libc::EINVAL);
                }
            }
            attach_type::NETFILTER => {
                // SAFETY: see above.
                let n = unsafe { u.netfilter };
                kattach::put_u32(e, 0, n.pf);
                kattach::put_u32(e, 4, n.hooknum);
                kattach::put_u32(e, 8, n.priority as u32);
                kattach::put_u32(e, 12, n.flags);
                if !zeroed(lc_end::NETFILTER) {
                    return Err(libc::EINVAL);
                }
            }
            t if t == attach_type::TCX_INGRESS
                || t == attach_type::TCX_EGRESS
                || t == attach_type::NETKIT_PRIMARY
                || t == attach_type::NETKIT_PEER
                || attach_type::is_cgroup(t) =>
            {
                // tcx, netkit and cgroup share one layout.
                // SAFETY: see above.
                let r = unsafe { u.cgroup };
                if r.relative_fd != 0 && r.relative_id != 0 {
                    return Err(libc::EINVAL);
                }
                if r.relative_id != 0 {
                    kattach::put_u32(e, 0, r.relative_id);
                    attr.flags |= kattach::BPF_F_ID;
                } else {
                    kattach::put_u32(e, 0, r.relative_fd);
                }
                kattach::put_u64(&mut attr.extra, 8, r.expected_revision);
                if !zeroed(lc_end::RELATIVE) {
                    return Err(libc::EINVAL);
                }
            }
            _ => {
                if !zeroed(lc_end::FLAGS) {
                    return Err(libc::EINVAL);
                }
            }
        }
    }
    kattach::link_create(&mut attr, zeroed(lc_end::SZ))
}

/// `-e` with errno set, or the value.
fn int_result(r: Result<c_int, i32>) -> c_int {
    match r {
        Ok(v) => v,
        Err(e) => fail(e),
    }
}

fn fd_result(r: Result<OwnedFd, i32>) -> c_int {
    int_result(r.map(IntoRawFd::into_raw_fd))
}

ffi_fn! {
    /// `int bpf_link_create(int prog_fd, int target_fd, enum bpf_attach_type attach_type, const struct bpf_link_create_opts *opts)`
    ///
    /// # Safety
    /// `opts` NULL or a valid opts struct whose pointers are valid for
    /// what the attach type reads.
    pub unsafe fn bpf_link_create(
        prog_fd: c_int,
        target_fd: c_int,
        attach_type: c_uint,
        opts: *const cabi::bpf_link_create_opts,
    ) -> c_int {
        if let Err(e) = refuse_user_prog_fd("bpf_link_create", prog_fd) {
            return fail(e);
        }
        // SAFETY: caller contract.
        fd_result(unsafe { link_create_raw(prog_fd, target_fd, attach_type, opts) })
    }
}

ffi_fn! {
    /// `int bpf_link_detach(int link_fd)`
    pub fn bpf_link_detach(link_fd: c_int) -> c_int {
        int_result(kattach::link_detach(link_fd).map(|()| 0))
    }
}

ffi_fn! {
    /// `int bpf_link_update(int link_fd, int new_prog_fd, const struct bpf_link_update_opts *opts)`
    ///
    /// # Safety
    /// `opts` NULL or valid.
    pub unsafe fn bpf_link_update(
        link_fd: c_int,
        new_prog_fd: c_int,
        opts: *const cabi::bpf_link_update_opts,
    ) -> c_int {
        // SAFETY: caller contract.
        let o = match unsafe { read_opts(opts) } {
            Ok(o) => o.unwrap_or_default(),
            Err(e) => return fail(e.errno()),
        };
        if o.old_prog_fd != 0 && o.old_map_fd != 0 {
            return fail(libc::EINVAL);
        }
        let mut attr = ksys::LinkUpdateAttr {
            link_fd: link_fd as u32,
            new_prog_fd: new_prog_fd as u32,
            flags: o.flags,
            // old_prog_fd and old_map_fd share the field.
            old_prog_fd: if o.old_prog_fd != 0 { o.old_prog_fd } else { o.old_map_fd },
        };
        int_result(kattach::link_update(&mut attr).map(|()| 0))
    }
}

ffi_fn! {
    /// `int bpf_iter_create(int link_fd)`
    pub fn bpf_iter_create(link_fd: c_int) -> c_int {
        let mut attr = ksys::FdFlagsAttr {
            fd: link_fd as u32,
            flags: 0,
        };
        // SAFETY: a plain attribute struct.
        fd_result(unsafe { ksys::bpf_fd(cmd::ITER_CREATE, &mut attr) }.and_then(kattach::good_fd))
    }
}

ffi_fn! {
    /// `int bpf_raw_tracepoint_open_opts(int prog_fd, struct bpf_raw_tp_opts *opts)`
    ///
    /// # Safety
    /// `opts` NULL or valid, its `tp_name` NULL or a C string.
    pub unsafe fn bpf_raw_tracepoint_open_opts(prog_fd: c_int, opts: *mut cabi::bpf_raw_tp_opts) -> c_int {
        // SAFETY: caller contract.
        let o = match unsafe { read_opts(opts.cast_const()) } {
            Ok(o) => o.unwrap_or_default(),
            Err(e) => return fail(e.errno()),
        };
        if let Err(e) = refuse_user_prog_fd("bpf_raw_tracepoint_open", prog_fd) {
            return fail(e);
        }
        let mut attr = ksys::RawTracepointAttr {
            name: o.tp_name as u64,
            prog_fd: prog_fd as u32,
            cookie: o.cookie,
            ..Default::default()
        };
        // SAFETY: the name is NULL or a C string (caller contract).
        fd_result(unsafe { ksys::bpf_fd(cmd::RAW_TRACEPOINT_OPEN, &mut attr) }.and_then(kattach::good_fd))
    }
}

ffi_fn! {
    /// `int bpf_raw_tracepoint_open(const char *name, int prog_fd)`
    ///
    /// # Safety
    /// `name` NULL or a C string.
    pub unsafe fn bpf_raw_tracepoint_open(name: *const c_char, prog_fd: c_int) -> c_int {
        let mut o = cabi::bpf_raw_tp_opts {
            sz: std::mem::size_of::<cabi::bpf_raw_tp_opts>(),
            tp_name: name,
            cookie: 0,
        };
        // SAFETY: a complete opts struct; `name` per caller contract.
        unsafe { bpf_raw_tracepoint_open_opts(prog_fd, &mut o) }
    }
}

// ---------------------------------------------------------------------------
// bpf.h: BPF_PROG_ATTACH / DETACH / QUERY and friends
// ---------------------------------------------------------------------------

/// The options `BPF_PROG_ATTACH` / `BPF_PROG_DETACH` take.
#[derive(Clone, Copy, Debug, Default)]
struct AttachReq {
    flags: u32,
    relative_fd: i32,
    relative_id: u32,
    replace_fd: i32,
    expected_revision: u64,
}

fn prog_attach_cmd(
    command: u32,
    prog_fd: RawFd,
    target: RawFd,
    ty: u32,
    r: AttachReq,
) -> Result<c_int, i32> {
    if r.relative_fd != 0 && r.relative_id != 0 {
        return Err(libc::EINVAL);
    }
    let mut attr = ksys::ProgAttachAttr {
        target_fd: target as u32,
        attach_bpf_fd: prog_fd as u32,
        attach_type: ty,
        replace_bpf_fd: r.replace_fd as u32,
        expected_revision: r.expected_revision,
        ..Default::default()
    };
    if r.relative_id != 0 {
        attr.attach_flags = r.flags | kattach::BPF_F_ID;
        attr.relative_fd = r.relative_id;
    } else {
        attr.attach_flags = r.flags;
        attr.relative_fd = r.relative_fd as u32;
    }
    // SAFETY: a plain attribute struct.
    unsafe { ksys::bpf(command, &mut attr) }.map(|r| r as c_int)
}

ffi_fn! {
    /// `int bpf_prog_attach_opts(int prog_fd, int target, enum bpf_attach_type type, const struct bpf_prog_attach_opts *opts)`
    ///
    /// # Safety
    /// `opts` NULL or valid.
    pub unsafe fn bpf_prog_attach_opts(
        prog_fd: c_int,
        target: c_int,
        ty: c_uint,
        opts: *const cabi::bpf_prog_attach_opts,
    ) -> c_int {
        // SAFETY: caller contract.
        let o = match unsafe { read_opts(opts) } {
            Ok(o) => o.unwrap_or_default(),
            Err(e) => return fail(e.errno()),
        };
        if o.relative_fd != 0 && o.relative_id != 0 {
            return fail(libc::EINVAL);
        }
        if let Err(e) = refuse_user_prog_fd("bpf_prog_attach", prog_fd) {
            return fail(e);
        }
        // SAFETY: a union of two ints.
        let replace = unsafe { o.__bindgen_anon_1.replace_fd };
        let r = AttachReq {
            flags: o.flags,
            relative_fd: o.relative_fd,
            relative_id: o.relative_id,
            replace_fd: replace,
            expected_revision: o.expected_revision,
        };
        int_result(prog_attach_cmd(cmd::PROG_ATTACH, prog_fd, target, ty, r))
    }
}

ffi_fn! {
    /// `int bpf_prog_attach(int prog_fd, int target_fd, enum bpf_attach_type type, unsigned int flags)`
    pub fn bpf_prog_attach(prog_fd: c_int, target_fd: c_int, ty: c_uint, flags: c_uint) -> c_int {
        let o = cabi::bpf_prog_attach_opts {
            sz: std::mem::size_of::<cabi::bpf_prog_attach_opts>(),
            flags,
            ..Default::default()
        };
        // SAFETY: a complete opts struct.
        unsafe { bpf_prog_attach_opts(prog_fd, target_fd, ty, &o) }
    }
}

ffi_fn! {
    /// `int bpf_prog_detach_opts(int prog_fd, int target, enum bpf_attach_type type, const struct bpf_prog_detach_opts *opts)`
    ///
    /// # Safety
    /// `opts` NULL or valid.
    pub unsafe fn bpf_prog_detach_opts(
        prog_fd: c_int,
        target: c_int,
        ty: c_uint,
        opts: *const cabi::bpf_prog_detach_opts,
    ) -> c_int {
        // SAFETY: caller contract.
        let o = match unsafe { read_opts(opts) } {
            Ok(o) => o.unwrap_or_default(),
            Err(e) => return fail(e.errno()),
        };
        let r = AttachReq {
            flags: o.flags,
            relative_fd: o.relative_fd,
            relative_id: o.relative_id,
            replace_fd: 0,
            expected_revision: o.expected_revision,
        };
        int_result(prog_attach_cmd(cmd::PROG_DETACH, prog_fd, target, ty, r))
    }
}

ffi_fn! {
    /// `int bpf_prog_detach(int target_fd, enum bpf_attach_type type)`
    pub fn bpf_prog_detach(target_fd: c_int, ty: c_uint) -> c_int {
        // SAFETY: NULL opts.
        unsafe { bpf_prog_detach_opts(0, target_fd, ty, std::ptr::null()) }
    }
}

ffi_fn! {
    /// `int bpf_prog_detach2(int prog_fd, int target_fd, enum bpf_attach_type type)`
    pub fn bpf_prog_detach2(prog_fd: c_int, target_fd: c_int, ty: c_uint) -> c_int {
        // SAFETY: NULL opts.
        unsafe { bpf_prog_detach_opts(prog_fd, target_fd, ty, std::ptr::null()) }
    }
}

/// Ends of `struct bpf_prog_query_opts` fields (`OPTS_SET`).
mod pq_end {
    pub const ATTACH_FLAGS: usize = 16;
    pub const COUNT: usize = 28;
    pub const REVISION: usize = 64;
}

ffi_fn! {
    /// `int bpf_prog_query_opts(int target, enum bpf_attach_type type, struct bpf_prog_query_opts *opts)`:
    /// `attach_flags`, `revision` and `count` are written back (within `sz`).
    ///
    /// # Safety
    /// `opts` NULL or valid, its arrays NULL or holding `count` elements.
    pub unsafe fn bpf_prog_query_opts(target: c_int, ty: c_uint, opts: *mut cabi::bpf_prog_query_opts) -> c_int {
        // SAFETY: caller contract.
        let o = match unsafe { read_opts(opts.cast_const()) } {
            Ok(o) => o,
            Err(e) => return fail(e.errno()),
        };
        let mut attr = ksys::ProgQueryAttr {
            target_fd: target as u32,
            attach_type: ty,
            ..Default::default()
        };
        if let Some(o) = &o {
            attr.query_flags = o.query_flags;
            // SAFETY: a union of two u32s.
            attr.count = unsafe { o.__bindgen_anon_1.count };
            attr.prog_ids = o.prog_ids as u64;
            attr.link_ids = o.link_ids as u64;
            attr.prog_attach_flags = o.prog_attach_flags as u64;
            attr.link_attach_flags = o.link_attach_flags as u64;
        }
        // SAFETY: the arrays are the caller's, `count` long.
        let r = unsafe { ksys::bpf(cmd::PROG_QUERY, &mut attr) };
        if !opts.is_null() {
            // SAFETY: a valid opts struct of `sz` bytes (caller contract);
            // each field is written only when `sz` covers it.
            unsafe {
                if opts_has(opts, pq_end::ATTACH_FLAGS) {
                    std::ptr::addr_of_mut!((*opts).attach_flags).write_unaligned(attr.attach_flags);
                }
                if opts_has(opts, pq_end::REVISION) {
                    std::ptr::addr_of_mut!((*opts).revision).write_unaligned(attr.revision);
                }
                if opts_has(opts, pq_end::COUNT) {
                    std::ptr::addr_of_mut!((*opts).__bindgen_anon_1.count).write_unaligned(attr.count);
                }
            }
        }
        int_result(r.map(|v| v as c_int))
    }
}

ffi_fn! {
    /// `int bpf_prog_query(int target_fd, enum bpf_attach_type type, __u32 query_flags, __u32 *attach_flags, __u32 *prog_ids, __u32 *prog_cnt)`
    ///
    /// # Safety
    /// `attach_flags` NULL or writable; `prog_cnt` valid; `prog_ids` NULL
    /// or holding `*prog_cnt` elements.
    pub unsafe fn bpf_prog_query(
        target_fd: c_int,
        ty: c_uint,
        query_flags: c_uint,
        attach_flags: *mut u32,
        prog_ids: *mut u32,
        prog_cnt: *mut u32,
    ) -> c_int {
        if prog_cnt.is_null() {
            return fail(libc::EINVAL);
        }
        let mut o = cabi::bpf_prog_query_opts {
            sz: std::mem::size_of::<cabi::bpf_prog_query_opts>(),
            query_flags,
            prog_ids,
            ..Default::default()
        };
        // SAFETY: caller contract.
        o.__bindgen_anon_1.prog_cnt = unsafe { *prog_cnt };
        // SAFETY: a complete opts struct; the array per caller contract.
        let r = unsafe { bpf_prog_query_opts(target_fd, ty, &mut o) };
        let saved = crate::abi::errno();
        // SAFETY: caller contract.
        unsafe {
            if !attach_flags.is_null() {
                *attach_flags = o.attach_flags;
            }
            *prog_cnt = o.__bindgen_anon_1.prog_cnt;
        }
        set_errno(saved);
        r
    }
}

ffi_fn! {
    /// `int bpf_task_fd_query(int pid, int fd, __u32 flags, char *buf, __u32 *buf_len, __u32 *prog_id, __u32 *fd_type, __u64 *probe_offset, __u64 *probe_addr)`
    ///
    /// # Safety
    /// The out pointers valid; `buf` NULL or `*buf_len` writable bytes.
    pub unsafe fn bpf_task_fd_query(
        pid: c_int,
        fd: c_int,
        flags: c_uint,
        buf: *mut c_char,
        buf_len: *mut u32,
        prog_id: *mut u32,
        fd_type: *mut u32,
        probe_offset: *mut u64,
        probe_addr: *mut u64,
    ) -> c_int {
        if buf_len.is_null()
            || prog_id.is_null()
            || fd_type.is_null()
            || probe_offset.is_null()
            || probe_addr.is_null()
        {
            return fail(libc::EINVAL);
        }
        let mut attr = ksys::TaskFdQueryAttr {
            pid: pid as u32,
            fd: fd as u32,
            flags,
            buf: buf as u64,
            // SAFETY: caller contract.
            buf_len: unsafe { *buf_len },
            ..Default::default()
        };
        // SAFETY: `buf` holds `buf_len` bytes (caller contract).
        let r = unsafe { ksys::bpf(cmd::TASK_FD_QUERY, &mut attr) };
        // SAFETY: caller contract.
        unsafe {
            *buf_len = attr.buf_len;
            *prog_id = attr.prog_id;
            *fd_type = attr.fd_type;
            *probe_offset = attr.probe_offset;
            *probe_addr = attr.probe_addr;
        }
        int_result(r.map(|v| v as c_int))
    }
}

ffi_fn! {
    /// `int bpf_enable_stats(enum bpf_stats_type type)`
    pub fn bpf_enable_stats(ty: c_uint) -> c_int {
        let mut attr = ksys::FdFlagsAttr { fd: ty, flags: 0 };
        // SAFETY: a plain attribute struct.
        fd_result(unsafe { ksys::bpf_fd(cmd::ENABLE_STATS, &mut attr) }.and_then(kattach::good_fd))
    }
}

ffi_fn! {
    /// `int bpf_prog_bind_map(int prog_fd, int map_fd, const struct bpf_prog_bind_opts *opts)`
    ///
    /// # Safety
    /// `opts` NULL or valid.
    pub unsafe fn bpf_prog_bind_map(prog_fd: c_int, map_fd: c_int, opts: *const cabi::bpf_prog_bind_opts) -> c_int {
        // SAFETY: caller contract.
        let o = match unsafe { read_opts(opts) } {
            Ok(o) => o.unwrap_or_default(),
            Err(e) => return fail(e.errno()),
        };
        let mut attr = ksys::BindMapAttr {
            prog_fd: prog_fd as u32,
            map_fd: map_fd as u32,
            flags: o.flags,
        };
        // SAFETY: a plain attribute struct.
        int_result(unsafe { ksys::bpf(cmd::PROG_BIND_MAP, &mut attr) }.map(|v| v as c_int))
    }
}

// ---------------------------------------------------------------------------
// XDP by netlink (libbpf's netlink.c)
// ---------------------------------------------------------------------------

plain_opts!(bpf_xdp_attach_opts, bpf_xdp_query_opts);

fn nl_warn(m: &str) {
    print::warn(m);
}

ffi_fn! {
    /// `int bpf_xdp_attach(int ifindex, int prog_fd, __u32 flags, const struct bpf_xdp_attach_opts *opts)`:
    /// `RTM_SETLINK` with `IFLA_XDP` (`prog_fd` -1 detaches).
    ///
    /// # Safety
    /// `opts` NULL or valid.
    pub unsafe fn bpf_xdp_attach(
        ifindex: c_int,
        prog_fd: c_int,
        flags: u32,
        opts: *const cabi::bpf_xdp_attach_opts,
    ) -> c_int {
        // SAFETY: caller contract.
        let o = match unsafe { read_opts(opts) } {
            Ok(o) => o,
            Err(e) => return fail(e.errno()),
        };
        let mut flags = flags;
        let old = o.map_or(0, |o| o.old_prog_fd);
        let old = if old != 0 {
            flags |= netlink::XDP_FLAGS_REPLACE;
            old
        } else {
            -1
        };
        if let Err(e) = refuse_user_prog_fd("bpf_xdp_attach", prog_fd) {
            return fail(e);
        }
        match netlink::xdp_set(ifindex, prog_fd, old, flags, &mut nl_warn) {
            Ok(()) => 0,
            Err(e) => fail(-e),
        }
    }
}

ffi_fn! {
    /// `int bpf_xdp_detach(int ifindex, __u32 flags, const struct bpf_xdp_attach_opts *opts)`
    ///
    /// # Safety
    /// `opts` NULL or valid.
    pub unsafe fn bpf_xdp_detach(ifindex: c_int, flags: u32, opts: *const cabi::bpf_xdp_attach_opts) -> c_int {
        // SAFETY: caller contract.
        unsafe { bpf_xdp_attach(ifindex, -1, flags, opts) }
    }
}

/// Ends of `struct bpf_xdp_query_opts` fields (`OPTS_SET`).
mod xq_end {
    pub const PROG_ID: usize = 12;
    pub const DRV_PROG_ID: usize = 16;
    pub const HW_PROG_ID: usize = 20;
    pub const SKB_PROG_ID: usize = 24;
    pub const ATTACH_MODE: usize = 25;
    pub const FEATURE_FLAGS: usize = 40;
    pub const ZC_MAX_SEGS: usize = 44;
}

ffi_fn! {
    /// `int bpf_xdp_query(int ifindex, int flags, struct bpf_xdp_query_opts *opts)`
    ///
    /// # Safety
    /// `opts` NULL or valid.
    pub unsafe fn bpf_xdp_query(ifindex: c_int, xdp_flags: c_int, opts: *mut cabi::bpf_xdp_query_opts) -> c_int {
        // SAFETY: caller contract.
        if let Err(e) = unsafe { read_opts(opts.cast_const()) } {
            return fail(e.errno());
        }
        let flags = xdp_flags as u32;
        if flags & !netlink::XDP_FLAGS_MASK != 0 {
            return fail(libc::EINVAL);
        }
        let modes = flags & netlink::XDP_FLAGS_MODES;
        if modes & modes.wrapping_sub(1) != 0 {
            return fail(libc::EINVAL);
        }
        let info = match netlink::xdp_query(ifindex, &mut nl_warn) {
            Ok(i) => i,
            Err(e) => return fail(-e),
        };
        if opts.is_null() {
            return 0;
        }
        // SAFETY: a valid opts struct of `sz` bytes (caller contract);
        // every field is written only when `sz` covers it.
        unsafe {
            let has = move |end| opts_has(opts, end);
            if has(xq_end::PROG_ID) {
                std::ptr::addr_of_mut!((*opts).prog_id).write_unaligned(info.prog_id);
            }
            if has(xq_end::DRV_PROG_ID) {
                std::ptr::addr_of_mut!((*opts).drv_prog_id).write_unaligned(info.drv_prog_id);
            }
            if has(xq_end::HW_PROG_ID) {
                std::ptr::addr_of_mut!((*opts).hw_prog_id).write_unaligned(info.hw_prog_id);
            }
            if has(xq_end::SKB_PROG_ID) {
                std::ptr::addr_of_mut!((*opts).skb_prog_id).write_unaligned(info.skb_prog_id);
            }
            if has(xq_end::ATTACH_MODE) {
                std::ptr::addr_of_mut!((*opts).attach_mode).write_unaligned(info.attach_mode);
            }
            if !has(xq_end::FEATURE_FLAGS) {
                return 0;
            }
            match netlink::xdp_features(ifindex, &mut nl_warn) {
                Ok(None) => {
                    std::ptr::addr_of_mut!((*opts).feature_flags).write_unaligned(0);
                }
                Ok(Some((features, zc))) => {
                    std::ptr::addr_of_mut!((*opts).feature_flags).write_unaligned(features);
                    if has(xq_end::ZC_MAX_SEGS) {
                        std::ptr::addr_of_mut!((*opts).xdp_zc_max_segs).write_unaligned(zc);
                    }
                }
                Err(e) => return fail(-e),
            }
        }
        0
    }
}

ffi_fn! {
    /// `int bpf_xdp_query_id(int ifindex, int flags, __u32 *prog_id)`
    ///
    /// # Safety
    /// `prog_id` writable.
    pub unsafe fn bpf_xdp_query_id(ifindex: c_int, flags: c_int, prog_id: *mut u32) -> c_int {
        let mut o = cabi::bpf_xdp_query_opts {
            sz: std::mem::size_of::<cabi::bpf_xdp_query_opts>(),
            ..Default::default()
        };
        // SAFETY: a complete opts struct.
        let r = unsafe { bpf_xdp_query(ifindex, flags, &mut o) };
        if r != 0 {
            return r;
        }
        if prog_id.is_null() {
            return fail(libc::EINVAL);
        }
        let modes = flags as u32 & netlink::XDP_FLAGS_MODES;
        let id = if o.attach_mode != netlink::XDP_ATTACHED_MULTI && modes == 0 {
            o.prog_id
        } else if modes & netlink::XDP_FLAGS_DRV_MODE != 0 {
            o.drv_prog_id
        } else if modes & netlink::XDP_FLAGS_HW_MODE != 0 {
            o.hw_prog_id
        } else if modes & netlink::XDP_FLAGS_SKB_MODE != 0 {
            o.skb_prog_id
        } else {
            0
        };
        // SAFETY: caller contract.
        unsafe { *prog_id = id };
        0
    }
}

// ---------------------------------------------------------------------------
// TC by netlink (libbpf's netlink.c)
// ---------------------------------------------------------------------------

plain_opts!(bpf_tc_hook, bpf_tc_opts);

/// Reads a `bpf_tc_hook` (NULL: EINVAL, as libbpf).
///
/// # Safety
/// `hook` NULL or valid, its `qdisc` NULL or a C string.
unsafe fn read_hook(hook: *const cabi::bpf_tc_hook) -> Result<netlink::TcHook, i32> {
    if hook.is_null() {
        return Err(libc::EINVAL);
    }
    // SAFETY: caller contract.
    let h = unsafe { read_opts(hook) }
        .map_err(|e| e.errno())?
        .unwrap_or_default();
    Ok(netlink::TcHook {
        ifindex: h.ifindex,
        attach_point: h.attach_point,
        parent: h.parent,
        handle: h.handle,
        // SAFETY: NULL or a C string (caller contract).
        qdisc: unsafe { opt_str(h.qdisc) },
    })
}

/// Reads a `bpf_tc_opts` (NULL: all zero).
///
/// # Safety
/// `opts` NULL or valid.
unsafe fn read_tc_opts(opts: *const cabi::bpf_tc_opts) -> Result<netlink::TcOpts, i32> {
    // SAFETY: caller contract.
    let o = unsafe { read_opts(opts) }
        .map_err(|e| e.errno())?
        .unwrap_or_default();
    Ok(netlink::TcOpts {
        prog_fd: o.prog_fd,
        flags: o.flags,
        prog_id: o.prog_id,
        handle: o.handle,
        priority: o.priority,
    })
}

/// `OPTS_SET` of `prog_id`, `handle` and `priority`.
///
/// # Safety
/// `opts` valid for its `sz` bytes.
unsafe fn write_tc_opts(opts: *mut cabi::bpf_tc_opts, o: &netlink::TcOpts) {
    // SAFETY: caller contract; each field written only when `sz` covers it.
    unsafe {
        if opts_has(opts, 20) {
            std::ptr::addr_of_mut!((*opts).prog_id).write_unaligned(o.prog_id);
        }
        if opts_has(opts, 24) {
            std::ptr::addr_of_mut!((*opts).handle).write_unaligned(o.handle);
        }
        if opts_has(opts, 28) {
            std::ptr::addr_of_mut!((*opts).priority).write_unaligned(o.priority);
        }
    }
}

fn nl_result(r: Result<(), i32>) -> c_int {
    match r {
        Ok(()) => 0,
        Err(e) => fail(-e),
    }
}

ffi_fn! {
    /// `int bpf_tc_hook_create(struct bpf_tc_hook *hook)`: a clsact (or the
    /// named) qdisc, `RTM_NEWQDISC` with `NLM_F_EXCL`.
    ///
    /// # Safety
    /// `hook` NULL or valid.
    pub unsafe fn bpf_tc_hook_create(hook: *mut cabi::bpf_tc_hook) -> c_int {
        // SAFETY: caller contract.
        let h = match unsafe { read_hook(hook) } {
            Ok(h) if h.ifindex > 0 => h,
            Ok(_) => return fail(libc::EINVAL),
            Err(e) => return fail(e),
        };
        nl_result(netlink::tc_hook_create(&h, &mut nl_warn))
    }
}

ffi_fn! {
    /// `int bpf_tc_hook_destroy(struct bpf_tc_hook *hook)`
    ///
    /// # Safety
    /// `hook` NULL or valid.
    pub unsafe fn bpf_tc_hook_destroy(hook: *mut cabi::bpf_tc_hook) -> c_int {
        // SAFETY: caller contract.
        let h = match unsafe { read_hook(hook) } {
            Ok(h) if h.ifindex > 0 => h,
            Ok(_) => return fail(libc::EINVAL),
            Err(e) => return fail(e),
        };
        nl_result(netlink::tc_hook_destroy(&h, &mut nl_warn))
    }
}

ffi_fn! {
    /// `int bpf_tc_attach(const struct bpf_tc_hook *hook, struct bpf_tc_opts *opts)`:
    /// a cls_bpf filter in direct-action mode; `opts` gets its program
    /// id, handle and priority.
    ///
    /// # Safety
    /// `hook` and `opts` NULL or valid.
    pub unsafe fn bpf_tc_attach(hook: *const cabi::bpf_tc_hook, opts: *mut cabi::bpf_tc_opts) -> c_int {
        if opts.is_null() {
            return fail(libc::EINVAL);
        }
        // SAFETY: caller contract.
        let h = match unsafe { read_hook(hook) } {
            Ok(h) => h,
            Err(e) => return fail(e),
        };
        // SAFETY: caller contract.
        let o = match unsafe { read_tc_opts(opts) } {
            Ok(o) => o,
            Err(e) => return fail(e),
        };
        if o.prog_fd > 0 {
            if let Err(e) = refuse_user_prog_fd("bpf_tc_attach", o.prog_fd) {
                return fail(e);
            }
        }
        match netlink::tc_attach(&h, &o, kattach::prog_name_id, &mut nl_warn) {
            Ok(out) => {
                // SAFETY: a valid opts struct (caller contract).
                unsafe { write_tc_opts(opts, &out) };
                0
            }
            Err(e) => fail(-e),
        }
    }
}

ffi_fn! {
    /// `int bpf_tc_detach(const struct bpf_tc_hook *hook, const struct bpf_tc_opts *opts)`
    ///
    /// # Safety
    /// `hook` and `opts` NULL or valid.
    pub unsafe fn bpf_tc_detach(hook: *const cabi::bpf_tc_hook, opts: *const cabi::bpf_tc_opts) -> c_int {
        if opts.is_null() {
            return fail(libc::EINVAL);
        }
        // SAFETY: caller contract.
        let h = match unsafe { read_hook(hook) } {
            Ok(h) => h,
            Err(e) => return fail(e),
        };
        // SAFETY: caller contract.
        let o = match unsafe { read_tc_opts(opts) } {
            Ok(o) => o,
            Err(e) => return fail(e),
        };
        nl_result(netlink::tc_detach(&h, &o, false, &mut nl_warn))
    }
}

ffi_fn! {
    /// `int bpf_tc_query(const struct bpf_tc_hook *hook, struct bpf_tc_opts *opts)`
    ///
    /// # Safety
    /// `hook` and `opts` NULL or valid.
    pub unsafe fn bpf_tc_query(hook: *const cabi::bpf_tc_hook, opts: *mut cabi::bpf_tc_opts) -> c_int {
        if opts.is_null() {
            return fail(libc::EINVAL);
        }
        // SAFETY: caller contract.
        let h = match unsafe { read_hook(hook) } {
            Ok(h) => h,
            Err(e) => return fail(e),
        };
        // SAFETY: caller contract.
        let o = match unsafe { read_tc_opts(opts) } {
            Ok(o) => o,
            Err(e) => return fail(e),
        };
        match netlink::tc_query(&h, &o, &mut nl_warn) {
            Ok(out) => {
                // SAFETY: a valid opts struct (caller contract).
                unsafe { write_tc_opts(opts, &out) };
                0
            }
            Err(e) => fail(-e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanners() {
        assert_eq!(scan_set("do_nanosleep+0x10", "_."), "do_nanosleep");
        assert_eq!(scan_set("+1", "_."), "");
        assert_eq!(scan_set("tcp_*?x/y", "_.*?"), "tcp_*?x");
        assert_eq!(scan_long("0x10"), Some(16));
        assert_eq!(scan_long("010"), Some(8));
        assert_eq!(scan_long("12abc"), Some(12));
        assert_eq!(scan_long("-5"), Some(-5));
        assert_eq!(scan_long("zz"), None);
        assert_eq!(scan_long("0"), Some(0));
    }
}
