#!/usr/bin/env bash
# Installs what is needed, then builds and runs every test: unit tests,
# doc tests, the workspace integration tests (which build all example and
# fixture components both ways first) and the p2pctl CLI tests; then
# schemathesis against a live node's API.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo test -j2 --workspace "$@"
scripts/api-schema-test.sh
