//! The one list of request headers the host owns.
//!
//! Used twice: a binding may not name one of these as an injection location
//! ([`super::InjectLocation::parse`]), and a guest may not set one (the HTTP host). Before
//! this list the two places disagreed (`header:proxy-authorization` was accepted when a
//! secret was stored and refused at every fetch).
//!
//! `cookie` is not here: sending a session cookie is a legitimate use of a credential.
//! `content-encoding` is: the host sends the body it builds (templates are re-serialised),
//! and a guest-declared coding would make the upstream decode bytes the host never
//! checked.

/// Headers the host sets or forbids, each with why.
const HOST_MANAGED: &[(&str, &str)] = &[
    ("host", "the host is taken from the URL"),
    ("content-length", "the HTTP client sets the body length"),
    ("transfer-encoding", "the HTTP client frames the body"),
    (
        "content-encoding",
        "the host sends the body it built, uncoded",
    ),
    (
        "connection",
        "connection management belongs to the HTTP client",
    ),
    (
        "keep-alive",
        "connection management belongs to the HTTP client",
    ),
    (
        "proxy-connection",
        "connection management belongs to the HTTP client",
    ),
    ("te", "transfer codings belong to the HTTP client"),
    ("trailer", "trailers are not sent"),
    ("upgrade", "protocol upgrades are not allowed"),
    (
        "proxy-authorization",
        "no proxy is used, and a proxy header must not carry a credential",
    ),
    (
        "accept-encoding",
        "the host asks for uncoded responses so it can scrub them",
    ),
    // Frameworks (Rails, Laravel, Symfony, Express, IIS) and proxies take the method or
    // path from these instead of the request line: a binding's methods and path prefixes
    // would mean nothing.
    (
        "x-http-method-override",
        "it would change the method a binding checks",
    ),
    (
        "x-http-method",
        "it would change the method a binding checks",
    ),
    (
        "x-method-override",
        "it would change the method a binding checks",
    ),
    (
        "x-original-url",
        "it would change the path a binding checks",
    ),
    ("x-rewrite-url", "it would change the path a binding checks"),
    (
        "x-original-uri",
        "it would change the path a binding checks",
    ),
    (
        "x-forwarded-prefix",
        "it would change the path a binding checks",
    ),
    (
        "x-forwarded-uri",
        "it would change the path a binding checks",
    ),
    (
        "x-forwarded-path",
        "it would change the path a binding checks",
    ),
];

/// Why the header `name` (any case) is managed by the host, or `None` if a guest may set
/// it and a binding may name it.
pub fn host_managed(name: &str) -> Option<&'static str> {
    HOST_MANAGED
        .iter()
        .find(|(h, _)| h.eq_ignore_ascii_case(name.trim()))
        .map(|(_, why)| *why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_framing_routing_and_proxy_headers_in_any_case() {
        for h in [
            "Host",
            "content-length",
            "Transfer-Encoding",
            "CONNECTION",
            "keep-alive",
            "te",
            "trailer",
            "upgrade",
            "proxy-authorization",
            "Proxy-Connection",
            "accept-encoding",
            "content-encoding",
            "X-HTTP-Method-Override",
            "x-http-method",
            "X-Method-Override",
            "x-original-url",
            "X-Rewrite-URL",
        ] {
            assert!(host_managed(h).is_some(), "{h}");
        }
    }

    #[test]
    fn accepts_credential_headers() {
        for h in [
            "authorization",
            "x-api-key",
            "cookie",
            "content-type",
            "accept",
        ] {
            assert_eq!(host_managed(h), None, "{h}");
        }
    }
}
