//! The agent's own syscall instructions: the allowed region of Syscall User
//! Dispatch (SUD).
//!
//! With SUD on, the kernel turns every syscall made outside one address
//! range into a SIGSYS. That range is a small region mapped here once
//! (`init`), holding:
//! - the gateway behind [`syscall6`] (`mov rax, rdi; ...; syscall; ret`),
//!   through which the dispatcher makes the real call and the SIGSYS
//!   handler its own calls;
//! - the `rt_sigreturn` restorer of the SIGSYS handler (`mov eax, 15;
//!   syscall`): returning from the handler is not itself dispatched;
//! - a shared `syscall; ud2` used to run a trapped `rt_sigreturn` on the
//!   application's own stack;
//! - per-site native stubs (`syscall; jmp [rip]; .quad resume`), made on
//!   demand for the syscalls that must run on their original registers and
//!   stack (clone with a new stack, clone3, vfork).
//!
//! The region is mapped twice from one memfd: an executable view (the
//! allowed range) and a writable view through which stubs are written
//! while other threads run stubs of the same page. Without memfd it is one
//! RWX mapping.
//!
//! [`syscall6`] always goes through the gateway once the region exists (an
//! indirect call: no measurable cost, `sud_cost` in `tests/syscall_sud.rs`). It
//! also keeps SIGSYS usable once SUD has been armed: a blocked SIGSYS makes
//! the kernel kill a thread at its next trapped syscall, so masks that
//! block it lose it, and the application's `rt_sigaction(SIGSYS)` becomes
//! the action the SUD handler chains to (`super::sud`).

use core::arch::global_asm;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Size of the region (both views).
pub(crate) const REGION_LEN: usize = 64 * 1024;
/// Where the per-site stubs begin, and their size.
const STUBS_AT: usize = 4096;
const STUB_LEN: usize = 16;
const STUB_CAPACITY: usize = (REGION_LEN - STUBS_AT) / STUB_LEN;
/// Offsets of the fixed code.
const GATEWAY_AT: usize = 0;
const RESTORER_AT: usize = 64;
const SIGRETURN_AT: usize = 96;

// The fixed code, assembled here and copied into the region (it is
// position independent). Never executed where it is assembled.
global_asm!(
    ".pushsection .rodata.userbpf_sud_code,\"a\",@progbits",
    ".globl userbpf_sud_gateway",
    ".hidden userbpf_sud_gateway",
    "userbpf_sud_gateway:",
    // extern "C" fn(nr, a0, a1, a2, a3, a4, a5) -> i64
    "mov rax, rdi",
    "mov rdi, rsi",
    "mov rsi, rdx",
    "mov rdx, rcx",
    "mov r10, r8",
    "mov r8, r9",
    "mov r9, qword ptr [rsp + 8]",
    "syscall",
    "ret",
    ".globl userbpf_sud_gateway_end",
    ".hidden userbpf_sud_gateway_end",
    "userbpf_sud_gateway_end:",
    ".globl userbpf_sud_restorer",
    ".hidden userbpf_sud_restorer",
    "userbpf_sud_restorer:",
    "mov eax, 15",
    "syscall",
    "ud2",
    ".globl userbpf_sud_restorer_end",
    ".hidden userbpf_sud_restorer_end",
    "userbpf_sud_restorer_end:",
    ".popsection",
);

extern "C" {
    static userbpf_sud_gateway: u8;
    static userbpf_sud_gateway_end: u8;
    static userbpf_sud_restorer: u8;
    static userbpf_sud_restorer_end: u8;
}

/// The executable view (0: not mapped yet).
static RX: AtomicUsize = AtomicUsize::new(0);
/// The writable view (the same memory).
static RW: AtomicUsize = AtomicUsize::new(0);
/// Stubs handed out so far.
static NEXT_STUB: AtomicUsize = AtomicUsize::new(0);
/// Open-addressing table resume address -> stub: `resume << 16 | index + 1`
/// (user addresses fit in 47 bits); 0 is empty.
const TABLE_LEN: usize = 2 * STUB_CAPACITY.next_power_of_two();
static TABLE: [AtomicU64; TABLE_LEN] = [const { AtomicU64::new(0) }; TABLE_LEN];

/// Set once SUD has been turned on in some thread: from then on masks must
/// not block SIGSYS (see the module documentation).
static ARMED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

type Gateway = unsafe extern "C" fn(u64, u64, u64, u64, u64, u64, u64) -> i64;

/// Why the region could not be made.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum GateError {
    #[error("mapping the syscall region failed (errno {0})")]
    Map(i32),
}

/// Maps the region (idempotent; not thread-safe against itself: the
/// caller serialises, see `sud::activate`). Control path only.
pub(crate) fn init() -> Result<(), GateError> {
    if RX.load(Ordering::Acquire) != 0 {
        return Ok(());
    }
    let (rx, rw) = map_views()?;
    // SAFETY: `rw` is a fresh writable mapping of REGION_LEN bytes; the
    // sources are the code ranges between our labels.
    unsafe {
        let copy = |at: usize, from: *const u8, to: *const u8| {
            let n = to as usize - from as usize;
            core::ptr::copy_nonoverlapping(from, (rw + at) as *mut u8, n);
        };
        copy(
            GATEWAY_AT,
            &raw const userbpf_sud_gateway,
            &raw const userbpf_sud_gateway_end,
        );
        copy(
            RESTORER_AT,
            &raw const userbpf_sud_restorer,
            &raw const userbpf_sud_restorer_end,
        );
        // syscall; ud2
        core::ptr::copy_nonoverlapping(
            [0x0f, 0x05, 0x0f, 0x0b].as_ptr(),
            (rw + SIGRETURN_AT) as *mut u8,
            4,
        );
    }
    RW.store(rw, Ordering::Release);
    RX.store(rx, Ordering::Release);
    Ok(())
}

/// Two views of one memfd, or one RWX mapping.
fn map_views() -> Result<(usize, usize), GateError> {
    let errno = || {
        std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)
    };
    // SAFETY: plain calls creating and mapping a new object of ours.
    unsafe {
        let fd = libc::memfd_create(c"userbpf-syscall-gate".as_ptr(), libc::MFD_CLOEXEC);
        if fd >= 0 {
            let ok = libc::ftruncate(fd, REGION_LEN as libc::off_t) == 0;
            let rx = if ok {
                libc::mmap(
                    core::ptr::null_mut(),
                    REGION_LEN,
                    libc::PROT_READ | libc::PROT_EXEC,
                    libc::MAP_SHARED,
                    fd,
                    0,
                )
            } else {
                libc::MAP_FAILED
            };
            let rw = if rx != libc::MAP_FAILED {
                libc::mmap(
                    core::ptr::null_mut(),
                    REGION_LEN,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    fd,
                    0,
                )
            } else {
                libc::MAP_FAILED
            };
            libc::close(fd);
            if rw != libc::MAP_FAILED {
                return Ok((rx as usize, rw as usize));
            }
            if rx != libc::MAP_FAILED {
                libc::munmap(rx, REGION_LEN);
            }
        }
        // No memfd (old kernel, sandbox) or a noexec shared mapping: one
        // RWX anonymous mapping.
        let p = libc::mmap(
            core::ptr::null_mut(),
            REGION_LEN,
            libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            return Err(GateError::Map(errno()));
        }
        Ok((p as usize, p as usize))
    }
}

/// The allowed range `[start, start + len)`, once mapped.
pub(crate) fn region() -> Option<(usize, usize)> {
    match RX.load(Ordering::Acquire) {
        0 => None,
        rx => Some((rx, REGION_LEN)),
    }
}

/// The SIGSYS handler's `sa_restorer`.
pub(crate) fn restorer() -> usize {
    RX.load(Ordering::Acquire) + RESTORER_AT
}

/// `syscall; ud2`: a trapped `rt_sigreturn` resumes here, with `rax` = 15
/// and the application's stack.
pub(crate) fn sigreturn_stub() -> usize {
    RX.load(Ordering::Acquire) + SIGRETURN_AT
}

/// Marks SUD as armed (masks stop blocking SIGSYS).
pub(crate) fn arm() {
    ARMED.store(true, Ordering::Release);
}

/// Has SUD been turned on in this process?
pub fn armed() -> bool {
    ARMED.load(Ordering::Acquire)
}

/// The native stub for the syscall instruction that ends at `resume`:
/// `syscall; jmp [resume]`, made once per site. Lock-free and
/// async-signal-safe (the SIGSYS handler calls it). None when the region
/// is missing or full.
pub(crate) fn native_stub(resume: usize) -> Option<usize> {
    let rx = RX.load(Ordering::Acquire);
    let rw = RW.load(Ordering::Acquire);
    if rx == 0 || resume == 0 || resume >= 1 << 47 {
        return None;
    }
    let key = (resume as u64) << 16;
    let found = |e: u64| rx + STUBS_AT + ((e & 0xffff) as usize - 1) * STUB_LEN;
    let start = (resume.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 20) % TABLE_LEN;
    // Look first: a site's stub is made once.
    for i in 0..TABLE_LEN {
        let e = TABLE[(start + i) % TABLE_LEN].load(Ordering::Acquire);
        if e == 0 {
            break;
        }
        if e & !0xffff == key {
            return Some(found(e));
        }
    }
    let idx = NEXT_STUB.fetch_add(1, Ordering::AcqRel);
    if idx >= STUB_CAPACITY {
        return None;
    }
    let mut code = [0u8; STUB_LEN];
    code[..8].copy_from_slice(&[0x0f, 0x05, 0xff, 0x25, 0, 0, 0, 0]);
    code[8..].copy_from_slice(&(resume as u64).to_le_bytes());
    // SAFETY: slot `idx` is ours alone (fetch_add) and inside the region;
    // nobody executes it before it is published below.
    unsafe {
        core::ptr::copy_nonoverlapping(
            code.as_ptr(),
            (rw + STUBS_AT + idx * STUB_LEN) as *mut u8,
            STUB_LEN,
        )
    };
    let mine = key | (idx as u64 + 1);
    for i in 0..TABLE_LEN {
        let slot = &TABLE[(start + i) % TABLE_LEN];
        match slot.compare_exchange(0, mine, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Some(found(mine)),
            // Another thread made this site's stub meanwhile: use that
            // one (ours stays unused).
            Err(e) if e & !0xffff == key => return Some(found(e)),
            Err(_) => {}
        }
    }
    None
}

/// Performs syscall `nr` with `a` through the gateway (or inline before
/// the region exists); returns the raw result (negative errno). No
/// rewriting of arguments: the agent's own calls.
///
/// # Safety
/// The syscall and its arguments are the caller's responsibility.
#[inline]
pub(crate) unsafe fn raw6(nr: u64, a: [u64; 6]) -> i64 {
    let g = RX.load(Ordering::Relaxed);
    if g != 0 {
        // SAFETY: the region's first bytes are the gateway, of this type.
        let f: Gateway = unsafe { core::mem::transmute::<usize, Gateway>(g + GATEWAY_AT) };
        // SAFETY: caller contract.
        return unsafe { f(nr, a[0], a[1], a[2], a[3], a[4], a[5]) };
    }
    let ret: i64;
    // SAFETY: a raw syscall; rcx and r11 are clobbered by the instruction.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") nr as i64 => ret,
            in("rdi") a[0], in("rsi") a[1], in("rdx") a[2],
            in("r10") a[3], in("r8") a[4], in("r9") a[5],
            lateout("rcx") _, lateout("r11") _,
            options(nostack)
        );
    }
    ret
}

/// Performs syscall `nr` with `a` on behalf of the application (the
/// dispatcher's real call); returns the raw result (negative errno).
///
/// Once SUD is armed, the masks of `rt_sigprocmask`, `rt_sigaction`,
/// `rt_sigsuspend`, `ppoll`, `pselect6` and `epoll_pwait(2)` lose SIGSYS and `rt_sigaction(SIGSYS)` is answered by the SUD handler's
/// chaining (module documentation).
///
/// # Safety
/// The syscall and its arguments are the caller's responsibility.
#[inline]
pub unsafe fn syscall6(nr: u64, a: [u64; 6]) -> i64 {
    if matches!(
        nr as i64,
        libc::SYS_rt_sigprocmask
            | libc::SYS_rt_sigaction
            | libc::SYS_rt_sigsuspend
            | libc::SYS_ppoll
            | libc::SYS_pselect6
            | libc::SYS_epoll_pwait
            | libc::SYS_epoll_pwait2
    ) && armed()
    {
        // SAFETY: caller contract.
        return unsafe { signal_call(nr, a) };
    }
    // SAFETY: caller contract.
    unsafe { raw6(nr, a) }
}

/// SIGSYS's bit in a kernel sigset.
pub(crate) const SIGSYS_BIT: u64 = 1 << (libc::SIGSYS - 1);

/// Reads `N` bytes of the application's memory, None on a fault.
pub(crate) fn read_app<const N: usize>(addr: u64) -> Option<[u8; N]> {
    let mut b = [0u8; N];
    // SAFETY: a fault-recovering copy into a local.
    unsafe { userbpf_runtime::helpers::safe_mem::safe_read(b.as_mut_ptr(), addr as *const u8, N) }
        .ok()?;
    Some(b)
}

/// Makes `nr` with the sigset at argument `at` (size at `size_at`)
/// replaced by a copy without SIGSYS.
///
/// # Safety
/// As [`raw6`].
unsafe fn with_mask_arg(nr: u64, mut a: [u64; 6], at: usize, size_at: usize) -> i64 {
    if a[at] != 0 && a[size_at] == 8 {
        if let Some(b) = read_app::<8>(a[at]) {
            let set = u64::from_le_bytes(b) & !SIGSYS_BIT;
            a[at] = &set as *const u64 as u64;
            // SAFETY: our copy lives across the call.
            return unsafe { raw6(nr, a) };
        }
    }
    // SAFETY: caller contract.
    unsafe { raw6(nr, a) }
}

#[cold]
unsafe fn signal_call(nr: u64, mut a: [u64; 6]) -> i64 {
    // Temporary masks (the call waits with them): SIGSYS stays
    // deliverable for the handlers that run meanwhile.
    match nr as i64 {
        // (set, sigsetsize)
        // SAFETY: caller contract.
        libc::SYS_rt_sigsuspend => return unsafe { with_mask_arg(nr, a, 0, 1) },
        // (fds, nfds, timeout, sigmask, sigsetsize)
        // SAFETY: caller contract.
        libc::SYS_ppoll => return unsafe { with_mask_arg(nr, a, 3, 4) },
        // (epfd, events, maxevents, timeout, sigmask, sigsetsize)
        libc::SYS_epoll_pwait | libc::SYS_epoll_pwait2 => {
            // SAFETY: caller contract.
            return unsafe { with_mask_arg(nr, a, 4, 5) };
        }
        // (n, in, out, ex, timeout, { const sigset_t *ss; size_t ss_len } *)
        libc::SYS_pselect6 => {
            if a[5] != 0 {
                if let Some(b) = read_app::<16>(a[5]) {
                    let ss = u64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8]));
                    let len = u64::from_le_bytes(b[8..].try_into().unwrap_or([0; 8]));
                    if ss != 0 && len == 8 {
                        if let Some(m) = read_app::<8>(ss) {
                            let set = u64::from_le_bytes(m) & !SIGSYS_BIT;
                            let pair = [&set as *const u64 as u64, 8];
                            a[5] = pair.as_ptr() as u64;
                            // SAFETY: our copies live across the call.
                            return unsafe { raw6(nr, a) };
                        }
                    }
                }
            }
            // SAFETY: caller contract.
            return unsafe { raw6(nr, a) };
        }
        _ => {}
    }
    if nr == libc::SYS_rt_sigprocmask as u64 {
        // (how, set, oldset, sigsetsize)
        let how = a[0] as i32;
        if how == libc::SIG_BLOCK || how == libc::SIG_SETMASK {
            // SAFETY: caller contract.
            return unsafe { with_mask_arg(nr, a, 1, 3) };
        }
        // SAFETY: caller contract.
        return unsafe { raw6(nr, a) };
    }
    // rt_sigaction(sig, act, oldact, sigsetsize); struct k_sigaction is
    // { handler, flags, restorer, mask }.
    let sig = a[0] as i32;
    if sig == libc::SIGSYS && a[3] == 8 {
        if let Some(r) = super::sud::app_rt_sigaction_sys(a[1], a[2]) {
            return r;
        }
    }
    if a[1] != 0 && a[3] == 8 {
        if let Some(b) = read_app::<32>(a[1]) {
            let mut k = [0u64; 4];
            for (i, w) in k.iter_mut().enumerate() {
                *w = u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
            }
            k[3] &= !SIGSYS_BIT;
            a[1] = k.as_ptr() as u64;
            // SAFETY: our copy lives across the call.
            return unsafe { raw6(nr, a) };
        }
    }
    // SAFETY: caller contract.
    unsafe { raw6(nr, a) }
}
