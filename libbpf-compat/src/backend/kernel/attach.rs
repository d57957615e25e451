//! Attaching kernel programs: what libbpf 1.7 does between a loaded
//! program fd and a link (libbpf.c's tracefs, perf event and link code,
//! bpf.c's `bpf_link_create` and friends), re-implemented on [`sys`].
//!
//! This module holds the mechanisms: tracefs paths and event ids,
//! `perf_event_open` for tracepoints and kprobes (the PMU and the legacy
//! `kprobe_events` way), the kprobe.multi symbol resolution, the kernel
//! feature probes libbpf makes (`FEAT_PERF_LINK`, `FEAT_SYSCALL_WRAPPER`),
//! [`KernelLink`], the teardown of what an attach made, and [`netlink`]
//! (XDP and TC attachments by rtnetlink, as libbpf's netlink.c). The flows and
//! libbpf's messages are in `libbpf-so`; the errors here carry libbpf's
//! text for the messages libbpf prints from its helpers.
//!
//! Errors are positive errno values unless they are [`ProbeError`]s.

use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use thiserror::Error;

use super::sys::{self, cmd, perf, perf_ioc, LinkCreateAttr, PerfEventAttr, ProgLoadAttr};
use crate::errstr::errstr;

/// `enum bpf_attach_type` values the attach code names.
pub mod attach_type {
    pub const CGROUP_INET_INGRESS: u32 = 0;
    pub const TRACE_RAW_TP: u32 = 23;
    pub const TRACE_FENTRY: u32 = 24;
    pub const TRACE_FEXIT: u32 = 25;
    pub const MODIFY_RETURN: u32 = 26;
    pub const LSM_MAC: u32 = 27;
    pub const TRACE_ITER: u32 = 28;
    pub const XDP: u32 = 37;
    pub const PERF_EVENT: u32 = 41;
    pub const TRACE_KPROBE_MULTI: u32 = 42;
    pub const LSM_CGROUP: u32 = 43;
    pub const NETFILTER: u32 = 45;
    pub const TCX_INGRESS: u32 = 46;
    pub const TCX_EGRESS: u32 = 47;
    pub const TRACE_UPROBE_MULTI: u32 = 48;
    pub const CGROUP_UNIX_CONNECT: u32 = 49;
    pub const CGROUP_UNIX_SENDMSG: u32 = 50;
    pub const CGROUP_UNIX_RECVMSG: u32 = 51;
    pub const CGROUP_UNIX_GETPEERNAME: u32 = 52;
    pub const CGROUP_UNIX_GETSOCKNAME: u32 = 53;
    pub const NETKIT_PRIMARY: u32 = 54;
    pub const NETKIT_PEER: u32 = 55;
    pub const TRACE_KPROBE_SESSION: u32 = 56;
    pub const TRACE_UPROBE_SESSION: u32 = 57;
    pub const TRACE_FSESSION: u32 = 58;

    /// The cgroup attach types `bpf_link_create` gives `cgroup` options
    /// (libbpf's list: the `BPF_CGROUP_*` hooks and `BPF_LSM_CGROUP`).
    pub fn is_cgroup(t: u32) -> bool {
        matches!(
            t,
            0..=3 | 6 | 8..=15 | 18..=22 | 29..=32 | 34 | 43 | 49..=53
        )
    }
}

/// `BPF_F_ID`: `relative_fd` is an id.
pub const BPF_F_ID: u32 = 1 << 5;
/// `BPF_F_KPROBE_MULTI_RETURN`.
pub const BPF_F_KPROBE_MULTI_RETURN: u32 = 1;

/// Errors of the helpers whose failures libbpf reports itself (the text is
/// libbpf's message, without the `libbpf: ` prefix and the newline).
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ProbeError {
    #[error("failed to determine tracepoint '{category}/{name}' perf event ID: {}", errstr(-errno))]
    TracepointId {
        category: String,
        name: String,
        errno: i32,
    },
    #[error("tracepoint '{category}/{name}' perf_event_open() failed: {}", errstr(-errno))]
    TracepointOpen {
        category: String,
        name: String,
        errno: i32,
    },
    #[error("failed to determine kprobe perf type: {}", errstr(-errno))]
    KprobeType { errno: i32 },
    #[error("failed to determine kprobe retprobe bit: {}", errstr(-errno))]
    RetprobeBit { errno: i32 },
    #[error("failed to add legacy kprobe event for '{func}+0x{offset:x}': {}", errstr(-errno))]
    LegacyAdd {
        func: String,
        offset: u64,
        errno: i32,
    },
    #[error("failed to determine legacy kprobe event id for '{func}+0x{offset:x}': {}", errstr(-errno))]
    LegacyId {
        func: String,
        offset: u64,
        errno: i32,
    },
    #[error("legacy kprobe perf_event_open() failed: {}", errstr(-errno))]
    LegacyOpen { errno: i32 },
    /// `perf_event_open` of a kprobe PMU event: libbpf says nothing here.
    #[error("perf_event_open() failed: {}", errstr(-errno))]
    PerfOpen { errno: i32 },
    #[error("failed to open {path}: {}", errstr(-errno))]
    OpenFile { path: String, errno: i32 },
    #[error("failed to parse {what} entry: {ret}")]
    ParseEntry { what: &'static str, ret: i32 },
    #[error("failed bpf_prog_get_info_by_fd for FD {fd}: {}", errstr(-errno))]
    ProgInfo { fd: i32, errno: i32 },
    #[error("The target program doesn't have BTF")]
    NoProgBtf,
    #[error("Failed to get BTF {id} of the program: {}", errstr(-errno))]
    ProgBtf { id: u32, errno: i32 },
    #[error("{name} is not found in prog's BTF")]
    FuncNotFound { name: String },
    /// A quiet failure (libbpf prints at most a debug line).
    #[error("{}", errstr(-errno))]
    Quiet { errno: i32 },
}

impl ProbeError {
    pub fn errno(&self) -> i32 {
        match self {
            ProbeError::TracepointId { errno, .. }
            | ProbeError::TracepointOpen { errno, .. }
            | ProbeError::KprobeType { errno }
            | ProbeError::RetprobeBit { errno }
            | ProbeError::LegacyAdd { errno, .. }
            | ProbeError::LegacyId { errno, .. }
            | ProbeError::LegacyOpen { errno }
            | ProbeError::PerfOpen { errno }
            | ProbeError::OpenFile { errno, .. }
            | ProbeError::ProgInfo { errno, .. }
            | ProbeError::ProgBtf { errno, .. }
            | ProbeError::Quiet { errno } => *errno,
            ProbeError::ParseEntry { .. } | ProbeError::NoProgBtf => libc::EINVAL,
            ProbeError::FuncNotFound { .. } => libc::ENOENT,
        }
    }

    /// Whether libbpf prints this error as a warning.
    pub fn warns(&self) -> bool {
        !matches!(self, ProbeError::PerfOpen { .. } | ProbeError::Quiet { .. })
    }
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EINVAL)
}

fn io_errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

// ---------------------------------------------------------------------------
// tracefs
// ---------------------------------------------------------------------------

const DEBUGFS: &str = "/sys/kernel/debug/tracing";
const TRACEFS: &str = "/sys/kernel/tracing";

/// libbpf's `use_debugfs`: the debugfs tracing directory when it exists
/// (checked once per process).
fn use_debugfs() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        let c = CString::new(DEBUGFS).unwrap_or_default();
        // SAFETY: a NUL-terminated path; F_OK only checks existence.
        unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), libc::F_OK, libc::AT_EACCESS) == 0 }
    })
}

/// libbpf's `tracefs_path`.
pub fn tracefs_path() -> &'static str {
    if use_debugfs() {
        DEBUGFS
    } else {
        TRACEFS
    }
}

/// A file of the tracing directory.
pub fn tracefs_file(name: &str) -> String {
    format!("{}/{name}", tracefs_path())
}

/// libbpf's `parse_uint_from_file(file, "<prefix>%d\n")`: the integer
/// after `prefix`, or a positive errno (`EIO` for an unparsable file).
pub fn parse_int_from_file(file: &str, prefix: &str) -> Result<i32, i32> {
    let text = std::fs::read_to_string(file).map_err(|e| io_errno(&e))?;
    let rest = text.strip_prefix(prefix).ok_or(libc::EIO)?;
    scan_int(rest).ok_or(libc::EIO)
}

/// `scanf("%d")`: leading white space, an optional sign, digits.
fn scan_int(s: &str) -> Option<i32> {
    let s = s.trim_start();
    let (neg, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let end = digits
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    if end == 0 {
        return None;
    }
    let v: i64 = digits[..end].parse().ok()?;
    Some(if neg { -v } else { v } as i32)
}

/// The perf event id of tracepoint `category/name` (libbpf's
/// `determine_tracepoint_id`).
pub fn tracepoint_id(category: &str, name: &str) -> Result<i32, i32> {
    let file = format!("{}/events/{category}/{name}/id", tracefs_path());
    if file.len() >= libc::PATH_MAX as usize {
        return Err(libc::E2BIG);
    }
    parse_int_from_file(&file, "")
}

/// libbpf's `perf_event_open_tracepoint`: a perf event of the tracepoint
/// on CPU 0 for every process.
pub fn open_tracepoint(category: &str, name: &str) -> Result<OwnedFd, ProbeError> {
    let id = tracepoint_id(category, name).map_err(|errno| ProbeError::TracepointId {
        category: category.into(),
        name: name.into(),
        errno,
    })?;
    let mut attr = PerfEventAttr {
        type_: perf::TYPE_TRACEPOINT,
        config: id as u32 as u64,
        ..Default::default()
    };
    sys::perf_event_open(&mut attr, -1, 0, -1, perf::FLAG_FD_CLOEXEC).map_err(|errno| {
        ProbeError::TracepointOpen {
            category: category.into(),
            name: name.into(),
            errno,
        }
    })
}

// ---------------------------------------------------------------------------
// kprobes
// ---------------------------------------------------------------------------

/// A probe PMU's perf type (`/sys/bus/event_source/devices/<pmu>/type`).
fn pmu_perf_type(pmu: &str) -> Result<i32, i32> {
    parse_int_from_file(&format!("/sys/bus/event_source/devices/{pmu}/type"), "")
}

/// The config bit of a probe PMU's `retprobe` format.
fn pmu_retprobe_bit(pmu: &str) -> Result<i32, i32> {
    parse_int_from_file(
        &format!("/sys/bus/event_source/devices/{pmu}/format/retprobe"),
        "config:",
    )
}

/// The kprobe PMU's perf type (`/sys/bus/event_source/devices/kprobe/type`).
pub fn kprobe_perf_type() -> Result<i32, i32> {
    pmu_perf_type("kprobe")
}

/// libbpf's `perf_event_open_probe` for a uprobe: `path` at file `offset`,
/// for `pid` (-1: every process), with the USDT semaphore at
/// `ref_ctr_offset` counted by the kernel. Errors are errno values; the
/// caller words the warning (libbpf's differ per API).
pub fn open_uprobe(
    retprobe: bool,
    path: &std::path::Path,
    offset: u64,
    pid: i32,
    ref_ctr_offset: u64,
) -> Result<OwnedFd, i32> {
    if ref_ctr_offset >= 1 << 32 {
        return Err(libc::EINVAL);
    }
    let ty = pmu_perf_type("uprobe")?;
    let mut config = ref_ctr_offset << 32;
    if retprobe {
        config |= 1u64 << (pmu_retprobe_bit("uprobe")? as u32 & 63);
    }
    let path = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| libc::EINVAL)?;
    let mut attr = PerfEventAttr {
        type_: ty as u32,
        config,
        config1: path.as_ptr() as u64,
        config2: offset,
        ..Default::default()
    };
    sys::perf_event_open(
        &mut attr,
        if pid < 0 { -1 } else { pid },
        if pid == -1 { 0 } else { -1 },
        -1,
        perf::FLAG_FD_CLOEXEC,
    )
}

/// libbpf's `perf_event_open_probe` for a kprobe (the PMU way).
pub fn open_kprobe(retprobe: bool, func: &str, offset: u64) -> Result<OwnedFd, ProbeError> {
    let ty = kprobe_perf_type().map_err(|errno| ProbeError::KprobeType { errno })?;
    let mut config = 0u64;
    if retprobe {
        let bit = pmu_retprobe_bit("kprobe").map_err(|errno| ProbeError::RetprobeBit { errno })?;
        config |= 1u64 << (bit as u32 & 63);
    }
    let name = CString::new(func).map_err(|_| ProbeError::PerfOpen {
        errno: libc::EINVAL,
    })?;
    let mut attr = PerfEventAttr {
        type_: ty as u32,
        config,
        config1: name.as_ptr() as u64,
        config2: offset,
        ..Default::default()
    };
    sys::perf_event_open(&mut attr, -1, 0, -1, perf::FLAG_FD_CLOEXEC)
        .map_err(|errno| ProbeError::PerfOpen { errno })
}

/// libbpf's `gen_probe_legacy_event_name`:
/// `libbpf_<pid>_<n>_<name>_0x<offset>`, non-alphanumerics as `_`.
pub fn legacy_probe_name(func: &str, offset: u64) -> String {
    static INDEX: AtomicU32 = AtomicU32::new(0);
    let n = INDEX.fetch_add(1, Ordering::Relaxed) as i32;
    let raw = format!("libbpf_{}_{n}_{func}_0x{offset:x}", std::process::id());
    // MAX_EVENT_NAME_LEN (64) with its NUL.
    let mut out: String = raw
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    out.truncate(63);
    out
}

/// libbpf's `append_to_file`.
fn append_to_file(file: &str, line: &str) -> Result<(), i32> {
    if line.len() >= 1024 {
        return Err(libc::EINVAL);
    }
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(file)
        .map_err(|e| io_errno(&e))?;
    f.write(line.as_bytes()).map(drop).map_err(|e| io_errno(&e))
}

fn kprobe_group(retprobe: bool) -> &'static str {
    if retprobe {
        "kretprobes"
    } else {
        "kprobes"
    }
}

/// Removes a legacy kprobe event (`-:kprobes/<name>` to `kprobe_events`).
pub fn remove_kprobe_legacy(probe_name: &str, retprobe: bool) -> Result<(), i32> {
    append_to_file(
        &tracefs_file("kprobe_events"),
        &format!("-:{}/{probe_name}", kprobe_group(retprobe)),
    )
}

/// libbpf's `perf_event_kprobe_open_legacy`: a `kprobe_events` event and a
/// tracepoint perf event of it (the event is removed again on failure).
pub fn open_kprobe_legacy(
    probe_name: &str,
    retprobe: bool,
    func: &str,
    offset: u64,
) -> Result<OwnedFd, ProbeError> {
    let line = format!(
        "{}:{}/{probe_name} {func}+0x{offset:x}",
        if retprobe { 'r' } else { 'p' },
        kprobe_group(retprobe)
    );
    append_to_file(&tracefs_file("kprobe_events"), &line).map_err(|errno| {
        ProbeError::LegacyAdd {
            func: func.into(),
            offset,
            errno,
        }
    })?;
    let file = format!(
        "{}/events/{}/{probe_name}/id",
        tracefs_path(),
        kprobe_group(retprobe)
    );
    let result = parse_int_from_file(&file, "")
        .map_err(|errno| ProbeError::LegacyId {
            func: func.into(),
            offset,
            errno,
        })
        .and_then(|id| {
            let mut attr = PerfEventAttr {
                type_: perf::TYPE_TRACEPOINT,
                config: id as u32 as u64,
                ..Default::default()
            };
            sys::perf_event_open(&mut attr, -1, 0, -1, perf::FLAG_FD_CLOEXEC)
                .map_err(|errno| ProbeError::LegacyOpen { errno })
        });
    if result.is_err() {
        let _ = remove_kprobe_legacy(probe_name, retprobe);
    }
    result
}

/// libbpf's `arch_specific_syscall_pfx`.
pub fn arch_syscall_prefix() -> Option<&'static str> {
    if cfg!(target_arch = "x86_64") {
        Some("x64")
    } else if cfg!(target_arch = "aarch64") {
        Some("arm64")
    } else if cfg!(target_arch = "riscv64") {
        Some("riscv")
    } else if cfg!(target_arch = "s390x") {
        Some("s390x")
    } else {
        None
    }
}

/// `FEAT_SYSCALL_WRAPPER` (libbpf's `probe_kern_syscall_wrapper`): whether
/// `__<arch>_sys_bpf` can be kprobed, probed once.
pub fn syscall_wrapper_supported() -> bool {
    static SUPPORTED: OnceLock<bool> = OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        let Some(pfx) = arch_syscall_prefix() else {
            return false;
        };
        let name = format!("__{pfx}_sys_bpf");
        if kprobe_perf_type().is_ok() {
            open_kprobe(false, &name, 0).is_ok()
        } else {
            let probe = legacy_probe_name(&name, 0);
            let line = format!("p:kprobes/{probe} {name}+0x0");
            if append_to_file(&tracefs_file("kprobe_events"), &line).is_err() {
                return false;
            }
            let _ = remove_kprobe_legacy(&probe, false);
            true
        }
    })
}

// ---------------------------------------------------------------------------
// kprobe.multi symbol resolution
// ---------------------------------------------------------------------------

/// libbpf's `glob_match` (`*` and `?`).
pub fn glob_match(s: &str, pat: &str) -> bool {
    fn m(s: &[u8], p: &[u8]) -> bool {
        let (mut i, mut j) = (0, 0);
        while i < s.len() && j < p.len() && p[j] != b'*' {
            if p[j] != b'?' && s[i] != p[j] {
                return false;
            }
            i += 1;
            j += 1;
        }
        if j < p.len() && p[j] == b'*' {
            while j < p.len() && p[j] == b'*' {
                j += 1;
            }
            if j == p.len() {
                return true;
            }
            while i < s.len() {
                if m(&s[i..], &p[j..]) {
                    return true;
                }
                i += 1;
            }
        }
        i == s.len() && j == p.len()
    }
    m(s.as_bytes(), pat.as_bytes())
}

/// Whether `available_filter_functions_addrs` is readable.
fn has_filter_functions_addrs() -> bool {
    let c = CString::new(tracefs_file("available_filter_functions_addrs")).unwrap_or_default();
    // SAFETY: a NUL-terminated path.
    unsafe { libc::access(c.as_ptr(), libc::R_OK) == 0 }
}

fn read_tracefs_file(path: &str) -> Result<String, ProbeError> {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map_err(|e| ProbeError::OpenFile {
            path: path.into(),
            errno: io_errno(&e),
        })
}

/// The addresses of the kernel functions matching `pattern`, as libbpf's
/// `libbpf_available_kprobes_parse` / `libbpf_available_kallsyms_parse`
/// find them (ENOENT when none matches).
pub fn kprobe_multi_addrs(pattern: &str) -> Result<Vec<u64>, ProbeError> {
    let mut addrs = Vec::new();
    if has_filter_functions_addrs() {
        let path = tracefs_file("available_filter_functions_addrs");
        let text = read_tracefs_file(&path)?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let mut it = line.split_whitespace();
            let (Some(addr), Some(name)) = (it.next(), it.next()) else {
                return Err(ProbeError::ParseEntry {
                    what: "available_filter_functions_addrs",
                    ret: 1,
                });
            };
            let Ok(addr) = u64::from_str_radix(addr, 16) else {
                return Err(ProbeError::ParseEntry {
                    what: "available_filter_functions_addrs",
                    ret: 0,
                });
            };
            if glob_match(name, pattern) {
                addrs.push(addr);
            }
        }
    } else {
        let path = tracefs_file("available_filter_functions");
        let text = read_tracefs_file(&path)?;
        let mut syms: Vec<&str> = text
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| glob_match(n, pattern))
            .collect();
        if syms.is_empty() {
            return Err(ProbeError::Quiet {
                errno: libc::ENOENT,
            });
        }
        syms.sort_unstable();
        let kallsyms = std::fs::read_to_string("/proc/kallsyms").unwrap_or_default();
        for line in kallsyms.lines() {
            let mut it = line.split_whitespace();
            let (Some(addr), Some(_ty), Some(name)) = (it.next(), it.next(), it.next()) else {
                continue;
            };
            if !glob_match(name, pattern) {
                continue;
            }
            let found = syms.binary_search(&name).is_ok()
                || name
                    .find(".llvm.")
                    .is_some_and(|i| syms.binary_search(&&name[..i]).is_ok());
            if found {
                if let Ok(a) = u64::from_str_radix(addr, 16) {
                    addrs.push(a);
                }
            }
        }
    }
    if addrs.is_empty() {
        return Err(ProbeError::Quiet {
            errno: libc::ENOENT,
        });
    }
    Ok(addrs)
}

// ---------------------------------------------------------------------------
// freplace targets
// ---------------------------------------------------------------------------

/// libbpf's `libbpf_find_prog_btf_id`: the BTF id of function `name` in
/// the BTF of the program behind `prog_fd`.
pub fn prog_func_btf_id(prog_fd: RawFd, name: &str) -> Result<u32, ProbeError> {
    let info: ProgInfoRaw =
        sys::obj_info(prog_fd).map_err(|errno| ProbeError::ProgInfo { fd: prog_fd, errno })?;
    // btf_id is at byte 128.
    let btf_id = info.0[16] as u32;
    if btf_id == 0 {
        return Err(ProbeError::NoProgBtf);
    }
    let btf =
        kernel_btf_by_id(btf_id).map_err(|errno| ProbeError::ProgBtf { id: btf_id, errno })?;
    match btf.find_by_name_kind(name, userbpf_btf_core::BtfKind::Func) {
        Some(id) if id > 0 => Ok(id),
        _ => Err(ProbeError::FuncNotFound { name: name.into() }),
    }
}

/// `struct bpf_prog_info` as words, with room to spare (the kernel accepts
/// a longer buffer whose tail is zero).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct ProgInfoRaw([u64; 32]);

/// The name and id of the program behind `fd` (`BPF_OBJ_GET_INFO_BY_FD`).
pub fn prog_name_id(fd: RawFd) -> Result<(String, u32), i32> {
    let info: ProgInfoRaw = sys::obj_info(fd)?;
    let id = (info.0[0] >> 32) as u32;
    let mut name = Vec::with_capacity(16);
    for w in &info.0[8..10] {
        name.extend_from_slice(&w.to_ne_bytes());
    }
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    Ok((String::from_utf8_lossy(&name[..end]).into_owned(), id))
}

/// `struct bpf_btf_info`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct BtfInfo {
    btf: u64,
    btf_size: u32,
    id: u32,
    name: u64,
    name_len: u32,
    kernel_btf: u32,
}

/// The BTF object `id` of the kernel, parsed.
fn kernel_btf_by_id(id: u32) -> Result<userbpf_btf_core::Btf, i32> {
    let mut attr = sys::IdAttr {
        id,
        ..Default::default()
    };
    // SAFETY: a plain attribute struct.
    let fd = unsafe { sys::bpf_fd(cmd::BTF_GET_FD_BY_ID, &mut attr) }?;
    let info: BtfInfo = sys::obj_info(fd.as_raw_fd())?;
    let mut data = vec![0u8; info.btf_size as usize];
    let mut want = BtfInfo {
        btf: data.as_mut_ptr() as u64,
        btf_size: info.btf_size,
        ..Default::default()
    };
    let mut iattr = sys::InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: std::mem::size_of::<BtfInfo>() as u32,
        info: &mut want as *mut BtfInfo as u64,
    };
    // SAFETY: `want` and the `btf_size` bytes of `data` are writable.
    unsafe { sys::bpf(cmd::OBJ_GET_INFO_BY_FD, &mut iattr) }?;
    data.truncate(want.btf_size.min(info.btf_size) as usize);
    userbpf_btf_core::Btf::parse(&data).map_err(|_| libc::EINVAL)
}

// ---------------------------------------------------------------------------
// Feature probes
// ---------------------------------------------------------------------------

/// `BPF_PROG_TYPE_TRACEPOINT`.
const PROG_TYPE_TRACEPOINT: u32 = 5;

/// `FEAT_PERF_LINK` (libbpf's `probe_perf_link`): `BPF_LINK_CREATE` of a
/// tracepoint program with a bad perf event fd fails with EBADF where
/// perf links exist. Probed once.
pub fn perf_link_supported() -> bool {
    static SUPPORTED: OnceLock<bool> = OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        let insns: [u64; 2] = [0x0000_0000_0000_00b7, 0x0000_0000_0000_0095];
        let license = c"GPL";
        let mut attr = ProgLoadAttr {
            prog_type: PROG_TYPE_TRACEPOINT,
            insn_cnt: 2,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            ..Default::default()
        };
        // SAFETY: the instructions and license outlive the call.
        let Ok(prog) = (unsafe { sys::bpf_fd(cmd::PROG_LOAD, &mut attr) }) else {
            return false;
        };
        let mut link = LinkCreateAttr {
            prog_fd: prog.as_raw_fd() as u32,
            target_fd: u32::MAX,
            attach_type: attach_type::PERF_EVENT,
            ..Default::default()
        };
        matches!(sys::link_create(&mut link), Err(libc::EBADF))
    })
}

// ---------------------------------------------------------------------------
// Links and the bpf(2) commands around them
// ---------------------------------------------------------------------------

/// libbpf's `ensure_good_fd`: a new fd numbered 0, 1 or 2 is moved to 3 or
/// above (an application that closed its standard streams must not get
/// one of them as a BPF fd).
pub fn good_fd(fd: OwnedFd) -> Result<OwnedFd, i32> {
    if fd.as_raw_fd() >= 3 {
        return Ok(fd);
    }
    // SAFETY: F_DUPFD_CLOEXEC on an open fd makes a new one.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if r < 0 {
        return Err(last_errno());
    }
    // SAFETY: a fresh fd nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

/// `BPF_LINK_CREATE` of `attr` with libbpf's fallback: when the kernel
/// says EINVAL for a tracing program without a target, libbpf retries
/// with `BPF_RAW_TRACEPOINT_OPEN` (old kernels); `fallback_allowed` is
/// libbpf's "the opts had nothing past `sz`" condition.
pub fn link_create(attr: &mut LinkCreateAttr, fallback_allowed: bool) -> Result<OwnedFd, i32> {
    match sys::link_create(attr) {
        Ok(fd) => good_fd(fd),
        Err(libc::EINVAL) => {
            // target_btf_id shares the union's first word.
            let target_btf_id = attr.extra[0] as u32;
            let retry = fallback_allowed
                && attr.target_fd == 0
                && target_btf_id == 0
                && matches!(
                    attr.attach_type,
                    attach_type::TRACE_RAW_TP
                        | attach_type::LSM_MAC
                        | attach_type::TRACE_FENTRY
                        | attach_type::TRACE_FEXIT
                        | attach_type::MODIFY_RETURN
                );
            if !retry {
                return Err(libc::EINVAL);
            }
            sys::raw_tracepoint_open(None, attr.prog_fd as RawFd, 0).and_then(good_fd)
        }
        Err(e) => Err(e),
    }
}

/// Writes a `u32` at byte `off` of a link_create union area.
pub fn put_u32(extra: &mut [u64; 6], off: usize, v: u32) {
    let word = &mut extra[off / 8];
    let shift = (off % 8) * 8;
    *word = (*word & !(0xffff_ffffu64 << shift)) | ((v as u64) << shift);
}

/// Writes a `u64` at byte `off` (8-aligned) of a link_create union area.
pub fn put_u64(extra: &mut [u64; 6], off: usize, v: u64) {
    extra[off / 8] = v;
}

/// `BPF_LINK_CREATE` of a perf event link (`BPF_PERF_EVENT`) with a cookie.
pub fn perf_link_create(prog_fd: RawFd, perf_fd: RawFd, cookie: u64) -> Result<OwnedFd, i32> {
    let mut attr = LinkCreateAttr {
        prog_fd: prog_fd as u32,
        target_fd: perf_fd as u32,
        attach_type: attach_type::PERF_EVENT,
        ..Default::default()
    };
    put_u64(&mut attr.extra, 0, cookie);
    link_create(&mut attr, false)
}

/// `BPF_OBJ_PIN` of `fd` at `path`.
pub fn obj_pin(fd: RawFd, path: &str) -> Result<(), i32> {
    let c = CString::new(path).map_err(|_| libc::EINVAL)?;
    let mut attr = sys::ObjAttr {
        pathname: c.as_ptr() as u64,
        bpf_fd: fd as u32,
        ..Default::default()
    };
    // SAFETY: the path outlives the call.
    unsafe { sys::bpf(cmd::OBJ_PIN, &mut attr) }.map(drop)
}

/// `BPF_OBJ_GET` of `path`.
pub fn obj_get(path: &str) -> Result<OwnedFd, i32> {
    let c = CString::new(path).map_err(|_| libc::EINVAL)?;
    let mut attr = sys::ObjAttr {
        pathname: c.as_ptr() as u64,
        ..Default::default()
    };
    // SAFETY: the path outlives the call.
    unsafe { sys::bpf_fd(cmd::OBJ_GET, &mut attr) }.and_then(good_fd)
}

/// `BPF_LINK_DETACH`.
pub fn link_detach(link_fd: RawFd) -> Result<(), i32> {
    let mut attr = sys::FdFlagsAttr {
        fd: link_fd as u32,
        flags: 0,
    };
    // SAFETY: a plain attribute struct.
    unsafe { sys::bpf(cmd::LINK_DETACH, &mut attr) }.map(drop)
}

/// `BPF_LINK_UPDATE`.
pub fn link_update(attr: &mut sys::LinkUpdateAttr) -> Result<(), i32> {
    // SAFETY: a plain attribute struct.
    unsafe { sys::bpf(cmd::LINK_UPDATE, attr) }.map(drop)
}

/// `BPF_FS_MAGIC`: bpffs in `statfs`'s `f_type`.
pub const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Whether `statfs(path)` says bpffs; the errno when `statfs` fails.
pub fn statfs_is_bpffs(path: &str) -> Result<bool, i32> {
    let c = CString::new(path).map_err(|_| libc::EINVAL)?;
    // SAFETY: statfs is plain old data; all-zero is a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a writable statfs.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(last_errno());
    }
    // `f_type`'s C type differs between architectures.
    #[allow(clippy::unnecessary_cast)]
    let magic = st.f_type as i64;
    Ok(magic == BPF_FS_MAGIC)
}

/// Whether `path` lies on a (real) bpffs: `statfs` of it, or of its
/// parent directory when it does not exist yet.
pub fn on_bpffs(path: &str) -> bool {
    statfs_is_bpffs(path)
        .or_else(|_| {
            let dir = match path.trim_end_matches('/').rfind('/') {
                None => ".",
                Some(0) => "/",
                Some(i) => &path[..i],
            };
            statfs_is_bpffs(dir)
        })
        .unwrap_or(false)
}

// ---------------------------------------------------------------------------
// What an attach made
// ---------------------------------------------------------------------------

/// A legacy kprobe event an attach added to `kprobe_events`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyProbe {
    pub name: String,
    pub retprobe: bool,
}

/// The kernel side of a `struct bpf_link` besides its fd: for perf-event
/// attachments (libbpf's `bpf_link_perf`) the perf event (a separate fd
/// when the link fd is a BPF perf link, none when the link fd is the perf
/// event itself, attached by ioctl) and a legacy kprobe event to remove.
#[derive(Debug, Default)]
pub struct KernelLink {
    /// Whether this is a perf-event attachment (its event is disabled on
    /// detach).
    pub perf: bool,
    /// The perf event fd when it is not the link fd.
    pub perf_fd: Option<OwnedFd>,
    pub legacy: Option<LegacyProbe>,
}

impl KernelLink {
    /// A link whose detach is closing its fd (`bpf_link__detach_fd`).
    pub fn plain() -> KernelLink {
        KernelLink::default()
    }

    /// A perf-event attachment: `perf_fd` is `None` when the link fd is
    /// the perf event (ioctl attach).
    pub fn perf(perf_fd: Option<OwnedFd>) -> KernelLink {
        KernelLink {
            perf: true,
            perf_fd,
            legacy: None,
        }
    }

    /// libbpf's detach of the link (`bpf_link_perf_detach` or
    /// `bpf_link__detach_fd`): closes `link_fd` and everything else.
    pub fn detach(self, link_fd: OwnedFd) -> Result<(), i32> {
        let mut result = Ok(());
        if self.perf {
            let pfd = self
                .perf_fd
                .as_ref()
                .map_or(link_fd.as_raw_fd(), |f| f.as_raw_fd());
            if let Err(e) = sys::perf_ioctl(pfd, perf_ioc::DISABLE, 0) {
                result = Err(e);
            }
        }
        drop(self.perf_fd);
        drop(link_fd);
        if let Some(l) = self.legacy {
            result = remove_kprobe_legacy(&l.name, l.retprobe);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob() {
        assert!(glob_match("do_nanosleep", "do_nano*"));
        assert!(glob_match("do_nanosleep", "*sleep"));
        assert!(glob_match("do_nanosleep", "do_?anosleep"));
        assert!(!glob_match("do_nanosleep", "do_nano"));
        assert!(glob_match("", "*"));
        assert!(!glob_match("a", ""));
        assert!(glob_match("abcabc", "*c*c"));
    }

    #[test]
    fn scan() {
        assert_eq!(scan_int("12\n"), Some(12));
        assert_eq!(scan_int(" -3x"), Some(-3));
        assert_eq!(scan_int("x"), None);
    }

    #[test]
    fn legacy_names() {
        let n = legacy_probe_name("do_nano.sleep", 16);
        let pid = std::process::id();
        assert!(n.starts_with(&format!("libbpf_{pid}_")), "{n}");
        assert!(n.ends_with("_do_nano_sleep_0x10"), "{n}");
    }

    #[test]
    fn union_writes() {
        let mut e = [0u64; 6];
        put_u32(&mut e, 4, 7);
        put_u32(&mut e, 0, 9);
        put_u64(&mut e, 8, 11);
        assert_eq!(e[0], (7 << 32) | 9);
        assert_eq!(e[1], 11);
    }

    #[test]
    fn cgroup_types() {
        assert!(attach_type::is_cgroup(0));
        assert!(attach_type::is_cgroup(43));
        assert!(!attach_type::is_cgroup(attach_type::XDP));
        assert!(!attach_type::is_cgroup(attach_type::PERF_EVENT));
        // SK_MSG_VERDICT, LIRC_MODE2, XDP_DEVMAP are not cgroup hooks.
        assert!(!attach_type::is_cgroup(7) && !attach_type::is_cgroup(16));
        assert!(!attach_type::is_cgroup(33));
        // INET6_POST_BIND, UDP6_RECVMSG, INET_SOCK_RELEASE are.
        assert!(attach_type::is_cgroup(13) && attach_type::is_cgroup(20));
        assert!(attach_type::is_cgroup(34));
    }
}

/// rtnetlink and generic netlink for XDP (libbpf's netlink.c): attaching
/// a program to an interface by `RTM_SETLINK` and querying it by a
/// `RTM_GETLINK` dump, and the `netdev` family's XDP features.
///
/// Errors are negative, as libbpf's internal ones (`-errno`, or
/// `-LIBBPF_ERRNO__WRNGPID` and friends); `warn` gets libbpf's messages.
pub mod netlink {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    /// `LIBBPF_ERRNO__*`.
    pub const LIBBPF_ERRNO_INTERNAL: i32 = 4004;
    pub const LIBBPF_ERRNO_WRNGPID: i32 = 4011;
    pub const LIBBPF_ERRNO_INVSEQ: i32 = 4012;
    pub const LIBBPF_ERRNO_NLPARSE: i32 = 4013;

    /// `XDP_FLAGS_*`.
    pub const XDP_FLAGS_UPDATE_IF_NOEXIST: u32 = 1;
    pub const XDP_FLAGS_SKB_MODE: u32 = 2;
    pub const XDP_FLAGS_DRV_MODE: u32 = 4;
    pub const XDP_FLAGS_HW_MODE: u32 = 8;
    pub const XDP_FLAGS_REPLACE: u32 = 16;
    pub const XDP_FLAGS_MODES: u32 = XDP_FLAGS_SKB_MODE | XDP_FLAGS_DRV_MODE | XDP_FLAGS_HW_MODE;
    pub const XDP_FLAGS_MASK: u32 =
        XDP_FLAGS_UPDATE_IF_NOEXIST | XDP_FLAGS_MODES | XDP_FLAGS_REPLACE;
    /// `XDP_ATTACHED_*`.
    pub const XDP_ATTACHED_NONE: u8 = 0;
    pub const XDP_ATTACHED_MULTI: u8 = 4;

    const NLMSG_HDRLEN: usize = 16;
    const NLA_HDRLEN: usize = 4;
    const NLM_F_REQUEST: u16 = 1;
    const NLM_F_MULTI: u16 = 2;
    const NLM_F_ACK: u16 = 4;
    const NLM_F_DUMP: u16 = 0x300;
    const NLM_F_CAPPED: u16 = 0x100;
    const NLM_F_ACK_TLVS: u16 = 0x200;
    const NLMSG_ERROR: u16 = 2;
    const NLMSG_DONE: u16 = 3;
    const NLA_F_NESTED: u16 = 1 << 15;
    const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | (1 << 14));
    const SOL_NETLINK: i32 = 270;
    const NETLINK_EXT_ACK: i32 = 11;
    const RTM_GETLINK: u16 = 18;
    const RTM_SETLINK: u16 = 19;
    const IFLA_XDP: u16 = 43;
    const IFLA_XDP_FD: u16 = 1;
    const IFLA_XDP_ATTACHED: u16 = 2;
    const IFLA_XDP_FLAGS: u16 = 3;
    const IFLA_XDP_PROG_ID: u16 = 4;
    const IFLA_XDP_DRV_PROG_ID: u16 = 5;
    const IFLA_XDP_SKB_PROG_ID: u16 = 6;
    const IFLA_XDP_HW_PROG_ID: u16 = 7;
    const IFLA_XDP_EXPECTED_FD: u16 = 8;
    const GENL_ID_CTRL: u16 = 16;
    const CTRL_CMD_GETFAMILY: u8 = 3;
    const CTRL_ATTR_FAMILY_ID: u16 = 1;
    const CTRL_ATTR_FAMILY_NAME: u16 = 2;
    const NETDEV_CMD_DEV_GET: u8 = 1;
    const NETDEV_A_DEV_IFINDEX: u16 = 1;
    const NETDEV_A_DEV_XDP_FEATURES: u16 = 3;
    const NETDEV_A_DEV_XDP_ZC_MAX_SEGS: u16 = 4;
    /// The size of libbpf's `struct libbpf_nla_req` (header, family
    /// header union, 128 bytes of attributes).
    const REQ_MAX: usize = 16 + 16 + 128;

    fn align4(n: usize) -> usize {
        (n + 3) & !3
    }

    fn u16_at(b: &[u8], off: usize) -> u16 {
        b.get(off..off + 2)
            .map_or(0, |s| u16::from_ne_bytes([s[0], s[1]]))
    }

    fn u32_at(b: &[u8], off: usize) -> u32 {
        b.get(off..off + 4)
            .map_or(0, |s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
    }

    /// A request being built (libbpf's `libbpf_nla_req`).
    struct Req {
        buf: Vec<u8>,
    }

    impl Req {
        fn new(ty: u16, flags: u16, family_hdr: &[u8]) -> Req {
            let mut buf = vec![0u8; NLMSG_HDRLEN];
            buf[4..6].copy_from_slice(&ty.to_ne_bytes());
            buf[6..8].copy_from_slice(&flags.to_ne_bytes());
            buf.extend_from_slice(family_hdr);
            let mut r = Req { buf };
            r.set_len();
            r
        }

        fn set_len(&mut self) {
            let n = self.buf.len() as u32;
            self.buf[0..4].copy_from_slice(&n.to_ne_bytes());
        }

        /// `nlattr_add`; returns the attribute's offset.
        fn add(&mut self, ty: u16, data: &[u8]) -> Result<usize, i32> {
            let at = align4(self.buf.len());
            if at + align4(NLA_HDRLEN + data.len()) > REQ_MAX {
                return Err(-libc::EMSGSIZE);
            }
            self.buf.resize(at, 0);
            self.buf
                .extend_from_slice(&((NLA_HDRLEN + data.len()) as u16).to_ne_bytes());
            self.buf.extend_from_slice(&ty.to_ne_bytes());
            self.buf.extend_from_slice(data);
            self.buf.resize(at + align4(NLA_HDRLEN + data.len()), 0);
            self.set_len();
            Ok(at)
        }

        /// `nlattr_end_nested`.
        fn end_nested(&mut self, at: usize) {
            let n = (self.buf.len() - at) as u16;
            self.buf[at..at + 2].copy_from_slice(&n.to_ne_bytes());
        }
    }

    /// Attributes by type (the last of a type wins), `None` when they do
    /// not parse.
    fn parse_attrs(mut data: &[u8]) -> Option<Vec<(u16, &[u8])>> {
        let mut out = Vec::new();
        while data.len() >= NLA_HDRLEN {
            let len = u16_at(data, 0) as usize;
            if len < NLA_HDRLEN || len > data.len() {
                return None;
            }
            out.push((u16_at(data, 2) & NLA_TYPE_MASK, &data[NLA_HDRLEN..len]));
            data = &data[align4(len).min(data.len())..];
        }
        Some(out)
    }

    fn attr<'a>(attrs: &[(u16, &'a [u8])], ty: u16) -> Option<&'a [u8]> {
        attrs.iter().rev().find(|(t, _)| *t == ty).map(|(_, d)| *d)
    }

    fn last_errno() -> i32 {
        std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)
    }

    /// `libbpf_netlink_open`: the socket and its port id.
    fn open(proto: i32, warn: &mut dyn FnMut(&str)) -> Result<(OwnedFd, u32), i32> {
        // SAFETY: plain socket creation.
        let s =
            unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) };
        if s < 0 {
            return Err(-last_errno());
        }
        // SAFETY: a new socket this function owns.
        let sock = unsafe { OwnedFd::from_raw_fd(s) };
        let one: i32 = 1;
        // SAFETY: an int option of the right size.
        let r = unsafe {
            libc::setsockopt(
                s,
                SOL_NETLINK,
                NETLINK_EXT_ACK,
                &one as *const i32 as *const libc::c_void,
                4,
            )
        };
        if r < 0 {
            warn("Netlink error reporting not supported\n");
        }
        // SAFETY: sockaddr_nl is plain data; zero is "any".
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        let sa_len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        // SAFETY: a valid sockaddr_nl of its size.
        if unsafe { libc::bind(s, &sa as *const _ as *const libc::sockaddr, sa_len) } < 0 {
            return Err(-last_errno());
        }
        let mut len = sa_len;
        // SAFETY: a writable sockaddr_nl and its size.
        if unsafe { libc::getsockname(s, &mut sa as *mut _ as *mut libc::sockaddr, &mut len) } < 0 {
            return Err(-last_errno());
        }
        if len != sa_len {
            return Err(-LIBBPF_ERRNO_INTERNAL);
        }
        Ok((sock, sa.nl_pid))
    }

    /// A handler of the reply messages (header included).
    type OnMsg<'a> = &'a mut dyn FnMut(&[u8]) -> Step;

    /// What a message handler tells the receive loop.
    enum Step {
        Cont,
        /// Skip the rest of this datagram and receive the next.
        Next,
        Done,
        Fail(i32),
    }

    fn recv(sock: i32, buf: &mut Vec<u8>, flags: i32) -> Result<usize, i32> {
        loop {
            // SAFETY: `buf` is writable for its length.
            let n = unsafe { libc::recv(sock, buf.as_mut_ptr().cast(), buf.len(), flags) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = last_errno();
            if e != libc::EINTR && e != libc::EAGAIN {
                return Err(-e);
            }
        }
    }

    /// `libbpf_nla_dump_errormsg`.
    fn dump_errormsg(msg: &[u8], warn: &mut dyn FnMut(&str)) {
        let flags = u16_at(msg, 6);
        if flags & NLM_F_ACK_TLVS == 0 {
            return;
        }
        // struct nlmsgerr: error, then the original header.
        let mut hlen = 4 + NLMSG_HDRLEN;
        if flags & NLM_F_CAPPED == 0 {
            hlen += (u32_at(msg, NLMSG_HDRLEN + 4) as usize).saturating_sub(NLMSG_HDRLEN);
        }
        let start = NLMSG_HDRLEN + hlen;
        let Some(attrs) = msg.get(start..).and_then(parse_attrs) else {
            warn("Failed to parse extended error attributes\n");
            return;
        };
        let text = attr(&attrs, 1).map(|d| {
            let end = d.iter().position(|&b| b == 0).unwrap_or(d.len());
            String::from_utf8_lossy(&d[..end]).into_owned()
        });
        warn(&format!(
            "Kernel error message: {}\n",
            text.as_deref().unwrap_or("(null)")
        ));
    }

    /// `libbpf_netlink_send_recv`: sends `req`, hands every reply message
    /// (header included) to `on_msg`.
    fn send_recv(
        req: &mut Req,
        proto: i32,
        mut on_msg: Option<OnMsg<'_>>,
        warn: &mut dyn FnMut(&str),
    ) -> Result<(), i32> {
        let (sock, nl_pid) = open(proto, warn)?;
        let s = sock.as_raw_fd();
        // SAFETY: time(NULL) has no preconditions.
        let seq = unsafe { libc::time(std::ptr::null_mut()) } as u32;
        req.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        req.buf[12..16].copy_from_slice(&0u32.to_ne_bytes());
        // SAFETY: the request bytes are readable.
        if unsafe { libc::send(s, req.buf.as_ptr().cast(), req.buf.len(), 0) } < 0 {
            return Err(-last_errno());
        }
        let mut buf = vec![0u8; 8192];
        let mut multipart = true;
        'outer: while multipart {
            multipart = false;
            let need = recv(s, &mut buf, libc::MSG_PEEK | libc::MSG_TRUNC)?;
            if need > buf.len() {
                buf.resize(need, 0);
            }
            let mut len = recv(s, &mut buf, 0)?;
            if len == 0 {
                break;
            }
            let mut off = 0;
            while len >= NLMSG_HDRLEN {
                let mlen = u32_at(&buf, off) as usize;
                if mlen < NLMSG_HDRLEN || mlen > len {
                    break;
                }
                let msg = &buf[off..off + mlen];
                if u32_at(msg, 12) != nl_pid {
                    return Err(-LIBBPF_ERRNO_WRNGPID);
                }
                if u32_at(msg, 8) != seq {
                    return Err(-LIBBPF_ERRNO_INVSEQ);
                }
                if u16_at(msg, 6) & NLM_F_MULTI != 0 {
                    multipart = true;
                }
                match u16_at(msg, 4) {
                    NLMSG_ERROR => {
                        let err = u32_at(msg, NLMSG_HDRLEN) as i32;
                        if err != 0 {
                            dump_errormsg(msg, warn);
                            return Err(err);
                        }
                    }
                    NLMSG_DONE => return Ok(()),
                    _ => {
                        if let Some(f) = on_msg.as_mut() {
                            match f(msg) {
                                Step::Cont => {}
                                Step::Next => {
                                    multipart = true;
                                    continue 'outer;
                                }
                                Step::Done => return Ok(()),
                                Step::Fail(e) => return Err(e),
                            }
                        }
                    }
                }
                let step = align4(mlen).min(len);
                off += step;
                len -= step;
                if len == 0 {
                    continue 'outer;
                }
            }
            if len != 0 {
                warn(&format!(
                    "Invalid message or trailing data in Netlink response: {len} bytes left\n"
                ));
            }
        }
        Ok(())
    }

    /// `ifinfomsg` with `family` and `index`.
    fn ifinfomsg(family: u8, index: i32) -> [u8; 16] {
        let mut h = [0u8; 16];
        h[0] = family;
        h[4..8].copy_from_slice(&index.to_ne_bytes());
        h
    }

    /// libbpf's `__bpf_set_link_xdp_fd_replace`.
    pub fn xdp_set(
        ifindex: i32,
        fd: i32,
        old_fd: i32,
        flags: u32,
        warn: &mut dyn FnMut(&str),
    ) -> Result<(), i32> {
        let mut req = Req::new(
            RTM_SETLINK,
            NLM_F_REQUEST | NLM_F_ACK,
            &ifinfomsg(libc::AF_UNSPEC as u8, ifindex),
        );
        let nest = req.add(IFLA_XDP | NLA_F_NESTED, &[])?;
        req.add(IFLA_XDP_FD, &fd.to_ne_bytes())?;
        if flags != 0 {
            req.add(IFLA_XDP_FLAGS, &flags.to_ne_bytes())?;
        }
        if flags & XDP_FLAGS_REPLACE != 0 {
            req.add(IFLA_XDP_EXPECTED_FD, &old_fd.to_ne_bytes())?;
        }
        req.end_nested(nest);
        send_recv(&mut req, libc::NETLINK_ROUTE, None, warn)
    }

    /// What `bpf_xdp_query` reports.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct XdpInfo {
        pub prog_id: u32,
        pub drv_prog_id: u32,
        pub hw_prog_id: u32,
        pub skb_prog_id: u32,
        pub attach_mode: u8,
    }

    fn attr_u32(a: Option<&[u8]>) -> u32 {
        a.map_or(0, |d| u32_at(d, 0))
    }

    /// libbpf's link dump with `get_xdp_info` (ifindex 0: every link).
    pub fn xdp_query(ifindex: i32, warn: &mut dyn FnMut(&str)) -> Result<XdpInfo, i32> {
        let mut req = Req::new(
            RTM_GETLINK,
            NLM_F_DUMP | NLM_F_REQUEST,
            &ifinfomsg(libc::AF_PACKET as u8, 0),
        );
        let mut info = XdpInfo::default();
        let mut on_msg = |msg: &[u8]| -> Step {
            let ifi_index = u32_at(msg, NLMSG_HDRLEN + 4) as i32;
            let Some(attrs) = msg.get(NLMSG_HDRLEN + 16..).and_then(parse_attrs) else {
                return Step::Fail(-LIBBPF_ERRNO_NLPARSE);
            };
            if ifindex != 0 && ifindex != ifi_index {
                return Step::Cont;
            }
            let Some(xdp) = attr(&attrs, IFLA_XDP) else {
                return Step::Cont;
            };
            let Some(x) = parse_attrs(xdp) else {
                return Step::Fail(-libc::EINVAL);
            };
            let Some(mode) = attr(&x, IFLA_XDP_ATTACHED) else {
                return Step::Cont;
            };
            info.attach_mode = mode.first().copied().unwrap_or(0);
            if info.attach_mode == XDP_ATTACHED_NONE {
                return Step::Cont;
            }
            for (ty, field) in [
                (IFLA_XDP_PROG_ID, &mut info.prog_id),
                (IFLA_XDP_SKB_PROG_ID, &mut info.skb_prog_id),
                (IFLA_XDP_DRV_PROG_ID, &mut info.drv_prog_id),
                (IFLA_XDP_HW_PROG_ID, &mut info.hw_prog_id),
            ] {
                if let Some(a) = attr(&x, ty) {
                    *field = attr_u32(Some(a));
                }
            }
            Step::Cont
        };
        send_recv(&mut req, libc::NETLINK_ROUTE, Some(&mut on_msg), warn)?;
        Ok(info)
    }

    /// The generic netlink family id of `name`
    /// (`libbpf_netlink_resolve_genl_family_id`).
    fn genl_family_id(name: &str, warn: &mut dyn FnMut(&str)) -> Result<u16, i32> {
        let mut req = Req::new(GENL_ID_CTRL, NLM_F_REQUEST, &[CTRL_CMD_GETFAMILY, 2, 0, 0]);
        let mut n = name.as_bytes().to_vec();
        n.push(0);
        req.add(CTRL_ATTR_FAMILY_NAME, &n)?;
        let mut id = 0u16;
        let mut on_msg = |msg: &[u8]| -> Step {
            let attrs = msg
                .get(NLMSG_HDRLEN + 4..)
                .and_then(parse_attrs)
                .unwrap_or_default();
            match attr(&attrs, CTRL_ATTR_FAMILY_ID) {
                Some(d) => {
                    id = u16_at(d, 0);
                    Step::Done
                }
                None => Step::Cont,
            }
        };
        send_recv(&mut req, libc::NETLINK_GENERIC, Some(&mut on_msg), warn)?;
        Ok(id)
    }

    /// The XDP features of `ifindex` (`NETDEV_CMD_DEV_GET`): flags and
    /// zero-copy max segments; `None` when there is no `netdev` family.
    pub fn xdp_features(
        ifindex: i32,
        warn: &mut dyn FnMut(&str),
    ) -> Result<Option<(u64, u32)>, i32> {
        let id = match genl_family_id("netdev", warn) {
            Ok(id) => id,
            Err(e) if e == -libc::ENOENT => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut req = Req::new(id, NLM_F_REQUEST, &[NETDEV_CMD_DEV_GET, 2, 0, 0]);
        req.add(NETDEV_A_DEV_IFINDEX, &ifindex.to_ne_bytes())?;
        let mut out = (0u64, 0u32);
        let mut on_msg = |msg: &[u8]| -> Step {
            let attrs = msg
                .get(NLMSG_HDRLEN + 4..)
                .and_then(parse_attrs)
                .unwrap_or_default();
            let (Some(idx), Some(feat)) = (
                attr(&attrs, NETDEV_A_DEV_IFINDEX),
                attr(&attrs, NETDEV_A_DEV_XDP_FEATURES),
            ) else {
                return Step::Cont;
            };
            if u32_at(idx, 0) as i32 != ifindex {
                return Step::Cont;
            }
            out.0 = feat
                .get(..8)
                .map_or(0, |b| u64::from_ne_bytes(b.try_into().unwrap_or([0; 8])));
            if let Some(z) = attr(&attrs, NETDEV_A_DEV_XDP_ZC_MAX_SEGS) {
                out.1 = u32_at(z, 0);
            }
            Step::Done
        };
        send_recv(&mut req, libc::NETLINK_GENERIC, Some(&mut on_msg), warn)?;
        Ok(Some(out))
    }

    // -----------------------------------------------------------------
    // TC (clsact qdiscs and cls_bpf filters)
    // -----------------------------------------------------------------

    /// `enum bpf_tc_attach_point`.
    pub const BPF_TC_INGRESS: u32 = 1;
    pub const BPF_TC_EGRESS: u32 = 2;
    pub const BPF_TC_CUSTOM: u32 = 4;
    pub const BPF_TC_QDISC: u32 = 8;
    /// `BPF_TC_F_REPLACE`.
    pub const BPF_TC_F_REPLACE: u32 = 1;

    const RTM_NEWQDISC: u16 = 36;
    const RTM_DELQDISC: u16 = 37;
    const RTM_NEWTFILTER: u16 = 44;
    const RTM_DELTFILTER: u16 = 45;
    const RTM_GETTFILTER: u16 = 46;
    const NLM_F_REPLACE: u16 = 0x100;
    const NLM_F_EXCL: u16 = 0x200;
    const NLM_F_CREATE: u16 = 0x400;
    const NLM_F_ECHO: u16 = 8;
    const TC_H_ROOT: u32 = 0xFFFF_FFFF;
    const TC_H_CLSACT: u32 = 0xFFFF_FFF1;
    const TC_H_MIN_INGRESS: u32 = 0xFFF2;
    const TC_H_MIN_EGRESS: u32 = 0xFFF3;
    const TCA_KIND: u16 = 1;
    const TCA_OPTIONS: u16 = 2;
    const TCA_BPF_FD: u16 = 6;
    const TCA_BPF_NAME: u16 = 7;
    const TCA_BPF_FLAGS: u16 = 8;
    const TCA_BPF_ID: u16 = 11;
    const TCA_BPF_FLAG_ACT_DIRECT: u32 = 1;
    /// `htons(ETH_P_ALL)`.
    const ETH_P_ALL_BE: u32 = 0x0003u16.to_be() as u32;

    fn tc_h_make(maj: u32, min: u32) -> u32 {
        (maj & 0xFFFF_0000) | (min & 0xFFFF)
    }

    /// `struct bpf_tc_hook`, decoded.
    #[derive(Clone, Debug, Default)]
    pub struct TcHook {
        pub ifindex: i32,
        pub attach_point: u32,
        pub parent: u32,
        pub handle: u32,
        pub qdisc: Option<String>,
    }

    /// `struct bpf_tc_opts`, decoded; attach and query fill in
    /// `prog_id`, `handle` and `priority`.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct TcOpts {
        pub prog_fd: i32,
        pub flags: u32,
        pub prog_id: u32,
        pub handle: u32,
        pub priority: u32,
    }

    /// `tcmsg` with the fields libbpf sets.
    fn tcmsg(ifindex: i32, handle: u32, parent: u32, info: u32) -> [u8; 20] {
        let mut h = [0u8; 20];
        h[0] = libc::AF_UNSPEC as u8;
        h[4..8].copy_from_slice(&ifindex.to_ne_bytes());
        h[8..12].copy_from_slice(&handle.to_ne_bytes());
        h[12..16].copy_from_slice(&parent.to_ne_bytes());
        h[16..20].copy_from_slice(&info.to_ne_bytes());
        h
    }

    /// libbpf's `tc_qdisc_modify` (with `attach_point_to_config`).
    fn tc_qdisc_modify(
        hook: &TcHook,
        cmd: u16,
        flags: u16,
        warn: &mut dyn FnMut(&str),
    ) -> Result<(), i32> {
        let clsact = match hook.attach_point {
            BPF_TC_INGRESS | BPF_TC_EGRESS | 3 => {
                if hook.parent != 0 {
                    return Err(-libc::EINVAL);
                }
                true
            }
            BPF_TC_CUSTOM => return Err(-libc::EOPNOTSUPP),
            BPF_TC_QDISC => false,
            _ => return Err(-libc::EINVAL),
        };
        let (parent, handle, kind) = if clsact {
            (TC_H_CLSACT, tc_h_make(TC_H_CLSACT, 0), "clsact".to_string())
        } else {
            let parent = if hook.parent != 0 {
                hook.parent
            } else {
                TC_H_ROOT
            };
            let kind = hook.qdisc.clone().ok_or(-libc::EINVAL)?;
            (parent, hook.handle, kind)
        };
        let mut req = Req::new(
            cmd,
            NLM_F_REQUEST | NLM_F_ACK | flags,
            &tcmsg(hook.ifindex, handle, parent, 0),
        );
        let mut k = kind.into_bytes();
        k.push(0);
        req.add(TCA_KIND, &k)?;
        send_recv(&mut req, libc::NETLINK_ROUTE, None, warn)
    }

    /// `bpf_tc_hook_create` after its checks.
    pub fn tc_hook_create(hook: &TcHook, warn: &mut dyn FnMut(&str)) -> Result<(), i32> {
        tc_qdisc_modify(hook, RTM_NEWQDISC, NLM_F_CREATE | NLM_F_EXCL, warn)
    }

    /// `bpf_tc_hook_destroy` after its checks.
    pub fn tc_hook_destroy(hook: &TcHook, warn: &mut dyn FnMut(&str)) -> Result<(), i32> {
        match hook.attach_point {
            BPF_TC_INGRESS | BPF_TC_EGRESS => tc_detach(hook, &TcOpts::default(), true, warn),
            BPF_TC_QDISC | 3 => tc_qdisc_modify(hook, RTM_DELQDISC, 0, warn),
            BPF_TC_CUSTOM => Err(-libc::EOPNOTSUPP),
            _ => Err(-libc::EINVAL),
        }
    }

    /// libbpf's `tc_get_tcm_parent`.
    fn tcm_parent(attach_point: u32, parent: u32) -> Result<u32, i32> {
        match attach_point {
            BPF_TC_INGRESS | BPF_TC_EGRESS => {
                if parent != 0 {
                    return Err(-libc::EINVAL);
                }
                let min = if attach_point == BPF_TC_INGRESS {
                    TC_H_MIN_INGRESS
                } else {
                    TC_H_MIN_EGRESS
                };
                Ok(tc_h_make(TC_H_CLSACT, min))
            }
            BPF_TC_CUSTOM if parent != 0 => Ok(parent),
            _ => Err(-libc::EINVAL),
        }
    }

    /// libbpf's `get_tc_info`: fills `out` from a filter message.
    fn tc_info(msg: &[u8], out: &mut TcOpts, processed: &mut bool) -> Step {
        let Some(attrs) = msg.get(NLMSG_HDRLEN + 20..).and_then(parse_attrs) else {
            return Step::Cont;
        };
        if attr(&attrs, TCA_KIND).is_none() {
            return Step::Cont;
        }
        let unicast = u16_at(msg, 6) & NLM_F_ECHO != 0;
        if unicast && *processed {
            return Step::Fail(-libc::EINVAL);
        }
        let Some(opts) = attr(&attrs, TCA_OPTIONS) else {
            return Step::Cont;
        };
        let inner = parse_attrs(opts).unwrap_or_default();
        let Some(id) = attr(&inner, TCA_BPF_ID) else {
            return Step::Fail(-libc::EINVAL);
        };
        out.prog_id = u32_at(id, 0);
        out.handle = u32_at(msg, NLMSG_HDRLEN + 8);
        out.priority = (u32_at(msg, NLMSG_HDRLEN + 16) & 0xFFFF_0000) >> 16;
        *processed = true;
        if unicast {
            Step::Next
        } else {
            Step::Done
        }
    }

    /// `bpf_tc_attach` after its opts are read; `prog_info` gives the
    /// program's name and id (the filter is named `<name>:[<id>]`), or a
    /// positive errno. Returns the filled-in opts.
    pub fn tc_attach(
        hook: &TcHook,
        opts: &TcOpts,
        prog_info: impl FnOnce(i32) -> Result<(String, u32), i32>,
        warn: &mut dyn FnMut(&str),
    ) -> Result<TcOpts, i32> {
        if hook.ifindex <= 0 || opts.prog_fd == 0 || opts.prog_id != 0 {
            return Err(-libc::EINVAL);
        }
        if opts.priority > u16::MAX as u32 || opts.flags & !BPF_TC_F_REPLACE != 0 {
            return Err(-libc::EINVAL);
        }
        let excl = if opts.flags & BPF_TC_F_REPLACE != 0 {
            NLM_F_REPLACE
        } else {
            NLM_F_EXCL
        };
        let parent = tcm_parent(hook.attach_point, hook.parent)?;
        let mut req = Req::new(
            RTM_NEWTFILTER,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_ECHO | excl,
            &tcmsg(
                hook.ifindex,
                opts.handle,
                parent,
                tc_h_make(opts.priority << 16, ETH_P_ALL_BE),
            ),
        );
        req.add(TCA_KIND, b"bpf\0")?;
        let nest = req.add(TCA_OPTIONS | NLA_F_NESTED, &[])?;
        let (prog_name, prog_id) = prog_info(opts.prog_fd).map_err(|e| -e)?;
        req.add(TCA_BPF_FD, &opts.prog_fd.to_ne_bytes())?;
        let name = format!("{prog_name}:[{prog_id}]");
        if name.len() >= 256 {
            return Err(-libc::ENAMETOOLONG);
        }
        let mut n = name.into_bytes();
        n.push(0);
        req.add(TCA_BPF_NAME, &n)?;
        req.add(TCA_BPF_FLAGS, &TCA_BPF_FLAG_ACT_DIRECT.to_ne_bytes())?;
        req.end_nested(nest);
        let mut out = *opts;
        let mut processed = false;
        let mut on_msg = |msg: &[u8]| tc_info(msg, &mut out, &mut processed);
        send_recv(&mut req, libc::NETLINK_ROUTE, Some(&mut on_msg), warn)?;
        if !processed {
            return Err(-libc::ENOENT);
        }
        Ok(out)
    }

    /// libbpf's `__bpf_tc_detach` (`flush`: every filter of the hook).
    pub fn tc_detach(
        hook: &TcHook,
        opts: &TcOpts,
        flush: bool,
        warn: &mut dyn FnMut(&str),
    ) -> Result<(), i32> {
        if hook.ifindex <= 0 || opts.flags != 0 || opts.prog_fd != 0 || opts.prog_id != 0 {
            return Err(-libc::EINVAL);
        }
        if opts.priority > u16::MAX as u32 {
            return Err(-libc::EINVAL);
        }
        if flush {
            if opts.handle != 0 || opts.priority != 0 {
                return Err(-libc::EINVAL);
            }
        } else if opts.handle == 0 || opts.priority == 0 {
            return Err(-libc::EINVAL);
        }
        let parent = tcm_parent(hook.attach_point, hook.parent)?;
        let (handle, info) = if flush {
            (0, 0)
        } else {
            (opts.handle, tc_h_make(opts.priority << 16, ETH_P_ALL_BE))
        };
        let mut req = Req::new(
            RTM_DELTFILTER,
            NLM_F_REQUEST | NLM_F_ACK,
            &tcmsg(hook.ifindex, handle, parent, info),
        );
        if !flush {
            req.add(TCA_KIND, b"bpf\0")?;
        }
        send_recv(&mut req, libc::NETLINK_ROUTE, None, warn)
    }

    /// `bpf_tc_query` after its opts are read: the filled-in opts.
    pub fn tc_query(
        hook: &TcHook,
        opts: &TcOpts,
        warn: &mut dyn FnMut(&str),
    ) -> Result<TcOpts, i32> {
        if hook.ifindex <= 0
            || opts.flags != 0
            || opts.prog_fd != 0
            || opts.prog_id != 0
            || opts.handle == 0
            || opts.priority == 0
        {
            return Err(-libc::EINVAL);
        }
        if opts.priority > u16::MAX as u32 {
            return Err(-libc::EINVAL);
        }
        let parent = tcm_parent(hook.attach_point, hook.parent)?;
        let mut req = Req::new(
            RTM_GETTFILTER,
            NLM_F_REQUEST,
            &tcmsg(
                hook.ifindex,
                opts.handle,
                parent,
                tc_h_make(opts.priority << 16, ETH_P_ALL_BE),
            ),
        );
        req.add(TCA_KIND, b"bpf\0")?;
        let mut out = *opts;
        let mut processed = false;
        let mut on_msg = |msg: &[u8]| tc_info(msg, &mut out, &mut processed);
        send_recv(&mut req, libc::NETLINK_ROUTE, Some(&mut on_msg), warn)?;
        if !processed {
            return Err(-libc::ENOENT);
        }
        Ok(out)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn request_layout() {
            let mut r = Req::new(RTM_SETLINK, NLM_F_REQUEST, &ifinfomsg(0, 3));
            let nest = r.add(IFLA_XDP | NLA_F_NESTED, &[]).unwrap();
            r.add(IFLA_XDP_FD, &7i32.to_ne_bytes()).unwrap();
            r.end_nested(nest);
            assert_eq!(r.buf.len(), 32 + 4 + 8);
            assert_eq!(u32_at(&r.buf, 0), 44);
            assert_eq!(u16_at(&r.buf, 32), 12);
            let attrs = parse_attrs(&r.buf[32..]).unwrap();
            let inner = parse_attrs(attr(&attrs, IFLA_XDP).unwrap()).unwrap();
            assert_eq!(attr_u32(attr(&inner, IFLA_XDP_FD)), 7);
        }

        #[test]
        fn loopback_query() {
            // Any process may dump links.
            let mut warnings = Vec::new();
            let r = xdp_query(1, &mut |m| warnings.push(m.to_string()));
            assert!(r.is_ok(), "{r:?} {warnings:?}");
        }
    }
}
