//! The journal of an embedded store's run records: why a run's record does not wait for a
//! sled flush.
//!
//! A sled write stays in sled's buffers until a flush, and a flush (sled's IO threads, a
//! rewrite of the leaf holding the record) cost a served run more than the run itself, twice
//! per run (bench figure `serve`). Writes to a journaled namespace go to its tree, unflushed,
//! and then, in the same order, to an append-only log beside the database ([`AppendLog`]):
//! one `write(2)`, after which the write survives this process being killed at any instant;
//! a power failure, once the log's background sync has run ([`SYNC_WINDOW`]), as the audit
//! trail's records do.
//!
//! Each write's batch also stores its entry's sequence number in the tree ([`SEQ_ID`]): sled
//! applies a batch whole or not at all, so the tree always says which entries it holds, and
//! [`replay`] at open applies exactly the ones it does not, whether sled's own flushes ran
//! ahead of the log's sync or behind it. The journal is emptied once a sled flush has made
//! every entry in it redundant: at open, after the replay, and when it passes
//! [`JOURNAL_LIMIT`].
//!
//! Entry: `seq (u64 BE) ‖ ns_len (u8) ‖ ns ‖ ops`, each op `1 ‖ id_len (u32 BE) ‖ id ‖
//! value_len (u32 BE) ‖ value` (a put) or `2 ‖ id_len (u32 BE) ‖ id` (a delete).
//!
//! [`SYNC_WINDOW`]: super::log::SYNC_WINDOW

use super::backend::BackendError;
use super::log::AppendLog;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Where a journaled tree keeps the sequence number of the newest entry it holds. Sorts
/// before every record id, and is never returned by a read of the store.
pub(crate) const SEQ_ID: &[u8] = b"\0journal-seq";

/// The journal is emptied (after a sled flush) once it is this long.
pub(crate) const JOURNAL_LIMIT: u64 = 64 << 20;

const PUT: u8 = 1;
const DELETE: u8 = 2;

/// The journal file of the store in `dir`.
pub(crate) fn path(dir: &Path) -> PathBuf {
    dir.join("runs.journal")
}

/// One write of a journaled namespace.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) seq: u64,
    pub(crate) ns: String,
    pub(crate) puts: Vec<(Vec<u8>, Vec<u8>)>,
    pub(crate) deletes: Vec<Vec<u8>>,
}

/// `seq`'s entry for `puts` and `deletes` in `ns`.
pub(crate) fn encode(seq: u64, ns: &str, puts: &[(&[u8], &[u8])], deletes: &[&[u8]]) -> Vec<u8> {
    let size = puts.iter().map(|(i, v)| 9 + i.len() + v.len()).sum::<usize>()
        + deletes.iter().map(|i| 5 + i.len()).sum::<usize>();
    let mut out = Vec::with_capacity(9 + ns.len() + size);
    out.extend_from_slice(&seq.to_be_bytes());
    // Namespaces are the crate's own short constants.
    out.push(ns.len() as u8);
    out.extend_from_slice(ns.as_bytes());
    let field = |out: &mut Vec<u8>, bytes: &[u8]| {
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(bytes);
    };
    for (id, value) in puts {
        out.push(PUT);
        field(&mut out, id);
        field(&mut out, value);
    }
    for id in deletes {
        out.push(DELETE);
        field(&mut out, id);
    }
    out
}

/// The entry in `bytes`; `None` if it is not one whole entry.
pub(crate) fn decode(bytes: &[u8]) -> Option<Entry> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, rest) = bytes.split_at_checked(n)?;
        *bytes = rest;
        Some(head)
    }
    fn field(bytes: &mut &[u8]) -> Option<Vec<u8>> {
        let n = u32::from_be_bytes(take(bytes, 4)?.try_into().ok()?) as usize;
        take(bytes, n).map(<[u8]>::to_vec)
    }
    let mut rest = bytes;
    let seq = u64::from_be_bytes(take(&mut rest, 8)?.try_into().ok()?);
    let ns_len = *take(&mut rest, 1)?.first()? as usize;
    let ns = String::from_utf8(take(&mut rest, ns_len)?.to_vec()).ok()?;
    let (mut puts, mut deletes) = (Vec::new(), Vec::new());
    while let Some(op) = take(&mut rest, 1) {
        match *op.first()? {
            PUT => {
                let id = field(&mut rest)?;
                puts.push((id, field(&mut rest)?));
            }
            DELETE => deletes.push(field(&mut rest)?),
            _ => return None,
        }
    }
    Some(Entry {
        seq,
        ns,
        puts,
        deletes,
    })
}

/// The sequence number of the newest entry `tree` holds (0: none).
pub(crate) fn held(tree: &sled::Tree) -> Result<u64, sled::Error> {
    Ok(tree
        .get(SEQ_ID)?
        .and_then(|v| v.as_ref().try_into().ok())
        .map_or(0, u64::from_be_bytes))
}

/// One sled batch of `puts` and `deletes`.
pub(crate) fn batch(puts: &[(&[u8], &[u8])], deletes: &[&[u8]]) -> sled::Batch {
    let mut batch = sled::Batch::default();
    for (id, value) in puts {
        batch.insert(*id, *value);
    }
    for id in deletes {
        batch.remove(*id);
    }
    batch
}

/// Applies `puts` and `deletes` to `tree` as entry `seq`, in one batch with the entry's
/// sequence number.
pub(crate) fn apply(
    tree: &sled::Tree,
    seq: u64,
    puts: &[(&[u8], &[u8])],
    deletes: &[&[u8]],
) -> Result<(), sled::Error> {
    let mut batch = batch(puts, deletes);
    batch.insert(SEQ_ID, &seq.to_be_bytes());
    tree.apply_batch(batch)
}

/// What [`replay`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Replayed {
    /// Entries applied (the tree did not hold them yet).
    pub(crate) applied: usize,
    /// Entries that did not decode (a damaged record in the middle of the file), skipped.
    pub(crate) damaged: usize,
}

/// Applies to `db` the entries of the journal at `path` that its trees do not hold, flushes
/// `db`, then removes the journal: every entry in it is now in the database. Returns the
/// newest sequence number seen, for the next writer, and what was done.
pub(crate) fn replay(
    db: &sled::Db,
    path: &Path,
    tree: impl Fn(&str) -> Result<sled::Tree, BackendError>,
    fail: impl Fn(sled::Error) -> BackendError,
) -> Result<(u64, Replayed), BackendError> {
    let mut done = Replayed::default();
    let mut newest = 0;
    if path.exists() {
        // Opening cuts a torn tail: an entry whose write never returned.
        let log = AppendLog::open(path)?;
        let mut trees: Vec<(String, sled::Tree, u64)> = Vec::new();
        let (records, damaged) = log.scan_intact()?;
        done.damaged = damaged;
        for (_, bytes) in records {
            let Some(entry) = decode(&bytes) else {
                done.damaged += 1;
                continue;
            };
            newest = newest.max(entry.seq);
            let at = match trees.iter().position(|(n, _, _)| *n == entry.ns) {
                Some(at) => at,
                None => {
                    let t = tree(&entry.ns)?;
                    let holds = held(&t).map_err(&fail)?;
                    trees.push((entry.ns.clone(), t, holds));
                    trees.len() - 1
                }
            };
            let (_, t, holds) = &trees[at];
            if entry.seq <= *holds {
                continue;
            }
            let puts: Vec<(&[u8], &[u8])> = entry
                .puts
                .iter()
                .map(|(i, v)| (i.as_slice(), v.as_slice()))
                .collect();
            let deletes: Vec<&[u8]> = entry.deletes.iter().map(Vec::as_slice).collect();
            apply(t, entry.seq, &puts, &deletes).map_err(&fail)?;
            done.applied += 1;
        }
        drop(log);
        db.flush().map_err(&fail)?;
        std::fs::remove_file(path).map_err(|source| BackendError::IoAt {
            action: "removing the replayed journal",
            path: path.to_path_buf(),
            source,
        })?;
    }
    Ok((newest, done))
}

/// The journal of a store's journaled namespaces: the order of their writes and the log
/// they are appended to.
pub(crate) struct Journal {
    path: PathBuf,
    /// Held from a write's tree update to its append, so the log's order is the trees'.
    order: Mutex<Option<Arc<AppendLog>>>,
    /// The newest sequence number given out.
    seq: AtomicU64,
}

impl Journal {
    /// The journal at `path`, whose newest entry is `seq` (after [`replay`]).
    pub(crate) fn new(path: PathBuf, seq: u64) -> Journal {
        Journal {
            path,
            order: Mutex::new(None),
            seq: AtomicU64::new(seq),
        }
    }

    /// Holds the order of writes until the returned guard is dropped.
    pub(crate) fn lock(&self) -> Writing<'_> {
        Writing {
            journal: self,
            log: self.order.lock().unwrap_or_else(|p| p.into_inner()),
        }
    }

    /// Makes every entry appended so far durable against a power failure too. Writers go
    /// on meanwhile: the sync runs outside their order.
    pub(crate) fn sync(&self) -> Result<(), BackendError> {
        let log = self
            .order
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        log.map_or(Ok(()), |l| l.sync())
    }
}

/// A writer of the journal, holding its order.
pub(crate) struct Writing<'a> {
    journal: &'a Journal,
    log: MutexGuard<'a, Option<Arc<AppendLog>>>,
}

impl Writing<'_> {
    /// The next entry's sequence number.
    pub(crate) fn next_seq(&self) -> u64 {
        self.journal.seq.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Appends `entry` with one `write(2)`; returns the journal's length after it.
    pub(crate) fn append(&mut self, entry: &[u8]) -> Result<u64, BackendError> {
        if self.log.is_none() {
            *self.log = Some(Arc::new(AppendLog::open(&self.journal.path)?));
        }
        match &*self.log {
            Some(log) => log.append(entry).map(|_| log.len()),
            None => unreachable!("opened above"),
        }
    }

    /// Empties the journal: every entry in it must be durable in the database already.
    pub(crate) fn cut(&mut self) -> Result<(), BackendError> {
        *self.log = None;
        match std::fs::remove_file(&self.journal.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(BackendError::IoAt {
                action: "emptying the journal",
                path: self.journal.path.clone(),
                source: e,
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_round_trips_and_a_cut_one_does_not_decode() {
        let bytes = encode(
            7,
            "runs",
            &[(b"r/1", b"{\"a\":1}"), (b"u/x/1", b"")],
            &[b"a/1"],
        );
        let entry = decode(&bytes).unwrap();
        assert_eq!(
            entry,
            Entry {
                seq: 7,
                ns: "runs".into(),
                puts: vec![
                    (b"r/1".to_vec(), b"{\"a\":1}".to_vec()),
                    (b"u/x/1".to_vec(), Vec::new())
                ],
                deletes: vec![b"a/1".to_vec()],
            }
        );
        for cut in 0..bytes.len() {
            let e = decode(&bytes[..cut]);
            // A cut at an op's boundary is a shorter entry; anywhere else, none.
            assert!(
                e.is_none() || e.as_ref().is_some_and(|e| e.puts.len() + e.deletes.len() < 3),
                "{cut}"
            );
        }
        assert!(decode(&[0; 9]).is_some_and(|e| e.puts.is_empty()));
        let mut bad = bytes.clone();
        bad[13] = 9;
        assert!(decode(&bad).is_none());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod replay_tests {
    use super::*;

    fn journal_of(path: &Path, entries: &[Vec<u8>]) {
        let log = AppendLog::open(path).unwrap();
        for e in entries {
            log.append(e).unwrap();
        }
    }

    fn replayed(db: &sled::Db, path: &Path) -> (u64, Replayed) {
        replay(
            db,
            path,
            |ns| Ok(db.open_tree(ns).unwrap()),
            |e| BackendError::Corrupt(Box::new(e)),
        )
        .unwrap()
    }

    /// Whichever of sled and the journal reached the disk further before a crash, the
    /// replay ends with the newest write of each record, and applies no entry twice.
    #[test]
    fn a_replay_applies_exactly_the_entries_the_tree_does_not_hold() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        let runs = db.open_tree("runs").unwrap();
        let path = dir.path().join("runs.journal");
        let v = |seq: u64, value: &[u8]| encode(seq, "runs", &[(b"r/1", value)], &[]);

        // sled ahead: the tree holds entry 3, the journal only 1 and 2.
        apply(&runs, 3, &[(b"r/1", b"three")], &[]).unwrap();
        journal_of(&path, &[v(1, b"one"), v(2, b"two")]);
        let (newest, done) = replayed(&db, &path);
        assert_eq!((newest, done.applied), (2, 0));
        assert_eq!(runs.get(b"r/1").unwrap().unwrap().as_ref(), b"three");
        assert!(!path.exists());

        // The journal ahead: entries 4 to 6, the last a delete; 5's frame damaged in place.
        journal_of(
            &path,
            &[
                v(4, b"four"),
                v(5, b"five"),
                encode(6, "runs", &[(b"r/2", b"x")], &[b"r/1"]),
            ],
        );
        let mut bytes = std::fs::read(&path).unwrap();
        let second = 4 + v(4, b"four").len() + 8 + 4 + 14;
        bytes[second] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let (newest, done) = replayed(&db, &path);
        assert_eq!((newest, done.applied, done.damaged), (6, 2, 1));
        assert_eq!(runs.get(b"r/1").unwrap(), None);
        assert_eq!(runs.get(b"r/2").unwrap().unwrap().as_ref(), b"x");
        assert_eq!(held(&runs).unwrap(), 6);
    }
}
