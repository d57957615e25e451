//! `BPF_MAP_TYPE_BLOOM_FILTER`, bit for bit the kernel's.
//!
//! `key_size` 0; values are pushed (`bpf_map_push_elem` / update) and
//! tested (`bpf_map_peek_elem` / lookup: 0 when maybe present, `ENOENT`
//! when surely absent). The low 4 bits of `map_extra` give the number of
//! hash functions (0: 5). The bit array is the kernel's: `max_entries *
//! nr_hashes * 7 / 5` bits rounded up to a power of two (at least 64), or
//! 2^32 bits when that overflows; hash `i` of a value is `jhash2` (value
//! size a multiple of 4) or `jhash` with seed `hash_seed + i`, masked. The
//! seed is random unless `BPF_F_ZERO_SEED`. Bits are set with atomic ORs,
//! so concurrent pushes from any process never lose a bit and there is no
//! lock (nothing to leave inconsistent). Delete, pop and `get_next_key`
//! are not supported (`EOPNOTSUPP`), as in the kernel.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{MapError, MapMem, MapOps, MapSpec, MAP_AUX_SIZE};

/// `JHASH_INITVAL`.
const JHASH_INITVAL: u32 = 0xdeadbeef;

#[inline]
fn jhash_mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(4);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(6);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(8);
    *b = b.wrapping_add(*a);
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(16);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(19);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(4);
    *b = b.wrapping_add(*a);
}

#[inline]
fn jhash_final(a: &mut u32, b: &mut u32, c: &mut u32) {
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(14));
    *a ^= *c;
    *a = a.wrapping_sub(c.rotate_left(11));
    *b ^= *a;
    *b = b.wrapping_sub(a.rotate_left(25));
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(16));
    *a ^= *c;
    *a = a.wrapping_sub(c.rotate_left(4));
    *b ^= *a;
    *b = b.wrapping_sub(a.rotate_left(14));
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(24));
}

/// The kernel's `jhash` (include/linux/jhash.h) over bytes.
pub fn jhash(key: &[u8], initval: u32) -> u32 {
    let length = key.len() as u32;
    let mut a = JHASH_INITVAL.wrapping_add(length).wrapping_add(initval);
    let (mut b, mut c) = (a, a);
    let mut k = key;
    let word = |s: &[u8], i: usize| u32::from_ne_bytes([s[i], s[i + 1], s[i + 2], s[i + 3]]);
    while k.len() > 12 {
        a = a.wrapping_add(word(k, 0));
        b = b.wrapping_add(word(k, 4));
        c = c.wrapping_add(word(k, 8));
        jhash_mix(&mut a, &mut b, &mut c);
        k = &k[12..];
    }
    if k.is_empty() {
        return c;
    }
    let byte = |i: usize| u32::from(k.get(i).copied().unwrap_or(0));
    // The kernel's fall-through switch on the remaining length (1..=12),
    // with missing bytes as zero.
    c = c.wrapping_add(byte(11) << 24 | byte(10) << 16 | byte(9) << 8 | byte(8));
    b = b.wrapping_add(byte(7) << 24 | byte(6) << 16 | byte(5) << 8 | byte(4));
    a = a.wrapping_add(byte(3) << 24 | byte(2) << 16 | byte(1) << 8 | byte(0));
    jhash_final(&mut a, &mut b, &mut c);
    c
}

/// The kernel's `jhash2` over 32-bit words.
pub fn jhash2(k: &[u32], initval: u32) -> u32 {
    let length = k.len() as u32;
    let mut a = JHASH_INITVAL
        .wrapping_add(length.wrapping_shl(2))
        .wrapping_add(initval);
    let (mut b, mut c) = (a, a);
    let mut k = k;
    while k.len() > 3 {
        a = a.wrapping_add(k[0]);
        b = b.wrapping_add(k[1]);
        c = c.wrapping_add(k[2]);
        jhash_mix(&mut a, &mut b, &mut c);
        k = &k[3..];
    }
    match k.len() {
        3 => {
            c = c.wrapping_add(k[2]);
            b = b.wrapping_add(k[1]);
            a = a.wrapping_add(k[0]);
        }
        2 => {
            b = b.wrapping_add(k[1]);
            a = a.wrapping_add(k[0]);
        }
        1 => a = a.wrapping_add(k[0]),
        _ => return c,
    }
    jhash_final(&mut a, &mut b, &mut c);
    c
}

/// `jhash2` over bytes whose length is a multiple of 4 (words read in
/// native order, as the kernel reads a `u32 *`).
pub(crate) fn jhash2_bytes(key: &[u8], initval: u32) -> u32 {
    let mut words = [0u32; 64];
    let n = key.len() / 4;
    if n <= words.len() {
        for (w, c) in words.iter_mut().zip(key.chunks_exact(4)) {
            *w = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]);
        }
        return jhash2(&words[..n], initval);
    }
    let v: Vec<u32> = key
        .chunks_exact(4)
        .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    jhash2(&v, initval)
}

/// Parameters in the aux area, written once at creation.
#[repr(C)]
struct BloomAux {
    hash_seed: u32,
    nr_hash_funcs: u32,
    bitset_mask: u32,
}

const _: () = assert!(std::mem::size_of::<BloomAux>() <= MAP_AUX_SIZE);

/// (bit array bytes, mask, hash functions) as the kernel's
/// `bloom_map_alloc` computes them.
fn geometry(spec: &MapSpec) -> Result<(usize, u32, u32), MapError> {
    use super::flags::*;
    let allowed = BPF_F_NUMA_NODE
        | BPF_F_ZERO_SEED
        | BPF_F_RDONLY
        | BPF_F_WRONLY
        | BPF_F_RDONLY_PROG
        | BPF_F_WRONLY_PROG;
    if spec.key_size != 0
        || spec.value_size == 0
        || spec.map_flags & !allowed != 0
        || (spec.map_flags & BPF_F_RDONLY != 0 && spec.map_flags & BPF_F_WRONLY != 0)
        || (spec.map_flags & BPF_F_RDONLY_PROG != 0 && spec.map_flags & BPF_F_WRONLY_PROG != 0)
        || spec.map_extra & !0xf != 0
    {
        return Err(MapError::Invalid("bloom filter attributes"));
    }
    let nr_hash = match spec.map_extra as u32 {
        0 => 5,
        n => n,
    };
    let nr_bits = spec
        .max_entries
        .checked_mul(nr_hash)
        .and_then(|n| (n / 5).checked_mul(7))
        .filter(|&n| n <= 1 << 31);
    let (bytes, mask) = match nr_bits {
        None => ((u32::MAX as usize).div_ceil(8), u32::MAX),
        Some(n) => {
            let n = if n <= 64 { 64 } else { n.next_power_of_two() };
            ((n as usize).div_ceil(8), n - 1)
        }
    };
    Ok((super::round_up8(bytes), mask, nr_hash))
}

pub(crate) fn data_size(spec: &MapSpec) -> Result<usize, MapError> {
    Ok(geometry(spec)?.0)
}

pub(crate) fn init(spec: &MapSpec, mem: &MapMem) -> Result<(), MapError> {
    let (_, mask, nr_hash) = geometry(spec)?;
    let seed = if spec.map_flags & super::flags::BPF_F_ZERO_SEED != 0 {
        0
    } else {
        let mut b = [0u8; 4];
        // SAFETY: fills the 4-byte buffer.
        let r = unsafe { libc::getrandom(b.as_mut_ptr().cast(), 4, 0) };
        if r != 4 {
            return Err(MapError::Io(libc::EIO));
        }
        u32::from_ne_bytes(b)
    };
    // SAFETY: the aux area of a fresh map nobody else has yet.
    let aux = unsafe { &mut *(mem.aux() as *mut BloomAux) };
    aux.hash_seed = seed;
    aux.nr_hash_funcs = nr_hash;
    aux.bitset_mask = mask;
    Ok(())
}

pub(crate) fn open(spec: &MapSpec, mem: Arc<MapMem>) -> Result<Box<dyn MapOps>, MapError> {
    // SAFETY: written once at creation, before the fd was shared.
    let aux = unsafe { &*(mem.aux() as *const BloomAux) };
    let (bytes, mask, nr_hash) = geometry(spec)?;
    if aux.bitset_mask != mask || aux.nr_hash_funcs != nr_hash || mem.data_size() < bytes {
        return Err(MapError::NotAMap);
    }
    Ok(Box::new(Bloom {
        seed: aux.hash_seed,
        nr_hash,
        mask,
        value_size: spec.value_size as usize,
        mem,
    }))
}

/// A bloom filter mapped into this process.
pub struct Bloom {
    mem: Arc<MapMem>,
    seed: u32,
    nr_hash: u32,
    mask: u32,
    value_size: usize,
}

impl std::fmt::Debug for Bloom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bloom")
            .field("nr_hash", &self.nr_hash)
            .field("bits", &(u64::from(self.mask) + 1))
            .finish()
    }
}

impl Bloom {
    fn hash(&self, value: &[u8], index: u32) -> u32 {
        let seed = self.seed.wrapping_add(index);
        let h = if value.len().is_multiple_of(4) {
            jhash2_bytes(value, seed)
        } else {
            jhash(value, seed)
        };
        h & self.mask
    }

    fn word(&self, bit: u32) -> (&AtomicU64, u64) {
        // SAFETY: bit <= mask, and the data area holds mask + 1 bits
        // rounded up to whole u64 words.
        let w = unsafe { &*(self.mem.data().cast::<AtomicU64>().add((bit / 64) as usize)) };
        (w, 1u64 << (bit % 64))
    }

    /// Adds `value` (`value_size` bytes).
    pub fn push(&self, value: &[u8], flags: u64) -> Result<(), MapError> {
        if flags != super::flags::BPF_ANY {
            return Err(MapError::Invalid("bloom filter push takes BPF_ANY"));
        }
        let value = value
            .get(..self.value_size)
            .ok_or(MapError::Invalid("value size"))?;
        for i in 0..self.nr_hash {
            let (w, bit) = self.word(self.hash(value, i));
            w.fetch_or(bit, Ordering::Relaxed);
        }
        Ok(())
    }

    /// `Ok` when `value` may be present, `NotFound` when it surely is not.
    pub fn peek(&self, value: &[u8]) -> Result<(), MapError> {
        let value = value
            .get(..self.value_size)
            .ok_or(MapError::Invalid("value size"))?;
        for i in 0..self.nr_hash {
            let (w, bit) = self.word(self.hash(value, i));
            if w.load(Ordering::Relaxed) & bit == 0 {
                return Err(MapError::NotFound);
            }
        }
        Ok(())
    }

    pub fn value_size(&self) -> u32 {
        self.value_size as u32
    }
}

impl MapOps for Bloom {
    fn lookup(&self, _key: &[u8], value: &mut [u8], _flags: u64) -> Result<(), MapError> {
        self.peek(value)
    }
    fn update(&self, _key: &[u8], value: &[u8], flags: u64) -> Result<(), MapError> {
        self.push(value, flags)
    }
    fn delete(&self, _key: &[u8]) -> Result<(), MapError> {
        Err(MapError::NotSupported)
    }
    fn next_key(&self, _key: Option<&[u8]>, _next: &mut [u8]) -> Result<(), MapError> {
        Err(MapError::NotSupported)
    }
    unsafe fn prog_delete(&self, _key: *const u8) -> i64 {
        -i64::from(libc::EOPNOTSUPP)
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jhash_matches_the_kernel() {
        // Computed with the kernel's include/linux/jhash.h code in C.
        let bytes: Vec<u8> = (0..40u32).map(|i| (i * 7 + 1) as u8).collect();
        let want = [
            3735928562u32,
            1923623579,
            827325480,
            2967574364,
            2159463328,
            1359153308,
            1732259906,
            1356962028,
            3520143554,
            1956930071,
            1136791454,
            212288932,
            242155134,
            152721880,
            195444790,
        ];
        for (n, w) in want.iter().enumerate() {
            assert_eq!(jhash(&bytes[..n], 3), *w, "jhash len {n}");
        }
        assert_eq!(jhash(&bytes, 0), 1886139340);
        let words: Vec<u32> = (0..10u32)
            .map(|i| i.wrapping_mul(0x0101_0101) + 5)
            .collect();
        let want2 = [
            3735928568u32,
            3086671978,
            3212615998,
            2575178527,
            2966814025,
            1197354689,
            2825756874,
            3922786437,
        ];
        for (n, w) in want2.iter().enumerate() {
            assert_eq!(jhash2(&words[..n], 9), *w, "jhash2 len {n}");
            let b: Vec<u8> = words[..n].iter().flat_map(|x| x.to_ne_bytes()).collect();
            assert_eq!(jhash2_bytes(&b, 9), *w);
        }
    }
}
