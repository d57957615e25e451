//! C programs against the built `libbpf.so.1`:
//!
//! - `smoke`: compiled against `/usr/include/bpf` and linked with
//!   `-L target/<profile> -lbpf`; exercises `libbpf_set_print` with a
//!   `va_list` callback, the version calls and a "not supported yet" stub;
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
	struct bpf_object *obj;
	char buf[128];

	if (argc > 1 && strcmp(argv[1], "default") == 0) {
		/* default printer: stderr at WARN */
		obj = bpf_object__open_file("/nonexistent.bpf.o", NULL);
		CHECK(obj == NULL && errno == EOPNOTSUPP);
		return 0;
	}
	CHECK(libbpf_set_print(cb) != NULL); /* the default printer */
	CHECK(libbpf_major_version() == 1);
	printf("version %s (%u.%u)\n", libbpf_version_string(), libbpf_major_version(),
	       libbpf_minor_version());

	errno = 0;
	obj = bpf_object__open_file("/nonexistent.bpf.o", NULL);
	CHECK(obj == NULL);
	CHECK(errno == EOPNOTSUPP);
	obj = bpf_object__open_file("/nonexistent.bpf.o", NULL);
	CHECK(obj == NULL && errno == EOPNOTSUPP);
	CHECK(calls == 1); /* logged once */
	CHECK(strcmp(logbuf, "libbpf: bpf_object__open_file is not supported by userbpf yet\n") == 0);
	printf("log: %s", logbuf);

	CHECK(bpf_map_lookup_elem(3, buf, buf) == -EOPNOTSUPP && errno == EOPNOTSUPP);
	CHECK(calls == 2);
	CHECK(libbpf_get_error(NULL) == -EOPNOTSUPP);
	CHECK(libbpf_set_print(NULL) == cb);
	bpf_object__close(NULL); /* void stub */
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
        "libbpf: bpf_object__open_file is not supported by userbpf yet\n"
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
