//! Syscall tracepoints, raw tracepoints `sys_enter`/`sys_exit` and
//! ksyscalls of user-space programs: the attach entry points of
//! `kernel_attach_api` (`bpf_program__attach_tracepoint[_opts]`,
//! `bpf_program__attach_raw_tracepoint[_opts]`,
//! `bpf_program__attach_ksyscall`, and auto-attach through them) hand
//! user-space programs here first.
//!
//! The attach publishes one syscall LINK record
//! (`userbpf_libbpf_compat::attach::syscall`); the agents of target
//! processes intercept the syscalls and run the program with the kernel's
//! context layout. What the kernel would refuse is refused with its errno
//! and libbpf's messages: an unknown tracepoint or syscall is ENOENT, a
//! program of the wrong type EINVAL (tracepoint programs on tracepoints,
//! raw_tracepoint programs on raw tracepoints, kprobe programs on
//! ksyscalls).
//!
//! The links have no pid filter (record pid 0: every process with an
//! agent), as the kernel's tracepoints fire everywhere. The loader's own
//! syscalls are seen only if the loader already runs an agent (started by
//! `userbpf start`, or loaded for a uprobe on itself): libbpf.so.1 does not
//! load one just for syscall links.

use std::os::fd::BorrowedFd;

use userbpf_libbpf_compat::attach::errstr;
use userbpf_libbpf_compat::attach::syscall::{
    self as sc, SyscallLink, SyscallLinkSpec, SyscallTarget,
};
use userbpf_libbpf_compat::backend::userspace::program_by_fd;

use crate::error::AbiError;
use crate::link_api::LinkHandle;
use crate::object_api::{errno_err, ProgramHandle};
use crate::print;

/// A user-space program's namespace id, type and expected attach type;
/// `None` for kernel programs, unloaded ones and closed fds.
fn user_program(p: &ProgramHandle) -> Option<(u32, u32, u32)> {
    // SAFETY: F_GETFD only reads an fd's flags.
    if p.fd < 0 || unsafe { libc::fcntl(p.fd, libc::F_GETFD) } < 0 {
        return None;
    }
    // SAFETY: the fd is open (checked above) for this call.
    let fd = unsafe { BorrowedFd::borrow_raw(p.fd) };
    let prog = program_by_fd(fd)?;
    Some((
        prog.id,
        prog.image.prog_type,
        prog.image.expected_attach_type,
    ))
}

fn prog_name(p: &ProgramHandle) -> String {
    p.name.to_string_lossy().into_owned()
}

/// Makes this process's agent (if it has one: a loader is not given one
/// for syscall links, whose own syscalls are not traced) act on the change
/// now, and waits until every other live agent reports it, as the kernel's
/// tracepoints take effect before attach returns.
fn settle(link_id: u32, pid: u32, attached: bool) {
    if pid == 0 || pid == std::process::id() {
        // SAFETY: dlsym with a constant, NUL-terminated name.
        let sym = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"userbpf_agent_start".as_ptr()) };
        if !sym.is_null() {
            // SAFETY: the agent's `void userbpf_agent_start(void)`.
            let start = unsafe { std::mem::transmute::<*mut libc::c_void, extern "C" fn()>(sym) };
            start();
        }
    }
    crate::local_agent::wait_for_agents(link_id, pid, attached, |_| true);
}

/// Publishes a syscall link for `p` and wraps it in a `struct bpf_link`.
fn publish(
    p: &ProgramHandle,
    prog_id: u32,
    target: SyscallTarget,
    cookie: u64,
    path: String,
) -> Result<*mut LinkHandle, i32> {
    let spec = SyscallLinkSpec {
        prog_id,
        prog_name: prog_name(p),
        pid: 0,
        cookie,
        target,
        path,
    };
    let link = SyscallLink::publish(&spec).map_err(|e| e.errno())?;
    let (id, fd, records) = link.into_parts();
    let pid = spec.pid;
    settle(id, pid, true);
    Ok(LinkHandle::into_raw(
        fd,
        Box::new(move || {
            records.detach();
            settle(id, pid, false);
            Ok(())
        }),
    ))
}

/// `bpf_program__attach_tracepoint_opts` for a user-space program on a
/// `syscalls` or `raw_syscalls` tracepoint; `None` when `p` is not a
/// user-space program or the category is another one (the kernel path
/// then applies, with its refusal).
pub(crate) fn attach_tracepoint(
    p: &ProgramHandle,
    category: &str,
    tp: &str,
    cookie: u64,
) -> Option<Result<*mut LinkHandle, AbiError>> {
    if !sc::is_syscall_category(category) {
        return None;
    }
    let (prog_id, prog_type, expected) = user_program(p)?;
    let name = prog_name(p);
    Some((|| {
        // libbpf's perf_event_open_tracepoint: the event must exist.
        let target = sc::resolve_tracepoint(category, tp).map_err(|e| {
            let err = errstr(-e.errno());
            print::warn(&format!(
                "failed to determine tracepoint '{category}/{tp}' perf event ID: {err}\n"
            ));
            print::warn(&format!(
                "prog '{name}': failed to create tracepoint '{category}/{tp}' perf event: {err}\n"
            ));
            errno_err(e.errno())
        })?;
        let failed = |e: i32| {
            print::warn(&format!(
                "prog '{name}': failed to attach to tracepoint '{category}/{tp}': {}\n",
                errstr(-e)
            ));
            errno_err(e)
        };
        perf_link_accepts(p, &name, &target, prog_type, expected).map_err(failed)?;
        publish(p, prog_id, target, cookie, format!("{category}/{tp}")).map_err(failed)
    })())
}

/// The kernel's program type check at BPF_LINK_CREATE on a perf event
/// (tracepoint, kprobe), with libbpf's message; the errno otherwise.
fn perf_link_accepts(
    p: &ProgramHandle,
    name: &str,
    target: &SyscallTarget,
    prog_type: u32,
    expected: u32,
) -> Result<(), i32> {
    sc::check_prog_type(target.ctx, prog_type, expected).map_err(|e| {
        print::warn(&format!(
            "prog '{name}': failed to create BPF link for perf_event FD {}: {}\n",
            p.fd,
            errstr(-e.errno())
        ));
        e.errno()
    })
}

/// `bpf_program__attach_raw_tracepoint_opts` for a user-space program on
/// `sys_enter` / `sys_exit`; `None` otherwise.
pub(crate) fn attach_raw_tracepoint(
    p: &ProgramHandle,
    tp: Option<&str>,
    cookie: u64,
) -> Option<Result<*mut LinkHandle, AbiError>> {
    let tp = tp.filter(|t| sc::is_syscall_raw_tracepoint(t))?;
    let (prog_id, prog_type, expected) = user_program(p)?;
    let name = prog_name(p);
    Some((|| {
        let failed = |e: i32| {
            print::warn(&format!(
                "prog '{name}': failed to attach to raw tracepoint '{tp}': {}\n",
                errstr(-e)
            ));
            errno_err(e)
        };
        let target = sc::resolve_raw_tracepoint(tp).map_err(|e| failed(e.errno()))?;
        // BPF_RAW_TRACEPOINT_OPEN checks the program type first.
        sc::check_prog_type(target.ctx, prog_type, expected).map_err(|e| failed(e.errno()))?;
        publish(p, prog_id, target, cookie, format!("raw_tp/{tp}")).map_err(failed)
    })())
}

/// `bpf_program__attach_ksyscall` for a user-space program; `None` for
/// kernel programs.
pub(crate) fn attach_ksyscall(
    p: &ProgramHandle,
    syscall: &str,
    cookie: u64,
    retprobe: bool,
) -> Option<Result<*mut LinkHandle, AbiError>> {
    let (prog_id, prog_type, expected) = user_program(p)?;
    let name = prog_name(p);
    // What libbpf would kprobe (LINUX_HAS_SYSCALL_WRAPPER is true for
    // user-space programs), for its messages.
    let func = format!("__x64_sys_{syscall}");
    let what = if retprobe { "kretprobe" } else { "kprobe" };
    Some((|| {
        let target = sc::resolve_ksyscall(syscall, retprobe).map_err(|e| {
            print::warn(&format!(
                "prog '{name}': failed to create {what} '{func}+0x0' perf event: {}\n",
                errstr(-e.errno())
            ));
            errno_err(e.errno())
        })?;
        let failed = |e: i32| {
            print::warn(&format!(
                "prog '{name}': failed to attach to {what} '{func}+0x0': {}\n",
                errstr(-e)
            ));
            errno_err(e)
        };
        perf_link_accepts(p, &name, &target, prog_type, expected).map_err(failed)?;
        let shown = if retprobe { "kretsyscall" } else { "ksyscall" };
        publish(p, prog_id, target, cookie, format!("{shown}/{syscall}")).map_err(failed)
    })())
}
