//! Values rotated away, kept sealed for a grace period as scrub patterns only.
//!
//! An upstream may still hold, and echo, the value a credential had before its last
//! rotation (a rotation's overlap often leaves it valid for a while). When a static value
//! is replaced, its whole record (metadata and sealed value, bound to each other by the
//! AAD as in `secrets`) is copied here with the time it was retired. Until the grace
//! period has passed, resolution reads it back so that the HTTP host scrubs it from the
//! responses of destinations inside the binding it had; it is never injected. After the
//! grace period it is deleted, at the credential's next change or use; at most
//! [`MAX_KEPT`] are kept per credential. A deleted secret's
//! retired values go with it.

use std::time::Duration;

/// The namespace of retired records.
pub(crate) const NS_RETIRED: &str = super::namespaces::RETIRED;

/// How long a rotated-away value stays a scrub pattern unless the operator says otherwise.
pub const DEFAULT_ROTATION_GRACE: Duration = Duration::from_secs(24 * 60 * 60);

/// Retired values kept per secret at most (the newest): each is one more scrub pattern
/// for every response of the secret's destinations.
pub(crate) const MAX_KEPT: usize = 8;

/// The ids of a secret's retired records start with its storage id and a NUL (key names
/// never hold one), so a scan of this prefix finds that secret's only.
pub(crate) fn prefix(storage_id: &[u8]) -> Vec<u8> {
    let mut p = storage_id.to_vec();
    p.push(0);
    p
}

/// The id of the record of `version`.
pub(crate) fn id(storage_id: &[u8], version: u64) -> Vec<u8> {
    let mut id = prefix(storage_id);
    id.extend_from_slice(&version.to_be_bytes());
    id
}

/// The storage id and version an [`id`] was made of; `None` if it is not one.
pub(crate) fn split_id(id: &[u8]) -> Option<(&[u8], u64)> {
    let (storage_id, version) = id.split_last_chunk::<8>()?;
    let (0, storage_id) = storage_id.split_last()? else {
        return None;
    };
    Some((storage_id, u64::from_be_bytes(*version)))
}

/// What is stored: when the value was retired (ms since the epoch), then its record.
pub(crate) fn encode(retired_at_ms: u64, record: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + record.len());
    out.extend_from_slice(&retired_at_ms.to_be_bytes());
    out.extend_from_slice(record);
    out
}

/// When it was retired, and the record; `None` if too short to hold a time.
pub(crate) fn decode(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let (at, record) = bytes.split_first_chunk::<8>()?;
    Some((u64::from_be_bytes(*at), record))
}

/// Whether a value retired at `retired_at_ms` is still a scrub pattern at `now_ms`.
pub(crate) fn in_grace(retired_at_ms: u64, now_ms: u64, grace: Duration) -> bool {
    let grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
    now_ms < retired_at_ms.saturating_add(grace_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_one_secret_share_a_prefix_no_other_has() {
        let a = id(b"workspace:acme/KEY", 3);
        assert!(a.starts_with(&prefix(b"workspace:acme/KEY")));
        assert!(!a.starts_with(&prefix(b"workspace:acme/KE")));
        assert_eq!(split_id(&a), Some((&b"workspace:acme/KEY"[..], 3)));
        assert_eq!(split_id(b"no version"), None);
        assert_eq!(decode(&encode(7, b"rec")), Some((7, &b"rec"[..])));
        assert_eq!(decode(b"short"), None);
        assert!(in_grace(1000, 1999, Duration::from_secs(1)));
        assert!(!in_grace(1000, 2000, Duration::from_secs(1)));
        assert!(!in_grace(1000, 1000, Duration::ZERO));
    }
}
