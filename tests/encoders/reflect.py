#!/usr/bin/env python3
"""Echoes a value the way real server stacks do, for the scrubber's end-to-end tests.

Usage: reflect.py ENCODER < value
The fake upstream (tests/src/upstream.rs, route /reflect/{encoder}) runs this with the
credential it received on stdin and returns what it prints as the response body.
"""
import base64, gzip, html, json, quopri, random, subprocess, sys, urllib.parse, zlib

v = sys.stdin.buffer.read().decode("utf-8")
b = v.encode("utf-8")
enc = sys.argv[1]

def go_json(s):
    # Go's encoding/json: like json.dumps(ensure_ascii=False), plus <, >, & and U+2028/9
    # escaped (HTMLEscape is on by default).
    out = json.dumps(s, ensure_ascii=False)
    for c, e in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                 ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        out = out.replace(c, e)
    return out

def php_json(s):
    # PHP's json_encode defaults: non-ASCII as \uXXXX and '/' as '\/'.
    return json.dumps(s).replace("/", "\\/")

out = {
    "py-json": lambda: json.dumps({"error": "invalid token", "token": v}),
    "py-json-utf8": lambda: json.dumps({"token": v}, ensure_ascii=False),
    "go-json": lambda: '{"token":' + go_json(v) + "}",
    "php-json": lambda: '{"token":' + php_json(v) + "}",
    "py-html": lambda: "<p>token: " + html.escape(v) + "</p>",
    "py-html-xml": lambda: "<p>" + v.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&#34;").encode("ascii", "xmlcharrefreplace").decode() + "</p>",
    "py-quote": lambda: "https://x.example/cb?t=" + urllib.parse.quote(v, safe=""),
    "py-quote-plus": lambda: "t=" + urllib.parse.quote_plus("a b " + v),
    "py-urlencode": lambda: urllib.parse.urlencode({"q": "x y", "token": v}),
    "py-b64-mime": lambda: base64.encodebytes(("Authorization: Bearer " + v + "\r\n" * 3 + "x" * 100).encode()).decode(),
    "py-b64-offset1": lambda: base64.b64encode(b"x" + b + b"tail").decode(),
    "py-b64-offset2": lambda: base64.b64encode(b"xy" + b + b"t").decode(),
    "py-b64url-jwt": lambda: "eyJhbGciOiJub25lIn0." + base64.urlsafe_b64encode(json.dumps({"sub": "u", "tok": v}).encode()).decode().rstrip("=") + ".",
    "py-quopri": lambda: quopri.encodestring(("token=" + v + " " * 80 + "end").encode()).decode(),
    "py-hex": lambda: "digest " + b.hex(),
    "py-upper": lambda: "INVALID TOKEN " + v.upper(),
    "py-repr-bytes": lambda: "error: " + repr(b),
    "py-utf16": None,
    # Hostile echoes a scan of each field alone does not see: the value reversed, and cut
    # over three JSON string values (document order).
    "py-reversed": lambda: json.dumps({"hint": v[::-1]}),
    "py-split-json": lambda: json.dumps({"a": v[:11], "n": 1, "b": v[11:22], "c": [v[22:]]}),
}
def hex_padding():
    rng = random.Random(1)
    return b" " + "".join(rng.choice("0123456789abcdef") for _ in range(4000)).encode()


# Compressed bodies sent without any Content-Encoding: gzip and zlib by Python's own
# modules, zstd by the zstd program (after a skippable frame too); `gzip-honest` holds no
# value.
compressed = {
    "py-gzip-bare": lambda d: gzip.compress(d),
    "py-zlib-bare": lambda d: zlib.compress(d),
    "zstd-bare": lambda d: subprocess.run(["zstd", "-q", "-c"], input=d, check=True, capture_output=True).stdout,
    # A zstd skippable frame (magic 0x184D2A5?, then its length) first: the zstd program
    # skips it and inflates the frame after it. Hex padding makes zstd entropy-code the
    # literals, so the value is not in the compressed bytes as they are.
    "zstd-skippable-bare": lambda d: bytes([0x5E, 0x2A, 0x4D, 0x18, 3, 0, 0, 0]) + b"pad"
    + subprocess.run(["zstd", "-q", "-c"], input=d + hex_padding(), check=True, capture_output=True).stdout,
}
if enc == "py-utf16":
    sys.stdout.buffer.write(v.encode("utf-16-le"))
elif enc in compressed:
    sys.stdout.buffer.write(compressed[enc](json.dumps({"ok": False, "token": v}).encode()))
elif enc == "py-gzip-honest":
    sys.stdout.buffer.write(gzip.compress(b"an archive that holds no credential\n" * 50))
elif enc in out:
    sys.stdout.write(out[enc]())
else:
    sys.exit("unknown encoder " + enc)
