//! The calling thread's cgroup (v2, the kernel's "default hierarchy"):
//! `bpf_get_current_cgroup_id` (80), and the ancestry test that
//! `bpf_current_task_under_cgroup` (37, with the cgroup array in
//! [`crate::maps::cgroup_array`]) uses.
//!
//! # Identity
//! A cgroup is named by its id, which on 64-bit kernels is the inode number
//! of its directory in cgroup2fs (the kernfs node id): what the kernel's
//! `cgroup_id()` returns, and what [`cgroup_id_of_fd`] reads from a cgroup
//! directory fd. The root cgroup's id is 1.
//!
//! # Finding the thread's cgroup
//! `/proc/thread-self/cgroup` gives the thread's v2 path (the `0::` line,
//! relative to its cgroup namespace); `/proc/self/mountinfo` gives where
//! cgroup2 is mounted (the first `cgroup2` mount whose root contains the
//! path: `/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on hybrid systems).
//! The ancestry is the inode of that directory and of each parent up to
//! the mount point: the ancestors outside the mount (above a cgroup
//! namespace) are not seen.
//!
//! # Cost and caching
//! Every call reads `/proc/thread-self/cgroup` (three syscalls), so a
//! migration is seen at once, as in the kernel. The ancestry of the path
//! (one `stat` per level) and the mount point are cached for the process
//! (one entry, taken with a try-lock: a thread that finds it busy works
//! without it) and recomputed when the path changes or the leaf's inode
//! no longer matches (one more `stat`). Everything uses fixed buffers: no
//! allocation, no blocking lock, so the helpers may run in a signal
//! handler (syscall user dispatch).

use std::cell::UnsafeCell;
use std::ffi::CStr;
use std::sync::atomic::{AtomicBool, Ordering};

use super::HelperEnv;

/// `CGROUP2_SUPER_MAGIC` (`statfs.f_type` of cgroup2fs).
pub const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
/// Ancestor levels kept (the thread's cgroup included); deeper ancestors
/// are not seen.
pub const MAX_DEPTH: usize = 32;
/// Longest path handled (mount point plus cgroup path).
const PATH_MAX: usize = 1024;
/// Longest mount point remembered.
const MOUNT_MAX: usize = 256;

/// The ids of a thread's cgroup and of its ancestors, nearest first.
#[derive(Clone, Copy, Debug)]
pub struct Ancestry {
    ids: [u64; MAX_DEPTH],
    len: usize,
}

impl Ancestry {
    /// The thread's own cgroup id.
    pub fn id(&self) -> u64 {
        self.ids[0]
    }

    /// The ids, from the thread's cgroup up to the mount's root.
    pub fn ids(&self) -> &[u64] {
        self.ids.get(..self.len).unwrap_or(&[])
    }

    /// Whether `cgroup` is the thread's cgroup or one of its ancestors:
    /// the kernel's `task_under_cgroup_hierarchy`.
    pub fn is_under(&self, cgroup: u64) -> bool {
        self.ids().contains(&cgroup)
    }
}

#[derive(Clone, Copy)]
struct Cache {
    /// Hash and length of the cgroup path the ancestry belongs to; len 0:
    /// nothing cached.
    path_hash: u64,
    path_len: usize,
    ancestry: Ancestry,
    /// The cgroup2 mount point and root (len 0: not looked up yet).
    mount: [u8; MOUNT_MAX],
    mount_len: usize,
    root: [u8; MOUNT_MAX],
    root_len: usize,
}

const EMPTY: Cache = Cache {
    path_hash: 0,
    path_len: 0,
    ancestry: Ancestry {
        ids: [0; MAX_DEPTH],
        len: 0,
    },
    mount: [0; MOUNT_MAX],
    mount_len: 0,
    root: [0; MOUNT_MAX],
    root_len: 0,
};

/// One cache for the process, taken with a try-lock (a thread that finds it
/// busy works without it): a thread-local one would grow the agent's
/// static TLS past what `dlopen` can give it.
struct SharedCache {
    busy: AtomicBool,
    cache: UnsafeCell<Cache>,
}

// SAFETY: `cache` is only touched by the thread that set `busy`.
unsafe impl Sync for SharedCache {}

static CACHE: SharedCache = SharedCache {
    busy: AtomicBool::new(false),
    cache: UnsafeCell::new(EMPTY),
};

impl SharedCache {
    fn with<R>(&self, f: impl FnOnce(&mut Cache) -> R) -> Option<R> {
        self.busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()?;
        // SAFETY: we hold `busy`.
        let r = f(unsafe { &mut *self.cache.get() });
        self.busy.store(false, Ordering::Release);
        Some(r)
    }
}

/// Reads as much of `path` as fits into `buf`; the number of bytes read.
fn read_file(path: &CStr, buf: &mut [u8]) -> Option<usize> {
    // SAFETY: `path` is NUL-terminated; the flags open a file read-only.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    let mut n = 0;
    while n < buf.len() {
        let rest = &mut buf[n..];
        // SAFETY: `rest` is valid for writes of its length.
        let r = unsafe { libc::read(fd, rest.as_mut_ptr().cast(), rest.len()) };
        if r <= 0 {
            break;
        }
        n += r as usize;
    }
    // SAFETY: `fd` was opened above and is closed once.
    unsafe { libc::close(fd) };
    Some(n)
}

/// The thread's cgroup v2 path (the `0::` line of
/// `/proc/thread-self/cgroup`), copied into `out`; its length.
fn thread_cgroup_path(out: &mut [u8; PATH_MAX]) -> Option<usize> {
    let mut buf = [0u8; 4096];
    let n = read_file(c"/proc/thread-self/cgroup", &mut buf)?;
    let text = buf.get(..n)?;
    let line = text
        .split(|&b| b == b'\n')
        .find_map(|l| l.strip_prefix(b"0::"))?;
    let dst = out.get_mut(..line.len())?;
    dst.copy_from_slice(line);
    Some(line.len())
}

/// Undoes mountinfo's octal escapes (`\040` for a space) into `out`.
fn unescape(field: &[u8], out: &mut [u8; MOUNT_MAX]) -> Option<usize> {
    let mut n = 0;
    let mut i = 0;
    while i < field.len() {
        let b = match field.get(i..i + 4) {
            Some([b'\\', a, b, c]) if [a, b, c].iter().all(|d| (b'0'..=b'7').contains(d)) => {
                i += 4;
                ((a - b'0') << 6) | ((b - b'0') << 3) | (c - b'0')
            }
            _ => {
                i += 1;
                field[i - 1]
            }
        };
        *out.get_mut(n)? = b;
        n += 1;
    }
    Some(n)
}

/// The first cgroup2 mount whose root contains `cgroup_path`: (mount
/// point, mount root) in the buffers, with their lengths.
fn find_mount(cache: &mut Cache, cgroup_path: &[u8]) -> bool {
    // mountinfo can exceed any fixed buffer: read it in chunks, line by
    // line (a line longer than the chunk is skipped).
    // SAFETY: the path is NUL-terminated; read-only open.
    let fd = unsafe {
        libc::open(
            c"/proc/self/mountinfo".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return false;
    }
    let mut buf = [0u8; 4096];
    let mut filled = 0;
    let mut found = false;
    'read: loop {
        let rest = &mut buf[filled..];
        // SAFETY: `rest` is valid for writes of its length.
        let r = unsafe { libc::read(fd, rest.as_mut_ptr().cast(), rest.len()) };
        if r <= 0 {
            break;
        }
        filled += r as usize;
        let mut start = 0;
        while let Some(end) = buf[start..filled].iter().position(|&b| b == b'\n') {
            if mount_line(cache, &buf[start..start + end], cgroup_path) {
                found = true;
                break 'read;
            }
            start += end + 1;
        }
        if start == 0 && filled == buf.len() {
            // One line fills the buffer: drop it.
            filled = 0;
            continue;
        }
        buf.copy_within(start..filled, 0);
        filled -= start;
    }
    // SAFETY: `fd` was opened above and is closed once.
    unsafe { libc::close(fd) };
    found
}

/// One mountinfo line: `id parent maj:min root mountpoint opts... - fstype
/// source superopts`. Stores it in `cache` if it is a cgroup2 mount whose
/// root contains `cgroup_path`.
fn mount_line(cache: &mut Cache, line: &[u8], cgroup_path: &[u8]) -> bool {
    let mut fields = line.split(|&b| b == b' ');
    let (Some(root), Some(point)) = (fields.nth(3), fields.next()) else {
        return false;
    };
    let fstype = fields.skip_while(|f| *f != b"-").nth(1);
    if fstype != Some(b"cgroup2".as_slice()) {
        return false;
    }
    let mut r = [0u8; MOUNT_MAX];
    let mut p = [0u8; MOUNT_MAX];
    let (Some(rl), Some(pl)) = (unescape(root, &mut r), unescape(point, &mut p)) else {
        return false;
    };
    let root = &r[..rl];
    let inside = root == b"/"
        || (cgroup_path.starts_with(root) && matches!(cgroup_path.get(rl), None | Some(b'/')));
    if !inside {
        return false;
    }
    cache.root = r;
    cache.root_len = rl;
    cache.mount = p;
    cache.mount_len = pl;
    true
}

/// The inode of the file at `path[..len]` (NUL-terminated here).
fn stat_ino(path: &mut [u8; PATH_MAX + 1], len: usize) -> Option<u64> {
    *path.get_mut(len)? = 0;
    // SAFETY: an all-zero stat is a valid out-buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated at `len`; `st` is a valid out-pointer.
    if unsafe { libc::stat(path.as_ptr().cast(), &mut st) } != 0 {
        return None;
    }
    Some(st.st_ino)
}

/// The ancestry of the cgroup at `cgroup_path` under the cached mount:
/// the inode of its directory and of every parent up to the mount point.
fn ancestry_of(cache: &Cache, cgroup_path: &[u8]) -> Option<Ancestry> {
    let root = cache.root.get(..cache.root_len)?;
    // The path below the mount's root.
    let rel = if root == b"/" {
        cgroup_path
    } else {
        cgroup_path.strip_prefix(root)?
    };
    let rel = match rel {
        [head @ .., b'/'] => head,
        r => r,
    };
    let mount = cache.mount.get(..cache.mount_len)?;
    let mut path = [0u8; PATH_MAX + 1];
    let total = mount.len().checked_add(rel.len())?;
    path.get_mut(..mount.len())?.copy_from_slice(mount);
    path.get_mut(mount.len()..total)?.copy_from_slice(rel);
    let mut ancestry = Ancestry {
        ids: [0; MAX_DEPTH],
        len: 0,
    };
    let mut len = total;
    while ancestry.len < MAX_DEPTH {
        ancestry.ids[ancestry.len] = stat_ino(&mut path, len)?;
        ancestry.len += 1;
        if len <= mount.len() {
            break;
        }
        // Up one level, never above the mount point.
        len = path[mount.len()..len]
            .iter()
            .rposition(|&b| b == b'/')
            .map_or(mount.len(), |i| mount.len() + i);
    }
    Some(ancestry)
}

/// 64-bit FNV-1a.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The calling thread's cgroup ancestry, or `None` when it cannot be found
/// (no `/proc`, no cgroup2 mount).
pub fn current_ancestry() -> Option<Ancestry> {
    let mut path = [0u8; PATH_MAX];
    let len = thread_cgroup_path(&mut path)?;
    let path = path.get(..len)?;
    let hash = fnv(path);
    let mut cache = CACHE.with(|c| *c).unwrap_or(EMPTY);
    if cache.path_len == len && cache.path_hash == hash && cache.ancestry.len > 0 {
        // Same path: still the same directory unless it was removed and
        // made again (the leaf's inode tells).
        if let Some(leaf) = leaf_ino(&cache, path) {
            if leaf == cache.ancestry.id() {
                return Some(cache.ancestry);
            }
        }
    }
    let mut ancestry = None;
    if cache.mount_len > 0 {
        ancestry = ancestry_of(&cache, path);
    }
    if ancestry.is_none() {
        // First use, or the mount moved: look it up again.
        if !find_mount(&mut cache, path) {
            return root_only(path);
        }
        ancestry = ancestry_of(&cache, path);
    }
    let ancestry = ancestry?;
    cache.path_hash = hash;
    cache.path_len = len;
    cache.ancestry = ancestry;
    CACHE.with(|c| *c = cache);
    Some(ancestry)
}

/// Without a cgroup2 mount only the root cgroup (id 1) is known.
fn root_only(path: &[u8]) -> Option<Ancestry> {
    (path == b"/").then_some(Ancestry {
        ids: {
            let mut ids = [0; MAX_DEPTH];
            ids[0] = 1;
            ids
        },
        len: 1,
    })
}

/// The inode of the cached mount's directory for `cgroup_path`.
fn leaf_ino(cache: &Cache, cgroup_path: &[u8]) -> Option<u64> {
    let root = cache.root.get(..cache.root_len)?;
    let rel = if root == b"/" {
        cgroup_path
    } else {
        cgroup_path.strip_prefix(root)?
    };
    let mount = cache.mount.get(..cache.mount_len)?;
    let mut path = [0u8; PATH_MAX + 1];
    let total = mount.len().checked_add(rel.len())?;
    path.get_mut(..mount.len())?.copy_from_slice(mount);
    path.get_mut(mount.len()..total)?.copy_from_slice(rel);
    stat_ino(&mut path, total)
}

/// The cgroup id of a cgroup v2 directory fd, or the errno the kernel's
/// `cgroup_get_from_fd` gives: `EBADF` for a closed fd and for anything
/// that is not a directory of cgroup2fs.
pub fn cgroup_id_of_fd(fd: i32) -> Result<u64, i32> {
    // SAFETY: an all-zero statfs is a valid out-buffer.
    let mut sfs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `sfs` is a valid out-pointer; a bad fd fails with EBADF.
    if unsafe { libc::fstatfs(fd, &mut sfs) } != 0 {
        return Err(libc::EBADF);
    }
    #[allow(clippy::unnecessary_cast)] // f_type's width differs by target
    if sfs.f_type as i64 != CGROUP2_SUPER_MAGIC {
        return Err(libc::EBADF);
    }
    // SAFETY: an all-zero stat is a valid out-buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid out-pointer.
    if unsafe { libc::fstat(fd, &mut st) } != 0 || st.st_mode & libc::S_IFMT != libc::S_IFDIR {
        return Err(libc::EBADF);
    }
    Ok(st.st_ino)
}

/// `u64 bpf_get_current_cgroup_id(void)`: the id of the calling thread's
/// cgroup v2; 0 when it cannot be found.
///
/// # Safety
/// None beyond the helper ABI.
pub unsafe extern "C" fn bpf_get_current_cgroup_id(
    _: u64,
    _: u64,
    _: u64,
    _: u64,
    _: u64,
    _env: *mut HelperEnv,
) -> u64 {
    current_ancestry().map_or(0, |a| a.id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_mountinfo_fields() {
        let mut out = [0u8; MOUNT_MAX];
        let n = unescape(br"/mnt/my\040cgroups", &mut out).unwrap();
        assert_eq!(&out[..n], b"/mnt/my cgroups");
        let n = unescape(br"/a\\b\9", &mut out).unwrap();
        assert_eq!(&out[..n], br"/a\\b\9");
    }

    #[test]
    fn picks_the_cgroup2_mount_containing_the_path() {
        let mut cache = EMPTY;
        let v1 = b"32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu";
        assert!(!mount_line(&mut cache, v1, b"/"));
        let v2 = b"41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw";
        assert!(mount_line(&mut cache, v2, b"/a/b"));
        assert_eq!(&cache.mount[..cache.mount_len], b"/sys/fs/cgroup/unified");
        assert_eq!(&cache.root[..cache.root_len], b"/");
        // A bind of a subtree serves only paths below it.
        let sub = b"50 31 0:38 /a /mnt/a rw - cgroup2 cgroup2 rw";
        let mut cache = EMPTY;
        assert!(!mount_line(&mut cache, sub, b"/ab"));
        assert!(mount_line(&mut cache, sub, b"/a/b"));
        assert_eq!(&cache.root[..cache.root_len], b"/a");
    }

    #[test]
    fn ancestry_test_is_membership() {
        let mut ids = [0; MAX_DEPTH];
        ids[..3].copy_from_slice(&[30, 20, 1]);
        let a = Ancestry { ids, len: 3 };
        assert_eq!(a.id(), 30);
        assert!(a.is_under(30) && a.is_under(20) && a.is_under(1));
        assert!(!a.is_under(0) && !a.is_under(31));
    }

    #[test]
    fn non_cgroup_fds_are_ebadf() {
        assert_eq!(cgroup_id_of_fd(-1), Err(libc::EBADF));
        let f = std::fs::File::open("/proc/self/status").unwrap();
        use std::os::fd::AsRawFd;
        assert_eq!(cgroup_id_of_fd(f.as_raw_fd()), Err(libc::EBADF));
    }
}
