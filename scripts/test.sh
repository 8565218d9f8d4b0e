#!/usr/bin/env bash
# Installs what is needed, then builds and runs every test: unit tests,
# doc tests, the workspace integration tests (which build all example and
# fixture components both ways first) and the p2pctl CLI tests; then
# schemathesis against a live node's API; then the Python SDK's tests
# (against real nodes) and mypy --strict over it; then the dashboard in
# headless Chromium against a real network (screenshots: target/dashboard).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo test -j2 --workspace "$@"
scripts/api-schema-test.sh
.venv/bin/python -m pytest -q clients/python/tests
.venv/bin/mypy --strict clients/python/src clients/python/tests
.venv/bin/python -m pytest -q tests/browser
.venv/bin/mypy --strict tests/browser
