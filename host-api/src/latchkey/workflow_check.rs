//! `check`: what a run of a workflow would load and resolve, without running a step or
//! decrypting a value.

use super::{Error, Latchkey};
use crate::resolve::{self, ResolveError, Resolved, Tier};
use crate::secret::CredentialKey;
use crate::workflow::{StepSpec, Workflow};
use std::path::PathBuf;

/// What `check` found for one declared key.
#[derive(Debug)]
pub struct KeyCheck {
    /// The key.
    pub key: CredentialKey,
    /// The tiers it is pinned to, if pinned.
    pub pinned: Option<Vec<Tier>>,
    /// Where it would come from, or why it would be missing.
    pub resolution: Result<Resolved, ResolveError>,
}

/// What `check` found for one step.
#[derive(Debug)]
pub struct StepCheck {
    /// The step's name.
    pub name: String,
    /// Its component file.
    pub component: PathBuf,
    /// Its integration types.
    pub integrations: Vec<String>,
    /// Whether the component loads.
    pub load: Result<(), Error>,
    /// The keys it declares (allowlist and pins); `None` when it has no allowlist, so
    /// there is nothing to check.
    pub keys: Option<Vec<KeyCheck>>,
}

/// What `check` found.
#[derive(Debug)]
pub struct CheckReport {
    /// The user checked for.
    pub user: String,
    /// Every step, in order.
    pub steps: Vec<StepCheck>,
}

impl CheckReport {
    /// Components that do not load plus keys that do not resolve.
    pub fn problems(&self) -> usize {
        self.steps
            .iter()
            .map(|s| {
                usize::from(s.load.is_err())
                    + s.keys.as_ref().map_or(0, |keys| {
                        keys.iter().filter(|k| k.resolution.is_err()).count()
                    })
            })
            .sum()
    }
}

pub(crate) fn check(lk: &Latchkey, wf: &Workflow, user: &str) -> CheckReport {
    check_with(lk, wf, user, |spec| lk.load_file(&spec.component).map(drop))
}

/// [`check`] with each step's component loaded by `load` (a registered workflow's steps
/// name digests in the store, not files).
pub(crate) fn check_with(
    lk: &Latchkey,
    wf: &Workflow,
    user: &str,
    load: impl Fn(&StepSpec) -> Result<(), Error>,
) -> CheckReport {
    let steps = wf
        .steps
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let ctx = wf.context(i, user, "check");
            let keys = spec.declared_keys(wf.allow.as_ref()).map(|keys| {
                keys.into_iter()
                    .map(|key| KeyCheck {
                        pinned: spec.policy.pins.get(&key).cloned(),
                        resolution: resolve::resolve(lk.store(), &ctx, &key),
                        key,
                    })
                    .collect()
            });
            StepCheck {
                name: spec.policy.name.clone(),
                component: spec.component.clone(),
                integrations: spec.policy.integrations.iter().cloned().collect(),
                load: load(spec).map_err(|e| Error::Step {
                    step: spec.policy.name.clone(),
                    source: Box::new(e),
                }),
                keys,
            }
        })
        .collect();
    CheckReport {
        user: user.to_owned(),
        steps,
    }
}
