//! Pinning maps and programs of an object (`bpf_map__pin`,
//! `bpf_program__pin`, ...) and reusing a pinned map (`bpf_map__reuse_fd`),
//! with libbpf's checks and messages, on the pins of `bpf_api` (records in
//! the namespace directory; see `bpf_obj_pin` there for the limits).

#![allow(non_snake_case)]

use std::ffi::{c_char, c_int, c_uint, CStr, CString};

use crate::abi::FfiReturn;
use crate::ffi_fn;
use crate::object_api::{errno_err, MapHandle, ProgramHandle};
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

/// Pins `fd` at `path`, creating the parent directories as libbpf's
/// `make_parent_dir` does.
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
        if let Err(e) = pin_fd(m.fd, &pin) {
            print::warn(&format!(
                "map '{name}': failed to pin at '{pin}': {}\n",
                crate::object_api::strerror(e)
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
        if let Err(e) = crate::bpf_api::unpin_path(&target) {
            return c_int::from_error(&e);
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
        // SAFETY: borrowed only for the duration of Map::open.
        let inner = match userbpf_runtime::maps::Map::open(unsafe {
            std::os::fd::BorrowedFd::borrow_raw(fd)
        }) {
            Ok(map) => map,
            Err(e) => return fail(e.errno()),
        };
        let spec = inner.spec();
        def.set_inner_template(userbpf_libbpf_compat::object::MapDef {
            map_type: userbpf_libbpf_compat::object::MapType(spec.map_type),
            key_size: spec.key_size,
            value_size: spec.value_size,
            max_entries: spec.max_entries,
            map_flags: spec.map_flags,
        });
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
        if let Err(e) = pin_fd(p.fd, &path) {
            print::warn(&format!(
                "prog '{name}': failed to pin at '{path}': {}\n",
                crate::object_api::strerror(e)
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
        match crate::bpf_api::unpin_path(&path) {
            Ok(()) => 0,
            Err(e) => c_int::from_error(&e),
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
