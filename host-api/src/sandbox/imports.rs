//! The imports a component may have: Latchkey's interfaces, basic WASI, and WASI's files and
//! sockets linked with nothing granted. Everything else is refused at load, with a reason,
//! read from the component's binary before it is compiled.

use super::LoadError;
use wasmtime::Engine;
use wasmtime::component::Component;

/// Interfaces a component may import. Everything else is refused at load.
///
/// `wasi:cli/environment` stays: every Rust std guest imports it, whether or not it reads
/// the environment. It is linked with an empty environment and only argv[0], the step name.
///
/// `wasi:filesystem` and `wasi:sockets` are accepted but grant nothing: an interpreter
/// (CPython, through componentize-py) imports them whatever the step does. There are no
/// preopened directories, so no file descriptor can ever be had, and TCP, UDP and name
/// lookups are disabled in every run's WASI context (`HostState::new`), with every socket
/// address denied as well. A step that uses them gets an error at use, not access
/// (SECURITY.md says why they are not refused at load).
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
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:sockets/network",
    "wasi:sockets/instance-network",
    "wasi:sockets/tcp",
    "wasi:sockets/tcp-create-socket",
    "wasi:sockets/udp",
    "wasi:sockets/udp-create-socket",
    "wasi:sockets/ip-name-lookup",
];

fn forbidden_why(name: &str) -> &'static str {
    if name.starts_with("wasi:http/") {
        "a step has no network of its own; use latchkey:workflow/http"
    } else {
        "only latchkey:workflow and WASI 0.2's io, cli, clocks, random, filesystem and sockets (with nothing granted) are provided"
    }
}

/// Refuses `component` if it imports anything Latchkey does not provide.
pub(super) fn check(engine: &Engine, component: &Component) -> Result<(), LoadError> {
    for (name, _) in component.component_type().imports(engine) {
        check_name(name)?;
    }
    Ok(())
}

/// Refuses a component for its imports by reading its binary, before it is compiled:
/// compiling a large component (a JavaScript or Python interpreter, 12–18 MB) takes seconds,
/// a refusal should not. Only the outermost component's imports count (nested modules and
/// components are satisfied inside it). Bytes that do not parse are left for the compiler,
/// which names the problem.
pub(super) fn check_binary(bytes: &[u8]) -> Result<(), LoadError> {
    let mut depth = 0usize;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let Ok(payload) = payload else {
            return Ok(());
        };
        match payload {
            wasmparser::Payload::Version { .. } => depth += 1,
            wasmparser::Payload::End(_) => depth = depth.saturating_sub(1),
            wasmparser::Payload::ComponentImportSection(section) if depth == 1 => {
                for import in section {
                    let Ok(import) = import else {
                        return Ok(());
                    };
                    check_name(import.name.name)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), LoadError> {
    let interface = name.split('@').next().unwrap_or(name);
    if ALLOWED_IMPORTS.contains(&interface) {
        Ok(())
    } else {
        Err(LoadError::ForbiddenImport {
            import: name.to_owned(),
            why: forbidden_why(name),
        })
    }
}
