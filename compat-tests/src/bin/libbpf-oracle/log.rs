//! Capturing libbpf's log.
//!
//! libbpf calls its print function with a `va_list`; the C shim
//! `csrc/oracle_log.c` formats the message and hands it to [`sink`], which
//! appends it to a buffer this module drains per object.

use std::ffi::{c_char, c_int};
use std::sync::Mutex;

use libbpf_sys::{libbpf_print_level, libbpf_set_print, LIBBPF_DEBUG, LIBBPF_WARN};

type Sink = extern "C" fn(level: c_int, msg: *const c_char, len: usize);

#[link(name = "userbpf_oracle_log", kind = "static")]
extern "C" {
    fn userbpf_oracle_set_sink(sink: Option<Sink>);
    fn userbpf_oracle_print(
        level: libbpf_print_level,
        fmt: *const c_char,
        args: *mut libbpf_sys::__va_list_tag,
    ) -> c_int;
}

/// libbpf's log level of a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Warn,
    Info,
    Debug,
}

static LINES: Mutex<Vec<(Level, String)>> = Mutex::new(Vec::new());
static ECHO: Mutex<bool> = Mutex::new(false);

extern "C" fn sink(level: c_int, msg: *const c_char, len: usize) {
    if msg.is_null() {
        return;
    }
    // SAFETY: the shim passes the buffer it just formatted and its length
    // (vsnprintf's return value, the bytes before the NUL); the buffer
    // lives until we return.
    let bytes = unsafe { std::slice::from_raw_parts(msg.cast::<u8>(), len) };
    let text = String::from_utf8_lossy(bytes).trim_end().to_string();
    let level = match level as libbpf_print_level {
        LIBBPF_WARN => Level::Warn,
        LIBBPF_DEBUG => Level::Debug,
        _ => Level::Info,
    };
    if *ECHO.lock().unwrap_or_else(|e| e.into_inner()) {
        eprintln!("{text}");
    }
    LINES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((level, text));
}

/// Routes every libbpf message (all levels) to the buffer; with `echo`,
/// also to stderr.
pub fn capture(echo: bool) {
    *ECHO.lock().unwrap_or_else(|e| e.into_inner()) = echo;
    // SAFETY: both functions only store a function pointer; the shim's
    // print function has exactly libbpf_print_fn_t's signature, and `sink`
    // stays valid for the life of the process.
    unsafe {
        userbpf_oracle_set_sink(Some(sink));
        libbpf_set_print(Some(userbpf_oracle_print));
    }
}

/// Turns libbpf's log off (for timing).
pub fn silence() {
    // SAFETY: a NULL print function is libbpf's documented way to mute it.
    unsafe {
        libbpf_set_print(None);
    }
}

/// Takes the lines logged since the last call.
pub fn take() -> Vec<(Level, String)> {
    std::mem::take(&mut *LINES.lock().unwrap_or_else(|e| e.into_inner()))
}

/// CO-RE relocations libbpf logged for one (sub)program.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CoreCounts {
    pub relos: usize,
    pub poisoned: usize,
}

/// Counts CO-RE relocations per program name from libbpf's log: every
/// distinct `prog '<name>': relo #<n>: ...` line, except the ones
/// `bpf_object__relocate_data` writes for map/kfunc relocations (same
/// prefix, other index space). `substituting insn #.. w/ invalid insn`
/// marks a poisoned one.
pub fn core_counts(lines: &[(Level, String)]) -> Vec<(String, CoreCounts)> {
    const NOT_CORE: &[&str] = &[
        "poisoning insn",
        "bad insn",
        "bad relo type",
        "can't create jump table",
    ];
    let mut seen: Vec<(String, usize)> = Vec::new();
    let mut counts: Vec<(String, CoreCounts)> = Vec::new();
    for (_, line) in lines {
        let Some(start) = line.find("prog '") else {
            continue;
        };
        let rest = &line[start + 6..];
        let Some(name_end) = rest.find("': relo #") else {
            continue;
        };
        let name = &rest[..name_end];
        let rest = &rest[name_end + 9..];
        let Some(colon) = rest.find(": ") else {
            continue;
        };
        let Ok(index) = rest[..colon].parse::<usize>() else {
            continue;
        };
        let what = &rest[colon + 2..];
        if NOT_CORE.iter().any(|p| what.starts_with(p)) {
            continue;
        }
        let slot = match counts.iter().position(|(n, _)| n == name) {
            Some(i) => i,
            None => {
                counts.push((name.to_string(), CoreCounts::default()));
                counts.len() - 1
            }
        };
        if !seen.iter().any(|(n, i)| n == name && *i == index) {
            seen.push((name.to_string(), index));
            counts[slot].1.relos += 1;
        }
        if what.starts_with("substituting insn") {
            counts[slot].1.poisoned += 1;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_distinct_core_relos() {
        let lines: Vec<(Level, String)> = [
            "libbpf: sec 'kprobe/x': found 2 CO-RE relocations",
            "libbpf: prog 'a': relo #0: <byte_off> [7] struct task_struct.pid (0:2 @ offset 8)",
            "libbpf: prog 'a': relo #0: matching candidate #0 <byte_off> [9] struct task_struct.pid",
            "libbpf: prog 'a': relo #0: patched insn #3 (LDX/ST/STX) off 8 -> 2480",
            "libbpf: prog 'a': relo #1: <type_exists> [12] struct nope",
            "libbpf: prog 'a': relo #1: substituting insn #9 w/ invalid insn",
            "libbpf: prog 'a': relo #0: poisoning insn #4 that loads map #1 'm'",
            "libbpf: prog 'sub': relo #4: <byte_off> [3] struct x.y (0:0 @ offset 0)",
            "libbpf: sec 'kprobe/x': relo #0: insn #3 against 'm'",
        ]
        .iter()
        .map(|l| (Level::Debug, l.to_string()))
        .collect();
        let counts = core_counts(&lines);
        assert_eq!(
            counts,
            vec![
                (
                    "a".to_string(),
                    CoreCounts {
                        relos: 2,
                        poisoned: 1
                    }
                ),
                (
                    "sub".to_string(),
                    CoreCounts {
                        relos: 1,
                        poisoned: 0
                    }
                ),
            ]
        );
    }
}
