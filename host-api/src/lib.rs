//! Latchkey host: run WebAssembly workflow steps that can *use* credentials but never
//! *read* them.
//!
//! Embedders (the `latchkey` command, a server, a platform) use one type, [`Latchkey`]:
//! it opens the sealed store, runs steps and workflows, checks them, manages secrets
//! write-only and queries the audit trail. Every management call names the acting
//! [`Principal`]; its [`Role`] is checked in one place, and no role can read a value.
//!
//! ```
//! use latchkey_host::{AuditQuery, Latchkey, Options, Principal, Role};
//! use latchkey_host::audit::AuditEvent;
//! use latchkey_host::policy::{BindingSpec, HostPattern, InjectLocation};
//! use latchkey_host::secret::{CredentialKey, SecretValue};
//! use latchkey_host::store::{MasterKey, Scope, SecretSpec};
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
//! use latchkey_host::{Latchkey, Options};
//! use latchkey_host::store::MasterKey;
//! use latchkey_host::workflow::{RunRequest, Workflow};
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
//! The parts, for embedders who need them:
//!
//! - [`store`]: the sealed secret store (AES-256-GCM, sled by default), write-only.
//! - [`policy`]: pure rules: credential bindings (hosts, locations) and address checks.
//! - [`resolve`]: which stored secret a step gets for a key (tiers, scopes, allowlists).
//! - [`workflow`]: manifests, running their steps in order, checking them.
//! - [`sandbox`]: the wasmtime engine, limits, and running a component.
//! - [`audit`]: the append-only trail of credential use (never values).
//! - [`cache`]: compiled components on disk, so a step is compiled once.
//! - [`principal`]: who acts and what their role allows; [`tokens`]: how they prove it.
#![deny(missing_docs)]

pub mod audit;
mod bindings;
pub mod cache;
mod credentials;
mod guest_log;
mod http;
mod latchkey;
mod oauth;
pub mod policy;
pub mod principal;
mod registry;
pub mod resolve;
mod runs;
pub mod sandbox;
pub mod secret;
pub mod signer;
pub mod store;
pub mod tokens;
pub mod transit;
mod wit_v1;
pub mod workflow;

pub use latchkey::{
    AuditPage, AuditQuery, Compiled, Error, LastUse, Latchkey, Options, Refusal,
    RegisteredWorkflow, RunChoices, RunEnded, RunObserver, RunSpec, RunTarget, StartedRun,
};
pub use principal::{Action, Principal, Role};
pub use registry::{ComponentInfo, ComponentSpec, WorkflowInfo, digest_of};
pub use runs::{
    CredentialRecord, LogRecord, RefusalRecord, RunKind, RunLimits, RunOutput, RunRecord,
    RunStatus, StepRecord,
};
