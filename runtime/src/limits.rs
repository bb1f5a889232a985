//! The limits of one run, from flags (`run` and `serve`): the one place flags become
//! [`Limits`].

use anyhow::{Result, bail};
use clap::Args;
use latchkey_host::Limits;
use std::time::Duration;

/// Limits on one run of a step. Defaults are `Limits::default()` in the library.
#[derive(Args, Debug, Clone, PartialEq)]
pub struct LimitArgs {
    /// Guest memory: all linear memories and tables of the step's instance together, in MiB.
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    pub memory_mib: usize,
    /// Wall-clock deadline for the whole step, fetches included, in seconds (fractions
    /// allowed).
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    pub deadline: f64,
    /// Time for one fetch, connection to last body byte, in seconds (never more than the
    /// deadline; a step may ask for less).
    #[arg(long, default_value_t = 20.0, value_name = "SECS")]
    pub request_timeout: f64,
    /// Fetches per run.
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub max_fetches: u32,
    /// Largest response body accepted, in KiB (as received, before any decompression).
    #[arg(long, default_value_t = 4096, value_name = "KIB")]
    pub max_response_kib: usize,
    /// Largest request body sent, in KiB.
    #[arg(long, default_value_t = 1024, value_name = "KIB")]
    pub max_request_kib: usize,
    /// Headers in one request the step sends.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub max_request_headers: usize,
    /// Headers in one response the step receives; more fail the fetch.
    #[arg(long, default_value_t = 128, value_name = "N")]
    pub max_response_headers: usize,
    /// The step's log output, all lines together, in KiB; later lines are dropped and
    /// counted.
    #[arg(long, default_value_t = 256, value_name = "KIB")]
    pub max_log_kib: usize,
    /// `credentials.get` calls per run, whether or not the handles are dropped again (each
    /// is resolved and audited).
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub max_credential_gets: u32,
    /// Step-written text in one header value, query value or query name, in KiB (secret
    /// values are not counted).
    #[arg(long, default_value_t = 8, value_name = "KIB")]
    pub max_header_value_kib: usize,
    /// Parts (text and secret) in one header value, query value or body template.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub max_value_parts: usize,
    /// Query parameters one request adds.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub max_query_params: usize,
    /// Distinct credentials whose values one run may inject.
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub max_injected_credentials: usize,
    /// Secret parts in one request, all places together (each adds at most one value).
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub max_secret_parts: usize,
}

/// Seconds from a flag: finite, above 0 and at most a day.
fn seconds(flag: &str, secs: f64) -> Result<Duration> {
    if !(secs.is_finite() && secs > 0.0 && secs <= 86_400.0) {
        bail!("{flag} must be more than 0 and at most 86400 seconds (got {secs})");
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A count or size from a flag: at least 1 (0 would make every step fail, which is not
/// what anyone asking for a limit means) and at most `max`.
fn bounded<T: Into<u64> + Copy + std::fmt::Display>(flag: &str, v: T, max: u64) -> Result<T> {
    let n: u64 = v.into();
    if n == 0 || n > max {
        bail!("{flag} must be between 1 and {max} (got {v})");
    }
    Ok(v)
}

fn usize_flag(flag: &str, v: usize, max: u64) -> Result<usize> {
    bounded(flag, v as u64, max).map(|_| v)
}

/// The run's limits from the command line: the one place flags become [`Limits`].
pub fn limits(l: &LimitArgs) -> Result<Limits> {
    let deadline = seconds("--deadline", l.deadline)?;
    let request_timeout = seconds("--request-timeout", l.request_timeout)?;
    let memory_mib = usize_flag("--memory-mib", l.memory_mib, 4096)?;
    let kib = |flag, v| usize_flag(flag, v, 1 << 20).map(|v| v << 10);
    Ok(Limits {
        memory_bytes: memory_mib << 20,
        deadline,
        // A fetch cannot outlive the run it belongs to.
        request_timeout: request_timeout.min(deadline),
        max_fetches: bounded("--max-fetches", l.max_fetches, 1 << 20)?,
        max_response_body: kib("--max-response-kib", l.max_response_kib)?,
        max_request_body: kib("--max-request-kib", l.max_request_kib)?,
        max_request_headers: usize_flag("--max-request-headers", l.max_request_headers, 1 << 16)?,
        max_response_headers: usize_flag(
            "--max-response-headers",
            l.max_response_headers,
            1 << 16,
        )?,
        max_log_bytes: kib("--max-log-kib", l.max_log_kib)?,
        max_credential_gets: bounded("--max-credential-gets", l.max_credential_gets, 1 << 20)?,
        max_header_value_bytes: kib("--max-header-value-kib", l.max_header_value_kib)?,
        max_value_parts: usize_flag("--max-value-parts", l.max_value_parts, 1 << 16)?,
        max_query_params: usize_flag("--max-query-params", l.max_query_params, 1 << 16)?,
        max_injected_credentials: usize_flag(
            "--max-injected-credentials",
            l.max_injected_credentials,
            1 << 10,
        )?,
        max_secret_parts: usize_flag("--max-secret-parts", l.max_secret_parts, 1 << 10)?,
        ..Limits::default()
    })
}

impl Default for LimitArgs {
    /// The flags' defaults, as clap would fill them in.
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Just {
            #[command(flatten)]
            limits: LimitArgs,
        }
        <Just as clap::Parser>::parse_from(["latchkey"]).limits
    }
}
