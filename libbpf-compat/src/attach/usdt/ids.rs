//! Spec ids: small integers, the keys of the `__bpf_usdt_specs` array
//! map, handed out per BPF object as libbpf's `usdt_manager` does. A
//! detached link gives its ids back; the most recently returned id is
//! reused first.

/// The spec ids of one BPF object.
#[derive(Debug, Default)]
pub struct SpecIds {
    /// Returned ids, reused from the end.
    free: Vec<u32>,
    /// The lowest id never handed out.
    next: u32,
}

impl SpecIds {
    /// A free id, or `None` when all `max_entries` slots of the spec map
    /// are taken (libbpf's `-E2BIG`).
    pub fn allocate(&mut self, max_entries: u32) -> Option<u32> {
        if let Some(id) = self.free.pop() {
            return Some(id);
        }
        if self.next >= max_entries {
            return None;
        }
        self.next += 1;
        Some(self.next - 1)
    }

    /// Gives back a link's ids, in the order it allocated them.
    pub fn release(&mut self, ids: &[u32]) {
        self.free.extend_from_slice(ids);
    }

    /// The returned ids, next to be reused last.
    pub fn free_ids(&self) -> &[u32] {
        &self.free
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuse_order_and_limit() {
        let mut ids = SpecIds::default();
        assert_eq!(ids.allocate(3), Some(0));
        assert_eq!(ids.allocate(3), Some(1));
        assert_eq!(ids.allocate(3), Some(2));
        assert_eq!(ids.allocate(3), None);
        ids.release(&[0, 1]);
        assert_eq!(ids.allocate(3), Some(1));
        assert_eq!(ids.allocate(3), Some(0));
        assert_eq!(ids.allocate(3), None);
    }
}
