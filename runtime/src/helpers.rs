//! The helper registry: helper functions keyed by id, shared by every engine.
//!
//! A helper is a plain `extern "C"` function so that JIT-compiled code can
//! call it directly by address. It receives the five argument registers and,
//! as a sixth argument, a pointer to the [`HelperEnv`] of the current run.

use std::collections::HashMap;
use std::ffi::c_void;

use crate::memory::{Access, Region};

/// Signature of every helper: r1..r5 and the environment of the run.
///
/// # Safety
/// Helpers are called from eBPF programs with arbitrary argument values.
/// A helper that dereferences an argument must check it first (with
/// [`HelperEnv::check`] in checked engines) or use a fault-safe copy.
pub type HelperFn = unsafe extern "C" fn(u64, u64, u64, u64, u64, *mut HelperEnv) -> u64;

/// One registered helper.
#[derive(Clone, Copy, Debug)]
pub struct Helper {
    pub id: u32,
    pub name: &'static str,
    pub func: HelperFn,
}

/// Helpers by id. Engines resolve `call imm` through it at load time, so an
/// unknown helper id is a load error, not a run-time surprise.
#[derive(Clone, Debug, Default)]
pub struct HelperRegistry {
    by_id: HashMap<u32, Helper>,
}

impl HelperRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `func` under `id`, replacing any previous helper with that id.
    pub fn register(&mut self, id: u32, name: &'static str, func: HelperFn) -> &mut Self {
        self.by_id.insert(id, Helper { id, name, func });
        self
    }

    pub fn get(&self, id: u32) -> Option<&Helper> {
        self.by_id.get(&id)
    }

    pub fn contains(&self, id: u32) -> bool {
        self.by_id.contains_key(&id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Helper> {
        self.by_id.values()
    }
}

/// State of one program run that helpers may read or extend.
///
/// Created by the engine for each run and passed to every helper call.
pub struct HelperEnv {
    /// The context pointer the program was started with (r1 at entry).
    pub ctx: *mut u8,
    /// Opaque data of the embedder (for example the link being served, so
    /// that `bpf_get_attach_cookie` can find its cookie).
    pub user: *mut c_void,
    /// Memory the run may access beyond the context and the stack: regions
    /// granted by the embedder and by helpers that return pointers.
    pub(crate) grants: Vec<Region>,
    /// Whether the engine checks accesses against the regions. When false,
    /// [`HelperEnv::grant`] records nothing and [`HelperEnv::check`] passes.
    pub(crate) checked: bool,
}

impl HelperEnv {
    pub fn new(ctx: *mut u8, user: *mut c_void, checked: bool) -> Self {
        HelperEnv {
            ctx,
            user,
            grants: Vec::new(),
            checked,
        }
    }

    /// Lets the program access `len` bytes at `addr` for the rest of the run,
    /// as it may access a map value that `bpf_map_lookup_elem` returned.
    pub fn grant(&mut self, addr: u64, len: u64, access: Access) {
        if !self.checked || len == 0 {
            return;
        }
        let region = Region::new(addr, len, access);
        // Helpers called in a loop hand out the same pointers again and again.
        if !self.grants.contains(&region) {
            self.grants.push(region);
        }
    }

    /// True when the program may access `len` bytes at `addr` through
    /// granted regions (the context and the stack are the engine's business).
    pub fn check(&self, addr: u64, len: u64, access: Access) -> bool {
        !self.checked || self.grants.iter().any(|r| r.contains(addr, len, access))
    }

    /// The regions granted so far.
    pub fn grants(&self) -> &[Region] {
        &self.grants
    }
}
