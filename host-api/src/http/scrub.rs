//! Scrubbing injected values out of what goes back to the guest.
//!
//! For every value injected during a run, the scrubber removes (replaces with
//! [`REDACTED`]) the raw bytes and their common encodings: base64 and base64url, padded or
//! not, also at the two other 3-byte alignments a value can have inside a longer base64
//! text; lower- and upper-case hex; percent-encoding (both hex cases, and form encoding);
//! and JSON string escaping. Also the exact header values built around them
//! (`Bearer …`, the basic-auth blob).
//!
//! Very short values: every occurrence is scrubbed however short the value, so a one-byte
//! secret mangles every response that contains that byte. That is the safe failure; do
//! not store such values. Misaligned base64 fragments shorter than 4 characters are not
//! scrubbed (they would match almost anything).

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// What a scrubbed occurrence is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// Removes known secret values from byte strings.
#[derive(Default)]
pub(crate) struct Scrubber {
    patterns: Vec<Zeroizing<Vec<u8>>>,
    seen: Vec<[u8; 32]>,
    matcher: Option<AhoCorasick>,
}

impl Scrubber {
    /// Whether nothing has been added yet.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Adds `value` and its encodings. Cheap if the value was added before.
    pub fn add_value(&mut self, value: &[u8]) {
        let digest: [u8; 32] = Sha256::digest(value).into();
        if self.seen.contains(&digest) {
            return;
        }
        self.seen.push(digest);
        for p in encodings(value) {
            self.push(p);
        }
        self.rebuild();
    }

    /// Adds an exact byte string (an injected header value), no encodings.
    pub fn add_exact(&mut self, bytes: &[u8]) {
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        if self.seen.contains(&digest) {
            return;
        }
        self.seen.push(digest);
        self.push(Zeroizing::new(bytes.to_vec()));
        self.rebuild();
    }

    fn push(&mut self, p: Zeroizing<Vec<u8>>) {
        if !p.is_empty() && !self.patterns.iter().any(|q| **q == *p) {
            self.patterns.push(p);
        }
    }

    fn rebuild(&mut self) {
        self.matcher = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(self.patterns.iter().map(|p| p.as_slice()))
            .ok();
    }

    /// `data` with every known pattern replaced by [`REDACTED`].
    pub fn scrub(&self, data: &[u8]) -> Vec<u8> {
        match &self.matcher {
            Some(m) => {
                let mut out = Vec::with_capacity(data.len());
                m.replace_all_with_bytes(data, &mut out, |_, _, dst| {
                    dst.extend_from_slice(REDACTED.as_bytes());
                    true
                });
                out
            }
            None => data.to_vec(),
        }
    }

    /// Whether `data` contains any known pattern.
    #[cfg(test)]
    pub fn finds(&self, data: &[u8]) -> bool {
        self.matcher.as_ref().is_some_and(|m| m.is_match(data))
    }
}

fn encodings(v: &[u8]) -> Vec<Zeroizing<Vec<u8>>> {
    let z = |s: String| Zeroizing::new(s.into_bytes());
    let mut out = vec![Zeroizing::new(v.to_vec())];
    for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
        out.push(z(engine.encode(v)));
    }
    // The same value at offsets 1 and 2 inside a longer base64 text: only the characters
    // that depend on the value's bits alone are stable.
    for shift in 1..=2usize {
        let mut padded = Zeroizing::new(vec![0u8; shift]);
        padded.extend_from_slice(v);
        for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
            let enc = Zeroizing::new(engine.encode(padded.as_slice()));
            let start = (8 * shift).div_ceil(6);
            let end = (8 * (shift + v.len())) / 6; // exclusive
            if end > start && end - start >= 4 {
                out.push(Zeroizing::new(enc.as_bytes()[start..end].to_vec()));
            }
        }
    }
    // The value at offset 0 with more text after it: drop the last, mixed character.
    for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
        let enc = Zeroizing::new(engine.encode(v));
        let full = (8 * v.len()) / 6;
        if full >= 4 && full < enc.len() {
            out.push(Zeroizing::new(enc.as_bytes()[..full].to_vec()));
        }
    }
    out.push(z(hex::encode(v)));
    out.push(z(hex::encode_upper(v)));
    if let Ok(s) = std::str::from_utf8(v) {
        let upper = utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
        out.push(z(lowercase_escapes(&upper)));
        out.push(z(upper));
        out.push(z(url::form_urlencoded::byte_serialize(v).collect()));
        if let Ok(json) = serde_json::to_string(s) {
            out.push(z(json[1..json.len() - 1].to_owned()));
        }
    }
    out
}

/// `%2F` → `%2f`, leaving the other characters alone.
fn lowercase_escapes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut hex_left = 0;
    for c in s.chars() {
        if c == '%' {
            hex_left = 2;
            out.push(c);
        } else if hex_left > 0 {
            hex_left -= 1;
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "sk-live/0123456789+abcdef==ü";

    fn scrubber() -> Scrubber {
        let mut s = Scrubber::default();
        s.add_value(SECRET.as_bytes());
        s
    }

    #[test]
    fn scrubs_raw_and_every_encoding() {
        let s = scrubber();
        let v = SECRET.as_bytes();
        let forms = vec![
            SECRET.to_owned(),
            STANDARD.encode(v),
            STANDARD_NO_PAD.encode(v),
            URL_SAFE.encode(v),
            URL_SAFE_NO_PAD.encode(v),
            hex::encode(v),
            hex::encode_upper(v),
            utf8_percent_encode(SECRET, NON_ALPHANUMERIC).to_string(),
            lowercase_escapes(&utf8_percent_encode(SECRET, NON_ALPHANUMERIC).to_string()),
            url::form_urlencoded::byte_serialize(v).collect(),
        ];
        for form in forms {
            let body = format!("{{\"echo\": \"{form}\"}}");
            let out = String::from_utf8(s.scrub(body.as_bytes())).expect("utf8");
            assert!(!out.contains(&form), "{form} survived: {out}");
            assert!(out.contains(REDACTED));
        }
    }

    #[test]
    fn scrubs_base64_of_value_inside_longer_text_at_any_alignment() {
        let s = scrubber();
        for prefix in ["", "a", "ab", "user:", "Bearer "] {
            for suffix in ["", "x", "xy", ":tail"] {
                let blob = STANDARD.encode(format!("{prefix}{SECRET}{suffix}"));
                let out = String::from_utf8(s.scrub(blob.as_bytes())).expect("utf8");
                assert!(out.contains(REDACTED), "{prefix:?}/{suffix:?}: {out}");
                // Nothing decodable to the secret remains.
                assert!(
                    !String::from_utf8_lossy(
                        &STANDARD
                            .decode(out.replace(REDACTED, ""))
                            .unwrap_or_default()
                    )
                    .contains(SECRET)
                );
            }
        }
    }

    #[test]
    fn leaves_other_text_alone() {
        let s = scrubber();
        let body = b"{\"ok\":true,\"ts\":\"1700000000.000100\"}";
        assert_eq!(s.scrub(body), body.to_vec());
        assert!(!s.finds(body));
        assert!(Scrubber::default().scrub(b"abc") == b"abc");
    }

    #[test]
    fn short_values_are_scrubbed_everywhere() {
        let mut s = Scrubber::default();
        s.add_value(b"x");
        assert_eq!(s.scrub(b"axb"), format!("a{REDACTED}b").into_bytes());
    }
}
