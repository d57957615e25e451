//! The index behind name lookups: an open-addressing hash table of own
//! named types, keyed by a hash of the name's *essential* part (the name
//! without a `___flavor` suffix, see [`crate::co_re::essential_name`]).
//! Types whose names are equal have equal essential names, so one table
//! answers both exact lookups (`btf__find_by_name_kind`) and CO-RE's
//! candidate search (types whose essential names agree); callers compare
//! the names. Built on first use (vmlinux has 100k+ types, and many users
//! never look a name up), in one pass over the raw records.

use crate::btf::Btf;
use crate::co_re::essential_name;

pub(crate) struct NameIndex {
    /// `(hash tag << 32) | type id`; 0 marks an empty slot (no own type has
    /// id 0). Linear probing, filled in ascending id order.
    slots: Vec<u64>,
    mask: usize,
}

impl NameIndex {
    /// Indexes `btf`'s own types that have a non-empty name.
    pub(crate) fn build(btf: &Btf) -> NameIndex {
        let words = btf.type_words();
        let offsets = btf.type_offsets();
        let start_id = btf.start_id();
        // One pass: hash every name; the table is sized afterwards from the
        // number of named types (at most half full keeps probes short).
        let mut named: Vec<(u64, u32)> = Vec::with_capacity(offsets.len());
        for (i, &off) in offsets
            .iter()
            .take(offsets.len().saturating_sub(1))
            .enumerate()
        {
            let Some(&name_off) = words.get(off as usize) else {
                continue;
            };
            if name_off == 0 && start_id == 1 {
                continue; // anonymous (offset 0 is always "")
            }
            let Some(name) = btf.str_by_offset(name_off) else {
                continue;
            };
            let name = name.to_bytes();
            if !name.is_empty() {
                named.push((name_hash(essential_name(name)), start_id + i as u32));
            }
        }
        let capacity = (named.len() * 2).next_power_of_two().max(16);
        let mask = capacity - 1;
        let mut slots = vec![0u64; capacity];
        for (hash, id) in named {
            let mut slot = hash as usize & mask;
            while slots[slot] != 0 {
                slot = (slot + 1) & mask;
            }
            slots[slot] = (hash >> 32 << 32) | u64::from(id);
        }
        NameIndex { slots, mask }
    }

    /// Ids whose essential names hash like `essential` (which must itself be
    /// an essential name, or a name whose essential part is wanted), in
    /// ascending order; callers compare the names.
    ///
    /// Ascending because equal keys share a home slot and were inserted in
    /// id order: each later one probed past the earlier ones.
    pub(crate) fn candidates(&self, essential: &[u8]) -> impl Iterator<Item = u32> + '_ {
        let hash = name_hash(essential);
        let tag = hash >> 32;
        let mut slot = hash as usize & self.mask;
        std::iter::from_fn(move || loop {
            let entry = *self.slots.get(slot)?;
            if entry == 0 {
                return None;
            }
            slot = (slot + 1) & self.mask;
            if entry >> 32 == tag {
                return Some(entry as u32);
            }
        })
    }
}

/// A fast word-at-a-time hash (FxHash-like, with a final mix so that both
/// the low bits, used for the slot, and the high bits, kept as the tag, vary).
/// Not keyed: hostile names can only slow their own lookups.
fn name_hash(name: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut hash = name.len() as u64;
    let mut chunks = name.chunks_exact(8);
    let mut word = [0u8; 8];
    for chunk in &mut chunks {
        word.copy_from_slice(chunk);
        hash = (hash.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        word = [0; 8];
        word[..tail.len()].copy_from_slice(tail);
        hash = (hash.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
    }
    hash ^= hash >> 29;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^ (hash >> 32)
}
