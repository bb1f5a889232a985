//! What every request shares: the one `Latchkey` (store opened once, one engine, one HTTP
//! client), the registered components and workflows, the table of runs, the rate limiter
//! and the metrics.

use crate::api::RunView;
use crate::error::ApiError;
use crate::metrics::Metrics;
use axum::http::StatusCode;
use latchkey_host::Latchkey;
use latchkey_host::sandbox::Step;
use latchkey_host::workflow::Workflow;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Limits and places the server is configured with.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Largest JSON body, in bytes.
    pub max_json_bytes: usize,
    /// Largest component upload, in bytes.
    pub max_component_bytes: usize,
    /// Runs holding an instance at once; more wait.
    pub max_concurrent_runs: usize,
    /// Finished runs kept for `GET /v1/runs/{id}`.
    pub keep_runs: usize,
    /// Authenticated requests per principal per second.
    pub requests_per_second: u32,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_json_bytes: 256 << 10,
            max_component_bytes: 64 << 20,
            max_concurrent_runs: 64,
            keep_runs: 10_000,
            requests_per_second: 200,
        }
    }
}

/// A registered component.
pub struct Component {
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: usize,
    /// Loaded and checked.
    pub step: Arc<Step>,
}

/// A registered workflow: its manifest and each step's component digest.
pub struct RegisteredWorkflow {
    /// The parsed manifest.
    pub workflow: Workflow,
    /// The manifest text as registered.
    pub text: String,
    /// Each step's component digest, in order.
    pub digests: Vec<String>,
    /// The loaded steps, in order.
    pub steps: Vec<Step>,
}

/// Components by digest, names pointing at digests, workflows by name.
#[derive(Default)]
pub struct Registry {
    /// By digest.
    pub components: HashMap<String, Arc<Component>>,
    /// Name → digest.
    pub names: BTreeMap<String, String>,
    /// By name.
    pub workflows: BTreeMap<String, Arc<RegisteredWorkflow>>,
}

impl Registry {
    /// A component by name or digest.
    pub fn component(&self, name_or_digest: &str) -> Option<Arc<Component>> {
        let digest = self
            .names
            .get(name_or_digest)
            .map(String::as_str)
            .unwrap_or(name_or_digest);
        self.components.get(digest).cloned()
    }
}

/// One run as the API shows it, and who may see it.
pub struct RunEntry {
    /// The principal who started it.
    pub owner: String,
    /// Its current view.
    pub view: RunView,
}

/// Runs by id, the oldest finished ones forgotten beyond the limit.
#[derive(Default)]
pub struct RunTable {
    runs: HashMap<String, RunEntry>,
    order: VecDeque<String>,
}

impl RunTable {
    /// Adds a run.
    pub fn insert(&mut self, entry: RunEntry, keep: usize) {
        let id = entry.view.id.clone();
        self.runs.insert(id.clone(), entry);
        self.order.push_back(id);
        while self.order.len() > keep {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            self.runs.remove(&old);
        }
    }

    /// A run.
    pub fn get(&self, id: &str) -> Option<&RunEntry> {
        self.runs.get(id)
    }

    /// A run, to update it.
    pub fn get_mut(&mut self, id: &str) -> Option<&mut RunEntry> {
        self.runs.get_mut(id)
    }

    /// The newest runs first.
    pub fn newest(&self) -> impl Iterator<Item = &RunEntry> {
        self.order.iter().rev().filter_map(|id| self.runs.get(id))
    }
}

/// A fixed one-second window per principal: enough to stop one token from starving the
/// others, without a dependency for it.
#[derive(Default)]
pub struct RateLimiter {
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

impl RateLimiter {
    fn check(&self, who: &str, per_second: u32) -> bool {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if windows.len() > 100_000 {
            windows.retain(|_, (start, _)| now.duration_since(*start) < Duration::from_secs(1));
        }
        let (start, count) = windows.entry(who.to_owned()).or_insert((now, 0));
        if now.duration_since(*start) >= Duration::from_secs(1) {
            *start = now;
            *count = 0;
        }
        *count += 1;
        *count <= per_second
    }
}

/// The server's shared state.
pub struct AppState {
    /// The engine façade.
    pub latchkey: Latchkey,
    /// Where registered components and workflows are kept.
    pub data_dir: PathBuf,
    /// Limits.
    pub limits: ServerLimits,
    /// Registered components and workflows.
    pub registry: RwLock<Registry>,
    /// Runs.
    pub runs: Mutex<RunTable>,
    /// Slots for runs.
    pub run_slots: tokio::sync::Semaphore,
    /// Runs started and not yet ended (for draining at shutdown).
    pub active_runs: AtomicUsize,
    /// Signalled when a run ends.
    pub run_ended: tokio::sync::Notify,
    /// Set once shutdown begins: `/readyz` answers 503 and new runs are refused.
    pub draining: std::sync::atomic::AtomicBool,
    /// Per-principal request windows.
    pub limiter: RateLimiter,
    /// Metrics.
    pub metrics: Metrics,
}

impl AppState {
    /// The state of a server over `latchkey`, nothing registered and no run yet.
    pub fn new(latchkey: Latchkey, data_dir: PathBuf, limits: ServerLimits) -> Self {
        AppState {
            latchkey,
            data_dir,
            run_slots: tokio::sync::Semaphore::new(limits.max_concurrent_runs),
            limits,
            registry: Default::default(),
            runs: Default::default(),
            active_runs: Default::default(),
            run_ended: Default::default(),
            draining: Default::default(),
            limiter: Default::default(),
            metrics: Default::default(),
        }
    }

    /// Refuses a request over the principal's rate.
    pub fn rate_limit(&self, who: &str) -> Result<(), ApiError> {
        if self.limiter.check(who, self.limits.requests_per_second) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-requests",
                format!(
                    "more than {} requests in one second from this principal; slow down",
                    self.limits.requests_per_second
                ),
            ))
        }
    }

    /// The runs table, locked.
    pub fn runs(&self) -> std::sync::MutexGuard<'_, RunTable> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs not yet ended.
    pub fn active(&self) -> usize {
        self.active_runs.load(Ordering::SeqCst)
    }
}
