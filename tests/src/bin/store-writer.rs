//! Test helper for the crash-safety test: writes secrets to a store in a loop and prints
//! `ack N` after each write returns (a write is acknowledged only once it is durable).
//! Usage: store-writer STORE_DIR FIRST_INDEX, master key (hex) in LATCHKEY_MASTER_KEY.
#![allow(clippy::unwrap_used)]

use latchkey_host::policy::{Binding, HostPattern, InjectLocation};
use latchkey_host::secret::{CredentialKey, SecretValue};
use latchkey_host::store::{MasterKey, Scope, SecretSpec, SecretStore};
use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(&args[1]);
    let first: u64 = args[2].parse().unwrap();
    let master =
        MasterKey::from_bytes(std::env::var("LATCHKEY_MASTER_KEY").unwrap().as_bytes()).unwrap();
    let store = SecretStore::open(&dir, &master).unwrap();
    let binding = Binding::new(
        vec![HostPattern::parse("api.example.com").unwrap()],
        vec![InjectLocation::parse("header:authorization").unwrap()],
        false,
    )
    .unwrap();
    let mut out = std::io::stdout().lock();
    for i in first.. {
        let key = CredentialKey::new(&format!("K{i}")).unwrap();
        // Values of varying size so writes straddle sled's internal boundaries.
        let value = format!("v-{i}-{}", "x".repeat((i as usize * 37) % 3000));
        let spec = SecretSpec {
            integration: "http".into(),
            binding: binding.clone(),
            allow_weak_value: true,
            quota: Default::default(),
            kind: Default::default(),
            oauth: None,
        };
        store
            .set(
                &Scope::Platform,
                &key,
                SecretValue::new(value.into_bytes()).unwrap(),
                spec,
                "writer",
            )
            .unwrap();
        writeln!(out, "ack {i}").unwrap();
        out.flush().unwrap();
    }
}
