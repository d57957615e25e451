//! A plugin for the bpf_conformance runner.
//!
//! Protocol (bpf_conformance `src/bpf_conformance.cc`):
//!
//! ```text
//! bpf-conformance-plugin [MEMORY] [--engine interp|jit]
//! ```
//!
//! - stdin: the program as hex bytes separated by whitespace (`b7  00  …`).
//! - `MEMORY`: the input memory in the same form, when the vector has any.
//!   It is told apart from options because options start with `--`.
//! - The program runs with r1 = a copy of the memory and r2 = its length.
//!   Helper 5 is the "unwind" helper of uBPF and rbpf: it returns its first
//!   argument.
//! - On success r0 is printed in lowercase hex without `0x`, exit status 0.
//!   On any failure a message goes to stderr, exit status 1.
//!
//! The engine: `--engine` when given, else `USERBPF_ENGINE`, else the
//! interpreter. `--elf` (ELF input) is refused: not supported yet.
//! Empty arguments are ignored (older runners pass `""` for "no memory" and
//! for "no options"), and an argument holding several options separated by
//! spaces is split (older runners pass all options as one argument).

use std::io::{self, Read, Write};
use std::process::ExitCode;

use thiserror::Error;
use userbpf_runtime::helpers::{HelperEnv, HelperRegistry};
use userbpf_runtime::vm::{Engine, Vm, VmError, VmOptions};

/// The helper id the conformance vectors call (`call_unwind_fail`, `callx`).
const UNWIND_HELPER: u32 = 5;

const USAGE: &str =
    "usage: bpf-conformance-plugin [MEMORY-HEX] [--engine interp|jit] < PROGRAM-HEX";

#[derive(Debug, Error)]
enum PluginError {
    #[error("{0}\n{USAGE}")]
    Usage(String),
    #[error("ELF input is not supported")]
    ElfUnsupported,
    #[error("cannot read the program from stdin: {0}")]
    Stdin(#[from] io::Error),
    #[error("bad hex byte {token:?} in the {what}")]
    BadHex { what: &'static str, token: String },
    #[error("{0}")]
    Vm(#[from] VmError),
}

/// uBPF's "unwind" helper: returns its first argument.
unsafe extern "C" fn unwind(r1: u64, _: u64, _: u64, _: u64, _: u64, _: *mut HelperEnv) -> u64 {
    r1
}

struct Args {
    memory: Vec<u8>,
    engine: Engine,
}

fn parse_args(raw: impl Iterator<Item = String>) -> Result<Args, PluginError> {
    // Split option arguments that hold several options ("--engine jit").
    let mut tokens: Vec<String> = Vec::new();
    for arg in raw {
        if arg.trim_start().starts_with("--") {
            tokens.extend(arg.split_whitespace().map(str::to_string));
        } else if !arg.trim().is_empty() {
            tokens.push(arg);
        }
    }

    let mut memory = None;
    let mut engine = Engine::Default;
    let mut tokens = tokens.into_iter();
    while let Some(token) = tokens.next() {
        let Some(option) = token.strip_prefix("--") else {
            if memory.is_some() {
                return Err(PluginError::Usage(format!("unexpected argument {token:?}")));
            }
            memory = Some(parse_hex(&token, "memory")?);
            continue;
        };
        let (name, inline_value) = match option.split_once('=') {
            Some((name, value)) => (name, Some(value.to_string())),
            None => (option, None),
        };
        match name {
            "engine" => {
                let value = inline_value.or_else(|| tokens.next()).ok_or_else(|| {
                    PluginError::Usage("--engine needs a value (interp or jit)".into())
                })?;
                engine = Engine::from_name(&value).ok_or_else(|| {
                    PluginError::Usage(format!("unknown engine {value:?} (expected interp or jit)"))
                })?;
            }
            "elf" => return Err(PluginError::ElfUnsupported),
            _ => return Err(PluginError::Usage(format!("unknown option --{name}"))),
        }
    }
    Ok(Args {
        memory: memory.unwrap_or_default(),
        engine,
    })
}

/// Whitespace-separated hex bytes, one or two digits each.
fn parse_hex(text: &str, what: &'static str) -> Result<Vec<u8>, PluginError> {
    text.split_whitespace()
        .map(|token| {
            let ok = (1..=2).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_hexdigit());
            ok.then(|| u8::from_str_radix(token, 16).ok())
                .flatten()
                .ok_or_else(|| PluginError::BadHex {
                    what,
                    token: token.to_string(),
                })
        })
        .collect()
}

fn run() -> Result<u64, PluginError> {
    let mut raw_args = Vec::new();
    for arg in std::env::args_os().skip(1) {
        let arg = arg
            .into_string()
            .map_err(|arg| PluginError::Usage(format!("argument {arg:?} is not UTF-8")))?;
        raw_args.push(arg);
    }
    let args = parse_args(raw_args.into_iter())?;

    let mut stdin = String::new();
    io::stdin().read_to_string(&mut stdin)?;
    let program = parse_hex(&stdin, "program")?;

    let mut helpers = HelperRegistry::new();
    helpers.register(UNWIND_HELPER, "unwind", unwind);
    let vm = Vm::from_bytes(&program, &helpers, VmOptions::with_engine(args.engine))?;
    let mut memory = args.memory;
    Ok(vm.run(&mut memory)?)
}

fn main() -> ExitCode {
    match run() {
        Ok(r0) => match writeln!(io::stdout(), "{r0:x}") {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        },
        Err(err) => {
            // Nothing useful is left to do if stderr is gone too.
            let _ = writeln!(io::stderr(), "{err}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Args, PluginError> {
        parse_args(list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn memory_and_options() {
        let a = args(&["aa  bb  ", "--engine", "jit"]).unwrap();
        assert_eq!(a.memory, vec![0xaa, 0xbb]);
        assert_eq!(a.engine, Engine::Jit);
        let a = args(&["", "--engine=interp"]).unwrap();
        assert!(a.memory.is_empty());
        assert_eq!(a.engine, Engine::Interpreter);
        let a = args(&["--engine interp"]).unwrap();
        assert_eq!(a.engine, Engine::Interpreter);
        assert_eq!(args(&[]).unwrap().engine, Engine::Default);
    }

    #[test]
    fn rejects_bad_arguments() {
        assert!(matches!(args(&["--elf"]), Err(PluginError::ElfUnsupported)));
        assert!(matches!(args(&["--bogus"]), Err(PluginError::Usage(_))));
        assert!(matches!(args(&["--engine"]), Err(PluginError::Usage(_))));
        assert!(matches!(
            args(&["--engine", "llvm"]),
            Err(PluginError::Usage(_))
        ));
        assert!(matches!(args(&["00", "11"]), Err(PluginError::Usage(_))));
        assert!(matches!(args(&["zz"]), Err(PluginError::BadHex { .. })));
    }

    #[test]
    fn hex_tokens() {
        assert_eq!(parse_hex("b7  00\n 1  ", "x").unwrap(), vec![0xb7, 0, 1]);
        assert!(parse_hex("123", "x").is_err());
        assert!(parse_hex("+1", "x").is_err());
        assert!(parse_hex("", "x").unwrap().is_empty());
    }
}
