"""Drives Latchkey's MCP server with the official Python SDK (`mcp` on PyPI), for
runtime/tests/mcp.rs. `python mcp_client.py SCENARIO CONFIG_FILE` (JSON) prints one JSON document
on stdout: what the client saw. Lines starting with `ready` are for the test to act on.

Scenarios:
- `session`: connect (HTTP with `url` and `token`, or stdio with `command`, `args`, `env`),
  list tools and resources, call each of `calls` ([name, arguments]), read each of `reads`.
- `list_changed`: connect over HTTP, print `ready`, wait (up to `wait_s`) for
  notifications/tools/list_changed, then list the tools again.
"""

import asyncio
import json
import sys

import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client


def transport(cfg):
    if "url" in cfg:
        headers = {"Authorization": f"Bearer {cfg['token']}"} if cfg.get("token") else {}
        http = httpx2.AsyncClient(headers=headers, timeout=cfg.get("timeout_s", 60))
        return streamable_http_client(cfg["url"], http_client=http)
    return StdioServerParameters(command=cfg["command"], args=cfg["args"], env=cfg.get("env"))


def content_of(result):
    return {
        "is_error": bool(getattr(result, "is_error", False) or getattr(result, "isError", False)),
        "text": "\n".join(getattr(c, "text", "") for c in result.content),
        "structured": getattr(result, "structured_content", None)
        or getattr(result, "structuredContent", None),
    }


async def session(cfg):
    out = {}
    async with Client(transport(cfg), mode=cfg.get("mode", "legacy"), cache=None) as client:
        caps = client.server_capabilities
        out["protocol"] = client.protocol_version
        out["capabilities"] = caps.model_dump(mode="json", by_alias=True, exclude_none=True)
        tools = await client.list_tools()
        out["tools"] = [
            {"name": t.name, "description": t.description, "schema": t.input_schema}
            for t in tools.tools
        ]
        resources = await client.list_resources()
        out["resources"] = [r.uri for r in resources.resources]
        out["calls"] = []
        for name, arguments in cfg.get("calls", []):
            try:
                out["calls"].append(content_of(await client.call_tool(name, arguments)))
            except Exception as e:  # a JSON-RPC error: what the client raises
                out["calls"].append({"exception": str(e)})
        out["reads"] = []
        for uri in cfg.get("reads", []):
            try:
                r = await client.read_resource(uri)
                out["reads"].append({"text": "".join(getattr(c, "text", "") for c in r.contents)})
            except Exception as e:
                out["reads"].append({"exception": str(e)})
    return out


async def list_changed(cfg):
    seen = asyncio.Event()

    async def on_message(message):
        if getattr(message, "method", None) == "notifications/tools/list_changed":
            seen.set()

    out = {}
    async with Client(transport(cfg), mode="legacy", cache=None, message_handler=on_message) as client:
        out["before"] = [t.name for t in (await client.list_tools()).tools]
        # The standalone event stream is opened after the handshake; give it a moment to
        # be there before the test registers (a notification sent earlier has no stream).
        await asyncio.sleep(cfg.get("settle_s", 1.0))
        print("ready", flush=True)
        try:
            await asyncio.wait_for(seen.wait(), cfg.get("wait_s", 60))
            out["notified"] = True
        except asyncio.TimeoutError:
            out["notified"] = False
        out["after"] = [t.name for t in (await client.list_tools()).tools]
    return out


def main():
    with open(sys.argv[2]) as f:
        scenario, cfg = sys.argv[1], json.load(f)
    result = asyncio.run({"session": session, "list_changed": list_changed}[scenario](cfg))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
