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

/// An answered HTTP request: the route's template (`/v1/runs/{id}`, never the path a caller
/// sent), the method and the status; bounded sets.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabel {
    route: String,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabel {
    version: &'static str,
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
    http: Family<HttpLabel, Counter>,
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
        let http = Family::<HttpLabel, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route template, method and status (401s included)",
            http.clone(),
        );
        let build = Family::<BuildLabel, Gauge>::default();
        build
            .get_or_create(&BuildLabel {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "The latchkey build serving", build);
        Metrics {
            registry,
            http,
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

    /// An HTTP request answered: `route` is the matched template (or `unmatched`).
    pub fn http_request(&self, route: &str, method: &str, status: u16) {
        // Methods are a bounded set only once unknown ones are folded together.
        let method = match method {
            "GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "PATCH" | "OPTIONS" => method,
            _ => "other",
        };
        self.http
            .get_or_create(&HttpLabel {
                route: route.to_owned(),
                method: method.to_owned(),
                status,
            })
            .inc();
    }

    /// The metrics in OpenMetrics text (`openmetrics`) or in Prometheus' text format 0.0.4,
    /// the process's own metrics included.
    pub fn encode(&self, openmetrics: bool) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode_registry(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out.push_str(&process_metrics());
        if openmetrics {
            out.push_str("# EOF\n");
            out
        } else {
            classic(&out)
        }
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

/// The process's CPU time, resident memory, open files and start time, under the names
/// Prometheus' client libraries use (`process_*`), in OpenMetrics form.
fn process_metrics() -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, sample: &str, value: f64| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{sample} {value}\n"
        ));
    };
    // /proc/self/stat: utime and stime (fields 14, 15) in clock ticks, starttime (22) in
    // ticks since boot; the command name (field 2) may hold spaces, so split after it.
    let ticks = 100.0; // USER_HZ on Linux
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
    if let (Some(u), Some(s)) = (field(14), field(15)) {
        metric(
            "process_cpu_seconds",
            "counter",
            "Total user and system CPU time spent in seconds.",
            "process_cpu_seconds_total",
            (u + s) / ticks,
        );
    }
    let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<f64>().ok())
    });
    if let (Some(start), Some(boot)) = (field(22), boot) {
        metric(
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            "process_start_time_seconds",
            boot + start / ticks,
        );
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
    };
    if let Some(rss) = kib("VmRSS:") {
        metric(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            "process_resident_memory_bytes",
            rss * 1024.0,
        );
    }
    if let Some(vm) = kib("VmSize:") {
        metric(
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            "process_virtual_memory_bytes",
            vm * 1024.0,
        );
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        metric(
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            "process_open_fds",
            fds.count() as f64,
        );
    }
    out
}

/// OpenMetrics text as Prometheus' text format 0.0.4: a counter's HELP and TYPE name its
/// `_total` samples, `# UNIT` and `# EOF` lines go, and `_created` samples of counters go.
fn classic(openmetrics: &str) -> String {
    let counters: std::collections::BTreeSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{p}{name}_total {tail}"))
        });
        match renamed {
            Some(l) => out.push_str(&l),
            None => {
                let sample = line.split(['{', ' ']).next().unwrap_or("");
                let created = sample
                    .strip_suffix("_created")
                    .is_some_and(|n| counters.contains(n));
                if created {
                    continue;
                }
                out.push_str(line);
            }
        }
        out.push('\n');
    }
    out
}
