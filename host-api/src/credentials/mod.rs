//! The WIT `credentials` interface: opaque handles in the instance's resource table.
//!
//! A handle records only the key. Each use re-resolves it for the step (allowlist, tiers,
//! integration) and decrypts afresh, so rotation and deletion take effect on the next call.
//!
//! `host.rs` implements the interface; this file holds its per-run state and wires it
//! into a linker.

mod host;

use crate::bindings::wit_credentials;
use crate::guest_log::LogState;
use crate::resolve::{Resolved, Tier};
use crate::run_state::RunState;
use crate::secret::CredentialKey;
use wasmtime::component::{HasData, Linker, ResourceTable};

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

/// What the `credentials` host works on: its per-run state, the resource table holding handles and the log (a refused get is logged), and the run through `Deref`.
pub(crate) struct CredentialsView<'a> {
    pub run: &'a RunState,
    pub credentials: &'a mut CredentialsState,
    pub table: &'a mut ResourceTable,
    pub log: &'a mut LogState,
}

impl std::ops::Deref for CredentialsView<'_> {
    type Target = RunState;
    fn deref(&self) -> &RunState {
        self.run
    }
}

/// The `HasData` of `credentials`: its host is a [`CredentialsView`].
pub(crate) struct CredentialsHost;

impl HasData for CredentialsHost {
    type Data<'a> = CredentialsView<'a>;
}

/// Adds `latchkey:workflow/credentials` to `linker`, its host being the view `view` gives.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> CredentialsView<'_>,
) -> wasmtime::Result<()> {
    wit_credentials::add_to_linker::<T, CredentialsHost>(linker, view)
}
