//! Credentials whose request value the host computes from a key that never leaves:
//! `aws-sigv4` (the whole request signed with Signature Version 4) and `jwt-rs256` /
//! `jwt-es256` (a short-lived token minted per request). The receiving side verifies with
//! code independent of the host's signer (Python's hashlib/hmac from the SigV4 spec,
//! OpenSSL for RS256); the step gets nothing it could replay: not the key, not the
//! signature, not the token.
#![allow(clippy::unwrap_used)]

use latchkey_host::policy::{AwsSigner, Binding, BindingSpec, JwtClaims, SignerParams};
use latchkey_host::store::{CredentialKind, SecretSpec, StoreError};
use latchkey_tests::upstream::{Upstream, encoded_forms};
use latchkey_tests::*;
use serde_json::{Value, json};
use std::io::Write;
use std::process::{Command, Stdio};

const AKID: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const SESSION: &str = "FwoGZXIvYXdzEXAMPLEsessionTOKENvalue0123456789";

fn rsa_pem() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/jwt-test-rsa.pem"
    ))
    .unwrap()
}

fn binding(up: &Upstream, places: &[&str], signer: Option<SignerParams>) -> Binding {
    BindingSpec {
        hosts: hosts(&[&format!("127.0.0.1:{}", up.port())]),
        locations: locations(places),
        allow_http: true,
        signer,
        ..BindingSpec::default()
    }
    .build()
    .unwrap()
}

fn put(
    s: &TestStore,
    name: &str,
    value: &str,
    b: Binding,
    kind: CredentialKind,
) -> Result<(), StoreError> {
    set_in_workspace(
        &s.store,
        name,
        value,
        SecretSpec {
            kind,
            ..http_spec(b)
        },
    )
    .map(|_| ())
}

fn aws_keys(session: bool) -> String {
    let mut v = json!({"access_key_id": AKID, "secret_access_key": SECRET});
    if session {
        v["session_token"] = SESSION.into();
    }
    v.to_string()
}

fn aws(region: &str) -> Option<SignerParams> {
    Some(SignerParams::Aws(AwsSigner {
        region: region.into(),
        service: "execute-api".into(),
    }))
}

fn claims() -> Option<SignerParams> {
    Some(SignerParams::Jwt(JwtClaims {
        issuer: "app-1234".into(),
        subject: Some("installation-9".into()),
        audience: Some("https://api.example.com".into()),
        scope: None,
        ttl_secs: 120,
        key_id: Some("key-2026".into()),
    }))
}

/// SigV4 recomputed from the request as received, following AWS's published algorithm,
/// in Python's hashlib/hmac: no code shared with the host's signer.
fn python_sigv4(got: &latchkey_tests::upstream::Recorded, secret: &str) -> (String, String) {
    let script = r#"
import hashlib, hmac, json, sys, urllib.parse
r = json.load(sys.stdin)
auth = r["headers"]["authorization"]
cred = auth.split("Credential=")[1].split(",")[0]
signed = auth.split("SignedHeaders=")[1].split(",")[0].split(";")
date, region, service = cred.split("/")[1:4]
pairs = sorted(urllib.parse.parse_qsl(r["query"] or "", keep_blank_values=True))
q = "&".join(urllib.parse.quote(k, safe="-_.~") + "=" + urllib.parse.quote(v, safe="-_.~") for k, v in pairs)
headers = "".join(h + ":" + " ".join(r["headers"][h].split()) + "\n" for h in signed)
body = bytes.fromhex(r["body"])
creq = "\n".join([r["method"], r["path"], q, headers, ";".join(signed), hashlib.sha256(body).hexdigest()])
amz = r["headers"]["x-amz-date"]
scope = f"{date}/{region}/{service}/aws4_request"
sts = "\n".join(["AWS4-HMAC-SHA256", amz, scope, hashlib.sha256(creq.encode()).hexdigest()])
k = ("AWS4" + sys.argv[1]).encode()
for part in [date, region, service, "aws4_request"]:
    k = hmac.new(k, part.encode(), hashlib.sha256).digest()
print(hmac.new(k, sts.encode(), hashlib.sha256).hexdigest())
print(auth.split("Signature=")[1])
"#;
    let headers: serde_json::Map<String, Value> = got
        .headers
        .iter()
        .map(|(n, v)| (n.clone(), Value::from(v.clone())))
        .collect();
    let input = json!({"method": got.method, "path": got.path, "query": got.query,
                       "headers": headers, "body": hex::encode(&got.body)});
    let mut child = Command::new("python3")
        .args(["-c", script, secret])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the verifier failed");
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    (
        lines.next().unwrap().to_owned(),
        lines.next().unwrap_or_default().to_owned(),
    )
}

fn aws_request(url: &str, parts: Value) -> Value {
    json!({"action": "raw", "method": "POST", "url": url, "body": r#"{"Action":"List"}"#,
           "headers": [{"name": "authorization", "parts": parts},
                       {"name": "x-amz-date", "parts": [{"text": "19990101T000000Z"}]},
                       {"name": "x-custom", "parts": [{"text": "  spaced   value "}]}]})
}

#[tokio::test(flavor = "multi_thread")]
async fn an_aws_request_is_signed_by_the_host_and_verifies_without_the_key_leaving() {
    let up = Upstream::start().await.unwrap();
    let s = TestStore::new();
    put(
        &s,
        "AWS",
        &aws_keys(true),
        binding(&up, &["header:authorization"], aws("eu-west-1")),
        CredentialKind::AwsSigv4,
    )
    .unwrap();
    let rt = runtime(&s);
    let step = load(&rt, "probe");
    let url = up.url("/echo/encoded?b=2&a=x%20y");
    let out = run_ok(&rt, &step, aws_request(&url, json!([{"secret": "AWS"}]))).await;
    assert_eq!(out["status"], 200, "{out}");

    let got = up.last_request().unwrap();
    let auth = got.header("authorization").unwrap().to_owned();
    assert!(
        auth.starts_with(&format!("AWS4-HMAC-SHA256 Credential={AKID}/"))
            && auth.contains("/eu-west-1/execute-api/aws4_request"),
        "{auth}"
    );
    assert_ne!(
        got.header("x-amz-date"),
        Some("19990101T000000Z"),
        "the step chose the date"
    );
    assert_eq!(got.header("x-amz-security-token"), Some(SESSION));
    let (want, sent) = python_sigv4(&got, SECRET);
    assert_eq!(want, sent, "the signature does not verify");
    let raw = format!("{:?}", got);
    assert!(!raw.contains(SECRET), "the secret access key was sent");

    // The upstream echoed every header in several encodings: none comes back.
    let answer = out.to_string();
    assert_eq!(out["redacted"], true, "{answer}");
    for value in [auth.as_str(), SESSION, sent.as_str()] {
        for (label, form) in encoded_forms(value) {
            assert!(!answer.contains(&form), "{label} form came back: {answer}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_aws_key_is_the_whole_authorization_value_and_only_that() {
    let up = Upstream::start().await.unwrap();
    let s = TestStore::new();
    let b = binding(&up, &["header:authorization"], aws("us-east-1"));
    put(&s, "AWS", &aws_keys(false), b, CredentialKind::AwsSigv4).unwrap();
    let rt = runtime(&s);
    let step = load(&rt, "probe");
    let url = up.url("/echo");
    // Text around it, or another header: refused, nothing sent.
    for parts in [
        json!([{"text": "AWS "}, {"secret": "AWS"}]),
        json!([{"secret": "AWS"}, {"secret": "AWS"}]),
    ] {
        let out = run_ok(&rt, &step, aws_request(&url, parts)).await;
        assert!(
            out["error"]
                .as_str()
                .unwrap_or_default()
                .contains("whole authorization"),
            "{out}"
        );
    }
    let other = json!({"action": "raw", "method": "GET", "url": url,
        "headers": [{"name": "x-api-key", "parts": [{"secret": "AWS"}]}]});
    let out = run_ok(&rt, &step, other).await;
    assert!(out["error"].is_string(), "{out}");
    assert_eq!(up.request_count(), 0);

    // Stored wrongly: refused at `set`, naming the problem.
    let e = put(
        &s,
        "NOREGION",
        &aws_keys(false),
        binding(&up, &["header:authorization"], None),
        CredentialKind::AwsSigv4,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("region and service"), "{e}");
    let e = put(
        &s,
        "TWOPLACES",
        &aws_keys(false),
        binding(
            &up,
            &["header:authorization", "query:sig"],
            aws("us-east-1"),
        ),
        CredentialKind::AwsSigv4,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("only into the authorization header"), "{e}");
    let e = put(
        &s,
        "COLON",
        &format!("{AKID}:{SECRET}"),
        binding(&up, &["header:authorization"], aws("us-east-1")),
        CredentialKind::AwsSigv4,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("access_key_id") && !e.contains(SECRET), "{e}");
}

/// RS256 checked by OpenSSL against the public key: code independent of ring.
fn openssl_verifies(token: &str) -> bool {
    let (input, sig) = token.rsplit_once('.').unwrap();
    use base64::Engine as _;
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(sig)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sig_path = dir.path().join("sig");
    std::fs::write(&sig_path, sig).unwrap();
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/jwt-test-rsa.pub.pem"
        ))
        .arg("-signature")
        .arg(&sig_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("openssl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait().unwrap().success()
}

fn payload(token: &str) -> Value {
    use base64::Engine as _;
    let p = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_jwt_is_minted_per_request_verifies_and_never_reaches_the_step() {
    let up = Upstream::start().await.unwrap();
    let s = TestStore::new();
    put(
        &s,
        "APP_KEY",
        &rsa_pem(),
        binding(&up, &["header:authorization"], claims()),
        CredentialKind::JwtRs256,
    )
    .unwrap();
    let rt = runtime(&s);
    let step = load(&rt, "probe");
    let req = json!({"action": "raw", "method": "GET", "url": up.url("/echo/encoded"),
        "headers": [{"name": "authorization", "parts": [{"text": "Bearer "}, {"secret": "APP_KEY"}]}],
        "repeat": 2});
    let out = run_ok(&rt, &step, req).await;
    assert_eq!(out["status"], 200, "{out}");
    let all = up.requests();
    assert_eq!(all.len(), 2);
    let tokens: Vec<String> = all
        .iter()
        .map(|r| {
            r.header("authorization")
                .unwrap()
                .strip_prefix("Bearer ")
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_ne!(tokens[0], tokens[1], "one token for two requests");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for t in &tokens {
        assert!(openssl_verifies(t), "RS256 signature does not verify");
        let p = payload(t);
        assert_eq!(p["iss"], "app-1234");
        assert_eq!(p["sub"], "installation-9");
        assert_eq!(p["aud"], "https://api.example.com");
        let exp = p["exp"].as_u64().unwrap();
        assert!(exp > now && exp <= now + 121, "exp {exp}, now {now}");
        assert!(!t.contains("PRIVATE"), "the key was sent");
    }
    let answer = out.to_string();
    assert_eq!(out["redacted"], true, "{answer}");
    for (label, form) in encoded_forms(&tokens[1]) {
        assert!(!answer.contains(&form), "{label} form came back: {answer}");
    }
    // The signature part alone (what a replay would need most) does not come back either.
    let sig = tokens[1].rsplit('.').next().unwrap();
    assert!(!answer.contains(sig), "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_jwt_key_goes_nowhere_but_its_bound_places_and_bad_keys_are_refused_when_stored() {
    let up = Upstream::start().await.unwrap();
    let other = Upstream::start().await.unwrap();
    let s = TestStore::new();
    put(
        &s,
        "APP_KEY",
        &rsa_pem(),
        binding(&up, &["header:authorization"], claims()),
        CredentialKind::JwtRs256,
    )
    .unwrap();
    let rt = runtime(&s);
    let step = load(&rt, "probe");
    for (url, header) in [
        (other.url("/echo"), "authorization"),
        (up.url("/echo"), "x-token"),
    ] {
        let req = json!({"action": "raw", "method": "GET", "url": url,
            "headers": [{"name": header, "parts": [{"secret": "APP_KEY"}]}]});
        let out = run_ok(&rt, &step, req).await;
        assert!(
            out["error"].as_str().unwrap_or_default().contains("denied")
                || out["error"].is_string(),
            "{out}"
        );
    }
    assert_eq!(up.request_count() + other.request_count(), 0);

    for (value, kind, want) in [
        ("not a pem", CredentialKind::JwtRs256, "PEM"),
        (rsa_pem().as_str(), CredentialKind::JwtEs256, "P-256"),
    ] {
        let e = put(
            &s,
            "BAD",
            value,
            binding(&up, &["header:authorization"], claims()),
            kind,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains(want) && !e.contains("MII"), "{e}");
    }
    let e = put(
        &s,
        "NOCLAIMS",
        &rsa_pem(),
        binding(&up, &["header:authorization"], None),
        CredentialKind::JwtRs256,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("claims"), "{e}");
    let e = put(
        &s,
        "STATIC",
        "lk_static_value_0123456789abcdef",
        binding(&up, &["header:authorization"], claims()),
        CredentialKind::Static,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("no signing parameters"), "{e}");
}
