//! The map helpers, under their kernel ids: `bpf_map_lookup_elem` (1),
//! `bpf_map_update_elem` (2), `bpf_map_delete_elem` (3) and
//! `bpf_map_lookup_percpu_elem` (195).
//!
//! r1 is a map's program address ([`Map::prog_addr`]). Under the JIT
//! (unchecked, trusted programs) the helpers turn it back directly with
//! [`Map::from_prog_addr`] and pass the program's key and value pointers
//! on: the fast path is one indirect call into the map type. Under the
//! interpreter (checked), r1 must name a live map of this process
//! ([`Map::upgrade_prog_addr`]; anything else fails as a bad map would),
//! key and value pointers must pass [`HelperEnv::check`], and a pointer a
//! lookup returns is granted to the program for the rest of the run
//! (read-only for `BPF_F_RDONLY_PROG` maps, write-only for
//! `BPF_F_WRONLY_PROG`), as the verifier would type it.
//!
//! No helper here can panic: every failure is a null pointer or `-errno`.

use std::sync::Arc;

use super::{flags, Map};
use crate::helpers::{HelperEnv, HelperRegistry};
use crate::memory::Access;

pub const BPF_FUNC_MAP_LOOKUP_ELEM: u32 = 1;
pub const BPF_FUNC_MAP_UPDATE_ELEM: u32 = 2;
pub const BPF_FUNC_MAP_DELETE_ELEM: u32 = 3;
pub const BPF_FUNC_MAP_LOOKUP_PERCPU_ELEM: u32 = 195;

const EINVAL: u64 = (libc::EINVAL as i64).wrapping_neg() as u64;
const EFAULT: u64 = (libc::EFAULT as i64).wrapping_neg() as u64;

/// Registers the map helpers under their kernel ids.
pub fn register_map_helpers(reg: &mut HelperRegistry) {
    reg.register(
        BPF_FUNC_MAP_LOOKUP_ELEM,
        "bpf_map_lookup_elem",
        bpf_map_lookup_elem,
    );
    reg.register(
        BPF_FUNC_MAP_UPDATE_ELEM,
        "bpf_map_update_elem",
        bpf_map_update_elem,
    );
    reg.register(
        BPF_FUNC_MAP_DELETE_ELEM,
        "bpf_map_delete_elem",
        bpf_map_delete_elem,
    );
    reg.register(
        BPF_FUNC_MAP_LOOKUP_PERCPU_ELEM,
        "bpf_map_lookup_percpu_elem",
        bpf_map_lookup_percpu_elem,
    );
}

/// What a checked run gets for a map pointer: the live map, held for the
/// call, or `None` for anything that is not one.
enum MapRef<'a> {
    Trusted(&'a Map),
    Checked(Arc<Map>),
}

impl std::ops::Deref for MapRef<'_> {
    type Target = Map;
    fn deref(&self) -> &Map {
        match self {
            MapRef::Trusted(m) => m,
            MapRef::Checked(m) => m,
        }
    }
}

/// # Safety
/// Unless `checked`, `addr` is a program address of a live map.
#[inline(always)]
unsafe fn map_ref<'a>(addr: u64, checked: bool) -> Option<MapRef<'a>> {
    if checked {
        Map::upgrade_prog_addr(addr).map(MapRef::Checked)
    } else if addr == 0 {
        None
    } else {
        // SAFETY: guaranteed by the caller (trusted JIT programs pass the
        // map addresses their loader linked in).
        Some(MapRef::Trusted(unsafe { Map::from_prog_addr(addr) }))
    }
}

/// How a program may access a value of `map`.
fn value_access(map: &Map) -> Access {
    let f = map.spec().map_flags;
    if f & flags::BPF_F_RDONLY_PROG != 0 {
        Access::Read
    } else if f & flags::BPF_F_WRONLY_PROG != 0 {
        Access::Write
    } else {
        Access::ReadWrite
    }
}

/// The env of a helper call, and whether it checks.
///
/// # Safety
/// `env` is null or the engine's env for this run.
#[inline(always)]
unsafe fn env_of<'a>(env: *mut HelperEnv) -> (Option<&'a mut HelperEnv>, bool) {
    // SAFETY: forwarded.
    let env = unsafe { env.as_mut() };
    let checked = env.as_ref().is_some_and(|e| e.is_checked());
    (env, checked)
}

/// Shared tail of the two lookups: grant the value to a checked program.
#[inline(always)]
fn granted(env: Option<&mut HelperEnv>, map: &Map, p: *mut u8) -> u64 {
    if let Some(env) = env {
        if env.is_checked() && !p.is_null() {
            env.grant(
                p as u64,
                u64::from(map.ops().prog_value_size()),
                value_access(map),
            );
        }
    }
    p as u64
}

/// `void *bpf_map_lookup_elem(struct bpf_map *map, const void *key)`
///
/// # Safety
/// Called by an engine with its env; see the module docs.
pub unsafe extern "C" fn bpf_map_lookup_elem(
    map: u64,
    key: u64,
    _: u64,
    _: u64,
    _: u64,
    env: *mut HelperEnv,
) -> u64 {
    // SAFETY: the engine passes its env (or null).
    match unsafe { env.as_mut() } {
        Some(env) if env.is_checked() => lookup_checked(map, key, env),
        // SAFETY: an unchecked (trusted) run passes a live map and a key
        // of key_size readable bytes.
        _ => unsafe { lookup_trusted(map, key) },
    }
}

/// The JIT's path: no checks, arrays without a call into the map type.
///
/// # Safety
/// `map` is a live map's program address, `key` readable for key_size.
#[inline(always)]
unsafe fn lookup_trusted(map: u64, key: u64) -> u64 {
    if map == 0 {
        return 0;
    }
    // SAFETY: guaranteed by the caller.
    let m = unsafe { Map::from_prog_addr(map) };
    // SAFETY: guaranteed by the caller.
    match unsafe { m.fast_lookup().lookup(key as *const u8) } {
        Some(p) => p as u64,
        // SAFETY: guaranteed by the caller.
        None => unsafe { m.ops().prog_lookup(key as *const u8) as u64 },
    }
}

#[cold]
fn lookup_checked(map: u64, key: u64, env: &mut HelperEnv) -> u64 {
    let Some(m) = Map::upgrade_prog_addr(map) else {
        return 0;
    };
    if !env.check(key, u64::from(m.spec().key_size), Access::Read) {
        return 0;
    }
    // SAFETY: the key is readable for key_size bytes (checked).
    let p = unsafe { m.ops().prog_lookup(key as *const u8) };
    granted(Some(env), &m, p)
}

/// `long bpf_map_update_elem(struct bpf_map *map, const void *key, const void *value, u64 flags)`
///
/// # Safety
/// Called by an engine with its env; see the module docs.
pub unsafe extern "C" fn bpf_map_update_elem(
    map: u64,
    key: u64,
    value: u64,
    flags_: u64,
    _: u64,
    env: *mut HelperEnv,
) -> u64 {
    // SAFETY: the engine passes its env.
    let (env, checked) = unsafe { env_of(env) };
    // SAFETY: unchecked runs are trusted to pass a live map.
    let Some(m) = (unsafe { map_ref(map, checked) }) else {
        return EINVAL;
    };
    if checked {
        let spec = m.spec();
        let ok = env.as_ref().is_some_and(|e| {
            e.check(key, u64::from(spec.key_size), Access::Read)
                && e.check(value, u64::from(m.ops().prog_value_size()), Access::Read)
        });
        if !ok {
            return EFAULT;
        }
    }
    // SAFETY: key and value are readable (checked, or trusted).
    unsafe {
        m.ops()
            .prog_update(key as *const u8, value as *const u8, flags_) as u64
    }
}

/// `long bpf_map_delete_elem(struct bpf_map *map, const void *key)`
///
/// # Safety
/// Called by an engine with its env; see the module docs.
pub unsafe extern "C" fn bpf_map_delete_elem(
    map: u64,
    key: u64,
    _: u64,
    _: u64,
    _: u64,
    env: *mut HelperEnv,
) -> u64 {
    // SAFETY: the engine passes its env.
    let (env, checked) = unsafe { env_of(env) };
    // SAFETY: unchecked runs are trusted to pass a live map.
    let Some(m) = (unsafe { map_ref(map, checked) }) else {
        return EINVAL;
    };
    if checked
        && !env
            .as_ref()
            .is_some_and(|e| e.check(key, u64::from(m.spec().key_size), Access::Read))
    {
        return EFAULT;
    }
    // SAFETY: the key is readable (checked, or trusted).
    unsafe { m.ops().prog_delete(key as *const u8) as u64 }
}

/// `void *bpf_map_lookup_percpu_elem(struct bpf_map *map, const void *key, u32 cpu)`
///
/// # Safety
/// Called by an engine with its env; see the module docs.
pub unsafe extern "C" fn bpf_map_lookup_percpu_elem(
    map: u64,
    key: u64,
    cpu: u64,
    _: u64,
    _: u64,
    env: *mut HelperEnv,
) -> u64 {
    // SAFETY: the engine passes its env.
    let (env, checked) = unsafe { env_of(env) };
    // SAFETY: unchecked runs are trusted to pass a live map.
    let Some(m) = (unsafe { map_ref(map, checked) }) else {
        return 0;
    };
    // The kernel takes the cpu argument as a u32.
    let cpu = cpu as u32;
    if checked
        && !env
            .as_ref()
            .is_some_and(|e| e.check(key, u64::from(m.spec().key_size), Access::Read))
    {
        return 0;
    }
    // SAFETY: the key is readable (checked, or trusted).
    let p = unsafe { m.ops().prog_lookup_percpu(key as *const u8, cpu) };
    granted(env, &m, p)
}
