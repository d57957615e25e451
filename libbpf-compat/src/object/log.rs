//! The loader's log: the lines libbpf prints through `libbpf_print` while it
//! opens and relocates an object (`pr_warn`, `pr_info`, `pr_debug`), kept in
//! order and optionally forwarded as they happen (the C ABI layer forwards
//! them to the `libbpf_set_print` callback).
//!
//! Messages have no `libbpf: ` prefix and no trailing newline; the printer
//! adds both.

use std::fmt;
use std::sync::Arc;

/// `enum libbpf_print_level`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    Warn = 0,
    Info = 1,
    Debug = 2,
}

/// One logged line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    pub level: LogLevel,
    pub message: String,
}

/// Called for every line as it is logged.
pub type LogCallback = Arc<dyn Fn(LogLevel, &str) + Send + Sync>;

/// Collects [`LogRecord`]s and forwards them to an optional callback.
#[derive(Clone, Default)]
pub(crate) struct Logger {
    records: Vec<LogRecord>,
    callback: Option<LogCallback>,
}

impl Logger {
    pub(crate) fn new(callback: Option<LogCallback>) -> Logger {
        Logger {
            records: Vec::new(),
            callback,
        }
    }

    pub(crate) fn log(&mut self, level: LogLevel, message: String) {
        if let Some(callback) = &self.callback {
            callback(level, &message);
        }
        self.records.push(LogRecord { level, message });
    }

    pub(crate) fn warn(&mut self, message: impl Into<String>) {
        self.log(LogLevel::Warn, message.into());
    }

    pub(crate) fn info(&mut self, message: impl Into<String>) {
        self.log(LogLevel::Info, message.into());
    }

    pub(crate) fn debug(&mut self, message: impl Into<String>) {
        self.log(LogLevel::Debug, message.into());
    }

    /// Logs `error` as a warning (libbpf warns where it fails) and returns it.
    pub(crate) fn fail<E: fmt::Display>(&mut self, error: E) -> E {
        self.warn(error.to_string());
        error
    }

    pub(crate) fn records(&self) -> &[LogRecord] {
        &self.records
    }

    pub(crate) fn take(&mut self) -> Vec<LogRecord> {
        std::mem::take(&mut self.records)
    }
}

impl fmt::Debug for Logger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Logger")
            .field("records", &self.records.len())
            .field("callback", &self.callback.is_some())
            .finish()
    }
}
