//! Request extractors with precise errors: the caller from the bearer token (with its
//! rate limit), and JSON bodies that name the field that was wrong.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use latchkey_host::Principal;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// The authenticated caller: the principal its bearer token names. A request field can
/// never set it.
pub struct Caller(pub Principal);

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let Some(header) = parts.headers.get(http::header::AUTHORIZATION) else {
            return Err(ApiError::unauthorized(
                "missing bearer token (Authorization: Bearer lk_…)",
            ));
        };
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header is not `Bearer <token>`")
            })?;
        let principal = state.latchkey.authenticate(token.trim())?;
        state.rate_limit(principal.name())?;
        state.metrics.request(principal.role());
        Ok(Caller(principal))
    }
}

/// Refuses a request whose query string is not UTF-8 once percent-decoded, naming the
/// parameter. The query extractor decodes lossily: `scope=workspace:%FF` would address a
/// scope the client never sent (`workspace:\u{FFFD}`).
pub async fn utf8_query(req: Request, next: axum::middleware::Next) -> axum::response::Response {
    use axum::response::IntoResponse;
    match req.uri().query().map(check_query) {
        Some(Err(e)) => e.into_response(),
        _ => next.run(req).await,
    }
}

/// Each `name=value` pair of `query` decodes (`+` as space, then percent-escapes) to UTF-8.
fn check_query(query: &str) -> Result<(), ApiError> {
    let decode = |s: &str| {
        let spaced = s.replace('+', " ");
        percent_encoding::percent_decode_str(&spaced)
            .decode_utf8()
            .map(std::borrow::Cow::into_owned)
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = decode(name).map_err(|_| {
            ApiError::bad_request("query: a parameter name is not UTF-8 once percent-decoded")
        })?;
        if decode(value).is_err() {
            return Err(ApiError::bad_request(format!(
                "query: the value of {name:?} is not UTF-8 once percent-decoded"
            )));
        }
    }
    Ok(())
}

/// A JSON body: `application/json`, within the body limit, every field known.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "send the body as Content-Type: application/json",
            ));
        }
        let bytes = body_bytes(req, state).await?;
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let value = T::deserialize(&mut de)
            .and_then(|v| de.end().map(|()| v))
            .map_err(|e| {
                ApiError::bad_request(format!(
                    "invalid JSON body: {}",
                    without_strings(&e.to_string())
                ))
            })?;
        Ok(JsonBody(value))
    }
}

/// The body's bytes, or 413 when over the route's limit.
pub async fn body_bytes<S: Send + Sync>(
    req: Request,
    state: &S,
) -> Result<axum::body::Bytes, ApiError> {
    axum::body::Bytes::from_request(req, state)
        .await
        .map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload-too-large",
                    "the request body is larger than this endpoint accepts",
                )
            } else {
                ApiError::bad_request(format!("could not read the request body: {e}"))
            }
        })
}

/// serde_json's message without any string it quotes from the input (`invalid type:
/// string "…"`): a value sent in the wrong field must not come back in an error, where a
/// proxy or a client log could keep it.
fn without_strings(message: &str) -> String {
    const QUOTED: &str = "string \"";
    let mut out = String::new();
    let mut rest = message;
    while let Some(i) = rest.find(QUOTED) {
        out.push_str(&rest[..i]);
        out.push_str("a string");
        let after = &rest[i + QUOTED.len()..];
        rest = match after.find("\", expected") {
            Some(j) => &after[j + 1..],
            None => "",
        };
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn a_query_that_is_not_utf8_is_refused_naming_the_parameter() {
        for ok in [
            "",
            "scope=workspace:caf%C3%A9",
            "a=1&&b=x+y",
            "flag",
            "k=%25FF",
        ] {
            assert!(super::check_query(ok).is_ok(), "{ok}");
        }
        let message = |q: &str| super::check_query(q).unwrap_err().message;
        assert!(message("a=1&scope=workspace:%FF%FE").contains("\"scope\""));
        assert!(message("scope=ok%C3").contains("\"scope\""));
        assert!(message("%FF=1").contains("parameter name"));
    }

    #[test]
    fn quoted_input_is_dropped_from_json_errors() {
        let e = serde_json::from_str::<u64>("\"tok-secret\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("tok-secret"), "serde_json quotes input: {e}");
        let shown = super::without_strings(&e);
        assert!(!shown.contains("tok-secret"), "{shown}");
        assert!(
            shown.contains("invalid type: a string, expected u64"),
            "{shown}"
        );
    }
}
