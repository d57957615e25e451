//! Starting the agent: the constructor of libuserbpf_agent.so, the
//! exported `userbpf_agent_start`, and fork.
//!
//! The first reconcile runs in the constructor, so the hooks of links that
//! exist already are in place before `main`. Threads of the agent never
//! run programs: their `busy` word stays set, so hooks they hit (malloc,
//! say) are skipped as recursion.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::attach::Agent;
use crate::hook::thread;

/// Serialises reconciles with each other and with fork (a raw pthread
/// mutex: the fork handlers lock and unlock it from different calls).
static mut LOCK: libc::pthread_mutex_t = libc::PTHREAD_MUTEX_INITIALIZER;
static AGENT: AgentCell = AgentCell(std::cell::UnsafeCell::new(None));

/// The agent's state; only touched with LOCK held.
struct AgentCell(std::cell::UnsafeCell<Option<Agent>>);

// SAFETY: every access holds LOCK.
unsafe impl Sync for AgentCell {}
static STARTED: AtomicBool = AtomicBool::new(false);

/// Runs `f` on the agent's state, under the agent's lock, with the calling
/// thread's hooks suspended.
pub fn with_agent<R>(f: impl FnOnce(&mut Agent) -> R) -> R {
    let ts = thread::current();
    // SAFETY: the calling thread's own state block.
    let was_busy = unsafe { (*ts).busy };
    // SAFETY: as above; hooks this thread hits while we work are skipped.
    unsafe { (*ts).busy = 1 };
    // SAFETY: a statically initialised mutex.
    unsafe { libc::pthread_mutex_lock(&raw mut LOCK) };
    // SAFETY: AGENT is only touched with LOCK held.
    let agent = unsafe { (*AGENT.0.get()).get_or_insert_with(Agent::default) };
    let r = f(agent);
    // SAFETY: we hold it.
    unsafe { libc::pthread_mutex_unlock(&raw mut LOCK) };
    // SAFETY: the calling thread's own state block.
    unsafe { (*ts).busy = was_busy };
    r
}

fn namespace_dir() -> Option<PathBuf> {
    userbpf_runtime::namespace::ensure_namespace_dir().ok()
}

/// Starts the watcher thread; the calling thread's hooks are suspended
/// meanwhile (creating a thread allocates: the application's malloc
/// probes must not count the agent's own calls).
fn spawn_watcher(dir: PathBuf) {
    let ts = thread::current();
    // SAFETY: the calling thread's own state block.
    let was_busy = unsafe { (*ts).busy };
    // SAFETY: as above.
    unsafe { (*ts).busy = 1 };
    let _ = std::thread::Builder::new()
        .name("userbpf-agent".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            // SAFETY: this thread's own state block: it never runs programs.
            unsafe { (*thread::current()).busy = 1 };
            crate::watch::run(dir);
        });
    // SAFETY: as above.
    unsafe { (*ts).busy = was_busy };
}

extern "C" fn before_fork() {
    // SAFETY: a statically initialised mutex; held across fork so that no
    // reconcile (or hook patch) is half done in the child.
    unsafe { libc::pthread_mutex_lock(&raw mut LOCK) };
}

extern "C" fn after_fork_parent() {
    // SAFETY: taken in before_fork by this thread.
    unsafe { libc::pthread_mutex_unlock(&raw mut LOCK) };
}

extern "C" fn after_fork_child() {
    let ts = thread::current();
    // SAFETY: the calling thread's own state block: the agent's work here
    // (allocations included) must not run the application's probes.
    let was_busy = unsafe { (*ts).busy };
    // SAFETY: as above.
    unsafe { (*ts).busy = 1 };
    // SAFETY: AGENT is ours while LOCK is held (taken in before_fork).
    if let Some(agent) = unsafe { (*AGENT.0.get()).as_mut() } {
        agent.forget_parent_file();
    }
    // SAFETY: taken in before_fork; glibc's mutex has no owner check.
    unsafe { libc::pthread_mutex_unlock(&raw mut LOCK) };
    // The watcher thread did not survive the fork.
    if let Some(dir) = namespace_dir() {
        spawn_watcher(dir);
    }
    // SAFETY: as above.
    unsafe { (*ts).busy = was_busy };
}

/// Starts the agent in this process: first reconcile now, then the
/// watcher thread. Once started, a call reconciles at once (a loader that
/// attached to itself wants its hooks in place before attach returns).
pub fn start() {
    if STARTED.swap(true, Ordering::AcqRel) {
        if let Some(dir) = namespace_dir() {
            with_agent(|a| a.reconcile(&dir));
        }
        return;
    }
    let Some(dir) = namespace_dir() else {
        return;
    };
    crate::interpose::init();
    crate::grace::init();
    userbpf_runtime::helpers::safe_mem::install();
    crate::programs::helpers();
    // SAFETY: registers plain extern "C" functions.
    unsafe {
        libc::pthread_atfork(
            Some(before_fork),
            Some(after_fork_parent),
            Some(after_fork_child),
        )
    };
    with_agent(|a| a.reconcile(&dir));
    // SAFETY: registers a plain extern "C" function.
    unsafe { libc::atexit(at_exit) };
    spawn_watcher(dir);
}

unsafe extern "C" fn on_dl_debug_state(_regs: *mut crate::hook::PtRegs, _data: *mut libc::c_void) {
    crate::watch::notify_libraries_changed();
}

/// Hooks `_dl_debug_state`, the function the dynamic loader calls after
/// every change to the list of loaded objects (its debugger interface), so
/// that a library `dlopen`ed later gets its probes: the hook wakes the
/// watcher, which reconciles. (It cannot reconcile inside `dlopen`, which
/// holds the loader's lock.) The function is a lone `ret`, so this is a
/// trap site: a few microseconds per `dlopen`/`dlclose`. Installed (once)
/// by the first reconcile that finds a probe on a file not mapped yet;
/// called under the agent's lock, with the thread's probes suspended
/// (installing a hook allocates).
pub(crate) fn watch_the_dynamic_loader() {
    static DONE: AtomicBool = AtomicBool::new(false);
    if DONE.swap(true, Ordering::AcqRel) {
        return;
    }
    // SAFETY: dlsym with a constant, NUL-terminated name.
    let addr = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"_dl_debug_state".as_ptr()) };
    if addr.is_null() {
        return;
    }
    let opts = crate::hook::HookOptions {
        func_range: None,
        function_entry: true,
    };
    let handler = crate::hook::HookHandler::new(on_dl_debug_state, std::ptr::null_mut());
    // SAFETY: the dynamic loader's exported function entry; the handler is
    // async-signal-safe and has no data.
    if let Ok(hook) =
        unsafe { crate::hook::Hook::install_with(addr as usize, &opts, Some(handler)) }
    {
        // For the life of the process.
        std::mem::forget(hook);
    }
}

/// The agent's registry file goes with the process.
extern "C" fn at_exit() {
    let _ = std::panic::catch_unwind(|| with_agent(|a| a.remove_file()));
}

/// `void userbpf_agent_start(void)`: starts the agent, or makes a started
/// one reconcile now (for injection into a running process, and for a
/// libbpf.so.1 that attached to its own process; the constructor starts
/// it under LD_PRELOAD).
pub extern "C" fn userbpf_agent_start() {
    let _ = std::panic::catch_unwind(start);
}
crate::export_c_name!(userbpf_agent_start);

/// True when this code runs from libuserbpf_agent.so (not from a test
/// binary or another library that links the crate).
fn loaded_as_agent() -> bool {
    // SAFETY: dladdr on one of our own functions, into a local.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::dladdr(userbpf_agent_start as *const libc::c_void, &mut info) } == 0
        || info.dli_fname.is_null()
    {
        return false;
    }
    // SAFETY: dladdr returned a NUL-terminated name.
    let name = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) };
    name.to_bytes().ends_with(b"libuserbpf_agent.so")
}

extern "C" fn on_load() {
    if std::env::var_os("USERBPF_AGENT_DISABLE").is_some() || !loaded_as_agent() {
        return;
    }
    let _ = std::panic::catch_unwind(start);
}

#[used]
#[link_section = ".init_array"]
static ON_LOAD: extern "C" fn() = on_load;
