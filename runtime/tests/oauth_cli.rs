//! OAuth2 credentials through the `latchkey` binary: `secret set --kind oauth2` (JSON on
//! stdin, or prompts on a terminal), and hosts that share a store: two `latchkey serve`
//! processes on one real PostgreSQL 15 (started by the test on 127.0.0.1) refresh a
//! credential's access token once between them, through the lease in the `oauth`
//! namespace, and share the sealed token; the server's `PUT /v1/secrets` takes the kind too.
#![allow(clippy::unwrap_used)]

mod harness;

use harness::postgres::Postgres;
use harness::server::Server;
use harness::{Cli, text};
use latchkey_tests::token_endpoint::FakeProvider;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::{Arc, Barrier};
use std::time::Duration;

const CLIENT_ID: &str = "latchkey-shared-app";
const CLIENT_SECRET: &str = "cs/Wq+7vk!8Jm#1Bp$3Qt6Zx&2Gn";
const REFRESH: &str = "rt/7+3e1c9a0b5d2f48617";

fn host(cli: &Cli, admin: &str) -> Server {
    let data = cli.path("server");
    let s = Server::start(cli, &["--data-dir", data.to_str().unwrap()]);
    let wasm = std::fs::read(latchkey_tests::guest("probe")).unwrap();
    let r = s
        .req("POST", "/v1/components?name=probe", Some(admin))
        .header("content-type", "application/wasm")
        .body(wasm)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    s
}

/// A run of the probe that fetches `/api/me` of `p` with `Bearer <key>`; its output.
fn run_me(s: &Server, admin: &str, p: &FakeProvider, key: &str) -> Value {
    let input = json!({"action": "raw", "method": "GET", "url": p.url("/api/me"),
        "headers": [{"name": "authorization", "parts": [{"text": "Bearer "}, {"secret": key}]}]});
    let r = s.json(
        "POST",
        "/v1/runs",
        admin,
        json!({"component": "probe", "input": input, "wait": true}),
    );
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().unwrap();
    assert_eq!(v["status"], "succeeded", "{v}");
    v["output"].clone()
}

#[test]
fn two_hosts_sharing_a_store_refresh_a_token_once_between_them() {
    let pg = Postgres::start();
    let p = FakeProvider::start(CLIENT_ID, CLIENT_SECRET, REFRESH);
    // Slow, so that runs on both hosts ask while the one refresh is in flight.
    p.set_delay(Duration::from_millis(1500));
    let (a_cli, admin) = pg.store_with_admin("oauth");
    let b_cli = a_cli.another_host();
    for v in [CLIENT_SECRET, REFRESH] {
        a_cli.never_prints(v);
    }
    let token_url = p.url("/token");
    let api = format!("127.0.0.1:{}", p.port());
    let client =
        json!({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "refresh_token": REFRESH});
    let out = a_cli.ok(
        &[
            "secret",
            "set",
            "API",
            "--kind",
            "oauth2",
            "--token-url",
            &token_url,
            "--oauth-scope",
            "read",
            "--allow-host",
            &api,
            "--inject",
            "header:authorization",
            "--allow-http",
        ],
        Some(client.to_string().as_bytes()),
    );
    assert!(text(&out).contains("stored API"), "{}", text(&out));
    let listed = text(&a_cli.ok(&["secret", "list"], None));
    assert!(
        listed.contains(&format!("(oauth2 refresh-token via {token_url})")),
        "{listed}"
    );
    let a = Arc::new(host(&a_cli, &admin));
    let b = Arc::new(host(&b_cli, &admin));

    let barrier = Arc::new(Barrier::new(20));
    let runs: Vec<_> = (0..20)
        .map(|i| {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            let (barrier, admin) = (barrier.clone(), admin.clone());
            let url = p.url("/api/me");
            std::thread::spawn(move || {
                barrier.wait();
                let input = json!({"action": "raw", "method": "GET", "url": url,
                    "headers": [{"name": "authorization", "parts": [{"text": "Bearer "}, {"secret": "API"}]}]});
                let r = s.json(
                    "POST",
                    "/v1/runs",
                    &admin,
                    json!({"component": "probe", "input": input, "wait": true}),
                );
                r.json::<Value>().unwrap()
            })
        })
        .collect();
    for r in runs {
        let v = r.join().unwrap();
        assert_eq!(v["status"], "succeeded", "{v}");
        assert_eq!(v["output"]["status"], 200, "{v}");
    }
    assert_eq!(
        p.token_requests().len(),
        1,
        "the hosts sent the refresh token more than once"
    );
    // The rotated refresh token is stored once, as version 2, and both hosts use it.
    let meta: Value = b.get("/v1/secrets/API", &admin).json().unwrap();
    assert_eq!(meta["version"], 2, "{meta}");
    assert_eq!(meta["oauth"]["grant"], "refresh-token", "{meta}");

    // The server's API takes the same credential: a client-credentials one set on B. The
    // endpoint has one name in requests and answers, `oauth.url`.
    let r = b.json(
        "PUT",
        "/v1/secrets/APP?scope=workspace:default",
        &admin,
        json!({"value": json!({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}).to_string(),
               "kind": "oauth2",
               "oauth": {"url": token_url, "grant": "client-credentials"},
               "binding": {"hosts": [api], "locations": ["header:authorization"], "allow_http": true}}),
    );
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap());
    let meta: Value = r.json().unwrap();
    assert_eq!(meta["oauth"]["url"], token_url.as_str(), "{meta}");
    // Both names at once is refused, naming the field, and stores nothing.
    let r = b.json(
        "PUT",
        "/v1/secrets/TWICE?scope=workspace:default",
        &admin,
        json!({"value": json!({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}).to_string(),
               "kind": "oauth2",
               "oauth": {"url": token_url, "token_url": token_url, "grant": "client-credentials"},
               "binding": {"hosts": [api], "locations": ["header:authorization"], "allow_http": true}}),
    );
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().unwrap().contains("url"));
    p.set_delay(Duration::ZERO);
    let out = run_me(&a, &admin, &p, "APP");
    assert_eq!(out["status"], 200, "{out}");
    let reqs = p.token_requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[1].form["grant_type"], "client_credentials");
    // A bad endpoint is a 400 naming the problem (`token_url`, the field's earlier name,
    // is still accepted).
    let r = b.json(
        "PUT",
        "/v1/secrets/BAD?scope=workspace:default",
        &admin,
        json!({"value": json!({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}).to_string(),
               "kind": "oauth2",
               "oauth": {"token_url": "http://auth.example.com/token", "grant": "client-credentials"},
               "binding": {"hosts": [api], "inject": ["header:authorization"], "allow_http": true}}),
    );
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().unwrap().contains("must be https"));

    // The database holds no token, secret or refresh token in clear.
    let dump = pg.dump("oauth");
    for v in p.access_tokens().iter().map(String::as_str).chain([
        CLIENT_SECRET,
        REFRESH,
        p.refresh_token().as_str(),
    ]) {
        assert!(!dump.contains(v), "a value is in the database in clear");
    }
    for s in [&a, &b] {
        let printed = s.printed();
        for v in p.access_tokens() {
            assert!(!printed.contains(&v), "a host printed an access token");
        }
        assert!(!printed.contains(CLIENT_SECRET) && !printed.contains(REFRESH));
    }
}

#[test]
fn secret_set_names_the_oauth2_flag_or_field_that_is_wrong_and_stores_nothing() {
    let cli = Cli::new();
    let client =
        json!({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "refresh_token": REFRESH})
            .to_string();
    cli.never_prints(CLIENT_SECRET);
    cli.never_prints(REFRESH);
    let base = [
        "secret",
        "set",
        "API",
        "--allow-host",
        "127.0.0.1:9",
        "--inject",
        "header:authorization",
    ];
    for (extra, want) in [
        (&["--kind", "oauth2"][..], "--kind oauth2 needs --token-url"),
        (
            &["--token-url", "https://a.example/token"][..],
            "--token-url is only for --kind oauth2",
        ),
        (
            &["--kind", "oauth2", "--token-url", "http://a.example/token"][..],
            "must be https",
        ),
        (
            &[
                "--kind",
                "oauth2",
                "--token-url",
                "https://a.example/t",
                "--grant",
                "implicit",
            ][..],
            "--grant \"implicit\"",
        ),
        (
            &[
                "--kind",
                "oauth2",
                "--token-url",
                "https://a.example/t",
                "--grant",
                "client-credentials",
            ][..],
            "refresh_token, which the client-credentials grant does not use",
        ),
    ] {
        let args: Vec<&str> = base.iter().copied().chain(extra.iter().copied()).collect();
        let out = cli.run(&args, Some(client.as_bytes()));
        assert!(!out.status.success(), "{args:?}");
        assert!(text(&out).contains(want), "{args:?}: {}", text(&out));
    }
    let listed = text(&cli.ok(&["secret", "list"], None));
    assert!(listed.contains("no secrets"), "{listed}");
}

/// Drives a command on a pseudo-terminal: waits for each prompt, answers it, and returns
/// the exit code and everything the terminal showed. Python's `pty` module, so that the
/// command's stdin is a terminal and its hidden prompts read from it as from a person.
const PTY_DRIVER: &str = r#"
import os, pty, select, signal, sys, json, termios, time
answers = json.loads(sys.argv[1])
argv = sys.argv[2:]
pid, fd = pty.fork()
if pid == 0:
    os.execv(argv[0], argv)
seen = b""
def read():
    global seen
    # A prompt that never comes fails the test instead of hanging it.
    if not select.select([fd], [], [], 20)[0]:
        os.kill(pid, signal.SIGKILL)
        sys.stdout.write(seen.decode(errors="replace") + "\n[timed out waiting]\n")
        sys.exit(99)
    try:
        chunk = os.read(fd, 4096)
    except OSError:
        return False
    if not chunk:
        return False
    seen += chunk
    return True
for prompt, answer in answers:
    while prompt.encode() not in seen:
        if not read():
            break
    seen = seen.replace(prompt.encode(), b"<" + prompt.encode() + b">", 1)
    if "hidden" in prompt:
        # A person types after the prompt has turned echo off; answering the moment the
        # prompt's text shows could beat that, and the terminal would echo the answer.
        for _ in range(1000):
            if not termios.tcgetattr(fd)[3] & termios.ECHO:
                break
            time.sleep(0.005)
    os.write(fd, answer.encode() + b"\n")
while read():
    pass
_, status = os.waitpid(pid, 0)
sys.stdout.write(seen.decode(errors="replace"))
sys.exit(os.waitstatus_to_exitcode(status))
"#;

#[test]
fn secret_set_prompts_for_each_oauth2_field_on_a_terminal_and_the_host_uses_them() {
    let p = FakeProvider::start(CLIENT_ID, CLIENT_SECRET, REFRESH);
    let cli = Cli::new();
    let token_url = p.url("/token");
    let api = format!("127.0.0.1:{}", p.port());
    let args = [
        "secret",
        "set",
        "API",
        "--kind",
        "oauth2",
        "--token-url",
        &token_url,
        "--allow-host",
        &api,
        "--inject",
        "header:authorization",
        "--allow-http",
    ];
    let inner = cli.command(&args);
    let mut driver = std::process::Command::new("python3");
    let answers = json!([
        ["client_id for API: ", CLIENT_ID],
        ["client_secret for API (input hidden): ", CLIENT_SECRET],
        ["refresh_token for API (input hidden): ", REFRESH],
    ]);
    driver
        .arg("-c")
        .arg(PTY_DRIVER)
        .arg(answers.to_string())
        .arg(inner.get_program())
        .args(inner.get_args());
    for (name, value) in inner.get_envs() {
        match value {
            Some(v) => driver.env(name, v),
            None => driver.env_remove(name),
        };
    }
    let out = driver
        .output()
        .expect("python3 (tests/setup installs it on CI machines)");
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{shown}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for prompt in [
        "<client_id for API: >",
        "<client_secret for API (input hidden): >",
        "<refresh_token for API (input hidden): >",
    ] {
        assert!(shown.contains(prompt), "{shown}");
    }
    assert!(shown.contains("stored API"), "{shown}");
    // Hidden input is not echoed.
    assert!(
        !shown.contains(CLIENT_SECRET) && !shown.contains(REFRESH),
        "{shown}"
    );
    // The host refreshes with exactly what was typed.
    let input = json!({"action": "raw", "method": "GET", "url": p.url("/api/me"),
        "headers": [{"name": "authorization", "parts": [{"text": "Bearer "}, {"secret": "API"}]}]});
    let probe = latchkey_tests::guest("probe");
    let out = cli.ok(
        &[
            "run",
            probe.to_str().unwrap(),
            "--input",
            &input.to_string(),
            "--allow-private-network",
        ],
        None,
    );
    assert!(text(&out).contains(r#""status":200"#), "{}", text(&out));
    let reqs = p.token_requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].form["refresh_token"], REFRESH);
}
