//! C programs against the built `libbpf.so.1`:
//!
//! - `smoke`: compiled against `/usr/include/bpf` and linked with
//!   `-L target/<profile> -lbpf`; exercises `libbpf_set_print` with a
//!   `va_list` callback, the version calls and a "not supported yet" stub;
//! - `open_inspect`: opens a BPF object compiled here with clang-16 and
//!   prints what the object API reports about it (and how bad inputs fail);
//!   the output must equal the same program's against the system libbpf;
//! - `system`: linked against the *system* libbpf (libbpf-dev), referencing
//!   every symbol it exports, `-z now`; run with `LD_LIBRARY_PATH` pointing
//!   at ours, it must load (every VERNEED node and versioned symbol resolves)
//!   and report our version.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{libbpf_so, run};

fn out_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("libbpf-so-c-abi");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn have(tool: &str, arg: &str) -> bool {
    Command::new(tool)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

const SMOKE: &str = r#"
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

static char logbuf[4096];
static size_t loglen;
static int calls;

static int cb(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	int n;

	calls++;
	n = vsnprintf(logbuf + loglen, sizeof(logbuf) - loglen, fmt, ap);
	if (n > 0)
		loglen += n;
	errno = EIO; /* libbpf restores errno around the callback */
	return level == LIBBPF_WARN ? 0 : 1;
}

#define CHECK(cond) do { if (!(cond)) { printf("FAIL line %d: %s\n", __LINE__, #cond); return 1; } } while (0)

int main(int argc, char **argv)
{
	struct bpf_prog_linfo *linfo;
	char buf[128];

	if (argc > 1 && strcmp(argv[1], "default") == 0) {
		/* default printer: stderr at WARN */
		linfo = bpf_prog_linfo__new(NULL);
		CHECK(linfo == NULL && errno == EOPNOTSUPP);
		return 0;
	}
	CHECK(libbpf_set_print(cb) != NULL); /* the default printer */
	CHECK(libbpf_major_version() == 1);
	printf("version %s (%u.%u)\n", libbpf_version_string(), libbpf_major_version(),
	       libbpf_minor_version());

	errno = 0;
	linfo = bpf_prog_linfo__new(NULL);
	CHECK(linfo == NULL);
	CHECK(errno == EOPNOTSUPP);
	linfo = bpf_prog_linfo__new(NULL);
	CHECK(linfo == NULL && errno == EOPNOTSUPP);
	CHECK(calls == 1); /* logged once */
	CHECK(strcmp(logbuf, "libbpf: bpf_prog_linfo__new is not supported by userbpf yet\n") == 0);
	printf("log: %s", logbuf);

	CHECK(bpf_object__gen_loader(NULL, NULL) == -EOPNOTSUPP && errno == EOPNOTSUPP);
	CHECK(calls == 2);
	CHECK(libbpf_get_error(NULL) == -EOPNOTSUPP);
	CHECK(libbpf_set_print(NULL) == cb);
	bpf_object__close(NULL); /* NULL is fine, logs nothing */
	CHECK(calls == 2);
	CHECK(libbpf_num_possible_cpus() > 0);
	CHECK(libbpf_strerror(-LIBBPF_ERRNO__VERIFY, buf, sizeof(buf)) == 0);
	CHECK(strcmp(buf, "Kernel verifier blocks program loading") == 0);
	CHECK(libbpf_set_strict_mode(LIBBPF_STRICT_ALL) == 0);
	printf("c smoke ok\n");
	return 0;
}
"#;

fn cc(src: &str, name: &str, link: &[&str]) -> PathBuf {
    let dir = out_dir();
    let c = dir.join(format!("{name}.c"));
    std::fs::write(&c, src).unwrap();
    let exe = dir.join(name);
    run(Command::new("cc")
        .args(["-Wall", "-Werror", "-O1", "-Wl,-z,now", "-o"])
        .arg(&exe)
        .arg(&c)
        .args(link));
    exe
}

fn run_with_ours(exe: &Path, lib_dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(exe)
        .args(args)
        .env("LD_LIBRARY_PATH", lib_dir)
        // The userspace backend is under test (as root, `auto` would load
        // kernel-type programs into the kernel).
        .env("USERBPF_BACKEND", "user")
        .env_remove("LIBBPF_LOG_LEVEL")
        .output()
        .unwrap()
}

#[test]
fn c_smoke() {
    if !have("cc", "--version") || !Path::new("/usr/include/bpf/libbpf.h").exists() {
        eprintln!("skipped: needs cc and libbpf-dev headers");
        return;
    }
    let so = libbpf_so();
    let lib_dir = so.parent().unwrap();
    let link = format!("-L{}", lib_dir.display());
    let exe = cc(SMOKE, "smoke", &[&link, "-lbpf"]);

    let needed = run(Command::new("readelf").arg("-V").arg(&exe));
    assert!(needed.contains("File: libbpf.so.1"), "{needed}");

    let out = run_with_ours(&exe, lib_dir, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    print!("{stdout}");
    assert!(out.status.success(), "smoke failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("version v1.7 (1.7)"), "{stdout}");
    assert!(stdout.contains("c smoke ok"), "{stdout}");
    assert!(stderr.is_empty(), "{stderr}");

    let out = run_with_ours(&exe, lib_dir, &["default"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stderr,
        "libbpf: bpf_prog_linfo__new is not supported by userbpf yet\n"
    );
}

#[test]
fn binary_linked_against_system_libbpf_loads_ours() {
    let system = Path::new("/usr/lib/x86_64-linux-gnu/libbpf.so");
    if !have("cc", "--version") || !system.exists() {
        eprintln!("skipped: needs cc and libbpf-dev");
        return;
    }
    // Every function the system libbpf exports, referenced with its version.
    let dynsym = run(Command::new("readelf")
        .args(["--dyn-syms", "--wide"])
        .arg(system));
    let syms: Vec<&str> = dynsym
        .lines()
        .filter(|l| l.contains(" FUNC ") && l.contains(" GLOBAL ") && !l.contains(" UND "))
        .filter_map(|l| {
            l.split_whitespace()
                .nth(7)?
                .split_once("@@")
                .map(|(s, _)| s)
        })
        .collect();
    assert!(
        syms.len() > 250,
        "only {} symbols in {}",
        syms.len(),
        system.display()
    );
    let mut src =
        String::from("#include <stdio.h>\nextern const char *libbpf_version_string(void);\n");
    for s in syms.iter().filter(|s| **s != "libbpf_version_string") {
        src.push_str(&format!("extern void {s}(void);\n"));
    }
    src.push_str("void *volatile table[] = {\n");
    for s in &syms {
        src.push_str(&format!("\t(void *){s},\n"));
    }
    src.push_str(
        "};\nint main(void) { printf(\"%s %zu\\n\", libbpf_version_string(), \
         sizeof(table) / sizeof(table[0])); return 0; }\n",
    );
    let exe = cc(
        &src,
        "system",
        &["-Wno-builtin-declaration-mismatch", "-lbpf"],
    );

    let so = libbpf_so();
    let out = run_with_ours(&exe, so.parent().unwrap(), &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(!stderr.contains("not found"), "{stderr}");
    // v1.7 is ours; the system library would say v1.1.
    assert_eq!(stdout.trim(), format!("v1.7 {}", syms.len()), "{stderr}");
    println!(
        "{} system-libbpf symbols resolved against ours (-z now)",
        syms.len()
    );
}

/// The BPF object `open_inspect` opens: two programs in different sections,
/// a `.maps` map, a `.text` subprogram and global data (`.data`, `.bss`,
/// `.rodata`).
const BPF_PROG: &str = r#"
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 128);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

__u64 hits = 1;
__u32 misses;
const volatile __u32 limit = 10;

static __noinline int bump(__u32 key)
{
	__u64 one = 1, *v = bpf_map_lookup_elem(&counts, &key);

	if (v)
		__sync_fetch_and_add(v, 1);
	else
		bpf_map_update_elem(&counts, &key, &one, BPF_ANY);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_openat")
int handle_openat(void *ctx)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;

	if (pid > limit)
		hits++;
	else
		misses++;
	return bump(pid);
}

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
"#;

/// Prints everything the open/inspect API reports; run against either
/// library, the output must be the same.
const OPEN_INSPECT: &str = r#"
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/libbpf.h>

static int warn_cb(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (level == LIBBPF_WARN)
		vfprintf(stderr, fmt, ap);
	return 0;
}

#define CHECK(cond) do { if (!(cond)) { printf("FAIL line %d: %s\n", __LINE__, #cond); return 1; } } while (0)

static unsigned long insn_sum(const struct bpf_program *prog)
{
	const unsigned char *p = (const unsigned char *)bpf_program__insns(prog);
	size_t i, n = bpf_program__insn_cnt(prog) * sizeof(struct bpf_insn);
	unsigned long h = 5381;

	for (i = 0; i < n; i++)
		h = h * 33 + p[i];
	return h;
}

static int dump(struct bpf_object *obj)
{
	struct bpf_program *prog, *first_prog = NULL;
	struct bpf_map *map, *first_map = NULL, *found_map;
	struct bpf_program *found_prog;
	int n, ret;

	printf("object %s\n", bpf_object__name(obj));
	bpf_object__for_each_program(prog, obj) {
		if (!first_prog)
			first_prog = prog;
		printf("prog %s sec=%s type=%d attach=%d autoload=%d insns=%zu sum=%lx\n",
		       bpf_program__name(prog), bpf_program__section_name(prog),
		       bpf_program__type(prog), bpf_program__expected_attach_type(prog),
		       bpf_program__autoload(prog), bpf_program__insn_cnt(prog), insn_sum(prog));
		CHECK(bpf_object__find_program_by_name(obj, bpf_program__name(prog)) == prog);
	}
	/* the same pointers every time, backwards too */
	CHECK(bpf_object__next_program(obj, NULL) == first_prog);
	n = 0;
	for (prog = bpf_object__prev_program(obj, NULL); prog; prog = bpf_object__prev_program(obj, prog))
		n++;
	printf("programs backwards: %d\n", n);
	bpf_object__for_each_map(map, obj) {
		if (!first_map)
			first_map = map;
		printf("map %s type=%d key=%u value=%u max=%u flags=%#x fd=%d\n",
		       bpf_map__name(map), bpf_map__type(map), bpf_map__key_size(map),
		       bpf_map__value_size(map), bpf_map__max_entries(map),
		       bpf_map__map_flags(map), bpf_map__fd(map));
		CHECK(bpf_object__find_map_by_name(obj, bpf_map__name(map)) == map);
	}
	CHECK(bpf_object__next_map(obj, NULL) == first_map);
	n = 0;
	for (map = bpf_object__prev_map(obj, NULL); map; map = bpf_object__prev_map(obj, map))
		n++;
	printf("maps backwards: %d\n", n);
	printf("find .rodata: %s\n", bpf_map__name(bpf_object__find_map_by_name(obj, ".rodata")));
	errno = 0;
	found_prog = bpf_object__find_program_by_name(obj, "nosuch");
	printf("find nosuch prog: %p errno=%d\n", (void *)found_prog, errno);
	errno = 0;
	found_map = bpf_object__find_map_by_name(obj, "nosuch");
	printf("find nosuch map: %p errno=%d\n", (void *)found_map, errno);
	prog = bpf_object__find_program_by_name(obj, "xdp_pass");
	CHECK(prog);
	ret = bpf_program__set_autoload(prog, false);
	printf("set_autoload: %d -> autoload=%d\n", ret, bpf_program__autoload(prog));
	ret = bpf_program__set_autoload(prog, true);
	printf("set_autoload: %d -> autoload=%d\n", ret, bpf_program__autoload(prog));
	errno = 0;
	ret = bpf_map__fd(NULL);
	printf("bpf_map__fd(NULL) = %d errno=%d\n", ret, errno);
	errno = 0;
	ret = bpf_map__fd(first_map);
	printf("bpf_map__fd(map) = %d errno=%d\n", ret, errno);
	return 0;
}

static void bad(const char *what, struct bpf_object *obj)
{
	printf("%s: %s errno=%d\n", what, obj ? "object" : "NULL", obj ? 0 : errno);
	bpf_object__close(obj);
}

int main(int argc, char **argv)
{
	const char *path = argv[1], *truncated = argv[2];
	struct { size_t sz; char bytes[120]; } big;
	struct bpf_object_open_opts opts;
	struct bpf_object *obj;
	static char buf[1 << 20];
	size_t len;
	FILE *f;

	CHECK(argc == 3);
	libbpf_set_print(warn_cb);

	obj = bpf_object__open_file(path, NULL);
	CHECK(obj);
	if (dump(obj))
		return 1;
	bpf_object__close(obj);

	f = fopen(path, "rb");
	CHECK(f);
	len = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	memset(&opts, 0, sizeof(opts));
	opts.sz = sizeof(opts);
	opts.object_name = "from_mem_object_long_name";
	obj = bpf_object__open_mem(buf, len, &opts);
	CHECK(obj);
	if (dump(obj))
		return 1;
	bpf_object__close(obj);

	obj = bpf_object__open(path);
	CHECK(obj);
	printf("bpf_object__open: %s\n", bpf_object__name(obj));
	bpf_object__close(obj);
	bpf_object__close(NULL);

	bad("truncated", bpf_object__open_file(truncated, NULL));
	bad("nonexistent", bpf_object__open_file("/nonexistent/x.bpf.o", NULL));
	bad("NULL path", bpf_object__open_file(NULL, NULL));
	bad("NULL buffer", bpf_object__open_mem(NULL, 0, NULL));
	opts.sz = 4;
	bad("opts sz=4", bpf_object__open_file(path, &opts));
	memset(&big, 0, sizeof(big));
	big.sz = sizeof(big);
	bad("opts zero tail", bpf_object__open_file(path, (void *)&big));
	big.bytes[100] = 1;
	bad("opts non-zero tail", bpf_object__open_file(path, (void *)&big));
	memset(&opts, 0, sizeof(opts));
	opts.sz = sizeof(opts);
	opts.kernel_log_size = 64;
	bad("log size without buffer", bpf_object__open_file(path, &opts));
	printf("done\n");
	return 0;
}
"#;

#[test]
fn open_inspect_matches_system_libbpf() {
    let system = Path::new("/usr/lib/x86_64-linux-gnu/libbpf.so");
    if !have("clang-16", "--version") {
        eprintln!("skipped: clang-16 is missing (needed to compile the BPF object)");
        return;
    }
    if !have("cc", "--version")
        || !system.exists()
        || !Path::new("/usr/include/bpf/libbpf.h").exists()
    {
        eprintln!("skipped: needs cc and libbpf-dev (headers and the system libbpf.so)");
        return;
    }
    let dir = out_dir();
    let src = dir.join("prog.bpf.c");
    std::fs::write(&src, BPF_PROG).unwrap();
    let obj = dir.join("prog.bpf.o");
    let mut clang = Command::new("clang-16");
    clang.args(["-g", "-O2", "-target", "bpf", "-c"]);
    for multiarch in [
        "/usr/include/x86_64-linux-gnu",
        "/usr/include/aarch64-linux-gnu",
    ] {
        if Path::new(multiarch).exists() {
            clang.arg(format!("-I{multiarch}"));
        }
    }
    run(clang.arg(&src).arg("-o").arg(&obj));
    let bytes = std::fs::read(&obj).unwrap();
    let truncated = dir.join("truncated.bpf.o");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();

    let so = libbpf_so();
    let lib_dir = so.parent().unwrap();
    let ours_link = format!("-L{}", lib_dir.display());
    let ours = cc(OPEN_INSPECT, "open_inspect_ours", &[&ours_link, "-lbpf"]);
    let reference = cc(OPEN_INSPECT, "open_inspect_system", &["-lbpf"]);

    let args = [obj.to_str().unwrap(), truncated.to_str().unwrap()];
    let got = run_with_ours(&ours, lib_dir, &args);
    let want = Command::new(&reference)
        .args(args)
        .env_remove("LD_LIBRARY_PATH")
        .env_remove("LIBBPF_LOG_LEVEL")
        .output()
        .unwrap();
    let (got_out, want_out) = (
        String::from_utf8_lossy(&got.stdout),
        String::from_utf8_lossy(&want.stdout),
    );
    println!(
        "--- ours:\n{got_out}--- warnings:\n{}",
        String::from_utf8_lossy(&got.stderr)
    );
    println!(
        "--- system libbpf:\n{want_out}--- warnings:\n{}",
        String::from_utf8_lossy(&want.stderr)
    );
    assert!(want.status.success(), "reference run failed:\n{want_out}");
    assert!(got.status.success(), "our run failed:\n{got_out}");
    assert!(got_out.contains("done\n"), "{got_out}");
    assert_eq!(got_out, want_out);
}
