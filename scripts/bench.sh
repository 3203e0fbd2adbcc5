#!/usr/bin/env bash
# The benchmark command: sets up onnxruntime (PyPI) in assets/venv-bench once, builds wembed in
# release mode and prints the table of `wembed bench`, wembed beside onnxruntime fp32.
# Extra arguments go to `wembed bench` (e.g. --threads 1, --sentences 1000).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-assets.sh
VENV=assets/venv-bench
if ! "$VENV/bin/python" -c "import onnxruntime, onnx, numpy, safetensors" 2>/dev/null; then
  echo "setting up onnxruntime in $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "onnxruntime==1.32.*" "onnx==1.23.*" "numpy<3" "safetensors<1"
fi
cargo build --release --quiet
exec target/release/wembed bench --python "$VENV/bin/python" "$@"
