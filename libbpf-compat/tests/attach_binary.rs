//! `attach::binary` against independent sources: offsets computed from
//! `readelf -Ws --dyn-syms` and `readelf -SW` output, and small binaries
//! built here with clang-16 for the `.symtab` rules.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use userbpf_libbpf_compat::attach::binary::{
    find_func_offset, function_containing, resolve_binary_path, resolve_pattern_offsets,
    resolve_syms_offsets, BinaryError, BinaryId, LIBBPF_ERRNO_FORMAT,
};

/// One symbol line of `readelf -Ws`.
#[derive(Clone, Debug)]
struct RSym {
    table: String,
    value: u64,
    size: u64,
    typ: String,
    bind: String,
    ndx: Option<usize>,
    /// As readelf prints it (`name@@VER` for dynamic symbols).
    name: String,
}

struct Readelf {
    syms: Vec<RSym>,
    /// Section index -> (addr, offset).
    sections: HashMap<usize, (u64, u64)>,
}

impl Readelf {
    fn of(path: &Path) -> Readelf {
        // By absolute path: `path_resolution` changes PATH while other
        // tests run.
        let out = Command::new("/usr/bin/readelf")
            .args(["-W", "-s", "--dyn-syms", "-S"])
            .arg(path)
            .output()
            .expect("readelf");
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        let mut syms = Vec::new();
        let mut sections = HashMap::new();
        let mut table = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("Symbol table '") {
                table = rest.split('\'').next().unwrap().to_owned();
                continue;
            }
            let t = line.trim_start();
            if let Some(rest) = t.strip_prefix('[') {
                // "[Nr] Name Type Address Off Size ..."
                let (nr, rest) = rest.split_once(']').unwrap();
                let Ok(nr) = nr.trim().parse::<usize>() else {
                    continue;
                };
                let f: Vec<&str> = rest.split_whitespace().collect();
                // Section 0 has no name: fields shift by one.
                let (addr, off) = if nr == 0 { (f[1], f[2]) } else { (f[2], f[3]) };
                sections.insert(
                    nr,
                    (
                        u64::from_str_radix(addr, 16).unwrap(),
                        u64::from_str_radix(off, 16).unwrap(),
                    ),
                );
                continue;
            }
            let f: Vec<&str> = t.split_whitespace().collect();
            if f.len() < 8
                || !f[0].ends_with(':')
                || f[0].trim_end_matches(':').parse::<u32>().is_err()
            {
                continue;
            }
            syms.push(RSym {
                table: table.clone(),
                value: u64::from_str_radix(f[1], 16).unwrap(),
                size: f[2].parse().unwrap_or(0),
                typ: f[3].to_owned(),
                bind: f[4].to_owned(),
                ndx: f[6].parse().ok(),
                name: f[7].to_owned(),
            });
        }
        Readelf { syms, sections }
    }

    fn offset(&self, s: &RSym) -> u64 {
        let (addr, off) = self.sections[&s.ndx.expect("defined symbol")];
        s.value - addr + off
    }

    /// The file offset of the symbol printed exactly as `name`.
    fn offset_of(&self, name: &str) -> u64 {
        let s = self
            .syms
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("{name} not in readelf output"));
        self.offset(s)
    }

    fn get(&self, name: &str) -> &RSym {
        self.syms.iter().find(|s| s.name == name).unwrap()
    }
}

fn libc() -> PathBuf {
    resolve_binary_path("libc.so.6").expect("libc.so.6 on the search path")
}

fn errno<T: std::fmt::Debug>(r: Result<T, BinaryError>) -> i32 {
    r.expect_err("an error").errno()
}

#[test]
fn libc_offsets_match_readelf() {
    let libc = libc();
    let re = Readelf::of(&libc);
    for name in ["malloc", "free", "fopen"] {
        let expected = re.offset_of(&format!("{name}@@GLIBC_2.2.5"));
        assert_eq!(find_func_offset(&libc, name).unwrap(), expected, "{name}");
        // Both version spellings select the same default version.
        assert_eq!(
            find_func_offset(&libc, &format!("{name}@@GLIBC_2.2.5")).unwrap(),
            expected
        );
        assert_eq!(
            find_func_offset(&libc, &format!("{name}@GLIBC_2.2.5")).unwrap(),
            expected
        );
        // A version the symbol does not have.
        assert_eq!(
            errno(find_func_offset(&libc, &format!("{name}@GLIBC_9.9"))),
            libc::ENOENT
        );
    }
    // realpath has two global versions at different offsets: a bare name
    // is ambiguous (libbpf: -LIBBPF_ERRNO__FORMAT), a versioned one is not.
    let new = re.offset_of("realpath@@GLIBC_2.3");
    let old = re.offset_of("realpath@GLIBC_2.2.5");
    assert_ne!(new, old);
    let err = find_func_offset(&libc, "realpath").unwrap_err();
    assert_eq!(err.errno(), LIBBPF_ERRNO_FORMAT);
    assert!(
        err.to_string()
            .starts_with("elf: ambiguous match for 'realpath'"),
        "{err}"
    );
    assert_eq!(find_func_offset(&libc, "realpath@@GLIBC_2.3").unwrap(), new);
    assert_eq!(find_func_offset(&libc, "realpath@GLIBC_2.3").unwrap(), new);
    assert_eq!(
        find_func_offset(&libc, "realpath@GLIBC_2.2.5").unwrap(),
        old
    );
    // memcpy@@GLIBC_2.14 is an IFUNC, which libbpf does not consider: the
    // bare name finds the plain function of the old version.
    assert_eq!(re.get("memcpy@@GLIBC_2.14").typ, "IFUNC");
    assert_eq!(re.get("memcpy@GLIBC_2.2.5").typ, "FUNC");
    assert_eq!(
        find_func_offset(&libc, "memcpy").unwrap(),
        re.offset_of("memcpy@GLIBC_2.2.5")
    );
    assert_eq!(
        errno(find_func_offset(&libc, "memcpy@@GLIBC_2.14")),
        libc::ENOENT
    );
    // A prefix is not a match.
    assert_eq!(errno(find_func_offset(&libc, "mallo")), libc::ENOENT);
    let err = find_func_offset(&libc, "no_such_function_xyz").unwrap_err();
    assert_eq!(err.errno(), libc::ENOENT);
    assert_eq!(
        err.to_string(),
        format!(
            "elf: failed to find symbol 'no_such_function_xyz' in '{}'",
            libc.display()
        )
    );
}

#[test]
fn function_containing_uses_symbol_sizes() {
    let libc = libc();
    let re = Readelf::of(&libc);
    let malloc = re.get("malloc@@GLIBC_2.2.5");
    let off = re.offset(malloc);
    assert!(malloc.size > 8);
    assert_eq!(function_containing(&libc, off), Some((off, malloc.size)));
    assert_eq!(
        function_containing(&libc, off + 5),
        Some((off, malloc.size))
    );
    assert_eq!(
        function_containing(&libc, off + malloc.size - 1),
        Some((off, malloc.size))
    );
    assert_ne!(
        function_containing(&libc, off + malloc.size).map(|f| f.0),
        Some(off)
    );
    // The ELF header is in no function.
    assert_eq!(function_containing(&libc, 0), None);
    assert_eq!(function_containing(Path::new("/nonexistent/x"), 0), None);
}

#[test]
fn patterns_and_symbol_lists() {
    let libc = libc();
    let re = Readelf::of(&libc);
    // libc has no .symtab: the pattern runs over .dynsym, FUNC only, in
    // table order, names without their version.
    assert!(!re.syms.iter().any(|s| s.table == ".symtab"));
    let expected: Vec<u64> = re
        .syms
        .iter()
        .filter(|s| s.table == ".dynsym" && s.typ == "FUNC" && s.ndx.is_some())
        .filter(|s| {
            let base = s.name.split('@').next().unwrap();
            base.starts_with("pthread_cond_") && base.len() > "pthread_cond_".len()
        })
        .map(|s| re.offset(s))
        .collect();
    assert!(expected.len() >= 4, "{expected:?}");
    assert_eq!(
        resolve_pattern_offsets(&libc, "pthread_cond_*").unwrap(),
        expected
    );
    let one = resolve_pattern_offsets(&libc, "m?lloc").unwrap();
    assert_eq!(one, vec![re.offset_of("malloc@@GLIBC_2.2.5")]);
    assert_eq!(
        errno(resolve_pattern_offsets(&libc, "no_such_*_xyz")),
        libc::ENOENT
    );

    let got = resolve_syms_offsets(&libc, &["free", "malloc"]).unwrap();
    assert_eq!(
        got,
        vec![
            re.offset_of("free@@GLIBC_2.2.5"),
            re.offset_of("malloc@@GLIBC_2.2.5")
        ]
    );
    assert_eq!(
        errno(resolve_syms_offsets(&libc, &["malloc", "no_such_xyz"])),
        libc::ENOENT
    );
    // Two global realpaths: libbpf's list resolver says -ESRCH.
    assert_eq!(
        errno(resolve_syms_offsets(&libc, &["realpath"])),
        libc::ESRCH
    );
}

#[test]
fn error_cases() {
    let dir = tempdir("errors");
    let text = dir.join("not-elf.so");
    std::fs::write(&text, "just some text, no ELF here\n").unwrap();
    let err = find_func_offset(&text, "malloc").unwrap_err();
    assert_eq!(err.errno(), LIBBPF_ERRNO_FORMAT);
    assert!(
        err.to_string().starts_with("elf: failed to get ehdr from"),
        "{err}"
    );
    // The multi-uprobe resolvers report a bad header as -EINVAL.
    assert_eq!(errno(resolve_pattern_offsets(&text, "*")), libc::EINVAL);
    assert_eq!(errno(resolve_syms_offsets(&text, &["x"])), libc::EINVAL);

    let missing = dir.join("missing.so");
    let err = find_func_offset(&missing, "malloc").unwrap_err();
    assert_eq!(err.errno(), libc::ENOENT);
    assert_eq!(
        err.to_string(),
        format!("elf: failed to open {}: -ENOENT", missing.display())
    );
    assert_eq!(errno(BinaryId::from_path(&missing)), libc::ENOENT);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The cache is keyed by inode and mtime: a binary rewritten in place is
/// parsed again.
#[test]
fn cache_follows_file_changes() {
    let dir = tempdir("cache");
    let lib = dir.join("libcopy.so");
    std::fs::copy(libc(), &lib).unwrap();
    let re = Readelf::of(&lib);
    assert_eq!(
        find_func_offset(&lib, "malloc").unwrap(),
        re.offset_of("malloc@@GLIBC_2.2.5")
    );
    std::fs::write(&lib, "no longer an ELF file").unwrap();
    assert_eq!(errno(find_func_offset(&lib, "malloc")), LIBBPF_ERRNO_FORMAT);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("attach-binary-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// One test owns the environment (tests run in parallel threads).
#[test]
fn path_resolution() {
    let dir = tempdir("paths");
    let lib = dir.join("libuserbpf-fake.so.1");
    std::fs::copy(libc(), &lib).unwrap();
    let old_ld = std::env::var_os("LD_LIBRARY_PATH");
    let old_path = std::env::var_os("PATH");

    std::env::set_var(
        "LD_LIBRARY_PATH",
        format!("::/nonexistent:{}", dir.display()),
    );
    assert_eq!(resolve_binary_path("libuserbpf-fake.so.1").unwrap(), lib);
    // libc is found in the default directories whatever LD_LIBRARY_PATH says.
    let libc = resolve_binary_path("libc.so.6").unwrap();
    assert!(libc.ends_with("libc.so.6"));
    std::env::remove_var("LD_LIBRARY_PATH");
    let err = resolve_binary_path("libuserbpf-fake.so.1").unwrap_err();
    assert_eq!(err.errno(), libc::ENOENT);

    // Programs come from PATH and must be executable.
    let prog = dir.join("userbpf-fake-prog");
    std::fs::write(&prog, "#!/bin/sh\n").unwrap();
    std::env::set_var("PATH", dir.as_os_str());
    assert_eq!(
        errno(resolve_binary_path("userbpf-fake-prog")),
        libc::ENOENT
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(resolve_binary_path("userbpf-fake-prog").unwrap(), prog);
    // Not a library name: LD_LIBRARY_PATH is not searched for it.
    std::env::set_var("LD_LIBRARY_PATH", dir.as_os_str());
    std::env::set_var("PATH", "/nonexistent");
    assert_eq!(
        errno(resolve_binary_path("userbpf-fake-prog")),
        libc::ENOENT
    );
    // "sh" is in /usr/bin, searched after PATH.
    assert_eq!(
        resolve_binary_path("sh").unwrap(),
        PathBuf::from("/usr/bin/sh")
    );
    // A name with a slash is used as is.
    assert_eq!(
        resolve_binary_path("./relative/x").unwrap(),
        PathBuf::from("./relative/x")
    );

    match old_ld {
        Some(v) => std::env::set_var("LD_LIBRARY_PATH", v),
        None => std::env::remove_var("LD_LIBRARY_PATH"),
    }
    match old_path {
        Some(v) => std::env::set_var("PATH", v),
        None => std::env::remove_var("PATH"),
    }

    // BinaryId: symlinks resolved, (dev, ino) of the target.
    let link = dir.join("link.so");
    std::os::unix::fs::symlink(&lib, &link).unwrap();
    let id = BinaryId::from_path(&link).unwrap();
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&lib).unwrap();
    assert_eq!(id.path, std::fs::canonicalize(&lib).unwrap());
    assert_eq!((id.dev, id.ino), (meta.dev(), meta.ino()));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `.symtab` rules on a binary built here: local duplicates are ambiguous,
/// a weak symbol yields to a non-weak one, an import matches with value 0.
#[test]
fn symtab_rules() {
    let dir = tempdir("symtab");
    std::fs::write(
        dir.join("a.c"),
        "#include <stdio.h>\n\
         static int __attribute__((noinline)) dup(int x) { return x * 3; }\n\
         int a_use(int x) { return dup(x); }\n\
         int __attribute__((weak)) yield(int x) { return x + 2; }\n\
         int main(int c, char **v) { puts(v[0]); return a_use(c) + b_use(c) + yield(c); }\n\
         int b_use(int);\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("b.c"),
        "static int __attribute__((noinline)) dup(int x) { return x * 5 + 1; }\n\
         static int __attribute__((noinline, used)) yield(int x) { return x * 7; }\n\
         int b_use(int x) { return dup(x) + yield(x); }\n",
    )
    .unwrap();
    let exe = dir.join("prog");
    // By absolute path (see Readelf::of).
    let st = Command::new("/usr/bin/clang-16")
        .args([
            "-O1",
            "-fno-inline",
            "-Wno-implicit-function-declaration",
            "-o",
        ])
        .arg(&exe)
        .arg(dir.join("a.c"))
        .arg(dir.join("b.c"))
        .status()
        .expect("clang-16");
    assert!(st.success());
    let re = Readelf::of(&exe);
    let dups: Vec<&RSym> = re
        .syms
        .iter()
        .filter(|s| s.table == ".symtab" && s.name == "dup")
        .collect();
    assert_eq!(dups.len(), 2, "two local dup()");
    let err = find_func_offset(&exe, "dup").unwrap_err();
    assert_eq!(err.errno(), LIBBPF_ERRNO_FORMAT);
    // A weak global and a local of one name: the non-weak one wins.
    let local_yield = re
        .syms
        .iter()
        .find(|s| s.table == ".symtab" && s.name == "yield" && s.bind == "LOCAL")
        .unwrap();
    assert!(re
        .syms
        .iter()
        .any(|s| s.table == ".symtab" && s.name == "yield" && s.bind == "WEAK"));
    assert_eq!(
        find_func_offset(&exe, "yield").unwrap(),
        re.offset(local_yield)
    );
    let a_use = re.syms.iter().find(|s| s.name == "a_use").unwrap();
    assert_eq!(find_func_offset(&exe, "a_use").unwrap(), re.offset(a_use));
    assert_eq!(
        function_containing(&exe, re.offset(a_use) + 1),
        Some((re.offset(a_use), a_use.size))
    );
    // `puts` is only an import here: libbpf reports it as 0 in symtab.
    let err = find_func_offset(&exe, "puts").unwrap_err();
    assert_eq!(err.errno(), libc::ENOENT);
    assert!(err.to_string().contains("is 0 in symtab"), "{err}");
    // The pattern resolver prefers .symtab.
    let got = resolve_pattern_offsets(&exe, "?_use").unwrap();
    let b_use = re.syms.iter().find(|s| s.name == "b_use").unwrap();
    let mut want = vec![re.offset(a_use), re.offset(b_use)];
    let mut got_sorted = got.clone();
    got_sorted.sort();
    want.sort();
    assert_eq!(got_sorted, want);
    std::fs::remove_dir_all(&dir).unwrap();
}
