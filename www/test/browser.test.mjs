// The npm package in headless Chromium (Debian's, driven by playwright-core), WebGPU through
// SwiftShader: loads all-MiniLM-L6-v2 by model id from a localhost hub, on WebGPU and on the
// CPU, checks the vectors against the PyTorch fixtures and the progress events, then loads
// again from the cache with the hub stopped; and in a module Web Worker; device 'auto' sends a
// short query to the CPU copy where it measured sooner. Not finding Chromium
// or a WebGPU adapter fails.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { hubServer, close, url } from './server.mjs';
import { cosine, openPackagePage } from './util.mjs';

const www = fileURLToPath(new URL('../', import.meta.url));
const root = fileURLToPath(new URL('../../', import.meta.url));
const MODEL_ID = 'sentence-transformers/all-MiniLM-L6-v2';
const reference = JSON.parse(await readFile(join(root, 'tests/fixtures/minilm.json'), 'utf8'));
// SwiftShader computes on the CPU and slowly: a handful of short texts (the full set runs natively).
const SAMPLES = reference.sentences.filter((s) => s.text && s.ids.length <= 12).slice(0, 4);

let app, hub, browser, page;

before(async () => {
  ({ app, browser, page } = await openPackagePage(www, { webgpu: true }));
  hub = await hubServer({ [MODEL_ID]: join(root, 'assets/models/all-MiniLM-L6-v2') });
});

after(async () => {
  await browser?.close();
  if (app) await close(app);
  if (hub?.listening) await close(hub);
});


/** Loads by model id in the page on `device`, embeds the samples; returns info, vectors, events. */
function runInPage(device, dtype) {
  return page.evaluate(
    async ({ id, hubBase, device, dtype, texts }) => {
      const events = [];
      const embedder = await window.wembed.Embedder.load(id, { device, dtype, hubBase, onProgress: (e) => events.push(e) });
      const vectors = await embedder.embed(texts);
      const info = embedder.info;
      embedder.dispose();
      return { info, vectors: vectors.map((v) => Array.from(v)), events };
    },
    { id: MODEL_ID, hubBase: url(hub), device, dtype, texts: SAMPLES.map((s) => s.text) },
  );
}

function checkVectors(result, label, bar = 0.99999) {
  SAMPLES.forEach((s, i) => {
    const c = cosine(result.vectors[i], s.embedding);
    assert.ok(c >= bar, `${label}: ${JSON.stringify(s.text)} cosine ${c}`);
  });
}

test('WebGPU in Chromium matches PyTorch, with progress events', { timeout: 600_000 }, async () => {
  const result = await runInPage('webgpu');
  assert.equal(result.info.device, 'webgpu', `WebGPU was not used: ${JSON.stringify(result.info)}`);
  console.log(`webgpu run: ${JSON.stringify(result.info)}`);
  assert.match(result.info.adapter, /BrowserWebGpu/);
  // The default dtype on WebGPU is f16 (measured faster on a GPU, cosine 0.9999997).
  assert.equal(result.info.dtype, 'f16');
  // SwiftShader is a software adapter without shader-f16: f32 arithmetic.
  assert.equal(result.info.arithmetic, 'f32');
  checkVectors(result, 'webgpu');
  const weights = result.events.filter((e) => e.file === 'model.safetensors');
  assert.ok(weights.length > 1 && !weights[0].cached, 'streamed model.safetensors with progress');
  assert.equal(weights.at(-1).loaded, weights.at(-1).total);
  assert.ok(weights.at(-1).total > 1e7);
});

test('the wasm CPU path in Chromium matches PyTorch: f32 exactly, its default q8 within 0.999', { timeout: 300_000 }, async () => {
  const exact = await runInPage('cpu', 'f32');
  assert.equal(exact.info.device, 'cpu');
  assert.equal(exact.info.dtype, 'f32');
  checkVectors(exact, 'cpu f32');
  // The default dtype of the wasm CPU path is q8 (its integer kernels: 1.9x f32 in Chromium).
  const byDefault = await runInPage('cpu');
  assert.equal(byDefault.info.dtype, 'q8');
  checkVectors(byDefault, 'cpu default (q8)', 0.999);
});

test("device 'auto' on a GPU sends a short query where the load measured it sooner", { timeout: 600_000 }, async () => {
  // 'auto' skips software adapters as shipped; the hook lets it take SwiftShader, whose
  // per-call cost (on the CPU) loses a query to the CPU copy: the CPU branch, end to end.
  const r = await page.evaluate(
    async ({ id, hubBase, query, pair }) => {
      const { Embedder, __testing } = window.wembed;
      __testing.autoTakesSoftwareGpu(true);
      let auto, gpuOnly;
      try {
        auto = await Embedder.load(id, { hubBase });
        gpuOnly = await Embedder.load(id, { hubBase, queryDevice: 'webgpu' });
      } finally {
        __testing.autoTakesSoftwareGpu(false);
      }
      const gpuOnlyInfo = gpuOnly.info;
      const [onGpu] = await gpuOnly.embed(query);
      gpuOnly.dispose();
      const info = auto.info;
      const [routed] = await auto.embed(query);
      const splitParts = __testing.lastSplitParts(auto);
      const batch = await auto.embed(pair);
      const memory = auto.memoryUsage();
      auto.dispose();
      const cpu = await Embedder.load(id, { hubBase, device: 'cpu', dtype: 'f32' });
      const onCpu = await cpu.embed([query, ...pair]);
      cpu.dispose();
      const plain = (vs) => vs.map((v) => Array.from(v));
      return { info, gpuOnlyInfo, memory, splitParts, routed: Array.from(routed), batch: plain(batch), onCpu: plain(onCpu), onGpu: Array.from(onGpu) };
    },
    { id: MODEL_ID, hubBase: url(hub), query: 'where is the nearest train station', pair: SAMPLES.slice(0, 2).map((s) => s.text) },
  );
  const { info } = r;
  console.log(`auto on SwiftShader: ${info.deviceReason}`);
  assert.equal(info.device, 'webgpu', JSON.stringify(info));
  assert.equal(info.dtype, 'f16');
  assert.equal(info.queryDevice, 'cpu', JSON.stringify(info));
  assert.ok(info.queryTimes.cpu > 0 && info.queryTimes.cpu < info.queryTimes.webgpu, JSON.stringify(info.queryTimes));
  assert.ok(info.queryMaxTokens >= 16 && info.queryMaxTokens <= info.maxTokens, String(info.queryMaxTokens));
  assert.ok(info.workers >= 1 && r.memory.workerWasmBytes > 0, JSON.stringify({ workers: info.workers, memory: r.memory }));
  assert.match(info.deviceReason, /one-text calls of up to \d+ tokens run on the CPU: a 16-token query took/);
  // The one-text call ran on the CPU copy (f32; split over the workers where there are two):
  // device 'cpu' f32's vector.
  if (info.queryWorkers > 1) assert.ok(r.splitParts >= 1, 'the query ran split over the CPU workers');
  const maxDiff = (a, b) => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i])), 0);
  assert.ok(maxDiff(r.routed, r.onCpu[0]) <= 1e-6, `routed query vs device 'cpu' f32: ${maxDiff(r.routed, r.onCpu[0])}`);
  // Two texts stay on the GPU: its f16 vectors, a little off the CPU's f32 ones (so the test
  // can tell), as close to PyTorch as the f16 bar.
  r.batch.forEach((v, i) => {
    assert.ok(maxDiff(v, r.onCpu[i + 1]) > 1e-6, `batch text ${i} came out as the CPU's f32 vector`);
    const c = cosine(v, SAMPLES[i].embedding);
    assert.ok(c >= 0.9999, `batch text ${i}: cosine ${c}`);
  });
  // queryDevice 'webgpu': no copy, nothing timed, the query on the GPU.
  const g = r.gpuOnlyInfo;
  assert.ok(g.device === 'webgpu' && g.queryDevice === undefined && g.queryTimes === undefined && g.workers === 0, JSON.stringify(g));
  assert.ok(maxDiff(r.onGpu, r.onCpu[0]) > 1e-6 && cosine(r.onGpu, r.routed) >= 0.9999);
});

test('the package runs in a module Web Worker', { timeout: 300_000 }, async () => {
  const result = await page.evaluate(
    ({ id, hubBase, origin, text }) =>
      new Promise((resolve, reject) => {
        const source = `
          import { Embedder } from '${origin}/src/index.js';
          const e = await Embedder.load('${id}', { device: 'webgpu', hubBase: '${hubBase}' });
          const [v] = await e.embed([${JSON.stringify(text)}]);
          postMessage({ info: e.info, vector: Array.from(v) });`;
        const worker = new Worker(URL.createObjectURL(new Blob([source], { type: 'text/javascript' })), { type: 'module' });
        worker.onmessage = (m) => {
          worker.terminate();
          resolve(m.data);
        };
        worker.onerror = (e) => reject(new Error(e.message));
      }),
    { id: MODEL_ID, hubBase: url(hub), origin: url(app), text: SAMPLES[0].text },
  );
  assert.equal(result.info.device, 'webgpu', JSON.stringify(result.info));
  const c = cosine(result.vector, SAMPLES[0].embedding);
  assert.ok(c >= 0.99999, `worker: cosine ${c}`);
});

test('with the hub stopped, the model loads from the cache', { timeout: 300_000 }, async () => {
  const cached = await page.evaluate(
    ({ id, hubBase }) => window.wembed.isCached(id, { hubBase }),
    { id: MODEL_ID, hubBase: url(hub) },
  );
  assert.equal(cached, true);
  const hubBase = url(hub);
  await close(hub);
  await page.reload();
  await page.waitForFunction(() => window.ready === true);
  const result = await page.evaluate(
    async ({ id, hubBase, texts }) => {
      const events = [];
      const embedder = await window.wembed.Embedder.load(id, { device: 'cpu', dtype: 'f32', hubBase, onProgress: (e) => events.push(e) });
      const vectors = await embedder.embed(texts);
      return { vectors: vectors.map((v) => Array.from(v)), events };
    },
    { id: MODEL_ID, hubBase, texts: SAMPLES.map((s) => s.text) },
  );
  const files = result.events.filter((e) => e.phase === 'download');
  assert.ok(files.length > 0 && files.every((e) => e.cached), 'every file from the cache');
  assert.deepEqual(result.events.slice(-2).map((e) => e.phase), ['compile', 'ready']);
  checkVectors(result, 'offline');
  const cleared = await page.evaluate(() => window.wembed.clearCache());
  assert.equal(cleared, true);
  const err = await page.evaluate(
    async ({ id, hubBase }) => window.wembed.Embedder.load(id, { device: 'cpu', hubBase }).then(() => null, (e) => ({ code: e.code, message: e.message })),
    { id: MODEL_ID, hubBase },
  );
  assert.equal(err?.code, 'FETCH', JSON.stringify(err));
});
