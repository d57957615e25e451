//! Uprobes in the loader's own process (`pid` 0, or -1: every process,
//! this one included, as with the kernel).
//!
//! A loader is not preloaded with the agent, so libbpf.so.1 loads it on the
//! first such link: `libuserbpf_agent.so` from its own directory (where
//! the build and `userbpf libdir` put both), or `USERBPF_AGENT`. Its
//! constructor starts it; a process that already has the agent (`userbpf
//! start` of a loader) keeps that one. `userbpf_agent_start` then makes it
//! reconcile before attach (and detach) returns, so that the next call of
//! the probed function in this process sees the change, as with the
//! kernel.

use std::ffi::{c_void, CStr, CString};
use std::sync::Mutex;

use crate::print;

type StartFn = extern "C" fn();

/// The agent's `userbpf_agent_start`, loading the agent if needed.
fn agent_start() -> Option<StartFn> {
    static START: Mutex<Option<usize>> = Mutex::new(None);
    let mut g = START.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(f) = *g {
        // SAFETY: stored below from dlsym of the agent's entry point.
        return Some(unsafe { std::mem::transmute::<usize, StartFn>(f) });
    }
    // SAFETY: dlsym with a constant, NUL-terminated name.
    let mut sym = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"userbpf_agent_start".as_ptr()) };
    if sym.is_null() {
        let path = agent_path()?;
        // SAFETY: a valid C string; the agent's constructor runs here.
        let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
        if handle.is_null() {
            // SAFETY: dlerror returns a C string or null.
            let err = unsafe { libc::dlerror() };
            let why = if err.is_null() {
                String::new()
            } else {
                // SAFETY: as above.
                unsafe { CStr::from_ptr(err) }
                    .to_string_lossy()
                    .into_owned()
            };
            print::warn(&format!(
                "userbpf: cannot load the agent for probes in this process: {why}\n"
            ));
            return None;
        }
        // SAFETY: a live handle and a constant name.
        sym = unsafe { libc::dlsym(handle, c"userbpf_agent_start".as_ptr()) };
        if sym.is_null() {
            return None;
        }
    }
    *g = Some(sym as usize);
    // SAFETY: the agent's `void userbpf_agent_start(void)`.
    Some(unsafe { std::mem::transmute::<*mut c_void, StartFn>(sym) })
}

/// `USERBPF_AGENT`, else `libuserbpf_agent.so` next to this library.
fn agent_path() -> Option<CString> {
    if let Some(p) = std::env::var_os("USERBPF_AGENT") {
        return CString::new(p.into_encoded_bytes()).ok();
    }
    // SAFETY: dladdr on one of our own functions, into a local.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::dladdr(agent_path as *const c_void, &mut info) } == 0
        || info.dli_fname.is_null()
    {
        return None;
    }
    // SAFETY: dladdr returned a NUL-terminated name.
    let me = unsafe { CStr::from_ptr(info.dli_fname) }.to_str().ok()?;
    let dir = std::path::Path::new(me).parent()?;
    CString::new(
        dir.join("libuserbpf_agent.so")
            .into_os_string()
            .into_encoded_bytes(),
    )
    .ok()
}

/// Makes this process's agent act on links with record pid `pid` (0: every
/// process) now; nothing for links of other processes.
pub fn sync_for(pid: u32) {
    if pid != 0 && pid != std::process::id() {
        return;
    }
    if let Some(start) = agent_start() {
        start();
    }
}

/// How long attach and detach wait for running targets' agents.
const SETTLE_LIMIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Does process `pid` map a file with one of these (dev, inode)s?
fn maps_any(pid: u32, files: &[(u64, u64)]) -> bool {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
        return false;
    };
    text.lines().any(|line| {
        let mut f = line.split_ascii_whitespace().skip(3);
        let (Some(dev), Some(ino)) = (f.next(), f.next()) else {
            return false;
        };
        let Some((ma, mi)) = dev.split_once(':') else {
            return false;
        };
        let (Ok(ma), Ok(mi), Ok(ino)) = (
            u32::from_str_radix(ma, 16),
            u32::from_str_radix(mi, 16),
            ino.parse::<u64>(),
        ) else {
            return false;
        };
        files.contains(&(libc::makedev(ma, mi), ino))
    })
}

/// After publishing (`attached`) or removing link `link_id`: makes this
/// process's agent act now, and waits (at most [`SETTLE_LIMIT`]) until the
/// agent of every running target that the link concerns (pid filter `pid`,
/// 0 for all; one of `files` mapped) reports it installed (or failed), or
/// gone. The kernel installs and removes uprobes in every process before
/// the syscall returns; tools count on that.
pub fn settle(link_id: u32, pid: u32, files: &[(u64, u64)], attached: bool) {
    sync_for(pid);
    wait_for_agents(link_id, pid, attached, |a| maps_any(a, files));
}

/// Waits (at most [`SETTLE_LIMIT`]) until the agent of every other running
/// process that link `link_id` concerns (pid filter `pid`, 0 for all, and
/// `concerns(agent pid)`) reports it installed (or failed) when
/// `attached`, removed otherwise, or is gone.
pub fn wait_for_agents(link_id: u32, pid: u32, attached: bool, concerns: impl Fn(u32) -> bool) {
    let dir = userbpf_runtime::namespace::namespace_dir();
    let me = std::process::id();
    let start = std::time::Instant::now();
    let agents: Vec<u32> =
        userbpf_runtime::registry::scan_role(&dir, userbpf_runtime::registry::Role::Agent, false)
            .iter()
            .map(|a| a.pid)
            .filter(|&a| a != me && (pid == 0 || a == pid) && concerns(a))
            .collect();
    for agent in agents {
        loop {
            let reported = userbpf_runtime::registry::scan_role(
                &dir,
                userbpf_runtime::registry::Role::Agent,
                false,
            )
            .into_iter()
            .filter(|a| a.pid == agent)
            .flat_map(|a| a.file.records())
            .any(|r| r.kind == userbpf_runtime::registry::kind::ATTACHMENT && r.id == link_id);
            // A dead agent's file is skipped by the scan: nothing to wait for.
            let alive = std::path::Path::new(&format!("/proc/{agent}")).exists();
            if reported == attached || !alive || start.elapsed() > SETTLE_LIMIT {
                break;
            }
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    }
}
