//! The sandbox: one wasmtime engine per runtime, a fresh store per run, WASI p2 with
//! nothing granted, our three WIT interfaces, and limits on memory, time, handles and
//! fetches. A guest that exceeds a limit traps with a message that says which; the host,
//! the store and other runs are unaffected.

use crate::audit::{self, AuditEvent, AuditRecord};
use crate::bindings::{Workflow, WorkflowPre};
use crate::http::injected::Injected;
use crate::policy::AddressPolicy;
use crate::resolve::{Resolved, RunContext, Tier};
use crate::secret::CredentialKey;
use crate::store::SecretStore;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, ResourceLimiter, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Time allowed past the run's deadline to check its output or error message for credential
/// values: the guest has stopped, and the output is bounded by `max_output_bytes`.
pub const TEXT_SCRUB_GRACE: Duration = Duration::from_secs(1);

/// When checking the step's output or error message must be done.
fn text_deadline(store: &Store<HostState>) -> Instant {
    store.data().deadline_at.max(Instant::now()) + TEXT_SCRUB_GRACE
}

/// How often the epoch advances; the deadline's resolution.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Limits on one run. Defaults suit workflow steps that make a few API calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Guest linear memory, in bytes (all memories together). Default 64 MiB.
    pub memory_bytes: usize,
    /// Wall-clock time for the whole run, including time spent waiting on fetches.
    /// Default 30 s.
    pub deadline: Duration,
    /// Live credential handles an instance may hold. Default 64.
    pub max_handles: u32,
    /// Fetches per run. Default 32.
    pub max_fetches: u32,
    /// Request body, in bytes. Default 1 MiB.
    pub max_request_body: usize,
    /// Request headers. Default 64.
    pub max_request_headers: usize,
    /// Response body, in bytes (as received; the host does not decompress). Default 4 MiB.
    pub max_response_body: usize,
    /// Response headers. Default 128.
    pub max_response_headers: usize,
    /// Time for one fetch, connection to last body byte; a guest may ask for less.
    /// Default 20 s.
    pub request_timeout: Duration,
    /// Time to establish a connection. Default 5 s.
    pub connect_timeout: Duration,
    /// The step's output, in bytes. Default 1 MiB.
    pub max_output_bytes: usize,
    /// Log lines kept per run; later ones are counted and dropped. Default 1000.
    pub max_log_lines: usize,
    /// Log bytes kept per run (all lines together); later lines are counted and dropped.
    /// Default 256 KiB.
    pub max_log_bytes: usize,
    /// `credentials.get` calls per run, whether or not the handles are dropped again.
    /// Default 256.
    pub max_credential_gets: u32,
    /// Guest text in one request header value or query value (or a query parameter name,
    /// or the basic-auth username). A credential's value is not counted: a limit that
    /// counted it would tell the guest the value's length. Default 8 KiB.
    pub max_header_value_bytes: usize,
    /// Secret parts in one request, all places together; each adds at most one value
    /// (64 KiB at most). Default 16.
    pub max_secret_parts: usize,
    /// Parts (text and secret) in one header value, query value or body template.
    /// Default 64.
    pub max_value_parts: usize,
    /// Query parameters added through `query`. Default 64.
    pub max_query_params: usize,
    /// Distinct credentials whose values a run may inject (and so the scrubber holds).
    /// Default 16.
    pub max_injected_credentials: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 << 20,
            deadline: Duration::from_secs(30),
            max_handles: 64,
            max_fetches: 32,
            max_request_body: 1 << 20,
            max_request_headers: 64,
            max_response_body: 4 << 20,
            max_response_headers: 128,
            request_timeout: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(5),
            max_output_bytes: 1 << 20,
            max_log_lines: 1000,
            max_log_bytes: 256 << 10,
            max_credential_gets: 256,
            max_header_value_bytes: 8 << 10,
            max_secret_parts: 16,
            max_value_parts: 64,
            max_query_params: 64,
            max_injected_credentials: 16,
        }
    }
}

/// How the runtime is set up.
#[derive(Debug, Clone, Default)]
pub struct RuntimeConfig {
    /// Limits applied to every run.
    pub limits: Limits,
    /// Which network addresses fetches may reach.
    pub address_policy: AddressPolicy,
    /// Instances reserved by the pooling allocator; 0 turns pooling off. If the pool
    /// cannot be reserved (address space limits), the runtime falls back to on-demand
    /// allocation. Default: 0 here; see [`RuntimeConfig::pooled`].
    pub pool_instances: u32,
}

impl RuntimeConfig {
    /// Defaults plus a pool of `instances` pre-reserved instance slots.
    pub fn pooled(instances: u32) -> Self {
        RuntimeConfig {
            pool_instances: instances,
            ..Default::default()
        }
    }
}

pub use crate::http::ClientError;

/// Why the runtime could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// wasmtime refused the configuration.
    #[error("could not create the WebAssembly engine: {0}")]
    Engine(String),
    /// Linking the host interfaces failed.
    #[error("could not link the host interfaces: {0}")]
    Link(String),
    /// The HTTP client could not be built.
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// Why a component could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// Not a valid WebAssembly component.
    #[error("not a valid WebAssembly component: {0}")]
    Invalid(String),
    /// The component imports something Latchkey does not provide.
    #[error("the component imports {import}, which Latchkey does not provide: {why}")]
    ForbiddenImport {
        /// The import's name.
        import: String,
        /// Why it is refused.
        why: &'static str,
    },
    /// The component does not export the `run` function of world `latchkey:workflow/workflow`.
    #[error("the component is not a Latchkey workflow step: {0}")]
    NotAWorkflow(String),
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The guest returned `err(message)`.
    #[error("the step failed: {0}")]
    Guest(String),
    /// The guest trapped: the message says why (limit, panic, bad handle…).
    #[error("the step trapped: {0}")]
    Trap(String),
    /// The run exceeded its wall-clock deadline.
    #[error("the step exceeded its deadline of {0:?}")]
    Deadline(Duration),
    /// The step's output is over the limit.
    #[error("the step's output is {len} bytes; the limit is {limit}")]
    OutputTooLarge {
        /// Output size.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The step's output or error message could not be checked for credential values
    /// before the deadline (plus [`TEXT_SCRUB_GRACE`]); it is withheld.
    #[error("the step's {0} could not be checked for credential values in time and was withheld")]
    Unchecked(&'static str),
    /// Instantiation failed (e.g. the instance pool is exhausted).
    #[error("could not start the step: {0}")]
    Instantiate(String),
}

/// A failed run: why, and what the guest logged before it failed (a panic message, say).
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct RunFailure {
    /// Why the run failed.
    #[source]
    pub error: RunError,
    /// Guest log lines captured before the failure, secrets masked.
    pub logs: Vec<GuestLogLine>,
    /// Credentials resolved before the failure.
    pub credentials: Vec<CredentialUse>,
}

/// A credential a run used, for reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialUse {
    /// Key.
    pub key: String,
    /// Tier it resolved from.
    pub tier: Tier,
    /// Scope it resolved from.
    pub scope: String,
}

/// Guest-chosen text made safe for a terminal (control characters shown as `\u{1b}`).
pub use crate::guest_log::{visible, visible_lines};

/// A log line from the guest, secrets masked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestLogLine {
    /// `trace` … `error`.
    pub level: &'static str,
    /// The masked message.
    pub message: String,
}

/// What a successful run produced.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// The step's output (JSON).
    pub output: String,
    /// Credentials resolved, in order of first use.
    pub credentials: Vec<CredentialUse>,
    /// Fetches made.
    pub fetches: u32,
    /// Guest log lines.
    pub logs: Vec<GuestLogLine>,
    /// Wall-clock time of the run.
    pub duration: Duration,
}

/// What every store of a runtime shares.
pub(crate) struct Shared {
    pub store: Arc<SecretStore>,
    /// For requests that may reach public addresses and the operator's grants.
    pub client: reqwest::Client,
    /// For requests whose every credential's binding allows internal destinations.
    pub internal_client: reqwest::Client,
    pub limits: Limits,
    pub address_policy: AddressPolicy,
}

/// Per-run host state: the WASI context, the resource table holding credential handles,
/// counters, and what the run injected (for scrubbing).
pub(crate) struct HostState {
    wasi: WasiCtx,
    pub table: ResourceTable,
    limiter: MemoryLimiter,
    pub shared: Arc<Shared>,
    pub ctx: Arc<RunContext>,
    pub live_handles: u32,
    /// `credentials.get` calls so far (capped by `max_credential_gets`).
    pub credential_gets: u32,
    pub fetches: u32,
    /// When the run's deadline passes; host-side work checks it too.
    pub deadline_at: Instant,
    /// Values injected so far, for scrubbing.
    pub injected: Injected,
    pub logs: Vec<GuestLogLine>,
    /// Bytes of the kept log lines (capped by `max_log_bytes`).
    pub log_bytes: usize,
    pub logs_dropped: usize,
    pub used: Vec<CredentialUse>,
}

impl HostState {
    pub fn limits(&self) -> &Limits {
        &self.shared.limits
    }

    pub fn note_resolved(&mut self, key: &CredentialKey, r: &Resolved) {
        if !self.used.iter().any(|u| u.key == key.as_str()) {
            self.used.push(CredentialUse {
                key: key.to_string(),
                tier: r.tier,
                scope: r.meta.scope.to_string(),
            });
        }
    }

    /// Appends an audit record. A failing audit write fails loudly in the operator's log;
    /// it must not become a guest-visible difference.
    pub fn audit(
        &self,
        event: AuditEvent,
        key: &CredentialKey,
        resolved: Option<&Resolved>,
        destination: Option<String>,
        location: Option<String>,
        outcome: String,
    ) {
        let record = self.record(event, key, resolved, destination, location, outcome);
        if let Err(e) = audit::append(&self.shared.store, &record) {
            tracing::error!(error = %e, "could not append an audit record");
        }
    }

    /// Appends `records` and makes them durable with one flush before returning; the caller
    /// fails closed on an error.
    pub fn audit_durable(
        &self,
        records: impl IntoIterator<Item = AuditRecord>,
    ) -> Result<(), audit::AuditError> {
        for r in records {
            audit::append(&self.shared.store, &r)?;
        }
        audit::flush(&self.shared.store)?;
        Ok(())
    }

    /// The audit record of `event` in this run.
    pub fn record(
        &self,
        event: AuditEvent,
        key: &CredentialKey,
        resolved: Option<&Resolved>,
        destination: Option<String>,
        location: Option<String>,
        outcome: String,
    ) -> AuditRecord {
        AuditRecord {
            time_ms: crate::store::unix_millis(),
            run_id: self.ctx.run_id.clone(),
            workspace: self.ctx.workspace.clone(),
            workflow: self.ctx.workflow.clone(),
            step: self.ctx.step.name.clone(),
            user: self.ctx.user.clone(),
            event,
            key: key.to_string(),
            scope: resolved.map(|r| r.meta.scope.to_string()),
            version: resolved.map(|r| r.meta.version),
            destination,
            location,
            outcome,
            actor: None,
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Bytes wasmtime allocates per table element: a pointer's worth (see
/// `ResourceLimiter::table_growing`).
const TABLE_ELEMENT_BYTES: usize = std::mem::size_of::<usize>();

/// One budget for every linear memory and table of a run's instance together: a component
/// has several core instances, each may have memories and tables, and a per-memory limit
/// would let N memories take N times the limit. Growth is counted as `desired - current`
/// (the instance is never shrunk, and a store lives for one run). A refused growth traps
/// with a message naming the limit. Works the same with or without the pooling allocator:
/// wasmtime consults the store's limiter in both.
pub(crate) struct MemoryLimiter {
    limit: usize,
    used: usize,
    /// What the last allowed growth added, taken back if wasmtime then fails it.
    pending: usize,
    /// Set when the limit refused a growth: the trap is then reported as the limit.
    hit: Option<&'static str>,
}

impl MemoryLimiter {
    pub(crate) fn new(limit: usize) -> Self {
        MemoryLimiter {
            limit,
            used: 0,
            pending: 0,
            hit: None,
        }
    }

    /// Why the limit was hit, for the run's error.
    fn message(&self, what: &str) -> String {
        format!(
            "the guest exceeded its memory limit of {} MiB ({what}: linear memories and tables together)",
            self.limit >> 20
        )
    }

    fn grow(&mut self, bytes: usize, what: &'static str) -> wasmtime::Result<bool> {
        match self.used.checked_add(bytes) {
            Some(total) if total <= self.limit => {
                self.used = total;
                self.pending = bytes;
                Ok(true)
            }
            _ => {
                self.hit = Some(what);
                Err(wasmtime::Error::msg(self.message(what)))
            }
        }
    }

    fn grow_failed(&mut self) {
        self.used = self.used.saturating_sub(std::mem::take(&mut self.pending));
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(desired.saturating_sub(current), "memory.grow")
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.grow_failed();
        Ok(())
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let elements = desired.saturating_sub(current);
        self.grow(elements.saturating_mul(TABLE_ELEMENT_BYTES), "table.grow")
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.grow_failed();
        Ok(())
    }
}

/// Interfaces a component may import. Everything else is refused at load.
///
/// `wasi:cli/environment` stays: every Rust std guest imports it, whether or not it reads
/// the environment. It is linked with an empty environment and only argv[0], the step name.
/// `wasi:filesystem` is refused: there are no preopens to give, and a step that imports it
/// expects files it will never have.
const ALLOWED_IMPORTS: &[&str] = &[
    "latchkey:workflow/credentials",
    "latchkey:workflow/http",
    "latchkey:workflow/log",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
];

fn forbidden_why(name: &str) -> &'static str {
    if name.starts_with("wasi:http/") {
        "a step has no network of its own; use latchkey:workflow/http"
    } else if name.starts_with("wasi:sockets/") {
        "a step may not open sockets; use latchkey:workflow/http"
    } else if name.starts_with("wasi:filesystem/") {
        "a step has no files; pass data in its input"
    } else {
        "only latchkey:workflow and basic WASI (io, cli, clocks, random) are provided"
    }
}

/// A loaded, checked and pre-linked component.
pub struct Step {
    pre: WorkflowPre<HostState>,
}

/// Runs steps. One per process: it owns the engine, the epoch ticker and the HTTP client.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    shared: Arc<Shared>,
    stop_ticker: Arc<AtomicBool>,
    pooled: bool,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

fn engine_config(pool_instances: u32, memory_bytes: usize) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.max_wasm_stack(512 << 10);
    if pool_instances > 0 {
        let mut pool = wasmtime::PoolingAllocationConfig::default();
        pool.total_component_instances(pool_instances);
        pool.total_core_instances(pool_instances * 4);
        pool.total_memories(pool_instances * 2);
        pool.total_tables(pool_instances * 4);
        pool.total_stacks(pool_instances);
        pool.max_memory_size(memory_bytes);
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

impl Runtime {
    /// Starts a runtime over `store`.
    pub fn new(config: RuntimeConfig, store: Arc<SecretStore>) -> Result<Self, RuntimeError> {
        let (engine, pooled) = Self::engine_for(&config)?;
        let mut linker: Linker<HostState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| RuntimeError::Link(e.to_string()))?;
        Workflow::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| RuntimeError::Link(e.to_string()))?;
        let client =
            crate::http::build_client(config.address_policy, false, config.limits.connect_timeout)?;
        let internal_client =
            crate::http::build_client(config.address_policy, true, config.limits.connect_timeout)?;

        let stop_ticker = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.clone();
            let stop = stop_ticker.clone();
            std::thread::Builder::new()
                .name("latchkey-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| {
                    RuntimeError::Engine(format!("could not start the epoch thread: {e}"))
                })?;
        }
        Ok(Runtime {
            engine,
            linker,
            shared: Arc::new(Shared {
                store,
                client,
                internal_client,
                limits: config.limits,
                address_policy: config.address_policy,
            }),
            stop_ticker,
            pooled,
        })
    }

    /// Whether the pooling allocator is in use.
    pub fn is_pooled(&self) -> bool {
        self.pooled
    }

    /// The engine (for caching compiled components).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles and checks a component from its bytes (`.wasm`).
    pub fn load(&self, bytes: &[u8]) -> Result<Step, LoadError> {
        if !bytes.starts_with(b"\0asm") {
            return Err(LoadError::Invalid(
                "the file does not start with the WebAssembly magic bytes".into(),
            ));
        }
        let component = Component::new(&self.engine, bytes)
            .map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
        self.prepare(component)
    }

    /// Like [`Runtime::load`], through the compiled-component cache: a valid cache entry
    /// is loaded instead of compiling (milliseconds instead of tens of milliseconds);
    /// a missing, stale or damaged one is compiled and stored. The component's imports are
    /// checked either way. A failure to write the cache is logged, not fatal.
    pub fn load_cached(
        &self,
        bytes: &[u8],
        cache: &crate::cache::ComponentCache,
    ) -> Result<(Step, crate::cache::CacheStatus), LoadError> {
        if !bytes.starts_with(b"\0asm") {
            return Err(LoadError::Invalid(
                "the file does not start with the WebAssembly magic bytes".into(),
            ));
        }
        let cached = cache.load(&self.engine, bytes).map_err(|e| match e {
            crate::cache::CacheError::Compile(m) => LoadError::Invalid(m),
            other => LoadError::Invalid(other.to_string()),
        })?;
        if let Some(e) = &cached.store_error {
            tracing::warn!(error = %e, "could not store the compiled component in the cache");
        }
        Ok((self.prepare(cached.component)?, cached.status))
    }

    /// An engine configured exactly as [`Runtime::new`] configures its own for `config`
    /// (pooling with the same fallback), for compiling ahead of time without a store
    /// (`latchkey compile`). Returns the engine and whether it pools.
    pub fn engine_for(config: &RuntimeConfig) -> Result<(Engine, bool), RuntimeError> {
        match Engine::new(&engine_config(
            config.pool_instances,
            config.limits.memory_bytes,
        )) {
            Ok(e) => Ok((e, config.pool_instances > 0)),
            Err(e) if config.pool_instances > 0 => {
                tracing::warn!(error = %e, "pooling allocator unavailable; using on-demand allocation");
                Engine::new(&engine_config(0, 0))
                    .map(|e| (e, false))
                    .map_err(|e| RuntimeError::Engine(e.to_string()))
            }
            Err(e) => Err(RuntimeError::Engine(e.to_string())),
        }
    }

    /// Checks and pre-links an already compiled component.
    pub fn prepare(&self, component: Component) -> Result<Step, LoadError> {
        for (name, _) in component.component_type().imports(&self.engine) {
            let interface = name.split('@').next().unwrap_or(name);
            if !ALLOWED_IMPORTS.contains(&interface) {
                return Err(LoadError::ForbiddenImport {
                    import: name.to_owned(),
                    why: forbidden_why(name),
                });
            }
        }
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
        let pre = WorkflowPre::new(pre).map_err(|e| LoadError::NotAWorkflow(format!("{e:#}")))?;
        Ok(Step { pre })
    }

    /// Runs `step` once with `input`, in a fresh instance.
    pub async fn run(
        &self,
        step: &Step,
        ctx: &RunContext,
        input: &str,
    ) -> Result<RunOutcome, RunFailure> {
        let started = Instant::now();
        let limits = &self.shared.limits;
        let wasi = WasiCtx::builder()
            .args(&[ctx.step.name.as_str()])
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let state = HostState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(limits.memory_bytes),
            shared: self.shared.clone(),
            ctx: Arc::new(ctx.clone()),
            live_handles: 0,
            credential_gets: 0,
            fetches: 0,
            deadline_at: started + limits.deadline,
            injected: Injected::default(),
            logs: Vec::new(),
            log_bytes: 0,
            logs_dropped: 0,
            used: Vec::new(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        let ticks = (limits.deadline.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64;
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();

        let deadline = limits.deadline;
        let call = async {
            let instance = self.pre_instantiate(step, &mut store).await?;
            instance
                .call_run(&mut store, input)
                .await
                .map_err(|e| classify_trap(&e, &store))
        };
        // The epoch deadline stops guest code; this timeout also bounds time spent
        // awaiting a host call (a slow upstream).
        let result = tokio::time::timeout(deadline + EPOCH_TICK * 2, call).await;
        let _ = audit::flush(&self.shared.store);
        let failed = |error: RunError, store: Store<HostState>| {
            let state = store.into_data();
            RunFailure {
                error,
                logs: state.logs,
                credentials: state.used,
            }
        };
        let output = match result {
            Err(_) => return Err(failed(RunError::Deadline(deadline), store)),
            Ok(Err(e)) => return Err(failed(e, store)),
            Ok(Ok(Err(guest))) if guest.len() > limits.max_output_bytes => {
                // Not scrubbed (that would cost time in proportion to the guest's whim),
                // not cut (a cut could leave part of a value): withheld.
                let msg = format!(
                    "[an error message of {} bytes, over the {}-byte output limit, was withheld]",
                    guest.len(),
                    limits.max_output_bytes
                );
                return Err(failed(RunError::Guest(msg), store));
            }
            Ok(Ok(Err(guest))) => {
                let by = text_deadline(&store);
                let checked = store.data_mut().injected.scrub_text(&guest, by);
                return Err(match checked {
                    Ok(msg) => {
                        let msg = crate::guest_log::visible(&msg).into_owned();
                        failed(RunError::Guest(msg), store)
                    }
                    Err(_) => failed(RunError::Unchecked("error message"), store),
                });
            }
            Ok(Ok(Ok(output))) => output,
        };
        if output.len() > limits.max_output_bytes {
            let error = RunError::OutputTooLarge {
                len: output.len(),
                limit: limits.max_output_bytes,
            };
            return Err(failed(error, store));
        }
        let text_deadline = text_deadline(&store);
        let output = match store.data_mut().injected.scrub_text(&output, text_deadline) {
            Ok(o) => o,
            Err(_) => return Err(failed(RunError::Unchecked("output"), store)),
        };
        let state = store.into_data();
        let mut logs = state.logs;
        if state.logs_dropped > 0 {
            logs.push(GuestLogLine {
                level: "warn",
                message: format!("{} more log lines dropped", state.logs_dropped),
            });
        }
        Ok(RunOutcome {
            output,
            credentials: state.used,
            fetches: state.fetches,
            logs,
            duration: started.elapsed(),
        })
    }

    async fn pre_instantiate(
        &self,
        step: &Step,
        store: &mut Store<HostState>,
    ) -> Result<Workflow, RunError> {
        step.pre.instantiate_async(&mut *store).await.map_err(|e| {
            if let Some(what) = store.data().limiter.hit {
                RunError::Trap(store.data().limiter.message(what))
            } else {
                RunError::Instantiate(format!("{e:#}"))
            }
        })
    }
}

fn classify_trap(e: &wasmtime::Error, store: &Store<HostState>) -> RunError {
    if let Some(what) = store.data().limiter.hit {
        return RunError::Trap(store.data().limiter.message(what));
    }
    // wasmtime bounds the handles one store may lend (100 000); a guest passing that many
    // borrowed credentials in one request hits it before the host sees the request. Say
    // so instead of showing wasmtime's wording.
    if format!("{e:#}").contains("store handle limit exceeded") {
        return RunError::Trap(
            "the guest passed more credential handles in one call than the host accepts \
             (wasmtime's limit on handles lent by a store)"
                .to_owned(),
        );
    }
    if let Some(trap) = e.downcast_ref::<wasmtime::Trap>() {
        let what = match trap {
            wasmtime::Trap::Interrupt => {
                return RunError::Deadline(store.data().shared.limits.deadline);
            }
            wasmtime::Trap::StackOverflow => {
                "stack overflow (the guest recursed too deeply)".to_owned()
            }
            wasmtime::Trap::UnreachableCodeReached => {
                "the guest panicked or aborted (wasm `unreachable` executed)".to_owned()
            }
            wasmtime::Trap::OutOfFuel => "the guest ran out of fuel".to_owned(),
            other => other.to_string(),
        };
        return RunError::Trap(what);
    }
    RunError::Trap(format!("{e:#}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod memory_limiter_tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn several_memories_share_one_limit() {
        let mut l = MemoryLimiter::new(64 * MIB);
        // Three memories of 30 MiB each: each alone is under the limit, together over it.
        assert!(l.memory_growing(0, 30 * MIB, None).unwrap());
        assert!(l.memory_growing(0, 30 * MIB, None).unwrap());
        let err = l.memory_growing(0, 30 * MIB, None).unwrap_err();
        assert!(err.to_string().contains("memory limit of 64 MiB"), "{err}");
        assert_eq!(l.hit, Some("memory.grow"));
    }

    #[test]
    fn growth_counts_only_the_difference() {
        let mut l = MemoryLimiter::new(64 * MIB);
        // One memory grown step by step to the limit exactly.
        let mut size = 0;
        while size < 64 * MIB {
            assert!(l.memory_growing(size, size + MIB, None).unwrap());
            size += MIB;
        }
        assert!(l.memory_growing(size, size + 65536, None).is_err());
    }

    #[test]
    fn tables_count_against_the_same_limit() {
        let mut l = MemoryLimiter::new(MIB);
        // 1 MiB of table elements is 131072 pointers; many tables each under the old
        // per-table cap of 100k elements used to add up without bound.
        let per_table = 16_384; // 128 KiB each
        for _ in 0..8 {
            assert!(l.table_growing(0, per_table, None).unwrap());
        }
        let err = l.table_growing(0, 1, None).unwrap_err();
        assert!(err.to_string().contains("memory limit of 1 MiB"), "{err}");
        assert_eq!(l.hit, Some("table.grow"));
    }

    #[test]
    fn memories_and_tables_together() {
        let mut l = MemoryLimiter::new(2 * MIB);
        assert!(l.memory_growing(0, MIB + MIB / 2, None).unwrap());
        // 512 KiB of table would fit alone, not next to the memory plus one element more.
        assert!(
            l.table_growing(0, (MIB / 2) / TABLE_ELEMENT_BYTES, None)
                .unwrap()
        );
        assert!(l.table_growing(10, 11, None).is_err());
    }

    #[test]
    fn a_failed_growth_is_not_counted() {
        let mut l = MemoryLimiter::new(2 * MIB);
        assert!(l.memory_growing(0, 2 * MIB, None).unwrap());
        // wasmtime refused it (over the memory's own maximum): the budget is given back.
        l.memory_grow_failed(wasmtime::Error::msg("over maximum"))
            .unwrap();
        assert!(l.memory_growing(0, 2 * MIB, None).unwrap());
    }

    #[test]
    fn huge_requests_do_not_overflow() {
        let mut l = MemoryLimiter::new(64 * MIB);
        assert!(l.memory_growing(0, MIB, None).unwrap());
        assert!(l.memory_growing(0, usize::MAX, None).is_err());
        assert!(l.table_growing(0, usize::MAX, None).is_err());
    }
}
