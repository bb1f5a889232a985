#!/usr/bin/env bash
# The Python step toolchain of guest-sdk/python (componentize-py, pinned in its pyproject.toml)
# in a venv at target/test-tools/py-venv, where the Python step tests build their steps with
# it (importing the SDK from its folder). Also the wheels a step author's `pip install` needs
# (the SDK's dependencies and its build backend) in target/test-tools/py-wheels, so that the
# tests that install the SDK into a fresh venv do it offline. Reinstalls only when
# pyproject.toml changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/../.."

venv=target/test-tools/py-venv
wheels=target/test-tools/py-wheels
project=guest-sdk/python/pyproject.toml
stamp=$venv/.latchkey-pyproject.sha256
want=$(sha256sum "$project" | cut -d' ' -f1)
if [ -x "$venv/bin/componentize-py" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    exit 0
fi
if ! python3 -m venv --help >/dev/null 2>&1; then
    echo "tests/setup/41-python.sh: installing python3-venv" >&2
    apt-get install -y python3-venv >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y python3-venv >/dev/null; }
fi
echo "tests/setup/41-python.sh: componentize-py into $venv, wheels into $wheels" >&2
python3 -m venv "$venv"
# The dependencies exactly as pyproject.toml declares them (tomllib: Python 3.11+).
mapfile -t deps < <("$venv/bin/python" -c '
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))
print("\n".join(project["project"]["dependencies"] + project["build-system"]["requires"]))
' "$project")
"$venv/bin/pip" install --quiet --disable-pip-version-check "${deps[@]}" >&2
"$venv/bin/pip" download --quiet --disable-pip-version-check --dest "$wheels" "${deps[@]}" >&2
echo "$want" > "$stamp"
