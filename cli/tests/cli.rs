//! The `userbpf` command: help, `libdir`, `load` and `start` (the
//! environment they exec with, what they refuse) and `list` (records this
//! test publishes itself).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use userbpf_runtime::registry::{kind, AttachKind, RecordData, RegistryFile, Role};

fn userbpf() -> Command {
    Command::new(env!("CARGO_BIN_EXE_userbpf"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn show(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// A fresh directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("userbpf-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Copies `src` to the executable `dest` with `install`: a child another
/// test thread forks while this process holds a write fd on `dest` would
/// inherit it, and executing `dest` would fail with ETXTBSY.
fn install_exe(src: &Path, dest: &Path) {
    let st = Command::new("install")
        .args(["-m", "755"])
        .arg(src)
        .arg(dest)
        .status()
        .unwrap();
    assert!(
        st.success(),
        "install {} {}: {st}",
        src.display(),
        dest.display()
    );
}

/// An executable shell script in `dir`.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    // Written here, not executable; installed as `path` by a child.
    let staging = dir.join(format!("{name}.in"));
    std::fs::write(&staging, format!("#!/bin/sh\n{body}\n")).unwrap();
    install_exe(&staging, &path);
    path
}

/// What `userbpf libdir` prints; the test fails if libbpf.so.1 is not built.
fn libdir() -> PathBuf {
    let out = userbpf().arg("libdir").output().unwrap();
    assert!(
        out.status.success(),
        "build it first: cargo build --release -p userbpf-libbpf-so\n{}",
        show(&out)
    );
    PathBuf::from(text(&out.stdout).trim())
}

#[test]
fn libdir_names_the_directory_of_libbpf_so_1() {
    let lib = libdir().join("libbpf.so.1");
    let bytes = std::fs::read(&lib).unwrap();
    assert_eq!(
        &bytes[..4],
        b"\x7fELF",
        "{} is a shared object",
        lib.display()
    );
}

#[test]
fn list_reports_an_empty_namespace() {
    let dir = scratch("empty");
    let out = userbpf()
        .arg("list")
        .env("USERBPF_DIR", &dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("no live loaders"), "{text}");
    assert!(text.contains("no attached processes"), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_subcommand_has_help() {
    for sub in [
        "libdir",
        "list",
        "trace-pipe",
        "load",
        "start",
        "attach",
        "detach",
    ] {
        let out = userbpf().args([sub, "--help"]).output().unwrap();
        assert!(out.status.success(), "{sub} --help: {}", show(&out));
        assert!(!out.stdout.is_empty());
    }
    let out = userbpf().args(["load", "--help"]).output().unwrap();
    let help = text(&out.stdout);
    assert!(help.contains("LD_LIBRARY_PATH"), "{help}");
    assert!(help.contains("--namespace"), "{help}");
    let out = userbpf().args(["start", "--help"]).output().unwrap();
    let help = text(&out.stdout);
    assert!(help.contains("LD_PRELOAD"), "{help}");
    assert!(help.contains("--engine"), "{help}");
    let out = userbpf().args(["attach", "--help"]).output().unwrap();
    let help = text(&out.stdout);
    assert!(help.contains("ptrace"), "{help}");
    assert!(help.contains("--timeout"), "{help}");
}

#[test]
fn load_prefixes_ld_library_path_and_passes_everything_through() {
    let lib = libdir();
    let dir = scratch("load-env");
    let tool = script(
        &dir,
        "tool.sh",
        r#"echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
echo "USERBPF_NAMESPACE=$USERBPF_NAMESPACE"
echo "USERBPF_DIR=${USERBPF_DIR-unset}"
echo "USERBPF_ENGINE=$USERBPF_ENGINE"
echo "ARGS=$*"
echo "PID=$$"
exit 7"#,
    );
    let child = userbpf()
        .args(["load", "--namespace", "clitest", "--engine", "jit", "--"])
        .arg(&tool)
        .args(["--help", "-x", "two words"])
        .env("LD_LIBRARY_PATH", "/old/lib")
        .env("USERBPF_DIR", "/somewhere/else")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let stdout = text(&out.stdout);
    // The tool's own exit status.
    assert_eq!(out.status.code(), Some(7), "{}", show(&out));
    let want = format!("LD_LIBRARY_PATH={}:/old/lib", lib.display());
    assert!(stdout.contains(&want), "want {want}\n{}", show(&out));
    assert!(stdout.contains("USERBPF_NAMESPACE=clitest\n"), "{stdout}");
    assert!(stdout.contains("USERBPF_DIR=unset\n"), "{stdout}");
    assert!(stdout.contains("USERBPF_ENGINE=jit\n"), "{stdout}");
    assert!(stdout.contains("ARGS=--help -x two words\n"), "{stdout}");
    // exec, not spawn: the tool is the process we started.
    assert!(stdout.contains(&format!("PID={pid}\n")), "{stdout}");

    // Without a previous value: only ours.
    let out = userbpf()
        .args(["load"])
        .arg(&tool)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("LD_LIBRARY_PATH={}\n", lib.display())),
        "{}",
        show(&out)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn load_passes_signals_through() {
    libdir();
    let dir = scratch("load-signal");
    let tool = script(&dir, "die.sh", "kill -TERM $$");
    let out = userbpf().arg("load").arg(&tool).output().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc::SIGTERM), "{}", show(&out));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A statically linked executable: built with `cc -static`, else Debian's
/// static-pie ldconfig.
fn static_binary(dir: &Path) -> PathBuf {
    let src = dir.join("static.c");
    std::fs::write(
        &src,
        "#include <stdio.h>\nint main(void){puts(\"ran\");return 0;}\n",
    )
    .unwrap();
    let exe = dir.join("static");
    let built = Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(&exe)
        .arg(&src)
        .output()
        .is_ok_and(|o| o.status.success());
    if built {
        exe
    } else {
        PathBuf::from("/sbin/ldconfig")
    }
}

#[test]
fn load_refuses_a_static_binary() {
    libdir();
    let dir = scratch("load-static");
    let exe = static_binary(&dir);
    let out = userbpf().arg("load").arg(&exe).output().unwrap();
    assert!(!out.status.success(), "{}", show(&out));
    let err = text(&out.stderr);
    assert!(err.contains("statically linked"), "{err}");
    assert!(
        out.stdout.is_empty(),
        "the binary must not run: {}",
        show(&out)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn load_refuses_a_tool_that_does_not_load_libbpf_so_1() {
    libdir();
    let out = userbpf().args(["load", "/usr/bin/env"]).output().unwrap();
    assert!(!out.status.success(), "{}", show(&out));
    let err = text(&out.stderr);
    assert!(err.contains("does not load libbpf.so.1"), "{err}");
    assert!(out.stdout.is_empty(), "env must not run: {}", show(&out));
    // --no-check runs it anyway (PATH lookup included).
    let out = userbpf()
        .args(["load", "--no-check", "env"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        text(&out.stdout).contains("LD_LIBRARY_PATH="),
        "{}",
        show(&out)
    );
}

#[test]
fn load_and_start_report_a_missing_program() {
    for sub in ["load", "start"] {
        let out = userbpf()
            .args([sub, "--", "/nonexistent/userbpf-tool"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = text(&out.stderr);
        // (or, for a build without the libraries, what is missing)
        assert!(
            err.contains("/nonexistent/userbpf-tool") || err.contains("build it with"),
            "{sub}: {err}"
        );
    }
}

#[test]
fn start_prefixes_ld_preload_with_the_agent() {
    let dir = scratch("start-env");
    let target = script(
        &dir,
        "target.sh",
        r#"echo "LD_PRELOAD=$LD_PRELOAD"
echo "USERBPF_NAMESPACE=$USERBPF_NAMESPACE"
echo "ARGS=$*"
exit 3"#,
    );
    let out = userbpf()
        .args(["start", "--namespace", "clitest-start"])
        .arg(&target)
        .args(["a", "--b"])
        .env("LD_PRELOAD", "/nonexistent/libold.so")
        // The agent would start in /bin/sh: only the environment is tested here.
        .env("USERBPF_AGENT_DISABLE", "1")
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(
        !text(&out.stderr).contains("libuserbpf_agent.so not found"),
        "build it first: cargo build --release -p userbpf-agent\n{}",
        show(&out)
    );
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let preload = stdout
        .lines()
        .find_map(|l| l.strip_prefix("LD_PRELOAD="))
        .unwrap_or_else(|| panic!("{}", show(&out)));
    let (agent, rest) = preload.split_once(':').expect("agent:previous");
    assert_eq!(rest, "/nonexistent/libold.so");
    let agent = Path::new(agent);
    assert!(agent.is_absolute(), "{}", agent.display());
    assert!(
        agent.ends_with("libuserbpf_agent.so"),
        "{}",
        agent.display()
    );
    assert!(agent.exists(), "{}", agent.display());
    let exe_dir = Path::new(env!("CARGO_BIN_EXE_userbpf")).parent().unwrap();
    assert_eq!(
        agent.parent().unwrap(),
        exe_dir.canonicalize().unwrap(),
        "the agent next to userbpf"
    );
    assert!(
        stdout.contains("USERBPF_NAMESPACE=clitest-start\n"),
        "{stdout}"
    );
    assert!(stdout.contains("ARGS=a --b\n"), "{stdout}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn start_refuses_a_static_binary() {
    let dir = scratch("start-static");
    let exe = static_binary(&dir);
    let out = userbpf().arg("start").arg(&exe).output().unwrap();
    assert!(!out.status.success(), "{}", show(&out));
    let err = text(&out.stderr);
    assert!(
        err.contains("statically linked") || err.contains("libuserbpf_agent.so not found"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "{}", show(&out));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_userbpf_without_its_libraries_says_what_is_missing() {
    let dir = scratch("alone");
    let exe = dir.join("userbpf");
    install_exe(Path::new(env!("CARGO_BIN_EXE_userbpf")), &exe);
    let out = Command::new(&exe)
        .args(["start", "/bin/true"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("libuserbpf_agent.so not found"), "{err}");
    assert!(
        err.contains("cargo build --release -p userbpf-agent"),
        "{err}"
    );
    let out = Command::new(&exe)
        .args(["load", "/bin/true"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("holds no libbpf.so.1"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_namespace_names_are_refused() {
    for name in ["", "a/b", ".."] {
        let out = userbpf()
            .args(["list", "--namespace", name])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{name:?}");
    }
}

fn record(kind_: u32, id: u32) -> RecordData {
    let mut d = RecordData::zeroed();
    d.kind = kind_;
    d.id = id;
    d.fd = -1;
    d
}

#[test]
fn list_shows_published_links_and_agent_attachments() {
    let name = format!("cli-test-{}", std::process::id());
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    let dir = PathBuf::from(format!("/dev/shm/userbpf-{uid}/{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    let _cleanup = RemoveDir(dir.clone());
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();

    let loader = RegistryFile::create_as(&dir, Role::Loader).unwrap();
    let mut prog = record(kind::PROG, 901);
    prog.type_ = 2; // BPF_PROG_TYPE_KPROBE
    prog.set_name("count_malloc");
    loader.add(&prog).unwrap();
    let mut map = record(kind::MAP, 902);
    map.type_ = 1; // BPF_MAP_TYPE_HASH
    map.set_name("counts");
    loader.add(&map).unwrap();
    let mut link = record(kind::LINK, 903);
    link.type_ = AttachKind::Uprobe as u32;
    link.prog_id = 901;
    link.set_name("count_malloc");
    link.set_path("/usr/lib/x86_64-linux-gnu/libc.so.6")
        .unwrap();
    link.offset = 0x9a0a0;
    link.cookie = 42;
    loader.add(&link).unwrap();
    let mut ret = record(kind::LINK, 904);
    ret.type_ = AttachKind::Uretprobe as u32;
    ret.prog_id = 901;
    ret.pid = 4321;
    ret.set_name("count_malloc");
    ret.set_path("/usr/bin/victim").unwrap();
    ret.offset = 0x1130;
    ret.cookie = 7;
    loader.add(&ret).unwrap();
    let mut usdt = record(kind::LINK, 905);
    usdt.type_ = AttachKind::Usdt as u32;
    usdt.prog_id = 901;
    usdt.set_name("count_malloc");
    usdt.set_path("/usr/bin/victim").unwrap();
    usdt.offset = 0x1200;
    usdt.ref_ctr_offset = 0x4010;
    loader.add(&usdt).unwrap();

    let agent = RegistryFile::create_as(&dir, Role::Agent).unwrap();
    let mut ok = record(kind::ATTACHMENT, 903);
    ok.prog_id = 901;
    ok.offset = 0x7f00_0000_10a0;
    agent.add(&ok).unwrap();
    let mut failed = record(kind::ATTACHMENT, 904);
    failed.prog_id = 901;
    failed.offset = 0x5555_0000_1130;
    failed.flags = libc::ENOENT as u64;
    agent.add(&failed).unwrap();

    let pid = std::process::id();
    let out = userbpf()
        .args(["list", "--namespace", &name])
        // --namespace wins over a directory named outright.
        .env("USERBPF_DIR", "/nonexistent")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let t = text(&out.stdout);
    let has = |needle: &str| assert!(t.contains(needle), "want {needle:?} in:\n{t}");
    has(&format!("loader pid {pid} ("));
    has("prog 901   kprobe         count_malloc");
    has("map  902   hash           counts");
    has("link 903   uprobe         prog 901 (count_malloc) pid all");
    has("/usr/lib/x86_64-linux-gnu/libc.so.6+0x9a0a0 cookie 42");
    has("link 904   uretprobe      prog 901 (count_malloc) pid 4321");
    has("/usr/bin/victim+0x1130 cookie 7");
    has("link 905   usdt");
    has("/usr/bin/victim+0x1200 cookie 0 semaphore 0x4010");
    has("attached processes");
    has(&format!("process pid {pid} ("));
    has("2 attachment(s)");
    has("link 903   uprobe         prog 901 (count_malloc) at 0x7f00000010a0 installed");
    has("link 904   uretprobe      prog 901 (count_malloc) at 0x555500001130 error 2 (No such file or directory)");

    let out = userbpf()
        .args(["list", "--json", "--namespace", &name])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let j = text(&out.stdout);
    let has = |needle: &str| assert!(j.contains(needle), "want {needle:?} in:\n{j}");
    has(&format!("\"pid\":{pid},"));
    has("{\"id\":901,\"type\":2,\"type_name\":\"kprobe\",\"name\":\"count_malloc\"}");
    has("{\"id\":902,\"type\":1,\"type_name\":\"hash\",\"name\":\"counts\"}");
    has("{\"id\":903,\"kind\":\"uprobe\",\"prog_id\":901,\"prog_name\":\"count_malloc\",\"pid\":0,\"targets\":[{\"path\":\"/usr/lib/x86_64-linux-gnu/libc.so.6\",\"offset\":630944,\"cookie\":42,\"ref_ctr_offset\":0}]}");
    has("{\"link_id\":903,\"prog_id\":901,\"prog_name\":\"count_malloc\",\"address\":139637976731808,\"installed\":true,\"errno\":0}");
    has("\"installed\":false,\"errno\":2,\"error\":\"No such file or directory\"");
    assert_eq!(j.matches('{').count(), j.matches('}').count());

    // Gone with their owners.
    drop(loader);
    drop(agent);
    let out = userbpf()
        .args(["list", "--namespace", &name])
        .output()
        .unwrap();
    let t = text(&out.stdout);
    assert!(t.contains("no live loaders"), "{t}");
    assert!(t.contains("no attached processes"), "{t}");
}

/// Removes a directory when dropped (also when a test fails).
struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
