//! Shared memory: memfd-backed mappings that several processes map at
//! their own addresses, and the cross-process lock that guards them.
//!
//! Every object that crosses processes (maps, the registry) is one memfd.
//! Its fd is the handle the loader gives out: `close()` works, and another
//! process of the same user reaches it through `/proc/<pid>/fd/<n>`. The
//! file is sealed against shrinking, so no process can make another's
//! mapping fault by truncating it.

pub mod futex;
pub mod lock;

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

pub use lock::ShmLock;

/// Page size assumed by the layouts (x86-64).
pub const PAGE_SIZE: usize = 4096;

/// Rounds `n` up to a multiple of the page size, `None` on overflow.
pub fn page_align(n: usize) -> Option<usize> {
    n.checked_add(PAGE_SIZE - 1).map(|v| v & !(PAGE_SIZE - 1))
}

/// Identity of a shared file: the same object whatever fd names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    /// The identity of whatever `fd` names (one `fstat`).
    pub fn of(fd: BorrowedFd<'_>) -> io::Result<(FileId, u64)> {
        // SAFETY: an all-zero `stat` is a valid value to be overwritten.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `st` is a valid out-pointer and `fd` is open.
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((
            FileId {
                dev: st.st_dev,
                ino: st.st_ino,
            },
            st.st_size as u64,
        ))
    }
}

/// One shared mapping of a whole memfd, read-write.
#[derive(Debug)]
pub struct ShmFile {
    fd: OwnedFd,
    base: *mut u8,
    len: usize,
    id: FileId,
}

// SAFETY: the mapping is process-wide memory; every structure placed in it
// synchronizes through atomics or `ShmLock`.
unsafe impl Send for ShmFile {}
// SAFETY: as above.
unsafe impl Sync for ShmFile {}

impl ShmFile {
    /// Creates a zero-filled memfd of `len` bytes (rounded up to pages),
    /// sealed against shrinking and growing, and maps it.
    pub fn create(name: &str, len: usize) -> io::Result<ShmFile> {
        let len = page_align(len.max(PAGE_SIZE))
            .ok_or_else(|| io::Error::from_raw_os_error(libc::E2BIG))?;
        let cname = CString::new(format!("userbpf:{}", name.replace('\0', "")))
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: `cname` is a valid C string.
        let raw = unsafe {
            libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: memfd_create returned a fresh fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: plain syscalls on an fd we own.
        unsafe {
            if libc::ftruncate(raw, len as libc::off_t) < 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::fcntl(
                raw,
                libc::F_ADD_SEALS,
                libc::F_SEAL_SHRINK | libc::F_SEAL_GROW,
            ) < 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        Self::map(fd, len)
    }

    /// Maps an existing shared file named by `fd` (for example one received
    /// from another process), whole.
    pub fn open(fd: OwnedFd) -> io::Result<ShmFile> {
        let (_, size) = FileId::of(fd.as_fd())?;
        let len = usize::try_from(size).map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?;
        if len == 0 || len % PAGE_SIZE != 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        Self::map(fd, len)
    }

    /// Opens and maps a shared file by path, such as `/proc/<pid>/fd/<n>`.
    pub fn open_path(path: &Path) -> io::Result<ShmFile> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)?;
        Self::open(OwnedFd::from(file))
    }

    fn map(fd: OwnedFd, len: usize) -> io::Result<ShmFile> {
        let (id, _) = FileId::of(fd.as_fd())?;
        // SAFETY: a fresh shared mapping of `len` bytes of a file at least
        // that long; the kernel picks the address.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(ShmFile {
            fd,
            base: base.cast(),
            len,
            id,
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// A new fd for the same file (`dup` with close-on-exec).
    pub fn dup_fd(&self) -> io::Result<OwnedFd> {
        self.fd.try_clone()
    }

    pub fn base(&self) -> *mut u8 {
        self.base
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn id(&self) -> FileId {
        self.id
    }
}

impl Drop for ShmFile {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `map` created; nothing borrows
        // from it past the owner's life.
        unsafe {
            libc::munmap(self.base.cast(), self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_reopen_share() {
        let a = ShmFile::create("test", 5000).unwrap();
        assert_eq!(a.len(), 8192);
        // SAFETY: in bounds of the mapping.
        unsafe { *a.base().add(100) = 42 };
        let b = ShmFile::open(a.dup_fd().unwrap()).unwrap();
        assert_eq!(b.id(), a.id());
        // SAFETY: in bounds of the mapping.
        assert_eq!(unsafe { *b.base().add(100) }, 42);
        let c = ShmFile::open_path(Path::new(&format!("/proc/self/fd/{}", a.fd().as_raw_fd())))
            .unwrap();
        // SAFETY: in bounds of the mapping.
        assert_eq!(unsafe { *c.base().add(100) }, 42);
        // Sealed: nobody can shrink it under the others.
        // SAFETY: plain syscall.
        assert!(unsafe { libc::ftruncate(a.fd().as_raw_fd(), 0) } < 0);
    }
}
