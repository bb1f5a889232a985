#!/usr/bin/env bash
# The main job, end to end: build the `latchkey` binary and the example guests, start a
# loopback fake of the Slack API, store a key sealed in a fresh sled store, and run the
# slack-post example, which uses the key without ever seeing it. Then show the two
# things a hostile step would try: sending the key elsewhere, and reading it back from an
# upstream that echoes it.
#
# Usage: examples/demo.sh          (from anywhere; needs only rustup, cargo and bash)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

# rust-toolchain.toml names the wasm32-wasip2 target, but rustup does not add it to a toolchain
# that is already installed (nor at all with RUSTUP_AUTO_INSTALL=0): add it (idempotent).
rustup target add wasm32-wasip2 >/dev/null

echo "== building latchkey and the example guests (first run: several minutes)"
# Built exactly as `tests/run.sh` builds (`--workspace --tests`): the tests' dev-dependencies
# turn on features of shared crates (syn's `fold`, for one), and a build without them
# compiles wasmtime and every proc-macro user a second time (about 11 minutes on 2 cores).
cargo build --quiet --workspace --bins --tests
target=${CARGO_TARGET_DIR:-$root/target}
latchkey=$target/debug/latchkey
guests=$target/guests/wasm32-wasip2/release

work=$(mktemp -d)
upstream_pid=
cleanup() {
    [ -n "$upstream_pid" ] && kill "$upstream_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
export LATCHKEY_STORE=$work/store LATCHKEY_MASTER_KEY_FILE=$work/master.key
unset LATCHKEY_MASTER_KEY

# The fake upstream prints its URL, then a line per request; it exits when its stdin closes.
mkfifo "$work/hold"
"$target/debug/fake-upstream" 2> >(sed -u 's/^/   [upstream received] /') <"$work/hold" >"$work/url" &
upstream_pid=$!
exec 3>"$work/hold"
for _ in $(seq 100); do [ -s "$work/url" ] && break; sleep 0.05; done
base=$(cat "$work/url")
hostport=${base#http://}
echo "== fake Slack API listening at $base"

echo "== latchkey init"
"$latchkey" init | sed 's/^/   /'

token="xoxb-demo-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
echo "== latchkey secret set SLACK_TOKEN (value on stdin; bound to $hostport, header Authorization)"
printf '%s' "$token" | "$latchkey" secret set SLACK_TOKEN \
    --allow-host "$hostport" --allow-http --inject header:Authorization --integration http | sed 's/^/   /'
"$latchkey" secret list | sed 's/^/   /'

echo "== latchkey run slack_post.wasm"
input=$(printf '{"channel":"#general","text":"Hello from a step that cannot read its key","api_base":"%s"}' "$base")
output=$("$latchkey" run "$guests/slack_post.wasm" --allow-private-network --report --input "$input" 2>"$work/report")
sleep 0.2
sed 's/^/   /' "$work/report"
echo "   guest output: $output"
case "$output" in *"$token"*) echo "FAIL: the key reached the guest"; exit 1 ;; esac

echo "== a hostile step sends the key to another destination (localhost:${hostport#*:} is not in the binding)"
if "$latchkey" run "$guests/probe.wasm" --allow-private-network \
    --input "{\"action\":\"fetch\",\"url\":\"http://localhost:${hostport#*:}/echo\",\"key\":\"SLACK_TOKEN\"}" 2>&1 | sed 's/^/   /'; then
    echo "FAIL: the request was sent"; exit 1
fi

echo "== a hostile step asks a bound upstream to echo the key back"
echoed=$("$latchkey" run "$guests/probe.wasm" --allow-private-network \
    --input "{\"action\":\"fetch\",\"url\":\"$base/echo\",\"key\":\"SLACK_TOKEN\"}")
sleep 0.2
echo "   guest got: ${echoed:0:300}…"
case "$echoed" in *"$token"*) echo "FAIL: the echoed key reached the guest"; exit 1 ;; esac

echo "== latchkey audit (who used which key where; never the value)"
"$latchkey" audit | sed 's/^/   /'
exec 3>&-
echo "== done: the upstream received the key, the guest never saw it"
