//! The sandbox: one wasmtime engine per runtime, a fresh store per run, WASI p2 with
//! nothing granted, our three WIT interfaces, and limits on memory, time, handles and
//! fetches. A guest that exceeds a limit traps with a message that says which; the host,
//! the store and other runs are unaffected.

mod error;
mod imports;
mod limits;
mod memory;
mod state;

pub use error::{LoadError, RunError, RunFailure, RuntimeError};
pub use limits::{Limits, RuntimeConfig};
pub(crate) use memory::MemoryLimiter;
pub(crate) use state::{HostState, Shared};

use crate::audit;
use crate::bindings::{Workflow, WorkflowPre};
use crate::http::injected::Injected;
use crate::resolve::{RunContext, Tier};
use crate::store::SecretStore;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::WasiCtx;

/// Time allowed past the run's deadline to check its output or error message for credential
/// values: the guest has stopped, and the output is bounded by `max_output_bytes`.
pub const TEXT_SCRUB_GRACE: Duration = Duration::from_secs(1);

/// When checking the step's output or error message must be done.
fn text_deadline(store: &Store<HostState>) -> Instant {
    store.data().deadline_at.max(Instant::now()) + TEXT_SCRUB_GRACE
}

/// How often the epoch advances; the deadline's resolution.
const EPOCH_TICK: Duration = Duration::from_millis(10);

pub use crate::http::ClientError;

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
        imports::check(&self.engine, &component)?;
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
