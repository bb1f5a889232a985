//! Step one of a fetch: the guest's request checked for shape and size, with every
//! credential use noted, before any value is resolved or any buffer sized by the guest is
//! allocated.
//!
//! Everything the guest controls is bounded here (headers, query parameters, parts per
//! value, the text around secret parts, secret parts per request), so the steps after it
//! work on bounded input. No limit here depends on a value's length: a refusal must not
//! tell a guest how long a value is.

use super::refusal::{Refusal, invalid, limit};
use crate::bindings::CredentialHandle;
use crate::bindings::wit_http::{
    BasicAuth, Body, Header, Method, QueryParam, Request, SignatureEncoding, ValuePart,
};
use crate::limits::Limits;
use crate::policy::{self, InjectLocation};
use crate::secret::CredentialKey;
use http::HeaderName;
use wasmtime::component::{Resource, ResourceTable};

/// How a signature is written into the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Encoding {
    /// Lowercase hex.
    Hex,
    /// Standard base64 with padding.
    Base64,
}

/// A piece of a header, query or body value: guest text, or a credential's value that the
/// host puts in place at send time.
pub(super) enum Piece {
    Text(Vec<u8>),
    Secret(CredentialKey),
    /// The signature the host computes with this signing credential over the body sent.
    Signature(CredentialKey, Encoding),
}

impl Piece {
    /// Whether the host puts something of a credential's here (a value or a signature).
    pub fn is_credential(&self) -> bool {
        !matches!(self, Piece::Text(_))
    }
}

/// One place a credential goes in this request. For a body template the location is
/// [`InjectLocation::Body`], "somewhere in the body": which field is known once the body is
/// parsed, and the host checks that field against the binding then.
pub(super) struct Use {
    pub key: CredentialKey,
    pub location: InjectLocation,
    /// A signature part: the credential must be a signing key, and only the signature
    /// goes here.
    pub signature: bool,
}

/// A body as the guest gave it.
pub(super) enum PlannedBody {
    Bytes(Vec<u8>),
    Template(Vec<Piece>),
}

/// A request checked for shape and size, its credentials not yet resolved.
pub(super) struct Plan {
    pub method: reqwest::Method,
    pub url: url::Url,
    pub headers: Vec<(HeaderName, Vec<Piece>)>,
    pub query: Vec<(String, Vec<Piece>)>,
    pub basic: Option<(String, CredentialKey)>,
    pub body: Option<PlannedBody>,
    pub timeout_ms: Option<u32>,
    /// Every credential use, in request order.
    pub uses: Vec<Use>,
    /// [`Plan::overrides_method`], worked out at its first call.
    method_override: std::cell::OnceCell<bool>,
}

impl Plan {
    /// Whether the request carries a `_method` override (in the URL's query, a query
    /// parameter or the body: see [`policy::method_override`]). Read only for credentials
    /// whose binding names methods, once per request.
    pub fn overrides_method(&self) -> bool {
        *self.method_override.get_or_init(|| {
            let from_url: Vec<String> = self
                .url
                .query_pairs()
                .map(|(n, _)| n.into_owned())
                .collect();
            let names = from_url
                .iter()
                .map(String::as_str)
                .chain(self.query.iter().map(|(n, _)| n.as_str()));
            let body: std::borrow::Cow<'_, [u8]> = match &self.body {
                None => std::borrow::Cow::Borrowed(&[]),
                Some(PlannedBody::Bytes(b)) => std::borrow::Cow::Borrowed(b),
                // The guest's text alone: a credential is never a field's name.
                Some(PlannedBody::Template(pieces)) => pieces
                    .iter()
                    .filter_map(|p| match p {
                        Piece::Text(t) => Some(t.as_slice()),
                        _ => None,
                    })
                    .flatten()
                    .copied()
                    .collect(),
            };
            policy::method_override::overrides_method(names, &body)
        })
    }
}

/// Checks `req` against `limits` and notes every credential use. A handle that is not in
/// `table` is a guest bug or an attack: that is a trap, not a refusal.
///
/// URL → counts → headers → query → basic auth → body → conflicts between headers →
/// secret parts per request. Each step refuses before the next allocates anything.
pub(super) fn plan(req: Request, limits: &Limits, table: &ResourceTable) -> Result<Plan, Refusal> {
    let url = parse_url(&req.url)?;
    let method = method(req.method);
    check_counts(&req, limits)?;
    let mut planner = Planner {
        limits,
        table,
        uses: Vec::new(),
    };
    let headers = planner.headers(req.headers)?;
    let query = planner.query(req.query)?;
    let basic = planner.basic_auth(req.basic_auth)?;
    let body = planner.body(req.body)?;
    check_header_conflicts(&headers, basic.is_some())?;
    if planner.uses.len() > limits.max_secret_parts {
        return Err(too_many_secrets(limits));
    }
    Ok(Plan {
        method,
        url,
        headers,
        query,
        basic,
        body,
        timeout_ms: req.timeout_ms,
        uses: planner.uses,
        method_override: std::cell::OnceCell::new(),
    })
}

/// Refuses more headers or query parameters than the limits allow, before any is read.
fn check_counts(req: &Request, limits: &Limits) -> Result<(), Refusal> {
    if req.headers.len() > limits.max_request_headers {
        return Err(limit(format!(
            "more than {} request headers",
            limits.max_request_headers
        )));
    }
    if req.query.len() > limits.max_query_params {
        return Err(limit(format!(
            "more than {} query parameters",
            limits.max_query_params
        )));
    }
    Ok(())
}

/// A header carrying a credential may not also be set by the guest, and basic auth owns
/// `authorization`: refused, never merged.
fn check_header_conflicts(
    headers: &[(HeaderName, Vec<Piece>)],
    basic_auth: bool,
) -> Result<(), Refusal> {
    for (i, (name, pieces)) in headers.iter().enumerate() {
        let carries_secret = pieces.iter().any(Piece::is_credential);
        let duplicate = headers
            .iter()
            .enumerate()
            .any(|(j, (n, _))| j != i && n == name);
        if carries_secret && duplicate {
            return Err(invalid(format!(
                "the header {name} carries a credential and is set more than once"
            )));
        }
        if basic_auth && name == http::header::AUTHORIZATION {
            return Err(invalid(
                "the authorization header is set by basic-auth and may not also be set by the guest",
            ));
        }
    }
    Ok(())
}

/// What planning carries from one part of the request to the next: the limits, the table
/// the guest's handles refer to, and every credential use noted so far (in request order).
struct Planner<'a> {
    limits: &'a Limits,
    table: &'a ResourceTable,
    uses: Vec<Use>,
}

impl Planner<'_> {
    fn headers(&mut self, headers: Vec<Header>) -> Result<Vec<(HeaderName, Vec<Piece>)>, Refusal> {
        let mut out = Vec::with_capacity(headers.len());
        for h in headers {
            let name = HeaderName::from_bytes(h.name.as_bytes())
                .map_err(|_| invalid(format!("invalid header name {:?}", shorten(&h.name))))?;
            if let Some(why) = policy::host_managed(name.as_str()) {
                return Err(invalid(format!(
                    "the header {name} may not be set by a step: {why}"
                )));
            }
            let location = InjectLocation::Header(name.as_str().to_owned());
            let what = format!("header {name}");
            let max_text = self.limits.max_header_value_bytes;
            let pieces = self.pieces(h.value, &location, &what, max_text)?;
            out.push((name, pieces));
        }
        Ok(out)
    }

    fn query(&mut self, query: Vec<QueryParam>) -> Result<Vec<(String, Vec<Piece>)>, Refusal> {
        let mut out = Vec::with_capacity(query.len());
        for q in query {
            if q.name.is_empty() {
                return Err(invalid("empty query parameter name"));
            }
            // The name becomes the audit record's location (`query:NAME`): with CR, LF or
            // ESC in it a step could print lines of its own on whoever reads the trail.
            if q.name.chars().any(char::is_control) {
                return Err(invalid(
                    "a query parameter name contains a control character",
                ));
            }
            let max_text = self.limits.max_header_value_bytes;
            if q.name.len() > max_text {
                return Err(limit(format!(
                    "a query parameter name is longer than {max_text} bytes"
                )));
            }
            let location = InjectLocation::Query(q.name.clone());
            let what = format!("query parameter {}", shorten(&q.name));
            let pieces = self.pieces(q.value, &location, &what, max_text)?;
            out.push((q.name, pieces));
        }
        Ok(out)
    }

    fn basic_auth(
        &mut self,
        basic: Option<BasicAuth>,
    ) -> Result<Option<(String, CredentialKey)>, Refusal> {
        let Some(b) = basic else { return Ok(None) };
        if b.username.contains(':') || b.username.chars().any(char::is_control) {
            return Err(invalid(
                "a basic-auth username may not contain ':' or control characters",
            ));
        }
        if b.username.len() > self.limits.max_header_value_bytes {
            return Err(limit(format!(
                "the basic-auth username is longer than {} bytes",
                self.limits.max_header_value_bytes
            )));
        }
        let key = handle_key(self.table, &b.password)?;
        self.uses.push(Use {
            key: key.clone(),
            location: InjectLocation::BasicAuth,
            signature: false,
        });
        Ok(Some((b.username, key)))
    }

    fn body(&mut self, body: Option<Body>) -> Result<Option<PlannedBody>, Refusal> {
        let limits = self.limits;
        Ok(match body {
            None => None,
            Some(Body::Bytes(b)) => {
                if b.len() > limits.max_request_body {
                    return Err(body_too_large(limits));
                }
                Some(PlannedBody::Bytes(b))
            }
            Some(Body::Template(parts)) => {
                if parts.iter().map(text_len).sum::<usize>() > limits.max_request_body {
                    return Err(body_too_large(limits));
                }
                let out = self.pieces(parts, &InjectLocation::Body, "the body", usize::MAX)?;
                Some(PlannedBody::Template(out))
            }
        })
    }

    /// The pieces of one header, query or body value, bounded in count, in guest text
    /// (`max_text`) and in secret parts per request; secret parts become
    /// [`Piece::Secret`] and a [`Use`] at `location`.
    fn pieces(
        &mut self,
        parts: Vec<ValuePart>,
        location: &InjectLocation,
        what: &str,
        max_text: usize,
    ) -> Result<Vec<Piece>, Refusal> {
        let limits = self.limits;
        if parts.len() > limits.max_value_parts {
            return Err(too_many_parts(what, limits));
        }
        let text: usize = parts.iter().map(text_len).sum();
        if text > max_text {
            return Err(value_too_long(what, limits));
        }
        let secrets = parts.len()
            - parts
                .iter()
                .filter(|p| matches!(p, ValuePart::Text(_)))
                .count();
        if self.uses.len() + secrets > limits.max_secret_parts {
            return Err(too_many_secrets(limits));
        }
        let mut out = Vec::with_capacity(parts.len());
        for p in parts {
            out.push(match p {
                ValuePart::Text(t) => Piece::Text(t.into_bytes()),
                ValuePart::Secret(h) => {
                    let key = handle_key(self.table, &h)?;
                    self.uses.push(Use {
                        key: key.clone(),
                        location: location.clone(),
                        signature: false,
                    });
                    Piece::Secret(key)
                }
                ValuePart::Signature(sig) => {
                    // A signature covers the body sent; it cannot be part of it.
                    if location.is_body() {
                        return Err(invalid(
                            "a signature covers the body and cannot be part of it: put it in a header or query parameter",
                        ));
                    }
                    let key = handle_key(self.table, &sig.key)?;
                    self.uses.push(Use {
                        key: key.clone(),
                        location: location.clone(),
                        signature: true,
                    });
                    Piece::Signature(
                        key,
                        match sig.encoding {
                            SignatureEncoding::Hex => Encoding::Hex,
                            SignatureEncoding::Base64 => Encoding::Base64,
                        },
                    )
                }
            });
        }
        Ok(out)
    }
}

/// The one parse of the URL: what is checked later is what is sent.
fn parse_url(text: &str) -> Result<url::Url, Refusal> {
    // A URL longer than a header value could not be sent anyway; refuse before parsing.
    if text.len() > 16 << 10 {
        return Err(limit("the URL is longer than 16 KiB"));
    }
    let mut url = url::Url::parse(text).map_err(|e| invalid(format!("invalid URL: {e}")))?;
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
    Ok(url)
}

fn method(m: Method) -> reqwest::Method {
    match m {
        Method::Get => reqwest::Method::GET,
        Method::Head => reqwest::Method::HEAD,
        Method::Post => reqwest::Method::POST,
        Method::Put => reqwest::Method::PUT,
        Method::Patch => reqwest::Method::PATCH,
        Method::Delete => reqwest::Method::DELETE,
        Method::Options => reqwest::Method::OPTIONS,
    }
}

fn text_len(p: &ValuePart) -> usize {
    match p {
        ValuePart::Text(t) => t.len(),
        ValuePart::Secret(_) | ValuePart::Signature(_) => 0,
    }
}

fn handle_key(
    table: &ResourceTable,
    handle: &Resource<CredentialHandle>,
) -> Result<CredentialKey, Refusal> {
    // An unknown or dropped handle is a guest bug or an attack: trap.
    Ok(table
        .get(handle)
        .map_err(wasmtime::Error::from)?
        .key
        .clone())
}

fn too_many_parts(what: &str, limits: &Limits) -> Refusal {
    limit(format!(
        "{what} has more than {} parts",
        limits.max_value_parts
    ))
}

fn value_too_long(what: &str, limits: &Limits) -> Refusal {
    limit(format!(
        "the text of {what} is longer than {} bytes",
        limits.max_header_value_bytes
    ))
}

fn too_many_secrets(limits: &Limits) -> Refusal {
    limit(format!(
        "a request may carry at most {} secret parts",
        limits.max_secret_parts
    ))
}

pub(super) fn invalid_value(what: &str) -> Refusal {
    invalid(format!(
        "the value of {what} contains CR, LF, NUL or another byte not allowed there"
    ))
}

fn body_too_large(limits: &Limits) -> Refusal {
    limit(format!(
        "request body larger than {} bytes",
        limits.max_request_body
    ))
}

/// A guest-chosen name, shortened for a message.
pub(super) fn shorten(s: &str) -> String {
    s.chars().take(64).collect()
}
