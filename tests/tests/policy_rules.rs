//! The credential rules of `docs/requirements.md`, one test per rule, through the library:
//! a real sealed store, the `probe` guest, a loopback fake upstream that records what
//! actually arrived. `docs/requirements.md` maps each rule to its test.
//!
//! Every test gives each candidate secret a distinct value and asserts which value reached
//! the upstream, so an implementation that resolves the wrong tier, caches per workflow or
//! per run, or ignores pins, allowlists or integration types fails here.
#![allow(clippy::unwrap_used)]

use latchkey_host::policy::{Binding, HostPattern, InjectLocation};
use latchkey_host::resolve::{self, ResolveError, RunContext, Tier};
use latchkey_host::sandbox::{CredentialUse, Runtime, Step};
use latchkey_host::secret::{CredentialKey, SecretValue};
use latchkey_host::store::{Scope, SecretSpec};
use latchkey_tests::upstream::Upstream;
use latchkey_tests::{TestStore, load, runtime};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

fn scope(s: &str) -> Scope {
    Scope::parse(s).unwrap()
}

fn key(k: &str) -> CredentialKey {
    CredentialKey::new(k).unwrap()
}

/// A store, a runtime, the probe guest and a fake upstream.
struct Fx {
    ts: TestStore,
    up: Upstream,
    rt: Runtime,
    probe: Step,
}

impl Fx {
    async fn new() -> Fx {
        let ts = TestStore::new();
        let up = Upstream::start().await.unwrap();
        let rt = runtime(&ts);
        let probe = load(&rt, "probe");
        Fx { ts, up, rt, probe }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.up.port())
    }

    /// Stores `value` at `scope` (integration `http`), bound to the fake's Authorization.
    fn put(&self, scope_text: &str, k: &str, value: &str) {
        self.put_typed(scope_text, k, value, "http");
    }

    fn put_typed(&self, scope_text: &str, k: &str, value: &str, integration: &str) {
        self.ts.put_typed(
            &scope(scope_text),
            k,
            value,
            &[&self.host()],
            &["header:authorization"],
            integration,
        );
    }

    /// Runs the probe in `ctx`: it gets `k` and fetches `/echo` with it as a bearer token.
    /// Ok: the token the upstream received and the credentials the run reports. Err: the
    /// run's error, after checking that nothing reached the upstream.
    async fn call(
        &self,
        ctx: &RunContext,
        k: &str,
    ) -> Result<(String, Vec<CredentialUse>), String> {
        self.up.clear();
        let input = json!({ "action": "fetch", "url": self.up.url("/echo"), "key": k });
        match self.rt.run(&self.probe, ctx, &input.to_string()).await {
            Ok(out) => {
                let reqs = self.up.requests();
                assert_eq!(reqs.len(), 1, "one request per call");
                let auth = reqs[0].header("authorization").unwrap();
                let token = auth.strip_prefix("Bearer ").unwrap().to_owned();
                Ok((token, out.credentials))
            }
            Err(f) => {
                assert_eq!(self.up.request_count(), 0, "a refused step sent nothing");
                Err(f.to_string())
            }
        }
    }

    async fn token(&self, ctx: &RunContext, k: &str) -> String {
        match self.call(ctx, k).await {
            Ok((t, _)) => t,
            Err(e) => panic!("{k} did not resolve for step {}: {e}", ctx.step.name),
        }
    }
}

/// Workflow `wf` of workspace `default`, run by alice, built by bob; one step `step`.
fn ctx(workflow: &str, step: &str) -> RunContext {
    let mut c = RunContext::single_step("default", workflow, "alice");
    c.builder = Some("bob".into());
    c.step.name = step.into();
    c
}

fn missing(e: &str, k: &str) {
    assert!(
        e.contains(&format!("credential {k} is not available")),
        "expected a missing credential {k}: {e}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn scopes_and_tiers_default_order() {
    let f = Fx::new().await;
    // The same key in all six scopes, each with its own value.
    let tiers = [
        (Tier::UserWorkflow, "user:alice@default/wf"),
        (Tier::User, "user:alice"),
        (Tier::Workflow, "workflow:default/wf"),
        (Tier::Workspace, "workspace:default"),
        (Tier::Builder, "builder:bob@default/wf"),
        (Tier::Platform, "platform"),
    ];
    // Inserted in reverse so that insertion order cannot pass for resolution order.
    for (tier, s) in tiers.iter().rev() {
        f.put(s, "API_KEY", &format!("v-{tier}"));
    }
    // Noise that must never be picked: other users, builders, workflows, workspaces.
    for s in [
        "user:carol",
        "user:carol@default/wf",
        "workflow:default/other",
        "workspace:elsewhere",
        "builder:dave@default/wf",
    ] {
        f.put(s, "API_KEY", &format!("noise-{s}"));
    }
    let c = ctx("wf", "s");
    // Each tier shadows the next: delete the winner and the next one takes over.
    for (tier, s) in tiers {
        let (token, used) = f.call(&c, "API_KEY").await.unwrap();
        assert_eq!(token, format!("v-{tier}"), "expected tier {tier}");
        assert_eq!(used.len(), 1);
        assert_eq!((used[0].tier, used[0].scope.as_str()), (tier, s));
        f.ts.store
            .delete(&scope(s), &key("API_KEY"), "admin")
            .unwrap();
    }
    missing(&f.call(&c, "API_KEY").await.unwrap_err(), "API_KEY");

    // A workflow may declare another order: here the platform's key before the user's.
    f.put("user:alice", "API_KEY", "v-user");
    f.put("platform", "API_KEY", "v-platform");
    let mut custom = ctx("wf", "s");
    custom.order = vec![Tier::Platform, Tier::User];
    assert_eq!(f.token(&custom, "API_KEY").await, "v-platform");
    // And a tier left out of the order is never consulted.
    custom.order = vec![Tier::Workspace];
    missing(&f.call(&custom, "API_KEY").await.unwrap_err(), "API_KEY");
}

#[tokio::test(flavor = "multi_thread")]
async fn workflow_scope_overrides_workspace() {
    let f = Fx::new().await;
    f.put("workspace:default", "API_KEY", "workspace-value");
    f.put("workflow:default/report", "API_KEY", "report-value");
    // The workflow with its own value uses it…
    assert_eq!(
        f.token(&ctx("report", "s"), "API_KEY").await,
        "report-value"
    );
    // …other workflows keep using the workspace's.
    assert_eq!(
        f.token(&ctx("digest", "s"), "API_KEY").await,
        "workspace-value"
    );
    // Same workflow name in another workspace: not overridden there.
    let mut other_ws = ctx("report", "s");
    other_ws.workspace = "elsewhere".into();
    missing(&f.call(&other_ws, "API_KEY").await.unwrap_err(), "API_KEY");
}

#[tokio::test(flavor = "multi_thread")]
async fn per_step_pins_two_steps_same_provider_different_tiers() {
    let f = Fx::new().await;
    // Per-step resolution: Node A (OpenAI) uses your key, Node B (OpenAI) the builder's, Node C (Slack)
    // your key.
    f.put("user:alice", "OPENAI_KEY", "sk-alice");
    f.put("builder:bob@default/agent", "OPENAI_KEY", "sk-bob");
    f.put("platform", "OPENAI_KEY", "sk-platform");
    f.put("user:alice", "SLACK_TOKEN", "xoxb-alice");
    f.put("workspace:default", "SLACK_TOKEN", "xoxb-workspace");

    let run_id = resolve::new_run_id();
    let step = |name: &str, pins: &[(&str, &[Tier])]| {
        let mut c = ctx("agent", name);
        c.run_id = run_id.clone();
        c.step.pins = pins
            .iter()
            .map(|(k, t)| (key(k), t.to_vec()))
            .collect::<BTreeMap<_, _>>();
        c
    };
    let a = step("node-a", &[]);
    let b = step("node-b", &[("OPENAI_KEY", &[Tier::Builder])]);
    let c = step("node-c", &[]);

    let (ta, ua) = f.call(&a, "OPENAI_KEY").await.unwrap();
    let (tb, ub) = f.call(&b, "OPENAI_KEY").await.unwrap();
    let (tc, uc) = f.call(&c, "SLACK_TOKEN").await.unwrap();
    assert_eq!((ta.as_str(), ua[0].tier), ("sk-alice", Tier::User));
    assert_eq!((tb.as_str(), ub[0].tier), ("sk-bob", Tier::Builder));
    assert_eq!((tc.as_str(), uc[0].tier), ("xoxb-alice", Tier::User));
    // Same run, same provider, different credentials: and running A again after B still
    // gets the user's key (nothing is cached per run or per workflow).
    assert_eq!(f.token(&a, "OPENAI_KEY").await, "sk-alice");

    // A pin is exclusive: pinned to the builder, the step does not fall back to the user's
    // or the platform's key when the builder has none.
    f.ts.store
        .delete(
            &scope("builder:bob@default/agent"),
            &key("OPENAI_KEY"),
            "admin",
        )
        .unwrap();
    missing(&f.call(&b, "OPENAI_KEY").await.unwrap_err(), "OPENAI_KEY");
    // A pin to several tiers tries them in its order.
    let b2 = step(
        "node-b",
        &[("OPENAI_KEY", &[Tier::Builder, Tier::Platform])],
    );
    assert_eq!(f.token(&b2, "OPENAI_KEY").await, "sk-platform");
}

#[tokio::test(flavor = "multi_thread")]
async fn isolation_workflow_a_secret_never_resolves_for_b() {
    let f = Fx::new().await;
    // Agent A's keys in every per-workflow scope, including alice's own key for A.
    f.put("workflow:default/agent-a", "OPENAI_KEY", "a-workflow");
    f.put("user:alice@default/agent-a", "OPENAI_KEY", "a-alice");
    f.put("builder:bob@default/agent-a", "OPENAI_KEY", "a-bob");
    assert_eq!(f.token(&ctx("agent-a", "s"), "OPENAI_KEY").await, "a-alice");

    // Same user, same builder, same provider, workflow B: nothing.
    let b = ctx("agent-b", "s");
    let e = f.call(&b, "OPENAI_KEY").await.unwrap_err();
    missing(&e, "OPENAI_KEY");
    // The operator's reason lists only B's scopes.
    let why = resolve::resolve(&f.ts.store, &b, &key("OPENAI_KEY")).unwrap_err();
    assert!(matches!(why, ResolveError::Missing { .. }));
    let why = why.to_string();
    assert!(why.contains("user:alice@default/agent-b"), "{why}");
    assert!(!why.contains("agent-a"), "{why}");

    // A workflow named like A in another workspace is another workflow.
    let mut a_elsewhere = ctx("agent-a", "s");
    a_elsewhere.workspace = "other".into();
    missing(
        &f.call(&a_elsewhere, "OPENAI_KEY").await.unwrap_err(),
        "OPENAI_KEY",
    );

    // Shared scopes are shared: a workspace key serves B, and A keeps its own.
    f.put("workspace:default", "OPENAI_KEY", "shared");
    assert_eq!(f.token(&b, "OPENAI_KEY").await, "shared");
    assert_eq!(f.token(&ctx("agent-a", "s"), "OPENAI_KEY").await, "a-alice");
}

#[tokio::test(flavor = "multi_thread")]
async fn allowlist_missing_credential_even_if_exists() {
    let f = Fx::new().await;
    f.put("workspace:default", "SLACK_TOKEN", "xoxb-1");
    f.put("workspace:default", "STRIPE_KEY", "sk-live-1");
    f.put("user:alice", "STRIPE_KEY", "sk-live-alice");

    // Step allowlist.
    let mut c = ctx("wf", "s");
    c.step.allowlist = Some(BTreeSet::from([key("SLACK_TOKEN")]));
    assert_eq!(f.token(&c, "SLACK_TOKEN").await, "xoxb-1");
    missing(&f.call(&c, "STRIPE_KEY").await.unwrap_err(), "STRIPE_KEY");
    let why = resolve::resolve(&f.ts.store, &c, &key("STRIPE_KEY"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        why,
        "missing_credential: STRIPE_KEY is not on the step allowlist"
    );

    // Workflow allowlist: applies to every step, whatever the step's own list says.
    let mut c = ctx("wf", "s");
    c.workflow_allowlist = Some(BTreeSet::from([key("SLACK_TOKEN")]));
    missing(&f.call(&c, "STRIPE_KEY").await.unwrap_err(), "STRIPE_KEY");
    c.step.allowlist = Some(BTreeSet::from([key("STRIPE_KEY"), key("SLACK_TOKEN")]));
    missing(&f.call(&c, "STRIPE_KEY").await.unwrap_err(), "STRIPE_KEY");
    let why = resolve::resolve(&f.ts.store, &c, &key("STRIPE_KEY"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        why,
        "missing_credential: STRIPE_KEY is not on the workflow allowlist"
    );
    // A pin does not get around the allowlist.
    c.step.pins.insert(key("STRIPE_KEY"), vec![Tier::User]);
    missing(&f.call(&c, "STRIPE_KEY").await.unwrap_err(), "STRIPE_KEY");

    // Refused at get(): the audit trail says so, without a value.
    let (records, _) = latchkey_host::audit::read_all(&f.ts.store).unwrap();
    let denied: Vec<_> = records
        .iter()
        .filter(|r| {
            r.key == "STRIPE_KEY" && r.event == latchkey_host::audit::AuditEvent::ResolveDenied
        })
        .collect();
    // Storing it was recorded too, and no record holds the value.
    assert!(records.iter().all(|r| !r.outcome.contains("sk-live")));
    assert!(!denied.is_empty());
    assert!(
        denied
            .iter()
            .all(|r| r.outcome.contains("allowlist") && !r.outcome.contains("sk-live"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn allowlist_with_workflow_scope_then_workspace_fallback() {
    let f = Fx::new().await;
    // Allowlist with scopes: the allowlist says which keys; workflow scope, then workspace, says
    // which values.
    f.put("workspace:default", "API_KEY", "ws-api");
    f.put("workflow:default/wf", "API_KEY", "wf-api");
    f.put("workspace:default", "DB_URL", "ws-db");
    f.put("workflow:default/wf", "EXTRA", "wf-extra");
    f.put("workspace:default", "EXTRA", "ws-extra");
    let mut c = ctx("wf", "s");
    c.workflow_allowlist = Some(BTreeSet::from([key("API_KEY"), key("DB_URL")]));
    assert_eq!(f.token(&c, "API_KEY").await, "wf-api");
    assert_eq!(f.token(&c, "DB_URL").await, "ws-db");
    missing(&f.call(&c, "EXTRA").await.unwrap_err(), "EXTRA");
    // The fallback is live: remove the workflow's value and the workspace's is used.
    f.ts.store
        .delete(&scope("workflow:default/wf"), &key("API_KEY"), "admin")
        .unwrap();
    assert_eq!(f.token(&c, "API_KEY").await, "ws-api");
    // Another workflow with the same allowlist never sees wf's values.
    let mut other = ctx("other", "s");
    other.workflow_allowlist = c.workflow_allowlist.clone();
    f.put("workflow:default/wf", "API_KEY", "wf-api-2");
    assert_eq!(f.token(&other, "API_KEY").await, "ws-api");
}

#[tokio::test(flavor = "multi_thread")]
async fn integration_type_binding() {
    let f = Fx::new().await;
    f.put_typed("workspace:default", "SLACK_TOKEN", "xoxb-slack", "slack");
    f.put_typed("workspace:default", "SENDGRID_KEY", "SG.key", "sendgrid");
    // alice has a SLACK_TOKEN too, but stored as a plain HTTP bearer token: a step that
    // declares only `slack` must skip it rather than fail or use it.
    f.put_typed("user:alice", "SLACK_TOKEN", "xoxb-alice-http", "http");

    let step = |integrations: &[&str]| {
        let mut c = ctx("wf", "s");
        c.step.integrations = integrations.iter().map(|s| s.to_string()).collect();
        c
    };
    let http = step(&["http"]);
    let slack = step(&["slack"]);
    let sendgrid = step(&["sendgrid"]);

    assert_eq!(f.token(&slack, "SLACK_TOKEN").await, "xoxb-slack");
    assert_eq!(f.token(&http, "SLACK_TOKEN").await, "xoxb-alice-http");
    assert_eq!(f.token(&sendgrid, "SENDGRID_KEY").await, "SG.key");
    missing(
        &f.call(&slack, "SENDGRID_KEY").await.unwrap_err(),
        "SENDGRID_KEY",
    );
    missing(
        &f.call(&http, "SENDGRID_KEY").await.unwrap_err(),
        "SENDGRID_KEY",
    );
    missing(
        &f.call(&sendgrid, "SLACK_TOKEN").await.unwrap_err(),
        "SLACK_TOKEN",
    );
    // The reason names the type the step did not declare.
    let why = resolve::resolve(&f.ts.store, &slack, &key("SENDGRID_KEY"))
        .unwrap_err()
        .to_string();
    assert!(
        why.contains("integration sendgrid not declared by the step"),
        "{why}"
    );
    // Declaring both types: the default order applies again (alice's key first).
    assert_eq!(
        f.token(&step(&["http", "slack"]), "SLACK_TOKEN").await,
        "xoxb-alice-http"
    );
}

/// Runs the probe's `fetch_twice` against `/slow` (so the first call is still in flight
/// ~`ms` later) while `during` changes the store after `after`.
async fn fetch_twice_slow(
    f: &Fx,
    c: &RunContext,
    k: &str,
    during: impl FnOnce(),
) -> Result<String, String> {
    let input = json!({
        "action": "fetch_twice",
        "url": f.up.url("/slow?ms=800"),
        "key": k,
    });
    let input = input.to_string();
    let run = f.rt.run(&f.probe, c, &input);
    let change = async {
        // Wait until the first request has arrived, then change the store while it is
        // in flight.
        for _ in 0..200 {
            if f.up.request_count() > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(f.up.request_count(), 1, "first call in flight");
        during();
    };
    let (result, ()) = tokio::join!(run, change);
    result.map(|o| o.output).map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn rotation_between_steps_next_step_sees_new_value() {
    let f = Fx::new().await;
    f.put("workspace:default", "API_KEY", "value-1");
    let run_id = resolve::new_run_id();
    let mut step1 = ctx("wf", "first");
    step1.run_id = run_id.clone();
    let mut step2 = ctx("wf", "second");
    step2.run_id = run_id;

    // Step 1 makes two calls with one handle; the key is rotated while the first is in
    // flight. The call in flight keeps value-1, the next call of the same step uses
    // value-2: resolution happens per call, not per handle, step or run.
    f.up.clear();
    fetch_twice_slow(&f, &step1, "API_KEY", || {
        f.ts.rotate(&scope("workspace:default"), "API_KEY", "value-2")
    })
    .await
    .unwrap();
    let sent: Vec<String> =
        f.up.requests()
            .iter()
            .map(|r| r.header("authorization").unwrap().to_owned())
            .collect();
    assert_eq!(sent, ["Bearer value-1", "Bearer value-2"]);

    // Step 2 of the same run starts after the rotation: it sees the new value.
    f.ts.rotate(&scope("workspace:default"), "API_KEY", "value-3");
    let (token, used) = f.call(&step2, "API_KEY").await.unwrap();
    assert_eq!(token, "value-3");
    assert_eq!(used[0].tier, Tier::Workspace);
}

#[tokio::test(flavor = "multi_thread")]
async fn deleted_secret_fails_next_call() {
    let f = Fx::new().await;
    f.put("workspace:default", "API_KEY", "doomed");
    let c = ctx("wf", "s");
    f.up.clear();
    let err = fetch_twice_slow(&f, &c, "API_KEY", || {
        f.ts.store
            .delete(&scope("workspace:default"), &key("API_KEY"), "admin")
            .unwrap();
    })
    .await
    .unwrap_err();
    // The call in flight completed; the next one was refused before anything was sent.
    assert_eq!(f.up.request_count(), 1);
    assert!(
        err.contains("credential API_KEY is no longer available to this step"),
        "{err}"
    );
    // A later step (or run) cannot even get a handle.
    missing(&f.call(&c, "API_KEY").await.unwrap_err(), "API_KEY");
    // A lower tier does take over once the deleted one is gone: deletion is not a tombstone.
    f.put("platform", "API_KEY", "fallback");
    assert_eq!(f.token(&c, "API_KEY").await, "fallback");
}

#[tokio::test(flavor = "multi_thread")]
async fn member_removal_deletes_created_secrets_and_workflow_fails_missing_credential() {
    let f = Fx::new().await;
    let binding = || {
        Binding::new(
            vec![HostPattern::parse(&f.host()).unwrap()],
            vec![InjectLocation::parse("header:authorization").unwrap()],
            true,
        )
        .unwrap()
    };
    let set = |s: &str, k: &str, v: &str, actor: &str| {
        f.ts.store
            .set(
                &scope(s),
                &key(k),
                SecretValue::new(v.as_bytes().to_vec()).unwrap(),
                SecretSpec {
                    integration: "http".into(),
                    binding: binding(),
                    allow_weak_value: true,
                    quota: Default::default(),
                    kind: Default::default(),
                    oauth: None,
                },
                actor,
            )
            .unwrap();
    };
    // carol created secrets in several scopes; admin created others, and carol later
    // rotated one of admin's (she updated it, she did not create it).
    set("workspace:default", "API_KEY", "carol-ws", "carol");
    set("user:carol", "API_KEY", "carol-own", "carol");
    set(
        "builder:carol@default/wf",
        "API_KEY",
        "carol-builder",
        "carol",
    );
    set("platform", "API_KEY", "admin-platform", "admin");
    set("workspace:default", "OTHER_KEY", "admin-other", "admin");
    f.ts.store
        .rotate(
            &scope("workspace:default"),
            &key("OTHER_KEY"),
            SecretValue::new(b"admin-other-2".to_vec()).unwrap(),
            true,
            "carol",
        )
        .unwrap();

    let mut c = ctx("wf", "s");
    c.order = vec![Tier::Workspace]; // the workflow relies on the workspace key
    assert_eq!(f.token(&c, "API_KEY").await, "carol-ws");

    let deleted = f.ts.store.delete_member_secrets("carol", "admin").unwrap();
    let mut what: Vec<String> = deleted
        .iter()
        .map(|m| format!("{} {}", m.scope, m.key))
        .collect();
    what.sort();
    assert_eq!(
        what,
        [
            "builder:carol@default/wf API_KEY",
            "user:carol API_KEY",
            "workspace:default API_KEY",
        ]
    );
    // The workflow now fails with missing_credential until reconfigured…
    missing(&f.call(&c, "API_KEY").await.unwrap_err(), "API_KEY");
    // …and admin's secrets are untouched.
    assert_eq!(f.token(&c, "OTHER_KEY").await, "admin-other-2");
    let left: Vec<String> =
        f.ts.store
            .list(None)
            .unwrap()
            .into_iter()
            .map(|m| m.unwrap().created_by)
            .collect();
    assert_eq!(left, ["admin", "admin"]);
    // Reconfigured: works again.
    set("workspace:default", "API_KEY", "admin-ws", "admin");
    assert_eq!(f.token(&c, "API_KEY").await, "admin-ws");
}
