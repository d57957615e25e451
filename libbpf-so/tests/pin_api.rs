//! Pinning an object's maps and programs, and reusing a pinned map in a
//! second object, through the C entry points (called through the rlib).

use std::ffi::{c_char, CString};
use std::process::Command;
use std::ptr::null;

use bpf::implemented::*;
use bpf::object_api::ObjectHandle;
use userbpf_runtime::maps::Map;

const SOURCE: &str = r#"
#define SEC(n) __attribute__((section(n), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name
static long (*bpf_map_update_elem)(void *map, const void *key, const void *value, unsigned long long flags) = (void *)2;
struct {
    __uint(type, 2);
    __uint(max_entries, 4);
    __type(key, unsigned int);
    __type(value, unsigned long long);
} shared SEC(".maps");
SEC("raw_tp") int touch(void *ctx) {
    unsigned int k = 1; unsigned long long v = 42;
    bpf_map_update_elem(&shared, &k, &v, 0);
    return 0;
}
char LICENSE[] SEC("license") = "GPL";
"#;

/// These tests are about the userspace backend: as root, `auto` would
/// load the raw_tp program and its map into the kernel.
fn user_backend() {
    std::env::set_var("USERBPF_BACKEND", "user");
}

fn object() -> Option<*mut ObjectHandle> {
    user_backend();
    let dir = std::env::temp_dir().join(format!("userbpf-pin-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("pin.bpf.c");
    let obj = dir.join("pin.bpf.o");
    std::fs::write(&src, SOURCE).unwrap();
    let out = Command::new("clang-16")
        .args(["-g", "-O2", "-target", "bpf", "-c"])
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = CString::new(obj.to_str().unwrap()).unwrap();
    // SAFETY: a valid path, NULL opts.
    let o = unsafe { bpf_object__open_file(path.as_ptr(), null()) };
    assert!(!o.is_null());
    Some(o)
}

fn map_of(o: *mut ObjectHandle) -> *mut bpf::object_api::MapHandle {
    // SAFETY: a live object and a C string.
    unsafe { bpf_object__find_map_by_name(o, c"shared".as_ptr()) }
}

#[test]
fn pin_reuse_unpin() {
    let Some(a) = object() else { return };
    let pin = CString::new(format!(
        "/sys/fs/bpf/userbpf-pin-test-{}",
        std::process::id()
    ))
    .unwrap();
    let ma = map_of(a);
    // SAFETY: live handles and valid strings throughout.
    unsafe {
        // Not created yet: libbpf's EINVAL.
        assert_eq!(bpf_map__pin(ma, pin.as_ptr()), -libc::EINVAL);
        assert_eq!(bpf_object__load(a), 0);
        assert!(!bpf_map__is_pinned(ma));
        assert_eq!(bpf_map__pin(ma, pin.as_ptr()), 0);
        assert!(bpf_map__is_pinned(ma));
        assert_eq!(
            std::ffi::CStr::from_ptr(bpf_map__pin_path(ma)),
            pin.as_c_str()
        );
        // A different path while pinned elsewhere.
        assert_eq!(
            bpf_map__pin(ma, c"/sys/fs/bpf/other".as_ptr()),
            -libc::EINVAL
        );

        // The pin names the same map.
        let fd = bpf_obj_get(pin.as_ptr());
        assert!(fd >= 0, "bpf_obj_get: {fd}");
        let via_pin = Map::open(std::os::fd::BorrowedFd::borrow_raw(fd)).unwrap();
        let own = Map::open(std::os::fd::BorrowedFd::borrow_raw(bpf_map__fd(ma))).unwrap();
        assert_eq!(via_pin.id(), own.id());

        // A second object reuses it: its program writes into a's map.
        let b = object().unwrap();
        let mb = map_of(b);
        assert_eq!(bpf_map__reuse_fd(mb, fd), 0);
        assert_eq!(bpf_object__load(b), 0);
        let prog = bpf_object__find_program_by_name(b, c"touch".as_ptr());
        let mut ctx = [0u64; 1];
        let mut opts: bpf::cabi::bpf_test_run_opts = std::mem::zeroed();
        opts.sz = std::mem::size_of::<bpf::cabi::bpf_test_run_opts>();
        opts.ctx_in = ctx.as_mut_ptr().cast();
        opts.ctx_size_in = 8;
        assert_eq!(
            bpf_prog_test_run_opts(bpf_program__fd(prog), (&raw mut opts).cast()),
            0
        );
        let mut v = [0u8; 8];
        own.lookup(&1u32.to_ne_bytes(), &mut v, 0).unwrap();
        assert_eq!(u64::from_ne_bytes(v), 42, "b's program wrote a's map");
        // Reusing after load is refused.
        assert_eq!(bpf_map__reuse_fd(mb, fd), -libc::EBUSY);

        // Unpin: the path goes away.
        assert_eq!(bpf_map__unpin(ma, null::<c_char>()), 0);
        assert!(!bpf_map__is_pinned(ma));
        assert!(bpf_obj_get(pin.as_ptr()) < 0);
        assert_eq!(bpf_map__unpin(ma, null::<c_char>()), -libc::ENOENT);
        libc::close(fd);
        bpf_object__close(b);
        bpf_object__close(a);
    }
}

const PINNED_SOURCE: &str = r#"
#define SEC(n) __attribute__((section(n), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name
struct {
    __uint(type, 1);
    __uint(max_entries, 8);
    __type(key, unsigned int);
    __type(value, unsigned int);
    __uint(pinning, 1);
} by_name SEC(".maps");
char LICENSE[] SEC("license") = "GPL";
"#;

fn open_with_pin_root(root: &CString) -> Option<*mut ObjectHandle> {
    user_backend();
    let dir = std::env::temp_dir().join(format!("userbpf-pin-root-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("p.bpf.c");
    let obj = dir.join("p.bpf.o");
    std::fs::write(&src, PINNED_SOURCE).unwrap();
    let out = Command::new("clang-16")
        .args(["-g", "-O2", "-target", "bpf", "-c"])
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&obj).unwrap();
    // bpf_object_open_opts: sz, object_name, relaxed_maps, pin_root_path.
    let mut opts = [0u64; 11];
    opts[0] = 88;
    opts[3] = root.as_ptr() as u64;
    // SAFETY: a valid buffer and an opts struct of the 1.7 layout.
    let o = unsafe { bpf_object__open_mem(bytes.as_ptr(), bytes.len(), opts.as_ptr().cast()) };
    assert!(!o.is_null());
    Some(o)
}

#[test]
fn pin_by_name_pins_at_load_and_the_next_object_reuses() {
    let root = CString::new(format!(
        "/sys/fs/bpf/userbpf-pinroot-{}",
        std::process::id()
    ))
    .unwrap();
    let Some(a) = open_with_pin_root(&root) else {
        return;
    };
    let b = open_with_pin_root(&root).unwrap();
    // SAFETY: live handles and valid strings throughout.
    unsafe {
        let ma = bpf_object__find_map_by_name(a, c"by_name".as_ptr());
        let expected = format!("{}/by_name", root.to_str().unwrap());
        assert_eq!(
            std::ffi::CStr::from_ptr(bpf_map__pin_path(ma))
                .to_str()
                .unwrap(),
            expected
        );
        assert_eq!(bpf_object__load(a), 0);
        assert!(bpf_map__is_pinned(ma), "pinned at load");
        let mb = bpf_object__find_map_by_name(b, c"by_name".as_ptr());
        assert_eq!(bpf_object__load(b), 0);
        assert!(bpf_map__is_pinned(mb));
        let id = |m| {
            Map::open(std::os::fd::BorrowedFd::borrow_raw(bpf_map__fd(m)))
                .unwrap()
                .id()
        };
        assert_eq!(id(ma), id(mb), "the second object reused the pinned map");
        assert_eq!(bpf_map__unpin(ma, null::<c_char>()), 0);
        bpf_object__close(b);
        bpf_object__close(a);
    }
}

const MAP_IN_MAP_SOURCE: &str = r#"
#define SEC(n) __attribute__((section(n), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name
#define __array(name, val) typeof(val) *name[]
struct inner {
    __uint(type, 2);
    __uint(max_entries, 4);
    __type(key, unsigned int);
    __type(value, unsigned int);
};
struct {
    __uint(type, 12);
    __uint(max_entries, 2);
    __type(key, unsigned int);
    __array(values, struct inner);
} outer SEC(".maps");
char LICENSE[] SEC("license") = "GPL";
"#;

fn array(value_size: u32) -> std::sync::Arc<Map> {
    let spec = userbpf_runtime::maps::MapSpec {
        map_type: 2,
        key_size: 4,
        value_size,
        max_entries: 4,
        name: "inner".into(),
        ..Default::default()
    };
    Map::create(
        &spec,
        userbpf_runtime::ids::next_id(userbpf_runtime::ids::IdKind::Map),
    )
    .unwrap()
}

#[test]
fn set_inner_map_fd_replaces_the_template() {
    let dir = std::env::temp_dir().join(format!("userbpf-mim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (src, obj) = (dir.join("m.bpf.c"), dir.join("m.bpf.o"));
    std::fs::write(&src, MAP_IN_MAP_SOURCE).unwrap();
    let Ok(out) = Command::new("clang-16")
        .args(["-g", "-O2", "-target", "bpf", "-c"])
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .output()
    else {
        return;
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = CString::new(obj.to_str().unwrap()).unwrap();
    let wide = array(8);
    let narrow = array(4);
    // SAFETY: live handles, valid strings and fds throughout.
    unsafe {
        let o = bpf_object__open_file(path.as_ptr(), null());
        assert!(!o.is_null());
        let outer = bpf_object__find_map_by_name(o, c"outer".as_ptr());
        assert_eq!(bpf_map__set_inner_map_fd(outer, wide.raw_fd()), 0);
        assert_eq!(
            bpf_map__set_inner_map_fd(outer, wide.raw_fd()),
            -libc::EINVAL
        );
        assert_eq!(bpf_object__load(o), 0);
        let fd = bpf_map__fd(outer);
        let key = 0u32;
        let put = |m: &Map| {
            let v = m.raw_fd() as u32;
            bpf_map_update_elem(fd, (&raw const key).cast(), (&raw const v).cast(), 0)
        };
        assert_eq!(put(&wide), 0, "the new template's maps fit");
        assert_eq!(
            put(&narrow),
            -libc::EINVAL,
            "the declared template no longer counts"
        );
        bpf_object__close(o);
    }
}
