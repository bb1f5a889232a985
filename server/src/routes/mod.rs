//! The routes, one module per resource.

pub mod access;
pub mod registry;
pub mod runs;
pub mod secrets;

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use std::sync::Arc;

/// `GET /healthz`: the process answers.
#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = "health", responses((status = 200, description = "the process answers", body = String, content_type = "text/plain")))]
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /readyz`: ready to take runs (not draining for shutdown).
#[utoipa::path(get, path = "/readyz", operation_id = "readyz", tag = "health", responses((status = 200, description = "ready to take runs", body = String, content_type = "text/plain"), (status = 503, description = "draining for shutdown", body = String, content_type = "text/plain")))]
pub async fn readyz(State(state): State<Arc<AppState>>) -> (StatusCode, &'static str) {
    if state.draining.load(std::sync::atomic::Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}

/// How the server is reached, for the checks that depend on it.
#[derive(Debug, Clone, Copy)]
pub struct Transport {
    /// The server speaks TLS (off loopback it must).
    pub tls: bool,
}

/// `GET /metrics`: Prometheus text format, public like `/healthz`. Over plain HTTP the
/// server listens on loopback only, where a page on another site could still read it
/// under a name of its own re-pointed at 127.0.0.1 (DNS rebinding): the browser then sends
/// that name as `Host`. So over plain HTTP only a `Host` naming the loopback is answered:
/// `localhost` or a loopback address, as a Prometheus scraping `127.0.0.1:PORT` sends. Over
/// TLS a rebinding page cannot get past the certificate check, and any name is answered.
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "health", responses((status = 200, description = "Prometheus text format 0.0.4, or OpenMetrics 1.0.0 when `Accept` asks for it", content((String = "text/plain; version=0.0.4"), (String = "application/openmetrics-text; version=1.0.0"))), (status = 403, description = "over plain HTTP, a Host that does not name the loopback", body = crate::api::ErrorBody)))]
pub async fn metrics(
    State(state): State<Arc<AppState>>,
    transport: Option<axum::Extension<Transport>>,
    headers: http::HeaderMap,
) -> Result<([(http::HeaderName, &'static str); 1], String), ApiError> {
    let tls = transport.is_some_and(|t| t.tls);
    if !tls && !names_loopback(headers.get(http::header::HOST)) {
        return Err(ApiError::forbidden(
            "over plain HTTP, /metrics answers only a Host naming this machine (localhost, 127.0.0.1, [::1]): scrape it by that address",
        ));
    }
    // Prometheus' text format 0.0.4 unless the scraper asks for OpenMetrics, as
    // Prometheus does when it may.
    let openmetrics = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    let content_type = if openmetrics {
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    } else {
        "text/plain; version=0.0.4; charset=utf-8"
    };
    Ok((
        [(http::header::CONTENT_TYPE, content_type)],
        state.metrics.encode(openmetrics),
    ))
}

/// Whether a `Host` header names the loopback: `localhost` or a loopback address, with
/// or without a port. A request without one is not from a browser (which always sends it).
fn names_loopback(host: Option<&http::HeaderValue>) -> bool {
    let Some(host) = host else { return true };
    let Ok(authority) = host
        .to_str()
        .unwrap_or_default()
        .parse::<http::uri::Authority>()
    else {
        return false;
    };
    let name = authority.host();
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    name.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// Counts every answered request by its route's template, method and status (the
/// router's own 404s and 405s, and 401s, included).
pub async fn count(
    State(state): State<Arc<AppState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let response = next.run(req).await;
    state
        .metrics
        .http_request(&route, &method, response.status().as_u16());
    response
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::names_loopback;

    #[test]
    fn only_loopback_hosts_are_loopback() {
        let host = |h: &str| http::HeaderValue::from_str(h).unwrap();
        for h in [
            "127.0.0.1:8700",
            "127.0.0.1",
            "localhost:1",
            "LocalHost",
            "[::1]:8700",
            "127.9.9.9",
        ] {
            assert!(names_loopback(Some(&host(h))), "{h}");
        }
        for h in [
            "localhost.evil.example",
            "127.0.0.1.nip.io:8700",
            "evil.example:8700",
            "10.0.0.1",
            "[::2]:1",
            "",
            "a b",
        ] {
            assert!(!names_loopback(Some(&host(h))), "{h}");
        }
        assert!(names_loopback(None));
    }
}
