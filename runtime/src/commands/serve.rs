//! `latchkey serve`: the long-lived host (see the `latchkey-server` crate).

use crate::common::{CacheArgs, DurabilityArgs, NetworkArgs, ScriptArgs, StoreArgs};
use crate::limits::{self, LimitArgs};
use anyhow::{Context, Result, bail};
use clap::Args;
use latchkey_host::RuntimeConfig;
use latchkey_host::{Options, RunLimits};
use latchkey_server::{ServeConfig, ServerLimits};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct ServeCommand {
    /// Address to listen on. Plain HTTP only on a loopback address; any other needs
    /// --tls-cert and --tls-key. Port 0 picks a free port (printed at start).
    #[arg(long, default_value = "127.0.0.1:8700", env = "LATCHKEY_LISTEN")]
    pub listen: SocketAddr,
    /// TLS certificate chain (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Where an earlier version kept registered components and workflows; what it holds
    /// is imported into the store at start (registrations now live in the store, shared
    /// by every host of it). Default: `server` beside the store directory.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Instance slots the pooling allocator reserves (0: allocate on demand).
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub pool_instances: u32,
    /// Runs executing at once on this host; more wait for a slot (up to four times as
    /// many wait; more get 429).
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub max_concurrent_runs: usize,
    /// Bytes of each run's output kept in its record, in KiB; the rest is cut and the run
    /// says `output_truncated` (the answer to a waited run has all of it).
    #[arg(long, default_value_t = 64, value_name = "KIB")]
    pub keep_run_output_kib: usize,
    /// How long finished runs are kept, e.g. `7d`, `12h`.
    #[arg(long, default_value = "7d", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub keep_runs_for: Duration,
    /// Finished runs beyond this many MiB of records, oldest first, are deleted.
    #[arg(long, default_value_t = 256, value_name = "MIB")]
    pub keep_runs_mib: u64,
    /// How long a run's lease lasts, in seconds: its host renews it three times as often,
    /// and another host sharing the store marks the run lost once it has expired.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub run_lease_secs: u64,
    /// Authenticated requests per principal per second; more get 429.
    #[arg(long, default_value_t = 200, value_name = "N")]
    pub requests_per_second: u32,
    /// Largest JSON request body, in KiB.
    #[arg(long, default_value_t = 256, value_name = "KIB")]
    pub max_json_kib: usize,
    /// MCP sessions (`/mcp`) this host keeps open at most; more get 503. A session ends
    /// when its client closes it or after 5 minutes idle.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub max_mcp_sessions: usize,
    /// Largest component upload, in MiB.
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    pub max_component_mib: usize,
    /// On SIGTERM, how long runs in flight may take to finish, in seconds.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub drain: u64,
    #[command(flatten)]
    pub network: NetworkArgs,
    #[command(flatten)]
    pub durability: DurabilityArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(flatten)]
    pub scripts: ScriptArgs,
}

impl ServeCommand {
    pub fn execute(self, store: &StoreArgs) -> Result<()> {
        let in_range = |flag: &str, v: usize, max: usize| {
            if v == 0 || v > max {
                bail!("{flag} must be between 1 and {max} (got {v})");
            }
            Ok(v)
        };
        let server_limits = ServerLimits {
            max_json_bytes: in_range("--max-json-kib", self.max_json_kib, 64 << 10)? << 10,
            max_component_bytes: in_range("--max-component-mib", self.max_component_mib, 1024)?
                << 20,
            requests_per_second: in_range(
                "--requests-per-second",
                self.requests_per_second as usize,
                1 << 20,
            )? as u32,
            max_mcp_sessions: in_range("--max-mcp-sessions", self.max_mcp_sessions, 1 << 20)?,
        };
        if self.drain > 3600 {
            bail!("--drain must be at most 3600 seconds");
        }
        let max_concurrent = in_range("--max-concurrent-runs", self.max_concurrent_runs, 1 << 16)?;
        let runs = RunLimits {
            max_concurrent,
            max_waiting: max_concurrent.saturating_mul(4),
            keep_output_bytes: in_range(
                "--keep-run-output-kib",
                self.keep_run_output_kib,
                1 << 20,
            )? << 10,
            keep_for: self.keep_runs_for,
            keep_bytes: (in_range("--keep-runs-mib", self.keep_runs_mib as usize, 1 << 24)? as u64)
                << 20,
            lease: Duration::from_secs(in_range(
                "--run-lease-secs",
                self.run_lease_secs as usize,
                3600,
            )? as u64),
        };
        let options = Options {
            runtime: RuntimeConfig {
                limits: limits::limits(&self.limits)?,
                address_policy: self.network.address_policy()?,
                pool_instances: self.pool_instances,
                durability: self.durability.durability(),
            },
            cache_dir: self.cache.dir(store),
            scripts: self.scripts.options()?,
            runs,
        };
        let config = ServeConfig {
            listen: self.listen,
            tls: self.tls_cert.zip(self.tls_key),
            data_dir: self
                .data_dir
                .unwrap_or_else(|| store.local_dir().join("server")),
            limits: server_limits,
            drain: Duration::from_secs(self.drain),
        };
        let latchkey = std::sync::Arc::new(store.open(options)?);
        // A server holds the store for its lifetime: find out now if another process has it.
        latchkey.open_store_now()?;
        let tokio = crate::common::async_runtime()?;
        let scheme = if config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        tokio
            .block_on(latchkey_server::serve(latchkey, config, |addr| {
                println!("latchkey serving on {scheme}://{addr}");
                let _ = std::io::stdout().flush();
            }))
            .context("latchkey serve")?;
        println!("latchkey stopped");
        Ok(())
    }
}
