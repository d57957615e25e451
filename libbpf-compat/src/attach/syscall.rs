//! Syscall links as the registry publishes them: syscall tracepoints
//! (`syscalls/sys_enter_X`, `sys_exit_X`, `raw_syscalls/sys_enter|sys_exit`),
//! raw tracepoints `sys_enter|sys_exit`, `ksyscall/X` and `kretsyscall/X`
//! served in user space by the agents of target processes.
//!
//! One LINK record per link (encoding: `userbpf_runtime::syscalls`):
//! `type_` = `SyscallEnter` / `SyscallExit`, `offset` = the syscall number
//! or `ALL_SYSCALLS`, `ref_ctr_offset` = the context layout
//! (`SyscallCtx::to_bits`), `path` = what `userbpf list` shows. Dropping
//! the [`SyscallLink`] (or its [`LinkRecords`]) removes the record.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use thiserror::Error;
use userbpf_runtime::ids::{next_id, IdKind};
use userbpf_runtime::registry::{self, kind, AttachKind, RecordData};
use userbpf_runtime::syscalls::{self, SyscallCtx, ALL_SYSCALLS};
pub use userbpf_runtime::syscalls::{decode_link, SyscallLinkRecord};

use crate::attach::link::{link_fd, LinkError, LinkRecords};
use crate::object::{AttachType, ProgType};

/// A syscall attach point named by a section (syntax only: whether the
/// syscall exists is decided at attach time, as libbpf does).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyscallSection {
    /// `tp/`, `tracepoint/` (and `.s`): `syscalls/sys_{enter,exit}_*` or
    /// `raw_syscalls/sys_{enter,exit}`.
    Tracepoint { category: String, event: String },
    /// `raw_tp/`, `raw_tracepoint/` (and `.w`, `.s`): `sys_enter`, `sys_exit`.
    RawTracepoint { exit: bool },
    /// `ksyscall[/X]`, `kretsyscall[/X]` (`name` `None` for the bare
    /// sections, attached by hand).
    Ksyscall { name: Option<String>, ret: bool },
}

/// The syscall attach point a section names, if any.
pub fn parse_section(sec: &str) -> Option<SyscallSection> {
    for pfx in ["tp/", "tracepoint/", "tp.s/", "tracepoint.s/"] {
        if let Some(rest) = sec.strip_prefix(pfx) {
            let (category, event) = rest.split_once('/')?;
            let ok = match category {
                "syscalls" => event.starts_with("sys_enter_") || event.starts_with("sys_exit_"),
                "raw_syscalls" => event == "sys_enter" || event == "sys_exit",
                _ => false,
            };
            return ok.then(|| SyscallSection::Tracepoint {
                category: category.into(),
                event: event.into(),
            });
        }
    }
    for pfx in [
        "raw_tp/",
        "raw_tracepoint/",
        "raw_tp.w/",
        "raw_tracepoint.w/",
        "raw_tp.s/",
        "raw_tracepoint.s/",
    ] {
        if let Some(tp) = sec.strip_prefix(pfx) {
            return match tp {
                "sys_enter" => Some(SyscallSection::RawTracepoint { exit: false }),
                "sys_exit" => Some(SyscallSection::RawTracepoint { exit: true }),
                _ => None,
            };
        }
    }
    for (pfx, ret) in [("ksyscall", false), ("kretsyscall", true)] {
        if let Some(rest) = sec.strip_prefix(pfx) {
            if rest.is_empty() {
                return Some(SyscallSection::Ksyscall { name: None, ret });
            }
            if let Some(name) = rest.strip_prefix('/') {
                return Some(SyscallSection::Ksyscall {
                    name: Some(name.into()),
                    ret,
                });
            }
        }
    }
    None
}

/// Whether a tracepoint category is served by syscall links for
/// user-space programs.
pub fn is_syscall_category(category: &str) -> bool {
    matches!(category, "syscalls" | "raw_syscalls")
}

/// Whether a raw tracepoint name is served by syscall links.
pub fn is_syscall_raw_tracepoint(name: &str) -> bool {
    matches!(name, "sys_enter" | "sys_exit")
}

/// A resolved syscall attach point: what one record says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyscallTarget {
    /// `SyscallEnter` or `SyscallExit`.
    pub kind: AttachKind,
    /// The syscall number, or [`ALL_SYSCALLS`].
    pub nr: u64,
    pub ctx: SyscallCtx,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SyscallTargetError {
    /// No such tracepoint (the kernel's ENOENT).
    #[error("no such tracepoint")]
    NoTracepoint,
    /// No such syscall (ksyscall: no `__x64_sys_X` to probe; ENOENT).
    #[error("no such syscall")]
    NoSyscall,
    /// The program type does not fit the attach point (EINVAL).
    #[error("program type {0} cannot attach here")]
    ProgType(u32),
}

impl SyscallTargetError {
    pub fn errno(&self) -> i32 {
        match self {
            SyscallTargetError::NoTracepoint | SyscallTargetError::NoSyscall => libc::ENOENT,
            SyscallTargetError::ProgType(_) => libc::EINVAL,
        }
    }
}

fn kind_of(exit: bool) -> AttachKind {
    if exit {
        AttachKind::SyscallExit
    } else {
        AttachKind::SyscallEnter
    }
}

/// `syscalls/<event>` or `raw_syscalls/<event>`, with the layout tracefs
/// gives when readable (else our table).
pub fn resolve_tracepoint(
    category: &str,
    event: &str,
) -> Result<SyscallTarget, SyscallTargetError> {
    let ev = syscalls::parse_tracepoint(category, event).ok_or(SyscallTargetError::NoTracepoint)?;
    let ctx = syscalls::layout(category, event).ok_or(SyscallTargetError::NoTracepoint)?;
    Ok(SyscallTarget {
        kind: kind_of(ev.exit),
        nr: ev.nr.map_or(ALL_SYSCALLS, u64::from),
        ctx,
    })
}

/// Raw tracepoint `sys_enter` / `sys_exit`.
pub fn resolve_raw_tracepoint(name: &str) -> Result<SyscallTarget, SyscallTargetError> {
    let exit = match name {
        "sys_enter" => false,
        "sys_exit" => true,
        _ => return Err(SyscallTargetError::NoTracepoint),
    };
    Ok(SyscallTarget {
        kind: kind_of(exit),
        nr: ALL_SYSCALLS,
        ctx: SyscallCtx::raw_tracepoint(exit),
    })
}

/// `ksyscall/<name>` (entry) or `kretsyscall/<name>` (`ret`); `name` as
/// in `__x64_sys_<name>` (`openat`, `newfstatat`).
pub fn resolve_ksyscall(name: &str, ret: bool) -> Result<SyscallTarget, SyscallTargetError> {
    let nr = syscalls::nr_by_name(name).ok_or(SyscallTargetError::NoSyscall)?;
    Ok(SyscallTarget {
        kind: kind_of(ret),
        nr: u64::from(nr),
        ctx: if ret {
            SyscallCtx::kretsyscall()
        } else {
            SyscallCtx::ksyscall()
        },
    })
}

/// The kernel's program-type check for the attach point: tracepoint
/// programs on tracepoint perf events, raw_tracepoint (or writable) on raw
/// tracepoints, kprobe programs (not multi/session) on kprobe perf events.
pub fn check_prog_type(
    ctx: SyscallCtx,
    prog_type: u32,
    expected_attach_type: u32,
) -> Result<(), SyscallTargetError> {
    use userbpf_runtime::syscalls::SyscallCtxKind as K;
    let t = ProgType(prog_type);
    let ok = match ctx.kind {
        K::Tracepoint | K::RawSyscalls => t == ProgType::TRACEPOINT,
        K::RawTracepoint => t == ProgType::RAW_TRACEPOINT || t == ProgType::RAW_TRACEPOINT_WRITABLE,
        K::Ksyscall | K::Kretsyscall => {
            t == ProgType::KPROBE
                && ![
                    AttachType::TRACE_KPROBE_MULTI,
                    AttachType::TRACE_UPROBE_MULTI,
                    AttachType::TRACE_KPROBE_SESSION,
                    AttachType::TRACE_UPROBE_SESSION,
                ]
                .contains(&AttachType(expected_attach_type))
        }
    };
    if ok {
        Ok(())
    } else {
        Err(SyscallTargetError::ProgType(prog_type))
    }
}

/// What to publish.
#[derive(Clone, Debug)]
pub struct SyscallLinkSpec {
    pub prog_id: u32,
    pub prog_name: String,
    /// Only this process; 0 for every process.
    pub pid: u32,
    pub cookie: u64,
    pub target: SyscallTarget,
    /// Shown by `userbpf list`: `syscalls/sys_enter_openat`,
    /// `raw_tp/sys_enter`, `ksyscall/openat`, ...
    pub path: String,
}

/// A published syscall link. Dropping it detaches.
#[derive(Debug)]
pub struct SyscallLink {
    id: u32,
    fd: OwnedFd,
    records: LinkRecords,
}

impl SyscallLink {
    /// Publishes `spec` under a new link id.
    pub fn publish(spec: &SyscallLinkSpec) -> Result<SyscallLink, LinkError> {
        let fd = link_fd(&spec.prog_name)?;
        let id = next_id(IdKind::Link);
        let mut d = RecordData::zeroed();
        d.kind = kind::LINK;
        d.id = id;
        d.fd = fd.as_raw_fd();
        d.type_ = spec.target.kind as u32;
        d.set_name(&spec.prog_name);
        d.prog_id = spec.prog_id;
        d.pid = spec.pid;
        d.offset = spec.target.nr;
        d.cookie = spec.cookie;
        d.ref_ctr_offset = spec.target.ctx.to_bits();
        d.set_path(&spec.path)?;
        let reg = registry::publish(&d)?;
        Ok(SyscallLink {
            id,
            fd,
            records: LinkRecords::new(vec![reg]),
        })
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }

    /// Splits the link into its id, fd and records (see
    /// [`crate::attach::link::UprobeLink::into_parts`]).
    pub fn into_parts(self) -> (u32, OwnedFd, LinkRecords) {
        (self.id, self.fd, self.records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use userbpf_runtime::syscalls::SyscallCtxKind;

    #[test]
    fn sections() {
        let tp = |c: &str, e: &str| {
            Some(SyscallSection::Tracepoint {
                category: c.into(),
                event: e.into(),
            })
        };
        assert_eq!(
            parse_section("tracepoint/syscalls/sys_enter_openat"),
            tp("syscalls", "sys_enter_openat")
        );
        assert_eq!(
            parse_section("tp/syscalls/sys_exit_nope"),
            tp("syscalls", "sys_exit_nope")
        );
        assert_eq!(
            parse_section("tp/raw_syscalls/sys_exit"),
            tp("raw_syscalls", "sys_exit")
        );
        assert_eq!(parse_section("tp/raw_syscalls/sys_exit_x"), None);
        assert_eq!(parse_section("tp/sched/sched_switch"), None);
        assert_eq!(parse_section("tp/syscalls"), None);
        assert_eq!(parse_section("tp"), None);
        assert_eq!(
            parse_section("raw_tp/sys_enter"),
            Some(SyscallSection::RawTracepoint { exit: false })
        );
        assert_eq!(
            parse_section("raw_tracepoint/sys_exit"),
            Some(SyscallSection::RawTracepoint { exit: true })
        );
        assert_eq!(parse_section("raw_tp/sched_switch"), None);
        assert_eq!(parse_section("raw_tp"), None);
        assert_eq!(
            parse_section("ksyscall/openat"),
            Some(SyscallSection::Ksyscall {
                name: Some("openat".into()),
                ret: false
            })
        );
        assert_eq!(
            parse_section("kretsyscall"),
            Some(SyscallSection::Ksyscall {
                name: None,
                ret: true
            })
        );
        assert_eq!(parse_section("ksyscallx"), None);
        assert_eq!(parse_section("kprobe/__x64_sys_openat"), None);
    }

    #[test]
    fn targets() {
        let t = resolve_tracepoint("syscalls", "sys_enter_openat").unwrap();
        assert_eq!(t.kind, AttachKind::SyscallEnter);
        assert_eq!(t.nr, 257);
        assert_eq!(t.ctx.kind, SyscallCtxKind::Tracepoint);
        assert_eq!(
            (t.ctx.nr_offset, t.ctx.nr_size, t.ctx.args_offset),
            (8, 4, 16)
        );
        assert_eq!(t.ctx.size, 48);
        let t = resolve_tracepoint("raw_syscalls", "sys_exit").unwrap();
        assert_eq!((t.kind, t.nr), (AttachKind::SyscallExit, ALL_SYSCALLS));
        assert_eq!(t.ctx.size, 24);
        assert_eq!(
            resolve_tracepoint("syscalls", "sys_enter_nope"),
            Err(SyscallTargetError::NoTracepoint)
        );
        assert_eq!(SyscallTargetError::NoTracepoint.errno(), libc::ENOENT);
        let t = resolve_ksyscall("newfstatat", true).unwrap();
        assert_eq!((t.kind, t.nr), (AttachKind::SyscallExit, 262));
        assert_eq!(t.ctx, SyscallCtx::kretsyscall());
        assert_eq!(
            resolve_ksyscall("stat", false),
            Err(SyscallTargetError::NoSyscall)
        );
        let t = resolve_raw_tracepoint("sys_enter").unwrap();
        assert_eq!(t.ctx, SyscallCtx::raw_tracepoint(false));
        assert!(resolve_raw_tracepoint("sched_switch").is_err());
    }

    #[test]
    fn prog_types() {
        let tp = SyscallCtx::tracepoint(false, 1, 0);
        assert!(check_prog_type(tp, 5, 0).is_ok());
        assert_eq!(
            check_prog_type(tp, 17, 0),
            Err(SyscallTargetError::ProgType(17))
        );
        let raw = SyscallCtx::raw_tracepoint(true);
        assert!(check_prog_type(raw, 17, 0).is_ok());
        assert!(check_prog_type(raw, 24, 0).is_ok());
        assert!(check_prog_type(raw, 5, 0).is_err());
        assert!(check_prog_type(SyscallCtx::ksyscall(), 2, 0).is_ok());
        assert!(check_prog_type(SyscallCtx::ksyscall(), 2, 42).is_err());
        assert!(check_prog_type(SyscallCtx::kretsyscall(), 5, 0).is_err());
    }
}
