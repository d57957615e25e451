//! Trampoline memory near the hooked code.
//!
//! A site's `jmp rel32` reaches ±2 GiB, and the relocated instructions keep
//! their RIP-relative operands, so a trampoline must lie within reach of the
//! site and of every address those operands name. Pages are mapped near the
//! target with `MAP_FIXED_NOREPLACE` in a free gap of `/proc/self/maps`, the
//! nearest first, and shared by several trampolines (placed at byte
//! granularity).
//!
//! The jump's displacement may also be constrained: every byte of it that
//! overwrites the start of a displaced instruction must be `0xcc` (`int3`).
//! A thread that was preempted between two displaced instructions and
//! resumes after the patch then traps instead of executing the middle of
//! the jump, and the SIGTRAP handler sends it to the relocated copy of its
//! instruction (E9Patch's "instruction punning"). That fixes bytes of the
//! trampoline's address relative to the site: [`Placement`].
//!
//! Pages stay read+exec; a write makes them writable (still executable,
//! since other trampolines on the page may be running) only for the copy.
//! Trampolines are never unmapped: a thread may still run one after its
//! hook is removed.

use super::error::HookError;
use super::maps;

pub(crate) const PAGE: usize = 4096;
const SPAN: i64 = 1 << 31;
/// Kept clear of the ends of the ±2 GiB window.
const MARGIN: i64 = 1 << 20;

/// Where a trampoline may start.
#[derive(Clone, Debug)]
pub(crate) struct Placement {
    /// The jump's displacement is taken from here (`patch_addr + 5`).
    pub from: usize,
    /// Inclusive bounds for the start.
    pub lo: usize,
    pub hi: usize,
    /// `(start - from) as u32 & mask == value`.
    pub mask: u32,
    pub value: u32,
}

impl Placement {
    /// The placement for a patch at `patch_addr` whose rel32 must hold
    /// `0xcc` at the patch offsets in `interior` (1..=4), for a trampoline
    /// of `size` bytes that reaches each of `targets` RIP-relatively.
    pub fn new(patch_addr: usize, interior: &[usize], targets: &[u64], size: usize) -> Self {
        let from = patch_addr + super::relocate::JMP_LEN;
        let (mut lo, mut hi) = (
            from as i64 - SPAN + MARGIN,
            from as i64 + SPAN - MARGIN - size as i64,
        );
        for &t in targets {
            lo = lo.max(t as i64 - SPAN + MARGIN);
            hi = hi.min(t as i64 + SPAN - MARGIN - size as i64);
        }
        let (mut mask, mut value) = (0u32, 0u32);
        for &k in interior {
            if (1..=4).contains(&k) {
                let shift = 8 * (k - 1);
                mask |= 0xff << shift;
                value |= 0xcc << shift;
            }
        }
        Placement {
            from,
            lo: lo.max(PAGE as i64) as usize,
            hi: hi.max(0) as usize,
            mask,
            value,
        }
    }

    fn ok(&self, s: usize) -> bool {
        s >= self.lo
            && s <= self.hi
            && ((s.wrapping_sub(self.from)) as u32) & self.mask == self.value
    }

    /// The start in `[a, b]` nearest to `from` that satisfies the
    /// constraint.
    fn nearest_in(&self, a: usize, b: usize) -> Option<usize> {
        let (a, b) = (a.max(self.lo), b.min(self.hi));
        if a > b {
            return None;
        }
        // Displacements, biased so that unsigned order is signed order.
        let bias = |s: usize| ((s as i64 - self.from as i64) + SPAN) as u64;
        let (ua, ub) = (bias(a), bias(b));
        if ub >= 1 << 32 {
            return None;
        }
        let (ua, ub) = (ua as u32, ub as u32);
        let mask = self.mask;
        let value = self.value ^ (mask & 0x8000_0000);
        let zero = SPAN as u32; // displacement 0
        let up = next_ge(ua.max(zero.min(ub)), mask, value).filter(|&u| u <= ub);
        let down = prev_le(ub.min(zero.max(ua)), mask, value).filter(|&u| u >= ua);
        let unbias = |u: u32| (self.from as i64 + u as i64 - SPAN) as usize;
        let best = match (up, down) {
            (Some(x), Some(y)) => {
                if x.abs_diff(zero) <= y.abs_diff(zero) {
                    x
                } else {
                    y
                }
            }
            (Some(x), None) | (None, Some(x)) => x,
            (None, None) => return None,
        };
        let s = unbias(best);
        debug_assert!(self.ok(s));
        Some(s)
    }
}

/// Bits 0..=h.
fn low_bits(h: u32) -> u32 {
    if h >= 31 {
        u32::MAX
    } else {
        (1u32 << (h + 1)) - 1
    }
}

/// The least `y >= x` with `y & mask == value`.
pub(crate) fn next_ge(x: u32, mask: u32, value: u32) -> Option<u32> {
    let value = value & mask;
    let y = (x & !mask) | value;
    if y == x {
        return Some(y);
    }
    // The highest bit where y and x differ is a fixed one.
    let h = 31 - (x ^ y).leading_zeros();
    let low = low_bits(h);
    if y > x {
        // y is already larger there: the free bits below can be zero.
        return Some(y & !(low & !mask));
    }
    // x has 1 there: raise the free bits above it by one (carrying over
    // fixed and lower bits) and clear the free bits below.
    let above = x & !mask & !low;
    let inc = (above | mask | low) as u64 + 1;
    if inc > u32::MAX as u64 {
        return None;
    }
    Some((inc as u32 & !mask & !low) | value)
}

/// The greatest `y <= x` with `y & mask == value`.
pub(crate) fn prev_le(x: u32, mask: u32, value: u32) -> Option<u32> {
    next_ge(!x, mask, !value & mask).map(|y| !y)
}

/// One mapped chunk of trampoline memory.
struct Chunk {
    base: usize,
    len: usize,
    /// Used ranges, sorted.
    used: Vec<(usize, usize)>,
}

impl Chunk {
    fn free_ranges(&self) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut cur = self.base;
        for &(a, b) in &self.used {
            if a > cur {
                out.push((cur, a));
            }
            cur = cur.max(b);
        }
        if cur < self.base + self.len {
            out.push((cur, self.base + self.len));
        }
        out
    }

    fn mark(&mut self, a: usize, b: usize) {
        let i = self.used.partition_point(|r| r.0 < a);
        self.used.insert(i, (a, b));
    }
}

/// The trampoline allocator of this process.
pub(crate) struct Pool {
    chunks: Vec<Chunk>,
}

impl Default for Pool {
    fn default() -> Self {
        Self::new()
    }
}

fn page_down(x: usize) -> usize {
    x & !(PAGE - 1)
}

fn page_up(x: usize) -> usize {
    (x + PAGE - 1) & !(PAGE - 1)
}

impl Pool {
    pub const fn new() -> Self {
        Pool { chunks: Vec::new() }
    }

    /// Reserves `size` bytes at a start that satisfies `p`.
    pub fn alloc(&mut self, p: &Placement, size: usize) -> Result<usize, HookError> {
        let fail = HookError::NoTrampolineSpace { addr: p.from - 5 };
        // Free space in the chunks we have, nearest first.
        let mut best: Option<(usize, usize)> = None; // (start, chunk index)
        for (ci, c) in self.chunks.iter().enumerate() {
            for (a, b) in c.free_ranges() {
                if b - a < size {
                    continue;
                }
                if let Some(s) = p.nearest_in(a, b - size) {
                    if best.is_none_or(|(t, _)| s.abs_diff(p.from) < t.abs_diff(p.from)) {
                        best = Some((s, ci));
                    }
                }
            }
        }
        if let Some((s, ci)) = best {
            self.chunks[ci].mark(s, s + size);
            return Ok(s);
        }
        // A new mapping in a free gap.
        for _attempt in 0..8 {
            // Fresh: a batch snapshot may predate mappings made since.
            maps::invalidate();
            let all = maps::read()?;
            // Stay out of the way of the brk heap and the main stack.
            let avoid: Vec<(usize, usize)> = all
                .iter()
                .filter_map(|m| match m.path.as_str() {
                    "[heap]" => Some((m.end, m.end.saturating_add(64 << 20))),
                    "[stack]" => Some((m.start.saturating_sub(256 << 20), m.start)),
                    _ => None,
                })
                .collect();
            let mut cands: Vec<usize> = Vec::new();
            for (a, b) in maps::gaps(
                &all,
                p.lo.saturating_sub(PAGE),
                p.hi.saturating_add(size + PAGE),
            ) {
                let mut pieces = vec![(a, b)];
                for &(x, y) in &avoid {
                    pieces = pieces
                        .into_iter()
                        .flat_map(|(a, b)| {
                            let mut v = Vec::new();
                            if a < x.min(b) {
                                v.push((a, x.min(b)));
                            }
                            if y.max(a) < b {
                                v.push((y.max(a), b));
                            }
                            v
                        })
                        .collect();
                }
                for (a, b) in pieces {
                    if b > a && b - a >= size {
                        if let Some(s) = p.nearest_in(a, b - size) {
                            cands.push(s);
                        }
                    }
                }
            }
            let Some(&s) = cands.iter().min_by_key(|s| s.abs_diff(p.from)) else {
                return Err(fail);
            };
            let (base, end) = (page_down(s), page_up(s + size));
            match map_fixed(base, end - base) {
                Ok(()) => {
                    maps::invalidate();
                    let mut c = Chunk {
                        base,
                        len: end - base,
                        used: Vec::new(),
                    };
                    c.mark(s, s + size);
                    self.chunks.push(c);
                    return Ok(s);
                }
                // Someone mapped it meanwhile: look again.
                Err(None) => continue,
                Err(Some(e)) => return Err(e),
            }
        }
        Err(fail)
    }

    /// Gives back the tail of a reservation: `[start + used, start + size)`.
    pub fn shrink(&mut self, start: usize, used: usize) {
        for c in &mut self.chunks {
            if let Some(r) = c.used.iter_mut().find(|r| r.0 == start) {
                r.1 = start + used.max(1);
            }
        }
    }

    /// Gives back a whole reservation that was never published.
    pub fn release(&mut self, start: usize) {
        for c in &mut self.chunks {
            c.used.retain(|r| r.0 != start);
        }
    }

    /// Copies `bytes` to `at`, inside memory this pool handed out.
    pub fn write(&self, at: usize, bytes: &[u8]) -> Result<(), HookError> {
        let (base, end) = (page_down(at), page_up(at + bytes.len()));
        let rx = libc::PROT_READ | libc::PROT_EXEC;
        // SAFETY: [base, end) lies in a chunk we mapped; it stays executable
        // throughout, for the trampolines already running there.
        unsafe {
            if libc::mprotect(base as *mut _, end - base, rx | libc::PROT_WRITE) != 0 {
                return Err(HookError::last_os("mprotect (trampoline)"));
            }
            core::ptr::copy_nonoverlapping(bytes.as_ptr(), at as *mut u8, bytes.len());
            if libc::mprotect(base as *mut _, end - base, rx) != 0 {
                return Err(HookError::last_os("mprotect (trampoline)"));
            }
        }
        Ok(())
    }
}

/// Maps `len` bytes of read+exec anonymous memory exactly at `addr`.
/// `Err(None)`: the range is taken.
fn map_fixed(addr: usize, len: usize) -> Result<(), Option<HookError>> {
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping.
    let p = unsafe {
        libc::mmap(
            addr as *mut _,
            len,
            libc::PROT_READ | libc::PROT_EXEC,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        return if e == libc::EEXIST {
            Err(None)
        } else {
            Err(Some(HookError::Os {
                op: "mmap (trampoline)",
                errno: e,
            }))
        };
    }
    if p as usize != addr {
        // A kernel older than 4.17 took the address as a hint.
        // SAFETY: unmaps the mapping just made.
        unsafe { libc::munmap(p, len) };
        return Err(None);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute_next(x: u32, mask: u32, value: u32) -> Option<u32> {
        (x as u64..=u32::MAX as u64)
            .map(|y| y as u32)
            .find(|y| y & mask == value & mask)
    }

    #[test]
    fn next_and_prev_match_brute_force() {
        let masks = [
            0,
            0xff,
            0xff00,
            0xff_00ff,
            0xff00_0000,
            0xffff_ffff,
            0xff00_ff00,
        ];
        let mut seed = 0x1234_5678u32;
        for &mask in &masks {
            for _ in 0..200 {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let x = seed;
                let value = 0xcccc_cccc & mask;
                // Brute force is too slow far from a solution: check that
                // the answer satisfies the mask and that nothing in between
                // does (stepping by the lowest free bit).
                let y = next_ge(x, mask, value);
                if let Some(y) = y {
                    assert!(y >= x && y & mask == value, "{x:#x} {mask:#x} -> {y:#x}");
                    if y - x < 1 << 20 {
                        assert_eq!(Some(y), brute_next(x, mask, value));
                    }
                }
                let z = prev_le(x, mask, value);
                if let Some(z) = z {
                    assert!(z <= x && z & mask == value, "{x:#x} {mask:#x} -> {z:#x}");
                }
            }
        }
        assert_eq!(next_ge(0xcd00_0000, 0xff00_0000, 0xcc00_0000), None);
        assert_eq!(next_ge(0x1234_5678, 0xff, 0xcc), Some(0x1234_56cc));
        assert_eq!(next_ge(0x1234_56cd, 0xff, 0xcc), Some(0x1234_57cc));
        assert_eq!(prev_le(0x1234_56cb, 0xff, 0xcc), Some(0x1234_55cc));
    }

    #[test]
    fn placement_puts_int3_at_interior_boundaries() {
        let site = 0x5555_5555_0000usize;
        let p = Placement::new(site, &[1, 4], &[], 400);
        let s = p.nearest_in(0x5555_0000_0000, 0x5555_ffff_0000).unwrap();
        let disp = (s as i64 - (site + 5) as i64) as i32;
        let b = disp.to_le_bytes();
        assert_eq!((b[0], b[3]), (0xcc, 0xcc));
        assert!(disp < 0);
        // Unconstrained: the nearest address of the range.
        let q = Placement::new(site, &[], &[], 400);
        assert_eq!(
            q.nearest_in(site + 0x1000, site + 0x9000),
            Some(site + 0x1000)
        );
        assert_eq!(
            q.nearest_in(site - 0x9000, site - 0x1000),
            Some(site - 0x1000)
        );
    }

    #[test]
    fn allocates_near_and_writes() {
        let here = allocates_near_and_writes as *const () as usize;
        let mut pool = Pool::default();
        let p = Placement::new(here, &[2, 4], &[], 300);
        let s = pool.alloc(&p, 300).unwrap();
        let disp = (s as i64 - (here + 5) as i64) as i32;
        assert_eq!(disp.to_le_bytes()[1], 0xcc);
        assert_eq!(disp.to_le_bytes()[3], 0xcc);
        pool.write(s, &[0xc3; 300]).unwrap();
        // SAFETY: just written.
        assert_eq!(unsafe { *(s as *const u8).add(299) }, 0xc3);
        // A second, unconstrained one shares the chunk if it is near enough.
        let q = Placement::new(s, &[], &[], 64);
        let t = pool.alloc(&q, 64).unwrap();
        assert!(t.abs_diff(s) < PAGE * 2, "{s:#x} {t:#x}");
    }
}
