//! Host patterns a credential is bound to.
//!
//! Semantics, chosen to be as narrow as TLS certificate names:
//! - `api.example.com` matches exactly that name (compared in canonical form: lowercase
//!   ASCII, IDNA/punycode, no trailing dot), and never an IP literal.
//! - `*.example.com` matches exactly one more label: `api.example.com` but not
//!   `example.com` (the apex) and not `a.b.example.com`. A wildcard needs at least two
//!   labels after it (`*.com` is refused) and is only valid as the whole first label.
//!   The part after `*.` may not itself be a public suffix (ICANN or private section of
//!   the Public Suffix List, via `psl`): `*.co.uk`, `*.github.io`, `*.herokuapp.com` are
//!   refused, `*.example.co.uk` and `*.api.github.io` are accepted.
//! - `127.0.0.1` and `[::1]` match only that IP literal.
//! - A port may follow (`host:8443`); without one the pattern matches the scheme's default
//!   port only (443 for https, 80 for http). `host:*` matches any port.

use std::fmt;
use std::net::IpAddr;

/// One destination a credential may be sent to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HostPattern {
    name: PatternName,
    port: PortRule,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PatternName {
    /// Exact canonical domain name.
    Domain(String),
    /// `*.suffix`: one label, then the canonical suffix.
    Wildcard(String),
    /// An IP literal.
    Ip(IpAddr),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortRule {
    Default,
    Exact(u16),
    Any,
}

/// Why a host pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[error("invalid host pattern {pattern:?}: {reason}")]
pub struct PatternError {
    /// The refused pattern.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Canonical form of a URL host name: what `url` produces for `https://NAME/` (lowercase,
/// IDNA to punycode), without a trailing dot. `None` if it is not a valid domain name.
pub fn canonical_host(name: &str) -> Option<String> {
    // URL delimiters would end the host early ("..?" parses as the host ".."): a name holds
    // none of them.
    if name.contains(['/', '\\', '?', '#', '@']) {
        return None;
    }
    let url = url::Url::parse(&format!("https://{name}/")).ok()?;
    match url.host()? {
        url::Host::Domain(d) => {
            let d = d.strip_suffix('.').unwrap_or(d);
            if d.is_empty() || d.split('.').any(str::is_empty) {
                None
            } else {
                Some(d.to_owned())
            }
        }
        _ => None,
    }
}

impl HostPattern {
    /// Parses a pattern such as `api.example.com`, `*.example.com:8443`, `127.0.0.1:*`.
    pub fn parse(pattern: &str) -> Result<Self, PatternError> {
        let err = |reason: &str| PatternError {
            pattern: pattern.chars().take(200).collect(),
            reason: reason.to_owned(),
        };
        let trimmed = pattern.trim();
        if trimmed.is_empty() {
            return Err(err("it is empty"));
        }
        if trimmed.contains("://") || trimmed.contains('/') {
            return Err(err(
                "give a host name (and optional :port), not a URL; the scheme is part of the binding (https, or --allow-http)",
            ));
        }
        if trimmed.contains('@') {
            return Err(err("user info is not allowed"));
        }
        let (host_part, port) = split_port(trimmed).map_err(|r| err(&r))?;
        let name = if let Some(inner) = host_part.strip_prefix('[') {
            let inner = inner
                .strip_suffix(']')
                .ok_or_else(|| err("unclosed '[' in an IPv6 address"))?;
            PatternName::Ip(IpAddr::V6(
                inner.parse().map_err(|_| err("not a valid IPv6 address"))?,
            ))
        } else if let Ok(ip) = host_part.parse::<IpAddr>() {
            PatternName::Ip(ip)
        } else if let Some(suffix) = host_part.strip_prefix("*.") {
            if suffix.contains('*') {
                return Err(err("'*' may only be the whole first label"));
            }
            let canon = canonical_host(suffix).ok_or_else(|| err("not a valid host name"))?;
            if !canon.contains('.') {
                return Err(err(
                    "a wildcard needs at least two labels after it (*.example.com, not *.com)",
                ));
            }
            if canon.parse::<IpAddr>().is_ok() || looks_numeric(&canon) {
                return Err(err("a wildcard cannot cover IP addresses"));
            }
            if is_public_suffix(&canon) {
                return Err(err(&format!(
                    "{canon} is a public suffix (Public Suffix List): names under it belong to unrelated owners, so a wildcard would send the credential to anyone who registers one; name the exact host"
                )));
            }
            PatternName::Wildcard(canon)
        } else {
            if host_part.contains('*') {
                return Err(err(
                    "'*' may only be the whole first label, as in *.example.com",
                ));
            }
            let canon = canonical_host(host_part).ok_or_else(|| err("not a valid host name"))?;
            // `url` turns some numeric forms (e.g. "0x7f.1") into IPv4 addresses; such a
            // pattern would silently bind to an IP, so make the operator write the IP.
            if url::Url::parse(&format!("https://{host_part}/"))
                .ok()
                .and_then(|u| u.host().map(|h| matches!(h, url::Host::Ipv4(_))))
                .unwrap_or(false)
            {
                return Err(err(
                    "this is an IPv4 address in an unusual form; write it as a.b.c.d",
                ));
            }
            PatternName::Domain(canon)
        };
        Ok(HostPattern { name, port })
    }

    /// Whether this pattern admits `host` (from a parsed URL) on `port` for `scheme`.
    pub fn matches(&self, host: &url::Host<&str>, port: u16, scheme: &str) -> bool {
        let port_ok = match self.port {
            PortRule::Any => true,
            PortRule::Exact(p) => p == port,
            PortRule::Default => Some(port) == default_port(scheme),
        };
        if !port_ok {
            return false;
        }
        match (&self.name, host) {
            (PatternName::Ip(ip), url::Host::Ipv4(a)) => *ip == IpAddr::V4(*a),
            (PatternName::Ip(ip), url::Host::Ipv6(a)) => *ip == IpAddr::V6(*a),
            (PatternName::Domain(d), url::Host::Domain(h)) => {
                h.strip_suffix('.').unwrap_or(h).eq_ignore_ascii_case(d)
            }
            (PatternName::Wildcard(suffix), url::Host::Domain(h)) => {
                let h = h.strip_suffix('.').unwrap_or(h).to_ascii_lowercase();
                match h.split_once('.') {
                    Some((label, rest)) => !label.is_empty() && rest == suffix,
                    None => false,
                }
            }
            _ => false,
        }
    }
}

/// Whether `name` (canonical) is itself a public suffix, in the ICANN or the private
/// section of the Public Suffix List (`co.uk`, `github.io`, `s3.amazonaws.com`). An
/// unlisted top-level domain is not "known" to `psl`, so `example.internal` stays allowed.
fn is_public_suffix(name: &str) -> bool {
    psl::suffix(name.as_bytes()).is_some_and(|s| s.is_known() && s.as_bytes() == name.as_bytes())
}

/// Numeric-looking final label: such names are IPv4 literals in some parsers.
fn looks_numeric(name: &str) -> bool {
    name.rsplit('.')
        .next()
        .is_some_and(|l| l.chars().all(|c| c.is_ascii_digit()))
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "https" => Some(443),
        "http" => Some(80),
        _ => None,
    }
}

fn split_port(s: &str) -> Result<(&str, PortRule), String> {
    // "[v6]:port", "[v6]", "host:port", "host", "v6 without brackets" (no port possible).
    if s.starts_with('[') {
        return match s.rfind("]:") {
            Some(i) => Ok((&s[..=i], parse_port(&s[i + 2..])?)),
            None => Ok((s, PortRule::Default)),
        };
    }
    if s.matches(':').count() > 1 {
        return Ok((s, PortRule::Default)); // bare IPv6
    }
    match s.split_once(':') {
        Some((h, p)) => Ok((h, parse_port(p)?)),
        None => Ok((s, PortRule::Default)),
    }
}

fn parse_port(p: &str) -> Result<PortRule, String> {
    if p == "*" {
        return Ok(PortRule::Any);
    }
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("{p:?} is not a port (1-65535 or *)")),
        Ok(n) => Ok(PortRule::Exact(n)),
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            PatternName::Domain(d) => write!(f, "{d}")?,
            PatternName::Wildcard(s) => write!(f, "*.{s}")?,
            PatternName::Ip(IpAddr::V4(a)) => write!(f, "{a}")?,
            PatternName::Ip(IpAddr::V6(a)) => write!(f, "[{a}]")?,
        }
        match self.port {
            PortRule::Default => Ok(()),
            PortRule::Exact(p) => write!(f, ":{p}"),
            PortRule::Any => write!(f, ":*"),
        }
    }
}

impl TryFrom<String> for HostPattern {
    type Error = PatternError;
    fn try_from(s: String) -> Result<Self, PatternError> {
        HostPattern::parse(&s)
    }
}

impl From<HostPattern> for String {
    fn from(p: HostPattern) -> String {
        p.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, url: &str) -> bool {
        let p = HostPattern::parse(pattern).expect("pattern");
        let u = url::Url::parse(url).expect("url");
        let port = u.port_or_known_default().expect("port");
        p.matches(&u.host().expect("host"), port, u.scheme())
    }

    #[test]
    fn accepts_exact_host_case_and_trailing_dot() {
        assert!(m("api.example.com", "https://api.example.com/x"));
        assert!(m("API.Example.COM", "https://api.EXAMPLE.com/x"));
        assert!(m("api.example.com", "https://api.example.com./x"));
        assert!(m("api.example.com.", "https://api.example.com/x"));
    }

    #[test]
    fn rejects_other_hosts_and_lookalikes() {
        assert!(!m("api.example.com", "https://api.example.com.evil.net/"));
        assert!(!m("api.example.com", "https://evilapi.example.com/"));
        assert!(!m("api.example.com", "https://example.com/"));
        assert!(!m("api.example.com", "https://xn--pi-8ja.example.com/"));
    }

    #[test]
    fn accepts_idna_in_canonical_form() {
        assert!(m("bücher.example", "https://xn--bcher-kva.example/"));
        assert!(m("xn--bcher-kva.example", "https://BÜCHER.example/"));
    }

    #[test]
    fn wildcard_matches_one_label_only_and_not_apex() {
        assert!(m("*.example.com", "https://api.example.com/"));
        assert!(!m("*.example.com", "https://example.com/"));
        assert!(!m("*.example.com", "https://a.b.example.com/"));
        assert!(!m("*.example.com", "https://api.example.com.evil.net/"));
        assert!(!m("*.example.com", "https://apiexample.com/"));
    }

    #[test]
    fn rejects_bad_wildcards() {
        for p in [
            "*.com",
            "*",
            "a.*.com",
            "*api.example.com",
            "**.example.com",
            "*.1.2.3",
        ] {
            assert!(HostPattern::parse(p).is_err(), "{p}");
        }
    }

    #[test]
    fn rejects_url_delimiters_and_empty_labels() {
        for bad in [
            "..?",
            "a?b.com",
            "a#b.com",
            "api..example.com",
            ".",
            "x.com..",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rejects_wildcards_on_public_suffixes() {
        for p in [
            "*.github.io",
            "*.herokuapp.com",
            "*.co.uk",
            "*.s3.amazonaws.com",
            "*.com",
            "*.GitHub.IO",
            "*.github.io.",
            "*.blogspot.com:443",
        ] {
            let e = HostPattern::parse(p).expect_err(p);
            assert!(
                e.reason.contains("public suffix") || e.reason.contains("two labels"),
                "{p}: {e}"
            );
        }
        let e = HostPattern::parse("*.github.io").expect_err("psl");
        assert!(e.to_string().contains("public suffix"), "{e}");
    }

    #[test]
    fn accepts_wildcards_under_registrable_domains() {
        for p in [
            "*.example.co.uk",
            "*.api.github.io",
            "*.example.com",
            "*.myapp.herokuapp.com",
            "*.corp.internal",
        ] {
            assert!(HostPattern::parse(p).is_ok(), "{p}");
        }
        // Exact names stay allowed even when they are public suffixes' hosts.
        assert!(HostPattern::parse("octo.github.io").is_ok());
    }

    #[test]
    fn ports_default_exact_any() {
        assert!(m("api.example.com", "https://api.example.com:443/"));
        assert!(!m("api.example.com", "https://api.example.com:8443/"));
        assert!(!m("api.example.com", "http://api.example.com:443/"));
        assert!(m("api.example.com", "http://api.example.com/"));
        assert!(m("api.example.com:8443", "https://api.example.com:8443/"));
        assert!(!m("api.example.com:8443", "https://api.example.com/"));
        assert!(m("api.example.com:*", "https://api.example.com:9/"));
    }

    #[test]
    fn ip_literals_never_match_names() {
        assert!(m("127.0.0.1:*", "http://127.0.0.1:8080/"));
        assert!(!m("localhost:*", "http://127.0.0.1:8080/"));
        assert!(!m("127.0.0.1:*", "http://localhost:8080/"));
        assert!(m("[::1]:*", "http://[::1]:8080/"));
        assert!(!m("127.0.0.1:*", "http://[::ffff:127.0.0.1]:8080/"));
        // Numeric host forms that url normalises to 127.0.0.1 are IPs, not names.
        assert!(m("127.0.0.1:*", "http://0x7f.0.0.1:8080/"));
    }

    #[test]
    fn rejects_urls_userinfo_and_bad_ports() {
        for p in [
            "https://api.example.com",
            "api.example.com/path",
            "user@api.example.com",
            "api.example.com:0",
            "api.example.com:99999",
            "api.example.com:x",
            "",
            "0x7f.0.0.1",
            "[::1",
        ] {
            assert!(HostPattern::parse(p).is_err(), "{p}");
        }
    }

    #[test]
    fn display_round_trips() {
        for p in [
            "api.example.com",
            "*.example.com:8443",
            "127.0.0.1:*",
            "[::1]:80",
        ] {
            let parsed = HostPattern::parse(p).expect("pattern");
            assert_eq!(
                HostPattern::parse(&parsed.to_string()).expect("again"),
                parsed
            );
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn label() -> impl Strategy<Value = String> {
            "[a-z][a-z0-9]{0,7}"
        }

        proptest! {
            /// An exact pattern matches a URL exactly when the canonical hosts are equal and
            /// the port is the scheme default.
            #[test]
            fn exact_pattern_matches_only_its_own_host(a in label(), b in label(), c in label(), port in 1u16..) {
                let pattern = format!("{a}.{b}.example");
                let p = HostPattern::parse(&pattern).expect("pattern");
                for (host, expect) in [
                    (pattern.clone(), true),
                    (pattern.to_uppercase(), true),
                    (format!("{c}.{pattern}"), false),
                    (format!("{pattern}.{c}"), false),
                    (format!("{c}{a}.{b}.example"), false),
                ] {
                    let u = url::Url::parse(&format!("https://{host}:{port}/")).expect("url");
                    let got = p.matches(&u.host().expect("host"), u.port_or_known_default().expect("port"), "https");
                    prop_assert_eq!(got, expect && port == 443, "{} vs {}", host, pattern);
                }
            }

            /// A wildcard admits exactly one extra label, never the apex or deeper names.
            #[test]
            fn wildcard_admits_exactly_one_label(a in label(), b in label(), c in label()) {
                let p = HostPattern::parse("*.example.com").expect("pattern");
                let check = |h: &str| {
                    let u = url::Url::parse(&format!("https://{h}/")).expect("url");
                    p.matches(&u.host().expect("host"), 443, "https")
                };
                let (one, two, after) = (format!("{a}.example.com"), format!("{a}.{b}.example.com"), format!("{a}.example.com.{c}"));
                prop_assert!(check(&one));
                prop_assert!(!check(&two));
                prop_assert!(!check("example.com"));
                prop_assert!(!check(&after));
            }

            /// Parsing arbitrary text never panics, and what parses prints back to itself.
            #[test]
            fn parse_never_panics_and_round_trips(s in "\\PC{0,40}") {
                if let Ok(p) = HostPattern::parse(&s) {
                    prop_assert_eq!(HostPattern::parse(&p.to_string()).expect("reparse"), p);
                }
            }
        }
    }
}
