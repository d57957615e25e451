//! Section names of auto-attachable uprobes, parsed as libbpf 1.7's
//! `attach_uprobe` and `attach_uprobe_multi` do:
//! `sscanf(sec, "%m[^/]/%m[^:]:%m[^\n]", &type, &binary, &func)` and, for
//! single uprobes, a trailing `+OFFSET` (`sscanf(p, "+%li%n")`).

/// What `sscanf("%m[^/]/%m[^:]:%m[^\n]")` made of a section name: how many
/// conversions succeeded and their values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeSecScan {
    /// sscanf's return value (0 to 3).
    pub count: usize,
    pub probe_type: String,
    pub binary: String,
    pub func: String,
}

/// libbpf's `sscanf(sec, "%m[^/]/%m[^:]:%m[^\n]")`: each `%m[...]`
/// needs at least one character.
pub fn scan_probe_sec(sec: &str) -> ProbeSecScan {
    let mut out = ProbeSecScan {
        count: 0,
        probe_type: String::new(),
        binary: String::new(),
        func: String::new(),
    };
    let take = |s: &str, stop: &[char]| -> usize { s.find(stop).unwrap_or(s.len()) };
    let n = take(sec, &['/']);
    if n == 0 {
        return out;
    }
    out.probe_type = sec[..n].to_owned();
    out.count = 1;
    let Some(rest) = sec[n..].strip_prefix('/') else {
        return out;
    };
    let n = take(rest, &[':']);
    if n == 0 {
        return out;
    }
    out.binary = rest[..n].to_owned();
    out.count = 2;
    let Some(rest) = rest[n..].strip_prefix(':') else {
        return out;
    };
    let n = take(rest, &['\n']);
    if n == 0 {
        return out;
    }
    out.func = rest[..n].to_owned();
    out.count = 3;
    out
}

/// C's `strtol(s, &end, 0)` as `%li` reads it: leading white space, a
/// sign, then a decimal, `0x` hex or `0` octal number. Returns the value
/// (saturated like strtol) and the bytes consumed; `None` when no digits.
fn scan_long(s: &str) -> Option<(i64, usize)> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    let neg = match b.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let (radix, start) = if b.get(i) == Some(&b'0')
        && matches!(b.get(i + 1), Some(b'x' | b'X'))
        && b.get(i + 2).is_some_and(|c| c.is_ascii_hexdigit())
    {
        (16, i + 2)
    } else if b.get(i) == Some(&b'0') {
        (8, i)
    } else {
        (10, i)
    };
    let mut j = start;
    let mut value: i128 = 0;
    while let Some(d) = b.get(j).and_then(|&c| (c as char).to_digit(radix)) {
        value = (value * radix as i128 + d as i128).min(i64::MAX as i128 + 1);
        j += 1;
    }
    if j == start {
        return None;
    }
    let v = if neg { -value } else { value };
    Some((v.clamp(i64::MIN as i128, i64::MAX as i128) as i64, j))
}

/// A single uprobe section with a target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UprobeSecTarget {
    /// `uretprobe` or `uretprobe.s`.
    pub retprobe: bool,
    pub binary: String,
    /// The function (a trailing valid `+OFFSET` removed).
    pub func: String,
    pub offset: i64,
}

/// What `attach_uprobe` does with a section name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UprobeSec {
    /// `SEC("uprobe")` and anything sscanf reads one field of: valid, but
    /// nothing to auto-attach.
    NoTarget,
    /// `uprobe/BINARY` without `:FUNC` ("missing ':function[+offset]'
    /// specification", -EINVAL).
    MissingFunction,
    /// A uretprobe with a `+OFFSET` ("uretprobes do not support offset
    /// specification", -EINVAL).
    RetprobeOffset,
    /// Not even a probe type ("invalid format of section definition").
    Invalid,
    Target(UprobeSecTarget),
}

/// libbpf's `attach_uprobe` parse of `uprobe/PATH:FUNC[+OFF]`,
/// `uretprobe/PATH:FUNC`, `uprobe.s/...`, `uretprobe.s/...`.
pub fn parse_uprobe_sec(sec: &str) -> UprobeSec {
    let scan = scan_probe_sec(sec);
    match scan.count {
        1 => UprobeSec::NoTarget,
        2 => UprobeSec::MissingFunction,
        3 => {
            let mut func = scan.func;
            let mut offset = 0;
            if let Some(plus) = func.rfind('+') {
                if let Some((v, used)) = scan_long(&func[plus + 1..]) {
                    if plus + 1 + used == func.len() {
                        offset = v;
                        func.truncate(plus);
                    }
                }
            }
            let retprobe = scan.probe_type == "uretprobe" || scan.probe_type == "uretprobe.s";
            if retprobe && offset != 0 {
                return UprobeSec::RetprobeOffset;
            }
            UprobeSec::Target(UprobeSecTarget {
                retprobe,
                binary: scan.binary,
                func,
                offset,
            })
        }
        _ => UprobeSec::Invalid,
    }
}

/// A uprobe.multi section with a target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UprobeMultiSecTarget {
    pub retprobe: bool,
    pub session: bool,
    pub binary: String,
    pub pattern: String,
}

/// What `attach_uprobe_multi` does with a section name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UprobeMultiSec {
    NoTarget,
    /// "invalid format of section definition" (-EINVAL).
    Invalid,
    Target(UprobeMultiSecTarget),
}

/// libbpf's `attach_uprobe_multi` parse of `uprobe.multi/PATH:PATTERN`,
/// `uretprobe.multi/...`, `uprobe.session/...` and their `.s` forms.
pub fn parse_uprobe_multi_sec(sec: &str) -> UprobeMultiSec {
    let scan = scan_probe_sec(sec);
    match scan.count {
        1 => UprobeMultiSec::NoTarget,
        3 => UprobeMultiSec::Target(UprobeMultiSecTarget {
            session: scan.probe_type.starts_with("uprobe.session"),
            retprobe: scan.probe_type.starts_with("uretprobe.multi"),
            binary: scan.binary,
            pattern: scan.func,
        }),
        _ => UprobeMultiSec::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(retprobe: bool, binary: &str, func: &str, offset: i64) -> UprobeSec {
        UprobeSec::Target(UprobeSecTarget {
            retprobe,
            binary: binary.into(),
            func: func.into(),
            offset,
        })
    }

    #[test]
    fn single() {
        assert_eq!(parse_uprobe_sec("uprobe"), UprobeSec::NoTarget);
        // sscanf stops at an empty field: one conversion.
        assert_eq!(parse_uprobe_sec("uprobe/"), UprobeSec::NoTarget);
        assert_eq!(parse_uprobe_sec("uprobe/:f"), UprobeSec::NoTarget);
        assert_eq!(
            parse_uprobe_sec("uprobe/libc.so.6"),
            UprobeSec::MissingFunction
        );
        assert_eq!(
            parse_uprobe_sec("uprobe/libc.so.6:"),
            UprobeSec::MissingFunction
        );
        assert_eq!(
            parse_uprobe_sec("uprobe/libc.so.6:malloc"),
            target(false, "libc.so.6", "malloc", 0)
        );
        // An absolute path: the binary field may hold slashes.
        assert_eq!(
            parse_uprobe_sec("uprobe.s//usr/bin/x:main+0x10"),
            target(false, "/usr/bin/x", "main", 16)
        );
        assert_eq!(
            parse_uprobe_sec("uprobe/./x:main+0x10"),
            target(false, "./x", "main", 16)
        );
        assert_eq!(
            parse_uprobe_sec("uprobe/x:f+010"),
            target(false, "x", "f", 8)
        );
        assert_eq!(
            parse_uprobe_sec("uprobe/x:f+12z"),
            target(false, "x", "f+12z", 0)
        );
        assert_eq!(
            parse_uprobe_sec("uprobe/x:f@@V:1"),
            target(false, "x", "f@@V:1", 0)
        );
        assert_eq!(parse_uprobe_sec("uretprobe/x:f"), target(true, "x", "f", 0));
        assert_eq!(
            parse_uprobe_sec("uretprobe.s/x:f+0"),
            target(true, "x", "f", 0)
        );
        assert_eq!(
            parse_uprobe_sec("uretprobe/x:f+4"),
            UprobeSec::RetprobeOffset
        );
        assert_eq!(parse_uprobe_sec("/x"), UprobeSec::Invalid);
    }

    #[test]
    fn multi() {
        assert_eq!(
            parse_uprobe_multi_sec("uprobe.multi"),
            UprobeMultiSec::NoTarget
        );
        assert_eq!(
            parse_uprobe_multi_sec("uprobe.multi/x"),
            UprobeMultiSec::Invalid
        );
        assert_eq!(
            parse_uprobe_multi_sec("uretprobe.multi.s/libc.so.6:mall*"),
            UprobeMultiSec::Target(UprobeMultiSecTarget {
                retprobe: true,
                session: false,
                binary: "libc.so.6".into(),
                pattern: "mall*".into(),
            })
        );
        let UprobeMultiSec::Target(t) = parse_uprobe_multi_sec("uprobe.session/x:y") else {
            panic!()
        };
        assert!(t.session && !t.retprobe);
    }
}
