#!/usr/bin/env bash
# In-browser engines compared where both run the same way: wembed's wasm build and
# onnxruntime-web's wasm backend (transformers.js' engine), in Node, one thread each
# (www/bench/wasm.mjs). Sets up the peers once in assets/bench-js (npm; onnxruntime-node's
# install script, which would download CUDA files, is skipped), the ONNX graphs through
# scripts/bench.sh's Python side, and the wasm build.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-assets.sh
PEERS=assets/bench-js
if [ ! -d "$PEERS/node_modules/onnxruntime-web" ] || [ ! -d "$PEERS/node_modules/@huggingface/transformers" ]; then
  mkdir -p "$PEERS"
  [ -f "$PEERS/package.json" ] || echo '{"name":"wembed-bench-peers","private":true}' > "$PEERS/package.json"
  (cd "$PEERS" && ONNXRUNTIME_NODE_INSTALL=skip npm i --no-audit --no-fund --silent \
    @huggingface/transformers@4.3.2 onnxruntime-web@1.31.0-dev.20260914-8d85527a0)
fi
if ! ls assets/onnx/*-ir9.int8.onnx >/dev/null 2>&1; then
  scripts/bench.sh --sentences 64 --repeats 1 >/dev/null   # writes the fp32 and int8 graphs
fi
[ -f www/pkg/wembed_bg.wasm ] || scripts/build-wasm.sh
exec node www/bench/wasm.mjs
