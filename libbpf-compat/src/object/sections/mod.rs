//! `SEC()` names: libbpf's section table and the rules that map a program's
//! ELF section name to its program type, expected attach type, flags and
//! attach target (`find_sec_def`, `sec_def_matches`).

mod table;

use crate::object::types::{AttachType, ProgType};

/// `enum sec_def_flags`: what a section name implies beyond the types.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SecFlags(pub u32);

impl SecFlags {
    pub const NONE: SecFlags = SecFlags(0);
    /// The expected attach type may be dropped on kernels without it.
    pub const EXP_ATTACH_OPT: SecFlags = SecFlags(1);
    /// Legacy marker for `BPF_PROG_ATTACH`-style programs (only used to
    /// list attachable section names).
    pub const ATTACHABLE: SecFlags = SecFlags(2);
    pub const ATTACHABLE_OPT: SecFlags = SecFlags(2 | 1);
    /// The attach target is a BTF id (fentry, tp_btf, lsm, iter, ...).
    pub const ATTACH_BTF: SecFlags = SecFlags(4);
    /// The program may sleep (`BPF_F_SLEEPABLE`).
    pub const SLEEPABLE: SecFlags = SecFlags(8);
    /// XDP program that handles multi-buffer packets (`BPF_F_XDP_HAS_FRAGS`).
    pub const XDP_FRAGS: SecFlags = SecFlags(16);
    /// USDT probe (libbpf may switch it to the uprobe-multi attach type).
    pub const USDT: SecFlags = SecFlags(32);

    pub fn contains(self, other: SecFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

/// The libbpf function that auto-attaches programs of a section
/// (`attach_kprobe`, `attach_tp`, ...); sections without one cannot be
/// auto-attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttachHandler {
    Kprobe,
    Uprobe,
    KprobeMulti,
    KprobeSession,
    UprobeMulti,
    Ksyscall,
    Usdt,
    Tracepoint,
    RawTracepoint,
    Trace,
    TracingMulti,
    Lsm,
    Iter,
}

/// One row of libbpf's `section_defs[]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SecDef {
    /// `"kprobe+"`: exactly `kprobe` or `kprobe/<extras>`; `"x/"`: any name
    /// starting with `x/`; otherwise the name must match exactly.
    pub prefix: &'static str,
    pub prog_type: ProgType,
    pub expected_attach_type: AttachType,
    pub flags: SecFlags,
    pub attach_handler: Option<AttachHandler>,
    /// Only in libbpf 1.8 (unreleased): ignored by [`find_sec_def`].
    pub since_1_8: bool,
}

impl SecDef {
    /// libbpf's `sec_def_matches`.
    pub fn matches(&self, sec_name: &str) -> bool {
        if let Some(stem) = self.prefix.strip_suffix('+') {
            return match sec_name.strip_prefix(stem) {
                Some(rest) => rest.is_empty() || rest.starts_with('/'),
                None => false,
            };
        }
        if self.prefix.ends_with('/') {
            return sec_name.starts_with(self.prefix);
        }
        sec_name == self.prefix
    }

    /// The part of `sec_name` after this definition's prefix and its `/`
    /// separator: `do_sys_open` for `kprobe/do_sys_open`, `sched/sched_switch`
    /// for `tp/sched/sched_switch`. `None` when the name carries no target
    /// (`SEC("kprobe")`, or a fixed name such as `xdp`).
    pub fn attach_target<'a>(&self, sec_name: &'a str) -> Option<&'a str> {
        let stem = self.prefix.trim_end_matches('+');
        let rest = sec_name.strip_prefix(stem)?;
        let target = if self.prefix.ends_with('/') {
            rest
        } else {
            rest.strip_prefix('/')?
        };
        Some(target)
    }

    pub fn is_sleepable(&self) -> bool {
        self.flags.contains(SecFlags::SLEEPABLE)
    }
}

/// Every row of the table, in libbpf's order (including 1.8-only rows).
pub fn section_defs() -> &'static [SecDef] {
    table::SECTION_DEFS
}

/// The first row that matches `sec_name` (libbpf's `find_sec_def`, as of
/// v1.7.0; custom definitions registered through `libbpf_register_prog_handler`
/// are not supported yet). `sec_name` is without the leading `?` that marks
/// programs not loaded by default.
pub fn find_sec_def(sec_name: &str) -> Option<&'static SecDef> {
    table::SECTION_DEFS
        .iter()
        .find(|def| !def.since_1_8 && def.matches(sec_name))
}

/// `libbpf_prog_type_by_name`: the program and expected attach types a
/// section name implies.
pub fn prog_type_by_name(sec_name: &str) -> Option<(ProgType, AttachType)> {
    find_sec_def(sec_name).map(|def| (def.prog_type, def.expected_attach_type))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plus_prefixes_need_exact_name_or_slash() {
        let def = find_sec_def("kprobe/do_sys_open").unwrap();
        assert_eq!(def.prefix, "kprobe+");
        assert_eq!(def.attach_target("kprobe/do_sys_open"), Some("do_sys_open"));
        assert_eq!(find_sec_def("kprobe").unwrap().prefix, "kprobe+");
        assert_eq!(
            find_sec_def("kprobe").unwrap().attach_target("kprobe"),
            None
        );
        // "kprobex" is not "kprobe" with extras.
        assert!(find_sec_def("kprobex/foo").is_none());
        assert_eq!(
            find_sec_def("kprobe.multi/x*").unwrap().prefix,
            "kprobe.multi+"
        );
    }

    #[test]
    fn first_row_wins_and_exact_rows_are_exact() {
        let def = find_sec_def("sk_reuseport/migrate").unwrap();
        assert_eq!(
            def.expected_attach_type,
            AttachType::SK_REUSEPORT_SELECT_OR_MIGRATE
        );
        assert_eq!(find_sec_def("xdp").unwrap().prog_type, ProgType::XDP);
        assert!(find_sec_def("xdp/foo").is_none());
        assert_eq!(
            find_sec_def("tp/sched/sched_switch")
                .unwrap()
                .attach_target("tp/sched/sched_switch"),
            Some("sched/sched_switch")
        );
    }

    #[test]
    fn flags_and_v1_8_rows() {
        let def = find_sec_def("fentry.s/do_unlinkat").unwrap();
        assert!(def.is_sleepable());
        assert!(def.flags.contains(SecFlags::ATTACH_BTF));
        // tp.s+ arrived after v1.7.0: unknown, as in v1.7.0.
        assert!(find_sec_def("tp.s/syscalls/sys_enter_openat").is_none());
        assert_eq!(section_defs().len(), 116);
    }
}
