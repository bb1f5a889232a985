//! Where and how the host obtains an OAuth2 access token for a credential of kind
//! `oauth2`: the token endpoint, the grant and the scope. Operator metadata, stored in
//! the record (and so covered by its AAD); checked here without I/O.

use std::net::IpAddr;

/// Longest `scope` accepted, in bytes.
pub const MAX_SCOPE_BYTES: usize = 1024;
/// Longest token endpoint URL accepted, in bytes.
pub const MAX_URL_BYTES: usize = 2048;

/// Which OAuth2 grant the host uses at the token endpoint.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Grant {
    /// RFC 6749 §6: the stored refresh token is exchanged for an access token (and maybe a
    /// new refresh token, which the host then stores).
    #[default]
    RefreshToken,
    /// RFC 6749 §4.4: the client authenticates as itself; no refresh token is stored.
    ClientCredentials,
}

impl Grant {
    /// Parses `refresh-token` or `client-credentials`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "refresh-token" => Some(Grant::RefreshToken),
            "client-credentials" => Some(Grant::ClientCredentials),
            _ => None,
        }
    }

    /// The `grant_type` form value.
    pub fn grant_type(self) -> &'static str {
        match self {
            Grant::RefreshToken => "refresh_token",
            Grant::ClientCredentials => "client_credentials",
        }
    }
}

impl std::fmt::Display for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Grant::RefreshToken => "refresh-token",
            Grant::ClientCredentials => "client-credentials",
        })
    }
}

/// The token endpoint of an `oauth2` credential, its grant and scope.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEndpoint {
    /// Stored as text (the record is JSON); parsed and checked at every use.
    url: String,
    /// The `scope` parameter sent, if any (space-separated scope tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The grant.
    #[serde(default)]
    pub grant: Grant,
}

/// Why a token endpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenEndpointError {
    /// Not a URL.
    #[error("the token URL is not a valid URL: {0}")]
    Url(String),
    /// Longer than [`MAX_URL_BYTES`].
    #[error("the token URL is longer than {MAX_URL_BYTES} bytes")]
    UrlTooLong,
    /// Not `https`, or `http` to a host that is not a loopback address.
    #[error(
        "the token URL must be https (plain http only to a loopback address such as 127.0.0.1)"
    )]
    Scheme,
    /// Credentials or a fragment in the URL.
    #[error("the token URL may not carry a user name, password or #fragment")]
    Shape,
    /// A scope with characters RFC 6749 §3.3 does not allow, or too long.
    #[error(
        "the scope must be space-separated tokens of printable ASCII (no '\"' or '\\'), at most {MAX_SCOPE_BYTES} bytes"
    )]
    Scope,
}

impl TokenEndpoint {
    /// Checks and builds an endpoint: `https`, or plain `http` only to a loopback IP
    /// literal or `localhost` (a local fake or a sidecar; whether the address may be
    /// reached at all is still the address policy's decision at every request).
    pub fn new(url: &str, scope: Option<String>, grant: Grant) -> Result<Self, TokenEndpointError> {
        if url.len() > MAX_URL_BYTES {
            return Err(TokenEndpointError::UrlTooLong);
        }
        let endpoint = TokenEndpoint {
            url: url.to_owned(),
            scope: scope.filter(|s| !s.is_empty()),
            grant,
        };
        endpoint.check()?;
        Ok(endpoint)
    }

    /// Checks an endpoint read from a record (the same rules as [`Self::new`]).
    pub fn check(&self) -> Result<(), TokenEndpointError> {
        self.url().map(drop)
    }

    /// The endpoint URL, checked.
    pub fn url(&self) -> Result<url::Url, TokenEndpointError> {
        if self.url.len() > MAX_URL_BYTES {
            return Err(TokenEndpointError::UrlTooLong);
        }
        let url = url::Url::parse(&self.url).map_err(|e| TokenEndpointError::Url(e.to_string()))?;
        if url.host().is_none() || url.cannot_be_a_base() {
            return Err(TokenEndpointError::Url("it has no host".into()));
        }
        if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
            return Err(TokenEndpointError::Shape);
        }
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(&url) => {}
            _ => return Err(TokenEndpointError::Scheme),
        }
        if let Some(s) = &self.scope
            && (s.len() > MAX_SCOPE_BYTES
                || !s
                    .bytes()
                    .all(|b| b == b' ' || (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\'))
        {
            return Err(TokenEndpointError::Scope);
        }
        Ok(url)
    }

    /// The URL as given, for listings.
    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// `scheme://host:port` of the endpoint, for messages and the audit trail.
    pub fn origin(&self) -> String {
        let Ok(url) = self.url() else {
            return "(invalid token URL)".into();
        };
        let host = url.host_str().unwrap_or_default();
        let port = url.port_or_known_default().unwrap_or(0);
        format!("{}://{host}:{port}", url.scheme())
    }

    /// The IP address of the endpoint when its host is an IP literal: the address policy
    /// checks it directly (a name is checked by the client's resolver).
    pub fn literal_ip(&self) -> Option<IpAddr> {
        match self.url().ok()?.host()? {
            url::Host::Ipv4(a) => Some(IpAddr::V4(a)),
            url::Host::Ipv6(a) => Some(IpAddr::V6(a)),
            url::Host::Domain(_) => None,
        }
    }
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn accepts_https_and_loopback_http() {
        for u in [
            "https://oauth2.googleapis.com/token",
            "http://127.0.0.1:8080/token",
            "http://[::1]:9/token",
            "http://localhost/token",
        ] {
            assert!(
                TokenEndpoint::new(u, None, Grant::RefreshToken).is_ok(),
                "{u}"
            );
        }
    }

    #[test]
    fn rejects_plain_http_elsewhere_and_odd_shapes() {
        let new = |u: &str| TokenEndpoint::new(u, None, Grant::ClientCredentials);
        assert_eq!(
            new("http://auth.example.com/token"),
            Err(TokenEndpointError::Scheme)
        );
        assert_eq!(new("ftp://127.0.0.1/x"), Err(TokenEndpointError::Scheme));
        assert_eq!(
            new("https://u:p@auth.example.com/token"),
            Err(TokenEndpointError::Shape)
        );
        assert_eq!(
            new("https://auth.example.com/token#x"),
            Err(TokenEndpointError::Shape)
        );
        assert!(matches!(new("not a url"), Err(TokenEndpointError::Url(_))));
        let long = format!("https://a.com/{}", "x".repeat(MAX_URL_BYTES));
        assert_eq!(new(&long), Err(TokenEndpointError::UrlTooLong));
    }

    #[test]
    fn rejects_scopes_outside_rfc_6749() {
        let with =
            |s: &str| TokenEndpoint::new("https://a.com/t", Some(s.into()), Grant::RefreshToken);
        assert!(with("read write offline_access").is_ok());
        assert_eq!(with("a\"b"), Err(TokenEndpointError::Scope));
        assert_eq!(with("a\nb"), Err(TokenEndpointError::Scope));
        assert_eq!(
            with(&"s".repeat(MAX_SCOPE_BYTES + 1)),
            Err(TokenEndpointError::Scope)
        );
    }

    #[test]
    fn an_old_record_without_grant_reads_as_refresh_token() {
        let e: TokenEndpoint = serde_json::from_str(r#"{"url":"https://a.com/t"}"#).unwrap();
        assert_eq!(e.grant, Grant::RefreshToken);
        assert_eq!(e.origin(), "https://a.com:443");
    }
}
