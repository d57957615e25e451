//! Pinning maps and programs of an object (`bpf_map__pin`,
//! `bpf_program__pin`, `bpf_object__pin_maps` / `pin_programs` / `pin` and
//! their `unpin` twins) and reusing a pinned map (`bpf_map__reuse_fd`),
//! with libbpf's checks and messages.
//!
//! A kernel map or program (an anon-inode BPF fd) is pinned into the real
//! bpffs as libbpf does it: `make_parent_dir` (one `mkdir(dirname, 0700)`),
//! `check_path` (the directory must be on a bpffs, else `EINVAL`), then
//! `BPF_OBJ_PIN`; unpinning a real bpffs entry is `unlink`. userbpf's own
//! maps and programs are pinned on the pins of `bpf_api` (records in the
//! namespace directory; see `bpf_obj_pin` there for the limits), whose
//! missing parent directories are made there.

#![allow(non_snake_case)]

use std::ffi::{c_char, c_int, c_uint, CStr, CString};

use crate::abi::FfiReturn;
use crate::ffi_fn;
use crate::object_api::{errno_err, MapHandle, ObjectHandle, ProgramHandle};
use crate::print;

fn fail(e: i32) -> c_int {
    c_int::from_error(&errno_err(e))
}

/// # Safety
/// `p` NULL or NUL-terminated.
unsafe fn opt_string(p: *const c_char) -> Option<String> {
    // SAFETY: caller contract.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

/// libbpf's `make_parent_dir`: `mkdir(dirname(path), 0700)`, an existing
/// directory being fine.
fn make_parent_dir(path: &str) -> Result<(), i32> {
    let dir = CString::new(dirname(path)).map_err(|_| libc::EINVAL)?;
    // SAFETY: a NUL-terminated path.
    if unsafe { libc::mkdir(dir.as_ptr(), 0o700) } < 0 {
        let e = crate::abi::errno();
        if e != libc::EEXIST {
            print::warn(&format!(
                "failed to mkdir {path}: {}\n",
                userbpf_libbpf_compat::errstr::errstr(-e)
            ));
            return Err(e);
        }
    }
    Ok(())
}

/// libbpf's `check_path`: the directory of `path` must be on a bpffs.
fn check_path(path: &str) -> Result<(), i32> {
    let dir = dirname(path);
    match crate::bpf_api::on_bpffs(Path::new(dir)) {
        Ok(true) => Ok(()),
        Ok(false) => {
            print::warn(&format!("specified path {path} is not on BPF FS\n"));
            Err(libc::EINVAL)
        }
        Err(e) => {
            print::warn(&format!(
                "failed to statfs {dir}: {}\n",
                userbpf_libbpf_compat::errstr::errstr(e)
            ));
            Err(e)
        }
    }
}

/// What libbpf does before pinning `fd` at `path`: for a kernel object,
/// [`make_parent_dir`] and [`check_path`] on the real filesystem; our own
/// pins make their missing directories themselves.
pub(crate) fn prepare_pin(fd: c_int, path: &str) -> Result<(), i32> {
    if crate::bpf_api::is_kernel_fd(fd) {
        make_parent_dir(path)?;
        check_path(path)?;
    }
    Ok(())
}

/// libbpf's `check_path` and `unlink` for a real bpffs entry, our pin
/// record's removal otherwise.
fn unpin(path: &str) -> Result<(), i32> {
    let real = absolute(path)
        .ok()
        .is_some_and(|abs| std::fs::symlink_metadata(abs).is_ok());
    if real {
        check_path(path)?;
    }
    crate::bpf_api::unpin_path(path).map_err(|e| e.errno())
}

/// Pins `fd` at `path` (`bpf_obj_pin`).
fn pin_fd(fd: c_int, path: &str) -> Result<(), i32> {
    let c = CString::new(path).map_err(|_| libc::EINVAL)?;
    // SAFETY: a NUL-terminated path.
    let r = unsafe { crate::bpf_api::bpf_obj_pin(fd, c.as_ptr()) };
    if r < 0 {
        return Err(-r);
    }
    Ok(())
}

ffi_fn! {
    /// `int bpf_map__set_pin_path(struct bpf_map *map, const char *path)`
    ///
    /// # Safety
    /// `map` live; `path` NULL or NUL-terminated.
    pub unsafe fn bpf_map__set_pin_path(map: *mut MapHandle, path: *const c_char) -> c_int {
        // SAFETY: caller contract.
        let Some(m) = (unsafe { map.as_mut() }) else {
            return fail(libc::EINVAL);
        };
        // SAFETY: caller contract.
        m.pin_path = unsafe { opt_string(path) }.and_then(|p| CString::new(p).ok());
        0
    }
}

ffi_fn! {
    /// `const char *bpf_map__pin_path(const struct bpf_map *map)`
    ///
    /// # Safety
    /// `map` NULL or live.
    pub unsafe fn bpf_map__pin_path(map: *const MapHandle) -> *const c_char {
        // SAFETY: caller contract.
        match unsafe { map.as_ref() } {
            Some(m) => m.pin_path.as_ref().map_or(std::ptr::null(), |p| p.as_ptr()),
            None => std::ptr::null(),
        }
    }
}

ffi_fn! {
    /// `const char *bpf_map__get_pin_path(const struct bpf_map *map)`
    ///
    /// # Safety
    /// `map` NULL or live.
    pub unsafe fn bpf_map__get_pin_path(map: *const MapHandle) -> *const c_char {
        // SAFETY: caller contract.
        unsafe { bpf_map__pin_path(map) }
    }
}

ffi_fn! {
    /// `bool bpf_map__is_pinned(const struct bpf_map *map)`
    ///
    /// # Safety
    /// `map` NULL or live.
    pub unsafe fn bpf_map__is_pinned(map: *const MapHandle) -> bool {
        // SAFETY: caller contract.
        unsafe { map.as_ref() }.is_some_and(|m| m.pinned)
    }
}

ffi_fn! {
    /// `int bpf_map__pin(struct bpf_map *map, const char *path)`
    ///
    /// # Safety
    /// `map` NULL or live; `path` NULL or NUL-terminated.
    pub unsafe fn bpf_map__pin(map: *mut MapHandle, path: *const c_char) -> c_int {
        // SAFETY: caller contract.
        let Some(m) = (unsafe { map.as_mut() }) else {
            print::warn("invalid map pointer\n");
            return fail(libc::EINVAL);
        };
        let name = m.name.to_string_lossy().into_owned();
        if m.fd < 0 {
            print::warn(&format!(
                "map '{name}': can't pin BPF map without FD (was it created?)\n"
            ));
            return fail(libc::EINVAL);
        }
        // SAFETY: caller contract.
        let path = unsafe { opt_string(path) };
        let pin = match (&m.pin_path, path) {
            (Some(cur), Some(p)) if cur.to_string_lossy() != p => {
                print::warn(&format!(
                    "map '{name}' already has pin path '{}' different from '{p}'\n",
                    cur.to_string_lossy()
                ));
                return fail(libc::EINVAL);
            }
            (Some(cur), _) => {
                if m.pinned {
                    print::debug(&format!(
                        "map '{name}' already pinned at '{}'; not re-pinning\n",
                        cur.to_string_lossy()
                    ));
                    return 0;
                }
                cur.to_string_lossy().into_owned()
            }
            (None, None) => {
                print::warn(&format!("missing a path to pin map '{name}' at\n"));
                return fail(libc::EINVAL);
            }
            (None, Some(p)) => {
                if m.pinned {
                    print::warn(&format!("map '{name}' already pinned\n"));
                    return fail(libc::EEXIST);
                }
                m.pin_path = CString::new(p.clone()).ok();
                p
            }
        };
        if let Err(e) = prepare_pin(m.fd, &pin) {
            return fail(e);
        }
        if let Err(e) = pin_fd(m.fd, &pin) {
            print::warn(&format!(
                "failed to pin map: {}\n",
                userbpf_libbpf_compat::errstr::errstr(-e)
            ));
            return fail(e);
        }
        m.pinned = true;
        print::debug(&format!("pinned map '{pin}'\n"));
        0
    }
}

ffi_fn! {
    /// `int bpf_map__unpin(struct bpf_map *map, const char *path)`
    ///
    /// # Safety
    /// `map` NULL or live; `path` NULL or NUL-terminated.
    pub unsafe fn bpf_map__unpin(map: *mut MapHandle, path: *const c_char) -> c_int {
        // SAFETY: caller contract.
        let Some(m) = (unsafe { map.as_mut() }) else {
            print::warn("invalid map pointer\n");
            return fail(libc::EINVAL);
        };
        let name = m.name.to_string_lossy().into_owned();
        // SAFETY: caller contract.
        let path = unsafe { opt_string(path) };
        let target = match (&m.pin_path, path) {
            (Some(cur), Some(p)) if cur.to_string_lossy() != p => {
                print::warn(&format!(
                    "map '{name}' already has pin path '{}' different from '{p}'\n",
                    cur.to_string_lossy()
                ));
                return fail(libc::EINVAL);
            }
            (Some(cur), _) => cur.to_string_lossy().into_owned(),
            (None, Some(p)) => p,
            (None, None) => {
                print::warn(&format!("no path to unpin map '{name}' from\n"));
                return fail(libc::EINVAL);
            }
        };
        if let Err(e) = unpin(&target) {
            return fail(e);
        }
        m.pinned = false;
        print::debug(&format!("unpinned map '{name}' from '{target}'\n"));
        0
    }
}

ffi_fn! {
    /// `int bpf_map__reuse_fd(struct bpf_map *map, int fd)`: before load,
    /// makes the map an existing map (for example one from `bpf_obj_get`)
    /// instead of a new one; its parameters become the existing map's.
    ///
    /// # Safety
    /// `map` NULL or live.
    pub unsafe fn bpf_map__reuse_fd(map: *mut MapHandle, fd: c_int) -> c_int {
        // SAFETY: caller contract.
        let Some(m) = (unsafe { map.as_mut() }) else {
            return fail(libc::EINVAL);
        };
        // SAFETY: the owning object is live.
        if m.fd >= 0 || unsafe { (*m.obj).loaded.is_some() } {
            return fail(libc::EBUSY);
        }
        if fd < 0 {
            return fail(libc::EBADF);
        }
        if crate::bpf_api::is_kernel_fd(fd) {
            return reuse_kernel_fd(m, fd);
        }
        // SAFETY: borrowed only for the duration of Map::open.
        let existing = match userbpf_runtime::maps::Map::open(unsafe {
            std::os::fd::BorrowedFd::borrow_raw(fd)
        }) {
            Ok(map) => map,
            Err(e) => return fail(e.errno()),
        };
        // SAFETY: the owning object is live; only its loader object is
        // borrowed, not the handle array `m` lives in.
        let obj = unsafe { &mut *std::ptr::addr_of_mut!((*m.obj).obj) };
        let def = &mut obj.maps_mut()[m.idx];
        let spec = existing.spec();
        def.set_map_type(userbpf_libbpf_compat::object::MapType(spec.map_type));
        def.set_key_size(spec.key_size);
        def.set_value_size(spec.value_size);
        def.set_max_entries(spec.max_entries);
        def.set_map_flags(spec.map_flags);
        def.set_map_extra(spec.map_extra);
        m.reused = Some(existing);
        0
    }
}

/// `BPF_OBJ_GET_INFO_BY_FD` of a kernel map.
fn kernel_map_info(fd: c_int) -> Result<userbpf_libbpf_compat::backend::kernel::sys::MapInfo, i32> {
    userbpf_libbpf_compat::backend::kernel::sys::obj_info(fd)
}

/// `bpf_map__reuse_fd` of a kernel map: libbpf's (the definition becomes
/// the map's, a dup of the fd is what load uses).
fn reuse_kernel_fd(m: &mut MapHandle, fd: c_int) -> c_int {
    let info = match kernel_map_info(fd) {
        Ok(i) => i,
        Err(e) => return fail(e),
    };
    // SAFETY: F_DUPFD_CLOEXEC on the caller's open fd; the new fd is ours.
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if dup < 0 {
        return fail(crate::abi::errno());
    }
    // SAFETY: just made, owned by nobody else.
    let dup = unsafe { OwnedFd::from_raw_fd(dup) };
    // SAFETY: the owning object is live; only its loader object is
    // borrowed, not the handle array `m` lives in.
    let obj = unsafe { &mut *std::ptr::addr_of_mut!((*m.obj).obj) };
    let def = &mut obj.maps_mut()[m.idx];
    def.set_map_type(userbpf_libbpf_compat::object::MapType(info.map_type));
    def.set_key_size(info.key_size);
    def.set_value_size(info.value_size);
    def.set_max_entries(info.max_entries);
    def.set_map_flags(info.map_flags);
    def.set_map_extra(info.map_extra);
    m.reused_kernel = Some(dup);
    0
}

ffi_fn! {
    /// `int bpf_map__set_inner_map_fd(struct bpf_map *map, int fd)`: the
    /// map behind `fd` becomes the template inner maps must match.
    ///
    /// # Safety
    /// `map` NULL or live.
    pub unsafe fn bpf_map__set_inner_map_fd(map: *mut MapHandle, fd: c_int) -> c_int {
        // SAFETY: caller contract.
        let Some(m) = (unsafe { map.as_mut() }) else {
            return fail(libc::EINVAL);
        };
        // SAFETY: the owning object is live; only its loader object is
        // borrowed, not the handle array `m` lives in.
        let obj = unsafe { &mut *std::ptr::addr_of_mut!((*m.obj).obj) };
        let def = &mut obj.maps_mut()[m.idx];
        let t = def.map_type();
        if t != userbpf_libbpf_compat::object::MapType::ARRAY_OF_MAPS
            && t != userbpf_libbpf_compat::object::MapType::HASH_OF_MAPS
        {
            print::warn("error: unsupported map type\n");
            return fail(libc::EINVAL);
        }
        if m.inner_map_fd != -1 {
            print::warn("error: inner_map_fd already specified\n");
            return fail(libc::EINVAL);
        }
        if fd < 0 {
            return fail(libc::EBADF);
        }
        let template = if crate::bpf_api::is_kernel_fd(fd) {
            match kernel_map_info(fd) {
                Ok(i) => userbpf_libbpf_compat::object::MapDef {
                    map_type: userbpf_libbpf_compat::object::MapType(i.map_type),
                    key_size: i.key_size,
                    value_size: i.value_size,
                    max_entries: i.max_entries,
                    map_flags: i.map_flags,
                },
                Err(e) => return fail(e),
            }
        } else {
            // SAFETY: borrowed only for the duration of Map::open.
            let inner = match userbpf_runtime::maps::Map::open(unsafe {
                std::os::fd::BorrowedFd::borrow_raw(fd)
            }) {
                Ok(map) => map,
                Err(e) => return fail(e.errno()),
            };
            let spec = inner.spec();
            userbpf_libbpf_compat::object::MapDef {
                map_type: userbpf_libbpf_compat::object::MapType(spec.map_type),
                key_size: spec.key_size,
                value_size: spec.value_size,
                max_entries: spec.max_entries,
                map_flags: spec.map_flags,
            }
        };
        def.set_inner_template(template);
        m.inner_map_fd = fd;
        0
    }
}

ffi_fn! {
    /// `int bpf_program__pin(struct bpf_program *prog, const char *path)`
    ///
    /// # Safety
    /// `prog` NULL or live; `path` NULL or NUL-terminated.
    pub unsafe fn bpf_program__pin(prog: *mut ProgramHandle, path: *const c_char) -> c_int {
        // SAFETY: caller contract.
        let Some(p) = (unsafe { prog.as_ref() }) else {
            return fail(libc::EINVAL);
        };
        let name = p.name.to_string_lossy().into_owned();
        if p.fd < 0 {
            print::warn(&format!("prog '{name}': can't pin program that wasn't loaded\n"));
            return fail(libc::EINVAL);
        }
        // SAFETY: caller contract.
        let Some(path) = (unsafe { opt_string(path) }) else {
            return fail(libc::EINVAL);
        };
        if let Err(e) = prepare_pin(p.fd, &path) {
            return fail(e);
        }
        if let Err(e) = pin_fd(p.fd, &path) {
            print::warn(&format!(
                "prog '{name}': failed to pin at '{path}': {}\n",
                userbpf_libbpf_compat::errstr::errstr(-e)
            ));
            return fail(e);
        }
        print::debug(&format!("prog '{name}': pinned at '{path}'\n"));
        0
    }
}

ffi_fn! {
    /// `int bpf_program__unpin(struct bpf_program *prog, const char *path)`
    ///
    /// # Safety
    /// `prog` NULL or live; `path` NULL or NUL-terminated.
    pub unsafe fn bpf_program__unpin(prog: *mut ProgramHandle, path: *const c_char) -> c_int {
        // SAFETY: caller contract.
        let Some(p) = (unsafe { prog.as_ref() }) else {
            return fail(libc::EINVAL);
        };
        if p.fd < 0 {
            print::warn(&format!(
                "prog '{}': can't unpin program that wasn't loaded\n",
                p.name.to_string_lossy()
            ));
            return fail(libc::EINVAL);
        }
        // SAFETY: caller contract.
        let Some(path) = (unsafe { opt_string(path) }) else {
            return fail(libc::EINVAL);
        };
        match unpin(&path) {
            Ok(()) => {
                print::debug(&format!(
                    "prog '{}': unpinned from '{path}'\n",
                    p.name.to_string_lossy()
                ));
                0
            }
            Err(e) => fail(e),
        }
    }
}

ffi_fn! {
    /// `void bpf_program__set_ifindex(struct bpf_program *prog, __u32 ifindex)`:
    /// recorded only; device offload needs the kernel.
    ///
    /// # Safety
    /// `prog` NULL or live.
    pub unsafe fn bpf_program__set_ifindex(prog: *mut ProgramHandle, ifindex: c_uint) {
        // SAFETY: caller contract.
        if let Some(p) = unsafe { prog.as_mut() } {
            p.ifindex = ifindex;
        }
    }
}

// ---------------------------------------------------------------------------
// Whole objects (`bpf_object__pin_maps`, `__pin_programs`, `__pin` and the
// `unpin` twins), as libbpf 1.7 does them
// ---------------------------------------------------------------------------

/// `PATH_MAX`.
const PATH_MAX: usize = 4096;

/// libbpf's `pathname_concat`: `"%s/%s"` (a NULL `path` printing as
/// glibc's `(null)`), `ENAMETOOLONG` from `PATH_MAX` on.
fn pathname_concat(path: Option<&str>, name: &str) -> Result<String, i32> {
    let s = format!("{}/{name}", path.unwrap_or("(null)"));
    if s.len() >= PATH_MAX {
        return Err(libc::ENAMETOOLONG);
    }
    Ok(s)
}

/// libbpf's `sanitize_pin_path`: bpffs refuses periods, so every one
/// becomes `_`.
fn sanitize_pin_path(s: &str) -> String {
    s.replace('.', "_")
}

/// The map's pin path under `path` (`pathname_concat` + sanitized).
fn map_pin_path(path: &str, m: &MapHandle) -> Result<CString, i32> {
    let p = pathname_concat(Some(path), &m.name.to_string_lossy())?;
    CString::new(sanitize_pin_path(&p)).map_err(|_| libc::EINVAL)
}

/// `map` made a C pointer for the per-map entry points.
fn map_ptr(m: &mut MapHandle) -> *mut MapHandle {
    m
}

ffi_fn! {
    /// `int bpf_object__pin_maps(struct bpf_object *obj, const char *path)`:
    /// every created map at `path/<name>` (periods made `_`), or, without
    /// `path`, the maps that have a pin path; on failure the maps pinned
    /// before are unpinned.
    ///
    /// # Safety
    /// `obj` NULL or live; `path` NULL or NUL-terminated.
    pub unsafe fn bpf_object__pin_maps(obj: *mut ObjectHandle, path: *const c_char) -> c_int {
        // SAFETY: caller contract.
        let Some(o) = (unsafe { obj.as_mut() }) else {
            return fail(libc::ENOENT);
        };
        if o.loaded.is_none() {
            print::warn("object not yet loaded; load it first\n");
            return fail(libc::ENOENT);
        }
        // SAFETY: caller contract.
        let path = unsafe { opt_string(path) };
        let mut failed: Option<(usize, i32)> = None;
        for i in 0..o.maps.len() {
            if !o.obj.maps()[o.maps[i].idx].autocreate() {
                continue;
            }
            let pin_path = match &path {
                Some(p) => match map_pin_path(p, &o.maps[i]) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        failed = Some((i, e));
                        break;
                    }
                },
                None if o.maps[i].pin_path.is_none() => continue,
                None => None,
            };
            let ptr = map_ptr(&mut o.maps[i]);
            let c = pin_path.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
            // SAFETY: a live map of this object; a C string or NULL.
            let r = unsafe { bpf_map__pin(ptr, c) };
            if r < 0 {
                failed = Some((i, -r));
                break;
            }
        }
        let Some((at, e)) = failed else {
            return 0;
        };
        for i in (0..at).rev() {
            if o.maps[i].pin_path.is_none() {
                continue;
            }
            let ptr = map_ptr(&mut o.maps[i]);
            // SAFETY: a live map of this object.
            unsafe { bpf_map__unpin(ptr, std::ptr::null()) };
        }
        fail(e)
    }
}

ffi_fn! {
    /// `int bpf_object__unpin_maps(struct bpf_object *obj, const char *path)`
    ///
    /// # Safety
    /// `obj` NULL or live; `path` NULL or NUL-terminated.
    pub unsafe fn bpf_object__unpin_maps(obj: *mut ObjectHandle, path: *const c_char) -> c_int {
        // SAFETY: caller contract.
        let Some(o) = (unsafe { obj.as_mut() }) else {
            return fail(libc::ENOENT);
        };
        // SAFETY: caller contract.
        let path = unsafe { opt_string(path) };
        for i in 0..o.maps.len() {
            let pin_path = match &path {
                Some(p) => match map_pin_path(p, &o.maps[i]) {
                    Ok(c) => Some(c),
                    Err(e) => return fail(e),
                },
                None if o.maps[i].pin_path.is_none() => continue,
                None => None,
            };
            let ptr = map_ptr(&mut o.maps[i]);
            let c = pin_path.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
            // SAFETY: a live map of this object; a C string or NULL.
            let r = unsafe { bpf_map__unpin(ptr, c) };
            if r < 0 {
                return fail(-r);
            }
        }
        0
    }
}

ffi_fn! {
    /// `int bpf_object__pin_programs(struct bpf_object *obj, const char *path)`:
    /// every program at `path/<name>`; on failure the programs pinned
    /// before are unpinned.
    ///
    /// # Safety
    /// `obj` NULL or live; `path` NULL or NUL-terminated.
    pub unsafe fn bpf_object__pin_programs(obj: *mut ObjectHandle, path: *const c_char) -> c_int {
        // SAFETY: caller contract.
        let Some(o) = (unsafe { obj.as_mut() }) else {
            return fail(libc::ENOENT);
        };
        if o.loaded.is_none() {
            print::warn("object not yet loaded; load it first\n");
            return fail(libc::ENOENT);
        }
        // SAFETY: caller contract.
        let path = unsafe { opt_string(path) };
        let prog_path = |p: &ProgramHandle| -> Result<CString, i32> {
            let s = pathname_concat(path.as_deref(), &p.name.to_string_lossy())?;
            CString::new(s).map_err(|_| libc::EINVAL)
        };
        let mut failed: Option<(usize, i32)> = None;
        for i in 0..o.progs.len() {
            let r = prog_path(&o.progs[i]).and_then(|c| {
                let ptr: *mut ProgramHandle = &mut o.progs[i];
                // SAFETY: a live program of this object; a C string.
                match unsafe { bpf_program__pin(ptr, c.as_ptr()) } {
                    r if r < 0 => Err(-r),
                    _ => Ok(()),
                }
            });
            if let Err(e) = r {
                failed = Some((i, e));
                break;
            }
        }
        let Some((at, e)) = failed else {
            return 0;
        };
        for i in (0..at).rev() {
            let Ok(c) = prog_path(&o.progs[i]) else {
                continue;
            };
            let ptr: *mut ProgramHandle = &mut o.progs[i];
            // SAFETY: a live program of this object; a C string.
            unsafe { bpf_program__unpin(ptr, c.as_ptr()) };
        }
        fail(e)
    }
}

ffi_fn! {
    /// `int bpf_object__unpin_programs(struct bpf_object *obj, const char *path)`
    ///
    /// # Safety
    /// `obj` NULL or live; `path` NULL or NUL-terminated.
    pub unsafe fn bpf_object__unpin_programs(obj: *mut ObjectHandle, path: *const c_char) -> c_int {
        // SAFETY: caller contract.
        let Some(o) = (unsafe { obj.as_mut() }) else {
            return fail(libc::ENOENT);
        };
        // SAFETY: caller contract.
        let path = unsafe { opt_string(path) };
        for i in 0..o.progs.len() {
            let c = match pathname_concat(path.as_deref(), &o.progs[i].name.to_string_lossy())
                .and_then(|s| CString::new(s).map_err(|_| libc::EINVAL))
            {
                Ok(c) => c,
                Err(e) => return fail(e),
            };
            let ptr: *mut ProgramHandle = &mut o.progs[i];
            // SAFETY: a live program of this object; a C string.
            let r = unsafe { bpf_program__unpin(ptr, c.as_ptr()) };
            if r < 0 {
                return fail(-r);
            }
        }
        0
    }
}

ffi_fn! {
    /// `int bpf_object__pin(struct bpf_object *obj, const char *path)`: maps,
    /// then programs (the maps unpinned again if the programs fail).
    ///
    /// # Safety
    /// `obj` NULL or live; `path` NULL or NUL-terminated.
    pub unsafe fn bpf_object__pin(obj: *mut ObjectHandle, path: *const c_char) -> c_int {
        // SAFETY: forwarded.
        let r = unsafe { bpf_object__pin_maps(obj, path) };
        if r < 0 {
            return fail(-r);
        }
        // SAFETY: forwarded.
        let r = unsafe { bpf_object__pin_programs(obj, path) };
        if r < 0 {
            // SAFETY: forwarded.
            unsafe { bpf_object__unpin_maps(obj, path) };
            return fail(-r);
        }
        0
    }
}

ffi_fn! {
    /// `int bpf_object__unpin(struct bpf_object *obj, const char *path)`:
    /// programs, then maps.
    ///
    /// # Safety
    /// `obj` NULL or live; `path` NULL or NUL-terminated.
    pub unsafe fn bpf_object__unpin(obj: *mut ObjectHandle, path: *const c_char) -> c_int {
        // SAFETY: forwarded.
        let r = unsafe { bpf_object__unpin_programs(obj, path) };
        if r < 0 {
            return fail(-r);
        }
        // SAFETY: forwarded.
        let r = unsafe { bpf_object__unpin_maps(obj, path) };
        if r < 0 {
            return fail(-r);
        }
        0
    }
}

// ---------------------------------------------------------------------------
// Link pins (`bpf_link__pin`, `bpf_link__open`, `bpf_link__unpin`)
// ---------------------------------------------------------------------------
//
// A link pin is a pin file of the namespace's virtual bpffs in the format
// of `bpf_api`'s map and program pins (`kind link`, the link's id, this
// process's pid, a held dup of the link's fd and that file's dev/ino), and
// this process holds the link itself ([`LinkCore`]) until the pin is
// removed. So, as for every pin here, a link pin lives as long as the
// process that made it. Another process opening it gets an fd of the same
// link (through `/proc/<pid>/fd`), not a reference that keeps it alive;
// a pin file removed by another process (or by `bpf_map__unpin` and
// friends) releases this process's hold at its next link call.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::link_api::LinkCore;

/// The first line of every pin file (`bpf_api`'s format).
const PIN_MAGIC: &str = "userbpf-pin 1";

/// The fields of a pin file that say which object it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PinFields {
    kind: String,
    pid: u32,
    fd: i32,
    dev: u64,
    ino: u64,
}

impl PinFields {
    fn parse(text: &str) -> Option<PinFields> {
        let mut lines = text.lines();
        if lines.next()? != PIN_MAGIC {
            return None;
        }
        let fields: std::collections::HashMap<&str, &str> =
            lines.filter_map(|l| l.split_once(' ')).collect();
        Some(PinFields {
            kind: fields.get("kind")?.to_string(),
            pid: fields.get("pid")?.parse().ok()?,
            fd: fields.get("fd")?.parse().ok()?,
            dev: fields.get("dev")?.parse().ok()?,
            ino: fields.get("ino")?.parse().ok()?,
        })
    }

    /// Whether the pinning process still holds the object: its fd names
    /// the same file.
    fn live(&self) -> bool {
        std::fs::metadata(format!("/proc/{}/fd/{}", self.pid, self.fd))
            .is_ok_and(|m| (m.dev(), m.ino()) == (self.dev, self.ino))
    }
}

/// A link this process holds for one of its pins.
struct LinkPin {
    /// The pin file in the namespace's bpffs.
    file: PathBuf,
    /// The fd the pin file names (a dup of the link's fd).
    held: OwnedFd,
    core: Arc<LinkCore>,
}

impl LinkPin {
    /// Whether the pin file still names this hold.
    fn current(&self) -> bool {
        let me = std::process::id();
        std::fs::read_to_string(&self.file)
            .ok()
            .and_then(|t| PinFields::parse(&t))
            .is_some_and(|f| f.kind == "link" && f.pid == me && f.fd == self.held.as_raw_fd())
    }
}

fn link_pins() -> &'static Mutex<Vec<LinkPin>> {
    static PINS: Mutex<Vec<LinkPin>> = Mutex::new(Vec::new());
    &PINS
}

fn io_errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

/// `path` made absolute against the working directory and normalized
/// lexically (as `bpf_api` does for map and program pins).
fn absolute(path: &str) -> Result<PathBuf, i32> {
    let path = Path::new(path);
    let base = if path.is_absolute() {
        PathBuf::from("/")
    } else {
        std::env::current_dir().map_err(|e| io_errno(&e))?
    };
    let mut out = PathBuf::from("/");
    for c in base.join(path).components() {
        match c {
            Component::RootDir | Component::Prefix(_) | Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
        }
    }
    Ok(out)
}

/// bpffs mount points: `/sys/fs/bpf` and every mounted bpffs.
fn bpffs_mounts() -> Vec<PathBuf> {
    let mut mounts = vec![PathBuf::from("/sys/fs/bpf")];
    if let Ok(text) = std::fs::read_to_string("/proc/self/mounts") {
        for line in text.lines() {
            let mut it = line.split_whitespace();
            let (_, Some(dir), Some("bpf")) = (it.next(), it.next(), it.next()) else {
                continue;
            };
            let dir = PathBuf::from(dir.replace("\\040", " "));
            if !mounts.contains(&dir) {
                mounts.push(dir);
            }
        }
    }
    mounts
}

/// The pin file of absolute path `abs` and whether `abs` is a bpffs
/// root; `None` outside every bpffs.
fn pin_location(abs: &Path) -> Result<Option<(PathBuf, bool)>, i32> {
    let Some(mount) = bpffs_mounts().into_iter().find(|m| abs.starts_with(m)) else {
        return Ok(None);
    };
    let root = userbpf_runtime::namespace::ensure_namespace_dir()
        .map_err(|e| io_errno(&e))?
        .join("bpffs");
    let rel = abs.strip_prefix("/").unwrap_or(abs);
    Ok(Some((root.join(rel), abs == mount)))
}

/// `dirname(path)` as libbpf prints it.
fn dirname(path: &str) -> &str {
    match path.trim_end_matches('/').rfind('/') {
        None => ".",
        Some(0) => "/",
        Some(i) => &path[..i],
    }
}

/// libbpf's `make_parent_dir` and `check_path` for a link pin: the parent
/// directory is made (in the namespace's bpffs, with any missing parents,
/// as map and program pins do) and must be on a bpffs.
pub(crate) fn prepare_link_pin_path(path: &str) -> Result<(), i32> {
    let dir = dirname(path);
    let abs = absolute(path)?;
    match pin_location(&abs)? {
        Some((file, false)) => {
            let parent = file.parent().ok_or(libc::EINVAL)?;
            std::fs::create_dir_all(parent).map_err(|e| {
                let e = io_errno(&e);
                print::warn(&format!(
                    "failed to mkdir {dir}: {}\n",
                    userbpf_libbpf_compat::attach::errstr(-e)
                ));
                e
            })
        }
        _ => {
            // libbpf makes a missing parent (here nothing is created
            // outside the bpffs) and then finds it is not a bpffs.
            let parent = abs.parent().unwrap_or(Path::new("/"));
            if !parent.exists() && !parent.parent().is_some_and(Path::exists) {
                print::warn(&format!(
                    "failed to mkdir {dir}: {}\n",
                    userbpf_libbpf_compat::attach::errstr(-libc::ENOENT)
                ));
                return Err(libc::ENOENT);
            }
            print::warn(&format!("specified path {path} is not on BPF FS\n"));
            Err(libc::EINVAL)
        }
    }
}

/// The id of this process's link whose registry records name `fd`.
fn link_id_of(fd: i32) -> u32 {
    use userbpf_runtime::registry;
    let me = std::process::id();
    registry::scan(&userbpf_runtime::namespace::namespace_dir(), false)
        .into_iter()
        .filter(|l| l.pid == me)
        .flat_map(|l| l.file.records())
        .find(|r| r.kind == registry::kind::LINK && r.fd == fd)
        .map_or(0, |r| r.id)
}

/// A CLOEXEC dup of `fd` numbered 3 or more (as a new BPF fd is).
fn dup_fd(fd: BorrowedFd<'_>) -> Result<OwnedFd, i32> {
    // SAFETY: F_DUPFD_CLOEXEC makes a new fd; `fd` is open (borrowed).
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if r < 0 {
        return Err(crate::abi::errno());
    }
    // SAFETY: a fresh fd nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

/// Releases the holds whose pin file no longer names them (removed or
/// replaced by another process); the links detach if nothing else holds
/// them.
pub(crate) fn sweep_link_pins() {
    let gone: Vec<LinkPin> = {
        let mut pins = link_pins().lock().unwrap_or_else(|e| e.into_inner());
        if pins.is_empty() {
            return;
        }
        let (keep, gone) = std::mem::take(&mut *pins)
            .into_iter()
            .partition(LinkPin::current);
        *pins = keep;
        gone
    };
    // Detaching waits for agents: outside the lock.
    drop(gone);
}

/// `BPF_OBJ_PIN` of a link: the pin file, and this process's hold on
/// `core`. EEXIST when a live object is pinned at `path` (a stale pin is
/// replaced, as `bpf_obj_pin` does).
pub(crate) fn pin_link(fd: BorrowedFd<'_>, core: Arc<LinkCore>, path: &str) -> Result<(), i32> {
    sweep_link_pins();
    let abs = absolute(path)?;
    let Some((file, is_root)) = pin_location(&abs)? else {
        return Err(libc::EPERM);
    };
    if is_root || file.is_dir() {
        return Err(libc::EEXIST);
    }
    if let Ok(text) = std::fs::read_to_string(&file) {
        if PinFields::parse(&text).is_some_and(|f| f.live()) {
            return Err(libc::EEXIST);
        }
        let _ = std::fs::remove_file(&file);
    }
    let parent = file.parent().ok_or(libc::EINVAL)?;
    std::fs::create_dir_all(parent).map_err(|e| io_errno(&e))?;
    let held = dup_fd(fd)?;
    let meta = std::fs::metadata(format!("/proc/self/fd/{}", held.as_raw_fd()))
        .map_err(|e| io_errno(&e))?;
    let text = format!(
        "{PIN_MAGIC}\nkind link\nid {}\npid {}\nfd {}\ndev {}\nino {}\n",
        link_id_of(fd.as_raw_fd()),
        std::process::id(),
        held.as_raw_fd(),
        meta.dev(),
        meta.ino()
    );
    // Written aside, then linked into place: no reader sees half a
    // record, and a concurrent pin of the same path loses with EEXIST.
    let tmp = parent.join(format!(".pin-{}-{}", std::process::id(), held.as_raw_fd()));
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut w = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| io_errno(&e))?;
        w.write_all(text.as_bytes()).map_err(|e| io_errno(&e))?;
    }
    let linked = std::fs::hard_link(&tmp, &file);
    let _ = std::fs::remove_file(&tmp);
    linked.map_err(|e| io_errno(&e))?;
    link_pins()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(LinkPin { file, held, core });
    Ok(())
}

/// A new fd of a pinned link, and the link itself when this process
/// pinned it.
pub(crate) type OpenedLink = (OwnedFd, Option<Arc<LinkCore>>);

/// `BPF_OBJ_GET` of a link pin: a new fd of the link and, when this
/// process pinned it, a reference to it. `Ok(None)` when `path` holds no
/// link pin (the caller asks `bpf_obj_get`, which answers for maps,
/// programs and every error); ENOENT for a pin whose process is gone
/// (the stale file is removed).
pub(crate) fn open_link(path: &str) -> Result<Option<OpenedLink>, i32> {
    sweep_link_pins();
    let abs = absolute(path)?;
    let Some((file, false)) = pin_location(&abs)? else {
        return Ok(None);
    };
    let Some(rec) = std::fs::read_to_string(&file)
        .ok()
        .and_then(|t| PinFields::parse(&t))
        .filter(|f| f.kind == "link")
    else {
        return Ok(None);
    };
    let same = |fd: BorrowedFd<'_>| {
        std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .is_ok_and(|m| (m.dev(), m.ino()) == (rec.dev, rec.ino))
    };
    let found = if rec.pid == std::process::id() {
        let pins = link_pins().lock().unwrap_or_else(|e| e.into_inner());
        pins.iter()
            .find(|p| p.held.as_raw_fd() == rec.fd && same(p.held.as_fd()))
            .map(|p| dup_fd(p.held.as_fd()).map(|fd| (fd, Some(p.core.clone()))))
    } else {
        std::fs::File::open(format!("/proc/{}/fd/{}", rec.pid, rec.fd))
            .ok()
            .map(OwnedFd::from)
            .filter(|fd| same(fd.as_fd()))
            .map(|fd| dup_fd(fd.as_fd()).map(|fd| (fd, None)))
    };
    match found {
        Some(r) => r.map(Some),
        None => {
            // The pinning process is gone, and the link with it.
            let _ = std::fs::remove_file(&file);
            Err(libc::ENOENT)
        }
    }
}

/// `unlink` of a link's pin path: removes the pin file (ENOENT when
/// nothing is pinned there, EPERM outside a bpffs) and this process's
/// hold for it.
pub(crate) fn unpin_link(path: &str) -> Result<(), i32> {
    let abs = absolute(path)?;
    let (file, _) = pin_location(&abs)?.ok_or(libc::EPERM)?;
    std::fs::remove_file(&file).map_err(|e| io_errno(&e))?;
    let released: Vec<LinkPin> = {
        let mut pins = link_pins().lock().unwrap_or_else(|e| e.into_inner());
        let (gone, keep) = std::mem::take(&mut *pins)
            .into_iter()
            .partition(|p| p.file == file);
        *pins = keep;
        gone
    };
    drop(released);
    sweep_link_pins();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_fields_and_dirname() {
        let text = format!("{PIN_MAGIC}\nkind link\nid 3\npid 7\nfd 9\ndev 1\nino 2\n");
        assert_eq!(
            PinFields::parse(&text),
            Some(PinFields {
                kind: "link".into(),
                pid: 7,
                fd: 9,
                dev: 1,
                ino: 2
            })
        );
        assert_eq!(PinFields::parse("junk"), None);
        assert_eq!(dirname("/sys/fs/bpf/a"), "/sys/fs/bpf");
        assert_eq!(dirname("/a"), "/");
        assert_eq!(dirname("a"), ".");
        assert_eq!(
            absolute("/sys/fs/bpf/x/../y/./z").unwrap(),
            PathBuf::from("/sys/fs/bpf/y/z")
        );
    }
}
