//! What every request shares: the one `Latchkey` (store opened once, one engine, one HTTP
//! client; registrations and runs live in its store), the rate limiter and the metrics.

use crate::error::ApiError;
use crate::metrics::Metrics;
use axum::http::StatusCode;
use latchkey_host::Latchkey;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Limits and places the server is configured with.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Largest JSON body, in bytes.
    pub max_json_bytes: usize,
    /// Largest component upload, in bytes.
    pub max_component_bytes: usize,
    /// Authenticated requests per principal per second.
    pub requests_per_second: u32,
    /// MCP sessions kept open at most (each holds a server and its tasks until it ends or
    /// idles out).
    pub max_mcp_sessions: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_json_bytes: 256 << 10,
            max_component_bytes: 64 << 20,
            requests_per_second: 200,
            max_mcp_sessions: 1000,
        }
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
    /// The engine façade: every operation goes through it.
    pub latchkey: Arc<Latchkey>,
    /// Limits.
    pub limits: ServerLimits,
    /// Set once shutdown begins: `/readyz` answers 503 and new runs are refused.
    pub draining: std::sync::atomic::AtomicBool,
    /// Per-principal request windows.
    pub limiter: RateLimiter,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Cancelled when shutdown begins: ends `/mcp` sessions and their event streams.
    pub mcp_streams: tokio_util::sync::CancellationToken,
    /// The open `/mcp` sessions (counted against `max_mcp_sessions`).
    pub mcp_sessions: Arc<crate::mcp::Sessions>,
}

impl AppState {
    /// The state of a server over `latchkey`.
    pub fn new(latchkey: Arc<Latchkey>, limits: ServerLimits) -> Self {
        AppState {
            latchkey,
            limits,
            draining: Default::default(),
            limiter: Default::default(),
            metrics: Default::default(),
            mcp_streams: Default::default(),
            mcp_sessions: Default::default(),
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
}
