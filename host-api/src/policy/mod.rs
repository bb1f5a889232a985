//! Pure policy: which destinations and request locations a credential may be sent to, and
//! which network addresses a request may reach. No I/O and no wasmtime here, so every rule
//! is unit-tested with `accepts_*` / `rejects_*` tests beside it.

mod address;
mod binding;
pub mod body;
mod headers;
mod host;
pub mod method_override;
pub mod quota;
mod signer;
pub mod strength;
pub mod token_endpoint;

pub use address::{AddressPolicy, GrantError, MAX_GRANTS};
// What the project's own tests reach besides what the crate's root exports.
#[cfg(any(test, feature = "testing"))]
pub use address::{forbidden_reason, is_cloud_metadata};
pub use binding::{
    Binding, BindingError, BindingSpec, Destination, InjectLocation, METHODS, RequestRefusal,
};
#[cfg(any(test, feature = "testing"))]
pub use host::canonical_host;
pub use headers::host_managed;
pub use host::{HostPattern, PatternError};
pub use quota::Quota;
pub use signer::{
    AwsSigner, DEFAULT_JWT_TTL_SECS, JwtClaims, MAX_JWT_TTL_SECS, SignerError, SignerParams,
};
pub use token_endpoint::{Grant, TokenEndpoint, TokenEndpointError};
