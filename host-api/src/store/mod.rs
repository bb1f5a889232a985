//! The encrypted secret store.
//!
//! Layers, bottom up:
//! - [`Backend`]: raw bytes by id. Holds only ciphertext and metadata; [`SledBackend`] is
//!   the embedded default (its audit trail in an append-only [`log`] file beside sled);
//!   [`PostgresBackend`] lets several hosts share one store ([`Location`] says which).
//! - [`seal`]: AES-256-GCM. A random data key (DEK) seals every record; the operator's
//!   master key wraps the DEK. The wrapped DEK doubles as the check record, so a wrong
//!   master key is detected when the store is opened, not at first use.
//! - [`record`]: the record format. The AAD of each sealed value is the record's exact
//!   metadata bytes (scope, key, version, binding, integration, authors), so a ciphertext
//!   moved to another record, rolled back under newer metadata, or a binding edited on
//!   disk fails to open. [`meta_cache`] keeps the parse of recently read metadata.
//! - [`retired`]: a static value rotated away, kept sealed for a grace period as a scrub
//!   pattern only (never injected).
//! - [`SecretStore`]: the write-only API the CLI and the runtime use.

mod absent;
mod group_flush;
mod journal;
mod backend;
mod deferred;
mod key_provider;
mod location;
pub mod log;
mod meta_cache;
pub(crate) mod namespaces;
mod oauth;
pub mod postgres;
pub mod quota;
mod record;
mod retired;
mod scope;
pub mod seal;
mod secret_store;
mod sled_store;

pub use backend::{
    Backend, BackendError, Expected, PermissionError, Records, check_private_dir,
    check_private_file, create_private_dir,
};
pub use sled_store::SledBackend;
// What the project's own tests reach besides what the crate's root exports.
#[cfg(any(test, feature = "testing"))]
pub use backend::{AppendBuilder, MemoryBackend, Record, effective_uid};
#[cfg(any(test, feature = "testing"))]
pub use key_provider::TRANSIT_MAGIC;
#[cfg(any(test, feature = "testing"))]
pub use secret_store::OAUTH_ACTOR;
pub use key_provider::{KeyWrapper, TransitKey, WrapError};
pub use location::Location;
pub(crate) use oauth::CachedToken;
pub use postgres::PostgresBackend;
pub use quota::QuotaRefusal;
pub use record::{CredentialKind, RecordError, SecretMeta, SecretSpec, valid_integration};
pub use retired::DEFAULT_ROTATION_GRACE;
pub use scope::{NameKind, Scope, ScopeError, check_name};
pub use seal::{MASTER_KEY_BYTES, MasterKey};
pub use secret_store::{CopyReport, SecretStore, StoreError, VerifyReport};

/// Milliseconds since the Unix epoch (the clock records are stamped with).
pub fn unix_millis() -> u64 {
    secret_store::now_ms()
}
