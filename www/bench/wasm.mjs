// wembed's wasm build beside onnxruntime-web's wasm backend (the engine transformers.js runs
// on in browsers) in Node, one thread each, on the same 512 STS-B sentences: sentences/s at
// batch 1 (the first 128 sentences) and at batch 32 (length-sorted), and each row's worst cosine
// to onnxruntime's fp32 vectors. onnxruntime-web runs the fp32 ONNX graph that scripts/bench.sh
// writes (assets/onnx) and its dynamic int8 quantization, which is the recipe of transformers.js'
// q8 models. Tokens come from transformers.js' own tokenizer, as in transformers.js.
// Usage: scripts/bench-wasm.sh (sets up the peers in assets/bench-js).
import { readFile, readdir } from 'node:fs/promises';
import { gunzipSync } from 'node:zlib';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Embedder } from '../src/index.js';
import { cosine } from '../test/util.mjs';

const root = fileURLToPath(new URL('../../', import.meta.url));
const peers = join(root, 'assets/bench-js/node_modules');
const ort = await import(join(peers, 'onnxruntime-web/dist/ort.node.min.mjs'));
const { AutoTokenizer, env } = await import(join(peers, '@huggingface/transformers/dist/transformers.node.mjs'));
ort.env.wasm.numThreads = 1;
env.allowRemoteModels = false;
env.localModelPath = join(root, 'assets/models');

const MODEL = join(root, 'assets/models/all-MiniLM-L6-v2');
const tsv = gunzipSync(await readFile(join(root, 'assets/data/stsbenchmark.tsv.gz'))).toString('utf8');
const seen = new Set();
for (const line of tsv.split('\n')) {
  const f = line.split('\t');
  if (f[0] !== 'test') continue;
  for (const s of [f[6], f[7]]) if (s && seen.size < 512) seen.add(s);
}
const texts = [...seen];
const B1 = texts.slice(0, 128);

function timed(fn) {
  const t = performance.now();
  return fn().then((v) => [v, (performance.now() - t) / 1000]);
}

// onnxruntime-web: padded batches, mean pooling over the mask, L2 normalization.
const tokenizer = await AutoTokenizer.from_pretrained('all-MiniLM-L6-v2');
const ids = texts.map((t) => tokenizer.encode(t));
async function ortEmbed(session, idx) {
  const n = idx.length;
  const len = Math.max(...idx.map((i) => ids[i].length));
  const input = new BigInt64Array(n * len);
  const mask = new BigInt64Array(n * len);
  idx.forEach((i, r) => ids[i].forEach((id, c) => {
    input[r * len + c] = BigInt(id);
    mask[r * len + c] = 1n;
  }));
  const feeds = {
    input_ids: new ort.Tensor('int64', input, [n, len]),
    attention_mask: new ort.Tensor('int64', mask, [n, len]),
    token_type_ids: new ort.Tensor('int64', new BigInt64Array(n * len), [n, len]),
  };
  const { last_hidden_state: h } = await session.run(feeds);
  const dim = h.dims[2];
  return idx.map((i, r) => {
    const v = new Float32Array(dim);
    const count = ids[i].length;
    for (let c = 0; c < count; c++) for (let d = 0; d < dim; d++) v[d] += h.data[(r * len + c) * dim + d];
    const norm = Math.hypot(...v);
    return v.map((x) => x / norm);
  });
}

async function ortRun(path) {
  const session = await ort.InferenceSession.create(path, { executionProviders: ['wasm'] });
  const order = texts.map((_, i) => i).sort((a, b) => ids[a].length - ids[b].length);
  const out = new Array(texts.length);
  await ortEmbed(session, order.slice(0, 8)); // warm-up
  const [, t32] = await timed(async () => {
    for (let c = 0; c < order.length; c += 32) {
      const idx = order.slice(c, c + 32);
      (await ortEmbed(session, idx)).forEach((v, k) => (out[idx[k]] = v));
    }
  });
  const [, t1] = await timed(async () => {
    for (let i = 0; i < B1.length; i++) await ortEmbed(session, [i]);
  });
  await session.release();
  return { b1: B1.length / t1, b32: texts.length / t32, vectors: out };
}

const onnxDir = join(root, 'assets/onnx');
const onnx = (await readdir(onnxDir)).filter((f) => f.endsWith('-ir9.onnx'));
if (!onnx.length) throw new Error('no ONNX graph in assets/onnx: run scripts/bench.sh once first');
const fp32 = await ortRun(join(onnxDir, onnx[0]));
const int8Path = join(onnxDir, onnx[0].replace(/\.onnx$/, '.int8.onnx'));
const int8 = await ortRun(int8Path).catch((e) => (console.error(`int8: ${e.message}`), null));

const rows = [];
const worst = (vectors) => Math.min(...vectors.map((v, i) => cosine(v, fp32.vectors[i])));
for (const dtype of ['f32', 'q8', 'q4']) {
  const embedder = await Embedder.load(MODEL, { device: 'cpu', dtype });
  await embedder.embed(texts.slice(0, 8));
  const [vectors, t32] = await timed(() => embedder.embed(texts, { batchSize: 32 }));
  const [, t1] = await timed(async () => {
    for (const t of B1) await embedder.embed([t]);
  });
  rows.push([`wembed (wasm, SIMD128)`, dtype, B1.length / t1, texts.length / t32, worst(vectors)]);
  embedder.dispose();
}
rows.push([`onnxruntime-web ${ort.env.versions.web} (wasm)`, 'fp32', fp32.b1, fp32.b32, 1]);
if (int8) rows.push([`onnxruntime-web ${ort.env.versions.web} (wasm), dynamic int8 = transformers.js q8`, 'int8', int8.b1, int8.b32, worst(int8.vectors)]);

console.log(`Node ${process.versions.node}, one thread each, ${texts.length} STS-B test sentences (batch 1: the first ${B1.length})\n`);
console.log('| system | dtype | batch 1 (sent/s) | batch 32, length-sorted (sent/s) | worst cosine to fp32 |');
console.log('|---|---|---|---|---|');
for (const [name, dtype, b1, b32, cos] of rows) {
  console.log(`| ${name} | ${dtype} | ${b1.toFixed(1)} | ${b32.toFixed(1)} | ${cos.toFixed(6)} |`);
}
