//! `execve` keeps the agent: the dispatcher completes the new image's
//! environment with `LD_PRELOAD` (the agent first) and the `USERBPF_*`
//! variables this process started with, plus `USERBPF_EXEC_PENDING=<nr>`,
//! which tells the agent of the new image to deliver the exit of the
//! `execve` (`sys_exit_execve`, result 0) before `main`, as the kernel
//! does in the new image.
//!
//! The new environment array is built on the dispatcher's stack: a vfork
//! child (posix_spawn) shares its parent's memory, and a block that
//! outlived the call would leak in the parent once the child's `execve`
//! succeeds. Environments too big for that use an anonymous mapping. The
//! scratch values of the building are heap-allocated and freed before the
//! call (with the thread's `busy` set: the agent's own work); an exec made
//! by a signal handler that interrupted `malloc` (an unusual thing to do)
//! could deadlock on its lock.

use std::ffi::{CStr, CString};
use std::sync::OnceLock;

use userbpf_runtime::helpers::safe_mem;

/// The variable that carries a pending `execve` exit into the new image.
pub const PENDING_ENV: &str = "USERBPF_EXEC_PENDING";

/// What the new image must inherit: `LD_PRELOAD`'s agent entry and our
/// `USERBPF_*` variables ("NAME=value").
struct Inherit {
    agent: CString,
    vars: Vec<CString>,
}

static INHERIT: OnceLock<Option<Inherit>> = OnceLock::new();

/// Records what an `execve` must pass on; control path, at start-up.
pub fn init(agent_path: Option<&CStr>) {
    INHERIT.get_or_init(|| {
        let agent = agent_path?.to_owned();
        let vars = std::env::vars_os()
            .filter_map(|(k, v)| {
                let k = k.to_str()?;
                (k.starts_with("USERBPF_") && k != PENDING_ENV).then(|| {
                    let mut s = k.as_bytes().to_vec();
                    s.push(b'=');
                    s.extend_from_slice(std::os::unix::ffi::OsStrExt::as_bytes(v.as_os_str()));
                    CString::new(s).ok()
                })?
            })
            .collect();
        Some(Inherit { agent, vars })
    });
}

/// The pending `execve` exit of this image, taken out of the environment;
/// control path, before threads exist.
pub fn take_pending() -> Option<u64> {
    let v = std::env::var(PENDING_ENV).ok()?;
    // SAFETY: called from the agent's constructor path before the
    // application has threads (or under the agent's start, which the
    // application does not race with on its environment).
    unsafe { std::env::remove_var(PENDING_ENV) };
    v.parse().ok()
}

/// Is `nr` an exec?
#[inline(always)]
pub fn is_exec(nr: u64) -> bool {
    nr as i64 == libc::SYS_execve || nr as i64 == libc::SYS_execveat
}

const MAX_ENTRIES: usize = 256;
const STR_BYTES: usize = 2048;

/// Makes the exec `nr` with `args`, its environment completed; returns the
/// raw result (an exec that returns failed).
///
/// # Safety
/// `args` are the application's exec arguments.
#[inline(never)]
pub unsafe fn call(nr: u64, mut args: [u64; 6]) -> i64 {
    let env_arg = if nr as i64 == libc::SYS_execve { 2 } else { 3 };
    let mut slots = [0u64; MAX_ENTRIES];
    let mut strs = [0u8; STR_BYTES];
    let mut mapped: Option<(*mut libc::c_void, usize)> = None;
    // SAFETY: forwarded; the arrays outlive the call below.
    if let Some(envp) = unsafe { build(args[env_arg], nr, &mut slots, &mut strs, &mut mapped) } {
        args[env_arg] = envp;
    }
    // SAFETY: the application's exec with its own arguments, except an
    // environment that holds the same strings plus ours.
    let ret = unsafe { crate::syscall::gate::syscall6(nr, args) };
    if let Some((p, len)) = mapped {
        // SAFETY: our own mapping, unused now that the exec returned;
        // through the gate (not a hooked or trapped libc call).
        unsafe {
            crate::syscall::gate::syscall6(
                libc::SYS_munmap as u64,
                [p as u64, len as u64, 0, 0, 0, 0],
            )
        };
    }
    ret
}

/// Reads the application's `envp` (fault-safe) and writes the completed
/// array; None when nothing is to be added or `envp` can't be read (the
/// kernel then reports the fault itself).
///
/// # Safety
/// Reads application memory through the fault-recovering routines only.
unsafe fn build(
    envp: u64,
    nr: u64,
    slots: &mut [u64; MAX_ENTRIES],
    strs: &mut [u8; STR_BYTES],
    mapped: &mut Option<(*mut libc::c_void, usize)>,
) -> Option<u64> {
    let inherit = INHERIT.get()?.as_ref()?;
    // The application's entries.
    let mut old: Vec<u64> = Vec::new();
    let mut preload: Option<u64> = None;
    let mut have = vec![false; inherit.vars.len()];
    if envp != 0 {
        for i in 0..1 << 20 {
            let mut p = 0u64;
            // SAFETY: fault-recovering read of one pointer.
            unsafe {
                safe_mem::safe_read((&mut p as *mut u64).cast(), (envp + 8 * i) as *const u8, 8)
            }
            .ok()?;
            if p == 0 {
                break;
            }
            let mut head = [0u8; 64];
            // SAFETY: fault-recovering string read into a local.
            let n =
                unsafe { safe_mem::safe_read_str(head.as_mut_ptr(), p as *const u8, head.len()) }
                    .ok()?;
            let head = &head[..n.saturating_sub(1).min(head.len())];
            if head.starts_with(b"LD_PRELOAD=") {
                preload = Some(p);
                continue;
            }
            if head.starts_with(PENDING_ENV.as_bytes()) {
                continue;
            }
            for (j, v) in inherit.vars.iter().enumerate() {
                let name_len = v.as_bytes().iter().position(|&b| b == b'=').unwrap_or(0) + 1;
                if head.len() >= name_len && head[..name_len] == v.as_bytes()[..name_len] {
                    have[j] = true;
                }
            }
            old.push(p);
        }
    }
    // The LD_PRELOAD entry: ours first, then the application's list.
    let mut preload_value: Vec<u8> = b"LD_PRELOAD=".to_vec();
    preload_value.extend_from_slice(inherit.agent.as_bytes());
    if let Some(p) = preload {
        let mut buf = vec![0u8; 4096];
        // SAFETY: fault-recovering string read.
        let n =
            unsafe { safe_mem::safe_read_str(buf.as_mut_ptr(), p as *const u8, buf.len()) }.ok()?;
        let value = &buf[b"LD_PRELOAD=".len()..n.saturating_sub(1)];
        let has_agent = value
            .split(|&b| b == b':' || b == b' ')
            .any(|e| e == inherit.agent.as_bytes());
        if has_agent {
            preload_value = buf[..n.saturating_sub(1)].to_vec();
        } else if !value.is_empty() {
            preload_value.push(b':');
            preload_value.extend_from_slice(value);
        }
    }
    preload_value.push(0);
    let pending = format!("{PENDING_ENV}={nr}\0");
    let mut added: Vec<&[u8]> = vec![&preload_value, pending.as_bytes()];
    for (j, v) in inherit.vars.iter().enumerate() {
        if !have[j] {
            added.push(v.as_bytes_with_nul());
        }
    }
    let entries = old.len() + added.len() + 1;
    let str_len: usize = added.iter().map(|s| s.len()).sum();
    let (slot_ptr, str_ptr) = if entries <= MAX_ENTRIES && str_len <= STR_BYTES {
        (slots.as_mut_ptr(), strs.as_mut_ptr())
    } else {
        let len = (entries * 8 + str_len).next_multiple_of(4096);
        // SAFETY: a fresh anonymous mapping, through the gate (not a hooked
        // or trapped libc call).
        let r = unsafe {
            crate::syscall::gate::syscall6(
                libc::SYS_mmap as u64,
                [
                    0,
                    len as u64,
                    (libc::PROT_READ | libc::PROT_WRITE) as u64,
                    (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64,
                    u64::MAX,
                    0,
                ],
            )
        };
        if r < 0 {
            return None;
        }
        let p = r as *mut libc::c_void;
        *mapped = Some((p, len));
        // SAFETY: inside the mapping just made.
        (p.cast::<u64>(), unsafe { p.cast::<u8>().add(entries * 8) })
    };
    let mut at = 0usize;
    let mut k = 0usize;
    for s in &added {
        // SAFETY: `str_ptr` has room for `str_len` bytes (checked above);
        // `slot_ptr` for `entries` pointers.
        unsafe {
            core::ptr::copy_nonoverlapping(s.as_ptr(), str_ptr.add(at), s.len());
            *slot_ptr.add(k) = str_ptr.add(at) as u64;
        }
        at += s.len();
        k += 1;
    }
    for p in old {
        // SAFETY: as above.
        unsafe { *slot_ptr.add(k) = p };
        k += 1;
    }
    // SAFETY: as above; the terminating NULL.
    unsafe { *slot_ptr.add(k) = 0 };
    Some(slot_ptr as u64)
}
