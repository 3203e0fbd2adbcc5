// The npm package in Node: the CPU wasm path against the PyTorch fixtures, and its errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, mkdtemp, cp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Embedder, WembedError } from '../src/index.js';
import { cosine, rejectsWith } from './util.mjs';

const root = fileURLToPath(new URL('../../', import.meta.url));
const minilm = join(root, 'assets/models/all-MiniLM-L6-v2');
const tiny = join(root, 'tests/fixtures/tiny/mean-erf-norm');
const reference = JSON.parse(await readFile(join(root, 'tests/fixtures/minilm.json'), 'utf8'));



test('all-MiniLM-L6-v2 on the wasm CPU path matches PyTorch', async () => {
  const events = [];
  const embedder = await Embedder.load(minilm, { device: 'cpu', dtype: 'f32', onProgress: (e) => events.push(e) });
  assert.equal(embedder.info.device, 'cpu');
  assert.equal(embedder.info.dtype, 'f32');
  assert.equal(embedder.info.dim, 384);
  assert.equal(embedder.info.maxTokens, 256);
  assert.ok(events.some((e) => e.file === 'model.safetensors' && e.loaded === e.total && e.total > 1e7));
  // Phases: every file event is 'download'; then 'compile' once, then 'ready', last.
  const phases = events.map((e) => e.phase);
  assert.ok(events.filter((e) => e.file).every((e) => e.phase === 'download'), JSON.stringify(events.slice(0, 3)));
  assert.deepEqual(phases.slice(-2), ['compile', 'ready']);
  assert.equal(phases.filter((p) => p !== 'download').length, 2);
  const texts = reference.sentences.map((s) => s.text);
  const vectors = await embedder.embed(texts);
  assert.equal(vectors.length, texts.length);
  let worst = 1;
  reference.sentences.forEach((s, i) => {
    const c = cosine(vectors[i], s.embedding);
    assert.ok(c >= 0.99999, `${JSON.stringify(s.text)}: cosine ${c}`);
    worst = Math.min(worst, c);
  });
  const matrix = await embedder.embed(texts.slice(0, 3), { output: 'matrix' });
  assert.equal(matrix.data.length, 3 * 384);
  // Same text, other batch: equal up to the order of float sums.
  const diff = Math.max(...Array.from(matrix.data.subarray(0, 384), (v, i) => Math.abs(v - vectors[0][i])));
  assert.ok(diff <= 1e-5, `matrix row 0 differs from the array form by ${diff}`);
  console.log(`wasm CPU: worst cosine ${worst.toFixed(8)} over ${texts.length} texts`);
  embedder.dispose();
});

test('the wasm CPU path defaults to q8, within 0.999 of PyTorch', async () => {
  const embedder = await Embedder.load(minilm, { device: 'cpu', workers: 0 });
  assert.equal(embedder.info.dtype, 'q8');
  const vectors = await embedder.embed(reference.sentences.map((s) => s.text));
  const worst = Math.min(...reference.sentences.map((s, i) => cosine(vectors[i], s.embedding)));
  assert.ok(worst >= 0.999, `default (q8): worst cosine ${worst}`);
  assert.ok(worst < 0.99999999, `default (q8) equals f32 to ${worst}: was it quantized?`);
  embedder.dispose();
});

test('concurrent embed calls are queued and each gets its own answer', async () => {
  const embedder = await Embedder.load(tiny, { device: 'cpu' });
  const texts = ['hello world!', 'a man is playing a guitar.', 'the quick brown fox'];
  const alone = await Promise.all(texts.map((t) => embedder.embed([t])));
  const together = await Promise.all([embedder.embed(texts), ...texts.map((t) => embedder.embed(t))]);
  texts.forEach((_, i) => {
    assert.deepEqual(Array.from(together[0][i]), Array.from(alone[i][0]));
    assert.deepEqual(Array.from(together[i + 1][0]), Array.from(alone[i][0]));
  });
});

test('errors arrive as WembedError with a stable code', async () => {
  await rejectsWith(Embedder.load(join(root, 'no/such/model'), { device: 'cpu' }), 'IO', /config\.json/);
  await rejectsWith(Embedder.load(tiny, { device: 'tpu' }), 'INPUT', /device/);
  await rejectsWith(Embedder.load(tiny, { device: 'webgpu' }), 'BACKEND', /WebGPU is not available/);
  await rejectsWith(Embedder.load(42), 'INPUT');

  const dir = await mkdtemp(join(tmpdir(), 'wembed-'));
  await cp(tiny, dir, { recursive: true });
  const weights = await readFile(join(dir, 'model.safetensors'));
  await writeFile(join(dir, 'model.safetensors'), weights.subarray(0, weights.length >> 1));
  await rejectsWith(Embedder.load(dir, { device: 'cpu' }), 'BAD_FILE', /truncated or corrupt/);

  const embedder = await Embedder.load(tiny, { device: 'cpu' });
  await rejectsWith(embedder.embed([1, 2]), 'INPUT', /not a string/);
  await rejectsWith(embedder.embed(['x'], { batchSize: 0 }), 'INPUT', /batchSize/);
  await rejectsWith(embedder.embed(['x'], { promptName: 'query' }), 'INPUT', /no prompt named/);
  await rejectsWith(embedder.embed(['the dog runs '.repeat(50)], { truncate: false }), 'INPUT', /longer than/);
  assert.deepEqual(await embedder.embed([]), []);
  const [empty] = await embedder.embed(['']);
  assert.ok(empty.every(Number.isFinite));
  const [long] = await embedder.embed(['x'.repeat(100000)]);
  assert.ok(long.every(Number.isFinite));
  embedder.dispose();
  await rejectsWith(embedder.embed(['x']), 'DISPOSED');
});

test('a GGUF file loads from bytes, its vocabulary rebuilt from the metadata', async () => {
  const gguf = JSON.parse(await readFile(join(root, 'tests/fixtures/gguf/reference.json'), 'utf8'));
  const bytes = new Uint8Array(await readFile(join(root, 'tests/fixtures/gguf/tiny-bert-q4_1.gguf')));
  const embedder = await Embedder.load({ files: { 'model.gguf': bytes } }, { device: 'cpu' });
  assert.equal(embedder.info.dim, 64);
  const texts = gguf.texts.map((t) => t.text);
  const vectors = await embedder.embed(texts);
  gguf.texts.forEach((t, i) => {
    const c = cosine(vectors[i], t.embedding);
    assert.ok(c >= 0.99, `${JSON.stringify(t.text)}: cosine ${c}`);
  });
  embedder.dispose();
});

test('a GGUF file loads by path, alone or with a tokenizer.json beside it', async () => {
  const gguf = JSON.parse(await readFile(join(root, 'tests/fixtures/gguf/reference.json'), 'utf8'));
  const alone = await Embedder.load(join(root, 'tests/fixtures/gguf/tiny-bert-q8_0.gguf'), { device: 'cpu' });
  const dir = await mkdtemp(join(tmpdir(), 'wembed-gguf-'));
  await cp(join(root, 'tests/fixtures/gguf/tiny-bert-q8_0.gguf'), join(dir, 'm.gguf'));
  await cp(join(root, 'tests/fixtures/gguf/tiny-bert/tokenizer.json'), join(dir, 'tokenizer.json'));
  const beside = await Embedder.load(join(dir, 'm.gguf'), { device: 'cpu' });
  const texts = gguf.texts.map((t) => t.text);
  for (const embedder of [alone, beside]) {
    const vectors = await embedder.embed(texts);
    gguf.texts.forEach((t, i) => assert.ok(cosine(vectors[i], t.embedding) >= 0.999, JSON.stringify(t.text)));
    embedder.dispose();
  }
  await rejectsWith(Embedder.load(join(dir, 'missing.gguf'), { device: 'cpu' }), 'IO', /missing\.gguf/);
});

test('a `wembed pack` folder loads checked, and embeds as the model it was packed from', async () => {
  // tests/fixtures/pack/dense-tanh-q8: `wembed pack` of the tiny dense-tanh model, in q8.
  const pack = join(root, 'tests/fixtures/pack/dense-tanh-q8');
  const source = join(root, 'tests/fixtures/tiny/dense-tanh');
  const texts = JSON.parse(await readFile(join(source, 'reference.json'), 'utf8')).sentences.map((s) => s.text);
  const original = await Embedder.load(source, { device: 'cpu', workers: 0 });
  const packed = await Embedder.load(pack, { device: 'cpu', workers: 0 });
  assert.equal(packed.info.dtype, 'q8');
  const [want, got] = [await original.embed(texts), await packed.embed(texts)];
  const worst = Math.min(...want.map((v, i) => cosine(v, got[i])));
  assert.ok(worst >= 0.999, `worst cosine ${worst} to the original model`);
  original.dispose();
  packed.dispose();

  const dir = await mkdtemp(join(tmpdir(), 'wembed-pack-'));
  await cp(pack, dir, { recursive: true });
  const dense = await readFile(join(dir, '2_Dense/model.safetensors'));
  dense[dense.length - 1] ^= 0x80; // a weight's sign: the file still parses
  await writeFile(join(dir, '2_Dense/model.safetensors'), dense);
  await rejectsWith(Embedder.load(dir, { device: 'cpu', workers: 0 }), 'BAD_FILE', /^2_Dense\/model\.safetensors has SHA-256/);
});

test('a load in a fresh worker: its wasm memory over the weight file, f32 and q8 (issue 14)', async () => {
  // Wasm memory only grows, so a fresh worker's size after its load is the load's peak. The
  // weight file stays in the JavaScript heap and is read a tensor at a time (src/weights.rs,
  // ReadAt): copied into wasm memory whole first, as until 2026-12-07, it was 2.16 and 1.75.
  const { stat } = await import('node:fs/promises');
  const file = (await stat(join(minilm, 'model.safetensors'))).size;
  const ratios = {};
  for (const dtype of ['f32', 'q8']) {
    const e = await Embedder.load(minilm, { device: 'cpu', dtype, workers: 1 });
    ratios[dtype] = e.memoryUsage().workerWasmBytes / file;
    e.dispose();
  }
  console.log(`wasm memory of a load over the file (${(file / 1e6).toFixed(1)} MB): f32 ${ratios.f32.toFixed(2)}, q8 ${ratios.q8.toFixed(2)}`);
  // Measured 1.18 and 0.74 (2026-12-07): the weights built, a tensor being read, the tokenizer.
  assert.ok(ratios.f32 <= 1.3, `f32: ${ratios.f32}`);
  assert.ok(ratios.q8 <= 0.85, `q8: ${ratios.q8}`);
  assert.ok(ratios.q8 < ratios.f32 - 0.25, 'q8 weights take less than f32');
});
