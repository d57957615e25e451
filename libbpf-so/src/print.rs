//! libbpf's logging: `libbpf_set_print` and the messages entry points emit.
//!
//! The callback type is `int (*)(enum libbpf_print_level, const char *fmt,
//! va_list ap)`. Stable Rust cannot build a `va_list`, so messages are
//! formatted here and handed over by the C shim `csrc/print.c` as
//! `fn(level, "%s", ap)` with a genuine `va_list`. The default printer (the
//! value `libbpf_set_print` returns the first time) is a C function too, so an
//! application may call it with its own `va_list`.

use std::ffi::{c_char, c_int, c_void, CString};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Once;

use crate::abi::{errno, set_errno};

/// `libbpf_print_fn_t`. The `va_list` parameter is a pointer at the ABI level
/// (x86-64: `__va_list_tag *`; AAPCS64 passes the 32-byte struct by
/// reference); Rust never calls it directly, `csrc/print.c` does.
pub type PrintFn = unsafe extern "C" fn(c_int, *const c_char, *mut c_void) -> c_int;

/// `enum libbpf_print_level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Level {
    /// `LIBBPF_WARN`
    Warn = 0,
    /// `LIBBPF_INFO`
    Info = 1,
    /// `LIBBPF_DEBUG`
    Debug = 2,
}

extern "C" {
    fn userbpf_print_str(f: PrintFn, level: c_int, msg: *const c_char) -> c_int;
    fn userbpf_default_printer() -> PrintFn;
}

/// The current callback; null means printing is off.
static PRINT: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
static PRINT_INIT: Once = Once::new();

fn slot() -> &'static AtomicPtr<c_void> {
    PRINT_INIT.call_once(|| {
        // SAFETY: userbpf_default_printer takes nothing and returns a function pointer.
        let default = unsafe { userbpf_default_printer() };
        PRINT.store(default as *mut c_void, Ordering::Release);
    });
    &PRINT
}

fn to_fn(ptr: *mut c_void) -> Option<PrintFn> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: every non-null value stored in PRINT came from a PrintFn.
    Some(unsafe { std::mem::transmute::<*mut c_void, PrintFn>(ptr) })
}

/// Installs `f` (None: printing off) and returns the previous callback.
pub fn set_print(f: Option<PrintFn>) -> Option<PrintFn> {
    let new = f.map_or(std::ptr::null_mut(), |f| f as *mut c_void);
    to_fn(slot().swap(new, Ordering::AcqRel))
}

/// Sends `libbpf: <msg>` to the callback, keeping `errno` as it was.
/// `msg` should end with a newline, like libbpf's messages.
pub fn print(level: Level, msg: &str) {
    let Some(f) = to_fn(slot().load(Ordering::Acquire)) else {
        return;
    };
    let text = CString::new(format!("libbpf: {msg}").replace('\0', "\\0")).unwrap_or_default();
    let saved = errno();
    // SAFETY: f is a libbpf_print_fn_t the application installed (or ours),
    // text is NUL-terminated and outlives the call.
    unsafe { userbpf_print_str(f, level as c_int, text.as_ptr()) };
    set_errno(saved);
}

/// [`print`] at WARN.
pub fn warn(msg: &str) {
    print(Level::Warn, msg);
}

/// [`print`] at INFO.
pub fn info(msg: &str) {
    print(Level::Info, msg);
}

/// [`print`] at DEBUG.
pub fn debug(msg: &str) {
    print(Level::Debug, msg);
}
