//! userbpf-ringbuf-bench: ring buffer throughput, userbpf against the
//! kernel, in events per second.
//!
//!     cargo run --release -p userbpf-benches --bin userbpf-ringbuf-bench -- \
//!         [--secs S] [--ring BYTES] [--runs N] [--no-pin | --same-cpu]
//!
//! The producer is an eBPF program that emits 64-byte events in a loop,
//! with `bpf_ringbuf_output` or with `bpf_ringbuf_reserve` +
//! `bpf_ringbuf_submit` (default flags: wake-ups as the kernel decides).
//! A consumer thread counts events the way libbpf's `ring_buffer__poll`
//! does: consume everything, then sleep until woken (10 ms timeout).
//!
//! - userbpf: the program is JIT-compiled and run in this process; the
//!   consumer uses `RingBufConsumer` (futex wake-ups, adaptive polling).
//! - kernel (root only, else skipped with a message): the same loop as a
//!   `BPF_PROG_TYPE_SYSCALL` program (a bounded loop of 8192 events per
//!   run), run with `BPF_PROG_TEST_RUN`; the consumer mmaps the kernel's
//!   ring as libbpf does and sleeps in `epoll_wait` on the map fd.
//!
//! The producer runs batches for `--secs` seconds while the consumer runs
//! concurrently; the best of `--runs` runs is kept. Reported: events
//! delivered per second (consumed / time from the first produced event to
//! the last consumed one), and events per second the producer attempted
//! with the share it dropped (ring full: the consumer was behind).
//! Produced events are counted from the producer position (72 bytes per
//! record). Thread placement matters a lot on small machines, so it is
//! fixed: producer on CPU 0 and consumer on CPU 1 (default), both on CPU 0
//! (`--same-cpu`), or left to the scheduler (`--no-pin`). A second table
//! gives single-thread costs (fill a ring, then drain it) without any
//! cross-core traffic.

use std::ffi::{c_int, c_long, c_void};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use userbpf_runtime::asm::assemble;
use userbpf_runtime::helpers::HelperRegistry;
use userbpf_runtime::maps::ringbuf::RingBufConsumer;
use userbpf_runtime::maps::special_helpers::register_special_map_helpers;
use userbpf_runtime::maps::{map_type, Map, MapSpec};
use userbpf_runtime::vm::{Engine, Vm, VmOptions};

const EVENT: usize = 64;
/// Events per program run: userbpf, and the kernel (whose verifier walks
/// every iteration of the bounded loop).
const BATCH: u64 = 1 << 16;
const KERNEL_BATCH: u64 = 8192;
/// Bytes of one record: 8-byte header + 64-byte sample.
const RECORD: u64 = 72;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Output,
    ReserveSubmit,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Output => "bpf_ringbuf_output",
            Mode::ReserveSubmit => "reserve + submit",
        }
    }
}

struct Outcome {
    consumed: u64,
    attempted: u64,
    /// Producer time (all batches).
    produce: Duration,
    /// First event to last consumed.
    elapsed: Duration,
}

impl Outcome {
    fn rate(&self) -> f64 {
        self.consumed as f64 / self.elapsed.as_secs_f64()
    }
    fn attempt_rate(&self) -> f64 {
        self.attempted as f64 / self.produce.as_secs_f64()
    }
    fn drop_pct(&self) -> f64 {
        100.0 * (self.attempted - self.consumed) as f64 / self.attempted as f64
    }
}

/// Counts events until `target` (set by the producer when done) is reached.
struct Counter {
    consumed: AtomicU64,
    target: AtomicU64,
}

impl Counter {
    fn new() -> Arc<Counter> {
        Arc::new(Counter {
            consumed: AtomicU64::new(0),
            target: AtomicU64::new(u64::MAX),
        })
    }
    fn done(&self) -> bool {
        self.consumed.load(Ordering::Relaxed) >= self.target.load(Ordering::Acquire)
    }
}

// ---------------------------------------------------------------------
// userbpf
// ---------------------------------------------------------------------

fn userbpf_program(map: &Arc<Map>, mode: Mode) -> String {
    let addr = map.prog_addr();
    let stores: String = (1..=8)
        .map(|i| format!("stxdw [%r10-{}], %r6\n", i * 8))
        .collect();
    let body = match mode {
        Mode::Output => format!(
            "{stores}mov %r1, %r8\nmov %r2, %r10\nadd %r2, -64\nmov %r3, 64\nmov %r4, 0\n\
             call 130\n"
        ),
        Mode::ReserveSubmit => {
            let sample_stores: String = (0..8)
                .map(|i| format!("stxdw [%r0+{}], %r6\n", i * 8))
                .collect();
            format!(
                "mov %r1, %r8\nmov %r2, 64\nmov %r3, 0\ncall 131\njeq %r0, 0, skip\n\
                 {sample_stores}mov %r1, %r0\nmov %r2, 0\ncall 132\n"
            )
        }
    };
    format!(
        "mov %r6, {BATCH}\nlddw %r8, {addr:#x}\nloop:\n{body}skip:\n\
         sub %r6, 1\njne %r6, 0, loop\nmov %r0, 0\nexit\n"
    )
}

fn run_userbpf(mode: Mode, secs: f64, ring: u32) -> Result<Outcome> {
    let spec = MapSpec {
        map_type: map_type::RINGBUF,
        max_entries: ring,
        name: "bench_rb".into(),
        ..MapSpec::default()
    };
    let map = Map::create(&spec, 0x7fff_0000).context("creating the ring buffer")?;
    let mut helpers = HelperRegistry::new();
    register_special_map_helpers(&mut helpers);
    let insns = assemble(&userbpf_program(&map, mode)).context("assembling")?;
    let vm = Vm::from_insns(insns, &helpers, VmOptions::with_engine(Engine::Jit))?;
    let rb = RingBufConsumer::new(map.clone())?;

    let counter = Counter::new();
    let c = counter.clone();
    let consumer = std::thread::spawn(move || -> Result<()> {
        pin(1);
        let mut sink = 0u8;
        while !c.done() {
            let n = rb
                .consume(u64::MAX, |d| {
                    sink ^= d[0];
                    0
                })
                .map_err(|e| anyhow::anyhow!("consume: {e}"))?;
            c.consumed.fetch_add(n, Ordering::Relaxed);
            if n == 0 {
                rb.wait(Some(Duration::from_millis(10)));
            }
        }
        std::hint::black_box(sink);
        Ok(())
    });

    let producer_pos = || {
        map.downcast::<userbpf_runtime::maps::ringbuf::RingBuf>()
            .map_or(0, |r| r.producer_pos())
    };
    let start = Instant::now();
    let mut attempted = 0u64;
    let mut ctx = [0u8; 8];
    while start.elapsed().as_secs_f64() < secs {
        vm.run(&mut ctx)?;
        attempted += BATCH;
    }
    let produce = start.elapsed();
    let produced = producer_pos() / RECORD;
    counter.target.store(produced, Ordering::Release);
    consumer
        .join()
        .map_err(|_| anyhow::anyhow!("consumer panicked"))??;
    Ok(Outcome {
        consumed: produced,
        attempted,
        produce,
        elapsed: start.elapsed(),
    })
}

// ---------------------------------------------------------------------
// The kernel
// ---------------------------------------------------------------------

extern "C" {
    fn syscall(n: c_long, ...) -> c_long;
    fn mmap(
        addr: *mut c_void,
        len: usize,
        prot: c_int,
        flags: c_int,
        fd: c_int,
        off: i64,
    ) -> *mut c_void;
    fn munmap(addr: *mut c_void, len: usize) -> c_int;
    fn close(fd: c_int) -> c_int;
    fn geteuid() -> u32;
    fn epoll_create1(flags: c_int) -> c_int;
    fn epoll_ctl(epfd: c_int, op: c_int, fd: c_int, event: *mut EpollEvent) -> c_int;
    fn epoll_wait(epfd: c_int, events: *mut EpollEvent, max: c_int, timeout: c_int) -> c_int;
    fn __errno_location() -> *mut c_int;
    fn sched_setaffinity(pid: c_int, size: usize, mask: *const u64) -> c_int;
    fn sysconf(name: c_int) -> c_long;
}

static PIN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);
static SAME_CPU: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Pins the calling thread to `cpu` (unless `--no-pin`; CPU 0 for both
/// threads with `--same-cpu`).
fn pin(cpu: u32) {
    if !PIN.load(Ordering::Relaxed) {
        return;
    }
    let cpu = if SAME_CPU.load(Ordering::Relaxed) {
        0
    } else {
        cpu
    };
    let mask = [
        1u64 << (cpu % 64),
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
    ];
    // SAFETY: a valid CPU mask of 1024 bits for the calling thread.
    unsafe { sched_setaffinity(0, std::mem::size_of_val(&mask), mask.as_ptr()) };
}

#[repr(C, packed)]
struct EpollEvent {
    events: u32,
    data: u64,
}

const SYS_BPF: c_long = 321;
const BPF_MAP_CREATE: c_long = 0;
const BPF_PROG_LOAD: c_long = 5;
const BPF_PROG_TEST_RUN: c_long = 10;
const BPF_PROG_TYPE_SYSCALL: u32 = 31;
const BPF_F_SLEEPABLE: u32 = 1 << 4;
const PROT_READ: c_int = 1;
const PROT_WRITE: c_int = 2;
const MAP_SHARED: c_int = 1;
const EPOLLIN: u32 = 1;
const EPOLL_CTL_ADD: c_int = 1;
const PAGE: usize = 4096;

fn errno() -> i32 {
    // SAFETY: glibc's per-thread errno location.
    unsafe { *__errno_location() }
}

fn bpf(cmd: c_long, attr: &mut [u64; 16]) -> Result<c_long, i32> {
    // SAFETY: `attr` is a zero-padded 128-byte bpf_attr.
    let r = unsafe {
        syscall(
            SYS_BPF,
            cmd,
            attr.as_mut_ptr(),
            std::mem::size_of_val(attr) as u32,
        )
    };
    if r < 0 {
        Err(errno())
    } else {
        Ok(r)
    }
}

/// Writes `v` at byte offset `off` of a bpf_attr.
fn put32(attr: &mut [u64; 16], off: usize, v: u32) {
    let bytes: &mut [u8; 128] = bytemuck_u64(attr);
    bytes[off..off + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put64(attr: &mut [u64; 16], off: usize, v: u64) {
    let bytes: &mut [u8; 128] = bytemuck_u64(attr);
    bytes[off..off + 8].copy_from_slice(&v.to_ne_bytes());
}

fn bytemuck_u64(a: &mut [u64; 16]) -> &mut [u8; 128] {
    // SAFETY: same size, u8 has no alignment or validity requirements.
    unsafe { &mut *(a as *mut [u64; 16] as *mut [u8; 128]) }
}

/// One raw instruction.
fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    u64::from(code)
        | u64::from(dst & 0xf) << 8
        | u64::from(src & 0xf) << 12
        | u64::from(off as u16) << 16
        | u64::from(imm as u32) << 32
}

/// The kernel program: a bounded loop of [`KERNEL_BATCH`] events, the
/// same instructions as the userbpf one.
fn kernel_program(map_fd: i32, mode: Mode) -> Vec<u64> {
    const LDDW: u8 = 0x18;
    const MOV_K: u8 = 0xb7;
    const MOV_X: u8 = 0xbf;
    const ADD_K: u8 = 0x07;
    const STX_DW: u8 = 0x7b;
    const CALL: u8 = 0x85;
    const EXIT: u8 = 0x95;
    const JNE_K: u8 = 0x55;
    const JEQ_K: u8 = 0x15;
    let mut p = vec![insn(MOV_K, 6, 0, 0, KERNEL_BATCH as i32)];
    let map = [insn(LDDW, 1, 1, 0, map_fd), insn(0, 0, 0, 0, 0)];
    let loop_start = p.len();
    match mode {
        Mode::Output => {
            for i in 1..=8i16 {
                p.push(insn(STX_DW, 10, 6, -8 * i, 0));
            }
            p.extend_from_slice(&map);
            p.extend_from_slice(&[
                insn(MOV_X, 2, 10, 0, 0),
                insn(ADD_K, 2, 0, 0, -64),
                insn(MOV_K, 3, 0, 0, EVENT as i32),
                insn(MOV_K, 4, 0, 0, 0),
                insn(CALL, 0, 0, 0, 130),
            ]);
        }
        Mode::ReserveSubmit => {
            p.extend_from_slice(&map);
            p.extend_from_slice(&[
                insn(MOV_K, 2, 0, 0, EVENT as i32),
                insn(MOV_K, 3, 0, 0, 0),
                insn(CALL, 0, 0, 0, 131),
                // to `skip` when NULL: over 8 stores + 3
                insn(JEQ_K, 0, 0, 8 + 3, 0),
            ]);
            for i in 0..8i16 {
                p.push(insn(STX_DW, 0, 6, 8 * i, 0));
            }
            p.extend_from_slice(&[
                insn(MOV_X, 1, 0, 0, 0),
                insn(MOV_K, 2, 0, 0, 0),
                insn(CALL, 0, 0, 0, 132),
            ]);
        }
    }
    // skip: r6 -= 1; if r6 != 0 goto loop
    p.push(insn(ADD_K, 6, 0, 0, -1));
    let back = loop_start as i32 - (p.len() as i32 + 1);
    p.push(insn(JNE_K, 6, 0, back as i16, 0));
    p.push(insn(MOV_K, 0, 0, 0, 0));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

struct KernelRing {
    fd: i32,
    size: usize,
    cons: *mut u8,
    prod: *mut u8,
}

impl KernelRing {
    fn new(size: u32) -> Result<KernelRing> {
        let mut attr = [0u64; 16];
        put32(&mut attr, 0, 27); // BPF_MAP_TYPE_RINGBUF
        put32(&mut attr, 12, size);
        let fd = bpf(BPF_MAP_CREATE, &mut attr)
            .map_err(|e| anyhow::anyhow!("BPF_MAP_CREATE(ringbuf): errno {e}"))?
            as i32;
        let size = size as usize;
        // SAFETY: maps the ring as libbpf does: the consumer page read-write,
        // the producer page and the data twice, read-only.
        let (cons, prod) = unsafe {
            let c = mmap(
                std::ptr::null_mut(),
                PAGE,
                PROT_READ | PROT_WRITE,
                MAP_SHARED,
                fd,
                0,
            );
            let p = mmap(
                std::ptr::null_mut(),
                PAGE + 2 * size,
                PROT_READ,
                MAP_SHARED,
                fd,
                PAGE as i64,
            );
            (c, p)
        };
        if cons as isize == -1 || prod as isize == -1 {
            bail!("mmap of the kernel ring buffer: errno {}", errno());
        }
        Ok(KernelRing {
            fd,
            size,
            cons: cons.cast(),
            prod: prod.cast(),
        })
    }

    /// libbpf's ringbuf_process_ring.
    fn producer_pos(&self) -> u64 {
        // SAFETY: the producer page is mapped; the position is a u64 atomic.
        unsafe { &*(self.prod as *const AtomicU64) }.load(Ordering::Acquire)
    }

    fn consume(&self, sink: &mut u8) -> u64 {
        // SAFETY: the consumer and producer pages are mapped; positions are
        // u64 atomics the kernel updates; data reads stay inside the double
        // mapping (len < size).
        unsafe {
            let cons_pos = &*(self.cons as *const AtomicU64);
            let prod_pos = &*(self.prod as *const AtomicU64);
            let data = self.prod.add(PAGE);
            let mask = self.size as u64 - 1;
            let mut cons = cons_pos.load(Ordering::Acquire);
            let mut n = 0;
            loop {
                let prod = prod_pos.load(Ordering::Acquire);
                let mut got = false;
                while cons < prod {
                    let hdr = data.add((cons & mask) as usize);
                    let len =
                        (*(hdr as *const std::sync::atomic::AtomicU32)).load(Ordering::Acquire);
                    if len & (1 << 31) != 0 {
                        return n;
                    }
                    got = true;
                    let l = u64::from(len & !(3 << 30));
                    cons += (l + 8 + 7) & !7;
                    if len & (1 << 30) == 0 {
                        *sink ^= *hdr.add(8);
                        n += 1;
                    }
                    cons_pos.store(cons, Ordering::Release);
                }
                if !got {
                    return n;
                }
            }
        }
    }
}

impl Drop for KernelRing {
    fn drop(&mut self) {
        // SAFETY: unmaps what `new` mapped and closes its fd.
        unsafe {
            munmap(self.cons.cast(), PAGE);
            munmap(self.prod.cast(), PAGE + 2 * self.size);
            close(self.fd);
        }
    }
}

// SAFETY: the mappings are process-wide; only the consumer thread writes
// (consumer_pos), the producer thread only reads producer_pos atomically.
unsafe impl Send for KernelRing {}
// SAFETY: as above.
unsafe impl Sync for KernelRing {}

fn load_kernel_program(map_fd: i32, mode: Mode) -> Result<i32> {
    let prog = kernel_program(map_fd, mode);
    let license = c"GPL";
    let mut log = vec![0u8; 1 << 20];
    let mut attr = [0u64; 16];
    put32(&mut attr, 0, BPF_PROG_TYPE_SYSCALL);
    put32(&mut attr, 4, prog.len() as u32);
    put64(&mut attr, 8, prog.as_ptr() as u64);
    put64(&mut attr, 16, license.as_ptr() as u64);
    put32(&mut attr, 44, BPF_F_SLEEPABLE);
    put64(&mut attr, 48, u64::from_ne_bytes(*b"rb_bench"));
    if let Ok(fd) = bpf(BPF_PROG_LOAD, &mut attr.clone()) {
        return Ok(fd as i32);
    }
    // Again with the verifier's log (level 1 only tells why it failed).
    put32(&mut attr, 24, 1);
    put32(&mut attr, 28, log.len() as u32);
    put64(&mut attr, 32, log.as_mut_ptr() as u64);
    match bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => Ok(fd as i32),
        Err(e) => {
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            bail!(
                "BPF_PROG_LOAD: errno {e}\n{}",
                String::from_utf8_lossy(&log[..end])
            )
        }
    }
}

fn run_kernel(mode: Mode, secs: f64, ring: u32) -> Result<Outcome> {
    let kr = Arc::new(KernelRing::new(ring)?);
    let prog_fd = load_kernel_program(kr.fd, mode)?;
    let counter = Counter::new();
    let c = counter.clone();
    let consumer_ring = kr.clone();
    let consumer = std::thread::spawn(move || -> Result<()> {
        pin(1);
        let kr = consumer_ring;
        // SAFETY: plain epoll syscalls on fds we own.
        let ep = unsafe { epoll_create1(0) };
        let mut ev = EpollEvent {
            events: EPOLLIN,
            data: 0,
        };
        // SAFETY: as above.
        if ep < 0 || unsafe { epoll_ctl(ep, EPOLL_CTL_ADD, kr.fd, &mut ev) } < 0 {
            bail!("epoll: errno {}", errno());
        }
        let mut sink = 0u8;
        while !c.done() {
            let n = kr.consume(&mut sink);
            c.consumed.fetch_add(n, Ordering::Relaxed);
            if n == 0 {
                let mut out = EpollEvent { events: 0, data: 0 };
                // SAFETY: one output slot.
                unsafe { epoll_wait(ep, &mut out, 1, 10) };
            }
        }
        // SAFETY: our fd.
        unsafe { close(ep) };
        std::hint::black_box(sink);
        Ok(())
    });
    let start = Instant::now();
    let mut attempted = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        let mut attr = [0u64; 16];
        put32(&mut attr, 0, prog_fd as u32);
        bpf(BPF_PROG_TEST_RUN, &mut attr)
            .map_err(|e| anyhow::anyhow!("BPF_PROG_TEST_RUN: errno {e}"))?;
        attempted += KERNEL_BATCH;
    }
    let produce = start.elapsed();
    let produced = kr.producer_pos() / RECORD;
    counter.target.store(produced, Ordering::Release);
    consumer
        .join()
        .map_err(|_| anyhow::anyhow!("consumer panicked"))??;
    let elapsed = start.elapsed();
    // SAFETY: our fd.
    unsafe { close(prog_fd) };
    Ok(Outcome {
        consumed: produced,
        attempted,
        produce,
        elapsed,
    })
}

/// Single-thread costs: one thread fills an 8 MiB ring with [`BATCH`]
/// events (no consumer running), then consumes them: ns per event for
/// each side, without cross-core traffic. (userbpf, kernel) pairs of
/// (produce ns, consume ns).
/// (produce ns, consume ns) per event.
type Costs = (f64, f64);

fn single_thread(mode: Mode, root: bool) -> Result<(Costs, Option<Costs>)> {
    const BIG: u32 = 8 << 20;
    let spec = MapSpec {
        map_type: map_type::RINGBUF,
        max_entries: BIG,
        name: "bench_rb1".into(),
        ..MapSpec::default()
    };
    let map = Map::create(&spec, 0x7fff_0001).context("creating the ring buffer")?;
    let mut helpers = HelperRegistry::new();
    register_special_map_helpers(&mut helpers);
    let insns = assemble(&userbpf_program(&map, mode)).context("assembling")?;
    let vm = Vm::from_insns(insns, &helpers, VmOptions::with_engine(Engine::Jit))?;
    let rb = RingBufConsumer::new(map.clone())?;
    let mut best = (f64::MAX, f64::MAX);
    let mut sink = 0u8;
    for _ in 0..5 {
        let t = Instant::now();
        vm.run(&mut [0u8; 8])?;
        let p = t.elapsed().as_secs_f64() * 1e9 / BATCH as f64;
        let t = Instant::now();
        let n = rb
            .consume(u64::MAX, |d| {
                sink ^= d[0];
                0
            })
            .map_err(|e| anyhow::anyhow!("consume: {e}"))?;
        let c = t.elapsed().as_secs_f64() * 1e9 / n.max(1) as f64;
        if n != BATCH {
            bail!("userbpf single-thread: {n} events of {BATCH}");
        }
        best = (best.0.min(p), best.1.min(c));
    }
    let kernel = if root {
        let kr = KernelRing::new(BIG)?;
        let prog_fd = load_kernel_program(kr.fd, mode)?;
        let mut kbest = (f64::MAX, f64::MAX);
        for _ in 0..5 {
            let t = Instant::now();
            for _ in 0..BATCH / KERNEL_BATCH {
                let mut attr = [0u64; 16];
                put32(&mut attr, 0, prog_fd as u32);
                bpf(BPF_PROG_TEST_RUN, &mut attr)
                    .map_err(|e| anyhow::anyhow!("BPF_PROG_TEST_RUN: errno {e}"))?;
            }
            let p = t.elapsed().as_secs_f64() * 1e9 / BATCH as f64;
            let t = Instant::now();
            let n = kr.consume(&mut sink);
            let c = t.elapsed().as_secs_f64() * 1e9 / n.max(1) as f64;
            if n != BATCH {
                bail!("kernel single-thread: {n} events of {BATCH}");
            }
            kbest = (kbest.0.min(p), kbest.1.min(c));
        }
        // SAFETY: our fd.
        unsafe { close(prog_fd) };
        Some(kbest)
    } else {
        None
    };
    std::hint::black_box(sink);
    Ok((best, kernel))
}

struct Args {
    secs: f64,
    ring: u32,
    runs: u32,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        secs: 2.0,
        ring: 1 << 20,
        runs: 3,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--secs" => a.secs = args.next().context("--secs S")?.parse()?,
            "--ring" => a.ring = args.next().context("--ring BYTES")?.parse()?,
            "--runs" => a.runs = args.next().context("--runs N")?.parse::<u32>()?.max(1),
            "--no-pin" => PIN.store(false, Ordering::Relaxed),
            "--same-cpu" => SAME_CPU.store(true, Ordering::Relaxed),
            "-h" | "--help" => {
                println!(
                    "usage: userbpf-ringbuf-bench [--secs S] [--ring BYTES] [--runs N] [--no-pin | --same-cpu]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(a)
}

/// The best of `runs` runs (highest delivered rate).
fn best(runs: u32, mut f: impl FnMut() -> Result<Outcome>) -> Result<Outcome> {
    let mut best: Option<Outcome> = None;
    for _ in 0..runs {
        let o = f()?;
        if best.as_ref().is_none_or(|b| o.rate() > b.rate()) {
            best = Some(o);
        }
    }
    best.context("no run")
}

fn m(rate: f64) -> String {
    format!("{:.1} M/s", rate / 1e6)
}

fn main() -> Result<()> {
    let Args { secs, ring, runs } = parse_args()?;
    // SAFETY: no preconditions.
    let cpus = unsafe { sysconf(84) }; // _SC_NPROCESSORS_ONLN
    if cpus < 2 {
        PIN.store(false, Ordering::Relaxed);
    }
    pin(0);
    // SAFETY: no preconditions.
    let root = unsafe { geteuid() } == 0;
    println!(
        "# Ring buffer throughput: {EVENT}-byte events, {} KiB ring, best of {runs} x {secs} s, {}\n",
        ring >> 10,
        if !PIN.load(Ordering::Relaxed) {
            "threads not pinned"
        } else if SAME_CPU.load(Ordering::Relaxed) {
            "producer and consumer both on CPU 0"
        } else {
            "producer on CPU 0, consumer on CPU 1"
        }
    );
    println!(
        "| producer | userbpf delivered | (attempted, drops) | kernel delivered | (attempted, drops) | userbpf / kernel |"
    );
    println!("|---|---|---|---|---|---|");
    let mut kernel_note = None;
    for mode in [Mode::Output, Mode::ReserveSubmit] {
        let ours = best(runs, || run_userbpf(mode, secs, ring))?;
        let kernel = if root {
            match best(runs, || run_kernel(mode, secs, ring)) {
                Ok(k) => Some(k),
                Err(e) => {
                    kernel_note = Some(format!("kernel runs failed: {e:#}"));
                    None
                }
            }
        } else {
            kernel_note = Some("kernel runs skipped: not root".to_string());
            None
        };
        let detail = |o: &Outcome| format!("{}, {:.0}%", m(o.attempt_rate()), o.drop_pct());
        let (k, kd, ratio) = match &kernel {
            Some(k) => (
                m(k.rate()),
                detail(k),
                format!("{:.2}x", ours.rate() / k.rate()),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            mode.name(),
            m(ours.rate()),
            detail(&ours),
            k,
            kd,
            ratio
        );
    }
    println!("\n## Single thread, no contention (best of 5 x {BATCH} events, ns per event)\n");
    println!("| producer | userbpf produce | kernel produce | userbpf consume | kernel consume |");
    println!("|---|---|---|---|---|");
    for mode in [Mode::Output, Mode::ReserveSubmit] {
        let (ours, kernel) = single_thread(mode, root)?;
        let (kp, kc) = kernel.map_or(("-".into(), "-".into()), |(p, c)| {
            (format!("{p:.1}"), format!("{c:.1}"))
        });
        println!(
            "| {} | {:.1} | {} | {:.1} | {} |",
            mode.name(),
            ours.0,
            kp,
            ours.1,
            kc
        );
    }
    if let Some(note) = kernel_note {
        println!("\n{note}");
    }
    Ok(())
}
