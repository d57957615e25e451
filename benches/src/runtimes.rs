//! The runtimes a benchmark runs on, behind one calling convention: run the
//! program on a buffer (r1 = its address), get r0.

use std::time::{Duration, Instant};

use crate::programs::Source;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    NativeO2,
    NativeScalar,
    UserbpfJit,
    UserbpfInterp,
    RbpfJit,
    RbpfInterp,
}

impl Runtime {
    pub const ALL: [Runtime; 6] = [
        Runtime::NativeO2,
        Runtime::NativeScalar,
        Runtime::UserbpfJit,
        Runtime::UserbpfInterp,
        Runtime::RbpfJit,
        Runtime::RbpfInterp,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Runtime::NativeO2 => "native -O2",
            Runtime::NativeScalar => "native scalar",
            Runtime::UserbpfJit => "userbpf JIT",
            Runtime::UserbpfInterp => "userbpf interp",
            Runtime::RbpfJit => "rbpf JIT",
            Runtime::RbpfInterp => "rbpf interp",
        }
    }
}

/// Runs the loaded program once on `mem`; `Err` if the runtime failed.
pub type RunFn = Box<dyn FnMut(&mut [u8]) -> Result<u64, String>>;

/// Makes `src` runnable on `rt` (JIT-compiling it where that applies).
/// `Err` says why the runtime cannot run it.
pub fn load(rt: Runtime, src: &'static Source) -> Result<RunFn, String> {
    match rt {
        Runtime::NativeO2 => Ok(native(src.native)),
        Runtime::NativeScalar => Ok(native(src.scalar)),
        Runtime::UserbpfJit => userbpf::load(src, true),
        Runtime::UserbpfInterp => userbpf::load(src, false),
        Runtime::RbpfJit => rbpf_load(src, true),
        Runtime::RbpfInterp => rbpf_load(src, false),
    }
}

/// Median time of `reps` JIT compilations of `src` on `rt`, for the runtimes
/// that compile; `None` for the others.
pub fn compile_time(
    rt: Runtime,
    src: &'static Source,
    reps: usize,
) -> Option<Result<Duration, String>> {
    let compile: fn(&'static Source) -> Result<Duration, String> = match rt {
        Runtime::UserbpfJit => userbpf::compile_only,
        Runtime::RbpfJit => rbpf_compile_only,
        _ => return None,
    };
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps.max(1) {
        match compile(src) {
            Ok(t) => times.push(t),
            Err(e) => return Some(Err(e)),
        }
    }
    times.sort_unstable();
    Some(Ok(times[times.len() / 2]))
}

fn native(f: unsafe extern "C" fn(*mut u8) -> u64) -> RunFn {
    Box::new(move |mem| {
        // SAFETY: the programs only touch their input as laid out by
        // `inputs`, which the reference implementations check.
        Ok(unsafe { f(mem.as_mut_ptr()) })
    })
}

/// rbpf ties the memory borrow to the VM's lifetime, so a VM that lives
/// across calls needs a `'static` view of each call's buffer.
///
/// # Safety
/// The slice must not be used by anything else during the call, and rbpf
/// must not keep it after returning (it does not).
unsafe fn static_mut(mem: &mut [u8]) -> &'static mut [u8] {
    // SAFETY: see above.
    unsafe { std::slice::from_raw_parts_mut(mem.as_mut_ptr(), mem.len()) }
}

fn rbpf_load(src: &'static Source, jit: bool) -> Result<RunFn, String> {
    let mut vm = rbpf::EbpfVmRaw::new(Some(src.bpf)).map_err(|e| e.to_string())?;
    if jit {
        vm.jit_compile().map_err(|e| e.to_string())?;
        Ok(Box::new(move |mem| {
            // SAFETY: the JIT does no bounds checks; the programs stay in
            // their input (the interpreter, which checks, agrees).
            unsafe { vm.execute_program_jit(static_mut(mem)) }.map_err(|e| e.to_string())
        }))
    } else {
        Ok(Box::new(move |mem| {
            // SAFETY: `mem` is exclusively borrowed for the call.
            vm.execute_program(unsafe { static_mut(mem) })
                .map_err(|e| e.to_string())
        }))
    }
}

/// Time of `jit_compile` alone (rbpf's verifier runs before, in `new`).
fn rbpf_compile_only(src: &'static Source) -> Result<Duration, String> {
    let mut vm = rbpf::EbpfVmRaw::new(Some(src.bpf)).map_err(|e| e.to_string())?;
    let start = Instant::now();
    vm.jit_compile().map_err(|e| e.to_string())?;
    Ok(start.elapsed())
}

/// userbpf's engines, through the embedding API.
mod userbpf {
    use userbpf_runtime::helpers::HelperRegistry;
    use userbpf_runtime::jit::JitProgram;
    use userbpf_runtime::program::Program;
    use userbpf_runtime::vm::{Engine, Vm, VmOptions};

    use super::*;

    fn program(src: &Source) -> Result<Program, String> {
        Program::from_bytes(src.bpf).map_err(|e| e.to_string())
    }

    pub fn load(src: &'static Source, jit: bool) -> Result<RunFn, String> {
        let engine = if jit {
            Engine::Jit
        } else {
            Engine::Interpreter
        };
        // No instruction limit: memcpy and strcmp run millions.
        let options = VmOptions::with_engine(engine);
        let vm =
            Vm::new(program(src)?, HelperRegistry::new(), options).map_err(|e| e.to_string())?;
        Ok(Box::new(move |mem| vm.run(mem).map_err(|e| e.to_string())))
    }

    /// Time of `JitProgram::compile` alone (validation runs before it).
    pub fn compile_only(src: &'static Source) -> Result<Duration, String> {
        let prog = program(src)?;
        let helpers = HelperRegistry::new();
        let start = Instant::now();
        let jit = JitProgram::compile(&prog, &helpers).map_err(|e| e.to_string())?;
        let took = start.elapsed();
        drop(jit);
        Ok(took)
    }
}
