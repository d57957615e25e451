//! Starting and stopping the agent: the constructor of
//! libuserbpf_agent.so, the exported `userbpf_agent_start` and
//! `userbpf_agent_stop`, and fork.
//!
//! The first reconcile runs in the constructor, so the hooks of links that
//! exist already are in place before `main` (under `LD_PRELOAD`), or
//! before `dlopen` returns (`userbpf attach` injects a call of `dlopen`).
//! Threads of the agent never run programs: their `busy` word stays set,
//! so hooks they hit (malloc, say) are skipped as recursion.
//!
//! Stopping (`userbpf detach`) removes every hook, retires the watcher
//! thread and deletes the registry file; the library stays loaded, and a
//! later start brings everything back. The watcher runs while its
//! generation is the current one, so a stop followed by a start never
//! leaves two watchers.

use std::ffi::c_int;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Mutex, Once};

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

/// One-time set-up of the process (signal handlers, fork handlers, exit
/// handler): it survives stops.
static INIT: Once = Once::new();
/// The generation of the watcher that may run; 0 while stopped. Changed
/// with LOCK held.
static RUNNING: AtomicU64 = AtomicU64::new(0);
static GENERATIONS: AtomicU64 = AtomicU64::new(0);
/// The thread that holds LOCK (0: none). An injected call lands in an
/// arbitrary thread, maybe one stopped inside the agent with LOCK held:
/// the entry points refuse (EAGAIN) instead of deadlocking on it.
static OWNER: AtomicI32 = AtomicI32::new(0);

fn gettid() -> i32 {
    // SAFETY: plain syscall.
    unsafe { libc::gettid() }
}

/// Does the calling thread hold the agent's lock already?
fn lock_held_here() -> bool {
    OWNER.load(Ordering::Acquire) == gettid()
}

fn lock() {
    // SAFETY: a statically initialised mutex.
    unsafe { libc::pthread_mutex_lock(&raw mut LOCK) };
    OWNER.store(gettid(), Ordering::Release);
}

fn unlock() {
    OWNER.store(0, Ordering::Release);
    // SAFETY: held by this thread (lock above).
    unsafe { libc::pthread_mutex_unlock(&raw mut LOCK) };
}

/// Runs `f` on the agent's state, under the agent's lock, with the calling
/// thread's hooks suspended.
pub fn with_agent<R>(f: impl FnOnce(&mut Agent) -> R) -> R {
    let ts = thread::current();
    // SAFETY: the calling thread's own state block.
    let was_busy = unsafe { (*ts).busy };
    // SAFETY: as above; hooks this thread hits while we work are skipped.
    unsafe { (*ts).busy = 1 };
    lock();
    // SAFETY: AGENT is only touched with LOCK held.
    let agent = unsafe { (*AGENT.0.get()).get_or_insert_with(Agent::default) };
    let r = f(agent);
    unlock();
    // SAFETY: the calling thread's own state block.
    unsafe { (*ts).busy = was_busy };
    r
}

fn namespace_dir() -> Option<PathBuf> {
    userbpf_runtime::namespace::ensure_namespace_dir().ok()
}

/// Reconciles if `generation` is the running one (the watcher's loop);
/// false when the watcher should exit (the agent stopped, or restarted
/// with a new watcher).
pub(crate) fn reconcile_if_current(generation: u64, dir: &std::path::Path) -> bool {
    with_agent(|a| {
        let current = RUNNING.load(Ordering::Acquire) == generation;
        if current {
            a.reconcile(dir);
        }
        current
    })
}

/// The membarrier registrations are the watcher's to make.
static MEMBARRIER_LATER: AtomicBool = AtomicBool::new(false);

/// Is the calling thread the only one in the process?
fn alone() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse::<u32>().ok())
        })
        == Some(1)
}

/// Starts the watcher thread; the calling thread's hooks are suspended
/// meanwhile (creating a thread allocates: the application's malloc
/// probes must not count the agent's own calls).
fn spawn_watcher(dir: PathBuf, generation: u64) {
    let ts = thread::current();
    // SAFETY: the calling thread's own state block.
    let was_busy = unsafe { (*ts).busy };
    // SAFETY: as above.
    unsafe { (*ts).busy = 1 };
    let _ = std::thread::Builder::new()
        .name("userbpf-agent".into())
        // The watcher compiles programs: Cranelift's frames are deep in
        // debug builds (256 KiB overflowed). Untouched pages cost nothing.
        .stack_size(4 << 20)
        .spawn(move || {
            // SAFETY: this thread's own state block: it never runs programs.
            unsafe { (*thread::current()).busy = 1 };
            crate::syscall::sud::mark_agent_thread();
            if MEMBARRIER_LATER.load(Ordering::Acquire) {
                crate::grace::register_membarrier();
                crate::hook::register_membarrier();
            }
            crate::watch::run(dir, generation);
        });
    // SAFETY: as above.
    unsafe { (*ts).busy = was_busy };
}

extern "C" fn before_fork() {
    // Held across fork so that no reconcile (or hook patch) is half done
    // in the child.
    lock();
}

extern "C" fn after_fork_parent() {
    // Taken in before_fork by this thread.
    unlock();
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
    // Taken in before_fork (by the parent's thread, whose id this thread
    // no longer has); glibc's mutex has no owner check.
    unlock();
    // The watcher thread did not survive the fork.
    let generation = RUNNING.load(Ordering::Acquire);
    if generation != 0 {
        if let Some(dir) = namespace_dir() {
            spawn_watcher(dir, generation);
        }
    }
    // SAFETY: as above.
    unsafe { (*ts).busy = was_busy };
}

/// Starts the agent in this process: first reconcile now, then the
/// watcher thread. Once started, a call reconciles at once (a loader that
/// attached to itself wants its hooks in place before attach returns).
pub fn start() {
    let _ = try_start();
}

/// [`start`], with the reason it did nothing: `EAGAIN` when the calling
/// thread holds the agent's lock already (an injected call in a thread
/// stopped inside the agent: try another moment or thread), or the
/// errno of the namespace directory.
pub fn try_start() -> Result<(), i32> {
    if lock_held_here() {
        return Err(libc::EAGAIN);
    }
    let dir = userbpf_runtime::namespace::ensure_namespace_dir()
        .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    INIT.call_once(|| {
        crate::interpose::init();
        if alone() {
            crate::grace::init();
            crate::hook::register_membarrier();
        } else {
            // Registering for membarrier waits for an RCU grace period
            // (10 ms or more) once the process has other threads (an
            // agent injected by `userbpf attach`, or dlopened by a
            // loader): the watcher thread registers, and the first hooks
            // serialise through the hook engine's fallback meanwhile.
            MEMBARRIER_LATER.store(true, Ordering::Release);
            crate::grace::init_without_membarrier();
            crate::hook::defer_membarrier();
        }
        userbpf_runtime::helpers::safe_mem::install();
        crate::programs::helpers();
        crate::syscall::exec::init(agent_path().as_deref());
        // SAFETY: registers plain extern "C" functions.
        unsafe {
            libc::pthread_atfork(
                Some(before_fork),
                Some(after_fork_parent),
                Some(after_fork_child),
            );
            libc::atexit(at_exit);
        }
    });
    let exec_pending = crate::syscall::exec::take_pending();
    let generation = with_agent(|a| {
        a.reconcile(&dir);
        if RUNNING.load(Ordering::Acquire) != 0 {
            return None;
        }
        let g = GENERATIONS.fetch_add(1, Ordering::AcqRel) + 1;
        RUNNING.store(g, Ordering::Release);
        Some(g)
    });
    if let Some(nr) = exec_pending {
        // The exec that started this image returns here, as in the kernel.
        crate::syscall::dispatch::deliver_exec_exit(nr);
    }
    if let Some(g) = generation {
        spawn_watcher(dir, g);
    }
    Ok(())
}

/// Stops the agent: every hook removed (the code as it was), USDT
/// semaphores given back, the watcher told to exit, the registry file
/// deleted. The library stays loaded (code may still run in its
/// trampolines); [`start`] starts it again. `EAGAIN` as for
/// [`try_start`].
pub fn stop() -> Result<(), i32> {
    if lock_held_here() {
        return Err(libc::EAGAIN);
    }
    if !INIT.is_completed() {
        return Ok(());
    }
    with_agent(|a| {
        RUNNING.store(0, Ordering::Release);
        a.clear();
        a.remove_file();
        unwatch_the_dynamic_loader();
        // Under the lock: the watcher closes its eventfd only after it
        // took the lock and saw that it must exit.
        crate::watch::wake();
    });
    Ok(())
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
    let mut g = DL_HOOK.lock().unwrap_or_else(|e| e.into_inner());
    if g.0 {
        return;
    }
    g.0 = true;
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
        // Until the agent stops.
        g.1 = Some(hook);
    }
}

/// The `_dl_debug_state` hook: (tried, installed). Only touched with the
/// agent's lock held.
static DL_HOOK: Mutex<(bool, Option<crate::hook::Hook>)> = Mutex::new((false, None));

/// Removes the `_dl_debug_state` hook (the agent stops).
fn unwatch_the_dynamic_loader() {
    let mut g = DL_HOOK.lock().unwrap_or_else(|e| e.into_inner());
    g.0 = false;
    if let Some(hook) = g.1.take() {
        let _ = hook.remove();
    }
}

/// The agent's registry file goes with the process. The watcher stops
/// reconciling first: its next reconcile would make the file again. The
/// hooks stay (exit handlers may still hit probes).
extern "C" fn at_exit() {
    let _ = std::panic::catch_unwind(|| {
        with_agent(|a| {
            RUNNING.store(0, Ordering::Release);
            a.remove_file();
        })
    });
}

/// 0, or a negative errno (a panic is `-EFAULT`).
fn c_result(r: std::thread::Result<Result<(), i32>>) -> c_int {
    match r {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => -e,
        Err(_) => -libc::EFAULT,
    }
}

/// `int userbpf_agent_start(void)`: starts the agent, or makes a started
/// one reconcile now (for injection into a running process, and for a
/// libbpf.so.1 that attached to its own process; the constructor starts
/// it under LD_PRELOAD). 0, or a negative errno: `-EAGAIN` when called
/// in a thread that is inside the agent already. (Callers that declare
/// it `void` lose nothing.)
pub extern "C" fn userbpf_agent_start() -> c_int {
    c_result(std::panic::catch_unwind(try_start))
}
crate::export_c_name!(userbpf_agent_start);

/// `int userbpf_agent_stop(void)`: removes every hook the agent installed
/// and stops its thread (`userbpf detach`); the agent stays loaded, ready
/// for `userbpf_agent_start`. 0, or a negative errno (`-EAGAIN` as for
/// start). Safe from any thread of the process.
pub extern "C" fn userbpf_agent_stop() -> c_int {
    c_result(std::panic::catch_unwind(stop))
}
crate::export_c_name!(userbpf_agent_stop);

/// The file this code was loaded from.
fn agent_path() -> Option<std::ffi::CString> {
    // SAFETY: dladdr on one of our own functions, into a local.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::dladdr(userbpf_agent_start as *const libc::c_void, &mut info) } == 0
        || info.dli_fname.is_null()
    {
        return None;
    }
    // SAFETY: dladdr returned a NUL-terminated name.
    Some(unsafe { std::ffi::CStr::from_ptr(info.dli_fname) }.to_owned())
}

/// True when this code runs from libuserbpf_agent.so (not from a test
/// binary or another library that links the crate).
fn loaded_as_agent() -> bool {
    agent_path().is_some_and(|n| n.to_bytes().ends_with(b"libuserbpf_agent.so"))
}

extern "C" fn on_load() {
    if std::env::var_os("USERBPF_AGENT_DISABLE").is_some() || !loaded_as_agent() {
        return;
    }
    let _ = std::panic::catch_unwind(try_start);
}

#[used]
#[link_section = ".init_array"]
static ON_LOAD: extern "C" fn() = on_load;
