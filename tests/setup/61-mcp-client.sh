#!/usr/bin/env bash
# The official Python MCP SDK (`mcp` on PyPI), the client runtime/tests/mcp.rs drives over
# stdio and Streamable HTTP: a client no one here wrote. Same virtual environment as the
# other Python test tools (target/test-tools/venv).
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=target/test-tools/venv
if "$venv/bin/python" -c 'import mcp.client.streamable_http, mcp.client.stdio' 2>/dev/null; then
    exit 0
fi
echo "tests/setup/61-mcp-client.sh: installing mcp into $venv" >&2
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet mcp==2.3.0 >&2
