//! CPU numbers: the possible CPUs (the width of per-CPU values) and the CPU
//! the calling thread runs on.
//!
//! The current CPU comes from the thread's rseq area, which glibc 2.35 and
//! later register for every thread: one load (about 0.3 ns) against 2.7 ns
//! for `sched_getcpu`. A thread can be preempted right after reading it, so
//! per-CPU slots are only "mostly private" in user space: writers that must
//! be exact use atomic instructions (see `docs/ARCHITECTURE.md`).

use std::sync::OnceLock;

/// Number of possible CPUs, parsed once from
/// `/sys/devices/system/cpu/possible` (as libbpf does), at least 1.
pub fn possible_cpus() -> u32 {
    static POSSIBLE: OnceLock<u32> = OnceLock::new();
    *POSSIBLE.get_or_init(|| {
        std::fs::read_to_string("/sys/devices/system/cpu/possible")
            .ok()
            .and_then(|s| parse_cpu_list(&s))
            .unwrap_or_else(|| {
                // SAFETY: sysconf has no memory-safety preconditions.
                let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) };
                n.max(1) as u32
            })
    })
}

/// Parses a kernel CPU list such as `0-3,8-11` into "highest + 1".
pub fn parse_cpu_list(text: &str) -> Option<u32> {
    let mut max: Option<u32> = None;
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let last = match part.split_once('-') {
            Some((lo, hi)) => {
                let lo: u32 = lo.trim().parse().ok()?;
                let hi: u32 = hi.trim().parse().ok()?;
                if hi < lo {
                    return None;
                }
                hi
            }
            None => part.trim().parse().ok()?,
        };
        max = Some(max.map_or(last, |m| m.max(last)));
    }
    max.map(|m| m + 1)
}

extern "C" {
    /// glibc (2.35+): offset of the thread's `struct rseq` from the thread
    /// pointer; 0 size in `__rseq_size` when rseq is not registered.
    static __rseq_offset: isize;
    static __rseq_size: u32;
}

/// Address of the calling thread's rseq `cpu_id` (the kernel keeps it
/// current), or `None` when glibc registered no rseq area. JIT code reads
/// the CPU through it without a call.
#[inline]
pub fn current_cpu_ptr() -> Option<*const u32> {
    // SAFETY: set by glibc before user code runs, never changed.
    let (offset, size) = unsafe { (__rseq_offset, __rseq_size) };
    if size == 0 {
        return None;
    }
    let tp: usize;
    // SAFETY: reads %fs:0, the thread pointer (see current_cpu).
    unsafe {
        std::arch::asm!("mov {}, fs:0", out(reg) tp, options(nostack, readonly, preserves_flags))
    };
    Some((tp as isize + offset + 4) as *const u32)
}

/// The CPU the calling thread is running on, always `< possible_cpus()`.
#[inline]
pub fn current_cpu() -> u32 {
    // SAFETY: both statics are set by glibc before any user code runs and
    // never change afterwards.
    let (offset, size) = unsafe { (__rseq_offset, __rseq_size) };
    if size != 0 {
        let tp: usize;
        // SAFETY: reads %fs:0, the thread pointer, which x86-64 glibc keeps
        // pointing at itself (the TCB header).
        unsafe {
            std::arch::asm!("mov {}, fs:0", out(reg) tp, options(nostack, readonly, preserves_flags))
        };
        // struct rseq { u32 cpu_id_start; u32 cpu_id; ... }: cpu_id is at 4.
        let cpu_id = (tp as isize + offset + 4) as *const u32;
        // SAFETY: the kernel keeps the registered rseq area of this thread
        // mapped for the thread's life; a volatile read sees its updates.
        let cpu = unsafe { std::ptr::read_volatile(cpu_id) };
        // cpu_id is negative (RSEQ_CPU_ID_UNINITIALIZED) before the first
        // return to user space after registration.
        if (cpu as i32) >= 0 {
            return cpu.min(possible_cpus() - 1);
        }
    }
    // SAFETY: sched_getcpu has no preconditions.
    let cpu = unsafe { libc::sched_getcpu() };
    (cpu.max(0) as u32).min(possible_cpus() - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0\n"), Some(1));
        assert_eq!(parse_cpu_list("0-1\n"), Some(2));
        assert_eq!(parse_cpu_list("0-3,8-11"), Some(12));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("x"), None);
    }

    #[test]
    fn current_cpu_agrees_with_sched_getcpu() {
        assert!(possible_cpus() >= 1);
        // A migration between the two reads is possible but rare; retry.
        let agreed = (0..1000).any(|_| {
            let a = current_cpu();
            // SAFETY: no preconditions.
            let b = unsafe { libc::sched_getcpu() } as u32;
            a == b
        });
        assert!(agreed);
    }
}
