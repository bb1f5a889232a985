//! Storage backends: bytes in, bytes out. A backend never sees a plaintext value.

use std::path::Path;

/// Why a backend operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// Another process has the store open (sled holds an exclusive lock on its directory).
    #[error(
        "the store at {path} is in use by another process (only one process may open a sled store; use `latchkey serve` to share it)"
    )]
    InUse {
        /// Store directory.
        path: String,
    },
    /// The store's files are damaged.
    #[error("the store's files are damaged: {0}")]
    Corrupt(String),
    /// An I/O error.
    #[error("store I/O failed: {0}")]
    Io(String),
}

/// Records returned by a scan: (id, bytes), in id order.
pub type Records = Vec<(Vec<u8>, Vec<u8>)>;

/// Raw storage of records by id, in named namespaces.
pub trait Backend: Send + Sync {
    /// The record stored under `id` in `ns`.
    fn get(&self, ns: &str, id: &[u8]) -> Result<Option<Vec<u8>>, BackendError>;
    /// Stores `value` under `id`; durable when this returns.
    fn put(&self, ns: &str, id: &[u8], value: &[u8]) -> Result<(), BackendError>;
    /// Removes `id`; durable when this returns. Returns whether it existed.
    fn delete(&self, ns: &str, id: &[u8]) -> Result<bool, BackendError>;
    /// All records whose id starts with `prefix`, in id order.
    fn scan(&self, ns: &str, prefix: &[u8]) -> Result<Records, BackendError>;
    /// Appends `value` under a fresh increasing id; not flushed (see [`Backend::flush`]).
    fn append(&self, ns: &str, value: &[u8]) -> Result<u64, BackendError>;
    /// Makes every earlier write durable.
    fn flush(&self) -> Result<(), BackendError>;
}

/// The embedded default: a sled database in a directory.
pub struct SledBackend {
    db: sled::Db,
    path: String,
    /// Trees opened so far, by namespace: `open_tree` takes a lock and a lookup on every
    /// call, and resolution reads up to six records per key.
    trees: std::sync::RwLock<Vec<(String, sled::Tree)>>,
}

impl SledBackend {
    /// Opens (creating if needed) the sled database at `dir`.
    pub fn open(dir: &Path) -> Result<Self, BackendError> {
        let path = dir.display().to_string();
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::LowSpace)
            .open()
            .map_err(|e| classify(e, &path))?;
        Ok(SledBackend {
            db,
            path,
            trees: std::sync::RwLock::new(Vec::new()),
        })
    }

    fn tree(&self, ns: &str) -> Result<sled::Tree, BackendError> {
        let known = self.trees.read().unwrap_or_else(|p| p.into_inner());
        if let Some((_, t)) = known.iter().find(|(n, _)| n == ns) {
            return Ok(t.clone());
        }
        drop(known);
        let tree = self.db.open_tree(ns).map_err(|e| classify(e, &self.path))?;
        self.trees
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push((ns.to_owned(), tree.clone()));
        Ok(tree)
    }
}

fn classify(e: sled::Error, path: &str) -> BackendError {
    match e {
        sled::Error::Io(io)
            if io.kind() == std::io::ErrorKind::WouldBlock
                || io.to_string().contains("could not acquire lock") =>
        {
            BackendError::InUse {
                path: path.to_owned(),
            }
        }
        sled::Error::Io(io) => BackendError::Io(io.to_string()),
        sled::Error::Corruption { .. } => BackendError::Corrupt(e.to_string()),
        other => BackendError::Corrupt(other.to_string()),
    }
}

impl Backend for SledBackend {
    fn get(&self, ns: &str, id: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        Ok(self
            .tree(ns)?
            .get(id)
            .map_err(|e| classify(e, &self.path))?
            .map(|v| v.to_vec()))
    }

    fn put(&self, ns: &str, id: &[u8], value: &[u8]) -> Result<(), BackendError> {
        let tree = self.tree(ns)?;
        tree.insert(id, value)
            .map_err(|e| classify(e, &self.path))?;
        tree.flush().map_err(|e| classify(e, &self.path))?;
        Ok(())
    }

    fn delete(&self, ns: &str, id: &[u8]) -> Result<bool, BackendError> {
        let tree = self.tree(ns)?;
        let existed = tree
            .remove(id)
            .map_err(|e| classify(e, &self.path))?
            .is_some();
        tree.flush().map_err(|e| classify(e, &self.path))?;
        Ok(existed)
    }

    fn scan(&self, ns: &str, prefix: &[u8]) -> Result<Records, BackendError> {
        self.tree(ns)?
            .scan_prefix(prefix)
            .map(|r| {
                r.map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(|e| classify(e, &self.path))
            })
            .collect()
    }

    fn append(&self, ns: &str, value: &[u8]) -> Result<u64, BackendError> {
        let id = self.db.generate_id().map_err(|e| classify(e, &self.path))?;
        self.tree(ns)?
            .insert(id.to_be_bytes(), value)
            .map_err(|e| classify(e, &self.path))?;
        Ok(id)
    }

    fn flush(&self) -> Result<(), BackendError> {
        self.db.flush().map_err(|e| classify(e, &self.path))?;
        Ok(())
    }
}

/// (namespace, id) → bytes.
type MemoryMap = std::collections::BTreeMap<(String, Vec<u8>), Vec<u8>>;

/// An in-memory backend: for tests, fuzzing and embedders' own tests. Not durable.
#[derive(Default)]
pub struct MemoryBackend {
    trees: std::sync::Mutex<MemoryMap>,
    next_id: std::sync::atomic::AtomicU64,
}

impl MemoryBackend {
    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryMap> {
        // A panic while holding the lock leaves a consistent map: recover it.
        self.trees.lock().unwrap_or_else(|p| p.into_inner())
    }
}

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
