//! Parsed metadata of recently read records, reused only for byte-identical metadata.
//!
//! Resolution reads a record at every call, so that a rotation is seen at the next call,
//! and parsing the record's JSON metadata (binding, host patterns, quota) was the largest
//! part of that read. The record is still read from the backend every time; only the parse
//! is reused, and only when the metadata bytes equal those parsed before under the same
//! storage id. A rotated, edited or moved record therefore has different bytes (or a
//! different id) and is parsed and checked afresh. The value's AAD is these same bytes, so
//! decryption still authenticates what the cached parse came from. Metadata holds no value.

use super::record::{self, RecordError, SecretMeta};
use std::collections::HashMap;
use std::sync::Mutex;

/// Records whose parse is kept. Beyond it an arbitrary entry makes room: a store with more
/// hot records than this parses some of them again, as every read did before.
const CAPACITY: usize = 4096;

/// Storage id → (the metadata bytes parsed, their parse).
type Entries = HashMap<Vec<u8>, (Vec<u8>, SecretMeta)>;

/// Parsed metadata by storage id; see the module's documentation.
#[derive(Default)]
pub(crate) struct MetaCache {
    entries: Mutex<Entries>,
}

impl MetaCache {
    /// The metadata of `bytes`, stored under `id`: checked to belong there (as
    /// [`record::decode_at`] does) the first time these exact metadata bytes are seen.
    pub(crate) fn meta(&self, id: &[u8], bytes: &[u8]) -> Result<SecretMeta, RecordError> {
        let (meta_json, _) = record::split(bytes)?;
        {
            let entries = self.lock();
            if let Some((json, meta)) = entries.get(id)
                && json.as_slice() == meta_json
            {
                return Ok(meta.clone());
            }
        }
        let meta = record::decode_at(id, bytes)?.meta;
        let mut entries = self.lock();
        if entries.len() >= CAPACITY
            && !entries.contains_key(id)
            && let Some(evicted) = entries.keys().next().cloned()
        {
            entries.remove(&evicted);
        }
        entries.insert(id.to_vec(), (meta_json.to_vec(), meta.clone()));
        Ok(meta)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // The map is only a cache: a poisoned one is as good as a clean one.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Binding, HostPattern, InjectLocation};
    use crate::secret::CredentialKey;
    use crate::store::Scope;

    fn meta(key: &str, version: u64) -> SecretMeta {
        SecretMeta {
            scope: Scope::Platform,
            key: CredentialKey::new(key).expect("key"),
            integration: "http".into(),
            binding: Binding::new(
                vec![HostPattern::parse("api.example.com").expect("h")],
                vec![InjectLocation::BasicAuth],
                false,
            )
            .expect("b"),
            version,
            created_by: "a".into(),
            created_at_ms: 1,
            updated_by: "a".into(),
            updated_at_ms: 1,
            weak_value_override: false,
            quota: Default::default(),
            kind: Default::default(),
            oauth: None,
        }
    }

    fn record_of(m: &SecretMeta) -> Vec<u8> {
        record::encode(&serde_json::to_vec(m).expect("json"), b"sealed-bytes")
    }

    #[test]
    fn a_parse_is_reused_only_for_the_same_id_and_the_same_metadata_bytes() {
        let cache = MetaCache::default();
        let v1 = meta("K", 1);
        let id = record::storage_id(&v1.scope, &v1.key);
        assert_eq!(cache.meta(&id, &record_of(&v1)).expect("v1"), v1);
        assert_eq!(cache.meta(&id, &record_of(&v1)).expect("again"), v1);
        // A rotation changes the metadata bytes: parsed afresh, never the old parse.
        let v2 = meta("K", 2);
        assert_eq!(cache.meta(&id, &record_of(&v2)).expect("v2"), v2);
        // A record moved under another id is refused, cached or not.
        let other = record::storage_id(&Scope::Platform, &CredentialKey::new("L").expect("k"));
        assert_eq!(
            cache.meta(&other, &record_of(&v2)),
            Err(RecordError::Misplaced)
        );
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = MetaCache::default();
        for i in 0..CAPACITY + 10 {
            let m = meta(&format!("K{i}"), 1);
            let id = record::storage_id(&m.scope, &m.key);
            cache.meta(&id, &record_of(&m)).expect("meta");
        }
        assert_eq!(cache.len(), CAPACITY);
    }
}
