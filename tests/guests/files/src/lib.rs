//! Tries to read the file system. Using `std::fs` makes the component import
//! `wasi:filesystem`, which the host links with no directory preopened: every read must fail.
//! Input `{"path": ...}` → `{"ok": bool, "error": string|null, "content": string|null}`.

use latchkey_sdk::Error;
use serde_json::{Value, json};

fn run(input: Value) -> Result<Value, Error> {
    let path = input["path"].as_str().unwrap_or("/etc/passwd");
    Ok(match std::fs::read(path) {
        Ok(bytes) => {
            json!({ "ok": true, "error": null, "content": String::from_utf8_lossy(&bytes) })
        }
        Err(e) => json!({ "ok": false, "error": e.to_string(), "content": null }),
    })
}

latchkey_sdk::export_step!(run);
