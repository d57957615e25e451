//! A libbpf-rs application, linked against libbpf.so.1 (no vendored
//! libbpf), that does what libbpf-rs users do: open a skeleton, set
//! .rodata, load, drive programs with `test_run`, and use the maps through
//! `MapCore`, ring buffers, perf buffers, BTF and standalone maps.
//!
//! Everything it prints is deterministic (no pids, fds, addresses, times,
//! CPU numbers or counts of CPUs), so its stdout can be compared with a
//! golden file whichever libbpf.so.1 the loader picks: the real libbpf
//! 1.7 (kernel) or userbpf's (in-process). libbpf's own messages go to
//! stderr, which is not compared.
//!
//! Exit status: 0 when every step ran, 1 when a step the app cannot go on
//! without failed (open, load, building a buffer).

mod app {
    #![allow(unused_imports, clippy::all)]
    include!(concat!(env!("OUT_DIR"), "/app.skel.rs"));
}

use std::cell::RefCell;
use std::fmt::Debug;
use std::mem::MaybeUninit;
use std::process::ExitCode;
use std::time::Duration;

use libbpf_rs::btf::types::Struct;
use libbpf_rs::libbpf_sys;
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{
    MapCore, MapFlags, MapHandle, MapType, ObjectBuilder, PerfBufferBuilder, PrintLevel,
    ProgramInput, RingBufferBuilder,
};

use app::AppSkelBuilder;

/// `struct event` of app.bpf.c.
const EVENT_SIZE: usize = 16;
/// `struct sys_args` of app.bpf.c.
const SYS_ARGS_SIZE: usize = 32;
/// BPF_F_TEST_RUN_ON_CPU.
const TEST_RUN_ON_CPU: u32 = 1;

fn key(k: u32) -> [u8; 4] {
    k.to_ne_bytes()
}

fn val(v: u64) -> [u8; 8] {
    v.to_ne_bytes()
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes(b[off..off + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_ne_bytes(b[off..off + 8].try_into().unwrap())
}

fn i64_at(b: &[u8], off: usize) -> i64 {
    i64::from_ne_bytes(b[off..off + 8].try_into().unwrap())
}

/// An error as "err(Kind: message)"; the message carries the errno text.
fn err(e: &libbpf_rs::Error) -> String {
    format!("err({:?}: {e})", e.kind())
}

/// "ok" or the error.
fn unit(r: libbpf_rs::Result<()>) -> String {
    match r {
        Ok(()) => "ok".into(),
        Err(e) => err(&e),
    }
}

/// A u64 lookup result: the value, "none" or the error.
fn lookup_u64(r: libbpf_rs::Result<Option<Vec<u8>>>) -> String {
    match r {
        Ok(Some(v)) if v.len() == 8 => u64_at(&v, 0).to_string(),
        Ok(Some(v)) if v.len() == 4 => u32_at(&v, 0).to_string(),
        Ok(Some(v)) => format!("{} bytes", v.len()),
        Ok(None) => "none".into(),
        Err(e) => err(&e),
    }
}

/// The sorted u32 keys of a map.
fn sorted_keys<M: MapCore>(map: &M) -> Vec<u32> {
    let mut keys: Vec<u32> = map.keys().map(|k| u32_at(&k, 0)).collect();
    keys.sort_unstable();
    keys
}

/// key=value pairs of a u32 -> u64 map, sorted by key.
fn dump_u64<M: MapCore>(map: &M) -> String {
    let mut out = Vec::new();
    for k in sorted_keys(map) {
        out.push(format!(
            "{k}={}",
            lookup_u64(map.lookup(&key(k), MapFlags::ANY))
        ));
    }
    format!("{{{}}}", out.join(" "))
}

fn show<T: Debug>(r: libbpf_rs::Result<T>) -> String {
    match r {
        Ok(v) => format!("ok({v:?})"),
        Err(e) => err(&e),
    }
}

/// Runs a raw_tp program on `args` and returns its return value or the error.
fn run_raw_tp(prog: &libbpf_rs::ProgramMut<'_>, args: &[u64], cpu: Option<u32>) -> String {
    let mut ctx: Vec<u8> = args.iter().flat_map(|a| a.to_ne_bytes()).collect();
    let mut input = ProgramInput {
        context_in: Some(&mut ctx),
        ..Default::default()
    };
    if let Some(cpu) = cpu {
        input.cpu = cpu;
        input.flags = TEST_RUN_ON_CPU;
    }
    match prog.test_run(input) {
        Ok(out) => format!("retval {}", out.return_value),
        Err(e) => err(&e),
    }
}

fn print_cb(level: PrintLevel, msg: String) {
    // libbpf's messages differ between libraries: stderr only.
    eprint!("libbpf {level:?}: {msg}");
}

fn pin_to_cpu0() {
    // One CPU, so per-CPU slots and the kernel's LRU lists behave the same
    // on every run. Not fatal: the output only depends on it for the LRU.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            eprintln!(
                "sched_setaffinity(cpu 0) failed: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => {
            println!("done");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("fatal: {}", err(&e));
            ExitCode::FAILURE
        }
    }
}

fn run() -> libbpf_rs::Result<()> {
    pin_to_cpu0();
    libbpf_rs::set_print(Some((PrintLevel::Warn, print_cb)));

    let ncpus = libbpf_rs::num_possible_cpus()?;
    println!("== cpus");
    println!("num_possible_cpus > 0: {}", ncpus > 0);

    // ---------------------------------------------------------------- open
    println!("== open");
    println!(
        "open_file(missing): {}",
        match ObjectBuilder::default().open_file("/nonexistent/userbpf-rs-app.bpf.o") {
            Ok(_) => "ok".to_string(),
            Err(e) => format!("err({:?})", e.kind()),
        }
    );
    let mut storage = MaybeUninit::uninit();
    let mut open = AppSkelBuilder::default().open(&mut storage)?;
    {
        let obj = open.open_object();
        println!(
            "object: {}",
            obj.name().unwrap_or_default().to_string_lossy()
        );
        for m in obj.maps() {
            println!(
                "map {}: {:?} key {} value {} max_entries {} flags {:#x}",
                m.name().to_string_lossy(),
                m.map_type(),
                m.key_size(),
                m.value_size(),
                m.max_entries(),
                m.map_flags()
            );
        }
        for p in obj.progs() {
            println!(
                "prog {}: {:?} section {} autoload {} insns {}",
                p.name().to_string_lossy(),
                p.prog_type(),
                p.section().to_string_lossy(),
                p.autoload(),
                p.insn_cnt()
            );
        }
    }
    let rodata_len = open.maps.rodata.initial_value().map(<[u8]>::len);
    println!("rodata initial value: {rodata_len:?} bytes");
    {
        let ro = open.maps.rodata_data.as_deref_mut().expect("rodata mmap");
        println!("rodata before: scale {} bias {}", ro.scale, ro.bias);
        ro.scale = 3;
        ro.bias = 5;
    }
    {
        let data = open.maps.data_data.as_deref_mut().expect("data mmap");
        println!("data before: generation {}", data.generation);
    }
    {
        let bss = open.maps.bss_data.as_deref().expect("bss mmap");
        println!("bss before: runs {} total {}", bss.runs, bss.total);
    }
    println!(
        "set hash max_entries 7: {}",
        unit(open.maps.hash.set_max_entries(7))
    );
    println!(
        "spare autocreate off: {}",
        unit(open.maps.spare.set_autocreate(false))
    );
    open.progs.never.set_autoload(false);
    println!("never autoload: {}", open.progs.never.autoload());

    // ---------------------------------------------------------------- load
    println!("== load");
    let skel = open.load()?;
    {
        let ro = skel.maps.rodata_data.expect("rodata mmap");
        println!("rodata after: scale {} bias {}", ro.scale, ro.bias);
    }
    println!(
        "perf max_entries == num_possible_cpus: {}",
        skel.maps.perf.max_entries() as usize == ncpus
    );
    println!("hash max_entries: {}", skel.maps.hash.max_entries());
    println!("spare autocreate: {}", skel.maps.spare.autocreate());
    println!("never autoload: {}", skel.progs.never.autoload());
    match skel.maps.arr.info() {
        Ok(info) => println!(
            "arr info: name {} type {:?} key {} value {} max {}",
            info.name().unwrap_or("?"),
            info.map_type(),
            info.info.key_size,
            info.info.value_size,
            info.info.max_entries
        ),
        Err(e) => println!("arr info: {}", err(&e)),
    }

    // ---------------------------------------------------------------- array
    println!("== array");
    let arr = &skel.maps.arr;
    println!(
        "update [1]=10 ANY: {}",
        unit(arr.update(&key(1), &val(10), MapFlags::ANY))
    );
    println!(
        "update [2]=20 EXIST: {}",
        unit(arr.update(&key(2), &val(20), MapFlags::EXIST))
    );
    println!(
        "update [3]=30 NOEXIST: {}",
        unit(arr.update(&key(3), &val(30), MapFlags::NO_EXIST))
    );
    println!(
        "update [8] ANY: {}",
        unit(arr.update(&key(8), &val(1), MapFlags::ANY))
    );
    println!(
        "lookup [1]: {}",
        lookup_u64(arr.lookup(&key(1), MapFlags::ANY))
    );
    println!(
        "lookup [8]: {}",
        lookup_u64(arr.lookup(&key(8), MapFlags::ANY))
    );
    println!("delete [1]: {}", unit(arr.delete(&key(1))));
    println!(
        "lookup_percpu on array: {}",
        show(arr.lookup_percpu(&key(1), MapFlags::ANY))
    );
    println!("keys: {:?}", sorted_keys(arr));

    // ---------------------------------------------------------------- bump
    println!("== raw_tp bump (value * 3 + 5)");
    for (k, v) in [(1u64, 1u64), (2, 2), (1, 3), (5, 4), (9, 1)] {
        println!(
            "bump({k}, {v}): {}",
            run_raw_tp(&skel.progs.bump, &[k, v], None)
        );
    }
    println!(
        "bump(3, 1) on cpu 0: {}",
        run_raw_tp(&skel.progs.bump, &[3, 1], Some(0))
    );
    println!(
        "bump with 8-byte context: {}",
        run_raw_tp(&skel.progs.bump, &[1], None)
    );
    {
        let mut ctx: Vec<u8> = [1u64, 1].iter().flat_map(|a| a.to_ne_bytes()).collect();
        let input = ProgramInput {
            context_in: Some(&mut ctx),
            repeat: 2,
            ..Default::default()
        };
        println!(
            "bump with repeat 2: {}",
            match skel.progs.bump.test_run(input) {
                Ok(out) => format!("retval {}", out.return_value),
                Err(e) => err(&e),
            }
        );
    }
    {
        let bss = skel.maps.bss_data.as_deref().expect("bss mmap");
        println!(
            "bss: runs {} total {} last_key {} last_err {}",
            bss.runs, bss.total, bss.last_key, bss.last_err
        );
    }
    println!("arr: {}", dump_u64(&skel.maps.arr));

    // ---------------------------------------------------------------- syscall
    println!("== syscall prog");
    for (k, add) in [(1u32, 100u64), (4, 100), (4, 1), (9, 0)] {
        let mut ctx = [0u8; SYS_ARGS_SIZE];
        ctx[0..4].copy_from_slice(&k.to_ne_bytes());
        ctx[8..16].copy_from_slice(&add.to_ne_bytes());
        let input = ProgramInput {
            context_in: Some(&mut ctx),
            ..Default::default()
        };
        let ret = match skel.progs.sys_prog.test_run(input) {
            Ok(out) => format!("retval {}", out.return_value),
            Err(e) => err(&e),
        };
        // The kernel copies the context back into context_in.
        println!(
            "sys_prog(key {k}, add {add}): {ret}, out {} err {}",
            u64_at(&ctx, 16),
            i64_at(&ctx, 24)
        );
    }
    {
        let data = skel.maps.data_data.as_deref().expect("data mmap");
        println!("data: generation {}", data.generation);
    }

    // ---------------------------------------------------------------- hash
    println!("== hash");
    let hash = &skel.maps.hash;
    println!("contents: {}", dump_u64(hash));
    println!(
        "update [7]=70 NOEXIST: {}",
        unit(hash.update(&key(7), &val(70), MapFlags::NO_EXIST))
    );
    println!(
        "update [7]=70 NOEXIST: {}",
        unit(hash.update(&key(7), &val(70), MapFlags::NO_EXIST))
    );
    println!(
        "update [8]=80 EXIST: {}",
        unit(hash.update(&key(8), &val(80), MapFlags::EXIST))
    );
    println!(
        "update [7]=71 EXIST: {}",
        unit(hash.update(&key(7), &val(71), MapFlags::EXIST))
    );
    println!(
        "update [10]=100 ANY: {}",
        unit(hash.update(&key(10), &val(100), MapFlags::ANY))
    );
    println!(
        "update [11]=110 ANY (full): {}",
        unit(hash.update(&key(11), &val(110), MapFlags::ANY))
    );
    println!(
        "update [10]=101 ANY (full, existing): {}",
        unit(hash.update(&key(10), &val(101), MapFlags::ANY))
    );
    println!(
        "lookup [11]: {}",
        lookup_u64(hash.lookup(&key(11), MapFlags::ANY))
    );
    println!("delete [11]: {}", unit(hash.delete(&key(11))));
    println!("delete [10]: {}", unit(hash.delete(&key(10))));
    println!(
        "lookup_and_delete [7]: {}",
        lookup_u64(hash.lookup_and_delete(&key(7)))
    );
    println!(
        "lookup_and_delete [7]: {}",
        lookup_u64(hash.lookup_and_delete(&key(7)))
    );
    println!("contents: {}", dump_u64(hash));
    match hash.lookup_batch(8, MapFlags::ANY, MapFlags::ANY) {
        Ok(it) => {
            let mut kv: Vec<(u32, u64)> = it.map(|(k, v)| (u32_at(&k, 0), u64_at(&v, 0))).collect();
            kv.sort_unstable();
            println!("lookup_batch: {kv:?}");
        }
        Err(e) => println!("lookup_batch: {}", err(&e)),
    }
    let keys: Vec<u8> = [1u32, 2].iter().flat_map(|k| k.to_ne_bytes()).collect();
    println!(
        "delete_batch [1, 2]: {}",
        unit(hash.delete_batch(&keys, 2, MapFlags::ANY, MapFlags::ANY))
    );
    println!(
        "delete_batch [1]: {}",
        unit(hash.delete_batch(&key(1), 1, MapFlags::ANY, MapFlags::ANY))
    );
    let keys: Vec<u8> = [20u32, 21, 22]
        .iter()
        .flat_map(|k| k.to_ne_bytes())
        .collect();
    let vals: Vec<u8> = [200u64, 210, 220]
        .iter()
        .flat_map(|v| v.to_ne_bytes())
        .collect();
    println!(
        "update_batch [20, 21, 22]: {}",
        unit(hash.update_batch(&keys, &vals, 3, MapFlags::ANY, MapFlags::ANY))
    );
    println!("contents: {}", dump_u64(hash));
    match hash.lookup_and_delete_batch(8, MapFlags::ANY, MapFlags::ANY) {
        Ok(it) => {
            let mut kv: Vec<(u32, u64)> = it.map(|(k, v)| (u32_at(&k, 0), u64_at(&v, 0))).collect();
            kv.sort_unstable();
            println!("lookup_and_delete_batch: {kv:?}");
        }
        Err(e) => println!("lookup_and_delete_batch: {}", err(&e)),
    }
    println!("keys after: {:?}", sorted_keys(hash));

    // ---------------------------------------------------------------- percpu
    println!("== percpu array");
    let pcpu = &skel.maps.pcpu;
    for k in 0..4u32 {
        match pcpu.lookup_percpu(&key(k), MapFlags::ANY) {
            Ok(Some(vals)) => {
                let sum: u64 = vals.iter().map(|v| u64_at(v, 0)).sum();
                println!(
                    "[{k}]: values == ncpus {}, sum {sum}, cpu0 {}",
                    vals.len() == ncpus,
                    u64_at(&vals[0], 0)
                );
            }
            other => println!("[{k}]: {}", show(other.map(|o| o.map(|v| v.len())))),
        }
    }
    let per_cpu: Vec<Vec<u8>> = (0..ncpus as u64).map(|i| val(1000 + i).to_vec()).collect();
    println!(
        "update_percpu [2]: {}",
        unit(pcpu.update_percpu(&key(2), &per_cpu, MapFlags::ANY))
    );
    match pcpu.lookup_percpu(&key(2), MapFlags::ANY) {
        Ok(Some(vals)) => println!("lookup_percpu [2] == written: {}", vals == per_cpu),
        other => println!(
            "lookup_percpu [2]: {}",
            show(other.map(|o| o.map(|v| v.len())))
        ),
    }
    println!(
        "lookup_percpu [4]: {}",
        show(
            pcpu.lookup_percpu(&key(4), MapFlags::ANY)
                .map(|o| o.map(|v| v.len()))
        )
    );
    println!(
        "update_percpu [4]: {}",
        unit(pcpu.update_percpu(&key(4), &per_cpu, MapFlags::ANY))
    );
    println!(
        "lookup on percpu: {}",
        show(pcpu.lookup(&key(0), MapFlags::ANY))
    );

    // ---------------------------------------------------------------- lru
    println!("== lru hash");
    let lru = &skel.maps.lru;
    println!("after bumps: {}", dump_u64(lru));
    for k in 10..16u32 {
        println!(
            "update [{k}]: {}",
            unit(lru.update(&key(k), &val(u64::from(k)), MapFlags::ANY))
        );
    }
    let keys = sorted_keys(lru);
    println!("entries <= 4: {}", keys.len() <= 4);
    println!(
        "newest [15]: {}",
        lookup_u64(lru.lookup(&key(15), MapFlags::ANY))
    );
    println!(
        "update [15] NOEXIST: {}",
        unit(lru.update(&key(15), &val(0), MapFlags::NO_EXIST))
    );
    println!("delete [15]: {}", unit(lru.delete(&key(15))));
    println!("delete [15]: {}", unit(lru.delete(&key(15))));

    // ---------------------------------------------------------------- rings
    println!("== ring buffer, perf buffer, queue (raw_tp emit)");
    let rb_events: RefCell<Vec<(u32, u32, u64)>> = RefCell::new(Vec::new());
    let stop_after: RefCell<Option<usize>> = RefCell::new(None);
    let perf_events: RefCell<Vec<(u32, u32, u64, bool)>> = RefCell::new(Vec::new());
    let lost: RefCell<u64> = RefCell::new(0);

    let mut builder = RingBufferBuilder::new();
    builder.add(&skel.maps.rb, |data: &[u8]| {
        let mut evs = rb_events.borrow_mut();
        evs.push((u32_at(data, 0), u32_at(data, 4), u64_at(data, 8)));
        match *stop_after.borrow() {
            Some(n) if evs.len() == n => -libc::ECANCELED,
            _ => 0,
        }
    })?;
    let ringbuf = builder.build()?;
    println!("ring buffer epoll_fd >= 0: {}", ringbuf.epoll_fd() >= 0);

    let perfbuf = PerfBufferBuilder::new(&skel.maps.perf)
        .pages(4)
        .sample_cb(|_cpu, data: &[u8]| {
            perf_events.borrow_mut().push((
                u32_at(data, 0),
                u32_at(data, 4),
                u64_at(data, 8),
                data.len() >= EVENT_SIZE,
            ));
        })
        .lost_cb(|_cpu, n| *lost.borrow_mut() += n)
        .build()?;
    println!(
        "perf buffer: buffers > 0: {}, epoll_fd >= 0: {}",
        perfbuf.buffer_cnt() > 0,
        perfbuf.epoll_fd() >= 0
    );

    println!(
        "emit(5, 1000): {}",
        run_raw_tp(&skel.progs.emit, &[5, 1000], None)
    );
    println!(
        "ring buffer poll: {}",
        unit(ringbuf.poll(Duration::from_millis(200)))
    );
    println!("ring buffer consume: {}", unit(ringbuf.consume()));
    for (seq, kind, value) in rb_events.borrow_mut().drain(..) {
        println!("  rb event seq {seq} kind {kind} value {value}");
    }
    println!(
        "perf buffer poll: {}",
        unit(perfbuf.poll(Duration::from_millis(200)))
    );
    println!("perf buffer consume: {}", unit(perfbuf.consume()));
    for (seq, kind, value, full) in perf_events.borrow_mut().drain(..) {
        println!("  perf event seq {seq} kind {kind} value {value} size ok {full}");
    }
    println!("perf lost: {}", *lost.borrow());

    // A callback that returns a negative value stops consumption; the
    // value comes back from consume, and the rest waits for the next call.
    *stop_after.borrow_mut() = Some(2);
    println!(
        "emit(3, 2000): {}",
        run_raw_tp(&skel.progs.emit, &[3, 2000], None)
    );
    println!(
        "ring buffer consume (stops at 2): {}",
        unit(ringbuf.consume())
    );
    println!("  events so far: {}", rb_events.borrow().len());
    *stop_after.borrow_mut() = None;
    println!("ring buffer consume: {}", unit(ringbuf.consume()));
    println!("  events: {:?}", rb_events.borrow());
    println!("ring buffer consume (empty): {}", unit(ringbuf.consume()));
    drop(ringbuf);
    println!("perf buffer consume: {}", unit(perfbuf.consume()));
    println!("  perf events: {}", perf_events.borrow().len());
    drop(perfbuf);

    let queue = &skel.maps.queue;
    println!(
        "queue push 500 (full): {}",
        unit(queue.update(&[], &500u32.to_ne_bytes(), MapFlags::ANY))
    );
    println!(
        "queue peek: {}",
        lookup_u64(queue.lookup(&[], MapFlags::ANY))
    );
    for _ in 0..5 {
        println!("queue pop: {}", lookup_u64(queue.lookup_and_delete(&[])));
    }
    println!(
        "queue push 500: {}",
        unit(queue.update(&[], &500u32.to_ne_bytes(), MapFlags::ANY))
    );
    println!(
        "queue push 501: {}",
        unit(queue.update(&[], &501u32.to_ne_bytes(), MapFlags::ANY))
    );
    println!(
        "queue peek: {}",
        lookup_u64(queue.lookup(&[], MapFlags::ANY))
    );
    println!("queue pop: {}", lookup_u64(queue.lookup_and_delete(&[])));
    println!("queue delete: {}", unit(queue.delete(&[])));
    {
        let bss = skel.maps.bss_data.as_deref().expect("bss mmap");
        let e = &bss.last_event;
        println!(
            "bss: runs {} last_event seq {} kind {} value {}",
            bss.runs, e.seq, e.kind, e.value
        );
    }

    // ---------------------------------------------------------------- freeze
    println!("== freeze");
    let frozen = MapHandle::try_from(&skel.maps.arr)?;
    println!("freeze arr: {}", unit(frozen.freeze()));
    println!(
        "update [0] after freeze: {}",
        unit(skel.maps.arr.update(&key(0), &val(1), MapFlags::ANY))
    );
    println!(
        "lookup [5] after freeze: {}",
        lookup_u64(skel.maps.arr.lookup(&key(5), MapFlags::ANY))
    );
    println!(
        "bump(5, 1) after freeze: {}",
        run_raw_tp(&skel.progs.bump, &[5, 1], None)
    );
    drop(frozen);

    // ---------------------------------------------------------------- btf
    println!("== btf");
    match skel.object().btf() {
        Ok(Some(btf)) => {
            for name in ["event", "sys_args"] {
                match btf.type_by_name::<Struct<'_>>(name) {
                    Some(s) => {
                        let members: Vec<String> = s
                            .iter()
                            .map(|m| {
                                let off = match m.attr {
                                    libbpf_rs::btf::types::MemberAttr::Normal { offset } => offset,
                                    libbpf_rs::btf::types::MemberAttr::BitField {
                                        offset, ..
                                    } => offset,
                                };
                                format!(
                                    "{}@{}",
                                    m.name
                                        .map(|n| n.to_string_lossy().into_owned())
                                        .unwrap_or_default(),
                                    off / 8
                                )
                            })
                            .collect();
                        println!(
                            "struct {name}: size {} members {}",
                            libbpf_rs::HasSize::size(&s),
                            members.join(" ")
                        );
                    }
                    None => println!("struct {name}: not found"),
                }
            }
            println!(
                "struct no_such_type: {}",
                btf.type_by_name::<Struct<'_>>("no_such_type").is_some()
            );
        }
        Ok(None) => println!("object has no BTF"),
        Err(e) => println!("btf: {}", err(&e)),
    }

    // ---------------------------------------------------------------- handles
    println!("== MapHandle::create");
    let opts = libbpf_sys::bpf_map_create_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as libbpf_sys::size_t,
        ..Default::default()
    };
    let standalone = MapHandle::create(MapType::Hash, Some("standalone"), 4, 8, 2, &opts)?;
    println!(
        "standalone: {:?} key {} value {} max {}",
        standalone.map_type(),
        standalone.key_size(),
        standalone.value_size(),
        standalone.max_entries()
    );
    match standalone.info() {
        Ok(info) => println!(
            "standalone info: name {} type {:?}",
            info.name().unwrap_or("?"),
            info.map_type()
        ),
        Err(e) => println!("standalone info: {}", err(&e)),
    }
    for k in 1..=3u32 {
        println!(
            "update [{k}]: {}",
            unit(standalone.update(&key(k), &val(u64::from(k) * 7), MapFlags::NO_EXIST))
        );
    }
    println!("contents: {}", dump_u64(&standalone));
    println!("delete [1]: {}", unit(standalone.delete(&key(1))));
    println!("delete [1]: {}", unit(standalone.delete(&key(1))));
    println!("freeze: {}", unit(standalone.freeze()));
    println!(
        "update [3] after freeze: {}",
        unit(standalone.update(&key(3), &val(3), MapFlags::ANY))
    );
    println!(
        "lookup [2] after freeze: {}",
        lookup_u64(standalone.lookup(&key(2), MapFlags::ANY))
    );
    drop(standalone);

    let parray = MapHandle::create(MapType::PercpuArray, Some("pcpu_handle"), 4, 4, 2, &opts)?;
    match parray.lookup_percpu(&key(1), MapFlags::ANY) {
        Ok(Some(vals)) => println!(
            "percpu handle [1]: values == ncpus {}, all zero {}",
            vals.len() == ncpus,
            vals.iter().all(|v| v.iter().all(|b| *b == 0))
        ),
        other => println!(
            "percpu handle [1]: {}",
            show(other.map(|o| o.map(|v| v.len())))
        ),
    }
    drop(parray);

    println!(
        "create hash key_size 0: {}",
        show(MapHandle::create(MapType::Hash, Some("bad"), 0, 8, 2, &opts).map(|_| ()))
    );
    println!(
        "create array max_entries 0: {}",
        show(MapHandle::create(MapType::Array, Some("bad"), 4, 8, 0, &opts).map(|_| ()))
    );
    Ok(())
}
