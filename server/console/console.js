// The Latchkey console: a page over the /v1 API, no framework. Rules that keep it safe:
// - every string from the server (names, log lines, step output) enters the page through
//   textContent or a text node, never innerHTML, so it is always text, never markup;
// - the token lives in this tab's sessionStorage and goes out only in the Authorization
//   header this script sets (never a cookie), so a forged cross-site request carries none;
// - a secret value is read from its password field, sealed to the server's X25519 key
//   (libsodium sealed box) and the field cleared; the plaintext is never sent or kept.
'use strict';
(() => {
  const TOKEN_KEY = 'latchkey.token';
  const $ = (id) => document.getElementById(id);
  let me = null;
  let serverKey = null;

  // ---- DOM helpers: text only ----------------------------------------------------------

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') e.className = v;
      else if (k === 'onclick') e.addEventListener('click', v);
      else e.setAttribute(k, v);
    }
    for (const c of children) {
      if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
    }
    return e;
  }

  // An identifier (a key, a name, a run id, a URL) as text that may wrap only after one of
  // _ - . : / ? & = (a <wbr> there), never inside a word; a run of more than LONG_RUN
  // characters without one (a 128-letter key) gets a break point every LONG_RUN, so that it
  // still fits in its cell.
  // One of up to LONG_RUN characters (SLACK_TOKEN, secret-delete) does not wrap at all.
  const LONG_RUN = 24;
  function ident(text) {
    if (String(text).length <= LONG_RUN) return el('span', { class: 'whole' }, String(text));
    const out = document.createDocumentFragment();
    let run = '';
    let since = 0;
    for (const ch of String(text)) {
      run += ch;
      since += 1;
      if ('_-.:/?&='.includes(ch) || since >= LONG_RUN) {
        out.append(document.createTextNode(run), document.createElement('wbr'));
        run = '';
        since = 0;
      }
    }
    if (run) out.append(document.createTextNode(run));
    return out;
  }

  // "1 fetch", "2 fetches": English plurals, the irregular one given.
  function plural(n, one, many) {
    return n + ' ' + (n === 1 ? one : many || one + 's');
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function when(ms) {
    if (ms === null || ms === undefined) return '';
    return new Date(ms).toISOString().replace('T', ' ').slice(0, 19) + ' UTC';
  }

  function status(text, isError) {
    const s = $('status');
    s.textContent = text || '';
    s.className = isError ? 'error' : 'ok';
  }

  function fail(e) {
    status(e && e.message ? e.message : String(e), true);
  }

  // ---- the API -------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(method, path, body) {
    const headers = { Authorization: 'Bearer ' + sessionStorage.getItem(TOKEN_KEY) };
    const init = { method, headers, cache: 'no-store', credentials: 'omit', redirect: 'error' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const r = await fetch(path, init);
    const text = await r.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (_) {
      data = null;
    }
    if (!r.ok) {
      const message = data && data.message ? data.message : r.status + ' ' + r.statusText;
      throw new ApiError(r.status, data && data.error, message);
    }
    return data;
  }

  const q = encodeURIComponent;

  // ---- sealing: libsodium crypto_box_seal -----------------------------------------------
  // sealed = epk || crypto_box(m, nonce = BLAKE2b-192(epk || pk), pk, esk). X25519 and
  // XSalsa20-Poly1305 come from TweetNaCl.js (vendored, audited); WebCrypto has X25519 but
  // neither XSalsa20-Poly1305 nor BLAKE2b. BLAKE2b only derives the public nonce here.

  const IV = [
    0x6a09e667f3bcc908n, 0xbb67ae8584caa73bn, 0x3c6ef372fe94f82bn, 0xa54ff53a5f1d36f1n,
    0x510e527fade682d1n, 0x9b05688c2b3e6c1fn, 0x1f83d9abfb41bd6bn, 0x5be0cd19137e2179n,
  ];
  const SIGMA = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
    [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
    [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4],
    [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8],
    [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13],
    [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9],
    [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11],
    [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10],
    [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5],
    [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0],
  ];
  const M64 = (1n << 64n) - 1n;
  const rotr = (x, n) => ((x >> n) | (x << (64n - n))) & M64;

  // Unkeyed BLAKE2b (RFC 7693) with an output of `outlen` bytes.
  function blake2b(input, outlen) {
    const h = IV.slice();
    h[0] ^= 0x01010000n ^ BigInt(outlen);
    const blocks = Math.max(1, Math.ceil(input.length / 128));
    for (let b = 0; b < blocks; b++) {
      const last = b === blocks - 1;
      const block = new Uint8Array(128);
      block.set(input.subarray(b * 128, b * 128 + 128));
      const counted = last ? input.length : (b + 1) * 128;
      const dv = new DataView(block.buffer);
      const m = [];
      for (let i = 0; i < 16; i++) m.push(dv.getBigUint64(i * 8, true));
      const v = h.concat(IV);
      v[12] ^= BigInt(counted);
      if (last) v[14] ^= M64;
      const G = (a, bb, c, d, x, y) => {
        v[a] = (v[a] + v[bb] + x) & M64;
        v[d] = rotr(v[d] ^ v[a], 32n);
        v[c] = (v[c] + v[d]) & M64;
        v[bb] = rotr(v[bb] ^ v[c], 24n);
        v[a] = (v[a] + v[bb] + y) & M64;
        v[d] = rotr(v[d] ^ v[a], 16n);
        v[c] = (v[c] + v[d]) & M64;
        v[bb] = rotr(v[bb] ^ v[c], 63n);
      };
      for (let r = 0; r < 12; r++) {
        const s = SIGMA[r % 10];
        G(0, 4, 8, 12, m[s[0]], m[s[1]]);
        G(1, 5, 9, 13, m[s[2]], m[s[3]]);
        G(2, 6, 10, 14, m[s[4]], m[s[5]]);
        G(3, 7, 11, 15, m[s[6]], m[s[7]]);
        G(0, 5, 10, 15, m[s[8]], m[s[9]]);
        G(1, 6, 11, 12, m[s[10]], m[s[11]]);
        G(2, 7, 8, 13, m[s[12]], m[s[13]]);
        G(3, 4, 9, 14, m[s[14]], m[s[15]]);
      }
      for (let i = 0; i < 8; i++) h[i] ^= v[i] ^ v[i + 8];
    }
    const out = new Uint8Array(64);
    const dv = new DataView(out.buffer);
    h.forEach((x, i) => dv.setBigUint64(i * 8, x, true));
    return out.slice(0, outlen);
  }

  function concat(a, b) {
    const out = new Uint8Array(a.length + b.length);
    out.set(a);
    out.set(b, a.length);
    return out;
  }

  function toBase64(bytes) {
    let s = '';
    for (const b of bytes) s += String.fromCharCode(b);
    return btoa(s);
  }

  function fromBase64(text) {
    return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  }

  async function publicKey() {
    if (!serverKey) {
      const r = await fetch('/v1/public-key', { cache: 'no-store', credentials: 'omit' });
      const k = await r.json();
      if (k.algorithm !== 'x25519-sealed-box') throw new Error('unknown sealing algorithm ' + k.algorithm);
      serverKey = fromBase64(k.public_key);
      if (serverKey.length !== 32) throw new Error('the server public key is not 32 bytes');
    }
    return serverKey;
  }

  // Reads the value from `input`, clears the field, and returns it sealed (base64).
  async function sealField(input) {
    const pk = await publicKey();
    const message = new TextEncoder().encode(input.value);
    input.value = '';
    if (message.length === 0) throw new Error('the value is empty');
    const eph = nacl.box.keyPair();
    const nonce = blake2b(concat(eph.publicKey, pk), 24);
    const boxed = nacl.box(message, nonce, pk, eph.secretKey);
    eph.secretKey.fill(0);
    message.fill(0);
    return toBase64(concat(eph.publicKey, boxed));
  }

  // ---- dialog --------------------------------------------------------------------------

  // Shows a modal with `body` (nodes) and resolves true on OK, false on Cancel.
  function confirmDialog(title, body, okLabel) {
    const d = $('dialog');
    $('dialog-title').textContent = title;
    const b = $('dialog-body');
    clear(b);
    b.append(...body);
    $('dialog-ok').textContent = okLabel;
    return new Promise((resolve) => {
      const done = (v) => {
        $('dialog-ok').onclick = null;
        $('dialog-cancel').onclick = null;
        d.close();
        resolve(v);
      };
      $('dialog-ok').onclick = () => done(true);
      $('dialog-cancel').onclick = () => done(false);
      d.oncancel = () => done(false);
      d.showModal();
    });
  }

  // ---- sign-in and roles ---------------------------------------------------------------

  async function signIn(token) {
    sessionStorage.setItem(TOKEN_KEY, token);
    try {
      me = await api('GET', '/v1/whoami');
    } catch (e) {
      sessionStorage.removeItem(TOKEN_KEY);
      throw e;
    }
    // What is shown follows the role; what is allowed is decided by the server. Controls a
    // role may not use are removed from the page, not merely hidden.
    if (me.role !== 'admin') document.querySelectorAll('.admin-only').forEach((n) => n.remove());
    if (me.role === 'runner') document.querySelectorAll('[data-needs="metadata"]').forEach((n) => n.remove());
    $('signin').remove();
    $('nav').hidden = false;
    $('signout').hidden = false;
    $('who').textContent = me.name + ' (' + me.role + ')';
    document.body.dataset.role = me.role;
    show(me.role === 'runner' ? 'runs' : 'credentials');
  }

  function show(view) {
    document.querySelectorAll('.view').forEach((s) => {
      s.hidden = s.id !== 'view-' + view;
    });
    document.querySelectorAll('#nav button').forEach((b) => {
      b.classList.toggle('current', b.dataset.view === view);
    });
    status('');
    const load = { credentials: loadCredentials, runs: loadRuns, audit: loadAudit, members: loadMembers }[view];
    load().catch(fail);
  }

  // ---- credentials ---------------------------------------------------------------------

  // What kind of credential it is and its quota, under its integration type; nothing for a
  // static value without a quota (the common case).
  function kindNote(s) {
    const parts = [];
    if (s.kind) parts.push(s.kind);
    if (s.oauth) parts.push('via ' + s.oauth.url);
    if (s.quota) {
      const q = [];
      if (s.quota.per_minute) q.push(s.quota.per_minute + '/min');
      if (s.quota.per_day) q.push(s.quota.per_day + '/day');
      if (q.length) parts.push('quota ' + q.join(' '));
    }
    return parts.length ? [el('br'), el('span', { class: 'dim' }, parts.join(' · '))] : [];
  }

  function bindingText(b) {
    const parts = [b.hosts.join(', ')];
    if (b.methods && b.methods.length) parts.push(b.methods.join(' '));
    if (b.path_prefixes && b.path_prefixes.length) parts.push(b.path_prefixes.join(' '));
    parts.push('→ ' + b.locations.join(', '));
    if (b.allow_http) parts.push('(http allowed)');
    if (b.allow_internal) parts.push('(internal allowed)');
    if (b.signer && b.signer.aws) parts.push('signs for AWS ' + b.signer.aws.service + ' in ' + b.signer.aws.region);
    if (b.signer && b.signer.jwt) parts.push('mints JWTs iss ' + b.signer.jwt.issuer + ', ' + b.signer.jwt.ttl_secs + ' s');
    return parts.join(' · ');
  }

  async function loadCredentials() {
    const scope = $('cred-scope').value.trim();
    const list = await api('GET', '/v1/secrets' + (scope ? '?scope=' + q(scope) : ''));
    const byScope = new Map();
    for (const s of list) {
      const k = s.error !== undefined ? '(damaged records)' : s.scope;
      if (!byScope.has(k)) byScope.set(k, []);
      byScope.get(k).push(s);
    }
    const out = $('cred-list');
    clear(out);
    if (list.length === 0) out.append(el('p', { class: 'hint' }, 'No credentials' + (scope ? ' in ' + scope : '') + '.'));
    const admin = me.role === 'admin';
    for (const [scopeName, secrets] of byScope) {
      const head = el('tr', {}, ...['Key', 'Integration', 'Binding', 'Version', 'Created', 'Updated', 'Last used'].map((h) => el('th', {}, h)));
      if (admin) head.append(el('th', {}, ''));
      const body = el('tbody');
      for (const s of secrets) {
        if (s.error !== undefined) {
          body.append(el('tr', {}, el('td', { colspan: '8', class: 'error' }, s.error)));
          continue;
        }
        const last = s.last_used
          ? [when(s.last_used.time_ms), el('br'), el('span', { class: 'dim' }, ident(s.last_used.workflow), ' / ', ident(s.last_used.step), ' · run ', ident(s.last_used.run_id))]
          : ['never'];
        const row = el('tr', { 'data-key': s.key, 'data-scope': s.scope },
          el('td', { class: 'key' }, ident(s.key)),
          el('td', {}, s.integration, ...kindNote(s)),
          el('td', {}, bindingText(s.binding)),
          el('td', {}, 'v' + s.version),
          el('td', {}, ident(s.created_by), el('br'), el('span', { class: 'dim' }, when(s.created_at_ms))),
          el('td', {}, ident(s.updated_by), el('br'), el('span', { class: 'dim' }, when(s.updated_at_ms))),
          el('td', {}, ...last));
        if (admin) {
          row.append(el('td', { class: 'row-actions' },
            el('button', { type: 'button', class: 'rotate', onclick: () => rotate(s).catch(fail) }, 'Rotate'),
            el('button', { type: 'button', class: 'delete danger', onclick: () => remove(s).catch(fail) }, 'Delete')));
        }
        body.append(row);
      }
      out.append(el('h3', { class: 'scope' }, ident(scopeName)), el('div', { class: 'table-scroll' }, el('table', { class: 'secrets' }, el('thead', {}, head), body)));
    }
  }

  const list = (text) => text.split(',').map((s) => s.trim()).filter((s) => s);

  // A whole number from an optional field: undefined when empty.
  function count(field, what) {
    const v = field.value.trim();
    if (!v) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new Error(what + ': a whole number of at least 1, not ' + v);
    return n;
  }

  const optional = (field) => field.value.trim() || undefined;

  // Shows the parameters of the chosen kind only (AWS region and service, JWT claims, the
  // OAuth2 token endpoint).
  function showKindParams() {
    const kind = $('cred-add').elements.kind.value;
    document.querySelectorAll('#cred-add .kind-params').forEach((f) => {
      f.hidden = !f.dataset.kind.split(' ').includes(kind);
    });
  }

  // The request body's kind-specific part: `signer` (in the binding) and `oauth`.
  function kindParams(f, kind) {
    const e = f.elements;
    if (kind === 'aws-sigv4') {
      return { signer: { aws: { region: e.aws_region.value.trim(), service: e.aws_service.value.trim() } } };
    }
    if (kind === 'jwt-rs256' || kind === 'jwt-es256') {
      const jwt = {
        issuer: e.jwt_issuer.value.trim(),
        subject: optional(e.jwt_subject),
        audience: optional(e.jwt_audience),
        scope: optional(e.jwt_scope),
        ttl_secs: count(e.jwt_ttl, 'JWT lifetime') || 300,
        key_id: optional(e.jwt_key_id),
      };
      return { signer: { jwt } };
    }
    if (kind === 'oauth2') {
      return { oauth: { url: e.oauth_token_url.value.trim(), grant: e.oauth_grant.value, scope: optional(e.oauth_scope) } };
    }
    return {};
  }

  // The value to seal: the password field's, or a file's (a PEM key keeps its line breaks,
  // which a password field drops). Exactly one.
  async function valueField(f) {
    const file = f.elements.value_file.files[0];
    if (file && f.elements.value.value) throw new Error('give the value or a file, not both');
    if (!file) return f.elements.value;
    const text = await file.text();
    f.elements.value_file.value = '';
    return { value: text.replace(/\r?\n$/, '') };
  }

  async function addCredential(ev) {
    ev.preventDefault();
    const f = ev.target;
    const kind = f.elements.kind.value;
    const quota = { per_minute: count(f.elements.per_minute, 'requests per minute'), per_day: count(f.elements.per_day, 'requests per day') };
    const params = kindParams(f, kind);
    const sealed = await sealField(await valueField(f));
    const body = {
      sealed_value: sealed,
      integration: f.elements.integration.value.trim(),
      allow_weak_value: f.elements.allow_weak.checked,
      binding: {
        hosts: list(f.elements.hosts.value),
        inject: list(f.elements.inject.value),
        methods: list(f.elements.methods.value),
        path_prefixes: list(f.elements.paths.value),
        allow_http: f.elements.allow_http.checked,
        allow_internal: f.elements.allow_internal.checked,
        signer: params.signer,
      },
      kind: kind === 'static' ? undefined : kind,
      quota: quota.per_minute || quota.per_day ? quota : undefined,
      oauth: params.oauth,
    };
    const key = f.elements.key.value.trim();
    const scope = f.elements.scope.value.trim();
    const saved = await api('PUT', '/v1/secrets/' + q(key) + '?scope=' + q(scope), body);
    f.reset();
    showKindParams();
    f.hidden = true;
    status('Saved ' + saved.key + ' in ' + saved.scope + ' (version ' + saved.version + ').');
    await loadCredentials();
  }

  async function rotate(s) {
    const input = el('input', { type: 'password', autocomplete: 'off', id: 'rotate-value', spellcheck: 'false' });
    const weak = el('input', { type: 'checkbox', id: 'rotate-weak' });
    const ok = await confirmDialog('Rotate ' + s.key, [
      el('p', {}, 'A new value for ' + s.key + ' in ' + s.scope + '. The binding stays; running steps use it at their next call.'),
      el('label', {}, 'New value ', input),
      el('label', { class: 'check' }, weak, ' store a value that looks weak'),
    ], 'Rotate');
    if (!ok) {
      input.value = '';
      return;
    }
    const sealed = await sealField(input);
    const r = await api('POST', '/v1/secrets/' + q(s.key) + '/rotate?scope=' + q(s.scope), {
      sealed_value: sealed,
      allow_weak_value: weak.checked,
    });
    status('Rotated ' + r.key + ' in ' + r.scope + ' to version ' + r.version + '.');
    await loadCredentials();
  }

  async function remove(s) {
    const workflows = await api('GET', '/v1/workflows');
    const using = workflows.filter((w) => w.steps.some((st) => (st.keys || []).includes(s.key)));
    const names = using.length
      ? el('ul', { id: 'delete-workflows' }, ...using.map((w) => el('li', {}, w.name + ' (workspace ' + w.workspace + ')')))
      : el('p', { id: 'delete-workflows' }, 'No registered workflow names this key in its manifest.');
    const ok = await confirmDialog('Delete ' + s.key, [
      el('p', {}, 'Delete ' + s.key + ' from ' + s.scope + '? Workflows whose manifests reference it:'),
      names,
    ], 'Delete');
    if (!ok) return;
    await api('DELETE', '/v1/secrets/' + q(s.key) + '?scope=' + q(s.scope));
    status('Deleted ' + s.key + ' from ' + s.scope + '.');
    await loadCredentials();
  }

  // ---- runs ----------------------------------------------------------------------------

  function duration(r) {
    if (!r.finished_at_ms) return '';
    return ((r.finished_at_ms - r.started_at_ms) / 1000).toFixed(2) + ' s';
  }

  // What the start form can run: registered workflows and components, each under its kind.
  function fillTargets(workflows, components) {
    const sel = $('run-start').elements.target;
    const chosen = sel.value;
    const wf = $('run-workflows');
    const comp = $('run-components');
    clear(wf);
    clear(comp);
    for (const w of workflows) wf.append(el('option', { value: 'workflow:' + w.name }, w.name));
    const seen = new Set();
    for (const c of components) {
      // A component is run by its name; one registered without a name, by its digest.
      const id = c.name || c.digest;
      if (seen.has(id)) continue;
      seen.add(id);
      comp.append(el('option', { value: 'component:' + id }, c.name || c.digest.slice(0, 19) + '… (no name)'));
    }
    wf.hidden = workflows.length === 0;
    comp.hidden = seen.size === 0;
    const nothing = workflows.length === 0 && seen.size === 0;
    $('run-nothing').hidden = !nothing;
    sel.disabled = nothing;
    if (chosen && sel.querySelector('option[value="' + CSS.escape(chosen) + '"]')) sel.value = chosen;
  }

  async function loadRuns() {
    const [runs, workflows, components] = await Promise.all([api('GET', '/v1/runs'), api('GET', '/v1/workflows'), api('GET', '/v1/components')]);
    fillTargets(workflows, components);
    const body = $('runs-table').tBodies[0];
    clear(body);
    for (const r of runs) {
      const link = el('button', { type: 'button', class: 'link', onclick: () => showRun(r.id).catch(fail) }, ident(r.id));
      body.append(el('tr', { 'data-run': r.id },
        el('td', {}, link), el('td', {}, ident(r.target)), el('td', {}, ident(r.user)),
        el('td', { class: 'status-' + r.status }, r.status), el('td', {}, when(r.started_at_ms)),
        el('td', {}, duration(r))));
    }
    if (runs.length === 0) body.append(el('tr', {}, el('td', { colspan: '6', class: 'hint' }, 'No runs yet.')));
  }

  async function startRun(ev) {
    ev.preventDefault();
    const f = ev.target;
    const target = f.elements.target.value;
    if (!target) {
      throw new Error('Nothing is registered to run: an admin registers a component with `latchkey component add` or a workflow with `latchkey workflow add` first.');
    }
    let input;
    try {
      input = JSON.parse(f.elements.input.value || '{}');
    } catch (e) {
      throw new Error('the input is not JSON: ' + e.message);
    }
    const [kind, name] = [target.slice(0, target.indexOf(':')), target.slice(target.indexOf(':') + 1)];
    const run = await api('POST', '/v1/runs', { [kind]: name, input, wait: true });
    status('Run ' + run.id + ' ' + run.status + '.');
    await loadRuns();
    await showRun(run.id);
  }

  async function showRun(id) {
    const run = await api('GET', '/v1/runs/' + q(id));
    const out = $('run-detail');
    clear(out);
    const card = el('div', { class: 'card', id: 'run-report' },
      el('h3', {}, 'Run ', ident(run.id)),
      el('p', {}, run.kind + ' ' + run.target + ' by ' + run.user + ' · ',
        el('span', { class: 'status-' + run.status }, run.status), ' · ' + duration(run)));
    // A step's failure is shown at the step; the run's own error only when no step has one
    // (it would repeat the step's), e.g. a run lost with its host.
    if (run.error && !run.steps.some((st) => st.error)) card.append(el('p', { class: 'error' }, run.error));
    for (const s of run.steps) {
      const step = el('div', { class: 'step' },
        el('h4', {}, 'Step ' + s.name + ' · ' + s.status + ' · ' + s.duration_ms.toFixed(1) + ' ms · ' + plural(s.fetches, 'fetch', 'fetches')));
      if (s.credentials.length) {
        step.append(el('p', {}, 'Credentials: ', ...s.credentials.map((c) => el('span', { class: 'tag' }, c.key + ' from tier ' + c.tier + ' (' + c.scope + ')'))));
      }
      if (s.refusals.length) {
        step.append(el('p', {}, 'Refused: ', ...s.refusals.map((c) => el('span', { class: 'tag refused' }, c.key + ': ' + c.reason))));
      }
      if (s.logs.length) {
        step.append(el('pre', { class: 'logs' }, s.logs.map((l) => l.level + ' ' + l.message).join('\n')));
      }
      if (s.error) step.append(el('p', { class: 'error' }, s.error));
      card.append(step);
    }
    if (run.not_run.length) card.append(el('p', {}, 'Not run: ' + run.not_run.join(', ')));
    if (run.output !== null && run.output !== undefined) {
      card.append(el('h4', {}, 'Output'), el('pre', {}, JSON.stringify(run.output, null, 2)));
    }
    out.append(card);
    if (me.role === 'runner') return;
    const audit = await api('GET', '/v1/runs/' + q(id) + '/audit');
    card.append(el('h4', {}, 'Audit records'), auditTable(audit.records));
  }

  // ---- audit ---------------------------------------------------------------------------

  let lastAudit = [];

  function auditRow(r) {
    return el('tr', {},
      el('td', {}, when(r.time_ms)), el('td', {}, ident(r.event)), el('td', {}, ident(r.actor || r.user || '')),
      el('td', {}, ident(r.key || '')), el('td', {}, ident(r.scope || '')), el('td', {}, r.version === undefined ? '' : 'v' + r.version),
      el('td', {}, ident(r.run_id || '')), el('td', {}, ident(r.step || '')), el('td', {}, ident((r.destination || '') + (r.location ? ' ' + r.location : ''))),
      el('td', {}, r.outcome));
  }

  function auditTable(records) {
    const head = el('tr', {}, ...['Time', 'Event', 'Who', 'Key', 'Scope', 'Version', 'Run', 'Step', 'Destination', 'Outcome'].map((h) => el('th', {}, h)));
    return el('div', { class: 'table-scroll' }, el('table', {}, el('thead', {}, head), el('tbody', {}, ...records.map(auditRow))));
  }

  // A datetime-local value read as UTC, in Unix milliseconds.
  function utcMillis(v) {
    return v ? String(Date.parse(v + 'Z')) : '';
  }

  async function loadAudit() {
    const f = $('audit-filter').elements;
    const params = new URLSearchParams();
    for (const [name, value] of [
      ['key', f.key.value.trim()], ['principal', f.principal.value.trim()], ['run', f.run.value.trim()],
      ['since_ms', utcMillis(f.since.value)], ['until_ms', utcMillis(f.until.value)], ['limit', f.limit.value],
    ]) {
      if (value) params.set(name, value);
    }
    const page = await api('GET', '/v1/audit?' + params.toString());
    lastAudit = page.records;
    const body = $('audit-table').tBodies[0];
    clear(body);
    for (const r of page.records.slice().reverse()) body.append(auditRow(r));
    status(plural(page.records.length, 'record') + (page.unreadable ? ', ' + page.unreadable + ' unreadable' : '') + '.');
  }

  function exportAudit() {
    const text = lastAudit.map((r) => JSON.stringify(r)).join('\n') + (lastAudit.length ? '\n' : '');
    const url = URL.createObjectURL(new Blob([text], { type: 'application/x-ndjson' }));
    const a = el('a', { href: url, download: 'latchkey-audit.jsonl' });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  // ---- members and tokens --------------------------------------------------------------

  async function loadMembers() {
    const [tokens, secrets] = await Promise.all([api('GET', '/v1/tokens'), api('GET', '/v1/secrets')]);
    const tbody = $('tokens-table').tBodies[0];
    clear(tbody);
    for (const t of tokens) {
      const row = el('tr', { 'data-token': t.id },
        el('td', { class: 'key' }, ident(t.id)), el('td', {}, ident(t.name)), el('td', {}, t.role),
        el('td', {}, when(t.created_at_ms) + ' by ' + t.created_by), el('td', {}, when(t.revoked_at_ms)));
      row.append(el('td', {}, t.revoked_at_ms ? '' : el('button', { type: 'button', class: 'revoke danger', onclick: () => revoke(t).catch(fail) }, 'Revoke')));
      tbody.append(row);
    }
    const members = new Map();
    for (const t of tokens) {
      const m = members.get(t.name) || { roles: new Set(), active: 0 };
      m.roles.add(t.role);
      if (!t.revoked_at_ms) m.active += 1;
      members.set(t.name, m);
    }
    const created = (name) => secrets.filter((s) => s.error === undefined && s.created_by === name);
    const mbody = $('members-table').tBodies[0];
    clear(mbody);
    for (const [name, m] of members) {
      const row = el('tr', { 'data-member': name },
        el('td', {}, ident(name)), el('td', {}, [...m.roles].join(', ')), el('td', {}, String(m.active)),
        el('td', {}, String(created(name).length)));
      row.append(el('td', {}, name === me.name ? '' : el('button', { type: 'button', class: 'remove-member danger', onclick: () => removeMember(name, created(name)).catch(fail) }, 'Remove')));
      mbody.append(row);
    }
  }

  async function createToken(ev) {
    ev.preventDefault();
    const f = ev.target;
    const r = await api('POST', '/v1/tokens', { name: f.elements.name.value.trim(), role: f.elements.role.value });
    $('token-value').textContent = r.token;
    $('token-shown').hidden = false;
    f.elements.name.value = '';
    await loadMembers();
  }

  async function revoke(t) {
    const ok = await confirmDialog('Revoke token ' + t.id, [el('p', {}, 'Revoke the ' + t.role + ' token ' + t.id + ' of ' + t.name + '? Requests with it are refused from now on.')], 'Revoke');
    if (!ok) return;
    await api('DELETE', '/v1/tokens/' + q(t.id));
    status('Revoked ' + t.id + '.');
    await loadMembers();
  }

  async function removeMember(name, doomed) {
    const what = doomed.length
      ? el('ul', { id: 'member-secrets' }, ...doomed.map((s) => el('li', {}, s.key + ' in ' + s.scope)))
      : el('p', { id: 'member-secrets' }, 'They created no secrets.');
    const ok = await confirmDialog('Remove ' + name, [
      el('p', {}, 'Remove ' + name + '? Every token of theirs is revoked and these secrets, which they created, are deleted:'),
      what,
    ], 'Remove member');
    if (!ok) return;
    const r = await api('DELETE', '/v1/members/' + q(name));
    status('Removed ' + r.user + '; deleted ' + plural(r.deleted.length, 'secret') + '.');
    await loadMembers();
  }

  // ---- wiring --------------------------------------------------------------------------

  function on(id, event, handler) {
    const n = $(id);
    if (n) n.addEventListener(event, (ev) => {
      Promise.resolve(handler(ev)).catch(fail);
    });
  }

  document.addEventListener('DOMContentLoaded', () => {
    on('signin-form', 'submit', async (ev) => {
      ev.preventDefault();
      const input = $('signin-token');
      const token = input.value.trim();
      input.value = '';
      await signIn(token);
    });
    on('signout', 'click', () => {
      sessionStorage.removeItem(TOKEN_KEY);
      location.reload();
    });
    document.querySelectorAll('#nav button').forEach((b) => b.addEventListener('click', () => show(b.dataset.view)));
    on('cred-refresh', 'click', loadCredentials);
    on('cred-scope', 'change', loadCredentials);
    on('cred-add-open', 'click', () => {
      $('cred-add').hidden = false;
    });
    on('cred-add-cancel', 'click', () => {
      $('cred-add').reset();
      showKindParams();
      $('cred-add').hidden = true;
    });
    on('cred-add', 'submit', addCredential);
    on('cred-add', 'change', (ev) => {
      if (ev.target.name === 'kind') showKindParams();
    });
    on('runs-refresh', 'click', loadRuns);
    on('run-start', 'submit', startRun);
    on('audit-filter', 'submit', (ev) => {
      ev.preventDefault();
      return loadAudit();
    });
    on('audit-export', 'click', exportAudit);
    on('members-refresh', 'click', loadMembers);
    on('token-create', 'submit', createToken);
    on('token-dismiss', 'click', () => {
      $('token-value').textContent = '';
      $('token-shown').hidden = true;
    });
    const saved = sessionStorage.getItem(TOKEN_KEY);
    if (saved) signIn(saved).catch(fail);
  });
})();
