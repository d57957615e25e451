//! The open / inspect half of libbpf's object API: `bpf_object__open*`,
//! `bpf_object__close`, iteration and lookup of programs and maps, and their
//! getters. Nothing here creates a kernel object.
//!
//! A `struct bpf_object *` is a boxed [`ObjectHandle`] owning the loader's
//! [`Object`] and one boxed [`ProgramHandle`] per entry program and
//! [`MapHandle`] per map, created at open time: the pointers handed out stay
//! the same until `bpf_object__close`, as libbpf's do.

#![allow(non_snake_case)]

use std::ffi::{c_char, c_int, c_uint, CStr, CString};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use userbpf_libbpf_compat::object::{LogLevel, Object, OpenOptions};

use crate::abi::FfiReturn;
use crate::error::AbiError;
use crate::ffi_fn;
use crate::opts::{read_opts, OptsStruct};
use crate::print::{self, Level};
use userbpf_libbpf_compat::backend::placement::{BackendMode, BACKEND_ENV};

/// libbpf's `struct bpf_object` (opaque to C).
#[derive(Debug)]
pub struct ObjectHandle {
    pub(crate) obj: Object,
    pub(crate) name: CString,
    /// Never resized after open, so the elements' addresses are stable.
    pub(crate) progs: Box<[ProgramHandle]>,
    /// As `progs`.
    pub(crate) maps: Box<[MapHandle]>,
    /// Set by `bpf_object__load`.
    pub(crate) loaded: Option<crate::load_api::LoadedState>,
    /// `bpf_object__btf`'s handle, made on first use.
    pub(crate) btf_handle: std::sync::OnceLock<Box<crate::btf_api::BtfHandle>>,
    /// The backend switch: `userbpf_object_open_opts.backend`, else
    /// `USERBPF_BACKEND`, else auto.
    pub(crate) backend: BackendMode,
    /// libbpf's `obj->path`: the file, or for a buffer the object name
    /// (`"<addr>-<size>"` when none was given), as its messages print it.
    pub(crate) path: String,
    /// The object's USDT spec ids, made on its first USDT attachment
    /// (libbpf's `usdt_manager`); links hold it too.
    pub(crate) usdt_manager:
        std::sync::OnceLock<Arc<userbpf_libbpf_compat::attach::usdt::UsdtManager>>,
}

/// libbpf's `struct bpf_program` (opaque to C).
#[derive(Debug)]
pub struct ProgramHandle {
    pub(crate) obj: *mut ObjectHandle,
    /// Index among the object's entry programs.
    pub(crate) idx: usize,
    pub(crate) name: CString,
    pub(crate) sec_name: CString,
    /// The ELF instructions as `struct bpf_insn` bytes (the loaded ones
    /// after load, as libbpf's `bpf_program__insns`).
    pub(crate) insns: Vec<[u8; 8]>,
    /// `bpf_program__fd`: -1 until loaded.
    pub(crate) fd: c_int,
    pub(crate) log_level: u32,
    pub(crate) flags: u32,
    /// `bpf_program__set_attach_target`: the kernel BTF id of the target.
    pub(crate) attach_btf_id: u32,
    pub(crate) attach_prog_fd: c_int,
    pub(crate) ifindex: u32,
}

/// libbpf's `struct bpf_map` (opaque to C).
#[derive(Debug)]
pub struct MapHandle {
    pub(crate) obj: *mut ObjectHandle,
    /// Index in [`Object::maps`].
    pub(crate) idx: usize,
    pub(crate) name: CString,
    /// -1 until the map is created (or, for a map left out by autocreate,
    /// until load, when it gets a placeholder fd as in libbpf).
    pub(crate) fd: c_int,
    pub(crate) placeholder: Option<std::os::fd::OwnedFd>,
    /// `bpf_map__set_pin_path` / `bpf_map__pin`.
    pub(crate) pin_path: Option<CString>,
    pub(crate) pinned: bool,
    /// `bpf_map__set_inner_map_fd`: -1, or the fd whose map is the template.
    pub(crate) inner_map_fd: c_int,
    /// `bpf_map__reuse_fd`: the existing map load uses instead of a new one.
    pub(crate) reused: Option<std::sync::Arc<userbpf_runtime::maps::Map>>,
    /// `bpf_map__set_autoattach`: only struct_ops maps attach (true for
    /// them by default, as libbpf).
    pub(crate) autoattach: bool,
    /// `bpf_map__reuse_fd` (or a pin) of a kernel map: a dup of its fd.
    pub(crate) reused_kernel: Option<std::os::fd::OwnedFd>,
    /// Global data: the memory the skeleton's `obj->bss` etc. point at
    /// (anonymous before load, the map's own memory after, same address).
    pub(crate) mmaped: crate::load_api::Mmaped,
}

/// `struct bpf_object_open_opts` (libbpf 1.7, x86-64 and aarch64 layout).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BpfObjectOpenOpts {
    pub(crate) sz: usize,
    pub(crate) object_name: *const c_char,
    relaxed_maps: u8,
    pin_root_path: *const c_char,
    _attach_prog_fd: u32,
    kconfig: *const c_char,
    btf_custom_path: *const c_char,
    kernel_log_buf: *mut c_char,
    kernel_log_size: usize,
    kernel_log_level: u32,
    bpf_token_path: *const c_char,
}

// SAFETY: repr(C), starts with `size_t sz`, only integers and raw pointers
// (the C `bool` is read as a byte).
unsafe impl OptsStruct for BpfObjectOpenOpts {
    const NAME: &'static str = "bpf_object_open_opts";
}

/// `USERBPF_OPEN_OPTS_MAGIC` of `include/bpf/userbpf.h` ("userbpf1").
pub const USERBPF_OPEN_OPTS_MAGIC: u64 = u64::from_le_bytes(*b"userbpf1");

/// `struct userbpf_object_open_opts` (`include/bpf/userbpf.h`): libbpf's
/// open opts followed by userbpf's own fields, recognised by `sz` and the
/// magic (a later libbpf's larger opts cannot be mistaken for it).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct UserbpfObjectOpenOpts {
    pub(crate) base: BpfObjectOpenOpts,
    pub(crate) magic: u64,
    /// `"auto"`, `"user"` or `"kernel"`; NULL: `USERBPF_BACKEND`, else auto.
    pub(crate) backend: *const c_char,
}

// SAFETY: as BpfObjectOpenOpts, plus an integer and a pointer.
unsafe impl OptsStruct for UserbpfObjectOpenOpts {
    const NAME: &'static str = "userbpf_object_open_opts";
}

/// Reads open opts that may be userbpf's extended ones: libbpf's part, and
/// the backend the caller asked for (None: not given).
///
/// # Safety
/// As `read_opts`.
unsafe fn read_open_opts(
    opts: *const BpfObjectOpenOpts,
) -> Result<(Option<BpfObjectOpenOpts>, Option<BackendMode>), AbiError> {
    if opts.is_null() {
        return Ok((None, None));
    }
    let ext = std::mem::size_of::<UserbpfObjectOpenOpts>();
    // SAFETY: a non-NULL opts pointer points at least at its `sz`.
    let sz = unsafe { opts.cast::<usize>().read_unaligned() };
    if sz >= ext {
        let magic_at = std::mem::offset_of!(UserbpfObjectOpenOpts, magic);
        // SAFETY: the caller's struct has `sz >= ext` readable bytes.
        let magic = unsafe {
            opts.cast::<u8>()
                .add(magic_at)
                .cast::<u64>()
                .read_unaligned()
        };
        if magic == USERBPF_OPEN_OPTS_MAGIC {
            // SAFETY: caller contract.
            let Some(o) = (unsafe { read_opts(opts.cast::<UserbpfObjectOpenOpts>()) })? else {
                return Ok((None, None));
            };
            // SAFETY: NULL or NUL-terminated (caller contract).
            let backend = match unsafe { opt_str(o.backend) } {
                None => None,
                Some(name) => match BackendMode::parse(&name) {
                    Some(mode) => Some(mode),
                    None => {
                        print::warn(&format!(
                            "userbpf_object_open_opts: unknown backend '{name}' (auto, user or kernel)\n"
                        ));
                        return Err(errno_err(libc::EINVAL));
                    }
                },
            };
            return Ok((Some(o.base), backend));
        }
    }
    // SAFETY: caller contract.
    Ok((unsafe { read_opts(opts) }?, None))
}

pub(crate) fn errno_err(e: i32) -> AbiError {
    AbiError::Errno(e)
}

/// The C string at `p` (NULL: None), lossily as UTF-8.
///
/// # Safety
/// `p` must be NULL or a NUL-terminated string.
pub(crate) unsafe fn opt_str(p: *const c_char) -> Option<String> {
    if p.is_null() {
        return None;
    }
    // SAFETY: non-NULL, NUL-terminated (caller contract).
    Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

/// `strerror(e)`.
pub(crate) fn strerror(e: i32) -> String {
    let mut buf = [0 as c_char; 128];
    // SAFETY: buf is 128 writable bytes; strerror_r NUL-terminates within it.
    let ok = unsafe { libc::strerror_r(e, buf.as_mut_ptr(), buf.len()) } == 0;
    if !ok {
        return format!("Unknown error {e}");
    }
    // SAFETY: NUL-terminated by strerror_r.
    unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

pub(crate) fn c_string(s: &str) -> CString {
    CString::new(s.replace('\0', "")).unwrap_or_default()
}

pub(crate) fn print_level(level: LogLevel) -> Level {
    match level {
        LogLevel::Warn => Level::Warn,
        LogLevel::Info => Level::Info,
        LogLevel::Debug => Level::Debug,
    }
}

/// Where the bytes come from: `bpf_object__open_file` or `bpf_object__open_mem`.
pub(crate) enum Source<'a> {
    File(&'a str),
    Mem(&'a [u8]),
}

/// `bpf_object_open`: validates `opts`, opens, wraps the result in handles.
///
/// # Safety
/// `opts` must be NULL or a valid `bpf_object_open_opts` of `opts->sz` bytes
/// whose string fields are NULL or NUL-terminated.
pub(crate) unsafe fn open_object(
    source: Source<'_>,
    opts: *const BpfObjectOpenOpts,
) -> Result<Box<ObjectHandle>, AbiError> {
    // SAFETY: caller contract.
    let (opts, backend) = unsafe { read_open_opts(opts) }?;
    let backend = match backend {
        Some(b) => b,
        None => BackendMode::from_env().map_err(|bad| {
            print::warn(&format!(
                "{BACKEND_ENV}='{bad}' is not a backend (auto, user or kernel)\n"
            ));
            errno_err(libc::EINVAL)
        })?,
    };
    let mut options = OpenOptions::default();
    if let Some(o) = opts {
        // SAFETY: string fields within sz are NULL or NUL-terminated (caller
        // contract); fields past sz were zeroed (NULL).
        unsafe {
            options.object_name = opt_str(o.object_name);
            options.pin_root_path = opt_str(o.pin_root_path).map(PathBuf::from);
            options.kconfig = opt_str(o.kconfig);
            options.btf_custom_path = opt_str(o.btf_custom_path).map(PathBuf::from);
        }
        if o.kernel_log_size > u32::MAX as usize
            || (o.kernel_log_size != 0 && o.kernel_log_buf.is_null())
        {
            return Err(errno_err(libc::EINVAL));
        }
        if !o.bpf_token_path.is_null() {
            // SAFETY: NUL-terminated (caller contract).
            let len = unsafe { CStr::from_ptr(o.bpf_token_path) }.to_bytes().len();
            if len >= libc::PATH_MAX as usize {
                return Err(errno_err(libc::ENAMETOOLONG));
            }
        }
    }
    // The loader's first line is its "loading object '<name>' from buffer";
    // for a file libbpf has printed "loading <path>" instead.
    let skip_first = Arc::new(AtomicBool::new(matches!(source, Source::File(_))));
    options.log = Some(Arc::new(move |level, msg: &str| {
        if skip_first.swap(false, Ordering::Relaxed) && msg.starts_with("loading object '") {
            return;
        }
        print::print(print_level(level), &format!("{msg}\n"));
    }));
    let path = match source {
        Source::File(path) => path.to_string(),
        Source::Mem(bytes) => options
            .object_name
            .clone()
            .unwrap_or_else(|| format!("{:x}-{:x}", bytes.as_ptr() as usize, bytes.len())),
    };
    let result = match source {
        Source::File(path) => {
            let bytes = std::fs::read(path).map_err(|e| {
                let code = e.raw_os_error().unwrap_or(libc::EIO);
                print::warn(&format!("elf: failed to open {path}: {}\n", strerror(code)));
                errno_err(code)
            })?;
            if options.object_name.is_none() {
                // basename() up to the first '.'.
                let base = path.rsplit('/').next().unwrap_or("");
                options.object_name = Some(base.split('.').next().unwrap_or("").to_string());
            }
            Object::open(&bytes, options)
        }
        Source::Mem(bytes) => Object::open(bytes, options),
    };
    // The loader has logged libbpf's warning for any failure.
    let obj = result.map_err(|e| errno_err(e.errno()))?;
    let mut handle = wrap(obj);
    handle.backend = backend;
    handle.path = path;
    Ok(handle)
}

/// Builds the handles of an opened object ([`into_ptr`] sets their back
/// pointers).
fn wrap(obj: Object) -> Box<ObjectHandle> {
    let mut handle = Box::new(ObjectHandle {
        name: c_string(obj.name()),
        obj,
        progs: Box::default(),
        maps: Box::default(),
        loaded: None,
        btf_handle: std::sync::OnceLock::new(),
        backend: BackendMode::Auto,
        path: String::new(),
        usdt_manager: std::sync::OnceLock::new(),
    });
    let progs = handle
        .obj
        .programs()
        .enumerate()
        .map(|(idx, p)| ProgramHandle {
            obj: std::ptr::null_mut(),
            idx,
            name: c_string(p.name()),
            sec_name: c_string(p.section_name()),
            insns: p.original_insns().iter().map(|i| i.to_bytes()).collect(),
            fd: -1,
            log_level: 0,
            flags: 0,
            attach_btf_id: 0,
            attach_prog_fd: 0,
            ifindex: 0,
        })
        .collect();
    let maps = handle
        .obj
        .maps()
        .iter()
        .enumerate()
        .map(|(idx, m)| MapHandle {
            obj: std::ptr::null_mut(),
            idx,
            name: c_string(m.name()),
            fd: -1,
            placeholder: None,
            pin_path: m.pin_path().and_then(|p| CString::new(p).ok()),
            pinned: false,
            reused: None,
            reused_kernel: None,
            autoattach: m.map_type() == userbpf_libbpf_compat::object::MapType::STRUCT_OPS,
            inner_map_fd: -1,
            mmaped: crate::load_api::Mmaped::for_map(m),
        })
        .collect();
    handle.progs = progs;
    handle.maps = maps;
    handle
}

/// Hands a result to C: the pointer, or NULL with errno.
pub(crate) fn into_ptr(result: Result<Box<ObjectHandle>, AbiError>) -> *mut ObjectHandle {
    match result {
        Ok(handle) => {
            // The back pointers are derived from the pointer C gets, so
            // every later access goes through the same provenance.
            let raw = Box::into_raw(handle);
            // SAFETY: raw is the unique pointer to a live ObjectHandle.
            let obj = unsafe { &mut *raw };
            for p in obj.progs.iter_mut() {
                p.obj = raw;
            }
            for m in obj.maps.iter_mut() {
                m.obj = raw;
            }
            raw
        }
        Err(e) => <*mut ObjectHandle>::from_error(&e),
    }
}

/// `&*p`, or EINVAL for NULL.
///
/// # Safety
/// `p` must be NULL or a live handle from this module.
pub(crate) unsafe fn handle<'a, T>(p: *const T) -> Result<&'a T, AbiError> {
    // SAFETY: NULL or a live handle (caller contract).
    unsafe { p.as_ref() }.ok_or(errno_err(libc::EINVAL))
}

/// The program's object.
///
/// # Safety
/// `prog` must be a live program handle.
pub(crate) unsafe fn prog_obj<'a>(prog: &ProgramHandle) -> &'a ObjectHandle {
    // SAFETY: a program handle lives inside its (live) object.
    unsafe { &*prog.obj }
}

/// The map's loader object.
///
/// # Safety
/// `map` must be a live map handle.
pub(crate) unsafe fn map_def<'a>(map: &MapHandle) -> &'a userbpf_libbpf_compat::object::BpfMap {
    // SAFETY: a map handle lives inside its (live) object.
    let obj = unsafe { &(*map.obj).obj };
    &obj.maps()[map.idx]
}

/// Returns `Ok(value)` or the error value of `R`.
pub(crate) fn ret<R: FfiReturn>(result: Result<R, AbiError>) -> R {
    result.unwrap_or_else(|e| R::from_error(&e))
}

ffi_fn! {
    /// `struct bpf_object *bpf_object__open_file(const char *path, const struct bpf_object_open_opts *opts)`
    ///
    /// # Safety
    /// `path` must be NULL or NUL-terminated; `opts` NULL or a valid opts struct.
    pub unsafe fn bpf_object__open_file(
        path: *const c_char,
        opts: *const BpfObjectOpenOpts,
    ) -> *mut ObjectHandle {
        // SAFETY: NULL or NUL-terminated (caller contract).
        let Some(path) = (unsafe { opt_str(path) }) else {
            return into_ptr(Err(errno_err(libc::EINVAL)));
        };
        print::debug(&format!("loading {path}\n"));
        // SAFETY: opts per caller contract.
        into_ptr(unsafe { open_object(Source::File(&path), opts) })
    }
}

ffi_fn! {
    /// `struct bpf_object *bpf_object__open_mem(const void *obj_buf, size_t obj_buf_sz, const struct bpf_object_open_opts *opts)`
    ///
    /// # Safety
    /// `buf` must be NULL or valid for `size` bytes; `opts` NULL or a valid opts struct.
    pub unsafe fn bpf_object__open_mem(
        buf: *const u8,
        size: usize,
        opts: *const BpfObjectOpenOpts,
    ) -> *mut ObjectHandle {
        if buf.is_null() || size == 0 {
            return into_ptr(Err(errno_err(libc::EINVAL)));
        }
        // SAFETY: buf is valid for size bytes (caller contract).
        let bytes = unsafe { std::slice::from_raw_parts(buf, size) };
        // SAFETY: opts per caller contract.
        into_ptr(unsafe { open_object(Source::Mem(bytes), opts) })
    }
}

ffi_fn! {
    /// `struct bpf_object *bpf_object__open(const char *path)`
    ///
    /// # Safety
    /// `path` must be NULL or NUL-terminated.
    pub unsafe fn bpf_object__open(path: *const c_char) -> *mut ObjectHandle {
        // SAFETY: caller contract; NULL opts.
        unsafe { bpf_object__open_file(path, std::ptr::null()) }
    }
}

/// Linux's `MAX_ERRNO`: `IS_ERR_OR_NULL` pointers.
const MAX_ERRNO: usize = 4095;

ffi_fn! {
    /// `void bpf_object__close(struct bpf_object *obj)`: NULL and `ERR_PTR`s are ignored.
    ///
    /// # Safety
    /// `obj` must be NULL, an `ERR_PTR` or an object from `bpf_object__open*`
    /// not closed yet.
    pub unsafe fn bpf_object__close(obj: *mut ObjectHandle) {
        if obj.is_null() || obj as usize >= MAX_ERRNO.wrapping_neg() {
            return;
        }
        // SAFETY: obj came from Box::into_raw in into_ptr (caller contract).
        drop(unsafe { Box::from_raw(obj) });
    }
}

ffi_fn! {
    /// `const char *bpf_object__name(const struct bpf_object *obj)`
    ///
    /// # Safety
    /// `obj` must be NULL or a live object.
    pub unsafe fn bpf_object__name(obj: *const ObjectHandle) -> *const c_char {
        // SAFETY: caller contract.
        ret(unsafe { handle(obj) }.map(|o| o.name.as_ptr()))
    }
}

/// `__bpf_program__iter` / `__bpf_map__iter` over `items`, skipping nothing.
fn iter_step<T>(
    items: &[T],
    owner: *mut ObjectHandle,
    prev: *const T,
    prev_owner: impl Fn(&T) -> (*mut ObjectHandle, usize),
    forward: bool,
    mismatch: &str,
) -> *mut T {
    if items.is_empty() {
        return std::ptr::null_mut();
    }
    // SAFETY: prev is NULL or a live handle (the entry points' contract).
    let Some(prev) = (unsafe { prev.as_ref() }) else {
        let first = if forward { 0 } else { items.len() - 1 };
        return &items[first] as *const T as *mut T;
    };
    let (prev_obj, idx) = prev_owner(prev);
    if prev_obj != owner {
        print::warn(mismatch);
        crate::abi::set_errno(libc::EINVAL);
        return std::ptr::null_mut();
    }
    let next = if forward {
        idx.checked_add(1)
    } else {
        idx.checked_sub(1)
    };
    match next.and_then(|i| items.get(i)) {
        Some(item) => item as *const T as *mut T,
        None => std::ptr::null_mut(),
    }
}

/// `bpf_object__{next,prev}_program`.
///
/// # Safety
/// `obj` must be a live object (or NULL), `prev` NULL or a program handle.
unsafe fn program_step(
    obj: *const ObjectHandle,
    prev: *const ProgramHandle,
    forward: bool,
) -> *mut ProgramHandle {
    // SAFETY: caller contract.
    let Some(o) = (unsafe { obj.as_ref() }) else {
        return <*mut ProgramHandle>::from_error(&errno_err(libc::EINVAL));
    };
    iter_step(
        &o.progs,
        obj as *mut ObjectHandle,
        prev,
        |p| (p.obj, p.idx),
        forward,
        "error: program handler doesn't match object\n",
    )
}

/// `bpf_object__{next,prev}_map`.
///
/// # Safety
/// `obj` must be a live object (or NULL), `prev` NULL or a map handle.
unsafe fn map_step(
    obj: *const ObjectHandle,
    prev: *const MapHandle,
    forward: bool,
) -> *mut MapHandle {
    // SAFETY: caller contract.
    let Some(o) = (unsafe { obj.as_ref() }) else {
        return <*mut MapHandle>::from_error(&errno_err(libc::EINVAL));
    };
    iter_step(
        &o.maps,
        obj as *mut ObjectHandle,
        prev,
        |m| (m.obj, m.idx),
        forward,
        "error in __bpf_map__iter: map handler doesn't match object\n",
    )
}

ffi_fn! {
    /// `struct bpf_program *bpf_object__next_program(const struct bpf_object *obj, struct bpf_program *prev)`
    ///
    /// # Safety
    /// `obj` must be a live object, `prev` NULL or one of its programs.
    pub unsafe fn bpf_object__next_program(
        obj: *const ObjectHandle,
        prev: *mut ProgramHandle,
    ) -> *mut ProgramHandle {
        // SAFETY: caller contract.
        unsafe { program_step(obj, prev, true) }
    }
}

ffi_fn! {
    /// `struct bpf_program *bpf_object__prev_program(const struct bpf_object *obj, struct bpf_program *next)`
    ///
    /// # Safety
    /// `obj` must be a live object, `next` NULL or one of its programs.
    pub unsafe fn bpf_object__prev_program(
        obj: *const ObjectHandle,
        next: *mut ProgramHandle,
    ) -> *mut ProgramHandle {
        // SAFETY: caller contract.
        unsafe { program_step(obj, next, false) }
    }
}

ffi_fn! {
    /// `struct bpf_map *bpf_object__next_map(const struct bpf_object *obj, const struct bpf_map *prev)`
    ///
    /// # Safety
    /// `obj` must be a live object, `prev` NULL or one of its maps.
    pub unsafe fn bpf_object__next_map(
        obj: *const ObjectHandle,
        prev: *const MapHandle,
    ) -> *mut MapHandle {
        // SAFETY: caller contract.
        unsafe { map_step(obj, prev, true) }
    }
}

ffi_fn! {
    /// `struct bpf_map *bpf_object__prev_map(const struct bpf_object *obj, const struct bpf_map *next)`
    ///
    /// # Safety
    /// `obj` must be a live object, `next` NULL or one of its maps.
    pub unsafe fn bpf_object__prev_map(
        obj: *const ObjectHandle,
        next: *const MapHandle,
    ) -> *mut MapHandle {
        // SAFETY: caller contract.
        unsafe { map_step(obj, next, false) }
    }
}

ffi_fn! {
    /// `struct bpf_program *bpf_object__find_program_by_name(const struct bpf_object *obj, const char *name)`:
    /// NULL with `ENOENT` if there is none.
    ///
    /// # Safety
    /// `obj` must be NULL or a live object, `name` NULL or NUL-terminated.
    pub unsafe fn bpf_object__find_program_by_name(
        obj: *const ObjectHandle,
        name: *const c_char,
    ) -> *mut ProgramHandle {
        // SAFETY: caller contract.
        let (o, name) = match (unsafe { obj.as_ref() }, name.is_null()) {
            (Some(o), false) => (o, name),
            _ => return <*mut ProgramHandle>::from_error(&errno_err(libc::EINVAL)),
        };
        // SAFETY: NUL-terminated (caller contract).
        let name = unsafe { CStr::from_ptr(name) };
        match o.progs.iter().find(|p| p.name.as_c_str() == name) {
            Some(p) => p as *const ProgramHandle as *mut ProgramHandle,
            None => <*mut ProgramHandle>::from_error(&errno_err(libc::ENOENT)),
        }
    }
}

ffi_fn! {
    /// `struct bpf_map *bpf_object__find_map_by_name(const struct bpf_object *obj, const char *name)`:
    /// `.rodata`-style names match internal maps' sections; NULL with `ENOENT`
    /// if there is none.
    ///
    /// # Safety
    /// `obj` must be NULL or a live object, `name` NULL or NUL-terminated.
    pub unsafe fn bpf_object__find_map_by_name(
        obj: *const ObjectHandle,
        name: *const c_char,
    ) -> *mut MapHandle {
        // SAFETY: caller contract.
        let (o, name) = match (unsafe { obj.as_ref() }, unsafe { opt_str(name) }) {
            (Some(o), Some(name)) => (o, name),
            _ => return <*mut MapHandle>::from_error(&errno_err(libc::EINVAL)),
        };
        match o.obj.map_index(&name).and_then(|i| o.maps.get(i)) {
            Some(m) => m as *const MapHandle as *mut MapHandle,
            None => <*mut MapHandle>::from_error(&errno_err(libc::ENOENT)),
        }
    }
}

ffi_fn! {
    /// `const char *bpf_program__name(const struct bpf_program *prog)`
    ///
    /// # Safety
    /// `prog` must be NULL or a live program.
    pub unsafe fn bpf_program__name(prog: *const ProgramHandle) -> *const c_char {
        // SAFETY: caller contract.
        ret(unsafe { handle(prog) }.map(|p| p.name.as_ptr()))
    }
}

ffi_fn! {
    /// `const char *bpf_program__section_name(const struct bpf_program *prog)`
    ///
    /// # Safety
    /// `prog` must be NULL or a live program.
    pub unsafe fn bpf_program__section_name(prog: *const ProgramHandle) -> *const c_char {
        // SAFETY: caller contract.
        ret(unsafe { handle(prog) }.map(|p| p.sec_name.as_ptr()))
    }
}

/// The loader's program behind a handle.
///
/// # Safety
/// `prog` must be a live program handle.
pub(crate) unsafe fn program<'a>(
    prog: &ProgramHandle,
) -> Option<&'a userbpf_libbpf_compat::object::BpfProgram> {
    // SAFETY: caller contract.
    unsafe { prog_obj(prog) }.obj.programs().nth(prog.idx)
}

ffi_fn! {
    /// `enum bpf_prog_type bpf_program__type(const struct bpf_program *prog)`
    ///
    /// # Safety
    /// `prog` must be NULL or a live program.
    pub unsafe fn bpf_program__type(prog: *const ProgramHandle) -> c_uint {
        // SAFETY: caller contract.
        let p = unsafe { handle(prog) }.and_then(|p| {
            // SAFETY: p is live.
            unsafe { program(p) }.ok_or(errno_err(libc::EINVAL))
        });
        ret(p.map(|p| p.prog_type().0))
    }
}

ffi_fn! {
    /// `enum bpf_attach_type bpf_program__expected_attach_type(const struct bpf_program *prog)`
    ///
    /// # Safety
    /// `prog` must be NULL or a live program.
    pub unsafe fn bpf_program__expected_attach_type(prog: *const ProgramHandle) -> c_uint {
        // SAFETY: caller contract.
        let p = unsafe { handle(prog) }.and_then(|p| {
            // SAFETY: p is live.
            unsafe { program(p) }.ok_or(errno_err(libc::EINVAL))
        });
        ret(p.map(|p| p.expected_attach_type().0))
    }
}

ffi_fn! {
    /// `bool bpf_program__autoload(const struct bpf_program *prog)`
    ///
    /// # Safety
    /// `prog` must be NULL or a live program.
    pub unsafe fn bpf_program__autoload(prog: *const ProgramHandle) -> bool {
        // SAFETY: caller contract.
        let p = unsafe { handle(prog) }.and_then(|p| {
            // SAFETY: p is live.
            unsafe { program(p) }.ok_or(errno_err(libc::EINVAL))
        });
        ret(p.map(|p| p.autoload()))
    }
}

ffi_fn! {
    /// `int bpf_program__set_autoload(struct bpf_program *prog, bool autoload)`:
    /// `-EINVAL` once the object is loaded.
    ///
    /// # Safety
    /// `prog` must be NULL or a live program.
    pub unsafe fn bpf_program__set_autoload(prog: *mut ProgramHandle, autoload: bool) -> c_int {
        // SAFETY: caller contract.
        let result = unsafe { handle(prog) }.and_then(|p| {
            // SAFETY: p.obj is the live object owning p; only its `obj`
            // field is borrowed mutably, not the handle vectors p lives in.
            let obj = unsafe { &mut *std::ptr::addr_of_mut!((*p.obj).obj) };
            if obj.is_relocated() {
                return Err(errno_err(libc::EINVAL));
            }
            let bp = obj.programs_mut().nth(p.idx).ok_or(errno_err(libc::EINVAL))?;
            bp.set_autoload(autoload);
            Ok(0)
        });
        ret(result)
    }
}

ffi_fn! {
    /// `size_t bpf_program__insn_cnt(const struct bpf_program *prog)`
    ///
    /// # Safety
    /// `prog` must be NULL or a live program.
    pub unsafe fn bpf_program__insn_cnt(prog: *const ProgramHandle) -> usize {
        // SAFETY: caller contract.
        ret(unsafe { handle(prog) }.map(|p| p.insns.len()))
    }
}

ffi_fn! {
    /// `const struct bpf_insn *bpf_program__insns(const struct bpf_program *prog)`:
    /// before load, the program's instructions as in the ELF file.
    ///
    /// # Safety
    /// `prog` must be NULL or a live program.
    pub unsafe fn bpf_program__insns(prog: *const ProgramHandle) -> *const u8 {
        // SAFETY: caller contract.
        ret(unsafe { handle(prog) }.map(|p| p.insns.as_ptr().cast::<u8>()))
    }
}

ffi_fn! {
    /// `const char *bpf_map__name(const struct bpf_map *map)`
    ///
    /// # Safety
    /// `map` must be NULL or a live map.
    pub unsafe fn bpf_map__name(map: *const MapHandle) -> *const c_char {
        // SAFETY: caller contract.
        ret(unsafe { handle(map) }.map(|m| m.name.as_ptr()))
    }
}

/// A `__u32` / enum getter of a map: 0 with `EINVAL` for NULL.
///
/// # Safety
/// `map` must be NULL or a live map.
unsafe fn map_u32(
    map: *const MapHandle,
    get: impl Fn(&userbpf_libbpf_compat::object::BpfMap) -> u32,
) -> c_uint {
    // SAFETY: caller contract.
    ret(unsafe { handle(map) }.map(|m| {
        // SAFETY: m is live.
        get(unsafe { map_def(m) })
    }))
}

ffi_fn! {
    /// `enum bpf_map_type bpf_map__type(const struct bpf_map *map)`
    ///
    /// # Safety
    /// `map` must be NULL or a live map.
    pub unsafe fn bpf_map__type(map: *const MapHandle) -> c_uint {
        // SAFETY: caller contract.
        unsafe { map_u32(map, |m| m.map_type().0) }
    }
}

ffi_fn! {
    /// `__u32 bpf_map__key_size(const struct bpf_map *map)`
    ///
    /// # Safety
    /// `map` must be NULL or a live map.
    pub unsafe fn bpf_map__key_size(map: *const MapHandle) -> c_uint {
        // SAFETY: caller contract.
        unsafe { map_u32(map, |m| m.key_size()) }
    }
}

ffi_fn! {
    /// `__u32 bpf_map__value_size(const struct bpf_map *map)`
    ///
    /// # Safety
    /// `map` must be NULL or a live map.
    pub unsafe fn bpf_map__value_size(map: *const MapHandle) -> c_uint {
        // SAFETY: caller contract.
        unsafe { map_u32(map, |m| m.value_size()) }
    }
}

ffi_fn! {
    /// `__u32 bpf_map__max_entries(const struct bpf_map *map)`
    ///
    /// # Safety
    /// `map` must be NULL or a live map.
    pub unsafe fn bpf_map__max_entries(map: *const MapHandle) -> c_uint {
        // SAFETY: caller contract.
        unsafe { map_u32(map, |m| m.max_entries()) }
    }
}

ffi_fn! {
    /// `__u32 bpf_map__map_flags(const struct bpf_map *map)`
    ///
    /// # Safety
    /// `map` must be NULL or a live map.
    pub unsafe fn bpf_map__map_flags(map: *const MapHandle) -> c_uint {
        // SAFETY: caller contract.
        unsafe { map_u32(map, |m| m.map_flags()) }
    }
}

ffi_fn! {
    /// `int bpf_map__fd(const struct bpf_map *map)`: -1 (errno untouched)
    /// until the map is created, `-EINVAL` for NULL.
    ///
    /// # Safety
    /// `map` must be NULL or a live map.
    pub unsafe fn bpf_map__fd(map: *const MapHandle) -> c_int {
        // SAFETY: caller contract.
        ret(unsafe { handle(map) }.map(|m| m.fd))
    }
}
