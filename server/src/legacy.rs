//! Registrations an earlier `latchkey serve` kept in its data directory
//! (`registry.json` and `components/*.wasm`), imported into the store once at start so
//! that an upgrade loses nothing: each component and workflow is registered through the
//! façade (checked and compiled like any other), then `registry.json` is renamed
//! `registry.json.imported`. A component or workflow that no longer loads is skipped with
//! a warning.

use latchkey_host::{ComponentSpec, Latchkey, Principal, Role};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(serde::Deserialize, Default)]
struct Saved {
    #[serde(default)]
    names: BTreeMap<String, String>,
    #[serde(default)]
    workflows: BTreeMap<String, String>,
}

/// Imports what `dir` holds, if anything.
pub fn import(latchkey: &Latchkey, dir: &Path) -> std::io::Result<()> {
    let file = dir.join("registry.json");
    let saved: Saved = match std::fs::read(&file) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(std::io::Error::other)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let importer = match Principal::new("latchkey-import", Role::Admin) {
        Ok(p) => p,
        Err(e) => return Err(std::io::Error::other(e.to_string())),
    };
    let names_of = |digest: &str| -> Vec<String> {
        saved
            .names
            .iter()
            .filter(|(_, d)| d.as_str() == digest)
            .map(|(n, _)| n.clone())
            .collect()
    };
    let components = dir.join("components");
    if components.is_dir() {
        for entry in std::fs::read_dir(&components)? {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "wasm") {
                continue;
            }
            let bytes = std::fs::read(&path)?;
            let digest = latchkey_host::digest_of(&bytes);
            let mut names = names_of(&digest);
            if names.is_empty() {
                names.push(String::new());
            }
            for name in names {
                let spec = ComponentSpec {
                    name: (!name.is_empty()).then_some(name),
                    ..ComponentSpec::default()
                };
                if let Err(e) = latchkey.register_component(&importer, &bytes, &spec) {
                    tracing::warn!(file = %path.display(), error = %e, "not importing a registered component");
                }
            }
        }
    }
    for (name, manifest) in &saved.workflows {
        if let Err(e) = latchkey.register_workflow(&importer, name, manifest) {
            tracing::warn!(workflow = %name, error = %e, "not importing a registered workflow");
        }
    }
    std::fs::rename(&file, dir.join("registry.json.imported"))?;
    tracing::info!(dir = %dir.display(), "imported the registrations an earlier version kept here into the store");
    Ok(())
}
