#!/usr/bin/env bash
# The zstd program, with which the fake upstream's /reflect/zstd-bare compresses an echo
# (tests/encoders/reflect.py) for the echo suite (tests/tests/echoes.rs).
set -euo pipefail
if command -v zstd >/dev/null 2>&1; then
    exit 0
fi
echo "tests/setup/50-zstd.sh: installing zstd" >&2
if ! apt-cache show zstd >/dev/null 2>&1; then
    apt-get update >&2
fi
apt-get install -y zstd >&2
