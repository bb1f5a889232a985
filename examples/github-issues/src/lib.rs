//! Lists a GitHub repository's issues, following pagination.

use latchkey_sdk::{Credential, Error, Part, Request, Response, credential};
use serde_json::{Value, json};

fn run(input: Value) -> Result<Value, Error> {
    let repo = input["repo"]
        .as_str()
        .filter(|r| is_repo_name(r))
        .ok_or_else(|| Error::msg("input needs \"repo\" as \"owner/name\""))?;
    let state = input["state"].as_str().unwrap_or("open");
    let api_base = input["api_base"]
        .as_str()
        .unwrap_or("https://api.github.com");
    let max_pages = input["max_pages"].as_u64().unwrap_or(5);
    let per_page = input["per_page"].as_u64().unwrap_or(100).clamp(1, 100);

    let token = credential("GITHUB_TOKEN")?;
    let first = format!("{}/repos/{repo}/issues", api_base.trim_end_matches('/'));
    let mut resp = get(&first, &token)
        .query("state", state)
        .query("per_page", per_page.to_string())
        .send()?;

    let mut issues = Vec::new();
    let mut pages = 0;
    loop {
        check(&resp)?;
        pages += 1;
        let page: Vec<Value> = resp.json()?;
        issues.extend(
            page.iter()
                // The issues endpoint lists pull requests too; they carry a `pull_request` key.
                .filter(|i| i.get("pull_request").is_none())
                .map(
                    |i| json!({ "number": i["number"], "title": i["title"], "state": i["state"] }),
                ),
        );
        let next = match resp.header("link").and_then(next_link) {
            Some(next) if pages < max_pages => next.to_owned(),
            _ => break,
        };
        // The next URL already carries the query; the host checks it against the binding
        // afresh, so a `Link` pointing elsewhere cannot take the token with it.
        resp = get(&next, &token).send()?;
    }

    let mut output = json!({ "count": issues.len(), "issues": issues, "pages": pages });
    forward(&input, &mut output)?;
    Ok(output)
}

/// Copies the fields of the optional input object `forward` into the output, so that a
/// workflow can hand the next step what it needs (e.g. a Slack `channel`). A forwarded
/// field may not replace one of this step's own (`count`, `issues`, `pages`).
fn forward(input: &Value, output: &mut Value) -> Result<(), Error> {
    let extra = match &input["forward"] {
        Value::Null => return Ok(()),
        Value::Object(extra) => extra,
        _ => return Err(Error::msg("\"forward\" must be an object")),
    };
    let Some(out) = output.as_object_mut() else {
        return Ok(());
    };
    for (name, value) in extra {
        if out.contains_key(name) {
            return Err(Error::msg(format!(
                "\"forward\" may not contain {name:?}: the step sets it itself"
            )));
        }
        out.insert(name.clone(), value.clone());
    }
    Ok(())
}

fn get<'a>(url: &str, token: &'a Credential) -> Request<'a> {
    Request::get(url)
        .header_parts("authorization", [Part::text("token "), Part::secret(token)])
        .header("accept", "application/vnd.github+json")
        .header("user-agent", "latchkey-example")
}

fn check(resp: &Response) -> Result<(), Error> {
    if resp.is_success() {
        return Ok(());
    }
    // GitHub explains errors in a JSON `message`; the host has scrubbed the token out of it.
    let detail = resp
        .json::<Value>()
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or_default();
    Err(Error::msg(format!(
        "GitHub answered HTTP {}: {detail}",
        resp.status()
    )))
}

/// Keeps `repo` from reaching into other API paths (`../`, extra segments, a query).
fn is_repo_name(repo: &str) -> bool {
    let mut parts = repo.split('/');
    let valid = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    };
    matches!((parts.next(), parts.next(), parts.next()), (Some(o), Some(n), None) if valid(o) && valid(n))
}

/// The `rel="next"` target of an RFC 8288 `Link` header, e.g.
/// `<https://api.github.com/repositories/1/issues?page=2>; rel="next", <...>; rel="last"`.
fn next_link(header: &str) -> Option<&str> {
    header.split(',').find_map(|link| {
        let (target, params) = link.trim().strip_prefix('<')?.split_once('>')?;
        let is_next = params.split(';').any(|param| {
            let Some((name, value)) = param.split_once('=') else {
                return false;
            };
            name.trim().eq_ignore_ascii_case("rel")
                && value
                    .trim()
                    .trim_matches('"')
                    .split_ascii_whitespace()
                    .any(|rel| rel.eq_ignore_ascii_case("next"))
        });
        is_next.then_some(target)
    })
}

latchkey_sdk::export_step!(run);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_next_link() {
        let h = r#"<https://api.github.com/repositories/1/issues?page=2&per_page=100>; rel="next", <https://api.github.com/repositories/1/issues?page=9>; rel="last""#;
        assert_eq!(
            next_link(h),
            Some("https://api.github.com/repositories/1/issues?page=2&per_page=100")
        );
        assert_eq!(
            next_link(r#"<https://x/1>; rel="prev", <https://x/3>; rel="last""#),
            None
        );
        assert_eq!(
            next_link(r#"<https://x/3>;rel="next last""#),
            Some("https://x/3")
        );
        assert_eq!(next_link("garbage"), None);
    }

    #[test]
    fn forwards_extra_fields_but_not_its_own() {
        let mut out = json!({ "count": 0, "issues": [], "pages": 1 });
        forward(&json!({ "repo": "a/b" }), &mut out).unwrap();
        assert_eq!(out, json!({ "count": 0, "issues": [], "pages": 1 }));
        forward(&json!({ "forward": { "channel": "#dev" } }), &mut out).unwrap();
        assert_eq!(out["channel"], "#dev");
        assert!(forward(&json!({ "forward": { "count": 9 } }), &mut out).is_err());
        assert!(forward(&json!({ "forward": "x" }), &mut out).is_err());
    }

    #[test]
    fn repo_names() {
        assert!(is_repo_name("rust-lang/rust"));
        assert!(is_repo_name("a.b/c_d"));
        assert!(!is_repo_name("rust-lang"));
        assert!(!is_repo_name("../x"));
        assert!(!is_repo_name("a/b/c"));
        assert!(!is_repo_name("a/b?x=1"));
    }
}
