//! Host side of `latchkey:workflow/http`: validate → resolve and check → inject → send →
//! scrub. Nothing is sent unless every credential in the request passes its binding.

use super::DestinationRefused;
use crate::audit::AuditEvent;
use crate::bindings::wit_http::{self, Body, Error, Method, Request, Response, ValuePart};
use crate::credentials::CredentialHandle;
use crate::policy::{Destination, InjectLocation};
use crate::resolve::{self, ResolveError, Resolved};
use crate::sandbox::{HostState, Limits};
use crate::secret::{CredentialKey, SecretValue};
use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::time::Duration;
use wasmtime::component::Resource;
use zeroize::Zeroizing;

/// Headers the guest may not set: the client manages them, or they would let a request
/// smuggle or re-route.
const FORBIDDEN_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-connection",
    "accept-encoding",
];

/// A refusal the guest sees (the inner WIT error), or a trap (outer).
enum Refusal {
    Guest(Error),
    Trap(wasmtime::Error),
}

impl From<wasmtime::Error> for Refusal {
    fn from(e: wasmtime::Error) -> Self {
        Refusal::Trap(e)
    }
}

fn invalid(msg: impl Into<String>) -> Refusal {
    Refusal::Guest(Error::InvalidRequest(msg.into()))
}

fn denied(msg: impl Into<String>) -> Refusal {
    Refusal::Guest(Error::Denied(msg.into()))
}

/// One credential used in the request, before its value is fetched.
struct Use {
    key: CredentialKey,
    location: InjectLocation,
}

/// A request ready to send: everything checked, values injected.
struct Prepared {
    method: reqwest::Method,
    url: url::Url,
    destination: String,
    headers: HeaderMap,
    body: Option<Vec<u8>>,
    timeout: Duration,
    injected: Vec<(CredentialKey, Resolved, InjectLocation)>,
}

impl wit_http::Host for HostState {
    async fn fetch(&mut self, request: Request) -> wasmtime::Result<Result<Response, Error>> {
        if self.fetches >= self.limits().max_fetches {
            return Ok(Err(Error::LimitExceeded(format!(
                "this run may make at most {} fetches",
                self.limits().max_fetches
            ))));
        }
        self.fetches += 1;
        let prepared = match self.prepare(request) {
            Ok(p) => p,
            Err(Refusal::Guest(e)) => return Ok(Err(e)),
            Err(Refusal::Trap(t)) => return Err(t),
        };
        let client = self.shared.client.clone();
        let limits = self.limits().clone();
        let received = exchange(client, &prepared, &limits).await;
        let result = received
            .and_then(|r| self.scrub_response(r))
            .map_err(|e| self.scrub_error(e));
        let outcome = match &result {
            Ok(r) => format!("status {}", r.status),
            Err(e) => format!("not completed: {}", error_summary(e)),
        };
        for (key, resolved, location) in &prepared.injected {
            self.audit(
                AuditEvent::Inject,
                key,
                Some(resolved),
                Some(prepared.destination.clone()),
                Some(location.to_string()),
                outcome.clone(),
            );
        }
        Ok(result)
    }
}

fn error_summary(e: &Error) -> String {
    match e {
        Error::InvalidRequest(m) => format!("invalid request: {m}"),
        Error::Denied(m) => format!("denied: {m}"),
        Error::Transport(m) => format!("transport: {m}"),
        Error::Timeout => "timeout".into(),
        Error::LimitExceeded(m) => format!("limit: {m}"),
    }
}

impl HostState {
    fn handle_key(&self, handle: &Resource<CredentialHandle>) -> Result<CredentialKey, Refusal> {
        // An unknown or dropped handle is a guest bug or an attack: trap.
        Ok(self
            .table
            .get(handle)
            .map_err(wasmtime::Error::from)?
            .key
            .clone())
    }

    /// Concatenates parts; secret parts become placeholders resolved later.
    fn collect_parts(
        &self,
        parts: &[ValuePart],
        location: &InjectLocation,
        uses: &mut Vec<Use>,
    ) -> Result<Vec<Piece>, Refusal> {
        let mut out = Vec::with_capacity(parts.len());
        for p in parts {
            match p {
                ValuePart::Text(t) => out.push(Piece::Text(t.clone())),
                ValuePart::Secret(h) => {
                    let key = self.handle_key(h)?;
                    uses.push(Use {
                        key: key.clone(),
                        location: location.clone(),
                    });
                    out.push(Piece::Secret(key));
                }
            }
        }
        Ok(out)
    }

    fn prepare(&mut self, req: Request) -> Result<Prepared, Refusal> {
        let limits = self.limits().clone();
        // The one parse: what is checked below is what is sent.
        let mut url =
            url::Url::parse(&req.url).map_err(|e| invalid(format!("invalid URL: {e}")))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(invalid(format!(
                "unsupported URL scheme {:?}: use https",
                url.scheme()
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(
                "URLs with user info are refused; use basic-auth with a credential",
            ));
        }
        if url.host().is_none() {
            return Err(invalid("the URL has no host"));
        }
        url.set_fragment(None);
        let method = match req.method {
            Method::Get => reqwest::Method::GET,
            Method::Head => reqwest::Method::HEAD,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Patch => reqwest::Method::PATCH,
            Method::Delete => reqwest::Method::DELETE,
            Method::Options => reqwest::Method::OPTIONS,
        };

        let mut uses = Vec::new();
        if req.headers.len() > limits.max_request_headers {
            return Err(invalid(format!(
                "more than {} request headers",
                limits.max_request_headers
            )));
        }
        // Headers: names checked, secrets noted.
        let mut header_pieces = Vec::with_capacity(req.headers.len());
        for h in &req.headers {
            let name = HeaderName::from_bytes(h.name.as_bytes())
                .map_err(|_| invalid(format!("invalid header name {:?}", truncate(&h.name))))?;
            if FORBIDDEN_HEADERS.contains(&name.as_str()) {
                return Err(invalid(format!(
                    "the header {name} is set by the host and may not be set by a guest"
                )));
            }
            let pieces = self.collect_parts(
                &h.value,
                &InjectLocation::Header(name.as_str().to_owned()),
                &mut uses,
            )?;
            header_pieces.push((name, pieces));
        }
        let mut query_pieces = Vec::with_capacity(req.query.len());
        for q in &req.query {
            if q.name.is_empty() {
                return Err(invalid("empty query parameter name"));
            }
            let pieces =
                self.collect_parts(&q.value, &InjectLocation::Query(q.name.clone()), &mut uses)?;
            query_pieces.push((q.name.clone(), pieces));
        }
        let basic = match &req.basic_auth {
            Some(b) => {
                if b.username.contains(':') || b.username.chars().any(|c| c.is_control()) {
                    return Err(invalid(
                        "a basic-auth username may not contain ':' or control characters",
                    ));
                }
                let key = self.handle_key(&b.password)?;
                uses.push(Use {
                    key: key.clone(),
                    location: InjectLocation::BasicAuth,
                });
                Some((b.username.clone(), key))
            }
            None => None,
        };
        let body_pieces = match &req.body {
            None => None,
            Some(Body::Bytes(b)) => Some(vec![Piece::Bytes(b.clone())]),
            Some(Body::Template(parts)) => {
                Some(self.collect_parts(parts, &InjectLocation::Body, &mut uses)?)
            }
        };

        // A header carrying a credential may not also be set by the guest, and basic auth
        // owns `authorization`: refused, never merged.
        for (i, (name, pieces)) in header_pieces.iter().enumerate() {
            let carries_secret = pieces.iter().any(|p| matches!(p, Piece::Secret(_)));
            let duplicate = header_pieces
                .iter()
                .enumerate()
                .any(|(j, (n, _))| j != i && n == name);
            if carries_secret && duplicate {
                return Err(invalid(format!(
                    "the header {name} carries a credential and is set more than once"
                )));
            }
            if basic.is_some() && name == http::header::AUTHORIZATION {
                return Err(invalid(
                    "the authorization header is set by basic-auth and may not also be set by the guest",
                ));
            }
        }

        // Destination, from the parsed URL.
        let host = url.host().ok_or_else(|| invalid("the URL has no host"))?;
        let port = url
            .port_or_known_default()
            .ok_or_else(|| invalid("the URL has no port"))?;
        let scheme = url.scheme().to_owned();
        let destination = format!("{scheme}://{}:{port}", host);
        let dest = Destination {
            scheme: &scheme,
            host: &host,
            port,
        };

        // Resolve each key once, decrypt, check the binding for every place it goes.
        let mut values: Values = Vec::new();
        for u in &uses {
            if !values.iter().any(|(k, _, _)| *k == u.key) {
                match resolve::resolve_value(&self.shared.store, &self.ctx, &u.key) {
                    Ok((resolved, value)) => values.push((u.key.clone(), resolved, value)),
                    Err(ResolveError::Store(e)) => {
                        return Err(Refusal::Trap(wasmtime::Error::msg(format!(
                            "credential store failure: {e}"
                        ))));
                    }
                    Err(e) => {
                        let msg =
                            format!("credential {} is no longer available to this step", u.key);
                        self.audit(
                            AuditEvent::InjectDenied,
                            &u.key,
                            None,
                            Some(destination.clone()),
                            Some(u.location.to_string()),
                            e.to_string(),
                        );
                        return Err(denied(msg));
                    }
                }
            }
        }
        for u in &uses {
            let (resolved, value) = entry_for(&values, &u.key)?;
            let binding = &resolved.meta.binding;
            let refusal = if !binding.allows_destination(dest) {
                if scheme == "http"
                    && binding
                        .hosts
                        .iter()
                        .any(|p| p.matches(&host, port, &scheme))
                {
                    Some(format!("credential {} may only be sent over https", u.key))
                } else {
                    Some(format!(
                        "credential {} may not be sent to {destination}",
                        u.key
                    ))
                }
            } else if !binding.allows_location(&u.location) {
                Some(format!(
                    "credential {} may not be injected into {}",
                    u.key, u.location
                ))
            } else if u.location.needs_header_safe_value() && !value.is_header_safe() {
                Some(format!(
                    "credential {} cannot be injected into {}: its value is not header-safe",
                    u.key, u.location
                ))
            } else {
                None
            };
            if let Some(msg) = refusal {
                self.audit(
                    AuditEvent::InjectDenied,
                    &u.key,
                    Some(resolved),
                    Some(destination.clone()),
                    Some(u.location.to_string()),
                    msg.clone(),
                );
                return Err(denied(msg));
            }
        }
        // An IP literal never goes through the resolver: check it here.
        let literal_ip = match host {
            url::Host::Ipv4(a) => Some(std::net::IpAddr::V4(a)),
            url::Host::Ipv6(a) => Some(std::net::IpAddr::V6(a)),
            url::Host::Domain(_) => None,
        };
        if let Some(ip) = literal_ip
            && let Err(reason) = self.shared.address_policy.check(ip)
        {
            return Err(denied(format!(
                "destination {destination} refused: {reason} address"
            )));
        }

        // Inject. Plaintext is assembled in zeroizing buffers.
        let mut headers = HeaderMap::new();
        for (name, pieces) in &header_pieces {
            let bytes = assemble(pieces, &values)?;
            if bytes.iter().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
                return Err(invalid(format!(
                    "the value of header {name} contains CR, LF or NUL"
                )));
            }
            let mut v = HeaderValue::from_bytes(&bytes)
                .map_err(|_| invalid(format!("invalid value for header {name}")))?;
            if pieces.iter().any(|p| matches!(p, Piece::Secret(_))) {
                v.set_sensitive(true);
                self.scrubber.add_exact(&bytes);
            }
            headers.append(name.clone(), v);
        }
        if let Some((user, key)) = &basic {
            let mut creds = Zeroizing::new(format!("{user}:").into_bytes());
            creds.extend_from_slice(value_for(&values, key)?.expose());
            let blob = Zeroizing::new(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(creds.as_slice())
            ));
            let mut v =
                HeaderValue::from_str(&blob).map_err(|_| invalid("invalid basic-auth value"))?;
            v.set_sensitive(true);
            self.scrubber.add_exact(blob.as_bytes());
            headers.insert(http::header::AUTHORIZATION, v);
        }
        // The host owns content coding: an encoded response could not be scrubbed.
        headers.insert(
            http::header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        if !query_pieces.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (name, pieces) in &query_pieces {
                let bytes = assemble(pieces, &values)?;
                if bytes.iter().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
                    return Err(invalid(format!(
                        "the value of query parameter {name} contains CR, LF or NUL"
                    )));
                }
                pairs.append_pair(name, &String::from_utf8_lossy(&bytes));
            }
        }
        let body = match body_pieces {
            Some(p) => Some(assemble(&p, &values)?.to_vec()),
            None => None,
        };
        if body
            .as_ref()
            .is_some_and(|b| b.len() > limits.max_request_body)
        {
            return Err(Refusal::Guest(Error::LimitExceeded(format!(
                "request body larger than {} bytes",
                limits.max_request_body
            ))));
        }
        let injected = uses
            .iter()
            .map(|u| {
                entry_for(&values, &u.key)
                    .map(|(r, _)| (u.key.clone(), r.clone(), u.location.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        for (_, _, v) in &values {
            self.scrubber.add_value(v.expose());
        }
        let timeout = req
            .timeout_ms
            .map(|ms| Duration::from_millis(u64::from(ms)))
            .map_or(limits.request_timeout, |t| t.min(limits.request_timeout));
        Ok(Prepared {
            method,
            url,
            destination,
            headers,
            body,
            timeout,
            injected,
        })
    }
}

/// A transport error in words the guest may see: no URL (it may carry a query
/// credential), and destination refusals reported as such. Scrubbed by the caller.
fn transport_error(e: reqwest::Error) -> Error {
    {
        if e.is_timeout() {
            return Error::Timeout;
        }
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(s) = source {
            if let Some(r) = s.downcast_ref::<DestinationRefused>() {
                return Error::Denied(r.to_string());
            }
            source = s.source();
        }
        // reqwest's Display names only the outermost error; the cause is what helps.
        let e = e.without_url();
        let mut msg = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            source = s.source();
        }
        Error::Transport(msg)
    }
}

/// A response as received, before scrubbing.
struct Received {
    status: u16,
    headers: HeaderMap,
    body: Zeroizing<Vec<u8>>,
}

impl HostState {
    /// What the guest gets: every value injected in this run scrubbed from header names,
    /// header values and body. A compressed body cannot be scrubbed, so once any value has
    /// been injected, encoded bodies are refused (the host asks for `identity`).
    fn scrub_response(&self, r: Received) -> Result<Response, Error> {
        let encoded = r
            .headers
            .get(http::header::CONTENT_ENCODING)
            .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
        if encoded && !self.scrubber.is_empty() {
            return Err(Error::Denied(
                "the response is content-encoded (compressed) and cannot be checked for credential values".into(),
            ));
        }
        let lossy = |b: &[u8]| String::from_utf8_lossy(&self.scrubber.scrub(b)).into_owned();
        let headers = r
            .headers
            .iter()
            .map(|(n, v)| (lossy(n.as_str().as_bytes()), lossy(v.as_bytes())))
            .collect();
        Ok(Response {
            status: r.status,
            headers,
            body: self.scrubber.scrub(&r.body),
        })
    }

    fn scrub_error(&self, e: Error) -> Error {
        let clean =
            |m: String| String::from_utf8_lossy(&self.scrubber.scrub(m.as_bytes())).into_owned();
        match e {
            Error::Transport(m) => Error::Transport(clean(m)),
            Error::Denied(m) => Error::Denied(clean(m)),
            other => other,
        }
    }
}

/// Sends the request and reads the response within the request's time limit and the
/// size limits. Holds no reference to the host state across an await.
async fn exchange(
    client: reqwest::Client,
    p: &Prepared,
    limits: &Limits,
) -> Result<Received, Error> {
    let mut rb = client
        .request(p.method.clone(), p.url.clone())
        .headers(p.headers.clone());
    if let Some(b) = &p.body {
        rb = rb.body(b.clone());
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
    match tokio::time::timeout(p.timeout, exchange).await {
        Ok(r) => r,
        Err(_) => Err(Error::Timeout),
    }
}

/// A piece of a header, query or body value.
enum Piece {
    Text(String),
    Bytes(Vec<u8>),
    Secret(CredentialKey),
}

type Values = Vec<(CredentialKey, Resolved, SecretValue)>;

/// The resolution and value of `key`; every key in a request is resolved before use.
fn entry_for<'v>(
    values: &'v Values,
    key: &CredentialKey,
) -> Result<(&'v Resolved, &'v SecretValue), Refusal> {
    values
        .iter()
        .find(|(k, _, _)| k == key)
        .map(|(_, r, v)| (r, v))
        .ok_or_else(|| {
            Refusal::Trap(wasmtime::Error::msg(
                "credential used but not resolved (host bug)",
            ))
        })
}

fn value_for<'v>(values: &'v Values, key: &CredentialKey) -> Result<&'v SecretValue, Refusal> {
    entry_for(values, key).map(|(_, v)| v)
}

fn assemble(pieces: &[Piece], values: &Values) -> Result<Zeroizing<Vec<u8>>, Refusal> {
    let mut out = Zeroizing::new(Vec::new());
    for p in pieces {
        match p {
            Piece::Text(t) => out.extend_from_slice(t.as_bytes()),
            Piece::Bytes(b) => out.extend_from_slice(b),
            Piece::Secret(k) => out.extend_from_slice(value_for(values, k)?.expose()),
        }
    }
    Ok(out)
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}
