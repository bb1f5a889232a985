//! Posts a message to a Slack channel with `chat.postMessage`.

use latchkey_sdk::{Error, Request, credential};
use serde_json::{Value, json};

fn run(input: Value) -> Result<Value, Error> {
    let channel = required(&input, "channel")?;
    let text = required(&input, "text")?;
    let api_base = input["api_base"].as_str().unwrap_or("https://slack.com");

    let token = credential("SLACK_TOKEN")?;
    let resp = Request::post(format!(
        "{}/api/chat.postMessage",
        api_base.trim_end_matches('/')
    ))
    .bearer(&token)
    // Without a charset Slack answers with a `missing_charset` warning.
    .header("content-type", "application/json; charset=utf-8")
    .json(&json!({ "channel": channel, "text": text }))?
    .send()?;
    if !resp.is_success() {
        return Err(Error::msg(format!("slack answered HTTP {}", resp.status())));
    }

    // Slack reports failures as 200 with `"ok": false`.
    let body: Value = resp.json()?;
    if body["ok"] != true {
        let reason = body["error"].as_str().unwrap_or("unknown error");
        return Err(Error::msg(format!("slack refused the message: {reason}")));
    }
    Ok(json!({ "ok": true, "channel": body["channel"], "ts": body["ts"] }))
}

fn required<'v>(input: &'v Value, field: &str) -> Result<&'v str, Error> {
    input[field]
        .as_str()
        .ok_or_else(|| Error::msg(format!("input needs a string field {field:?}")))
}

latchkey_sdk::export_step!(run);
