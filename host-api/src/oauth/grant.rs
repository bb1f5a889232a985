//! One request to a token endpoint (RFC 6749 §6 refresh-token grant, §4.4 client
//! credentials): a form POST the host makes, never the guest, and its answer read within
//! bounds.
//!
//! The client authenticates with HTTP Basic (`client_secret_basic`, §2.3.1: id and secret
//! form-urlencoded, then base64), which §2.3.1 requires every server to support. Nothing
//! the endpoint answers reaches the guest: on success only the tokens are kept; on failure
//! only the status and, if it is one RFC 6749 registers, the `error` code.

use super::client::Client;
use crate::policy::{AddressPolicy, Grant, TokenEndpoint};
use crate::secret::{MAX_VALUE_BYTES, SecretValue};
use base64::Engine as _;
use std::time::Duration;
use zeroize::Zeroizing;

/// Largest token endpoint response read, in bytes: room for an access token and a refresh
/// token of [`MAX_VALUE_BYTES`] each, and the rest of the JSON.
pub const MAX_RESPONSE_BYTES: usize = 2 * MAX_VALUE_BYTES + 16 * 1024;
/// Lifetime assumed when the endpoint gives no `expires_in` (RFC 6749 §5.1 makes it
/// optional): short, so a token of unknown life is not used for long.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// Longest lifetime believed: a larger `expires_in` is cut to this.
pub const MAX_LIFETIME: Duration = Duration::from_secs(366 * 24 * 3600);

/// The `error` codes of RFC 6749 §5.2 and §4.1.2.1: the only endpoint text ever repeated.
const REGISTERED_ERRORS: &[&str] = &[
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "server_error",
    "temporarily_unavailable",
];

/// What the endpoint issued.
pub(crate) struct Issued {
    pub access: SecretValue,
    /// A new refresh token (rotation), if the endpoint sent one.
    pub refresh_token: Option<SecretValue>,
    /// `expires_in`, or [`DEFAULT_LIFETIME`].
    pub lifetime: Duration,
}

/// Why no token was issued. Never holds a value or the endpoint's body.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GrantError {
    /// The address policy refuses the endpoint's address.
    #[error("is refused: it is a {0} address")]
    Refused(String),
    /// The endpoint could not be reached.
    #[error("could not be reached: {0}")]
    Unreachable(String),
    /// No answer in time.
    #[error("did not answer in time")]
    Timeout,
    /// A status other than 2xx, with the registered OAuth `error` code if there was one.
    #[error("answered {status}{}", error_suffix(.error))]
    Status {
        /// The HTTP status.
        status: u16,
        /// A registered `error` code, `unregistered error code` if the endpoint sent
        /// another one, or `None`.
        error: Option<String>,
    },
    /// A 2xx answer that is not a usable token response.
    #[error("answered with {0}")]
    BadResponse(&'static str),
}

fn error_suffix(error: &Option<String>) -> String {
    error
        .as_ref()
        .map(|e| format!(" ({e})"))
        .unwrap_or_default()
}

#[derive(serde::Deserialize)]
struct Wire {
    access_token: Option<String>,
    refresh_token: Option<String>,
    expires_in: Option<serde_json::Value>,
}

#[derive(serde::Deserialize)]
struct WireError {
    error: Option<String>,
}

/// Asks `endpoint` for an access token for `client`, within `timeout`.
pub(crate) async fn request(
    http: &reqwest::Client,
    policy: AddressPolicy,
    endpoint: &TokenEndpoint,
    client: &Client,
    timeout: Duration,
) -> Result<Issued, GrantError> {
    // A name is checked by the client's resolver; an IP literal never reaches it.
    if let Some(ip) = endpoint.literal_ip() {
        policy
            .check(ip)
            .map_err(|reason| GrantError::Refused(reason.to_owned()))?;
    }
    let url = endpoint
        .url()
        .map_err(|_| GrantError::BadResponse("an invalid URL"))?;
    let body = form(endpoint, client)?;
    let auth = basic(client)?;
    let mut auth = reqwest::header::HeaderValue::from_str(&auth)
        .map_err(|_| GrantError::BadResponse("a client id or secret that is not header-safe"))?;
    auth.set_sensitive(true);
    let send = async {
        let mut resp = http
            .post(url)
            .header(reqwest::header::AUTHORIZATION, auth)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .header(reqwest::header::ACCEPT_ENCODING, "identity")
            .body(body.as_bytes().to_vec())
            .send()
            .await
            .map_err(transport)?;
        let status = resp.status().as_u16();
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_RESPONSE_BYTES as u64)
        {
            return Err(GrantError::BadResponse("a body that is too large"));
        }
        let mut bytes = Zeroizing::new(Vec::new());
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(GrantError::BadResponse("a body that is too large"));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok((status, bytes))
    };
    let (status, bytes) = tokio::time::timeout(timeout, send)
        .await
        .map_err(|_| GrantError::Timeout)??;
    if !(200..300).contains(&status) {
        return Err(GrantError::Status {
            status,
            error: error_code(&bytes),
        });
    }
    parse(&bytes)
}

/// The form body: grant type, refresh token (for that grant) and scope.
fn form(endpoint: &TokenEndpoint, client: &Client) -> Result<Zeroizing<String>, GrantError> {
    let mut body = Zeroizing::new(String::new());
    let mut form = url::form_urlencoded::Serializer::new(&mut *body);
    form.append_pair("grant_type", endpoint.grant.grant_type());
    if endpoint.grant == Grant::RefreshToken {
        let rt = client
            .refresh_token
            .as_ref()
            .map(|t| std::str::from_utf8(t.expose()))
            .and_then(Result::ok)
            .ok_or(GrantError::BadResponse("no stored refresh token"))?;
        form.append_pair("refresh_token", rt);
    }
    if let Some(scope) = &endpoint.scope {
        form.append_pair("scope", scope);
    }
    form.finish();
    Ok(body)
}

/// `Basic base64(urlencode(id) ":" urlencode(secret))` (RFC 6749 §2.3.1).
fn basic(client: &Client) -> Result<Zeroizing<String>, GrantError> {
    let secret = std::str::from_utf8(client.client_secret.expose())
        .map_err(|_| GrantError::BadResponse("a client secret that is not UTF-8"))?;
    let enc = |s: &str| {
        Zeroizing::new(url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>())
    };
    let mut pair = enc(&client.client_id);
    pair.push(':');
    pair.push_str(&enc(secret));
    let mut out = Zeroizing::new(String::from("Basic "));
    base64::engine::general_purpose::STANDARD.encode_string(pair.as_bytes(), &mut out);
    Ok(out)
}

/// A successful answer: an access token within [`MAX_VALUE_BYTES`], maybe a refresh token,
/// and a lifetime.
fn parse(bytes: &[u8]) -> Result<Issued, GrantError> {
    let wire: Wire = serde_json::from_slice(bytes)
        .map_err(|_| GrantError::BadResponse("a body that is not JSON"))?;
    let token = |t: Option<String>, what| -> Result<Option<SecretValue>, GrantError> {
        let Some(t) = t.map(Zeroizing::new) else {
            return Ok(None);
        };
        if t.len() > MAX_VALUE_BYTES {
            return Err(GrantError::BadResponse(what));
        }
        SecretValue::new(t.as_bytes().to_vec())
            .map(Some)
            .map_err(|_| GrantError::BadResponse(what))
    };
    let access = token(wire.access_token, "an empty or oversized access_token")?
        .ok_or(GrantError::BadResponse("no access_token"))?;
    let refresh_token = token(wire.refresh_token, "an empty or oversized refresh_token")?;
    let lifetime = match wire.expires_in {
        None | Some(serde_json::Value::Null) => DEFAULT_LIFETIME,
        Some(serde_json::Value::Number(n)) => {
            n.as_u64()
                .map(Duration::from_secs)
                .ok_or(GrantError::BadResponse(
                    "an expires_in that is not a whole number",
                ))?
        }
        // Some servers send it as a string.
        Some(serde_json::Value::String(s)) => s
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| GrantError::BadResponse("an expires_in that is not a whole number"))?,
        Some(_) => {
            return Err(GrantError::BadResponse(
                "an expires_in that is not a number",
            ));
        }
    };
    Ok(Issued {
        access,
        refresh_token,
        lifetime: lifetime.min(MAX_LIFETIME),
    })
}

/// The `error` of an error answer, if it is a registered code (anything else the endpoint
/// wrote could hold anything, so it is not repeated).
fn error_code(bytes: &[u8]) -> Option<String> {
    let code = serde_json::from_slice::<WireError>(bytes).ok()?.error?;
    Some(if REGISTERED_ERRORS.contains(&code.as_str()) {
        code
    } else {
        "unregistered error code".to_owned()
    })
}

/// A transport failure in words: no URL, and an address refusal named as such.
fn transport(e: reqwest::Error) -> GrantError {
    if e.is_timeout() {
        return GrantError::Timeout;
    }
    if let Some(r) = crate::http::clients::DestinationRefused::behind(&e) {
        return GrantError::Refused(r.reason.to_owned());
    }
    GrantError::Unreachable(crate::http::clients::failure_text(e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_token_response_with_or_without_expiry_and_rotation() {
        let i = parse(br#"{"access_token":"at","token_type":"Bearer","expires_in":"90","refresh_token":"rt2"}"#).unwrap();
        assert_eq!(i.access.expose(), b"at");
        assert_eq!(i.refresh_token.unwrap().expose(), b"rt2");
        assert_eq!(i.lifetime, Duration::from_secs(90));
        let i = parse(br#"{"access_token":"at"}"#).unwrap();
        assert_eq!(i.lifetime, DEFAULT_LIFETIME);
        assert!(i.refresh_token.is_none());
    }

    #[test]
    fn rejects_bad_answers_without_repeating_them() {
        for (body, want) in [
            (&b"<html>at=secret</html>"[..], "a body that is not JSON"),
            (br#"{"token":"x"}"#, "no access_token"),
            (
                br#"{"access_token":""}"#,
                "an empty or oversized access_token",
            ),
            (
                br#"{"access_token":"a","expires_in":-3}"#,
                "an expires_in that is not a whole number",
            ),
        ] {
            let e = parse(body).err().unwrap();
            assert_eq!(e.to_string(), format!("answered with {want}"));
        }
        let huge = format!(
            r#"{{"access_token":"{}"}}"#,
            "a".repeat(MAX_VALUE_BYTES + 1)
        );
        assert!(parse(huge.as_bytes()).is_err());
    }

    #[test]
    fn repeats_only_registered_error_codes() {
        assert_eq!(
            error_code(br#"{"error":"invalid_grant","error_description":"rt-123 used"}"#)
                .as_deref(),
            Some("invalid_grant")
        );
        assert_eq!(
            error_code(br#"{"error":"rt-123"}"#).as_deref(),
            Some("unregistered error code")
        );
        assert_eq!(error_code(b"oops"), None);
        let e = GrantError::Status {
            status: 400,
            error: Some("invalid_grant".into()),
        };
        assert_eq!(e.to_string(), "answered 400 (invalid_grant)");
    }

    #[test]
    fn client_authentication_is_basic_over_form_encoded_parts() {
        let v =
            SecretValue::new(br#"{"client_id":"a b","client_secret":"p:w&"}"#.to_vec()).unwrap();
        let c = Client::parse(&v, Grant::ClientCredentials).unwrap();
        let b = basic(&c).unwrap();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&b["Basic ".len()..])
            .unwrap();
        assert_eq!(raw, b"a+b:p%3Aw%26");
    }
}
