//! Signatures the host computes with signing credentials (kind `hmac-sha256`): HMAC-SHA256
//! over the exact body bytes the host sends, written as hex or base64 into a header or
//! query place the credential's binding names.
//!
//! The key never leaves the host and is never a scrub pattern (it is never sent, so no
//! response can hold it unless a guest guessed it: scrubbing it would confirm the guess).
//! The signature is computed after the body is final, so it covers exactly what the bound
//! destination receives and is worth nothing for any other body; it is scrubbed from that
//! destination's responses like a value (its text, and the raw MAC in every encoding the
//! scrubber decodes), and from the step's output and logs.

use super::plan::{Encoding, Piece, Plan};
use super::refusal::{Refusal, trap};
use crate::secret::{CredentialKey, SecretValue};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

/// One signature of a request.
pub(super) struct Signature {
    pub key: CredentialKey,
    pub encoding: Encoding,
    /// The text written into the request.
    pub text: SecretValue,
    /// The MAC itself, so that an echo in an encoding other than `text`'s is scrubbed.
    pub raw: SecretValue,
}

/// Every signature the header and query pieces of `plan` ask for, over `body`, each with
/// the signing key `key_of` gives for its credential.
pub(super) fn sign_all<'v>(
    plan: &Plan,
    key_of: impl Fn(&CredentialKey) -> Result<&'v SecretValue, Refusal>,
    body: &[u8],
) -> Result<Vec<Signature>, Refusal> {
    let mut out: Vec<Signature> = Vec::new();
    let pieces = plan
        .headers
        .iter()
        .map(|(_, p)| p)
        .chain(plan.query.iter().map(|(_, p)| p))
        .flatten();
    for piece in pieces {
        let Piece::Signature(key, encoding) = piece else {
            continue;
        };
        if out.iter().any(|s| s.key == *key && s.encoding == *encoding) {
            continue;
        }
        let mac = hmac_sha256(key_of(key)?, body)?;
        let text = Zeroizing::new(match encoding {
            Encoding::Hex => hex::encode(mac.as_slice()),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD.encode(mac.as_slice()),
        });
        out.push(Signature {
            key: key.clone(),
            encoding: *encoding,
            text: secret(text.as_bytes())?,
            raw: secret(mac.as_slice())?,
        });
    }
    Ok(out)
}

/// The text of the signature of `key` in `encoding`, computed by [`sign_all`].
pub(super) fn text_for<'s>(
    signatures: &'s [Signature],
    key: &CredentialKey,
    encoding: Encoding,
) -> Result<&'s [u8], Refusal> {
    signatures
        .iter()
        .find(|s| s.key == *key && s.encoding == encoding)
        .map(|s| s.text.expose())
        .ok_or_else(|| trap("signature used but not computed (host bug)"))
}

fn hmac_sha256(key: &SecretValue, body: &[u8]) -> Result<Zeroizing<Vec<u8>>, Refusal> {
    // HMAC takes a key of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(key.expose())
        .map_err(|_| trap("HMAC refused its key (host bug)"))?;
    mac.update(body);
    Ok(Zeroizing::new(mac.finalize().into_bytes().to_vec()))
}

fn secret(bytes: &[u8]) -> Result<SecretValue, Refusal> {
    SecretValue::new(bytes.to_vec()).map_err(|_| trap("a signature did not fit a value (host bug)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231, test case 2: an independent check of the MAC the host writes.
    #[test]
    fn hmac_matches_rfc_4231() {
        let key = SecretValue::new(b"Jefe".to_vec()).expect("key");
        let mac = hmac_sha256(&key, b"what do ya want for nothing?")
            .ok()
            .expect("mac");
        assert_eq!(
            hex::encode(mac.as_slice()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
