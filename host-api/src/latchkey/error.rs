//! Why a [`super::Latchkey`] operation failed. Never contains a secret value.

use crate::cache::CacheError;
use crate::principal::{Action, Role};
use crate::sandbox::{LoadError, RuntimeError};
use crate::store::{BackendError, ScopeError, StoreError};
use crate::workflow::ManifestError;
use std::path::PathBuf;

/// Why an operation failed, with its cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store could not be created or opened.
    #[error("opening the store at {store}")]
    Open {
        /// Store directory, or database URL without its password.
        store: String,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// The runtime (engine, HTTP clients) could not start.
    #[error("starting the runtime")]
    Start(#[source] RuntimeError),
    /// A file could not be read.
    #[error("reading {what} {}", path.display())]
    Read {
        /// What the file is (`the step`, …).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A component file could not be loaded.
    #[error("loading the step {}", path.display())]
    Load {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<Error>,
    },
    /// A step of a workflow could not be loaded.
    #[error("loading the component of step {step}")]
    Step {
        /// The step's name.
        step: String,
        /// Why.
        #[source]
        source: Box<Error>,
    },
    /// A component was refused.
    #[error(transparent)]
    Component(#[from] LoadError),
    /// `compile` without a cache directory.
    #[error("no compiled-component cache is configured")]
    NoCache,
    /// `compile` of bytes that are not WebAssembly.
    #[error("not a WebAssembly component")]
    NotAComponent,
    /// The compiled-component cache failed.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// A workflow manifest was refused.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The principal's role does not allow the action.
    #[error("{principal} has the {role} role, which does not allow {action}")]
    Forbidden {
        /// Who asked.
        principal: String,
        /// Their role.
        role: Role,
        /// What they asked for.
        action: Action,
    },
    /// A name (scope, user) was refused.
    #[error(transparent)]
    Name(#[from] ScopeError),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The audit trail could not be read.
    #[error("reading the audit trail")]
    Audit(#[source] BackendError),
    /// A token was refused, or a token operation failed.
    #[error(transparent)]
    Token(#[from] crate::tokens::TokenError),
    /// What was asked for does not exist (or is not the caller's to see): a run, a
    /// registered component or workflow.
    #[error("{0}")]
    NotFound(String),
    /// The request was refused as given; the message names what was wrong.
    #[error("{0}")]
    Invalid(String),
    /// This host has as many runs as it takes; the message says so.
    #[error("{0}")]
    Busy(String),
    /// An agent-written script was not run: off, a key it may not ask for, no toolchain
    /// on this host, or its build failed.
    #[error(transparent)]
    Script(#[from] crate::scripts::ScriptError),
    /// The threads runs execute on could not start.
    #[error("starting the run pool")]
    RunPool(#[source] std::io::Error),
    /// The store failed reading or writing the platform's records (registrations, runs).
    #[error("the store failed")]
    Backend(#[from] BackendError),
    /// Re-wrapping the store needs the store to itself, but steps are loaded.
    #[error("the store is in use by the runtime; rotate the master key before running steps")]
    InUse,
}
