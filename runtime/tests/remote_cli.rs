//! The `latchkey` command against a real `latchkey serve` (`--server`): the same commands as
//! on a local store, values sealed to the server's key, the principal the token's.
#![allow(clippy::unwrap_used)]

mod harness;

use harness::server::{Server, store_with_admin};
use harness::{Cli, text};
use std::process::Output;

const VALUE: &str = "tok-remote-cli-4b8e2d6a0c9f1735";
const ROTATED: &str = "tok-remote-cli-rot-9d3f7b1e5a2c8046";

/// `latchkey ARGS --server URL` with `token` in LATCHKEY_TOKEN.
fn remote(cli: &Cli, s: &Server, token: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut c = cli.command(args);
    c.env("LATCHKEY_SERVER", &s.url)
        .env("LATCHKEY_TOKEN", token);
    cli.output(c, stdin)
}

/// `secret set API` bound to the upstream at `host`, injected as the authorization header.
fn set_api(host: &str) -> [&str; 8] {
    [
        "secret",
        "set",
        "API",
        "--allow-host",
        host,
        "--inject",
        "header:authorization",
        "--allow-http",
    ]
}

#[test]
fn secrets_runs_and_audit_work_the_same_through_a_server() {
    let (cli, admin) = store_with_admin();
    cli.never_prints(VALUE);
    cli.never_prints(ROTATED);
    let up = latchkey_tests::upstream::Upstream::start_blocking().unwrap();
    let s = Server::start(&cli, &[]);
    let host = format!("127.0.0.1:{}", up.port());
    let ok = |token: &str, args: &[&str], stdin: Option<&[u8]>| {
        let out = remote(&cli, &s, token, args, stdin);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        text(&out)
    };

    assert!(
        ok(&admin, &set_api(&host), Some(VALUE.as_bytes()))
            .contains("stored API in workspace:default (version 1)")
    );
    let list = ok(&admin, &["secret", "list"], None);
    assert!(list.contains("API") && list.contains("by root"), "{list}");
    let probe = latchkey_tests::guest("probe").display().to_string();
    let added = ok(
        &admin,
        &["component", "add", &probe, "--name", "probe"],
        None,
    );
    assert!(added.contains("as probe"), "{added}");

    // A run by name injects the key; the upstream got it, the output did not.
    let input = format!(
        r#"{{"action":"fetch","url":"{}","key":"API"}}"#,
        up.url("/echo")
    );
    let out = ok(
        &admin,
        &["run", "probe", "--input", &input, "--report"],
        None,
    );
    assert!(out.contains("credential API from tier workspace"), "{out}");
    let seen = up.requests()[0].header("authorization").unwrap().to_owned();
    assert_eq!(seen, format!("Bearer {VALUE}"));
    // By file: the component's digest names it.
    let out = ok(
        &admin,
        &["run", &probe, "--input", r#"{"action":"echo","n":7}"#],
        None,
    );
    assert!(out.contains(r#""n":7"#), "{out}");

    // Rotation through the server reaches the next run.
    ok(
        &admin,
        &["secret", "rotate", "API"],
        Some(ROTATED.as_bytes()),
    );
    ok(&admin, &["run", "probe", "--input", &input], None);
    let seen = up.requests()[1].header("authorization").unwrap().to_owned();
    assert_eq!(seen, format!("Bearer {ROTATED}"));

    // A member may list but not change; the refusal names the role.
    let member = ok(
        &admin,
        &["token", "create", "--name", "bob", "--role", "member"],
        None,
    );
    let member = member
        .lines()
        .find(|l| l.starts_with("lk_"))
        .unwrap()
        .to_owned();
    ok(&member, &["secret", "list"], None);
    let out = remote(&cli, &s, &member, &["secret", "rm", "API"], None);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("403") && text(&out).contains("member role"),
        "{}",
        text(&out)
    );
    // A member's run resolves as bob (the user tiers are the token's).
    let out = remote(
        &cli,
        &s,
        &member,
        &[
            "run",
            "probe",
            "--input",
            r#"{"action":"get","key":"NOPE"}"#,
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(3));
    // The report says what the step was told; where the key was looked for (which names
    // the caller's own user scope) is the audit trail's, which a member may read.
    assert!(text(&out).contains("missing-credential"), "{}", text(&out));
    let run_id = text(&out)
        .split("run id ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_owned();
    let trail = remote(&cli, &s, &member, &["audit", "--run", &run_id], None);
    assert!(text(&trail).contains("user:bob"), "{}", text(&trail));

    // The audit trail shows who did what, by the token's principal.
    let audit = ok(&admin, &["audit", "--key", "API"], None);
    assert!(audit.contains("secret-set by=root"), "{audit}");
    assert!(audit.contains("secret-rotate by=root"), "{audit}");

    // Local-only commands and client-side limits are refused, precisely.
    let out = remote(&cli, &s, &admin, &["init"], None);
    assert!(
        text(&out).contains("does not take --server"),
        "{}",
        text(&out)
    );
    let out = remote(
        &cli,
        &s,
        &admin,
        &["run", "probe", "--memory-mib", "8"],
        None,
    );
    assert!(text(&out).contains("set by the server"), "{}", text(&out));
    let out = remote(
        &cli,
        &s,
        &admin,
        &["secret", "rm", "API", "--as", "mallory"],
        None,
    );
    assert!(text(&out).contains("--as does not apply"), "{}", text(&out));

    assert!(!s.printed().contains(VALUE) && !s.printed().contains(ROTATED));
    ok(&admin, &["secret", "rm", "API"], None);
}

#[test]
fn a_bad_token_or_no_token_is_a_clear_error() {
    let (cli, _admin) = store_with_admin();
    let s = Server::start(&cli, &[]);
    let out = remote(&cli, &s, "lk_nope", &["secret", "list"], None);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("401") && text(&out).contains("not valid"),
        "{}",
        text(&out)
    );
    let mut c = cli.command(&["secret", "list"]);
    c.env("LATCHKEY_SERVER", &s.url);
    let out = cli.output(c, None);
    assert!(text(&out).contains("LATCHKEY_TOKEN"), "{}", text(&out));
}

/// Each line of `out`'s stdout as a JSON object.
fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    assert!(out.status.success(), "{}", text(out));
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect()
}

#[test]
fn json_outputs_through_a_server_parse_with_the_api_field_names() {
    let (cli, admin) = store_with_admin();
    let s = Server::start(&cli, &[]);
    let json = |args: &[&str]| remote(&cli, &s, &admin, args, None);
    let probe = latchkey_tests::guest("probe").display().to_string();
    assert!(
        json(&["component", "add", &probe, "--name", "probe"])
            .status
            .success()
    );
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("echo.toml");
    std::fs::write(
        &manifest,
        "name = \"echo\"\nallow = [\"NOPE\"]\n[[step]]\nname = \"only\"\ncomponent = \"probe\"\n",
    )
    .unwrap();
    let manifest = manifest.to_str().unwrap();
    assert!(json(&["workflow", "add", manifest]).status.success());

    // Lists: one object per line, as GET /v1/… answers them.
    let tokens = json_lines(&json(&["token", "list", "--json"]));
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    assert_eq!(tokens[0]["name"], "root");
    assert_eq!(tokens[0]["role"], "admin");
    let api: Vec<serde_json::Value> = s.get("/v1/tokens", &admin).json().unwrap();
    assert_eq!(tokens, api);
    let components = json_lines(&json(&["component", "list", "--json"]));
    let api: Vec<serde_json::Value> = s.get("/v1/components", &admin).json().unwrap();
    assert_eq!(components, api);
    assert_eq!(components[0]["name"], "probe");
    assert!(
        components[0]["digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    let workflows = json_lines(&json(&["workflow", "list", "--json"]));
    let api: Vec<serde_json::Value> = s.get("/v1/workflows", &admin).json().unwrap();
    assert_eq!(workflows, api);
    assert_eq!(workflows[0]["name"], "echo");

    // A run: one document, a RunView; the exit code is the run's.
    let out = json(&[
        "run",
        "probe",
        "--json",
        "--input",
        r#"{"action":"echo","n":7}"#,
    ]);
    let run = &json_lines(&out)[..];
    assert_eq!(run.len(), 1, "one document");
    assert_eq!(run[0]["status"], "succeeded", "{}", run[0]);
    assert_eq!(run[0]["output"]["n"], 7, "{}", run[0]);
    assert_eq!(run[0]["steps"][0]["status"], "succeeded");
    let out = json(&[
        "run",
        "probe",
        "--json",
        "--input",
        r#"{"action":"get","key":"NOPE"}"#,
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let run: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(run["status"], "failed", "{run}");
    assert!(run["error"].as_str().unwrap().contains("NOPE"), "{run}");

    // A check: one document, a CheckView; exit 1 as the text form.
    let out = json(&["check", manifest, "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let check: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(check["user"], "root");
    assert_eq!(check["problems"], 1, "{check}");
    assert_eq!(check["steps"][0]["name"], "only");
    assert_eq!(check["steps"][0]["component"], "ok");
    assert_eq!(check["steps"][0]["keys"][0]["key"], "NOPE");
    assert!(
        check["steps"][0]["keys"][0]["resolution"]["Err"].is_string(),
        "{check}"
    );
}

/// A destination the binding refuses is said once by `latchkey run --server`, with what the
/// binding allows, for a single step and for a workflow: not once by the step's report and
/// again by the run's error.
#[test]
fn a_refusal_through_a_server_is_said_once() {
    let (cli, admin) = store_with_admin();
    let bound = latchkey_tests::upstream::Upstream::start_blocking().unwrap();
    let other = latchkey_tests::upstream::Upstream::start_blocking().unwrap();
    let s = Server::start(&cli, &[]);
    let ok = |args: &[&str], stdin: Option<&[u8]>| {
        let out = remote(&cli, &s, &admin, args, stdin);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
    };
    let host = format!("127.0.0.1:{}", bound.port());
    ok(
        &[
            "secret",
            "set",
            "API",
            "--allow-host",
            &host,
            "--inject",
            "header:authorization",
            "--allow-http",
        ],
        Some(VALUE.as_bytes()),
    );
    let probe = latchkey_tests::guest("probe").display().to_string();
    ok(&["component", "add", &probe, "--name", "probe"], None);
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("call.toml");
    std::fs::write(
        &manifest,
        "name = \"call\"\n[[step]]\nname = \"only\"\ncomponent = \"probe\"\n",
    )
    .unwrap();
    let manifest = manifest.to_str().unwrap();
    ok(&["workflow", "add", manifest], None);
    let input = format!(
        r#"{{"action":"fetch","url":"{}","key":"API"}}"#,
        other.url("/echo")
    );
    let refusal = format!(
        "credential API may not be sent to http://127.0.0.1:{}",
        other.port()
    );
    for target in ["probe", manifest] {
        let out = remote(&cli, &s, &admin, &["run", target, "--input", &input], None);
        assert_eq!(out.status.code(), Some(3), "{target}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.matches(&refusal).count(), 1, "{target}: {err}");
        assert!(err.contains("error: "), "{target}: {err}");
    }
    assert_eq!(other.request_count(), 0);
}

/// `--server` over plain http was trusted as loopback when its text started with
/// `http://127.` or `http://localhost` (so `http://localhost.evil.example` was), and any
/// other plain-http server still got the bearer token. Here an HTTP proxy on 127.0.0.1
/// (as `HTTP_PROXY` names it) stands for the network: it saw the token and, with
/// `--no-seal`, the value. Plain http now goes only to a loopback address or `localhost`.
#[test]
fn plain_http_goes_only_to_loopback_and_never_carries_the_token_elsewhere() {
    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};
    let cli = Cli::new();
    let token = "lk_test-token-that-must-stay-home-5c1d";
    let value = "value-that-must-stay-home-9e2f4a";
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::<u8>::new()));
    let into = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(std::time::Duration::from_millis(500)));
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stream.read(&mut buf) {
                into.lock().unwrap().extend_from_slice(&buf[..n]);
            }
            let _ = stream.write_all(
                b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
        }
    });
    for server in [
        "http://localhost.evil.example:8700",
        "http://127.0.0.1.evil.example",
        "http://localhost@evil.example",
        "http://example.com",
        "http://10.0.0.1:8700",
    ] {
        let mut c = cli.command(&[
            "secret",
            "set",
            "K",
            "--allow-host",
            "example.com",
            "--inject",
            "header:authorization",
            "--no-seal",
        ]);
        c.env("LATCHKEY_SERVER", server)
            .env("LATCHKEY_TOKEN", token)
            .env("HTTP_PROXY", &proxy)
            .env("http_proxy", &proxy)
            .env_remove("NO_PROXY")
            .env_remove("no_proxy");
        let out = cli.output(c, Some(value.as_bytes()));
        assert!(!out.status.success(), "{server}");
        assert!(
            text(&out).contains("plain http") || text(&out).contains("user info is refused"),
            "{server}: {}",
            text(&out)
        );
    }
    let got = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    assert!(
        !got.contains(token) && !got.contains(value),
        "sent over plain http: {got}"
    );
    // Loopback by address or by the name `localhost` passes the check (nothing listens
    // there, so the command then fails to connect).
    for server in ["http://127.0.0.1:1", "http://localhost:1", "http://[::1]:1"] {
        let mut c = cli.command(&["secret", "list"]);
        c.env("LATCHKEY_SERVER", server)
            .env("LATCHKEY_TOKEN", token);
        let out = cli.output(c, None);
        assert!(!out.status.success(), "{server}");
        assert!(
            text(&out).contains("cannot reach"),
            "{server}: {}",
            text(&out)
        );
    }
}

#[test]
fn scripts_are_enabled_through_a_server_by_an_admin_only() {
    let (cli, admin) = store_with_admin();
    let s = Server::start(&cli, &[]);
    let created = remote(
        &cli,
        &s,
        &admin,
        &["token", "create", "--name", "agent", "--role", "runner"],
        None,
    );
    assert!(created.status.success(), "{}", text(&created));
    let runner = String::from_utf8(created.stdout).unwrap().trim().to_owned();
    let refused = remote(
        &cli,
        &s,
        &runner,
        &["scripts", "enable", "--max-keys", "API"],
        None,
    );
    assert!(!refused.status.success());
    assert!(text(&refused).contains("runner role"), "{}", text(&refused));
    let on = remote(
        &cli,
        &s,
        &admin,
        &["scripts", "enable", "--max-keys", "API"],
        None,
    );
    assert!(on.status.success(), "{}", text(&on));
    let shown = remote(&cli, &s, &runner, &["scripts", "show", "--json"], None);
    assert!(shown.status.success(), "{}", text(&shown));
    let policy: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(
        policy,
        serde_json::json!({"enabled": true, "max_keys": ["API"]})
    );
}

/// `latchkey-client ARGS`: the thin client, with `token` in LATCHKEY_TOKEN and the server in
/// LATCHKEY_SERVER (unless `server` is `None`), and nothing else of the environment's.
fn thin(cli: &Cli, server: Option<&Server>, token: &str, args: &[&str]) -> Output {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey-client"));
    c.args(args);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("LATCHKEY_") {
            c.env_remove(name);
        }
    }
    if let Some(s) = server {
        c.env("LATCHKEY_SERVER", &s.url);
    }
    c.env("LATCHKEY_TOKEN", token);
    cli.output(c, None)
}

/// `latchkey-client run` (the client without the engine) prints what `latchkey run
/// --server` prints, as JSON too, with the same exit codes; it needs a server and a token.
#[test]
fn the_thin_client_runs_as_latchkey_run_server_does() {
    let (cli, admin) = store_with_admin();
    cli.never_prints(VALUE);
    let up = latchkey_tests::upstream::Upstream::start_blocking().unwrap();
    let s = Server::start(&cli, &[]);
    let host = format!("127.0.0.1:{}", up.port());
    let set = remote(&cli, &s, &admin, &set_api(&host), Some(VALUE.as_bytes()));
    assert!(set.status.success(), "{}", text(&set));
    let probe = latchkey_tests::guest("probe").display().to_string();
    let add = ["component", "add", &probe, "--name", "probe"];
    assert!(remote(&cli, &s, &admin, &add, None).status.success());

    let fetch = format!(
        r#"{{"action":"fetch","url":"{}","key":"API"}}"#,
        up.url("/echo")
    );
    let args = ["run", "probe", "--input", &fetch, "--report"];
    let full = remote(&cli, &s, &admin, &args, None);
    let small = thin(&cli, Some(&s), &admin, &args);
    assert!(small.status.success(), "{}", text(&small));
    // The same output, but for the upstream's `date` header, which can be a second apart.
    let printed = |out: &Output| {
        let mut v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["headers"] = serde_json::Value::Null;
        v
    };
    assert_eq!(printed(&small), printed(&full), "{}", text(&small));
    assert!(
        String::from_utf8_lossy(&small.stderr).contains("credential API from tier workspace"),
        "{}",
        text(&small)
    );
    assert_eq!(up.requests().len(), 2);
    for r in up.requests() {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {VALUE}").as_str())
        );
    }

    // --json: one document, the API's fields.
    let args = [
        "run",
        &probe,
        "--input",
        r#"{"action":"echo","n":7}"#,
        "--json",
    ];
    let small = thin(&cli, Some(&s), &admin, &args);
    assert!(small.status.success(), "{}", text(&small));
    let run: serde_json::Value = serde_json::from_slice(&small.stdout).unwrap();
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["output"]["n"], 7, "{run}");

    // A failed step: exit 3 and the refusal, as `latchkey run` says them.
    let args = [
        "run",
        "probe",
        "--input",
        r#"{"action":"get","key":"NOPE"}"#,
    ];
    let (full, small) = (
        remote(&cli, &s, &admin, &args, None),
        thin(&cli, Some(&s), &admin, &args),
    );
    assert_eq!(small.status.code(), Some(3), "{}", text(&small));
    assert_eq!(full.status.code(), Some(3), "{}", text(&full));
    assert!(
        text(&small).contains("missing-credential"),
        "{}",
        text(&small)
    );

    // Bad input, a bad token and no server are errors that say what to do.
    let small = thin(
        &cli,
        Some(&s),
        &admin,
        &["run", "probe", "--input", "{nope"],
    );
    assert_eq!(small.status.code(), Some(1));
    assert!(text(&small).contains("not valid JSON"), "{}", text(&small));
    let small = thin(&cli, Some(&s), "lk_nope", &["run", "probe"]);
    assert_eq!(small.status.code(), Some(1));
    assert!(text(&small).contains("401"), "{}", text(&small));
    let small = thin(&cli, None, &admin, &["run", "probe"]);
    assert_eq!(small.status.code(), Some(1));
    assert!(
        text(&small).contains("give --server URL or set LATCHKEY_SERVER"),
        "{}",
        text(&small)
    );
    // A manifest declares its own context: the single-step flags are refused for it.
    let manifest = cli.path("wf.toml");
    std::fs::write(
        &manifest,
        "name = \"wf\"\n[[step]]\nname = \"a\"\ncomponent = \"probe\"\n",
    )
    .unwrap();
    let small = thin(
        &cli,
        Some(&s),
        &admin,
        &["run", &manifest.display().to_string(), "--workspace", "w"],
    );
    assert_eq!(small.status.code(), Some(1));
    assert!(
        text(&small).contains("--workspace applies to a single .wasm step"),
        "{}",
        text(&small)
    );
    let help = thin(&cli, None, &admin, &["run", "--help"]);
    assert!(help.status.success());
    for flag in [
        "--input-file",
        "--allow-key",
        "--json",
        "--server",
        "--token-file",
    ] {
        assert!(text(&help).contains(flag), "{flag}: {}", text(&help));
    }
}
