//! The WIT `credentials` interface: opaque handles in the instance's resource table.
//!
//! A handle records only the key. Each use re-resolves it for the step (allowlist, tiers,
//! integration) and decrypts afresh, so rotation and deletion take effect on the next call.
//!
//! `host.rs` implements the interface; this file holds its per-run state and wires it
//! into a linker.

mod host;

use crate::bindings::wit_credentials;
use crate::resolve::{Resolved, Tier};
use crate::sandbox::HostState;
use crate::secret::CredentialKey;
use wasmtime::component::{HasSelf, Linker};

/// What a guest's `credential` resource stands for on the host. Carries no value.
#[derive(Debug)]
pub struct CredentialHandle {
    pub(crate) key: CredentialKey,
}

/// A credential a run used, for reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialUse {
    /// Key.
    pub key: String,
    /// Tier it resolved from.
    pub tier: Tier,
    /// Scope it resolved from.
    pub scope: String,
}

/// Per-run state of the `credentials` interface.
#[derive(Default)]
pub(crate) struct CredentialsState {
    /// Handles the instance holds now (capped by `max_handles`).
    pub live_handles: u32,
    /// `credentials.get` calls so far (capped by `max_credential_gets`).
    pub gets: u32,
    /// Credentials resolved, in order of first use.
    pub used: Vec<CredentialUse>,
    /// `credentials.get` calls answered `missing-credential`.
    pub missing: u64,
}

impl CredentialsState {
    /// Notes that `key` resolved to `r`, once per key.
    pub fn note_resolved(&mut self, key: &CredentialKey, r: &Resolved) {
        if !self.used.iter().any(|u| u.key == key.as_str()) {
            self.used.push(CredentialUse {
                key: key.to_string(),
                tier: r.tier,
                scope: r.meta.scope.to_string(),
            });
        }
    }
}

/// Adds `latchkey:workflow/credentials` to `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wit_credentials::add_to_linker::<_, HasSelf<HostState>>(linker, |s| s)
}
