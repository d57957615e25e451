//! Each program's result computed in Rust from the same input, so that a
//! wrong C program is caught too, not only a runtime that disagrees.

use crate::inputs::HALF;

fn u32_at(mem: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(mem[at..at + 4].try_into().unwrap())
}

fn u64_at(mem: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(mem[at..at + 8].try_into().unwrap())
}

pub fn simple(_: &[u8]) -> u64 {
    12_345_678
}

pub fn a_plus_b(mem: &[u8]) -> u64 {
    u64_at(mem, 0).wrapping_add(u64_at(mem, 8))
}

pub fn log2_int(mem: &[u8]) -> u64 {
    let n = u64_at(mem, 0) as usize;
    (1..=n).fold(0, |h, i| h ^ u64::from(u64_at(mem, 8 * i).ilog2()))
}

pub fn prime(_: &[u8]) -> u64 {
    (1u32..10_000)
        .filter(|&i| (2..).take_while(|j| j * j <= i).all(|j| i % j != 0))
        .count() as u64
}

pub fn memcpy(_: &[u8]) -> u64 {
    0
}

pub fn strcmp(mem: &[u8]) -> u64 {
    let (a, b) = mem.split_at(HALF);
    let i = a
        .iter()
        .zip(b)
        .position(|(&x, &y)| x == 0 || x != y)
        .expect("strings are NUL-terminated");
    (i64::from(a[i] as i8) - i64::from(b[i] as i8)) as u64
}

/// The permutation in switch.bpf.c.
const PERMUTATION: [u32; 64] = [
    31, 27, 2, 13, 5, 24, 15, 0, 23, 34, 63, 33, 36, 4, 32, 62, 10, 59, 35, 6, 45, 44, 53, 28, 8,
    11, 1, 7, 20, 51, 56, 9, 17, 16, 49, 3, 47, 21, 29, 42, 25, 38, 43, 40, 58, 57, 46, 14, 22, 48,
    50, 61, 19, 30, 41, 60, 52, 55, 37, 12, 26, 39, 54, 18,
];

pub fn switch(mem: &[u8]) -> u64 {
    let n = u32_at(mem, 0) as usize;
    (1..=n).fold(0, |h, i| {
        let v = u32_at(mem, 4 * i) as usize;
        h ^ u64::from(PERMUTATION.get(v).copied().unwrap_or(114_514))
    })
}

pub fn crc32_of(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xedb8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

pub fn crc32(mem: &[u8]) -> u64 {
    let len = u32_at(mem, 0) as usize;
    u64::from(crc32_of(&mem[8..8 + len]))
}

fn method_id(token: &[u8]) -> u64 {
    match token {
        b"GET" => 1,
        b"POST" => 2,
        b"PUT" => 3,
        b"DELETE" => 4,
        b"HEAD" => 5,
        b"OPTIONS" => 6,
        b"PATCH" => 7,
        _ => 0,
    }
}

/// The summary of one request line, or `None` if it is malformed.
pub fn http_line(line: &[u8]) -> Option<u64> {
    let (method, rest) = line.split_at(line.iter().position(|&c| c == b' ')?);
    let method = method_id(method);
    if method == 0 {
        return None;
    }
    let rest = &rest[1..];
    if rest.first() != Some(&b'/') {
        return None;
    }
    let path_len = rest.iter().position(|&c| c == b' ')?;
    let (path, version) = rest.split_at(path_len);
    let hash = path.iter().fold(0x811c_9dc5u32, |h, &c| {
        (h ^ u32::from(c)).wrapping_mul(0x0100_0193)
    });
    let slashes = path.iter().filter(|&&c| c == b'/').count() as u64;
    let version = &version[1..];
    match *version {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor, b'\r', b'\n']
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            Some(
                (u64::from(hash) << 32)
                    | ((path_len as u64 & 0xfff) << 20)
                    | ((slashes & 0xff) << 12)
                    | (method << 8)
                    | (u64::from(major - b'0') << 4)
                    | u64::from(minor - b'0'),
            )
        }
        _ => None,
    }
}

/// Splits the text into lines ending with '\n' (the C code resyncs on
/// '\n' too, and every generated line has one, so the two agree).
pub fn http_parse(mem: &[u8]) -> u64 {
    let len = u32_at(mem, 0) as usize;
    let text = &mem[8..8 + len];
    let (mut acc, mut good, mut bad) = (0xcbf2_9ce4_8422_2325u64, 0u64, 0u64);
    for line in text.split_inclusive(|&c| c == b'\n') {
        match http_line(line) {
            Some(summary) => {
                acc = (acc ^ summary).wrapping_mul(0x0100_0000_01b3);
                good += 1;
            }
            None => bad += 1,
        }
    }
    acc ^ (bad << 40) ^ good
}

fn jhash_3words(mut a: u32, mut b: u32, mut c: u32, initval: u32) -> u32 {
    let init = 0xdead_beefu32.wrapping_add(12).wrapping_add(initval);
    a = a.wrapping_add(init);
    b = b.wrapping_add(init);
    c = c.wrapping_add(init);
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(14));
    a ^= c;
    a = a.wrapping_sub(c.rotate_left(11));
    b ^= a;
    b = b.wrapping_sub(a.rotate_left(25));
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(16));
    a ^= c;
    a = a.wrapping_sub(c.rotate_left(4));
    b ^= a;
    b = b.wrapping_sub(a.rotate_left(14));
    c ^= b;
    c.wrapping_sub(b.rotate_left(24))
}

pub fn jhash_flows(mem: &[u8]) -> u64 {
    let n = u32_at(mem, 0) as usize;
    let mut acc = 0u64;
    for i in 0..n {
        let at = 8 + crate::inputs::FLOW_SIZE * i;
        let sport = u16::from_le_bytes([mem[at + 8], mem[at + 9]]);
        let dport = u16::from_le_bytes([mem[at + 10], mem[at + 11]]);
        let ports = u32::from(sport) << 16 | u32::from(dport);
        let h = jhash_3words(
            u32_at(mem, at),
            u32_at(mem, at + 4),
            ports,
            u32_at(mem, at + 12),
        );
        acc =
            (acc ^ u64::from(h) ^ (u64_at(mem, at + 16) << 32)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        acc ^= acc >> 29;
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32_of(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn prime_count() {
        assert_eq!(prime(&[]), 1230);
    }

    #[test]
    fn http_lines() {
        let ok = http_line(b"GET /a/b HTTP/1.1\r\n").unwrap();
        assert_eq!(ok & 0xf_ffff, (2 << 12) | (1 << 8) | 0x11);
        assert_eq!((ok >> 20) & 0xfff, 4);
        assert!(http_line(b"BREW /pot HTTP/1.1\r\n").is_none());
        assert!(http_line(b"GET pot HTTP/1.1\r\n").is_none());
        assert!(http_line(b"GET /pot HTTP/1\r\n").is_none());
        assert!(http_line(b"GET /pot HTTP/1.1\n").is_none());
    }
}
