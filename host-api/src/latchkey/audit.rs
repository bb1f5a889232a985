//! Reading the audit trail through the façade: filtered queries, and why credentials were
//! refused to a step (what an operator needs to fix a `missing_credential`).

use super::{Error, Latchkey};
use crate::audit::{self, AuditEvent, AuditRecord, VerifyReport};
use crate::principal::{Action, Principal};
use std::collections::HashMap;

/// Which audit records to return; every field left `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only records of this run.
    pub run: Option<String>,
    /// Only records of this credential key.
    pub key: Option<String>,
    /// Only records where this name acted (`actor`) or ran (`user`).
    pub principal: Option<String>,
    /// Only records at or after this time (Unix milliseconds).
    pub since_ms: Option<u64>,
    /// Only records before this time (Unix milliseconds).
    pub until_ms: Option<u64>,
}

impl AuditQuery {
    /// Whether `r` matches.
    pub fn matches(&self, r: &AuditRecord) -> bool {
        self.run.as_ref().is_none_or(|run| &r.run_id == run)
            && self.key.as_ref().is_none_or(|k| &r.key == k)
            && self
                .principal
                .as_ref()
                .is_none_or(|p| r.actor.as_ref() == Some(p) || &r.user == p)
            && self.since_ms.is_none_or(|t| r.time_ms >= t)
            && self.until_ms.is_none_or(|t| r.time_ms < t)
    }
}

/// The records a query selected, oldest first.
#[derive(Debug, Clone)]
pub struct AuditPage {
    /// Matching records.
    pub records: Vec<AuditRecord>,
    /// Records that could not be read at all (counted, whatever the query).
    pub unreadable: usize,
}

/// The last time a secret's value was sent (an injection record), and by which run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LastUse {
    /// Unix milliseconds.
    pub time_ms: u64,
    /// The run.
    pub run_id: String,
    /// Its workflow.
    pub workflow: String,
    /// The step.
    pub step: String,
    /// Who ran it.
    pub user: String,
}

impl LastUse {
    fn of(r: AuditRecord) -> Self {
        LastUse {
            time_ms: r.time_ms,
            run_id: r.run_id,
            workflow: r.workflow,
            step: r.step,
            user: r.user,
        }
    }
}

impl Latchkey {
    /// The audit records `query` selects.
    pub fn audit(&self, by: &Principal, query: &AuditQuery) -> Result<AuditPage, Error> {
        self.allow(by, Action::ReadAudit)?;
        let (records, unreadable) = audit::read_all(&self.store).map_err(Error::Audit)?;
        Ok(AuditPage {
            records: records.into_iter().filter(|r| query.matches(r)).collect(),
            unreadable,
        })
    }

    /// Checks the audit trail's MAC chain.
    pub fn verify_audit(&self, by: &Principal) -> Result<VerifyReport, Error> {
        self.allow(by, Action::ReadAudit)?;
        audit::verify(&self.store).map_err(Error::Audit)
    }

    /// When the secret `key` in `scope` was last injected into a request, from the audit
    /// trail; `None` if never (or if the trail cannot be read).
    pub fn last_use(
        &self,
        by: &Principal,
        scope: &crate::store::Scope,
        key: &crate::secret::CredentialKey,
    ) -> Result<Option<LastUse>, Error> {
        self.allow(by, Action::ReadMetadata)?;
        let (records, _) = audit::read_all(&self.store).map_err(Error::Audit)?;
        let scope = scope.to_string();
        Ok(records
            .into_iter()
            .rev()
            .find(|r| {
                r.event == AuditEvent::Inject
                    && r.key == key.as_str()
                    && r.scope.as_deref() == Some(scope.as_str())
            })
            .map(LastUse::of))
    }

    /// The last use of every secret that was ever injected, by (scope, key), from one
    /// read of the audit trail (a listing shows it beside each secret).
    pub fn last_uses(&self, by: &Principal) -> Result<HashMap<(String, String), LastUse>, Error> {
        self.allow(by, Action::ReadMetadata)?;
        let (records, _) = audit::read_all(&self.store).map_err(Error::Audit)?;
        let mut last = HashMap::new();
        for r in records {
            if r.event == AuditEvent::Inject
                && let Some(scope) = r.scope.clone()
            {
                // Oldest first: a later use replaces an earlier one.
                last.insert((scope, r.key.clone()), LastUse::of(r));
            }
        }
        Ok(last)
    }
}
