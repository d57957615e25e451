//! Deduplication of the linked BTF: types that are structurally identical
//! (same kind, name, sizes, members, and referencing identical types, cycles
//! included) are merged into the first of them.
//!
//! This is partition refinement (as in DFA minimization): types start in
//! classes of equal local content (every field but the type ids), and a
//! class is split until all its members refer, slot by slot, to types of
//! the same classes. The result merges exactly the bisimilar types, which
//! is what libbpf's `btf__dedup` does for types that are copies of each
//! other (the linker's case: headers shared by the inputs). Unlike
//! libbpf's algorithm it does not resolve a FWD against a full STRUCT or
//! UNION, nor merge a struct with a "more complete" one. VARs and DATASECs
//! are never merged.

use std::collections::HashMap;

use super::{kind, type_id_slots, KIND_DATASEC, KIND_VAR};

/// Deduplicates `types` (index = type id, `types[0]` the unused void
/// slot) in place; returns the old-id to new-id map.
pub(crate) fn dedup(types: &mut Vec<Vec<u32>>) -> Vec<u32> {
    let n = types.len();
    let slots: Vec<Vec<usize>> = types
        .iter()
        .map(|t| match t.is_empty() {
            true => Vec::new(),
            false => type_id_slots(t),
        })
        .collect();
    // Initial classes: local content, type ids masked.
    let mut class = vec![0u32; n];
    let mut keys: HashMap<Vec<u32>, u32> = HashMap::new();
    for id in 1..n {
        let t = &types[id];
        let mut key = t.clone();
        for &s in &slots[id] {
            if let Some(w) = key.get_mut(s) {
                *w = 0;
            }
        }
        if matches!(kind(t), KIND_VAR | KIND_DATASEC) {
            // never merged: make the key unique
            key.push(u32::MAX);
            key.push(id as u32);
        }
        let next = keys.len() as u32 + 1;
        class[id] = *keys.entry(key).or_insert(next);
    }
    let mut count = keys.len();
    loop {
        let mut keys: HashMap<Vec<u32>, u32> = HashMap::new();
        let mut next_class = vec![0u32; n];
        for id in 1..n {
            let mut key = vec![class[id]];
            for &s in &slots[id] {
                let r = types[id].get(s).copied().unwrap_or(0) as usize;
                // void and out-of-range ids keep their raw value
                key.push(match r {
                    0 => 0,
                    r if r < n => class[r],
                    r => u32::MAX - r as u32,
                });
            }
            let next = keys.len() as u32 + 1;
            next_class[id] = *keys.entry(key).or_insert(next);
        }
        class = next_class;
        if keys.len() == count {
            break;
        }
        count = keys.len();
    }
    // The first id of each class represents it; new ids keep the order.
    let mut rep: HashMap<u32, usize> = HashMap::new();
    let mut map = vec![0u32; n];
    let mut kept = Vec::new();
    for id in 1..n {
        match rep.get(&class[id]) {
            Some(&r) => map[id] = map[r],
            None => {
                rep.insert(class[id], id);
                kept.push(id);
                map[id] = kept.len() as u32;
            }
        }
    }
    let mut out = Vec::with_capacity(kept.len() + 1);
    out.push(Vec::new());
    for &id in &kept {
        let mut t = std::mem::take(&mut types[id]);
        for &s in &slots[id] {
            if let Some(w) = t.get_mut(s) {
                if (*w as usize) < n {
                    *w = map[*w as usize];
                }
            }
        }
        out.push(t);
    }
    *types = out;
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(kind: u32, vlen: u32) -> u32 {
        (kind << 24) | vlen
    }

    /// At ids `base..base + 4`: int, `struct list { struct list *next
    /// (named member_name); int v; }`, its pointer, a VAR of the struct.
    fn copy(base: u32, member_name: u32) -> Vec<Vec<u32>> {
        vec![
            vec![1, info(1, 0), 4, 32],
            vec![2, info(4, 2), 16, member_name, base + 2, 0, 4, base, 64],
            vec![0, info(2, 0), base + 1],
            vec![5, info(14, 0), base + 1, 1],
        ]
    }

    #[test]
    fn merges_identical_types_with_cycles_but_not_vars() {
        let mut types = vec![Vec::new()];
        types.extend(copy(1, 3));
        types.extend(copy(5, 3));
        types.extend(copy(9, 7));
        let map = dedup(&mut types);
        assert_eq!(&map[1..5], &[1, 2, 3, 4]);
        // The second copy merges into the first, but for its VAR.
        assert_eq!(&map[5..9], &[1, 2, 3, 5]);
        // The third has another member name: only its int merges.
        assert_eq!(&map[9..13], &[1, 6, 7, 8]);
        assert_eq!(types.len(), 9);
        assert_eq!(types[2][4], 3); // list.next -> ptr
        assert_eq!(types[3][2], 2); // ptr -> list
        assert_eq!(types[5][2], 2); // second VAR -> list
        assert_eq!(types[6][4], 7); // other list.next -> its ptr
        assert_eq!(types[7][2], 6);
        assert_eq!(types[8][2], 6);
    }
}
