//! Per-run limits that bound host-side work and memory, whatever layout a guest sends:
//! credential gets, log lines and bytes, control characters in guest text, and requests
//! built from hundreds of thousands of parts, parameters or headers.
//!
//! The attack tests measure the process's resident memory, so they run one at a time
//! (`serial()`); each asserts a bound on growth, not a timing target.
#![allow(clippy::unwrap_used)]

use latchkey_host::audit;
use latchkey_host::resolve::RunContext;
use latchkey_host::sandbox::{Limits, RunError, RunFailure, RunOutcome, Runtime, Step};
use latchkey_tests::upstream::Upstream;
use latchkey_tests::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// A 40-byte token: long and varied enough for the store's strength check.
const TOKEN: &str = "lk_test_9f8e7d6c5b4a39281706f5e4d3c2b1a0";

static SERIAL: Mutex<()> = Mutex::const_new(());

async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

/// `VmRSS` and `VmHWM` of this process, in KiB.
fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

async fn run_as(
    rt: &Runtime,
    step: &Step,
    ctx: &RunContext,
    input: Value,
) -> Result<RunOutcome, RunFailure> {
    rt.run(step, ctx, &input.to_string()).await
}

/// What an attack run did: the step's answer (or its failure), wall time, memory growth.
struct Measured {
    answer: Result<Value, String>,
    elapsed: Duration,
    rss_growth_mib: u64,
    hwm_growth_mib: u64,
}

/// Runs the probe with `input` against a store holding `TOKEN` bound to `up`, with a 0.5 s
/// deadline, measuring time and memory.
async fn attack(up: &Upstream, input: Value, limits: Limits) -> Measured {
    let (s, _, _) = probe_with_token(up, TOKEN);
    let rt = runtime_with(&s, limits);
    let step = load(&rt, "probe");
    // Warm up: allocator arenas, the tokio runtime and the client exist before measuring.
    run(&rt, &step, json!({"action": "echo"})).await.unwrap();
    // Serialised before the clock starts: the test's own JSON work is not the host's.
    let input = input.to_string();
    let ctx = RunContext::single_step("default", "wf", "alice");
    let (rss0, hwm0) = rss_kib();
    let t = Instant::now();
    let result = rt.run(&step, &ctx, &input).await;
    let elapsed = t.elapsed();
    let (rss1, hwm1) = rss_kib();
    let m = Measured {
        answer: result
            .map(|o| serde_json::from_str(&o.output).unwrap())
            .map_err(|f| f.to_string()),
        elapsed,
        rss_growth_mib: rss1.saturating_sub(rss0) >> 10,
        hwm_growth_mib: hwm1.saturating_sub(hwm0) >> 10,
    };
    eprintln!(
        "attack: {:?} in {:?}, RSS +{} MiB, HWM +{} MiB",
        m.answer
            .as_ref()
            .map(|v| v.to_string().chars().take(200).collect::<String>()),
        m.elapsed,
        m.rss_growth_mib,
        m.hwm_growth_mib
    );
    m
}

fn attack_limits() -> Limits {
    Limits {
        deadline: Duration::from_millis(500),
        // The guest builds its request from JSON; give it room so that the host, not the
        // guest's own memory, is what the test exercises.
        memory_bytes: 256 << 20,
        ..Limits::default()
    }
}

/// The run ended with a limit (a fetch error naming it, or the deadline), quickly, with
/// nothing sent and bounded memory.
fn assert_bounded(m: &Measured, up: &Upstream, limit_words: &[&str]) {
    match &m.answer {
        Ok(v) => {
            let err = v["error"]
                .as_str()
                .unwrap_or_else(|| panic!("not refused: {v}"));
            assert!(err.contains("LimitExceeded"), "{err}");
            assert!(
                limit_words.iter().any(|w| err.contains(w)),
                "the error does not name the limit ({limit_words:?}): {err}"
            );
        }
        // A deadline, or wasmtime's own bound on handles lent in one call (400k borrows of
        // the same credential), reported as a clear trap.
        Err(e) => assert!(
            e.contains("deadline") || e.contains("credential handles in one call"),
            "{e}"
        ),
    }
    assert!(m.elapsed < Duration::from_secs(2), "took {:?}", m.elapsed);
    assert_eq!(up.request_count(), 0, "the upstream received a request");
    assert!(
        m.hwm_growth_mib < 200 && m.rss_growth_mib < 200,
        "memory grew by {} MiB (peak {} MiB)",
        m.rss_growth_mib,
        m.hwm_growth_mib
    );
}

fn secret_times(n: u64) -> Value {
    json!({"secret": "TOKEN", "times": n})
}

#[tokio::test(flavor = "multi_thread")]
async fn a_header_of_400k_secret_parts_is_refused_quickly() {
    let _g = serial().await;
    let up = Upstream::start().await.unwrap();
    let m = attack(
        &up,
        json!({"action": "raw", "url": up.url("/echo"), "headers": [
            {"name": "authorization", "parts": [{"text": "Bearer "}, secret_times(400_000)]}
        ]}),
        attack_limits(),
    )
    .await;
    assert_bounded(&m, &up, &["part", "secret"]);
}

/// Below wasmtime's own bound on lent handles (100 000 per store), the host's limits are
/// what stops the request.
#[tokio::test(flavor = "multi_thread")]
async fn a_header_of_90k_secret_parts_is_refused_by_the_host() {
    let _g = serial().await;
    let up = Upstream::start().await.unwrap();
    let m = attack(
        &up,
        json!({"action": "raw", "url": up.url("/echo"), "headers": [
            {"name": "authorization", "parts": [{"text": "Bearer "}, secret_times(90_000)]}
        ]}),
        attack_limits(),
    )
    .await;
    assert!(m.answer.is_ok(), "{:?}", m.answer);
    assert_bounded(&m, &up, &["part", "secret"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_query_value_of_400k_secret_parts_is_refused_quickly() {
    let _g = serial().await;
    let up = Upstream::start().await.unwrap();
    let m = attack(
        &up,
        json!({"action": "raw", "url": up.url("/echo"), "query": [
            {"name": "token", "parts": [secret_times(400_000)]}
        ]}),
        attack_limits(),
    )
    .await;
    assert_bounded(&m, &up, &["part", "secret"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_template_of_400k_secret_parts_is_refused_quickly() {
    let _g = serial().await;
    let up = Upstream::start().await.unwrap();
    let m = attack(
        &up,
        json!({"action": "raw", "method": "POST", "url": up.url("/echo"),
               "body_parts": [{"text": "{\"token\": \""}, secret_times(400_000), {"text": "\"}"}]}),
        attack_limits(),
    )
    .await;
    assert_bounded(&m, &up, &["part", "secret"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_header_of_100k_text_parts_is_refused_quickly() {
    let _g = serial().await;
    let up = Upstream::start().await.unwrap();
    let parts: Vec<Value> = (0..100_000).map(|_| json!({"text": "ab"})).collect();
    let m = attack(
        &up,
        json!({"action": "raw", "url": up.url("/echo"), "headers": [
            {"name": "x-many", "parts": parts}
        ]}),
        attack_limits(),
    )
    .await;
    assert_bounded(&m, &up, &["part", "KiB", "bytes"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_hundred_thousand_headers_are_refused_quickly() {
    let _g = serial().await;
    let up = Upstream::start().await.unwrap();
    let headers: Vec<Value> = (0..100_000)
        .map(|i| json!({"name": format!("x-h{i}"), "parts": [{"text": "v"}]}))
        .collect();
    let m = attack(
        &up,
        json!({"action": "raw", "url": up.url("/echo"), "headers": headers}),
        attack_limits(),
    )
    .await;
    assert_bounded(&m, &up, &["header"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn many_query_parameters_are_refused_quickly() {
    let _g = serial().await;
    let up = Upstream::start().await.unwrap();
    // 100k parameters, half of them carrying the secret. (400k are more than the probe can
    // parse from its JSON input within the deadline; the host never sees them.)
    let query: Vec<Value> = (0..100_000)
        .map(|i| {
            if i % 2 == 0 {
                json!({"name": "q", "parts": [{"text": "v"}]})
            } else {
                json!({"name": "t", "parts": [{"secret": "TOKEN"}]})
            }
        })
        .collect();
    let m = attack(
        &up,
        json!({"action": "raw", "url": up.url("/echo"), "query": query}),
        attack_limits(),
    )
    .await;
    assert_bounded(&m, &up, &["query", "param", "part", "secret"]);
}

/// The deadline bounds the host's own work: a fetch whose preparation would be expensive
/// (the largest layout the per-request limits allow, repeated) returns by the deadline.
#[tokio::test(flavor = "multi_thread")]
async fn the_deadline_bounds_host_side_work() {
    let _g = serial().await;
    let up = Upstream::start().await.unwrap();
    let (s, _, _) = probe_with_token(&up, TOKEN);
    let deadline = Duration::from_millis(500);
    let rt = runtime_with(
        &s,
        Limits {
            deadline,
            max_fetches: 1_000_000,
            ..Limits::default()
        },
    );
    let step = load(&rt, "probe");
    // A slow upstream: the fetch's own timeout is longer than the run's deadline.
    let t = Instant::now();
    let err = run(
        &rt,
        &step,
        json!({"action": "fetch", "url": up.url("/slow?ms=10000"), "timeout_ms": 60000}),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err.error, RunError::Deadline(_)) || err.to_string().contains("time"),
        "{err}"
    );
    assert!(
        t.elapsed() < deadline + Duration::from_secs(1),
        "{:?}",
        t.elapsed()
    );
    // The most the limits allow in one request (64 parts of 8 KiB text around 16 secrets),
    // many times over.
    let text = "x".repeat(120);
    let mut parts = vec![json!({"text": text}); 48];
    parts.push(secret_times(16));
    let t = Instant::now();
    let result = run(
        &rt,
        &step,
        json!({"action": "raw", "url": up.url("/echo"), "repeat": 1_000_000, "headers": [
            {"name": "authorization", "parts": parts}
        ]}),
    )
    .await;
    let elapsed = t.elapsed();
    eprintln!(
        "repeat: {:?} in {elapsed:?}",
        result
            .as_ref()
            .map(|o| o.output.chars().take(200).collect::<String>())
    );
    assert!(elapsed < deadline + Duration::from_secs(1), "{elapsed:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn credential_gets_are_capped_per_run() {
    let up = Upstream::start().await.unwrap();
    let (s, rt, step) = probe_with_token(&up, TOKEN);
    let cap = Limits::default().max_credential_gets;
    let ctx = RunContext::single_step("default", "wf", "alice");
    let t = Instant::now();
    let out = run_as(
        &rt,
        &step,
        &ctx,
        json!({"action": "gets", "key": "TOKEN", "count": 100_000}),
    )
    .await
    .unwrap();
    let elapsed = t.elapsed();
    let v: Value = serde_json::from_str(&out.output).unwrap();
    assert_eq!(v["got"], cap, "{v}");
    assert_eq!(v["error"], "too many credential handles", "{v}");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    // The operator is told which limit it was, once.
    let notes: Vec<_> = out
        .logs
        .iter()
        .filter(|l| l.message.contains("max_credential_gets"))
        .collect();
    assert_eq!(notes.len(), 1, "{:?}", out.logs);
    let (records, _) = audit::read_all(&s.store).unwrap();
    let mine = records.iter().filter(|r| r.run_id == ctx.run_id).count();
    assert!(mine <= cap as usize, "{mine} audit records for one run");
    // A new run starts with a fresh count.
    let v = run_ok(
        &rt,
        &step,
        json!({"action": "gets", "key": "TOKEN", "count": 3}),
    )
    .await;
    assert_eq!(v["got"], 3, "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn log_bytes_are_capped_per_run() {
    let s = TestStore::new();
    let rt = runtime_with(
        &s,
        Limits {
            max_log_bytes: 100,
            ..Limits::default()
        },
    );
    let step = load(&rt, "probe");
    let out = run(
        &rt,
        &step,
        json!({"action": "log", "message": "y".repeat(150)}),
    )
    .await
    .unwrap();
    assert!(
        !out.logs.iter().any(|l| l.message.contains("yyy")),
        "{:?}",
        out.logs
    );
    assert!(
        out.logs
            .iter()
            .any(|l| l.message.contains("1 more log lines dropped")),
        "{:?}",
        out.logs
    );
    let out = run(&rt, &step, json!({"action": "log", "message": "short"}))
        .await
        .unwrap();
    assert_eq!(out.logs.len(), 1, "{:?}", out.logs);
}

#[tokio::test(flavor = "multi_thread")]
async fn control_characters_in_log_lines_are_made_visible() {
    let s = TestStore::new();
    let rt = runtime(&s);
    let step = load(&rt, "probe");
    let out = run(
        &rt,
        &step,
        json!({"action": "log", "message": "\u{1b}[31mred\u{1b}]0;title\u{7}\r\u{9b}2J"}),
    )
    .await
    .unwrap();
    let line = &out.logs[0].message;
    assert!(
        !line.chars().any(|c| c.is_control() && c != '\t'),
        "{line:?}"
    );
    assert!(line.contains("\\u{1b}[31mred"), "{line:?}");
}

/// The memory limit holds with the pooling allocator too (the CLI runs without it; a
/// long-running host may use it): the limiter, not the pool's per-memory size, decides.
#[tokio::test(flavor = "multi_thread")]
async fn memory_limit_holds_with_the_pooling_allocator() {
    use latchkey_host::policy::AddressPolicy;
    use latchkey_host::sandbox::RuntimeConfig;
    let s = TestStore::new();
    let rt = Runtime::new(
        RuntimeConfig {
            limits: Limits {
                memory_bytes: 32 << 20,
                ..Limits::default()
            },
            address_policy: AddressPolicy::loopback(),
            pool_instances: 2,
            ..RuntimeConfig::default()
        },
        s.store.clone(),
    )
    .unwrap();
    assert!(rt.is_pooled(), "the pool could not be reserved here");
    let step = load(&rt, "hog");
    let err = run(&rt, &step, json!({"mib": 200})).await.unwrap_err();
    assert!(err.to_string().contains("memory limit of 32 MiB"), "{err}");
    let v = run_ok(&rt, &step, json!({"mib": 8})).await;
    assert_eq!(v["mib"], 8, "{v}");
}
