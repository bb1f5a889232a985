//! Run records in the store, so that every host sharing it sees every run: the record
//! itself, an index by user (a runner's page of runs reads only theirs), and a lease per
//! running run that its host renews. A run whose lease expires without its host ending it
//! is marked lost by whichever host notices first (compare-and-put: one of them wins).
//!
//! Ids in the `runs` namespace: `r/<run id>` the record, `u/<user>/<run id>` the index
//! (user names have no `/`), `a/<run id>` the lease of a run not yet ended. Run ids start
//! with their start time in milliseconds, so a scan backwards from the end of `r/` reads
//! the newest runs first and the ids below `r/run-<t>` are the runs started before `t`.

mod record;

pub use record::{
    CredentialRecord, LogRecord, RefusalRecord, RunKind, RunOutput, RunRecord, RunStatus,
    StepRecord,
};

use crate::store::{Backend, BackendError, Expected};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The namespace of run records.
pub(crate) use crate::store::namespaces::RUNS as NS_RUNS;

/// How many runs a host keeps, for how long, and how it proves it is still running them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunLimits {
    /// Runs holding an instance at once on this host; more wait for a slot.
    pub max_concurrent: usize,
    /// Runs running or waiting on this host; more are refused (they hold their input).
    pub max_waiting: usize,
    /// Bytes of a run's output kept in its record; the rest is cut, and the record says
    /// so (`output_truncated`). A waited run's answer has all of it.
    pub keep_output_bytes: usize,
    /// Finished runs older than this are deleted.
    pub keep_for: Duration,
    /// Finished runs beyond this many bytes of records, oldest first, are deleted.
    pub keep_bytes: u64,
    /// How long a running run's lease lasts; its host renews it three times as often.
    /// Another host marks the run lost once its lease has expired.
    pub lease: Duration,
}

impl Default for RunLimits {
    fn default() -> Self {
        RunLimits {
            max_concurrent: 64,
            max_waiting: 256,
            keep_output_bytes: 64 << 10,
            keep_for: Duration::from_secs(7 * 24 * 3600),
            keep_bytes: 256 << 20,
            lease: Duration::from_secs(30),
        }
    }
}

/// Who is running a run, and until when they have promised to say so again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Lease {
    /// The host's id.
    pub host: String,
    /// Unix milliseconds.
    pub until_ms: u64,
}

fn record_id(run: &str) -> Vec<u8> {
    format!("r/{run}").into_bytes()
}

fn user_id(user: &str, run: &str) -> Vec<u8> {
    format!("u/{user}/{run}").into_bytes()
}

fn lease_id(run: &str) -> Vec<u8> {
    format!("a/{run}").into_bytes()
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

fn decode(bytes: &[u8]) -> Option<RunRecord> {
    serde_json::from_slice(bytes).ok()
}

/// The run records of one store.
pub(crate) struct RunStore<'a> {
    backend: &'a dyn Backend,
}

impl<'a> RunStore<'a> {
    pub(crate) fn new(backend: &'a dyn Backend) -> Self {
        RunStore { backend }
    }

    /// Writes a new run's record, its index entry and its lease, durably.
    pub(crate) fn create(&self, record: &RunRecord, lease: &Lease) -> Result<(), BackendError> {
        let (r, u, a) = (
            record_id(&record.id),
            user_id(&record.user, &record.id),
            lease_id(&record.id),
        );
        let (rv, lv) = (encode(record), encode(lease));
        self.backend
            .put_batch(NS_RUNS, &[(&r, &rv), (&u, b""), (&a, &lv)], &[])
    }

    /// Writes a run's record as it is now (still running: its lease stays).
    pub(crate) fn update(&self, record: &RunRecord) -> Result<(), BackendError> {
        self.backend
            .put(NS_RUNS, &record_id(&record.id), &encode(record))
    }

    /// Writes an ended run's record and drops its lease, durably.
    pub(crate) fn finish(&self, record: &RunRecord) -> Result<(), BackendError> {
        let (r, a) = (record_id(&record.id), lease_id(&record.id));
        let rv = encode(record);
        self.backend.put_batch(NS_RUNS, &[(&r, &rv)], &[&a])
    }

    /// The record of run `id`, if there is one (a damaged record reads as none).
    pub(crate) fn get(&self, id: &str) -> Result<Option<RunRecord>, BackendError> {
        Ok(self
            .backend
            .get(NS_RUNS, &record_id(id))?
            .and_then(|b| decode(&b)))
    }

    /// Up to `limit` runs, newest first, started before run `before` (exclusive) if
    /// given: everyone's, or only `user`'s (read through the index).
    pub(crate) fn newest(
        &self,
        user: Option<&str>,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RunRecord>, BackendError> {
        match user {
            None => {
                let before = before.map(record_id);
                Ok(self
                    .backend
                    .scan_newest(NS_RUNS, b"r/", before.as_deref(), limit)?
                    .into_iter()
                    .filter_map(|(_, bytes)| decode(&bytes))
                    .collect())
            }
            Some(user) => {
                let prefix = format!("u/{user}/").into_bytes();
                let before = before.map(|b| user_id(user, b));
                let mut out = Vec::new();
                let mut from = before;
                // Index entries of evicted runs are skipped (and removed): read pages
                // until `limit` records are found or the index ends.
                loop {
                    let page = self.backend.scan_newest(
                        NS_RUNS,
                        &prefix,
                        from.as_deref(),
                        limit.max(1),
                    )?;
                    let Some((last, _)) = page.last() else {
                        break;
                    };
                    from = Some(last.clone());
                    let full = page.len() >= limit.max(1);
                    for (id, _) in page {
                        let run = String::from_utf8_lossy(&id[prefix.len()..]).into_owned();
                        match self.get(&run)? {
                            Some(r) if r.user == user => out.push(r),
                            _ => {
                                let _ = self.backend.delete(NS_RUNS, &id);
                            }
                        }
                        if out.len() == limit {
                            return Ok(out);
                        }
                    }
                    if !full {
                        break;
                    }
                }
                Ok(out)
            }
        }
    }

    /// Renews the leases of `runs`, held by `host`, until `until_ms`.
    pub(crate) fn renew(
        &self,
        runs: &[String],
        host: &str,
        until_ms: u64,
    ) -> Result<(), BackendError> {
        let lease = encode(&Lease {
            host: host.to_owned(),
            until_ms,
        });
        let ids: Vec<Vec<u8>> = runs.iter().map(|r| lease_id(r)).collect();
        let puts: Vec<(&[u8], &[u8])> = ids
            .iter()
            .map(|i| (i.as_slice(), lease.as_slice()))
            .collect();
        self.backend.put_batch(NS_RUNS, &puts, &[])
    }

    /// Runs whose lease expired before `now_ms`, with their lease.
    pub(crate) fn expired(&self, now_ms: u64) -> Result<Vec<(String, Lease)>, BackendError> {
        Ok(self
            .backend
            .scan(NS_RUNS, b"a/")?
            .into_iter()
            .filter_map(|(id, bytes)| {
                let lease: Lease = serde_json::from_slice(&bytes).ok()?;
                let run = String::from_utf8_lossy(&id[2..]).into_owned();
                (lease.until_ms < now_ms).then_some((run, lease))
            })
            .collect())
    }

    /// Marks run `id` lost, if it is still not ended and its lease is still `lease`:
    /// another host may have ended it, renewed it, or marked it first. Returns the record
    /// written, if this call wrote it.
    pub(crate) fn mark_lost(
        &self,
        id: &str,
        lease: &Lease,
        now_ms: u64,
    ) -> Result<Option<RunRecord>, BackendError> {
        let lid = lease_id(id);
        // The lease still as read: its host has not come back.
        let current = self.backend.get(NS_RUNS, &lid)?;
        if current.as_deref() != Some(encode(lease).as_slice()) {
            return Ok(None);
        }
        let rid = record_id(id);
        let Some(bytes) = self.backend.get(NS_RUNS, &rid)? else {
            let _ = self.backend.delete(NS_RUNS, &lid);
            return Ok(None);
        };
        let Some(mut record) = decode(&bytes) else {
            return Ok(None);
        };
        if record.status.ended() {
            let _ = self.backend.delete(NS_RUNS, &lid);
            return Ok(None);
        }
        record.status = RunStatus::Lost;
        record.finished_at_ms = Some(now_ms);
        record.error = Some(format!(
            "the host running it ({}) stopped before it ended: its lease expired at {} (unix ms) without renewal",
            lease.host, lease.until_ms
        ));
        let expected = Expected {
            bytes: &bytes,
            version: 0,
        };
        if !self
            .backend
            .compare_and_put(NS_RUNS, &rid, Some(expected), &encode(&record), 0)?
        {
            return Ok(None);
        }
        let _ = self.backend.delete(NS_RUNS, &lid);
        Ok(Some(record))
    }

    /// Deletes ended runs started before `older_than_ms`, and the oldest ended runs beyond
    /// `keep_bytes` of records. Returns how many were deleted.
    pub(crate) fn evict(&self, older_than_ms: u64, keep_bytes: u64) -> Result<usize, BackendError> {
        const PAGE: usize = 256;
        let mut deleted = 0;
        let mut total: u64 = 0;
        let mut before: Option<Vec<u8>> = None;
        loop {
            let page = self
                .backend
                .scan_newest(NS_RUNS, b"r/", before.as_deref(), PAGE)?;
            let Some((last, _)) = page.last() else {
                break;
            };
            before = Some(last.clone());
            let full = page.len() == PAGE;
            for (id, bytes) in page {
                total = total.saturating_add(bytes.len() as u64);
                let Some(record) = decode(&bytes) else {
                    continue;
                };
                let old = record.started_at_ms < older_than_ms;
                if record.status.ended() && (old || total > keep_bytes) {
                    let u = user_id(&record.user, &record.id);
                    self.backend.put_batch(NS_RUNS, &[], &[&id, &u])?;
                    deleted += 1;
                }
            }
            if !full {
                break;
            }
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryBackend;

    fn run(id: &str, user: &str, status: RunStatus, output: &str) -> RunRecord {
        RunRecord {
            id: id.into(),
            kind: RunKind::Component,
            target: "echo".into(),
            user: user.into(),
            status,
            started_at_ms: id[4..8].parse().unwrap_or(0),
            finished_at_ms: None,
            output: Some(RunOutput(output.into())),
            output_truncated: false,
            error: None,
            steps: Vec::new(),
            not_run: Vec::new(),
            host: "h1".into(),
        }
    }

    fn lease(until_ms: u64) -> Lease {
        Lease {
            host: "h1".into(),
            until_ms,
        }
    }

    #[test]
    fn pages_are_newest_first_and_a_user_sees_only_their_own() {
        let b = MemoryBackend::default();
        let runs = RunStore::new(&b);
        for (i, user) in ["alice", "bob", "alice", "bob", "alice"].iter().enumerate() {
            let r = run(&format!("run-100{i}-00"), user, RunStatus::Succeeded, "1");
            runs.create(&r, &lease(0)).expect("create");
        }
        let all = runs.newest(None, None, 3).expect("page");
        let ids: Vec<_> = all.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["run-1004-00", "run-1003-00", "run-1002-00"]);
        let next = runs.newest(None, Some("run-1002-00"), 3).expect("page");
        assert_eq!(next.len(), 2);
        let alice = runs.newest(Some("alice"), None, 10).expect("page");
        let ids: Vec<_> = alice.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["run-1004-00", "run-1002-00", "run-1000-00"]);
        let page = runs
            .newest(Some("alice"), Some("run-1004-00"), 1)
            .expect("page");
        assert_eq!(page[0].id, "run-1002-00");
    }

    #[test]
    fn a_run_whose_lease_expired_is_marked_lost_once() {
        let b = MemoryBackend::default();
        let runs = RunStore::new(&b);
        let r = run("run-1000-00", "alice", RunStatus::Running, "");
        runs.create(&r, &lease(50)).expect("create");
        assert!(runs.expired(40).expect("scan").is_empty());
        let expired = runs.expired(60).expect("scan");
        assert_eq!(expired.len(), 1);
        let (id, l) = &expired[0];
        let lost = runs.mark_lost(id, l, 60).expect("mark").expect("marked");
        assert_eq!(lost.status, RunStatus::Lost);
        assert!(lost.error.as_deref().unwrap_or("").contains("h1"));
        // A second host noticing the same lease writes nothing.
        assert!(runs.mark_lost(id, l, 61).expect("mark").is_none());
        assert_eq!(
            runs.get(id).expect("get").expect("run").status,
            RunStatus::Lost
        );
        assert!(runs.expired(100).expect("scan").is_empty());
    }

    #[test]
    fn a_renewed_or_finished_run_is_not_marked_lost() {
        let b = MemoryBackend::default();
        let runs = RunStore::new(&b);
        let r = run("run-1000-00", "alice", RunStatus::Running, "");
        runs.create(&r, &lease(50)).expect("create");
        let (id, old) = runs.expired(60).expect("scan").remove(0);
        runs.renew(std::slice::from_ref(&id), "h1", 200)
            .expect("renew");
        assert!(runs.mark_lost(&id, &old, 60).expect("mark").is_none());
        let mut done = r.clone();
        done.status = RunStatus::Succeeded;
        runs.finish(&done).expect("finish");
        assert!(runs.expired(1000).expect("scan").is_empty());
        assert_eq!(
            runs.get(&id).expect("get").expect("run").status,
            RunStatus::Succeeded
        );
    }

    #[test]
    fn eviction_drops_old_runs_and_the_oldest_beyond_the_byte_budget_never_running_ones() {
        let b = MemoryBackend::default();
        let runs = RunStore::new(&b);
        for i in 0..6 {
            let status = if i == 0 {
                RunStatus::Running
            } else {
                RunStatus::Succeeded
            };
            let r = run(
                &format!("run-100{i}-00"),
                "alice",
                status,
                &"x".repeat(1000),
            );
            runs.create(&r, &lease(0)).expect("create");
        }
        // Older than 1002: 1000 (running: kept) and 1001 go.
        assert_eq!(runs.evict(1002, u64::MAX).expect("evict"), 1);
        assert!(runs.get("run-1001-00").expect("get").is_none());
        assert!(runs.get("run-1000-00").expect("get").is_some());
        // About two records' worth of bytes: the newest two stay.
        let one = serde_json::to_vec(&run(
            "run-1005-00",
            "alice",
            RunStatus::Succeeded,
            &"x".repeat(1000),
        ))
        .expect("json")
        .len() as u64;
        runs.evict(0, one * 2 + 10).expect("evict");
        let left: Vec<_> = runs
            .newest(None, None, 10)
            .expect("page")
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(left, ["run-1005-00", "run-1004-00", "run-1000-00"]);
        // The index follows the records.
        let alice = runs.newest(Some("alice"), None, 10).expect("page");
        assert_eq!(alice.len(), 3);
    }
}
