//! Prometheus metrics at `/metrics`. Labels are bounded sets (outcomes, roles, refusal
//! kinds): never a key name, a principal, a URL or anything a value could hide in.

use latchkey_host::Role;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabel {
    role: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    runs: Family<Outcome, Counter>,
    run_seconds: Histogram,
    fetches: Counter,
    credentials: Counter,
    injections: Counter,
    refusals: Family<Reason, Counter>,
    in_progress: Gauge,
    requests: Family<RoleLabel, Counter>,
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("latchkey");
        let runs = Family::<Outcome, Counter>::default();
        registry.register("runs", "Runs ended, by outcome", runs.clone());
        let run_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "run_duration_seconds",
            "Wall-clock time of a run, all steps",
            run_seconds.clone(),
        );
        let fetches = Counter::default();
        registry.register("fetches", "Fetches made by steps", fetches.clone());
        let credentials = Counter::default();
        registry.register(
            "credentials_resolved",
            "Credentials resolved for steps (each may be injected into several fetches)",
            credentials.clone(),
        );
        let injections = Counter::default();
        registry.register(
            "injections",
            "Credential values sent: one per credential per request that left",
            injections.clone(),
        );
        let refusals = Family::<Reason, Counter>::default();
        registry.register(
            "refusals",
            "Steps' requests refused, by the error the step got (missing-credential, denied, invalid-request, limit-exceeded)",
            refusals.clone(),
        );
        let in_progress = Gauge::default();
        registry.register(
            "runs_in_progress",
            "Runs holding an instance now",
            in_progress.clone(),
        );
        let requests = Family::<RoleLabel, Counter>::default();
        registry.register(
            "authenticated_requests",
            "Authenticated API requests, by role",
            requests.clone(),
        );
        Metrics {
            registry,
            runs,
            run_seconds,
            fetches,
            credentials,
            injections,
            refusals,
            in_progress,
            requests,
        }
    }

    /// An authenticated request.
    pub fn request(&self, role: Role) {
        self.requests
            .get_or_create(&RoleLabel { role: role.name() })
            .inc();
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Runs on this host, as the façade reports them.
impl latchkey_host::RunObserver for Metrics {
    fn run_started(&self) {
        self.in_progress.inc();
    }

    fn run_ended(&self, ended: &latchkey_host::RunEnded) {
        self.in_progress.dec();
        let outcome = if ended.ok { "succeeded" } else { "failed" };
        self.runs.get_or_create(&Outcome { outcome }).inc();
        self.run_seconds.observe(ended.seconds);
        self.credentials.inc_by(ended.credentials);
        for step in &ended.counts {
            self.fetches.inc_by(u64::from(step.fetches));
            self.injections.inc_by(step.injections);
            for (reason, n) in step.refusals.by_reason() {
                if n > 0 {
                    self.refusals.get_or_create(&Reason { reason }).inc_by(n);
                }
            }
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
