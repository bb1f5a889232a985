//! The WIT `log` interface: guest log lines, captured with known secret values masked and
//! control characters made visible, within a per-run budget of lines and bytes.
//!
//! One file: the interface's host side, its per-run state, and its linker wiring.

use crate::bindings::wit_log::{self, Level};
use crate::http::injected::Injected;
use crate::run_state::RunState;
use std::borrow::Cow;
use std::fmt::Write as _;
use wasmtime::component::{HasData, Linker};

/// A log line from the guest, secrets masked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestLogLine {
    /// `trace` … `error`.
    pub level: &'static str,
    /// The masked message.
    pub message: String,
}

/// Per-run state of the `log` interface: the lines kept, and what the budget dropped.
#[derive(Default)]
pub(crate) struct LogState {
    pub lines: Vec<GuestLogLine>,
    /// Bytes of the kept lines as the guest sent them (capped by `max_log_bytes`).
    pub bytes: usize,
    /// Lines dropped once the budget was spent.
    pub dropped: usize,
}

impl LogState {
    /// The kept lines, and a last one saying how many were dropped, if any.
    pub fn into_lines_noting_dropped(self) -> Vec<GuestLogLine> {
        let mut lines = self.lines;
        if self.dropped > 0 {
            lines.push(GuestLogLine {
                level: "warn",
                message: format!("{} more log lines dropped", self.dropped),
            });
        }
        lines
    }
}

/// What the `log` host works on: its per-run state and the values injected so far (lines are scrubbed of them), and the run through `Deref`.
pub(crate) struct LogView<'a> {
    pub run: &'a RunState,
    pub log: &'a mut LogState,
    pub injected: &'a mut Injected,
}

impl std::ops::Deref for LogView<'_> {
    type Target = RunState;
    fn deref(&self) -> &RunState {
        self.run
    }
}

/// The `HasData` of `log`: its host is a [`LogView`].
pub(crate) struct LogHost;

impl HasData for LogHost {
    type Data<'a> = LogView<'a>;
}

/// Adds `latchkey:workflow/log` to `linker`, its host being the view `view` gives.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> LogView<'_>,
) -> wasmtime::Result<()> {
    wit_log::add_to_linker::<T, LogHost>(linker, view)
}

/// Longest log line kept, in bytes; longer lines are cut.
const MAX_LINE_BYTES: usize = 8 * 1024;

/// `text` with every control character except tab replaced by a visible escape (`\u{1b}`),
/// so that guest-chosen text (log lines, error messages, output) cannot move the cursor,
/// retitle the window, hide earlier lines or inject OSC 52 clipboard writes on the
/// operator's terminal. `char::is_control` covers C0, DEL and C1 (the 8-bit CSI among them).
/// Apply it after scrubbing: a secret that itself holds control characters is then masked
/// before its escaped form could differ from what the scrubber looks for.
pub fn visible(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() && c != '\t') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if c.is_control() && c != '\t' {
            // Writing to a String cannot fail.
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Like [`visible`], keeping line breaks too: for multi-line text the operator reads as
/// such (a step's output).
#[cfg(any(test, feature = "testing"))]
pub fn visible_lines(text: &str) -> Cow<'_, str> {
    if !text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n'))
    {
        return Cow::Borrowed(text);
    }
    let lines: Vec<Cow<'_, str>> = text.split('\n').map(visible).collect();
    Cow::Owned(lines.join("\n"))
}

fn cut(text: &mut String, max: usize) {
    if text.len() > max {
        let mut at = max;
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        text.truncate(at);
        text.push('…');
    }
}

impl wit_log::Host for LogView<'_> {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let limits = self.limits();
        let (max_lines, max_bytes) = (limits.max_log_lines, limits.max_log_bytes);
        // The line as the guest sent it counts against the budget, before any work is done
        // on it: scrubbing costs time in proportion to what it reads.
        if self.log.lines.len() >= max_lines || self.log.bytes + message.len() > max_bytes {
            self.log.dropped += 1;
            return Ok(());
        }
        self.log.bytes += message.len();
        // The whole line is scrubbed before it is cut: cutting first could leave part of
        // a secret that the scrubber no longer recognises.
        let deadline = self.deadline_at;
        let scrubbed = match self.injected.scrub_text(&message, deadline) {
            Ok(s) => s,
            Err(_) => crate::http::injected::WITHHELD.to_owned(),
        };
        let mut text = visible(&scrubbed).into_owned();
        cut(&mut text, MAX_LINE_BYTES);
        let level = match level {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        self.log.lines.push(GuestLogLine {
            level,
            message: text,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_bells_become_visible() {
        let v = visible("\x1b[31mred\x1b]0;title\x07 tab\there \u{9b}2J\r\n");
        assert!(!v.chars().any(|c| c.is_control() && c != '\t'), "{v}");
        assert_eq!(
            v,
            "\\u{1b}[31mred\\u{1b}]0;title\\u{7} tab\there \\u{9b}2J\\u{d}\\u{a}"
        );
    }

    #[test]
    fn plain_text_is_borrowed() {
        assert!(matches!(visible("hello, wörld\t!"), Cow::Borrowed(_)));
    }

    #[test]
    fn visible_lines_keeps_newlines_only() {
        assert_eq!(visible_lines("a\nb\x1bc\r"), "a\nb\\u{1b}c\\u{d}");
    }
}
