//! Echoes a scan of each field alone does not see, from a hostile upstream the binding
//! allows (the step could forward what it gets to a host of its own): the value reversed,
//! compressed without a `Content-Encoding`, cut over two response headers or over JSON
//! string values, and a value rotated away echoed in a later run. Each upstream here
//! really does it (`tests/src/upstream.rs`, `tests/encoders/reflect.py`).
#![allow(clippy::unwrap_used)]

use latchkey_host::audit::{self, AuditEvent};
use latchkey_tests::upstream::Upstream;
use latchkey_tests::*;
use serde_json::{Value, json};

/// A strong ASCII value.
const VALUE: &str = "Vb7Qm2Xr9Lk4Tz8Wn3Pj6Hd1Fs5Gc0YaE";

/// What the value becomes after a rotation.
const ROTATED: &str = "Rk3Wd8Nq1Zt6Yp4Lm9Hx2Cv7Bs5Jf0GuA";

/// A raw request to `url` carrying `TOKEN` as a bearer token.
fn bearer(url: &str) -> Value {
    json!({"action": "raw", "url": url,
           "headers": [{"name": "authorization", "parts": [{"text": "Bearer "}, {"secret": "TOKEN"}]}]})
}

/// Asserts that no 8-byte piece of `value` occurs in `text`.
fn assert_no_piece(text: &str, value: &str, what: &str) {
    let bytes = value.as_bytes();
    for w in bytes.windows(8) {
        let w = std::str::from_utf8(w).unwrap();
        assert!(
            !text.contains(w),
            "{what}: a piece of the value ({w:?}) came back: {text}"
        );
    }
}

fn reversed(value: &str) -> String {
    value.chars().rev().collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reversed_echo_is_scrubbed() {
    let up = Upstream::start().await.unwrap();
    let (_s, rt, step) = probe_with_token(&up, VALUE);
    let out = run_ok(&rt, &step, bearer(&up.url("/reflect/py-reversed"))).await;
    assert_eq!(out["status"], 200, "{out}");
    assert_no_piece(&out.to_string(), &reversed(VALUE), "reversed");
    assert_eq!(out["redacted"], true, "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_value_split_over_two_response_headers_is_scrubbed_in_both() {
    let up = Upstream::start().await.unwrap();
    let (_s, rt, step) = probe_with_token(&up, VALUE);
    let out = run_ok(&rt, &step, bearer(&up.url("/split-headers"))).await;
    assert_eq!(out["status"], 200, "{out}");
    assert_no_piece(&out.to_string(), VALUE, "split over headers");
    let headers = out["headers"].to_string();
    assert!(
        headers.contains("x-token-head") && headers.contains("x-token-tail"),
        "{out}"
    );
    assert_eq!(out["redacted"], true, "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_value_split_over_json_string_values_is_scrubbed_in_every_piece() {
    let up = Upstream::start().await.unwrap();
    let (_s, rt, step) = probe_with_token(&up, VALUE);
    let out = run_ok(&rt, &step, bearer(&up.url("/reflect/py-split-json"))).await;
    assert_eq!(out["status"], 200, "{out}");
    assert_no_piece(&out.to_string(), VALUE, "split over JSON strings");
    // The rest of the document is untouched, and still JSON.
    let body: Value = serde_json::from_str(out["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["n"], 1, "{out}");
    assert_eq!(out["redacted"], true, "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_compressed_body_without_content_encoding_holding_the_value_is_refused_and_audited() {
    let up = Upstream::start().await.unwrap();
    let (s, rt, step) = probe_with_token(&up, VALUE);
    let encoders = [
        "py-gzip-bare",
        "py-zlib-bare",
        "zstd-bare",
        "zstd-skippable-bare",
    ];
    for enc in encoders {
        let out = run_ok(&rt, &step, bearer(&up.url(&format!("/reflect/{enc}")))).await;
        let err = out["error"].as_str().unwrap_or_default();
        assert!(
            err.contains("compressed"),
            "{enc}: a compressed echo of the value was handed over: {out}"
        );
        assert_no_piece(&out.to_string(), VALUE, enc);
    }
    let (records, _) = audit::read_all(&s.store).unwrap();
    let refused = records
        .iter()
        .filter(|r| r.event == AuditEvent::Inject && r.outcome.contains("compressed"))
        .count();
    assert_eq!(
        refused,
        encoders.len(),
        "every refusal is audited: {records:?}"
    );
    // An honest compressed body (a download) that holds no value is handed over as sent.
    let out = run_ok(&rt, &step, bearer(&up.url("/reflect/py-gzip-honest"))).await;
    assert_eq!(out["status"], 200, "{out}");
    assert_eq!(out["redacted"], false, "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_away_value_echoed_in_a_later_run_is_scrubbed_and_never_sent() {
    let up = Upstream::start().await.unwrap();
    let (s, rt, step) = probe_with_token(&up, VALUE);
    let first = run_ok(&rt, &step, bearer(&up.url("/remember"))).await;
    assert_eq!(first["status"], 200, "{first}");
    s.rotate(&workspace(), "TOKEN", ROTATED);
    // The upstream answers the next run with the value it was sent before the rotation.
    let out = run_ok(&rt, &step, bearer(&up.url("/remember"))).await;
    assert_eq!(out["status"], 200, "{out}");
    assert_no_piece(&out.to_string(), VALUE, "the previous value");
    assert_eq!(out["redacted"], true, "{out}");
    // Only the current value is ever injected.
    let last = up.last_request().unwrap();
    assert_eq!(
        last.header("authorization"),
        Some(format!("Bearer {ROTATED}").as_str())
    );
    assert!(!last.contains(VALUE));
}
