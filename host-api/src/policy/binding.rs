//! A credential's binding: where its value may go.
//!
//! The guest chooses the text around a value (`Bearer `…); the binding decides whether the
//! value may be sent at all: to which hosts (see [`HostPattern`]), over which scheme, and
//! into which places of a request.

use super::host::HostPattern;
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
    /// Anywhere in the request body. Off unless the operator names it: bodies are often
    /// echoed back or logged by upstreams.
    Body,
}

impl InjectLocation {
    /// Parses `header:NAME`, `query:NAME`, `basic-auth` (or `basic`) or `body`.
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
                if matches!(
                    lower.as_str(),
                    "host"
                        | "content-length"
                        | "transfer-encoding"
                        | "connection"
                        | "te"
                        | "upgrade"
                ) {
                    return Err(bad("this header is managed by the HTTP client"));
                }
                Ok(InjectLocation::Header(lower))
            }
            Some(("query", name)) => {
                if name.is_empty() || name.chars().any(|c| c.is_control()) {
                    return Err(bad("not a valid query parameter name"));
                }
                Ok(InjectLocation::Query(name.to_owned()))
            }
            None if s == "basic-auth" || s == "basic" => Ok(InjectLocation::BasicAuth),
            None if s == "body" => Ok(InjectLocation::Body),
            _ => Err(bad(
                "expected header:NAME, query:NAME, basic-auth or body (e.g. header:Authorization)",
            )),
        }
    }

    /// Whether a value injected here travels in the request head, where CR, LF and NUL
    /// would break the request.
    pub fn needs_header_safe_value(&self) -> bool {
        !matches!(self, InjectLocation::Body)
    }
}

impl fmt::Display for InjectLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InjectLocation::Header(n) => write!(f, "header:{n}"),
            InjectLocation::Query(n) => write!(f, "query:{n}"),
            InjectLocation::BasicAuth => f.write_str("basic-auth"),
            InjectLocation::Body => f.write_str("body"),
        }
    }
}

impl TryFrom<String> for InjectLocation {
    type Error = BindingError;
    fn try_from(s: String) -> Result<Self, BindingError> {
        InjectLocation::parse(&s)
    }
}

impl From<InjectLocation> for String {
    fn from(l: InjectLocation) -> String {
        l.to_string()
    }
}

/// Where a credential may be sent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Binding {
    /// Hosts (with ports) the value may be sent to. Never empty.
    pub hosts: Vec<HostPattern>,
    /// Places in a request the value may be injected into. Never empty.
    pub locations: Vec<InjectLocation>,
    /// Whether plain `http://` is allowed (loopback tests, in-cluster services). Off by
    /// default: a secret over plain http is readable on the wire.
    #[serde(default)]
    pub allow_http: bool,
}

/// Why a binding was refused, or why a use of a credential falls outside its binding.
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
    /// Builds a binding, refusing an unusable one.
    pub fn new(
        hosts: Vec<HostPattern>,
        locations: Vec<InjectLocation>,
        allow_http: bool,
    ) -> Result<Self, BindingError> {
        if hosts.is_empty() {
            return Err(BindingError::NoHosts);
        }
        if locations.is_empty() {
            return Err(BindingError::NoLocations);
        }
        let mut locations = locations;
        locations.sort();
        locations.dedup();
        Ok(Binding {
            hosts,
            locations,
            allow_http,
        })
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

    /// Whether the value may be injected at `location`.
    pub fn allows_location(&self, location: &InjectLocation) -> bool {
        self.locations.contains(location)
    }

    /// Whether any location needs a header-safe value.
    pub fn needs_header_safe_value(&self) -> bool {
        self.locations
            .iter()
            .any(InjectLocation::needs_header_safe_value)
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
    }

    #[test]
    fn rejects_empty_bindings_and_bad_locations() {
        assert_eq!(
            Binding::new(vec![], vec![InjectLocation::Body], false),
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
            "query:",
            "cookie",
            "Header:x",
        ] {
            assert!(InjectLocation::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn location_display_round_trips() {
        for l in ["header:x-api-key", "query:api_key", "basic-auth", "body"] {
            assert_eq!(InjectLocation::parse(l).expect("l").to_string(), l);
        }
    }
}
