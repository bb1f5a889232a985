//! Log lines for the operator, recorded by the host.
//!
//! A step's stdout and stderr go nowhere; this is where its diagnostics belong. The host masks
//! any known secret value in a line, but a step cannot know one in the first place.
//!
//! ```no_run
//! latchkey_sdk::log::info(&format!("posting to {}", "#general"));
//! ```

use crate::bindings::latchkey::workflow::log as wit;

/// How important a log line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal progress.
    Info,
    /// Something unexpected that the step can live with.
    Warn,
    /// A failure.
    Error,
}

/// Records `message` at `level`.
pub fn log(level: Level, message: &str) {
    let level = match level {
        Level::Trace => wit::Level::Trace,
        Level::Debug => wit::Level::Debug,
        Level::Info => wit::Level::Info,
        Level::Warn => wit::Level::Warn,
        Level::Error => wit::Level::Error,
    };
    wit::log(level, message);
}

/// Records `message` at [`Level::Trace`].
pub fn trace(message: &str) {
    log(Level::Trace, message);
}

/// Records `message` at [`Level::Debug`].
pub fn debug(message: &str) {
    log(Level::Debug, message);
}

/// Records `message` at [`Level::Info`].
pub fn info(message: &str) {
    log(Level::Info, message);
}

/// Records `message` at [`Level::Warn`].
pub fn warn(message: &str) {
    log(Level::Warn, message);
}

/// Records `message` at [`Level::Error`].
pub fn error(message: &str) {
    log(Level::Error, message);
}
