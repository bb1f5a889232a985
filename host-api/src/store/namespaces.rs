//! Every namespace a store's backend holds, in one place: each kind of record the host
//! keeps lives in one of these, and [`COPIED`] says which of them a store copy takes. A
//! namespace named only in its own module was one a copy forgot (registrations and runs
//! were lost by `latchkey store copy` that way).

/// Sealed secrets, by storage id.
pub(crate) const SECRETS: &str = "secrets";
/// The store's own records: the wrapped data key, the audit chain's genesis marker.
pub(crate) const META: &str = "store";
/// Rotated-away values kept as scrub patterns for a while.
pub(crate) const RETIRED: &str = "retired";
/// API token records (MACs, never tokens).
pub(crate) const TOKENS: &str = "tokens";
/// Quota counters.
pub(crate) const QUOTA: &str = "quota";
/// OAuth2 access tokens (sealed) and refresh leases.
pub(crate) const OAUTH: &str = "oauth";
/// What every cached OAuth2 access token's id starts with (a refresh lease's does not).
pub(crate) const OAUTH_TOKEN_PREFIX: &[u8] = b"token\0";
/// Registered components' bytes, by digest.
pub(crate) const COMPONENTS: &str = "components";
/// Component names and registered workflows.
pub(crate) const REGISTRY: &str = "registry";
/// Runs' records, their index by user and their leases.
pub(crate) const RUNS: &str = "runs";
/// The audit trail (appended, not keyed).
pub(crate) const AUDIT: &str = "audit";
/// The audit chain's genesis marker, in [`META`].
pub(crate) const AUDIT_GENESIS_ID: &[u8] = b"audit-genesis";

/// What a store copy takes, in order, as (namespace, id prefix). Refresh leases stay
/// behind (they belong to the hosts of the old store); the genesis marker goes with the
/// chain (its record 0 is chained to the marker); the trail is appended last but one, and
/// the data key (in [`META`]) is written after everything, by the copy itself.
pub(crate) const COPIED: &[(&str, &[u8])] = &[
    (SECRETS, b""),
    (RETIRED, b""),
    (TOKENS, b""),
    (QUOTA, b""),
    (OAUTH, OAUTH_TOKEN_PREFIX),
    (COMPONENTS, b""),
    (REGISTRY, b""),
    (RUNS, b""),
    (META, AUDIT_GENESIS_ID),
    (AUDIT, b""),
];
