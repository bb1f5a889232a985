//! Secret ids an embedded store knows it does not hold.
//!
//! Resolution looks for a key in up to six tiers, and on a sled tree of 10,000 records or
//! more each absent lookup costs about 1 µs: three of them were most of a resolution that
//! finds its key in the fourth tier. Remembering them is exact for a sled store only: sled
//! holds an exclusive lock on its directory, so every write of the store goes through this
//! one backend, and each write forgets its id before it returns. A PostgreSQL store, which
//! other hosts write, never remembers a miss.
//!
//! A miss is remembered only if no write happened between the read that missed and the
//! remembering (a write count, compared under the lock), so a record written while a
//! reader was finding it absent is never hidden.

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard};

/// Ids remembered at most; when full the set starts again (a guest asking for ever more
/// absent keys must not grow the host's memory).
const CAPACITY: usize = 4096;

/// Ids known absent; see the module's documentation.
#[derive(Default)]
pub(crate) struct Absent {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    ids: HashSet<Vec<u8>>,
    /// Writes so far: a miss read before a write is not remembered after it.
    writes: u64,
}

impl Absent {
    /// `None` if `id` is known absent; otherwise the write count to give
    /// [`Absent::remember`] if the read that follows misses.
    pub(crate) fn check(&self, id: &[u8]) -> Option<u64> {
        let inner = self.lock();
        if inner.ids.contains(id) {
            None
        } else {
            Some(inner.writes)
        }
    }

    /// Remembers that `id` was absent, if nothing was written since `writes` was taken.
    pub(crate) fn remember(&self, id: &[u8], writes: u64) {
        let mut inner = self.lock();
        if inner.writes != writes {
            return;
        }
        if inner.ids.len() >= CAPACITY {
            inner.ids.clear();
        }
        inner.ids.insert(id.to_vec());
    }

    /// Forgets `id`, just written, and counts the write.
    pub(crate) fn written(&self, id: &[u8]) {
        let mut inner = self.lock();
        inner.ids.remove(id);
        inner.writes += 1;
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update leaves the set consistent before it could panic.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_miss_is_remembered_until_the_id_is_written() {
        let a = Absent::default();
        let w = a.check(b"k").expect("not known yet");
        a.remember(b"k", w);
        assert_eq!(a.check(b"k"), None);
        a.written(b"k");
        assert!(a.check(b"k").is_some());
    }

    #[test]
    fn a_miss_read_before_a_write_is_not_remembered() {
        let a = Absent::default();
        let w = a.check(b"k").expect("not known yet");
        // Another thread writes `k` between the read that missed and the remembering.
        a.written(b"k");
        a.remember(b"k", w);
        assert!(a.check(b"k").is_some(), "a stale miss hid a written record");
    }

    #[test]
    fn the_set_stays_bounded() {
        let a = Absent::default();
        for i in 0..CAPACITY + 10 {
            let id = i.to_be_bytes();
            let w = a.check(&id).expect("new");
            a.remember(&id, w);
        }
        assert!(a.lock().ids.len() <= CAPACITY);
    }
}
