//! What an `oauth2` credential's sealed value holds: the client id and secret, and for the
//! refresh-token grant the refresh token, as one JSON object. Parsed only into zeroizing
//! types; errors name the field, never its content.

use crate::policy::Grant;
use crate::secret::SecretValue;
use zeroize::Zeroizing;

/// Longest client id accepted, in bytes (it is sent in every token request).
pub const MAX_CLIENT_ID_BYTES: usize = 1024;

/// The parsed value of an `oauth2` credential.
pub(crate) struct Client {
    pub client_id: Zeroizing<String>,
    pub client_secret: SecretValue,
    pub refresh_token: Option<SecretValue>,
}

/// Why a stored or given `oauth2` value was refused. Never holds any part of the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Not a JSON object of strings.
    #[error(
        "an oauth2 value must be a JSON object with string fields client_id, client_secret and (for the refresh-token grant) refresh_token"
    )]
    NotJson,
    /// A required field is missing or empty.
    #[error("the oauth2 value has no {0}")]
    Missing(&'static str),
    /// A field the grant does not use.
    #[error("the oauth2 value has a {0}, which the {1} grant does not use")]
    Unexpected(&'static str, Grant),
    /// A field with control characters, or too long.
    #[error("the oauth2 value's {0} has control characters or is too long")]
    Invalid(&'static str),
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    client_id: Option<String>,
    client_secret: Option<String>,
    refresh_token: Option<String>,
}

impl Client {
    /// Parses the stored value of an `oauth2` credential for `grant`.
    pub fn parse(value: &SecretValue, grant: Grant) -> Result<Self, ClientError> {
        let wire: Wire =
            serde_json::from_slice(value.expose()).map_err(|_| ClientError::NotJson)?;
        // Each string moves into a zeroizing wrapper at once (no copy is left behind).
        let field = |v: Option<String>, name: &'static str, max: usize| {
            let v = v
                .map(Zeroizing::new)
                .filter(|s| !s.is_empty())
                .ok_or(ClientError::Missing(name))?;
            if v.len() > max || v.chars().any(char::is_control) {
                return Err(ClientError::Invalid(name));
            }
            Ok(v)
        };
        let secret = |v: Zeroizing<String>, name| {
            SecretValue::new(v.as_bytes().to_vec()).map_err(|_| ClientError::Invalid(name))
        };
        let client_id = field(wire.client_id, "client_id", MAX_CLIENT_ID_BYTES)?;
        let max = crate::secret::MAX_VALUE_BYTES;
        let client_secret = secret(
            field(wire.client_secret, "client_secret", max)?,
            "client_secret",
        )?;
        let refresh_token = match (grant, wire.refresh_token) {
            (Grant::RefreshToken, t) => {
                Some(secret(field(t, "refresh_token", max)?, "refresh_token")?)
            }
            (Grant::ClientCredentials, None) => None,
            (Grant::ClientCredentials, Some(_)) => {
                return Err(ClientError::Unexpected("refresh_token", grant));
            }
        };
        Ok(Client {
            client_id,
            client_secret,
            refresh_token,
        })
    }

    /// The same client with `refresh_token` in place of its own: the value the host
    /// stores after the token endpoint rotated the refresh token.
    pub fn with_refresh_token(
        &self,
        refresh_token: &SecretValue,
    ) -> Result<SecretValue, ClientError> {
        fn text<'v>(v: &'v SecretValue, name: &'static str) -> Result<&'v str, ClientError> {
            std::str::from_utf8(v.expose()).map_err(|_| ClientError::Invalid(name))
        }
        let json = Zeroizing::new(
            serde_json::to_vec(&serde_json::json!({
                "client_id": self.client_id.as_str(),
                "client_secret": text(&self.client_secret, "client_secret")?,
                "refresh_token": text(refresh_token, "refresh_token")?,
            }))
            .map_err(|_| ClientError::NotJson)?,
        );
        SecretValue::new(json.to_vec()).map_err(|_| ClientError::Invalid("refresh_token"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn v(s: &str) -> SecretValue {
        SecretValue::new(s.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn accepts_each_grant_with_its_fields() {
        let c = Client::parse(
            &v(r#"{"client_id":"app","client_secret":"s3","refresh_token":"rt"}"#),
            Grant::RefreshToken,
        )
        .unwrap();
        assert_eq!(c.client_id.as_str(), "app");
        assert_eq!(c.refresh_token.unwrap().expose(), b"rt");
        let c = Client::parse(
            &v(r#"{"client_id":"app","client_secret":"s3"}"#),
            Grant::ClientCredentials,
        )
        .unwrap();
        assert!(c.refresh_token.is_none());
    }

    #[test]
    fn rejects_missing_unexpected_and_unknown_fields_without_echoing_them() {
        let parse = |s: &str, g| Client::parse(&v(s), g).err().unwrap();
        assert_eq!(
            parse(
                r#"{"client_id":"a","client_secret":"s"}"#,
                Grant::RefreshToken
            ),
            ClientError::Missing("refresh_token")
        );
        assert_eq!(
            parse(
                r#"{"client_id":"a","client_secret":"s","refresh_token":"r"}"#,
                Grant::ClientCredentials
            ),
            ClientError::Unexpected("refresh_token", Grant::ClientCredentials)
        );
        let e = parse(
            r#"{"client_id":"a","secret":"hunter2-xyz"}"#,
            Grant::RefreshToken,
        );
        assert_eq!(e, ClientError::NotJson);
        assert!(!e.to_string().contains("hunter2"));
        assert_eq!(
            parse(
                r#"{"client_id":"a","client_secret":"s\n"}"#,
                Grant::ClientCredentials
            ),
            ClientError::Invalid("client_secret")
        );
    }

    #[test]
    fn a_rotated_refresh_token_replaces_only_that_field() {
        let c = Client::parse(
            &v(r#"{"client_id":"app","client_secret":"s3","refresh_token":"old"}"#),
            Grant::RefreshToken,
        )
        .unwrap();
        let next = c.with_refresh_token(&v("new")).unwrap();
        let again = Client::parse(&next, Grant::RefreshToken).unwrap();
        assert_eq!(again.refresh_token.unwrap().expose(), b"new");
        assert_eq!(again.client_secret.expose(), b"s3");
        assert_eq!(again.client_id.as_str(), "app");
    }
}
