//! Reports what a step can see and do. Input `{"action": ..., ...}`:
//!
//! - `"env"` → `{"vars": {name: value}, "args": [..]}`
//! - `"get"`, `"key"` → `{"key": <what the handle's `key()` returns>}`, or the error
//! - `"handles"`, `"key"`, `"count"` → gets `key` up to `count` times, keeping every handle
//!   alive: `{"got": n, "error": string|null}` (the first error stops it)
//! - `"fetch"`, `"url"`, optional `"key"`, `"inject"`, `"method"`, `"headers": {name: value}`,
//!   `"body"`, `"timeout_ms"` → `{"status", "headers": [[k, v]..], "body": <UTF-8, lossy>}`,
//!   or the error's text. `inject` is `"bearer"` (default when `key` is given),
//!   `"header:<Name>"`, `"query:<name>"`, `"basic:<user>"` or `"body"` (a body template: the
//!   `body` text with `{secret}` replaced by the credential, or the credential alone)
//! - `"fetch_twice"`: as `fetch`, twice with the same handle → `{"first": .., "second": ..}`
//! - `"log"`, `"message"`, optional `"level"` → logs it, returns `{}`
//! - `"echo"` → the input
//! - `"raw"`: one `http.fetch` through the generated binding, any layout of parts:
//!   `{"method", "url", "headers": [{"name", "parts": [P..]}], "query": [{"name", "parts"}],
//!   "basic": {"user", "key"}, "body_parts": [P..] | "body": str, "repeat": n}` where a part
//!   P is `{"text": s}`, `{"secret": KEY}`, `{"secret": KEY, "times": n}` (n copies) or
//!   `{"signature": KEY, "encoding": "hex"|"base64"}` (latchkey:workflow@0.2.0).
//!   Each distinct key is fetched once. `repeat` sends the same request n times and returns
//!   the last answer. Returns `{"status", "headers", "body", "redacted"}` (`redacted`: what
//!   the guest itself can tell, whether the answer holds `[REDACTED]`) or `{"error": text}`.
//!   With `"requests": [R..]`, sends each request R (same form) in order, in one run, and
//!   returns the list of answers.
//! - `"gets"`, `"key"`, `"count"` → gets and drops `key` `count` times:
//!   `{"got": n, "error": string|null}`
//!
//! - `"fill"`, `"bytes"` → `{"fill": "xxx…"}`, `bytes` x's (a large output)
//!
//! Sockets and files are not here: see `tcp` and `files`, which import `wasi:sockets` and
//! `wasi:filesystem` (linked by the host with nothing granted).

use std::collections::BTreeMap;
use std::time::Duration;

use latchkey_sdk::{Credential, Error, Method, Part, Request, credential, log};
use serde_json::{Value, json};

fn run(input: Value) -> Result<Value, Error> {
    match str_field(&input, "action")? {
        "env" => Ok(env()),
        "get" => {
            // The generated binding, so that `key` is the host's answer, not the SDK's copy.
            let raw = latchkey_sdk::__private::raw_credentials::get(str_field(&input, "key")?)?;
            Ok(json!({ "key": raw.key() }))
        }
        "handles" => Ok(handles(
            str_field(&input, "key")?,
            input["count"].as_u64().unwrap_or(1),
        )),
        "fetch" => {
            let cred = optional_credential(&input)?;
            let resp = build(&input, cred.as_ref())?.send()?;
            Ok(describe(&resp))
        }
        "fetch_twice" => {
            let cred = optional_credential(&input)?;
            let first = describe(&build(&input, cred.as_ref())?.send()?);
            let second = describe(&build(&input, cred.as_ref())?.send()?);
            Ok(json!({ "first": first, "second": second }))
        }
        "log" => {
            let message = str_field(&input, "message")?;
            let level = match input["level"].as_str().unwrap_or("info") {
                "trace" => log::Level::Trace,
                "debug" => log::Level::Debug,
                "info" => log::Level::Info,
                "warn" => log::Level::Warn,
                "error" => log::Level::Error,
                other => return Err(Error::msg(format!("unknown level {other:?}"))),
            };
            log::log(level, message);
            Ok(json!({}))
        }
        "echo" => Ok(input),
        "fill" => {
            let bytes = input["bytes"].as_u64().unwrap_or(0) as usize;
            Ok(json!({ "fill": "x".repeat(bytes) }))
        }
        "raw" => match input["requests"].as_array() {
            Some(list) => list
                .iter()
                .map(raw::fetch)
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            None => raw::fetch(&input),
        },
        "gets" => {
            let key = str_field(&input, "key")?;
            let mut got = 0u64;
            let mut error = None;
            for _ in 0..input["count"].as_u64().unwrap_or(1) {
                match credential(key) {
                    Ok(c) => {
                        drop(c);
                        got += 1;
                    }
                    Err(e) => {
                        error = Some(e.to_string());
                        break;
                    }
                }
            }
            Ok(json!({ "got": got, "error": error }))
        }
        other => Err(Error::msg(format!("unknown action {other:?}"))),
    }
}

fn str_field<'v>(input: &'v Value, name: &str) -> Result<&'v str, Error> {
    input[name]
        .as_str()
        .ok_or_else(|| Error::msg(format!("input needs a string {name:?}")))
}

fn env() -> Value {
    let vars: BTreeMap<String, String> = std::env::vars_os()
        .map(|(k, v)| (k.to_string_lossy().into(), v.to_string_lossy().into()))
        .collect();
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into())
        .collect();
    json!({ "vars": vars, "args": args })
}

fn handles(key: &str, count: u64) -> Value {
    let mut held = Vec::new();
    let mut error = None;
    for _ in 0..count {
        match credential(key) {
            Ok(cred) => held.push(cred),
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
    }
    json!({ "got": held.len(), "error": error })
}

fn optional_credential(input: &Value) -> Result<Option<Credential>, Error> {
    input["key"].as_str().map(credential).transpose()
}

fn build<'a>(input: &Value, cred: Option<&'a Credential>) -> Result<Request<'a>, Error> {
    let method = match input["method"].as_str().unwrap_or("GET") {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "PATCH" => Method::Patch,
        "DELETE" => Method::Delete,
        "OPTIONS" => Method::Options,
        other => return Err(Error::msg(format!("unknown method {other:?}"))),
    };
    let mut req = Request::new(method, str_field(input, "url")?);
    if let Some(headers) = input["headers"].as_object() {
        for (name, value) in headers {
            req = req.header(name, value.as_str().unwrap_or_default());
        }
    }
    let body = input["body"].as_str();
    if let Some(body) = body {
        req = req.body(body);
    }
    if let Some(ms) = input["timeout_ms"].as_u64() {
        req = req.timeout(Duration::from_millis(ms));
    }
    let Some(cred) = cred else {
        return Ok(req);
    };
    let inject = input["inject"].as_str().unwrap_or("bearer");
    Ok(match inject.split_once(':') {
        None if inject == "bearer" => req.bearer(cred),
        None if inject == "body" => {
            let template = match body.and_then(|b| b.split_once("{secret}")) {
                Some((before, after)) => {
                    vec![Part::text(before), Part::secret(cred), Part::text(after)]
                }
                None => vec![Part::secret(cred)],
            };
            req.body_template(template)
        }
        Some(("header", name)) => req.header_secret(name, cred),
        Some(("query", name)) => req.query_secret(name, cred),
        Some(("basic", user)) => req.basic_auth(user, cred),
        _ => return Err(Error::msg(format!("unknown inject {inject:?}"))),
    })
}

fn describe(resp: &latchkey_sdk::Response) -> Value {
    json!({
        "status": resp.status(),
        "headers": resp.headers(),
        "body": String::from_utf8_lossy(resp.body()),
    })
}

mod raw {
    //! Requests built directly on the generated `http` binding, for layouts the SDK does not
    //! offer (a secret next to guest text, many copies of a secret, ...).
    use latchkey_sdk::__private::raw_credentials::{self as creds, Credential};
    use latchkey_sdk::__private::raw_http as h;
    use latchkey_sdk::Error;
    use serde_json::{Value, json};
    use std::collections::BTreeMap;

    fn collect_keys(v: &Value, keys: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(k)) = m.get("secret") {
                    keys.push(k.clone());
                }
                if let Some(Value::String(k)) = m.get("key") {
                    keys.push(k.clone());
                }
                if let Some(Value::String(k)) = m.get("signature") {
                    keys.push(k.clone());
                }
                m.values().for_each(|x| collect_keys(x, keys));
            }
            Value::Array(a) => a.iter().for_each(|x| collect_keys(x, keys)),
            _ => {}
        }
    }

    fn parts<'c>(v: &Value, held: &'c BTreeMap<String, Credential>) -> Vec<h::ValuePart<'c>> {
        let mut out = Vec::new();
        for p in v.as_array().into_iter().flatten() {
            if let Some(t) = p["text"].as_str() {
                out.push(h::ValuePart::Text(t.to_owned()));
            } else if let Some(k) = p["secret"].as_str() {
                for _ in 0..p["times"].as_u64().unwrap_or(1) {
                    out.push(h::ValuePart::Secret(&held[k]));
                }
            } else if let Some(k) = p["signature"].as_str() {
                let encoding = match p["encoding"].as_str() {
                    Some("base64") => h::SignatureEncoding::Base64,
                    _ => h::SignatureEncoding::Hex,
                };
                out.push(h::ValuePart::Signature(h::Signature {
                    key: &held[k],
                    encoding,
                }));
            }
        }
        out
    }

    pub fn fetch(input: &Value) -> Result<Value, Error> {
        let mut keys = Vec::new();
        collect_keys(input, &mut keys);
        let mut held = BTreeMap::new();
        for k in keys {
            if !held.contains_key(&k) {
                match creds::get(&k) {
                    Ok(c) => {
                        held.insert(k, c);
                    }
                    Err(e) => return Ok(json!({ "error": format!("{e:?}") })),
                }
            }
        }
        let method = match input["method"].as_str().unwrap_or("GET") {
            "POST" => h::Method::Post,
            "PUT" => h::Method::Put,
            "PATCH" => h::Method::Patch,
            "DELETE" => h::Method::Delete,
            "HEAD" => h::Method::Head,
            "OPTIONS" => h::Method::Options,
            _ => h::Method::Get,
        };
        let headers = input["headers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|x| h::Header {
                name: x["name"].as_str().unwrap_or_default().to_owned(),
                value: parts(&x["parts"], &held),
            })
            .collect();
        let query = input["query"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|x| h::QueryParam {
                name: x["name"].as_str().unwrap_or_default().to_owned(),
                value: parts(&x["parts"], &held),
            })
            .collect();
        let basic_auth = input["basic"].as_object().map(|b| h::BasicAuth {
            username: b["user"].as_str().unwrap_or_default().to_owned(),
            password: &held[b["key"].as_str().unwrap_or_default()],
        });
        let body = if input["body_parts"].is_array() {
            Some(h::Body::Template(parts(&input["body_parts"], &held)))
        } else {
            input["body"]
                .as_str()
                .map(|b| h::Body::Bytes(b.as_bytes().to_vec()))
        };
        let request = h::Request {
            method,
            url: input["url"].as_str().unwrap_or_default().to_owned(),
            headers,
            query,
            basic_auth,
            body,
            timeout_ms: input["timeout_ms"].as_u64().map(|t| t as u32),
        };
        let mut last = json!(null);
        for _ in 0..input["repeat"].as_u64().unwrap_or(1).max(1) {
            last = match h::fetch(&request) {
                Ok(r) => {
                    let body = String::from_utf8_lossy(&r.body);
                    let redacted = body.contains("[REDACTED]")
                        || r.headers
                            .iter()
                            .any(|(n, v)| n.contains("[REDACTED]") || v.contains("[REDACTED]"));
                    json!({
                        "status": r.status,
                        "headers": r.headers,
                        "body": body,
                        "redacted": redacted,
                    })
                }
                Err(e) => json!({ "error": format!("{e:?}") }),
            };
        }
        Ok(last)
    }
}

latchkey_sdk::export_step!(run);
