//! The syscall dispatcher: every intercepted syscall comes here, runs the
//! programs attached to its entry, makes the call, and runs the programs
//! attached to its exit, each with the context the kernel would give it.
//!
//! Recursion: the dispatcher runs with the thread's `busy` word set (as
//! uprobe handlers do), so syscalls it or a program's helpers make are
//! executed without programs; the real call is made with `busy` clear, so
//! a signal handler that interrupts a blocking call has its own syscalls
//! traced, and a thread blocked in a call does not hold up grace periods.

use core::sync::atomic::{AtomicPtr, Ordering};

use userbpf_runtime::helpers::run_info::RunInfo;
use userbpf_runtime::syscalls::{SyscallCtx, SyscallCtxKind};

use crate::hook::thread;
use crate::hook::PtRegs;
use crate::syscall::links::{self, SysLink, Table};

/// What the interception layer does after [`on_syscall`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The call was made: `regs.ax` is its result and `regs.ip` the
    /// address to resume at; skip the original instruction.
    Done,
    /// Execute the original syscall instruction natively (clone with a new
    /// stack, vfork, rt_sigreturn): `regs` are untouched.
    Native,
}

/// `ThreadState::_reserved` bit: `on_syscall` returned `Native` and the
/// native execution has not been seen yet.
const NATIVE_PENDING: u64 = 1;

/// Tests: called with every syscall number the dispatcher sees.
static OBSERVER: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

/// Tests only: observe every dispatched syscall number (None: stop).
#[doc(hidden)]
pub fn set_test_observer(f: Option<fn(u64)>) {
    OBSERVER.store(
        f.map_or(core::ptr::null_mut(), |f| f as *mut ()),
        Ordering::Release,
    );
}

/// Is this thread inside the dispatcher (or another handler, or one of
/// the agent's own threads)? Its syscalls are then executed without
/// programs.
#[inline]
pub fn in_dispatch() -> bool {
    // SAFETY: the calling thread's own state block.
    unsafe { (*thread::current()).busy != 0 }
}

/// Did [`on_syscall`] just return [`Outcome::Native`] on this thread?
/// Clears the flag.
#[inline]
pub fn take_native_pending() -> bool {
    let ts = thread::current();
    // SAFETY: the calling thread's own state block.
    unsafe {
        let was = (*ts)._reserved & NATIVE_PENDING != 0;
        (*ts)._reserved &= !NATIVE_PENDING;
        was
    }
}

/// Syscalls that must run on the original instruction: their effect on
/// the stack or registers can't be had from inside a function call.
pub(crate) fn must_run_natively(nr: u64, args: &[u64; 6]) -> bool {
    let (vm, vfork) = (libc::CLONE_VM as u64, libc::CLONE_VFORK as u64);
    match nr as i64 {
        libc::SYS_vfork | libc::SYS_clone3 | libc::SYS_rt_sigreturn => true,
        // A new stack (a thread) or a shared one (vfork-like): the child
        // returns where the parent's frames are, or on another stack.
        libc::SYS_clone => args[1] != 0 || args[0] & (vm | vfork) != 0,
        _ => false,
    }
}

/// A `clone` that makes a process sharing this address space (`CLONE_VM`
/// without `CLONE_THREAD`): Some(`CLONE_VFORK` set), else None.
fn shares_memory_with_child(nr: u64, args: &[u64; 6]) -> Option<bool> {
    let flags = match nr as i64 {
        libc::SYS_vfork => return Some(true),
        libc::SYS_clone => args[0],
        // struct clone_args (size in args[1]): `u64 flags` first.
        libc::SYS_clone3 if args[1] >= 8 => {
            let mut flags = 0u64;
            // SAFETY: fault-recovering read of the application's struct.
            unsafe {
                userbpf_runtime::helpers::safe_mem::safe_read(
                    (&mut flags as *mut u64).cast(),
                    args[0] as *const u8,
                    8,
                )
            }
            .ok()?;
            flags
        }
        _ => return None,
    };
    let (vm, vfork, thread) = (
        libc::CLONE_VM as u64,
        libc::CLONE_VFORK as u64,
        libc::CLONE_THREAD as u64,
    );
    (flags & vm != 0 && flags & thread == 0).then_some(flags & vfork != 0)
}

/// Syscalls the dispatcher must see even without programs: an exec
/// passes the agent on to the new image, and a clone that shares this
/// thread's memory must tell the helpers (their cached ids would be
/// taken for the child's).
pub fn always_dispatched(nr: u64) -> bool {
    crate::syscall::exec::is_exec(nr)
        || matches!(
            nr as i64,
            libc::SYS_clone | libc::SYS_clone3 | libc::SYS_vfork | libc::SYS_fork
        )
}

/// The arguments of the call, in the kernel's syscall order.
#[inline(always)]
fn args_of(r: &PtRegs) -> [u64; 6] {
    [r.di, r.si, r.dx, r.r10, r.r8, r.r9]
}

/// Runs the programs attached to this syscall and the call itself.
///
/// # Safety
/// `regs` is the live register frame of the interrupted syscall: `ax` and
/// `orig_ax` the number, `di si dx r10 r8 r9` the arguments, `ip` the
/// address after the syscall instruction, `sp` the application's stack.
pub unsafe fn on_syscall(regs: *mut PtRegs, resume: usize) -> Outcome {
    // SAFETY: caller contract (the frame is only accessed through `regs`).
    let (nr, args) = unsafe { ((*regs).orig_ax, args_of(&*regs)) };
    let ts = thread::current();
    // SAFETY: the calling thread's own state block. The hook stub set
    // `busy` already; the SIGSYS path did not.
    let was_busy = unsafe { core::ptr::replace(&raw mut (*ts).busy, 1) };
    observe(nr);
    let table = if crate::grace::enter() {
        links::current()
    } else {
        None
    };
    let mut call = Call {
        nr,
        args,
        regs,
        override_ret: None,
    };
    if let Some(t) = table {
        // SAFETY: `t` stays valid while `busy` is set.
        unsafe { call.run(t, false, 0) };
    }
    if must_run_natively(nr, &args) {
        if let Some(vfork) = shares_memory_with_child(nr, &args) {
            // The child runs on this thread's memory and thread-local
            // storage until it execs: the helpers' cached ids must not
            // be taken for its own.
            userbpf_runtime::helpers::task::note_vfork(vfork);
        }
        // The native instruction traps under SUD: its handler must let it
        // through.
        if crate::syscall::sud::active_here() {
            // SAFETY: as above.
            unsafe { (*ts)._reserved |= NATIVE_PENDING };
        }
        // SAFETY: as above.
        unsafe { (*ts).busy = was_busy };
        return Outcome::Native;
    }
    let ret = match call.override_ret {
        Some(v) => v as i64,
        None => {
            let ret = if crate::syscall::exec::is_exec(nr) {
                // With `busy` set: completing the environment allocates
                // (the agent's own work), and an exec does not block.
                // SAFETY: the application's exec with its arguments, its
                // environment completed with the agent's.
                unsafe { crate::syscall::exec::call(nr, call.args) }
            } else {
                // SAFETY: as above. The call may block: signal handlers
                // that run meanwhile see their own syscalls and probes, and
                // grace periods don't wait for it (the table is reloaded
                // after).
                unsafe { (*ts).busy = 0 };
                // SAFETY: the application's own syscall with its arguments.
                let ret = unsafe { crate::syscall::gate::syscall6(nr, call.args) };
                // SAFETY: as above.
                unsafe { (*ts).busy = 1 };
                ret
            };
            if ret == 0 && (nr as i64 == libc::SYS_clone || nr as i64 == libc::SYS_fork) {
                // The child, before glibc's fork handlers: the helpers'
                // cached pid and tid are the parent's.
                userbpf_runtime::helpers::task::note_fork_child();
            }
            ret
        }
    };
    // SAFETY: as above.
    let ret = unsafe { run_exit(regs, nr, call.args, ret) };
    // SAFETY: caller contract.
    unsafe {
        (*regs).ax = ret as u64;
        (*regs).ip = resume as u64;
    }
    // SAFETY: as above.
    unsafe { (*ts).busy = was_busy };
    Outcome::Done
}

/// The entry half of a call the hook stub makes itself (the fast path of
/// a rewritten site): what to do after the entry programs ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// Make the call, then run [`exit`] (`exit: true`) or not.
    Call { exit: bool },
    /// A program overrode the call, which is skipped (its exit programs
    /// ran): `regs.ax` is its result and `regs.ip` the resume address.
    Done,
}

/// The entry programs of a call the hook stub will make itself, with
/// `busy` set by the stub. None: the call needs the whole dispatcher
/// ([`on_syscall`]): an exec, a clone or fork, one that must run natively,
/// or a thread under Syscall User Dispatch (the stub's own `syscall` would
/// trap); nothing ran then.
///
/// # Safety
/// As [`on_syscall`]; the caller's thread has `busy` set.
pub unsafe fn enter(regs: *mut PtRegs, resume: usize) -> Option<Entry> {
    // SAFETY: caller contract.
    let (nr, args) = unsafe { ((*regs).orig_ax, args_of(&*regs)) };
    if always_dispatched(nr) || must_run_natively(nr, &args) || crate::syscall::sud::active_here() {
        return None;
    }
    observe(nr);
    let table = if crate::grace::enter() {
        links::current()
    } else {
        None
    };
    let Some(t) = table else {
        return Some(Entry::Call { exit: false });
    };
    let mut call = Call {
        nr,
        args,
        regs,
        override_ret: None,
    };
    // SAFETY: `t` stays valid while `busy` is set.
    unsafe { call.run(t, false, 0) };
    if let Some(v) = call.override_ret {
        // The call is skipped; its exit programs see the override.
        // SAFETY: as above.
        let ret = unsafe { run_exit(regs, nr, args, v as i64) };
        // SAFETY: caller contract.
        unsafe {
            (*regs).ax = ret as u64;
            (*regs).ip = resume as u64;
        }
        return Some(Entry::Done);
    }
    let (own, all) = t.runs(nr, true);
    Some(Entry::Call {
        exit: !(own.is_empty() && all.is_empty()),
    })
}

/// The exit programs of a call the hook stub made after [`enter`]
/// answered `Call { exit: true }`; `regs.ax` is the result (a
/// kretsyscall's override replaces it).
///
/// # Safety
/// As [`enter`].
pub unsafe fn exit(regs: *mut PtRegs) {
    // SAFETY: caller contract.
    let (nr, args, ret) = unsafe { ((*regs).orig_ax, args_of(&*regs), (*regs).ax as i64) };
    // SAFETY: forwarded.
    let ret = unsafe { run_exit(regs, nr, args, ret) };
    // SAFETY: caller contract.
    unsafe { (*regs).ax = ret as u64 };
}

/// Runs the exit programs of call `nr` (the table is reloaded: it may
/// have been replaced during the call). Returns the result, overridden or
/// not.
///
/// # Safety
/// As [`on_syscall`], with `busy` set.
unsafe fn run_exit(regs: *mut PtRegs, nr: u64, args: [u64; 6], ret: i64) -> i64 {
    let table = if crate::grace::enter() {
        links::current()
    } else {
        None
    };
    let Some(t) = table else {
        return ret;
    };
    let mut call = Call {
        nr,
        args,
        regs,
        override_ret: None,
    };
    // SAFETY: `t` stays valid while `busy` is set.
    unsafe { call.run(t, true, ret) };
    call.override_ret.map_or(ret, |v| v as i64)
}

/// Calls the tests' observer, if one is set.
#[inline]
fn observe(nr: u64) {
    let obs = OBSERVER.load(Ordering::Acquire);
    if !obs.is_null() {
        // SAFETY: only ever a `fn(u64)` stored by set_test_observer.
        let f: fn(u64) = unsafe { core::mem::transmute(obs) };
        f(nr);
    }
}

/// Runs the exit programs of an `execve` that succeeded, in the new image
/// (the agent of the new image calls this before `main`).
pub fn deliver_exec_exit(nr: u64) {
    let ts = thread::current();
    // SAFETY: the calling thread's own state block.
    let was_busy = unsafe { core::ptr::replace(&raw mut (*ts).busy, 1) };
    let table = if crate::grace::enter() {
        links::current()
    } else {
        None
    };
    if let Some(t) = table {
        let mut regs = PtRegs {
            orig_ax: nr,
            ax: 0,
            ..PtRegs::default()
        };
        let mut call = Call {
            nr,
            args: [0; 6],
            regs: &mut regs,
            override_ret: None,
        };
        // SAFETY: `t` stays valid while `busy` is set.
        unsafe { call.run(t, true, 0) };
    }
    // SAFETY: as above.
    unsafe { (*ts).busy = was_busy };
}

/// One syscall on its way through the programs.
struct Call {
    nr: u64,
    args: [u64; 6],
    /// The registers at the syscall instruction (the kernel's pt_regs of
    /// the syscall: what raw tracepoints and ksyscall programs see),
    /// valid for the whole dispatch.
    regs: *const PtRegs,
    /// Set by `bpf_override_return` in a ksyscall (skip the call) or
    /// kretsyscall (replace the result) program.
    override_ret: Option<u64>,
}

impl Call {
    /// Runs the entry (or exit, with `ret`) programs of `t`.
    ///
    /// # Safety
    /// The caller keeps `t` alive (busy and registered).
    #[inline(always)]
    unsafe fn run(&mut self, t: &Table, exit: bool, ret: i64) {
        let (own, all) = t.runs(self.nr, exit);
        for l in own.iter().chain(all) {
            // SAFETY: forwarded.
            unsafe { self.run_one(l, exit, ret) };
        }
    }

    /// # Safety
    /// As [`Call::run`].
    unsafe fn run_one(&mut self, l: &SysLink, exit: bool, ret: i64) {
        let mut info = RunInfo {
            attach_cookie: l.cookie,
            ..RunInfo::default()
        };
        // The kernel's syscall pt_regs: ax is -ENOSYS until the call
        // returns.
        // SAFETY: valid for the whole dispatch (Call's contract).
        let mut inner = unsafe { *self.regs };
        inner.orig_ax = self.nr;
        inner.ax = if exit {
            ret as u64
        } else {
            -(libc::ENOSYS as i64) as u64
        };
        let ctx = l.ctx;
        let res = match ctx.kind {
            SyscallCtxKind::Tracepoint | SyscallCtxKind::RawSyscalls => {
                let mut buf = [0u64; 8];
                fill_tracepoint(&mut buf, &ctx, self.nr, &self.args, exit, ret);
                let len = (ctx.size as usize).min(core::mem::size_of_val(&buf));
                info.regs = &mut inner;
                // SAFETY: a live local buffer of `len` bytes; `info`
                // outlives the run.
                unsafe { l.prog.run(buf.as_mut_ptr().cast(), len, info.as_user_ptr()) }
            }
            SyscallCtxKind::RawTracepoint => {
                let mut buf = [
                    &mut inner as *mut PtRegs as u64,
                    if exit { ret as u64 } else { self.nr },
                ];
                info.regs = &mut inner;
                // SAFETY: as above; the pt_regs it points to lives on.
                unsafe { l.prog.run(buf.as_mut_ptr().cast(), 16, info.as_user_ptr()) }
            }
            SyscallCtxKind::Ksyscall | SyscallCtxKind::Kretsyscall => {
                // A kprobe on the kernel's __x64_sys_* wrapper: its one
                // argument is the syscall's pt_regs. A kretprobe: its
                // registers at the return, ax the result.
                let mut outer = if ctx.kind == SyscallCtxKind::Ksyscall {
                    PtRegs {
                        di: &mut inner as *mut PtRegs as u64,
                        sp: inner.sp,
                        ..PtRegs::default()
                    }
                } else {
                    inner
                };
                // The registers helpers know (stack walks, and the region
                // bpf_probe_read_kernel may read besides the context): the
                // syscall's, which BPF_KSYSCALL reads through ctx->di.
                info.regs = if ctx.kind == SyscallCtxKind::Ksyscall {
                    &mut inner
                } else {
                    &mut outer
                };
                // SAFETY: as above.
                let res = unsafe {
                    l.prog.run(
                        (&mut outer as *mut PtRegs).cast(),
                        core::mem::size_of::<PtRegs>(),
                        info.as_user_ptr(),
                    )
                };
                if let Some(v) = info.override_return() {
                    self.override_ret = Some(v);
                }
                res
            }
        };
        if res.is_err() {
            ERRORS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Program runs that failed.
static ERRORS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Program runs on syscalls that failed (a VM error).
pub fn run_errors() -> u64 {
    ERRORS.load(Ordering::Relaxed)
}

/// Lays out a tracepoint record as the kernel's format says: the common
/// fields, the syscall number, then the arguments (entry) or the result.
fn fill_tracepoint(
    buf: &mut [u64; 8],
    ctx: &SyscallCtx,
    nr: u64,
    args: &[u64; 6],
    exit: bool,
    ret: i64,
) {
    // SAFETY: viewing a u64 array as bytes.
    let bytes: &mut [u8; 64] = unsafe { &mut *(buf as *mut [u64; 8]).cast() };
    bytes[0..2].copy_from_slice(&ctx.common_type.to_ne_bytes());
    bytes[4..8].copy_from_slice(&tid().to_ne_bytes());
    let put = |bytes: &mut [u8; 64], off: usize, size: usize, v: u64| {
        if off + size <= bytes.len() {
            bytes[off..off + size].copy_from_slice(&v.to_ne_bytes()[..size]);
        }
    };
    put(bytes, ctx.nr_offset as usize, ctx.nr_size as usize, nr);
    let base = ctx.args_offset as usize;
    if exit {
        put(bytes, base, 8, ret as u64);
    } else {
        let end = (ctx.size as usize).min(64);
        for (i, a) in args.iter().enumerate() {
            if base + 8 * (i + 1) <= end {
                put(bytes, base + 8 * i, 8, *a);
            }
        }
    }
}

/// The calling thread's kernel id (`common_pid`): the helpers' cached
/// one, which knows a vfork child from its parent.
#[inline]
fn tid() -> i32 {
    userbpf_runtime::helpers::task::current_ids().1 as i32
}
