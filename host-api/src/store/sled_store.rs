//! The embedded default backend: sled for keyed records, and beside it one append-only log
//! file per appended namespace (the audit trail, see [`AppendLog`]).

use super::backend::{Backend, BackendError, Expected, Record, Records, page_end};
use super::absent::Absent;
use super::group_flush::GroupFlush;
use super::journal::{self, Journal};
use super::log::AppendLog;
use super::namespaces::{RUNS as NS_RUNS, SECRETS as NS_SECRETS};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The most memory sled keeps for its page cache.
pub(crate) const SLED_CACHE_BYTES: u64 = 128 << 20;

/// How long [`SledBackend::open`] waits for a lock that may be its own process's.
pub(crate) const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The embedded default: a sled database in a directory, and beside it one append-only
/// log file per appended namespace (`<ns>.log`, the audit trail): see [`AppendLog`] for
/// why appends do not go into sled.
pub struct SledBackend {
    db: sled::Db,
    dir: PathBuf,
    path: String,
    /// Trees opened so far, by namespace: `open_tree` takes a lock and a lookup on every
    /// call, and resolution reads up to six records per key.
    trees: std::sync::RwLock<Vec<(String, sled::Tree)>>,
    /// Logs opened so far, by namespace.
    logs: std::sync::RwLock<Vec<(String, Arc<AppendLog>)>>,
    /// Secret ids known absent (exact: this backend is the store's only writer).
    absent: Absent,
    /// Writers waiting for the disk share flushes.
    group: GroupFlush,
    /// Where the writes of journaled namespaces (runs) are made durable instead of by a
    /// sled flush: see [`journal`].
    journal: Journal,
}

/// Whether the writes of `ns` go through the journal rather than a sled flush.
fn journaled(ns: &str) -> bool {
    ns == NS_RUNS
}

impl SledBackend {
    /// Opens (creating if needed) the sled database at `dir`.
    ///
    /// First removes what a snapshot write that failed half-way (disk full, crash) left
    /// behind, which sled would otherwise read as a damaged store forever:
    /// [`remove_incomplete_snapshots`].
    ///
    /// A store found in use is tried again for up to [`LOCK_WAIT`]: sled 0.34 releases its
    /// lock from a background thread some moments after the last handle is dropped
    /// (spacejam/sled#1234), so a process that closes a store and opens it again can find
    /// its own lock still held. A store another process holds is reported after the wait.
    pub fn open(dir: &Path) -> Result<Self, BackendError> {
        let path = dir.display().to_string();
        let started = std::time::Instant::now();
        let mut pause = std::time::Duration::from_millis(5);
        let db = loop {
            let opened = remove_incomplete_snapshots(dir).and_then(|()| {
                sled::Config::new()
                    .path(dir)
                    .mode(sled::Mode::LowSpace)
                    // sled's default page cache is 1 GiB: a host that keeps run records
                    // must not grow towards that. Reads past the cache come from the
                    // operating system's.
                    .cache_capacity(SLED_CACHE_BYTES)
                    .open()
                    .map_err(|e| classify(e, &path))
            });
            match opened {
                Err(BackendError::InUse { .. }) if started.elapsed() + pause < LOCK_WAIT => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(std::time::Duration::from_millis(100));
                }
                other => break other?,
            }
        };
        // Runs written since the last flush are in the journal: into the trees first.
        let journal_path = journal::path(dir);
        let fail = |e| classify(e, &path);
        let (newest, replayed) = journal::replay(
            &db,
            &journal_path,
            |ns| db.open_tree(ns).map_err(fail),
            fail,
        )?;
        if replayed.applied > 0 {
            tracing::info!(entries = replayed.applied, "applied the run journal's newest writes to the store");
        }
        if replayed.damaged > 0 {
            tracing::warn!(entries = replayed.damaged, "skipped damaged entries of the run journal");
        }
        let held = journal::held(&db.open_tree(NS_RUNS).map_err(fail)?).map_err(fail)?;
        Ok(SledBackend {
            db,
            dir: dir.to_path_buf(),
            path,
            trees: std::sync::RwLock::new(Vec::new()),
            logs: std::sync::RwLock::new(Vec::new()),
            absent: Absent::default(),
            group: GroupFlush::default(),
            journal: Journal::new(journal_path, newest.max(held)),
        })
    }

    /// Returns once what was written before the call is on disk (a flush shared with the
    /// writers waiting at the same time: see `group_flush`).
    fn durable(&self) -> Result<(), BackendError> {
        self.group
            .flush(|| self.db.flush().map(drop))
            .map_err(|e| classify(e, &self.path))
    }

    /// Writes `puts` and `deletes` to the journaled `ns`: its tree, then the journal.
    fn write_journaled(
        &self,
        ns: &str,
        puts: &[(&[u8], &[u8])],
        deletes: &[&[u8]],
    ) -> Result<(), BackendError> {
        let tree = self.tree(ns)?;
        let mut writing = self.journal.lock();
        self.write_in_order(&mut writing, &tree, ns, puts, deletes)
    }

    /// The write of [`SledBackend::write_journaled`], its order held by `writing`. When it
    /// returns, the write survives this process being killed.
    fn write_in_order(
        &self,
        writing: &mut journal::Writing<'_>,
        tree: &sled::Tree,
        ns: &str,
        puts: &[(&[u8], &[u8])],
        deletes: &[&[u8]],
    ) -> Result<(), BackendError> {
        let seq = writing.next_seq();
        let entry = journal::encode(seq, ns, puts, deletes);
        journal::apply(tree, seq, puts, deletes).map_err(|e| classify(e, &self.path))?;
        if entry.len() > super::log::MAX_RECORD {
            // Longer than a journal entry may be (a run whose kept output the operator set
            // above 16 MiB): made durable by a flush instead, as other namespaces' writes
            // are. The tree then holds this entry's number durably, and the journal goes on
            // after it.
            return self.durable();
        }
        let len = writing.append(&entry)?;
        if len > journal::JOURNAL_LIMIT {
            // Every entry is in the trees; once they are on disk the journal is redundant.
            self.db.flush().map_err(|e| classify(e, &self.path))?;
            writing.cut()?;
        }
        Ok(())
    }

    /// Applies `puts` and `deletes` to `ns`'s tree in one batch, not flushed.
    fn apply(
        &self,
        ns: &str,
        puts: &[(&[u8], &[u8])],
        deletes: &[&[u8]],
    ) -> Result<(), BackendError> {
        self.tree(ns)?
            .apply_batch(journal::batch(puts, deletes))
            .map_err(|e| classify(e, &self.path))?;
        for (id, _) in puts {
            self.written(ns, id);
        }
        Ok(())
    }

    /// Forgets a secret id just written from the ids known absent.
    fn written(&self, ns: &str, id: &[u8]) {
        if ns == NS_SECRETS {
            self.absent.written(id);
        }
    }

    /// The log of `ns`; `None` if it has none and `create` is false.
    fn log(&self, ns: &str, create: bool) -> Result<Option<Arc<AppendLog>>, BackendError> {
        by_namespace(&self.logs, ns, || {
            // Namespaces are the crate's own constants; keep them file-name safe regardless.
            debug_assert!(ns.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
            let file = self.dir.join(format!("{ns}.log"));
            if !create && !file.exists() {
                return Ok(None);
            }
            Ok(Some(Arc::new(AppendLog::open(&file)?)))
        })
    }

    /// The records of `ns` in sled itself (not its log) whose id starts with `prefix`.
    fn scan_tree(&self, ns: &str, prefix: &[u8]) -> Result<Records, BackendError> {
        self.tree(ns)?
            .scan_prefix(prefix)
            .filter(|r| !matches!(r, Ok((k, _)) if k.as_ref() == journal::SEQ_ID))
            .map(|r| {
                r.map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(|e| classify(e, &self.path))
            })
            .collect()
    }

    /// Whether `id` is a record kept in the tree of `ns` (not its log).
    fn in_tree(&self, ns: &str, id: &[u8]) -> bool {
        self.tree(ns)
            .and_then(|t| t.contains_key(id).map_err(|e| classify(e, &self.path)))
            .unwrap_or(false)
    }

    fn tree(&self, ns: &str) -> Result<sled::Tree, BackendError> {
        let opened = by_namespace(&self.trees, ns, || {
            let tree = self.db.open_tree(ns).map_err(|e| classify(e, &self.path))?;
            Ok(Some(tree))
        })?;
        opened.ok_or_else(|| unreachable!("opening a tree never declines"))
    }
}

/// The handle of `ns` in `known`, else the one `open` makes (or `None` if it declines),
/// opened under the write lock so that a namespace is opened once: two `AppendLog`s on
/// one file would each keep their own idea of its end.
fn by_namespace<T: Clone>(
    known: &std::sync::RwLock<Vec<(String, T)>>,
    ns: &str,
    open: impl FnOnce() -> Result<Option<T>, BackendError>,
) -> Result<Option<T>, BackendError> {
    let find = |list: &[(String, T)]| list.iter().find(|(n, _)| n == ns).map(|(_, t)| t.clone());
    if let Some(t) = find(&known.read().unwrap_or_else(|p| p.into_inner())) {
        return Ok(Some(t));
    }
    let mut list = known.write().unwrap_or_else(|p| p.into_inner());
    if let Some(t) = find(&list) {
        return Ok(Some(t));
    }
    let opened = open()?;
    if let Some(t) = &opened {
        list.push((ns.to_owned(), t.clone()));
    }
    Ok(opened)
}

/// Removes `snap.*.generating` files in the sled directory `dir` that sled would refuse
/// as damaged (12 bytes or fewer, or a CRC that does not match), holding the database's
/// lock while doing so.
///
/// sled 0.34.7 writes a snapshot on every open that finds the log advanced since the last
/// one (`read_snapshot_or_default` → `write_snapshot`), even for a read-only command: it
/// writes `snap.<lsn>.generating`, syncs it and renames it to `snap.<lsn>`, and only then
/// removes older snapshots. If the write fails (disk full), the partial `.generating`
/// file stays, and because sled's `get_snapshot_files` lists `.generating` files too and
/// reads the newest candidate, every later open fails with "corruption". The file is never
/// the committed snapshot (the previous `snap.*` and the log are intact until the rename),
/// so removing an incomplete one is safe; a complete one (valid CRC) is left for sled.
///
/// The lock (sled's own `flock` on `dir/db`) keeps us from removing a file another process
/// is writing right now: if the store is in use we leave everything alone and say so.
pub(crate) fn remove_incomplete_snapshots(dir: &Path) -> Result<(), BackendError> {
    let path = dir.display().to_string();
    let generating = |dir: &Path| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| {
                        let name = e.file_name();
                        let name = name.to_string_lossy();
                        name.starts_with("snap.") && name.ends_with(".generating")
                    })
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default()
    };
    // Almost always there is none: then do not even take the lock (it would only widen
    // the moment in which another process finds the store in use).
    if generating(dir).is_empty() {
        return Ok(());
    }
    let db = dir.join("db");
    let lock = match std::fs::OpenOptions::new().read(true).write(true).open(&db) {
        Ok(f) => f,
        // No database yet (a new store), or one we cannot open: sled reports it.
        Err(_) => return Ok(()),
    };
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Err(BackendError::InUse { path }),
        Err(std::fs::TryLockError::Error(e)) => return Err(BackendError::Io(e)),
    }
    for file in generating(dir) {
        let complete = std::fs::read(&file).is_ok_and(|b| snapshot_is_complete(&b));
        if !complete {
            tracing::warn!(file = %file.display(), "removing an incomplete sled snapshot left by a failed write");
            std::fs::remove_file(&file).map_err(|source| BackendError::IoAt {
                action: "removing the incomplete snapshot",
                path: file.clone(),
                source,
            })?;
        }
    }
    drop(lock);
    Ok(())
}

/// sled's own check of a snapshot file: body ‖ length (8) ‖ CRC-32 of the body (4, LE).
fn snapshot_is_complete(bytes: &[u8]) -> bool {
    if bytes.len() <= 12 {
        return false;
    }
    let (body, tail) = bytes.split_at(bytes.len() - 12);
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&tail[8..]);
    crc32fast::hash(body) == u32::from_le_bytes(crc)
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
        sled::Error::Io(io) => BackendError::Io(io),
        sled::Error::Corruption { .. } => BackendError::Corrupt(Box::new(e)),
        other => BackendError::Corrupt(Box::new(other)),
    }
}

impl Backend for SledBackend {
    /// A secret id known absent is answered without reading the tree (see `absent`).
    fn get(&self, ns: &str, id: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        let secrets = ns == NS_SECRETS;
        let writes = if secrets {
            match self.absent.check(id) {
                None => return Ok(None),
                some => some,
            }
        } else {
            None
        };
        let found = self
            .tree(ns)?
            .get(id)
            .map_err(|e| classify(e, &self.path))?
            .map(|v| v.to_vec());
        if let (None, Some(writes)) = (&found, writes) {
            self.absent.remember(id, writes);
        }
        Ok(found)
    }

    fn put(&self, ns: &str, id: &[u8], value: &[u8]) -> Result<(), BackendError> {
        if journaled(ns) {
            return self.write_journaled(ns, &[(id, value)], &[]);
        }
        let tree = self.tree(ns)?;
        tree.insert(id, value)
            .map_err(|e| classify(e, &self.path))?;
        self.written(ns, id);
        self.durable()?;
        Ok(())
    }

    fn delete(&self, ns: &str, id: &[u8]) -> Result<bool, BackendError> {
        let tree = self.tree(ns)?;
        if journaled(ns) {
            let mut writing = self.journal.lock();
            let existed = tree
                .contains_key(id)
                .map_err(|e| classify(e, &self.path))?;
            self.write_in_order(&mut writing, &tree, ns, &[], &[id])?;
            return Ok(existed);
        }
        let existed = tree
            .remove(id)
            .map_err(|e| classify(e, &self.path))?
            .is_some();
        self.durable()?;
        Ok(existed)
    }

    /// Records in the tree, then (for an unprefixed scan) the namespace's log: stores
    /// written before the log existed kept appended records in the tree, and every one of
    /// them is older than the log's first.
    fn scan(&self, ns: &str, prefix: &[u8]) -> Result<Records, BackendError> {
        let mut records = self.scan_tree(ns, prefix)?;
        if prefix.is_empty()
            && let Some(log) = self.log(ns, false)?
        {
            records.extend(log.scan()?);
        }
        Ok(records)
    }

    fn append(&self, ns: &str, value: &[u8]) -> Result<u64, BackendError> {
        let log = self.log(ns, true)?;
        log.map_or(Ok(0), |l| l.append(value))
    }

    /// One `write(2)` for all of them ([`AppendLog::append_all`]).
    fn append_all(&self, ns: &str, values: &[Vec<u8>]) -> Result<u64, BackendError> {
        let log = self.log(ns, true)?;
        log.map_or(Ok(0), |l| l.append_all(values))
    }

    /// The cursor is the byte offset the log was read to. Records in the tree are older
    /// than any in the log and no longer grow, so only the first read (no cursor) has them.
    fn scan_appended_since(
        &self,
        ns: &str,
        cursor: &[u8],
    ) -> Result<(Records, Vec<u8>), BackendError> {
        let (mut records, from) = match <[u8; 8]>::try_from(cursor) {
            Ok(offset) => (Vec::new(), u64::from_be_bytes(offset)),
            Err(_) => (self.scan_tree(ns, b"")?, 0),
        };
        let end = match self.log(ns, false)? {
            Some(log) => {
                let (appended, end) = log.scan_from(from)?;
                records.extend(appended);
                end
            }
            None => 0,
        };
        Ok((records, end.to_be_bytes().to_vec()))
    }

    fn flush(&self) -> Result<(), BackendError> {
        self.durable()?;
        self.journal.sync()?;
        let logs: Vec<Arc<AppendLog>> = self
            .logs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(_, l)| Arc::clone(l))
            .collect();
        for log in logs {
            log.sync()?;
        }
        Ok(())
    }

    fn last(&self, ns: &str) -> Result<Option<Record>, BackendError> {
        if let Some(last) = self.log(ns, false)?.and_then(|l| l.last()) {
            return Ok(Some(last));
        }
        Ok(self
            .tree(ns)?
            .last()
            .map_err(|e| classify(e, &self.path))?
            .map(|(k, v)| (k.to_vec(), v.to_vec())))
    }

    /// The log read backwards; once it is exhausted, the records a store written before
    /// the log existed kept in the tree (all older than the log's first).
    fn scan_appended_newest(
        &self,
        ns: &str,
        before: Option<&[u8]>,
        limit: usize,
    ) -> Result<Records, BackendError> {
        let in_log = before.is_none_or(|b| b.len() == 8 && !self.in_tree(ns, b));
        let mut out = Vec::new();
        if in_log && let Some(log) = self.log(ns, false)? {
            let from = before
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes);
            out = log.scan_back(from, limit)?;
            // A full page, or a log that does not start at 0 after a damaged frame: the
            // tree is reached only once the log is read to its start.
            let reached_start = out.last().is_none_or(|(id, _)| id.as_slice() == [0u8; 8]);
            if out.len() == limit || !reached_start {
                return Ok(out);
            }
        }
        let tree_before = if in_log { None } else { before };
        let mut older = self.scan_tree(ns, b"")?;
        if let Some(b) = tree_before {
            older.retain(|(id, _)| id.as_slice() < b);
        }
        out.extend(older.into_iter().rev().take(limit - out.len()));
        Ok(out)
    }

    fn put_batch(
        &self,
        ns: &str,
        puts: &[(&[u8], &[u8])],
        deletes: &[&[u8]],
    ) -> Result<(), BackendError> {
        if journaled(ns) {
            return self.write_journaled(ns, puts, deletes);
        }
        self.apply(ns, puts, deletes)?;
        self.durable()
    }

    fn scan_newest(
        &self,
        ns: &str,
        prefix: &[u8],
        before: Option<&[u8]>,
        limit: usize,
    ) -> Result<Records, BackendError> {
        let tree = self.tree(ns)?;
        let range = match page_end(prefix, before) {
            Some(e) if e.as_slice() <= prefix => return Ok(Vec::new()),
            Some(e) => tree.range(prefix.to_vec()..e),
            None => tree.range(prefix.to_vec()..),
        };
        range
            .rev()
            .filter(|r| !matches!(r, Ok((k, _)) if k.as_ref() == journal::SEQ_ID))
            .take(limit)
            .map(|r| {
                r.map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(|e| classify(e, &self.path))
            })
            .collect()
    }

    fn compare_and_put(
        &self,
        ns: &str,
        id: &[u8],
        expected: Option<Expected<'_>>,
        value: &[u8],
        _version: u64,
    ) -> Result<bool, BackendError> {
        let tree = self.tree(ns)?;
        if journaled(ns) {
            // Journaled writes hold the journal's order: nothing changes the record between
            // this read and the write.
            let mut writing = self.journal.lock();
            let current = tree.get(id).map_err(|e| classify(e, &self.path))?;
            if current.as_deref() != expected.map(|e| e.bytes) {
                return Ok(false);
            }
            self.write_in_order(&mut writing, &tree, ns, &[(id, value)], &[])?;
            return Ok(true);
        }
        let swapped = tree
            .compare_and_swap(id, expected.map(|e| e.bytes), Some(value))
            .map_err(|e| classify(e, &self.path))?
            .is_ok();
        if swapped {
            self.written(ns, id);
            self.durable()?;
        }
        Ok(swapped)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Write as _;

    const CHILD: &str = "LATCHKEY_TEST_JOURNAL_CHILD";

    /// Runs the test `name` of this module again in a child process, with the store
    /// directory `dir` in [`CHILD`]: its child branch writes, prints "written" and aborts.
    /// Returns what it printed after "written".
    fn killed_child(name: &str, dir: &Path) -> String {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                &format!("store::sled_store::tests::{name}"),
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, dir)
            .output()
            .unwrap();
        let printed = String::from_utf8_lossy(&out.stdout).into_owned();
        let Some((_, after)) = printed.split_once("written") else {
            panic!("{printed}{}", String::from_utf8_lossy(&out.stderr));
        };
        after.trim().to_owned()
    }

    /// Writes of the same record by many threads at once reach the journal in the order
    /// they reached the tree: after a kill, the reopened store holds the value the tree held
    /// last, for every record.
    #[test]
    fn concurrent_journaled_writes_replay_to_the_value_the_tree_held_last() {
        const KEYS: usize = 4;
        if let Some(dir) = std::env::var_os(CHILD) {
            let b = Arc::new(SledBackend::open(Path::new(&dir)).unwrap());
            let writers: Vec<_> = (0..8)
                .map(|t| {
                    let b = b.clone();
                    std::thread::spawn(move || {
                        for i in 0..200 {
                            let id = format!("r/{}", i % KEYS);
                            let value = format!("t{t}-{i}");
                            if i % 7 == 3 {
                                b.delete(NS_RUNS, id.as_bytes()).unwrap();
                            } else {
                                b.put_batch(NS_RUNS, &[(id.as_bytes(), value.as_bytes())], &[])
                                    .unwrap();
                            }
                        }
                    })
                })
                .collect();
            for w in writers {
                w.join().unwrap();
            }
            let last: Vec<String> = (0..KEYS)
                .map(|k| {
                    b.get(NS_RUNS, format!("r/{k}").as_bytes())
                        .unwrap()
                        .map_or("-".into(), |v| String::from_utf8(v).unwrap())
                })
                .collect();
            println!("written {}", last.join(" "));
            std::io::stdout().flush().unwrap();
            std::process::abort();
        }
        let dir = tempfile::tempdir().unwrap();
        let last = killed_child(
            "concurrent_journaled_writes_replay_to_the_value_the_tree_held_last",
            dir.path(),
        );
        let b = SledBackend::open(dir.path()).unwrap();
        let reopened: Vec<String> = (0..KEYS)
            .map(|k| {
                b.get(NS_RUNS, format!("r/{k}").as_bytes())
                    .unwrap()
                    .map_or("-".into(), |v| String::from_utf8(v).unwrap())
            })
            .collect();
        assert_eq!(reopened.join(" "), last);
    }

    /// A journal past its limit is emptied once a flush has put its entries on disk, and
    /// the writes after that are journaled anew: all of them survive a kill.
    #[test]
    fn a_journal_past_its_limit_is_emptied_and_writes_after_it_survive_a_kill() {
        let mib = vec![b'v'; 1 << 20];
        let past = (journal::JOURNAL_LIMIT >> 20) as usize + 2;
        if let Some(dir) = std::env::var_os(CHILD) {
            let b = SledBackend::open(Path::new(&dir)).unwrap();
            for i in 0..past {
                b.put(NS_RUNS, format!("r/{i:04}").as_bytes(), &mib).unwrap();
            }
            let len = std::fs::metadata(journal::path(Path::new(&dir))).unwrap().len();
            println!("written {len}");
            std::io::stdout().flush().unwrap();
            std::process::abort();
        }
        let dir = tempfile::tempdir().unwrap();
        let len: u64 = killed_child(
            "a_journal_past_its_limit_is_emptied_and_writes_after_it_survive_a_kill",
            dir.path(),
        )
        .parse()
        .unwrap();
        assert!(len < 4 << 20, "the journal was not emptied: {len} bytes");
        let b = SledBackend::open(dir.path()).unwrap();
        let runs = b.scan(NS_RUNS, b"r/").unwrap();
        assert_eq!(runs.len(), past);
        assert!(runs.iter().all(|(_, v)| *v == mib));
    }

    /// Run records written without a sled flush are in the store after the process that
    /// wrote them is killed (here it aborts: no destructor, no flush) and it is reopened; a
    /// delete is too, and the journal's sequence number is never read back as a record.
    #[test]
    fn journaled_writes_survive_the_process_being_killed_before_any_flush() {
        if let Some(dir) = std::env::var_os(CHILD) {
            let b = SledBackend::open(Path::new(&dir)).unwrap();
            // Too long for a journal entry: flushed instead, and the journal goes on after
            // it. (First, so that its flush covers none of the writes below.)
            let big = vec![b'x'; super::super::log::MAX_RECORD + 1];
            b.put(NS_RUNS, b"r/big", &big).unwrap();
            for i in 0..200 {
                let id = format!("r/{i:04}");
                b.put_batch(NS_RUNS, &[(id.as_bytes(), b"running")], &[])
                    .unwrap();
            }
            b.put(NS_RUNS, b"r/0001", b"ended").unwrap();
            assert!(b.delete(NS_RUNS, b"r/0000").unwrap());
            let swapped = b
                .compare_and_put(
                    NS_RUNS,
                    b"r/0002",
                    Some(Expected {
                        bytes: b"running",
                        version: 0,
                    }),
                    b"lost",
                    0,
                )
                .unwrap();
            assert!(swapped);
            b.put(NS_RUNS, b"r/0003", b"after the big one").unwrap();
            println!("written");
            std::io::stdout().flush().unwrap();
            std::process::abort();
        }
        let dir = tempfile::tempdir().unwrap();
        killed_child(
            "journaled_writes_survive_the_process_being_killed_before_any_flush",
            dir.path(),
        );
        let b = SledBackend::open(dir.path()).unwrap();
        let runs = b.scan(NS_RUNS, b"").unwrap();
        assert_eq!(runs.len(), 200, "{:?}", runs.first());
        assert_eq!(
            b.get(NS_RUNS, b"r/big").unwrap().map(|v| v.len()),
            Some(super::super::log::MAX_RECORD + 1)
        );
        assert_eq!(
            b.get(NS_RUNS, b"r/0003").unwrap().unwrap(),
            b"after the big one"
        );
        assert_eq!(b.get(NS_RUNS, b"r/0000").unwrap(), None);
        assert_eq!(b.get(NS_RUNS, b"r/0001").unwrap().unwrap(), b"ended");
        assert_eq!(b.get(NS_RUNS, b"r/0002").unwrap().unwrap(), b"lost");
        assert_eq!(b.get(NS_RUNS, b"r/0199").unwrap().unwrap(), b"running");
        let newest = b.scan_newest(NS_RUNS, b"", None, 1000).unwrap();
        assert_eq!(newest.len(), 200);
        // Replayed into the trees and flushed: the journal is gone until the next write.
        assert!(!journal::path(dir.path()).exists());
        // Writes go on after the replay, numbered after it, and survive a reopen.
        b.put(NS_RUNS, b"r/0200", b"running").unwrap();
        drop(b);
        let b = SledBackend::open(dir.path()).unwrap();
        assert_eq!(b.get(NS_RUNS, b"r/0200").unwrap().unwrap(), b"running");
        assert_eq!(b.scan(NS_RUNS, b"r/").unwrap().len(), 201);
    }
}
