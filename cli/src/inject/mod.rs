//! `userbpf attach` and `userbpf detach`: loading the agent into a running
//! process (and stopping it there) with ptrace, without restarting it.
//!
//! One thread of the target is seized and stopped (`PTRACE_SEIZE` +
//! `PTRACE_INTERRUPT`); the others keep running, which the agent's hook
//! engine is made for (int3-first patching, membarrier). The thread is
//! chosen at a point where calling into the C library cannot deadlock on
//! a lock it holds itself: blocked in a system call that the kernel
//! restarts transparently (read, poll, nanosleep, futex...), or running
//! code outside the C library, the dynamic loader, the agent and
//! anonymous code (JIT, trampolines); elsewhere it is let go and tried
//! again a moment later. There it calls, one by one (`remote`):
//! `__errno_location` (errno is put back at the end), `mmap` (a 1 MiB
//! stack for what follows, so a thread with a small stack is safe), then
//! `dlopen(agent, RTLD_NOW | RTLD_GLOBAL)` (the agent's constructor
//! installs the hooks of links that exist already), `dlerror` on failure,
//! and the agent's `userbpf_agent_start` (which reconciles now) when the
//! agent was there already or its constructor did not start it (its
//! registry file, made by its first reconcile, tells); `munmap`. Then
//! every register goes back as it was and the thread is detached.
//! `userbpf detach` calls `userbpf_agent_stop` the same way.
//!
//! - [`procfs`]: maps, threads, credentials, environment.
//! - [`symbols`]: function addresses from mappings and ELF dynamic symbols.
//! - [`ptrace`]: the system calls, and waits with a deadline.
//! - [`remote`]: a stopped thread, calls in it, putting it back.
//! - [`memory`]: the target's memory.
//! - [`permission`]: why ptrace was refused.

mod error;
mod memory;
mod permission;
mod procfs;
mod ptrace;
mod remote;
mod symbols;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

pub use error::InjectError;
use procfs::{Mapping, ThreadInfo};
use remote::{SeizeError, Tracee};
use symbols::RemoteLib;

/// The agent's file name: the constructor only starts from a file of this
/// name, and this is how a loaded agent is recognised in a target.
pub const AGENT_FILE: &str = "libuserbpf_agent.so";
/// The stack the injected calls run on (mapped in the target, lazily
/// backed; the agent's own thread does the same work in 256 KiB).
const STACK_SIZE: u64 = 1 << 20;
const RTLD_NOW: u64 = 0x2;
const RTLD_GLOBAL: u64 = 0x100;
/// glibc's flag for `__libc_dlopen_mode` to behave as `dlopen`.
const RTLD_DLOPEN: u64 = 0x8000_0000;
/// Bytes below the stack pointer a function may use without moving it.
const RED_ZONE: u64 = 128;

/// With `USERBPF_ATTACH_DEBUG` set: a line on stderr per step, with the
/// CLOCK_MONOTONIC time (to compare with the target's clocks).
pub(crate) fn debug(what: std::fmt::Arguments) {
    if std::env::var_os("USERBPF_ATTACH_DEBUG").is_some() {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: writes one timespec into a local.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        eprintln!("userbpf: [{}.{:06}] {what}", ts.tv_sec, ts.tv_nsec / 1000);
    }
}

/// What to do in the target.
pub enum Action<'a> {
    /// Load the agent from this file (unless one is loaded) and start it.
    Attach(&'a Path),
    /// Stop the loaded agent.
    Detach,
}

/// What happened.
#[derive(Debug)]
pub struct Report {
    pub pid: i32,
    pub comm: String,
    /// The thread that made the calls, and what it was doing.
    pub tid: i32,
    pub thread_was: String,
    /// The agent's path as the target maps it.
    pub agent: String,
    /// `dlopen` loaded it now (else it was there already).
    pub loaded_now: bool,
    /// The namespace directory the agent uses (from its environment).
    pub namespace: Option<PathBuf>,
    /// From the thread's stop to its release, for the attempt that
    /// succeeded.
    pub stopped_for: Duration,
    /// Threads stopped and let go before one was at a safe point, or
    /// attempts the agent asked to retry.
    pub retries: u32,
}

fn is_libc(name: &str) -> bool {
    name.starts_with("libc.so") || name.starts_with("libc-2.") || name.starts_with("ld-musl-")
}

fn is_risky_code(m: &Mapping) -> bool {
    let n = m.file_name();
    m.exec
        && (m.inode == 0
            || is_libc(n)
            || n.starts_with("ld-linux")
            || n.starts_with("ld-2.")
            || n.starts_with("libpthread")
            || n.starts_with("libdl")
            || n == AGENT_FILE)
}

/// System calls that the kernel restarts transparently after a ptrace
/// stop (they return -ERESTART*): a thread blocked in one is the best
/// place to call from. (epoll_wait, sigtimedwait and a few others return
/// EINTR instead, which the application would see.)
const RESTARTABLE: &[(i64, &str)] = &[
    (0, "read"),
    (1, "write"),
    (7, "poll"),
    (17, "pread64"),
    (18, "pwrite64"),
    (19, "readv"),
    (20, "writev"),
    (23, "select"),
    (34, "pause"),
    (35, "nanosleep"),
    (43, "accept"),
    (45, "recvfrom"),
    (47, "recvmsg"),
    (61, "wait4"),
    (72, "fcntl"),
    (73, "flock"),
    (130, "rt_sigsuspend"),
    (202, "futex"),
    (230, "clock_nanosleep"),
    (247, "waitid"),
    (270, "pselect6"),
    (271, "ppoll"),
    (288, "accept4"),
    (219, "restart_syscall"),
];

fn syscall_name(nr: i64) -> String {
    const OTHERS: &[(i64, &str)] = &[
        (232, "epoll_wait"),
        (281, "epoll_pwait"),
        (128, "rt_sigtimedwait"),
    ];
    RESTARTABLE
        .iter()
        .chain(OTHERS)
        .find(|(n, _)| *n == nr)
        .map_or_else(|| format!("system call {nr}"), |(_, s)| s.to_string())
}

/// Threads in the order we try them: blocked in a restartable system
/// call without a timeout, then running, then blocked in a timed wait
/// (put back, it waits its whole timeout again:
/// `remote::restarts_through_restart_block`), then the rest; the main
/// thread first in each; threads in `avoid` (the agent was busy there)
/// last.
fn ranked(threads: Vec<ThreadInfo>, avoid: &[i32]) -> Vec<ThreadInfo> {
    let tier = |t: &ThreadInfo| {
        let restartable = t
            .syscall
            .is_some_and(|n| RESTARTABLE.iter().any(|&(r, _)| r == n));
        let base = match t.state {
            'S' if restartable && !t.timed_wait => 0,
            'R' => 1,
            'S' if restartable => 2,
            _ => 3,
        };
        // A thread with SIGSEGV blocked would have the kernel reset the
        // SIGSEGV action when the call returns to address 0.
        base + if t.segv_blocked { 4 } else { 0 } + if avoid.contains(&t.tid) { 8 } else { 0 }
    };
    let mut v: Vec<ThreadInfo> = threads
        .into_iter()
        .filter(|t| !matches!(t.state, 'Z' | 'X' | 'x'))
        .collect();
    v.sort_by_key(tier);
    v
}

const ERESTARTSYS: i64 = -512;
const ERESTART_RESTARTBLOCK: i64 = -516;

/// Can we call into the C library from where this thread stopped? Ok
/// with a description of where it was, or Err with why not.
fn safe_point(t: &Tracee, maps: &[Mapping]) -> Result<String, String> {
    let r = &t.saved;
    let rax = r.rax as i64;
    if t.in_syscall() && (ERESTART_RESTARTBLOCK..=ERESTARTSYS).contains(&rax) {
        // Blocked in a system call, interrupted by our stop: the kernel
        // restarts it once the registers are back.
        return Ok(format!("blocked in {}", syscall_name(r.orig_rax as i64)));
    }
    if let Some(m) = maps.iter().find(|m| m.contains(r.rip) && is_risky_code(m)) {
        let what = if m.inode == 0 {
            "anonymous code (JIT or hook trampolines)".to_string()
        } else {
            m.file_name().to_string()
        };
        return Err(format!("was running in {what} (may hold its locks)"));
    }
    Ok("running".into())
}

/// Stops one thread of `pid` at a safe point (see the module doc).
fn stop_at_safe_point<'w>(
    pid: i32,
    waiter: &'w ptrace::Waiter,
    maps: &[Mapping],
    deadline: Instant,
    timeout: Duration,
    retries: &mut u32,
    avoid: &[i32],
) -> Result<(Tracee<'w>, String), InjectError> {
    let mut last = String::from("no thread could be stopped");
    let mut round = 0u32;
    loop {
        let threads = procfs::threads(pid).map_err(|_| InjectError::Exited(pid))?;
        for th in ranked(threads, avoid) {
            if Instant::now() >= deadline {
                break;
            }
            match Tracee::seize(pid, th.tid, waiter, deadline) {
                Ok(t) => match safe_point(&t, maps) {
                    Ok(desc) => return Ok((t, desc)),
                    Err(why) => {
                        last = format!("thread {} ({}) {why}", th.tid, th.comm);
                        *retries += 1;
                        t.release()?;
                    }
                },
                Err(SeizeError::NotPermitted) => {
                    return Err(InjectError::NotPermitted {
                        pid,
                        why: permission::why_refused(pid),
                    })
                }
                Err(SeizeError::Gone) => {
                    if procfs::status(&pid.to_string()).is_none() {
                        return Err(InjectError::Exited(pid));
                    }
                }
                Err(SeizeError::Other(e)) => last = e.to_string(),
            }
        }
        if Instant::now() >= deadline {
            return Err(InjectError::NoSafePoint { pid, timeout, last });
        }
        round += 1;
        std::thread::sleep(Duration::from_micros((100u64 << round.min(6)).min(5000)));
    }
}

/// The functions we call in the target's C library.
struct Libc {
    lib: RemoteLib,
    dlopen: u64,
    /// `__libc_dlopen_mode` (glibc before 2.34 without libdl): flags.
    dlopen_flags: u64,
    dlerror: Option<u64>,
    mmap: u64,
    munmap: u64,
    errno_location: u64,
}

fn need(pid: i32, lib: &RemoteLib, name: &str) -> Result<u64, InjectError> {
    lib.address(name).ok_or_else(|| InjectError::Unsupported {
        pid,
        why: format!("{} exports no {name}", lib.path),
    })
}

fn find_libc(pid: i32, maps: &[Mapping]) -> Result<Libc, InjectError> {
    const NAMES: &[&str] = &[
        "dlopen",
        "dlerror",
        "__libc_dlopen_mode",
        "mmap",
        "munmap",
        "__errno_location",
    ];
    let lib =
        symbols::find_lib(pid, maps, is_libc, NAMES)?.ok_or_else(|| InjectError::Unsupported {
            pid,
            why: "no C library is mapped (a statically linked program has no dlopen to call)"
                .into(),
        })?;
    let mmap = need(pid, &lib, "mmap")?;
    let munmap = need(pid, &lib, "munmap")?;
    let errno_location = need(pid, &lib, "__errno_location")?;
    // glibc 2.34 and later, musl: dlopen is in the C library; before,
    // in libdl (if the program loaded it), else glibc's private one.
    let (dlopen, dlopen_flags, dlerror) = if let Some(d) = lib.address("dlopen") {
        (d, RTLD_NOW | RTLD_GLOBAL, lib.address("dlerror"))
    } else if let Some(dl) = symbols::find_lib(
        pid,
        maps,
        |n| n.starts_with("libdl"),
        &["dlopen", "dlerror"],
    )?
    .filter(|dl| dl.address("dlopen").is_some())
    {
        (
            need(pid, &dl, "dlopen")?,
            RTLD_NOW | RTLD_GLOBAL,
            dl.address("dlerror"),
        )
    } else if let Some(d) = lib.address("__libc_dlopen_mode") {
        (d, RTLD_NOW | RTLD_GLOBAL | RTLD_DLOPEN, None)
    } else {
        return Err(InjectError::Unsupported {
            pid,
            why: format!("{} has no dlopen", lib.path),
        });
    };
    Ok(Libc {
        lib,
        dlopen,
        dlopen_flags,
        dlerror,
        mmap,
        munmap,
        errno_location,
    })
}

/// The agent as mapped in the target, if it is.
fn find_agent(pid: i32, maps: &[Mapping]) -> Result<Option<RemoteLib>, InjectError> {
    symbols::find_lib(
        pid,
        maps,
        |n| n == AGENT_FILE,
        &["userbpf_agent_start", "userbpf_agent_stop"],
    )
}

/// Runs `action` in process `pid`, giving up after `timeout`.
pub fn run(pid: i32, action: Action, timeout: Duration) -> Result<Report, InjectError> {
    if pid <= 0 {
        return Err(InjectError::NoProcess(pid));
    }
    debug(format_args!("start"));
    let deadline = Instant::now() + timeout;
    let status = procfs::status(&pid.to_string()).ok_or(InjectError::NoProcess(pid))?;
    if matches!(status.state, 'Z' | 'X') {
        return Err(InjectError::Exited(pid));
    }
    if procfs::is_kernel_thread(pid) {
        return Err(InjectError::Unsupported {
            pid,
            why: "it is a kernel thread".into(),
        });
    }
    // The agent we would load, checked before the target is touched.
    let agent_file = match action {
        Action::Attach(path) => {
            let syms = symbols::read(path, &["userbpf_agent_start", "userbpf_agent_stop"])?;
            if !syms.values.contains_key("userbpf_agent_start") {
                return Err(InjectError::Elf {
                    what: path.display().to_string(),
                    msg: "not a userbpf agent (no userbpf_agent_start)".into(),
                });
            }
            Some((path, syms))
        }
        Action::Detach => None,
    };
    let namespace = procfs::namespace_dir(pid, status.uid[0]);
    let waiter = ptrace::Waiter::new()?;
    let mut retries = 0;
    let mut avoid = Vec::new();
    loop {
        let maps = procfs::maps(pid).map_err(|e| match e {
            InjectError::Io { ref source, .. }
                if matches!(source.raw_os_error(), Some(libc::EACCES | libc::EPERM)) =>
            {
                InjectError::NotPermitted {
                    pid,
                    why: permission::why_refused(pid),
                }
            }
            _ if procfs::status(&pid.to_string()).is_none() => InjectError::Exited(pid),
            e => e,
        })?;
        let libc = find_libc(pid, &maps)?;
        let agent = find_agent(pid, &maps)?;
        if agent.is_none() && agent_file.is_none() {
            return Err(InjectError::NoAgent(pid));
        }
        debug(format_args!("symbols read"));
        let (tracee, thread_was) =
            stop_at_safe_point(pid, &waiter, &maps, deadline, timeout, &mut retries, &avoid)?;
        debug(format_args!("thread {} stopped: {thread_was}", tracee.tid));
        let began = tracee.stopped_at;
        let tid = tracee.tid;
        match calls(
            tracee,
            &libc,
            agent,
            agent_file.as_ref(),
            namespace.as_deref(),
            deadline,
        )? {
            CallsDone::Retry => {
                retries += 1;
                avoid.push(tid);
                if Instant::now() >= deadline {
                    return Err(InjectError::NoSafePoint {
                        pid,
                        timeout,
                        last: "the agent was busy in every thread tried".into(),
                    });
                }
                std::thread::sleep(Duration::from_micros(500));
                continue;
            }
            CallsDone::Ok { agent, loaded_now } => {
                debug(format_args!("released"));
                return Ok(Report {
                    pid,
                    comm: status.name.clone(),
                    tid,
                    thread_was,
                    agent,
                    loaded_now,
                    namespace,
                    stopped_for: began.elapsed(),
                    retries,
                });
            }
        }
    }
}

enum CallsDone {
    Ok {
        agent: String,
        loaded_now: bool,
    },
    /// The agent's lock was held by the thread we used: another try.
    Retry,
}

/// The calls in the stopped thread; the thread is released (registers
/// and errno back, detached) on every path.
fn calls(
    mut t: Tracee,
    libc: &Libc,
    agent: Option<RemoteLib>,
    agent_file: Option<&(&Path, symbols::LibSymbols)>,
    namespace: Option<&Path>,
    deadline: Instant,
) -> Result<CallsDone, InjectError> {
    let pid = t.pid;
    // First calls on the thread's own stack, below its red zone.
    let sp0 = (t.saved.rsp - RED_ZONE - 256) & !15;
    let errno_at = t.call("__errno_location", libc.errno_location, &[], sp0, deadline)?;
    let errno = memory::read(pid, errno_at, 4)?;
    let stack = t.call(
        "mmap",
        libc.mmap,
        &[
            0,
            STACK_SIZE,
            (libc::PROT_READ | libc::PROT_WRITE) as u64,
            (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE) as u64,
            u64::MAX,
            0,
        ],
        sp0,
        deadline,
    )?;
    if stack as i64 == -1 || stack == 0 {
        let e = memory::read(pid, errno_at, 4)
            .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            .unwrap_or(0);
        memory::write(pid, errno_at, &errno)?;
        return Err(InjectError::CallFailed {
            pid,
            func: "mmap",
            msg: std::io::Error::from_raw_os_error(e).to_string(),
        });
    }
    let result = calls_on_stack(
        &mut t,
        libc,
        agent,
        agent_file,
        namespace,
        stack + STACK_SIZE,
        deadline,
    );
    // The stack goes, errno comes back, whatever happened (unless the
    // thread cannot run any more).
    if !matches!(
        result,
        Err(InjectError::Exited(_)) | Err(InjectError::Timeout(_))
    ) {
        t.call("munmap", libc.munmap, &[stack, STACK_SIZE], sp0, deadline)?;
        memory::write(pid, errno_at, &errno)?;
    }
    t.release()?;
    result
}

/// Did the agent's constructor start it (during our `dlopen`, which began
/// at `since`)? Its first reconcile creates its registry file.
fn started_by_constructor(namespace: Option<&Path>, pid: i32, since: SystemTime) -> bool {
    namespace
        .and_then(|ns| std::fs::metadata(ns.join(format!("agent-{pid}.reg"))).ok())
        .and_then(|m| m.modified().ok())
        .is_some_and(|t| t >= since)
}

fn calls_on_stack(
    t: &mut Tracee,
    libc: &Libc,
    agent: Option<RemoteLib>,
    agent_file: Option<&(&Path, symbols::LibSymbols)>,
    namespace: Option<&Path>,
    top: u64,
    deadline: Instant,
) -> Result<CallsDone, InjectError> {
    let pid = t.pid;
    let (agent, loaded_now) = match (agent, agent_file) {
        (Some(a), _) => (a, false),
        (None, Some((path, syms))) => {
            let mut name = path.as_os_str().as_encoded_bytes().to_vec();
            name.push(0);
            let at = (top - name.len() as u64 - 16) & !15;
            memory::write(pid, at, &name)?;
            // The file system's clock, a little early: the registry file
            // made during the call must not look older.
            let since = SystemTime::now() - Duration::from_millis(10);
            let handle = t.call(
                "dlopen",
                libc.dlopen,
                &[at, libc.dlopen_flags],
                at,
                deadline,
            )?;
            if handle == 0 {
                let msg = match libc.dlerror {
                    Some(f) => {
                        let s = t.call("dlerror", f, &[], at, deadline)?;
                        if s == 0 {
                            "no error text".to_string()
                        } else {
                            memory::read_c_string(pid, s, 4096)?
                        }
                    }
                    None => format!("no dlerror in {}", libc.lib.path),
                };
                return Err(InjectError::Dlopen {
                    pid,
                    path: path.display().to_string(),
                    msg,
                });
            }
            // Where it landed: the mapping of that very file.
            let maps = procfs::maps(pid)?;
            let same: Vec<&Mapping> = maps
                .iter()
                .filter(|m| m.inode == syms.inode && m.dev == syms.dev)
                .collect();
            let bias = syms.bias(&same).ok_or_else(|| InjectError::CallFailed {
                pid,
                func: "dlopen",
                msg: format!(
                    "returned a handle but {} is not in the process's map",
                    path.display()
                ),
            })?;
            let path_there = same.first().map(|m| m.path.clone()).unwrap_or_default();
            if started_by_constructor(namespace, pid, since) {
                // Its constructor reconciled inside dlopen, and its thread
                // follows the registry: a start now would only repeat it.
                return Ok(CallsDone::Ok {
                    agent: path_there,
                    loaded_now: true,
                });
            }
            (
                RemoteLib {
                    path: path_there,
                    syms: syms.clone(),
                    bias,
                },
                true,
            )
        }
        (None, None) => return Err(InjectError::NoAgent(pid)),
    };
    let sp = (top - 64) & !15;
    let (name, func) = if agent_file.is_some() {
        ("userbpf_agent_start", "userbpf_agent_start")
    } else {
        ("userbpf_agent_stop", "userbpf_agent_stop")
    };
    let addr = agent
        .address(func)
        .ok_or_else(|| InjectError::Unsupported {
            pid,
            why: format!(
                "the agent loaded there ({}) has no {func}: an older build; restart the process",
                agent.path
            ),
        })?;
    let rc = t.call(name, addr, &[], sp, deadline)? as u32 as i32;
    if rc == -libc::EAGAIN {
        return Ok(CallsDone::Retry);
    }
    if rc < 0 {
        return Err(InjectError::CallFailed {
            pid,
            func: name,
            msg: std::io::Error::from_raw_os_error(-rc).to_string(),
        });
    }
    Ok(CallsDone::Ok {
        agent: agent.path,
        loaded_now,
    })
}
