//! "Essential" names: CO-RE ignores a `___flavor` suffix, so that a program
//! can carry several local definitions (`task_struct___old`,
//! `task_struct___new`) of one kernel type (libbpf's
//! `bpf_core_essential_name_len`).

/// Whether `name[at..]` starts with `X___Y`, X and Y not underscores: the
/// separator of a flavor suffix.
fn is_flavor_separator(name: &[u8], at: usize) -> bool {
    matches!(
        name.get(at..at + 5),
        Some([x, b'_', b'_', b'_', y]) if *x != b'_' && *y != b'_'
    )
}

/// Whether `name` contains `___`: eight bytes at a time, windows
/// overlapping by two so that every run of three lies inside one.
fn has_triple_underscore(name: &[u8]) -> bool {
    const HI: u64 = 0x8080_8080_8080_8080;
    const UNDERSCORES: u64 = 0x5f5f_5f5f_5f5f_5f5f;
    let mut at = 0;
    while at + 2 < name.len() {
        let end = (at + 8).min(name.len());
        let mut window = [0u8; 8];
        window[..end - at].copy_from_slice(&name[at..end]);
        // Bytes equal to '_' become 0; `zero` gets the high bit of each
        // such byte, exactly (no borrow crosses bytes).
        let x = u64::from_le_bytes(window) ^ UNDERSCORES;
        let zero = !(((x & !HI).wrapping_add(!HI)) | x) & HI;
        if zero & (zero >> 8) & (zero >> 16) != 0 {
            return true;
        }
        at += 6;
    }
    false
}

/// The length of `name` without its flavor suffix: everything from the last
/// `___` that has a non-underscore on both sides is dropped.
pub fn essential_name_len(name: &[u8]) -> usize {
    // Fast path (most names): no "___" at all, so no flavor.
    if !has_triple_underscore(name) {
        return name.len();
    }
    (0..name.len().saturating_sub(4))
        .rev()
        .find(|&at| is_flavor_separator(name, at))
        .map_or(name.len(), |at| at + 1)
}

/// `name` without its flavor suffix.
pub fn essential_name(name: &[u8]) -> &[u8] {
    &name[..essential_name_len(name)]
}

/// Whether two names agree once their flavor suffixes are dropped.
pub(crate) fn essential_names_equal(a: &[u8], b: &[u8]) -> bool {
    essential_name(a) == essential_name(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triple_underscore_scan_matches_a_naive_one() {
        // Every string of length 0..=11 over {'a', '_'}, and some others.
        for len in 0..=11u32 {
            for bits in 0..(1u32 << len) {
                let name: Vec<u8> = (0..len)
                    .map(|i| if bits >> i & 1 == 1 { b'_' } else { b'a' })
                    .collect();
                let naive = name.windows(3).any(|w| w == b"___");
                assert_eq!(has_triple_underscore(&name), naive, "{name:?}");
            }
        }
        assert!(!has_triple_underscore(b"\x5f\xdf\x5f_\x7f__"));
        assert!(has_triple_underscore("\u{df}___\u{ff}".as_bytes()));
    }

    #[test]
    fn flavors_are_dropped_like_libbpf() {
        let cases: [(&str, &str); 12] = [
            ("task_struct", "task_struct"),
            ("task_struct___old", "task_struct"),
            ("task_struct___2", "task_struct"),
            ("a___b___c", "a___b"),
            ("a____b", "a____b"), // four underscores: Y would be '_'
            ("a___", "a___"),     // no Y
            ("___a", "___a"),     // no X
            ("_a___b", "_a"),
            ("x___y", "x"),
            ("abc", "abc"),
            ("", ""),
            ("a__b", "a__b"),
        ];
        for (name, essential) in cases {
            assert_eq!(
                essential_name(name.as_bytes()),
                essential.as_bytes(),
                "{name}"
            );
        }
    }
}
