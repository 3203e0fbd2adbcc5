// Search speed of the wasm vector index in Node (one thread, SIMD128): 100,000 vectors of
// dimension 384, 100 queries, k = 10, per storage. Recall is measured natively on real
// all-MiniLM-L6-v2 vectors by `cargo run --release --example index_bench` (same Rust code).
// Usage: node www/bench/search.mjs   (after scripts/build-wasm.sh)
import { readFile } from 'node:fs/promises';
import initWasm, { WasmIndex } from '../pkg/wembed.js';

await initWasm({ module_or_path: await readFile(new URL('../pkg/wembed_bg.wasm', import.meta.url)) });
const [n, dim, queries] = [100_000, 384, 100];
let s = 0x9e3779b9;
const rnd = () => {
  s ^= s << 13; s ^= s >>> 17; s ^= s << 5;
  return (s >>> 0) / 4294967296 - 0.5;
};
const vectors = new Float32Array(n * dim).map(rnd);
const labels = Uint32Array.from({ length: n }, (_, i) => i);
const qs = Array.from({ length: queries }, () => new Float32Array(dim).map(rnd));
console.log(`| storage | ms per query (wasm, Node ${process.versions.node}, 1 thread), ${n} x ${dim}, k=10 |`);
console.log('|---|---|');
for (const storage of ['f32', 'int8', 'binary']) {
  const index = new WasmIndex(dim, storage, 'bench');
  index.add(labels, vectors);
  index.search(qs[0], 10); // warm-up
  const t = performance.now();
  for (const q of qs) index.search(q, 10);
  console.log(`| ${storage} | ${((performance.now() - t) / queries).toFixed(2)} |`);
  index.free();
}
