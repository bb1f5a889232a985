//! Workflows through the `latchkey` binary: `workflow.toml` manifests with several steps,
//! `latchkey check`, scopes given on the command line, member removal, and the write-only
//! property of every command. The steps are the example guests (built by the
//! `latchkey-tests` build script), talking to a loopback fake of GitHub and Slack.
#![allow(clippy::unwrap_used)]

use latchkey_tests::guest;
use latchkey_tests::upstream::Upstream;
use std::path::PathBuf;

/// Every value stored by these tests; none may ever appear in anything the binary prints.
const VALUES: &[&str] = &[
    "ghp-alice-0001-secret",
    "ghp-bob-0002-secret",
    "xoxb-alice-0003-secret",
    "xoxb-workspace-0004-secret",
    "xoxb-carol-0005-secret",
    "v-tier-0006-secret",
];

mod harness;

struct Lk {
    cli: harness::Cli,
    up: Upstream,
    /// Everything printed so far, for the write-only checks.
    printed: std::cell::RefCell<String>,
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

impl Lk {
    fn new() -> Lk {
        let lk = Lk {
            cli: harness::Cli::uninitialised(),
            up: Upstream::start_blocking().unwrap(),
            printed: Default::default(),
        };
        lk.ok(&["init"], None);
        lk
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.up.port())
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> Out {
        let o = self.cli.run(args, stdin.map(str::as_bytes));
        let out = Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        };
        self.printed.borrow_mut().push_str(&format!(
            "$ latchkey {}\n{}\n",
            args.join(" "),
            out.all()
        ));
        out
    }

    fn ok(&self, args: &[&str], stdin: Option<&str>) -> Out {
        let out = self.run(args, stdin);
        assert_eq!(out.code, 0, "latchkey {args:?} failed:\n{}", out.all());
        out
    }

    /// `latchkey run MANIFEST --user USER --input INPUT --allow-private-network`.
    fn run_manifest(&self, manifest: impl AsRef<std::path::Path>, user: &str, input: &str) -> Out {
        let manifest = manifest.as_ref().to_str().unwrap();
        let args = [
            "run",
            manifest,
            "--user",
            user,
            "--input",
            input,
            "--allow-private-network",
        ];
        self.run(&args, None)
    }

    /// Like `run_manifest`, and the run must succeed.
    fn run_manifest_ok(
        &self,
        manifest: impl AsRef<std::path::Path>,
        user: &str,
        input: &str,
    ) -> Out {
        let shown = manifest.as_ref().display().to_string();
        let out = self.run_manifest(manifest, user, input);
        assert_eq!(out.code, 0, "latchkey run {shown} failed:\n{}", out.all());
        out
    }

    /// `secret set` at `scope`, bound to the fake's Authorization header.
    fn set(&self, scope: &str, key: &str, value: &str, integration: &str, actor: &str) -> Out {
        let host = self.host();
        self.ok(
            &[
                "secret",
                "set",
                key,
                "--scope",
                scope,
                "--allow-host",
                &host,
                "--inject",
                "header:Authorization",
                "--allow-http",
                "--integration",
                integration,
                "--as",
                actor,
                // The values are labels that say which tier won; their strength is not
                // what these tests are about (cli.rs and limits_cli.rs test the floor).
                "--allow-weak-value",
            ],
            Some(&format!("{value}\n")),
        )
    }

    /// Writes a manifest into the temp dir; `{github}`, `{slack}`, `{probe}` become the
    /// built guests' paths.
    fn manifest(&self, name: &str, text: &str) -> PathBuf {
        let text = text
            .replace("{github}", &guest("github_issues").display().to_string())
            .replace("{slack}", &guest("slack_post").display().to_string())
            .replace("{probe}", &guest("probe").display().to_string());
        let p = self.cli.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Input for the github → slack workflows: step 1 lists `o/r` on the fake and forwards
    /// what the Slack step needs.
    fn digest_input(&self) -> String {
        serde_json::json!({
            "repo": "o/r",
            "api_base": self.up.base_url(),
            "forward": { "channel": "#dev", "api_base": self.up.base_url() },
        })
        .to_string()
    }

    /// No value in anything printed so far.
    fn assert_write_only(&self) {
        let printed = self.printed.borrow();
        for v in VALUES {
            assert!(
                !printed.contains(v),
                "a command printed the value {v}:\n{printed}"
            );
        }
    }
}

/// issue-digest, as in examples/workflows, pointing at the built guests.
const ISSUE_DIGEST: &str = r#"
name = "issue-digest"
workspace = "acme"
builder = "bob"
allow = ["GITHUB_TOKEN", "SLACK_TOKEN"]

[[step]]
name = "issues"
component = "{github}"
allow = ["GITHUB_TOKEN"]
pins = { GITHUB_TOKEN = "builder" }

[[step]]
name = "post"
component = "{slack}"
integrations = ["slack"]
allow = ["SLACK_TOKEN"]
"#;

fn token_of(r: &latchkey_tests::upstream::Recorded) -> String {
    let auth = r.header("authorization").unwrap();
    auth.split_once(' ').unwrap().1.to_owned()
}

#[test]
fn issue_digest_two_steps_output_flows_into_next_and_report_names_tiers() {
    let lk = Lk::new();
    lk.set(
        "user:alice@acme/issue-digest",
        "GITHUB_TOKEN",
        VALUES[0],
        "http",
        "admin",
    );
    lk.set(
        "builder:bob@acme/issue-digest",
        "GITHUB_TOKEN",
        VALUES[1],
        "http",
        "bob",
    );
    lk.set("user:alice", "SLACK_TOKEN", VALUES[2], "slack", "alice");
    lk.set("workspace:acme", "SLACK_TOKEN", VALUES[3], "slack", "admin");
    let m = lk.manifest("issue-digest.toml", ISSUE_DIGEST);
    let input = lk.digest_input();
    let m = m.to_str().unwrap();
    let out = lk.run_manifest_ok(m, "alice", &input);
    // Step 1 used the builder's token (pinned) though alice has her own for this workflow.
    let gh = lk.up.requests_to("/repos/o/r/issues");
    assert_eq!(gh.len(), 1);
    assert_eq!(token_of(&gh[0]), VALUES[1]);
    // Step 2 got step 1's output: a digest of the fake's 7 issues, in the forwarded channel,
    // with alice's personal Slack token (the default order puts it before the workspace's).
    let slack = lk.up.requests_to("/api/chat.postMessage");
    assert_eq!(slack.len(), 1);
    assert_eq!(token_of(&slack[0]), VALUES[2]);
    let body = slack[0].body_json().unwrap();
    assert_eq!(body["channel"], "#dev");
    let text = body["text"].as_str().unwrap();
    assert!(
        text.starts_with("7 issues: #1 Issue #1; #2 Issue #2"),
        "{text}"
    );
    // The final output is the last step's.
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(v["ok"], true);
    assert!(v.get("issues").is_none());
    // The report: each step, its status and its credentials by name, tier and scope.
    let e = &out.stderr;
    assert!(e.contains("step 1/2 issues: ok"), "{e}");
    assert!(
        e.contains("credential GITHUB_TOKEN from tier builder (builder:bob@acme/issue-digest)"),
        "{e}"
    );
    assert!(e.contains("step 2/2 post: ok"), "{e}");
    assert!(
        e.contains("credential SLACK_TOKEN from tier user (user:alice)"),
        "{e}"
    );
    // One run id for both steps, in the report and in the audit trail.
    let run_id = e
        .split_whitespace()
        .find(|w| w.starts_with("run-"))
        .unwrap()
        .trim_end_matches(':')
        .to_owned();
    let audit = lk.ok(&["audit", "--run", &run_id, "--json"], None);
    let steps: std::collections::BTreeSet<String> = audit
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(steps, ["issues".to_owned(), "post".to_owned()].into());
    lk.assert_write_only();
}

#[test]
fn per_step_pins_two_steps_same_provider_different_tiers() {
    // Per-step resolution: two nodes of one workflow use the same provider with different keys.
    let lk = Lk::new();
    lk.set("user:alice", "GITHUB_TOKEN", VALUES[0], "http", "alice");
    lk.set(
        "builder:bob@acme/two-nodes",
        "GITHUB_TOKEN",
        VALUES[1],
        "http",
        "bob",
    );
    lk.set("workspace:acme", "SLACK_TOKEN", VALUES[3], "slack", "admin");
    let m = lk.manifest(
        "two-nodes.toml",
        r#"
name = "two-nodes"
workspace = "acme"
builder = "bob"

[[step]]
name = "node-a"          # your key (no pin: the user's tiers come first)
component = "{github}"

[[step]]
name = "node-b"          # the builder's key
component = "{github}"
pins = { GITHUB_TOKEN = "builder" }

[[step]]
name = "node-c"
component = "{slack}"
integrations = ["slack"]
"#,
    );
    // node-a forwards what node-b needs, which forwards what node-c needs.
    let base = lk.up.base_url();
    let input = serde_json::json!({
        "repo": "o/r", "api_base": base,
        "forward": { "repo": "o/r", "api_base": base, "forward": { "channel": "#c", "api_base": base } },
    })
    .to_string();
    let out = lk.run_manifest_ok(&m, "alice", &input);
    let gh = lk.up.requests_to("/repos/o/r/issues");
    let tokens: Vec<String> = gh.iter().map(token_of).collect();
    assert_eq!(tokens, [VALUES[0], VALUES[1]]);
    let e = &out.stderr;
    assert!(e.contains("step 1/3 node-a: ok"), "{e}");
    let a = e.split("step 2/3").next().unwrap();
    assert!(
        a.contains("GITHUB_TOKEN from tier user (user:alice)"),
        "{e}"
    );
    let b = e
        .split("step 2/3")
        .nth(1)
        .unwrap()
        .split("step 3/3")
        .next()
        .unwrap();
    assert!(
        b.contains("GITHUB_TOKEN from tier builder (builder:bob@acme/two-nodes)"),
        "{e}"
    );
    assert!(
        e.contains("SLACK_TOKEN from tier workspace (workspace:acme)"),
        "{e}"
    );
    lk.assert_write_only();
}

#[test]
fn scopes_and_tiers_default_order() {
    // Every --scope form, and each tier shadowing the next, as `latchkey check` reports.
    let lk = Lk::new();
    let m = lk.manifest(
        "wf.toml",
        "name = \"wf\"\nworkspace = \"acme\"\nbuilder = \"bob\"\nallow = [\"API_KEY\"]\n[[step]]\nname = \"s\"\ncomponent = \"{slack}\"\n",
    );
    let m = m.to_str().unwrap();
    let tiers = [
        ("user-workflow", "user:alice@acme/wf"),
        ("user", "user:alice"),
        ("workflow", "workflow:acme/wf"),
        ("workspace", "workspace:acme"),
        ("builder", "builder:bob@acme/wf"),
        ("platform", "platform"),
    ];
    for (_, scope) in tiers.iter().rev() {
        lk.set(scope, "API_KEY", VALUES[5], "http", "admin");
    }
    for (tier, scope) in tiers {
        let out = lk.ok(&["check", m, "--user", "alice"], None);
        assert!(
            out.stdout
                .contains(&format!("API_KEY: ok, tier {tier} (scope {scope},")),
            "expected {tier}:\n{}",
            out.stdout
        );
        lk.ok(&["secret", "rm", "API_KEY", "--scope", scope], None);
    }
    let out = lk.run(&["check", m, "--user", "alice"], None);
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.contains("API_KEY: MISSING: missing_credential"),
        "{}",
        out.stdout
    );
    lk.assert_write_only();
}

#[test]
fn isolation_workflow_a_secret_never_resolves_for_b() {
    let lk = Lk::new();
    lk.set(
        "workflow:acme/agent-a",
        "GITHUB_TOKEN",
        VALUES[0],
        "http",
        "admin",
    );
    lk.set(
        "user:alice@acme/agent-a",
        "GITHUB_TOKEN",
        VALUES[1],
        "http",
        "alice",
    );
    let manifest = |name: &str| {
        lk.manifest(
            &format!("{name}.toml"),
            &format!("name = \"{name}\"\nworkspace = \"acme\"\n[[step]]\nname = \"list\"\ncomponent = \"{{github}}\"\n"),
        )
    };
    let (a, b) = (manifest("agent-a"), manifest("agent-b"));
    let input = serde_json::json!({ "repo": "o/r", "api_base": lk.up.base_url() }).to_string();
    let run = |m: &PathBuf| lk.run_manifest(m, "alice", &input);
    assert_eq!(run(&a).code, 0);
    assert_eq!(token_of(&lk.up.requests()[0]), VALUES[1]);
    lk.up.clear();
    let out = run(&b);
    assert_eq!(out.code, 3, "{}", out.all());
    assert_eq!(lk.up.request_count(), 0);
    assert!(
        out.stderr
            .contains("credential GITHUB_TOKEN is not available"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("refused GITHUB_TOKEN: missing_credential: no secret GITHUB_TOKEN is available to step list"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("agent-a"), "{}", out.stderr);
    lk.assert_write_only();
}

#[test]
fn single_wasm_still_runs_as_one_step() {
    let lk = Lk::new();
    lk.set(
        "workspace:default",
        "SLACK_TOKEN",
        VALUES[3],
        "http",
        "admin",
    );
    let input = serde_json::json!({ "channel": "#x", "text": "hi", "api_base": lk.up.base_url() })
        .to_string();
    let slack = guest("slack_post");
    let out = lk.ok(
        &[
            "run",
            slack.to_str().unwrap(),
            "--input",
            &input,
            "--allow-private-network",
        ],
        None,
    );
    assert!(out.stdout.contains("\"ok\":true"), "{}", out.all());
    assert_eq!(token_of(&lk.up.requests()[0]), VALUES[3]);
    // Manifest-only flags are refused with a manifest, and vice versa nothing breaks.
    let m = lk.manifest("d.toml", ISSUE_DIGEST);
    let out = lk.run(&["run", m.to_str().unwrap(), "--workspace", "x"], None);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("--workspace applies to a single .wasm step"),
        "{}",
        out.stderr
    );
}

#[test]
fn failing_step_stops_the_run_and_names_it() {
    let lk = Lk::new();
    lk.set(
        "builder:bob@acme/issue-digest",
        "GITHUB_TOKEN",
        VALUES[1],
        "http",
        "bob",
    );
    // The Slack token exists, but as a plain `http` secret: the `slack` step may not use it.
    lk.set("workspace:acme", "SLACK_TOKEN", VALUES[3], "http", "admin");
    let m = lk.manifest(
        "d.toml",
        &format!("{ISSUE_DIGEST}\n[[step]]\nname = \"after\"\ncomponent = \"{{slack}}\"\n"),
    );
    let input = lk.digest_input();
    let out = lk.run_manifest(&m, "alice", &input);
    assert_eq!(out.code, 3, "{}", out.all());
    assert_eq!(out.stdout, "", "no output for a failed run");
    assert_eq!(lk.up.requests_to("/repos/o/r/issues").len(), 1);
    assert_eq!(lk.up.requests_to("/api/chat.postMessage").len(), 0);
    let e = &out.stderr;
    assert!(e.contains("step 1/3 issues: ok"), "{e}");
    assert!(e.contains("step 2/3 post: FAILED"), "{e}");
    assert!(
        e.contains("integration http not declared by the step"),
        "{e}"
    );
    assert!(e.contains("not run: after"), "{e}");
    assert!(e.contains("error: step post failed (step error)"), "{e}");
    lk.assert_write_only();
}

/// A workflow's first run says which steps it compiles, before the wait; the next says
/// nothing of it. A destination the binding refuses is said once, with what the binding
/// allows, not once by the step's progress line and again by the error.
#[test]
fn a_workflow_says_what_it_compiles_and_a_refusal_once() {
    let lk = Lk::new();
    lk.set("workspace:acme", "ECHO_KEY", VALUES[5], "http", "admin");
    let other = Upstream::start_blocking().unwrap();
    let m = lk.manifest(
        "refused.toml",
        "name = \"refused\"\nworkspace = \"acme\"\n[[step]]\nname = \"call\"\ncomponent = \"{probe}\"\n",
    );
    let input =
        serde_json::json!({"action": "fetch", "url": other.url("/echo"), "key": "ECHO_KEY"})
            .to_string();
    let first = lk.run_manifest(&m, "alice", &input);
    assert_eq!(first.code, 3, "{}", first.all());
    let e = &first.stderr;
    let probe = guest("probe").display().to_string();
    assert_eq!(e.matches(&format!("compiling {probe}")).count(), 1, "{e}");
    let refusal = format!(
        "credential ECHO_KEY may not be sent to http://127.0.0.1:{}",
        other.port()
    );
    assert_eq!(e.matches(&refusal).count(), 1, "{e}");
    assert!(
        e.contains(&format!("its binding allows {}", lk.host())),
        "{e}"
    );
    assert!(e.contains("error: step call failed"), "{e}");
    assert_eq!(other.request_count(), 0);
    let second = lk.run_manifest(&m, "alice", &input);
    assert_eq!(second.code, 3, "{}", second.all());
    assert!(!second.stderr.contains("compiling"), "{}", second.all());
    assert_eq!(
        second.stderr.matches(&refusal).count(),
        1,
        "{}",
        second.all()
    );
    lk.assert_write_only();
}

#[test]
fn broken_later_step_is_caught_before_the_first_step_calls() {
    let lk = Lk::new();
    lk.set(
        "builder:bob@acme/issue-digest",
        "GITHUB_TOKEN",
        VALUES[1],
        "http",
        "bob",
    );
    let broken = lk.cli.dir.path().join("broken.wasm");
    std::fs::write(&broken, b"not wasm").unwrap();
    let http = latchkey_tests::http_importing_guest();
    for bad in [broken.to_str().unwrap(), http.to_str().unwrap()] {
        let m = lk.manifest(
            "d.toml",
            &ISSUE_DIGEST.replace("component = \"{slack}\"", &format!("component = \"{bad}\"")),
        );
        let out = lk.run_manifest(&m, "alice", &lk.digest_input());
        assert_ne!(out.code, 0);
        assert!(
            out.stderr.contains("loading the component of step post"),
            "{}",
            out.stderr
        );
        assert_eq!(
            lk.up.request_count(),
            0,
            "step 1 ran before step 2 was checked"
        );
        // `check` reports it too.
        let out = lk.run(&["check", m.to_str().unwrap(), "--user", "alice"], None);
        assert_eq!(out.code, 1);
        assert!(out.stdout.contains("component: ERROR"), "{}", out.stdout);
    }
}

#[test]
fn manifest_errors_name_line_column_and_fix() {
    let lk = Lk::new();
    let m = lk.manifest(
        "bad.toml",
        "name = \"x\"\n[[step]]\nname = \"a\"\ncomponent = \"{slack}\"\nallowlist = [\"K\"]\n",
    );
    let out = lk.run(&["run", m.to_str().unwrap()], None);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("bad.toml:5:1:"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("unknown field `allowlist`, expected one of"),
        "{}",
        out.stderr
    );
    let m = lk.manifest(
        "bad.toml",
        "name = \"x\"\n[[step]]\nname = \"a\"\ncomponent = \"{slack}\"\npins = { SLACK_TOKEN = \"boss\" }\n",
    );
    let out = lk.run(&["check", m.to_str().unwrap()], None);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("bad.toml:5:24: unknown tier \"boss\""),
        "{}",
        out.stderr
    );
}

#[test]
fn member_removal_deletes_created_secrets_and_workflow_fails_missing_credential() {
    let lk = Lk::new();
    lk.set(
        "builder:bob@acme/issue-digest",
        "GITHUB_TOKEN",
        VALUES[1],
        "http",
        "admin",
    );
    // carol created the workspace Slack token and keys in other scopes.
    lk.set("workspace:acme", "SLACK_TOKEN", VALUES[4], "slack", "carol");
    lk.set("user:carol", "SLACK_TOKEN", VALUES[4], "slack", "carol");
    lk.set(
        "builder:carol@acme/other",
        "GITHUB_TOKEN",
        VALUES[4],
        "http",
        "carol",
    );
    // carol rotated a secret admin created: she did not create it, it stays.
    lk.set("platform", "OPENAI_KEY", VALUES[5], "http", "admin");
    lk.ok(
        &[
            "secret",
            "rotate",
            "OPENAI_KEY",
            "--scope",
            "platform",
            "--as",
            "carol",
            "--allow-weak-value",
        ],
        Some(VALUES[5]),
    );

    let m = lk.manifest("d.toml", ISSUE_DIGEST);
    let m = m.to_str().unwrap();
    let input = lk.digest_input();
    let args = [
        "run",
        m,
        "--user",
        "alice",
        "--input",
        &input,
        "--allow-private-network",
    ];
    lk.ok(&args, None);

    let out = lk.ok(&["member", "remove", "carol"], None);
    assert!(out.stdout.contains("deleted 3 secret(s)"), "{}", out.stdout);
    for line in [
        "workspace:acme SLACK_TOKEN",
        "user:carol SLACK_TOKEN",
        "builder:carol@acme/other GITHUB_TOKEN",
    ] {
        assert!(out.stdout.contains(line), "{}", out.stdout);
    }
    let list = lk.ok(&["secret", "list", "--json"], None);
    let left: Vec<String> = list
        .stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            format!(
                "{} {}",
                v["scope"].as_str().unwrap(),
                v["key"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.contains(&"platform OPENAI_KEY".to_owned()));

    // The workflow now fails with missing_credential, naming the step and the key.
    lk.up.clear();
    let out = lk.run(&args, None);
    assert_eq!(out.code, 3, "{}", out.all());
    assert!(
        out.stderr.contains("step 2/2 post: FAILED"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("refused SLACK_TOKEN: missing_credential: no secret SLACK_TOKEN is available to step post"),
        "{}",
        out.stderr
    );
    assert_eq!(lk.up.requests_to("/api/chat.postMessage").len(), 0);
    // Reconfigured, it runs again.
    lk.set("workspace:acme", "SLACK_TOKEN", VALUES[3], "slack", "admin");
    lk.ok(&args, None);
    lk.assert_write_only();
}

#[test]
fn check_reports_tiers_and_missing() {
    let lk = Lk::new();
    lk.set(
        "user:alice@acme/issue-digest",
        "GITHUB_TOKEN",
        VALUES[0],
        "http",
        "alice",
    );
    lk.set(
        "builder:bob@acme/issue-digest",
        "GITHUB_TOKEN",
        VALUES[1],
        "http",
        "bob",
    );
    // A Slack token of the wrong integration type: it exists, the `slack` step cannot use it.
    lk.set("workspace:acme", "SLACK_TOKEN", VALUES[3], "http", "admin");
    let m = lk.manifest("d.toml", ISSUE_DIGEST);
    let m = m.to_str().unwrap();

    let out = lk.run(&["check", m, "--user", "alice"], None);
    assert_eq!(out.code, 1, "{}", out.all());
    let s = &out.stdout;
    // The pin wins over alice's own key for this workflow.
    assert!(
        s.contains("GITHUB_TOKEN: ok, tier builder (scope builder:bob@acme/issue-digest, integration http, version 1, pinned to builder)"),
        "{s}"
    );
    assert!(s.contains("SLACK_TOKEN: MISSING: missing_credential: no secret SLACK_TOKEN is available to step post (looked in: user:alice@acme/issue-digest, user:alice, workflow:acme/issue-digest, workspace:acme (integration http not declared by the step), builder:bob@acme/issue-digest, platform)"), "{s}");
    assert!(out.stderr.contains("1 problem(s)"), "{}", out.stderr);

    // Fixed for alice: her personal Slack token; another user still falls through to the
    // (unusable) workspace one.
    lk.set("user:alice", "SLACK_TOKEN", VALUES[2], "slack", "alice");
    let out = lk.ok(&["check", m, "--user", "alice"], None);
    assert!(
        out.stdout
            .contains("SLACK_TOKEN: ok, tier user (scope user:alice, integration slack"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("ok: every component loads"),
        "{}",
        out.stdout
    );
    assert_eq!(lk.run(&["check", m, "--user", "dave"], None).code, 1);

    // Nothing ran, nothing was sent, nothing was used: check reads metadata only. The
    // trail holds the secrets being stored, and nothing else.
    assert_eq!(lk.up.request_count(), 0);
    let trail = lk.ok(&["audit"], None).stdout;
    assert!(
        trail.lines().all(|l| l.contains(" secret-set by=")),
        "{trail}"
    );
    lk.assert_write_only();
}

#[test]
fn write_only_no_command_prints_a_value() {
    let lk = Lk::new();
    let host = lk.host();
    // Every command that touches a secret, successful or not.
    lk.set("workspace:default", "ECHO_KEY", VALUES[0], "http", "admin");
    lk.set("user:alice", "ECHO_KEY", VALUES[1], "http", "alice");
    lk.ok(
        &["secret", "rotate", "ECHO_KEY", "--scope", "user:alice"],
        Some(VALUES[2]),
    );
    lk.ok(&["secret", "list"], None);
    lk.ok(&["secret", "list", "--json"], None);
    lk.ok(&["secret", "list", "--scope", "user:alice"], None);
    // Refusals quote the input, not the value.
    let bad = format!("{}\r\nX-Evil: 1", VALUES[3]);
    let out = lk.run(
        &[
            "secret",
            "set",
            "ECHO_KEY",
            "--allow-host",
            &host,
            "--inject",
            "header:Authorization",
            "--allow-http",
        ],
        Some(&bad),
    );
    assert_ne!(out.code, 0);
    let out = lk.run(
        &[
            "secret",
            "set",
            "bad-key",
            "--allow-host",
            &host,
            "--inject",
            "header:x",
        ],
        Some(VALUES[3]),
    );
    assert_ne!(out.code, 0);
    let out = lk.run(
        &["secret", "rotate", "NOPE", "--scope", "platform"],
        Some(VALUES[3]),
    );
    assert_ne!(out.code, 0);
    // Runs whose upstream echoes the injected header (and its encodings) back.
    let probe = guest("probe");
    let echo = serde_json::json!({ "action": "fetch", "url": lk.up.url("/echo/encoded"), "key": "ECHO_KEY" })
        .to_string();
    let out = lk.ok(
        &[
            "run",
            probe.to_str().unwrap(),
            "--user",
            "alice",
            "--input",
            &echo,
            "--allow-private-network",
            "--report",
        ],
        None,
    );
    assert!(
        out.stdout.contains("ECHO_KEY") || out.stdout.contains("echo"),
        "{}",
        out.stdout
    );
    // Proof the value really went out (and so really had to be scrubbed on the way back).
    assert!(lk.up.requests().iter().any(|r| r.contains(VALUES[2])));
    let m = lk.manifest(
        "probe.toml",
        "name = \"p\"\n[[step]]\nname = \"echo\"\ncomponent = \"{probe}\"\nallow = [\"ECHO_KEY\"]\n",
    );
    lk.run_manifest_ok(&m, "alice", &echo);
    // A step that fails after using the value: the error path prints nothing of it either.
    let fail = serde_json::json!({ "action": "fetch", "url": lk.up.url("/status/500"), "key": "ECHO_KEY", "inject": "header:X-Nope" })
        .to_string();
    lk.run_manifest(&m, "alice", &fail);
    lk.run(&["check", m.to_str().unwrap(), "--user", "alice"], None);
    lk.ok(&["audit"], None);
    lk.ok(&["audit", "--json"], None);
    lk.ok(&["member", "remove", "alice"], None);
    lk.ok(
        &["secret", "rm", "ECHO_KEY", "--scope", "workspace:default"],
        None,
    );
    let out = lk.run(
        &["secret", "rm", "ECHO_KEY", "--scope", "workspace:default"],
        None,
    );
    assert_ne!(out.code, 0);
    lk.ok(&["secret", "list"], None);
    lk.assert_write_only();
}

#[test]
fn check_and_run_print_one_json_document_with_the_api_field_names() {
    let lk = Lk::new();
    lk.set(
        "builder:bob@acme/issue-digest",
        "GITHUB_TOKEN",
        VALUES[1],
        "http",
        "bob",
    );
    // The Slack token exists, but as a plain `http` secret: the `slack` step may not use it.
    lk.set("workspace:acme", "SLACK_TOKEN", VALUES[3], "http", "admin");
    let m = lk.manifest("d.toml", ISSUE_DIGEST);
    let m = m.to_str().unwrap();

    // check: a CheckView, exit 1 as the text form.
    let out = lk.run(&["check", m, "--user", "alice", "--json"], None);
    assert_eq!(out.code, 1, "{}", out.all());
    let check: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(check["user"], "alice");
    assert_eq!(check["problems"], 1, "{check}");
    let steps = check["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[0]["name"], "issues");
    assert_eq!(steps[0]["component"], "ok");
    assert_eq!(steps[0]["keys"][0]["key"], "GITHUB_TOKEN");
    let found = steps[0]["keys"][0]["resolution"]["Ok"].as_str().unwrap();
    assert!(
        found.starts_with("tier builder (scope builder:bob@acme/issue-digest,"),
        "{check}"
    );
    assert!(
        steps[1]["keys"][0]["resolution"]["Err"].is_string(),
        "{check}"
    );

    // run: a RunView, exit 3 as the text form; no output on failure.
    let input = lk.digest_input();
    let out = lk.run(
        &[
            "run",
            m,
            "--user",
            "alice",
            "--input",
            &input,
            "--allow-private-network",
            "--json",
        ],
        None,
    );
    assert_eq!(out.code, 3, "{}", out.all());
    let run: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(run["kind"], "workflow");
    assert_eq!(run["target"], "issue-digest");
    assert_eq!(run["user"], "alice");
    assert_eq!(run["status"], "failed");
    assert!(run["output"].is_null(), "{run}");
    assert!(
        run["error"]
            .as_str()
            .unwrap()
            .starts_with("step post failed: "),
        "{run}"
    );
    assert_eq!(run["steps"][0]["status"], "succeeded");
    assert_eq!(
        run["steps"][0]["credentials"][0]["tier"], "builder",
        "{run}"
    );
    assert_eq!(run["steps"][1]["status"], "failed");
    assert_eq!(
        run["steps"][1]["refusals"][0]["key"], "SLACK_TOKEN",
        "{run}"
    );
    lk.assert_write_only();
}
