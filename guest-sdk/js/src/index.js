// Write Latchkey workflow steps in JavaScript or TypeScript.
//
// A step gets JSON in and gives JSON back. It may call HTTP APIs with stored credentials, but
// never sees their values: `credential("KEY")` is an opaque handle that can only be placed in a
// request; the host puts the value in at send time, after checking the request against the
// credential's binding, and scrubs it out of the response. Types: `index.d.ts`.
//
// The versioned WIT import names live here and nowhere else; `latchkey-build` bundles this
// module with the step and leaves these imports for the component.
import * as wit_credentials from 'latchkey:workflow/credentials@0.2.0';
import * as wit_http from 'latchkey:workflow/http@0.2.0';
import * as wit_log from 'latchkey:workflow/log@0.2.0';

// ---------------------------------------------------------------------------------------------
// Errors

/** What went wrong, as `error.kind`: the WIT error's case, or `json` / `message`. */
const MESSAGES = {
  'missing-credential': (v) => `credential ${v} is not available`,
  'invalid-key': (v) => `invalid credential key: ${v}`,
  'too-many-handles': () => 'too many credential handles',
  'invalid-request': (v) => `invalid request: ${v}`,
  denied: (v) => `request denied: ${v}`,
  transport: (v) => `transport error: ${v}`,
  timeout: () => 'request timed out',
  'limit-exceeded': (v) => `limit exceeded: ${v}`,
  json: (v) => `JSON error: ${v}`,
};

/**
 * Everything that can go wrong in a step. `kind` says which case, `detail` carries the host's
 * explanation (or the key, for `missing-credential`). No error can hold a secret value: the
 * step never has one.
 */
export class LatchkeyError extends Error {
  constructor(kind, detail) {
    const describe = MESSAGES[kind];
    super(describe ? describe(detail) : String(detail));
    this.name = 'LatchkeyError';
    this.kind = describe ? kind : 'message';
    this.detail = detail;
  }
}

/** Calls a host function, turning its WIT error (a `{tag, val}` payload) into a LatchkeyError. */
function host(call) {
  try {
    return call();
  } catch (e) {
    const payload = e && typeof e === 'object' && 'payload' in e ? e.payload : undefined;
    if (payload && typeof payload.tag === 'string') {
      throw new LatchkeyError(payload.tag, payload.val);
    }
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// Credentials

const RAW = Symbol('latchkey.raw');
const handles = new Map();

/**
 * A handle to a stored credential. It names a secret without containing it: the only thing a
 * step can do with it is to place it in a request. Printed, stringified or logged, it shows
 * its key and nothing else.
 */
export class Credential {
  constructor(key, raw) {
    Object.defineProperty(this, 'key', { value: key, enumerable: true });
    // Not enumerable: JSON and inspection see the key only (the raw handle is just a number,
    // but it is not the author's business either).
    Object.defineProperty(this, RAW, { value: raw, enumerable: false });
    Object.freeze(this);
  }

  toString() {
    return `Credential(${this.key})`;
  }

  toJSON() {
    return this.toString();
  }

  get [Symbol.toStringTag]() {
    return `Credential(${this.key})`;
  }
}

/**
 * The handle to the credential stored under `key` (ASCII `A-Z`, `0-9`, `_`). One handle per
 * key: asking again returns the same handle, so a loop cannot run out of handles.
 * Throws a LatchkeyError (`missing-credential`, `invalid-key`, `too-many-handles`).
 */
export function credential(key) {
  if (typeof key !== 'string') {
    throw new LatchkeyError('invalid-key', `a credential key is a string, not ${typeof key}`);
  }
  let handle = handles.get(key);
  if (!handle) {
    handle = new Credential(key, host(() => wit_credentials.get(key)));
    handles.set(key, handle);
  }
  return handle;
}

function rawOf(cred) {
  const raw = cred instanceof Credential ? cred[RAW] : undefined;
  if (raw === undefined) {
    throw new TypeError(`expected a credential from credential(), got ${describe(cred)}`);
  }
  return raw;
}

// ---------------------------------------------------------------------------------------------
// Signatures

const ENCODINGS = ['hex', 'base64'];

/**
 * The HMAC-SHA256 signature of the request body (the empty string without one), computed by
 * the host at send time with the signing key `cred` (a credential of kind `hmac-sha256`), as
 * lowercase `hex` or standard `base64`. A part of a header or query value, e.g.
 * `["sha256=", signature(key)]`; never of the body it covers. The step never sees the key or
 * the signature.
 */
export class Signature {
  constructor(cred, encoding = 'hex') {
    rawOf(cred);
    if (!ENCODINGS.includes(encoding)) {
      throw new LatchkeyError(
        'invalid-request',
        `a signature is encoded as ${ENCODINGS.join(' or ')}, not ${JSON.stringify(encoding)}`,
      );
    }
    Object.defineProperty(this, 'credential', { value: cred, enumerable: true });
    Object.defineProperty(this, 'encoding', { value: encoding, enumerable: true });
    Object.freeze(this);
  }

  toString() {
    return `Signature(${this.credential.key}, ${this.encoding})`;
  }

  toJSON() {
    return this.toString();
  }
}

/** `new Signature(cred, encoding)`: the host's HMAC-SHA256 of the body, as a value part. */
export function signature(cred, encoding = 'hex') {
  return new Signature(cred, encoding);
}

// ---------------------------------------------------------------------------------------------
// Requests

/**
 * A header, query or body value made of parts: strings are literal text, credentials are
 * filled in by the host, signatures computed by it. `value` may be a string, a Credential, a
 * Signature or an array of them, e.g. `["token ", cred]`.
 */
function parts(value) {
  const list = Array.isArray(value) ? value : [value];
  return list.map((p) => {
    if (p instanceof Credential) return { tag: 'secret', val: rawOf(p) };
    if (p instanceof Signature) {
      return { tag: 'signature', val: { key: rawOf(p.credential), encoding: p.encoding } };
    }
    if (typeof p === 'string') return { tag: 'text', val: p };
    if (typeof p === 'number' || typeof p === 'boolean') return { tag: 'text', val: String(p) };
    throw new TypeError(
      `a value part is a string, a credential or a signature, not ${describe(p)}`,
    );
  });
}

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];
const encoder = new TextEncoder();

/**
 * An HTTP request, built step by step and sent with `send()`. Nothing is checked before
 * `send()`: the host validates the whole request and decides where each credential may go.
 */
export class Request {
  constructor(method, url) {
    const m = String(method).toUpperCase();
    if (!METHODS.includes(m)) {
      throw new LatchkeyError('invalid-request', `unknown method ${JSON.stringify(method)}`);
    }
    this.method = m;
    this.url = String(url);
    this.headers = [];
    this.queryParams = [];
    this.auth = undefined;
    this.payload = undefined;
    this.timeoutMs = undefined;
  }

  static get(url) { return new Request('GET', url); }
  static head(url) { return new Request('HEAD', url); }
  static post(url) { return new Request('POST', url); }
  static put(url) { return new Request('PUT', url); }
  static patch(url) { return new Request('PATCH', url); }
  static delete(url) { return new Request('DELETE', url); }

  /** Appends a header; `value` is a string, a Credential, or an array of both. */
  header(name, value) {
    this.headers.push({ name: String(name), value: parts(value) });
    return this;
  }

  /** `Authorization: Bearer <credential>`. */
  bearer(cred) {
    return this.header('authorization', ['Bearer ', cred]);
  }

  /**
   * Header `name` = `prefix` followed by the HMAC-SHA256 signature of the body, computed by
   * the host with the signing key `cred`, e.g.
   * `.headerSignature('x-hub-signature-256', 'sha256=', key)`. The host signs the exact
   * bytes it sends, so the body may be set before or after.
   */
  headerSignature(name, prefix, cred, encoding = 'hex') {
    return this.header(name, [String(prefix), signature(cred, encoding)]);
  }

  /** HTTP basic authentication with `username` and the credential as the password. */
  basicAuth(username, password) {
    this.auth = { username: String(username), password: rawOf(password) };
    return this;
  }

  /** Appends a query parameter (percent-encoded by the host); `value` as for `header`. */
  query(name, value) {
    this.queryParams.push({ name: String(name), value: parts(value) });
    return this;
  }

  /**
   * The body: `value` as JSON, with `content-type: application/json` unless one is set.
   * A Credential anywhere in `value` becomes that JSON string, filled in by the host
   * (its binding must name the field, e.g. `body:json:/password`).
   */
  json(value) {
    const { text, secrets } = withPlaceholders(value);
    if (text === undefined) {
      throw new LatchkeyError('json', 'the body cannot be serialised as JSON');
    }
    this.payload = secrets.length
      ? { tag: 'template', val: splice(text, secrets, (t) => JSON.stringify(t)) }
      : { tag: 'bytes', val: encoder.encode(text) };
    return this.setTypeUnlessSet('application/json');
  }

  /**
   * The body as `application/x-www-form-urlencoded`: `fields` is an object or a list of
   * `[name, value]` pairs; a Credential value is filled in by the host (binding
   * `body:form:NAME`).
   */
  form(fields) {
    const pairs = Array.isArray(fields) ? fields : Object.entries(fields);
    const list = [];
    let text = [];
    for (const [name, value] of pairs) {
      const prefix = `${text.length || list.length ? '&' : ''}${formEncode(name)}=`;
      if (value instanceof Credential) {
        list.push({ tag: 'text', val: text.join('') + prefix });
        list.push({ tag: 'secret', val: rawOf(value) });
        text = [];
      } else {
        text.push(prefix + formEncode(value));
      }
    }
    const rest = text.join('');
    const secret = list.length > 0;
    if (rest) list.push({ tag: 'text', val: rest });
    this.payload = secret
      ? { tag: 'template', val: list }
      : { tag: 'bytes', val: encoder.encode(rest) };
    return this.setTypeUnlessSet('application/x-www-form-urlencoded');
  }

  /**
   * The body as it is: a string (UTF-8), a Uint8Array, or an array of strings and
   * Credentials (a template; the host accepts one that is JSON or form-encoded with each
   * credential a whole value). Set `content-type` yourself.
   */
  body(value) {
    if (Array.isArray(value)) this.payload = { tag: 'template', val: parts(value) };
    else if (value instanceof Uint8Array) this.payload = { tag: 'bytes', val: value };
    else this.payload = { tag: 'bytes', val: encoder.encode(String(value)) };
    return this;
  }

  /** Total time allowed for this request in milliseconds (capped by the host's limit). */
  timeout(ms) {
    this.timeoutMs = Math.min(Math.max(Math.ceil(Number(ms)), 0), 0xffffffff);
    return this;
  }

  /** Sends the request; returns the Response or throws a LatchkeyError. */
  send() {
    const resp = host(() =>
      wit_http.fetch({
        method: this.method.toLowerCase(),
        url: this.url,
        headers: this.headers,
        query: this.queryParams,
        basicAuth: this.auth,
        body: this.payload,
        timeoutMs: this.timeoutMs,
      }),
    );
    return new Response(resp.status, resp.headers, resp.body);
  }

  setTypeUnlessSet(type) {
    if (!this.headers.some((h) => h.name.toLowerCase() === 'content-type')) {
      this.header('content-type', type);
    }
    return this;
  }

  toString() {
    return `Request(${this.method} ${this.url})`;
  }
}

function formEncode(value) {
  return encodeURIComponent(String(value)).replace(/%20/g, '+');
}

/**
 * Serialises `value` as JSON with every Credential replaced by a placeholder string that occurs
 * nowhere else in the output; returns the text and the credentials in placeholder order.
 */
function withPlaceholders(value) {
  for (let attempt = 0; ; attempt++) {
    const tag = `latchkey-secret-${attempt}-${Math.random().toString(36).slice(2)}-`;
    const secrets = [];
    const text = JSON.stringify(value, function replacer(k, v) {
      const raw = this[k];
      if (raw instanceof Credential) {
        secrets.push(raw);
        return `${tag}${secrets.length - 1}`;
      }
      return v;
    });
    if (text === undefined) return { text, secrets };
    if (text.split(tag).length - 1 === secrets.length) {
      return { text, secrets: secrets.map((cred, i) => ({ cred, mark: `${tag}${i}` })) };
    }
  }
}

/** Splits `text` at each (quoted) placeholder into text and secret parts. */
function splice(text, secrets, quote) {
  const out = [];
  let rest = text;
  for (const { cred, mark } of secrets) {
    const quoted = quote(mark);
    const at = rest.indexOf(quoted);
    // The quotes stay text around the secret: the host wants a whole JSON string.
    out.push({ tag: 'text', val: rest.slice(0, at + 1) });
    out.push({ tag: 'secret', val: rawOf(cred) });
    rest = rest.slice(at + quoted.length - 1);
  }
  out.push({ tag: 'text', val: rest });
  return out;
}

// ---------------------------------------------------------------------------------------------
// Responses

/** Response headers in the order received; `get` compares names case-insensitively. */
export class Headers {
  constructor(list) {
    this.list = list;
  }

  /** The value of the first header named `name`, or `null`. */
  get(name) {
    const n = String(name).toLowerCase();
    const found = this.list.find(([k]) => k.toLowerCase() === n);
    return found ? found[1] : null;
  }

  has(name) {
    return this.get(name) !== null;
  }

  entries() {
    return this.list[Symbol.iterator]();
  }

  [Symbol.iterator]() {
    return this.entries();
  }

  forEach(fn) {
    for (const [k, v] of this.list) fn(v, k, this);
  }
}

const decoder = new TextDecoder('utf-8', { fatal: true });

/**
 * An HTTP response; any credential value the host injected has been scrubbed from its
 * headers and body. The body is as the server sent it (not decompressed). `text()` and
 * `json()` return values directly; `await` on them works too, as with WHATWG fetch.
 */
export class Response {
  constructor(status, headers, body) {
    this.status = status;
    this.headers = new Headers(headers);
    this.body = body;
  }

  /** Whether the status is 2xx. */
  get ok() {
    return this.status >= 200 && this.status < 300;
  }

  /** Whether the status is 3xx: the host never follows redirects. */
  get redirect() {
    return this.status >= 300 && this.status < 400;
  }

  /** The value of the first header named `name` (case-insensitive), or `null`. */
  header(name) {
    return this.headers.get(name);
  }

  /** The body as UTF-8 text; throws a LatchkeyError if it is not UTF-8. */
  text() {
    try {
      return decoder.decode(this.body);
    } catch {
      throw new LatchkeyError('message', 'response body is not UTF-8');
    }
  }

  /** The body parsed as JSON; throws a LatchkeyError (`json`) if it does not parse. */
  json() {
    const text = this.text();
    try {
      return JSON.parse(text);
    } catch (e) {
      throw new LatchkeyError('json', `response body is not JSON: ${e.message}`);
    }
  }

  /** The body bytes. */
  bytes() {
    return this.body;
  }
}

// ---------------------------------------------------------------------------------------------
// fetch: the WHATWG shape, with credentials allowed as header values

/**
 * `fetch(url, {method, headers, body, query, basicAuth, timeout})`, resolving to a Response.
 * Header values may be strings, Credentials or arrays of both (`["Bearer ", token]`); `body`
 * is a string, a Uint8Array or a template array. Redirects are never followed.
 */
export function fetch(url, init = {}) {
  try {
    const req = new Request(init.method ?? 'GET', url);
    const headers = init.headers ?? {};
    const entries =
      typeof headers.entries === 'function' && !Array.isArray(headers)
        ? [...headers.entries()]
        : Array.isArray(headers)
          ? headers
          : Object.entries(headers);
    for (const [name, value] of entries) req.header(name, value);
    for (const [name, value] of Object.entries(init.query ?? {})) req.query(name, value);
    if (init.basicAuth) req.basicAuth(init.basicAuth.username, init.basicAuth.password);
    if (init.body !== undefined && init.body !== null) req.body(init.body);
    if (init.timeout !== undefined) req.timeout(init.timeout);
    return Promise.resolve(req.send());
  } catch (e) {
    return Promise.reject(e);
  }
}

// ---------------------------------------------------------------------------------------------
// Logging

/** Records `message` at `level` (`trace`, `debug`, `info`, `warn`, `error`) in the host's log. */
function record(level, args) {
  wit_log.log(level, args.map((a) => (typeof a === 'string' ? a : describe(a))).join(' '));
}

export const log = {
  trace: (...args) => record('trace', args),
  debug: (...args) => record('debug', args),
  info: (...args) => record('info', args),
  warn: (...args) => record('warn', args),
  error: (...args) => record('error', args),
};

/** A printable form of any value; credentials show their key only. */
function describe(value) {
  if (value instanceof Credential || value instanceof Signature) return value.toString();
  if (value instanceof Error) return value.stack ? `${value}\n${value.stack}` : String(value);
  if (value === undefined || typeof value === 'function' || typeof value === 'symbol') {
    return String(value);
  }
  if (typeof value !== 'object' || value === null) return String(value);
  const seen = new WeakSet();
  try {
    return JSON.stringify(value, (k, v) => {
      if (typeof v === 'bigint') return `${v}n`;
      if (typeof v === 'object' && v !== null) {
        if (seen.has(v)) return '[Circular]';
        seen.add(v);
      }
      return v;
    });
  } catch {
    return Object.prototype.toString.call(value);
  }
}

// A step's stdout and stderr go nowhere: console.* goes to the host's log instead.
const routed = {
  log: log.info,
  info: log.info,
  debug: log.debug,
  trace: log.trace,
  warn: log.warn,
  error: log.error,
  dir: (value) => log.info(value),
  table: (value) => log.info(value),
  assert: (condition, ...args) => {
    if (!condition) log.error('Assertion failed:', ...args);
  },
};
// The rest of the console API does nothing rather than throw in a step that uses it.
for (const name of ['group', 'groupCollapsed', 'groupEnd', 'time', 'timeEnd', 'timeLog', 'count', 'countReset']) {
  routed[name] = () => {};
}
globalThis.console = Object.assign(Object.create(null), routed);

// ---------------------------------------------------------------------------------------------
// The entry point

/**
 * Wraps the step's function as the component's `run` export:
 * `export const run = step((input) => { ... return output; })`.
 * The input is parsed from JSON, the output serialised to JSON (`undefined` becomes `null`).
 * The function may be `async` (componentize-js runs the event loop until its promise
 * settles), so `await fetch(...)` works. Anything thrown or rejected fails the step with its
 * message, shown to the operator; it never traps.
 */
export function step(fn) {
  return function run(input) {
    let value;
    try {
      value = JSON.parse(input);
    } catch (e) {
      throw `step input is not valid JSON: ${e.message}`;
    }
    let output;
    try {
      output = fn(value);
    } catch (e) {
      throw errorMessage(e);
    }
    if (output && typeof output.then === 'function') {
      return Promise.resolve(output).then(serialise, (e) => {
        throw errorMessage(e);
      });
    }
    return serialise(output);
  };
}

function serialise(output) {
  try {
    return JSON.stringify(output === undefined ? null : output);
  } catch (e) {
    throw `step output is not valid JSON: ${e.message}`;
  }
}

function errorMessage(e) {
  if (e instanceof Error) return e.message || e.name || 'error';
  if (typeof e === 'string') return e;
  return describe(e);
}
