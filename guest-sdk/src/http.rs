use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::latchkey::workflow::http as wit;
use crate::{Credential, Error};

/// HTTP request method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Method {
    /// `GET`
    Get,
    /// `HEAD`
    Head,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `PATCH`
    Patch,
    /// `DELETE`
    Delete,
    /// `OPTIONS`
    Options,
}

impl Method {
    fn to_wit(self) -> wit::Method {
        match self {
            Method::Get => wit::Method::Get,
            Method::Head => wit::Method::Head,
            Method::Post => wit::Method::Post,
            Method::Put => wit::Method::Put,
            Method::Patch => wit::Method::Patch,
            Method::Delete => wit::Method::Delete,
            Method::Options => wit::Method::Options,
        }
    }

    fn from_wit(method: wit::Method) -> Self {
        match method {
            wit::Method::Get => Method::Get,
            wit::Method::Head => Method::Head,
            wit::Method::Post => Method::Post,
            wit::Method::Put => Method::Put,
            wit::Method::Patch => Method::Patch,
            wit::Method::Delete => Method::Delete,
            wit::Method::Options => Method::Options,
        }
    }

    /// The method's name as sent on the wire, e.g. `"GET"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A piece of a header value, query value or body template: literal text, or a credential
/// whose value the host puts in its place at send time.
///
/// ```no_run
/// # use latchkey_sdk::{credential, Part, Request};
/// # fn f() -> Result<(), latchkey_sdk::Error> {
/// let token = credential("GITHUB_TOKEN")?;
/// let req = Request::get("https://api.github.com/user")
///     .header_parts("authorization", [Part::text("token "), Part::secret(&token)]);
/// # Ok(()) }
/// ```
pub struct Part<'a>(wit::ValuePart<'a>);

impl<'a> Part<'a> {
    /// Literal text.
    pub fn text(text: impl Into<String>) -> Self {
        Part(wit::ValuePart::Text(text.into()))
    }

    /// The value of `credential`, filled in by the host.
    pub fn secret(credential: &'a Credential) -> Self {
        Part(wit::ValuePart::Secret(credential.raw()))
    }

    /// The signature the host computes with the signing key `credential` (stored with
    /// `--kind hmac-sha256`) over the exact body it sends, written in `encoding`. For
    /// headers and query parameters only; the key never leaves the host.
    pub fn signature(credential: &'a Credential, encoding: SignatureEncoding) -> Self {
        Part(wit::ValuePart::Signature(wit::Signature {
            key: credential.raw(),
            encoding: match encoding {
                SignatureEncoding::Hex => wit::SignatureEncoding::Hex,
                SignatureEncoding::Base64 => wit::SignatureEncoding::Base64,
            },
        }))
    }
}

/// How the host writes a signature: lowercase hex or standard base64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureEncoding {
    /// Lowercase hexadecimal (`sha256=5bdc…`, GitHub and most webhooks).
    Hex,
    /// Standard base64 with padding (Shopify-style webhooks).
    Base64,
}

impl Clone for Part<'_> {
    fn clone(&self) -> Self {
        // The generated type is not `Clone` because it holds a resource borrow, but a borrow
        // is freely copyable.
        Part(match &self.0 {
            wit::ValuePart::Text(text) => wit::ValuePart::Text(text.clone()),
            wit::ValuePart::Secret(raw) => wit::ValuePart::Secret(raw),
            wit::ValuePart::Signature(sig) => wit::ValuePart::Signature(wit::Signature {
                key: sig.key,
                encoding: sig.encoding,
            }),
        })
    }
}

impl fmt::Debug for Part<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        PartsDebug(std::slice::from_ref(&self.0)).fmt(f)
    }
}

/// Shows credentials as `Secret` instead of the generated types' raw handle numbers.
struct PartsDebug<'x, 'a>(&'x [wit::ValuePart<'a>]);

impl fmt::Debug for PartsDebug<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for part in self.0 {
            match part {
                wit::ValuePart::Text(text) => list.entry(text),
                wit::ValuePart::Secret(_) => list.entry(&format_args!("Secret")),
                wit::ValuePart::Signature(_) => list.entry(&format_args!("Signature")),
            };
        }
        list.finish()
    }
}

fn parts<'a>(parts: impl IntoIterator<Item = Part<'a>>) -> Vec<wit::ValuePart<'a>> {
    parts.into_iter().map(|p| p.0).collect()
}

/// An HTTP request, built step by step and sent with [`send`](Request::send).
///
/// The lifetime `'a` is that of the [`Credential`]s the request uses: they must outlive it,
/// just as the host borrows them for the duration of the call.
///
/// The URL must be absolute; the host decides which schemes, hosts and ports are allowed.
/// Nothing is checked before [`send`](Request::send): the host validates the whole request.
pub struct Request<'a> {
    inner: wit::Request<'a>,
}

impl<'a> Request<'a> {
    /// A request with `method` to `url`, without headers or body.
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Request {
            inner: wit::Request {
                method: method.to_wit(),
                url: url.into(),
                headers: Vec::new(),
                query: Vec::new(),
                basic_auth: None,
                body: None,
                timeout_ms: None,
            },
        }
    }

    /// A `GET` request.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new(Method::Get, url)
    }

    /// A `POST` request.
    pub fn post(url: impl Into<String>) -> Self {
        Self::new(Method::Post, url)
    }

    /// A `PUT` request.
    pub fn put(url: impl Into<String>) -> Self {
        Self::new(Method::Put, url)
    }

    /// A `PATCH` request.
    pub fn patch(url: impl Into<String>) -> Self {
        Self::new(Method::Patch, url)
    }

    /// A `DELETE` request.
    pub fn delete(url: impl Into<String>) -> Self {
        Self::new(Method::Delete, url)
    }

    /// A `HEAD` request.
    pub fn head(url: impl Into<String>) -> Self {
        Self::new(Method::Head, url)
    }

    /// Adds a header with a literal value. Headers are appended, so adding a name twice
    /// sends it twice.
    pub fn header(self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.header_parts(name, [Part::text(value)])
    }

    /// Adds a header whose value is the concatenation of `parts`, e.g.
    /// `[Part::text("token "), Part::secret(&cred)]`.
    pub fn header_parts(
        mut self,
        name: impl Into<String>,
        value: impl IntoIterator<Item = Part<'a>>,
    ) -> Self {
        self.inner.headers.push(wit::Header {
            name: name.into(),
            value: parts(value),
        });
        self
    }

    /// Adds a header whose whole value is the credential, e.g. `x-api-key`.
    pub fn header_secret(self, name: impl Into<String>, credential: &'a Credential) -> Self {
        self.header_parts(name, [Part::secret(credential)])
    }

    /// Has the host sign this request with AWS Signature Version 4, using an `aws-sigv4`
    /// credential: the host computes the `Authorization` header (and `x-amz-date`,
    /// `x-amz-content-sha256`, `x-amz-security-token`) over the request as it sends it.
    /// The step never sees the keys or the signature. Call it last or first: the host signs
    /// the final request either way.
    pub fn aws_sigv4(self, credential: &'a Credential) -> Self {
        self.header_secret("authorization", credential)
    }

    /// Adds `Authorization: Bearer <credential>`. With a `jwt-rs256` or `jwt-es256`
    /// credential, the host puts a JWT it mints for this request there.
    pub fn bearer(self, credential: &'a Credential) -> Self {
        self.header_parts(
            "authorization",
            [Part::text("Bearer "), Part::secret(credential)],
        )
    }

    /// Uses HTTP basic authentication with `username` and the credential as the password.
    /// The host builds the `Authorization` header. A second call replaces the first.
    pub fn basic_auth(mut self, username: impl Into<String>, password: &'a Credential) -> Self {
        self.inner.basic_auth = Some(wit::BasicAuth {
            username: username.into(),
            password: password.raw(),
        });
        self
    }

    /// Appends a query parameter; the host percent-encodes name and value.
    pub fn query(self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.query_parts(name, [Part::text(value)])
    }

    /// Appends a query parameter whose value is the credential, e.g. `?api_key=...`.
    pub fn query_secret(self, name: impl Into<String>, credential: &'a Credential) -> Self {
        self.query_parts(name, [Part::secret(credential)])
    }

    /// Appends a query parameter whose value is the concatenation of `parts`.
    pub fn query_parts(
        mut self,
        name: impl Into<String>,
        value: impl IntoIterator<Item = Part<'a>>,
    ) -> Self {
        self.inner.query.push(wit::QueryParam {
            name: name.into(),
            value: parts(value),
        });
        self
    }

    /// Sets the body to `value` serialized as JSON, and `content-type: application/json`
    /// unless a content type was set already.
    ///
    /// Returns `Err(Error::Json)` if `value` cannot be serialized (a map with non-string keys,
    /// a failing `Serialize` impl): failing here, rather than at `send`, points at the cause.
    pub fn json<T: Serialize + ?Sized>(self, value: &T) -> Result<Self, Error> {
        let bytes = serde_json::to_vec(value)?;
        let has_type = self
            .inner
            .headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("content-type"));
        let this = if has_type {
            self
        } else {
            self.header("content-type", "application/json")
        };
        Ok(this.body(bytes))
    }

    /// Sets the body to these bytes. Set `content-type` yourself.
    pub fn body(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.inner.body = Some(wit::Body::Bytes(bytes.into()));
        self
    }

    /// Sets the body to the concatenation of `parts`, with credentials filled in by the host.
    /// The body must be JSON or form-encoded, and each credential must be a whole string
    /// value in a field its binding names (`body:json:/password`, `body:form:password`):
    /// `[Part::text(r#"{"user": "ann", "password": ""#), Part::secret(&cred), Part::text(r#""}"#)]`.
    /// The host re-serialises the body, encodes the value and sets the Content-Type.
    pub fn body_template(mut self, parts: impl IntoIterator<Item = Part<'a>>) -> Self {
        self.inner.body = Some(wit::Body::Template(self::parts(parts)));
        self
    }

    /// Limits the whole request to `timeout` (rounded up to a millisecond). The host caps it
    /// with its own limit.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        let ms = timeout.as_nanos().div_ceil(1_000_000);
        self.inner.timeout_ms = Some(u32::try_from(ms).unwrap_or(u32::MAX));
        self
    }

    /// Adds header `name` = `prefix` followed by the HMAC-SHA256 signature of the body,
    /// computed by the host with the signing key `credential`, e.g.
    /// `.header_signature("x-hub-signature-256", "sha256=", &key, SignatureEncoding::Hex)`.
    /// The signature covers exactly the bytes sent, so set the body before or after: the
    /// host signs at send time.
    pub fn header_signature(
        self,
        name: impl Into<String>,
        prefix: impl Into<String>,
        credential: &'a Credential,
        encoding: SignatureEncoding,
    ) -> Self {
        self.header_parts(
            name,
            [Part::text(prefix), Part::signature(credential, encoding)],
        )
    }

    /// Sends the request and waits for the response.
    ///
    /// Any response is `Ok`, including 4xx and 5xx: check [`Response::is_success`]. Redirects
    /// are not followed. `Err` means no response was received, see [`Error`]. The request can
    /// be sent again, e.g. to retry.
    pub fn send(&self) -> Result<Response, Error> {
        let wit::Response {
            status,
            headers,
            body,
        } = wit::fetch(&self.inner)?;
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

impl fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.inner;
        let headers: Vec<_> = r
            .headers
            .iter()
            .map(|h| (&h.name, PartsDebug(&h.value)))
            .collect();
        let query: Vec<_> = r
            .query
            .iter()
            .map(|q| (&q.name, PartsDebug(&q.value)))
            .collect();
        let body = r.body.as_ref().map(|b| match b {
            wit::Body::Bytes(bytes) => format!("{} bytes", bytes.len()),
            wit::Body::Template(parts) => format!("{:?}", PartsDebug(parts)),
        });
        f.debug_struct("Request")
            .field("method", &Method::from_wit(r.method))
            .field("url", &r.url)
            .field("headers", &headers)
            .field("query", &query)
            .field("basic_auth", &r.basic_auth.as_ref().map(|b| &b.username))
            .field("body", &body)
            .field("timeout_ms", &r.timeout_ms)
            .finish()
    }
}

/// An HTTP response. Any credential value the host injected into the request has been scrubbed
/// from the headers and body. The body is as the server sent it (not decompressed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    /// Builds a response by hand, e.g. to test a step's response handling natively.
    pub fn new(status: u16, headers: Vec<(String, String)>, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            headers,
            body: body.into(),
        }
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// All headers in the order received, names as the host reports them.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The value of the first header named `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body bytes.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body, taking ownership.
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }

    /// The body as UTF-8 text; `Err(Error::Message)` if it is not UTF-8.
    pub fn text(&self) -> Result<String, Error> {
        String::from_utf8(self.body.clone())
            .map_err(|e| Error::msg(format!("response body is not UTF-8: {e}")))
    }

    /// The body parsed as JSON into `T`; `Err(Error::Json)` if it does not parse.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        Ok(serde_json::from_slice(&self.body)?)
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Whether the status is 3xx. The host does not follow redirects; fetch the `location`
    /// yourself if you want to (it is checked against the credential's binding afresh).
    pub fn is_redirect(&self) -> bool {
        (300..400).contains(&self.status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response() -> Response {
        Response::new(
            302,
            vec![
                ("Content-Type".into(), "application/json".into()),
                ("link".into(), "<https://x/2>; rel=\"next\"".into()),
                ("Set-Cookie".into(), "a=1".into()),
                ("set-cookie".into(), "b=2".into()),
            ],
            br#"{"ok":true}"#.to_vec(),
        )
    }

    #[test]
    fn header_lookup_is_case_insensitive() {
        let r = response();
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("CONTENT-TYPE"), Some("application/json"));
        assert_eq!(r.header("Link"), Some("<https://x/2>; rel=\"next\""));
        assert_eq!(r.header("set-cookie"), Some("a=1"), "first one wins");
        assert_eq!(r.header("missing"), None);
        assert_eq!(r.headers().len(), 4);
    }

    #[test]
    fn status_classes() {
        let r = response();
        assert!(r.is_redirect());
        assert!(!r.is_success());
        assert!(Response::new(204, vec![], vec![]).is_success());
        assert!(!Response::new(199, vec![], vec![]).is_success());
        assert!(!Response::new(400, vec![], vec![]).is_redirect());
    }

    #[test]
    fn body_decoding() {
        let r = response();
        assert_eq!(r.text().as_deref(), Ok(r#"{"ok":true}"#));
        let v: serde_json::Value = r.json().unwrap_or_default();
        assert_eq!(v["ok"], true);
        let bad = Response::new(200, vec![], vec![0xff, 0xfe]);
        assert!(matches!(bad.text(), Err(Error::Message(_))));
        assert!(matches!(
            bad.json::<serde_json::Value>(),
            Err(Error::Json(_))
        ));
    }

    #[test]
    fn builder_without_credentials() {
        let req = Request::post("https://example.com/x")
            .header("Content-Type", "text/plain")
            .json(&serde_json::json!({"a": 1}))
            .map(|r| r.query("q", "1").timeout(Duration::from_micros(1500)));
        let Ok(req) = req else { panic!("json failed") };
        let r = &req.inner;
        assert_eq!(r.method, wit::Method::Post);
        // json() keeps a content type that was set explicitly.
        assert_eq!(r.headers.len(), 1);
        assert_eq!(r.timeout_ms, Some(2));
        assert!(matches!(&r.body, Some(wit::Body::Bytes(b)) if b == br#"{"a":1}"#));
        let debug = format!("{req:?}");
        assert!(
            debug.contains("Post") && debug.contains("example.com"),
            "{debug}"
        );
    }

    #[test]
    fn json_sets_content_type() {
        let Ok(req) = Request::put("https://example.com").json(&[1, 2]) else {
            panic!("json failed")
        };
        let h = &req.inner.headers;
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].name, "content-type");
        assert!(matches!(&h[0].value[..], [wit::ValuePart::Text(t)] if t == "application/json"));
    }

    #[test]
    fn json_serialization_error() {
        let map: std::collections::HashMap<(u8, u8), u8> = [((1, 2), 3)].into_iter().collect();
        assert!(matches!(
            Request::post("https://example.com").json(&map),
            Err(Error::Json(_))
        ));
    }

    #[test]
    fn timeout_saturates() {
        let req = Request::get("https://example.com").timeout(Duration::from_secs(u64::MAX));
        assert_eq!(req.inner.timeout_ms, Some(u32::MAX));
    }
}
