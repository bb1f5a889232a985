//! Limits on one run, and how a runtime is set up.

use crate::policy::AddressPolicy;
use std::time::Duration;

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
    /// When audit records are made durable against a power failure.
    pub durability: Durability,
}

/// When the audit record of an injection is made durable against a power failure. Either
/// way it is written before the request leaves, so that it survives the host being killed
/// at any instant after (a kill -9 loses nothing that reached an upstream).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// Synced to disk by the store within its sync window (for the embedded store,
    /// [`SYNC_WINDOW`](crate::store::log::SYNC_WINDOW)), one sync shared by every run that
    /// wrote in the meantime: a power failure can lose at most that window of records.
    #[default]
    Grouped,
    /// Synced to disk before each request carrying a credential leaves and at the end of
    /// each run (concurrent runs still share syncs). A power failure loses no record of a
    /// request that was sent; each such request pays for a sync (~0.1 ms on an SSD).
    Strict,
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
