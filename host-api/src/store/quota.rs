//! Quota counters, one per stored credential (scope and key), kept in the backend so that a
//! restart does not reset them and hosts sharing a store share them.
//!
//! Each count is a compare-and-put of the counter record: of two hosts (or two runs) taking
//! the last request of a window, one wins and the other reads the new count and is
//! refused. The put is durable before the request leaves (sled flushes it; PostgreSQL
//! commits it), so every request that left is counted after a kill -9 or a power failure:
//! a credential with a quota pays one store write per request, one without pays nothing.
//! A request carrying several limited credentials is counted for all or, once one of them
//! is refused, given back to those already counted.

use super::backend::{Backend, BackendError, Expected};
use super::record::{SecretMeta, storage_id};
use crate::policy::quota::{Usage, Window};
use crate::secret::CredentialKey;
use std::sync::Mutex;

use super::namespaces::QUOTA as NS_QUOTA;

/// Why a request may not carry its credentials now.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuotaRefusal {
    /// A window's limit is reached. Nothing was counted.
    #[error("credential {key} has used its {window} request quota ({limit})")]
    Exceeded {
        /// The credential's key.
        key: CredentialKey,
        /// Its scope.
        scope: String,
        /// The window that is full.
        window: Window,
        /// That window's limit.
        limit: u32,
    },
    /// The stored counter cannot be read; deleting and storing the secret again resets it.
    #[error("the quota counter of {key} in scope {scope} is damaged")]
    Damaged {
        /// The credential's key.
        key: CredentialKey,
        /// Its scope.
        scope: String,
    },
    /// Other hosts kept changing the counter; nothing was counted or sent.
    #[error("the quota counter of {key} in scope {scope} is contended by other hosts")]
    Contended {
        /// The credential's key.
        key: CredentialKey,
        /// Its scope.
        scope: String,
    },
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// The counters of a store.
#[derive(Default)]
pub(crate) struct QuotaCounters {
    /// Serializes this process's counts, so that only other hosts make a put retry.
    in_process: Mutex<()>,
}

/// Compare-and-put attempts before a count gives up: each failed attempt means another
/// writer counted, so this is only reached under a flood from many hosts.
const ATTEMPTS: usize = 1000;

impl QuotaCounters {
    /// Counts one request at `now_ms` for each of `metas` that has a quota, or counts
    /// nothing and names the first credential whose window is full.
    pub fn take(
        &self,
        backend: &dyn Backend,
        metas: &[&SecretMeta],
        now_ms: u64,
    ) -> Result<(), QuotaRefusal> {
        let limited = limited(metas);
        if limited.is_empty() {
            return Ok(());
        }
        let _serial = self.in_process.lock().unwrap_or_else(|p| p.into_inner());
        for (i, (id, m)) in limited.iter().enumerate() {
            if let Err(refusal) = update(backend, id, m, |u| take_one(u, m, now_ms)) {
                for (id, m) in limited[..i].iter().rev() {
                    // Best effort: a failure here leaves one request over-counted, never
                    // one under-counted.
                    let _ = update(backend, id, m, |u| Ok(u.give_back(now_ms)));
                }
                return Err(refusal);
            }
        }
        Ok(())
    }

    /// Gives back one request counted by [`QuotaCounters::take`] at `taken_ms` for each of
    /// `metas` (a request refused after it was counted). Goes on past a failure, and
    /// reports the first.
    pub fn give_back(
        &self,
        backend: &dyn Backend,
        metas: &[&SecretMeta],
        taken_ms: u64,
    ) -> Result<(), QuotaRefusal> {
        let _serial = self.in_process.lock().unwrap_or_else(|p| p.into_inner());
        let mut first = Ok(());
        for (id, m) in limited(metas) {
            let r = update(backend, &id, m, |u| Ok(u.give_back(taken_ms)));
            if first.is_ok() {
                first = r;
            }
        }
        first
    }

    /// Removes the counter of a deleted secret.
    pub fn forget(&self, backend: &dyn Backend, id: &[u8]) -> Result<(), BackendError> {
        let _serial = self.in_process.lock().unwrap_or_else(|p| p.into_inner());
        backend.delete(NS_QUOTA, id)?;
        Ok(())
    }
}

/// The credentials of `metas` that have a quota, once each, by storage id (the order
/// every count takes).
fn limited<'m>(metas: &[&'m SecretMeta]) -> Vec<(Vec<u8>, &'m SecretMeta)> {
    let mut limited: Vec<(Vec<u8>, &SecretMeta)> = metas
        .iter()
        .filter(|m| !m.quota.is_unlimited())
        .map(|m| (storage_id(&m.scope, &m.key), *m))
        .collect();
    limited.sort_by(|a, b| a.0.cmp(&b.0));
    limited.dedup_by(|a, b| a.0 == b.0);
    limited
}

fn take_one(usage: Usage, m: &SecretMeta, now_ms: u64) -> Result<Usage, QuotaRefusal> {
    usage.take(&m.quota, now_ms).map_err(|window| {
        let limit = match window {
            Window::Minute => m.quota.per_minute,
            Window::Day => m.quota.per_day,
        };
        QuotaRefusal::Exceeded {
            key: m.key.clone(),
            scope: m.scope.to_string(),
            window,
            limit: limit.unwrap_or_default(),
        }
    })
}

/// Reads the counter of `id`, applies `change`, and puts the result if no other writer
/// changed the counter meanwhile; reads again otherwise.
fn update(
    backend: &dyn Backend,
    id: &[u8],
    m: &SecretMeta,
    change: impl Fn(Usage) -> Result<Usage, QuotaRefusal>,
) -> Result<(), QuotaRefusal> {
    for _ in 0..ATTEMPTS {
        let current = backend.get(NS_QUOTA, id)?;
        let usage = match &current {
            None => Usage::default(),
            Some(bytes) => decode(bytes, m)?,
        };
        let next = change(usage)?.encode();
        let expected = current
            .as_deref()
            .map(|bytes| Expected { bytes, version: 0 });
        if backend.compare_and_put(NS_QUOTA, id, expected, &next, 0)? {
            return Ok(());
        }
    }
    Err(QuotaRefusal::Contended {
        key: m.key.clone(),
        scope: m.scope.to_string(),
    })
}

fn decode(bytes: &[u8], m: &SecretMeta) -> Result<Usage, QuotaRefusal> {
    Usage::decode(bytes).ok_or_else(|| QuotaRefusal::Damaged {
        key: m.key.clone(),
        scope: m.scope.to_string(),
    })
}
