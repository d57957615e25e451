//! libbpf's BTF API (`btf.h`): `btf__*` on [`userbpf_btf_core::Btf`], and
//! `btf_ext__*` on [`BtfExt`].
//!
//! A `struct btf *` is a boxed [`BtfHandle`]: the [`Btf`] (in an [`Arc`], so
//! split BTF can share it as its base), the handle of the base (what
//! `btf__base_btf` returns), the fd (`btf__fd`, closed by `btf__free` as
//! libbpf does), the byte order `btf__raw_data` answers in, and the
//! byte-swapped raw data once asked for. Pointers handed out
//! (`btf__type_by_id`, `btf__name_by_offset`, `btf__raw_data`) point into
//! the `Btf` and stay valid until the next modification or `btf__free`, as
//! libbpf documents. Modifying a BTF that a live split BTF uses as its base
//! copies it first (the split BTF keeps the base it was built on).
//!
//! Errors follow libbpf: pointer APIs return NULL and set errno, int APIs
//! return `-errno` and set errno; the few libbpf quirks (`btf__align_of`
//! returns 0 with errno set) are kept.

#![allow(non_snake_case)]

use std::ffi::{c_char, c_int, c_long, c_uint, c_void, CStr};
use std::sync::{Arc, OnceLock};

use userbpf_btf_core::elf::find_btf_sections;
use userbpf_btf_core::{BtfExt, BtfKind, BtfType, EditError, Endianness, FwdKind, TypeError};

use userbpf_btf_core::Btf;

use crate::abi::{set_errno, FfiReturn};
use crate::error::AbiError;
use crate::ffi_fn;
use crate::print;

/// libbpf's `struct btf` (opaque to C).
#[derive(Debug)]
pub struct BtfHandle {
    btf: Arc<Btf>,
    /// The base's handle (split BTF): `btf__base_btf`.
    base: *const BtfHandle,
    /// A base this handle owns: the `.BTF.base` of an ELF file.
    owned_base: Option<Box<BtfHandle>>,
    /// `btf__fd`; closed by `btf__free`.
    fd: c_int,
    /// The byte order of `btf__raw_data` (`btf__set_endianness`).
    endianness: Endianness,
    /// `btf__raw_data` in non-native order, built on demand.
    raw_swapped: OnceLock<Box<[u8]>>,
}

impl BtfHandle {
    /// A handle for `btf`, split on `base` (NULL for none). Other parts of
    /// the library (`bpf_object__btf`) hand out BTF through this.
    pub fn new(btf: Arc<Btf>, base: *const BtfHandle) -> Box<BtfHandle> {
        let endianness = btf.endianness();
        Box::new(BtfHandle {
            btf,
            base,
            owned_base: None,
            fd: -1,
            endianness,
            raw_swapped: OnceLock::new(),
        })
    }

    /// The BTF.
    pub fn btf(&self) -> &Btf {
        &self.btf
    }

    /// The shared BTF (the base of split BTF built on this handle).
    pub fn shared(&self) -> &Arc<Btf> {
        &self.btf
    }

    /// The BTF, to modify: cached swapped data is dropped, and a BTF that a
    /// live split BTF shares as its base is copied first.
    fn btf_mut(&mut self) -> &mut Btf {
        self.raw_swapped = OnceLock::new();
        Arc::make_mut(&mut self.btf)
    }
}

/// libbpf's `struct btf_ext` (opaque to C).
#[derive(Debug)]
pub struct BtfExtHandle {
    ext: BtfExt,
    endianness: Endianness,
    raw_swapped: OnceLock<Box<[u8]>>,
}

/// `LIBBPF_ERRNO__FORMAT`: what libbpf reports for a malformed ELF file.
const LIBBPF_ERRNO_FORMAT: i32 = 4001;
/// `enum btf_endianness`.
const BTF_LITTLE_ENDIAN: c_uint = 0;
const BTF_BIG_ENDIAN: c_uint = 1;

/// Linux's `MAX_ERRNO`: `IS_ERR_OR_NULL` pointers.
const MAX_ERRNO: usize = 4095;

fn errno_err(e: i32) -> AbiError {
    AbiError::Errno(e)
}

fn ret<R: FfiReturn>(result: Result<R, AbiError>) -> R {
    result.unwrap_or_else(|e| R::from_error(&e))
}

fn is_err_or_null<T>(p: *const T) -> bool {
    p.is_null() || p as usize >= MAX_ERRNO.wrapping_neg()
}

/// `strerror(e)` for messages.
fn strerror(e: i32) -> String {
    std::io::Error::from_raw_os_error(e)
        .to_string()
        .split(" (os error")
        .next()
        .unwrap_or_default()
        .to_string()
}

/// `&*p`, or EINVAL for NULL.
///
/// # Safety
/// `p` must be NULL or a live handle.
unsafe fn handle<'a>(p: *const BtfHandle) -> Result<&'a BtfHandle, AbiError> {
    // SAFETY: NULL or live (caller contract).
    unsafe { p.as_ref() }.ok_or(errno_err(libc::EINVAL))
}

/// `&mut *p`, or EINVAL for NULL.
///
/// # Safety
/// `p` must be NULL or a live handle not otherwise borrowed.
unsafe fn handle_mut<'a>(p: *mut BtfHandle) -> Result<&'a mut BtfHandle, AbiError> {
    // SAFETY: NULL or live and unaliased (caller contract).
    unsafe { p.as_mut() }.ok_or(errno_err(libc::EINVAL))
}

/// The bytes of a C string; NULL reads as empty (libbpf's `str_is_empty`
/// treats both alike).
///
/// # Safety
/// `p` must be NULL or NUL-terminated and outlive the result.
unsafe fn c_bytes<'a>(p: *const c_char) -> &'a [u8] {
    if p.is_null() {
        return b"";
    }
    // SAFETY: NUL-terminated (caller contract).
    unsafe { CStr::from_ptr(p) }.to_bytes()
}

/// A path argument; EINVAL for NULL.
///
/// # Safety
/// `p` must be NULL or NUL-terminated.
unsafe fn c_path(p: *const c_char) -> Result<String, AbiError> {
    if p.is_null() {
        return Err(errno_err(libc::EINVAL));
    }
    // SAFETY: non-NULL, NUL-terminated (caller contract).
    Ok(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

/// The base of a split BTF: its handle pointer and shared `Btf`.
///
/// # Safety
/// `base` must be NULL or a live handle.
unsafe fn base_of(base: *const BtfHandle) -> Option<Arc<Btf>> {
    // SAFETY: caller contract.
    unsafe { base.as_ref() }.map(|b| b.btf.clone())
}

/// libbpf's `btf_new`: parses `bytes` (on `base`, if any).
fn btf_new(bytes: &[u8], base: Option<Arc<Btf>>) -> Result<Btf, AbiError> {
    let parsed = match base {
        Some(base) => Btf::parse_split(bytes, base),
        None => Btf::parse(bytes),
    };
    parsed.map_err(|e| {
        print::debug(&format!("{e}\n"));
        errno_err(e.errno())
    })
}

/// Boxes a handle for C.
fn into_ptr(result: Result<Box<BtfHandle>, AbiError>) -> *mut BtfHandle {
    match result {
        Ok(h) => Box::into_raw(h),
        Err(e) => <*mut BtfHandle>::from_error(&e),
    }
}

fn wrap(btf: Btf, base: *const BtfHandle) -> Box<BtfHandle> {
    BtfHandle::new(Arc::new(btf), base)
}

/// libbpf's `btf_parse_raw`: `EPROTO` if the file does not start with the
/// BTF magic (in either byte order).
///
/// # Safety
/// `base` must be NULL or a live handle.
unsafe fn parse_raw(path: &str, base: *const BtfHandle) -> Result<Box<BtfHandle>, AbiError> {
    use std::io::Read;
    let mut file =
        std::fs::File::open(path).map_err(|e| errno_err(e.raw_os_error().unwrap_or(libc::EIO)))?;
    // Like libbpf's fread (a directory opens fine, then fails to read).
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|_| errno_err(libc::EIO))?;
    if bytes.len() < 2 {
        return Err(errno_err(libc::EIO));
    }
    let magic = u16::from_ne_bytes([bytes[0], bytes[1]]);
    if magic != userbpf_btf_core::BTF_MAGIC && magic != userbpf_btf_core::BTF_MAGIC.swap_bytes() {
        return Err(errno_err(libc::EPROTO));
    }
    // SAFETY: caller contract.
    let base_btf = unsafe { base_of(base) };
    Ok(wrap(btf_new(&bytes, base_btf)?, base))
}

/// libbpf's `btf_parse_elf`: `.BTF` (on `.BTF.base` if the file has one,
/// else on `base`), the pointer size from the ELF class, and `.BTF.ext`
/// when `want_ext`.
///
/// # Safety
/// `base` must be NULL or a live handle.
unsafe fn parse_elf(
    path: &str,
    base: *const BtfHandle,
    want_ext: bool,
) -> Result<(Box<BtfHandle>, Option<Box<BtfExtHandle>>), AbiError> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| {
        let code = e.raw_os_error().unwrap_or(libc::EIO);
        print::warn(&format!("failed to open {path}: {}\n", strerror(code)));
        errno_err(code)
    })?;
    // libelf cannot read it (a directory, say): not an ELF file.
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(|_| {
        print::warn(&format!("failed to open {path} as ELF file\n"));
        errno_err(LIBBPF_ERRNO_FORMAT)
    })?;
    let secs = find_btf_sections(&bytes).map_err(|e| {
        print::warn(&format!("{e} from {path}\n"));
        errno_err(LIBBPF_ERRNO_FORMAT)
    })?;
    let Some(btf_data) = secs.btf else {
        print::warn(&format!("failed to find '.BTF' ELF section in {path}\n"));
        return Err(errno_err(libc::ENODATA));
    };
    let mut handle = match secs.btf_base {
        Some(_) if !base.is_null() => {
            // Relocating onto another base is btf__relocate's job.
            print::warn(&format!(
                "{path}: relocating distilled BTF onto a base BTF is not supported by userbpf yet\n"
            ));
            return Err(errno_err(libc::EOPNOTSUPP));
        }
        Some(base_data) => {
            let dist_base = wrap(btf_new(base_data, None)?, std::ptr::null());
            let btf = btf_new(btf_data, Some(dist_base.btf.clone()))?;
            let mut handle = wrap(btf, &*dist_base);
            handle.owned_base = Some(dist_base);
            handle
        }
        None => {
            // SAFETY: caller contract.
            let base_btf = unsafe { base_of(base) };
            wrap(btf_new(btf_data, base_btf)?, base)
        }
    };
    // Cannot fail: 4 and 8 are the sizes set_pointer_size accepts.
    let _ = handle.btf_mut().set_pointer_size(secs.pointer_size);
    let ext = match (want_ext, secs.btf_ext) {
        (true, Some(data)) => Some(new_ext(data)?),
        _ => None,
    };
    Ok((handle, ext))
}

/// libbpf's `btf_parse`: raw BTF, or else (`EPROTO`) an ELF file.
///
/// # Safety
/// `base` must be NULL or a live handle; `ext_out` NULL or writable.
unsafe fn parse_any(
    path: *const c_char,
    base: *const BtfHandle,
    ext_out: *mut *mut BtfExtHandle,
) -> Result<Box<BtfHandle>, AbiError> {
    if !ext_out.is_null() {
        // SAFETY: writable (caller contract).
        unsafe { *ext_out = std::ptr::null_mut() };
    }
    // SAFETY: caller contract.
    let path = unsafe { c_path(path) }?;
    // SAFETY: caller contract.
    match unsafe { parse_raw(&path, base) } {
        Err(AbiError::Errno(libc::EPROTO)) => {}
        other => return other,
    }
    // SAFETY: caller contract.
    let (btf, ext) = unsafe { parse_elf(&path, base, !ext_out.is_null()) }?;
    if let Some(ext) = ext {
        // SAFETY: non-NULL and writable (caller contract).
        unsafe { *ext_out = Box::into_raw(ext) };
    }
    Ok(btf)
}

ffi_fn! {
    /// `void btf__free(struct btf *btf)`: NULL and `ERR_PTR`s are ignored;
    /// the fd (`btf__set_fd`) is closed.
    ///
    /// # Safety
    /// `btf` must be NULL, an `ERR_PTR` or a live handle not used afterwards.
    pub unsafe fn btf__free(btf: *mut BtfHandle) {
        if is_err_or_null(btf) {
            return;
        }
        // SAFETY: a live handle from Box::into_raw (caller contract).
        let handle = unsafe { Box::from_raw(btf) };
        if handle.fd >= 0 {
            // SAFETY: closing the fd the handle owns, as libbpf does.
            unsafe { libc::close(handle.fd) };
        }
    }
}

ffi_fn! {
    /// `struct btf *btf__new(const void *data, __u32 size)`
    ///
    /// # Safety
    /// `data` must be NULL or valid for `size` bytes.
    pub unsafe fn btf__new(data: *const c_void, size: u32) -> *mut BtfHandle {
        // SAFETY: caller contract.
        unsafe { btf__new_split(data, size, std::ptr::null_mut()) }
    }
}

ffi_fn! {
    /// `struct btf *btf__new_split(const void *data, __u32 size, struct btf *base_btf)`
    ///
    /// # Safety
    /// `data` must be NULL or valid for `size` bytes; `base` NULL or live.
    pub unsafe fn btf__new_split(
        data: *const c_void,
        size: u32,
        base: *mut BtfHandle,
    ) -> *mut BtfHandle {
        if data.is_null() {
            return into_ptr(Err(errno_err(libc::EINVAL)));
        }
        // SAFETY: data is valid for size bytes (caller contract).
        let bytes = unsafe { std::slice::from_raw_parts(data.cast::<u8>(), size as usize) };
        // SAFETY: caller contract.
        let base_btf = unsafe { base_of(base) };
        into_ptr(btf_new(bytes, base_btf).map(|btf| wrap(btf, base)))
    }
}

ffi_fn! {
    /// `struct btf *btf__new_empty(void)`
    pub fn btf__new_empty() -> *mut BtfHandle {
        Box::into_raw(wrap(Btf::new_empty(), std::ptr::null()))
    }
}

ffi_fn! {
    /// `struct btf *btf__new_empty_split(struct btf *base_btf)`
    ///
    /// # Safety
    /// `base` must be NULL or a live handle.
    pub unsafe fn btf__new_empty_split(base: *mut BtfHandle) -> *mut BtfHandle {
        // SAFETY: caller contract.
        let Some(base_ref) = (unsafe { base.as_ref() }) else {
            return btf__new_empty();
        };
        let mut handle = wrap(Btf::new_empty_split(base_ref.btf.clone()), base);
        handle.endianness = base_ref.endianness;
        Box::into_raw(handle)
    }
}

ffi_fn! {
    /// `struct btf *btf__parse(const char *path, struct btf_ext **btf_ext)`
    ///
    /// # Safety
    /// `path` must be NULL or NUL-terminated; `btf_ext` NULL or writable.
    pub unsafe fn btf__parse(
        path: *const c_char,
        btf_ext: *mut *mut BtfExtHandle,
    ) -> *mut BtfHandle {
        // SAFETY: caller contract.
        into_ptr(unsafe { parse_any(path, std::ptr::null(), btf_ext) })
    }
}

ffi_fn! {
    /// `struct btf *btf__parse_split(const char *path, struct btf *base_btf)`
    ///
    /// # Safety
    /// `path` must be NULL or NUL-terminated; `base` NULL or live.
    pub unsafe fn btf__parse_split(path: *const c_char, base: *mut BtfHandle) -> *mut BtfHandle {
        // SAFETY: caller contract.
        into_ptr(unsafe { parse_any(path, base, std::ptr::null_mut()) })
    }
}

ffi_fn! {
    /// `struct btf *btf__parse_raw(const char *path)`
    ///
    /// # Safety
    /// `path` must be NULL or NUL-terminated.
    pub unsafe fn btf__parse_raw(path: *const c_char) -> *mut BtfHandle {
        // SAFETY: caller contract.
        unsafe { btf__parse_raw_split(path, std::ptr::null_mut()) }
    }
}

ffi_fn! {
    /// `struct btf *btf__parse_raw_split(const char *path, struct btf *base_btf)`
    ///
    /// # Safety
    /// `path` must be NULL or NUL-terminated; `base` NULL or live.
    pub unsafe fn btf__parse_raw_split(
        path: *const c_char,
        base: *mut BtfHandle,
    ) -> *mut BtfHandle {
        // SAFETY: caller contract.
        let result = unsafe { c_path(path) }.and_then(|path| {
            // SAFETY: caller contract.
            unsafe { parse_raw(&path, base) }
        });
        into_ptr(result)
    }
}

ffi_fn! {
    /// `struct btf *btf__parse_elf(const char *path, struct btf_ext **btf_ext)`
    ///
    /// # Safety
    /// `path` must be NULL or NUL-terminated; `btf_ext` NULL or writable.
    pub unsafe fn btf__parse_elf(
        path: *const c_char,
        btf_ext: *mut *mut BtfExtHandle,
    ) -> *mut BtfHandle {
        // SAFETY: caller contract.
        let result = unsafe { c_path(path) }.and_then(|path| {
            // SAFETY: caller contract.
            unsafe { parse_elf(&path, std::ptr::null(), !btf_ext.is_null()) }
        });
        match result {
            Ok((btf, ext)) => {
                if !btf_ext.is_null() {
                    // SAFETY: writable (caller contract).
                    unsafe { *btf_ext = ext.map_or(std::ptr::null_mut(), Box::into_raw) };
                }
                Box::into_raw(btf)
            }
            Err(e) => <*mut BtfHandle>::from_error(&e),
        }
    }
}

ffi_fn! {
    /// `struct btf *btf__parse_elf_split(const char *path, struct btf *base_btf)`
    ///
    /// # Safety
    /// `path` must be NULL or NUL-terminated; `base` NULL or live.
    pub unsafe fn btf__parse_elf_split(
        path: *const c_char,
        base: *mut BtfHandle,
    ) -> *mut BtfHandle {
        // SAFETY: caller contract.
        let result = unsafe { c_path(path) }.and_then(|path| {
            // SAFETY: caller contract.
            unsafe { parse_elf(&path, base, false) }
        });
        into_ptr(result.map(|(btf, _)| btf))
    }
}

/// Where the kernel's BTF lives.
const SYSFS_VMLINUX: &str = "/sys/kernel/btf/vmlinux";

/// `faccessat(AT_FDCWD, path, mode, AT_EACCESS) == 0`.
fn accessible(path: &str, mode: c_int) -> bool {
    let Ok(c) = std::ffi::CString::new(path) else {
        return false;
    };
    // SAFETY: c is NUL-terminated and outlives the call.
    unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), mode, libc::AT_EACCESS) == 0 }
}

/// `uname -r`.
fn kernel_release() -> String {
    // SAFETY: utsname is plain data; uname fills it (zeroed on failure).
    let mut buf: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: buf is a writable utsname.
    unsafe { libc::uname(&mut buf) };
    // SAFETY: release is NUL-terminated by uname (or all zero).
    unsafe { CStr::from_ptr(buf.release.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// `btf__load_vmlinux_btf`.
fn load_vmlinux() -> Result<Box<BtfHandle>, AbiError> {
    if !accessible(SYSFS_VMLINUX, libc::F_OK) {
        print::warn(&format!(
            "kernel BTF is missing at '{SYSFS_VMLINUX}', was CONFIG_DEBUG_INFO_BTF enabled?\n"
        ));
    } else {
        // The mapped file first (libbpf's btf_parse_raw_mmap), else btf__parse.
        let loaded = match Btf::load_file(SYSFS_VMLINUX) {
            Ok(btf) => Ok(wrap(btf, std::ptr::null())),
            Err(_) => {
                let path = c"/sys/kernel/btf/vmlinux".as_ptr();
                // SAFETY: a static path, no base, no ext.
                unsafe { parse_any(path, std::ptr::null(), std::ptr::null_mut()) }
            }
        };
        return match loaded {
            Ok(btf) => {
                print::debug(&format!("loaded kernel BTF from '{SYSFS_VMLINUX}'\n"));
                Ok(btf)
            }
            Err(e) => {
                print::warn(&format!(
                    "failed to read kernel BTF from '{SYSFS_VMLINUX}': {}\n",
                    strerror(e.errno())
                ));
                Err(e)
            }
        };
    }
    let release = kernel_release();
    let locations = [
        format!("/boot/vmlinux-{release}"),
        format!("/lib/modules/{release}/vmlinux-{release}"),
        format!("/lib/modules/{release}/build/vmlinux"),
        format!("/usr/lib/modules/{release}/kernel/vmlinux"),
        format!("/usr/lib/debug/boot/vmlinux-{release}"),
        format!("/usr/lib/debug/boot/vmlinux-{release}.debug"),
        format!("/usr/lib/debug/lib/modules/{release}/vmlinux"),
    ];
    for path in locations {
        if !accessible(&path, libc::R_OK) {
            continue;
        }
        let Ok(c) = std::ffi::CString::new(path.as_str()) else {
            continue;
        };
        // SAFETY: c is NUL-terminated; no base, no ext.
        let result = unsafe { parse_any(c.as_ptr(), std::ptr::null(), std::ptr::null_mut()) };
        let code = result.as_ref().err().map_or(0, |e| -e.errno());
        print::debug(&format!(
            "loading kernel BTF '{path}': {}\n",
            strerror(-code)
        ));
        if let Ok(btf) = result {
            return Ok(btf);
        }
    }
    print::warn("failed to find valid kernel BTF\n");
    Err(errno_err(libc::ESRCH))
}

ffi_fn! {
    /// `struct btf *btf__load_vmlinux_btf(void)`: `/sys/kernel/btf/vmlinux`,
    /// or a vmlinux image in one of libbpf's fallback locations.
    pub fn btf__load_vmlinux_btf() -> *mut BtfHandle {
        into_ptr(load_vmlinux())
    }
}

ffi_fn! {
    /// `struct btf *libbpf_find_kernel_btf(void)`: libbpf's alias of
    /// `btf__load_vmlinux_btf`.
    pub fn libbpf_find_kernel_btf() -> *mut BtfHandle {
        into_ptr(load_vmlinux())
    }
}

ffi_fn! {
    /// `struct btf *btf__load_module_btf(const char *module_name, struct btf *vmlinux_btf)`:
    /// `/sys/kernel/btf/<module_name>` as split BTF on `vmlinux_btf`.
    ///
    /// # Safety
    /// `name` must be NULL or NUL-terminated; `vmlinux` NULL or live.
    pub unsafe fn btf__load_module_btf(
        name: *const c_char,
        vmlinux: *mut BtfHandle,
    ) -> *mut BtfHandle {
        let name = match name.is_null() {
            // glibc's printf spells a NULL %s "(null)".
            true => "(null)".to_string(),
            // SAFETY: NUL-terminated (caller contract).
            false => unsafe { CStr::from_ptr(name) }.to_string_lossy().into_owned(),
        };
        // libbpf formats the path into a char[80].
        let mut path = format!("/sys/kernel/btf/{name}").into_bytes();
        path.truncate(79);
        let path = std::ffi::CString::new(path).unwrap_or_default();
        // SAFETY: path is NUL-terminated; vmlinux per caller contract.
        unsafe { btf__parse_split(path.as_ptr(), vmlinux) }
    }
}

// ---------------------------------------------------------------------
// The kernel: BPF_BTF_GET_FD_BY_ID and BPF_OBJ_GET_INFO_BY_FD.

const BPF_OBJ_GET_INFO_BY_FD: c_int = 15;
const BPF_BTF_GET_FD_BY_ID: c_int = 19;

/// `bpf(cmd, attr, size)`: the result, or -1 with errno set.
///
/// # Safety
/// `attr` must be valid for `size` bytes of reads and writes.
unsafe fn sys_bpf(cmd: c_int, attr: *mut c_void, size: u32) -> c_long {
    // SAFETY: the bpf syscall reads (and for some commands writes) `size`
    // bytes at attr (caller contract).
    unsafe { libc::syscall(libc::SYS_bpf, cmd, attr, size) }
}

/// libbpf's `ensure_good_fd`: never hand out fds 0-2.
fn ensure_good_fd(fd: c_int) -> c_int {
    if !(0..3).contains(&fd) {
        return fd;
    }
    // SAFETY: fcntl on an fd we own; F_DUPFD_CLOEXEC returns a new fd >= 3.
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    let saved = crate::abi::errno();
    // SAFETY: closing our own fd.
    unsafe { libc::close(fd) };
    set_errno(saved);
    dup
}

/// `struct bpf_btf_info`.
#[repr(C)]
#[derive(Default)]
struct BpfBtfInfo {
    btf: u64,
    btf_size: u32,
    id: u32,
    name: u64,
    name_len: u32,
    kernel_btf: u32,
}

/// `bpf_btf_get_info_by_fd` into `info`: 0 or -errno.
fn btf_info_by_fd(fd: c_int, info: &mut BpfBtfInfo) -> i32 {
    #[repr(C)]
    struct InfoAttr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    let mut attr = InfoAttr {
        bpf_fd: fd as u32,
        info_len: std::mem::size_of::<BpfBtfInfo>() as u32,
        info: info as *mut BpfBtfInfo as u64,
    };
    // SAFETY: attr is a valid 16-byte attr; info outlives the call.
    let r = unsafe {
        sys_bpf(
            BPF_OBJ_GET_INFO_BY_FD,
            (&mut attr as *mut InfoAttr).cast(),
            std::mem::size_of::<InfoAttr>() as u32,
        )
    };
    if r < 0 {
        -crate::abi::errno()
    } else {
        0
    }
}

/// libbpf's `btf_load_from_kernel`: the BTF object `id`, read through an fd.
///
/// # Safety
/// `base` must be NULL or a live handle.
unsafe fn load_from_kernel(id: u32, base: *const BtfHandle) -> Result<Box<BtfHandle>, AbiError> {
    // union bpf_attr for BPF_*_GET_FD_BY_ID: id, next_id, open_flags,
    // fd_by_id_token_fd.
    let mut attr = [id, 0u32, 0, 0];
    // SAFETY: attr is 16 valid bytes.
    let fd = unsafe { sys_bpf(BPF_BTF_GET_FD_BY_ID, attr.as_mut_ptr().cast(), 16) };
    if fd < 0 {
        return Err(errno_err(crate::abi::errno()));
    }
    let fd = ensure_good_fd(fd as c_int);
    if fd < 0 {
        return Err(errno_err(crate::abi::errno()));
    }
    // SAFETY: caller contract.
    let result = unsafe { btf_from_fd(fd, base) };
    // SAFETY: closing the fd opened above.
    unsafe { libc::close(fd) };
    result
}

/// libbpf's `btf_get_from_fd`.
///
/// # Safety
/// `base` must be NULL or a live handle.
unsafe fn btf_from_fd(fd: c_int, base: *const BtfHandle) -> Result<Box<BtfHandle>, AbiError> {
    let mut buf = vec![0u8; 4096];
    let mut info = BpfBtfInfo {
        btf: buf.as_mut_ptr() as u64,
        btf_size: buf.len() as u32,
        ..BpfBtfInfo::default()
    };
    let mut err = btf_info_by_fd(fd, &mut info);
    if err == 0 && info.btf_size as usize > buf.len() {
        buf = vec![0u8; info.btf_size as usize];
        info = BpfBtfInfo {
            btf: buf.as_mut_ptr() as u64,
            btf_size: buf.len() as u32,
            ..BpfBtfInfo::default()
        };
        err = btf_info_by_fd(fd, &mut info);
    }
    if err != 0 {
        return Err(errno_err(-err));
    }
    if info.btf_size as usize > buf.len() {
        return Err(errno_err(libc::E2BIG));
    }
    // SAFETY: caller contract.
    let base_btf = unsafe { base_of(base) };
    Ok(wrap(
        btf_new(&buf[..info.btf_size as usize], base_btf)?,
        base,
    ))
}

ffi_fn! {
    /// `struct btf *btf__load_from_kernel_by_id(__u32 id)`: through the
    /// bpf syscall; fails with its errno (EPERM without privileges, ENOENT
    /// for an unknown id).
    pub fn btf__load_from_kernel_by_id(id: u32) -> *mut BtfHandle {
        // SAFETY: no base.
        into_ptr(unsafe { load_from_kernel(id, std::ptr::null()) })
    }
}

ffi_fn! {
    /// `struct btf *btf__load_from_kernel_by_id_split(__u32 id, struct btf *base_btf)`
    ///
    /// # Safety
    /// `base` must be NULL or a live handle.
    pub unsafe fn btf__load_from_kernel_by_id_split(
        id: u32,
        base: *mut BtfHandle,
    ) -> *mut BtfHandle {
        // SAFETY: caller contract.
        into_ptr(unsafe { load_from_kernel(id, base) })
    }
}

// ---------------------------------------------------------------------
// Queries.

ffi_fn! {
    /// `__u32 btf__type_cnt(const struct btf *btf)`
    ///
    /// # Safety
    /// `btf` must be NULL or a live handle.
    pub unsafe fn btf__type_cnt(btf: *const BtfHandle) -> c_uint {
        // SAFETY: caller contract.
        ret(unsafe { handle(btf) }.map(|h| h.btf.type_count()))
    }
}

ffi_fn! {
    /// `const struct btf *btf__base_btf(const struct btf *btf)`
    ///
    /// # Safety
    /// `btf` must be NULL or a live handle.
    pub unsafe fn btf__base_btf(btf: *const BtfHandle) -> *const BtfHandle {
        // SAFETY: caller contract.
        ret(unsafe { handle(btf) }.map(|h| h.base))
    }
}

ffi_fn! {
    /// `const struct btf_type *btf__type_by_id(const struct btf *btf, __u32 id)`:
    /// a pointer into the type data; NULL with EINVAL past the last id.
    ///
    /// # Safety
    /// `btf` must be NULL or a live handle.
    pub unsafe fn btf__type_by_id(btf: *const BtfHandle, id: u32) -> *const BtfType {
        // SAFETY: caller contract.
        let result = unsafe { handle(btf) }.and_then(|h| {
            h.btf
                .type_by_id(id)
                .map(|t| t.as_ptr())
                .ok_or(errno_err(libc::EINVAL))
        });
        ret(result)
    }
}

/// `btf__find_by_name_kind` with libbpf's kind argument: negative (as a
/// `__s32`) for any kind.
///
/// # Safety
/// `btf` must be NULL or a live handle; `name` NULL or NUL-terminated.
unsafe fn find_by_name(btf: *const BtfHandle, name: *const c_char, kind: i32) -> i32 {
    // SAFETY: caller contract.
    let result = unsafe { handle(btf) }.and_then(|h| {
        if name.is_null() {
            return Err(errno_err(libc::EINVAL));
        }
        // SAFETY: NUL-terminated (caller contract).
        let name = unsafe { c_bytes(name) };
        let found = match kind {
            k if k < 0 => h.btf.find_by_name(name),
            k if k > 0x7f => (name == b"void").then_some(0),
            k => h.btf.find_by_name_kind(name, BtfKind::from_raw(k as u8)),
        };
        found.map(|id| id as i32).ok_or(errno_err(libc::ENOENT))
    });
    ret(result)
}

ffi_fn! {
    /// `__s32 btf__find_by_name(const struct btf *btf, const char *type_name)`
    ///
    /// # Safety
    /// `btf` must be NULL or a live handle; `name` NULL or NUL-terminated.
    pub unsafe fn btf__find_by_name(btf: *const BtfHandle, name: *const c_char) -> c_int {
        // SAFETY: caller contract.
        unsafe { find_by_name(btf, name, -1) }
    }
}

ffi_fn! {
    /// `__s32 btf__find_by_name_kind(const struct btf *btf, const char *type_name, __u32 kind)`
    ///
    /// # Safety
    /// `btf` must be NULL or a live handle; `name` NULL or NUL-terminated.
    pub unsafe fn btf__find_by_name_kind(
        btf: *const BtfHandle,
        name: *const c_char,
        kind: c_uint,
    ) -> c_int {
        // SAFETY: caller contract.
        unsafe { find_by_name(btf, name, kind as i32) }
    }
}

ffi_fn! {
    /// `const char *btf__str_by_offset(const struct btf *btf, __u32 offset)`:
    /// NULL with EINVAL past the string section.
    ///
    /// # Safety
    /// `btf` must be NULL or a live handle.
    pub unsafe fn btf__str_by_offset(btf: *const BtfHandle, offset: u32) -> *const c_char {
        // SAFETY: caller contract.
        let result = unsafe { handle(btf) }.and_then(|h| {
            h.btf
                .str_ptr_by_offset(offset)
                .ok_or(errno_err(libc::EINVAL))
        });
        ret(result)
    }
}

ffi_fn! {
    /// `const char *btf__name_by_offset(const struct btf *btf, __u32 offset)`
    ///
    /// # Safety
    /// `btf` must be NULL or a live handle.
    pub unsafe fn btf__name_by_offset(btf: *const BtfHandle, offset: u32) -> *const c_char {
        // SAFETY: caller contract.
        unsafe { btf__str_by_offset(btf, offset) }
    }
}

fn type_err(e: TypeError) -> AbiError {
    errno_err(e.errno())
}

ffi_fn! {
    /// `__s64 btf__resolve_size(const struct btf *btf, __u32 type_id)`
    ///
    /// # Safety
    /// `btf` must be NULL or a live handle.
    pub unsafe fn btf__resolve_size(btf: *const BtfHandle, id: u32) -> c_long {
        // SAFETY: caller contract.
        let result = unsafe { handle(btf) }
            .and_then(|h| h.btf.resolve_size(id).map_err(type_err));
        ret(result.map(c_long::from))
    }
}

ffi_fn! {
    /// `int btf__resolve_type(const struct btf *btf, __u32 type_id)`
    ///
    /// # Safety
    /// `btf` must be NULL or a live handle.
    pub unsafe fn btf__resolve_type(btf: *const BtfHandle, id: u32) -> c_int {
        // SAFETY: caller contract.
        let result = unsafe { handle(btf) }
            .and_then(|h| h.btf.resolve_type(id).map_err(type_err));
        ret(result.map(|id| id as c_int))
    }
}

ffi_fn! {
    /// `int btf__align_of(const struct btf *btf, __u32 id)`: like libbpf,
    /// 0 with errno EINVAL (not a negative value) when there is none.
    ///
    /// # Safety
    /// `btf` must be NULL or a live handle.
    pub unsafe fn btf__align_of(btf: *const BtfHandle, id: u32) -> c_int {
        // SAFETY: caller contract.
        let Ok(h) = (unsafe { handle(btf) }) else {
            set_errno(libc::EINVAL);
            return 0;
        };
        match h.btf.align_of(id) {
            Ok(align) => align as c_int,
            Err(e) => {
                if let TypeError::NoAlignment { kind, .. } = e {
                    print::warn(&format!("unsupported BTF_KIND:{}\n", kind.to_raw()));
                }
                set_errno(libc::EINVAL);
                0
            }
        }
    }
}

ffi_fn! {
    /// `size_t btf__pointer_size(const struct btf *btf)`: 0 if it cannot
    /// be guessed.
    ///
    /// # Safety
    /// `btf` must be NULL or a live handle.
    pub unsafe fn btf__pointer_size(btf: *const BtfHandle) -> usize {
        // SAFETY: caller contract.
        ret(unsafe { handle(btf) }.map(|h| h.btf.pointer_size().unwrap_or(0) as usize))
    }
}

ffi_fn! {
    /// `int btf__set_pointer_size(struct btf *btf, size_t ptr_sz)`: 4 or 8.
    ///
    /// # Safety
    /// `btf` must be NULL or a live handle.
    pub unsafe fn btf__set_pointer_size(btf: *mut BtfHandle, size: usize) -> c_int {
        // SAFETY: caller contract.
        let result = unsafe { handle_mut(btf) }.and_then(|h| {
            if size != 4 && size != 8 {
                return Err(errno_err(libc::EINVAL));
            }
            h.btf_mut()
                .set_pointer_size(size as u32)
                .map_err(type_err)
        });
        ret(result.map(|()| 0))
    }
}

fn endianness_value(e: Endianness) -> c_uint {
    match e {
        Endianness::Little => BTF_LITTLE_ENDIAN,
        Endianness::Big => BTF_BIG_ENDIAN,
    }
}

fn endianness_from(value: c_uint) -> Result<Endianness, AbiError> {
    match value {
        BTF_LITTLE_ENDIAN => Ok(Endianness::Little),
        BTF_BIG_ENDIAN => Ok(Endianness::Big),
        _ => Err(errno_err(libc::EINVAL)),
    }
}

ffi_fn! {
    /// `enum btf_endianness btf__endianness(const struct btf *btf)`
    ///
    /// # Safety
    /// `btf` must be NULL or a live handle.
    pub unsafe fn btf__endianness(btf: *const BtfHandle) -> c_uint {
        // SAFETY: caller contract.
        ret(unsafe { handle(btf) }.map(|h| endianness_value(h.endianness)))
    }
}

ffi_fn! {
    /// `int btf__set_endianness(struct btf *btf, enum btf_endianness endian)`
    ///
    /// # Safety
    /// `btf` must be NULL or a live handle.
    pub unsafe fn btf__set_endianness(btf: *mut BtfHandle, endian: c_uint) -> c_int {
        // SAFETY: caller contract.
        let result = unsafe { handle_mut(btf) }.and_then(|h| {
            h.endianness = endianness_from(endian)?;
            h.raw_swapped = OnceLock::new();
            Ok(0)
        });
        ret(result)
    }
}

ffi_fn! {
    /// `const void *btf__raw_data(const struct btf *btf, __u32 *size)`: in
    /// the BTF's byte order; valid until the next modification.
    ///
    /// # Safety
    /// `btf` must be NULL or a live handle; `size` writable.
    pub unsafe fn btf__raw_data(btf: *const BtfHandle, size: *mut u32) -> *const c_void {
        // SAFETY: caller contract.
        let result = unsafe { handle(btf) }.map(|h| {
            let data: &[u8] = match h.endianness == Endianness::NATIVE {
                true => h.btf.raw_data(),
                false => h
                    .raw_swapped
                    .get_or_init(|| h.btf.raw_data_in(h.endianness).into_owned().into()),
            };
            if !size.is_null() {
                // SAFETY: writable (caller contract).
                unsafe { *size = data.len() as u32 };
            }
            data.as_ptr().cast::<c_void>()
        });
        ret(result)
    }
}

ffi_fn! {
    /// `const void *btf__get_raw_data(const struct btf *btf, __u32 *size)`:
    /// libbpf's alias of `btf__raw_data`.
    ///
    /// # Safety
    /// As `btf__raw_data`.
    pub unsafe fn btf__get_raw_data(btf: *const BtfHandle, size: *mut u32) -> *const c_void {
        // SAFETY: caller contract.
        unsafe { btf__raw_data(btf, size) }
    }
}

ffi_fn! {
    /// `int btf__fd(const struct btf *btf)`
    ///
    /// # Safety
    /// `btf` must be NULL or a live handle.
    pub unsafe fn btf__fd(btf: *const BtfHandle) -> c_int {
        // SAFETY: caller contract.
        ret(unsafe { handle(btf) }.map(|h| h.fd))
    }
}

ffi_fn! {
    /// `void btf__set_fd(struct btf *btf, int fd)`
    ///
    /// # Safety
    /// `btf` must be NULL or a live handle.
    pub unsafe fn btf__set_fd(btf: *mut BtfHandle, fd: c_int) {
        // SAFETY: caller contract.
        if let Ok(h) = unsafe { handle_mut(btf) } {
            h.fd = fd;
        }
    }
}

// ---------------------------------------------------------------------
// Strings and types added.

fn edit_err(e: EditError) -> AbiError {
    errno_err(e.errno())
}

/// Runs an edit on the BTF at `btf`: its result (an id, an offset, or 0)
/// or libbpf's `-errno`.
///
/// # Safety
/// `btf` must be NULL or a live handle not otherwise borrowed.
unsafe fn edit(btf: *mut BtfHandle, f: impl FnOnce(&mut Btf) -> Result<u32, EditError>) -> c_int {
    // SAFETY: caller contract.
    let result = unsafe { handle_mut(btf) }
        .and_then(|h| f(h.btf_mut()).map_err(edit_err))
        .map(|v| v as c_int);
    ret(result)
}

ffi_fn! {
    /// `int btf__find_str(struct btf *btf, const char *s)`: the offset, or
    /// -ENOENT.
    ///
    /// # Safety
    /// `btf` must be NULL or a live handle; `s` NULL or NUL-terminated.
    pub unsafe fn btf__find_str(btf: *mut BtfHandle, s: *const c_char) -> c_int {
        // SAFETY: caller contract.
        let result = unsafe { handle(btf) }.and_then(|h| {
            if s.is_null() {
                return Err(errno_err(libc::EINVAL));
            }
            // SAFETY: NUL-terminated (caller contract).
            let s = unsafe { c_bytes(s) };
            h.btf
                .find_str(s)
                .map(|off| off as c_int)
                .ok_or(errno_err(libc::ENOENT))
        });
        ret(result)
    }
}

ffi_fn! {
    /// `int btf__add_str(struct btf *btf, const char *s)`
    ///
    /// # Safety
    /// `btf` must be NULL or a live handle; `s` NULL or NUL-terminated.
    pub unsafe fn btf__add_str(btf: *mut BtfHandle, s: *const c_char) -> c_int {
        if s.is_null() {
            return ret(Err(errno_err(libc::EINVAL)));
        }
        // SAFETY: NUL-terminated (caller contract).
        let s = unsafe { c_bytes(s) };
        // SAFETY: caller contract.
        unsafe { edit(btf, |b| b.add_str(s)) }
    }
}

/// Declares `btf__add_*` entry points that take a name (NULL reads as
/// empty) and plain integer arguments, forwarding to a [`Btf`] method.
macro_rules! add_with_name {
    ($(#[$doc:meta])* $c:ident => $method:ident($($arg:ident: $ty:ty),*) $(-> $unit:tt)?) => {
        ffi_fn! {
            $(#[$doc])*
            ///
            /// # Safety
            /// `btf` must be NULL or a live handle; `name` NULL or NUL-terminated.
            pub unsafe fn $c(btf: *mut BtfHandle, name: *const c_char $(, $arg: $ty)*) -> c_int {
                // SAFETY: NULL or NUL-terminated (caller contract).
                let name = unsafe { c_bytes(name) };
                // SAFETY: caller contract.
                unsafe { edit(btf, |b| add_with_name!(@call b, $method, name, ($($arg),*) $(, $unit)?)) }
            }
        }
    };
    (@call $b:ident, $method:ident, $name:ident, ($($arg:expr),*), unit) => {
        $b.$method($name $(, $arg)*).map(|()| 0)
    };
    (@call $b:ident, $method:ident, $name:ident, ($($arg:expr),*)) => {
        $b.$method($name $(, $arg)*)
    };
}

/// `btf__add_*` entry points without a name.
macro_rules! add_without_name {
    ($(#[$doc:meta])* $c:ident => $method:ident($($arg:ident: $ty:ty),*) $(-> $unit:tt)?) => {
        ffi_fn! {
            $(#[$doc])*
            ///
            /// # Safety
            /// `btf` must be NULL or a live handle.
            pub unsafe fn $c(btf: *mut BtfHandle $(, $arg: $ty)*) -> c_int {
                // SAFETY: caller contract.
                unsafe { edit(btf, |b| add_without_name!(@call b, $method, ($($arg),*) $(, $unit)?)) }
            }
        }
    };
    (@call $b:ident, $method:ident, ($($arg:expr),*), unit) => {
        $b.$method($($arg),*).map(|()| 0)
    };
    (@call $b:ident, $method:ident, ($($arg:expr),*)) => {
        $b.$method($($arg),*)
    };
}

add_with_name!(
    /// `int btf__add_int(struct btf *btf, const char *name, size_t byte_sz, int encoding)`
    btf__add_int => add_int(size: usize, encoding: c_int)
);
add_with_name!(
    /// `int btf__add_float(struct btf *btf, const char *name, size_t byte_sz)`
    btf__add_float => add_float(size: usize)
);
add_without_name!(
    /// `int btf__add_ptr(struct btf *btf, int ref_type_id)`
    btf__add_ptr => add_ptr(ref_id: c_int)
);
add_without_name!(
    /// `int btf__add_array(struct btf *btf, int index_type_id, int elem_type_id, __u32 nr_elems)`
    btf__add_array => add_array(index_id: c_int, elem_id: c_int, nelems: u32)
);
add_with_name!(
    /// `int btf__add_struct(struct btf *btf, const char *name, __u32 sz)`
    btf__add_struct => add_struct(size: u32)
);
add_with_name!(
    /// `int btf__add_union(struct btf *btf, const char *name, __u32 sz)`
    btf__add_union => add_union(size: u32)
);
add_with_name!(
    /// `int btf__add_field(struct btf *btf, const char *name, int field_type_id, __u32 bit_offset, __u32 bit_size)`
    btf__add_field => add_field(type_id: c_int, bit_offset: u32, bit_size: u32) -> unit
);
add_with_name!(
    /// `int btf__add_enum(struct btf *btf, const char *name, __u32 bytes_sz)`
    btf__add_enum => add_enum(size: u32)
);
add_with_name!(
    /// `int btf__add_enum_value(struct btf *btf, const char *name, __s64 value)`
    btf__add_enum_value => add_enum_value(value: i64) -> unit
);
add_with_name!(
    /// `int btf__add_enum64_value(struct btf *btf, const char *name, __u64 value)`
    btf__add_enum64_value => add_enum64_value(value: u64) -> unit
);
add_with_name!(
    /// `int btf__add_typedef(struct btf *btf, const char *name, int ref_type_id)`
    btf__add_typedef => add_typedef(ref_id: c_int)
);
add_without_name!(
    /// `int btf__add_volatile(struct btf *btf, int ref_type_id)`
    btf__add_volatile => add_volatile(ref_id: c_int)
);
add_without_name!(
    /// `int btf__add_const(struct btf *btf, int ref_type_id)`
    btf__add_const => add_const(ref_id: c_int)
);
add_without_name!(
    /// `int btf__add_restrict(struct btf *btf, int ref_type_id)`
    btf__add_restrict => add_restrict(ref_id: c_int)
);
add_with_name!(
    /// `int btf__add_type_tag(struct btf *btf, const char *value, int ref_type_id)`
    btf__add_type_tag => add_type_tag(ref_id: c_int)
);
add_with_name!(
    /// `int btf__add_type_attr(struct btf *btf, const char *value, int ref_type_id)`
    btf__add_type_attr => add_type_attr(ref_id: c_int)
);
add_without_name!(
    /// `int btf__add_func_proto(struct btf *btf, int ret_type_id)`
    btf__add_func_proto => add_func_proto(return_id: c_int)
);
add_with_name!(
    /// `int btf__add_func_param(struct btf *btf, const char *name, int type_id)`
    btf__add_func_param => add_func_param(type_id: c_int) -> unit
);
add_with_name!(
    /// `int btf__add_var(struct btf *btf, const char *name, int linkage, int type_id)`
    btf__add_var => add_var(linkage: c_int, type_id: c_int)
);
add_with_name!(
    /// `int btf__add_datasec(struct btf *btf, const char *name, __u32 byte_sz)`
    btf__add_datasec => add_datasec(size: u32)
);
add_without_name!(
    /// `int btf__add_datasec_var_info(struct btf *btf, int var_type_id, __u32 offset, __u32 byte_sz)`
    btf__add_datasec_var_info => add_datasec_var_info(var_id: c_int, offset: u32, size: u32) -> unit
);
add_with_name!(
    /// `int btf__add_decl_tag(struct btf *btf, const char *value, int ref_type_id, int component_idx)`
    btf__add_decl_tag => add_decl_tag(ref_id: c_int, component_idx: c_int)
);
add_with_name!(
    /// `int btf__add_decl_attr(struct btf *btf, const char *value, int ref_type_id, int component_idx)`
    btf__add_decl_attr => add_decl_attr(ref_id: c_int, component_idx: c_int)
);

ffi_fn! {
    /// `int btf__add_enum64(struct btf *btf, const char *name, __u32 bytes_sz, bool is_signed)`
    ///
    /// # Safety
    /// `btf` must be NULL or a live handle; `name` NULL or NUL-terminated.
    pub unsafe fn btf__add_enum64(
        btf: *mut BtfHandle,
        name: *const c_char,
        size: u32,
        is_signed: bool,
    ) -> c_int {
        // SAFETY: NULL or NUL-terminated (caller contract).
        let name = unsafe { c_bytes(name) };
        // SAFETY: caller contract.
        unsafe { edit(btf, |b| b.add_enum64(name, size, is_signed)) }
    }
}

ffi_fn! {
    /// `int btf__add_fwd(struct btf *btf, const char *name, enum btf_fwd_kind fwd_kind)`
    ///
    /// # Safety
    /// `btf` must be NULL or a live handle; `name` NULL or NUL-terminated.
    pub unsafe fn btf__add_fwd(btf: *mut BtfHandle, name: *const c_char, kind: c_uint) -> c_int {
        // SAFETY: NULL or NUL-terminated (caller contract).
        let name = unsafe { c_bytes(name) };
        // SAFETY: caller contract.
        unsafe {
            edit(btf, |b| {
                if name.is_empty() {
                    return Err(EditError::Invalid("empty name"));
                }
                let kind = match kind {
                    0 => FwdKind::Struct,
                    1 => FwdKind::Union,
                    2 => FwdKind::Enum,
                    _ => return Err(EditError::Invalid("unknown forward kind")),
                };
                b.add_fwd(name, kind)
            })
        }
    }
}

ffi_fn! {
    /// `int btf__add_func(struct btf *btf, const char *name, enum btf_func_linkage linkage, int proto_type_id)`
    ///
    /// # Safety
    /// `btf` must be NULL or a live handle; `name` NULL or NUL-terminated.
    pub unsafe fn btf__add_func(
        btf: *mut BtfHandle,
        name: *const c_char,
        linkage: c_uint,
        proto_id: c_int,
    ) -> c_int {
        // SAFETY: NULL or NUL-terminated (caller contract).
        let name = unsafe { c_bytes(name) };
        // SAFETY: caller contract.
        unsafe { edit(btf, |b| b.add_func(name, linkage, proto_id)) }
    }
}

ffi_fn! {
    /// `int btf__add_type(struct btf *btf, const struct btf *src_btf, const struct btf_type *src_type)`
    ///
    /// # Safety
    /// `btf` and `src` must be NULL or live handles; `src_type` NULL or a
    /// complete type record (head and trailing data).
    pub unsafe fn btf__add_type(
        btf: *mut BtfHandle,
        src: *const BtfHandle,
        src_type: *const BtfType,
    ) -> c_int {
        if src_type.is_null() {
            return ret(Err(errno_err(libc::EINVAL)));
        }
        // SAFETY: a readable btf_type head (caller contract).
        let head = unsafe { src_type.read_unaligned() };
        let Some(words) = Btf::record_words_of(&head) else {
            return ret(Err(errno_err(libc::EINVAL)));
        };
        let mut record = vec![0u32; words];
        // SAFETY: the record behind src_type is `words` words (its kind
        // and vlen say so); copied before the destination changes.
        unsafe {
            std::ptr::copy_nonoverlapping(
                src_type.cast::<u8>(),
                record.as_mut_ptr().cast::<u8>(),
                words * 4,
            )
        };
        // SAFETY: caller contract.
        let Ok(src) = (unsafe { handle(src) }) else {
            return ret(Err(errno_err(libc::EINVAL)));
        };
        // Held apart from the destination (they may be the same handle).
        let src_btf = src.btf.clone();
        // SAFETY: caller contract.
        unsafe { edit(btf, |b| b.add_type(&src_btf, &record)) }
    }
}

ffi_fn! {
    /// `int btf__add_btf(struct btf *btf, const struct btf *src_btf)`
    ///
    /// # Safety
    /// `btf` and `src` must be NULL or live handles.
    pub unsafe fn btf__add_btf(btf: *mut BtfHandle, src: *const BtfHandle) -> c_int {
        // SAFETY: caller contract.
        let Ok(src) = (unsafe { handle(src) }) else {
            return ret(Err(errno_err(libc::EINVAL)));
        };
        let src_btf = src.btf.clone();
        // SAFETY: caller contract.
        unsafe { edit(btf, |b| b.add_btf(&src_btf)) }
    }
}

// ---------------------------------------------------------------------
// btf_ext.

fn new_ext(bytes: &[u8]) -> Result<Box<BtfExtHandle>, AbiError> {
    let ext = BtfExt::parse(bytes).map_err(|e| {
        print::debug(&format!("{e}\n"));
        errno_err(e.errno())
    })?;
    Ok(Box::new(BtfExtHandle {
        endianness: ext.endianness(),
        ext,
        raw_swapped: OnceLock::new(),
    }))
}

ffi_fn! {
    /// `struct btf_ext *btf_ext__new(const __u8 *data, __u32 size)`
    ///
    /// # Safety
    /// `data` must be NULL or valid for `size` bytes.
    pub unsafe fn btf_ext__new(data: *const u8, size: u32) -> *mut BtfExtHandle {
        if data.is_null() {
            return ret(Err(errno_err(libc::EINVAL)));
        }
        // SAFETY: valid for size bytes (caller contract).
        let bytes = unsafe { std::slice::from_raw_parts(data, size as usize) };
        ret(new_ext(bytes).map(Box::into_raw))
    }
}

ffi_fn! {
    /// `void btf_ext__free(struct btf_ext *btf_ext)`
    ///
    /// # Safety
    /// `ext` must be NULL, an `ERR_PTR` or a live handle not used afterwards.
    pub unsafe fn btf_ext__free(ext: *mut BtfExtHandle) {
        if !is_err_or_null(ext) {
            // SAFETY: from Box::into_raw (caller contract).
            drop(unsafe { Box::from_raw(ext) });
        }
    }
}

ffi_fn! {
    /// `const void *btf_ext__raw_data(const struct btf_ext *btf_ext, __u32 *size)`
    ///
    /// # Safety
    /// `ext` must be NULL or a live handle; `size` writable.
    pub unsafe fn btf_ext__raw_data(ext: *const BtfExtHandle, size: *mut u32) -> *const c_void {
        // SAFETY: NULL or live (caller contract).
        let Some(h) = (unsafe { ext.as_ref() }) else {
            return ret(Err(errno_err(libc::EINVAL)));
        };
        let data: &[u8] = match h.endianness == Endianness::NATIVE {
            true => h.ext.raw_data(),
            false => h
                .raw_swapped
                .get_or_init(|| h.ext.raw_data_in(h.endianness).into_owned().into()),
        };
        if !size.is_null() {
            // SAFETY: writable (caller contract).
            unsafe { *size = data.len() as u32 };
        }
        data.as_ptr().cast()
    }
}

ffi_fn! {
    /// `const void *btf_ext__get_raw_data(const struct btf_ext *btf_ext, __u32 *size)`
    ///
    /// # Safety
    /// As `btf_ext__raw_data`.
    pub unsafe fn btf_ext__get_raw_data(ext: *const BtfExtHandle, size: *mut u32) -> *const c_void {
        // SAFETY: caller contract.
        unsafe { btf_ext__raw_data(ext, size) }
    }
}

ffi_fn! {
    /// `enum btf_endianness btf_ext__endianness(const struct btf_ext *btf_ext)`
    ///
    /// # Safety
    /// `ext` must be NULL or a live handle.
    pub unsafe fn btf_ext__endianness(ext: *const BtfExtHandle) -> c_uint {
        // SAFETY: NULL or live (caller contract).
        match unsafe { ext.as_ref() } {
            Some(h) => endianness_value(h.endianness),
            None => ret(Err(errno_err(libc::EINVAL))),
        }
    }
}

ffi_fn! {
    /// `int btf_ext__set_endianness(struct btf_ext *btf_ext, enum btf_endianness endian)`
    ///
    /// # Safety
    /// `ext` must be NULL or a live handle.
    pub unsafe fn btf_ext__set_endianness(ext: *mut BtfExtHandle, endian: c_uint) -> c_int {
        // SAFETY: NULL or live (caller contract).
        let Some(h) = (unsafe { ext.as_mut() }) else {
            return ret(Err(errno_err(libc::EINVAL)));
        };
        ret(endianness_from(endian).map(|e| {
            h.endianness = e;
            h.raw_swapped = OnceLock::new();
            0
        }))
    }
}

// ---------------------------------------------------------------------------
// Loading BTF into the kernel (`bpf_btf_load`, `btf__load_into_kernel`)
// ---------------------------------------------------------------------------
//
// BTF objects are a kernel concept: with `USERBPF_BACKEND=kernel` they are
// always loaded into the kernel (whose errno the caller gets); in `auto`
// mode when this process may use the kernel's BPF, else (and always in
// `user` mode) the call fails with `EOPNOTSUPP` and a message saying why.

// SAFETY: bindgen's repr(C) mirror of the C struct, starting with `size_t
// sz`, holding only integers and raw pointers.
unsafe impl crate::opts::OptsStruct for crate::cabi::bpf_btf_load_opts {
    const NAME: &'static str = "bpf_btf_load_opts";
}

/// libbpf's `BPF_LOG_BUF_SIZE`: the first size of its own BTF log buffer.
const BPF_LOG_BUF_SIZE: usize = (u32::MAX >> 8) as usize;

/// Whether BTF goes to the kernel; `Err(EOPNOTSUPP)` (logged) if not.
fn btf_to_kernel(what: &str) -> Result<(), AbiError> {
    use userbpf_libbpf_compat::backend::kernel::probe;
    use userbpf_libbpf_compat::backend::placement::BackendMode;
    match BackendMode::from_env() {
        Ok(BackendMode::Kernel) => Ok(()),
        Ok(BackendMode::User) => {
            print::warn(&format!(
                "{what}: BTF objects live in the kernel; USERBPF_BACKEND=user keeps everything in user space\n"
            ));
            Err(errno_err(libc::EOPNOTSUPP))
        }
        _ if probe::kernel_permitted() => Ok(()),
        _ => {
            print::warn(&format!(
                "{what}: BTF objects live in the kernel, and {}\n",
                probe::why_not()
            ));
            Err(errno_err(libc::EOPNOTSUPP))
        }
    }
}

/// `BPF_BTF_LOAD` as libbpf's `bpf_btf_load` makes it: the fd (through
/// `ensure_good_fd`), `log_true_size` written back.
///
/// # Safety
/// `data` valid for `size` bytes; `log_buf` NULL or valid for `log_size`.
unsafe fn btf_load_raw(
    data: *const c_void,
    size: usize,
    log_buf: *mut c_char,
    log_size: u32,
    log_level: u32,
    btf_flags: u32,
    token_fd: u32,
) -> (Result<c_int, i32>, u32) {
    use userbpf_libbpf_compat::backend::kernel::sys;
    let mut attr = sys::BtfLoadAttr {
        btf: data as u64,
        btf_size: size as u32,
        btf_flags,
        btf_token_fd: token_fd as i32,
        ..Default::default()
    };
    if log_level != 0 {
        attr.btf_log_buf = log_buf as u64;
        attr.btf_log_size = log_size;
        attr.btf_log_level = log_level;
    }
    // SAFETY: caller contract for the data and log buffers.
    let mut r = unsafe { sys::bpf_fd(sys::cmd::BTF_LOAD, &mut attr) };
    if r.is_err() && !log_buf.is_null() && log_level == 0 {
        attr.btf_log_buf = log_buf as u64;
        attr.btf_log_size = log_size;
        attr.btf_log_level = 1;
        // SAFETY: as above.
        r = unsafe { sys::bpf_fd(sys::cmd::BTF_LOAD, &mut attr) };
    }
    let fd = r.and_then(good_fd);
    (fd, attr.btf_log_true_size)
}

/// libbpf's `ensure_good_fd`.
fn good_fd(fd: std::os::fd::OwnedFd) -> Result<c_int, i32> {
    use std::os::fd::{AsRawFd, IntoRawFd};
    if fd.as_raw_fd() >= 3 {
        return Ok(fd.into_raw_fd());
    }
    // SAFETY: F_DUPFD_CLOEXEC on an fd we own; the new fd is ours.
    let raw = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if raw < 0 {
        let e = std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EMFILE);
        print::warn(&format!(
            "failed to dup FD {} to FD > 2: {}\n",
            fd.as_raw_fd(),
            -e
        ));
        return Err(e);
    }
    Ok(raw)
}

ffi_fn! {
    /// `int bpf_btf_load(const void *btf_data, size_t btf_size, struct bpf_btf_load_opts *opts)`:
    /// loads raw BTF into the kernel (see the section comment for when).
    ///
    /// # Safety
    /// `btf_data` valid for `btf_size` bytes; `opts` NULL or valid, its log
    /// buffer valid for `log_size` bytes.
    pub unsafe fn bpf_btf_load(
        btf_data: *const c_void,
        btf_size: usize,
        opts: *mut crate::cabi::bpf_btf_load_opts,
    ) -> c_int {
        // SAFETY: caller contract.
        let o = match unsafe { crate::opts::read_opts(opts.cast_const()) } {
            Ok(o) => o,
            Err(e) => return c_int::from_error(&e),
        };
        let log_buf = o.map_or(std::ptr::null_mut(), |o| o.log_buf);
        let log_size = o.map_or(0, |o| o.log_size);
        let log_level = o.map_or(0, |o| o.log_level);
        if log_size != 0 && log_buf.is_null() {
            return c_int::from_error(&errno_err(libc::EINVAL));
        }
        if let Err(e) = btf_to_kernel("bpf_btf_load") {
            return c_int::from_error(&e);
        }
        // SAFETY: caller contract.
        let (r, true_size) = unsafe {
            btf_load_raw(
                btf_data,
                btf_size,
                log_buf,
                log_size,
                log_level,
                o.map_or(0, |o| o.btf_flags),
                o.map_or(0, |o| o.token_fd),
            )
        };
        if let Some(o) = o {
            // OPTS_SET: only within the caller's sz.
            let off = std::mem::offset_of!(crate::cabi::bpf_btf_load_opts, log_true_size);
            if o.sz >= off + 4 {
                // SAFETY: the field lies within the caller's opts.
                unsafe { (*opts).log_true_size = true_size };
            }
        }
        match r {
            Ok(fd) => fd,
            Err(e) => c_int::from_error(&errno_err(e)),
        }
    }
}

ffi_fn! {
    /// `int btf__load_into_kernel(struct btf *btf)`: libbpf's
    /// `btf_load_into_kernel` (the raw data in native byte order, a log
    /// only on failure, in growing buffers while the kernel says `ENOSPC`);
    /// the fd becomes `btf__fd`. `EEXIST` if the BTF has an fd already.
    ///
    /// # Safety
    /// `btf` NULL or a live handle.
    pub unsafe fn btf__load_into_kernel(btf: *mut BtfHandle) -> c_int {
        // SAFETY: caller contract.
        let h = match unsafe { handle_mut(btf) } {
            Ok(h) => h,
            Err(e) => return c_int::from_error(&e),
        };
        if h.fd >= 0 {
            return c_int::from_error(&errno_err(libc::EEXIST));
        }
        if let Err(e) = btf_to_kernel("btf__load_into_kernel") {
            return c_int::from_error(&e);
        }
        let raw: std::borrow::Cow<'_, [u8]> = h.btf.raw_data_in(Endianness::NATIVE);
        let mut log_level = 0u32;
        let mut buf: Vec<u8> = Vec::new();
        loop {
            if log_level != 0 {
                let size = BPF_LOG_BUF_SIZE.max(buf.len() * 2);
                buf = vec![0u8; size];
            }
            let (ptr, len) = if log_level != 0 {
                (buf.as_mut_ptr().cast::<c_char>(), buf.len() as u32)
            } else {
                (std::ptr::null_mut(), 0)
            };
            // SAFETY: `raw` and `buf` outlive the call.
            let (r, _) = unsafe { btf_load_raw(raw.as_ptr().cast(), raw.len(), ptr, len, log_level, 0, 0) };
            match r {
                Ok(fd) => {
                    h.fd = fd;
                    return 0;
                }
                Err(_) if log_level == 0 => log_level = 1,
                Err(libc::ENOSPC) if buf.len() <= (u32::MAX / 2) as usize => {}
                Err(e) => {
                    print::warn(&format!(
                        "BTF loading error: {}\n",
                        userbpf_libbpf_compat::errstr::errstr(e)
                    ));
                    let n = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
                    if n > 0 {
                        print::warn(&format!(
                            "-- BEGIN BTF LOAD LOG ---\n{}\n-- END BTF LOAD LOG --\n",
                            String::from_utf8_lossy(&buf[..n])
                        ));
                    }
                    return c_int::from_error(&errno_err(e));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_query_and_free() {
        print::set_print(None);
        let btf = btf__new_empty();
        // SAFETY: btf is a live handle; the strings are NUL-terminated.
        unsafe {
            let int = btf__add_int(btf, c"int".as_ptr(), 4, 1);
            assert_eq!(int, 1);
            assert_eq!(btf__add_ptr(btf, int), 2);
            assert_eq!(btf__find_by_name(btf, c"int".as_ptr()), 1);
            assert_eq!(btf__find_by_name(btf, c"nope".as_ptr()), -libc::ENOENT);
            assert_eq!(crate::abi::errno(), libc::ENOENT);
            assert!(btf__type_by_id(btf, 3).is_null());
            assert_eq!(crate::abi::errno(), libc::EINVAL);
            assert_eq!(btf__resolve_size(btf, 2), 8);
            assert_eq!(btf__add_field(btf, c"x".as_ptr(), 1, 0, 0), -libc::EINVAL);
            let mut size = 0u32;
            assert!(!btf__raw_data(btf, &mut size).is_null());
            // header, INT (16 bytes) and PTR (12), "\0int\0"
            assert_eq!(size, 24 + 16 + 12 + 5);
            btf__free(btf);
            btf__free(std::ptr::null_mut());
        }
    }
}
