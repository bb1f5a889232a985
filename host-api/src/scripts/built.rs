//! The scripts this host has built and loaded, by the SHA-256 of their source: a call with
//! the same source runs at once instead of building for seconds. Bounded, least recently
//! used first out, since each is a compiled JavaScript engine of tens of megabytes.

use crate::sandbox::Step;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Calls that may wait for the builder at once; more are told to come back. Each holds its
/// source (up to the source limit) while it waits, so the queue is what bounds that memory.
const MAX_WAITING_BUILDS: usize = 4;

pub(crate) struct BuiltScripts {
    max: usize,
    /// Least recently used first.
    entries: Mutex<VecDeque<(String, Step)>>,
    building: tokio::sync::Semaphore,
    waiting: AtomicUsize,
}

/// A place in the queue for the builder; given back when dropped.
pub(crate) struct Queued<'a>(&'a AtomicUsize);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl BuiltScripts {
    pub(crate) fn new(max: usize) -> Self {
        BuiltScripts {
            max: max.max(1),
            entries: Mutex::new(VecDeque::new()),
            building: tokio::sync::Semaphore::new(1),
            waiting: AtomicUsize::new(0),
        }
    }

    /// A place in the queue for the builder, if there is one.
    pub(crate) fn queue(&self) -> Option<Queued<'_>> {
        let before = self.waiting.fetch_add(1, Ordering::SeqCst);
        let place = Queued(&self.waiting);
        (before < MAX_WAITING_BUILDS).then_some(place)
    }

    /// The builder: one build at a time per host (a build takes a core and about a
    /// gigabyte for seconds).
    pub(crate) fn builder(&self) -> &tokio::sync::Semaphore {
        &self.building
    }

    /// The loaded script whose source hashes to `hash`, now the most recently used.
    pub(crate) fn get(&self, hash: &str) -> Option<Step> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let at = entries.iter().position(|(h, _)| h == hash)?;
        let entry = entries.remove(at)?;
        let step = entry.1.clone();
        entries.push_back(entry);
        Some(step)
    }

    /// Keeps `step` as the script `hash`, dropping the least recently used beyond the bound.
    pub(crate) fn insert(&self, hash: String, step: Step) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|(h, _)| *h != hash);
        entries.push_back((hash, step));
        while entries.len() > self.max {
            entries.pop_front();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_for_the_builder_is_bounded_and_a_place_is_given_back() {
        let built = BuiltScripts::new(1);
        let places: Vec<_> = (0..MAX_WAITING_BUILDS).map(|_| built.queue()).collect();
        assert!(places.iter().all(Option::is_some));
        assert!(built.queue().is_none(), "one more than the bound queued");
        drop(places);
        assert!(built.queue().is_some());
    }
}
