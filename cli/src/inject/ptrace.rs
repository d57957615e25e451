//! Thin wrappers over ptrace(2) for one thread, and waiting for its stops
//! with a deadline (a signalfd for SIGCHLD, which the kernel sends the
//! tracer at every stop).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Instant;

use super::error::InjectError;

pub type Regs = libc::user_regs_struct;
pub type SigInfo = libc::siginfo_t;

/// `NT_X86_XSTATE`: the whole XSAVE area (x87, SSE, AVX, AVX-512...).
const NT_X86_XSTATE: libc::c_int = 0x202;
/// `NT_PRFPREG`: the FXSAVE area, where XSAVE is not available.
const NT_PRFPREG: libc::c_int = 2;
/// Large enough for every XSAVE layout (AMX tiles included).
const XSTATE_MAX: usize = 16 * 1024;

fn check(r: libc::c_long) -> io::Result<libc::c_long> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// `PTRACE_SEIZE` without options: the thread keeps running.
pub fn seize(tid: i32) -> io::Result<()> {
    // SAFETY: no memory is passed.
    check(unsafe { libc::ptrace(libc::PTRACE_SEIZE, tid, 0usize, 0usize) }).map(drop)
}

pub fn interrupt(tid: i32) -> io::Result<()> {
    // SAFETY: no memory is passed.
    check(unsafe { libc::ptrace(libc::PTRACE_INTERRUPT, tid, 0usize, 0usize) }).map(drop)
}

/// Resumes a stopped tracee, delivering `sig` (0: none).
pub fn cont(tid: i32, sig: i32) -> io::Result<()> {
    // SAFETY: no memory is passed.
    check(unsafe { libc::ptrace(libc::PTRACE_CONT, tid, 0usize, sig as usize) }).map(drop)
}

/// Detaches from a stopped tracee, delivering `sig` (0: none).
pub fn detach(tid: i32, sig: i32) -> io::Result<()> {
    // SAFETY: no memory is passed.
    check(unsafe { libc::ptrace(libc::PTRACE_DETACH, tid, 0usize, sig as usize) }).map(drop)
}

pub fn get_regs(tid: i32) -> io::Result<Regs> {
    // SAFETY: an all-zero user_regs_struct is valid.
    let mut r: Regs = unsafe { std::mem::zeroed() };
    // SAFETY: the kernel writes one user_regs_struct into `r`.
    check(unsafe { libc::ptrace(libc::PTRACE_GETREGS, tid, 0usize, &mut r as *mut Regs) })?;
    Ok(r)
}

pub fn set_regs(tid: i32, r: &Regs) -> io::Result<()> {
    // SAFETY: the kernel reads one user_regs_struct from `r`.
    check(unsafe { libc::ptrace(libc::PTRACE_SETREGS, tid, 0usize, r as *const Regs) }).map(drop)
}

/// The vector and x87 state: (note type, bytes), for [`set_fpstate`].
pub fn get_fpstate(tid: i32) -> io::Result<(libc::c_int, Vec<u8>)> {
    for note in [NT_X86_XSTATE, NT_PRFPREG] {
        let mut buf = vec![0u8; XSTATE_MAX];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: the kernel writes at most iov_len bytes into buf and
        // sets iov_len to what it wrote.
        let r = unsafe {
            libc::ptrace(
                libc::PTRACE_GETREGSET,
                tid,
                note as usize,
                &mut iov as *mut libc::iovec,
            )
        };
        if r == 0 {
            buf.truncate(iov.iov_len);
            return Ok((note, buf));
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINVAL) && e.raw_os_error() != Some(libc::ENODEV) {
            return Err(e);
        }
    }
    Err(io::Error::from_raw_os_error(libc::EINVAL))
}

pub fn set_fpstate(tid: i32, note: libc::c_int, state: &[u8]) -> io::Result<()> {
    let mut copy = state.to_vec();
    let mut iov = libc::iovec {
        iov_base: copy.as_mut_ptr().cast(),
        iov_len: copy.len(),
    };
    // SAFETY: the kernel reads iov_len bytes from the buffer.
    check(unsafe {
        libc::ptrace(
            libc::PTRACE_SETREGSET,
            tid,
            note as usize,
            &mut iov as *mut libc::iovec,
        )
    })
    .map(drop)
}

pub fn get_siginfo(tid: i32) -> io::Result<SigInfo> {
    // SAFETY: an all-zero siginfo_t is valid.
    let mut si: SigInfo = unsafe { std::mem::zeroed() };
    // SAFETY: the kernel writes one siginfo_t.
    check(unsafe {
        libc::ptrace(
            libc::PTRACE_GETSIGINFO,
            tid,
            0usize,
            &mut si as *mut SigInfo,
        )
    })?;
    Ok(si)
}

pub fn set_siginfo(tid: i32, si: &SigInfo) -> io::Result<()> {
    // SAFETY: the kernel reads one siginfo_t.
    check(unsafe { libc::ptrace(libc::PTRACE_SETSIGINFO, tid, 0usize, si as *const SigInfo) })
        .map(drop)
}

/// Sends `sig` to one thread of `pid`.
pub fn tgkill(pid: i32, tid: i32, sig: i32) -> io::Result<()> {
    // SAFETY: plain syscall.
    check(unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, sig) }).map(drop)
}

/// How a wait ended.
#[derive(Clone, Copy)]
pub enum Stop {
    /// `PTRACE_INTERRUPT`'s stop (or another event stop).
    Event,
    /// A group-stop (SIGSTOP and friends) while we trace it.
    Group,
    /// Signal-delivery-stop: `sig` is about to be delivered.
    Signal(i32, SigInfo),
    /// The thread (or the whole process) is gone.
    Gone,
}

/// Collects SIGCHLD on a signalfd, so that waits can time out. SIGCHLD
/// stays blocked while it lives (the CLI has no other children then), and
/// so do SIGINT, SIGTERM, SIGHUP and SIGQUIT: a Ctrl-C takes effect once
/// the target is put back, not while it runs an injected call (which
/// would return to address 0 without us).
pub struct Waiter {
    fd: OwnedFd,
    old: libc::sigset_t,
}

impl Waiter {
    pub fn new() -> Result<Waiter, InjectError> {
        // SAFETY: sigset_t is plain data, initialised by sigemptyset.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: valid sets.
        unsafe {
            libc::sigemptyset(&mut set);
            for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
                libc::sigaddset(&mut set, sig);
            }
            libc::sigaddset(&mut set, libc::SIGCHLD);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
            // The signalfd takes SIGCHLD only.
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGCHLD);
        }
        // SAFETY: a valid set; a new fd.
        let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
        if fd < 0 {
            let e = io::Error::last_os_error();
            // SAFETY: restores the mask saved above.
            unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
            return Err(InjectError::io("signalfd", e));
        }
        // SAFETY: a fresh fd nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Waiter { fd, old })
    }

    fn drain(&self) {
        let mut buf = [0u8; 128 * 8];
        loop {
            // SAFETY: reads into a local buffer.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
        }
    }

    /// Waits for the next stop of traced thread `tid`, until `deadline`
    /// (then None).
    pub fn wait(&self, tid: i32, deadline: Instant) -> Result<Option<Stop>, InjectError> {
        loop {
            let mut status = 0;
            // SAFETY: writes the status into a local.
            let r = unsafe { libc::waitpid(tid, &mut status, libc::WNOHANG | libc::__WALL) };
            if r == tid {
                return Ok(Some(classify(tid, status)));
            }
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                if e.raw_os_error() == Some(libc::ECHILD) {
                    // Not traced any more: it died and was reaped.
                    return Ok(Some(Stop::Gone));
                }
                return Err(InjectError::io("waitpid", e));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let left = deadline - now;
            let ts = libc::timespec {
                tv_sec: left.as_secs() as libc::time_t,
                tv_nsec: left.subsec_nanos() as libc::c_long,
            };
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, a valid timeout, no mask change.
            unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
            self.drain();
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.drain();
        // SAFETY: restores the mask saved in new().
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut()) };
    }
}

fn classify(tid: i32, status: i32) -> Stop {
    if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
        return Stop::Gone;
    }
    if !libc::WIFSTOPPED(status) {
        return Stop::Event;
    }
    let sig = libc::WSTOPSIG(status);
    let event = (status >> 16) & 0xff;
    if event == libc::PTRACE_EVENT_STOP {
        return match sig {
            libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU => Stop::Group,
            _ => Stop::Event,
        };
    }
    if event != 0 {
        return Stop::Event;
    }
    match get_siginfo(tid) {
        Ok(si) => Stop::Signal(sig, si),
        // ESRCH: killed meanwhile.
        Err(_) => Stop::Gone,
    }
}
