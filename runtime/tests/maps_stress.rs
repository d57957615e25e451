//! Maps under many threads in several processes at once.
//!
//! - 8 threads x 2 processes x 1,000,000 runs of a JIT-compiled program
//!   that atomically increments a HASH value and a PERCPU_HASH value:
//!   exact totals.
//! - Insert/delete churn from 2 processes, then a full consistency check.
//! - A child SIGKILLed in the middle of churn leaves the maps consistent
//!   and usable.
//!
//! The second process is this test binary run again (`--exact
//! child_entry`) with `USERBPF_STRESS_CHILD` saying what to do; it opens
//! the parent's maps through `/proc/<ppid>/fd/<n>` or an inherited fd.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use userbpf_runtime::asm::assemble;
use userbpf_runtime::helpers::HelperRegistry;
use userbpf_runtime::maps::hash::HashTable;
use userbpf_runtime::maps::{map_type, Map, MapSpec};
use userbpf_runtime::vm::{Engine, Vm, VmOptions};

const CHILD_ENV: &str = "USERBPF_STRESS_CHILD";
const THREADS: usize = 8;
const INCREMENTS: u64 = 1_000_000;

fn next_id() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    0x7000_0000 + (std::process::id() % 0x1000) * 0x1_0000 + NEXT.fetch_add(1, Ordering::Relaxed)
}

fn create(map_type: u32, key_size: u32, value_size: u32, max_entries: u32) -> Arc<Map> {
    let spec = MapSpec {
        map_type,
        key_size,
        value_size,
        max_entries,
        name: "stress".into(),
        ..MapSpec::default()
    };
    Map::create(&spec, next_id()).unwrap()
}

fn spawn_child(role: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_entry",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, role)
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

fn open_parent_map(ppid: u32, fd: i32) -> Arc<Map> {
    Map::open_path(std::path::Path::new(&format!("/proc/{ppid}/fd/{fd}"))).unwrap()
}

/// The child side: `incr:<ppid>:<hash fd>:<percpu fd>`,
/// `churn:<fd>:<base>` or `churn-forever:<fd>:<lru fd>`.
#[test]
fn child_entry() {
    let Ok(role) = std::env::var(CHILD_ENV) else {
        return;
    };
    let parts: Vec<&str> = role.split(':').collect();
    match parts[0] {
        "incr" => {
            let ppid: u32 = parts[1].parse().unwrap();
            let hash = open_parent_map(ppid, parts[2].parse().unwrap());
            let pcpu = open_parent_map(ppid, parts[3].parse().unwrap());
            // Ready (key 1), then wait for the parent's go (key 2), so
            // that both processes increment at the same time.
            hash.update(&1u32.to_ne_bytes(), &0u64.to_ne_bytes(), 0)
                .unwrap();
            let mut v = [0u8; 8];
            while hash.lookup(&2u32.to_ne_bytes(), &mut v, 0).is_err() {
                std::thread::yield_now();
            }
            run_increments(&hash, &pcpu);
        }
        "churn" => {
            // An inherited fd.
            let fd: i32 = parts[1].parse().unwrap();
            // SAFETY: the parent left this fd open for us.
            let map = Map::open(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }).unwrap();
            churn(&map, parts[2].parse().unwrap(), CHURN_ROUNDS);
        }
        "churn-forever" => {
            let fd: i32 = parts[1].parse().unwrap();
            let lru_fd: i32 = parts[2].parse().unwrap();
            // SAFETY: the parent left these fds open for us.
            let map = Map::open(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }).unwrap();
            // SAFETY: as above.
            let lru = Map::open(unsafe { std::os::fd::BorrowedFd::borrow_raw(lru_fd) }).unwrap();
            churn_forever(&map, &lru);
        }
        other => panic!("unknown child role {other}"),
    }
}

/// A duplicate of `map`'s fd without close-on-exec, for a child.
fn inheritable_fd(map: &Map) -> i32 {
    // SAFETY: dup of an open fd; the result is closed by the caller.
    let fd = unsafe { libc::dup(map.raw_fd()) };
    assert!(fd >= 0);
    fd
}

fn close(fd: i32) {
    // SAFETY: closes a descriptor this test opened.
    unsafe { libc::close(fd) };
}

// ---------------------------------------------------------------- increments

fn increment_program(hash: &Arc<Map>, pcpu: &Arc<Map>) -> Vm {
    let src = format!(
        "stw [%r10-4], 0
         lddw %r1, {h:#x}
         mov %r2, %r10
         add %r2, -4
         call 1
         jeq %r0, 0, fail
         mov %r1, 1
         lock add [%r0+0], %r1
         lddw %r1, {p:#x}
         mov %r2, %r10
         add %r2, -4
         call 1
         jeq %r0, 0, fail
         mov %r1, 1
         lock add [%r0+0], %r1
         mov %r0, 0
         exit
         fail:
         mov %r0, 1
         exit",
        h = hash.prog_addr(),
        p = pcpu.prog_addr()
    );
    let mut reg = HelperRegistry::new();
    userbpf_runtime::maps::helpers::register_map_helpers(&mut reg);
    Vm::from_insns(
        assemble(&src).unwrap(),
        reg,
        VmOptions::with_engine(Engine::Jit),
    )
    .unwrap()
}

fn run_increments(hash: &Arc<Map>, pcpu: &Arc<Map>) {
    let vm = increment_program(hash, pcpu);
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            let vm = &vm;
            s.spawn(move || {
                let mut ctx = [0u8; 8];
                for _ in 0..INCREMENTS {
                    assert_eq!(vm.run(&mut ctx).unwrap(), 0, "lookup failed");
                }
            });
        }
    });
}

#[test]
fn exact_atomic_increments_from_two_processes() {
    let hash = create(map_type::HASH, 4, 8, 16);
    let pcpu = create(map_type::PERCPU_HASH, 4, 8, 16);
    let ncpus = userbpf_runtime::cpu::possible_cpus() as usize;
    hash.update(&0u32.to_ne_bytes(), &0u64.to_ne_bytes(), 0)
        .unwrap();
    pcpu.update(&0u32.to_ne_bytes(), &vec![0u8; 8 * ncpus], 0)
        .unwrap();

    let mut child = spawn_child(&format!(
        "incr:{}:{}:{}",
        std::process::id(),
        hash.raw_fd(),
        pcpu.raw_fd()
    ));
    let mut v = [0u8; 8];
    while hash.lookup(&1u32.to_ne_bytes(), &mut v, 0).is_err() {
        assert!(child.try_wait().unwrap().is_none(), "the child died");
        std::thread::yield_now();
    }
    let t = Instant::now();
    hash.update(&2u32.to_ne_bytes(), &0u64.to_ne_bytes(), 0)
        .unwrap();
    run_increments(&hash, &pcpu);
    assert!(child.wait().unwrap().success(), "the child failed");
    let elapsed = t.elapsed();

    let total = 2 * THREADS as u64 * INCREMENTS;
    let mut v = [0u8; 8];
    hash.lookup(&0u32.to_ne_bytes(), &mut v, 0).unwrap();
    assert_eq!(u64::from_ne_bytes(v), total, "HASH total");
    let mut all = vec![0u8; 8 * ncpus];
    pcpu.lookup(&0u32.to_ne_bytes(), &mut all, 0).unwrap();
    let per_cpu: Vec<u64> = all
        .chunks(8)
        .map(|c| u64::from_ne_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(
        per_cpu.iter().sum::<u64>(),
        total,
        "PERCPU_HASH total {per_cpu:?}"
    );
    eprintln!(
        "{total} increments of each map in {elapsed:?} ({:.1} ns per program run per process), per CPU: {per_cpu:?}",
        elapsed.as_nanos() as f64 / (total / 2) as f64
    );
}

// ---------------------------------------------------------------- churn

const CHURN_ROUNDS: u32 = 200_000;
const CHURN_THREADS: u64 = 4;
const KEYS_PER_THREAD: u64 = 200;
const SHARED_KEYS: u64 = 32;

/// Values are `[key, !key]`: a reader can tell a torn or misplaced value.
fn churn_value(key: u64) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&key.to_ne_bytes());
    v[8..].copy_from_slice(&(!key).to_ne_bytes());
    v
}

fn check_value(key: u64, v: &[u8; 16]) {
    assert_eq!(
        v,
        &churn_value(key),
        "key {key:#x} has a foreign or torn value"
    );
}

/// Private keys of a thread (base = process tag), plus shared keys that
/// every thread of every process inserts and deletes. Ends with the
/// thread's even keys present and its odd keys absent.
fn churn(map: &Map, base: u64, rounds: u32) {
    std::thread::scope(|s| {
        for t in 0..CHURN_THREADS {
            s.spawn(move || {
                let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ (base << 8) ^ t;
                let mut v = [0u8; 16];
                for _ in 0..rounds {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let key = if rng.is_multiple_of(8) {
                        1_000_000 + rng % SHARED_KEYS
                    } else {
                        (base << 32) | (t << 16) | ((rng >> 8) % KEYS_PER_THREAD)
                    };
                    let k = key.to_ne_bytes();
                    match (rng >> 40) % 4 {
                        0 | 1 => {
                            map.update(&k, &churn_value(key), 0).unwrap();
                        }
                        2 => {
                            let _ = map.delete(&k);
                        }
                        _ => {
                            if map.lookup(&k, &mut v, 0).is_ok() {
                                check_value(key, &v);
                            }
                        }
                    }
                }
                for i in 0..KEYS_PER_THREAD {
                    let key = (base << 32) | (t << 16) | i;
                    if i % 2 == 0 {
                        map.update(&key.to_ne_bytes(), &churn_value(key), 0)
                            .unwrap();
                    } else {
                        let _ = map.delete(&key.to_ne_bytes());
                    }
                }
            });
        }
    });
}

fn all_keys(map: &Map) -> Vec<u64> {
    let mut keys = Vec::new();
    let mut cur: Option<[u8; 8]> = None;
    let mut next = [0u8; 8];
    while map
        .next_key(cur.as_ref().map(|k| &k[..]), &mut next)
        .is_ok()
    {
        keys.push(u64::from_ne_bytes(next));
        cur = Some(next);
    }
    keys
}

#[test]
fn churn_from_two_processes_leaves_a_consistent_map() {
    // Room for every key at once: the churn never hits E2BIG.
    let max = (2 * CHURN_THREADS * KEYS_PER_THREAD + SHARED_KEYS) as u32;
    let map = create(map_type::HASH, 8, 16, max);
    let fd = inheritable_fd(&map);
    let mut child = spawn_child(&format!("churn:{fd}:2"));
    churn(&map, 1, CHURN_ROUNDS);
    assert!(child.wait().unwrap().success(), "the child failed");
    close(fd);

    let mut keys = all_keys(&map);
    keys.sort();
    keys.dedup();
    let mut expect: Vec<u64> = (1..=2u64)
        .flat_map(|p| {
            (0..CHURN_THREADS).flat_map(move |t| {
                (0..KEYS_PER_THREAD)
                    .step_by(2)
                    .map(move |i| (p << 32) | (t << 16) | i)
            })
        })
        .collect();
    let shared: Vec<u64> = keys
        .iter()
        .copied()
        .filter(|k| (1_000_000..1_000_000 + SHARED_KEYS).contains(k))
        .collect();
    expect.extend(&shared);
    expect.sort();
    assert_eq!(keys, expect);
    let mut v = [0u8; 16];
    for &k in &keys {
        map.lookup(&k.to_ne_bytes(), &mut v, 0).unwrap();
        check_value(k, &v);
    }
    let audit = map.downcast::<HashTable>().unwrap().audit();
    assert!(audit.errors.is_empty(), "{:?}", audit.errors);
    assert_eq!(audit.linked as usize, keys.len(), "{audit:?}");
    assert_eq!(audit.count, audit.linked, "{audit:?}");
    assert_eq!(audit.leaked, 0, "{audit:?}");
}

// ---------------------------------------------------------------- SIGKILL

const KILL_KEYS: u64 = 512;

fn churn_forever(map: &Map, lru: &Map) {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for t in 0..CHURN_THREADS {
            let stop = &stop;
            s.spawn(move || {
                let mut rng = 0x1234_5678_9abc_def1u64 ^ t;
                let mut v = [0u8; 16];
                while !stop.load(Ordering::Relaxed) {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let key = rng % KILL_KEYS;
                    let k = key.to_ne_bytes();
                    let m = if rng & (1 << 50) != 0 { map } else { lru };
                    match (rng >> 40) % 3 {
                        0 => {
                            let _ = m.update(&k, &churn_value(key), 0);
                        }
                        1 => {
                            let _ = m.delete(&k);
                        }
                        _ => {
                            if m.lookup(&k, &mut v, 0).is_ok() {
                                check_value(key, &v);
                            }
                        }
                    }
                }
            });
        }
    });
}

#[test]
fn a_child_killed_mid_churn_leaves_the_maps_usable() {
    // Fewer entries than keys: the HASH map runs full (E2BIG paths), the
    // LRU map evicts.
    let max = 384u32;
    let map = create(map_type::HASH, 8, 16, max);
    let lru = create(map_type::LRU_HASH, 8, 16, max);
    let fd = inheritable_fd(&map);
    let lru_fd = inheritable_fd(&lru);
    for round in 0..8 {
        let mut child = spawn_child(&format!("churn-forever:{fd}:{lru_fd}"));
        // Let it get going, then kill it wherever it is.
        let t = Instant::now();
        while map.downcast::<HashTable>().unwrap().is_empty()
            && t.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(40 + 23 * round));
        child.kill().unwrap();
        // Reap it: a zombie's threads still "exist" for the lock takeover.
        child.wait().unwrap();

        for m in [&map, &lru] {
            let h = m.downcast::<HashTable>().unwrap();
            // Every key can be written, read and deleted: locks the child
            // held are taken over.
            let t = Instant::now();
            let mut v = [0u8; 16];
            for key in 0..KILL_KEYS {
                let k = key.to_ne_bytes();
                if m.lookup(&k, &mut v, 0).is_ok() {
                    check_value(key, &v);
                }
                let _ = m.update(&k, &churn_value(key), 0);
                let _ = m.delete(&k);
                assert!(m.lookup(&k, &mut v, 0).is_err());
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "lock takeover is too slow"
            );
            let audit = h.audit();
            assert!(audit.errors.is_empty(), "round {round}: {:?}", audit.errors);
            assert_eq!(audit.linked, 0, "{audit:?}");
            // What a killed writer may cost: one element per thread, and
            // the count one too high per thread.
            assert!(
                audit.leaked as u64 <= CHURN_THREADS * (round + 1),
                "{audit:?}"
            );
            assert!(
                audit.count as u64 <= CHURN_THREADS * (round + 1),
                "{audit:?}"
            );
            // And the map is usable to (nearly) its full size.
            let mut stored = 0u64;
            for key in 0..u64::from(max) {
                if m.update(&key.to_ne_bytes(), &churn_value(key), 0).is_ok() {
                    stored += 1;
                }
            }
            assert!(
                stored + CHURN_THREADS * (round + 1) >= u64::from(max),
                "{stored} {audit:?}"
            );
            for key in 0..u64::from(max) {
                let _ = m.delete(&key.to_ne_bytes());
            }
            eprintln!("round {round}: {audit:?}");
        }
    }
    close(fd);
    close(lru_fd);
}
