//! `--verdicts` and `--kprobe-attach`: the real libbpf's side of the
//! kernel verdicts (`userbpf_compat_tests::verdict` says what is done and
//! the report format; `kernel-apps/kernel_verdict.c` does the same through
//! whatever `libbpf.so.1` it is run with).

use crate::libbpf::{Error, Object};
use crate::log::{self, Level};
use crate::verdict::{self, AttachVerdict, ProgVerdict, VerdictObject};

/// The first warning logged since the last `log::take`.
fn first_warning() -> String {
    log::take()
        .into_iter()
        .find(|(l, _)| *l == Level::Warn)
        .map(|(_, t)| t)
        .unwrap_or_default()
}

/// Applies the map-size rule of the verdict docs; returns the changes.
fn resize_maps(obj: &Object) -> Vec<(String, String)> {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u32;
    let mut changes = Vec::new();
    for map in obj.maps() {
        let ty = map.map_type();
        if ty == libbpf_sys::BPF_MAP_TYPE_STACK_TRACE
            && (map.value_size() == 0 || map.value_size() % 8 != 0)
        {
            let from = map.value_size();
            let what = match map.set_value_size(verdict::STACK_TRACE_VALUE_SIZE) {
                Ok(()) => format!("value_size {from} -> {}", verdict::STACK_TRACE_VALUE_SIZE),
                Err(e) => format!("set_value_size: {}", -e.errno),
            };
            changes.push((map.name(), what));
        }
        if map.max_entries() == 0 && ty != libbpf_sys::BPF_MAP_TYPE_PERF_EVENT_ARRAY {
            let n = if ty == libbpf_sys::BPF_MAP_TYPE_RINGBUF {
                page
            } else {
                1
            };
            let what = match map.set_max_entries(n) {
                Ok(()) => format!("max_entries 0 -> {n}"),
                Err(e) => format!("set_max_entries: {}", -e.errno),
            };
            changes.push((map.name(), what));
        }
    }
    changes
}

/// An open object and the map-size changes applied to it, or why
/// `bpf_object__open_mem` failed: `(-errno, first warning)`.
type Opened = Result<(Object, Vec<(String, String)>), (i32, String)>;

/// Opens `bytes` with every program but `only` not autoloaded (`None`:
/// just opens), sizes its maps.
fn open(name: &str, bytes: &[u8], btf: Option<&str>, only: Option<&str>) -> Opened {
    log::take();
    let obj = Object::open_mem(name, bytes, btf).map_err(|e: Error| (-e.errno, first_warning()))?;
    if let Some(only) = only {
        for p in obj.programs() {
            // Errors here would show as a different verdict.
            let _ = p.set_autoload(p.name() == only);
        }
    }
    let resized = resize_maps(&obj);
    Ok((obj, resized))
}

/// The verdicts of every program of one object.
pub fn object_verdicts(name: &str, bytes: &[u8], btf: Option<&str>) -> VerdictObject {
    let mut out = VerdictObject {
        name: name.to_string(),
        ..Default::default()
    };
    let names: Vec<String> = match open(name, bytes, btf, None) {
        Ok((obj, resized)) => {
            out.resized = resized;
            obj.programs().iter().map(|p| p.name()).collect()
        }
        Err(failed) => {
            out.open_failed = Some(failed);
            return out;
        }
    };
    for prog in names {
        let (rc, warn) = match open(name, bytes, btf, Some(&prog)) {
            Ok((mut obj, _)) => {
                log::take();
                let rc = match obj.load() {
                    Ok(()) => 0,
                    Err(e) => -e.errno,
                };
                let warn = first_warning();
                drop(obj);
                (rc, warn)
            }
            Err((rc, warn)) => (rc, warn),
        };
        out.programs.push(ProgVerdict {
            name: prog,
            rc,
            warn,
        });
    }
    out
}

/// Loads `prog` alone and attaches it as a kprobe on `func`.
pub fn kprobe_attach(
    name: &str,
    bytes: &[u8],
    btf: Option<&str>,
    prog: &str,
    func: &str,
) -> VerdictObject {
    let mut out = VerdictObject {
        name: name.to_string(),
        ..Default::default()
    };
    let (mut obj, resized) = match open(name, bytes, btf, Some(prog)) {
        Ok(x) => x,
        Err(failed) => {
            out.open_failed = Some(failed);
            return out;
        }
    };
    out.resized = resized;
    let mut attach = AttachVerdict {
        prog: prog.to_string(),
        target: func.to_string(),
        load_rc: 0,
        rc: 0,
        warn: String::new(),
    };
    log::take();
    if let Err(e) = obj.load() {
        attach.load_rc = -e.errno;
        attach.warn = first_warning();
    } else {
        log::take();
        match obj.programs().iter().find(|p| p.name() == prog) {
            Some(p) => {
                if let Err(e) = p.attach_kprobe(false, func) {
                    attach.rc = -e.errno;
                }
                attach.warn = first_warning();
            }
            None => attach.load_rc = -libc::ENOENT,
        }
    }
    out.attaches.push(attach);
    out
}
