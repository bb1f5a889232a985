"""Posts a message to a Slack channel with chat.postMessage: the Python twin of
examples/slack-post (same input, output and errors)."""

from latchkey_sdk import Request, credential, step

# Most issues named in a digest; the rest are counted.
DIGEST_MAX = 20


def digest(issues):
    """``3 issues: #1 Crash on start; #2 Typo; #5 Slow``, from github-issues' output."""
    if not issues:
        return "No issues."
    parts = []
    for i in issues[:DIGEST_MAX]:
        number, title = i.get("number"), i.get("title")
        if number is not None and title is not None:
            parts.append(f"#{number} {title}")
        elif number is not None:
            parts.append(f"#{number}")
        else:
            parts.append(title or "(untitled)")
    if len(issues) > DIGEST_MAX:
        parts.append(f"and {len(issues) - DIGEST_MAX} more")
    noun = "issue" if len(issues) == 1 else "issues"
    return f"{len(issues)} {noun}: {'; '.join(parts)}"


def required(input, field):
    value = input.get(field)
    if not isinstance(value, str):
        raise ValueError(f'input needs a string field "{field}"')
    return value


@step
def run(input):
    channel = required(input, "channel")
    if "text" not in input and isinstance(input.get("issues"), list):
        text = digest(input["issues"])
    else:
        text = required(input, "text")
    api_base = input.get("api_base", "https://slack.com").rstrip("/")

    token = credential("SLACK_TOKEN")
    resp = (
        Request.post(f"{api_base}/api/chat.postMessage")
        .bearer(token)
        # Without a charset Slack answers with a `missing_charset` warning.
        .header("content-type", "application/json; charset=utf-8")
        .json({"channel": channel, "text": text})
        .send()
    )
    if not resp.ok:
        raise RuntimeError(f"slack answered HTTP {resp.status}")

    # Slack reports failures as 200 with `"ok": false`.
    body = resp.json()
    if body.get("ok") is not True:
        raise RuntimeError(f"slack refused the message: {body.get('error', 'unknown error')}")
    return {"ok": True, "channel": body.get("channel"), "ts": body.get("ts")}
