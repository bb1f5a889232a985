//! wasmtime's errors as causes of ours: the runtime, the sandbox and the compile cache
//! all keep them.

use std::fmt;

/// An error from wasmtime, kept as the cause of one of ours. `wasmtime::Error` is not a
/// `std::error::Error` itself (it is built like `anyhow::Error`); this is. Shown with
/// `{:#}`, it prints wasmtime's whole chain of contexts; its [`source`] is the next one.
///
/// [`source`]: std::error::Error::source
#[derive(Debug)]
pub struct WasmtimeError(wasmtime::Error);

impl WasmtimeError {
    /// The error as wasmtime returned it (to downcast, say).
    pub fn wasmtime(&self) -> &wasmtime::Error {
        &self.0
    }
}

impl From<wasmtime::Error> for WasmtimeError {
    fn from(e: wasmtime::Error) -> Self {
        WasmtimeError(e)
    }
}

impl fmt::Display for WasmtimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for WasmtimeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}
