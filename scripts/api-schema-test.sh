#!/usr/bin/env bash
# Runs schemathesis against a live node's /v1/openapi.json: every
# operation, with generated inputs; no answer may be a 5xx, and every
# answer must match its schema. scripts/test.sh runs it after the Rust
# tests. Needs .venv (scripts/setup.sh makes it) and a built p2pctl.
set -euo pipefail
cd "$(dirname "$0")/.."

p2pctl=target/debug/p2pctl
[ -x "$p2pctl" ] || cargo build -j2 -p p2pc-cli
[ -x .venv/bin/schemathesis ] || scripts/setup.sh

work=$(mktemp -d)
node_pid=
cleanup() {
  [ -n "$node_pid" ] && kill "$node_pid" 2>/dev/null && wait "$node_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

"$p2pctl" node init --node "$work/node" --no-mdns --insecure-no-passphrase \
  --listen /ip4/127.0.0.1/tcp/0 --api-listen 127.0.0.1:0 >/dev/null
"$p2pctl" node start --node "$work/node" >"$work/out" 2>"$work/log" &
node_pid=$!
url=
for _ in $(seq 1 600); do
  url=$(sed -n 's/^api //p' "$work/out" 2>/dev/null)
  [ -n "$url" ] && grep -q '^ready' "$work/out" && break
  kill -0 "$node_pid" 2>/dev/null || { cat "$work/log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { echo "api-schema-test: the node did not start" >&2; cat "$work/log" >&2; exit 1; }
token=$("$p2pctl" node token --node "$work/node")

# A fixed seed and a bounded number of examples keep the run repeatable
# and within a few minutes. One worker: with several threads, Python 3.11's
# parser (which hypothesis calls to describe its strategies) can fail with
# "AST constructor recursion depth mismatch", an error of the tool, not of
# the API. /v1/events is left out: it follows by default, so every
# generated request would be an answer that never ends; the Rust tests
# (tests/all/events.rs) exercise it, bad queries included.
set +e
timeout 900 .venv/bin/schemathesis --no-color run "$url/v1/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance \
  --phases examples,coverage,fuzzing \
  --max-examples "${P2PC_SCHEMA_EXAMPLES:-30}" \
  --seed 1 \
  --exclude-path /v1/events \
  --workers 1 \
  --request-timeout 30 \
  --suppress-health-check all
code=$?
set -e
if [ "$code" != 0 ]; then
  echo "api-schema-test: schemathesis found problems (exit $code); the node's log:" >&2
  tail -50 "$work/log" >&2
  exit "$code"
fi
echo "api-schema-test: schemathesis found no problem"
