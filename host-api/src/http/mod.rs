//! The WIT `http` interface: the only way out of the sandbox.
//!
//! `host.rs` implements `fetch`: [`plan`] checks the guest's request for shape and size,
//! then every credential is resolved and checked against its binding, injected, recorded
//! in the audit trail, sent ([`exchange`]) and scrubbed ([`scrub`]) from what comes back,
//! for the values bound to that destination only ([`injected`]). This file holds the
//! interface's per-run state and wires it into a linker; [`clients`] builds the HTTP
//! clients a runtime shares.

pub(crate) mod clients;
mod compressed;
mod exchange;
mod host;
pub(crate) mod injected;
pub(crate) mod matchers;
mod plan;
mod quota;
mod refusal;
pub(crate) mod scrub;
mod sign;

use crate::bindings::wit_http;
use crate::run_state::RunState;
use injected::Injected;
use wasmtime::component::{HasData, Linker, ResourceTable};

/// Per-run state of the `http` interface.
#[derive(Default)]
pub(crate) struct HttpState {
    /// Fetches so far (capped by `max_fetches`).
    pub fetches: u32,
    /// Credential values sent so far (one per credential per request).
    pub injections: u64,
    /// Fetches refused, by the error the guest got.
    pub refused: crate::run_state::Refusals,
    /// Values injected so far, for scrubbing responses, logs and the output.
    pub injected: Injected,
}

/// What the `http` host works on: its per-run state and the resource table holding handles, and the run through `Deref`.
pub(crate) struct HttpView<'a> {
    pub run: &'a RunState,
    pub http: &'a mut HttpState,
    pub table: &'a mut ResourceTable,
}

impl std::ops::Deref for HttpView<'_> {
    type Target = RunState;
    fn deref(&self) -> &RunState {
        self.run
    }
}

/// The `HasData` of `http`: its host is a [`HttpView`].
pub(crate) struct HttpHost;

impl HasData for HttpHost {
    type Data<'a> = HttpView<'a>;
}

/// Adds `latchkey:workflow/http` to `linker`, its host being the view `view` gives.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> HttpView<'_>,
) -> wasmtime::Result<()> {
    wit_http::add_to_linker::<T, HttpHost>(linker, view)
}
