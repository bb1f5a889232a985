// Types of latchkey-sdk: write Latchkey workflow steps in TypeScript.
//
// Self-contained whatever the project's `lib` and `target` (tsc's defaults are ES5, which
// has no Symbol.iterator, Iterable or Promise constructor):
/// <reference lib="es2022" />

/** JSON values, as a step's input and output. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** Which case of error: the host's WIT error case, `json`, or `message` (anything else). */
export type ErrorKind =
  | 'missing-credential'
  | 'invalid-key'
  | 'too-many-handles'
  | 'invalid-request'
  | 'denied'
  | 'transport'
  | 'timeout'
  | 'limit-exceeded'
  | 'json'
  | 'message';

/** Everything that can go wrong in a step. Never holds a secret value. */
export class LatchkeyError extends Error {
  readonly name: 'LatchkeyError';
  readonly kind: ErrorKind;
  /** The host's explanation, or the key for `missing-credential`. */
  readonly detail: string | undefined;
}

/**
 * A handle to a stored credential: usable only as part of a request. Printed, stringified
 * or logged it shows `Credential(KEY)`.
 */
export class Credential {
  private constructor();
  /** The key this handle was obtained for, e.g. `SLACK_TOKEN`. */
  readonly key: string;
  toString(): string;
  toJSON(): string;
}

/** The handle to the credential stored under `key`; the same handle for the same key. */
export function credential(key: string): Credential;

/** How the host writes a signature: lowercase hexadecimal or standard base64 (padded). */
export type SignatureEncoding = 'hex' | 'base64';

/**
 * The HMAC-SHA256 signature of the exact body the host sends (the empty string without
 * one), computed by the host with a signing key (a credential of kind `hmac-sha256`). A part
 * of a header or query value, never of the body it covers; the step never sees it.
 */
export class Signature {
  constructor(credential: Credential, encoding?: SignatureEncoding);
  readonly credential: Credential;
  readonly encoding: SignatureEncoding;
  toString(): string;
  toJSON(): string;
}

/** `new Signature(credential, encoding)` (default `hex`), e.g. `["sha256=", signature(key)]`. */
export function signature(credential: Credential, encoding?: SignatureEncoding): Signature;

/** One piece of a header or query value. */
export type Part = string | number | boolean | Credential | Signature;

/** A header or query value: literal text, credentials and signatures, concatenated. */
export type Value = Part | Part[];

/** A JSON body that may hold credentials as whole string values. */
export type JsonWithCredentials =
  | Json
  | Credential
  | JsonWithCredentials[]
  | { [key: string]: JsonWithCredentials };

export type Method = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE' | 'OPTIONS';

/** An HTTP request, built step by step and sent with `send()`. */
export class Request {
  constructor(method: Method | Lowercase<Method>, url: string);
  static get(url: string): Request;
  static head(url: string): Request;
  static post(url: string): Request;
  static put(url: string): Request;
  static patch(url: string): Request;
  static delete(url: string): Request;
  /** Appends a header, e.g. `.header("authorization", ["token ", cred])`. */
  header(name: string, value: Value): this;
  /** `Authorization: Bearer <credential>`. */
  bearer(credential: Credential): this;
  /**
   * Header `name` = `prefix` + the host's HMAC-SHA256 signature of the body with the signing
   * key `credential`, e.g. `.headerSignature("x-hub-signature-256", "sha256=", key)`.
   */
  headerSignature(name: string, prefix: string, credential: Credential, encoding?: SignatureEncoding): this;
  /** HTTP basic authentication; the host builds the header. */
  basicAuth(username: string, password: Credential): this;
  /** Appends a query parameter, percent-encoded by the host. */
  query(name: string, value: Value): this;
  /** A JSON body; credentials in it are filled in by the host (binding `body:json:/ptr`). */
  json(value: JsonWithCredentials): this;
  /** A form body; credential values are filled in by the host (binding `body:form:NAME`). */
  form(fields: Record<string, string | number | boolean | Credential> | Array<[string, string | number | boolean | Credential]>): this;
  /** A raw body, or a template of text and credentials. Set `content-type` yourself. */
  body(value: string | Uint8Array | Array<string | Credential>): this;
  /** Time allowed for this request, in milliseconds (capped by the host). */
  timeout(ms: number): this;
  /** Sends the request. Throws a LatchkeyError if the host refuses it or it fails. */
  send(): Response;
}

/** Response headers; `get` is case-insensitive and returns the first value. */
export class Headers implements Iterable<[string, string]> {
  get(name: string): string | null;
  has(name: string): boolean;
  entries(): IterableIterator<[string, string]>;
  forEach(fn: (value: string, name: string, headers: Headers) => void): void;
  [Symbol.iterator](): IterableIterator<[string, string]>;
}

/** An HTTP response, with injected credential values scrubbed. */
export class Response {
  readonly status: number;
  readonly headers: Headers;
  readonly body: Uint8Array;
  /** Status 2xx. */
  readonly ok: boolean;
  /** Status 3xx (redirects are never followed). */
  readonly redirect: boolean;
  header(name: string): string | null;
  /** UTF-8 text; throws a LatchkeyError if the body is not UTF-8. */
  text(): string;
  /** Parsed JSON; throws a LatchkeyError (`json`) if it does not parse. */
  json<T = any>(): T;
  bytes(): Uint8Array;
}

export interface FetchInit {
  method?: Method | Lowercase<Method>;
  headers?: Record<string, Value> | Array<[string, Value]>;
  body?: string | Uint8Array | Array<string | Credential>;
  query?: Record<string, Value>;
  basicAuth?: { username: string; password: Credential };
  /** Milliseconds. */
  timeout?: number;
}

/** WHATWG-style fetch through the host; header values may hold credentials. */
export function fetch(url: string, init?: FetchInit): Promise<Response>;

/** Log lines for the operator (console.* goes here too). */
export const log: {
  trace(...args: unknown[]): void;
  debug(...args: unknown[]): void;
  info(...args: unknown[]): void;
  warn(...args: unknown[]): void;
  error(...args: unknown[]): void;
};

/** Wraps the step's function (sync or async) as the component's `run` export. */
export function step<I = any>(fn: (input: I) => unknown): (input: string) => string | Promise<string>;
