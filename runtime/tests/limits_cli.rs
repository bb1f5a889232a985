//! The `latchkey` binary: limit flags, what reaches the operator's terminal, network
//! grants, and the binding and store-change flags of `secret`.
#![allow(clippy::unwrap_used)]

use latchkey_tests::upstream::Upstream;
use std::process::Output;

/// Long and varied enough for the store's strength check.
const TOKEN: &str = "lk_cli_8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a";

mod harness;

use harness::{Cli as Env, text};

/// A store whose commands must never print [`TOKEN`].
fn env() -> Env {
    let env = Env::new();
    env.never_prints(TOKEN);
    env
}

/// `latchkey run probe.wasm --no-cache --input INPUT EXTRA...`.
fn probe(env: &Env, input: &str, extra: &[&str]) -> Output {
    let probe = harness::guest("probe");
    let mut args = vec!["run", probe.as_str(), "--no-cache", "--input", input];
    args.extend_from_slice(extra);
    env.run(&args, None)
}

#[test]
fn help_documents_every_limit_flag() {
    let env = env();
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
    let env = env();
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
        let out = probe(&env, r#"{"action":"echo"}"#, args);
        assert!(!out.status.success(), "{args:?} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(flag), "{args:?}: {err}");
    }
}

#[test]
fn log_escape_sequences_never_reach_the_terminal() {
    let env = env();
    let input = serde_json::json!({
        "action": "log",
        "message": "\u{1b}[31mred\u{1b}]0;title\u{7} \u{9b}2J",
    })
    .to_string();
    let out = probe(&env, &input, &[]);
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
    let env = env();
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
    let out = probe(
        &env,
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
    let out = probe(&env, &input, &["--max-log-kib", "1"]);
    assert!(out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("zzzz"), "{err}");
    assert!(err.contains("1 more log lines dropped"), "{err}");
}

#[test]
fn network_grants_are_cidrs_and_allow_private_network_means_loopback() {
    let env = env();
    let up = Upstream::start_blocking().unwrap();
    let input = serde_json::json!({"action": "fetch", "url": up.url("/echo")}).to_string();
    // No grant: loopback is refused.
    let out = probe(&env, &input, &[]);
    assert_eq!(up.request_count(), 0, "{}", text(&out));
    // A grant covering it.
    let out = probe(&env, &input, &["--allow-internal", "127.0.0.1/32"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(up.request_count(), 1, "{}", text(&out));
    // A grant not covering it.
    probe(&env, &input, &["--allow-internal", "10.0.0.0/8"]);
    assert_eq!(up.request_count(), 1);
    // The short form.
    let out = probe(&env, &input, &["--allow-private-network"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(up.request_count(), 2, "{}", text(&out));
    // Not a CIDR.
    let out = probe(&env, &input, &["--allow-internal", "localhost"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--allow-internal"),
        "{}",
        text(&out)
    );
}

#[test]
fn secret_set_binding_flags_and_weak_value_override_show_in_list() {
    let env = env();
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
    let env = env();
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

#[test]
fn secret_quota_flags_show_in_list_and_a_daily_quota_holds_across_processes() {
    let env = env();
    let up = Upstream::start_blocking().unwrap();
    let host = format!("127.0.0.1:{}", up.port());
    let set = |extra: &[&str]| {
        let mut args = vec![
            "secret",
            "set",
            "TOKEN",
            "--allow-host",
            &host,
            "--inject",
            "header:authorization",
            "--allow-http",
        ];
        args.extend_from_slice(extra);
        env.run(&args, Some(TOKEN.as_bytes()))
    };
    // A zero quota is refused, naming the flag, and nothing is stored.
    let out = set(&["--quota-per-minute", "0"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("at least 1"), "{}", text(&out));
    let list = String::from_utf8_lossy(&env.ok(&["secret", "list"], None).stdout).into_owned();
    assert!(list.contains("no secrets"), "{list}");

    let out = set(&["--quota-per-minute", "60", "--quota-per-day", "2"]);
    assert!(out.status.success(), "{}", text(&out));
    let list = String::from_utf8_lossy(&env.ok(&["secret", "list"], None).stdout).into_owned();
    assert!(list.contains("quota 60/min 2/day"), "{list}");
    let json =
        String::from_utf8_lossy(&env.ok(&["secret", "list", "--json"], None).stdout).into_owned();
    let meta: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(
        meta["quota"],
        serde_json::json!({"per_minute": 60, "per_day": 2})
    );

    // Every `latchkey run` is a new process opening the store: the day's count persists.
    let input =
        serde_json::json!({"action": "fetch", "url": up.url("/echo"), "key": "TOKEN"}).to_string();
    for _ in 0..2 {
        let out = probe(&env, &input, &["--allow-private-network"]);
        assert!(out.status.success(), "{}", text(&out));
    }
    let out = probe(&env, &input, &["--allow-private-network"]);
    let all = text(&out);
    assert!(
        all.contains("TOKEN") && all.contains("per-day request quota"),
        "{all}"
    );
    assert_eq!(up.request_count(), 2);

    // Rotation keeps the quota unless told otherwise; --no-quota removes it.
    env.ok(&["secret", "rotate", "TOKEN"], Some(TOKEN.as_bytes()));
    let list = String::from_utf8_lossy(&env.ok(&["secret", "list"], None).stdout).into_owned();
    assert!(list.contains("quota 60/min 2/day"), "{list}");
    env.ok(
        &["secret", "rotate", "TOKEN", "--no-quota"],
        Some(TOKEN.as_bytes()),
    );
    let list = String::from_utf8_lossy(&env.ok(&["secret", "list"], None).stdout).into_owned();
    assert!(!list.contains("quota"), "{list}");
    let out = probe(&env, &input, &["--allow-private-network"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(up.request_count(), 3);
}

#[test]
fn secret_set_kind_hmac_sha256_is_checked_against_its_binding_and_shown() {
    let env = env();
    let set = |kind: &str, inject: &str| {
        env.run(
            &[
                "secret",
                "set",
                "HOOK_KEY",
                "--kind",
                kind,
                "--allow-host",
                "hooks.example.com",
                "--inject",
                inject,
            ],
            Some(TOKEN.as_bytes()),
        )
    };
    let out = set("rsa", "header:x-signature");
    assert!(!out.status.success());
    assert!(text(&out).contains("--kind"), "{}", text(&out));
    let out = set("hmac-sha256", "basic-auth");
    assert!(!out.status.success());
    assert!(text(&out).contains("header: or query:"), "{}", text(&out));
    env.ok(
        &[
            "secret",
            "set",
            "HOOK_KEY",
            "--kind",
            "hmac-sha256",
            "--allow-host",
            "hooks.example.com",
            "--inject",
            "header:x-hub-signature-256",
        ],
        Some(TOKEN.as_bytes()),
    );
    let list = String::from_utf8_lossy(&env.ok(&["secret", "list"], None).stdout).into_owned();
    assert!(list.contains("signing key: hmac-sha256"), "{list}");
    let json =
        String::from_utf8_lossy(&env.ok(&["secret", "list", "--json"], None).stdout).into_owned();
    assert!(json.contains(r#""kind":"hmac-sha256""#), "{json}");
}
