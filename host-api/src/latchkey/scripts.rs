//! Agent-written scripts through the façade: the admin's policy, and a script's run, which
//! is a run like any other (its record in the store, the same pool and limits) of a
//! component built from the script's source, under an allowlist of exactly the keys it
//! asked for.

use super::platform::Work;
use super::{Error, Latchkey};
use crate::audit::AuditEvent;
use crate::principal::{Action, Principal};
use crate::registry::Registry;
use crate::resolve::RunContext;
use crate::runs::{RunKind, RunRecord};
use crate::sandbox::Step;
use crate::scripts::{ScriptError, ScriptPolicy, ScriptSpec, build, built::BuiltScripts};
use crate::secret::CredentialKey;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::sync::Arc;

/// The workflow name a script's run resolves keys as: keys scoped to another workflow
/// never reach a script.
pub(super) const SCRIPT_WORKFLOW: &str = "script";

impl Latchkey {
    /// What the platform allows agent-written scripts. Anyone who may run steps may read
    /// it (an agent learns which keys it may ask for); it names keys, never values.
    pub fn script_policy(&self, by: &Principal) -> Result<ScriptPolicy, Error> {
        self.allow(by, Action::Run)?;
        Ok(Registry::of(self.store()).script_policy()?)
    }

    /// Sets what the platform allows agent-written scripts (an admin's decision, like a
    /// registration: scripts are code that runs with the store's keys). Every host that
    /// shares the store follows it from its next script.
    pub fn set_script_policy(
        &self,
        by: &Principal,
        policy: ScriptPolicy,
    ) -> Result<ScriptPolicy, Error> {
        self.allow(by, Action::ManageWorkflows)?;
        let policy = policy.checked()?;
        Registry::of(self.store()).put_script_policy(&policy)?;
        let outcome = match (policy.enabled, policy.max_keys.is_empty()) {
            (false, _) => "ok: disabled".to_owned(),
            (true, true) => "ok: enabled, keyless".to_owned(),
            (true, false) => format!("ok: enabled, max_keys {}", policy.max_keys.join(", ")),
        };
        self.audit_change(AuditEvent::ScriptPolicy, by, "", &outcome)?;
        // Whether `run_script` is a tool changed.
        self.registrations_changed();
        Ok(policy)
    }

    /// Builds the script (or takes this host's build of the same source) and runs it as
    /// `by`, resolving only the keys it asked for, each of which the admin's policy must
    /// allow. The run is recorded like any run (target `script:<hash>`).
    pub async fn run_script(
        self: &Arc<Self>,
        by: &Principal,
        spec: ScriptSpec,
    ) -> Result<RunRecord, Error> {
        self.allow(by, Action::Run)?;
        let policy = {
            let this = self.clone();
            tokio::task::spawn_blocking(move || Registry::of(this.store()).script_policy())
                .await
                .map_err(|e| Error::Invalid(format!("reading the script policy failed: {e}")))??
        };
        if !policy.enabled {
            return Err(ScriptError::Disabled.into());
        }
        let mut keys = BTreeSet::new();
        for k in &spec.keys {
            let key = CredentialKey::new(k).map_err(ScriptError::Key)?;
            if !policy.max_keys.iter().any(|m| m == key.as_str()) {
                return Err(ScriptError::KeyNotAllowed {
                    key: key.as_str().to_owned(),
                    allowed: if policy.max_keys.is_empty() {
                        "none".into()
                    } else {
                        policy.max_keys.join(", ")
                    },
                }
                .into());
            }
            keys.insert(key);
        }
        let options = &self.options.scripts;
        if spec.source.len() > options.max_source_bytes {
            return Err(ScriptError::TooLarge {
                size: spec.source.len(),
                max: options.max_source_bytes,
            }
            .into());
        }
        self.has_room()?;
        let hash = hex::encode(Sha256::digest(spec.source.as_bytes()));
        let step = self.script_step(&hash, spec.source).await?;
        let mut ctx = RunContext::single_step("default", SCRIPT_WORKFLOW, by.name());
        ctx.step.allowlist = Some(keys);
        let id = ctx.run_id.clone();
        let work = Work::Step {
            step,
            ctx: Box::new(ctx),
        };
        let target = format!("script:{}", &hash[..16]);
        let started = self.launch(by, work, id, target, RunKind::Component, spec.input)?;
        Ok(started.finished().await)
    }

    /// The loaded script of `source`: this host's, or built (one build at a time) and
    /// loaded through the compile cache.
    async fn script_step(self: &Arc<Self>, hash: &str, source: String) -> Result<Step, Error> {
        let built = self.built_scripts();
        if let Some(step) = built.get(hash) {
            return Ok(step);
        }
        let options = self.options.scripts.clone();
        let sdk = options
            .sdk
            .clone()
            .ok_or_else(|| ScriptError::NoToolchain("no JavaScript SDK was configured".into()))?;
        build::check_toolchain(&sdk)?;
        let _queued = built.queue().ok_or(ScriptError::Busy)?;
        // Waiting for another build counts against this one's time.
        let _turn = tokio::time::timeout(options.build_timeout, built.builder().acquire())
            .await
            .map_err(|_| ScriptError::Busy)?
            .map_err(|_| ScriptError::Busy)?;
        // Built by the call this one waited for?
        if let Some(step) = built.get(hash) {
            return Ok(step);
        }
        let this = self.clone();
        let step = tokio::task::spawn_blocking(move || -> Result<Step, Error> {
            let bytes = build::build(&sdk, &source, options.build_timeout)?;
            this.load(&bytes)
        })
        .await
        .map_err(|e| Error::Invalid(format!("building the script failed: {e}")))??;
        built.insert(hash.to_owned(), step.clone());
        Ok(step)
    }

    fn built_scripts(&self) -> &BuiltScripts {
        self.scripts
            .get_or_init(|| BuiltScripts::new(self.options.scripts.max_cached))
    }
}
