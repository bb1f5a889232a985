//! OAuth2 credentials (`--kind oauth2`): the step uses the credential like a static key
//! (`secret(handle)` after `Bearer `) and the host injects a current access token, obtained
//! from the token endpoint with the stored client and refresh token, cached sealed until
//! shortly before it expires, refreshed once however many runs need it at the same time,
//! and a rotated refresh token stored before the access token is used. The step never gets
//! the access token, the refresh token or the client secret back, nor anything the token
//! endpoint wrote.
#![allow(clippy::unwrap_used)]

use latchkey_host::audit::{self, AuditEvent};
use latchkey_host::policy::{
    AddressPolicy, Binding, Grant, HostPattern, InjectLocation, TokenEndpoint,
};
use latchkey_host::sandbox::{Runtime, RuntimeConfig};
use latchkey_host::secret::{CredentialKey, SecretValue};
use latchkey_host::store::{
    Backend, CredentialKind, MasterKey, MemoryBackend, SecretSpec, SecretStore, StoreError,
};
use latchkey_tests::token_endpoint::{Failure, FakeProvider};
use latchkey_tests::upstream::encoded_forms;
use latchkey_tests::*;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const CLIENT_ID: &str = "latchkey-test-app";
const CLIENT_SECRET: &str = "cs/Zq+8wk!9Lm#2Vp$4Rt7Yx&3Hn";
const REFRESH: &str = "rt/0+9f8e7d6c5b4a39281706";

fn client_json(grant: Grant) -> String {
    match grant {
        Grant::RefreshToken => json!({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "refresh_token": REFRESH}),
        Grant::ClientCredentials => json!({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}),
    }
    .to_string()
}

fn spec(p: &FakeProvider, token_url: &str, grant: Grant) -> SecretSpec {
    SecretSpec {
        integration: "http".into(),
        binding: Binding::new(
            vec![HostPattern::parse(&format!("127.0.0.1:{}", p.port())).unwrap()],
            vec![InjectLocation::parse("header:authorization").unwrap()],
            true,
        )
        .unwrap(),
        allow_weak_value: false,
        quota: Default::default(),
        kind: CredentialKind::OAuth2,
        oauth: Some(TokenEndpoint::new(token_url, Some("read write".into()), grant).unwrap()),
    }
}

/// [`spec`] with a binding that may reach internal addresses (`p`'s API is on loopback).
fn internal_spec(p: &FakeProvider, token_url: &str) -> SecretSpec {
    let mut spec = spec(p, token_url, Grant::RefreshToken);
    spec.binding = latchkey_host::policy::BindingSpec {
        hosts: spec.binding.hosts.clone(),
        locations: spec.binding.locations.clone(),
        allow_http: true,
        allow_internal: true,
        ..Default::default()
    }
    .build()
    .unwrap();
    spec
}

/// A store holding `API`, an oauth2 client of `p` for `grant`, bound to `p`'s API.
fn setup(p: &FakeProvider, grant: Grant) -> TestStore {
    let s = TestStore::new();
    s.store
        .set(
            &workspace(),
            &CredentialKey::new("API").unwrap(),
            SecretValue::new(client_json(grant).into_bytes()).unwrap(),
            spec(p, &p.url("/token"), grant),
            "tester",
        )
        .unwrap();
    s
}

/// One fetch of `path` with `Authorization: Bearer <API>`.
fn bearer(p: &FakeProvider, path: &str) -> Value {
    json!({"action": "raw", "method": "GET", "url": p.url(path),
           "headers": [{"name": "authorization", "parts": [{"text": "Bearer "}, {"secret": "API"}]}]})
}

fn refreshes(p: &FakeProvider) -> usize {
    p.token_requests().len()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_upstream_receives_a_current_access_token_obtained_with_the_stored_client() {
    let p = FakeProvider::start(CLIENT_ID, CLIENT_SECRET, REFRESH);
    let s = setup(&p, Grant::RefreshToken);
    let rt = runtime(&s);
    let step = load(&rt, "probe");
    let out = run_ok(&rt, &step, bearer(&p, "/api/me")).await;
    assert_eq!(out["status"], 200, "{out}");
    assert_eq!(out["body"], r#"{"ok":true}"#);
    // One form POST, client authenticated with HTTP Basic, the stored refresh token sent.
    let reqs = p.token_requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].form["grant_type"], "refresh_token");
    assert_eq!(reqs[0].form["refresh_token"], REFRESH);
    assert_eq!(reqs[0].form["scope"], "read write");
    assert!(!reqs[0].form.contains_key("client_secret"));
    assert!(
        reqs[0]
            .authorization
            .as_deref()
            .unwrap()
            .starts_with("Basic ")
    );
    // A second run reuses the cached token: no new request.
    let out = run_ok(&rt, &step, bearer(&p, "/api/me")).await;
    assert_eq!(out["status"], 200, "{out}");
    assert_eq!(refreshes(&p), 1);
    // The cache is sealed: the access token is nowhere in the store's files in clear.
    let token = p.access_tokens().pop().unwrap();
    assert!(
        !dir_contains(s.dir.path(), token.as_bytes()),
        "access token stored in clear"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_use_outside_the_binding_is_refused_before_any_token_request() {
    let p = FakeProvider::start(CLIENT_ID, CLIENT_SECRET, REFRESH);
    let other = latchkey_tests::upstream::Upstream::start().await.unwrap();
    let s = setup(&p, Grant::RefreshToken);
    let rt = runtime(&s);
    let step = load(&rt, "probe");
    // Another destination, and the bound destination in a place the binding does not name:
    // a step must not be able to make the host spend (or rotate) refresh tokens at will.
    let elsewhere = json!({"action": "raw", "method": "GET", "url": other.url("/echo"),
        "headers": [{"name": "authorization", "parts": [{"text": "Bearer "}, {"secret": "API"}]}]});
    let wrong_place = json!({"action": "raw", "method": "GET", "url": p.url("/api/me"),
        "headers": [{"name": "x-token", "parts": [{"secret": "API"}]}]});
    for req in [elsewhere, wrong_place] {
        let out = run_ok(&rt, &step, req).await;
        assert!(out["error"].is_string(), "{out}");
    }
    assert_eq!(refreshes(&p), 0, "a refused use made a token request");
    assert_eq!(other.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_field_or_a_quota_that_refuses_the_use_makes_no_token_request() {
    let p = FakeProvider::start(CLIENT_ID, CLIENT_SECRET, REFRESH);
    // A 1 s token is used for half a second: after that, a use needs a refresh.
    p.set_expires_in(1);
    let s = TestStore::new();
    let mut spec = spec(&p, &p.url("/token"), Grant::RefreshToken);
    spec.binding = Binding::new(
        hosts(&[&format!("127.0.0.1:{}", p.port())]),
        locations(&["header:authorization", "body:json:/token"]),
        true,
    )
    .unwrap();
    spec.quota = latchkey_host::policy::Quota::new(None, Some(1)).unwrap();
    set_in_workspace(&s.store, "API", &client_json(Grant::RefreshToken), spec).unwrap();
    let rt = runtime(&s);
    let step = load(&rt, "probe");
    // The bound destination, but a body field the binding does not name.
    let wrong_field = json!({"action": "raw", "method": "POST", "url": p.url("/api/me"),
        "body_parts": [{"text": "{\"note\": \""}, {"secret": "API"}, {"text": "\"}"}]});
    let out = run_ok(&rt, &step, wrong_field).await;
    let err = out["error"].as_str().unwrap_or_else(|| panic!("{out}"));
    assert!(err.contains("may not be injected into"), "{err}");
    assert_eq!(
        refreshes(&p),
        0,
        "a use in a refused body field made a token request"
    );
    // The day's one request, with a token refreshed for it.
    let out = run_ok(&rt, &step, bearer(&p, "/api/me")).await;
    assert_eq!(out["status"], 200, "{out}");
    assert_eq!(refreshes(&p), 1);
    // Past the quota, with the token no longer usable: refused, and no refresh spent
    // (nor a refresh token rotated) for a request that never leaves.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let out = run_ok(&rt, &step, bearer(&p, "/api/me")).await;
    let err = out["error"].as_str().unwrap_or_else(|| panic!("{out}"));
    assert!(err.contains("quota"), "{err}");
    assert_eq!(
        refreshes(&p),
        1,
        "a use over its quota made a token request"
    );
    let meta = s
        .store
        .meta(&workspace(), &CredentialKey::new("API").unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(meta.version, 2, "a refused use rotated the refresh token");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_built_against_wit_0_1_0_gets_an_access_token_injected_too() {
    let p = FakeProvider::start(CLIENT_ID, CLIENT_SECRET, REFRESH);
    let s = setup(&p, Grant::RefreshToken);
    let rt = runtime(&s);
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/probe-wit-0.1.0.wasm"
    ))
    .unwrap();
    let step = rt.load(&bytes).unwrap();
    let out = run_ok(
        &rt,
        &step,
        json!({"action": "fetch", "url": p.url("/api/me"), "key": "API"}),
    )
    .await;
    assert_eq!(out["status"], 200, "{out}");
    assert_eq!(refreshes(&p), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn client_credentials_grant_sends_no_refresh_token() {
    let p = FakeProvider::start(CLIENT_ID, CLIENT_SECRET, REFRESH);
    let s = setup(&p, Grant::ClientCredentials);
    let rt = runtime(&s);
    let step = load(&rt, "probe");
    let out = run_ok(&rt, &step, bearer(&p, "/api/me")).await;
    assert_eq!(out["status"], 200, "{out}");
    let reqs = p.token_requests();
    assert_eq!(reqs[0].form["grant_type"], "client_credentials");
    assert!(!reqs[0].form.contains_key("refresh_token"));
}

#[tokio::test(flavor = "multi_thread")]
async fn no_token_secret_or_refresh_token_reaches_the_step_in_any_encoding() {
    let p = FakeProvider::start(CLIENT_ID, CLIENT_SECRET, REFRESH);
    let s = setup(&p, Grant::RefreshToken);
    let rt = runtime(&s);
    let step = load(&rt, "probe");
    let out = run_ok(&rt, &step, bearer(&p, "/api/leak")).await;
    assert_eq!(out["status"], 200, "{out}");
    let answer = out.to_string();
    assert_eq!(out["redacted"], true, "{answer}");
    let access = p.access_tokens().pop().unwrap();
    let refresh = p.refresh_token();
    // The refresh token was rotated (the old one is burned) and both are secrets.
    assert_ne!(refresh, REFRESH);
    for (what, v) in [
        ("access token", access.as_str()),
        ("rotated refresh token", refresh.as_str()),
        ("first refresh token", REFRESH),
        ("client secret", CLIENT_SECRET),
    ] {
        for (label, form) in encoded_forms(v) {
            if ["plain", "base64", "percent"].contains(&label) {
                assert!(
                    !answer.contains(&form),
                    "{what} came back {label}: {answer}"
                );
            }
        }
    }
    // Nor through the step's output or log: the output above is the scrubbed response.
    let (records, _) = audit::read_all(&s.store).unwrap();
    let trail = format!("{records:?}");
    for v in [access.as_str(), refresh.as_str(), REFRESH, CLIENT_SECRET] {
        assert!(!trail.contains(v), "a value is in the audit trail");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_token_is_refreshed_at_the_next_call() {
    let p = FakeProvider::start(CLIENT_ID, CLIENT_SECRET, REFRESH);
    // A 4 s token is used for 2 s (half its life, under the 60 s margin).
    p.set_expires_in(4);
    let s = setup(&p, Grant::RefreshToken);
    let rt = runtime(&s);
    let step = load(&rt, "probe");
    assert_eq!(
        run_ok(&rt, &step, bearer(&p, "/api/me")).await["status"],
        200
    );
    assert_eq!(
        run_ok(&rt, &step, bearer(&p, "/api/me")).await["status"],
        200
    );
    assert_eq!(refreshes(&p), 1, "a fresh token was refreshed");
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let out = run_ok(&rt, &step, bearer(&p, "/api/me")).await;
    assert_eq!(out["status"], 200, "{out}");
    assert_eq!(refreshes(&p), 2, "an expired token was not refreshed");
    // The second refresh spent the refresh token the first one rotated in.
    let reqs = p.token_requests();
    assert_ne!(reqs[1].form["refresh_token"], REFRESH);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_refresh_token_is_stored_as_a_new_version_and_used_next_time() {
    let p = FakeProvider::start(CLIENT_ID, CLIENT_SECRET, REFRESH);
    // A 1 s token is used for half a second: each call below refreshes.
    p.set_expires_in(1);
    let s = setup(&p, Grant::RefreshToken);
    let rt = runtime(&s);
    let step = load(&rt, "probe");
    for i in 0..3 {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
        let out = run_ok(&rt, &step, bearer(&p, "/api/me")).await;
        assert_eq!(out["status"], 200, "{out}");
    }
    let reqs = p.token_requests();
    assert_eq!(reqs.len(), 3);
    // Each refresh sent the refresh token the previous one issued: none was sent twice
    // (the fake would have answered invalid_grant).
    let sent: Vec<&str> = reqs
        .iter()
        .map(|r| r.form["refresh_token"].as_str())
        .collect();
    assert_eq!(sent[0], REFRESH);
    assert!(sent[1] != sent[0] && sent[2] != sent[1] && sent[2] != sent[0]);
    let meta = s
        .store
        .meta(&workspace(), &CredentialKey::new("API").unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(meta.version, 4, "three rotations stored");
    assert_eq!(meta.updated_by, latchkey_host::store::OAUTH_ACTOR);
    // Audited: each refresh (sending, then its outcome) and each stored rotation.
    let (records, _) = audit::read_all(&s.store).unwrap();
    let refresh_outcomes: Vec<&str> = records
        .iter()
        .filter(|r| r.event == AuditEvent::TokenRefresh && r.outcome != "sending")
        .map(|r| r.outcome.as_str())
        .collect();
    assert_eq!(refresh_outcomes.len(), 3, "{records:?}");
    assert!(
        refresh_outcomes[0].contains("rotated refresh token stored as version 2"),
        "{refresh_outcomes:?}"
    );
    let r = records
        .iter()
        .find(|r| r.event == AuditEvent::TokenRefresh)
        .unwrap();
    assert_eq!(
        r.destination.as_deref(),
        Some(format!("http://127.0.0.1:{}", p.port()).as_str())
    );
    assert_eq!(r.location.as_deref(), Some("scope read write"));
    let rotations = records
        .iter()
        .filter(|r| r.event == AuditEvent::SecretRotate)
        .count();
    assert_eq!(rotations, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refresh_cut_off_by_the_run_deadline_still_stores_its_rotated_refresh_token() {
    let p = FakeProvider::start(CLIENT_ID, CLIENT_SECRET, REFRESH);
    // The endpoint rotates the refresh token at once, but its answer takes 2 s; the run
    // has 1 s. The run gives up waiting; the refresh it started must not be lost, or the
    // credential is dead (the endpoint burned the refresh token the store still holds).
    p.set_answer_delay(Duration::from_secs(2));
    let s = setup(&p, Grant::RefreshToken);
    let limits = latchkey_host::sandbox::Limits {
        deadline: Duration::from_secs(1),
        ..Default::default()
    };
    let rt = runtime_with(&s, limits);
    let step = load(&rt, "probe");
    let cut_off = match run(&rt, &step, bearer(&p, "/api/me")).await {
        Ok(o) => o.output,
        Err(e) => e.to_string(),
    };
    assert_eq!(refreshes(&p), 1, "{cut_off}");
    assert!(
        !cut_off.contains("\"status\":200"),
        "the run got its answer: {cut_off}"
    );
    // The refresh completes on its own: the rotated refresh token is stored.
    let key = CredentialKey::new("API").unwrap();
    let stored = async {
        loop {
            let meta = s.store.meta(&workspace(), &key).unwrap().unwrap();
            if meta.version == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), stored)
        .await
        .expect("the rotated refresh token was never stored");
    // And the next run uses the token that refresh obtained, or refreshes with the
    // rotated refresh token: either way the credential works.
    p.set_answer_delay(Duration::ZERO);
    let out = run_ok(&rt, &step, bearer(&p, "/api/me")).await;
    assert_eq!(out["status"], 200, "{out}");
    assert!(
        p.token_requests()[1..]
            .iter()
            .all(|r| r.form["refresh_token"] != REFRESH),
        "the burned refresh token was sent again"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_cached_for_a_deleted_or_replaced_credential_is_never_used() {
    let p = FakeProvider::start(CLIENT_ID, CLIENT_SECRET, REFRESH);
    p.set_rotation(false);
    let s = setup(&p, Grant::RefreshToken);
    let rt = runtime(&s);
    let step = load(&rt, "probe");
    let key = CredentialKey::new("API").unwrap();
    assert_eq!(
        run_ok(&rt, &step, bearer(&p, "/api/me")).await["status"],
        200
    );
    assert_eq!(refreshes(&p), 1);
    // Replaced by the operator (a new version): the next call refreshes with the new one.
    let set_again = || {
        s.store
            .set(
                &workspace(),
                &key,
                SecretValue::new(client_json(Grant::RefreshToken).into_bytes()).unwrap(),
                spec(&p, &p.url("/token"), Grant::RefreshToken),
                "tester",
            )
            .unwrap()
    };
    assert_eq!(set_again().version, 2);
    assert_eq!(
        run_ok(&rt, &step, bearer(&p, "/api/me")).await["status"],
        200
    );
    assert_eq!(refreshes(&p), 2, "a token of the replaced version was used");
    // Deleted and stored again (version 1 once more): the old token is gone with it.
    s.store.delete(&workspace(), &key, "tester").unwrap();
    assert_eq!(set_again().version, 1);
    assert_eq!(
        run_ok(&rt, &step, bearer(&p, "/api/me")).await["status"],
        200
    );
    assert_eq!(
        refreshes(&p),
        3,
        "a token of the deleted credential was used"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_concurrent_runs_that_need_a_token_cause_one_refresh() {
    let p = FakeProvider::start(CLIENT_ID, CLIENT_SECRET, REFRESH);
    // Slow enough that every run asks while the first refresh is in flight.
    p.set_delay(Duration::from_millis(500));
    let s = setup(&p, Grant::RefreshToken);
    let rt = Arc::new(runtime(&s));
    let step = Arc::new(load(&rt, "probe"));
    let input = bearer(&p, "/api/me");
    let runs: Vec<_> = (0..50)
        .map(|_| {
            let (rt, step, input) = (rt.clone(), step.clone(), input.clone());
            tokio::spawn(async move { run_ok(&rt, &step, input).await })
        })
        .collect();
    for r in runs {
        let out = r.await.unwrap();
        assert_eq!(out["status"], 200, "{out}");
    }
    assert_eq!(
        refreshes(&p),
        1,
        "the refresh token was sent more than once"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_endpoint_failure_is_a_clear_error_naming_the_credential_and_status() {
    let p = FakeProvider::start(CLIENT_ID, CLIENT_SECRET, REFRESH);
    let s = setup(&p, Grant::RefreshToken);
    let rt = runtime(&s);
    let step = load(&rt, "probe");
    let origin = format!("http://127.0.0.1:{}", p.port());
    for (failure, want) in [
        (Failure::ServerError, "answered 500 (server_error)"),
        (Failure::NotJson, "answered with a body that is not JSON"),
        (Failure::InvalidGrant, "answered 400 (invalid_grant)"),
        (Failure::Huge, "answered with a body that is too large"),
    ] {
        p.fail_with(Some(failure));
        let out = run_ok(&rt, &step, bearer(&p, "/api/me")).await;
        let err = out["error"].as_str().unwrap_or_else(|| panic!("{out}"));
        assert!(err.contains("credential API"), "{err}");
        assert!(
            err.contains(&format!("token endpoint {origin} {want}")),
            "{err}"
        );
        // Neither a value nor the endpoint's own words.
        for leak in [CLIENT_SECRET, REFRESH, "database down", "<html>"] {
            assert!(!err.contains(leak), "{err}");
        }
    }
    // Audited as a failed refresh and a refused injection; the API was never called.
    let (records, _) = audit::read_all(&s.store).unwrap();
    assert!(
        records.iter().any(|r| r.event == AuditEvent::TokenRefresh
            && r.outcome.starts_with("failed: credential API"))
    );
    assert!(
        records
            .iter()
            .any(|r| r.event == AuditEvent::InjectDenied && r.key == "API")
    );
    assert!(!records.iter().any(|r| r.event == AuditEvent::Inject));
    // Unreachable: the port of a server that is gone.
    p.fail_with(None);
    let gone = FakeProvider::start(CLIENT_ID, CLIENT_SECRET, REFRESH);
    let dead = gone.url("/token");
    drop(gone);
    let s2 = TestStore::new();
    s2.store
        .set(
            &workspace(),
            &CredentialKey::new("API").unwrap(),
            SecretValue::new(client_json(Grant::RefreshToken).into_bytes()).unwrap(),
            spec(&p, &dead, Grant::RefreshToken),
            "tester",
        )
        .unwrap();
    let rt2 = runtime(&s2);
    let out = run_ok(&rt2, &load(&rt2, "probe"), bearer(&p, "/api/me")).await;
    let err = out["error"].as_str().unwrap_or_else(|| panic!("{out}"));
    assert!(
        err.contains("credential API: the token endpoint") && err.contains("could not be reached"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_endpoint_that_does_not_answer_in_time_is_a_clear_error() {
    let p = FakeProvider::start(CLIENT_ID, CLIENT_SECRET, REFRESH);
    p.set_delay(Duration::from_secs(4));
    let s = setup(&p, Grant::RefreshToken);
    let limits = latchkey_host::sandbox::Limits {
        request_timeout: Duration::from_secs(1),
        ..Default::default()
    };
    let rt = runtime_with(&s, limits);
    let step = load(&rt, "probe");
    let out = run_ok(&rt, &step, bearer(&p, "/api/me")).await;
    let err = out["error"].as_str().unwrap_or_else(|| panic!("{out}"));
    assert!(
        err.contains(&format!(
            "credential API: the token endpoint http://127.0.0.1:{} did not answer in time",
            p.port()
        )),
        "{err}"
    );
    // The lease was given back: the next call asks again at once, and gets a token.
    p.set_delay(Duration::ZERO);
    let out = run_ok(&rt, &step, bearer(&p, "/api/me")).await;
    assert_eq!(out["status"], 200, "{out}");
}

/// The error a bound call gets from a runtime that may reach public addresses only, when
/// the credential's token endpoint is `token_url`.
async fn error_on_public_only_runtime(p: &FakeProvider, token_url: &str) -> String {
    let s = TestStore::new();
    set_in_workspace(
        &s.store,
        "API",
        &client_json(Grant::RefreshToken),
        internal_spec(p, token_url),
    )
    .unwrap();
    let config = RuntimeConfig {
        address_policy: AddressPolicy::public_only(),
        pool_instances: 0,
        ..RuntimeConfig::default()
    };
    let rt = Runtime::new(config, s.store.clone()).unwrap();
    let out = run_ok(&rt, &load(&rt, "probe"), bearer(p, "/api/me")).await;
    out["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{out}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_endpoint_outside_the_address_policy_is_refused() {
    let p = FakeProvider::start(CLIENT_ID, CLIENT_SECRET, REFRESH);
    // The credential's binding lets its value reach the (loopback) API, so the request
    // passes its destination check; the token endpoint is checked by the runtime's policy
    // alone: public addresses only, so the loopback token endpoint may not be reached,
    // whatever the credential's binding says.
    let err = error_on_public_only_runtime(&p, &p.url("/token")).await;
    assert!(err.starts_with("Error::Denied("), "{err}");
    assert!(
        err.contains("credential API: the token endpoint")
            && err.contains("is refused: it is a loopback address"),
        "{err}"
    );
    assert_eq!(refreshes(&p), 0, "the token endpoint was called");
    // And `localhost`, which the resolver answers, is refused the same way.
    let by_name = format!("http://localhost:{}/token", p.port());
    let err = error_on_public_only_runtime(&p, &by_name).await;
    assert!(err.contains("is refused"), "{err}");
    assert_eq!(refreshes(&p), 0);
}

#[test]
fn bad_oauth2_credentials_are_refused_at_set_and_leave_the_store_unchanged() {
    let p = FakeProvider::start(CLIENT_ID, CLIENT_SECRET, REFRESH);
    let s = TestStore::new();
    let key = CredentialKey::new("API").unwrap();
    let set = |value: &str, spec: SecretSpec| {
        s.store.set(
            &workspace(),
            &key,
            SecretValue::new(value.as_bytes().to_vec()).unwrap(),
            spec,
            "tester",
        )
    };
    let good = spec(&p, &p.url("/token"), Grant::RefreshToken);
    let refused = [
        set(
            r#"{"client_id":"a","client_secret":"cs/Zq+8wk!9Lm#2Vp$4Rt7Yx"}"#,
            good.clone(),
        ),
        set("not json", good.clone()),
        set(
            r#"{"client_id":"a","client_secret":"x","refresh_token":"y"}"#,
            good.clone(),
        ),
        set(
            &client_json(Grant::RefreshToken),
            SecretSpec {
                oauth: None,
                ..good.clone()
            },
        ),
        set(
            &client_json(Grant::RefreshToken),
            SecretSpec {
                kind: CredentialKind::Static,
                ..good.clone()
            },
        ),
    ];
    for r in refused {
        let e = r.err().unwrap();
        assert!(
            matches!(e, StoreError::OAuth2(_) | StoreError::WeakValue(_)),
            "{e}"
        );
        assert!(!e.to_string().contains("cs/Zq"), "{e}");
    }
    assert!(s.store.meta(&workspace(), &key).unwrap().is_none());
    // An endpoint over plain http to a public host is refused where it is built.
    assert!(
        TokenEndpoint::new("http://auth.example.com/token", None, Grant::RefreshToken).is_err()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lease_left_by_a_host_that_died_is_taken_over_when_it_expires() {
    let p = FakeProvider::start(CLIENT_ID, CLIENT_SECRET, REFRESH);
    let memory = Arc::new(MemoryBackend::default());
    let master = MasterKey::generate().unwrap();
    let store =
        Arc::new(SecretStore::init_with(Box::new(memory.clone()), "memory", &master).unwrap());
    store
        .set(
            &workspace(),
            &CredentialKey::new("API").unwrap(),
            SecretValue::new(client_json(Grant::RefreshToken).into_bytes()).unwrap(),
            spec(&p, &p.url("/token"), Grant::RefreshToken),
            "tester",
        )
        .unwrap();
    let config = RuntimeConfig {
        address_policy: AddressPolicy::loopback(),
        pool_instances: 0,
        ..RuntimeConfig::default()
    };
    let rt = Runtime::new(config, store.clone()).unwrap();
    let step = load(&rt, "probe");
    assert_eq!(
        run_ok(&rt, &step, bearer(&p, "/api/me")).await["status"],
        200
    );
    // Another host "died" holding the lease for 1.5 s more, and no token is cached.
    let records = memory.scan("oauth", b"").unwrap();
    let lease = records
        .iter()
        .find(|(id, _)| id.starts_with(b"lease\0"))
        .unwrap();
    let token = records
        .iter()
        .find(|(id, _)| id.starts_with(b"token\0"))
        .unwrap();
    memory.delete("oauth", &token.0).unwrap();
    let until = latchkey_host::store::unix_millis() + 1500;
    let dead = json!({"holder": "a-host-that-died", "until_ms": until}).to_string();
    memory.put("oauth", &lease.0, dead.as_bytes()).unwrap();
    let started = std::time::Instant::now();
    let out = run_ok(&rt, &step, bearer(&p, "/api/me")).await;
    assert_eq!(out["status"], 200, "{out}");
    // It waited for the lease, then refreshed once.
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "the lease was ignored"
    );
    assert_eq!(refreshes(&p), 2);
}

fn dir_contains(dir: &std::path::Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().flatten().any(|e| {
        let path = e.path();
        if path.is_dir() {
            dir_contains(&path, needle)
        } else {
            std::fs::read(&path)
                .map(|b| b.windows(needle.len()).any(|w| w == needle))
                .unwrap_or(false)
        }
    })
}
