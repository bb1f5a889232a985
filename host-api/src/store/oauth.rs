//! What the host keeps for `oauth2` credentials in the `oauth` namespace: the current
//! access token, sealed under the data key, and the lease of the host refreshing it.
//!
//! Both are keyed by the credential's storage id (scope and key), and written by
//! compare-and-put, so hosts that share a store see one token and one refresher. The
//! token's seal is bound (AAD) to its id, the credential version it was obtained with and
//! when it stops being used: a token moved to another credential, or its expiry edited in
//! the database, fails to open and is refreshed instead. Crate-private: only
//! `oauth` reads a token, at the moment of injection.

use super::backend::Expected;
use super::record::storage_id;
use super::scope::Scope;
use super::secret_store::{SecretStore, StoreError};
use crate::secret::{CredentialKey, SecretValue};

use super::namespaces::{OAUTH as NS_OAUTH, OAUTH_TOKEN_PREFIX as TOKEN_PREFIX};
const TOKEN_AAD: &[u8] = b"latchkey/oauth-token/v1\0";
const TOKEN_MAGIC: &[u8; 4] = b"LKT1";

/// An access token as cached: the token, the credential version it was obtained with,
/// and until when (Unix ms) it is used.
pub(crate) struct CachedToken {
    pub access: SecretValue,
    pub version: u64,
    pub usable_until_ms: u64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct TokenHeader {
    version: u64,
    usable_until_ms: u64,
}

/// Who is refreshing a credential's token, and until when the lease holds.
#[derive(serde::Serialize, serde::Deserialize, PartialEq, Eq)]
struct Lease {
    holder: String,
    until_ms: u64,
}


fn token_id(scope: &Scope, key: &CredentialKey) -> Vec<u8> {
    let mut id = TOKEN_PREFIX.to_vec();
    id.extend_from_slice(&storage_id(scope, key));
    id
}

fn lease_id(scope: &Scope, key: &CredentialKey) -> Vec<u8> {
    let mut id = b"lease\0".to_vec();
    id.extend_from_slice(&storage_id(scope, key));
    id
}

fn token_aad(id: &[u8], header: &[u8]) -> Vec<u8> {
    let mut aad = TOKEN_AAD.to_vec();
    aad.extend_from_slice(&(id.len() as u32).to_be_bytes());
    aad.extend_from_slice(id);
    aad.extend_from_slice(header);
    aad
}

impl SecretStore {
    /// The cached access token of a credential, if there is one that opens. A record that
    /// does not open (damaged, moved, edited) is treated as absent: the host refreshes.
    pub(crate) fn oauth_token(
        &self,
        scope: &Scope,
        key: &CredentialKey,
    ) -> Result<Option<CachedToken>, StoreError> {
        let id = token_id(scope, key);
        let Some(bytes) = self.backend().get(NS_OAUTH, &id)? else {
            return Ok(None);
        };
        Ok(open_token(self, &id, &bytes))
    }

    /// Caches `token` for a credential, sealed, replacing any other.
    pub(crate) fn put_oauth_token(
        &self,
        scope: &Scope,
        key: &CredentialKey,
        token: &CachedToken,
    ) -> Result<(), StoreError> {
        let id = token_id(scope, key);
        let header = serde_json::to_vec(&TokenHeader {
            version: token.version,
            usable_until_ms: token.usable_until_ms,
        })
        .unwrap_or_default();
        let sealed = self
            .data_key()
            .seal(token.access.expose(), &token_aad(&id, &header))
            .map_err(StoreError::Seal)?;
        let mut out = TOKEN_MAGIC.to_vec();
        out.extend_from_slice(&(header.len() as u32).to_be_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(&sealed);
        self.backend().put(NS_OAUTH, &id, &out)?;
        Ok(())
    }

    /// Takes the refresh lease of a credential for `holder` until `until_ms`, if nobody
    /// else holds it at `now_ms`. Compare-and-put: of two hosts taking it at once, one wins.
    pub(crate) fn take_oauth_lease(
        &self,
        scope: &Scope,
        key: &CredentialKey,
        holder: &str,
        now_ms: u64,
        until_ms: u64,
    ) -> Result<bool, StoreError> {
        let id = lease_id(scope, key);
        let current = self.backend().get(NS_OAUTH, &id)?;
        if let Some(bytes) = &current
            && let Ok(lease) = serde_json::from_slice::<Lease>(bytes)
            && lease.until_ms > now_ms
            && lease.holder != holder
        {
            return Ok(false);
        }
        let mine = serde_json::to_vec(&Lease {
            holder: holder.to_owned(),
            until_ms,
        })
        .unwrap_or_default();
        let expected = current
            .as_deref()
            .map(|bytes| Expected { bytes, version: 0 });
        Ok(self
            .backend()
            .compare_and_put(NS_OAUTH, &id, expected, &mine, 0)?)
    }

    /// Gives the lease back if `holder` still holds it (a lease that expired and was taken
    /// by another host is left alone).
    pub(crate) fn release_oauth_lease(
        &self,
        scope: &Scope,
        key: &CredentialKey,
        holder: &str,
    ) -> Result<(), StoreError> {
        let id = lease_id(scope, key);
        let Some(bytes) = self.backend().get(NS_OAUTH, &id)? else {
            return Ok(());
        };
        match serde_json::from_slice::<Lease>(&bytes) {
            Ok(lease) if lease.holder == holder => {
                let released = serde_json::to_vec(&Lease {
                    holder: String::new(),
                    until_ms: 0,
                })
                .unwrap_or_default();
                let expected = Expected {
                    bytes: &bytes,
                    version: 0,
                };
                self.backend()
                    .compare_and_put(NS_OAUTH, &id, Some(expected), &released, 0)?;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Removes what the host kept for a deleted credential (its token and lease).
    pub(crate) fn forget_oauth(
        &self,
        scope: &Scope,
        key: &CredentialKey,
    ) -> Result<(), StoreError> {
        self.backend().delete(NS_OAUTH, &token_id(scope, key))?;
        self.backend().delete(NS_OAUTH, &lease_id(scope, key))?;
        Ok(())
    }
}

fn open_token(store: &SecretStore, id: &[u8], bytes: &[u8]) -> Option<CachedToken> {
    let rest = bytes.strip_prefix(TOKEN_MAGIC.as_slice())?;
    let (len, rest) = rest.split_at_checked(4)?;
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    let (header_json, sealed) = rest.split_at_checked(len)?;
    let header: TokenHeader = serde_json::from_slice(header_json).ok()?;
    let plain = store
        .data_key()
        .open(sealed, &token_aad(id, header_json))
        .ok()?;
    Some(CachedToken {
        access: SecretValue::new(plain.to_vec()).ok()?,
        version: header.version,
        usable_until_ms: header.usable_until_ms,
    })
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

    fn key(k: &str) -> CredentialKey {
        CredentialKey::new(k).unwrap()
    }

    #[test]
    fn a_cached_token_opens_only_where_it_was_stored_and_unedited() {
        let s = store();
        let (scope, a, b) = (Scope::Platform, key("A"), key("B"));
        let token = CachedToken {
            access: SecretValue::new(b"at-1".to_vec()).unwrap(),
            version: 3,
            usable_until_ms: 1_000,
        };
        s.put_oauth_token(&scope, &a, &token).unwrap();
        let back = s.oauth_token(&scope, &a).unwrap().unwrap();
        assert_eq!(back.access.expose(), b"at-1");
        assert_eq!((back.version, back.usable_until_ms), (3, 1_000));
        let stored = s
            .backend()
            .get(NS_OAUTH, &token_id(&scope, &a))
            .unwrap()
            .unwrap();
        // Stored sealed: the token is not in the bytes.
        assert!(!stored.windows(4).any(|w| w == b"at-1"));
        // Moved to another credential: does not open.
        s.backend()
            .put(NS_OAUTH, &token_id(&scope, &b), &stored)
            .unwrap();
        assert!(s.oauth_token(&scope, &b).unwrap().is_none());
        // Expiry pushed out on disk: does not open.
        let text = String::from_utf8_lossy(&stored).replace("1000", "9999");
        let mut edited = text.into_bytes();
        edited.truncate(stored.len());
        s.backend()
            .put(NS_OAUTH, &token_id(&scope, &a), &edited)
            .unwrap();
        assert!(s.oauth_token(&scope, &a).unwrap().is_none());
    }

    #[test]
    fn one_holder_at_a_time_until_the_lease_expires_or_is_released() {
        let s = store();
        let (scope, k) = (Scope::Platform, key("A"));
        assert!(s.take_oauth_lease(&scope, &k, "h1", 100, 200).unwrap());
        assert!(!s.take_oauth_lease(&scope, &k, "h2", 150, 250).unwrap());
        // Expired: another host may take it, and the first one's release leaves it alone.
        assert!(s.take_oauth_lease(&scope, &k, "h2", 200, 300).unwrap());
        s.release_oauth_lease(&scope, &k, "h1").unwrap();
        assert!(!s.take_oauth_lease(&scope, &k, "h3", 250, 350).unwrap());
        s.release_oauth_lease(&scope, &k, "h2").unwrap();
        assert!(s.take_oauth_lease(&scope, &k, "h3", 250, 350).unwrap());
    }
}
