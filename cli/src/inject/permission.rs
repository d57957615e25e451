//! Why the kernel refused to let us trace a process: the checks of
//! `ptrace_may_access` and Yama, in the order the kernel makes them,
//! answered from `/proc`.

use std::os::unix::fs::MetadataExt;

use super::procfs;

const CAP_SYS_PTRACE: u32 = 19;

fn yama_scope() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A sentence saying why tracing `pid` is refused.
pub fn why_refused(pid: i32) -> String {
    if pid == std::process::id() as i32 {
        return "that is this very process".into();
    }
    if procfs::is_kernel_thread(pid) {
        return "it is a kernel thread".into();
    }
    let Some(target) = procfs::status(&pid.to_string()) else {
        return "the process is gone".into();
    };
    if target.tracer_pid != 0 {
        let who = procfs::status(&target.tracer_pid.to_string())
            .map(|s| s.name)
            .unwrap_or_else(|| "?".into());
        return format!(
            "it is already traced by process {} ({who}): a debugger or strace; only one \
             tracer at a time",
            target.tracer_pid
        );
    }
    let me = procfs::status("self").unwrap_or_default();
    let cap = me.cap_eff & (1 << CAP_SYS_PTRACE) != 0;
    let hint = "run as the same user, or as root (CAP_SYS_PTRACE)";
    if !cap {
        // ptrace checks our real ids against the target's real,
        // effective and saved ones.
        let (ruid, rgid) = (me.uid[0], me.gid[0]);
        if target.uid[..3].iter().any(|&u| u != ruid) {
            return format!(
                "it runs as uid {} (effective {}, saved {}) and you are uid {ruid}, without \
                 CAP_SYS_PTRACE: {hint}",
                target.uid[0], target.uid[1], target.uid[2]
            );
        }
        if target.gid[..3].iter().any(|&g| g != rgid) {
            return format!(
                "it runs as gid {} (effective {}, saved {}) and you are gid {rgid} (a setgid \
                 program?), without CAP_SYS_PTRACE: {hint}",
                target.gid[0], target.gid[1], target.gid[2]
            );
        }
        // The files of a process that is not dumpable (not its
        // directory) are owned by root.
        let owner = std::fs::metadata(format!("/proc/{pid}/mem")).map(|m| m.uid());
        if let Ok(owner) = owner {
            if owner != target.uid[1] {
                return format!(
                    "it is not dumpable (it called prctl(PR_SET_DUMPABLE, 0), or it is a \
                     setuid, setgid or file-capability program): only CAP_SYS_PTRACE may \
                     trace it, {hint}"
                );
            }
        }
    }
    match yama_scope() {
        Some(1) if !cap => {
            return "Yama's kernel.yama.ptrace_scope is 1: only an ancestor may trace a \
                    process (or one it named with prctl(PR_SET_PTRACER)); run as root, or \
                    `sysctl kernel.yama.ptrace_scope=0`"
                .into()
        }
        Some(2) if !cap => {
            return "Yama's kernel.yama.ptrace_scope is 2: only CAP_SYS_PTRACE may trace \
                    (run as root)"
                .into()
        }
        Some(3) => {
            return "Yama's kernel.yama.ptrace_scope is 3: ptrace is disabled until reboot".into()
        }
        _ => {}
    }
    if !cap && me.uid[0] != 0 {
        return format!("the kernel refused it (EPERM); {hint}");
    }
    "the kernel refused it (EPERM) although we have CAP_SYS_PTRACE: a security module \
     (SELinux, AppArmor), a seccomp policy, or a user namespace that does not own the \
     target"
        .into()
}
