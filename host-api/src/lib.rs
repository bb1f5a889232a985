//! Latchkey host: run WebAssembly workflow steps that can *use* credentials but never
//! *read* them.
//!
//! - [`store`]: the sealed secret store (AES-256-GCM, sled by default), write-only.
//! - [`policy`]: pure rules: credential bindings (hosts, locations) and address checks.
//! - [`resolve`]: which stored secret a step gets for a key (tiers, scopes, allowlists).
//! - [`sandbox`]: the wasmtime engine, limits, and running a component.
//! - [`audit`]: the append-only trail of credential use (never values).
//! - [`cache`]: compiled components on disk, so a step is compiled once.
//!
//! ```no_run
//! use latchkey_host::{resolve::RunContext, sandbox::{Runtime, RuntimeConfig}};
//! use latchkey_host::store::{MasterKey, SecretStore};
//! use std::sync::Arc;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let master = MasterKey::from_bytes(std::fs::read("master.key")?.as_slice())?;
//! let store = Arc::new(SecretStore::open("store".as_ref(), &master)?);
//! let runtime = Runtime::new(RuntimeConfig::default(), store)?;
//! let step = runtime.load(&std::fs::read("slack_post.wasm")?)?;
//! let ctx = RunContext::single_step("default", "slack-post", "alice");
//! let outcome = runtime.run(&step, &ctx, r##"{"channel":"#general","text":"hi"}"##).await?;
//! println!("{}", outcome.output);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod audit;
mod bindings;
pub mod cache;
mod credentials;
mod guest_log;
mod http;
mod latchkey;
pub mod policy;
pub mod principal;
pub mod resolve;
pub mod sandbox;
pub mod secret;
pub mod store;
pub mod workflow;

pub use latchkey::{AuditPage, AuditQuery, Compiled, Error, Latchkey, Options, Refusal};
pub use principal::{Action, Principal, Role};
