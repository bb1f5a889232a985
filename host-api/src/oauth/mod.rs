//! OAuth2 credentials: the host turns the stored client (and refresh token) into a current
//! access token at the moment of injection, and the step gets only that, injected.
//!
//! `client` (what the sealed value holds) → `flight` (one refresher per credential, in a
//! process and across hosts sharing a store) → `grant` (the token request) → the token
//! cached sealed in the `oauth` namespace (`store::oauth`) until shortly before it
//! expires, and a rotated refresh token stored as a new version of the credential
//! before the access token is used.
//!
//! A refresh, once it is under way, is a task of its own: the token endpoint may rotate
//! the refresh token as soon as it has the request, so the answer must be read and the
//! rotated token stored whatever becomes of the run that asked (its deadline passing, the
//! run dropped). The request has its own bound ([`flight::MAX_REQUEST`]); only the run's
//! wait for it is bounded by the run's deadline.

pub(crate) mod client;
mod flight;
pub(crate) mod grant;

use crate::audit::{AuditEvent, AuditRecord};
use crate::policy::AddressPolicy;
use crate::secret::{CredentialKey, SecretValue};
use crate::store::{CachedToken, CredentialKind, SecretMeta, SecretStore, StoreError};
use client::{Client, ClientError};
use grant::GrantError;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most of a token's lifetime kept back: it is used until `min(60 s, lifetime / 2)`
/// before it expires, so a request never carries a token about to lapse.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// Why no access token could be had. Names the credential and the endpoint, never a value
/// or what the endpoint wrote.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OAuthError {
    /// The token endpoint refused, failed or answered something unusable.
    #[error("credential {key}: the token endpoint {endpoint} {source}")]
    Grant {
        /// The credential.
        key: CredentialKey,
        /// `scheme://host:port` of the endpoint.
        endpoint: String,
        /// What went wrong.
        #[source]
        source: GrantError,
    },
    /// The run's deadline passed while its refresh was under way. The refresh goes on by
    /// itself: its token, and a rotated refresh token, are stored for the next use.
    #[error(
        "credential {key}: the run's deadline passed while its access token was being refreshed (the refresh completes on its own)"
    )]
    DeadlinePassed {
        /// The credential.
        key: CredentialKey,
    },
    /// The refresh task ended without an answer (it panicked: a host bug).
    #[error("credential {key}: the refresh of its access token stopped before it finished")]
    RefreshLost {
        /// The credential.
        key: CredentialKey,
    },
    /// Another run or host is refreshing and did not finish before this run's deadline.
    #[error(
        "credential {key}: another run or host is refreshing its access token and did not finish in time"
    )]
    Busy {
        /// The credential.
        key: CredentialKey,
    },
    /// The stored value is not a usable client, or the record has no endpoint.
    #[error("credential {key}: {source}")]
    Client {
        /// The credential.
        key: CredentialKey,
        /// What is wrong with it.
        #[source]
        source: ClientError,
    },
    /// The credential is not (or no longer) an `oauth2` credential with a token endpoint.
    #[error("credential {key} is not an oauth2 credential with a token endpoint")]
    NotOAuth2 {
        /// The credential.
        key: CredentialKey,
    },
    /// The store failed, or the rotated refresh token could not be stored (then the new
    /// access token is not used).
    #[error("credential {key}: {source}")]
    Store {
        /// The credential.
        key: CredentialKey,
        /// The store's error.
        #[source]
        source: StoreError,
    },
}

impl OAuthError {
    /// Whether the address policy refused the endpoint (a denial, not a transport error).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            OAuthError::Grant {
                source: GrantError::Refused(_),
                ..
            }
        )
    }
}

/// Longest a process waits for refreshes under way before it exits
/// ([`Tokens::settle`]): as long as a refresh may hold its lease.
pub(crate) const SETTLE: Duration = flight::LEASE;

/// A current access token, and what to scrub with it.
pub(crate) struct Obtained {
    pub access: SecretValue,
    /// The credential version the token belongs to (newer than the one resolved when this
    /// host or another stored a rotated refresh token).
    pub meta: SecretMeta,
    /// The client secret and the refresh tokens: never sent to the upstream, but scrubbed
    /// like the access token should it echo them.
    pub scrub: Vec<SecretValue>,
}

/// Everything a token request needs from the runtime.
#[derive(Clone)]
pub(crate) struct Context {
    pub store: Arc<SecretStore>,
    pub http: reqwest::Client,
    pub policy: AddressPolicy,
    /// The run's deadline: no wait of the run outlasts it (a request under way does: it
    /// has its own bound).
    pub deadline: Instant,
    /// The runtime's per-request timeout, which the token request keeps to as well.
    pub request_timeout: Duration,
    /// The run's audit record for this credential, filled in for each refresh.
    pub audit: AuditRecord,
}

/// A runtime's access tokens: the in-process refresh locks, this host's lease name, and
/// the refreshes under way.
pub(crate) struct Tokens {
    flights: flight::Flights,
    holder: String,
    /// Read-held by each refresh task: taking it for writing waits for them all.
    in_flight: Arc<tokio::sync::RwLock<()>>,
}

impl Default for Tokens {
    fn default() -> Self {
        let mut id = [0u8; 16];
        // Without randomness, the process id and the clock still tell hosts apart.
        if getrandom::fill(&mut id).is_err() {
            id[..4].copy_from_slice(&std::process::id().to_be_bytes());
            id[4..12].copy_from_slice(&crate::store::unix_millis().to_be_bytes());
        }
        Tokens {
            flights: flight::Flights::default(),
            holder: hex::encode(id),
            in_flight: Arc::default(),
        }
    }
}

impl Tokens {
    /// A current access token for the `oauth2` credential `meta` whose value is `value`:
    /// the cached one if it is still usable, otherwise one refreshed, once per credential
    /// however many runs and hosts ask at the same time.
    pub async fn access_token(
        &self,
        cx: Context,
        meta: &SecretMeta,
        value: &SecretValue,
    ) -> Result<Obtained, OAuthError> {
        let key = &meta.key;
        let store_err = |source| OAuthError::Store {
            key: key.clone(),
            source,
        };
        let busy = || OAuthError::Busy { key: key.clone() };
        let id = format!("{}\0{}", meta.scope, key);
        let turn_guard = self
            .flights
            .enter(id.as_bytes(), cx.deadline)
            .await
            .ok_or_else(busy)?;
        let usable = || -> Result<Option<CachedToken>, StoreError> {
            let t = cx.store.oauth_token(&meta.scope, key)?;
            Ok(t.filter(|t| t.version >= meta.version && t.usable_until_ms > now_ms()))
        };
        let turn = flight::take_or_wait(
            &cx.store,
            &meta.scope,
            key,
            &self.holder,
            cx.deadline,
            usable,
        )
        .await
        .map_err(store_err)?
        .ok_or_else(busy)?;
        match turn {
            flight::Turn::Cached(t) => cached(&cx, meta, value, t),
            flight::Turn::Lease => {
                // Another host may have finished between the last look and the lease.
                let found = usable();
                if let Ok(None) = found {
                    return self.refresh_detached(cx, meta, turn_guard).await;
                }
                release_lease(&cx.store, meta, &self.holder);
                match found.map_err(store_err)? {
                    Some(t) => cached(&cx, meta, value, t),
                    None => Err(busy()),
                }
            }
        }
    }

    /// Refreshes in a task of its own, which holds this process's turn and the lease
    /// until the new token (and a rotated refresh token) is stored, then gives both
    /// back; the run waits for it until its deadline.
    async fn refresh_detached(
        &self,
        cx: Context,
        meta: &SecretMeta,
        turn: tokio::sync::OwnedMutexGuard<()>,
    ) -> Result<Obtained, OAuthError> {
        let key = meta.key.clone();
        let deadline = cx.deadline;
        let read = meta.clone();
        let holder = self.holder.clone();
        let flying = self.in_flight.clone().read_owned().await;
        let task = tokio::spawn(async move {
            let result = refresh(&cx, &read).await;
            release_lease(&cx.store, &read, &holder);
            drop(turn);
            drop(flying);
            result
        });
        match tokio::time::timeout_at(deadline.into(), task).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(OAuthError::RefreshLost { key }),
            Err(_) => Err(OAuthError::DeadlinePassed { key }),
        }
    }

    /// Waits, up to `limit`, for the refreshes under way to finish (their tokens stored):
    /// for a process about to exit, which would otherwise drop them half-way. Whether
    /// they all finished.
    pub async fn settle(&self, limit: Duration) -> bool {
        tokio::time::timeout(limit, self.in_flight.write())
            .await
            .is_ok()
    }
}

/// Gives back the refresh lease of `meta` held by `holder`; it expires by itself if this
/// fails.
fn release_lease(store: &SecretStore, meta: &SecretMeta, holder: &str) {
    if let Err(e) = store.release_oauth_lease(&meta.scope, &meta.key, holder) {
        tracing::warn!(error = %e, key = %meta.key, "could not release the oauth2 refresh lease; it expires by itself");
    }
}

/// Obtains a new access token with the credential's current value (read again under
/// the lease: another host may have stored a rotated refresh token), stores a rotated
/// refresh token, then caches the access token. The request is bounded by its own
/// timeout, never by a run's deadline: once sent, its answer is read and kept.
async fn refresh(cx: &Context, read: &SecretMeta) -> Result<Obtained, OAuthError> {
    let key = &read.key;
    let store_err = |source| OAuthError::Store {
        key: key.clone(),
        source,
    };
    let (meta, value) = cx.store.reveal(&read.scope, key).map_err(store_err)?;
    let endpoint = match (&meta.kind, &meta.oauth) {
        (CredentialKind::OAuth2, Some(e)) => e.clone(),
        _ => return Err(OAuthError::NotOAuth2 { key: key.clone() }),
    };
    let client = Client::parse(&value, endpoint.grant).map_err(|source| OAuthError::Client {
        key: key.clone(),
        source,
    })?;
    let scope = meta.scope.to_string();
    let record = |outcome: String, version: u64| {
        let mut r = cx.audit.clone();
        r.event = AuditEvent::TokenRefresh;
        r.scope = Some(scope.clone());
        r.version = Some(version);
        r.destination = Some(endpoint.origin());
        r.location = endpoint.scope.clone().map(|s| format!("scope {s}"));
        r.outcome = outcome;
        r.time_ms = crate::store::unix_millis();
        r
    };
    // Like an injection, the use of the client secret and refresh token is on record
    // before the request leaves.
    crate::audit::append_durable(&cx.store, &record("sending".into(), meta.version))
        .map_err(|e| store_err(StoreError::Audit(e)))?;
    // Its own bound, not the run's deadline: see the module documentation.
    let timeout = cx.request_timeout.min(flight::MAX_REQUEST);
    let issued = grant::request(&cx.http, cx.policy, &endpoint, &client, timeout).await;
    let issued = match issued {
        Ok(i) => i,
        Err(source) => {
            let e = OAuthError::Grant {
                key: key.clone(),
                endpoint: endpoint.origin(),
                source,
            };
            append(cx, record(format!("failed: {e}"), meta.version));
            return Err(e);
        }
    };
    let old = client.refresh_token.as_ref();
    let rotated = issued
        .refresh_token
        .as_ref()
        .filter(|new| old.is_some_and(|o| o.expose() != new.expose()));
    let mut outcome = format!("ok: access token for {} s", issued.lifetime.as_secs());
    let meta = match rotated {
        None => meta,
        Some(new) => {
            let next = client
                .with_refresh_token(new)
                .map_err(|source| OAuthError::Client {
                    key: key.clone(),
                    source,
                })?;
            match cx.store.store_refreshed(&meta, &next) {
                Ok(m) => {
                    outcome.push_str(&format!(
                        "; rotated refresh token stored as version {}",
                        m.version
                    ));
                    m
                }
                Err(source) => {
                    let e = store_err(source);
                    append(
                        cx,
                        record(
                            format!("failed: the rotated refresh token could not be stored: {e}"),
                            meta.version,
                        ),
                    );
                    return Err(e);
                }
            }
        }
    };
    let lifetime = issued.lifetime;
    let keep = lifetime.saturating_sub(EXPIRY_MARGIN.min(lifetime / 2));
    let token = CachedToken {
        access: issued.access,
        version: meta.version,
        usable_until_ms: now_ms() + keep.as_millis() as u64,
    };
    cx.store
        .put_oauth_token(&meta.scope, key, &token)
        .map_err(store_err)?;
    append(cx, record(outcome, meta.version));
    let mut scrub = vec![client.client_secret];
    scrub.extend(client.refresh_token);
    scrub.extend(issued.refresh_token);
    Ok(Obtained {
        access: token.access,
        meta,
        scrub,
    })
}

/// A cached token, with the secrets of the credential version it belongs to for scrubbing
/// (the resolved value, or the newer one another refresh stored).
fn cached(
    cx: &Context,
    meta: &SecretMeta,
    value: &SecretValue,
    token: CachedToken,
) -> Result<Obtained, OAuthError> {
    let key = &meta.key;
    let grant = meta.oauth.as_ref().map(|e| e.grant).unwrap_or_default();
    let client_of = |v: &SecretValue| {
        Client::parse(v, grant).map_err(|source| OAuthError::Client {
            key: key.clone(),
            source,
        })
    };
    let (meta, client) = if token.version > meta.version {
        let (m, v) = cx
            .store
            .reveal(&meta.scope, key)
            .map_err(|source| OAuthError::Store {
                key: key.clone(),
                source,
            })?;
        let c = client_of(&v)?;
        (m, c)
    } else {
        (meta.clone(), client_of(value)?)
    };
    let mut scrub = vec![client.client_secret];
    scrub.extend(client.refresh_token);
    Ok(Obtained {
        access: token.access,
        meta,
        scrub,
    })
}

fn append(cx: &Context, record: AuditRecord) {
    if let Err(e) = crate::audit::append(&cx.store, &record) {
        tracing::error!(error = %e, "could not append an audit record");
    }
}

fn now_ms() -> u64 {
    crate::store::unix_millis()
}
