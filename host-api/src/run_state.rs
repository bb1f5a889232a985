//! What one run's interface hosts share, and what every run of a runtime shares: the
//! run's context, deadline and refusals, the audit helpers, the store, the HTTP clients
//! and the limits. Each WIT interface's host (`credentials`, `http`, `guest_log`) works on
//! a view of its own state plus this, so none of them depends on the sandbox that holds
//! them all (`sandbox::state::HostState`).

use crate::audit::{self, AuditEvent, AuditRecord};
use crate::limits::{Durability, Limits};
use crate::policy::AddressPolicy;
use crate::resolve::{Resolved, RunContext};
use crate::secret::CredentialKey;
use crate::store::SecretStore;
use std::sync::Arc;
use std::time::Instant;

/// What a run's guest was refused, by the kind of error it was given: a bounded set of
/// reasons, for metrics and reports (the reasons' texts are in the audit trail).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refusals {
    /// `credentials.get` answered `missing-credential` (no such key for the step, not on an
    /// allowlist, wrong integration type).
    pub missing_credential: u64,
    /// `http.fetch` answered `denied` (a credential outside its binding, a refused address).
    pub denied: u64,
    /// `http.fetch` answered `invalid-request`.
    pub invalid_request: u64,
    /// `http.fetch` answered `limit-exceeded`.
    pub limit_exceeded: u64,
}

impl Refusals {
    /// Each reason with its count, named as the WIT error is.
    pub fn by_reason(&self) -> [(&'static str, u64); 4] {
        [
            ("missing-credential", self.missing_credential),
            ("denied", self.denied),
            ("invalid-request", self.invalid_request),
            ("limit-exceeded", self.limit_exceeded),
        ]
    }
}

/// A credential refused to a step: the key and the reason, as its audit record says it
/// (never a value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The key.
    pub key: String,
    /// Why, as the audit trail recorded it (the operator's wording, which can name the
    /// binding's hosts, methods and paths).
    pub reason: String,
    /// Why, in the words the step was given (all a run's caller is told).
    pub shown: String,
}

/// Refusals a run keeps for its report, the first ones: [`RunCounts::refusals`] counts
/// them all, and the audit trail holds each one.
pub const REPORTED_REFUSALS: usize = 64;

/// What a run did, whether or not it succeeded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunCounts {
    /// Fetches the guest asked for (refused ones included).
    pub fetches: u32,
    /// Credential values sent: one per credential per request that left.
    pub injections: u64,
    /// What the guest was refused.
    pub refusals: Refusals,
}

/// What every store of a runtime shares.
pub(crate) struct Shared {
    pub store: Arc<SecretStore>,
    /// For requests that may reach public addresses and the operator's grants, and for
    /// requests whose every credential's binding allows internal destinations.
    pub clients: crate::http::clients::Clients,
    pub limits: Limits,
    pub address_policy: AddressPolicy,
    pub durability: Durability,
    /// Access tokens of `oauth2` credentials: one refresh at a time per credential.
    pub tokens: crate::oauth::Tokens,
    /// Scrub matchers, by the set of values they match, shared by this runtime's runs.
    pub matchers: Arc<crate::http::matchers::Matchers>,
}

/// One run as its interface hosts see it: the context, the deadline, the refusals audited
/// so far (the first [`REPORTED_REFUSALS`]), and the audit helpers.
pub(crate) struct RunState {
    pub shared: Arc<Shared>,
    pub ctx: Arc<RunContext>,
    /// When the run's deadline passes; host-side work checks it too.
    pub deadline_at: Instant,
    refused: std::sync::Mutex<Vec<Refusal>>,
}

impl RunState {
    pub fn new(shared: Arc<Shared>, ctx: &RunContext, deadline_at: Instant) -> Self {
        RunState {
            shared,
            ctx: Arc::new(ctx.clone()),
            deadline_at,
            refused: Default::default(),
        }
    }

    /// The refusals this run audited, for its report.
    pub fn take_refusals(&self) -> Vec<Refusal> {
        std::mem::take(&mut *self.refused.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn limits(&self) -> &Limits {
        &self.shared.limits
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
            if refused.len() < REPORTED_REFUSALS {
                refused.push(Refusal {
                    key: key.to_string(),
                    reason: outcome.clone(),
                    shown: shown.to_owned(),
                });
            }
        }
        self.audit(event, key, resolved, destination, location, outcome);
    }

    /// Appends `records` before a request leaves: when this returns they survive the host
    /// being killed, and with [`Durability::Strict`](Durability::Strict) a power
    /// failure too (one sync for all of them). The caller fails closed on an error.
    pub fn audit_before_send(
        &self,
        records: impl IntoIterator<Item = AuditRecord>,
    ) -> Result<(), audit::AuditError> {
        for r in records {
            audit::append(&self.shared.store, &r)?;
        }
        if self.shared.durability == Durability::Strict {
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
