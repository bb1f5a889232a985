//! The "never read" cases the JavaScript and Python probes must pass, written once: the
//! TypeScript and Python suites (`tests/tests/js_steps.rs`, `py_steps.rs`) run them against
//! their own probe (`tests/guests/js/probe.ts`, `tests/guests/python/probe.py`), which take
//! the same input.

use crate::upstream::{Recorded, Upstream, encoded_forms};
use crate::{
    TestStore, hmac_verified_by_python, hosts, http_spec, locations, run_ok, runtime,
    set_in_workspace, workspace,
};
use latchkey_host::policy::Binding;
use latchkey_host::sandbox::{RunError, Runtime, Step};
use latchkey_host::store::{CredentialKind, SecretSpec};
use serde_json::json;
use std::path::Path;

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

/// A step signs a POST with the signing key `HOOK_KEY` (kind `hmac-sha256`) through its SDK
/// (`latchkey:workflow@0.2.0`): the upstream gets a signature over the exact body it
/// received, in hex in a header and in base64 in a query parameter, that Python's `hmac`
/// verifies; the key never leaves the host, the signature echoed back never reaches the step,
/// and a header the binding does not name is refused.
pub async fn a_signed_post_verifies_and_neither_key_nor_signature_reaches_the_step(
    load: impl FnOnce(&Runtime) -> Step,
) {
    const KEY: &str = "whsec_sdk_0f1e2d3c4b5a69788796a5b4c3d2e1f0";
    const BODY: &str = r#"{"event":"push","ref":"refs/heads/main"}"#;
    let up = Upstream::start()
        .await
        .unwrap_or_else(|e| panic!("upstream: {e}"));
    let s = TestStore::new();
    let binding = Binding::new(
        hosts(&[&format!("127.0.0.1:{}", up.port())]),
        locations(&["header:x-hub-signature-256", "query:sig"]),
        true,
    )
    .unwrap();
    let spec = SecretSpec {
        kind: CredentialKind::HmacSha256,
        ..http_spec(binding)
    };
    set_in_workspace(&s.store, "HOOK_KEY", KEY, spec).unwrap();
    let rt = runtime(&s);
    let step = load(&rt);

    let signed = |place: serde_json::Value, encoding: &str| {
        let mut input = json!({"action": "sign", "url": up.url("/echo/encoded"),
                               "key": "HOOK_KEY", "encoding": encoding, "body": BODY});
        input
            .as_object_mut()
            .unwrap()
            .extend(place.as_object().unwrap().clone());
        input
    };
    let out = run_ok(
        &rt,
        &step,
        signed(json!({"header": "x-hub-signature-256"}), "hex"),
    )
    .await;
    assert_eq!(out["status"], 200, "{out}");
    let got = up.last_request().unwrap();
    assert_eq!(got.body_text(), BODY);
    let sent = got.header("x-hub-signature-256").unwrap().to_owned();
    let hex_sig = sent.strip_prefix("sha256=").unwrap().to_owned();
    assert!(
        hmac_verified_by_python(KEY, BODY.as_bytes(), &hex_sig, "hex"),
        "{sent}"
    );
    assert!(!got.contains(KEY), "the signing key was sent");
    assert_never_seen(&hex_sig, &out.to_string());

    let out = run_ok(&rt, &step, signed(json!({"query": "sig"}), "base64")).await;
    assert_eq!(out["status"], 200, "{out}");
    let b64_sig = up.last_request().unwrap().query_param("sig").unwrap();
    assert!(hmac_verified_by_python(
        KEY,
        BODY.as_bytes(),
        &b64_sig,
        "base64"
    ));
    assert_never_seen(&b64_sig, &out.to_string());
    assert_never_seen(KEY, &out.to_string());

    up.clear();
    let out = run_ok(&rt, &step, signed(json!({"header": "x-other"}), "hex")).await;
    assert_eq!(out["kind"], "denied", "{out}");
    assert_eq!(up.request_count(), 0);
}

/// The Slack example built in another language (`component`, e.g. from
/// `examples/ts/slack-post`) posts the message with the bound `SLACK_TOKEN` as a bearer token
/// to a fake Slack, answers its output, and fails with Slack's own refusal.
pub async fn the_slack_example_posts_with_the_bound_token(component: &Path) {
    const VALUE: &str = "xoxb-sdk-7d1c9e4a2b8f6035";
    let up = Upstream::start()
        .await
        .unwrap_or_else(|e| panic!("upstream: {e}"));
    up.expect_bearer(Some(VALUE));
    let s = TestStore::new();
    s.put(
        &workspace(),
        "SLACK_TOKEN",
        VALUE,
        &[&format!("127.0.0.1:{}", up.port())],
        &["header:Authorization"],
    );
    let rt = runtime(&s);
    let step = crate::steps::load_once(&rt, component).unwrap();
    let v = run_ok(
        &rt,
        &step,
        json!({"channel": "#general", "text": "hello", "api_base": up.base_url()}),
    )
    .await;
    assert_eq!(v, json!({"ok": true, "channel": "#general", "ts": v["ts"]}));
    let reqs = up.requests_to("/api/chat.postMessage");
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        reqs[0].header("authorization"),
        Some(format!("Bearer {VALUE}").as_str())
    );
    assert_eq!(
        reqs[0].body_json(),
        Some(json!({"channel": "#general", "text": "hello"}))
    );
    // Slack's own refusal is in the step's error message (a Python step's also names the
    // exception's type and where it was raised).
    let failed = crate::run(
        &rt,
        &step,
        json!({"channel": "", "text": "hello", "api_base": up.base_url()}),
    )
    .await
    .err()
    .unwrap();
    assert!(
        matches!(&failed.error, RunError::Guest(m) if m.contains("slack refused the message: channel_not_found")),
        "{}",
        failed.error
    );
}
