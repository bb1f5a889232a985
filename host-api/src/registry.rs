//! Registered components and workflows, kept in the store so that every host sharing it
//! runs the same code: a component's bytes under its SHA-256 digest (`components`
//! namespace; checked against the digest whenever read), and in the `registry` namespace
//! `digest/<digest>` (size, who registered it, when), `component/<name>` (the digest a
//! name points at, its description and input schema) and `workflow/<name>` (the manifest
//! as registered and the digest of each step's component), and `settings/scripts` (what an
//! admin allows agent-written scripts).
//!
//! Registry records are authenticated with a key derived from the data key, as token
//! records are: someone who can write the database but not read the data key cannot point
//! a name at other code or edit a workflow's allowlist.

use crate::scripts::ScriptPolicy;
use crate::store::{Backend, BackendError, SecretStore};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub(crate) use crate::store::namespaces::{COMPONENTS as NS_COMPONENTS, REGISTRY as NS_REGISTRY};

/// A registered component as callers see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentInfo {
    /// `sha256:<hex>` of its bytes.
    pub digest: String,
    /// The name it was registered under, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Size in bytes.
    pub size: u64,
    /// What it does, for people and agents choosing a tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A JSON Schema of its input, if its author gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<serde_json::Value>,
    /// Who registered it.
    pub registered_by: String,
    /// Unix milliseconds.
    pub registered_at_ms: u64,
}

/// What a component's registration says besides its bytes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ComponentSpec {
    /// Registered under this name (else reachable by digest only).
    pub name: Option<String>,
    /// What it does.
    pub description: Option<String>,
    /// A JSON Schema of its input.
    pub input_schema: Option<serde_json::Value>,
}

/// A registered workflow as callers see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowInfo {
    /// Its name.
    pub name: String,
    /// The manifest as registered (TOML).
    pub manifest: String,
    /// Each step's component digest, in order.
    pub digests: Vec<String>,
    /// Who registered it.
    pub registered_by: String,
    /// Unix milliseconds.
    pub registered_at_ms: u64,
}

/// The digest of `bytes` as registrations name it.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Whether `s` has the shape of a digest (`sha256:` and 64 lowercase hex digits).
pub(crate) fn is_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Component and workflow names: 1 to 100 of `A-Z a-z 0-9 . _ -`, so that they never look
/// like a digest or a path.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[derive(Serialize, Deserialize)]
struct DigestRecord {
    size: u64,
    registered_by: String,
    registered_at_ms: u64,
}

#[derive(Serialize, Deserialize)]
struct NameRecord {
    digest: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    input_schema: Option<serde_json::Value>,
    registered_by: String,
    registered_at_ms: u64,
}

type HmacSha256 = Hmac<Sha256>;

/// The registry of one store.
pub(crate) struct Registry<'a> {
    backend: &'a dyn Backend,
    key: zeroize::Zeroizing<[u8; 32]>,
}

impl<'a> Registry<'a> {
    pub(crate) fn of(store: &'a SecretStore) -> Self {
        Registry {
            backend: store.backend(),
            key: store.derived_key("registry"),
        }
    }

    fn mac(&self, id: &[u8], json: &[u8]) -> HmacSha256 {
        let mut mac = match HmacSha256::new_from_slice(self.key.as_ref()) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC accepts a key of any length"),
        };
        for p in [id, json] {
            mac.update(&(p.len() as u64).to_be_bytes());
            mac.update(p);
        }
        mac
    }

    fn seal<T: Serialize>(&self, id: &[u8], value: &T) -> Vec<u8> {
        let mut out = serde_json::to_vec(value).unwrap_or_default();
        let tag = self.mac(id, &out).finalize().into_bytes();
        out.extend_from_slice(&tag);
        out
    }

    fn open<T: for<'de> Deserialize<'de>>(&self, id: &[u8], bytes: &[u8]) -> Option<T> {
        let split = bytes.len().checked_sub(32)?;
        let (json, tag) = bytes.split_at(split);
        self.mac(id, json).verify_slice(tag).ok()?;
        serde_json::from_slice(json).ok()
    }

    fn read<T: for<'de> Deserialize<'de>>(&self, id: &str) -> Result<Option<T>, BackendError> {
        Ok(self
            .backend
            .get(NS_REGISTRY, id.as_bytes())?
            .and_then(|b| self.open(id.as_bytes(), &b)))
    }

    /// Stores a component's bytes (under their digest) and its registration.
    pub(crate) fn put_component(
        &self,
        bytes: &[u8],
        spec: &ComponentSpec,
        by: &str,
        now_ms: u64,
    ) -> Result<ComponentInfo, BackendError> {
        let digest = digest_of(bytes);
        if self
            .backend
            .get(NS_COMPONENTS, digest.as_bytes())?
            .is_none()
        {
            self.backend.put(NS_COMPONENTS, digest.as_bytes(), bytes)?;
        }
        let did = format!("digest/{digest}");
        let known: Option<DigestRecord> = self.read(&did)?;
        let (registered_by, registered_at_ms) = match &known {
            Some(d) => (d.registered_by.clone(), d.registered_at_ms),
            None => (by.to_owned(), now_ms),
        };
        if known.is_none() {
            let record = DigestRecord {
                size: bytes.len() as u64,
                registered_by: registered_by.clone(),
                registered_at_ms,
            };
            self.backend.put(
                NS_REGISTRY,
                did.as_bytes(),
                &self.seal(did.as_bytes(), &record),
            )?;
        }
        let mut info = ComponentInfo {
            digest: digest.clone(),
            name: None,
            size: bytes.len() as u64,
            description: spec.description.clone(),
            input_schema: spec.input_schema.clone(),
            registered_by,
            registered_at_ms,
        };
        if let Some(name) = &spec.name {
            let nid = format!("component/{name}");
            let record = NameRecord {
                digest,
                description: spec.description.clone(),
                input_schema: spec.input_schema.clone(),
                registered_by: by.to_owned(),
                registered_at_ms: now_ms,
            };
            self.backend.put(
                NS_REGISTRY,
                nid.as_bytes(),
                &self.seal(nid.as_bytes(), &record),
            )?;
            info.name = Some(name.clone());
            info.registered_by = by.to_owned();
            info.registered_at_ms = now_ms;
        }
        Ok(info)
    }

    /// The digest a name points at, or the digest itself if it is one that is registered.
    pub(crate) fn digest(&self, name_or_digest: &str) -> Result<Option<String>, BackendError> {
        Ok(self.runnable(name_or_digest)?.map(|(digest, _)| digest))
    }

    /// What a run of a component needs from its registration: the digest a name points
    /// at (or the digest itself, if registered) and the name's input schema (a digest has
    /// none: a schema belongs to a name).
    pub(crate) fn runnable(
        &self,
        name_or_digest: &str,
    ) -> Result<Option<(String, Option<serde_json::Value>)>, BackendError> {
        if is_digest(name_or_digest) {
            let known: Option<DigestRecord> = self.read(&format!("digest/{name_or_digest}"))?;
            return Ok(known.map(|_| (name_or_digest.to_owned(), None)));
        }
        let named: Option<NameRecord> = self.read(&format!("component/{name_or_digest}"))?;
        Ok(named.map(|n| (n.digest, n.input_schema)))
    }

    /// A component's bytes, checked against its digest (`None`: not stored, or not the
    /// bytes the digest names).
    pub(crate) fn bytes(&self, digest: &str) -> Result<Option<Vec<u8>>, BackendError> {
        Ok(self
            .backend
            .get(NS_COMPONENTS, digest.as_bytes())?
            .filter(|b| digest_of(b) == digest))
    }

    /// Every registered component: each name, and each digest no name points at.
    pub(crate) fn components(&self) -> Result<Vec<ComponentInfo>, BackendError> {
        let mut out = Vec::new();
        let mut named = std::collections::BTreeSet::new();
        for (id, bytes) in self.backend.scan(NS_REGISTRY, b"component/")? {
            let Some(n) = self.open::<NameRecord>(&id, &bytes) else {
                continue;
            };
            let name = String::from_utf8_lossy(&id["component/".len()..]).into_owned();
            let size = self
                .read::<DigestRecord>(&format!("digest/{}", n.digest))?
                .map_or(0, |d| d.size);
            named.insert(n.digest.clone());
            out.push(ComponentInfo {
                digest: n.digest,
                name: Some(name),
                size,
                description: n.description,
                input_schema: n.input_schema,
                registered_by: n.registered_by,
                registered_at_ms: n.registered_at_ms,
            });
        }
        for (id, bytes) in self.backend.scan(NS_REGISTRY, b"digest/")? {
            let Some(d) = self.open::<DigestRecord>(&id, &bytes) else {
                continue;
            };
            let digest = String::from_utf8_lossy(&id["digest/".len()..]).into_owned();
            if named.contains(&digest) {
                continue;
            }
            out.push(ComponentInfo {
                digest,
                name: None,
                size: d.size,
                description: None,
                input_schema: None,
                registered_by: d.registered_by,
                registered_at_ms: d.registered_at_ms,
            });
        }
        Ok(out)
    }

    /// Stores a workflow's registration.
    pub(crate) fn put_workflow(&self, info: &WorkflowInfo) -> Result<(), BackendError> {
        let id = format!("workflow/{}", info.name);
        self.backend
            .put(NS_REGISTRY, id.as_bytes(), &self.seal(id.as_bytes(), info))
    }

    /// A workflow's registration.
    pub(crate) fn workflow(&self, name: &str) -> Result<Option<WorkflowInfo>, BackendError> {
        self.read(&format!("workflow/{name}"))
    }

    /// Every registered workflow, by name.
    pub(crate) fn workflows(&self) -> Result<Vec<WorkflowInfo>, BackendError> {
        Ok(self
            .backend
            .scan(NS_REGISTRY, b"workflow/")?
            .into_iter()
            .filter_map(|(id, bytes)| self.open(&id, &bytes))
            .collect())
    }

    /// What an admin allows agent-written scripts. None stored (or a record that fails its
    /// check, written by someone without the data key) is the default: off.
    pub(crate) fn script_policy(&self) -> Result<ScriptPolicy, BackendError> {
        Ok(self.read(SCRIPT_POLICY_ID)?.unwrap_or_default())
    }

    /// Says, to every host of the store, that what may run changed: a fresh random value
    /// that a host compares with the one it read last. Not sealed: whoever could write it
    /// could only make hosts tell their clients to list the tools again.
    pub(crate) fn mark_changed(&self) -> Result<Vec<u8>, BackendError> {
        let mut generation = vec![0u8; 16];
        let _ = getrandom::fill(&mut generation);
        self.backend
            .put(NS_REGISTRY, GENERATION_ID.as_bytes(), &generation)?;
        Ok(generation)
    }

    /// The value [`Registry::mark_changed`] wrote last (`None`: never).
    pub(crate) fn generation(&self) -> Result<Option<Vec<u8>>, BackendError> {
        self.backend.get(NS_REGISTRY, GENERATION_ID.as_bytes())
    }

    /// Stores what an admin allows agent-written scripts.
    pub(crate) fn put_script_policy(&self, policy: &ScriptPolicy) -> Result<(), BackendError> {
        let id = SCRIPT_POLICY_ID.as_bytes();
        self.backend.put(NS_REGISTRY, id, &self.seal(id, policy))
    }
}

/// The script policy's id in the registry namespace (beside `component/`, `workflow/`).
const SCRIPT_POLICY_ID: &str = "settings/scripts";
/// Random bytes, new at every change of what may run (see [`Registry::mark_changed`]).
const GENERATION_ID: &str = "settings/generation";

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::{MasterKey, MemoryBackend};

    fn store() -> SecretStore {
        let master = MasterKey::generate().unwrap();
        SecretStore::init_with(Box::new(MemoryBackend::default()), "mem", &master).unwrap()
    }

    fn spec(name: &str) -> ComponentSpec {
        ComponentSpec {
            name: Some(name.into()),
            description: Some("echoes".into()),
            input_schema: None,
        }
    }

    #[test]
    fn a_component_is_found_by_name_and_digest_and_listed_once() {
        let s = store();
        let reg = Registry::of(&s);
        let bytes = b"\0asm fake component";
        let info = reg.put_component(bytes, &spec("echo"), "alice", 5).unwrap();
        assert_eq!(info.digest, digest_of(bytes));
        assert_eq!(reg.digest("echo").unwrap(), Some(info.digest.clone()));
        assert_eq!(reg.digest(&info.digest).unwrap(), Some(info.digest.clone()));
        assert_eq!(reg.digest("other").unwrap(), None);
        assert_eq!(reg.bytes(&info.digest).unwrap().unwrap(), bytes);
        let listed = reg.components().unwrap();
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(listed[0].name.as_deref(), Some("echo"));
        assert_eq!(listed[0].description.as_deref(), Some("echoes"));
    }

    #[test]
    fn edited_records_and_swapped_bytes_are_not_believed() {
        let s = store();
        let reg = Registry::of(&s);
        let good = reg
            .put_component(b"\0asm good", &spec("echo"), "alice", 5)
            .unwrap();
        let evil = digest_of(b"\0asm evil");
        // Someone who can write the database points the name at other code: the record's
        // MAC no longer matches, so the name is unknown rather than wrong.
        let bytes = s
            .backend()
            .get(NS_REGISTRY, b"component/echo")
            .unwrap()
            .unwrap();
        let forged = String::from_utf8_lossy(&bytes).replace(&good.digest, &evil);
        s.backend()
            .put(NS_REGISTRY, b"component/echo", forged.as_bytes())
            .unwrap();
        assert_eq!(reg.digest("echo").unwrap(), None);
        // Bytes replaced under a digest do not load as that digest.
        s.backend()
            .put(NS_COMPONENTS, good.digest.as_bytes(), b"\0asm evil")
            .unwrap();
        assert_eq!(reg.bytes(&good.digest).unwrap(), None);
    }

    #[test]
    fn names_and_digests_have_their_shapes() {
        assert!(valid_name("slack-post.v2_1"));
        for bad in ["", "a/b", "sha256:ab", "a b", "é", &"x".repeat(101)] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        assert!(is_digest(&digest_of(b"x")));
        assert!(!is_digest("sha256:ABC"));
    }
}
