//! Red-team findings: each test here showed a way around a promise of SECURITY.md on the
//! code it was written against (each failed there), and passes since its fix.
#![allow(clippy::unwrap_used)]

use latchkey_host::audit;
use latchkey_host::policy::BindingSpec;
use latchkey_host::sandbox::Limits;
use latchkey_tests::upstream::Upstream;
use latchkey_tests::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const VALUE: &str = "sk-Tq7Lm2Rx9Wp4Kz8Nv3Bc6Df1Gj5Hs0Ya2Ue7";

fn host(up: &Upstream) -> String {
    format!("127.0.0.1:{}", up.port())
}

/// Text dense in escapes of every kind the scrubber decodes, after its own base64: decoded
/// escapes join the base64 run, so each text view re-decodes the run and every decoded
/// copy is searched again, three levels deep.
fn scrub_bomb(bytes: usize) -> String {
    use base64::Engine as _;
    let text = r"%C3%BC&#x41;&amp;=3D+\x41".repeat(5);
    let unit = format!(
        "{}{text}",
        base64::engine::general_purpose::STANDARD.encode(text.as_bytes())
    );
    unit.repeat(bytes / unit.len())
}

/// The step's output is scrubbed after the run, with no deadline (`Injected::scrub_text`
/// passes `None`). Once any value was injected, a step can return up to
/// `max_output_bytes` of text built to make the scrubber slow (here fetched from a host
/// outside the binding, whose responses are not scrubbed and so come back at once), and
/// the run returns long after its deadline. Responses are scrubbed against the deadline
/// and fail closed; the output (and log lines, and the step's error message, which has no
/// size limit at all) are not.
#[tokio::test(flavor = "multi_thread")]
async fn the_output_scrub_is_bounded_by_the_runs_deadline() {
    let bound = Upstream::start().await.unwrap();
    let other = Upstream::start().await.unwrap();
    let s = TestStore::new();
    s.put(
        &workspace(),
        "TOKEN",
        VALUE,
        &[&host(&bound)],
        &["header:authorization"],
    );
    let deadline = Duration::from_secs(1);
    let rt = runtime_with(
        &s,
        Limits {
            deadline,
            memory_bytes: 256 << 20,
            ..Limits::default()
        },
    );
    let step = load(&rt, "probe");
    let t = Instant::now();
    let out = run(
        &rt,
        &step,
        json!({"action": "raw", "requests": [
            {"url": bound.url("/echo"), "headers": [{"name": "authorization",
                "parts": [{"text": "Bearer "}, {"secret": "TOKEN"}]}]},
            {"url": other.url("/echo"), "method": "POST", "body": scrub_bomb(900_000)},
        ]}),
    )
    .await;
    let took = t.elapsed();
    eprintln!(
        "run: {:?} in {took:?}",
        out.as_ref()
            .map(|o| o.output.len())
            .map_err(|e| e.to_string())
    );
    assert!(
        took < deadline + Duration::from_secs(2),
        "the run returned after {took:?}, its deadline is {deadline:?}"
    );
}

/// A binding that names methods or path prefixes is defeated by the override headers
/// common frameworks honour (Rails, Laravel, Symfony, Express `method-override`, IIS
/// rewrite): the request line says `GET /echo/read`, the server acts on `DELETE` or on
/// `/echo/admin`. The host refuses path encodings that servers decode differently, but lets
/// a step set these headers next to a method- or path-bound credential.
#[tokio::test(flavor = "multi_thread")]
async fn method_and_path_override_headers_are_refused_with_a_bound_credential() {
    let up = Upstream::start().await.unwrap();
    let s = TestStore::new();
    s.put_spec(
        &workspace(),
        "TOKEN",
        VALUE,
        BindingSpec {
            hosts: hosts(&[&host(&up)]),
            locations: locations(&["header:authorization"]),
            methods: vec!["GET".into()],
            path_prefixes: vec!["/echo/read".into()],
            ..BindingSpec::default()
        },
    );
    let rt = runtime(&s);
    let step = load(&rt, "probe");
    let mut sent = Vec::new();
    for (name, value) in [
        ("x-http-method-override", "DELETE"),
        ("x-http-method", "DELETE"),
        ("x-method-override", "DELETE"),
        ("x-original-url", "/echo/admin"),
        ("x-rewrite-url", "/echo/admin"),
    ] {
        let before = up.request_count();
        let out = run_ok(
            &rt,
            &step,
            json!({"action": "raw", "url": up.url("/echo/read"), "headers": [
                {"name": "authorization", "parts": [{"text": "Bearer "}, {"secret": "TOKEN"}]},
                {"name": name, "parts": [{"text": value}]}]}),
        )
        .await;
        if up.request_count() > before {
            sent.push(format!("{name}: {value} -> {}", out["status"]));
        }
    }
    assert!(
        sent.is_empty(),
        "sent with a GET /echo/read binding: {sent:?}"
    );
}

/// Whether a value could go into a header depended on bytes the store accepted but the
/// HTTP stack does not (DEL, C0 controls other than CR, LF, NUL): the fetch was refused
/// only for such values, so a step learned that a value holds one. Such values are now
/// refused when stored with a header, query or basic-auth location, so no fetch-time
/// refusal depends on the value.
#[tokio::test(flavor = "multi_thread")]
async fn header_refusals_do_not_depend_on_the_value() {
    use latchkey_host::policy::{Binding, HostPattern, InjectLocation};
    use latchkey_host::secret::{CredentialKey, SecretValue, ValueError};
    use latchkey_host::store::{SecretSpec, StoreError};
    let s = TestStore::new();
    for odd in ["\u{7f}", "\u{1}", "\u{1b}", "\u{8}"] {
        for location in ["header:x-a", "query:k", "basic-auth"] {
            let value = format!("sk-Tq7Lm2Rx9Wp4{odd}Kz8Nv3Bc6Df1Gj5Hs0Ya2Ue7");
            let err = s
                .store
                .set(
                    &workspace(),
                    &CredentialKey::new("ODD").unwrap(),
                    SecretValue::new(value.into_bytes()).unwrap(),
                    SecretSpec {
                        integration: "http".into(),
                        binding: Binding::new(
                            vec![HostPattern::parse("api.example.com").unwrap()],
                            vec![InjectLocation::parse(location).unwrap()],
                            false,
                        )
                        .unwrap(),
                        allow_weak_value: false,
                        quota: Default::default(),
                        kind: Default::default(),
                        oauth: None,
                    },
                    "tester",
                )
                .unwrap_err();
            assert!(
                matches!(err, StoreError::Value(ValueError::NotHeaderSafe)),
                "{location} {odd:?}: {err}"
            );
        }
    }
    assert!(
        s.store.list(None).unwrap().is_empty(),
        "a refused value was stored"
    );
}

/// A value that is not UTF-8 may be bound to a query parameter (the store checks only CR,
/// LF and NUL), but `inject` puts it in the URL through `String::from_utf8_lossy`: the
/// upstream receives a different string (U+FFFD for each bad byte), which the scrubber,
/// looking for the stored bytes, never finds. An upstream that faithfully echoes its query
/// string hands every valid stretch of the value back to the step in clear.
#[tokio::test(flavor = "multi_thread")]
async fn a_non_utf8_value_in_a_query_is_scrubbed_from_its_echo() {
    use latchkey_host::policy::{Binding, HostPattern, InjectLocation};
    use latchkey_host::secret::{CredentialKey, SecretValue};
    use latchkey_host::store::SecretSpec;
    let up = Upstream::start().await.unwrap();
    let s = TestStore::new();
    let tail = "Wp4Kz8Nv3Bc6Df1Gj5Hs0Ya2Ue7";
    let mut value = b"sk-Tq7Lm2Rx9".to_vec();
    value.push(0xE9); // "é" in Latin-1
    value.extend_from_slice(tail.as_bytes());
    s.store
        .set(
            &workspace(),
            &CredentialKey::new("TOKEN").unwrap(),
            SecretValue::new(value).unwrap(),
            SecretSpec {
                integration: "http".into(),
                binding: Binding::new(
                    vec![HostPattern::parse(&host(&up)).unwrap()],
                    vec![InjectLocation::parse("query:key").unwrap()],
                    true,
                )
                .unwrap(),
                allow_weak_value: true,
                quota: Default::default(),
                kind: Default::default(),
                oauth: None,
            },
            "tester",
        )
        .unwrap();
    let rt = runtime(&s);
    let step = load(&rt, "probe");
    let out = run_ok(
        &rt,
        &step,
        json!({"action": "raw", "url": up.url("/echo"),
               "query": [{"name": "key", "parts": [{"secret": "TOKEN"}]}]}),
    )
    .await;
    assert_eq!(out["status"], 200, "{out}");
    assert!(
        !out.to_string().contains(tail),
        "most of the value came back in clear: {out}"
    );
}

/// RFC 6052 puts an IPv4 address under a /48 NAT64 prefix (such as the local-use
/// 64:ff9b:1::/48 of RFC 8215) in bits 48..88, around the `u` octet, not in the low 32
/// bits. `is_cloud_metadata` and `forbidden_reason` read only the low 32 bits under
/// 64:ff9b::/32, so 169.254.169.254 behind a /48 translator passes as the public address in
/// the (ignored) suffix bits, and a step can name it as an IP literal.
#[test]
fn metadata_behind_a_local_use_nat64_prefix_is_refused() {
    use latchkey_host::policy::AddressPolicy;
    // 64:ff9b:1::/48 with 169.254.169.254 at bits 48..64 and 72..88, suffix 8.8.8.8.
    let ip: std::net::IpAddr = "64:ff9b:1:a9fe:a9:fe00:808:808".parse().unwrap();
    assert!(
        AddressPolicy::all_private().check_with(ip, true).is_err(),
        "{ip} is allowed"
    );
}

/// Node (like Python's `http.server`) reads request header values as Latin-1. A value with
/// a non-ASCII character sent in a header comes back from such an echo as mojibake
/// (`ü` → `Ã¼`), which the scrubber does not look for, while every other character of the
/// value comes back as it is; the step re-encodes the mojibake as Latin-1 and has the
/// whole value. The fake upstream's `/reflect` reads headers as UTF-8 in Rust before it
/// runs the encoders, so `never_read::echoes_from_real_encoders_are_scrubbed` misses this.
#[tokio::test(flavor = "multi_thread")]
async fn a_header_value_echoed_by_a_real_node_server_is_scrubbed() {
    use std::io::BufRead as _;
    // A real node server that answers with the request's headers as JSON.
    let script = "require('http').createServer((q, s) => { \
        s.setHeader('content-type', 'application/json; charset=utf-8'); \
        s.end(JSON.stringify({token: q.headers['x-api-key']})); \
    }).listen(0, '127.0.0.1', function () { console.log(this.address().port); });";
    /// Ends the node server however the test ends.
    struct Node(std::process::Child);
    impl Drop for Node {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut node = Node(
        std::process::Command::new("node")
            .args(["-e", script])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    std::io::BufReader::new(node.0.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line.trim().parse().unwrap();
    let value = "sk-Tq7Lm2Rx9ü-Wp4Kz8Nv3Bc6Df1Gj5Hs0Ya2Ue7";
    let s = TestStore::new();
    s.put(
        &workspace(),
        "TOKEN",
        value,
        &[&format!("127.0.0.1:{port}")],
        &["header:x-api-key"],
    );
    let rt = runtime(&s);
    let step = load(&rt, "probe");
    let out = run_ok(
        &rt,
        &step,
        json!({"action": "raw", "url": format!("http://127.0.0.1:{port}/"),
               "headers": [{"name": "x-api-key", "parts": [{"secret": "TOKEN"}]}]}),
    )
    .await;
    drop(node);
    assert_eq!(out["status"], 200, "{out}");
    let body: Value = serde_json::from_str(out["body"].as_str().unwrap()).unwrap();
    let echoed = body["token"].as_str().unwrap_or_default();
    // Undo Latin-1 reading: each char is one byte.
    let bytes: Vec<u8> = echoed.chars().map(|c| c as u32 as u8).collect();
    assert_ne!(
        String::from_utf8_lossy(&bytes),
        value,
        "the step recovered the whole value from {out}"
    );
    assert!(!out.to_string().contains("Wp4Kz8Nv3Bc6Df1Gj5Hs0"), "{out}");
}

/// Path prefixes refuse the encodings servers decode differently (`%2e`, `%2f`, `%5c`,
/// `%25`, `%00`, `\`, `;`), but not IIS's `%uXXXX` nor overlong UTF-8 (`%c0%ae` is `.`
/// and `%c0%af` is `/` to decoders that accept it): `/echo/read/%u002e%u002e/admin` is
/// under `/echo/read/` for the host and is `/echo/admin` for such a server.
#[tokio::test(flavor = "multi_thread")]
async fn path_encodings_some_servers_decode_as_dot_or_slash_are_refused() {
    let up = Upstream::start().await.unwrap();
    let s = TestStore::new();
    s.put_spec(
        &workspace(),
        "TOKEN",
        VALUE,
        BindingSpec {
            hosts: hosts(&[&host(&up)]),
            locations: locations(&["header:authorization"]),
            path_prefixes: vec!["/echo/read/".into()],
            ..BindingSpec::default()
        },
    );
    let rt = runtime(&s);
    let step = load(&rt, "probe");
    let mut sent = Vec::new();
    for path in [
        "/echo/read/%u002e%u002e/admin",
        "/echo/read/..%u2215admin",
        "/echo/read/%c0%ae%c0%ae/admin",
        "/echo/read/..%c0%afadmin",
    ] {
        let before = up.request_count();
        let _ = run_ok(
            &rt,
            &step,
            json!({"action": "raw", "url": up.url(path), "headers": [
                {"name": "authorization", "parts": [{"text": "Bearer "}, {"secret": "TOKEN"}]}]}),
        )
        .await;
        if up.request_count() > before {
            sent.push(path);
        }
    }
    assert!(sent.is_empty(), "sent under /echo/read/: {sent:?}");
}

/// Names a step chooses reach the audit trail: a query parameter's name and the JSON keys
/// or form field name leading to a credential become the record's `location` and appear
/// in its `outcome`, which `latchkey audit` and run reports print. With CR, LF, ESC and BEL
/// in them a step printed a forged `SecretRotate by=alice` line and retitled the
/// operator's terminal. Such names are refused as an invalid request, before anything is
/// sent or recorded with them.
#[tokio::test(flavor = "multi_thread")]
async fn control_characters_in_names_a_step_chooses_never_reach_the_audit_trail() {
    let up = Upstream::start().await.unwrap();
    let s = TestStore::new();
    s.put_spec(
        &workspace(),
        "TOKEN",
        VALUE,
        BindingSpec {
            hosts: hosts(&[&host(&up)]),
            locations: locations(&["query:token", "body:json:/token", "body:form:token"]),
            ..BindingSpec::default()
        },
    );
    let rt = runtime(&s);
    let step = load(&rt, "probe");
    let forged = "x\r\n2026-12-06T23:00:00.000Z SecretRotate by=alice \u{1b}]0;owned\u{7}";
    let json_key = serde_json::to_string(forged).unwrap();
    let form_name =
        "x%0D%0A2026-12-06T23%3A00%3A00.000Z+SecretRotate+by%3Dalice+%1B%5D0%3Bowned%07";
    let raw = |extra: Value| {
        let mut r = json!({"action": "raw", "url": up.url("/echo"), "method": "POST",
                           "headers": [{"name": "content-type", "parts": [{"text": "application/json"}]}]});
        r.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        r
    };
    for (what, request) in [
        (
            "a query parameter name",
            raw(json!({"query": [{"name": forged, "parts": [{"secret": "TOKEN"}]}]})),
        ),
        (
            "a JSON key",
            raw(
                json!({"body_parts": [{"text": format!("{{{json_key}:\"")}, {"secret": "TOKEN"}, {"text": "\"}"}]}),
            ),
        ),
        (
            "a JSON key beside the credential's field",
            raw(
                json!({"body_parts": [{"text": format!("{{{json_key}:1,\"token\":\"")}, {"secret": "TOKEN"}, {"text": "\"}"}]}),
            ),
        ),
        (
            "a form field name",
            raw(
                json!({"body_parts": [{"text": format!("{form_name}=")}, {"secret": "TOKEN"}],
                       "headers": [{"name": "content-type",
                                    "parts": [{"text": "application/x-www-form-urlencoded"}]}]}),
            ),
        ),
    ] {
        let before = up.request_count();
        let out = run_ok(&rt, &step, request).await;
        let error = out["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("InvalidRequest") && error.contains("control character"),
            "{what}: {out}"
        );
        assert_eq!(up.request_count(), before, "{what}: sent anyway");
    }
    let (records, _) = audit::read_all(&s.store).unwrap();
    for r in &records {
        let fields = [
            r.location.as_deref().unwrap_or_default(),
            r.outcome.as_str(),
        ];
        assert!(
            !fields.iter().any(|f| f.chars().any(char::is_control)),
            "a step's control characters reached the audit trail: {r:?}"
        );
    }
}

/// Rails, Laravel and Symfony take the method from a `_method` field of a form body or of
/// the query (Laravel and Symfony from a JSON body too): a `POST` the binding allows
/// becomes a `DELETE` it does not. Refused for a credential whose binding names methods;
/// a binding that names none is not affected.
#[tokio::test(flavor = "multi_thread")]
async fn a_method_override_field_is_refused_with_a_method_bound_credential() {
    let up = Upstream::start().await.unwrap();
    let s = TestStore::new();
    for (key, methods) in [("POST_ONLY", vec!["POST".to_owned()]), ("ANY", vec![])] {
        s.put_spec(
            &workspace(),
            key,
            VALUE,
            BindingSpec {
                hosts: hosts(&[&host(&up)]),
                locations: locations(&["header:authorization"]),
                methods,
                ..BindingSpec::default()
            },
        );
    }
    let rt = runtime(&s);
    let step = load(&rt, "probe");
    // The step's request: the credential as a bearer token, then `extra`'s fields (its
    // `headers` after the authorization header).
    let request = |key: &str, url: String, extra: Value| {
        let mut extra = extra.as_object().unwrap().clone();
        let mut headers =
            vec![json!({"name": "authorization", "parts": [{"text": "Bearer "}, {"secret": key}]})];
        if let Some(Value::Array(more)) = extra.remove("headers") {
            headers.extend(more);
        }
        let mut r = json!({"action": "raw", "url": url, "method": "POST", "headers": headers});
        r.as_object_mut().unwrap().extend(extra);
        r
    };
    let form = |body: &str| {
        json!({"body": body, "headers": [
            {"name": "content-type", "parts": [{"text": "application/x-www-form-urlencoded"}]}]})
    };
    let overrides = [
        (
            "in the URL's query",
            up.url("/echo?_method=DELETE"),
            json!({}),
        ),
        (
            "in a query parameter",
            up.url("/echo"),
            json!({"query": [{"name": "_method", "parts": [{"text": "DELETE"}]}]}),
        ),
        (
            "in a form body",
            up.url("/echo"),
            form("a=1&_method=DELETE"),
        ),
        (
            "in a JSON body",
            up.url("/echo"),
            json!({"body": "{\"_method\":\"DELETE\"}"}),
        ),
        (
            "in a multipart body",
            up.url("/echo"),
            json!({"body": "--b\r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nDELETE\r\n--b--\r\n"}),
        ),
    ];
    for (what, url, extra) in overrides.clone() {
        let before = up.request_count();
        let out = run_ok(&rt, &step, request("POST_ONLY", url, extra)).await;
        assert!(
            out["error"].as_str().unwrap_or_default().contains("Denied"),
            "{what}: {out}"
        );
        assert_eq!(up.request_count(), before, "{what}: sent anyway");
    }
    // A credential bound to no method, and fields that only look alike, go through.
    for (what, url, extra) in overrides {
        let out = run_ok(&rt, &step, request("ANY", url, extra)).await;
        assert_eq!(out["status"], 200, "{what}: {out}");
    }
    for body in ["a=1&http_method=DELETE", "x_method=1"] {
        let out = run_ok(
            &rt,
            &step,
            request("POST_ONLY", up.url("/echo"), form(body)),
        )
        .await;
        assert_eq!(out["status"], 200, "{body}: {out}");
    }
}
