#!/usr/bin/env bash
# The WebGPU benchmark command: www/bench/gpu.mjs, wembed's WebGPU path beside transformers.js'
# (device 'webgpu', fp32 and fp16) in one headless Chromium page on the same adapter and texts
# (here SwiftShader, Chromium's CPU WebGPU: a comparison of the libraries on one adapter, not
# a hardware figure; `wembed gpu-bench` is the native GPU table). Sets up the peers once in
# assets/bench-js (as scripts/bench-cpu.sh does) and the fp32 ONNX graph transformers.js
# loads (a short scripts/bench.sh run exports it). Arguments go to gpu.mjs (--texts N).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-assets.sh
PEERS=assets/bench-js
if [ ! -d "$PEERS/node_modules/onnxruntime-web" ] || [ ! -d "$PEERS/node_modules/@huggingface/transformers" ]; then
  mkdir -p "$PEERS"
  [ -f "$PEERS/package.json" ] || echo '{"name":"wembed-bench-peers","private":true}' > "$PEERS/package.json"
  (cd "$PEERS" && ONNXRUNTIME_NODE_INSTALL=skip npm i --no-audit --no-fund --silent \
    @huggingface/transformers@4.3.2 onnxruntime-web@1.31.0-dev.20260914-8d85527a0 spdx-license-list@6.12.0)
fi
ls assets/onnx/*-ir9.onnx >/dev/null 2>&1 || scripts/bench.sh --sentences 8 >/dev/null
[ -f www/pkg/wembed_bg.wasm ] || scripts/build-wasm.sh
(cd www && npm ci --no-audit --no-fund --silent)   # playwright-core
exec node www/bench/gpu.mjs "$@"
