#!/usr/bin/env bash
# Builds the npm package's wasm (www/pkg/): the crate for wasm32 with SIMD128 and again with
# relaxed SIMD, wasm-bindgen's ES-module glue (one for both), then wasm-opt. Installs what it
# needs, idempotently: the wasm32 target, the wasm-bindgen CLI pinned to the crate's version
# (cargo install, ~10 min the first time) and binaryen's wasm-opt from npm. Prints the size of what a page downloads.
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

# Two builds of the crate: SIMD128 (every engine with wasm SIMD), and relaxed SIMD, which the
# loader (www/src/runtime.js) picks where the engine validates it (Chromium; Node 20 behind
# --experimental-wasm-relaxed-simd). The second is `cargo rustc` with the feature for this
# crate alone: the dependencies' artifacts are shared, only wembed itself compiles twice.
OUT=target/wasm32-unknown-unknown/release/wembed.wasm
WASM_OPT_FLAGS=(--enable-simd --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext
  --enable-mutable-globals --enable-reference-types)
# The integer kernel's tiles stay one function per height, as src/backend/cpu/qcols.rs means
# them to (V8 optimizes each on its own, sooner): -O3 otherwise inlines each into its one
# caller, and all heights became one 64 KB function. It must come before -O3 (passes run in
# order).
NO_INLINE='--no-inline=*qcols::tile*'

STAGE=target/wasm-bindgen
rm -rf "$STAGE" && mkdir -p "$STAGE/simd128" "$STAGE/relaxed"
cargo rustc --quiet --lib --release --target wasm32-unknown-unknown -- -C target-feature=+relaxed-simd
wasm-bindgen --target web --out-dir "$STAGE/relaxed" --out-name wembed "$OUT"
cargo build --quiet --lib --release --target wasm32-unknown-unknown
wasm-bindgen --target web --out-dir "$STAGE/simd128" --out-name wembed "$OUT"
# One JS glue serves both: the two builds import and export the same functions under the same
# names (comments may differ: they quote wasm-bindgen's internal shim numbers).
code() { grep -v '^[[:space:]]*//' "$1"; }
if ! cmp -s <(code "$STAGE/simd128/wembed.js") <(code "$STAGE/relaxed/wembed.js"); then
  echo "the relaxed-SIMD build's JS glue differs from the SIMD128 build's:" >&2
  diff <(code "$STAGE/simd128/wembed.js") <(code "$STAGE/relaxed/wembed.js") | head -20 >&2
  exit 1
fi
rm -rf www/pkg
cp -r "$STAGE/simd128" www/pkg
www/node_modules/.bin/wasm-opt "$NO_INLINE" -O3 "${WASM_OPT_FLAGS[@]}" www/pkg/wembed_bg.wasm -o www/pkg/wembed_bg.wasm
www/node_modules/.bin/wasm-opt "$NO_INLINE" -O3 "${WASM_OPT_FLAGS[@]}" --enable-relaxed-simd \
  "$STAGE/relaxed/wembed_bg.wasm" -o www/pkg/wembed_relaxed_bg.wasm
for f in www/pkg/wembed_bg.wasm www/pkg/wembed_relaxed_bg.wasm; do
  bytes=$(stat -c %s "$f")
  gz=$(gzip -9 -c "$f" | wc -c)
  echo "$f: $(awk "BEGIN{printf \"%.2f\", $bytes/1048576}") MB ($(awk "BEGIN{printf \"%.2f\", $gz/1048576}") MB gzipped)"
done
