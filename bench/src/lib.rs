//! Measurement helpers for Latchkey's benchmarks: samples with median and p99, the
//! `results.json` record, and the process's resident memory. The figures themselves are in
//! `benches/figures.rs` (`cargo bench -p latchkey-bench`).
//!
//! ```
//! use latchkey_bench::Samples;
//! let mut s = Samples::default();
//! for ns in [3_000, 1_000, 2_000] {
//!     s.push_ns(ns);
//! }
//! assert_eq!(s.median(), 2_000.0);
//! ```
#![deny(missing_docs)]

use std::time::Duration;

/// Durations, in nanoseconds.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    ns: Vec<u64>,
    sorted: bool,
}

impl Samples {
    /// Adds one measurement.
    pub fn push(&mut self, d: Duration) {
        self.push_ns(d.as_nanos() as u64);
    }

    /// Adds one measurement in nanoseconds.
    pub fn push_ns(&mut self, ns: u64) {
        self.ns.push(ns);
        self.sorted = false;
    }

    /// Number of measurements.
    pub fn len(&self) -> usize {
        self.ns.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ns.is_empty()
    }

    fn sort(&mut self) {
        if !self.sorted {
            self.ns.sort_unstable();
            self.sorted = true;
        }
    }

    /// The `q` quantile (0..=1), nearest rank, in nanoseconds; 0 if empty.
    pub fn quantile(&mut self, q: f64) -> f64 {
        if self.ns.is_empty() {
            return 0.0;
        }
        self.sort();
        let rank = ((q * self.ns.len() as f64).ceil() as usize).clamp(1, self.ns.len());
        self.ns[rank - 1] as f64
    }

    /// Median in nanoseconds.
    pub fn median(&mut self) -> f64 {
        self.quantile(0.5)
    }

    /// 99th percentile in nanoseconds.
    pub fn p99(&mut self) -> f64 {
        self.quantile(0.99)
    }
}

/// One figure of `results.json`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Figure {
    /// What was measured.
    pub name: String,
    /// Median of the measured subject.
    pub median: f64,
    /// 99th percentile of the measured subject.
    pub p99: f64,
    /// Unit of `median`, `p99` and `baseline_median`.
    pub unit: String,
    /// Median of the baseline, measured in the same run; `None` when there is none.
    pub baseline_median: Option<f64>,
    /// `median / baseline_median`.
    pub ratio: Option<f64>,
    /// The target from issue 5, as text.
    pub target: String,
    /// Whether the target was met; `None` when it could not be judged.
    pub met: Option<bool>,
    /// The command that reproduces the figure.
    pub command: String,
    /// Anything else worth knowing (sample count, extra measures).
    pub notes: String,
}

/// Resident set size of this process now, in KiB (`/proc/self/statm`); 0 if unknown.
pub fn rss_kib() -> u64 {
    let Ok(text) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages: u64 = text
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    #[allow(unsafe_code)]
    // SAFETY: sysconf has no preconditions and only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * (page.max(4096) as u64) / 1024
}

/// Peak resident set size of a finished child (`getrusage(RUSAGE_CHILDREN)`), in KiB:
/// the largest of all children waited for so far.
pub fn children_max_rss_kib() -> u64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    #[allow(unsafe_code)]
    // SAFETY: `usage` is a valid, writable rusage; getrusage only writes into it.
    let (rc, usage) = unsafe {
        let rc = libc::getrusage(libc::RUSAGE_CHILDREN, usage.as_mut_ptr());
        (rc, usage.assume_init())
    };
    if rc == 0 { usage.ru_maxrss as u64 } else { 0 }
}
