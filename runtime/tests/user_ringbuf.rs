//! `BPF_MAP_TYPE_USER_RINGBUF`: creation rules, the producer
//! ([`UserRingProducer`]), and `bpf_user_ringbuf_drain` with dynptr
//! callbacks (`bpf_dynptr_read`, `bpf_dynptr_data`) on both engines,
//! wake-ups of a blocked producer, and a producer in a child process (this
//! test binary re-run with `USER_RINGBUF_CHILD=<test name>`; the child
//! tests return at once in a normal run).

use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use userbpf_runtime::helpers::{register_tracing_helpers, HelperRegistry};
use userbpf_runtime::maps::ringbuf::{BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP};
use userbpf_runtime::maps::special_helpers::register_special_map_helpers;
use userbpf_runtime::maps::user_ringbuf::{ReserveError, UserRingBuf, UserRingProducer};
use userbpf_runtime::maps::{map_type, Map, MapError, MapSpec};
use userbpf_runtime::vm::{Engine, Vm, VmOptions};

mod support;

use support::asmx::assemble;

const ENGINES: [Engine; 2] = [Engine::Interpreter, Engine::Jit];
const CHILD_ENV: &str = "USER_RINGBUF_CHILD";
const EINVAL: u64 = -22i64 as u64;
const EBUSY: u64 = -16i64 as u64;
const E2BIG: u64 = -7i64 as u64;

static NEXT_ID: AtomicU32 = AtomicU32::new(9_000);

fn spec(key: u32, value: u32, max: u32, map_flags: u32) -> MapSpec {
    MapSpec {
        map_type: map_type::USER_RINGBUF,
        key_size: key,
        value_size: value,
        max_entries: max,
        map_flags,
        name: "user_ringbuf".into(),
        ..MapSpec::default()
    }
}

fn create(s: MapSpec) -> Result<Arc<Map>, MapError> {
    Map::create(&s, NEXT_ID.fetch_add(1, Ordering::Relaxed))
}

fn ring(size: u32) -> Arc<Map> {
    create(spec(0, 0, size, 0)).unwrap()
}

fn vm(src: &str, engine: Engine) -> Vm {
    let insns = assemble(src);
    let mut reg = HelperRegistry::new();
    register_tracing_helpers(&mut reg);
    register_special_map_helpers(&mut reg);
    Vm::from_insns(insns, reg, VmOptions::with_engine(engine)).unwrap()
}

fn ctx_of(words: &[u64], extra: usize) -> Vec<u8> {
    let mut v: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    v.resize(v.len() + extra, 0);
    v
}

fn word(ctx: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(ctx[i * 8..i * 8 + 8].try_into().unwrap())
}

/// Reserves, fills (first u64 = `seq`, the rest `seq as u8`) and commits.
fn produce(p: &UserRingProducer, seq: u64, len: u32, discard: bool) {
    let s = p.reserve(len).unwrap();
    // SAFETY: a fresh reservation of `len` (>= 8) bytes.
    unsafe {
        std::ptr::write_bytes(s.as_ptr(), seq as u8, len as usize);
        std::ptr::write_unaligned(s.as_ptr().cast::<u64>(), seq);
        if discard {
            p.discard(s.as_ptr());
        } else {
            p.submit(s.as_ptr());
        }
    }
}

/// Drains the map; ctx: [0] flags, [1] samples seen, [2] sum of the first
/// u64 read through bpf_dynptr_data, [3] stop when the first u64 equals
/// this, [4] last byte of each sample (read with bpf_dynptr_read at
/// offset len - 1 found by probing), [5..] the first u64 of each sample
/// (bpf_dynptr_read). r0 = drain's result.
fn drain_src(map: &Map) -> String {
    let addr = map_addr(map);
    format!(
        "
    mov %r6, %r1
    lddw %r1, {addr:#x}
    ldfunc %r2, cb
    mov %r3, %r6
    ldxdw %r4, [%r6+0]
    call 209
    exit
cb:
    mov %r7, %r1
    mov %r6, %r2
    ldxdw %r8, [%r6+8]
    mov %r1, %r8
    lsh %r1, 3
    add %r1, %r6
    add %r1, 40
    mov %r2, 8
    mov %r3, %r7
    mov %r4, 0
    mov %r5, 0
    call 201
    jne %r0, 0, bad
    add %r8, 1
    stxdw [%r6+8], %r8
    mov %r1, %r7
    mov %r2, 0
    mov %r3, 8
    call 203
    jeq %r0, 0, bad
    ldxdw %r9, [%r0]
    ldxdw %r1, [%r6+16]
    add %r1, %r9
    stxdw [%r6+16], %r1
    mov %r1, %r7
    mov %r2, 0
    lddw %r3, 0x1000000
    call 203
    jne %r0, 0, bad
    mov %r1, %r10
    add %r1, -8
    mov %r2, 8
    mov %r3, %r7
    lddw %r4, 0x1000000
    mov %r5, 0
    call 201
    jne %r0, -7, bad
    ldxdw %r1, [%r6+24]
    mov %r0, 0
    jne %r1, %r9, +1
    mov %r0, 1
    exit
bad:
    mov %r0, 1
    stxdw [%r6+32], %r0
    exit"
    )
}

fn map_addr(map: &Map) -> u64 {
    map as *const Map as u64
}

#[test]
fn creation_follows_the_kernel() {
    assert!(create(spec(0, 0, 4096, 0)).is_ok());
    assert!(create(spec(0, 0, 1 << 16, 0)).is_ok());
    for bad in [
        spec(4, 0, 4096, 0),
        spec(0, 4, 4096, 0),
        spec(0, 0, 3 * 4096, 0),
        spec(0, 0, 2048, 0),
        spec(0, 0, 4096, 1),
        spec(0, 0, 0, 0),
    ] {
        assert_eq!(create(bad).unwrap_err().errno(), libc::EINVAL);
    }
    let m = ring(4096);
    let mut v = [0u8; 0];
    assert_eq!(
        m.lookup(&[], &mut v, 0).unwrap_err().errno(),
        libc::EOPNOTSUPP
    );
    assert_eq!(m.update(&[], &[], 0).unwrap_err().errno(), libc::EOPNOTSUPP);
    // A producer needs a user ring buffer.
    let rb = Map::create(
        &MapSpec {
            map_type: map_type::RINGBUF,
            max_entries: 4096,
            ..MapSpec::default()
        },
        NEXT_ID.fetch_add(1, Ordering::Relaxed),
    )
    .unwrap();
    assert!(UserRingProducer::new(rb).is_err());
}

#[test]
fn producer_follows_libbpf() {
    let m = ring(4096);
    let p = UserRingProducer::new(m.clone()).unwrap();
    assert_eq!(p.reserve(1 << 31).unwrap_err(), ReserveError::TooBig);
    assert_eq!(p.reserve(1 << 30).unwrap_err(), ReserveError::TooBig);
    assert_eq!(p.reserve(4089).unwrap_err(), ReserveError::TooBig);
    // The whole ring for one record: header + 4088 bytes.
    let s = p.reserve(4088).unwrap();
    assert_eq!(s.as_ptr() as usize % 8, 0);
    assert_eq!(p.reserve(0).unwrap_err(), ReserveError::NoSpace);
    // Timeout: ENOSPC after the wait, as libbpf.
    let t = Instant::now();
    assert_eq!(
        p.reserve_blocking(8, Some(Duration::from_millis(100)))
            .unwrap_err(),
        ReserveError::NoSpace
    );
    assert!(t.elapsed() >= Duration::from_millis(100));
    assert_eq!(
        p.reserve_blocking(8, Some(Duration::ZERO)).unwrap_err(),
        ReserveError::NoSpace
    );
    assert_eq!(
        p.reserve_blocking(5000, None).unwrap_err(),
        ReserveError::TooBig
    );
    // SAFETY: the live reservation.
    unsafe { p.discard(s.as_ptr()) };
}

#[test]
fn drain_on_both_engines() {
    for engine in ENGINES {
        let m = ring(4096);
        let p = UserRingProducer::new(m.clone()).unwrap();
        let vm = vm(&drain_src(&m), engine);
        let run = |flags: u64, stop: u64| {
            let mut ctx = ctx_of(&[flags, 0, 0, stop, 0], 8 * 64);
            let r0 = vm.run(&mut ctx).unwrap();
            assert_eq!(word(&ctx, 4), 0, "{engine}: a check failed in the callback");
            let n = word(&ctx, 1) as usize;
            let firsts: Vec<u64> = (0..n).map(|i| word(&ctx, 5 + i)).collect();
            (r0, firsts, word(&ctx, 2))
        };
        assert_eq!(run(0, u64::MAX), (0, vec![], 0), "{engine}: empty");
        // Samples of varied sizes, one discarded, wrapping the ring.
        for round in 0..20u64 {
            let base = round * 100;
            for i in 0..10 {
                produce(&p, base + i, 8 + (i as u32 * 13) % 90, i == 4);
            }
            let expect: Vec<u64> = (0..10).filter(|&i| i != 4).map(|i| base + i).collect();
            let sum = expect.iter().sum();
            assert_eq!(run(0, u64::MAX), (9, expect, sum), "{engine} round {round}");
            let r = m.downcast::<UserRingBuf>().unwrap();
            assert_eq!(r.consumer_pos(), r.producer_pos(), "{engine}");
        }
        // A callback returning 1 stops after its sample (counted).
        for i in 0..5 {
            produce(&p, 7000 + i, 16, false);
        }
        assert_eq!(run(0, 7001), (2, vec![7000, 7001], 14001), "{engine}");
        assert_eq!(run(BPF_RB_NO_WAKEUP, u64::MAX).0, 3, "{engine}");
        // A BUSY record ends the drain; the ones after it wait.
        let busy = p.reserve(8).unwrap();
        produce(&p, 1, 8, false);
        assert_eq!(run(0, u64::MAX).0, 0, "{engine}");
        // SAFETY: the live reservation.
        unsafe {
            std::ptr::write_unaligned(busy.as_ptr().cast::<u64>(), 2);
            p.submit(busy.as_ptr());
        }
        assert_eq!(run(0, u64::MAX), (2, vec![2, 1], 3), "{engine}");
        // Flags.
        assert_eq!(run(4, u64::MAX).0, EINVAL, "{engine}");
    }
}

#[test]
fn drain_errors() {
    for engine in ENGINES {
        // Nested drain of the same ring: -EBUSY, stored in ctx[0].
        let m = ring(4096);
        let p = UserRingProducer::new(m.clone()).unwrap();
        let addr = map_addr(&m);
        let src = format!(
            "
            mov %r6, %r1
            lddw %r1, {addr:#x}
            ldfunc %r2, cb
            mov %r3, %r6
            mov %r4, 0
            call 209
            exit
        cb:
            mov %r6, %r2
            lddw %r1, {addr:#x}
            ldfunc %r2, cb
            mov %r3, %r6
            mov %r4, 0
            call 209
            stxdw [%r6+0], %r0
            mov %r0, 0
            exit"
        );
        let nested = vm(&src, engine);
        produce(&p, 1, 8, false);
        produce(&p, 2, 8, false);
        let mut ctx = ctx_of(&[0], 0);
        assert_eq!(nested.run(&mut ctx).unwrap(), 2, "{engine}");
        assert_eq!(word(&ctx, 0), EBUSY, "{engine}");
        // The busy word was released: a new drain works.
        produce(&p, 3, 8, false);
        assert_eq!(nested.run(&mut ctx).unwrap(), 1, "{engine}");

        // A producer position that is not a multiple of 8: -EINVAL.
        let drain = vm(&drain_src(&m), engine);
        // SAFETY: the producer page follows the consumer page at offset 0.
        let prod = unsafe { &*(m.mem().data().add(4096) as *const AtomicU64) };
        let saved = prod.load(Ordering::SeqCst);
        prod.store(saved + 4, Ordering::SeqCst);
        let mut ctx = ctx_of(&[0, 0, 0, u64::MAX, 0], 64);
        assert_eq!(drain.run(&mut ctx).unwrap(), EINVAL, "{engine}");
        prod.store(saved, Ordering::SeqCst);
        // A sample too large for a dynptr: -E2BIG.
        let big = ring(1 << 25);
        let bp = UserRingProducer::new(big.clone()).unwrap();
        let s = bp.reserve(1 << 24).unwrap();
        // SAFETY: the live reservation.
        unsafe { bp.submit(s.as_ptr()) };
        let drain = vm(&drain_src(&big), engine);
        let mut ctx = ctx_of(&[0, 0, 0, u64::MAX, 0], 64);
        assert_eq!(drain.run(&mut ctx).unwrap(), E2BIG, "{engine}");
        // A map of another type: -EINVAL.
        let other = Map::create(
            &MapSpec {
                map_type: map_type::RINGBUF,
                max_entries: 4096,
                ..MapSpec::default()
            },
            NEXT_ID.fetch_add(1, Ordering::Relaxed),
        )
        .unwrap();
        let drain = vm(&drain_src(&other), engine);
        let mut ctx = ctx_of(&[0, 0, 0, u64::MAX, 0], 64);
        assert_eq!(drain.run(&mut ctx).unwrap(), EINVAL, "{engine}");
    }
}

#[test]
fn forged_dynptrs_are_refused_in_checked_runs() {
    // A dynptr made on the stack, pointing at the stack: the interpreter
    // refuses it (the verifier would); bpf_dynptr_read gives -EINVAL and
    // bpf_dynptr_data NULL.
    let src = "
        stdw [%r10-8], 0
        mov %r1, %r10
        add %r1, -8
        stxdw [%r10-24], %r1
        lddw %r1, 0x10000008
        stxdw [%r10-16], %r1
        mov %r1, %r10
        add %r1, -32
        mov %r2, 8
        mov %r3, %r10
        add %r3, -24
        mov %r4, 0
        mov %r5, 0
        call 201
        mov %r6, %r0
        mov %r1, %r10
        add %r1, -24
        mov %r2, 0
        mov %r3, 8
        call 203
        jeq %r0, 0, +1
        mov %r6, 1
        mov %r0, %r6
        exit";
    let vm = vm(src, Engine::Interpreter);
    assert_eq!(vm.run(&mut [0u8; 8]).unwrap(), EINVAL);
}

#[test]
fn drain_wakes_a_blocked_producer_per_the_flags() {
    let m = ring(4096);
    let p = UserRingProducer::new(m.clone()).unwrap();
    let engine = Engine::Jit;
    let drain = vm(&drain_src(&m), engine);
    let run = |flags: u64| {
        let mut ctx = ctx_of(&[flags, 0, 0, u64::MAX, 0], 8 * 64);
        drain.run(&mut ctx).unwrap()
    };
    // Fill the ring: 4 records of 1024 bytes.
    for i in 0..4 {
        produce(&p, i, 1016, false);
    }
    let blocked = std::thread::spawn({
        let m = m.clone();
        move || {
            let p = UserRingProducer::new(m).unwrap();
            let t = Instant::now();
            let s = p
                .reserve_blocking(1016, Some(Duration::from_secs(20)))
                .unwrap();
            // SAFETY: the live reservation.
            unsafe { p.discard(s.as_ptr()) };
            t.elapsed()
        }
    });
    std::thread::sleep(Duration::from_millis(100));
    // Room, but no wake-up: the producer sleeps on.
    assert_eq!(run(BPF_RB_NO_WAKEUP), 4);
    std::thread::sleep(Duration::from_millis(300));
    assert!(!blocked.is_finished());
    // Nothing drained, but FORCE_WAKEUP wakes it.
    assert_eq!(run(BPF_RB_FORCE_WAKEUP), 0);
    let waited = blocked.join().unwrap();
    assert!(waited >= Duration::from_millis(350), "{waited:?}");
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    // Its discarded record is skipped, not counted.
    assert_eq!(run(0), 0);

    // Default flags: a drain of at least one sample wakes.
    for i in 0..4 {
        produce(&p, i, 1016, false);
    }
    let blocked = std::thread::spawn({
        let m = m.clone();
        move || {
            let p = UserRingProducer::new(m).unwrap();
            p.reserve_blocking(1016, None).map(|s| {
                // SAFETY: the live reservation.
                unsafe { p.submit(s.as_ptr()) }
            })
        }
    });
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(run(0), 4);
    assert_eq!(blocked.join().unwrap(), Ok(()));
    assert_eq!(run(0), 1);
}

// ---------------------------------------------------------------------
// A producer in another process
// ---------------------------------------------------------------------

const CHILD: &str = "child_producer";
const CHILD_N: u64 = 5_000;

#[test]
fn child_producer() {
    if std::env::var(CHILD_ENV).as_deref() != Ok(CHILD) {
        return;
    }
    let map = Map::open_path(std::path::Path::new(&std::env::var("UR_MAP").unwrap())).unwrap();
    let p = UserRingProducer::new(map).unwrap();
    for seq in 0..CHILD_N {
        let len = 8 + (seq % 7) as u32 * 8;
        let s = p
            .reserve_blocking(len, Some(Duration::from_secs(30)))
            .unwrap();
        // SAFETY: a fresh reservation of `len` bytes.
        unsafe {
            std::ptr::write_bytes(s.as_ptr(), 0xab, len as usize);
            std::ptr::write_unaligned(s.as_ptr().cast::<u64>(), seq);
            if seq % 11 == 5 {
                p.discard(s.as_ptr());
            } else {
                p.submit(s.as_ptr());
            }
        }
    }
    println!("produced {CHILD_N}");
}

#[test]
fn producer_in_a_child_process() {
    // A small ring: the child blocks often and is woken by our drains.
    let m = ring(4096);
    for engine in ENGINES {
        let path = format!("/proc/{}/fd/{}", std::process::id(), m.fd().as_raw_fd());
        let child = Command::new(std::env::current_exe().unwrap())
            .args([CHILD, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, CHILD)
            .env("UR_MAP", path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let drain = vm(&drain_src(&m), engine);
        let mut expect = (0..CHILD_N).filter(|s| s % 11 != 5);
        let total = (0..CHILD_N).filter(|s| s % 11 != 5).count();
        let mut seen = 0usize;
        let start = Instant::now();
        while seen < total {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{engine}: stuck at {seen}"
            );
            // One drain may see every sample: the child keeps producing
            // while it runs (the JIT does not bounds-check the slots).
            let mut ctx = ctx_of(&[0, 0, 0, u64::MAX, 0], 8 * CHILD_N as usize);
            let r0 = drain.run(&mut ctx).unwrap();
            assert!(r0 <= CHILD_N, "{engine}: {r0:#x}");
            assert_eq!(word(&ctx, 4), 0, "{engine}");
            for i in 0..r0 as usize {
                assert_eq!(Some(word(&ctx, 5 + i)), expect.next(), "{engine}");
            }
            seen += r0 as usize;
            if r0 == 0 {
                std::thread::yield_now();
            }
        }
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{engine}: child failed");
        assert!(String::from_utf8_lossy(&out.stdout).contains("produced"));
    }
}
