// The JavaScript probe: what a TypeScript step built with latchkey-build can see and do.
// Input `{"action": ..., ...}`:
//
// - `"fetch"`, `"url"`, optional `"key"`, `"inject"`, `"method"`, `"body"`: one request with
//   the Request builder → `{"status", "ok", "headers": [[k, v]..], "body": text}`, or
//   `{"error": message, "kind": kind}`. `inject` is `"bearer"` (default with a key),
//   `"header:<name>"` (the whole value), `"parts:<name>"` (`["token ", cred]`),
//   `"query:<name>"`, `"basic:<user>"`, `"json:<field>"` (a JSON body `{field: cred}`) or
//   `"form:<field>"` (a form body `{field: cred, other: "x"}`)
// - `"whatwg"`: as `fetch`, awaiting the SDK's WHATWG-style `fetch()` with a bearer header
//   given as `["Bearer ", cred]` (the step function is async: every action goes through the
//   SDK's promise path)
// - `"sign"`, `"url"`, `"key"`, `"encoding"`, optional `"header"`, `"query"`, `"body"`: a POST of
//   `body` signed by the host with the signing key `key`, the signature in header `header`
//   (after `sha256=`, with `headerSignature`) or query parameter `query` (a `signature()` part)
//   → as `fetch`
// - `"print"`, `"key"`: every way a step can print a handle, returned and logged
// - `"throw"`, `"message"`: throws `new Error(message)`; `"throw_value"` throws `{message}`
// - `"missing"`, `"key"`: `credential(key)` for a key with no secret → the error's text
// - `"log"`: console.log/info/warn/error/debug with a string and an object
// - `"random"`: `{"random": Math.random(), "now": Date.now()}`
import {
  credential,
  fetch,
  LatchkeyError,
  log,
  Request,
  Response,
  signature,
  type SignatureEncoding,
  step,
} from 'latchkey-sdk';

type Input = { action: string; [field: string]: any };

function describe(resp: Response) {
  return { status: resp.status, ok: resp.ok, headers: [...resp.headers], body: resp.text() };
}

function failure(e: unknown) {
  if (e instanceof LatchkeyError) return { error: e.message, kind: e.kind };
  throw e;
}

function build(input: Input): Request {
  const req = new Request(input.method ?? 'GET', input.url);
  if (input.key === undefined) return input.body ? req.body(input.body) : req;
  const cred = credential(input.key);
  const inject: string = input.inject ?? 'bearer';
  const [how, name] = inject.includes(':') ? inject.split(/:(.*)/s) : [inject, ''];
  switch (how) {
    case 'bearer':
      return req.bearer(cred);
    case 'header':
      return req.header(name, cred);
    case 'parts':
      return req.header(name, ['token ', cred]);
    case 'query':
      return req.query(name, cred);
    case 'basic':
      return req.basicAuth(name, cred);
    case 'json':
      return req.json({ [name]: cred, note: 'a "quoted" note' });
    case 'form':
      return req.form({ [name]: cred, other: 'x y&z' });
    default:
      throw new Error(`unknown inject ${inject}`);
  }
}

export const run = step(async (input: Input) => {
  switch (input.action) {
    case 'fetch':
      try {
        return describe(build(input).send());
      } catch (e) {
        return failure(e);
      }
    case 'sign':
      try {
        const key = credential(input.key);
        const encoding: SignatureEncoding = input.encoding;
        let req = Request.post(input.url);
        if (input.body !== undefined) req = req.body(input.body);
        if (input.header) req = req.headerSignature(input.header, 'sha256=', key, encoding);
        if (input.query) req = req.query(input.query, [signature(key, encoding)]);
        return describe(req.send());
      } catch (e) {
        return failure(e);
      }
    case 'whatwg':
      try {
        const resp = await fetch(input.url, {
          method: 'POST',
          headers: { authorization: ['Bearer ', credential(input.key)] },
          body: 'hi',
        });
        return { ...describe(resp), json: await resp.json(), header: resp.headers.get('content-type') };
      } catch (e) {
        return failure(e);
      }
    case 'print': {
      const cred = credential(input.key);
      const printed = {
        string: String(cred),
        template: `${cred}`,
        json: JSON.stringify(cred),
        inObject: JSON.stringify({ cred }),
        keys: Object.keys(cred),
        names: Object.getOwnPropertyNames(cred),
        key: cred.key,
        same: credential(input.key) === cred,
      };
      console.log('handle:', cred, { cred });
      log.info(cred);
      return printed;
    }
    case 'throw':
      throw new Error(input.message);
    case 'throw_value':
      throw { message: input.message };
    case 'missing':
      try {
        credential(input.key);
        return { error: null };
      } catch (e) {
        return failure(e);
      }
    case 'log':
      console.log('plain', { n: 1 });
      console.info('info line');
      console.warn('warn line');
      console.error('error line');
      console.debug('debug line');
      return {};
    case 'random':
      return { random: Math.random(), now: Date.now() };
    default:
      throw new Error(`unknown action ${input.action}`);
  }
});
