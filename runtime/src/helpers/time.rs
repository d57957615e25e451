//! Clocks: `bpf_ktime_get_ns` (5, CLOCK_MONOTONIC), `bpf_ktime_get_boot_ns`
//! (125, CLOCK_BOOTTIME), `bpf_ktime_get_coarse_ns` (160,
//! CLOCK_MONOTONIC_COARSE), `bpf_ktime_get_tai_ns` (208, CLOCK_TAI) and
//! `bpf_jiffies64` (118).
//!
//! Every clock is read with glibc's `clock_gettime`, which the vDSO serves
//! without a syscall for all four clocks on current kernels. The values are
//! the ones the kernel's helpers return (the same clocks), so timestamps
//! from user-space and kernel programs can be compared.
//!
//! `bpf_jiffies64` has no user-space source: it is derived from
//! CLOCK_MONOTONIC_COARSE as `INITIAL_JIFFIES + monotonic * HZ`, with `HZ`
//! read once from `/boot/config-$(uname -r)` (`CONFIG_HZ`, 250 when that
//! file is unreadable). It advances at the kernel's rate but may be offset
//! from the kernel's own counter by a few ticks.

use std::sync::OnceLock;

use super::HelperEnv;

const NSEC_PER_SEC: u64 = 1_000_000_000;

/// The time of `clock` in nanoseconds (0 if the clock cannot be read).
#[inline]
pub fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; glibc serves these clocks from
    // the vDSO.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return 0;
    }
    (ts.tv_sec as u64)
        .wrapping_mul(NSEC_PER_SEC)
        .wrapping_add(ts.tv_nsec as u64)
}

/// `u64 bpf_ktime_get_ns(void)`: CLOCK_MONOTONIC in ns.
///
/// # Safety
/// None beyond the helper ABI; the arguments are ignored.
pub unsafe extern "C" fn bpf_ktime_get_ns(
    _: u64,
    _: u64,
    _: u64,
    _: u64,
    _: u64,
    _: *mut HelperEnv,
) -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// `u64 bpf_ktime_get_boot_ns(void)`: CLOCK_BOOTTIME in ns.
///
/// # Safety
/// None beyond the helper ABI.
pub unsafe extern "C" fn bpf_ktime_get_boot_ns(
    _: u64,
    _: u64,
    _: u64,
    _: u64,
    _: u64,
    _: *mut HelperEnv,
) -> u64 {
    clock_ns(libc::CLOCK_BOOTTIME)
}

/// `u64 bpf_ktime_get_coarse_ns(void)`: CLOCK_MONOTONIC_COARSE in ns.
///
/// # Safety
/// None beyond the helper ABI.
pub unsafe extern "C" fn bpf_ktime_get_coarse_ns(
    _: u64,
    _: u64,
    _: u64,
    _: u64,
    _: u64,
    _: *mut HelperEnv,
) -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC_COARSE)
}

/// `u64 bpf_ktime_get_tai_ns(void)`: CLOCK_TAI in ns.
///
/// # Safety
/// None beyond the helper ABI.
pub unsafe extern "C" fn bpf_ktime_get_tai_ns(
    _: u64,
    _: u64,
    _: u64,
    _: u64,
    _: u64,
    _: *mut HelperEnv,
) -> u64 {
    clock_ns(libc::CLOCK_TAI)
}

/// The kernel's tick rate (`CONFIG_HZ`), read once.
pub fn kernel_hz() -> u64 {
    static HZ: OnceLock<u64> = OnceLock::new();
    *HZ.get_or_init(|| read_config_hz().unwrap_or(250))
}

fn read_config_hz() -> Option<u64> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let config = std::fs::read_to_string(format!("/boot/config-{}", release.trim())).ok()?;
    parse_config_hz(&config)
}

/// `CONFIG_HZ=N` from a kernel config.
pub fn parse_config_hz(config: &str) -> Option<u64> {
    config
        .lines()
        .find_map(|l| l.strip_prefix("CONFIG_HZ="))
        .and_then(|v| v.trim().parse().ok())
        .filter(|&hz: &u64| hz > 0 && hz <= 10_000)
}

/// `INITIAL_JIFFIES`: the kernel starts jiffies 5 minutes before the 32-bit
/// wrap, `(unsigned long)(unsigned int)(-300 * HZ)`.
fn initial_jiffies(hz: u64) -> u64 {
    (300u64.wrapping_mul(hz) as u32).wrapping_neg() as u64
}

/// `u64 bpf_jiffies64(void)`: see the module documentation.
///
/// # Safety
/// None beyond the helper ABI.
pub unsafe extern "C" fn bpf_jiffies64(
    _: u64,
    _: u64,
    _: u64,
    _: u64,
    _: u64,
    _: *mut HelperEnv,
) -> u64 {
    let hz = kernel_hz();
    let ns = clock_ns(libc::CLOCK_MONOTONIC_COARSE);
    // ns * hz / 1e9 without overflow: whole seconds, then the rest.
    let ticks = (ns / NSEC_PER_SEC)
        .wrapping_mul(hz)
        .wrapping_add((ns % NSEC_PER_SEC).wrapping_mul(hz) / NSEC_PER_SEC);
    initial_jiffies(hz).wrapping_add(ticks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_hz_and_initial_jiffies() {
        assert_eq!(
            parse_config_hz("# x\nCONFIG_HZ_250=y\nCONFIG_HZ=250\n"),
            Some(250)
        );
        assert_eq!(parse_config_hz("CONFIG_HZ=abc\n"), None);
        assert_eq!(initial_jiffies(250), 0xfffe_db08);
        assert_eq!(initial_jiffies(1000), 0xfffb_6c20);
    }
}
