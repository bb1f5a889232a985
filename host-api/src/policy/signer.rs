//! What the host asserts or signs for, for credentials whose request value it computes
//! from the stored key instead of sending the key: the AWS region and service a SigV4 key
//! signs for, and the claims of the JWTs a private key mints. Part of the binding, so they
//! are operator metadata (shown to members, sealed into the value's AAD), never chosen by
//! a step: a step that could pick the audience could mint tokens for another service.

use std::fmt;

/// The longest a minted JWT may live: an assertion replayed within its lifetime is as good
/// as the key for that audience, so it is short.
pub const MAX_JWT_TTL_SECS: u32 = 3600;
/// The lifetime of a minted JWT when none is given (GitHub Apps accept at most 600 s).
pub const DEFAULT_JWT_TTL_SECS: u32 = 300;

/// Signing parameters of a binding.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum SignerParams {
    /// AWS Signature Version 4: the credential scope's region and service.
    Aws(AwsSigner),
    /// A JWT minted per request and signed with the stored private key.
    Jwt(JwtClaims),
}

/// What an AWS SigV4 key signs for: the region and service of the credential scope. A type
/// of its own (not fields of the variant) so that the API's schema names it once.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSigner {
    /// e.g. `us-east-1`.
    pub region: String,
    /// e.g. `s3`, `sqs`, `execute-api`.
    pub service: String,
}

/// The registered claims of a minted JWT. `iat` and `exp` are set at each request (`iat`
/// 30 s in the past, for clock skew); `jti` is random.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtClaims {
    /// `iss`: who the token says it is from (a GitHub App id, a service account email).
    pub issuer: String,
    /// `sub`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// `aud`, if any (an OAuth2 token endpoint, an API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// `scope`, if any (Google service accounts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Lifetime of each token in seconds, 1 to [`MAX_JWT_TTL_SECS`].
    pub ttl_secs: u32,
    /// `kid` in the header, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
}

/// Why signing parameters were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignerError {
    /// A field is empty, too long or holds characters it may not.
    #[error("invalid {field} {value:?}: {reason}")]
    Field {
        /// Which field.
        field: &'static str,
        /// The refused text (operator metadata, never a secret), cut to 64 characters.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The lifetime is out of range.
    #[error("invalid JWT lifetime {0} s: use 1 to {MAX_JWT_TTL_SECS} seconds")]
    Ttl(u32),
}

impl SignerParams {
    /// Checks every field.
    pub fn check(&self) -> Result<(), SignerError> {
        match self {
            SignerParams::Aws(AwsSigner { region, service }) => {
                // Region and service go into the credential scope `date/region/service/`.
                let ident = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
                check_field("AWS region", region, 64, ident)?;
                check_field("AWS service", service, 64, ident)
            }
            SignerParams::Jwt(c) => {
                let printable = |c: char| !c.is_control();
                check_field("JWT issuer", &c.issuer, 256, printable)?;
                for (field, v) in [
                    ("JWT subject", &c.subject),
                    ("JWT audience", &c.audience),
                    ("JWT scope", &c.scope),
                    ("JWT key id", &c.key_id),
                ] {
                    if let Some(v) = v {
                        check_field(field, v, 1024, printable)?;
                    }
                }
                if c.ttl_secs == 0 || c.ttl_secs > MAX_JWT_TTL_SECS {
                    return Err(SignerError::Ttl(c.ttl_secs));
                }
                Ok(())
            }
        }
    }
}

fn check_field(
    field: &'static str,
    value: &str,
    max: usize,
    allowed: impl Fn(char) -> bool,
) -> Result<(), SignerError> {
    let refuse = |reason| SignerError::Field {
        field,
        value: value.chars().take(64).collect(),
        reason,
    };
    if value.is_empty() {
        return Err(refuse("it is empty"));
    }
    if value.len() > max {
        return Err(refuse("it is too long"));
    }
    if !value.chars().all(allowed) {
        return Err(refuse("it holds a character it may not"));
    }
    Ok(())
}

impl fmt::Display for SignerParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignerParams::Aws(AwsSigner { region, service }) => {
                write!(f, "signs for AWS {service} in {region}")
            }
            SignerParams::Jwt(c) => {
                write!(f, "mints JWTs iss {}", c.issuer)?;
                if let Some(a) = &c.audience {
                    write!(f, ", aud {a}")?;
                }
                write!(f, ", {} s", c.ttl_secs)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(ttl: u32) -> SignerParams {
        SignerParams::Jwt(JwtClaims {
            issuer: "123456".into(),
            subject: None,
            audience: Some("https://oauth2.example.com/token".into()),
            scope: None,
            ttl_secs: ttl,
            key_id: None,
        })
    }

    #[test]
    fn accepts_aws_scopes_and_jwt_claims() {
        let aws = SignerParams::Aws(AwsSigner {
            region: "eu-west-1".into(),
            service: "execute-api".into(),
        });
        assert_eq!(aws.check(), Ok(()));
        assert_eq!(jwt(600).check(), Ok(()));
    }

    #[test]
    fn rejects_scope_breaking_regions_and_out_of_range_lifetimes() {
        for region in ["", "us-east-1/x", "US-EAST-1", "a b"] {
            let p = SignerParams::Aws(AwsSigner {
                region: region.into(),
                service: "s3".into(),
            });
            assert!(p.check().is_err(), "{region:?}");
        }
        assert_eq!(jwt(0).check(), Err(SignerError::Ttl(0)));
        assert_eq!(jwt(3601).check(), Err(SignerError::Ttl(3601)));
    }

    #[test]
    fn old_bindings_without_signing_parameters_read_unchanged() {
        let p: SignerParams =
            serde_json::from_str(r#"{"aws":{"region":"us-east-1","service":"s3"}}"#).expect("p");
        assert!(matches!(p, SignerParams::Aws(_)));
    }
}
