//! The web console at `/`: one HTML page, one script, one style sheet and the vendored
//! TweetNaCl.js (sealing values in the browser), compiled into the binary: nothing is
//! fetched from elsewhere at run time. The page only calls the `/v1` API, so the server
//! decides what each role may do; the console decides only what it shows.
//!
//! [`harden`] wraps every response of the server (page and API) in a strict
//! Content-Security-Policy and refuses state-changing requests sent from another origin.

use crate::error::ApiError;
use axum::Router;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderValue, Method, header};

/// Every asset of the console: (path, content type, bytes).
pub const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_bytes!("../console/index.html"),
    ),
    (
        "/console.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/console.js"),
    ),
    (
        "/console.css",
        "text/css; charset=utf-8",
        include_bytes!("../console/console.css"),
    ),
    (
        "/nacl.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/nacl.min.js"),
    ),
];

/// Only the server's own script, styles and API; no inline script or style, no plugins,
/// no framing, forms only to itself, `<base>` not at all.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The console's routes, one per asset.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    ASSETS
        .iter()
        .fold(Router::new(), |router, &(path, kind, bytes)| {
            router.route(
                path,
                get(move || async move {
                    (
                        [
                            (header::CONTENT_TYPE, kind),
                            // Revalidate each time: a new binary's page never runs an old script.
                            (header::CACHE_CONTROL, "no-cache"),
                        ],
                        bytes,
                    )
                }),
            )
        })
}

/// Whether a request that changes state comes from another origin: it carries an `Origin`
/// (browsers send one with every such request) that is not the server's own, as named by
/// `Host`. Clients that are not browsers send no `Origin` and are not affected.
fn cross_origin(req: &Request) -> bool {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return false;
    }
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return false;
    };
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    let authority = origin.to_str().ok().and_then(|o| {
        o.strip_prefix("http://")
            .or_else(|| o.strip_prefix("https://"))
    });
    match (authority, host) {
        (Some(a), Some(h)) => !a.eq_ignore_ascii_case(h),
        _ => true,
    }
}

/// Refuses cross-origin state changes, gives a bodiless error answer the JSON error body,
/// then adds the hardening headers to the answer.
///
/// The API authenticates only with a bearer token that the console's script puts in the
/// `Authorization` header; a browser never attaches that header by itself (no cookie, no
/// HTTP authentication), so a forged cross-site form or request arrives without it and is
/// refused as unauthenticated. The `Origin` check is a second wall that holds even if a
/// token ever reached another site's script: its request is refused before authentication.
pub async fn harden(req: Request, next: Next) -> Response {
    let mut response = if cross_origin(&req) {
        ApiError::forbidden(
            "cross-origin request refused: state-changing requests from a browser must come from this server's own page",
        )
        .into_response()
    } else {
        next.run(req).await
    };
    let status = response.status();
    if (status.is_client_error() || status.is_server_error())
        && !response.headers().contains_key(header::CONTENT_TYPE)
    {
        // The framework's own answers (a 405 from the router) come without a body: every
        // error answer carries the same `{error, message}` as the API's.
        let allow = response.headers().get(header::ALLOW).cloned();
        response = ApiError::for_status(status).into_response();
        if let Some(allow) = allow {
            response.headers_mut().insert(header::ALLOW, allow);
        }
    }
    let h = response.headers_mut();
    for (name, value) in HARDENING_HEADERS {
        h.insert(
            http::HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    response
}

/// The headers every answer carries (names lowercase), [`harden`]'s and those of the
/// answers hyper gives by itself (`crate::unparsed`).
pub const HARDENING_HEADERS: [(&str, &str); 6] = [
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
];
