//! Helpers: the registry (helper functions keyed by id, shared by every
//! engine), the per-run [`HelperEnv`], and the helpers tracing programs use.
//!
//! A helper is a plain `extern "C"` function so that JIT-compiled code can
//! call it directly by address. It receives the five argument registers and,
//! as a sixth argument, a pointer to the [`HelperEnv`] of the current run.
//!
//! # Rules for helpers
//! - A helper must never panic (it is called from eBPF frames; a panic in
//!   an `extern "C"` function aborts the process): checked arithmetic, no
//!   indexing that can fail, fixed buffers.
//! - Memory that belongs to the program (its stack, its context, map values
//!   it was granted) is checked with [`HelperEnv::check`] before use. That
//!   is a real check in the interpreter and always passes under the JIT,
//!   whose programs are trusted.
//! - Arbitrary user memory (the target's data) is read and written only
//!   through [`safe_mem`], which turns a bad pointer into an error instead
//!   of a crash, without a syscall.
//! - Errors are returned as the kernel returns them: `-errno` as a `u64`.
//!
//! # Modules
//! | module | concept |
//! |---|---|
//! | [`safe_mem`] | fault-recovering copies from and to arbitrary user pointers |
//! | [`run_info`] | [`RunInfo`] and [`PtRegs`]: what an attached program knows about its hit; `get_func_ip`, `get_attach_cookie`, `override_return` |
//! | [`callback`] | calling a program's callback subprogram from a helper; `bpf_loop` |
//! | [`dynptr`] | `struct bpf_dynptr`; `dynptr_read`, `dynptr_data` |
//! | [`probe`] | `probe_read*`, `probe_write_user` |
//! | [`time`] | `ktime_get_*`, `jiffies64` |
//! | [`task`] | the current thread: pid/tid, uid/gid, comm, CPU, NUMA node |
//! | [`cgroup`] | the current thread's cgroup v2: `get_current_cgroup_id` |
//! | [`signal`] | `send_signal`, `send_signal_thread` |
//! | [`random`] | `get_prandom_u32` |
//! | [`printf`] | the kernel's `bpf_bprintf` format subset; `snprintf` |
//! | [`trace_pipe`] | `trace_printk` and the namespace's trace pipe |
//! | [`string`] | `strncmp` |
//! | [`stack`] | `get_stack` (user stacks through frame pointers) |

use std::collections::HashMap;
use std::ffi::c_void;

use crate::memory::{Access, Region};

pub mod callback;
pub mod cgroup;
pub mod dynptr;
pub mod printf;
pub mod probe;
pub mod random;
pub mod run_info;
pub mod safe_mem;
pub mod signal;
pub mod stack;
pub mod string;
pub mod task;
pub mod time;
pub mod trace_pipe;

pub use callback::CallbackError;
pub use run_info::{PtRegs, RunInfo};

/// Signature of every helper: r1..r5 and the environment of the run.
///
/// # Safety
/// Helpers are called from eBPF programs with arbitrary argument values.
/// A helper that dereferences an argument must check it first (with
/// [`HelperEnv::check`] in checked engines) or use a fault-safe copy.
pub type HelperFn = unsafe extern "C" fn(u64, u64, u64, u64, u64, *mut HelperEnv) -> u64;

/// One registered helper.
#[derive(Clone, Copy, Debug)]
pub struct Helper {
    pub id: u32,
    pub name: &'static str,
    pub func: HelperFn,
}

/// Helpers by id. Engines resolve `call imm` through it at load time, so an
/// unknown helper id is a load error, not a run-time surprise.
#[derive(Clone, Debug, Default)]
pub struct HelperRegistry {
    by_id: HashMap<u32, Helper>,
}

impl HelperRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `func` under `id`, replacing any previous helper with that id.
    pub fn register(&mut self, id: u32, name: &'static str, func: HelperFn) -> &mut Self {
        self.by_id.insert(id, Helper { id, name, func });
        self
    }

    pub fn get(&self, id: u32) -> Option<&Helper> {
        self.by_id.get(&id)
    }

    pub fn contains(&self, id: u32) -> bool {
        self.by_id.contains_key(&id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Helper> {
        self.by_id.values()
    }
}

/// Kernel helper ids (`enum bpf_func_id` in `include/uapi/linux/bpf.h`) of
/// the helpers this module implements.
pub mod ids {
    pub const PROBE_READ: u32 = 4;
    pub const KTIME_GET_NS: u32 = 5;
    pub const TRACE_PRINTK: u32 = 6;
    pub const GET_PRANDOM_U32: u32 = 7;
    pub const GET_SMP_PROCESSOR_ID: u32 = 8;
    pub const GET_CURRENT_PID_TGID: u32 = 14;
    pub const GET_CURRENT_UID_GID: u32 = 15;
    pub const GET_CURRENT_COMM: u32 = 16;
    pub const GET_CURRENT_TASK: u32 = 35;
    pub const PROBE_WRITE_USER: u32 = 36;
    pub const GET_NUMA_NODE_ID: u32 = 42;
    pub const PROBE_READ_STR: u32 = 45;
    pub const OVERRIDE_RETURN: u32 = 58;
    pub const GET_STACK: u32 = 67;
    pub const GET_CURRENT_CGROUP_ID: u32 = 80;
    pub const SEND_SIGNAL: u32 = 109;
    pub const PROBE_READ_USER: u32 = 112;
    pub const PROBE_READ_KERNEL: u32 = 113;
    pub const PROBE_READ_USER_STR: u32 = 114;
    pub const PROBE_READ_KERNEL_STR: u32 = 115;
    pub const SEND_SIGNAL_THREAD: u32 = 117;
    pub const JIFFIES64: u32 = 118;
    pub const KTIME_GET_BOOT_NS: u32 = 125;
    pub const KTIME_GET_COARSE_NS: u32 = 160;
    pub const SNPRINTF: u32 = 165;
    pub const GET_FUNC_IP: u32 = 173;
    pub const GET_ATTACH_COOKIE: u32 = 174;
    pub const LOOP: u32 = 181;
    pub const STRNCMP: u32 = 182;
    pub const KTIME_GET_TAI_NS: u32 = 208;
    pub const DYNPTR_READ: u32 = 201;
    pub const DYNPTR_DATA: u32 = 203;
}

/// Every helper of [`register_tracing_helpers`]: id, name, function.
pub const TRACING_HELPERS: &[(u32, &str, HelperFn)] = &[
    (ids::PROBE_READ, "bpf_probe_read", probe::bpf_probe_read),
    (
        ids::KTIME_GET_NS,
        "bpf_ktime_get_ns",
        time::bpf_ktime_get_ns,
    ),
    (
        ids::TRACE_PRINTK,
        "bpf_trace_printk",
        trace_pipe::bpf_trace_printk,
    ),
    (
        ids::GET_PRANDOM_U32,
        "bpf_get_prandom_u32",
        random::bpf_get_prandom_u32,
    ),
    (
        ids::GET_SMP_PROCESSOR_ID,
        "bpf_get_smp_processor_id",
        task::bpf_get_smp_processor_id,
    ),
    (
        ids::GET_CURRENT_PID_TGID,
        "bpf_get_current_pid_tgid",
        task::bpf_get_current_pid_tgid,
    ),
    (
        ids::GET_CURRENT_UID_GID,
        "bpf_get_current_uid_gid",
        task::bpf_get_current_uid_gid,
    ),
    (
        ids::GET_CURRENT_COMM,
        "bpf_get_current_comm",
        task::bpf_get_current_comm,
    ),
    (
        ids::GET_CURRENT_TASK,
        "bpf_get_current_task",
        task::bpf_get_current_task,
    ),
    (
        ids::PROBE_WRITE_USER,
        "bpf_probe_write_user",
        probe::bpf_probe_write_user,
    ),
    (
        ids::GET_NUMA_NODE_ID,
        "bpf_get_numa_node_id",
        task::bpf_get_numa_node_id,
    ),
    (
        ids::PROBE_READ_STR,
        "bpf_probe_read_str",
        probe::bpf_probe_read_str,
    ),
    (
        ids::OVERRIDE_RETURN,
        "bpf_override_return",
        run_info::bpf_override_return,
    ),
    (ids::GET_STACK, "bpf_get_stack", stack::bpf_get_stack),
    (
        ids::GET_CURRENT_CGROUP_ID,
        "bpf_get_current_cgroup_id",
        cgroup::bpf_get_current_cgroup_id,
    ),
    (ids::SEND_SIGNAL, "bpf_send_signal", signal::bpf_send_signal),
    (
        ids::PROBE_READ_USER,
        "bpf_probe_read_user",
        probe::bpf_probe_read_user,
    ),
    (
        ids::PROBE_READ_KERNEL,
        "bpf_probe_read_kernel",
        probe::bpf_probe_read_kernel,
    ),
    (
        ids::PROBE_READ_USER_STR,
        "bpf_probe_read_user_str",
        probe::bpf_probe_read_user_str,
    ),
    (
        ids::PROBE_READ_KERNEL_STR,
        "bpf_probe_read_kernel_str",
        probe::bpf_probe_read_kernel_str,
    ),
    (
        ids::SEND_SIGNAL_THREAD,
        "bpf_send_signal_thread",
        signal::bpf_send_signal_thread,
    ),
    (ids::JIFFIES64, "bpf_jiffies64", time::bpf_jiffies64),
    (
        ids::KTIME_GET_BOOT_NS,
        "bpf_ktime_get_boot_ns",
        time::bpf_ktime_get_boot_ns,
    ),
    (
        ids::KTIME_GET_COARSE_NS,
        "bpf_ktime_get_coarse_ns",
        time::bpf_ktime_get_coarse_ns,
    ),
    (ids::SNPRINTF, "bpf_snprintf", printf::bpf_snprintf),
    (
        ids::GET_FUNC_IP,
        "bpf_get_func_ip",
        run_info::bpf_get_func_ip,
    ),
    (
        ids::GET_ATTACH_COOKIE,
        "bpf_get_attach_cookie",
        run_info::bpf_get_attach_cookie,
    ),
    (ids::LOOP, "bpf_loop", callback::bpf_loop),
    (ids::STRNCMP, "bpf_strncmp", string::bpf_strncmp),
    (
        ids::KTIME_GET_TAI_NS,
        "bpf_ktime_get_tai_ns",
        time::bpf_ktime_get_tai_ns,
    ),
    (ids::DYNPTR_READ, "bpf_dynptr_read", dynptr::bpf_dynptr_read),
    (ids::DYNPTR_DATA, "bpf_dynptr_data", dynptr::bpf_dynptr_data),
];

/// Registers every helper of this module (see [`TRACING_HELPERS`]) under
/// its kernel id. Map, ring buffer, perf and stack-map helpers live with
/// the maps.
pub fn register_tracing_helpers(reg: &mut HelperRegistry) {
    for &(id, name, func) in TRACING_HELPERS {
        reg.register(id, name, func);
    }
}

/// Errno values helpers return (negated), as the kernel's.
pub(crate) mod errno {
    pub const E2BIG: i64 = 7;
    pub const EFAULT: i64 = 14;
    pub const EINVAL: i64 = 22;
    pub const ENOSPC: i64 = 28;
    pub const EOPNOTSUPP: i64 = 95;
}

/// `-errno` as the u64 a helper returns.
#[inline]
pub(crate) fn neg(errno: i64) -> u64 {
    errno.wrapping_neg() as u64
}

/// The program memory a checked engine lets helpers see besides the
/// grants: the context, the stacks of the live frames and the extra
/// regions of the run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ProgMem {
    pub ctx_lo: u64,
    pub ctx_hi: u64,
    /// Bottom of the deepest live frame; the interpreter updates it before
    /// each helper call.
    pub stack_lo: u64,
    pub stack_hi: u64,
    pub extra: *const Region,
    pub extra_len: usize,
}

impl ProgMem {
    const EMPTY: ProgMem = ProgMem {
        ctx_lo: 0,
        ctx_hi: 0,
        stack_lo: 0,
        stack_hi: 0,
        extra: std::ptr::null(),
        extra_len: 0,
    };

    fn extra(&self) -> &[Region] {
        if self.extra.is_null() {
            return &[];
        }
        // SAFETY: the interpreter sets `extra` from a slice that outlives
        // the run, and the env does not outlive the run.
        unsafe { std::slice::from_raw_parts(self.extra, self.extra_len) }
    }
}

/// State of one program run that helpers may read or extend.
///
/// Created by the engine for each run and passed to every helper call.
pub struct HelperEnv {
    /// The context pointer the program was started with (r1 at entry).
    pub ctx: *mut u8,
    /// Opaque data of the embedder. The tracing helpers of this module
    /// expect it to be null or to point to a [`RunInfo`] that lives for the
    /// run (`bpf_get_attach_cookie`, `bpf_get_func_ip`, `bpf_get_stack`,
    /// `bpf_override_return` read it).
    pub user: *mut c_void,
    /// Memory the run may access beyond the context and the stack: regions
    /// granted by the embedder and by helpers that return pointers.
    pub(crate) grants: Vec<Region>,
    /// Whether the engine checks accesses against the regions. When false,
    /// [`HelperEnv::grant`] records nothing and [`HelperEnv::check`] passes.
    pub(crate) checked: bool,
    /// Program memory of a checked run (see [`ProgMem`]).
    pub(crate) mem: ProgMem,
    /// How helpers call back into the program (see [`callback`]); set by
    /// the engine for the length of a run.
    pub(crate) callback: Option<callback::CallbackHook>,
    /// Set when a callback stopped the run with an error: the engine ends
    /// the run as soon as the helper returns.
    pub(crate) aborted: bool,
}

impl HelperEnv {
    pub fn new(ctx: *mut u8, user: *mut c_void, checked: bool) -> Self {
        HelperEnv {
            ctx,
            user,
            grants: Vec::new(),
            checked,
            mem: ProgMem::EMPTY,
            callback: None,
            aborted: false,
        }
    }

    /// Whether the engine checks memory accesses (the interpreter).
    pub fn is_checked(&self) -> bool {
        self.checked
    }

    /// Lets the program access `len` bytes at `addr` for the rest of the run,
    /// as it may access a map value that `bpf_map_lookup_elem` returned.
    pub fn grant(&mut self, addr: u64, len: u64, access: Access) {
        if !self.checked || len == 0 {
            return;
        }
        let region = Region::new(addr, len, access);
        // Helpers called in a loop hand out the same pointers again and again.
        if !self.grants.contains(&region) {
            self.grants.push(region);
        }
    }

    /// True when the program may access `len` bytes at `addr`: its
    /// context, the stacks of its live frames, the extra regions of the run
    /// or granted regions. Always true when the engine does not check
    /// (the JIT). A helper checks every pointer argument that names program
    /// memory with this before touching it. `len == 0` is always allowed.
    #[inline]
    pub fn check(&self, addr: u64, len: u64, access: Access) -> bool {
        if !self.checked || len == 0 {
            return true;
        }
        self.check_regions(addr, len, access)
    }

    fn check_regions(&self, addr: u64, len: u64, access: Access) -> bool {
        let m = &self.mem;
        within(addr, len, m.stack_lo, m.stack_hi)
            || within(addr, len, m.ctx_lo, m.ctx_hi)
            || m.extra().iter().any(|r| r.contains(addr, len, access))
            || self.grants.iter().any(|r| r.contains(addr, len, access))
    }

    /// The regions granted so far.
    pub fn grants(&self) -> &[Region] {
        &self.grants
    }
}

/// True when `[addr, addr + len)` lies inside `[lo, hi)`, without overflow.
#[inline]
fn within(addr: u64, len: u64, lo: u64, hi: u64) -> bool {
    addr >= lo && addr <= hi && len <= hi - addr
}

/// Bytes of program memory a helper reads, after [`HelperEnv::check`]:
/// copied with [`safe_mem`] so that even an unchecked (JIT) run with a bad
/// pointer gets an error instead of a crash. False on a failed check or
/// fault.
pub(crate) fn read_prog(env: &HelperEnv, dst: &mut [u8], addr: u64) -> bool {
    let len = dst.len() as u64;
    if !env.check(addr, len, Access::Read) {
        return false;
    }
    // SAFETY: `dst` is a valid mutable buffer of its length; the source is
    // read through the fault-recovering routine.
    unsafe { safe_mem::safe_read(dst.as_mut_ptr(), addr as *const u8, dst.len()) }.is_ok()
}

/// The `HelperEnv` behind a helper's env pointer, if any.
///
/// # Safety
/// `env` must be null or the environment the engine passed to the helper.
#[inline]
pub(crate) unsafe fn env_ref<'a>(env: *mut HelperEnv) -> Option<&'a mut HelperEnv> {
    // SAFETY: forwarded from the caller.
    unsafe { env.as_mut() }
}
