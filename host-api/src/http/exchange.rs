//! Sending a prepared request and reading the response within its time and size limits.

use super::clients::{DestinationRefused, failure_text};
use crate::bindings::wit_http::Error;
use crate::limits::Limits;
use http::HeaderMap;
use std::time::Duration;
use zeroize::Zeroizing;

/// A request ready to send: everything checked, values injected.
pub(super) struct Outgoing {
    pub method: reqwest::Method,
    pub url: url::Url,
    pub headers: HeaderMap,
    pub body: Option<Zeroizing<Vec<u8>>>,
}

/// A response as received, before scrubbing.
pub(super) struct Received {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Zeroizing<Vec<u8>>,
}

/// Sends `out` and reads the response within `timeout` and the size limits. Holds no
/// reference to the host state across an await.
pub(super) async fn exchange(
    client: reqwest::Client,
    out: Outgoing,
    limits: &Limits,
    timeout: Duration,
) -> Result<Received, Error> {
    let mut rb = client.request(out.method, out.url).headers(out.headers);
    if let Some(b) = out.body {
        rb = rb.body(b.to_vec());
    }
    let exchange = async {
        let mut resp = rb.send().await.map_err(transport_error)?;
        let status = resp.status().as_u16();
        if resp.headers().len() > limits.max_response_headers {
            return Err(Error::LimitExceeded(format!(
                "the response has more than {} headers",
                limits.max_response_headers
            )));
        }
        let too_big = || {
            Error::LimitExceeded(format!(
                "the response body is larger than {} bytes",
                limits.max_response_body
            ))
        };
        if resp
            .content_length()
            .is_some_and(|len| len > limits.max_response_body as u64)
        {
            return Err(too_big());
        }
        let headers = std::mem::take(resp.headers_mut());
        let mut body = Zeroizing::new(Vec::new());
        while let Some(chunk) = resp.chunk().await.map_err(transport_error)? {
            if body.len() + chunk.len() > limits.max_response_body {
                return Err(too_big());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Received {
            status,
            headers,
            body,
        })
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(r) => r,
        Err(_) => Err(Error::Timeout),
    }
}

/// A transport error in words the guest may see: the destination it failed to reach
/// (scheme, host and port, from the error's own URL: only on failure), never the URL's path
/// or query (a query can carry a credential), and destination refusals reported as such.
/// Scrubbed by the caller.
fn transport_error(e: reqwest::Error) -> Error {
    if e.is_timeout() {
        return Error::Timeout;
    }
    if let Some(r) = DestinationRefused::behind(&e) {
        return Error::Denied(r.to_string());
    }
    let destination = e.url().and_then(|url| {
        // `Host`'s Display brackets an IPv6 address.
        let port = url.port_or_known_default().unwrap_or_default();
        Some(format!("{}://{}:{port}: ", url.scheme(), url.host()?))
    });
    Error::Transport(format!(
        "{}{}",
        destination.unwrap_or_default(),
        failure_text(e)
    ))
}
