// Posts a message to a Slack channel with chat.postMessage: the TypeScript twin of
// examples/slack-post (same input, output and errors).
import { credential, Request, step } from 'latchkey-sdk';

type Issue = { number?: number; title?: string };
type Input = { channel?: string; text?: string; issues?: Issue[]; api_base?: string };

/** Most issues named in a digest; the rest are counted. */
const DIGEST_MAX = 20;

/** `3 issues: #1 Crash on start; #2 Typo; #5 Slow`, from github-issues' output. */
function digest(issues: Issue[]): string {
  if (issues.length === 0) return 'No issues.';
  const parts = issues.slice(0, DIGEST_MAX).map((i) => {
    if (i.number !== undefined && i.title !== undefined) return `#${i.number} ${i.title}`;
    if (i.number !== undefined) return `#${i.number}`;
    return i.title ?? '(untitled)';
  });
  if (issues.length > DIGEST_MAX) parts.push(`and ${issues.length - DIGEST_MAX} more`);
  return `${issues.length} ${issues.length === 1 ? 'issue' : 'issues'}: ${parts.join('; ')}`;
}

function required(input: Input, field: 'channel' | 'text'): string {
  const value = input[field];
  if (typeof value !== 'string') throw new Error(`input needs a string field "${field}"`);
  return value;
}

export const run = step((input: Input) => {
  const channel = required(input, 'channel');
  const text =
    input.text === undefined && Array.isArray(input.issues)
      ? digest(input.issues)
      : required(input, 'text');
  const apiBase = (input.api_base ?? 'https://slack.com').replace(/\/+$/, '');

  const token = credential('SLACK_TOKEN');
  const resp = Request.post(`${apiBase}/api/chat.postMessage`)
    .bearer(token)
    // Without a charset Slack answers with a `missing_charset` warning.
    .header('content-type', 'application/json; charset=utf-8')
    .json({ channel, text })
    .send();
  if (!resp.ok) throw new Error(`slack answered HTTP ${resp.status}`);

  // Slack reports failures as 200 with `"ok": false`.
  const body = resp.json<{ ok: boolean; error?: string; channel?: string; ts?: string }>();
  if (body.ok !== true) {
    throw new Error(`slack refused the message: ${body.error ?? 'unknown error'}`);
  }
  return { ok: true, channel: body.channel, ts: body.ts };
});
