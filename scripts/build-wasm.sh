#!/usr/bin/env bash
# Builds the npm package's wasm (www/pkg/): the crate for wasm32 with SIMD128, wasm-bindgen's
# ES-module glue, then wasm-opt. Installs what it needs, idempotently: the wasm32 target, the
# wasm-bindgen CLI pinned to the crate's version (cargo install, ~10 min the first time) and
# binaryen's wasm-opt from npm. Prints the size of what a page downloads.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi
WB_VERSION=$(sed -n '/^name = "wasm-bindgen"$/{n;s/^version = "\(.*\)"$/\1/p}' Cargo.lock)
if ! wasm-bindgen --version 2>/dev/null | grep -qx "wasm-bindgen $WB_VERSION"; then
  echo "installing wasm-bindgen-cli $WB_VERSION (matches the crate)" >&2
  cargo install --quiet wasm-bindgen-cli --version "$WB_VERSION"
fi
if [ ! -x www/node_modules/.bin/wasm-opt ]; then
  (cd www && npm ci --no-audit --no-fund --silent)
fi

cargo build --quiet --lib --release --target wasm32-unknown-unknown
rm -rf www/pkg
wasm-bindgen --target web --out-dir www/pkg --out-name wembed target/wasm32-unknown-unknown/release/wembed.wasm
www/node_modules/.bin/wasm-opt -O3 --enable-simd --enable-bulk-memory --enable-nontrapping-float-to-int \
  --enable-sign-ext --enable-mutable-globals --enable-reference-types \
  www/pkg/wembed_bg.wasm -o www/pkg/wembed_bg.wasm
bytes=$(stat -c %s www/pkg/wembed_bg.wasm)
gz=$(gzip -9 -c www/pkg/wembed_bg.wasm | wc -c)
echo "www/pkg/wembed_bg.wasm: $(awk "BEGIN{printf \"%.2f\", $bytes/1048576}") MB ($(awk "BEGIN{printf \"%.2f\", $gz/1048576}") MB gzipped)"
