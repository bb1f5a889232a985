//! Host bindings generated from `wit/`. Private: embedders use the crate's own types.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "workflow",
    imports: {
        "latchkey:workflow/http.fetch": async | trappable,
        default: trappable,
    },
    exports: { default: async },
    with: {
        "latchkey:workflow/credentials.credential": crate::credentials::CredentialHandle,
    },
});

pub(crate) use latchkey::workflow::{
    credentials as wit_credentials, http as wit_http, log as wit_log,
};
