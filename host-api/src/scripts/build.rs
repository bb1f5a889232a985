//! One script built into a component by the JavaScript SDK's own `latchkey-build`, in its
//! `--only-sdk` mode: the bundle holds the script and the SDK and nothing else (an import
//! of anything but `latchkey-sdk` is an error, so no file of this host can end up inside).
//!
//! The build runs as a child process group with an empty environment (no master key or
//! database address is inherited), in a private directory that it alone may read and
//! removed afterwards, and is killed, with everything it started, at the time limit.

use super::ScriptError;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The most of the toolchain's output a build failure quotes.
const MAX_LOG_CHARS: usize = 4000;
/// The largest component a build may produce (a JavaScript step is about 12 MB).
const MAX_COMPONENT_BYTES: u64 = 64 << 20;

/// Whether `sdk` is a JavaScript SDK whose build tools are installed: why not, if not.
pub(crate) fn check_toolchain(sdk: &Path) -> Result<(), ScriptError> {
    let needed = [
        "bin/latchkey-build.js",
        "node_modules/esbuild",
        "node_modules/@bytecodealliance/componentize-js",
    ];
    match needed.iter().find(|p| !sdk.join(p).exists()) {
        None => Ok(()),
        Some(p) => Err(ScriptError::NoToolchain(format!(
            "{} has no {p}",
            sdk.display()
        ))),
    }
}

/// Builds `source` (JavaScript or TypeScript) with the SDK at `sdk`: the component's bytes.
pub(crate) fn build(sdk: &Path, source: &str, timeout: Duration) -> Result<Vec<u8>, ScriptError> {
    check_toolchain(sdk)?;
    let dir = tempfile::Builder::new()
        .prefix("latchkey-script-")
        .tempdir()
        .map_err(ScriptError::Io)?;
    let root = dir.path();
    for sub in ["src", "tmp", "work"] {
        std::fs::create_dir(root.join(sub)).map_err(ScriptError::Io)?;
    }
    let (src, out) = (root.join("src/step.ts"), root.join("step.wasm"));
    std::fs::write(&src, source).map_err(ScriptError::Io)?;
    let log_path = root.join("build.log");
    let log = std::fs::File::create(&log_path).map_err(ScriptError::Io)?;
    let log_err = log.try_clone().map_err(ScriptError::Io)?;

    let mut command = Command::new("node");
    command
        .arg(sdk.join("bin/latchkey-build.js"))
        .arg("--only-sdk")
        .arg(&src)
        .arg("-o")
        .arg(&out)
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()),
        )
        .env("HOME", root)
        .env("TMPDIR", root.join("tmp"))
        // Not an ancestor of the bundle's directory: componentize-js shows the build's
        // JavaScript engine the working directory when it contains the bundle.
        .current_dir(root.join("work"))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        // A group of its own, so that the time limit kills what node started too.
        .process_group(0);
    let mut child = command.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            ScriptError::NoToolchain("Node.js (`node`) is not on this host's PATH".into())
        }
        _ => ScriptError::Io(e),
    })?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait().map_err(ScriptError::Io)? {
            Some(status) => break status,
            None if Instant::now() >= deadline => {
                kill_group(child.id());
                let _ = child.wait();
                return Err(ScriptError::BuildTimeout(timeout));
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    // Whatever it left running (a build tool's own child) goes with the group.
    kill_group(child.id());
    if !status.success() {
        return Err(ScriptError::Build(failure_log(&log_path, root)));
    }
    let file = std::fs::File::open(&out).map_err(ScriptError::Io)?;
    let mut bytes = Vec::new();
    file.take(MAX_COMPONENT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(ScriptError::Io)?;
    if bytes.len() as u64 > MAX_COMPONENT_BYTES {
        return Err(ScriptError::Build(format!(
            "the component is larger than {MAX_COMPONENT_BYTES} bytes"
        )));
    }
    Ok(bytes)
}

/// The start of what the toolchain printed, without the private directory's path.
fn failure_log(log: &Path, root: &Path) -> String {
    let mut text = String::new();
    if let Ok(f) = std::fs::File::open(log) {
        let mut raw = Vec::new();
        let _ = f.take(64 * 1024).read_to_end(&mut raw);
        text = String::from_utf8_lossy(&raw).into_owned();
    }
    let text = text
        .replace(&format!("{}/", root.join("src").display()), "")
        .replace(&root.display().to_string(), "");
    let text = text.trim();
    if text.is_empty() {
        return "the build tool failed without a message".into();
    }
    match text.char_indices().nth(MAX_LOG_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

// The one call std has no safe form of: signalling a process group.
#[allow(unsafe_code)]
fn kill_group(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill(2) with a negative pid signals that process group; no memory is
        // touched. The group is the build's own (process_group(0) above).
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
}
