//! `userbpf list`: what the loaders of a namespace published (programs,
//! maps, links) and what the agents in target processes attached.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Result;
use userbpf_runtime::namespace;
use userbpf_runtime::registry::{self, kind, AttachKind, RecordData, Role};

/// One link as published: its records share the id.
struct Link {
    id: u32,
    kind: u32,
    prog_id: u32,
    prog_name: String,
    pid: u32,
    targets: Vec<RecordData>,
}

struct Loader {
    pid: u32,
    comm: String,
    progs: Vec<RecordData>,
    maps: Vec<RecordData>,
    links: Vec<Link>,
}

struct Attachment {
    link_id: u32,
    prog_id: u32,
    address: u64,
    errno: u64,
}

struct Agent {
    pid: u32,
    comm: String,
    attachments: Vec<Attachment>,
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim_end().to_string())
        .unwrap_or_else(|_| "?".to_string())
}

/// `BPF_MAP_TYPE_*` names (the kernel's enum order).
pub fn map_type_name(t: u32) -> &'static str {
    const NAMES: [&str; 34] = [
        "unspec",
        "hash",
        "array",
        "prog_array",
        "perf_event_array",
        "percpu_hash",
        "percpu_array",
        "stack_trace",
        "cgroup_array",
        "lru_hash",
        "lru_percpu_hash",
        "lpm_trie",
        "array_of_maps",
        "hash_of_maps",
        "devmap",
        "sockmap",
        "cpumap",
        "xskmap",
        "sockhash",
        "cgroup_storage",
        "reuseport_sockarray",
        "percpu_cgroup_storage",
        "queue",
        "stack",
        "sk_storage",
        "devmap_hash",
        "struct_ops",
        "ringbuf",
        "inode_storage",
        "task_storage",
        "bloom_filter",
        "user_ringbuf",
        "cgrp_storage",
        "arena",
    ];
    NAMES.get(t as usize).copied().unwrap_or("?")
}

/// `BPF_PROG_TYPE_*` names (the kernel's enum order).
pub fn prog_type_name(t: u32) -> &'static str {
    const NAMES: [&str; 33] = [
        "unspec",
        "socket_filter",
        "kprobe",
        "sched_cls",
        "sched_act",
        "tracepoint",
        "xdp",
        "perf_event",
        "cgroup_skb",
        "cgroup_sock",
        "lwt_in",
        "lwt_out",
        "lwt_xmit",
        "sock_ops",
        "sk_skb",
        "cgroup_device",
        "sk_msg",
        "raw_tracepoint",
        "cgroup_sock_addr",
        "lwt_seg6local",
        "lirc_mode2",
        "sk_reuseport",
        "flow_dissector",
        "cgroup_sysctl",
        "raw_tracepoint_writable",
        "cgroup_sockopt",
        "tracing",
        "struct_ops",
        "ext",
        "lsm",
        "sk_lookup",
        "syscall",
        "netfilter",
    ];
    NAMES.get(t as usize).copied().unwrap_or("?")
}

/// A link record's `type_`.
pub fn link_kind_name(t: u32) -> &'static str {
    const KINDS: [(AttachKind, &str); 5] = [
        (AttachKind::Uprobe, "uprobe"),
        (AttachKind::Uretprobe, "uretprobe"),
        (AttachKind::Usdt, "usdt"),
        (AttachKind::SyscallEnter, "syscall-enter"),
        (AttachKind::SyscallExit, "syscall-exit"),
    ];
    KINDS
        .iter()
        .find(|(k, _)| *k as u32 == t)
        .map(|(_, n)| *n)
        .unwrap_or("?")
}

/// A syscall link record, readably: (syscall name or `*`, number, context
/// kind); `None` for other records.
pub fn syscall_target(t: &RecordData) -> Option<(String, Option<u64>, &'static str)> {
    use userbpf_runtime::syscalls::{self, SyscallCtx, ALL_SYSCALLS};
    let is_syscall =
        t.type_ == AttachKind::SyscallEnter as u32 || t.type_ == AttachKind::SyscallExit as u32;
    if !is_syscall {
        return None;
    }
    // A malformed context shows as `?` rather than hiding the record.
    let ctx = SyscallCtx::from_bits(t.ref_ctr_offset).map_or("?", |c| c.kind.name());
    if t.offset == ALL_SYSCALLS {
        return Some(("*".into(), None, ctx));
    }
    let name = u32::try_from(t.offset)
        .ok()
        .and_then(syscalls::name_by_nr)
        .unwrap_or("?");
    Some((name.into(), Some(t.offset), ctx))
}

fn strerror(errno: u64) -> String {
    let e = i32::try_from(errno).unwrap_or(i32::MAX);
    std::io::Error::from_raw_os_error(e)
        .to_string()
        .split(" (os error")
        .next()
        .unwrap_or_default()
        .to_string()
}

fn gather() -> (String, Vec<Loader>, Vec<Agent>) {
    let dir = namespace::namespace_dir();
    let mut loaders = Vec::new();
    for l in registry::scan(&dir, true) {
        let mut records = l.file.records();
        records.sort_by_key(|r| (r.kind, r.id, r.path_str(), r.offset));
        let mut loader = Loader {
            pid: l.pid,
            comm: comm(l.pid),
            progs: Vec::new(),
            maps: Vec::new(),
            links: Vec::new(),
        };
        let mut links: BTreeMap<u32, Link> = BTreeMap::new();
        for r in records {
            match r.kind {
                kind::PROG => loader.progs.push(r),
                kind::MAP => loader.maps.push(r),
                kind::LINK => links
                    .entry(r.id)
                    .or_insert_with(|| Link {
                        id: r.id,
                        kind: r.type_,
                        prog_id: r.prog_id,
                        prog_name: r.name_str(),
                        pid: r.pid,
                        targets: Vec::new(),
                    })
                    .targets
                    .push(r),
                _ => {}
            }
        }
        loader.links = links.into_values().collect();
        loaders.push(loader);
    }
    let agents = registry::scan_role(&dir, Role::Agent, true)
        .into_iter()
        .map(|a| {
            let mut attachments: Vec<Attachment> = a
                .file
                .records()
                .into_iter()
                .filter(|r| r.kind == kind::ATTACHMENT)
                .map(|r| Attachment {
                    link_id: r.id,
                    prog_id: r.prog_id,
                    address: r.offset,
                    errno: r.flags,
                })
                .collect();
            attachments.sort_by_key(|t| (t.link_id, t.address));
            Agent {
                pid: a.pid,
                comm: comm(a.pid),
                attachments,
            }
        })
        .collect();
    (dir.display().to_string(), loaders, agents)
}

/// The name of program `id` among every loader's programs.
fn prog_name(loaders: &[Loader], id: u32) -> Option<String> {
    loaders
        .iter()
        .flat_map(|l| &l.progs)
        .find(|p| p.id == id)
        .map(|p| p.name_str())
}

fn link_kind_of(loaders: &[Loader], link_id: u32) -> Option<&'static str> {
    loaders
        .iter()
        .flat_map(|l| &l.links)
        .find(|k| k.id == link_id)
        .map(|k| link_kind_name(k.kind))
}

pub fn list(json: bool) -> Result<()> {
    let (dir, loaders, agents) = gather();
    let out = if json {
        render_json(&dir, &loaders, &agents)
    } else {
        render_text(&dir, &loaders, &agents)
    };
    print!("{out}");
    Ok(())
}

fn render_text(dir: &str, loaders: &[Loader], agents: &[Agent]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "namespace {dir}");
    if loaders.is_empty() {
        let _ = writeln!(s, "no live loaders");
    }
    for l in loaders {
        let _ = writeln!(s, "loader pid {} ({})", l.pid, l.comm);
        for p in &l.progs {
            let _ = writeln!(
                s,
                "  prog {:<5} {:<14} {}",
                p.id,
                prog_type_name(p.type_),
                p.name_str()
            );
        }
        for m in &l.maps {
            let _ = writeln!(
                s,
                "  map  {:<5} {:<14} {}",
                m.id,
                map_type_name(m.type_),
                m.name_str()
            );
        }
        for k in &l.links {
            let pid = if k.pid == 0 {
                "all".to_string()
            } else {
                k.pid.to_string()
            };
            let _ = writeln!(
                s,
                "  link {:<5} {:<14} prog {} ({}) pid {}",
                k.id,
                link_kind_name(k.kind),
                k.prog_id,
                k.prog_name,
                pid
            );
            for t in &k.targets {
                if let Some((name, nr, ctx)) = syscall_target(t) {
                    let nr = nr.map_or(String::new(), |n| format!(" ({n})"));
                    let _ = writeln!(
                        s,
                        "         {} syscall {name}{nr} ctx {ctx} cookie {}",
                        t.path_str(),
                        t.cookie
                    );
                    continue;
                }
                let mut line = format!(
                    "         {}+{:#x} cookie {}",
                    t.path_str(),
                    t.offset,
                    t.cookie
                );
                if t.ref_ctr_offset != 0 {
                    let _ = write!(line, " semaphore {:#x}", t.ref_ctr_offset);
                }
                let _ = writeln!(s, "{line}");
            }
        }
    }
    if agents.is_empty() {
        let _ = writeln!(s, "no attached processes");
    } else {
        let _ = writeln!(s, "attached processes");
    }
    for a in agents {
        let _ = writeln!(
            s,
            "process pid {} ({}): {} attachment(s)",
            a.pid,
            a.comm,
            a.attachments.len()
        );
        for t in &a.attachments {
            let name = prog_name(loaders, t.prog_id).unwrap_or_else(|| "?".into());
            let kind = link_kind_of(loaders, t.link_id).unwrap_or("link");
            let state = if t.errno == 0 {
                "installed".to_string()
            } else {
                format!("error {} ({})", t.errno, strerror(t.errno))
            };
            let _ = writeln!(
                s,
                "  link {:<5} {:<14} prog {} ({}) at {:#x} {}",
                t.link_id, kind, t.prog_id, name, t.address, state
            );
        }
    }
    s
}

fn js(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn render_json(dir: &str, loaders: &[Loader], agents: &[Agent]) -> String {
    let obj = |fields: Vec<(&str, String)>| -> String {
        let inner: Vec<String> = fields
            .into_iter()
            .map(|(k, v)| format!("{}:{}", js(k), v))
            .collect();
        format!("{{{}}}", inner.join(","))
    };
    let arr = |items: Vec<String>| format!("[{}]", items.join(","));
    let loaders_json = loaders
        .iter()
        .map(|l| {
            let progs = l
                .progs
                .iter()
                .map(|p| {
                    obj(vec![
                        ("id", p.id.to_string()),
                        ("type", p.type_.to_string()),
                        ("type_name", js(prog_type_name(p.type_))),
                        ("name", js(&p.name_str())),
                    ])
                })
                .collect();
            let maps = l
                .maps
                .iter()
                .map(|m| {
                    obj(vec![
                        ("id", m.id.to_string()),
                        ("type", m.type_.to_string()),
                        ("type_name", js(map_type_name(m.type_))),
                        ("name", js(&m.name_str())),
                    ])
                })
                .collect();
            let links = l
                .links
                .iter()
                .map(|k| {
                    let targets = k
                        .targets
                        .iter()
                        .map(|t| {
                            let mut f = vec![
                                ("path", js(&t.path_str())),
                                ("offset", t.offset.to_string()),
                                ("cookie", t.cookie.to_string()),
                                ("ref_ctr_offset", t.ref_ctr_offset.to_string()),
                            ];
                            if let Some((name, nr, ctx)) = syscall_target(t) {
                                f.push(("syscall", js(&name)));
                                f.push(("nr", nr.map_or("null".into(), |n| n.to_string())));
                                f.push(("ctx", js(ctx)));
                            }
                            obj(f)
                        })
                        .collect();
                    obj(vec![
                        ("id", k.id.to_string()),
                        ("kind", js(link_kind_name(k.kind))),
                        ("prog_id", k.prog_id.to_string()),
                        ("prog_name", js(&k.prog_name)),
                        ("pid", k.pid.to_string()),
                        ("targets", arr(targets)),
                    ])
                })
                .collect();
            obj(vec![
                ("pid", l.pid.to_string()),
                ("comm", js(&l.comm)),
                ("programs", arr(progs)),
                ("maps", arr(maps)),
                ("links", arr(links)),
            ])
        })
        .collect();
    let agents_json = agents
        .iter()
        .map(|a| {
            let atts = a
                .attachments
                .iter()
                .map(|t| {
                    let mut f = vec![
                        ("link_id", t.link_id.to_string()),
                        ("prog_id", t.prog_id.to_string()),
                        (
                            "prog_name",
                            prog_name(loaders, t.prog_id).map_or("null".into(), |n| js(&n)),
                        ),
                        ("address", t.address.to_string()),
                        ("installed", (t.errno == 0).to_string()),
                        ("errno", t.errno.to_string()),
                    ];
                    if t.errno != 0 {
                        f.push(("error", js(&strerror(t.errno))));
                    }
                    obj(f)
                })
                .collect();
            obj(vec![
                ("pid", a.pid.to_string()),
                ("comm", js(&a.comm)),
                ("attachments", arr(atts)),
            ])
        })
        .collect();
    let mut s = obj(vec![
        ("namespace", js(dir)),
        ("loaders", arr(loaders_json)),
        ("agents", arr(agents_json)),
    ]);
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(map_type_name(1), "hash");
        assert_eq!(map_type_name(27), "ringbuf");
        assert_eq!(prog_type_name(2), "kprobe");
        assert_eq!(link_kind_name(AttachKind::Uretprobe as u32), "uretprobe");
        assert_eq!(link_kind_name(99), "?");
        assert_eq!(js("a\"b\\\n\u{1}"), "\"a\\\"b\\\\\\n\\u0001\"");
        assert_eq!(strerror(2), "No such file or directory");
    }

    #[test]
    fn syscall_links() {
        use userbpf_runtime::syscalls::{SyscallCtx, ALL_SYSCALLS};
        let mut r = RecordData::zeroed();
        r.kind = kind::LINK;
        r.type_ = AttachKind::SyscallEnter as u32;
        r.offset = 257;
        r.ref_ctr_offset = SyscallCtx::tracepoint(false, 4, 0).to_bits();
        assert_eq!(
            syscall_target(&r),
            Some(("openat".into(), Some(257), "tracepoint"))
        );
        r.type_ = AttachKind::SyscallExit as u32;
        r.offset = ALL_SYSCALLS;
        r.ref_ctr_offset = SyscallCtx::raw_tracepoint(true).to_bits();
        assert_eq!(syscall_target(&r), Some(("*".into(), None, "raw_tp")));
        r.type_ = AttachKind::Uprobe as u32;
        assert_eq!(syscall_target(&r), None);
    }
}
