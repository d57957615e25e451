//! The entry points that are real already (status `implemented` in
//! `abi/signatures.tsv`): the ones whose contract cannot express failure or
//! that need no object model.

use std::ffi::{c_char, c_int, c_long, c_uint, c_void};
use std::sync::atomic::{AtomicI32, Ordering};

use crate::abi::{errno, set_errno, FfiReturn};
use crate::error::AbiError;
use crate::ffi_fn;
use crate::print::{self, PrintFn};

pub use crate::attach_api::*;
pub use crate::bpf_api::*;
pub use crate::btf_api::*;
pub use crate::btf_dump::*;
pub use crate::buffers::*;
pub use crate::kernel_attach_api::*;
pub use crate::link_api::*;
pub use crate::linker_api::*;
pub use crate::load_api::*;
pub use crate::object_api::*;
pub use crate::pin_api::*;
pub use crate::skeleton::*;
pub use crate::struct_ops_api::*;
pub use crate::usdt_api::bpf_program__attach_usdt;

/// The libbpf release whose API this library provides.
pub const MAJOR: u32 = 1;
/// See [`MAJOR`].
pub const MINOR: u32 = 7;

/// `-e` with `errno = e`, libbpf's `libbpf_err`.
fn err(e: i32) -> c_int {
    c_int::from_error(&AbiError::Errno(e))
}

ffi_fn! {
    /// `libbpf_print_fn_t libbpf_set_print(libbpf_print_fn_t fn)`
    pub fn libbpf_set_print(f: Option<PrintFn>) -> Option<PrintFn> {
        print::set_print(f)
    }
}

ffi_fn! {
    /// `__u32 libbpf_major_version(void)`
    pub fn libbpf_major_version() -> c_uint {
        MAJOR
    }
}

ffi_fn! {
    /// `__u32 libbpf_minor_version(void)`
    pub fn libbpf_minor_version() -> c_uint {
        MINOR
    }
}

ffi_fn! {
    /// `const char *libbpf_version_string(void)`: `"v1.7"`.
    pub fn libbpf_version_string() -> *const c_char {
        c"v1.7".as_ptr()
    }
}

ffi_fn! {
    /// `int libbpf_set_strict_mode(enum libbpf_strict_mode mode)`: libbpf 1.x
    /// is always strict, so this does nothing.
    pub fn libbpf_set_strict_mode(_mode: c_uint) -> c_int {
        0
    }
}

/// Linux's `MAX_ERRNO`: an `ERR_PTR` is in the last 4095 addresses.
const MAX_ERRNO: usize = 4095;

ffi_fn! {
    /// `long libbpf_get_error(const void *ptr)`: 0 for a valid pointer,
    /// `-errno` for NULL (the failing call set errno), the encoded error of
    /// an `ERR_PTR` (setting errno).
    pub fn libbpf_get_error(ptr: *const c_void) -> c_long {
        let addr = ptr as usize;
        if addr != 0 && addr < MAX_ERRNO.wrapping_neg() {
            return 0;
        }
        if addr != 0 {
            set_errno(-(addr as isize as i32));
        }
        -c_long::from(errno())
    }
}

/// `__LIBBPF_ERRNO__START`.
const LIBBPF_ERRNO_START: i32 = 4000;

/// Messages for `LIBBPF_ERRNO__LIBELF` (4000) .. `LIBBPF_ERRNO__NLPARSE`.
const LIBBPF_ERRNO_MESSAGES: [&str; 14] = [
    "Something wrong in libelf",
    "BPF object format invalid",
    "'version' section incorrect or lost",
    "Endian mismatch",
    "Internal error in libbpf",
    "Relocation failed",
    "Load program failure for unknown reason",
    "Kernel verifier blocks program loading",
    "Program too big",
    "Incorrect kernel version",
    "Kernel doesn't support this program type",
    "Wrong pid in netlink message",
    "Invalid netlink sequence",
    "Incorrect netlink message parsing",
];

/// snprintf into `buf[..size]`: true if `text` fit.
///
/// # Safety
/// `buf` must be valid for `size` (> 0) bytes of writes.
unsafe fn write_str(buf: *mut c_char, size: usize, text: &str) -> bool {
    let n = text.len().min(size - 1);
    // SAFETY: n < size bytes fit in buf (caller contract); text has n bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr().cast::<c_char>(), buf, n);
        *buf.add(n) = 0;
    }
    text.len() < size
}

ffi_fn! {
    /// `int libbpf_strerror(int err, char *buf, size_t size)`: errno values
    /// via `strerror_r`, libbpf's `LIBBPF_ERRNO__*` from its own table.
    ///
    /// # Safety
    /// `buf` must be NULL or valid for `size` bytes of writes.
    pub unsafe fn libbpf_strerror(code: c_int, buf: *mut c_char, size: usize) -> c_int {
        if buf.is_null() || size == 0 {
            return err(libc::EINVAL);
        }
        let code = code.saturating_abs();
        if code < LIBBPF_ERRNO_START {
            // SAFETY: buf is valid for size bytes (caller contract). The libc
            // crate binds the XSI strerror_r, which returns an error number.
            let ret = unsafe {
                let ret = libc::strerror_r(code, buf, size);
                *buf.add(size - 1) = 0;
                ret
            };
            // libbpf_err_errno(): a positive return value is passed through.
            return if ret < 0 { -errno() } else { ret };
        }
        let index = (code - LIBBPF_ERRNO_START) as usize;
        let (text, unknown) = match LIBBPF_ERRNO_MESSAGES.get(index) {
            Some(msg) => (msg.to_string(), false),
            None => (format!("Unknown libbpf error {code}"), true),
        };
        // SAFETY: buf is valid for size > 0 bytes (checked above, caller contract).
        if !unsafe { write_str(buf, size, &text) } {
            return err(libc::ERANGE);
        }
        if unknown {
            err(libc::ENOENT)
        } else {
            0
        }
    }
}

/// Counts the CPUs in a cpulist such as `0-3,8,10-11`.
pub fn count_cpu_list(list: &str) -> Result<i32, AbiError> {
    let mut count = 0i32;
    for part in list.trim().split(',') {
        let bad = || AbiError::Errno(libc::EINVAL);
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (lo, hi),
            None => (part, part),
        };
        let lo: i32 = lo.trim().parse().map_err(|_| bad())?;
        let hi: i32 = hi.trim().parse().map_err(|_| bad())?;
        if hi < lo {
            return Err(bad());
        }
        count = count.checked_add(hi - lo + 1).ok_or_else(bad)?;
    }
    Ok(count)
}

static POSSIBLE_CPUS: AtomicI32 = AtomicI32::new(0);

ffi_fn! {
    /// `int libbpf_num_possible_cpus(void)`: from
    /// `/sys/devices/system/cpu/possible`, cached like libbpf.
    pub fn libbpf_num_possible_cpus() -> c_int {
        let cached = POSSIBLE_CPUS.load(Ordering::Relaxed);
        if cached > 0 {
            return cached;
        }
        const PATH: &str = "/sys/devices/system/cpu/possible";
        let result = std::fs::read_to_string(PATH)
            .map_err(|e| AbiError::Errno(e.raw_os_error().unwrap_or(libc::EIO)))
            .and_then(|text| count_cpu_list(&text));
        match result {
            Ok(n) => {
                POSSIBLE_CPUS.store(n, Ordering::Relaxed);
                n
            }
            Err(e) => {
                print::warn(&format!("failed to get CPU mask from {PATH}: {e}\n"));
                c_int::from_error(&e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(count_cpu_list("0\n").unwrap(), 1);
        assert_eq!(count_cpu_list("0-3\n").unwrap(), 4);
        assert_eq!(count_cpu_list("0-1,4,6-7").unwrap(), 5);
        assert!(count_cpu_list("3-1").is_err());
        assert!(count_cpu_list("").is_err());
    }

    #[test]
    fn strerror() {
        let mut buf = [0 as c_char; 64];
        // SAFETY: buf is 64 writable bytes.
        let ret = unsafe { libbpf_strerror(-4007, buf.as_mut_ptr(), buf.len()) };
        assert_eq!(ret, 0);
        // SAFETY: libbpf_strerror NUL-terminates within buf.
        let msg = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
        assert_eq!(
            msg.to_str().unwrap(),
            "Kernel verifier blocks program loading"
        );
        // SAFETY: as above.
        let ret = unsafe { libbpf_strerror(libc::ENOENT, buf.as_mut_ptr(), buf.len()) };
        assert_eq!(ret, 0);
        // SAFETY: as above.
        let ret = unsafe { libbpf_strerror(4100, buf.as_mut_ptr(), 8) };
        assert_eq!((ret, errno()), (-libc::ERANGE, libc::ERANGE));
        // SAFETY: a NULL buffer is rejected before use.
        let ret = unsafe { libbpf_strerror(1, std::ptr::null_mut(), 8) };
        assert_eq!(ret, -libc::EINVAL);
    }

    #[test]
    fn get_error() {
        set_errno(libc::ENOENT);
        assert_eq!(
            libbpf_get_error(std::ptr::null()),
            -c_long::from(libc::ENOENT)
        );
        let err_ptr = (-(libc::EPERM as isize)) as usize as *const c_void;
        assert_eq!(libbpf_get_error(err_ptr), -c_long::from(libc::EPERM));
        assert_eq!(errno(), libc::EPERM);
        assert_eq!(libbpf_get_error(c"x".as_ptr().cast()), 0);
    }

    #[test]
    fn versions() {
        assert_eq!(libbpf_major_version(), 1);
        // SAFETY: libbpf_version_string returns a static C string.
        let s = unsafe { std::ffi::CStr::from_ptr(libbpf_version_string()) };
        assert_eq!(
            s.to_str().unwrap(),
            format!("v{MAJOR}.{}", libbpf_minor_version())
        );
    }
}
