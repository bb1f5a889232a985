//! The embedded store opened at its first use, not when [`SecretStore`] is opened.
//!
//! Opening sled costs about half of a `latchkey run` of a step that uses no credential
//! (its threads, snapshot read and fsyncs), yet such a run needs only the data key (the
//! compiled-component cache is authenticated with a key derived from it). So a sled store
//! keeps a copy of its wrapped data key in a file beside the database (`data-key`, 0600):
//! [`SecretStore::open`] unwraps that, and the database is opened by the first call that
//! reads or writes a record. When it is, its own data-key record must be the file's, byte
//! for byte; otherwise nothing is read or written through it.
//!
//! [`SecretStore`]: super::SecretStore
//! [`SecretStore::open`]: super::SecretStore::open

use super::backend::{
    AppendBuilder, Backend, BackendError, Expected, Record, Records,
};
use super::sled_store::SledBackend;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// The file beside the database holding the wrapped data key.
pub(crate) const DATA_KEY_FILE: &str = "data-key";

/// A sled store opened by its first use.
pub(crate) struct DeferredSled {
    dir: PathBuf,
    /// The wrapped data key the database must hold (what `data-key` holds).
    wrapped: Vec<u8>,
    namespace: &'static str,
    id: &'static [u8],
    open: OnceLock<SledBackend>,
    opening: Mutex<()>,
}

impl DeferredSled {
    /// A store at `dir` whose database must hold `wrapped` under `namespace`/`id`.
    pub(crate) fn new(
        dir: &Path,
        wrapped: Vec<u8>,
        namespace: &'static str,
        id: &'static [u8],
    ) -> Self {
        DeferredSled {
            dir: dir.to_owned(),
            wrapped,
            namespace,
            id,
            open: OnceLock::new(),
            opening: Mutex::new(()),
        }
    }

    fn db(&self) -> Result<&SledBackend, BackendError> {
        if let Some(db) = self.open.get() {
            return Ok(db);
        }
        let _one = self.opening.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(db) = self.open.get() {
            return Ok(db);
        }
        let db = SledBackend::open(&self.dir)?;
        if db.get(self.namespace, self.id)?.as_deref() != Some(self.wrapped.as_slice()) {
            return Err(BackendError::Schema {
                store: self.dir.display().to_string(),
                problem: format!(
                    "holds another data key than its {DATA_KEY_FILE} file (restored from another store?): remove {} to use the database's",
                    self.dir.join(DATA_KEY_FILE).display()
                ),
            });
        }
        Ok(self.open.get_or_init(|| db))
    }
}

/// Reads the wrapped data key beside the database at `dir`, if the file is there.
pub(crate) fn read_data_key(dir: &Path) -> Result<Option<Vec<u8>>, super::StoreError> {
    let path = dir.join(DATA_KEY_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            super::check_private_file(&path)?;
            Ok(Some(bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(BackendError::IoAt {
            action: "reading",
            path,
            source,
        }
        .into()),
    }
}

/// Writes the wrapped data key beside the database (0600, atomically: a torn file is
/// never read as a key).
pub(crate) fn write_data_key(dir: &Path, wrapped: &[u8]) -> Result<(), BackendError> {
    use std::io::Write;
    let path = dir.join(DATA_KEY_FILE);
    let tmp = dir.join(format!("{DATA_KEY_FILE}.tmp"));
    let io = |action, path: &Path| {
        let path = path.to_owned();
        move |source| BackendError::IoAt {
            action,
            path,
            source,
        }
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(&tmp).map_err(io("writing", &tmp))?;
    f.write_all(wrapped).map_err(io("writing", &tmp))?;
    f.sync_all().map_err(io("syncing", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(io("renaming", &path))?;
    Ok(())
}

impl Backend for DeferredSled {
    fn get(&self, ns: &str, id: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        self.db()?.get(ns, id)
    }
    fn put(&self, ns: &str, id: &[u8], value: &[u8]) -> Result<(), BackendError> {
        self.db()?.put(ns, id, value)
    }
    fn delete(&self, ns: &str, id: &[u8]) -> Result<bool, BackendError> {
        self.db()?.delete(ns, id)
    }
    fn scan(&self, ns: &str, prefix: &[u8]) -> Result<Records, BackendError> {
        self.db()?.scan(ns, prefix)
    }
    fn append(&self, ns: &str, value: &[u8]) -> Result<u64, BackendError> {
        self.db()?.append(ns, value)
    }
    fn scan_appended_since(
        &self,
        ns: &str,
        cursor: &[u8],
    ) -> Result<(Records, Vec<u8>), BackendError> {
        self.db()?.scan_appended_since(ns, cursor)
    }
    fn flush(&self) -> Result<(), BackendError> {
        // Nothing to make durable if the database was never opened.
        match self.open.get() {
            Some(db) => db.flush(),
            None => Ok(()),
        }
    }
    fn last(&self, ns: &str) -> Result<Option<Record>, BackendError> {
        self.db()?.last(ns)
    }
    fn compare_and_put(
        &self,
        ns: &str,
        id: &[u8],
        expected: Option<Expected<'_>>,
        value: &[u8],
        version: u64,
    ) -> Result<bool, BackendError> {
        self.db()?.compare_and_put(ns, id, expected, value, version)
    }
    fn append_chained(&self, ns: &str, build: AppendBuilder) -> Result<u64, BackendError> {
        self.db()?.append_chained(ns, build)
    }
    fn append_all(&self, ns: &str, values: &[Vec<u8>]) -> Result<u64, BackendError> {
        self.db()?.append_all(ns, values)
    }
    fn append_chained_all(
        &self,
        ns: &str,
        builds: Vec<AppendBuilder>,
    ) -> Result<u64, BackendError> {
        self.db()?.append_chained_all(ns, builds)
    }
    // The trait's defaults would work, but sled does these better: one flush for a batch
    // (the defaults put each id with a flush of its own: five syncs per run record written
    // and ended instead of two), and pages read from the ordered index, not whole scans.
    fn put_batch(
        &self,
        ns: &str,
        puts: &[(&[u8], &[u8])],
        deletes: &[&[u8]],
    ) -> Result<(), BackendError> {
        self.db()?.put_batch(ns, puts, deletes)
    }
    fn scan_newest(
        &self,
        ns: &str,
        prefix: &[u8],
        before: Option<&[u8]>,
        limit: usize,
    ) -> Result<Records, BackendError> {
        self.db()?.scan_newest(ns, prefix, before, limit)
    }
    fn scan_appended_newest(
        &self,
        ns: &str,
        before: Option<&[u8]>,
        limit: usize,
    ) -> Result<Records, BackendError> {
        self.db()?.scan_appended_newest(ns, before, limit)
    }
}
