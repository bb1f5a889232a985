//! What the `latchkey` command and the thin `latchkey-client` share: the client of a
//! `latchkey serve` (`--server`), a run started there and printed the way a local run is,
//! and how runs and their refusals are shown. Nothing here runs a step, so the thin client
//! links no WebAssembly engine.

pub mod json;
pub mod remote;
pub mod remote_run;
pub mod report;

/// The exit status of a run whose step failed (returned an error, trapped or hit a limit).
pub const EXIT_STEP_FAILED: u8 = 3;

/// Output piped into a reader that stops early (`latchkey audit | head`) ends the process
/// quietly, as it does other Unix tools. Rust ignores SIGPIPE, so every later write fails
/// (and `println!` panics) with "Broken pipe" instead. Not for `serve`: a client hanging up
/// on one of its sockets must not stop the server.
pub fn quiet_on_closed_pipe() {
    // SAFETY: called first thing in main, before any thread exists; SIG_DFL is a valid
    // disposition for SIGPIPE, and nothing in these processes relies on it being ignored
    // except the server, which never calls this.
    #[cfg(unix)]
    #[allow(unsafe_code)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
