//! Credentials whose request value the host computes from the stored key, which itself
//! never leaves: AWS Signature Version 4 over the whole request ([`aws`]), and JWTs minted
//! per request ([`jwt`]). Pure crypto over bytes the caller gives, no I/O: `store` parses
//! keys with it when they are stored (so a bad key is refused then, not at the first run),
//! `http/host.rs` computes with it at each request.

pub(crate) mod aws;
pub(crate) mod jwt;

/// Why a stored key is unusable for its kind. Never holds key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The value is not in the form the kind needs.
    #[error("the value is not {expected}: {problem}")]
    Format {
        /// What the kind needs.
        expected: &'static str,
        /// What is wrong, without the value.
        problem: &'static str,
    },
}

/// Why a request could not be signed or a token minted (a host-side failure).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The stored key is unusable (it was checked when stored: a record from elsewhere).
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The signer refused the request (e.g. a header value that is not text).
    #[error("the request could not be signed: {0}")]
    Request(String),
}
