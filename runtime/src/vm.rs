//! The embedding API: load a program once, run it many times, from many
//! threads.
//!
//! A [`Vm`] is built from a validated [`Program`] (or from raw bytecode or
//! decoded instructions) and a [`HelperRegistry`]. Every `call imm` must
//! name a registered helper; that is checked at load, not at run time.
//! The one exception are libbpf's poisoned calls ([`PoisonKind`]): they
//! load, as the kernel's verifier accepts them in dead code, and a run
//! that reaches one fails with [`VmError::PoisonedCall`].
//!
//! # Choosing the engine
//!
//! [`VmOptions::engine`] picks the engine. When it is [`Engine::Default`]
//! (not chosen), the environment variable `USERBPF_ENGINE` decides
//! (`interp` or `jit`; unset or empty means the interpreter). An explicit
//! choice in the API always wins over the environment.
//!
//! # Example
//!
//! ```
//! use userbpf_runtime::helpers::{HelperEnv, HelperRegistry};
//! use userbpf_runtime::isa::*;
//! use userbpf_runtime::vm::{Engine, Vm, VmOptions};
//!
//! // A helper: returns r1 + r2.
//! unsafe extern "C" fn add(a: u64, b: u64, _: u64, _: u64, _: u64, _: *mut HelperEnv) -> u64 {
//!     a.wrapping_add(b)
//! }
//!
//! // r1 = mem[0]; r2 = mem.len(); r0 = add(r1, r2); exit
//! let program = vec![
//!     Insn::new(BPF_LDX | BPF_MEM | BPF_B, 1, 1, 0, 0),
//!     Insn::new(CALL, 0, 0, 0, 7),
//!     Insn::new(EXIT, 0, 0, 0, 0),
//! ];
//! let mut helpers = HelperRegistry::new();
//! helpers.register(7, "add", add);
//! let options = VmOptions { engine: Engine::Interpreter, ..VmOptions::default() };
//! let vm = Vm::from_insns(program, &helpers, options)?;
//! let mut mem = [40u8, 0];
//! assert_eq!(vm.run(&mut mem)?, 42);
//! # Ok::<(), userbpf_runtime::vm::VmError>(())
//! ```

use std::borrow::Borrow;
use std::ffi::c_void;
use std::fmt;

use thiserror::Error;

use std::sync::Arc;

use crate::helpers::{HelperEnv, HelperRegistry};
use crate::interp::Interpreter;
use crate::isa::{Insn, CALL, MAX_CALL_FRAMES};
use crate::jit::{JitError, JitProgram, JitRunError};
use crate::memory::{Access, Region};
use crate::program::{Program, ProgramError};
use crate::tailcall::{TailTarget, BPF_FUNC_TAIL_CALL};

/// The environment variable that picks the engine when the API does not.
pub const ENGINE_ENV: &str = "USERBPF_ENGINE";

/// Which engine runs the program.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Engine {
    /// Not chosen: `USERBPF_ENGINE` decides, else the interpreter.
    #[default]
    Default,
    /// The checked interpreter ([`crate::interp`]).
    Interpreter,
    /// The Cranelift JIT ([`crate::jit`]).
    Jit,
}

impl Engine {
    /// Parses an engine name: `interp` (or `interpreter`) or `jit`.
    pub fn from_name(name: &str) -> Option<Engine> {
        match name {
            "interp" | "interpreter" => Some(Engine::Interpreter),
            "jit" => Some(Engine::Jit),
            _ => None,
        }
    }

    /// The engine a run will use: `self` when chosen, otherwise the value
    /// of `USERBPF_ENGINE`, otherwise the interpreter.
    pub fn resolve(self) -> Result<Engine, VmError> {
        let env = std::env::var(ENGINE_ENV).ok();
        self.resolve_with(env.as_deref())
    }

    /// [`Engine::resolve`] with the environment value given.
    pub fn resolve_with(self, env_value: Option<&str>) -> Result<Engine, VmError> {
        if self != Engine::Default {
            return Ok(self);
        }
        match env_value.map(str::trim) {
            None | Some("") => Ok(Engine::Interpreter),
            Some(name) => {
                Engine::from_name(name).ok_or_else(|| VmError::BadEngineName(name.to_string()))
            }
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Engine::Default => "default",
            Engine::Interpreter => "interp",
            Engine::Jit => "jit",
        })
    }
}

/// How to build a [`Vm`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmOptions {
    pub engine: Engine,
    /// Stop a run with [`VmError::InstructionLimit`] after this many
    /// instructions. `None` (the default): no limit.
    pub instruction_limit: Option<u64>,
}

impl VmOptions {
    /// Options that choose `engine` and set no instruction limit.
    pub fn with_engine(engine: Engine) -> VmOptions {
        VmOptions {
            engine,
            instruction_limit: None,
        }
    }
}

/// libbpf's `POISON_LDIMM64_MAP_BASE`: the `lddw` of a map whose creation
/// was disabled (`bpf_map__set_autocreate(map, false)`) becomes two
/// `call POISON_LDIMM64_MAP_BASE + map index`.
pub const POISON_LDIMM64_MAP_BASE: u32 = 2_001_000_000;
/// libbpf's `POISON_CALL_KFUNC_BASE`: a call of a kfunc that did not
/// resolve becomes `call POISON_CALL_KFUNC_BASE + extern index`.
pub const POISON_CALL_KFUNC_BASE: u32 = 2_002_000_000;
/// libbpf's poison for an instruction whose CO-RE relocation failed
/// (`bpf_core_poison_insn`): `call 0xbad2310` ("bad relo").
pub const POISON_CORE_RELO: u32 = 0xbad2310;
/// Indices a poison base can carry: the two bases are this far apart.
const POISON_RANGE: u32 = POISON_CALL_KFUNC_BASE - POISON_LDIMM64_MAP_BASE;

/// A `call imm` libbpf wrote in place of code it could not relocate. The
/// kernel's verifier only rejects such a call when it is reachable (dead
/// code is pruned), so engines load it and fail the run that reaches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoisonKind {
    /// The `lddw` of map number `.0` of the object, which was not created.
    DisabledMap(u32),
    /// A call of the object's extern number `.0`, an unresolved kfunc.
    UnresolvedKfunc(u32),
    /// An instruction whose CO-RE relocation failed.
    FailedCoreRelo,
}

impl PoisonKind {
    /// The poison a helper id stands for, if it is one of libbpf's.
    pub fn of(id: u32) -> Option<PoisonKind> {
        match id {
            POISON_CORE_RELO => Some(PoisonKind::FailedCoreRelo),
            _ if id.wrapping_sub(POISON_LDIMM64_MAP_BASE) < POISON_RANGE => {
                Some(PoisonKind::DisabledMap(id - POISON_LDIMM64_MAP_BASE))
            }
            _ if id.wrapping_sub(POISON_CALL_KFUNC_BASE) < POISON_RANGE => {
                Some(PoisonKind::UnresolvedKfunc(id - POISON_CALL_KFUNC_BASE))
            }
            _ => None,
        }
    }

    /// Whether `id` is one of libbpf's poison ids.
    pub fn is_poison(id: u32) -> bool {
        PoisonKind::of(id).is_some()
    }
}

impl fmt::Display for PoisonKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoisonKind::DisabledMap(i) => write!(f, "uses map #{i}, which was not created"),
            PoisonKind::UnresolvedKfunc(i) => {
                write!(f, "calls extern #{i}, a kfunc that did not resolve")
            }
            PoisonKind::FailedCoreRelo => f.write_str("its CO-RE relocation failed"),
        }
    }
}

/// Why the call at a poisoned `pc` was poisoned (for the error message).
fn poison_reason(id: u32) -> String {
    PoisonKind::of(id).map_or_else(|| "unknown poison".to_string(), |k| k.to_string())
}

/// Everything that can go wrong loading or running a program.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VmError {
    /// The program failed validation.
    #[error(transparent)]
    Program(#[from] ProgramError),
    /// A `call imm` (at load) or `callx` (at run time) names a helper id
    /// that is not registered.
    #[error("pc {pc}: helper {id} is not registered")]
    UnknownHelper { pc: usize, id: u64 },
    /// The run reached a call libbpf poisoned ([`PoisonKind`]); the
    /// kernel's verifier would have refused the program.
    #[error("pc {pc}: reached poisoned call {id}: the instruction {}", poison_reason(*.id))]
    PoisonedCall { pc: usize, id: u32 },
    /// A load, store or atomic outside the memory the program may access.
    #[error("pc {pc}: {verb} of {len} bytes at {addr:#x} is outside the memory the program may access", verb = access_verb(*.access))]
    MemoryViolation {
        pc: usize,
        addr: u64,
        len: u64,
        access: Access,
    },
    /// An atomic operation on an address that is not a multiple of its size.
    #[error("pc {pc}: atomic access of {len} bytes at {addr:#x} is not aligned")]
    MisalignedAtomic { pc: usize, addr: u64, len: u64 },
    /// A bpf-to-bpf call would exceed the frame limit.
    #[error("pc {pc}: call depth exceeds the limit of {max} frames")]
    CallDepthExceeded { pc: usize, max: usize },
    /// The run used up its instruction budget.
    #[error("pc {pc}: instruction limit of {limit} reached")]
    InstructionLimit { pc: usize, limit: u64 },
    /// The chosen engine cannot run programs in this build.
    #[error("the {engine} engine is not available: {reason}")]
    EngineUnavailable { engine: Engine, reason: String },
    /// The JIT could not compile the program.
    #[error("JIT compilation failed: {0}")]
    Jit(JitError),
    /// A JIT-compiled run stopped with a status this VM does not know.
    #[error("JIT run aborted: {0}")]
    JitAborted(JitRunError),
    /// `USERBPF_ENGINE` names no engine.
    #[error("{ENGINE_ENV}={0:?} is not an engine (expected interp or jit)")]
    BadEngineName(String),
}

fn access_verb(access: Access) -> &'static str {
    match access {
        Access::Read => "read",
        Access::Write => "write",
        Access::ReadWrite => "atomic read-write",
    }
}

/// A loaded program, ready to run. Cheap to share: `Vm` is `Send + Sync`
/// and [`Vm::run`] takes `&self`, so many threads may run it at once.
#[derive(Debug)]
pub struct Vm {
    program: Program,
    engine: Engine,
    backend: Backend,
}

#[derive(Debug)]
enum Backend {
    Interpreter(Arc<Interpreter>),
    Jit(Arc<JitProgram>),
}

impl From<JitError> for VmError {
    fn from(e: JitError) -> Self {
        match e {
            JitError::UnknownHelper { pc, id } => VmError::UnknownHelper {
                pc,
                id: u64::from(id),
            },
            other => VmError::Jit(other),
        }
    }
}

impl From<JitRunError> for VmError {
    fn from(e: JitRunError) -> Self {
        match e {
            JitRunError::CallDepthExceeded { pc } => VmError::CallDepthExceeded {
                pc,
                max: MAX_CALL_FRAMES,
            },
            JitRunError::UnknownCallx { pc, id } => VmError::UnknownHelper { pc, id },
            JitRunError::PoisonedCall { pc, id } => VmError::PoisonedCall { pc, id },
            other => VmError::JitAborted(other),
        }
    }
}

// Per-run state lives on the caller's stack, so sharing a Vm is safe.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Vm>();
};

impl Vm {
    /// Loads a validated program. `helpers` may be a registry or a
    /// reference to one; helpers are resolved now, so registering more
    /// afterwards does not change this `Vm`.
    pub fn new(
        program: Program,
        helpers: impl Borrow<HelperRegistry>,
        options: VmOptions,
    ) -> Result<Vm, VmError> {
        let helpers = helpers.borrow();
        check_helpers(&program, helpers)?;
        let engine = options.engine.resolve()?;
        let backend = match engine {
            Engine::Jit => {
                if options.instruction_limit.is_some() {
                    return Err(VmError::EngineUnavailable {
                        engine,
                        reason: "the JIT has no instruction limit; use the interpreter".to_string(),
                    });
                }
                Backend::Jit(Arc::new(JitProgram::compile(&program, helpers)?))
            }
            // `resolve` never returns Default; it would mean the interpreter.
            Engine::Interpreter | Engine::Default => Backend::Interpreter(Arc::new(
                Interpreter::new(&program, helpers, options.instruction_limit)?,
            )),
        };
        Ok(Vm {
            program,
            engine,
            backend,
        })
    }

    /// Validates and loads raw bytecode (8-byte slots).
    pub fn from_bytes(
        bytes: &[u8],
        helpers: impl Borrow<HelperRegistry>,
        options: VmOptions,
    ) -> Result<Vm, VmError> {
        Vm::new(Program::from_bytes(bytes)?, helpers, options)
    }

    /// Validates and loads decoded instructions.
    pub fn from_insns(
        insns: Vec<Insn>,
        helpers: impl Borrow<HelperRegistry>,
        options: VmOptions,
    ) -> Result<Vm, VmError> {
        Vm::new(Program::new(insns)?, helpers, options)
    }

    /// The engine that runs the program (never [`Engine::Default`]).
    pub fn engine(&self) -> Engine {
        self.engine
    }

    pub fn program(&self) -> &Program {
        &self.program
    }

    /// What to put into a [`crate::tailcall::ProgArray`] slot so that
    /// programs on the same engine can tail-call this one.
    pub fn tail_target(&self) -> TailTarget {
        match &self.backend {
            Backend::Interpreter(interp) => interp.clone(),
            Backend::Jit(jit) => jit.clone(),
        }
    }

    /// Runs the program with r1 = a pointer to `mem` and r2 = `mem.len()`;
    /// returns r0. The program may read and write `mem` and its own stack,
    /// nothing else (besides what helpers grant).
    #[inline]
    pub fn run(&self, mem: &mut [u8]) -> Result<u64, VmError> {
        // SAFETY: `mem` is borrowed exclusively for the whole run, so it is
        // valid for reads and writes and nobody else touches it.
        unsafe { self.run_with(mem.as_mut_ptr(), mem.len(), &[], std::ptr::null_mut()) }
    }

    /// Runs the program with r1 = `ctx` and r2 = `ctx_len`, for contexts
    /// that are not a byte slice (a `pt_regs`, a packet descriptor).
    ///
    /// The program may read and write `[ctx, ctx + ctx_len)` (pass
    /// `ctx_len = 0` and a read-only region in `extra_regions` for a
    /// read-only context), access each of `extra_regions` as it allows, and
    /// use its stack. `user` reaches helpers as [`crate::helpers::HelperEnv::user`];
    /// with the tracing helpers ([`crate::helpers::register_tracing_helpers`])
    /// it must be null or point to a [`crate::helpers::RunInfo`] that lives
    /// for the call.
    ///
    /// # Safety
    /// `[ctx, ctx + ctx_len)` must be valid for reads and writes, and each
    /// region of `extra_regions` valid for the accesses it allows, for the
    /// whole call. Memory other threads may use at the same time must only
    /// be accessed atomically by them and by the program.
    #[inline]
    pub unsafe fn run_with(
        &self,
        ctx: *mut u8,
        ctx_len: usize,
        extra_regions: &[Region],
        user: *mut c_void,
    ) -> Result<u64, VmError> {
        match &self.backend {
            // SAFETY: forwarded from this function's contract.
            Backend::Interpreter(interp) => unsafe {
                interp.run(ctx, ctx_len, extra_regions, user)
            },
            Backend::Jit(jit) => {
                // The JIT does not check memory, so nothing is recorded.
                let _ = extra_regions;
                let mut env = HelperEnv::new(ctx, user, false);
                // SAFETY: forwarded from this function's contract; `env`
                // outlives the call.
                Ok(unsafe { jit.run(ctx as u64, ctx_len as u64, &mut env) }?)
            }
        }
    }
}

/// Every `call imm` must name a registered helper, except `bpf_tail_call`,
/// which every engine provides itself, and libbpf's poisoned calls, which
/// fail only when reached.
fn check_helpers(program: &Program, helpers: &HelperRegistry) -> Result<(), VmError> {
    let mut pc = 0;
    let insns = program.insns();
    while pc < insns.len() {
        let insn = insns[pc];
        if insn.code == CALL
            && insn.src == crate::isa::BPF_CALL_HELPER
            && insn.imm as u32 != BPF_FUNC_TAIL_CALL
            && !helpers.contains(insn.imm as u32)
            && !PoisonKind::is_poison(insn.imm as u32)
        {
            return Err(VmError::UnknownHelper {
                pc,
                id: u64::from(insn.imm as u32),
            });
        }
        pc += if insn.is_lddw() { 2 } else { 1 };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_engine_wins_over_environment() {
        assert_eq!(Engine::Jit.resolve_with(Some("interp")), Ok(Engine::Jit));
        assert_eq!(
            Engine::Interpreter.resolve_with(Some("jit")),
            Ok(Engine::Interpreter)
        );
        assert_eq!(Engine::Default.resolve_with(Some("jit")), Ok(Engine::Jit));
        assert_eq!(
            Engine::Default.resolve_with(Some("interp")),
            Ok(Engine::Interpreter)
        );
        assert_eq!(Engine::Default.resolve_with(None), Ok(Engine::Interpreter));
        assert_eq!(
            Engine::Default.resolve_with(Some("")),
            Ok(Engine::Interpreter)
        );
        assert_eq!(
            Engine::Default.resolve_with(Some("llvm")),
            Err(VmError::BadEngineName("llvm".into()))
        );
    }

    #[test]
    fn jit_refuses_an_instruction_limit() {
        let prog = vec![Insn::new(crate::isa::EXIT, 0, 0, 0, 0)];
        let options = VmOptions {
            engine: Engine::Jit,
            instruction_limit: Some(10),
        };
        let err = Vm::from_insns(prog, HelperRegistry::new(), options).unwrap_err();
        assert!(matches!(
            err,
            VmError::EngineUnavailable {
                engine: Engine::Jit,
                ..
            }
        ));
    }

    #[test]
    fn both_engines_run_the_same_program() {
        use crate::isa::*;
        // r0 = mem[0] * 3; exit
        let prog = vec![
            Insn::new(BPF_LDX | BPF_MEM | BPF_B, 0, 1, 0, 0),
            Insn::new(BPF_ALU64 | BPF_MUL | BPF_K, 0, 0, 0, 3),
            Insn::new(EXIT, 0, 0, 0, 0),
        ];
        for engine in [Engine::Interpreter, Engine::Jit] {
            let vm = Vm::from_insns(
                prog.clone(),
                HelperRegistry::new(),
                VmOptions::with_engine(engine),
            )
            .unwrap();
            assert_eq!(vm.engine(), engine);
            assert_eq!(vm.run(&mut [14]).unwrap(), 42);
        }
    }

    #[test]
    fn poison_ids_are_exactly_libbpfs() {
        assert_eq!(
            PoisonKind::of(2_001_000_000),
            Some(PoisonKind::DisabledMap(0))
        );
        assert_eq!(
            PoisonKind::of(2_001_000_123),
            Some(PoisonKind::DisabledMap(123))
        );
        assert_eq!(
            PoisonKind::of(2_002_000_004),
            Some(PoisonKind::UnresolvedKfunc(4))
        );
        assert_eq!(
            PoisonKind::of(195_896_080),
            Some(PoisonKind::FailedCoreRelo)
        );
        for id in [0, 1, 12, 2_000_999_999, 2_003_000_000, 0xbad2311, u32::MAX] {
            assert_eq!(PoisonKind::of(id), None, "{id}");
        }
    }

    /// r2 = mem[0]; if r2 == 0 goto skip; <poisoned calls>; skip: r0 = 7; exit
    fn guarded_poison(poison: &[u32]) -> Vec<Insn> {
        use crate::isa::*;
        let mut prog = vec![
            Insn::new(BPF_LDX | BPF_MEM | BPF_B, 2, 1, 0, 0),
            Insn::new(BPF_JMP | BPF_JEQ | BPF_K, 2, 0, poison.len() as i16, 0),
        ];
        prog.extend(poison.iter().map(|&id| Insn::new(CALL, 0, 0, 0, id as i32)));
        prog.push(Insn::new(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, 7));
        prog.push(Insn::new(EXIT, 0, 0, 0, 0));
        prog
    }

    #[test]
    fn poisoned_calls_load_and_fail_only_when_reached() {
        let map = POISON_LDIMM64_MAP_BASE + 3;
        let cases: [&[u32]; 3] = [
            // A poisoned map lddw is two identical calls.
            &[map, map],
            &[POISON_CALL_KFUNC_BASE + 1],
            &[POISON_CORE_RELO],
        ];
        for engine in [Engine::Interpreter, Engine::Jit] {
            for poison in cases {
                let vm = Vm::from_insns(
                    guarded_poison(poison),
                    HelperRegistry::new(),
                    VmOptions::with_engine(engine),
                )
                .unwrap_or_else(|e| panic!("{engine}: {poison:?} must load: {e}"));
                // Dead: the program runs normally.
                assert_eq!(vm.run(&mut [0]).unwrap(), 7, "{engine} {poison:?}");
                // Reached: the run fails at the first poisoned call.
                let err = vm.run(&mut [1]).unwrap_err();
                assert_eq!(
                    err,
                    VmError::PoisonedCall {
                        pc: 2,
                        id: poison[0]
                    },
                    "{engine}"
                );
                // A failed run leaves the program usable.
                assert_eq!(vm.run(&mut [0]).unwrap(), 7, "{engine} {poison:?}");
            }
        }
    }

    #[test]
    fn poisoned_call_error_names_the_cause() {
        let e = VmError::PoisonedCall {
            pc: 27,
            id: 2_001_000_002,
        };
        assert_eq!(
            e.to_string(),
            "pc 27: reached poisoned call 2001000002: the instruction uses map #2, which was not created"
        );
    }

    #[test]
    fn other_unknown_helpers_still_fail_at_load() {
        for engine in [Engine::Interpreter, Engine::Jit] {
            for id in [99_999u32, 2_003_000_000, 0xbad2311] {
                let err = Vm::from_insns(
                    guarded_poison(&[id]),
                    HelperRegistry::new(),
                    VmOptions::with_engine(engine),
                )
                .unwrap_err();
                assert_eq!(
                    err,
                    VmError::UnknownHelper {
                        pc: 2,
                        id: u64::from(id)
                    },
                    "{engine}"
                );
            }
        }
    }

    #[test]
    fn engines_accept_poison_without_the_vm_check() {
        // Interpreter::new and JitProgram::compile are also used directly.
        let program = Program::new(guarded_poison(&[POISON_CALL_KFUNC_BASE])).unwrap();
        let helpers = HelperRegistry::new();
        let interp = Interpreter::new(&program, &helpers, None).unwrap();
        let mut mem = [1u8];
        // SAFETY: `mem` is valid for the whole run.
        let r = unsafe { interp.run(mem.as_mut_ptr(), 1, &[], std::ptr::null_mut()) };
        assert_eq!(
            r,
            Err(VmError::PoisonedCall {
                pc: 2,
                id: POISON_CALL_KFUNC_BASE
            })
        );
        let jit = JitProgram::compile(&program, &helpers).unwrap();
        let mut env = HelperEnv::new(mem.as_mut_ptr(), std::ptr::null_mut(), false);
        // SAFETY: `mem` and `env` outlive the run.
        let r = unsafe { jit.run(mem.as_mut_ptr() as u64, 1, &mut env) };
        assert_eq!(
            r,
            Err(JitRunError::PoisonedCall {
                pc: 2,
                id: POISON_CALL_KFUNC_BASE
            })
        );
    }
}
