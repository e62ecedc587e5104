//! Captured guest logs (`proxy_log` and WASI `fd_write`), with their level and the VM that wrote
//! them. Set `FLEETGATE_WASM_LOG=1` to also echo each line to stderr while debugging.

use std::sync::{Mutex, PoisonError};

use proxy_wasm_host::abi::v0_2_1::types::LogLevel;
use proxy_wasm_host::abi::v0_2_1::{GuestId, LogContext, LogSink};

/// One line a guest logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// The VM (worker) that wrote it, as numbered by `Host` (0 = first VM).
    pub vm: usize,
    /// The level the guest gave.
    pub level: LogLevel,
    /// The text, lossily decoded as UTF-8.
    pub message: String,
}

#[derive(Debug)]
pub(crate) struct RawLine {
    pub(crate) guest: GuestId,
    pub(crate) level: LogLevel,
    pub(crate) message: String,
}

/// The log sink of one host, shared by its VMs.
#[derive(Debug, Default)]
pub(crate) struct LogBook {
    lines: Mutex<Vec<RawLine>>,
    echo: bool,
}

impl LogBook {
    pub(crate) fn new() -> Self {
        Self {
            lines: Mutex::default(),
            echo: std::env::var_os("FLEETGATE_WASM_LOG").is_some(),
        }
    }

    pub(crate) fn with_lines<R>(&self, read: impl FnOnce(&[RawLine]) -> R) -> R {
        read(&self.lines.lock().unwrap_or_else(PoisonError::into_inner))
    }

    pub(crate) fn clear(&self) {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

impl LogSink for LogBook {
    fn log(&self, context: LogContext<'_>, level: LogLevel, message: &[u8]) {
        let message = String::from_utf8_lossy(message).into_owned();
        if self.echo {
            eprintln!("[guest {} {level:?}] {message}", context.guest.get());
        }
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(RawLine {
                guest: context.guest,
                level,
                message,
            });
    }
}
