//! [`StrIndex`]: the lookup index of a string section, with the semantics of
//! libbpf's `strset`: every string that starts right after a NUL (or at
//! offset 0) is indexed, the first occurrence of duplicated contents wins,
//! and a string that only appears as the tail of another one is not found.
//!
//! The index holds offsets only; the bytes stay in the section it indexes
//! (a parsed blob, or the growable section of an edited [`crate::Btf`]), so
//! indexing vmlinux's strings copies nothing.

/// Marks an empty slot (no string section reaches 4 GiB).
const EMPTY: u32 = u32::MAX;

/// An open-addressing hash table of string offsets, kept at most half full.
#[derive(Clone, Debug)]
pub(crate) struct StrIndex {
    slots: Vec<u32>,
    used: usize,
}

/// The string starting at `off` (up to its NUL, or the end of `data`).
fn str_at(data: &[u8], off: u32) -> &[u8] {
    let tail = data.get(off as usize..).unwrap_or_default();
    let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
    &tail[..end]
}

/// FNV-1a, mixed at the end so the low bits (the slot) depend on every byte.
fn hash(s: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in s {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 29)
}

impl StrIndex {
    /// Indexes every string of `data` (a string section), first
    /// occurrences only (libbpf's `strset__new`).
    pub(crate) fn build(data: &[u8]) -> StrIndex {
        let count = data.iter().filter(|&&b| b == 0).count();
        let mut index = StrIndex {
            slots: vec![EMPTY; (count * 2).next_power_of_two().max(16)],
            used: 0,
        };
        let mut off = 0usize;
        while off < data.len() {
            let s = str_at(data, off as u32);
            if index.find(data, s).is_none() {
                index.insert(data, off as u32);
            }
            off += s.len() + 1;
        }
        index
    }

    /// The offset of the indexed string equal to `s`.
    pub(crate) fn find(&self, data: &[u8], s: &[u8]) -> Option<u32> {
        let mask = self.slots.len() - 1;
        let mut slot = hash(s) as usize & mask;
        loop {
            let off = self.slots[slot];
            if off == EMPTY {
                return None;
            }
            if str_at(data, off) == s {
                return Some(off);
            }
            slot = (slot + 1) & mask;
        }
    }

    /// Indexes the string at `off` of `data`, which must not be indexed yet.
    pub(crate) fn insert(&mut self, data: &[u8], off: u32) {
        if (self.used + 1) * 2 > self.slots.len() {
            self.grow(data);
        }
        self.place(data, off);
        self.used += 1;
    }

    fn place(&mut self, data: &[u8], off: u32) {
        let mask = self.slots.len() - 1;
        let mut slot = hash(str_at(data, off)) as usize & mask;
        while self.slots[slot] != EMPTY {
            slot = (slot + 1) & mask;
        }
        self.slots[slot] = off;
    }

    fn grow(&mut self, data: &[u8]) {
        let doubled = vec![EMPTY; self.slots.len() * 2];
        let old = std::mem::replace(&mut self.slots, doubled);
        for off in old.into_iter().filter(|&o| o != EMPTY) {
            self.place(data, off);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libbpf_strset_semantics() {
        let data = b"\0int\0long\0int\0nt\0";
        let index = StrIndex::build(data);
        assert_eq!(index.find(data, b""), Some(0));
        assert_eq!(index.find(data, b"int"), Some(1));
        assert_eq!(index.find(data, b"long"), Some(5));
        // "nt" is indexed at 14, not found as the tail of "int".
        assert_eq!(index.find(data, b"nt"), Some(14));
        assert_eq!(index.find(data, b"ong"), None);
        assert_eq!(index.find(data, b"in"), None);
    }

    #[test]
    fn grows_and_keeps_every_string() {
        let mut data = vec![0u8];
        let mut index = StrIndex::build(&data);
        for i in 0..10_000u32 {
            let s = format!("sym_{i}");
            assert_eq!(index.find(&data, s.as_bytes()), None);
            let off = data.len() as u32;
            data.extend_from_slice(s.as_bytes());
            data.push(0);
            index.insert(&data, off);
        }
        for i in (0..10_000u32).step_by(7) {
            let s = format!("sym_{i}");
            let off = index.find(&data, s.as_bytes()).unwrap();
            assert_eq!(str_at(&data, off), s.as_bytes());
        }
    }
}
