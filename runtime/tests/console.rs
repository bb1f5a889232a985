//! The web console in a real browser (Debian's Chromium over WebDriver) against a real
//! `latchkey serve` on 127.0.0.1 port 0: sign-in per role, a credential added sealed in the
//! browser, listed, used by a run, rotated and deleted; members without write controls and
//! refused when they forge a request; a value that never reaches the page again; guest
//! markup shown as text; the page's own hardening.
//!
//! `LATCHKEY_CONSOLE_SCREENSHOTS=docs/console` (relative to the workspace root) saves the
//! README's screenshots; by default they go to `target/console-screenshots`.
#![allow(clippy::unwrap_used)]

mod harness;

use harness::browser::Browser;
use harness::server::{Server, store_with_admin};
use latchkey_tests::upstream::Upstream;
use serde_json::{Value, json};
use std::path::PathBuf;

const VALUE: &str = "xoxb-console-7d3f9a1c5e2b8046";
const ROTATED: &str = "xoxb-rotated-2c8e4a6f0b1d3957";
/// The staging scope's SLACK_TOKEN row (production's is in workspace:default).
const STAGING_SLACK: &str = "#cred-list tr[data-key=SLACK_TOKEN][data-scope='workspace:staging']";
const MARKUP: &str = "<img src=x onerror=\"window.__xss=1\"><script>window.__xss=2</script>";

fn screenshots() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    match std::env::var_os("LATCHKEY_CONSOLE_SCREENSHOTS") {
        Some(d) => root.join(d),
        None => root.join("target/console-screenshots"),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn token(s: &Server, admin: &str, name: &str, role: &str) -> String {
    let r = s.json(
        "POST",
        "/v1/tokens",
        admin,
        json!({"name": name, "role": role}),
    );
    assert_eq!(r.status(), 201);
    r.json::<Value>().unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Registers the probe guest and `manifest` as workflow `name`.
fn register(s: &Server, admin: &str, name: &str, manifest: &str) {
    let wasm = std::fs::read(latchkey_tests::guest("probe")).unwrap();
    let r = s
        .req("POST", "/v1/components?name=probe", Some(admin))
        .header("content-type", "application/wasm")
        .body(wasm)
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().unwrap());
    let r = s
        .req("PUT", &format!("/v1/workflows/{name}"), Some(admin))
        .body(manifest.to_owned())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
}

/// Signs in with `token` and waits for the page to name the principal.
async fn sign_in(b: &Browser, url: &str, token: &str, who: &str) {
    b.client.goto(url).await.unwrap();
    b.fill("#signin-token", token).await;
    b.click("#signin-form button[type=submit]").await;
    b.wait_until(
        &format!("signed in as {who}"),
        &format!(
            "document.getElementById('who').textContent === {}",
            json!(who)
        ),
    )
    .await;
}

/// Records the body of every request the page sends and every response it reads.
async fn record_traffic(b: &Browser) {
    b.js(r#"
        window.__traffic = [];
        const real = window.fetch;
        window.fetch = async (input, init) => {
            if (init && typeof init.body === 'string') window.__traffic.push('request ' + init.body);
            const r = await real(input, init);
            window.__traffic.push('response ' + await r.clone().text());
            return r;
        };"#)
        .await;
}

/// Everything of the page a value could hide in: its source, the live DOM with every
/// field's current value, both storages, and the recorded traffic.
async fn everything_the_page_holds(b: &Browser) -> String {
    let source = b.client.source().await.unwrap();
    let live = b
        .js(r#"
            const fields = [...document.querySelectorAll('input, textarea, output')].map((e) => e.value);
            const dump = (s) => Object.keys(s).map((k) => k + '=' + s.getItem(k)).join('\n');
            return [document.documentElement.outerHTML, fields.join('\n'),
                    dump(localStorage), dump(sessionStorage),
                    (window.__traffic || []).join('\n')].join('\n');"#)
        .await;
    format!("{source}\n{}", live.as_str().unwrap())
}

async fn traffic(b: &Browser) -> String {
    b.js("return (window.__traffic || []).join('\\n');")
        .await
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn an_admin_adds_lists_uses_rotates_and_deletes_a_credential_sealed_in_the_browser() {
    let (cli, admin) = store_with_admin();
    let up = Upstream::start_blocking().unwrap();
    let s = Server::start(&cli, &[]);
    // Staging posts to a Slack stand-in on this machine (the test upstream answers
    // chat.postMessage as Slack does); production's token is bound to slack.com.
    let manifest = "name = \"notify\"\nworkspace = \"staging\"\n[[step]]\nname = \"post\"\ncomponent = \"probe\"\nallow = [\"SLACK_TOKEN\"]\n";
    register(&s, &admin, "notify", manifest);
    for (key, body) in [
        (
            "SLACK_TOKEN",
            json!({"value": "xoxb-prod-51c0e7d29a3f4b86", "binding": {"hosts": ["slack.com"], "inject": ["header:Authorization"], "path_prefixes": ["/api/"]}}),
        ),
        (
            "GITHUB_TOKEN",
            json!({"value": "ghp_4f1d8c2e9b7a6035d1e8", "binding": {"hosts": ["api.github.com"], "inject": ["header:Authorization"], "methods": ["GET", "POST"], "path_prefixes": ["/repos/acme/"]}}),
        ),
        (
            "STRIPE_SECRET_KEY",
            json!({"value": "sk_live_9e2b7d4f1a6c3e80", "quota": {"per_minute": 100}, "binding": {"hosts": ["api.stripe.com"], "inject": ["basic-auth"]}}),
        ),
    ] {
        let r = s.json(
            "PUT",
            &format!("/v1/secrets/{key}?scope=workspace:default"),
            &admin,
            body,
        );
        assert_eq!(r.status(), 201, "{key}");
    }
    let shots = screenshots();
    runtime().block_on(async {
        let b = Browser::start().await;
        sign_in(&b, &s.url, &admin, "root (admin)").await;
        record_traffic(&b).await;

        // Add: the form seals the value to the server's key before it leaves the page.
        b.click("#cred-add-open").await;
        b.fill("#cred-add [name=scope]", "workspace:staging").await;
        b.fill("#cred-add [name=key]", "SLACK_TOKEN").await;
        b.fill("#cred-add [name=hosts]", &format!("127.0.0.1:{}", up.port()))
            .await;
        b.fill("#cred-add [name=inject]", "header:authorization")
            .await;
        b.fill("#cred-add [name=methods]", "POST, GET").await;
        b.click("#cred-add [name=allow_http]").await;
        b.click("#cred-add [name=allow_internal]").await;
        b.fill("#cred-add [name=value]", VALUE).await;
        b.click("#cred-add button[type=submit]").await;
        let row = STAGING_SLACK;
        b.wait_for(row).await;
        let text = b.text(row).await;
        for want in ["SLACK_TOKEN", "http", "v1", "root", "never", "header:authorization", "GET POST"] {
            assert!(text.contains(want), "{want} missing from {text:?}");
        }
        let sent = traffic(&b).await;
        assert!(sent.contains("\"sealed_value\""), "{sent}");


        // Run the workflow from the Runs page: the sealed value opened to exactly VALUE.
        b.click("#nav button[data-view=runs]").await;
        b.wait_until("the workflow list", "document.querySelector('#run-start option[value=\"workflow:notify\"]')")
            .await;
        let message = json!({"channel": "#deploys", "text": "web 2026.12.07 is live on staging"});
        let input = json!({"action": "fetch", "url": up.url("/api/chat.postMessage"), "key": "SLACK_TOKEN", "method": "POST",
                           "headers": {"content-type": "application/json"}, "body": message.to_string()});
        b.fill("#run-start [name=input]", &input.to_string()).await;
        b.click("#run-start button[type=submit]").await;
        b.wait_for("#run-report").await;
        let report = b.text("#run-report").await;
        assert!(report.contains("succeeded"), "{report}");
        assert!(report.contains("SLACK_TOKEN from tier workspace (workspace:staging)"), "{report}");
        assert!(report.contains("\"status\": 200") && report.contains("\\\"ok\\\":true"), "{report}");
        b.wait_until("the run's audit records", "document.querySelector('#run-report table')")
            .await;
        assert!(b.text("#run-report table").await.contains("inject"));
        let auth = up.requests_to("/api/chat.postMessage")[0].header("authorization").map(str::to_owned);
        assert_eq!(auth.as_deref(), Some(format!("Bearer {VALUE}").as_str()));
        b.screenshot(&shots, "runs").await;

        // Last used: when and by which workflow and run.
        b.click("#nav button[data-view=credentials]").await;
        b.wait_until("last use", &format!("document.querySelector({})?.textContent.includes('notify / post')", json!(STAGING_SLACK)))
            .await;
        b.screenshot(&shots, "credentials").await;

        // Rotate.
        b.click(&format!("{row} button.rotate")).await;
        b.fill("#rotate-value", ROTATED).await;
        b.click("#dialog-ok").await;
        b.wait_until("version 2", &format!("document.querySelector({})?.textContent.includes('v2')", json!(STAGING_SLACK)))
            .await;

        // Delete: the confirmation names the workflow whose manifest references the key.
        b.click(&format!("{row} button.delete")).await;
        let named = b.text("#delete-workflows").await;
        assert!(named.contains("notify"), "{named}");
        b.screenshot(&shots, "delete-confirmation").await;
        b.click("#dialog-ok").await;
        b.wait_until("the row to go", &format!("!document.querySelector({})", json!(STAGING_SLACK)))
            .await;

        // Audit: filtered by key, exported as JSON lines.
        b.click("#nav button[data-view=audit]").await;
        b.fill("#audit-filter [name=key]", "SLACK_TOKEN").await;
        b.click("#audit-filter button[type=submit]").await;
        // The table shows the unfiltered trail until the filtered answer replaces it.
        b.wait_until(
            "filtered records",
            "(() => { const k = [...document.querySelectorAll('#audit-table tbody tr td:nth-child(4)')].map((t) => t.textContent); return k.length >= 4 && k.every((x) => x === 'SLACK_TOKEN'); })()",
        )
        .await;
        let keys = b
            .js("return [...document.querySelectorAll('#audit-table tbody tr td:nth-child(4)')].map((t) => t.textContent);")
            .await;
        let keys = keys.as_array().unwrap();
        assert!(keys.len() >= 4, "{keys:?}");
        assert!(keys.iter().all(|k| k == "SLACK_TOKEN"), "{keys:?}");
        b.js("window.__blobs = []; const real = URL.createObjectURL; URL.createObjectURL = (x) => { window.__blobs.push(x); return real(x); };")
            .await;
        b.click("#audit-export").await;
        let exported = b
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1]; window.__blobs[0].text().then(done);",
                Vec::new(),
            )
            .await
            .unwrap();
        let lines: Vec<Value> = exported
            .as_str()
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), keys.len());
        assert!(lines.iter().all(|r| r["key"] == "SLACK_TOKEN"));
        assert!(lines.iter().any(|r| r["event"] == "secret-rotate"));
        b.screenshot(&shots, "audit").await;

        // Neither value is anywhere in the page, its storage or anything it sent or read.
        let held = everything_the_page_holds(&b).await;
        for v in [VALUE, ROTATED] {
            assert!(!held.contains(v), "the page holds a value");
        }
        b.close().await;
    });
}

#[test]
fn members_see_metadata_without_write_controls_and_forged_writes_are_refused() {
    let (cli, admin) = store_with_admin();
    let s = Server::start(&cli, &[]);
    let member = token(&s, &admin, "bob", "member");
    let runner = token(&s, &admin, "ci", "runner");
    let r = s.json(
        "PUT",
        "/v1/secrets/GITHUB_TOKEN?scope=workspace:acme",
        &admin,
        json!({"value": VALUE, "binding": {"hosts": ["api.github.com"], "inject": ["header:authorization"]}}),
    );
    assert_eq!(r.status(), 201);
    let aws = r#"{"access_key_id":"AKIAIOSFODNN7EXAMPLE","secret_access_key":"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}"#;
    let r = s.json(
        "PUT",
        "/v1/secrets/AWS?scope=workspace:acme",
        &admin,
        json!({"value": aws, "kind": "aws-sigv4", "quota": {"per_day": 500},
               "binding": {"hosts": ["abc.execute-api.eu-west-1.amazonaws.com"], "inject": ["header:authorization"],
                           "signer": {"aws": {"region": "eu-west-1", "service": "execute-api"}}}}),
    );
    assert_eq!(r.status(), 201);
    let shots = screenshots();
    let url = s.url.clone();
    runtime().block_on(async {
        let b = Browser::start().await;
        sign_in(&b, &url, &member, "bob (member)").await;
        let row = b.text("#cred-list tr[data-key=GITHUB_TOKEN]").await;
        assert!(row.contains("api.github.com") && row.contains("v1"), "{row}");
        // A credential's kind, quota and signing parameters show; its keys never do.
        let row = b.text("#cred-list tr[data-key=AWS]").await;
        assert!(
            row.contains("aws-sigv4")
                && row.contains("quota 500/day")
                && row.contains("signs for AWS execute-api in eu-west-1"),
            "{row}"
        );
        assert!(!everything_the_page_holds(&b).await.contains("wJalr"));
        assert!(b.text("#cred-list h3.scope").await.contains("workspace:acme"));
        for control in [".admin-only", "#cred-add", "#cred-add-open", "button.rotate", "button.delete", "[data-view=members]", "#view-members"] {
            assert!(!b.exists(control).await, "a member sees {control}");
        }
        b.screenshot(&shots, "member").await;

        // Forged from the member's own signed-in page: the server refuses each write.
        let forged = b
            .client
            .execute_async(
                r#"const done = arguments[arguments.length - 1];
                   const h = {Authorization: 'Bearer ' + sessionStorage.getItem('latchkey.token'), 'Content-Type': 'application/json'};
                   const calls = [
                     ['PUT', '/v1/secrets/FORGED?scope=workspace:acme', {value: 'forged-value-31d9', binding: {hosts: ['evil.example'], inject: ['header:x']}}],
                     ['POST', '/v1/secrets/GITHUB_TOKEN/rotate?scope=workspace:acme', {value: 'forged-value-31d9'}],
                     ['DELETE', '/v1/secrets/GITHUB_TOKEN?scope=workspace:acme', undefined],
                     ['POST', '/v1/tokens', {name: 'mallory', role: 'admin'}],
                     ['DELETE', '/v1/members/root', undefined],
                   ];
                   Promise.all(calls.map(([m, p, body]) => fetch(p, {method: m, headers: h, body: body && JSON.stringify(body)}).then((r) => r.status)))
                     .then(done);"#,
                Vec::new(),
            )
            .await
            .unwrap();
        assert_eq!(forged, json!([403, 403, 403, 403, 403]));
        b.close().await;

        // A runner sees runs only.
        let b = Browser::start().await;
        sign_in(&b, &url, &runner, "ci (runner)").await;
        b.wait_for("#view-runs:not([hidden])").await;
        for gone in ["[data-view=credentials]", "[data-view=audit]", "[data-view=members]", "#cred-add"] {
            assert!(!b.exists(gone).await, "a runner sees {gone}");
        }
        b.close().await;
    });
    // Nothing changed.
    let list: Value = s.get("/v1/secrets", &admin).json().unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    assert!(
        list.iter()
            .all(|m| m["version"] == 1 && m["key"] != "FORGED"),
        "{list:?}"
    );
    let tokens: Value = s.get("/v1/tokens", &admin).json().unwrap();
    assert!(!tokens.to_string().contains("mallory"));
}

#[test]
fn guest_markup_in_a_log_line_and_in_output_renders_as_text() {
    let (cli, admin) = store_with_admin();
    let s = Server::start(&cli, &[]);
    let manifest = "name = \"shout\"\n[[step]]\nname = \"say\"\ncomponent = \"probe\"\n";
    register(&s, &admin, "shout", manifest);
    let url = s.url.clone();
    runtime().block_on(async {
        let b = Browser::start().await;
        sign_in(&b, &url, &admin, "root (admin)").await;
        b.click("#nav button[data-view=runs]").await;
        b.wait_until(
            "the workflow list",
            "document.querySelector('#run-start option[value=\"workflow:shout\"]')",
        )
        .await;
        let input = json!({"action": "log", "message": MARKUP});
        b.fill("#run-start [name=input]", &input.to_string()).await;
        b.click("#run-start button[type=submit]").await;
        b.wait_for("#run-report pre.logs").await;
        assert_eq!(
            b.text("#run-report pre.logs").await,
            format!("info {MARKUP}")
        );
        let echo = json!({"action": "echo", "note": MARKUP});
        b.fill("#run-start [name=input]", &echo.to_string()).await;
        b.click("#run-start button[type=submit]").await;
        b.wait_until(
            "the echo output",
            "document.querySelector('#run-report pre')?.textContent.includes('echo')",
        )
        .await;
        assert!(b.text("#run-report").await.contains("onerror"));
        assert!(!b.exists("img").await, "guest markup became an element");
        assert!(!b.exists("main script, #run-detail script").await);
        assert_eq!(
            b.js("return window.__xss === undefined;").await,
            Value::Bool(true)
        );
        b.close().await;
    });
}

#[test]
fn an_admin_creates_a_token_shown_once_and_removes_a_member_after_seeing_their_secrets() {
    let (cli, admin) = store_with_admin();
    let s = Server::start(&cli, &[]);
    let dave = token(&s, &admin, "dave", "admin");
    for key in ["DAVE_ONE", "DAVE_TWO"] {
        let r = s.json(
            "PUT",
            &format!("/v1/secrets/{key}?scope=user:dave"),
            &dave,
            json!({"value": VALUE, "binding": {"hosts": ["api.example.com"], "inject": ["header:x-key"]}}),
        );
        assert_eq!(r.status(), 201);
    }
    let shots = screenshots();
    let url = s.url.clone();
    let created = runtime().block_on(async {
        let b = Browser::start().await;
        sign_in(&b, &url, &admin, "root (admin)").await;
        b.click("#nav button[data-view=members]").await;
        b.fill("#token-create [name=name]", "carol").await;
        b.click("#token-create button[type=submit]").await;
        b.wait_until("the new token", "document.getElementById('token-value').textContent.startsWith('lk_')")
            .await;
        let created = b.text("#token-value").await;
        b.wait_for("#members-table tr[data-member=carol]").await;
        b.screenshot(&shots, "members").await;
        b.click("#token-dismiss").await;
        assert!(!b.client.source().await.unwrap().contains(&created), "the token is shown after Done");

        b.click("#members-table tr[data-member=dave] button.remove-member").await;
        let doomed = b.text("#member-secrets").await;
        assert!(doomed.contains("DAVE_ONE in user:dave") && doomed.contains("DAVE_TWO in user:dave"), "{doomed}");
        b.click("#dialog-ok").await;
        b.wait_until("dave's tokens revoked", "document.querySelector('#members-table tr[data-member=dave]')?.children[2].textContent === '0'")
            .await;
        b.close().await;
        created
    });
    let who = s.get("/v1/whoami", &created);
    assert_eq!(who.json::<Value>().unwrap()["name"], "carol");
    assert_eq!(s.get("/v1/whoami", &dave).status(), 401);
    let list: Value = s.get("/v1/secrets", &admin).json().unwrap();
    assert_eq!(list.as_array().unwrap().len(), 0, "{list}");
}

#[test]
fn the_page_is_served_hardened_and_cross_origin_writes_are_refused() {
    let (cli, admin) = store_with_admin();
    let s = Server::start(&cli, &[]);
    let page = s.req("GET", "/", None).send().unwrap();
    assert_eq!(page.status(), 200);
    let h = page.headers().clone();
    let csp = h["content-security-policy"].to_str().unwrap();
    for part in [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
        "object-src 'none'",
    ] {
        assert!(csp.contains(part), "{csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(h["x-frame-options"], "DENY");
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = page.text().unwrap();
    assert!(
        !html.contains("<script>") && !html.contains(" style="),
        "inline script or style"
    );
    for asset in ["/console.js", "/console.css", "/nacl.min.js"] {
        let r = s.req("GET", asset, None).send().unwrap();
        assert_eq!(r.status(), 200, "{asset}");
        assert!(
            html.contains(&format!("\"{asset}\"")),
            "{asset} is not what the page loads"
        );
    }
    // The API answers carry the headers too.
    let api = s.get("/v1/whoami", &admin);
    assert!(api.headers().contains_key("content-security-policy"));

    let body =
        json!({"value": VALUE, "binding": {"hosts": ["api.example.com"], "inject": ["header:x"]}});
    let forged = s
        .req(
            "PUT",
            "/v1/secrets/CSRF?scope=workspace:default",
            Some(&admin),
        )
        .header("origin", "http://evil.example")
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert!(forged.text().unwrap().contains("cross-origin"));
    let null_origin = s
        .req("DELETE", "/v1/members/root", Some(&admin))
        .header("origin", "null")
        .send()
        .unwrap();
    assert_eq!(null_origin.status(), 403);
    let own = s.url.clone();
    let same = s
        .req(
            "PUT",
            "/v1/secrets/CSRF?scope=workspace:default",
            Some(&admin),
        )
        .header("origin", own)
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(same.status(), 201);
    let list: Value = s.get("/v1/secrets", &admin).json().unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
}

/// Where the text of each element matching `css` wraps: for every line break, the text of the
/// element before it.
async fn line_breaks(b: &Browser, css: &str) -> Vec<String> {
    let script = format!(
        r#"const breaks = [];
           for (const cell of document.querySelectorAll({})) {{
             const walk = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
             let top = null, before = '';
             for (let t; (t = walk.nextNode());) {{
               for (let i = 0; i < t.data.length; i++) {{
                 const r = document.createRange();
                 r.setStart(t, i);
                 r.setEnd(t, i + 1);
                 const rect = r.getClientRects()[0];
                 if (rect && rect.width > 0) {{
                   if (top !== null && rect.top > top + 2) breaks.push(before);
                   top = rect.top;
                 }}
                 before += t.data[i];
               }}
             }}
           }}
           return breaks;"#,
        json!(css)
    );
    b.js(&script)
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn keys_and_names_wrap_between_words_only_and_a_long_key_stays_in_the_page() {
    let (cli, admin) = store_with_admin();
    let s = Server::start(&cli, &[]);
    let keys = [
        "STRIPE_RESTRICTED_KEY_FOR_NIGHTLY_BILLING_EXPORT",
        "GOOGLE_SERVICE_ACCOUNT_PRIVATE_KEY_FOR_ANALYTICS",
        "PAGERDUTY_EVENTS_V2_INTEGRATION_KEY_ON_CALL",
    ];
    for key in keys {
        let r = s.json(
            "PUT",
            &format!("/v1/secrets/{key}?scope=workspace:billing-and-analytics"),
            &admin,
            json!({"value": VALUE, "binding": {"hosts": ["api.stripe.com", "oauth2.googleapis.com", "events.pagerduty.com"],
                   "inject": ["header:Authorization"], "methods": ["GET", "POST"], "path_prefixes": ["/v1/", "/v2/"]}}),
        );
        assert_eq!(r.status(), 201, "{key}");
    }
    let long_key = "K".repeat(128);
    let r = s.json(
        "PUT",
        &format!("/v1/secrets/{long_key}?scope=workspace:default"),
        &admin,
        json!({"value": ROTATED, "binding": {"hosts": ["api.example.com"], "inject": ["header:x-api-key"]}}),
    );
    assert_eq!(r.status(), 201);
    let url = s.url.clone();
    runtime().block_on(async {
        let b = Browser::start().await;
        sign_in(&b, &url, &admin, "root (admin)").await;
        // A key at the 128-byte limit renders whole, inside the page, which does not scroll
        // sideways.
        assert_eq!(b.text(&format!("#cred-list tr[data-key={long_key}] td.key")).await, long_key);
        let fits = b
            .js(&format!(
                "const r = document.querySelector('#cred-list tr[data-key={long_key}]').getBoundingClientRect();
                 return r.right <= document.documentElement.clientWidth
                     && document.documentElement.scrollWidth <= document.documentElement.clientWidth;"
            ))
            .await;
        assert_eq!(fits, Value::Bool(true), "the long key's row overflows the page");

        // In a narrow window keys must wrap: only after an underscore.
        b.client.set_window_size(720, 900).await.unwrap();
        let cells = "#cred-list tr[data-scope='workspace:billing-and-analytics'] td.key";
        let breaks = line_breaks(&b, cells).await;
        assert!(!breaks.is_empty(), "no key wrapped: the test proves nothing");
        for before in &breaks {
            assert!(before.ends_with('_'), "a key breaks inside a word, after {before:?}");
        }
        for key in keys {
            assert_eq!(b.text(&format!("#cred-list tr[data-key={key}] td.key")).await, key);
        }
        b.close().await;
    });
}

#[test]
fn nothing_registered_says_so_and_a_registered_component_runs_from_the_page() {
    let (cli, admin) = store_with_admin();
    let s = Server::start(&cli, &[]);
    let url = s.url.clone();
    let rt = runtime();
    let b = rt.block_on(Browser::start());
    rt.block_on(async {
        sign_in(&b, &url, &admin, "root (admin)").await;
        b.click("#nav button[data-view=runs]").await;
        b.wait_for("#run-nothing:not([hidden])").await;
        let hint = b.text("#run-nothing").await;
        assert!(
            hint.contains("latchkey component add") && hint.contains("latchkey workflow add"),
            "{hint}"
        );
        // Start anyway: the page says why nothing starts.
        b.click("#run-start button[type=submit]").await;
        b.wait_until(
            "the refusal",
            "document.getElementById('status').textContent.includes('Nothing is registered')",
        )
        .await;
        assert_eq!(
            b.js("return document.getElementById('status').className;")
                .await,
            json!("error")
        );
    });

    // A component registered without any workflow can be started by its name.
    let wasm = std::fs::read(latchkey_tests::guest("probe")).unwrap();
    let r = s
        .req("POST", "/v1/components?name=probe", Some(&admin))
        .header("content-type", "application/wasm")
        .body(wasm)
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    rt.block_on(async {
        b.click("#runs-refresh").await;
        b.wait_for("#run-start option[value=\"component:probe\"]")
            .await;
        assert!(
            b.exists("#run-nothing[hidden]").await,
            "the hint stays once something is registered"
        );
        b.wait_for("#run-start [name=target]")
            .await
            .select_by_value("component:probe")
            .await
            .unwrap();
        let input = json!({"action": "echo", "note": "from the console"});
        b.fill("#run-start [name=input]", &input.to_string()).await;
        b.click("#run-start button[type=submit]").await;
        b.wait_for("#run-report").await;
        let report = b.text("#run-report").await;
        assert!(
            report.contains("component probe by root") && report.contains("succeeded"),
            "{report}"
        );
        assert!(report.contains("from the console"), "{report}");
        b.wait_for("#runs-table tr[data-run] td:nth-child(2)").await;
        assert_eq!(
            b.text("#runs-table tr[data-run] td:nth-child(2)").await,
            "probe"
        );
        b.close().await;
    });
}

#[test]
fn a_failed_run_shows_its_error_once_and_one_fetch_is_singular() {
    let (cli, admin) = store_with_admin();
    let up = Upstream::start_blocking().unwrap();
    let s = Server::start(&cli, &[]);
    let manifest = "name = \"shout\"\n[[step]]\nname = \"say\"\ncomponent = \"probe\"\n";
    register(&s, &admin, "shout", manifest);
    let url = s.url.clone();
    runtime().block_on(async {
        let b = Browser::start().await;
        sign_in(&b, &url, &admin, "root (admin)").await;
        b.click("#nav button[data-view=runs]").await;
        b.wait_for("#run-start option[value=\"workflow:shout\"]")
            .await;
        for target in ["workflow:shout", "component:probe"] {
            b.wait_for("#run-start [name=target]")
                .await
                .select_by_value(target)
                .await
                .unwrap();
            b.fill("#run-start [name=input]", r#"{"action": "sing"}"#)
                .await;
            b.click("#run-start button[type=submit]").await;
            b.wait_until(
                "the failed run",
                "document.querySelector('#run-report')?.textContent.includes('failed')",
            )
            .await;
            let report = b.text("#run-report").await;
            assert_eq!(
                report.matches("unknown action \"sing\"").count(),
                1,
                "{target}: {report}"
            );
            b.js("document.getElementById('run-detail').replaceChildren();")
                .await;
        }
        b.wait_for("#run-start [name=target]")
            .await
            .select_by_value("workflow:shout")
            .await
            .unwrap();
        let input = json!({"action": "fetch", "url": up.url("/echo")});
        b.fill("#run-start [name=input]", &input.to_string()).await;
        b.click("#run-start button[type=submit]").await;
        b.wait_until(
            "the fetch run",
            "document.querySelector('#run-report')?.textContent.includes('succeeded')",
        )
        .await;
        let step = b.text("#run-report .step h4").await;
        assert!(step.ends_with(" · 1 fetch"), "{step}");
        b.close().await;
    });
}

#[test]
fn an_admin_adds_credentials_of_each_kind_with_a_quota_and_signing_parameters() {
    let (cli, admin) = store_with_admin();
    let s = Server::start(&cli, &[]);
    // chromedriver takes a file's path only in canonical form.
    let pem = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/jwt-test-rsa.pem")
        .canonicalize()
        .unwrap();
    let url = s.url.clone();
    runtime().block_on(async {
        let b = Browser::start().await;
        sign_in(&b, &url, &admin, "root (admin)").await;
        record_traffic(&b).await;
        let add = |key: &'static str, kind: &'static str, hosts: &'static str, fields: Vec<(&'static str, String)>| {
            let b = &b;
            async move {
                b.click("#cred-add-open").await;
                b.fill("#cred-add [name=key]", key).await;
                b.wait_for("#cred-add [name=kind]").await.select_by_value(kind).await.unwrap();
                b.fill("#cred-add [name=hosts]", hosts).await;
                b.fill("#cred-add [name=inject]", "header:Authorization").await;
                for (name, value) in fields {
                    let css = format!("#cred-add [name={name}]");
                    if name == "oauth_grant" {
                        b.wait_for(&css).await.select_by_value(&value).await.unwrap();
                    } else if name == "value_file" {
                        b.wait_for(&css).await.send_keys(&value).await.unwrap();
                    } else {
                        b.fill(&css, &value).await;
                    }
                }
                b.click("#cred-add button[type=submit]").await;
                b.wait_for(&format!("#cred-list tr[data-key={key}]")).await;
            }
        };
        add("GITHUB_WEBHOOK_SECRET", "hmac-sha256", "hooks.example.com", vec![
            ("value", "whsec-6b1f0d9e2c7a4835".to_owned()),
            ("per_minute", "60".to_owned()),
        ]).await;
        // The kind's own fields show for that kind only.
        b.click("#cred-add-open").await;
        b.wait_for("#cred-add [name=kind]").await.select_by_value("aws-sigv4").await.unwrap();
        assert!(b.exists("#cred-add .kind-params[data-kind=aws-sigv4]:not([hidden])").await);
        assert!(b.exists("#cred-add .kind-params[data-kind=oauth2][hidden]").await);
        b.click("#cred-add-cancel").await;
        add("AWS_INVOICES", "aws-sigv4", "abc123.execute-api.eu-west-1.amazonaws.com", vec![
            ("value", r#"{"access_key_id":"AKIAIOSFODNN7EXAMPLE","secret_access_key":"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}"#.to_owned()),
            ("aws_region", "eu-west-1".to_owned()),
            ("aws_service", "execute-api".to_owned()),
            ("per_day", "5000".to_owned()),
        ]).await;
        // A PEM key from a file keeps its line breaks (a password field drops them).
        add("GITHUB_APP_KEY", "jwt-rs256", "api.github.com", vec![
            ("value_file", pem.display().to_string()),
            ("jwt_issuer", "123456".to_owned()),
            ("jwt_ttl", "540".to_owned()),
        ]).await;
        add("GOOGLE_CLIENT", "oauth2", "www.googleapis.com", vec![
            ("value", r#"{"client_id":"1234.apps.googleusercontent.com","client_secret":"GOCSPX-3f9d1c7e5a2b"}"#.to_owned()),
            ("oauth_token_url", "https://oauth2.googleapis.com/token".to_owned()),
            ("oauth_grant", "client-credentials".to_owned()),
            ("oauth_scope", "https://www.googleapis.com/auth/drive.readonly".to_owned()),
        ]).await;
        let row = b.text("#cred-list tr[data-key=AWS_INVOICES]").await;
        assert!(row.contains("aws-sigv4") && row.contains("quota 5000/day") && row.contains("signs for AWS execute-api in eu-west-1"), "{row}");
        let row = b.text("#cred-list tr[data-key=GOOGLE_CLIENT]").await;
        assert!(row.contains("oauth2 · via https://oauth2.googleapis.com/token"), "{row}");
        let sent = traffic(&b).await;
        assert!(!sent.contains("wJalr") && !sent.contains("PRIVATE KEY") && !sent.contains("GOCSPX"), "a value left the page unsealed");
        b.close().await;
    });
    let list: Value = s.get("/v1/secrets", &admin).json().unwrap();
    let by_key = |k: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|m| m["key"] == k)
            .unwrap_or_else(|| panic!("{k} missing: {list}"))
            .clone()
    };
    let hmac = by_key("GITHUB_WEBHOOK_SECRET");
    assert_eq!(
        (hmac["kind"].clone(), hmac["quota"].clone()),
        (json!("hmac-sha256"), json!({"per_minute": 60})),
        "{hmac}"
    );
    let aws = by_key("AWS_INVOICES");
    assert_eq!(
        aws["binding"]["signer"],
        json!({"aws": {"region": "eu-west-1", "service": "execute-api"}}),
        "{aws}"
    );
    assert_eq!(aws["quota"], json!({"per_day": 5000}), "{aws}");
    let jwt = by_key("GITHUB_APP_KEY");
    assert_eq!(
        (jwt["kind"].clone(), jwt["binding"]["signer"].clone()),
        (
            json!("jwt-rs256"),
            json!({"jwt": {"issuer": "123456", "ttl_secs": 540}})
        ),
        "{jwt}"
    );
    let oauth = by_key("GOOGLE_CLIENT");
    assert_eq!(oauth["kind"], "oauth2", "{oauth}");
    assert_eq!(
        oauth["oauth"]["url"], "https://oauth2.googleapis.com/token",
        "{oauth}"
    );
    assert_eq!(oauth["oauth"]["grant"], "client-credentials", "{oauth}");
}
