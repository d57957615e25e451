//! Syscall tracepoints in user space: how a syscall LINK record is encoded,
//! the context layouts programs see, and the x86-64 syscall table.
//!
//! A syscall link record (`kind::LINK`, written by the loader, read by the
//! agents) has:
//! - `type_`: [`AttachKind::SyscallEnter`](crate::registry::AttachKind) or
//!   `SyscallExit`;
//! - `offset`: the syscall number, or [`ALL_SYSCALLS`] (raw_syscalls,
//!   raw_tracepoint);
//! - `ref_ctr_offset`: [`SyscallCtx::to_bits`], the context the programs
//!   get;
//! - `path`: what `userbpf list` shows (`syscalls/sys_enter_openat`,
//!   `raw_syscalls/sys_enter`, `raw_tp/sys_enter`, `ksyscall/openat`,
//!   `kretsyscall/openat`);
//! - `pid` (0: every agent), `cookie`, `prog_id`, `name` as for uprobes.
//!
//! Contexts, as the kernel builds them (`struct trace_entry` is 8 bytes:
//! `u16 common_type; u8 flags; u8 preempt_count; i32 common_pid`):
//! - `syscalls/sys_enter_X`: `int __syscall_nr` at 8, the arguments at
//!   16 + 8 * i (each 8 bytes); size 16 + 8 * nargs.
//!   `syscalls/sys_exit_X`: `__syscall_nr` at 8, `long ret` at 16; size 24.
//! - `raw_syscalls/sys_enter`: `long id` at 8, `unsigned long args[6]` at
//!   16; size 64. `raw_syscalls/sys_exit`: `id` at 8, `long ret` at 16;
//!   size 24.
//! - `raw_tp/sys_enter` (raw tracepoint): `u64[2]` = {`struct pt_regs *`,
//!   syscall number}; `raw_tp/sys_exit`: {`struct pt_regs *`, return value}.
//! - `ksyscall/X`: a kprobe's `struct pt_regs` of the syscall wrapper
//!   (`__x64_sys_X`): `di` points to the syscall's own `pt_regs`, whose
//!   `di si dx r10 r8 r9` are the arguments (`LINUX_HAS_SYSCALL_WRAPPER`).
//!   `kretsyscall/X`: a kretprobe's `pt_regs`, `ax` the return value.
//!
//! Layouts come from tracefs (`events/<category>/<event>/format` and `id`)
//! when it is readable ([`tracefs_layout`]), else from the table
//! ([`table_layout`]); [`layout`] picks.

use std::path::{Path, PathBuf};

use crate::registry::{kind, AttachKind, RecordData};

mod table;

/// `offset` of a record that covers every syscall.
pub const ALL_SYSCALLS: u64 = u64::MAX;

/// `sizeof(struct pt_regs)` on x86-64.
pub const PT_REGS_SIZE: u8 = 168;
/// Offsets in the x86-64 `struct pt_regs`.
pub const PT_REGS_AX: u8 = 80;
pub const PT_REGS_DI: u8 = 112;

/// Which kind of program context a syscall link delivers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyscallCtxKind {
    /// `syscalls/sys_enter_X`, `syscalls/sys_exit_X`.
    Tracepoint = 1,
    /// `raw_syscalls/sys_enter`, `raw_syscalls/sys_exit`.
    RawSyscalls = 2,
    /// `raw_tp/sys_enter|sys_exit`: `u64[2]` = {`struct pt_regs *`, id or ret}.
    RawTracepoint = 3,
    /// `ksyscall/X`: kprobe `pt_regs`; `di` = address of the inner `pt_regs`.
    Ksyscall = 4,
    /// `kretsyscall/X`: kretprobe `pt_regs`, `ax` = return value.
    Kretsyscall = 5,
}

impl SyscallCtxKind {
    fn from_u8(v: u8) -> Option<SyscallCtxKind> {
        Some(match v {
            1 => SyscallCtxKind::Tracepoint,
            2 => SyscallCtxKind::RawSyscalls,
            3 => SyscallCtxKind::RawTracepoint,
            4 => SyscallCtxKind::Ksyscall,
            5 => SyscallCtxKind::Kretsyscall,
            _ => return None,
        })
    }

    /// Short name (`userbpf list`).
    pub fn name(self) -> &'static str {
        match self {
            SyscallCtxKind::Tracepoint => "tracepoint",
            SyscallCtxKind::RawSyscalls => "raw_syscalls",
            SyscallCtxKind::RawTracepoint => "raw_tp",
            SyscallCtxKind::Ksyscall => "ksyscall",
            SyscallCtxKind::Kretsyscall => "kretsyscall",
        }
    }
}

/// The context layout of a syscall link (the record's `ref_ctr_offset`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyscallCtx {
    pub kind: SyscallCtxKind,
    /// The tracefs event id written to `common_type` (0: unknown).
    pub common_type: u16,
    /// Where the syscall number is, and its size: 4 (`int __syscall_nr`),
    /// 8 (`long id`), or 0 when the context has none (raw_tp sys_exit,
    /// ksyscall, kretsyscall).
    pub nr_offset: u8,
    pub nr_size: u8,
    /// Enter: the first argument (tracepoints), or the `struct pt_regs *`
    /// (raw_tp), or `di` (ksyscall). Exit: `ret` (tracepoints, raw_tp),
    /// `ax` (kretsyscall).
    pub args_offset: u8,
    /// Bytes of context.
    pub size: u8,
}

/// The top byte of an encoded [`SyscallCtx`]: tells an encoding from a
/// stray value (0 is never a valid context).
const CTX_TAG: u64 = 0xc5;

impl SyscallCtx {
    /// Packs into a u64: kind (bits 0-7), common_type (8-23), nr_offset
    /// (24-31), nr_size (32-39), args_offset (40-47), size (48-55), tag
    /// 0xc5 (56-63).
    pub fn to_bits(self) -> u64 {
        (self.kind as u64)
            | (u64::from(self.common_type) << 8)
            | (u64::from(self.nr_offset) << 24)
            | (u64::from(self.nr_size) << 32)
            | (u64::from(self.args_offset) << 40)
            | (u64::from(self.size) << 48)
            | (CTX_TAG << 56)
    }

    /// Unpacks [`SyscallCtx::to_bits`]; `None` for anything it did not make
    /// or for a layout whose fields do not fit its size.
    pub fn from_bits(bits: u64) -> Option<SyscallCtx> {
        if bits >> 56 != CTX_TAG {
            return None;
        }
        let byte = |shift: u32| (bits >> shift) as u8;
        let ctx = SyscallCtx {
            kind: SyscallCtxKind::from_u8(byte(0))?,
            common_type: (bits >> 8) as u16,
            nr_offset: byte(24),
            nr_size: byte(32),
            args_offset: byte(40),
            size: byte(48),
        };
        let fits = |off: u8, len: u8| u16::from(off) + u16::from(len) <= u16::from(ctx.size);
        let ok = matches!(ctx.nr_size, 0 | 4 | 8)
            && fits(ctx.nr_offset, ctx.nr_size)
            // Equal for an enter event without arguments.
            && ctx.args_offset <= ctx.size;
        ok.then_some(ctx)
    }

    /// `syscalls/sys_enter_X` with `nargs` arguments, or `sys_exit_X`.
    pub fn tracepoint(exit: bool, nargs: u8, common_type: u16) -> SyscallCtx {
        SyscallCtx {
            kind: SyscallCtxKind::Tracepoint,
            common_type,
            nr_offset: 8,
            nr_size: 4,
            args_offset: 16,
            size: if exit { 24 } else { 16 + 8 * nargs.min(6) },
        }
    }

    /// `raw_syscalls/sys_enter` or `sys_exit`.
    pub fn raw_syscalls(exit: bool, common_type: u16) -> SyscallCtx {
        SyscallCtx {
            kind: SyscallCtxKind::RawSyscalls,
            common_type,
            nr_offset: 8,
            nr_size: 8,
            args_offset: 16,
            size: if exit { 24 } else { 64 },
        }
    }

    /// `raw_tp/sys_enter` ({regs, id}) or `sys_exit` ({regs, ret}).
    pub fn raw_tracepoint(exit: bool) -> SyscallCtx {
        SyscallCtx {
            kind: SyscallCtxKind::RawTracepoint,
            common_type: 0,
            nr_offset: if exit { 0 } else { 8 },
            nr_size: if exit { 0 } else { 8 },
            args_offset: if exit { 8 } else { 0 },
            size: 16,
        }
    }

    /// `ksyscall/X`: the wrapper's `pt_regs`, `di` = the inner `pt_regs`.
    pub fn ksyscall() -> SyscallCtx {
        SyscallCtx {
            kind: SyscallCtxKind::Ksyscall,
            common_type: 0,
            nr_offset: 0,
            nr_size: 0,
            args_offset: PT_REGS_DI,
            size: PT_REGS_SIZE,
        }
    }

    /// `kretsyscall/X`: `pt_regs` with `ax` = the return value.
    pub fn kretsyscall() -> SyscallCtx {
        SyscallCtx {
            kind: SyscallCtxKind::Kretsyscall,
            common_type: 0,
            nr_offset: 0,
            nr_size: 0,
            args_offset: PT_REGS_AX,
            size: PT_REGS_SIZE,
        }
    }
}

/// One x86-64 syscall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyscallInfo {
    pub nr: u32,
    /// The `__NR_` name (`stat`, `umount2`).
    pub name: &'static str,
    /// The kernel entry point without `sys_` (`newstat`, `umount`): the
    /// tracepoint name (`sys_enter_<entry>`) and the ksyscall name.
    pub entry: &'static str,
    /// Argument names, as in the tracepoint format.
    pub args: &'static [&'static str],
}

impl SyscallInfo {
    pub fn nargs(&self) -> u8 {
        self.args.len() as u8
    }
}

/// Every syscall of the table, by number.
pub fn all() -> &'static [SyscallInfo] {
    table::SYSCALLS
}

/// A syscall by number.
pub fn info_by_nr(nr: u32) -> Option<&'static SyscallInfo> {
    let t = table::SYSCALLS;
    t.binary_search_by_key(&nr, |s| s.nr).ok().map(|i| &t[i])
}

/// A syscall by entry-point (tracepoint, ksyscall) name: `newstat`,
/// `openat`, `newfstatat`.
pub fn info_by_name(entry: &str) -> Option<&'static SyscallInfo> {
    table::SYSCALLS.iter().find(|s| s.entry == entry)
}

/// The number of the syscall whose tracepoint / ksyscall name is `entry`
/// (`newstat` → 4, `openat` → 257).
pub fn nr_by_name(entry: &str) -> Option<u32> {
    info_by_name(entry).map(|s| s.nr)
}

/// The tracepoint / ksyscall name of syscall `nr` (4 → `newstat`).
pub fn name_by_nr(nr: u32) -> Option<&'static str> {
    info_by_nr(nr).map(|s| s.entry)
}

/// A syscall tracepoint, parsed: which syscall(s), enter or exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyscallEvent {
    pub exit: bool,
    /// `None`: every syscall (raw_syscalls).
    pub nr: Option<u32>,
}

/// `("syscalls", "sys_enter_openat")` → enter of 257;
/// `("raw_syscalls", "sys_exit")` → exit of every syscall. `None` for
/// anything else, syscall names we do not know included.
pub fn parse_tracepoint(category: &str, event: &str) -> Option<SyscallEvent> {
    match category {
        "syscalls" => {
            let (exit, name) = if let Some(n) = event.strip_prefix("sys_enter_") {
                (false, n)
            } else {
                (true, event.strip_prefix("sys_exit_")?)
            };
            Some(SyscallEvent {
                exit,
                nr: Some(nr_by_name(name)?),
            })
        }
        "raw_syscalls" => match event {
            "sys_enter" => Some(SyscallEvent {
                exit: false,
                nr: None,
            }),
            "sys_exit" => Some(SyscallEvent {
                exit: true,
                nr: None,
            }),
            _ => None,
        },
        _ => None,
    }
}

/// The layout our table gives for a `syscalls/*` or `raw_syscalls/*`
/// event (`common_type` 0: unknown).
pub fn table_layout(category: &str, event: &str) -> Option<SyscallCtx> {
    let ev = parse_tracepoint(category, event)?;
    Some(match ev.nr {
        None => SyscallCtx::raw_syscalls(ev.exit, 0),
        Some(nr) => SyscallCtx::tracepoint(ev.exit, info_by_nr(nr)?.nargs(), 0),
    })
}

/// The tracefs directory (`/sys/kernel/tracing`, else
/// `/sys/kernel/debug/tracing`) if its syscall events are readable.
pub fn tracefs_dir() -> Option<PathBuf> {
    ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
        .into_iter()
        .map(PathBuf::from)
        .find(|d| std::fs::read_dir(d.join("events/raw_syscalls")).is_ok())
}

/// One `field:` line of a tracefs format: (name, offset, size).
fn format_fields(text: &str) -> Vec<(String, u32, u32)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.trim().strip_prefix("field:") else {
            continue;
        };
        let mut parts = rest.split(';').map(str::trim);
        let decl = parts.next().unwrap_or("");
        let num =
            |p: Option<&str>, key: &str| -> Option<u32> { p?.strip_prefix(key)?.parse().ok() };
        let (Some(off), Some(size)) = (num(parts.next(), "offset:"), num(parts.next(), "size:"))
        else {
            continue;
        };
        // "unsigned long args[6]" → "args"; "const char * filename" → "filename".
        let name = decl
            .rsplit([' ', '*'])
            .next()
            .unwrap_or("")
            .split('[')
            .next()
            .unwrap_or("")
            .to_string();
        out.push((name, off, size));
    }
    out
}

/// The layout a tracefs `format` (and event `id`) describe, for a
/// `syscalls/*` or `raw_syscalls/*` event.
pub fn layout_from_format(
    category: &str,
    event: &str,
    format: &str,
    id: u16,
) -> Option<SyscallCtx> {
    let ev = parse_tracepoint(category, event)?;
    let fields = format_fields(format);
    let find = |n: &str| fields.iter().find(|f| f.0 == n);
    let nr = find("__syscall_nr").or_else(|| find("id"))?;
    let first = if ev.exit {
        find("ret")?
    } else {
        // The first field after the number (args, or where they would start).
        match fields.iter().filter(|f| f.1 > nr.1).min_by_key(|f| f.1) {
            Some(f) => f,
            None => &(String::new(), nr.1 + 8, 0),
        }
    };
    let size = fields.iter().map(|f| f.1 + f.2).max()?.max(first.1);
    let byte = |v: u32| u8::try_from(v).ok();
    Some(SyscallCtx {
        kind: if ev.nr.is_some() {
            SyscallCtxKind::Tracepoint
        } else {
            SyscallCtxKind::RawSyscalls
        },
        common_type: id,
        nr_offset: byte(nr.1)?,
        nr_size: byte(nr.2)?,
        args_offset: byte(first.1)?,
        size: byte(size)?,
    })
}

fn read_event(dir: &Path, category: &str, event: &str) -> Option<SyscallCtx> {
    if category.contains('/') || event.contains('/') || event.starts_with('.') {
        return None;
    }
    let ev = dir.join("events").join(category).join(event);
    let format = std::fs::read_to_string(ev.join("format")).ok()?;
    let id = std::fs::read_to_string(ev.join("id"))
        .ok()
        .and_then(|s| s.trim().parse::<u16>().ok())
        .unwrap_or(0);
    layout_from_format(category, event, &format, id)
}

/// The layout tracefs gives for `<category>/<event>` when readable
/// (`None` otherwise, and for events that are not syscall events).
pub fn tracefs_layout(category: &str, event: &str) -> Option<SyscallCtx> {
    read_event(&tracefs_dir()?, category, event)
}

/// The layout of a syscall tracepoint: tracefs when its syscall events are
/// readable (then an event it does not have does not exist, as for the
/// kernel), else our table.
pub fn layout(category: &str, event: &str) -> Option<SyscallCtx> {
    match tracefs_dir() {
        Some(dir) => read_event(&dir, category, event),
        None => table_layout(category, event),
    }
}

/// A syscall LINK record, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyscallLinkRecord {
    pub exit: bool,
    /// `None`: every syscall ([`ALL_SYSCALLS`]).
    pub nr: Option<u32>,
    pub ctx: SyscallCtx,
    pub cookie: u64,
    pub prog_id: u32,
    /// 0: every process.
    pub pid: u32,
}

/// Decodes a LINK record of kind `SyscallEnter`/`SyscallExit`; `None` for
/// other records, and for a number or context that is not valid.
pub fn decode_link(d: &RecordData) -> Option<SyscallLinkRecord> {
    if d.kind != kind::LINK {
        return None;
    }
    let exit = if d.type_ == AttachKind::SyscallEnter as u32 {
        false
    } else if d.type_ == AttachKind::SyscallExit as u32 {
        true
    } else {
        return None;
    };
    let nr = if d.offset == ALL_SYSCALLS {
        None
    } else {
        Some(u32::try_from(d.offset).ok()?)
    };
    Some(SyscallLinkRecord {
        exit,
        nr,
        ctx: SyscallCtx::from_bits(d.ref_ctr_offset)?,
        cookie: d.cookie,
        prog_id: d.prog_id,
        pid: d.pid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctx_bits_round_trip() {
        let all = [
            SyscallCtx::tracepoint(false, 4, 782),
            SyscallCtx::tracepoint(true, 4, 781),
            SyscallCtx::tracepoint(false, 0, 0),
            SyscallCtx::raw_syscalls(false, 443),
            SyscallCtx::raw_syscalls(true, 442),
            SyscallCtx::raw_tracepoint(false),
            SyscallCtx::raw_tracepoint(true),
            SyscallCtx::ksyscall(),
            SyscallCtx::kretsyscall(),
        ];
        for c in all {
            assert_eq!(SyscallCtx::from_bits(c.to_bits()), Some(c), "{c:?}");
        }
        let c = SyscallCtx::tracepoint(false, 6, 0xbeef);
        let bits = c.to_bits();
        assert_eq!(bits & 0xff, 1);
        assert_eq!((bits >> 8) & 0xffff, 0xbeef);
        assert_eq!((bits >> 24) & 0xff, 8);
        assert_eq!((bits >> 32) & 0xff, 4);
        assert_eq!((bits >> 40) & 0xff, 16);
        assert_eq!((bits >> 48) & 0xff, 64);
        assert_eq!(bits >> 56, 0xc5);
        assert_eq!(SyscallCtx::raw_syscalls(false, 0).size, 64);
        assert_eq!(SyscallCtx::tracepoint(true, 3, 0).size, 24);
    }

    #[test]
    fn link_records() {
        let mut d = RecordData::zeroed();
        d.kind = kind::LINK;
        d.type_ = AttachKind::SyscallExit as u32;
        d.offset = 262;
        d.cookie = 5;
        d.prog_id = 3;
        d.ref_ctr_offset = SyscallCtx::kretsyscall().to_bits();
        let r = decode_link(&d).unwrap();
        assert_eq!(
            (r.exit, r.nr, r.cookie, r.prog_id, r.pid),
            (true, Some(262), 5, 3, 0)
        );
        assert_eq!(r.ctx, SyscallCtx::kretsyscall());
        d.offset = ALL_SYSCALLS;
        assert_eq!(decode_link(&d).unwrap().nr, None);
        d.offset = 1 << 40;
        assert_eq!(decode_link(&d), None);
        d.offset = 0;
        d.ref_ctr_offset = 0;
        assert_eq!(decode_link(&d), None);
        d.ref_ctr_offset = SyscallCtx::ksyscall().to_bits();
        d.type_ = AttachKind::Uprobe as u32;
        assert_eq!(decode_link(&d), None);
        d.type_ = AttachKind::SyscallEnter as u32;
        d.kind = kind::ATTACHMENT;
        assert_eq!(decode_link(&d), None);
    }

    #[test]
    fn ctx_bits_refuse_garbage() {
        assert_eq!(SyscallCtx::from_bits(0), None);
        assert_eq!(SyscallCtx::from_bits(u64::MAX), None);
        let good = SyscallCtx::tracepoint(false, 2, 1).to_bits();
        // Unknown kind.
        assert_eq!(SyscallCtx::from_bits(good & !0xff | 9), None);
        // nr_size 3.
        assert_eq!(
            SyscallCtx::from_bits(good & !(0xff << 32) | (3 << 32)),
            None
        );
        // Args past the end (size 8).
        assert_eq!(
            SyscallCtx::from_bits(good & !(0xff << 48) | (8 << 48)),
            None
        );
    }

    #[test]
    fn table_names_and_numbers() {
        assert_eq!(nr_by_name("newstat"), Some(4));
        assert_eq!(nr_by_name("newfstat"), Some(5));
        assert_eq!(nr_by_name("newlstat"), Some(6));
        assert_eq!(nr_by_name("newuname"), Some(63));
        assert_eq!(nr_by_name("newfstatat"), Some(262));
        assert_eq!(nr_by_name("openat"), Some(257));
        assert_eq!(nr_by_name("umount"), Some(166));
        assert_eq!(nr_by_name("sendfile64"), Some(40));
        assert_eq!(nr_by_name("stat"), None);
        assert_eq!(nr_by_name("no_such_syscall"), None);
        assert_eq!(name_by_nr(0), Some("read"));
        assert_eq!(name_by_nr(4), Some("newstat"));
        assert_eq!(name_by_nr(59), Some("execve"));
        assert_eq!(name_by_nr(156), None); // _sysctl: sys_ni_syscall
        let openat = info_by_nr(257).unwrap();
        assert_eq!(openat.args, &["dfd", "filename", "flags", "mode"]);
        assert_eq!(info_by_nr(110).unwrap().nargs(), 0);
        // Sorted, unique numbers (info_by_nr's binary search).
        assert!(all().windows(2).all(|w| w[0].nr < w[1].nr));
        assert!(all().iter().all(|s| s.args.len() <= 6));
    }

    #[test]
    fn parse_events() {
        assert_eq!(
            parse_tracepoint("syscalls", "sys_enter_openat"),
            Some(SyscallEvent {
                exit: false,
                nr: Some(257)
            })
        );
        assert_eq!(
            parse_tracepoint("syscalls", "sys_exit_newstat"),
            Some(SyscallEvent {
                exit: true,
                nr: Some(4)
            })
        );
        assert_eq!(
            parse_tracepoint("raw_syscalls", "sys_exit"),
            Some(SyscallEvent {
                exit: true,
                nr: None
            })
        );
        assert_eq!(parse_tracepoint("syscalls", "sys_enter_nope"), None);
        assert_eq!(parse_tracepoint("sched", "sched_switch"), None);
        assert_eq!(parse_tracepoint("raw_syscalls", "sys_enter_openat"), None);
        assert_eq!(
            table_layout("syscalls", "sys_enter_openat"),
            Some(SyscallCtx::tracepoint(false, 4, 0))
        );
        assert_eq!(
            table_layout("syscalls", "sys_enter_openat").unwrap().size,
            48
        );
        assert_eq!(
            table_layout("raw_syscalls", "sys_enter"),
            Some(SyscallCtx::raw_syscalls(false, 0))
        );
    }

    #[test]
    fn format_parsing() {
        let enter = "name: sys_enter_openat\nID: 782\nformat:\n\
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n\
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n\
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\
\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;\n\
\tfield:int dfd;\toffset:16;\tsize:8;\tsigned:0;\n\
\tfield:const char * filename;\toffset:24;\tsize:8;\tsigned:0;\n\
\tfield:int flags;\toffset:32;\tsize:8;\tsigned:0;\n\
\tfield:umode_t mode;\toffset:40;\tsize:8;\tsigned:0;\n";
        assert_eq!(
            layout_from_format("syscalls", "sys_enter_openat", enter, 782),
            Some(SyscallCtx::tracepoint(false, 4, 782))
        );
        let raw = "format:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
\tfield:long id;\toffset:8;\tsize:8;\tsigned:1;\n\
\tfield:unsigned long args[6];\toffset:16;\tsize:48;\tsigned:0;\n";
        assert_eq!(
            layout_from_format("raw_syscalls", "sys_enter", raw, 443),
            Some(SyscallCtx::raw_syscalls(false, 443))
        );
        let none = "format:\n\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;\n";
        assert_eq!(
            layout_from_format("syscalls", "sys_enter_getppid", none, 7),
            Some(SyscallCtx::tracepoint(false, 0, 7))
        );
    }

    /// Where tracefs is readable: it and the table agree on every syscall
    /// event, and every syscall event is in the table.
    #[test]
    fn tracefs_agrees_with_table() {
        let Some(dir) = tracefs_dir() else {
            println!("skipped: tracefs is not readable");
            return;
        };
        let mut checked = 0;
        for category in ["syscalls", "raw_syscalls"] {
            let events = std::fs::read_dir(dir.join("events").join(category)).unwrap();
            for e in events {
                let event = e.unwrap().file_name().to_string_lossy().into_owned();
                if !event.starts_with("sys_") {
                    continue;
                }
                let from_fs = tracefs_layout(category, &event)
                    .unwrap_or_else(|| panic!("{category}/{event}: no tracefs layout"));
                assert_ne!(from_fs.common_type, 0, "{category}/{event}");
                let from_table = table_layout(category, &event)
                    .unwrap_or_else(|| panic!("{category}/{event}: not in the table"));
                assert_eq!(
                    SyscallCtx {
                        common_type: 0,
                        ..from_fs
                    },
                    from_table,
                    "{category}/{event}"
                );
                assert_eq!(layout(category, &event), Some(from_fs));
                checked += 1;
            }
        }
        assert!(checked > 100, "only {checked} events");
        assert_eq!(tracefs_layout("syscalls", "sys_enter_nope"), None);
        assert_eq!(tracefs_layout("sched", "sched_switch"), None);
    }
}
