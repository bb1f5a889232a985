// Echoes a value the way Node.js servers do, for the scrubber's end-to-end tests.
// Usage: node reflect.js ENCODER < value   (see reflect.py and route /reflect/{encoder})
const fs = require('fs');
const v = fs.readFileSync(0).toString('utf8');
const enc = process.argv[2];
const escapeHtml = (s) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
  .replace(/"/g, '&quot;').replace(/'/g, '&#39;');
const out = {
  'node-json': () => JSON.stringify({ error: 'bad token', token: v }),
  'node-uri': () => 'https://x.example/?t=' + encodeURIComponent(v),
  'node-b64': () => Buffer.from('prefix:' + v).toString('base64'),
  'node-b64url': () => Buffer.from(JSON.stringify({ t: v })).toString('base64url'),
  'node-escape-html': () => '<div title="' + escapeHtml(v) + '"></div>',
  'node-json-in-uri': () => '/cb?state=' + encodeURIComponent(JSON.stringify({ t: v })),
}[enc];
if (!out) { console.error('unknown encoder ' + enc); process.exit(1); }
process.stdout.write(out());
