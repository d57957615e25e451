//! The subset of glibc `sscanf` that libbpf's USDT parsers use, so that
//! argument specs and section names are accepted and refused exactly as
//! libbpf accepts and refuses them (`" %d @ %ld ( %%%15[^)] ) %n"`,
//! `"usdt/%m[^:]:%m[^:]:%m[^:]"`).
//!
//! Directives: white space (skips any amount of input white space),
//! ordinary characters (must match), `%%`, `%d`, `%ld`, `%[^set]` and `%s`
//! with an optional width and the `m` flag (ignored: values are borrowed),
//! and `%n`.

/// One converted value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Value<'a> {
    Int(i64),
    Str(&'a str),
}

/// What a `sscanf` call leaves behind.
#[derive(Debug, Default)]
pub(crate) struct Scanned<'a> {
    /// The assigned values in order; `values.len()` is `sscanf`'s return
    /// value (an input failure before the first conversion counts as 0).
    pub values: Vec<Value<'a>>,
    /// The byte count stored by the last `%n` reached.
    pub consumed: Option<usize>,
}

impl<'a> Scanned<'a> {
    pub fn int(&self, i: usize) -> i64 {
        match self.values.get(i) {
            Some(Value::Int(v)) => *v,
            _ => 0,
        }
    }

    pub fn str(&self, i: usize) -> &'a str {
        match self.values.get(i) {
            Some(Value::Str(s)) => s,
            _ => "",
        }
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

/// `strtol` on a decimal number at the start of `s`: the value (clamped
/// to `i64` as `strtol` clamps to `long`) and the bytes used, `None` when
/// there are no digits.
fn decimal(s: &[u8]) -> Option<(i64, usize)> {
    let mut i = 0;
    let negative = match s.first() {
        Some(b'-') => {
            i = 1;
            true
        }
        Some(b'+') => {
            i = 1;
            false
        }
        _ => false,
    };
    let start = i;
    let mut v: i128 = 0;
    while let Some(d) = s.get(i).filter(|b| b.is_ascii_digit()) {
        v = (v * 10 + i128::from(d - b'0')).min(i128::from(u64::MAX) + 1);
        i += 1;
    }
    if i == start {
        return None;
    }
    let v = if negative { -v } else { v };
    Some((
        v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64,
        i,
    ))
}

/// Runs `fmt` over `input` as glibc's `sscanf` does, for the directives
/// listed in the module documentation.
pub(crate) fn scan<'a>(input: &'a str, fmt: &str) -> Scanned<'a> {
    let s = input.as_bytes();
    let f = fmt.as_bytes();
    let mut out = Scanned::default();
    let (mut i, mut j) = (0usize, 0usize);
    let skip_ws = |i: &mut usize| {
        while *i < s.len() && is_space(s[*i]) {
            *i += 1;
        }
    };
    while j < f.len() {
        let c = f[j];
        if is_space(c) {
            skip_ws(&mut i);
            j += 1;
            continue;
        }
        if c != b'%' {
            if s.get(i) != Some(&c) {
                return out;
            }
            i += 1;
            j += 1;
            continue;
        }
        j += 1;
        if f.get(j) == Some(&b'%') {
            skip_ws(&mut i);
            if s.get(i) != Some(&b'%') {
                return out;
            }
            i += 1;
            j += 1;
            continue;
        }
        if f.get(j) == Some(&b'm') {
            j += 1;
        }
        let mut width = 0usize;
        while let Some(d) = f.get(j).filter(|b| b.is_ascii_digit()) {
            width = width * 10 + usize::from(d - b'0');
            j += 1;
        }
        let width = if width == 0 { usize::MAX } else { width };
        let long = f.get(j) == Some(&b'l');
        if long {
            j += 1;
        }
        let Some(&conv) = f.get(j) else {
            return out;
        };
        j += 1;
        match conv {
            b'n' => out.consumed = Some(i),
            b'd' => {
                skip_ws(&mut i);
                let end = s.len().min(i.saturating_add(width));
                let Some((v, used)) = decimal(&s[i..end]) else {
                    return out;
                };
                i += used;
                // `%d` stores into an int.
                let v = if long { v } else { i64::from(v as i32) };
                out.values.push(Value::Int(v));
            }
            b's' => {
                skip_ws(&mut i);
                let start = i;
                while i < s.len() && !is_space(s[i]) && i - start < width {
                    i += 1;
                }
                if i == start {
                    return out;
                }
                out.values.push(Value::Str(&input[start..i]));
            }
            b'[' => {
                let negate = f.get(j) == Some(&b'^');
                if negate {
                    j += 1;
                }
                let set_start = j;
                // A ']' right after '[' or '[^' is part of the set.
                if f.get(j) == Some(&b']') {
                    j += 1;
                }
                while j < f.len() && f[j] != b']' {
                    j += 1;
                }
                let set = &f[set_start..j];
                j += 1;
                let start = i;
                while i < s.len() && set.contains(&s[i]) != negate && i - start < width {
                    i += 1;
                }
                if i == start {
                    return out;
                }
                out.values.push(Value::Str(&input[start..i]));
            }
            _ => return out,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_glibc() {
        let r = scan("-4@-20(%rbp) 8@%rax", " %d @ %ld ( %%%15[^)] ) %n");
        assert_eq!(
            r.values,
            [Value::Int(-4), Value::Int(-20), Value::Str("rbp")]
        );
        assert_eq!(r.consumed, Some(13));
        // Stops at the first mismatch; %n is not reached.
        let r = scan("8@%rax", " %d @ $%ld %n");
        assert_eq!(r.values, [Value::Int(8)]);
        assert_eq!(r.consumed, None);
        // Width limits a set.
        let r = scan("abcdefghijklmnopq", "%3[^,]%n");
        assert_eq!(r.values, [Value::Str("abc")]);
        assert_eq!(r.consumed, Some(3));
        // An empty set match is a failure.
        let r = scan("usdt/:p:n", "usdt/%m[^:]:%m[^:]:%m[^:]");
        assert!(r.values.is_empty());
        let r = scan("usdt/a b:p:n:x", "usdt/%m[^:]:%m[^:]:%m[^:]");
        assert_eq!(
            r.values,
            [Value::Str("a b"), Value::Str("p"), Value::Str("n")]
        );
        // %d keeps the low 32 bits, %ld clamps like strtol.
        assert_eq!(scan("4294967297", "%d").int(0), 1);
        assert_eq!(scan("99999999999999999999", "%ld").int(0), i64::MAX);
    }
}
