//! The kernel backend: the part of an object that only the kernel can
//! serve, loaded into the running kernel as libbpf 1.7's
//! `bpf_object__load` does (BTF, maps with their initial data, programs
//! with func and line info, program-array and map-in-map slots).
//!
//! Everything goes through our own syscall layer ([`sys`]).

pub mod attach;
pub mod probe;
pub mod struct_ops;
pub mod sys;

use std::collections::BTreeSet;
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use thiserror::Error;
use userbpf_btf_core::{Btf, BtfKind};
use userbpf_runtime::isa::{
    Insn, BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_IDX, BPF_PSEUDO_MAP_IDX_VALUE, BPF_PSEUDO_MAP_VALUE,
};

use crate::backend::placement::{Placement, Side};
use crate::errstr::errstr;
use crate::object::sections::SecFlags;
use crate::object::{AttachType, BpfMap, InitSlot, LogLevel, MapKind, MapType, Object, TargetBtf};

use sys::{cmd, MapCreateAttr, ProgLoadAttr};

/// `BPF_F_MMAPABLE`.
pub const BPF_F_MMAPABLE: u32 = 1 << 10;
/// `BPF_F_RDONLY_PROG`.
pub const BPF_F_RDONLY_PROG: u32 = 1 << 7;
/// `BPF_F_SLEEPABLE`.
pub const BPF_F_SLEEPABLE: u32 = 1 << 4;
/// `BPF_F_XDP_HAS_FRAGS`.
pub const BPF_F_XDP_HAS_FRAGS: u32 = 1 << 5;
/// libbpf's `BPF_LOG_BUF_SIZE`: the first size of its own log buffer.
const LOG_BUF_SIZE: usize = (u32::MAX >> 8) as usize;

#[derive(Debug, Error)]
pub enum KernelError {
    #[error("map '{name}': failed to create: {}", errstr(*errno))]
    MapCreate { name: String, errno: i32 },
    #[error("map '{name}': failed to initialize: {}", errstr(*errno))]
    MapInit { name: String, errno: i32 },
    #[error("prog '{name}': {message}")]
    Program {
        name: String,
        message: String,
        errno: i32,
    },
    #[error("program '{name}' was not relocated")]
    NotRelocated { name: String },
}

impl KernelError {
    pub fn errno(&self) -> i32 {
        match self {
            KernelError::MapCreate { errno, .. }
            | KernelError::MapInit { errno, .. }
            | KernelError::Program { errno, .. } => *errno,
            KernelError::NotRelocated { .. } => libc::EINVAL,
        }
    }
}

/// A map the kernel holds for this object.
#[derive(Debug)]
pub struct KernelMap {
    pub fd: OwnedFd,
    pub id: u32,
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub map_flags: u32,
}

impl KernelMap {
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Describes an existing kernel map fd (`bpf_map__reuse_fd`, pins).
    pub fn from_fd(fd: OwnedFd) -> Result<KernelMap, i32> {
        let info: sys::MapInfo = sys::obj_info(fd.as_raw_fd())?;
        Ok(KernelMap {
            fd,
            id: info.id,
            map_type: info.map_type,
            key_size: info.key_size,
            value_size: info.value_size,
            max_entries: info.max_entries,
            map_flags: info.map_flags,
        })
    }
}

/// A program the kernel verified and holds.
#[derive(Debug)]
pub struct KernelProgram {
    pub fd: OwnedFd,
    pub id: u32,
    pub name: String,
    pub prog_type: u32,
    pub expected_attach_type: u32,
}

/// The head of `struct bpf_prog_info` this backend reads.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ProgInfoHead {
    pub prog_type: u32,
    pub id: u32,
}

/// The kernel half of a loaded object, by the object's indices.
#[derive(Debug, Default)]
pub struct KernelObject {
    /// The object's BTF in the kernel, if it loaded.
    pub btf: Option<OwnedFd>,
    pub maps: Vec<Option<KernelMap>>,
    pub programs: Vec<Option<KernelProgram>>,
    /// By map index: the value of each struct_ops map, program fds
    /// included (libbpf's `kern_vdata`), for `bpf_map__attach_struct_ops`.
    pub struct_ops: Vec<Option<Vec<u8>>>,
}

/// What the application set on a program before load
/// (`bpf_program__set_log_level`, `__set_log_buf`, `__set_flags`,
/// `__set_attach_target`).
#[derive(Clone, Copy, Debug, Default)]
pub struct ProgParams {
    pub log_level: u32,
    /// The application's log buffer (pointer, size), if it gave one.
    pub log_buf: Option<(*mut u8, usize)>,
    pub prog_flags: u32,
    /// `attach_btf_id` found by `bpf_program__set_attach_target`.
    pub attach_btf_id: Option<u32>,
    pub attach_prog_fd: Option<RawFd>,
}

/// How [`load`] reports libbpf's messages.
pub type Logger<'a> = &'a dyn Fn(LogLevel, &str);

/// `bpf_object__load` for the kernel side of `place`: `reused[i]` is an
/// existing kernel map that map `i` becomes (pins, `bpf_map__reuse_fd`).
pub fn load(
    obj: &Object,
    place: &Placement,
    shared: &BTreeSet<usize>,
    targets: &TargetBtf,
    params: &[ProgParams],
    reused: &mut [Option<KernelMap>],
    log: Logger<'_>,
) -> Result<KernelObject, KernelError> {
    let mut out = KernelObject {
        btf: load_btf(obj, log),
        ..Default::default()
    };
    let st_ops = struct_ops::prepare(obj, place, targets.vmlinux(), log)?;
    for (i, m) in obj.maps().iter().enumerate() {
        let take = reused.get_mut(i).and_then(Option::take);
        out.maps.push(match (take, place.maps.get(i)) {
            (Some(existing), _) => Some(existing),
            (None, Some(Side::Kernel)) if m.autocreate() => Some(match &st_ops.maps[i] {
                Some(plan) => struct_ops::create_map(m, plan, out.btf.as_ref(), log)?,
                None => create_map(m, shared.contains(&i), out.btf.as_ref(), log)?,
            }),
            _ => None,
        });
    }
    fill_map_slots(obj, &out.maps)?;
    let rodata: Vec<RawFd> = obj
        .maps()
        .iter()
        .zip(&out.maps)
        .filter(|(m, k)| k.is_some() && matches!(m.kind(), MapKind::Rodata | MapKind::Kconfig))
        .filter_map(|(_, k)| k.as_ref().map(KernelMap::raw_fd))
        .collect();
    for (i, p) in obj.programs().enumerate() {
        if !p.autoload() || place.programs.get(i) != Some(&Side::Kernel) {
            out.programs.push(None);
            continue;
        }
        let params = params.get(i).copied().unwrap_or_default();
        let st_target = st_ops.progs.get(i).copied().flatten();
        struct_ops::check_program(p.name(), p.prog_type(), st_target, log)?;
        let prog = load_program(obj, i, &out, targets, &params, st_target, log)?;
        for &fd in &rodata {
            bind_map(prog.fd.as_raw_fd(), fd);
        }
        out.programs.push(Some(prog));
    }
    fill_prog_slots(obj, &out, log)?;
    let prog_fds: Vec<Option<RawFd>> = out
        .programs
        .iter()
        .map(|p| p.as_ref().map(|p| p.fd.as_raw_fd()))
        .collect();
    out.struct_ops = st_ops
        .maps
        .iter()
        .map(|p| p.as_ref().map(|p| struct_ops::prepare_vdata(p, &prog_fds)))
        .collect();
    Ok(out)
}

/// libbpf's `bpf_object__sanitize_and_load_btf`: the object's BTF goes to
/// the kernel; a failure is reported and ignored (BTF is optional).
fn load_btf(obj: &Object, log: Logger<'_>) -> Option<OwnedFd> {
    let btf = obj.btf()?;
    let raw = kernel_btf(obj, btf);
    let btf_raw: &[u8] = &raw;
    match sys::btf_load(btf_raw, None, 0) {
        Ok(fd) => Some(fd),
        // libbpf's BTF feature probe fails the same way: it skips BTF
        // without a word.
        Err(libc::EPERM) | Err(libc::EACCES) => None,
        Err(_) => {
            // libbpf retries with a log (`btf_load_into_kernel`).
            let mut buf = vec![0u8; LOG_BUF_SIZE];
            let err = match sys::btf_load(btf_raw, Some(&mut buf), 1) {
                Ok(fd) => return Some(fd),
                Err(e) => e,
            };
            log(
                LogLevel::Warn,
                &format!("BTF loading error: {}", errstr(err)),
            );
            let text = c_text(&buf);
            if !text.is_empty() {
                log(
                    LogLevel::Warn,
                    &format!("-- BEGIN BTF LOAD LOG ---\n{text}\n-- END BTF LOAD LOG --"),
                );
            }
            log(
                LogLevel::Info,
                &format!(
                    "Error loading .BTF into kernel: {}. BTF is optional, ignoring.",
                    errstr(err)
                ),
            );
            None
        }
    }
}

/// The object's BTF as the kernel gets it: global functions of hidden
/// subprograms (`__hidden`, as usdt.bpf.h's helpers) turned static, as
/// libbpf's `bpf_object__sanitize_and_load_btf` does.
fn kernel_btf<'a>(obj: &Object, btf: &'a Btf) -> std::borrow::Cow<'a, [u8]> {
    /// `BTF_KIND_FUNC`, and the linkages in its `vlen`.
    const KIND_FUNC: u32 = 12;
    const LINKAGE_GLOBAL: u32 = 1;
    let hidden: Vec<&str> = obj
        .subprograms()
        .filter(|p| p.mark_btf_static())
        .map(|p| p.name())
        .collect();
    if hidden.is_empty() {
        return std::borrow::Cow::Borrowed(btf.raw_data());
    }
    let Ok(mut copy) = Btf::parse(btf.raw_data()) else {
        return std::borrow::Cow::Borrowed(btf.raw_data());
    };
    for name in hidden {
        let Some(id) = copy.find_by_name_kind(name, BtfKind::Func) else {
            continue;
        };
        let _ = copy.modify_type(id, |words| {
            let info = words[1];
            if (info >> 24) & 0x1f == KIND_FUNC && info & 0xffff == LINKAGE_GLOBAL {
                // BTF_FUNC_STATIC: linkage 0.
                words[1] = info & !0xffff;
            }
        });
    }
    std::borrow::Cow::Owned(copy.raw_data().to_vec())
}

fn c_text(buf: &[u8]) -> String {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn map_attr(m: &BpfMap, btf: Option<&OwnedFd>) -> MapCreateAttr {
    let mut max_entries = m.max_entries();
    if m.map_type() == MapType::PERF_EVENT_ARRAY && max_entries == 0 {
        max_entries = userbpf_runtime::cpu::possible_cpus();
    }
    let mut attr = MapCreateAttr {
        map_type: m.map_type().0,
        key_size: m.key_size(),
        value_size: m.value_size(),
        max_entries,
        map_flags: m.map_flags(),
        numa_node: m.numa_node(),
        map_name: sys::obj_name(m.kernel_name()),
        map_extra: m.map_extra(),
        ..Default::default()
    };
    // libbpf gives these types no BTF key/value ids (`bpf_object__create_map`).
    let no_btf = matches!(
        m.map_type(),
        MapType::PERF_EVENT_ARRAY
            | MapType::CGROUP_ARRAY
            | MapType::STACK_TRACE
            | MapType::ARRAY_OF_MAPS
            | MapType::HASH_OF_MAPS
            | MapType::DEVMAP
            | MapType::DEVMAP_HASH
            | MapType::CPUMAP
            | MapType::XSKMAP
            | MapType::SOCKMAP
            | MapType::SOCKHASH
            | MapType::QUEUE
            | MapType::STACK
            | MapType::ARENA
    );
    if let Some(btf) = btf.filter(|_| !no_btf) {
        if m.btf_value_type_id() != 0 || m.btf_key_type_id() != 0 {
            attr.btf_fd = btf.as_raw_fd() as u32;
            attr.btf_key_type_id = m.btf_key_type_id();
            attr.btf_value_type_id = m.btf_value_type_id();
        }
    }
    attr
}

/// libbpf's `bpf_object__create_map` plus `bpf_object__populate_internal_map`.
fn create_map(
    m: &BpfMap,
    shared: bool,
    btf: Option<&OwnedFd>,
    log: Logger<'_>,
) -> Result<KernelMap, KernelError> {
    let name = m.name().to_string();
    let mut attr = map_attr(m, btf);
    // An array that user-space programs share is made mmapable, so that
    // they reach its values directly (same semantics, atomics included).
    if shared && m.map_type() == MapType::ARRAY {
        attr.map_flags |= BPF_F_MMAPABLE;
    }
    // Map-in-map: the kernel takes the inner map's layout from a template
    // map that lives only for the call.
    let _inner_template = match m.inner_map() {
        Some(inner) => {
            let mut iattr = map_attr(inner, btf);
            let fd = sys::map_create(&mut iattr).map_err(|errno| KernelError::MapCreate {
                name: inner.name().to_string(),
                errno,
            })?;
            attr.inner_map_fd = fd.as_raw_fd() as u32;
            Some(fd)
        }
        None => None,
    };
    let fd = match sys::map_create(&mut attr) {
        Ok(fd) => fd,
        Err(errno) if attr.btf_fd != 0 => {
            log(
                LogLevel::Warn,
                &format!(
                    "Error in bpf_create_map_xattr({name}): {}. Retrying without BTF.",
                    errstr(errno)
                ),
            );
            attr.btf_fd = 0;
            attr.btf_key_type_id = 0;
            attr.btf_value_type_id = 0;
            sys::map_create(&mut attr).map_err(|errno| {
                log(
                    LogLevel::Warn,
                    &format!("map '{name}': failed to create: {}", errstr(errno)),
                );
                KernelError::MapCreate {
                    name: name.clone(),
                    errno,
                }
            })?
        }
        Err(errno) => {
            log(
                LogLevel::Warn,
                &format!("map '{name}': failed to create: {}", errstr(errno)),
            );
            return Err(KernelError::MapCreate { name, errno });
        }
    };
    log(
        LogLevel::Debug,
        &format!("map '{name}': created successfully, fd={}", fd.as_raw_fd()),
    );
    if let Some(data) = m.initial_data() {
        let mut value = vec![0u8; m.value_size() as usize];
        let n = data.len().min(value.len());
        value[..n].copy_from_slice(&data[..n]);
        let key = 0u32;
        let init = |errno| {
            log(
                LogLevel::Warn,
                &format!(
                    "map '{name}': failed to set initial contents: {}",
                    errstr(errno)
                ),
            );
            KernelError::MapInit {
                name: name.clone(),
                errno,
            }
        };
        // SAFETY: a 4-byte key and a value of the map's value size.
        unsafe {
            sys::map_elem(
                cmd::MAP_UPDATE_ELEM,
                fd.as_raw_fd(),
                &key as *const u32 as *const _,
                value.as_mut_ptr() as *mut _,
                0,
            )
        }
        .map_err(init)?;
        if matches!(m.kind(), MapKind::Rodata | MapKind::Kconfig) {
            sys::map_freeze(fd.as_raw_fd()).map_err(init)?;
        }
    }
    let mut km = KernelMap::from_fd(fd).map_err(|errno| KernelError::MapCreate {
        name: name.clone(),
        errno,
    })?;
    km.max_entries = attr.max_entries;
    Ok(km)
}

fn update_slot(map: &KernelMap, name: &str, slot: u32, fd: RawFd) -> Result<(), KernelError> {
    let mut value = fd as u32;
    // SAFETY: 4-byte key and value, as map-in-map and program arrays take.
    unsafe {
        sys::map_elem(
            cmd::MAP_UPDATE_ELEM,
            map.raw_fd(),
            &slot as *const u32 as *const _,
            &mut value as *mut u32 as *mut _,
            0,
        )
    }
    .map_err(|errno| KernelError::MapInit {
        name: name.to_string(),
        errno,
    })
}

/// Map-in-map slots the object declares (`.values = { [0] = &inner }`).
fn fill_map_slots(obj: &Object, maps: &[Option<KernelMap>]) -> Result<(), KernelError> {
    for (m, outer) in obj.maps().iter().zip(maps) {
        let Some(outer) = outer else { continue };
        for (slot, init) in m.init_slots().iter().enumerate() {
            if let Some(InitSlot::Map(idx)) = init {
                if let Some(Some(inner)) = maps.get(*idx) {
                    update_slot(outer, m.name(), slot as u32, inner.raw_fd())?;
                }
            }
        }
    }
    Ok(())
}

/// Program-array slots the object declares.
fn fill_prog_slots(obj: &Object, out: &KernelObject, log: Logger<'_>) -> Result<(), KernelError> {
    for (m, array) in obj.maps().iter().zip(&out.maps) {
        let Some(array) = array else { continue };
        if array.map_type != MapType::PROG_ARRAY.0 {
            continue;
        }
        for (slot, init) in m.init_slots().iter().enumerate() {
            let Some(InitSlot::Program(name)) = init else {
                continue;
            };
            let prog = obj
                .programs()
                .position(|p| p.name() == name)
                .and_then(|i| out.programs.get(i))
                .and_then(Option::as_ref);
            // A program that was not loaded has fd -ENOENT in libbpf
            // (`bpf_program__fd`), which the kernel refuses with EBADF.
            let fd = prog.map_or(-libc::ENOENT, |p| p.fd.as_raw_fd());
            update_slot(array, m.name(), slot as u32, fd).inspect_err(|e| {
                log(
                    LogLevel::Warn,
                    &format!(
                        "map '{}': failed to initialize slot [{slot}] to prog '{name}' fd={fd}: {}",
                        m.name(),
                        errstr(e.errno())
                    ),
                );
            })?;
        }
    }
    Ok(())
}

/// `BPF_PROG_BIND_MAP`: keeps `.rodata` alive with the program (libbpf does
/// this so that tools can read it back); failures are ignored as there.
fn bind_map(prog_fd: RawFd, map_fd: RawFd) {
    let mut attr = sys::BindMapAttr {
        prog_fd: prog_fd as u32,
        map_fd: map_fd as u32,
        flags: 0,
    };
    // SAFETY: a plain attribute struct.
    let _ = unsafe { sys::bpf(cmd::PROG_BIND_MAP, &mut attr) };
}

/// libbpf's `find_attach_btf_id`: the BTF id of attach target `name` for
/// `attach_type` (`btf_trace_<name>` typedefs for raw tracepoints,
/// `bpf_lsm_<name>` / `bpf_iter_<name>` functions, else the function).
pub fn find_attach_btf_id(btf: &Btf, name: &str, attach_type: AttachType) -> Option<u32> {
    let (prefix, kind) = match attach_type {
        AttachType::TRACE_RAW_TP => ("btf_trace_", BtfKind::Typedef),
        AttachType::LSM_MAC | AttachType::LSM_CGROUP => ("bpf_lsm_", BtfKind::Func),
        AttachType::TRACE_ITER => ("bpf_iter_", BtfKind::Func),
        _ => ("", BtfKind::Func),
    };
    btf.find_by_name_kind(format!("{prefix}{name}"), kind)
}

/// The instructions the kernel gets: map indexes become map fds.
fn kernel_insns(insns: &[Insn], maps: &[Option<KernelMap>]) -> Vec<Insn> {
    let mut out = insns.to_vec();
    for insn in out.iter_mut() {
        if !insn.is_lddw() {
            continue;
        }
        let kind = match insn.src {
            BPF_PSEUDO_MAP_IDX => BPF_PSEUDO_MAP_FD,
            BPF_PSEUDO_MAP_IDX_VALUE => BPF_PSEUDO_MAP_VALUE,
            _ => continue,
        };
        if let Some(Some(m)) = maps.get(insn.imm as u32 as usize) {
            insn.src = kind;
            insn.imm = m.raw_fd();
        }
    }
    out
}

/// libbpf's `bpf_object_load_prog` for one program.
fn load_program(
    obj: &Object,
    idx: usize,
    out: &KernelObject,
    targets: &TargetBtf,
    params: &ProgParams,
    st_ops_target: Option<(u32, u32)>,
    log: Logger<'_>,
) -> Result<KernelProgram, KernelError> {
    let p = obj
        .programs()
        .nth(idx)
        .expect("index of an existing program");
    let name = p.name().to_string();
    let relocated = p
        .relocated()
        .ok_or_else(|| KernelError::NotRelocated { name: name.clone() })?;
    let fail = |message: String, errno: i32| {
        log(LogLevel::Warn, &format!("prog '{name}': {message}"));
        KernelError::Program {
            name: name.clone(),
            message,
            errno,
        }
    };
    let insns = Insn::encode_all(&kernel_insns(&relocated.insns, &out.maps));
    let license = CString::new(obj.license()).unwrap_or_default();
    let mut attr = ProgLoadAttr {
        prog_type: p.prog_type().0,
        insn_cnt: relocated.insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        kern_version: obj.kern_version(),
        prog_flags: params.prog_flags,
        prog_name: sys::obj_name(&name),
        expected_attach_type: p.expected_attach_type().0,
        ..Default::default()
    };
    if let Some(def) = p.sec_def() {
        if def.flags.contains(SecFlags::SLEEPABLE) {
            attr.prog_flags |= BPF_F_SLEEPABLE;
        }
        if def.flags.contains(SecFlags::XDP_FRAGS) {
            attr.prog_flags |= BPF_F_XDP_HAS_FRAGS;
        }
    }
    // Attach targets by BTF id (tp_btf, fentry/fexit, lsm, iter).
    if let Some(id) = params.attach_btf_id {
        attr.attach_btf_id = id;
        attr.attach_prog_fd = params.attach_prog_fd.unwrap_or(0) as u32;
    } else if let Some(def) = p
        .sec_def()
        .filter(|d| d.flags.contains(SecFlags::ATTACH_BTF))
    {
        if let Some(target) = def.attach_target(p.section_name()) {
            match find_attach_btf_id(targets.vmlinux(), target, p.expected_attach_type()) {
                Some(id) => attr.attach_btf_id = id,
                None => {
                    return Err(fail(
                        format!(
                            "failed to find kernel BTF type ID of '{target}': {}",
                            errstr(libc::ESRCH)
                        ),
                        libc::ESRCH,
                    ))
                }
            }
        }
    }
    // struct_ops: the kernel struct's id and the member's index.
    if let Some((id, member)) = st_ops_target {
        attr.attach_btf_id = id;
        attr.expected_attach_type = member;
    }
    let func_info = relocated.func_info.as_ref().filter(|_| out.btf.is_some());
    let line_info = relocated.line_info.as_ref().filter(|_| out.btf.is_some());
    if let Some(btf) = &out.btf {
        if func_info.is_some() || line_info.is_some() {
            attr.prog_btf_fd = btf.as_raw_fd() as u32;
        }
    }
    if let Some(fi) = func_info {
        attr.func_info_rec_size = fi.record_size;
        attr.func_info = fi.bytes.as_ptr() as u64;
        attr.func_info_cnt = fi.count() as u32;
    }
    if let Some(li) = line_info {
        attr.line_info_rec_size = li.record_size;
        attr.line_info = li.bytes.as_ptr() as u64;
        attr.line_info_cnt = li.count() as u32;
    }

    let mut log_level = params.log_level;
    let mut own_buf: Vec<u8> = Vec::new();
    loop {
        let (buf_ptr, buf_len) = if log_level == 0 {
            (std::ptr::null_mut(), 0)
        } else if let Some((ptr, len)) = params.log_buf {
            (ptr, len)
        } else {
            if own_buf.is_empty() {
                own_buf = vec![0u8; LOG_BUF_SIZE];
            }
            (own_buf.as_mut_ptr(), own_buf.len())
        };
        attr.log_level = log_level;
        attr.log_buf = buf_ptr as u64;
        attr.log_size = buf_len as u32;
        let mut result = Err(libc::EAGAIN);
        for _ in 0..5 {
            // SAFETY: every pointer in `attr` (instructions, license, func
            // and line info, log buffer) outlives the call.
            result = unsafe { sys::bpf_fd(cmd::PROG_LOAD, &mut attr) };
            if !matches!(result, Err(libc::EAGAIN)) {
                break;
            }
        }
        match result {
            Ok(fd) => {
                if log_level > 0 && params.log_buf.is_none() {
                    let text = c_text(&own_buf);
                    if !text.is_empty() {
                        log(
                            LogLevel::Debug,
                            &format!(
                                "prog '{name}': -- BEGIN PROG LOAD LOG --\n{text}-- END PROG LOAD LOG --"
                            ),
                        );
                    }
                }
                let info: ProgInfoHead = sys::obj_info(fd.as_raw_fd()).unwrap_or_default();
                return Ok(KernelProgram {
                    fd,
                    id: info.id,
                    name,
                    prog_type: attr.prog_type,
                    expected_attach_type: attr.expected_attach_type,
                });
            }
            Err(errno) => {
                if log_level == 0 {
                    log_level = 1;
                    continue;
                }
                if errno == libc::ENOSPC
                    && params.log_buf.is_none()
                    && own_buf.len() <= (u32::MAX / 2) as usize
                {
                    own_buf = vec![0u8; own_buf.len() * 2];
                    continue;
                }
                log(
                    LogLevel::Warn,
                    &format!("prog '{name}': BPF program load failed: {}", errstr(errno)),
                );
                if errno == libc::EPERM {
                    perm_msg(log);
                }
                let text = if params.log_buf.is_none() {
                    c_text(&own_buf)
                } else {
                    String::new()
                };
                if !text.is_empty() {
                    log(
                        LogLevel::Warn,
                        &format!(
                            "prog '{name}': -- BEGIN PROG LOAD LOG --\n{text}-- END PROG LOAD LOG --"
                        ),
                    );
                }
                log(
                    LogLevel::Warn,
                    &format!("prog '{name}': failed to load: {}", errstr(errno)),
                );
                return Err(KernelError::Program {
                    name: name.clone(),
                    message: format!("BPF program load failed: {}", errstr(errno)),
                    errno,
                });
            }
        }
    }
}

/// libbpf's `pr_perm_msg` as root (RLIMIT_MEMLOCK), and a plain statement
/// of the missing privilege otherwise.
fn perm_msg(log: Logger<'_>) {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        log(
            LogLevel::Warn,
            "permission error: this process may not load kernel BPF programs (run as root, or with CAP_BPF and CAP_PERFMON)",
        );
        return;
    }
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is writable.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } != 0
        || lim.rlim_cur == libc::RLIM_INFINITY
    {
        return;
    }
    let cur = lim.rlim_cur as f64;
    let text = if lim.rlim_cur < 1024 {
        format!("{} bytes", lim.rlim_cur)
    } else if lim.rlim_cur < 1024 * 1024 {
        format!("{:.1} KiB", cur / 1024.0)
    } else {
        format!("{:.1} MiB", cur / (1024.0 * 1024.0))
    };
    log(
        LogLevel::Warn,
        &format!("permission error while running as root; try raising 'ulimit -l'? current value: {text}"),
    );
}
