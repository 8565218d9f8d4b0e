#!/usr/bin/env bash
# Installs what building and testing p2pc needs beyond a Rust toolchain:
# the two wasm targets and cargo-component. Safe to run again: it skips
# whatever is already there.
set -euo pipefail

CARGO_COMPONENT_VERSION=0.21.1

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
