//! How a fetch says no: an error the guest sees (the inner WIT result), or a trap.

use crate::bindings::wit_http::Error;

/// A refusal the guest sees, or a trap (a forged handle, a failing store).
pub(super) enum Refusal {
    Guest(Error),
    Trap(wasmtime::Error),
}

impl From<wasmtime::Error> for Refusal {
    fn from(e: wasmtime::Error) -> Self {
        Refusal::Trap(e)
    }
}

/// The request is malformed.
pub(super) fn invalid(msg: impl Into<String>) -> Refusal {
    Refusal::Guest(Error::InvalidRequest(msg.into()))
}

/// Policy refused the request.
pub(super) fn denied(msg: impl Into<String>) -> Refusal {
    Refusal::Guest(Error::Denied(msg.into()))
}

/// A size or count limit was reached.
pub(super) fn limit(msg: impl Into<String>) -> Refusal {
    Refusal::Guest(Error::LimitExceeded(msg.into()))
}

/// A host failure the guest must not be able to tell from anything else: trap.
pub(super) fn trap(msg: impl Into<String>) -> Refusal {
    Refusal::Trap(wasmtime::Error::msg(msg.into()))
}
