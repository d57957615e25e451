//! Namespace-wide object ids, as the kernel's map/program/link ids: unique
//! among every process of one namespace, never reused while the namespace
//! directory lives.
//!
//! The counter is a small file `ids` in the namespace directory, mapped
//! shared and bumped atomically. When the namespace directory is not
//! usable, ids come from a process-local counter offset by the pid, which
//! keeps them unique in practice and says so in the log of the caller.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// What kind of object an id names; each kind counts separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum IdKind {
    Map = 0,
    Prog = 1,
    Link = 2,
    Btf = 3,
}

/// The mapped counter file: four `AtomicU32`s (one per kind), relaxed
/// fetch_add (uniqueness is all that matters).
struct Counters {
    words: *const AtomicU32,
}

// SAFETY: the pointer is to a shared mapping that lives for the process.
unsafe impl Send for Counters {}
// SAFETY: only atomics are accessed through it.
unsafe impl Sync for Counters {}

fn counters() -> Option<&'static Counters> {
    static COUNTERS: OnceLock<Option<Counters>> = OnceLock::new();
    COUNTERS
        .get_or_init(|| {
            let dir = crate::namespace::ensure_namespace_dir().ok()?;
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode_0600()
                .open(dir.join("ids"))
                .ok()?;
            if file.metadata().ok()?.len() < 4096 {
                file.set_len(4096).ok()?;
            }
            // SAFETY: a shared mapping of a 4096-byte file we keep open
            // until the mapping exists; it is never unmapped.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    4096,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    file.as_raw_fd(),
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                return None;
            }
            Some(Counters { words: p.cast() })
        })
        .as_ref()
}

trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Mode0600 for std::fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
}

/// A fresh id of `kind`, never 0.
pub fn next_id(kind: IdKind) -> u32 {
    if let Some(c) = counters() {
        // SAFETY: `kind as usize` < 4 words inside the 4096-byte mapping.
        let word = unsafe { &*c.words.add(kind as usize) };
        let id = word.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        if id != 0 {
            return id;
        }
        return word.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
    }
    static LOCAL: [AtomicU32; 4] = [const { AtomicU32::new(0) }; 4];
    let base = (std::process::id() & 0xffff) << 16;
    base | (LOCAL[kind as usize]
        .fetch_add(1, Ordering::Relaxed)
        .wrapping_add(1)
        & 0xffff)
}
