//! What `/proc` says about the target: its memory map, its threads and
//! their states, its credentials, its environment.

use std::path::{Path, PathBuf};

use super::error::InjectError;

/// One line of `/proc/PID/maps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub exec: bool,
    /// Offset in the mapped file.
    pub offset: u64,
    /// `makedev(major, minor)` as `st_dev`, and the inode; 0 if anonymous.
    pub dev: u64,
    pub inode: u64,
    /// The path, without a " (deleted)" suffix.
    pub path: String,
    pub deleted: bool,
}

impl Mapping {
    /// The file name (last path component).
    pub fn file_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or("")
    }

    pub fn contains(&self, addr: u64) -> bool {
        (self.start..self.end).contains(&addr)
    }
}

fn makedev(major: u64, minor: u64) -> u64 {
    // The glibc encoding of st_dev.
    ((major & 0xffff_f000) << 32)
        | ((major & 0xfff) << 8)
        | ((minor & 0xffff_ff00) << 12)
        | (minor & 0xff)
}

/// Parses the text of a maps file; lines that do not parse are skipped.
pub fn parse_maps(text: &str) -> Vec<Mapping> {
    let mut out = Vec::new();
    for line in text.lines() {
        // start-end perms offset dev inode [path]
        let mut rest = line;
        let mut field = || {
            let t = rest.trim_start();
            let end = t.find(' ').unwrap_or(t.len());
            let (f, r) = t.split_at(end);
            rest = r;
            f
        };
        let (range, perms, offset, dev, inode) = (field(), field(), field(), field(), field());
        let path = rest.trim_start();
        let Some((s, e)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end), Ok(offset), Ok(inode)) = (
            u64::from_str_radix(s, 16),
            u64::from_str_radix(e, 16),
            u64::from_str_radix(offset, 16),
            inode.parse::<u64>(),
        ) else {
            continue;
        };
        let Some((major, minor)) = dev.split_once(':') else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (
            u64::from_str_radix(major, 16),
            u64::from_str_radix(minor, 16),
        ) else {
            continue;
        };
        let (path, deleted) = match path.strip_suffix(" (deleted)") {
            Some(p) => (p, true),
            None => (path, false),
        };
        out.push(Mapping {
            start,
            end,
            exec: perms.as_bytes().get(2) == Some(&b'x'),
            offset,
            dev: makedev(major, minor),
            inode,
            path: path.to_string(),
            deleted,
        });
    }
    out
}

fn io_err(what: String) -> impl FnOnce(std::io::Error) -> InjectError {
    move |source| InjectError::Io { what, source }
}

/// The memory map of `pid`.
pub fn maps(pid: i32) -> Result<Vec<Mapping>, InjectError> {
    let path = format!("/proc/{pid}/maps");
    let text = std::fs::read_to_string(&path).map_err(io_err(format!("cannot read {path}")))?;
    Ok(parse_maps(&text))
}

/// A thread's scheduling state and what it is doing.
#[derive(Clone, Debug)]
pub struct ThreadInfo {
    pub tid: i32,
    /// The state letter of `/proc/PID/task/TID/stat` (R, S, D, T, t, Z...).
    pub state: char,
    /// The system call it is blocked in (`/proc/.../syscall`), if any.
    pub syscall: Option<i64>,
    /// That call is a wait with a timeout that the kernel resumes from
    /// the thread's restart block (nanosleep, clock_nanosleep relative,
    /// poll and futex with a timeout, restart_syscall).
    pub timed_wait: bool,
    pub comm: String,
    /// Is SIGSEGV blocked in this thread (`SigBlk`)?
    pub segv_blocked: bool,
}

/// The state letter of a `stat` line: the field after the `(comm)`.
fn stat_state(stat: &str) -> Option<char> {
    let after = &stat[stat.rfind(')')? + 1..];
    after.trim_start().chars().next()
}

/// The threads of `pid`, in `/proc` order (the main thread first).
pub fn threads(pid: i32) -> Result<Vec<ThreadInfo>, InjectError> {
    let dir = format!("/proc/{pid}/task");
    let rd = std::fs::read_dir(&dir).map_err(io_err(format!("cannot read {dir}")))?;
    let mut tids: Vec<i32> = rd
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    tids.sort_by_key(|&t| (t != pid, t));
    let mut out = Vec::new();
    for tid in tids {
        let base = format!("/proc/{pid}/task/{tid}");
        let Ok(stat) = std::fs::read_to_string(format!("{base}/stat")) else {
            continue; // gone meanwhile
        };
        let state = stat_state(&stat).unwrap_or('?');
        // "running", or "NR ARG1..ARG6 SP PC" (hex); unreadable without
        // ptrace access.
        let line = std::fs::read_to_string(format!("{base}/syscall")).unwrap_or_default();
        let mut fields = line.split_whitespace();
        let syscall = fields
            .next()
            .and_then(|n| n.parse::<i64>().ok())
            .filter(|&n| n >= 0);
        let args: Vec<u64> = fields
            .take(6)
            .map(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).unwrap_or(0))
            .collect();
        let timed_wait = syscall.is_some_and(|nr| timed_wait(nr, &args));
        let comm = std::fs::read_to_string(format!("{base}/comm"))
            .map(|s| s.trim_end().to_string())
            .unwrap_or_default();
        let segv_blocked = std::fs::read_to_string(format!("{base}/status"))
            .ok()
            .and_then(|s| {
                let v = s.lines().find_map(|l| l.strip_prefix("SigBlk:"))?;
                u64::from_str_radix(v.trim(), 16).ok()
            })
            .is_some_and(|m| m & (1 << (libc::SIGSEGV - 1)) != 0);
        out.push(ThreadInfo {
            tid,
            state,
            syscall,
            timed_wait,
            comm,
            segv_blocked,
        });
    }
    Ok(out)
}

/// Does system call `nr` with `args` resume through the restart block
/// after a stop (see [`ThreadInfo::timed_wait`])?
fn timed_wait(nr: i64, args: &[u64]) -> bool {
    let arg = |i: usize| args.get(i).copied().unwrap_or(0);
    const TIMER_ABSTIME: u64 = 1;
    match nr {
        35 | 219 => true,                   // nanosleep, restart_syscall
        230 => arg(1) & TIMER_ABSTIME == 0, // clock_nanosleep, relative
        7 => (arg(2) as u32 as i32) > 0,    // poll(fds, n, timeout_ms)
        202 => arg(3) != 0,                 // futex(.., timeout)
        _ => false,
    }
}

/// The parts of `/proc/PID/status` the permission check needs.
#[derive(Clone, Debug, Default)]
pub struct Status {
    pub name: String,
    /// Real, effective, saved, filesystem.
    pub uid: [u32; 4],
    pub gid: [u32; 4],
    pub tracer_pid: i32,
    pub state: char,
    pub cap_eff: u64,
    pub threads: u32,
}

fn ids(v: &str) -> [u32; 4] {
    let mut out = [0; 4];
    for (slot, f) in out.iter_mut().zip(v.split_whitespace()) {
        *slot = f.parse().unwrap_or(0);
    }
    out
}

/// `/proc/PID/status` (`self` for this process); None if there is no
/// such process.
pub fn status(pid: &str) -> Option<Status> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let mut s = Status::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        match k {
            "Name" => s.name = v.to_string(),
            "Uid" => s.uid = ids(v),
            "Gid" => s.gid = ids(v),
            "TracerPid" => s.tracer_pid = v.parse().unwrap_or(0),
            "State" => s.state = v.chars().next().unwrap_or('?'),
            "CapEff" => s.cap_eff = u64::from_str_radix(v, 16).unwrap_or(0),
            "Threads" => s.threads = v.parse().unwrap_or(0),
            _ => {}
        }
    }
    Some(s)
}

/// Is `pid` a kernel thread (`PF_KTHREAD` in the flags of its stat)?
pub fn is_kernel_thread(pid: i32) -> bool {
    const PF_KTHREAD: u64 = 0x0020_0000;
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some(close) = stat.rfind(')') else {
        return false;
    };
    // Fields after comm: state(3) ppid pgrp session tty_nr tpgid flags(9).
    stat[close + 1..]
        .split_whitespace()
        .nth(6)
        .and_then(|f| f.parse::<u64>().ok())
        .is_some_and(|f| f & PF_KTHREAD != 0)
}

/// The namespace directory the agent in `pid` uses: its environment at
/// start (`USERBPF_DIR`, `USERBPF_NAMESPACE`) and its real uid, as
/// `userbpf_runtime::namespace::namespace_dir` computes it there.
pub fn namespace_dir(pid: i32, uid: u32) -> Option<PathBuf> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let mut dir = None;
    let mut name = None;
    for var in env.split(|&b| b == 0) {
        let var = String::from_utf8_lossy(var);
        if let Some(v) = var.strip_prefix("USERBPF_DIR=") {
            dir = Some(v.to_string()).filter(|d| !d.is_empty());
        } else if let Some(v) = var.strip_prefix("USERBPF_NAMESPACE=") {
            name = Some(v.to_string());
        }
    }
    if let Some(d) = dir {
        return Some(PathBuf::from(d));
    }
    let name = name
        .filter(|n| !n.is_empty() && !n.contains('/') && n != "." && n != "..")
        .unwrap_or_else(|| "default".to_string());
    Some(Path::new(&format!("/dev/shm/userbpf-{uid}")).join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_maps_lines() {
        let m = parse_maps(
            "7f00a000-7f00b000 r-xp 00002000 fd:01 1234 /usr/lib/libc.so.6\n\
             7f00c000-7f00d000 rw-p 00000000 00:00 0 \n\
             7f00e000-7f00f000 r-xp 00000000 08:02 99 /tmp/a b (deleted)\n",
        );
        assert_eq!(m.len(), 3);
        assert!(m[0].exec);
        assert_eq!(m[0].offset, 0x2000);
        assert_eq!(m[0].dev, makedev(0xfd, 1));
        assert_eq!(m[0].file_name(), "libc.so.6");
        assert_eq!(m[1].path, "");
        assert!(!m[1].exec);
        assert_eq!(m[2].path, "/tmp/a b");
        assert!(m[2].deleted);
    }

    #[test]
    fn stat_state_skips_odd_names() {
        assert_eq!(stat_state("12 (a) b) S 1 2"), Some('S'));
    }
}
