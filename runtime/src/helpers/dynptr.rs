//! Dynamic pointers (`struct bpf_dynptr`) as far as the helpers that hand
//! them to programs need them: `bpf_dynptr_read` (201) and
//! `bpf_dynptr_data` (203), for the callbacks of `bpf_user_ringbuf_drain`.
//!
//! A dynptr has the layout of the kernel's `struct bpf_dynptr_kern` (16
//! bytes, what the uapi `struct bpf_dynptr` reserves): data pointer, then
//! `size` (bits 0-23 the size, bits 28-30 the type, bit 31 read-only), then
//! `offset`. Only `BPF_DYNPTR_TYPE_LOCAL` dynptrs exist here.
//!
//! # Checked runs
//! The kernel's verifier guarantees that a dynptr argument is one the
//! kernel initialized; the interpreter cannot, and a dynptr on the
//! program's stack could be forged to point anywhere. So in checked runs
//! the helpers accept only dynptrs a helper lent the program for the
//! duration of a callback ([`LentDynptr`], a per-thread list), which live
//! in helper memory the program cannot write. `bpf_dynptr_data` grants the
//! program the slice it returns. Under the JIT (trusted programs) any
//! pointer is taken as a dynptr, as everywhere.

use std::cell::RefCell;

use super::{env_ref, errno, neg, HelperEnv};
use crate::memory::Access;

/// `BPF_DYNPTR_TYPE_LOCAL` (`enum bpf_dynptr_type`).
pub const BPF_DYNPTR_TYPE_LOCAL: u32 = 1;
/// Largest dynptr (`DYNPTR_MAX_SIZE`: the upper 8 bits of `size` are flags).
pub const DYNPTR_MAX_SIZE: u32 = (1 << 24) - 1;
const DYNPTR_SIZE_MASK: u32 = 0x00ff_ffff;
const DYNPTR_TYPE_SHIFT: u32 = 28;
const DYNPTR_RDONLY_BIT: u32 = 1 << 31;

/// `struct bpf_dynptr_kern`.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dynptr {
    pub data: u64,
    /// Size | type << 28 | read-only << 31.
    pub size: u32,
    pub offset: u32,
}

const _: () = assert!(std::mem::size_of::<Dynptr>() == 16);

impl Dynptr {
    /// `bpf_dynptr_init(ptr, data, BPF_DYNPTR_TYPE_LOCAL, 0, size)`; the
    /// caller keeps `size <= DYNPTR_MAX_SIZE`.
    pub fn local(data: *mut u8, size: u32) -> Dynptr {
        Dynptr {
            data: data as u64,
            size: (size & DYNPTR_SIZE_MASK) | (BPF_DYNPTR_TYPE_LOCAL << DYNPTR_TYPE_SHIFT),
            offset: 0,
        }
    }

    pub fn len(&self) -> u32 {
        self.size & DYNPTR_SIZE_MASK
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn is_rdonly(&self) -> bool {
        self.size & DYNPTR_RDONLY_BIT != 0
    }

    fn kind(&self) -> u32 {
        (self.size & !DYNPTR_RDONLY_BIT) >> DYNPTR_TYPE_SHIFT
    }

    /// `bpf_dynptr_check_off_len`: the address of `[offset, offset + len)`.
    fn slice(&self, offset: u32, len: u32) -> Result<u64, i64> {
        let size = self.len();
        if len > size || offset > size - len {
            return Err(errno::E2BIG);
        }
        Ok(self.data + u64::from(self.offset) + u64::from(offset))
    }
}

thread_local! {
    /// Addresses of the dynptrs lent to the callbacks running on this thread.
    static LENT: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// A dynptr lent to a program callback: registered while this value lives
/// (see the module documentation). It borrows the dynptr, which therefore
/// stays in place while lent.
pub struct LentDynptr<'a> {
    ptr: &'a Dynptr,
}

impl<'a> LentDynptr<'a> {
    pub fn new(ptr: &'a Dynptr) -> LentDynptr<'a> {
        LENT.with(|l| l.borrow_mut().push(ptr as *const Dynptr as u64));
        LentDynptr { ptr }
    }

    /// The address the program gets (r1 of the callback).
    pub fn addr(&self) -> u64 {
        self.ptr as *const Dynptr as u64
    }
}

impl Drop for LentDynptr<'_> {
    fn drop(&mut self) {
        let addr = self.addr();
        LENT.with(|l| {
            let mut l = l.borrow_mut();
            if let Some(i) = l.iter().rposition(|&a| a == addr) {
                l.remove(i);
            }
        });
    }
}

/// The dynptr a program passed, if the run may use it.
///
/// # Safety
/// Under an unchecked engine `addr` is trusted to be a dynptr.
unsafe fn dynptr_arg(env: &HelperEnv, addr: u64) -> Option<Dynptr> {
    if addr == 0 || !addr.is_multiple_of(8) {
        return None;
    }
    if env.is_checked() && !LENT.with(|l| l.borrow().contains(&addr)) {
        return None;
    }
    // SAFETY: a lent dynptr (alive: registered only while its owner lives)
    // or, unchecked, the trusted program's dynptr.
    Some(unsafe { std::ptr::read(addr as *const Dynptr) })
}

/// `long bpf_dynptr_read(void *dst, u32 len, const struct bpf_dynptr *src,
/// u32 offset, u64 flags)`: copies `len` bytes at `offset` of `src` to
/// `dst`. -EINVAL for a null dynptr or non-zero flags, -E2BIG out of
/// bounds; `dst` is left alone on failure, as in the kernel.
///
/// # Safety
/// Called by an engine with its env.
pub unsafe extern "C" fn bpf_dynptr_read(
    dst: u64,
    len: u64,
    src: u64,
    offset: u64,
    flags: u64,
    env: *mut HelperEnv,
) -> u64 {
    let (len, offset) = (len as u32, offset as u32);
    // SAFETY: engine contract.
    let Some(env) = (unsafe { env_ref(env) }) else {
        return neg(errno::EINVAL);
    };
    // SAFETY: forwarded engine contract.
    let Some(ptr) = (unsafe { dynptr_arg(env, src) }) else {
        return neg(errno::EINVAL);
    };
    if ptr.data == 0 || flags != 0 {
        return neg(errno::EINVAL);
    }
    let from = match ptr.slice(offset, len) {
        Ok(a) => a,
        Err(e) => return neg(e),
    };
    if ptr.kind() != BPF_DYNPTR_TYPE_LOCAL {
        return neg(errno::EFAULT);
    }
    if !env.check(dst, u64::from(len), Access::Write) || (len != 0 && dst == 0) {
        return neg(errno::EFAULT);
    }
    // SAFETY: `dst` is checked (or trusted) program memory of `len` bytes;
    // the source lies inside the dynptr's memory (bounds checked above);
    // the two may overlap, hence `copy`.
    unsafe { std::ptr::copy(from as *const u8, dst as *mut u8, len as usize) };
    0
}

/// `void *bpf_dynptr_data(const struct bpf_dynptr *ptr, u32 offset, u32 len)`:
/// a pointer to `len` bytes at `offset`, or NULL (null or read-only
/// dynptr, out of bounds). Checked runs are granted the slice.
///
/// # Safety
/// Called by an engine with its env.
pub unsafe extern "C" fn bpf_dynptr_data(
    ptr: u64,
    offset: u64,
    len: u64,
    _: u64,
    _: u64,
    env: *mut HelperEnv,
) -> u64 {
    let (offset, len) = (offset as u32, len as u32);
    // SAFETY: engine contract.
    let Some(env) = (unsafe { env_ref(env) }) else {
        return 0;
    };
    // SAFETY: forwarded engine contract.
    let Some(p) = (unsafe { dynptr_arg(env, ptr) }) else {
        return 0;
    };
    if p.data == 0 || p.is_rdonly() || p.kind() != BPF_DYNPTR_TYPE_LOCAL {
        return 0;
    }
    match p.slice(offset, len) {
        Ok(addr) => {
            env.grant(addr, u64::from(len), Access::ReadWrite);
            addr
        }
        Err(_) => 0,
    }
}
