//! Cranelift JIT: compiles a validated [`Program`] to native code.
//!
//! # Safety model
//!
//! Memory accesses are **not** bounds-checked: a load or store goes straight
//! to the address the program computed. Only programs that a verifier (or
//! the embedder) has proven to stay within the context, their stack and
//! memory handed out by helpers may be run. Everything else about a valid
//! [`Program`] is handled without crashing: division by zero and
//! `INT_MIN / -1` follow the ISA (no trap), call depth is limited, unknown
//! `callx` targets stop the run with an error. There is no instruction
//! budget: an infinite loop runs forever.
//!
//! Where the ISA leaves a value undefined, the JIT may differ from the
//! interpreter, which programs cannot observe once verified: the stack is
//! not zeroed, and r1..r5 after a bpf-to-bpf call keep the caller's values
//! (the callee's copies are its own). Helper calls leave r1..r5 unchanged,
//! as in the interpreter.
//!
//! # Code shape
//!
//! Each subprogram becomes one Cranelift function in the host's native
//! calling convention (System V on x86-64), with the hidden signature
//! `(r1, r2, r3, r4, r5, state) -> (r0, status)`: six arguments, all in
//! registers, and two results in registers (rax:rdx), so Rust calls the
//! main function directly, with no trampoline:
//! - r0..r9 are Cranelift variables (SSA); r10 is the end address of a
//!   512-byte stack slot of the function, so each frame has its own stack,
//!   and r6..r9 of the caller are untouched by construction.
//! - `state` points to the `RunState` of the run (the helper environment
//!   and the tail-call bookkeeping), including the frame index `depth` (0
//!   for the main program), which a bpf-to-bpf call bumps around the call.
//!   A call from depth `MAX_CALL_FRAMES - 1` does not happen: the run stops
//!   with [`JitRunError::CallDepthExceeded`]. A tail call keeps the depth.
//! - `status` is 0 for a normal `exit`. A non-zero status is an abort: every
//!   caller returns it at once, up to [`JitProgram::run`], which turns it
//!   into a [`JitRunError`].
//!   It encodes the error kind (low 8 bits) and the pc (the rest).
//! - Helpers are called by address (`extern "C"`, the environment as sixth
//!   argument). `callx` looks the register value up in a table of the
//!   registered helpers built at compile time.
//! - Callbacks (`bpf_loop`): a `BPF_PSEUDO_FUNC` `lddw` loads a token, the
//!   address of the callback's slot in a table of the program that holds
//!   the compiled subprogram's address. A helper runs it through
//!   [`HelperEnv::call_callback`], which checks the token against the
//!   programs of the run and calls the function like a bpf-to-bpf call
//!   (depth + 1, same limit). A callback's abort is recorded in the run
//!   state; programs that have callbacks check it after every helper call
//!   and return it at once.
//! - `bpf_tail_call` (helper 12, also through `callx`) asks the run state for
//!   the target (see [`crate::tailcall`]) and, if there is one, calls its
//!   main function and returns what it returns. That is a call, not a jump:
//!   each tail call that succeeds keeps the caller's frame (its 512-byte
//!   stack and spill slots) until the chain returns. The count is bounded
//!   by `MAX_TAIL_CALL_CNT` (33) per run, so a worst-case chain uses about
//!   33 × 600 bytes ≈ 20 KiB of native stack. (Cranelift's `tail`
//!   convention with `return_call_indirect` would replace the frame, but
//!   Rust cannot call a `tail` function, so every run paid for a System V
//!   trampoline: ~1 ns per call, most of the cost of short programs.)
//!
//! Code quality: every jump target starts a block; `if cond goto +1; alu`
//! and `if cond goto L; alu; goto L` become a select (cmov) instead of a
//! branch, and a 0/1 select is a cmov between 0 and 2 halved, not a setcc
//! (which only writes the low byte and so waits on the register's previous
//! value: in a loop, the previous iteration); division by a register
//! takes a cold branch for the zero (and, signed, -1) divisor, so the hot
//! path is the bare `div`; loads and stores through r10 address the stack
//! slot directly.

mod translate;

#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::ffi::c_void;
use std::mem::offset_of;
use std::sync::OnceLock;

use cranelift_codegen::ir::{types::I64, AbiParam, Signature};
use cranelift_codegen::isa::{CallConv, OwnedTargetIsa};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::Context;
use cranelift_frontend::FunctionBuilderContext;
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, FuncId, Module};
use thiserror::Error;

use crate::helpers::callback::CallbackHook;
use crate::helpers::{CallbackError, HelperEnv, HelperFn, HelperRegistry};
use crate::isa::*;
use crate::program::Program;
use crate::tailcall::{ProgArray, TailCallCounter, TailTarget, BPF_FUNC_TAIL_CALL};

/// Why a program could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum JitError {
    #[error("pc {pc}: call to unknown helper id {id}")]
    UnknownHelper { pc: usize, id: u32 },
    #[error("pc {pc}: the instruction writes r10, which is read-only")]
    WriteToFramePointer { pc: usize },
    #[error("the host is not supported by Cranelift: {0}")]
    UnsupportedHost(String),
    #[error("code generation failed: {0}")]
    Codegen(String),
}

/// Why a run stopped before its `exit`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum JitRunError {
    #[error("pc {pc}: bpf-to-bpf call exceeds {MAX_CALL_FRAMES} frames")]
    CallDepthExceeded { pc: usize },
    #[error("pc {pc}: callx to unknown helper id {id}")]
    UnknownCallx { pc: usize, id: u64 },
    /// The run reached one of libbpf's poisoned calls
    /// ([`crate::vm::PoisonKind`]).
    #[error("pc {pc}: reached poisoned call {id}")]
    PoisonedCall { pc: usize, id: u32 },
    #[error("run aborted with unknown status {0:#x}")]
    Unknown(u64),
}

/// Abort kinds in the low 8 bits of a status; the pc is in the rest.
const ABORT_CALL_DEPTH: i64 = 1;
const ABORT_UNKNOWN_CALLX: i64 = 2;
/// A poisoned call; its id is in `RunState::callx_id`.
const ABORT_POISONED_CALL: i64 = 3;

fn abort_status(kind: i64, pc: usize) -> i64 {
    kind | ((pc as i64) << 8)
}

/// State of one run, shared by all frames through the hidden `state`
/// argument. Lives on the stack of [`JitProgram::run`].
#[repr(C)]
struct RunState {
    /// Read by compiled code before every helper call.
    env: *mut HelperEnv,
    /// Written by compiled code when `callx` meets an unknown id, or a
    /// poisoned call is reached (its id).
    callx_id: u64,
    /// Frame index of the running function (0: the main program), kept
    /// up to date by bpf-to-bpf calls.
    depth: u64,
    tail: TailCallCounter,
    /// Programs jumped to by tail calls, kept alive until the run ends even
    /// if their slot is overwritten meanwhile.
    keep_alive: Vec<TailTarget>,
    /// The program the run started with (callback tokens are resolved
    /// against it and `keep_alive`).
    prog: *const JitProgram,
    /// Non-zero: a callback aborted with this status. Compiled code that
    /// names callbacks checks it after every helper call.
    abort: u64,
    /// Where inlined per-CPU array lookups read the current CPU: the
    /// thread's rseq `cpu_id`, else `cpu_fallback` (the CPU at run start).
    cpu_id: *const u32,
    cpu_fallback: u32,
}

const STATE_ENV: i32 = offset_of!(RunState, env) as i32;
const STATE_ABORT: i32 = offset_of!(RunState, abort) as i32;
const STATE_CALLX_ID: i32 = offset_of!(RunState, callx_id) as i32;
const STATE_DEPTH: i32 = offset_of!(RunState, depth) as i32;
const STATE_CPU_ID: i32 = offset_of!(RunState, cpu_id) as i32;

/// Called by compiled code for `bpf_tail_call(ctx, array, index)`: the
/// address of the target's main function, or 0 if the tail call fails.
extern "C" fn tail_call_target(state: *mut RunState, array: u64, index: u64) -> u64 {
    // SAFETY: compiled code passes the run state it was given by `run`,
    // which outlives the run and is not otherwise borrowed during it.
    let state = unsafe { &mut *state };
    // SAFETY: like every pointer a JIT-compiled program dereferences, the
    // array address is trusted (see the module documentation); 0 fails.
    let Some(array) = (unsafe { ProgArray::from_addr(array) }) else {
        return 0;
    };
    let Some(target) = state.tail.begin(array, index) else {
        return 0;
    };
    let Some(prog) = (*target).downcast_ref::<JitProgram>() else {
        return 0;
    };
    let main = prog.main as u64;
    state.keep_alive.push(target);
    main
}

/// The callback hook of the JIT (see [`crate::helpers::callback`]): calls
/// the compiled subprogram of a callback token as a bpf-to-bpf call from
/// the frame that called the helper.
///
/// # Safety
/// `state` is the `RunState` of the run `env` belongs to, and the call
/// comes from a helper that run is calling.
unsafe fn run_callback(
    state: *const c_void,
    _env: *mut HelperEnv,
    token: u64,
    args: [u64; 5],
) -> Result<u64, CallbackError> {
    let state = state.cast_mut().cast::<RunState>();
    // SAFETY: the hook was installed by `run` with its live state; compiled
    // code does not touch it while a helper runs.
    let (func, pc, depth) = unsafe {
        let s = &*state;
        let Some((func, pc)) = resolve_callback(s, token) else {
            return Err(CallbackError::BadCallback { token });
        };
        (func, pc, s.depth)
    };
    if depth + 1 >= MAX_CALL_FRAMES as u64 {
        // SAFETY: as above.
        unsafe { (*state).abort = abort_status(ABORT_CALL_DEPTH, pc) as u64 };
        return Err(CallbackError::Aborted);
    }
    // SAFETY: `func` is a finalized function of a program of this run,
    // compiled with the MainFn signature, alive while the run is.
    let exit = unsafe {
        (*state).depth = depth + 1;
        let f = std::mem::transmute::<u64, MainFn>(func);
        let exit = f(args[0], args[1], args[2], args[3], args[4], state);
        (*state).depth = depth;
        exit
    };
    if exit.status != 0 {
        // SAFETY: as above.
        unsafe { (*state).abort = exit.status };
        return Err(CallbackError::Aborted);
    }
    Ok(exit.r0)
}

/// The function address and entry pc of a callback token of a program of
/// this run.
fn resolve_callback(state: &RunState, token: u64) -> Option<(u64, usize)> {
    // SAFETY: `prog` is the program being run (alive for the run).
    if let Some(found) = unsafe { &*state.prog }.callback(token) {
        return Some(found);
    }
    state
        .keep_alive
        .iter()
        .find_map(|t| t.downcast_ref::<JitProgram>()?.callback(token))
}

/// Called by compiled code for `callx` with an id beyond the dense table:
/// the helper's address, or 0.
extern "C" fn callx_lookup_sparse(table: *const (u64, u64), len: u64, id: u64) -> u64 {
    // SAFETY: `table` and `len` describe `CallxTable::sparse` of the
    // program being run, which lives as long as its code.
    let sparse = unsafe { std::slice::from_raw_parts(table, len as usize) };
    match sparse.binary_search_by_key(&id, |&(k, _)| k) {
        Ok(i) => sparse[i].1,
        Err(_) => 0,
    }
}

/// Helper ids below this are looked up by `callx` in a flat array.
const CALLX_DENSE_LIMIT: u64 = 1024;

/// Helper addresses by id, for `callx`; referenced by address from the code.
struct CallxTable {
    /// Index = id; 0 = no helper.
    dense: Box<[u64]>,
    /// Sorted (id, address) for ids >= `CALLX_DENSE_LIMIT`.
    sparse: Box<[(u64, u64)]>,
}

impl CallxTable {
    fn new(helpers: &HelperRegistry) -> Self {
        let mut dense_len = 0;
        let mut sparse = Vec::new();
        for h in helpers.iter() {
            let id = h.id as u64;
            if id < CALLX_DENSE_LIMIT {
                dense_len = dense_len.max(id + 1);
            } else {
                sparse.push((id, h.func as usize as u64));
            }
        }
        let mut dense = vec![0u64; dense_len as usize].into_boxed_slice();
        for h in helpers.iter() {
            if (h.id as u64) < CALLX_DENSE_LIMIT {
                dense[h.id as usize] = h.func as usize as u64;
            }
        }
        sparse.sort_unstable();
        CallxTable {
            dense,
            sparse: sparse.into_boxed_slice(),
        }
    }
}

/// What a main function returns to Rust: r0 and the status (the native
/// convention returns this pair in two registers, rax:rdx on x86-64).
#[repr(C)]
struct Exit {
    r0: u64,
    status: u64,
}

/// How Rust calls a main function: `(r1..r5, state) -> (r0, status)`.
type MainFn = unsafe extern "C" fn(u64, u64, u64, u64, u64, *mut RunState) -> Exit;

/// A program compiled to native code. Dropping it frees the code.
///
/// To make it a tail-call target, put it into a [`ProgArray`] slot as an
/// `Arc<JitProgram>`.
pub struct JitProgram {
    /// The main function: what `run` calls, and the target of tail calls
    /// from other programs.
    main: *const u8,
    /// Owns the code; `None` only while dropping.
    module: Option<JITModule>,
    /// Referenced by address from the code.
    _callx: Box<CallxTable>,
    /// Addresses of the compiled callbacks, by token: a `BPF_PSEUDO_FUNC`
    /// `lddw` loads the address of its entry here.
    callbacks: Box<[u64]>,
    /// Entry pcs of the callbacks, parallel to `callbacks`.
    callback_pcs: Box<[usize]>,
    insn_count: usize,
}

// SAFETY: after `compile` returns, nothing reachable through `&JitProgram`
// is mutated: the code is finalized (read + execute) and the callx table is
// never written again. `run` keeps all per-run state (stack slots, depth,
// tail-call counter, abort status) on the calling thread's stack, so any
// number of threads may run the same program at once. The JITModule (whose
// symbol cache is a RefCell) is only touched in `drop`, through `&mut self`.
// The raw pointers point into memory this value owns, so moving it to
// another thread moves that ownership with it.
unsafe impl Send for JitProgram {}
// SAFETY: see the `Send` impl.
unsafe impl Sync for JitProgram {}

impl std::fmt::Debug for JitProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JitProgram")
            .field("main", &self.main)
            .field("insn_count", &self.insn_count)
            .finish()
    }
}

impl Drop for JitProgram {
    fn drop(&mut self) {
        if let Some(module) = self.module.take() {
            // SAFETY: we hold `&mut self`, so no run of this program is in
            // progress (`run` borrows it), and runs that tail-called into it
            // hold an `Arc` to it, so they are over too. No pointer into the
            // code is used after this.
            unsafe { module.free_memory() };
        }
    }
}

impl JitProgram {
    /// Compiles `program`. Helper calls are resolved against `helpers` now:
    /// an unknown id is an error, except [`BPF_FUNC_TAIL_CALL`], which the
    /// JIT always implements itself. `callx` sees the helpers registered
    /// at this point.
    pub fn compile(program: &Program, helpers: &HelperRegistry) -> Result<JitProgram, JitError> {
        let insns = program.insns();
        let mut resolved: Vec<(u32, HelperFn)> = Vec::new();
        let mut pc = 0;
        while pc < insns.len() {
            let insn = insns[pc];
            let fetches = insn.class() == BPF_STX
                && insn.mode() == BPF_ATOMIC
                && insn.imm & BPF_FETCH != 0
                && insn.imm != BPF_CMPXCHG;
            if fetches && insn.src == FP {
                return Err(JitError::WriteToFramePointer { pc });
            }
            if insn.code == CALL && insn.src == BPF_CALL_HELPER {
                let id = insn.imm as u32;
                if id != BPF_FUNC_TAIL_CALL {
                    match helpers.get(id) {
                        Some(h) => resolved.push((id, h.func)),
                        // Compiled into an abort of the run that reaches it.
                        None if crate::vm::PoisonKind::is_poison(id) => {}
                        None => return Err(JitError::UnknownHelper { pc, id }),
                    }
                }
            }
            pc += if insn.is_lddw() { 2 } else { 1 };
        }
        let callx = Box::new(CallxTable::new(helpers));
        let callback_pcs: Box<[usize]> = program.callback_targets().into_boxed_slice();
        let mut callbacks: Box<[u64]> = vec![0; callback_pcs.len()].into_boxed_slice();
        let tokens = CallbackTokens {
            table: callbacks.as_ptr() as u64,
            pcs: &callback_pcs,
        };

        let isa = host_isa()?;
        let mut module = JITModule::new(JITBuilder::with_isa(isa, default_libcall_names()));
        match build(&mut module, program, &resolved, &callx, &tokens) {
            Ok(funcs) => {
                let main = module.get_finalized_function(funcs[0]);
                let subprogs = program.subprograms();
                for (slot, &pc) in callbacks.iter_mut().zip(callback_pcs.iter()) {
                    // Validation made every callback target a subprogram.
                    if let Ok(idx) = subprogs.binary_search(&pc) {
                        *slot = module.get_finalized_function(funcs[idx]) as u64;
                    }
                }
                Ok(JitProgram {
                    main,
                    module: Some(module),
                    _callx: callx,
                    callbacks,
                    callback_pcs,
                    insn_count: insns.len(),
                })
            }
            Err(e) => {
                // SAFETY: nothing from this module was handed out.
                unsafe { module.free_memory() };
                Err(e)
            }
        }
    }

    /// Number of instruction slots of the source program.
    pub fn insn_count(&self) -> usize {
        self.insn_count
    }

    /// The function address and entry pc of a callback token of this
    /// program.
    fn callback(&self, token: u64) -> Option<(u64, usize)> {
        let base = self.callbacks.as_ptr() as u64;
        let offset = token.checked_sub(base)?;
        if offset % 8 != 0 {
            return None;
        }
        let idx = usize::try_from(offset / 8).ok()?;
        let func = *self.callbacks.get(idx)?;
        let pc = *self.callback_pcs.get(idx)?;
        (func != 0).then_some((func, pc))
    }

    /// Runs the program with r1 = `r1` (the context pointer), r2 = `r2`
    /// (the context length) and r3..r5 = 0, and returns r0. A run that
    /// stopped with an error (see [`JitProgram::run`]) returns 0.
    ///
    /// # Safety
    /// The program is trusted: every memory access it makes must be valid
    /// (see the module documentation), `env` must be valid for the helpers
    /// the program calls, and any program array it tail-calls through must
    /// be alive.
    #[inline]
    pub unsafe fn call(&self, r1: u64, r2: u64, env: *mut HelperEnv) -> u64 {
        // SAFETY: forwarded to the caller.
        unsafe { self.run(r1, r2, env) }.unwrap_or(0)
    }

    /// Like [`JitProgram::call`], but tells an abort (call depth exceeded,
    /// `callx` to an unknown helper) from a normal exit.
    ///
    /// # Safety
    /// As for [`JitProgram::call`].
    #[inline]
    pub unsafe fn run(&self, r1: u64, r2: u64, env: *mut HelperEnv) -> Result<u64, JitRunError> {
        let mut state = RunState {
            env,
            callx_id: 0,
            depth: 0,
            tail: TailCallCounter::new(),
            keep_alive: Vec::new(),
            prog: self,
            abort: 0,
            cpu_id: std::ptr::null(),
            cpu_fallback: 0,
        };
        state.cpu_id = match crate::cpu::current_cpu_ptr() {
            Some(p) => p,
            None => {
                state.cpu_fallback = crate::cpu::current_cpu();
                &state.cpu_fallback
            }
        };
        // SAFETY: `env` is null or valid for the run (caller).
        let saved_hook = unsafe { env.as_mut() }.map(|env| {
            let hook = CallbackHook {
                state: (&mut state as *mut RunState).cast_const().cast(),
                call: run_callback,
            };
            env.callback.replace(hook)
        });
        // SAFETY: `main` is the finalized main function of this program,
        // compiled with the signature of MainFn in the native convention
        // (see `Sigs`), and alive while `self` is.
        let main = unsafe { std::mem::transmute::<*const u8, MainFn>(self.main) };
        // SAFETY: the state outlives the call; the rest is the caller's
        // promise.
        let Exit { r0, status } = unsafe { main(r1, r2, 0, 0, 0, &mut state) };
        if let Some(saved) = saved_hook {
            // SAFETY: as above.
            if let Some(env) = unsafe { env.as_mut() } {
                env.callback = saved;
            }
        }
        // A callback's abort that compiled code did not check (a program
        // without callback references of its own) still ends the run.
        let status = if status != 0 { status } else { state.abort };
        match status {
            0 => Ok(r0),
            s => Err(decode_status(s, state.callx_id)),
        }
    }
}

#[cold]
fn decode_status(status: u64, callx_id: u64) -> JitRunError {
    let pc = (status >> 8) as usize;
    match (status & 0xff) as i64 {
        ABORT_CALL_DEPTH => JitRunError::CallDepthExceeded { pc },
        ABORT_UNKNOWN_CALLX => JitRunError::UnknownCallx { pc, id: callx_id },
        ABORT_POISONED_CALL => JitRunError::PoisonedCall {
            pc,
            id: callx_id as u32,
        },
        _ => JitRunError::Unknown(status),
    }
}

/// The host ISA, built once per process.
fn host_isa() -> Result<OwnedTargetIsa, JitError> {
    static ISA: OnceLock<Result<OwnedTargetIsa, String>> = OnceLock::new();
    ISA.get_or_init(|| {
        let mut flags = settings::builder();
        let verifier = if cfg!(debug_assertions) {
            "true"
        } else {
            "false"
        };
        for (name, value) in [
            ("opt_level", "speed"),
            ("is_pic", "false"),
            ("use_colocated_libcalls", "false"),
            // No unwinding through compiled code: helpers are extern "C",
            // and a panic there aborts.
            ("unwind_info", "false"),
            ("enable_verifier", verifier),
            // Frame pointers: profilers and debuggers can walk through
            // compiled code (it costs a push and a mov per call).
            ("preserve_frame_pointers", "true"),
            // Frames beyond a page (heavy spilling) still touch the guard page.
            ("enable_probestack", "true"),
            ("probestack_strategy", "inline"),
        ] {
            flags.set(name, value).map_err(|e| e.to_string())?;
        }

        let builder = cranelift_native::builder()?;
        builder
            .finish(settings::Flags::new(flags))
            .map_err(|e| e.to_string())
    })
    .clone()
    .map_err(JitError::UnsupportedHost)
}

fn codegen_err(e: impl std::fmt::Display) -> JitError {
    JitError::Codegen(e.to_string())
}

/// Signatures shared by the translated functions.
pub(crate) struct Sigs {
    /// eBPF functions: (r1..r5, state) -> (r0, status), native cc.
    pub bpf: Signature,
    /// Helpers: (r1..r5, env) -> r0, native cc.
    pub helper: Signature,
    /// Runtime support functions: (i64, i64, i64) -> i64, native cc.
    pub rt3: Signature,
}

impl Sigs {
    fn new(native: CallConv) -> Self {
        let mut bpf = Signature::new(native);
        bpf.params.extend([AbiParam::new(I64); 6]);
        bpf.returns.extend([AbiParam::new(I64); 2]);
        let mut helper = Signature::new(native);
        helper.params.extend([AbiParam::new(I64); 6]);
        helper.returns.push(AbiParam::new(I64));
        let mut rt3 = Signature::new(native);
        rt3.params.extend([AbiParam::new(I64); 3]);
        rt3.returns.push(AbiParam::new(I64));
        Sigs { bpf, helper, rt3 }
    }
}

/// The callback tokens of a program: the address of the table the
/// tokens point into, and the entry pc of each slot.
pub(crate) struct CallbackTokens<'a> {
    pub table: u64,
    pub pcs: &'a [usize],
}

/// Everything a translated function may refer to.
pub(crate) struct Shared<'a> {
    pub program: &'a Program,
    pub helpers: &'a [(u32, HelperFn)],
    pub funcs: &'a [FuncId],
    pub sigs: &'a Sigs,
    pub callx_dense: (u64, u64),
    pub callx_sparse: (u64, u64),
    pub callbacks: &'a CallbackTokens<'a>,
}

impl Shared<'_> {
    fn helper(&self, id: u32) -> Option<HelperFn> {
        self.helpers.iter().find(|h| h.0 == id).map(|h| h.1)
    }

    /// The token a `BPF_PSEUDO_FUNC` `lddw` targeting `pc` loads.
    pub fn callback_token(&self, pc: usize) -> u64 {
        match self.callbacks.pcs.binary_search(&pc) {
            Ok(i) => self.callbacks.table + 8 * i as u64,
            Err(_) => 0,
        }
    }

    /// Whether helpers may run callbacks of this program (then compiled
    /// code checks for an abort after each helper call).
    pub fn has_callbacks(&self) -> bool {
        !self.callbacks.pcs.is_empty()
    }
}

/// Reusable compilation buffers: a Cranelift context (with its register
/// allocator state) and a function builder context, kept per thread so that
/// compiling a program does not start from empty allocations.
struct Scratch {
    ctx: Context,
    fctx: FunctionBuilderContext,
}

thread_local! {
    // Boxed: the contexts are 8 KiB, and a thread-local that size would
    // make the agent's TLS segment too big to `dlopen` (static TLS).
    static SCRATCH: RefCell<Option<Box<Scratch>>> = const { RefCell::new(None) };
}

/// Declares, translates and finalizes every function; returns their ids,
/// by subprogram (the main function first).
fn build(
    module: &mut JITModule,
    program: &Program,
    helpers: &[(u32, HelperFn)],
    callx: &CallxTable,
    callbacks: &CallbackTokens<'_>,
) -> Result<Vec<FuncId>, JitError> {
    let mut scratch = SCRATCH.with(|s| s.borrow_mut().take()).unwrap_or_else(|| {
        Box::new(Scratch {
            ctx: module.make_context(),
            fctx: FunctionBuilderContext::new(),
        })
    });
    let result = build_with(module, program, helpers, callx, callbacks, &mut scratch);
    // A failed compilation may leave the contexts half-used.
    module.clear_context(&mut scratch.ctx);
    if result.is_ok() {
        SCRATCH.with(|s| *s.borrow_mut() = Some(scratch));
    }
    result
}

fn build_with(
    module: &mut JITModule,
    program: &Program,
    helpers: &[(u32, HelperFn)],
    callx: &CallxTable,
    callbacks: &CallbackTokens<'_>,
    scratch: &mut Scratch,
) -> Result<Vec<FuncId>, JitError> {
    let sigs = Sigs::new(module.isa().default_call_conv());
    let funcs = program
        .subprograms()
        .iter()
        .map(|_| {
            module
                .declare_anonymous_function(&sigs.bpf)
                .map_err(codegen_err)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let shared = Shared {
        program,
        helpers,
        funcs: &funcs,
        sigs: &sigs,
        callx_dense: (callx.dense.as_ptr() as u64, callx.dense.len() as u64),
        callx_sparse: (callx.sparse.as_ptr() as u64, callx.sparse.len() as u64),
        callbacks,
    };
    let Scratch { ctx, fctx } = scratch;
    let dump = dump_enabled();
    for (idx, &func_id) in funcs.iter().enumerate() {
        ctx.func.signature = sigs.bpf.clone();
        translate::translate(module, &mut ctx.func, fctx, &shared, idx);
        if dump {
            ctx.set_disasm(true);
            eprintln!("; function {idx}: Cranelift IR\n{}", ctx.func.display());
        }
        module.define_function(func_id, ctx).map_err(codegen_err)?;
        if dump {
            let code = ctx.compiled_code().and_then(|c| c.vcode.as_deref());
            eprintln!("; function {idx}: machine code\n{}", code.unwrap_or(""));
        }
        module.clear_context(ctx);
    }
    module.finalize_definitions().map_err(codegen_err)?;
    Ok(funcs)
}

/// Whether `USERBPF_JIT_DUMP` is set (non-empty): then every compilation
/// prints the Cranelift IR and the machine code of each function to stderr.
fn dump_enabled() -> bool {
    static DUMP: OnceLock<bool> = OnceLock::new();
    *DUMP.get_or_init(|| std::env::var_os("USERBPF_JIT_DUMP").is_some_and(|v| !v.is_empty()))
}
