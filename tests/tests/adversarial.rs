//! Hostile guests and hostile upstreams. Every test names the attack; each must leave the
//! host serving (the last step of most tests is a normal run on the same runtime).
#![allow(clippy::unwrap_used)]

use latchkey_host::policy::AddressPolicy;
use latchkey_host::sandbox::{Limits, RunError, Runtime, RuntimeConfig};
use latchkey_tests::upstream::Upstream;
use latchkey_tests::*;
use serde_json::json;
use std::time::{Duration, Instant};

fn host(up: &Upstream) -> String {
    format!("127.0.0.1:{}", up.port())
}

/// A normal run still works: the host survived whatever came before.
async fn still_serving(rt: &Runtime) {
    let step = load(rt, "probe");
    let v = run_ok(rt, &step, json!({"action": "echo", "x": 1})).await;
    assert_eq!(v["x"], 1);
}

fn small_limits() -> Limits {
    Limits {
        deadline: Duration::from_millis(1500),
        memory_bytes: 32 << 20,
        max_response_body: 64 << 10,
        request_timeout: Duration::from_millis(1000),
        ..Limits::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn busy_loop_is_stopped_by_the_deadline() {
    let s = TestStore::new();
    let rt = runtime_with(&s, small_limits());
    let step = load(&rt, "spin");
    let t = Instant::now();
    let err = run(&rt, &step, json!({})).await.unwrap_err();
    assert!(matches!(err.error, RunError::Deadline(_)), "{err}");
    assert!(t.elapsed() < Duration::from_secs(10));
    still_serving(&rt).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_upstream_is_bounded_by_the_request_timeout() {
    let up = Upstream::start().await.unwrap();
    let s = TestStore::new();
    let rt = runtime_with(&s, small_limits());
    let step = load(&rt, "probe");
    let t = Instant::now();
    let err = run(
        &rt,
        &step,
        json!({"action": "fetch", "url": up.url("/slow?ms=5000")}),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("time"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(4));
    // A drip that never finishes within the run is cut by the deadline too.
    let err = run(
        &rt,
        &step,
        json!({"action": "fetch", "url": up.url("/drip?chunks=100&ms=100"), "timeout_ms": 60000}),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("time") || err.to_string().contains("deadline"),
        "{err}"
    );
    still_serving(&rt).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_hog_traps_at_the_memory_limit() {
    let s = TestStore::new();
    let rt = runtime_with(&s, small_limits());
    let step = load(&rt, "hog");
    let err = run(&rt, &step, json!({"mib": 200})).await.unwrap_err();
    assert!(err.to_string().contains("memory limit of 32 MiB"), "{err}");
    // Below the limit works.
    let v = run_ok(&rt, &step, json!({"mib": 8})).await;
    assert_eq!(v["mib"], 8, "{v}");
    still_serving(&rt).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unbounded_recursion_traps() {
    let s = TestStore::new();
    let rt = runtime_with(&s, small_limits());
    let step = load(&rt, "recurse");
    for mode in ["native", "shadow"] {
        let err = run(&rt, &step, json!({"stack": mode})).await.unwrap_err();
        assert!(matches!(err.error, RunError::Trap(_)), "{mode}: {err}");
    }
    let err = run(&rt, &step, json!({"stack": "native"}))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("stack overflow"), "{err}");
    still_serving(&rt).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn guest_panic_is_a_trap_with_its_message_in_the_logs() {
    let s = TestStore::new();
    let rt = runtime(&s);
    let step = load(&rt, "panic");
    let err = run(&rt, &step, json!({})).await.unwrap_err();
    assert!(matches!(err.error, RunError::Trap(_)), "{err}");
    assert!(
        err.logs.iter().any(|l| l.message.contains("panicked")),
        "{:?}",
        err.logs
    );
    still_serving(&rt).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_dropped_and_double_dropped_handles_trap_and_send_nothing() {
    let up = Upstream::start().await.unwrap();
    let s = TestStore::new();
    s.put(
        &workspace(),
        "TOKEN",
        "forge-target",
        &[&host(&up)],
        &["header:authorization"],
    );
    let rt = runtime(&s);
    let step = load(&rt, "forge");
    for action in ["forged", "forged_key", "dropped", "double_drop"] {
        for handle in [0u32, 1, 2, 12345] {
            let input =
                json!({"action": action, "handle": handle, "key": "TOKEN", "url": up.url("/echo")});
            let err = run(&rt, &step, input).await.unwrap_err();
            assert!(
                matches!(err.error, RunError::Trap(_)),
                "{action}/{handle}: {err}"
            );
        }
    }
    assert_eq!(up.request_count(), 0);
    still_serving(&rt).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn handle_count_is_limited() {
    let s = TestStore::new();
    s.put(
        &workspace(),
        "TOKEN",
        "v",
        &["api.example.com"],
        &["header:authorization"],
    );
    let rt = runtime_with(
        &s,
        Limits {
            max_handles: 5,
            ..Limits::default()
        },
    );
    let step = load(&rt, "probe");
    let v = run_ok(
        &rt,
        &step,
        json!({"action": "handles", "key": "TOKEN", "count": 50}),
    )
    .await;
    assert_eq!(v["got"], 5, "{v}");
    assert!(v["error"].as_str().unwrap().contains("handle"), "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn fetch_count_is_limited() {
    let up = Upstream::start().await.unwrap();
    let s = TestStore::new();
    let rt = runtime_with(
        &s,
        Limits {
            max_fetches: 1,
            ..Limits::default()
        },
    );
    let step = load(&rt, "probe");
    let err = run(
        &rt,
        &step,
        json!({"action": "fetch_twice", "url": up.url("/echo")}),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("at most 1 fetches"), "{err}");
    assert_eq!(up.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_and_endless_response_bodies_are_cut() {
    let up = Upstream::start().await.unwrap();
    let s = TestStore::new();
    let rt = runtime_with(&s, small_limits());
    let step = load(&rt, "probe");
    for path in ["/big?bytes=200000", "/endless"] {
        let err = run(&rt, &step, json!({"action": "fetch", "url": up.url(path)}))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("larger than 65536 bytes"),
            "{path}: {err}"
        );
    }
    let v = run_ok(
        &rt,
        &step,
        json!({"action": "fetch", "url": up.url("/big?bytes=1000")}),
    )
    .await;
    assert_eq!(v["body"].as_str().unwrap().len(), 1000);
    still_serving(&rt).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn compression_bomb_is_never_inflated_and_refused_once_a_secret_was_sent() {
    let up = Upstream::start().await.unwrap();
    let (_s, rt, step) = probe_with_token(&up, "bomb-secret");
    // Without a credential: the compressed bytes arrive as they are (about 1 MB, not 1 GiB).
    let bomb = "/gzip-bomb?inflated=50000000";
    let v = run_ok(&rt, &step, json!({"action": "fetch", "url": up.url(bomb)})).await;
    assert_eq!(v["status"], 200);
    assert!(v["body"].as_str().unwrap().len() < 1 << 20);
    // With a credential the body could hide an echo the scrubber cannot see: refused.
    let err = run(
        &rt,
        &step,
        json!({"action": "fetch", "url": up.url(bomb), "key": "TOKEN"}),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("content-encoded"), "{err}");
    // And the host asked for identity encoding.
    assert_eq!(
        up.last_request().unwrap().header("accept-encoding"),
        Some("identity")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn redirects_are_returned_to_the_guest_not_followed() {
    let up = Upstream::start().await.unwrap();
    let (_s, rt, step) = probe_with_token(&up, "redirect-secret");
    let evil = Upstream::start().await.unwrap();
    let url = up.url(&format!("/redirect?to={}", evil.url("/echo")));
    let v = run_ok(
        &rt,
        &step,
        json!({"action": "fetch", "url": url, "key": "TOKEN"}),
    )
    .await;
    assert_eq!(v["status"], 302, "{v}");
    assert_eq!(evil.request_count(), 0);
    assert_eq!(up.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn too_many_response_headers_are_refused() {
    let up = Upstream::start().await.unwrap();
    let s = TestStore::new();
    let rt = runtime_with(
        &s,
        Limits {
            max_response_headers: 20,
            ..Limits::default()
        },
    );
    let step = load(&rt, "probe");
    let err = run(
        &rt,
        &step,
        json!({"action": "fetch", "url": up.url("/headers?count=50")}),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("more than 20 headers"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn header_smuggling_and_overrides_are_refused() {
    let up = Upstream::start().await.unwrap();
    let s = TestStore::new();
    s.put(
        &workspace(),
        "TOKEN",
        "smuggle-secret",
        &[&host(&up)],
        &["header:authorization", "basic-auth"],
    );
    let rt = runtime(&s);
    let step = load(&rt, "probe");
    let cases = [
        json!({"action": "fetch", "url": up.url("/echo"), "headers": {"X-A": "a\r\nX-Injected: 1"}}),
        json!({"action": "fetch", "url": up.url("/echo"), "headers": {"X-A": "a\u{0}b"}}),
        json!({"action": "fetch", "url": up.url("/echo"), "headers": {"Host": "evil.example"}}),
        json!({"action": "fetch", "url": up.url("/echo"), "headers": {"Transfer-Encoding": "chunked"}}),
        json!({"action": "fetch", "url": up.url("/echo"), "headers": {"bad name": "x"}}),
        // The guest may not set the header the credential goes into…
        json!({"action": "fetch", "url": up.url("/echo"), "key": "TOKEN", "headers": {"Authorization": "Bearer mine"}}),
        // …nor the one basic auth builds.
        json!({"action": "fetch", "url": up.url("/echo"), "key": "TOKEN", "inject": "basic:api", "headers": {"Authorization": "x"}}),
        json!({"action": "fetch", "url": up.url("/echo"), "key": "TOKEN", "inject": "basic:a:b"}),
        json!({"action": "fetch", "url": format!("http://user:pw@127.0.0.1:{}/echo", up.port())}),
        json!({"action": "fetch", "url": "file:///etc/passwd"}),
        json!({"action": "fetch", "url": "not a url"}),
    ];
    for input in cases {
        let err = run(&rt, &step, input.clone()).await.unwrap_err();
        assert!(matches!(err.error, RunError::Guest(_)), "{input}: {err}");
    }
    assert_eq!(up.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_require_https_unless_the_binding_allows_http() {
    let up = Upstream::start().await.unwrap();
    let s = TestStore::new();
    // Bound to the right host and port but without --allow-http.
    let b = latchkey_host::policy::Binding::new(
        vec![latchkey_host::policy::HostPattern::parse(&host(&up)).unwrap()],
        vec![latchkey_host::policy::InjectLocation::parse("header:authorization").unwrap()],
        false,
    )
    .unwrap();
    s.store
        .set(
            &workspace(),
            &latchkey_host::secret::CredentialKey::new("TOKEN").unwrap(),
            latchkey_host::secret::SecretValue::new(b"https-only".to_vec()).unwrap(),
            latchkey_host::store::SecretSpec {
                integration: "http".into(),
                binding: b,
                allow_weak_value: true,
                quota: Default::default(),
                kind: Default::default(),
                oauth: None,
            },
            "t",
        )
        .unwrap();
    let rt = runtime(&s);
    let step = load(&rt, "probe");
    let err = run(
        &rt,
        &step,
        json!({"action": "fetch", "url": up.url("/echo"), "key": "TOKEN"}),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("only be sent over https"), "{err}");
    assert_eq!(up.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn internal_destinations_are_refused_unless_the_operator_allows_them() {
    let up = Upstream::start().await.unwrap();
    let s = TestStore::new();
    let config = RuntimeConfig {
        address_policy: AddressPolicy::public_only(),
        ..RuntimeConfig::default()
    };
    let rt = Runtime::new(config, s.store.clone()).unwrap();
    let step = load(&rt, "probe");
    for url in [
        up.url("/echo"),
        format!("http://localhost:{}/echo", up.port()),
        format!("http://[::1]:{}/echo", up.port()),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://10.0.0.1/".to_owned(),
        format!("http://0x7f.0.0.1:{}/echo", up.port()),
    ] {
        let err = run(&rt, &step, json!({"action": "fetch", "url": url}))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("refused"), "{url}: {err}");
    }
    assert_eq!(up.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_never_reveal_a_value_or_its_length() {
    let up = Upstream::start().await.unwrap();
    let secret = "len-probe-secret-0123456789";
    let (_s, rt, step) = probe_with_token(&up, secret);
    let refused = latchkey_tests::upstream::refused_addr().unwrap();
    for input in [
        json!({"action": "fetch", "url": format!("http://{refused}/x"), "key": "TOKEN"}),
        json!({"action": "fetch", "url": up.url("/echo"), "key": "TOKEN", "inject": "query:x"}),
        json!({"action": "fetch", "url": "https://api.example.com/", "key": "TOKEN"}),
    ] {
        let err = run(&rt, &step, input).await.unwrap_err().to_string();
        assert!(!err.contains(secret), "{err}");
        let len = secret.len();
        for form in [
            format!("{len} byte"),
            format!("length {len}"),
            format!("len {len}"),
        ] {
            assert!(!err.contains(&form), "{err}");
        }
    }
}
