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

/// The length of `name` without its flavor suffix: everything from the last
/// `___` that has a non-underscore on both sides is dropped.
pub fn essential_name_len(name: &[u8]) -> usize {
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
