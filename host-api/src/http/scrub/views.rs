//! Views: the data decoded one way, with where each decoded byte came from.
//!
//! A view is a byte string plus, for every byte, the span of source bytes (in the
//! original data) it was decoded from. Text decoders pass through what they do not
//! recognise, so a view of mixed text is the text with the recognised escapes decoded.
//! Binary decoders (base64, hex) keep only the decoded runs, separated by a NUL that
//! carries no source bytes.

use super::ScrubError;
use std::time::Instant;
use zeroize::Zeroizing;

/// How often long loops look at the clock, in bytes.
const CLOCK_EVERY: usize = 1 << 16;

/// Longest escape a text decoder reads (`&CounterClockwiseContourIntegral;` is 33),
/// and so the most source bytes per decoded byte. Also bounds windowing (see `window`).
const MAX_ESCAPE: usize = 40;

/// Source bytes `[start, end)` a decoded byte came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Span {
    pub start: u32,
    pub end: u32,
}

/// One view of the data. `spans` is `None` for the data itself (identity).
pub(super) struct View<'a> {
    raw: Option<&'a [u8]>,
    bytes: Zeroizing<Vec<u8>>,
    spans: Vec<Span>,
    _acct: acct::Acct,
}

impl<'a> View<'a> {
    /// The data itself. The caller checked that its length fits a `u32`.
    pub fn raw(data: &'a [u8]) -> View<'a> {
        View {
            raw: Some(data),
            bytes: Zeroizing::new(Vec::new()),
            spans: Vec::new(),
            _acct: acct::Acct::new(0),
        }
    }

    pub fn bytes(&self) -> &[u8] {
        match self.raw {
            Some(d) => d,
            None => &self.bytes,
        }
    }

    fn span(&self, i: usize) -> Span {
        match self.raw {
            // The caller checked the length fits in u32.
            Some(_) => Span {
                start: i as u32,
                end: i as u32 + 1,
            },
            None => self.spans[i],
        }
    }

    /// Source span of view bytes `[a, b)`, `a < b`. Spans are monotone within a view,
    /// so the first start and last end cover everything between.
    pub fn source(&self, a: usize, b: usize) -> Span {
        Span {
            start: self.span(a).start,
            end: self.span(b - 1).end,
        }
    }
}

/// A way to decode a view. Each produces `variants()` child views (base64: one per
/// starting character offset, hex: one per nibble offset).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Decoder {
    /// `\uXXXX` (surrogate pairs joined), `\u{H..}`, `\xHH`, `\/ \" \\ \' \n \t \r \b \f`.
    Backslash,
    /// `&#DDD;`, `&#xHH;` (any case), named entities.
    Html,
    /// `%XX`, any case.
    Percent,
    /// `%XX` and `+` as space (form encoding).
    PercentPlus,
    /// `=XX` and soft line breaks `=\r\n`, `=\n`.
    QuotedPrintable,
    /// Runs of the base64 alphabet (`+`/`-` are 62, `/`/`_` 63), CR/LF allowed inside.
    Base64,
    /// Runs of hex digits, any case.
    Hex,
}

pub(super) const DECODERS: [Decoder; 7] = [
    Decoder::Backslash,
    Decoder::Html,
    Decoder::Percent,
    Decoder::PercentPlus,
    Decoder::QuotedPrintable,
    Decoder::Base64,
    Decoder::Hex,
];

impl Decoder {
    pub fn is_binary(self) -> bool {
        matches!(self, Decoder::Base64 | Decoder::Hex)
    }

    pub fn variants(self) -> usize {
        match self {
            Decoder::Base64 => 4,
            // `\xHH` and `%XX` as a byte (C, Rust, Python bytes, URLs) or as U+00HH
            // (JavaScript strings and `escape()`, Python `ascii()`).
            Decoder::Backslash | Decoder::Percent | Decoder::Hex => 2,
            _ => 1,
        }
    }

    /// The byte a text decoder needs to find anything; without it the view would be
    /// the parent unchanged.
    fn trigger(self) -> Option<u8> {
        match self {
            Decoder::Backslash => Some(b'\\'),
            Decoder::Html => Some(b'&'),
            Decoder::Percent => Some(b'%'),
            Decoder::PercentPlus => Some(b'+'),
            Decoder::QuotedPrintable => Some(b'='),
            Decoder::Base64 | Decoder::Hex => None,
        }
    }

    /// The child view, or `None` when it would find nothing its parent does not.
    ///
    /// `min_len`: the shortest pattern (binary decoders skip runs too short to hold
    /// it). `window`: for text decoders, how far from a decoded escape a match found
    /// in this view or its descendants can reach, in this view's bytes; the view keeps
    /// only those windows when that is much smaller (see `Matcher::window`).
    pub fn decode<'p>(
        self,
        parent: &View<'p>,
        variant: usize,
        min_len: usize,
        window: usize,
        deadline: Option<Instant>,
    ) -> Result<Option<View<'static>>, ScrubError> {
        match self {
            Decoder::Base64 => base64_view(parent, variant, min_len, deadline),
            Decoder::Hex => hex_view(parent, variant, min_len, deadline),
            _ => {
                let Some(t) = self.trigger() else {
                    return Ok(None);
                };
                if !parent.bytes().contains(&t) {
                    return Ok(None);
                }
                if variant == 1 && !has_high_escape(self, parent.bytes()) {
                    return Ok(None);
                }
                text_view(self, variant == 1, parent, window, deadline)
            }
        }
    }
}

/// Whether `s` may have a `\xHH`, `\ooo` or `%XX` escape of 0x80 or more, the only
/// escapes whose Latin-1 reading differs from the byte reading.
fn has_high_escape(dec: Decoder, s: &[u8]) -> bool {
    let high = |b: u8| matches!(b, b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F');
    s.windows(3).any(|w| match dec {
        Decoder::Backslash => {
            w[0] == b'\\' && ((w[1] == b'x' && high(w[2])) || matches!(w[1], b'2'..=b'3'))
        }
        _ => w[0] == b'%' && high(w[1]),
    })
}

pub(super) fn check(deadline: Option<Instant>) -> Result<(), ScrubError> {
    match deadline {
        Some(d) if Instant::now() >= d => Err(ScrubError::Deadline),
        _ => Ok(()),
    }
}

/// Up to 8 decoded bytes (a named entity can stand for two code points).
#[derive(Default)]
struct Out {
    buf: [u8; 8],
    len: usize,
}

impl Out {
    fn byte(b: u8) -> Out {
        let mut o = Out::default();
        o.buf[0] = b;
        o.len = 1;
        o
    }

    fn char(c: char) -> Out {
        let mut o = Out::default();
        o.len = c.encode_utf8(&mut o.buf).len();
        o
    }

    fn str(s: &str) -> Option<Out> {
        let mut o = Out::default();
        let b = s.as_bytes();
        if b.is_empty() || b.len() > o.buf.len() {
            return None;
        }
        o.buf[..b.len()].copy_from_slice(b);
        o.len = b.len();
        Some(o)
    }
}

fn hex_val(b: u8) -> Option<u32> {
    (b as char).to_digit(16)
}

/// The value of `n` hex digits at `s[i..]`, if all are hex.
fn hex_at(s: &[u8], i: usize, n: usize) -> Option<u32> {
    let d = s.get(i..i + n)?;
    d.iter()
        .try_fold(0u32, |acc, &b| Some((acc << 4) | hex_val(b)?))
}

/// What the escape starting at `s[i]` decodes to, and its length in bytes. `latin1`:
/// `\xHH` is U+00HH rather than a byte.
fn escape_at(dec: Decoder, latin1: bool, s: &[u8], i: usize) -> Option<(usize, Out)> {
    match (dec, s[i]) {
        (Decoder::Backslash, b'\\') => backslash_at(s, i, latin1),
        (Decoder::Html, b'&') => html_at(s, i),
        (Decoder::Percent | Decoder::PercentPlus, b'%') => {
            if s.get(i + 1) == Some(&b'u') {
                // JavaScript's legacy `escape()`: `%uXXXX`, surrogate pairs as two.
                return utf16_escape_at(s, i, b"%u");
            }
            Some((3, byte_or_latin1(hex_at(s, i + 1, 2)?, latin1)?))
        }
        (Decoder::PercentPlus, b'+') => Some((1, Out::byte(b' '))),
        (Decoder::QuotedPrintable, b'=') => match s.get(i + 1..i + 3) {
            Some(b"\r\n") => Some((3, Out::default())),
            _ if s.get(i + 1) == Some(&b'\n') => Some((2, Out::default())),
            _ => Some((3, Out::byte(hex_at(s, i + 1, 2)? as u8))),
        },
        _ => None,
    }
}

fn backslash_at(s: &[u8], i: usize, latin1: bool) -> Option<(usize, Out)> {
    let simple = |b: u8| Some((2, Out::byte(b)));
    match *s.get(i + 1)? {
        b'u' if s.get(i + 2) == Some(&b'{') => {
            // `\u{H..}`: one to six hex digits.
            let digits = s[i + 3..]
                .iter()
                .take(7)
                .take_while(|b| b.is_ascii_hexdigit())
                .count();
            if !(1..=6).contains(&digits) || s.get(i + 3 + digits) != Some(&b'}') {
                return None;
            }
            let c = char::from_u32(hex_at(s, i + 3, digits)?)?;
            Some((digits + 4, Out::char(c)))
        }
        b'u' => utf16_escape_at(s, i, b"\\u"),
        // Python's `\UXXXXXXXX`.
        b'U' => Some((10, Out::char(char::from_u32(hex_at(s, i + 2, 8)?)?))),
        b'x' => Some((4, byte_or_latin1(hex_at(s, i + 2, 2)?, latin1)?)),
        // Octal `\ooo` (C, shells, PostgreSQL).
        b'0'..=b'3' => {
            let d = s.get(i + 1..i + 4)?;
            if !d.iter().all(|b| (b'0'..=b'7').contains(b)) {
                return None;
            }
            let v = d.iter().fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            Some((4, byte_or_latin1(v, latin1)?))
        }
        b @ (b'/' | b'"' | b'\\' | b'\'') => simple(b),
        b'n' => simple(b'\n'),
        b't' => simple(b'\t'),
        b'r' => simple(b'\r'),
        b'b' => simple(0x08),
        b'f' => simple(0x0C),
        _ => None,
    }
}

/// `\xHH`, `\ooo` or `%XX`: the byte, or with `latin1` the code point U+00HH.
fn byte_or_latin1(v: u32, latin1: bool) -> Option<Out> {
    if latin1 {
        Some(Out::char(char::from_u32(v)?))
    } else {
        Some(Out::byte(u8::try_from(v).ok()?))
    }
}

/// A UTF-16 escape `<prefix>XXXX` at `s[i]`; a surrogate pair is two escapes.
fn utf16_escape_at(s: &[u8], i: usize, prefix: &[u8; 2]) -> Option<(usize, Out)> {
    let hi = hex_at(s, i + 2, 4)?;
    if (0xD800..0xDC00).contains(&hi) {
        if s.get(i + 6..i + 8) != Some(prefix.as_slice()) {
            return None;
        }
        let lo = hex_at(s, i + 8, 4)?;
        if !(0xDC00..0xE000).contains(&lo) {
            return None;
        }
        let c = char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))?;
        return Some((12, Out::char(c)));
    }
    Some((6, Out::char(char::from_u32(hi)?)))
}

fn html_at(s: &[u8], i: usize) -> Option<(usize, Out)> {
    let rest = &s[i + 1..s.len().min(i + MAX_ESCAPE)];
    if rest.first() == Some(&b'#') {
        let (radix, skip) = match rest.get(1) {
            Some(b'x' | b'X') => (16, 2),
            _ => (10, 1),
        };
        let digits = rest[skip..]
            .iter()
            .take_while(|b| (**b as char).is_digit(radix))
            .count();
        if digits == 0 || digits > 10 {
            return None;
        }
        let text = std::str::from_utf8(&rest[skip..skip + digits]).ok()?;
        let c = char::from_u32(u32::from_str_radix(text, radix).ok()?)?;
        // The `;` is optional for numeric references.
        let semi = usize::from(rest.get(skip + digits) == Some(&b';'));
        return Some((1 + skip + digits + semi, Out::char(c)));
    }
    let name = rest
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric())
        .count();
    if name == 0 || rest.get(name) != Some(&b';') {
        return None;
    }
    let entity = std::str::from_utf8(&s[i..i + name + 2]).ok()?;
    let decoded = html_escape::decode_html_entities(entity);
    if decoded == entity {
        return None;
    }
    Some((name + 2, Out::str(&decoded)?))
}

/// A child view under construction. Capacity is reserved up front and never exceeded
/// (decoding never grows text), so no reallocation leaves a copy of decoded bytes behind.
struct Builder {
    bytes: Zeroizing<Vec<u8>>,
    spans: Vec<Span>,
    acct: acct::Acct,
}

impl Builder {
    fn new(cap: usize) -> Builder {
        Builder {
            bytes: Zeroizing::new(Vec::with_capacity(cap)),
            spans: Vec::with_capacity(cap),
            acct: acct::Acct::new(cap * (1 + std::mem::size_of::<Span>())),
        }
    }

    fn push(&mut self, b: u8, span: Span) {
        debug_assert!(self.bytes.len() < self.bytes.capacity());
        self.bytes.push(b);
        self.spans.push(span);
    }

    /// A NUL between runs that are not adjacent: no decoder reads it, so nothing is
    /// decoded across it. It covers no source bytes.
    fn separate(&mut self) {
        if let Some(last) = self.spans.last().copied() {
            let at = Span {
                start: last.end,
                end: last.end,
            };
            self.push(0, at);
        }
    }

    fn finish(self) -> Option<View<'static>> {
        if self.bytes.is_empty() {
            return None;
        }
        Some(View {
            raw: None,
            bytes: self.bytes,
            spans: self.spans,
            _acct: self.acct,
        })
    }
}

fn text_view(
    dec: Decoder,
    latin1: bool,
    parent: &View<'_>,
    window: usize,
    deadline: Option<Instant>,
) -> Result<Option<View<'static>>, ScrubError> {
    let s = parent.bytes();
    let mut b = Builder::new(s.len());
    // Positions (in the child) of decoded escapes.
    let mut changed: Vec<u32> = Vec::new();
    // Whether the Latin-1 reading differs anywhere from the byte reading: some `\xHH`,
    // `\ooo` or `%XX` decoded to two bytes (the other escapes decode the same either way).
    let mut differs = false;
    let mut i = 0;
    let mut next_check = CLOCK_EVERY;
    while i < s.len() {
        if i >= next_check {
            check(deadline)?;
            next_check = i + CLOCK_EVERY;
        }
        match escape_at(dec, latin1, s, i) {
            // Decoding never grows text (so `Builder` never reallocates).
            Some((used, out)) if out.len <= used => {
                differs |= latin1 && out.len == 2 && s[i + 1] != b'u';
                let span = parent.source(i, i + used);
                changed.push(b.bytes.len() as u32);
                for &o in &out.buf[..out.len] {
                    b.push(o, span);
                }
                i += used;
            }
            _ => {
                b.push(s[i], parent.span(i));
                i += 1;
            }
        }
    }
    let _changed_acct = acct::Acct::new(changed.capacity() * 4);
    if changed.is_empty() || (latin1 && !differs) {
        return Ok(None);
    }
    compact(&mut b, &changed, window);
    Ok(b.finish())
}

/// Keeps only the bytes within `window` of a decoded escape when that drops most of the
/// view. Anything a match needs further away is unchanged from the parent view, where it
/// is found (the same decoders apply there). Windows are joined by a separator.
fn compact(b: &mut Builder, changed: &[u32], window: usize) {
    let len = b.bytes.len();
    let mut windows: Vec<(usize, usize)> = Vec::new();
    for &p in changed {
        let p = p as usize;
        let lo = p.saturating_sub(window);
        let hi = p.saturating_add(window).saturating_add(MAX_ESCAPE).min(len);
        match windows.last_mut() {
            // Join windows whose gap could not hold a separator.
            Some(last) if lo <= last.1 + 1 => last.1 = last.1.max(hi),
            _ => windows.push((lo, hi)),
        }
    }
    let kept: usize = windows.iter().map(|(lo, hi)| hi - lo + 1).sum();
    if kept * 2 > len {
        return;
    }
    // In place: each window moves left (gaps are at least one byte, the separator).
    let mut w = 0;
    for (k, &(lo, hi)) in windows.iter().enumerate() {
        if k > 0 {
            let prev = b.spans[w - 1];
            b.bytes[w] = 0;
            b.spans[w] = Span {
                start: prev.end,
                end: prev.end,
            };
            w += 1;
        }
        b.bytes.copy_within(lo..hi, w);
        b.spans.copy_within(lo..hi, w);
        w += hi - lo;
    }
    b.bytes.truncate(w);
    b.spans.truncate(w);
    // Give back the memory; zeroize the decoded bytes in the old allocation.
    if w < b.bytes.capacity() / 2 {
        let mut small = Zeroizing::new(Vec::with_capacity(w));
        small.extend_from_slice(&b.bytes);
        b.bytes = small;
        b.spans.shrink_to_fit();
        b.acct = acct::Acct::new(w * (1 + std::mem::size_of::<Span>()));
    }
}

fn b64_val(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' | b'-' => Some(62),
        b'/' | b'_' => Some(63),
        _ => None,
    }
}

/// Base64 runs decoded from character `offset` (0..4) on, so that between the four
/// variants every byte alignment of a value inside a longer base64 text is decoded.
fn base64_view(
    parent: &View<'_>,
    offset: usize,
    min_len: usize,
    deadline: Option<Instant>,
) -> Result<Option<View<'static>>, ScrubError> {
    let s = parent.bytes();
    let mut b = Builder::new(s.len());
    // Positions of the alphabet characters of the current run (CR/LF skipped).
    let mut pos: Vec<u32> = Vec::new();
    let mut i = 0;
    let mut next_check = CLOCK_EVERY;
    while i < s.len() {
        if i >= next_check {
            check(deadline)?;
            next_check = i + CLOCK_EVERY;
        }
        pos.clear();
        while i < s.len() {
            let c = s[i];
            if b64_val(c).is_some() {
                pos.push(i as u32);
            } else if !(c == b'\r' || c == b'\n') {
                break;
            }
            i += 1;
        }
        // A run ends at a character outside the alphabet; step over it.
        i += 1;
        if pos.len() <= offset || (pos.len() - offset) * 6 / 8 < min_len {
            continue;
        }
        b.separate();
        let chars = &pos[offset..];
        let (mut acc, mut bits, mut m) = (0u32, 0u32, 0usize);
        for (j, &p) in chars.iter().enumerate() {
            let v = b64_val(s[p as usize]).unwrap_or(0);
            acc = ((acc << 6) | u32::from(v)) & 0xFFFF;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                let byte = (acc >> bits) as u8;
                // Every character holding a bit of this byte.
                let first = chars[(8 * m) / 6] as usize;
                let span = Span {
                    start: parent.span(first).start,
                    end: parent.span(p as usize).end,
                };
                debug_assert_eq!(j, (8 * m + 7) / 6);
                b.push(byte, span);
                m += 1;
            }
        }
    }
    Ok(b.finish())
}

/// Hex runs decoded from digit `offset` (0 or 1) on.
fn hex_view(
    parent: &View<'_>,
    offset: usize,
    min_len: usize,
    deadline: Option<Instant>,
) -> Result<Option<View<'static>>, ScrubError> {
    let s = parent.bytes();
    let mut b = Builder::new(s.len());
    let mut i = 0;
    let mut next_check = CLOCK_EVERY;
    while i < s.len() {
        if i >= next_check {
            check(deadline)?;
            next_check = i + CLOCK_EVERY;
        }
        let start = i;
        while i < s.len() && s[i].is_ascii_hexdigit() {
            i += 1;
        }
        let end = i;
        i += 1;
        if end - start < offset || (end - start - offset) / 2 < min_len {
            continue;
        }
        b.separate();
        let mut j = start + offset;
        while j + 2 <= end {
            let v = hex_at(s, j, 2).unwrap_or(0) as u8;
            b.push(v, parent.source(j, j + 2));
            j += 2;
        }
    }
    Ok(b.finish())
}

/// Bytes held by views, for the cost test: test builds count, others do nothing.
#[cfg(test)]
pub(super) mod acct {
    use std::sync::atomic::{AtomicUsize, Ordering};

    static LIVE: AtomicUsize = AtomicUsize::new(0);
    static PEAK: AtomicUsize = AtomicUsize::new(0);

    pub struct Acct(usize);

    impl Acct {
        pub fn new(n: usize) -> Acct {
            let live = LIVE.fetch_add(n, Ordering::SeqCst) + n;
            PEAK.fetch_max(live, Ordering::SeqCst);
            Acct(n)
        }
    }

    impl Drop for Acct {
        fn drop(&mut self) {
            LIVE.fetch_sub(self.0, Ordering::SeqCst);
        }
    }

    /// Peak since the last call (resets the peak to what is live now).
    pub fn take_peak() -> usize {
        PEAK.swap(LIVE.load(Ordering::SeqCst), Ordering::SeqCst)
    }
}

#[cfg(not(test))]
mod acct {
    pub struct Acct;

    impl Acct {
        pub fn new(_: usize) -> Acct {
            Acct
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view_of(dec: Decoder, variant: usize, s: &[u8]) -> Vec<(u8, Span)> {
        let raw = View::raw(s);
        match dec
            .decode(&raw, variant, 1, usize::MAX, None)
            .expect("decode")
        {
            Some(v) => v
                .bytes()
                .iter()
                .copied()
                .zip(v.spans.iter().copied())
                .collect(),
            None => Vec::new(),
        }
    }

    fn text(dec: Decoder, s: &str) -> String {
        let v: Vec<u8> = view_of(dec, 0, s.as_bytes()).iter().map(|p| p.0).collect();
        String::from_utf8(v).expect("utf8")
    }

    #[test]
    fn backslash_escapes() {
        assert_eq!(
            text(
                Decoder::Backslash,
                r#"a\/b\"c\\d\u00fc\u20AC\ud83d\ude00\u{1F600}\x41\n\q"#
            ),
            "a/b\"c\\dü€😀😀A\n\\q"
        );
        // A lone surrogate is left alone.
        assert_eq!(text(Decoder::Backslash, r"\ud83dx\/"), r"\ud83dx/");
        // Python's `\U`, and `\xHH` read as U+00HH (JavaScript, Python `ascii()`).
        assert_eq!(text(Decoder::Backslash, r"\U0001f600"), "😀");
        let latin1: Vec<u8> = view_of(Decoder::Backslash, 1, br"a\xfc\x41")
            .iter()
            .map(|p| p.0)
            .collect();
        assert_eq!(latin1, "aüA".as_bytes());
        assert_eq!(text(Decoder::Backslash, r"\303\274\101\8"), "üA\\8");
        assert!(view_of(Decoder::Backslash, 1, br"a\x41").is_empty());
    }

    #[test]
    fn html_entities() {
        assert_eq!(
            text(
                Decoder::Html,
                "&amp;&quot;&lt;&uuml;&#252;&#xfc;&#XFC;&bogus;&#;&"
            ),
            "&\"<üüüü&bogus;&#;&"
        );
    }

    #[test]
    fn percent_plus_and_qp() {
        assert_eq!(text(Decoder::Percent, "a%2fb%2F+%zz"), "a/b/+%zz");
        assert_eq!(text(Decoder::Percent, "%u00FC%uD83D%uDE00%u12"), "ü😀%u12");
        let latin1: Vec<u8> = view_of(Decoder::Percent, 1, b"%FC%41")
            .iter()
            .map(|p| p.0)
            .collect();
        assert_eq!(latin1, "üA".as_bytes());
        assert_eq!(text(Decoder::PercentPlus, "a%2fb+c"), "a/b c");
        assert_eq!(
            text(Decoder::QuotedPrintable, "a=3Db=\r\nc=\nd=zz"),
            "a=bcd=zz"
        );
    }

    #[test]
    fn base64_spans_cover_every_character_of_a_byte() {
        // "QUJD" is "ABC": A from Q,U; B from U,J; C from J,D.
        let v = view_of(Decoder::Base64, 0, b"QUJD");
        assert_eq!(
            v,
            vec![
                (b'A', Span { start: 0, end: 2 }),
                (b'B', Span { start: 1, end: 3 }),
                (b'C', Span { start: 2, end: 4 }),
            ]
        );
        // Line breaks inside a run are skipped but covered.
        let v = view_of(Decoder::Base64, 0, b"QU\r\nJD");
        assert_eq!(v[1], (b'B', Span { start: 1, end: 5 }));
    }

    #[test]
    fn spans_compose_through_a_chain() {
        // %2B is '+', so the base64 run is "QUJD+" after percent-decoding... use "QU%4AD".
        let data = b"xQU%4AD";
        let raw = View::raw(data);
        let pct = Decoder::Percent
            .decode(&raw, 0, 1, usize::MAX, None)
            .expect("decode")
            .expect("changed");
        assert_eq!(pct.bytes(), b"xQUJD");
        let b64 = Decoder::Base64
            .decode(&pct, 1, 1, usize::MAX, None)
            .expect("decode")
            .expect("run");
        assert_eq!(b64.bytes(), b"ABC");
        // 'B' comes from U and J, and J from "%4A".
        assert_eq!(b64.source(1, 2), Span { start: 2, end: 6 });
        assert_eq!(b64.source(0, 3), Span { start: 1, end: 7 });
    }
}
