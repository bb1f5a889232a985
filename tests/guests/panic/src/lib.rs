//! Panics, for the trap test. Input `{"message": "..."}` (optional).

use serde_json::Value;

fn run(input: Value) -> Result<Value, latchkey_sdk::Error> {
    let message = input["message"].as_str().unwrap_or("deliberate panic");
    panic!("{message}");
}

latchkey_sdk::export_step!(run);
