//! A credential's binding: where its value may go.
//!
//! The guest chooses the text around a value (`Bearer `…); the binding decides whether the
//! value may be sent at all: to which hosts (see [`HostPattern`]), over which scheme, and
//! into which places of a request.

use super::host::HostPattern;
use super::signer::{SignerError, SignerParams};
use std::fmt;

/// A place in a request where a credential value may be injected.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub enum InjectLocation {
    /// A named request header (stored lowercase; header names are case-insensitive).
    Header(String),
    /// A named query parameter (case-sensitive).
    Query(String),
    /// The password of HTTP basic authentication.
    BasicAuth,
    /// The whole string value at this RFC 6901 JSON pointer of a JSON body (written
    /// `body:json:/password`). The pointer is stored as written (validated, non-empty).
    BodyJson(String),
    /// The whole value of this field of an `application/x-www-form-urlencoded` body
    /// (written `body:form:password`; the decoded field name, case-sensitive).
    BodyForm(String),
    /// The retired "anywhere in the body" location. [`InjectLocation::parse`] refuses it;
    /// records stored before it was retired still read (so listing and other secrets keep
    /// working), and it never allows an injection ([`Binding::allows_location`]).
    Body,
}

/// What `parse` says about the retired plain `body`.
const BODY_RETIRED: &str = "plain `body` (anywhere in the body) is no longer accepted: name the field, as body:json:/password (a JSON pointer) or body:form:password (a form field)";

impl InjectLocation {
    /// Parses `header:NAME`, `query:NAME`, `basic-auth` (or `basic`), `body:json:POINTER`
    /// or `body:form:NAME`. Plain `body` is refused.
    pub fn parse(s: &str) -> Result<Self, BindingError> {
        let bad = |why: &str| BindingError::Location {
            location: s.chars().take(200).collect(),
            reason: why.to_owned(),
        };
        match s.split_once(':') {
            Some(("header", name)) => {
                let name = name.trim();
                http::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| bad("not a valid header name"))?;
                let lower = name.to_ascii_lowercase();
                if let Some(why) = super::headers::host_managed(&lower) {
                    return Err(bad(&format!("this header is managed by the host: {why}")));
                }
                Ok(InjectLocation::Header(lower))
            }
            Some(("query", name)) => {
                if name.is_empty() || name.chars().any(|c| c.is_control()) {
                    return Err(bad("not a valid query parameter name"));
                }
                Ok(InjectLocation::Query(name.to_owned()))
            }
            Some(("body", rest)) => match rest.split_once(':') {
                Some(("json", pointer)) => {
                    validate_json_pointer(pointer).map_err(bad)?;
                    Ok(InjectLocation::BodyJson(pointer.to_owned()))
                }
                Some(("form", name)) => {
                    if name.is_empty() || name.chars().any(|c| c.is_control()) {
                        return Err(bad("not a valid form field name"));
                    }
                    Ok(InjectLocation::BodyForm(name.to_owned()))
                }
                _ => Err(bad(
                    "expected body:json:/POINTER (e.g. body:json:/password) or body:form:NAME (e.g. body:form:password)",
                )),
            },
            None if s == "basic-auth" || s == "basic" => Ok(InjectLocation::BasicAuth),
            None if s == "body" => Err(bad(BODY_RETIRED)),
            _ => Err(bad(
                "expected header:NAME, query:NAME, basic-auth, body:json:/POINTER or body:form:NAME (e.g. header:Authorization)",
            )),
        }
    }

    /// Reads a stored location: what [`Self::parse`] accepts, plus the retired `body`.
    fn from_stored(s: &str) -> Result<Self, BindingError> {
        if s == "body" {
            Ok(InjectLocation::Body)
        } else {
            InjectLocation::parse(s)
        }
    }

    /// Whether a value injected here travels in the request head, where CR, LF and NUL
    /// would break the request.
    pub fn needs_header_safe_value(&self) -> bool {
        matches!(
            self,
            InjectLocation::Header(_) | InjectLocation::Query(_) | InjectLocation::BasicAuth
        )
    }

    /// Whether a value injected here must be UTF-8 (a JSON string).
    pub fn needs_utf8_value(&self) -> bool {
        matches!(self, InjectLocation::BodyJson(_))
    }

    /// Whether this is a place in the body (including the retired `body`).
    pub fn is_body(&self) -> bool {
        matches!(
            self,
            InjectLocation::BodyJson(_) | InjectLocation::BodyForm(_) | InjectLocation::Body
        )
    }
}

/// Checks an RFC 6901 pointer: empty is refused (the whole body is not a field), else
/// `/`-separated tokens where `~` is only followed by `0` or `1`; no control characters.
fn validate_json_pointer(p: &str) -> Result<(), &'static str> {
    if p.is_empty() {
        return Err("the JSON pointer is empty; name a field, as in body:json:/password");
    }
    if !p.starts_with('/') {
        return Err("a JSON pointer starts with '/', as in body:json:/password");
    }
    if p.chars().any(char::is_control) {
        return Err("the JSON pointer contains a control character");
    }
    let mut chars = p.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err("in a JSON pointer '~' must be followed by 0 or 1 (~0 is '~', ~1 is '/')");
        }
    }
    Ok(())
}

impl fmt::Display for InjectLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InjectLocation::Header(n) => write!(f, "header:{n}"),
            InjectLocation::Query(n) => write!(f, "query:{n}"),
            InjectLocation::BasicAuth => f.write_str("basic-auth"),
            InjectLocation::BodyJson(p) => write!(f, "body:json:{p}"),
            InjectLocation::BodyForm(n) => write!(f, "body:form:{n}"),
            InjectLocation::Body => f.write_str("body"),
        }
    }
}

impl TryFrom<String> for InjectLocation {
    type Error = BindingError;
    fn try_from(s: String) -> Result<Self, BindingError> {
        InjectLocation::from_stored(&s)
    }
}

impl From<InjectLocation> for String {
    fn from(l: InjectLocation) -> String {
        l.to_string()
    }
}

/// HTTP methods a binding may name.
pub const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// Where a credential may be sent.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Binding {
    /// Hosts (with ports) the value may be sent to. Never empty.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub hosts: Vec<HostPattern>,
    /// Places in a request the value may be injected into. Never empty.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub locations: Vec<InjectLocation>,
    /// Whether plain `http://` is allowed (loopback tests, in-cluster services). Off by
    /// default: a secret over plain http is readable on the wire.
    #[serde(default)]
    pub allow_http: bool,
    /// Uppercase HTTP methods the value may be sent with (from [`METHODS`], sorted, no
    /// duplicates). Empty: any method. Absent from records that have none, so records
    /// stored before this field existed read (and open) unchanged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Canonical URL path prefixes the value may be sent to (see
    /// [`Binding::allows_request`]). Empty: any path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub path_prefixes: Vec<String>,
    /// Whether the value may be sent to non-public addresses (private, loopback,
    /// link-local, unique-local), never to cloud metadata, unspecified or multicast ones.
    /// See [`super::AddressPolicy::check_with`].
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_internal: bool,
    /// What a signing credential signs for or asserts (AWS region and service, JWT
    /// claims): see [`SignerParams`]. Absent for other kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<SignerParams>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Everything a binding is built from; [`BindingSpec::build`] validates it. `Default`
/// gives the narrowest choice for every optional field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BindingSpec {
    /// Hosts (with ports) the value may be sent to. At least one.
    pub hosts: Vec<HostPattern>,
    /// Places the value may be injected into. At least one; the retired `body` is refused.
    pub locations: Vec<InjectLocation>,
    /// Allow plain `http://`.
    pub allow_http: bool,
    /// HTTP methods, any case (`get`, `POST`). Empty: any method.
    pub methods: Vec<String>,
    /// URL path prefixes, each starting with `/`, in canonical form. Empty: any path.
    pub path_prefixes: Vec<String>,
    /// Allow non-public destinations (never metadata).
    pub allow_internal: bool,
    /// Signing parameters, for the kinds that need them.
    pub signer: Option<SignerParams>,
}

impl BindingSpec {
    /// Validates and canonicalises the spec into a binding.
    pub fn build(self) -> Result<Binding, BindingError> {
        if self.hosts.is_empty() {
            return Err(BindingError::NoHosts);
        }
        if self.locations.is_empty() {
            return Err(BindingError::NoLocations);
        }
        if let Some(s) = &self.signer {
            s.check()?;
        }
        if self.locations.contains(&InjectLocation::Body) {
            return Err(BindingError::Location {
                location: "body".into(),
                reason: BODY_RETIRED.into(),
            });
        }
        let mut locations = self.locations;
        locations.sort();
        locations.dedup();
        let mut methods = self
            .methods
            .iter()
            .map(|m| parse_method(m))
            .collect::<Result<Vec<_>, _>>()?;
        methods.sort();
        methods.dedup();
        let mut path_prefixes = self
            .path_prefixes
            .iter()
            .map(|p| canonical_path_prefix(p))
            .collect::<Result<Vec<_>, _>>()?;
        path_prefixes.sort();
        path_prefixes.dedup();
        Ok(Binding {
            hosts: self.hosts,
            locations,
            allow_http: self.allow_http,
            methods,
            path_prefixes,
            allow_internal: self.allow_internal,
            signer: self.signer,
        })
    }
}

/// An uppercase method from [`METHODS`].
fn parse_method(m: &str) -> Result<String, BindingError> {
    let upper = m.trim().to_ascii_uppercase();
    if METHODS.contains(&upper.as_str()) {
        Ok(upper)
    } else {
        Err(BindingError::Method {
            method: m.chars().take(32).collect(),
        })
    }
}

/// Encodings in a path that servers (or proxies in front of them) decode differently:
/// an encoded `/`, `\`, `.`, NUL or `%` (double encoding), a backslash, and `;` path
/// parameters. A path with any of them is refused for a binding with path prefixes, and
/// a prefix may not contain them. Returns what was found.
fn ambiguous_in_path(path: &str) -> Option<&'static str> {
    if path.contains('\\') {
        return Some("a backslash");
    }
    if path.contains(';') {
        return Some("a ';' path parameter");
    }
    let bytes = path.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'%' {
            let code = bytes.get(i + 1..i + 3).map(|h| h.to_ascii_lowercase());
            match code.as_deref() {
                Some(b"2f") => return Some("an encoded '/' (%2F)"),
                Some(b"5c") => return Some("an encoded '\\' (%5C)"),
                Some(b"2e") => return Some("an encoded '.' (%2E)"),
                Some(b"00") => return Some("an encoded NUL (%00)"),
                Some(b"25") => return Some("an encoded '%' (%25, double encoding)"),
                Some([b'u', ..]) => return Some("a %u escape (decoded by IIS)"),
                _ => {}
            }
        }
    }
    // Overlong UTF-8 (`%c0%ae` for '.', `%c0%af` for '/') and other invalid sequences are
    // decoded by lenient servers into characters the prefix check never saw.
    let decoded: Vec<u8> = percent_encoding::percent_decode(bytes).collect();
    if std::str::from_utf8(&decoded).is_err() {
        return Some("percent-encoded bytes that are not valid UTF-8 (overlong forms)");
    }
    None
}

/// Validates a path prefix and returns it in the form the `url` crate serialises paths
/// in, refusing one whose canonical form differs (`..`, `.`, characters that would be
/// percent-encoded): the operator sees and stores exactly what is compared.
fn canonical_path_prefix(p: &str) -> Result<String, BindingError> {
    let bad = |why: String| BindingError::PathPrefix {
        prefix: p.chars().take(200).collect(),
        reason: why,
    };
    if !p.starts_with('/') {
        return Err(bad("a path prefix starts with '/', as in /api/".into()));
    }
    if p.contains('?') || p.contains('#') {
        return Err(bad("a path prefix has no query or fragment".into()));
    }
    if p.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(bad(
            "a path prefix has no spaces or control characters".into()
        ));
    }
    if let Some(what) = ambiguous_in_path(p) {
        return Err(bad(format!(
            "it contains {what}, which servers decode differently"
        )));
    }
    let url = url::Url::parse(&format!("https://x{p}"))
        .map_err(|e| bad(format!("not a valid URL path: {e}")))?;
    let canon = url.path();
    if canon != p || url.query().is_some() || url.fragment().is_some() {
        return Err(bad(format!(
            "it is not in canonical form; write it as {canon}"
        )));
    }
    Ok(canon.to_owned())
}

/// Whether `path` is `prefix` or below it, on a segment boundary.
fn path_under(path: &str, prefix: &str) -> bool {
    if prefix.ends_with('/') {
        path.starts_with(prefix)
    } else {
        path == prefix
            || path
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/'))
    }
}

/// Why a request's method or path falls outside a binding. Shown to the guest and in the
/// audit trail: it names the method and the allowed prefixes, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestRefusal {
    /// The method is not one the binding allows.
    #[error("method {method} is not allowed (allowed: {})", allowed.join(", "))]
    Method {
        /// The request's method.
        method: String,
        /// The binding's methods.
        allowed: Vec<String>,
    },
    /// The path is under none of the binding's prefixes.
    #[error("the URL path is not under an allowed prefix (allowed: {})", allowed.join(", "))]
    Path {
        /// The binding's prefixes.
        allowed: Vec<String>,
    },
    /// The path contains an encoding servers decode differently, so a prefix check on it
    /// would mean nothing.
    #[error("the URL path contains {what}, which servers decode differently")]
    AmbiguousPath {
        /// What was found.
        what: &'static str,
    },
}

/// Why a binding was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BindingError {
    /// A binding without hosts would make the credential unusable.
    #[error("a credential needs at least one allowed host (e.g. --allow-host api.example.com)")]
    NoHosts,
    /// A binding without locations would make the credential unusable.
    #[error(
        "a credential needs at least one injection location (e.g. --inject header:Authorization)"
    )]
    NoLocations,
    /// An injection location could not be parsed.
    #[error("invalid injection location {location:?}: {reason}")]
    Location {
        /// The refused text.
        location: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A method name is not one of [`METHODS`].
    #[error(
        "invalid HTTP method {method:?}: expected one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
    )]
    Method {
        /// The refused text.
        method: String,
    },
    /// A path prefix was refused.
    #[error("invalid path prefix {prefix:?}: {reason}")]
    PathPrefix {
        /// The refused text.
        prefix: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Signing parameters were refused.
    #[error(transparent)]
    Signer(#[from] SignerError),
}

/// The destination of a request, from the one parse of its URL.
#[derive(Debug, Clone, Copy)]
pub struct Destination<'a> {
    /// `https` or `http`.
    pub scheme: &'a str,
    /// The URL's host.
    pub host: &'a url::Host<&'a str>,
    /// The URL's port, explicit or the scheme's default.
    pub port: u16,
}

impl Binding {
    /// Builds a binding with any method and path and public destinations only, refusing
    /// an unusable one. For more, use [`BindingSpec`].
    pub fn new(
        hosts: Vec<HostPattern>,
        locations: Vec<InjectLocation>,
        allow_http: bool,
    ) -> Result<Self, BindingError> {
        BindingSpec {
            hosts,
            locations,
            allow_http,
            ..BindingSpec::default()
        }
        .build()
    }

    /// Whether the value may be sent to `dest`: scheme first (https, or http where the
    /// binding allows it), then host and port.
    pub fn allows_destination(&self, dest: Destination<'_>) -> bool {
        let scheme_ok = match dest.scheme {
            "https" => true,
            "http" => self.allow_http,
            _ => false,
        };
        scheme_ok
            && self
                .hosts
                .iter()
                .any(|p| p.matches(dest.host, dest.port, dest.scheme))
    }

    /// Whether the value may go with a request of `method` (uppercase, as sent) to `url`
    /// (the parsed URL that is sent): the method is one of [`Self::methods`] (if any), and
    /// the path is at or below one of [`Self::path_prefixes`] (if any) on a segment
    /// boundary, with no ambiguous encoding in it. Host and scheme are
    /// [`Self::allows_destination`]'s job.
    pub fn allows_request(&self, method: &str, url: &url::Url) -> Result<(), RequestRefusal> {
        if !self.methods.is_empty() && !self.methods.iter().any(|m| m == method) {
            return Err(RequestRefusal::Method {
                method: method.chars().take(16).collect(),
                allowed: self.methods.clone(),
            });
        }
        if self.path_prefixes.is_empty() {
            return Ok(());
        }
        let path = url.path();
        if let Some(what) = ambiguous_in_path(path) {
            return Err(RequestRefusal::AmbiguousPath { what });
        }
        if self.path_prefixes.iter().any(|p| path_under(path, p)) {
            Ok(())
        } else {
            Err(RequestRefusal::Path {
                allowed: self.path_prefixes.clone(),
            })
        }
    }

    /// Whether the value may be injected at `location`. Never at the retired `body`.
    pub fn allows_location(&self, location: &InjectLocation) -> bool {
        *location != InjectLocation::Body && self.locations.contains(location)
    }

    /// Whether any location needs a header-safe value.
    pub fn needs_header_safe_value(&self) -> bool {
        self.locations
            .iter()
            .any(InjectLocation::needs_header_safe_value)
    }

    /// Whether any location needs a UTF-8 value (a JSON body field).
    pub fn needs_utf8_value(&self) -> bool {
        self.locations.iter().any(InjectLocation::needs_utf8_value)
    }

    /// Whether the binding still names the retired `body` (a record stored before it was
    /// retired): `secret list` can say that such a location allows nothing.
    pub fn has_retired_body(&self) -> bool {
        self.locations.contains(&InjectLocation::Body)
    }
}

/// One line for listings: `hosts; locations[; methods M][; paths P][; http][; internal]`.
impl fmt::Display for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |v: Vec<String>| v.join(",");
        write!(
            f,
            "hosts {}; inject {}",
            join(self.hosts.iter().map(ToString::to_string).collect()),
            join(
                self.locations
                    .iter()
                    .map(|l| if *l == InjectLocation::Body {
                        "body (retired: allows nothing)".to_owned()
                    } else {
                        l.to_string()
                    })
                    .collect()
            )
        )?;
        if !self.methods.is_empty() {
            write!(f, "; methods {}", self.methods.join(","))?;
        }
        if !self.path_prefixes.is_empty() {
            write!(f, "; paths {}", self.path_prefixes.join(","))?;
        }
        if self.allow_http {
            f.write_str("; http allowed")?;
        }
        if self.allow_internal {
            f.write_str("; internal addresses allowed")?;
        }
        if let Some(s) = &self.signer {
            write!(f, "; {s}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(hosts: &[&str], locs: &[&str], http: bool) -> Binding {
        Binding::new(
            hosts
                .iter()
                .map(|h| HostPattern::parse(h).expect("host"))
                .collect(),
            locs.iter()
                .map(|l| InjectLocation::parse(l).expect("loc"))
                .collect(),
            http,
        )
        .expect("binding")
    }

    fn allows(b: &Binding, url: &str) -> bool {
        let u = url::Url::parse(url).expect("url");
        let host = u.host().expect("host");
        b.allows_destination(Destination {
            scheme: u.scheme(),
            host: &host,
            port: u.port_or_known_default().expect("port"),
        })
    }

    #[test]
    fn accepts_bound_https_host() {
        let b = binding(&["slack.com"], &["header:Authorization"], false);
        assert!(allows(&b, "https://slack.com/api/chat.postMessage"));
    }

    #[test]
    fn rejects_plain_http_unless_allowed() {
        let b = binding(&["slack.com"], &["header:Authorization"], false);
        assert!(!allows(&b, "http://slack.com/api"));
        let b = binding(&["slack.com"], &["header:Authorization"], true);
        assert!(allows(&b, "http://slack.com/api"));
    }

    #[test]
    fn rejects_other_schemes() {
        let b = binding(&["slack.com:*"], &["header:Authorization"], true);
        assert!(!allows(&b, "ftp://slack.com/"));
        assert!(!allows(&b, "ws://slack.com/"));
    }

    #[test]
    fn locations_are_exact_and_header_names_case_insensitive() {
        let b = binding(&["x.com"], &["header:Authorization", "query:key"], false);
        assert!(b.allows_location(&InjectLocation::parse("header:authorization").expect("l")));
        assert!(!b.allows_location(&InjectLocation::parse("header:X-Api-Key").expect("l")));
        assert!(b.allows_location(&InjectLocation::parse("query:key").expect("l")));
        assert!(!b.allows_location(&InjectLocation::parse("query:KEY").expect("l")));
        assert!(!b.allows_location(&InjectLocation::BasicAuth));
        assert!(!b.allows_location(&InjectLocation::Body));
        assert!(!b.allows_location(&InjectLocation::BodyJson("/key".into())));
    }

    #[test]
    fn rejects_empty_bindings_and_bad_locations() {
        assert_eq!(
            Binding::new(vec![], vec![InjectLocation::BasicAuth], false),
            Err(BindingError::NoHosts)
        );
        let h = vec![HostPattern::parse("x.com").expect("h")];
        assert_eq!(
            Binding::new(h, vec![], false),
            Err(BindingError::NoLocations)
        );
        for bad in [
            "header:",
            "header:a b",
            "header:Host",
            "header:content-length",
            "header:proxy-authorization",
            "header:Keep-Alive",
            "header:accept-encoding",
            "query:",
            "cookie",
            "Header:x",
        ] {
            assert!(InjectLocation::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn location_display_round_trips() {
        for l in [
            "header:x-api-key",
            "query:api_key",
            "basic-auth",
            "body:json:/password",
            "body:json:/a~1b/0/c~0d",
            "body:form:password",
        ] {
            assert_eq!(InjectLocation::parse(l).expect("l").to_string(), l);
        }
    }

    #[test]
    fn rejects_plain_body_naming_the_new_forms() {
        let e = InjectLocation::parse("body").expect_err("retired");
        let msg = e.to_string();
        assert!(
            msg.contains("body:json:/password") && msg.contains("body:form:password"),
            "{msg}"
        );
    }

    #[test]
    fn rejects_bad_body_locations() {
        for bad in [
            "body:",
            "body:json",
            "body:json:",
            "body:json:password",
            "body:json:/a~2",
            "body:json:/a~",
            "body:json:/a\nb",
            "body:form:",
            "body:form:a\u{1}",
            "body:xml:/a",
        ] {
            assert!(InjectLocation::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn accepts_old_records_with_plain_body_as_allowing_nothing() {
        let old =
            r#"{"hosts":["x.com"],"locations":["body","header:authorization"],"allow_http":false}"#;
        let b: Binding = serde_json::from_str(old).expect("old record reads");
        assert!(b.has_retired_body());
        assert!(!b.allows_location(&InjectLocation::Body));
        assert!(b.allows_location(&InjectLocation::Header("authorization".into())));
        assert!(b.to_string().contains("retired"), "{b}");
        // Re-serialised unchanged (records keep opening: their AAD is the stored bytes).
        assert_eq!(serde_json::to_string(&b).expect("ser"), old);
    }

    #[test]
    fn rejects_building_a_binding_with_plain_body() {
        let h = vec![HostPattern::parse("x.com").expect("h")];
        assert!(matches!(
            Binding::new(h, vec![InjectLocation::Body], false),
            Err(BindingError::Location { .. })
        ));
    }

    #[test]
    fn accepts_old_records_without_new_fields_and_writes_them_only_when_set() {
        let old = r#"{"hosts":["x.com"],"locations":["header:authorization"],"allow_http":false}"#;
        let b: Binding = serde_json::from_str(old).expect("old record reads");
        assert!(b.methods.is_empty() && b.path_prefixes.is_empty() && !b.allow_internal);
        assert_eq!(serde_json::to_string(&b).expect("ser"), old);
        let full = spec_binding(&["get", "POST", "get"], &["/api/"], true);
        let json = serde_json::to_string(&full).expect("ser");
        assert!(json.contains(r#""methods":["GET","POST"]"#), "{json}");
        assert!(json.contains(r#""path_prefixes":["/api/"]"#), "{json}");
        assert!(json.contains(r#""allow_internal":true"#), "{json}");
        assert_eq!(serde_json::from_str::<Binding>(&json).expect("de"), full);
    }

    fn spec_binding(methods: &[&str], paths: &[&str], internal: bool) -> Binding {
        BindingSpec {
            hosts: vec![HostPattern::parse("slack.com").expect("h")],
            locations: vec![InjectLocation::parse("header:authorization").expect("l")],
            methods: methods.iter().map(|m| (*m).to_owned()).collect(),
            path_prefixes: paths.iter().map(|p| (*p).to_owned()).collect(),
            allow_internal: internal,
            ..BindingSpec::default()
        }
        .build()
        .expect("binding")
    }

    fn request(b: &Binding, method: &str, url: &str) -> Result<(), RequestRefusal> {
        b.allows_request(method, &url::Url::parse(url).expect("url"))
    }

    #[test]
    fn accepts_any_method_and_path_without_restrictions() {
        let b = spec_binding(&[], &[], false);
        assert!(request(&b, "DELETE", "https://slack.com/anything/%2e%2e;x").is_ok());
    }

    #[test]
    fn rejects_methods_outside_the_list() {
        let b = spec_binding(&["post", "GET"], &[], false);
        assert!(request(&b, "POST", "https://slack.com/api").is_ok());
        assert!(request(&b, "GET", "https://slack.com/api").is_ok());
        let e = request(&b, "DELETE", "https://slack.com/api").expect_err("refused");
        assert!(matches!(e, RequestRefusal::Method { .. }));
        assert!(
            e.to_string().contains("DELETE") && e.to_string().contains("GET, POST"),
            "{e}"
        );
    }

    #[test]
    fn rejects_unknown_method_names() {
        for bad in ["CONNECT", "TRACE", "FETCH", "", "G ET"] {
            let r = BindingSpec {
                hosts: vec![HostPattern::parse("x.com").expect("h")],
                locations: vec![InjectLocation::BasicAuth],
                methods: vec![bad.into()],
                ..BindingSpec::default()
            }
            .build();
            assert!(matches!(r, Err(BindingError::Method { .. })), "{bad:?}");
        }
    }

    #[test]
    fn accepts_paths_on_segment_boundaries() {
        let b = spec_binding(&[], &["/api/chat.postMessage"], false);
        for ok in [
            "https://slack.com/api/chat.postMessage",
            "https://slack.com/api/chat.postMessage/x",
            "https://slack.com/api/chat.postMessage?channel=C1",
            "https://slack.com/api/x/../chat.postMessage",
            "https://slack.com/api/./chat.postMessage",
        ] {
            assert!(request(&b, "POST", ok).is_ok(), "{ok}");
        }
        for bad in [
            "https://slack.com/api/chat.postMessageX",
            "https://slack.com/api/chat.postMessage.evil",
            "https://slack.com/api/chat.postMessage/../../admin",
            "https://slack.com/api/",
            "https://slack.com/API/chat.postMessage",
            "https://slack.com/",
        ] {
            assert!(
                matches!(request(&b, "POST", bad), Err(RequestRefusal::Path { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn accepts_anything_below_a_prefix_ending_in_slash() {
        let b = spec_binding(&[], &["/v1/"], false);
        assert!(request(&b, "GET", "https://slack.com/v1/a/b").is_ok());
        assert!(request(&b, "GET", "https://slack.com/v1/").is_ok());
        assert!(request(&b, "GET", "https://slack.com/v1").is_err());
        assert!(request(&b, "GET", "https://slack.com/v10/").is_err());
    }

    #[test]
    fn rejects_ambiguous_encodings_when_paths_are_restricted() {
        let b = spec_binding(&[], &["/api/"], false);
        for bad in [
            "https://slack.com/api/%2e%2e/admin",
            "https://slack.com/api/%2E%2E/admin",
            "https://slack.com/api/..%2fadmin",
            "https://slack.com/api/..%2Fadmin",
            "https://slack.com/api/..%5cadmin",
            "https://slack.com/api/x%00",
            "https://slack.com/api/%252e%252e/admin",
            "https://slack.com/api/x;jsessionid=1",
            "https://slack.com/api/x%2e",
            "https://slack.com/api/%u002e%u002e/admin",
            "https://slack.com/api/..%u2215admin",
            "https://slack.com/api/%c0%ae%c0%ae/admin",
            "https://slack.com/api/..%c0%afadmin",
            "https://slack.com/api/%e0%80%ae",
        ] {
            // `url` resolves whole `%2e%2e` segments itself (then the path is no longer
            // under /api/); anything left is refused as ambiguous.
            assert!(
                matches!(
                    request(&b, "GET", bad),
                    Err(RequestRefusal::AmbiguousPath { .. } | RequestRefusal::Path { .. })
                ),
                "{bad}"
            );
        }
        for bad in [
            "https://slack.com/api/..%2fadmin",
            "https://slack.com/api/a%2E",
        ] {
            assert!(
                matches!(
                    request(&b, "GET", bad),
                    Err(RequestRefusal::AmbiguousPath { .. })
                ),
                "{bad}"
            );
        }
        // A backslash is turned into '/' by the URL parser for http(s): judged as a '/'.
        assert!(request(&b, "GET", "https://slack.com/api\\x").is_ok());
        assert!(request(&b, "GET", "https://slack.com/x\\..\\api\\y").is_ok());
    }

    #[test]
    fn rejects_bad_path_prefixes_and_keeps_canonical_ones() {
        for bad in [
            "api/",
            "/api?x=1",
            "/api#f",
            "/a b",
            "/a\u{7}",
            "/api/../admin",
            "/api/./x",
            "/api/%2e%2e",
            "/api/%2F",
            "/a;b",
            "/a\\b",
            "/é",
            "",
        ] {
            let r = BindingSpec {
                hosts: vec![HostPattern::parse("x.com").expect("h")],
                locations: vec![InjectLocation::BasicAuth],
                path_prefixes: vec![bad.to_owned()],
                ..BindingSpec::default()
            }
            .build();
            assert!(matches!(r, Err(BindingError::PathPrefix { .. })), "{bad:?}");
        }
        let b = spec_binding(&[], &["/api/chat.postMessage", "/", "/%C3%A9/"], false);
        assert_eq!(
            b.path_prefixes,
            vec!["/", "/%C3%A9/", "/api/chat.postMessage"]
        );
        let e = BindingSpec {
            hosts: vec![HostPattern::parse("x.com").expect("h")],
            locations: vec![InjectLocation::BasicAuth],
            path_prefixes: vec!["/é/".into()],
            ..BindingSpec::default()
        }
        .build()
        .expect_err("not canonical");
        assert!(e.to_string().contains("/%C3%A9/"), "{e}");
    }

    #[test]
    fn display_lists_methods_paths_and_grants() {
        let b = spec_binding(&["POST"], &["/api/"], true);
        let shown = b.to_string();
        for part in [
            "slack.com",
            "header:authorization",
            "methods POST",
            "paths /api/",
            "internal",
        ] {
            assert!(shown.contains(part), "{shown}");
        }
    }
}
