//! `bpf_trace_printk` (6) and the namespace's trace pipe.
//!
//! Each message becomes one line in the kernel's `trace_pipe` format,
//!
//! ```text
//!            <comm>-<tid>     [<cpu>] d..1. <secs>.<usecs>: bpf_trace_printk: <msg>
//! ```
//!
//! (comm right-aligned in 16 columns, the thread id left-aligned in 7, the
//! CPU in 3 digits, CLOCK_MONOTONIC as the timestamp; a newline is added
//! unless the message ends with one), written with a single `write` to the
//! FIFO at [`namespace::trace_pipe_path`]
//! (`userbpf trace-pipe` reads it). The FIFO is created on demand (mode
//! 0600, in the namespace directory, which is created 0700). It is opened
//! for each message with `O_WRONLY | O_NONBLOCK`, so:
//! - no reader: the open fails with ENXIO and the message is dropped;
//! - a full pipe (a slow reader): the write fails with EAGAIN and the
//!   message is dropped; nothing ever blocks the target;
//! - a reader that goes away mid-write: SIGPIPE is blocked around the
//!   write and a SIGPIPE the write raised is consumed, so the target never
//!   sees it;
//! - nothing is ever written to the target's stdout or stderr, and no file
//!   descriptor stays open in the target between messages (an application
//!   that closes or reuses descriptors cannot make us write to its files).
//!   A path that is not a FIFO is never written.
//!
//! Lines are shorter than `PIPE_BUF`, so lines from concurrent writers do
//! not interleave. errno is preserved. A message costs about seven
//! syscalls: `trace_printk` is a debugging aid, as in the kernel.

use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::sync::OnceLock;

use super::printf::{self, MAX_BPRINTF_BUF, MAX_FMT_LEN};
use super::task::{current_comm, current_ids};
use super::time::clock_ns;
use super::{env_ref, errno, neg, HelperEnv};
use crate::{cpu, namespace};

/// Most arguments of `bpf_trace_printk` (`MAX_TRACE_PRINTK_VARARGS`).
pub const MAX_TRACE_PRINTK_VARARGS: usize = 3;

/// `long bpf_trace_printk(const char *fmt, u32 fmt_size, ...)`: formats
/// `fmt` (program memory, NUL-terminated within `fmt_size` bytes) with up
/// to three arguments and writes the line to the trace pipe. Returns the
/// length of the formatted message (as the kernel: even when it was
/// dropped for want of a reader), -EINVAL for a bad format, -EFAULT when
/// `fmt` is not program memory.
///
/// # Safety
/// Called by an engine with its env.
pub unsafe extern "C" fn bpf_trace_printk(
    fmt: u64,
    fmt_size: u64,
    arg1: u64,
    arg2: u64,
    arg3: u64,
    env: *mut HelperEnv,
) -> u64 {
    // SAFETY: engine contract.
    let Some(env) = (unsafe { env_ref(env) }) else {
        return neg(errno::EFAULT);
    };
    let mut fmt_buf = [0u8; MAX_FMT_LEN];
    let fmt_len = match printf::read_format(env, fmt, fmt_size as u32 as usize, &mut fmt_buf) {
        Ok(len) => len,
        Err(e) => return neg(e),
    };
    let mut msg = [0u8; MAX_BPRINTF_BUF];
    let args = [arg1, arg2, arg3];
    // SAFETY: `msg` is a valid local buffer of its length.
    let len =
        match unsafe { printf::format(&fmt_buf[..fmt_len], &args, msg.as_mut_ptr(), msg.len()) } {
            Ok(Some(len)) => len,
            Ok(None) => return neg(errno::EFAULT),
            Err(e) => return neg(e.errno()),
        };
    let shown = len.min(MAX_BPRINTF_BUF - 1);
    emit(&msg[..shown]);
    len as u64
}

/// Writes one message to the trace pipe (see the module documentation).
pub fn emit(msg: &[u8]) {
    let mut line = [0u8; 2048];
    let len = format_line(&mut line, msg);
    // SAFETY: reading and restoring this thread's errno.
    let saved_errno = unsafe { *libc::__errno_location() };
    write_to_pipe(&line[..len]);
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = saved_errno };
}

/// The trace_pipe line for `msg`; returns its length.
fn format_line(line: &mut [u8; 2048], msg: &[u8]) -> usize {
    let comm = current_comm();
    let comm_len = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    let (_, tid) = current_ids();
    let cpu = cpu::current_cpu();
    let ns = clock_ns(libc::CLOCK_MONOTONIC);
    let (secs, usecs) = (ns / 1_000_000_000, (ns % 1_000_000_000) / 1000);
    let total = line.len();
    let mut out: &mut [u8] = &mut line[..];
    // Writes into a slice only fail when it is full: the line is cut.
    let _ = (|| -> std::io::Result<()> {
        for _ in comm_len..16 {
            out.write_all(b" ")?;
        }
        out.write_all(&comm[..comm_len])?;
        write!(
            out,
            "-{tid:<7} [{cpu:03}] d..1. {secs:5}.{usecs:06}: bpf_trace_printk: "
        )?;
        out.write_all(msg)?;
        if msg.last() != Some(&b'\n') {
            out.write_all(b"\n")?;
        }
        Ok(())
    })();
    total - out.len()
}

/// The trace pipe's path, read once per process.
fn pipe_path() -> Option<&'static CString> {
    static PATH: OnceLock<Option<CString>> = OnceLock::new();
    PATH.get_or_init(|| CString::new(namespace::trace_pipe_path().as_os_str().as_bytes()).ok())
        .as_ref()
}

fn errno_now() -> i32 {
    // SAFETY: reads this thread's errno.
    unsafe { *libc::__errno_location() }
}

/// Opens the FIFO for a non-blocking write; creates it when missing.
fn open_pipe(path: &CString) -> Option<libc::c_int> {
    let flags = libc::O_WRONLY | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY;
    // SAFETY: `path` is a valid C string.
    let fd = unsafe { libc::open(path.as_ptr(), flags) };
    if fd >= 0 {
        return Some(fd);
    }
    if errno_now() != libc::ENOENT {
        // ENXIO: nobody reads the pipe; drop the message.
        return None;
    }
    create_pipe(path);
    // SAFETY: as above.
    let fd = unsafe { libc::open(path.as_ptr(), flags) };
    (fd >= 0).then_some(fd)
}

/// Creates the namespace directory and the FIFO (mode 0600).
fn create_pipe(path: &CString) {
    if namespace::ensure_namespace_dir().is_err() {
        return;
    }
    // SAFETY: `path` is a valid C string; EEXIST (a racing creator) is fine.
    unsafe { libc::mkfifo(path.as_ptr(), 0o600) };
}

fn write_to_pipe(line: &[u8]) {
    let Some(path) = pipe_path() else {
        return;
    };
    let Some(fd) = open_pipe(path) else {
        return;
    };
    // SAFETY: all-zero is a valid `struct stat`.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid out-pointer; `fd` is ours.
    let is_fifo =
        unsafe { libc::fstat(fd, &mut st) } == 0 && (st.st_mode & libc::S_IFMT) == libc::S_IFIFO;
    if is_fifo {
        write_without_sigpipe(fd, line);
    }
    // SAFETY: closes the descriptor we opened.
    unsafe { libc::close(fd) };
}

/// `write` with SIGPIPE blocked; a SIGPIPE this write raised is consumed.
fn write_without_sigpipe(fd: libc::c_int, line: &[u8]) {
    // SAFETY: sigset operations on local, initialised sets; the mask is
    // restored before returning.
    unsafe {
        let mut pipe_set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut pipe_set);
        libc::sigaddset(&mut pipe_set, libc::SIGPIPE);
        let mut old: libc::sigset_t = std::mem::zeroed();
        if libc::pthread_sigmask(libc::SIG_BLOCK, &pipe_set, &mut old) != 0 {
            return;
        }
        let mut pending: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut pending);
        libc::sigpending(&mut pending);
        let was_pending = libc::sigismember(&pending, libc::SIGPIPE) == 1;
        let n = libc::write(fd, line.as_ptr().cast(), line.len());
        if n < 0 && errno_now() == libc::EPIPE && !was_pending {
            let zero = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            libc::sigtimedwait(&pipe_set, std::ptr::null_mut(), &zero);
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_format() {
        let mut line = [0u8; 2048];
        let n = format_line(&mut line, b"hello 42");
        let text = std::str::from_utf8(&line[..n]).unwrap();
        assert!(text.ends_with(": bpf_trace_printk: hello 42\n"), "{text:?}");
        assert_eq!(text.find('-'), Some(16), "{text:?}");
        assert!(text.contains("] d..1. "), "{text:?}");
        let n = format_line(&mut line, b"kept\n");
        assert!(std::str::from_utf8(&line[..n]).unwrap().ends_with("kept\n"));
    }
}
