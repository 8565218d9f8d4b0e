#!/usr/bin/env bash
# Installs what building and testing p2pc needs beyond a Rust toolchain:
# the two wasm targets and cargo-component, the executors' sandboxes,
# Chromium, and a .venv with the Python tools and the SDK. Safe to run again: it skips
# whatever is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_COMPONENT_VERSION=0.21.1
PROMETHEUS_CLIENT_VERSION=0.26.0
HTTPX_VERSION=0.28.1
MYPY_VERSION=2.4.1
SCHEMATHESIS_VERSION=4.32.5
PLAYWRIGHT_VERSION=1.65.2

if ! command -v rustup >/dev/null 2>&1; then
  echo "setup: rustup is required (https://rustup.rs); p2pc needs Rust 1.95 or later" >&2
  exit 1
fi

installed=$(rustup target list --installed)
for target in wasm32-wasip2 wasm32-wasip1; do
  if ! grep -qx "$target" <<<"$installed"; then
    echo "setup: adding Rust target $target"
    rustup target add "$target"
  fi
done

if cargo component --version >/dev/null 2>&1; then
  :
else
  echo "setup: installing cargo-component $CARGO_COMPONENT_VERSION (takes about 12 minutes on 2 cores)"
  cargo install cargo-component --locked --version "$CARGO_COMPONENT_VERSION"
fi

# bubblewrap, podman (with Debian's runc) and a static busybox: the process
# and container executors use the first two, and their tests build a tiny
# container image from the last. Installed where apt and root allow it;
# elsewhere the tests that need them say they were skipped.
missing=()
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v runc >/dev/null 2>&1 || missing+=(runc)
command -v busybox >/dev/null 2>&1 || missing+=(busybox-static)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
# Debian's Chromium, which the dashboard's browser tests drive headless
# (the driver too, for anyone driving it with WebDriver instead).
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
if ((${#missing[@]})); then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "setup: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: ${missing[*]} not installed (needs apt and root); the executor tests that need them will be skipped" >&2
  fi
fi

# A virtual environment in .venv with schemathesis, which the tests run
# against a live node's OpenAPI document (scripts/api-schema-test.sh).
if [ ! -x .venv/bin/schemathesis ]; then
  echo "setup: making .venv with schemathesis $SCHEMATHESIS_VERSION"
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
# The Prometheus project's own parser, which the metrics test checks
# /metrics with.
if ! .venv/bin/python -c 'import prometheus_client' 2>/dev/null; then
  echo "setup: adding prometheus-client $PROMETHEUS_CLIENT_VERSION to .venv"
  .venv/bin/pip install -q --disable-pip-version-check "prometheus-client==$PROMETHEUS_CLIENT_VERSION"
fi

# Playwright drives that Chromium in the dashboard's tests; it is told
# where Debian's browser is, so it downloads no browser of its own.
if ! .venv/bin/python -c 'import playwright' 2>/dev/null; then
  echo "setup: adding playwright $PLAYWRIGHT_VERSION to .venv"
  .venv/bin/pip install -q --disable-pip-version-check "playwright==$PLAYWRIGHT_VERSION"
fi

# The Python SDK's dependency and its checker, then the SDK itself as a
# user installs it (pip install ./clients/python), again each run so the
# tests see the current source.
if ! .venv/bin/python -c 'import httpx, mypy' 2>/dev/null; then
  echo "setup: adding httpx $HTTPX_VERSION and mypy $MYPY_VERSION to .venv"
  .venv/bin/pip install -q --disable-pip-version-check "httpx==$HTTPX_VERSION" "mypy==$MYPY_VERSION"
fi
.venv/bin/pip install -q --disable-pip-version-check --no-deps --force-reinstall ./clients/python
