//! `BPF_MAP_TYPE_ARRAY` and `BPF_MAP_TYPE_PERCPU_ARRAY`.
//!
//! # Layout (data area, offset 0 of the map file)
//!
//! - ARRAY: `max_entries` values of `stride = round_up(value_size, 8)`
//!   bytes, value `i` at `i * stride`: exactly what the kernel's
//!   `BPF_F_MMAPABLE` array shows at `mmap(fd, 0)`, so user space can map
//!   the fd and see the values (global data sections rely on it).
//! - PERCPU_ARRAY: CPU-major, so that CPUs never share a cache line: CPU
//!   `c`'s block starts at `c * cpu_block` (`cpu_block =
//!   round_up(max_entries * stride, 64)`), value `i` of CPU `c` at
//!   `c * cpu_block + i * stride`.
//!
//! The memfd is zero-filled, so every value starts zeroed, as in the
//! kernel. Nothing but values lives in the data area and no state is kept
//! in the header's aux area: elements are never allocated or freed, so a
//! killed writer can at most leave one value half-copied (as a preempted
//! kernel writer without `BPF_F_LOCK` can).
//!
//! # Concurrency
//!
//! As in the kernel, updates copy in place with no lock (a concurrent
//! reader may see a mix of the old and the new value) unless the caller
//! asks for `BPF_F_LOCK`, which copies under the value's `bpf_spin_lock`
//! (a [`crate::shm::ShmLock`] word at [`MapSpec::spin_lock_off`]). Programs'
//! atomic instructions on values are plain atomics on shared memory.

use std::any::Any;
use std::sync::Arc;

use super::{
    check_lookup_flags, check_update_flags, copy_value_in, copy_value_out, flags, flags_access_ok,
    map_type, round_up8, value_lock, FastLookup, MapError, MapMem, MapOps, MapSpec,
};

/// `PCPU_MIN_UNIT_SIZE`: the kernel's bound on a per-CPU value.
pub(crate) const PCPU_MAX_VALUE: usize = 32 * 1024;

/// Flags an array accepts (`ARRAY_CREATE_FLAG_MASK` without
/// `BPF_F_PRESERVE_ELEMS`, which only perf event arrays take).
const ARRAY_FLAGS: u32 = flags::BPF_F_NUMA_NODE
    | flags::BPF_F_MMAPABLE
    | flags::BPF_F_RDONLY
    | flags::BPF_F_WRONLY
    | flags::BPF_F_RDONLY_PROG
    | flags::BPF_F_WRONLY_PROG
    | flags::BPF_F_INNER_MAP;

/// `array_map_alloc_check`.
fn validate(spec: &MapSpec) -> Result<(), MapError> {
    let percpu = spec.map_type == map_type::PERCPU_ARRAY;
    if spec.key_size != 4 {
        return Err(MapError::Invalid("array keys are 4 bytes"));
    }
    if spec.value_size == 0 {
        return Err(MapError::Invalid("value_size is 0"));
    }
    if spec.map_flags & !ARRAY_FLAGS != 0 || !flags_access_ok(spec.map_flags) {
        return Err(MapError::Invalid("map flags"));
    }
    if percpu && spec.map_flags & flags::BPF_F_NUMA_NODE != 0 {
        return Err(MapError::Invalid("per-CPU arrays take no NUMA node"));
    }
    if percpu && spec.map_flags & (flags::BPF_F_MMAPABLE | flags::BPF_F_INNER_MAP) != 0 {
        return Err(MapError::Invalid(
            "only ARRAY may be mmapable or an inner map",
        ));
    }
    if spec.value_size > i32::MAX as u32 {
        return Err(MapError::Full);
    }
    if percpu && round_up8(spec.value_size as usize) > PCPU_MAX_VALUE {
        return Err(MapError::Full);
    }
    Ok(())
}

struct Geometry {
    stride: usize,
    /// Bytes of one CPU's block (PERCPU_ARRAY), else of the whole array.
    cpu_block: usize,
    nr_cpus: usize,
}

fn geometry(spec: &MapSpec, nr_cpus: u32) -> Result<Geometry, MapError> {
    let stride = round_up8(spec.value_size as usize);
    let bytes = stride
        .checked_mul(spec.max_entries as usize)
        .ok_or(MapError::Full)?;
    if spec.map_type == map_type::PERCPU_ARRAY {
        let cpu_block = bytes.checked_add(63).ok_or(MapError::Full)? & !63;
        cpu_block
            .checked_mul(nr_cpus as usize)
            .ok_or(MapError::Full)?;
        Ok(Geometry {
            stride,
            cpu_block,
            nr_cpus: nr_cpus as usize,
        })
    } else {
        Ok(Geometry {
            stride,
            cpu_block: bytes,
            nr_cpus: 1,
        })
    }
}

pub(crate) fn data_size(spec: &MapSpec) -> Result<usize, MapError> {
    validate(spec)?;
    let g = geometry(spec, crate::cpu::possible_cpus())?;
    // Checked in `geometry`.
    Ok(g.cpu_block * g.nr_cpus)
}

pub(crate) fn init(_spec: &MapSpec, _mem: &MapMem) -> Result<(), MapError> {
    // Values start zeroed: the memfd is.
    Ok(())
}

pub(crate) fn open(spec: &MapSpec, mem: Arc<MapMem>) -> Result<Box<dyn MapOps>, MapError> {
    Ok(Box::new(ArrayMap::new(spec, mem)?))
}

/// An ARRAY or PERCPU_ARRAY mapped in this process.
pub struct ArrayMap {
    base: *mut u8,
    max_entries: u32,
    value_size: u32,
    stride: usize,
    cpu_block: usize,
    nr_cpus: u32,
    percpu: bool,
    lock: Option<u32>,
    rdonly_prog: bool,
    // Keeps `base` mapped.
    _mem: Arc<MapMem>,
}

// SAFETY: `base` points into a shared mapping kept alive by `_mem`; all
// access goes through raw pointers with the concurrency rules above.
unsafe impl Send for ArrayMap {}
// SAFETY: as above.
unsafe impl Sync for ArrayMap {}

impl ArrayMap {
    fn new(spec: &MapSpec, mem: Arc<MapMem>) -> Result<ArrayMap, MapError> {
        validate(spec)?;
        // A header from another process is checked as a new spec would be.
        super::check_spin_lock(spec).map_err(|_| MapError::NotAMap)?;
        let nr_cpus = mem.header().nr_cpus.max(1);
        let g = geometry(spec, nr_cpus)?;
        if g.cpu_block * g.nr_cpus > mem.data_size() {
            return Err(MapError::NotAMap);
        }
        Ok(ArrayMap {
            base: mem.data(),
            max_entries: spec.max_entries,
            value_size: spec.value_size,
            stride: g.stride,
            cpu_block: g.cpu_block,
            nr_cpus,
            percpu: spec.map_type == map_type::PERCPU_ARRAY,
            lock: spec.spin_lock_off,
            rdonly_prog: spec.map_flags & flags::BPF_F_RDONLY_PROG != 0,
            _mem: mem,
        })
    }

    /// The value of `index` on `cpu` (0 for plain arrays).
    ///
    /// # Safety
    /// `index < max_entries` and `cpu < nr_cpus` (1 for plain arrays).
    #[inline(always)]
    unsafe fn slot(&self, index: u32, cpu: u32) -> *mut u8 {
        // SAFETY: in bounds of the data area (checked against its size at
        // open) by the caller's guarantee.
        unsafe {
            self.base
                .add(cpu as usize * self.cpu_block + index as usize * self.stride)
        }
    }

    /// Bytes between values (`round_up(value_size, 8)`).
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// The address of value `index` (CPU 0's for per-CPU arrays), for the
    /// loader's direct value access and the JIT.
    pub fn value_ptr(&self, index: u32) -> Option<*mut u8> {
        // SAFETY: index checked; cpu 0 always exists.
        (index < self.max_entries).then(|| unsafe { self.slot(index, 0) })
    }

    fn key_index(key: &[u8]) -> Result<u32, MapError> {
        let bytes: [u8; 4] = key.try_into().map_err(|_| MapError::Invalid("key size"))?;
        Ok(u32::from_ne_bytes(bytes))
    }

    /// The update both sides share. `value` holds all CPUs' values
    /// (`stride` bytes each) when `cpu` is `None` for a per-CPU array, else
    /// one value.
    ///
    /// # Safety
    /// `value` is readable for what it holds (see above).
    unsafe fn update_at(
        &self,
        index: u32,
        value: *const u8,
        cpu: Option<u32>,
        flags_: u64,
    ) -> Result<(), MapError> {
        check_update_flags(flags_, self.lock)?;
        if index >= self.max_entries {
            return Err(MapError::Full);
        }
        if flags_ & !flags::BPF_F_LOCK == flags::BPF_NOEXIST {
            // Every element of an array exists.
            return Err(MapError::Exists);
        }
        let len = self.value_size as usize;
        // SAFETY: index checked above, cpus below nr_cpus; the caller
        // vouches for `value`.
        unsafe {
            if self.percpu {
                match cpu {
                    Some(c) => std::ptr::copy_nonoverlapping(value, self.slot(index, c), len),
                    None => {
                        for c in 0..self.nr_cpus {
                            std::ptr::copy_nonoverlapping(
                                value.add(c as usize * self.stride),
                                self.slot(index, c),
                                self.stride,
                            );
                        }
                    }
                }
                return Ok(());
            }
            let dst = self.slot(index, 0);
            match self.lock {
                Some(off) if flags_ & flags::BPF_F_LOCK != 0 => {
                    let _g = value_lock(dst, off).lock();
                    copy_value_in(dst, value, len, self.lock);
                }
                _ => copy_value_in(dst, value, len, self.lock),
            }
        }
        Ok(())
    }
}

impl MapOps for ArrayMap {
    fn lookup(&self, key: &[u8], value: &mut [u8], flags_: u64) -> Result<(), MapError> {
        check_lookup_flags(flags_, self.lock)?;
        let index = Self::key_index(key)?;
        if index >= self.max_entries {
            return Err(MapError::NotFound);
        }
        if self.percpu {
            let need = self.stride * self.nr_cpus as usize;
            if value.len() < need {
                return Err(MapError::Invalid("value size"));
            }
            for c in 0..self.nr_cpus {
                // SAFETY: index and cpu in bounds; `value` holds nr_cpus
                // strides (checked above).
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        self.slot(index, c),
                        value.as_mut_ptr().add(c as usize * self.stride),
                        self.stride,
                    )
                };
            }
            return Ok(());
        }
        let len = self.value_size as usize;
        if value.len() < len {
            return Err(MapError::Invalid("value size"));
        }
        // SAFETY: index in bounds; `value` holds value_size bytes.
        unsafe {
            let src = self.slot(index, 0);
            match self.lock {
                Some(off) if flags_ & flags::BPF_F_LOCK != 0 => {
                    let _g = value_lock(src, off).lock();
                    copy_value_out(value.as_mut_ptr(), src, len, self.lock);
                }
                _ => copy_value_out(value.as_mut_ptr(), src, len, self.lock),
            }
        }
        Ok(())
    }

    fn update(&self, key: &[u8], value: &[u8], flags_: u64) -> Result<(), MapError> {
        let index = Self::key_index(key)?;
        let need = if self.percpu {
            self.stride * self.nr_cpus as usize
        } else {
            self.value_size as usize
        };
        if value.len() < need {
            return Err(MapError::Invalid("value size"));
        }
        // SAFETY: `value` holds what `update_at` reads (checked above).
        unsafe { self.update_at(index, value.as_ptr(), None, flags_) }
    }

    fn delete(&self, _key: &[u8]) -> Result<(), MapError> {
        // Array elements cannot be deleted (the kernel says -EINVAL).
        Err(MapError::Invalid("array elements cannot be deleted"))
    }

    fn next_key(&self, key: Option<&[u8]>, next: &mut [u8]) -> Result<(), MapError> {
        // `array_map_get_next_key`: a missing or out-of-range key restarts
        // at 0; the last key has no successor.
        let index = match key {
            Some(k) => Self::key_index(k)?,
            None => u32::MAX,
        };
        let out = if index >= self.max_entries {
            0
        } else if index == self.max_entries - 1 {
            return Err(MapError::NotFound);
        } else {
            index + 1
        };
        next[..4].copy_from_slice(&out.to_ne_bytes());
        Ok(())
    }

    #[inline]
    unsafe fn prog_lookup(&self, key: *const u8) -> *mut u8 {
        // SAFETY: the caller vouches for 4 readable key bytes.
        let index = unsafe { std::ptr::read_unaligned(key as *const u32) };
        if index >= self.max_entries {
            return std::ptr::null_mut();
        }
        let cpu = if self.percpu {
            crate::cpu::current_cpu().min(self.nr_cpus - 1)
        } else {
            0
        };
        // SAFETY: index checked, cpu clamped.
        unsafe { self.slot(index, cpu) }
    }

    unsafe fn prog_update(&self, key: *const u8, value: *const u8, flags_: u64) -> i64 {
        if self.rdonly_prog {
            return -(libc::EPERM as i64);
        }
        // SAFETY: the caller vouches for the key and value bytes.
        let index = unsafe { std::ptr::read_unaligned(key as *const u32) };
        let cpu = self
            .percpu
            .then(|| crate::cpu::current_cpu().min(self.nr_cpus - 1));
        // SAFETY: `value` holds value_size bytes, which is what a per-CPU
        // update of one CPU and a plain update read.
        match unsafe { self.update_at(index, value, cpu, flags_) } {
            Ok(()) => 0,
            Err(e) => e.to_helper_ret(),
        }
    }

    unsafe fn prog_delete(&self, _key: *const u8) -> i64 {
        -(libc::EINVAL as i64)
    }

    unsafe fn prog_lookup_percpu(&self, key: *const u8, cpu: u32) -> *mut u8 {
        if !self.percpu || cpu >= self.nr_cpus {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller vouches for 4 readable key bytes.
        let index = unsafe { std::ptr::read_unaligned(key as *const u32) };
        if index >= self.max_entries {
            return std::ptr::null_mut();
        }
        // SAFETY: index and cpu checked.
        unsafe { self.slot(index, cpu) }
    }

    fn prog_value_size(&self) -> u32 {
        self.value_size
    }

    fn fast_lookup(&self) -> FastLookup {
        FastLookup::Array {
            base: self.base as usize,
            stride: self.stride,
            max_entries: self.max_entries,
            cpu_block: self.cpu_block,
            percpu: self.percpu,
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
