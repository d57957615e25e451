//! Why an injection failed.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    #[error("no process {0}")]
    NoProcess(i32),
    #[error("process {0} exited during the injection")]
    Exited(i32),
    #[error("ptrace is not allowed on process {pid}: {why}")]
    NotPermitted { pid: i32, why: String },
    #[error("cannot inject into process {pid}: {why}")]
    Unsupported { pid: i32, why: String },
    #[error("no userbpf agent is loaded in process {0}")]
    NoAgent(i32),
    #[error("timed out {0}")]
    Timeout(String),
    #[error(
        "no thread of process {pid} came to a point where a call is safe within {timeout:?} \
         (last: {last})"
    )]
    NoSafePoint {
        pid: i32,
        timeout: Duration,
        last: String,
    },
    #[error("dlopen(\"{path}\") in process {pid} failed: {msg}")]
    Dlopen { pid: i32, path: String, msg: String },
    #[error("{func} in process {pid} failed: {msg}")]
    CallFailed {
        pid: i32,
        func: &'static str,
        msg: String,
    },
    #[error("the injected call of {func} in process {pid} stopped with signal {sig} at {ip:#x}")]
    Crashed {
        pid: i32,
        func: &'static str,
        sig: i32,
        ip: u64,
    },
    #[error("{what}: {msg}")]
    Elf { what: String, msg: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl InjectError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> InjectError {
        InjectError::Io {
            what: what.into(),
            source,
        }
    }
}
