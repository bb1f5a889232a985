//! Agent-written steps ("scripts"): JavaScript or TypeScript source an agent sends, built
//! here with the project's own JavaScript SDK toolchain and run like any step, under an
//! allowlist of exactly the keys it asked for. Off until an admin enables it; the admin's
//! policy (kept in the store, authenticated like registrations, so every host sharing the
//! store agrees) caps which keys any script may ask for.
//!
//! The build is the hazard: a bundler follows imports to files, so a script that imports
//! `/home/op/.latchkey/master.key` as text would carry the host's files into its output.
//! [`build`] bundles only the script and the SDK (every other import is refused), in a
//! private empty directory, with an empty environment, under a time limit.

pub(crate) mod build;
pub(crate) mod built;

use crate::secret::CredentialKey;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// What an admin allows agent-written scripts: whether they run at all, and the only keys
/// any of them may ask for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ScriptPolicy {
    /// Whether `run_script` runs scripts (off unless an admin turned it on).
    pub enabled: bool,
    /// The most a script may use: each script's own allowlist is the keys it asks for,
    /// every one of which must be here.
    pub max_keys: Vec<String>,
}

impl ScriptPolicy {
    /// The policy with its keys checked and normalised (sorted, no duplicates).
    pub fn checked(self) -> Result<Self, ScriptError> {
        let mut keys = self
            .max_keys
            .iter()
            .map(|k| {
                CredentialKey::new(k)
                    .map(|k| k.as_str().to_owned())
                    .map_err(|e| ScriptError::Policy(format!("max_keys: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        keys.sort();
        keys.dedup();
        Ok(ScriptPolicy {
            enabled: self.enabled,
            max_keys: keys,
        })
    }
}

/// A script to run.
#[derive(Debug, Clone)]
pub struct ScriptSpec {
    /// The step's JavaScript or TypeScript source: a module exporting `run`, normally
    /// `export const run = step((input) => ...)` with `step` from `latchkey-sdk`.
    pub source: String,
    /// The keys it may use: its allowlist, each within the admin's [`ScriptPolicy`].
    pub keys: Vec<String>,
    /// Its input (JSON).
    pub input: String,
}

/// How this host builds scripts.
#[derive(Debug, Clone)]
pub struct ScriptOptions {
    /// The JavaScript SDK's directory (`guest-sdk/js`, its dependencies installed by `npm
    /// ci`); `None`: this host builds no scripts.
    pub sdk: Option<PathBuf>,
    /// The longest one build may take before it is killed.
    pub build_timeout: Duration,
    /// The largest source, in bytes.
    pub max_source_bytes: usize,
    /// How many built scripts this host keeps loaded (each is a compiled JavaScript
    /// engine of tens of megabytes).
    pub max_cached: usize,
}

impl Default for ScriptOptions {
    fn default() -> Self {
        ScriptOptions {
            sdk: None,
            build_timeout: Duration::from_secs(120),
            max_source_bytes: 256 * 1024,
            max_cached: 8,
        }
    }
}

/// Why a script was not run. The messages say how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// No admin enabled scripts.
    #[error(
        "agent-written scripts are off on this platform; an admin turns them on with `latchkey scripts enable --max-keys KEY,...` (or PUT /v1/scripts)"
    )]
    Disabled,
    /// A key outside the admin's maximum allowlist.
    #[error(
        "the key {key} is not one scripts may use (allowed: {allowed}); an admin adds it with `latchkey scripts enable --max-keys ...`"
    )]
    KeyNotAllowed {
        /// The key asked for.
        key: String,
        /// The admin's list, joined.
        allowed: String,
    },
    /// A key that is not a valid key name.
    #[error("keys: {0}")]
    Key(#[from] crate::secret::KeyError),
    /// A bad policy.
    #[error("{0}")]
    Policy(String),
    /// This host has no toolchain to build with.
    #[error(
        "this host cannot build scripts: {0}; start it with --script-sdk DIR, DIR being the JavaScript SDK (guest-sdk/js) after `npm ci` in it"
    )]
    NoToolchain(String),
    /// The source is too large.
    #[error("the script is {size} bytes; at most {max} are built")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The build failed: the toolchain's own words (about the script, never the host).
    #[error("the script did not build: {0}")]
    Build(String),
    /// The build took too long and was killed.
    #[error("the script's build took longer than {0:?} and was stopped")]
    BuildTimeout(Duration),
    /// Another build holds this host's builder for longer than a build may take.
    #[error("another script is building on this host; try again shortly")]
    Busy,
    /// The build could not run at all (a directory, a process).
    #[error("building the script: {0}")]
    Io(#[source] std::io::Error),
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_is_checked_and_normalised_and_a_bad_key_is_named() {
        let p = ScriptPolicy {
            enabled: true,
            max_keys: vec!["B".into(), "A".into(), "B".into()],
        };
        assert_eq!(p.checked().unwrap().max_keys, ["A", "B"]);
        let bad = ScriptPolicy {
            enabled: true,
            max_keys: vec!["A".into(), "not a key".into()],
        };
        let e = bad.checked().unwrap_err().to_string();
        assert!(e.starts_with("max_keys:"), "{e}");
    }

    #[test]
    fn a_stored_policy_refuses_fields_it_does_not_know() {
        let e = serde_json::from_str::<ScriptPolicy>(r#"{"enabled":true,"max_keys":[],"keys":[]}"#)
            .unwrap_err();
        assert!(e.to_string().contains("unknown field `keys`"), "{e}");
    }
}
