//! Per-run host state: what every store of a runtime shares, and the shell one run holds:
//! WASI, the resource table, the memory limiter and the run's context, around the state
//! of each Latchkey interface (kept with its host module), plus the audit helpers those
//! hosts share.

use super::{Limits, MemoryLimiter};
use crate::audit::{self, AuditEvent, AuditRecord};
use crate::credentials::CredentialsState;
use crate::guest_log::LogState;
use crate::http::HttpState;
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
    /// For requests that may reach public addresses and the operator's grants, and for
    /// requests whose every credential's binding allows internal destinations.
    pub clients: crate::http::Clients,
    pub limits: Limits,
    pub address_policy: AddressPolicy,
    pub durability: super::Durability,
    /// Access tokens of `oauth2` credentials: one refresh at a time per credential.
    pub tokens: crate::oauth::Tokens,
    /// Scrub matchers, by the set of values they match, shared by this runtime's runs.
    pub matchers: Arc<crate::http::matchers::Matchers>,
}

/// Per-run host state: the WASI context, the resource table holding credential handles,
/// the memory limiter, the run's context and deadline, and each interface's state.
pub(crate) struct HostState {
    wasi: WasiCtx,
    pub table: ResourceTable,
    pub limiter: MemoryLimiter,
    pub shared: Arc<Shared>,
    pub ctx: Arc<RunContext>,
    /// When the run's deadline passes; host-side work checks it too.
    pub deadline_at: Instant,
    /// `latchkey:workflow/credentials`: handles, gets, credentials used.
    pub credentials: CredentialsState,
    /// `latchkey:workflow/http`: fetches, and the values injected (for scrubbing).
    pub http: HttpState,
    /// `latchkey:workflow/log`: the lines kept.
    pub log: LogState,
    /// Refusals audited so far, the first [`REPORTED_REFUSALS`](super::REPORTED_REFUSALS).
    refused: std::sync::Mutex<Vec<super::Refusal>>,
}

impl HostState {
    /// The state of a fresh run of the step in `ctx`: WASI with nothing granted (no
    /// network, an empty environment, only argv[0], the step name).
    ///
    /// Components may import `wasi:filesystem` and `wasi:sockets` (see `imports`): this is
    /// what makes that safe. No directory is ever preopened, so no file descriptor exists;
    /// TCP, UDP and name lookups are disabled, and every socket address is denied besides.
    pub fn new(shared: Arc<Shared>, ctx: &RunContext, deadline_at: Instant) -> Self {
        let wasi = WasiCtx::builder()
            .args(&[ctx.step.name.as_str()])
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .build();
        let matchers = shared.matchers.clone();
        HostState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(shared.limits.memory_bytes),
            shared,
            ctx: Arc::new(ctx.clone()),
            deadline_at,
            credentials: CredentialsState::default(),
            http: HttpState {
                injected: crate::http::injected::Injected::sharing(matchers),
                ..HttpState::default()
            },
            log: LogState::default(),
            refused: Default::default(),
        }
    }

    /// The refusals this run audited, for its report.
    pub fn take_refusals(&self) -> Vec<super::Refusal> {
        std::mem::take(&mut *self.refused.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn limits(&self) -> &Limits {
        &self.shared.limits
    }

    /// What the run has done so far.
    pub fn counts(&self) -> super::RunCounts {
        super::RunCounts {
            fetches: self.http.fetches,
            injections: self.http.injections,
            refusals: super::Refusals {
                missing_credential: self.credentials.missing,
                ..self.http.refused
            },
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

    /// Appends the audit record of a refusal (`event` is `resolve-denied` or
    /// `inject-denied`) and keeps it for the run's report: the operator's wording
    /// (`outcome`, in the audit trail) and the words the guest itself was given (`shown`,
    /// all that a run's report tells its caller: a runner must learn no more of a binding
    /// than the step did).
    #[allow(clippy::too_many_arguments)]
    pub fn audit_refusal(
        &self,
        event: AuditEvent,
        key: &CredentialKey,
        resolved: Option<&Resolved>,
        destination: Option<String>,
        location: Option<String>,
        outcome: String,
        shown: &str,
    ) {
        {
            let mut refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
            if refused.len() < super::REPORTED_REFUSALS {
                refused.push(super::Refusal {
                    key: key.to_string(),
                    reason: outcome.clone(),
                    shown: shown.to_owned(),
                });
            }
        }
        self.audit(event, key, resolved, destination, location, outcome);
    }

    /// Appends `records` before a request leaves: when this returns they survive the host
    /// being killed, and with [`Durability::Strict`](super::Durability::Strict) a power
    /// failure too (one sync for all of them). The caller fails closed on an error.
    pub fn audit_before_send(
        &self,
        records: impl IntoIterator<Item = AuditRecord>,
    ) -> Result<(), audit::AuditError> {
        for r in records {
            audit::append(&self.shared.store, &r)?;
        }
        if self.shared.durability == super::Durability::Strict {
            audit::flush(&self.shared.store)?;
        }
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
