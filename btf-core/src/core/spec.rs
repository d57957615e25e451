//! Access specs (libbpf's `bpf_core_spec`): an access string such as
//! `"0:1:2:3"` resolved against a type, keeping both the raw indices and the
//! "high-level" accessors (named members and array indices; anonymous
//! members in between are only in the raw list), plus the bit offset they
//! lead to. Also libbpf's log format for specs (`bpf_core_format_spec`).

use std::ffi::CStr;
use std::fmt::Write;

use crate::btf::Btf;
use crate::co_re::error::SpecError;
use crate::uapi::{BpfCoreRelo, CoreReloKind};
use crate::view::{TypeRef, TypeView};

/// `BPF_CORE_SPEC_MAX_LEN`: most accessors in one spec.
pub const MAX_SPEC_LEN: usize = 64;

/// libbpf formats specs into a 256-byte buffer: longer text is cut.
const FORMAT_BUFFER_LEN: usize = 256;

/// One high-level step: a named member of `type_id` (a struct or union),
/// an index into an array whose element type is `type_id`, or an enumerator
/// of the enum `type_id`. Ids are after modifiers and typedefs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Accessor<'a> {
    pub type_id: u32,
    pub idx: u32,
    /// Member or enumerator name; `None` for array indices.
    pub name: Option<&'a [u8]>,
}

/// A spec against one BTF: the local one parsed from a relocation, or a
/// target one built by matching.
#[derive(Clone, Debug)]
pub(crate) struct CoreSpec<'a> {
    pub btf: &'a Btf,
    /// The relocation's type, before skipping modifiers and typedefs.
    pub root_type_id: u32,
    pub kind: CoreReloKind,
    pub accessors: Vec<Accessor<'a>>,
    /// The access string's indices (for targets: the path actually taken,
    /// anonymous members included).
    pub raw: Vec<u32>,
    /// Bit offset of the accessed field from the start of the root object;
    /// libbpf keeps it in 32 bits and lets it wrap.
    pub bit_offset: u32,
}

impl<'a> CoreSpec<'a> {
    pub fn empty(btf: &'a Btf, root_type_id: u32, kind: CoreReloKind) -> CoreSpec<'a> {
        CoreSpec {
            btf,
            root_type_id,
            kind,
            accessors: Vec::new(),
            raw: Vec::new(),
            bit_offset: 0,
        }
    }

    /// Adds `bytes * index * 8` bits, wrapping as libbpf's `__u32` does.
    pub fn advance(&mut self, index: u32, elem_size: u32) {
        let bits = index.wrapping_mul(elem_size).wrapping_mul(8);
        self.bit_offset = self.bit_offset.wrapping_add(bits);
    }
}

/// A string of the BTF's string section, `None` if the offset is invalid.
pub(crate) fn str_at(btf: &Btf, offset: u32) -> Option<&[u8]> {
    btf.str_by_offset(offset).map(CStr::to_bytes)
}

/// The name of a type, member or enumerator; invalid offsets read as "".
pub(crate) fn name_at(btf: &Btf, offset: u32) -> &[u8] {
    str_at(btf, offset).unwrap_or_default()
}

/// Parses an access string into its indices the way libbpf's
/// `sscanf("%d%n")` loop does: an optional ':' before each number, glibc's
/// `%d` (leading white space, a sign, digits, saturating then truncated to
/// `int`), negative numbers refused.
pub fn parse_access_string(access: &[u8]) -> Result<Vec<u32>, SpecError> {
    if access.is_empty() {
        return Err(SpecError::EmptyAccessString);
    }
    if access[0] == b':' {
        return Err(SpecError::LeadingColon);
    }
    let mut indices = Vec::new();
    let mut at = 0;
    while at < access.len() {
        if access[at] == b':' {
            at += 1;
        }
        let (index, consumed) = scan_c_int(&access[at..]).ok_or(SpecError::NotANumber { at })?;
        if index < 0 {
            return Err(SpecError::NegativeIndex { index });
        }
        if indices.len() == MAX_SPEC_LEN {
            return Err(SpecError::TooLong);
        }
        at += consumed;
        indices.push(index as u32);
    }
    Ok(indices)
}

/// glibc's `%d`: the value and the bytes consumed, or `None` if no digits.
fn scan_c_int(s: &[u8]) -> Option<(i32, usize)> {
    let mut at = s
        .iter()
        .position(|c| !matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'))?;
    let negative = s[at] == b'-';
    if matches!(s[at], b'-' | b'+') {
        at += 1;
    }
    let digits = s[at..].iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    // strtol saturates at the range of `long`; scanf then stores an `int`.
    let mut value: i64 = 0;
    for &digit in &s[at..at + digits] {
        let d = i64::from(digit - b'0');
        value = if negative {
            value.saturating_mul(10).saturating_sub(d)
        } else {
            value.saturating_mul(10).saturating_add(d)
        };
    }
    Some((value as i32, at + digits))
}

/// Builds the local spec of `relo` (`bpf_core_parse_spec`).
pub(crate) fn parse_spec<'a>(btf: &'a Btf, relo: &BpfCoreRelo) -> Result<CoreSpec<'a>, SpecError> {
    let access = str_at(btf, relo.access_str_off).ok_or(SpecError::AccessStringMissing)?;
    if access.is_empty() {
        return Err(SpecError::EmptyAccessString);
    }
    if access[0] == b':' {
        return Err(SpecError::LeadingColon);
    }
    let kind = CoreReloKind::from_raw(relo.kind);
    if let Some(kind) = kind.filter(|k| k.is_type_based()) {
        if access != b"0" {
            return Err(SpecError::TypeBasedAccessNotZero);
        }
        return Ok(CoreSpec::empty(btf, relo.type_id, kind));
    }
    let raw = parse_access_string(access)?;
    let root = btf
        .skip_mods_and_typedefs(relo.type_id)
        .ok_or(SpecError::BadType {
            type_id: relo.type_id,
        })?;
    let first = raw[0];

    if let Some(kind) = kind.filter(|k| k.is_enumval_based()) {
        let count = root.vlen();
        let name_off = match root.view() {
            TypeView::Enum(e) => e.values.get(first as usize).map(|v| v.name_off),
            TypeView::Enum64(e) => e.values.get(first as usize).map(|v| v.name_off),
            _ => return Err(SpecError::NotAnEnum { type_id: root.id() }),
        };
        if raw.len() > 1 {
            return Err(SpecError::EnumAccessTooLong);
        }
        let name_off = name_off.ok_or(SpecError::EnumIndexOutOfRange {
            index: first,
            count,
        })?;
        let mut spec = CoreSpec::empty(btf, relo.type_id, kind);
        spec.accessors.push(Accessor {
            type_id: root.id(),
            idx: first,
            name: Some(name_at(btf, name_off)),
        });
        spec.raw = raw;
        return Ok(spec);
    }
    let Some(kind) = kind.filter(|k| k.is_field_based()) else {
        return Err(SpecError::UnknownKind { raw: relo.kind });
    };

    let mut spec = CoreSpec::empty(btf, relo.type_id, kind);
    spec.accessors.push(Accessor {
        type_id: root.id(),
        idx: first,
        name: None,
    });
    let size = btf.resolve_size(root.id()).map_err(SpecError::Size)?;
    spec.advance(first, size);

    let mut id = root.id();
    for (at, &index) in raw.iter().enumerate().skip(1) {
        let t = btf
            .skip_mods_and_typedefs(id)
            .ok_or(SpecError::BadType { type_id: id })?;
        id = t.id();
        match t.view() {
            TypeView::Struct(composite) | TypeView::Union(composite) => {
                let member =
                    composite
                        .member(index as usize)
                        .ok_or(SpecError::MemberIndexOutOfRange {
                            index,
                            count: t.vlen(),
                        })?;
                spec.bit_offset = spec.bit_offset.wrapping_add(member.bit_offset());
                // Anonymous members are steps of the raw spec only.
                if member.name_off() != 0 {
                    let name = name_at(btf, member.name_off());
                    if name.is_empty() {
                        return Err(SpecError::EmptyMemberName);
                    }
                    spec.accessors.push(Accessor {
                        type_id: id,
                        idx: index,
                        name: Some(name),
                    });
                }
                id = member.type_id();
            }
            TypeView::Array(array) => {
                let elem =
                    btf.skip_mods_and_typedefs(array.elem_type)
                        .ok_or(SpecError::BadType {
                            type_id: array.elem_type,
                        })?;
                id = elem.id();
                let flexible = is_flexible_array(btf, spec.accessors.last(), array.nelems);
                if !flexible && index >= array.nelems {
                    return Err(SpecError::ArrayIndexOutOfRange {
                        index,
                        nelems: array.nelems,
                    });
                }
                spec.accessors.push(Accessor {
                    type_id: id,
                    idx: index,
                    name: None,
                });
                let size = btf.resolve_size(id).map_err(SpecError::Size)?;
                spec.advance(index, size);
            }
            _ => {
                return Err(SpecError::UnexpectedKind {
                    at,
                    type_id: id,
                    kind: t.kind(),
                })
            }
        }
    }
    spec.raw = raw;
    Ok(spec)
}

/// libbpf's `is_flex_arr`: a zero-length array that is the last member of
/// the struct reached by the previous (named) accessor may be indexed past
/// its end.
pub(crate) fn is_flexible_array(btf: &Btf, previous: Option<&Accessor<'_>>, nelems: u32) -> bool {
    let Some(previous) = previous else {
        return false;
    };
    if previous.name.is_none() || nelems > 0 {
        return false;
    }
    let vlen = btf.type_by_id(previous.type_id).map_or(0, |t| t.vlen());
    previous.idx == vlen.wrapping_sub(1)
}

/// libbpf's spec text: `<kind> [id] kind name` then, for fields, the C
/// access path, the raw indices and the offset (`.pid (0:54 @ offset
/// 2456)`), for enumerators `::NAME = value`.
pub(crate) fn format_spec(spec: &CoreSpec<'_>) -> String {
    let mut out = String::new();
    let btf = spec.btf;
    let root = btf.type_by_id(spec.root_type_id);
    let root_name = root.map_or(&b""[..], |t| name_at(btf, t.name_off()));
    let _ = write!(
        out,
        "<{}> [{}] {} {}",
        spec.kind.name(),
        spec.root_type_id,
        root.map_or("unknown", |t| t.kind().name()),
        display_name(root_name),
    );
    if spec.kind.is_enumval_based() {
        let index = spec.raw.first().copied().unwrap_or(0) as usize;
        if let Some(t) = btf.skip_mods_and_typedefs(spec.root_type_id) {
            format_enumerator(&mut out, &t, index);
        }
    } else if spec.kind.is_field_based() {
        for (i, acc) in spec.accessors.iter().enumerate() {
            match acc.name {
                Some(name) => {
                    let _ = write!(out, ".{}", String::from_utf8_lossy(name));
                }
                None if i > 0 || acc.idx > 0 => {
                    let _ = write!(out, "[{}]", acc.idx);
                }
                None => {}
            }
        }
        out.push_str(" (");
        for (i, index) in spec.raw.iter().enumerate() {
            let sep = if i == 0 { "" } else { ":" };
            // libbpf keeps raw indices as `int`.
            let _ = write!(out, "{sep}{}", *index as i32);
        }
        let (bytes, bits) = (spec.bit_offset / 8, spec.bit_offset % 8);
        if bits != 0 {
            let _ = write!(out, " @ offset {bytes}.{bits})");
        } else {
            let _ = write!(out, " @ offset {bytes})");
        }
    }
    truncate_like_snprintf(out)
}

fn format_enumerator(out: &mut String, t: &TypeRef<'_>, index: usize) {
    let btf = t.btf();
    match t.view() {
        TypeView::Enum(e) => {
            if let Some(v) = e.values.get(index) {
                let name = String::from_utf8_lossy(name_at(btf, v.name_off));
                if e.is_signed {
                    let _ = write!(out, "::{name} = {}", v.val);
                } else {
                    let _ = write!(out, "::{name} = {}", v.val as u32);
                }
            }
        }
        TypeView::Enum64(e) => {
            if let Some(v) = e.values.get(index) {
                let name = String::from_utf8_lossy(name_at(btf, v.name_off));
                if e.is_signed {
                    let _ = write!(out, "::{name} = {}", v.value() as i64);
                } else {
                    let _ = write!(out, "::{name} = {}", v.value());
                }
            }
        }
        _ => {}
    }
}

/// A name for logs: `<anon>` when empty.
pub(crate) fn display_name(name: &[u8]) -> String {
    if name.is_empty() {
        "<anon>".to_string()
    } else {
        String::from_utf8_lossy(name).into_owned()
    }
}

/// Cuts `text` to what fits libbpf's 256-byte buffer (255 bytes and NUL).
fn truncate_like_snprintf(mut text: String) -> String {
    let max = FORMAT_BUFFER_LEN - 1;
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_strings_parse_like_sscanf() {
        let ok = |s: &str| parse_access_string(s.as_bytes()).unwrap();
        assert_eq!(ok("0"), [0]);
        assert_eq!(ok("0:1:2:3"), [0, 1, 2, 3]);
        assert_eq!(ok("01:+2"), [1, 2]);
        assert_eq!(ok("1 2"), [1, 2]); // %d skips white space
        assert_eq!(ok("1: 2"), [1, 2]);
        assert_eq!(ok("4294967296"), [0]); // long, then truncated to int
        let err = |s: &str| parse_access_string(s.as_bytes()).unwrap_err();
        assert_eq!(err(""), SpecError::EmptyAccessString);
        assert_eq!(err(":1"), SpecError::LeadingColon);
        assert_eq!(err("0:"), SpecError::NotANumber { at: 2 });
        assert_eq!(err("0::1"), SpecError::NotANumber { at: 2 });
        assert_eq!(err("0x1"), SpecError::NotANumber { at: 1 });
        assert_eq!(err("-1"), SpecError::NegativeIndex { index: -1 });
        assert_eq!(
            err("2147483648"),
            SpecError::NegativeIndex { index: i32::MIN }
        );
        assert_eq!(
            err("99999999999999999999"),
            SpecError::NegativeIndex { index: -1 }
        );
        assert_eq!(err("+"), SpecError::NotANumber { at: 0 });
        assert_eq!(err(" "), SpecError::NotANumber { at: 0 });
        let long = vec!["0"; MAX_SPEC_LEN + 1].join(":");
        assert_eq!(err(&long), SpecError::TooLong);
        assert_eq!(ok(&vec!["1"; MAX_SPEC_LEN].join(":")).len(), MAX_SPEC_LEN);
    }
}
