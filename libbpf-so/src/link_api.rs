//! `struct bpf_link`: what attaching returns, and auto-attach by section
//! name.
//!
//! A link owns a detach action and a real fd (so `bpf_link__fd` and
//! `close` behave); `bpf_link__destroy` detaches unless the link was
//! disconnected, then frees it.

#![allow(non_snake_case)]

use std::ffi::{c_char, c_int, CString};
use std::os::fd::{AsRawFd, OwnedFd};

use userbpf_libbpf_compat::object::AttachHandler;

use crate::abi::FfiReturn;
use crate::ffi_fn;
use crate::object_api::{errno_err, handle, program, ret, ProgramHandle};
use crate::print;

/// What detaching a link does; run at most once.
pub type DetachFn = Box<dyn FnOnce() -> Result<(), i32> + Send>;

/// libbpf's `struct bpf_link` (opaque to C).
pub struct LinkHandle {
    detach: Option<DetachFn>,
    fd: OwnedFd,
    pin_path: Option<CString>,
    disconnected: bool,
}

impl std::fmt::Debug for LinkHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkHandle")
            .field("fd", &self.fd)
            .field("disconnected", &self.disconnected)
            .finish()
    }
}

impl LinkHandle {
    /// A new link handed to C.
    pub fn into_raw(fd: OwnedFd, detach: DetachFn) -> *mut LinkHandle {
        Box::into_raw(Box::new(LinkHandle {
            detach: Some(detach),
            fd,
            pin_path: None,
            disconnected: false,
        }))
    }

    fn run_detach(&mut self) -> Result<(), i32> {
        match self.detach.take() {
            Some(f) => f(),
            None => Ok(()),
        }
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

/// `bpf_program__attach` for one skeleton program: `Ok(None)` when the
/// program has nothing to auto-attach, else the link or a positive errno.
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
    /// `struct bpf_link *bpf_program__attach(const struct bpf_program *prog)`
    ///
    /// # Safety
    /// `prog` NULL or a live program.
    pub unsafe fn bpf_program__attach(prog: *const ProgramHandle) -> *mut LinkHandle {
        // SAFETY: caller contract.
        let result = unsafe { handle(prog) }.and_then(|p| {
            if p.fd < 0 {
                print::warn(&format!(
                    "prog '{}': can't attach BPF program without FD (was it loaded?)\n",
                    p.name.to_string_lossy()
                ));
                return Err(errno_err(libc::EINVAL));
            }
            // SAFETY: a live program handle.
            match unsafe { auto_attach(prog as *mut ProgramHandle) } {
                Ok(Some(link)) => Ok(link),
                Ok(None) => {
                    print::warn(&format!(
                        "prog '{}': no section-defined auto-attach for '{}'\n",
                        p.name.to_string_lossy(),
                        p.sec_name.to_string_lossy()
                    ));
                    Err(errno_err(libc::EOPNOTSUPP))
                }
                Err(e) => Err(errno_err(e)),
            }
        });
        ret(result)
    }
}

ffi_fn! {
    /// `int bpf_link__destroy(struct bpf_link *link)`: NULL and `ERR_PTR`s
    /// are ignored; a disconnected link is freed without detaching.
    ///
    /// # Safety
    /// `link` NULL, an `ERR_PTR`, or a link not destroyed yet.
    pub unsafe fn bpf_link__destroy(link: *mut LinkHandle) -> c_int {
        if is_err_or_null(link) {
            return 0;
        }
        // SAFETY: came from LinkHandle::into_raw (caller contract).
        let mut l = unsafe { Box::from_raw(link) };
        let result = if l.disconnected { Ok(()) } else { l.run_detach() };
        drop(l);
        match result {
            Ok(()) => 0,
            Err(e) => c_int::from_error(&errno_err(e)),
        }
    }
}

ffi_fn! {
    /// `int bpf_link__detach(struct bpf_link *link)`: detaches now; the
    /// link stays allocated until `bpf_link__destroy`.
    ///
    /// # Safety
    /// `link` NULL or live.
    pub unsafe fn bpf_link__detach(link: *mut LinkHandle) -> c_int {
        // SAFETY: caller contract.
        let Some(l) = (unsafe { link.as_mut() }) else {
            return c_int::from_error(&errno_err(libc::EINVAL));
        };
        match l.run_detach() {
            Ok(()) => 0,
            Err(e) => c_int::from_error(&errno_err(e)),
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
