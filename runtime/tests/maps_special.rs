//! The special map types: ring buffer, perf event array, program array,
//! stack trace, queue, stack, bloom filter and LPM trie: their kernel
//! semantics and errors, their helpers on both engines, and the ring
//! buffers across processes (a child process produces, this one consumes).
//!
//! Cross-process tests re-run this test binary as a child with
//! `MAPS_SPECIAL_CHILD=<test name>`; the child tests return at once in a
//! normal run.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use userbpf_runtime::asm::assemble;
use userbpf_runtime::helpers::{HelperEnv, HelperRegistry};
use userbpf_runtime::maps::bloom::Bloom;
use userbpf_runtime::maps::perf_event_array::{
    PerfEventArray, PerfRecord, PerfRing, BPF_F_CURRENT_CPU,
};
use userbpf_runtime::maps::prog_array::{prog_array_addr, set_prog_resolver};
use userbpf_runtime::maps::queue_stack::QueueStack;
use userbpf_runtime::maps::ringbuf::{
    self, ConsumeError, OutputError, RingBuf, RingBufConsumer, BPF_RB_AVAIL_DATA, BPF_RB_CONS_POS,
    BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, BPF_RB_PROD_POS, BPF_RB_RING_SIZE,
};
use userbpf_runtime::maps::special_helpers::{self, register_special_map_helpers};
use userbpf_runtime::maps::stack_trace::{
    self, set_stack_walker, store_stack, BPF_F_FAST_STACK_CMP, BPF_F_REUSE_STACKID,
    BPF_F_USER_STACK,
};
use userbpf_runtime::maps::{flags, map_type, Map, MapError, MapSpec};
use userbpf_runtime::shm::futex::{self, EventBridge, LazyEventBridge};
use userbpf_runtime::shm::ShmFile;
use userbpf_runtime::tailcall::TailTarget;
use userbpf_runtime::vm::{Engine, Vm, VmOptions};

const ENGINES: [Engine; 2] = [Engine::Interpreter, Engine::Jit];
const CHILD_ENV: &str = "MAPS_SPECIAL_CHILD";

static NEXT_ID: AtomicU32 = AtomicU32::new(7_000);

fn spec(t: u32, key: u32, value: u32, max: u32, map_flags: u32) -> MapSpec {
    MapSpec {
        map_type: t,
        key_size: key,
        value_size: value,
        max_entries: max,
        map_flags,
        map_extra: 0,
        name: "maps_special".into(),
        ..MapSpec::default()
    }
}

fn create(s: MapSpec) -> Result<Arc<Map>, MapError> {
    Map::create(&s, NEXT_ID.fetch_add(1, Ordering::Relaxed))
}

fn errno<T: std::fmt::Debug>(r: Result<T, MapError>) -> i32 {
    r.expect_err("expected an error").errno()
}

/// Deterministic xorshift for the randomized tests.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn helpers() -> HelperRegistry {
    let mut reg = HelperRegistry::new();
    register_special_map_helpers(&mut reg);
    reg
}

fn vm(src: &str, engine: Engine) -> Vm {
    let insns = assemble(src).unwrap_or_else(|e| panic!("{e}\n{src}"));
    Vm::from_insns(insns, helpers(), VmOptions::with_engine(engine)).unwrap()
}

// ---------------------------------------------------------------------
// Child processes and shared control words
// ---------------------------------------------------------------------

fn is_child(name: &str) -> bool {
    std::env::var(CHILD_ENV).as_deref() == Ok(name)
}

fn proc_path(fd: i32) -> String {
    format!("/proc/{}/fd/{}", std::process::id(), fd)
}

fn spawn_child(name: &str, env: &[(&str, String)]) -> std::process::Child {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, name)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        c.env(k, v);
    }
    c.spawn().unwrap()
}

fn finish_child(child: std::process::Child) -> String {
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "child failed:\n{text}");
    text
}

/// A page of u64 control words shared with a child.
struct Ctl(ShmFile);

impl Ctl {
    fn new() -> Ctl {
        Ctl(ShmFile::create("ctl", 4096).unwrap())
    }
    fn open(path: &str) -> Ctl {
        Ctl(ShmFile::open_path(std::path::Path::new(path)).unwrap())
    }
    fn path(&self) -> String {
        proc_path(self.0.fd().as_raw_fd())
    }
    fn w(&self, i: usize) -> &AtomicU64 {
        assert!(i < 512);
        // SAFETY: inside the one-page mapping, 8-aligned.
        unsafe { &*(self.0.base().cast::<AtomicU64>().add(i)) }
    }
    fn wait_for(&self, i: usize, value: u64) {
        let start = Instant::now();
        while self.w(i).load(Ordering::SeqCst) < value {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "timed out on ctl[{i}]"
            );
            std::thread::yield_now();
        }
    }
}

// ---------------------------------------------------------------------
// Ring buffer
// ---------------------------------------------------------------------

fn ringbuf(size: u32) -> Arc<Map> {
    create(spec(map_type::RINGBUF, 0, 0, size, 0)).unwrap()
}

fn rb(map: &Map) -> &RingBuf {
    map.downcast::<RingBuf>().unwrap()
}

#[test]
fn ringbuf_creation_follows_the_kernel() {
    let e = libc::EINVAL;
    assert_eq!(errno(create(spec(map_type::RINGBUF, 0, 0, 4096 * 3, 0))), e);
    assert_eq!(errno(create(spec(map_type::RINGBUF, 0, 0, 2048, 0))), e);
    assert_eq!(errno(create(spec(map_type::RINGBUF, 4, 0, 4096, 0))), e);
    assert_eq!(errno(create(spec(map_type::RINGBUF, 0, 8, 4096, 0))), e);
    assert_eq!(
        errno(create(spec(
            map_type::RINGBUF,
            0,
            0,
            4096,
            flags::BPF_F_MMAPABLE
        ))),
        e
    );
    let m = ringbuf(4096);
    assert_eq!(errno(m.lookup(&[], &mut [], 0)), libc::EOPNOTSUPP);
    assert_eq!(errno(m.update(&[], &[], 0)), libc::EOPNOTSUPP);
    assert_eq!(errno(m.delete(&[])), libc::EOPNOTSUPP);
    assert_eq!(errno(m.next_key(None, &mut [])), libc::EOPNOTSUPP);
    // mmap(map_fd, 0) sees the kernel's layout: positions at 0 and 4096.
    rb(&m).output(&[1, 2, 3], 0).unwrap();
    // SAFETY: the map's data area: consumer page, producer page, data.
    let prod = unsafe { *(m.mem().data().add(4096) as *const u64) };
    assert_eq!(prod, 16);
    // SAFETY: as above.
    let hdr = unsafe { *(m.mem().data().add(8192) as *const u32) };
    assert_eq!(hdr, 3);
}

#[test]
fn ringbuf_reserve_commit_consume() {
    let m = ringbuf(4096);
    let r = rb(&m);
    let c = RingBufConsumer::new(m.clone()).unwrap();
    assert!(RingBufConsumer::new(create(spec(map_type::QUEUE, 0, 4, 4, 0)).unwrap()).is_err());
    // Size limits: the record (len + 8, rounded) must stay below the size.
    assert!(r.reserve(4096).is_none());
    assert!(r.reserve(4088).is_none());
    assert!(r.reserve(4081).is_none());
    let big = r.reserve(4080).unwrap();
    // SAFETY: a fresh reservation.
    unsafe { ringbuf::discard(big.as_ptr(), 0) };
    assert_eq!(c.consume(u64::MAX, |_| 0), Ok(0));
    assert_eq!(c.consumer_pos(), 4088);

    // Three records, a BUSY one, one more: consumption stops at BUSY.
    for i in 0..3u8 {
        r.output(&[i; 5], 0).unwrap();
    }
    let busy = r.reserve(8).unwrap();
    r.output(&[9; 3], 0).unwrap();
    let mut seen = Vec::new();
    assert_eq!(
        c.consume(u64::MAX, |d| {
            seen.push(d.to_vec());
            0
        }),
        Ok(3)
    );
    assert_eq!(seen, vec![vec![0; 5], vec![1; 5], vec![2; 5]]);
    assert_eq!(c.avail_data_size(), 16 + 16);
    // SAFETY: the live reservation, 8 bytes.
    unsafe {
        std::ptr::write_bytes(busy.as_ptr(), 7, 8);
        ringbuf::submit(busy.as_ptr(), 0);
    }
    seen.clear();
    assert_eq!(
        c.consume(u64::MAX, |d| {
            seen.push(d.to_vec());
            0
        }),
        Ok(2)
    );
    assert_eq!(seen, vec![vec![7; 8], vec![9; 3]]);

    // A discarded record is skipped but consumed.
    let d = r.reserve(100).unwrap();
    // SAFETY: live reservation.
    unsafe { ringbuf::discard(d.as_ptr(), BPF_RB_NO_WAKEUP) };
    r.output(b"after", 0).unwrap();
    seen.clear();
    assert_eq!(
        c.consume(u64::MAX, |d| {
            seen.push(d.to_vec());
            0
        }),
        Ok(1)
    );
    assert_eq!(seen, vec![b"after".to_vec()]);
    assert_eq!(c.avail_data_size(), 0);

    // A callback error stops after its record, which is consumed.
    for i in 0..3u8 {
        r.output(&[i], 0).unwrap();
    }
    let mut n = 0;
    assert_eq!(
        c.consume(u64::MAX, |_| {
            n += 1;
            if n == 2 {
                -5
            } else {
                0
            }
        }),
        Err(ConsumeError::Callback(-5))
    );
    assert_eq!(ConsumeError::Callback(-5).to_ret(), -5);
    assert_eq!(c.consume(u64::MAX, |d| i32::from(d[0] != 2)), Ok(1));

    // consume_n.
    for i in 0..5u8 {
        r.output(&[i], 0).unwrap();
    }
    assert_eq!(c.consume(2, |_| 0), Ok(2));
    assert_eq!(c.consume(u64::MAX, |_| 0), Ok(3));

    // Flags and a full ring.
    assert_eq!(r.output(&[1], 4), Err(OutputError::InvalidFlags));
    assert_eq!(OutputError::InvalidFlags.errno(), libc::EINVAL);
    let mut ok = 0;
    while r.output(&[0; 56], 0).is_ok() {
        ok += 1;
    }
    assert_eq!(ok, 4095 / 64);
    assert_eq!(r.output(&[0; 56], 0), Err(OutputError::NoRoom));
    assert_eq!(OutputError::NoRoom.errno(), libc::EAGAIN);
    assert_eq!(r.query(BPF_RB_RING_SIZE), 4096);
    assert_eq!(r.query(BPF_RB_AVAIL_DATA), 63 * 64);
    assert_eq!(r.query(BPF_RB_PROD_POS) - r.query(BPF_RB_CONS_POS), 63 * 64);
    assert_eq!(r.query(99), 0);
    assert_eq!(c.consume(u64::MAX, |_| 0), Ok(63));
}

#[test]
fn ringbuf_records_wrap_contiguously() {
    let m = ringbuf(4096);
    let r = rb(&m);
    let c = RingBufConsumer::new(m.clone()).unwrap();
    let mut next = 0u32;
    let mut expected = 0u32;
    // 1000-byte samples (1008-byte records) wrap at every position.
    for _round in 0..40 {
        for _ in 0..3 {
            let s = r.reserve(1000).unwrap();
            // SAFETY: 1000 bytes reserved, contiguous even when wrapping.
            let buf = unsafe { std::slice::from_raw_parts_mut(s.as_ptr(), 1000) };
            for (i, b) in buf.iter_mut().enumerate() {
                *b = (next as usize * 31 + i) as u8;
            }
            // SAFETY: live reservation.
            unsafe { ringbuf::submit(s.as_ptr(), 0) };
            next += 1;
        }
        c.consume(u64::MAX, |d| {
            assert_eq!(d.len(), 1000);
            for (i, b) in d.iter().enumerate() {
                assert_eq!(*b, (expected as usize * 31 + i) as u8);
            }
            expected += 1;
            0
        })
        .unwrap();
    }
    assert_eq!(expected, next);
    assert!(c.producer_pos() > 25 * 4096);
}

#[test]
fn ringbuf_many_producers_lose_nothing() {
    const THREADS: u64 = 4;
    const PER: u64 = 40_000;
    let m = ringbuf(8192);
    let c = RingBufConsumer::new(m.clone()).unwrap();
    let producers: Vec<_> = (0..THREADS)
        .map(|t| {
            let m = m.clone();
            std::thread::spawn(move || {
                let r = rb(&m);
                for i in 0..PER {
                    let mut rec = [0u8; 24];
                    rec[..8].copy_from_slice(&t.to_le_bytes());
                    rec[8..16].copy_from_slice(&i.to_le_bytes());
                    // Alternate the two ways of producing; retry when full.
                    loop {
                        let ok = if i % 2 == 0 {
                            r.output(&rec[..8 + 8 + (i % 9) as usize], 0).is_ok()
                        } else if let Some(s) = r.reserve(24) {
                            // SAFETY: 24 bytes reserved.
                            unsafe {
                                std::ptr::copy_nonoverlapping(rec.as_ptr(), s.as_ptr(), 24);
                                ringbuf::submit(s.as_ptr(), 0);
                            }
                            true
                        } else {
                            false
                        };
                        if ok {
                            break;
                        }
                        std::thread::yield_now();
                    }
                }
            })
        })
        .collect();
    let mut next = [0u64; THREADS as usize];
    let mut total = 0;
    let start = Instant::now();
    while total < THREADS * PER {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "stuck at {total}"
        );
        let n = c
            .consume(u64::MAX, |d| {
                let t = u64::from_le_bytes(d[..8].try_into().unwrap()) as usize;
                let i = u64::from_le_bytes(d[8..16].try_into().unwrap());
                assert_eq!(i, next[t], "thread {t} out of order");
                next[t] += 1;
                0
            })
            .unwrap();
        total += n;
        if n == 0 {
            c.wait(Some(Duration::from_millis(50)));
        }
    }
    for p in producers {
        p.join().unwrap();
    }
    assert_eq!(next, [PER; THREADS as usize]);
    assert_eq!(c.avail_data_size(), 0);
}

#[test]
fn ringbuf_wakeups_follow_the_flags() {
    let m = ringbuf(4096);
    let c = RingBufConsumer::new(m.clone()).unwrap();
    // Nothing waiting: a producer never makes a wake syscall.
    let r = rb(&m);
    assert!(!r.channel().has_waiters());

    // Woken by a default commit (the consumer has caught up).
    let m2 = m.clone();
    let t = std::thread::spawn(move || {
        let r = rb(&m2);
        while !r.channel().has_waiters() {
            std::thread::yield_now();
        }
        r.output(&[1], 0).unwrap();
    });
    let start = Instant::now();
    assert!(c.wait(Some(Duration::from_secs(20))));
    assert!(start.elapsed() < Duration::from_secs(20));
    t.join().unwrap();
    assert_eq!(c.consume(u64::MAX, |_| 0), Ok(1));

    // BPF_RB_NO_WAKEUP: the sleeper is not woken; it finds the data when
    // its timeout expires.
    let m2 = m.clone();
    let t = std::thread::spawn(move || {
        let r = rb(&m2);
        while !r.channel().has_waiters() {
            std::thread::yield_now();
        }
        r.output(&[2], BPF_RB_NO_WAKEUP).unwrap();
    });
    let start = Instant::now();
    assert!(c.wait(Some(Duration::from_millis(300))));
    assert!(start.elapsed() >= Duration::from_millis(290));
    t.join().unwrap();
    assert_eq!(c.consume(u64::MAX, |_| 0), Ok(1));

    // BPF_RB_FORCE_WAKEUP wakes the sleeper even for a record it does not
    // wait for (here: one behind a BUSY record); the sleeper finds nothing
    // ready and sleeps on until its timeout.
    let busy = r.reserve(8).unwrap();
    let m2 = m.clone();
    let t = std::thread::spawn(move || {
        let r = rb(&m2);
        while !r.channel().has_waiters() {
            std::thread::yield_now();
        }
        let before = futex::wake_syscalls();
        r.output(&[3], BPF_RB_FORCE_WAKEUP).unwrap();
        futex::wake_syscalls() - before
    });
    let start = Instant::now();
    assert!(!c.wait(Some(Duration::from_millis(200))));
    assert!(start.elapsed() >= Duration::from_millis(190));
    assert!(t.join().unwrap() >= 1, "FORCE_WAKEUP made no wake syscall");
    // SAFETY: live reservation.
    unsafe { ringbuf::submit(busy.as_ptr(), BPF_RB_NO_WAKEUP) };
    assert_eq!(c.consume(u64::MAX, |_| 0), Ok(2));
}

#[test]
fn ringbuf_poll_over_several_rings_and_the_eventfd_bridge() {
    let maps: Vec<_> = (0..3).map(|_| ringbuf(4096)).collect();
    let consumers: Vec<_> = maps
        .iter()
        .map(|m| RingBufConsumer::new(m.clone()).unwrap())
        .collect();
    let refs: Vec<&RingBufConsumer> = consumers.iter().collect();
    assert!(!ringbuf::wait_any(&refs, Some(Duration::from_millis(20))));
    let m2 = maps[2].clone();
    let t = std::thread::spawn(move || {
        let r = rb(&m2);
        while !r.channel().has_waiters() {
            std::thread::yield_now();
        }
        r.output(b"x", 0).unwrap();
    });
    assert!(ringbuf::wait_any(&refs, Some(Duration::from_secs(20))));
    t.join().unwrap();
    assert_eq!(consumers[2].consume(u64::MAX, |_| 0), Ok(1));

    // The eventfd bridge: readable while data waits, in an epoll set.
    let bridge = EventBridge::start(consumers.iter().map(|c| c.wake_source()).collect()).unwrap();
    // SAFETY: plain syscalls on fds we own.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(ep >= 0);
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: 0,
    };
    // SAFETY: valid fds and event.
    let r = unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, bridge.fd().as_raw_fd(), &mut ev) };
    assert_eq!(r, 0);
    let epoll_wait = |ms: i32| {
        let mut out = [libc::epoll_event { events: 0, u64: 0 }];
        // SAFETY: one output slot.
        unsafe { libc::epoll_wait(ep, out.as_mut_ptr(), 1, ms) }
    };
    assert_eq!(epoll_wait(50), 0);
    rb(&maps[1]).output(b"y", 0).unwrap();
    assert_eq!(epoll_wait(20_000), 1);
    // Still readable until the consumer consumes and rearms.
    assert_eq!(epoll_wait(0), 1);
    assert_eq!(consumers[1].consume(u64::MAX, |_| 0), Ok(1));
    bridge.rearm();
    assert_eq!(epoll_wait(100), 0);
    rb(&maps[0]).output(b"z", 0).unwrap();
    assert_eq!(epoll_wait(20_000), 1);
    drop(bridge);

    // The lazy form: nothing runs until the fd is asked for.
    let lazy = LazyEventBridge::new();
    lazy.add_source(consumers[0].wake_source());
    lazy.rearm();
    assert!(!lazy.is_started());
    let fd = lazy.fd().unwrap().as_raw_fd();
    assert!(lazy.is_started());
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd. Ring 0 still holds "z": readable.
    assert_eq!(unsafe { libc::poll(&mut pfd, 1, 20_000) }, 1);
    assert_eq!(consumers[0].consume(u64::MAX, |_| 0), Ok(1));
    lazy.rearm();
    lazy.add_source(consumers[1].wake_source());
    rb(&maps[1]).output(b"w", 0).unwrap();
    // SAFETY: as above.
    assert_eq!(unsafe { libc::poll(&mut pfd, 1, 20_000) }, 1);
    // SAFETY: our fd.
    unsafe { libc::close(ep) };
}

extern "C" fn ignore_signal(_: libc::c_int) {}

#[test]
fn ringbuf_poll_is_interrupted_by_a_signal_like_epoll() {
    // signal() installs handlers with SA_RESTART, as libbpf-tools do: the
    // poll must still return (ring_buffer__poll gives -EINTR).
    // SAFETY: installs a handler that does nothing for a signal no other
    // test uses.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = ignore_signal as *const () as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigaction(libc::SIGUSR2, &sa, std::ptr::null_mut());
    }
    let m = ringbuf(4096);
    let (tx, rx) = std::sync::mpsc::channel();
    let m2 = m.clone();
    let t = std::thread::spawn(move || {
        let c = RingBufConsumer::new(m2).unwrap();
        // SAFETY: pthread_self has no preconditions.
        tx.send(unsafe { libc::pthread_self() }).unwrap();
        ringbuf::poll(&[&c], None)
    });
    let thread = rx.recv().unwrap();
    let r = rb(&m);
    let start = Instant::now();
    while !r.channel().has_waiters() {
        assert!(start.elapsed() < Duration::from_secs(30));
        std::thread::yield_now();
    }
    std::thread::sleep(Duration::from_millis(20));
    // SAFETY: the thread is alive (it is blocked in poll).
    unsafe { libc::pthread_kill(thread, libc::SIGUSR2) };
    assert_eq!(t.join().unwrap(), futex::Readiness::Interrupted);
}

/// Programs using the ring buffer helpers, on both engines.
#[test]
fn ringbuf_helpers_on_both_engines() {
    for engine in ENGINES {
        let m = ringbuf(4096);
        let c = RingBufConsumer::new(m.clone()).unwrap();
        let addr = m.prog_addr();
        // output 16 bytes from the stack
        let out = vm(
            &format!(
                "mov %r1, 0x1234\n stxdw [%r10-16], %r1\n mov %r1, 0x5678\n stxdw [%r10-8], %r1\n\
                 lddw %r1, {addr:#x}\n mov %r2, %r10\n add %r2, -16\n mov %r3, 16\n mov %r4, 0\n\
                 call 130\n exit"
            ),
            engine,
        );
        assert_eq!(out.run(&mut [0u8; 8]).unwrap(), 0, "{engine}");
        // bad flags
        let bad = vm(
            &format!(
                "mov %r1, 0\n stxdw [%r10-8], %r1\n lddw %r1, {addr:#x}\n mov %r2, %r10\n add %r2, -8\n\
                 mov %r3, 8\n mov %r4, 8\n call 130\n exit"
            ),
            engine,
        );
        assert_eq!(bad.run(&mut [0u8; 8]).unwrap() as i64, -22, "{engine}");
        // reserve, write through the pointer, submit; then reserve+discard
        let rsv = vm(
            &format!(
                "lddw %r1, {addr:#x}\n mov %r2, 8\n mov %r3, 0\n call 131\n jeq %r0, 0, fail\n\
                 mov %r1, 0x77\n stxdw [%r0], %r1\n mov %r1, %r0\n mov %r2, 0\n call 132\n\
                 lddw %r1, {addr:#x}\n mov %r2, 24\n mov %r3, 0\n call 131\n jeq %r0, 0, fail\n\
                 mov %r1, %r0\n mov %r2, 0\n call 133\n\
                 lddw %r1, {addr:#x}\n mov %r2, 8\n mov %r3, 1\n call 131\n jne %r0, 0, fail\n\
                 lddw %r1, {addr:#x}\n mov %r2, 1\n call 134\n exit\n\
                 fail:\n mov %r0, 0\n exit"
            ),
            engine,
        );
        assert_eq!(rsv.run(&mut [0u8; 8]).unwrap(), 4096, "{engine}");
        let mut got = Vec::new();
        assert_eq!(
            c.consume(u64::MAX, |d| {
                got.push(d.to_vec());
                0
            }),
            Ok(2)
        );
        let mut first = 0x1234u64.to_le_bytes().to_vec();
        first.extend_from_slice(&0x5678u64.to_le_bytes());
        assert_eq!(got, vec![first, 0x77u64.to_le_bytes().to_vec()], "{engine}");
        // The wrong map type: -EINVAL / NULL.
        let q = create(spec(map_type::QUEUE, 0, 8, 4, 0)).unwrap();
        let wrong = vm(
            &format!(
                "mov %r1, 0\n stxdw [%r10-8], %r1\n lddw %r1, {:#x}\n mov %r2, %r10\n add %r2, -8\n\
                 mov %r3, 8\n mov %r4, 0\n call 130\n exit",
                q.prog_addr()
            ),
            engine,
        );
        assert_eq!(wrong.run(&mut [0u8; 8]).unwrap() as i64, -22, "{engine}");
    }
    // The interpreter refuses to read outside the program's memory and
    // ignores a submit of a pointer that is no reservation.
    let m = ringbuf(4096);
    let addr = m.prog_addr();
    let wild = vm(
        &format!(
            "lddw %r1, {addr:#x}\n lddw %r2, 0x10000\n mov %r3, 8\n mov %r4, 0\n call 130\n exit"
        ),
        Engine::Interpreter,
    );
    assert_eq!(wild.run(&mut [0u8; 8]).unwrap() as i64, -14);
    let bogus = vm(
        "mov %r1, %r10\n add %r1, -8\n mov %r2, 0\n call 132\n mov %r0, 5\n exit",
        Engine::Interpreter,
    );
    assert_eq!(bogus.run(&mut [0u8; 8]).unwrap(), 5);
    assert_eq!(rb(&m).avail_data(), 0);
}

const RB_CHILD: &str = "child_ringbuf_producer";
/// Records in phase 1 of the cross-process ring buffer test.
const RB_N1: u64 = 60_000;

fn rb_record(i: u64) -> Vec<u8> {
    let len = 8 + (i % 5) as usize * 8 + (i % 3) as usize;
    let mut v = vec![i as u8; len];
    v[..8].copy_from_slice(&i.to_le_bytes());
    v
}

/// ctl words: 0 child phase, 1 wakes in phase 1, 2 wakes in phase 2,
/// 3 parent acks in phase 2.
#[test]
fn child_ringbuf_producer() {
    if !is_child(RB_CHILD) {
        return;
    }
    let map = Map::open_path(std::path::Path::new(&std::env::var("RB_MAP").unwrap())).unwrap();
    let ctl = Ctl::open(&std::env::var("RB_CTL").unwrap());
    let r = rb(&map);
    // Phase 1: a stream with discards, the consumer never sleeps.
    let wakes0 = futex::wake_syscalls();
    for i in 0..RB_N1 {
        let rec = rb_record(i);
        loop {
            let ok = if i % 7 == 0 {
                r.reserve(rec.len() as u64).map(|s| {
                    // SAFETY: live reservation.
                    unsafe { ringbuf::discard(s.as_ptr(), 0) }
                })
            } else if i % 2 == 0 {
                r.output(&rec, 0).ok()
            } else {
                r.reserve(rec.len() as u64).map(|s| {
                    // SAFETY: `rec.len()` bytes reserved.
                    unsafe {
                        std::ptr::copy_nonoverlapping(rec.as_ptr(), s.as_ptr(), rec.len());
                        ringbuf::submit(s.as_ptr(), 0);
                    }
                })
            };
            if ok.is_some() {
                break;
            }
            std::thread::yield_now();
        }
    }
    ctl.w(1)
        .store(futex::wake_syscalls() - wakes0, Ordering::SeqCst);
    ctl.w(0).store(2, Ordering::SeqCst);
    // Phase 2: one record at a time, each while the consumer sleeps.
    let wakes0 = futex::wake_syscalls();
    for j in 0..20 {
        let start = Instant::now();
        while !r.channel().has_waiters() {
            assert!(start.elapsed() < Duration::from_secs(60));
            std::thread::yield_now();
        }
        r.output(&rb_record(RB_N1 + j), 0).unwrap();
        ctl.wait_for(3, j + 1);
    }
    ctl.w(2)
        .store(futex::wake_syscalls() - wakes0, Ordering::SeqCst);
    // Phase 3: die with a record reserved and never committed, behind
    // which a committed one waits.
    let _abandoned = r.reserve(16).unwrap();
    r.output(&rb_record(999_999), 0).unwrap();
    ctl.w(0).store(3, Ordering::SeqCst);
}

#[test]
fn ringbuf_across_processes() {
    let map = ringbuf(16 * 1024);
    let ctl = Ctl::new();
    let child = spawn_child(
        RB_CHILD,
        &[("RB_MAP", proc_path(map.raw_fd())), ("RB_CTL", ctl.path())],
    );
    let c = RingBufConsumer::new(map.clone()).unwrap();
    // Phase 1: consume by polling only (never sleeping).
    let mut expect = 0u64;
    let start = Instant::now();
    let next_kept = |mut i: u64| {
        while i.is_multiple_of(7) {
            i += 1;
        }
        i
    };
    expect = next_kept(expect);
    while expect < RB_N1 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "phase 1 stuck at {expect}"
        );
        let n = c
            .consume(u64::MAX, |d| {
                assert_eq!(d, rb_record(expect).as_slice(), "record {expect}");
                expect = next_kept(expect + 1);
                0
            })
            .unwrap();
        if n == 0 {
            std::thread::yield_now();
        }
    }
    ctl.wait_for(0, 2);
    assert_eq!(
        ctl.w(1).load(Ordering::SeqCst),
        0,
        "wake syscalls with a busy consumer"
    );
    assert!(
        c.producer_pos() > 20 * 16 * 1024,
        "the ring wrapped many times"
    );
    // Phase 2: the consumer sleeps, each record wakes it.
    for j in 0..20u64 {
        assert!(c.wait(Some(Duration::from_secs(60))), "not woken for {j}");
        let mut got = 0;
        while got == 0 {
            got = c
                .consume(u64::MAX, |d| {
                    assert_eq!(d, rb_record(RB_N1 + j).as_slice());
                    0
                })
                .unwrap();
        }
        assert_eq!(got, 1);
        ctl.w(3).store(j + 1, Ordering::SeqCst);
    }
    // Phase 3: the child died holding a reservation.
    let out = finish_child(child);
    assert_eq!(ctl.w(0).load(Ordering::SeqCst), 3, "{out}");
    assert_eq!(ctl.w(2).load(Ordering::SeqCst), 20, "one wake per record");
    assert_eq!(
        c.consume(u64::MAX, |_| 0),
        Ok(0),
        "stopped at the BUSY record"
    );
    assert!(
        c.wait(Some(Duration::from_secs(10))),
        "dead producer not recovered"
    );
    let mut got = Vec::new();
    c.consume(u64::MAX, |d| {
        got.push(d.to_vec());
        0
    })
    .unwrap();
    assert_eq!(got, vec![rb_record(999_999)]);
    // The ring works on.
    rb(&map).output(b"still fine", 0).unwrap();
    assert_eq!(
        c.consume(u64::MAX, |d| i32::from(d != b"still fine")),
        Ok(1)
    );
}

// ---------------------------------------------------------------------
// Perf event array
// ---------------------------------------------------------------------

fn perf_array(n: u32) -> Arc<Map> {
    create(spec(map_type::PERF_EVENT_ARRAY, 4, 4, n, 0)).unwrap()
}

fn set_ring(map: &Map, index: u32, ring: &PerfRing) {
    map.update(
        &index.to_ne_bytes(),
        &ring.fd().as_raw_fd().to_ne_bytes(),
        flags::BPF_ANY,
    )
    .unwrap();
}

/// Calls the helper directly (null env: an unchecked run).
fn perf_output(map: &Arc<Map>, flags: u64, data: &[u8]) -> i64 {
    // SAFETY: a live map and a valid buffer.
    pinned_to_index(flags, || unsafe {
        special_helpers::bpf_perf_event_output(
            0,
            map.prog_addr(),
            flags,
            data.as_ptr() as u64,
            data.len() as u64,
            std::ptr::null_mut(),
        ) as i64
    })
}

/// Runs `f` with the calling thread pinned to the CPU that perf-output
/// `flags` names (when it names an existing CPU), as a kernel producer
/// writing to that CPU's event must run there.
fn pinned_to_index<R>(flags: u64, f: impl FnOnce() -> R) -> R {
    let index = flags & 0xffff_ffff;
    let ncpu = userbpf_runtime::cpu::possible_cpus() as u64;
    if flags >> 32 != 0 || index >= ncpu {
        return f();
    }
    // SAFETY: plain affinity syscalls on the calling thread with valid sets.
    unsafe {
        let mut old: libc::cpu_set_t = std::mem::zeroed();
        libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut old);
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(index as usize, &mut one);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one);
        let r = f();
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &old);
        r
    }
}

fn drain(ring: &PerfRing) -> (Vec<Vec<u8>>, u64) {
    let mut samples = Vec::new();
    let mut lost = 0;
    ring.consume(|r| {
        match r {
            PerfRecord::Sample(d) => samples.push(d.to_vec()),
            PerfRecord::Lost(n) => lost += n,
            PerfRecord::Other(_) => panic!("unexpected record"),
        }
        0
    })
    .unwrap();
    (samples, lost)
}

#[test]
fn perf_event_array_semantics() {
    assert_eq!(
        errno(create(spec(map_type::PERF_EVENT_ARRAY, 4, 8, 4, 0))),
        libc::EINVAL
    );
    assert_eq!(PerfRing::create(3).unwrap_err().errno(), libc::EINVAL);
    let m = perf_array(4);
    let ring = PerfRing::create(1).unwrap();
    let k0 = 0u32.to_ne_bytes();
    let fd = ring.fd().as_raw_fd().to_ne_bytes();
    assert_eq!(errno(m.update(&k0, &fd, flags::BPF_NOEXIST)), libc::EINVAL);
    assert_eq!(errno(m.update(&4u32.to_ne_bytes(), &fd, 0)), libc::E2BIG);
    let not_a_ring = ShmFile::create("x", 8192).unwrap();
    assert_eq!(
        errno(m.update(&k0, &not_a_ring.fd().as_raw_fd().to_ne_bytes(), 0)),
        libc::EBADF
    );
    assert_eq!(errno(m.update(&k0, &(-1i32).to_ne_bytes(), 0)), libc::EBADF);
    assert_eq!(errno(m.delete(&k0)), libc::ENOENT);
    assert_eq!(errno(m.delete(&4u32.to_ne_bytes())), libc::E2BIG);
    set_ring(&m, 0, &ring);
    // User-space lookups are not supported, as in the kernel (ENOTSUPP).
    assert_eq!(errno(m.lookup(&k0, &mut [0; 4], 0)), libc::EOPNOTSUPP);
    let mut next = [0u8; 4];
    m.next_key(None, &mut next).unwrap();
    assert_eq!(next, 0u32.to_ne_bytes());
    m.next_key(Some(&2u32.to_ne_bytes()), &mut next).unwrap();
    assert_eq!(next, 3u32.to_ne_bytes());
    assert_eq!(
        errno(m.next_key(Some(&3u32.to_ne_bytes()), &mut next)),
        libc::ENOENT
    );

    // Helper errors.
    assert_eq!(perf_output(&m, 1, b"abc"), -(libc::ENOENT as i64));
    assert_eq!(perf_output(&m, 4, b"abc"), -(libc::E2BIG as i64));
    assert_eq!(perf_output(&m, 1 << 32, b"abc"), -(libc::EINVAL as i64));
    // Samples carry the kernel's padding in their size.
    assert_eq!(perf_output(&m, 0, b"hello"), 0);
    assert_eq!(perf_output(&m, 0, &[7; 12]), 0);
    let (s, lost) = drain(&ring);
    assert_eq!(lost, 0);
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].len(), 12);
    assert_eq!(&s[0][..5], b"hello");
    assert_eq!(s[1].len(), 12);
    assert_eq!(s[1], vec![7; 12]);

    // Fill it: drops are counted and reported before the next sample.
    let mut ok = 0;
    let mut dropped = 0;
    for i in 0..100u32 {
        match perf_output(&m, 0, &[i as u8; 100]) {
            0 => ok += 1,
            e => {
                assert_eq!(e, -(libc::ENOSPC as i64));
                dropped += 1;
            }
        }
    }
    assert_eq!(ok, 4096 / 112);
    let (s, lost) = drain(&ring);
    assert_eq!((s.len(), lost), (ok, 0));
    assert_eq!(perf_output(&m, 0, b"next"), 0);
    let (s, lost) = drain(&ring);
    assert_eq!(lost, dropped);
    assert_eq!(&s[0][..4], b"next");
    assert_eq!(ring.lost_total(), dropped);

    // Records wrap around the end of the data area.
    for round in 0..100u32 {
        for k in 0..3u32 {
            let v: Vec<u8> = (0..60).map(|i| (i + round * 3 + k) as u8).collect();
            assert_eq!(perf_output(&m, 0, &v), 0);
        }
        let (s, _) = drain(&ring);
        assert_eq!(s.len(), 3);
        for (k, rec) in s.iter().enumerate() {
            let v: Vec<u8> = (0..60).map(|i| (i + round * 3 + k as u32) as u8).collect();
            assert_eq!(&rec[..60], v.as_slice());
        }
    }
    assert!(ring.data_head() > 3 * 4096);

    // Replacing the slot's ring: the next output goes to the new one
    // (the per-slot cache follows the generation).
    let ring2 = PerfRing::create(2).unwrap();
    set_ring(&m, 0, &ring2);
    assert_eq!(perf_output(&m, 0, b"two"), 0);
    assert_eq!(drain(&ring).0.len(), 0);
    assert_eq!(drain(&ring2).0.len(), 1);
    m.delete(&k0).unwrap();
    assert_eq!(perf_output(&m, 0, b"gone"), -(libc::ENOENT as i64));

    // The consumer may close its own fd: the map keeps the ring reachable.
    let ring3 = PerfRing::create(1).unwrap();
    set_ring(&m, 1, &ring3);
    let reopened = PerfRing::open(ring3.fd()).unwrap();
    drop(ring3);
    assert_eq!(perf_output(&m, 1, b"kept"), 0);
    assert_eq!(drain(&reopened).0.len(), 1);

    // BPF_F_CURRENT_CPU, with a ring on every possible CPU.
    let ncpu = userbpf_runtime::cpu::possible_cpus();
    let all = perf_array(ncpu);
    let rings: Vec<_> = (0..ncpu).map(|_| PerfRing::create(1).unwrap()).collect();
    for (i, r) in rings.iter().enumerate() {
        set_ring(&all, i as u32, r);
    }
    assert_eq!(perf_output(&all, BPF_F_CURRENT_CPU, b"cpu"), 0);
    let total: usize = rings.iter().map(|r| drain(r).0.len()).sum();
    assert_eq!(total, 1);
    assert!(PerfEventArray::of(&all).is_some());
}

#[test]
fn perf_ring_wakes_a_sleeping_consumer() {
    let m = perf_array(1);
    let ring = Arc::new(PerfRing::create(1).unwrap());
    set_ring(&m, 0, &ring);
    let r2 = ring.clone();
    let m2 = m.clone();
    let t = std::thread::spawn(move || {
        while !r2.channel().has_waiters() {
            std::thread::yield_now();
        }
        assert_eq!(perf_output(&m2, 0, b"wake"), 0);
    });
    let start = Instant::now();
    assert!(ring.wait(Some(Duration::from_secs(30))));
    assert!(start.elapsed() < Duration::from_secs(30));
    t.join().unwrap();
    assert!(userbpf_runtime::maps::perf_event_array::wait_any(
        &[&ring],
        Some(Duration::from_millis(1))
    ));
    assert_eq!(drain(&ring).0.len(), 1);
    assert!(!ring.wait(Some(Duration::from_millis(20))));
}

const PERF_CHILD: &str = "child_perf_producer";
const PERF_N: u64 = 300;

/// ctl words: 0 phase-1 done, 1 successes, 2 failures, 3 parent says go,
/// 4 phase-2 done.
#[test]
fn child_perf_producer() {
    if !is_child(PERF_CHILD) {
        return;
    }
    let map = Map::open_path(std::path::Path::new(&std::env::var("PERF_MAP").unwrap())).unwrap();
    let ctl = Ctl::open(&std::env::var("PERF_CTL").unwrap());
    let (mut ok, mut failed) = (0, 0);
    for i in 0..PERF_N {
        let mut v = [0u8; 100];
        v[..8].copy_from_slice(&i.to_le_bytes());
        match perf_output(&map, 0, &v) {
            0 => ok += 1,
            e if e == -(libc::ENOSPC as i64) => failed += 1,
            e => panic!("perf output: {e}"),
        }
    }
    ctl.w(1).store(ok, Ordering::SeqCst);
    ctl.w(2).store(failed, Ordering::SeqCst);
    ctl.w(0).store(1, Ordering::SeqCst);
    ctl.wait_for(3, 1);
    let start = Instant::now();
    let ring = PerfEventArray::of(&map).unwrap().ring(0).unwrap();
    while !ring.channel().has_waiters() {
        assert!(start.elapsed() < Duration::from_secs(60));
        std::thread::yield_now();
    }
    drop(ring);
    assert_eq!(perf_output(&map, 0, b"last one"), 0);
    ctl.w(4).store(1, Ordering::SeqCst);
}

#[test]
fn perf_ring_across_processes() {
    let map = perf_array(2);
    let ring = PerfRing::create(1).unwrap();
    set_ring(&map, 0, &ring);
    let ctl = Ctl::new();
    let child = spawn_child(
        PERF_CHILD,
        &[
            ("PERF_MAP", proc_path(map.raw_fd())),
            ("PERF_CTL", ctl.path()),
        ],
    );
    ctl.wait_for(0, 1);
    let ok = ctl.w(1).load(Ordering::SeqCst);
    let failed = ctl.w(2).load(Ordering::SeqCst);
    assert_eq!(ok + failed, PERF_N);
    assert!(failed > 0, "the ring must have overflowed");
    let (s, lost) = drain(&ring);
    assert_eq!(s.len() as u64, ok);
    for (i, rec) in s.iter().enumerate() {
        assert_eq!(&rec[..8], &(i as u64).to_le_bytes());
    }
    assert_eq!(lost, 0, "drops are reported with the next record");
    ctl.w(3).store(1, Ordering::SeqCst);
    assert!(ring.wait(Some(Duration::from_secs(60))), "not woken");
    ctl.wait_for(4, 1);
    let (s, lost) = drain(&ring);
    assert_eq!(lost, failed);
    assert_eq!(s.len(), 1);
    assert_eq!(&s[0][..8], b"last one");
    finish_child(child);
}

// ---------------------------------------------------------------------
// Program array
// ---------------------------------------------------------------------

type Registry = (HashMap<i32, (u32, TailTarget)>, HashMap<u32, TailTarget>);

fn prog_registry() -> &'static Mutex<Registry> {
    static REG: std::sync::OnceLock<Mutex<Registry>> = std::sync::OnceLock::new();
    REG.get_or_init(Default::default)
}

fn by_fd(fd: i32) -> Result<(u32, TailTarget, u32), i32> {
    let found = prog_registry().lock().unwrap().0.get(&fd).cloned();
    found.map(|(id, t)| (id, t, 0)).ok_or(libc::EBADF)
}

fn by_id(id: u32) -> Option<TailTarget> {
    prog_registry().lock().unwrap().1.get(&id).cloned()
}

fn register_prog(fd: i32, id: u32, target: TailTarget) {
    let mut r = prog_registry().lock().unwrap();
    r.0.insert(fd, (id, target.clone()));
    r.1.insert(id, target);
}

/// `ctx[0] += 1; tail_call(ctx, array, next); r0 = ctx[0]`.
fn counting(array_addr: u64, next: u32, engine: Engine) -> Vm {
    vm(
        &format!(
            "ldxdw %r6, [%r1]\n add %r6, 1\n stxdw [%r1], %r6\n lddw %r2, {array_addr:#x}\n\
             mov %r3, {next}\n call 12\n ldxdw %r0, [%r1]\n exit"
        ),
        engine,
    )
}

#[test]
fn prog_array_semantics_and_tail_calls() {
    set_prog_resolver(by_fd, by_id);
    assert_eq!(
        errno(create(spec(map_type::PROG_ARRAY, 4, 8, 4, 0))),
        libc::EINVAL
    );
    for (e, engine) in ENGINES.into_iter().enumerate() {
        let m = create(spec(map_type::PROG_ARRAY, 4, 4, 8, 0)).unwrap();
        let addr = prog_array_addr(&m).unwrap();
        assert_eq!(prog_array_addr(&ringbuf(4096)), None);
        let base_fd = 1000 + e as i32 * 100;
        let mut vms = Vec::new();
        for slot in 0..5u32 {
            let v = counting(addr, slot + 1, engine);
            register_prog(
                base_fd + slot as i32,
                500 + e as u32 * 100 + slot,
                v.tail_target(),
            );
            vms.push(v);
        }
        let k = |i: u32| i.to_ne_bytes();
        assert_eq!(
            errno(m.update(&k(0), &base_fd.to_ne_bytes(), flags::BPF_NOEXIST)),
            libc::EINVAL
        );
        assert_eq!(
            errno(m.update(&k(8), &base_fd.to_ne_bytes(), 0)),
            libc::E2BIG
        );
        assert_eq!(
            errno(m.update(&k(0), &77777i32.to_ne_bytes(), 0)),
            libc::EBADF
        );
        assert_eq!(errno(m.lookup(&k(1), &mut [0; 4], 0)), libc::ENOENT);
        assert_eq!(errno(m.lookup(&k(9), &mut [0; 4], 0)), libc::ENOENT);
        assert_eq!(errno(m.delete(&k(1))), libc::ENOENT);
        assert_eq!(errno(m.delete(&k(8))), libc::E2BIG);
        // Slots 1..=3 hold programs 1..=3: entry program 0 runs, then 1, 2, 3.
        for slot in 1..=3u32 {
            m.update(&k(slot), &(base_fd + slot as i32).to_ne_bytes(), 0)
                .unwrap();
        }
        let mut v = [0u8; 4];
        m.lookup(&k(2), &mut v, 0).unwrap();
        assert_eq!(u32::from_ne_bytes(v), 500 + e as u32 * 100 + 2);
        let mut ctx = [0u8; 8];
        assert_eq!(vms[0].run(&mut ctx).unwrap(), 4, "{engine}");
        // Deleting slot 2 cuts the chain after program 1.
        m.delete(&k(2)).unwrap();
        let mut ctx = [0u8; 8];
        assert_eq!(vms[0].run(&mut ctx).unwrap(), 2, "{engine}");
        assert_eq!(errno(m.lookup(&k(2), &mut v, 0)), libc::ENOENT);
        let mut next = [0u8; 4];
        m.next_key(Some(&k(6)), &mut next).unwrap();
        assert_eq!(next, k(7));
        assert_eq!(errno(m.next_key(Some(&k(7)), &mut next)), libc::ENOENT);
    }
}

const PA_CHILD: &str = "child_prog_array_writer";

fn child_by_fd(fd: i32) -> Result<(u32, TailTarget, u32), i32> {
    Ok((fd as u32 + 900, Arc::new(()), 0))
}

fn child_by_id(_: u32) -> Option<TailTarget> {
    None
}

#[test]
fn child_prog_array_writer() {
    if !is_child(PA_CHILD) {
        return;
    }
    set_prog_resolver(child_by_fd, child_by_id);
    let map = Map::open_path(std::path::Path::new(&std::env::var("PA_MAP").unwrap())).unwrap();
    // "fd" 1 is program 901 in this process's resolver.
    map.update(&1u32.to_ne_bytes(), &1i32.to_ne_bytes(), 0)
        .unwrap();
    map.delete(&2u32.to_ne_bytes()).unwrap();
}

#[test]
fn prog_array_resyncs_with_other_processes() {
    set_prog_resolver(by_fd, by_id);
    for engine in ENGINES {
        let m = create(spec(map_type::PROG_ARRAY, 4, 4, 4, 0)).unwrap();
        let addr = prog_array_addr(&m).unwrap();
        let entry = counting(addr, 1, engine);
        let second = counting(addr, 2, engine);
        let third = counting(addr, 3, engine);
        // Program 901 exists in this process too (the loader's registry).
        let fd_base = if engine == Engine::Jit { 3000 } else { 2000 };
        register_prog(fd_base + 1, 901, second.tail_target());
        register_prog(fd_base + 2, 902, third.tail_target());
        m.update(&2u32.to_ne_bytes(), &(fd_base + 2).to_ne_bytes(), 0)
            .unwrap();
        let mut ctx = [0u8; 8];
        assert_eq!(entry.run(&mut ctx).unwrap(), 1, "slot 1 empty: {engine}");
        let child = spawn_child(PA_CHILD, &[("PA_MAP", proc_path(m.raw_fd()))]);
        finish_child(child);
        // Before a sync this process still sees its old slots; after, the
        // child's update (slot 1 = program 901) and delete (slot 2).
        userbpf_runtime::maps::prog_array::sync(&m);
        let mut ctx = [0u8; 8];
        assert_eq!(entry.run(&mut ctx).unwrap(), 2, "{engine}");
        let mut v = [0u8; 4];
        m.lookup(&1u32.to_ne_bytes(), &mut v, 0).unwrap();
        assert_eq!(u32::from_ne_bytes(v), 901);
    }
}

// ---------------------------------------------------------------------
// Stack trace
// ---------------------------------------------------------------------

fn stack_map(depth: u32, max: u32) -> Arc<Map> {
    create(spec(map_type::STACK_TRACE, 4, depth * 8, max, 0)).unwrap()
}

fn stack_of(map: &Map, id: u32) -> Vec<u64> {
    let mut v = vec![0u8; map.spec().value_size as usize];
    map.lookup(&id.to_ne_bytes(), &mut v, 0).unwrap();
    v.chunks(8)
        .map(|c| u64::from_ne_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn stack_trace_semantics() {
    let e = libc::EINVAL;
    assert_eq!(errno(create(spec(map_type::STACK_TRACE, 4, 12, 4, 0))), e);
    assert_eq!(errno(create(spec(map_type::STACK_TRACE, 8, 16, 4, 0))), e);
    assert_eq!(
        errno(create(spec(map_type::STACK_TRACE, 4, 128 * 8, 4, 0))),
        e
    );
    let m = stack_map(4, 64);
    let a = [0x1000u64, 0x2000, 0x3000];
    let id = store_stack(&m, &a, BPF_F_USER_STACK).unwrap();
    assert_eq!(store_stack(&m, &a, 0).unwrap(), id, "same stack, same id");
    assert_eq!(stack_of(&m, id), vec![0x1000, 0x2000, 0x3000, 0]);
    // Longer traces are cut to the map's depth.
    let long = [1u64, 2, 3, 4, 5, 6];
    let lid = store_stack(&m, &long, 0).unwrap();
    assert_eq!(stack_of(&m, lid), vec![1, 2, 3, 4]);
    assert_eq!(errno(store_stack(&m, &[], 0)), libc::EFAULT);
    assert_eq!(errno(store_stack(&m, &a, 1 << 11)), libc::EINVAL);
    // A different stack in the same bucket: EEXIST; REUSE replaces it.
    let bucket = |ips: &[u64]| {
        let words: Vec<u32> = ips
            .iter()
            .flat_map(|ip| [*ip as u32, (*ip >> 32) as u32])
            .collect();
        userbpf_runtime::maps::bloom::jhash2(&words, 0) & 63
    };
    assert_eq!(bucket(&a), id, "ids are the kernel's jhash2 buckets");
    let mut rng = Rng(7);
    let b = loop {
        let b = [rng.next(), rng.next()];
        if bucket(&b) == id {
            break b;
        }
    };
    assert_eq!(errno(store_stack(&m, &b, 0)), libc::EEXIST);
    assert_eq!(store_stack(&m, &b, BPF_F_REUSE_STACKID).unwrap(), id);
    assert_eq!(stack_of(&m, id), vec![b[0], b[1], 0, 0]);
    assert_eq!(errno(store_stack(&m, &a, 0)), libc::EEXIST);
    assert_eq!(store_stack(&m, &b, 0).unwrap(), id);
    let bucket_of_b = id;
    // Deletion.
    assert_eq!(errno(m.delete(&1024u32.to_ne_bytes())), libc::E2BIG);
    m.delete(&bucket_of_b.to_ne_bytes()).unwrap();
    assert_eq!(errno(m.delete(&bucket_of_b.to_ne_bytes())), libc::ENOENT);
    assert_eq!(
        errno(m.lookup(&bucket_of_b.to_ne_bytes(), &mut [0; 32], 0)),
        libc::ENOENT
    );
    assert_eq!(
        errno(m.update(&0u32.to_ne_bytes(), &[0; 32], 0)),
        libc::EINVAL
    );
    // Iteration visits stored ids in order.
    let mut ids = Vec::new();
    let mut key: Option<[u8; 4]> = None;
    let mut next = [0u8; 4];
    while m.next_key(key.as_ref().map(|k| &k[..]), &mut next).is_ok() {
        ids.push(u32::from_ne_bytes(next));
        key = Some(next);
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    assert!(ids.contains(&lid));
    assert!(!ids.contains(&id), "deleted above");

    // ENOMEM once max_entries stacks are stored.
    let small = stack_map(2, 3);
    let mut stored = 0;
    let mut saw_enomem = false;
    for i in 0..200u64 {
        match store_stack(&small, &[i, i * 7], 0) {
            Ok(_) => stored += 1,
            Err(MapError::Exists) => {}
            Err(MapError::NoMemory) => saw_enomem = true,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(stored, 3);
    assert!(saw_enomem);
    // FAST_CMP: any stack with the same hash in the bucket counts.
    let f = stack_map(2, 8);
    let fid = store_stack(&f, &[5, 6], 0).unwrap();
    assert_eq!(store_stack(&f, &[5, 6], BPF_F_FAST_STACK_CMP).unwrap(), fid);
}

static WALK_FRAMES: Mutex<Vec<u64>> = Mutex::new(Vec::new());

fn test_walker(_env: *mut HelperEnv, skip: u32, out: &mut [u64]) -> usize {
    let frames = WALK_FRAMES.lock().unwrap();
    let src = frames.get(skip as usize..).unwrap_or(&[]);
    let n = src.len().min(out.len());
    out[..n].copy_from_slice(&src[..n]);
    n
}

#[test]
fn get_stackid_helper_on_both_engines() {
    set_stack_walker(test_walker);
    *WALK_FRAMES.lock().unwrap() = vec![0xaaa, 0xbbb, 0xccc, 0xddd];
    for engine in ENGINES {
        let m = stack_map(8, 16);
        let prog = |flags: u64| {
            vm(
                &format!(
                    "lddw %r2, {:#x}\n lddw %r3, {flags:#x}\n call 27\n exit",
                    m.prog_addr()
                ),
                engine,
            )
        };
        let id = prog(BPF_F_USER_STACK).run(&mut [0u8; 8]).unwrap();
        assert!((id as i64) >= 0);
        assert_eq!(
            stack_of(&m, id as u32)[..5],
            [0xaaa, 0xbbb, 0xccc, 0xddd, 0]
        );
        // skip = 2
        let id2 = prog(BPF_F_USER_STACK | 2).run(&mut [0u8; 8]).unwrap();
        assert_eq!(stack_of(&m, id2 as u32)[..3], [0xccc, 0xddd, 0]);
        // Skipping everything, kernel stacks, bad flags: errors.
        assert_eq!(
            prog(BPF_F_USER_STACK | 4).run(&mut [0u8; 8]).unwrap() as i64,
            -14
        );
        assert_eq!(prog(0).run(&mut [0u8; 8]).unwrap() as i64, -14);
        assert_eq!(prog(1 << 12).run(&mut [0u8; 8]).unwrap() as i64, -22);
        let _ = stack_trace::PERF_MAX_STACK;
    }
}

// ---------------------------------------------------------------------
// Queue and stack
// ---------------------------------------------------------------------

#[test]
fn queue_and_stack_against_a_model() {
    let e = libc::EINVAL;
    assert_eq!(errno(create(spec(map_type::QUEUE, 4, 8, 4, 0))), e);
    assert_eq!(errno(create(spec(map_type::QUEUE, 0, 0, 4, 0))), e);
    assert_eq!(
        errno(create(spec(
            map_type::STACK,
            0,
            8,
            4,
            flags::BPF_F_NO_PREALLOC
        ))),
        e
    );
    for t in [map_type::QUEUE, map_type::STACK] {
        let m = create(spec(t, 0, 12, 16, 0)).unwrap();
        let mut model: VecDeque<[u8; 12]> = VecDeque::new();
        let mut rng = Rng(0x9e37_79b9 + u64::from(t));
        let mut v = [0u8; 12];
        assert_eq!(errno(m.delete(&[])), libc::EINVAL);
        assert_eq!(errno(m.next_key(None, &mut [])), libc::EINVAL);
        assert_eq!(errno(m.update(&[], &v, flags::BPF_NOEXIST)), libc::EINVAL);
        assert_eq!(errno(m.update(&[], &v, 3)), libc::EINVAL);
        for step in 0..20_000 {
            match rng.below(10) {
                0..=4 => {
                    let mut val = [0u8; 12];
                    val[..8].copy_from_slice(&rng.next().to_ne_bytes());
                    let fl = if rng.below(2) == 0 {
                        flags::BPF_ANY
                    } else {
                        flags::BPF_EXIST
                    };
                    let r = m.update(&[], &val, fl);
                    if model.len() == 16 {
                        if fl == flags::BPF_EXIST {
                            r.unwrap();
                            model.pop_front();
                            model.push_back(val);
                        } else {
                            assert_eq!(r, Err(MapError::Full), "step {step}");
                        }
                    } else {
                        r.unwrap();
                        model.push_back(val);
                    }
                }
                5..=7 => {
                    let r = m.lookup_and_delete(&[], &mut v, 0);
                    let want = if t == map_type::QUEUE {
                        model.pop_front()
                    } else {
                        model.pop_back()
                    };
                    match want {
                        Some(w) => {
                            r.unwrap();
                            assert_eq!(v, w, "step {step}");
                        }
                        None => assert_eq!(r, Err(MapError::NotFound)),
                    }
                }
                _ => {
                    let r = m.lookup(&[], &mut v, 0);
                    let want = if t == map_type::QUEUE {
                        model.front()
                    } else {
                        model.back()
                    };
                    match want {
                        Some(w) => {
                            r.unwrap();
                            assert_eq!(&v, w, "step {step}");
                        }
                        None => assert_eq!(r, Err(MapError::NotFound)),
                    }
                }
            }
        }
        assert!(m.downcast::<QueueStack>().is_some());
    }
}

#[test]
fn queue_helpers_on_both_engines() {
    for engine in ENGINES {
        let q = create(spec(map_type::STACK, 0, 8, 2, 0)).unwrap();
        let a = q.prog_addr();
        // push 1, 2; push 3 fails (E2BIG); push 3 with EXIST drops 1; pop -> 3;
        // peek -> 2; returns pop + 10 * peek + 100 * (-push_err)
        let p = vm(
            &format!(
                "mov %r6, 1\n stxdw [%r10-8], %r6\n lddw %r1, {a:#x}\n mov %r2, %r10\n add %r2, -8\n mov %r3, 0\n call 87\n\
                 mov %r6, 2\n stxdw [%r10-8], %r6\n lddw %r1, {a:#x}\n mov %r2, %r10\n add %r2, -8\n mov %r3, 0\n call 87\n\
                 mov %r6, 3\n stxdw [%r10-8], %r6\n lddw %r1, {a:#x}\n mov %r2, %r10\n add %r2, -8\n mov %r3, 0\n call 87\n\
                 mov %r9, 0\n sub %r9, %r0\n\
                 lddw %r1, {a:#x}\n mov %r2, %r10\n add %r2, -8\n mov %r3, 2\n call 87\n\
                 lddw %r1, {a:#x}\n mov %r2, %r10\n add %r2, -16\n call 88\n\
                 lddw %r1, {a:#x}\n mov %r2, %r10\n add %r2, -24\n call 89\n\
                 ldxdw %r0, [%r10-16]\n ldxdw %r1, [%r10-24]\n mul %r1, 10\n add %r0, %r1\n\
                 mul %r9, 100\n add %r0, %r9\n exit"
            ),
            engine,
        );
        assert_eq!(p.run(&mut [0u8; 8]).unwrap(), 3 + 20 + 700, "{engine}");
        // The queue now holds [1 dropped] 2: pop it; then empty: ENOENT and
        // the value zeroed.
        let p2 = vm(
            &format!(
                "lddw %r1, {a:#x}\n mov %r2, %r10\n add %r2, -8\n call 88\n\
                 mov %r6, -1\n stxdw [%r10-8], %r6\n\
                 lddw %r1, {a:#x}\n mov %r2, %r10\n add %r2, -8\n call 88\n\
                 ldxdw %r1, [%r10-8]\n add %r0, %r1\n exit"
            ),
            engine,
        );
        assert_eq!(p2.run(&mut [0u8; 8]).unwrap() as i64, -2, "{engine}");
        // Bloom filter through the same helpers; pop is unsupported.
        let b = create(MapSpec {
            map_extra: 3,
            ..spec(map_type::BLOOM_FILTER, 0, 8, 100, 0)
        })
        .unwrap();
        let ba = b.prog_addr();
        let p3 = vm(
            &format!(
                "mov %r6, 42\n stxdw [%r10-8], %r6\n lddw %r1, {ba:#x}\n mov %r2, %r10\n add %r2, -8\n mov %r3, 0\n call 87\n\
                 lddw %r1, {ba:#x}\n mov %r2, %r10\n add %r2, -8\n call 89\n mov %r7, %r0\n\
                 mov %r6, 43\n stxdw [%r10-8], %r6\n\
                 lddw %r1, {ba:#x}\n mov %r2, %r10\n add %r2, -8\n call 88\n mov %r8, %r0\n\
                 mov %r0, %r7\n lsh %r0, 8\n sub %r0, %r8\n exit"
            ),
            engine,
        );
        // peek(42) = 0, pop = -EOPNOTSUPP (95) -> 0 - (-95) = 95
        assert_eq!(p3.run(&mut [0u8; 8]).unwrap(), 95, "{engine}");
    }
}

// ---------------------------------------------------------------------
// Bloom filter
// ---------------------------------------------------------------------

#[test]
fn bloom_filter_against_a_model() {
    let e = libc::EINVAL;
    assert_eq!(errno(create(spec(map_type::BLOOM_FILTER, 4, 8, 10, 0))), e);
    assert_eq!(errno(create(spec(map_type::BLOOM_FILTER, 0, 0, 10, 0))), e);
    assert_eq!(
        errno(create(MapSpec {
            map_extra: 16,
            ..spec(map_type::BLOOM_FILTER, 0, 8, 10, 0)
        })),
        e
    );
    for (value_size, hashes, zero_seed) in [(8u32, 3u64, false), (5, 0, true), (16, 7, false)] {
        let m = create(MapSpec {
            map_extra: hashes,
            ..spec(
                map_type::BLOOM_FILTER,
                0,
                value_size,
                1000,
                if zero_seed { flags::BPF_F_ZERO_SEED } else { 0 },
            )
        })
        .unwrap();
        let mut rng = Rng(0x1234 + u64::from(value_size));
        let mut model = HashSet::new();
        let val =
            |rng: &mut Rng| -> Vec<u8> { (0..value_size).map(|_| rng.below(256) as u8).collect() };
        for _ in 0..1000 {
            let v = val(&mut rng);
            m.update(&[], &v, 0).unwrap();
            model.insert(v);
        }
        assert_eq!(errno(m.update(&[], &val(&mut rng), flags::BPF_EXIST)), e);
        for v in &model {
            let mut b = v.clone();
            m.lookup(&[], &mut b, 0).unwrap();
        }
        let mut fp = 0;
        let trials = 10_000;
        for _ in 0..trials {
            let mut v = val(&mut rng);
            if model.contains(&v) {
                continue;
            }
            if m.lookup(&[], &mut v, 0).is_ok() {
                fp += 1;
            }
        }
        assert!(fp * 10 < trials, "false positives {fp}/{trials}");
        assert_eq!(errno(m.delete(&[])), libc::EOPNOTSUPP);
        assert_eq!(errno(m.next_key(None, &mut [])), libc::EOPNOTSUPP);
        assert_eq!(
            errno(m.lookup_and_delete(&[], &mut [0; 16], 0)),
            libc::EOPNOTSUPP
        );
        assert!(m.downcast::<Bloom>().is_some());
    }
    // A filter seen from another mapping of the same file agrees.
    let m = create(spec(map_type::BLOOM_FILTER, 0, 4, 64, 0)).unwrap();
    m.update(&[], &[1, 2, 3, 4], 0).unwrap();
    let path = proc_path(m.raw_fd());
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    // Same file: Map::open gives the already-mapped map back.
    let again = Map::open(std::os::fd::AsFd::as_fd(&file)).unwrap();
    again.lookup(&[], &mut [1, 2, 3, 4], 0).unwrap();
}

// ---------------------------------------------------------------------
// LPM trie
// ---------------------------------------------------------------------

fn lpm_key(plen: u32, data: &[u8]) -> Vec<u8> {
    let mut k = plen.to_ne_bytes().to_vec();
    k.extend_from_slice(data);
    k
}

fn lpm_iter(m: &Map) -> Vec<(u32, Vec<u8>)> {
    let ks = m.spec().key_size as usize;
    let mut out = Vec::new();
    let mut key: Option<Vec<u8>> = None;
    let mut next = vec![0u8; ks];
    while m.next_key(key.as_deref(), &mut next).is_ok() {
        out.push((
            u32::from_ne_bytes(next[..4].try_into().unwrap()),
            next[4..].to_vec(),
        ));
        key = Some(next.clone());
        assert!(out.len() <= 10_000, "iteration does not end");
    }
    out
}

#[test]
fn lpm_trie_follows_the_kernel() {
    let e = libc::EINVAL;
    assert_eq!(
        errno(create(spec(map_type::LPM_TRIE, 8, 4, 16, 0))),
        e,
        "needs NO_PREALLOC"
    );
    let np = flags::BPF_F_NO_PREALLOC;
    assert_eq!(errno(create(spec(map_type::LPM_TRIE, 4, 4, 16, np))), e);
    assert_eq!(
        errno(create(spec(map_type::LPM_TRIE, 4 + 257, 4, 16, np))),
        e
    );
    assert_eq!(errno(create(spec(map_type::LPM_TRIE, 8, 0, 16, np))), e);
    // The example of the kernel's lpm_trie.c and its get_next_key order.
    let m = create(spec(map_type::LPM_TRIE, 8, 4, 16, np)).unwrap();
    let ins = |plen: u32, ip: [u8; 4], v: u32| {
        m.update(&lpm_key(plen, &ip), &v.to_ne_bytes(), 0).unwrap()
    };
    ins(16, [192, 168, 0, 0], 1);
    ins(24, [192, 168, 0, 0], 2);
    ins(24, [192, 168, 1, 0], 3);
    ins(24, [192, 168, 128, 0], 4);
    assert_eq!(
        lpm_iter(&m),
        vec![
            (24, vec![192, 168, 0, 0]),
            (24, vec![192, 168, 1, 0]),
            (24, vec![192, 168, 128, 0]),
            (16, vec![192, 168, 0, 0]),
        ]
    );
    let look = |ip: [u8; 4]| {
        let mut v = [0u8; 4];
        m.lookup(&lpm_key(32, &ip), &mut v, 0)
            .map(|()| u32::from_ne_bytes(v))
    };
    assert_eq!(look([192, 168, 1, 77]), Ok(3));
    assert_eq!(look([192, 168, 2, 1]), Ok(1));
    assert_eq!(look([192, 168, 128, 9]), Ok(4));
    assert_eq!(look([10, 0, 0, 1]), Err(MapError::NotFound));
    assert_eq!(errno(m.update(&lpm_key(33, &[0; 4]), &[0; 4], 0)), e);
    assert_eq!(errno(m.update(&lpm_key(8, &[10, 0, 0, 0]), &[0; 4], 3)), e);
    assert_eq!(
        errno(m.update(&lpm_key(8, &[10, 0, 0, 0]), &[0; 4], flags::BPF_EXIST)),
        libc::ENOENT
    );
    assert_eq!(
        errno(m.update(&lpm_key(16, &[192, 168, 0, 0]), &[0; 4], flags::BPF_NOEXIST)),
        libc::EEXIST
    );
    assert_eq!(
        errno(m.delete(&lpm_key(20, &[192, 168, 0, 0]))),
        libc::ENOENT
    );
    m.delete(&lpm_key(16, &[192, 168, 0, 0])).unwrap();
    assert_eq!(look([192, 168, 2, 1]), Err(MapError::NotFound));
    // Full: ENOSPC (the kernel's errno), replacing still works.
    let f = create(spec(map_type::LPM_TRIE, 8, 4, 2, np)).unwrap();
    f.update(&lpm_key(8, &[1, 2, 3, 4]), &[1, 0, 0, 0], 0)
        .unwrap();
    f.update(&lpm_key(16, &[1, 2, 3, 4]), &[1, 0, 0, 0], 0)
        .unwrap();
    assert_eq!(
        errno(f.update(&lpm_key(24, &[1, 2, 3, 4]), &[1, 0, 0, 0], 0)),
        libc::ENOSPC
    );
    f.update(&lpm_key(16, &[1, 2, 3, 4]), &[2, 0, 0, 0], 0)
        .unwrap();
    assert_eq!(
        lpm_iter(&f),
        vec![(16, vec![1, 2, 3, 4]), (8, vec![1, 2, 3, 4])],
        "the order bpftool shows for the kernel's map"
    );
    // Program-side lookup returns a pointer to the longest match's value.
    // SAFETY: an 8-byte key.
    let v = unsafe { m.ops().prog_lookup(lpm_key(32, &[192, 168, 1, 5]).as_ptr()) };
    assert!(!v.is_null());
    // SAFETY: the value is 4 bytes.
    assert_eq!(unsafe { std::ptr::read_unaligned(v as *const u32) }, 3);
    assert_eq!(m.ops().prog_value_size(), 4);
}

/// The reference: a map from (prefixlen, masked data) to value.
fn masked(data: [u8; 2], plen: u32) -> [u8; 2] {
    let bits = u16::from_be_bytes(data);
    let mask = if plen == 0 {
        0
    } else {
        u16::MAX << (16 - plen)
    };
    (bits & mask).to_be_bytes()
}

#[test]
fn lpm_trie_against_a_model() {
    let max = 64u32;
    let m = create(spec(
        map_type::LPM_TRIE,
        6,
        4,
        max,
        flags::BPF_F_NO_PREALLOC,
    ))
    .unwrap();
    let mut model: BTreeMap<(u32, [u8; 2]), u32> = BTreeMap::new();
    let mut rng = Rng(0xfeed_beef);
    let tops = [0x00u8, 0x80, 0xc0, 0x0a, 0xff];
    let rand_data = |rng: &mut Rng| {
        [
            tops[rng.below(5) as usize] ^ (rng.below(4) as u8),
            rng.below(256) as u8,
        ]
    };
    for step in 0..20_000u32 {
        match rng.below(10) {
            0..=4 => {
                let plen = rng.below(17) as u32;
                let data = masked(rand_data(&mut rng), plen);
                let fl = rng.below(3);
                let r = m.update(&lpm_key(plen, &data), &step.to_ne_bytes(), fl);
                let exists = model.contains_key(&(plen, data));
                let want = if fl == flags::BPF_EXIST && !exists {
                    Err(libc::ENOENT)
                } else if fl == flags::BPF_NOEXIST && exists {
                    Err(libc::EEXIST)
                } else if !exists && model.len() as u32 == max {
                    Err(libc::ENOSPC)
                } else {
                    model.insert((plen, data), step);
                    Ok(())
                };
                assert_eq!(r.map_err(|e| e.errno()), want, "step {step} update /{plen}");
            }
            5..=6 => {
                let (plen, data) = if !model.is_empty() && rng.below(2) == 0 {
                    let i = rng.below(model.len() as u64) as usize;
                    *model.keys().nth(i).unwrap()
                } else {
                    let plen = rng.below(17) as u32;
                    (plen, masked(rand_data(&mut rng), plen))
                };
                let r = m.delete(&lpm_key(plen, &data));
                let want = if model.remove(&(plen, data)).is_some() {
                    Ok(())
                } else {
                    Err(libc::ENOENT)
                };
                assert_eq!(r.map_err(|e| e.errno()), want, "step {step} delete");
            }
            _ => {
                let data = rand_data(&mut rng);
                let qlen = if rng.below(3) == 0 {
                    rng.below(17) as u32
                } else {
                    16
                };
                let want = (0..=qlen)
                    .rev()
                    .find_map(|p| model.get(&(p, masked(data, p))).copied());
                let mut v = [0u8; 4];
                let got = m
                    .lookup(&lpm_key(qlen, &data), &mut v, 0)
                    .ok()
                    .map(|()| u32::from_ne_bytes(v));
                assert_eq!(got, want, "step {step} lookup {data:?}/{qlen}");
            }
        }
        if step % 500 == 0 {
            let it = lpm_iter(&m);
            let keys: BTreeMap<(u32, [u8; 2]), ()> =
                it.iter().map(|(p, d)| ((*p, [d[0], d[1]]), ())).collect();
            assert_eq!(keys.len(), it.len(), "a key seen twice");
            assert!(
                keys.keys().eq(model.keys()),
                "step {step}: iteration differs"
            );
            // Post-order: a prefix comes after every longer prefix it contains.
            for (i, (pa, da)) in it.iter().enumerate() {
                for (pb, db) in &it[..i] {
                    let (a, b) = ([da[0], da[1]], [db[0], db[1]]);
                    assert!(
                        !(pb < pa && masked(a, *pb) == b),
                        "step {step}: {b:?}/{pb} before {a:?}/{pa}"
                    );
                }
            }
        }
    }
}
