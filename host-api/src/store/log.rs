//! An append-only log file: where an embedded store keeps its audit trail (and, framed the same
//! way, its run journal: see `journal`).
//!
//! Why not a sled tree: a sled insert stays in sled's own buffers until a flush, so a record
//! that had to survive the process being killed cost a whole sled flush (~115 µs) per run.
//! Here an append is one `write(2)` on a file opened with `O_APPEND`: once it returns, the
//! record belongs to the kernel and survives a kill -9 of this process at any later instant.
//! What it does not yet survive is a power failure: [`AppendLog::sync`] (`fdatasync`) makes
//! every earlier append durable against that too. Concurrent callers share one `fdatasync`
//! (group commit, as PostgreSQL's WAL flush does): a caller whose bytes another caller's sync
//! already covered returns at once. A background syncer started at the first append bounds
//! the window for appends nobody syncs to [`SYNC_WINDOW`].
//!
//! Frame: `len (u32 BE, ≥ 1) ‖ bytes ‖ crc32(bytes) (u32 BE) ‖ len (u32 BE)`. The leading
//! length lets a scan walk forward; the trailing one lets [`AppendLog::open`] find the
//! newest record without reading the file. A tail that does not check out (a crash or a
//! full disk in the middle of a write; a zero-filled extent after a power failure, which
//! the non-zero length rules out) is found on open, reported in the operator's log and cut
//! off: it was never acknowledged, since an append returns only after its whole frame is
//! written. Only the tail is ever cut: a damaged record with intact records after it is
//! kept and returned by [`AppendLog::scan`], for the audit chain's MAC to report. The CRC
//! finds torn writes, not tampering: that is the chain's job ([`crate::audit`]).

use super::backend::{BackendError, Record, Records};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

/// The longest an append waits for a background `fdatasync`: the most a power failure can
/// lose of records that nobody synced (strict durability syncs before each send instead).
pub const SYNC_WINDOW: Duration = Duration::from_millis(50);

/// Length, CRC and trailing length around each record.
const FRAME_OVERHEAD: u64 = 12;
/// A record longer than this is refused (audit records are a few hundred bytes).
pub(crate) const MAX_RECORD: usize = 16 << 20;

/// An append-only file of records.
pub struct AppendLog {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// The file, its length, and the newest record; appends are serialised here.
    tail: Mutex<Tail>,
    /// A second handle on the same file for `fdatasync`, so appends go on during a sync.
    sync_file: File,
    /// Bytes known durable; held for the length of a sync, so concurrent syncs queue here
    /// and find their bytes covered.
    synced: Mutex<u64>,
    /// Whether the background syncer runs.
    syncer: std::sync::Once,
}

struct Tail {
    file: File,
    len: u64,
    last: Option<Record>,
}

fn io_at(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BackendError {
    let path = path.to_path_buf();
    move |source| BackendError::IoAt {
        action,
        path,
        source,
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update below leaves the state consistent before it can panic.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl AppendLog {
    /// Opens (creating, mode 0600) the log at `path`, cutting off a torn tail.
    pub fn open(path: &Path) -> Result<Self, BackendError> {
        let mut options = std::fs::OpenOptions::new();
        options.read(true).append(true).create(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(io_at("opening", path))?;
        let size = file
            .metadata()
            .map_err(io_at("reading the size of", path))?
            .len();
        let (len, last) = match read_last(&mut file, size).map_err(io_at("reading", path))? {
            Some(last) => (size, Some(last)),
            None if size == 0 => (0, None),
            None => recover(&mut file, path, size)?,
        };
        let sync_file = file.try_clone().map_err(io_at("opening", path))?;
        Ok(AppendLog {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                tail: Mutex::new(Tail { file, len, last }),
                sync_file,
                synced: Mutex::new(len),
                syncer: std::sync::Once::new(),
            }),
        })
    }

    /// Appends `bytes` with one `write(2)`; returns its id (its offset, so ids increase).
    /// When this returns the record survives this process being killed; see
    /// [`AppendLog::sync`] for power failures.
    pub fn append(&self, bytes: &[u8]) -> Result<u64, BackendError> {
        self.append_all(std::slice::from_ref(&bytes))
    }

    /// Appends each of `records` in order, all with one `write(2)` (records written
    /// together, such as a fetch's audit records, cost one system call); returns the last
    /// one's id. A write that fails leaves none of them.
    pub fn append_all<B: AsRef<[u8]>>(&self, records: &[B]) -> Result<u64, BackendError> {
        let mut frame = Vec::new();
        let mut ends = Vec::with_capacity(records.len());
        for bytes in records.iter().map(AsRef::as_ref) {
            if bytes.is_empty() || bytes.len() > MAX_RECORD {
                return Err(BackendError::Io(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "a log record must be 1 byte to {MAX_RECORD} bytes long, not {}",
                        bytes.len()
                    ),
                )));
            }
            let n = (bytes.len() as u32).to_be_bytes();
            frame.reserve(bytes.len() + FRAME_OVERHEAD as usize);
            ends.push(frame.len() as u64);
            frame.extend_from_slice(&n);
            frame.extend_from_slice(bytes);
            frame.extend_from_slice(&crc32fast::hash(bytes).to_be_bytes());
            frame.extend_from_slice(&n);
        }
        let (Some(last), Some(&last_at)) = (records.last(), ends.last()) else {
            return Ok(lock(&self.inner.tail).len);
        };
        let mut tail = lock(&self.inner.tail);
        let start = tail.len;
        if let Err(e) = tail.file.write_all(&frame) {
            // Part of the frames may be in the file (disk full): cut it off, so that the
            // next append does not follow garbage. If even that fails, open() cuts it later.
            let _ = tail.file.set_len(start);
            return Err(io_at("appending to", &self.inner.path)(e));
        }
        tail.len += frame.len() as u64;
        let id = start + last_at;
        tail.last = Some((id.to_be_bytes().to_vec(), last.as_ref().to_vec()));
        drop(tail);
        self.start_syncer();
        Ok(id)
    }

    /// Makes every append that returned before this call durable (`fdatasync`), sharing
    /// the sync with concurrent callers.
    pub fn sync(&self) -> Result<(), BackendError> {
        self.inner.sync()
    }

    /// Every record, oldest first.
    pub fn scan(&self) -> Result<Records, BackendError> {
        self.scan_from(0).map(|(records, _)| records)
    }

    /// The records from byte `from` on (the end a previous call returned; 0 for all), and
    /// where they end. A `from` past the end (a log cut at open since) reads from the start.
    pub fn scan_from(&self, from: u64) -> Result<(Records, u64), BackendError> {
        let (bytes, from, len) = self.read_from(from)?;
        let (frames, valid) = frames(&bytes);
        let records = frames
            .into_iter()
            .map(|f| ((from + f.at).to_be_bytes().to_vec(), f.record.to_vec()))
            .collect();
        if from + valid != len {
            return Err(BackendError::Corrupt(
                format!(
                    "{}: the record at byte {} does not check out",
                    self.inner.path.display(),
                    from + valid
                )
                .into(),
            ));
        }
        Ok((records, len))
    }

    /// Up to `limit` records that start before byte `before` (`None`: the end), newest
    /// first, read backwards by the frames' trailing lengths: a page of the newest records
    /// costs what it returns, not the whole file. A frame that does not check out ends the
    /// page early (the forward scan reports it).
    pub fn scan_back(&self, before: Option<u64>, limit: usize) -> Result<Records, BackendError> {
        let tail = lock(&self.inner.tail);
        let len = tail.len;
        let file = tail
            .file
            .try_clone()
            .map_err(io_at("reading", &self.inner.path))?;
        drop(tail);
        let mut end = before.map_or(len, |b| b.min(len));
        let mut out = Vec::new();
        let read_at = |buf: &mut [u8], at: u64| {
            use std::os::unix::fs::FileExt;
            file.read_exact_at(buf, at)
                .map_err(io_at("reading", &self.inner.path))
        };
        while out.len() < limit && end >= FRAME_OVERHEAD {
            let mut n = [0u8; 4];
            read_at(&mut n, end - 4)?;
            let size = u64::from(u32::from_be_bytes(n)) + FRAME_OVERHEAD;
            let Some(start) = end.checked_sub(size) else {
                break;
            };
            let mut bytes = vec![0u8; size as usize];
            read_at(&mut bytes, start)?;
            match frame_at(&bytes, start) {
                Some(f) if f.intact && f.len == bytes.len() => {
                    out.push((start.to_be_bytes().to_vec(), f.record.to_vec()));
                }
                _ => break,
            }
            end = start;
        }
        Ok(out)
    }

    /// Every record whose CRC checks out, oldest first, and how many did not (a record
    /// damaged in place, or the rest of a file whose frames stop making sense). For a log
    /// whose readers must not act on damaged bytes (the run journal); the audit trail reads
    /// them all, for its chain's MAC to report.
    pub fn scan_intact(&self) -> Result<(Records, usize), BackendError> {
        let (bytes, _, len) = self.read_from(0)?;
        let (frames, valid) = frames(&bytes);
        let mut damaged = usize::from(valid != len);
        let mut records = Vec::with_capacity(frames.len());
        for f in frames {
            if f.intact {
                records.push((f.at.to_be_bytes().to_vec(), f.record.to_vec()));
            } else {
                damaged += 1;
            }
        }
        Ok((records, damaged))
    }

    /// The bytes from `from` (0 if past the end: a log cut at open since) to the end as
    /// it is now, where they start, and the end.
    fn read_from(&self, from: u64) -> Result<(Vec<u8>, u64, u64), BackendError> {
        let tail = lock(&self.inner.tail);
        let len = tail.len;
        let mut file = tail
            .file
            .try_clone()
            .map_err(io_at("reading", &self.inner.path))?;
        drop(tail);
        let from = if from > len { 0 } else { from };
        let mut bytes = Vec::new();
        file.seek(SeekFrom::Start(from))
            .and_then(|_| (&mut file).take(len - from).read_to_end(&mut bytes))
            .map_err(io_at("reading", &self.inner.path))?;
        Ok((bytes, from, len))
    }

    /// The log's length in bytes.
    pub fn len(&self) -> u64 {
        lock(&self.inner.tail).len
    }

    /// Whether the log holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The newest record.
    pub fn last(&self) -> Option<Record> {
        lock(&self.inner.tail).last.clone()
    }

    fn start_syncer(&self) {
        let weak = Arc::downgrade(&self.inner);
        let path = &self.inner.path;
        self.inner.syncer.call_once(|| {
            let spawned = std::thread::Builder::new()
                .name("latchkey-log-sync".into())
                .spawn(move || background_sync(weak));
            if let Err(e) = spawned {
                tracing::error!(path = %path.display(), error = %e, "could not start an append-only log's syncer");
            }
        });
    }
}

impl Inner {
    fn sync(&self) -> Result<(), BackendError> {
        let wanted = lock(&self.tail).len;
        let mut synced = lock(&self.synced);
        if *synced >= wanted {
            return Ok(());
        }
        // Everything written until now is covered, including appends that came after ours.
        let upto = lock(&self.tail).len;
        self.sync_file
            .sync_data()
            .map_err(io_at("syncing", &self.path))?;
        *synced = upto;
        Ok(())
    }
}

/// Syncs within [`SYNC_WINDOW`] of an append until the log is dropped.
fn background_sync(log: Weak<Inner>) {
    loop {
        std::thread::sleep(SYNC_WINDOW);
        let Some(inner) = log.upgrade() else { return };
        if let Err(e) = inner.sync() {
            tracing::error!(error = %e, "an append-only log could not be synced");
        }
    }
}

impl Drop for AppendLog {
    fn drop(&mut self) {
        if let Err(e) = self.inner.sync() {
            tracing::error!(error = %e, "an append-only log could not be synced at close");
        }
    }
}

/// The newest record if the file ends with a whole, intact frame.
fn read_last(file: &mut File, size: u64) -> std::io::Result<Option<Record>> {
    if size < FRAME_OVERHEAD {
        return Ok(None);
    }
    let mut n = [0u8; 4];
    file.seek(SeekFrom::Start(size - 4))?;
    file.read_exact(&mut n)?;
    let len = u64::from(u32::from_be_bytes(n));
    let Some(start) = size.checked_sub(len + FRAME_OVERHEAD) else {
        return Ok(None);
    };
    let mut bytes = vec![0u8; (len + FRAME_OVERHEAD) as usize];
    file.seek(SeekFrom::Start(start))?;
    file.read_exact(&mut bytes)?;
    Ok(frame_at(&bytes, start)
        .filter(|f| f.intact && f.len == bytes.len())
        .map(|f| (start.to_be_bytes().to_vec(), f.record.to_vec())))
}

/// One frame found in the file.
struct Frame<'a> {
    /// Its offset: the record's id.
    at: u64,
    record: &'a [u8],
    /// Bytes the frame takes.
    len: usize,
    /// Whether the CRC matches.
    intact: bool,
}

/// The frame at the start of `bytes` (at offset `at` in the file), if its two lengths agree
/// and it is whole.
fn frame_at(bytes: &[u8], at: u64) -> Option<Frame<'_>> {
    let word = |i: usize| -> Option<u32> {
        Some(u32::from_be_bytes(bytes.get(i..i + 4)?.try_into().ok()?))
    };
    let n = word(0)? as usize;
    let end = 4 + n;
    let record = bytes.get(4..end)?;
    let (crc, trailer) = (word(end)?, word(end + 4)? as usize);
    (n > 0 && trailer == n).then(|| Frame {
        at,
        record,
        len: end + 8,
        intact: crc == crc32fast::hash(record),
    })
}

/// The frames at the start of `bytes`, and how many bytes they cover.
fn frames(bytes: &[u8]) -> (Vec<Frame<'_>>, u64) {
    let mut found = Vec::new();
    let mut at = 0usize;
    while let Some(frame) = bytes.get(at..).and_then(|b| frame_at(b, at as u64)) {
        at += frame.len;
        found.push(frame);
    }
    (found, at as u64)
}

/// Cuts the incomplete tail: everything after the last whole frame, and the frames at the
/// end whose CRC does not match (written in part before a power failure).
fn recover(file: &mut File, path: &Path, size: u64) -> Result<(u64, Option<Record>), BackendError> {
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_end(&mut bytes))
        .map_err(io_at("reading", path))?;
    let (mut found, _) = frames(&bytes);
    while found.last().is_some_and(|f| !f.intact) {
        found.pop();
    }
    let (valid, last) = match found.last() {
        Some(f) => (
            f.at + f.len as u64,
            Some((f.at.to_be_bytes().to_vec(), f.record.to_vec())),
        ),
        None => (0, None),
    };
    tracing::warn!(
        path = %path.display(),
        cut = size - valid,
        "an append-only log (the audit trail or the run journal) ends in an incomplete record (a crash or a full disk during a write); cutting it off"
    );
    file.set_len(valid).map_err(io_at("truncating", path))?;
    file.sync_all().map_err(io_at("syncing", path))?;
    Ok((valid, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &tempfile::TempDir) -> AppendLog {
        AppendLog::open(&dir.path().join("log")).expect("open")
    }

    #[test]
    fn pages_read_backwards_match_the_forward_scan() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = open(&dir);
        for i in 0..50u32 {
            log.append(format!("record {i}").repeat(i as usize % 7 + 1).as_bytes())
                .expect("append");
        }
        let mut forward = log.scan().expect("scan");
        forward.reverse();
        let mut backward = Vec::new();
        let mut before = None;
        loop {
            let page = log.scan_back(before, 7).expect("page");
            let Some((id, _)) = page.last() else { break };
            before = Some(u64::from_be_bytes(id.as_slice().try_into().expect("id")));
            backward.extend(page);
        }
        assert_eq!(backward, forward);
        assert!(log.scan_back(Some(0), 5).expect("page").is_empty());
    }

    #[test]
    fn appends_read_back_in_order_across_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = open(&dir);
        let a = log.append(b"one").expect("append");
        assert!(log.append(b"").is_err(), "an empty record is refused");
        let b = log.append(b"two").expect("append");
        let c = log.append(b"three").expect("append");
        assert!(a < b && b < c);
        drop(log);
        let log = open(&dir);
        let got: Vec<Vec<u8>> = log.scan().expect("scan").into_iter().map(|r| r.1).collect();
        assert_eq!(
            got,
            vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
        );
        assert_eq!(log.last().map(|r| r.1), Some(b"three".to_vec()));
        assert!(log.append(b"four").expect("append") > c);
    }

    #[test]
    fn records_appended_together_read_back_as_if_appended_one_by_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = open(&dir);
        let first = log.append(b"one").expect("append");
        let last = log
            .append_all(&[b"two".as_slice(), b"three"])
            .expect("append all");
        assert!(
            log.append_all(&[b"four".as_slice(), b""]).is_err(),
            "an empty record refuses the whole batch"
        );
        let records = log.scan().expect("scan");
        let got: Vec<&[u8]> = records.iter().map(|r| r.1.as_slice()).collect();
        assert_eq!(got, [&b"one"[..], b"two", b"three"]);
        // Ids are offsets, the last one returned and kept as the tail.
        assert_eq!(records[0].0, first.to_be_bytes());
        assert_eq!(records[2].0, last.to_be_bytes());
        assert_eq!(log.last().map(|r| r.1), Some(b"three".to_vec()));
        drop(log);
        let log = open(&dir);
        assert_eq!(log.scan().expect("scan").len(), 3);
        assert_eq!(log.last().map(|r| r.0), Some(last.to_be_bytes().to_vec()));
    }

    #[test]
    fn torn_tail_is_cut_and_earlier_records_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = open(&dir);
        log.append(b"kept").expect("append");
        log.append(b"torn record").expect("append");
        drop(log);
        let path = dir.path().join("log");
        let full = std::fs::metadata(&path).expect("meta").len();
        for cut in 1..(b"torn record".len() as u64 + FRAME_OVERHEAD) {
            let copy = dir.path().join(format!("log{cut}"));
            std::fs::copy(&path, &copy).expect("copy");
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&copy)
                .expect("open");
            f.set_len(full - cut).expect("truncate");
            let log = AppendLog::open(&copy).expect("open torn");
            let got: Vec<Vec<u8>> = log.scan().expect("scan").into_iter().map(|r| r.1).collect();
            assert_eq!(got, vec![b"kept".to_vec()], "cut {cut}");
            log.append(b"next").expect("append after cut");
            drop(log);
            let got: Vec<Vec<u8>> = AppendLog::open(&copy)
                .expect("reopen")
                .scan()
                .expect("scan")
                .into_iter()
                .map(|r| r.1)
                .collect();
            assert_eq!(got, vec![b"kept".to_vec(), b"next".to_vec()], "cut {cut}");
        }
    }

    #[test]
    fn flipped_byte_in_the_newest_record_is_found_at_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = open(&dir);
        log.append(b"first").expect("append");
        log.append(b"second").expect("append");
        drop(log);
        let path = dir.path().join("log");
        let mut bytes = std::fs::read(&path).expect("read");
        let at = bytes.len() - 10;
        bytes[at] ^= 1;
        std::fs::write(&path, &bytes).expect("write");
        let log = AppendLog::open(&path).expect("open");
        assert_eq!(log.last().map(|r| r.1), Some(b"first".to_vec()));
    }

    #[test]
    fn a_zero_filled_tail_is_cut_and_damage_before_intact_records_is_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = open(&dir);
        log.append(b"first").expect("append");
        log.append(b"second").expect("append");
        log.append(b"third").expect("append");
        drop(log);
        let path = dir.path().join("log");
        let mut bytes = std::fs::read(&path).expect("read");
        // Damage inside the middle record: kept (the audit chain's MAC reports it).
        bytes[4 + 5 + 8 + 4 + 2] ^= 1;
        // A zero-filled extent after a power failure.
        bytes.extend_from_slice(&[0; 48]);
        std::fs::write(&path, &bytes).expect("write");
        let log = AppendLog::open(&path).expect("open");
        let got: Vec<Vec<u8>> = log.scan().expect("scan").into_iter().map(|r| r.1).collect();
        assert_eq!(got.len(), 3, "only the zeros are cut");
        assert_eq!(got[0], b"first".to_vec());
        assert_ne!(got[1], b"second".to_vec());
        assert_eq!(got[2], b"third".to_vec());
    }

    #[test]
    fn concurrent_appends_and_syncs_lose_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Arc::new(open(&dir));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let log = Arc::clone(&log);
                std::thread::spawn(move || {
                    for i in 0..200 {
                        log.append(format!("{t}:{i}").as_bytes()).expect("append");
                        if i % 10 == 0 {
                            log.sync().expect("sync");
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("join");
        }
        drop(log);
        let records = open(&dir).scan().expect("scan");
        assert_eq!(records.len(), 1600);
        for t in 0..8 {
            let mine: Vec<String> = records
                .iter()
                .map(|r| String::from_utf8(r.1.clone()).expect("utf8"))
                .filter(|s| s.starts_with(&format!("{t}:")))
                .collect();
            let want: Vec<String> = (0..200).map(|i| format!("{t}:{i}")).collect();
            assert_eq!(mine, want, "thread {t}'s records in order");
        }
    }
}
