use std::fmt;

use crate::bindings::latchkey::workflow::{credentials, http};

/// Everything that can go wrong in a step.
///
/// No variant can hold a secret value: the step never has one. Messages from the host are
/// written not to contain values either, so an `Error` is safe to log or return.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// No credential with this key is available to this step. Carries the key.
    MissingCredential(String),
    /// The key is not a valid credential key (ASCII `A-Z`, `0-9`, `_`, 1 to 128 bytes).
    /// Carries the host's explanation.
    InvalidKey(String),
    /// The step holds as many credential handles as it may; drop some first.
    TooManyHandles,
    /// The host rejected the request as malformed (bad URL, header, forbidden header).
    InvalidRequest(String),
    /// Policy refused the request, e.g. a credential used outside its binding.
    Denied(String),
    /// The request was sent but failed (connection refused, TLS error, reset).
    Transport(String),
    /// The request took longer than its time limit.
    Timeout,
    /// A per-run limit was reached (number of fetches, body size, ...).
    LimitExceeded(String),
    /// A value could not be turned into JSON, or a response body could not be parsed as JSON.
    Json(String),
    /// Anything else, usually raised by the step itself with [`Error::msg`].
    Message(String),
}

impl Error {
    /// An error with a free-form message, for a step's own failures.
    pub fn msg(message: impl Into<String>) -> Self {
        Error::Message(message.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::MissingCredential(key) => write!(f, "credential {key} is not available"),
            Error::InvalidKey(why) => write!(f, "invalid credential key: {why}"),
            Error::TooManyHandles => f.write_str("too many credential handles"),
            Error::InvalidRequest(msg) => write!(f, "invalid request: {msg}"),
            Error::Denied(msg) => write!(f, "request denied: {msg}"),
            Error::Transport(msg) => write!(f, "transport error: {msg}"),
            Error::Timeout => f.write_str("request timed out"),
            Error::LimitExceeded(msg) => write!(f, "limit exceeded: {msg}"),
            Error::Json(msg) => write!(f, "JSON error: {msg}"),
            Error::Message(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for Error {}

impl From<credentials::Error> for Error {
    fn from(e: credentials::Error) -> Self {
        match e {
            credentials::Error::MissingCredential(key) => Error::MissingCredential(key),
            credentials::Error::InvalidKey(key) => Error::InvalidKey(key),
            credentials::Error::TooManyHandles => Error::TooManyHandles,
        }
    }
}

impl From<http::Error> for Error {
    fn from(e: http::Error) -> Self {
        match e {
            http::Error::InvalidRequest(msg) => Error::InvalidRequest(msg),
            http::Error::Denied(msg) => Error::Denied(msg),
            http::Error::Transport(msg) => Error::Transport(msg),
            http::Error::Timeout => Error::Timeout,
            http::Error::LimitExceeded(msg) => Error::LimitExceeded(msg),
        }
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Json(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display() {
        let cases = [
            (
                Error::MissingCredential("SLACK_TOKEN".into()),
                "credential SLACK_TOKEN is not available",
            ),
            (
                Error::InvalidKey("the credential key is empty".into()),
                "invalid credential key: the credential key is empty",
            ),
            (Error::TooManyHandles, "too many credential handles"),
            (
                Error::InvalidRequest("no host".into()),
                "invalid request: no host",
            ),
            (Error::Denied("host x".into()), "request denied: host x"),
            (Error::Transport("reset".into()), "transport error: reset"),
            (Error::Timeout, "request timed out"),
            (
                Error::LimitExceeded("fetches".into()),
                "limit exceeded: fetches",
            ),
            (Error::Json("eof".into()), "JSON error: eof"),
            (Error::msg("slack said 500"), "slack said 500"),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), text);
        }
    }

    #[test]
    fn from_wit_errors() {
        assert_eq!(
            Error::from(credentials::Error::MissingCredential("K".into())),
            Error::MissingCredential("K".into())
        );
        assert_eq!(
            Error::from(credentials::Error::TooManyHandles),
            Error::TooManyHandles
        );
        assert_eq!(Error::from(http::Error::Timeout), Error::Timeout);
        assert_eq!(
            Error::from(http::Error::Denied("d".into())),
            Error::Denied("d".into())
        );
    }

    #[test]
    fn from_serde_json() {
        let e = serde_json::from_str::<serde_json::Value>("{").expect_err("truncated JSON");
        assert!(matches!(Error::from(e), Error::Json(m) if m.contains("EOF")));
    }

    #[test]
    fn is_std_error() {
        fn takes(_: &dyn std::error::Error) {}
        takes(&Error::Timeout);
    }
}
