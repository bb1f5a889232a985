//! The "never read" cases the JavaScript and Python probes must pass, written once: the
//! TypeScript and Python suites (`tests/tests/js_steps.rs`, `py_steps.rs`) run them against
//! their own probe (`tests/guests/js/probe.ts`, `tests/guests/python/probe.py`), which take
//! the same input.

use crate::upstream::{Recorded, Upstream, encoded_forms};
use crate::{TestStore, run_ok, runtime, workspace};
use latchkey_host::sandbox::{Runtime, Step};
use serde_json::json;

/// Every place a probe can inject into, for [`setup`].
pub const EVERY_LOCATION: [&str; 6] = [
    "header:authorization",
    "header:x-api-key",
    "query:api_key",
    "basic-auth",
    "body:json:/password",
    "body:form:password",
];

/// A store with `TOKEN` = `value` bound to `up` and `locations`, a runtime over it, and
/// the probe `load` gives for that runtime.
pub fn setup(
    up: &Upstream,
    value: &str,
    locations: &[&str],
    load: impl FnOnce(&Runtime) -> Step,
) -> (TestStore, Runtime, Step) {
    let s = TestStore::new();
    s.put(
        &workspace(),
        "TOKEN",
        value,
        &[&format!("127.0.0.1:{}", up.port())],
        locations,
    );
    let rt = runtime(&s);
    let step = load(&rt);
    (s, rt, step)
}

/// Panics if `text` holds `value` in any encoding the scrubber decodes.
pub fn assert_never_seen(value: &str, text: &str) {
    for (label, form) in encoded_forms(value) {
        assert!(
            !text.contains(&form),
            "the value ({label}) reached the step: {text}"
        );
    }
}

/// Each way a probe can inject `TOKEN` (= `value`, bound to [`EVERY_LOCATION`]) lands the
/// exact value in its place and nowhere else, and the echo the step gets back is scrubbed;
/// then an echo in other encodings is scrubbed too.
pub async fn each_injection_lands_once_and_comes_back_scrubbed(
    rt: &Runtime,
    step: &Step,
    up: &Upstream,
    value: &str,
) {
    type Landed = fn(&Recorded, &str) -> bool;
    let cases: [(&str, &str, Landed); 7] = [
        ("bearer", "GET", |r, v| {
            r.header("authorization") == Some(&format!("Bearer {v}"))
        }),
        ("header:x-api-key", "GET", |r, v| {
            r.header("x-api-key") == Some(v)
        }),
        ("parts:authorization", "GET", |r, v| {
            r.header("authorization") == Some(&format!("token {v}"))
        }),
        ("query:api_key", "GET", |r, v| {
            r.query_param("api_key").as_deref() == Some(v)
        }),
        ("basic:api", "GET", |r, v| {
            use base64::Engine;
            let b64 = base64::engine::general_purpose::STANDARD.encode(format!("api:{v}"));
            r.header("authorization") == Some(&format!("Basic {b64}"))
        }),
        ("json:password", "POST", |r, v| {
            r.body_json() == Some(json!({"password": v, "note": "a \"quoted\" note"}))
        }),
        ("form:password", "POST", |r, v| {
            r.form_param("password").as_deref() == Some(v)
                && r.form_param("other").as_deref() == Some("x y&z")
        }),
    ];
    for (inject, method, landed) in cases {
        up.clear();
        let out = run_ok(
            rt,
            step,
            json!({"action": "fetch", "url": up.url("/echo"), "key": "TOKEN",
                   "inject": inject, "method": method}),
        )
        .await;
        assert_eq!(out["status"], 200, "{inject}: {out}");
        let reqs = up.requests();
        assert_eq!(reqs.len(), 1, "{inject}");
        let r = &reqs[0];
        assert!(landed(r, value), "{inject}: {r:?}");
        // Exactly one place: count the places the value occurs in (basic auth hides it in
        // base64).
        let places = r.headers.iter().filter(|(_, v)| v.contains(value)).count()
            + usize::from(r.query.as_deref().is_some_and(|q| q.contains(value)))
            + usize::from(r.body_text().contains(value));
        let expected = usize::from(!inject.starts_with("basic"));
        assert_eq!(places, expected, "{inject}: {r:?}");
        // /echo reflects the request: what comes back to the step is scrubbed.
        assert_never_seen(value, &out.to_string());
        assert!(
            out["body"]
                .as_str()
                .unwrap_or_default()
                .contains("[REDACTED]"),
            "{inject}: {out}"
        );
    }
    let out = run_ok(
        rt,
        step,
        json!({"action": "fetch", "url": up.url("/echo/encoded"), "key": "TOKEN"}),
    )
    .await;
    assert_eq!(out["status"], 200, "{out}");
    assert_never_seen(value, &out.to_string());
}

/// `TOKEN` sent to a host outside its binding is refused with a readable `denied` error,
/// and nothing reaches either host.
pub async fn an_unbound_host_is_refused_readably(load: impl FnOnce(&Runtime) -> Step) {
    let bound = Upstream::start()
        .await
        .unwrap_or_else(|e| panic!("upstream: {e}"));
    let other = Upstream::start()
        .await
        .unwrap_or_else(|e| panic!("upstream: {e}"));
    let (_s, rt, step) = setup(
        &bound,
        "unbound-value-5e8c1a7d3b9f",
        &["header:authorization"],
        load,
    );
    let out = run_ok(
        &rt,
        &step,
        json!({"action": "fetch", "url": other.url("/echo"), "key": "TOKEN"}),
    )
    .await;
    assert_eq!(out["kind"], "denied", "{out}");
    let message = out["error"].as_str().unwrap_or_default();
    assert!(message.starts_with("request denied: "), "{out}");
    assert!(!message.contains("[object"), "{out}");
    assert_eq!(other.request_count(), 0);
    assert_eq!(bound.request_count(), 0);
}
