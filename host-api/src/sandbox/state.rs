//! Per-run host state: the shell one run's store holds (WASI, the resource table, the
//! memory limiter) around the run's shared part ([`RunState`]) and the state of each
//! Latchkey interface, and the views each interface's host works on.

use super::MemoryLimiter;
use crate::credentials::{CredentialsState, CredentialsView};
use crate::guest_log::{LogState, LogView};
use crate::http::{HttpState, HttpView};
use crate::resolve::RunContext;
use crate::run_state::{Refusals, RunCounts, RunState, Shared};
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Per-run host state: the WASI context, the resource table holding credential handles,
/// the memory limiter, the run, and each interface's state.
pub(crate) struct HostState {
    wasi: WasiCtx,
    pub table: ResourceTable,
    pub limiter: MemoryLimiter,
    pub run: RunState,
    /// `latchkey:workflow/credentials`: handles, gets, credentials used.
    pub credentials: CredentialsState,
    /// `latchkey:workflow/http`: fetches, and the values injected (for scrubbing).
    pub http: HttpState,
    /// `latchkey:workflow/log`: the lines kept.
    pub log: LogState,
}

impl HostState {
    /// The state of a fresh run of the step in `ctx`: WASI with nothing granted (no
    /// network, an empty environment, only argv[0], the step name).
    ///
    /// Components may import `wasi:filesystem` and `wasi:sockets` (see `imports`): this is
    /// what makes that safe. No directory is ever preopened, so no file descriptor exists;
    /// TCP, UDP and name lookups are disabled, and every socket address is denied besides.
    pub fn new(shared: Arc<Shared>, ctx: &RunContext, deadline_at: Instant) -> Self {
        let wasi = WasiCtx::builder()
            .args(&[ctx.step.name.as_str()])
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .build();
        let matchers = shared.matchers.clone();
        HostState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(shared.limits.memory_bytes),
            run: RunState::new(shared, ctx, deadline_at),
            credentials: CredentialsState::default(),
            http: HttpState {
                injected: crate::http::injected::Injected::sharing(matchers),
                ..HttpState::default()
            },
            log: LogState::default(),
        }
    }

    /// What the run has done so far.
    pub fn counts(&self) -> RunCounts {
        RunCounts {
            fetches: self.http.fetches,
            injections: self.http.injections,
            refusals: Refusals {
                missing_credential: self.credentials.missing,
                ..self.http.refused
            },
        }
    }

    /// What the `credentials` host works on.
    pub fn credentials_view(&mut self) -> CredentialsView<'_> {
        CredentialsView {
            run: &self.run,
            credentials: &mut self.credentials,
            table: &mut self.table,
            log: &mut self.log,
        }
    }

    /// What the `http` host works on.
    pub fn http_view(&mut self) -> HttpView<'_> {
        HttpView {
            run: &self.run,
            http: &mut self.http,
            table: &mut self.table,
        }
    }

    /// What the `log` host works on.
    pub fn log_view(&mut self) -> LogView<'_> {
        LogView {
            run: &self.run,
            log: &mut self.log,
            injected: &mut self.http.injected,
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
