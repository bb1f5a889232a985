//! Per-run host state: what every store of a runtime shares, and what one run holds.

use super::{CredentialUse, GuestLogLine, Limits, MemoryLimiter};
use crate::audit::{self, AuditEvent, AuditRecord};
use crate::http::injected::Injected;
use crate::policy::AddressPolicy;
use crate::resolve::{Resolved, RunContext};
use crate::secret::CredentialKey;
use crate::store::SecretStore;
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// What every store of a runtime shares.
pub(crate) struct Shared {
    pub store: Arc<SecretStore>,
    /// For requests that may reach public addresses and the operator's grants.
    pub client: reqwest::Client,
    /// For requests whose every credential's binding allows internal destinations.
    pub internal_client: reqwest::Client,
    pub limits: Limits,
    pub address_policy: AddressPolicy,
}

/// Per-run host state: the WASI context, the resource table holding credential handles,
/// counters, and what the run injected (for scrubbing).
pub(crate) struct HostState {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limiter: MemoryLimiter,
    pub shared: Arc<Shared>,
    pub ctx: Arc<RunContext>,
    pub live_handles: u32,
    /// `credentials.get` calls so far (capped by `max_credential_gets`).
    pub credential_gets: u32,
    pub fetches: u32,
    /// When the run's deadline passes; host-side work checks it too.
    pub deadline_at: Instant,
    /// Values injected so far, for scrubbing.
    pub injected: Injected,
    pub logs: Vec<GuestLogLine>,
    /// Bytes of the kept log lines (capped by `max_log_bytes`).
    pub log_bytes: usize,
    pub logs_dropped: usize,
    pub used: Vec<CredentialUse>,
}

impl HostState {
    pub fn limits(&self) -> &Limits {
        &self.shared.limits
    }

    pub fn note_resolved(&mut self, key: &CredentialKey, r: &Resolved) {
        if !self.used.iter().any(|u| u.key == key.as_str()) {
            self.used.push(CredentialUse {
                key: key.to_string(),
                tier: r.tier,
                scope: r.meta.scope.to_string(),
            });
        }
    }

    /// Appends an audit record. A failing audit write fails loudly in the operator's log;
    /// it must not become a guest-visible difference.
    pub fn audit(
        &self,
        event: AuditEvent,
        key: &CredentialKey,
        resolved: Option<&Resolved>,
        destination: Option<String>,
        location: Option<String>,
        outcome: String,
    ) {
        let record = self.record(event, key, resolved, destination, location, outcome);
        if let Err(e) = audit::append(&self.shared.store, &record) {
            tracing::error!(error = %e, "could not append an audit record");
        }
    }

    /// Appends `records` and makes them durable with one flush before returning; the caller
    /// fails closed on an error.
    pub fn audit_durable(
        &self,
        records: impl IntoIterator<Item = AuditRecord>,
    ) -> Result<(), audit::AuditError> {
        for r in records {
            audit::append(&self.shared.store, &r)?;
        }
        audit::flush(&self.shared.store)?;
        Ok(())
    }

    /// The audit record of `event` in this run.
    pub fn record(
        &self,
        event: AuditEvent,
        key: &CredentialKey,
        resolved: Option<&Resolved>,
        destination: Option<String>,
        location: Option<String>,
        outcome: String,
    ) -> AuditRecord {
        AuditRecord {
            time_ms: crate::store::unix_millis(),
            run_id: self.ctx.run_id.clone(),
            workspace: self.ctx.workspace.clone(),
            workflow: self.ctx.workflow.clone(),
            step: self.ctx.step.name.clone(),
            user: self.ctx.user.clone(),
            event,
            key: key.to_string(),
            scope: resolved.map(|r| r.meta.scope.to_string()),
            version: resolved.map(|r| r.meta.version),
            destination,
            location,
            outcome,
            actor: None,
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
