//! Helpers of the special map types: ring buffer, perf event output, stack
//! ids, push/pop/peek for queues, stacks and bloom filters, and the cgroup
//! array's `current_task_under_cgroup` ([`super::cgroup_array`]).
//!
//! Every helper takes the map as the address [`Map::prog_addr`] gave the
//! loader; a map of the wrong type gives `-EINVAL` (the kernel's verifier
//! would have refused the program). In checked runs (the interpreter),
//! every program pointer is checked with [`HelperEnv::check`] before use
//! (`-EFAULT`), reserved ring buffer samples are granted to the program
//! with [`HelperEnv::grant`], and a sample passed to submit/discard must be
//! a live reservation of a ring mapped in this process (otherwise the call
//! does nothing). Under the JIT, programs are trusted, as everywhere.
//! No helper can panic.

use super::bloom::Bloom;
use super::perf_event_array::perf_event_output_raw;
use super::queue_stack::QueueStack;
use super::ringbuf::{self, RingBuf};
use super::{map_type, Map, MapError};
use crate::helpers::{HelperEnv, HelperRegistry};
use crate::memory::Access;

/// Helper ids (`enum bpf_func_id`).
pub mod ids {
    pub const PERF_EVENT_OUTPUT: u32 = 25;
    pub const GET_STACKID: u32 = 27;
    pub const CURRENT_TASK_UNDER_CGROUP: u32 =
        super::super::cgroup_array::BPF_FUNC_CURRENT_TASK_UNDER_CGROUP;
    pub const MAP_PUSH_ELEM: u32 = 87;
    pub const MAP_POP_ELEM: u32 = 88;
    pub const MAP_PEEK_ELEM: u32 = 89;
    pub const RINGBUF_OUTPUT: u32 = 130;
    pub const RINGBUF_RESERVE: u32 = 131;
    pub const RINGBUF_SUBMIT: u32 = 132;
    pub const RINGBUF_DISCARD: u32 = 133;
    pub const RINGBUF_QUERY: u32 = 134;
    pub const USER_RINGBUF_DRAIN: u32 = 209;
}

/// Registers every helper of this module under its kernel id.
pub fn register_special_map_helpers(reg: &mut HelperRegistry) {
    reg.register(
        ids::PERF_EVENT_OUTPUT,
        "bpf_perf_event_output",
        bpf_perf_event_output,
    )
    .register(ids::GET_STACKID, "bpf_get_stackid", bpf_get_stackid)
    .register(
        ids::CURRENT_TASK_UNDER_CGROUP,
        "bpf_current_task_under_cgroup",
        super::cgroup_array::bpf_current_task_under_cgroup,
    )
    .register(ids::MAP_PUSH_ELEM, "bpf_map_push_elem", bpf_map_push_elem)
    .register(ids::MAP_POP_ELEM, "bpf_map_pop_elem", bpf_map_pop_elem)
    .register(ids::MAP_PEEK_ELEM, "bpf_map_peek_elem", bpf_map_peek_elem)
    .register(
        ids::RINGBUF_OUTPUT,
        "bpf_ringbuf_output",
        bpf_ringbuf_output,
    )
    .register(
        ids::RINGBUF_RESERVE,
        "bpf_ringbuf_reserve",
        bpf_ringbuf_reserve,
    )
    .register(
        ids::RINGBUF_SUBMIT,
        "bpf_ringbuf_submit",
        bpf_ringbuf_submit,
    )
    .register(
        ids::RINGBUF_DISCARD,
        "bpf_ringbuf_discard",
        bpf_ringbuf_discard,
    )
    .register(ids::RINGBUF_QUERY, "bpf_ringbuf_query", bpf_ringbuf_query)
    .register(
        ids::USER_RINGBUF_DRAIN,
        "bpf_user_ringbuf_drain",
        super::user_ringbuf::bpf_user_ringbuf_drain,
    );
}

fn neg(errno: i32) -> u64 {
    (-i64::from(errno)) as u64
}

fn ret(r: Result<(), MapError>) -> u64 {
    match r {
        Ok(()) => 0,
        Err(e) => e.to_helper_ret() as u64,
    }
}

/// The map behind a program's map argument.
///
/// # Safety
/// `addr` is 0 or came from [`Map::prog_addr`] of a map the program holds
/// (the loader guarantees it, as the kernel's verifier does).
unsafe fn map_arg<'a>(addr: u64) -> Option<&'a Map> {
    // SAFETY: forwarded contract.
    (addr != 0).then(|| unsafe { Map::from_prog_addr(addr) })
}

/// `HelperEnv::check`, treating a null env as an unchecked run.
///
/// # Safety
/// `env` is null or the run's environment.
unsafe fn check(env: *mut HelperEnv, addr: u64, len: u64, access: Access) -> bool {
    // SAFETY: forwarded contract.
    match unsafe { env.as_ref() } {
        Some(e) => e.check(addr, len, access) && (len == 0 || addr != 0),
        None => addr != 0 || len == 0,
    }
}

/// # Safety
/// `env` is null or the run's environment.
unsafe fn is_checked(env: *mut HelperEnv) -> bool {
    // SAFETY: forwarded contract.
    unsafe { env.as_ref() }.is_some_and(|e| e.checked)
}

fn ringbuf_of(map: &Map) -> Option<&RingBuf> {
    if map.map_type() != map_type::RINGBUF {
        return None;
    }
    map.downcast::<RingBuf>()
}

/// `long bpf_ringbuf_output(void *ringbuf, void *data, u64 size, u64 flags)`
///
/// # Safety
/// Called by an engine with a map address from the loader and its env.
pub unsafe extern "C" fn bpf_ringbuf_output(
    map: u64,
    data: u64,
    size: u64,
    flags: u64,
    _: u64,
    env: *mut HelperEnv,
) -> u64 {
    // SAFETY: helper contract.
    let Some(rb) = (unsafe { map_arg(map) }).and_then(ringbuf_of) else {
        return neg(libc::EINVAL);
    };
    // SAFETY: helper contract.
    if !unsafe { check(env, data, size, Access::Read) } {
        return neg(libc::EFAULT);
    }
    // SAFETY: checked (or trusted) program memory of `size` bytes.
    match unsafe { rb.output_raw(data as *const u8, size, flags) } {
        Ok(()) => 0,
        Err(e) => neg(e.errno()),
    }
}

/// `void *bpf_ringbuf_reserve(void *ringbuf, u64 size, u64 flags)`
///
/// # Safety
/// Called by an engine with a map address from the loader and its env.
pub unsafe extern "C" fn bpf_ringbuf_reserve(
    map: u64,
    size: u64,
    flags: u64,
    _: u64,
    _: u64,
    env: *mut HelperEnv,
) -> u64 {
    if flags != 0 {
        return 0;
    }
    // SAFETY: helper contract.
    let Some(rb) = (unsafe { map_arg(map) }).and_then(ringbuf_of) else {
        return 0;
    };
    let Some(sample) = rb.reserve(size) else {
        return 0;
    };
    let addr = sample.as_ptr() as u64;
    // SAFETY: helper contract: null or the run's env, used exclusively here.
    if let Some(e) = unsafe { env.as_mut() } {
        e.grant(addr, size, Access::ReadWrite);
    }
    addr
}

/// Submit or discard.
///
/// # Safety
/// Called by an engine with its env.
unsafe fn commit_helper(sample: u64, flags: u64, env: *mut HelperEnv, discard: bool) -> u64 {
    // SAFETY: helper contract.
    if unsafe { is_checked(env) }
        && !(ringbuf::is_live_sample(sample)
            // SAFETY: helper contract.
            && unsafe { check(env, sample, 1, Access::Write) })
    {
        return 0;
    }
    if sample == 0 {
        return 0;
    }
    // SAFETY: a live reservation (checked above, or guaranteed by the
    // trusted program under the JIT).
    unsafe { ringbuf::commit(sample as *mut u8, flags, discard) };
    0
}

/// `void bpf_ringbuf_submit(void *data, u64 flags)`
///
/// # Safety
/// Called by an engine with its env.
pub unsafe extern "C" fn bpf_ringbuf_submit(
    sample: u64,
    flags: u64,
    _: u64,
    _: u64,
    _: u64,
    env: *mut HelperEnv,
) -> u64 {
    // SAFETY: helper contract.
    unsafe { commit_helper(sample, flags, env, false) }
}

/// `void bpf_ringbuf_discard(void *data, u64 flags)`
///
/// # Safety
/// Called by an engine with its env.
pub unsafe extern "C" fn bpf_ringbuf_discard(
    sample: u64,
    flags: u64,
    _: u64,
    _: u64,
    _: u64,
    env: *mut HelperEnv,
) -> u64 {
    // SAFETY: helper contract.
    unsafe { commit_helper(sample, flags, env, true) }
}

/// `u64 bpf_ringbuf_query(void *ringbuf, u64 flags)`
///
/// # Safety
/// Called by an engine with a map address from the loader.
pub unsafe extern "C" fn bpf_ringbuf_query(
    map: u64,
    flags: u64,
    _: u64,
    _: u64,
    _: u64,
    _env: *mut HelperEnv,
) -> u64 {
    // SAFETY: helper contract.
    match unsafe { map_arg(map) }.and_then(ringbuf_of) {
        Some(rb) => rb.query(flags),
        None => 0,
    }
}

/// `long bpf_perf_event_output(void *ctx, void *map, u64 flags, void *data, u64 size)`
///
/// # Safety
/// Called by an engine with a map address from the loader and its env.
pub unsafe extern "C" fn bpf_perf_event_output(
    _ctx: u64,
    map: u64,
    flags: u64,
    data: u64,
    size: u64,
    env: *mut HelperEnv,
) -> u64 {
    // SAFETY: helper contract.
    let Some(map) = (unsafe { map_arg(map) }) else {
        return neg(libc::EINVAL);
    };
    if map.map_type() != map_type::PERF_EVENT_ARRAY {
        return neg(libc::EINVAL);
    }
    // SAFETY: helper contract.
    if !unsafe { check(env, data, size, Access::Read) } {
        return neg(libc::EFAULT);
    }
    // SAFETY: checked (or trusted) program memory of `size` bytes.
    match unsafe { perf_event_output_raw(map, flags, data as *const u8, size) } {
        Ok(()) => 0,
        Err(e) => neg(e),
    }
}

/// `long bpf_get_stackid(void *ctx, void *map, u64 flags)`
///
/// # Safety
/// Called by an engine with a map address from the loader and its env.
pub unsafe extern "C" fn bpf_get_stackid(
    _ctx: u64,
    map: u64,
    flags: u64,
    _: u64,
    _: u64,
    env: *mut HelperEnv,
) -> u64 {
    // SAFETY: helper contract.
    let Some(map) = (unsafe { map_arg(map) }) else {
        return neg(libc::EINVAL);
    };
    if map.map_type() != map_type::STACK_TRACE {
        return neg(libc::EINVAL);
    }
    super::stack_trace::get_stackid(env, map, flags) as u64
}

enum PushPop<'a> {
    Queue(&'a QueueStack),
    Bloom(&'a Bloom),
}

fn push_pop_of(map: &Map) -> Option<PushPop<'_>> {
    match map.map_type() {
        map_type::QUEUE | map_type::STACK => map.downcast::<QueueStack>().map(PushPop::Queue),
        map_type::BLOOM_FILTER => map.downcast::<Bloom>().map(PushPop::Bloom),
        _ => None,
    }
}

/// `long bpf_map_push_elem(void *map, const void *value, u64 flags)`
///
/// # Safety
/// Called by an engine with a map address from the loader and its env.
pub unsafe extern "C" fn bpf_map_push_elem(
    map: u64,
    value: u64,
    flags: u64,
    _: u64,
    _: u64,
    env: *mut HelperEnv,
) -> u64 {
    // SAFETY: helper contract.
    let Some(m) = (unsafe { map_arg(map) }).and_then(push_pop_of) else {
        return neg(libc::EINVAL);
    };
    let size = match &m {
        PushPop::Queue(q) => q.value_size(),
        PushPop::Bloom(b) => b.value_size(),
    };
    // SAFETY: helper contract.
    if !unsafe { check(env, value, u64::from(size), Access::Read) } {
        return neg(libc::EFAULT);
    }
    match m {
        // SAFETY: checked (or trusted) program memory of value_size bytes.
        PushPop::Queue(q) => ret(unsafe { q.push_raw(value as *const u8, flags) }),
        PushPop::Bloom(b) => {
            // SAFETY: as above.
            let v = unsafe { std::slice::from_raw_parts(value as *const u8, size as usize) };
            ret(b.push(v, flags))
        }
    }
}

/// Pop or peek.
///
/// # Safety
/// Called by an engine with a map address from the loader and its env.
unsafe fn get_helper(map: u64, value: u64, env: *mut HelperEnv, delete: bool) -> u64 {
    // SAFETY: helper contract.
    let Some(m) = (unsafe { map_arg(map) }).and_then(push_pop_of) else {
        return neg(libc::EINVAL);
    };
    match m {
        PushPop::Queue(q) => {
            let size = q.value_size();
            // SAFETY: helper contract.
            if !unsafe { check(env, value, u64::from(size), Access::Write) } {
                return neg(libc::EFAULT);
            }
            // SAFETY: checked (or trusted) program memory of value_size bytes.
            let r = unsafe { q.get_raw(value as *mut u8, delete) };
            if r.is_err() {
                // The kernel zeroes the value of a failed pop/peek.
                // SAFETY: as above.
                unsafe { std::ptr::write_bytes(value as *mut u8, 0, size as usize) };
            }
            ret(r)
        }
        PushPop::Bloom(b) => {
            if delete {
                return neg(libc::EOPNOTSUPP);
            }
            let size = b.value_size();
            // SAFETY: helper contract.
            if !unsafe { check(env, value, u64::from(size), Access::Read) } {
                return neg(libc::EFAULT);
            }
            // SAFETY: checked (or trusted) program memory of value_size bytes.
            let v = unsafe { std::slice::from_raw_parts(value as *const u8, size as usize) };
            ret(b.peek(v))
        }
    }
}

/// `long bpf_map_pop_elem(void *map, void *value)`
///
/// # Safety
/// Called by an engine with a map address from the loader and its env.
pub unsafe extern "C" fn bpf_map_pop_elem(
    map: u64,
    value: u64,
    _: u64,
    _: u64,
    _: u64,
    env: *mut HelperEnv,
) -> u64 {
    // SAFETY: helper contract.
    unsafe { get_helper(map, value, env, true) }
}

/// `long bpf_map_peek_elem(void *map, void *value)`
///
/// # Safety
/// Called by an engine with a map address from the loader and its env.
pub unsafe extern "C" fn bpf_map_peek_elem(
    map: u64,
    value: u64,
    _: u64,
    _: u64,
    _: u64,
    env: *mut HelperEnv,
) -> u64 {
    // SAFETY: helper contract.
    unsafe { get_helper(map, value, env, false) }
}
