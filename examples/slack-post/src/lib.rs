//! Posts a message to a Slack channel with `chat.postMessage`.

use latchkey_sdk::{Error, Request, credential};
use serde_json::{Value, json};

fn run(input: Value) -> Result<Value, Error> {
    let channel = required(&input, "channel")?;
    let text = match (&input["text"], &input["issues"]) {
        (Value::Null, Value::Array(issues)) => digest(issues),
        _ => required(&input, "text")?.to_owned(),
    };
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

/// Most issues named in a digest; the rest are counted.
const DIGEST_MAX: usize = 20;

/// A one-line digest of a list of issues as the github-issues step outputs them
/// (`[{"number", "title", ..}]`): `3 issues: #1 Crash on start; #2 Typo; #5 Slow`.
fn digest(issues: &[Value]) -> String {
    let n = issues.len();
    if n == 0 {
        return "No issues.".to_owned();
    }
    let mut parts: Vec<String> = issues
        .iter()
        .take(DIGEST_MAX)
        .map(|i| match (i["number"].as_u64(), i["title"].as_str()) {
            (Some(num), Some(title)) => format!("#{num} {title}"),
            (Some(num), None) => format!("#{num}"),
            (None, Some(title)) => title.to_owned(),
            (None, None) => "(untitled)".to_owned(),
        })
        .collect();
    if n > DIGEST_MAX {
        parts.push(format!("and {} more", n - DIGEST_MAX));
    }
    let noun = if n == 1 { "issue" } else { "issues" };
    format!("{n} {noun}: {}", parts.join("; "))
}

fn required<'v>(input: &'v Value, field: &str) -> Result<&'v str, Error> {
    input[field]
        .as_str()
        .ok_or_else(|| Error::msg(format!("input needs a string field {field:?}")))
}

latchkey_sdk::export_step!(run);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_issues() {
        assert_eq!(digest(&[]), "No issues.");
        let issues = [
            json!({ "number": 1, "title": "Crash on start", "state": "open" }),
            json!({ "number": 2, "title": "Typo" }),
        ];
        assert_eq!(digest(&issues), "2 issues: #1 Crash on start; #2 Typo");
        let many: Vec<Value> = (1..=25)
            .map(|n| json!({ "number": n, "title": "t" }))
            .collect();
        let d = digest(&many);
        assert!(
            d.starts_with("25 issues: #1 t;") && d.ends_with("#20 t; and 5 more"),
            "{d}"
        );
    }
}
