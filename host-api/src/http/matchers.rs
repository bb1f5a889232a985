//! Scrub matchers shared by the runs of one runtime, by the exact set of values each
//! matches.
//!
//! Building a matcher (an Aho-Corasick automaton over a value and its UTF-16 forms, ASCII
//! case folded) was the largest single cost an injected fetch adds to a keyless one:
//! about 24 µs of 90 in a differential profile (bench/RESULTS.md). A long-lived host sends
//! the same values again and again, so the runs share them. The key is the set of SHA-256
//! digests of each credential's identity (`scope/key@version`) with its value, so a rotated
//! value gets a new matcher at its first use, and no matcher ever covers a value another
//! run's responses should not be checked for (the set is chosen per destination by the run,
//! as before). Keying by credential, not by value alone, keeps the timing of a shared
//! matcher from telling a step whether some other credential holds the same value as its
//! own. A matcher's tables encode the values and were never zeroized on drop; kept here they
//! live while their set is among the most recently used [`CAPACITY`].
//!
//! What is kept is bounded by the bytes of the values matched, not only by count: a step
//! that can combine many large credentials must not make the host keep large automatons
//! after its runs end. A set over [`MAX_KEPT_SET_BYTES`] is built for the run and dropped
//! with it, as before; the sets kept hold at most [`MAX_KEPT_BYTES`] of values together.

use super::scrub::{Matcher, ScrubError};
use std::sync::{Arc, Mutex};

/// Value sets kept; the least recently used is dropped first.
pub(crate) const CAPACITY: usize = 64;
/// The largest value set (bytes of its values) that is kept after its run.
pub(crate) const MAX_KEPT_SET_BYTES: usize = 16 * 1024;
/// Bytes of values, over every set kept.
pub(crate) const MAX_KEPT_BYTES: usize = 256 * 1024;

/// The digests (credential identity and value) of what a matcher covers, in the order the
/// run noted them.
pub(crate) type Key = Vec<[u8; 32]>;

/// Recently used matchers, most recent last.
#[derive(Default)]
pub(crate) struct Matchers {
    recent: Mutex<Vec<Kept>>,
}

/// A kept matcher, its key, and the bytes of the values it matches.
struct Kept {
    key: Key,
    bytes: usize,
    matcher: Arc<Matcher>,
}

impl Matchers {
    /// The matcher for `key` (whose values are `bytes` long together), built with `build`
    /// if no run has one.
    pub fn get_or_build(
        &self,
        key: Key,
        bytes: usize,
        build: impl FnOnce() -> Result<Matcher, ScrubError>,
    ) -> Result<Arc<Matcher>, ScrubError> {
        if let Some(m) = self.take_recent(&key) {
            return Ok(m);
        }
        // Built outside the lock: two runs building the same set at once both build it,
        // which is cheaper than making every other run wait.
        let matcher = Arc::new(build()?);
        if bytes > MAX_KEPT_SET_BYTES {
            return Ok(matcher);
        }
        let mut recent = self.lock();
        if !recent.iter().any(|k| k.key == key) {
            recent.push(Kept {
                key,
                bytes,
                matcher: matcher.clone(),
            });
            while recent.len() > CAPACITY
                || recent.iter().map(|k| k.bytes).sum::<usize>() > MAX_KEPT_BYTES
            {
                recent.remove(0);
            }
        }
        Ok(matcher)
    }

    fn take_recent(&self, key: &Key) -> Option<Arc<Matcher>> {
        let mut recent = self.lock();
        let i = recent.iter().position(|k| k.key == *key)?;
        let entry = recent.remove(i);
        let m = entry.matcher.clone();
        recent.push(entry);
        Some(m)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Kept>> {
        self.recent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many sets are kept (tests).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> Key {
        vec![[b; 32]]
    }

    #[test]
    fn a_set_is_built_once_and_the_least_recently_used_goes_first() {
        let cache = Matchers::default();
        let mut builds = 0;
        for _ in 0..3 {
            cache
                .get_or_build(key(1), 20, || {
                    builds += 1;
                    Matcher::new([b"value-one-0123456789".as_slice()])
                })
                .expect("build");
        }
        assert_eq!(builds, 1);
        for b in 2..=(CAPACITY as u8) {
            cache
                .get_or_build(key(b), 20, || {
                    Matcher::new([b"another-value-012345".as_slice()])
                })
                .expect("build");
        }
        // Key 1 was the oldest use; touching it keeps it, and the next new key evicts 2.
        cache
            .get_or_build(key(1), 20, || panic!("rebuilt a kept set"))
            .expect("kept");
        cache
            .get_or_build(key(200), 20, || {
                Matcher::new([b"newest-value-0123456".as_slice()])
            })
            .expect("build");
        assert_eq!(cache.len(), CAPACITY);
        let mut rebuilt = false;
        cache
            .get_or_build(key(2), 20, || {
                rebuilt = true;
                Matcher::new([b"another-value-012345".as_slice()])
            })
            .expect("build");
        assert!(rebuilt, "the least recently used set was kept");
    }

    #[test]
    fn large_value_sets_are_not_kept_and_the_kept_bytes_are_bounded() {
        let cache = Matchers::default();
        let big = vec![b'k'; MAX_KEPT_SET_BYTES + 1];
        let mut builds = 0;
        for _ in 0..2 {
            cache
                .get_or_build(key(1), big.len(), || {
                    builds += 1;
                    Matcher::new([big.as_slice()])
                })
                .expect("build");
        }
        assert_eq!((builds, cache.len()), (2, 0), "a large set was kept");
        let value = vec![b'v'; MAX_KEPT_SET_BYTES];
        for b in 0..20u8 {
            cache
                .get_or_build(key(b), value.len(), || Matcher::new([value.as_slice()]))
                .expect("build");
        }
        assert_eq!(cache.len(), MAX_KEPT_BYTES / MAX_KEPT_SET_BYTES);
    }

    #[test]
    fn a_matcher_finds_only_its_own_values() {
        let cache = Matchers::default();
        let one = cache
            .get_or_build(key(1), 20, || {
                Matcher::new([b"value-one-0123456789".as_slice()])
            })
            .expect("one");
        let two = cache
            .get_or_build(key(2), 20, || {
                Matcher::new([b"value-two-9876543210".as_slice()])
            })
            .expect("two");
        assert!(one.finds(b"..value-one-0123456789.."));
        assert!(!one.finds(b"..value-two-9876543210.."));
        assert!(two.finds(b"..value-two-9876543210.."));
    }
}
