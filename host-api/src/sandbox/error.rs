//! Why a runtime could not start, a component could not load, or a run failed.

use super::{CredentialUse, GuestLogLine};
pub use crate::wasmtime_error::WasmtimeError;
use std::time::Duration;

/// Why the runtime could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// wasmtime refused the configuration.
    #[error("could not create the WebAssembly engine: {0}")]
    Engine(#[source] WasmtimeError),
    /// The thread that advances the engine's epoch (the deadline's clock) did not start.
    #[error("could not create the WebAssembly engine: could not start the epoch thread: {0}")]
    EpochThread(#[source] std::io::Error),
    /// Linking the host interfaces failed.
    #[error("could not link the host interfaces: {0}")]
    Link(#[source] WasmtimeError),
}

/// Why a component could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// Not a valid WebAssembly component: not WebAssembly at all, refused by wasmtime,
    /// or (through the cache) not compiled for another reason; the cause says which.
    #[error("not a valid WebAssembly component: {0:#}")]
    Invalid(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The component imports something Latchkey does not provide.
    #[error("the component imports {import}, which Latchkey does not provide: {why}")]
    ForbiddenImport {
        /// The import's name.
        import: String,
        /// Why it is refused.
        why: &'static str,
    },
    /// The component does not export the `run` function of world `latchkey:workflow/workflow`.
    #[error("the component is not a Latchkey workflow step: {0:#}")]
    NotAWorkflow(#[source] WasmtimeError),
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The guest returned `err(message)`.
    #[error("the step failed: {0}")]
    Guest(String),
    /// The guest trapped: the message says why (limit, panic, bad handle…).
    #[error("the step trapped: {0}")]
    Trap(String),
    /// The run exceeded its wall-clock deadline.
    #[error("the step exceeded its deadline of {0:?}")]
    Deadline(Duration),
    /// The step's output is over the limit.
    #[error("the step's output is {len} bytes; the limit is {limit}")]
    OutputTooLarge {
        /// Output size.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The step's output or error message could not be checked for credential values
    /// before the deadline (plus [`TEXT_SCRUB_GRACE`](super::TEXT_SCRUB_GRACE)); it is withheld.
    #[error("the step's {0} could not be checked for credential values in time and was withheld")]
    Unchecked(&'static str),
    /// Instantiation failed (e.g. the instance pool is exhausted).
    #[error("could not start the step: {0:#}")]
    Instantiate(#[source] WasmtimeError),
}

/// A failed run: why, and what the guest logged before it failed (a panic message, say).
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct RunFailure {
    /// Why the run failed.
    #[source]
    pub error: RunError,
    /// Guest log lines captured before the failure, secrets masked.
    pub logs: Vec<GuestLogLine>,
    /// Credentials resolved before the failure.
    pub credentials: Vec<CredentialUse>,
    /// Fetches, injections and refusals before the failure.
    pub counts: super::RunCounts,
    /// The credentials refused to the step, in order (the first
    /// [`REPORTED_REFUSALS`](super::REPORTED_REFUSALS)): what explains the failure, kept by
    /// the run as it wrote them to the audit trail, so that no failure reads the trail.
    pub refusals: Vec<super::Refusal>,
}
