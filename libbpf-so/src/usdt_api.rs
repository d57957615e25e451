//! `bpf_program__attach_usdt` and USDT auto-attach (`SEC("usdt/...")`),
#![allow(non_snake_case)]
//! as libbpf 1.7 does them, on `userbpf_libbpf_compat::attach::usdt`.
//!
//! Each object gets a USDT manager (its spec ids) on its first USDT
//! attachment, found again through the object's `__bpf_usdt_specs` map.
//! Specs are written with `bpf_map_update_elem` on that map's fd, so the
//! map's own rules (frozen, sizes) apply as they do for libbpf.
//!
//! The exported entry point is [`attach_usdt`] wrapped by `ffi_fn!` at the
//! end of this file; it is switched on together with the
//! `abi/signatures.tsv` status of `bpf_program__attach_usdt`.

use std::ffi::{c_char, c_int, c_void};
use std::os::fd::AsRawFd;
use std::sync::Arc;

use userbpf_libbpf_compat::attach::binary::resolve_binary_path;
use userbpf_libbpf_compat::attach::errstr;
use userbpf_libbpf_compat::attach::usdt::{
    attach_usdt as compat_attach, parse_usdt_section, prepare_usdt, SpecMap, UsdtManager,
    UsdtRequest,
};
use userbpf_libbpf_compat::backend::kernel::attach as kattach;
use userbpf_libbpf_compat::backend::kernel::sys::{kernel_fd_kind, KernelFdKind};

use crate::error::AbiError;
use crate::link_api::LinkHandle;
use crate::object_api::{errno_err, opt_str, prog_obj, ObjectHandle, ProgramHandle};
use crate::opts::{read_opts, OptsStruct};
use crate::print;

/// What `bpf_program__attach_usdt` validates its opts against: libbpf 1.7
/// checks them with `OPTS_VALID(opts, bpf_uprobe_opts)`, so the sz rule
/// uses `bpf_uprobe_opts`' size (44 bytes up to `attach_mode`) and name.
/// `usdt_cookie` is at offset 8 in `struct bpf_usdt_opts`.
#[repr(C, packed(4))]
#[derive(Clone, Copy)]
pub struct UsdtOptsAsUprobeOpts {
    sz: usize,
    /// `bpf_usdt_opts.usdt_cookie` (`bpf_uprobe_opts.ref_ctr_offset`).
    usdt_cookie: u64,
    _bpf_cookie: u64,
    _retprobe: u8,
    _pad: [u8; 7],
    _func_name: usize,
    _attach_mode: u32,
}

const _: () = assert!(std::mem::size_of::<UsdtOptsAsUprobeOpts>() == 44);

// SAFETY: repr(C), starts with `size_t sz`, integers only.
unsafe impl OptsStruct for UsdtOptsAsUprobeOpts {
    const NAME: &'static str = "bpf_uprobe_opts";
}

/// The object's `__bpf_usdt_specs` map, written through its fd.
struct SpecsByFd {
    fd: c_int,
    value_size: u32,
    max_entries: u32,
}

impl SpecMap for SpecsByFd {
    fn value_size(&self) -> u32 {
        self.value_size
    }

    fn max_entries(&self) -> u32 {
        self.max_entries
    }

    fn write(&self, id: u32, value: &[u8]) -> Result<(), i32> {
        let key = id as c_int;
        // SAFETY: key and value are valid for the map's key size (4) and
        // value size (value.len() is at least the map's value size).
        let r = unsafe {
            crate::bpf_api::bpf_map_update_elem(
                self.fd,
                (&key as *const c_int).cast::<c_void>(),
                value.as_ptr().cast::<c_void>(),
                0, // BPF_ANY
            )
        };
        if r < 0 {
            Err(-r)
        } else {
            Ok(())
        }
    }
}

/// libbpf's `usdt_manager_new`: the object's two USDT maps.
fn usdt_maps(o: &ObjectHandle) -> Result<SpecsByFd, AbiError> {
    let missing = || {
        print::warn(
            "usdt: failed to find USDT support BPF maps, did you forget to include bpf/usdt.bpf.h?\n",
        );
        errno_err(libc::ESRCH)
    };
    let specs_idx = o.obj.map_index("__bpf_usdt_specs").ok_or_else(missing)?;
    o.obj
        .map_index("__bpf_usdt_ip_to_spec_id")
        .ok_or_else(missing)?;
    let handle = o.maps.get(specs_idx).ok_or_else(missing)?;
    let def = &o.obj.maps()[specs_idx];
    // A map load did not create (autocreate off) cannot hold specs: libbpf
    // fails writing to its placeholder fd.
    if handle.fd < 0 || handle.placeholder.is_some() {
        return Err(errno_err(libc::EBADF));
    }
    Ok(SpecsByFd {
        fd: handle.fd,
        value_size: def.value_size(),
        max_entries: def.max_entries(),
    })
}

/// The body of `bpf_program__attach_usdt`.
///
/// # Safety
/// `prog` NULL or a live program; the strings NULL or NUL-terminated;
/// `opts` NULL or a valid `struct bpf_usdt_opts` of `opts->sz` bytes.
pub unsafe fn attach_usdt(
    prog: *const ProgramHandle,
    pid: c_int,
    binary_path: *const c_char,
    usdt_provider: *const c_char,
    usdt_name: *const c_char,
    opts: *const c_void,
) -> Result<*mut LinkHandle, AbiError> {
    // SAFETY: caller contract.
    let opts = unsafe { read_opts(opts.cast::<UsdtOptsAsUprobeOpts>()) }?;
    // SAFETY: caller contract.
    let p = unsafe { prog.as_ref() }.ok_or(errno_err(libc::EINVAL))?;
    if p.fd < 0 {
        print::warn(&format!(
            "prog '{}': can't attach BPF program without FD (was it loaded?)\n",
            p.name.to_string_lossy()
        ));
        return Err(errno_err(libc::EINVAL));
    }
    // SAFETY: caller contract.
    let path = unsafe { opt_str(binary_path) }.ok_or(errno_err(libc::EINVAL))?;
    let path = if path.contains('/') {
        path
    } else {
        match resolve_binary_path(&path) {
            Ok(resolved) => resolved.to_string_lossy().into_owned(),
            Err(e) => {
                print::warn(&format!(
                    "prog '{}': failed to resolve full path for '{path}': {}\n",
                    p.name.to_string_lossy(),
                    errstr(-e.errno())
                ));
                return Err(errno_err(e.errno()));
            }
        }
    };
    // SAFETY: a live program lives in its live object.
    let o = unsafe { prog_obj(p) };
    let specs = usdt_maps(o)?;
    // libbpf would strcmp a NULL provider or name and crash.
    // SAFETY: caller contract.
    let provider = unsafe { opt_str(usdt_provider) }.ok_or(errno_err(libc::EINVAL))?;
    // SAFETY: caller contract.
    let name = unsafe { opt_str(usdt_name) }.ok_or(errno_err(libc::EINVAL))?;
    let kernel_prog = kernel_fd_kind(p.fd) == Some(KernelFdKind::Prog);
    let prog_id = if kernel_prog {
        0
    } else {
        o.loaded
            .as_ref()
            .and_then(|l| l.backend.programs.get(p.idx).cloned().flatten())
            .map(|lp| lp.id)
            .ok_or(errno_err(libc::EINVAL))?
    };
    let manager = o.usdt_manager.get_or_init(UsdtManager::new).clone();
    let prog_name = p.name.to_string_lossy();
    let req = UsdtRequest {
        prog_id,
        prog_name: &prog_name,
        pid,
        path: &path,
        provider: &provider,
        name: &name,
        usdt_cookie: opts.map_or(0, |o| o.usdt_cookie),
    };
    if kernel_prog {
        return attach_usdt_kernel(p, &manager, &specs, &req);
    }
    let mut link = compat_attach(&manager, &specs, &req).map_err(|e| {
        if e.warns() {
            print::warn(&format!("{e}\n"));
        }
        errno_err(e.errno())
    })?;
    // The link's own fd, the one its registry records name.
    let fd = link.take_fd().ok_or(errno_err(libc::EINVAL))?;
    let record_pid = userbpf_libbpf_compat::attach::link::record_pid(pid);
    let link_id = link.id();
    let mut files: Vec<(u64, u64)> = link.targets().iter().map(|t| (t.dev, t.ino)).collect();
    files.dedup();
    crate::local_agent::settle(link_id, record_pid, &files, true);
    Ok(LinkHandle::into_raw(
        fd,
        Box::new(move || {
            drop(link);
            crate::local_agent::settle(link_id, record_pid, &files, false);
            Ok(())
        }),
    ))
}

/// USDT on a kernel program (kernel mode), as libbpf: the specs in the
/// kernel's spec map, one kernel uprobe per call site with the spec id as
/// its cookie (semaphores through the uprobe's reference counter).
fn attach_usdt_kernel(
    p: &ProgramHandle,
    manager: &Arc<UsdtManager>,
    specs: &SpecsByFd,
    req: &UsdtRequest<'_>,
) -> Result<*mut LinkHandle, AbiError> {
    let prepared = prepare_usdt(manager, specs, req).map_err(|e| {
        if e.warns() {
            print::warn(&format!("{e}\n"));
        }
        errno_err(e.errno())
    })?;
    let mut uprobes = Vec::with_capacity(prepared.targets().len());
    for t in prepared.targets() {
        let fail = |e: i32| {
            print::warn(&format!(
                "usdt: failed to attach uprobe for '{}:{}' in '{}' at 0x{:x}: {}\n",
                req.provider,
                req.name,
                req.path,
                t.offset,
                errstr(-e)
            ));
            errno_err(e)
        };
        let pfd = kattach::open_uprobe(
            false,
            std::path::Path::new(&t.path),
            t.offset,
            req.pid,
            t.ref_ctr_offset,
        )
        .map_err(fail)?;
        let link = kattach::perf_link_create(p.fd, pfd.as_raw_fd(), t.cookie).map_err(fail)?;
        uprobes.push((link, pfd));
    }
    // libbpf's USDT link has no fd of its own; ours is the first uprobe's
    // link (a duplicate), so that `bpf_link__fd` names something real.
    let fd = match uprobes.first() {
        Some((l, _)) => l
            .try_clone()
            .map_err(|e| errno_err(e.raw_os_error().unwrap_or(libc::EMFILE)))?,
        None => return Err(errno_err(libc::ENOENT)),
    };
    Ok(LinkHandle::into_raw(
        fd,
        Box::new(move || {
            // Uprobes first, then the spec ids go back to the manager.
            drop(uprobes);
            drop(prepared);
            Ok(())
        }),
    ))
}

/// Auto-attach for `SEC("usdt/PATH:PROVIDER:NAME")`: the link, `Ok(None)`
/// when the section names no target, or a positive errno.
///
/// # Safety
/// `prog` must be a live program handle.
pub(crate) unsafe fn auto_attach_usdt(
    prog: *mut ProgramHandle,
) -> Result<Option<*mut LinkHandle>, i32> {
    // SAFETY: caller contract.
    let p = unsafe { &*prog };
    let sec = p.sec_name.to_string_lossy();
    let Ok(parsed) = parse_usdt_section(&sec) else {
        print::warn(&format!(
            "invalid section '{sec}', expected SEC(\"usdt/<path>:<provider>:<name>\")\n"
        ));
        return Err(libc::EINVAL);
    };
    let Some((path, provider, name)) = parsed else {
        return Ok(None);
    };
    let c = |s: String| crate::object_api::c_string(&s);
    let (path, provider, name) = (c(path), c(provider), c(name));
    // SAFETY: a live program, NUL-terminated strings, NULL opts.
    unsafe {
        attach_usdt(
            prog,
            -1,
            path.as_ptr(),
            provider.as_ptr(),
            name.as_ptr(),
            std::ptr::null(),
        )
    }
    .map(Some)
    .map_err(|e| e.errno())
}

// The exported entry point.
crate::ffi_fn! {
    /// `struct bpf_link *bpf_program__attach_usdt(const struct bpf_program *prog,
    /// pid_t pid, const char *binary_path, const char *usdt_provider,
    /// const char *usdt_name, const struct bpf_usdt_opts *opts)`
    ///
    /// # Safety
    /// `prog` NULL or live; strings NULL or NUL-terminated; `opts` NULL
    /// or a valid `struct bpf_usdt_opts`.
    pub unsafe fn bpf_program__attach_usdt(
        prog: *const ProgramHandle,
        pid: c_int,
        binary_path: *const c_char,
        usdt_provider: *const c_char,
        usdt_name: *const c_char,
        opts: *const c_void,
    ) -> *mut LinkHandle {
        // SAFETY: caller contract.
        crate::object_api::ret(unsafe {
            attach_usdt(prog, pid, binary_path, usdt_provider, usdt_name, opts)
        })
    }
}
