//! The WIT `log` interface: guest log lines, captured with known secret values masked.

use crate::bindings::wit_log::{self, Level};
use crate::sandbox::{GuestLogLine, HostState};

/// Longest log line kept, in bytes; longer lines are cut.
const MAX_LINE_BYTES: usize = 8 * 1024;

impl wit_log::Host for HostState {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        if self.logs.len() >= self.limits().max_log_lines {
            self.logs_dropped += 1;
            return Ok(());
        }
        let mut text = self.injected.scrub_text(&message);
        if text.len() > MAX_LINE_BYTES {
            let mut cut = MAX_LINE_BYTES;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push('…');
        }
        let level = match level {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        self.logs.push(GuestLogLine {
            level,
            message: text,
        });
        Ok(())
    }
}
