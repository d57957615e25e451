//! libbpf's `*_opts` structs and their `sz` rule (`OPTS_VALID`, `OPTS_GET`).
//!
//! Every opts struct starts with `size_t sz`, set by the application to the
//! `sizeof` its headers gave the struct:
//!
//! - `NULL` means all defaults;
//! - `sz < sizeof(size_t)`: `"<type> size (<sz>) is too small"`, `-EINVAL`;
//! - bytes past the fields this library knows must be zero, else
//!   `"<type> has non-zero extra bytes"`, `-EINVAL` (a newer application);
//! - fields past `sz` read as their defaults (an older application).
//!
//! [`read_opts`] implements the rule once for every opts type: it copies
//! the first `min(sz, size_of::<T>())` bytes over a zeroed `T` (every
//! libbpf opts default is zero / NULL / false), never reading past `sz`.

use std::mem::{size_of, MaybeUninit};

use crate::error::AbiError;
use crate::print;

/// A `#[repr(C)]` mirror of a libbpf opts struct whose first field is
/// `size_t sz` and for which all-zero bytes are a valid value (integers,
/// raw pointers, `bool`s read as bytes: use `u8` for C `bool`).
///
/// # Safety
/// Implementors must be `#[repr(C)]`, start with a `usize` `sz` field and
/// be valid for every bit pattern a C caller may store (no Rust `bool`,
/// enum or reference fields).
pub unsafe trait OptsStruct: Copy {
    /// The C type name, for libbpf's messages (`bpf_object_open_opts`).
    const NAME: &'static str;
}

/// Reads the opts struct at `ptr` by libbpf's `sz` rule: `Ok(None)` for
/// NULL, `Err(EINVAL)` (after libbpf's warning) for a bad `sz` or non-zero
/// unknown tail bytes, else the fields within `sz` with the rest zeroed.
///
/// # Safety
/// `ptr` must be NULL or point at `sz` readable bytes, `sz` being the
/// `usize` at `ptr`.
pub unsafe fn read_opts<T: OptsStruct>(ptr: *const T) -> Result<Option<T>, AbiError> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: a non-NULL opts pointer points at least at its `size_t sz`
    // (caller contract); read unaligned in case the caller's copy is not.
    let user_sz = unsafe { ptr.cast::<usize>().read_unaligned() };
    if user_sz < size_of::<usize>() {
        print::warn(&format!("{} size ({user_sz}) is too small\n", T::NAME));
        return Err(AbiError::Errno(libc::EINVAL));
    }
    let known = size_of::<T>();
    let bytes = ptr.cast::<u8>();
    if user_sz > known {
        // SAFETY: the caller's struct has user_sz readable bytes.
        let tail = unsafe { std::slice::from_raw_parts(bytes.add(known), user_sz - known) };
        if tail.iter().any(|&b| b != 0) {
            print::warn(&format!("{} has non-zero extra bytes\n", T::NAME));
            return Err(AbiError::Errno(libc::EINVAL));
        }
    }
    let mut out = MaybeUninit::<T>::zeroed();
    // SAFETY: min(user_sz, known) bytes are readable at `bytes` (caller
    // contract) and writable in `out`; the regions cannot overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes, out.as_mut_ptr().cast::<u8>(), user_sz.min(known));
    }
    // SAFETY: T is valid for all-zero bytes and for any bytes a C caller
    // stores (OptsStruct contract).
    Ok(Some(unsafe { out.assume_init() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[repr(C)]
    #[derive(Clone, Copy, Debug, PartialEq)]
    struct TestOpts {
        sz: usize,
        a: u64,
        b: u32,
    }

    // SAFETY: repr(C), starts with sz, integer fields only.
    unsafe impl OptsStruct for TestOpts {
        const NAME: &'static str = "test_opts";
    }

    #[test]
    fn sz_rule() {
        print::set_print(None);
        // SAFETY: NULL is allowed.
        assert_eq!(unsafe { read_opts::<TestOpts>(std::ptr::null()) }, Ok(None));
        // An older caller: only sz and a.
        let old: [u64; 2] = [16, 7];
        // SAFETY: 16 readable bytes, sz = 16.
        let got = unsafe { read_opts::<TestOpts>(old.as_ptr().cast()) }.unwrap();
        assert_eq!(got, Some(TestOpts { sz: 16, a: 7, b: 0 }));
        let small: [u64; 1] = [4];
        // SAFETY: 8 readable bytes.
        let got = unsafe { read_opts::<TestOpts>(small.as_ptr().cast()) };
        assert_eq!(got, Err(AbiError::Errno(libc::EINVAL)));
        // A newer caller: zero tail ok, non-zero tail rejected.
        let mut newer: [u64; 4] = [32, 1, 2, 0];
        // SAFETY: 32 readable bytes.
        let got = unsafe { read_opts::<TestOpts>(newer.as_ptr().cast()) }.unwrap();
        assert_eq!(got.map(|o| (o.a, o.b)), Some((1, 2)));
        newer[3] = 1;
        // SAFETY: as above.
        let got = unsafe { read_opts::<TestOpts>(newer.as_ptr().cast()) };
        assert_eq!(got, Err(AbiError::Errno(libc::EINVAL)));
    }
}
