"""The Python probe: what a step built with ``python -m latchkey_sdk build`` can see and do.
Input ``{"action": ..., ...}``:

- ``"fetch"``, ``"url"``, optional ``"key"``, ``"inject"``, ``"method"``: one request with the
  Request builder -> ``{"status", "ok", "headers", "body"}`` or ``{"error", "kind"}``;
  ``inject`` as in the JavaScript probe (``bearer``, ``header:N``, ``parts:N``, ``query:N``,
  ``basic:USER``, ``json:FIELD``, ``form:FIELD``)
- ``"sign"``, ``"url"``, ``"key"``, ``"encoding"``, optional ``"header"``, ``"query"``,
  ``"body"``: a POST of ``body`` signed by the host with the signing key ``key``, the signature
  in header ``header`` (after ``sha256=``, with ``header_signature``) or query parameter
  ``query`` (a ``signature()`` part) -> as ``fetch``
- ``"print"``, ``"key"``: every way Python prints a handle, returned and printed
- ``"throw"``, ``"message"``: raises ``ValueError(message)``
- ``"missing"``, ``"key"``: ``credential(key)`` for a key with no secret -> the error
- ``"log"``: print, print to stderr, logging.info/warning/error
- ``"random"``: ``{"random", "now", "urandom"}``
- ``"files"``: tries to read, list and create files -> what each attempt got
- ``"sockets"``, ``"addr"``: tries TCP, UDP and a name lookup -> what each attempt got
"""

import json
import logging
import os
import random
import socket
import sys
import time

from latchkey_sdk import LatchkeyError, Request, credential, signature, step


def describe(resp):
    return {"status": resp.status, "ok": resp.ok, "headers": resp.headers, "body": resp.text()}


def build(input):
    req = Request(input.get("method", "GET"), input["url"])
    if "key" not in input:
        return req
    cred = credential(input["key"])
    how, _, name = input.get("inject", "bearer").partition(":")
    if how == "bearer":
        return req.bearer(cred)
    if how == "header":
        return req.header(name, cred)
    if how == "parts":
        return req.header(name, ["token ", cred])
    if how == "query":
        return req.query(name, cred)
    if how == "basic":
        return req.basic_auth(name, cred)
    if how == "json":
        return req.json({name: cred, "note": 'a "quoted" note'})
    if how == "form":
        return req.form({name: cred, "other": "x y&z"})
    raise ValueError(f"unknown inject {how}")


def attempt(fn):
    try:
        return {"ok": True, "got": repr(fn())[:200]}
    except BaseException as e:  # noqa: BLE001 - the probe reports whatever happened
        return {"ok": False, "error": f"{type(e).__name__}: {e}"}


def files():
    return {
        "read": attempt(lambda: open("/etc/passwd").read()),
        "read_relative": attempt(lambda: open("probe.py").read()),
        "list_root": attempt(lambda: os.listdir("/")),
        "list_cwd": attempt(lambda: os.listdir(".")),
        "create": attempt(lambda: open("/tmp/latchkey-probe", "w").write("x")),
        "stat": attempt(lambda: os.stat("/")),
    }


def sockets(addr):
    host, port = addr.rsplit(":", 1)

    def tcp():
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(2)
        s.connect((host, int(port)))
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        return s.recv(100)

    def udp():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        return s.sendto(b"x", (host, int(port)))

    def listen():
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        return s.getsockname()

    return {
        "tcp": attempt(tcp),
        "udp": attempt(udp),
        "listen": attempt(listen),
        "lookup": attempt(lambda: socket.getaddrinfo("localhost", 80)),
    }


@step
def run(input):
    action = input.get("action")
    if action == "fetch":
        try:
            return describe(build(input).send())
        except LatchkeyError as e:
            return {"error": str(e), "kind": e.kind}
    if action == "sign":
        try:
            key = credential(input["key"])
            encoding = input["encoding"]
            req = Request.post(input["url"])
            if "body" in input:
                req = req.body(input["body"])
            if "header" in input:
                req = req.header_signature(input["header"], "sha256=", key, encoding)
            if "query" in input:
                req = req.query(input["query"], [signature(key, encoding)])
            return describe(req.send())
        except LatchkeyError as e:
            return {"error": str(e), "kind": e.kind}
    if action == "print":
        cred = credential(input["key"])
        print("handle:", cred, [cred], {"cred": cred})
        logging.info("logged %s", cred)
        return {
            "str": str(cred),
            "repr": repr(cred),
            "format": f"{cred}",
            "in_list": str([cred]),
            "key": cred.key,
            "same": credential(input["key"]) is cred,
            "attrs": [a for a in dir(cred) if not a.startswith("__")],
        }
    if action == "throw":
        raise ValueError(input["message"])
    if action == "missing":
        try:
            credential(input["key"])
            return {"error": None}
        except LatchkeyError as e:
            return {"error": str(e), "kind": e.kind}
    if action == "log":
        print("plain", {"n": 1})
        print("to stderr", file=sys.stderr)
        logging.info("info line")
        logging.warning("warn line")
        logging.error("error line")
        return {}
    if action == "random":
        return {"random": random.random(), "now": time.time(), "urandom": os.urandom(8).hex()}
    if action == "files":
        return files()
    if action == "sockets":
        return sockets(input["addr"])
    raise ValueError(f"unknown action {action}")
