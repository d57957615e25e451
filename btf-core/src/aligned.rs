//! Owned, 4-byte-aligned copies of section bytes, and typed views of the
//! kernel records inside them.
//!
//! A `.BTF` section can sit at any alignment in an ELF file, so its bytes are
//! copied into a `Vec<u32>`. The copy starts `pad` bytes into the first word,
//! chosen so that the sections whose offsets the format requires to be
//! multiples of 4 (types, layout, .BTF.ext subsections) land on word
//! boundaries. Records are then read in place, as `&BtfType` or `&[BtfMember]`,
//! which is what lets a C caller receive pointers into the buffer.
//!
//! A raw BTF file under `/sys/kernel/btf` can instead be mapped read-only
//! ([`AlignedBytes::map_sysfs`]): the kernel hands out its own immutable
//! pages, so nothing is copied; the first change (a byte swap, a type edit)
//! copies the blob into owned words.
//!
//! This is the only module with `unsafe`.

use std::fs::File;
use std::io::Read;
use std::mem::{align_of, size_of};
use std::ops::Range;

use crate::uapi::{
    BpfCoreRelo, BpfFuncInfo, BpfLineInfo, BtfArray, BtfDeclTag, BtfEnum, BtfEnum64, BtfLayout,
    BtfMember, BtfParam, BtfType, BtfVar, BtfVarSecinfo,
};

mod sealed {
    pub trait Sealed {}
}

/// A kernel record that may be viewed in place inside a word buffer.
///
/// # Safety
/// Implementors are `#[repr(C)]`, have no padding, an alignment of at most 4,
/// a size that is a non-zero multiple of 4, and every bit pattern is a valid
/// value. The trait is sealed: only the uapi records below implement it.
pub unsafe trait KernelRecord: sealed::Sealed + Copy + 'static {}

macro_rules! kernel_records {
    ($($ty:ty),* $(,)?) => {$(
        impl sealed::Sealed for $ty {}
        // SAFETY: every listed type is a #[repr(C)] struct of u32/i32 fields
        // (or, for BtfLayout, u8+u8+u16 = 4 bytes with no padding); the
        // assertions below check the size and alignment parts of the contract.
        unsafe impl KernelRecord for $ty {}
        const _: () = assert!(size_of::<$ty>() % 4 == 0 && size_of::<$ty>() > 0);
        const _: () = assert!(align_of::<$ty>() <= 4);
    )*};
}

kernel_records!(
    BtfType,
    BtfArray,
    BtfMember,
    BtfParam,
    BtfEnum,
    BtfEnum64,
    BtfVar,
    BtfVarSecinfo,
    BtfDeclTag,
    BtfLayout,
    BpfFuncInfo,
    BpfLineInfo,
    BpfCoreRelo,
);

/// Number of 32-bit words a record occupies.
pub(crate) const fn words_of<T: KernelRecord>() -> usize {
    size_of::<T>() / 4
}

/// `count` records of type `T` at the start of `words`, or `None` if `words`
/// is too short.
pub(crate) fn records<T: KernelRecord>(words: &[u32], count: usize) -> Option<&[T]> {
    let needed = count.checked_mul(words_of::<T>())?;
    let words = words.get(..needed)?;
    // SAFETY: `words` is a live, 4-aligned region of exactly
    // count * size_of::<T>() bytes; T has alignment <= 4, no padding and no
    // invalid bit patterns (KernelRecord contract), so reinterpreting the
    // region as `count` values of T is sound for the lifetime of `words`.
    Some(unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<T>(), count) })
}

/// The record of type `T` at the start of `words`.
pub(crate) fn record<T: KernelRecord>(words: &[u32]) -> Option<&T> {
    records::<T>(words, 1).and_then(|r| r.first())
}

/// Views words as their bytes in memory order.
pub(crate) fn word_bytes(words: &[u32]) -> &[u8] {
    // SAFETY: u8 has alignment 1 and every u32 is 4 initialized bytes, so the
    // region of the slice is a valid [u8] of 4 * len bytes for its lifetime.
    unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), words.len() * 4) }
}

fn word_bytes_mut(words: &mut [u32]) -> &mut [u8] {
    // SAFETY: as in `word_bytes`; any byte pattern written through the
    // result is a valid u32, and the exclusive borrow prevents aliasing.
    unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), words.len() * 4) }
}

/// A byte blob in word-aligned storage: owned, or a read-only mapping.
#[derive(Debug)]
pub(crate) struct AlignedBytes {
    storage: Storage,
    /// Bytes before the blob inside the storage words.
    pad: usize,
    len: usize,
}

#[derive(Debug)]
enum Storage {
    Owned(Vec<u32>),
    Mapped(Mapping),
}

/// A read-only `mmap` of a sysfs BTF file (kernel memory that never changes
/// while the kernel runs), unmapped on drop.
#[derive(Debug)]
struct Mapping {
    ptr: *const u32,
    /// Whole words of the file (its length is a multiple of 4).
    words: usize,
    map_len: usize,
}

// SAFETY: the mapping is read-only and its contents never change, so it may
// be read from any thread and dropped (unmapped) from any thread.
unsafe impl Send for Mapping {}
// SAFETY: as above: shared references only ever read immutable memory.
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr` and `map_len` come from a successful mmap that is
        // unmapped only here, once; no borrow of the storage outlives `self`.
        unsafe {
            libc::munmap(self.ptr as *mut libc::c_void, self.map_len);
        }
    }
}

impl Clone for AlignedBytes {
    fn clone(&self) -> AlignedBytes {
        AlignedBytes {
            storage: Storage::Owned(self.storage().to_vec()),
            pad: self.pad,
            len: self.len,
        }
    }
}

impl AlignedBytes {
    /// Copies `bytes` so that byte `anchor` of the blob is word-aligned.
    pub(crate) fn copy_with_aligned_offset(bytes: &[u8], anchor: usize) -> AlignedBytes {
        let pad = (4 - anchor % 4) % 4;
        let mut words = vec![0u32; (pad + bytes.len()).div_ceil(4)];
        word_bytes_mut(&mut words)[pad..pad + bytes.len()].copy_from_slice(bytes);
        AlignedBytes {
            storage: Storage::Owned(words),
            pad,
            len: bytes.len(),
        }
    }

    /// Reads all of `file` straight into word storage (blob at offset 0):
    /// one copy, from the kernel. `size_hint` is where the buffer starts.
    pub(crate) fn read_file(file: &mut File, size_hint: usize) -> std::io::Result<AlignedBytes> {
        let mut words = vec![0u32; size_hint.div_ceil(4).max(1024)];
        let mut len = 0usize;
        loop {
            if len == words.len() * 4 {
                let grown = words.len() * 2;
                words.resize(grown, 0);
            }
            match file.read(&mut word_bytes_mut(&mut words)[len..]) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        words.truncate(len.div_ceil(4));
        Ok(AlignedBytes {
            storage: Storage::Owned(words),
            pad: 0,
            len,
        })
    }

    /// Maps `file` (`len` bytes, a sysfs BTF file whose contents are
    /// immutable kernel memory) read-only. `None` if `len` is 0 or not a
    /// multiple of 4, or if the kernel refuses the mapping (older kernels
    /// cannot map BTF: read it instead).
    pub(crate) fn map_sysfs(file: &File, len: usize) -> Option<AlignedBytes> {
        use std::os::fd::AsRawFd;
        if len == 0 || !len.is_multiple_of(4) {
            return None;
        }
        // SAFETY: a fresh read-only private mapping of an open file; the
        // kernel picks the (page-aligned, hence word-aligned) address and
        // nothing else aliases it. Failure is checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED || ptr.is_null() {
            return None;
        }
        Some(AlignedBytes {
            storage: Storage::Mapped(Mapping {
                ptr: ptr.cast::<u32>().cast_const(),
                words: len / 4,
                map_len: len,
            }),
            pad: 0,
            len,
        })
    }

    /// Whether the blob is a mapping rather than owned words.
    #[cfg(test)]
    pub(crate) fn is_mapped(&self) -> bool {
        matches!(self.storage, Storage::Mapped(_))
    }

    /// The storage words, made owned (copied out of a mapping) first.
    fn owned_words(&mut self) -> &mut Vec<u32> {
        if let Storage::Mapped(_) = self.storage {
            self.storage = Storage::Owned(self.storage().to_vec());
        }
        match &mut self.storage {
            Storage::Owned(words) => words,
            Storage::Mapped(_) => unreachable!("converted just above"),
        }
    }

    /// The blob.
    pub(crate) fn bytes(&self) -> &[u8] {
        &word_bytes(self.storage())[self.pad..self.pad + self.len]
    }

    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        let (pad, len) = (self.pad, self.len);
        &mut word_bytes_mut(self.owned_words())[pad..pad + len]
    }

    /// The words covering blob bytes `start..start + 4 * count`, or `None` if
    /// `start` is not word-aligned in storage or the range leaves the blob.
    pub(crate) fn words(&self, start: usize, count: usize) -> Option<&[u32]> {
        self.storage().get(self.word_range(start, count)?)
    }

    /// Where [`AlignedBytes::words`] finds its words in [`AlignedBytes::storage`].
    pub(crate) fn word_range(&self, start: usize, count: usize) -> Option<Range<usize>> {
        let first = self.word_index(start, count)?;
        Some(first..first + count)
    }

    /// All storage words, including padding around the blob.
    pub(crate) fn storage(&self) -> &[u32] {
        match &self.storage {
            Storage::Owned(words) => words,
            // SAFETY: `ptr` is a live read-only mapping of `words` whole
            // words (see `map_sysfs`), word-aligned, never written, and
            // unmapped only when `self` is dropped, which the borrow
            // prevents while the slice lives.
            Storage::Mapped(m) => unsafe { std::slice::from_raw_parts(m.ptr, m.words) },
        }
    }

    pub(crate) fn words_mut(&mut self, start: usize, count: usize) -> Option<&mut [u32]> {
        let first = self.word_index(start, count)?;
        self.owned_words().get_mut(first..first + count)
    }

    fn word_index(&self, start: usize, count: usize) -> Option<usize> {
        let end = start.checked_add(count.checked_mul(4)?)?;
        if end > self.len || !(self.pad + start).is_multiple_of(4) {
            return None;
        }
        Some((self.pad + start) / 4)
    }
}

/// Reverses the byte order of every word.
pub(crate) fn swap_words(words: &mut [u32]) {
    for word in words {
        *word = word.swap_bytes();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchor_lands_on_a_word_boundary_whatever_the_offset() {
        for anchor in 0..8 {
            let bytes: Vec<u8> = (0..32).collect();
            let blob = AlignedBytes::copy_with_aligned_offset(&bytes, anchor);
            assert_eq!(blob.bytes(), &bytes[..]);
            let words = blob.words(anchor, 2).unwrap();
            assert_eq!(word_bytes(words), &bytes[anchor..anchor + 8]);
            assert!(blob.words(anchor + 1, 1).is_none());
            assert!(blob.words(anchor, 100).is_none());
        }
    }

    #[test]
    fn sysfs_mapping_is_read_in_place_and_copied_on_write() {
        let path = "/sys/kernel/btf/vmlinux";
        let Ok(mut file) = File::open(path) else {
            return; // no kernel BTF here
        };
        let len = file.metadata().unwrap().len() as usize;
        let read = AlignedBytes::read_file(&mut file, 16).unwrap();
        assert_eq!(read.bytes().len(), len);
        let Some(mut mapped) = AlignedBytes::map_sysfs(&file, len) else {
            return; // this kernel cannot map BTF
        };
        assert!(mapped.is_mapped());
        assert_eq!(mapped.bytes(), read.bytes());
        let copy = mapped.clone();
        assert!(!copy.is_mapped());
        mapped.bytes_mut()[0] ^= 0xff;
        assert!(!mapped.is_mapped());
        assert_ne!(mapped.bytes()[0], copy.bytes()[0]);
        assert_eq!(mapped.bytes()[1..], copy.bytes()[1..]);
    }

    #[test]
    fn records_refuse_short_input() {
        let words = [1u32, 2, 3, 4, 5];
        assert_eq!(records::<BtfMember>(&words, 1).unwrap()[0].offset, 3);
        assert!(records::<BtfMember>(&words, 2).is_none());
        assert!(records::<BtfMember>(&words, usize::MAX).is_none());
        assert_eq!(record::<BtfType>(&words).unwrap().size_or_type, 3);
    }
}
