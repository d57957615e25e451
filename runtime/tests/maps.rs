//! Map semantics (the kernel's) on every type of `maps::{array, hash,
//! map_in_map}`, through the syscall-side API and through programs on
//! both engines.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use userbpf_runtime::asm::assemble;
use userbpf_runtime::helpers::HelperRegistry;
use userbpf_runtime::maps::hash::HashTable;
use userbpf_runtime::maps::{flags, map_type, InnerSpec, Map, MapError, MapSpec};
use userbpf_runtime::vm::{Engine, Vm, VmError, VmOptions};

const ENGINES: [Engine; 2] = [Engine::Interpreter, Engine::Jit];

const ENOENT: i32 = libc::ENOENT;
const EEXIST: i32 = libc::EEXIST;
const E2BIG: i32 = libc::E2BIG;
const EINVAL: i32 = libc::EINVAL;

fn next_id() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Ids unique in this process and unlikely to meet other processes'.
    0x6000_0000 + (std::process::id() % 0x1000) * 0x1_0000 + NEXT.fetch_add(1, Ordering::Relaxed)
}

fn spec(
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
) -> MapSpec {
    MapSpec {
        map_type,
        key_size,
        value_size,
        max_entries,
        map_flags,
        name: "test".into(),
        ..MapSpec::default()
    }
}

fn create(
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
) -> Arc<Map> {
    Map::create(
        &spec(map_type, key_size, value_size, max_entries, map_flags),
        next_id(),
    )
    .unwrap()
}

fn errno<T: std::fmt::Debug>(r: Result<T, MapError>) -> i32 {
    r.expect_err("expected an error").errno()
}

fn ncpus() -> usize {
    userbpf_runtime::cpu::possible_cpus() as usize
}

fn k32(k: u32) -> [u8; 4] {
    k.to_ne_bytes()
}

fn k64(k: u64) -> [u8; 8] {
    k.to_ne_bytes()
}

fn lookup_u64(map: &Map, key: &[u8]) -> Result<u64, MapError> {
    let mut v = vec![0u8; map.syscall_value_size()];
    map.lookup(key, &mut v, 0)?;
    Ok(u64::from_ne_bytes(v[..8].try_into().unwrap()))
}

fn helpers() -> HelperRegistry {
    let mut reg = HelperRegistry::new();
    userbpf_runtime::maps::helpers::register_map_helpers(&mut reg);
    reg
}

fn vm(src: &str, engine: Engine) -> Vm {
    let insns = assemble(src).unwrap_or_else(|e| panic!("{e}\n{src}"));
    Vm::from_insns(insns, helpers(), VmOptions::with_engine(engine)).unwrap()
}

/// The context every test program gets: key at 0 (16 bytes), value at 16
/// (16 bytes), out at 32 (8 bytes), cpu at 40 (8 bytes).
struct Ctx {
    mem: [u8; 48],
}

impl Default for Ctx {
    fn default() -> Ctx {
        Ctx { mem: [0; 48] }
    }
}

impl Ctx {
    fn with_key(key: &[u8]) -> Ctx {
        let mut c = Ctx::default();
        c.mem[..key.len()].copy_from_slice(key);
        c
    }
    fn value(mut self, v: &[u8]) -> Ctx {
        self.mem[16..16 + v.len()].copy_from_slice(v);
        self
    }
    fn cpu(mut self, cpu: u64) -> Ctx {
        self.mem[40..48].copy_from_slice(&cpu.to_ne_bytes());
        self
    }
    fn out(&self) -> u64 {
        u64::from_ne_bytes(self.mem[32..40].try_into().unwrap())
    }
}

/// r0 = 1 and out = first 8 bytes of the value if found, else r0 = 0.
fn lookup_prog(map: &Arc<Map>) -> String {
    format!(
        "mov %r6, %r1
         lddw %r1, {:#x}
         mov %r2, %r6
         call 1
         jeq %r0, 0, miss
         ldxdw %r1, [%r0+0]
         stxdw [%r6+32], %r1
         mov %r0, 1
         exit
         miss:
         mov %r0, 0
         exit",
        map.prog_addr()
    )
}

/// r0 = bpf_map_lookup_percpu_elem(map, key, ctx.cpu) found; out as above.
fn lookup_percpu_prog(map: &Arc<Map>) -> String {
    format!(
        "mov %r6, %r1
         lddw %r1, {:#x}
         mov %r2, %r6
         ldxdw %r3, [%r6+40]
         call 195
         jeq %r0, 0, miss
         ldxdw %r1, [%r0+0]
         stxdw [%r6+32], %r1
         mov %r0, 1
         exit
         miss:
         mov %r0, 0
         exit",
        map.prog_addr()
    )
}

/// r0 = bpf_map_update_elem(map, key, value, flags)
fn update_prog(map: &Arc<Map>, flags_: u64) -> String {
    format!(
        "mov %r6, %r1
         lddw %r1, {:#x}
         mov %r2, %r6
         mov %r3, %r6
         add %r3, 16
         mov %r4, {flags_}
         call 2
         exit",
        map.prog_addr()
    )
}

/// r0 = bpf_map_delete_elem(map, key)
fn delete_prog(map: &Arc<Map>) -> String {
    format!(
        "mov %r6, %r1
         lddw %r1, {:#x}
         mov %r2, %r6
         call 3
         exit",
        map.prog_addr()
    )
}

/// Atomically adds ctx.value to the value of ctx.key; r0 = found.
fn xadd_prog(map: &Arc<Map>) -> String {
    format!(
        "mov %r6, %r1
         lddw %r1, {:#x}
         mov %r2, %r6
         call 1
         jeq %r0, 0, miss
         ldxdw %r1, [%r6+16]
         lock add [%r0+0], %r1
         mov %r0, 1
         exit
         miss:
         mov %r0, 0
         exit",
        map.prog_addr()
    )
}

/// Sets the flag when dropped, also while a failed assertion unwinds, so
/// that the writer threads of a scope stop and the failure is reported.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn run(vm: &Vm, ctx: &mut Ctx) -> i64 {
    vm.run(&mut ctx.mem).unwrap() as i64
}

/// Runs `f` with the thread pinned to CPU 0, so that "this CPU" is known.
fn on_cpu0<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: a zeroed cpu_set_t is valid; plain syscalls on ourselves.
            unsafe {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(0, &mut set);
                assert_eq!(
                    libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set),
                    0
                );
            }
            // Let the pinning take effect (the rseq cpu id is refreshed on
            // the next return to user space).
            std::thread::yield_now();
            assert_eq!(userbpf_runtime::cpu::current_cpu(), 0);
            f()
        })
        .join()
        .unwrap()
    })
}

// ---------------------------------------------------------------- ARRAY

#[test]
fn array_syscall_semantics() {
    let map = create(map_type::ARRAY, 4, 12, 4, 0);
    let mut v = [0xffu8; 12];
    // Values start zeroed.
    map.lookup(&k32(3), &mut v, 0).unwrap();
    assert_eq!(v, [0; 12]);
    let val: [u8; 12] = *b"abcdefghijkl";
    map.update(&k32(1), &val, flags::BPF_ANY).unwrap();
    map.lookup(&k32(1), &mut v, 0).unwrap();
    assert_eq!(v, val);
    // Out of range: E2BIG on update, ENOENT on lookup.
    assert_eq!(errno(map.update(&k32(4), &val, 0)), E2BIG);
    assert_eq!(errno(map.lookup(&k32(4), &mut v, 0)), ENOENT);
    // Elements exist: NOEXIST fails, EXIST works; delete is EINVAL.
    assert_eq!(errno(map.update(&k32(0), &val, flags::BPF_NOEXIST)), EEXIST);
    map.update(&k32(0), &val, flags::BPF_EXIST).unwrap();
    assert_eq!(errno(map.delete(&k32(0))), EINVAL);
    // Bad flags; F_LOCK without a spin lock.
    assert_eq!(errno(map.update(&k32(0), &val, 3)), EINVAL);
    assert_eq!(errno(map.update(&k32(0), &val, flags::BPF_F_LOCK)), EINVAL);
    assert_eq!(
        errno(map.lookup(&k32(0), &mut v, flags::BPF_F_LOCK)),
        EINVAL
    );
    assert_eq!(errno(map.lookup(&k32(0), &mut v, 8)), EINVAL);
    // lookup_and_delete is not an array operation.
    assert!(map.lookup_and_delete(&k32(0), &mut v, 0).is_err());
    // next_key: first is 0, the last has none, out of range restarts.
    let mut n = [0u8; 4];
    map.next_key(None, &mut n).unwrap();
    assert_eq!(u32::from_ne_bytes(n), 0);
    map.next_key(Some(&k32(2)), &mut n).unwrap();
    assert_eq!(u32::from_ne_bytes(n), 3);
    assert_eq!(errno(map.next_key(Some(&k32(3)), &mut n)), ENOENT);
    map.next_key(Some(&k32(77)), &mut n).unwrap();
    assert_eq!(u32::from_ne_bytes(n), 0);
    // Frozen: the syscall side may not write.
    map.freeze().unwrap();
    assert_eq!(errno(map.update(&k32(0), &val, 0)), libc::EPERM);
}

#[test]
fn array_creation_errors() {
    let bad = |s: MapSpec| errno(Map::create(&s, next_id()));
    assert_eq!(bad(spec(map_type::ARRAY, 8, 8, 4, 0)), EINVAL);
    assert_eq!(bad(spec(map_type::ARRAY, 4, 0, 4, 0)), EINVAL);
    assert_eq!(bad(spec(map_type::ARRAY, 4, 8, 0, 0)), EINVAL);
    assert_eq!(
        bad(spec(map_type::ARRAY, 4, 8, 4, flags::BPF_F_NO_PREALLOC)),
        EINVAL
    );
    assert_eq!(
        bad(spec(
            map_type::ARRAY,
            4,
            8,
            4,
            flags::BPF_F_RDONLY | flags::BPF_F_WRONLY
        )),
        EINVAL
    );
    assert_eq!(
        bad(spec(map_type::PERCPU_ARRAY, 4, 8, 4, flags::BPF_F_MMAPABLE)),
        EINVAL
    );
    assert_eq!(bad(spec(map_type::PERCPU_ARRAY, 4, 40_000, 4, 0)), E2BIG);
    // Far more than the machine holds: a clean error, no abort.
    let huge = bad(spec(map_type::ARRAY, 4, 1 << 20, u32::MAX, 0));
    assert!(huge == libc::ENOMEM || huge == E2BIG, "{huge}");
    let huge = bad(spec(map_type::PERCPU_ARRAY, 4, 32 * 1024, 1 << 30, 0));
    assert!(huge == libc::ENOMEM || huge == E2BIG, "{huge}");
}

#[test]
fn array_from_programs() {
    for engine in ENGINES {
        let map = create(map_type::ARRAY, 4, 8, 4, 0);
        map.update(&k32(2), &k64(42), 0).unwrap();
        let lookup = vm(&lookup_prog(&map), engine);
        let mut c = Ctx::with_key(&k32(2));
        assert_eq!(run(&lookup, &mut c), 1, "{engine}");
        assert_eq!(c.out(), 42);
        assert_eq!(run(&lookup, &mut Ctx::with_key(&k32(4))), 0, "{engine}");

        let update = vm(&update_prog(&map, 0), engine);
        assert_eq!(run(&update, &mut Ctx::with_key(&k32(3)).value(&k64(7))), 0);
        assert_eq!(lookup_u64(&map, &k32(3)).unwrap(), 7);
        assert_eq!(
            run(&update, &mut Ctx::with_key(&k32(4)).value(&k64(7))),
            -(E2BIG as i64)
        );
        let noexist = vm(&update_prog(&map, flags::BPF_NOEXIST), engine);
        assert_eq!(
            run(&noexist, &mut Ctx::with_key(&k32(0)).value(&k64(7))),
            -(EEXIST as i64)
        );
        let delete = vm(&delete_prog(&map), engine);
        assert_eq!(run(&delete, &mut Ctx::with_key(&k32(0))), -(EINVAL as i64));

        // Programs add atomically into the shared value.
        let xadd = vm(&xadd_prog(&map), engine);
        for _ in 0..10 {
            assert_eq!(run(&xadd, &mut Ctx::with_key(&k32(3)).value(&k64(5))), 1);
        }
        assert_eq!(lookup_u64(&map, &k32(3)).unwrap(), 57);
    }
}

#[test]
fn mmapable_array_is_its_values_at_offset_0() {
    // value_size 12: stride 16, as the kernel's elem_size.
    let map = create(map_type::ARRAY, 4, 12, 1000, flags::BPF_F_MMAPABLE);
    for i in 0..1000u32 {
        let mut v = [0u8; 12];
        v[..4].copy_from_slice(&(i * 3).to_ne_bytes());
        v[8..].copy_from_slice(&(!i).to_ne_bytes());
        map.update(&k32(i), &v, 0).unwrap();
    }
    let fd = map.dup_fd().unwrap();
    let len = 1000 * 16;
    // SAFETY: a fresh shared mapping of the map's fd, unmapped below.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    let p = p as *mut u8;
    for i in 0..1000usize {
        // SAFETY: inside the mapping.
        let (a, b) = unsafe {
            (
                std::ptr::read_unaligned(p.add(i * 16) as *const u32),
                std::ptr::read_unaligned(p.add(i * 16 + 8) as *const u32),
            )
        };
        assert_eq!((a, b), (i as u32 * 3, !(i as u32)), "value {i}");
    }
    // Writes through the user's mapping are the map's values.
    // SAFETY: inside the mapping.
    unsafe { std::ptr::write_unaligned(p.add(5 * 16) as *mut u32, 0xdead) };
    let mut v = [0u8; 12];
    map.lookup(&k32(5), &mut v, 0).unwrap();
    assert_eq!(u32::from_ne_bytes(v[..4].try_into().unwrap()), 0xdead);
    // SAFETY: the mapping made above.
    unsafe { libc::munmap(p.cast(), len) };
}

#[test]
fn percpu_array() {
    let n = ncpus();
    let map = create(map_type::PERCPU_ARRAY, 4, 8, 8, 0);
    assert_eq!(map.syscall_value_size(), 8 * n);
    // Each CPU's value, 8 bytes apart.
    let mut all = vec![0u8; 8 * n];
    for c in 0..n {
        all[c * 8..c * 8 + 8].copy_from_slice(&(100 + c as u64).to_ne_bytes());
    }
    map.update(&k32(1), &all, 0).unwrap();
    let mut back = vec![0xffu8; 8 * n];
    map.lookup(&k32(1), &mut back, 0).unwrap();
    assert_eq!(back, all);
    assert_eq!(errno(map.update(&k32(8), &all, 0)), E2BIG);
    assert_eq!(errno(map.lookup(&k32(8), &mut back, 0)), ENOENT);

    for engine in ENGINES {
        on_cpu0(|| {
            // Programs see this CPU's value.
            let lookup = vm(&lookup_prog(&map), engine);
            let mut c = Ctx::with_key(&k32(1));
            assert_eq!(run(&lookup, &mut c), 1);
            assert_eq!(c.out() as u32, 100);
            // ... and any CPU's through lookup_percpu_elem.
            let lp = vm(&lookup_percpu_prog(&map), engine);
            for cpu in 0..n {
                let mut c = Ctx::with_key(&k32(1)).cpu(cpu as u64);
                assert_eq!(run(&lp, &mut c), 1);
                assert_eq!(c.out() as u32, 100 + cpu as u32);
            }
            assert_eq!(run(&lp, &mut Ctx::with_key(&k32(1)).cpu(n as u64)), 0);
            assert_eq!(run(&lp, &mut Ctx::with_key(&k32(9)).cpu(0)), 0);
            // A program's update writes this CPU's value only.
            let update = vm(&update_prog(&map, 0), engine);
            assert_eq!(run(&update, &mut Ctx::with_key(&k32(1)).value(&k64(7))), 0);
        });
        map.lookup(&k32(1), &mut back, 0).unwrap();
        assert_eq!(u32::from_ne_bytes(back[..4].try_into().unwrap()), 7);
        for c in 1..n {
            assert_eq!(
                u32::from_ne_bytes(back[c * 8..c * 8 + 4].try_into().unwrap()),
                100 + c as u32
            );
        }
        map.update(&k32(1), &all, 0).unwrap();
    }
    // lookup_percpu_elem on a map that is not per-CPU finds nothing.
    let plain = create(map_type::ARRAY, 4, 8, 2, 0);
    let lp = vm(&lookup_percpu_prog(&plain), Engine::Jit);
    assert_eq!(run(&lp, &mut Ctx::with_key(&k32(0)).cpu(0)), 0);
}

// ---------------------------------------------------------------- HASH

#[test]
fn hash_syscall_semantics() {
    let map = create(map_type::HASH, 8, 8, 4, 0);
    let mut v = [0u8; 8];
    assert_eq!(errno(map.lookup(&k64(1), &mut v, 0)), ENOENT);
    assert_eq!(errno(map.delete(&k64(1))), ENOENT);
    assert_eq!(
        errno(map.update(&k64(1), &k64(10), flags::BPF_EXIST)),
        ENOENT
    );
    map.update(&k64(1), &k64(10), flags::BPF_NOEXIST).unwrap();
    assert_eq!(
        errno(map.update(&k64(1), &k64(11), flags::BPF_NOEXIST)),
        EEXIST
    );
    map.update(&k64(1), &k64(12), flags::BPF_EXIST).unwrap();
    assert_eq!(lookup_u64(&map, &k64(1)).unwrap(), 12);
    map.update(&k64(1), &k64(13), flags::BPF_ANY).unwrap();
    assert_eq!(lookup_u64(&map, &k64(1)).unwrap(), 13);
    assert_eq!(errno(map.update(&k64(1), &k64(13), 3)), EINVAL);
    assert_eq!(
        errno(map.update(&k64(1), &k64(13), flags::BPF_F_LOCK)),
        EINVAL
    );
    // Full at exactly max_entries.
    for k in 2..=4 {
        map.update(&k64(k), &k64(k * 10), 0).unwrap();
    }
    assert_eq!(errno(map.update(&k64(5), &k64(50), 0)), E2BIG);
    // Replacing keys of a full map keeps working (and recycles elements).
    for round in 0..1000 {
        map.update(&k64(round % 4 + 1), &k64(round), 0).unwrap();
    }
    map.delete(&k64(2)).unwrap();
    assert_eq!(errno(map.delete(&k64(2))), ENOENT);
    map.update(&k64(5), &k64(50), 0).unwrap();
    assert_eq!(errno(map.update(&k64(6), &k64(60), 0)), E2BIG);
    // lookup_and_delete.
    let mut out = [0u8; 8];
    map.lookup_and_delete(&k64(5), &mut out, 0).unwrap();
    assert_eq!(u64::from_ne_bytes(out), 50);
    assert_eq!(errno(map.lookup(&k64(5), &mut v, 0)), ENOENT);
    assert_eq!(errno(map.lookup_and_delete(&k64(5), &mut out, 0)), ENOENT);

    let audit = map.downcast::<HashTable>().unwrap().audit();
    assert!(audit.errors.is_empty(), "{:?}", audit.errors);
    assert_eq!(
        (audit.linked, audit.count, audit.leaked),
        (3, 3, 0),
        "{audit:?}"
    );
}

#[test]
fn hash_odd_key_sizes_many_keys() {
    for key_size in [1u32, 3, 4, 7, 8, 13, 16, 40] {
        let max = if key_size == 1 { 256 } else { 3000 };
        let map = create(map_type::HASH, key_size, 12, max, 0);
        let key = |i: u32| -> Vec<u8> {
            (0..key_size)
                .map(|b| (i.wrapping_mul(2654435761) >> (b % 4 * 8)) as u8 ^ b as u8)
                .collect()
        };
        let val = |i: u32| -> Vec<u8> { (0..12).map(|b| (i as u8).wrapping_add(b)).collect() };
        let distinct: Vec<u32> = {
            let mut seen = std::collections::HashSet::new();
            (0..max).filter(|&i| seen.insert(key(i))).collect()
        };
        for &i in &distinct {
            map.update(&key(i), &val(i), flags::BPF_NOEXIST).unwrap();
        }
        let mut v = [0u8; 12];
        for &i in &distinct {
            map.lookup(&key(i), &mut v, 0).unwrap();
            assert_eq!(v.to_vec(), val(i), "key_size {key_size}");
        }
        for &i in distinct.iter().step_by(2) {
            map.delete(&key(i)).unwrap();
        }
        for (n, &i) in distinct.iter().enumerate() {
            let r = map.lookup(&key(i), &mut v, 0);
            assert_eq!(r.is_ok(), n % 2 == 1, "key_size {key_size} key {i}");
        }
        let audit = map.downcast::<HashTable>().unwrap().audit();
        assert!(audit.errors.is_empty(), "{:?}", audit.errors);
        assert_eq!(audit.linked as usize, distinct.len() / 2);
        assert_eq!(audit.leaked, 0);
    }
}

#[test]
fn hash_creation_errors() {
    let bad = |s: MapSpec| errno(Map::create(&s, next_id()));
    assert_eq!(bad(spec(map_type::HASH, 0, 8, 4, 0)), EINVAL);
    assert_eq!(bad(spec(map_type::HASH, 4, 0, 4, 0)), EINVAL);
    assert_eq!(
        bad(spec(map_type::HASH, 4, 8, 4, flags::BPF_F_NO_COMMON_LRU)),
        EINVAL
    );
    assert_eq!(
        bad(spec(map_type::HASH, 4, 8, 4, flags::BPF_F_MMAPABLE)),
        EINVAL
    );
    assert_eq!(
        bad(spec(map_type::LRU_HASH, 4, 8, 4, flags::BPF_F_NO_PREALLOC)),
        libc::EOPNOTSUPP
    );
    assert_eq!(bad(spec(map_type::HASH, 4, 4 << 20, 4, 0)), E2BIG);
    assert_eq!(bad(spec(map_type::PERCPU_HASH, 4, 40_000, 4, 0)), E2BIG);
    assert_eq!(bad(spec(map_type::HASH, 4, 8, (1 << 31) + 1, 0)), E2BIG);
    // Far more than the machine holds: a clean error, no abort.
    let huge = bad(spec(map_type::HASH, 8, 1024, 1 << 31, 0));
    assert!(huge == libc::ENOMEM || huge == E2BIG, "{huge}");
    // Accepted flags.
    create(
        map_type::HASH,
        4,
        8,
        4,
        flags::BPF_F_NO_PREALLOC | flags::BPF_F_ZERO_SEED,
    );
    create(map_type::LRU_HASH, 4, 8, 4, flags::BPF_F_NO_COMMON_LRU);
    // A large map is cheap to create: nothing is touched up front.
    let t = std::time::Instant::now();
    create(map_type::HASH, 8, 64, 1 << 22, 0);
    assert!(t.elapsed() < std::time::Duration::from_secs(1));
}

#[test]
fn hash_from_programs() {
    for engine in ENGINES {
        let map = create(map_type::HASH, 4, 8, 2, 0);
        let lookup = vm(&lookup_prog(&map), engine);
        let update = vm(&update_prog(&map, flags::BPF_ANY), engine);
        let noexist = vm(&update_prog(&map, flags::BPF_NOEXIST), engine);
        let exist = vm(&update_prog(&map, flags::BPF_EXIST), engine);
        let delete = vm(&delete_prog(&map), engine);
        let xadd = vm(&xadd_prog(&map), engine);

        assert_eq!(run(&lookup, &mut Ctx::with_key(&k32(1))), 0);
        assert_eq!(
            run(&exist, &mut Ctx::with_key(&k32(1)).value(&k64(1))),
            -(ENOENT as i64)
        );
        assert_eq!(run(&noexist, &mut Ctx::with_key(&k32(1)).value(&k64(1))), 0);
        assert_eq!(
            run(&noexist, &mut Ctx::with_key(&k32(1)).value(&k64(1))),
            -(EEXIST as i64)
        );
        assert_eq!(run(&update, &mut Ctx::with_key(&k32(2)).value(&k64(2))), 0);
        assert_eq!(
            run(&update, &mut Ctx::with_key(&k32(3)).value(&k64(3))),
            -(E2BIG as i64)
        );
        assert_eq!(run(&exist, &mut Ctx::with_key(&k32(2)).value(&k64(22))), 0);
        let mut c = Ctx::with_key(&k32(2));
        assert_eq!(run(&lookup, &mut c), 1);
        assert_eq!(c.out(), 22);
        assert_eq!(lookup_u64(&map, &k32(2)).unwrap(), 22);
        for _ in 0..100 {
            assert_eq!(run(&xadd, &mut Ctx::with_key(&k32(2)).value(&k64(3))), 1);
        }
        assert_eq!(lookup_u64(&map, &k32(2)).unwrap(), 322);
        assert_eq!(run(&delete, &mut Ctx::with_key(&k32(2))), 0);
        assert_eq!(run(&delete, &mut Ctx::with_key(&k32(2))), -(ENOENT as i64));
        assert_eq!(errno(lookup_u64(&map, &k32(2))), ENOENT);
        // Bad flags from a program.
        let bad = vm(&update_prog(&map, 9), engine);
        assert_eq!(
            run(&bad, &mut Ctx::with_key(&k32(1)).value(&k64(1))),
            -(EINVAL as i64)
        );
    }
}

#[test]
fn hash_iteration_visits_every_key_once_and_survives_deletes() {
    let map = create(map_type::HASH, 4, 8, 200, 0);
    for k in 0..150u32 {
        map.update(&k32(k), &k64(u64::from(k)), 0).unwrap();
    }
    // Plain iteration: every key exactly once.
    let mut seen = Vec::new();
    let mut cur: Option<[u8; 4]> = None;
    loop {
        let mut next = [0u8; 4];
        match map.next_key(cur.as_ref().map(|k| &k[..]), &mut next) {
            Ok(()) => {
                seen.push(u32::from_ne_bytes(next));
                cur = Some(next);
            }
            Err(e) => {
                assert_eq!(e.errno(), ENOENT);
                break;
            }
        }
    }
    seen.sort();
    assert_eq!(seen, (0..150).collect::<Vec<_>>());

    // A missing key restarts from the first key, as in the kernel.
    let mut first = [0u8; 4];
    map.next_key(None, &mut first).unwrap();
    let mut n = [0u8; 4];
    map.next_key(Some(&k32(9999)), &mut n).unwrap();
    assert_eq!(n, first);

    // The libbpf idiom: fetch the next key, then delete the current one.
    let mut visited = std::collections::HashSet::new();
    let mut cur = [0u8; 4];
    map.next_key(None, &mut cur).unwrap();
    loop {
        visited.insert(u32::from_ne_bytes(cur));
        let mut next = [0u8; 4];
        let r = map.next_key(Some(&cur), &mut next);
        map.delete(&cur).unwrap();
        match r {
            Ok(()) => cur = next,
            Err(e) => {
                assert_eq!(e.errno(), ENOENT);
                break;
            }
        }
    }
    assert_eq!(visited.len(), 150);
    assert_eq!(errno(map.next_key(None, &mut n)), ENOENT);

    // Deleting keys ahead of the iterator: the iterator goes on and never
    // returns a deleted key.
    for k in 0..150u32 {
        map.update(&k32(k), &k64(0), 0).unwrap();
    }
    let mut cur = [0u8; 4];
    map.next_key(None, &mut cur).unwrap();
    let mut deleted = std::collections::HashSet::new();
    let mut steps = 0;
    loop {
        steps += 1;
        assert!(!deleted.contains(&u32::from_ne_bytes(cur)));
        // Delete some other key.
        let victim = (u32::from_ne_bytes(cur) + 7) % 150;
        if map.delete(&k32(victim)).is_ok() {
            deleted.insert(victim);
        }
        let mut next = [0u8; 4];
        if map.next_key(Some(&cur), &mut next).is_err() {
            break;
        }
        cur = next;
        assert!(steps < 1000);
    }
    let audit = map.downcast::<HashTable>().unwrap().audit();
    assert!(audit.errors.is_empty(), "{:?}", audit.errors);
    assert_eq!(audit.linked as usize, 150 - deleted.len());
}

#[test]
fn hash_replace_is_atomic_for_readers() {
    // 64-byte values whose 8 words are all equal: a torn copy shows. The
    // key is present throughout: no reader may miss it.
    let map = create(map_type::HASH, 4, 64, 16, 0);
    let val = |n: u64| -> Vec<u8> { (0..8).flat_map(|_| n.to_ne_bytes()).collect() };
    map.update(&k32(1), &val(0), 0).unwrap();
    // A neighbour in the same table, churned, so elements are recycled.
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for w in 0..2u64 {
            let map = &map;
            let stop = &stop;
            s.spawn(move || {
                let mut n = w;
                while !stop.load(Ordering::Relaxed) {
                    n += 2;
                    map.update(&k32(1), &val(n), 0).unwrap();
                    let _ = map.delete(&k32(2 + (n % 4) as u32));
                    map.update(&k32(2 + (n % 3) as u32), &val(n), 0).unwrap();
                }
            });
        }
        // Programs find it too, every time.
        {
            let (map, stop) = (&map, &stop);
            s.spawn(move || {
                let lookup = vm(&lookup_prog(map), Engine::Jit);
                while !stop.load(Ordering::Relaxed) {
                    let mut c = Ctx::with_key(&k32(1));
                    assert_eq!(run(&lookup, &mut c), 1, "a program missed a present key");
                }
            });
        }
        let _stop = StopOnDrop(&stop);
        let mut v = [0u8; 64];
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(400);
        let mut reads = 0;
        while std::time::Instant::now() < deadline {
            map.lookup(&k32(1), &mut v, 0)
                .expect("a present key was reported missing");
            let first = &v[..8];
            assert!(v.chunks(8).all(|w| w == first), "torn read: {v:?}");
            reads += 1;
        }
        assert!(reads > 1000);
    });
    let audit = map.downcast::<HashTable>().unwrap().audit();
    assert!(audit.errors.is_empty(), "{:?}", audit.errors);
    assert_eq!(audit.leaked, 0);
    assert_eq!(audit.linked, audit.count);
}

#[test]
fn percpu_hash() {
    let n = ncpus();
    let map = create(map_type::PERCPU_HASH, 4, 8, 4, 0);
    let all: Vec<u8> = (0..n)
        .flat_map(|c| (1000 + c as u64).to_ne_bytes())
        .collect();
    map.update(&k32(7), &all, 0).unwrap();
    let mut back = vec![0u8; 8 * n];
    map.lookup(&k32(7), &mut back, 0).unwrap();
    assert_eq!(back, all);
    assert_eq!(errno(map.update(&k32(7), &all, flags::BPF_F_LOCK)), EINVAL);
    for k in 0..3 {
        map.update(&k32(k), &all, 0).unwrap();
    }
    assert_eq!(errno(map.update(&k32(3), &all, 0)), E2BIG);
    map.delete(&k32(0)).unwrap();

    for engine in ENGINES {
        on_cpu0(|| {
            let lookup = vm(&lookup_prog(&map), engine);
            let mut c = Ctx::with_key(&k32(7));
            assert_eq!(run(&lookup, &mut c), 1);
            assert_eq!(c.out(), 1000);
            let lp = vm(&lookup_percpu_prog(&map), engine);
            for cpu in 0..n {
                let mut c = Ctx::with_key(&k32(7)).cpu(cpu as u64);
                assert_eq!(run(&lp, &mut c), 1);
                assert_eq!(c.out(), 1000 + cpu as u64);
            }
            assert_eq!(run(&lp, &mut Ctx::with_key(&k32(7)).cpu(n as u64)), 0);
            // A program's insert: this CPU's value, zero elsewhere.
            let update = vm(&update_prog(&map, flags::BPF_NOEXIST), engine);
            assert_eq!(run(&update, &mut Ctx::with_key(&k32(50)).value(&k64(5))), 0);
            // A program's update of an existing key: this CPU only, in place.
            let any = vm(&update_prog(&map, flags::BPF_ANY), engine);
            assert_eq!(run(&any, &mut Ctx::with_key(&k32(7)).value(&k64(1))), 0);
        });
        map.lookup(&k32(50), &mut back, 0).unwrap();
        let expect: Vec<u8> = (0..n)
            .flat_map(|c| (if c == 0 { 5u64 } else { 0 }).to_ne_bytes())
            .collect();
        assert_eq!(back, expect);
        map.lookup(&k32(7), &mut back, 0).unwrap();
        assert_eq!(u64::from_ne_bytes(back[..8].try_into().unwrap()), 1);
        for c in 1..n {
            assert_eq!(
                u64::from_ne_bytes(back[c * 8..c * 8 + 8].try_into().unwrap()),
                1000 + c as u64
            );
        }
        map.update(&k32(7), &all, 0).unwrap();
        map.delete(&k32(50)).unwrap();
    }
    // lookup_and_delete copies every CPU.
    let mut out = vec![0u8; 8 * n];
    map.lookup_and_delete(&k32(7), &mut out, 0).unwrap();
    assert_eq!(out, all);
    assert_eq!(errno(map.lookup(&k32(7), &mut out, 0)), ENOENT);
}

// ---------------------------------------------------------------- LRU

#[test]
fn lru_evicts_instead_of_failing() {
    for ty in [map_type::LRU_HASH, map_type::LRU_PERCPU_HASH] {
        for engine in ENGINES {
            let map = create(ty, 4, 8, 8, 0);
            let vsize = map.syscall_value_size();
            let v = |x: u64| -> Vec<u8> {
                let mut b = vec![0u8; vsize];
                b[..8].copy_from_slice(&x.to_ne_bytes());
                b
            };
            for k in 0..8 {
                map.update(&k32(k), &v(u64::from(k)), flags::BPF_NOEXIST)
                    .unwrap();
            }
            // Programs touch keys 0..4: they have their reference bit.
            let lookup = vm(&lookup_prog(&map), engine);
            for k in 0..4 {
                assert_eq!(run(&lookup, &mut Ctx::with_key(&k32(k))), 1);
            }
            // A new key evicts an unreferenced one.
            map.update(&k32(100), &v(100), 0).unwrap();
            assert_eq!(lookup_u64(&map, &k32(100)).unwrap(), 100);
            for k in 0..4 {
                assert!(
                    lookup_u64(&map, &k32(k)).is_ok(),
                    "referenced key {k} was evicted"
                );
            }
            let survivors = (4..8)
                .filter(|&k| lookup_u64(&map, &k32(k)).is_ok())
                .count();
            assert_eq!(survivors, 3);
            // Never E2BIG, never more than max_entries.
            for k in 1000..1200 {
                // Keep key 0 hot.
                assert_eq!(run(&lookup, &mut Ctx::with_key(&k32(0))), 1, "{k}");
                map.update(&k32(k), &v(u64::from(k)), 0).unwrap();
            }
            assert!(lookup_u64(&map, &k32(0)).is_ok(), "the hot key was evicted");
            assert!(
                lookup_u64(&map, &k32(1199)).is_ok(),
                "the newest key is gone"
            );
            let mut keys = 0;
            let mut cur: Option<[u8; 4]> = None;
            let mut next = [0u8; 4];
            while map
                .next_key(cur.as_ref().map(|k| &k[..]), &mut next)
                .is_ok()
            {
                keys += 1;
                cur = Some(next);
            }
            assert_eq!(keys, 8);
            // Updating an existing key of a full map keeps it.
            map.update(&k32(1199), &v(5), flags::BPF_EXIST).unwrap();
            assert_eq!(lookup_u64(&map, &k32(1199)).unwrap(), 5);
            // Programs insert into a full LRU map too.
            let update = vm(&update_prog(&map, 0), engine);
            assert_eq!(
                run(&update, &mut Ctx::with_key(&k32(5000)).value(&k64(1))),
                0
            );
            assert_eq!(run(&lookup, &mut Ctx::with_key(&k32(5000))), 1);
            let audit = map.downcast::<HashTable>().unwrap().audit();
            assert!(audit.errors.is_empty(), "{:?}", audit.errors);
            assert_eq!(
                (audit.linked, audit.count, audit.leaked),
                (8, 8, 0),
                "{audit:?}"
            );
        }
    }
}

// ---------------------------------------------------------------- BPF_F_LOCK

#[test]
fn f_lock_copies_under_the_values_spin_lock() {
    for ty in [map_type::HASH, map_type::ARRAY] {
        // struct { struct bpf_spin_lock l; u32 pad; u64 a; u64 b; }
        let s = MapSpec {
            spin_lock_off: Some(0),
            ..spec(ty, 4, 24, 4, 0)
        };
        let map = Map::create(&s, next_id()).unwrap();
        let val = |n: u64| -> Vec<u8> {
            let mut v = vec![0u8; 24];
            v[0..4].copy_from_slice(&0xffff_ffffu32.to_ne_bytes()); // ignored
            v[8..16].copy_from_slice(&n.to_ne_bytes());
            v[16..24].copy_from_slice(&n.to_ne_bytes());
            v
        };
        map.update(&k32(1), &val(1), flags::BPF_F_LOCK).unwrap();
        let mut out = vec![0u8; 24];
        map.lookup(&k32(1), &mut out, flags::BPF_F_LOCK).unwrap();
        // The lock word reads as zero and was not taken from the value.
        assert_eq!(&out[0..4], &[0, 0, 0, 0]);
        assert_eq!(&out[8..], &val(1)[8..]);
        if ty == map_type::HASH {
            assert_eq!(
                errno(map.update(&k32(1), &val(1), flags::BPF_F_LOCK | flags::BPF_NOEXIST)),
                EEXIST
            );
            assert_eq!(
                errno(map.update(&k32(2), &val(1), flags::BPF_F_LOCK | flags::BPF_EXIST)),
                ENOENT
            );
        }
        let stop = AtomicBool::new(false);
        std::thread::scope(|sc| {
            for w in 0..2u64 {
                let (map, stop) = (&map, &stop);
                sc.spawn(move || {
                    let mut n = w;
                    while !stop.load(Ordering::Relaxed) {
                        n += 2;
                        map.update(&k32(1), &val(n), flags::BPF_F_LOCK).unwrap();
                    }
                });
            }
            let _stop = StopOnDrop(&stop);
            let deadline = std::time::Instant::now() + std::time::Duration::from_millis(300);
            while std::time::Instant::now() < deadline {
                map.lookup(&k32(1), &mut out, flags::BPF_F_LOCK).unwrap();
                assert_eq!(out[8..16], out[16..24], "torn F_LOCK read");
            }
        });
    }
    // Only HASH and ARRAY values may hold a spin lock; it must fit.
    let bad = |ty, off| {
        errno(Map::create(
            &MapSpec {
                spin_lock_off: Some(off),
                ..spec(ty, 4, 16, 4, 0)
            },
            next_id(),
        ))
    };
    assert_eq!(bad(map_type::PERCPU_HASH, 0), libc::EOPNOTSUPP);
    assert_eq!(bad(map_type::LRU_HASH, 0), libc::EOPNOTSUPP);
    assert_eq!(bad(map_type::HASH, 2), EINVAL);
    assert_eq!(bad(map_type::HASH, 16), EINVAL);
}

// ---------------------------------------------------------------- sharing

#[test]
fn a_second_mapping_sees_the_same_map() {
    let map = create(map_type::HASH, 4, 8, 64, 0);
    let arr = create(map_type::ARRAY, 4, 8, 4, 0);
    for k in 0..50 {
        map.update(&k32(k), &k64(u64::from(k) * 3), 0).unwrap();
    }
    arr.update(&k32(2), &k64(9), 0).unwrap();
    let fd = map.dup_fd().unwrap();
    let afd = arr.dup_fd().unwrap();
    let id = map.id();
    drop(map);
    drop(arr);
    // No map of this process has the file any more: a new mapping.
    let again = Map::open_path(std::path::Path::new(&format!(
        "/proc/self/fd/{}",
        fd.as_raw_fd()
    )))
    .unwrap();
    assert_eq!(again.id(), id);
    assert_eq!(again.spec().map_type, map_type::HASH);
    for k in 0..50 {
        assert_eq!(lookup_u64(&again, &k32(k)).unwrap(), u64::from(k) * 3);
    }
    again.update(&k32(60), &k64(1), 0).unwrap();
    let arr2 = Map::open(afd.as_fd_ref()).unwrap();
    assert_eq!(lookup_u64(&arr2, &k32(2)).unwrap(), 9);
    // Opening what is already mapped gives the same map.
    let third = Map::open(fd.as_fd_ref()).unwrap();
    assert!(Arc::ptr_eq(&again, &third));
    // Not a map.
    let null = std::fs::File::open("/dev/null").unwrap();
    assert!(Map::open(std::os::fd::AsFd::as_fd(&null)).is_err());
}

trait AsFdRef {
    fn as_fd_ref(&self) -> std::os::fd::BorrowedFd<'_>;
}

impl AsFdRef for OwnedFd {
    fn as_fd_ref(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(self)
    }
}

// ---------------------------------------------------------------- map-in-map

fn outer(ty: u32, key_size: u32, inner: InnerSpec) -> Arc<Map> {
    let s = MapSpec {
        inner: Some(inner),
        ..spec(ty, key_size, 4, 8, 0)
    };
    Map::create(&s, next_id()).unwrap()
}

fn fd_value(map: &Map) -> [u8; 4] {
    (map.raw_fd() as u32).to_ne_bytes()
}

const INNER_ARRAY: InnerSpec = InnerSpec {
    map_type: map_type::ARRAY,
    key_size: 4,
    value_size: 8,
    max_entries: 4,
    map_flags: 0,
};

#[test]
fn array_of_maps() {
    let out = outer(map_type::ARRAY_OF_MAPS, 4, INNER_ARRAY);
    let inner = create(map_type::ARRAY, 4, 8, 4, 0);
    inner.update(&k32(1), &k64(77), 0).unwrap();
    let mut v = [0u8; 4];
    assert_eq!(errno(out.lookup(&k32(0), &mut v, 0)), ENOENT);
    out.update(&k32(0), &fd_value(&inner), 0).unwrap();
    // The syscall side reads back the inner map's id.
    out.lookup(&k32(0), &mut v, 0).unwrap();
    assert_eq!(u32::from_ne_bytes(v), inner.id());
    // Kernel rules: BPF_ANY only, E2BIG out of range, delete, ENOENT.
    assert_eq!(
        errno(out.update(&k32(0), &fd_value(&inner), flags::BPF_NOEXIST)),
        EINVAL
    );
    assert_eq!(errno(out.update(&k32(8), &fd_value(&inner), 0)), E2BIG);
    out.update(&k32(3), &fd_value(&inner), 0).unwrap();
    out.delete(&k32(3)).unwrap();
    assert_eq!(errno(out.delete(&k32(3))), ENOENT);
    assert_eq!(errno(out.delete(&k32(9))), E2BIG);

    // Incompatible inner maps.
    for bad in [
        create(map_type::ARRAY, 4, 16, 4, 0),
        create(map_type::ARRAY, 4, 8, 5, 0),
        create(map_type::HASH, 4, 8, 4, 0),
        create(map_type::ARRAY, 4, 8, 4, flags::BPF_F_RDONLY_PROG),
    ] {
        assert_eq!(
            errno(out.update(&k32(1), &fd_value(&bad), 0)),
            EINVAL,
            "{:?}",
            bad.spec()
        );
    }
    assert_eq!(errno(out.update(&k32(1), &fd_value(&out), 0)), EINVAL);
    assert_eq!(
        errno(out.update(&k32(1), &9999u32.to_ne_bytes(), 0)),
        libc::EBADF
    );
    let null = std::fs::File::open("/dev/null").unwrap();
    assert_eq!(
        errno(out.update(&k32(1), &(null.as_raw_fd() as u32).to_ne_bytes(), 0)),
        EINVAL
    );

    // BPF_F_INNER_MAP in the template: max_entries may differ.
    let flexible = outer(
        map_type::ARRAY_OF_MAPS,
        4,
        InnerSpec {
            map_flags: flags::BPF_F_INNER_MAP,
            ..INNER_ARRAY
        },
    );
    let big = create(map_type::ARRAY, 4, 8, 100, flags::BPF_F_INNER_MAP);
    flexible.update(&k32(0), &fd_value(&big), 0).unwrap();
    assert_eq!(
        errno(flexible.update(&k32(0), &fd_value(&inner), 0)),
        EINVAL
    );

    // Programs: the outer lookup gives a map pointer that the inner lookup
    // takes.
    let nested = format!(
        "mov %r6, %r1
         lddw %r1, {:#x}
         mov %r2, %r6
         call 1
         jeq %r0, 0, miss
         mov %r1, %r0
         mov %r2, %r6
         add %r2, 16
         call 1
         jeq %r0, 0, miss
         ldxdw %r1, [%r0+0]
         stxdw [%r6+32], %r1
         mov %r0, 1
         exit
         miss:
         mov %r0, 0
         exit",
        out.prog_addr()
    );
    for engine in ENGINES {
        let p = vm(&nested, engine);
        let mut c = Ctx::with_key(&k32(0)).value(&k32(1));
        assert_eq!(run(&p, &mut c), 1, "{engine}");
        assert_eq!(c.out(), 77);
        assert_eq!(run(&p, &mut Ctx::with_key(&k32(2)).value(&k32(1))), 0);
        assert_eq!(run(&p, &mut Ctx::with_key(&k32(9)).value(&k32(1))), 0);
        // Programs cannot insert maps.
        let upd = vm(&update_prog(&out, 0), engine);
        assert_eq!(
            run(&upd, &mut Ctx::with_key(&k32(1)).value(&fd_value(&inner))),
            -(EINVAL as i64)
        );
    }
    // Replacing the inner map is seen by programs.
    let inner2 = create(map_type::ARRAY, 4, 8, 4, 0);
    inner2.update(&k32(1), &k64(88), 0).unwrap();
    out.update(&k32(0), &fd_value(&inner2), 0).unwrap();
    let p = vm(&nested, Engine::Jit);
    let mut c = Ctx::with_key(&k32(0)).value(&k32(1));
    assert_eq!(run(&p, &mut c), 1);
    assert_eq!(c.out(), 88);
    // An inserted map stays alive while the outer map references it.
    let id2 = inner2.id();
    drop(inner2);
    assert!(Map::by_id(id2).is_some());
}

#[test]
fn hash_of_maps() {
    let tmpl = InnerSpec {
        map_type: map_type::HASH,
        key_size: 4,
        value_size: 8,
        max_entries: 16,
        map_flags: 0,
    };
    let out = outer(map_type::HASH_OF_MAPS, 8, tmpl);
    let a = create(map_type::HASH, 4, 8, 16, 0);
    let b = create(map_type::HASH, 4, 8, 16, 0);
    a.update(&k32(5), &k64(500), 0).unwrap();
    b.update(&k32(5), &k64(501), 0).unwrap();
    out.update(&k64(1), &fd_value(&a), flags::BPF_NOEXIST)
        .unwrap();
    assert_eq!(
        errno(out.update(&k64(1), &fd_value(&b), flags::BPF_NOEXIST)),
        EEXIST
    );
    assert_eq!(
        errno(out.update(&k64(2), &fd_value(&b), flags::BPF_EXIST)),
        ENOENT
    );
    out.update(&k64(2), &fd_value(&b), 0).unwrap();
    let mut v = [0u8; 4];
    out.lookup(&k64(2), &mut v, 0).unwrap();
    assert_eq!(u32::from_ne_bytes(v), b.id());
    let wrong = create(map_type::LRU_HASH, 4, 8, 16, 0);
    assert_eq!(errno(out.update(&k64(3), &fd_value(&wrong), 0)), EINVAL);
    let mut n = [0u8; 8];
    out.next_key(None, &mut n).unwrap();
    assert!(n == k64(1) || n == k64(2));

    let nested = format!(
        "mov %r6, %r1
         lddw %r1, {:#x}
         mov %r2, %r6
         call 1
         jeq %r0, 0, miss
         mov %r1, %r0
         mov %r2, %r6
         add %r2, 16
         call 1
         jeq %r0, 0, miss
         ldxdw %r1, [%r0+0]
         stxdw [%r6+32], %r1
         mov %r0, 1
         exit
         miss:
         mov %r0, 0
         exit",
        out.prog_addr()
    );
    for engine in ENGINES {
        let p = vm(&nested, engine);
        for (key, expect) in [(1u64, 500u64), (2, 501)] {
            let mut c = Ctx::with_key(&k64(key)).value(&k32(5));
            assert_eq!(run(&p, &mut c), 1);
            assert_eq!(c.out(), expect);
        }
        assert_eq!(run(&p, &mut Ctx::with_key(&k64(3)).value(&k32(5))), 0);
    }
    out.delete(&k64(1)).unwrap();
    assert_eq!(errno(out.lookup(&k64(1), &mut v, 0)), ENOENT);
    // Creation rules.
    let bad = |s: MapSpec| errno(Map::create(&s, next_id()));
    assert_eq!(bad(spec(map_type::HASH_OF_MAPS, 4, 4, 4, 0)), EINVAL);
    assert_eq!(
        bad(MapSpec {
            inner: Some(tmpl),
            ..spec(map_type::HASH_OF_MAPS, 4, 8, 4, 0)
        }),
        EINVAL
    );
    assert_eq!(
        bad(MapSpec {
            inner: Some(InnerSpec {
                map_type: map_type::ARRAY_OF_MAPS,
                ..tmpl
            }),
            ..spec(map_type::HASH_OF_MAPS, 4, 4, 4, 0)
        }),
        EINVAL
    );
}

// ---------------------------------------------------------------- checked runs

#[test]
fn the_interpreter_checks_what_helpers_get() {
    let map = create(map_type::HASH, 4, 8, 4, 0);
    map.update(&k32(1), &k64(5), 0).unwrap();
    // A forged map pointer: lookup finds nothing, update fails.
    let forged = format!(
        "mov %r6, %r1
         lddw %r1, {:#x}
         mov %r2, %r6
         call 1
         exit",
        map.prog_addr() + 8
    );
    let p = vm(&forged, Engine::Interpreter);
    assert_eq!(run(&p, &mut Ctx::with_key(&k32(1))), 0);
    // A key pointer outside the program's memory.
    let wild_key = format!(
        "lddw %r1, {:#x}
         lddw %r2, 0x10000
         call 1
         exit",
        map.prog_addr()
    );
    let p = vm(&wild_key, Engine::Interpreter);
    assert_eq!(run(&p, &mut Ctx::default()), 0);
    let wild_update = format!(
        "mov %r6, %r1
         lddw %r1, {:#x}
         mov %r2, %r6
         lddw %r3, 0x10000
         mov %r4, 0
         call 2
         exit",
        map.prog_addr()
    );
    let p = vm(&wild_update, Engine::Interpreter);
    assert_eq!(run(&p, &mut Ctx::with_key(&k32(1))), -(libc::EFAULT as i64));
    // A found value is granted: reading it works (lookup_prog above), and
    // writing past it is stopped.
    let past = format!(
        "mov %r6, %r1
         lddw %r1, {:#x}
         mov %r2, %r6
         call 1
         jeq %r0, 0, miss
         stxdw [%r0+8], %r6
         miss:
         exit",
        map.prog_addr()
    );
    let p = vm(&past, Engine::Interpreter);
    let r = p.run(&mut Ctx::with_key(&k32(1)).mem);
    assert!(matches!(r, Err(VmError::MemoryViolation { .. })), "{r:?}");
    // BPF_F_RDONLY_PROG values are granted read-only.
    let ro = create(map_type::ARRAY, 4, 8, 4, flags::BPF_F_RDONLY_PROG);
    let write = format!(
        "mov %r6, %r1
         lddw %r1, {:#x}
         mov %r2, %r6
         call 1
         jeq %r0, 0, miss
         stxdw [%r0+0], %r6
         miss:
         exit",
        ro.prog_addr()
    );
    let p = vm(&write, Engine::Interpreter);
    let r = p.run(&mut Ctx::with_key(&k32(1)).mem);
    assert!(matches!(r, Err(VmError::MemoryViolation { .. })), "{r:?}");
    let p = vm(&update_prog(&ro, 0), Engine::Interpreter);
    assert_eq!(run(&p, &mut Ctx::with_key(&k32(1))), -(libc::EPERM as i64));
}

#[test]
fn fd_is_a_real_fd() {
    let map = create(map_type::HASH, 4, 8, 4, 0);
    let fd = map.dup_fd().unwrap();
    // SAFETY: F_GETFD on a descriptor we own.
    assert!(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) } >= 0);
    let raw = std::os::fd::IntoRawFd::into_raw_fd(fd);
    // SAFETY: takes back the descriptor released just above.
    drop(unsafe { OwnedFd::from_raw_fd(raw) });
}
