//! The audit trail: one record per credential resolution, per injection attempt and per
//! change to the store (secrets set, rotated, deleted; members removed; the master key
//! rotated). Records hold who, which step, which key, which destination and what
//! happened, and never a value (the types here cannot hold one).
//!
//! # Tamper evidence
//!
//! Every record is stored with a sequence number (0, 1, 2, … per store) and a MAC:
//! HMAC-SHA256, keyed with a key derived from the store's data key
//! ([`crate::store::seal::DataKey::derive`]`("audit")`), over
//!
//! ```text
//! MAC of the previous record (of the genesis marker for record 0) ‖ the record's JSON bytes ‖ seq (u64, big-endian)
//! ```
//!
//! so the records form a chain nobody without the master key can extend or rewrite.
//!
//! The chain begins with a **genesis marker**, written just before record 0 (in the
//! store's metadata, beside the wrapped data key): how many unchained records were stored
//! before the chain, and a SHA-256 digest of them in order, under a MAC with the same key
//! (`"latchkey audit genesis v1" ‖ count ‖ digest`). Record 0 is chained to the marker's
//! MAC, so the marker can be neither removed nor replaced without breaking record 0. A
//! store born chained has a marker counting none: any unchained record in it is tampering,
//! wherever it is stored (on PostgreSQL, at an id below the first chained record's as
//! anywhere else).
//! [`verify`] walks the chain and reports a modified record (its MAC does not verify), a
//! deleted one (a gap in the sequence), records moved or duplicated (the sequence goes
//! backwards), an unauthenticated record among chained ones (inserted), and unreadable
//! bytes. Appends are serialized by a mutex in the open store, so concurrent runs in one
//! process chain correctly; the chain's head (last sequence number and MAC) is loaded when
//! the store is opened.
//!
//! What a chain cannot show by itself: that its newest records were deleted (the chain
//! that is left is a valid, shorter chain), or that every chained record was removed.
//! [`verify`] reports the head (sequence number and MAC of the newest record);
//! an operator who copies it somewhere else (a log shipper, a ticket) can later check that
//! the record is still there ([`VerifyReport::contains`], `latchkey audit verify
//! --expect-head SEQ:MAC`), which detects a truncated tail up to that point.
//!
//! Records written before the chain existed (plain JSON, no MAC) are reported as
//! *unchained legacy records*: the genesis marker holds them to what was stored when the
//! chain began (one more, one fewer or one changed is tampering), but their content was
//! never authenticated when it was written. An unchained record *after* the first chained
//! one is reported as tampering. A chain begun before genesis markers existed (record 0
//! chained to 32 zero bytes) still verifies; its legacy records are then held to nothing.
//!
//! # Durability
//!
//! [`append`] returns once the backend has the record in a form that survives this process
//! being killed (for the embedded store, one `write(2)` to its append-only log:
//! [`crate::store::log`]); the HTTP host appends the record of an injection before the
//! request leaves and refuses the request if that fails, so every request an upstream saw
//! has its record even after a kill -9 of the host. Against a power failure, records are
//! synced within the store's sync window by default, or before each send with
//! [`Durability::Strict`](crate::sandbox::Durability::Strict). [`append_durable`] returns
//! only once the record is on disk, power failures included. Changes to the store
//! ([`crate::store::SecretStore`]'s `set`, `rotate`, `delete`, `delete_member_secrets`,
//! `rotate_master`) write their record durably *before* the change: if the record cannot
//! be written, nothing is changed; if the change then fails, a second record with the
//! outcome `failed: …` follows it (best effort). So every applied change has a record; a
//! crash between the two writes can leave a record of a change that did not happen.

use crate::store::{BackendError, Records, SecretStore};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::store::namespaces::AUDIT as NS_AUDIT;
/// Marks a chained record: magic ‖ seq (8, BE) ‖ MAC (32) ‖ record JSON. A legacy record
/// is bare JSON (it starts with `{`).
const CHAINED_MAGIC: &[u8; 5] = b"\0LKA2";
const MAC_BYTES: usize = 32;
const HEADER_BYTES: usize = CHAINED_MAGIC.len() + 8 + MAC_BYTES;
/// Where the genesis marker is kept: the store's metadata namespace (copied with it).
pub(crate) use crate::store::namespaces::META as GENESIS_NS;
/// The genesis marker's id there.
pub(crate) use crate::store::namespaces::AUDIT_GENESIS_ID as GENESIS_ID;
/// The genesis marker: magic ‖ legacy count (8, BE) ‖ legacy digest (32) ‖ MAC (32).
const GENESIS_MAGIC: &[u8; 5] = b"\0LKG1";
const GENESIS_BYTES: usize = GENESIS_MAGIC.len() + 8 + 32 + MAC_BYTES;

type HmacSha256 = Hmac<Sha256>;

/// What happened.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum AuditEvent {
    /// `credentials.get`: a key resolved to a handle.
    Resolve,
    /// `credentials.get` refused (missing, not allowed).
    ResolveDenied,
    /// `http.fetch`: the value is about to be injected and the request sent (written
    /// durably before the request leaves; the outcome says `sending`), or the outcome of
    /// that request.
    Inject,
    /// `http.fetch` refused before anything was sent.
    InjectDenied,
    /// A secret was created or replaced (`set`).
    SecretSet,
    /// A secret's value was replaced (`rotate`).
    SecretRotate,
    /// A secret was deleted.
    SecretDelete,
    /// A member was removed (their secrets are deleted, one `secret-delete` each).
    MemberRemove,
    /// The data key was re-wrapped under a new master key.
    MasterRotate,
    /// An API token was created (`user` is its principal).
    TokenCreate,
    /// An API token was revoked (`user` is its principal).
    TokenRevoke,
    /// The host asked an `oauth2` credential's token endpoint for an access token (the
    /// outcome says `sending` before the request leaves, then what came of it; the
    /// destination is the endpoint, the location its scope). Never a token.
    TokenRefresh,
    /// A component was registered to run on the platform (`key` is its name, if any; the
    /// outcome names its digest).
    ComponentRegister,
    /// A workflow was registered (`workflow` is its name; the outcome names its steps'
    /// digests).
    WorkflowRegister,
    /// A run was found lost: the host running it stopped renewing its lease (`run_id` and
    /// `user` are the run's; the actor is the host that noticed).
    RunLost,
    /// What agent-written scripts may do was set (the outcome says whether they run and
    /// the keys they may ask for).
    ScriptPolicy,
}

impl AuditEvent {
    /// The event's name as every output writes it, text and JSON alike (`secret-set`,
    /// `inject-denied`, …).
    pub fn name(self) -> String {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::String(s)) => s,
            _ => format!("{self:?}"),
        }
    }
}

/// One audit record. Run records fill the run fields (`run_id` … `user`); records of
/// changes to the store fill `actor` and leave the run fields empty.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditRecord {
    /// Unix time in milliseconds.
    pub time_ms: u64,
    /// The run.
    #[serde(default)]
    pub run_id: String,
    /// Workspace.
    #[serde(default)]
    pub workspace: String,
    /// Workflow.
    #[serde(default)]
    pub workflow: String,
    /// Step.
    #[serde(default)]
    pub step: String,
    /// Invoking user; for `member-remove`, the member removed.
    #[serde(default)]
    pub user: String,
    /// What happened.
    pub event: AuditEvent,
    /// Credential key (empty for `member-remove` and `master-rotate`).
    #[serde(default)]
    pub key: String,
    /// Scope the secret came from, if it resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Secret version used, if it resolved; for changes, the version written or deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// `scheme://host:port` of the request, for fetches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// Where the value went (`header:authorization`, …), for fetches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Outcome in words: `ok`, `status 200`, or why it was refused.
    pub outcome: String,
    /// Who made a change to the store (`--as`, the OS user, the server's authenticated
    /// principal). `None` for run records (see `user`) and for records written before
    /// this field existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
}

impl AuditRecord {
    /// A record of a change to the store by `actor`, stamped now, without run fields.
    pub fn change(event: AuditEvent, actor: &str, key: &str, outcome: &str) -> Self {
        AuditRecord {
            time_ms: crate::store::unix_millis(),
            run_id: String::new(),
            workspace: String::new(),
            workflow: String::new(),
            step: String::new(),
            user: String::new(),
            event,
            key: key.to_owned(),
            scope: None,
            version: None,
            destination: None,
            location: None,
            outcome: outcome.to_owned(),
            actor: Some(actor.to_owned()),
        }
    }
}

/// Why an audit record could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The store refused the write or the flush (disk full, I/O error).
    #[error("could not write the audit trail: {0}")]
    Backend(#[from] BackendError),
}

/// The head of the chain in an open store: the next sequence number and the MAC of the
/// newest record (read at the first append, so that opening a store reads nothing), and
/// the key. Held behind a mutex by [`SecretStore`].
pub(crate) struct AuditChain {
    key: Zeroizing<[u8; 32]>,
    head: Option<(u64, [u8; MAC_BYTES])>,
}

impl AuditChain {
    /// A chain keyed with `key` whose head is read when first needed.
    pub(crate) fn new(key: Zeroizing<[u8; 32]>) -> Self {
        AuditChain { key, head: None }
    }

    /// The head: from the newest stored record the first time. A store without chained
    /// records (new, or only legacy records) starts at sequence 0, chained to its genesis
    /// marker (written now if no host has written it yet).
    fn head(
        &mut self,
        backend: &dyn crate::store::Backend,
    ) -> Result<(u64, [u8; MAC_BYTES]), BackendError> {
        if let Some(h) = self.head {
            return Ok(h);
        }
        let last = backend.last(NS_AUDIT)?;
        let h = match last.as_ref().and_then(|(_, bytes)| split_chained(bytes)) {
            Some((seq, mac, _)) => (seq.saturating_add(1), mac),
            None => (0, self.genesis(backend)?),
        };
        self.head = Some(h);
        Ok(h)
    }

    /// The MAC of the store's genesis marker: the stored one, or one written now over the
    /// unchained records stored so far (compare-and-put: of hosts beginning the chain at
    /// once, one writes it and the others read it).
    fn genesis(
        &self,
        backend: &dyn crate::store::Backend,
    ) -> Result<[u8; MAC_BYTES], BackendError> {
        if let Some(bytes) = backend.get(GENESIS_NS, GENESIS_ID)? {
            // A damaged marker is verify's to report; record 0 chained to it then fails too.
            return Ok(open_genesis(&self.key, &bytes).map_or([0; MAC_BYTES], |g| g.mac));
        }
        let mut legacy = LegacyDigest::default();
        for (_, bytes) in backend.scan(NS_AUDIT, b"")? {
            if split_chained(&bytes).is_some() {
                break;
            }
            legacy.add(&bytes);
        }
        let genesis = legacy.seal(&self.key);
        if backend.compare_and_put(GENESIS_NS, GENESIS_ID, None, &genesis.encode(), 0)? {
            return Ok(genesis.mac);
        }
        let stored = backend.get(GENESIS_NS, GENESIS_ID)?.unwrap_or_default();
        Ok(open_genesis(&self.key, &stored).map_or([0; MAC_BYTES], |g| g.mac))
    }
}

/// The unchained records stored before the chain, counted and digested in order.
#[derive(Default)]
struct LegacyDigest {
    count: u64,
    hash: Sha256,
}

impl LegacyDigest {
    fn add(&mut self, bytes: &[u8]) {
        use sha2::Digest as _;
        self.count += 1;
        self.hash.update((bytes.len() as u64).to_be_bytes());
        self.hash.update(bytes);
    }

    fn finish(self) -> (u64, [u8; 32]) {
        use sha2::Digest as _;
        (self.count, self.hash.finalize().into())
    }

    /// The genesis marker over these records, under `key`.
    fn seal(self, key: &[u8; 32]) -> Genesis {
        let (legacy, digest) = self.finish();
        Genesis {
            legacy,
            digest,
            mac: genesis_mac(key, legacy, &digest),
        }
    }
}

/// A genesis marker whose MAC verified.
struct Genesis {
    legacy: u64,
    digest: [u8; 32],
    mac: [u8; MAC_BYTES],
}

impl Genesis {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(GENESIS_BYTES);
        out.extend_from_slice(GENESIS_MAGIC);
        out.extend_from_slice(&self.legacy.to_be_bytes());
        out.extend_from_slice(&self.digest);
        out.extend_from_slice(&self.mac);
        out
    }
}

/// The MAC of a genesis marker, before it is finalised.
fn genesis_hmac(key: &[u8; 32], legacy: u64, digest: &[u8; 32]) -> HmacSha256 {
    let mut m = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| {
        unreachable!("HMAC accepts keys of any length");
    });
    m.update(b"latchkey audit genesis v1");
    m.update(&legacy.to_be_bytes());
    m.update(digest);
    m
}

fn genesis_mac(key: &[u8; 32], legacy: u64, digest: &[u8; 32]) -> [u8; MAC_BYTES] {
    genesis_hmac(key, legacy, digest)
        .finalize()
        .into_bytes()
        .into()
}

/// The genesis marker in `bytes`, if it is one and its MAC verifies under `key`.
fn open_genesis(key: &[u8; 32], bytes: &[u8]) -> Option<Genesis> {
    let rest = bytes.strip_prefix(GENESIS_MAGIC.as_slice())?;
    if rest.len() != 8 + 32 + MAC_BYTES {
        return None;
    }
    let legacy = u64::from_be_bytes(rest[..8].try_into().ok()?);
    let digest: [u8; 32] = rest[8..40].try_into().ok()?;
    let mac: [u8; MAC_BYTES] = rest[40..].try_into().ok()?;
    // Checked in constant time, like any MAC.
    genesis_hmac(key, legacy, &digest).verify_slice(&mac).ok()?;
    Some(Genesis {
        legacy,
        digest,
        mac,
    })
}

fn chain_mac(key: &[u8; 32], prev: &[u8; MAC_BYTES], json: &[u8], seq: u64) -> [u8; MAC_BYTES] {
    let mut m = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| {
        unreachable!("HMAC accepts keys of any length");
    });
    m.update(prev);
    m.update(json);
    m.update(&seq.to_be_bytes());
    m.finalize().into_bytes().into()
}

/// (seq, MAC, JSON) of a chained record; `None` for anything else.
fn split_chained(bytes: &[u8]) -> Option<(u64, [u8; MAC_BYTES], &[u8])> {
    let rest = bytes.strip_prefix(CHAINED_MAGIC.as_slice())?;
    if rest.len() < 8 + MAC_BYTES {
        return None;
    }
    let (seq, rest) = rest.split_at(8);
    let (mac, json) = rest.split_at(MAC_BYTES);
    let mut s = [0u8; 8];
    s.copy_from_slice(seq);
    let mut m = [0u8; MAC_BYTES];
    m.copy_from_slice(mac);
    Some((u64::from_be_bytes(s), m, json))
}

/// Appends a chained record: it survives the process being killed once this returns, but
/// not necessarily a power failure ([`flush`], [`append_durable`]).
///
/// The record is chained to the newest stored record, or to this process's own head if
/// that is newer: on a shared store other hosts append too (their records come first), but
/// a tail deleted under a running process stays a visible gap instead of being papered
/// over.
pub fn append(store: &SecretStore, record: &AuditRecord) -> Result<(), AuditError> {
    append_all(store, std::slice::from_ref(record))
}

/// Builds a chained record from the newest stored one (the backend's `AppendBuilder`).
type Builder = Box<dyn Fn(Option<&[u8]>) -> Vec<u8> + Send + Sync>;

/// Appends `records` in order, chained one to the next as [`append`] chains one, with one
/// write (one `write(2)` to the embedded log, one statement to PostgreSQL): a fetch's
/// records cost one system call, not one each.
pub fn append_all(store: &SecretStore, records: &[AuditRecord]) -> Result<(), AuditError> {
    if records.is_empty() {
        return Ok(());
    }
    let mut chain = store.audit_chain();
    let key = chain.key.clone();
    let ours = chain.head(store.backend())?;
    // What the builders made last (they run again if another host appended first).
    let built = std::sync::Arc::new(std::sync::Mutex::new(ours));
    let builds: Vec<Builder> = records
        .iter()
        .map(|record| {
            let json = serde_json::to_vec(record).unwrap_or_default();
            let key = key.clone();
            let slot = built.clone();
            Box::new(move |last: Option<&[u8]>| {
                let stored = last
                    .and_then(split_chained)
                    .map(|(seq, mac, _)| (seq.saturating_add(1), mac));
                let (seq, prev) = match stored {
                    Some(theirs) if theirs.0 > ours.0 => theirs,
                    _ => ours,
                };
                let mac = chain_mac(&key, &prev, &json, seq);
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = (seq + 1, mac);
                let mut out = Vec::with_capacity(HEADER_BYTES + json.len());
                out.extend_from_slice(CHAINED_MAGIC);
                out.extend_from_slice(&seq.to_be_bytes());
                out.extend_from_slice(&mac);
                out.extend_from_slice(&json);
                out
            }) as Builder
        })
        .collect();
    store.backend().append_chained_all(NS_AUDIT, builds)?;
    chain.head = Some(*built.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(())
}

/// Appends a chained record and makes it (and every earlier write) durable before
/// returning. An error means the record may not survive a crash: the caller must not go
/// on with what the record describes (fail closed).
pub fn append_durable(store: &SecretStore, record: &AuditRecord) -> Result<(), AuditError> {
    append(store, record)?;
    store.backend().flush()?;
    Ok(())
}

/// Makes every appended record durable.
pub fn flush(store: &SecretStore) -> Result<(), BackendError> {
    store.backend().flush()
}

/// Every record, oldest first, chained or legacy (the chain is not checked here: see
/// [`verify`]). Unreadable records are skipped and counted.
pub fn read_all(store: &SecretStore) -> Result<(Vec<AuditRecord>, usize), BackendError> {
    Ok(decode_all(store.backend().scan(NS_AUDIT, b"")?))
}

/// The records appended after `cursor` (empty: from the first), how many of them could
/// not be read, and the cursor to pass next time: for readers that keep up with the trail
/// instead of reading it whole (see [`Backend::scan_appended_since`]).
///
/// [`Backend::scan_appended_since`]: crate::store::Backend::scan_appended_since
pub fn read_since(
    store: &SecretStore,
    cursor: &[u8],
) -> Result<(Vec<AuditRecord>, usize, Vec<u8>), BackendError> {
    let (records, next) = store.backend().scan_appended_since(NS_AUDIT, cursor)?;
    let (records, bad) = decode_all(records);
    Ok((records, bad, next))
}

/// A stored record's id and the record (`None`: it does not decode).
pub(crate) type Decoded = (Vec<u8>, Option<AuditRecord>);

/// Up to `limit` stored records appended before `before` (`None`: the newest), newest
/// first, decoded, with their ids.
pub(crate) fn read_newest(
    store: &SecretStore,
    before: Option<&[u8]>,
    limit: usize,
) -> Result<Vec<Decoded>, BackendError> {
    Ok(store
        .backend()
        .scan_appended_newest(NS_AUDIT, before, limit)?
        .into_iter()
        .map(|(id, bytes)| {
            let json = split_chained(&bytes).map_or(bytes.as_slice(), |(_, _, j)| j);
            (id, serde_json::from_slice(json).ok())
        })
        .collect())
}

fn decode_all(stored: Records) -> (Vec<AuditRecord>, usize) {
    let mut out = Vec::new();
    let mut bad = 0;
    for (_, bytes) in stored {
        let json = split_chained(&bytes).map_or(bytes.as_slice(), |(_, _, j)| j);
        match serde_json::from_slice(json) {
            Ok(r) => out.push(r),
            Err(_) => bad += 1,
        }
    }
    (out, bad)
}

/// What is wrong with one stored record.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// The record's MAC does not verify: it was modified (or forged).
    Modified,
    /// Sequence numbers `expected..found` are missing: records were deleted.
    Gap {
        /// The sequence number that should have come next.
        expected: u64,
        /// The one found.
        found: u64,
    },
    /// The sequence goes backwards or repeats: records were moved or duplicated.
    OutOfOrder {
        /// The sequence number that should have come next.
        expected: u64,
        /// The one found.
        found: u64,
    },
    /// An unchained (legacy-format) record after the first chained one: inserted.
    UnchainedAfterChain,
    /// An unchained record in a store whose chain began with none before it: inserted.
    UnchainedInChainedStore,
    /// The unchained records before the chain are not those its genesis marker counted
    /// and digested: one was inserted, changed or deleted.
    LegacyChanged {
        /// How many the marker counted.
        recorded: u64,
        /// How many there are.
        found: u64,
    },
    /// The genesis marker is not one this store's key made (changed or forged).
    GenesisModified,
    /// Neither a chained record nor readable JSON.
    Unreadable,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Modified => write!(f, "modified: its MAC does not verify"),
            Problem::Gap { expected, found } => write!(
                f,
                "deleted: sequence {expected}..={} missing before {found} (or moved later: see the findings after this one)",
                found - 1
            ),
            Problem::OutOfOrder { expected, found } => write!(
                f,
                "reordered or duplicated: sequence {found} where {expected} was expected"
            ),
            Problem::UnchainedAfterChain => {
                write!(f, "inserted: an unchained record after the chain began")
            }
            Problem::UnchainedInChainedStore => write!(
                f,
                "inserted: an unchained record in a store whose audit trail was chained from its first record"
            ),
            Problem::LegacyChanged { recorded, found } => write!(
                f,
                "the unchained records before the chain are not those it began with ({recorded} recorded, {found} found): inserted, changed or deleted"
            ),
            Problem::GenesisModified => write!(
                f,
                "the chain's genesis marker does not verify: changed or forged"
            ),
            Problem::Unreadable => write!(f, "unreadable bytes"),
        }
    }
}

/// One problem found by [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Position in storage order (0 = oldest stored record).
    pub position: usize,
    /// The record's sequence number, if it is a chained record.
    pub seq: Option<u64>,
    /// What is wrong.
    pub problem: Problem,
}

/// The newest chained record: keep its sequence number and MAC elsewhere to detect later
/// deletion of the tail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Sequence number.
    pub seq: u64,
    /// MAC, 64 hex characters.
    pub mac: String,
}

impl std::fmt::Display for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.seq, self.mac)
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// Stored records, all kinds.
    pub records: usize,
    /// Chained records whose MAC and sequence number are as expected.
    pub chained: usize,
    /// Unchained records written before the chain began, as its genesis marker recorded
    /// them (or, for a chain begun before genesis markers, held to nothing).
    pub legacy: usize,
    /// Whether the chain begins with a genesis marker that verifies (`false` for a chain
    /// begun before genesis markers existed, and for a store with no chain yet).
    pub genesis: bool,
    /// Problems, in storage order.
    pub findings: Vec<Finding>,
    /// The newest chained record, if any.
    pub head: Option<Head>,
    /// (seq, MAC) of every chained record, for [`VerifyReport::contains`].
    seen: Vec<(u64, [u8; MAC_BYTES])>,
}

impl VerifyReport {
    /// No problem found.
    pub fn is_intact(&self) -> bool {
        self.findings.is_empty()
    }

    /// The first problem, in storage order.
    pub fn first_broken(&self) -> Option<&Finding> {
        self.findings.first()
    }

    /// Whether the chain holds the record `head` names (as printed earlier by
    /// `latchkey audit verify`, `SEQ:MAC`): `false` means it was deleted, i.e. the tail
    /// was truncated (or the head does not belong to this store).
    pub fn contains(&self, head: &Head) -> bool {
        let mut mac = [0u8; MAC_BYTES];
        if hex::decode_to_slice(head.mac.trim(), &mut mac).is_err() {
            return false;
        }
        self.seen.iter().any(|(s, m)| *s == head.seq && *m == mac)
    }
}

impl std::str::FromStr for Head {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (seq, mac) = s
            .split_once(':')
            .ok_or_else(|| "expected SEQ:MAC (as `latchkey audit verify` prints)".to_owned())?;
        let seq = seq
            .trim()
            .parse()
            .map_err(|_| format!("bad sequence number {seq:?}"))?;
        let mac = mac.trim();
        if mac.len() != 2 * MAC_BYTES || hex::decode(mac).is_err() {
            return Err("the MAC is 64 hex characters".into());
        }
        Ok(Head {
            seq,
            mac: mac.to_ascii_lowercase(),
        })
    }
}

/// Checks the whole chain (see the module documentation for what it can and cannot
/// detect). Reads every record once; returns `Err` only if the store cannot be read.
pub fn verify(store: &SecretStore) -> Result<VerifyReport, BackendError> {
    let key = store.audit_chain().key.clone();
    let backend = store.backend();
    let mut report = VerifyReport::default();
    // Record 0 is chained to the genesis marker, or to zeros in a chain older than markers.
    let mut prev = [0u8; MAC_BYTES];
    let mut recorded: Option<Genesis> = None;
    match backend.get(GENESIS_NS, GENESIS_ID)? {
        None => {}
        Some(bytes) => match open_genesis(&key, &bytes) {
            Some(g) => {
                prev = g.mac;
                report.genesis = true;
                recorded = Some(g);
            }
            None => report.findings.push(Finding {
                position: 0,
                seq: None,
                problem: Problem::GenesisModified,
            }),
        },
    }
    let born_chained = recorded.as_ref().is_some_and(|g| g.legacy == 0);
    let mut expected: u64 = 0;
    let mut chain_began = false;
    let mut legacy = Some(LegacyDigest::default());
    let mut legacy_seen = 0usize;
    let mut first_legacy: Option<usize> = None;
    let records = backend.scan(NS_AUDIT, b"")?;
    let total = records.len();
    for (position, (_, bytes)) in records.into_iter().enumerate() {
        report.records += 1;
        let Some((seq, mac, json)) = split_chained(&bytes) else {
            let readable = serde_json::from_slice::<AuditRecord>(&bytes).is_ok();
            let problem = if chain_began {
                Some(Problem::UnchainedAfterChain)
            } else if born_chained {
                Some(Problem::UnchainedInChainedStore)
            } else {
                if let Some(d) = legacy.as_mut() {
                    d.add(&bytes);
                }
                first_legacy.get_or_insert(position);
                legacy_seen += usize::from(readable);
                None
            };
            let problem = if readable {
                problem
            } else {
                Some(Problem::Unreadable)
            };
            if let Some(problem) = problem {
                report.findings.push(Finding {
                    position,
                    seq: None,
                    problem,
                });
            }
            continue;
        };
        if !chain_began {
            chain_began = true;
            if let Some(f) = check_legacy(&recorded, legacy.take(), first_legacy, position) {
                report.findings.push(f);
            } else {
                report.legacy = legacy_seen;
            }
        }
        let mut finding = |seq, problem| {
            report.findings.push(Finding {
                position,
                seq,
                problem,
            })
        };
        if seq == expected {
            if chain_mac(&key, &prev, json, seq) != mac {
                finding(Some(seq), Problem::Modified);
            } else if serde_json::from_slice::<AuditRecord>(json).is_err() {
                finding(Some(seq), Problem::Unreadable);
            } else {
                report.chained += 1;
            }
        } else if seq > expected {
            finding(
                Some(seq),
                Problem::Gap {
                    expected,
                    found: seq,
                },
            );
        } else {
            finding(
                Some(seq),
                Problem::OutOfOrder {
                    expected,
                    found: seq,
                },
            );
        }
        // Carry on from this record, so one problem does not hide later ones.
        report.seen.push((seq, mac));
        report.head = Some(Head {
            seq,
            mac: hex::encode(mac),
        });
        expected = seq.saturating_add(1);
        prev = mac;
    }
    if !chain_began {
        // No chain (yet): legacy records are held to a marker if one was written.
        if let Some(f) = check_legacy(&recorded, legacy.take(), first_legacy, total) {
            report.findings.push(f);
        } else {
            report.legacy = legacy_seen;
        }
    }
    report.findings.sort_by_key(|f| f.position);
    Ok(report)
}

/// Whether the unchained records stored before the chain (`found`, the first of them at
/// `first`; the chain beginning at `chain_at`) are those the genesis marker recorded.
/// Without a marker there is nothing to hold them to.
fn check_legacy(
    recorded: &Option<Genesis>,
    found: Option<LegacyDigest>,
    first: Option<usize>,
    chain_at: usize,
) -> Option<Finding> {
    let g = recorded.as_ref()?;
    // A store born chained flags each unchained record by itself.
    if g.legacy == 0 {
        return None;
    }
    let (count, digest) = found.unwrap_or_default().finish();
    if count == g.legacy && digest == g.digest {
        return None;
    }
    Some(Finding {
        position: first.unwrap_or(chain_at),
        seq: None,
        problem: Problem::LegacyChanged {
            recorded: g.legacy,
            found: count,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MasterKey, MemoryBackend, SecretStore};

    const NS: &str = NS_AUDIT;

    fn store() -> SecretStore {
        let m = MasterKey::generate().expect("rng");
        SecretStore::init_with(Box::new(MemoryBackend::default()), "mem", &m).expect("init")
    }

    fn rec(i: u64) -> AuditRecord {
        AuditRecord {
            time_ms: i,
            run_id: format!("run-{i}"),
            workspace: "w".into(),
            workflow: "f".into(),
            step: "s".into(),
            user: "alice".into(),
            event: AuditEvent::Resolve,
            key: "TOKEN".into(),
            scope: None,
            version: None,
            destination: None,
            location: None,
            outcome: "ok".into(),
            actor: None,
        }
    }

    fn stored(s: &SecretStore) -> Vec<(Vec<u8>, Vec<u8>)> {
        s.backend().scan(NS, b"").expect("scan")
    }

    fn with_records(n: u64) -> SecretStore {
        let s = store();
        for i in 0..n {
            append(&s, &rec(i)).expect("append");
        }
        s
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let s = with_records(5);
        let r = verify(&s).expect("verify");
        assert!(r.is_intact(), "{:?}", r.findings);
        assert_eq!((r.records, r.chained, r.legacy), (5, 5, 0));
        let head = r.head.clone().expect("head");
        assert_eq!(head.seq, 4);
        assert!(r.contains(&head.to_string().parse().expect("parse")));
        assert_eq!(read_all(&s).expect("read").0.len(), 5);
    }

    #[test]
    fn a_modified_record_is_detected() {
        let s = with_records(5);
        let (id, mut bytes) = stored(&s).remove(2);
        let at = bytes.len() - 5;
        bytes[at] ^= 0x01;
        s.backend().put(NS, &id, &bytes).expect("put");
        let r = verify(&s).expect("verify");
        assert_eq!(
            r.first_broken().map(|f| (f.seq, f.problem.clone())),
            Some((Some(2), Problem::Modified))
        );
        assert_eq!(r.findings.len(), 1, "{:?}", r.findings);
    }

    #[test]
    fn a_rewritten_record_keeping_its_mac_is_detected() {
        // Rewriting the JSON (say, the outcome) without the key cannot produce a MAC.
        let s = with_records(3);
        let (id, bytes) = stored(&s).remove(1);
        let (seq, mac, json) = split_chained(&bytes).expect("chained");
        let json = String::from_utf8(json.to_vec())
            .expect("utf8")
            .replace("\"ok\"", "\"denied\"");
        let mut forged = CHAINED_MAGIC.to_vec();
        forged.extend_from_slice(&seq.to_be_bytes());
        forged.extend_from_slice(&mac);
        forged.extend_from_slice(json.as_bytes());
        s.backend().put(NS, &id, &forged).expect("put");
        assert_eq!(
            verify(&s)
                .expect("v")
                .first_broken()
                .map(|f| f.problem.clone()),
            Some(Problem::Modified)
        );
    }

    #[test]
    fn a_deleted_record_is_a_gap() {
        let s = with_records(5);
        let (id, _) = stored(&s).remove(1);
        s.backend().delete(NS, &id).expect("delete");
        let r = verify(&s).expect("verify");
        assert_eq!(
            r.first_broken().map(|f| f.problem.clone()),
            Some(Problem::Gap {
                expected: 1,
                found: 2
            })
        );
        // The oldest deleted: the chain must start at 0.
        let s = with_records(3);
        let (id, _) = stored(&s).remove(0);
        s.backend().delete(NS, &id).expect("delete");
        assert!(!verify(&s).expect("v").is_intact());
    }

    #[test]
    fn reordered_records_are_detected() {
        let s = with_records(4);
        let recs = stored(&s);
        s.backend().put(NS, &recs[1].0, &recs[2].1).expect("put");
        s.backend().put(NS, &recs[2].0, &recs[1].1).expect("put");
        let r = verify(&s).expect("verify");
        assert!(!r.is_intact());
        assert_eq!(r.first_broken().and_then(|f| f.seq), Some(2));
    }

    #[test]
    fn inserted_records_are_detected() {
        let s = with_records(3);
        let recs = stored(&s);
        // A legacy-format record slipped in after the chain began.
        let mut id = recs[2].0.clone();
        id.push(0);
        s.backend()
            .put(NS, &id, &serde_json::to_vec(&rec(99)).expect("json"))
            .expect("put");
        let r = verify(&s).expect("verify");
        assert_eq!(
            r.first_broken().map(|f| f.problem.clone()),
            Some(Problem::UnchainedAfterChain)
        );
        // A copy of a chained record inserted: sequence repeats.
        let s = with_records(3);
        let recs = stored(&s);
        let mut id = recs[1].0.clone();
        id.push(0);
        s.backend().put(NS, &id, &recs[1].1).expect("put");
        assert!(matches!(
            verify(&s)
                .expect("v")
                .first_broken()
                .map(|f| f.problem.clone()),
            Some(Problem::OutOfOrder { .. })
        ));
    }

    /// A bare JSON record stored under `id`, as a record written before the chain was.
    fn insert_legacy(s: &SecretStore, id: &[u8], r: &AuditRecord) {
        s.backend()
            .put(NS, id, &serde_json::to_vec(r).expect("json"))
            .expect("put");
    }

    #[test]
    fn a_legacy_record_inserted_before_a_chain_born_chained_is_tampering() {
        let s = with_records(3);
        let first = stored(&s).remove(0).0;
        // Sorted before the first chained record: it reads as written before the chain.
        let before = first[..first.len() - 1].to_vec();
        assert!(before < first);
        let mut forged = rec(0);
        forged.event = AuditEvent::SecretRotate;
        forged.actor = Some("alice".into());
        insert_legacy(&s, &before, &forged);
        assert_eq!(stored(&s)[0].0, before);
        let r = verify(&s).expect("verify");
        assert!(!r.is_intact(), "an inserted legacy record passed: {r:?}");
        assert_eq!(r.legacy, 0);
        assert_eq!(r.first_broken().map(|f| f.position), Some(0));
    }

    #[test]
    fn legacy_records_are_held_to_what_the_chain_found_when_it_began() {
        let s = store();
        let old = |i| {
            let mut r = rec(i);
            r.actor = None;
            serde_json::to_vec(&r).expect("json")
        };
        s.backend().append(NS, &old(1)).expect("append");
        s.backend().append(NS, &old(2)).expect("append");
        let s = SecretStore::reopen_for_tests(s);
        append(&s, &rec(3)).expect("append");
        let r = verify(&s).expect("verify");
        assert!(r.is_intact(), "{:?}", r.findings);
        assert_eq!((r.legacy, r.chained), (2, 1));
        let recs = stored(&s);
        // One more legacy record among the old ones, one changed, one removed: each shows.
        let mut id = recs[0].0.clone();
        id.push(0);
        insert_legacy(&s, &id, &rec(9));
        assert!(
            !verify(&s).expect("v").is_intact(),
            "an inserted legacy record passed"
        );
        s.backend().delete(NS, &id).expect("delete");
        assert!(verify(&s).expect("v").is_intact());
        s.backend().put(NS, &recs[1].0, &old(7)).expect("put");
        assert!(
            !verify(&s).expect("v").is_intact(),
            "a changed legacy record passed"
        );
        s.backend().put(NS, &recs[1].0, &old(2)).expect("put");
        s.backend().delete(NS, &recs[0].0).expect("delete");
        assert!(
            !verify(&s).expect("v").is_intact(),
            "a deleted legacy record passed"
        );
    }

    #[test]
    fn the_genesis_marker_can_be_neither_removed_nor_replaced() {
        let s = with_records(3);
        let marker = s
            .backend()
            .get(GENESIS_NS, GENESIS_ID)
            .expect("get")
            .expect("a genesis marker");
        let r = verify(&s).expect("verify");
        assert!(r.is_intact() && r.genesis, "{:?}", r.findings);
        // Removed: record 0 was chained to it.
        s.backend().delete(GENESIS_NS, GENESIS_ID).expect("delete");
        let r = verify(&s).expect("verify");
        assert_eq!(
            r.first_broken().map(|f| (f.seq, f.problem.clone())),
            Some((Some(0), Problem::Modified))
        );
        // Replaced by one that counts a legacy record, without the key: its MAC fails.
        let mut forged = marker.clone();
        forged[GENESIS_MAGIC.len() + 7] = 1;
        s.backend()
            .put(GENESIS_NS, GENESIS_ID, &forged)
            .expect("put");
        let r = verify(&s).expect("verify");
        assert_eq!(
            r.first_broken().map(|f| f.problem.clone()),
            Some(Problem::GenesisModified)
        );
        s.backend()
            .put(GENESIS_NS, GENESIS_ID, &marker)
            .expect("put");
        assert!(verify(&s).expect("verify").is_intact());
    }

    #[test]
    fn a_chain_begun_before_genesis_markers_still_verifies() {
        let s = store();
        let key = s.audit_chain().key.clone();
        let json = serde_json::to_vec(&rec(0)).expect("json");
        let mut old = CHAINED_MAGIC.to_vec();
        old.extend_from_slice(&0u64.to_be_bytes());
        old.extend_from_slice(&chain_mac(&key, &[0; MAC_BYTES], &json, 0));
        old.extend_from_slice(&json);
        s.backend().append(NS, &old).expect("append");
        let s = SecretStore::reopen_for_tests(s);
        append(&s, &rec(1)).expect("append");
        let r = verify(&s).expect("verify");
        assert!(r.is_intact(), "{:?}", r.findings);
        assert_eq!((r.chained, r.genesis), (2, false));
        assert!(
            s.backend()
                .get(GENESIS_NS, GENESIS_ID)
                .expect("get")
                .is_none()
        );
    }

    #[test]
    fn a_truncated_tail_is_caught_against_a_saved_head() {
        let s = with_records(5);
        let saved = verify(&s).expect("v").head.expect("head");
        let recs = stored(&s);
        for (id, _) in &recs[3..] {
            s.backend().delete(NS, id).expect("delete");
        }
        let r = verify(&s).expect("v");
        // The shorter chain is valid by itself; only the saved head shows the loss.
        assert!(r.is_intact());
        assert!(!r.contains(&saved));
    }

    #[test]
    fn legacy_records_parse_and_are_not_tampering() {
        let s = store();
        // A record as written before chaining and before `actor` existed.
        let old = br#"{"time_ms":1,"run_id":"r","workspace":"w","workflow":"f","step":"s","user":"u","event":"inject","key":"TOKEN","destination":"https://api.example.com:443","location":"header:authorization","outcome":"status 200"}"#;
        s.backend().append(NS, old).expect("append");
        let s = SecretStore::reopen_for_tests(s);
        append(&s, &rec(1)).expect("append");
        let r = verify(&s).expect("verify");
        assert!(r.is_intact(), "{:?}", r.findings);
        assert_eq!((r.legacy, r.chained), (1, 1));
        let (all, bad) = read_all(&s).expect("read");
        assert_eq!((all.len(), bad), (2, 0));
        assert_eq!(all[0].actor, None);
        assert_eq!(all[0].event, AuditEvent::Inject);
    }

    #[test]
    fn the_head_is_loaded_at_open_and_concurrent_appends_chain() {
        let s = std::sync::Arc::new(with_records(2));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for i in 0..25 {
                        append(&s, &rec(100 * t + i)).expect("append");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        let s = std::sync::Arc::into_inner(s).expect("sole owner");
        let s = SecretStore::reopen_for_tests(s);
        append_durable(&s, &rec(7)).expect("append");
        let r = verify(&s).expect("verify");
        assert!(r.is_intact(), "{:?}", r.findings);
        assert_eq!(r.chained, 103);
    }
}
