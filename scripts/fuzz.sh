#!/usr/bin/env bash
# Fuzzes wembed's parsers of outside bytes with cargo-fuzz (libFuzzer), SECONDS per target
# (default 60): the safetensors loader as wembed calls it, the GGUF reader, quantized files,
# saved vector indexes, and every file of a model folder. Seeds come from the test fixtures.
# A crash (panic, abort, an allocation over the limit, a timeout) fails the script and leaves
# its input in fuzz/artifacts/<target>/: turn it into a regression test in tests/.
#   scripts/fuzz.sh [SECONDS] [TARGET...]
# Installs what it needs, idempotently: the nightly toolchain's use by cargo-fuzz, cargo-fuzz.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-60}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(safetensors gguf quantized index model_files)

if ! rustup toolchain list | grep -q '^nightly'; then
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz" >&2
  cargo install --quiet cargo-fuzz
fi

# Seeds: real files of each kind, so the fuzzer starts inside the formats.
CORPUS=fuzz/corpus
mkdir -p "$CORPUS"/{safetensors,gguf,quantized,index,model_files}
TINY=tests/fixtures/tiny/mean-erf-norm
cp tests/fixtures/tiny/*/model.safetensors -t "$CORPUS/safetensors/" --backup=numbered 2>/dev/null || true
cp tests/fixtures/gguf/*.gguf "$CORPUS/gguf/"
python3 - "$CORPUS" "$TINY" <<'PY'
import json, os, struct, sys
corpus, tiny = sys.argv[1], sys.argv[2]
names = ["config.json", "tokenizer.json", "model.safetensors", "modules.json", "1_Pooling/config.json",
         "sentence_bert_config.json", "config_sentence_transformers.json"]
for i, name in enumerate(names):
    with open(os.path.join(tiny, name), "rb") as f, open(os.path.join(corpus, "model_files", f"seed-{i}"), "wb") as out:
        out.write(bytes([i]) + f.read())
# A saved index: magic, header length, JSON header, labels, vectors (format of src/index.rs).
for storage in ["f32", "int8", "binary"]:
    dim, count = 8, 3
    header = json.dumps({"dim": dim, "storage": storage, "model": "m", "count": count}).encode()
    body = b"".join(struct.pack("<I", i) for i in range(count))
    body += b"".join(struct.pack("<f", (1.0 if j == i else 0.0)) for i in range(count) for j in range(dim))
    with open(os.path.join(corpus, "index", f"seed-{storage}"), "wb") as out:
        out.write(b"WEMBIDX1" + struct.pack("<I", len(header)) + header + body)
PY
# Quantized files of the tiny model, as `wembed quantize` writes them (first byte: the pick).
if [ ! -f "$CORPUS/quantized/seed-q4" ]; then
  cargo build --quiet --release --bin wembed
  tmp=$(mktemp -d)
  for dtype in q8 q4; do
    target/release/wembed quantize --dtype "$dtype" "$TINY" "$tmp/$dtype" >/dev/null
    { printf '\x00'; cat "$tmp/$dtype/model.safetensors"; } > "$CORPUS/quantized/seed-$dtype"
  done
  rm -rf "$tmp"
fi

# No sanitizer: wembed is safe Rust, and what we hunt here is panics, aborts, huge
# allocations and hangs, which libFuzzer catches by itself; ASan would double the build and
# halve the executions. Debug assertions (overflow checks included) stay on.
cargo +nightly fuzz build --sanitizer none --debug-assertions --fuzz-dir fuzz 2>&1 | grep -v "^\s*Compiling" || true
failed=()
for t in "${TARGETS[@]}"; do
  log=$(mktemp)
  if cargo +nightly fuzz run --sanitizer none --debug-assertions --fuzz-dir fuzz "$t" "$CORPUS/$t" -- \
      -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=20 \
      -print_final_stats=1 >"$log" 2>&1; then
    runs=$(grep -oE 'Done [0-9]+ runs' "$log" | grep -oE '[0-9]+' || echo "?")
    echo "fuzz $t: ${SECONDS_EACH}s, $runs executions, no crash"
  else
    echo "fuzz $t: FAILED; the input is in fuzz/artifacts/$t/" >&2
    grep -E "panicked|ERROR|SUMMARY|Test unit written|out-of-memory|malloc" "$log" | head -20 >&2 || tail -30 "$log" >&2
    failed+=("$t")
  fi
  rm -f "$log"
done
[ ${#failed[@]} -eq 0 ] || { echo "fuzz targets with crashes: ${failed[*]}" >&2; exit 1; }
