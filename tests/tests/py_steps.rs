//! "Never read" for steps written in Python with `latchkey_sdk` and built with
//! `python -m latchkey_sdk build` (`tests/guests/python/probe.py`, `examples/python/`): the
//! same properties as the Rust and JavaScript steps, and a real Python that still has no
//! files and no network. CPython imports `wasi:filesystem` and `wasi:sockets`; the host links
//! them with nothing granted, and these tests hold it to that: every file and socket
//! operation is refused. Each component is built and compiled once per test run.
#![allow(clippy::unwrap_used)]

use latchkey_host::sandbox::{RunError, Runtime, Step};
use latchkey_tests::guest_suite;
use latchkey_tests::steps::{load_once, py_step, root};
use latchkey_tests::upstream::Upstream;
use latchkey_tests::*;
use serde_json::{Value, json};

const VALUE: &str = "pyK7vQ2xN9pL4mR8tW3yZ6bF1hJ5cD0s";

fn probe(rt: &Runtime) -> Step {
    load_once(rt, &py_step("probe")).unwrap()
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
async fn a_handle_prints_as_its_key_and_print_and_logging_reach_the_host_log() {
    let up = Upstream::start().await.unwrap();
    let (_s, rt, step) = setup(&up, &["header:authorization"]);
    let out = run(&rt, &step, json!({"action": "print", "key": "TOKEN"}))
        .await
        .unwrap();
    let v: Value = serde_json::from_str(&out.output).unwrap();
    for field in ["str", "repr", "format"] {
        assert_eq!(v[field], "Credential(TOKEN)", "{field}: {v}");
    }
    assert_eq!(v["in_list"], "[Credential(TOKEN)]", "{v}");
    assert_eq!(v["same"], true, "one handle per key: {v}");
    let logs: Vec<(&str, &str)> = out
        .logs
        .iter()
        .map(|l| (l.level, l.message.as_str()))
        .collect();
    assert_eq!(
        logs,
        [
            (
                "info",
                "handle: Credential(TOKEN) [Credential(TOKEN)] {'cred': Credential(TOKEN)}"
            ),
            ("info", "logged Credential(TOKEN)"),
        ]
    );
    assert_never_seen(&format!("{} {logs:?}", out.output));

    let out = run(&rt, &step, json!({"action": "log"})).await.unwrap();
    let logs: Vec<(&str, &str)> = out
        .logs
        .iter()
        .map(|l| (l.level, l.message.as_str()))
        .collect();
    assert_eq!(
        logs,
        [
            ("info", "plain {'n': 1}"),
            ("warn", "to stderr"),
            ("info", "info line"),
            ("warn", "warn line"),
            ("error", "error line"),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exception_fails_the_step_with_its_type_message_and_traceback() {
    let s = TestStore::new();
    let rt = runtime(&s);
    let step = probe(&rt);
    // (input, the first line, the frame that raised it)
    for (input, summary, frame) in [
        (
            json!({"action": "throw", "message": "slack said no"}),
            "ValueError: slack said no",
            "in run",
        ),
        (
            json!({"action": "nope"}),
            "ValueError: unknown action nope",
            "in run",
        ),
        // A bug in the step: the type says what went wrong (`'url'` alone did not).
        (json!({"action": "fetch"}), "KeyError: 'url'", "in build"),
    ] {
        match run(&rt, &step, input).await {
            Err(f) => match f.error {
                RunError::Guest(m) => {
                    let (first, trace) = m
                        .split_once(" (traceback, most recent call last: ")
                        .unwrap_or_else(|| panic!("no traceback: {m}"));
                    assert_eq!(first, summary, "{m}");
                    assert!(trace.contains("probe.py:") && trace.contains(frame), "{m}");
                    assert!(!trace.contains("latchkey_sdk"), "the SDK's own frame: {m}");
                }
                other => panic!("not the step's error: {other}"),
            },
            Ok(o) => panic!("succeeded: {}", o.output),
        }
    }
    let out = run_ok(&rt, &step, json!({"action": "missing", "key": "NOPE"})).await;
    assert_eq!(out["error"], "credential NOPE is not available", "{out}");
    assert_eq!(out["kind"], "missing-credential", "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn time_and_randomness_are_real_and_fresh_for_every_run() {
    let s = TestStore::new();
    let rt = runtime(&s);
    let step = probe(&rt);
    let a = run_ok(&rt, &step, json!({"action": "random"})).await;
    let b = run_ok(&rt, &step, json!({"action": "random"})).await;
    assert_ne!(a["random"], b["random"], "random is replayed: {a} {b}");
    assert_ne!(a["urandom"], b["urandom"], "urandom is replayed: {a} {b}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let seen = a["now"].as_f64().unwrap();
    assert!(
        (seen - now).abs() < 600.0,
        "time.time() is {seen}, not {now}"
    );
}

/// Adversarial: CPython's files and sockets are linked, and grant nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_python_step_can_neither_open_files_nor_reach_the_network() {
    let s = TestStore::new();
    let rt = runtime(&s);
    let step = probe(&rt);
    let out = run_ok(&rt, &step, json!({"action": "files"})).await;
    for (what, got) in out.as_object().unwrap() {
        assert_eq!(got["ok"], false, "files: {what} succeeded: {out}");
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let out = run_ok(
        &rt,
        &step,
        json!({"action": "sockets", "addr": listener.local_addr().unwrap().to_string()}),
    )
    .await;
    for (what, got) in out.as_object().unwrap() {
        assert_eq!(got["ok"], false, "sockets: {what} succeeded: {out}");
    }
    listener.set_nonblocking(true).unwrap();
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the step's TCP connection reached the listener"
    );
    let out = run_ok(
        &rt,
        &step,
        json!({"action": "sockets", "addr": udp.local_addr().unwrap().to_string()}),
    )
    .await;
    assert_eq!(out["udp"]["ok"], false, "{out}");
    udp.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 8];
    assert!(
        matches!(udp.recv_from(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the step's UDP datagram arrived"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_slack_example_posts_with_the_bound_token() {
    let example = root().join("examples/python/slack-post/app.py");
    guest_suite::the_slack_example_posts_with_the_bound_token(&latchkey_tests::steps::py_file(
        &example,
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_step_signs_a_post_with_a_signing_key_it_never_sees() {
    guest_suite::a_signed_post_verifies_and_neither_key_nor_signature_reaches_the_step(probe).await;
}
