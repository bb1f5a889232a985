//! Uses credential handles it does not own, through the generated bindings the SDK keeps out of
//! reach of ordinary steps. Every action should end in a trap; a returned value means the host
//! accepted a bad handle. Input `{"action": ..., ...}`:
//!
//! - `"forged"`, `"handle"` (default 12345), `"url"`: fetches `url` with a handle made up from
//!   the number as `Authorization: Bearer <secret>`
//! - `"forged_key"`, `"handle"`: calls `key()` on a made-up handle
//! - `"dropped"`, `"key"`, `"url"`: gets `key`, drops the handle, then fetches with its old
//!   number
//! - `"double_drop"`, `"key"`: gets `key` and drops the handle twice
//!
//! If a fetch does return, the forged handle is released with `take_handle` rather than
//! dropped: a trap from dropping it would look like the trap the test expects.

use latchkey_sdk::__private::raw_credentials::{self, Credential};
use latchkey_sdk::__private::raw_http;
use latchkey_sdk::Error;
use serde_json::{Value, json};

fn run(input: Value) -> Result<Value, Error> {
    let url = input["url"].as_str().unwrap_or("https://example.com/");
    let handle = input["handle"]
        .as_u64()
        .and_then(|h| u32::try_from(h).ok())
        .unwrap_or(12345);
    match input["action"].as_str().unwrap_or("forged") {
        "forged" => {
            // SAFETY: none; making up a handle is the point of this guest.
            let forged = unsafe { Credential::from_handle(handle) };
            Ok(fetch_and_release(url, forged))
        }
        "forged_key" => {
            // SAFETY: none, as above.
            let forged = unsafe { Credential::from_handle(handle) };
            let key = forged.key();
            forged.take_handle();
            Ok(json!({ "key": key }))
        }
        "dropped" => {
            let cred = raw_credentials::get(key(&input)?)?;
            let old = cred.handle();
            drop(cred);
            // SAFETY: none; using a released handle is the point.
            let stale = unsafe { Credential::from_handle(old) };
            Ok(fetch_and_release(url, stale))
        }
        "double_drop" => {
            let cred = raw_credentials::get(key(&input)?)?;
            let number = cred.handle();
            drop(cred);
            // SAFETY: none; dropping a released handle again is the point.
            drop(unsafe { Credential::from_handle(number) });
            Ok(json!({ "dropped_twice": number }))
        }
        other => Err(Error::msg(format!("unknown action {other:?}"))),
    }
}

fn key(input: &Value) -> Result<&str, Error> {
    input["key"]
        .as_str()
        .ok_or_else(|| Error::msg("input needs a string \"key\""))
}

fn fetch_and_release(url: &str, cred: Credential) -> Value {
    let request = raw_http::Request {
        method: raw_http::Method::Get,
        url: url.to_owned(),
        headers: vec![raw_http::Header {
            name: "authorization".into(),
            value: vec![
                raw_http::ValuePart::Text("Bearer ".into()),
                raw_http::ValuePart::Secret(&cred),
            ],
        }],
        query: Vec::new(),
        basic_auth: None,
        body: None,
        timeout_ms: None,
    };
    let result = raw_http::fetch(&request);
    drop(request);
    cred.take_handle();
    match result {
        Ok(resp) => json!({ "status": resp.status, "body": String::from_utf8_lossy(&resp.body) }),
        Err(e) => json!({ "error": Error::from(e).to_string() }),
    }
}

latchkey_sdk::export_step!(run);
