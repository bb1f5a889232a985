//! The write-only secret store.
//!
//! Nothing public here returns a value: `set`, `rotate`, `delete` and metadata only. The
//! runtime decrypts through a crate-private call at the moment of injection.

use super::backend::{
    Backend, BackendError, Expected, PermissionError, check_private_dir,
    create_private_dir,
};
use super::sled_store::SledBackend;
use super::deferred::{self, DeferredSled};
use super::key_provider::{KeyWrapper, WrapError};
use super::meta_cache::MetaCache;
use super::namespaces::{self, META as NS_META, SECRETS as NS_SECRETS};
use super::quota::{QuotaCounters, QuotaRefusal};
use super::record::{self, CredentialKind, SecretMeta, SecretSpec};
use super::retired::{self, DEFAULT_ROTATION_GRACE, NS_RETIRED};
use super::scope::Scope;
#[cfg(test)]
use super::seal::MasterKey;
use super::seal::{DataKey, SealError};
use crate::audit::{AuditChain, AuditError, AuditEvent, AuditRecord};
use crate::policy::Quota;
use crate::policy::quota::QuotaError;
use crate::secret::{CredentialKey, SecretValue, ValueError};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

const DEK_ID: &[u8] = b"data-key";

/// Who stores an `oauth2` credential's rotated refresh token: the host itself.
pub const OAUTH_ACTOR: &str = "latchkey (oauth2 refresh)";

/// Why a store operation failed. Never contains a secret value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The directory holds no initialised store.
    #[error("no Latchkey store at {path}: run `latchkey init` first")]
    NotInitialized {
        /// Store directory.
        path: String,
    },
    /// `init` on a store that already exists.
    #[error("a Latchkey store already exists at {path}; refusing to overwrite it")]
    AlreadyInitialized {
        /// Store directory.
        path: String,
    },
    /// The master key does not open the store's data key.
    #[error(
        "the master key does not open the store at {path} (wrong key file or LATCHKEY_MASTER_KEY, or the store's key record is damaged)"
    )]
    WrongMasterKey {
        /// Store directory.
        path: String,
    },
    /// The data key could not be wrapped or unwrapped by the configured key provider
    /// (Transit unreachable, token revoked, another key).
    #[error("the data key of the store at {path} could not be opened: {source}")]
    KeyProvider {
        /// Store location.
        path: String,
        /// The provider's error.
        #[source]
        source: WrapError,
    },
    /// No secret with this scope and key.
    #[error("no secret {key} in scope {scope}")]
    NotFound {
        /// Scope.
        scope: String,
        /// Key.
        key: String,
    },
    /// The stored record cannot be read or does not authenticate.
    #[error("secret {key} in scope {scope} cannot be opened: {reason}")]
    Damaged {
        /// Scope.
        scope: String,
        /// Key.
        key: String,
        /// Why (format damage, or failed authentication).
        reason: String,
    },
    /// The value was refused.
    #[error(transparent)]
    Value(#[from] ValueError),
    /// The value is estimated easy to guess and the override was not given. The estimate
    /// is of the refused value, which was never stored.
    #[error(transparent)]
    WeakValue(#[from] crate::policy::strength::WeakValue),
    /// The kind does not fit the binding.
    #[error("invalid binding for this kind of credential: {0}")]
    Kind(String),
    /// The value is not a key of the credential's kind.
    #[error("invalid value for this kind of credential: {0}")]
    Key(#[from] crate::signer::KeyError),
    /// An `oauth2` credential's value or token endpoint was refused (never with any part
    /// of the value).
    #[error("invalid oauth2 credential: {0}")]
    OAuth2(String),
    /// The quota was refused.
    #[error("invalid quota: {0}")]
    Quota(#[from] QuotaError),
    /// The integration type name was refused.
    #[error(
        "invalid integration type {0:?}: use lowercase letters, digits, '-' or '_' (e.g. http, slack, sendgrid)"
    )]
    Integration(String),
    /// Another writer (another admin, another host) changed the secret after this one read
    /// it: nothing was written.
    #[error(
        "secret {key} in scope {scope} was changed by someone else while this change was made (it is no longer at version {read}); nothing was written: read it again and retry"
    )]
    Conflict {
        /// Scope.
        scope: String,
        /// Key.
        key: String,
        /// The version this change was based on (0: the secret did not exist).
        read: u64,
    },
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// Sealing failed (random source).
    #[error("sealing failed: {0}")]
    Seal(SealError),
    /// The audit record of a change could not be written; the change was not made.
    #[error("{0}; nothing was changed")]
    Audit(#[from] AuditError),
    /// The store directory (or its parent) could be changed by someone else.
    #[error("refusing to use the store: {0}")]
    Insecure(#[from] PermissionError),
}

/// What [`SecretStore::copy_into`] copied: records per namespace.
pub type CopyReport = Vec<(&'static str, usize)>;

/// What [`SecretStore::verify_all`] found: each record's storage id (scope and key) and
/// whether it opened.
pub type VerifyReport = Vec<(String, Result<(), StoreError>)>;

/// The store: a backend holding ciphertext, the data key, and the head of the audit
/// chain (appends are serialized by its mutex).
pub struct SecretStore {
    backend: Box<dyn Backend>,
    dek: DataKey,
    path: String,
    audit: Mutex<AuditChain>,
    quota: QuotaCounters,
    /// Parsed metadata of recently read records (see `meta_cache`).
    metas: MetaCache,
    /// The directory of a sled store, whose `data-key` file follows the data key's
    /// wrapping (see `deferred`); `None` for other backends.
    sled_dir: Option<std::path::PathBuf>,
    /// How long a rotated-away static value stays a scrub pattern (see `retired`), in ms.
    rotation_grace_ms: AtomicU64,
    /// Secrets whose retired values this process deleted once their grace had passed.
    retired_swept: Mutex<std::collections::HashSet<Vec<u8>>>,
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl SecretStore {
    /// Creates a new store in `dir` sealed under `master`. Refuses an existing store.
    /// Creates `dir` (and missing parents) with mode 0700, and refuses a directory or
    /// parent others could write to, or another user's ([`super::check_private_dir`]).
    pub fn init(dir: &Path, master: &dyn KeyWrapper) -> Result<Self, StoreError> {
        check_private_dir(dir)?;
        create_private_dir(dir).map_err(|source| BackendError::IoAt {
            action: "creating",
            path: dir.to_path_buf(),
            source,
        })?;
        check_private_dir(dir)?;
        let mut store = Self::init_with(
            Box::new(SledBackend::open(dir)?),
            &dir.display().to_string(),
            master,
        )?;
        store.sled_dir = Some(dir.to_owned());
        if let Some(wrapped) = store.backend.get(NS_META, DEK_ID)? {
            deferred::write_data_key(dir, &wrapped)?;
        }
        Ok(store)
    }

    /// Opens the store in `dir`. Fails at once if `master` is not its master key, and
    /// refuses a store directory (or parent) others could write to, or another user's
    /// ([`super::check_private_dir`]).
    pub fn open(dir: &Path, master: &dyn KeyWrapper) -> Result<Self, StoreError> {
        let path = dir.display().to_string();
        if !dir.join("conf").exists() {
            return Err(StoreError::NotInitialized { path });
        }
        check_private_dir(dir)?;
        if let Some(wrapped) = deferred::read_data_key(dir)?
            && let Ok(raw) = master.unwrap(&wrapped)
        {
            let backend = DeferredSled::new(dir, wrapped, NS_META, DEK_ID);
            let mut store = Self::assemble(Box::new(backend), DataKey::from_raw(&raw), &path)?;
            store.sled_dir = Some(dir.to_owned());
            return Ok(store);
        }
        // No data-key file (a store made before it existed), or one this key does not
        // open (a master rotation interrupted before the file followed): the database
        // decides, now, and the file is rewritten from it so that the next open can wait.
        // A read-only directory just stays eager.
        let backend = SledBackend::open(dir)?;
        let wrapped = backend.get(NS_META, DEK_ID)?;
        let mut store = Self::open_with(Box::new(backend), &path, master)?;
        store.sled_dir = Some(dir.to_owned());
        if let Some(w) = wrapped {
            store.write_data_key_file(&w);
        }
        Ok(store)
    }

    /// Creates a new store at `location` sealed under `master`: [`Self::init`] for a
    /// directory; on a database, its schema must exist (`latchkey store migrate`).
    pub fn init_at(
        location: &super::Location,
        master: &dyn KeyWrapper,
    ) -> Result<Self, StoreError> {
        match location {
            super::Location::Dir(dir) => Self::init(dir, master),
            super::Location::Postgres(url) => Self::init_with(
                Box::new(super::PostgresBackend::open(url)?),
                &location.shown(),
                master,
            ),
        }
    }

    /// Opens the store at `location` ([`Self::open`] for a directory).
    pub fn open_at(
        location: &super::Location,
        master: &dyn KeyWrapper,
    ) -> Result<Self, StoreError> {
        match location {
            super::Location::Dir(dir) => Self::open(dir, master),
            super::Location::Postgres(url) => Self::open_with(
                Box::new(super::PostgresBackend::open(url)?),
                &location.shown(),
                master,
            ),
        }
    }

    /// Creates a store on any backend.
    pub fn init_with(
        backend: Box<dyn Backend>,
        path: &str,
        master: &dyn KeyWrapper,
    ) -> Result<Self, StoreError> {
        if backend.get(NS_META, DEK_ID)?.is_some() {
            return Err(StoreError::AlreadyInitialized {
                path: path.to_owned(),
            });
        }
        let (raw, dek) = DataKey::generate().map_err(StoreError::Seal)?;
        let wrapped = master.wrap(&raw).map_err(|e| wrap_failed(e, path))?;
        // Two `init`s on one shared database at once: only the first data key is kept.
        if !backend.compare_and_put(NS_META, DEK_ID, None, &wrapped, 1)? {
            return Err(StoreError::AlreadyInitialized {
                path: path.to_owned(),
            });
        }
        Self::assemble(backend, dek, path)
    }

    /// Opens a store on any backend.
    pub fn open_with(
        backend: Box<dyn Backend>,
        path: &str,
        master: &dyn KeyWrapper,
    ) -> Result<Self, StoreError> {
        let wrapped = backend
            .get(NS_META, DEK_ID)?
            .ok_or_else(|| StoreError::NotInitialized {
                path: path.to_owned(),
            })?;
        let raw = master.unwrap(&wrapped).map_err(|e| wrap_failed(e, path))?;
        Self::assemble(backend, DataKey::from_raw(&raw), path)
    }

    fn assemble(backend: Box<dyn Backend>, dek: DataKey, path: &str) -> Result<Self, StoreError> {
        let audit = Mutex::new(AuditChain::new(dek.derive("audit")));
        Ok(SecretStore {
            backend,
            dek,
            path: path.to_owned(),
            audit,
            quota: QuotaCounters::default(),
            metas: MetaCache::default(),
            sled_dir: None,
            rotation_grace_ms: AtomicU64::new(DEFAULT_ROTATION_GRACE.as_millis() as u64),
            retired_swept: Mutex::default(),
        })
    }

    /// Opens the database now if its opening was deferred, and checks it holds this
    /// store's data key: a long-lived host calls it at start, to fail then (store in use,
    /// data key mismatch) rather than at its first request.
    pub fn open_now(&self) -> Result<(), StoreError> {
        self.backend.get(NS_META, DEK_ID)?;
        Ok(())
    }

    /// The head of the audit chain, locked: [`crate::audit`] appends under it.
    pub(crate) fn audit_chain(&self) -> MutexGuard<'_, AuditChain> {
        // A panic while holding the lock leaves the head as it was before the append.
        self.audit.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes `record` durably, then makes the change; a failed change is followed by a
    /// record saying so (best effort). An audit write that fails stops the change.
    fn audited<T>(
        &self,
        record: AuditRecord,
        change: impl FnOnce() -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        crate::audit::append_durable(self, &record)?;
        let result = change();
        if let Err(e) = &result {
            let mut failed = record;
            failed.time_ms = now_ms();
            failed.outcome = format!("failed: {e}");
            if let Err(a) = crate::audit::append_durable(self, &failed) {
                tracing::error!(error = %a, "could not record the failure of a store change");
            }
        }
        result
    }

    /// Reloads the audit head as a fresh open would (tests on a memory backend).
    #[cfg(test)]
    pub(crate) fn reopen_for_tests(self) -> Self {
        let SecretStore {
            backend, dek, path, ..
        } = self;
        Self::assemble(backend, dek, &path).expect("reopen")
    }

    /// Where the store lives (for messages).
    #[cfg(any(test, feature = "testing"))]
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Re-wraps the data key under `new`. One atomic, flushed write: after a crash the
    /// store opens with either the old or the new master key, and no secret is rewritten.
    /// Audited (`master-rotate`, by `actor`) before the change.
    pub fn rotate_master(
        &mut self,
        old: &dyn KeyWrapper,
        new: &dyn KeyWrapper,
        actor: &str,
    ) -> Result<(), StoreError> {
        let wrapped =
            self.backend
                .get(NS_META, DEK_ID)?
                .ok_or_else(|| StoreError::NotInitialized {
                    path: self.path.clone(),
                })?;
        let raw = old
            .unwrap(&wrapped)
            .map_err(|e| wrap_failed(e, &self.path))?;
        let rewrapped = new.wrap(&raw).map_err(|e| wrap_failed(e, &self.path))?;
        let record = AuditRecord::change(AuditEvent::MasterRotate, actor, "", "ok");
        self.audited(record, || {
            let read = Expected {
                bytes: &wrapped,
                version: 1,
            };
            if self
                .backend
                .compare_and_put(NS_META, DEK_ID, Some(read), &rewrapped, 1)?
            {
                Ok(())
            } else {
                Err(StoreError::Conflict {
                    scope: "store".into(),
                    key: "data-key".into(),
                    read: 1,
                })
            }
        })?;
        self.write_data_key_file(&rewrapped);
        let check = new
            .unwrap(&rewrapped)
            .map_err(|e| wrap_failed(e, &self.path))?;
        self.dek = DataKey::from_raw(&check);
        Ok(())
    }

    /// Makes a sled store's `data-key` file hold `wrapped`, the database's. Best effort:
    /// a file left behind is one the new key does not open, and opening then falls back to
    /// the database and rewrites it.
    fn write_data_key_file(&self, wrapped: &[u8]) {
        if let Some(dir) = &self.sled_dir
            && let Err(e) = deferred::write_data_key(dir, wrapped)
        {
            tracing::warn!(error = %e, "could not write the data-key file; the store will open its database at once");
        }
    }

    /// Creates the secret, or replaces its value and spec (version + 1).
    pub fn set(
        &self,
        scope: &Scope,
        key: &CredentialKey,
        value: SecretValue,
        spec: SecretSpec,
        actor: &str,
    ) -> Result<SecretMeta, StoreError> {
        if !record::valid_integration(&spec.integration) {
            return Err(StoreError::Integration(
                spec.integration.chars().take(64).collect(),
            ));
        }
        spec.quota.check()?;
        check_kind(spec.kind, &spec.binding, spec.oauth.as_ref())?;
        check_value(
            spec.kind,
            &spec.binding,
            spec.oauth.as_ref(),
            &value,
            spec.allow_weak_value,
        )?;
        let now = now_ms();
        let current = self.current(scope, key)?;
        let previous = current.as_ref().map(|(_, m)| m);
        let meta = SecretMeta {
            scope: scope.clone(),
            key: key.clone(),
            integration: spec.integration,
            binding: spec.binding,
            version: previous.as_ref().map_or(1, |p| p.version + 1),
            created_by: previous
                .as_ref()
                .map_or_else(|| actor.to_owned(), |p| p.created_by.clone()),
            created_at_ms: previous.as_ref().map_or(now, |p| p.created_at_ms),
            updated_by: actor.to_owned(),
            updated_at_ms: now,
            weak_value_override: spec.allow_weak_value,
            quota: spec.quota,
            kind: spec.kind,
            oauth: spec.oauth,
        };
        let read = current.as_ref().map(|(bytes, m)| Expected {
            bytes,
            version: m.version,
        });
        let record = change_record(AuditEvent::SecretSet, actor, &meta);
        self.audited(record, || {
            if let Some((bytes, old)) = &current {
                self.retire(bytes, old)?;
            }
            self.write(meta, &value, read)
        })
    }

    /// Replaces the value of an existing secret, keeping its binding (version + 1).
    /// `allow_weak_value` is the `--allow-weak-value` override for this value; it replaces
    /// the record's [`SecretMeta::weak_value_override`].
    pub fn rotate(
        &self,
        scope: &Scope,
        key: &CredentialKey,
        value: SecretValue,
        allow_weak_value: bool,
        actor: &str,
    ) -> Result<SecretMeta, StoreError> {
        self.rotate_with_quota(scope, key, value, allow_weak_value, None, actor)
    }

    /// [`Self::rotate`], also replacing the quota when `quota` is given (the metadata is
    /// the value's AAD, so a quota changes with a value).
    pub fn rotate_with_quota(
        &self,
        scope: &Scope,
        key: &CredentialKey,
        value: SecretValue,
        allow_weak_value: bool,
        quota: Option<Quota>,
        actor: &str,
    ) -> Result<SecretMeta, StoreError> {
        let (bytes, mut meta) = self
            .current(scope, key)?
            .ok_or_else(|| not_found(scope, key))?;
        if let Some(q) = &quota {
            q.check()?;
        }
        check_value(
            meta.kind,
            &meta.binding,
            meta.oauth.as_ref(),
            &value,
            allow_weak_value,
        )?;
        let read = Expected {
            bytes: &bytes,
            version: meta.version,
        };
        meta.weak_value_override = allow_weak_value;
        if let Some(q) = quota {
            meta.quota = q;
        }
        let old = meta.clone();
        meta.version += 1;
        meta.updated_by = actor.to_owned();
        meta.updated_at_ms = now_ms();
        let record = change_record(AuditEvent::SecretRotate, actor, &meta);
        self.audited(record, || {
            self.retire(&bytes, &old)?;
            self.write(meta, &value, Some(read))
        })
    }

    /// How long a static value stays a scrub pattern after it is rotated away or replaced
    /// (default [`DEFAULT_ROTATION_GRACE`], 24 hours). `Duration::ZERO` keeps none.
    pub fn set_rotation_grace(&self, grace: Duration) {
        let ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
        self.rotation_grace_ms.store(ms, Ordering::Relaxed);
    }

    fn rotation_grace(&self) -> Duration {
        Duration::from_millis(self.rotation_grace_ms.load(Ordering::Relaxed))
    }

    /// Keeps the record `bytes` (of `meta`, about to be replaced) as a retired value, if it
    /// is a static value and a grace period applies, and deletes the secret's retired values
    /// whose grace has passed. Written before the new record: a change that then fails
    /// leaves a retired copy of the current value, which scrubs nothing more.
    fn retire(&self, bytes: &[u8], meta: &SecretMeta) -> Result<(), StoreError> {
        let id = record::storage_id(&meta.scope, &meta.key);
        let now = now_ms();
        let keep =
            usize::from(meta.kind == CredentialKind::Static && !self.rotation_grace().is_zero());
        self.drop_expired(&id, now, retired::MAX_KEPT - keep)?;
        if keep == 0 {
            return Ok(());
        }
        self.backend.put(
            NS_RETIRED,
            &retired::id(&id, meta.version),
            &retired::encode(now, bytes),
        )?;
        Ok(())
    }

    /// Deletes the retired values of the secret `id` whose grace has passed at `now`, and
    /// the oldest beyond the newest `keep`.
    fn drop_expired(&self, id: &[u8], now: u64, keep: usize) -> Result<(), StoreError> {
        let records = self.backend.scan(NS_RETIRED, &retired::prefix(id))?;
        // In id order, which is version order: the oldest first.
        let surplus = records.len().saturating_sub(keep);
        for (n, (rid, bytes)) in records.iter().enumerate() {
            let live = retired::decode(bytes)
                .is_some_and(|(at, _)| retired::in_grace(at, now, self.rotation_grace()));
            if !live || n < surplus {
                self.backend.delete(NS_RETIRED, rid)?;
            }
        }
        Ok(())
    }

    /// The values a secret had before its rotations within the grace period, each with its
    /// metadata (the binding it was sent under), newest first; ones whose grace has passed
    /// are deleted. Crate-private on purpose: only resolution reads them, for scrubbing;
    /// they are never injected.
    ///
    /// `current` is the secret's metadata as resolved. Its store is asked only while a
    /// change of the secret is recent enough for a retired value to be in its grace
    /// period, and once more per process after that, to delete them: a fetch with a
    /// credential that has not changed for longer costs no read.
    pub(crate) fn retired(
        &self,
        current: &SecretMeta,
    ) -> Result<Vec<(SecretMeta, SecretValue)>, StoreError> {
        let (scope, key) = (&current.scope, &current.key);
        let id = record::storage_id(scope, key);
        let now = now_ms();
        if current.version <= 1 {
            return Ok(Vec::new());
        }
        // A value is retired just after its successor's `updated_at_ms` is stamped; a
        // minute covers the time between the two, and clocks of hosts sharing a store.
        let changed = current.updated_at_ms.saturating_add(60_000);
        if !retired::in_grace(changed, now, self.rotation_grace()) {
            let mut swept = self.retired_swept.lock().unwrap_or_else(|p| p.into_inner());
            if !swept.insert(id.clone()) {
                return Ok(Vec::new());
            }
        }
        let mut out = Vec::new();
        for (rid, bytes) in self.backend.scan(NS_RETIRED, &retired::prefix(&id))? {
            let Some((at, rec)) = retired::decode(&bytes) else {
                return Err(damaged(scope, key, &"a retired value is truncated"));
            };
            if !retired::in_grace(at, now, self.rotation_grace()) {
                self.backend.delete(NS_RETIRED, &rid)?;
                continue;
            }
            let decoded = record::decode_at(&id, rec).map_err(|e| damaged(scope, key, &e))?;
            if retired::id(&id, decoded.meta.version) != rid {
                return Err(damaged(
                    scope,
                    key,
                    &"a retired value is filed under another version",
                ));
            }
            let value = self
                .open_value(&decoded)
                .map_err(|e| damaged(scope, key, &e))?;
            out.push((decoded.meta, value));
        }
        out.reverse();
        Ok(out)
    }

    /// Stores the value of an `oauth2` credential whose refresh token the token endpoint
    /// rotated, as a new version, only if the credential is still at `read.version` (the
    /// one whose refresh token was spent). Audited like a rotation, by [`OAUTH_ACTOR`].
    pub(crate) fn store_refreshed(
        &self,
        read: &SecretMeta,
        value: &SecretValue,
    ) -> Result<SecretMeta, StoreError> {
        let (bytes, mut meta) = self
            .current(&read.scope, &read.key)?
            .ok_or_else(|| not_found(&read.scope, &read.key))?;
        let conflict = || StoreError::Conflict {
            scope: read.scope.to_string(),
            key: read.key.to_string(),
            read: read.version,
        };
        if meta.version != read.version || meta.kind != CredentialKind::OAuth2 {
            return Err(conflict());
        }
        let expected = Expected {
            bytes: &bytes,
            version: meta.version,
        };
        meta.version += 1;
        meta.updated_by = OAUTH_ACTOR.to_owned();
        meta.updated_at_ms = now_ms();
        self.write_audited(
            AuditEvent::SecretRotate,
            OAUTH_ACTOR,
            meta,
            value,
            Some(expected),
        )
    }

    /// [`Self::write`], audited first (key, scope, new version and actor; never the value).
    fn write_audited(
        &self,
        event: AuditEvent,
        actor: &str,
        meta: SecretMeta,
        value: &SecretValue,
        read: Option<Expected<'_>>,
    ) -> Result<SecretMeta, StoreError> {
        let record = change_record(event, actor, &meta);
        self.audited(record, || self.write(meta, value, read))
    }

    /// Seals and stores the record, compare-and-set against the record `read` was based
    /// on: of two concurrent changes to one secret, one wins and the other gets
    /// [`StoreError::Conflict`].
    fn write(
        &self,
        meta: SecretMeta,
        value: &SecretValue,
        read: Option<Expected<'_>>,
    ) -> Result<SecretMeta, StoreError> {
        let meta_json = record::meta_bytes(&meta);
        let sealed = self
            .dek
            .seal(value.expose(), &record::aad(&meta_json))
            .map_err(StoreError::Seal)?;
        let id = record::storage_id(&meta.scope, &meta.key);
        let stored = self.backend.compare_and_put(
            NS_SECRETS,
            &id,
            read,
            &record::encode(&meta_json, &sealed),
            meta.version,
        )?;
        if !stored {
            return Err(StoreError::Conflict {
                scope: meta.scope.to_string(),
                key: meta.key.to_string(),
                read: read.map_or(0, |r| r.version),
            });
        }
        Ok(meta)
    }

    /// The stored bytes and metadata of one secret, if it exists.
    fn current(
        &self,
        scope: &Scope,
        key: &CredentialKey,
    ) -> Result<Option<(Vec<u8>, SecretMeta)>, StoreError> {
        self.read(scope, key)
    }

    /// The stored record of a secret and its metadata, checked to sit where it says: for
    /// resolution, which decrypts the same bytes with [`Self::open_read`].
    pub(crate) fn read(
        &self,
        scope: &Scope,
        key: &CredentialKey,
    ) -> Result<Option<(Vec<u8>, SecretMeta)>, StoreError> {
        let id = record::storage_id(scope, key);
        let Some(bytes) = self.backend.get(NS_SECRETS, &id)? else {
            return Ok(None);
        };
        let meta = self
            .metas
            .meta(&id, &bytes)
            .map_err(|e| damaged(scope, key, &e))?;
        Ok(Some((bytes, meta)))
    }

    /// The records of `key` in each of `scopes`, for resolution's walk down the tiers:
    /// read all at once, in one round trip, where the backend is remote (a round trip per
    /// tier would multiply a call's latency by the tiers missed), and one by one as the
    /// walk asks on an embedded store (where a read is cheaper than a read not needed).
    /// Either way every call reads the records afresh: a rotation is seen at the next one.
    pub(crate) fn candidates<'a>(
        &'a self,
        scopes: &'a [Scope],
        key: &'a CredentialKey,
    ) -> Result<Candidates<'a>, StoreError> {
        let fetched = if self.backend.is_remote() && scopes.len() > 1 {
            let ids: Vec<Vec<u8>> = scopes.iter().map(|s| record::storage_id(s, key)).collect();
            Some(self.backend.get_many(NS_SECRETS, &ids)?)
        } else {
            None
        };
        Ok(Candidates {
            store: self,
            scopes,
            key,
            fetched,
        })
    }

    /// Deletes a secret on behalf of `actor`. Returns its metadata, or `NotFound`.
    /// Audited (`secret-delete`) before the change.
    pub fn delete(
        &self,
        scope: &Scope,
        key: &CredentialKey,
        actor: &str,
    ) -> Result<SecretMeta, StoreError> {
        let meta = self
            .meta(scope, key)?
            .ok_or_else(|| not_found(scope, key))?;
        self.delete_audited(actor, meta)
    }

    fn delete_audited(&self, actor: &str, meta: SecretMeta) -> Result<SecretMeta, StoreError> {
        let record = change_record(AuditEvent::SecretDelete, actor, &meta);
        self.audited(record, || {
            let id = record::storage_id(&meta.scope, &meta.key);
            self.backend.delete(NS_SECRETS, &id)?;
            for (rid, _) in self.backend.scan(NS_RETIRED, &retired::prefix(&id))? {
                self.backend.delete(NS_RETIRED, &rid)?;
            }
            self.quota.forget(self.backend.as_ref(), &id)?;
            self.forget_oauth(&meta.scope, &meta.key)?;
            Ok(meta)
        })
    }

    /// Metadata of one secret, if it exists.
    pub fn meta(
        &self,
        scope: &Scope,
        key: &CredentialKey,
    ) -> Result<Option<SecretMeta>, StoreError> {
        Ok(self.current(scope, key)?.map(|(_, meta)| meta))
    }

    /// Decrypts the value of a record [`Self::read`] returned. Crate-private on purpose:
    /// only injection may see a value.
    pub(crate) fn open_read(
        &self,
        scope: &Scope,
        key: &CredentialKey,
        bytes: &[u8],
    ) -> Result<SecretValue, StoreError> {
        let (meta_json, sealed) = record::split(bytes).map_err(|e| damaged(scope, key, &e))?;
        let plain = self
            .dek
            .open(sealed, &record::aad(meta_json))
            .map_err(|e| damaged(scope, key, &e.to_string()))?;
        SecretValue::new(plain.to_vec()).map_err(|_| damaged(scope, key, &"bad value length"))
    }

    /// Reads and decrypts a secret: for `oauth`, which needs an `oauth2` credential's
    /// current refresh token under its lease (and for tests).
    pub(crate) fn reveal(
        &self,
        scope: &Scope,
        key: &CredentialKey,
    ) -> Result<(SecretMeta, SecretValue), StoreError> {
        let id = record::storage_id(scope, key);
        let bytes = self
            .backend
            .get(NS_SECRETS, &id)?
            .ok_or_else(|| not_found(scope, key))?;
        let decoded = record::decode_at(&id, &bytes).map_err(|e| damaged(scope, key, &e))?;
        let value = self
            .open_value(&decoded)
            .map_err(|e| damaged(scope, key, &e))?;
        Ok((decoded.meta, value))
    }

    /// Opens the sealed value of a decoded record against its exact metadata bytes.
    fn open_value(&self, decoded: &record::Decoded<'_>) -> Result<SecretValue, String> {
        let plain = self
            .dek
            .open(decoded.sealed, &record::aad(decoded.meta_json))
            .map_err(|e| e.to_string())?;
        SecretValue::new(plain.to_vec()).map_err(|_| "bad value length".to_owned())
    }

    /// Checks that every record (current and rotated-away values) decodes, sits where its
    /// metadata says and authenticates under the data key, without returning any value
    /// (`latchkey store verify`).
    pub fn verify_all(&self) -> Result<VerifyReport, StoreError> {
        let mut report = Vec::new();
        for (id, bytes) in self.backend.scan(NS_SECRETS, b"")? {
            let text = String::from_utf8_lossy(&id).replace('\u{0}', " ");
            let outcome = record::decode_at(&id, &bytes)
                .map_err(|e| damaged_id(&id, &e))
                .and_then(|d| self.open_value(&d).map_err(|e| damaged_id(&id, &e)))
                .map(drop);
            report.push((text, outcome));
        }
        // Rotated-away values too: resolution opens them to scrub for them, and a damaged
        // one fails every fetch of its credential.
        for (rid, bytes) in self.backend.scan(NS_RETIRED, b"")? {
            let (storage_id, version) = retired::split_id(&rid).unwrap_or((&rid, 0));
            let text = format!(
                "{} (retired version {version})",
                String::from_utf8_lossy(storage_id).replace('\u{0}', " ")
            );
            let outcome = retired::decode(&bytes)
                .ok_or_else(|| damaged_id(&rid, &"a retired value is truncated"))
                .and_then(|(_, rec)| {
                    record::decode_at(storage_id, rec).map_err(|e| damaged_id(storage_id, &e))
                })
                .and_then(|d| {
                    if retired::id(storage_id, d.meta.version) != rid {
                        return Err(damaged_id(
                            storage_id,
                            &"a retired value is filed under another version",
                        ));
                    }
                    self.open_value(&d).map_err(|e| damaged_id(storage_id, &e))
                })
                .map(drop);
            report.push((text, outcome));
        }
        Ok(report)
    }

    /// Copies every record of this store (the wrapped data key, sealed secrets, token
    /// records, quota counters, cached OAuth access tokens, the audit trail) into `target`
    /// as stored: nothing is decrypted, so the copy opens with the same master key, and
    /// audit records keep their ids and MACs. Refuses a target that already holds a store.
    /// Returns the records copied per namespace.
    pub fn copy_into(
        &self,
        target: &dyn Backend,
        target_path: &str,
    ) -> Result<CopyReport, StoreError> {
        if target.get(NS_META, DEK_ID)?.is_some() {
            return Err(StoreError::AlreadyInitialized {
                path: target_path.to_owned(),
            });
        }
        let mut report = CopyReport::default();
        // The data key last: until it is there the target is not a store, so a copy that
        // fails half-way is refused as unfinished rather than opened with records missing.
        // Quota counters go too, or a migration would reset every window; so do cached
        // OAuth access tokens (sealed, bound to their id), registrations and runs.
        for &(ns, prefix) in namespaces::COPIED {
            let records = self.backend.scan(ns, prefix)?;
            for (id, bytes) in &records {
                let version = if ns == NS_SECRETS {
                    record::decode_at(id, bytes).map_or(0, |d| d.meta.version)
                } else {
                    0
                };
                if ns != namespaces::AUDIT {
                    target.delete(ns, id)?;
                    if !target.compare_and_put(ns, id, None, bytes, version)? {
                        return Err(StoreError::AlreadyInitialized {
                            path: target_path.to_owned(),
                        });
                    }
                } else {
                    // Appended in order: the chain is in the records (sequence and MAC),
                    // and ids are the backend's own (a sled store's older records and its
                    // log do not share an id space).
                    target.append(ns, bytes)?;
                }
            }
            let what = if ns == namespaces::META {
                "audit genesis"
            } else {
                ns
            };
            report.push((what, records.len()));
        }
        let wrapped =
            self.backend
                .get(NS_META, DEK_ID)?
                .ok_or_else(|| StoreError::NotInitialized {
                    path: self.path.clone(),
                })?;
        if !target.compare_and_put(NS_META, DEK_ID, None, &wrapped, 1)? {
            return Err(StoreError::AlreadyInitialized {
                path: target_path.to_owned(),
            });
        }
        target.flush()?;
        Ok(report)
    }

    /// Metadata of every secret, optionally only in `scope`. A damaged record is reported
    /// in place (as `Err`), so one bad record does not hide the others.
    pub fn list(
        &self,
        scope: Option<&Scope>,
    ) -> Result<Vec<Result<SecretMeta, StoreError>>, StoreError> {
        let prefix = scope
            .map(|s| s.storage_prefix().into_bytes())
            .unwrap_or_default();
        Ok(self
            .backend
            .scan(NS_SECRETS, &prefix)?
            .into_iter()
            .map(|(id, bytes)| {
                record::decode_at(&id, &bytes)
                    .map(|d| d.meta)
                    .map_err(|e| damaged_id(&id, &e))
            })
            .collect())
    }

    /// Removes member `user` on behalf of `actor`: deletes the member's secrets, which
    /// are every secret `user` created, in any scope, and every secret in `user`'s own
    /// scopes (`user:U`, `user:U@W/F`, `builder:U@W/F`), whoever created it. Audited: one `member-remove`
    /// record (its `user` is the member), then one `secret-delete` record before each
    /// deletion. Returns what was deleted.
    pub fn delete_member_secrets(
        &self,
        user: &str,
        actor: &str,
    ) -> Result<Vec<SecretMeta>, StoreError> {
        let doomed: Vec<SecretMeta> = self
            .list(None)?
            .into_iter()
            .flatten()
            .filter(|m| m.created_by == user || m.scope.is_personal_to(user))
            .collect();
        let mut record = AuditRecord::change(
            AuditEvent::MemberRemove,
            actor,
            "",
            &format!("ok: deleting {} secret(s)", doomed.len()),
        );
        record.user = user.to_owned();
        crate::audit::append_durable(self, &record)?;
        let mut deleted = Vec::new();
        for meta in doomed {
            deleted.push(self.delete_audited(actor, meta)?);
        }
        Ok(deleted)
    }

    /// Counts one request at `now_ms` against the quota of each of `metas`, or counts
    /// nothing and says which is used up. Durable, and shared with every host of the
    /// store, when this returns: see [`super::quota`].
    pub(crate) fn take_quota(
        &self,
        metas: &[&SecretMeta],
        now_ms: u64,
    ) -> Result<(), QuotaRefusal> {
        self.quota.take(self.backend.as_ref(), metas, now_ms)
    }

    /// Gives back the request [`SecretStore::take_quota`] counted at `taken_ms` for each of
    /// `metas`: it was refused before it left.
    pub(crate) fn give_back_quota(
        &self,
        metas: &[&SecretMeta],
        taken_ms: u64,
    ) -> Result<(), QuotaRefusal> {
        self.quota.give_back(self.backend.as_ref(), metas, taken_ms)
    }

    /// A 32-byte key for `purpose`, derived from the data key (see `DataKey::derive`).
    pub(crate) fn derived_key(&self, purpose: &str) -> zeroize::Zeroizing<[u8; 32]> {
        self.dek.derive(purpose)
    }

    /// The data key, for what `store::oauth` seals beside the records.
    pub(super) fn data_key(&self) -> &DataKey {
        &self.dek
    }

    /// The backend, for the audit trail which shares it.
    pub(crate) fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }
}

/// The records of one key in several scopes; see [`SecretStore::candidates`].
pub(crate) struct Candidates<'a> {
    store: &'a SecretStore,
    scopes: &'a [Scope],
    key: &'a CredentialKey,
    /// Every scope's record, read at once (a remote backend); `None`: read each when asked.
    fetched: Option<Vec<Option<Vec<u8>>>>,
}

impl Candidates<'_> {
    /// The record in the `i`th scope and its metadata, checked to sit where it says (as
    /// [`SecretStore::read`]); parsed only when asked, so a damaged record in a tier the
    /// walk never reaches is not reported.
    pub(crate) fn read(&mut self, i: usize) -> Result<Option<(Vec<u8>, SecretMeta)>, StoreError> {
        let Some(scope) = self.scopes.get(i) else {
            return Ok(None);
        };
        let Some(fetched) = &mut self.fetched else {
            return self.store.read(scope, self.key);
        };
        let Some(bytes) = fetched.get_mut(i).and_then(Option::take) else {
            return Ok(None);
        };
        let id = record::storage_id(scope, self.key);
        let meta = self
            .store
            .metas
            .meta(&id, &bytes)
            .map_err(|e| damaged(scope, self.key, &e))?;
        Ok(Some((bytes, meta)))
    }
}

/// Checks a value against where its binding may put it (header-safe, UTF-8) and, unless
/// `allow_weak` is given, against [`crate::policy::strength::MIN_BITS`]. Before any change.
/// A signing key is never sent, so the places its binding names are where its signature
/// goes: a header or a query parameter (never the body it covers, nor basic auth).
fn check_kind(
    kind: CredentialKind,
    binding: &crate::policy::Binding,
    oauth: Option<&crate::policy::TokenEndpoint>,
) -> Result<(), StoreError> {
    use crate::policy::{InjectLocation, SignerParams};
    match (kind, oauth) {
        (CredentialKind::OAuth2, None) => {
            return Err(StoreError::OAuth2(
                "it needs a token endpoint (--token-url)".into(),
            ));
        }
        (CredentialKind::OAuth2, Some(e)) => {
            e.check().map_err(|e| StoreError::OAuth2(e.to_string()))?;
        }
        (_, Some(_)) => {
            return Err(StoreError::OAuth2(format!(
                "a token endpoint is only for oauth2 credentials, not {kind}"
            )));
        }
        (_, None) => {}
    }
    let refuse = |m: String| Err(StoreError::Kind(m));
    match (kind, &binding.signer) {
        (CredentialKind::AwsSigv4, Some(SignerParams::Aws(_))) => {}
        (CredentialKind::AwsSigv4, _) => {
            return refuse(
                "an aws-sigv4 key needs its region and service (--aws-region, --aws-service)"
                    .into(),
            );
        }
        (k, Some(SignerParams::Jwt(_))) if k.is_jwt() => {}
        (k, _) if k.is_jwt() => {
            return refuse(format!(
                "a {k} key needs the claims of its tokens (--jwt-issuer, ...)"
            ));
        }
        (k, Some(p)) => {
            return refuse(format!(
                "a {k} credential takes no signing parameters ({p})"
            ));
        }
        _ => {}
    }
    if kind == CredentialKind::AwsSigv4
        && binding.locations != [InjectLocation::Header("authorization".into())]
    {
        return refuse(
            "an aws-sigv4 signature goes only into the authorization header: use --inject header:authorization alone".into(),
        );
    }
    if kind.is_sent() {
        return Ok(());
    }
    if let Some(l) = binding
        .locations
        .iter()
        .find(|l| !matches!(l, InjectLocation::Header(_) | InjectLocation::Query(_)))
    {
        return refuse(format!(
            "a {kind} signature or token may go only into header: or query: places, not {l}"
        ));
    }
    Ok(())
}

/// A value that is sent must fit where its binding may put it (a signing key is never
/// sent, so any bytes do).
fn check_value(
    kind: CredentialKind,
    binding: &crate::policy::Binding,
    oauth: Option<&crate::policy::TokenEndpoint>,
    value: &SecretValue,
    allow_weak: bool,
) -> Result<(), StoreError> {
    if kind == CredentialKind::OAuth2 {
        // The stored value is the client, never sent as it is: its fields are checked,
        // and the secret among them is the one that must be hard to guess. The access
        // token is checked where it is injected.
        let grant = oauth.map(|e| e.grant).unwrap_or_default();
        let client = crate::oauth::client::Client::parse(value, grant)
            .map_err(|e| StoreError::OAuth2(e.to_string()))?;
        if !allow_weak {
            crate::policy::strength::check(client.client_secret.expose())?;
        }
        return Ok(());
    }
    if kind.is_sent() && binding.needs_header_safe_value() && !value.is_header_safe() {
        return Err(ValueError::NotHeaderSafe.into());
    }
    if kind.is_sent() && binding.needs_utf8_value() && !value.is_utf8() {
        return Err(ValueError::NotUtf8.into());
    }
    match kind {
        CredentialKind::AwsSigv4 => {
            crate::signer::aws::AwsKeys::parse(value)?;
        }
        CredentialKind::JwtRs256 | CredentialKind::JwtEs256 => {
            crate::signer::jwt::JwtKey::parse(value, kind == CredentialKind::JwtEs256)?;
        }
        _ => {}
    }
    if !allow_weak {
        crate::policy::strength::check(value.expose())?;
    }
    Ok(())
}

/// The audit record of a change to one secret: key, scope, version, actor; no value.
fn change_record(event: AuditEvent, actor: &str, meta: &SecretMeta) -> AuditRecord {
    let mut r = AuditRecord::change(event, actor, meta.key.as_str(), "ok");
    r.scope = Some(meta.scope.to_string());
    r.version = Some(meta.version);
    r
}

/// A key provider's failure as a store error: a key that does not open the data key is
/// [`StoreError::WrongMasterKey`]; anything else keeps the provider's words.
fn wrap_failed(e: WrapError, path: &str) -> StoreError {
    match e {
        WrapError::WrongKey => StoreError::WrongMasterKey {
            path: path.to_owned(),
        },
        other => StoreError::KeyProvider {
            path: path.to_owned(),
            source: other,
        },
    }
}

fn not_found(scope: &Scope, key: &CredentialKey) -> StoreError {
    StoreError::NotFound {
        scope: scope.to_string(),
        key: key.to_string(),
    }
}

fn damaged(scope: &Scope, key: &CredentialKey, why: &dyn std::fmt::Display) -> StoreError {
    StoreError::Damaged {
        scope: scope.to_string(),
        key: key.to_string(),
        reason: why.to_string(),
    }
}

fn damaged_id(id: &[u8], why: &dyn std::fmt::Display) -> StoreError {
    let text = String::from_utf8_lossy(id);
    let (scope, key) = text.split_once('\u{0}').unwrap_or((&text, "?"));
    StoreError::Damaged {
        scope: scope.to_owned(),
        key: key.to_owned(),
        reason: why.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Binding, HostPattern, InjectLocation};

    fn spec() -> SecretSpec {
        SecretSpec {
            integration: "http".into(),
            binding: Binding::new(
                vec![HostPattern::parse("api.example.com").expect("h")],
                vec![InjectLocation::parse("header:authorization").expect("l")],
                false,
            )
            .expect("b"),
            // Most tests store short values; the strength rule has its own tests below.
            allow_weak_value: true,
            quota: Quota::default(),
            kind: Default::default(),
            oauth: None,
        }
    }

    fn strong_spec() -> SecretSpec {
        SecretSpec {
            allow_weak_value: false,
            ..spec()
        }
    }

    const STRONG: &str = "sk-9fQ2xLr7Tz4mWc8NvB3kJh6YpD1sGa5E";

    #[test]
    fn rejects_weak_values_unless_overridden_and_leaves_store_unchanged() {
        let (_d, s, _) = store();
        let ws = Scope::Platform;
        let err = s
            .set(&ws, &key("W"), val("hunter2"), strong_spec(), "a")
            .expect_err("weak");
        assert!(matches!(err, StoreError::WeakValue(_)), "{err}");
        assert!(err.to_string().contains("--allow-weak-value"), "{err}");
        assert!(s.meta(&ws, &key("W")).expect("meta").is_none());

        let m = s
            .set(&ws, &key("W"), val(STRONG), strong_spec(), "a")
            .expect("strong value stored");
        assert!(!m.weak_value_override);
        let err = s
            .rotate(&ws, &key("W"), val("password123"), false, "a")
            .expect_err("weak");
        assert!(matches!(err, StoreError::WeakValue(_)), "{err}");
        let (meta, v) = s.reveal(&ws, &key("W")).expect("intact");
        assert_eq!((meta.version, v.expose()), (1, STRONG.as_bytes()));

        let m = s
            .rotate(&ws, &key("W"), val("password123"), true, "a")
            .expect("override");
        assert!(m.weak_value_override);
        assert!(
            s.meta(&ws, &key("W"))
                .expect("meta")
                .expect("m")
                .weak_value_override
        );
        let m = s
            .rotate(&ws, &key("W"), val(STRONG), false, "a")
            .expect("strong again");
        assert!(!m.weak_value_override);
        let m = s
            .set(&ws, &key("O"), val("s3cret"), spec(), "a")
            .expect("override at set");
        assert!(m.weak_value_override);
    }

    #[test]
    fn rejects_non_utf8_values_for_json_body_bindings() {
        let (_d, s, _) = store();
        let spec = SecretSpec {
            binding: Binding::new(
                vec![HostPattern::parse("api.example.com").expect("h")],
                vec![InjectLocation::parse("body:json:/password").expect("l")],
                false,
            )
            .expect("b"),
            ..spec()
        };
        let bad = SecretValue::new(b"\xff\xfe-not-utf8".to_vec()).expect("value");
        assert!(matches!(
            s.set(&Scope::Platform, &key("J"), bad, spec.clone(), "a"),
            Err(StoreError::Value(ValueError::NotUtf8))
        ));
        // A JSON body field carries CR/LF escaped: no header-safety needed.
        s.set(&Scope::Platform, &key("J"), val("multi\nline"), spec, "a")
            .expect("utf8 with newline");
    }

    fn key(k: &str) -> CredentialKey {
        CredentialKey::new(k).expect("key")
    }

    fn val(v: &str) -> SecretValue {
        SecretValue::new(v.as_bytes().to_vec()).expect("value")
    }

    fn store() -> (tempfile::TempDir, SecretStore, MasterKey) {
        let dir = tempfile::tempdir().expect("tmp");
        let m = MasterKey::generate().expect("rng");
        let s = SecretStore::init(&dir.path().join("db"), &m).expect("init");
        (dir, s, m)
    }

    /// `store verify` opens rotated-away values too: a damaged one fails every fetch of
    /// its credential's destinations (it cannot be scrubbed for), so it must be found.
    #[test]
    fn verify_opens_retired_values_and_names_a_damaged_one() {
        let (_d, s, _) = store();
        let ws = Scope::Platform;
        s.set(&ws, &key("A"), val("first-value-1234"), spec(), "admin")
            .expect("set");
        s.set(&ws, &key("A"), val("second-value-5678"), spec(), "admin")
            .expect("rotate");
        let report = s.verify_all().expect("verify");
        assert_eq!(report.len(), 2, "{report:?}");
        assert!(report.iter().all(|(_, r)| r.is_ok()), "{report:?}");
        let (rid, mut bytes) = s
            .backend
            .scan(NS_RETIRED, b"")
            .expect("scan")
            .pop()
            .expect("one retired value");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        s.backend.put(NS_RETIRED, &rid, &bytes).expect("put");
        let report = s.verify_all().expect("verify");
        let damaged: Vec<_> = report.iter().filter(|(_, r)| r.is_err()).collect();
        assert_eq!(damaged.len(), 1, "{report:?}");
        assert!(damaged[0].0.contains("retired"), "{report:?}");
    }

    #[test]
    fn rotated_away_values_stay_sealed_for_the_grace_period_then_go() {
        let (_d, s, _) = store();
        let ws = Scope::Platform;
        let values = |s: &SecretStore| -> Vec<(u64, Vec<u8>)> {
            let meta = s.meta(&ws, &key("A")).expect("meta").expect("exists");
            s.retired(&meta)
                .expect("retired")
                .into_iter()
                .map(|(m, v)| (m.version, v.expose().to_vec()))
                .collect()
        };
        s.set(&ws, &key("A"), val("value-one-Zq8Rt3Wm"), spec(), "a")
            .expect("set");
        assert!(values(&s).is_empty());
        s.rotate(&ws, &key("A"), val("value-two-Yp2Kx5Nv"), true, "a")
            .expect("rotate");
        s.set(&ws, &key("A"), val("value-three-Lb4Hc6Jd"), spec(), "a")
            .expect("set again");
        // Newest first, each with its own metadata (the binding it was sent under).
        assert_eq!(
            values(&s),
            vec![
                (2, b"value-two-Yp2Kx5Nv".to_vec()),
                (1, b"value-one-Zq8Rt3Wm".to_vec())
            ]
        );
        // The records are sealed like any value: not in the files in clear.
        for (_, bytes) in s.backend.scan(NS_RETIRED, b"").expect("scan") {
            assert!(
                !bytes
                    .windows(9)
                    .any(|w| w == b"value-one" || w == b"value-two")
            );
        }
        // Only the newest few are kept.
        for n in 0..retired::MAX_KEPT + 2 {
            s.rotate(
                &ws,
                &key("A"),
                val(&format!("value-many-{n}-Fg0Sa7")),
                true,
                "a",
            )
            .expect("rotate");
        }
        assert_eq!(values(&s).len(), retired::MAX_KEPT);
        // Deleting the secret deletes them.
        s.delete(&ws, &key("A"), "a").expect("delete");
        assert!(s.backend.scan(NS_RETIRED, b"").expect("scan").is_empty());
        // With no grace, none is kept, and what was kept goes at the next change.
        s.set(&ws, &key("B"), val("value-bee-Zq8Rt3Wm"), spec(), "a")
            .expect("set");
        s.rotate(&ws, &key("B"), val("value-bee-Yp2Kx5Nv"), true, "a")
            .expect("rotate");
        assert_eq!(s.backend.scan(NS_RETIRED, b"").expect("scan").len(), 1);
        s.set_rotation_grace(Duration::ZERO);
        s.rotate(&ws, &key("B"), val("value-bee-Lb4Hc6Jd"), true, "a")
            .expect("rotate");
        assert!(s.backend.scan(NS_RETIRED, b"").expect("scan").is_empty());
    }

    #[test]
    fn only_static_values_are_retired() {
        let (_d, s, _) = store();
        let ws = Scope::Platform;
        let mut signing = spec();
        signing.kind = CredentialKind::HmacSha256;
        signing.binding = Binding::new(
            vec![HostPattern::parse("api.example.com").expect("h")],
            vec![InjectLocation::parse("header:x-signature").expect("l")],
            false,
        )
        .expect("binding");
        s.set(
            &ws,
            &key("SIG"),
            val("hmac-key-Zq8Rt3Wm7Yp2Kx5Nv9Lb"),
            signing,
            "a",
        )
        .expect("set");
        s.rotate(
            &ws,
            &key("SIG"),
            val("hmac-key-Lb4Hc6Jd1Fg0Sa7Vb2Qm"),
            true,
            "a",
        )
        .expect("rotate");
        assert!(s.backend.scan(NS_RETIRED, b"").expect("scan").is_empty());
    }

    #[test]
    fn set_reveal_rotate_delete() {
        let (_d, s, _) = store();
        let ws = Scope::Workspace {
            workspace: "acme".into(),
        };
        let m = s
            .set(&ws, &key("TOKEN"), val("v1"), spec(), "alice")
            .expect("set");
        assert_eq!(m.version, 1);
        assert_eq!(
            s.reveal(&ws, &key("TOKEN")).expect("reveal").1.expose(),
            b"v1"
        );
        let m = s
            .rotate(&ws, &key("TOKEN"), val("v2"), true, "bob")
            .expect("rotate");
        assert_eq!(
            (m.version, m.created_by.as_str(), m.updated_by.as_str()),
            (2, "alice", "bob")
        );
        assert_eq!(
            s.reveal(&ws, &key("TOKEN")).expect("reveal").1.expose(),
            b"v2"
        );
        s.delete(&ws, &key("TOKEN"), "carol").expect("delete");
        assert!(matches!(
            s.reveal(&ws, &key("TOKEN")),
            Err(StoreError::NotFound { .. })
        ));
        assert!(matches!(
            s.rotate(&ws, &key("TOKEN"), val("v3"), true, "bob"),
            Err(StoreError::NotFound { .. })
        ));
    }

    #[test]
    fn rejects_header_unsafe_values_and_leaves_store_unchanged() {
        let (_d, s, _) = store();
        let ws = Scope::Platform;
        s.set(&ws, &key("T"), val("good"), spec(), "a")
            .expect("set");
        let err = s
            .set(&ws, &key("T"), val("bad\r\nX-Evil: 1"), spec(), "a")
            .expect_err("refused");
        assert!(matches!(err, StoreError::Value(ValueError::NotHeaderSafe)));
        assert!(s.rotate(&ws, &key("T"), val("a\0b"), true, "a").is_err());
        let (meta, v) = s.reveal(&ws, &key("T")).expect("intact");
        assert_eq!((meta.version, v.expose()), (1, &b"good"[..]));
    }

    #[test]
    fn ciphertext_moved_to_another_key_fails_to_open() {
        let (_d, s, _) = store();
        let ws = Scope::Platform;
        s.set(&ws, &key("A"), val("secret-a"), spec(), "x")
            .expect("set");
        s.set(&ws, &key("B"), val("secret-b"), spec(), "x")
            .expect("set");
        let a = s
            .backend
            .get(NS_SECRETS, &record::storage_id(&ws, &key("A")))
            .expect("get")
            .expect("a");
        let b = s
            .backend
            .get(NS_SECRETS, &record::storage_id(&ws, &key("B")))
            .expect("get")
            .expect("b");
        // Whole record copied: metadata names A, stored under B.
        s.backend
            .put(NS_SECRETS, &record::storage_id(&ws, &key("B")), &a)
            .expect("put");
        assert!(matches!(
            s.reveal(&ws, &key("B")),
            Err(StoreError::Damaged { .. })
        ));
        // Only the sealed part of A spliced under B's metadata.
        let da = record::decode(&a).expect("a");
        let db = record::decode(&b).expect("b");
        let spliced = record::encode(db.meta_json, da.sealed);
        s.backend
            .put(NS_SECRETS, &record::storage_id(&ws, &key("B")), &spliced)
            .expect("put");
        assert!(matches!(
            s.reveal(&ws, &key("B")),
            Err(StoreError::Damaged { .. })
        ));
    }

    #[test]
    fn rolled_back_ciphertext_under_new_metadata_fails_to_open() {
        let (_d, s, _) = store();
        let ws = Scope::Platform;
        s.set(&ws, &key("A"), val("old"), spec(), "x").expect("set");
        let v1 = s
            .backend
            .get(NS_SECRETS, &record::storage_id(&ws, &key("A")))
            .expect("g")
            .expect("v1");
        s.rotate(&ws, &key("A"), val("new"), true, "x")
            .expect("rotate");
        let v2 = s
            .backend
            .get(NS_SECRETS, &record::storage_id(&ws, &key("A")))
            .expect("g")
            .expect("v2");
        let spliced = record::encode(
            record::decode(&v2).expect("d").meta_json,
            record::decode(&v1).expect("d").sealed,
        );
        s.backend
            .put(NS_SECRETS, &record::storage_id(&ws, &key("A")), &spliced)
            .expect("put");
        assert!(matches!(
            s.reveal(&ws, &key("A")),
            Err(StoreError::Damaged { .. })
        ));
    }

    #[test]
    fn binding_edited_on_disk_fails_to_open() {
        let (_d, s, _) = store();
        let ws = Scope::Platform;
        s.set(&ws, &key("A"), val("v"), spec(), "x").expect("set");
        let id = record::storage_id(&ws, &key("A"));
        let raw = s.backend.get(NS_SECRETS, &id).expect("g").expect("raw");
        let d = record::decode(&raw).expect("d");
        let tampered_meta = String::from_utf8(d.meta_json.to_vec())
            .expect("utf8")
            .replace("api.example.com", "evil.example.net");
        let t = record::encode(tampered_meta.as_bytes(), d.sealed);
        s.backend.put(NS_SECRETS, &id, &t).expect("put");
        assert!(matches!(
            s.reveal(&ws, &key("A")),
            Err(StoreError::Damaged { .. })
        ));
    }

    #[test]
    fn a_data_key_file_from_another_store_opens_nothing_of_this_one() {
        let dir = tempfile::tempdir().expect("tmp");
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let m = MasterKey::generate().expect("rng");
        let s = SecretStore::init(&a, &m).expect("init a");
        s.set(
            &Scope::Platform,
            &key("K"),
            val("value-of-a-0123456789"),
            spec(),
            "x",
        )
        .expect("set");
        drop(s);
        drop(SecretStore::init(&b, &m).expect("init b"));
        std::fs::copy(
            b.join(deferred::DATA_KEY_FILE),
            a.join(deferred::DATA_KEY_FILE),
        )
        .expect("swap the file");
        // The file opens with this master key, so opening defers; the first read refuses.
        let s = SecretStore::open(&a, &m).expect("open");
        let e = match s.list(None) {
            Ok(_) => panic!("listed through another store's data key"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains("another data key"), "{e}");
        assert!(s.reveal(&Scope::Platform, &key("K")).is_err());
    }

    #[test]
    fn a_master_rotation_whose_file_was_left_behind_opens_with_the_new_key_only() {
        let dir = tempfile::tempdir().expect("tmp");
        let db = dir.path().join("db");
        let old = MasterKey::generate().expect("rng");
        let mut s = SecretStore::init(&db, &old).expect("init");
        s.set(
            &Scope::Platform,
            &key("K"),
            val("value-0123456789abcdef"),
            spec(),
            "x",
        )
        .expect("set");
        let before = std::fs::read(db.join(deferred::DATA_KEY_FILE)).expect("file");
        let new = MasterKey::generate().expect("rng");
        s.rotate_master(&old, &new, "ops").expect("rotate");
        drop(s);
        // A crash between the database's write and the file's.
        std::fs::write(db.join(deferred::DATA_KEY_FILE), &before).expect("restore");
        let s = SecretStore::open(&db, &new).expect("the new key opens");
        assert_eq!(
            s.reveal(&Scope::Platform, &key("K"))
                .expect("intact")
                .1
                .expose(),
            b"value-0123456789abcdef"
        );
        drop(s);
        assert_ne!(
            std::fs::read(db.join(deferred::DATA_KEY_FILE)).expect("file"),
            before,
            "the file follows the database again"
        );
        assert!(matches!(
            SecretStore::open(&db, &old),
            Err(StoreError::WrongMasterKey { .. })
        ));
    }

    #[test]
    fn wrong_master_key_detected_at_open() {
        let dir = tempfile::tempdir().expect("tmp");
        let m = MasterKey::generate().expect("rng");
        drop(SecretStore::init(&dir.path().join("db"), &m).expect("init"));
        let other = MasterKey::generate().expect("rng");
        assert!(matches!(
            SecretStore::open(&dir.path().join("db"), &other),
            Err(StoreError::WrongMasterKey { .. })
        ));
        assert!(SecretStore::open(&dir.path().join("db"), &m).is_ok());
    }

    #[test]
    fn open_of_missing_store_says_init() {
        let dir = tempfile::tempdir().expect("tmp");
        let m = MasterKey::generate().expect("rng");
        let err = SecretStore::open(&dir.path().join("nope"), &m)
            .err()
            .expect("error");
        assert!(err.to_string().contains("latchkey init"), "{err}");
    }

    #[test]
    fn master_rotation_keeps_every_record() {
        let (d, mut s, m) = store();
        for i in 0..20 {
            s.set(
                &Scope::Platform,
                &key(&format!("K{i}")),
                val(&format!("v{i}")),
                spec(),
                "x",
            )
            .expect("set");
        }
        let new = MasterKey::generate().expect("rng");
        s.rotate_master(&m, &new, "ops").expect("rotate");
        drop(s);
        assert!(matches!(
            SecretStore::open(&d.path().join("db"), &m),
            Err(StoreError::WrongMasterKey { .. })
        ));
        let s = SecretStore::open(&d.path().join("db"), &new).expect("open with new");
        for i in 0..20 {
            let (_, v) = s
                .reveal(&Scope::Platform, &key(&format!("K{i}")))
                .expect("reveal");
            assert_eq!(v.expose(), format!("v{i}").as_bytes());
        }
    }

    /// A backend whose appends (audit records) can be made to fail.
    struct AuditFails {
        inner: crate::store::MemoryBackend,
        fail: std::sync::Arc<std::sync::atomic::AtomicBool>,
    }

    impl Backend for AuditFails {
        fn get(&self, ns: &str, id: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
            self.inner.get(ns, id)
        }
        fn put(&self, ns: &str, id: &[u8], value: &[u8]) -> Result<(), BackendError> {
            self.inner.put(ns, id, value)
        }
        fn delete(&self, ns: &str, id: &[u8]) -> Result<bool, BackendError> {
            self.inner.delete(ns, id)
        }
        fn scan(&self, ns: &str, prefix: &[u8]) -> Result<super::super::Records, BackendError> {
            self.inner.scan(ns, prefix)
        }
        fn append(&self, ns: &str, value: &[u8]) -> Result<u64, BackendError> {
            if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(BackendError::Io(std::io::Error::other(
                    "No space left on device",
                )));
            }
            self.inner.append(ns, value)
        }
        fn flush(&self) -> Result<(), BackendError> {
            self.inner.flush()
        }
    }

    #[test]
    fn every_change_is_audited_with_its_actor_and_never_a_value() {
        let (_d, mut s, m) = store();
        let ws = Scope::Platform;
        s.set(&ws, &key("A"), val("value-set-1"), spec(), "alice")
            .expect("set");
        s.rotate(&ws, &key("A"), val("value-rotated-2"), true, "bob")
            .expect("rotate");
        s.set(&ws, &key("B"), val("value-of-b"), spec(), "mallory")
            .expect("set");
        s.delete(&ws, &key("A"), "carol").expect("delete");
        s.delete_member_secrets("mallory", "admin").expect("remove");
        let new = MasterKey::generate().expect("rng");
        s.rotate_master(&m, &new, "ops").expect("rotate master");
        let (records, bad) = crate::audit::read_all(&s).expect("read");
        assert_eq!(bad, 0);
        let got: Vec<_> = records
            .iter()
            .map(|r| {
                (
                    r.event,
                    r.actor.as_deref().unwrap_or("-"),
                    r.key.as_str(),
                    r.version,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (AuditEvent::SecretSet, "alice", "A", Some(1)),
                (AuditEvent::SecretRotate, "bob", "A", Some(2)),
                (AuditEvent::SecretSet, "mallory", "B", Some(1)),
                (AuditEvent::SecretDelete, "carol", "A", Some(2)),
                (AuditEvent::MemberRemove, "admin", "", None),
                (AuditEvent::SecretDelete, "admin", "B", Some(1)),
                (AuditEvent::MasterRotate, "ops", "", None),
            ]
        );
        assert_eq!(records[4].user, "mallory");
        assert!(
            records
                .iter()
                .take(4)
                .all(|r| r.scope.as_deref() == Some("platform"))
        );
        let all = serde_json::to_string(&records).expect("json");
        assert!(!all.contains("value-"), "{all}");
        // The chain goes on under the new master key (the data key did not change).
        let report = crate::audit::verify(&s).expect("verify");
        assert!(report.is_intact(), "{:?}", report.findings);
        assert_eq!(report.chained, 7);
    }

    #[test]
    fn a_change_whose_audit_record_cannot_be_written_is_not_made() {
        let fail = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let backend = AuditFails {
            inner: crate::store::MemoryBackend::default(),
            fail: fail.clone(),
        };
        let m = MasterKey::generate().expect("rng");
        let mut s = SecretStore::init_with(Box::new(backend), "mem", &m).expect("init");
        let ws = Scope::Platform;
        s.set(&ws, &key("A"), val("v1"), spec(), "alice")
            .expect("set");
        fail.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(matches!(
            s.set(&ws, &key("B"), val("v"), spec(), "alice"),
            Err(StoreError::Audit(_))
        ));
        assert!(matches!(
            s.rotate(&ws, &key("A"), val("v2"), true, "alice"),
            Err(StoreError::Audit(_))
        ));
        assert!(matches!(
            s.delete(&ws, &key("A"), "alice"),
            Err(StoreError::Audit(_))
        ));
        assert!(matches!(
            s.delete_member_secrets("alice", "admin"),
            Err(StoreError::Audit(_))
        ));
        let new = MasterKey::generate().expect("rng");
        assert!(matches!(
            s.rotate_master(&m, &new, "ops"),
            Err(StoreError::Audit(_))
        ));
        let err = s
            .set(&ws, &key("B"), val("v"), spec(), "alice")
            .expect_err("refused");
        assert!(err.to_string().contains("nothing was changed"), "{err}");
        // Nothing changed: B absent, A at version 1 with its value, the old key opens.
        assert!(s.meta(&ws, &key("B")).expect("meta").is_none());
        let (meta, v) = s.reveal(&ws, &key("A")).expect("reveal");
        assert_eq!((meta.version, v.expose()), (1, &b"v1"[..]));
        let wrapped = s.backend.get(NS_META, DEK_ID).expect("get").expect("dek");
        assert!(m.unwrap_data_key(&wrapped).is_ok());
    }

    #[test]
    fn removing_a_member_deletes_what_they_created_in_every_scope_and_all_of_their_own() {
        let (_d, s, _) = store();
        let scopes = [
            Scope::Platform,
            Scope::Workspace {
                workspace: "w".into(),
            },
            Scope::User {
                user: "mallory".into(),
            },
        ];
        for sc in &scopes {
            s.set(sc, &key("BY_MALLORY"), val("m"), spec(), "mallory")
                .expect("set");
            s.set(sc, &key("BY_ALICE"), val("a"), spec(), "alice")
                .expect("set");
        }
        // Rotated by mallory but created by alice: stays (creator owns it).
        s.rotate(
            &Scope::Platform,
            &key("BY_ALICE"),
            val("a2"),
            true,
            "mallory",
        )
        .expect("rotate");
        let deleted = s.delete_member_secrets("mallory", "admin").expect("delete");
        // Mallory's three, and alice's in mallory's own scope.
        assert_eq!(deleted.len(), 4);
        let left: Vec<_> = s
            .list(None)
            .expect("list")
            .into_iter()
            .map(|m| m.expect("ok").key.to_string())
            .collect();
        assert_eq!(left, vec!["BY_ALICE"; 2]);
    }

    #[test]
    fn a_removed_members_own_scopes_are_emptied_whoever_stored_the_secrets() {
        let (_d, s, _) = store();
        let sc = |t: &str| Scope::parse(t).expect(t);
        // An admin typed these for alice: they are hers all the same.
        s.set(
            &sc("user:alice"),
            &key("BY_ADMIN"),
            val("a"),
            spec(),
            "admin",
        )
        .expect("set");
        s.set(
            &sc("user:alice@w/f"),
            &key("BY_ADMIN"),
            val("a"),
            spec(),
            "admin",
        )
        .expect("set");
        // The keys of a workflow she built are hers too: the builder tier resolves them
        // for every run of it, after she left as before.
        s.set(
            &sc("builder:alice@w/f"),
            &key("BY_ADMIN"),
            val("a"),
            spec(),
            "admin",
        )
        .expect("set");
        // Another member's scope whose name starts with hers, and a shared scope: not hers.
        s.set(
            &sc("user:alicia"),
            &key("BY_ADMIN"),
            val("a"),
            spec(),
            "admin",
        )
        .expect("set");
        s.set(
            &sc("workspace:w"),
            &key("BY_ADMIN"),
            val("a"),
            spec(),
            "admin",
        )
        .expect("set");
        let deleted = s.delete_member_secrets("alice", "admin").expect("remove");
        let mut gone: Vec<String> = deleted.iter().map(|m| m.scope.to_string()).collect();
        gone.sort();
        assert_eq!(gone, ["builder:alice@w/f", "user:alice", "user:alice@w/f"]);
        let mut left: Vec<String> = s
            .list(None)
            .expect("list")
            .into_iter()
            .map(|m| m.expect("ok").scope.to_string())
            .collect();
        left.sort();
        assert_eq!(left, ["user:alicia", "workspace:w"]);
    }

    #[test]
    fn a_copy_keeps_quota_counts_so_a_migration_does_not_reset_a_window() {
        let (dir, s, m) = store();
        let ws = Scope::Platform;
        let limited = SecretSpec {
            quota: Quota {
                per_minute: Some(2),
                per_day: None,
            },
            ..spec()
        };
        let meta = s
            .set(&ws, &key("LIMITED"), val("v1"), limited, "a")
            .expect("set");
        let now = 1_800_000_000_000;
        s.take_quota(&[&meta], now).expect("first");
        s.take_quota(&[&meta], now).expect("second");

        let to = dir.path().join("copy");
        let report = {
            let target = SledBackend::open(&to).expect("target");
            s.copy_into(&target, "copy").expect("copy")
        };
        assert!(report.contains(&("quota", 1)), "{report:?}");
        let copy = SecretStore::open(&to, &m).expect("open the copy");
        let err = copy.take_quota(&[&meta], now).expect_err("window full");
        assert!(matches!(err, QuotaRefusal::Exceeded { .. }), "{err}");
        // A new window counts from zero, in the copy as in the original.
        copy.take_quota(&[&meta], now + 60_000)
            .expect("next minute");
    }
}
