//! The `latchkey` binary, end to end: the commands an operator types, against a loopback
//! fake upstream. The value of a secret must never appear in anything the binary prints.
#![allow(clippy::unwrap_used)]

use latchkey_tests::upstream::Upstream;
use std::path::Path;
use std::process::Stdio;

const TOKEN: &str = "xoxb-cli-0123456789-secret";

mod harness;

use harness::{Cli as Env, guest, text};

/// A store whose commands must never print [`TOKEN`].
fn env() -> Env {
    let env = Env::new();
    env.never_prints(TOKEN);
    env
}

#[test]
fn run_injects_the_stored_value_and_prints_the_guest_output() {
    let up = Upstream::start_blocking().unwrap();
    up.expect_bearer(Some(TOKEN));
    let env = env();
    let host = format!("127.0.0.1:{}", up.port());
    let out = env.secret_set("SLACK_TOKEN", TOKEN, &host, "header:Authorization", &[]);
    assert!(out.status.success(), "{}", text(&out));
    let input = format!(
        r##"{{"channel":"#ops","text":"deployed","api_base":"{}"}}"##,
        up.base_url()
    );
    let out = env.run(
        &[
            "run",
            &guest("slack_post"),
            "--allow-private-network",
            "--report",
            "--input",
            &input,
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true);
    // The trailing newline from stdin was not part of the value.
    assert_eq!(
        up.last_request().unwrap().header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("credential SLACK_TOKEN from tier workspace")
    );
    // The audit trail names the key and destination.
    let out = env.run(&["audit"], None);
    assert!(
        text(&out).contains("SLACK_TOKEN") && text(&out).contains(&host),
        "{}",
        text(&out)
    );
}

const FIRST: &str = "first_7f3a9c2e5b8d14069e2c";
const SECOND: &str = "second_2b9e4d7a1c6f30851d7a";

#[test]
fn rotation_is_used_by_the_next_run_and_deletion_fails_it() {
    let up = Upstream::start_blocking().unwrap();
    let env = env();
    let host = format!("127.0.0.1:{}", up.port());
    // Values that pass the store's strength check (a guessable one needs --allow-weak-value).
    let out = env.secret_set("TOKEN", FIRST, &host, "header:authorization", &[]);
    assert!(out.status.success(), "{}", text(&out));
    let input = format!(
        r#"{{"action":"fetch","url":"{}","key":"TOKEN"}}"#,
        up.url("/echo")
    );
    let run = |env: &Env| {
        env.run(
            &[
                "run",
                &guest("probe"),
                "--allow-private-network",
                "--input",
                &input,
            ],
            None,
        )
    };
    assert!(run(&env).status.success());
    let out = env.run(&["secret", "rotate", "TOKEN"], Some(SECOND.as_bytes()));
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("version 2"));
    assert!(run(&env).status.success());
    let auths: Vec<_> = up
        .requests()
        .iter()
        .map(|r| r.header("authorization").unwrap().to_owned())
        .collect();
    assert_eq!(
        auths,
        [format!("Bearer {FIRST}"), format!("Bearer {SECOND}")]
    );
    let out = env.run(&["secret", "rm", "TOKEN"], None);
    assert!(out.status.success(), "{}", text(&out));
    let out = run(&env);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("TOKEN"), "{}", text(&out));
    assert_eq!(up.request_count(), 2);
}

#[test]
fn unbound_host_is_refused_with_a_clear_error_and_receives_nothing() {
    let bound = Upstream::start_blocking().unwrap();
    let other = Upstream::start_blocking().unwrap();
    let env = env();
    env.secret_set(
        "TOKEN",
        TOKEN,
        &format!("127.0.0.1:{}", bound.port()),
        "header:authorization",
        &[],
    );
    let input = format!(
        r#"{{"action":"fetch","url":"{}","key":"TOKEN"}}"#,
        other.url("/echo")
    );
    let out = env.run(
        &[
            "run",
            &guest("probe"),
            "--allow-private-network",
            "--input",
            &input,
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("may not be sent to"), "{}", text(&out));
    assert_eq!(other.request_count(), 0);
}

#[test]
fn bad_inputs_are_refused_with_a_message_and_leave_the_store_unchanged() {
    let env = env();
    let ok = env.secret_set(
        "GOOD",
        TOKEN,
        "api.example.com",
        "header:authorization",
        &[],
    );
    assert!(ok.status.success(), "{}", text(&ok));
    let big = vec![b'a'; 64 * 1024 + 1];
    // Without --allow-http.
    let set =
        |key: &'static str, host: &'static str, inject: &'static str, extra: &[&'static str]| {
            let mut args = harness::secret_set_args(key, host, inject);
            args.extend_from_slice(extra);
            args
        };
    let good =
        |extra: &[&'static str]| set("GOOD", "api.example.com", "header:authorization", extra);
    let cases: Vec<(Vec<&str>, Vec<u8>, &str)> = vec![
        (good(&[]), big, "64 KiB"),
        (good(&[]), b"".to_vec(), "empty"),
        (good(&[]), b"a\r\nX-Evil: 1".to_vec(), "CR, LF, NUL"),
        (
            set("bad-key", "api.example.com", "header:authorization", &[]),
            b"v".to_vec(),
            "A-Z, 0-9",
        ),
        (
            set("", "api.example.com", "header:authorization", &[]),
            b"v".to_vec(),
            "empty",
        ),
        (
            set(
                "GOOD",
                "https://api.example.com",
                "header:authorization",
                &[],
            ),
            b"v".to_vec(),
            "not a URL",
        ),
        (
            set("GOOD", "*.com", "header:authorization", &[]),
            b"v".to_vec(),
            "wildcard",
        ),
        (
            set("GOOD", "api.example.com", "cookie", &[]),
            b"v".to_vec(),
            "header:NAME",
        ),
        (good(&["--scope", "galaxy"]), b"v".to_vec(), "invalid scope"),
        (
            vec!["secret", "rotate", "NOPE"],
            b"v".to_vec(),
            "no secret NOPE",
        ),
        (vec!["secret", "rm", "NOPE"], b"".to_vec(), "no secret NOPE"),
    ];
    for (args, stdin, expect) in cases {
        let out = env.run(&args, Some(&stdin));
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            text(&out).contains(expect),
            "{args:?}: expected {expect:?} in {}",
            text(&out)
        );
    }
    let list = env.run(&["secret", "list", "--json"], None);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["key"], "GOOD");
    assert_eq!(lines[0]["version"], 1);
}

#[test]
fn wrong_master_key_fails_at_open_with_a_clear_message() {
    let env = env();
    let out = env
        .command(&["secret", "list"])
        .env("LATCHKEY_MASTER_KEY", "00".repeat(32))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out).contains("master key does not open the store"),
        "{}",
        text(&out)
    );
    let out = env
        .command(&["secret", "list"])
        .env("LATCHKEY_MASTER_KEY", "short")
        .output()
        .unwrap();
    assert!(text(&out).contains("64 hex characters"), "{}", text(&out));
}

#[test]
fn init_writes_a_private_key_file_and_refuses_to_overwrite() {
    use std::os::unix::fs::PermissionsExt;
    let env = env();
    let key = env.dir.path().join("master.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(std::fs::read_to_string(&key).unwrap().trim().len(), 64);
    let out = env.run(&["init"], None);
    assert!(!out.status.success());
    assert!(text(&out).contains("already exists"), "{}", text(&out));
}

#[test]
fn malformed_wasm_and_bad_input_json_give_clear_errors() {
    let env = env();
    let junk = env.dir.path().join("junk.wasm");
    std::fs::write(&junk, b"not wasm").unwrap();
    let out = env.run(&["run", junk.to_str().unwrap()], None);
    assert!(!out.status.success());
    assert!(text(&out).contains("magic"), "{}", text(&out));
    let out = env.run(&["run", &guest("probe"), "--input", "{not json"], None);
    assert!(text(&out).contains("not valid JSON"), "{}", text(&out));
    let out = env.run(
        &["run", Path::new("/nonexistent/x.wasm").to_str().unwrap()],
        None,
    );
    assert!(text(&out).contains("reading the step"), "{}", text(&out));
    let http = latchkey_tests::http_importing_guest();
    let out = env.run(&["run", http.to_str().unwrap()], None);
    assert!(text(&out).contains("wasi:http"), "{}", text(&out));
}

#[test]
fn a_trapping_step_exits_non_zero_with_the_reason() {
    let env = env();
    let out = env.run(&["run", &guest("spin"), "--deadline", "0.5"], None);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("deadline"), "{}", text(&out));
    let out = env.run(&["run", &guest("panic")], None);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out).contains("panicked"), "{}", text(&out));
}

#[test]
fn second_process_on_the_same_store_gets_an_in_use_error() {
    let env = env();
    // A server holds the store open. Poll rather than sleep a fixed time: on a loaded
    // machine the holder may take a while to start; it must still be running when the
    // second process is refused.
    let spawn = || {
        env.command(&["serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut holder = spawn();
    let started = std::time::Instant::now();
    let out = loop {
        // The holder itself may lose the race to a poll (it then finds the store in use and
        // exits): start it again.
        if holder.try_wait().unwrap().is_some() {
            holder = spawn();
        }
        let out = env.run(&["secret", "list"], None);
        if !out.status.success() || started.elapsed() > std::time::Duration::from_secs(15) {
            break out;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let holder_was_running = holder.try_wait().unwrap().is_none();
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(holder_was_running, "the holder exited before the check");
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("in use by another process"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_step_that_uses_no_credential_runs_while_another_process_holds_the_store() {
    let env = env();
    let mut holder = env
        .command(&["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()),
        &mut first,
    )
    .unwrap();
    assert!(first.starts_with("latchkey serving on"), "{first}");
    // The database is not opened for a step that asks for nothing (only the data key,
    // from the file beside it, for the compiled-component cache).
    let out = env.run(&["run", &guest("noop"), "--input", "{\"a\":1}"], None);
    let listed = env.run(&["secret", "list"], None);
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "{\"a\":1}");
    assert!(
        text(&listed).contains("in use by another process")
            && text(&listed).contains("--server URL"),
        "{}",
        text(&listed)
    );
}

#[test]
fn help_explains_the_commands() {
    let env = env();
    let out = env.run(&["--help"], None);
    for cmd in ["init", "secret", "run", "audit"] {
        assert!(text(&out).contains(cmd), "{}", text(&out));
    }
    let out = env.run(&["secret", "set", "--help"], None);
    assert!(
        text(&out).contains("--allow-host") && text(&out).contains("never from the command line")
            || text(&out).contains("stdin")
    );
}

/// The help of `args`, split at its `Global options:` heading: (the command's own part, the
/// global part).
fn help_parts(env: &Env, args: &[&str]) -> (String, String) {
    let out = env.run(args, None);
    assert!(out.status.success(), "{}", text(&out));
    let help = String::from_utf8(out.stdout).unwrap();
    let (own, global) = help
        .split_once("\nGlobal options:\n")
        .unwrap_or_else(|| panic!("no Global options heading:\n{help}"));
    (own.to_owned(), global.to_owned())
}

#[test]
fn global_options_have_their_own_heading_and_serve_shows_no_server() {
    let env = env();
    let globals = [
        "--store",
        "--master-key-file",
        "--transit-addr",
        "--transit-key",
        "--server",
        "--token-file",
    ];
    for args in [
        &["secret", "set", "--help"][..],
        &["run", "--help"],
        &["--help"],
    ] {
        let (own, global) = help_parts(&env, args);
        for g in globals {
            assert!(global.contains(g), "{args:?}: {g} not under Global options");
            assert!(
                !own.contains(&format!("  {g} ")),
                "{args:?}: {g} among the command's own"
            );
        }
    }
    let (own, _) = help_parts(&env, &["secret", "set", "--help"]);
    assert!(own.contains("--allow-host"), "{own}");
    // `serve` is the server: no --server or --token-file in its help (the rest stays).
    let (own, global) = help_parts(&env, &["serve", "--help"]);
    assert!(own.contains("--listen"), "{own}");
    assert!(global.contains("--store"), "{global}");
    for hidden in ["--server", "--token-file"] {
        assert!(
            !own.contains(hidden) && !global.contains(hidden),
            "{hidden} in serve --help"
        );
    }
    // The exit codes are documented.
    let out = env.run(&["--help"], None);
    let help = text(&out);
    let status = help.split_once("Exit status:").unwrap().1;
    for code in [
        "  0  success",
        "  1  an error",
        "  2  a usage error",
        "  3  `run`: a step failed",
    ] {
        assert!(status.contains(code), "{code}:\n{status}");
    }
    // ...and are the ones returned: 2 for a usage error.
    assert_eq!(env.run(&["secret", "set"], None).status.code(), Some(2));
}

#[test]
fn completions_are_generated_for_bash_zsh_and_fish() {
    let env = env();
    for shell in ["bash", "zsh", "fish"] {
        let out = env.run(&["completions", shell], None);
        assert!(out.status.success(), "{shell}: {}", text(&out));
        let script = String::from_utf8(out.stdout).unwrap();
        for word in ["latchkey", "secret", "audit", "completions", "--store"] {
            assert!(script.contains(word), "{shell}: no {word}");
        }
    }
    // The bash script is valid bash, and completes the subcommands.
    let out = env.run(&["completions", "bash"], None);
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("latchkey.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    let check = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            r#"source {} && COMP_WORDS=(latchkey sec) COMP_CWORD=1 && _latchkey latchkey sec latchkey && printf '%s\n' "${{COMPREPLY[@]}}""#,
            script.display()
        ))
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", text(&check));
    assert_eq!(String::from_utf8_lossy(&check.stdout).trim(), "secret");
    assert_eq!(
        env.run(&["completions", "tcsh"], None).status.code(),
        Some(2)
    );
}

#[test]
fn token_list_audit_verify_and_run_print_json_that_parses() {
    let up = Upstream::start_blocking().unwrap();
    let env = env();
    let host = format!("127.0.0.1:{}", up.port());
    assert!(
        env.secret_set("API", TOKEN, &host, "header:authorization", &[])
            .status
            .success()
    );
    for name in ["ci", "ops"] {
        assert!(
            env.run(
                &["token", "create", "--name", name, "--role", "runner"],
                None
            )
            .status
            .success()
        );
    }
    // A list: one object per line, the API's TokenMeta fields.
    let out = env.run(&["token", "list", "--json"], None);
    assert!(out.status.success(), "{}", text(&out));
    let tokens: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let names: Vec<&str> = tokens.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["ci", "ops"]);
    for t in &tokens {
        assert_eq!(t["role"], "runner");
        assert!(t["id"].is_string() && t["created_at_ms"].is_u64(), "{t}");
    }

    // audit verify: one document; its exit code is the text form's.
    let out = env.run(&["audit", "verify", "--json"], None);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["intact"], true, "{v}");
    assert!(v["records"].as_u64().unwrap() >= 3, "{v}");
    assert_eq!(v["findings"], serde_json::json!([]));
    let head = v["head"].as_str().unwrap().to_owned();
    let out = env.run(&["audit", "verify", "--json", "--expect-head", &head], None);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["expected_head_present"], true, "{v}");
    let (seq, mac) = head.split_once(':').unwrap();
    let gone = format!("{}:{mac}", seq.parse::<u64>().unwrap() + 100);
    let out = env.run(&["audit", "verify", "--json", "--expect-head", &gone], None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["intact"].clone(), v["expected_head_present"].clone()),
        (false.into(), false.into()),
        "{v}"
    );

    // run: one document, as GET /v1/runs/{id} answers; credentials named, never values.
    let input = format!(
        r#"{{"action":"fetch","url":"{}","key":"API"}}"#,
        up.url("/echo")
    );
    let probe = guest("probe");
    let run = |input: &str| {
        env.run(
            &[
                "run",
                &probe,
                "--json",
                "--allow-private-network",
                "--input",
                input,
            ],
            None,
        )
    };
    let out = run(&input);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "succeeded", "{v}");
    assert_eq!(v["kind"], "component");
    assert!(v["id"].is_string() && v["started_at_ms"].is_u64(), "{v}");
    assert_eq!(v["output"]["status"], 200, "{v}");
    let step = &v["steps"][0];
    assert_eq!(step["status"], "succeeded", "{v}");
    assert_eq!(step["fetches"], 1, "{v}");
    assert_eq!(step["credentials"][0]["key"], "API", "{v}");
    assert_eq!(step["credentials"][0]["tier"], "workspace", "{v}");
    let out = run(r#"{"action":"get","key":"NOPE"}"#);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "failed", "{v}");
    assert!(v["output"].is_null(), "{v}");
    assert!(v["error"].as_str().unwrap().contains("NOPE"), "{v}");
    assert_eq!(v["steps"][0]["refusals"][0]["key"], "NOPE", "{v}");
}

#[test]
fn a_refused_destination_says_once_what_the_binding_allows_and_which_flags_change_it() {
    let other = Upstream::start_blocking().unwrap();
    let env = env();
    // Bound to an https API only (the harness's secret_set would add --allow-http).
    let set = harness::secret_set_args("TOKEN", "api.example.com", "header:authorization");
    let out = env.run(&set, Some(format!("{TOKEN}\n").as_bytes()));
    assert!(out.status.success(), "{}", text(&out));
    let asked = format!("127.0.0.1:{}", other.port());
    let input = format!(
        r#"{{"action":"fetch","url":"{}","key":"TOKEN"}}"#,
        other.url("/echo")
    );
    let out = env.run(
        &[
            "run",
            &guest("probe"),
            "--allow-private-network",
            "--input",
            &input,
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    // What the binding allows against what was asked, and the flags that change it.
    assert!(
        err.contains("its binding allows api.example.com over https only"),
        "{err}"
    );
    assert!(
        err.contains(&format!("--allow-host {asked} --allow-http")),
        "{err}"
    );
    // Said once, not once by the step and once by the report.
    let refusal = format!("credential TOKEN may not be sent to http://{asked}");
    assert_eq!(err.matches(&refusal).count(), 1, "{err}");
    // The step itself was told the refusal, never the binding.
    let step_said = err.lines().find(|l| l.starts_with("error: ")).unwrap();
    assert!(step_said.contains(&refusal), "{err}");
    assert!(!step_said.contains("api.example.com"), "{err}");
    assert_eq!(other.request_count(), 0);
}

/// The first run of a step says, before the wait, that it is compiling (seconds for a
/// JavaScript or Python step, which looked stuck); the next loads it from the compile cache
/// and says nothing of it.
#[test]
fn the_first_run_of_a_step_says_it_is_compiling_and_the_next_does_not() {
    let env = env();
    let noop = guest("noop");
    let run = || env.run(&["run", &noop, "--input", "{\"a\":1}"], None);
    let first = run();
    assert!(first.status.success(), "{}", text(&first));
    let said = String::from_utf8_lossy(&first.stderr);
    assert_eq!(
        said.matches(&format!("compiling {noop}")).count(),
        1,
        "{said}"
    );
    assert!(said.contains("not in the compile cache yet"), "{said}");
    let second = run();
    assert!(second.status.success(), "{}", text(&second));
    assert!(!text(&second).contains("compiling"), "{}", text(&second));
    assert_eq!(first.stdout, second.stdout);
}

#[test]
fn a_loopback_refusal_names_the_flags_that_allow_it() {
    let up = Upstream::start_blocking().unwrap();
    let env = env();
    let input = format!(r#"{{"action":"fetch","url":"{}"}}"#, up.url("/echo"));
    let out = env.run(&["run", &guest("probe"), "--input", &input], None);
    let said = text(&out);
    assert!(said.contains("loopback"), "{said}");
    assert!(
        said.contains("--allow-private-network") && said.contains("--allow-internal"),
        "{said}"
    );
    assert_eq!(up.request_count(), 0);
}

/// An audit record's fields can hold text a step chose (a query parameter or a body field
/// name, written by an older version) or that a damaged store holds: `latchkey audit`
/// prints every field through one escape, so that no record can print a line of its own
/// (a forged `SecretRotate by=alice`), move the cursor or retitle the terminal.
#[test]
fn audit_lines_cannot_carry_terminal_control_sequences() {
    use latchkey_host::audit::{self, AuditEvent, AuditRecord};
    use latchkey_host::store::{MasterKey, SecretStore};
    let env = env();
    let forged = "x\r\n2026-12-06T23:00:00.000Z SecretRotate by=alice K scope=platform v=2 -> ok\u{1b}]0;owned\u{7}\u{9b}2J";
    {
        let master =
            MasterKey::from_bytes(&std::fs::read(env.path("master.key")).unwrap()).unwrap();
        let store = SecretStore::open(&env.path("store"), &master).unwrap();
        let mut change = AuditRecord::change(AuditEvent::SecretSet, forged, forged, forged);
        change.scope = Some(forged.into());
        change.user = forged.into();
        audit::append_durable(&store, &change).unwrap();
        let mut fetch = change.clone();
        fetch.actor = None;
        fetch.event = AuditEvent::InjectDenied;
        for field in [
            &mut fetch.run_id,
            &mut fetch.workspace,
            &mut fetch.workflow,
            &mut fetch.step,
        ] {
            *field = forged.into();
        }
        fetch.destination = Some(forged.into());
        fetch.location = Some(format!("query:{forged}"));
        audit::append_durable(&store, &fetch).unwrap();
    }
    let out = env.ok(&["audit"], None);
    let printed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(printed.lines().count(), 2, "{printed:?}");
    assert!(
        !printed.chars().any(|c| c.is_control() && c != '\n'),
        "{printed:?}"
    );
    assert!(
        printed.contains("\\u{d}\\u{a}2026-12-06T23:00:00.000Z SecretRotate")
            && printed.contains("\\u{1b}]0;owned\\u{7}\\u{9b}2J"),
        "{printed:?}"
    );
}

/// Output piped into a reader that stops early (`| head`) ends the command quietly, as it
/// does other Unix tools: no "Broken pipe" error, no panic message.
#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(["completions", "bash"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    {
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        out.read_line(&mut first).unwrap();
    }
    let done = child.wait_with_output().unwrap();
    assert!(first.starts_with("_latchkey"), "{first}");
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn scripts_are_off_until_enabled_and_a_bad_key_leaves_the_policy_as_it_was() {
    let env = env();
    let show = |env: &Env| -> serde_json::Value {
        let out = env.ok(&["scripts", "show", "--json"], None);
        serde_json::from_slice(&out.stdout).unwrap()
    };
    assert_eq!(
        show(&env),
        serde_json::json!({"enabled": false, "max_keys": []})
    );
    let out = env.ok(
        &["scripts", "enable", "--max-keys", "SLACK_TOKEN,API,API"],
        None,
    );
    assert!(
        text(&out).contains("they may ask for: API, SLACK_TOKEN"),
        "{}",
        text(&out)
    );
    let bad = env.run(&["scripts", "enable", "--max-keys", "API,not a key"], None);
    assert!(!bad.status.success());
    assert!(text(&bad).contains("max_keys"), "{}", text(&bad));
    assert_eq!(
        show(&env),
        serde_json::json!({"enabled": true, "max_keys": ["API", "SLACK_TOKEN"]})
    );
    let out = env.ok(&["scripts", "enable", "--max-keys", ""], None);
    assert!(text(&out).contains("keyless"), "{}", text(&out));
    env.ok(&["scripts", "disable"], None);
    assert_eq!(show(&env)["enabled"], false);
    // Every change is in the audit trail, with who made it and what it allowed.
    let audit = env.ok(&["audit", "--json"], None);
    let changes: Vec<serde_json::Value> = String::from_utf8(audit.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|r: &serde_json::Value| r["event"] == "script-policy")
        .collect();
    assert_eq!(changes.len(), 3, "{changes:?}");
    assert!(
        changes
            .iter()
            .any(|r| r["outcome"] == "ok: enabled, max_keys API, SLACK_TOKEN"),
        "{changes:?}"
    );
    let help = env.ok(&["scripts", "--help"], None);
    assert!(text(&help).contains("--script-sdk"), "{}", text(&help));
}
