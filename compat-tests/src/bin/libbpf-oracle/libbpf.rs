//! Thin safe wrappers over the few libbpf calls the oracle makes.

use std::ffi::{c_char, CStr, CString};
use std::ptr::NonNull;

use libbpf_sys as sys;
use userbpf_runtime::isa::{Insn, INSN_SIZE};

/// An errno and libbpf's text for it (`libbpf_strerror` knows libbpf's own
/// codes, 4000 and up, as well as the system's).
#[derive(Clone, Debug)]
pub struct Error {
    pub errno: i32,
    pub message: String,
}

impl Error {
    pub fn from_errno(errno: i32) -> Error {
        let errno = errno.abs();
        let mut buf = [0 as c_char; 256];
        // SAFETY: buf is writable for its whole length, which is passed;
        // libbpf_strerror always NUL-terminates within it.
        let rc = unsafe { sys::libbpf_strerror(errno, buf.as_mut_ptr(), buf.len() as _) };
        let message = if rc == 0 {
            // SAFETY: NUL-terminated by libbpf_strerror (checked rc).
            unsafe { CStr::from_ptr(buf.as_ptr()) }
                .to_string_lossy()
                .into_owned()
        } else {
            std::io::Error::from_raw_os_error(errno).to_string()
        };
        Error { errno, message }
    }
}

fn c_string(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: libbpf returns NUL-terminated strings owned by the object,
    // valid while it is open (we copy at once).
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// `libbpf_version_string()`.
pub fn version() -> String {
    // SAFETY: returns a static string.
    c_string(unsafe { sys::libbpf_version_string() })
}

/// An open `struct bpf_object`, closed on drop.
pub struct Object {
    obj: NonNull<sys::bpf_object>,
    // libbpf is done with the buffer after open, but keeping the bytes and
    // strings alive as long as the object costs nothing and assumes less.
    _bytes: Vec<u8>,
    _name: CString,
    _btf_path: Option<CString>,
}

/// A program of an open object (borrowed from it).
pub struct Program<'a> {
    prog: NonNull<sys::bpf_program>,
    _obj: std::marker::PhantomData<&'a Object>,
}

/// A map of an open object (borrowed from it).
pub struct Map<'a> {
    map: NonNull<sys::bpf_map>,
    _obj: std::marker::PhantomData<&'a Object>,
}

impl Object {
    /// `bpf_object__open_mem` with `object_name` and, if given,
    /// `btf_custom_path`.
    pub fn open_mem(
        name: &str,
        bytes: &[u8],
        btf_custom_path: Option<&str>,
    ) -> Result<Self, Error> {
        let bytes = bytes.to_vec();
        let name = CString::new(name).map_err(|_| Error {
            errno: libc::EINVAL,
            message: "object name holds a NUL".into(),
        })?;
        let btf_path = btf_custom_path
            .map(CString::new)
            .transpose()
            .map_err(|_| Error {
                errno: libc::EINVAL,
                message: "BTF path holds a NUL".into(),
            })?;
        let opts = sys::bpf_object_open_opts {
            sz: std::mem::size_of::<sys::bpf_object_open_opts>() as _,
            object_name: name.as_ptr(),
            btf_custom_path: btf_path.as_ref().map_or(std::ptr::null(), |p| p.as_ptr()),
            ..Default::default()
        };
        // SAFETY: bytes and opts (and the strings opts points to) are valid
        // for the call; libbpf copies what it keeps.
        let obj =
            unsafe { sys::bpf_object__open_mem(bytes.as_ptr().cast(), bytes.len() as _, &opts) };
        match NonNull::new(obj) {
            Some(obj) => Ok(Object {
                obj,
                _bytes: bytes,
                _name: name,
                _btf_path: btf_path,
            }),
            // libbpf 1.x returns NULL and sets errno.
            None => Err(Error::from_errno(
                std::io::Error::last_os_error()
                    .raw_os_error()
                    .unwrap_or(libc::EINVAL),
            )),
        }
    }

    /// Entry-point programs, in `bpf_object__next_program` order
    /// (subprograms are not listed by libbpf).
    pub fn programs(&self) -> Vec<Program<'_>> {
        let mut out = Vec::new();
        let mut prev = std::ptr::null_mut();
        loop {
            // SAFETY: obj is open; prev is NULL or a program of obj.
            let next = unsafe { sys::bpf_object__next_program(self.obj.as_ptr(), prev) };
            let Some(prog) = NonNull::new(next) else {
                break;
            };
            out.push(Program {
                prog,
                _obj: std::marker::PhantomData,
            });
            prev = next;
        }
        out
    }

    /// Maps, in `bpf_object__next_map` order.
    pub fn maps(&self) -> Vec<Map<'_>> {
        let mut out = Vec::new();
        let mut prev = std::ptr::null();
        loop {
            // SAFETY: obj is open; prev is NULL or a map of obj.
            let next = unsafe { sys::bpf_object__next_map(self.obj.as_ptr(), prev) };
            let Some(map) = NonNull::new(next) else {
                break;
            };
            out.push(Map {
                map,
                _obj: std::marker::PhantomData,
            });
            prev = next;
        }
        out
    }

    /// `bpf_object__load`: maps created and every autoloaded program
    /// loaded into the kernel.
    pub fn load(&mut self) -> Result<(), Error> {
        // SAFETY: obj is open and not yet loaded.
        let rc = unsafe { sys::bpf_object__load(self.obj.as_ptr()) };
        if rc < 0 {
            return Err(Error::from_errno(-rc));
        }
        Ok(())
    }

    /// `bpf_object__prepare`: externs resolved, maps created, every
    /// autoloaded program relocated, nothing loaded.
    pub fn prepare(&mut self) -> Result<(), Error> {
        // SAFETY: obj is open and not yet prepared or loaded.
        let rc = unsafe { sys::bpf_object__prepare(self.obj.as_ptr()) };
        if rc < 0 {
            return Err(Error::from_errno(-rc));
        }
        Ok(())
    }
}

impl Drop for Object {
    fn drop(&mut self) {
        // SAFETY: obj came from bpf_object__open_mem and is closed once.
        unsafe { sys::bpf_object__close(self.obj.as_ptr()) }
    }
}

impl Program<'_> {
    pub fn name(&self) -> String {
        // SAFETY: prog belongs to an open object.
        c_string(unsafe { sys::bpf_program__name(self.prog.as_ptr()) })
    }

    pub fn section(&self) -> String {
        // SAFETY: prog belongs to an open object.
        c_string(unsafe { sys::bpf_program__section_name(self.prog.as_ptr()) })
    }

    pub fn prog_type(&self) -> u32 {
        // SAFETY: prog belongs to an open object.
        unsafe { sys::bpf_program__type(self.prog.as_ptr()) }
    }

    pub fn set_autoload(&self, on: bool) -> Result<(), Error> {
        // SAFETY: prog belongs to an open, not yet loaded object.
        let rc = unsafe { sys::bpf_program__set_autoload(self.prog.as_ptr(), on) };
        if rc < 0 {
            return Err(Error::from_errno(-rc));
        }
        Ok(())
    }

    /// `bpf_program__attach_kprobe(prog, retprobe, func)`; the link is
    /// destroyed at once.
    pub fn attach_kprobe(&self, retprobe: bool, func: &str) -> Result<(), Error> {
        let func = CString::new(func).map_err(|_| Error {
            errno: libc::EINVAL,
            message: "function name holds a NUL".into(),
        })?;
        // SAFETY: prog belongs to a loaded object; func is NUL-terminated
        // and outlives the call.
        let link =
            unsafe { sys::bpf_program__attach_kprobe(self.prog.as_ptr(), retprobe, func.as_ptr()) };
        if link.is_null() {
            // libbpf 1.x returns NULL and sets errno.
            return Err(Error::from_errno(
                std::io::Error::last_os_error()
                    .raw_os_error()
                    .unwrap_or(libc::EINVAL),
            ));
        }
        // SAFETY: a link libbpf just returned, destroyed once.
        unsafe { sys::bpf_link__destroy(link) };
        Ok(())
    }

    /// `bpf_program__insns` / `bpf_program__insn_cnt`, copied.
    pub fn insns(&self) -> Vec<Insn> {
        // SAFETY: prog belongs to an open object.
        let (ptr, cnt) = unsafe {
            (
                sys::bpf_program__insns(self.prog.as_ptr()),
                sys::bpf_program__insn_cnt(self.prog.as_ptr()) as usize,
            )
        };
        if ptr.is_null() || cnt == 0 {
            return Vec::new();
        }
        // SAFETY: libbpf's array of `cnt` struct bpf_insn (8 bytes each,
        // the kernel's layout: code, dst:4|src:4, off, imm), alive until
        // the object is closed; we copy it now.
        let bytes = unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), cnt * INSN_SIZE) };
        Insn::decode_all(bytes).expect("whole slots")
    }
}

impl Map<'_> {
    pub fn name(&self) -> String {
        // SAFETY: map belongs to an open object.
        c_string(unsafe { sys::bpf_map__name(self.map.as_ptr()) })
    }

    pub fn map_type(&self) -> u32 {
        // SAFETY: map belongs to an open object.
        unsafe { sys::bpf_map__type(self.map.as_ptr()) }
    }

    /// The kernel fd after prepare, negative if the map was not created.
    pub fn fd(&self) -> i32 {
        // SAFETY: map belongs to an open object.
        unsafe { sys::bpf_map__fd(self.map.as_ptr()) }
    }

    pub fn max_entries(&self) -> u32 {
        // SAFETY: map belongs to an open object.
        unsafe { sys::bpf_map__max_entries(self.map.as_ptr()) }
    }

    pub fn value_size(&self) -> u32 {
        // SAFETY: map belongs to an open object.
        unsafe { sys::bpf_map__value_size(self.map.as_ptr()) }
    }

    pub fn set_max_entries(&self, n: u32) -> Result<(), Error> {
        // SAFETY: map belongs to an open, not yet prepared object.
        let rc = unsafe { sys::bpf_map__set_max_entries(self.map.as_ptr(), n) };
        if rc < 0 {
            return Err(Error::from_errno(-rc));
        }
        Ok(())
    }

    pub fn set_value_size(&self, n: u32) -> Result<(), Error> {
        // SAFETY: map belongs to an open, not yet prepared object.
        let rc = unsafe { sys::bpf_map__set_value_size(self.map.as_ptr(), n) };
        if rc < 0 {
            return Err(Error::from_errno(-rc));
        }
        Ok(())
    }

    pub fn set_autocreate(&self, on: bool) -> Result<(), Error> {
        // SAFETY: map belongs to an open, not yet prepared object.
        let rc = unsafe { sys::bpf_map__set_autocreate(self.map.as_ptr(), on) };
        if rc < 0 {
            return Err(Error::from_errno(-rc));
        }
        Ok(())
    }
}

/// Times `btf__load_vmlinux_btf` (parse of /sys/kernel/btf/vmlinux), in ns;
/// freeing is not timed.
pub fn time_load_vmlinux_btf() -> Result<u64, Error> {
    let start = std::time::Instant::now();
    // SAFETY: no arguments; returns a new struct btf or NULL with errno.
    let btf = unsafe { sys::btf__load_vmlinux_btf() };
    let ns = start.elapsed().as_nanos() as u64;
    if btf.is_null() {
        return Err(Error::from_errno(
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EINVAL),
        ));
    }
    // SAFETY: btf came from btf__load_vmlinux_btf and is freed once.
    unsafe { sys::btf__free(btf) };
    Ok(ns)
}
