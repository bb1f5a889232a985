//! Signing instead of sending (`latchkey:workflow@0.2.0`): a credential of kind
//! `hmac-sha256` is a key the host signs the exact body it sends with; the key never leaves,
//! the signature goes only where the binding says and never comes back to the step. Guests
//! built against 0.1.0 keep working unchanged.
#![allow(clippy::unwrap_used)]

use latchkey_host::audit::{self, AuditEvent};
use latchkey_host::policy::{Binding, Quota};
use latchkey_host::secret::{CredentialKey, SecretValue};
use latchkey_host::store::{CredentialKind, SecretSpec, StoreError};
use latchkey_tests::upstream::Upstream;
use latchkey_tests::*;
use serde_json::{Value, json};

const KEY: &str = "whsec_5f4e3d2c1b0a99887766554433221100ffeeddcc";
const TOKEN: &str = "lk_static_0123456789abcdef0123456789abcdef";
const BODY: &str = r#"{"event":"push","ref":"refs/heads/main"}"#;

fn binding(up: &Upstream, places: &[&str]) -> Binding {
    Binding::new(
        hosts(&[&format!("127.0.0.1:{}", up.port())]),
        locations(places),
        true,
    )
    .unwrap()
}

fn store_key(s: &TestStore, name: &str, value: &str, b: Binding, kind: CredentialKind) {
    set_in_workspace(
        &s.store,
        name,
        value,
        SecretSpec {
            kind,
            ..http_spec(b)
        },
    )
    .unwrap();
}

/// A store with the signing key `HOOK_KEY` and the static `TOKEN`, both bound to `up`.
fn setup(up: &Upstream) -> TestStore {
    let s = TestStore::new();
    store_key(
        &s,
        "HOOK_KEY",
        KEY,
        binding(
            up,
            &[
                "header:x-hub-signature-256",
                "header:x-signature-b64",
                "query:sig",
            ],
        ),
        CredentialKind::HmacSha256,
    );
    store_key(
        &s,
        "TOKEN",
        TOKEN,
        binding(up, &["header:authorization", "header:x-hub-signature-256"]),
        CredentialKind::Static,
    );
    s
}

fn signed_post(url: &str, encoding: &str, header: &str) -> Value {
    json!({"action": "raw", "method": "POST", "url": url, "body": BODY,
           "headers": [{"name": header, "parts": [{"text": "sha256="}, {"signature": "HOOK_KEY", "encoding": encoding}]}]})
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_receiver_verifies_the_signature_over_the_exact_body() {
    let up = Upstream::start().await.unwrap();
    let s = setup(&up);
    let rt = runtime(&s);
    let step = load(&rt, "probe");
    for (encoding, header) in [
        ("hex", "x-hub-signature-256"),
        ("base64", "x-signature-b64"),
    ] {
        up.clear();
        let out = run_ok(&rt, &step, signed_post(&up.url("/echo"), encoding, header)).await;
        assert_eq!(out["status"], 200, "{out}");
        let got = up.last_request().unwrap();
        assert_eq!(got.body_text(), BODY);
        let sent = got.header(header).unwrap().to_owned();
        let sig = sent.strip_prefix("sha256=").unwrap();
        assert!(
            hmac_verified_by_python(KEY, BODY.as_bytes(), sig, encoding),
            "{encoding}: {sent}"
        );
        // Worthless for any other body.
        assert!(!hmac_verified_by_python(KEY, b"{}", sig, encoding));
        // The key itself never left.
        assert!(!got.contains(KEY), "the signing key was sent");
    }
    // In a query parameter too; without a body the empty string is signed.
    up.clear();
    let out = run_ok(
        &rt,
        &step,
        json!({"action": "raw", "url": up.url("/echo"),
               "query": [{"name": "sig", "parts": [{"signature": "HOOK_KEY"}]}]}),
    )
    .await;
    assert_eq!(out["status"], 200, "{out}");
    let sig = up.last_request().unwrap().query_param("sig").unwrap();
    assert!(hmac_verified_by_python(KEY, b"", &sig, "hex"));
    // Each signed request is audited as an injection, never with a value or signature.
    let (records, _) = audit::read_all(&s.store).unwrap();
    let injected: Vec<_> = records
        .iter()
        .filter(|r| r.event == AuditEvent::Inject && r.key == "HOOK_KEY")
        .collect();
    assert_eq!(injected.len(), 3, "{records:?}");
    assert!(!format!("{records:?}").contains(&sig));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signature_echoed_in_any_encoding_never_reaches_the_step() {
    let up = Upstream::start().await.unwrap();
    let s = setup(&up);
    let rt = runtime(&s);
    let step = load(&rt, "probe");
    for encoding in ["hex", "base64"] {
        up.clear();
        let out = run_ok(
            &rt,
            &step,
            signed_post(&up.url("/echo/encoded"), encoding, "x-hub-signature-256"),
        )
        .await;
        assert_eq!(out["status"], 200, "{out}");
        let sent = up.last_request().unwrap();
        let sig = sent.header("x-hub-signature-256").unwrap()["sha256=".len()..].to_owned();
        let answer = out.to_string();
        assert!(out["redacted"] == true, "{answer}");
        for (label, form) in latchkey_tests::upstream::encoded_forms(&sig) {
            assert!(
                !answer.contains(&form),
                "{encoding}: {label} form came back: {answer}"
            );
        }
        // Nor the raw MAC in the other encoding.
        let raw = if encoding == "hex" {
            hex::decode(&sig).unwrap()
        } else {
            base64_decode(&sig)
        };
        assert!(!answer.contains(&hex::encode(&raw)), "{answer}");
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signature_goes_only_to_bound_destinations() {
    let up = Upstream::start().await.unwrap();
    let other = Upstream::start().await.unwrap();
    let s = setup(&up);
    let rt = runtime(&s);
    let step = load(&rt, "probe");
    let out = run_ok(
        &rt,
        &step,
        signed_post(&other.url("/echo"), "hex", "x-hub-signature-256"),
    )
    .await;
    assert!(out["error"].as_str().unwrap().contains("Denied"), "{out}");
    assert_eq!(other.request_count(), 0);
    // A header the binding does not name.
    let out = run_ok(&rt, &step, signed_post(&up.url("/echo"), "hex", "x-other")).await;
    assert!(out["error"].as_str().unwrap().contains("Denied"), "{out}");
    assert_eq!(up.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signing_key_is_never_sent_and_a_static_value_never_signs() {
    let up = Upstream::start().await.unwrap();
    let s = setup(&up);
    let rt = runtime(&s);
    let step = load(&rt, "probe");
    let attempts = [
        // The key as a value, into a place its binding names.
        json!({"action": "raw", "url": up.url("/echo"),
               "headers": [{"name": "x-hub-signature-256", "parts": [{"secret": "HOOK_KEY"}]}]}),
        json!({"action": "raw", "url": up.url("/echo"),
               "query": [{"name": "sig", "parts": [{"secret": "HOOK_KEY"}]}]}),
        json!({"action": "raw", "url": up.url("/echo"), "basic": {"user": "u", "key": "HOOK_KEY"}}),
        json!({"action": "raw", "method": "POST", "url": up.url("/echo"),
               "headers": [{"name": "content-type", "parts": [{"text": "application/json"}]}],
               "body_parts": [{"text": "{\"k\": \""}, {"secret": "HOOK_KEY"}, {"text": "\"}"}]}),
        // A static value used as a signing key.
        json!({"action": "raw", "url": up.url("/echo"),
               "headers": [{"name": "x-hub-signature-256", "parts": [{"signature": "TOKEN"}]}]}),
    ];
    for a in attempts {
        let out = run_ok(&rt, &step, a.clone()).await;
        let e = out["error"].as_str().unwrap_or_default();
        assert!(e.contains("Denied"), "{a}: {out}");
        assert!(!e.contains(KEY) && !e.contains(TOKEN), "{out}");
    }
    // A signature inside the body it covers.
    let out = run_ok(
        &rt,
        &step,
        json!({"action": "raw", "method": "POST", "url": up.url("/echo"),
               "headers": [{"name": "content-type", "parts": [{"text": "application/json"}]}],
               "body_parts": [{"text": "{\"s\": \""}, {"signature": "HOOK_KEY"}, {"text": "\"}"}]}),
    )
    .await;
    assert!(
        out["error"].as_str().unwrap().contains("InvalidRequest"),
        "{out}"
    );
    assert_eq!(up.request_count(), 0, "a refused request left");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_signing_key_is_not_a_scrub_pattern_so_guesses_get_no_answer() {
    let up = Upstream::start().await.unwrap();
    let s = setup(&up);
    let rt = runtime(&s);
    let step = load(&rt, "probe");
    // A step that guessed the key and makes the bound host echo it, in a signed request
    // (so the key's binding applies to this response): the echo comes back as sent, so
    // it confirms nothing. Only the signature is scrubbed.
    let mut input = signed_post(&up.url("/echo"), "hex", "x-hub-signature-256");
    input["body"] = json!(KEY);
    let out = run_ok(&rt, &step, input).await;
    assert_eq!(out["status"], 200, "{out}");
    assert!(out["body"].as_str().unwrap().contains(KEY), "{out}");
}

#[test]
fn a_signing_key_may_be_bound_only_to_header_or_query_places() {
    let up = Upstream::start_blocking().unwrap();
    let s = TestStore::new();
    for place in ["basic-auth", "body:json:/sig", "body:form:sig"] {
        let err = s
            .store
            .set(
                &workspace(),
                &CredentialKey::new("HOOK_KEY").unwrap(),
                SecretValue::new(KEY.as_bytes().to_vec()).unwrap(),
                SecretSpec {
                    integration: "http".into(),
                    binding: binding(&up, &[place]),
                    allow_weak_value: false,
                    quota: Quota::default(),
                    kind: CredentialKind::HmacSha256,
                    oauth: None,
                },
                "tester",
            )
            .unwrap_err();
        assert!(matches!(err, StoreError::Kind(_)), "{place}: {err}");
        assert!(!err.to_string().contains(KEY));
    }
    assert!(s.store.list(None).unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_built_against_wit_0_1_0_runs_unchanged() {
    // `tests/fixtures/probe-wit-0.1.0.wasm` is the probe guest as built from the 0.1.0 SDK
    // before 0.2.0 existed: it imports `latchkey:workflow/*@0.1.0` only.
    let up = Upstream::start().await.unwrap();
    let s = setup(&up);
    let rt = runtime(&s);
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/probe-wit-0.1.0.wasm"
    ))
    .unwrap();
    assert!(
        String::from_utf8_lossy(&bytes).contains("latchkey:workflow/http@0.1.0")
            && !String::from_utf8_lossy(&bytes).contains("latchkey:workflow/http@0.2.0"),
        "the fixture is not a 0.1.0 guest"
    );
    let step = rt.load(&bytes).unwrap();
    let out = run_ok(
        &rt,
        &step,
        json!({"action": "fetch", "url": up.url("/echo/encoded"), "key": "TOKEN"}),
    )
    .await;
    assert_eq!(out["status"], 200, "{out}");
    up.expect_bearer(Some(TOKEN));
    assert!(
        out["body"].as_str().unwrap().contains("[REDACTED]"),
        "{out}"
    );
    assert!(!out.to_string().contains(TOKEN), "{out}");
    // Refusals reach it in its own error type: binding, quota.
    let out = run_ok(
        &rt,
        &step,
        json!({"action": "raw", "url": up.url("/echo"),
               "headers": [{"name": "x-hub-signature-256", "parts": [{"secret": "HOOK_KEY"}]}]}),
    )
    .await;
    assert!(out["error"].as_str().unwrap().contains("Denied"), "{out}");
    let out = run_ok(
        &rt,
        &step,
        json!({"action": "log", "message": format!("x {TOKEN}")}),
    )
    .await;
    assert_eq!(out, json!({}));
}
