#!/usr/bin/env bash
# The JavaScript toolchain of guest-sdk/js (componentize-js, esbuild), exactly as its
# package-lock.json pins it, into guest-sdk/js/node_modules. The JavaScript step tests build
# their steps with it. Runs `npm ci` only when the lockfile changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/../../guest-sdk/js"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "tests/setup/40-js.sh: installing nodejs and npm" >&2
    command -v apt-get >/dev/null || { echo "40-js.sh: node and npm are missing" >&2; exit 1; }
    apt-get install -y nodejs npm >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y nodejs npm >/dev/null; }
fi

stamp=node_modules/.latchkey-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    exit 0
fi
echo "tests/setup/40-js.sh: npm ci in guest-sdk/js" >&2
npm ci --no-audit --no-fund --loglevel=error >&2
echo "$want" > "$stamp"
