//! Latchkey host: run WebAssembly workflow steps that can *use* credentials but never
//! *read* them.
//!
//! Embedders (the `latchkey` command, a server, a platform) use one type, [`Latchkey`]:
//! it opens the sealed store, runs steps and workflows, checks them, manages secrets
//! write-only and queries the audit trail. Every management call names the acting
//! [`Principal`]; its [`Role`] is checked in one place, and no role can read a value.
//!
//! ```
//! use latchkey_host::{AuditEvent, AuditQuery, BindingSpec, CredentialKey, HostPattern};
//! use latchkey_host::{InjectLocation, Latchkey, MasterKey, Options, Principal, Role};
//! use latchkey_host::{Scope, SecretSpec, SecretValue};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let master = MasterKey::generate()?;
//! let latchkey = Latchkey::init(&dir.path().join("store"), &master, Options::default())?;
//!
//! // An admin stores a key bound to Slack's API, injected as a bearer header.
//! let admin = Principal::new("alice", Role::Admin)?;
//! let binding = BindingSpec {
//!     hosts: vec![HostPattern::parse("slack.com")?],
//!     locations: vec![InjectLocation::parse("header:Authorization")?],
//!     ..BindingSpec::default()
//! }
//! .build()?;
//! let key = CredentialKey::new("SLACK_TOKEN")?;
//! let scope = Scope::parse("workspace:acme")?;
//! let value = SecretValue::new(b"xoxb-7f3a9c2e51d84b06a1e5".to_vec())?;
//! let spec = SecretSpec { integration: "slack".into(), binding, allow_weak_value: false, quota: Default::default(), kind: Default::default(), oauth: None };
//! let meta = latchkey.set_secret(&admin, &scope, &key, value, spec)?;
//! assert_eq!(meta.version, 1);
//!
//! // A member sees metadata, never a value, and may not change anything.
//! let bob = Principal::new("bob", Role::Member)?;
//! let listed = latchkey.list_secrets(&bob, None)?;
//! let first = listed.into_iter().next().unwrap()?;
//! assert_eq!(first.created_by, "alice");
//! assert!(latchkey.delete_secret(&bob, &scope, &key).is_err());
//!
//! // Every change is in the audit trail, with who made it.
//! let page = latchkey.audit(&admin, &AuditQuery { key: Some("SLACK_TOKEN".into()), ..Default::default() })?;
//! assert_eq!(page.records[0].event, AuditEvent::SecretSet);
//! assert_eq!(page.records[0].actor.as_deref(), Some("alice"));
//! # Ok(()) }
//! ```
//!
//! Running a workflow (a `workflow.toml` of steps built with `latchkey-sdk`):
//!
//! ```no_run
//! use latchkey_host::{Latchkey, MasterKey, Options, RunRequest, Workflow};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let master = MasterKey::from_bytes(std::fs::read("master.key")?.as_slice())?;
//! let options = Options { cache_dir: Some("cache".into()), ..Options::default() };
//! let latchkey = Latchkey::open("store".as_ref(), &master, options)?;
//! let workflow = Workflow::load("workflow.toml".as_ref())?;
//! let steps = latchkey.load_workflow(&workflow)?; // every step compiled before any runs
//! let request = RunRequest::new("alice", r##"{"channel":"#general"}"##);
//! let operator = latchkey_host::Principal::new("alice", latchkey_host::Role::Admin)?;
//! let run = latchkey.run_workflow(&operator, &workflow, &steps, &request, |step| {
//!     println!("{}: {}", step.name, if step.result.is_ok() { "ok" } else { "failed" });
//! }).await?;
//! println!("{}", run.output().unwrap_or("(failed)"));
//! # Ok(()) }
//! ```
//!
//! Everything an embedder names is re-exported here, at the crate's root: the façade, the
//! acting principal and its roles, keys and values, specs and limits, reports and errors.
//! The modules behind them (the sandbox, the store and its backends, resolution, the
//! compile cache, …) are private, so that no caller can go around [`Latchkey`]'s role
//! checks; the `testing` feature opens them to the project's own tests and benchmarks.
#![deny(missing_docs)]
// Every type a public signature mentions is exported at the root (checked without `testing`).
#![warn(unnameable_types)]

/// Declares modules that are private to the crate, or public with the `testing` feature
/// (the project's tests and benchmarks reach into the engine; embedders may not).
macro_rules! engine_modules {
    ($($name:ident),* $(,)?) => {$(
        #[cfg(feature = "testing")]
        pub mod $name;
        #[cfg(not(feature = "testing"))]
        mod $name;
    )*};
}

engine_modules!(
    audit, cache, policy, principal, resolve, sandbox, secret, signer, store, tokens, transit,
    workflow,
);
mod bindings;
mod credentials;
mod guest_log;
mod http;
mod input_schema;
mod latchkey;
mod limits;
#[cfg(test)]
mod module_graph;
mod oauth;
mod registry;
mod run_state;
mod runs;
mod scripts;
mod wasmtime_error;
mod wit_v1;

// The façade and what its operations take and return.
pub use latchkey::{
    AuditPage, AuditQuery, CheckReport, Compiled, Error, KeyCheck, LastUse, Latchkey, Options,
    Refusal, RegisteredWorkflow, RunChoices, RunEnded, RunObserver, RunRequest, RunSpec, RunTarget,
    StartedRun, StepCheck, StepReport, WorkflowRun,
};
pub use registry::{ComponentInfo, ComponentSpec, WorkflowInfo, digest_of};
pub use runs::{
    CredentialRecord, LogRecord, RefusalRecord, RunKind, RunLimits, RunOutput, RunRecord,
    RunStatus, StepRecord,
};
pub use scripts::{ScriptError, ScriptOptions, ScriptPolicy, ScriptSpec};

// Who acts, and how they prove it.
pub use principal::{Action, Principal, Role};
pub use tokens::{Token, TokenError, TokenMeta};

// Keys, values and where they are kept.
pub use secret::{CredentialKey, KeyError, MAX_VALUE_BYTES, SecretValue, ValueError};
pub use store::seal::{MasterKeyError, SealError};
pub use store::{
    BackendError, CopyReport, CredentialKind, DEFAULT_ROTATION_GRACE, KeyWrapper, Location,
    MASTER_KEY_BYTES, MasterKey, NameKind, PermissionError, RecordError, Scope, ScopeError,
    SecretMeta, SecretSpec, StoreError, TransitKey, VerifyReport as StoreVerifyReport, WrapError,
    check_name, check_private_file, create_private_dir,
};
pub use transit::{TransitError, seal as seal_for_transit};

// How a credential may be used: bindings, grants, quotas, signing.
pub use policy::quota::{QuotaError, Window as QuotaWindow};
pub use policy::strength::WeakValue;
pub use policy::{
    AddressPolicy, AwsSigner, Binding, BindingError, BindingSpec, DEFAULT_JWT_TTL_SECS,
    Destination, Grant, GrantError, HostPattern, InjectLocation, JwtClaims, MAX_GRANTS,
    MAX_JWT_TTL_SECS, METHODS, PatternError, Quota, RequestRefusal, SignerError, SignerParams,
    TokenEndpoint, TokenEndpointError,
};
pub use signer::KeyError as SigningKeyError;

// Running steps and workflows, and what a run reports.
pub use cache::{CacheError, CacheStatus};
pub use resolve::{ResolveError, Resolved, RunContext, StepPolicy, Tier};
pub use sandbox::{
    CredentialUse, Durability, GuestLogLine, Limits, LoadError, REPORTED_REFUSALS, Refusals,
    RunCounts, RunError, RunFailure, RunOutcome, RuntimeConfig, RuntimeError, Step, WasmtimeError,
    visible,
};
pub use workflow::{ManifestError, StepSpec, Workflow};

// The audit trail.
pub use audit::{
    AuditError, AuditEvent, AuditRecord, Finding, Head, Problem as AuditProblem,
    VerifyReport as AuditVerifyReport,
};
