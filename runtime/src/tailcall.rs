//! Tail calls (`bpf_tail_call`, helper 12): the program array and the
//! kernel's rules, shared by every engine.
//!
//! A program calls `bpf_tail_call(ctx, prog_array, index)` with r1 = the
//! context, r2 = the address of a [`ProgArray`] (what the loader puts in
//! place of the map: [`ProgArray::as_addr`]) and r3 = the slot index. When
//! the slot holds a program the engine can run and fewer than
//! [`MAX_TAIL_CALL_CNT`] tail calls happened in this run, the current frame
//! is replaced by that program: it starts with the same r1, a fresh stack,
//! and its r0 at `exit` is returned to whoever called the frame that made
//! the tail call (the embedder, for a tail call from the main program). When
//! the slot is empty, the index is out of range or the limit is hit, the
//! call fails and execution continues with the next instruction with every
//! register unchanged (as the kernel's interpreter does).
//!
//! The array is engine-neutral: slots hold `Arc<dyn Any + Send + Sync>`, and
//! each engine downcasts to the type it runs (the JIT to
//! [`crate::jit::JitProgram`]). A slot holding another engine's program
//! counts as empty for that engine.

use std::any::Any;
use std::sync::{Arc, RwLock};

use thiserror::Error;

/// Helper id of `bpf_tail_call`.
pub const BPF_FUNC_TAIL_CALL: u32 = 12;
/// Most tail calls one run may make, as the kernel's `MAX_TAIL_CALL_CNT`.
pub const MAX_TAIL_CALL_CNT: u32 = 33;

/// A program stored in a [`ProgArray`] slot.
pub type TailTarget = Arc<dyn Any + Send + Sync>;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProgArrayError {
    #[error("index {index} is out of range for a program array of {max_entries} slots")]
    OutOfRange { index: u32, max_entries: u32 },
}

/// Slots of programs that `bpf_tail_call` can jump to
/// (`BPF_MAP_TYPE_PROG_ARRAY`).
///
/// Slots may be updated while programs run on other threads: a run that
/// jumped to a program keeps its own reference to it until the run ends.
pub struct ProgArray {
    slots: Box<[RwLock<Option<TailTarget>>]>,
}

impl std::fmt::Debug for ProgArray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProgArray")
            .field("max_entries", &self.slots.len())
            .finish()
    }
}

impl ProgArray {
    /// An array of `max_entries` empty slots.
    pub fn new(max_entries: u32) -> Self {
        ProgArray {
            slots: (0..max_entries).map(|_| RwLock::new(None)).collect(),
        }
    }

    pub fn max_entries(&self) -> u32 {
        self.slots.len() as u32
    }

    /// Puts `prog` into slot `index` and returns what was there.
    pub fn set(&self, index: u32, prog: TailTarget) -> Result<Option<TailTarget>, ProgArrayError> {
        let slot = self.slot(index)?;
        let mut guard = slot.write().unwrap_or_else(|e| e.into_inner());
        Ok(guard.replace(prog))
    }

    /// Empties slot `index` and returns what was there.
    pub fn clear(&self, index: u32) -> Result<Option<TailTarget>, ProgArrayError> {
        let slot = self.slot(index)?;
        let mut guard = slot.write().unwrap_or_else(|e| e.into_inner());
        Ok(guard.take())
    }

    /// The program in slot `index`, if any (out of range: `None`).
    pub fn get(&self, index: u32) -> Option<TailTarget> {
        let slot = self.slots.get(index as usize)?;
        // Poisoning cannot leave a slot half-written (it holds one Arc).
        slot.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The value a program passes in r2 to name this array: its address.
    /// The array must outlive every run that may use the value.
    pub fn as_addr(&self) -> u64 {
        let addr = self as *const ProgArray as u64;
        live_arrays().insert(addr);
        addr
    }

    /// The array at `addr` if `addr` came from [`ProgArray::as_addr`] of an
    /// array that has not been dropped; `None` for any other value. For
    /// engines that must not trust r2 (the interpreter).
    pub fn live<'a>(addr: u64) -> Option<&'a ProgArray> {
        if !live_arrays().contains(&addr) {
            return None;
        }
        // SAFETY: `addr` was handed out by `as_addr` and the array has not
        // been dropped (Drop removes it from the set). Arrays must outlive
        // the runs that use them (see `as_addr`), which bounds 'a.
        unsafe { ProgArray::from_addr(addr) }
    }

    /// The array at `addr` (a value from [`ProgArray::as_addr`]); `None` for 0.
    ///
    /// # Safety
    /// `addr` must be 0 or come from `as_addr` of an array that is still
    /// alive for `'a`.
    pub unsafe fn from_addr<'a>(addr: u64) -> Option<&'a ProgArray> {
        // SAFETY: the caller guarantees that a non-zero addr points to a
        // live ProgArray.
        unsafe { (addr as *const ProgArray).as_ref() }
    }

    fn slot(&self, index: u32) -> Result<&RwLock<Option<TailTarget>>, ProgArrayError> {
        self.slots
            .get(index as usize)
            .ok_or(ProgArrayError::OutOfRange {
                index,
                max_entries: self.max_entries(),
            })
    }
}

impl Drop for ProgArray {
    fn drop(&mut self) {
        live_arrays().remove(&(self as *const ProgArray as u64));
    }
}

/// Addresses of arrays handed out by [`ProgArray::as_addr`] and not dropped.
fn live_arrays() -> std::sync::MutexGuard<'static, std::collections::HashSet<u64>> {
    static LIVE: std::sync::OnceLock<std::sync::Mutex<std::collections::HashSet<u64>>> =
        std::sync::OnceLock::new();
    LIVE.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Tail-call bookkeeping of one run: the kernel's counter and order of
/// checks, so that every engine fails the same tail calls.
#[derive(Debug, Default, Clone)]
pub struct TailCallCounter {
    count: u32,
}

impl TailCallCounter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Tail calls made so far (including those that found an empty slot).
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Decides a `bpf_tail_call(ctx, array, index)`: the program to jump to,
    /// or `None` if the call fails. Follows the kernel's interpreter: an
    /// out-of-range index fails without counting; past the limit fails;
    /// otherwise the attempt counts, even when the slot is empty.
    pub fn begin(&mut self, array: &ProgArray, index: u64) -> Option<TailTarget> {
        // The kernel truncates r3 to u32.
        let index = index as u32;
        if index >= array.max_entries() || self.count >= MAX_TAIL_CALL_CNT {
            return None;
        }
        self.count += 1;
        array.get(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_set_get_clear() {
        let a = ProgArray::new(2);
        assert!(a.get(0).is_none());
        assert!(a.set(1, Arc::new(7u32)).unwrap().is_none());
        let t = a.get(1).unwrap();
        assert_eq!(t.downcast_ref::<u32>(), Some(&7));
        assert!(a.set(2, Arc::new(1u32)).is_err());
        assert!(a.clear(1).unwrap().is_some());
        assert!(a.get(1).is_none());
        // SAFETY: `a` is alive.
        let back = unsafe { ProgArray::from_addr(a.as_addr()) }.unwrap();
        assert_eq!(back.max_entries(), 2);
        // SAFETY: 0 is always accepted.
        assert!(unsafe { ProgArray::from_addr(0) }.is_none());
    }

    #[test]
    fn counter_follows_kernel_order() {
        let a = ProgArray::new(1);
        a.set(0, Arc::new(0u8)).unwrap();
        let mut c = TailCallCounter::new();
        // Out of range (after u32 truncation) does not count.
        assert!(c.begin(&a, 1).is_none());
        assert_eq!(c.count(), 0);
        assert!(c.begin(&a, 1 << 32).is_some());
        for _ in 1..MAX_TAIL_CALL_CNT {
            assert!(c.begin(&a, 0).is_some());
        }
        assert_eq!(c.count(), MAX_TAIL_CALL_CNT);
        assert!(c.begin(&a, 0).is_none());
        // An empty slot counts.
        let empty = ProgArray::new(1);
        let mut c = TailCallCounter::new();
        assert!(c.begin(&empty, 0).is_none());
        assert_eq!(c.count(), 1);
    }
}
