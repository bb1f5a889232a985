#!/usr/bin/env bash
# The Python step toolchain of guest-sdk/python (componentize-py, pinned in its
# requirements.txt) in a venv at target/test-tools/py-venv. The Python step tests build their
# steps with it. Reinstalls only when requirements.txt changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/../.."

venv=target/test-tools/py-venv
requirements=guest-sdk/python/requirements.txt
stamp=$venv/.latchkey-requirements.sha256
want=$(sha256sum "$requirements" | cut -d' ' -f1)
if [ -x "$venv/bin/componentize-py" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    exit 0
fi
if ! python3 -m venv --help >/dev/null 2>&1; then
    echo "tests/setup/41-python.sh: installing python3-venv" >&2
    apt-get install -y python3-venv >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y python3-venv >/dev/null; }
fi
echo "tests/setup/41-python.sh: componentize-py into $venv" >&2
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" >&2
echo "$want" > "$stamp"
