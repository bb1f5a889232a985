//! Quota counters, one per stored credential (scope and key), kept in the backend so that a
//! restart does not reset them.
//!
//! Check and count are one step under one lock, for every credential of a request at once:
//! concurrent runs in a process can never both take the last request of a window, and a
//! request refused for one credential counts for none. A counter is written (unflushed)
//! when it is taken; the injection's audit record, flushed before the request leaves,
//! makes it durable with the same flush, so every request that left is counted after a
//! crash. A counter is read from the backend the first time a credential is used and kept
//! in memory after that: a sled store is opened by one process at a time.

use super::backend::{Backend, BackendError};
use super::record::{SecretMeta, storage_id};
use crate::policy::quota::{Usage, Window};
use crate::secret::CredentialKey;
use std::collections::HashMap;
use std::sync::Mutex;

const NS_QUOTA: &str = "quota";

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
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// The counters of a store.
#[derive(Default)]
pub(crate) struct QuotaCounters {
    usage: Mutex<HashMap<Vec<u8>, Usage>>,
}

impl QuotaCounters {
    /// Counts one request at `now_ms` for each of `metas` that has a quota, or counts
    /// nothing and names the first credential whose window is full.
    pub fn take(
        &self,
        backend: &dyn Backend,
        metas: &[&SecretMeta],
        now_ms: u64,
    ) -> Result<(), QuotaRefusal> {
        let limited: Vec<&SecretMeta> = metas
            .iter()
            .copied()
            .filter(|m| !m.quota.is_unlimited())
            .collect();
        if limited.is_empty() {
            return Ok(());
        }
        let mut usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = Vec::with_capacity(limited.len());
        for m in &limited {
            let id = storage_id(&m.scope, &m.key);
            let current = match usage.get(&id) {
                Some(u) => *u,
                None => load(backend, &id, m)?,
            };
            let taken = current.take(&m.quota, now_ms).map_err(|window| {
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
            })?;
            next.push((id, taken));
        }
        for (id, taken) in next {
            backend.put_unflushed(NS_QUOTA, &id, &taken.encode())?;
            usage.insert(id, taken);
        }
        Ok(())
    }

    /// Removes the counter of a deleted secret.
    pub fn forget(&self, backend: &dyn Backend, id: &[u8]) -> Result<(), BackendError> {
        let mut usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        backend.delete(NS_QUOTA, id)?;
        usage.remove(id);
        Ok(())
    }
}

fn load(backend: &dyn Backend, id: &[u8], m: &SecretMeta) -> Result<Usage, QuotaRefusal> {
    match backend.get(NS_QUOTA, id)? {
        None => Ok(Usage::default()),
        Some(bytes) => Usage::decode(&bytes).ok_or_else(|| QuotaRefusal::Damaged {
            key: m.key.clone(),
            scope: m.scope.to_string(),
        }),
    }
}
