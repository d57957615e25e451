//! `bpf_get_prandom_u32` (7): a per-thread xorshift64* generator, seeded
//! once per thread from `getrandom` (and again in a child after `fork`, so
//! parent and child do not repeat each other's numbers). Not
//! cryptographic, like the kernel's.

use std::cell::Cell;

use super::task::fork_generation;
use super::HelperEnv;

#[derive(Clone, Copy)]
struct State {
    generation: u64,
    x: u64,
}

thread_local! {
    static STATE: Cell<State> = const { Cell::new(State { generation: 0, x: 0 }) };
}

#[cold]
fn seed() -> u64 {
    let mut buf = [0u8; 8];
    // SAFETY: writes at most 8 bytes into `buf`.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), libc::GRND_NONBLOCK) };
    let mut x = u64::from_ne_bytes(buf);
    if n != 8 {
        // No entropy yet (very early boot): mix what differs between threads.
        let (pid, tid) = super::task::current_ids();
        x ^= super::time::clock_ns(libc::CLOCK_MONOTONIC)
            ^ (u64::from(pid) << 32)
            ^ u64::from(tid)
            ^ (&buf as *const _ as u64);
    }
    // xorshift must not start at 0.
    if x == 0 {
        0x9e37_79b9_7f4a_7c15
    } else {
        x
    }
}

/// The next pseudo-random u32 of the calling thread.
#[inline]
pub fn prandom_u32() -> u32 {
    let generation = fork_generation();
    STATE.with(|cell| {
        let mut s = cell.get();
        if s.generation != generation {
            s = State {
                generation,
                x: seed(),
            };
        }
        s.x ^= s.x >> 12;
        s.x ^= s.x << 25;
        s.x ^= s.x >> 27;
        cell.set(s);
        (s.x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
    })
}

/// `u32 bpf_get_prandom_u32(void)`.
///
/// # Safety
/// None beyond the helper ABI.
pub unsafe extern "C" fn bpf_get_prandom_u32(
    _: u64,
    _: u64,
    _: u64,
    _: u64,
    _: u64,
    _: *mut HelperEnv,
) -> u64 {
    u64::from(prandom_u32())
}
