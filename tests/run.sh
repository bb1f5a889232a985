#!/usr/bin/env bash
# Every test, on a fresh machine: installs what the suites need (each script in tests/setup/
# installs one thing into target/test-tools/ or from Debian's packages, idempotently), then runs
# the whole workspace's tests. Suites that need a tool look for it where its script put it and
# fail with a message naming the script when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# rust-toolchain.toml names the target, but automatic installs may be off.
rustup target add wasm32-wasip2 >/dev/null

for setup in tests/setup/*.sh; do
    [ -e "$setup" ] || continue
    echo "tests/run.sh: $setup" >&2
    bash "$setup"
done

cargo test --workspace "$@"
