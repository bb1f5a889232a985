//! "Never read" for steps written in Python with `latchkey_sdk` and built with
//! `python -m latchkey_sdk build` (`tests/guests/python/probe.py`, `examples/python/`): the
//! same properties as the Rust and JavaScript steps, and a real Python that still has no
//! files and no network. CPython imports `wasi:filesystem` and `wasi:sockets`; the host links
//! them with nothing granted, and these tests hold it to that: every file and socket
//! operation is refused. Each component is built and compiled once per test run.
#![allow(clippy::unwrap_used)]

use latchkey_host::sandbox::{RunError, Runtime, Step};
use latchkey_tests::steps::{load_once, py_file, py_step, root};
use latchkey_tests::upstream::{Upstream, encoded_forms};
use latchkey_tests::*;
use serde_json::{Value, json};

const VALUE: &str = "pyK7vQ2xN9pL4mR8tW3yZ6bF1hJ5cD0s";

fn host(up: &Upstream) -> String {
    format!("127.0.0.1:{}", up.port())
}

fn probe(rt: &Runtime) -> Step {
    load_once(rt, &py_step("probe")).unwrap()
}

fn setup(up: &Upstream, locations: &[&str]) -> (TestStore, Runtime, Step) {
    let s = TestStore::new();
    s.put(&workspace(), "TOKEN", VALUE, &[&host(up)], locations);
    let rt = runtime(&s);
    let step = probe(&rt);
    (s, rt, step)
}

/// Whether the value landed where it should in the request the upstream received.
type Landed = fn(&latchkey_tests::upstream::Recorded) -> bool;

fn assert_never_seen(text: &str) {
    for (label, form) in encoded_forms(VALUE) {
        assert!(
            !text.contains(&form),
            "the value ({label}) reached the step: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn each_injection_lands_the_exact_value_in_its_bound_place_only() {
    let up = Upstream::start().await.unwrap();
    let locations = [
        "header:authorization",
        "header:x-api-key",
        "query:api_key",
        "basic-auth",
        "body:json:/password",
        "body:form:password",
    ];
    let (_s, rt, step) = setup(&up, &locations);
    let cases: [(&str, &str, Landed); 7] = [
        ("bearer", "GET", |r| {
            r.header("authorization") == Some(&format!("Bearer {VALUE}"))
        }),
        ("header:x-api-key", "GET", |r| {
            r.header("x-api-key") == Some(VALUE)
        }),
        ("parts:authorization", "GET", |r| {
            r.header("authorization") == Some(&format!("token {VALUE}"))
        }),
        ("query:api_key", "GET", |r| {
            r.query_param("api_key").as_deref() == Some(VALUE)
        }),
        ("basic:api", "GET", |r| {
            use base64::Engine;
            let b64 = base64::engine::general_purpose::STANDARD.encode(format!("api:{VALUE}"));
            r.header("authorization") == Some(&format!("Basic {b64}"))
        }),
        ("json:password", "POST", |r| {
            r.body_json() == Some(json!({"password": VALUE, "note": "a \"quoted\" note"}))
        }),
        ("form:password", "POST", |r| {
            r.form_param("password").as_deref() == Some(VALUE)
                && r.form_param("other").as_deref() == Some("x y&z")
        }),
    ];
    for (inject, method, landed) in cases {
        up.clear();
        let out = run_ok(
            &rt,
            &step,
            json!({"action": "fetch", "url": up.url("/echo"), "key": "TOKEN",
                   "inject": inject, "method": method}),
        )
        .await;
        assert_eq!(out["status"], 200, "{inject}: {out}");
        let reqs = up.requests();
        assert_eq!(reqs.len(), 1, "{inject}");
        assert!(landed(&reqs[0]), "{inject}: {:?}", reqs[0]);
        let r = &reqs[0];
        let places = r.headers.iter().filter(|(_, v)| v.contains(VALUE)).count()
            + usize::from(r.query.as_deref().is_some_and(|q| q.contains(VALUE)))
            + usize::from(r.body_text().contains(VALUE));
        let expected = usize::from(!inject.starts_with("basic"));
        assert_eq!(places, expected, "{inject}: {r:?}");
        assert_never_seen(&out.to_string());
        assert!(
            out["body"].as_str().unwrap().contains("[REDACTED]"),
            "{inject}: {out}"
        );
    }
    // Echoed in other encodings, still scrubbed.
    let out = run_ok(
        &rt,
        &step,
        json!({"action": "fetch", "url": up.url("/echo/encoded"), "key": "TOKEN"}),
    )
    .await;
    assert_eq!(out["status"], 200, "{out}");
    assert_never_seen(&out.to_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn sending_the_value_to_an_unbound_host_is_refused_with_a_readable_error() {
    let bound = Upstream::start().await.unwrap();
    let other = Upstream::start().await.unwrap();
    let (_s, rt, step) = setup(&bound, &["header:authorization"]);
    let out = run_ok(
        &rt,
        &step,
        json!({"action": "fetch", "url": other.url("/echo"), "key": "TOKEN"}),
    )
    .await;
    assert_eq!(out["kind"], "denied", "{out}");
    assert!(
        out["error"]
            .as_str()
            .unwrap()
            .starts_with("request denied: "),
        "{out}"
    );
    assert_eq!(other.request_count(), 0);
    assert_eq!(bound.request_count(), 0);
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
async fn an_exception_fails_the_step_with_its_message() {
    let s = TestStore::new();
    let rt = runtime(&s);
    let step = probe(&rt);
    for (input, message) in [
        (
            json!({"action": "throw", "message": "slack said no"}),
            "slack said no",
        ),
        (json!({"action": "nope"}), "unknown action nope"),
    ] {
        match run(&rt, &step, input).await {
            Err(f) => match f.error {
                RunError::Guest(m) => assert_eq!(m, message),
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
    let up = Upstream::start().await.unwrap();
    up.expect_bearer(Some(VALUE));
    let s = TestStore::new();
    s.put(
        &workspace(),
        "SLACK_TOKEN",
        VALUE,
        &[&host(&up)],
        &["header:Authorization"],
    );
    let rt = runtime(&s);
    let example = root().join("examples/python/slack-post/app.py");
    let step = load_once(&rt, &py_file(&example)).unwrap();
    let v = run_ok(
        &rt,
        &step,
        json!({"channel": "#general", "text": "hello", "api_base": up.base_url()}),
    )
    .await;
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["channel"], "#general", "{v}");
    let reqs = up.requests_to("/api/chat.postMessage");
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        reqs[0].header("authorization"),
        Some(format!("Bearer {VALUE}").as_str())
    );
    let failed = run(
        &rt,
        &step,
        json!({"channel": "", "text": "hello", "api_base": up.base_url()}),
    )
    .await
    .err()
    .unwrap();
    assert!(
        matches!(&failed.error, RunError::Guest(m) if m == "slack refused the message: channel_not_found"),
        "{}",
        failed.error
    );
}
