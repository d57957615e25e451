//! The agent's thread: waits for registry changes (inotify on the
//! namespace directory; a pidfd per live loader, since a dead loader's
//! file does not change) and reconciles. It sleeps in `poll` in between:
//! no timer, no polling loop.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use userbpf_runtime::registry;

/// inotify on `dir`, or None.
fn watch_dir(dir: &Path) -> Option<OwnedFd> {
    // SAFETY: plain syscall.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
    if fd < 0 {
        return None;
    }
    // SAFETY: a fresh fd nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let path = CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mask = libc::IN_CREATE
        | libc::IN_DELETE
        | libc::IN_MODIFY
        | libc::IN_MOVED_TO
        | libc::IN_MOVED_FROM
        | libc::IN_CLOSE_WRITE;
    // SAFETY: valid fd and C string.
    if unsafe { libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), mask) } < 0 {
        return None;
    }
    Some(fd)
}

fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: plain syscall.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: a fresh fd nothing else owns.
    Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn drain(fd: &OwnedFd) {
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: reads into a local buffer.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
    }
}

/// An eventfd the dynamic loader's hook writes to when libraries come or
/// go (`notify_libraries_changed`); -1 until the watcher made it.
static LIBS_CHANGED: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

/// Wakes the watcher: the set of mapped libraries changed. Async-signal
/// safe (one `write`), as it runs inside `dlopen` and maybe a signal
/// handler (trap sites).
pub fn notify_libraries_changed() {
    let fd = LIBS_CHANGED.load(std::sync::atomic::Ordering::Acquire);
    if fd >= 0 {
        let one = 1u64;
        // SAFETY: writes 8 bytes from a local to an eventfd; errno is
        // restored by the hook stub around handlers.
        unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
    }
}

/// Wakes the watcher (the agent stops): called with the agent's lock
/// held, so the eventfd is still the watcher's.
pub(crate) fn wake() {
    notify_libraries_changed();
}

fn libs_eventfd() -> Option<OwnedFd> {
    // SAFETY: plain syscall.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return None;
    }
    LIBS_CHANGED.store(fd, std::sync::atomic::Ordering::Release);
    // SAFETY: a fresh fd nothing else owns.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reconcile, then sleep until something changes; until the agent stops
/// (`generation` is no longer the running one).
pub fn run(dir: PathBuf, generation: u64) {
    let mut inotify = watch_dir(&dir);
    let mut libs = libs_eventfd();
    let mut pidfds: HashMap<u32, OwnedFd> = HashMap::new();
    loop {
        if !crate::entry::reconcile_if_current(generation, &dir) {
            break;
        }
        let live: Vec<u32> = registry::scan(&dir, false).iter().map(|l| l.pid).collect();
        pidfds.retain(|pid, _| live.contains(pid));
        for pid in live {
            if let std::collections::hash_map::Entry::Vacant(e) = pidfds.entry(pid) {
                if let Some(fd) = pidfd_open(pid) {
                    e.insert(fd);
                }
            }
        }
        let pids: Vec<u32> = pidfds.keys().copied().collect();
        let mut fds: Vec<libc::pollfd> = inotify
            .iter()
            .chain(libs.iter())
            .chain(pids.iter().map(|p| &pidfds[p]))
            .map(|fd| libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        if fds.is_empty() {
            // Nothing to wait on (no inotify): nothing will ever change.
            return;
        }
        // SAFETY: a valid array of pollfds.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            continue;
        }
        // An application that closes every fd (daemons do) closes ours: a
        // closed fd polls as POLLNVAL at once, which would spin. Forget
        // such fds (without closing: the number may be the application's
        // now) and open new ones.
        let first_pid = usize::from(inotify.is_some()) + usize::from(libs.is_some());
        let libs_at = usize::from(inotify.is_some());
        for (i, pfd) in fds.iter().enumerate() {
            if pfd.revents & libc::POLLNVAL == 0 {
                continue;
            }
            if libs.is_some() && i == libs_at {
                LIBS_CHANGED.store(-1, std::sync::atomic::Ordering::Release);
                if let Some(fd) = libs.take() {
                    std::mem::forget(fd);
                }
                libs = libs_eventfd();
            } else if i < libs_at {
                if let Some(fd) = inotify.take() {
                    std::mem::forget(fd);
                }
                inotify = watch_dir(&dir);
                // Our registry file's fd went the same way (and its lock).
                crate::with_agent(|a| a.reopen_file());
            } else if let Some(fd) = pidfds.remove(&pids[i - first_pid]) {
                std::mem::forget(fd);
            }
        }
        if let Some(fd) = &inotify {
            drain(fd);
        }
        if let Some(fd) = &libs {
            drain(fd);
        }
    }
    // Stopped: nobody may write to our eventfd once it is closed (a new
    // watcher may have published its own already).
    if let Some(fd) = &libs {
        let raw = fd.as_raw_fd();
        crate::with_agent(|_| {
            let _ = LIBS_CHANGED.compare_exchange(
                raw,
                -1,
                std::sync::atomic::Ordering::AcqRel,
                std::sync::atomic::Ordering::Acquire,
            );
        });
    }
}
