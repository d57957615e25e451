//! `BPF_MAP_TYPE_CGROUP_ARRAY` and `bpf_current_task_under_cgroup` (37).
//!
//! # Shared state
//! The data area holds one `u64` per slot: the id of the cgroup stored
//! there (the inode of its cgroup2 directory, as the kernel's
//! `cgroup_id()`), 0 for an empty slot (cgroup ids start at 1). A store is
//! one atomic write, so every process that maps the array sees whole ids,
//! and no fd has to travel between processes.
//!
//! # Kernel semantics
//! `key_size` and `value_size` must be 4; map flags: `BPF_F_NUMA_NODE`,
//! `BPF_F_RDONLY`, `BPF_F_WRONLY` (the kernel's `fd_array_map_alloc_check`).
//! Update takes `BPF_ANY` only (`EINVAL`) and a cgroup v2 directory fd
//! (anything else: `EBADF`, as `cgroup_get_from_fd`); an index past the end
//! gives `E2BIG`. Lookup from user space fails with
//! [`MapError::NotSupported`] (the kernel has no `map_fd_sys_lookup_elem`
//! for cgroup arrays). Delete: `E2BIG` out of range, `ENOENT` when empty.
//! Programs cannot look up, update or delete (the verifier refuses it);
//! they call [`bpf_current_task_under_cgroup`].
//!
//! Unlike the kernel, BTF key and value type ids are accepted (and
//! ignored) rather than refused with `ENOTSUPP`, which libbpf would only
//! answer by creating the map again without BTF.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::perf_event_array::array_next_key;
use super::{map_type, Map, MapError, MapMem, MapOps, MapSpec};
use crate::helpers::cgroup::{cgroup_id_of_fd, current_ancestry};
use crate::helpers::HelperEnv;

/// `bpf_current_task_under_cgroup`'s helper id.
pub const BPF_FUNC_CURRENT_TASK_UNDER_CGROUP: u32 = 37;

pub(crate) fn data_size(spec: &MapSpec) -> Result<usize, MapError> {
    super::fd_array_data_size(spec, 8, 0)
}

pub(crate) fn init(_spec: &MapSpec, _mem: &MapMem) -> Result<(), MapError> {
    Ok(())
}

pub(crate) fn open(spec: &MapSpec, mem: Arc<MapMem>) -> Result<Box<dyn MapOps>, MapError> {
    Ok(Box::new(CgroupArray {
        mem,
        max_entries: spec.max_entries,
    }))
}

/// A cgroup array mapped into this process.
pub struct CgroupArray {
    mem: Arc<MapMem>,
    max_entries: u32,
}

impl std::fmt::Debug for CgroupArray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CgroupArray")
            .field("max_entries", &self.max_entries)
            .finish()
    }
}

impl CgroupArray {
    fn slot(&self, index: u32) -> Option<&AtomicU64> {
        if index >= self.max_entries {
            return None;
        }
        // SAFETY: the data area holds max_entries 8-aligned u64 slots (it
        // starts page-aligned), alive as long as `mem`.
        Some(unsafe { &*(self.mem.data().add(index as usize * 8) as *const AtomicU64) })
    }

    /// The cgroup id in slot `index`: `None` past the end, 0 when empty.
    pub fn cgroup_at(&self, index: u32) -> Option<u64> {
        self.slot(index).map(|s| s.load(Ordering::Acquire))
    }

    fn index_of(key: &[u8]) -> Result<u32, MapError> {
        key.get(..4)
            .and_then(|k| <[u8; 4]>::try_from(k).ok())
            .map(u32::from_ne_bytes)
            .ok_or(MapError::Invalid("key size"))
    }
}

impl MapOps for CgroupArray {
    fn lookup(&self, _key: &[u8], _value: &mut [u8], _flags: u64) -> Result<(), MapError> {
        // The kernel has no map_fd_sys_lookup_elem for cgroup arrays.
        Err(MapError::NotSupported)
    }

    fn update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<(), MapError> {
        if flags != super::flags::BPF_ANY {
            return Err(MapError::Invalid("fd arrays take BPF_ANY only"));
        }
        let index = Self::index_of(key)?;
        let slot = self.slot(index).ok_or(MapError::Full)?;
        let fd = Self::index_of(value)? as i32;
        let id = cgroup_id_of_fd(fd).map_err(|e| {
            if e == libc::EBADF {
                MapError::BadFd
            } else {
                MapError::Io(e)
            }
        })?;
        slot.store(id, Ordering::Release);
        Ok(())
    }

    fn delete(&self, key: &[u8]) -> Result<(), MapError> {
        let index = Self::index_of(key)?;
        let slot = self.slot(index).ok_or(MapError::Full)?;
        if slot.swap(0, Ordering::AcqRel) == 0 {
            return Err(MapError::NotFound);
        }
        Ok(())
    }

    fn next_key(&self, key: Option<&[u8]>, next: &mut [u8]) -> Result<(), MapError> {
        array_next_key(self.max_entries, key, next)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

fn neg(errno: i32) -> u64 {
    (-i64::from(errno)) as u64
}

/// `long bpf_current_task_under_cgroup(struct bpf_map *map, u32 index)`:
/// 1 if the calling thread's cgroup v2 is the cgroup in slot `index` of
/// the cgroup array `map` or one of its descendants, 0 if not; `-E2BIG`
/// for an index past the end, `-EAGAIN` for an empty slot (as the
/// kernel), `-EINVAL` for a map that is not a cgroup array (which the
/// verifier would have refused). A thread whose cgroup cannot be found
/// (no `/proc`, no cgroup2 mount) is under no cgroup.
///
/// # Safety
/// `map` is 0 or the program address of a map the program holds (checked
/// in checked runs); `env` is null or the run's environment.
pub unsafe extern "C" fn bpf_current_task_under_cgroup(
    map: u64,
    index: u64,
    _: u64,
    _: u64,
    _: u64,
    env: *mut HelperEnv,
) -> u64 {
    // SAFETY: helper contract.
    let checked = unsafe { env.as_ref() }.is_some_and(|e| e.checked);
    let held;
    let map: &Map = if checked {
        // A checked run's map pointer may be forged: only a live map of
        // this process is used.
        match Map::upgrade_prog_addr(map) {
            Some(m) => {
                held = m;
                &held
            }
            None => return neg(libc::EINVAL),
        }
    } else if map == 0 {
        return neg(libc::EINVAL);
    } else {
        // SAFETY: an unchecked run's map pointer comes from the loader.
        unsafe { Map::from_prog_addr(map) }
    };
    if map.map_type() != map_type::CGROUP_ARRAY {
        return neg(libc::EINVAL);
    }
    let Some(array) = map.downcast::<CgroupArray>() else {
        return neg(libc::EINVAL);
    };
    // The helper's index is a u32: the upper half of r2 is ignored.
    let cgroup = match array.cgroup_at(index as u32) {
        None => return neg(libc::E2BIG),
        Some(0) => return neg(libc::EAGAIN),
        Some(id) => id,
    };
    current_ancestry().is_some_and(|a| a.is_under(cgroup)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::flags::BPF_ANY;

    fn spec(max_entries: u32) -> MapSpec {
        MapSpec {
            map_type: map_type::CGROUP_ARRAY,
            key_size: 4,
            value_size: 4,
            max_entries,
            name: "cgroups".into(),
            ..MapSpec::default()
        }
    }

    #[test]
    fn creation_checks_sizes_and_flags() {
        let mut s = spec(2);
        s.value_size = 8;
        assert!(matches!(Map::create(&s, 1), Err(MapError::Invalid(_))));
        let mut s = spec(2);
        s.map_flags = crate::maps::flags::BPF_F_MMAPABLE;
        assert!(matches!(Map::create(&s, 1), Err(MapError::Invalid(_))));
        let mut s = spec(2);
        s.map_flags = crate::maps::flags::BPF_F_RDONLY_PROG;
        assert!(matches!(Map::create(&s, 1), Err(MapError::Invalid(_))));
        assert!(Map::create(&spec(2), 1).is_ok());
    }

    #[test]
    fn syscall_side_errors_are_the_kernels() {
        let map = Map::create(&spec(2), 1).unwrap();
        let k0 = 0u32.to_ne_bytes();
        let k5 = 5u32.to_ne_bytes();
        let mut v = [0u8; 4];
        assert_eq!(map.lookup(&k0, &mut v, 0), Err(MapError::NotSupported));
        // Not a cgroup directory.
        let f = std::fs::File::open("/proc/self/status").unwrap();
        use std::os::fd::AsRawFd;
        let fd = (f.as_raw_fd() as u32).to_ne_bytes();
        assert_eq!(map.update(&k0, &fd, BPF_ANY), Err(MapError::BadFd));
        assert_eq!(
            map.update(&k0, &u32::MAX.to_ne_bytes(), BPF_ANY),
            Err(MapError::BadFd)
        );
        assert!(matches!(map.update(&k0, &fd, 1), Err(MapError::Invalid(_))));
        assert_eq!(map.update(&k5, &fd, BPF_ANY), Err(MapError::Full));
        assert_eq!(map.delete(&k0), Err(MapError::NotFound));
        assert_eq!(map.delete(&k5), Err(MapError::Full));
        let mut next = [0u8; 4];
        map.next_key(None, &mut next).unwrap();
        assert_eq!(u32::from_ne_bytes(next), 0);
        map.next_key(Some(&k0), &mut next).unwrap();
        assert_eq!(u32::from_ne_bytes(next), 1);
        let k1 = 1u32.to_ne_bytes();
        assert_eq!(map.next_key(Some(&k1), &mut next), Err(MapError::NotFound));
    }

    fn call(map: &Arc<Map>, index: u64) -> i64 {
        // SAFETY: a live map's program address and a null (unchecked) env.
        unsafe {
            bpf_current_task_under_cgroup(map.prog_addr(), index, 0, 0, 0, std::ptr::null_mut())
                as i64
        }
    }

    #[test]
    fn helper_errors_are_the_kernels() {
        let map = Map::create(&spec(2), 1).unwrap();
        assert_eq!(call(&map, 0), -i64::from(libc::EAGAIN));
        assert_eq!(call(&map, 2), -i64::from(libc::E2BIG));
        // Only the low 32 bits of the index count.
        assert_eq!(call(&map, 1 << 32), -i64::from(libc::EAGAIN));
        let other = Map::create(
            &MapSpec {
                map_type: map_type::ARRAY,
                ..spec(2)
            },
            2,
        )
        .unwrap();
        assert_eq!(call(&other, 0), -i64::from(libc::EINVAL));
        // SAFETY: a null map, a null env.
        let r = unsafe { bpf_current_task_under_cgroup(0, 0, 0, 0, 0, std::ptr::null_mut()) };
        assert_eq!(r as i64, -i64::from(libc::EINVAL));
    }

    /// The cgroup2 mount point, if this process can make cgroups there.
    fn writable_cgroup2_mount() -> Option<std::path::PathBuf> {
        let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        let mount = info.lines().find_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let fields: Vec<&str> = pre.split(' ').collect();
            (post.split(' ').next() == Some("cgroup2") && fields.get(3) == Some(&"/"))
                .then(|| fields.get(4).map(std::path::PathBuf::from))
                .flatten()
        })?;
        let probe = mount.join(format!("ubpf-probe-{}", std::process::id()));
        std::fs::create_dir(&probe).ok()?;
        let _ = std::fs::remove_dir(&probe);
        Some(mount)
    }

    fn set_slot(map: &Map, index: u32, dir: &std::path::Path) {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open(dir).unwrap();
        let fd = (f.as_raw_fd() as u32).to_ne_bytes();
        map.update(&index.to_ne_bytes(), &fd, BPF_ANY).unwrap();
    }

    fn ino(dir: &std::path::Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(dir).unwrap().ino()
    }

    fn remove_dir_retrying(dir: &std::path::Path) {
        // A process that just exited may hold its cgroup for a moment.
        for _ in 0..100 {
            if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("could not remove {}", dir.display());
    }

    #[test]
    fn thread_is_under_its_cgroup_and_the_root_not_a_new_child() {
        let Some(mount) = writable_cgroup2_mount() else {
            eprintln!("skipped: no writable cgroup2 mount");
            return;
        };
        let ancestry = current_ancestry().expect("the thread's cgroup");
        let proc_line = std::fs::read_to_string("/proc/thread-self/cgroup").unwrap();
        let path = proc_line
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .unwrap()
            .trim_start_matches('/');
        let own = mount.join(path);
        assert_eq!(ancestry.id(), ino(&own));
        assert_eq!(ancestry.ids().last(), Some(&ino(&mount)));
        // SAFETY: no arguments are used; a null env.
        let id = unsafe {
            crate::helpers::cgroup::bpf_get_current_cgroup_id(0, 0, 0, 0, 0, std::ptr::null_mut())
        };
        assert_eq!(id, ino(&own));

        let child = mount.join(format!("ubpf-test-{}-a", std::process::id()));
        std::fs::create_dir(&child).unwrap();
        let map = Map::create(&spec(3), 1).unwrap();
        set_slot(&map, 0, &own);
        set_slot(&map, 1, &mount);
        set_slot(&map, 2, &child);
        let results = [call(&map, 0), call(&map, 1), call(&map, 2)];
        map.delete(&2u32.to_ne_bytes()).unwrap();
        assert_eq!(call(&map, 2), -i64::from(libc::EAGAIN));
        remove_dir_retrying(&child);
        assert_eq!(results, [1, 1, 0]);
    }

    /// Env var naming the cgroup [`in_moved_child`] moves itself into.
    const CHILD_ENV: &str = "USERBPF_TEST_CGROUP_CHILD";

    /// Runs in a re-executed test process (see the next test): moves the
    /// process into `$CHILD_ENV` and checks the helpers there. A no-op in a
    /// normal run.
    #[test]
    fn in_moved_child() {
        let Some(dir) = std::env::var_os(CHILD_ENV) else {
            return;
        };
        let dir = std::path::PathBuf::from(dir);
        std::fs::write(dir.join("cgroup.procs"), "0").unwrap();
        let parent = dir.parent().unwrap().to_path_buf();
        let sibling = parent.join("sibling");
        let map = Map::create(&spec(3), 1).unwrap();
        set_slot(&map, 0, &dir);
        set_slot(&map, 1, &parent);
        set_slot(&map, 2, &sibling);
        assert_eq!([call(&map, 0), call(&map, 1), call(&map, 2)], [1, 1, 0]);
        // SAFETY: no arguments are used; a null env.
        let id = unsafe {
            crate::helpers::cgroup::bpf_get_current_cgroup_id(0, 0, 0, 0, 0, std::ptr::null_mut())
        };
        assert_eq!(id, ino(&dir));
    }

    #[test]
    fn descendants_are_under_and_siblings_not() {
        let Some(mount) = writable_cgroup2_mount() else {
            eprintln!("skipped: no writable cgroup2 mount");
            return;
        };
        let top = mount.join(format!("ubpf-test-{}-b", std::process::id()));
        let inner = top.join("inner");
        let sibling = top.join("sibling");
        std::fs::create_dir(&top).unwrap();
        std::fs::create_dir(&inner).unwrap();
        std::fs::create_dir(&sibling).unwrap();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "maps::cgroup_array::tests::in_moved_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &inner)
            .output()
            .unwrap();
        for d in [&inner, &sibling, &top] {
            remove_dir_retrying(d);
        }
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "child failed:\n{text}");
        assert!(text.contains("1 passed"), "child ran no test:\n{text}");
    }
}
