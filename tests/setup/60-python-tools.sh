#!/usr/bin/env bash
# openapi-spec-validator, openapi-python-client and prometheus-client (PyPI), with which
# server_api checks the served OpenAPI document, generates a client from it, and parses
# /metrics, in the same virtual environment as the OpenBao tools (target/test-tools/venv).
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=target/test-tools/venv
if [ -x "$venv/bin/openapi-spec-validator" ] && [ -x "$venv/bin/openapi-python-client" ] \
    && "$venv/bin/python" -c 'import prometheus_client' 2>/dev/null; then
    exit 0
fi
echo "tests/setup/60-python-tools.sh: installing openapi-spec-validator, openapi-python-client and prometheus-client into $venv" >&2
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet openapi-spec-validator==0.7.2 openapi-python-client==0.29.1 \
    prometheus-client==0.21.1 >&2
