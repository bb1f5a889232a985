//! Values in transit: a client seals a secret value to the store's X25519 public key
//! (libsodium's sealed box: an ephemeral key pair, X25519 and XSalsa20-Poly1305), so that no
//! proxy, log or debugging tool between client and server ever sees it. GitHub's secrets
//! API and Fastly's secret store take values the same way.
//!
//! The key pair is derived from the store's data key: it is the same on every host that
//! opens the store, survives master-key rotation, and needs no storage of its own.

use crate::secret::{MAX_VALUE_BYTES, SecretValue, ValueError};
use crate::store::SecretStore;
use crypto_box::{PublicKey, SecretKey};

/// Bytes a sealed box adds to its plaintext (ephemeral public key and tag).
pub const SEAL_OVERHEAD: usize = 32 + 16;

/// Why a sealed value was refused. Never contains any of the value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransitError {
    /// Not a sealed box for this store's key (wrong key, damaged, or not sealed at all).
    #[error(
        "the sealed value does not open with this store's key (seal it to the key from GET /v1/public-key)"
    )]
    DoesNotOpen,
    /// Larger than any value could be once sealed; refused before any work.
    #[error("the sealed value is {0} bytes; a sealed value of at most 64 KiB is at most {max} bytes", max = MAX_VALUE_BYTES + SEAL_OVERHEAD)]
    TooLarge(usize),
    /// The opened value was refused (empty, too long).
    #[error(transparent)]
    Value(#[from] ValueError),
    /// The random source failed.
    #[error("could not seal the value")]
    Random,
}

/// The store's key pair for values in transit.
pub(crate) fn secret_key(store: &SecretStore) -> SecretKey {
    SecretKey::from_bytes(*store.derived_key("transit"))
}

/// The public key clients seal values to.
pub fn public_key(store: &SecretStore) -> [u8; 32] {
    *secret_key(store).public_key().as_bytes()
}

/// Opens a value sealed to `store`'s public key.
pub fn open(store: &SecretStore, sealed: &[u8]) -> Result<SecretValue, TransitError> {
    if sealed.len() > MAX_VALUE_BYTES + SEAL_OVERHEAD {
        return Err(TransitError::TooLarge(sealed.len()));
    }
    let plain = zeroize::Zeroizing::new(
        secret_key(store)
            .unseal(sealed)
            .map_err(|_| TransitError::DoesNotOpen)?,
    );
    Ok(SecretValue::new(plain.to_vec())?)
}

/// Seals `value` to `public_key` (what a client does before sending it).
pub fn seal(public_key: &[u8; 32], value: &SecretValue) -> Result<Vec<u8>, TransitError> {
    PublicKey::from_bytes(*public_key)
        .seal(&mut crypto_box::aead::OsRng, value.expose())
        .map_err(|_| TransitError::Random)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::{MasterKey, MemoryBackend};

    fn store() -> SecretStore {
        let master = MasterKey::generate().unwrap();
        SecretStore::init_with(Box::new(MemoryBackend::default()), "mem", &master).unwrap()
    }

    #[test]
    fn a_value_sealed_to_the_store_opens_only_there() {
        let (a, b) = (store(), store());
        let value = SecretValue::new(b"xoxb-5e1f0c9a7d2b4e63".to_vec()).unwrap();
        let sealed = seal(&public_key(&a), &value).unwrap();
        assert_eq!(sealed.len(), value.len() + SEAL_OVERHEAD);
        assert!(!sealed.windows(8).any(|w| w == &b"xoxb-5e1"[..]));
        assert_eq!(open(&a, &sealed).unwrap().expose(), value.expose());
        assert!(matches!(open(&b, &sealed), Err(TransitError::DoesNotOpen)));
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(open(&a, &flipped), Err(TransitError::DoesNotOpen)));
        assert!(matches!(open(&a, b"short"), Err(TransitError::DoesNotOpen)));
        let huge = vec![0u8; MAX_VALUE_BYTES + SEAL_OVERHEAD + 1];
        assert!(matches!(open(&a, &huge), Err(TransitError::TooLarge(_))));
    }
}
