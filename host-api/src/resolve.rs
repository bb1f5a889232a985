//! Resolution: which stored secret a step gets for a key.
//!
//! Keys come in three tiers (the user's keys > the builder's keys > the platform's keys) and
//! two scopes (a workflow-scoped credential overrides the workspace's); `docs/requirements.md`
//! puts them in one order, walked until the first hit:
//!
//! 1. the user's own key for this workflow   ([`Tier::UserWorkflow`])
//! 2. the user's personal key                ([`Tier::User`])
//! 3. the workflow's key                     ([`Tier::Workflow`])
//! 4. the workspace's key                    ([`Tier::Workspace`])
//! 5. the builder's key for this workflow    ([`Tier::Builder`])
//! 6. the platform's key                     ([`Tier::Platform`])
//!
//! A workflow may declare another order; a step may pin a key to tiers (per-step
//! choice: "Node B uses the builder's key"). Before any lookup, the workflow's and the
//! step's allowlists are checked (a key not on the allowlist fails with
//! `missing_credential` even if it exists). A secret whose integration type the step does
//! not declare is invisible to it (integration types). Only metadata is read here; the value is
//! decrypted at injection time, by the HTTP host, on every call.

use crate::secret::{CredentialKey, SecretValue};
use crate::store::{Scope, SecretMeta, SecretStore, StoreError};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A place in the resolution order.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Tier {
    /// The invoking user's key for this workflow.
    UserWorkflow,
    /// The invoking user's personal key.
    User,
    /// The workflow's key.
    Workflow,
    /// The workspace's key.
    Workspace,
    /// The workflow builder's key for this workflow.
    Builder,
    /// The platform's fallback key.
    Platform,
}

/// DESIGN.md's default order.
pub const DEFAULT_ORDER: [Tier; 6] = [
    Tier::UserWorkflow,
    Tier::User,
    Tier::Workflow,
    Tier::Workspace,
    Tier::Builder,
    Tier::Platform,
];

impl Tier {
    /// The tier's name as written in manifests and reports.
    pub fn name(self) -> &'static str {
        match self {
            Tier::UserWorkflow => "user-workflow",
            Tier::User => "user",
            Tier::Workflow => "workflow",
            Tier::Workspace => "workspace",
            Tier::Builder => "builder",
            Tier::Platform => "platform",
        }
    }

    /// Parses a tier name.
    pub fn parse(s: &str) -> Option<Tier> {
        DEFAULT_ORDER.into_iter().find(|t| t.name() == s)
    }

    /// Parses a pin as written in a manifest: a tier name, or `user` meaning both of the
    /// user's tiers ("your key").
    pub fn parse_pin(s: &str) -> Option<Vec<Tier>> {
        match s {
            "user" | "yours" => Some(vec![Tier::UserWorkflow, Tier::User]),
            other => Tier::parse(other).map(|t| vec![t]),
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What one step may resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepPolicy {
    /// Step name (for reports and the audit trail).
    pub name: String,
    /// Integration types the step declares; only secrets of these types resolve.
    pub integrations: BTreeSet<String>,
    /// If set, only these keys resolve for this step.
    pub allowlist: Option<BTreeSet<CredentialKey>>,
    /// Keys pinned to specific tiers, tried in the given order instead of the workflow's.
    pub pins: BTreeMap<CredentialKey, Vec<Tier>>,
}

/// Who runs what: everything resolution needs to know about a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunContext {
    /// Identifies the run in the audit trail.
    pub run_id: String,
    /// Workspace of the workflow.
    pub workspace: String,
    /// Workflow name.
    pub workflow: String,
    /// The invoking user.
    pub user: String,
    /// The workflow's builder, if it has one.
    pub builder: Option<String>,
    /// Resolution order for this workflow.
    pub order: Vec<Tier>,
    /// The workflow's allowlist, if it declares one.
    pub workflow_allowlist: Option<BTreeSet<CredentialKey>>,
    /// The step being run.
    pub step: StepPolicy,
}

impl RunContext {
    /// A one-step run of workflow `workflow` in `workspace` by `user`: default order, no
    /// allowlist, integration type `http`.
    pub fn single_step(workspace: &str, workflow: &str, user: &str) -> Self {
        RunContext {
            run_id: new_run_id(),
            workspace: workspace.to_owned(),
            workflow: workflow.to_owned(),
            user: user.to_owned(),
            builder: None,
            order: DEFAULT_ORDER.to_vec(),
            workflow_allowlist: None,
            step: StepPolicy {
                name: workflow.to_owned(),
                integrations: BTreeSet::from(["http".to_owned()]),
                allowlist: None,
                pins: BTreeMap::new(),
            },
        }
    }

    /// The scope a tier stands for in this run; `None` for the builder tier of a workflow
    /// without a builder.
    pub fn scope_for(&self, tier: Tier) -> Option<Scope> {
        let (ws, wf) = (self.workspace.clone(), self.workflow.clone());
        Some(match tier {
            Tier::UserWorkflow => Scope::UserWorkflow {
                user: self.user.clone(),
                workspace: ws,
                workflow: wf,
            },
            Tier::User => Scope::User {
                user: self.user.clone(),
            },
            Tier::Workflow => Scope::Workflow {
                workspace: ws,
                workflow: wf,
            },
            Tier::Workspace => Scope::Workspace { workspace: ws },
            Tier::Builder => Scope::BuilderWorkflow {
                builder: self.builder.clone()?,
                workspace: ws,
                workflow: wf,
            },
            Tier::Platform => Scope::Platform,
        })
    }
}

/// A fresh run id: time and randomness, unique enough for an audit trail.
pub fn new_run_id() -> String {
    let mut r = [0u8; 4];
    let _ = getrandom::fill(&mut r);
    format!("run-{}-{}", crate::store::unix_millis(), hex::encode(r))
}

/// The secret a key resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The tier that supplied it.
    pub tier: Tier,
    /// Its metadata (scope, binding, integration, version).
    pub meta: SecretMeta,
}

/// Why a key did not resolve. The guest only ever sees "missing credential"; the reason
/// is for the operator (`latchkey check`, the audit trail).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// No visible secret with this key in any tier tried.
    #[error(
        "missing_credential: no secret {key} is available to step {step} (looked in: {looked})"
    )]
    Missing {
        /// The key.
        key: String,
        /// The step.
        step: String,
        /// Tiers and scopes tried, and secrets skipped for their integration type.
        looked: String,
    },
    /// Not on the workflow's or step's allowlist.
    #[error("missing_credential: {key} is not on the {which} allowlist")]
    NotAllowed {
        /// The key.
        key: String,
        /// `workflow` or `step`.
        which: &'static str,
    },
    /// The store failed or a record is damaged. Resolution stops rather than falling
    /// through to a lower tier: a damaged user key must not silently become the platform's.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Resolves `key` for the step in `ctx` (metadata only, no decryption).
pub fn resolve(
    store: &SecretStore,
    ctx: &RunContext,
    key: &CredentialKey,
) -> Result<Resolved, ResolveError> {
    check_allowlists(ctx, key)?;
    find(store, ctx, key).map(|(resolved, _)| resolved)
}

/// The workflow's and the step's allowlists, checked before any read.
fn check_allowlists(ctx: &RunContext, key: &CredentialKey) -> Result<(), ResolveError> {
    if let Some(list) = &ctx.workflow_allowlist
        && !list.contains(key)
    {
        return Err(ResolveError::NotAllowed {
            key: key.to_string(),
            which: "workflow",
        });
    }
    if let Some(list) = &ctx.step.allowlist
        && !list.contains(key)
    {
        return Err(ResolveError::NotAllowed {
            key: key.to_string(),
            which: "step",
        });
    }
    Ok(())
}

/// What one tier gave while resolving: kept cheap, and spelled out only if the key is
/// missing.
enum Looked {
    NoBuilder(Tier),
    Absent(Scope),
    Undeclared(Scope, String),
}

/// The tier walk of [`resolve`]: the first candidate record whose integration the step
/// declares, with its stored bytes (what [`resolve_value`] decrypts). The tiers' records
/// are read through [`SecretStore::candidates`]: one round trip for all of them on a
/// remote store.
fn find(
    store: &SecretStore,
    ctx: &RunContext,
    key: &CredentialKey,
) -> Result<(Resolved, Vec<u8>), ResolveError> {
    let order = ctx.step.pins.get(key).unwrap_or(&ctx.order);
    let tiers: Vec<(Tier, Option<Scope>)> = order
        .iter()
        .map(|&tier| (tier, ctx.scope_for(tier)))
        .collect();
    let scopes: Vec<Scope> = tiers.iter().filter_map(|(_, s)| s.clone()).collect();
    let mut candidates = store.candidates(&scopes, key)?;
    let mut looked = Vec::new();
    let mut at = 0;
    for (tier, scope) in tiers {
        let Some(scope) = scope else {
            looked.push(Looked::NoBuilder(tier));
            continue;
        };
        let read = candidates.read(at)?;
        at += 1;
        match read {
            Some((bytes, meta)) if ctx.step.integrations.contains(&meta.integration) => {
                return Ok((Resolved { tier, meta }, bytes));
            }
            Some((_, meta)) => looked.push(Looked::Undeclared(scope, meta.integration)),
            None => looked.push(Looked::Absent(scope)),
        }
    }
    let looked: Vec<String> = looked
        .into_iter()
        .map(|l| match l {
            Looked::NoBuilder(tier) => format!("{tier} (no builder)"),
            Looked::Absent(scope) => scope.to_string(),
            Looked::Undeclared(scope, integration) => {
                format!("{scope} (integration {integration} not declared by the step)")
            }
        })
        .collect();
    Err(ResolveError::Missing {
        key: key.to_string(),
        step: ctx.step.name.clone(),
        looked: looked.join(", "),
    })
}

/// Resolves and decrypts, for injection. The record read is the one resolution found; if
/// it was deleted in between, that is reported as missing.
pub(crate) fn resolve_value(
    store: &SecretStore,
    ctx: &RunContext,
    key: &CredentialKey,
) -> Result<(Resolved, SecretValue), ResolveError> {
    // One read per tier: the record that resolved is the one decrypted, so a rotation
    // between the two cannot pair one version's metadata with another's value.
    check_allowlists(ctx, key)?;
    let (resolved, bytes) = find(store, ctx, key)?;
    let value = store.open_read(&resolved.meta.scope, key, &bytes)?;
    Ok((resolved, value))
}

/// [`resolve_value`] for a key that resolved to tier `at` at its `credentials.get` in
/// this run: that tier's record is read first, afresh (so a rotation since the get is what
/// is decrypted), and used if it is still there and of an integration the step declares,
/// without reading the tiers above it again. A handle names the secret its get resolved
/// to: a key created in a higher tier after the get serves the run's next get. A record
/// deleted since the get (or moved out of the step's integrations) walks every tier again.
pub(crate) fn resolve_value_at(
    store: &SecretStore,
    ctx: &RunContext,
    key: &CredentialKey,
    at: Option<Tier>,
) -> Result<(Resolved, SecretValue), ResolveError> {
    if let Some(tier) = at
        && let Some(scope) = ctx.scope_for(tier)
    {
        check_allowlists(ctx, key)?;
        if let Some((bytes, meta)) = store.read(&scope, key)?
            && ctx.step.integrations.contains(&meta.integration)
        {
            let value = store.open_read(&meta.scope, key, &bytes)?;
            return Ok((Resolved { tier, meta }, value));
        }
    }
    resolve_value(store, ctx, key)
}

/// The values the resolved secret had before its recent rotations (within the store's
/// grace period), each with the binding it was sent under: for scrubbing only, never
/// injected.
pub(crate) fn retired_values(
    store: &SecretStore,
    resolved: &Resolved,
) -> Result<Vec<(SecretMeta, SecretValue)>, ResolveError> {
    Ok(store.retired(&resolved.meta)?)
}

/// Resolution and decryption exactly as injection performs them ([`resolve`], then the
/// store's crate-private decryption), for the benchmarks in `bench/`. The decrypted value
/// is dropped (and zeroized) inside; only the metadata comes out, so this reveals nothing
/// [`resolve`] does not. Not part of the supported API.
#[cfg(feature = "testing")]
pub fn resolve_and_decrypt_for_bench(
    store: &SecretStore,
    ctx: &RunContext,
    key: &CredentialKey,
) -> Result<Resolved, ResolveError> {
    resolve_value(store, ctx, key).map(|(resolved, value)| {
        std::hint::black_box(&value);
        resolved
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::policy::{BindingSpec, HostPattern, InjectLocation};
    use crate::store::{MasterKey, MemoryBackend, SecretSpec};

    fn store() -> SecretStore {
        let master = MasterKey::generate().unwrap();
        SecretStore::init_with(Box::new(MemoryBackend::default()), "mem", &master).unwrap()
    }

    fn key(k: &str) -> CredentialKey {
        CredentialKey::new(k).unwrap()
    }

    /// Stores `k` in `scope` with integration `integration`.
    fn put(s: &SecretStore, scope: &str, k: &str, integration: &str) {
        let binding = BindingSpec {
            hosts: vec![HostPattern::parse("api.example.com").unwrap()],
            locations: vec![InjectLocation::parse("header:authorization").unwrap()],
            ..BindingSpec::default()
        }
        .build()
        .unwrap();
        let spec = SecretSpec {
            integration: integration.into(),
            binding,
            allow_weak_value: true,
            quota: Default::default(),
            kind: Default::default(),
            oauth: None,
        };
        let value = SecretValue::new(format!("v-{scope}").into_bytes()).unwrap();
        s.set(&Scope::parse(scope).unwrap(), &key(k), value, spec, "t")
            .unwrap();
    }

    fn ctx() -> RunContext {
        let mut c = RunContext::single_step("acme", "digest", "alice");
        c.builder = Some("bob".into());
        c
    }

    /// Where `k` resolves from, or the error text.
    fn from(s: &SecretStore, c: &RunContext, k: &str) -> Result<String, String> {
        resolve(s, c, &key(k))
            .map(|r| format!("{} {}", r.tier, r.meta.scope))
            .map_err(|e| e.to_string())
    }

    const EVERY_SCOPE: [&str; 6] = [
        "user:alice@acme/digest",
        "user:alice",
        "workflow:acme/digest",
        "workspace:acme",
        "builder:bob@acme/digest",
        "platform",
    ];

    #[test]
    fn the_first_tier_holding_the_key_wins_in_the_default_order() {
        let s = store();
        let c = ctx();
        // Store from the last tier up; after each, that tier is the one that resolves.
        for (i, scope) in EVERY_SCOPE.iter().enumerate().rev() {
            put(&s, scope, "K", "http");
            assert_eq!(
                from(&s, &c, "K").unwrap(),
                format!("{} {scope}", DEFAULT_ORDER[i]),
            );
        }
    }

    #[test]
    fn the_user_tiers_are_the_invoking_users_own() {
        let s = store();
        put(&s, "user:mallory", "K", "http");
        put(&s, "user:mallory@acme/digest", "K", "http");
        put(&s, "platform", "K", "http");
        assert_eq!(from(&s, &ctx(), "K").unwrap(), "platform platform");
        let mut as_mallory = ctx();
        as_mallory.user = "mallory".into();
        assert_eq!(
            from(&s, &as_mallory, "K").unwrap(),
            "user-workflow user:mallory@acme/digest"
        );
    }

    #[test]
    fn a_pin_restricts_a_key_to_its_tiers_without_falling_back() {
        let s = store();
        put(&s, "user:alice", "K", "http");
        put(&s, "platform", "K", "http");
        let mut c = ctx();
        c.step.pins.insert(key("K"), vec![Tier::Builder]);
        let e = from(&s, &c, "K").unwrap_err();
        assert!(e.contains("missing_credential"), "{e}");
        assert!(e.contains("builder:bob@acme/digest"), "{e}");
        assert!(!e.contains("platform"), "a pin must not fall back: {e}");
        put(&s, "builder:bob@acme/digest", "K", "http");
        assert_eq!(
            from(&s, &c, "K").unwrap(),
            "builder builder:bob@acme/digest"
        );
        // Without a builder, the builder tier has nothing to look in.
        c.builder = None;
        assert!(from(&s, &c, "K").unwrap_err().contains("(no builder)"));
    }

    #[test]
    fn a_key_off_either_allowlist_is_missing_even_if_stored() {
        let s = store();
        put(&s, "workspace:acme", "K", "http");
        let mut c = ctx();
        c.workflow_allowlist = Some(BTreeSet::from([key("OTHER")]));
        assert_eq!(
            from(&s, &c, "K").unwrap_err(),
            "missing_credential: K is not on the workflow allowlist"
        );
        c.workflow_allowlist = None;
        c.step.allowlist = Some(BTreeSet::from([key("OTHER")]));
        assert_eq!(
            from(&s, &c, "K").unwrap_err(),
            "missing_credential: K is not on the step allowlist"
        );
        c.step.allowlist = Some(BTreeSet::from([key("K")]));
        assert_eq!(from(&s, &c, "K").unwrap(), "workspace workspace:acme");
    }

    #[test]
    fn a_secret_of_an_undeclared_integration_is_invisible_and_the_next_tier_serves() {
        let s = store();
        put(&s, "user:alice", "K", "slack");
        put(&s, "workspace:acme", "K", "http");
        let c = ctx();
        assert_eq!(from(&s, &c, "K").unwrap(), "workspace workspace:acme");
        let mut slack = ctx();
        slack.step.integrations = BTreeSet::from(["slack".to_owned()]);
        assert_eq!(from(&s, &slack, "K").unwrap(), "user user:alice");
    }

    #[test]
    fn a_missing_key_names_the_key_the_step_and_every_place_looked() {
        let s = store();
        put(&s, "workspace:acme", "K", "slack");
        let e = from(&s, &ctx(), "K").unwrap_err();
        assert_eq!(
            e,
            "missing_credential: no secret K is available to step digest (looked in: \
             user:alice@acme/digest, user:alice, workflow:acme/digest, workspace:acme \
             (integration slack not declared by the step), builder:bob@acme/digest, platform)"
        );
    }

    #[test]
    fn a_custom_order_is_followed() {
        let s = store();
        put(&s, "user:alice", "K", "http");
        put(&s, "platform", "K", "http");
        let mut c = ctx();
        c.order = vec![Tier::Platform, Tier::User];
        assert_eq!(from(&s, &c, "K").unwrap(), "platform platform");
    }
}
