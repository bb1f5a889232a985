//! Test support for Latchkey: the guests built by `build.rs`, loopback fake upstreams,
//! and helpers to set up a store and run steps through the library.
//!
//! The integration tests live in `tests/tests/` (library API) and `runtime/tests/` (the
//! `latchkey` binary, whose path cargo only exposes to its own package's tests).
#![deny(missing_docs)]
#![allow(clippy::unwrap_used)]

pub mod guest_suite;
pub mod steps;
pub mod token_endpoint;
pub mod upstream;

use latchkey_host::policy::{AddressPolicy, Binding, BindingSpec, HostPattern, InjectLocation};
use latchkey_host::resolve::RunContext;
use latchkey_host::sandbox::{Limits, RunFailure, RunOutcome, Runtime, RuntimeConfig, Step};
use latchkey_host::secret::{CredentialKey, SecretValue};
use latchkey_host::store::{MasterKey, Scope, SecretMeta, SecretSpec, SecretStore, StoreError};
use std::path::PathBuf;
use std::sync::Arc;

/// Directory holding the built guest components.
pub const GUEST_DIR: &str = env!("LATCHKEY_GUEST_DIR");

/// Path of a built guest, e.g. `guest("slack_post")`.
pub fn guest(name: &str) -> PathBuf {
    let p = PathBuf::from(GUEST_DIR).join(format!("{name}.wasm"));
    assert!(p.exists(), "guest {} was not built", p.display());
    p
}

/// The smallest component that imports the instance `name` (an instance type with nothing in
/// it), written in the binary format by hand: a component refused for its import alone.
pub fn component_importing(name: &str) -> Vec<u8> {
    let mut import = vec![0x01, 0x00, u8::try_from(name.len()).unwrap()];
    import.extend_from_slice(name.as_bytes());
    import.extend_from_slice(&[0x05, 0x00]); // an instance of type 0
    let mut bytes = b"\0asm\x0d\x00\x01\x00".to_vec(); // component, layer 1
    bytes.extend_from_slice(&[0x07, 0x03, 0x01, 0x42, 0x00]); // type 0: empty instance type
    bytes.push(0x0a); // import section
    bytes.push(u8::try_from(import.len()).unwrap());
    bytes.extend_from_slice(&import);
    bytes
}

/// A file holding [`component_importing`]`("wasi:http/types@0.2.0")`, for the CLI.
pub fn http_importing_guest() -> PathBuf {
    let p = PathBuf::from(GUEST_DIR).join("imports-wasi-http.wasm");
    let bytes = component_importing("wasi:http/types@0.2.0");
    if std::fs::read(&p).ok().as_deref() != Some(&bytes[..]) {
        let partial = p.with_extension(format!("{}.partial", std::process::id()));
        std::fs::write(&partial, &bytes).unwrap();
        std::fs::rename(&partial, &p).unwrap();
    }
    p
}

/// A store in a temporary directory, with its master key.
pub struct TestStore {
    /// Keeps the directory alive.
    pub dir: tempfile::TempDir,
    /// The open store.
    pub store: Arc<SecretStore>,
}

impl TestStore {
    /// A fresh store.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let master = MasterKey::generate().unwrap();
        let store = Arc::new(SecretStore::init(&dir.path().join("store"), &master).unwrap());
        TestStore { dir, store }
    }

    /// Stores `value` under `key` at `scope` bound to `hosts` and `locations`, plain http
    /// allowed (the fakes are http on loopback).
    pub fn put(&self, scope: &Scope, key: &str, value: &str, hosts: &[&str], locations: &[&str]) {
        self.put_typed(scope, key, value, hosts, locations, "http");
    }

    /// Like [`TestStore::put`] with an integration type.
    pub fn put_typed(
        &self,
        scope: &Scope,
        key: &str,
        value: &str,
        hosts: &[&str],
        locations: &[&str],
        integration: &str,
    ) {
        let binding = Binding::new(
            hosts
                .iter()
                .map(|h| HostPattern::parse(h).unwrap())
                .collect(),
            locations
                .iter()
                .map(|l| InjectLocation::parse(l).unwrap())
                .collect(),
            true,
        )
        .unwrap();
        self.store
            .set(
                scope,
                &CredentialKey::new(key).unwrap(),
                SecretValue::new(value.as_bytes().to_vec()).unwrap(),
                SecretSpec {
                    integration: integration.into(),
                    binding,
                    allow_weak_value: true,
                    quota: Default::default(),
                    kind: Default::default(),
                    oauth: None,
                },
                "tester",
            )
            .unwrap();
    }

    /// Stores `value` under `key` at `scope` with a binding built from `spec` (plain http
    /// allowed, as the fakes are http on loopback). Returns the stored binding.
    pub fn put_spec(&self, scope: &Scope, key: &str, value: &str, spec: BindingSpec) -> Binding {
        let binding = BindingSpec {
            allow_http: true,
            ..spec
        }
        .build()
        .unwrap();
        self.store
            .set(
                scope,
                &CredentialKey::new(key).unwrap(),
                SecretValue::new(value.as_bytes().to_vec()).unwrap(),
                SecretSpec {
                    integration: "http".into(),
                    binding: binding.clone(),
                    allow_weak_value: true,
                    quota: Default::default(),
                    kind: Default::default(),
                    oauth: None,
                },
                "tester",
            )
            .unwrap();
        binding
    }

    /// Replaces a value.
    pub fn rotate(&self, scope: &Scope, key: &str, value: &str) {
        self.store
            .rotate(
                scope,
                &CredentialKey::new(key).unwrap(),
                SecretValue::new(value.as_bytes().to_vec()).unwrap(),
                true,
                "tester",
            )
            .unwrap();
    }
}

impl Default for TestStore {
    fn default() -> Self {
        Self::new()
    }
}

/// The default workspace scope.
pub fn workspace() -> Scope {
    Scope::Workspace {
        workspace: "default".into(),
    }
}

/// A runtime over `store` that may reach loopback (the fakes), with `limits`.
pub fn runtime_with(store: &TestStore, limits: Limits) -> Runtime {
    let config = RuntimeConfig {
        limits,
        address_policy: AddressPolicy::loopback(),
        pool_instances: 0,
        ..RuntimeConfig::default()
    };
    Runtime::new(config, store.store.clone()).unwrap()
}

/// A runtime with default limits that may reach loopback.
pub fn runtime(store: &TestStore) -> Runtime {
    runtime_with(store, Limits::default())
}

/// Loads a built guest.
pub fn load(rt: &Runtime, name: &str) -> Step {
    rt.load(&std::fs::read(guest(name)).unwrap()).unwrap()
}

/// Runs `step` as a one-step workflow `wf` of user `alice` in workspace `default`.
pub async fn run(
    rt: &Runtime,
    step: &Step,
    input: serde_json::Value,
) -> Result<RunOutcome, RunFailure> {
    let ctx = RunContext::single_step("default", "wf", "alice");
    rt.run(step, &ctx, &input.to_string()).await
}

/// Runs and parses the output as JSON, panicking with the error otherwise.
pub async fn run_ok(rt: &Runtime, step: &Step, input: serde_json::Value) -> serde_json::Value {
    match run(rt, step, input).await {
        Ok(o) => serde_json::from_str(&o.output).unwrap(),
        Err(e) => panic!("run failed: {e}"),
    }
}

/// A store holding `TOKEN` = `value`, bound to `upstream`'s address and the header
/// `authorization`; a runtime over it that may reach loopback; and the probe guest.
pub fn probe_with_token(upstream: &upstream::Upstream, value: &str) -> (TestStore, Runtime, Step) {
    probe_with(upstream, value, &["header:authorization"])
}

/// Like [`probe_with_token`], with `TOKEN` bound to `locations`.
pub fn probe_with(
    upstream: &upstream::Upstream,
    value: &str,
    locations: &[&str],
) -> (TestStore, Runtime, Step) {
    let s = TestStore::new();
    let host = format!("127.0.0.1:{}", upstream.port());
    s.put(&workspace(), "TOKEN", value, &[&host], locations);
    let rt = runtime(&s);
    let step = load(&rt, "probe");
    (s, rt, step)
}

/// What most tests store: integration `http`, `binding`, a strong value required, no
/// quota, a static value.
pub fn http_spec(binding: Binding) -> SecretSpec {
    SecretSpec {
        integration: "http".into(),
        binding,
        allow_weak_value: false,
        quota: Default::default(),
        kind: Default::default(),
        oauth: None,
    }
}

/// Stores `value` under `key` in [`workspace`] with `spec`, acting as `tester`.
pub fn set_in_workspace(
    store: &SecretStore,
    key: &str,
    value: &str,
    spec: SecretSpec,
) -> Result<SecretMeta, StoreError> {
    store.set(
        &workspace(),
        &CredentialKey::new(key).unwrap(),
        SecretValue::new(value.as_bytes().to_vec()).unwrap(),
        spec,
        "tester",
    )
}

/// Host patterns from strings.
pub fn hosts(patterns: &[&str]) -> Vec<HostPattern> {
    patterns
        .iter()
        .map(|h| HostPattern::parse(h).unwrap())
        .collect()
}

/// Injection locations from strings.
pub fn locations(list: &[&str]) -> Vec<InjectLocation> {
    list.iter()
        .map(|l| InjectLocation::parse(l).unwrap())
        .collect()
}

/// Whether `signature` (`hex` or `base64`) is the HMAC-SHA256 of `body` with `key`, checked by
/// Python's `hmac` module: code independent of the host's signer.
pub fn hmac_verified_by_python(key: &str, body: &[u8], signature: &str, encoding: &str) -> bool {
    let script = r#"
import base64, hashlib, hmac, sys
key, enc, sig = sys.argv[1].encode(), sys.argv[2], sys.argv[3]
body = sys.stdin.buffer.read()
mac = hmac.new(key, body, hashlib.sha256).digest()
want = mac.hex() if enc == "hex" else base64.b64encode(mac).decode()
sys.exit(0 if hmac.compare_digest(want, sig) else 1)
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", script, key, encoding, signature])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (tests/setup installs it on CI machines)");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(body).unwrap();
    child.wait().unwrap().success()
}
