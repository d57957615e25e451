//! Programs as this process runs them: read from a loader's program file
//! (through `/proc/<loader>/fd/<fd>`), linked against this process's
//! mappings of their maps, and compiled.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use thiserror::Error;
use userbpf_runtime::helpers::HelperRegistry;
use userbpf_runtime::image::{ImageError, LoadedProgram};
use userbpf_runtime::registry::{self, kind};
use userbpf_runtime::vm::{Engine, VmOptions, ENGINE_ENV};

#[derive(Debug, Error)]
pub enum ProgramError {
    #[error("program {0} is not in the registry")]
    Unknown(u32),
    #[error("cannot open program {id}: {source}")]
    Open { id: u32, source: std::io::Error },
    #[error("program {id}: {source}")]
    Image { id: u32, source: ImageError },
}

impl ProgramError {
    pub fn errno(&self) -> i32 {
        match self {
            ProgramError::Unknown(_) => libc::ENOENT,
            ProgramError::Open { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
            ProgramError::Image { source, .. } => source.errno(),
        }
    }
}

/// The helpers programs may call in a target.
pub fn helpers() -> &'static HelperRegistry {
    static HELPERS: OnceLock<HelperRegistry> = OnceLock::new();
    HELPERS.get_or_init(|| {
        userbpf_runtime::maps::set_foreign_resolver(registry::open_foreign_map);
        userbpf_runtime::maps::stack_trace::set_stack_walker(
            userbpf_runtime::helpers::stack::stack_walker,
        );
        let mut reg = HelperRegistry::new();
        userbpf_runtime::helpers::register_tracing_helpers(&mut reg);
        userbpf_runtime::maps::helpers::register_map_helpers(&mut reg);
        userbpf_runtime::maps::special_helpers::register_special_map_helpers(&mut reg);
        reg
    })
}

/// The JIT unless `USERBPF_ENGINE=interp`.
fn vm_options() -> VmOptions {
    let engine = match std::env::var(ENGINE_ENV).as_deref() {
        Ok("interp") | Ok("interpreter") => Engine::Interpreter,
        _ => Engine::Jit,
    };
    VmOptions::with_engine(engine)
}

/// Where each program id lives: (loader pid, fd), from one registry scan.
pub type ProgramIndex = HashMap<u32, (u32, i32)>;

/// Loads program `id` (found in `index`) into this process.
pub fn load(id: u32, index: &ProgramIndex) -> Result<Arc<LoadedProgram>, ProgramError> {
    let &(pid, fd) = index.get(&id).ok_or(ProgramError::Unknown(id))?;
    let mut file = std::fs::File::open(registry::proc_fd_path(pid, fd))
        .map_err(|source| ProgramError::Open { id, source })?;
    let image = userbpf_runtime::image::file::read(&mut file)
        .map_err(|source| ProgramError::Image { id, source })?;
    let maps = image
        .resolve_maps()
        .map_err(|source| ProgramError::Image { id, source })?;
    let prog = image
        .instantiate(maps, helpers(), vm_options())
        .map_err(|source| ProgramError::Image { id, source })?;
    Ok(Arc::new(prog))
}

/// Program records of the live loaders.
pub fn index(loaders: &[registry::LoaderView]) -> ProgramIndex {
    let mut out = HashMap::new();
    for l in loaders {
        for r in l.file.records() {
            if r.kind == kind::PROG {
                out.insert(r.id, (l.pid, r.fd));
            }
        }
    }
    out
}
