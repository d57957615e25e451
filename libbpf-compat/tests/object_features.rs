//! Objects compiled from C with clang-16 (skipped without it): several
//! programs per section, subprograms shared by two programs, global data in
//! `.data`, `.rodata`, `.bss` and a custom `.data.*` section, BTF-defined maps
//! including map-in-map and prog-array `values`, `.kconfig` externs, a
//! `bpf_loop` callback, a `?`-section, unknown sections, legacy `maps`, and
//! CO-RE against the running kernel. Relocated instructions are checked
//! one by one. (When this was written, the system's libbpf 1.1.2 relocated
//! the `features` object to byte-identical instructions, with the same maps
//! and the same debug log up to map creation.)

mod object_support;

use object_support::compile_bpf;
use userbpf_libbpf_compat::object::{
    kernel_version_code, AttachType, InitSlot, KconfigSource, KernelEnv, LogLevel, MapKind,
    MapType, Object, ObjectError, OpenOptions, ProgType, TargetBtf, BPF_F_MMAPABLE,
    BPF_F_RDONLY_PROG,
};
use userbpf_runtime::isa::{
    Insn, BPF_PSEUDO_CALL, BPF_PSEUDO_FUNC, BPF_PSEUDO_MAP_IDX, BPF_PSEUDO_MAP_IDX_VALUE, CALL,
    LDDW,
};
use userbpf_runtime::program::Program;

const FEATURES_C: &str = r#"#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

struct inner_map {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
} inner1 SEC(".maps"), inner2 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 4);
	__type(key, __u32);
	__array(values, struct inner_map);
} outer SEC(".maps") = {
	.values = { [0] = &inner1, [2] = &inner2 },
};

int xdp_tail(struct xdp_md *ctx);

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, int (void *));
} jumps SEC(".maps") = {
	.values = { [1] = (void *)&xdp_tail },
};

int data_var = 7;
const volatile int ro_var = 42;
int bss_var;
int custom_var SEC(".data.custom") = 3;

extern int LINUX_KERNEL_VERSION __kconfig;
extern int CONFIG_HZ __kconfig __weak;

static __attribute__((noinline)) int add(int a, int b)
{
	return a + b + data_var;
}

__attribute__((noinline)) int twice(int x)
{
	return add(x, x);
}

SEC("tracepoint/syscalls/sys_enter_openat")
int prog_one(void *ctx)
{
	bss_var = twice(ro_var);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_close")
int prog_two(void *ctx)
{
	__u32 key = 0;
	__u64 *val = bpf_map_lookup_elem(&counts, &key);

	if (val)
		*val += add(1, custom_var);
	return LINUX_KERNEL_VERSION + CONFIG_HZ;
}

SEC("tracepoint/syscalls/sys_enter_close")
int tail_target(void *ctx)
{
	__u32 key = 0;

	return bpf_map_lookup_elem(&outer, &key) != 0;
}

static int loop_cb(__u32 index, void *ctx)
{
	bss_var += index;
	return 0;
}

SEC("xdp")
int with_loop(struct xdp_md *ctx)
{
	bpf_loop(4, loop_cb, 0, 0);
	bpf_tail_call(ctx, &jumps, 1);
	return XDP_PASS;
}

SEC("xdp")
int xdp_tail(struct xdp_md *ctx)
{
	return XDP_DROP;
}

SEC("?kprobe/do_nanosleep")
int not_autoloaded(void *ctx)
{
	return twice(1);
}
"#;

fn open_features() -> Option<Object> {
    let bytes = compile_bpf("features", FEATURES_C)?;
    let opts = OpenOptions {
        object_name: Some("testobj".into()),
        kconfig: Some("CONFIG_HZ=250\n".into()),
        ..OpenOptions::default()
    };
    Some(Object::open(&bytes, opts).expect("open"))
}

/// A target BTF that works on any machine: the object's own types (these
/// programs have no CO-RE relocations).
fn self_target(obj: &Object) -> TargetBtf {
    let raw = obj.btf().unwrap().raw_data().to_vec();
    TargetBtf::from_vmlinux(userbpf_btf_core::Btf::parse(&raw).unwrap())
}

fn test_env() -> KernelEnv {
    KernelEnv {
        release: "6.1.0-test".into(),
        kernel_version: kernel_version_code(6, 1, 0),
        has_bpf_cookie: true,
        has_syscall_wrapper: true,
        kconfig: KconfigSource::Nothing,
    }
}

/// `(pc, src, imm, second imm)` of every lddw.
fn lddws(insns: &[Insn]) -> Vec<(usize, u8, i32, i32)> {
    let mut out = Vec::new();
    let mut pc = 0;
    while pc + 1 < insns.len() {
        if insns[pc].code == LDDW {
            out.push((pc, insns[pc].src, insns[pc].imm, insns[pc + 1].imm));
            pc += 2;
        } else {
            pc += 1;
        }
    }
    out
}

/// Targets (absolute pcs) of the bpf-to-bpf calls in `insns`.
fn call_targets(insns: &[Insn]) -> Vec<(usize, usize)> {
    insns
        .iter()
        .enumerate()
        .filter(|(_, i)| i.code == CALL && i.src == BPF_PSEUDO_CALL)
        .map(|(pc, i)| (pc, (pc as i64 + 1 + i64::from(i.imm)) as usize))
        .collect()
}

#[test]
fn programs_sections_and_types() {
    let Some(obj) = open_features() else { return };
    assert_eq!(obj.name(), "testobj");
    assert_eq!(obj.license(), "Dual BSD/GPL");
    let progs: Vec<(&str, &str)> = obj
        .programs()
        .map(|p| (p.name(), p.section_name()))
        .collect();
    // libbpf's order: by section index, then offset within the section
    // (clang-16 puts xdp first, and xdp_tail before with_loop).
    assert_eq!(
        progs,
        [
            ("xdp_tail", "xdp"),
            ("with_loop", "xdp"),
            ("prog_one", "tracepoint/syscalls/sys_enter_openat"),
            ("prog_two", "tracepoint/syscalls/sys_enter_close"),
            ("tail_target", "tracepoint/syscalls/sys_enter_close"),
            ("not_autoloaded", "kprobe/do_nanosleep"),
        ]
    );
    let subprogs: Vec<&str> = obj.subprograms().map(|p| p.name()).collect();
    assert_eq!(subprogs, ["twice", "add", "loop_cb"]);
    let two = obj.program("prog_two").unwrap();
    assert_eq!(two.prog_type(), ProgType::TRACEPOINT);
    assert_eq!(two.attach_target(), Some("syscalls/sys_enter_close"));
    let xdp = obj.program("with_loop").unwrap();
    assert_eq!(xdp.prog_type(), ProgType::XDP);
    assert_eq!(xdp.expected_attach_type(), AttachType::XDP);
    assert_eq!(xdp.attach_target(), None);
    let kprobe = obj.program("not_autoloaded").unwrap();
    assert!(!kprobe.autoload(), "SEC(\"?...\") starts with autoload off");
    assert_eq!(kprobe.prog_type(), ProgType::KPROBE);
    assert_eq!(kprobe.attach_target(), Some("do_nanosleep"));
    assert!(
        obj.program("twice").is_none(),
        "subprograms are not programs"
    );
}

#[test]
fn maps_global_data_and_map_in_map() {
    let Some(obj) = open_features() else { return };
    let names: Vec<&str> = obj.maps().iter().map(|m| m.name()).collect();
    assert_eq!(
        names,
        [
            "inner1",
            "inner2",
            "outer",
            "jumps",
            "counts",
            "testobj.data",
            "testobj.rodata",
            ".data.custom",
            "testobj.bss",
            "testobj.kconfig",
        ]
    );
    let counts = obj.map("counts").unwrap();
    assert_eq!(counts.map_type(), MapType::HASH);
    assert_eq!(
        (counts.key_size(), counts.value_size(), counts.max_entries()),
        (4, 8, 16)
    );
    assert_ne!(counts.btf_key_type_id(), 0);
    assert_ne!(counts.btf_value_type_id(), 0);

    let outer = obj.map("outer").unwrap();
    assert_eq!(outer.map_type(), MapType::ARRAY_OF_MAPS);
    assert_eq!(outer.value_size(), 4);
    let inner = outer.inner_map().expect("inner map definition");
    assert_eq!(inner.name(), "outer.inner");
    assert_eq!(inner.map_type(), MapType::ARRAY);
    assert_eq!(
        (inner.key_size(), inner.value_size(), inner.max_entries()),
        (4, 4, 4)
    );
    assert_eq!(
        outer.init_slots(),
        [Some(InitSlot::Map(0)), None, Some(InitSlot::Map(1))]
    );
    let jumps = obj.map("jumps").unwrap();
    assert_eq!(jumps.map_type(), MapType::PROG_ARRAY);
    assert_eq!(
        jumps.init_slots(),
        [None, Some(InitSlot::Program("xdp_tail".into()))]
    );

    let data = obj.map(".data").unwrap();
    assert_eq!(data.kind(), MapKind::Data);
    assert_eq!(data.initial_data(), Some(&7i32.to_ne_bytes()[..]));
    assert_eq!(data.map_flags(), BPF_F_MMAPABLE);
    let rodata = obj.map(".rodata").unwrap();
    assert_eq!(rodata.initial_data(), Some(&42i32.to_ne_bytes()[..]));
    assert_eq!(rodata.map_flags(), BPF_F_RDONLY_PROG | BPF_F_MMAPABLE);
    let custom = obj.map(".data.custom").unwrap();
    assert_eq!(custom.initial_data(), Some(&3i32.to_ne_bytes()[..]));
    let bss = obj.map(".bss").unwrap();
    assert_eq!(bss.kind(), MapKind::Bss);
    assert_eq!(bss.initial_data(), Some(&[0u8; 4][..]));
    let kconfig = obj.map(".kconfig").unwrap();
    assert_eq!(kconfig.value_size(), 8);
    assert_eq!(kconfig.map_flags(), BPF_F_RDONLY_PROG | BPF_F_MMAPABLE);
    for map in obj.maps().iter().filter(|m| m.is_internal()) {
        assert_eq!(map.map_type(), MapType::ARRAY);
        assert_eq!((map.key_size(), map.max_entries()), (4, 1));
        assert_ne!(map.btf_value_type_id(), 0, "{}", map.name());
    }
}

#[test]
fn relocated_instructions() {
    let Some(mut obj) = open_features() else {
        return;
    };
    let target = self_target(&obj);
    obj.relocate_with(&target, &test_env()).expect("relocate");
    let idx = |name: &str| obj.map_index(name).unwrap() as i32;

    // kconfig externs: sorted by (alignment desc, size, name): CONFIG_HZ at
    // 0 (from the kconfig option), LINUX_KERNEL_VERSION at 4.
    let kconfig = obj
        .map(".kconfig")
        .unwrap()
        .initial_data()
        .unwrap()
        .to_vec();
    let mut expected = 250u32.to_ne_bytes().to_vec();
    expected.extend_from_slice(&kernel_version_code(6, 1, 0).to_ne_bytes());
    assert_eq!(kconfig, expected);

    // prog_one: twice() appended, then add(), which twice() calls without
    // an ELF relocation (same-section static call).
    let one = obj.program("prog_one").unwrap().relocated().unwrap();
    let subs: Vec<(&str, usize)> = one
        .subprogs
        .iter()
        .map(|s| (s.name.as_str(), s.insn_off))
        .collect();
    assert_eq!(
        subs.iter().map(|s| s.0).collect::<Vec<_>>(),
        ["twice", "add"]
    );
    let (twice_at, add_at) = (subs[0].1, subs[1].1);
    let calls = call_targets(&one.insns);
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].1, twice_at);
    assert!(calls[1].0 >= twice_at && calls[1].0 < add_at);
    assert_eq!(calls[1].1, add_at);
    let loads = lddws(&one.insns);
    // ro_var, bss_var (main), data_var (in add).
    assert!(loads
        .iter()
        .any(|l| (l.1, l.2, l.3) == (BPF_PSEUDO_MAP_IDX_VALUE, idx(".rodata"), 0)));
    assert!(loads
        .iter()
        .any(|l| l.1 == BPF_PSEUDO_MAP_IDX_VALUE && l.2 == idx(".bss")));
    assert!(loads
        .iter()
        .any(|l| l.0 > add_at && l.1 == BPF_PSEUDO_MAP_IDX_VALUE && l.2 == idx(".data")));

    // prog_two: only add() appended; map, custom data and kconfig loads.
    let two = obj.program("prog_two").unwrap().relocated().unwrap();
    assert_eq!(two.subprogs.len(), 1);
    assert_eq!(two.subprogs[0].name, "add");
    assert_eq!(call_targets(&two.insns), [(13, two.subprogs[0].insn_off)]);
    let loads = lddws(&two.insns);
    assert_eq!(loads[0], (4, BPF_PSEUDO_MAP_IDX, idx("counts"), 0));
    assert_eq!(
        loads[1],
        (9, BPF_PSEUDO_MAP_IDX_VALUE, idx(".data.custom"), 0)
    );
    assert_eq!(loads[2], (19, BPF_PSEUDO_MAP_IDX_VALUE, idx(".kconfig"), 4));
    assert_eq!(loads[3], (22, BPF_PSEUDO_MAP_IDX_VALUE, idx(".kconfig"), 0));

    // tail_target: the outer map.
    let tail = obj.program("tail_target").unwrap().relocated().unwrap();
    assert_eq!(
        lddws(&tail.insns)[0],
        (4, BPF_PSEUDO_MAP_IDX, idx("outer"), 0)
    );
    assert!(tail.subprogs.is_empty());

    // with_loop: the callback's address is a BPF_PSEUDO_FUNC lddw.
    let with_loop = obj.program("with_loop").unwrap().relocated().unwrap();
    assert_eq!(with_loop.subprogs.len(), 1);
    assert_eq!(with_loop.subprogs[0].name, "loop_cb");
    let func = lddws(&with_loop.insns)
        .into_iter()
        .find(|l| l.1 == BPF_PSEUDO_FUNC)
        .expect("callback address");
    assert_eq!(
        (func.0 as i64 + 1 + i64::from(func.2)) as usize,
        with_loop.subprogs[0].insn_off
    );
    assert!(lddws(&with_loop.insns)
        .iter()
        .any(|l| l.1 == BPF_PSEUDO_MAP_IDX && l.2 == idx("jumps")));

    // Autoload off: not relocated.
    assert!(obj.program("not_autoloaded").unwrap().relocated().is_none());

    // func_info: one record per function, at its final position; line_info
    // present.
    for prog in obj.programs().filter(|p| p.autoload()) {
        let r = prog.relocated().unwrap();
        let func_info = r.func_info.as_ref().expect("func_info");
        let offs: Vec<u32> = func_info.offsets_and_ids().map(|(off, _)| off).collect();
        let mut expected = vec![0u32];
        expected.extend(r.subprogs.iter().map(|s| s.insn_off as u32));
        assert_eq!(offs, expected, "{}", prog.name());
        let lines = r.line_info.as_ref().expect("line_info");
        assert!(lines.count() > 0);
        assert!(lines
            .offsets_and_ids()
            .all(|(off, _)| (off as usize) < r.insns.len()));
        Program::new(r.insns.clone()).unwrap_or_else(|e| panic!("{}: {e}", prog.name()));
    }

    // The log has libbpf's relocation lines.
    let call_pc = call_targets(&obj.program("prog_one").unwrap().relocated().unwrap().insns)[0].0;
    let line = format!(
        "prog 'prog_one': insn #{call_pc} relocated, imm {} points to subprog 'twice' (now at {twice_at} offset)",
        twice_at - call_pc - 1
    );
    assert!(obj
        .log()
        .iter()
        .any(|r| r.level == LogLevel::Debug && r.message == line));
}

#[test]
fn relocating_again_after_enabling_autoload() {
    let Some(mut obj) = open_features() else {
        return;
    };
    let target = self_target(&obj);
    obj.relocate_with(&target, &test_env()).unwrap();
    obj.program_mut("not_autoloaded")
        .unwrap()
        .set_autoload(true);
    obj.relocate_with(&target, &test_env()).unwrap();
    let r = obj.program("not_autoloaded").unwrap().relocated().unwrap();
    let names: Vec<&str> = r.subprogs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["twice", "add"]);
    Program::new(r.insns.clone()).unwrap();
}

#[test]
fn kconfig_needs_a_value_for_strong_externs() {
    let Some(bytes) = compile_bpf("kcfg", KCONFIG_STRONG_C) else {
        return;
    };
    let mut obj = Object::open(&bytes, OpenOptions::default()).unwrap();
    let target = self_target(&obj);
    // No system Kconfig at all: libbpf fails with -EINVAL.
    let err = obj.relocate_with(&target, &test_env()).unwrap_err();
    assert_eq!(err.to_string(), "failed to open system Kconfig");
    assert_eq!(err.errno(), 22);
    // A Kconfig without the option: the strong extern stays unresolved.
    let config = std::env::temp_dir().join(format!("userbpf-kconfig-{}", std::process::id()));
    std::fs::write(&config, "# comment\nCONFIG_OTHER=y\n").unwrap();
    let env = KernelEnv {
        kconfig: KconfigSource::Files(vec![config.clone()]),
        ..test_env()
    };
    let err = obj.relocate_with(&target, &env).unwrap_err();
    std::fs::remove_file(&config).unwrap();
    assert_eq!(
        err.to_string(),
        "extern 'CONFIG_NOT_THERE' (strong): not resolved"
    );
    assert_eq!(err.errno(), 3);
    let mut obj = Object::open(
        &bytes,
        OpenOptions {
            kconfig: Some("CONFIG_NOT_THERE=y".into()),
            ..OpenOptions::default()
        },
    )
    .unwrap();
    obj.relocate_with(&target, &test_env()).unwrap();
    assert_eq!(
        obj.map(".kconfig").unwrap().initial_data(),
        Some(&[1u8][..])
    );
    let bad = Object::open(
        &bytes,
        OpenOptions {
            kconfig: Some("CONFIG_NOT_THERE=m".into()),
            ..OpenOptions::default()
        },
    );
    let err = bad
        .unwrap()
        .relocate_with(&target, &test_env())
        .unwrap_err();
    assert_eq!(err.errno(), 22);
}

const KCONFIG_STRONG_C: &str = r#"
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
char LICENSE[] SEC("license") = "GPL";
extern _Bool CONFIG_NOT_THERE __kconfig;
SEC("socket") int sock(void *ctx) { return CONFIG_NOT_THERE; }
"#;

#[test]
fn legacy_maps_section_is_refused() {
    let Some(bytes) = compile_bpf("legacy", LEGACY_MAPS_C) else {
        return;
    };
    let err = Object::open(&bytes, OpenOptions::default()).unwrap_err();
    assert!(matches!(err, ObjectError::LegacyMapsSection));
    assert_eq!(
        err.to_string(),
        "elf: legacy map definitions in 'maps' section are not supported by libbpf v1.0+"
    );
    assert_eq!(err.errno(), 95);
}

const LEGACY_MAPS_C: &str = r#"
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
struct bpf_map_def_legacy { unsigned int type, key_size, value_size, max_entries; };
struct bpf_map_def_legacy SEC("maps") old_map = { BPF_MAP_TYPE_ARRAY, 4, 4, 1 };
char LICENSE[] SEC("license") = "GPL";
SEC("socket") int sock(void *ctx) { return bpf_map_lookup_elem(&old_map, &(int){0}) != 0; }
"#;

#[test]
fn unknown_section_opens_but_cannot_load() {
    let Some(bytes) = compile_bpf("unknown", UNKNOWN_SEC_C) else {
        return;
    };
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = log.clone();
    let opts = OpenOptions {
        log: Some(std::sync::Arc::new(move |level, msg: &str| {
            sink.lock().unwrap().push((level, msg.to_string()))
        })),
        ..OpenOptions::default()
    };
    let mut obj = Object::open(&bytes, opts).unwrap();
    let prog = obj.program("weird").unwrap();
    assert_eq!(prog.prog_type(), ProgType::UNSPEC);
    assert!(prog.sec_def().is_none());
    let err = prog.check_loadable().unwrap_err();
    assert_eq!(
        err.to_string(),
        "prog 'weird': missing BPF prog type, check ELF section name 'foo/bar'"
    );
    assert_eq!(err.errno(), 22);
    assert!(log.lock().unwrap().contains(&(
        LogLevel::Debug,
        "prog 'weird': unrecognized ELF section name 'foo/bar'".to_string()
    )));
    // Relocation does not care; the type may still be set by hand.
    let target = self_target(&obj);
    obj.relocate_with(&target, &test_env()).unwrap();
    let prog = obj.program_mut("weird").unwrap();
    prog.set_prog_type(ProgType::SOCKET_FILTER);
    prog.check_loadable().unwrap();
}

const UNKNOWN_SEC_C: &str = r#"
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
char LICENSE[] SEC("license") = "GPL";
SEC("foo/bar") int weird(void *ctx) { return 0; }
"#;

#[test]
fn core_relocation_against_the_running_kernel() {
    if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        eprintln!("skipped: no /sys/kernel/btf/vmlinux");
        return;
    }
    let Some(bytes) = compile_bpf("core", CORE_C) else {
        return;
    };
    let mut obj = Object::open(&bytes, OpenOptions::default()).unwrap();
    assert_eq!(obj.core_relo_records(), 2);
    let target = TargetBtf::system().unwrap();
    obj.relocate(&target).unwrap();
    assert_eq!(obj.core_relo_count(), 2);
    let vmlinux = target.vmlinux();
    let task = vmlinux
        .find_by_name_kind("task_struct", userbpf_btf_core::BtfKind::Struct)
        .unwrap();
    let userbpf_btf_core::TypeView::Struct(members) = vmlinux.type_by_id(task).unwrap().view()
    else {
        panic!("task_struct is not a struct")
    };
    let offset_of = |name: &str| {
        members
            .members()
            .find(|m| vmlinux.name_by_offset(m.name_off()) == Some(name))
            .map(|m| (m.bit_offset() / 8) as i16)
            .unwrap()
    };
    let r = obj.program("core_prog").unwrap().relocated().unwrap();
    assert_eq!(r.core_relos, 2);
    let offs: Vec<i16> = r
        .insns
        .iter()
        .filter(|i| i.class() == userbpf_runtime::isa::BPF_LDX && i.off != 0)
        .map(|i| i.off)
        .collect();
    // ctx[1], then the two CO-RE-relocated fields.
    assert_eq!(offs, [8, offset_of("pid"), offset_of("tgid")]);
    Program::new(r.insns.clone()).unwrap();
}

const CORE_C: &str = r#"
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
char LICENSE[] SEC("license") = "GPL";
struct task_struct { int pid; int tgid; } __attribute__((preserve_access_index));
SEC("tp_btf/sched_switch")
int core_prog(unsigned long long *ctx)
{
	struct task_struct *t = (void *)ctx[1];
	return t->pid + t->tgid;
}
"#;

#[test]
fn btf_custom_path_replaces_the_kernel_btf_for_core() {
    let Some(bytes) = compile_bpf("core_custom", CORE_C) else {
        return;
    };
    // The object's own BTF (task_struct { pid; tgid; }) stands in for the
    // kernel's, given as an ELF file with a .BTF section.
    let path = std::env::temp_dir().join(format!("userbpf-custom-btf-{}.o", std::process::id()));
    std::fs::write(&path, &bytes).unwrap();
    let opts = OpenOptions {
        btf_custom_path: Some(path.clone()),
        ..OpenOptions::default()
    };
    let mut obj = Object::open(&bytes, opts).unwrap();
    // The targets passed in are ignored for CO-RE when btf_custom_path is set.
    let unrelated = self_target(
        &Object::open(
            &compile_bpf("unrelated", UNKNOWN_SEC_C).unwrap(),
            OpenOptions::default(),
        )
        .unwrap(),
    );
    obj.relocate_with(&unrelated, &test_env()).unwrap();
    std::fs::remove_file(&path).unwrap();
    let r = obj.program("core_prog").unwrap().relocated().unwrap();
    let offs: Vec<i16> = r
        .insns
        .iter()
        .filter(|i| i.class() == userbpf_runtime::isa::BPF_LDX)
        .map(|i| i.off)
        .collect();
    assert_eq!(offs, [8, 0, 4]);
    assert!(obj
        .log()
        .iter()
        .any(|l| l.message.contains("matching candidate #0")));
}

const KSYM_C: &str = r#"
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
char LICENSE[] SEC("license") = "GPL";
struct rq { int cpu; } __attribute__((preserve_access_index));
extern const struct rq runqueues __ksym;
extern void bpf_rcu_read_lock(void) __ksym;
extern void bpf_rcu_read_unlock(void) __ksym;
extern void bpf_no_such_kfunc(void) __ksym __weak;
extern const void bpf_prog_active __ksym __weak;
SEC("tp_btf/sched_switch")
int uses_ksyms(void *ctx)
{
	bpf_rcu_read_lock();
	if (bpf_no_such_kfunc)
		bpf_no_such_kfunc();
	bpf_rcu_read_unlock();
	return (long)&runqueues + (long)&bpf_prog_active;
}
"#;

#[test]
fn ksyms_resolve_to_kernel_btf_ids() {
    use userbpf_btf_core::BtfKind;
    use userbpf_libbpf_compat::object::{ExternKind, POISON_CALL_KFUNC_BASE};
    use userbpf_runtime::isa::{BPF_PSEUDO_BTF_ID, BPF_PSEUDO_KFUNC_CALL};
    use userbpf_runtime::program::ProgramError;

    if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        eprintln!("skipped: no /sys/kernel/btf/vmlinux");
        return;
    }
    let Some(bytes) = compile_bpf("ksym", KSYM_C) else {
        return;
    };
    let mut obj = Object::open(&bytes, OpenOptions::default()).unwrap();
    let names: Vec<&str> = obj.externs().iter().map(|e| e.name()).collect();
    assert_eq!(
        names,
        [
            "bpf_no_such_kfunc",
            "bpf_prog_active",
            "bpf_rcu_read_lock",
            "bpf_rcu_read_unlock",
            "runqueues"
        ]
    );
    let target = TargetBtf::system().unwrap();
    obj.relocate(&target).unwrap();
    let vmlinux = target.vmlinux();
    let lock = vmlinux
        .find_by_name_kind("bpf_rcu_read_lock", BtfKind::Func)
        .unwrap();
    let unlock = vmlinux
        .find_by_name_kind("bpf_rcu_read_unlock", BtfKind::Func)
        .unwrap();
    let rq = vmlinux
        .find_by_name_kind("runqueues", BtfKind::Var)
        .unwrap();
    let resolved: Vec<bool> = obj.externs().iter().map(|e| e.is_resolved()).collect();
    assert_eq!(resolved, [false, false, true, true, true]);
    let ExternKind::Ksym(k) = obj.externs()[4].kind() else {
        panic!("runqueues is a ksym")
    };
    assert_eq!(
        (k.kernel_btf_id, k.kernel_btf_module.as_deref()),
        (rq, None)
    );

    let insns = obj.program("uses_ksyms").unwrap().insns().unwrap().to_vec();
    assert_eq!(
        (insns[0].code, insns[0].src, insns[0].imm),
        (CALL, BPF_PSEUDO_KFUNC_CALL, lock as i32)
    );
    // The address of an unresolved weak kfunc is 0, and calls to it are
    // poisoned as libbpf >= 1.3 does.
    assert_eq!((insns[1].src, insns[1].imm, insns[2].imm), (0, 0, 0));
    assert_eq!((insns[4].src, insns[4].imm), (0, POISON_CALL_KFUNC_BASE));
    // Typeless weak ksym: no /proc/kallsyms lookup, so address 0.
    assert_eq!((insns[5].src, insns[5].imm, insns[6].imm), (0, 0, 0));
    assert_eq!((insns[7].src, insns[7].imm), (BPF_PSEUDO_BTF_ID, rq as i32));
    assert_eq!(
        (insns[10].src, insns[10].imm),
        (BPF_PSEUDO_KFUNC_CALL, unlock as i32)
    );
    // The userspace runtime has no kfuncs.
    assert_eq!(Program::new(insns), Err(ProgramError::KfuncCall { pc: 0 }));
}

#[test]
fn strong_typeless_ksym_is_not_resolved() {
    let Some(bytes) = compile_bpf("typeless", TYPELESS_C) else {
        return;
    };
    let mut obj = Object::open(&bytes, OpenOptions::default()).unwrap();
    let target = self_target(&obj);
    let err = obj.relocate_with(&target, &test_env()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "extern 'bpf_prog_active' (strong): not resolved"
    );
    assert_eq!(err.errno(), 3);
}

const TYPELESS_C: &str = r#"
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
char LICENSE[] SEC("license") = "GPL";
extern const void bpf_prog_active __ksym;
SEC("socket") int sock(void *ctx) { return (long)&bpf_prog_active; }
"#;

const CUSTOM_SECTIONS_C: &str = r#"
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
char LICENSE[] SEC("license") = "GPL";
int long_named SEC(".data.a_very_long_section_name") = 5;
static const char greeting[] = "hello";
SEC("socket")
int sock(void *ctx)
{
	bpf_printk("%s", greeting);
	return long_named;
}
"#;

#[test]
fn custom_data_sections_keep_their_names() {
    let Some(bytes) = compile_bpf("custom", CUSTOM_SECTIONS_C) else {
        return;
    };
    let opts = OpenOptions {
        object_name: Some("custom_object".into()),
        ..OpenOptions::default()
    };
    let mut obj = Object::open(&bytes, opts).unwrap();
    let long = obj.map(".data.a_very_long_section_name").unwrap();
    // bpf_map__name gives the section name; the kernel gets 15 bytes.
    assert_eq!(long.name(), ".data.a_very_long_section_name");
    assert_eq!(long.kernel_name(), ".data.a_very_lo");
    assert_eq!(long.initial_data(), Some(&5i32.to_ne_bytes()[..]));
    let names: Vec<(&str, &str)> = obj
        .maps()
        .iter()
        .map(|m| (m.name(), m.kernel_name()))
        .collect();
    assert!(
        names.contains(&("custom_o.rodata", "custom_o.rodata")),
        "{names:?}"
    );
    assert!(obj.map("custom_o.rodata").is_some());
    assert!(obj.map(".rodata").is_some());
    let target = self_target(&obj);
    obj.relocate_with(&target, &test_env()).unwrap();
    let insns = obj.program("sock").unwrap().insns().unwrap().to_vec();
    Program::new(insns).unwrap();
}

#[test]
fn objects_can_move_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Object>();
    assert_send_sync::<TargetBtf>();
}
