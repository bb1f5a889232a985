//! The sandbox: one wasmtime engine per runtime, a fresh store per run, WASI p2 with
//! nothing granted, our three WIT interfaces, and limits on memory, time, handles and
//! fetches. A guest that exceeds a limit traps with a message that says which; the host,
//! the store and other runs are unaffected.
//!
//! `engine` configures the engine and ticks its epoch, `limits` says what a run may use,
//! `imports` decides which components load, `state` is what a store holds (each
//! interface's own state lives with its host: `credentials`, `http`, `guest_log`),
//! `memory` bounds linear memories and tables, `run` runs a step once, `error` says why
//! something failed.

mod engine;
mod error;
mod imports;
mod memory;
mod run;
mod state;

pub use crate::credentials::CredentialUse;
/// Guest-chosen text made safe for a terminal (control characters shown as `\u{1b}`).
pub use crate::guest_log::{GuestLogLine, visible};
// What the project's own tests reach besides what the crate's root exports.
#[cfg(any(test, feature = "testing"))]
pub use crate::{guest_log::visible_lines, http::clients::ClientError};
#[cfg(any(test, feature = "testing"))]
pub use run::TEXT_SCRUB_GRACE;
pub use error::{LoadError, RunError, RunFailure, RuntimeError, WasmtimeError};
pub use crate::limits::{Durability, Limits, RuntimeConfig};
pub use crate::run_state::{REPORTED_REFUSALS, Refusal, Refusals, RunCounts};
pub use run::RunOutcome;

pub(crate) use memory::MemoryLimiter;
pub(crate) use crate::run_state::Shared;
pub(crate) use state::HostState;

use crate::bindings::WorkflowPre;
use crate::cache::{CacheError, CacheStatus, ComponentCache};
use crate::store::SecretStore;
use engine::engine_config;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

/// A loaded, checked and pre-linked component. Cloning is cheap (the compiled code is
/// shared).
#[derive(Clone)]
pub struct Step {
    pre: WorkflowPre<HostState>,
}

/// Runs steps. One per process: it owns the engine, the epoch ticker and the HTTP client.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    shared: Arc<Shared>,
    stop_ticker: Arc<AtomicBool>,
    #[cfg_attr(not(any(test, feature = "testing")), allow(dead_code))]
    pooled: bool,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

impl Runtime {
    /// Starts a runtime over `store`.
    pub fn new(config: RuntimeConfig, store: Arc<SecretStore>) -> Result<Self, RuntimeError> {
        let (engine, pooled) = Self::engine_for(&config)?;
        let linker = host_linker(&engine)?;
        let clients =
            crate::http::clients::Clients::new(config.address_policy, config.limits.connect_timeout);
        let stop_ticker = Arc::new(AtomicBool::new(false));
        engine::start_epoch_ticker(&engine, &stop_ticker).map_err(RuntimeError::EpochThread)?;
        Ok(Runtime {
            engine,
            linker,
            shared: Arc::new(Shared {
                store,
                clients,
                limits: config.limits,
                address_policy: config.address_policy,
                durability: config.durability,
                tokens: crate::oauth::Tokens::default(),
                matchers: Default::default(),
            }),
            stop_ticker,
            pooled,
        })
    }

    /// Waits for the OAuth2 refreshes under way to finish and store their tokens (a run
    /// whose deadline passed leaves its refresh running): a process about to exit calls
    /// this, or it would drop them half-way and lose a refresh token the endpoint rotated.
    /// Bounded by the longest a refresh may hold its lease; whether they all finished.
    pub async fn settle_refreshes(&self) -> bool {
        self.shared.tokens.settle(crate::oauth::SETTLE).await
    }

    /// Whether the pooling allocator is in use.
    #[cfg(any(test, feature = "testing"))]
    pub fn is_pooled(&self) -> bool {
        self.pooled
    }

    /// The engine (for caching compiled components).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Checks a component's imports from its bytes (`.wasm`), then compiles it.
    pub fn load(&self, bytes: &[u8]) -> Result<Step, LoadError> {
        check_magic(bytes)?;
        imports::check_binary(bytes)?;
        let component = Component::new(&self.engine, bytes)
            .map_err(|e| LoadError::Invalid(Box::new(WasmtimeError::from(e))))?;
        self.link(component)
    }

    /// Like [`Runtime::load`], through the compiled-component cache: a valid cache entry
    /// is loaded instead of compiling (milliseconds instead of tens of milliseconds);
    /// a missing, stale or damaged one is compiled and stored. The component's imports are
    /// checked either way, before anything is compiled. A failure to write the cache is logged, not fatal.
    pub fn load_cached(
        &self,
        bytes: &[u8],
        cache: &ComponentCache,
    ) -> Result<(Step, CacheStatus), LoadError> {
        self.load_cached_noting(bytes, cache, || ())
    }

    /// [`Runtime::load_cached`], calling `compiling` just before a component the cache has
    /// no valid entry for is compiled (see [`ComponentCache::load_noting`]).
    pub fn load_cached_noting(
        &self,
        bytes: &[u8],
        cache: &ComponentCache,
        compiling: impl FnOnce(),
    ) -> Result<(Step, CacheStatus), LoadError> {
        check_magic(bytes)?;
        imports::check_binary(bytes)?;
        let cached = cache
            .load_noting(&self.engine, bytes, compiling)
            .map_err(|e| match e {
                CacheError::Compile(e) => LoadError::Invalid(Box::new(e)),
                other => LoadError::Invalid(Box::new(other)),
            })?;
        if let Some(e) = &cached.store_error {
            tracing::warn!(error = %e, "could not store the compiled component in the cache");
        }
        Ok((self.link(cached.component)?, cached.status))
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
                    .map_err(|e| RuntimeError::Engine(e.into()))
            }
            Err(e) => Err(RuntimeError::Engine(e.into())),
        }
    }

    /// Checks the imports of an already compiled component and links it against the host
    /// interfaces once, so that each run only instantiates it.
    pub fn link(&self, component: Component) -> Result<Step, LoadError> {
        imports::check(&self.engine, &component)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Invalid(Box::new(WasmtimeError::from(e))))?;
        let pre = WorkflowPre::new(pre).map_err(|e| LoadError::NotAWorkflow(e.into()))?;
        Ok(Step { pre })
    }
}

/// Refuses bytes that are not WebAssembly before compiling anything.
fn check_magic(bytes: &[u8]) -> Result<(), LoadError> {
    if bytes.starts_with(b"\0asm") {
        Ok(())
    } else {
        Err(LoadError::Invalid(
            "the file does not start with the WebAssembly magic bytes".into(),
        ))
    }
}

/// A linker with everything a step may import: WASI p2 (what [`imports`] allows of it is
/// checked at load) and Latchkey's three interfaces, each wired by its host module, in
/// version 0.2.0 and (converted, [`crate::wit_v1`]) 0.1.0.
fn host_linker(engine: &Engine) -> Result<Linker<HostState>, RuntimeError> {
    let mut linker: Linker<HostState> = Linker::new(engine);
    let link = |e: wasmtime::Error| RuntimeError::Link(e.into());
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(link)?;
    crate::credentials::add_to_linker(&mut linker, HostState::credentials_view).map_err(link)?;
    crate::http::add_to_linker(&mut linker, HostState::http_view).map_err(link)?;
    crate::guest_log::add_to_linker(&mut linker, HostState::log_view).map_err(link)?;
    crate::wit_v1::add_to_linker(
        &mut linker,
        HostState::credentials_view,
        HostState::http_view,
        HostState::log_view,
    )
    .map_err(link)?;
    Ok(linker)
}
