//! What an attached program knows about the hit it runs for: the
//! [`RunInfo`] an embedder (the agent) passes in [`HelperEnv::user`], the
//! x86-64 [`PtRegs`], and the helpers that read or write them:
//! `bpf_get_func_ip` (173), `bpf_get_attach_cookie` (174) and
//! `bpf_override_return` (58).
//!
//! The embedder fills a `RunInfo` on its stack for each run and passes its
//! address as the `user` argument of [`crate::vm::Vm::run_with`]. With a
//! null `user`, the helpers behave as for a program that is not attached:
//! no cookie, no function address, no override.

use std::ffi::c_void;

use super::{env_ref, errno, neg, HelperEnv};

/// The kernel's x86-64 `struct pt_regs` (`arch/x86/include/asm/ptrace.h`),
/// field for field: the context of uprobe programs, so that libbpf's
/// `PT_REGS_PARM1(ctx)` and friends read the right offsets.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PtRegs {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub bp: u64,
    pub bx: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub ax: u64,
    pub cx: u64,
    pub dx: u64,
    pub si: u64,
    pub di: u64,
    pub orig_ax: u64,
    pub ip: u64,
    pub cs: u64,
    pub flags: u64,
    pub sp: u64,
    pub ss: u64,
}

impl PtRegs {
    /// `PT_REGS_PARM1..6`: the `n`th integer argument (1-based) under the
    /// System V ABI, valid at a function entry.
    pub fn arg(&self, n: usize) -> Option<u64> {
        match n {
            1 => Some(self.di),
            2 => Some(self.si),
            3 => Some(self.dx),
            4 => Some(self.cx),
            5 => Some(self.r8),
            6 => Some(self.r9),
            _ => None,
        }
    }

    /// `PT_REGS_RC`.
    pub fn rc(&self) -> u64 {
        self.ax
    }
}

const _: () = assert!(std::mem::size_of::<PtRegs>() == 21 * 8);
const _: () = assert!(std::mem::offset_of!(PtRegs, di) == 14 * 8);
const _: () = assert!(std::mem::offset_of!(PtRegs, ip) == 16 * 8);
const _: () = assert!(std::mem::offset_of!(PtRegs, sp) == 19 * 8);

/// Per-run information from the embedder to the helpers; `#[repr(C)]` so
/// that a C or assembly hook can fill it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunInfo {
    /// The link's cookie (`bpf_get_attach_cookie`).
    pub attach_cookie: u64,
    /// The address of the probed instruction or function
    /// (`bpf_get_func_ip`: for a uprobe, the probe address).
    pub func_ip: u64,
    /// The registers at the hit (the uprobe context); `bpf_get_stack`
    /// starts its walk from `ip`, `bp` and `sp`. May be null.
    pub regs: *mut PtRegs,
    /// Set by `bpf_override_return`: the value the probed function should
    /// return instead of running. Meaningful when `override_set != 0`; the
    /// embedder acts on it after the run.
    pub override_ret: u64,
    /// Non-zero once the program called `bpf_override_return`.
    pub override_set: u32,
    /// Reserved, zero.
    pub flags: u32,
}

impl Default for RunInfo {
    fn default() -> Self {
        RunInfo {
            attach_cookie: 0,
            func_ip: 0,
            regs: std::ptr::null_mut(),
            override_ret: 0,
            override_set: 0,
            flags: 0,
        }
    }
}

impl RunInfo {
    /// The value to pass as `user` to a run.
    pub fn as_user_ptr(&mut self) -> *mut c_void {
        (self as *mut RunInfo).cast()
    }

    /// The override `bpf_override_return` asked for, if any.
    pub fn override_return(&self) -> Option<u64> {
        (self.override_set != 0).then_some(self.override_ret)
    }
}

/// The run's `RunInfo`, if the embedder passed one.
///
/// # Safety
/// `env` is null or the environment of the current run, whose `user` is
/// null or a `RunInfo` valid for the run (the contract of these helpers).
pub(crate) unsafe fn run_info<'a>(env: *mut HelperEnv) -> Option<&'a mut RunInfo> {
    // SAFETY: forwarded from the caller.
    let env = unsafe { env_ref(env) }?;
    // SAFETY: `user` is null or a live RunInfo (contract above).
    unsafe { env.user.cast::<RunInfo>().as_mut() }
}

/// `u64 bpf_get_func_ip(void *ctx)`: the probed address, 0 when unknown.
///
/// # Safety
/// Called by an engine with its env, whose `user` is null or a live
/// [`RunInfo`].
pub unsafe extern "C" fn bpf_get_func_ip(
    _ctx: u64,
    _: u64,
    _: u64,
    _: u64,
    _: u64,
    env: *mut HelperEnv,
) -> u64 {
    // SAFETY: engine contract.
    unsafe { run_info(env) }.map_or(0, |info| info.func_ip)
}

/// `u64 bpf_get_attach_cookie(void *ctx)`: the link's cookie, 0 when none.
///
/// # Safety
/// Called by an engine with its env, whose `user` is null or a live
/// [`RunInfo`].
pub unsafe extern "C" fn bpf_get_attach_cookie(
    _ctx: u64,
    _: u64,
    _: u64,
    _: u64,
    _: u64,
    env: *mut HelperEnv,
) -> u64 {
    // SAFETY: engine contract.
    unsafe { run_info(env) }.map_or(0, |info| info.attach_cookie)
}

/// `long bpf_override_return(struct pt_regs *regs, u64 rc)`: records `rc`
/// in the run's [`RunInfo`]; the embedder makes the probed function return
/// it. Returns 0 (as the kernel), or -EOPNOTSUPP when the run has no
/// `RunInfo` (the program is not attached to anything that can override).
///
/// # Safety
/// Called by an engine with its env, whose `user` is null or a live
/// [`RunInfo`].
pub unsafe extern "C" fn bpf_override_return(
    _regs: u64,
    rc: u64,
    _: u64,
    _: u64,
    _: u64,
    env: *mut HelperEnv,
) -> u64 {
    // SAFETY: engine contract.
    match unsafe { run_info(env) } {
        Some(info) => {
            info.override_ret = rc;
            info.override_set = 1;
            0
        }
        None => neg(errno::EOPNOTSUPP),
    }
}
