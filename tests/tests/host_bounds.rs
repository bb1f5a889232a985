//! Every size a guest controls is bounded before the host allocates for it, no limit
//! tells a guest how long a value is, the run's deadline bounds host-side work, and the
//! record of an injection exists before the request leaves.
#![allow(clippy::unwrap_used)]

use latchkey_host::audit::{self, AuditEvent};
use latchkey_host::sandbox::Limits;
use latchkey_tests::upstream::Upstream;
use latchkey_tests::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// 40 bytes, as in the attack this file answers.
const VALUE: &str = "sk-Tq7Lm2Rx9Wp4Kz8Nv3Bc6Df1Gj5Hs0Ya2Ue7";

/// The process's resident set size, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn limit_error(out: &Value) -> String {
    out["error"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn secret_parts_and_guest_text_are_bounded_per_request() {
    let up = Upstream::start().await.unwrap();
    let s = TestStore::new();
    s.put(
        &workspace(),
        "TOKEN",
        VALUE,
        &[&format!("127.0.0.1:{}", up.port())],
        &["header:authorization", "query:key", "body:json:/k"],
    );
    let rt = runtime_with(
        &s,
        Limits {
            deadline: Duration::from_millis(2000),
            memory_bytes: 256 << 20,
            ..Limits::default()
        },
    );
    let step = load(&rt, "probe");
    let many = |n: usize| json!([{"text": "Bearer "}, {"secret": "TOKEN", "times": n}]);
    // The hundreds-of-thousands cases are in `limits.rs`; these are the two bounds that
    // count per request rather than per value.
    let attacks = [
        (
            "17 copies of a secret in one header",
            json!({"action": "raw", "url": up.url("/echo"),
                   "headers": [{"name": "authorization", "parts": many(17)}]}),
            "secret parts",
        ),
        (
            "a 1 MiB header value",
            json!({"action": "raw", "url": up.url("/echo"),
                   "headers": [{"name": "x-a", "parts": [{"text": "a".repeat(1 << 20)}]}]}),
            "longer than",
        ),
        (
            "secrets spread over a header, a query parameter and the body",
            json!({"action": "raw", "url": up.url("/echo"), "method": "POST",
                   "headers": [{"name": "authorization", "parts": many(8)}],
                   "query": [{"name": "key", "parts": [{"secret": "TOKEN", "times": 8}]}],
                   "body_parts": [{"secret": "TOKEN"}]}),
            "secret parts",
        ),
    ];
    for (what, input, expect) in attacks {
        let before = rss_kib();
        let t = Instant::now();
        // A limit error the guest sees, or (for hundreds of thousands of borrowed handles
        // in one call, which wasmtime refuses before the host sees the call) a trap that
        // says so.
        let err = match run(&rt, &step, input).await {
            Ok(o) => limit_error(&serde_json::from_str(&o.output).unwrap()),
            Err(e) => e.to_string(),
        };
        let took = t.elapsed();
        let grew = rss_kib().saturating_sub(before);
        assert!(
            (err.contains("LimitExceeded") && err.contains(expect))
                || err.contains("credential handles in one call"),
            "{what}: expected a limit error naming {expect:?}: {err}"
        );
        assert!(took < Duration::from_secs(5), "{what}: took {took:?}");
        assert!(
            grew < 200 * 1024,
            "{what}: resident memory grew by {grew} KiB"
        );
        eprintln!("{what}: {took:?}, RSS +{grew} KiB");
    }
    assert_eq!(up.request_count(), 0, "an oversized request was sent");
}

#[tokio::test(flavor = "multi_thread")]
async fn size_limits_never_depend_on_a_values_length() {
    // Nobody listens at the destination: what the guest sees comes from the host alone.
    let refused = latchkey_tests::upstream::refused_addr().unwrap();
    let s = TestStore::new();
    let host = refused.to_string();
    s.put(
        &workspace(),
        "SHORT",
        "Zq8Rt3Wm7Yp2",
        &[&host],
        &["header:x-a"],
    );
    s.put(
        &workspace(),
        "LONG",
        &"Zq8Rt3Wm7Yp2".repeat(600),
        &[&host],
        &["header:x-a"],
    );
    let rt = runtime(&s);
    let step = load(&rt, "probe");
    let limit = Limits::default().max_header_value_bytes;
    // Guest text at and past the limit next to either value: the same answer for both.
    let mut answers = Vec::new();
    for text in [limit, limit + 1] {
        let mut pair = Vec::new();
        for key in ["SHORT", "LONG"] {
            let out = run_ok(
                &rt,
                &step,
                json!({"action": "raw", "url": format!("http://{refused}/x"),
                       "headers": [{"name": "x-a", "parts": [{"text": "a".repeat(text)}, {"secret": key}]}]}),
            )
            .await;
            pair.push(limit_error(&out).replace(&refused.to_string(), "ADDR"));
        }
        assert_eq!(pair[0], pair[1], "text of {text} bytes: {pair:?}");
        answers.push(pair[0].clone());
    }
    assert!(!answers[0].contains("LimitExceeded"), "{answers:?}");
    assert!(answers[1].contains("LimitExceeded"), "{answers:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_injection_record_exists_even_when_the_deadline_drops_the_call() {
    let up = Upstream::start().await.unwrap();
    let s = TestStore::new();
    s.put(
        &workspace(),
        "TOKEN",
        VALUE,
        &[&format!("127.0.0.1:{}", up.port())],
        &["header:authorization"],
    );
    let rt = runtime_with(
        &s,
        Limits {
            deadline: Duration::from_millis(400),
            ..Limits::default()
        },
    );
    let step = load(&rt, "probe");
    let t = Instant::now();
    let err = run(
        &rt,
        &step,
        json!({"action": "raw", "url": up.url("/slow?ms=5000"),
               "headers": [{"name": "authorization", "parts": [{"text": "Bearer "}, {"secret": "TOKEN"}]}]}),
    )
    .await;
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    // The upstream got the key…
    assert_eq!(up.request_count(), 1, "{err:?}");
    // …and the trail says so, though the run never saw a response.
    let (records, _) = audit::read_all(&s.store).unwrap();
    assert!(
        records.iter().any(|r| r.event == AuditEvent::Inject),
        "{records:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_injected_credentials_limit_does_not_tell_equal_values_apart() {
    let up = Upstream::start().await.unwrap();
    let s = TestStore::new();
    let host = format!("127.0.0.1:{}", up.port());
    s.put(&workspace(), "A", VALUE, &[&host], &["header:x-a"]);
    s.put(&workspace(), "SAME", VALUE, &[&host], &["header:x-b"]);
    s.put(
        &workspace(),
        "OTHER",
        "Zq8Rt3Wm7Yp2Kx5Nv9Lb",
        &[&host],
        &["header:x-b"],
    );
    let rt = runtime_with(
        &s,
        Limits {
            max_injected_credentials: 1,
            ..Limits::default()
        },
    );
    let step = load(&rt, "probe");
    let mut answers = Vec::new();
    for second in ["SAME", "OTHER"] {
        let out = run_ok(
            &rt,
            &step,
            json!({"action": "raw", "url": up.url("/echo"), "headers": [
                {"name": "x-a", "parts": [{"secret": "A"}]},
                {"name": "x-b", "parts": [{"secret": second}]}]}),
        )
        .await;
        answers.push(limit_error(&out));
    }
    assert!(answers[0].contains("LimitExceeded"), "{answers:?}");
    assert_eq!(answers[0], answers[1]);
    assert_eq!(up.request_count(), 0);
}
