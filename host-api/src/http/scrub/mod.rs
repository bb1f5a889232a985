//! Scrubbing injected values out of what goes back to the guest.
//!
//! Normalise, then match; redact in the original. Rather than list the encodings of each
//! value, the scrubber decodes the *data* into views (see [`views`]): the data itself,
//! and the data with backslash escapes, HTML entities, percent escapes (with and without
//! `+` as space) or quoted-printable decoded, or its base64 or hex runs decoded. Decoders
//! are chained up to [`MAX_DEPTH`] deep (percent → base64, base64url → JSON escapes for a
//! JWT payload, HTML → backslash, …). Every view maps its bytes back to the source bytes
//! they came from, so a value found in any view is redacted where it sits in the data.
//! Views are built one chain at a time, depth first, and dropped after use.
//!
//! Values are matched with ASCII case-insensitivity (header names come back lower-cased,
//! and some upstreams change the case of an echo), as UTF-16LE/BE, and reversed. A value
//! an upstream cuts over several header values or JSON string values is found in their
//! concatenation, in order, and every piece is redacted ([`Matcher::scrub_pieces`],
//! [`Matcher::scrub_body`]); nothing is joined unless there are two pieces. All matches
//! are found, overlapping ones included, and the union of their source spans is replaced,
//! each joined stretch once, by [`REDACTED`]: no match can hide part of another.
//!
//! Fail closed: a matcher that cannot be built, data too large to index, or a passed
//! deadline is an error, never unscrubbed data.
//!
//! Very short values: every occurrence is scrubbed however short the value, so a one-byte
//! secret mangles every response that contains that byte. That is the safe failure; do
//! not store such values.

mod json;
mod views;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use std::cell::Cell;
use std::time::Instant;
use views::{CLOCK_EVERY, DECODERS, View, check};
use zeroize::Zeroizing;

/// What a scrubbed occurrence is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// Deepest chain of decoders applied to the data (percent → base64 → backslash, …).
const MAX_DEPTH: usize = 3;

/// Most bytes, in a parent view, that one decoded byte of a child can come from, for
/// the encodings decoders read (`&VerticalLine;` is 14 for one byte; base64 with MIME
/// line breaks under 2). Bounds how far a match reaches from a decoded escape.
const EXPANSION: usize = 16;

/// Longest value accepted, in bytes (the store's limit).
const MAX_VALUE: usize = 64 * 1024;

/// Why data could not be scrubbed. Never carries a value or the data.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ScrubError {
    /// The deadline passed before every view was searched.
    #[error("scrubbing did not finish before its deadline")]
    Deadline,
    /// The automaton could not be built.
    #[error("the scrubber could not be built: {0}")]
    Build(#[source] aho_corasick::BuildError),
    /// A value is empty or longer than 64 KiB.
    #[error("a value to scrub is empty or longer than {MAX_VALUE} bytes")]
    Value,
    /// The data is too large to index (4 GiB or more).
    #[error("the data is too large to scrub")]
    TooLarge,
}

/// An immutable matcher over a set of secret values (each 1 byte to 64 KiB).
///
/// The values (and their UTF-16 forms) are copied only into zeroizing buffers, which are
/// dropped once the automaton is built; the automaton's own tables, which encode the
/// values, are not zeroized on drop. `Debug` shows only how many values there are.
pub(crate) struct Matcher {
    values: usize,
    automaton: Option<AhoCorasick>,
    min_len: usize,
    max_len: usize,
}

impl std::fmt::Debug for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Matcher")
            .field("values", &self.values)
            .finish_non_exhaustive()
    }
}

impl Matcher {
    /// A matcher for `values`. Duplicates are dropped. Errors if a value is empty or
    /// over 64 KiB, or the automaton cannot be built.
    pub fn new<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Result<Matcher, ScrubError> {
        let mut patterns: Vec<Zeroizing<Vec<u8>>> = Vec::new();
        let mut count = 0;
        let add = |p: Zeroizing<Vec<u8>>, patterns: &mut Vec<Zeroizing<Vec<u8>>>| {
            if !patterns.iter().any(|q| **q == *p) {
                patterns.push(p);
            }
        };
        for v in values {
            if v.is_empty() || v.len() > MAX_VALUE {
                return Err(ScrubError::Value);
            }
            if patterns.iter().any(|q| q.as_slice() == v) {
                continue;
            }
            count += 1;
            add(Zeroizing::new(v.to_vec()), &mut patterns);
            let (le, be) = utf16(v);
            add(le, &mut patterns);
            add(be, &mut patterns);
            // ASCII case is matched by the automaton; an echo upper- or lower-cased as a
            // whole also changes non-ASCII letters (ü → Ü), which only these forms cover.
            // Servers that read header bytes as Latin-1 (Node, Python's http.server) echo
            // each byte of a non-ASCII value as its own character: "ü" comes back "Ã¼".
            if !v.is_ascii() {
                let misread: String = v.iter().map(|&b| char::from(b)).collect();
                add(Zeroizing::new(misread.into_bytes()), &mut patterns);
            }
            if let Ok(text) = std::str::from_utf8(v)
                && !text.is_ascii()
            {
                for cased in [text.to_uppercase(), text.to_lowercase()] {
                    if !cased.is_empty() && cased.len() <= 4 * MAX_VALUE {
                        add(Zeroizing::new(cased.into_bytes()), &mut patterns);
                    }
                }
                // Reversed by characters (a string reversed in any language), as well as
                // by bytes (below).
                add(
                    Zeroizing::new(text.chars().rev().collect::<String>().into_bytes()),
                    &mut patterns,
                );
            }
            // The value reversed: a pattern rather than a reversed view of the data, so
            // that it costs no second pass, and every decoded view is searched for it too.
            add(
                Zeroizing::new(v.iter().rev().copied().collect()),
                &mut patterns,
            );
        }
        let automaton = if patterns.is_empty() {
            None
        } else {
            Some(
                AhoCorasick::builder()
                    .match_kind(MatchKind::Standard)
                    .ascii_case_insensitive(true)
                    // Never a DFA: its size grows with pattern bytes times the alphabet,
                    // and a 64 KiB value made its build take tens of seconds (outside
                    // any deadline). The contiguous NFA is linear in the patterns.
                    .kind(Some(AhoCorasickKind::ContiguousNFA))
                    .build(patterns.iter().map(|p| p.as_slice()))
                    .map_err(ScrubError::Build)?,
            )
        };
        let min_len = patterns.iter().map(|p| p.len()).min().unwrap_or(0);
        let max_len = patterns.iter().map(|p| p.len()).max().unwrap_or(0);
        Ok(Matcher {
            values: count,
            automaton,
            min_len,
            max_len,
        })
    }

    /// Whether there is nothing to scrub.
    #[allow(
        dead_code,
        reason = "part of the matcher's API; the host may not need it"
    )]
    pub fn is_empty(&self) -> bool {
        self.automaton.is_none()
    }

    /// `data` with every occurrence of any value, in any supported encoding, replaced by
    /// [`REDACTED`] (the union of all matches, overlapping ones included). Errors, rather
    /// than return anything unscrubbed, if `deadline` passes first.
    pub fn scrub(&self, data: &[u8], deadline: Option<Instant>) -> Result<Vec<u8>, ScrubError> {
        let ranges = self.ranges(data, &Clock::start(deadline)?)?;
        Ok(redact(data, &ranges))
    }

    /// The stretches of `data` that hold a value, in any supported encoding: sorted,
    /// overlapping and adjacent matches joined.
    fn ranges(&self, data: &[u8], clock: &Clock) -> Result<Vec<(usize, usize)>, ScrubError> {
        let Some(automaton) = &self.automaton else {
            return Ok(Vec::new());
        };
        clock.scanned(data.len())?;
        if u32::try_from(data.len()).is_err() {
            return Err(ScrubError::TooLarge);
        }
        let mut ranges = Vec::new();
        self.explore(automaton, &View::raw(data), 0, false, &mut ranges, clock)?;
        merge(&mut ranges);
        Ok(ranges)
    }

    /// The pieces of one answer (its header values), each scrubbed; a value cut across
    /// consecutive pieces is found in their concatenation, in order, and every piece
    /// holding part of it is redacted there.
    pub fn scrub_pieces(
        &self,
        pieces: &[&[u8]],
        deadline: Option<Instant>,
    ) -> Result<Vec<Vec<u8>>, ScrubError> {
        let clock = Clock::start(deadline)?;
        let mut ranges = pieces
            .iter()
            .map(|p| self.ranges(p, &clock))
            .collect::<Result<Vec<_>, _>>()?;
        for (i, start, end) in self.across(pieces, &clock)? {
            ranges[i].push((start, end));
        }
        Ok(pieces
            .iter()
            .zip(ranges.iter_mut())
            .map(|(p, r)| {
                merge(r);
                redact(p, r)
            })
            .collect())
    }

    /// [`Self::scrub`] for a response body: also every part of a value an upstream cut
    /// over the body's JSON string values (found in their concatenation, in document
    /// order). Only a JSON body with two string values or more is joined.
    pub fn scrub_body(
        &self,
        body: &[u8],
        deadline: Option<Instant>,
    ) -> Result<Vec<u8>, ScrubError> {
        Ok(redact(body, &self.body_ranges(body, deadline)?))
    }

    /// Whether [`Self::scrub_body`] would redact anything in `body`.
    pub fn holds(&self, body: &[u8], deadline: Option<Instant>) -> Result<bool, ScrubError> {
        Ok(!self.body_ranges(body, deadline)?.is_empty())
    }

    fn body_ranges(
        &self,
        body: &[u8],
        deadline: Option<Instant>,
    ) -> Result<Vec<(usize, usize)>, ScrubError> {
        if self.automaton.is_none() {
            return Ok(Vec::new());
        }
        let spans = json::string_values(body);
        self.ranges_across(body, &spans, &Clock::start(deadline)?)
    }

    /// [`Self::ranges`] of `data`, and the parts of a value cut across its `spans` (the
    /// contents of its JSON string values), found in their concatenation in order.
    fn ranges_across(
        &self,
        data: &[u8],
        spans: &[(usize, usize)],
        clock: &Clock,
    ) -> Result<Vec<(usize, usize)>, ScrubError> {
        let mut ranges = self.ranges(data, clock)?;
        let pieces: Vec<&[u8]> = spans.iter().map(|&(s, e)| &data[s..e]).collect();
        for (i, start, end) in self.across(&pieces, clock)? {
            ranges.push((spans[i].0 + start, spans[i].0 + end));
        }
        merge(&mut ranges);
        Ok(ranges)
    }

    /// Matches in the concatenation of `pieces`, each as the parts of the pieces it covers:
    /// `(piece, start, end)` within the piece. Nothing is joined (or allocated) unless two
    /// pieces are non-empty and together as long as the shortest pattern.
    fn across(
        &self,
        pieces: &[&[u8]],
        clock: &Clock,
    ) -> Result<Vec<(usize, usize, usize)>, ScrubError> {
        let Some(automaton) = &self.automaton else {
            return Ok(Vec::new());
        };
        let total: usize = pieces.iter().map(|p| p.len()).sum();
        if pieces.iter().filter(|p| !p.is_empty()).count() < 2 || total < self.min_len {
            return Ok(Vec::new());
        }
        clock.scanned(total)?;
        if u32::try_from(total).is_err() {
            return Err(ScrubError::TooLarge);
        }
        let mut joined = Zeroizing::new(Vec::with_capacity(total));
        let mut starts = Vec::with_capacity(pieces.len());
        for p in pieces {
            starts.push(joined.len());
            joined.extend_from_slice(p);
        }
        let mut ranges = Vec::new();
        self.explore(automaton, &View::raw(&joined), 0, false, &mut ranges, clock)?;
        merge(&mut ranges);
        let mut out = Vec::new();
        for (start, end) in ranges {
            // The last piece starting at or before `start` holds it (an empty piece
            // shares its start with the next one).
            let mut i = starts.partition_point(|&s| s <= start).saturating_sub(1);
            while i < pieces.len() && starts[i] < end {
                let lo = start.max(starts[i]) - starts[i];
                let hi = end.min(starts[i] + pieces[i].len()) - starts[i];
                if lo < hi {
                    out.push((i, lo, hi));
                }
                i += 1;
            }
        }
        Ok(out)
    }

    /// Whether `data` holds any value (in any supported encoding).
    #[cfg(test)]
    pub fn finds(&self, data: &[u8]) -> bool {
        self.scrub(data, None).map_or(true, |out| out != data)
    }

    /// Matches in `view`, then in each child view, depth first so that only one chain
    /// of views is alive at a time.
    fn explore(
        &self,
        automaton: &AhoCorasick,
        view: &View<'_>,
        depth: usize,
        binary_used: bool,
        ranges: &mut Vec<(usize, usize)>,
        clock: &Clock,
    ) -> Result<(), ScrubError> {
        for m in automaton.find_overlapping_iter(view.bytes()) {
            if let Some(span) = view.source(m.start(), m.end())
                && span.start < span.end
            {
                ranges.push((span.start as usize, span.end as usize));
            }
        }
        if ranges.len() > 1 << 16 {
            merge(ranges);
        }
        if depth == MAX_DEPTH {
            return Ok(());
        }
        let window = self.window(MAX_DEPTH - depth - 1);
        for dec in DECODERS {
            // Decoding base64 or hex twice in one chain finds nothing real.
            if dec.is_binary() && binary_used {
                continue;
            }
            for variant in 0..dec.variants() {
                // Each decoder reads the whole view (and checks the clock itself in long
                // ones): charged by its length, not a clock read per view.
                clock.scanned(view.bytes().len())?;
                let Some(child) =
                    dec.decode(view, variant, self.min_len, window, clock.deadline)?
                else {
                    continue;
                };
                self.explore(
                    automaton,
                    &child,
                    depth + 1,
                    binary_used || dec.is_binary(),
                    ranges,
                    clock,
                )?;
            }
        }
        Ok(())
    }

    /// How far, in a child view's bytes, a match found in it or in one of its
    /// descendants (`below` more decoders) can reach from a decoded escape.
    fn window(&self, below: usize) -> usize {
        (0..below).fold(self.max_len, |w, _| w.saturating_mul(EXPANSION))
    }
}

/// The deadline of one scrub: read from the clock when the scrub starts, then once per
/// [`CLOCK_EVERY`] bytes scanned, not at every view: the dozens of small views of a short
/// answer cost one clock read, and a long one is still stopped within 64 KiB of work.
struct Clock {
    deadline: Option<Instant>,
    /// Bytes scanned since the clock was last read.
    unread: Cell<usize>,
}

impl Clock {
    fn start(deadline: Option<Instant>) -> Result<Clock, ScrubError> {
        check(deadline)?;
        Ok(Clock {
            deadline,
            unread: Cell::new(0),
        })
    }

    /// Counts `bytes` about to be scanned; reads the clock once they add up to
    /// [`CLOCK_EVERY`].
    fn scanned(&self, bytes: usize) -> Result<(), ScrubError> {
        let unread = self.unread.get().saturating_add(bytes);
        if unread < CLOCK_EVERY {
            self.unread.set(unread);
            return Ok(());
        }
        self.unread.set(0);
        check(self.deadline)
    }
}

/// `data` with each of the (sorted, disjoint) `ranges` replaced by [`REDACTED`].
fn redact(data: &[u8], ranges: &[(usize, usize)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut at = 0;
    for &(start, end) in ranges {
        out.extend_from_slice(&data[at..start]);
        out.extend_from_slice(REDACTED.as_bytes());
        at = end;
    }
    out.extend_from_slice(&data[at..]);
    out
}

/// Sorts and joins overlapping or adjacent ranges.
fn merge(ranges: &mut Vec<(usize, usize)>) {
    ranges.sort_unstable();
    let mut out: Vec<(usize, usize)> = Vec::with_capacity(ranges.len());
    for &(s, e) in ranges.iter() {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    *ranges = out;
}

/// The value as UTF-16LE and UTF-16BE: its characters if it is UTF-8, else each byte
/// widened.
fn utf16(v: &[u8]) -> (Zeroizing<Vec<u8>>, Zeroizing<Vec<u8>>) {
    let units: Zeroizing<Vec<u16>> = Zeroizing::new(match std::str::from_utf8(v) {
        Ok(s) => s.encode_utf16().collect(),
        Err(_) => v.iter().map(|&b| u16::from(b)).collect(),
    });
    let mut le = Zeroizing::new(Vec::with_capacity(units.len() * 2));
    let mut be = Zeroizing::new(Vec::with_capacity(units.len() * 2));
    for u in units.iter() {
        le.extend_from_slice(&u.to_le_bytes());
        be.extend_from_slice(&u.to_be_bytes());
    }
    (le, be)
}

#[cfg(test)]
mod tests;
