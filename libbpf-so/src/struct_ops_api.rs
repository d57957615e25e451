//! struct_ops maps: `bpf_map__attach_struct_ops` and
//! `bpf_program__assoc_struct_ops` (libbpf 1.8), kernel-only as in
//! libbpf. The object's struct_ops maps and programs are loaded by the
//! kernel backend (`backend::kernel::struct_ops`), which keeps each map's
//! value with its program fds (libbpf's `kern_vdata`); attaching
//! registers it: the map update alone for `SEC(".struct_ops")`, then a
//! `BPF_LINK_CREATE` link for `SEC(".struct_ops.link")`.

#![allow(non_snake_case)]

use std::ffi::c_int;
use std::os::fd::{AsRawFd, OwnedFd};

use userbpf_libbpf_compat::backend::kernel::attach::KernelLink;
use userbpf_libbpf_compat::backend::kernel::struct_ops::{self, Registration};
use userbpf_libbpf_compat::object::{MapType, ProgType};

use crate::error::AbiError;
use crate::ffi_fn;
use crate::link_api::LinkHandle;
use crate::object_api::{errno_err, handle, map_def, program, ret, MapHandle, ProgramHandle};
use crate::print;

/// The map's value with program fds, if the kernel backend created it.
///
/// # Safety
/// `m` must be a live map handle.
unsafe fn kern_vdata(m: &MapHandle) -> Option<Vec<u8>> {
    // SAFETY: a map handle lives inside its (live) object.
    let o = unsafe { &*m.obj };
    o.loaded
        .as_ref()
        .and_then(|l| l.kernel.struct_ops.get(m.idx))
        .and_then(Clone::clone)
}

fn dup(fd: c_int) -> Result<OwnedFd, AbiError> {
    // SAFETY: F_DUPFD_CLOEXEC on an fd this process holds.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if new < 0 {
        return Err(errno_err(
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EBADF),
        ));
    }
    // SAFETY: `new` is a fresh fd this process owns.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(new) })
}

/// `bpf_map__attach_struct_ops` for a live map handle.
///
/// # Safety
/// `m` must be a live map handle.
unsafe fn attach_struct_ops(m: &MapHandle) -> Result<*mut LinkHandle, AbiError> {
    let name = m.name.to_string_lossy();
    // SAFETY: caller contract.
    let def = unsafe { map_def(m) };
    if def.map_type() != MapType::STRUCT_OPS {
        print::warn(&format!("map '{name}': can't attach non-struct_ops map\n"));
        return Err(errno_err(libc::EINVAL));
    }
    // libbpf's maps have a (placeholder) fd from open on, so its "without
    // FD" message never shows: a map not created in the kernel (before
    // load, left out by autocreate) gets the kernel's EINVAL for an fd
    // that is not a map.
    // SAFETY: caller contract.
    let Some(vdata) = (unsafe { kern_vdata(m) }) else {
        return Err(errno_err(libc::EINVAL));
    };
    match struct_ops::register(m.fd, def.map_flags(), &vdata).map_err(errno_err)? {
        Registration::Map => {
            // libbpf's link "without a real link": its fd is the map's,
            // and detaching deletes the value (unregisters).
            let fd = dup(m.fd)?;
            let map_fd = dup(m.fd)?;
            Ok(LinkHandle::into_raw(
                fd,
                Box::new(move || struct_ops::unregister_map(map_fd.as_raw_fd())),
            ))
        }
        Registration::Link(fd) => Ok(LinkHandle::kernel_into_raw(fd, KernelLink::plain())),
    }
}

ffi_fn! {
    /// `struct bpf_link *bpf_map__attach_struct_ops(const struct bpf_map *map)`:
    /// registers a loaded struct_ops map with the kernel. For
    /// `SEC(".struct_ops")` the map update registers it and the link's
    /// destroy deletes the value; for `SEC(".struct_ops.link")` (EBUSY from
    /// the update is fine: the value was set before) the link is a
    /// `BPF_LINK_TYPE_STRUCT_OPS` kernel link.
    ///
    /// # Safety
    /// `map` NULL or a live map.
    pub unsafe fn bpf_map__attach_struct_ops(map: *const MapHandle) -> *mut LinkHandle {
        // SAFETY: caller contract.
        let result = unsafe { handle(map) }.and_then(|m| {
            // SAFETY: a live map handle.
            unsafe { attach_struct_ops(m) }
        });
        ret(result)
    }
}

/// The kernel half of `bpf_link__update_map` for `link_fd` (a link
/// handle's fd) and a live struct_ops map: EINVAL for a map that is not
/// struct_ops, or when `link_fd` is not a real struct_ops link (a
/// `.struct_ops` map's link); else the new map's value update then
/// `BPF_LINK_UPDATE`.
///
/// # Safety
/// `m` must be a live map handle.
pub unsafe fn link_update_map(link_fd: c_int, m: &MapHandle) -> Result<(), AbiError> {
    // SAFETY: caller contract.
    let def = unsafe { map_def(m) };
    if def.map_type() != MapType::STRUCT_OPS {
        return Err(errno_err(libc::EINVAL));
    }
    if m.fd < 0 {
        print::warn(&format!(
            "map '{}': can't use BPF map without FD (was it created?)\n",
            m.name.to_string_lossy()
        ));
        return Err(errno_err(libc::EINVAL));
    }
    use userbpf_libbpf_compat::backend::kernel::sys::{kernel_fd_kind, KernelFdKind};
    if kernel_fd_kind(link_fd) != Some(KernelFdKind::Link) {
        return Err(errno_err(libc::EINVAL));
    }
    // SAFETY: caller contract.
    let Some(vdata) = (unsafe { kern_vdata(m) }) else {
        return Err(errno_err(libc::EINVAL));
    };
    struct_ops::update_link_map(link_fd, m.fd, &vdata).map_err(errno_err)
}

ffi_fn! {
    /// `int bpf_program__assoc_struct_ops(struct bpf_program *prog, struct bpf_map *map, struct bpf_prog_assoc_struct_ops_opts *opts)`
    /// (libbpf 1.8): libbpf's checks, then `bpf_prog_assoc_struct_ops`
    /// (the kernel's `BPF_PROG_ASSOC_STRUCT_OPS`, which kernels before it
    /// refuse with EINVAL).
    ///
    /// # Safety
    /// `prog` and `map` NULL or live; `opts` NULL or valid.
    pub unsafe fn bpf_program__assoc_struct_ops(
        prog: *mut ProgramHandle,
        map: *mut MapHandle,
        opts: *mut crate::cabi::bpf_prog_assoc_struct_ops_opts,
    ) -> c_int {
        // SAFETY: caller contract.
        let checked = unsafe { handle(prog.cast_const()) }.and_then(|p| {
            // SAFETY: caller contract.
            let m = unsafe { handle(map.cast_const()) }?;
            if p.fd < 0 {
                print::warn(&format!(
                    "prog '{}': can't associate BPF program without FD (was it loaded?)\n",
                    p.name.to_string_lossy()
                ));
                return Err(errno_err(libc::EINVAL));
            }
            // SAFETY: a live program handle.
            if unsafe { program(p) }.is_some_and(|bp| bp.prog_type() == ProgType::STRUCT_OPS) {
                print::warn(&format!(
                    "prog '{}': can't associate struct_ops program\n",
                    p.name.to_string_lossy()
                ));
                return Err(errno_err(libc::EINVAL));
            }
            if m.fd < 0 || m.placeholder.is_some() {
                print::warn(&format!(
                    "map '{}': can't associate BPF map without FD (was it created?)\n",
                    m.name.to_string_lossy()
                ));
                return Err(errno_err(libc::EINVAL));
            }
            // SAFETY: a live map handle.
            if unsafe { map_def(m) }.map_type() != MapType::STRUCT_OPS {
                print::warn(&format!(
                    "map '{}': can't associate non-struct_ops map\n",
                    m.name.to_string_lossy()
                ));
                return Err(errno_err(libc::EINVAL));
            }
            Ok((p.fd, m.fd))
        });
        match checked {
            // SAFETY: `opts` is the caller's (NULL or valid).
            Ok((prog_fd, map_fd)) => unsafe {
                crate::bpf_api::bpf_prog_assoc_struct_ops(prog_fd, map_fd, opts)
            },
            Err(e) => ret(Err(e)),
        }
    }
}
