//! The audit trail: one record per credential resolution and per injection attempt.
//! Records hold who, which step, which key, which destination and what happened, and
//! never a value (the types here cannot hold one).

use crate::store::{BackendError, SecretStore};

const NS_AUDIT: &str = "audit";

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditEvent {
    /// `credentials.get`: a key resolved to a handle.
    Resolve,
    /// `credentials.get` refused (missing, not allowed).
    ResolveDenied,
    /// `http.fetch`: the value was injected and the request sent.
    Inject,
    /// `http.fetch` refused before anything was sent.
    InjectDenied,
}

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditRecord {
    /// Unix time in milliseconds.
    pub time_ms: u64,
    /// The run.
    pub run_id: String,
    /// Workspace.
    pub workspace: String,
    /// Workflow.
    pub workflow: String,
    /// Step.
    pub step: String,
    /// Invoking user.
    pub user: String,
    /// What happened.
    pub event: AuditEvent,
    /// Credential key.
    pub key: String,
    /// Scope the secret came from, if it resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Secret version used, if it resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// `scheme://host:port` of the request, for fetches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// Where the value went (`header:authorization`, …), for fetches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Outcome in words: `ok`, `status 200`, or why it was refused.
    pub outcome: String,
}

/// Appends a record. Not flushed: the runtime flushes at the end of each run.
pub fn append(store: &SecretStore, record: &AuditRecord) -> Result<(), BackendError> {
    let bytes = serde_json::to_vec(record).unwrap_or_default();
    store.backend().append(NS_AUDIT, &bytes).map(|_| ())
}

/// Makes every appended record durable.
pub fn flush(store: &SecretStore) -> Result<(), BackendError> {
    store.backend().flush()
}

/// Every record, oldest first. Unreadable records are skipped and counted.
pub fn read_all(store: &SecretStore) -> Result<(Vec<AuditRecord>, usize), BackendError> {
    let mut out = Vec::new();
    let mut bad = 0;
    for (_, bytes) in store.backend().scan(NS_AUDIT, b"")? {
        match serde_json::from_slice(&bytes) {
            Ok(r) => out.push(r),
            Err(_) => bad += 1,
        }
    }
    Ok((out, bad))
}
