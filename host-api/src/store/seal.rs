//! AES-256-GCM sealing with a wrapped data key.
//!
//! The master key (from a key file or `LATCHKEY_MASTER_KEY`) only wraps the data key, so
//! rotating the master key rewrites one record, atomically, instead of every secret.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use zeroize::Zeroizing;

/// Size of a master key and of the data key, in bytes.
pub const MASTER_KEY_BYTES: usize = 32;
/// Size of a GCM nonce.
pub const NONCE_BYTES: usize = 12;
const TAG_BYTES: usize = 16;
const DEK_AAD: &[u8] = b"latchkey/data-key/v1";

/// Why sealing or opening failed. Deliberately carries no detail: GCM tells only "the tag
/// did not verify".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The ciphertext, nonce or associated data was altered, or the key is wrong.
    #[error("authentication failed: wrong key, or the sealed data or its metadata was altered")]
    Authentication,
    /// The sealed bytes are shorter than a nonce and a tag.
    #[error("sealed data is truncated")]
    Truncated,
    /// The operating system's random source failed.
    #[error("the system random number generator failed")]
    Random,
}

/// Why a master key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MasterKeyError {
    /// Not 64 hex characters nor 32 raw bytes.
    #[error(
        "a master key is 32 bytes, written as 64 hex characters (got {len} characters); generate one with `latchkey init` or `openssl rand -hex 32`"
    )]
    BadLength {
        /// Length of what was given.
        len: usize,
    },
    /// Right length, but not hex.
    #[error("the master key is not valid hex")]
    NotHex,
    /// The random source failed while generating one.
    #[error("the system random number generator failed")]
    Random,
}

/// The operator's master key. Zeroized on drop, never printed.
pub struct MasterKey(Zeroizing<[u8; MASTER_KEY_BYTES]>);

impl MasterKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self, MasterKeyError> {
        let mut k = Zeroizing::new([0u8; MASTER_KEY_BYTES]);
        getrandom::fill(k.as_mut()).map_err(|_| MasterKeyError::Random)?;
        Ok(MasterKey(k))
    }

    /// Parses 64 hex characters (surrounding whitespace ignored) or exactly 32 raw bytes.
    pub fn from_bytes(text: &[u8]) -> Result<Self, MasterKeyError> {
        let mut k = Zeroizing::new([0u8; MASTER_KEY_BYTES]);
        if text.len() == MASTER_KEY_BYTES && std::str::from_utf8(text).is_err() {
            k.copy_from_slice(text);
            return Ok(MasterKey(k));
        }
        let trimmed = text.trim_ascii();
        if trimmed.len() != 2 * MASTER_KEY_BYTES {
            return Err(MasterKeyError::BadLength { len: trimmed.len() });
        }
        hex::decode_to_slice(trimmed, k.as_mut()).map_err(|_| MasterKeyError::NotHex)?;
        Ok(MasterKey(k))
    }

    /// The key as 64 lowercase hex characters, for writing a key file.
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(self.0.as_ref()))
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(self.0.as_ref()))
    }

    /// Seals a fresh data key under this master key; returns the wrapped key and the key.
    #[cfg(test)]
    pub(crate) fn new_data_key(&self) -> Result<(Vec<u8>, DataKey), SealError> {
        let mut dek = Zeroizing::new([0u8; MASTER_KEY_BYTES]);
        getrandom::fill(dek.as_mut()).map_err(|_| SealError::Random)?;
        let wrapped = seal_with(&self.cipher(), dek.as_ref(), DEK_AAD)?;
        Ok((wrapped, DataKey::from_raw(&dek)))
    }

    /// Opens a wrapped data key. Fails if this is not the master key it was wrapped with.
    #[cfg(test)]
    pub(crate) fn unwrap_data_key(&self, wrapped: &[u8]) -> Result<DataKey, SealError> {
        let raw = open_with(&self.cipher(), wrapped, DEK_AAD)?;
        if raw.len() != MASTER_KEY_BYTES {
            return Err(SealError::Authentication);
        }
        let mut dek = Zeroizing::new([0u8; MASTER_KEY_BYTES]);
        dek.copy_from_slice(&raw);
        Ok(DataKey::from_raw(&dek))
    }

    /// Wraps a raw data key under this master key (see [`super::KeyWrapper`]).
    pub(crate) fn wrap_raw(&self, dek: &[u8; MASTER_KEY_BYTES]) -> Result<Vec<u8>, SealError> {
        seal_with(&self.cipher(), dek, DEK_AAD)
    }

    /// The raw data key a record of [`Self::wrap_raw`] holds.
    pub(crate) fn unwrap_raw(
        &self,
        wrapped: &[u8],
    ) -> Result<Zeroizing<[u8; MASTER_KEY_BYTES]>, SealError> {
        let raw = open_with(&self.cipher(), wrapped, DEK_AAD)?;
        let mut dek = Zeroizing::new([0u8; MASTER_KEY_BYTES]);
        if raw.len() != MASTER_KEY_BYTES {
            return Err(SealError::Authentication);
        }
        dek.copy_from_slice(&raw);
        Ok(dek)
    }

    /// Re-wraps an already unwrapped data key under this master key (master key rotation).
    pub fn rewrap(&self, wrapped_under_old: &[u8], old: &MasterKey) -> Result<Vec<u8>, SealError> {
        let raw = open_with(&old.cipher(), wrapped_under_old, DEK_AAD)?;
        seal_with(&self.cipher(), &raw, DEK_AAD)
    }
}

/// The data key, with its AES key schedule expanded once and kept for the process, and
/// the raw key (zeroized on drop) from which purpose keys are derived.
pub struct DataKey {
    cipher: Aes256Gcm,
    raw: Zeroizing<[u8; MASTER_KEY_BYTES]>,
}

impl DataKey {
    /// A fresh random data key: the raw bytes (to wrap) and the key.
    pub(crate) fn generate() -> Result<(Zeroizing<[u8; MASTER_KEY_BYTES]>, Self), SealError> {
        let mut raw = Zeroizing::new([0u8; MASTER_KEY_BYTES]);
        getrandom::fill(raw.as_mut()).map_err(|_| SealError::Random)?;
        let key = DataKey::from_raw(&raw);
        Ok((raw, key))
    }

    pub(crate) fn from_raw(raw: &[u8; MASTER_KEY_BYTES]) -> Self {
        DataKey {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(raw)),
            raw: Zeroizing::new(*raw),
        }
    }

    /// A 32-byte key for one `purpose` (`audit`, `cache`, …), derived from the data key with
    /// HKDF-SHA256 (no salt, info `latchkey/<purpose>/v1`). Independent of every other
    /// purpose and of the sealing key itself. The data key survives master-key rotation
    /// (only its wrapping changes), so derived keys do too.
    pub fn derive(&self, purpose: &str) -> Zeroizing<[u8; 32]> {
        let hk = hkdf::Hkdf::<sha2::Sha256>::new(None, self.raw.as_ref());
        let info = format!("latchkey/{purpose}/v1");
        let mut out = Zeroizing::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA256's limit of 255 * 32: expand cannot fail.
        if hk.expand(info.as_bytes(), out.as_mut()).is_err() {
            unreachable!("HKDF-SHA256 output of 32 bytes is always valid");
        }
        out
    }

    /// Seals `plaintext` bound to `aad`: returns nonce ‖ ciphertext ‖ tag, with a fresh
    /// random nonce.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, SealError> {
        seal_with(&self.cipher, plaintext, aad)
    }

    /// Opens what [`DataKey::seal`] produced, if `aad` is the same.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        open_with(&self.cipher, sealed, aad)
    }
}

fn seal_with(cipher: &Aes256Gcm, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, SealError> {
    let mut nonce = [0u8; NONCE_BYTES];
    getrandom::fill(&mut nonce).map_err(|_| SealError::Random)?;
    let ct = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| SealError::Authentication)?;
    let mut out = Vec::with_capacity(NONCE_BYTES + ct.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

fn open_with(
    cipher: &Aes256Gcm,
    sealed: &[u8],
    aad: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    if sealed.len() < NONCE_BYTES + TAG_BYTES {
        return Err(SealError::Truncated);
    }
    let (nonce, ct) = sealed.split_at(NONCE_BYTES);
    cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
        .map(Zeroizing::new)
        .map_err(|_| SealError::Authentication)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dek() -> DataKey {
        MasterKey::generate()
            .expect("rng")
            .new_data_key()
            .expect("dek")
            .1
    }

    #[test]
    fn round_trip() {
        let k = dek();
        let s = k.seal(b"xoxb-secret", b"aad").expect("seal");
        assert_eq!(k.open(&s, b"aad").expect("open").as_slice(), b"xoxb-secret");
    }

    #[test]
    fn unique_encryptions_of_the_same_plaintext() {
        let k = dek();
        let a = k.seal(b"same", b"aad").expect("seal");
        let b = k.seal(b"same", b"aad").expect("seal");
        assert_ne!(a, b);
        assert_ne!(a[..NONCE_BYTES], b[..NONCE_BYTES]);
    }

    #[test]
    fn rejects_other_aad_tampering_truncation_and_other_key() {
        let k = dek();
        let s = k.seal(b"value", b"scope/key/v1").expect("seal");
        assert_eq!(
            k.open(&s, b"scope/key/v2").err(),
            Some(SealError::Authentication)
        );
        for i in 0..s.len() {
            let mut t = s.clone();
            t[i] ^= 0x01;
            assert!(k.open(&t, b"scope/key/v1").is_err(), "flip at {i}");
        }
        assert_eq!(
            k.open(&s[..10], b"scope/key/v1").err(),
            Some(SealError::Truncated)
        );
        assert!(k.open(&s[..s.len() - 1], b"scope/key/v1").is_err());
        assert!(dek().open(&s, b"scope/key/v1").is_err());
    }

    #[test]
    fn wrong_master_key_cannot_unwrap() {
        let m = MasterKey::generate().expect("rng");
        let (wrapped, _) = m.new_data_key().expect("dek");
        let other = MasterKey::generate().expect("rng");
        assert!(other.unwrap_data_key(&wrapped).is_err());
        assert!(m.unwrap_data_key(&wrapped).is_ok());
        let rewrapped = other.rewrap(&wrapped, &m).expect("rewrap");
        assert!(other.unwrap_data_key(&rewrapped).is_ok());
        assert!(m.unwrap_data_key(&rewrapped).is_err());
    }

    #[test]
    fn derived_keys_are_per_purpose_stable_and_survive_master_rotation() {
        let m = MasterKey::generate().expect("rng");
        let (wrapped, k) = m.new_data_key().expect("dek");
        let audit = k.derive("audit");
        assert_ne!(*audit, *k.derive("cache"));
        assert_eq!(*audit, *k.derive("audit"));
        assert_ne!(&audit[..], &k.raw[..]);
        let new = MasterKey::generate().expect("rng");
        let rewrapped = new.rewrap(&wrapped, &m).expect("rewrap");
        let after = new.unwrap_data_key(&rewrapped).expect("unwrap");
        assert_eq!(*after.derive("audit"), *audit);
        // Another store's data key derives other keys.
        assert_ne!(*dek().derive("audit"), *audit);
    }

    #[test]
    fn master_key_lengths() {
        assert!(MasterKey::from_bytes(&[b'a'; 64]).is_ok());
        assert!(MasterKey::from_bytes(format!("{}\n", "0f".repeat(32)).as_bytes()).is_ok());
        assert!(matches!(
            MasterKey::from_bytes(b"abc"),
            Err(MasterKeyError::BadLength { len: 3 })
        ));
        assert!(matches!(
            MasterKey::from_bytes(&[b'z'; 64]),
            Err(MasterKeyError::NotHex)
        ));
        assert!(matches!(
            MasterKey::from_bytes(&[b'a'; 65]),
            Err(MasterKeyError::BadLength { .. })
        ));
        let raw = [0xffu8; 32];
        assert!(MasterKey::from_bytes(&raw).is_ok());
    }
}
