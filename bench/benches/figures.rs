//! Latchkey's benchmark figures (issue 5), each against a baseline measured in the same run.
//!
//! ```sh
//! cargo build --release -p latchkey            # figures cli and node spawn the binary
//! cargo bench -p latchkey-bench -- [FIGURE...] [--json bench/results.json] [--quick]
//! ```
//! Figures: `overhead`, `fetch`, `resolve`, `cli`, `node`, `concurrency`, `pool`,
//! `compile`, `serve`, `liveness`, `shared`, `shared-fetch`, `oauth`, `mcp`. Without names, all run. See bench/RESULTS.md for what each one compares.
#![allow(clippy::unwrap_used)]

use anyhow::{Context, Result, bail};
use latchkey_bench::{Figure, Samples, children_max_rss_kib, rss_kib};
use latchkey_host::cache::{CacheKey, ComponentCache};
use latchkey_host::policy::AddressPolicy;
use latchkey_host::resolve::{RunContext, resolve_and_decrypt_for_bench};
use latchkey_host::sandbox::{Limits, Runtime, RuntimeConfig, Step};
use latchkey_host::secret::CredentialKey;
use latchkey_host::store::{Backend, BackendError, MasterKey, Scope, SecretSpec, SecretStore};
use latchkey_tests::upstream::Upstream;
use latchkey_tests::{TestStore, guest, workspace};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

#[path = "figures/mcp.rs"]
mod mcp;
#[path = "figures/oauth.rs"]
mod oauth;
#[path = "figures/serve.rs"]
mod serve;
#[path = "figures/shared.rs"]
mod shared;

/// Pool size for the in-process figures: enough for figure 6's 1000 concurrent runs.
pub(crate) const POOL: u32 = 1100;
pub(crate) const TOKEN: &str = "bench-token-0123456789abcdef";
pub(crate) const CMD: &str = "cargo build --release --workspace --bins --benches && cargo bench --workspace --bench figures --";

struct Opts {
    only: Vec<String>,
    json: Option<PathBuf>,
    quick: bool,
}

fn opts() -> Result<Opts> {
    let mut o = Opts {
        only: Vec::new(),
        json: None,
        quick: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--bench" => {}
            "--quick" => o.quick = true,
            "--json" => o.json = Some(args.next().context("--json needs a path")?.into()),
            name if !name.starts_with('-') => o.only.push(name.to_owned()),
            other => bail!("unknown option {other}"),
        }
    }
    Ok(o)
}

pub(crate) fn ns_to_us(ns: f64) -> f64 {
    (ns / 10.0).round() / 100.0
}

pub(crate) fn print(f: &Figure) {
    let ratio = f.ratio.map_or("-".into(), |r| format!("{r:.3}"));
    let base = f.baseline_median.map_or("-".into(), |b| format!("{b:.2}"));
    println!(
        "{:<48} median {:>10.2} p99 {:>10.2} {:<5} baseline {:>10} ratio {:>7}  target {} met={:?}\n    {}",
        f.name, f.median, f.p99, f.unit, base, ratio, f.target, f.met, f.notes
    );
}

fn main() -> Result<()> {
    let o = opts()?;
    raise_nofile();
    // The baselines build their own reqwest clients (the library installs ring for its own
    // lazily, at its first fetch).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let want = |n: &str| o.only.is_empty() || o.only.iter().any(|x| x == n);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "machine: nproc {}, CPU {cpu}; loadavg at start {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load.trim()
    );
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut figures = Vec::new();
    let scale = if o.quick { 10 } else { 1 };
    if want("compile") {
        figures.extend(compile()?);
    }
    if want("overhead") {
        figures.extend(tokio.block_on(overhead(20_000 / scale))?);
    }
    if want("pool") {
        figures.extend(tokio.block_on(pool(400 / scale))?);
    }
    if want("fetch") {
        figures.extend(tokio.block_on(fetch(5_000 / scale))?);
    }
    if want("resolve") {
        figures.extend(resolve(20_000 / scale, o.quick)?);
    }
    if want("cli") || want("node") {
        figures.extend(processes(
            &tokio,
            40 / scale.min(4),
            want("cli"),
            want("node"),
        )?);
    }
    if want("concurrency") {
        figures.extend(tokio.block_on(concurrency(o.quick))?);
    }
    if want("profile-injected") || want("profile-keyless") {
        // Not a figure: one variant alone, for `perf record` (see RESULTS.md).
        tokio.block_on(profile_one(want("profile-injected"), 20_000 / scale))?;
    }
    if want("throughput") {
        figures.extend(tokio.block_on(throughput_100(o.quick))?);
    }
    if want("languages") {
        figures.extend(tokio.block_on(languages(400 / scale))?);
    }
    if want("shared") {
        figures.extend(shared::figures(2_000 / scale, o.quick)?);
    }
    if want("shared-fetch") {
        figures.extend(tokio.block_on(shared::fetch_figures(5_000 / scale))?);
    }
    if want("oauth") {
        figures.extend(tokio.block_on(oauth::figures(2_000 / scale))?);
    }
    if o.only.iter().any(|x| x == "profile-serve") {
        // Not a figure: waited runs over HTTP alone, for `perf record` (see RESULTS.md).
        serve::profile(&tokio, 20_000 / scale)?;
    }
    if want("serve") {
        figures.extend(serve::figures(&tokio, o.quick)?);
    }
    if want("liveness") {
        figures.extend(serve::liveness(&tokio, o.quick)?);
    }
    if want("mcp") {
        figures.extend(tokio.block_on(mcp::figures(o.quick))?);
    }
    println!(
        "loadavg at end {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    if let Some(path) = o.json {
        std::fs::write(&path, serde_json::to_string_pretty(&figures)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Figure 6 opens two sockets per concurrent fetch in this one process.
fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    #[allow(unsafe_code)]
    // SAFETY: `lim` is a valid rlimit; getrlimit/setrlimit only read and write it.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

pub(crate) fn runtime(store: &TestStore, pool: u32) -> Result<Runtime> {
    runtime_with(store, pool, latchkey_host::sandbox::Durability::default())
}

fn runtime_with(
    store: &TestStore,
    pool: u32,
    durability: latchkey_host::sandbox::Durability,
) -> Result<Runtime> {
    Ok(Runtime::new(
        RuntimeConfig {
            limits: Limits::default(),
            address_policy: AddressPolicy::loopback(),
            pool_instances: pool,
            durability,
        },
        store.store.clone(),
    )?)
}

pub(crate) fn read_guest(name: &str) -> Result<Vec<u8>> {
    Ok(std::fs::read(guest(name))?)
}

/// Compile time and cached load time of the guests (no target in issue 5; context for the
/// cache and the dev profile).
fn compile() -> Result<Vec<Figure>> {
    let ts = TestStore::new();
    let rt = runtime(&ts, 0)?;
    let mut out = Vec::new();
    for name in ["noop", "probe"] {
        let bytes = read_guest(name)?;
        let (mut compiled, mut cached) = (Samples::default(), Samples::default());
        let dir = tempfile::tempdir()?;
        let cache = ComponentCache::new(dir.path(), rt.engine(), CacheKey::of(&ts.store));
        cache.load(rt.engine(), &bytes)?;
        for _ in 0..10 {
            let t = Instant::now();
            std::hint::black_box(Component::new(rt.engine(), &bytes)?);
            compiled.push(t.elapsed());
            let t = Instant::now();
            std::hint::black_box(rt.load_cached(&bytes, &cache)?);
            cached.push(t.elapsed());
        }
        let f = Figure {
            name: format!("load_cached_vs_compile_{name}"),
            median: cached.median() / 1e6,
            p99: cached.p99() / 1e6,
            unit: "ms".into(),
            baseline_median: Some(compiled.median() / 1e6),
            ratio: Some(cached.median() / compiled.median()),
            target: "none (context: compile once)".into(),
            met: None,
            command: format!("{CMD} compile"),
            notes: format!(
                "{} KiB component; Runtime::load_cached (sha256 + checksum + deserialize + import check + InstancePre) vs Component::new; 10 samples",
                bytes.len() / 1024
            ),
        };
        print(&f);
        out.push(f);
    }
    Ok(out)
}

/// State of the bare-wasmtime baseline: WASI with nothing granted, and a table.
struct Bare {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for Bare {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

struct BareStep {
    engine: Engine,
    pre: wasmtime::component::InstancePre<Bare>,
    run: wasmtime::component::ComponentExportIndex,
}

impl BareStep {
    fn new(engine: &Engine, bytes: &[u8]) -> Result<Self> {
        let component = Component::new(engine, bytes)?;
        let mut linker: Linker<Bare> = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        linker.define_unknown_imports_as_traps(&component)?;
        let pre = linker.instantiate_pre(&component)?;
        let run = component
            .get_export_index(None, "run")
            .context("no export run")?;
        Ok(BareStep {
            engine: engine.clone(),
            pre,
            run,
        })
    }

    async fn run(&self, input: &str) -> Result<String> {
        let mut store = Store::new(
            &self.engine,
            Bare {
                wasi: WasiCtx::builder().build(),
                table: ResourceTable::new(),
            },
        );
        // The engine has epoch interruption on (same configuration as Latchkey's).
        store.set_epoch_deadline(3000);
        let instance = self.pre.instantiate_async(&mut store).await?;
        let f =
            instance.get_typed_func::<(&str,), (Result<String, String>,)>(&mut store, &self.run)?;
        let (r,) = f.call_async(&mut store, (input,)).await?;
        r.map_err(|e| anyhow::anyhow!(e))
    }
}

/// Figure 1: fresh instance + run + drop of the noop guest, Latchkey vs bare wasmtime on
/// the same engine (same Config, pooling), both through an InstancePre.
async fn overhead(iters: usize) -> Result<Vec<Figure>> {
    let ts = TestStore::new();
    let mut out = Vec::new();
    for pool in [POOL, 0] {
        let rt = runtime(&ts, pool)?;
        let bytes = read_guest("noop")?;
        let step = rt.load(&bytes)?;
        let bare = BareStep::new(rt.engine(), &bytes)?;
        let ctx = RunContext::single_step("default", "noop", "alice");
        let (mut ours, mut base) = (Samples::default(), Samples::default());
        // Warm both, then alternate batches so drift hits both alike.
        for _ in 0..200 {
            rt.run(&step, &ctx, "{}")
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            bare.run("{}").await?;
        }
        for _ in 0..20 {
            for _ in 0..iters / 20 {
                let t = Instant::now();
                let o = rt
                    .run(&step, &ctx, "{}")
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                ours.push(t.elapsed());
                std::hint::black_box(o);
            }
            for _ in 0..iters / 20 {
                let t = Instant::now();
                std::hint::black_box(bare.run("{}").await?);
                base.push(t.elapsed());
            }
        }
        let ratio = ours.median() / base.median();
        let f = Figure {
            name: format!(
                "step_overhead_{}",
                if rt.is_pooled() {
                    "pooled"
                } else {
                    "on_demand"
                }
            ),
            median: ns_to_us(ours.median()),
            p99: ns_to_us(ours.p99()),
            unit: "us".into(),
            baseline_median: Some(ns_to_us(base.median())),
            ratio: Some(ratio),
            target: "ratio <= 1.2".into(),
            met: Some(ratio <= 1.2),
            command: format!("{CMD} overhead"),
            notes: format!(
                "noop guest; {} samples each; baseline p99 {:.2} us; pool {}",
                ours.len(),
                ns_to_us(base.p99()),
                if rt.is_pooled() { POOL } else { 0 }
            ),
        };
        print(&f);
        out.push(f);
    }
    Ok(out)
}

/// Pooling for `latchkey run`: Runtime::new + load (cached) + one run, pooled vs not, as
/// one process would do them.
async fn pool(iters: usize) -> Result<Vec<Figure>> {
    let ts = TestStore::new();
    let bytes = read_guest("noop")?;
    let dir = tempfile::tempdir()?;
    let ctx = RunContext::single_step("default", "noop", "alice");
    let mut out = Vec::new();
    let mut on_demand = Samples::default();
    let mut results = Vec::new();
    for pool in [0u32, 1, 16, POOL] {
        let mut s = Samples::default();
        for i in 0..iters + 5 {
            let t = Instant::now();
            let rt = runtime(&ts, pool)?;
            let cache = ComponentCache::new(dir.path(), rt.engine(), CacheKey::of(&ts.store));
            let (step, _) = rt.load_cached(&bytes, &cache)?;
            rt.run(&step, &ctx, "{}")
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            drop(step);
            drop(rt);
            if i >= 5 {
                s.push(t.elapsed());
            }
        }
        if pool == 0 {
            on_demand = s.clone();
        }
        results.push((pool, s));
    }
    for (pool, mut s) in results.into_iter().skip(1) {
        let f = Figure {
            name: format!("runtime_start_load_run_pool_{pool}_vs_on_demand"),
            median: ns_to_us(s.median()),
            p99: ns_to_us(s.p99()),
            unit: "us".into(),
            baseline_median: Some(ns_to_us(on_demand.median())),
            ratio: Some(s.median() / on_demand.median()),
            target: "none (decides latchkey run's pool size)".into(),
            met: None,
            command: format!("{CMD} pool"),
            notes: format!(
                "Runtime::new + load_cached + one noop run + drop; on-demand p99 {:.1} us",
                ns_to_us(on_demand.p99())
            ),
        };
        print(&f);
        out.push(f);
    }
    Ok(out)
}

pub(crate) fn fetch_input(up: &Upstream) -> String {
    serde_json::json!({
        "action": "fetch",
        "url": up.url("/status/200"),
        "key": "BENCH_TOKEN",
    })
    .to_string()
}

fn bench_store() -> TestStore {
    let ts = TestStore::new();
    ts.put(
        &workspace(),
        "BENCH_TOKEN",
        TOKEN,
        &["127.0.0.1:*"],
        &["header:authorization"],
    );
    ts
}

/// Figure 2: one step that makes one injected fetch (whole run: instance, resolve,
/// decrypt, inject, record, send, scrub) against the same step fetching without a key, and
/// that keyless step against plain reqwest sending the same request from the host plus a
/// bare instance of the guest; under both durabilities. Every variant is sampled in
/// alternating blocks, so that load on the shared machine falls on all of them alike.
async fn fetch(iters: usize) -> Result<Vec<Figure>> {
    use latchkey_host::sandbox::Durability;
    let up = Upstream::start().await?;
    let ts = bench_store();
    let grouped = runtime(&ts, POOL)?;
    let strict = runtime_with(&ts, POOL, Durability::Strict)?;
    let step = grouped.load(&read_guest("probe")?)?;
    let strict_step = strict.load(&read_guest("probe")?)?;
    let ctx = RunContext::single_step("default", "fetch", "alice");
    let injected = fetch_input(&up);
    let url = up.url("/status/200");
    let keyless = serde_json::json!({"action": "fetch", "url": url}).to_string();
    let echo = serde_json::json!({"action": "echo"}).to_string();
    let client = reqwest::Client::builder().no_proxy().build()?;
    let plain = || async {
        let r = client
            .get(&url)
            .header("authorization", format!("Bearer {TOKEN}"))
            .send()
            .await?;
        let status = r.status();
        let body = r.bytes().await?;
        anyhow::Ok((status, body))
    };
    let ctx = &ctx;
    let run = |rt: &'static str, input: &str| {
        let (rt, step) = if rt == "strict" {
            (&strict, &strict_step)
        } else {
            (&grouped, &step)
        };
        let input = input.to_owned();
        async move {
            rt.run(step, ctx, &input)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))
        }
    };
    let first = run("grouped", &injected).await?;
    if !first.output.contains("\"status\":200") {
        bail!("the fetch step did not get a 200: {}", first.output);
    }
    // Names of the variants, in the order each block runs them.
    const VARIANTS: [&str; 5] = ["injected", "keyless", "plain", "bare", "strict"];
    let mut samples: Vec<Samples> = VARIANTS.iter().map(|_| Samples::default()).collect();
    for round in 0..25 {
        up.clear();
        for (v, name) in VARIANTS.iter().enumerate() {
            for _ in 0..(iters / 20).max(10) {
                let t = Instant::now();
                match *name {
                    "injected" => drop(std::hint::black_box(run("grouped", &injected).await?)),
                    "keyless" => drop(std::hint::black_box(run("grouped", &keyless).await?)),
                    "plain" => drop(std::hint::black_box(plain().await?)),
                    "bare" => drop(std::hint::black_box(run("grouped", &echo).await?)),
                    _ => drop(std::hint::black_box(run("strict", &injected).await?)),
                }
                // The first 5 rounds warm pools, connections and the allocator.
                if round >= 5 {
                    samples[v].push(t.elapsed());
                }
            }
        }
    }
    let [inj, key, pl, bare, st] = &mut samples[..] else {
        unreachable!("five variants")
    };
    let baseline = pl.median() + bare.median();
    let notes = format!(
        "probe guest, one GET to loopback /status/200 with an injected bearer (or none); whole runs including a fresh instance, sampled in alternating blocks; medians: injected {:.1} us (p99 {:.1}), keyless {:.1} us (p99 {:.1}), plain reqwest {:.1} us, bare instance (probe echo) {:.1} us, injected with strict durability {:.1} us (p99 {:.1}); {} samples each",
        ns_to_us(inj.median()),
        ns_to_us(inj.p99()),
        ns_to_us(key.median()),
        ns_to_us(key.p99()),
        ns_to_us(pl.median()),
        ns_to_us(bare.median()),
        ns_to_us(st.median()),
        ns_to_us(st.p99()),
        inj.len(),
    );
    let figures = vec![
        Figure {
            name: "injected_fetch_step_vs_keyless_fetch_step".into(),
            median: ns_to_us(inj.median()),
            p99: ns_to_us(inj.p99()),
            unit: "us".into(),
            baseline_median: Some(ns_to_us(key.median())),
            ratio: Some(inj.median() / key.median()),
            target: "ratio <= 1.15".into(),
            met: Some(inj.median() / key.median() <= 1.15),
            command: format!("{CMD} fetch"),
            notes: notes.clone(),
        },
        Figure {
            name: "keyless_fetch_step_vs_plain_reqwest_plus_bare_instance".into(),
            median: ns_to_us(key.median()),
            p99: ns_to_us(key.p99()),
            unit: "us".into(),
            baseline_median: Some(ns_to_us(baseline)),
            ratio: Some(key.median() / baseline),
            target: "ratio <= 1.2".into(),
            met: Some(key.median() / baseline <= 1.2),
            command: format!("{CMD} fetch"),
            notes: notes.clone(),
        },
        Figure {
            name: "strict_durability_injected_fetch_vs_grouped".into(),
            median: ns_to_us(st.median()),
            p99: ns_to_us(st.p99()),
            unit: "us".into(),
            baseline_median: Some(ns_to_us(inj.median())),
            ratio: Some(st.median() / inj.median()),
            target: "report".into(),
            met: None,
            command: format!("{CMD} fetch"),
            notes,
        },
    ];
    for f in &figures {
        print(f);
    }
    up.shutdown().await;
    Ok(figures)
}

/// A sled backend that does not flush on every put, only to fill the store quickly. The
/// measurements reopen the store through the real [`latchkey_host::store::SledBackend`].
struct BulkSled(sled::Db);

impl Backend for BulkSled {
    fn get(&self, ns: &str, id: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        let t = self
            .0
            .open_tree(ns)
            .map_err(|e| BackendError::Io(std::io::Error::other(e)))?;
        Ok(t.get(id)
            .map_err(|e| BackendError::Io(std::io::Error::other(e)))?
            .map(|v| v.to_vec()))
    }
    fn put(&self, ns: &str, id: &[u8], value: &[u8]) -> Result<(), BackendError> {
        let t = self
            .0
            .open_tree(ns)
            .map_err(|e| BackendError::Io(std::io::Error::other(e)))?;
        t.insert(id, value)
            .map_err(|e| BackendError::Io(std::io::Error::other(e)))?;
        Ok(())
    }
    fn delete(&self, _: &str, _: &[u8]) -> Result<bool, BackendError> {
        unreachable!("not used while filling")
    }
    // The audit chain's genesis reads the records stored before it (none here).
    fn scan(&self, ns: &str, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>, BackendError> {
        let io = |e| BackendError::Io(std::io::Error::other(e));
        self.0
            .open_tree(ns)
            .map_err(io)?
            .scan_prefix(prefix)
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(io))
            .collect()
    }
    // Every `set` appends its audit record, chained to the newest one.
    fn append(&self, ns: &str, value: &[u8]) -> Result<u64, BackendError> {
        let io = |e| BackendError::Io(std::io::Error::other(e));
        let id = self.0.generate_id().map_err(io)?;
        self.0
            .open_tree(ns)
            .map_err(io)?
            .insert(id.to_be_bytes(), value)
            .map_err(io)?;
        Ok(id)
    }
    fn last(&self, ns: &str) -> Result<Option<(Vec<u8>, Vec<u8>)>, BackendError> {
        let io = |e| BackendError::Io(std::io::Error::other(e));
        Ok(self
            .0
            .open_tree(ns)
            .map_err(io)?
            .last()
            .map_err(io)?
            .map(|(k, v)| (k.to_vec(), v.to_vec())))
    }
    fn flush(&self) -> Result<(), BackendError> {
        self.0
            .flush()
            .map_err(|e| BackendError::Io(std::io::Error::other(e)))?;
        Ok(())
    }
}

/// Figure 3: resolve + decrypt of one key (the path injection takes) in stores of 10, 10k
/// and 100k secrets. The key is workspace-scoped, so resolution misses three tiers first
/// (user-workflow, user, workflow), as it would in the default order.
fn resolve(iters: usize, quick: bool) -> Result<Vec<Figure>> {
    let sizes: &[usize] = if quick {
        &[10, 10_000]
    } else {
        &[10, 10_000, 100_000]
    };
    let mut raw = Vec::new();
    for &n in sizes {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("store");
        let master = MasterKey::generate()?;
        let t = Instant::now();
        filled_sled(&path, &master, n)?;
        let fill = t.elapsed();
        let store = SecretStore::open(&path, &master)?;
        let ctx = RunContext::single_step("default", "wf", "alice");
        let mut per_key = Vec::new();
        for k in ["TARGET_KEY", "USER_KEY"] {
            let key = CredentialKey::new(k)?;
            for _ in 0..1000 {
                resolve_and_decrypt_for_bench(&store, &ctx, &key)?;
            }
            let mut s = Samples::default();
            for _ in 0..iters {
                let t = Instant::now();
                std::hint::black_box(resolve_and_decrypt_for_bench(&store, &ctx, &key)?);
                s.push(t.elapsed());
            }
            per_key.push((k, s));
        }
        raw.push((n, per_key, fill));
    }
    let base: Vec<f64> = raw[0].1.iter().map(|(_, s)| s.clone().median()).collect();
    let mut out = Vec::new();
    for (n, per_key, fill) in raw {
        for (i, (k, mut s)) in per_key.into_iter().enumerate() {
            let tier = if k == "TARGET_KEY" {
                "workspace_tier_4"
            } else {
                "user_workflow_tier_1"
            };
            let med = ns_to_us(s.median());
            let f = Figure {
                name: format!("resolve_decrypt_{tier}_{n}_secrets"),
                median: med,
                p99: ns_to_us(s.p99()),
                unit: "us".into(),
                baseline_median: Some(ns_to_us(base[i])),
                ratio: Some(s.median() / base[i]),
                target: "p50 <= 3 us at every size (baseline: the 10-secret store)".into(),
                met: Some(med <= 3.0),
                command: format!("{CMD} resolve"),
                notes: format!(
                    "sled store reopened through SecretStore::open; {} samples; filled in {:.1} s",
                    s.len(),
                    fill.as_secs_f64()
                ),
            };
            print(&f);
            out.push(f);
        }
    }
    Ok(out)
}

/// A sled store at `path` with `n` secrets spread over every tier's scopes, plus
/// `TARGET_KEY` (workspace) and `USER_KEY` (user-workflow, user alice, workflow wf).
pub(crate) fn filled_sled(path: &Path, master: &MasterKey, n: usize) -> Result<()> {
    let spec = || {
        let binding = latchkey_host::policy::Binding::new(
            vec![latchkey_host::policy::HostPattern::parse("api.example.com").unwrap()],
            vec![latchkey_host::policy::InjectLocation::parse("header:authorization").unwrap()],
            false,
        )
        .unwrap();
        SecretSpec {
            integration: "http".into(),
            binding,
            allow_weak_value: true,
            quota: Default::default(),
            kind: Default::default(),
            oauth: None,
        }
    };
    let db = sled::Config::new()
        .path(path)
        .mode(sled::Mode::LowSpace)
        .open()?;
    let store = SecretStore::init_with(Box::new(BulkSled(db)), "bulk", master)?;
    // Spread over workspaces, users and workflows so every tier's scope is populated.
    for i in 0..n {
        let scope = match i % 4 {
            0 => Scope::Workspace {
                workspace: format!("ws{}", i % 97),
            },
            1 => Scope::User {
                user: format!("user{}", i % 89),
            },
            2 => Scope::Workflow {
                workspace: "default".into(),
                workflow: format!("wf{}", i % 83),
            },
            _ => workspace(),
        };
        let key = CredentialKey::new(&format!("KEY_{i}"))?;
        let value = latchkey_host::secret::SecretValue::new(
            format!("value-{i}-{}", "x".repeat(32)).into_bytes(),
        )?;
        store.set(&scope, &key, value, spec(), "bench")?;
    }
    let key = CredentialKey::new("TARGET_KEY")?;
    let value = latchkey_host::secret::SecretValue::new(b"target-value-0123456789".to_vec())?;
    store.set(&workspace(), &key, value, spec(), "bench")?;
    let user_key = CredentialKey::new("USER_KEY")?;
    let value = latchkey_host::secret::SecretValue::new(b"user-value-0123".to_vec())?;
    store.set(
        &Scope::UserWorkflow {
            user: "alice".into(),
            workspace: "default".into(),
            workflow: "wf".into(),
        },
        &user_key,
        value,
        spec(),
        "bench",
    )?;
    std::hint::black_box(&store);
    drop(store);
    Ok(())
}

pub(crate) fn latchkey_bin() -> Result<PathBuf> {
    release_bin("latchkey")
}

/// The thin client binary, `latchkey-client`.
pub(crate) fn latchkey_client_bin() -> Result<PathBuf> {
    release_bin("latchkey-client")
}

fn release_bin(name: &str) -> Result<PathBuf> {
    // <target>/release/deps/figures-… → <target>/release/<name>
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .context("target dir")?
        .join(name);
    if !bin.exists() {
        bail!(
            "{} not found: run `cargo build --release -p latchkey` first",
            bin.display()
        );
    }
    Ok(bin)
}

pub(crate) fn time_process(cmd: &mut Command, expect: &str) -> Result<Duration> {
    let t = Instant::now();
    let out = cmd.stdin(Stdio::null()).output()?;
    let d = t.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !stdout.contains(expect) {
        bail!(
            "{:?} failed: {}\n{}\n{}",
            cmd,
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(d)
}

/// Figures 4 and 5: whole processes. `latchkey run` of a cached component (cold process:
/// open the store, engine, load from cache, run, exit), `wasmtime run` when it is
/// installed, and a freshly spawned `node` doing the same request with the key in its
/// environment.
fn processes(
    tokio: &tokio::runtime::Runtime,
    iters: usize,
    cli: bool,
    node: bool,
) -> Result<Vec<Figure>> {
    let bin = latchkey_bin()?;
    let up = tokio.block_on(Upstream::start())?;
    let dir = tempfile::tempdir()?;
    let env = |c: &mut Command| {
        c.env("LATCHKEY_STORE", dir.path().join("store"))
            .env("LATCHKEY_MASTER_KEY_FILE", dir.path().join("master.key"))
            .env("LATCHKEY_CACHE_DIR", dir.path().join("cache"))
            .env_remove("LATCHKEY_MASTER_KEY")
            .env("USER", "bench");
    };
    let mut init = Command::new(&bin);
    init.arg("init");
    env(&mut init);
    if !init.output()?.status.success() {
        bail!("latchkey init failed");
    }
    let mut set = Command::new(&bin);
    set.args([
        "secret",
        "set",
        "BENCH_TOKEN",
        "--allow-host",
        "127.0.0.1:*",
        "--inject",
        "header:Authorization",
        "--allow-http",
    ])
    .stdin(Stdio::piped());
    env(&mut set);
    let mut child = set.spawn()?;
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(TOKEN.as_bytes())?;
    }
    if !child.wait()?.success() {
        bail!("latchkey secret set failed");
    }
    let noop = guest("noop");
    let probe = guest("probe");
    let mut compile = Command::new(&bin);
    compile.arg("compile").arg(&noop).arg(&probe);
    env(&mut compile);
    if !compile.output()?.status.success() {
        bail!("latchkey compile failed");
    }
    let run_noop = || {
        let mut c = Command::new(&bin);
        c.arg("run").arg(&noop).args(["--input", "{\"a\":1}"]);
        env(&mut c);
        c
    };
    let input = fetch_input(&up);
    let run_fetch = || {
        let mut c = Command::new(&bin);
        c.arg("run")
            .arg(&probe)
            .args(["--input", &input, "--allow-private-network"]);
        env(&mut c);
        c
    };
    let mut out = Vec::new();
    let (mut noop_cached, mut noop_uncached, mut fetch_cached) =
        (Samples::default(), Samples::default(), Samples::default());
    for i in 0..iters + 3 {
        let a = time_process(&mut run_noop(), "{\"a\":1}")?;
        let b = time_process(run_noop().arg("--no-cache"), "{\"a\":1}")?;
        let c = time_process(&mut run_fetch(), "\"status\":200")?;
        if i >= 3 {
            noop_cached.push(a);
            noop_uncached.push(b);
            fetch_cached.push(c);
        }
    }
    let latchkey_peak = children_max_rss_kib();
    if cli {
        let wasmtime = Command::new("wasmtime").arg("--version").output();
        let (baseline, met, note) = match wasmtime {
            Ok(o) if o.status.success() => {
                let mut s = Samples::default();
                for i in 0..iters + 3 {
                    let mut c = Command::new("wasmtime");
                    // The noop guest imports latchkey:workflow/log (the SDK's panic hook) but never
                    // calls it: wasmtime links a trapping stub so it can instantiate.
                    c.args(["run", "-S", "cli", "-W", "unknown-imports-trap=y", "--invoke", "run(\"{\\\"a\\\":1}\")"])
                        .arg(&noop);
                    let d = time_process(&mut c, "a")?;
                    if i >= 3 {
                        s.push(d);
                    }
                }
                let b = s.median() / 1e6;
                (
                    Some(b),
                    Some(noop_cached.median() / 1e6 <= b),
                    format!("wasmtime {}", String::from_utf8_lossy(&o.stdout).trim()),
                )
            }
            _ => (
                None,
                None,
                "NOT MEASURED: wasmtime-cli 48.0.8 is not installed on this machine (`cargo install wasmtime-cli@48.0.8 --locked`, ~20 min on 2 cores)".to_owned(),
            ),
        };
        let f = Figure {
            name: "cli_cold_start_cached_noop_vs_wasmtime_run".into(),
            median: noop_cached.median() / 1e6,
            p99: noop_cached.p99() / 1e6,
            unit: "ms".into(),
            baseline_median: baseline,
            ratio: baseline.map(|b| noop_cached.median() / 1e6 / b),
            target: "ratio <= 1.0".into(),
            met,
            command: format!("{CMD} cli"),
            notes: format!(
                "{note}; latchkey run --no-cache (compiles) median {:.1} ms p99 {:.1} ms; {} samples",
                noop_uncached.median() / 1e6,
                noop_uncached.p99() / 1e6,
                noop_cached.len()
            ),
        };
        print(&f);
        out.push(f);
    }
    if node {
        let script = format!(
            "fetch({:?}, {{headers: {{authorization: 'Bearer ' + process.env.BENCH_TOKEN}}}}).then(async r => {{ const body = await r.text(); console.log(JSON.stringify({{status: r.status, body}})); }})",
            up.url("/status/200")
        );
        let mut node_s = Samples::default();
        for i in 0..iters + 3 {
            let mut c = Command::new("node");
            c.args(["-e", &script]).env("BENCH_TOKEN", TOKEN);
            let d = time_process(&mut c, "\"status\":200")?;
            if i >= 3 {
                node_s.push(d);
            }
        }
        let ratio = node_s.median() / fetch_cached.median();
        let f = Figure {
            name: "node_process_vs_latchkey_process_one_fetch".into(),
            median: node_s.median() / 1e6,
            p99: node_s.p99() / 1e6,
            unit: "ms".into(),
            baseline_median: Some(fetch_cached.median() / 1e6),
            ratio: Some(ratio),
            target: "ratio >= 50 (node is the subject, latchkey the baseline)".into(),
            met: Some(ratio >= 50.0),
            command: format!("{CMD} node"),
            notes: format!(
                "node {} spawned per request with the key in its env vs `latchkey run probe.wasm` (cached) as a process; latchkey process p99 {:.1} ms; peak RSS of any child {} KiB; {} samples. In-process runs: see injected_fetch_step_vs_plain_reqwest and node_process_vs_latchkey_in_process",
                Command::new("node")
                    .arg("--version")
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                    .unwrap_or_default(),
                fetch_cached.p99() / 1e6,
                latchkey_peak,
                node_s.len()
            ),
        };
        print(&f);
        out.push(f);
        // The same step in a long-lived Latchkey process (how a workflow engine embeds it).
        let ts = bench_store();
        let in_process = tokio.block_on(async {
            let rt = runtime(&ts, POOL)?;
            let step = rt.load(&read_guest("probe")?)?;
            let ctx = RunContext::single_step("default", "fetch", "alice");
            let mut s = Samples::default();
            for i in 0..1100 {
                let t = Instant::now();
                rt.run(&step, &ctx, &input)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                if i >= 100 {
                    s.push(t.elapsed());
                }
            }
            anyhow::Ok(s)
        })?;
        let mut in_process = in_process;
        let ratio = node_s.median() / in_process.median();
        let f = Figure {
            name: "node_process_vs_latchkey_in_process".into(),
            median: node_s.median() / 1e6,
            p99: node_s.p99() / 1e6,
            unit: "ms".into(),
            baseline_median: Some(in_process.median() / 1e6),
            ratio: Some(ratio),
            target: "ratio >= 50 (node is the subject, latchkey the baseline)".into(),
            met: Some(ratio >= 50.0),
            command: format!("{CMD} node"),
            notes: format!(
                "same request; latchkey as a library in a running host (fresh instance per run), p99 {:.3} ms",
                in_process.p99() / 1e6
            ),
        };
        print(&f);
        out.push(f);
    }
    tokio.block_on(up.shutdown());
    Ok(out)
}

/// Runs only the injected (or only the keyless) fetch step, `iters` times, so that a
/// profiler sees one variant: `perf record -g target/release/deps/figures-* profile-injected`.
async fn profile_one(injected: bool, iters: usize) -> Result<()> {
    let up = Upstream::start().await?;
    let ts = bench_store();
    let rt = runtime(&ts, POOL)?;
    let step = rt.load(&read_guest("probe")?)?;
    let ctx = RunContext::single_step("default", "fetch", "alice");
    let input = if injected {
        fetch_input(&up)
    } else {
        serde_json::json!({"action": "fetch", "url": up.url("/status/200")}).to_string()
    };
    let t = Instant::now();
    for i in 0..iters {
        rt.run(&step, &ctx, &input)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if i % 1000 == 999 {
            up.clear();
        }
    }
    println!(
        "{} fetch runs: {iters} in {:.2} s",
        if injected { "injected" } else { "keyless" },
        t.elapsed().as_secs_f64()
    );
    up.shutdown().await;
    Ok(())
}

/// Issue 13: injected-fetch runs/s ÷ keyless runs/s at 100 concurrent runs, in alternating
/// blocks (so that load on the shared machine falls on both alike).
async fn throughput_100(quick: bool) -> Result<Vec<Figure>> {
    let up = Upstream::start().await?;
    let ts = bench_store();
    let rt = Arc::new(runtime(&ts, POOL)?);
    let step: Arc<Step> = Arc::new(rt.load(&read_guest("probe")?)?);
    let injected = Arc::new(fetch_input(&up));
    let keyless =
        Arc::new(serde_json::json!({"action": "fetch", "url": up.url("/status/200")}).to_string());
    let ctx = Arc::new(RunContext::single_step("default", "fetch", "alice"));
    let n = 100usize;
    let block_rounds = if quick { 2 } else { 5 };
    let blocks = if quick { 2 } else { 6 };
    let block = |input: Arc<String>| {
        let (rt, step, ctx) = (rt.clone(), step.clone(), ctx.clone());
        async move {
            let t = Instant::now();
            let mut failures = 0usize;
            for _ in 0..block_rounds {
                let mut tasks = Vec::with_capacity(n);
                for _ in 0..n {
                    let (rt, step, ctx, input) =
                        (rt.clone(), step.clone(), ctx.clone(), input.clone());
                    tasks.push(tokio::spawn(async move {
                        rt.run(&step, &ctx, &input).await.is_ok()
                    }));
                }
                for task in tasks {
                    if !task.await? {
                        failures += 1;
                    }
                }
            }
            anyhow::Ok((t.elapsed(), failures))
        }
    };
    // Warm up both.
    block(injected.clone()).await?;
    block(keyless.clone()).await?;
    let (mut t_inj, mut t_key, mut failures) = (Duration::ZERO, Duration::ZERO, 0usize);
    for _ in 0..blocks {
        let (d, f) = block(injected.clone()).await?;
        t_inj += d;
        failures += f;
        let (d, f) = block(keyless.clone()).await?;
        t_key += d;
        failures += f;
        up.clear();
    }
    let runs = (blocks * block_rounds * n) as f64;
    let (inj, key) = (runs / t_inj.as_secs_f64(), runs / t_key.as_secs_f64());
    let f = Figure {
        name: "injected_vs_keyless_throughput_100_concurrent".into(),
        median: inj,
        p99: inj,
        unit: "runs/s".into(),
        baseline_median: Some(key),
        ratio: Some(inj / key),
        target: "≥ 0.9× (injected-fetch runs/s ÷ keyless runs/s at 100 concurrent runs)".into(),
        met: Some(inj / key >= 0.9 && failures == 0),
        command: format!("{CMD} throughput"),
        notes: format!(
            "{runs} runs of each in {blocks} alternating blocks of {block_rounds} rounds of {n} concurrent runs; injected {inj:.0} runs/s, keyless {key:.0} runs/s; failures {failures}"
        ),
    };
    print(&f);
    up.shutdown().await;
    Ok(vec![f])
}

/// Issue 13 (report): the one-injected-fetch step written in TypeScript and in Python,
/// each run (fresh instance + run) against the Rust probe doing the same, in alternating
/// blocks on one runtime.
async fn languages(iters: usize) -> Result<Vec<Figure>> {
    let up = Upstream::start().await?;
    let ts = bench_store();
    let rt = runtime(&ts, POOL)?;
    let rust = rt.load(&read_guest("probe")?)?;
    let js = rt.load(&std::fs::read(latchkey_tests::steps::js_step("probe"))?)?;
    let py = rt.load(&std::fs::read(latchkey_tests::steps::py_step("probe"))?)?;
    let ctx = RunContext::single_step("default", "fetch", "alice");
    let input = fetch_input(&up);
    for step in [&rust, &js, &py] {
        let out = rt
            .run(step, &ctx, &input)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if !out.output.contains("200") {
            bail!("a probe did not fetch: {}", out.output);
        }
    }
    let mut samples = [Samples::default(), Samples::default(), Samples::default()];
    let block = 20usize;
    for _ in 0..(iters / block).max(1) {
        for (i, step) in [&rust, &js, &py].into_iter().enumerate() {
            for _ in 0..block {
                let t = Instant::now();
                rt.run(step, &ctx, &input)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                samples[i].push(t.elapsed());
            }
            up.clear();
        }
    }
    let base = ns_to_us(samples[0].median());
    let mut out = Vec::new();
    for (i, lang) in [(1, "typescript"), (2, "python")] {
        let f = Figure {
            name: format!("{lang}_fetch_step_vs_rust_fetch_step"),
            median: ns_to_us(samples[i].median()),
            p99: ns_to_us(samples[i].p99()),
            unit: "us".into(),
            baseline_median: Some(base),
            ratio: Some(ns_to_us(samples[i].median()) / base),
            target: "report".into(),
            met: None,
            command: format!("{CMD} languages"),
            notes: format!(
                "fresh instance + run of tests/guests/{}, one injected fetch to loopback, against tests/guests/probe (Rust, median {base:.1} us), {} samples each in alternating blocks of {block}",
                if i == 1 {
                    "js/probe.ts"
                } else {
                    "python/probe.py"
                },
                samples[i].len()
            ),
        };
        print(&f);
        out.push(f);
    }
    up.shutdown().await;
    Ok(out)
}

/// Figure 6: N concurrent runs of the fetch step (N = 1, 10, 100, 1000) in one process on
/// the 2 cores: throughput, latency p99, peak RSS, RSS per concurrent instance.
async fn concurrency(quick: bool) -> Result<Vec<Figure>> {
    let up = Upstream::start().await?;
    let ts = bench_store();
    let rt = Arc::new(runtime(&ts, POOL)?);
    let step: Arc<Step> = Arc::new(rt.load(&read_guest("probe")?)?);
    let input = Arc::new(fetch_input(&up));
    let ctx = Arc::new(RunContext::single_step("default", "fetch", "alice"));
    // Warm up: connections, pool slots.
    for _ in 0..200 {
        rt.run(&step, &ctx, &input)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let peak = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let mut out = Vec::new();
    let mut base_throughput = 0.0;
    let total = if quick { 1000 } else { 4000 };
    for n in [1usize, 10, 100, 1000] {
        up.clear();
        let rounds = (total / n).max(3);
        let before = rss_kib();
        peak.store(before, Ordering::Relaxed);
        let mut lat = Samples::default();
        let mut failures = 0usize;
        let t = Instant::now();
        for _ in 0..rounds {
            let mut tasks = Vec::with_capacity(n);
            for _ in 0..n {
                let (rt, step, input, ctx) = (rt.clone(), step.clone(), input.clone(), ctx.clone());
                tasks.push(tokio::spawn(async move {
                    let t = Instant::now();
                    let ok = rt.run(&step, &ctx, &input).await.is_ok();
                    (t.elapsed(), ok)
                }));
            }
            for task in tasks {
                let (d, ok) = task.await?;
                lat.push(d);
                if !ok {
                    failures += 1;
                }
            }
            up.clear();
        }
        let elapsed = t.elapsed();
        let runs = (rounds * n) as f64;
        let throughput = runs / elapsed.as_secs_f64();
        if n == 1 {
            base_throughput = throughput;
        }
        let peak_kib = peak.load(Ordering::Relaxed);
        let per_instance = peak_kib.saturating_sub(before) as f64 / n as f64;
        let f = Figure {
            name: format!("concurrency_{n}_fetch_steps"),
            median: ns_to_us(lat.median()),
            p99: ns_to_us(lat.p99()),
            unit: "us".into(),
            baseline_median: None,
            ratio: Some(throughput / base_throughput),
            target: "report throughput, p99, peak RSS, RSS per instance (ratio: throughput vs concurrency 1)".into(),
            met: Some(failures == 0),
            command: format!("{CMD} concurrency"),
            notes: format!(
                "{} runs in {:.2} s = {:.0} runs/s; failures {failures}; RSS before {} KiB, peak {} KiB, +{:.0} KiB per concurrent instance; latency = spawn to completion of each run",
                runs,
                elapsed.as_secs_f64(),
                throughput,
                before,
                peak_kib,
                per_instance
            ),
        };
        print(&f);
        out.push(f);
    }
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    up.shutdown().await;
    Ok(out)
}
