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
