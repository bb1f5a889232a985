//! JWTs minted per request with a stored RSA or P-256 private key (RS256, ES256), with the
//! claims of the credential's binding and a short lifetime. Signed with `ring`, which
//! rustls already links: jsonwebtoken would add either aws-lc-rs (a C build) or RustCrypto's
//! `rsa` (RUSTSEC-2023-0071, a timing side channel), and the token itself is three base64
//! parts.

use super::{KeyError, SignError};
use crate::policy::JwtClaims;
use crate::secret::SecretValue;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{self, EcdsaKeyPair, RsaKeyPair};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use zeroize::Zeroizing;

/// `iat` is set this far in the past, for servers whose clock is behind (GitHub's advice).
const CLOCK_SKEW_SECS: u64 = 30;

/// A parsed signing key.
pub(crate) enum JwtKey {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

impl JwtKey {
    /// Parses a PEM private key: RSA in PKCS#1 or PKCS#8 for RS256, P-256 in PKCS#8 for
    /// ES256.
    pub(crate) fn parse(value: &SecretValue, es256: bool) -> Result<JwtKey, KeyError> {
        let expected = if es256 {
            "a PEM P-256 private key (PKCS#8, BEGIN PRIVATE KEY)"
        } else {
            "a PEM RSA private key (BEGIN RSA PRIVATE KEY or BEGIN PRIVATE KEY)"
        };
        let refuse = |problem| KeyError::Format { expected, problem };
        let der = PrivateKeyDer::from_pem_slice(value.expose())
            .map_err(|_| refuse("no PEM private key in it"))?;
        match (es256, &der) {
            (false, PrivateKeyDer::Pkcs1(k)) => RsaKeyPair::from_der(k.secret_pkcs1_der())
                .map(JwtKey::Rsa)
                .map_err(|_| refuse("ring refused the RSA key (at least 2048 bits)")),
            (false, PrivateKeyDer::Pkcs8(k)) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der())
                .map(JwtKey::Rsa)
                .map_err(|_| refuse("ring refused the RSA key (at least 2048 bits)")),
            (true, PrivateKeyDer::Pkcs8(k)) => EcdsaKeyPair::from_pkcs8(
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                k.secret_pkcs8_der(),
                &SystemRandom::new(),
            )
            .map(JwtKey::Ec)
            .map_err(|_| refuse("it is not a P-256 key")),
            (true, PrivateKeyDer::Sec1(_)) => Err(refuse(
                "a SEC1 EC key: convert it with `openssl pkcs8 -topk8 -nocrypt`",
            )),
            _ => Err(refuse("another kind of key")),
        }
    }

    fn alg(&self) -> &'static str {
        match self {
            JwtKey::Rsa(_) => "RS256",
            JwtKey::Ec(_) => "ES256",
        }
    }

    /// The public key, for tests that verify with another implementation.
    #[cfg(test)]
    fn public_der(&self) -> Vec<u8> {
        use ring::signature::KeyPair;
        match self {
            JwtKey::Rsa(k) => k.public().as_ref().to_vec(),
            JwtKey::Ec(k) => k.public_key().as_ref().to_vec(),
        }
    }
}

/// A token with `claims`, issued at `now_secs` (Unix time), signed with `key`.
pub(crate) fn mint(
    key: &JwtKey,
    claims: &JwtClaims,
    now_secs: u64,
) -> Result<Zeroizing<String>, SignError> {
    let rng = SystemRandom::new();
    let mut jti = [0u8; 16];
    rng.fill(&mut jti)
        .map_err(|_| SignError::Request("no randomness for the token id".into()))?;
    let mut header = serde_json::json!({"alg": key.alg(), "typ": "JWT"});
    if let Some(kid) = &claims.key_id {
        header["kid"] = kid.clone().into();
    }
    let mut payload = serde_json::json!({
        "iss": claims.issuer,
        "iat": now_secs.saturating_sub(CLOCK_SKEW_SECS),
        "exp": now_secs + u64::from(claims.ttl_secs),
        "jti": hex::encode(jti),
    });
    for (name, v) in [
        ("sub", &claims.subject),
        ("aud", &claims.audience),
        ("scope", &claims.scope),
    ] {
        if let Some(v) = v {
            payload[name] = v.clone().into();
        }
    }
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut token = Zeroizing::new(format!(
        "{}.{}",
        b64.encode(header.to_string()),
        b64.encode(payload.to_string())
    ));
    let sig = match key {
        JwtKey::Rsa(k) => {
            let mut sig = vec![0u8; k.public().modulus_len()];
            k.sign(
                &signature::RSA_PKCS1_SHA256,
                &rng,
                token.as_bytes(),
                &mut sig,
            )
            .map_err(|_| SignError::Request("RSA signing failed".into()))?;
            sig
        }
        JwtKey::Ec(k) => k
            .sign(&rng, token.as_bytes())
            .map_err(|_| SignError::Request("ECDSA signing failed".into()))?
            .as_ref()
            .to_vec(),
    };
    token.push('.');
    token.push_str(&b64.encode(sig));
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    // A P-256 key generated for these tests only.
    fn es256_key() -> (SecretValue, Vec<u8>) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("generate");
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref())
        );
        let value = SecretValue::new(pem.into_bytes()).expect("value");
        let key = JwtKey::parse(&value, true).expect("parse");
        (value, key.public_der())
    }

    fn claims() -> JwtClaims {
        JwtClaims {
            issuer: "app-42".into(),
            subject: None,
            audience: Some("https://api.example.com".into()),
            scope: None,
            ttl_secs: 300,
            key_id: Some("k1".into()),
        }
    }

    #[test]
    fn an_es256_token_verifies_with_the_public_key_and_carries_the_claims() {
        let (value, public) = es256_key();
        let key = JwtKey::parse(&value, true).expect("parse");
        let token = mint(&key, &claims(), 1_800_000_000).expect("mint");
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let sig = b64.decode(parts[2]).expect("sig");
        signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, public)
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
            .expect("verifies");
        let header: serde_json::Value =
            serde_json::from_slice(&b64.decode(parts[0]).expect("h")).expect("json");
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["kid"], "k1");
        let payload: serde_json::Value =
            serde_json::from_slice(&b64.decode(parts[1]).expect("p")).expect("json");
        assert_eq!(payload["iss"], "app-42");
        assert_eq!(payload["aud"], "https://api.example.com");
        assert_eq!(payload["exp"], 1_800_000_300u64);
        assert_eq!(payload["iat"], 1_800_000_000u64 - CLOCK_SKEW_SECS);
        // Two tokens differ (jti), so a captured one is not the next one.
        assert_ne!(*token, *mint(&key, &claims(), 1_800_000_000).expect("mint"));
    }

    #[test]
    fn rejects_what_is_not_a_key_of_the_kind() {
        let junk = SecretValue::new(b"not a key at all".to_vec()).expect("v");
        assert!(JwtKey::parse(&junk, false).is_err());
        let (ec, _) = es256_key();
        assert!(
            JwtKey::parse(&ec, false).is_err(),
            "a P-256 key is not RS256"
        );
    }
}
