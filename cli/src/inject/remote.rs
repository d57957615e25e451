//! One stopped thread of the target, and calls of functions in it.
//!
//! A [`Tracee`] is a thread we seized and stopped, with its registers and
//! vector state saved at that stop. [`Tracee::call`] runs one function in
//! it: arguments in registers, a return address of 0 on a stack we choose,
//! `orig_rax = -1` so that the kernel's system-call restart logic leaves
//! the injected `rip` alone; the function's `ret` faults at address 0, and
//! that SIGSEGV stop (never delivered) hands the thread back with the
//! result in `rax`. [`Tracee::release`] (also on drop) puts every register
//! back as it was, so that a thread stopped in a blocking system call
//! restarts it, and detaches, delivering the signals that arrived
//! meanwhile.

use std::io;
use std::time::{Duration, Instant};

use super::error::InjectError;
use super::ptrace::{self, Regs, SigInfo, Stop, Waiter};

/// Why a seize did not give us a stopped thread.
pub enum SeizeError {
    /// EPERM: the caller explains why.
    NotPermitted,
    /// The thread is gone.
    Gone,
    Other(InjectError),
}

pub struct Tracee<'w> {
    pub pid: i32,
    pub tid: i32,
    waiter: &'w Waiter,
    /// The registers at the stop we took it at.
    pub saved: Regs,
    /// When we saw it stop.
    pub stopped_at: Instant,
    fp: Option<(libc::c_int, Vec<u8>)>,
    /// Registers changed since (a call was set up).
    dirty: bool,
    /// In a ptrace-stop now.
    stopped: bool,
    /// The current stop is a signal-delivery-stop (a signal can be
    /// delivered on detach).
    at_signal: bool,
    /// Signals that arrived while we had it, to deliver on release.
    deferred: Vec<SigInfo>,
    released: bool,
}

/// Signals that a fault raises in the thread that faults: they must reach
/// their handler at once (the agent's own SIGSEGV and SIGTRAP handlers
/// among them), not after the injected call.
fn synchronous(sig: i32, si: &SigInfo) -> bool {
    matches!(
        sig,
        libc::SIGSEGV | libc::SIGBUS | libc::SIGILL | libc::SIGFPE | libc::SIGTRAP | libc::SIGSYS
    ) && si.si_code > 0
}

/// Does process `pid` catch `sig` (`SigCgt`)?
fn caught(pid: i32, sig: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let v = s.lines().find_map(|l| l.strip_prefix("SigCgt:"))?;
            u64::from_str_radix(v.trim(), 16).ok()
        })
        .is_some_and(|m| m & (1u64 << (sig - 1)) != 0)
}

impl<'w> Tracee<'w> {
    /// Seizes thread `tid` of `pid` and stops it (`PTRACE_INTERRUPT`).
    pub fn seize(
        pid: i32,
        tid: i32,
        waiter: &'w Waiter,
        deadline: Instant,
    ) -> Result<Tracee<'w>, SeizeError> {
        if let Err(e) = ptrace::seize(tid) {
            return Err(match e.raw_os_error() {
                Some(libc::EPERM) => SeizeError::NotPermitted,
                Some(libc::ESRCH) => SeizeError::Gone,
                _ => SeizeError::Other(InjectError::io(format!("PTRACE_SEIZE of {tid}"), e)),
            });
        }
        let mut t = Tracee {
            pid,
            tid,
            waiter,
            // SAFETY: an all-zero user_regs_struct is valid; replaced below.
            saved: unsafe { std::mem::zeroed() },
            stopped_at: Instant::now(),
            fp: None,
            dirty: false,
            stopped: false,
            at_signal: false,
            deferred: Vec::new(),
            released: false,
        };
        if ptrace::interrupt(tid).is_err() {
            // Gone already; detached as it dies.
            t.released = true;
            return Err(SeizeError::Gone);
        }
        match t.wait_stopped(deadline) {
            Ok(true) => {}
            Ok(false) => {
                // Never stopped (uninterruptible sleep): it stays traced
                // until it stops or this process exits, which detaches it.
                t.released = true;
                return Err(SeizeError::Other(InjectError::Timeout(format!(
                    "waiting for thread {tid} to stop"
                ))));
            }
            Err(InjectError::Exited(_)) => {
                t.released = true;
                return Err(SeizeError::Gone);
            }
            Err(e) => return Err(SeizeError::Other(e)),
        }
        t.stopped_at = Instant::now();
        t.saved = ptrace::get_regs(tid).map_err(|e| SeizeError::Other(t.gone_or(e)))?;
        t.fp = Some(ptrace::get_fpstate(tid).map_err(|e| SeizeError::Other(t.gone_or(e)))?);
        Ok(t)
    }

    fn gone_or(&self, e: io::Error) -> InjectError {
        if e.raw_os_error() == Some(libc::ESRCH) {
            InjectError::Exited(self.pid)
        } else {
            InjectError::io(format!("ptrace on thread {}", self.tid), e)
        }
    }

    /// Waits until the thread is in a stop we can work from; a signal
    /// that stopped it is kept for release. False on timeout.
    fn wait_stopped(&mut self, deadline: Instant) -> Result<bool, InjectError> {
        match self.waiter.wait(self.tid, deadline)? {
            None => Ok(false),
            Some(Stop::Gone) => {
                self.released = true;
                Err(InjectError::Exited(self.pid))
            }
            Some(Stop::Event) | Some(Stop::Group) => {
                self.stopped = true;
                self.at_signal = false;
                Ok(true)
            }
            Some(Stop::Signal(_, si)) => {
                self.stopped = true;
                self.at_signal = true;
                self.deferred.push(si);
                Ok(true)
            }
        }
    }

    /// Was the thread stopped in (or just after) a system call?
    pub fn in_syscall(&self) -> bool {
        (self.saved.orig_rax as i64) >= 0
    }

    /// Calls `func(args...)` in the thread on the stack below `sp`
    /// (16-byte aligned, writable) and returns `rax`.
    pub fn call(
        &mut self,
        name: &'static str,
        func: u64,
        args: &[u64],
        sp: u64,
        deadline: Instant,
    ) -> Result<u64, InjectError> {
        assert!(args.len() <= 6 && sp.is_multiple_of(16));
        let mut r = self.saved;
        // As at a function's entry: the return address (0) pushed on a
        // 16-byte aligned stack.
        let ret_at = sp - 8;
        super::memory::write(self.pid, ret_at, &0u64.to_ne_bytes())?;
        r.rsp = ret_at;
        r.rip = func;
        let mut a = [0u64; 6];
        a[..args.len()].copy_from_slice(args);
        r.rdi = a[0];
        r.rsi = a[1];
        r.rdx = a[2];
        r.rcx = a[3];
        r.r8 = a[4];
        r.r9 = a[5];
        r.rax = 0;
        // Not in a system call: no restart logic on the injected rip.
        r.orig_rax = u64::MAX;
        // The ABI wants DF clear at calls; no single-stepping.
        r.eflags &= !(0x400 | 0x100);
        self.dirty = true;
        let began = Instant::now();
        let r = self.run_call(name, &r, sp, deadline);
        super::debug(format_args!(
            "{name} in thread {}: {:.3} ms",
            self.tid,
            began.elapsed().as_secs_f64() * 1e3
        ));
        r
    }

    fn run_call(
        &mut self,
        name: &'static str,
        r: &Regs,
        sp: u64,
        deadline: Instant,
    ) -> Result<u64, InjectError> {
        ptrace::set_regs(self.tid, r).map_err(|e| self.gone_or(e))?;
        self.resume(0)?;
        loop {
            let Some(stop) = self.waiter.wait(self.tid, deadline)? else {
                return Err(InjectError::Timeout(format!(
                    "waiting for {name} to return in process {} (thread {}); the thread \
                     was put back where it was, what {name} had done so far stays",
                    self.pid, self.tid
                )));
            };
            match stop {
                Stop::Gone => {
                    self.released = true;
                    return Err(InjectError::Exited(self.pid));
                }
                // The interrupt's own stop if a signal came first, or a
                // group-stop: the call goes on (the group-stop is
                // resumed by the kernel on detach).
                Stop::Event | Stop::Group => {
                    self.stopped = true;
                    self.at_signal = false;
                    self.resume(0)?;
                }
                Stop::Signal(sig, si) => {
                    self.stopped = true;
                    self.at_signal = true;
                    if sig == libc::SIGSEGV {
                        let now = ptrace::get_regs(self.tid).map_err(|e| self.gone_or(e))?;
                        if now.rip == 0 && now.rsp == sp {
                            return Ok(now.rax);
                        }
                    }
                    if synchronous(sig, &si) {
                        if !caught(self.pid, sig) {
                            // Delivering it would kill the target: the
                            // call is abandoned, the thread put back.
                            let ip = ptrace::get_regs(self.tid).map(|r| r.rip).unwrap_or(0);
                            return Err(InjectError::Crashed {
                                pid: self.pid,
                                func: name,
                                sig,
                                ip,
                            });
                        }
                        // A fault the process handles (the agent's safe
                        // reads and trap sites, the application's own).
                        self.resume(sig)?;
                    } else {
                        self.deferred.push(si);
                        self.resume(0)?;
                    }
                }
            }
        }
    }

    fn resume(&mut self, sig: i32) -> Result<(), InjectError> {
        ptrace::cont(self.tid, sig).map_err(|e| self.gone_or(e))?;
        self.stopped = false;
        self.at_signal = false;
        Ok(())
    }

    /// Puts the registers back, detaches, and delivers the signals that
    /// arrived meanwhile (the first with its siginfo, at the stop; others,
    /// rare, with tgkill).
    pub fn release(mut self) -> Result<(), InjectError> {
        self.release_inner()
    }

    fn release_inner(&mut self) -> Result<(), InjectError> {
        if self.released {
            return Ok(());
        }
        if !self.stopped {
            // Running an injected call that timed out: stop it first.
            ptrace::interrupt(self.tid).map_err(|e| self.gone_or(e))?;
            let deadline = Instant::now() + Duration::from_secs(2);
            if !self.wait_stopped(deadline)? {
                self.released = true;
                return Err(InjectError::Timeout(format!(
                    "waiting for thread {} to stop; it is detached as this command exits",
                    self.tid
                )));
            }
        }
        self.released = true;
        let mut pending = std::mem::take(&mut self.deferred);
        let mut sig = 0;
        if self.at_signal && !pending.is_empty() {
            let first = pending.remove(0);
            ptrace::set_siginfo(self.tid, &first).map_err(|e| self.gone_or(e))?;
            sig = first.si_signo;
        }
        if self.dirty {
            let mut regs = self.saved;
            if sig == 0 && restarts_through_restart_block(&regs) {
                // The kernel would restart it with restart_syscall, from
                // the thread's restart block, which a call we made may
                // have reset (every nanosleep does): restart the system
                // call itself instead, with its arguments (still in their
                // registers). A relative timeout starts again: the wait
                // is longer, never cut short by a spurious EINTR.
                regs.rax = regs.orig_rax;
                regs.rip -= 2;
            }
            ptrace::set_regs(self.tid, &regs).map_err(|e| self.gone_or(e))?;
            if let Some((note, fp)) = &self.fp {
                ptrace::set_fpstate(self.tid, *note, fp).map_err(|e| self.gone_or(e))?;
            }
        }
        ptrace::detach(self.tid, sig).map_err(|e| self.gone_or(e))?;
        for si in pending {
            let _ = ptrace::tgkill(self.pid, self.tid, si.si_signo);
        }
        Ok(())
    }
}

/// `-ERESTART_RESTARTBLOCK`: an interrupted wait with a timeout
/// (nanosleep, clock_nanosleep, poll, futex) that the kernel resumes with
/// `restart_syscall` from the thread's restart block.
const ERESTART_RESTARTBLOCK: i64 = -516;
const NR_RESTART_SYSCALL: u64 = 219;

/// Was the thread stopped in a system call that resumes through its
/// restart block (and that we can re-issue: not `restart_syscall` itself)?
pub fn restarts_through_restart_block(r: &Regs) -> bool {
    (r.orig_rax as i64) >= 0
        && r.rax as i64 == ERESTART_RESTARTBLOCK
        && r.orig_rax != NR_RESTART_SYSCALL
}

impl Drop for Tracee<'_> {
    fn drop(&mut self) {
        // Error paths: the thread goes back as it was, whatever happened.
        if let Err(e) = self.release_inner() {
            eprintln!("userbpf: warning: {e}");
        }
    }
}
