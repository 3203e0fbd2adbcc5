#!/usr/bin/env bash
# The CPU-path benchmark command, peers beside wembed in one run on the same texts:
#   1. natively: `wembed bench` (scripts/bench.sh) beside onnxruntime (PyPI) fp32 and dynamic
#      int8, on the 512 STS-B sentences;
#   2. www/bench/cpu.mjs: in Node, wembed's wasm build beside onnxruntime-web fp32 and int8,
#      one thread and all cores; in headless Chromium, wembed's CPU path beside transformers.js
#      (its wasm device, default dtype), on a page that is not cross-origin isolated and on one
#      that is; on the STS-B sentences and on 512 paragraphs of 100-250 tokens.
# Sets up the peers once in assets/bench-js (npm; onnxruntime-node's install script, which
# would download CUDA files, is skipped). Arguments go to cpu.mjs (--quick, --only node|browser).
# Run it on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-assets.sh
PEERS=assets/bench-js
if [ ! -d "$PEERS/node_modules/onnxruntime-web" ] || [ ! -d "$PEERS/node_modules/@huggingface/transformers" ] ||
  [ ! -d "$PEERS/node_modules/spdx-license-list" ]; then
  mkdir -p "$PEERS"
  [ -f "$PEERS/package.json" ] || echo '{"name":"wembed-bench-peers","private":true}' > "$PEERS/package.json"
  (cd "$PEERS" && ONNXRUNTIME_NODE_INSTALL=skip npm i --no-audit --no-fund --silent \
    @huggingface/transformers@4.3.2 onnxruntime-web@1.31.0-dev.20260914-8d85527a0 spdx-license-list@6.12.0)
fi
[ -f www/pkg/wembed_relaxed_bg.wasm ] || scripts/build-wasm.sh
(cd www && npm ci --no-audit --no-fund --silent)   # playwright-core for the Chromium half
echo "== native: wembed beside onnxruntime (scripts/bench.sh; also writes the ONNX graphs)"
scripts/bench.sh --dtype q8
scripts/bench.sh --dtype f32
echo "== wasm in Node and in Chromium (www/bench/cpu.mjs)"
exec node www/bench/cpu.mjs "$@"
