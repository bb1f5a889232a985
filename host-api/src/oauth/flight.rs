//! One refresher per credential. In a process: one async mutex per credential, so
//! concurrent runs wait for the refresh in flight and then find its token in the cache.
//! Across hosts sharing a store: the lease in the `oauth` namespace
//! ([`SecretStore::take_oauth_lease`]); a host that does not get it polls the cache until
//! the holder's token appears or the lease expires.

use crate::store::SecretStore;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a lease holds: longer than any token request may take
/// ([`MAX_REQUEST`]), so a live holder never loses it; a crashed holder blocks others
/// this long at most.
pub const LEASE: Duration = Duration::from_secs(30);
/// Longest a token request may take, whatever the run's deadline.
pub const MAX_REQUEST: Duration = Duration::from_secs(20);
/// How often a host waiting on another's lease looks for the token.
pub const POLL: Duration = Duration::from_millis(50);

/// The in-process refresh locks, by storage id.
#[derive(Default)]
pub(crate) struct Flights {
    locks: Mutex<HashMap<Vec<u8>, Arc<tokio::sync::Mutex<()>>>>,
}

impl Flights {
    /// Waits (until `deadline`) to be the one task of this process working on the token
    /// of `id`.
    pub async fn enter(
        &self,
        id: &[u8],
        deadline: Instant,
    ) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(id.to_vec()).or_default().clone()
        };
        tokio::time::timeout_at(deadline.into(), lock.lock_owned())
            .await
            .ok()
    }
}

/// What waiting for the lease came to.
pub(crate) enum Turn<T> {
    /// Another host cached a usable token meanwhile.
    Cached(T),
    /// This host holds the lease: it refreshes.
    Lease,
}

/// Takes the lease of `scope`/`key` for `holder`, or waits for another holder's token
/// (`cached` looks for one), until `deadline`. `None`: the deadline passed first.
pub(crate) async fn take_or_wait<T>(
    store: &SecretStore,
    scope: &crate::store::Scope,
    key: &crate::secret::CredentialKey,
    holder: &str,
    deadline: Instant,
    cached: impl Fn() -> Result<Option<T>, crate::store::StoreError>,
) -> Result<Option<Turn<T>>, crate::store::StoreError> {
    loop {
        if let Some(t) = cached()? {
            return Ok(Some(Turn::Cached(t)));
        }
        let now = crate::store::unix_millis();
        let until = now + LEASE.as_millis() as u64;
        if store.take_oauth_lease(scope, key, holder, now, until)? {
            return Ok(Some(Turn::Lease));
        }
        if Instant::now() + POLL > deadline {
            return Ok(None);
        }
        tokio::time::sleep(POLL).await;
    }
}
