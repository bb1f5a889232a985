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
//!
//! Sockets and files are not here: using `std::net` or `std::fs` makes a component import
//! `wasi:sockets` or `wasi:filesystem`, which the host refuses at load, and that would take
//! every other probe down with it. See `tcp` and `files`.

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

latchkey_sdk::export_step!(run);
