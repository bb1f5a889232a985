#!/usr/bin/env bash
# openapi-spec-validator (PyPI), which server_api checks the served OpenAPI document with, in
# the same virtual environment as the OpenBao tools (target/test-tools/venv).
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=target/test-tools/venv
if [ -x "$venv/bin/openapi-spec-validator" ]; then
    exit 0
fi
echo "tests/setup/60-openapi.sh: installing openapi-spec-validator into $venv" >&2
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet openapi-spec-validator==0.7.2 >&2
