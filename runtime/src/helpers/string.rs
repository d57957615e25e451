//! `bpf_strncmp` (182).

use super::{env_ref, errno, neg, read_prog, HelperEnv};

/// Bytes compared per chunk.
const CHUNK: usize = 32;

/// Reads up to `want` bytes of program memory at `addr` into `buf`; falls
/// back to single bytes near the end of a region. Returns how many bytes
/// were read (fewer than `want` only when memory ran out).
fn read_chunk(env: &super::HelperEnv, buf: &mut [u8; CHUNK], addr: u64, want: usize) -> usize {
    let want = want.min(CHUNK);
    if read_prog(env, &mut buf[..want], addr) {
        return want;
    }
    let mut n = 0;
    while n < want {
        let Some(a) = addr.checked_add(n as u64) else {
            break;
        };
        if !read_prog(env, &mut buf[n..n + 1], a) {
            break;
        }
        n += 1;
    }
    n
}

/// `long bpf_strncmp(const char *s1, u32 s1_sz, const char *s2)`: the
/// kernel's `strncmp(s1, s2, s1_sz)`: -1, 0 or 1 (bytes compared as
/// unsigned). -EFAULT (also negative) when a byte that decides the result
/// is not readable program memory.
///
/// # Safety
/// Called by an engine with its env.
pub unsafe extern "C" fn bpf_strncmp(
    s1: u64,
    s1_sz: u64,
    s2: u64,
    _: u64,
    _: u64,
    env: *mut HelperEnv,
) -> u64 {
    let n = s1_sz as u32 as usize;
    // SAFETY: engine contract.
    let Some(env) = (unsafe { env_ref(env) }) else {
        return neg(errno::EFAULT);
    };
    let mut a = [0u8; CHUNK];
    let mut b = [0u8; CHUNK];
    let mut done = 0usize;
    while done < n {
        let want = (n - done).min(CHUNK);
        let off = done as u64;
        let got_a = read_chunk(env, &mut a, s1.wrapping_add(off), want);
        let got_b = read_chunk(env, &mut b, s2.wrapping_add(off), want);
        let got = got_a.min(got_b);
        for i in 0..got {
            let (x, y) = (a[i], b[i]);
            if x != y {
                return if x < y { u64::MAX } else { 1 };
            }
            if x == 0 {
                return 0;
            }
        }
        if got < want {
            return neg(errno::EFAULT);
        }
        done += want;
    }
    0
}
