//! bpftool skeletons: `bpf_object__{open,load,attach,detach,destroy}_skeleton`
//! and subskeletons.
//!
//! The skeleton structs are filled by code compiled into the application
//! (`<name>.skel.h`), so every array is walked with the stride the
//! application declared (`map_skel_sz`, `prog_skel_sz`, `var_skel_sz`),
//! never with our own `sizeof`, and the blocks the application allocated
//! with `calloc` are released with libc's `free`.

#![allow(non_snake_case)]

use std::ffi::{c_char, c_int, c_void, CStr};

use crate::abi::FfiReturn;
use crate::ffi_fn;
use crate::link_api::LinkHandle;
use crate::object_api::{
    errno_err, into_ptr, open_object, BpfObjectOpenOpts, MapHandle, ObjectHandle, ProgramHandle,
    Source,
};
use crate::opts::read_opts;
use crate::print;

/// `struct bpf_map_skeleton` (the `link` member exists from libbpf 1.5;
/// older skeletons declare 24-byte elements and never reach it).
#[repr(C)]
pub struct MapSkeleton {
    pub name: *const c_char,
    pub map: *mut *mut MapHandle,
    pub mmaped: *mut *mut c_void,
    pub link: *mut *mut LinkHandle,
}

/// `struct bpf_prog_skeleton`.
#[repr(C)]
pub struct ProgSkeleton {
    pub name: *const c_char,
    pub prog: *mut *mut ProgramHandle,
    pub link: *mut *mut LinkHandle,
}

/// `struct bpf_object_skeleton`.
#[repr(C)]
pub struct ObjectSkeleton {
    pub sz: usize,
    pub name: *const c_char,
    pub data: *const c_void,
    pub data_sz: usize,
    pub obj: *mut *mut ObjectHandle,
    pub map_cnt: c_int,
    pub map_skel_sz: c_int,
    pub maps: *mut u8,
    pub prog_cnt: c_int,
    pub prog_skel_sz: c_int,
    pub progs: *mut u8,
}

/// `struct bpf_var_skeleton`.
#[repr(C)]
pub struct VarSkeleton {
    pub name: *const c_char,
    pub map: *mut *mut MapHandle,
    pub addr: *mut *mut c_void,
}

/// `struct bpf_object_subskeleton`.
#[repr(C)]
pub struct ObjectSubskeleton {
    pub sz: usize,
    pub obj: *const ObjectHandle,
    pub map_cnt: c_int,
    pub map_skel_sz: c_int,
    pub maps: *mut u8,
    pub prog_cnt: c_int,
    pub prog_skel_sz: c_int,
    pub progs: *mut u8,
    pub var_cnt: c_int,
    pub var_skel_sz: c_int,
    pub vars: *mut u8,
}

/// Element `i` of an application array with stride `stride`, read as `T`
/// (only the fields within `stride` are valid: callers check the size
/// before touching a field past 24 bytes).
///
/// # Safety
/// `base` must hold `i + 1` elements of `stride` bytes, `stride` at least
/// the size of the fields read.
unsafe fn elem<T>(base: *mut u8, stride: c_int, i: c_int) -> *mut T {
    // SAFETY: caller contract.
    unsafe { base.add(i as usize * stride as usize).cast() }
}

fn name_of(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: skeleton names are NUL-terminated literals.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// libbpf's `populate_skeleton_maps`.
///
/// # Safety
/// `obj` live; `maps` holds `cnt` elements of `stride` bytes.
unsafe fn populate_maps(
    obj: *const ObjectHandle,
    maps: *mut u8,
    cnt: c_int,
    stride: c_int,
) -> Result<(), i32> {
    for i in 0..cnt {
        // SAFETY: caller contract.
        let ms = unsafe { &*elem::<MapSkeleton>(maps, stride, i) };
        // SAFETY: obj is live and the name is a C string.
        let map = unsafe { crate::object_api::bpf_object__find_map_by_name(obj, ms.name) };
        if map.is_null() {
            print::warn(&format!(
                "failed to find skeleton map '{}'\n",
                name_of(ms.name)
            ));
            return Err(libc::ESRCH);
        }
        // SAFETY: `map` points where the application's skeleton says.
        unsafe { *ms.map = map };
        if !ms.mmaped.is_null() {
            // SAFETY: a live map handle.
            let m = unsafe { &*map };
            // SAFETY: the map's object is live.
            let kind = unsafe { crate::object_api::map_def(m) }.kind();
            if kind != userbpf_libbpf_compat::object::MapKind::Kconfig {
                // SAFETY: the application's pointer slot.
                unsafe { *ms.mmaped = m.mmaped.ptr().cast() };
            }
        }
    }
    Ok(())
}

/// libbpf's `populate_skeleton_progs`.
///
/// # Safety
/// `obj` live; `progs` holds `cnt` elements of `stride` bytes.
unsafe fn populate_progs(
    obj: *const ObjectHandle,
    progs: *mut u8,
    cnt: c_int,
    stride: c_int,
) -> Result<(), i32> {
    for i in 0..cnt {
        // SAFETY: caller contract.
        let ps = unsafe { &*elem::<ProgSkeleton>(progs, stride, i) };
        // SAFETY: obj is live and the name is a C string.
        let prog = unsafe { crate::object_api::bpf_object__find_program_by_name(obj, ps.name) };
        if prog.is_null() {
            print::warn(&format!(
                "failed to find skeleton program '{}'\n",
                name_of(ps.name)
            ));
            return Err(libc::ESRCH);
        }
        // SAFETY: the application's pointer slot.
        unsafe { *ps.prog = prog };
    }
    Ok(())
}

fn fail(e: i32) -> c_int {
    c_int::from_error(&errno_err(e))
}

ffi_fn! {
    /// `int bpf_object__open_skeleton(struct bpf_object_skeleton *s, const struct bpf_object_open_opts *opts)`
    ///
    /// # Safety
    /// `s` must be a skeleton generated by bpftool (or laid out like one);
    /// `opts` NULL or a valid opts struct.
    pub unsafe fn bpf_object__open_skeleton(
        s: *mut ObjectSkeleton,
        opts: *const BpfObjectOpenOpts,
    ) -> c_int {
        // SAFETY: caller contract.
        let Some(s) = (unsafe { s.as_mut() }) else {
            return fail(libc::EINVAL);
        };
        let skel_name = name_of(s.name);
        // The skeleton's name is the object's name unless opts say otherwise.
        // SAFETY: opts per caller contract.
        let user = match unsafe { read_opts(opts) } {
            Ok(o) => o,
            Err(e) => return c_int::from_error(&e),
        };
        let mut local: BpfObjectOpenOpts = match user {
            Some(o) => o,
            // SAFETY: all-zero is valid for the opts struct (OptsStruct).
            None => unsafe { std::mem::zeroed() },
        };
        local.sz = std::mem::size_of::<BpfObjectOpenOpts>();
        if local.object_name.is_null() {
            local.object_name = s.name;
        }
        if s.data.is_null() || s.data_sz == 0 {
            return fail(libc::EINVAL);
        }
        // SAFETY: the skeleton's embedded ELF image.
        let bytes = unsafe { std::slice::from_raw_parts(s.data.cast::<u8>(), s.data_sz) };
        // SAFETY: `local` is a complete opts struct.
        let obj = into_ptr(unsafe { open_object(Source::Mem(bytes), &local) });
        if obj.is_null() {
            let e = crate::abi::errno();
            print::warn(&format!(
                "failed to initialize skeleton BPF object '{skel_name}': -{e}\n"
            ));
            return fail(e);
        }
        // SAFETY: the application's slot for the object.
        unsafe { *s.obj = obj };
        // SAFETY: arrays as the skeleton declares them.
        if let Err(e) = unsafe { populate_maps(obj, s.maps, s.map_cnt, s.map_skel_sz) } {
            print::warn(&format!(
                "failed to populate skeleton maps for '{skel_name}': -{e}\n"
            ));
            return fail(e);
        }
        // SAFETY: as above.
        if let Err(e) = unsafe { populate_progs(obj, s.progs, s.prog_cnt, s.prog_skel_sz) } {
            print::warn(&format!(
                "failed to populate skeleton progs for '{skel_name}': -{e}\n"
            ));
            return fail(e);
        }
        0
    }
}

ffi_fn! {
    /// `int bpf_object__load_skeleton(struct bpf_object_skeleton *s)`
    ///
    /// # Safety
    /// `s` a skeleton opened with `bpf_object__open_skeleton`.
    pub unsafe fn bpf_object__load_skeleton(s: *mut ObjectSkeleton) -> c_int {
        // SAFETY: caller contract.
        let Some(s) = (unsafe { s.as_mut() }) else {
            return fail(libc::EINVAL);
        };
        // SAFETY: the skeleton's object slot.
        let obj = unsafe { *s.obj };
        // SAFETY: a live object or NULL.
        let err = unsafe { crate::load_api::bpf_object__load(obj) };
        if err != 0 {
            print::warn(&format!(
                "failed to load BPF skeleton '{}': {err}\n",
                name_of(s.name)
            ));
            return fail(-err);
        }
        for i in 0..s.map_cnt {
            // SAFETY: the application's array, its stride.
            let ms = unsafe { &*elem::<MapSkeleton>(s.maps, s.map_skel_sz, i) };
            if ms.mmaped.is_null() {
                continue;
            }
            // SAFETY: populated at open.
            let map = unsafe { &**ms.map };
            // SAFETY: the application's slot; the memory is the map's now.
            unsafe { *ms.mmaped = map.mmaped.ptr().cast() };
        }
        0
    }
}

ffi_fn! {
    /// `int bpf_object__attach_skeleton(struct bpf_object_skeleton *s)`:
    /// auto-attaches every autoload + autoattach program whose link slot
    /// is empty and whose section says how to attach.
    ///
    /// # Safety
    /// `s` a loaded skeleton.
    pub unsafe fn bpf_object__attach_skeleton(s: *mut ObjectSkeleton) -> c_int {
        // SAFETY: caller contract.
        let Some(s) = (unsafe { s.as_mut() }) else {
            return fail(libc::EINVAL);
        };
        for i in 0..s.prog_cnt {
            // SAFETY: the application's array, its stride.
            let ps = unsafe { &*elem::<ProgSkeleton>(s.progs, s.prog_skel_sz, i) };
            // SAFETY: populated at open.
            let prog = unsafe { *ps.prog };
            if ps.link.is_null() || prog.is_null() {
                continue;
            }
            // SAFETY: the application's link slot.
            if unsafe { !(*ps.link).is_null() } {
                continue;
            }
            // SAFETY: a live program of a loaded object.
            match unsafe { crate::link_api::auto_attach(prog) } {
                Ok(Some(link)) => {
                    // SAFETY: as above.
                    unsafe { *ps.link = link };
                }
                Ok(None) => {}
                Err(e) => {
                    // SAFETY: a live program handle.
                    let name = unsafe { (*prog).name.to_string_lossy().into_owned() };
                    print::warn(&format!("prog '{name}': failed to auto-attach: -{e}\n"));
                    return fail(e);
                }
            }
        }
        // SAFETY: the skeleton's own array.
        match unsafe { attach_struct_ops_maps(s) } {
            Ok(()) => 0,
            Err(e) => fail(e),
        }
    }
}

/// libbpf 1.7's map loop of `bpf_object__attach_skeleton`: struct_ops maps
/// that are created and auto-attached get their link.
///
/// # Safety
/// `s` is a populated skeleton.
unsafe fn attach_struct_ops_maps(s: &mut ObjectSkeleton) -> Result<(), i32> {
    for i in 0..s.map_cnt {
        // SAFETY: the application's array, its stride.
        let ms = unsafe { &*elem::<MapSkeleton>(s.maps, s.map_skel_sz, i) };
        // SAFETY: populated at open.
        let map = unsafe { *ms.map };
        if map.is_null() {
            continue;
        }
        // SAFETY: a live map handle of a loaded object.
        let (autocreate, is_struct_ops, name) = unsafe {
            let def = crate::object_api::map_def(&*map);
            (
                def.autocreate(),
                def.map_type() == userbpf_libbpf_compat::object::MapType::STRUCT_OPS,
                (*map).name.to_string_lossy().into_owned(),
            )
        };
        // SAFETY: a live map handle.
        if !autocreate || !unsafe { (*map).autoattach } || !is_struct_ops {
            continue;
        }
        if (s.map_skel_sz as usize) < std::mem::size_of::<MapSkeleton>() {
            print::warn(&format!(
                "map '{name}': BPF skeleton version is old, skipping map auto-attachment...\n"
            ));
            continue;
        }
        if ms.link.is_null() {
            print::warn(&format!("map '{name}': map_skel link is uninitialized\n"));
            continue;
        }
        // SAFETY: the application's link slot.
        if unsafe { !(*ms.link).is_null() } {
            continue;
        }
        // SAFETY: a live map handle.
        let link = unsafe { crate::struct_ops_api::bpf_map__attach_struct_ops(map) };
        if link.is_null() {
            let e = crate::abi::errno();
            print::warn(&format!(
                "map '{name}': failed to auto-attach: {}\n",
                userbpf_libbpf_compat::errstr::errstr(e)
            ));
            return Err(e);
        }
        // SAFETY: as above.
        unsafe { *ms.link = link };
    }
    Ok(())
}

/// Destroys every program link of a skeleton (the ones the application
/// put there by hand too, as libbpf does).
///
/// # Safety
/// `progs` holds `cnt` elements of `stride` bytes.
unsafe fn detach_progs(progs: *mut u8, cnt: c_int, stride: c_int) {
    for i in 0..cnt {
        // SAFETY: caller contract.
        let ps = unsafe { &*elem::<ProgSkeleton>(progs, stride, i) };
        if ps.link.is_null() {
            continue;
        }
        // SAFETY: the application's link slot: NULL or a link of ours.
        unsafe {
            crate::link_api::bpf_link__destroy(*ps.link);
            *ps.link = std::ptr::null_mut();
        }
    }
}

ffi_fn! {
    /// `void bpf_object__detach_skeleton(struct bpf_object_skeleton *s)`
    ///
    /// # Safety
    /// `s` NULL or a skeleton.
    pub unsafe fn bpf_object__detach_skeleton(s: *mut ObjectSkeleton) {
        // SAFETY: caller contract.
        let Some(s) = (unsafe { s.as_mut() }) else {
            return;
        };
        // SAFETY: the skeleton's own array.
        unsafe { detach_progs(s.progs, s.prog_cnt, s.prog_skel_sz) };
        // Map links (struct_ops) exist only in 32-byte elements.
        if s.map_skel_sz as usize >= std::mem::size_of::<MapSkeleton>() {
            for i in 0..s.map_cnt {
                // SAFETY: elements of at least 32 bytes.
                let ms = unsafe { &*elem::<MapSkeleton>(s.maps, s.map_skel_sz, i) };
                if ms.link.is_null() {
                    continue;
                }
                // SAFETY: the application's link slot.
                unsafe {
                    crate::link_api::bpf_link__destroy(*ms.link);
                    *ms.link = std::ptr::null_mut();
                }
            }
        }
    }
}

ffi_fn! {
    /// `void bpf_object__destroy_skeleton(struct bpf_object_skeleton *s)`:
    /// detaches, closes the object and frees the skeleton's blocks with
    /// libc's `free` (the application allocated them with `calloc`).
    ///
    /// # Safety
    /// `s` NULL or a skeleton allocated with malloc/calloc.
    pub unsafe fn bpf_object__destroy_skeleton(s: *mut ObjectSkeleton) {
        if s.is_null() {
            return;
        }
        // SAFETY: caller contract.
        unsafe {
            bpf_object__detach_skeleton(s);
            if !(*s).obj.is_null() {
                crate::object_api::bpf_object__close(*(*s).obj);
                *(*s).obj = std::ptr::null_mut();
            }
            libc::free((*s).maps.cast());
            libc::free((*s).progs.cast());
            libc::free(s.cast());
        }
    }
}

ffi_fn! {
    /// `int bpf_object__open_subskeleton(struct bpf_object_subskeleton *s)`:
    /// binds the maps, programs and variables of a library's skeleton to an
    /// already opened object.
    ///
    /// # Safety
    /// `s` a subskeleton generated by bpftool.
    pub unsafe fn bpf_object__open_subskeleton(s: *mut ObjectSubskeleton) -> c_int {
        // SAFETY: caller contract.
        let Some(s) = (unsafe { s.as_mut() }) else {
            return fail(libc::EINVAL);
        };
        if s.obj.is_null() {
            return fail(libc::EINVAL);
        }
        // SAFETY: arrays as the subskeleton declares them.
        if let Err(e) = unsafe { populate_maps(s.obj, s.maps, s.map_cnt, s.map_skel_sz) } {
            print::warn(&format!("failed to populate subskeleton maps: -{e}\n"));
            return fail(e);
        }
        // SAFETY: as above.
        if let Err(e) = unsafe { populate_progs(s.obj, s.progs, s.prog_cnt, s.prog_skel_sz) } {
            print::warn(&format!("failed to populate subskeleton maps: -{e}\n"));
            return fail(e);
        }
        for i in 0..s.var_cnt {
            // SAFETY: the application's array, its stride.
            let vs = unsafe { &*elem::<VarSkeleton>(s.vars, s.var_skel_sz, i) };
            // SAFETY: populated above from the same subskeleton.
            let map = unsafe { *vs.map };
            if map.is_null() {
                return fail(libc::EINVAL);
            }
            // SAFETY: a live map of a live object.
            let (m, obj) = unsafe { (&*map, &*s.obj) };
            let def = &obj.obj.maps()[m.idx];
            let Some(off) = obj.obj.datasec_var_offset(def.real_name(), &name_of(vs.name)) else {
                print::warn(&format!(
                    "subskeleton: failed to find variable '{}' in map '{}'\n",
                    name_of(vs.name),
                    def.real_name()
                ));
                return fail(libc::ENOENT);
            };
            if m.mmaped.ptr().is_null() {
                return fail(libc::EINVAL);
            }
            // SAFETY: the offset lies in the map's value, which the image covers.
            unsafe { *vs.addr = m.mmaped.ptr().add(off as usize).cast() };
        }
        0
    }
}

ffi_fn! {
    /// `void bpf_object__destroy_subskeleton(struct bpf_object_subskeleton *s)`
    ///
    /// # Safety
    /// `s` NULL or a subskeleton allocated with malloc/calloc.
    pub unsafe fn bpf_object__destroy_subskeleton(s: *mut ObjectSubskeleton) {
        if s.is_null() {
            return;
        }
        // SAFETY: caller contract.
        unsafe {
            libc::free((*s).maps.cast());
            libc::free((*s).progs.cast());
            libc::free((*s).vars.cast());
            libc::free(s.cast());
        }
    }
}
