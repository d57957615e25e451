//! Deterministic inputs for the benchmarks, laid out as the C programs read
//! them (little-endian; see each `programs/*.bpf.c`).

use std::ops::{Deref, DerefMut};

/// Half of the memcpy/strcmp buffer: one string or one copy.
pub const HALF: usize = 1 << 20;
/// Where the first mismatch of `strcmp_fail` is (as in bpf-benchmark).
pub const STRCMP_FAIL_AT: usize = 279_947;
pub const LOG2_COUNT: usize = 1024;
pub const SWITCH_COUNT: usize = 4096;
pub const CRC32_LEN: usize = 32 * 1024;
pub const HTTP_LINES: usize = 1024;
pub const FLOW_COUNT: usize = 4096;
/// `struct flow` in jhash_flows.bpf.c.
pub const FLOW_SIZE: usize = 24;

/// A byte buffer aligned to 8, so the programs' u64 loads are aligned for
/// every runtime alike.
#[derive(Clone)]
pub struct Buffer {
    words: Vec<u64>,
    len: usize,
}

impl Buffer {
    pub fn zeroed(len: usize) -> Buffer {
        Buffer {
            words: vec![0; len.div_ceil(8)],
            len,
        }
    }

    pub fn from_bytes(bytes: &[u8]) -> Buffer {
        let mut buf = Buffer::zeroed(bytes.len());
        buf.copy_from_slice(bytes);
        buf
    }
}

impl Deref for Buffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `words` holds at least `len` initialised bytes, and any
        // byte pattern is a valid u8.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast(), self.len) }
    }
}

impl DerefMut for Buffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and the borrow of `self` is exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast(), self.len) }
    }
}

/// SplitMix64: tiny, seedable, good enough for benchmark data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, n)` (the modulo bias is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(buf: &mut [u8], at: usize, v: u64) {
    buf[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// For programs that read no input (r1 still points at this).
pub fn empty() -> Buffer {
    Buffer::zeroed(0)
}

/// a, b, and a stray newline byte, as bpf-benchmark's input file has.
pub fn a_plus_b() -> Buffer {
    let mut buf = Buffer::zeroed(17);
    put_u64(&mut buf, 0, 0x0807_0605_0403_0201);
    put_u64(&mut buf, 8, 0x8070_6050_4030_2010);
    buf[16] = b'\n';
    buf
}

/// u64 N, then N values >= 2^32 whose log2 is spread over 32..=63.
pub fn log2_int() -> Buffer {
    let mut rng = Rng::new(0x1062);
    let mut buf = Buffer::zeroed(8 + 8 * LOG2_COUNT);
    put_u64(&mut buf, 0, LOG2_COUNT as u64);
    for i in 0..LOG2_COUNT {
        let v = (rng.next_u64() | 1 << 63) >> rng.below(32);
        put_u64(&mut buf, 8 + 8 * i, v);
    }
    buf
}

/// Two equal 1 MiB NUL-terminated strings of random non-zero bytes.
pub fn strcmp_full() -> Buffer {
    let mut rng = Rng::new(0x57c3);
    let mut buf = Buffer::zeroed(2 * HALF);
    for b in &mut buf[..HALF - 1] {
        *b = 1 + rng.below(255) as u8;
    }
    let (a, b) = buf.split_at_mut(HALF);
    b.copy_from_slice(a);
    buf
}

/// The first string of `strcmp_full` and a zeroed second half, so that a
/// run that does not copy is caught (see `programs::memcpy_done`).
pub fn memcpy() -> Buffer {
    let mut buf = strcmp_full();
    buf[HALF..].fill(0);
    buf
}

/// As `strcmp_full`, but the second string ends early.
pub fn strcmp_fail() -> Buffer {
    let mut buf = strcmp_full();
    buf[HALF + STRCMP_FAIL_AT] = 0;
    buf
}

/// i32 N, then N i32 values in [0, 64] (64 takes the default case).
pub fn switch() -> Buffer {
    let mut rng = Rng::new(0x5817);
    let mut buf = Buffer::zeroed(4 + 4 * SWITCH_COUNT);
    put_u32(&mut buf, 0, SWITCH_COUNT as u32);
    for i in 0..SWITCH_COUNT {
        put_u32(&mut buf, 4 + 4 * i, rng.below(65) as u32);
    }
    buf
}

/// u32 length, 4 bytes of padding, then random data.
pub fn crc32() -> Buffer {
    let mut rng = Rng::new(0xc3c3);
    let mut buf = Buffer::zeroed(8 + CRC32_LEN);
    put_u32(&mut buf, 0, CRC32_LEN as u32);
    for b in &mut buf[8..] {
        *b = rng.next_u64() as u8;
    }
    buf
}

/// The request text of `http_parse`: mostly valid lines, one in 16 broken
/// in one of several ways.
pub fn http_text(lines: usize, seed: u64) -> Vec<u8> {
    const METHODS: &[&str] = &[
        "GET", "GET", "GET", "GET", "POST", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH",
    ];
    const VERSIONS: &[&str] = &["1.1", "1.1", "1.1", "1.0", "2.0"];
    const PATH_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-_.";
    let mut rng = Rng::new(seed);
    let mut text = Vec::new();
    for _ in 0..lines {
        let mut method = rng.pick(METHODS).to_string();
        let mut path = String::new();
        for _ in 0..1 + rng.below(6) {
            path.push('/');
            for _ in 0..1 + rng.below(12) {
                path.push(*rng.pick(PATH_CHARS) as char);
            }
        }
        if rng.below(4) == 0 {
            path.push_str(&format!("?id={}", rng.below(100_000)));
        }
        let mut version = format!("HTTP/{}", rng.pick(VERSIONS));
        let mut eol = "\r\n";
        if rng.below(16) == 0 {
            match rng.below(5) {
                0 => method = "BREW".to_string(),
                1 => {
                    path.remove(0);
                }
                2 => version.truncate(6),
                3 => eol = "\n",
                _ => version = "HTTX/1.1".to_string(),
            }
        }
        text.extend_from_slice(format!("{method} {path} {version}{eol}").as_bytes());
    }
    text
}

/// u32 text length, u32 line count, then the request lines.
pub fn http_parse() -> Buffer {
    let text = http_text(HTTP_LINES, 0x4777);
    let mut buf = Buffer::zeroed(8 + text.len());
    put_u32(&mut buf, 0, text.len() as u32);
    put_u32(&mut buf, 4, HTTP_LINES as u32);
    buf[8..].copy_from_slice(&text);
    buf
}

/// u32 N, 4 bytes of padding, then N `struct flow` records.
pub fn jhash_flows() -> Buffer {
    let mut rng = Rng::new(0xf10e);
    let mut buf = Buffer::zeroed(8 + FLOW_SIZE * FLOW_COUNT);
    put_u32(&mut buf, 0, FLOW_COUNT as u32);
    for i in 0..FLOW_COUNT {
        let at = 8 + FLOW_SIZE * i;
        // 10.0.0.0/16 clients talking to a few servers.
        put_u32(&mut buf, at, 0x0a00_0000 | rng.below(1 << 16) as u32);
        put_u32(&mut buf, at + 4, 0xc0a8_0000 | rng.below(8) as u32);
        let sport = 1024 + rng.below(60_000) as u16;
        let dport = *rng.pick(&[80u16, 443, 53, 8080]);
        buf[at + 8..at + 10].copy_from_slice(&sport.to_le_bytes());
        buf[at + 10..at + 12].copy_from_slice(&dport.to_le_bytes());
        put_u32(&mut buf, at + 12, *rng.pick(&[6u32, 17]));
        put_u64(&mut buf, at + 16, rng.below(1 << 40));
    }
    buf
}
