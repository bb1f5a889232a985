//! Tries to open a TCP connection of its own. Input `{"addr": "127.0.0.1:80"}` → `{"ok": bool,
//! "error": string|null}`.
//!
//! Using `std::net` makes the component import `wasi:sockets/*`, which the host links with
//! every socket operation denied: the answer must say the connection failed.

use serde_json::{Value, json};

fn run(input: Value) -> Result<Value, latchkey_sdk::Error> {
    let addr = input["addr"].as_str().unwrap_or("127.0.0.1:80");
    Ok(match std::net::TcpStream::connect(addr) {
        Ok(_) => json!({ "ok": true, "error": null }),
        Err(e) => json!({ "ok": false, "error": e.to_string() }),
    })
}

latchkey_sdk::export_step!(run);
