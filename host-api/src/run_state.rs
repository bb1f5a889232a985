//! What one run's interface hosts share, and what every run of a runtime shares: the
//! run's context, deadline and refusals, the audit helpers, the store, the HTTP clients
//! and the limits. Each WIT interface's host (`credentials`, `http`, `guest_log`) works on
//! a view of its own state plus this, so none of them depends on the sandbox that holds
//! them all (`sandbox::state::HostState`).

use crate::audit::{self, AuditEvent, AuditRecord};
use crate::limits::{Durability, Limits};
use crate::policy::AddressPolicy;
use crate::resolve::{Resolved, RunContext, Tier};
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
    /// Audit records of this run not written yet: a `credentials.get`'s `resolve` record
    /// waits for the run's next record (a fetch's `inject`, written before its request
    /// leaves), so that the two cost one write; what is still here when the run ends is
    /// written then (see [`RunState::audit_later`]).
    pending: std::sync::Mutex<Vec<AuditRecord>>,
    /// The tier each key resolved to at its last `credentials.get` in this run: where a
    /// fetch with its handle reads the key's record first ([`crate::resolve::resolve_value_at`]).
    tiers: std::sync::Mutex<Vec<(CredentialKey, Tier)>>,
}

/// The records held by [`RunState::audit_later`] are written when the run ends, on
/// every path (output, error, trap, deadline), if [`RunState::write_held`] has not.
impl Drop for RunState {
    fn drop(&mut self) {
        self.write_held();
    }
}

impl RunState {
    pub fn new(shared: Arc<Shared>, ctx: &RunContext, deadline_at: Instant) -> Self {
        RunState {
            shared,
            ctx: Arc::new(ctx.clone()),
            deadline_at,
            refused: Default::default(),
            pending: Default::default(),
            tiers: Default::default(),
        }
    }

    /// Notes the tier `key` resolved to at a `credentials.get`.
    pub fn note_tier(&self, key: &CredentialKey, tier: Tier) {
        let mut tiers = self.tiers.lock().unwrap_or_else(|p| p.into_inner());
        match tiers.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = tier,
            None => tiers.push((key.clone(), tier)),
        }
    }

    /// The tier `key` resolved to at its last `credentials.get` in this run.
    pub fn tier_of(&self, key: &CredentialKey) -> Option<Tier> {
        let tiers = self.tiers.lock().unwrap_or_else(|p| p.into_inner());
        tiers.iter().find(|(k, _)| k == key).map(|(_, t)| *t)
    }

    /// Holds `record` until the run's next audit write, or the run's end, whichever comes
    /// first. Only for records of what stays inside the host (a resolution): every record
    /// of a request is written before that request leaves, and these go with it.
    pub fn audit_later(&self, record: AuditRecord) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(record);
    }

    /// Writes the records [`Self::audit_later`] holds (a run's end does, before its
    /// strict-durability sync).
    pub fn write_held(&self) {
        let held = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        if !held.is_empty()
            && let Err(e) = audit::append_all(&self.shared.store, &held)
        {
            tracing::error!(error = %e, "could not append an audit record");
        }
    }

    /// Writes the held records, then `records`, with one write; on failure the held ones
    /// are kept for the next try.
    fn append_with_pending(&self, records: Vec<AuditRecord>) -> Result<(), audit::AuditError> {
        let held = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        if held.is_empty() {
            return audit::append_all(&self.shared.store, &records);
        }
        let n = held.len();
        let mut all = held;
        all.extend(records);
        audit::append_all(&self.shared.store, &all).inspect_err(|_| {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            let kept = std::mem::take(&mut *pending);
            pending.extend(all.into_iter().take(n));
            pending.extend(kept);
        })
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
        if let Err(e) = self.append_with_pending(vec![record]) {
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
        self.append_with_pending(records.into_iter().collect())?;
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
