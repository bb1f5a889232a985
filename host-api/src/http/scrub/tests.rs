use super::*;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use proptest::prelude::*;
use std::time::Duration;

/// Quotes, backslash, slash, plus, ampersand, angle bracket, space, and non-ASCII
/// (two-byte, three-byte, and an emoji for surrogate pairs).
const SECRET: &str = "sk-live/0123+abc \"q\\\"&<x>ü€😀=%~_.end";

fn matcher<V: AsRef<[u8]>>(values: &[V]) -> Matcher {
    Matcher::new(values.iter().map(|v| v.as_ref())).expect("matcher")
}

fn scrub(m: &Matcher, data: &[u8]) -> Vec<u8> {
    m.scrub(data, None).expect("scrub")
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && hay
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

/// Asserts `out` holds neither the value nor any 20-byte piece of it, and a redaction.
fn assert_clean(value: &[u8], out: &[u8], what: &str) {
    let shown = String::from_utf8_lossy(out);
    assert!(
        contains(out, REDACTED.as_bytes()),
        "{what}: nothing redacted: {shown}"
    );
    assert!(!contains(out, value), "{what}: value survived: {shown}");
    for piece in value.windows(20) {
        assert!(
            !contains(out, piece),
            "{what}: a 20-byte piece survived: {shown}"
        );
    }
}

// ---- encoders used by the tests (independent of the decoders) ----

fn json_escape(s: &str, ascii: bool, go: bool, php_slash: bool) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' if php_slash => out.push_str("\\/"),
            '\n' => out.push_str("\\n"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' if go => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if (c as u32) < 0x20 || (ascii && !c.is_ascii()) => {
                let mut buf = [0u16; 2];
                for u in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

fn html_escape_numeric(s: &str, form: u8) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            'ü' if form == 3 => out.push_str("&uuml;"),
            '€' if form == 3 => out.push_str("&euro;"),
            c if !c.is_ascii() => match form {
                0 => out.push_str(&format!("&#{};", c as u32)),
                1 => out.push_str(&format!("&#x{:x};", c as u32)),
                _ => out.push_str(&format!("&#X{:X};", c as u32)),
            },
            c => out.push(c),
        }
    }
    out
}

/// encodeURIComponent-style: unreserved `A-Za-z0-9-_.~` raw, the rest `%xx`.
fn percent(s: &[u8], lower: bool, plus: bool) -> String {
    let mut out = String::new();
    for &b in s {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else if plus && b == b' ' {
            out.push('+');
        } else if lower {
            out.push_str(&format!("%{b:02x}"));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn quoted_printable(s: &[u8]) -> String {
    let mut out = String::new();
    let mut line = 0;
    for &b in s {
        let piece = if (33..=126).contains(&b) && b != b'=' {
            (b as char).to_string()
        } else {
            format!("={b:02X}")
        };
        if line + piece.len() > 75 {
            out.push_str("=\r\n");
            line = 0;
        }
        line += piece.len();
        out.push_str(&piece);
    }
    out
}

fn mime(s: &[u8], crlf: bool) -> String {
    let flat = STANDARD.encode(s);
    let lines: Vec<&str> = flat
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).expect("ascii"))
        .collect();
    lines.join(if crlf { "\r\n" } else { "\n" })
}

fn backslash_x(s: &[u8]) -> String {
    s.iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("\\x{b:02x}")
            }
        })
        .collect()
}

fn backslash_braces(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_string()
            } else {
                format!("\\u{{{:x}}}", c as u32)
            }
        })
        .collect()
}

fn utf16(s: &str, le: bool) -> Vec<u8> {
    s.encode_utf16()
        .flat_map(|u| if le { u.to_le_bytes() } else { u.to_be_bytes() })
        .collect()
}

/// Every encoding the scrubber is meant to see through, applied to `payload`.
const ENCODINGS: usize = 27;

fn encode(which: usize, payload: &str) -> Vec<u8> {
    let b = payload.as_bytes();
    let s = |x: String| x.into_bytes();
    match which {
        0 => b.to_vec(),
        1 => s(json_escape(payload, true, false, false)),
        2 => s(json_escape(payload, false, true, false)),
        3 => s(json_escape(payload, true, false, true)),
        4 => s(html_escape_numeric(payload, 0)),
        5 => s(html_escape_numeric(payload, 1)),
        6 => s(html_escape_numeric(payload, 2)),
        7 => s(html_escape_numeric(payload, 3)),
        8 => s(percent(b, true, false)),
        9 => s(percent(b, false, false)),
        10 => s(percent(b, true, true)),
        11 => s(STANDARD.encode(b)),
        12 => s(URL_SAFE_NO_PAD.encode(b)),
        13 => s(mime(b, true)),
        14 => s(mime(b, false)),
        15 => s(hex::encode(b)),
        16 => s(hex::encode_upper(b)),
        17 => s(quoted_printable(b)),
        18 => s(backslash_x(b)),
        19 => s(backslash_braces(payload)),
        20 => s(payload.to_ascii_uppercase()),
        21 => s(payload.to_ascii_lowercase()),
        22 => utf16(payload, true),
        23 => utf16(payload, false),
        // Nested: percent-encoded base64, JSON-escaped base64 (PHP `\/`), HTML-escaped JSON.
        24 => s(percent(STANDARD.encode(b).as_bytes(), false, false)),
        25 => s(STANDARD.encode(b).replace('/', "\\/")),
        26 => s(html_escape_numeric(
            &json_escape(payload, true, false, true),
            0,
        )),
        _ => unreachable!(),
    }
}

/// Encodings applied character by character, so the value's encoding is a contiguous
/// piece of the encoded payload.
fn charwise(which: usize) -> bool {
    !matches!(which, 11..=17 | 24 | 25)
}

// ---- the overlap attack and the union of matches ----

#[test]
fn overlapping_copies_are_all_redacted() {
    let s = "sk-live-ABCDEFGHIJKLMNOP";
    let m = matcher(&[s.as_bytes()]);
    for data in [
        format!("Bearer {s} {s}"),
        format!("Bearer {s}{s}"),
        format!("{s}s{s}"),
        format!("{}{s}", &s[..10]),
        format!("{s}{}", &s[3..]),
    ] {
        let out = String::from_utf8(scrub(&m, data.as_bytes())).expect("utf8");
        assert!(!out.contains(&s[1..]), "{data} -> {out}");
        assert!(!out.contains(&s[..s.len() - 1]), "{data} -> {out}");
    }
    // Two values, one a prefix of the other's overlap: the union is redacted.
    let t = "sk-live-ABCDEFGHIJKLMNOPs";
    let m = matcher(&[t.as_bytes(), s.as_bytes()]);
    let out = String::from_utf8(scrub(&m, format!("x{s}{s}y").as_bytes())).expect("utf8");
    assert_eq!(out, format!("x{REDACTED}y"));
}

#[test]
fn header_values_and_names_are_matched_in_any_case() {
    let m = matcher(&[b"Secret-Token-ABCDEFGH"]);
    let out = scrub(&m, b"x-echo-secret-token-abcdefgh: 1");
    assert_eq!(out, format!("x-echo-{REDACTED}: 1").into_bytes());
}

#[test]
fn an_echo_cased_as_a_whole_is_matched_beyond_ascii() {
    let m = matcher(&["tök-Ab3Xq9Lm2Rt7".as_bytes()]);
    for echo in ["INVALID: TÖK-AB3XQ9LM2RT7", "invalid: tök-ab3xq9lm2rt7"] {
        let out = scrub(&m, echo.as_bytes());
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            format!("{}{REDACTED}", &echo[..9]),
            "{echo}"
        );
    }
}

#[test]
fn a_value_misread_as_latin1_is_matched() {
    let value = "tök-Ab3Xq9Lm2Rt7";
    let m = matcher(&[value.as_bytes()]);
    // What a server that reads header bytes as Latin-1 echoes, raw and JSON-escaped.
    let misread: String = value.bytes().map(char::from).collect();
    for echo in [
        misread.clone(),
        serde_json::to_string(&misread).expect("json"),
    ] {
        let out = String::from_utf8(scrub(&m, echo.as_bytes())).expect("utf8");
        assert!(
            out.contains(REDACTED) && !out.contains("Ab3Xq9Lm2Rt7"),
            "{out}"
        );
    }
}

/// Bytes of `data` inside any (case-insensitive) occurrence of `value`.
fn covered(data: &[u8], value: &[u8]) -> Vec<bool> {
    let mut c = vec![false; data.len()];
    for i in 0..data.len().saturating_sub(value.len() - 1) {
        if data[i..i + value.len()].eq_ignore_ascii_case(value) {
            c[i..i + value.len()].iter_mut().for_each(|x| *x = true);
        }
    }
    c
}

/// `out` with each [`REDACTED`] replaced by one 0xFF byte.
fn mark_redactions(out: &[u8]) -> Vec<u8> {
    let r = REDACTED.as_bytes();
    let mut v = Vec::new();
    let mut i = 0;
    while i < out.len() {
        if out[i..].starts_with(r) {
            v.push(0xFF);
            i += r.len();
        } else {
            v.push(out[i]);
            i += 1;
        }
    }
    v
}

/// Longest run of `value`'s bytes (a substring of it) in `text`.
fn longest_piece(text: &[u8], value: &[u8]) -> usize {
    let mut best = 0;
    for i in 0..text.len() {
        for j in 0..value.len() {
            let mut k = 0;
            while i + k < text.len() && j + k < value.len() && text[i + k] == value[j + k] {
                k += 1;
            }
            best = best.max(k);
        }
    }
    best
}

fn alphabet() -> Vec<char> {
    let mut a: Vec<char> = ('a'..='z').chain('A'..='Z').chain('0'..='9').collect();
    a.extend([
        '"', '\\', '/', '+', '&', '<', '>', ' ', '=', '%', '-', '_', '.', '~',
    ]);
    a.extend(['ü', '€', '😀']);
    a
}

fn secret_strategy() -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(alphabet()), 16..48)
        .prop_map(|v| v.into_iter().collect())
}

fn filler() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        proptest::sample::select(vec!['{', '}', '"', ':', ',', ' ', 'q', 'z', '\n', '[', ']']),
        0..24,
    )
    .prop_map(|v| v.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Data built of copies of S, prefixes and suffixes of S and other bytes: S never
    /// survives, and no longer run of S's bytes is left than the non-secret parts hold.
    #[test]
    fn union_of_matches_leaves_no_more_of_the_value_than_the_rest_held(
        s in secret_strategy(),
        parts in proptest::collection::vec((0u8..4, 0usize..48, filler()), 1..8),
    ) {
        let s = s.as_bytes();
        let mut data = Vec::new();
        for (kind, cut, fill) in &parts {
            let cut = cut % s.len();
            match kind {
                0 => data.extend_from_slice(s),
                1 => data.extend_from_slice(&s[..cut]),
                2 => data.extend_from_slice(&s[cut..]),
                _ => data.extend_from_slice(fill.as_bytes()),
            }
        }
        let m = matcher(&[s]);
        let out = scrub(&m, &data);
        prop_assert!(!contains(&out, s));
        // What was not part of an occurrence, with a gap where each one was.
        let c = covered(&data, s);
        let mut rest = Vec::new();
        for (i, &b) in data.iter().enumerate() {
            if c[i] {
                if i == 0 || !c[i - 1] { rest.push(0xFF); }
            } else {
                rest.push(b);
            }
        }
        let out_no_marker = mark_redactions(&out);
        prop_assert!(longest_piece(&out_no_marker, s) <= longest_piece(&rest, s));
    }

    /// A random value, inside random text, in each encoding: nothing of it survives and
    /// scrubbing the output again finds nothing.
    #[test]
    fn no_encoding_of_the_value_survives(
        s in secret_strategy(),
        which in 0..ENCODINGS,
        inner in proptest::collection::vec(proptest::sample::select(vec!['a', 'b', '+', '/', ' ', 'Z']), 0..6),
        tail in proptest::collection::vec(proptest::sample::select(vec!['c', 'd', '9', ':']), 0..6),
        before in filler(),
        after in filler(),
    ) {
        let inner: String = inner.into_iter().collect();
        let tail: String = tail.into_iter().collect();
        let payload = format!("{inner}{s}{tail}");
        let mut data = before.clone().into_bytes();
        data.extend(encode(which, &payload));
        data.extend(after.as_bytes());
        let m = matcher(&[s.as_bytes()]);
        let out = scrub(&m, &data);
        prop_assert!(contains(&out, REDACTED.as_bytes()), "encoding {}: {:?}", which, String::from_utf8_lossy(&out));
        prop_assert!(!contains(&out, s.as_bytes()));
        if charwise(which) {
            prop_assert!(!contains(&out, &encode(which, &s)));
        }
        // Nothing recognisable is left: a second pass changes nothing.
        prop_assert_eq!(scrub(&m, &out), out);
    }
}

/// Text encodings that nest, and base64 and hex (at most one of those in a chain).
const NESTABLE: [usize; 13] = [1, 2, 3, 4, 5, 8, 9, 10, 17, 18, 19, 11, 15];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Two or three encodings applied one over the other: the value is still found.
    #[test]
    fn nested_encodings_are_seen_through(
        s in secret_strategy(),
        chain in proptest::collection::vec(proptest::sample::select(NESTABLE.to_vec()), 2..=3),
        before in filler(),
        after in filler(),
    ) {
        prop_assume!(chain.iter().filter(|w| matches!(w, 11 | 15)).count() <= 1);
        let mut text = s.clone();
        for &which in &chain {
            text = String::from_utf8(encode(which, &text)).expect("ascii or utf-8");
        }
        let data = format!("{before}{text}{after}");
        let m = matcher(&[s.as_bytes()]);
        let out = scrub(&m, data.as_bytes());
        prop_assert!(
            contains(&out, REDACTED.as_bytes()),
            "chain {:?}: {:?}", chain, String::from_utf8_lossy(&out)
        );
        prop_assert!(!contains(&out, s.as_bytes()));
        prop_assert!(!contains(&out, text.as_bytes()));
        prop_assert_eq!(scrub(&m, &out), out);
    }
}

// ---- each encoding, with a value holding every awkward character ----

#[test]
fn every_encoding_of_a_hard_value_is_redacted() {
    let m = matcher(&[SECRET.as_bytes()]);
    for which in 0..ENCODINGS {
        let echo = encode(which, SECRET);
        let mut data = b"{\"echo\": \"".to_vec();
        data.extend(&echo);
        data.extend(b"\", \"n\": 1}");
        let out = scrub(&m, &data);
        assert_clean(SECRET.as_bytes(), &out, &format!("encoding {which}"));
        assert!(!contains(&out, &echo), "encoding {which} survived");
        assert!(out.starts_with(b"{\"echo\": \""), "encoding {which}");
        assert!(out.ends_with(b"\", \"n\": 1}"), "encoding {which}");
    }
}

#[test]
fn base64_at_every_offset_inside_a_longer_blob() {
    let m = matcher(&[SECRET.as_bytes()]);
    for pre in 0..=5 {
        for post in 0..=3 {
            let payload = format!("{}{SECRET}{}", "p".repeat(pre), "s".repeat(post));
            for blob in [
                STANDARD.encode(&payload),
                URL_SAFE_NO_PAD.encode(&payload),
                mime(format!("{}{payload}", "x".repeat(70)).as_bytes(), true),
                mime(format!("{}{payload}", "x".repeat(70)).as_bytes(), false),
            ] {
                let out = scrub(&m, blob.as_bytes());
                assert!(contains(&out, REDACTED.as_bytes()), "{pre}/{post}: {blob}");
                // No 8 characters that carry only the value's bits are left.
                let flat = STANDARD.encode(&payload);
                let (a, b) = ((8 * pre).div_ceil(6), 8 * (pre + SECRET.len()) / 6);
                for piece in flat.as_bytes()[a..b].windows(8) {
                    assert!(
                        !contains(&out, piece),
                        "{pre}/{post}: {}",
                        String::from_utf8_lossy(&out)
                    );
                }
                assert_eq!(scrub(&m, &out), out);
            }
        }
    }
}

#[test]
fn mime_base64_wrapped_at_76_is_redacted_across_line_breaks() {
    let long = format!("{}{SECRET}{}", "a".repeat(50), "b".repeat(50));
    let m = matcher(&[SECRET.as_bytes()]);
    for crlf in [true, false] {
        let blob = mime(long.as_bytes(), crlf);
        assert!(blob.contains('\n'));
        let out = scrub(&m, blob.as_bytes());
        let flat: Vec<u8> = out
            .iter()
            .copied()
            .filter(|b| *b != b'\r' && *b != b'\n')
            .collect();
        assert!(contains(&out, REDACTED.as_bytes()));
        let dec = STANDARD.decode(String::from_utf8_lossy(&flat).replace(REDACTED, ""));
        assert!(dec.map_or(true, |d| !contains(&d, SECRET.as_bytes())));
    }
}

#[test]
fn percent_encoded_base64_and_jwt_payload() {
    let m = matcher(&[SECRET.as_bytes()]);
    // base64 with + / = percent-encoded, as in a query string.
    let q = percent(
        STANDARD.encode(format!("u:{SECRET}")).as_bytes(),
        false,
        false,
    );
    assert!(q.contains("%2B") || q.contains("%2F") || q.contains("%3D"));
    assert_clean(
        SECRET.as_bytes(),
        &scrub(&m, q.as_bytes()),
        "percent base64",
    );
    // A JWT: base64url of JSON holding the value escaped with `\/`.
    let payload = format!(
        "{{\"echo\":\"{}\",\"iat\":1}}",
        json_escape(SECRET, true, false, true)
    );
    let jwt = format!(
        "eyJhbGciOiJIUzI1NiJ9.{}.c2lnbmF0dXJl",
        URL_SAFE_NO_PAD.encode(&payload)
    );
    let out = scrub(&m, jwt.as_bytes());
    assert!(contains(&out, REDACTED.as_bytes()), "{jwt}");
    assert!(out.starts_with(b"eyJhbGciOiJIUzI1NiJ9."));
    assert_eq!(scrub(&m, &out), out);
}

/// A view with few escapes in a long text keeps only windows around them; a match
/// found a decoder deeper must still fit (or be found in another order of decoders:
/// here percent → HTML → percent also finds it). The HTML view has one escape
/// (`&#37;`, the first `%`), and the percent escapes that need it run three times the
/// value's length past it.
#[test]
fn windowed_views_keep_what_a_deeper_match_needs() {
    let value = "€".repeat(30);
    let encoded = percent(value.as_bytes(), false, false).replacen('%', "&#37;", 1);
    let data = format!("{}{encoded}{}", "x ".repeat(1500), " y".repeat(1500));
    let m = matcher(&[value.as_bytes()]);
    let out = scrub(&m, data.as_bytes());
    assert_clean(
        value.as_bytes(),
        &out,
        "percent with its first % as an entity",
    );
    assert!(!contains(&out, b"%E2%82%AC%E2%82%AC%E2%82%AC"));
}

#[test]
fn text_without_values_is_unchanged() {
    let m = matcher(&[SECRET.as_bytes(), b"another-secret-0123456789"]);
    let body = br#"{"ok":true,"ts":"1700000000.000100","url":"https://x.test/a%2Fb?c=d&e=f+g","b64":"aGVsbG8gd29ybGQgaGVsbG8gd29ybGQgaGVsbG8=","hex":"deadbeefcafebabe0011","esc":"\u00fc\/\"","html":"&amp;&#252;","qp":"a=3Db=\r\n"}"#;
    assert_eq!(scrub(&m, body), body.to_vec());
    assert!(!m.finds(body));
    let empty = Matcher::new(std::iter::empty()).expect("empty");
    assert!(empty.is_empty());
    assert_eq!(scrub(&empty, body), body.to_vec());
}

#[test]
fn deadline_passed_fails_closed() {
    let m = matcher(&[SECRET.as_bytes()]);
    let past = Instant::now() - Duration::from_millis(1);
    assert!(matches!(
        m.scrub(SECRET.as_bytes(), Some(past)),
        Err(ScrubError::Deadline)
    ));
    // A deadline in the middle of a large body also errors rather than return data.
    let big = "x\\u0041%41&amp;=41 ".repeat(100_000);
    let soon = Instant::now() + Duration::from_micros(200);
    assert!(matches!(
        m.scrub(big.as_bytes(), Some(soon)),
        Err(ScrubError::Deadline)
    ));
}

#[test]
fn values_out_of_range_are_refused() {
    assert!(matches!(Matcher::new([&b""[..]]), Err(ScrubError::Value)));
    let big = vec![b'a'; MAX_VALUE + 1];
    assert!(matches!(
        Matcher::new([big.as_slice()]),
        Err(ScrubError::Value)
    ));
    let m = matcher(&[b"abc", b"abc"]);
    assert_eq!(format!("{m:?}"), "Matcher { values: 1, .. }");
}

#[test]
fn short_values_are_scrubbed_everywhere() {
    let m = matcher(&[b"x"]);
    assert_eq!(scrub(&m, b"axb"), format!("a{REDACTED}b").into_bytes());
}

// ---- echoes made by real encoders (python3, node): see tests/fixtures/encoders ----

#[test]
fn real_encoder_echoes_are_redacted() {
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(include_str!("../../../tests/fixtures/encoders/echoes.json"))
            .expect("fixture");
    assert!(rows.len() >= 40, "fixture has {} rows", rows.len());
    for row in rows {
        let value = row["value"].as_str().expect("value");
        let encoder = row["encoder"].as_str().expect("encoder");
        let echo = match (row["echo"].as_str(), row["echo_b64"].as_str()) {
            (Some(e), _) => e.as_bytes().to_vec(),
            (None, Some(b)) => STANDARD.decode(b).expect("echo_b64"),
            _ => panic!("row without an echo"),
        };
        let m = matcher(&[value.as_bytes()]);
        let out = scrub(&m, &echo);
        assert_clean(value.as_bytes(), &out, encoder);
        assert_eq!(scrub(&m, &out), out, "{encoder}: a second pass found more");
    }
}

// ---- cost ----

/// `cargo test --release -p latchkey-host --lib scrub -- --ignored --nocapture`
#[test]
#[ignore]
fn cost_of_scrubbing_4_mib_bodies() {
    // Typical API keys: 28 to 31 bytes.
    let values: Vec<String> = (0..4)
        .map(|i| {
            format!(
                "sk-live-{i}-Zq8/+wP3&x\"ü-{}",
                "0123456789".repeat(i % 2 + 1)
            )
        })
        .collect();
    let m = Matcher::new(values.iter().map(|v| v.as_bytes())).expect("matcher");
    let mut body = String::from("[");
    let mut n = 0;
    while body.len() < 4 << 20 {
        body.push_str(&format!(
            "{{\"id\":{n},\"name\":\"item {n} caf\\u00e9\",\"url\":\"https:\\/\\/api.test\\/v1\\/x?a=1&b=%2F{n}\",\"token\":\"{}\",\"ts\":\"2024-01-01T00:00:00+00:00\",\"sum\":\"{}\"}},",
            STANDARD.encode(format!("opaque-{n}-payload-bytes-{}", "x".repeat(40))),
            hex::encode(format!("sha-{n}-0123456789-0123456789-0123"))
        ));
        n += 1;
    }
    body.push_str(&format!(
        "{{\"echo\":\"{}\"}}]",
        json_escape(&values[2], true, false, true)
    ));
    let mut random = Vec::with_capacity(3 << 20);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while random.len() < 3 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        random.extend_from_slice(&x.to_le_bytes());
    }
    let bodies = [
        ("JSON", body.into_bytes()),
        (
            "one base64 blob of random bytes",
            mime(&random, true).into_bytes(),
        ),
        (
            "dense escapes",
            "\\u0041%41&amp;=41+\\\\%2525&#x41;"
                .repeat((4 << 20) / 32)
                .into_bytes(),
        ),
    ];
    for (what, body) in bodies {
        for _ in 0..2 {
            views::acct::take_peak();
            let t = Instant::now();
            let out = m.scrub(&body, None).expect("scrub");
            println!(
                "{what}, {} MiB, 4 values: {:?}; peak bytes held by views {} MiB, plus the output",
                body.len() >> 20,
                t.elapsed(),
                views::acct::take_peak() >> 20
            );
            assert_eq!(out.len() == body.len(), what != "JSON");
        }
    }
}

#[test]
fn a_reversed_value_is_redacted_by_bytes_and_by_characters() {
    let m = matcher(&[SECRET]);
    let by_chars: String = SECRET.chars().rev().collect();
    assert_clean(
        by_chars.as_bytes(),
        &scrub(&m, format!("hint: {by_chars}.").as_bytes()),
        "reversed by characters",
    );
    let by_bytes: Vec<u8> = SECRET.bytes().rev().collect();
    let mut data = b"raw ".to_vec();
    data.extend_from_slice(&by_bytes);
    assert_clean(&by_bytes, &scrub(&m, &data), "reversed by bytes");
    // And inside an encoding: base64 of the reversed value.
    let b64 = STANDARD.encode(by_chars.as_bytes());
    assert!(m.finds(b64.as_bytes()), "base64 of the reversed value");
}

#[test]
fn a_value_cut_over_pieces_is_redacted_in_every_piece() {
    let value = "Vb7Qm2Xr9Lk4Tz8Wn3Pj6Hd1Fs5Gc0Ya";
    let m = matcher(&[value]);
    let (a, b) = value.split_at(13);
    let (b, c) = b.split_at(9);
    let pieces: Vec<&[u8]> = vec![b"text/plain", a.as_bytes(), b"", b.as_bytes(), c.as_bytes()];
    let out = m.scrub_pieces(&pieces, None).expect("scrub");
    assert_eq!(
        out[0], b"text/plain",
        "a piece holding no part is untouched"
    );
    for (i, piece) in [a, b, c].iter().enumerate() {
        let got = &out[[1, 3, 4][i]];
        assert_eq!(
            got,
            REDACTED.as_bytes(),
            "piece {piece:?} came back as {got:?}"
        );
    }
    // A JSON body: only the string values are joined, in document order; keys and the
    // rest of the document stay.
    let body = format!(r#"{{"a": "x{a}", "n": 1, "b": ["{b}"], "{c}": "{c}y"}}"#);
    let out = String::from_utf8(m.scrub_body(body.as_bytes(), None).expect("scrub")).expect("utf8");
    assert_eq!(
        out,
        format!(r#"{{"a": "x{REDACTED}", "n": 1, "b": ["{REDACTED}"], "{c}": "{REDACTED}y"}}"#)
    );
    // Escaped pieces are decoded across the join too.
    let escaped: String = b
        .chars()
        .map(|ch| format!("\\u{:04x}", ch as u32))
        .collect();
    let body = format!(r#"["{a}", "{escaped}", "{c}"]"#);
    assert!(m.holds(body.as_bytes(), None).expect("scrub"));
    // Pieces out of order are not the value.
    let body = format!(r#"["{c}", "{a}", "{b}"]"#);
    assert!(!m.holds(body.as_bytes(), None).expect("scrub"));
}
