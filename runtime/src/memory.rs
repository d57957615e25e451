//! Memory regions a program may touch, for engines that check every access.

/// What an access does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    Read,
    Write,
    /// Read and write: a region granted this way allows both.
    ReadWrite,
}

impl Access {
    fn allows(self, wanted: Access) -> bool {
        match self {
            Access::ReadWrite => true,
            granted => granted == wanted,
        }
    }
}

/// A range of host memory `[start, start + len)` and what it allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Region {
    pub start: u64,
    pub len: u64,
    pub access: Access,
}

impl Region {
    pub const fn new(start: u64, len: u64, access: Access) -> Self {
        Region { start, len, access }
    }

    /// A region over a mutable byte slice.
    pub fn of_slice_mut(mem: &mut [u8]) -> Self {
        Region::new(mem.as_mut_ptr() as u64, mem.len() as u64, Access::ReadWrite)
    }

    /// A read-only region over a byte slice.
    pub fn of_slice(mem: &[u8]) -> Self {
        Region::new(mem.as_ptr() as u64, mem.len() as u64, Access::Read)
    }

    /// True when `[addr, addr + len)` lies inside this region and the access
    /// is allowed. Overflowing ranges are never contained.
    pub fn contains(&self, addr: u64, len: u64, access: Access) -> bool {
        let Some(end) = addr.checked_add(len) else {
            return false;
        };
        self.access.allows(access) && addr >= self.start && end <= self.start + self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containment_respects_bounds_and_access() {
        let r = Region::new(100, 16, Access::Read);
        assert!(r.contains(100, 16, Access::Read));
        assert!(r.contains(108, 8, Access::Read));
        assert!(!r.contains(109, 8, Access::Read));
        assert!(!r.contains(99, 1, Access::Read));
        assert!(!r.contains(100, 1, Access::Write));
        assert!(!r.contains(u64::MAX, 2, Access::Read));
        let rw = Region::new(0, 8, Access::ReadWrite);
        assert!(rw.contains(0, 8, Access::Write));
    }
}
