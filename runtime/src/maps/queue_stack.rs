//! `BPF_MAP_TYPE_QUEUE` (FIFO) and `BPF_MAP_TYPE_STACK` (LIFO), the
//! kernel's `queue_stack_maps.c`.
//!
//! `key_size` 0. Push (`bpf_map_push_elem`, or update from user space)
//! adds a value; when full it fails with `E2BIG` unless `BPF_EXIST`, which
//! drops the oldest element to make room (for both types). Pop
//! (`bpf_map_pop_elem`, or `LOOKUP_AND_DELETE` from user space) and peek
//! (`bpf_map_peek_elem`, or lookup) fail with `ENOENT` when empty; the
//! program-side forms then zero the value, as the kernel does. Delete and
//! `get_next_key` are `EINVAL`.
//!
//! # Shared layout
//! A circular buffer of `max_entries + 1` values in the data area, `head`
//! (next write) and `tail` (oldest) indices in the aux area, a [`ShmLock`]
//! around every operation. A push copies the value into the free slot
//! first, then moves `tail` (if it drops the oldest), then publishes by
//! moving `head`; a pop copies, then moves one index. Every store leaves a
//! valid queue, so a holder killed at any point loses at most the element
//! it was moving.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use super::{flags, map_type, MapError, MapMem, MapOps, MapSpec, MAP_AUX_SIZE};
use crate::shm::ShmLock;

/// The aux area.
#[repr(C)]
struct QueueAux {
    lock: ShmLock,
    /// Next slot to write. Under the lock.
    head: AtomicU32,
    /// Oldest element. Under the lock.
    tail: AtomicU32,
}

const _: () = assert!(std::mem::size_of::<QueueAux>() <= MAP_AUX_SIZE);

fn check(spec: &MapSpec) -> Result<usize, MapError> {
    use flags::*;
    let access = BPF_F_RDONLY | BPF_F_WRONLY | BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG;
    if spec.key_size != 0
        || spec.value_size == 0
        || spec.map_flags & !(BPF_F_NUMA_NODE | access) != 0
        || (spec.map_flags & BPF_F_RDONLY != 0 && spec.map_flags & BPF_F_WRONLY != 0)
        || (spec.map_flags & BPF_F_RDONLY_PROG != 0 && spec.map_flags & BPF_F_WRONLY_PROG != 0)
    {
        return Err(MapError::Invalid("queue/stack attributes"));
    }
    (spec.max_entries as usize + 1)
        .checked_mul(spec.value_size as usize)
        .ok_or(MapError::Full)
}

pub(crate) fn data_size(spec: &MapSpec) -> Result<usize, MapError> {
    check(spec)
}

pub(crate) fn init(_spec: &MapSpec, _mem: &MapMem) -> Result<(), MapError> {
    Ok(())
}

pub(crate) fn open(spec: &MapSpec, mem: Arc<MapMem>) -> Result<Box<dyn MapOps>, MapError> {
    if mem.data_size() < check(spec)? {
        return Err(MapError::NotAMap);
    }
    Ok(Box::new(QueueStack {
        mem,
        lifo: spec.map_type == map_type::STACK,
        size: spec.max_entries + 1,
        value_size: spec.value_size as usize,
    }))
}

/// A queue or stack map mapped into this process.
pub struct QueueStack {
    mem: Arc<MapMem>,
    lifo: bool,
    /// Slots: max_entries + 1.
    size: u32,
    value_size: usize,
}

impl std::fmt::Debug for QueueStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueStack")
            .field("lifo", &self.lifo)
            .field("max_entries", &(self.size - 1))
            .finish()
    }
}

impl QueueStack {
    fn aux(&self) -> &QueueAux {
        // SAFETY: the aux area is 8-aligned, large enough, all-atomic.
        unsafe { &*(self.mem.aux() as *const QueueAux) }
    }

    /// Slot `i` (taken modulo the size, so a corrupted index stays inside).
    fn slot(&self, i: u32) -> *mut u8 {
        // SAFETY: (i % size) * value_size < data size.
        unsafe {
            self.mem
                .data()
                .add((i % self.size) as usize * self.value_size)
        }
    }

    pub fn value_size(&self) -> u32 {
        self.value_size as u32
    }

    pub fn is_stack(&self) -> bool {
        self.lifo
    }

    /// Push from a raw pointer; `-errno` on failure.
    ///
    /// # Safety
    /// `value` is readable for `value_size` bytes.
    pub unsafe fn push_raw(&self, value: *const u8, flags: u64) -> Result<(), MapError> {
        if flags & flags::BPF_NOEXIST != 0 || flags > flags::BPF_EXIST {
            return Err(MapError::Invalid("queue/stack push flags"));
        }
        let replace = flags & flags::BPF_EXIST != 0;
        let aux = self.aux();
        let _guard = aux.lock.lock();
        let head = aux.head.load(Ordering::Relaxed) % self.size;
        let tail = aux.tail.load(Ordering::Relaxed) % self.size;
        let next = (head + 1) % self.size;
        // SAFETY: the caller vouches for `value`; the slot at head is free.
        unsafe { std::ptr::copy_nonoverlapping(value, self.slot(head), self.value_size) };
        if next == tail {
            if !replace {
                return Err(MapError::Full);
            }
            aux.tail.store((tail + 1) % self.size, Ordering::Relaxed);
        }
        aux.head.store(next, Ordering::Relaxed);
        Ok(())
    }

    /// Pop (`delete`) or peek into `value`; on `NotFound` the value is left
    /// untouched (the helpers zero it).
    ///
    /// # Safety
    /// `value` is writable for `value_size` bytes.
    pub unsafe fn get_raw(&self, value: *mut u8, delete: bool) -> Result<(), MapError> {
        let aux = self.aux();
        let _guard = aux.lock.lock();
        let head = aux.head.load(Ordering::Relaxed) % self.size;
        let tail = aux.tail.load(Ordering::Relaxed) % self.size;
        if head == tail {
            return Err(MapError::NotFound);
        }
        let index = if self.lifo {
            (head + self.size - 1) % self.size
        } else {
            tail
        };
        // SAFETY: the caller vouches for `value`; the slot holds an element.
        unsafe { std::ptr::copy_nonoverlapping(self.slot(index), value, self.value_size) };
        if delete {
            if self.lifo {
                aux.head.store(index, Ordering::Relaxed);
            } else {
                aux.tail.store((tail + 1) % self.size, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    pub fn push(&self, value: &[u8], flags: u64) -> Result<(), MapError> {
        let v = value
            .get(..self.value_size)
            .ok_or(MapError::Invalid("value size"))?;
        // SAFETY: `v` has value_size bytes.
        unsafe { self.push_raw(v.as_ptr(), flags) }
    }

    pub fn pop(&self, value: &mut [u8]) -> Result<(), MapError> {
        let v = value
            .get_mut(..self.value_size)
            .ok_or(MapError::Invalid("value size"))?;
        // SAFETY: `v` has value_size bytes.
        unsafe { self.get_raw(v.as_mut_ptr(), true) }
    }

    pub fn peek(&self, value: &mut [u8]) -> Result<(), MapError> {
        let v = value
            .get_mut(..self.value_size)
            .ok_or(MapError::Invalid("value size"))?;
        // SAFETY: `v` has value_size bytes.
        unsafe { self.get_raw(v.as_mut_ptr(), false) }
    }
}

impl MapOps for QueueStack {
    fn lookup(&self, _key: &[u8], value: &mut [u8], _flags: u64) -> Result<(), MapError> {
        self.peek(value)
    }
    fn update(&self, _key: &[u8], value: &[u8], flags: u64) -> Result<(), MapError> {
        self.push(value, flags)
    }
    fn delete(&self, _key: &[u8]) -> Result<(), MapError> {
        Err(MapError::Invalid("queue/stack maps have no keys"))
    }
    fn next_key(&self, _key: Option<&[u8]>, _next: &mut [u8]) -> Result<(), MapError> {
        Err(MapError::Invalid("queue/stack maps have no keys"))
    }
    fn lookup_and_delete(
        &self,
        _key: &[u8],
        value: &mut [u8],
        _flags: u64,
    ) -> Result<(), MapError> {
        self.pop(value)
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
