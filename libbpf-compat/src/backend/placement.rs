//! Which backend each map and program of an object goes to.
//!
//! - `user` ([`BackendMode::User`]): everything in user space (programs
//!   of kernel-only types still load, for `bpf_prog_test_run`; attaching
//!   them fails).
//! - `kernel`: everything in the kernel, as with the real libbpf.
//! - `auto` (the default): programs userbpf attaches in user space
//!   (uprobes, uretprobes, USDT, `syscall`, and the syscall sections:
//!   `tp/syscalls/sys_{enter,exit}_*`, `tp/raw_syscalls/sys_{enter,exit}`,
//!   `raw_tp/sys_{enter,exit}`, `ksyscall`, `kretsyscall`, with their
//!   `tracepoint`/`raw_tracepoint` spellings) stay there; the others go to
//!   the kernel when this process may load kernel programs, and stay in
//!   user space otherwise (attaching them then fails with a clear error).
//!   A map lives in the kernel when a kernel program uses it, directly or
//!   as the inner map or slot of a kernel map; otherwise in user space.

use std::collections::BTreeSet;

use userbpf_runtime::isa::{BPF_PSEUDO_MAP_IDX, BPF_PSEUDO_MAP_IDX_VALUE};

use crate::object::{BpfProgram, InitSlot, Object, ProgType};

/// The environment variable that picks the backend: `auto`, `user`
/// (or `userspace`) or `kernel`.
pub const BACKEND_ENV: &str = "USERBPF_BACKEND";

/// The backend switch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackendMode {
    #[default]
    Auto,
    User,
    Kernel,
}

impl BackendMode {
    /// Parses a switch value (`None` for anything unknown).
    pub fn parse(s: &str) -> Option<BackendMode> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Some(BackendMode::Auto),
            "user" | "userspace" => Some(BackendMode::User),
            "kernel" => Some(BackendMode::Kernel),
            _ => None,
        }
    }

    /// The mode `USERBPF_BACKEND` names; `Err` carries an unknown value.
    pub fn from_env() -> Result<BackendMode, String> {
        match std::env::var(BACKEND_ENV) {
            Ok(v) => BackendMode::parse(&v).ok_or(v),
            Err(_) => Ok(BackendMode::Auto),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            BackendMode::Auto => "auto",
            BackendMode::User => "user",
            BackendMode::Kernel => "kernel",
        }
    }
}

/// Where one map or program lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    User,
    Kernel,
}

/// The side of every map and program of an object, by the object's indices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    pub maps: Vec<Side>,
    pub programs: Vec<Side>,
}

impl Placement {
    /// Everything on one side.
    pub fn all(obj: &Object, side: Side) -> Placement {
        Placement {
            maps: vec![side; obj.maps().len()],
            programs: vec![side; obj.programs().count()],
        }
    }

    pub fn any_kernel(&self) -> bool {
        self.maps.contains(&Side::Kernel) || self.programs.contains(&Side::Kernel)
    }

    pub fn any_user(&self) -> bool {
        self.maps.contains(&Side::User) || self.programs.contains(&Side::User)
    }

    /// Maps that a user-space program uses but that live in the kernel
    /// (the mixed case).
    pub fn shared_maps(&self, obj: &Object) -> BTreeSet<usize> {
        let mut shared = BTreeSet::new();
        for (p, side) in obj.programs().zip(&self.programs) {
            if *side == Side::User && p.autoload() {
                for m in program_maps(p) {
                    if self.maps.get(m) == Some(&Side::Kernel) {
                        shared.insert(m);
                    }
                }
            }
        }
        shared
    }
}

/// Whether userbpf serves this program in user space when attached.
pub fn runs_in_user_space(p: &BpfProgram) -> bool {
    use crate::object::sections::AttachHandler;
    if p.prog_type() == ProgType::SYSCALL {
        return true;
    }
    // Syscall tracepoints, raw_tp sys_enter/sys_exit and ksyscalls are
    // served by the agents' syscall interception. A bare `tp` or `raw_tp`
    // section (attached by hand to any tracepoint) keeps going to the
    // kernel; a bare `ksyscall` can only attach to syscalls.
    if crate::attach::syscall::parse_section(p.section_name()).is_some() {
        return true;
    }
    matches!(
        p.sec_def().and_then(|d| d.attach_handler),
        Some(AttachHandler::Uprobe | AttachHandler::UprobeMulti | AttachHandler::Usdt)
    )
}

/// The maps a relocated program refers to (object indices).
pub fn program_maps(p: &BpfProgram) -> BTreeSet<usize> {
    let mut out = BTreeSet::new();
    if let Some(insns) = p.insns() {
        for insn in insns {
            if insn.is_lddw() && matches!(insn.src, BPF_PSEUDO_MAP_IDX | BPF_PSEUDO_MAP_IDX_VALUE) {
                out.insert(insn.imm as u32 as usize);
            }
        }
    }
    out
}

/// Decides the placement of a relocated object.
pub fn plan(obj: &Object, mode: BackendMode, kernel_permitted: bool) -> Placement {
    match mode {
        BackendMode::User => return Placement::all(obj, Side::User),
        BackendMode::Kernel => return Placement::all(obj, Side::Kernel),
        BackendMode::Auto => {}
    }
    let programs: Vec<Side> = obj
        .programs()
        .map(|p| {
            if kernel_permitted && !runs_in_user_space(p) {
                Side::Kernel
            } else {
                Side::User
            }
        })
        .collect();
    let mut maps = vec![Side::User; obj.maps().len()];
    // struct_ops maps exist only in the kernel.
    for (m, side) in obj.maps().iter().zip(maps.iter_mut()) {
        if kernel_permitted && m.map_type() == crate::object::MapType::STRUCT_OPS {
            *side = Side::Kernel;
        }
    }
    for (p, side) in obj.programs().zip(&programs) {
        if *side == Side::Kernel && p.autoload() {
            for m in program_maps(p) {
                if let Some(s) = maps.get_mut(m) {
                    *s = Side::Kernel;
                }
            }
        }
    }
    // Inner maps of kernel maps, and program arrays holding kernel
    // programs, are kernel maps too (until nothing changes).
    loop {
        let mut changed = false;
        for (i, m) in obj.maps().iter().enumerate() {
            for slot in m.init_slots().iter().flatten() {
                match slot {
                    InitSlot::Map(inner)
                        if maps[i] == Side::Kernel && maps.get(*inner) == Some(&Side::User) =>
                    {
                        maps[*inner] = Side::Kernel;
                        changed = true;
                    }
                    InitSlot::Program(name) => {
                        let kernel_prog = obj
                            .programs()
                            .position(|p| p.name() == name)
                            .is_some_and(|j| programs[j] == Side::Kernel);
                        if kernel_prog && maps[i] == Side::User {
                            maps[i] = Side::Kernel;
                            changed = true;
                        }
                    }
                    _ => {}
                }
            }
        }
        if !changed {
            break;
        }
    }
    Placement { maps, programs }
}
