//! The `latchkey` binary: limit flags, what reaches the operator's terminal, network
//! grants, and the binding and store-change flags of `secret`.
#![allow(clippy::unwrap_used)]

use latchkey_tests::upstream::Upstream;
use std::io::Write;
use std::process::{Command, Output, Stdio};

/// Long and varied enough for the store's strength check.
const TOKEN: &str = "lk_cli_8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a";

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let env = Env {
            dir: tempfile::tempdir().unwrap(),
        };
        let out = env.run(&["init"], None);
        assert!(out.status.success(), "{}", text(&out));
        env
    }

    fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_latchkey"));
        c.args(args)
            .env("LATCHKEY_STORE", self.dir.path().join("store"))
            .env(
                "LATCHKEY_MASTER_KEY_FILE",
                self.dir.path().join("master.key"),
            )
            .env_remove("LATCHKEY_MASTER_KEY")
            .env_remove("LATCHKEY_ACTOR")
            .env("USER", "ops")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let mut pipe = child.stdin.take().unwrap();
        if let Some(bytes) = stdin {
            pipe.write_all(bytes).unwrap();
        }
        drop(pipe);
        let out = child.wait_with_output().unwrap();
        assert!(
            !text(&out).contains(TOKEN),
            "printed the value: {}",
            text(&out)
        );
        out
    }

    fn ok(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let out = self.run(args, stdin);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        out
    }

    /// `latchkey run probe.wasm --input INPUT EXTRA...`.
    fn probe(&self, input: &str, extra: &[&str]) -> Output {
        let probe = latchkey_tests::guest("probe").display().to_string();
        let mut args = vec!["run", probe.as_str(), "--no-cache", "--input", input];
        args.extend_from_slice(extra);
        self.run(&args, None)
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn help_documents_every_limit_flag() {
    let env = Env::new();
    let out = env.ok(&["run", "--help"], None);
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--memory-mib",
        "--deadline",
        "--request-timeout",
        "--max-fetches",
        "--max-request-kib",
        "--max-response-kib",
        "--max-request-headers",
        "--max-response-headers",
        "--max-log-kib",
        "--max-credential-gets",
        "--max-header-value-kib",
        "--max-value-parts",
        "--max-query-params",
        "--max-injected-credentials",
        "--max-secret-parts",
        "--allow-internal",
        "--allow-private-network",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
    assert!(help.contains("linear memories and tables"), "{help}");
}

#[test]
fn nonsense_limits_are_refused_with_the_flag_named() {
    let env = Env::new();
    for (args, flag) in [
        (&["--memory-mib", "0"][..], "--memory-mib"),
        (&["--deadline=-1"][..], "--deadline"),
        (&["--deadline", "NaN"][..], "--deadline"),
        (&["--deadline", "0"][..], "--deadline"),
        (&["--request-timeout", "inf"][..], "--request-timeout"),
        (&["--max-fetches", "0"][..], "--max-fetches"),
        (&["--max-credential-gets", "0"][..], "--max-credential-gets"),
        (&["--max-log-kib", "0"][..], "--max-log-kib"),
        (&["--max-value-parts", "0"][..], "--max-value-parts"),
    ] {
        let out = env.probe(r#"{"action":"echo"}"#, args);
        assert!(!out.status.success(), "{args:?} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(flag), "{args:?}: {err}");
    }
}

#[test]
fn log_escape_sequences_never_reach_the_terminal() {
    let env = Env::new();
    let input = serde_json::json!({
        "action": "log",
        "message": "\u{1b}[31mred\u{1b}]0;title\u{7} \u{9b}2J",
    })
    .to_string();
    let out = env.probe(&input, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!out.stderr.contains(&0x1b), "{}", text(&out));
    assert!(!out.stderr.contains(&0x07), "{}", text(&out));
    assert!(!String::from_utf8_lossy(&out.stderr).contains('\u{9b}'));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("\\u{1b}[31mred"),
        "{}",
        text(&out)
    );
}

#[test]
fn credential_gets_and_log_bytes_follow_their_flags() {
    let env = Env::new();
    let up = Upstream::start_blocking().unwrap();
    env.ok(
        &[
            "secret",
            "set",
            "TOKEN",
            "--allow-host",
            &format!("127.0.0.1:{}", up.port()),
            "--inject",
            "header:authorization",
            "--allow-http",
        ],
        Some(TOKEN.as_bytes()),
    );
    let out = env.probe(
        r#"{"action":"gets","key":"TOKEN","count":1000}"#,
        &["--max-credential-gets", "5"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["got"], 5, "{v}");
    assert_eq!(v["error"], "too many credential handles", "{v}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("max_credential_gets"),
        "{}",
        text(&out)
    );

    let long = "z".repeat(2000);
    let input = serde_json::json!({"action": "log", "message": long}).to_string();
    let out = env.probe(&input, &["--max-log-kib", "1"]);
    assert!(out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("zzzz"), "{err}");
    assert!(err.contains("1 more log lines dropped"), "{err}");
}

#[test]
fn network_grants_are_cidrs_and_allow_private_network_means_loopback() {
    let env = Env::new();
    let up = Upstream::start_blocking().unwrap();
    let input = serde_json::json!({"action": "fetch", "url": up.url("/echo")}).to_string();
    // No grant: loopback is refused.
    let out = env.probe(&input, &[]);
    assert_eq!(up.request_count(), 0, "{}", text(&out));
    // A grant covering it.
    let out = env.probe(&input, &["--allow-internal", "127.0.0.1/32"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(up.request_count(), 1, "{}", text(&out));
    // A grant not covering it.
    env.probe(&input, &["--allow-internal", "10.0.0.0/8"]);
    assert_eq!(up.request_count(), 1);
    // The short form.
    let out = env.probe(&input, &["--allow-private-network"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(up.request_count(), 2, "{}", text(&out));
    // Not a CIDR.
    let out = env.probe(&input, &["--allow-internal", "localhost"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--allow-internal"),
        "{}",
        text(&out)
    );
}

#[test]
fn secret_set_binding_flags_and_weak_value_override_show_in_list() {
    let env = Env::new();
    let set = |extra: &[&str], value: &str| {
        let mut args = vec![
            "secret",
            "set",
            "API_KEY",
            "--allow-host",
            "api.example.com",
            "--inject",
            "header:x-api-key",
        ];
        args.extend_from_slice(extra);
        env.run(&args, Some(value.as_bytes()))
    };
    // A guessable value is refused unless overridden.
    let weak = set(&[], "password");
    assert!(!weak.status.success(), "{}", text(&weak));
    env.ok(
        &[
            "secret",
            "set",
            "API_KEY",
            "--allow-host",
            "api.example.com",
            "--inject",
            "header:x-api-key",
            "--method",
            "get",
            "--method",
            "POST",
            "--path-prefix",
            "/v2/",
            "--allow-internal",
            "--allow-weak-value",
        ],
        Some(b"password"),
    );
    let list = String::from_utf8_lossy(&env.ok(&["secret", "list"], None).stdout).into_owned();
    assert!(list.contains("GET"), "{list}");
    assert!(list.contains("POST"), "{list}");
    assert!(list.contains("/v2"), "{list}");
    assert!(list.contains("internal allowed"), "{list}");
    assert!(list.contains("weak value allowed"), "{list}");
    // Rotating to another weak value needs the override again.
    let out = env.run(&["secret", "rotate", "API_KEY"], Some(b"password1"));
    assert!(!out.status.success(), "{}", text(&out));
    env.ok(
        &["secret", "rotate", "API_KEY", "--allow-weak-value"],
        Some(b"password1"),
    );
    // A strong value rotates without it, and the override is cleared.
    env.ok(&["secret", "rotate", "API_KEY"], Some(TOKEN.as_bytes()));
    let list = String::from_utf8_lossy(&env.ok(&["secret", "list"], None).stdout).into_owned();
    assert!(!list.contains("weak value allowed"), "{list}");
}

#[test]
fn secret_rm_records_the_acting_identity() {
    let env = Env::new();
    env.ok(
        &[
            "secret",
            "set",
            "API_KEY",
            "--allow-host",
            "api.example.com",
            "--inject",
            "header:x-api-key",
        ],
        Some(TOKEN.as_bytes()),
    );
    env.ok(&["secret", "rm", "API_KEY", "--as", "carol"], None);
    let audit = String::from_utf8_lossy(&env.ok(&["audit", "--json"], None).stdout).into_owned();
    let delete = audit
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["event"].as_str().is_some_and(|e| e.contains("delete")))
        .unwrap_or_else(|| panic!("no delete record: {audit}"));
    assert_eq!(delete["actor"], "carol", "{delete}");
    env.ok(&["audit", "verify"], None);
}
