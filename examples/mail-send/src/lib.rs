//! Sends an email through Mailgun's `messages` API, authenticating with basic auth.

use latchkey_sdk::{Error, Request, credential};
use serde_json::{Value, json};

fn run(input: Value) -> Result<Value, Error> {
    let domain = input["domain"]
        .as_str()
        .filter(|d| is_domain(d))
        .ok_or_else(|| Error::msg("input needs \"domain\", a domain name"))?;
    let api_base = input["api_base"]
        .as_str()
        .unwrap_or("https://api.mailgun.net");

    let mut form = Vec::new();
    form.push(("from", required(&input, "from")?));
    // `to` is one address or a list; Mailgun takes one `to` field per recipient.
    match &input["to"] {
        Value::String(to) => form.push(("to", to.as_str())),
        Value::Array(list) if !list.is_empty() => {
            for to in list {
                let to = to
                    .as_str()
                    .ok_or_else(|| Error::msg("\"to\" must hold strings"))?;
                form.push(("to", to));
            }
        }
        _ => {
            return Err(Error::msg(
                "input needs \"to\", an address or a list of them",
            ));
        }
    }
    form.push(("subject", required(&input, "subject")?));
    form.push(("text", required(&input, "text")?));

    let key = credential("MAILGUN_API_KEY")?;
    let resp = Request::post(format!(
        "{}/v3/{domain}/messages",
        api_base.trim_end_matches('/')
    ))
    .basic_auth("api", &key)
    .header("content-type", "application/x-www-form-urlencoded")
    .body(form_urlencoded(&form))
    .send()?;

    if !resp.is_success() {
        // Mailgun explains failures in `message`; the host has scrubbed the key out of it.
        let detail = resp
            .json::<Value>()
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_owned))
            .unwrap_or_default();
        return Err(Error::msg(format!(
            "Mailgun answered HTTP {}: {detail}",
            resp.status()
        )));
    }
    let body: Value = resp.json()?;
    Ok(json!({ "id": body["id"], "message": body["message"] }))
}

fn required<'v>(input: &'v Value, field: &str) -> Result<&'v str, Error> {
    input[field]
        .as_str()
        .ok_or_else(|| Error::msg(format!("input needs a string field {field:?}")))
}

/// Keeps `domain` from reaching into other API paths.
fn is_domain(domain: &str) -> bool {
    !domain.is_empty()
        && !domain.starts_with('.')
        && domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// `application/x-www-form-urlencoded` as browsers write it: alphanumerics and `*-._` as they
/// are, space as `+`, every other byte of the UTF-8 as `%XX`.
fn form_urlencoded(fields: &[(&str, &str)]) -> String {
    fn encode(out: &mut String, s: &str) {
        for b in s.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                    out.push(char::from(b));
                }
                b' ' => out.push('+'),
                _ => {
                    const HEX: &[u8; 16] = b"0123456789ABCDEF";
                    out.push('%');
                    out.push(char::from(HEX[usize::from(b >> 4)]));
                    out.push(char::from(HEX[usize::from(b & 0xf)]));
                }
            }
        }
    }
    let mut out = String::new();
    for (i, (name, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode(&mut out, name);
        out.push('=');
        encode(&mut out, value);
    }
    out
}

latchkey_sdk::export_step!(run);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_form() {
        assert_eq!(
            form_urlencoded(&[("to", "a+b@example.com"), ("text", "héllo & bye\n100%")]),
            "to=a%2Bb%40example.com&text=h%C3%A9llo+%26+bye%0A100%25"
        );
        assert_eq!(form_urlencoded(&[]), "");
    }

    #[test]
    fn domains() {
        assert!(is_domain("mg.example.com"));
        assert!(!is_domain("example.com/../x"));
        assert!(!is_domain(""));
    }
}
