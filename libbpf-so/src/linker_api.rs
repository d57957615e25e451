//! libbpf's static linker API (`bpf_linker__*`), on
//! [`userbpf_libbpf_compat::linker::Linker`]: link BPF ELF objects into one
//! relocatable object, as `bpftool gen object` and libbpf-rs's `Linker` do.
//!
//! As in libbpf, `bpf_linker__new` creates (truncates) the output file at
//! once and `bpf_linker__finalize` writes the linked object into it (or
//! into the caller's fd, `bpf_linker__new_fd`, from offset 0); after
//! `finalize` every `add_*` and a second `finalize` fail with `-EINVAL`.
//! The output's BTF is deduplicated by structural identity, not by
//! libbpf's `btf__dedup` algorithm (see the linker module).

#![allow(non_snake_case)]

use std::ffi::{c_char, c_int, c_void, CStr};

use userbpf_libbpf_compat::linker::{LinkError, Linker};

use crate::abi::FfiReturn;
use crate::cabi::{bpf_linker_file_opts, bpf_linker_opts};
use crate::error::AbiError;
use crate::ffi_fn;
use crate::opts::{read_opts, OptsStruct};
use crate::print;

// SAFETY: `#[repr(C)]` bindgen mirrors starting with `size_t sz`, only
// integers inside.
unsafe impl OptsStruct for bpf_linker_opts {
    const NAME: &'static str = "bpf_linker_opts";
}
// SAFETY: as above.
unsafe impl OptsStruct for bpf_linker_file_opts {
    const NAME: &'static str = "bpf_linker_file_opts";
}

/// `struct bpf_linker`: the link in progress and where it goes.
pub struct LinkerHandle {
    linker: Linker,
    fd: c_int,
    fd_is_owned: bool,
}

impl Drop for LinkerHandle {
    fn drop(&mut self) {
        if self.fd_is_owned && self.fd >= 0 {
            // SAFETY: closing the output fd this handle opened.
            unsafe { libc::close(self.fd) };
        }
    }
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

fn errstr(e: i32) -> String {
    userbpf_libbpf_compat::errstr::errstr(-e)
}

fn link_err(e: LinkError) -> AbiError {
    if let Some(m) = &e.message {
        print::warn(&format!("{m}\n"));
    }
    AbiError::Errno(e.errno)
}

fn ret_int(r: Result<(), AbiError>) -> c_int {
    match r {
        Ok(()) => 0,
        Err(e) => c_int::from_error(&e),
    }
}

fn new_handle(fd: c_int, fd_is_owned: bool) -> *mut LinkerHandle {
    Box::into_raw(Box::new(LinkerHandle {
        linker: Linker::new(),
        fd,
        fd_is_owned,
    }))
}

/// The live handle behind `linker`, or `EINVAL` for NULL.
///
/// # Safety
/// `linker` must be NULL or a live handle from `bpf_linker__new*`.
unsafe fn handle<'a>(linker: *mut LinkerHandle) -> Result<&'a mut LinkerHandle, AbiError> {
    // SAFETY: caller contract.
    unsafe { linker.as_mut() }.ok_or(AbiError::Errno(libc::EINVAL))
}

/// Reads all of `fd` from its current position.
fn read_fd(fd: c_int) -> Result<Vec<u8>, i32> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: buf is valid for buf.len() writable bytes.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        match n {
            0 => return Ok(out),
            n if n > 0 => out.extend_from_slice(&buf[..n as usize]),
            _ => {
                let e = last_errno();
                if e != libc::EINTR {
                    return Err(e);
                }
            }
        }
    }
}

/// Writes `data` at offset 0 of `fd` (libelf's `elf_update` on the fd).
fn write_fd(fd: c_int, data: &[u8]) -> Result<(), i32> {
    let mut done = 0usize;
    while done < data.len() {
        let rest = &data[done..];
        // SAFETY: rest is valid for rest.len() readable bytes.
        let n = unsafe { libc::pwrite(fd, rest.as_ptr().cast(), rest.len(), done as libc::off_t) };
        if n < 0 {
            let e = last_errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(libc::EIO);
        }
        done += n as usize;
    }
    Ok(())
}

fn add(h: &mut LinkerHandle, filename: &str, bytes: &[u8]) -> Result<(), AbiError> {
    if h.linker.is_finalized() {
        return Err(AbiError::Errno(libc::EINVAL));
    }
    h.linker.add_buf(filename, bytes).map_err(link_err)
}

ffi_fn! {
    /// `struct bpf_linker *bpf_linker__new(const char *filename, struct bpf_linker_opts *opts)`:
    /// creates (truncates) `filename` for the output.
    ///
    /// # Safety
    /// `filename` must be NULL or a C string; `opts` NULL or a valid opts struct.
    pub unsafe fn bpf_linker__new(
        filename: *const c_char,
        opts: *const bpf_linker_opts,
    ) -> *mut LinkerHandle {
        // SAFETY: caller contract.
        if let Err(e) = unsafe { read_opts(opts) } {
            return <*mut LinkerHandle>::from_error(&e);
        }
        if filename.is_null() {
            return <*mut LinkerHandle>::from_error(&AbiError::Errno(libc::EINVAL));
        }
        // SAFETY: a C string (caller contract).
        let name = unsafe { CStr::from_ptr(filename) };
        // SAFETY: opening a path given as a C string.
        let fd = unsafe {
            libc::open(
                name.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
                0o644,
            )
        };
        if fd < 0 {
            let e = last_errno();
            print::warn(&format!(
                "failed to create '{}': {}\n",
                name.to_string_lossy(),
                -e
            ));
            return <*mut LinkerHandle>::from_error(&AbiError::Errno(e));
        }
        new_handle(fd, true)
    }
}

ffi_fn! {
    /// `struct bpf_linker *bpf_linker__new_fd(int fd, struct bpf_linker_opts *opts)`:
    /// the output goes to `fd`, which stays the caller's.
    ///
    /// # Safety
    /// `opts` must be NULL or a valid opts struct.
    pub unsafe fn bpf_linker__new_fd(fd: c_int, opts: *const bpf_linker_opts) -> *mut LinkerHandle {
        // SAFETY: caller contract.
        if let Err(e) = unsafe { read_opts(opts) } {
            return <*mut LinkerHandle>::from_error(&e);
        }
        if fd < 0 {
            return <*mut LinkerHandle>::from_error(&AbiError::Errno(libc::EINVAL));
        }
        new_handle(fd, false)
    }
}

ffi_fn! {
    /// `int bpf_linker__add_file(struct bpf_linker *linker, const char *filename, const struct bpf_linker_file_opts *opts)`
    ///
    /// # Safety
    /// `linker` must be NULL or live; `filename` NULL or a C string;
    /// `opts` NULL or a valid opts struct.
    pub unsafe fn bpf_linker__add_file(
        linker: *mut LinkerHandle,
        filename: *const c_char,
        opts: *const bpf_linker_file_opts,
    ) -> c_int {
        // SAFETY: caller contract.
        let r = unsafe { read_opts(opts) }.and_then(|_| {
            // SAFETY: caller contract.
            let h = unsafe { handle(linker) }?;
            if h.linker.is_finalized() || filename.is_null() {
                return Err(AbiError::Errno(libc::EINVAL));
            }
            // SAFETY: a C string (caller contract).
            let name = unsafe { CStr::from_ptr(filename) };
            let shown = name.to_string_lossy().into_owned();
            let bytes = std::fs::read(name.to_string_lossy().as_ref()).map_err(|err| {
                let e = err.raw_os_error().unwrap_or(libc::EIO);
                print::warn(&format!("failed to open file '{shown}': {}\n", errstr(e)));
                AbiError::Errno(e)
            })?;
            add(h, &shown, &bytes)
        });
        ret_int(r)
    }
}

ffi_fn! {
    /// `int bpf_linker__add_fd(struct bpf_linker *linker, int fd, const struct bpf_linker_file_opts *opts)`:
    /// reads the object from `fd`'s current position; the fd stays the caller's.
    ///
    /// # Safety
    /// `linker` must be NULL or live; `opts` NULL or a valid opts struct.
    pub unsafe fn bpf_linker__add_fd(
        linker: *mut LinkerHandle,
        fd: c_int,
        opts: *const bpf_linker_file_opts,
    ) -> c_int {
        // SAFETY: caller contract.
        let r = unsafe { read_opts(opts) }.and_then(|_| {
            // SAFETY: caller contract.
            let h = unsafe { handle(linker) }?;
            if fd < 0 || h.linker.is_finalized() {
                return Err(AbiError::Errno(libc::EINVAL));
            }
            let name = format!("fd:{fd}");
            let bytes = read_fd(fd).map_err(AbiError::Errno)?;
            add(h, &name, &bytes)
        });
        ret_int(r)
    }
}

ffi_fn! {
    /// `int bpf_linker__add_buf(struct bpf_linker *linker, void *buf, size_t buf_sz, const struct bpf_linker_file_opts *opts)`
    ///
    /// # Safety
    /// `linker` must be NULL or live; `buf` valid for `buf_sz` bytes;
    /// `opts` NULL or a valid opts struct.
    pub unsafe fn bpf_linker__add_buf(
        linker: *mut LinkerHandle,
        buf: *mut c_void,
        buf_sz: usize,
        opts: *const bpf_linker_file_opts,
    ) -> c_int {
        // SAFETY: caller contract.
        let r = unsafe { read_opts(opts) }.and_then(|_| {
            // SAFETY: caller contract.
            let h = unsafe { handle(linker) }?;
            if buf_sz == 0 || buf.is_null() || h.linker.is_finalized() {
                return Err(AbiError::Errno(libc::EINVAL));
            }
            let name = format!("mem:{buf:p}+{buf_sz}");
            // SAFETY: buf is valid for buf_sz bytes (caller contract).
            let bytes = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), buf_sz) };
            add(h, &name, bytes)
        });
        ret_int(r)
    }
}

ffi_fn! {
    /// `int bpf_linker__finalize(struct bpf_linker *linker)`: writes the
    /// linked object; the output fd is closed if the linker opened it.
    ///
    /// # Safety
    /// `linker` must be NULL or live.
    pub unsafe fn bpf_linker__finalize(linker: *mut LinkerHandle) -> c_int {
        let r = (|| {
            // SAFETY: caller contract.
            let h = unsafe { handle(linker) }?;
            let data = h.linker.finalize().map_err(link_err)?;
            if let Err(e) = write_fd(h.fd, &data) {
                print::warn(&format!("failed to write ELF contents: {}\n", errstr(e)));
                return Err(AbiError::Errno(e));
            }
            if h.fd_is_owned {
                // SAFETY: closing the output fd this handle opened.
                unsafe { libc::close(h.fd) };
            }
            h.fd = -1;
            Ok(())
        })();
        ret_int(r)
    }
}

ffi_fn! {
    /// `void bpf_linker__free(struct bpf_linker *linker)`: NULL is ignored.
    ///
    /// # Safety
    /// `linker` must be NULL or a live handle not used afterwards.
    pub unsafe fn bpf_linker__free(linker: *mut LinkerHandle) {
        if linker.is_null() {
            return;
        }
        // SAFETY: a live handle from Box::into_raw (caller contract).
        drop(unsafe { Box::from_raw(linker) });
    }
}
