//! Storage backends: bytes in, bytes out. A backend never sees a plaintext value.

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a backend operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// Another process has the store open (sled holds an exclusive lock on its directory).
    #[error(
        "the store at {path} is in use by another process (only one process may open a sled store): if a `latchkey serve` holds it, reach it with `--server URL` (or LATCHKEY_SERVER) and a token; to share a store, serve it"
    )]
    InUse {
        /// Store directory.
        path: String,
    },
    /// The store's files are damaged; the cause is the backend's own error.
    #[error("the store's files are damaged: {0}")]
    Corrupt(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// An I/O error.
    #[error("store I/O failed: {0}")]
    Io(#[source] std::io::Error),
    /// An I/O error while doing `action` to `path` (creating the store's directory,
    /// removing a damaged file).
    #[error("store I/O failed: {action} {}: {source}", path.display())]
    IoAt {
        /// What was being done, e.g. `creating`.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The shared database could not be reached, or stopped answering. The call was not
    /// made, or (for a write) its outcome is unknown; the next call reconnects.
    #[error("the database {store} is unavailable: {reason}; the next call reconnects")]
    Unavailable {
        /// The database, without its password (`postgres://user@host:port/db`).
        store: String,
        /// Why, in words.
        reason: String,
        /// The client's error, if there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The database refused a statement.
    #[error("the database {store} refused {what}: {reason}")]
    Database {
        /// The database, without its password.
        store: String,
        /// What was being done.
        what: &'static str,
        /// The server's message.
        reason: String,
        /// The client's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The database's schema is missing or not the one this binary knows.
    #[error("the database {store} {problem}")]
    Schema {
        /// The database, without its password.
        store: String,
        /// What is wrong, and what to run.
        problem: String,
    },
    /// A namespace the backend keeps no table for.
    #[error("the store has no namespace {0:?}")]
    UnknownNamespace(String),
}

/// What a compare-and-put expects to find: the exact bytes read, and the version they
/// hold (a backend with a version column compares that; others compare the bytes).
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The record as it was read.
    pub bytes: &'a [u8],
    /// Its version.
    pub version: u64,
}

/// Builds the record to append from the newest one in the namespace (`None` if empty).
/// Called again if another writer appended first, so it must not have side effects.
pub type AppendBuilder = Box<dyn Fn(Option<&[u8]>) -> Vec<u8> + Send + Sync>;

/// One stored record: (id, bytes).
pub type Record = (Vec<u8>, Vec<u8>);

/// Records returned by a scan: (id, bytes), in id order.
pub type Records = Vec<Record>;

/// Raw storage of records by id, in named namespaces.
pub trait Backend: Send + Sync {
    /// The record stored under `id` in `ns`.
    fn get(&self, ns: &str, id: &[u8]) -> Result<Option<Vec<u8>>, BackendError>;
    /// Stores `value` under `id`; durable when this returns.
    fn put(&self, ns: &str, id: &[u8], value: &[u8]) -> Result<(), BackendError>;
    /// The records stored under each of `ids` in `ns`, in the order of `ids`. One round
    /// trip on a backend whose reads cross a network ([`Backend::is_remote`]); the default
    /// reads them one by one.
    fn get_many(&self, ns: &str, ids: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, BackendError> {
        ids.iter().map(|id| self.get(ns, id)).collect()
    }
    /// Whether a read costs a round trip to another process (PostgreSQL): then reading
    /// every record a call may need at once ([`Backend::get_many`]) is cheaper than reading
    /// them as needed, which is cheaper on an embedded store.
    fn is_remote(&self) -> bool {
        false
    }
    /// Removes `id`; durable when this returns. Returns whether it existed.
    fn delete(&self, ns: &str, id: &[u8]) -> Result<bool, BackendError>;
    /// All records whose id starts with `prefix`, in id order.
    fn scan(&self, ns: &str, prefix: &[u8]) -> Result<Records, BackendError>;
    /// Appends `value` under a fresh increasing id. When this returns, the record survives
    /// this process being killed at any later instant; surviving a power failure as well
    /// takes a [`Backend::flush`] (or, for an embedded store, the log's sync window:
    /// [`SYNC_WINDOW`](super::log::SYNC_WINDOW)).
    fn append(&self, ns: &str, value: &[u8]) -> Result<u64, BackendError>;
    /// Makes every earlier write durable, power failures included.
    fn flush(&self) -> Result<(), BackendError>;
    /// The records appended to `ns` after `cursor` (empty: all of them), oldest first, and
    /// the cursor that follows them, for a reader that keeps up with a growing namespace
    /// (the audit trail) without reading it whole each time.
    ///
    /// The default reads every record and skips as many as the cursor counts: right for
    /// any backend whose appended records keep their order, but no cheaper than a scan.
    fn scan_appended_since(
        &self,
        ns: &str,
        cursor: &[u8],
    ) -> Result<(Records, Vec<u8>), BackendError> {
        let all = self.scan(ns, b"")?;
        let seen = <[u8; 8]>::try_from(cursor).map_or(0, u64::from_be_bytes);
        let count = all.len() as u64;
        let new = all
            .into_iter()
            .skip(usize::try_from(seen).unwrap_or(usize::MAX))
            .collect();
        Ok((new, count.to_be_bytes().to_vec()))
    }
    /// The record with the greatest id in `ns` (the newest appended one), if any.
    fn last(&self, ns: &str) -> Result<Option<Record>, BackendError> {
        Ok(self.scan(ns, b"")?.pop())
    }
    /// Up to `limit` records appended to `ns` before the one with id `before` (`None`: the
    /// newest), newest first: a page of the audit trail read from its end.
    ///
    /// The default reads every record; the sled log and PostgreSQL read only the page.
    fn scan_appended_newest(
        &self,
        ns: &str,
        before: Option<&[u8]>,
        limit: usize,
    ) -> Result<Records, BackendError> {
        let mut all = self.scan(ns, b"")?;
        if let Some(b) = before {
            match all.iter().position(|(id, _)| id.as_slice() == b) {
                Some(at) => all.truncate(at),
                None => all.clear(),
            }
        }
        Ok(all.into_iter().rev().take(limit).collect())
    }
    /// Stores every `(id, value)` of `puts` and removes every id of `deletes`, durable when
    /// this returns: one sync for all of them where the backend can (a run's record and
    /// its index entries). Not atomic: readers must tolerate an index entry whose record
    /// is gone.
    fn put_batch(
        &self,
        ns: &str,
        puts: &[(&[u8], &[u8])],
        deletes: &[&[u8]],
    ) -> Result<(), BackendError> {
        for (id, value) in puts {
            self.put(ns, id, value)?;
        }
        for id in deletes {
            self.delete(ns, id)?;
        }
        Ok(())
    }
    /// Up to `limit` records of `ns` whose id starts with `prefix` and, with `before`, is
    /// less than it: the greatest ids first. For pages of a namespace whose ids grow with
    /// time (runs), newest first, without reading the rest.
    ///
    /// The default scans the prefix and keeps the last ones; backends with ordered
    /// indexes (sled, PostgreSQL) read only what they return.
    fn scan_newest(
        &self,
        ns: &str,
        prefix: &[u8],
        before: Option<&[u8]>,
        limit: usize,
    ) -> Result<Records, BackendError> {
        let mut all = self.scan(ns, prefix)?;
        if let Some(b) = before {
            all.retain(|(id, _)| id.as_slice() < b);
        }
        Ok(all.into_iter().rev().take(limit).collect())
    }
    /// Stores `value` (holding `version`) under `id` only if the record there is still
    /// `expected` (`None`: there is none); durable when this returns. Returns whether it
    /// was stored: `false` means another writer changed the record first, and nothing
    /// was written.
    ///
    /// The default is a read then a write, atomic only under the caller's own locks:
    /// a backend that several processes write must override it.
    fn compare_and_put(
        &self,
        ns: &str,
        id: &[u8],
        expected: Option<Expected<'_>>,
        value: &[u8],
        version: u64,
    ) -> Result<bool, BackendError> {
        let _ = version;
        let current = self.get(ns, id)?;
        if current.as_deref() != expected.map(|e| e.bytes) {
            return Ok(false);
        }
        self.put(ns, id, value)?;
        Ok(true)
    }
    /// Appends the record `build` makes from the newest record of `ns`, such that no other
    /// record is appended between the one `build` saw and this one (records chained by a
    /// MAC of their predecessor). Not flushed. Returns the new id.
    ///
    /// The default reads the last record then appends, which is enough where one process
    /// holds the store and serializes its appends (sled, memory); a backend that several
    /// processes append to must override it.
    fn append_chained(&self, ns: &str, build: AppendBuilder) -> Result<u64, BackendError> {
        let last = self.last(ns)?;
        let value = build(last.as_ref().map(|(_, v)| v.as_slice()));
        self.append(ns, &value)
    }
    /// Appends `values` in order under fresh increasing ids, as [`Backend::append`] does
    /// each: with one `write(2)` (or one statement) where the backend can, so that records
    /// written together cost one system call. Returns the last id.
    fn append_all(&self, ns: &str, values: &[Vec<u8>]) -> Result<u64, BackendError> {
        let mut last = 0;
        for v in values {
            last = self.append(ns, v)?;
        }
        Ok(last)
    }
    /// [`Backend::append_chained`] for several records: each is built from the one before
    /// it (the first from the newest stored), with nothing appended between them, and all
    /// are appended together ([`Backend::append_all`]). Returns the last id.
    ///
    /// The default is right where one process holds the store and serializes its appends;
    /// a backend that several processes append to must override it.
    fn append_chained_all(
        &self,
        ns: &str,
        builds: Vec<AppendBuilder>,
    ) -> Result<u64, BackendError> {
        let mut previous = self.last(ns)?.map(|(_, v)| v);
        let mut values = Vec::with_capacity(builds.len());
        for build in builds {
            let value = build(previous.as_deref());
            values.push(value.clone());
            previous = Some(value);
        }
        self.append_all(ns, &values)
    }
}

/// A backend shared with its owner: a store over `Arc<B>` while the owner keeps reaching
/// the same records (as another host sharing the store would). Every call, defaults
/// included, goes to `B`'s own.
impl<B: Backend + ?Sized> Backend for Arc<B> {
    fn get(&self, ns: &str, id: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        (**self).get(ns, id)
    }
    fn get_many(&self, ns: &str, ids: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, BackendError> {
        (**self).get_many(ns, ids)
    }
    fn is_remote(&self) -> bool {
        (**self).is_remote()
    }
    fn put(&self, ns: &str, id: &[u8], value: &[u8]) -> Result<(), BackendError> {
        (**self).put(ns, id, value)
    }
    fn delete(&self, ns: &str, id: &[u8]) -> Result<bool, BackendError> {
        (**self).delete(ns, id)
    }
    fn scan(&self, ns: &str, prefix: &[u8]) -> Result<Records, BackendError> {
        (**self).scan(ns, prefix)
    }
    fn append(&self, ns: &str, value: &[u8]) -> Result<u64, BackendError> {
        (**self).append(ns, value)
    }
    fn flush(&self) -> Result<(), BackendError> {
        (**self).flush()
    }
    fn scan_appended_since(
        &self,
        ns: &str,
        cursor: &[u8],
    ) -> Result<(Records, Vec<u8>), BackendError> {
        (**self).scan_appended_since(ns, cursor)
    }
    fn last(&self, ns: &str) -> Result<Option<Record>, BackendError> {
        (**self).last(ns)
    }
    fn scan_newest(
        &self,
        ns: &str,
        prefix: &[u8],
        before: Option<&[u8]>,
        limit: usize,
    ) -> Result<Records, BackendError> {
        (**self).scan_newest(ns, prefix, before, limit)
    }
    fn put_batch(
        &self,
        ns: &str,
        puts: &[(&[u8], &[u8])],
        deletes: &[&[u8]],
    ) -> Result<(), BackendError> {
        (**self).put_batch(ns, puts, deletes)
    }
    fn scan_appended_newest(
        &self,
        ns: &str,
        before: Option<&[u8]>,
        limit: usize,
    ) -> Result<Records, BackendError> {
        (**self).scan_appended_newest(ns, before, limit)
    }
    fn compare_and_put(
        &self,
        ns: &str,
        id: &[u8],
        expected: Option<Expected<'_>>,
        value: &[u8],
        version: u64,
    ) -> Result<bool, BackendError> {
        (**self).compare_and_put(ns, id, expected, value, version)
    }
    fn append_chained(&self, ns: &str, build: AppendBuilder) -> Result<u64, BackendError> {
        (**self).append_chained(ns, build)
    }
    fn append_all(&self, ns: &str, values: &[Vec<u8>]) -> Result<u64, BackendError> {
        (**self).append_all(ns, values)
    }
    fn append_chained_all(
        &self,
        ns: &str,
        builds: Vec<AppendBuilder>,
    ) -> Result<u64, BackendError> {
        (**self).append_chained_all(ns, builds)
    }
}

/// Where a page of ids starting with `prefix`, below `before` if given, ends (exclusive;
/// `None`: at the end of the namespace).
pub(crate) fn page_end(prefix: &[u8], before: Option<&[u8]>) -> Option<Vec<u8>> {
    match (before, prefix_end(prefix)) {
        (Some(b), Some(e)) => Some(b.min(e.as_slice()).to_vec()),
        (Some(b), None) => Some(b.to_vec()),
        (None, e) => e,
    }
}

/// The least id greater than every id starting with `prefix` (`None`: there is none, the
/// prefix being empty or all 0xff).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// (namespace, id) → bytes.
#[cfg(any(test, feature = "testing"))]
type MemoryMap = std::collections::BTreeMap<(String, Vec<u8>), Vec<u8>>;

/// An in-memory backend: for tests and fuzzing. Not durable.
#[cfg(any(test, feature = "testing"))]
#[derive(Default)]
pub struct MemoryBackend {
    trees: std::sync::Mutex<MemoryMap>,
    next_id: std::sync::atomic::AtomicU64,
}

#[cfg(any(test, feature = "testing"))]
impl MemoryBackend {
    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryMap> {
        // A panic while holding the lock leaves a consistent map: recover it.
        self.trees.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(any(test, feature = "testing"))]
impl Backend for MemoryBackend {
    fn get(&self, ns: &str, id: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        Ok(self.lock().get(&(ns.to_owned(), id.to_vec())).cloned())
    }

    fn put(&self, ns: &str, id: &[u8], value: &[u8]) -> Result<(), BackendError> {
        self.lock()
            .insert((ns.to_owned(), id.to_vec()), value.to_vec());
        Ok(())
    }

    fn delete(&self, ns: &str, id: &[u8]) -> Result<bool, BackendError> {
        Ok(self.lock().remove(&(ns.to_owned(), id.to_vec())).is_some())
    }

    fn scan(&self, ns: &str, prefix: &[u8]) -> Result<Records, BackendError> {
        Ok(self
            .lock()
            .iter()
            .filter(|((n, id), _)| n == ns && id.starts_with(prefix))
            .map(|((_, id), v)| (id.clone(), v.clone()))
            .collect())
    }

    fn compare_and_put(
        &self,
        ns: &str,
        id: &[u8],
        expected: Option<Expected<'_>>,
        value: &[u8],
        _version: u64,
    ) -> Result<bool, BackendError> {
        let mut map = self.lock();
        let key = (ns.to_owned(), id.to_vec());
        if map.get(&key).map(Vec::as_slice) != expected.map(|e| e.bytes) {
            return Ok(false);
        }
        map.insert(key, value.to_vec());
        Ok(true)
    }

    fn append(&self, ns: &str, value: &[u8]) -> Result<u64, BackendError> {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.put(ns, &id.to_be_bytes(), value)?;
        Ok(id)
    }

    fn flush(&self) -> Result<(), BackendError> {
        Ok(())
    }
}

/// A directory or file that holds keys, ciphertext or native code, refused because
/// someone other than its owner could change it (or it belongs to another user).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path} {problem}; fix it with `{fix}`")]
pub struct PermissionError {
    /// The file or directory.
    pub path: String,
    /// What is wrong (mode or owner).
    pub problem: String,
    /// A command that fixes it.
    pub fix: String,
}

/// The process's effective user id, from `/proc/self/status` (no `unsafe` call needed).
/// `None` where that file does not exist (not Linux); ownership is then not checked.
pub fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    // Uid: real effective saved filesystem
    line.split_whitespace().nth(2)?.parse().ok()
}

#[cfg(unix)]
fn owner_and_mode(path: &Path) -> std::io::Result<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    Ok((m.uid(), m.mode()))
}

#[cfg(unix)]
fn shown(path: &Path) -> String {
    if path.as_os_str().is_empty() {
        ".".to_owned()
    } else {
        path.display().to_string()
    }
}

/// Refuses a directory the project keeps private data in (the store, the compiled-component
/// cache) if it exists and is group- or world-writable or owned by another user than this
/// process's effective user; and its parent if that is writable by others without the
/// sticky bit (someone could rename the directory away and put their own in its place),
/// or owned by another user than this one or root. A directory that does not exist yet
/// passes (it is created 0700 by [`create_private_dir`]).
pub fn check_private_dir(dir: &Path) -> Result<(), PermissionError> {
    #[cfg(unix)]
    {
        let euid = effective_uid();
        let path = shown(dir);
        if let Ok((uid, mode)) = owner_and_mode(dir) {
            if euid.is_some_and(|me| me != uid) {
                return Err(PermissionError {
                    path,
                    problem: format!(
                        "is owned by user id {uid}, not by this process's user (id {})",
                        euid.unwrap_or(0)
                    ),
                    fix: format!("chown -R $(id -u) {}", shown(dir)),
                });
            }
            if mode & 0o022 != 0 {
                return Err(PermissionError {
                    path,
                    problem: format!("is writable by group or others (mode {:o})", mode & 0o7777),
                    fix: format!("chmod 700 {}", shown(dir)),
                });
            }
        }
        let parent = match dir.parent() {
            Some(p) if p.as_os_str().is_empty() => Path::new("."),
            Some(p) => p,
            None => return Ok(()),
        };
        if let Ok((uid, mode)) = owner_and_mode(parent) {
            if euid.is_some_and(|me| me != uid && uid != 0) {
                return Err(PermissionError {
                    path: shown(parent),
                    problem: format!(
                        "(the parent of {path}) is owned by user id {uid}, neither this process's user (id {}) nor root",
                        euid.unwrap_or(0)
                    ),
                    fix: format!("chown $(id -u) {}", shown(parent)),
                });
            }
            if mode & 0o022 != 0 && mode & 0o1000 == 0 {
                return Err(PermissionError {
                    path: shown(parent),
                    problem: format!(
                        "(the parent of {path}) is writable by group or others without the sticky bit (mode {:o}): they could replace {path}",
                        mode & 0o7777
                    ),
                    fix: format!("chmod go-w {}", shown(parent)),
                });
            }
        }
    }
    Ok(())
}

/// Refuses a key file that group or others may read, write or execute (as ssh refuses a
/// private key), or that belongs to another user than this process's effective user.
pub fn check_private_file(file: &Path) -> Result<(), PermissionError> {
    #[cfg(unix)]
    {
        let euid = effective_uid();
        if let Ok((uid, mode)) = owner_and_mode(file) {
            if euid.is_some_and(|me| me != uid) {
                return Err(PermissionError {
                    path: shown(file),
                    problem: format!(
                        "is owned by user id {uid}, not by this process's user (id {})",
                        euid.unwrap_or(0)
                    ),
                    fix: format!("chown $(id -u) {}", shown(file)),
                });
            }
            if mode & 0o077 != 0 {
                return Err(PermissionError {
                    path: shown(file),
                    problem: format!(
                        "is accessible by group or others (mode {:o}); a key file must be readable by its owner only",
                        mode & 0o7777
                    ),
                    fix: format!("chmod 600 {}", shown(file)),
                });
            }
        }
    }
    Ok(())
}

/// Creates `dir` and any missing parents with mode 0700 (existing ones are left as they
/// are: check them with [`check_private_dir`]).
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sled_store::{LOCK_WAIT, SledBackend};

    #[test]
    fn a_store_closed_and_opened_again_at_once_opens() {
        let dir = tempfile::tempdir().expect("tmp");
        // sled's background threads are busiest right after writes: a flush, then a drop.
        for i in 0..200u32 {
            let b = SledBackend::open(dir.path()).expect("reopened right after a drop");
            for j in 0..20u32 {
                b.put(
                    "secrets",
                    &[i.to_be_bytes(), j.to_be_bytes()].concat(),
                    &[7; 512],
                )
                .expect("put");
            }
            b.flush().expect("flush");
        }
    }

    #[test]
    fn appended_records_are_read_from_where_the_last_read_ended() {
        let dir = tempfile::tempdir().expect("tmp");
        let b = SledBackend::open(dir.path()).expect("open");
        // A record an older store kept in the tree: older than the log, read first, once.
        b.put("audit", &7u64.to_be_bytes(), b"in the tree")
            .expect("put");
        b.append("audit", b"one").expect("append");
        let (first, cursor) = b.scan_appended_since("audit", b"").expect("scan");
        let values = |r: &Records| r.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>();
        assert_eq!(values(&first), [b"in the tree".to_vec(), b"one".to_vec()]);
        let (none, same) = b.scan_appended_since("audit", &cursor).expect("scan");
        assert!(none.is_empty());
        assert_eq!(same, cursor);
        b.append("audit", b"two").expect("append");
        b.append("audit", b"three").expect("append");
        let (next, _) = b.scan_appended_since("audit", &cursor).expect("scan");
        assert_eq!(values(&next), [b"two".to_vec(), b"three".to_vec()]);
        // What the whole scan returns, ids included, is the two reads together.
        let mut both = first;
        both.extend(next);
        assert_eq!(both, b.scan("audit", b"").expect("scan"));
    }

    #[test]
    fn the_default_reader_of_appended_records_skips_what_was_read() {
        let b = MemoryBackend::default();
        b.append("audit", b"one").expect("append");
        let (first, cursor) = b.scan_appended_since("audit", b"").expect("scan");
        assert_eq!(first.len(), 1);
        b.append("audit", b"two").expect("append");
        let (next, _) = b.scan_appended_since("audit", &cursor).expect("scan");
        assert_eq!(
            next.iter().map(|(_, v)| v.as_slice()).collect::<Vec<_>>(),
            [b"two"]
        );
    }

    #[test]
    fn a_store_held_open_is_reported_in_use_after_the_wait() {
        let dir = tempfile::tempdir().expect("tmp");
        let _held = SledBackend::open(dir.path()).expect("open");
        let started = std::time::Instant::now();
        let err = SledBackend::open(dir.path())
            .err()
            .expect("a held store does not open twice");
        assert!(matches!(err, BackendError::InUse { .. }), "{err}");
        assert!(
            started.elapsed() < LOCK_WAIT + std::time::Duration::from_secs(2),
            "the wait is bounded"
        );
    }
}
