//! AWS Signature Version 4 with stored access keys, by the maintained `aws-sigv4` crate.
//! The host signs the final request (method, URL, headers, body) and sets
//! `authorization`, `x-amz-date`, `x-amz-content-sha256` and, for temporary credentials,
//! `x-amz-security-token`; the secret access key never leaves.

use super::{KeyError, SignError};
use crate::secret::SecretValue;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use std::time::SystemTime;
use zeroize::Zeroizing;

/// The headers the signature sets; a step's own values for them are replaced.
pub(crate) const SET_HEADERS: &[&str] = &[
    "authorization",
    "x-amz-date",
    "x-amz-content-sha256",
    "x-amz-security-token",
];

const EXPECTED: &str =
    r#"JSON {"access_key_id": "...", "secret_access_key": "...", "session_token": "..."?}"#;

#[derive(serde::Deserialize, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
#[serde(deny_unknown_fields)]
struct Stored {
    access_key_id: String,
    secret_access_key: String,
    #[serde(default)]
    session_token: Option<String>,
}

/// Parsed access keys.
pub(crate) struct AwsKeys(Stored);

impl AwsKeys {
    /// Parses the stored JSON, checking each field's form (never echoing it).
    pub(crate) fn parse(value: &SecretValue) -> Result<AwsKeys, KeyError> {
        let refuse = |problem| KeyError::Format {
            expected: EXPECTED,
            problem,
        };
        let s: Stored = serde_json::from_slice(value.expose())
            .map_err(|_| refuse("not that JSON object (fields, types or syntax)"))?;
        let id = s.access_key_id.as_str();
        // It goes into `Credential=ID/date/region/...`: a '/', ',' or space would break it.
        if id.is_empty()
            || id.len() > 128
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(refuse(
                "access_key_id is not 1 to 128 letters, digits, '-', '_' or '.'",
            ));
        }
        let printable = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic());
        if !printable(&s.secret_access_key) {
            return Err(refuse("secret_access_key is empty or not printable ASCII"));
        }
        if s.session_token.as_ref().is_some_and(|t| !printable(t)) {
            return Err(refuse("session_token is empty or not printable ASCII"));
        }
        Ok(AwsKeys(s))
    }

    /// The temporary-credentials token, which is sent (so it is scrubbed like a value).
    pub(crate) fn session_token(&self) -> Option<&str> {
        self.0.session_token.as_deref()
    }
}

/// The signed headers for a request: (name, value) to set, `authorization` first.
pub(crate) fn sign_request(
    keys: &AwsKeys,
    region: &str,
    service: &str,
    request: (&str, &str, &[(String, String)], &[u8]),
    at: SystemTime,
) -> Result<Vec<(&'static str, Zeroizing<String>)>, SignError> {
    sign_with(
        keys,
        region,
        service,
        request,
        at,
        PayloadChecksumKind::XAmzSha256,
    )
}

fn sign_with(
    keys: &AwsKeys,
    region: &str,
    service: &str,
    request: (&str, &str, &[(String, String)], &[u8]),
    at: SystemTime,
    payload: PayloadChecksumKind,
) -> Result<Vec<(&'static str, Zeroizing<String>)>, SignError> {
    let (method, url, headers, body) = request;
    let identity: Identity = Credentials::new(
        keys.0.access_key_id.as_str(),
        keys.0.secret_access_key.as_str(),
        keys.session_token().map(str::to_owned),
        None,
        "latchkey",
    )
    .into();
    let mut settings = SigningSettings::default();
    // S3 needs the payload hash as a header; every other service accepts it.
    settings.payload_checksum_kind = payload;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(at)
        .settings(settings)
        .build()
        .map_err(|e| SignError::Request(e.to_string()))?
        .into();
    let signable = SignableRequest::new(
        method,
        url,
        headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
        SignableBody::Bytes(body),
    )
    .map_err(|e| SignError::Request(e.to_string()))?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| SignError::Request(e.to_string()))?
        .into_parts();
    let mut out = Vec::new();
    for (name, value) in instructions.headers() {
        if let Some(n) = SET_HEADERS.iter().find(|h| name.eq_ignore_ascii_case(h)) {
            out.push((*n, Zeroizing::new(value.to_owned())));
        }
    }
    out.sort_by_key(|(n, _)| *n != "authorization");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(json: &str) -> Result<AwsKeys, KeyError> {
        AwsKeys::parse(&SecretValue::new(json.as_bytes().to_vec()).expect("v"))
    }

    fn vanilla() -> (AwsKeys, SystemTime) {
        let k = keys(r#"{"access_key_id":"AKIDEXAMPLE","secret_access_key":"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}"#)
            .expect("keys");
        (
            k,
            SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_440_938_160),
        )
    }

    /// AWS's published SigV4 test suite, `get-vanilla`: AKIDEXAMPLE, 2015-08-30T12:36:00Z,
    /// us-east-1, service "service", `GET /` to example.amazonaws.com.
    #[test]
    fn signs_the_published_get_vanilla_request() {
        let (k, at) = vanilla();
        let req = ("GET", "https://example.amazonaws.com/", &[][..], &b""[..]);
        let out = sign_with(
            &k,
            "us-east-1",
            "service",
            req,
            at,
            PayloadChecksumKind::NoHeader,
        )
        .expect("sign");
        assert_eq!(
            out[0].1.as_str(),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    #[test]
    fn the_payload_hash_is_signed_and_set() {
        let (k, at) = vanilla();
        let req = ("GET", "https://example.amazonaws.com/", &[][..], &b""[..]);
        let out = sign_request(&k, "us-east-1", "service", req, at).expect("sign");
        assert!(
            out[0]
                .1
                .contains("SignedHeaders=host;x-amz-content-sha256;x-amz-date,")
        );
        let get = |name| {
            out.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("x-amz-date"), Some("20150830T123600Z"));
        assert_eq!(
            get("x-amz-content-sha256"),
            Some("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        assert_eq!(get("x-amz-security-token"), None);
    }

    #[test]
    fn rejects_malformed_keys_without_echoing_them() {
        for bad in [
            "AKIDEXAMPLE:secret",
            r#"{"access_key_id":"AKID/with/slash","secret_access_key":"s"}"#,
            r#"{"access_key_id":"AKIDEXAMPLE123456","secret_access_key":""}"#,
            r#"{"access_key_id":"AKIDEXAMPLE123456","secret_access_key":"s","extra":1}"#,
        ] {
            let e = keys(bad).err().expect("refused").to_string();
            assert!(!e.contains("secret\"") && !e.contains("with/slash"), "{e}");
        }
    }
}
