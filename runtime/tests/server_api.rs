//! `latchkey serve`, as a real process on 127.0.0.1 port 0: every endpoint against every
//! kind of caller, values that never come back out, rotation seen by runs in flight, and
//! bad input answered precisely with nothing stored.
#![allow(clippy::unwrap_used)]

mod harness;

use base64::Engine as _;
use harness::server::{Server, store_with_admin};
use latchkey_tests::upstream::Upstream;
use reqwest::StatusCode;
use reqwest::blocking::{Client, RequestBuilder, Response};
use serde_json::{Value, json};
use std::sync::Arc;

const PLAIN: &str = "tok-plain-5d1e9a7c3b2f4086";
const SEALED: &str = "tok-sealed-8c2a6e0f4d1b9375";
const ROTATED: &str = "tok-rotated-1f7b3d9e5a2c6048";

fn token(s: &Server, admin: &str, name: &str, role: &str) -> (String, String) {
    let r = s.json(
        "POST",
        "/v1/tokens",
        admin,
        json!({"name": name, "role": role}),
    );
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().unwrap();
    (
        v["token"].as_str().unwrap().to_owned(),
        v["meta"]["id"].as_str().unwrap().to_owned(),
    )
}

fn binding(up: &Upstream) -> Value {
    json!({"hosts": [format!("127.0.0.1:{}", up.port())], "inject": ["header:authorization"], "allow_http": true})
}

fn put_secret(s: &Server, admin: &str, key: &str, value: &str, up: &Upstream) -> Response {
    s.json(
        "PUT",
        &format!("/v1/secrets/{key}?scope=workspace:default"),
        admin,
        json!({"value": value, "binding": binding(up)}),
    )
}

fn register_probe(s: &Server, admin: &str) -> StatusCode {
    let wasm = std::fs::read(latchkey_tests::guest("probe")).unwrap();
    s.req("POST", "/v1/components?name=probe", Some(admin))
        .header("content-type", "application/wasm")
        .body(wasm)
        .send()
        .unwrap()
        .status()
}

fn run_probe(s: &Server, token: &str, input: Value) -> Value {
    let r = s.json(
        "POST",
        "/v1/runs",
        token,
        json!({"component": "probe", "input": input, "wait": true}),
    );
    assert_eq!(r.status(), StatusCode::OK);
    r.json().unwrap()
}

/// Who calls, in the order the matrix tries them.
const CALLERS: [&str; 6] = [
    "no token",
    "malformed",
    "revoked",
    "runner",
    "member",
    "admin",
];

#[test]
fn an_expired_token_is_refused_like_an_unknown_one_and_a_zero_lifetime_is_a_400() {
    let (cli, admin) = store_with_admin();
    let s = Server::start(&cli, &[]);
    let r = s.json(
        "POST",
        "/v1/tokens",
        &admin,
        json!({"name": "brief", "role": "runner", "expires_in_secs": 1}),
    );
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().unwrap();
    let brief = v["token"].as_str().unwrap().to_owned();
    assert!(v["meta"]["expires_at_ms"].as_u64().is_some(), "{v}");
    let whoami = |t: &str| s.req("GET", "/v1/whoami", Some(t)).send().unwrap();
    assert_eq!(whoami(&brief).status(), StatusCode::OK);
    std::thread::sleep(std::time::Duration::from_millis(1300));
    let expired = whoami(&brief);
    assert_eq!(expired.status(), StatusCode::UNAUTHORIZED);
    let unknown = whoami(&format!("lk_{}", "A".repeat(43)));
    assert_eq!(
        expired.json::<Value>().unwrap(),
        unknown.json::<Value>().unwrap(),
        "an expired token must not be told apart from an unknown one"
    );
    let r = s.json(
        "POST",
        "/v1/tokens",
        &admin,
        json!({"name": "never", "role": "runner", "expires_in_secs": 0}),
    );
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let listed: Value = s.get("/v1/tokens", &admin).json().unwrap();
    assert!(
        !listed.to_string().contains("\"never\""),
        "a refused token was stored: {listed}"
    );
}

#[test]
fn every_endpoint_answers_every_caller_as_its_role_allows() {
    let (cli, admin) = store_with_admin();
    let up = Upstream::start_blocking().unwrap();
    let s = Server::start(&cli, &[]);
    let (runner, _) = token(&s, &admin, "ci", "runner");
    let (member, _) = token(&s, &admin, "bob", "member");
    let (revoked, revoked_id) = token(&s, &admin, "gone", "member");
    assert_eq!(
        s.req("DELETE", &format!("/v1/tokens/{revoked_id}"), Some(&admin))
            .send()
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(register_probe(&s, &admin), StatusCode::CREATED);
    for k in ["K", "K_DEL"] {
        assert!(put_secret(&s, &admin, k, PLAIN, &up).status().is_success());
    }
    let manifest = "name = \"wf\"\n[[step]]\nname = \"a\"\ncomponent = \"probe\"\n";
    assert_eq!(
        s.req("PUT", "/v1/workflows/wf", Some(&admin))
            .body(manifest)
            .send()
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let admin_run = run_probe(&s, &admin, json!({"action": "echo"}))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, throwaway) = token(&s, &admin, "throwaway", "runner");
    let wasm = std::fs::read(latchkey_tests::guest("noop")).unwrap();

    let put = json!({"value": ROTATED, "binding": binding(&up)});
    let rotate = json!({"value": ROTATED});
    let run = json!({"component": "probe", "input": {"action": "echo"}, "wait": true});
    // (method, path, JSON body, expected for runner, member, admin). Admin goes last, so
    // that what it deletes was there for the others to be refused.
    type Row<'a> = (&'a str, String, Option<Value>, [u16; 3]);
    let rows: Vec<Row> = vec![
        ("GET", "/v1/whoami".into(), None, [200, 200, 200]),
        ("GET", "/v1/secrets".into(), None, [403, 200, 200]),
        (
            "GET",
            "/v1/secrets/K?scope=workspace:default".into(),
            None,
            [403, 200, 200],
        ),
        ("GET", "/v1/secrets/MISSING".into(), None, [403, 404, 404]),
        (
            "PUT",
            "/v1/secrets/NEW".into(),
            Some(put.clone()),
            [403, 403, 201],
        ),
        (
            "POST",
            "/v1/secrets/K/rotate".into(),
            Some(rotate),
            [403, 403, 200],
        ),
        ("DELETE", "/v1/secrets/K_DEL".into(), None, [403, 403, 200]),
        (
            "DELETE",
            "/v1/secrets/MISSING".into(),
            None,
            [403, 403, 404],
        ),
        (
            "POST",
            "/v1/tokens".into(),
            Some(json!({"name": "x", "role": "runner"})),
            [403, 403, 201],
        ),
        ("GET", "/v1/tokens".into(), None, [403, 403, 200]),
        (
            "DELETE",
            format!("/v1/tokens/{throwaway}"),
            None,
            [403, 403, 200],
        ),
        ("DELETE", "/v1/members/ghost".into(), None, [403, 403, 200]),
        ("GET", "/v1/audit".into(), None, [403, 200, 200]),
        (
            "POST",
            "/v1/components?name=noop".into(),
            None,
            [403, 403, 201],
        ),
        ("GET", "/v1/components".into(), None, [200, 200, 200]),
        ("PUT", "/v1/workflows/wf".into(), None, [403, 403, 200]),
        ("GET", "/v1/workflows".into(), None, [200, 200, 200]),
        (
            "POST",
            "/v1/workflows/wf/check".into(),
            None,
            [403, 200, 200],
        ),
        ("POST", "/v1/runs".into(), Some(run), [200, 200, 200]),
        (
            "POST",
            "/v1/runs".into(),
            Some(json!({"component": "probe", "input": {}, "integrations": ["aws"], "wait": true})),
            [403, 403, 200],
        ),
        (
            "POST",
            "/v1/runs".into(),
            Some(json!({"component": "probe", "input": {}, "builder": "root", "wait": true})),
            [403, 403, 200],
        ),
        ("GET", "/v1/runs".into(), None, [200, 200, 200]),
        ("GET", "/v1/scripts".into(), None, [200, 200, 200]),
        (
            "PUT",
            "/v1/scripts".into(),
            Some(json!({"enabled": true, "max_keys": ["K"]})),
            [403, 403, 200],
        ),
        (
            "GET",
            format!("/v1/runs/{admin_run}"),
            None,
            [404, 404, 200],
        ),
        (
            "GET",
            format!("/v1/runs/{admin_run}/audit"),
            None,
            [403, 200, 200],
        ),
    ];
    let tokens = [
        None,
        Some("Bearer-less nonsense"),
        Some(revoked.as_str()),
        Some(runner.as_str()),
        Some(member.as_str()),
        Some(admin.as_str()),
    ];
    let mut table = String::from(
        "| endpoint | no token | malformed | revoked | runner | member | admin |\n|---|---|---|---|---|---|---|\n",
    );
    let mut wrong = Vec::new();
    for (method, path, body, expect) in &rows {
        let mut line = format!("| `{method} {path}` |");
        for (i, tok) in tokens.iter().enumerate() {
            let mut r = s.req(method, path, *tok);
            r = match (path.as_str(), body) {
                // Refused callers send a token body: a server that answers before reading
                // an upload closes the connection, which a large body would see as a
                // broken pipe instead of the answer.
                ("/v1/components?name=noop", _) => r
                    .header("content-type", "application/wasm")
                    .body(if i == 5 {
                        wasm.clone()
                    } else {
                        b"\0asm".to_vec()
                    }),
                ("/v1/workflows/wf", _) => r.body(manifest),
                (_, Some(b)) => r.json(b),
                (_, None) => r,
            };
            let resp = r.send().unwrap();
            let got = resp.status().as_u16();
            let want = if i < 3 { 401 } else { expect[i - 3] };
            if got != want {
                wrong.push(format!(
                    "{method} {path} as {}: {got}, expected {want}",
                    CALLERS[i]
                ));
            }
            if !resp.status().is_success() {
                let body: Value = resp.json().unwrap_or(Value::Null);
                if body["error"].as_str().is_none() || body["message"].as_str().is_none() {
                    wrong.push(format!(
                        "{method} {path} as {}: error body {body}",
                        CALLERS[i]
                    ));
                }
            }
            line.push_str(&format!(" {got} |"));
        }
        table.push_str(&line);
        table.push('\n');
    }
    eprintln!("{table}");
    assert!(wrong.is_empty(), "{}\n{table}", wrong.join("\n"));

    // Public endpoints need no token.
    for path in [
        "/v1/public-key",
        "/v1/openapi.json",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert_eq!(
            s.req("GET", path, None).send().unwrap().status(),
            StatusCode::OK,
            "{path}"
        );
    }
    // A 403 says nothing about whether the secret exists.
    let existing = s
        .req("DELETE", "/v1/secrets/K", Some(&member))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let missing = s
        .req("DELETE", "/v1/secrets/NOPE", Some(&member))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(existing, missing);
    // The acting principal is the token's: a member's run resolves as bob.
    let v = run_probe(&s, &member, json!({"action": "echo"}));
    assert_eq!(v["user"], "bob");
}

#[test]
fn no_value_ever_comes_back_out() {
    let (cli, admin) = store_with_admin();
    let up = Upstream::start_blocking().unwrap();
    let s = Server::start(&cli, &[]);
    assert_eq!(register_probe(&s, &admin), StatusCode::CREATED);
    assert_eq!(
        put_secret(&s, &admin, "PLAIN", PLAIN, &up).status(),
        StatusCode::CREATED
    );
    // Sealed to the server's key, as the CLI sends values.
    let pk: Value = s
        .req("GET", "/v1/public-key", None)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let pk: [u8; 32] = base64::engine::general_purpose::STANDARD
        .decode(pk["public_key"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let sealed = latchkey_host::transit::seal(
        &pk,
        &latchkey_host::secret::SecretValue::new(SEALED.as_bytes().to_vec()).unwrap(),
    )
    .unwrap();
    let r = s.json(
        "PUT",
        "/v1/secrets/SEALED?scope=workspace:default",
        &admin,
        json!({"sealed_value": base64::engine::general_purpose::STANDARD.encode(&sealed), "binding": binding(&up)}),
    );
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap());
    // A value the server cannot open is refused, and nothing is stored.
    let r = s.json(
        "PUT",
        "/v1/secrets/JUNK?scope=workspace:default",
        &admin,
        json!({"sealed_value": base64::engine::general_purpose::STANDARD.encode(b"not sealed at all, sorry......................"), "binding": binding(&up)}),
    );
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        s.get("/v1/secrets/JUNK", &admin).status(),
        StatusCode::NOT_FOUND
    );

    // Steps send both values to an upstream that echoes them back.
    let mut ids = Vec::new();
    for key in ["PLAIN", "SEALED"] {
        let v = run_probe(
            &s,
            &admin,
            json!({"action": "fetch", "url": up.url("/echo"), "key": key}),
        );
        assert_eq!(v["status"], "succeeded", "{v}");
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    let seen: Vec<String> = up
        .requests()
        .iter()
        .map(|r| r.header("authorization").unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        seen,
        [format!("Bearer {PLAIN}"), format!("Bearer {SEALED}")]
    );

    let mut everything = String::new();
    let mut paths = vec![
        "/v1/secrets".to_owned(),
        "/v1/secrets/PLAIN".to_owned(),
        "/v1/secrets/SEALED".to_owned(),
        "/v1/audit".to_owned(),
        "/v1/runs".to_owned(),
        "/v1/tokens".to_owned(),
        "/metrics".to_owned(),
    ];
    for id in &ids {
        paths.push(format!("/v1/runs/{id}"));
        paths.push(format!("/v1/runs/{id}/audit"));
    }
    for p in &paths {
        let r = s.get(p, &admin);
        assert!(r.status().is_success(), "{p}");
        everything.push_str(&format!("{:?}", r.headers()));
        everything.push_str(&r.text().unwrap());
    }
    // The describe answer says when it was last used, and by which run.
    let d: Value = s.get("/v1/secrets/PLAIN", &admin).json().unwrap();
    assert_eq!(d["last_used"]["run_id"], ids[0].as_str(), "{d}");
    // A later use is seen by the next describe and listing (the server keeps up with the
    // trail instead of reading it whole, and must not stop at what it read first).
    let again = run_probe(
        &s,
        &admin,
        json!({"action": "fetch", "url": up.url("/echo"), "key": "PLAIN"}),
    );
    let d: Value = s.get("/v1/secrets/PLAIN", &admin).json().unwrap();
    assert_eq!(d["last_used"]["run_id"], again["id"], "{d}");
    let listed: Value = s.get("/v1/secrets", &admin).json().unwrap();
    let plain = listed
        .as_array()
        .and_then(|all| all.iter().find(|m| m["key"] == "PLAIN"))
        .cloned()
        .unwrap_or_else(|| panic!("PLAIN listed: {listed}"));
    assert_eq!(plain["last_used"]["run_id"], again["id"], "{plain}");
    everything.push_str(&s.printed());
    for v in [PLAIN, SEALED] {
        assert!(!everything.contains(v), "a value came back out");
    }
}

#[test]
fn a_rotation_through_the_api_is_seen_by_the_next_call_of_every_running_step() {
    let (cli, admin) = store_with_admin();
    let up = Upstream::start_blocking().unwrap();
    let s = Arc::new(Server::start(&cli, &[]));
    assert_eq!(register_probe(&s, &admin), StatusCode::CREATED);
    assert_eq!(
        put_secret(&s, &admin, "TOKEN", PLAIN, &up).status(),
        StatusCode::CREATED
    );
    // 20 concurrent runs, each making two slow calls with the key.
    let input = json!({"action": "fetch_twice", "url": up.url("/slow?ms=300"), "key": "TOKEN"});
    let runs: Vec<_> = (0..20)
        .map(|_| {
            let (s, admin, input) = (s.clone(), admin.clone(), input.clone());
            std::thread::spawn(move || run_probe(&s, &admin, input))
        })
        .collect();
    // Rotate once the first calls have arrived.
    while up.request_count() < 10 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let r = s.json(
        "POST",
        "/v1/secrets/TOKEN/rotate?scope=workspace:default",
        &admin,
        json!({"value": ROTATED}),
    );
    assert_eq!(r.status(), StatusCode::OK);
    // Calls resolved before the answer may still be on their way in; give them a moment.
    std::thread::sleep(std::time::Duration::from_millis(100));
    let after = up.request_count();
    for r in runs {
        let v = r.join().unwrap();
        assert_eq!(v["status"], "succeeded", "{v}");
    }
    let auth: Vec<String> = up
        .requests()
        .iter()
        .map(|r| r.header("authorization").unwrap_or_default().to_owned())
        .collect();
    assert_eq!(auth.len(), 40);
    assert!(
        auth.iter()
            .all(|a| *a == format!("Bearer {PLAIN}") || *a == format!("Bearer {ROTATED}"))
    );
    assert!(
        auth[after..]
            .iter()
            .all(|a| *a == format!("Bearer {ROTATED}")),
        "a call after the rotation used the old value"
    );
    assert!(
        auth[..after]
            .iter()
            .any(|a| *a == format!("Bearer {PLAIN}")),
        "the rotation happened before any call"
    );
}

#[test]
fn bad_requests_get_a_precise_error_and_store_nothing() {
    let (cli, admin) = store_with_admin();
    let up = Upstream::start_blocking().unwrap();
    let s = Server::start(&cli, &["--max-json-kib", "4"]);
    let path = "/v1/secrets/BAD?scope=workspace:default";
    let good = json!({"value": PLAIN, "binding": binding(&up)});
    let cases: Vec<(RequestBuilder, u16, &str)> = vec![
        (s.req("PUT", path, Some(&admin)).header("content-type", "application/json").body("{not json"), 400, "invalid JSON body"),
        (s.req("PUT", path, Some(&admin)).json(&json!({"value": PLAIN, "binding": binding(&up), "extra": 1})), 400, "unknown field `extra`"),
        (s.req("PUT", path, Some(&admin)).header("content-type", "text/plain").body(good.to_string()), 415, "application/json"),
        (s.req("PUT", path, Some(&admin)).json(&json!({"value": "x".repeat(8000), "binding": binding(&up)})), 413, "larger"),
        (s.req("PUT", path, Some(&admin)).json(&json!({"binding": binding(&up)})), 400, "missing the value"),
        (s.req("PUT", path, Some(&admin)).json(&json!({"value": PLAIN, "sealed_value": "AA==", "binding": binding(&up)})), 400, "not both"),
        (s.req("PUT", path, Some(&admin)).json(&json!({"value": PLAIN, "binding": {"hosts": ["*.com"], "inject": ["header:authorization"]}})), 400, "binding.hosts"),
        (s.req("PUT", path, Some(&admin)).json(&json!({"value": "a\r\nX: y", "binding": binding(&up)})), 400, "value"),
        (s.req("PUT", "/v1/secrets/bad-key", Some(&admin)).json(&good), 400, "key"),
        (s.req("PUT", "/v1/secrets/BAD?scope=galaxy", Some(&admin)).json(&good), 400, "scope"),
        (s.req("PUT", "/v1/secrets/BAD?scope=workspace:default&other=1", Some(&admin)).json(&good), 400, "query"),
        (s.req("PUT", path, Some(&admin)).json(&json!({"value": 42, "binding": binding(&up)})), 400, "invalid type"),
        (s.req("POST", "/v1/tokens", Some(&admin)).json(&json!({"name": "a/b", "role": "admin"})), 400, "user name"),
        (s.req("POST", "/v1/tokens", Some(&admin)).json(&json!({"name": "x", "role": "root"})), 400, "unknown variant"),
        (s.req("POST", "/v1/runs", Some(&admin)).json(&json!({"input": {}})), 400, "exactly one"),
        (s.req("POST", "/v1/runs", Some(&admin)).json(&json!({"component": "nope"})), 404, "no registered component"),
        (s.req("GET", "/v1/nothing", Some(&admin)), 404, "no such endpoint"),
    ];
    for (req, status, expect) in cases {
        let r = req.send().unwrap();
        let got = r.status().as_u16();
        let body: Value = r.json().unwrap_or(Value::Null);
        assert_eq!(got, status, "{body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains(expect), "expected {expect:?} in {body}");
        assert!(
            !body.to_string().contains(PLAIN),
            "an error echoed the value: {body}"
        );
    }
    let list: Value = s.get("/v1/secrets", &admin).json().unwrap();
    assert_eq!(list, json!([]), "a refused request stored something");
    let tokens: Value = s.get("/v1/tokens", &admin).json().unwrap();
    assert_eq!(tokens.as_array().unwrap().len(), 1);
}

#[test]
fn a_kill_9_loses_no_acknowledged_write() {
    let (cli, admin) = store_with_admin();
    let up = Upstream::start_blocking().unwrap();
    for round in 0..3 {
        let mut s = Server::start(&cli, &[]);
        let mut acked = Vec::new();
        for i in 0..20 {
            let key = format!("K{round}_{i}");
            let r = put_secret(&s, &admin, &key, PLAIN, &up);
            assert!(r.status().is_success());
            acked.push(key);
        }
        // A rotation acknowledged, then the process killed at once.
        let r = s.json(
            "POST",
            &format!("/v1/secrets/K{round}_19/rotate?scope=workspace:default"),
            &admin,
            json!({"value": ROTATED}),
        );
        assert_eq!(r.status(), StatusCode::OK);
        s.child.kill().unwrap();
        s.child.wait().unwrap();
        let s = Server::start(&cli, &[]);
        for key in &acked {
            let d = s.get(&format!("/v1/secrets/{key}"), &admin);
            assert_eq!(
                d.status(),
                StatusCode::OK,
                "{key} was acknowledged, then lost"
            );
        }
        let d: Value = s
            .get(&format!("/v1/secrets/K{round}_19"), &admin)
            .json()
            .unwrap();
        assert_eq!(d["version"], 2, "an acknowledged rotation was lost: {d}");
    }
}

/// A run is acknowledged by its id (`wait: false`, 202) or by its answer (`wait: true`):
/// killed at once after either, the host still has its record after a restart.
#[test]
fn a_kill_9_loses_no_acknowledged_run() {
    let (cli, admin) = store_with_admin();
    let s = Server::start(&cli, &[]);
    assert_eq!(register_probe(&s, &admin), StatusCode::CREATED);
    drop(s);
    for round in 0..3 {
        let mut s = Server::start(&cli, &[]);
        let mut acked = Vec::new();
        for i in 0..10 {
            let wait = i % 2 == 0;
            let r = s.json(
                "POST",
                "/v1/runs",
                &admin,
                json!({"component": "probe", "input": {"action": "echo", "round": round}, "wait": wait}),
            );
            let status = r.status();
            let run: Value = r.json().unwrap();
            if wait {
                assert_eq!(status, StatusCode::OK, "{run}");
                assert_eq!(run["status"], "succeeded", "{run}");
            } else {
                assert_eq!(status, StatusCode::ACCEPTED, "{run}");
            }
            acked.push((run["id"].as_str().unwrap().to_owned(), wait));
        }
        s.child.kill().unwrap();
        s.child.wait().unwrap();
        let s = Server::start(&cli, &[]);
        for (id, waited) in &acked {
            let r = s.get(&format!("/v1/runs/{id}"), &admin);
            assert_eq!(
                r.status(),
                StatusCode::OK,
                "run {id} was acknowledged, then lost"
            );
            if *waited {
                let run: Value = r.json().unwrap();
                assert_eq!(run["status"], "succeeded", "{run}");
            }
        }
    }
}

/// The record of an injection is written before the request leaves: killing the host at
/// any instant, with runs in flight, leaves a record for every request an upstream saw.
#[test]
fn a_kill_9_during_a_stream_of_injections_leaves_a_record_of_every_request_sent() {
    let (cli, admin) = store_with_admin();
    let up = Upstream::start_blocking().unwrap();
    for round in 0..3u64 {
        let mut s = Server::start(&cli, &["--requests-per-second", "100000"]);
        assert!(register_probe(&s, &admin).is_success());
        let key = format!("STREAM_{round}");
        assert!(
            put_secret(&s, &admin, &key, PLAIN, &up)
                .status()
                .is_success()
        );
        let input = json!({"action": "fetch", "url": up.url("/status/200"), "key": key});
        let before = up.request_count();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let clients: Vec<_> = (0..8)
            .map(|_| {
                let (url, admin, input, stop) =
                    (s.url.clone(), admin.clone(), input.clone(), stop.clone());
                std::thread::spawn(move || {
                    let http = Client::new();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        // Errors are expected once the server is gone.
                        let _ = http
                            .post(format!("{url}/v1/runs"))
                            .bearer_auth(&admin)
                            .json(&json!({"component": "probe", "input": input, "wait": true}))
                            .send();
                    }
                })
            })
            .collect();
        // Kill at a different point of the stream each round.
        while up.request_count() < before + 40 + 37 * round as usize {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        s.child.kill().unwrap();
        s.child.wait().unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for c in clients {
            c.join().unwrap();
        }
        let seen = up.request_count() - before;
        let s = Server::start(&cli, &[]);
        let records: Value = s
            .get(&format!("/v1/audit?key={key}&limit=10000"), &admin)
            .json()
            .unwrap();
        let sent = records["records"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["event"] == "inject" && r["outcome"] == "sent")
            .count();
        assert!(
            sent >= seen,
            "round {round}: the upstream saw {seen} requests, the audit trail records {sent}"
        );
    }
}

/// The value of the sample `name` (with its labels, as exposed) in `/metrics`.
fn metric(s: &Server, name: &str) -> f64 {
    let text = s
        .req("GET", "/metrics", None)
        .send()
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn metrics_count_injections_and_refusals_by_the_error_the_step_got() {
    let (cli, admin) = store_with_admin();
    let up = Upstream::start_blocking().unwrap();
    let s = Server::start(&cli, &[]);
    assert!(register_probe(&s, &admin).is_success());
    assert!(
        put_secret(&s, &admin, "TOKEN", PLAIN, &up)
            .status()
            .is_success()
    );
    let fetch = |url: String, key: &str| json!({"action": "fetch", "url": url, "key": key});
    // Sent: one injection. The key to an unbound port: denied. A key that does not exist:
    // missing-credential. A forbidden header: invalid-request.
    assert_eq!(
        run_probe(&s, &admin, fetch(up.url("/status/200"), "TOKEN"))["status"],
        "succeeded"
    );
    let elsewhere = format!("http://127.0.0.1:{}/", up.port() ^ 1);
    assert_eq!(
        run_probe(&s, &admin, fetch(elsewhere, "TOKEN"))["status"],
        "failed"
    );
    assert_eq!(
        run_probe(&s, &admin, fetch(up.url("/"), "NO_SUCH_KEY"))["status"],
        "failed"
    );
    let bad = json!({"action": "fetch", "url": up.url("/"), "headers": {"host": "evil.example"}});
    assert_eq!(run_probe(&s, &admin, bad)["status"], "failed");
    assert_eq!(metric(&s, "latchkey_injections_total"), 1.0);
    assert_eq!(
        metric(&s, "latchkey_refusals_total{reason=\"denied\"}"),
        1.0
    );
    assert_eq!(
        metric(&s, "latchkey_refusals_total{reason=\"missing-credential\"}"),
        1.0
    );
    assert_eq!(
        metric(&s, "latchkey_refusals_total{reason=\"invalid-request\"}"),
        1.0
    );
    assert_eq!(metric(&s, "latchkey_fetches_total"), 3.0);
    assert_eq!(metric(&s, "latchkey_runs_total{outcome=\"failed\"}"), 3.0);
}

/// Open files and resident memory of a process.
fn fds_and_rss(pid: u32) -> (usize, u64) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    (fds, rss_kib)
}

#[test]
fn two_thousand_runs_from_fifty_clients_end_without_errors_or_leaks() {
    let (cli, admin) = store_with_admin();
    let up = Upstream::start_blocking().unwrap();
    let s = Arc::new(Server::start(&cli, &["--requests-per-second", "100000"]));
    assert_eq!(register_probe(&s, &admin), StatusCode::CREATED);
    assert_eq!(
        put_secret(&s, &admin, "TOKEN", PLAIN, &up).status(),
        StatusCode::CREATED
    );
    let input = json!({"action": "fetch", "url": up.url("/echo"), "key": "TOKEN"});
    let wave = |runs_per_client: usize| -> usize {
        let clients: Vec<_> = (0..50)
            .map(|_| {
                let (s, admin, input) = (s.clone(), admin.clone(), input.clone());
                std::thread::spawn(move || {
                    // Each client its own connection pool, as separate callers would be.
                    let http = Client::new();
                    let mut errors = 0;
                    for _ in 0..runs_per_client {
                        let r = http
                            .post(format!("{}/v1/runs", s.url))
                            .bearer_auth(&admin)
                            .json(&json!({"component": "probe", "input": input, "wait": true}))
                            .send();
                        let ok = r
                            .ok()
                            .and_then(|r| r.json::<Value>().ok())
                            .is_some_and(|v| v["status"] == "succeeded");
                        errors += usize::from(!ok);
                    }
                    errors
                })
            })
            .collect();
        clients.into_iter().map(|c| c.join().unwrap()).sum()
    };
    // A warm-up wave first: pools, caches and allocator arenas reach their working size.
    assert_eq!(wave(4), 0);
    let before = fds_and_rss(s.child.id());
    assert_eq!(wave(40), 0, "2,000 runs had errors");
    // Connections of finished clients close asynchronously, and the server's pool to the
    // upstream may keep up to one idle connection per concurrent client: a leak is what
    // grows with the 2,000 runs, not with the 50 clients. Wait for the count to settle.
    let margin = 50;
    let settled = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let after = loop {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let now = fds_and_rss(s.child.id());
        if now.0 <= before.0 + margin || std::time::Instant::now() > settled {
            break now;
        }
    };
    eprintln!(
        "2000 runs from 50 clients: fds {} -> {}, VmRSS {} -> {} KiB",
        before.0, after.0, before.1, after.1
    );
    assert!(
        after.0 <= before.0 + margin,
        "open files grew by more than one per client: {before:?} -> {after:?}"
    );
    assert!(
        after.1 <= before.1 + 64 * 1024,
        "resident memory grew by more than 64 MiB: {before:?} -> {after:?}"
    );
    assert_eq!(up.request_count(), 2200);
}

#[test]
fn plain_http_is_refused_off_loopback_and_tls_serves_with_the_given_certificate() {
    let (cli, admin) = store_with_admin();
    let out = cli.run(&["serve", "--listen", "0.0.0.0:0"], None);
    assert!(!out.status.success());
    assert!(
        harness::text(&out).contains("refusing to serve plain HTTP on 0.0.0.0:0"),
        "{}",
        harness::text(&out)
    );
    // A self-signed certificate for 127.0.0.1, made with openssl.
    let (cert, key) = (cli.path("cert.pem"), cli.path("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-addext",
            "extendedKeyUsage=serverAuth",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("this test needs the openssl command");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let s = Server::start(
        &cli,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(s.url.starts_with("https://127.0.0.1:"), "{}", s.url);
    let root = reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap();
    let http = Client::builder()
        .add_root_certificate(root)
        .build()
        .unwrap();
    let who: Value = http
        .get(format!("{}/v1/whoami", s.url))
        .bearer_auth(&admin)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(who["name"], "root");
    // A client that does not trust the certificate gets no answer.
    assert!(
        Client::new()
            .get(format!("{}/healthz", s.url))
            .send()
            .is_err()
    );
}

#[test]
fn only_an_admin_chooses_whose_scoped_keys_an_ad_hoc_run_may_use() {
    let (cli, admin) = store_with_admin();
    let up = Upstream::start_blocking().unwrap();
    let s = Server::start(&cli, &[]);
    assert_eq!(register_probe(&s, &admin), StatusCode::CREATED);
    // alice's builder key for workflow acme/report: what a builder-tier run would inject.
    let r = s.json(
        "PUT",
        "/v1/secrets/TOKEN?scope=builder:alice@acme/report",
        &admin,
        json!({"value": PLAIN, "binding": binding(&up)}),
    );
    assert_eq!(r.status(), StatusCode::CREATED);
    let (member, _) = token(&s, &admin, "mallory", "member");
    let fetch = json!({"action": "fetch", "url": up.url("/echo"), "key": "TOKEN"});
    for extra in [
        json!({"builder": "alice", "workspace": "acme", "workflow_name": "report"}),
        json!({"workspace": "acme"}),
        json!({"workflow_name": "report"}),
    ] {
        let mut body = json!({"component": "probe", "input": fetch, "wait": true});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let r = s.json("POST", "/v1/runs", &member, body);
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{extra}");
    }
    assert_eq!(up.request_count(), 0, "a refused run reached the upstream");
    // An admin may, and the builder's key is used.
    let v: Value = s
        .json(
            "POST",
            "/v1/runs",
            &admin,
            json!({"component": "probe", "input": fetch, "wait": true, "builder": "alice", "workspace": "acme", "workflow_name": "report"}),
        )
        .json()
        .unwrap();
    assert_eq!(v["status"], "succeeded", "{v}");
    assert_eq!(up.request_count(), 1);
}

#[test]
fn quotas_and_signing_kinds_go_in_and_show_in_the_metadata() {
    let (cli, admin) = store_with_admin();
    let up = Upstream::start_blocking().unwrap();
    let s = Server::start(&cli, &[]);
    let path = "/v1/secrets/Q?scope=workspace:default";
    let put = |body: Value| s.req("PUT", path, Some(&admin)).json(&body).send().unwrap();
    let r = put(json!({"value": PLAIN, "binding": binding(&up), "quota": {"per_minute": 0}}));
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().unwrap().contains("at least 1"));
    let r = put(json!({"value": PLAIN, "binding": binding(&up), "kind": "rsa"}));
    assert_eq!(r.status().as_u16(), 400);
    let r = put(json!({"value": PLAIN, "kind": "hmac-sha256",
                       "binding": {"hosts": ["api.example.com"], "inject": ["basic-auth"]}}));
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().unwrap().contains("header: or query:"));

    let r = put(
        json!({"value": PLAIN, "binding": binding(&up), "quota": {"per_minute": 5, "per_day": 100}}),
    );
    assert_eq!(r.status().as_u16(), 201);
    let v: Value = r.json().unwrap();
    assert_eq!(v["quota"], json!({"per_minute": 5, "per_day": 100}), "{v}");
    let listed: Value = s.get("/v1/secrets", &admin).json().unwrap();
    assert_eq!(listed[0]["quota"]["per_day"], 100, "{listed}");
    // Rotation without a quota keeps it; `{}` removes it.
    let rotate = |body: Value| {
        s.req(
            "POST",
            "/v1/secrets/Q/rotate?scope=workspace:default",
            Some(&admin),
        )
        .json(&body)
        .send()
        .unwrap()
        .json::<Value>()
        .unwrap()
    };
    assert_eq!(rotate(json!({"value": PLAIN}))["quota"]["per_minute"], 5);
    assert!(rotate(json!({"value": PLAIN, "quota": {}}))["quota"].is_null());

    // Host-computed kinds take their parameters in the binding; without them, or with a
    // value that is not a key of the kind, a 400 says which, and nothing is stored.
    let aws_keys = r#"{"access_key_id":"AKIAIOSFODNN7EXAMPLE","secret_access_key":"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}"#;
    let aws_path = "/v1/secrets/AWS?scope=workspace:default";
    let put_at =
        |path: &str, body: Value| s.req("PUT", path, Some(&admin)).json(&body).send().unwrap();
    let hosts = json!(["abc.execute-api.eu-west-1.amazonaws.com"]);
    let r = put_at(
        aws_path,
        json!({"value": aws_keys, "kind": "aws-sigv4",
        "binding": {"hosts": hosts, "inject": ["header:authorization"]}}),
    );
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().unwrap().contains("region and service"));
    let r = put_at(
        aws_path,
        json!({"value": "not json", "kind": "aws-sigv4",
        "binding": {"hosts": hosts, "inject": ["header:authorization"],
                    "signer": {"aws": {"region": "eu-west-1", "service": "execute-api"}}}}),
    );
    assert_eq!(r.status().as_u16(), 400);
    assert!(s.get(aws_path, &admin).status() == StatusCode::NOT_FOUND);
    let r = put_at(
        aws_path,
        json!({"value": aws_keys, "kind": "aws-sigv4",
        "binding": {"hosts": hosts, "inject": ["header:authorization"],
                    "signer": {"aws": {"region": "eu-west-1", "service": "execute-api"}}}}),
    );
    assert_eq!(r.status().as_u16(), 201);
    let v: Value = s.get(aws_path, &admin).json().unwrap();
    assert_eq!(v["kind"], "aws-sigv4", "{v}");
    assert_eq!(v["binding"]["signer"]["aws"]["region"], "eu-west-1", "{v}");
    assert!(!v.to_string().contains("wJalr"), "{v}");
    let r = put_at(
        "/v1/secrets/APP?scope=workspace:default",
        json!({"value": aws_keys, "kind": "jwt-rs256",
               "binding": {"hosts": ["api.github.com"], "inject": ["header:authorization"],
                           "signer": {"jwt": {"issuer": "123456", "ttl_secs": 540}}}}),
    );
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().unwrap().contains("PEM"));
}

/// What an error answer must carry, whoever produced it (a handler, the router, the
/// framework): the JSON `{error, message}` body and the hardening headers.
fn assert_hardened_error(r: Response, status: u16, what: &str) -> Value {
    assert_eq!(r.status().as_u16(), status, "{what}");
    for h in [
        "content-security-policy",
        "x-content-type-options",
        "x-frame-options",
        "referrer-policy",
    ] {
        assert!(r.headers().contains_key(h), "{what}: no {h}");
    }
    let body: Value = r
        .json()
        .unwrap_or_else(|e| panic!("{what}: not a JSON body: {e}"));
    assert!(
        body["error"].is_string() && body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: {body}"
    );
    body
}

/// Bad input the API used to accept: a query value that is not UTF-8 was decoded lossily
/// (the secret was stored under a scope the client never sent), any text was taken as a
/// member's name (`..%2F..%2Fetc`, `a@b`, a newline: 200 and a `member-remove` record),
/// and a wrong method got an empty 405. Each is now a precise error that changes nothing.
#[test]
fn bad_bytes_and_bad_names_are_refused_precisely_and_change_nothing() {
    let (cli, admin) = store_with_admin();
    let up = Upstream::start_blocking().unwrap();
    let s = Server::start(&cli, &[]);
    let records = || {
        s.get("/v1/audit", &admin).json::<Value>().unwrap()["records"]
            .as_array()
            .unwrap()
            .len()
    };
    let before = records();
    let good = json!({"value": PLAIN, "binding": binding(&up)});
    for query in ["scope=workspace:%FF%FE", "scope=workspace:ok%C3", "%FF=1"] {
        let r = s
            .req("PUT", &format!("/v1/secrets/UTF?{query}"), Some(&admin))
            .json(&good)
            .send()
            .unwrap();
        let body = assert_hardened_error(r, 400, query);
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("UTF-8"), "{query}: {body}");
        if query.starts_with("scope") {
            assert!(message.contains("scope"), "{query}: {body}");
        }
    }
    for user in ["..%2F..%2Fetc", "a@b", "a%0Ab", "a%3Ab", "a%1B%5D0%3Bx%07"] {
        let r = s
            .req("DELETE", &format!("/v1/members/{user}"), Some(&admin))
            .send()
            .unwrap();
        let body = assert_hardened_error(r, 400, user);
        assert!(
            body["message"].as_str().unwrap().contains("user name"),
            "{user}: {body}"
        );
    }
    for (method, path) in [("PATCH", "/v1/secrets/K"), ("TRACE", "/v1/secrets")] {
        let r = s.req(method, path, Some(&admin)).send().unwrap();
        assert!(r.headers().contains_key("allow"), "{method} {path}");
        let body = assert_hardened_error(r, 405, &format!("{method} {path}"));
        assert_eq!(body["error"], "method-not-allowed", "{body}");
    }
    // Requests hyper cannot parse, answered before any route runs: a bad Content-Length,
    // a malformed header, more headers than it takes.
    let many: String = (0..120).map(|i| format!("x-h{i}: v\r\n")).collect();
    for (what, request, status) in [
        (
            "a bad Content-Length",
            "POST /v1/tokens HTTP/1.1\r\nhost: x\r\ncontent-length: abc\r\n\r\n".to_owned(),
            400,
        ),
        (
            "two Content-Lengths",
            "POST /v1/tokens HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab".to_owned(),
            400,
        ),
        (
            "a header without a colon",
            "GET /healthz HTTP/1.1\r\nhost: x\r\nbroken\r\n\r\n".to_owned(),
            400,
        ),
        (
            "120 headers",
            format!("GET /healthz HTTP/1.1\r\nhost: x\r\n{many}\r\n"),
            431,
        ),
    ] {
        let answer = raw_exchange(&s, request.as_bytes());
        let (head, body) = answer
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("{what}: {answer:?}"));
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status} ")),
            "{what}: {answer:?}"
        );
        let head = head.to_ascii_lowercase();
        for h in ["content-security-policy:", "x-content-type-options:", "x-frame-options:", "content-type: application/json"] {
            assert!(head.contains(h), "{what}: no {h} in {answer:?}");
        }
        let body: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{what}: {e}: {answer:?}"));
        assert!(body["error"].is_string() && body["message"].is_string(), "{what}: {body}");
    }
    // The server still serves.
    assert_eq!(s.get("/v1/whoami", &admin).status(), StatusCode::OK);
    let list: Value = s.get("/v1/secrets", &admin).json().unwrap();
    assert_eq!(list, json!([]), "a refused request stored something");
    assert_eq!(records(), before, "a refused request was audited");
}

/// Sends `request` as raw bytes on a new connection to `s`, and reads the answer until the
/// server closes the connection (hyper closes it after an answer of its own) or 5 s pass.
fn raw_exchange(s: &Server, request: &[u8]) -> String {
    use std::io::{Read, Write};
    let addr = s.url.strip_prefix("http://").unwrap();
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    c.write_all(request).unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n @ 1..) = c.read(&mut buf) {
        answer.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// A page on another site can make a browser read `http://127.0.0.1:PORT/metrics` under a
/// name of its own that it re-points at 127.0.0.1 (DNS rebinding): the browser sends that
/// name as `Host`. Over plain HTTP (loopback only) `/metrics` answers only a `Host` that
/// names the loopback, as a Prometheus scraping `127.0.0.1:PORT` or `localhost:PORT` sends.
#[test]
fn metrics_answer_only_a_loopback_host_over_plain_http() {
    let (cli, _admin) = store_with_admin();
    let s = Server::start(&cli, &[]);
    let port = s.url.rsplit(':').next().unwrap().to_owned();
    let scrape = |host: &str| {
        s.req("GET", "/metrics", None)
            .header("host", host)
            .send()
            .unwrap()
    };
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("LOCALHOST:{port}"),
        format!("[::1]:{port}"),
        "127.0.0.1".to_owned(),
    ] {
        let r = scrape(&host);
        assert_eq!(r.status(), StatusCode::OK, "{host}");
        assert!(r.text().unwrap().contains("# TYPE latchkey_"), "{host}");
    }
    for host in [
        format!("rebind.evil.example:{port}"),
        format!("localhost.evil.example:{port}"),
        format!("127.0.0.1.nip.io:{port}"),
    ] {
        let body = assert_hardened_error(scrape(&host), 403, &host);
        assert!(
            body["message"].as_str().unwrap().contains("Host"),
            "{host}: {body}"
        );
    }
}

/// A binding's places have one name in requests, answers and the CLI's JSON: `locations`
/// (requests said `inject`, answers `binding.locations`). `inject`, the earlier request name,
/// is still accepted for it; both at once are refused naming the field, with nothing stored.
#[test]
fn a_binding_s_locations_have_one_name_in_requests_and_answers() {
    let (cli, admin) = store_with_admin();
    let s = Server::start(&cli, &[]);
    let put = |key: &str, binding: Value| {
        s.json(
            "PUT",
            &format!("/v1/secrets/{key}"),
            &admin,
            json!({"value": PLAIN, "binding": binding}),
        )
    };
    let r = put(
        "NEW",
        json!({"hosts": ["api.example.com"], "locations": ["header:authorization"]}),
    );
    assert_eq!(r.status(), StatusCode::CREATED);
    let new: Value = r.json().unwrap();
    assert_eq!(
        new["binding"]["locations"],
        json!(["header:authorization"]),
        "{new}"
    );
    let r = put(
        "OLD",
        json!({"hosts": ["api.example.com"], "inject": ["header:authorization"]}),
    );
    assert_eq!(r.status(), StatusCode::CREATED);
    let old: Value = r.json().unwrap();
    assert_eq!(old["binding"], new["binding"]);
    let r = put(
        "BOTH",
        json!({"hosts": ["api.example.com"], "locations": ["header:a"], "inject": ["header:b"]}),
    );
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("locations"),
        "{body}"
    );
    assert_eq!(
        s.get("/v1/secrets/BOTH", &admin).status(),
        StatusCode::NOT_FOUND
    );
    let r = put(
        "BAD",
        json!({"hosts": ["api.example.com"], "locations": ["nowhere:x"]}),
    );
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("binding.locations: "),
        "{body}"
    );
    let doc: Value = s
        .req("GET", "/v1/openapi.json", None)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let fields = &doc["components"]["schemas"]["BindingBody"]["properties"];
    assert!(
        fields["locations"].is_object() && fields["inject"].is_null(),
        "{fields}"
    );
    // The CLI's JSON through the server: the same name.
    let mut c = cli.command(&["secret", "list", "--json"]);
    c.env("LATCHKEY_SERVER", &s.url)
        .env("LATCHKEY_TOKEN", &admin);
    let out = cli.output(c, None);
    assert!(out.status.success(), "{}", harness::text(&out));
    let lines = String::from_utf8(out.stdout).unwrap();
    for line in lines.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(
            v["binding"]["locations"],
            json!(["header:authorization"]),
            "{v}"
        );
        assert!(v["binding"].get("inject").is_none(), "{v}");
    }
    assert_eq!(lines.lines().count(), 2, "{lines}");
}

/// The served OpenAPI document passes an independent validator (`openapi-spec-validator`,
/// installed by `tests/setup/60-python-tools.sh`), as client generators require.
#[test]
fn the_served_openapi_document_validates() {
    let tool = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/test-tools/venv/bin/openapi-spec-validator");
    assert!(
        tool.exists(),
        "{} is missing: run `bash tests/setup/60-python-tools.sh`",
        tool.display()
    );
    let (cli, _) = store_with_admin();
    let s = Server::start(&cli, &[]);
    let doc = s
        .req("GET", "/v1/openapi.json", None)
        .send()
        .unwrap()
        .text()
        .unwrap();
    let file = cli.path("openapi.json");
    std::fs::write(&file, doc).unwrap();
    let out = std::process::Command::new(&tool)
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A client generated from the served document by a common generator (openapi-python-client,
/// pinned, installed by `tests/setup/60-python-tools.sh`) works, with typed models: it uploads
/// a component (`application/wasm`) and a manifest (`application/toml`), runs the workflow,
/// lists secrets, tokens, runs and audit records, and reads `/healthz`, `/readyz` and
/// `/metrics` (`tests/openapi/generated_client.py` fails if any field lands in
/// `additional_properties`, where an untyped schema sends it).
/// The generator's own content-type override maps the two uploads to its raw-bytes body.
#[test]
fn a_client_generated_from_the_document_is_typed_and_works() {
    let venv =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-tools/venv/bin");
    let generator = venv.join("openapi-python-client");
    assert!(
        generator.exists(),
        "{} is missing: run `bash tests/setup/60-python-tools.sh`",
        generator.display()
    );
    let (cli, admin) = store_with_admin();
    let up = Upstream::start_blocking().unwrap();
    let s = Server::start(&cli, &[]);
    assert_eq!(
        put_secret(&s, &admin, "K", PLAIN, &up).status(),
        StatusCode::CREATED
    );
    let doc = s
        .req("GET", "/v1/openapi.json", None)
        .send()
        .unwrap()
        .text()
        .unwrap();
    std::fs::write(cli.path("openapi.json"), doc).unwrap();
    // No post-hooks: they would run ruff, which the generated code does not need.
    std::fs::write(
        cli.path("generator.json"),
        json!({
            "post_hooks": [],
            "content_type_overrides": {
                "application/wasm": "application/octet-stream",
                "application/toml": "application/octet-stream"
            }
        })
        .to_string(),
    )
    .unwrap();
    let package = cli.path("client");
    let out = std::process::Command::new(&generator)
        .args(["generate", "--meta", "none", "--path"])
        .arg(cli.path("openapi.json"))
        .arg("--config")
        .arg(cli.path("generator.json"))
        .arg("--output-path")
        .arg(package.join("latchkey_client"))
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    // The generator skips what it cannot type, with a warning: nothing may be skipped.
    assert!(!said.contains("Warning"), "{said}");
    let manifest = cli.path("wf.toml");
    std::fs::write(
        &manifest,
        "name = \"wf\"\nallow = [\"K\"]\n[[step]]\nname = \"get\"\ncomponent = \"probe\"\n",
    )
    .unwrap();
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/openapi/generated_client.py");
    let out = std::process::Command::new(venv.join("python"))
        .arg(&script)
        .arg(&package)
        .arg(&s.url)
        .arg(&admin)
        .arg(latchkey_tests::guest("probe"))
        .arg("wf")
        .arg(&manifest)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the generated client failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let read: Value = serde_json::from_slice(&out.stdout).unwrap();
    // What the typed models hold is what the server answers.
    let secret = &read["secret"];
    assert_eq!(secret["key"], "K", "{read}");
    assert_eq!(secret["scope"], "workspace:default", "{read}");
    assert_eq!(secret["version"], 1, "{read}");
    assert_eq!(
        secret["hosts"],
        json!([format!("127.0.0.1:{}", up.port())]),
        "{read}"
    );
    assert_eq!(
        secret["locations"],
        json!(["header:authorization"]),
        "{read}"
    );
    let runs = read["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{read}");
    assert_eq!(runs[0]["status"], "succeeded", "{read}");
    assert_eq!(runs[0]["steps"], json!(["get"]), "{read}");
    assert_eq!(runs[0]["credentials"], json!(["K"]), "{read}");
    assert_eq!(secret["last_run"], Value::Null, "{read}");
    assert!(
        read["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["role"] == "admin"),
        "{read}"
    );
    let events = read["events"].as_array().unwrap();
    for e in [
        "secret-set",
        "component-register",
        "workflow-register",
        "resolve",
    ] {
        assert!(events.iter().any(|x| x == e), "no {e} in {read}");
    }
}

/// `/metrics` speaks Prometheus' text format 0.0.4 unless OpenMetrics is asked for, and both
/// parse with the official Python client's parsers (installed by
/// `tests/setup/60-python-tools.sh`): the build, the process's CPU, memory and files, and HTTP
/// requests by route template and status, 401s included.
#[test]
fn metrics_parse_with_the_official_parsers_in_both_formats() {
    let python = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/test-tools/venv/bin/python");
    let (cli, admin) = store_with_admin();
    let s = Server::start(&cli, &[]);
    assert_eq!(s.get("/v1/whoami", &admin).status(), StatusCode::OK);
    assert_eq!(
        s.req("GET", "/v1/whoami", None).send().unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    for (accept, parser, kind) in [
        (
            None,
            "prometheus_client.parser",
            "text/plain; version=0.0.4",
        ),
        (
            Some("application/openmetrics-text; version=1.0.0"),
            "prometheus_client.openmetrics.parser",
            "application/openmetrics-text",
        ),
    ] {
        let mut r = s.req("GET", "/metrics", None);
        if let Some(a) = accept {
            r = r.header("accept", a);
        }
        let r = r.send().unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(ct.starts_with(kind), "{ct}");
        let file = cli.path("metrics.txt");
        std::fs::write(&file, r.text().unwrap()).unwrap();
        let script = format!(
            "import sys, json\nfrom {parser} import text_string_to_metric_families\n\
             fams = {{f.name: [(s.name, s.labels, s.value) for s in f.samples] for f in text_string_to_metric_families(open(sys.argv[1]).read())}}\n\
             print(json.dumps(fams))"
        );
        let out = std::process::Command::new(&python)
            .args(["-c", &script, file.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{parser} refused the document: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let fams: Value = serde_json::from_slice(&out.stdout).unwrap();
        for name in [
            "latchkey_build_info",
            "process_cpu_seconds",
            "process_resident_memory_bytes",
            "process_open_fds",
            "latchkey_http_requests",
            "latchkey_runs_in_progress",
        ] {
            assert!(fams.get(name).is_some(), "{parser}: no {name} in {fams}");
        }
        let http = fams["latchkey_http_requests"].as_array().unwrap();
        let counted = |status: &str| {
            http.iter().any(|s| {
                s[1]["route"] == "/v1/whoami"
                    && s[1]["status"] == status
                    && s[2].as_f64() >= Some(1.0)
            })
        };
        assert!(counted("200") && counted("401"), "{parser}: {http:?}");
        assert!(
            fams["process_resident_memory_bytes"][0][2]
                .as_f64()
                .unwrap()
                > 1e6
        );
    }
}

/// A guessable value is refused in the API's own words: the request field that overrides
/// the check, not the command-line flag.
#[test]
fn a_weak_value_is_refused_naming_the_api_field() {
    let (cli, admin) = store_with_admin();
    let s = Server::start(&cli, &[]);
    let up = Upstream::start_blocking().unwrap();
    let put = |allow: bool| {
        s.json(
            "PUT",
            "/v1/secrets/WEAK?scope=workspace:default",
            &admin,
            json!({"value": "hunter2", "binding": binding(&up), "allow_weak_value": allow}),
        )
    };
    let r = put(false);
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let message = r.json::<Value>().unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("\"allow_weak_value\": true"), "{message}");
    assert!(!message.contains("--allow-weak-value"), "{message}");
    assert_eq!(put(true).status(), StatusCode::CREATED);
}
