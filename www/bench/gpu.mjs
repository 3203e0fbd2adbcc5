// The WebGPU bench where users run it: wembed's WebGPU path beside transformers.js' WebGPU
// path, in one headless Chromium page, on the same adapter and texts. Usage:
// scripts/bench-webgpu.sh (sets up the peers in assets/bench-js; `--texts N` changes the
// corpus size, default 32).
//
// Here Chromium's adapter is SwiftShader (a CPU rasterizer: `--enable-unsafe-webgpu`), so
// the figures compare the two libraries' GPU paths on one adapter, not what a hardware GPU
// reaches. Each row: sentences/s over the first N distinct STS-B test sentences in batches of
// 16 (length-sorted, as every peer is fastest), the p50 of one 16-token query over 5 calls
// (after one warm-up), and the worst cosine to wembed's CPU f32 vectors (which equal
// sentence-transformers on PyTorch, see tests/reference.rs).
import { readFile, mkdtemp, writeFile } from 'node:fs/promises';
import { gunzipSync } from 'node:zlib';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { cosine, launchChromium } from '../test/util.mjs';
import { appServer, hubServer, close, url } from '../test/server.mjs';
import { onnxGraphs, transformersJsFolder } from './peers.mjs';

const args = process.argv.slice(2);
const N = args.includes('--texts') ? Number(args[args.indexOf('--texts') + 1]) : 32;
const root = fileURLToPath(new URL('../../', import.meta.url));
const www = join(root, 'www');
const peers = join(root, 'assets/bench-js/node_modules');
const MODEL = join(root, 'assets/models/all-MiniLM-L6-v2');
const QUERY = 'How do I keep the tomatoes in my garden healthy in hot summers?';
const TJS = JSON.parse(await readFile(join(peers, '@huggingface/transformers/package.json'), 'utf8')).version;

const tsv = gunzipSync(await readFile(join(root, 'assets/data/stsbenchmark.tsv.gz'))).toString('utf8');
const seen = new Set();
for (const line of tsv.split('\n')) {
  const f = line.split('\t');
  if (f[0] !== 'test') continue;
  for (const s of [f[6], f[7]]) if (s && seen.size < N) seen.add(s);
}
const texts = [...seen];

// transformers.js' local layout, with the fp32 graph scripts/bench.sh exports.
const { fp32 } = await onnxGraphs(join(root, 'assets/onnx'));
const models = await transformersJsFolder(MODEL, 'all-MiniLM-L6-v2', { fp32 });

const PAGE = `<!doctype html><meta charset="utf-8"><title>wembed webgpu bench</title>
<script type="module">
  window.wembed = await import('/src/index.js');
  window.transformers = await import('/tjs/transformers.min.js');
  window.ready = true;
</script>`;

const hub = await hubServer({ 'all-MiniLM-L6-v2': MODEL });
const html = join(await mkdtemp(join(tmpdir(), 'wembed-webgpu-page-')), 'bench.html');
await writeFile(html, PAGE);
const mounts = {
  '/tjs/': join(peers, '@huggingface/transformers/dist'),
  '/ort/': join(peers, 'onnxruntime-web/dist'),
  '/models/': models,
};
const app = await appServer(www, { '/bench.html': html }, { mounts });
const browser = await launchChromium({ webgpu: true });
const rows = [];
let reference = null;
let adapter = '';
try {
  const page = await browser.newPage();
  page.on('pageerror', (e) => process.stderr.write(`[page error] ${e.message}\n`));
  const configs = [
    { kind: 'reference' },
    { kind: 'wembed', dtype: 'auto', batch: 16 },
    { kind: 'wembed', dtype: 'auto', batch: null },
    { kind: 'wembed', dtype: 'f32', batch: 16 },
    { kind: 'tjs', dtype: 'fp32', batch: 16 },
    { kind: 'tjs', dtype: 'fp16', batch: 16 },
  ];
  for (const cfg of configs) {
    // A fresh page per row: each library's device and sessions start clean.
    await page.goto(`${url(app)}/bench.html`);
    await page.waitForFunction(() => window.ready === true, null, { timeout: 60_000 });
    const r = await page.evaluate(
      async ({ cfg, texts, query, hubBase }) => {
        const now = () => performance.now();
        const order = texts.map((_, i) => i).sort((a, b) => texts[a].length - texts[b].length);
        const measure = async (embed, batch) => {
          const out = new Array(texts.length);
          await embed(texts.slice(0, 4)); // warm-up: pipelines, buffers
          let t = now();
          const step = batch ?? texts.length;
          for (let c = 0; c < order.length; c += step) {
            const idx = order.slice(c, c + step);
            const vs = await embed(idx.map((i) => texts[i]));
            idx.forEach((i, k) => (out[i] = vs[k]));
          }
          const perS = texts.length / ((now() - t) / 1000);
          const times = [];
          for (let i = 0; i < 6; i++) {
            t = now();
            await embed([query]);
            if (i >= 1) times.push(now() - t);
          }
          times.sort((a, b) => a - b);
          return { perS, queryMs: times[times.length >> 1], vectors: out };
        };
        try {
          if (cfg.kind !== 'tjs') {
            const cpu = cfg.kind === 'reference';
            const e = await window.wembed.Embedder.load('all-MiniLM-L6-v2', {
              hubBase, device: cpu ? 'cpu' : 'webgpu', dtype: cpu ? 'f32' : cfg.dtype, workers: 0,
            });
            const embed = async (t) =>
              (await e.embed(t, cfg.batch ? { batchSize: cfg.batch } : {})).map((v) => Array.from(v));
            if (cpu) {
              const vectors = await embed(texts);
              e.dispose();
              return { vectors };
            }
            const r = await measure(embed, cfg.batch);
            const info = e.info;
            e.dispose();
            return { ...r, label: `${info.dtype}${info.arithmetic === 'f16' ? ', f16 arithmetic' : ''}`, adapter: info.adapter };
          }
          const { pipeline, env } = window.transformers;
          env.allowRemoteModels = false;
          env.allowLocalModels = true;
          env.localModelPath = '/models/';
          env.backends.onnx.wasm.wasmPaths = '/ort/';
          const extractor = await pipeline('feature-extraction', 'all-MiniLM-L6-v2', { device: 'webgpu', dtype: cfg.dtype });
          const embed = async (t) => (await extractor(t, { pooling: 'mean', normalize: true })).tolist();
          const r = await measure(embed, cfg.batch);
          await extractor.dispose();
          return { ...r, label: cfg.dtype };
        } catch (e) {
          return { error: String(e?.message ?? e).slice(0, 200) };
        }
      },
      { cfg, texts, query: QUERY, hubBase: url(hub) },
    );
    if (cfg.kind === 'reference') {
      if (r.error) throw new Error(`the CPU reference failed: ${r.error}`);
      reference = r.vectors;
      continue;
    }
    const system = cfg.kind === 'wembed' ? 'wembed (WebGPU)' : `transformers.js ${TJS} (webgpu)`;
    const batching = cfg.batch ? `${cfg.batch} texts` : 'by tokens (its default)';
    if (r.error) {
      rows.push({ system, dtype: cfg.dtype, batching, error: r.error });
      console.error(`${system} ${cfg.dtype}: ${r.error}`);
      continue;
    }
    adapter ||= r.adapter ?? '';
    const worst = Math.min(...r.vectors.map((v, i) => cosine(v, reference[i])));
    rows.push({ system, dtype: r.label, batching, ...r, worst });
    console.error(`${system} ${r.label} (${batching}): ${r.perS.toFixed(2)} sent/s, query ${r.queryMs.toFixed(0)} ms, worst cosine ${worst.toFixed(6)}`);
  }
} finally {
  await browser.close();
  await close(app);
  await close(hub);
}

console.log(`\nall-MiniLM-L6-v2 in headless Chromium's WebGPU (${adapter || 'SwiftShader'}): ${texts.length} STS-B test sentences, length-sorted; query: 16 tokens, p50 of 5; worst cosine to wembed's CPU f32 (= PyTorch)\n`);
console.log('| system | dtype | batches | sent/s | 16-token query p50 (ms) | worst cosine |');
console.log('|---|---|---|---|---|---|');
for (const r of rows) {
  if (r.error) console.log(`| ${r.system} | ${r.dtype} | ${r.batching} | failed: ${r.error} | | |`);
  else console.log(`| ${r.system} | ${r.dtype} | ${r.batching} | ${r.perS.toFixed(2)} | ${r.queryMs.toFixed(0)} | ${r.worst.toFixed(6)} |`);
}
