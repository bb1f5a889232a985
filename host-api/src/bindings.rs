//! Host bindings generated from `wit/`. Private: embedders use the crate's own types.
//!
//! Two versions of `latchkey:workflow` are linked side by side: `0.1.0` (`wit/`) and
//! `0.2.0` (`wit/0.2.0/`, which adds signature parts). The host works on the `0.2.0` types;
//! a `0.1.0` call is converted into them (0.1.0 is a subset) and its answer converted back
//! (`v1`). Both map the credential resource to the same handle type, and both worlds export
//! the same `run`.

/// `latchkey:workflow@0.2.0`: the types the host works on.
mod v2 {
    wasmtime::component::bindgen!({
        path: "../wit/0.2.0",
        world: "workflow",
        imports: {
            "latchkey:workflow/http.fetch": async | trappable,
            default: trappable,
        },
        exports: { default: async },
        with: {
            "latchkey:workflow/credentials.credential": crate::bindings::CredentialHandle,
        },
    });
}

/// `latchkey:workflow@0.1.0`, kept for the guests built against it.
pub(crate) mod v1 {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "workflow",
        imports: {
            "latchkey:workflow/http.fetch": async | trappable,
            default: trappable,
        },
        exports: { default: async },
        with: {
            "latchkey:workflow/credentials.credential": crate::bindings::CredentialHandle,
        },
    });
}

pub(crate) use v1::{Workflow, WorkflowPre};
pub(crate) use v2::latchkey::workflow::{
    credentials as wit_credentials, http as wit_http, log as wit_log,
};

/// What a guest's `credential` resource stands for on the host. Carries no value.
#[derive(Debug)]
pub struct CredentialHandle {
    pub(crate) key: crate::secret::CredentialKey,
}
