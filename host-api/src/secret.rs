//! Secret values and credential keys.
//!
//! [`SecretValue`] is the only type that ever holds a plaintext secret. It zeroizes its
//! bytes on drop and deliberately implements neither `Debug` nor `Display` nor `Clone`, so
//! a value cannot end up in a log line, an error message or a panic by accident.

use secrecy::{ExposeSecret, SecretSlice};
use std::fmt;

/// Largest secret value accepted, in bytes (credential values can be up to 64 KiB).
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// Longest credential key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 128;

/// A plaintext secret value. Zeroized on drop; never printable.
pub struct SecretValue(SecretSlice<u8>);

impl SecretValue {
    /// Wraps `bytes` after checking the size limit (1 byte to [`MAX_VALUE_BYTES`]).
    /// On error the rejected bytes are zeroized too.
    pub fn new(bytes: Vec<u8>) -> Result<Self, ValueError> {
        let len = bytes.len();
        let value = SecretValue(SecretSlice::from(bytes));
        if len == 0 {
            return Err(ValueError::Empty);
        }
        if len > MAX_VALUE_BYTES {
            return Err(ValueError::TooLarge { len });
        }
        Ok(value)
    }

    /// The plaintext bytes. Call sites are the few places that must see them: sealing,
    /// injection into an outbound request, and building the scrubber.
    pub fn expose(&self) -> &[u8] {
        self.0.expose_secret()
    }

    /// Whether the value can be put into an HTTP header or query value as it is: only the
    /// bytes an HTTP field value may hold (tab, visible ASCII, space, and bytes 0x80 and
    /// up). CR, LF and NUL would split or truncate the header; other control bytes are
    /// refused by the HTTP stack at send time, which would make a refusal depend on the
    /// value (a one-bit oracle), so they are refused when the value is stored.
    pub fn is_header_safe(&self) -> bool {
        self.expose()
            .iter()
            .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80)
    }

    /// Whether the value is UTF-8 (needed for a JSON body field).
    pub fn is_utf8(&self) -> bool {
        std::str::from_utf8(self.expose()).is_ok()
    }

    /// Size in bytes. Used for limits on the host side only: never reported to a guest.
    pub fn len(&self) -> usize {
        self.expose().len()
    }

    /// Always false for a constructed value (empty values are refused); here for clippy's
    /// `len_without_is_empty` and for honesty.
    pub fn is_empty(&self) -> bool {
        self.expose().is_empty()
    }
}

/// Why a secret value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    /// Empty values are refused: they would inject nothing and scrub everything.
    #[error("the secret value is empty")]
    Empty,
    /// Over [`MAX_VALUE_BYTES`]. The length of a refused value is not secret: it was never
    /// stored.
    #[error("the secret value is {len} bytes; the limit is {MAX_VALUE_BYTES} bytes (64 KiB)")]
    TooLarge {
        /// Length of the refused value.
        len: usize,
    },
    /// The binding allows injection into a header, query value or basic auth, and the value
    /// contains a byte that would break the request there.
    #[error(
        "the secret value contains CR, LF, NUL or another control byte, which cannot be injected into a header, query value or basic auth"
    )]
    NotHeaderSafe,
    /// The binding allows injection into a JSON body field, and the value is not UTF-8 (a
    /// JSON string cannot carry it).
    #[error("the secret value is not UTF-8, which a JSON body field (body:json:) cannot carry")]
    NotUtf8,
}

/// A validated credential key: ASCII `A-Z`, `0-9` and `_`, 1 to [`MAX_KEY_BYTES`] bytes.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct CredentialKey(String);

impl CredentialKey {
    /// Validates `key`.
    pub fn new(key: &str) -> Result<Self, KeyError> {
        if key.is_empty() {
            return Err(KeyError::Empty);
        }
        if key.len() > MAX_KEY_BYTES {
            return Err(KeyError::TooLong { len: key.len() });
        }
        if let Some(bad) = key
            .chars()
            .find(|c| !(c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_'))
        {
            return Err(KeyError::BadChar {
                key: printable(key),
                bad,
            });
        }
        Ok(CredentialKey(key.to_owned()))
    }

    /// The key as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CredentialKey {
    type Error = KeyError;
    fn try_from(s: String) -> Result<Self, KeyError> {
        CredentialKey::new(&s)
    }
}

impl From<CredentialKey> for String {
    fn from(k: CredentialKey) -> String {
        k.0
    }
}

impl fmt::Display for CredentialKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a credential key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key is empty.
    #[error("the credential key is empty")]
    Empty,
    /// The key is longer than [`MAX_KEY_BYTES`].
    #[error("the credential key is {len} bytes long; the limit is {MAX_KEY_BYTES}")]
    TooLong {
        /// Length of the refused key.
        len: usize,
    },
    /// The key has a character outside `A-Z`, `0-9`, `_`.
    #[error(
        "the credential key {key:?} contains {bad:?}; keys use only A-Z, 0-9 and _ (e.g. SLACK_BOT_TOKEN)"
    )]
    BadChar {
        /// The refused key, shortened and with control characters escaped.
        key: String,
        /// The first offending character.
        bad: char,
    },
}

/// A key (never a value) shortened for an error message.
fn printable(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_upper_digits_underscore() {
        assert!(CredentialKey::new("SLACK_BOT_TOKEN_2").is_ok());
        assert!(CredentialKey::new(&"A".repeat(MAX_KEY_BYTES)).is_ok());
    }

    #[test]
    fn rejects_empty_long_and_bad_keys() {
        assert_eq!(CredentialKey::new(""), Err(KeyError::Empty));
        assert!(matches!(
            CredentialKey::new(&"A".repeat(MAX_KEY_BYTES + 1)),
            Err(KeyError::TooLong { .. })
        ));
        for bad in ["slack", "A-B", "A B", "É", "A\n", "A.B", "../X"] {
            assert!(
                matches!(CredentialKey::new(bad), Err(KeyError::BadChar { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn rejects_empty_and_oversized_values() {
        assert!(matches!(SecretValue::new(vec![]), Err(ValueError::Empty)));
        assert!(SecretValue::new(vec![b'a'; MAX_VALUE_BYTES]).is_ok());
        assert!(matches!(
            SecretValue::new(vec![b'a'; MAX_VALUE_BYTES + 1]),
            Err(ValueError::TooLarge { len }) if len == MAX_VALUE_BYTES + 1
        ));
    }

    #[test]
    fn header_safety() {
        let ok = SecretValue::new(b"xoxb-123".to_vec()).expect("valid");
        assert!(ok.is_header_safe());
        for bad in [&b"a\rb"[..], b"a\nb", b"a\0b"] {
            assert!(
                !SecretValue::new(bad.to_vec())
                    .expect("valid")
                    .is_header_safe()
            );
        }
    }

    proptest::proptest! {
        /// Keys of A-Z, 0-9, _ up to 128 bytes are accepted; anything with another
        /// character is refused.
        #[test]
        fn key_validation(good in "[A-Z0-9_]{1,128}", bad in "[A-Z0-9_]{0,10}[^A-Z0-9_][A-Z0-9_]{0,10}") {
            proptest::prop_assert!(CredentialKey::new(&good).is_ok());
            proptest::prop_assert!(CredentialKey::new(&bad).is_err());
        }
    }
}

// A value must never be printed or copied: no Debug, Display or Clone, ever.
static_assertions::assert_not_impl_any!(SecretValue: std::fmt::Debug, std::fmt::Display, Clone);
