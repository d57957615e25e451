//! struct_ops in the kernel, as libbpf 1.7 does it:
//! `bpf_map__init_kern_struct_ops` (the object's struct translated member
//! by member to the kernel's `struct bpf_struct_ops_<name>` value, each
//! function pointer recorded for its program, whose load gets the
//! kernel struct's BTF id as `attach_btf_id` and the member's index as
//! `expected_attach_type`), the map's creation with
//! `btf_vmlinux_value_type_id`, and `bpf_map_prepare_vdata` (program fds
//! written into the value once the programs are loaded). Registering the
//! value (`BPF_MAP_UPDATE_ELEM`, and `BPF_LINK_CREATE` for
//! `.struct_ops.link`) is the attach step ([`register`]).
//!
//! Only vmlinux struct_ops types are looked up (module BTF is not).

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use userbpf_btf_core::{Btf, BtfKind, TypeView};

use crate::backend::kernel::sys::{self, cmd, LinkCreateAttr, MapCreateAttr};
use crate::backend::kernel::{KernelError, KernelMap, Logger};
use crate::backend::placement::{Placement, Side};
use crate::errstr::errstr;
use crate::object::struct_ops::{is_func_ptr, BPF_F_LINK};
use crate::object::{AttachType, BpfMap, LogLevel, Object, ProgType};

/// libbpf's `STRUCT_OPS_VALUE_PREFIX`.
pub const STRUCT_OPS_VALUE_PREFIX: &str = "bpf_struct_ops_";

/// One struct_ops map, translated to the kernel's layout.
#[derive(Clone, Debug)]
pub struct MapPlan {
    /// `struct bpf_struct_ops_<name>` in vmlinux BTF.
    pub vtype_id: u32,
    /// Its size: the map's value size.
    pub value_size: u32,
    /// The value without program fds (`kern_vdata`).
    pub vdata: Vec<u8>,
    /// (entry program index, byte offset in the value) per function pointer.
    pub funcs: Vec<(usize, usize)>,
}

/// The kernel side of every struct_ops map and program of an object.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// By map index.
    pub maps: Vec<Option<MapPlan>>,
    /// By entry program index: `(attach_btf_id, member index)`.
    pub progs: Vec<Option<(u32, u32)>>,
}

fn fail(log: Logger<'_>, name: &str, errno: i32, message: String) -> KernelError {
    log(LogLevel::Warn, &message);
    KernelError::MapInit {
        name: name.to_string(),
        errno,
    }
}

/// `bpf_object__init_kern_struct_ops_maps` for the struct_ops maps that
/// the kernel side creates.
pub fn prepare(
    obj: &Object,
    place: &Placement,
    vmlinux: &Btf,
    log: Logger<'_>,
) -> Result<Plan, KernelError> {
    let mut plan = Plan {
        maps: vec![None; obj.maps().len()],
        progs: vec![None; obj.programs().count()],
    };
    for (i, m) in obj.maps().iter().enumerate() {
        if m.struct_ops().is_none() || !m.autocreate() || place.maps.get(i) != Some(&Side::Kernel) {
            continue;
        }
        plan.maps[i] = Some(init_kern(obj, m, vmlinux, &mut plan.progs, log)?);
    }
    Ok(plan)
}

/// `bpf_map__init_kern_struct_ops`.
fn init_kern(
    obj: &Object,
    map: &BpfMap,
    kbtf: &Btf,
    progs: &mut [Option<(u32, u32)>],
    log: Logger<'_>,
) -> Result<MapPlan, KernelError> {
    let name = map.name();
    let st = map.struct_ops().expect("a struct_ops map");
    let btf = obj.btf().ok_or_else(|| KernelError::MapInit {
        name: name.to_string(),
        errno: libc::EINVAL,
    })?;
    let tname = String::from_utf8_lossy(userbpf_btf_core::co_re::essential_name(
        st.type_name.as_bytes(),
    ))
    .into_owned();
    let stname = format!("{STRUCT_OPS_VALUE_PREFIX}{tname}");
    let Some(vtype_id) = kbtf.find_by_name_kind(&stname, BtfKind::Struct) else {
        return Err(fail(
            log,
            name,
            libc::ENOENT,
            format!("struct_ops init_kern: struct {stname} is not found in kernel BTF"),
        ));
    };
    let Some(kern_type_id) = kbtf.find_by_name_kind(&tname, BtfKind::Struct) else {
        return Err(fail(
            log,
            name,
            libc::ENOENT,
            format!("struct_ops init_kern: struct {tname} is not found in kernel BTF"),
        ));
    };
    let (Some(TypeView::Struct(vtype)), Some(TypeView::Struct(ktype))) = (
        kbtf.type_by_id(vtype_id).map(|t| t.view()),
        kbtf.type_by_id(kern_type_id).map(|t| t.view()),
    ) else {
        return Err(fail(
            log,
            name,
            libc::EINVAL,
            "struct_ops init_kern: bad kernel BTF".into(),
        ));
    };
    let Some(data_member) = vtype.members().find(|m| m.type_id() == kern_type_id) else {
        return Err(fail(
            log,
            name,
            libc::EINVAL,
            format!("struct_ops init_kern: struct {tname} data is not found in struct {stname}"),
        ));
    };
    let Some(TypeView::Struct(ltype)) = btf.type_by_id(st.type_id).map(|t| t.view()) else {
        return Err(fail(
            log,
            name,
            libc::EINVAL,
            "struct_ops init_kern: bad BTF".into(),
        ));
    };
    log(
        LogLevel::Debug,
        &format!(
            "struct_ops init_kern {name}: type_id:{} kern_type_id:{kern_type_id} kern_vtype_id:{vtype_id}",
            st.type_id
        ),
    );
    let mut vdata = vec![0u8; vtype.size as usize];
    let kern_data_off = (data_member.bit_offset() / 8) as usize;
    let mut funcs = Vec::new();
    for (i, member) in ltype.members().enumerate() {
        let mname = btf.name_by_offset(member.name_off()).unwrap_or("");
        let moff = (member.bit_offset() / 8) as usize;
        let Ok(msize) = btf.resolve_size(member.type_id()) else {
            return Err(fail(
                log,
                name,
                libc::EINVAL,
                format!(
                    "struct_ops init_kern {name}: failed to resolve the size of member {mname}"
                ),
            ));
        };
        let msize = msize as usize;
        let mdata = st.data.get(moff..moff + msize).unwrap_or_default();
        let prog_name = st.progs.get(i).and_then(Option::as_ref);
        let kern_member = ktype
            .members()
            .enumerate()
            .find(|(_, km)| kbtf.name_by_offset(km.name_off()) == Some(mname));
        let Some((kern_member_idx, kern_member)) = kern_member else {
            // In libbpf the shadow value holds the program pointer, so a
            // relocated member is never all-zero.
            if prog_name.is_some() || mdata.iter().any(|&b| b != 0) {
                return Err(fail(
                    log,
                    name,
                    libc::ENOTSUP,
                    format!(
                        "struct_ops init_kern {name}: Cannot find member {mname} in kernel BTF"
                    ),
                ));
            }
            log(
                LogLevel::Info,
                &format!(
                    "struct_ops {name}: member {mname} not found in kernel, skipping it as it's set to zero"
                ),
            );
            continue;
        };
        if member.bitfield_size() != 0 || kern_member.bitfield_size() != 0 {
            return Err(fail(
                log,
                name,
                libc::ENOTSUP,
                format!("struct_ops init_kern {name}: bitfield {mname} is not supported"),
            ));
        }
        let kern_moff = (kern_member.bit_offset() / 8) as usize;
        let mtype = btf.skip_mods_and_typedefs(member.type_id());
        let kmtype = kbtf.skip_mods_and_typedefs(kern_member.type_id());
        let (Some(mtype), Some(kmtype)) = (mtype, kmtype) else {
            return Err(fail(
                log,
                name,
                libc::EINVAL,
                "struct_ops init_kern: bad BTF".into(),
            ));
        };
        if mtype.kind() != kmtype.kind() {
            return Err(fail(
                log,
                name,
                libc::ENOTSUP,
                format!(
                    "struct_ops init_kern {name}: Unmatched member type {mname} {} != {}(kernel)",
                    mtype.raw().kind_raw(),
                    kmtype.raw().kind_raw()
                ),
            ));
        }
        if mtype.kind() == BtfKind::Ptr {
            let Some(prog_name) = prog_name else { continue };
            let Some(prog_idx) = obj.programs().position(|p| p.name() == prog_name) else {
                continue;
            };
            let prog = obj.programs().nth(prog_idx).expect("an entry program");
            if prog.prog_type() != ProgType::STRUCT_OPS {
                return Err(fail(
                    log,
                    name,
                    libc::ENOTSUP,
                    format!(
                        "struct_ops init_kern {name}: member {mname} is not a struct_ops program"
                    ),
                ));
            }
            if !is_func_ptr(kbtf, kern_member.type_id()) {
                return Err(fail(
                    log,
                    name,
                    libc::ENOTSUP,
                    format!("struct_ops init_kern {name}: kernel member {mname} is not a func ptr"),
                ));
            }
            let want = (kern_type_id, kern_member_idx as u32);
            let slot = &mut progs[prog_idx];
            let (have_id, have_idx) = *slot.get_or_insert(want);
            if have_id != kern_type_id {
                return Err(fail(
                    log,
                    name,
                    libc::EINVAL,
                    format!(
                        "struct_ops init_kern {name} func ptr {mname}: invalid reuse of prog {prog_name} in sec {} with type {}: attach_btf_id {have_id} != kern_type_id {kern_type_id}",
                        prog.section_name(),
                        prog.prog_type().0
                    ),
                ));
            }
            if have_idx != kern_member_idx as u32 {
                return Err(fail(
                    log,
                    name,
                    libc::EINVAL,
                    format!(
                        "struct_ops init_kern {name} func ptr {mname}: invalid reuse of prog {prog_name} in sec {} with type {}: expected_attach_type {have_idx} != kern_member_idx {kern_member_idx}",
                        prog.section_name(),
                        prog.prog_type().0
                    ),
                ));
            }
            funcs.push((prog_idx, kern_data_off + kern_moff));
            log(
                LogLevel::Debug,
                &format!(
                    "struct_ops init_kern {name}: func ptr {mname} is set to prog {prog_name} from data(+{moff}) to kern_data(+{kern_moff})"
                ),
            );
            continue;
        }
        let kmsize = kbtf.resolve_size(kern_member.type_id()).ok();
        if kmsize.map(|s| s as usize) != Some(msize) {
            return Err(fail(
                log,
                name,
                libc::ENOTSUP,
                format!(
                    "struct_ops init_kern {name}: Error in size of member {mname}: {msize} != {}(kernel)",
                    kmsize.map_or(-1, i64::from)
                ),
            ));
        }
        log(
            LogLevel::Debug,
            &format!(
                "struct_ops init_kern {name}: copy {mname} {msize} bytes from data(+{moff}) to kern_data(+{kern_moff})"
            ),
        );
        let dst = kern_data_off + kern_moff;
        if let Some(d) = vdata.get_mut(dst..dst + msize) {
            d.copy_from_slice(mdata);
        }
    }
    Ok(MapPlan {
        vtype_id,
        value_size: vtype.size,
        vdata,
        funcs,
    })
}

/// The `BPF_MAP_CREATE` of a struct_ops map (`bpf_object__create_map`):
/// the kernel value type by id, the object's BTF, no key/value type ids.
pub fn create_map(
    m: &BpfMap,
    plan: &MapPlan,
    btf: Option<&OwnedFd>,
    log: Logger<'_>,
) -> Result<KernelMap, KernelError> {
    let name = m.name().to_string();
    let mut attr = MapCreateAttr {
        map_type: m.map_type().0,
        key_size: m.key_size(),
        value_size: plan.value_size,
        max_entries: m.max_entries(),
        map_flags: m.map_flags(),
        numa_node: m.numa_node(),
        map_name: sys::obj_name(m.kernel_name()),
        btf_vmlinux_value_type_id: plan.vtype_id,
        btf_fd: btf.map_or(0, |b| b.as_raw_fd() as u32),
        ..Default::default()
    };
    let fd = sys::map_create(&mut attr).map_err(|errno| {
        log(
            LogLevel::Warn,
            &format!("map '{name}': failed to create: {}", errstr(errno)),
        );
        KernelError::MapCreate {
            name: name.clone(),
            errno,
        }
    })?;
    log(
        LogLevel::Debug,
        &format!("map '{name}': created successfully, fd={}", fd.as_raw_fd()),
    );
    KernelMap::from_fd(fd).map_err(|errno| KernelError::MapCreate { name, errno })
}

/// libbpf's check before loading a struct_ops program.
pub fn check_program(
    name: &str,
    prog_type: ProgType,
    target: Option<(u32, u32)>,
    log: Logger<'_>,
) -> Result<(), KernelError> {
    if prog_type == ProgType::STRUCT_OPS && target.is_none() {
        let message =
            "SEC(\"struct_ops\") program isn't referenced anywhere, did you forget to use it?"
                .to_string();
        log(LogLevel::Warn, &format!("prog '{name}': {message}"));
        log(
            LogLevel::Warn,
            &format!("prog '{name}': failed to load: {}", errstr(libc::EINVAL)),
        );
        return Err(KernelError::Program {
            name: name.to_string(),
            message,
            errno: libc::EINVAL,
        });
    }
    Ok(())
}

/// `bpf_map_prepare_vdata`: the value with each function pointer set to
/// its program's fd (`-ENOENT` for a program that was not loaded, as
/// `bpf_program__fd` gives).
pub fn prepare_vdata(plan: &MapPlan, prog_fds: &[Option<RawFd>]) -> Vec<u8> {
    let mut v = plan.vdata.clone();
    for &(prog, off) in &plan.funcs {
        let fd = prog_fds
            .get(prog)
            .copied()
            .flatten()
            .unwrap_or(-libc::ENOENT);
        if let Some(slot) = v.get_mut(off..off + 8) {
            slot.copy_from_slice(&(i64::from(fd) as u64).to_ne_bytes());
        }
    }
    v
}

/// How a registered struct_ops map is held.
#[derive(Debug)]
pub enum Registration {
    /// Plain `.struct_ops`: the map update registered it; deleting the
    /// element unregisters it.
    Map,
    /// `.struct_ops.link`: a `BPF_LINK_TYPE_STRUCT_OPS` link.
    Link(OwnedFd),
}

/// `BPF_MAP_UPDATE_ELEM` of key 0 with `vdata`.
pub fn update_value(map_fd: RawFd, vdata: &[u8]) -> Result<(), i32> {
    let key = 0u32;
    let mut value = vdata.to_vec();
    // SAFETY: a 4-byte key and a value of the map's value size.
    unsafe {
        sys::map_elem(
            cmd::MAP_UPDATE_ELEM,
            map_fd,
            &key as *const u32 as *const _,
            value.as_mut_ptr() as *mut _,
            0,
        )
    }
}

/// The kernel half of `bpf_map__attach_struct_ops`: the value update
/// (EBUSY is fine for a `BPF_F_LINK` map that was registered before),
/// then a link for `.struct_ops.link` maps. Errors are errno values.
pub fn register(map_fd: RawFd, map_flags: u32, vdata: &[u8]) -> Result<Registration, i32> {
    let is_link = map_flags & BPF_F_LINK != 0;
    match update_value(map_fd, vdata) {
        Ok(()) => {}
        Err(libc::EBUSY) if is_link => {}
        Err(e) => return Err(e),
    }
    if !is_link {
        return Ok(Registration::Map);
    }
    let mut attr = LinkCreateAttr {
        prog_fd: map_fd as u32,
        target_fd: 0,
        attach_type: AttachType::STRUCT_OPS.0,
        ..Default::default()
    };
    sys::link_create(&mut attr).map(Registration::Link)
}

/// `bpf_link__detach_struct_ops` for a map registered without a link:
/// `BPF_MAP_DELETE_ELEM` of key 0.
pub fn unregister_map(map_fd: RawFd) -> Result<(), i32> {
    let key = 0u32;
    // SAFETY: a 4-byte key; delete takes no value.
    unsafe {
        sys::map_elem(
            cmd::MAP_DELETE_ELEM,
            map_fd,
            &key as *const u32 as *const _,
            std::ptr::null_mut(),
            0,
        )
    }
}

/// The kernel half of `bpf_link__update_map`: the new map's value update
/// (EBUSY is fine), then `BPF_LINK_UPDATE` with the new map.
pub fn update_link_map(link_fd: RawFd, map_fd: RawFd, vdata: &[u8]) -> Result<(), i32> {
    match update_value(map_fd, vdata) {
        Ok(()) | Err(libc::EBUSY) => {}
        Err(e) => return Err(e),
    }
    let mut attr = sys::LinkUpdateAttr {
        link_fd: link_fd as u32,
        new_prog_fd: map_fd as u32,
        flags: 0,
        old_prog_fd: 0,
    };
    // SAFETY: a plain attribute struct.
    unsafe { sys::bpf(cmd::LINK_UPDATE, &mut attr) }.map(|_| ())
}

/// The struct_ops maps that `place` leaves in user space although load
/// would create them (autocreate): struct_ops exist only in the kernel,
/// so such a load can only fail. By name.
pub fn user_side_maps(obj: &Object, place: &Placement) -> Vec<String> {
    obj.maps()
        .iter()
        .zip(&place.maps)
        .filter(|(m, side)| m.struct_ops().is_some() && m.autocreate() && **side == Side::User)
        .map(|(m, _)| m.name().to_string())
        .collect()
}
