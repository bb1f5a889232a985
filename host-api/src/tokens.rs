//! API tokens: how a principal proves who they are to a server built on [`crate::Latchkey`].
//!
//! A token is 256 random bits, shown once when created. The store keeps only an HMAC of it
//! (keyed with a key derived from the data key, so the store's files alone cannot check a
//! guess) and a record naming the principal and role, itself authenticated with the same
//! key: a role edited on disk does not authenticate. Revoked tokens stay listed, marked.

use crate::audit::{AuditError, AuditEvent, AuditRecord};
use crate::principal::{Principal, Role};
use crate::store::{BackendError, SecretStore};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use std::fmt;
use zeroize::Zeroizing;

use crate::store::namespaces::TOKENS as NS_TOKENS;
const PREFIX: &str = "lk_";
/// HMAC bytes shown as a token's public id (enough to name it, useless to forge it).
const ID_BYTES: usize = 8;

type HmacSha256 = Hmac<Sha256>;

/// A bearer token as issued: shown once, never stored. No `Debug` or `Display`.
pub struct Token(Zeroizing<String>);

impl Token {
    /// The text to give the client (`lk_…`).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// What the store keeps about a token (never the token).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenMeta {
    /// Public id: names the token in lists, revocation and the audit trail.
    pub id: String,
    /// The principal the token authenticates.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Unix milliseconds.
    pub created_at_ms: u64,
    /// Who created it.
    pub created_by: String,
    /// When it was revoked, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at_ms: Option<u64>,
    /// When it stops authenticating (Unix milliseconds); `None`: until revoked. Absent
    /// from records made before tokens could expire, which read unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
}

impl TokenMeta {
    /// Whether the token authenticates at `now_ms`: not revoked, not expired.
    pub fn is_active(&self, now_ms: u64) -> bool {
        self.revoked_at_ms.is_none() && self.expires_at_ms.is_none_or(|e| now_ms < e)
    }
}

/// Why a token was not accepted or a token operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not a token, unknown, revoked or tampered with: one answer for all, so that a caller
    /// learns nothing about which.
    #[error("the token is not valid")]
    Invalid,
    /// No active (unrevoked) token has this id.
    #[error("no active token with id {0}")]
    NotFound(String),
    /// The random source failed.
    #[error("could not generate a token")]
    Random,
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The audit record could not be written; nothing was changed.
    #[error("{0}; nothing was changed")]
    Audit(#[from] AuditError),
}

/// Writes the durable audit record of a token change before it is made.
fn audit(
    store: &SecretStore,
    event: AuditEvent,
    by: &str,
    meta: &TokenMeta,
) -> Result<(), AuditError> {
    let mut record = AuditRecord::change(
        event,
        by,
        "",
        &format!("ok: token {} ({})", meta.id, meta.role),
    );
    record.user = meta.name.clone();
    crate::audit::append_durable(store, &record)
}

/// The HMAC key of tokens, derived from the store's data key.
pub(crate) struct TokenKey(Zeroizing<[u8; 32]>);

impl TokenKey {
    pub(crate) fn of(store: &SecretStore) -> Self {
        TokenKey(store.derived_key("tokens"))
    }

    fn mac(&self, parts: &[&[u8]]) -> HmacSha256 {
        let mut mac = match HmacSha256::new_from_slice(self.0.as_ref()) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC accepts a key of any length"),
        };
        for p in parts {
            mac.update(&(p.len() as u64).to_be_bytes());
            mac.update(p);
        }
        mac
    }

    /// The storage id of a token: its HMAC.
    fn storage_id(&self, token: &str) -> [u8; 32] {
        self.mac(&[b"token", token.as_bytes()])
            .finalize()
            .into_bytes()
            .into()
    }

    /// A record: JSON then a MAC over the storage id and the JSON.
    fn seal(&self, id: &[u8], meta: &TokenMeta) -> Vec<u8> {
        let mut out = serde_json::to_vec(meta).unwrap_or_default();
        let tag = self.mac(&[b"record", id, &out]).finalize().into_bytes();
        out.extend_from_slice(&tag);
        out
    }

    fn open(&self, id: &[u8], bytes: &[u8]) -> Option<TokenMeta> {
        let split = bytes.len().checked_sub(32)?;
        let (json, tag) = bytes.split_at(split);
        // verify_slice compares in constant time.
        self.mac(&[b"record", id, json]).verify_slice(tag).ok()?;
        serde_json::from_slice(json).ok()
    }
}

/// Creates a token for `name` with `role`, recorded as created by `by`, that stops
/// authenticating `expires_in` from now (`None`: when revoked).
pub(crate) fn create(
    store: &SecretStore,
    name: &str,
    role: Role,
    by: &str,
    expires_in: Option<std::time::Duration>,
) -> Result<(TokenMeta, Token), TokenError> {
    let mut raw = Zeroizing::new([0u8; 32]);
    getrandom::fill(raw.as_mut()).map_err(|_| TokenError::Random)?;
    let token = Token(Zeroizing::new(format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw.as_ref())
    )));
    let key = TokenKey::of(store);
    let id = key.storage_id(token.expose());
    let now = crate::store::unix_millis();
    let expires_at_ms =
        expires_in.map(|d| now.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)));
    let meta = TokenMeta {
        id: hex::encode(&id[..ID_BYTES]),
        name: name.to_owned(),
        role,
        created_at_ms: now,
        created_by: by.to_owned(),
        revoked_at_ms: None,
        expires_at_ms,
    };
    audit(store, AuditEvent::TokenCreate, by, &meta)?;
    store.backend().put(NS_TOKENS, &id, &key.seal(&id, &meta))?;
    store.backend().flush()?;
    Ok((meta, token))
}

/// Token records a host has authenticated, kept parsed and reused only while the stored
/// record is byte-identical.
///
/// Every request still reads its token's record from the store (one `get`, as before), so a
/// revocation or an expiry written by any host of a shared store is seen at the next request
/// on every host: a revoked record has different bytes (`revoked_at_ms`), and different bytes
/// are checked and parsed afresh. What is reused is the work around that read: the HMAC key's
/// derivation, the record's MAC check and its JSON parse. The bytes were authenticated under
/// this storage id when they were kept, and the MAC is a function of the id and the bytes, so
/// identical bytes would authenticate again. Expiry is checked against the clock at every
/// request. Bounded: beyond [`TokenCache::CAPACITY`] records an arbitrary one makes room.
#[derive(Default)]
pub(crate) struct TokenCache {
    key: std::sync::OnceLock<TokenKey>,
    records: std::sync::Mutex<Kept>,
}

/// Storage id → (the record's bytes as checked, the principal and record they gave).
type Kept = HashMap<[u8; 32], (Vec<u8>, Principal, TokenMeta)>;

impl TokenCache {
    /// Records kept; a server has a few tokens per principal.
    const CAPACITY: usize = 4096;

    fn key(&self, store: &SecretStore) -> &TokenKey {
        // The data key never changes under a store (a master key rotation re-wraps it).
        self.key.get_or_init(|| TokenKey::of(store))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        // Only a cache: a poisoned one is as good as a clean one.
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// The principal a token authenticates: its record read from the store at every call
/// (see [`TokenCache`] for what is reused).
pub(crate) fn authenticate(
    store: &SecretStore,
    cache: &TokenCache,
    token: &str,
) -> Result<Principal, TokenError> {
    // Bounded before any work: a token is `lk_` and 43 characters.
    if token.len() != PREFIX.len() + 43 || !token.starts_with(PREFIX) {
        return Err(TokenError::Invalid);
    }
    let key = cache.key(store);
    let id = key.storage_id(token);
    let bytes = store
        .backend()
        .get(NS_TOKENS, &id)?
        .ok_or(TokenError::Invalid)?;
    let now = crate::store::unix_millis();
    if let Some((kept, principal, meta)) = cache.lock().get(&id)
        && *kept == bytes
    {
        // Expired or revoked: the same answer as unknown.
        return if meta.is_active(now) {
            Ok(principal.clone())
        } else {
            Err(TokenError::Invalid)
        };
    }
    let meta = key.open(&id, &bytes).ok_or(TokenError::Invalid)?;
    if !meta.is_active(now) {
        return Err(TokenError::Invalid);
    }
    let principal = Principal::new(&meta.name, meta.role).map_err(|_| TokenError::Invalid)?;
    let mut records = cache.lock();
    if records.len() >= TokenCache::CAPACITY
        && !records.contains_key(&id)
        && let Some(evicted) = records.keys().next().copied()
    {
        records.remove(&evicted);
    }
    records.insert(id, (bytes, principal.clone(), meta));
    Ok(principal)
}

/// Every token's record (never a token); records that do not authenticate are left out.
pub(crate) fn list(store: &SecretStore) -> Result<Vec<TokenMeta>, TokenError> {
    let key = TokenKey::of(store);
    let mut out: Vec<TokenMeta> = store
        .backend()
        .scan(NS_TOKENS, b"")?
        .into_iter()
        .filter_map(|(id, bytes)| key.open(&id, &bytes))
        .collect();
    out.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
    Ok(out)
}

/// Marks tokens revoked: the one with `id`, or (`id` `None`) every token of `name`.
/// Returns the records revoked now.
pub(crate) fn revoke(
    store: &SecretStore,
    id: Option<&str>,
    name: Option<&str>,
    by: &str,
) -> Result<Vec<TokenMeta>, TokenError> {
    let key = TokenKey::of(store);
    let mut revoked = Vec::new();
    for (sid, bytes) in store.backend().scan(NS_TOKENS, b"")? {
        let Some(mut meta) = key.open(&sid, &bytes) else {
            continue;
        };
        let hit = id.is_some_and(|i| meta.id == i) || name.is_some_and(|n| meta.name == n);
        if !hit || meta.revoked_at_ms.is_some() {
            continue;
        }
        meta.revoked_at_ms = Some(crate::store::unix_millis());
        audit(store, AuditEvent::TokenRevoke, by, &meta)?;
        store
            .backend()
            .put(NS_TOKENS, &sid, &key.seal(&sid, &meta))?;
        revoked.push(meta);
    }
    store.backend().flush()?;
    if let (Some(i), true) = (id, revoked.is_empty()) {
        return Err(TokenError::NotFound(i.to_owned()));
    }
    Ok(revoked)
}

impl fmt::Display for TokenMeta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ({})", self.id, self.name, self.role)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::{MasterKey, MemoryBackend};

    fn store() -> SecretStore {
        let master = MasterKey::generate().unwrap();
        SecretStore::init_with(Box::new(MemoryBackend::default()), "mem", &master).unwrap()
    }

    #[test]
    fn a_token_authenticates_its_principal_and_is_never_stored() {
        let s = store();
        let cache = TokenCache::default();
        let (meta, token) = create(&s, "ci", Role::Runner, "alice", None).unwrap();
        assert!(token.expose().starts_with("lk_") && token.expose().len() == 46);
        let p = authenticate(&s, &cache, token.expose()).unwrap();
        assert_eq!((p.name(), p.role()), ("ci", Role::Runner));
        assert_eq!(list(&s).unwrap(), vec![meta.clone()]);
        for (_, bytes) in s.backend().scan(NS_TOKENS, b"").unwrap() {
            let text = String::from_utf8_lossy(&bytes);
            assert!(!text.contains(&token.expose()[3..]), "{text}");
        }
        let (_, other) = create(&s, "ci", Role::Runner, "alice", None).unwrap();
        assert_ne!(other.expose(), token.expose());
    }

    #[test]
    fn an_expired_token_gets_the_same_answer_as_an_unknown_one() {
        let s = store();
        let cache = TokenCache::default();
        let ttl = std::time::Duration::from_millis(200);
        let (meta, token) = create(&s, "ci", Role::Runner, "alice", Some(ttl)).unwrap();
        assert!(meta.expires_at_ms.unwrap() >= meta.created_at_ms + 200);
        assert!(authenticate(&s, &cache, token.expose()).is_ok());
        std::thread::sleep(std::time::Duration::from_millis(250));
        assert!(matches!(
            authenticate(&s, &cache, token.expose()),
            Err(TokenError::Invalid)
        ));
        // Still listed, with its expiry, for the admin to see why.
        assert_eq!(list(&s).unwrap()[0].expires_at_ms, meta.expires_at_ms);
    }

    #[test]
    fn malformed_unknown_and_revoked_tokens_get_one_answer() {
        let s = store();
        let cache = TokenCache::default();
        let (meta, token) = create(&s, "bob", Role::Member, "alice", None).unwrap();
        let forged = format!("lk_{}", "A".repeat(43));
        let huge = "lk_".to_owned() + &"x".repeat(1 << 20);
        for bad in ["", "lk_", "Bearer x", forged.as_str(), huge.as_str()] {
            assert!(matches!(authenticate(&s, &cache, bad), Err(TokenError::Invalid)));
        }
        assert_eq!(revoke(&s, Some(&meta.id), None, "alice").unwrap().len(), 1);
        assert!(matches!(
            authenticate(&s, &cache, token.expose()),
            Err(TokenError::Invalid)
        ));
        assert!(matches!(
            revoke(&s, Some(&meta.id), None, "alice"),
            Err(TokenError::NotFound(_))
        ));
        assert!(list(&s).unwrap()[0].revoked_at_ms.is_some());
    }

    #[test]
    fn a_role_edited_in_the_store_does_not_authenticate() {
        let s = store();
        let cache = TokenCache::default();
        let (_, token) = create(&s, "bob", Role::Member, "alice", None).unwrap();
        let (id, bytes) = s.backend().scan(NS_TOKENS, b"").unwrap().remove(0);
        let text = String::from_utf8_lossy(&bytes).replace("\"member\"", "\"admin\"");
        s.backend().put(NS_TOKENS, &id, text.as_bytes()).unwrap();
        assert!(matches!(
            authenticate(&s, &cache, token.expose()),
            Err(TokenError::Invalid)
        ));
        assert!(
            list(&s).unwrap().is_empty(),
            "a tampered record is not listed"
        );
    }

    #[test]
    fn revoking_by_name_revokes_every_token_of_the_principal_and_is_audited() {
        let s = store();
        let cache = TokenCache::default();
        let (_, a) = create(&s, "bob", Role::Member, "alice", None).unwrap();
        let (_, b) = create(&s, "bob", Role::Runner, "alice", None).unwrap();
        let (_, c) = create(&s, "carol", Role::Member, "alice", None).unwrap();
        assert_eq!(revoke(&s, None, Some("bob"), "alice").unwrap().len(), 2);
        assert!(authenticate(&s, &cache, a.expose()).is_err());
        assert!(authenticate(&s, &cache, b.expose()).is_err());
        assert!(authenticate(&s, &cache, c.expose()).is_ok());
        let (records, _) = crate::audit::read_all(&s).unwrap();
        let events: Vec<_> = records
            .iter()
            .map(|r| (r.event, r.user.as_str(), r.actor.as_deref()))
            .collect();
        assert_eq!(events.len(), 5);
        assert_eq!(
            events[3],
            (AuditEvent::TokenRevoke, "bob", Some("alice")),
            "{events:?}"
        );
        assert!(
            records
                .iter()
                .all(|r| !r.outcome.contains(&a.expose()[3..]))
        );
    }

    #[test]
    fn a_token_revoked_through_one_host_is_refused_by_another_at_its_next_request() {
        // Two hosts of one store: each keeps its own cache of token records.
        let s = store();
        let (host_a, host_b) = (TokenCache::default(), TokenCache::default());
        let (meta, token) = create(&s, "bob", Role::Member, "alice", None).unwrap();
        for _ in 0..2 {
            assert!(authenticate(&s, &host_b, token.expose()).is_ok());
        }
        assert_eq!(host_b.len(), 1, "host B keeps the record it checked");
        assert!(authenticate(&s, &host_a, token.expose()).is_ok());
        revoke(&s, Some(&meta.id), None, "alice").unwrap();
        assert!(matches!(
            authenticate(&s, &host_b, token.expose()),
            Err(TokenError::Invalid)
        ));
        assert!(matches!(
            authenticate(&s, &host_a, token.expose()),
            Err(TokenError::Invalid)
        ));
    }

    #[test]
    fn a_kept_record_is_not_trusted_once_the_stored_one_changes() {
        let s = store();
        let cache = TokenCache::default();
        let (_, token) = create(&s, "bob", Role::Member, "alice", None).unwrap();
        assert_eq!(authenticate(&s, &cache, token.expose()).unwrap().role(), Role::Member);
        // Edited on disk after it was kept: the MAC is checked again, and fails.
        let (id, bytes) = s.backend().scan(NS_TOKENS, b"").unwrap().remove(0);
        let text = String::from_utf8_lossy(&bytes).replace("\"member\"", "\"admin\"");
        s.backend().put(NS_TOKENS, &id, text.as_bytes()).unwrap();
        assert!(matches!(
            authenticate(&s, &cache, token.expose()),
            Err(TokenError::Invalid)
        ));
        // Deleted after it was kept: unknown.
        s.backend().delete(NS_TOKENS, &id).unwrap();
        assert!(matches!(
            authenticate(&s, &cache, token.expose()),
            Err(TokenError::Invalid)
        ));
    }

    #[test]
    fn the_cache_of_token_records_is_bounded() {
        let s = store();
        let cache = TokenCache::default();
        let key = cache.key(&s);
        for i in 0..TokenCache::CAPACITY + 10 {
            let id = key.storage_id(&format!("lk_{i:043}"));
            let meta = TokenMeta {
                id: hex::encode(&id[..ID_BYTES]),
                name: "bob".into(),
                role: Role::Runner,
                created_at_ms: 0,
                created_by: "alice".into(),
                revoked_at_ms: None,
                expires_at_ms: None,
            };
            s.backend()
                .put(NS_TOKENS, &id, &key.seal(&id, &meta))
                .unwrap();
            assert!(authenticate(&s, &cache, &format!("lk_{i:043}")).is_ok());
        }
        assert_eq!(cache.len(), TokenCache::CAPACITY);
    }
}
