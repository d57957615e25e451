//! `struct bpf_link`: what attaching returns, auto-attach by section
//! name, and link pins.
//!
//! A link handle owns a real fd (so `bpf_link__fd` and `close` behave)
//! and a reference to the link itself ([`LinkCore`]: its detach action).
//! User-space links (uprobes, USDT, and the syscall links of
//! `syscall_attach_api`: syscall tracepoints, raw_tp `sys_enter`/`sys_exit`,
//! ksyscalls) detach by removing their registry records.
//!
//! Kernel links (programs the kernel runs: tracepoints, raw tracepoints,
//! tracing and LSM programs, perf events, ...) are libbpf's own links: the
//! handle owns the kernel link fd (or, for a perf event attached by ioctl,
//! the perf event fd) and what else the attach made
//! ([`KernelLink`]); destroying it closes them (libbpf's
//! `bpf_link__detach_fd` / `bpf_link_perf_detach`), and pins, detach,
//! update and open go to the kernel (`BPF_OBJ_PIN` into the real bpffs,
//! `BPF_LINK_DETACH`, `BPF_LINK_UPDATE`, `BPF_OBJ_GET`).
//! As in the kernel, the link detaches when its last reference goes: the
//! handles made by attach and by `bpf_link__open`, and the pins of this
//! process (`bpf_link__pin`, held by `pin_api`). So a pinned link stays
//! attached after `bpf_link__destroy` of its handle, until it is unpinned
//! and every handle is destroyed, or until the pinning process exits: a
//! pin lives as long as the process that made it, as map and program pins
//! do (see `bpf_api`).

#![allow(non_snake_case)]

use std::ffi::{c_char, c_int, CString};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::sync::{Arc, Mutex};

use userbpf_libbpf_compat::backend::kernel::attach::{self as kattach, KernelLink};
use userbpf_libbpf_compat::backend::kernel::sys::{self as ksys, KernelFdKind};
use userbpf_libbpf_compat::object::AttachHandler;

use crate::abi::FfiReturn;
use crate::ffi_fn;
use crate::object_api::{errno_err, handle, opt_str, program, ret, ProgramHandle};
use crate::print;

/// What detaching a link does; run at most once.
pub type DetachFn = Box<dyn FnOnce() -> Result<(), i32> + Send>;

/// A link itself, shared by its handles and pins: detaches when the last
/// reference drops (or earlier, on `bpf_link__detach`).
pub struct LinkCore {
    detach: Mutex<Option<DetachFn>>,
}

impl LinkCore {
    fn new(detach: DetachFn) -> Arc<LinkCore> {
        Arc::new(LinkCore {
            detach: Mutex::new(Some(detach)),
        })
    }

    /// Runs the detach action unless it ran already.
    fn detach_now(&self) -> Result<(), i32> {
        let f = self.detach.lock().unwrap_or_else(|e| e.into_inner()).take();
        f.map_or(Ok(()), |f| f())
    }
}

impl Drop for LinkCore {
    fn drop(&mut self) {
        // The last reference is gone (a handle destroyed, a pin removed):
        // the link detaches, as the kernel frees a link.
        let _ = self.detach_now();
    }
}

impl std::fmt::Debug for LinkCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkCore").finish_non_exhaustive()
    }
}

/// libbpf's `struct bpf_link` (opaque to C).
pub struct LinkHandle {
    /// `None` for a handle `bpf_link__open` made of a link another
    /// process pinned (that process holds the link; this handle has an fd
    /// of it), or of a pinned map or program (libbpf wraps whatever fd
    /// `bpf_obj_get` returns).
    core: Option<Arc<LinkCore>>,
    fd: OwnedFd,
    pin_path: Option<CString>,
    disconnected: bool,
    /// A kernel link: what detaching it closes besides `fd` (then `core`
    /// is `None`).
    kernel: Option<KernelLink>,
}

impl std::fmt::Debug for LinkHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkHandle")
            .field("fd", &self.fd)
            .field("pin_path", &self.pin_path)
            .field("disconnected", &self.disconnected)
            .field("kernel", &self.kernel)
            .finish()
    }
}

impl LinkHandle {
    /// A new link handed to C.
    pub fn into_raw(fd: OwnedFd, detach: DetachFn) -> *mut LinkHandle {
        Self::boxed(fd, Some(LinkCore::new(detach)), None)
    }

    /// A new kernel link handed to C: `fd` is what `bpf_link__fd` returns.
    pub fn kernel_into_raw(fd: OwnedFd, kernel: KernelLink) -> *mut LinkHandle {
        Self::kernel_boxed(fd, kernel, None)
    }

    fn kernel_boxed(fd: OwnedFd, kernel: KernelLink, pin_path: Option<CString>) -> *mut LinkHandle {
        Box::into_raw(Box::new(LinkHandle {
            core: None,
            fd,
            pin_path,
            disconnected: false,
            kernel: Some(kernel),
        }))
    }

    fn boxed(
        fd: OwnedFd,
        core: Option<Arc<LinkCore>>,
        pin_path: Option<CString>,
    ) -> *mut LinkHandle {
        Box::into_raw(Box::new(LinkHandle {
            core,
            fd,
            pin_path,
            disconnected: false,
            kernel: None,
        }))
    }
}

/// Linux's `MAX_ERRNO`: `IS_ERR_OR_NULL` pointers.
const MAX_ERRNO: usize = 4095;

fn is_err_or_null<T>(p: *const T) -> bool {
    p.is_null() || p as usize >= MAX_ERRNO.wrapping_neg()
}

/// Sections that name no target: libbpf's attach handlers return "no
/// link, no error" for them (`SEC("uprobe")` is attached by hand).
fn names_no_target(handler: AttachHandler, sec_name: &str, prefix: &str) -> bool {
    use AttachHandler::*;
    let stem = prefix.trim_end_matches(['+', '/']);
    let bare = sec_name == stem;
    bare && matches!(
        handler,
        Kprobe
            | Uprobe
            | KprobeMulti
            | KprobeSession
            | UprobeMulti
            | Ksyscall
            | Usdt
            | Tracepoint
            | RawTracepoint
    )
}

/// The skeleton's auto-attach of one program (libbpf's
/// `bpf_object__attach_skeleton` loop): `Ok(None)` when the program is
/// not loaded or not auto-attached, or has nothing to auto-attach; else
/// the link or a positive errno.
///
/// # Safety
/// `prog` must be a live program handle.
pub(crate) unsafe fn auto_attach(prog: *mut ProgramHandle) -> Result<Option<*mut LinkHandle>, i32> {
    // SAFETY: caller contract.
    let p = unsafe { &*prog };
    // SAFETY: a live program handle.
    let Some(bp) = (unsafe { program(p) }) else {
        return Err(libc::EINVAL);
    };
    if !bp.autoload() || !bp.autoattach() {
        return Ok(None);
    }
    // SAFETY: caller contract.
    unsafe { attach_by_section(prog) }
}

/// The section definition's attach handler (`prog_attach_fn`) of one
/// program: `Ok(None)` when the section names no target.
///
/// # Safety
/// `prog` must be a live program handle.
unsafe fn attach_by_section(prog: *mut ProgramHandle) -> Result<Option<*mut LinkHandle>, i32> {
    // SAFETY: caller contract.
    let p = unsafe { &*prog };
    // SAFETY: a live program handle.
    let Some(bp) = (unsafe { program(p) }) else {
        return Err(libc::EINVAL);
    };
    let Some(def) = bp.sec_def() else {
        return Ok(None);
    };
    let Some(handler) = def.attach_handler else {
        return Ok(None);
    };
    if names_no_target(handler, bp.section_name(), def.prefix) {
        return Ok(None);
    }
    match handler {
        AttachHandler::Uprobe => return crate::attach_api::auto_attach_uprobe(p),
        AttachHandler::UprobeMulti => return crate::attach_api::auto_attach_uprobe_multi(p),
        // SAFETY: a live program handle (caller contract).
        AttachHandler::Usdt => return unsafe { crate::usdt_api::auto_attach_usdt(prog) },
        AttachHandler::Kprobe
        | AttachHandler::Ksyscall
        | AttachHandler::KprobeMulti
        | AttachHandler::KprobeSession
        | AttachHandler::Tracepoint
        | AttachHandler::RawTracepoint
        | AttachHandler::Trace
        | AttachHandler::Lsm
        | AttachHandler::Iter => {
            return crate::kernel_attach_api::auto_attach_kernel(p, handler);
        }
        _ => {}
    }
    print::warn(&format!(
        "prog '{}': attaching '{}' programs is not supported by userbpf yet\n",
        bp.name(),
        bp.section_name()
    ));
    Err(libc::EOPNOTSUPP)
}

ffi_fn! {
    /// `struct bpf_link *bpf_program__attach(const struct bpf_program *prog)`:
    /// libbpf 1.7's order: EOPNOTSUPP (silently) when the section has no
    /// attach handler, then the "without FD" check, then the handler; a
    /// handler that attaches nothing (a section without a target) is
    /// EOPNOTSUPP too. `autoattach` is the skeleton's business only.
    ///
    /// # Safety
    /// `prog` NULL or a live program.
    pub unsafe fn bpf_program__attach(prog: *const ProgramHandle) -> *mut LinkHandle {
        // SAFETY: caller contract.
        let result = unsafe { handle(prog) }.and_then(|p| {
            // SAFETY: a live program handle.
            let handled = unsafe { program(p) }
                .and_then(|bp| bp.sec_def())
                .is_some_and(|d| d.attach_handler.is_some());
            if !handled {
                return Err(errno_err(libc::EOPNOTSUPP));
            }
            if p.fd < 0 {
                print::warn(&format!(
                    "prog '{}': can't attach BPF program without FD (was it loaded?)\n",
                    p.name.to_string_lossy()
                ));
                return Err(errno_err(libc::EINVAL));
            }
            // SAFETY: a live program handle.
            match unsafe { attach_by_section(prog as *mut ProgramHandle) } {
                Ok(Some(link)) => Ok(link),
                Ok(None) => Err(errno_err(libc::EOPNOTSUPP)),
                Err(e) => Err(errno_err(e)),
            }
        });
        ret(result)
    }
}

fn fail(e: i32) -> c_int {
    c_int::from_error(&errno_err(e))
}

ffi_fn! {
    /// `int bpf_link__destroy(struct bpf_link *link)`: NULL and `ERR_PTR`s
    /// are ignored. Drops this handle's reference to the link (which
    /// detaches if that was the last one: not while it is pinned) and
    /// closes its fd. A disconnected link keeps both: libbpf skips the
    /// detach and leaves the fd open, so the link lives until the process
    /// exits.
    ///
    /// # Safety
    /// `link` NULL, an `ERR_PTR`, or a link not destroyed yet.
    pub unsafe fn bpf_link__destroy(link: *mut LinkHandle) -> c_int {
        if is_err_or_null(link) {
            return 0;
        }
        // SAFETY: came from LinkHandle::boxed (caller contract).
        let l = unsafe { Box::from_raw(link) };
        let LinkHandle { core, fd, disconnected, kernel, .. } = *l;
        if disconnected {
            std::mem::forget(core);
            std::mem::forget(kernel);
            let _ = fd.into_raw_fd();
            return 0;
        }
        if let Some(k) = kernel {
            return match k.detach(fd) {
                Ok(()) => 0,
                Err(e) => fail(e),
            };
        }
        let result = match core.map(Arc::try_unwrap) {
            Some(Ok(last)) => last.detach_now(),
            // A pin or another handle of this process keeps the link.
            Some(Err(shared)) => {
                drop(shared);
                Ok(())
            }
            None => Ok(()),
        };
        drop(fd);
        crate::pin_api::sweep_link_pins();
        match result {
            Ok(()) => 0,
            Err(e) => fail(e),
        }
    }
}

ffi_fn! {
    /// `int bpf_link__detach(struct bpf_link *link)`: detaches now, pinned
    /// or not; the handle stays allocated until `bpf_link__destroy`.
    ///
    /// # Safety
    /// `link` NULL or live.
    pub unsafe fn bpf_link__detach(link: *mut LinkHandle) -> c_int {
        // SAFETY: caller contract.
        let Some(l) = (unsafe { link.as_mut() }) else {
            return fail(libc::EINVAL);
        };
        if l.kernel.is_some() {
            // libbpf: `bpf_link_detach(link->fd) ? -errno : 0`.
            return match kattach::link_detach(l.fd.as_raw_fd()) {
                Ok(()) => 0,
                Err(e) => fail(e),
            };
        }
        // The link of another process (opened from its pin) cannot be
        // detached from here; the kernel refuses it for perf links too.
        match l.core.as_ref().map_or(Err(libc::EOPNOTSUPP), |c| c.detach_now()) {
            Ok(()) => 0,
            Err(e) => fail(e),
        }
    }
}

ffi_fn! {
    /// `void bpf_link__disconnect(struct bpf_link *link)`
    ///
    /// # Safety
    /// `link` NULL or live.
    pub unsafe fn bpf_link__disconnect(link: *mut LinkHandle) {
        // SAFETY: caller contract.
        if let Some(l) = unsafe { link.as_mut() } {
            l.disconnected = true;
        }
    }
}

ffi_fn! {
    /// `int bpf_link__fd(const struct bpf_link *link)`
    ///
    /// # Safety
    /// `link` NULL or live.
    pub unsafe fn bpf_link__fd(link: *const LinkHandle) -> c_int {
        // SAFETY: caller contract.
        ret(unsafe { handle(link) }.map(|l| l.fd.as_raw_fd()))
    }
}

ffi_fn! {
    /// `const char *bpf_link__pin_path(const struct bpf_link *link)`
    ///
    /// # Safety
    /// `link` NULL or live.
    pub unsafe fn bpf_link__pin_path(link: *const LinkHandle) -> *const c_char {
        // SAFETY: caller contract.
        match unsafe { link.as_ref() } {
            Some(l) => l.pin_path.as_ref().map_or(std::ptr::null(), |p| p.as_ptr()),
            None => std::ptr::null(),
        }
    }
}

ffi_fn! {
    /// `int bpf_link__pin(struct bpf_link *link, const char *path)`: libbpf's
    /// checks (EBUSY when pinned already; the parent directory is made and
    /// must be on a bpffs, here the namespace's virtual one), then the pin
    /// holds the link until `bpf_link__unpin` or the end of this process.
    ///
    /// # Safety
    /// `link` NULL or live; `path` NULL or NUL-terminated.
    pub unsafe fn bpf_link__pin(link: *mut LinkHandle, path: *const c_char) -> c_int {
        // SAFETY: caller contract.
        let Some(l) = (unsafe { link.as_mut() }) else {
            return fail(libc::EINVAL);
        };
        if l.pin_path.is_some() {
            return fail(libc::EBUSY);
        }
        // SAFETY: caller contract.
        let Some(path) = (unsafe { opt_str(path) }) else {
            return fail(libc::EINVAL);
        };
        if l.kernel.is_some() {
            return match pin_kernel_link(l.fd.as_raw_fd(), &path) {
                Ok(()) => {
                    l.pin_path = CString::new(path).ok();
                    0
                }
                Err(e) => fail(e),
            };
        }
        if let Err(e) = crate::pin_api::prepare_link_pin_path(&path) {
            return fail(e);
        }
        let fd = l.fd.as_raw_fd();
        let Some(core) = &l.core else {
            // What this handle has is an fd of another process's link (or
            // of a map or program): there is no link here to hold.
            print::warn(&format!(
                "link fd={fd}: cannot pin a link opened from another process's pin (userbpf)\n"
            ));
            return fail(libc::EOPNOTSUPP);
        };
        if let Err(e) = crate::pin_api::pin_link(l.fd.as_fd(), core.clone(), &path) {
            return fail(e);
        }
        l.pin_path = CString::new(path.clone()).ok();
        print::debug(&format!("link fd={fd}: pinned at {path}\n"));
        0
    }
}

ffi_fn! {
    /// `int bpf_link__unpin(struct bpf_link *link)`: removes the pin at the
    /// link's pin path (EINVAL when it has none); the link detaches once
    /// its handles are destroyed too.
    ///
    /// # Safety
    /// `link` NULL or live.
    pub unsafe fn bpf_link__unpin(link: *mut LinkHandle) -> c_int {
        // SAFETY: caller contract.
        let Some(l) = (unsafe { link.as_mut() }) else {
            return fail(libc::EINVAL);
        };
        let Some(path) = l.pin_path.as_ref().map(|p| p.to_string_lossy().into_owned()) else {
            return fail(libc::EINVAL);
        };
        if l.kernel.is_some() {
            // libbpf: `unlink(link->pin_path)`, `-errno` on failure.
            if let Err(e) = std::fs::remove_file(&path) {
                let e = e.raw_os_error().unwrap_or(libc::EIO);
                crate::abi::set_errno(e);
                return -e;
            }
            print::debug(&format!(
                "link fd={}: unpinned from {path}\n",
                l.fd.as_raw_fd()
            ));
            l.pin_path = None;
            return 0;
        }
        if let Err(e) = crate::pin_api::unpin_link(&path) {
            return fail(e);
        }
        print::debug(&format!(
            "link fd={}: unpinned from {path}\n",
            l.fd.as_raw_fd()
        ));
        l.pin_path = None;
        0
    }
}

ffi_fn! {
    /// `struct bpf_link *bpf_link__open(const char *path)`: a new handle of
    /// the link pinned at `path`, with its own fd; destroying it drops only
    /// that reference. As libbpf (which wraps what `bpf_obj_get` returns),
    /// a pinned map or program is wrapped too.
    ///
    /// # Safety
    /// `path` NULL or NUL-terminated.
    pub unsafe fn bpf_link__open(path: *const c_char) -> *mut LinkHandle {
        // SAFETY: caller contract.
        let path = unsafe { opt_str(path) };
        if let Some(p) = &path {
            // A pin in the real bpffs: the kernel's object.
            if let Some(opened) = open_kernel_pin(p) {
                return match opened {
                    Ok(fd) => LinkHandle::kernel_boxed(fd, KernelLink::plain(), CString::new(p.as_str()).ok()),
                    Err(e) => {
                        print::warn(&format!("failed to open link at {p}: {}\n", -e));
                        <*mut LinkHandle>::from_error(&errno_err(e))
                    }
                };
            }
        }
        let opened = match &path {
            // The kernel's answer to a NULL pathname.
            None => Err(libc::EFAULT),
            Some(p) => match crate::pin_api::open_link(p) {
                Ok(Some((fd, core))) => Ok((fd, core)),
                Ok(None) => {
                    let c = CString::new(p.as_str()).map_err(|_| libc::EINVAL);
                    // SAFETY: a NUL-terminated path.
                    c.and_then(|c| match unsafe { crate::bpf_api::bpf_obj_get(c.as_ptr()) } {
                        // SAFETY: a fresh fd this call owns.
                        fd if fd >= 0 => Ok((unsafe { OwnedFd::from_raw_fd(fd) }, None)),
                        e => Err(-e),
                    })
                }
                Err(e) => Err(e),
            },
        };
        match opened {
            Ok((fd, core)) => {
                LinkHandle::boxed(fd, core, path.and_then(|p| CString::new(p).ok()))
            }
            Err(e) => {
                print::warn(&format!(
                    "failed to open link at {}: {}\n",
                    path.as_deref().unwrap_or("(null)"),
                    -e
                ));
                <*mut LinkHandle>::from_error(&errno_err(e))
            }
        }
    }
}

ffi_fn! {
    /// `int bpf_link__update_program(struct bpf_link *link, struct bpf_program *prog)`:
    /// the kernel's `BPF_LINK_UPDATE` has no `update_prog` for the links
    /// userbpf makes (perf-event uprobes, uprobe_multi; libbpf's USDT and
    /// perf-mode links have no link fd at all), so after its fd checks it
    /// fails with EINVAL.
    ///
    /// # Safety
    /// `link` NULL or live; `prog` NULL or live.
    pub unsafe fn bpf_link__update_program(link: *mut LinkHandle, prog: *mut ProgramHandle) -> c_int {
        // SAFETY: caller contract.
        let Some(p) = (unsafe { prog.as_ref() }) else {
            return fail(libc::EINVAL);
        };
        if p.fd < 0 {
            print::warn(&format!(
                "prog '{}': can't use BPF program without FD (was it loaded?)\n",
                p.name.to_string_lossy()
            ));
            return fail(libc::EINVAL);
        }
        // SAFETY: caller contract.
        let Some(l) = (unsafe { link.as_ref() }) else {
            return fail(libc::EINVAL);
        };
        let kernel_link = l.kernel.is_some()
            || ksys::kernel_fd_kind(l.fd.as_raw_fd()) == Some(KernelFdKind::Link);
        if kernel_link {
            let mut attr = ksys::LinkUpdateAttr {
                link_fd: l.fd.as_raw_fd() as u32,
                new_prog_fd: p.fd as u32,
                ..Default::default()
            };
            return match kattach::link_update(&mut attr) {
                Ok(()) => 0,
                Err(e) => fail(e),
            };
        }
        // link_update: the link fd, then the new program's fd, then the
        // link's update_prog operation (none: EINVAL).
        // SAFETY: F_GETFD on an fd number only reads its flags.
        if unsafe { libc::fcntl(l.fd.as_raw_fd(), libc::F_GETFD) } < 0
            // SAFETY: as above.
            || unsafe { libc::fcntl(p.fd, libc::F_GETFD) } < 0
        {
            return fail(libc::EBADF);
        }
        fail(libc::EINVAL)
    }
}

/// libbpf's `make_parent_dir`, `check_path` and `bpf_obj_pin` for a
/// kernel link: the pin is a real bpffs file.
fn pin_kernel_link(fd: i32, path: &str) -> Result<(), i32> {
    let dir = match path.trim_end_matches('/').rfind('/') {
        None => ".",
        Some(0) => "/",
        Some(i) => &path[..i],
    };
    if let Err(e) = std::fs::DirBuilder::new().mode(0o700).create(dir) {
        let e = e.raw_os_error().unwrap_or(libc::EIO);
        if e != libc::EEXIST {
            print::warn(&format!(
                "failed to mkdir {path}: {}\n",
                userbpf_libbpf_compat::errstr::errstr(-e)
            ));
            return Err(e);
        }
    }
    match kattach::statfs_is_bpffs(dir) {
        Err(e) => {
            print::warn(&format!(
                "failed to statfs {dir}: {}\n",
                userbpf_libbpf_compat::errstr::errstr(-e)
            ));
            return Err(e);
        }
        Ok(false) => {
            print::warn(&format!("specified path {path} is not on BPF FS\n"));
            return Err(libc::EINVAL);
        }
        Ok(true) => {}
    }
    kattach::obj_pin(fd, path)?;
    print::debug(&format!("link fd={fd}: pinned at {path}\n"));
    Ok(())
}

/// `BPF_OBJ_GET` of a pin in the real bpffs: `None` when `path` is not a
/// file there (userbpf's own pins live in the namespace's bpffs).
fn open_kernel_pin(path: &str) -> Option<Result<OwnedFd, i32>> {
    if !kattach::on_bpffs(path) || std::fs::symlink_metadata(path).is_err() {
        return None;
    }
    Some(kattach::obj_get(path))
}
