//! `ring_buffer__*`, `ring__*` and `perf_buffer__*` through their C entry
//! points (called from Rust through the rlib), on maps made with the
//! runtime, fed by producer threads and by a producer child process (this
//! test binary re-run with `BUFFERS_CHILD=<test name>`; the child tests
//! return at once in a normal run) that reaches the maps through
//! `/proc/<pid>/fd`.
//!
//! `tests/buffers.c` is the same API from C on maps made with
//! `bpf_map_create` and fed by a program run with `bpf_prog_test_run_opts`;
//! as root it also runs on the system libbpf and the kernel, and the two
//! outputs are compared.

mod common;

use std::collections::HashMap;
use std::ffi::{c_int, c_void};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bpf::cabi;
use bpf::implemented::*;
use userbpf_runtime::ids::{next_id, IdKind};
use userbpf_runtime::maps::perf_event_array::{perf_event_output_raw, BPF_F_CURRENT_CPU};
use userbpf_runtime::maps::ringbuf::{self, RingBuf};
use userbpf_runtime::maps::{map_type, Map, MapSpec};
use userbpf_runtime::shm::futex;

use common::{libbpf_so, run};

const CHILD_ENV: &str = "BUFFERS_CHILD";

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn create(t: u32, key: u32, value: u32, max: u32) -> Arc<Map> {
    let spec = MapSpec {
        map_type: t,
        key_size: key,
        value_size: value,
        max_entries: max,
        name: "buffers".into(),
        ..MapSpec::default()
    };
    Map::create(&spec, next_id(IdKind::Map)).unwrap()
}

fn ring_map(size: u32) -> Arc<Map> {
    create(map_type::RINGBUF, 0, 0, size)
}

fn perf_map(n: u32) -> Arc<Map> {
    create(map_type::PERF_EVENT_ARRAY, 4, 4, n)
}

fn rb(map: &Map) -> &RingBuf {
    map.downcast::<RingBuf>().unwrap()
}

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

fn online_cpus() -> Vec<u32> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap();
    let mut cpus = Vec::new();
    for part in text.trim().split(',') {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        cpus.extend(lo.parse::<u32>().unwrap()..=hi.parse::<u32>().unwrap());
    }
    cpus
}

fn pin_to(cpu: u32) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET and sched_setaffinity
    // only touch it and the calling thread (pid 0).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
            0
        );
    }
}

/// A record: producer id, sequence number, then `seq as u8` filler.
fn record(producer: u32, seq: u32) -> Vec<u8> {
    let len = 8 + (seq % 5) as usize * 8 + (seq % 3) as usize;
    let mut v = vec![seq as u8; len];
    v[..4].copy_from_slice(&producer.to_ne_bytes());
    v[4..8].copy_from_slice(&seq.to_ne_bytes());
    v
}

fn parse(data: &[u8]) -> (u32, u32) {
    (
        u32::from_ne_bytes(data[..4].try_into().unwrap()),
        u32::from_ne_bytes(data[4..8].try_into().unwrap()),
    )
}

/// Sends a raw pointer to another thread (the buffers are used by one
/// thread at a time, as libbpf's).
struct SendPtr<T>(*mut T);
// SAFETY: only used to hand a buffer to one other thread at a time.
unsafe impl<T> Send for SendPtr<T> {}

// ---------------------------------------------------------------------------
// Ring buffer callbacks
// ---------------------------------------------------------------------------

/// What ring buffer callbacks record.
#[derive(Default)]
struct Seen {
    records: Vec<Vec<u8>>,
    /// Return this for the record with this sequence number.
    fail_at: Option<(u32, c_int)>,
    /// Next expected sequence number per producer (stream checks).
    next: HashMap<u32, u32>,
    /// Count only (stream tests).
    count_only: bool,
    count: u64,
}

unsafe extern "C" fn on_sample(ctx: *mut c_void, data: *mut c_void, size: usize) -> c_int {
    // SAFETY: ctx is the test's `Seen`; data holds size bytes.
    let (seen, data) = unsafe {
        (
            &mut *ctx.cast::<Seen>(),
            std::slice::from_raw_parts(data.cast::<u8>(), size),
        )
    };
    seen.count += 1;
    if seen.count_only {
        let (p, seq) = parse(data);
        let next = seen.next.entry(p).or_insert(0);
        assert_eq!(seq, *next, "producer {p}: out of order or lost");
        assert_eq!(data, record(p, seq).as_slice(), "producer {p} record {seq}");
        *next += 1;
        return 0;
    }
    seen.records.push(data.to_vec());
    match seen.fail_at {
        Some((seq, ret)) if data.len() >= 8 && parse(data).1 == seq => ret,
        _ => 0,
    }
}

fn output(map: &Map, producer: u32, seq: u32) {
    rb(map).output(&record(producer, seq), 0).unwrap();
}

// ---------------------------------------------------------------------------
// Ring buffer: a thread and a child process produce, the C API consumes
// ---------------------------------------------------------------------------

const RB_CHILD: &str = "child_ringbuf_producer";
const RB_N: u32 = 20_000;

#[test]
fn child_ringbuf_producer() {
    if !is_child(RB_CHILD) {
        return;
    }
    let map = Map::open_path(Path::new(&std::env::var("RB_MAP").unwrap())).unwrap();
    let r = rb(&map);
    for seq in 0..RB_N {
        let rec = record(1, seq);
        // Every third record through reserve/submit, the others output.
        while if seq % 3 == 0 {
            r.reserve(rec.len() as u64)
                .map(|s| {
                    // SAFETY: a live reservation of rec.len() bytes.
                    unsafe {
                        std::ptr::copy_nonoverlapping(rec.as_ptr(), s.as_ptr(), rec.len());
                        ringbuf::submit(s.as_ptr(), 0);
                    }
                })
                .is_none()
        } else {
            r.output(&rec, 0).is_err()
        } {
            std::thread::yield_now();
        }
    }
}

#[test]
fn ringbuf_thread_and_process_producers() {
    let map = ring_map(16 * 1024);
    let mut seen = Seen {
        count_only: true,
        ..Seen::default()
    };
    // SAFETY: a ring buffer map fd, a valid callback and context.
    let rbuf = unsafe {
        ring_buffer__new(
            map.raw_fd(),
            Some(on_sample),
            (&raw mut seen).cast(),
            null(),
        )
    };
    assert!(!rbuf.is_null(), "ring_buffer__new: errno {}", errno());
    let wakes0 = futex::wake_syscalls();
    let child = spawn_child(RB_CHILD, &[("RB_MAP", proc_path(map.raw_fd()))]);
    let producer_map = map.clone();
    let thread = std::thread::spawn(move || {
        for seq in 0..RB_N {
            let rec = record(0, seq);
            while rb(&producer_map).output(&rec, 0).is_err() {
                std::thread::yield_now();
            }
        }
    });
    let start = Instant::now();
    let mut total = 0u64;
    let (mut polls, mut empty_polls) = (0u32, 0u32);
    while seen.next.get(&0) != Some(&RB_N) || seen.next.get(&1) != Some(&RB_N) {
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "stuck: {:?}",
            seen.next
        );
        // SAFETY: a live buffer.
        let n = unsafe { ring_buffer__poll(rbuf, 1000) };
        assert!(n >= 0, "poll: {n}");
        polls += 1;
        if n == 0 {
            empty_polls += 1;
        }
        total += n as u64;
    }
    thread.join().unwrap();
    finish_child(child);
    assert_eq!(total, 2 * u64::from(RB_N), "poll's counts add up");
    assert_eq!(seen.count, 2 * u64::from(RB_N));
    // The ring (16 KiB) wrapped many times.
    // SAFETY: a live buffer; ring 0 exists.
    let r = unsafe { ring_buffer__ring(rbuf, 0) };
    // SAFETY: a live ring.
    assert!(unsafe { ring__producer_pos(r) } > 20 * 16 * 1024);
    // SAFETY: as above.
    assert_eq!(unsafe { ring__avail_data_size(r) }, 0);
    let wakes = futex::wake_syscalls() - wakes0;
    // With the consumer not waiting, producing makes no wake syscall at
    // all (how many wakes the phase above needed depends on scheduling).
    // The counter is process-wide and other tests of this binary run in
    // parallel, so a stray wake of theirs can land in a round: one clean
    // round of three is required (a wake per event would spoil all three).
    let mut seq = 0u32;
    let clean = (0..3).any(|_| {
        let idle0 = futex::wake_syscalls();
        for _ in 0..1000 {
            rb(&map).output(&record(2, seq), 0).unwrap();
            seq += 1;
            if seq.is_multiple_of(100) {
                // SAFETY: a live buffer; consumes without waiting.
                assert!(unsafe { ring_buffer__consume(rbuf) } >= 0);
            }
        }
        futex::wake_syscalls() == idle0
    });
    assert!(clean, "wakes while the consumer was not waiting");
    println!(
        "{polls} polls ({empty_polls} returned 0) for {total} records; \
         {wakes} wake syscalls from the producer thread"
    );
    // SAFETY: a live buffer, freed once.
    unsafe { ring_buffer__free(rbuf) };
}

// ---------------------------------------------------------------------------
// Ring buffer: the API's contracts
// ---------------------------------------------------------------------------

#[test]
fn ringbuf_api_contracts() {
    bpf::print::set_print(None);
    let map = ring_map(4096);
    let fd = map.raw_fd();
    let mut seen = Seen::default();
    let ctx: *mut c_void = (&raw mut seen).cast();

    // Errors: bad fd, wrong map type, the opts sz rule.
    // SAFETY (these calls): plain values, NULL or valid opts.
    unsafe {
        assert!(ring_buffer__new(-1, Some(on_sample), ctx, null()).is_null());
        assert_eq!(errno(), libc::EBADFD);
        let arr = create(map_type::ARRAY, 4, 4, 1);
        assert!(ring_buffer__new(arr.raw_fd(), Some(on_sample), ctx, null()).is_null());
        assert_eq!(errno(), libc::EINVAL);
        let perf = perf_map(1);
        assert!(ring_buffer__new(perf.raw_fd(), Some(on_sample), ctx, null()).is_null());
        assert_eq!(errno(), libc::EINVAL);
        let small = cabi::ring_buffer_opts { sz: 4 };
        assert!(ring_buffer__new(fd, Some(on_sample), ctx, &small).is_null());
        assert_eq!(errno(), libc::EINVAL);
        let newer: [u64; 2] = [16, 1];
        assert!(ring_buffer__new(fd, Some(on_sample), ctx, newer.as_ptr().cast()).is_null());
        assert_eq!(errno(), libc::EINVAL);
        let newer_zero: [u64; 2] = [16, 0];
        let ok = ring_buffer__new(fd, Some(on_sample), ctx, newer_zero.as_ptr().cast());
        assert!(!ok.is_null());
        ring_buffer__free(ok);
        ring_buffer__free(null_mut());
    }

    // SAFETY: valid fd, callback and context.
    let rbuf = unsafe { ring_buffer__new(fd, Some(on_sample), ctx, null()) };
    assert!(!rbuf.is_null());
    // SAFETY (the rest of the test): `rbuf` and its rings are live; the
    // callbacks' context outlives them.
    unsafe {
        // Accessors.
        let r = ring_buffer__ring(rbuf, 0);
        assert!(!r.is_null());
        assert!(ring_buffer__ring(rbuf, 1).is_null());
        assert_eq!(errno(), libc::ERANGE);
        assert_eq!(ring__size(r), 4096);
        assert_eq!(ring__map_fd(r), fd);
        assert_eq!(ring__avail_data_size(r), 0);
        output(&map, 0, 16); // 8 + 8 + 1 bytes: a 32-byte record
        assert_eq!(ring__avail_data_size(r), 32);
        assert_eq!(ring__producer_pos(r) - ring__consumer_pos(r), 32);

        // consume: everything, in order; the callback sees the data.
        for seq in 17..20 {
            output(&map, 0, seq);
        }
        assert_eq!(ring_buffer__consume(rbuf), 4);
        assert_eq!(ring__consumer_pos(r), ring__producer_pos(r));
        let want: Vec<Vec<u8>> = (16..20).map(|s| record(0, s)).collect();
        assert_eq!(seen.records, want);
        assert_eq!(ring_buffer__consume(rbuf), 0);

        // A negative callback value stops after its record and is returned.
        seen.records.clear();
        seen.fail_at = Some((1, -42));
        for seq in 0..3 {
            output(&map, 0, seq);
        }
        assert_eq!(ring_buffer__consume(rbuf), -42);
        assert_eq!(errno(), 42);
        assert_eq!(seen.records.len(), 2);
        seen.fail_at = None;
        assert_eq!(ring_buffer__consume(rbuf), 1);
        assert_eq!(seen.records[2], record(0, 2));
        // The same through poll, with data waiting.
        seen.fail_at = Some((5, -7));
        output(&map, 0, 5);
        assert_eq!(ring_buffer__poll(rbuf, 1000), -7);
        assert_eq!(errno(), 7);
        seen.fail_at = None;

        // Discarded records are skipped (and not counted).
        let s = rb(&map).reserve(8).unwrap();
        ringbuf::discard(s.as_ptr(), 0);
        output(&map, 0, 6);
        seen.records.clear();
        assert_eq!(ring_buffer__consume(rbuf), 1);
        assert_eq!(seen.records, vec![record(0, 6)]);

        // consume_n / ring__consume_n / ring__consume.
        for seq in 0..6 {
            output(&map, 0, seq);
        }
        assert_eq!(ring_buffer__consume_n(rbuf, 2), 2);
        assert_eq!(ring__consume_n(r, 1), 1);
        assert_eq!(ring__consume(r), 3);
        assert_eq!(ring_buffer__consume_n(rbuf, 5), 0);

        // poll: times out after the timeout, without data, asleep.
        let t = Instant::now();
        let cpu0 = thread_cpu_time();
        assert_eq!(ring_buffer__poll(rbuf, 100), 0);
        let cpu = thread_cpu_time() - cpu0;
        let waited = t.elapsed();
        assert!(
            cpu < Duration::from_millis(10),
            "an empty poll used {cpu:?} of CPU"
        );
        assert!(
            waited >= Duration::from_millis(95) && waited < Duration::from_secs(2),
            "{waited:?}"
        );
        assert_eq!(ring_buffer__poll(rbuf, 0), 0);
        // poll: sleeps until a record comes.
        let m = map.clone();
        let producer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            output(&m, 0, 7);
        });
        let t = Instant::now();
        assert_eq!(ring_buffer__poll(rbuf, 10_000), 1);
        let waited = t.elapsed();
        producer.join().unwrap();
        assert!(
            waited >= Duration::from_millis(80) && waited < Duration::from_secs(5),
            "{waited:?}"
        );

        // A second ring, with its own callback context.
        let map2 = ring_map(8192);
        let mut seen2 = Seen::default();
        assert_eq!(
            ring_buffer__add(rbuf, -1, Some(on_sample), (&raw mut seen2).cast()),
            -libc::EBADFD
        );
        assert_eq!(
            ring_buffer__add(
                rbuf,
                map2.raw_fd(),
                Some(on_sample),
                (&raw mut seen2).cast()
            ),
            0
        );
        assert_eq!(ring__size(ring_buffer__ring(rbuf, 1)), 8192);
        let m2 = map2.clone();
        let producer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            output(&m2, 2, 0);
        });
        assert_eq!(ring_buffer__poll(rbuf, 10_000), 1);
        producer.join().unwrap();
        assert_eq!(seen2.records, vec![record(2, 0)]);
        output(&map, 0, 8);
        output(&map2, 2, 1);
        assert_eq!(ring_buffer__poll(rbuf, 1000), 2);

        // The epoll fd: readable when data arrives, until it is consumed.
        let epfd = ring_buffer__epoll_fd(rbuf);
        assert!(epfd >= 0);
        assert_eq!(ring_buffer__epoll_fd(rbuf), epfd);
        assert_eq!(epoll_wait(epfd, 0), 0);
        let m2 = map2.clone();
        let producer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            output(&m2, 2, 2);
        });
        assert_eq!(epoll_wait(epfd, 10_000), 1);
        producer.join().unwrap();
        assert_eq!(epoll_wait(epfd, 0), 1, "level-triggered until consumed");
        // Nested in the application's own epoll set.
        let outer = libc::epoll_create1(libc::EPOLL_CLOEXEC);
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: 77,
        };
        assert_eq!(
            libc::epoll_ctl(outer, libc::EPOLL_CTL_ADD, epfd, &mut ev),
            0
        );
        assert_eq!(epoll_wait(outer, 1000), 1);
        assert_eq!(ring_buffer__consume(rbuf), 1);
        assert_eq!(epoll_wait(epfd, 0), 0, "not readable once consumed");
        assert_eq!(epoll_wait(outer, 0), 0);
        // A ring added after the fd was handed out wakes it too.
        let map3 = ring_map(4096);
        let mut seen3 = Seen::default();
        assert_eq!(
            ring_buffer__add(
                rbuf,
                map3.raw_fd(),
                Some(on_sample),
                (&raw mut seen3).cast()
            ),
            0
        );
        output(&map3, 3, 0);
        assert_eq!(epoll_wait(outer, 10_000), 1);
        assert_eq!(ring__consume(ring_buffer__ring(rbuf, 2)), 1);
        assert_eq!(epoll_wait(epfd, 0), 0);
        assert_eq!(seen3.records, vec![record(3, 0)]);
        libc::close(outer);

        ring_buffer__free(rbuf);
    }
}

/// CPU time of the calling thread.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer.
    assert_eq!(
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) },
        0
    );
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// `epoll_wait` for one event: the count (or -errno).
fn epoll_wait(epfd: c_int, timeout_ms: c_int) -> c_int {
    let mut ev = libc::epoll_event { events: 0, u64: 0 };
    // SAFETY: one valid event slot.
    let n = unsafe { libc::epoll_wait(epfd, &mut ev, 1, timeout_ms) };
    if n < 0 {
        -errno()
    } else {
        n
    }
}

// ---------------------------------------------------------------------------
// Ring buffer: signals, dead producers
// ---------------------------------------------------------------------------

static SIGNALS: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_signal(_: c_int) {
    SIGNALS.fetch_add(1, Ordering::SeqCst);
}

fn install_handler(sig: c_int, restart: bool) {
    // SAFETY: a zeroed sigaction with a plain handler is valid.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_signal as *const () as usize;
        sa.sa_flags = if restart { libc::SA_RESTART } else { 0 };
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(sig, &sa, null_mut()), 0);
    }
}

/// Polls `rbuf` forever in a thread, signals it, returns poll's value.
fn poll_interrupted(rbuf: *mut cabi::ring_buffer, sig: c_int) -> c_int {
    let p = SendPtr(rbuf);
    let started = Arc::new(AtomicBool::new(false));
    let s2 = started.clone();
    let t = std::thread::spawn(move || {
        let p = p;
        s2.store(true, Ordering::SeqCst);
        // SAFETY: the buffer is live and used by this thread only now.
        unsafe { ring_buffer__poll(p.0, -1) }
    });
    while !started.load(Ordering::SeqCst) {
        std::thread::yield_now();
    }
    std::thread::sleep(Duration::from_millis(100));
    let before = SIGNALS.load(Ordering::SeqCst);
    use std::os::unix::thread::JoinHandleExt;
    let start = Instant::now();
    // Signal until poll returns: a signal that came before the thread
    // went to sleep is not lost for the test.
    while !t.is_finished() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "poll not interrupted"
        );
        // SAFETY: the thread has not been joined, so its pthread_t is valid.
        unsafe { libc::pthread_kill(t.as_pthread_t(), sig) };
        std::thread::sleep(Duration::from_millis(100));
    }
    let ret = t.join().unwrap();
    assert!(SIGNALS.load(Ordering::SeqCst) > before);
    ret
}

#[test]
fn ringbuf_poll_is_interrupted_by_signals() {
    let m1 = ring_map(4096);
    let m2 = ring_map(4096);
    // SAFETY: valid fds; no callback is needed (nothing is produced).
    unsafe {
        // One ring: a handler installed with SA_RESTART (glibc's signal())
        // still interrupts the wait, as it interrupts epoll_wait.
        let one = ring_buffer__new(m1.raw_fd(), Some(on_sample), null_mut(), null());
        install_handler(libc::SIGUSR1, true);
        assert_eq!(poll_interrupted(one, libc::SIGUSR1), -libc::EINTR);
        ring_buffer__free(one);
        // Two rings (futex_waitv): a handler without SA_RESTART.
        let two = ring_buffer__new(m1.raw_fd(), Some(on_sample), null_mut(), null());
        assert_eq!(
            ring_buffer__add(two, m2.raw_fd(), Some(on_sample), null_mut()),
            0
        );
        install_handler(libc::SIGUSR2, false);
        assert_eq!(poll_interrupted(two, libc::SIGUSR2), -libc::EINTR);
        ring_buffer__free(two);
    }
}

#[test]
fn ringbuf_poll_gets_past_a_dead_producer() {
    let map = ring_map(4096);
    let mut seen = Seen::default();
    // SAFETY: valid fd, callback and context.
    let rbuf = unsafe {
        ring_buffer__new(
            map.raw_fd(),
            Some(on_sample),
            (&raw mut seen).cast(),
            null(),
        )
    };
    assert!(!rbuf.is_null());
    // A thread reserves and exits without committing; a record follows.
    let m = map.clone();
    std::thread::spawn(move || {
        let _abandoned = rb(&m).reserve(16).unwrap();
    })
    .join()
    .unwrap();
    output(&map, 0, 1);
    // SAFETY: a live buffer.
    unsafe {
        assert_eq!(ring_buffer__consume(rbuf), 0, "stopped at the BUSY record");
        let t = Instant::now();
        assert_eq!(ring_buffer__poll(rbuf, 10_000), 1);
        assert!(t.elapsed() < Duration::from_secs(5));
        ring_buffer__free(rbuf);
    }
    assert_eq!(seen.records, vec![record(0, 1)]);
}

// ---------------------------------------------------------------------------
// Perf buffer callbacks
// ---------------------------------------------------------------------------

#[derive(Default)]
struct PerfSeen {
    /// (cpu, data) of each sample.
    samples: Vec<(c_int, Vec<u8>)>,
    lost: u64,
    /// Stream mode: next expected sequence number per producer, and the
    /// CPU each producer writes from.
    stream: bool,
    next: HashMap<u32, u32>,
    cpu_of: HashMap<u32, c_int>,
    /// Raw mode: (type, size) of each record, and what to return.
    raw: Vec<(u32, u16)>,
    raw_ret: Vec<c_int>,
}

unsafe extern "C" fn on_perf_sample(ctx: *mut c_void, cpu: c_int, data: *mut c_void, size: u32) {
    // SAFETY: ctx is the test's PerfSeen; data holds size bytes.
    let (seen, data) = unsafe {
        (
            &mut *ctx.cast::<PerfSeen>(),
            std::slice::from_raw_parts(data.cast::<u8>(), size as usize),
        )
    };
    if seen.stream {
        let (p, seq) = parse(data);
        let next = seen.next.entry(p).or_insert(0);
        assert_eq!(seq, *next, "producer {p}: out of order or lost");
        assert_eq!(seen.cpu_of.get(&p), Some(&cpu), "producer {p}'s CPU");
        *next += 1;
        return;
    }
    seen.samples.push((cpu, data.to_vec()));
}

unsafe extern "C" fn on_perf_lost(ctx: *mut c_void, _cpu: c_int, cnt: u64) {
    // SAFETY: ctx is the test's PerfSeen.
    unsafe { &mut *ctx.cast::<PerfSeen>() }.lost += cnt;
}

unsafe extern "C" fn on_perf_event(
    ctx: *mut c_void,
    _cpu: c_int,
    e: *mut cabi::perf_event_header,
) -> c_int {
    // SAFETY: ctx is the test's PerfSeen; e points at a whole record.
    let seen = unsafe { &mut *ctx.cast::<PerfSeen>() };
    let p = e.cast::<u8>();
    // SAFETY: struct perf_event_header { u32 type; u16 misc; u16 size; }.
    let (ty, size) = unsafe { (p.cast::<u32>().read(), p.add(6).cast::<u16>().read()) };
    seen.raw.push((ty, size));
    if seen.raw_ret.is_empty() {
        cabi::LIBBPF_PERF_EVENT_CONT
    } else {
        seen.raw_ret.remove(0)
    }
}

/// `bpf_perf_event_output` as a program would call it.
fn perf_output(map: &Map, flags: u64, data: &[u8]) -> Result<(), i32> {
    // SAFETY: a valid slice.
    pinned_to_index(flags, || unsafe {
        perf_event_output_raw(map, flags, data.as_ptr(), data.len() as u64)
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

/// A 40-byte perf record of `producer`, `seq`.
fn perf_record(producer: u32, seq: u32) -> [u8; 40] {
    let mut v = [0u8; 40];
    v[..4].copy_from_slice(&producer.to_ne_bytes());
    v[4..8].copy_from_slice(&seq.to_ne_bytes());
    v
}

/// Outputs `n` records from the CPU `cpu`, retrying on ENOSPC; the number
/// of failed attempts (each one a lost record for the consumer).
fn perf_stream(map: &Map, producer: u32, cpu: u32, n: u32) -> u64 {
    pin_to(cpu);
    let mut failures = 0;
    for seq in 0..n {
        loop {
            match perf_output(map, BPF_F_CURRENT_CPU, &perf_record(producer, seq)) {
                Ok(()) => break,
                Err(libc::ENOSPC) => {
                    failures += 1;
                    std::thread::yield_now();
                }
                Err(e) => panic!("perf output: errno {e}"),
            }
        }
    }
    failures
}

// ---------------------------------------------------------------------------
// Perf buffer: a thread and a child process produce
// ---------------------------------------------------------------------------

const PERF_CHILD: &str = "child_perf_producer";
const PERF_N: u32 = 5_000;

#[test]
fn child_perf_producer() {
    if !is_child(PERF_CHILD) {
        return;
    }
    let map = Map::open_path(Path::new(&std::env::var("PERF_MAP").unwrap())).unwrap();
    let cpu: u32 = std::env::var("PERF_CPU").unwrap().parse().unwrap();
    let failures = perf_stream(&map, 1, cpu, PERF_N);
    println!("failures={failures}");
}

#[test]
fn perf_buffer_thread_and_process_producers() {
    let cpus = online_cpus();
    let possible = userbpf_runtime::cpu::possible_cpus();
    let map = perf_map(possible);
    let mut seen = PerfSeen {
        stream: true,
        ..PerfSeen::default()
    };
    let (cpu_a, cpu_b) = (cpus[0], *cpus.last().unwrap());
    seen.cpu_of.insert(0, cpu_a as c_int);
    seen.cpu_of.insert(1, cpu_b as c_int);
    // SAFETY: a perf event array fd, valid callbacks and context.
    let pb = unsafe {
        perf_buffer__new(
            map.raw_fd(),
            2,
            Some(on_perf_sample),
            Some(on_perf_lost),
            (&raw mut seen).cast(),
            null(),
        )
    };
    assert!(!pb.is_null(), "perf_buffer__new: errno {}", errno());
    // SAFETY: a live buffer.
    assert_eq!(unsafe { perf_buffer__buffer_cnt(pb) }, cpus.len());
    let child = spawn_child(
        PERF_CHILD,
        &[
            ("PERF_MAP", proc_path(map.raw_fd())),
            ("PERF_CPU", cpu_b.to_string()),
        ],
    );
    let m = map.clone();
    let thread = std::thread::spawn(move || perf_stream(&m, 0, cpu_a, PERF_N));
    let start = Instant::now();
    let mut ready_total = 0;
    while seen.next.get(&0) != Some(&PERF_N) || seen.next.get(&1) != Some(&PERF_N) {
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "stuck: {:?}",
            seen.next
        );
        // SAFETY: a live buffer.
        let n = unsafe { perf_buffer__poll(pb, 1000) };
        assert!(n >= 0 && n as usize <= cpus.len(), "poll: {n}");
        ready_total += n;
    }
    let failures = thread.join().unwrap();
    let out = finish_child(child);
    // The harness prints "test child_perf_producer ... " on the same line.
    let child_failures: u64 = out
        .split("failures=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no failure count from the child:\n{out}"));
    assert_eq!(
        seen.lost,
        failures + child_failures,
        "every failed output reported once through lost_cb"
    );
    println!(
        "{} samples, {} lost ({} polls' ready buffers)",
        2 * PERF_N,
        seen.lost,
        ready_total
    );
    // SAFETY: a live buffer, freed once.
    unsafe { perf_buffer__free(pb) };
    // The slots are cleared.
    assert_eq!(perf_output(&map, 0, b"x"), Err(libc::ENOENT));
}

// ---------------------------------------------------------------------------
// Perf buffer: the API's contracts
// ---------------------------------------------------------------------------

#[test]
fn perf_buffer_api_contracts() {
    bpf::print::set_print(None);
    let cpus = online_cpus();
    let possible = userbpf_runtime::cpu::possible_cpus();
    let map = perf_map(possible);
    let fd = map.raw_fd();
    let mut seen = PerfSeen::default();
    let ctx: *mut c_void = (&raw mut seen).cast();
    let sample = Some(on_perf_sample as unsafe extern "C" fn(_, _, _, _));
    let lost = Some(on_perf_lost as unsafe extern "C" fn(_, _, _));

    // SAFETY (these calls): plain values, NULL or valid opts.
    unsafe {
        assert!(perf_buffer__new(fd, 3, sample, lost, ctx, null()).is_null());
        assert_eq!(errno(), libc::EINVAL);
        assert!(perf_buffer__new(fd, 0, sample, lost, ctx, null()).is_null());
        assert_eq!(errno(), libc::EINVAL);
        let ring = ring_map(4096);
        assert!(perf_buffer__new(ring.raw_fd(), 1, sample, lost, ctx, null()).is_null());
        assert_eq!(errno(), libc::EINVAL);
        assert!(perf_buffer__new(-1, 1, sample, lost, ctx, null()).is_null());
        assert_eq!(errno(), libc::EBADFD);
        let small = cabi::perf_buffer_opts {
            sz: 4,
            sample_period: 0,
        };
        assert!(perf_buffer__new(fd, 1, sample, lost, ctx, &small).is_null());
        assert_eq!(errno(), libc::EINVAL);
        // An old application's 8-byte opts and a sample period are fine.
        let old: [u64; 1] = [8];
        let pb = perf_buffer__new(fd, 1, sample, lost, ctx, old.as_ptr().cast());
        assert!(!pb.is_null());
        perf_buffer__free(pb);
        let batched = cabi::perf_buffer_opts {
            sz: 16,
            sample_period: 4,
        };
        let pb = perf_buffer__new(fd, 1, sample, lost, ctx, &batched);
        assert!(!pb.is_null());
        perf_buffer__free(pb);
        perf_buffer__free(null_mut());
        // User ring buffers: maps of other types are refused.
        assert!(user_ring_buffer__new(fd, null()).is_null());
        assert_eq!(errno(), libc::EINVAL);
        assert!(user_ring_buffer__new(-1, null()).is_null());
        assert_eq!(errno(), libc::EBADFD);
        user_ring_buffer__free(null_mut());
    }

    // SAFETY: valid fd, callbacks and context.
    let pb = unsafe { perf_buffer__new(fd, 2, sample, lost, ctx, null()) };
    assert!(!pb.is_null());
    // SAFETY (the rest of the test): `pb` is live; `seen` outlives it.
    unsafe {
        let cnt = perf_buffer__buffer_cnt(pb);
        assert_eq!(cnt, cpus.len());
        assert!(perf_buffer__buffer_fd(pb, 0) >= 0);
        assert_eq!(perf_buffer__buffer_fd(pb, cnt), -libc::EINVAL);
        assert_eq!(perf_buffer__consume_buffer(pb, cnt), -libc::EINVAL);
        assert_eq!(perf_buffer__consume(pb), 0);

        // poll: a timeout, then the number of buffers with data.
        let t = Instant::now();
        let cpu0 = thread_cpu_time();
        assert_eq!(perf_buffer__poll(pb, 100), 0);
        assert!(t.elapsed() >= Duration::from_millis(95));
        let cpu = thread_cpu_time() - cpu0;
        assert!(
            cpu < Duration::from_millis(10),
            "an empty poll used {cpu:?} of CPU"
        );
        for &cpu in &cpus {
            perf_output(&map, u64::from(cpu), &perf_record(9, cpu)).unwrap();
        }
        assert_eq!(perf_buffer__poll(pb, 1000), cnt as c_int);
        let mut got: Vec<(c_int, u32)> =
            seen.samples.iter().map(|(c, d)| (*c, parse(d).1)).collect();
        got.sort();
        let want: Vec<(c_int, u32)> = cpus.iter().map(|&c| (c as c_int, c)).collect();
        assert_eq!(got, want);
        // The kernel's raw size: padded so that size + 4 is 8-aligned.
        assert!(seen.samples.iter().all(|(_, d)| d.len() == 44));
        // poll sleeps until data comes.
        let m = map.clone();
        let c0 = cpus[0];
        let producer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            perf_output(&m, u64::from(c0), &perf_record(9, 100)).unwrap();
        });
        let t = Instant::now();
        assert_eq!(perf_buffer__poll(pb, 10_000), 1);
        assert!(t.elapsed() >= Duration::from_millis(80));
        producer.join().unwrap();

        // perf_buffer__buffer: the perf_event_mmap_page and the data size.
        let mut base: *mut c_void = null_mut();
        let mut size = 0usize;
        assert_eq!(perf_buffer__buffer(pb, 0, &mut base, &mut size), 0);
        assert_eq!(size, 2 * 4096);
        let word = |off: usize| base.cast::<u8>().add(off).cast::<u64>().read_volatile();
        assert_eq!(word(1048), 2 * 4096, "data_size");
        assert_eq!(word(1040), 4096, "data_offset");
        assert_eq!(
            word(1024),
            word(1032),
            "data_head == data_tail once consumed"
        );
        assert_eq!(
            perf_buffer__buffer(pb, -1, &mut base, &mut size),
            -libc::EINVAL
        );
        assert_eq!(
            perf_buffer__buffer(pb, cnt as c_int, &mut base, &mut size),
            -libc::EINVAL
        );

        // Lost records: fill ring 0 without consuming.
        let mut failed = 0;
        for seq in 0..1000 {
            if perf_output(&map, u64::from(cpus[0]), &perf_record(9, seq)) == Err(libc::ENOSPC) {
                failed += 1;
            }
        }
        assert!(failed > 0);
        seen.samples.clear();
        assert_eq!(perf_buffer__consume_buffer(pb, 0), 0);
        assert_eq!(seen.lost, 0, "reported with the next record that fits");
        perf_output(&map, u64::from(cpus[0]), &perf_record(9, 1000)).unwrap();
        assert_eq!(perf_buffer__consume(pb), 0);
        assert_eq!(seen.lost, failed);
        assert_eq!(seen.samples.len() as u64, 1000 - failed + 1);

        // The epoll fd.
        let epfd = perf_buffer__epoll_fd(pb);
        assert!(epfd >= 0);
        assert_eq!(epoll_wait(epfd, 0), 0);
        let m = map.clone();
        let producer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            perf_output(&m, u64::from(c0), &perf_record(9, 2000)).unwrap();
        });
        assert_eq!(epoll_wait(epfd, 10_000), 1);
        producer.join().unwrap();
        assert_eq!(epoll_wait(epfd, 0), 1, "level-triggered until consumed");
        assert_eq!(perf_buffer__poll(pb, 0), 1);
        assert_eq!(epoll_wait(epfd, 0), 0);

        perf_buffer__free(pb);
    }
    assert_eq!(
        perf_output(&map, u64::from(cpus[0]), b"x"),
        Err(libc::ENOENT)
    );
}

#[test]
fn perf_buffer_raw() {
    bpf::print::set_print(None);
    let possible = userbpf_runtime::cpu::possible_cpus();
    let map = perf_map(possible.max(2));
    let fd = map.raw_fd();
    let mut seen = PerfSeen::default();
    let ctx: *mut c_void = (&raw mut seen).cast();
    // struct perf_event_attr: type, size, config, sample_period,
    // sample_type, ... (128 bytes in current headers).
    let mut attr = [0u64; 16];
    attr[0] = 1 | (128 << 32); // PERF_TYPE_SOFTWARE, size 128
    attr[1] = 10; // PERF_COUNT_SW_BPF_OUTPUT
    attr[3] = 1 << 10; // PERF_SAMPLE_RAW
    let attr_ptr = attr.as_mut_ptr().cast::<cabi::perf_event_attr>();
    // SAFETY (all calls): valid attr, opts, callback and context; the
    // buffers are live until freed.
    unsafe {
        assert!(
            perf_buffer__new_raw(fd, 1, null_mut(), Some(on_perf_event), ctx, null()).is_null()
        );
        assert_eq!(errno(), libc::EINVAL);
        let mut cycles = attr;
        cycles[0] = 128 << 32; // PERF_TYPE_HARDWARE (0)
        cycles[1] = 0;
        assert!(perf_buffer__new_raw(
            fd,
            1,
            cycles.as_mut_ptr().cast(),
            Some(on_perf_event),
            ctx,
            null()
        )
        .is_null());
        assert_eq!(errno(), libc::EOPNOTSUPP);

        // Explicit CPUs and keys: CPU 0's ring in slot 1.
        let mut cpus = [0 as c_int];
        let mut keys = [1 as c_int];
        let opts = cabi::perf_buffer_raw_opts {
            sz: std::mem::size_of::<cabi::perf_buffer_raw_opts>(),
            cpu_cnt: 1,
            cpus: cpus.as_mut_ptr(),
            map_keys: keys.as_mut_ptr(),
        };
        let pb = perf_buffer__new_raw(fd, 1, attr_ptr, Some(on_perf_event), ctx, &opts);
        assert!(!pb.is_null(), "errno {}", errno());
        assert_eq!(perf_buffer__buffer_cnt(pb), 1);
        assert_eq!(perf_output(&map, 0, b"slot 0"), Err(libc::ENOENT));
        for i in 0..3u32 {
            perf_output(&map, 1, &i.to_ne_bytes()).unwrap();
        }
        // DONE stops after its record (consumed); the rest stays.
        seen.raw_ret = vec![cabi::LIBBPF_PERF_EVENT_DONE];
        assert_eq!(perf_buffer__consume_buffer(pb, 0), 0);
        assert_eq!(seen.raw, vec![(9, 16)]);
        // ERROR: returned (errno = 1, as libbpf_err(-1) leaves it).
        seen.raw_ret = vec![cabi::LIBBPF_PERF_EVENT_ERROR];
        assert_eq!(perf_buffer__consume(pb), -1);
        assert_eq!(errno(), 1);
        assert_eq!(seen.raw.len(), 2);
        assert_eq!(perf_buffer__poll(pb, 1000), 1);
        assert_eq!(seen.raw.len(), 3);
        assert_eq!(perf_buffer__poll(pb, 0), 0);
        perf_buffer__free(pb);
        assert_eq!(perf_output(&map, 1, b"x"), Err(libc::ENOENT));
    }
}

// ---------------------------------------------------------------------------
// From C, on bpf_map_create maps fed by bpf_prog_test_run_opts
// ---------------------------------------------------------------------------

fn out_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("libbpf-so-buffers");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn have(tool: &str, arg: &str) -> bool {
    Command::new(tool)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn comparable(s: &str) -> Vec<&str> {
    s.lines().filter(|l| !l.starts_with('#')).collect()
}

#[test]
fn c_program_matches_libbpf_on_the_kernel() {
    if !have("cc", "--version") || !Path::new("/usr/include/bpf/libbpf.h").exists() {
        eprintln!("skipped: needs cc and libbpf-dev");
        return;
    }
    let dir = out_dir();
    let exe = dir.join("buffers");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/buffers.c");
    run(Command::new("cc")
        .args(["-Wall", "-Werror", "-O1", "-Wl,-z,now", "-o"])
        .arg(&exe)
        .arg(&src)
        .args(["-lbpf", "-ldl"]));

    let so = libbpf_so();
    let ns = dir.join("namespace");
    let _ = std::fs::remove_dir_all(&ns);
    let out = Command::new(&exe)
        .env("LD_LIBRARY_PATH", so.parent().unwrap())
        .env("USERBPF_DIR", &ns)
        .env_remove("USERBPF_NAMESPACE")
        .env_remove("LIBBPF_LOG_LEVEL")
        .output()
        .unwrap();
    let (ours, stderr) = text(&out);
    std::fs::write(dir.join("ours.out"), &ours).unwrap();
    assert!(
        out.status.success(),
        "ours failed ({}):\n{ours}\n{stderr}",
        out.status
    );
    assert!(ours.ends_with("done\n"), "{ours}\n{stderr}");
    assert!(!ours.contains("FAIL"), "{ours}\n{stderr}");
    print!("{ours}");

    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("kernel comparison skipped: needs root");
        return;
    }
    let out = Command::new(&exe)
        .env_remove("LD_LIBRARY_PATH")
        .env_remove("LIBBPF_LOG_LEVEL")
        .output()
        .unwrap();
    let (kernel, kstderr) = text(&out);
    std::fs::write(dir.join("kernel.out"), &kernel).unwrap();
    if !out.status.success() || !kernel.ends_with("done\n") {
        eprintln!(
            "kernel comparison skipped: the kernel run failed ({}):\n{kernel}\n{kstderr}",
            out.status
        );
        return;
    }
    let (a, b) = (comparable(&ours), comparable(&kernel));
    let diff: Vec<String> = a
        .iter()
        .zip(&b)
        .filter(|(o, k)| o != k)
        .map(|(o, k)| format!("kernel: {k}\nours:   {o}"))
        .collect();
    assert!(
        a.len() == b.len() && diff.is_empty(),
        "outputs differ (full outputs in {}):\n{}\nours:\n{ours}\nkernel:\n{kernel}",
        dir.display(),
        diff.join("\n")
    );
    println!(
        "{} comparable lines equal to libbpf 1.1.2 on the kernel",
        a.len()
    );
}

#[test]
fn perf_ring_fd_is_the_slot_value() {
    // bpf_map_update_elem stored the ring's fd: another perf buffer on the
    // same map takes the slots over, and freeing it clears them.
    let map = perf_map(userbpf_runtime::cpu::possible_cpus());
    let mut seen = PerfSeen::default();
    // SAFETY: valid fd, callback and context; buffers freed once.
    unsafe {
        let a = perf_buffer__new(
            map.raw_fd(),
            1,
            Some(on_perf_sample),
            None,
            (&raw mut seen).cast(),
            null(),
        );
        let b = perf_buffer__new(
            map.raw_fd(),
            1,
            Some(on_perf_sample),
            None,
            (&raw mut seen).cast(),
            null(),
        );
        assert!(!a.is_null() && !b.is_null());
        perf_output(&map, 0, b"to b").unwrap();
        assert_eq!(perf_buffer__consume(a), 0);
        assert!(seen.samples.is_empty());
        assert_eq!(perf_buffer__consume(b), 0);
        assert_eq!(seen.samples.len(), 1);
        let fd_b = perf_buffer__buffer_fd(b, 0);
        assert!(fd_b >= 0 && fd_b != map.raw_fd());
        perf_buffer__free(b);
        assert_eq!(perf_output(&map, 0, b"x"), Err(libc::ENOENT));
        perf_buffer__free(a);
    }
}
