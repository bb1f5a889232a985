//! Views: the data decoded one way, with where each decoded byte came from.
//!
//! A view is a byte string plus a compact map from its bytes to its parent view's bytes
//! (escapes decoded, stretches kept, runs decoded); a match is mapped back to the data
//! through the chain of parents only when something matches. Text decoders pass through
//! what they do not recognise, so a view of mixed text is the text with the recognised
//! escapes decoded. Binary decoders (base64, hex) keep only the decoded runs, separated
//! by a NUL that stands for no source bytes.

use super::ScrubError;
use std::time::Instant;
use zeroize::Zeroizing;

/// How often long loops look at the clock, in bytes.
pub(super) const CLOCK_EVERY: usize = 1 << 16;

/// Longest escape a text decoder reads (`&CounterClockwiseContourIntegral;` is 33).
/// Fits the `u8` in [`Edit`].
const MAX_ESCAPE: usize = 40;

/// Source bytes `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Span {
    pub start: u32,
    pub end: u32,
}

/// One view of the data: the data itself (`raw`) or a decoding of `parent`.
pub(super) struct View<'a> {
    raw: Option<&'a [u8]>,
    bytes: Zeroizing<Vec<u8>>,
    map: Map,
    parent: Option<&'a View<'a>>,
    _acct: acct::Acct,
}

/// Where a view's bytes come from in its parent.
enum Map {
    /// The data itself.
    Identity,
    /// Text with escapes decoded. `edits` are in positions before compaction;
    /// `windows` is empty when the view was not compacted.
    Text {
        edits: Vec<Edit>,
        windows: Vec<Window>,
    },
    /// Decoded runs of base64 (6 bits a character) or hex (4).
    Runs {
        runs: Vec<Run>,
        chunks: Vec<Chunk>,
        bits: u32,
    },
}

/// A decoded escape: `clen` view bytes at `at` came from `plen` parent bytes at
/// `parent`. Bytes between escapes map one to one.
#[derive(Clone, Copy)]
struct Edit {
    at: u32,
    parent: u32,
    clen: u8,
    plen: u8,
}

/// A stretch kept by compaction: `len` bytes now at `at` were at `pre`.
#[derive(Clone, Copy)]
struct Window {
    at: u32,
    pre: u32,
    len: u32,
}

/// A decoded run: `len` view bytes at `at`, decoded from the run's characters `first..`
/// (of `chars`), whose parent positions are given by `chunks[chunk_lo..chunk_hi]`.
#[derive(Clone, Copy)]
struct Run {
    at: u32,
    len: u32,
    first: u32,
    chars: u32,
    chunk_lo: u32,
    chunk_hi: u32,
}

/// Run characters from number `char` on sit at consecutive parent positions from
/// `parent`; a line break inside a run starts a new chunk.
#[derive(Clone, Copy)]
struct Chunk {
    char: u32,
    parent: u32,
}

impl<'a> View<'a> {
    /// The data itself. The caller checked that its length fits a `u32`.
    pub fn raw(data: &'a [u8]) -> View<'a> {
        View {
            raw: Some(data),
            bytes: Zeroizing::new(Vec::new()),
            map: Map::Identity,
            parent: None,
            _acct: acct::Acct::new(0),
        }
    }

    pub fn bytes(&self) -> &[u8] {
        match self.raw {
            Some(d) => d,
            None => &self.bytes,
        }
    }

    /// The span of the data that view bytes `[a, b)` (`a < b`) came from, or `None` if
    /// they are only separators. Spans are monotone within a view, so the first byte's
    /// start and the last byte's end cover everything between.
    pub fn source(&self, a: usize, b: usize) -> Option<Span> {
        let mut span = self.to_parent(a, b)?;
        let mut view = self;
        while let Some(p) = view.parent {
            span = p.to_parent(span.start as usize, span.end as usize)?;
            view = p;
        }
        Some(span)
    }

    /// Positions in this view of its decoded escapes, in order; `None` for the data
    /// itself and for runs, where every byte counts as changed.
    fn changes(&self) -> Option<Vec<u32>> {
        let Map::Text { edits, windows } = &self.map else {
            return None;
        };
        if windows.is_empty() {
            return Some(edits.iter().map(|e| e.at).collect());
        }
        // Every edit lies inside a kept window (windows are built around them).
        let mut k = 0;
        let mut out = Vec::with_capacity(edits.len());
        for e in edits {
            while k + 1 < windows.len() && windows[k].pre + windows[k].len <= e.at {
                k += 1;
            }
            let w = windows[k];
            out.push(w.at + e.at.saturating_sub(w.pre));
        }
        Some(out)
    }

    /// The parent span of view bytes `[a, b)`.
    fn to_parent(&self, a: usize, b: usize) -> Option<Span> {
        match &self.map {
            Map::Identity => Some(Span {
                start: a as u32,
                end: b as u32,
            }),
            Map::Text { edits, windows } => {
                let (a, last) = unwindow(windows, a, b)?;
                Some(Span {
                    start: text_byte(edits, a).start,
                    end: text_byte(edits, last).end,
                })
            }
            Map::Runs { runs, chunks, bits } => {
                let byte = |i: usize| run_byte(runs, chunks, *bits, i);
                // A separator at either end stands for nothing.
                let start = byte(a).or_else(|| (a + 1 < b).then(|| byte(a + 1)).flatten())?;
                let end = byte(b - 1).or_else(|| (b >= a + 2).then(|| byte(b - 2)).flatten())?;
                Some(Span {
                    start: start.start,
                    end: end.end,
                })
            }
        }
    }
}

/// Positions before compaction of the first and last non-separator bytes of `[a, b)`.
fn unwindow(windows: &[Window], a: usize, b: usize) -> Option<(usize, usize)> {
    if windows.is_empty() {
        return Some((a, b - 1));
    }
    let find = |i: usize| {
        windows
            .partition_point(|w| w.at as usize <= i)
            .checked_sub(1)
    };
    let first = {
        let k = find(a)?;
        let w = windows[k];
        if a < (w.at + w.len) as usize {
            w.pre as usize + a - w.at as usize
        } else {
            // A separator: the next window starts after it.
            let n = windows.get(k + 1)?;
            if n.at as usize >= b {
                return None;
            }
            n.pre as usize
        }
    };
    let last = {
        let w = windows[find(b - 1)?];
        let end = (w.at + w.len) as usize;
        if b - 1 < end {
            w.pre as usize + (b - 1) - w.at as usize
        } else {
            if end == 0 || end - 1 < a {
                return None;
            }
            (w.pre + w.len) as usize - 1
        }
    };
    Some((first, last))
}

/// The parent span of text view byte `q` (a position before compaction).
fn text_byte(edits: &[Edit], q: usize) -> Span {
    let one = |p: usize| Span {
        start: p as u32,
        end: p as u32 + 1,
    };
    let k = edits.partition_point(|e| e.at as usize <= q);
    let Some(e) = k.checked_sub(1).map(|k| edits[k]) else {
        return one(q);
    };
    let (at, clen) = (e.at as usize, usize::from(e.clen));
    if q < at + clen {
        Span {
            start: e.parent,
            end: e.parent + u32::from(e.plen),
        }
    } else {
        one(e.parent as usize + usize::from(e.plen) + (q - at - clen))
    }
}

/// The parent span of the characters holding decoded byte `i`, or `None` for a
/// separator.
fn run_byte(runs: &[Run], chunks: &[Chunk], bits: u32, i: usize) -> Option<Span> {
    let r = runs[runs
        .partition_point(|r| r.at as usize <= i)
        .checked_sub(1)?];
    let m = (i - r.at as usize) as u32;
    if m >= r.len {
        return None;
    }
    let chunks = &chunks[r.chunk_lo as usize..r.chunk_hi as usize];
    let pos = |j: u32| {
        let c = chunks[chunks.partition_point(|c| c.char <= j) - 1];
        c.parent + (j - c.char)
    };
    Some(Span {
        start: pos(r.first + 8 * m / bits),
        end: pos(r.first + (8 * m + 7) / bits) + 1,
    })
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
        parent: &'p View<'p>,
        variant: usize,
        min_len: usize,
        window: usize,
        deadline: Option<Instant>,
    ) -> Result<Option<View<'p>>, ScrubError> {
        match self {
            Decoder::Base64 => runs_view(parent, variant, min_len, 6, deadline),
            Decoder::Hex => runs_view(parent, variant, min_len, 4, deadline),
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

/// Text with the escapes `dec` reads decoded, or `None` if there are none. The buffer is
/// reserved at the parent's length and never outgrown (decoding never grows text), so
/// no reallocation leaves a copy of decoded bytes behind.
fn text_view<'p>(
    dec: Decoder,
    latin1: bool,
    parent: &'p View<'p>,
    window: usize,
    deadline: Option<Instant>,
) -> Result<Option<View<'p>>, ScrubError> {
    let s = parent.bytes();
    let trigger = |c: u8| match dec {
        Decoder::Backslash => c == b'\\',
        Decoder::Html => c == b'&',
        Decoder::Percent => c == b'%',
        Decoder::PercentPlus => c == b'%' || c == b'+',
        _ => c == b'=',
    };
    let mut out: Option<Zeroizing<Vec<u8>>> = None;
    let mut edits: Vec<Edit> = Vec::new();
    // Whether the Latin-1 reading differs anywhere from the byte reading: some `\xHH`,
    // `\ooo` or `%XX` decoded to two bytes (the other escapes decode the same either way).
    let mut differs = false;
    let (mut i, mut copied) = (0, 0);
    let mut next_check = CLOCK_EVERY;
    while let Some(off) = s[i..].iter().position(|&c| trigger(c)) {
        let at = i + off;
        if at >= next_check {
            check(deadline)?;
            next_check = at + CLOCK_EVERY;
        }
        match escape_at(dec, latin1, s, at) {
            Some((used, o)) if o.len <= used => {
                let buf = out.get_or_insert_with(|| Zeroizing::new(Vec::with_capacity(s.len())));
                buf.extend_from_slice(&s[copied..at]);
                differs |= latin1 && o.len == 2 && s[at + 1] != b'u';
                edits.push(Edit {
                    at: buf.len() as u32,
                    parent: at as u32,
                    clen: o.len as u8,
                    plen: used as u8,
                });
                buf.extend_from_slice(&o.buf[..o.len]);
                i = at + used;
                copied = i;
            }
            _ => i = at + 1,
        }
    }
    let Some(mut buf) = out else {
        return Ok(None);
    };
    if latin1 && !differs {
        return Ok(None);
    }
    buf.extend_from_slice(&s[copied..]);
    let windows = compact(&mut buf, &edits, window);
    let held = buf.capacity() + 12 * (edits.capacity() + windows.capacity());
    Ok(Some(View {
        raw: None,
        bytes: buf,
        map: Map::Text { edits, windows },
        parent: Some(parent),
        _acct: acct::Acct::new(held),
    }))
}

/// Keeps only the bytes within `window` of a decoded escape when that drops most of the
/// view, joined by separators, and returns the kept windows (none if all is kept).
/// Anything a match needs further away is unchanged from the parent view, where it is
/// found (the same decoders apply there).
fn compact(buf: &mut Zeroizing<Vec<u8>>, edits: &[Edit], window: usize) -> Vec<Window> {
    let len = buf.len();
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for e in edits {
        let p = e.at as usize;
        let lo = p.saturating_sub(window);
        let hi = p.saturating_add(window).saturating_add(MAX_ESCAPE).min(len);
        match spans.last_mut() {
            // Join windows whose gap could not hold a separator.
            Some(last) if lo <= last.1 + 1 => last.1 = last.1.max(hi),
            _ => spans.push((lo, hi)),
        }
    }
    let kept: usize = spans.iter().map(|(lo, hi)| hi - lo + 1).sum();
    if kept * 2 > len {
        return Vec::new();
    }
    // In place: each window moves left (gaps are at least one byte, the separator).
    let mut windows = Vec::with_capacity(spans.len());
    let mut w = 0;
    for (k, &(lo, hi)) in spans.iter().enumerate() {
        if k > 0 {
            buf[w] = 0;
            w += 1;
        }
        buf.copy_within(lo..hi, w);
        windows.push(Window {
            at: w as u32,
            pre: lo as u32,
            len: (hi - lo) as u32,
        });
        w += hi - lo;
    }
    buf.truncate(w);
    // Give back the memory; the old allocation is zeroized as it is dropped.
    if w < buf.capacity() / 2 {
        let mut small = Zeroizing::new(Vec::with_capacity(w));
        small.extend_from_slice(buf);
        *buf = small;
    }
    windows
}

/// Not a digit of the alphabet, in [`B64`] and [`HEX`].
const NONE: u8 = 0xFF;

/// Base64 digit values (`+`/`-` are 62, `/`/`_` 63), for the hot loop.
const B64: [u8; 256] = {
    let mut t = [NONE; 256];
    let mut c = 0;
    while c < 256 {
        if let Some(v) = b64_val(c as u8) {
            t[c] = v;
        }
        c += 1;
    }
    t
};

/// Hex digit values, any case.
const HEX: [u8; 256] = {
    let mut t = [NONE; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = match c as u8 {
            b @ b'0'..=b'9' => b - b'0',
            b @ b'a'..=b'f' => b - b'a' + 10,
            b @ b'A'..=b'F' => b - b'A' + 10,
            _ => NONE,
        };
        c += 1;
    }
    t
};

const fn b64_val(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' | b'-' => Some(62),
        b'/' | b'_' => Some(63),
        _ => None,
    }
}

/// The digits of base64 (`bits` 6) or hex (`bits` 4).
#[derive(Clone, Copy)]
struct Alphabet {
    table: &'static [u8; 256],
    bits: u32,
}

impl Alphabet {
    fn of(bits: u32) -> Alphabet {
        let table = if bits == 6 { &B64 } else { &HEX };
        Alphabet { table, bits }
    }

    /// The digit's value, or [`NONE`].
    #[inline]
    fn val(self, c: u8) -> u8 {
        self.table[usize::from(c)]
    }

    /// CR and LF continue a base64 run (MIME), not a hex one.
    #[inline]
    fn joins(self, c: u8) -> bool {
        self.bits == 6 && (c == b'\r' || c == b'\n')
    }

    #[inline]
    fn in_run(self, c: u8) -> bool {
        self.val(c) != NONE || self.joins(c)
    }
}

/// Runs of base64 (`bits` 6; CR and LF allowed inside a run, for MIME) or hex (`bits`
/// 4), each decoded from character `offset` on: between the variants every byte
/// alignment of a value inside a longer run is decoded. Runs too short to hold
/// `min_len` bytes are skipped.
///
/// Below a text view, only runs that contain one of its decoded escapes are decoded: a
/// match in a run without one has the same bytes in the parent view, whose own runs
/// are decoded (at every offset) too.
///
/// Stretches that may hold runs → the runs worth decoding (so the buffer is allocated
/// at its exact size) → decoded.
fn runs_view<'p>(
    parent: &'p View<'p>,
    offset: usize,
    min_len: usize,
    bits: u32,
    deadline: Option<Instant>,
) -> Result<Option<View<'p>>, ScrubError> {
    let s = parent.bytes();
    let alphabet = Alphabet::of(bits);
    let stretches = run_stretches(parent, alphabet, deadline)?;
    let found = find_runs(s, &stretches, alphabet, offset as u32, min_len, deadline)?;
    if found.runs.is_empty() {
        return Ok(None);
    }
    let buf = decode_runs(s, &found, alphabet, deadline)?;
    let Found { runs, chunks, .. } = found;
    let held = buf.capacity() + 24 * runs.capacity() + 8 * chunks.capacity();
    Ok(Some(View {
        raw: None,
        bytes: buf,
        map: Map::Runs { runs, chunks, bits },
        parent: Some(parent),
        _acct: acct::Acct::new(held),
    }))
}

/// The stretches of `parent` that may hold runs: all of it, or below a text view the runs
/// around its decoded escapes (found by looking both ways from each).
fn run_stretches(
    parent: &View<'_>,
    alphabet: Alphabet,
    deadline: Option<Instant>,
) -> Result<Vec<(usize, usize)>, ScrubError> {
    let s = parent.bytes();
    let Some(changes) = parent.changes() else {
        return Ok(vec![(0, s.len())]);
    };
    let mut stretches = Vec::new();
    let mut covered = 0;
    for (n, &p) in changes.iter().enumerate() {
        let p = p as usize;
        if n % 4096 == 0 {
            check(deadline)?;
        }
        if p < covered || p >= s.len() || !alphabet.in_run(s[p]) {
            continue;
        }
        let mut lo = p;
        while lo > covered && alphabet.in_run(s[lo - 1]) {
            lo -= 1;
        }
        let mut hi = p + 1;
        while hi < s.len() && alphabet.in_run(s[hi]) {
            hi += 1;
        }
        stretches.push((lo, hi));
        covered = hi;
    }
    Ok(stretches)
}

/// The runs worth decoding, their chunks, and the decoded length (a separator between
/// runs included).
struct Found {
    runs: Vec<Run>,
    chunks: Vec<Chunk>,
    total: u32,
}

/// The runs in `stretches` of `s` long enough to hold `min_len` bytes decoded from
/// character `offset` on.
fn find_runs(
    s: &[u8],
    stretches: &[(usize, usize)],
    alphabet: Alphabet,
    offset: u32,
    min_len: usize,
    deadline: Option<Instant>,
) -> Result<Found, ScrubError> {
    let bits = alphabet.bits;
    let (mut runs, mut chunks): (Vec<Run>, Vec<Chunk>) = (Vec::new(), Vec::new());
    let mut total = 0u32;
    let mut next_check = CLOCK_EVERY;
    for &(from, to) in stretches {
        let mut i = from;
        while i < to {
            if i >= next_check {
                check(deadline)?;
                next_check = i + CLOCK_EVERY;
            }
            if alphabet.val(s[i]) == NONE {
                i += 1;
                continue;
            }
            let chunk_lo = chunks.len();
            let (mut chars, mut in_chunk) = (0u32, false);
            while i < to {
                let c = s[i];
                if alphabet.val(c) != NONE {
                    if !in_chunk {
                        chunks.push(Chunk {
                            char: chars,
                            parent: i as u32,
                        });
                        in_chunk = true;
                    }
                    chars += 1;
                } else if alphabet.joins(c) {
                    in_chunk = false;
                } else {
                    break;
                }
                i += 1;
            }
            let len = chars.saturating_sub(offset) * bits / 8;
            if chars <= offset || (len as usize) < min_len {
                chunks.truncate(chunk_lo);
                continue;
            }
            if !runs.is_empty() {
                total += 1;
            }
            runs.push(Run {
                at: total,
                len,
                first: offset,
                chars,
                chunk_lo: chunk_lo as u32,
                chunk_hi: chunks.len() as u32,
            });
            total += len;
        }
    }
    Ok(Found {
        runs,
        chunks,
        total,
    })
}

/// The bytes of the `found` runs of `s`, a NUL between runs (nothing decodes across it).
fn decode_runs(
    s: &[u8],
    found: &Found,
    alphabet: Alphabet,
    deadline: Option<Instant>,
) -> Result<Zeroizing<Vec<u8>>, ScrubError> {
    let bits = alphabet.bits;
    let mut buf = Zeroizing::new(Vec::with_capacity(found.total as usize));
    for (k, r) in found.runs.iter().enumerate() {
        check(deadline)?;
        if k > 0 {
            // Nothing decodes across a separator.
            buf.push(0);
        }
        let run_chunks = &found.chunks[r.chunk_lo as usize..r.chunk_hi as usize];
        let (mut acc, mut held, mut emitted) = (0u32, 0u32, 0u32);
        for (n, c) in run_chunks.iter().enumerate() {
            let end = run_chunks.get(n + 1).map_or(r.chars, |next| next.char);
            for j in c.char.max(r.first)..end {
                let v = alphabet.val(s[(c.parent + j - c.char) as usize]);
                acc = ((acc << bits) | u32::from(v)) & 0xFFFF;
                held += bits;
                if held >= 8 && emitted < r.len {
                    held -= 8;
                    buf.push((acc >> held) as u8);
                    emitted += 1;
                }
            }
        }
    }
    debug_assert_eq!(buf.len(), found.total as usize);
    Ok(buf)
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
            Some(v) => (0..v.bytes().len())
                .map(|i| (v.bytes()[i], v.source(i, i + 1).expect("not a separator")))
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
        assert_eq!(b64.source(1, 2), Some(Span { start: 2, end: 6 }));
        assert_eq!(b64.source(0, 3), Some(Span { start: 1, end: 7 }));
    }

    #[test]
    fn compaction_keeps_windows_and_maps_them_back() {
        let data = format!(
            "{}\\/{}%41{}\\/{}",
            "a".repeat(200),
            "b".repeat(200),
            "c".repeat(5),
            "d".repeat(200)
        );
        let raw = View::raw(data.as_bytes());
        let v = Decoder::Backslash
            .decode(&raw, 0, 1, 10, None)
            .expect("decode")
            .expect("changed");
        // Two windows (10 before each escape, 10 + MAX_ESCAPE after) and a separator.
        assert_eq!(v.bytes().len(), 60 + 1 + 60);
        let first = v.bytes().iter().position(|&b| b == b'/').expect("slash");
        let last = v.bytes().iter().rposition(|&b| b == b'/').expect("slash");
        assert_eq!(
            v.source(first, first + 1),
            Some(Span {
                start: 200,
                end: 202
            })
        );
        assert_eq!(
            v.source(last, last + 1),
            Some(Span {
                start: 410,
                end: 412
            })
        );
        let sep = v.bytes().iter().position(|&b| b == 0).expect("separator");
        assert_eq!(v.source(sep, sep + 1), None);
        assert_eq!(v.source(sep, sep + 2), v.source(sep + 1, sep + 2));
        // A range across the separator covers the gap.
        assert_eq!(
            v.source(first, last + 1),
            Some(Span {
                start: 200,
                end: 412
            })
        );
        // And a child of the compacted view maps through it.
        let p = Decoder::Percent
            .decode(&v, 0, 1, usize::MAX, None)
            .expect("decode")
            .expect("changed");
        let a = p.bytes().iter().position(|&b| b == b'A').expect("A");
        assert_eq!(
            p.source(a, a + 1),
            Some(Span {
                start: 402,
                end: 405
            })
        );
    }
}
