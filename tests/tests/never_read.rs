//! "Never read" against a hostile guest and a reflecting upstream: the scrubber cannot be
//! turned into a reader (overlapping redactions) or a guess checker (redactions in
//! responses of hosts that never received the value), and it catches the value in the
//! forms real server stacks echo it in (python, node, Go- and PHP-style JSON, HTML, URL
//! and MIME encodings), produced by the real encoders (`tests/encoders/`).
#![allow(clippy::unwrap_used)]

use latchkey_tests::upstream::Upstream;
use latchkey_tests::*;
use serde_json::{Value, json};

/// A strong value whose first byte is `g`, for the overlap attack.
const G_VALUE: &str = "gK7vQ2xN9pL4mR8tW3yZ6bF1hJ5cD0sAeU";

/// A strong value with every character an encoder treats specially.
const TRICKY: &str = "sk-\"q\\7/Zp+Lm&x<Y>9'ü€😀 ~_.-Tf3R8wQ2";

fn host(up: &Upstream) -> String {
    format!("127.0.0.1:{}", up.port())
}

/// Every substring of `value` of `len` bytes (on char boundaries).
fn windows(value: &str, len: usize) -> Vec<String> {
    let chars: Vec<char> = value.chars().collect();
    (0..chars.len())
        .filter_map(|i| {
            let s: String = chars[i..].iter().collect();
            (s.len() >= len).then(|| {
                let mut w = String::new();
                for c in s.chars() {
                    if w.len() >= len {
                        break;
                    }
                    w.push(c);
                }
                w
            })
        })
        .collect()
}

/// Asserts no 10-byte piece of `value` occurs in `text`.
fn assert_no_piece(text: &str, value: &str, what: &str) {
    for w in windows(value, 10) {
        assert!(
            !text.contains(&w),
            "{what}: a piece of the value ({w:?}) came back: {text}"
        );
    }
}

fn raw_request(url: &str, headers: Value) -> Value {
    json!({ "url": url, "headers": headers })
}

#[tokio::test(flavor = "multi_thread")]
async fn overlapping_redactions_cannot_unmask_a_header_bound_value() {
    let up = Upstream::start().await.unwrap();
    let (_s, rt, step) = probe_with(&up, G_VALUE, &["header:authorization", "header:x-a"]);
    // First `[secret(S), text("g")]` (the old code registered `S` + "g" as a pattern),
    // then `Bearer S S` to an endpoint that echoes the token without its scheme.
    let out = run_ok(
        &rt,
        &step,
        json!({"action": "raw", "requests": [
            raw_request(&up.url("/echo"), json!([
                {"name": "x-a", "parts": [{"secret": "TOKEN"}, {"text": "g"}]}])),
            raw_request(&up.url("/reflect/py-json"), json!([
                {"name": "authorization", "parts": [
                    {"text": "Bearer "}, {"secret": "TOKEN"}, {"secret": "TOKEN"}]}])),
        ]}),
    )
    .await;
    assert_eq!(out[1]["status"], 200, "{out}");
    assert_eq!(out[1]["redacted"], true, "{out}");
    assert_no_piece(&out.to_string(), G_VALUE, "overlap");
}

#[tokio::test(flavor = "multi_thread")]
async fn responses_of_unbound_hosts_are_not_scrubbed_so_guesses_get_no_answer() {
    let bound = Upstream::start().await.unwrap();
    let other = Upstream::start().await.unwrap();
    let s = TestStore::new();
    s.put(
        &workspace(),
        "TOKEN",
        G_VALUE,
        &[&host(&bound)],
        &["header:authorization"],
    );
    let rt = runtime(&s);
    let step = load(&rt, "probe");
    // One normal injection, then a "download" of candidates from a host that never
    // received the value: the right guess and a wrong one come back alike.
    let out = run_ok(
        &rt,
        &step,
        json!({"action": "raw", "requests": [
            raw_request(&bound.url("/echo"), json!([
                {"name": "authorization", "parts": [{"text": "Bearer "}, {"secret": "TOKEN"}]}])),
            {"url": other.url("/echo"), "method": "POST",
             "body": format!("candidates: {G_VALUE} gK7vQ2xN9pL4mR8tW3yZ6bF1hJ5cD0sAeV")},
        ]}),
    )
    .await;
    assert_eq!(out[0]["redacted"], true, "{out}");
    assert_eq!(out[1]["status"], 200, "{out}");
    assert_eq!(
        out[1]["redacted"], false,
        "a response from a host outside the binding was scrubbed: the scrubber answers guesses: {out}"
    );
}

/// The encoders of `tests/encoders/`: what real server stacks do to an echoed value.
const ENCODERS: &[&str] = &[
    "py-json",
    "py-json-utf8",
    "go-json",
    "php-json",
    "py-html",
    "py-html-xml",
    "py-quote",
    "py-quote-plus",
    "py-urlencode",
    "py-b64-mime",
    "py-b64-offset1",
    "py-b64-offset2",
    "py-b64url-jwt",
    "py-quopri",
    "py-hex",
    "py-upper",
    "py-repr-bytes",
    "py-utf16",
    "node-json",
    "node-uri",
    "node-b64",
    "node-b64url",
    "node-escape-html",
    "node-json-in-uri",
];

#[tokio::test(flavor = "multi_thread")]
async fn echoes_from_real_encoders_are_scrubbed() {
    let up = Upstream::start().await.unwrap();
    let (_s, rt, step) = probe_with(&up, TRICKY, &["header:x-api-key"]);
    let mut failures = Vec::new();
    for enc in ENCODERS {
        let out = run_ok(
            &rt,
            &step,
            json!({"action": "raw", "url": up.url(&format!("/reflect/{enc}")),
                   "headers": [{"name": "x-api-key", "parts": [{"secret": "TOKEN"}]}]}),
        )
        .await;
        // The upstream must really have answered with the encoder's output.
        if out["status"] != 200 {
            failures.push(format!("{enc}: upstream failed: {out}"));
            continue;
        }
        if out["redacted"] != true {
            failures.push(format!("{enc}: nothing redacted: {}", out["body"]));
            continue;
        }
        let body = out["body"].as_str().unwrap_or_default();
        for w in windows(TRICKY, 10) {
            if body.contains(&w) {
                failures.push(format!("{enc}: {w:?} survived: {body}"));
                break;
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_value_sent_as_a_whole_header_still_has_its_encodings_scrubbed() {
    let up = Upstream::start().await.unwrap();
    let (_s, rt, step) = probe_with_token(&up, G_VALUE);
    // The SDK's `header_secret`: the value is the whole header value.
    let out = run_ok(
        &rt,
        &step,
        json!({"action": "fetch", "url": up.url("/echo/encoded"), "key": "TOKEN",
               "inject": "header:authorization"}),
    )
    .await;
    let text = out.to_string();
    for (label, form) in upstream_forms(G_VALUE) {
        assert!(!text.contains(&form), "{label} survived: {text}");
    }
}

fn upstream_forms(value: &str) -> Vec<(&'static str, String)> {
    latchkey_tests::upstream::encoded_forms(value)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_content_encoding_header_counts() {
    let up = Upstream::start().await.unwrap();
    let (_s, rt, step) = probe_with_token(&up, G_VALUE);
    let out = run_ok(
        &rt,
        &step,
        json!({"action": "raw", "url": up.url("/coded"),
               "headers": [{"name": "authorization", "parts": [{"text": "Bearer "}, {"secret": "TOKEN"}]}]}),
    )
    .await;
    let err = out["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("content-encoded"),
        "a body announced as gzip after an identity header was handed over: {out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_value_echoed_in_a_response_header_name_is_scrubbed() {
    let up = Upstream::start().await.unwrap();
    let value = "Zq8Rt3Wm7Yp2Kx5Nv9Lb4Hc6Jd1Fg0Sa";
    let (_s, rt, step) = probe_with(&up, value, &["header:x-api-key"]);
    let out = run_ok(
        &rt,
        &step,
        json!({"action": "raw", "url": up.url("/header-name"),
               "headers": [{"name": "x-api-key", "parts": [{"secret": "TOKEN"}]}]}),
    )
    .await;
    // The HTTP stack lowercases names: the lowercased value must not come back either.
    assert_no_piece(&out.to_string(), &value.to_ascii_lowercase(), "header name");
    assert_eq!(out["redacted"], true, "{out}");
}
