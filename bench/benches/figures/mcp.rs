//! Figure `mcp` (issue 23): a tool call through `/mcp` (MCP's Streamable HTTP, one session
//! per client) against the same run through `POST /v1/runs` on the same server, at 1 and 10
//! concurrent clients. Target: an MCP call at most 1.2× the API's median latency.
//!
//! And `run_script` (an agent-written step, `bench/steps/fetch_with_key.ts`) with its build
//! cached, against a tool call of the same source built with `latchkey-build` and
//! registered, both through `/mcp` at one client. Target: at most 1.5×. The first call's
//! build (and load) time is reported beside it.

use super::{CMD, Figure, Samples, ns_to_us, print, read_guest};
use anyhow::{Context, Result};
use latchkey_host::{Principal, Role};
use latchkey_server::{ServeConfig, ServerLimits};
use latchkey_tests::upstream::Upstream;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One MCP session over HTTP, spoken by hand with the same HTTP client as the API calls,
/// so that the figure compares the servers' paths, not two client stacks.
struct Session {
    http: reqwest::Client,
    url: String,
    token: String,
    id: String,
    next: std::sync::atomic::AtomicU64,
}

impl Session {
    async fn open(http: &reqwest::Client, base: &str, token: &str) -> Result<Session> {
        let url = format!("{base}/mcp");
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "bench", "version": "0"}}});
        let r = http
            .post(&url)
            .bearer_auth(token)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(init.to_string())
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "initialize: {}", r.status());
        let id = r
            .headers()
            .get("mcp-session-id")
            .context("no Mcp-Session-Id")?
            .to_str()?
            .to_owned();
        let _ = r.bytes().await?;
        let s = Session {
            http: http.clone(),
            url,
            token: token.to_owned(),
            id,
            next: 1.into(),
        };
        let r = s
            .post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await?;
        anyhow::ensure!(r.status().is_success(), "initialized: {}", r.status());
        Ok(s)
    }

    async fn post(&self, body: Value) -> Result<reqwest::Response> {
        Ok(self
            .http
            .post(&self.url)
            .bearer_auth(&self.token)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &self.id)
            .header("mcp-protocol-version", "2025-06-18")
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await?)
    }

    /// Calls `tool` with `arguments`; the result's JSON-RPC message.
    async fn call(&self, tool: &str, arguments: &Value) -> Result<Value> {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let r = self
            .post(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                "params": {"name": tool, "arguments": arguments}}))
            .await?;
        let text = r.text().await?;
        // An event stream: the answer is the `data:` line of the message with our id.
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .find(|m| m["id"] == id)
            .with_context(|| format!("no answer in {text:?}"))
    }
}

pub async fn figures(quick: bool) -> Result<Vec<Figure>> {
    let up = Upstream::start().await?;
    let input = json!({"action": "fetch", "url": up.url("/status/200"), "key": "BENCH_TOKEN"});
    let dir = tempfile::tempdir()?;
    // The store and admin token the `serve` figures use: the same host configuration.
    let (lk, token) = super::serve::latchkey(dir.path())?;
    let admin = Principal::new("bench", Role::Admin)?;
    lk.register_component(
        &admin,
        &read_guest("probe")?,
        &latchkey_host::ComponentSpec {
            name: Some("probe".into()),
            ..Default::default()
        },
    )?;
    let script_file = latchkey_tests::steps::root().join("bench/steps/fetch_with_key.ts");
    let script = std::fs::read_to_string(&script_file)?;
    lk.register_component(
        &admin,
        &std::fs::read(latchkey_tests::steps::js_file(&script_file))?,
        &latchkey_host::ComponentSpec {
            name: Some("fetch_with_key".into()),
            ..Default::default()
        },
    )?;
    lk.set_script_policy(
        &admin,
        latchkey_host::ScriptPolicy {
            enabled: true,
            max_keys: vec!["BENCH_TOKEN".into()],
        },
    )?;
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let config = ServeConfig {
        listen: "127.0.0.1:0".parse()?,
        tls: None,
        data_dir: dir.path().join("server"),
        limits: ServerLimits {
            requests_per_second: 1_000_000,
            ..ServerLimits::default()
        },
        drain: Duration::from_secs(1),
    };
    tokio::spawn(async move {
        let _ = latchkey_server::serve(Arc::new(lk), config, move |a| {
            let _ = addr_tx.send(a);
        })
        .await;
    });
    let base = format!("http://{}", addr_rx.recv_timeout(Duration::from_secs(30))?);
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(64)
        .build()?;
    let run_body = Arc::new(json!({"component": "probe", "input": input, "wait": true}));
    let total = if quick { 200 } else { 2000 };
    let mut out = Vec::new();
    for n in [1usize, 10] {
        let rounds = (total / n).max(5);
        let mut sessions = Vec::new();
        for _ in 0..n {
            sessions.push(Arc::new(Session::open(&http, &base, &token).await?));
        }
        let (mut api, mut mcp) = (Samples::default(), Samples::default());
        // Interleaved rounds, so that a change of load on the machine hits both alike.
        for _ in 0..rounds {
            let mut tasks = Vec::new();
            for s in &sessions {
                let (http, base, token, body) =
                    (http.clone(), base.clone(), token.clone(), run_body.clone());
                let (s, input) = (s.clone(), input.clone());
                tasks.push(tokio::spawn(async move {
                    let t = Instant::now();
                    let r = http
                        .post(format!("{base}/v1/runs"))
                        .bearer_auth(&token)
                        .header("content-type", "application/json")
                        .body(body.to_string())
                        .send()
                        .await?;
                    let v: Value = serde_json::from_slice(&r.bytes().await?)?;
                    anyhow::ensure!(v["status"] == "succeeded", "{v}");
                    let a = t.elapsed();
                    let t = Instant::now();
                    let m = s.call("probe", &input).await?;
                    anyhow::ensure!(m["result"]["isError"] != true, "{m}");
                    anyhow::Ok((a, t.elapsed()))
                }));
            }
            for t in tasks {
                let (a, m) = t.await??;
                api.push(a);
                mcp.push(m);
            }
        }
        let ratio = mcp.median() / api.median();
        let f = Figure {
            name: format!("mcp_tool_call_{n}_clients_vs_post_v1_runs"),
            median: ns_to_us(mcp.median()),
            p99: ns_to_us(mcp.p99()),
            unit: "us".into(),
            baseline_median: Some(ns_to_us(api.median())),
            ratio: Some(ratio),
            target: "ratio <= 1.2".into(),
            met: Some(ratio <= 1.2),
            command: format!("{CMD} mcp"),
            notes: format!(
                "one injected fetch per call; {} calls each, interleaved; POST /v1/runs p99 {:.0} us",
                mcp.len(),
                ns_to_us(api.p99())
            ),
        };
        print(&f);
        out.push(f);
    }
    out.extend(script_figures(&http, &base, &token, &script, &up, quick).await?);
    up.shutdown().await;
    Ok(out)
}

/// `run_script` with its build cached ÷ the same source registered, and the first build.
async fn script_figures(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    script: &str,
    up: &Upstream,
    quick: bool,
) -> Result<Vec<Figure>> {
    let session = Session::open(http, base, token).await?;
    let input = json!({"url": up.url("/status/200")});
    let as_script = json!({"source": script, "keys": ["BENCH_TOKEN"], "input": input});
    let ok = |m: &Value| -> Result<()> {
        anyhow::ensure!(
            m["result"]["isError"] != true && m["result"]["structuredContent"]["status"] == 200,
            "{m}"
        );
        Ok(())
    };
    let t = Instant::now();
    ok(&session.call("run_script", &as_script).await?)?;
    let first = t.elapsed();
    // The registered component's first call compiles it; not measured.
    ok(&session.call("fetch_with_key", &input).await?)?;
    let rounds = if quick { 50 } else { 500 };
    let (mut registered, mut scripted) = (Samples::default(), Samples::default());
    for _ in 0..rounds {
        let t = Instant::now();
        ok(&session.call("fetch_with_key", &input).await?)?;
        registered.push(t.elapsed());
        let t = Instant::now();
        ok(&session.call("run_script", &as_script).await?)?;
        scripted.push(t.elapsed());
    }
    let ratio = scripted.median() / registered.median();
    let cached = Figure {
        name: "run_script_cached_vs_registered_component".into(),
        median: ns_to_us(scripted.median()),
        p99: ns_to_us(scripted.p99()),
        unit: "us".into(),
        baseline_median: Some(ns_to_us(registered.median())),
        ratio: Some(ratio),
        target: "ratio <= 1.5".into(),
        met: Some(ratio <= 1.5),
        command: format!("{CMD} mcp"),
        notes: format!(
            "bench/steps/fetch_with_key.ts through /mcp at one client, {} calls each, interleaved; the baseline is the same file built with latchkey-build and registered",
            scripted.len()
        ),
    };
    print(&cached);
    let first_build = Figure {
        name: "run_script_first_call_with_build".into(),
        median: first.as_secs_f64() * 1e3,
        p99: first.as_secs_f64() * 1e3,
        unit: "ms".into(),
        baseline_median: None,
        ratio: None,
        target: "reported".into(),
        met: None,
        command: format!("{CMD} mcp"),
        notes: "one call: latchkey-build --only-sdk (esbuild, componentize-js), compiling the 12 MB component, the run".into(),
    };
    print(&first_build);
    Ok(vec![cached, first_build])
}
