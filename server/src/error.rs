//! Every failure as an HTTP status and a JSON [`ErrorBody`] naming the problem. Messages
//! come from the library's errors, which never hold a value; a refusal for a role is
//! decided before anything is looked up, so a 403 says nothing about what exists.

use crate::api::ErrorBody;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use latchkey_host::AuditError;
use latchkey_host::Error;
use latchkey_host::TokenError;
use latchkey_host::{BackendError, StoreError};

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    /// The status.
    pub status: StatusCode,
    /// The stable code.
    pub code: &'static str,
    /// The message.
    pub message: String,
}

impl ApiError {
    /// A response with `status`, `code` and `message`.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", message)
    }

    /// 503: the shared store is unreachable (the message names it, never its password).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store-unavailable",
            message,
        )
    }

    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// An answer the framework gave without a body (a 405 from the router, …), as an
    /// error with a code and message of its status.
    pub fn for_status(status: StatusCode) -> Self {
        let reason = status.canonical_reason().unwrap_or("error");
        let code = match status {
            StatusCode::METHOD_NOT_ALLOWED => "method-not-allowed",
            StatusCode::PAYLOAD_TOO_LARGE => "payload-too-large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
            s if s.is_server_error() => "internal",
            _ => "bad-request",
        };
        let message = if status == StatusCode::METHOD_NOT_ALLOWED {
            "this endpoint does not take this method (the Allow header lists those it does)"
                .to_owned()
        } else {
            format!("{} {reason}", status.as_u16())
        };
        Self::new(status, code, message)
    }

    /// 500: the message is logged, the client gets a generic one.
    pub fn internal(message: impl std::fmt::Display) -> Self {
        tracing::error!(error = %message, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the server failed; see its log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(ErrorBody {
                error: self.code.to_owned(),
                message: self.message,
            }),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// An error and its causes, on one line; a cause the message above already quotes is not
/// repeated.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        cause = c.source();
    }
    text
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match &e {
            Error::Forbidden { .. } => ApiError::forbidden(e.to_string()),
            Error::Token(TokenError::Invalid) => ApiError::unauthorized(e.to_string()),
            Error::Token(TokenError::NotFound(_)) => ApiError::not_found(e.to_string()),
            Error::Store(s) => store_error(s, &e),
            Error::Token(TokenError::Backend(b)) | Error::Audit(b) if unreachable_store(b) => {
                ApiError::unavailable(chain(&e))
            }
            Error::Name(_) | Error::Manifest(_) | Error::Component(_) | Error::NotAComponent => {
                ApiError::bad_request(chain(&e))
            }
            Error::Load { .. } | Error::Step { .. } => ApiError::bad_request(chain(&e)),
            Error::NotFound(m) => ApiError::not_found(m.clone()),
            Error::Invalid(m) => ApiError::bad_request(m.clone()),
            Error::Busy(m) => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-requests",
                m.clone(),
            ),
            Error::Script(s) => script_error(s),
            Error::Backend(b) if unreachable_store(b) => ApiError::unavailable(chain(&e)),
            _ => ApiError::internal(chain(&e)),
        }
    }
}

fn script_error(e: &latchkey_host::ScriptError) -> ApiError {
    use latchkey_host::ScriptError as S;
    match e {
        S::Disabled | S::KeyNotAllowed { .. } => ApiError::forbidden(e.to_string()),
        S::NoToolchain(_) => ApiError::unavailable(e.to_string()),
        S::Busy => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too-many-requests",
            e.to_string(),
        ),
        S::Key(_) | S::Policy(_) | S::TooLarge { .. } | S::Build(_) | S::BuildTimeout(_) => {
            ApiError::bad_request(e.to_string())
        }
        S::Io(_) => ApiError::internal(chain(e)),
    }
}

fn store_error(s: &StoreError, e: &Error) -> ApiError {
    match s {
        // The library names the CLI's flag; an API caller sets a field of the request.
        StoreError::WeakValue(w) => ApiError::bad_request(format!(
            "the value is easy to guess (estimated {} bits of guessing work; at least 64 are required): use a generated key, or send \"allow_weak_value\": true to store it anyway",
            w.estimated_bits
        )),
        StoreError::NotFound { .. } => ApiError::not_found(e.to_string()),
        // Two admins changing one secret at once (on one host or two): the loser retries.
        StoreError::Conflict { .. } => {
            ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string())
        }
        StoreError::Value(_)
        | StoreError::Integration(_)
        | StoreError::Quota(_)
        | StoreError::Key(_)
        | StoreError::Kind(_) => ApiError::bad_request(e.to_string()),
        StoreError::Backend(b) | StoreError::Audit(AuditError::Backend(b))
            if unreachable_store(b) =>
        {
            ApiError::unavailable(chain(e))
        }
        _ => ApiError::internal(chain(e)),
    }
}

/// The shared database went away: a 503 the client may retry, not a server fault.
fn unreachable_store(b: &BackendError) -> bool {
    matches!(b, BackendError::Unavailable { .. })
}
