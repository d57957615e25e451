//! The userspace backend end to end in Rust: open, relocate and load a
//! clang-built object, run its program in process, read the results back
//! through the maps' syscall side and the registry.

mod object_support;

use std::sync::Arc;

use object_support::compile_bpf;
use userbpf_libbpf_compat::backend::userspace::{self, program_by_fd};
use userbpf_libbpf_compat::object::{Object, OpenOptions, TargetBtf};
use userbpf_runtime::maps::Map;

const SOURCE: &str = r#"
typedef unsigned int __u32;
typedef unsigned long long __u64;
#define SEC(n) __attribute__((section(n), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_map_update_elem)(void *map, const void *key, const void *value, __u64 flags) = (void *)2;

struct {
    __uint(type, 1);
    __uint(max_entries, 16);
    __type(key, __u32);
    __type(value, __u64);
} counts SEC(".maps");

const volatile __u64 step = 1;
__u64 total = 0;
__u64 runs_seen;

SEC("raw_tp/test")
int count(void *ctx)
{
    __u32 key = 3;
    __u64 one = 0, *v;

    v = bpf_map_lookup_elem(&counts, &key);
    if (!v) {
        bpf_map_update_elem(&counts, &key, &one, 0);
        v = bpf_map_lookup_elem(&counts, &key);
        if (!v)
            return 1;
    }
    __sync_fetch_and_add(v, step);
    total += step;
    runs_seen++;
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
"#;

fn load() -> Option<(Object, userspace::LoadedObject)> {
    let bytes = compile_bpf("backend", SOURCE)?;
    let mut obj = Object::open(&bytes, OpenOptions::default()).unwrap();
    // `step = 5` before load, as a skeleton's `obj->rodata->step = 5`.
    let rodata = obj.map_index(".rodata").expect("rodata map");
    obj.maps_mut()[rodata]
        .initial_data_mut()
        .unwrap()
        .copy_from_slice(&5u64.to_ne_bytes());
    let targets = TargetBtf::system().ok()?;
    obj.relocate(&targets).unwrap();
    let loaded = userspace::load_object(&obj).unwrap();
    Some((obj, loaded))
}

fn map(obj: &Object, loaded: &userspace::LoadedObject, name: &str) -> Arc<Map> {
    let idx = obj.map_index(name).unwrap();
    loaded.maps[idx].clone().unwrap()
}

#[test]
fn load_run_and_read_back() {
    let Some((obj, loaded)) = load() else { return };
    let prog = loaded.programs[0].clone().expect("program loaded");
    let mut ctx = [0u64; 4];
    for _ in 0..10 {
        // SAFETY: ctx is a live buffer for the whole run.
        let r0 = unsafe {
            prog.loaded
                .run(ctx.as_mut_ptr().cast(), 32, std::ptr::null_mut())
        };
        assert_eq!(r0.unwrap(), 0);
    }
    let counts = map(&obj, &loaded, "counts");
    let mut v = [0u8; 8];
    counts.lookup(&3u32.to_ne_bytes(), &mut v, 0).unwrap();
    assert_eq!(u64::from_ne_bytes(v), 50);
    let bss = map(&obj, &loaded, ".bss");
    let mut data = vec![0u8; bss.spec().value_size as usize];
    bss.lookup(&0u32.to_ne_bytes(), &mut data, 0).unwrap();
    let words: Vec<u64> = data
        .chunks(8)
        .map(|c| u64::from_ne_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(words, vec![50, 10], "total and runs_seen in .bss");
    // .rodata is frozen: the syscall side may not write it.
    let rodata = map(&obj, &loaded, ".rodata");
    assert!(rodata
        .update(&0u32.to_ne_bytes(), &7u64.to_ne_bytes(), 0)
        .is_err());
    // The program's fd names it.
    let again = program_by_fd(std::os::fd::AsFd::as_fd(&prog.fd)).unwrap();
    assert_eq!(again.id, prog.id);
}

#[test]
fn objects_are_published_in_the_registry() {
    let Some((obj, loaded)) = load() else { return };
    let counts = map(&obj, &loaded, "counts");
    let dir = userbpf_runtime::namespace::namespace_dir();
    let me = std::process::id();
    let loaders = userbpf_runtime::registry::scan(&dir, false);
    let mine = loaders
        .iter()
        .find(|l| l.pid == me)
        .expect("our registry file");
    let records = mine.file.records();
    assert!(records
        .iter()
        .any(|r| r.kind == userbpf_runtime::registry::kind::MAP
            && r.id == counts.id()
            && r.name_str() == "counts"));
    let prog = loaded.programs[0].clone().unwrap();
    assert!(records
        .iter()
        .any(|r| r.kind == userbpf_runtime::registry::kind::PROG && r.id == prog.id));
    // Another process would open the map through /proc/<pid>/fd/<n>.
    let rec = records.iter().find(|r| r.id == counts.id()).unwrap();
    let path = userbpf_runtime::registry::proc_fd_path(me, rec.fd);
    let file = std::fs::File::open(path).unwrap();
    let other = Map::open(std::os::fd::AsFd::as_fd(&file)).unwrap();
    assert_eq!(other.id(), counts.id());
    drop(loaded);
    let loaders = userbpf_runtime::registry::scan(&dir, false);
    let mine = loaders.iter().find(|l| l.pid == me).unwrap();
    assert!(
        !mine.file.records().iter().any(|r| r.id == counts.id()),
        "records go away with the objects"
    );
}

/// Env var that turns this test binary into a second loader process.
const CHILD_ENV: &str = "USERBPF_BACKEND_TEST_CHILD";

/// In the child: load the object, say which map id it got, wait to be killed.
#[test]
fn child_loader() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let Some((obj, loaded)) = load() else { return };
    let counts = map(&obj, &loaded, "counts");
    println!("CHILD-MAP-ID {}", counts.id());
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(60));
}

#[test]
fn two_loaders_keep_to_their_own_objects() {
    use std::io::BufRead;
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let Some((obj, loaded)) = load() else { return };
    let counts = map(&obj, &loaded, "counts");
    counts
        .update(&1u32.to_ne_bytes(), &99u64.to_ne_bytes(), 0)
        .unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_loader", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let child_map_id: u32 = std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| {
            l.split("CHILD-MAP-ID ")
                .nth(1)
                .map(|s| s.trim().parse().unwrap())
        })
        .expect("child reported its map");
    assert_ne!(child_map_id, counts.id(), "ids are namespace-wide");
    let dir = userbpf_runtime::namespace::namespace_dir();
    let pids: Vec<u32> = userbpf_runtime::registry::scan(&dir, true)
        .iter()
        .map(|l| l.pid)
        .collect();
    assert!(pids.contains(&std::process::id()) && pids.contains(&child.id()));
    // The child's map is reachable by id from here, through the registry.
    let theirs = userbpf_runtime::registry::open_foreign_map(child_map_id).expect("child's map");
    assert_eq!(theirs.spec().name, "counts");
    child.kill().unwrap();
    child.wait().unwrap();
    // Its registry file goes; ours and our data stay.
    let pids: Vec<u32> = userbpf_runtime::registry::scan(&dir, true)
        .iter()
        .map(|l| l.pid)
        .collect();
    assert!(!pids.contains(&child.id()));
    assert!(pids.contains(&std::process::id()));
    let mut v = [0u8; 8];
    counts.lookup(&1u32.to_ne_bytes(), &mut v, 0).unwrap();
    assert_eq!(u64::from_ne_bytes(v), 99);
    // A mapping taken before the loader died stays usable.
    let mut v = [0u8; 8];
    assert!(theirs.lookup(&1u32.to_ne_bytes(), &mut v, 0).is_err());
    theirs
        .update(&2u32.to_ne_bytes(), &7u64.to_ne_bytes(), 0)
        .unwrap();
}
