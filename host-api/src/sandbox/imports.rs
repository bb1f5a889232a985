//! The imports a component may have: Latchkey's interfaces and basic WASI. Everything
//! else is refused at load, with a reason.

use super::LoadError;
use wasmtime::Engine;
use wasmtime::component::Component;

/// Interfaces a component may import. Everything else is refused at load.
///
/// `wasi:cli/environment` stays: every Rust std guest imports it, whether or not it reads
/// the environment. It is linked with an empty environment and only argv[0], the step name.
/// `wasi:filesystem` is refused: there are no preopens to give, and a step that imports it
/// expects files it will never have.
const ALLOWED_IMPORTS: &[&str] = &[
    "latchkey:workflow/credentials",
    "latchkey:workflow/http",
    "latchkey:workflow/log",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
];

fn forbidden_why(name: &str) -> &'static str {
    if name.starts_with("wasi:http/") {
        "a step has no network of its own; use latchkey:workflow/http"
    } else if name.starts_with("wasi:sockets/") {
        "a step may not open sockets; use latchkey:workflow/http"
    } else if name.starts_with("wasi:filesystem/") {
        "a step has no files; pass data in its input"
    } else {
        "only latchkey:workflow and basic WASI (io, cli, clocks, random) are provided"
    }
}

/// Refuses `component` if it imports anything Latchkey does not provide.
pub(super) fn check(engine: &Engine, component: &Component) -> Result<(), LoadError> {
    for (name, _) in component.component_type().imports(engine) {
        let interface = name.split('@').next().unwrap_or(name);
        if !ALLOWED_IMPORTS.contains(&interface) {
            return Err(LoadError::ForbiddenImport {
                import: name.to_owned(),
                why: forbidden_why(name),
            });
        }
    }
    Ok(())
}
