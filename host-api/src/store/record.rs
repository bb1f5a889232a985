//! The stored record: metadata in clear (so `list` needs no decryption) and the sealed
//! value, whose AAD is the exact metadata bytes.
//!
//! Layout: `b"LK1"` ‖ metadata length (u32, big endian) ‖ metadata JSON ‖ nonce ‖ ciphertext.

use super::scope::Scope;
use crate::policy::{Binding, Quota, TokenEndpoint};
use crate::secret::CredentialKey;

const MAGIC: &[u8; 3] = b"LK1";
const AAD_PREFIX: &[u8] = b"latchkey/secret/v1\0";

/// What a credential is for.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CredentialKind {
    /// A value the host injects into requests (a token, an API key, a password).
    #[default]
    Static,
    /// An HMAC-SHA256 key the host signs request bodies with: it is never sent, only the
    /// signature is (in a header or query place its binding names).
    HmacSha256,
    /// AWS access keys (`{"access_key_id", "secret_access_key", "session_token"?}`): the
    /// host signs the whole request with Signature Version 4 for the binding's region and
    /// service and puts the result in `authorization`. The secret key is never sent.
    AwsSigv4,
    /// An RSA private key (PEM, PKCS#1 or PKCS#8) the host mints a short-lived RS256 JWT
    /// with, at each request, with the binding's claims. The key is never sent.
    JwtRs256,
    /// An ECDSA P-256 private key (PEM, PKCS#8) for ES256 JWTs, as [`Self::JwtRs256`].
    JwtEs256,
    /// An OAuth2 client (client id, client secret and, for the refresh-token grant, a
    /// refresh token, as a JSON object): the host obtains an access token from the token
    /// endpoint in [`SecretMeta::oauth`] and injects that, never the stored value.
    #[serde(rename = "oauth2")]
    OAuth2,
}

impl CredentialKind {
    /// Every kind, as `parse` reads it.
    pub const NAMES: &'static [&'static str] = &[
        "static",
        "hmac-sha256",
        "aws-sigv4",
        "jwt-rs256",
        "jwt-es256",
        "oauth2",
    ];

    /// Parses one of [`Self::NAMES`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "static" => Some(CredentialKind::Static),
            "hmac-sha256" => Some(CredentialKind::HmacSha256),
            "aws-sigv4" => Some(CredentialKind::AwsSigv4),
            "jwt-rs256" => Some(CredentialKind::JwtRs256),
            "jwt-es256" => Some(CredentialKind::JwtEs256),
            "oauth2" => Some(CredentialKind::OAuth2),
            _ => None,
        }
    }

    /// Whether what the host injects for it goes into requests as a value: the stored
    /// value, or for `oauth2` the access token obtained with it (otherwise the host
    /// computes what goes in from the key: a signature, a SigV4 authorization, a JWT).
    pub fn is_sent(self) -> bool {
        matches!(self, CredentialKind::Static | CredentialKind::OAuth2)
    }

    /// Whether the credential is used through a `signature` part (HMAC over the body);
    /// every other kind is used through a `secret` part, which the host fills with the
    /// value, a minted JWT or a SigV4 authorization.
    pub fn is_signature_key(self) -> bool {
        self == CredentialKind::HmacSha256
    }

    /// Whether the kind mints a JWT.
    pub fn is_jwt(self) -> bool {
        matches!(self, CredentialKind::JwtRs256 | CredentialKind::JwtEs256)
    }

    fn is_static(&self) -> bool {
        *self == CredentialKind::Static
    }
}

impl std::fmt::Display for CredentialKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CredentialKind::Static => "static",
            CredentialKind::HmacSha256 => "hmac-sha256",
            CredentialKind::AwsSigv4 => "aws-sigv4",
            CredentialKind::JwtRs256 => "jwt-rs256",
            CredentialKind::JwtEs256 => "jwt-es256",
            CredentialKind::OAuth2 => "oauth2",
        })
    }
}

/// What the operator says about a secret when storing it (everything but the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSpec {
    /// Integration type: only steps that declare it may use the secret.
    pub integration: String,
    /// Where the value may be sent.
    pub binding: Binding,
    /// Store the value even if it is estimated easy to guess (`--allow-weak-value`).
    /// Recorded in [`SecretMeta::weak_value_override`].
    pub allow_weak_value: bool,
    /// Requests per minute and per day that may carry the value (`Quota::default()`: no
    /// limit). Recorded in [`SecretMeta::quota`].
    pub quota: Quota,
    /// What the credential is: a value sent as it is, or a signing key.
    pub kind: CredentialKind,
    /// For `oauth2`: the token endpoint, grant and scope (`None` for every other kind).
    /// Recorded in [`SecretMeta::oauth`].
    pub oauth: Option<TokenEndpoint>,
}

/// Everything about a stored secret except its value. Safe to show to any member.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretMeta {
    /// Where the secret lives.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub scope: Scope,
    /// Its key.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub key: CredentialKey,
    /// Integration type, e.g. `http`, `slack`, `sendgrid`.
    pub integration: String,
    /// Where the value may be sent.
    pub binding: Binding,
    /// 1 when created, +1 at every rotation.
    pub version: u64,
    /// Who created it (the acting identity).
    pub created_by: String,
    /// When it was created, Unix time in milliseconds.
    pub created_at_ms: u64,
    /// Who last set or rotated it.
    pub updated_by: String,
    /// When it was last set or rotated, Unix time in milliseconds.
    pub updated_at_ms: u64,
    /// Whether the current value was stored with `--allow-weak-value`. Records the
    /// operator's choice, not the estimate: it is set whenever the override was given,
    /// whether or not the value needed it, so it says nothing about the value. Absent
    /// when false, so records stored before it existed read (and open) unchanged.
    #[serde(default, skip_serializing_if = "is_false")]
    pub weak_value_override: bool,
    /// Requests per minute and per day that may carry the value, enforced at injection.
    /// Part of the metadata (and so of the value's AAD): a quota edited on disk fails to
    /// open. Absent when unlimited, so older records read unchanged.
    #[serde(default, skip_serializing_if = "Quota::is_unlimited")]
    pub quota: Quota,
    /// What the credential is. Absent for a static value, so older records read unchanged.
    #[serde(default, skip_serializing_if = "CredentialKind::is_static")]
    pub kind: CredentialKind,
    /// For `oauth2`: where the host obtains access tokens. Part of the AAD, so an endpoint
    /// edited on disk fails to open. Absent for other kinds, so older records read
    /// unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth: Option<TokenEndpoint>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Why a stored record could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// Bad magic, truncated, or unparsable metadata.
    #[error("record is damaged: {0}")]
    Damaged(&'static str),
    /// The metadata names another scope or key than where the record is stored.
    #[error("record is stored under one name but describes another (moved or tampered with)")]
    Misplaced,
}

/// Checks an integration type name.
pub fn valid_integration(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// The associated data a value is sealed with: the exact metadata bytes.
pub(crate) fn aad(meta_json: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_PREFIX.len() + meta_json.len());
    aad.extend_from_slice(AAD_PREFIX);
    aad.extend_from_slice(meta_json);
    aad
}

/// Serialises metadata; its bytes are what the value's AAD covers.
pub(crate) fn meta_bytes(meta: &SecretMeta) -> Vec<u8> {
    // Serialising a struct of strings and numbers cannot fail.
    serde_json::to_vec(meta).unwrap_or_default()
}

/// Joins metadata bytes and a sealed value into a record.
pub(crate) fn encode(meta_json: &[u8], sealed: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + meta_json.len() + sealed.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(meta_json.len() as u32).to_be_bytes());
    out.extend_from_slice(meta_json);
    out.extend_from_slice(sealed);
    out
}

/// A decoded record, borrowing the stored bytes.
pub(crate) struct Decoded<'a> {
    pub meta: SecretMeta,
    pub meta_json: &'a [u8],
    pub sealed: &'a [u8],
}

/// Splits a record into its metadata bytes and sealed value, without parsing the
/// metadata (the sealed value's AAD covers those bytes). Never panics on any input.
pub(crate) fn split(bytes: &[u8]) -> Result<(&[u8], &[u8]), RecordError> {
    let rest = bytes
        .strip_prefix(MAGIC.as_slice())
        .ok_or(RecordError::Damaged("unknown format"))?;
    if rest.len() < 4 {
        return Err(RecordError::Damaged("truncated header"));
    }
    let (len, rest) = rest.split_at(4);
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    if rest.len() < len {
        return Err(RecordError::Damaged("truncated metadata"));
    }
    Ok(rest.split_at(len))
}

/// Splits a record and parses its metadata. Never panics on any input.
pub(crate) fn decode(bytes: &[u8]) -> Result<Decoded<'_>, RecordError> {
    let (meta_json, sealed) = split(bytes)?;
    let meta: SecretMeta = serde_json::from_slice(meta_json)
        .map_err(|_| RecordError::Damaged("unreadable metadata"))?;
    Ok(Decoded {
        meta,
        meta_json,
        sealed,
    })
}

/// Decodes the record stored under `id` and checks that its metadata names that id, so a
/// record copied under another name is reported, not served.
pub(crate) fn decode_at<'a>(id: &[u8], bytes: &'a [u8]) -> Result<Decoded<'a>, RecordError> {
    let decoded = decode(bytes)?;
    if storage_id(&decoded.meta.scope, &decoded.meta.key) != id {
        return Err(RecordError::Misplaced);
    }
    Ok(decoded)
}

/// The storage id of a secret: scope and key.
pub(crate) fn storage_id(scope: &Scope, key: &CredentialKey) -> Vec<u8> {
    let mut id = scope.storage_prefix().into_bytes();
    id.extend_from_slice(key.as_str().as_bytes());
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{HostPattern, InjectLocation};
    use proptest::prelude::*;

    fn meta() -> SecretMeta {
        SecretMeta {
            scope: Scope::Platform,
            key: CredentialKey::new("K").expect("key"),
            integration: "http".into(),
            binding: Binding::new(
                vec![HostPattern::parse("x.com").expect("h")],
                vec![InjectLocation::BasicAuth],
                false,
            )
            .expect("b"),
            version: 1,
            created_by: "a".into(),
            created_at_ms: 1,
            updated_by: "a".into(),
            updated_at_ms: 1,
            weak_value_override: false,
            quota: Quota::default(),
            kind: CredentialKind::Static,
            oauth: None,
        }
    }

    #[test]
    fn accepts_records_without_the_override_field_and_writes_it_only_when_set() {
        let m = meta();
        let json = String::from_utf8(meta_bytes(&m)).expect("utf8");
        assert!(!json.contains("weak_value_override"), "{json}");
        let overridden = SecretMeta {
            weak_value_override: true,
            ..m
        };
        let json = meta_bytes(&overridden);
        assert!(String::from_utf8_lossy(&json).contains(r#""weak_value_override":true"#));
        let back: SecretMeta = serde_json::from_slice(&json).expect("reads");
        assert_eq!(back, overridden);
    }

    #[test]
    fn oauth_metadata_is_written_only_for_oauth2_and_older_records_read_without_it() {
        let m = meta();
        let json = String::from_utf8(meta_bytes(&m)).expect("utf8");
        assert!(!json.contains("oauth"), "{json}");
        let endpoint = TokenEndpoint::new(
            "https://auth.example.com/token",
            Some("read".into()),
            crate::policy::Grant::ClientCredentials,
        )
        .expect("endpoint");
        let o = SecretMeta {
            kind: CredentialKind::OAuth2,
            oauth: Some(endpoint),
            ..m
        };
        let json = meta_bytes(&o);
        let text = String::from_utf8_lossy(&json);
        assert!(text.contains(r#""kind":"oauth2""#), "{text}");
        assert!(text.contains(r#""grant":"client-credentials""#), "{text}");
        let back: SecretMeta = serde_json::from_slice(&json).expect("reads");
        assert_eq!(back, o);
        assert_eq!(
            CredentialKind::parse("oauth2"),
            Some(CredentialKind::OAuth2)
        );
        assert_eq!(CredentialKind::OAuth2.to_string(), "oauth2");
    }

    #[test]
    fn round_trip() {
        let m = meta();
        let mj = meta_bytes(&m);
        let enc = encode(&mj, b"sealed-bytes");
        let d = decode(&enc).expect("decode");
        assert_eq!(d.meta, m);
        assert_eq!(d.sealed, b"sealed-bytes");
    }

    #[test]
    fn rejects_truncations() {
        let enc = encode(&meta_bytes(&meta()), b"sealed");
        for n in 0..(enc.len() - 6) {
            assert!(decode(&enc[..n]).is_err(), "prefix of {n} bytes");
        }
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
            let mut with_magic = MAGIC.to_vec();
            with_magic.extend_from_slice(&bytes);
            let _ = decode(&with_magic);
        }
    }
}
