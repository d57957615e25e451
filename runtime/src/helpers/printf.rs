//! The kernel's format subset for BPF (`bpf_bprintf_prepare` and
//! `bstr_printf`), shared by `bpf_trace_printk` and `bpf_snprintf` (165).
//!
//! Accepted, as in the kernel: `%%`; flags `0`, `+`, `-` and space and a
//! width; `%d %i %u %x %X` with no, `l` or `ll` length (no length: the
//! low 32 bits, sign-extended for `%d %i`); `%c`; `%s` (the string is read
//! through [`safe_mem`]: a bad pointer prints as an empty
//! string); `%p` followed by end, space or punctuation, `%px`, `%pK`,
//! `%ps`, `%pS`, `%pB`, `%pks`/`%pus` (kernel/user strings: a kernel one
//! prints empty), `%pi4 %pI4 %pi6 %pI6` (the address is read through
//! `safe_mem`; unreadable: zeros). `%s` must be followed by end, space or
//! punctuation. The format may only contain printable ASCII, whitespace,
//! and (outside conversions) bytes >= 0x80 (UTF-8 text). Anything else, or
//! more conversions than arguments, is -EINVAL before anything is printed.
//!
//! Output differences, because user space has no kernel: `%p` prints the
//! raw value like `%px` (16 zero-padded hex digits; the kernel prints a
//! hash), `%pK` prints 16 zeros (a restricted pointer), `%ps %pS %pB`
//! print `0x` and 16 hex digits (the kernel's form for an address without
//! a symbol).
//!
//! Strings and other by-reference arguments share a 512-byte scratch area
//! per call, as in the kernel (`MAX_BPRINTF_BIN_ARGS`): a string that does
//! not fit is truncated, and a conversion that finds the area full fails
//! the call with -ENOSPC.

use super::safe_mem;
use super::{env_ref, errno, neg, read_prog, HelperEnv};
use crate::memory::Access;

/// Most arguments of `bpf_snprintf` (`MAX_BPRINTF_VARARGS`).
pub const MAX_BPRINTF_VARARGS: usize = 12;
/// Bytes of the output buffer of `bpf_trace_printk` (`MAX_BPRINTF_BUF`).
pub const MAX_BPRINTF_BUF: usize = 1024;
/// Scratch bytes for the arguments of one call (`MAX_BPRINTF_BIN_ARGS`).
const MAX_BPRINTF_BIN_ARGS: usize = 512;
/// The kernel's `FIELD_WIDTH_MAX`.
const FIELD_WIDTH_MAX: u32 = (1 << 23) - 1;
/// Longest format string read from program memory.
pub const MAX_FMT_LEN: usize = 4096;

/// Why a format was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("invalid format string")]
    Invalid,
    #[error("the arguments do not fit the scratch area")]
    NoSpace,
}

impl FormatError {
    pub fn errno(self) -> i64 {
        match self {
            FormatError::Invalid => errno::EINVAL,
            FormatError::NoSpace => errno::ENOSPC,
        }
    }
}

const LEFT: u8 = 1;
const PLUS: u8 = 2;
const SPACE: u8 = 4;
const ZEROPAD: u8 = 8;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Conv {
    #[default]
    Int,
    Char,
    /// Text in the scratch area (`%s`, `%pks`, `%pus`, `%pI4`...).
    Text,
    /// `%p`, `%px`: zero-padded hex.
    PtrHex,
    /// `%pK`: a restricted pointer, printed as 0.
    PtrRestricted,
    /// `%ps`, `%pS`, `%pB`: `0x` and 16 hex digits.
    PtrSymbol,
}

/// One conversion, found and prepared by the first pass.
#[derive(Clone, Copy, Debug, Default)]
struct Spec {
    /// Index of the `%` and one past the conversion in the format.
    start: usize,
    end: usize,
    flags: u8,
    /// None: no width given.
    width: Option<u32>,
    conv: Conv,
    /// Int: signed? 64-bit? hex? upper-case?
    signed: bool,
    wide: bool,
    hex: bool,
    upper: bool,
    value: u64,
    /// Text: range in the scratch area.
    text: (usize, usize),
}

/// The result of the first pass: every conversion with its argument.
pub struct Prepared {
    specs: [Spec; MAX_BPRINTF_VARARGS],
    count: usize,
    scratch: [u8; MAX_BPRINTF_BIN_ARGS],
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn is_punct(c: u8) -> bool {
    c.is_ascii_punctuation()
}

/// End, space or punctuation: what may follow `%s` and a bare `%p`.
fn ends_word(c: u8) -> bool {
    c == 0 || is_space(c) || is_punct(c)
}

/// The kernel's first pass: validates `fmt` (without its NUL) against
/// `args` and copies what the arguments point to into the scratch area.
pub fn prepare(fmt: &[u8], args: &[u64]) -> Result<Prepared, FormatError> {
    let at = |i: usize| fmt.get(i).copied().unwrap_or(0);
    let mut p = Prepared {
        specs: [Spec::default(); MAX_BPRINTF_VARARGS],
        count: 0,
        scratch: [0; MAX_BPRINTF_BIN_ARGS],
    };
    // Scratch use, as the kernel counts it (only with arguments).
    let mut used = 0usize;
    let mut i = 0;
    while i < fmt.len() {
        let c = fmt[i];
        if c < 0x80 && !(c.is_ascii_graphic() || c == b' ' || is_space(c)) {
            return Err(FormatError::Invalid);
        }
        if c != b'%' {
            i += 1;
            continue;
        }
        if at(i + 1) == b'%' {
            i += 2;
            continue;
        }
        if p.count >= args.len() || p.count >= MAX_BPRINTF_VARARGS {
            return Err(FormatError::Invalid);
        }
        let mut spec = Spec {
            start: i,
            value: args[p.count],
            ..Spec::default()
        };
        i += 1;
        loop {
            match at(i) {
                b'0' => spec.flags |= ZEROPAD,
                b'+' => spec.flags |= PLUS,
                b'-' => spec.flags |= LEFT,
                b' ' => spec.flags |= SPACE,
                _ => break,
            }
            i += 1;
        }
        if (b'1'..=b'9').contains(&at(i)) {
            let mut w: u32 = 0;
            while at(i).is_ascii_digit() {
                w = w.saturating_mul(10).saturating_add(u32::from(at(i) - b'0'));
                i += 1;
            }
            spec.width = Some(w.min(FIELD_WIDTH_MAX));
        }
        // `i` is at the conversion character.
        let mut text_kind: Option<u8> = None;
        match at(i) {
            b'p' => {
                let next = at(i + 1);
                if ends_word(next) {
                    spec.conv = Conv::PtrHex;
                } else if (next == b'k' || next == b'u') && at(i + 2) == b's' {
                    i += 2;
                    if !ends_word(at(i + 1)) {
                        return Err(FormatError::Invalid);
                    }
                    text_kind = Some(next);
                } else if matches!(next, b'K' | b'x' | b's' | b'S' | b'B') {
                    spec.conv = match next {
                        b'K' => Conv::PtrRestricted,
                        b'x' => Conv::PtrHex,
                        _ => Conv::PtrSymbol,
                    };
                    i += 1;
                } else if matches!(next, b'i' | b'I') && matches!(at(i + 2), b'4' | b'6') {
                    i += 2;
                    text_kind = Some(if at(i) == b'4' { b'4' } else { b'6' });
                    spec.upper = next == b'I';
                } else {
                    return Err(FormatError::Invalid);
                }
                if text_kind.is_none() {
                    used = reserve(used, 8, args)?;
                }
            }
            b's' => {
                if !ends_word(at(i + 1)) {
                    return Err(FormatError::Invalid);
                }
                text_kind = Some(b's');
            }
            b'c' => {
                spec.conv = Conv::Char;
                if used >= MAX_BPRINTF_BIN_ARGS {
                    return Err(FormatError::NoSpace);
                }
                used += 1;
            }
            _ => {
                if at(i) == b'l' {
                    spec.wide = true;
                    i += 1;
                }
                if at(i) == b'l' {
                    i += 1;
                }
                let conv = at(i);
                if !matches!(conv, b'i' | b'd' | b'u' | b'x' | b'X') {
                    return Err(FormatError::Invalid);
                }
                spec.conv = Conv::Int;
                spec.signed = matches!(conv, b'i' | b'd');
                spec.hex = matches!(conv, b'x' | b'X');
                spec.upper = conv == b'X';
                used = reserve(used, if spec.wide { 8 } else { 4 }, args)?;
            }
        }
        if let Some(kind) = text_kind {
            if used >= MAX_BPRINTF_BIN_ARGS {
                return Err(FormatError::NoSpace);
            }
            let room = &mut p.scratch[used..];
            let len = match kind {
                b'4' | b'6' => format_ip(room, spec.value, kind == b'6', spec.upper),
                b'k' => 0,
                _ => copy_string(room, spec.value),
            };
            spec.conv = Conv::Text;
            spec.text = (used, used + len);
            // The kernel's copy takes the NUL too.
            used = (used + len + 1).min(MAX_BPRINTF_BIN_ARGS);
        }
        i += 1;
        spec.end = i;
        p.specs[p.count] = spec;
        p.count += 1;
    }
    Ok(p)
}

/// Room for a numeric argument of `size` bytes, aligned to 4.
fn reserve(used: usize, size: usize, args: &[u64]) -> Result<usize, FormatError> {
    if args.is_empty() {
        return Ok(used);
    }
    let aligned = used.next_multiple_of(4);
    if MAX_BPRINTF_BIN_ARGS.saturating_sub(aligned) < size {
        return Err(FormatError::NoSpace);
    }
    Ok(aligned + size)
}

/// Copies the string at `addr` (user memory) into `room`, keeping a byte
/// for the NUL; returns its length without the NUL (0 when unreadable).
fn copy_string(room: &mut [u8], addr: u64) -> usize {
    if room.is_empty() {
        return 0;
    }
    // SAFETY: `room` is a valid buffer of its length; the source is read
    // through the safe routine.
    match unsafe { safe_mem::safe_read_str(room.as_mut_ptr(), addr as *const u8, room.len()) } {
        Ok(n) => n.saturating_sub(1),
        Err(_) => 0,
    }
}

/// Formats the IPv4 (4 bytes) or IPv6 (16 bytes) address at `addr` into
/// `room` as `%pI4`/`%pi4`/`%pI6`/`%pi6` do; returns the length.
fn format_ip(room: &mut [u8], addr: u64, v6: bool, upper_i: bool) -> usize {
    let mut raw = [0u8; 16];
    let n = if v6 { 16 } else { 4 };
    // SAFETY: `raw` has 16 bytes; the source is read through the safe
    // routine (zeros on failure, as the kernel).
    if unsafe { safe_mem::safe_read(raw.as_mut_ptr(), addr as *const u8, n) }.is_err() {
        raw = [0; 16];
    }
    let mut out = Cursor { buf: room, len: 0 };
    if v6 {
        for (g, pair) in raw.chunks_exact(2).enumerate() {
            for b in pair {
                out.hex_byte(*b);
            }
            if upper_i && g != 7 {
                out.push(b':');
            }
        }
    } else {
        for (k, b) in raw[..4].iter().enumerate() {
            if k != 0 {
                out.push(b'.');
            }
            if upper_i {
                out.decimal(u64::from(*b));
            } else {
                out.push(b'0' + b / 100);
                out.push(b'0' + (b / 10) % 10);
                out.push(b'0' + b % 10);
            }
        }
    }
    out.len
}

/// A bounded writer into a byte slice (drops what does not fit, keeping
/// one byte free for a NUL).
struct Cursor<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl Cursor<'_> {
    fn push(&mut self, b: u8) {
        if self.len + 1 < self.buf.len() {
            self.buf[self.len] = b;
            self.len += 1;
        }
    }
    fn hex_byte(&mut self, b: u8) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        self.push(HEX[usize::from(b >> 4)]);
        self.push(HEX[usize::from(b & 15)]);
    }
    fn decimal(&mut self, v: u64) {
        let mut digits = [0u8; 20];
        let n = to_digits(v, 10, false, &mut digits);
        for &d in &digits[20 - n..] {
            self.push(d);
        }
    }
}

/// Writes `v` in `base` into the end of `out`; returns the digit count.
fn to_digits(mut v: u64, base: u64, upper: bool, out: &mut [u8; 20]) -> usize {
    let table: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    let mut n = 0;
    loop {
        n += 1;
        out[20 - n] = table[(v % base) as usize];
        v /= base;
        if v == 0 || n == 20 {
            return n;
        }
    }
}

/// Where formatted output goes: `cap` bytes at `dst` (written through
/// [`safe_mem`] in chunks), counting the full length as `vsnprintf` does.
pub struct Sink {
    dst: *mut u8,
    /// Bytes that may be written, the NUL excluded.
    cap: usize,
    /// Length of the output so far (also past `cap`).
    len: usize,
    stage: [u8; 128],
    staged: usize,
    /// Offset in `dst` of the first staged byte.
    flushed: usize,
    failed: bool,
}

impl Sink {
    /// Output into `size` bytes at `dst` (the last one kept for the NUL).
    pub fn new(dst: *mut u8, size: usize) -> Sink {
        Sink {
            dst,
            cap: size.saturating_sub(1),
            len: 0,
            stage: [0; 128],
            staged: 0,
            flushed: 0,
            failed: false,
        }
    }

    fn push(&mut self, b: u8) {
        if self.len < self.cap {
            if self.staged == self.stage.len() {
                self.flush();
            }
            self.stage[self.staged] = b;
            self.staged += 1;
        }
        self.len += 1;
    }

    fn bytes(&mut self, s: &[u8]) {
        for &b in s {
            self.push(b);
        }
    }

    fn pad(&mut self, b: u8, n: usize) {
        // Past the capacity only the count grows: no loop over a huge width.
        let room = self.cap.saturating_sub(self.len).min(n);
        for _ in 0..room {
            self.push(b);
        }
        self.len += n - room;
    }

    fn flush(&mut self) {
        if self.staged == 0 {
            return;
        }
        // SAFETY: `dst` may be written for `cap` bytes (the caller of
        // `new`); staged bytes lie below `cap`; the routine recovers from
        // faults.
        let ok = unsafe {
            safe_mem::safe_write(
                self.dst.wrapping_add(self.flushed),
                self.stage.as_ptr(),
                self.staged,
            )
        }
        .is_ok();
        self.failed |= !ok;
        self.flushed += self.staged;
        self.staged = 0;
    }

    /// Writes the NUL (when there is room for one) and returns the length
    /// of the output without it, or None if writing faulted.
    fn finish(mut self, size: usize) -> Option<usize> {
        self.flush();
        if size > 0 {
            let nul = [0u8];
            let at = self.len.min(size - 1);
            // SAFETY: `at < size`: inside the buffer (see `flush`).
            let ok = unsafe { safe_mem::safe_write(self.dst.wrapping_add(at), nul.as_ptr(), 1) };
            self.failed |= ok.is_err();
        }
        (!self.failed).then_some(self.len)
    }
}

/// The kernel's second pass (`bstr_printf`): prints `fmt` with the
/// prepared arguments into `sink`.
fn print(fmt: &[u8], p: &Prepared, sink: &mut Sink) {
    let mut i = 0;
    let mut k = 0;
    while i < fmt.len() {
        if k < p.count && p.specs[k].start == i {
            let spec = &p.specs[k];
            emit(spec, p, sink);
            i = spec.end;
            k += 1;
            continue;
        }
        if fmt[i] == b'%' && fmt.get(i + 1) == Some(&b'%') {
            sink.push(b'%');
            i += 2;
            continue;
        }
        sink.push(fmt[i]);
        i += 1;
    }
}

fn emit(spec: &Spec, p: &Prepared, sink: &mut Sink) {
    let width = spec.width.unwrap_or(0) as usize;
    match spec.conv {
        Conv::Int => {
            let v = spec.value;
            let (negative, magnitude) = match (spec.signed, spec.wide) {
                (true, true) => ((v as i64) < 0, (v as i64).unsigned_abs()),
                (true, false) => (
                    (v as u32 as i32) < 0,
                    i64::from(v as u32 as i32).unsigned_abs(),
                ),
                (false, true) => (false, v),
                (false, false) => (false, u64::from(v as u32)),
            };
            let sign = if !spec.signed {
                None
            } else if negative {
                Some(b'-')
            } else if spec.flags & PLUS != 0 {
                Some(b'+')
            } else if spec.flags & SPACE != 0 {
                Some(b' ')
            } else {
                None
            };
            let base = if spec.hex { 16 } else { 10 };
            number(
                sink, magnitude, base, spec.upper, sign, spec.flags, width, b"",
            );
        }
        Conv::Char => text(sink, &[spec.value as u8], spec.flags, width),
        Conv::Text => {
            let (a, b) = spec.text;
            text(sink, p.scratch.get(a..b).unwrap_or(&[]), spec.flags, width);
        }
        Conv::PtrHex | Conv::PtrRestricted => {
            let v = if spec.conv == Conv::PtrRestricted {
                0
            } else {
                spec.value
            };
            // Without a width: 16 digits, zero-padded.
            let (flags, width) = match spec.width {
                None => (ZEROPAD, 16),
                Some(_) => (spec.flags, width),
            };
            number(sink, v, 16, false, None, flags, width, b"");
        }
        Conv::PtrSymbol => number(sink, spec.value, 16, false, None, ZEROPAD, 18, b"0x"),
    }
}

/// The kernel's `number()`: sign or prefix, zero or space padding to
/// `width`, digits.
#[allow(clippy::too_many_arguments)]
fn number(
    sink: &mut Sink,
    v: u64,
    base: u64,
    upper: bool,
    sign: Option<u8>,
    flags: u8,
    width: usize,
    prefix: &[u8],
) {
    let mut digits = [0u8; 20];
    let n = to_digits(v, base, upper, &mut digits);
    let body = n + usize::from(sign.is_some()) + prefix.len();
    let pad = width.saturating_sub(body);
    let left = flags & LEFT != 0;
    let zero = flags & ZEROPAD != 0 && !left;
    if !left && !zero {
        sink.pad(b' ', pad);
    }
    if let Some(s) = sign {
        sink.push(s);
    }
    sink.bytes(prefix);
    if zero {
        sink.pad(b'0', pad);
    }
    sink.bytes(&digits[20 - n..]);
    if left {
        sink.pad(b' ', pad);
    }
}

/// A string or character, space-padded to `width`.
fn text(sink: &mut Sink, s: &[u8], flags: u8, width: usize) {
    let pad = width.saturating_sub(s.len());
    let left = flags & LEFT != 0;
    if !left {
        sink.pad(b' ', pad);
    }
    sink.bytes(s);
    if left {
        sink.pad(b' ', pad);
    }
}

/// Formats `fmt` (without its NUL) with `args` into `size` bytes at `dst`
/// (`vsnprintf` semantics: at most `size - 1` bytes and a NUL); returns the
/// full length of the output without the NUL. `Ok(None)`: the output could
/// not be written (a fault at `dst`).
///
/// # Safety
/// `size` bytes at `dst` may be written (they are written through
/// [`safe_mem`], so a bad `dst` is reported, not a crash).
pub unsafe fn format(
    fmt: &[u8],
    args: &[u64],
    dst: *mut u8,
    size: usize,
) -> Result<Option<usize>, FormatError> {
    let prepared = prepare(fmt, args)?;
    let mut sink = Sink::new(dst, size);
    print(fmt, &prepared, &mut sink);
    Ok(sink.finish(size))
}

/// Formats into a Rust buffer (for tests and the trace pipe).
pub fn format_to_vec(fmt: &[u8], args: &[u64]) -> Result<Vec<u8>, FormatError> {
    let mut out = vec![0u8; MAX_BPRINTF_BUF];
    // SAFETY: `out` is a valid buffer of its length.
    let len = unsafe { format(fmt, args, out.as_mut_ptr(), out.len()) }?.unwrap_or(0);
    out.truncate(len.min(MAX_BPRINTF_BUF - 1));
    Ok(out)
}

/// The format string of a call: program memory up to its NUL, copied into
/// `buf`. `limit` bounds the search (the `fmt_size` of trace_printk).
/// Returns the length without the NUL; -EINVAL (as an errno) when there
/// is no NUL within the limit, -EFAULT when the memory is not the
/// program's.
pub(crate) fn read_format(
    env: &HelperEnv,
    addr: u64,
    limit: usize,
    buf: &mut [u8; MAX_FMT_LEN],
) -> Result<usize, i64> {
    let limit = limit.min(MAX_FMT_LEN);
    // Fast path: the whole range is readable program memory.
    if limit > 0 && read_prog(env, &mut buf[..limit], addr) {
        return buf[..limit]
            .iter()
            .position(|&b| b == 0)
            .ok_or(errno::EINVAL);
    }
    // Byte by byte, stopping at the NUL (a constant string may end right
    // at the end of its map value).
    for i in 0..limit {
        if !read_prog(env, &mut buf[i..i + 1], addr.wrapping_add(i as u64)) {
            return Err(errno::EFAULT);
        }
        if buf[i] == 0 {
            return Ok(i);
        }
    }
    Err(errno::EINVAL)
}

/// `long bpf_snprintf(char *str, u32 str_size, const char *fmt, u64 *data,
/// u32 data_len)`: formats into `str` (NUL-terminated when `str_size > 0`);
/// returns the length of the full output including the NUL, -EINVAL for a
/// bad format, a `data_len` that is not a multiple of 8 or above 12
/// arguments; -EFAULT when `str`, `fmt` or `data` is not program memory.
///
/// # Safety
/// Called by an engine with its env.
pub unsafe extern "C" fn bpf_snprintf(
    str_ptr: u64,
    str_size: u64,
    fmt: u64,
    data: u64,
    data_len: u64,
    env: *mut HelperEnv,
) -> u64 {
    let str_size = str_size as u32 as usize;
    let data_len = data_len as u32 as usize;
    if !data_len.is_multiple_of(8)
        || data_len > MAX_BPRINTF_VARARGS * 8
        || (data_len != 0 && data == 0)
    {
        return neg(errno::EINVAL);
    }
    // SAFETY: engine contract.
    let Some(env) = (unsafe { env_ref(env) }) else {
        return neg(errno::EFAULT);
    };
    if !env.check(str_ptr, str_size as u64, Access::Write) {
        return neg(errno::EFAULT);
    }
    let mut args = [0u64; MAX_BPRINTF_VARARGS];
    let n_args = data_len / 8;
    let mut raw = [0u8; MAX_BPRINTF_VARARGS * 8];
    if !read_prog(env, &mut raw[..data_len], data) {
        return neg(errno::EFAULT);
    }
    for (arg, bytes) in args.iter_mut().zip(raw.chunks_exact(8)) {
        *arg = u64::from_le_bytes([
            bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
        ]);
    }
    let mut fmt_buf = [0u8; MAX_FMT_LEN];
    let fmt_len = match read_format(env, fmt, MAX_FMT_LEN, &mut fmt_buf) {
        Ok(len) => len,
        Err(e) => return neg(e),
    };
    // SAFETY: the program may write `str_size` bytes at `str_ptr`
    // (checked, or trusted under the JIT).
    let result = unsafe {
        format(
            &fmt_buf[..fmt_len],
            &args[..n_args],
            str_ptr as *mut u8,
            str_size,
        )
    };
    match result {
        Ok(Some(len)) => len as u64 + 1,
        Ok(None) => neg(errno::EFAULT),
        Err(e) => neg(e.errno()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(fmt: &str, args: &[u64]) -> String {
        String::from_utf8(format_to_vec(fmt.as_bytes(), args).unwrap()).unwrap()
    }

    #[test]
    fn integers() {
        assert_eq!(f("%d %i %u", &[u64::MAX, 5, u64::MAX]), "-1 5 4294967295");
        assert_eq!(
            f("%ld %lld %lu", &[u64::MAX, 1 << 40, u64::MAX]),
            "-1 1099511627776 18446744073709551615"
        );
        assert_eq!(
            f("%x %X %lx %llx", &[0xdead_beef_cafe, 0xab, 0xabc, 1 << 36]),
            "beefcafe AB abc 1000000000"
        );
        assert_eq!(
            f("[%5d][%-5d][%05d][%+d][% d]", &[42, 42, 42, 42, 42]),
            "[   42][42   ][00042][+42][ 42]"
        );
        assert_eq!(
            f("[%05d][%-05d][%+05d]", &[(-42i64) as u64, 7, 7]),
            "[-0042][7    ][+0007]"
        );
        assert_eq!(f("%08x|%8X", &[0xbeef, 0xbeef]), "0000beef|    BEEF");
        assert_eq!(f("%d%%", &[50]), "50%");
        assert_eq!(f("%d", &[i64::MIN as u64 | 0x8000_0000]), "-2147483648");
        assert_eq!(f("%lld", &[i64::MIN as u64]), "-9223372036854775808");
    }

    #[test]
    fn chars_strings_pointers() {
        let s = b"hello\0";
        let p = s.as_ptr() as u64;
        assert_eq!(
            f(
                "%c%c|%3c|%-3c|",
                &[b'o' as u64, b'k' as u64, b'x' as u64, b'y' as u64]
            ),
            "ok|  x|y  |"
        );
        assert_eq!(
            f("<%s> <%8s> <%-8s>", &[p, p, p]),
            "<hello> <   hello> <hello   >"
        );
        assert_eq!(f("<%s>", &[8]), "<>");
        assert_eq!(f("%pus,%pks.", &[p, p]), "hello,.");
        assert_eq!(
            f("%px %p %pK", &[0x1234, 0xab, 0x99]),
            "0000000000001234 00000000000000ab 0000000000000000"
        );
        assert_eq!(f("%pS", &[0x7f00_1234]), "0x000000007f001234");
        let ip4 = [127u8, 0, 0, 1];
        let ip6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        assert_eq!(
            f("%pI4 %pi4", &[ip4.as_ptr() as u64, ip4.as_ptr() as u64]),
            "127.0.0.1 127.000.000.001"
        );
        assert_eq!(
            f("%pI6", &[ip6.as_ptr() as u64]),
            "2001:0db8:0000:0000:0000:0000:0000:0001"
        );
        assert_eq!(
            f("%pi6", &[ip6.as_ptr() as u64]),
            "20010db8000000000000000000000001"
        );
    }

    #[test]
    fn refusals() {
        let bad = |fmt: &str, args: &[u64]| prepare(fmt.as_bytes(), args).err();
        assert_eq!(bad("%d", &[]), Some(FormatError::Invalid));
        assert_eq!(bad("%d %d", &[1]), Some(FormatError::Invalid));
        assert_eq!(bad("%f", &[1]), Some(FormatError::Invalid));
        assert_eq!(bad("%.2d", &[1]), Some(FormatError::Invalid));
        assert_eq!(bad("%hd", &[1]), Some(FormatError::Invalid));
        assert_eq!(bad("%sx", &[1]), Some(FormatError::Invalid));
        assert_eq!(bad("%pz", &[1]), Some(FormatError::Invalid));
        assert_eq!(bad("%", &[1]), Some(FormatError::Invalid));
        assert_eq!(bad("a\x01b", &[]), Some(FormatError::Invalid));
        assert_eq!(bad("%%s 100%%", &[]), None);
        assert_eq!(bad("%s.", &[0]), None);
        assert_eq!(bad("caf\u{e9}", &[]), None);
    }

    #[test]
    fn truncation_counts_the_full_length() {
        let mut out = [0xffu8; 8];
        // SAFETY: `out` is valid for its length.
        let n = unsafe {
            format(
                b"%d-%s",
                &[12345, c"abcdef".as_ptr() as u64],
                out.as_mut_ptr(),
                8,
            )
        };
        assert_eq!(n, Ok(Some(12)));
        assert_eq!(&out, b"12345-a\0");
        // SAFETY: size 0 writes nothing.
        let n = unsafe { format(b"abc", &[], std::ptr::null_mut(), 0) };
        assert_eq!(n, Ok(Some(3)));
        let wide = format_to_vec(b"%8000000d", &[1]).unwrap();
        assert_eq!(wide.len(), MAX_BPRINTF_BUF - 1);
    }

    #[test]
    fn scratch_space_is_shared() {
        let long = vec![b'x'; 600];
        let mut s = long.clone();
        s.push(0);
        let out = format_to_vec(b"%s|%d", &[s.as_ptr() as u64, 1]);
        // The string fills the scratch area; the number finds no room.
        assert_eq!(out, Err(FormatError::NoSpace));
        let out = format_to_vec(b"%s", &[s.as_ptr() as u64]).unwrap();
        assert_eq!(out.len(), MAX_BPRINTF_BIN_ARGS - 1);
    }
}
