//! The load half of libbpf's object API on the userspace backend:
//! `bpf_object__load`, the global-data memory skeletons point at, map and
//! program state after load (`bpf_map__fd`, `bpf_program__fd`), the map
//! setters that only work before load, and the `bpf_map__*_elem` calls.

#![allow(non_snake_case)]

use std::ffi::{c_int, c_uint, c_void};
use std::sync::{Arc, OnceLock};

use userbpf_libbpf_compat::backend::kernel::{self, probe, KernelMap, KernelObject, ProgParams};
use userbpf_libbpf_compat::backend::placement::{self, BackendMode, Placement, Side};
use userbpf_libbpf_compat::backend::userspace::{self, LoadedObject};
use userbpf_libbpf_compat::object::{BpfMap, MapKind, MapType, TargetBtf, BPF_F_MMAPABLE};
use userbpf_runtime::maps::{is_percpu, Map, MapError};

use crate::abi::FfiReturn;
use crate::error::AbiError;
use crate::ffi_fn;
use crate::object_api::{
    errno_err, handle, map_def, print_level, ret, MapHandle, ObjectHandle, ProgramHandle,
};
use crate::print;
use userbpf_libbpf_compat::object::LogLevel;

/// What `bpf_object__load` leaves behind: the user-space half and the
/// kernel half (see `placement`).
#[derive(Debug)]
pub struct LoadedState {
    pub(crate) backend: LoadedObject,
    /// Owns the kernel half's fds (BTF, maps, programs) for the object's life.
    #[allow(dead_code)]
    pub(crate) kernel: KernelObject,
}

/// The memory behind a global-data map's `mmaped` pointer: an anonymous
/// shared mapping from open to load (the writable initial image), then the
/// map's own memory mapped over the same address, so pointers a skeleton
/// took at open time stay valid (libbpf does the same).
#[derive(Debug)]
pub struct Mmaped {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by the handle.
unsafe impl Send for Mmaped {}

/// libbpf's `array_map_mmap_sz`: values rounded to 8 bytes, page-aligned.
fn mmap_size(value_size: u32, max_entries: u32) -> usize {
    let bytes = (value_size as usize).div_ceil(8) * 8 * max_entries.max(1) as usize;
    bytes.div_ceil(4096).max(1) * 4096
}

impl Mmaped {
    pub(crate) const NONE: Mmaped = Mmaped {
        ptr: std::ptr::null_mut(),
        len: 0,
    };

    /// The initial image of a global-data map (`.data`, `.bss`, `.rodata`,
    /// `.kconfig`), else nothing.
    pub(crate) fn for_map(m: &BpfMap) -> Mmaped {
        if !m.is_internal() || m.map_flags() & BPF_F_MMAPABLE == 0 {
            return Mmaped::NONE;
        }
        let mut mm = Mmaped::anonymous(mmap_size(m.value_size(), m.max_entries()));
        if let (Some(data), false) = (m.initial_data(), mm.ptr.is_null()) {
            let n = data.len().min(mm.len);
            // SAFETY: `mm` is a fresh writable mapping of `len >= n` bytes.
            unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), mm.ptr, n) };
        }
        mm.len = mm.len.max(1);
        mm
    }

    fn anonymous(len: usize) -> Mmaped {
        // SAFETY: a new anonymous mapping; the kernel picks the address.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Mmaped::NONE;
        }
        Mmaped { ptr: p.cast(), len }
    }

    pub(crate) fn ptr(&self) -> *mut u8 {
        self.ptr
    }

    /// The bytes of the image (before load) or of the map (after).
    fn bytes(&self, len: usize) -> &[u8] {
        if self.ptr.is_null() {
            return &[];
        }
        // SAFETY: `ptr` maps `self.len` readable bytes.
        unsafe { std::slice::from_raw_parts(self.ptr, len.min(self.len)) }
    }

    /// `bpf_map__set_value_size` on global data: a new image of the new
    /// size, old bytes kept (libbpf's `bpf_map_mmap_resize`).
    fn resize(&mut self, value_size: u32, max_entries: u32) -> Result<(), AbiError> {
        let mut new = Mmaped::anonymous(mmap_size(value_size, max_entries));
        if new.ptr.is_null() {
            return Err(errno_err(libc::ENOMEM));
        }
        let n = self.len.min(new.len);
        // SAFETY: both mappings are valid for `n` bytes and distinct.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr, new.ptr, n) };
        std::mem::swap(self, &mut new);
        Ok(())
    }

    /// Maps the created map's memory over the image, at the same address;
    /// read-only for `.rodata` and `.kconfig`, as libbpf.
    fn remap(&mut self, map: &Map, read_only: bool) -> Result<(), AbiError> {
        let len = map.mem().data_size();
        self.remap_fd(map.raw_fd(), len, read_only)
    }

    /// [`Mmaped::remap`] for a kernel map (`BPF_F_MMAPABLE` arrays map their
    /// values at offset 0).
    fn remap_kernel(&mut self, map: &KernelMap, read_only: bool) -> Result<(), AbiError> {
        let len = mmap_size(map.value_size, map.max_entries);
        self.remap_fd(map.raw_fd(), len, read_only)
    }

    fn remap_fd(&mut self, fd: c_int, available: usize, read_only: bool) -> Result<(), AbiError> {
        if self.ptr.is_null() {
            return Ok(());
        }
        let prot = if read_only {
            libc::PROT_READ
        } else {
            libc::PROT_READ | libc::PROT_WRITE
        };
        let len = self.len.min(available);
        // SAFETY: replaces (MAP_FIXED) the first `len` bytes of our own
        // anonymous mapping with the map's data area, which is at least
        // `len` bytes long.
        let p = unsafe {
            libc::mmap(
                self.ptr.cast(),
                len,
                prot,
                libc::MAP_SHARED | libc::MAP_FIXED,
                fd,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(errno_err(
                std::io::Error::last_os_error()
                    .raw_os_error()
                    .unwrap_or(libc::ENOMEM),
            ));
        }
        Ok(())
    }
}

impl Drop for Mmaped {
    fn drop(&mut self) {
        if !self.ptr.is_null() {
            // SAFETY: unmaps the mapping this value owns.
            unsafe { libc::munmap(self.ptr.cast(), self.len) };
        }
    }
}

/// libbpf's `create_placeholder_fd`: an fd that names nothing.
fn placeholder_fd() -> std::io::Result<std::os::fd::OwnedFd> {
    // SAFETY: a constant C string.
    let fd = unsafe { libc::memfd_create(c"libbpf-placeholder-fd".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh fd nothing else owns.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
}

/// The kernel's BTF, parsed once per process.
fn system_btf() -> Result<&'static TargetBtf, AbiError> {
    static SYSTEM: OnceLock<Result<TargetBtf, i32>> = OnceLock::new();
    SYSTEM
        .get_or_init(|| TargetBtf::system().map_err(|e| e.errno()))
        .as_ref()
        .map_err(|&e| errno_err(e))
}

/// `bpf_object__load` (and `bpf_object__prepare`, which on this backend
/// is the same thing: nothing is left for a later step).
///
/// # Safety
/// `o` must be a live object handle.
pub(crate) unsafe fn load_object(o: &mut ObjectHandle) -> Result<(), AbiError> {
    if o.loaded.is_some() {
        print::warn(&format!(
            "object '{}': load can't be attempted twice\n",
            o.name.to_string_lossy()
        ));
        return Err(errno_err(libc::EINVAL));
    }
    // libbpf's map_set_def_max_entries: a perf event array of size 0 gets
    // one slot per possible CPU.
    let cpus = userbpf_runtime::cpu::possible_cpus();
    for m in o.obj.maps_mut() {
        if m.map_type() == MapType::PERF_EVENT_ARRAY && m.max_entries() == 0 {
            m.set_max_entries(cpus);
        }
    }
    // What the application wrote into the images is the initial data.
    for mh in o.maps.iter() {
        if mh.mmaped.ptr().is_null() {
            continue;
        }
        let m = &mut o.obj.maps_mut()[mh.idx];
        let len = m.value_size() as usize;
        let bytes = mh.mmaped.bytes(len).to_vec();
        if let Some(data) = m.initial_data_mut() {
            let n = bytes.len().min(data.len());
            data[..n].copy_from_slice(&bytes[..n]);
        }
    }
    let custom;
    let targets = match o.obj.btf_custom_path() {
        Some(path) => {
            custom = TargetBtf::from_file(path).map_err(|e| errno_err(e.errno()))?;
            &custom
        }
        None => system_btf()?,
    };
    if !o.obj.is_relocated() {
        o.obj.relocate(targets).map_err(|e| errno_err(e.errno()))?;
    }
    reuse_pinned_maps(o)?;
    let place = plan(o);
    // struct_ops maps have no user-space form.
    let user_st_ops = kernel::struct_ops::user_side_maps(&o.obj, &place);
    if let Some(name) = user_st_ops.first() {
        let (why, errno) = if o.backend == BackendMode::User {
            ("USERBPF_BACKEND=user".to_string(), libc::EOPNOTSUPP)
        } else {
            (probe::why_not(), libc::EPERM)
        };
        print::warn(&format!(
            "map '{name}': struct_ops maps exist only in the kernel, but {why}\n"
        ));
        print::warn(&format!("failed to load object '{}'\n", o.path));
        return Err(errno_err(errno));
    }
    let log = |level: LogLevel, msg: &str| print::print(print_level(level), &format!("{msg}\n"));
    // The kernel half first: user-space programs may use its maps.
    let params: Vec<ProgParams> = o.progs.iter().map(prog_params).collect();
    let mut reused_kernel: Vec<Option<KernelMap>> = o
        .maps
        .iter_mut()
        .map(|m| {
            m.reused_kernel
                .take()
                .and_then(|fd| KernelMap::from_fd(fd).ok())
        })
        .collect();
    let shared = place.shared_maps(&o.obj);
    let kernel_half = if place.any_kernel() {
        kernel::load(
            &o.obj,
            &place,
            &shared,
            targets,
            &params,
            &mut reused_kernel,
            &log,
        )
        .map_err(|e| {
            print::warn(&format!("failed to load object '{}'\n", o.path));
            errno_err(e.errno())
        })?
    } else {
        KernelObject::default()
    };
    let mut reused: Vec<_> = o.maps.iter().map(|m| m.reused.clone()).collect();
    for &i in &shared {
        let Some(Some(km)) = kernel_half.maps.get(i) else {
            continue;
        };
        let proxy = userspace::kernel_map_proxy(&o.obj, &o.obj.maps()[i], km).map_err(|e| {
            print::warn(&format!(
                "map '{}': can't share the kernel map with user-space programs: {e}\n",
                o.obj.maps()[i].name()
            ));
            errno_err(e.errno())
        })?;
        reused[i] = Some(proxy);
    }
    let loaded = userspace::load_object_placed(&o.obj, &reused, &place).map_err(|e| {
        if let userspace::BackendError::Slot { .. } = e {
            // libbpf's own two lines.
            print::warn(&format!("{e}\n"));
            print::warn(&format!("failed to load object '{}'\n", o.path));
        } else {
            print::warn(&format!(
                "failed to load object '{}': {e}\n",
                o.name.to_string_lossy()
            ));
        }
        errno_err(e.errno())
    })?;
    for mh in o.maps.iter_mut() {
        let kind = o.obj.maps()[mh.idx].kind();
        let read_only = matches!(kind, MapKind::Rodata | MapKind::Kconfig);
        if let Some(Some(km)) = kernel_half.maps.get(mh.idx) {
            mh.fd = km.raw_fd();
            mh.mmaped.remap_kernel(km, read_only)?;
            continue;
        }
        let Some(map) = loaded.maps.get(mh.idx).and_then(|m| m.as_ref()) else {
            // libbpf gives maps it did not create a placeholder fd.
            let fd = placeholder_fd()
                .map_err(|e| errno_err(e.raw_os_error().unwrap_or(libc::EMFILE)))?;
            mh.fd = std::os::fd::AsRawFd::as_raw_fd(&fd);
            mh.placeholder = Some(fd);
            continue;
        };
        mh.fd = map.raw_fd();
        mh.mmaped.remap(map, read_only)?;
    }
    for ph in o.progs.iter_mut() {
        if let Some(Some(kp)) = kernel_half.programs.get(ph.idx) {
            ph.fd = std::os::fd::AsRawFd::as_raw_fd(&kp.fd);
            if let Some(insns) = o.obj.programs().nth(ph.idx).and_then(|p| p.insns()) {
                ph.insns = insns.iter().map(|i| i.to_bytes()).collect();
            }
            continue;
        }
        let Some(p) = loaded.programs.get(ph.idx).and_then(|p| p.as_ref()) else {
            continue;
        };
        ph.fd = std::os::fd::AsRawFd::as_raw_fd(&p.fd);
        ph.insns = p.image.insns.iter().map(|i| i.to_bytes()).collect();
    }
    o.loaded = Some(LoadedState {
        backend: loaded,
        kernel: kernel_half,
    });
    // libbpf pins maps declared with LIBBPF_PIN_BY_NAME after creating them.
    for mh in o.maps.iter_mut() {
        if mh.pin_path.is_none() || mh.pinned || mh.fd < 0 || mh.placeholder.is_some() {
            continue;
        }
        // SAFETY: a live map handle, NULL path (its own pin path).
        let err = unsafe { crate::pin_api::bpf_map__pin(mh, std::ptr::null()) };
        if err != 0 {
            print::warn(&format!(
                "map '{}': failed to auto-pin at '{}': {err}\n",
                mh.name.to_string_lossy(),
                mh.pin_path
                    .as_ref()
                    .map(|p| p.to_string_lossy())
                    .unwrap_or_default()
            ));
            return Err(errno_err(-err));
        }
    }
    Ok(())
}

/// Where the object's maps and programs go (`placement`): the kernel side
/// in auto mode only when this process may use the kernel.
fn plan(o: &ObjectHandle) -> Placement {
    let needs_kernel = o.backend == BackendMode::Auto
        && o.obj
            .programs()
            .any(|p| p.autoload() && !placement::runs_in_user_space(p));
    let permitted = needs_kernel && probe::kernel_permitted();
    if needs_kernel && !permitted {
        print::debug(&format!(
            "object '{}': kernel-only programs stay in user space ({}): they can be test-run, not attached\n",
            o.name.to_string_lossy(),
            probe::why_not()
        ));
    }
    let place = placement::plan(&o.obj, o.backend, permitted);
    if place.any_kernel() {
        let kernel_progs = place
            .programs
            .iter()
            .filter(|s| **s == Side::Kernel)
            .count();
        print::debug(&format!(
            "object '{}': backend {}: {kernel_progs} program(s) in the kernel\n",
            o.name.to_string_lossy(),
            o.backend.name()
        ));
    }
    place
}

/// What the application set on a program for the kernel's loader.
fn prog_params(p: &ProgramHandle) -> ProgParams {
    ProgParams {
        log_level: p.log_level,
        log_buf: None,
        prog_flags: p.flags,
        attach_btf_id: (p.attach_btf_id != 0).then_some(p.attach_btf_id),
        attach_prog_fd: (p.attach_prog_fd > 0).then_some(p.attach_prog_fd),
    }
}

/// libbpf's `bpf_object__reuse_map`: a map with a pin path whose pin
/// exists becomes the pinned map, if their parameters agree.
fn reuse_pinned_maps(o: &mut ObjectHandle) -> Result<(), AbiError> {
    for mh in o.maps.iter_mut() {
        let Some(path) = mh.pin_path.clone() else {
            continue;
        };
        if mh.reused.is_some() {
            continue;
        }
        // SAFETY: a NUL-terminated path.
        let fd = unsafe { crate::bpf_api::bpf_obj_get(path.as_ptr()) };
        if fd < 0 {
            if -fd == libc::ENOENT {
                continue;
            }
            print::warn(&format!(
                "couldn't retrieve pinned map '{}': {fd}\n",
                path.to_string_lossy()
            ));
            return Err(errno_err(-fd));
        }
        // SAFETY: the fd bpf_obj_get just returned, ours to own.
        let owned = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        if kernel::sys::kernel_fd_kind(fd).is_some() {
            let existing = KernelMap::from_fd(owned).map_err(errno_err)?;
            let def = &o.obj.maps()[mh.idx];
            let compatible = existing.map_type == def.map_type().0
                && existing.key_size == def.key_size()
                && existing.value_size == def.value_size()
                && existing.max_entries == def.max_entries()
                && existing.map_flags == def.map_flags();
            if !compatible {
                print::warn(&format!(
                    "couldn't reuse pinned map at '{}': parameter mismatch\n",
                    path.to_string_lossy()
                ));
                return Err(errno_err(libc::EINVAL));
            }
            print::debug(&format!(
                "reused pinned map at '{}'\n",
                path.to_string_lossy()
            ));
            mh.reused_kernel = Some(existing.fd);
            mh.pinned = true;
            continue;
        }
        let fd = std::os::fd::AsRawFd::as_raw_fd(&owned);
        // SAFETY: `owned` stays open until after the call.
        let opened = Map::open(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) });
        drop(owned);
        let existing = opened.map_err(map_err)?;
        let def = &o.obj.maps()[mh.idx];
        let spec = existing.spec();
        let compatible = spec.map_type == def.map_type().0
            && spec.key_size == def.key_size()
            && spec.value_size == def.value_size()
            && spec.max_entries == def.max_entries()
            && spec.map_flags == def.map_flags()
            && spec.map_extra == def.map_extra();
        if !compatible {
            print::warn(&format!(
                "couldn't reuse pinned map at '{}': parameter mismatch\n",
                path.to_string_lossy()
            ));
            return Err(errno_err(libc::EINVAL));
        }
        print::debug(&format!(
            "reused pinned map at '{}'\n",
            path.to_string_lossy()
        ));
        mh.reused = Some(existing);
        mh.pinned = true;
    }
    Ok(())
}

/// The live object a map handle belongs to, mutably.
///
/// # Safety
/// `m` must be a live map handle and no other reference into its object
/// may be used while the result lives.
unsafe fn object_mut<'a>(m: *mut ObjectHandle) -> &'a mut ObjectHandle {
    // SAFETY: caller contract.
    unsafe { &mut *m }
}

ffi_fn! {
    /// `int bpf_object__load(struct bpf_object *obj)`
    ///
    /// # Safety
    /// `obj` must be NULL or a live object.
    pub unsafe fn bpf_object__load(obj: *mut ObjectHandle) -> c_int {
        if obj.is_null() {
            return c_int::from_error(&errno_err(libc::EINVAL));
        }
        // SAFETY: a live object (caller contract); nothing else borrows it.
        ret(unsafe { load_object(object_mut(obj)) }.map(|()| 0))
    }
}

ffi_fn! {
    /// `int bpf_object__prepare(struct bpf_object *obj)`: everything but
    /// loading programs into the kernel; on this backend that is the load.
    ///
    /// # Safety
    /// `obj` must be NULL or a live object.
    pub unsafe fn bpf_object__prepare(obj: *mut ObjectHandle) -> c_int {
        // SAFETY: forwarded.
        unsafe { bpf_object__load(obj) }
    }
}

ffi_fn! {
    /// `int bpf_program__fd(const struct bpf_program *prog)`: `-ENOENT`
    /// until loaded.
    ///
    /// # Safety
    /// `prog` must be NULL or a live program.
    pub unsafe fn bpf_program__fd(prog: *const ProgramHandle) -> c_int {
        // SAFETY: caller contract.
        ret(unsafe { handle(prog) }.and_then(|p| {
            if p.fd < 0 {
                Err(errno_err(libc::ENOENT))
            } else {
                Ok(p.fd)
            }
        }))
    }
}

/// libbpf's `validate_map_op`: sizes must match the map's exactly.
///
/// # Safety
/// `map` must be a live map handle.
unsafe fn validate_map_op(
    map: &MapHandle,
    key_sz: usize,
    value_sz: Option<usize>,
) -> Result<(), AbiError> {
    // libbpf: no fd yet (not created) is -ENOENT; the map may be a
    // userbpf map or a kernel map, the fd wrappers serve both.
    if map.fd < 0 {
        return Err(errno_err(libc::ENOENT));
    }
    // SAFETY: caller contract.
    let def = unsafe { map_def(map) };
    let name = map.name.to_string_lossy();
    if key_sz != def.key_size() as usize {
        print::warn(&format!(
            "map '{name}': unexpected key size {key_sz} provided, expected {}\n",
            def.key_size()
        ));
        return Err(errno_err(libc::EINVAL));
    }
    let Some(value_sz) = value_sz else {
        return Ok(());
    };
    if is_percpu(def.map_type().0) {
        let cpus = userbpf_runtime::cpu::possible_cpus() as usize;
        let elem = (def.value_size() as usize).div_ceil(8) * 8;
        if value_sz != cpus * elem {
            print::warn(&format!(
                "map '{name}': unexpected value size {value_sz} provided for per-CPU map, expected {cpus} * {elem} = {}\n",
                cpus * elem
            ));
            return Err(errno_err(libc::EINVAL));
        }
    } else if value_sz != def.value_size() as usize {
        print::warn(&format!(
            "map '{name}': unexpected value size {value_sz} provided, expected {}\n",
            def.value_size()
        ));
        return Err(errno_err(libc::EINVAL));
    }
    Ok(())
}

fn map_err(e: MapError) -> AbiError {
    errno_err(e.errno())
}

/// `(ptr, len)` as a slice; NULL with a non-zero length is EINVAL.
///
/// # Safety
/// `ptr` must be NULL or valid for `len` bytes.
unsafe fn bytes<'a>(ptr: *const c_void, len: usize) -> Result<&'a [u8], AbiError> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(errno_err(libc::EFAULT));
    }
    // SAFETY: caller contract.
    Ok(unsafe { std::slice::from_raw_parts(ptr.cast(), len) })
}

ffi_fn! {
    /// `int bpf_map__lookup_elem(const struct bpf_map *map, const void *key, size_t key_sz, void *value, size_t value_sz, __u64 flags)`
    ///
    /// # Safety
    /// `map` NULL or live; `key`/`value` valid for their sizes.
    pub unsafe fn bpf_map__lookup_elem(
        map: *const MapHandle,
        key: *const c_void,
        key_sz: usize,
        value: *mut c_void,
        value_sz: usize,
        flags: u64,
    ) -> c_int {
        // SAFETY: caller contract; the fd wrapper applies the kernel's
        // permission and flag rules, as libbpf's calls do.
        ret(unsafe { handle(map) }.and_then(|m| {
            unsafe { validate_map_op(m, key_sz, Some(value_sz)) }?;
            Ok(unsafe { crate::bpf_api::bpf_map_lookup_elem_flags(m.fd, key, value, flags) })
        }))
    }
}

ffi_fn! {
    /// `int bpf_map__update_elem(const struct bpf_map *map, const void *key, size_t key_sz, const void *value, size_t value_sz, __u64 flags)`
    ///
    /// # Safety
    /// `map` NULL or live; `key`/`value` valid for their sizes.
    pub unsafe fn bpf_map__update_elem(
        map: *const MapHandle,
        key: *const c_void,
        key_sz: usize,
        value: *const c_void,
        value_sz: usize,
        flags: u64,
    ) -> c_int {
        // SAFETY: caller contract; see bpf_map__lookup_elem.
        ret(unsafe { handle(map) }.and_then(|m| {
            unsafe { validate_map_op(m, key_sz, Some(value_sz)) }?;
            Ok(unsafe { crate::bpf_api::bpf_map_update_elem(m.fd, key, value, flags) })
        }))
    }
}

ffi_fn! {
    /// `int bpf_map__delete_elem(const struct bpf_map *map, const void *key, size_t key_sz, __u64 flags)`
    ///
    /// # Safety
    /// `map` NULL or live; `key` valid for `key_sz`.
    pub unsafe fn bpf_map__delete_elem(
        map: *const MapHandle,
        key: *const c_void,
        key_sz: usize,
        flags: u64,
    ) -> c_int {
        // SAFETY: caller contract; see bpf_map__lookup_elem.
        ret(unsafe { handle(map) }.and_then(|m| {
            unsafe { validate_map_op(m, key_sz, None) }?;
            Ok(unsafe { crate::bpf_api::bpf_map_delete_elem_flags(m.fd, key, flags) })
        }))
    }
}

ffi_fn! {
    /// `int bpf_map__lookup_and_delete_elem(const struct bpf_map *map, const void *key, size_t key_sz, void *value, size_t value_sz, __u64 flags)`
    ///
    /// # Safety
    /// `map` NULL or live; `key`/`value` valid for their sizes.
    pub unsafe fn bpf_map__lookup_and_delete_elem(
        map: *const MapHandle,
        key: *const c_void,
        key_sz: usize,
        value: *mut c_void,
        value_sz: usize,
        flags: u64,
    ) -> c_int {
        // SAFETY: caller contract; see bpf_map__lookup_elem.
        ret(unsafe { handle(map) }.and_then(|m| {
            unsafe { validate_map_op(m, key_sz, Some(value_sz)) }?;
            Ok(unsafe {
                crate::bpf_api::bpf_map_lookup_and_delete_elem_flags(m.fd, key, value, flags)
            })
        }))
    }
}

ffi_fn! {
    /// `int bpf_map__get_next_key(const struct bpf_map *map, const void *cur_key, void *next_key, size_t key_sz)`
    ///
    /// # Safety
    /// `map` NULL or live; `cur_key` NULL or valid, `next_key` valid for `key_sz`.
    pub unsafe fn bpf_map__get_next_key(
        map: *const MapHandle,
        cur_key: *const c_void,
        next_key: *mut c_void,
        key_sz: usize,
    ) -> c_int {
        // SAFETY: caller contract; see bpf_map__lookup_elem.
        ret(unsafe { handle(map) }.and_then(|m| {
            unsafe { validate_map_op(m, key_sz, None) }?;
            Ok(unsafe { crate::bpf_api::bpf_map_get_next_key(m.fd, cur_key, next_key) })
        }))
    }
}

ffi_fn! {
    /// `void *bpf_map__initial_value(const struct bpf_map *map, size_t *psize)`:
    /// the global-data image (before load) or the map's memory (after).
    ///
    /// # Safety
    /// `map` NULL or live; `psize` NULL or writable.
    pub unsafe fn bpf_map__initial_value(map: *const MapHandle, psize: *mut usize) -> *mut c_void {
        // SAFETY: caller contract.
        let result = unsafe { handle(map) }.and_then(|m| {
            if m.mmaped.ptr().is_null() {
                return Err(errno_err(libc::EINVAL));
            }
            // SAFETY: live handle.
            let def = unsafe { map_def(m) };
            if !psize.is_null() {
                // SAFETY: writable (caller contract).
                unsafe { *psize = def.value_size() as usize };
            }
            Ok(m.mmaped.ptr().cast::<c_void>())
        });
        ret(result)
    }
}

/// A setter that libbpf refuses with `-EBUSY` once the map is created.
///
/// # Safety
/// `map` NULL or a live map handle.
unsafe fn set_before_create(
    map: *mut MapHandle,
    set: impl FnOnce(&mut MapHandle, &mut BpfMap) -> Result<(), AbiError>,
) -> c_int {
    // SAFETY: caller contract.
    let Some(m) = (unsafe { map.as_mut() }) else {
        return c_int::from_error(&errno_err(libc::EINVAL));
    };
    if m.fd >= 0 {
        return c_int::from_error(&errno_err(libc::EBUSY));
    }
    // SAFETY: the owning object is live; only its loader object is borrowed
    // mutably, not the handle array `m` lives in.
    let obj = unsafe { &mut *std::ptr::addr_of_mut!((*m.obj).obj) };
    let idx = m.idx;
    ret(set(m, &mut obj.maps_mut()[idx]).map(|()| 0))
}

/// libbpf's `adjust_ringbuf_sz`: a power-of-2 multiple of the page size.
fn adjust_ringbuf_sz(sz: u32) -> u32 {
    if sz == 0 {
        return 0;
    }
    let page = 4096u64;
    let mut mul = 1u64;
    while mul * page <= u32::MAX as u64 {
        if mul * page >= sz as u64 {
            return (mul * page) as u32;
        }
        mul <<= 1;
    }
    sz
}

ffi_fn! {
    /// `int bpf_map__set_max_entries(struct bpf_map *map, __u32 max_entries)`
    ///
    /// # Safety
    /// `map` NULL or live.
    pub unsafe fn bpf_map__set_max_entries(map: *mut MapHandle, max_entries: c_uint) -> c_int {
        // SAFETY: caller contract.
        unsafe {
            set_before_create(map, |_, m| {
                let v = if matches!(m.map_type(), MapType::RINGBUF | MapType::USER_RINGBUF) {
                    adjust_ringbuf_sz(max_entries)
                } else {
                    max_entries
                };
                m.set_max_entries(v);
                Ok(())
            })
        }
    }
}

ffi_fn! {
    /// `int bpf_map__set_key_size(struct bpf_map *map, __u32 size)`
    ///
    /// # Safety
    /// `map` NULL or live.
    pub unsafe fn bpf_map__set_key_size(map: *mut MapHandle, size: c_uint) -> c_int {
        // SAFETY: caller contract.
        unsafe {
            set_before_create(map, |_, m| {
                m.set_key_size(size);
                Ok(())
            })
        }
    }
}

ffi_fn! {
    /// `int bpf_map__set_value_size(struct bpf_map *map, __u32 size)`:
    /// global data gets a new image of the new size (old bytes kept);
    /// `-EOPNOTSUPP` for other memory-mapped maps, as libbpf.
    ///
    /// # Safety
    /// `map` NULL or live.
    pub unsafe fn bpf_map__set_value_size(map: *mut MapHandle, size: c_uint) -> c_int {
        // SAFETY: caller contract.
        unsafe {
            set_before_create(map, |h, m| {
                if !h.mmaped.ptr().is_null() {
                    if m.map_type() != MapType::ARRAY {
                        return Err(errno_err(libc::EOPNOTSUPP));
                    }
                    h.mmaped.resize(size, m.max_entries()).inspect_err(|e| {
                        print::warn(&format!(
                            "map '{}': failed to resize memory-mapped region: -{}\n",
                            m.name(),
                            e.errno()
                        ))
                    })?;
                }
                m.set_value_size(size);
                Ok(())
            })
        }
    }
}

ffi_fn! {
    /// `int bpf_map__set_type(struct bpf_map *map, enum bpf_map_type type)`
    ///
    /// # Safety
    /// `map` NULL or live.
    pub unsafe fn bpf_map__set_type(map: *mut MapHandle, map_type: c_uint) -> c_int {
        // SAFETY: caller contract.
        unsafe {
            set_before_create(map, |_, m| {
                m.set_map_type(MapType(map_type));
                Ok(())
            })
        }
    }
}

ffi_fn! {
    /// `int bpf_map__set_map_flags(struct bpf_map *map, __u32 flags)`
    ///
    /// # Safety
    /// `map` NULL or live.
    pub unsafe fn bpf_map__set_map_flags(map: *mut MapHandle, flags: c_uint) -> c_int {
        // SAFETY: caller contract.
        unsafe {
            set_before_create(map, |_, m| {
                m.set_map_flags(flags);
                Ok(())
            })
        }
    }
}

ffi_fn! {
    /// `int bpf_map__set_map_extra(struct bpf_map *map, __u64 map_extra)`
    ///
    /// # Safety
    /// `map` NULL or live.
    pub unsafe fn bpf_map__set_map_extra(map: *mut MapHandle, extra: u64) -> c_int {
        // SAFETY: caller contract.
        unsafe {
            set_before_create(map, |_, m| {
                m.set_map_extra(extra);
                Ok(())
            })
        }
    }
}

ffi_fn! {
    /// `int bpf_map__set_numa_node(struct bpf_map *map, __u32 numa_node)`
    ///
    /// # Safety
    /// `map` NULL or live.
    pub unsafe fn bpf_map__set_numa_node(map: *mut MapHandle, node: c_uint) -> c_int {
        // SAFETY: caller contract.
        unsafe {
            set_before_create(map, |_, m| {
                m.set_numa_node(node);
                Ok(())
            })
        }
    }
}

ffi_fn! {
    /// `int bpf_map__set_autocreate(struct bpf_map *map, bool autocreate)`
    ///
    /// # Safety
    /// `map` NULL or live.
    pub unsafe fn bpf_map__set_autocreate(map: *mut MapHandle, autocreate: bool) -> c_int {
        // SAFETY: caller contract.
        unsafe {
            set_before_create(map, |h, m| {
                // SAFETY: the owning object is live.
                if (*h.obj).loaded.is_some() {
                    return Err(errno_err(libc::EBUSY));
                }
                m.set_autocreate(autocreate);
                Ok(())
            })
        }
    }
}

ffi_fn! {
    /// `int bpf_map__set_initial_value(struct bpf_map *map, const void *data, size_t size)`:
    /// only global data, only with the exact size, only before load.
    ///
    /// # Safety
    /// `map` NULL or live; `data` valid for `size` bytes.
    pub unsafe fn bpf_map__set_initial_value(
        map: *mut MapHandle,
        data: *const c_void,
        size: usize,
    ) -> c_int {
        // SAFETY: caller contract.
        unsafe {
            set_before_create(map, |h, m| {
                if h.mmaped.ptr().is_null() || size != m.value_size() as usize {
                    return Err(errno_err(libc::EINVAL));
                }
                let src = bytes(data, size)?;
                // SAFETY: the image is at least value_size bytes long.
                std::ptr::copy_nonoverlapping(src.as_ptr(), h.mmaped.ptr(), size);
                Ok(())
            })
        }
    }
}

/// A getter of the loader's map definition (0 with EINVAL for NULL).
///
/// # Safety
/// `map` NULL or live.
unsafe fn map_get<R: FfiReturn>(
    map: *const MapHandle,
    get: impl Fn(&MapHandle, &BpfMap) -> R,
) -> R {
    // SAFETY: caller contract.
    ret(unsafe { handle(map) }.map(|m| {
        // SAFETY: live handle.
        get(m, unsafe { map_def(m) })
    }))
}

ffi_fn! {
    /// `bool bpf_map__autocreate(const struct bpf_map *map)`
    ///
    /// # Safety
    /// `map` NULL or live.
    pub unsafe fn bpf_map__autocreate(map: *const MapHandle) -> bool {
        // SAFETY: caller contract.
        unsafe { map_get(map, |_, m| m.autocreate()) }
    }
}

ffi_fn! {
    /// `bool bpf_map__is_internal(const struct bpf_map *map)`
    ///
    /// # Safety
    /// `map` NULL or live.
    pub unsafe fn bpf_map__is_internal(map: *const MapHandle) -> bool {
        // SAFETY: caller contract.
        unsafe { map_get(map, |_, m| m.is_internal()) }
    }
}

ffi_fn! {
    /// `__u64 bpf_map__map_extra(const struct bpf_map *map)`
    ///
    /// # Safety
    /// `map` NULL or live.
    pub unsafe fn bpf_map__map_extra(map: *const MapHandle) -> u64 {
        // SAFETY: caller contract.
        unsafe { map_get(map, |_, m| m.map_extra()) }
    }
}

ffi_fn! {
    /// `__u32 bpf_map__numa_node(const struct bpf_map *map)`
    ///
    /// # Safety
    /// `map` NULL or live.
    pub unsafe fn bpf_map__numa_node(map: *const MapHandle) -> c_uint {
        // SAFETY: caller contract.
        unsafe { map_get(map, |_, m| m.numa_node()) }
    }
}

ffi_fn! {
    /// `__u32 bpf_map__btf_key_type_id(const struct bpf_map *map)`
    ///
    /// # Safety
    /// `map` NULL or live.
    pub unsafe fn bpf_map__btf_key_type_id(map: *const MapHandle) -> c_uint {
        // SAFETY: caller contract.
        unsafe { map_get(map, |_, m| m.btf_key_type_id()) }
    }
}

ffi_fn! {
    /// `__u32 bpf_map__btf_value_type_id(const struct bpf_map *map)`
    ///
    /// # Safety
    /// `map` NULL or live.
    pub unsafe fn bpf_map__btf_value_type_id(map: *const MapHandle) -> c_uint {
        // SAFETY: caller contract.
        unsafe { map_get(map, |_, m| m.btf_value_type_id()) }
    }
}

ffi_fn! {
    /// `__u32 bpf_map__ifindex(const struct bpf_map *map)`: no offload here.
    ///
    /// # Safety
    /// `map` NULL or live.
    pub unsafe fn bpf_map__ifindex(map: *const MapHandle) -> c_uint {
        // SAFETY: caller contract.
        unsafe { map_get(map, |_, _| 0u32) }
    }
}

ffi_fn! {
    /// `int bpf_map__set_ifindex(struct bpf_map *map, __u32 ifindex)`:
    /// device offload needs the kernel.
    ///
    /// # Safety
    /// `map` NULL or live.
    pub unsafe fn bpf_map__set_ifindex(map: *mut MapHandle, ifindex: c_uint) -> c_int {
        // SAFETY: caller contract.
        unsafe {
            set_before_create(map, |_, _| {
                if ifindex == 0 {
                    Ok(())
                } else {
                    Err(errno_err(libc::EOPNOTSUPP))
                }
            })
        }
    }
}

ffi_fn! {
    /// `int bpf_object__find_map_fd_by_name(const struct bpf_object *obj, const char *name)`
    ///
    /// # Safety
    /// `obj` NULL or live; `name` NULL or NUL-terminated.
    pub unsafe fn bpf_object__find_map_fd_by_name(
        obj: *const ObjectHandle,
        name: *const std::ffi::c_char,
    ) -> c_int {
        // SAFETY: caller contract.
        let map = unsafe { crate::object_api::bpf_object__find_map_by_name(obj, name) };
        if map.is_null() {
            return -crate::abi::errno();
        }
        // SAFETY: a live map handle.
        unsafe { crate::object_api::bpf_map__fd(map) }
    }
}

ffi_fn! {
    /// `int bpf_program__set_type(struct bpf_program *prog, enum bpf_prog_type type)`
    ///
    /// # Safety
    /// `prog` NULL or live.
    pub unsafe fn bpf_program__set_type(prog: *mut ProgramHandle, prog_type: c_uint) -> c_int {
        // SAFETY: caller contract.
        unsafe {
            set_prog_before_load(prog, |p| {
                p.set_prog_type(userbpf_libbpf_compat::object::ProgType(prog_type))
            })
        }
    }
}

ffi_fn! {
    /// `int bpf_program__set_expected_attach_type(struct bpf_program *prog, enum bpf_attach_type type)`
    ///
    /// # Safety
    /// `prog` NULL or live.
    pub unsafe fn bpf_program__set_expected_attach_type(
        prog: *mut ProgramHandle,
        attach_type: c_uint,
    ) -> c_int {
        // SAFETY: caller contract.
        unsafe {
            set_prog_before_load(prog, |p| {
                p.set_expected_attach_type(userbpf_libbpf_compat::object::AttachType(attach_type))
            })
        }
    }
}

/// A program setter that libbpf refuses with `-EBUSY` after load.
///
/// # Safety
/// `prog` NULL or a live program handle.
unsafe fn set_prog_before_load(
    prog: *mut ProgramHandle,
    set: impl FnOnce(&mut userbpf_libbpf_compat::object::BpfProgram),
) -> c_int {
    // SAFETY: caller contract.
    let Some(p) = (unsafe { prog.as_ref() }) else {
        return c_int::from_error(&errno_err(libc::EINVAL));
    };
    // SAFETY: the owning object is live; only its loader object is borrowed.
    let obj = unsafe { &mut *std::ptr::addr_of_mut!((*p.obj).obj) };
    // SAFETY: as above.
    if unsafe { (*p.obj).loaded.is_some() } {
        return c_int::from_error(&errno_err(libc::EBUSY));
    }
    match obj.programs_mut().nth(p.idx) {
        Some(bp) => {
            set(bp);
            0
        }
        None => c_int::from_error(&errno_err(libc::EINVAL)),
    }
}

ffi_fn! {
    /// `__u32 bpf_program__flags(const struct bpf_program *prog)`
    ///
    /// # Safety
    /// `prog` NULL or live.
    pub unsafe fn bpf_program__flags(prog: *const ProgramHandle) -> c_uint {
        // SAFETY: caller contract.
        ret(unsafe { handle(prog) }.map(|p| p.flags))
    }
}

ffi_fn! {
    /// `int bpf_program__set_flags(struct bpf_program *prog, __u32 flags)`
    ///
    /// # Safety
    /// `prog` NULL or live.
    pub unsafe fn bpf_program__set_flags(prog: *mut ProgramHandle, flags: c_uint) -> c_int {
        // SAFETY: caller contract.
        let Some(p) = (unsafe { prog.as_mut() }) else {
            return c_int::from_error(&errno_err(libc::EINVAL));
        };
        if p.fd >= 0 {
            return c_int::from_error(&errno_err(libc::EBUSY));
        }
        p.flags = flags;
        0
    }
}

ffi_fn! {
    /// `__u32 bpf_program__log_level(const struct bpf_program *prog)`
    ///
    /// # Safety
    /// `prog` NULL or live.
    pub unsafe fn bpf_program__log_level(prog: *const ProgramHandle) -> c_uint {
        // SAFETY: caller contract.
        ret(unsafe { handle(prog) }.map(|p| p.log_level))
    }
}

ffi_fn! {
    /// `int bpf_program__set_log_level(struct bpf_program *prog, __u32 log_level)`
    ///
    /// # Safety
    /// `prog` NULL or live.
    pub unsafe fn bpf_program__set_log_level(prog: *mut ProgramHandle, level: c_uint) -> c_int {
        // SAFETY: caller contract.
        let Some(p) = (unsafe { prog.as_mut() }) else {
            return c_int::from_error(&errno_err(libc::EINVAL));
        };
        if p.fd >= 0 {
            return c_int::from_error(&errno_err(libc::EBUSY));
        }
        p.log_level = level;
        0
    }
}

/// `enum bpf_attach_type` values whose kernel targets have a name prefix
/// in vmlinux BTF (libbpf's `btf_attach_type` table).
mod attach {
    pub const BPF_TRACE_RAW_TP: u32 = 23;
    pub const BPF_LSM_MAC: u32 = 27;
    pub const BPF_TRACE_ITER: u32 = 28;
    pub const BPF_LSM_CGROUP: u32 = 43;
}

/// libbpf's `find_attach_btf_id`: the BTF id of attach target `name` for
/// `attach_type` (`btf_trace_<name>` typedefs for raw tracepoints,
/// `bpf_lsm_<name>` / `bpf_iter_<name>` functions, else the function).
fn find_attach_btf_id(
    btf: &userbpf_btf_core::Btf,
    name: &str,
    attach_type: u32,
) -> Result<u32, AbiError> {
    use userbpf_btf_core::BtfKind;
    let (prefix, kind) = match attach_type {
        attach::BPF_TRACE_RAW_TP => ("btf_trace_", BtfKind::Typedef),
        attach::BPF_LSM_MAC | attach::BPF_LSM_CGROUP => ("bpf_lsm_", BtfKind::Func),
        attach::BPF_TRACE_ITER => ("bpf_iter_", BtfKind::Func),
        _ => ("", BtfKind::Func),
    };
    btf.find_by_name_kind(format!("{prefix}{name}"), kind)
        .ok_or(errno_err(libc::ENOENT))
}

/// The C string at `p` (NULL: None).
///
/// # Safety
/// `p` NULL or NUL-terminated.
unsafe fn c_str_arg(p: *const std::ffi::c_char) -> Option<String> {
    if p.is_null() {
        return None;
    }
    // SAFETY: caller contract.
    Some(
        unsafe { std::ffi::CStr::from_ptr(p) }
            .to_string_lossy()
            .into_owned(),
    )
}

ffi_fn! {
    /// `int libbpf_find_vmlinux_btf_id(const char *name, enum bpf_attach_type attach_type)`
    ///
    /// # Safety
    /// `name` NULL or NUL-terminated.
    pub unsafe fn libbpf_find_vmlinux_btf_id(name: *const std::ffi::c_char, attach_type: c_uint) -> c_int {
        // SAFETY: caller contract.
        let Some(name) = (unsafe { c_str_arg(name) }) else {
            return c_int::from_error(&errno_err(libc::EINVAL));
        };
        let btf = match system_btf() {
            Ok(t) => t.vmlinux(),
            Err(e) => {
                print::warn("vmlinux BTF is not found\n");
                return c_int::from_error(&e);
            }
        };
        match find_attach_btf_id(btf, &name, attach_type) {
            Ok(id) => id as c_int,
            Err(e) => {
                print::warn(&format!("{name} is not found in vmlinux BTF\n"));
                c_int::from_error(&e)
            }
        }
    }
}

ffi_fn! {
    /// `int bpf_program__set_attach_target(struct bpf_program *prog, int attach_prog_fd, const char *attach_func_name)`:
    /// resolves a kernel attach target (fentry/fexit, raw_tp BTF, LSM) in
    /// vmlinux BTF. Targets in other BPF programs need the kernel.
    ///
    /// # Safety
    /// `prog` NULL or live; `name` NULL or NUL-terminated.
    pub unsafe fn bpf_program__set_attach_target(
        prog: *mut ProgramHandle,
        attach_prog_fd: c_int,
        attach_func_name: *const std::ffi::c_char,
    ) -> c_int {
        // SAFETY: caller contract.
        let Some(p) = (unsafe { prog.as_mut() }) else {
            return c_int::from_error(&errno_err(libc::EINVAL));
        };
        // SAFETY: the owning object is live.
        if attach_prog_fd < 0 || unsafe { (*p.obj).loaded.is_some() } {
            return c_int::from_error(&errno_err(libc::EINVAL));
        }
        // SAFETY: caller contract.
        let name = unsafe { c_str_arg(attach_func_name) };
        if attach_prog_fd != 0 {
            if name.is_none() {
                p.attach_prog_fd = attach_prog_fd;
                return 0;
            }
            // BTF of a loaded BPF program (freplace): a kernel-only target.
            return c_int::from_error(&errno_err(libc::EOPNOTSUPP));
        }
        let Some(name) = name else {
            return c_int::from_error(&errno_err(libc::EINVAL));
        };
        let btf = match system_btf() {
            Ok(t) => t.vmlinux(),
            Err(e) => return c_int::from_error(&e),
        };
        // SAFETY: a live program handle.
        let Some(bp) = (unsafe { crate::object_api::program(p) }) else {
            return c_int::from_error(&errno_err(libc::EINVAL));
        };
        match find_attach_btf_id(btf, &name, bp.expected_attach_type().0) {
            Ok(id) => {
                p.attach_btf_id = id;
                p.attach_prog_fd = 0;
                0
            }
            // libbpf's find_kernel_btf_id: not in vmlinux nor any module.
            Err(_) => c_int::from_error(&errno_err(libc::ESRCH)),
        }
    }
}

ffi_fn! {
    /// `bool bpf_program__autoattach(const struct bpf_program *prog)`
    ///
    /// # Safety
    /// `prog` NULL or live.
    pub unsafe fn bpf_program__autoattach(prog: *const ProgramHandle) -> bool {
        // SAFETY: caller contract.
        let p = unsafe { handle(prog) }.and_then(|p| {
            // SAFETY: p is live.
            unsafe { crate::object_api::program(p) }.ok_or(errno_err(libc::EINVAL))
        });
        ret(p.map(|p| p.autoattach()))
    }
}

ffi_fn! {
    /// `void bpf_program__set_autoattach(struct bpf_program *prog, bool autoattach)`
    ///
    /// # Safety
    /// `prog` NULL or live.
    pub unsafe fn bpf_program__set_autoattach(prog: *mut ProgramHandle, autoattach: bool) {
        // SAFETY: caller contract.
        let Some(p) = (unsafe { prog.as_ref() }) else {
            return;
        };
        // SAFETY: the owning object is live; only its loader object is borrowed.
        let obj = unsafe { &mut *std::ptr::addr_of_mut!((*p.obj).obj) };
        if let Some(bp) = obj.programs_mut().nth(p.idx) {
            bp.set_autoattach(autoattach);
        }
    }
}

ffi_fn! {
    /// `struct btf *bpf_object__btf(const struct bpf_object *obj)`: the
    /// object's BTF (NULL, errno untouched, when it has none).
    ///
    /// # Safety
    /// `obj` NULL or live.
    pub unsafe fn bpf_object__btf(obj: *const ObjectHandle) -> *mut crate::btf_api::BtfHandle {
        // SAFETY: caller contract.
        let result = unsafe { handle(obj) }.map(|o| match o.obj.btf() {
            Some(btf) => {
                let h = o.btf_handle.get_or_init(|| {
                    crate::btf_api::BtfHandle::new(Arc::new(btf.clone()), std::ptr::null())
                });
                &**h as *const crate::btf_api::BtfHandle as *mut crate::btf_api::BtfHandle
            }
            None => std::ptr::null_mut(),
        });
        ret(result)
    }
}

ffi_fn! {
    /// `int bpf_object__btf_fd(const struct bpf_object *obj)`: no BTF is
    /// loaded into a kernel here, so -1 as libbpf without kernel BTF.
    ///
    /// # Safety
    /// `obj` NULL or live.
    pub unsafe fn bpf_object__btf_fd(obj: *const ObjectHandle) -> c_int {
        // SAFETY: caller contract.
        ret(unsafe { handle(obj) }.map(|_| -1))
    }
}

ffi_fn! {
    /// `bool bpf_map__autoattach(const struct bpf_map *map)`: whether the
    /// skeleton attaches this (struct_ops) map.
    ///
    /// # Safety
    /// `map` NULL or live.
    pub unsafe fn bpf_map__autoattach(map: *const MapHandle) -> bool {
        // SAFETY: caller contract.
        unsafe { map.as_ref() }.is_some_and(|m| m.autoattach)
    }
}

ffi_fn! {
    /// `int bpf_map__set_autoattach(struct bpf_map *map, bool autoattach)`:
    /// -EINVAL for anything but a struct_ops map, as libbpf.
    ///
    /// # Safety
    /// `map` NULL or live.
    pub unsafe fn bpf_map__set_autoattach(map: *mut MapHandle, autoattach: bool) -> c_int {
        // SAFETY: caller contract.
        let Some(m) = (unsafe { map.as_mut() }) else {
            return ret(Err::<c_int, _>(errno_err(libc::EINVAL)));
        };
        // SAFETY: a live map handle.
        let def = unsafe { map_def(m) };
        if def.map_type() != MapType::STRUCT_OPS {
            return ret(Err::<c_int, _>(errno_err(libc::EINVAL)));
        }
        m.autoattach = autoattach;
        0
    }
}
