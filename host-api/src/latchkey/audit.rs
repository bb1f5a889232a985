//! Reading the audit trail through the façade: filtered queries, the chain's check, and
//! when each secret was last used (kept up with the trail, not read from it whole).

use super::{Error, Latchkey};
use crate::audit::{self, AuditEvent, AuditRecord, VerifyReport};
use crate::principal::{Action, Principal};
use std::collections::HashMap;
use std::sync::MutexGuard;

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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// The audit records of run `id`: the same rule as any query of the trail (a role
    /// that may read the trail may read any run's records, which never hold a value or
    /// an output), so that `?run=` and a run's own records never disagree.
    pub fn run_audit(&self, by: &Principal, id: &str) -> Result<AuditPage, Error> {
        self.audit_newest(
            by,
            &AuditQuery {
                run: Some(id.to_owned()),
                ..AuditQuery::default()
            },
            10_000,
        )
    }

    /// The newest `limit` records `query` selects, oldest first among them. The trail is
    /// read from its end a page at a time, so a query costs what it returns (and the
    /// records its filter passes over), not the length of a trail that only grows;
    /// `unreadable` counts the records read that did not decode.
    pub fn audit_newest(
        &self,
        by: &Principal,
        query: &AuditQuery,
        limit: usize,
    ) -> Result<AuditPage, Error> {
        const PAGE: usize = 512;
        self.allow(by, Action::ReadAudit)?;
        let mut records = Vec::new();
        let mut unreadable = 0;
        let mut before: Option<Vec<u8>> = None;
        while records.len() < limit {
            let page =
                audit::read_newest(&self.store, before.as_deref(), PAGE).map_err(Error::Audit)?;
            let full = page.len() == PAGE;
            for (id, record) in page {
                match record {
                    Some(r) if query.matches(&r) => records.push(r),
                    Some(_) => {}
                    None => unreadable += 1,
                }
                before = Some(id);
            }
            if !full {
                break;
            }
        }
        records.truncate(limit);
        records.reverse();
        Ok(AuditPage {
            records,
            unreadable,
        })
    }

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
    /// trail; `None` if never.
    pub fn last_use(
        &self,
        by: &Principal,
        scope: &crate::store::Scope,
        key: &crate::secret::CredentialKey,
    ) -> Result<Option<LastUse>, Error> {
        self.allow(by, Action::ReadMetadata)?;
        let index = self.last_uses_caught_up()?;
        Ok(index
            .by_secret
            .get(&(scope.to_string(), key.to_string()))
            .cloned())
    }

    /// The last use of every secret that was ever injected, by (scope, key) (a listing
    /// shows it beside each secret).
    pub fn last_uses(&self, by: &Principal) -> Result<HashMap<(String, String), LastUse>, Error> {
        self.allow(by, Action::ReadMetadata)?;
        Ok(self.last_uses_caught_up()?.by_secret.clone())
    }

    /// The index of last uses, after reading the records appended since it was last read.
    fn last_uses_caught_up(&self) -> Result<MutexGuard<'_, LastUses>, Error> {
        let mut index = self.last_uses.lock().unwrap_or_else(|p| p.into_inner());
        let (records, _, next) =
            audit::read_since(&self.store, &index.cursor).map_err(Error::Audit)?;
        for r in records {
            if r.event == AuditEvent::Inject
                && let Some(scope) = r.scope.clone()
            {
                // Oldest first: a later use replaces an earlier one.
                index
                    .by_secret
                    .insert((scope, r.key.clone()), LastUse::of(r));
            }
        }
        index.cursor = next;
        Ok(index)
    }
}

/// When each secret was last used, as far as the audit trail has been read: describing or
/// listing secrets (which members may do at will) reads only what was appended since,
/// never the whole trail, which only grows.
#[derive(Default)]
pub(super) struct LastUses {
    /// Where the trail was read to ([`audit::read_since`]).
    cursor: Vec<u8>,
    by_secret: HashMap<(String, String), LastUse>,
}
