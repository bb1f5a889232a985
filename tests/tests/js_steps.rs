//! "Never read" for steps written in TypeScript with `latchkey-sdk` and built with
//! `latchkey-build` (`tests/guests/js/probe.ts`, `examples/ts/`): the same properties as the
//! Rust steps. The upstream receives the exact value in the exact bound place; the step sees
//! only a handle, which prints as its key; an echoed value comes back scrubbed; a value sent
//! to an unbound host is refused with a readable error; a throw fails the step with its
//! message instead of trapping. Each component is built and compiled once per test run.
#![allow(clippy::unwrap_used)]

use latchkey_host::sandbox::{RunError, Runtime, Step};
use latchkey_tests::guest_suite;
use latchkey_tests::steps::{js_step, load_once, root};
use latchkey_tests::upstream::Upstream;
use latchkey_tests::*;
use serde_json::{Value, json};

const VALUE: &str = "jsK7vQ2xN9pL4mR8tW3yZ6bF1hJ5cD0s";

fn probe(rt: &Runtime) -> Step {
    load_once(rt, &js_step("probe")).unwrap()
}

/// A store with `TOKEN` bound to `up` and `locations`, a runtime over it, the probe.
fn setup(up: &Upstream, locations: &[&str]) -> (TestStore, Runtime, Step) {
    guest_suite::setup(up, VALUE, locations, probe)
}

fn assert_never_seen(text: &str) {
    guest_suite::assert_never_seen(VALUE, text);
}

#[tokio::test(flavor = "multi_thread")]
async fn each_injection_lands_the_exact_value_in_its_bound_place_only() {
    let up = Upstream::start().await.unwrap();
    let (_s, rt, step) = setup(&up, &guest_suite::EVERY_LOCATION);
    guest_suite::each_injection_lands_once_and_comes_back_scrubbed(&rt, &step, &up, VALUE).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sending_the_value_to_an_unbound_host_is_refused_with_a_readable_error() {
    guest_suite::an_unbound_host_is_refused_readably(probe).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_handle_prints_as_its_key_however_it_is_printed() {
    let up = Upstream::start().await.unwrap();
    let (_s, rt, step) = setup(&up, &["header:authorization"]);
    let out = run(&rt, &step, json!({"action": "print", "key": "TOKEN"}))
        .await
        .unwrap();
    let v: Value = serde_json::from_str(&out.output).unwrap();
    assert_eq!(v["string"], "Credential(TOKEN)", "{v}");
    assert_eq!(v["template"], "Credential(TOKEN)", "{v}");
    assert_eq!(v["json"], "\"Credential(TOKEN)\"", "{v}");
    assert_eq!(v["inObject"], r#"{"cred":"Credential(TOKEN)"}"#, "{v}");
    assert_eq!(v["keys"], json!(["key"]), "{v}");
    assert_eq!(v["key"], "TOKEN", "{v}");
    assert_eq!(v["same"], true, "one handle per key: {v}");
    let logs: Vec<&str> = out.logs.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(
        logs,
        [
            r#"handle: Credential(TOKEN) {"cred":"Credential(TOKEN)"}"#,
            "Credential(TOKEN)"
        ],
        "{logs:?}"
    );
    assert_never_seen(&format!("{} {logs:?}", out.output));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_throw_fails_the_step_with_its_message_and_errors_read_as_text() {
    let s = TestStore::new();
    let rt = runtime(&s);
    let step = probe(&rt);
    let cases = [
        (
            json!({"action": "throw", "message": "slack said no"}),
            "slack said no",
        ),
        (
            json!({"action": "throw_value", "message": "plain object"}),
            r#"{"message":"plain object"}"#,
        ),
        (json!({"action": "nope"}), "unknown action nope"),
    ];
    for (input, message) in cases {
        match run(&rt, &step, input).await {
            Err(f) => match f.error {
                RunError::Guest(m) => assert_eq!(m, message),
                other => panic!("not the step's error: {other}"),
            },
            Ok(o) => panic!("succeeded: {}", o.output),
        }
    }
    // Input that is not JSON fails before the step's function runs.
    let ctx = latchkey_host::resolve::RunContext::single_step("default", "wf", "alice");
    match rt.run(&step, &ctx, "not json").await {
        Err(f) => assert!(
            matches!(&f.error, RunError::Guest(m) if m.starts_with("step input is not valid JSON")),
            "{}",
            f.error
        ),
        Ok(o) => panic!("succeeded: {}", o.output),
    }
    // A missing credential is a readable error, not "[object Object]".
    let out = run_ok(&rt, &step, json!({"action": "missing", "key": "NOPE"})).await;
    assert_eq!(out["error"], "credential NOPE is not available", "{out}");
    assert_eq!(out["kind"], "missing-credential", "{out}");
    let out = run_ok(&rt, &step, json!({"action": "missing", "key": "lower"})).await;
    assert_eq!(out["kind"], "invalid-key", "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn console_goes_to_the_host_log_at_its_level() {
    let s = TestStore::new();
    let rt = runtime(&s);
    let step = probe(&rt);
    let out = run(&rt, &step, json!({"action": "log"})).await.unwrap();
    let logs: Vec<(&str, &str)> = out
        .logs
        .iter()
        .map(|l| (l.level, l.message.as_str()))
        .collect();
    assert_eq!(
        logs,
        [
            ("info", r#"plain {"n":1}"#),
            ("info", "info line"),
            ("warn", "warn line"),
            ("error", "error line"),
            ("debug", "debug line"),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_typescript_slack_example_posts_with_the_bound_token() {
    let example = root().join("examples/ts/slack-post/step.ts");
    guest_suite::the_slack_example_posts_with_the_bound_token(&latchkey_tests::steps::js_file(
        &example,
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_step_signs_a_post_with_a_signing_key_it_never_sees() {
    guest_suite::a_signed_post_verifies_and_neither_key_nor_signature_reaches_the_step(probe).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_async_step_awaits_the_whatwg_fetch_with_a_credential_header() {
    let up = Upstream::start().await.unwrap();
    let (_s, rt, step) = setup(&up, &["header:authorization"]);
    let out = run_ok(
        &rt,
        &step,
        json!({"action": "whatwg", "url": up.url("/echo"), "key": "TOKEN"}),
    )
    .await;
    assert_eq!(out["status"], 200, "{out}");
    assert_eq!(out["json"]["method"], "POST", "{out}");
    assert_eq!(out["json"]["body"], "hi", "{out}");
    assert!(
        out["header"]
            .as_str()
            .is_some_and(|t| t.starts_with("application/json")),
        "{out}"
    );
    let reqs = up.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        reqs[0].header("authorization"),
        Some(format!("Bearer {VALUE}").as_str())
    );
    assert_never_seen(&out.to_string());
    // Randomness is fresh for every run, not fixed when the component was built.
    let a = run_ok(&rt, &step, json!({"action": "random"})).await;
    let b = run_ok(&rt, &step, json!({"action": "random"})).await;
    assert_ne!(a["random"], b["random"], "{a} {b}");
}
